"""Per-member noise: the rollout's noise memory equals the stateless sums, and draws one field per step."""

from collections import OrderedDict

import numpy as np
import pytest
import torch

import stormcast_plugin.models.px.noise as noise_module
from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions
from stormcast_plugin.models.px.noise import NoiseMemory, member_noise
from stormcast_plugin.models.px.stormcast import StormCast
from stormcast_plugin.run import fetch_state
from stormcast_plugin.testing import DemoConditioningSource, DemoStateSource, random_package
from stormcast_plugin.utils.grid import ModelGrid
from stormcast_plugin.utils.variables import INVARIANTS, PRESETS

T0 = np.datetime64("2024-05-01T00", "ns")
HOUR = np.timedelta64(1, "h")


@pytest.fixture(scope="module")
def package():
    grid = ModelGrid.hrrr(rows=(500, 516), cols=(800, 824), name="test-16x24")
    pkg = random_package(PRESETS["tiny"]["state"], PRESETS["tiny"]["conditioning"], INVARIANTS, grid,
                         model_channels=8, channel_mult=(1, 2, 2), num_blocks=1, seed=3)
    pkg.sampler = SamplerOptions.from_dict({**pkg.sampler.to_dict(), "noise_memory_h": 1.0})  # a 4-hour window
    return pkg


def _reference_member_noise(seed, member, time, k, shape, tau):
    """member_noise as first written: a fresh product per term, summed in float64."""
    import math

    from stormcast_plugin.models.px.noise import member_seed

    rho = math.exp(-1.0 / tau)
    span = min(k, math.ceil(3.0 * tau))
    weights = np.array([math.sqrt(1.0 - rho * rho) * rho ** j if j < k else rho ** k for j in range(span + 1)])
    weights /= np.sqrt(np.sum(weights ** 2))
    out = torch.zeros(shape, dtype=torch.float64)
    for j, w in enumerate(weights):
        g = torch.Generator().manual_seed(member_seed(seed, member, time, (k - j) * HOUR, stream=1))
        out += float(w) * torch.randn(shape, generator=g, dtype=torch.float64)
    return out.float()


def test_member_noise_is_unchanged_bit_for_bit():
    for k in (0, 1, 2, 5, 9):
        assert torch.equal(member_noise(5, 2, T0, k * HOUR, (3, 16, 16), 1.5),
                           _reference_member_noise(5, 2, T0, k, (3, 16, 16), 1.5)), k


def test_noise_memory_equals_member_noise_bit_for_bit_and_draws_one_field_per_step():
    memory, shape, tau = NoiseMemory(), (2, 8, 8), 1.0  # window ceil(3 tau) + 1 = 4 hours
    draws = []
    for k in range(7):
        got = memory(5, [0, 3], [T0], k * HOUR, shape, tau)
        want = torch.stack([member_noise(5, m, T0, k * HOUR, shape, tau) for m in (0, 3)])
        assert torch.equal(got, want), k
        draws.append(memory.draws)
    assert np.diff([0] + draws).tolist() == [2] * 7  # one new innovation per member-step
    # a rollout that starts midway (a resumed forecast) draws its window once, then one per step
    late = NoiseMemory()
    assert torch.equal(late(5, [3], [T0], 5 * HOUR, shape, tau)[0], member_noise(5, 3, T0, 5 * HOUR, shape, tau))
    assert late.draws == 4
    assert torch.equal(late(5, [3], [T0], 6 * HOUR, shape, tau)[0], member_noise(5, 3, T0, 6 * HOUR, shape, tau))
    assert late.draws == 5
    # another seed starts afresh
    assert torch.equal(late(6, [3], [T0], 6 * HOUR, shape, tau)[0], member_noise(6, 3, T0, 6 * HOUR, shape, tau))
    assert late.draws == 9


def test_the_iterator_feeds_the_stateless_noise_and_draws_one_field_per_member_step(package, monkeypatch):
    x, coords = fetch_state(DemoStateSource(package), [T0], list(package.state_variables), package.grid)
    c = OrderedDict(ensemble=np.arange(2))
    c.update(coords)
    xe = x.unsqueeze(0).repeat(2, 1, 1, 1, 1, 1)
    model = StormCast(package, DemoConditioningSource(package), seed=7, sampler_steps=2)
    fed, drawn = [], []
    real_step, real_innovation = model.nets.step, noise_module._innovation

    def step(*args, initial_noise=None, **kwargs):
        fed.append(initial_noise.clone())
        return real_step(*args, initial_noise=initial_noise, **kwargs)

    def innovation(*args):
        drawn.append(args[3])  # the hour of the innovation
        return real_innovation(*args)

    monkeypatch.setattr(model.nets, "step", step)
    monkeypatch.setattr(noise_module, "_innovation", innovation)
    states = []
    for k, (y, _) in enumerate(model.create_iterator(xe, c)):
        states.append(y)
        if k == 6:
            break
    rollout_draws = list(drawn)  # the checks below draw their own
    shape = tuple(x.shape[-3:])
    for k, noise in enumerate(fed):
        want = torch.stack([member_noise(7, m, T0, k * HOUR, shape, 1.0) for m in (0, 1)])
        assert torch.equal(noise, want), k
    # hour 0 draws e_0; every later step one more innovation per member, never one twice
    assert len(fed) == 6 and sorted(rollout_draws) == sorted(list(range(len(fed))) * 2)
    # and the whole rollout is the one of independent single steps (stateless noise)
    monkeypatch.setattr(model.nets, "step", real_step)
    y, cy = xe, c
    for k in range(1, 7):
        y, cy = model(y, cy)
        assert torch.equal(y, states[k]), k


def test_device_noise_draws_on_the_device_and_cpu_noise_is_the_default(package):
    model = StormCast(package, DemoConditioningSource(package), seed=7)
    assert model.noise_device == torch.device("cpu") and not model.noise_on_device
    model.noise_on_device = True
    assert model.noise_device == model.device
    gens = model._generators(7, np.array([0]), OrderedDict(time=np.array([T0]), lead_time=np.array([0 * HOUR])))
    assert gens[0].device == model.device
