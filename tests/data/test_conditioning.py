"""ConditioningFetcher against in-memory stand-in sources and earth2studio's Random sources."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import torch
import xarray as xr

from stormcast_plugin.data.conditioning import ConditioningFetcher
from stormcast_plugin.utils.grid import ModelGrid

LAT = np.arange(90.0, -90.01, -2.0)  # descending, like ERA5
LON = np.arange(0.0, 360.0, 2.0)
TIMES = np.array(["2024-05-01T00", "2024-05-01T01", "2024-05-01T02", "2024-05-01T06"], dtype="datetime64[ns]")
SRC_VARS = ["v10m", "t2m", "z500", "u10m", "msl"]
H1 = np.timedelta64(1, "h")


def _coef(shape, seed):
    return np.random.default_rng(seed).uniform(-1, 1, size=shape + (3,))


def _linear_fields(coef, lat, lon):
    """f = a + b * lat + c * lon for every leading index of ``coef [..., 3]``."""
    a, b, c = (coef[..., k][..., None, None] for k in range(3))
    return 100 * a + b * lat[:, None] + c * lon[None, :]


class ArraySource:
    """A DataSource over an in-memory DataArray [time, variable, lat, lon]."""

    def __init__(self, da: xr.DataArray):
        self.da = da

    def __call__(self, time, variable):
        return self.da.sel(time=np.asarray(time, dtype="datetime64[ns]"), variable=list(variable))


class ArrayForecastSource:
    """A ForecastSource over [time, lead_time, variable, lat, lon]."""

    def __init__(self, da: xr.DataArray):
        self.da = da

    def __call__(self, time, lead_time, variable):
        return self.da.sel(time=np.asarray(time, dtype="datetime64[ns]"), lead_time=lead_time,
                           variable=list(variable))


@pytest.fixture(scope="module")
def grid():
    return ModelGrid.hrrr((300, 324), (700, 732))  # 24 x 32, central US


@pytest.fixture(scope="module")
def data_source():
    coef = _coef((TIMES.size, len(SRC_VARS)), 0)
    da = xr.DataArray(_linear_fields(coef, LAT, LON), dims=["time", "variable", "lat", "lon"],
                      coords={"time": TIMES, "variable": SRC_VARS, "lat": LAT, "lon": LON})
    return ArraySource(da), coef


def _expected(coef, grid):
    """The linear fields of ``coef [..., 3]`` evaluated on the model grid (exact for bilinear)."""
    a, b, c = (coef[..., k][..., None, None] for k in range(3))
    return 100 * a + b * grid.lat + c * grid.lon


def test_data_source_values_reordered_by_name(data_source, grid):
    src, coef = data_source
    wanted = ["z500", "t2m", "u10m"]
    f = ConditioningFetcher(src, wanted, grid)
    assert not f.forecast
    out = f(TIMES[[3, 1]] - H1, H1)  # valid times 06 and 01
    assert out.shape == (2, 3, *grid.shape) and out.dtype == torch.float32 and out.is_contiguous()
    rows = [3, 1]
    cols = [SRC_VARS.index(v) for v in wanted]
    expect = _expected(coef[np.ix_(rows, cols)], grid)
    np.testing.assert_allclose(out.numpy(), expect, rtol=1e-5, atol=1e-3)
    # Same valid time twice, and datetime / timedelta inputs.
    out2 = f([datetime(2024, 5, 1, 1, tzinfo=timezone.utc), datetime(2024, 5, 1, 1)], timedelta(hours=0))
    torch.testing.assert_close(out2[0], out2[1])
    torch.testing.assert_close(out2[0], out[1])


@pytest.mark.parametrize("method", ["grid_sample", "gather"])
def test_matches_direct_bilinear(data_source, grid, method):
    """Against a straightforward per-point bilinear interpolation of random fields."""
    rng = np.random.default_rng(3)
    vals = rng.standard_normal((1, 2, LAT.size, LON.size))
    da = xr.DataArray(vals, dims=["time", "variable", "lat", "lon"],
                      coords={"time": TIMES[:1], "variable": ["a", "b"], "lat": LAT, "lon": LON})
    f = ConditioningFetcher(ArraySource(da), ["b", "a"], grid, regrid_method=method)
    out = f(TIMES[0], np.timedelta64(0, "h")).numpy()
    lat_asc, f_asc = LAT[::-1], vals[0][:, ::-1, :]  # ascending latitude
    for (i, j) in [(0, 0), (5, 7), (23, 31), (12, 20)]:
        la, lo = grid.lat[i, j], grid.lon[i, j]
        r = np.searchsorted(lat_asc, la) - 1
        c = np.searchsorted(LON, lo) - 1
        wy = (la - lat_asc[r]) / (lat_asc[r + 1] - lat_asc[r])
        wx = (lo - LON[c]) / (LON[c + 1] - LON[c])
        for ch, var in enumerate([1, 0]):
            f = f_asc[var]
            ref = ((1 - wy) * ((1 - wx) * f[r, c] + wx * f[r, c + 1])
                   + wy * ((1 - wx) * f[r + 1, c] + wx * f[r + 1, c + 1]))
            assert abs(out[0, ch, i, j] - ref) < 1e-5


def test_missing_variable_time_and_nan(data_source, grid):
    src, _ = data_source
    with pytest.raises(ValueError, match=r"q700"):
        ConditioningFetcher(src, ["t2m", "q700"], grid)(TIMES[0], np.timedelta64(0, "h"))

    # The source raises for a time it lacks: the error names the time.
    f = ConditioningFetcher(src, ["t2m"], grid)
    with pytest.raises(ValueError, match=r"2024-05-01T03"):
        f(TIMES[2], H1)

    # The source silently returns other times.
    class WrongTimes:
        def __call__(self, time, variable):
            return src(TIMES[:1], variable)

    with pytest.raises(ValueError, match=r"no data for valid times \[2024-05-01T02\]"):
        ConditioningFetcher(WrongTimes(), ["t2m"], grid)(TIMES[1], H1)

    # A variable reported under the wrong name is not taken by position.
    class Renamed:
        def __call__(self, time, variable):
            return src(time, ["t2m"]).assign_coords(variable=["tcwv"])

    with pytest.raises(ValueError, match=r"variables \['t2m'\]"):
        ConditioningFetcher(Renamed(), ["t2m"], grid)(TIMES[0], np.timedelta64(0, "h"))

    # NaN inside the model domain.
    da = src.da.copy()
    da.loc[dict(time=TIMES[1], variable="z500")] = np.nan
    nan_src = ArraySource(da)
    with pytest.raises(ValueError, match=r"variables \['z500'\].*2024-05-01T01"):
        ConditioningFetcher(nan_src, ["t2m", "z500"], grid)(TIMES[:2], np.timedelta64(0, "h"))
    # NaN outside the requested variables or times is fine.
    ConditioningFetcher(nan_src, ["t2m"], grid)(TIMES[:2], np.timedelta64(0, "h"))


def test_bad_arguments(data_source, grid):
    src, _ = data_source
    with pytest.raises(ValueError, match="string"):
        ConditioningFetcher(src, "t2m", grid)
    with pytest.raises(ValueError, match="more than once"):
        ConditioningFetcher(src, ["t2m", "t2m"], grid)
    with pytest.raises(ValueError, match="ModelGrid"):
        ConditioningFetcher(src, ["t2m"], (grid.lat, grid.lon))
    with pytest.raises(ValueError, match="regrid_method 'cubic'"):
        ConditioningFetcher(src, ["t2m"], grid, regrid_method="cubic")
    f = ConditioningFetcher(src, ["t2m"], grid)
    with pytest.raises(ValueError, match="no unit"):
        f(TIMES[0], 1)
    with pytest.raises(ValueError, match="3 values for 2 init times"):
        f(TIMES[:2], np.array([0, 1, 2], dtype="timedelta64[h]"))


def test_forecast_source(grid):
    leads = np.array([0, 1, 2], dtype="timedelta64[h]").astype("timedelta64[ns]")
    coef = _coef((2, leads.size, len(SRC_VARS)), 1)
    da = xr.DataArray(_linear_fields(coef, LAT, LON), dims=["time", "lead_time", "variable", "lat", "lon"],
                      coords={"time": TIMES[:2], "lead_time": leads, "variable": SRC_VARS,
                              "lat": LAT, "lon": LON})
    f = ConditioningFetcher(ArrayForecastSource(da), ["u10m", "msl"], grid)
    assert f.forecast
    cols = [SRC_VARS.index("u10m"), SRC_VARS.index("msl")]
    out = f(TIMES[:2], np.timedelta64(2, "h"))
    np.testing.assert_allclose(out.numpy(), _expected(coef[:, 2][:, cols], grid), rtol=1e-5, atol=1e-3)
    # One lead per init time, init times out of order.
    out = f(TIMES[[1, 0]], np.array([1, 0], dtype="timedelta64[h]"))
    expect = np.stack([_expected(coef[1, 1, cols], grid), _expected(coef[0, 0, cols], grid)])
    np.testing.assert_allclose(out.numpy(), expect, rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="2024-05-01T02"):
        f(TIMES[2], H1)
    nan = da.copy()
    nan.loc[dict(time=TIMES[1], lead_time=leads[1], variable="msl")] = np.nan
    msg = r"\['msl'\] at init times \[2024-05-01T01\] \(lead time \[1h\]\)"
    with pytest.raises(ValueError, match=msg):
        ConditioningFetcher(ArrayForecastSource(nan), ["u10m", "msl"], grid)(TIMES[:2], H1)
    # Told explicitly that a lead_time-less callable is a forecast source.
    g = ConditioningFetcher(lambda *a: ArrayForecastSource(da)(*a), ["msl"], grid, forecast=True)
    assert g.forecast and g(TIMES[0], H1).shape == (1, 1, *grid.shape)


def test_source_on_the_model_grid(grid):
    vals = np.random.default_rng(2).standard_normal((1, 2, *grid.shape)).astype(np.float32)
    da = xr.DataArray(vals, dims=["time", "variable", "hrrr_y", "hrrr_x"],
                      coords={"time": TIMES[:1], "variable": ["a", "b"], "hrrr_y": grid.y, "hrrr_x": grid.x})
    out = ConditioningFetcher(ArraySource(da), ["b", "a"], grid)(TIMES[0], np.timedelta64(0, "h"))
    np.testing.assert_array_equal(out.numpy(), vals[:, ::-1])
    vals[0, 1, 3, 4] = np.inf
    bad = ConditioningFetcher(ArraySource(da.copy(data=vals)), ["a", "b"], grid)
    msg = r"infinite values in variables \['b'\] at valid times \[2024-05-01T00"
    with pytest.raises(ValueError, match=msg):
        bad(TIMES[0], np.timedelta64(0, "h"))
    small = ModelGrid.hrrr((300, 310), (700, 732))
    with pytest.raises(ValueError, match=r"shape \(10, 32\)"):
        ConditioningFetcher(ArraySource(da), ["a"], small)(TIMES[0], np.timedelta64(0, "h"))


@pytest.mark.slow  # imports earth2studio.data (several seconds)
def test_earth2studio_sources(grid, tmp_path):
    e2s_data = pytest.importorskip("earth2studio.data")
    domain = OrderedDict(lat=np.linspace(90, -90, 181), lon=np.arange(0.0, 360.0, 1.0))
    names = ["u10m", "t2m", "z500"]
    out = ConditioningFetcher(e2s_data.Random(domain), names, grid)(TIMES[:2], H1)
    assert out.shape == (2, 3, *grid.shape) and torch.isfinite(out).all()
    fx = ConditioningFetcher(e2s_data.Random_FX(domain), names, grid)
    assert fx.forecast and fx(TIMES[0], np.array([H1])).shape == (1, 3, *grid.shape)
    on_grid = e2s_data.Random(OrderedDict(hrrr_y=grid.y, hrrr_x=grid.x))
    assert ConditioningFetcher(on_grid, names, grid)(TIMES[0], H1).shape == (1, 3, *grid.shape)
    # A file-backed source (earth2studio's DataArrayFile).
    coef = _coef((1, 2), 4)
    da = xr.DataArray(_linear_fields(coef, LAT, LON), dims=["time", "variable", "lat", "lon"],
                      coords={"time": TIMES[:1], "variable": ["t2m", "msl"], "lat": LAT, "lon": LON})
    path = tmp_path / "cond.nc"
    da.to_netcdf(path)
    f = ConditioningFetcher(e2s_data.DataArrayFile(str(path)), ["msl"], grid)
    out = f(TIMES[0], np.timedelta64(0, "h"))
    np.testing.assert_allclose(out.numpy(), _expected(coef[:, 1:], grid), rtol=1e-5, atol=1e-3)
