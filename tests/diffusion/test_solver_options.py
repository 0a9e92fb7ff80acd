"""The solver as a sampler setting: SamplerOptions, the step, the model, configs and packages."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import numpy as np
import pytest
import torch

from stormcast_plugin.diffusion import SOLVERS, make_generators
from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions
from tests.models.nn.test_stormcast_nets import C, _inputs, nets  # noqa: F401 (nets is a fixture)


# ----------------------------------------------------------------------------
# SamplerOptions
# ----------------------------------------------------------------------------


def test_default_is_the_reference_heun_and_old_mappings_mean_heun():
    assert SamplerOptions().solver == "heun"
    assert SamplerOptions().network_evaluations == 36  # 1 regression + 35 denoiser evaluations
    old_manifest = {"num_steps": 12, "sigma_min": 0.002, "sigma_max": 800.0, "rho": 7.0, "S_churn": 0.0,
                    "S_min": 0.0, "S_max": "inf", "S_noise": 1.0, "noise_memory_h": 3.0}
    opts = SamplerOptions.from_dict(old_manifest)
    assert opts.solver == "heun" and opts.network_evaluations == 24


def test_solver_round_trips_and_counts_its_evaluations():
    opts = SamplerOptions.from_dict({"solver": "dpmpp_2m", "num_steps": 11, "sigma_max": "80"})
    assert (opts.solver, opts.num_steps, opts.sigma_max) == ("dpmpp_2m", 11, 80.0)
    assert SamplerOptions.from_dict(opts.to_dict()) == opts
    assert list(opts.to_dict())[0] == "solver"
    assert opts.denoiser_evaluations == 11 and opts.network_evaluations == 12
    assert opts.solver_options() == {}
    assert SamplerOptions(S_churn=2.0).solver_options() == {"S_churn": 2.0, "S_min": 0.0, "S_max": float("inf"),
                                                            "S_noise": 1.0}
    assert SamplerOptions(solver="dpmpp_2m_sde", S_noise=1.01).solver_options() == {"S_noise": 1.01}


def test_bad_solvers_are_refused_with_the_known_names():
    with pytest.raises(ValueError, match=r"unknown solver 'dpmpp_3m'; known solvers: heun, euler, dpmpp_2m"):
        SamplerOptions(solver="dpmpp_3m")
    with pytest.raises(ValueError, match=r"solver must be a name, one of \['heun'.*got 2"):
        SamplerOptions.from_dict({"solver": 2})
    with pytest.raises(ValueError, match=r"S_churn = 5 applies to the heun solver only, not to 'dpmpp_2m'"):
        SamplerOptions(solver="dpmpp_2m", S_churn=5.0)


def test_training_config_reads_the_solver():
    from stormcast_plugin.train.config import Config, ConfigError

    cfg = Config.from_dict({"sampler": {"solver": "dpmpp_2m", "num_steps": 11}})
    assert cfg.sampler == SamplerOptions(solver="dpmpp_2m", num_steps=11)
    assert Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match=r"section sampler: unknown solver 'rk4'; known solvers: heun"):
        Config.from_dict({"sampler": {"solver": "rk4"}})
    with pytest.raises(ConfigError, match=r"sampler.solver = 3 is invalid: expected one of \['heun'"):
        Config.from_dict({"sampler": {"solver": 3}})


# ----------------------------------------------------------------------------
# StormCastNets.step
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SOLVERS))
def test_step_makes_the_reported_number_of_network_evaluations(nets, name):
    calls = {"reg": 0, "dif": 0}
    nets.regression.register_forward_hook(lambda *a: calls.__setitem__("reg", calls["reg"] + 1))
    nets.diffusion.register_forward_hook(lambda *a: calls.__setitem__("dif", calls["dif"] + 1))
    opts = SamplerOptions(solver=name, num_steps=5)
    out = nets.step(*_inputs(b=1), sampler=opts, generators=make_generators([0]))
    assert torch.isfinite(out).all()
    assert 1 + calls["dif"] == opts.network_evaluations == (10 if name == "heun" else 6)
    assert calls["reg"] == 1


@pytest.mark.parametrize("name", ["dpmpp_2m", "dpmpp_2m_sde"])
def test_step_member_is_independent_of_the_batch(nets, name):
    x, e, inv = _inputs(b=3)
    opts = SamplerOptions(solver=name, num_steps=4)
    batch = nets.step(x, e, inv, sampler=opts, generators=make_generators([10, 11, 12]))
    alone = nets.step(x[2:], e[2:], inv, sampler=opts, generators=make_generators([12]))
    torch.testing.assert_close(batch[2:], alone, rtol=1e-5, atol=1e-5)


def test_step_solvers_agree_as_steps_grow(nets):
    # Same initial noise: the ODE solvers approach one another (and the SDE does not follow them).
    x, e, inv = _inputs(b=1)
    noise = torch.randn(1, C, 16, 24, generator=torch.Generator().manual_seed(3))

    def run(name, n):
        return nets.step(x, e, inv, sampler=SamplerOptions(solver=name, num_steps=n, sigma_max=80.0),
                         generators=make_generators([0]), initial_noise=noise)

    gap = [(run("dpmpp_2m", n) - run("heun", n)).abs().max().item() for n in (4, 32)]
    assert gap[1] < gap[0] / 4, gap


# ----------------------------------------------------------------------------
# The model and packages
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def package():
    from stormcast_plugin.testing import random_package
    from stormcast_plugin.utils.grid import ModelGrid
    from stormcast_plugin.utils.variables import INVARIANTS, PRESETS

    grid = ModelGrid.hrrr(rows=(500, 516), cols=(800, 824), name="test-16x24")
    return random_package(PRESETS["tiny"]["state"], PRESETS["tiny"]["conditioning"], INVARIANTS, grid,
                          model_channels=8, channel_mult=(1, 2, 2), num_blocks=1, seed=3)


def test_model_takes_the_solver_from_sampler_args(package):
    from stormcast_plugin.models.px.stormcast import StormCast
    from stormcast_plugin.run import fetch_state
    from stormcast_plugin.testing import DemoConditioningSource, DemoStateSource

    model = StormCast(package, DemoConditioningSource(package), seed=7, sampler_steps=3)
    assert model.sampler.solver == "heun"
    calls = []
    model.nets.diffusion.register_forward_hook(lambda *a: calls.append(1))
    x, coords = fetch_state(DemoStateSource(package), [np.datetime64("2024-05-01T00", "ns")],
                            list(package.state_variables), package.grid)
    c = OrderedDict(ensemble=np.arange(2))
    c.update(coords)
    xe = x.unsqueeze(0).repeat(2, 1, 1, 1, 1, 1)
    model(xe, c)
    assert len(calls) == 5
    model.sampler_args["solver"] = "dpmpp_2m_sde"
    calls.clear()
    y, _ = model(xe, c)
    assert len(calls) == 3 and torch.isfinite(y).all()
    model.sampler_args["solver"] = "ddim"
    with pytest.raises(ValueError, match=r"bad sampler settings on the model \(unknown solver 'ddim'; known "
                                         r"solvers: heun"):
        model(xe, c)


def test_packages_carry_the_solver_and_the_official_layout_refuses_it(package, tmp_path):
    from stormcast_plugin.package import load_package, save_package, write_official_layout

    fast = dataclasses.replace(package, sampler=SamplerOptions(solver="dpmpp_2m", num_steps=11, sigma_max=80.0))
    assert load_package(save_package(fast, tmp_path / "own")).sampler == fast.sampler
    with pytest.raises(ValueError, match=r"uses the 'dpmpp_2m' solver, which the official layout cannot record.*"
                                         r"set sampler.solver to 'heun' or use save_package"):
        write_official_layout(fast, tmp_path / "official")
    assert not (tmp_path / "official").exists()
    reference = dataclasses.replace(package, sampler=SamplerOptions(num_steps=18))
    assert load_package(write_official_layout(reference, tmp_path / "official")).sampler.solver == "heun"
