"""The latent-space explorer (dpcdvae.workflows.latent, notebook 07): interpolation, 2-D projections, encoding a split and
decoding a path, on numbers the tests make and on a tiny untrained model with the SYNTHETIC demo crystals."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dpcdvae.workflows import latent
from dpcdvae.config import load_config
from dpcdvae.data import LatticeScaler
from dpcdvae.models import DPCDVAE, SampleOutput

DEMO_SIZES = (24, 4, 12)


@pytest.fixture(scope="module")
def tiny(demo_train):
    cfg = load_config("tiny")
    torch.manual_seed(0)
    return DPCDVAE(cfg.model, LatticeScaler(cfg.model.lattice_scaler).fit(demo_train)).eval()


# ---------------------------------------------------------------------------------------------------- interpolate
@pytest.mark.parametrize("kind", ["linear", "slerp"])
def test_interpolate_endpoints_exact(kind):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=16), rng.normal(size=16)
    zs = latent.interpolate(a, b, 7, kind=kind)
    assert zs.shape == (7, 16)
    assert np.array_equal(zs[0], a) and np.array_equal(zs[-1], b)


def test_linear_points_lie_on_the_segment_evenly():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=8), rng.normal(size=8)
    zs = latent.interpolate(a, b, 5)
    s = latent.path_points(5)
    np.testing.assert_allclose(zs, a + s[:, None] * (b - a), atol=1e-12)
    steps = np.linalg.norm(np.diff(zs, axis=0), axis=1)
    np.testing.assert_allclose(steps, np.linalg.norm(b - a) / 4, rtol=1e-9)


def test_slerp_keeps_norms_between_the_endpoints():
    a, b = np.array([3.0, 0.0, 0.0]), np.array([0.0, 5.0, 0.0])
    zs = latent.interpolate(a, b, 11, kind="slerp")
    norms = np.linalg.norm(zs, axis=1)
    np.testing.assert_allclose(norms, np.linspace(3, 5, 11), atol=1e-9)  # linear in norm, on the arc
    lin = latent.interpolate(a, b, 11)
    assert np.linalg.norm(lin[5]) < norms[5]  # the straight line cuts the corner towards the origin
    with pytest.raises(ValueError):
        latent.interpolate(a, b, 3, kind="cubic")


# ---------------------------------------------------------------------------------------------------- project_2d
def test_pca_projection_shape_determinism_and_ratios():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(60, 12)) * np.linspace(3, 0.1, 12)  # decreasing variance per dimension
    p = latent.project_2d(z)
    xy, ratio = p  # unpacks as (xy, explained)
    assert xy.shape == (60, 2) and ratio.shape == (2,)
    assert ratio[0] >= ratio[1] > 0 and ratio.sum() <= 1 + 1e-12
    q = latent.project_2d(z.copy())
    assert np.array_equal(p.xy, q.xy)
    # the same picture whatever the SVD's signs: the largest loading of each axis is positive
    for k in range(2):
        assert p.components[k, np.argmax(np.abs(p.components[k]))] > 0
    # the path lands on the same axes: transform of the data itself gives xy back
    np.testing.assert_allclose(p.transform(z), p.xy, atol=1e-9)
    e = latent.project_2d(z, extra=z[:3])
    np.testing.assert_allclose(e.extra_xy, p.xy[:3], atol=1e-9)
    assert "% of the variance of z" in p.axis_labels()[0]


def test_pca_of_a_plane_explains_everything():
    rng = np.random.default_rng(3)
    basis = np.linalg.qr(rng.normal(size=(10, 2)))[0].T  # 2 orthonormal directions in 10-D
    z = rng.normal(size=(40, 2)) @ basis
    assert latent.project_2d(z).explained.sum() == pytest.approx(1.0)


def test_tsne_is_seeded():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(4)
    z = rng.normal(size=(30, 6))
    a = latent.project_2d(z, "tsne", seed=0, extra=z[:2] + 0.01)
    b = latent.project_2d(z, "tsne", seed=0, extra=z[:2] + 0.01)
    assert a.xy.shape == (30, 2) and a.extra_xy.shape == (2, 2) and a.explained is None
    np.testing.assert_allclose(a.xy, b.xy)
    with pytest.raises(ValueError):
        a.transform(z)


# ---------------------------------------------------------------------------------------------------- model side
def test_encode_split_on_the_demo_data(tiny, demo_root):
    enc = latent.encode_split(tiny, "demo_synthetic_perovskites", "test", limit=10, batch_size=4, root=demo_root)
    n = 10
    assert enc["z"].shape == (n, tiny.cfg.latent_dim) and enc["z"].dtype == np.float32
    assert enc["sigma"].shape == (n, tiny.cfg.latent_dim) and (enc["sigma"] > 0).all()
    assert len(enc["material_id"]) == len(enc["structures"]) == len(enc["formula"]) == n
    assert len(enc["main_element"]) == len(enc["elements"]) == n
    assert enc["num_atoms"].tolist() == [len(s) for s in enc["structures"]]
    assert enc["y"].shape == (n,) and enc["prop"] == "heat_ref" and enc["synthetic"]
    assert all(m in e for m, e in zip(enc["main_element"], enc["elements"]))
    # posterior means: the same numbers in any batch size, and what model.encode gives
    again = latent.encode_split(tiny, "demo_synthetic_perovskites", "test", limit=10, batch_size=10, root=demo_root)
    np.testing.assert_allclose(enc["z"], again["z"], atol=1e-5)
    drawn = latent.encode_split(tiny, "demo_synthetic_perovskites", "test", limit=10, root=demo_root,
                                use_mean=False, seed=1)
    assert not np.allclose(drawn["z"], enc["z"])
    summary = latent.latent_summary(enc)
    assert int(summary["crystals"].iloc[0]) == n

    a, b = latent.pick_pair(enc, 0)
    assert a == 0 and b != 0
    if len(set(enc["main_element"])) > 1:
        assert enc["main_element"][b] != enc["main_element"][0]
    assert latent.pick_pair(enc, 1, 3) == (1, 3)
    with pytest.raises(IndexError):
        latent.pick_pair(enc, 0, n)
    pair = latent.describe_pair(enc, a, b)
    assert list(pair.index) == ["A", "B"] and pair.attrs["distance"] > 0


def test_decode_path_one_crystal_per_point(tiny):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, tiny.cfg.latent_dim, generator=g).numpy()
    zs = latent.interpolate(z[0], z[1], 4)
    dec = latent.decode_path(tiny, zs, sampler="strided_eq7", steps=5, seed=0)
    assert isinstance(dec.out, SampleOutput) and len(dec) == len(dec.out) == 4
    assert len(dec.out.validity()) == 4 and len(dec.table) == 4
    assert {"s", "N_a", "p(N_a)", "formula", "valid", "a (A)", "alpha (deg)", "composition head"} <= set(dec.table)
    assert dec.table["s"].tolist() == [0.0, 0.333, 0.667, 1.0]
    assert dec.heads["lengths"].shape == (4, 3) and dec.heads["comp_probs"].shape == (4, 100)
    np.testing.assert_allclose(dec.heads["na_probs"].sum(1), 1, atol=1e-5)
    assert dec.table["N_a"].tolist() == dec.out.num_atoms.tolist()  # the decoded N_a is the head's argmax
    np.testing.assert_allclose(dec.heads["lengths"], dec.out.lengths.numpy(), rtol=1e-5)
    # same seed, same z -> the same crystal, whether decoded alone or on a path
    alone = latent.decode_path(tiny, zs[2:3], sampler="strided_eq7", steps=5, seed=0)
    np.testing.assert_allclose(alone.out.frac_coords.numpy(), dec.out.frac_coords[
        int(dec.out.num_atoms[:2].sum()):int(dec.out.num_atoms[:3].sum())].numpy(), atol=1e-6)
    batched = latent.decode_path(tiny, zs, sampler="strided_eq7", steps=5, seed=0, same_noise=False)
    assert len(batched) == 4
    ch = latent.path_changes(dec)
    assert list(ch.columns)[:5] == ["from", "to", "s", "what", "before"]
    report = latent.path_report(dec, targets=("A", "B"))
    assert "points decode into valid crystals" in report


def test_pictures_draw(tiny, demo_root):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dpcdvae import viz
    from dpcdvae.notebooks.widgets import draw_path_point

    enc = latent.encode_split(tiny, "demo_synthetic_perovskites", "test", limit=8, root=demo_root)
    zs = latent.interpolate(enc["z"][0], enc["z"][1], 3)
    proj = latent.project_2d(enc["z"], extra=zs)
    dec = latent.decode_path(tiny, zs, steps=3)
    for fig in (viz.plot_latent_panels(proj, enc, path_xy=proj.extra_xy), viz.plot_path_structures(dec),
                viz.plot_path_heads(dec), draw_path_point(dec, 1, proj, enc)):
        assert fig.axes
        plt.close(fig)
    assert "SYNTHETIC" in viz.plot_latent_panels(proj, enc)._suptitle.get_text()
    plt.close("all")
