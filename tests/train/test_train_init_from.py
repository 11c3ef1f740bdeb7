"""``train(init_from=...)`` / ``dpcdvae train --init-from``: a run starts from another checkpoint's weights."""
from __future__ import annotations

import pytest
import torch

from dpcdvae.config import load_config
from dpcdvae.utils.errors import ConfigError
from dpcdvae.train import DPCDVAEModule, init_weights, train


def test_init_from_copies_the_weights_and_checks_the_architecture(demo_root, tmp_path):
    src = train("demo_synthetic_perovskites", "tiny", out=tmp_path / "src", root=str(demo_root), max_epochs=1, progress=False, seed=1)
    cfg = load_config("tiny", overrides={"model.eq7_consistency_prob": 0.5, "model.eq7_consistency_t": [30, 60]})
    torch.manual_seed(123)
    module = DPCDVAEModule(cfg.to_dict())
    from dpcdvae.models import load_model
    ref = load_model(src["best"], ema=True).state_dict()
    before = module.model.state_dict()
    assert any(not torch.equal(before[k], ref[k]) for k in ref if isinstance(ref[k], torch.Tensor))
    init_weights(module, src["best"])
    after = module.model.state_dict()
    for k, v in ref.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(after[k], v), k
    # the EMA restarts from the copied weights
    if module.ema is not None:
        ema = dict(module.ema.module.state_dict())
        k = next(iter(k for k in ref if k.endswith("weight")))
        assert torch.equal(ema[k], ref[k])
    other = DPCDVAEModule(load_config("tiny", overrides={"model.latent_dim": 16}).to_dict())
    with pytest.raises(ConfigError, match="architecture differs"):
        init_weights(other, src["best"])
    # a run started from the weights trains (finite validation loss)
    res = train("demo_synthetic_perovskites", "tiny", out=tmp_path / "ft", root=str(demo_root), max_epochs=1, progress=False,
                init_from=src["best"])
    assert res["best_val_loss"] is not None and res["best_val_loss"] == res["best_val_loss"]
