"""A dataset resolved once (issue 29, part 3): :func:`dpcdvae.data.resolve_dataset` -> :class:`DatasetHandle` (the
registry's spec + the folder on disk), taken by the loaders, the config, ``train()`` and the CLI; one alias table
(the registry's); the demo's builder registered as a callable by its own module."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dpcdvae.data import DEMO_NAME, DatasetNotFoundError, make_demo_dataset
from dpcdvae.data import registry
from dpcdvae.data import resolve as resolve_mod
from dpcdvae.data.registry import builder_of, get_spec, known_datasets
from dpcdvae.data.resolve import DatasetHandle, UnknownDatasetNameError, resolve_dataset
from dpcdvae.utils.errors import UnknownDatasetError, UserError


def _all_registered_folders(root: Path) -> Path:
    """``root/<name>/val.csv`` for every registered dataset (the locator only looks at file names)."""
    for name in known_datasets():
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "val.csv").write_text(",material_id,cif\n")
    return root


@pytest.fixture
def own_folder(tmp_path) -> Path:
    """A dataset of one's own: a folder ``my_set`` with a few rows per split (5-atom crystals), not registered."""
    made = make_demo_dataset(tmp_path / "gen", n=(16, 4, 4))
    folder = tmp_path / "my_set"
    shutil.copytree(made, folder)
    (folder / "dataset.json").unlink()  # a plain folder of CSVs, not marked synthetic
    return folder


# ------------------------------------------------------------------------------------------------ the handle
@pytest.mark.parametrize("given", ["perov_5", "Perov-5", "PEROV5", "perovskite", "perov"])
def test_alias_resolves_case_insensitively_to_the_spec_and_its_folder(tmp_path, given):
    root = _all_registered_folders(tmp_path / "data")
    h = resolve_dataset(given, root=root)
    assert isinstance(h, DatasetHandle)
    assert h.name == "perov_5" and h.given == given
    assert h.spec is get_spec("perov_5") and h.max_atoms == 20
    assert h.directory == root / "perov_5"
    assert h.split_file("val") == root / "perov_5" / "val.csv"
    assert resolve_dataset(h) is h  # a handle is never looked up again


def test_a_folder_path_works(own_folder):
    h = resolve_dataset(str(own_folder))
    assert h.directory == own_folder and h.name == str(own_folder)
    assert h.spec.name == "my_set" and h.max_atoms == 5 and not h.synthetic  # computed from its crystals
    assert h.splits() == ["train", "val", "test"]
    # the loaders take the handle as it is
    from dpcdvae.data import load_split

    ds = load_split(h, "val", graph="none", progress=False, num_workers=1)
    assert len(ds) == 4 and ds.name == str(own_folder)


def test_an_unknown_name_is_one_line_naming_the_choices(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnknownDatasetNameError) as info:
        resolve_dataset("qm9")
    exc = info.value
    msg = str(exc)
    assert "\n" not in msg and "'qm9'" in msg
    assert all(name in msg for name in known_datasets()) and "alias demo" in msg
    # a user error (one line on the command line) and, for old callers, a DatasetNotFoundError
    assert isinstance(exc, UserError) and isinstance(exc, UnknownDatasetError) and isinstance(exc, DatasetNotFoundError)
    # a path that is not there keeps the locator's message (where it looked)
    with pytest.raises(DatasetNotFoundError, match="Looked in"):
        resolve_dataset(str(tmp_path / "nothing_here"))


def test_the_demo_builder_is_a_callable_registered_by_its_module():
    from dpcdvae.data.demo import ensure_demo_dataset

    spec = get_spec("demo")
    assert builder_of(spec) is ensure_demo_dataset
    assert not isinstance(spec.builder, str)  # no "module:function" string in the registry
    assert builder_of(get_spec("perov_5")) is None


# ------------------------------------------------------------------------------------------------ train()
def _count(monkeypatch, module, attr, calls: list, keep=lambda *a, **k: True):
    real = getattr(module, attr)

    def wrapper(*args, **kwargs):
        if keep(*args, **kwargs):
            calls.append(args[:1])
        return real(*args, **kwargs)

    monkeypatch.setattr(module, attr, wrapper)


def test_train_resolves_the_dataset_once(own_folder, tmp_path, monkeypatch):
    """Config + three splits of a folder dataset: one resolution, one location on disk, one spec computed."""
    import dpcdvae.data.dataset as dataset_mod
    import dpcdvae.data.locator as locator_mod
    import dpcdvae.train as train_mod

    resolutions, located, sized = [], [], []
    not_a_handle = lambda x, *a, **k: not isinstance(x, DatasetHandle)  # noqa: E731
    for mod in (resolve_mod, dataset_mod, train_mod):  # every module that calls the resolver
        _count(monkeypatch, mod, "resolve_dataset", resolutions, keep=not_a_handle)
    for mod in (resolve_mod, locator_mod):
        _count(monkeypatch, mod, "locate_dataset", located)
    _count(monkeypatch, resolve_mod, "spec_for_folder", sized)

    res = train_mod.train(str(own_folder), "tiny", out=tmp_path / "run", max_epochs=1, progress=False,
                          overrides={"train.batch_size": 8, "train.limit_train": 8, "train.limit_val": 4})
    assert Path(res["best"]).is_file()
    assert len(resolutions) == 1, resolutions
    assert len(located) == 1, located  # before: the config, the splits' folder and each split looked it up again
    assert len(sized) == 1, sized
    import json

    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["dataset"] == str(own_folder) and meta["config"]["model"]["max_atoms"] == 5


# ------------------------------------------------------------------------------------------------ the CLI
def _every_alias():
    for name in known_datasets():
        spec = get_spec(name)
        for word in (name, *spec.aliases):
            yield word, name
        yield name.upper(), name


@pytest.mark.parametrize("word, name", list(_every_alias()))
def test_the_cli_accepts_every_alias_the_registry_lists(word, name, tmp_path, monkeypatch):
    import dpcdvae.train as train_mod
    from dpcdvae.cli import main

    root = _all_registered_folders(tmp_path / "data")
    seen = []
    monkeypatch.setattr(train_mod, "train", lambda dataset, **kw: seen.append((dataset, kw)))
    rc = main(["train", "--dataset", word, "--config", "tiny", "--out", str(tmp_path / "o"),
               "--data-root", str(root)])
    assert rc == 0 and len(seen) == 1
    handle = seen[0][0]
    assert isinstance(handle, DatasetHandle) and handle.name == name and handle.directory == root / name


def test_the_cli_refuses_an_unknown_dataset_in_one_line(tmp_path, monkeypatch, capsys):
    from dpcdvae.cli import main

    monkeypatch.chdir(tmp_path)
    rc = main(["train", "--dataset", "qm9", "--config", "tiny", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith("dpcdvae: error: --dataset qm9: unknown dataset 'qm9'")
    assert all(name in err for name in known_datasets())


def test_no_second_alias_table():
    """The command line, the workflows and the notebooks compare no dataset name with an alias themselves
    (``name in ("demo", ...)``, ``name == "perov-5"``): the registry's table is the only one."""
    import re

    pkg = Path(registry.__file__).resolve().parents[1]
    words = {w for n in known_datasets() for w in get_spec(n).aliases}
    offenders = []
    for path in [*(pkg / "cli").glob("*.py"), *(pkg / "workflows").glob("*.py"), *(pkg / "notebooks").glob("*.py")]:
        text = path.read_text()
        for w in sorted(words):
            if re.search(rf'(\bin \([^)]*|==\s*)"{re.escape(w)}"', text):
                offenders.append(f"{path.name}: {w}")
    assert not offenders, offenders
