"""dpcdvae._fileio: atomic writes leave the old file or the complete new one, and no temporary file."""
import pytest

from dpcdvae._fileio import atomic_open, atomic_write_bytes, atomic_write_text


def test_atomic_write_text_and_bytes(tmp_path):
    p = tmp_path / "sub" / "a.json"
    assert atomic_write_text(p, '{"x": 1}') == p
    assert p.read_text() == '{"x": 1}'
    atomic_write_bytes(p, b"new", fsync=True)
    assert p.read_bytes() == b"new"
    assert [f.name for f in p.parent.iterdir()] == ["a.json"]


def test_interrupted_write_keeps_old_file(tmp_path):
    p = tmp_path / "ckpt.pt"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_open(p, "wb") as fh:
            fh.write(b"half of the new")
            raise RuntimeError("crash mid-write")
    assert p.read_bytes() == b"old"
    assert [f.name for f in tmp_path.iterdir()] == ["ckpt.pt"]


def test_bad_mode(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(tmp_path / "x", "a"):
            pass
