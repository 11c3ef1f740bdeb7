"""The teaching figures of notebook 06: the noise schedules, the prior mismatch, what eps_theta predicts, samplers
with an exact noise predictor, few-step vs all-step sampling."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..diffusion.schedules import make_betas
from ._style import _OURS_COLOR, finish

__all__ = ["plot_schedules", "plot_prior_mismatch", "plot_eps_study", "plot_oracle_study", "plot_steps_study"]


def plot_schedules(T: int = 1000, kinds: Sequence[str] = ("sigmoid", "linear", "cosine")):
    """The noise schedules side by side: ``beta_t``, the signal ``sqrt(abar_t)`` and the noise ``sqrt(1-abar_t)``
    (both in units of the fractional coordinate) versus ``t``; the sigmoid schedule (published DP-CDVAE code)
    keeps ``sqrt(abar_T) ~= 0.15`` of the signal at ``t = T``."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13.0, 3.3))
    t = np.arange(1, T + 1)
    for k, kind in enumerate(kinds):
        b = make_betas(kind, T).numpy()
        abar = np.cumprod(1 - b)
        style = dict(color=f"C{k}", lw=2.0 if kind == "sigmoid" else 1.3)
        axes[0].plot(t, b, label=kind, **style)
        axes[1].plot(t, np.sqrt(abar), label=f"{kind}: " + r"$\sqrt{\bar\alpha_T}$" + f" = {np.sqrt(abar[-1]):.3f}",
                     **style)
        axes[2].plot(t, np.sqrt(1 - abar), label=kind, **style)
    axes[0].set_yscale("log")
    axes[0].set_ylabel(r"$\beta_t = 1 - \alpha_t$")
    axes[1].set_ylabel(r"signal $\sqrt{\bar\alpha_t}$ (fraction of $r_0$ kept)")
    axes[2].set_ylabel(r"noise std $\sqrt{1-\bar\alpha_t}$ (fractional units)")
    for ax, name in zip(axes, ("variance per step", "signal kept (Eq. 2)", "noise added (Eq. 2)")):
        ax.set_xlabel(f"diffusion step t (T = {T})")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return finish(fig)


def plot_prior_mismatch(df):
    """Total-variation distance between the forward marginal q(r_t | r_0) and the sampling prior, with and without
    the periodic wrap, versus ``t`` (``df`` from the prior-mismatch cell of notebook 06: columns ``t``,
    ``schedule``, ``tv_unwrapped``, ``tv_wrapped``)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for k, (kind, g) in enumerate(df.groupby("schedule", sort=False)):
        ax.plot(g["t"], g["tv_unwrapped"], color=f"C{k}", ls="--", label=f"{kind}: unwrapped r_t vs N(0, 1)")
        ax.plot(g["t"], g["tv_wrapped"].clip(lower=1e-16), color=f"C{k}", ls="-",
                label=r"%s: wrapped $\pi(r_t)$ vs $\pi$(N(0, 1))" % kind)
    ax.set_yscale("log")
    ax.set_xlabel("diffusion step t")
    ax.set_ylabel("total-variation distance")
    ax.set_title("How close the end of the forward process is to the prior we sample from", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return finish(fig)


def plot_eps_study(df, arrows: Optional[dict] = None, plane: tuple[int, int] = (0, 1)):
    """What eps_theta predicts. Left: mean squared error of the predicted noise versus ``t`` (model vs the
    trivial predictor 0, whose MSE is E[eps^2] = 1). Right (``arrows`` given): at one ``t``, the true noise
    (black) and the prediction (red) drawn from each wrapped position ``pi(r_t)`` toward where ``r_0`` is,
    i.e. the arrows are ``-sqrt(1-abar_t) eps`` in fractional units."""
    import matplotlib.pyplot as plt

    n = 2 if arrows else 1
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 3.6), squeeze=False)
    ax = axes[0][0]
    ax.plot(df["t"], df["mse_model"], "o-", color=_OURS_COLOR, ms=3, label=r"$\epsilon_\theta$ (trained model)")
    ax.plot(df["t"], df["mse_zero"], "s--", color="0.4", ms=3, label=r"predict 0 ($E[\epsilon^2]$)")
    if "mse_wrap_target" in df:
        ax.plot(df["t"], df["mse_wrap_target"], "^:", color="C2", ms=3,
                label=r"ideal wrap-relative target $\epsilon_w$")
    ax.set_xlabel("diffusion step t")
    ax.set_ylabel(r"MSE per coordinate (fractional units$^2$)")
    ax.set_title(r"noise prediction error vs $t$", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if arrows:
        ax = axes[0][1]
        i, j = plane
        y = np.asarray(arrows["wrapped"])
        x0 = np.asarray(arrows["x0"])
        s = float(arrows["noise_scale"])
        ax.add_patch(__import__("matplotlib").patches.Rectangle((0, 0), 1, 1, fill=False, ls="--", color="0.3"))
        e, p = np.asarray(arrows["eps"]), np.asarray(arrows["eps_pred"])
        ax.quiver(y[:, i], y[:, j], -s * e[:, i], -s * e[:, j], angles="xy", scale_units="xy", scale=1,
                  color="k", width=0.009, label=r"true $-\sqrt{1-\bar\alpha_t}\,\epsilon$", zorder=4)
        ax.quiver(y[:, i], y[:, j], -s * p[:, i], -s * p[:, j], angles="xy", scale_units="xy", scale=1,
                  color=_OURS_COLOR, width=0.004, label=r"predicted $-\sqrt{1-\bar\alpha_t}\,\epsilon_\theta$",
                  zorder=5)
        ax.scatter(y[:, i], y[:, j], s=18, c="0.5", label=r"$\pi(r_t)$ (network input)", zorder=3)
        ax.scatter(x0[:, i], x0[:, j], s=30, marker="x", c="C0", label=r"$r_0$ (clean)", zorder=3)
        ax.set_aspect("equal")
        pts = np.concatenate([y[:, [i, j]], x0[:, [i, j]], (y - s * e)[:, [i, j]], (y - s * p)[:, [i, j]],
                              np.array([[0.0, 0.0], [1.0, 1.0]])])
        lo, hi = float(pts.min()) - 0.1, float(pts.max()) + 0.1
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(f"fractional {'abc'[i]}")
        ax.set_ylabel(f"fractional {'abc'[j]}")
        ax.set_title(f"t = {arrows['t']}: " + r"$\pi(r_t) - \sqrt{1-\bar\alpha_t}\,\epsilon = \sqrt{\bar\alpha_t}\,r_0$"
                     + " + lattice vector", fontsize=8)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return finish(fig)


def plot_oracle_study(df, samples: Optional[dict] = None, s0: Optional[float] = None):
    """Samplers driven by a perfect (oracle) noise predictor. Left: spread (std) of the final samples around the
    true positions versus the number of network calls, with the data's true spread ``s0``; right: histograms of
    the final displacements (fractional units) for a few samplers. ``df`` (columns ``sampler``, ``steps``, ``std``)
    and ``samples`` (label -> displacements) come from the oracle cell of notebook 06."""
    import matplotlib.pyplot as plt

    n = 2 if samples else 1
    fig, axes = plt.subplots(1, n, figsize=(5.4 * n, 3.5), squeeze=False)
    ax = axes[0][0]
    for k, (name, g) in enumerate(df.groupby("sampler", sort=False)):
        ax.plot(g["steps"], g["std"], "o-" if len(g) > 1 else "D", ms=5, color=f"C{k}", label=name)
    if s0 is not None:
        ax.axhline(s0, color="k", ls="--", lw=1.0, label=f"data spread s0 = {s0:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("network calls (sampling steps)")
    ax.set_ylabel(r"spread of final $r_0$ around its site (fractional)")
    ax.set_title("sample spread with an exact noise predictor", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    if samples:
        ax = axes[0][1]
        allv = np.concatenate([np.asarray(v).ravel() for v in samples.values()])
        lim = 5 * s0 if s0 else float(np.quantile(np.abs(allv), 0.99))
        bins = np.linspace(-lim, lim, 50)
        for k, (name, v) in enumerate(samples.items()):
            ax.hist(np.asarray(v).ravel(), bins=bins, density=True, histtype="step", lw=1.5, label=name,
                    color=f"C{k}")
        if s0:
            xs = np.linspace(-lim, lim, 200)
            ax.plot(xs, np.exp(-xs ** 2 / (2 * s0 ** 2)) / np.sqrt(2 * np.pi * s0 ** 2), "k--", lw=1.0,
                    label="data distribution")
        ax.set_xlabel("final displacement from true position (fractional)")
        ax.set_ylabel("probability density")
        ax.set_xlim(-lim, lim)
        ax.set_title("distribution of the samples", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return finish(fig)


def plot_steps_study(df, T: Optional[int] = None):
    """Few-step vs all-step sampling with a trained model (``df`` from :func:`dpcdvae.notebooks.steps_study`):
    wall time per crystal and the distance (A) of each few-step result to the paper's Eq. 7 ``T``-step result,
    versus the number of network calls, one line per sampler (the Eq. 7 reference is a single point)."""
    import matplotlib.pyplot as plt

    names = {"eq7": f"Eq. 7, {T or 'T'} steps (reference)", "strided_eq7": "strided Eq. 7",
             "strided": "strided DDIM", "ddim": "strided DDIM"}
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.3))
    groups = df.groupby("sampler", sort=False) if "sampler" in df else [("strided", df)]
    for k, (name, g) in enumerate(groups):
        style = "D" if len(g) == 1 else "o-"
        label = names.get(name, name)
        axes[0].plot(g["steps"], g["ms_per_crystal"], style, color=f"C{k}", label=label)
        axes[1].plot(g["steps"], g["dist_to_full_A"], style, color=f"C{k}", label=label)
    axes[0].set_ylabel("sampling time per crystal (ms, this machine)")
    axes[1].set_ylabel(f"mean atom distance to Eq. 7, {T or 'T'} steps (Å)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("network calls (sampling steps)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    return finish(fig)
