"""Local solar time channels (stormcast_plugin.utils.local_time) and packages whose networks take them."""

import numpy as np
import pytest
import torch

from stormcast_plugin.testing import DemoConditioningSource, DemoStateSource
from stormcast_plugin.run import fetch_state
from stormcast_plugin.utils.grid import ModelGrid
from stormcast_plugin.utils.local_time import LOCAL_TIME_CHANNELS, local_time_channels
from stormcast_plugin.models.px.stormcast import StormCast
from stormcast_plugin.package import load_package, save_package, write_official_layout
from stormcast_plugin.testing import random_package
from stormcast_plugin.utils.variables import INVARIANTS, PRESETS


def test_known_hours_and_longitudes():
    lon = np.array([0.0, 90.0, -90.0, 270.0, 262.5])
    out = local_time_channels(np.datetime64("2024-06-01T00:00"), lon)
    assert out.shape == (1, 2, 5) and out.dtype == np.float32
    # local solar time 0, 6, 18, 18 and 17.5 h
    lst = np.array([0.0, 6.0, 18.0, 18.0, 17.5])
    np.testing.assert_allclose(out[0, 0], np.cos(2 * np.pi * lst / 24), atol=1e-6)
    np.testing.assert_allclose(out[0, 1], np.sin(2 * np.pi * lst / 24), atol=1e-6)
    # minutes count, and a day later the channels repeat
    half = local_time_channels(["2024-06-01T12:30", "2024-06-02T12:30"], np.zeros((2, 3)))
    assert half.shape == (2, 2, 2, 3)
    np.testing.assert_allclose(half[:, 0], np.cos(2 * np.pi * 12.5 / 24), atol=1e-6)
    np.testing.assert_allclose(half[0], half[1], atol=1e-6)
    # the unit circle: cos^2 + sin^2 = 1 everywhere
    many = local_time_channels(np.datetime64("2024-01-01T00") + np.arange(30) * np.timedelta64(47, "m"),
                               np.linspace(-180, 360, 7))
    np.testing.assert_allclose((many ** 2).sum(axis=1), 1.0, atol=1e-6)


def test_bad_times_are_named():
    with pytest.raises(ValueError, match="NaT"):
        local_time_channels(np.array(["NaT"], dtype="datetime64[ns]"), np.zeros(3))


@pytest.fixture(scope="module")
def package():
    grid = ModelGrid.hrrr(rows=(500, 516), cols=(800, 824), name="test-16x24")
    return random_package(PRESETS["tiny"]["state"], PRESETS["tiny"]["conditioning"], INVARIANTS, grid,
                          model_channels=8, channel_mult=(1, 2, 2), num_blocks=1, seed=5, local_time=True)


def test_package_counts_and_checks_the_local_time_channels(package):
    c, ce = len(package.state_variables), len(package.conditioning_variables)
    assert package.input_invariant_names == tuple(INVARIANTS) + LOCAL_TIME_CHANNELS
    assert package.regression.config.in_channels == c + ce + len(INVARIANTS) + 2
    plain = random_package(PRESETS["tiny"]["state"], PRESETS["tiny"]["conditioning"], INVARIANTS, package.grid,
                           model_channels=8, channel_mult=(1, 2, 2), num_blocks=1, seed=5)
    plain.local_time = True  # networks without the two channels
    with pytest.raises(ValueError, match="local-time channels.*local_time"):
        plain.validate()
    package.local_time = False
    try:
        with pytest.raises(ValueError, match="local_time"):
            package.validate()
    finally:
        package.local_time = True


def test_export_round_trip_and_official_layout_refused(package, tmp_path):
    save_package(package, tmp_path / "pkg")
    back = load_package(str(tmp_path / "pkg"))
    assert back.local_time is True and back.input_invariant_names == package.input_invariant_names
    assert "cos_local_time" in (tmp_path / "pkg" / "README.md").read_text()
    with pytest.raises(ValueError, match="local-time input channels.*save_package"):
        write_official_layout(package, tmp_path / "official")
    assert not (tmp_path / "official").exists()


def test_step_feeds_the_local_time_of_the_valid_time(package):
    """The regression step equals the network applied by hand to [state, conditioning, invariants, clock]."""
    t0 = np.datetime64("2024-05-01T00", "ns")
    x, coords = fetch_state(DemoStateSource(package), [t0], list(package.state_variables), package.grid)
    model = StormCast(package, DemoConditioningSource(package), regression_only=True)
    coords = coords.copy()
    coords["lead_time"] = np.array([np.timedelta64(5, "h")])
    src = DemoConditioningSource(package)
    valid = t0 + np.timedelta64(5, "h")
    da = src([valid.astype("datetime64[s]").item()], list(package.conditioning_variables))
    from stormcast_plugin.utils.interpolation import BilinearRegridder

    rg = BilinearRegridder(da["lat"].values, da["lon"].values, package.grid.lat, package.grid.lon)
    mean = torch.as_tensor(package.state_mean)[:, None, None]
    std = torch.as_tensor(package.state_std)[:, None, None]
    cond = (rg(torch.as_tensor(da.values[0])) - torch.as_tensor(package.conditioning_mean)[:, None, None]) \
        / torch.as_tensor(package.conditioning_std)[:, None, None]
    state = (x[0, 0] - mean) / std
    clock = torch.as_tensor(local_time_channels(valid, package.grid.lon)[0])
    inv = torch.cat([torch.as_tensor(package.invariants), clock])
    with torch.no_grad():
        r = package.regression(torch.cat([state, cond, inv])[None])[0]
    y, _ = model(x, coords)
    torch.testing.assert_close(y[0, 0], r * std + mean, rtol=1e-4, atol=1e-4 * float(std.max()))
    # the clock matters: the same state and conditioning at another hour of the day give another answer
    with torch.no_grad():
        other = package.regression(torch.cat([state, cond, torch.cat([inv[:2], -clock])])[None])[0]
    assert float((other - r).abs().max()) > 1e-3
