"""EDM diffusion components: noise schedules, solvers, per-member noise and training losses.

Schedules and solvers are separate pure functions (k-diffusion style): a
schedule (:func:`karras_sigmas`) makes the noise levels, a solver walks them
(:data:`SOLVERS`, by name: ``heun`` the reference, ``dpmpp_2m``,
``dpmpp_2m_sde``, ...), and :func:`edm_sample` does both. The per-member
generators (:func:`make_generators`, :func:`randn_per_sample`) make a member's
sample independent of the batch.
"""

from stormcast_plugin.diffusion.losses import (
    edm_loss,
    edm_loss_weight,
    edm_precondition_coefficients,
    regression_loss,
    sample_training_sigma,
)
from stormcast_plugin.diffusion.samplers import Denoiser, Generators, make_generators, randn_per_sample
from stormcast_plugin.diffusion.schedules import karras_sigmas
from stormcast_plugin.diffusion.solvers import (
    SOLVERS,
    Solver,
    dpmpp_2m_sampler,
    dpmpp_2m_sde_sampler,
    edm_euler_sampler,
    edm_heun_sampler,
    edm_sample,
    euler_ancestral_sampler,
    get_solver,
)

__all__ = [
    "SOLVERS",
    "Denoiser",
    "Generators",
    "Solver",
    "dpmpp_2m_sampler",
    "dpmpp_2m_sde_sampler",
    "edm_euler_sampler",
    "edm_heun_sampler",
    "edm_loss",
    "edm_loss_weight",
    "edm_precondition_coefficients",
    "edm_sample",
    "euler_ancestral_sampler",
    "get_solver",
    "karras_sigmas",
    "make_generators",
    "randn_per_sample",
    "regression_loss",
    "sample_training_sigma",
]
