"""EDM diffusion components: noise schedules, samplers and training losses.

Schedules and solvers are separate pure functions (k-diffusion style): build a
schedule with :func:`karras_sigmas`, integrate it with
:func:`edm_heun_sampler`, or do both with :func:`edm_sample`.
"""

from stormcast_plugin.diffusion.losses import (
    edm_loss,
    edm_loss_weight,
    edm_precondition_coefficients,
    regression_loss,
    sample_training_sigma,
)
from stormcast_plugin.diffusion.samplers import (
    Denoiser,
    edm_heun_sampler,
    edm_sample,
    make_generators,
    randn_per_sample,
)
from stormcast_plugin.diffusion.schedules import karras_sigmas

__all__ = [
    "Denoiser",
    "edm_heun_sampler",
    "edm_loss",
    "edm_loss_weight",
    "edm_precondition_coefficients",
    "edm_sample",
    "karras_sigmas",
    "make_generators",
    "randn_per_sample",
    "regression_loss",
    "sample_training_sigma",
]
