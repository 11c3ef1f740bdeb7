"""dpcdvae.models: the generative models and how they are built and loaded.

- :class:`DPCDVAE` (:mod:`.dpcdvae`): the paper's model (VAE heads + DDPM on fractional coordinates);
- :class:`CDVAE` (:mod:`.cdvae`): the CDVAE baseline (score matching on Cartesian positions, annealed Langevin);
- :class:`SampleOutput` (:mod:`.output`): what their samplers return;
- :func:`build_model` (:mod:`.registry`): config -> untrained model; :func:`load_model` (:mod:`.checkpoint`): a
  training checkpoint or ``"pretrained:<name>"`` -> trained model; :mod:`.pretrained`: the shipped weights.

Each model says which samplers it runs (``supported_samplers``, names from :mod:`dpcdvae.diffusion.samplers`) and
which it uses by default (``default_sampler``).
"""
from .cdvae import CDVAE
from .checkpoint import load_model
from .dpcdvae import DPCDVAE, INITIAL_TYPES, initial_type_counts
from .output import SampleOutput, concat_outputs
from .pretrained import is_pretrained, list_pretrained, load_pretrained, pretrained_card
from .registry import MODEL_KINDS, build_model

__all__ = ["DPCDVAE", "CDVAE", "SampleOutput", "concat_outputs", "build_model", "load_model", "MODEL_KINDS",
           "INITIAL_TYPES", "initial_type_counts", "is_pretrained", "list_pretrained", "load_pretrained",
           "pretrained_card"]
