"""earth2studio DataSources over a dataset store: values, coordinates, errors and use by the model."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import torch

from stormcast_plugin.data.store_sources import StoreConditioningSource, StoreStateSource
from stormcast_plugin.io.dataset_store import DatasetStore
from stormcast_plugin.utils.grid import ModelGrid

T0 = np.datetime64("2024-05-01T00", "ns")
STATE = ("u10m", "v10m", "t2m", "msl", "q5hl", "refc")
COND = ("u10m", "v10m", "t2m", "msl", "tcwv", "z500")
INV = ("lsm", "orography")
# Hours after T0 held by the test store: a gap between 9 and 11; hour 4 is
# recorded missing and hour 7 is never written.
HOURS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12)
MISSING = (4,)
UNWRITTEN = (7,)
COND_LAT = np.arange(45.0, 30.0 - 1e-9, -0.25)
COND_LON = np.arange(255.0, 275.0 + 1e-9, 0.25)
STATS = {
    "state_mean": np.linspace(1.0, 6.0, len(STATE)),
    "state_std": np.linspace(2.0, 4.0, len(STATE)),
    "conditioning_mean": np.linspace(-3.0, 3.0, len(COND)),
    "conditioning_std": np.linspace(0.5, 1.5, len(COND)),
}


def small_grid() -> ModelGrid:
    """The 16 x 24 HRRR crop of the test stores."""
    return ModelGrid.hrrr(rows=(500, 516), cols=(800, 824), name="test-16x24")



def state_field(hour: int, shape: tuple[int, int], n: int = len(STATE)) -> np.ndarray:
    """``[C, H, W]``: ``100 * hour + channel + 0.001 * (flat position)``."""
    h, w = shape
    ramp = 0.001 * np.arange(h * w, dtype=np.float64).reshape(h, w)
    return np.stack([100.0 * hour + c + ramp for c in range(n)]).astype(np.float32)


def cond_field(hour: int, lat: np.ndarray, lon: np.ndarray, n: int = len(COND)) -> np.ndarray:
    """``[Ce, ...]``: a field linear in latitude and longitude, different per hour and channel."""
    return np.stack([0.5 * (c + 1) * lat - 0.25 * (c + 1) * lon + 10.0 * hour + c
                     for c in range(n)]).astype(np.float32)


def invariant_fields(shape: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(5)
    return np.stack([(rng.random(shape) > 0.5).astype(np.float32),
                     rng.random(shape).astype(np.float32) * 2.0])


def make_store(path: Path, *, statistics: bool = True, hours=HOURS, missing=MISSING,
               unwritten=UNWRITTEN) -> DatasetStore:
    """A small store with known fields (see :func:`state_field`, :func:`cond_field`)."""
    grid = small_grid()
    store = DatasetStore.create(
        path, times=[T0 + np.timedelta64(h, "h") for h in hours], state_variables=STATE,
        conditioning_variables=COND, invariant_names=INV, grid=grid, cond_lat=COND_LAT, cond_lon=COND_LON,
    )
    lat2, lon2 = np.meshgrid(COND_LAT, COND_LON, indexing="ij")
    for i, h in enumerate(hours):
        if h in missing:
            store.mark_missing(i)
        elif h not in unwritten:
            store.write_hour(i, state_field(h, grid.shape), cond_field(h, lat2, lon2))
    store.write_invariants(invariant_fields(grid.shape))
    if statistics:
        store.write_statistics(**STATS)
    return store


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> DatasetStore:
    return make_store(tmp_path_factory.mktemp("sources") / "case.zarr")


def at(hour: int) -> np.datetime64:
    return T0 + np.timedelta64(hour, "h")


# ---------------------------------------------------------------- state


def test_state_values_coords_and_order(store):
    src = StoreStateSource(store)
    grid = small_grid()
    da = src([at(2), at(0)], ["t2m", "u10m"])
    assert da.dims == ("time", "variable", "hrrr_y", "hrrr_x")
    assert da.dtype == np.float32
    assert list(da["variable"].values) == ["t2m", "u10m"]
    np.testing.assert_array_equal(da["time"].values, np.array([at(2), at(0)]))
    np.testing.assert_array_equal(da["hrrr_y"].values, grid.y)
    np.testing.assert_array_equal(da["hrrr_x"].values, grid.x)
    assert da["lat"].dims == da["lon"].dims == ("hrrr_y", "hrrr_x")
    np.testing.assert_allclose(da["lat"].values, grid.lat)
    np.testing.assert_allclose(da["lon"].values, grid.lon)
    assert ((da["lon"].values >= 0) & (da["lon"].values < 360)).all()
    full2, full0 = state_field(2, grid.shape), state_field(0, grid.shape)
    np.testing.assert_array_equal(da.values[0, 0], full2[2])
    np.testing.assert_array_equal(da.values[1, 1], full0[0])


def test_state_accepts_scalars_datetimes_and_paths(store):
    src = StoreStateSource(str(store.path))
    aware = datetime(2024, 5, 1, 3, tzinfo=timezone.utc)
    da = src(aware, "msl")
    assert da.shape == (1, 1, 16, 24)
    assert float(da.values[0, 0, 0, 0]) == pytest.approx(303.0)
    assert np.datetime64(da["time"].values[0], "h") == np.datetime64("2024-05-01T03", "h")


def test_unknown_time_unwritten_and_missing_hours_are_named(store):
    src = StoreStateSource(store)
    with pytest.raises(ValueError, match=r"no hours \[2024-05-01T10\].*2024-05-01T00 \.\. 2024-05-01T12"):
        src([at(10)], ["t2m"])
    with pytest.raises(ValueError, match=r"no hours \[2024-06-01T00\]"):
        src(np.datetime64("2024-06-01T00"), ["t2m"])
    with pytest.raises(ValueError, match=r"2024-05-01T07\] .*not written yet"):
        src([at(6), at(7)], ["t2m"])
    with pytest.raises(ValueError, match=r"2024-05-01T04\] .*recorded missing"):
        StoreConditioningSource(store)([at(4)], ["z500"])
    assert at(4) not in src.times and at(7) not in src.times and at(8) in src.times


def test_unknown_variable_is_named_with_those_available(store):
    with pytest.raises(ValueError, match=r"no state variables \['t2m_bogus'\]; it has \['u10m'"):
        StoreStateSource(store)([at(0)], ["t2m", "t2m_bogus"])
    with pytest.raises(ValueError, match=r"no conditioning variables \['q5hl'\]"):
        StoreConditioningSource(store)([at(0)], ["q5hl"])


def test_bad_store_argument():
    with pytest.raises(ValueError, match="DatasetStore or the path"):
        StoreStateSource(3)
    with pytest.raises(ValueError, match="does not exist"):
        StoreConditioningSource("/nonexistent/case.zarr")


# --------------------------------------------------------- conditioning


def test_conditioning_values_and_coords(store):
    src = StoreConditioningSource(store)
    da = src(np.array([at(5)]), np.array(["z500", "u10m"]))
    assert da.dims == ("time", "variable", "lat", "lon")
    np.testing.assert_array_equal(da["lat"].values, COND_LAT)
    np.testing.assert_array_equal(da["lon"].values, COND_LON)
    lat2, lon2 = np.meshgrid(COND_LAT, COND_LON, indexing="ij")
    ref = cond_field(5, lat2, lon2)
    np.testing.assert_array_equal(da.values[0, 0], ref[5])
    np.testing.assert_array_equal(da.values[0, 1], ref[0])


def test_async_fetch_matches_call(store):
    import asyncio

    src = StoreConditioningSource(store)
    a = asyncio.run(src.fetch([at(1)], ["t2m"]))
    np.testing.assert_array_equal(a.values, src([at(1)], ["t2m"]).values)


def test_conditioning_fetcher_regrids_linear_field_exactly(store):
    from stormcast_plugin.data.conditioning import ConditioningFetcher

    grid = small_grid()
    fetcher = ConditioningFetcher(StoreConditioningSource(store), ["tcwv", "u10m"], grid)
    out = fetcher(np.array([at(8)]), np.timedelta64(0, "h"))
    ref = cond_field(8, grid.lat, grid.lon)
    torch.testing.assert_close(out[0, 0], torch.from_numpy(ref[4]), rtol=0, atol=2e-4)
    torch.testing.assert_close(out[0, 1], torch.from_numpy(ref[0]), rtol=0, atol=2e-4)


@pytest.mark.slow
def test_stormcast_step_from_store_sources(store):
    from stormcast_plugin.run import fetch_state
    from stormcast_plugin.models.px.stormcast import StormCast
    from stormcast_plugin.testing import random_package

    grid = small_grid()
    pkg = random_package(STATE, COND, INV, grid, model_channels=8, channel_mult=(1, 2, 2), num_blocks=1, seed=1)
    x, coords = fetch_state(StoreStateSource(store), [at(0)], list(STATE), grid)
    torch.testing.assert_close(x[0, 0], torch.from_numpy(state_field(0, grid.shape)))
    model = StormCast(pkg, StoreConditioningSource(store), seed=0, sampler_steps=2)
    y, out = model(x, coords)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert out["lead_time"][0] == np.timedelta64(1, "h")
    # A step reads the conditioning at its input time: hour 3 is held, hour 4 is recorded missing.
    x3, c3 = fetch_state(StoreStateSource(store), [at(3)], list(STATE), grid)
    model(x3, c3)
    c4 = c3.copy()
    c4["time"] = np.array([at(4)])
    with pytest.raises(ValueError, match="recorded missing"):
        model(x3, c4)


@pytest.mark.slow
def test_earth2studio_fetch_data(store):
    from earth2studio.data import fetch_data

    grid = small_grid()
    x, coords = fetch_data(StoreStateSource(store), np.array([at(0)]), np.array(["msl", "t2m"]),
                           lead_time=np.array([np.timedelta64(0, "h"), np.timedelta64(1, "h")]))
    assert tuple(x.shape) == (1, 2, 2, 16, 24)
    assert list(coords)[:5] == ["time", "lead_time", "variable", "hrrr_y", "hrrr_x"]
    np.testing.assert_allclose(coords["lat"], grid.lat)  # earth2studio keeps the 2-D lat/lon, as for HRRR
    torch.testing.assert_close(x[0, 1, 0], torch.from_numpy(state_field(1, grid.shape)[3]))
    c, ccoords = fetch_data(StoreConditioningSource(store), np.array([at(2)]), np.array(["z500"]))
    assert tuple(c.shape) == (1, 1, 1, len(COND_LAT), len(COND_LON))
    np.testing.assert_array_equal(ccoords["lat"], COND_LAT)
