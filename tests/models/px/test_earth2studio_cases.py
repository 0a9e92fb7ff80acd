"""StormCast behaves as earth2studio's own models do: randomness, settable
sampler, mixins and loading, and the cases earth2studio's StormCast tests
exercise (several initial times, ensemble iterators, awkward conditioning
sources, workflows, hooks, statistics)."""

from __future__ import annotations

import importlib
from collections import OrderedDict

import numpy as np
import pytest
import torch
import xarray as xr

from stormcast_plugin.models.px.stormcast import StormCast
from stormcast_plugin.run import fetch_state
from stormcast_plugin.testing import DemoConditioningSource, DemoStateSource  # noqa: E402
from stormcast_plugin.testing import random_package
from stormcast_plugin.utils.grid import ModelGrid
from stormcast_plugin.utils.variables import INVARIANTS, PRESETS

T0 = np.datetime64("2024-05-01T00", "ns")


@pytest.fixture(scope="module")
def package():
    grid = ModelGrid.hrrr(rows=(500, 516), cols=(800, 824), name="test-16x24")
    return random_package(PRESETS["tiny"]["state"], PRESETS["tiny"]["conditioning"], INVARIANTS, grid,
                          model_channels=8, channel_mult=(1, 2, 2), num_blocks=1, seed=3)


def _model(package, **kw):
    kw.setdefault("sampler_steps", 2)
    return StormCast(package, DemoConditioningSource(package), **kw)


def _initial(package, times=(T0,)):
    return fetch_state(DemoStateSource(package), list(times), list(package.state_variables), package.grid)


def _count_denoiser_calls(model):
    calls = []
    model.nets.diffusion.register_forward_hook(lambda *a: calls.append(1))
    return calls


# ---------------------------------------------------------------- randomness
def test_seedless_calls_differ_and_torch_manual_seed_reproduces_them(package):
    model = _model(package)
    x, coords = _initial(package)
    a, _ = model(x, coords)
    b, _ = model(x, coords)
    assert (a - b).abs().max() > 1e-3, "two seedless calls repeated the same sample"
    torch.manual_seed(1234)
    c, _ = model(x, coords)
    torch.manual_seed(1234)
    d, _ = model(x, coords)
    torch.testing.assert_close(c, d, rtol=0, atol=0)
    assert model.seed is None  # the model's setting is never overwritten by a draw


def test_seedless_iterators_draw_one_seed_per_rollout(package):
    model = _model(package)
    x, coords = _initial(package)

    def roll(n=2):
        it = model.create_iterator(x, coords)
        return [next(it)[0] for _ in range(n + 1)]

    torch.manual_seed(5)
    first = roll()
    torch.manual_seed(5)
    again = roll()
    fresh = roll()
    for u, v in zip(first, again):
        torch.testing.assert_close(u, v, rtol=0, atol=0)
    assert (first[-1] - fresh[-1]).abs().max() > 1e-3


def test_an_explicit_seed_fixes_every_call_whatever_torch_global_state(package):
    model = _model(package, seed=17)
    x, coords = _initial(package)
    torch.manual_seed(0)
    a, _ = model(x, coords)
    torch.manual_seed(99)
    b, _ = model(x, coords)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_seedless_ensemble_workflow_repeats_nothing(package):
    run = pytest.importorskip("earth2studio.run")
    from earth2studio.io import XarrayBackend
    from earth2studio.perturbation import Zero

    model = _model(package)
    outs = []
    for _ in range(2):
        io = XarrayBackend()
        run.ensemble(["2024-05-01T00"], 1, 2, model, DemoStateSource(package), io, Zero(), batch_size=2)
        outs.append(io.root["t2m"].isel(lead_time=-1).values)
    assert np.abs(outs[0] - outs[1]).max() > 1e-3


# ---------------------------------------------------------- sampler settings
def test_sampler_steps_set_after_load_take_effect_on_the_next_step(package):
    model = _model(package, seed=1)
    x, coords = _initial(package)
    calls = _count_denoiser_calls(model)
    model(x, coords)
    assert len(calls) == 2 * 2 - 1  # Heun: 2 evaluations per step, one at the last
    calls.clear()
    model.sampler_steps = 4
    model(x, coords)
    assert len(calls) == 2 * 4 - 1
    assert model.sampler.num_steps == 4


def test_sampler_args_are_a_live_dict(package):
    model = _model(package, seed=1, sampler_args={"sigma_max": 400.0})
    assert model.sampler.sigma_max == 400.0 and model.sampler_args["rho"] == package.sampler.rho
    x, coords = _initial(package)
    a, _ = model(x, coords)
    model.sampler_args["sigma_min"] = 0.05
    b, _ = model(x, coords)
    assert (a - b).abs().max() > 0  # the same seed, another schedule
    model.sampler_args["sigma_min"] = 1e4
    with pytest.raises(ValueError, match="sigma_min.*model.sampler_args"):
        model(x, coords)
    model.sampler_args["sigma_min"] = 0.002
    model.sampler_args["churn"] = 1.0
    with pytest.raises(ValueError, match="unknown sampler options.*churn"):
        model(x, coords)


def test_bad_sampler_settings_are_refused_at_construction(package):
    with pytest.raises(ValueError, match="num_steps"):
        _model(package, sampler_steps=0)


# ---------------------------------------------------------- mixins and loading
def test_the_model_is_an_earth2studio_auto_and_prognostic_model(package):
    from earth2studio.models.auto import AutoModelMixin

    mixin = importlib.import_module("earth2studio.models.px.utils").PrognosticMixin
    model = _model(package)
    assert isinstance(model, AutoModelMixin) and isinstance(model, mixin)


def test_from_pretrained_loads_a_local_package_with_earth2studio_default_source(package, tmp_path):
    from earth2studio.data import GFS_FX

    from stormcast_plugin.package import save_package

    folder = save_package(package, tmp_path / "pkg")
    model = StormCast.from_pretrained(str(folder))
    assert list(model.variables) == list(package.state_variables)
    assert isinstance(model.conditioning_data_source, GFS_FX)
    assert StormCast.load_default_package().root.startswith("hf://nvidia/stormcast-v1-era5-hrrr")


def test_a_model_without_conditioning_source_says_how_to_set_one(package):
    model = StormCast(package, sampler_steps=2)
    x, coords = _initial(package)
    with pytest.raises(RuntimeError, match="conditioning_data_source"):
        model(x, coords)
    model.conditioning_data_source = DemoConditioningSource(package)
    y, _ = model(x, coords)
    assert torch.isfinite(y).all()


# ------------------------------------------------------ earth2studio's cases
def test_several_initial_times_in_one_call(package):
    model = _model(package, seed=3)
    t1 = T0 + np.timedelta64(6, "h")
    x, coords = _initial(package, (T0, t1))
    assert x.shape[0] == 2
    y, out = model(x, coords)
    np.testing.assert_array_equal(out["time"], coords["time"])
    # each initial time steps as if alone
    x1, c1 = _initial(package, (t1,))
    y1, _ = model(x1, c1)
    # equal up to float32 round-off of another batch shape (the random test
    # networks give values far from the statistics: compare to their scale)
    torch.testing.assert_close(y[1:], y1, rtol=0, atol=1e-4 * float(y1.abs().max()))


def test_iterator_with_an_ensemble_dimension_over_seven_steps(package):
    model = _model(package, seed=4)
    x, coords = _initial(package)
    n = 3
    ens = OrderedDict(ensemble=np.arange(n))
    ens.update(coords)
    xe = x.unsqueeze(0).repeat(n, 1, 1, 1, 1, 1)
    it = model.create_iterator(xe, ens)
    for step in range(8):
        y, c = next(it)
        assert list(c) == ["ensemble", "time", "lead_time", "variable", "hrrr_y", "hrrr_x"]
        assert y.shape == xe.shape
        assert c["lead_time"].tolist() == [np.timedelta64(step, "h")]
        np.testing.assert_array_equal(c["ensemble"], np.arange(n))
        np.testing.assert_array_equal(c["hrrr_x"], package.grid.x)
        assert torch.isfinite(y).all()
    assert (y[0] - y[1]).abs().max() > 1e-4  # members differ


class _Transposed:
    """A conditioning source returning ``[lon, variable, lat, time]``."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, time, variable):
        return self.inner(time, variable).transpose("lon", "variable", "lat", "time")


def test_a_conditioning_source_with_transposed_dimensions(package):
    x, coords = _initial(package)
    ref, _ = _model(package, seed=8)(x, coords)
    model = StormCast(package, _Transposed(DemoConditioningSource(package)), seed=8, sampler_steps=2)
    y, _ = model(x, coords)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-5)


class _Global:
    """Smooth conditioning on a global 1-degree grid, optionally with the
    0/360 meridian stored twice."""

    def __init__(self, package, duplicate: bool):
        self.names = list(package.conditioning_variables)
        self.mean = dict(zip(self.names, map(float, package.conditioning_mean)))
        self.std = dict(zip(self.names, map(float, package.conditioning_std)))
        self.lat = np.arange(90.0, -90.5, -1.0)
        self.lon = np.arange(0.0, 360.5 if duplicate else 359.5, 1.0)

    def __call__(self, time, variable):
        variable = [variable] if isinstance(variable, str) else list(variable)
        times = np.atleast_1d(np.asarray(time, dtype="datetime64[ns]"))
        la, lo = np.meshgrid(np.deg2rad(self.lat), np.deg2rad(self.lon), indexing="ij")
        fields = [self.mean[v] + 0.5 * self.std[v] * np.cos(la) * np.sin(2 * lo + k)
                  for k, v in enumerate(variable)]
        data = np.broadcast_to(np.stack(fields), (len(times), len(variable)) + la.shape).astype(np.float32)
        return xr.DataArray(data, dims=("time", "variable", "lat", "lon"),
                            coords={"time": times, "variable": variable, "lat": self.lat, "lon": self.lon})


def test_a_global_one_degree_grid_with_a_duplicate_meridian(package):
    x, coords = _initial(package)
    plain = StormCast(package, _Global(package, duplicate=False), seed=2, sampler_steps=2)
    dup = StormCast(package, _Global(package, duplicate=True), seed=2, sampler_steps=2)
    a, _ = plain(x, coords)
    b, _ = dup(x, coords)
    assert torch.isfinite(b).all()
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_xarray_backend_gaussian_perturbation_hooks_and_earth2studio_statistics(package):
    run = pytest.importorskip("earth2studio.run")
    from earth2studio.io import XarrayBackend
    from earth2studio.perturbation import Gaussian
    from earth2studio.statistics import mean, std

    model = _model(package, seed=6)
    seen = []

    def front(x, coords):
        seen.append(("front", coords["lead_time"][0]))
        return x, coords

    def rear(x, coords):
        seen.append(("rear", coords["lead_time"][0]))
        return x * 1.0, coords

    model.front_hook, model.rear_hook = front, rear
    io = XarrayBackend()
    run.ensemble(["2024-05-01T00"], 2, 3, model, DemoStateSource(package), io,
                 Gaussian(noise_amplitude=0.05), batch_size=3)
    assert [s for s, _ in seen] == ["front", "rear", "front", "rear"]
    assert [lead for _, lead in seen] == [np.timedelta64(0, "h"), np.timedelta64(1, "h"),
                                          np.timedelta64(1, "h"), np.timedelta64(2, "h")]
    t2m = io.root["t2m"]
    assert t2m.sizes["ensemble"] == 3 and t2m.sizes["lead_time"] == 3
    # the Gaussian perturbation spreads the initial members
    assert float(t2m.isel(lead_time=0).std("ensemble").max()) > 0
    # earth2studio's own statistics reduce our output over the ensemble
    data = torch.as_tensor(t2m.values)
    coords = OrderedDict((d, t2m[d].values) for d in t2m.dims)
    m, mc = mean(["ensemble"])(data, coords)
    s, _ = std(["ensemble"])(data, coords)
    assert "ensemble" not in mc
    np.testing.assert_allclose(m.numpy(), t2m.mean("ensemble").values, rtol=1e-5)
    assert torch.isfinite(s).all() and float(s[..., -1, :, :].mean()) > 0


# ------------------------------------------------------------- bad calls
def test_an_empty_batch_an_integer_tensor_and_a_shape_mismatch_are_refused(package):
    model = _model(package, seed=1)
    x, coords = _initial(package)
    ens = OrderedDict(ensemble=np.arange(0))
    ens.update(coords)
    with pytest.raises(ValueError, match=r"empty along \['ensemble'\]"):
        model(x.unsqueeze(0)[:0], ens)
    with pytest.raises(TypeError, match="dtype torch.int32.*x.float"):
        model(x.to(torch.int32), coords)
    with pytest.raises(ValueError, match="has shape .* sizes"):
        model(x[..., :-1], coords)  # one column short of what the coordinates say
