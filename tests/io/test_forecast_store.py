"""The forecast store writer and reader on small hand-made stores (no model)."""

from __future__ import annotations

import json
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch

xr = pytest.importorskip("xarray")

from stormcast_plugin.io import forecast_store as fs  # noqa: E402

NY, NX, LEADS, MEMBERS = 4, 6, 3, 2


def coords():
    return OrderedDict(
        ensemble=np.arange(MEMBERS),
        time=np.array(["2024-05-01T00"], dtype="datetime64[ns]"),
        lead_time=np.array([np.timedelta64(h, "h") for h in range(LEADS)]),
        hrrr_y=np.arange(NY) * 3000.0,
        hrrr_x=np.arange(NX) * 3000.0,
    )


def write(path, hours_written, completed=None):
    """A store with t2m written for the first ``hours_written`` lead hours, every member."""
    io = fs.open_output(path)
    c = coords()
    fs.add_forecast_arrays(io, c, ["t2m"])
    fs.set_attributes(io, {"stormcast_forecast": 1, "completed_lead_hours": -1, "seed": 1})
    for h in range(hours_written):
        out = OrderedDict(c)
        out["lead_time"] = c["lead_time"][h:h + 1]
        io.write([torch.full((MEMBERS, 1, 1, NY, NX), 280.0 + h)], out, ["t2m"])
        fs.set_attributes(io, {"completed_lead_hours": h if completed is None else completed})
    fs.close_output(io)
    return path


@pytest.mark.parametrize("suffix", [".zarr", ".nc"])
def test_unwritten_hours_read_as_nan_in_both_formats(tmp_path, suffix):
    path = write(tmp_path / f"f{suffix}", 2)
    ds = fs.open_store(path)
    t2m = ds["t2m"].values
    assert t2m.shape == (MEMBERS, 1, LEADS, NY, NX)
    np.testing.assert_array_equal(t2m[:, :, 1], 281.0)
    assert np.isnan(t2m[:, :, 2]).all()
    assert fs.completed_lead_hours(ds) == 1 and int(ds.attrs["seed"]) == 1


def test_zarr_store_has_consolidated_metadata_kept_up_to_date(tmp_path):
    path = write(tmp_path / "f.zarr", 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(path)
    assert ds.attrs["completed_lead_hours"] == 2  # the last update, not the first
    assert json.loads((path / "zarr.json").read_text())["consolidated_metadata"]["metadata"]["t2m"]


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    path = write(tmp_path / "f.zarr", 1)
    with pytest.raises(FileExistsError, match="--overwrite"):
        fs.open_output(path)
    fs.open_output(path, overwrite=True)
    assert not (path / "t2m").exists()
    with pytest.raises(ValueError, match="'grib' is not known"):
        fs.open_output(tmp_path / "g", fmt="grib")


def test_netcdf_written_without_fill_value_reads_nan_for_unwritten_hours(tmp_path):
    netCDF4 = pytest.importorskip("netCDF4")
    path = tmp_path / "legacy.nc"
    with netCDF4.Dataset(path, "w") as nc:  # as earth2studio's backend creates variables
        nc.createDimension("lead_time", 2)
        nc.createDimension("x", 3)
        var = nc.createVariable("t2m", "f4", ("lead_time", "x"))
        var[0, :] = 280.0
    t2m = fs.open_store(path)["t2m"].values
    np.testing.assert_array_equal(t2m[0], 280.0)
    assert np.isnan(t2m[1]).all()


@pytest.mark.parametrize("suffix", [".zarr", ".nc"])
def test_open_forecast_treats_hours_past_completed_as_missing(tmp_path, suffix):
    # members of a second batch never reached hour 2: completed_lead_hours says 1, though hour 2 holds values
    path = write(tmp_path / f"p{suffix}", 3, completed=1)
    with pytest.warns(fs.PartialForecastWarning, match=r"incomplete \(completed_lead_hours = 1\): 1 of 3 lead "
                                                       r"times \(\+2 h\)"):
        ds = fs.open_forecast(path)
    assert np.isnan(ds["t2m"].values[:, :, 2]).all() and np.isfinite(ds["t2m"].values[:, :, :2]).all()
    complete = write(tmp_path / f"c{suffix}", 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(fs.open_forecast(complete)["t2m"].values).all()


def test_lead_hours_from_timedeltas_and_numbers():
    da = xr.DataArray(np.zeros(3), dims="lead_time",
                      coords={"lead_time": np.array([0, 90, 180], dtype="timedelta64[m]")})
    assert fs.lead_hours(da) == [0.0, 1.5, 3.0]
    da = da.assign_coords(lead_time=("lead_time", [0.0, 60.0, 120.0], {"units": "minutes"}))
    assert fs.lead_hours(da) == [0.0, 1.0, 2.0]


def test_damaged_chunk_names_store_array_and_hour(tmp_path):
    path = write(tmp_path / "d.zarr", 3)
    chunk = path / "t2m" / "c" / "1" / "0" / "1" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:5])
    ds = fs.open_forecast(path)
    fs.load_lead(ds["t2m"], 0, str(path))
    with pytest.raises(fs.ForecastStoreError, match=r"'t2m' at lead \+1 h \(lead index 1\) from the forecast "
                                                    r"store .*d\.zarr"):
        fs.load_lead(ds["t2m"], 1, str(path))


def test_invalid_metadata_json_names_store_and_array(tmp_path):
    path = tmp_path / "v2.zarr"  # a store without consolidated metadata reads each array's own metadata
    xr.Dataset({"t2m": (("lead_time", "x"), np.zeros((2, 3)))}).to_zarr(path, zarr_format=2, consolidated=False)
    (path / "t2m" / ".zarray").write_text('{"shape": [2,')
    with pytest.raises(fs.ForecastStoreError, match=r"v2\.zarr: t2m/\.zarray \(array 't2m' \(every lead hour of "
                                                    r"it\)\) is not valid JSON"):
        fs.open_store(path)
    ours = write(tmp_path / "v3.zarr", 1)
    (ours / "zarr.json").write_text("{")
    with pytest.raises(fs.ForecastStoreError, match=r"v3\.zarr: zarr\.json \(the store's group metadata\)"):
        fs.open_store(ours)
    with pytest.raises(FileNotFoundError, match="no store at"):
        fs.open_store(tmp_path / "absent.zarr")


# ---------------------------------------------------------------- written flags

def flagged(path, written):
    """A store with flags (member chunks of 1) where ``written[member][hour]`` says what was written."""
    io = fs.open_output(path)
    c = coords()
    fs.add_forecast_arrays(io, c, ["t2m"], member_chunk=1)
    for m, hours in enumerate(written):
        for h in hours:
            out = OrderedDict(c)
            out["ensemble"], out["lead_time"] = c["ensemble"][m:m + 1], c["lead_time"][h:h + 1]
            fs.write_hour(io, torch.full((1, 1, 1, 1, NY, NX), 280.0 + 10 * m + h), out, ["t2m"])
    return io


@pytest.mark.parametrize("suffix", [".zarr", ".nc"])
def test_write_hour_flags_exactly_the_member_hours_written(tmp_path, suffix):
    io = flagged(tmp_path / f"f{suffix}", [[0, 1, 2], [0]])
    flags = fs.read_written(io)
    assert flags.tolist() == [[[True, True, True]], [[True, False, False]]]
    assert fs.completed_from_written(flags) == 0
    if suffix == ".zarr":
        np.testing.assert_array_equal(fs.read_state(io, ["t2m"], [1, 0], 0, 0)[:, 0, 0, 0], [290.0, 280.0])
    fs.close_output(io)
    assert fs.completed_from_written(np.ones((2, 3, 4), dtype=bool)) == 3
    assert fs.completed_from_written(np.zeros((2, 3, 4), dtype=bool)) == -1


def test_open_forecast_keeps_the_member_hours_written_and_masks_the_others(tmp_path):
    path = tmp_path / "f.zarr"
    flagged(path, [[0, 1, 2], [0]])
    with pytest.warns(fs.PartialForecastWarning, match=r"completed_lead_hours = 0\): 2 of 3 lead times"):
        ds = fs.open_forecast(path)
    t2m = ds["t2m"].values
    np.testing.assert_array_equal(t2m[0, 0, :, 0, 0], [280.0, 281.0, 282.0])  # member 0: all its hours
    assert np.isnan(t2m[1, 0, 1:]).all() and (t2m[1, 0, 0] == 290.0).all()


def test_open_existing_refuses_stores_it_cannot_resume(tmp_path):
    with pytest.raises(fs.ForecastStoreError, match="not a zarr forecast store"):
        fs.open_existing(write(tmp_path / "f.nc", 1))
    with pytest.raises(fs.ForecastStoreError, match="has no 'written' flags"):
        fs.open_existing(write(tmp_path / "old.zarr", 1))
    io = fs.open_existing(flagged(tmp_path / "new.zarr", [[0], []]).store.root)
    assert fs.read_written(io)[:, 0, 0].tolist() == [True, False]
