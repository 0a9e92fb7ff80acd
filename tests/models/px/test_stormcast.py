"""StormCast as an earth2studio PrognosticModel, on a tiny random package."""

from collections import OrderedDict

import numpy as np
import pytest
import torch

from stormcast_plugin.testing import DemoConditioningSource, DemoStateSource
from stormcast_plugin.run import fetch_state
from stormcast_plugin.utils.grid import ModelGrid
from stormcast_plugin.models.px.stormcast import StormCast
from stormcast_plugin.testing import random_package
from stormcast_plugin.utils.variables import INVARIANTS, PRESETS

T0 = np.datetime64("2024-05-01T00", "ns")


@pytest.fixture(scope="module")
def package():
    grid = ModelGrid.hrrr(rows=(500, 516), cols=(800, 824), name="test-16x24")
    return random_package(PRESETS["tiny"]["state"], PRESETS["tiny"]["conditioning"], INVARIANTS, grid,
                          model_channels=8, channel_mult=(1, 2, 2), num_blocks=1, seed=3)


@pytest.fixture
def model(package):
    return StormCast(package, DemoConditioningSource(package), seed=7, sampler_steps=2)


@pytest.fixture
def initial(package):
    x, coords = fetch_state(DemoStateSource(package), [T0], list(package.state_variables), package.grid)
    return x, coords  # [time, lead, var, y, x]


def _with_ensemble(x, coords, n):
    c = OrderedDict(ensemble=np.arange(n))
    c.update(coords)
    return x.unsqueeze(0).repeat(n, *[1] * x.ndim), c


def test_input_coords_are_fresh_and_complete(model):
    a, b = model.input_coords(), model.input_coords()
    assert a is not b and list(a) == ["batch", "time", "lead_time", "variable", "hrrr_y", "hrrr_x"]
    a["variable"][0] = "zzz"
    assert model.input_coords()["variable"][0] == "u10m"
    assert model.lat.shape == model.lon.shape == (16, 24)
    assert np.isfinite(model.lat).all() and (model.lon > 180).all()


def test_output_coords_add_one_hour(model, initial):
    _, coords = initial
    out = model.output_coords(coords)
    assert out["lead_time"] == np.array([np.timedelta64(1, "h")])
    assert list(out["variable"]) == list(model.variables)


def test_step_shapes_and_values(model, initial):
    x, coords = initial
    before = x.clone()
    y, c = model(x, coords)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert c["lead_time"][0] == np.timedelta64(1, "h")
    assert torch.equal(x, before)  # input never modified
    assert not torch.allclose(y, x)


def test_variables_matched_by_name(model, initial):
    x, coords = initial
    y_ref, _ = model(x, coords)
    perm = np.array([2, 0, 1, 5, 4, 3])
    c2 = coords.copy()
    c2["variable"] = coords["variable"][perm]
    y2, out = model(x[:, :, perm], c2)
    assert list(out["variable"]) == list(model.variables)
    torch.testing.assert_close(y2, y_ref)


def test_missing_and_extra_variables_are_named(model, initial):
    x, coords = initial
    c = coords.copy()
    c["variable"] = np.array(list(coords["variable"][:-1]) + ["t2m_bogus"])
    with pytest.raises(ValueError, match=r"t2m_bogus"):
        model(x, c)
    c["variable"] = coords["variable"][:-1]
    with pytest.raises(ValueError, match=r"lacks variables \['refc'\]"):
        model(x[:, :, :-1], c)


def test_wrong_grid_is_rejected(model, initial):
    x, coords = initial
    c = coords.copy()
    c["hrrr_x"] = coords["hrrr_x"][:20]
    with pytest.raises(ValueError, match=r"hrrr_x has 20 points"):
        model(x[..., :20], c)
    c = coords.copy()
    c["hrrr_y"] = coords["hrrr_y"] + 30000.0
    with pytest.raises(ValueError):
        model(x, c)


def test_nan_state_names_variable(model, initial):
    x, coords = initial
    x = x.clone()
    x[0, 0, 2, 3, 4] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or infinite values in \['t2m'\]"):
        model(x, coords)


def test_seeded_and_member_independent_of_batch(model, initial):
    x, coords = initial
    xe, ce = _with_ensemble(x, coords, 3)
    full, _ = model(xe, ce)
    part_coords = ce.copy()
    part_coords["ensemble"] = np.array([2])
    part, _ = model(xe[2:], part_coords)
    scale = full.abs().max().item()
    torch.testing.assert_close(full[2:], part, rtol=0, atol=1e-4 * scale)
    assert (full[0] - full[1]).abs().max() > 1e-3  # members differ
    again, _ = model(xe, ce)
    torch.testing.assert_close(again, full, rtol=0, atol=0)


def test_create_iterator_yields_initial_condition_first(model, initial):
    x, coords = initial
    it = model.create_iterator(x, coords)
    leads = []
    for i, (y, c) in enumerate(it):
        leads.append(int(c["lead_time"][0] / np.timedelta64(1, "h")))
        if i == 0:
            torch.testing.assert_close(y, x)
        if i == 2:
            break
    assert leads == [0, 1, 2]


def test_regression_only_is_deterministic(package, initial):
    x, coords = initial
    a = StormCast(package, DemoConditioningSource(package), seed=1, regression_only=True)
    b = StormCast(package, DemoConditioningSource(package), seed=2, regression_only=True)
    torch.testing.assert_close(a(x, coords)[0], b(x, coords)[0])


def test_missing_conditioning_variable_is_named(package, initial):
    x, coords = initial
    src = DemoConditioningSource(package)
    del src.means["z500"]
    with pytest.raises(ValueError, match="z500"):
        StormCast(package, src, seed=0)(x, coords)


def test_step_equals_hand_computed_normalised_regression(package, initial):
    x, coords = initial
    model = StormCast(package, DemoConditioningSource(package), regression_only=True)
    y, _ = model(x, coords)
    mean = torch.as_tensor(package.state_mean)[:, None, None]
    std = torch.as_tensor(package.state_std)[:, None, None]
    cmean = torch.as_tensor(package.conditioning_mean)[:, None, None]
    cstd = torch.as_tensor(package.conditioning_std)[:, None, None]
    src = DemoConditioningSource(package)
    da = src([T0.astype("datetime64[s]").item()], list(package.conditioning_variables))
    from stormcast_plugin.utils.interpolation import BilinearRegridder

    rg = BilinearRegridder(da["lat"].values, da["lon"].values, package.grid.lat, package.grid.lon)
    cond = (rg(torch.as_tensor(da.values[0])) - cmean) / cstd
    state = (x[0, 0] - mean) / std
    inv = torch.as_tensor(package.invariants)
    with torch.no_grad():
        r = package.regression(torch.cat([state, cond, inv])[None])[0]
    torch.testing.assert_close(y[0, 0], r * std + mean, rtol=1e-4, atol=1e-4 * float(std.max()))


@pytest.mark.parametrize("layout", ["exported", "official"])
def test_load_model_from_local_folder(package, initial, tmp_path, layout):
    from stormcast_plugin.package import save_package, write_official_layout

    folder = tmp_path / layout
    if layout == "exported":
        save_package(package, folder)
    else:
        write_official_layout(package, folder)
    loaded = StormCast.load_model(str(folder), conditioning_data_source=DemoConditioningSource(package),
                                  seed=7, sampler_steps=2)
    ref = StormCast(package, DemoConditioningSource(package), seed=7, sampler_steps=2)
    x, coords = initial
    torch.testing.assert_close(loaded(x, coords)[0], ref(x, coords)[0], rtol=1e-5, atol=1e-3)


def test_custom_projected_grid(package):
    import dataclasses

    y = np.arange(16) * 2000.0
    x = np.arange(24) * 2000.0
    lat2, lon2 = np.meshgrid(35 + y / 111e3, -100 + x / 90e3, indexing="ij")
    grid = ModelGrid.from_arrays(y, x, lat2, lon2, projection={"grid_mapping_name": "transverse_mercator"},
                                 name="my-domain")
    pkg = dataclasses.replace(package, grid=grid)
    model = StormCast(pkg, DemoConditioningSource(pkg), seed=1, sampler_steps=2)
    assert (model.lon > 180).all()  # normalised to 0..360
    state = DemoStateSource(pkg)
    xs, coords = fetch_state(state, [T0], list(pkg.state_variables), grid)
    out, c = model(xs, coords)
    assert out.shape == xs.shape and torch.isfinite(out).all()
    np.testing.assert_array_equal(c["hrrr_x"], x)


def test_grid_the_networks_cannot_take_names_valid_sizes(package):
    import dataclasses

    grid = ModelGrid.hrrr(rows=(500, 518), cols=(800, 824))
    pkg = dataclasses.replace(package, grid=grid, invariants=np.zeros((2, 18, 24), np.float32))
    with pytest.raises(ValueError, match=r"multiple of 4.*H in \[16, 20\]"):
        StormCast(pkg, DemoConditioningSource(pkg))


def test_default_package_is_the_pinned_official_repo_and_loads_from_an_offline_cache(package, tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    from stormcast_plugin.package import DEFAULT_REPO, DEFAULT_REVISION, PackageNotFoundError, write_official_layout
    from tests.package.helpers import _fake_hub_cache

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    default = StormCast.load_default_package()
    assert default.root == f"hf://{DEFAULT_REPO}@{DEFAULT_REVISION}"
    with pytest.raises(PackageNotFoundError, match="huggingface-cli download"):
        StormCast.load_model(default)
    write_official_layout(package, tmp_path / "official")
    _fake_hub_cache(tmp_path / "hub", DEFAULT_REPO, tmp_path / "official", DEFAULT_REVISION, ref=None)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    model = StormCast.load_model(default, conditioning_data_source=DemoConditioningSource(package))
    assert model.package_info["layout"] == "official"
    assert list(model.variables) == list(package.state_variables)


def test_member_noise_is_a_unit_ar1_process_in_the_lead_time():
    from stormcast_plugin.models.px.stormcast import member_noise, member_seed

    tau, shape = 3.0, (2, 100, 100)
    rho = np.exp(-1 / tau)
    leads = [np.timedelta64(k, "h") for k in range(12)]  # past the 3 tau = 9 h window
    n = torch.stack([member_noise(5, 2, T0, lead, shape, tau) for lead in leads]).reshape(12, -1).double()
    # hour 0 is the first innovation itself
    g = torch.Generator().manual_seed(member_seed(5, 2, T0, leads[0], stream=1))
    torch.testing.assert_close(n[0].float(), torch.randn(shape, generator=g, dtype=torch.float64).float().reshape(-1))
    np.testing.assert_allclose(n.var(dim=1).numpy(), 1.0, atol=0.04)
    lag1 = (n[1:] * n[:-1]).mean(dim=1).numpy()
    lag2 = (n[2:] * n[:-2]).mean(dim=1).numpy()
    np.testing.assert_allclose(lag1[:9], rho, atol=0.03)
    np.testing.assert_allclose(lag2[:8], rho ** 2, atol=0.03)
    assert lag1[9:].min() > rho - 0.06  # the truncated sums keep nearly the same memory
    # reproducible, and other members / initial times are independent
    torch.testing.assert_close(member_noise(5, 2, T0, leads[3], shape, tau).reshape(-1).double(), n[3])
    other = member_noise(5, 3, T0, leads[3], shape, tau).reshape(-1).double()
    assert abs(float((other * n[3]).mean())) < 0.02
    with pytest.raises(ValueError, match="memory_h"):
        member_noise(5, 2, T0, leads[1], shape, 0.0)
    with pytest.raises(ValueError, match="whole, non-negative number of hours"):
        member_noise(5, 2, T0, np.timedelta64(90, "m"), shape, tau)


def test_noise_memory_feeds_each_member_its_correlated_noise(package, initial, monkeypatch):
    import stormcast_plugin.models.px.stormcast as model_module
    from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions

    calls = []
    real = model_module.member_noise

    def spy(seed, member, time, lead, shape, memory_h, device=None):
        calls.append((seed, member, np.datetime64(time, "h"), lead, tuple(shape), memory_h, str(device)))
        return real(seed, member, time, lead, shape, memory_h, device=device)

    monkeypatch.setattr(model_module, "member_noise", spy)
    x, coords = initial
    xe, ce = _with_ensemble(x, coords, 2)
    plain = StormCast(package, DemoConditioningSource(package), seed=7, sampler_steps=2)
    base, _ = plain(xe, ce)
    assert calls == []
    package.sampler = SamplerOptions.from_dict({**package.sampler.to_dict(), "noise_memory_h": 6})
    try:
        memory = StormCast(package, DemoConditioningSource(package), seed=7, sampler_steps=2)
        first, _ = memory(xe, ce)
    finally:
        package.sampler = SamplerOptions.from_dict({**package.sampler.to_dict(), "noise_memory_h": 0})
    c, h, w = x.shape[-3:]
    assert calls == [(7, m, np.datetime64(T0, "h"), np.timedelta64(0, "h"), (c, h, w), 6.0, "cpu") for m in (0, 1)]
    assert float((first - base).abs().max()) > 1e-4  # other noise, other members
    with pytest.raises(ValueError, match="noise_memory_h"):
        SamplerOptions(noise_memory_h=-1.0)
