"""Experiment (its sampler is not in the package): does finishing the reverse process with standard DDPM steps keep
Perov-5's off-site displacements that Eq. 7 removes (``experiments/probe_displacements.py``)?

The sampler defined here runs Eq. 7 down to step ``switch`` (exclusive), re-noises the clean estimate of step
``switch`` to the marginal of step ``switch - 1`` (``sqrt(abar) x0_hat + sqrt(1 - abar) eps'``) and ends with
Eq. 6. For each ``--switch`` it reconstructs the first ``--n`` test crystals (z sampled, seed 0, the model's own
initial types) and prints one JSON line with the match rate and <delta_rms>; ``--switch 0`` is plain Eq. 7 and
``--switch 1001`` plain Eq. 6 for T = 1000. Measured on 2026-12-06 with the shipped perov_5: no switch helps
(docs/lab-notes/results-log.md, "Where Perov-5's <delta_rms> comes from").

    python experiments/eq7_eq6_switch.py --checkpoint pretrained:perov_5 --n 200 --switch 0 100 200 300 500 1001
"""
from __future__ import annotations

import argparse
import json

from dpcdvae.diffusion.samplers import Eq6Sampler, Eq7Sampler, StepOutput, register_sampler


class _Eq7ThenEq6(Eq7Sampler):
    switch = 300

    def step(self, scheduler, eps_pred, t, x_t, noise, t_prev=None) -> StepOutput:
        self._check_prev(scheduler, t, t_prev)
        tt = scheduler.as_timesteps(t)
        tmax = int(tt.max())
        if tmax > self.switch:
            return Eq7Sampler.step(self, scheduler, eps_pred, t, x_t, noise)
        if tmax == self.switch:
            x0_hat = self._x0_hat(scheduler, eps_pred, t, x_t)
            abar_prev = scheduler.coef("abar", tt - 1, x_t)
            return StepOutput(abar_prev.sqrt() * x0_hat + (1.0 - abar_prev).sqrt() * noise, x0_hat)
        return Eq6Sampler.step(self, scheduler, eps_pred, t, x_t, noise)


def sampler_name(switch: int) -> str:
    """Register (once) the sampler for ``switch`` and return its name (``eq7`` for 0)."""
    if switch <= 0:
        return "eq7"
    name = f"x_eq7_eq6_{switch}"
    from dpcdvae.diffusion.samplers import SAMPLERS

    if name not in SAMPLERS:
        register_sampler(type(f"Eq7Eq6S{switch}", (_Eq7ThenEq6,), {"name": name, "switch": switch,
                                                                     "description": "experiment"}))
    return name


def main():
    from dpcdvae.workflows import reconstruct_split

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="pretrained:perov_5")
    p.add_argument("--dataset", default="perov_5")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--switch", type=int, nargs="+", default=[0, 100, 300])
    a = p.parse_args()
    for sw in a.switch:
        r = reconstruct_split(a.checkpoint, None, dataset=a.dataset, split="test", sampler=sampler_name(sw), seed=0,
                              limit=a.n, batch_size=a.n, n_workers=1, progress=False)
        print(json.dumps({"bench": "eq7_eq6_switch", "switch": sw, "n": a.n,
                          **{k: r.summary()[k] for k in ("match_rate", "delta_rms", "validity", "sample_wall_s")}}), flush=True)


if __name__ == "__main__":
    main()
