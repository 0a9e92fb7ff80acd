"""Tests of ``stormcast data prepare``: offline stand-in sources, missing hours,
resumability (including a SIGKILL fault test), Dask workers and the statistics written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time as _time
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest
import xarray as xr

from stormcast_plugin.datagen.prepare import prepare_dataset
from stormcast_plugin.datagen.sources import PrepareError, RenameVariables
from stormcast_plugin.io.dataset_store import DatasetStore, StoreError
from stormcast_plugin.utils.grid import HRRR_X, HRRR_Y, ModelGrid

ROOT = Path(__file__).resolve().parents[2]
GRID = ModelGrid.hrrr((300, 316), (600, 624))
SRC_ROWS = slice(296, 322)  # the stand-in state source covers a larger window than GRID
SRC_COLS = slice(594, 632)
STATE_VARS = ("u10m", "t2m", "msl", "q5hl")
COND_VARS = ("u10m", "t2m", "z500")
START = np.datetime64("2022-06-01T00", "h")
BASE = {"msl": 1.0e5, "t2m": 285.0, "z500": 5.6e4, "orography": 500.0}
COND_LAT = np.arange(60.0, 9.99, -0.25)  # descending, like ERA5
COND_LON = np.arange(220.0, 320.0, 0.25)


def hour(k: int) -> np.datetime64:
    return START + np.timedelta64(k, "h")


def field(t: Any, name: str, a: np.ndarray, b: np.ndarray, scale: float) -> np.ndarray:
    """A deterministic smooth field of time, variable and the two coordinates."""
    h = float((np.datetime64(t, "h") - START) / np.timedelta64(1, "h"))
    k = zlib.crc32(name.encode()) % 97
    return (BASE.get(name, 0.0) + 3.0 * np.sin(np.asarray(a)[:, None] * scale + 0.37 * h + k)
            + 2.0 * np.cos(np.asarray(b)[None, :] * scale - 0.21 * h + 0.5 * k))


def expected_state(t: Any, names: Sequence[str] = STATE_VARS) -> np.ndarray:
    return np.stack([field(t, v, GRID.y, GRID.x, 1e-5) for v in names]).astype(np.float32)


def _hours_of(time: Any) -> list[np.datetime64]:
    items = time if isinstance(time, (list, tuple, np.ndarray)) else [time]
    return [np.datetime64(v, "h") for v in items]


class StateStandIn:
    """HRRR-like source: ``[time, lead_time, variable, hrrr_y, hrrr_x]`` on a window of the native grid."""

    def __init__(self, fail: Sequence[Any] = (), nan: Sequence[Any] = (), sleep: float = 0.0,
                 rows: slice = SRC_ROWS, cols: slice = SRC_COLS) -> None:
        self.fail = {np.datetime64(t, "h") for t in fail}
        self.nan = {np.datetime64(t, "h") for t in nan}
        self.sleep = sleep
        self.y, self.x = HRRR_Y[rows], HRRR_X[cols]
        self.calls: list[np.datetime64] = []

    def __call__(self, time: Any, variable: Any) -> xr.DataArray:
        times = _hours_of(time)
        names = [variable] if isinstance(variable, str) else list(variable)
        self.calls.extend(times)
        if self.sleep:
            _time.sleep(self.sleep)
        for t in times:
            if t in self.fail:
                raise FileNotFoundError(f"no HRRR analysis file for {t}")
        data = np.stack([np.stack([field(t, v, self.y, self.x, 1e-5) for v in names]) for t in times])
        for i, t in enumerate(times):
            if t in self.nan:
                data[i, -1, 8, 10] = np.nan  # inside GRID
        return xr.DataArray(
            data[:, None], dims=["time", "lead_time", "variable", "hrrr_y", "hrrr_x"],
            coords={"time": np.array(times, "datetime64[ns]"), "lead_time": [np.timedelta64(0, "h")],
                    "variable": names, "hrrr_y": self.y, "hrrr_x": self.x})


class CondStandIn:
    """ERA5-like source: ``[time, variable, lat, lon]`` on a 0.25 degree box."""

    def __init__(self, fail: Sequence[Any] = (), nan: Sequence[Any] = ()) -> None:
        self.fail = {np.datetime64(t, "h") for t in fail}
        self.nan = {np.datetime64(t, "h") for t in nan}
        self.calls: list[np.datetime64] = []

    def __call__(self, time: Any, variable: Any) -> xr.DataArray:
        times = _hours_of(time)
        names = [variable] if isinstance(variable, str) else list(variable)
        self.calls.extend(times)
        for t in times:
            if t in self.fail:
                raise RuntimeError(f"ERA5 not available at {t}")
        data = np.stack([np.stack([field(t, v, COND_LAT, COND_LON, 0.1) for v in names]) for t in times])
        for i, t in enumerate(times):
            if t in self.nan:
                # one point inside the domain's box
                data[i, 0, np.argmin(np.abs(COND_LAT - GRID.lat.mean())),
                     np.argmin(np.abs(COND_LON - GRID.lon.mean()))] = np.nan
        return xr.DataArray(data, dims=["time", "variable", "lat", "lon"],
                            coords={"time": np.array(times, "datetime64[ns]"), "variable": names,
                                    "lat": COND_LAT, "lon": COND_LON})


def run(path: Path, n: int, state: Any = None, cond: Any = None, **kw: Any) -> DatasetStore:
    return prepare_dataset(path, START, hour(n), state_source=state or StateStandIn(),
                           conditioning_source=cond or CondStandIn(), grid=GRID, state_variables=STATE_VARS,
                           conditioning_variables=COND_VARS, progress=False, **kw)


def run_for_fault(path: str, sleep: float) -> None:
    """The run of the fault test (also called in a subprocess): 10 hours, one missing."""
    run(Path(path), 10, state=StateStandIn(fail=[hour(3)], sleep=sleep), cond=CondStandIn(nan=[hour(6)]))


def assert_same_store(a: Path, b: Path) -> None:
    sa, sb = DatasetStore.open(a), DatasetStore.open(b)
    names = sorted(sa.group.array_keys())
    assert names == sorted(sb.group.array_keys())
    for name in names:
        np.testing.assert_array_equal(sa.group[name][...], sb.group[name][...], err_msg=name)
    for key in ("missing_reasons", "statistics_period", "period", "statistics_hours"):
        assert sa.attrs.get(key) == sb.attrs.get(key), key


# --------------------------------------------------------------------------
# Full runs
# --------------------------------------------------------------------------


def test_full_run_matches_the_sources_cropped(tmp_path: Path) -> None:
    (tmp_path / "d.zarr.incomplete").mkdir()  # left by a run killed while creating the store
    store = run(tmp_path / "d.zarr", 4)
    assert not (tmp_path / "d.zarr.incomplete").exists()
    assert store.written.all() and not store.missing.any()
    for i in range(4):
        np.testing.assert_array_equal(store.read_state(i)[0], expected_state(hour(i)))
        want = np.stack([field(hour(i), v, store.cond_lat, store.cond_lon, 0.1) for v in COND_VARS])
        np.testing.assert_array_equal(store.read_conditioning(i)[0], want.astype(np.float32))
    # the conditioning box: the source's own points, the domain plus a 2 degree margin
    lat, lon = store.cond_lat, store.cond_lon
    assert np.isin(lat, COND_LAT).all() and np.isin(lon, COND_LON).all()
    assert lat[0] > lat[-1]  # the source's (descending) order is kept
    assert lat.min() <= GRID.lat.min() - 1.75 and lat.max() >= GRID.lat.max() + 1.75
    assert lat.min() >= GRID.lat.min() - 2.0 and lat.max() <= GRID.lat.max() + 2.0
    assert lon.min() <= GRID.lon.min() - 1.75 and lon.max() >= GRID.lon.max() + 1.75
    # invariants from the state source at the first hour
    inv = np.stack([field(START, v, GRID.y, GRID.x, 1e-5) for v in ("lsm", "orography")]).astype(np.float32)
    np.testing.assert_array_equal(store.read_invariants(), inv)
    # statistics over every hour
    all_state = np.stack([expected_state(hour(i)) for i in range(4)]).astype(np.float64)
    stats = store.statistics()
    np.testing.assert_allclose(stats["state_mean"], all_state.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(stats["state_std"], all_state.std(axis=(0, 2, 3)), rtol=1e-9)
    assert store.attrs["statistics_period"] == [str(START), str(hour(4))]
    assert store.attrs["domain"]["native_window"] == [300, 316, 600, 624]
    assert "StateStandIn" in store.attrs["source"]["state"]
    assert store.grid.shape == GRID.shape
    ds = xr.open_zarr(str(store.path), consolidated=True)  # consolidated metadata is current
    assert ds["state"].shape == (4, len(STATE_VARS), *GRID.shape)
    assert ds.attrs["statistics_period"] == [str(START), str(hour(4))]


def test_missing_hours_are_recorded_and_skipped_in_statistics(tmp_path: Path) -> None:
    state = StateStandIn(fail=[hour(1)], nan=[hour(4)])
    store = run(tmp_path / "d.zarr", 6, state=state, cond=CondStandIn(fail=[hour(2)], nan=[hour(3)]),
                stats_period=(hour(0), hour(5)))
    assert store.written.all()
    assert store.missing.tolist() == [False, True, True, True, True, False]
    reasons = store.attrs["missing_reasons"]
    assert sorted(reasons) == [str(hour(k)) for k in (1, 2, 3, 4)]
    assert "FileNotFoundError" in reasons[str(hour(1))] and "RuntimeError" in reasons[str(hour(2))]
    assert "NaN" in reasons[str(hour(3))] and "conditioning" in reasons[str(hour(3))]
    assert "NaN" in reasons[str(hour(4))] and "q5hl" in reasons[str(hour(4))]
    assert np.isnan(store.read_state(1)).all()
    np.testing.assert_array_equal(store.read_state(5)[0], expected_state(hour(5)))
    # statistics: hour 0 only (hour 5 is outside [0, 5), hours 1-4 missing)
    np.testing.assert_allclose(store.statistics()["state_mean"],
                               expected_state(hour(0)).astype(np.float64).mean(axis=(1, 2)), rtol=1e-12)
    assert store.attrs["statistics_period"] == [str(hour(0)), str(hour(5))]
    # a later run with --retry-missing redoes them; the sources work now
    store = run(tmp_path / "d.zarr", 6, retry_missing=True)
    assert not store.missing.any() and store.attrs["missing_reasons"] == {}
    np.testing.assert_array_equal(store.read_state(1)[0], expected_state(hour(1)))


def test_rerun_fetches_only_unwritten_hours(tmp_path: Path) -> None:
    path = tmp_path / "d.zarr"
    ref = run(path, 6)
    ref_state = ref.read_state(slice(None))
    # forget hours 2 and 4 (as if a run had stopped before them) and scribble on their data
    g = DatasetStore.open(path, mode="r+").group
    for i in (2, 4):
        g["written"][i] = 0
        g["state"][i] = np.zeros(g["state"].shape[1:], np.float32)
    state, cond = StateStandIn(), CondStandIn()
    store = run(path, 6, state=state, cond=cond)
    assert state.calls == [hour(2), hour(4)] and cond.calls == [hour(2), hour(4)]
    np.testing.assert_array_equal(store.read_state(slice(None)), ref_state)
    # nothing left to do: no source call at all
    state, cond = StateStandIn(), CondStandIn()
    run(path, 6, state=state, cond=cond)
    assert state.calls == [] and cond.calls == []


def test_existing_store_must_match(tmp_path: Path) -> None:
    path = tmp_path / "d.zarr"
    run(path, 2)
    with pytest.raises(StoreError, match="hours"):
        run(path, 3)
    with pytest.raises(StoreError, match="state variables"):
        prepare_dataset(path, START, hour(2), state_source=StateStandIn(), conditioning_source=CondStandIn(),
                        grid=GRID, state_variables=STATE_VARS[:2], conditioning_variables=COND_VARS,
                        progress=False)
    with pytest.raises(StoreError, match="grid"):
        prepare_dataset(path, START, hour(2), state_source=StateStandIn(), conditioning_source=CondStandIn(),
                        grid=ModelGrid.hrrr((300, 316), (600, 620)), state_variables=STATE_VARS,
                        conditioning_variables=COND_VARS, progress=False)
    assert len(run(path, 3, overwrite=True)) == 3


def test_configuration_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(PrepareError, match="do not contain the model grid"):
        run(tmp_path / "a.zarr", 2, state=StateStandIn(rows=slice(0, 40)))
    with pytest.raises(PrepareError, match="failed for the first 2 hours"):
        run(tmp_path / "b.zarr", 2, cond=CondStandIn(fail=[hour(0), hour(1)]))
    assert not (tmp_path / "b.zarr").exists()

    class NoQ(StateStandIn):
        def __call__(self, time: Any, variable: Any) -> xr.DataArray:
            return super().__call__(time, [v for v in variable if v != "q5hl"])

    with pytest.raises(PrepareError, match=r"no variables \['q5hl'\]"):
        run(tmp_path / "c.zarr", 2, state=NoQ(), invariants=np.ones((2, *GRID.shape)))
    with pytest.raises(ValueError, match="after start"):
        run(tmp_path / "d.zarr", 0)
    with pytest.raises(ValueError, match="retries must be a non-negative integer .* got -1"):
        run(tmp_path / "e.zarr", 2, retries=-1)
    with pytest.raises(ValueError, match="start 2022-06-01T00:30 is not on the hour"):
        prepare_dataset(tmp_path / "f.zarr", "2022-06-01T00:30", hour(2), state_source=StateStandIn(),
                        conditioning_source=CondStandIn(), grid=GRID, progress=False)
    assert not (tmp_path / "e.zarr").exists() and not (tmp_path / "f.zarr").exists()


def test_invariants_array_and_renamed_source(tmp_path: Path) -> None:
    inv = np.arange(2 * GRID.size, dtype=np.float32).reshape(2, *GRID.shape)
    store = run(tmp_path / "a.zarr", 1, invariants=inv)
    np.testing.assert_array_equal(store.read_invariants(), inv)
    renamed = RenameVariables(StateStandIn(), {"lsm": "t2m", "orography": ("msl", 0.5)})
    store = run(tmp_path / "b.zarr", 1, invariant_source=renamed)
    want = [expected_state(START, ["t2m"])[0], (0.5 * field(START, "msl", GRID.y, GRID.x, 1e-5)).astype(np.float32)]
    np.testing.assert_allclose(store.read_invariants(), np.stack(want), rtol=1e-6)


# --------------------------------------------------------------------------
# Fault test: SIGKILL mid-run, resume, compare with an uninterrupted run
# --------------------------------------------------------------------------


def _written_count(path: Path) -> int:
    try:
        return int(DatasetStore.open(path, validate=False).written.sum())
    except (StoreError, OSError, ValueError, KeyError):
        return 0


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    ref, path = tmp_path / "ref.zarr", tmp_path / "killed.zarr"
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
            f"from tests.datagen.test_prepare import run_for_fault; run_for_fault({str(path)!r}, 0.25)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = _time.monotonic() + 60
    try:
        while proc.poll() is None and _time.monotonic() < deadline:
            if path.exists() and _written_count(path) >= 4:
                os.kill(proc.pid, signal.SIGKILL)
                break
            _time.sleep(0.02)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    killed = DatasetStore.open(path, validate=False)
    assert 4 <= killed.written.sum() < 10 and not killed.has_statistics
    for i in np.flatnonzero(killed.written & ~killed.missing):  # every flagged hour is complete
        np.testing.assert_array_equal(killed.read_state(int(i))[0], expected_state(hour(int(i))))

    run_for_fault(str(path), 0.0)  # resume
    run_for_fault(str(ref), 0.0)  # uninterrupted
    assert_same_store(path, ref)
    assert DatasetStore.open(path).missing.tolist() == [k in (3, 6) for k in range(10)]


# --------------------------------------------------------------------------
# Dask
# --------------------------------------------------------------------------


def test_dask_workers_match_sequential(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    seq, par = tmp_path / "seq.zarr", tmp_path / "par.zarr"
    kw = dict(state=StateStandIn(fail=[hour(1)]), cond=CondStandIn())
    run(seq, 4, **kw)
    run(par, 4, workers=2, **kw)
    assert_same_store(seq, par)


# --------------------------------------------------------------------------
# earth2studio's Random
# --------------------------------------------------------------------------


def test_earth2studio_random_sources(tmp_path: Path) -> None:
    from collections import OrderedDict

    from earth2studio.data import Random

    state = Random(OrderedDict(hrrr_y=GRID.y, hrrr_x=GRID.x))
    cond = Random(OrderedDict(lat=COND_LAT, lon=COND_LON))
    store = run(tmp_path / "r.zarr", 2, state=state, cond=cond)
    assert store.written.all() and not store.missing.any() and store.has_statistics
    np.testing.assert_allclose(store.statistics()["state_std"], 1.0, atol=0.2)
