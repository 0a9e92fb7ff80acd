"""The sampler adds nothing of its own: with a denoiser that outputs zero, a
rollout is the regression mean rollout exactly, so any power a forecast has
beyond the mean (at the edges or anywhere) comes from the denoiser."""

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch

from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions
from stormcast_plugin.models.px.stormcast import StormCast
from stormcast_plugin.run import fetch_state
from stormcast_plugin.testing import DemoConditioningSource, DemoStateSource, random_package
from stormcast_plugin.utils.grid import ModelGrid
from stormcast_plugin.utils.variables import INVARIANTS, PRESETS

T0 = np.datetime64("2024-05-01T00", "ns")
HOURS = 3
MEMBERS = 2


@pytest.fixture(scope="module")
def package():
    grid = ModelGrid.hrrr(rows=(500, 516), cols=(800, 816), name="test-16x16")
    pkg = random_package(PRESETS["tiny"]["state"], PRESETS["tiny"]["conditioning"], INVARIANTS, grid,
                         model_channels=8, channel_mult=(1, 2, 2), num_blocks=1, seed=5)
    # the correlated noise and a residual scale other than one take part too
    pkg.sampler = SamplerOptions.from_dict({**pkg.sampler.to_dict(), "noise_memory_h": 3.0})
    return pkg


def _rollout(package, *, zero_denoiser=False, regression_only=False):
    model = StormCast(package, DemoConditioningSource(package), seed=11, sampler_steps=3,
                      regression_only=regression_only)
    model.nets.diffusion.set_residual_scale(torch.full((len(package.state_variables),), 1.7))
    if zero_denoiser:  # on this model's networks only (a package may share its networks between models)
        model.nets = copy.deepcopy(model.nets)
        model.nets.diffusion.forward = lambda x, sigma, condition=None: torch.zeros_like(x.float())
    x, coords = fetch_state(DemoStateSource(package), [T0], list(package.state_variables), package.grid)
    xe = x.unsqueeze(0).repeat(MEMBERS, *[1] * x.ndim)
    ce = OrderedDict(ensemble=np.arange(MEMBERS))
    ce.update(coords)
    out = []
    for h, (y, _) in enumerate(model.create_iterator(xe, ce)):
        out.append(y.clone())
        if h == HOURS:
            break
    return torch.stack(out)  # [lead, member, time, lead_time, var, y, x]


def _edge_interior_power(increment: torch.Tensor, border: int = 4) -> tuple[float, float]:
    mask = torch.zeros(increment.shape[-2:], dtype=torch.bool)
    mask[:border] = mask[-border:] = True
    mask[:, :border] = mask[:, -border:] = True
    sq = increment.double() ** 2
    return float(sq[..., mask].mean()), float(sq[..., ~mask].mean())


def test_zero_denoiser_rollout_is_the_regression_mean(package):
    mean = _rollout(package, regression_only=True)
    zero = _rollout(package, zero_denoiser=True)
    sampled = _rollout(package)
    # the member and the hour loop, the noise memory and the residual scale add nothing by themselves
    assert torch.equal(zero, mean)
    edge, inner = _edge_interior_power(zero[1:] - mean[1:])
    assert edge == 0.0 and inner == 0.0
    # whereas a denoiser that does output something changes every hour after the first, at edges and inside
    edge, inner = _edge_interior_power(sampled[1:] - mean[1:])
    assert edge > 0.0 and inner > 0.0
