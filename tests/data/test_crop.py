"""Cropping a larger projected source to a model grid by coordinate value."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import xarray as xr

from stormcast_plugin.data.crop import CropToGrid, grid_window
from stormcast_plugin.utils.grid import HRRR_X, HRRR_Y, ModelGrid

GRID = ModelGrid.hrrr((300, 306), (600, 608))
TIMES = np.array(["2024-05-01T00", "2024-05-01T01"], dtype="datetime64[ns]")


class LargeSource:
    """A DataSource on a window of the native HRRR grid larger than GRID; value = 1000 * row + column."""

    def __init__(self, rows=slice(290, 320), cols=slice(590, 630), dims=("hrrr_y", "hrrr_x"), jitter=0.0):
        self.rows, self.cols, self.dims, self.jitter = rows, cols, dims, jitter

    def __call__(self, time, variable):
        r = np.arange(1059)[self.rows]
        c = np.arange(1799)[self.cols]
        values = np.broadcast_to(1000.0 * r[:, None] + c[None, :], (len(TIMES), len(variable), r.size, c.size))
        return xr.DataArray(values.copy(), dims=("time", "variable") + self.dims,
                            coords={"time": TIMES, "variable": list(variable),
                                    self.dims[0]: HRRR_Y[self.rows] + self.jitter,
                                    self.dims[1]: HRRR_X[self.cols] - self.jitter})


def test_crop_takes_the_model_grids_rows_and_columns():
    out = CropToGrid(LargeSource(), GRID)(TIMES, ["t2m", "u10m"])
    assert out.dims == ("time", "variable", "hrrr_y", "hrrr_x") and out.shape == (2, 2, 6, 8)
    np.testing.assert_array_equal(out.values[0, 1], 1000.0 * np.arange(300, 306)[:, None] + np.arange(600, 608))
    np.testing.assert_array_equal(out["hrrr_y"].values, GRID.y)
    same = asyncio.run(CropToGrid(LargeSource(), GRID).fetch(TIMES, ["t2m"]))
    np.testing.assert_array_equal(same.values, out.values[:, :1])


def test_crop_matches_within_the_tolerance_and_any_axis_order():
    # a reversed (north to south) source with y/x names and coordinates off by 0.4 m
    src = LargeSource(rows=slice(320, 289, -1), dims=("y", "x"), jitter=0.4)
    out = CropToGrid(src, GRID)(TIMES, ["t2m"])
    np.testing.assert_array_equal(out.values[0, 0, :, 0], 1000.0 * np.arange(300, 306) + 600)
    with pytest.raises(ValueError, match=r"do not contain the model grid .* within 0\.1 m"):
        CropToGrid(src, GRID, tolerance=0.1)(TIMES, ["t2m"])


def test_a_source_that_misses_the_domain_is_named():
    with pytest.raises(ValueError, match=r"source LargeSource: its hrrr_x coordinates .* do not contain the model "
                                         r"grid 'hrrr\[300:306,600:608\]'"):
        CropToGrid(LargeSource(cols=slice(604, 640)), GRID)(TIMES, ["t2m"])
    latlon = xr.DataArray(np.zeros((1, 3, 4)), dims=("variable", "lat", "lon"))
    with pytest.raises(ValueError, match=r"spatial dims \['lat', 'lon'\]; expected one of \[\['hrrr_y', 'hrrr_x'\]"):
        grid_window(latlon, GRID)


def test_dims_without_coordinates_must_already_fit():
    bare = xr.DataArray(np.zeros((1, 6, 8)), dims=("variable", "hrrr_y", "hrrr_x"))
    window = grid_window(bare, GRID)
    assert list(window) == ["hrrr_y", "hrrr_x"] and window["hrrr_x"].tolist() == list(range(8))
    with pytest.raises(ValueError, match="returned 9 hrrr_x points without coordinates; the model grid"):
        grid_window(xr.DataArray(np.zeros((1, 6, 9)), dims=("variable", "hrrr_y", "hrrr_x")), GRID, source="here")


def test_bad_arguments():
    with pytest.raises(ValueError, match="callable"):
        CropToGrid(None, GRID)
    with pytest.raises(ValueError, match="ModelGrid"):
        CropToGrid(LargeSource(), (GRID.y, GRID.x))
    with pytest.raises(ValueError, match="positive distance"):
        CropToGrid(LargeSource(), GRID, tolerance=0)
