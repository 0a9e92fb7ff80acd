"""The dataset store format: round trip, resumable writes, validation errors."""

import numpy as np
import pytest
import xarray as xr

from stormcast_plugin.io.dataset_store import DatasetStore, StoreError
from stormcast_plugin.utils.grid import ModelGrid

GRID = ModelGrid.hrrr(rows=(500, 516), cols=(800, 824), name="store-test")
TIMES = np.datetime64("2024-05-01T00", "h") + np.arange(5) * np.timedelta64(1, "h")


def _create(path, **kw):
    args = dict(times=TIMES, state_variables=["u10m", "t2m"], conditioning_variables=["z500"],
                invariant_names=["lsm", "orography"], grid=GRID, cond_lat=np.arange(45.0, 30.0, -0.5),
                cond_lon=np.arange(255.0, 275.0, 0.5))
    args.update(kw)
    return DatasetStore.create(path, **args)


def test_round_trip_and_xarray_view(tmp_path):
    s = _create(tmp_path / "a.zarr")
    state = np.stack([np.full((16, 24), 1.0), np.full((16, 24), 280.0)])
    s.write_hour(2, state, np.zeros((1, 30, 40)))
    s.mark_missing(3)
    s.write_statistics([0.0, 280.0], [1.0, 5.0], [50000.0], [100.0], period=(TIMES[0], TIMES[-1]))
    s.consolidate()
    r = DatasetStore.open(tmp_path / "a.zarr")
    np.testing.assert_array_equal(r.read_state(2, ["t2m", "u10m"])[0, :, 0, 0], [280.0, 1.0])
    assert np.isnan(r.read_state(0)).all()  # unwritten hours read as NaN
    assert r.written.tolist() == [False, False, True, True, False]
    assert [str(t)[:13] for t in r.missing_times] == ["2024-05-01T03"]
    assert r.grid.shape == (16, 24) and r.grid.name == "store-test"
    np.testing.assert_allclose(r.grid.lat, GRID.lat)
    ds = xr.open_zarr(tmp_path / "a.zarr")
    assert ds["state"].dims == ("time", "variable", "y", "x")
    assert ds["conditioning"].dims == ("time", "cond_variable", "lat", "lon")
    assert str(ds["time"].values[0])[:13] == "2024-05-01T00"
    assert r.statistics()["state_std"].tolist() == [1.0, 5.0]


def test_existing_store_is_not_overwritten(tmp_path):
    _create(tmp_path / "a.zarr")
    with pytest.raises(FileExistsError, match="overwrite"):
        _create(tmp_path / "a.zarr")


@pytest.mark.parametrize("times, match", [
    (TIMES[::-1], "sorted and unique"),
    (np.concatenate([TIMES[:2], TIMES[1:]]), "sorted and unique"),
    (TIMES.astype("datetime64[m]") + np.timedelta64(30, "m"), "whole hours"),
])
def test_bad_times_rejected_at_creation(tmp_path, times, match):
    with pytest.raises(StoreError, match=match):
        _create(tmp_path / "b.zarr", times=times)


def test_corrupted_times_are_found_on_open(tmp_path):
    s = _create(tmp_path / "c.zarr")
    hours = s.group["time"][:]
    hours[3] = hours[2]
    s.group["time"][:] = hours
    with pytest.raises(StoreError, match="duplicated times"):
        DatasetStore.open(tmp_path / "c.zarr")
    hours[3] = hours[0]
    s.group["time"][:] = hours
    with pytest.raises(StoreError, match="unsorted times"):
        DatasetStore.open(tmp_path / "c.zarr")


def test_validation_names_what_is_wrong(tmp_path):
    s = _create(tmp_path / "d.zarr")
    with pytest.raises(StoreError, match=r"lacks state variables \['refc'\]"):
        s.validate(state_variables=["u10m", "refc"])
    with pytest.raises(StoreError, match="statistics are missing, NaN or have zero std"):
        s.validate(require_statistics=True)
    with pytest.raises(StoreError, match="zero std"):
        s.write_statistics([0.0, 280.0], [1.0, 0.0], [50000.0], [100.0])
    other = ModelGrid.hrrr(rows=(500, 520), cols=(800, 824))
    with pytest.raises(StoreError, match=r"is on a \(16, 24\) grid"):
        s.validate(grid=other)
    bad = np.stack([np.full((16, 24), np.nan), np.full((16, 24), 280.0)])
    s.write_hour(1, bad, np.zeros((1, 30, 40)))
    with pytest.raises(StoreError, match=r"NaN or infinite values in \['u10m'\]"):
        s.validate(check_values=True)
    with pytest.raises(StoreError, match="has no hours"):
        s.index_of(np.datetime64("2030-01-01T00"))


def test_not_a_store(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        DatasetStore.open(tmp_path / "none.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError):
        DatasetStore.open(tmp_path / "plain")
