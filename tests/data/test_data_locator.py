"""Data locator order, missing-dataset errors, and download (network mocked / unreachable)."""
from __future__ import annotations

import io
import socket
import urllib.error
from pathlib import Path

import pytest

from dpcdvae.data import locator
from dpcdvae.data.locator import (DatasetNotFoundError, DownloadError, available_splits, candidate_roots,
                                  download, locate_dataset, split_path)

HEADER = ",material_id,cif,heat_ref\n"


def _make(root: Path, name: str = "toyset", splits=("train", "val", "test")) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    for s in splits:
        (d / f"{s}.csv").write_text(HEADER)
    return d


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """cwd = tmp/work/proj, with ./data and ../shared/data candidates, DPCDVAE_DATA unset."""
    proj = tmp_path / "work" / "proj"
    proj.mkdir(parents=True)
    monkeypatch.chdir(proj)
    monkeypatch.delenv("DPCDVAE_DATA", raising=False)
    return {"proj": proj, "cwd_data": proj / "data", "cwd_shared": tmp_path / "work" / "shared" / "data",
            "env": tmp_path / "envdata", "explicit": tmp_path / "explicit"}


def test_locator_order(dirs, monkeypatch):
    name = "toyset"
    shared = _make(dirs["cwd_shared"], name)
    assert locate_dataset(name) == shared
    cwd_data = _make(dirs["cwd_data"], name)
    assert locate_dataset(name) == cwd_data  # ./data beats ../shared/data
    env = _make(dirs["env"], name)
    monkeypatch.setenv("DPCDVAE_DATA", str(dirs["env"]))
    assert locate_dataset(name) == env  # $DPCDVAE_DATA beats ./data
    explicit = _make(dirs["explicit"], name)
    assert locate_dataset(name, root=dirs["explicit"]) == explicit  # explicit beats everything
    assert locate_dataset(name, root=explicit) == explicit  # the dataset directory itself is accepted


def test_env_without_dataset_falls_through(dirs, monkeypatch):
    shared = _make(dirs["cwd_shared"], "toyset")
    dirs["env"].mkdir()
    monkeypatch.setenv("DPCDVAE_DATA", str(dirs["env"]))
    assert locate_dataset("toyset") == shared


def test_explicit_root_is_authoritative(dirs):
    _make(dirs["cwd_shared"], "toyset")
    dirs["explicit"].mkdir()
    with pytest.raises(DatasetNotFoundError) as ei:
        locate_dataset("toyset", root=dirs["explicit"])
    assert str(dirs["explicit"]) in str(ei.value)


def test_repository_relative_candidates(dirs):
    roots = [str(p) for p, _ in candidate_roots()]
    repo = Path(locator.__file__).resolve().parents[2]
    assert str(repo / "data") in roots
    assert str(repo.parent / "shared" / "data") in roots
    # ./data comes before any ../shared/data
    assert roots.index(str(dirs["cwd_data"])) < roots.index(str(repo.parent / "shared" / "data"))


def test_missing_dataset_message_lists_places_and_fix(dirs, monkeypatch):
    monkeypatch.setenv("DPCDVAE_DATA", str(dirs["env"]))
    (dirs["cwd_shared"] / "perov_5").mkdir(parents=True)  # exists but no CSV: not the dataset
    (dirs["cwd_shared"] / "perov_5" / "README.md").write_text("x")
    monkeypatch.setattr(locator, "_REPO_ROOT", dirs["proj"] / "nowhere")  # only cwd-relative candidates
    with pytest.raises(DatasetNotFoundError) as ei:
        locate_dataset("perov_5")
    msg = str(ei.value)
    for p in (dirs["env"], dirs["cwd_data"], dirs["cwd_shared"]):
        assert str(p / "perov_5") in msg
    assert "holds no train/val/test.csv" in msg
    assert "dpcdvae data download perov_5" in msg and "DPCDVAE_DATA" in msg
    assert isinstance(ei.value, FileNotFoundError)
    assert available_splits("perov_5") == []


def test_available_splits_and_absent_split(dirs):
    _make(dirs["cwd_data"], "carbonish", splits=("val", "test"))
    assert available_splits("carbonish") == ["val", "test"]
    assert split_path("carbonish", "val").name == "val.csv"
    with pytest.raises(DatasetNotFoundError, match="split 'train'.*absent.*present.*val, test.*train_split='val'"):
        split_path("carbonish", "train")
    with pytest.raises(ValueError):
        split_path("carbonish", "training")


@pytest.mark.shared_data
def test_shared_data_found_from_any_cwd(shared_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DPCDVAE_DATA", raising=False)
    assert locate_dataset("perov_5").resolve() == (shared_data_dir / "perov_5").resolve()
    assert available_splits("perov_5") == ["train", "val", "test"]
    assert available_splits("carbon_24") == ["val", "test"]
    assert available_splits("mp_20") == []


# --------------------------------------------------------------------------------------------------- download

GOOD_CSV = b",material_id,cif,heat_ref\n0,m0,\"data_x\n\",1.0\n"


class _Resp(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def test_download_offline_clear_error(tmp_path):
    # an unreachable local port behaves like being offline, on any machine, within the short timeout
    with pytest.raises(DownloadError) as ei:
        download("perov_5", dest=tmp_path, timeout=2, url_template="http://127.0.0.1:9/{name}/{split}.csv")
    msg = str(ei.value)
    assert "offline" in msg and "DPCDVAE_DATA" in msg and "dpcdvae data download perov_5" in msg
    assert not any((tmp_path / "perov_5").glob("*.csv"))


def test_download_dns_failure_is_clear(tmp_path, monkeypatch):
    def fail(url, timeout):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(locator, "_open_url", fail)
    with pytest.raises(DownloadError, match="raw.githubusercontent.com.*offline"):
        download("carbon_24", dest=tmp_path, timeout=1)


def test_download_writes_atomically(tmp_path, monkeypatch):
    seen = []

    def fake(url, timeout):
        seen.append(url)
        return _Resp(GOOD_CSV)

    monkeypatch.setattr(locator, "_open_url", fake)
    out = download("perov_5", dest=tmp_path)
    assert out == tmp_path / "perov_5"
    assert sorted(p.name for p in out.iterdir()) == ["test.csv", "train.csv", "val.csv"]  # no temp files left
    assert (out / "val.csv").read_bytes() == GOOD_CSV
    assert seen[0] == "https://raw.githubusercontent.com/txie-93/cdvae/main/data/perov_5/train.csv"
    # existing files are kept unless overwrite=True
    seen.clear()
    download("perov_5", dest=tmp_path)
    assert seen == []
    download("perov_5", dest=tmp_path, splits=["val"], overwrite=True)
    assert len(seen) == 1


def test_download_rejects_non_csv_and_http_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(locator, "_open_url", lambda url, timeout: _Resp(b"<html>rate limited</html>"))
    with pytest.raises(DownloadError, match="did not return a CDVAE CSV"):
        download("mp_20", dest=tmp_path)
    assert not (tmp_path / "mp_20" / "train.csv").exists()

    def http404(url, timeout):
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)

    monkeypatch.setattr(locator, "_open_url", http404)
    with pytest.raises(DownloadError, match="HTTP 404"):
        download("mp_20", dest=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        download("nope", dest=tmp_path)
    with pytest.raises(DownloadError, match="generated locally"):
        download("demo_synthetic_perovskites", dest=tmp_path)
