"""Build a StormCast dataset from earth2studio data sources (``stormcast data prepare``).

:func:`prepare_dataset` fills a :class:`~stormcast_plugin.io.dataset_store.DatasetStore`
hour by hour: the state from a source on the HRRR grid (earth2studio's
``HRRR``, hybrid levels) cropped to the model grid, the conditioning from a
global latitude/longitude source (earth2studio's ``ARCO_ERA5``) cropped to the
domain's box plus a margin. Any object with the earth2studio DataSource call
``source(time_list, variable_list) -> xr.DataArray [time, variable, ...]``
can stand in for either.

Hours a source cannot provide (it raises, lacks the time, or returns NaN) are
flagged missing, with the reason kept in the ``missing_reasons`` attribute.
The work can be spread over a Dask distributed cluster: every hour is a task
writing its own chunks. Statistics are computed afterwards in one streaming
pass (:class:`~stormcast_plugin.datagen.statistics.RunningStats`) over the written hours of
the training period.

Resumability: the store is created atomically (built under a temporary name,
then renamed); an hour gets its ``written`` flag only after its data (see
:mod:`~stormcast_plugin.io.dataset_store`), and a re-run skips flagged hours. A run
killed at any moment therefore loses at most the hours in flight.
"""

from __future__ import annotations

import os
import shutil
import time as _time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from stormcast_plugin.datagen.sources import (
    GRID_TOLERANCE_M,
    PrepareError,
    SourceFailed,
    conditioning_box,
    crop_to_grid,
    crop_to_latlon,
    describe_source,
    fetch_hour,
)
from stormcast_plugin.datagen.statistics import compute_statistics
from stormcast_plugin.io.dataset_store import DatasetStore, StoreError
from stormcast_plugin.utils.grid import ModelGrid
from stormcast_plugin.utils.time import as_time
from stormcast_plugin.utils.variables import CONDITIONING_VARIABLES, INVARIANTS, STATE_VARIABLES

__all__ = ["COND_MARGIN_DEG", "prepare_dataset"]

COND_MARGIN_DEG = 2.0
"""Margin (degrees) added around the domain's latitude/longitude box for the conditioning."""

_FIRST_FETCH_TRIES = 24
_RETRY_WAIT_S = 1.0


# --------------------------------------------------------------------------
# One hour
# --------------------------------------------------------------------------


def _fetch_hour(t: np.datetime64, cfg: Mapping[str, Any]) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    """State ``[C, H, W]`` and conditioning ``[Ce, nlat, nlon]`` at ``t``, or a missing-hour reason."""
    grid = cfg["grid"]
    out = []
    for what, source, variables in (("state", cfg["state_source"], cfg["state_variables"]),
                                    ("conditioning", cfg["conditioning_source"], cfg["conditioning_variables"])):
        src = type(source).__name__
        last: str | None = None
        for attempt in range(cfg["retries"] + 1):
            try:
                da = fetch_hour(source, t, variables, what)
                last = None
                break
            except SourceFailed as err:
                last = str(err)
                if attempt < cfg["retries"]:
                    _time.sleep(_RETRY_WAIT_S)
        if last is not None:
            return None, None, last
        if what == "state":
            values = crop_to_grid(da, grid, what, src)
        else:
            values = crop_to_latlon(da, cfg["cond_lat"], cfg["cond_lon"], src)
        finite = np.isfinite(values.reshape(values.shape[0], -1)).all(axis=1)
        if not finite.all():
            bad = [v for v, ok in zip(variables, finite) if not ok]
            return None, None, f"{what} source {src} returned NaN or infinite values for {bad[:10]}"
        out.append(values)
    return out[0], out[1], None


def _hour_task(store: DatasetStore | str, index: int, t: np.datetime64,
               cfg: Mapping[str, Any]) -> tuple[int, str | None]:
    """Fetch and write one hour; returns ``(index, reason)`` with ``reason`` None when written.

    A missing hour is not flagged here: the driver records its reason first,
    then flags it (one writer for the attributes).
    """
    state, cond, reason = _fetch_hour(t, cfg)
    if reason is None:
        if not isinstance(store, DatasetStore):
            store = DatasetStore.open(store, mode="r+", validate=False)
        store.write_hour(int(index), state, cond)
    return int(index), reason


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------


def _as_hour(value: Any, name: str) -> np.datetime64:
    return as_time(value, name, whole_hours=True).astype("datetime64[h]")


def _first_success(fn: Callable[[np.datetime64], Any], times: np.ndarray, what: str) -> Any:
    last = None
    for t in times[:_FIRST_FETCH_TRIES]:
        try:
            return fn(t)
        except SourceFailed as err:
            last = err
    raise PrepareError(f"{what} failed for the first {min(len(times), _FIRST_FETCH_TRIES)} hours; last error: "
                       f"{last}. Check the source and the period")


def _check_existing(store: DatasetStore, hours: np.ndarray, grid: ModelGrid, state_variables: Sequence[str],
                    conditioning_variables: Sequence[str], invariant_names: Sequence[str],
                    cond_lat: np.ndarray | None, cond_lon: np.ndarray | None) -> None:
    fix = "pass overwrite=True (--overwrite) to rebuild it, or choose another path"
    have = store.times.astype("datetime64[h]")
    if have.shape != hours.shape or (have != hours).any():
        raise StoreError(f"dataset {store.path} exists with {len(have)} hours {have[0]}..{have[-1]}; this run asks "
                         f"for {len(hours)} hours {hours[0]}..{hours[-1]}; {fix}")
    for what, mine, want in (("state variables", store.state_variables, state_variables),
                             ("conditioning variables", store.conditioning_variables, conditioning_variables),
                             ("invariants", store.invariant_names, invariant_names)):
        if tuple(mine) != tuple(want):
            raise StoreError(f"dataset {store.path} exists with {what} {list(mine)[:8]}...; this run asks for "
                             f"{list(want)[:8]}...; {fix}")
    sg = store.grid
    if sg.shape != grid.shape or not (np.allclose(sg.y, grid.y, atol=GRID_TOLERANCE_M)
                                      and np.allclose(sg.x, grid.x, atol=GRID_TOLERANCE_M)):
        raise StoreError(f"dataset {store.path} exists on grid {sg.shape}; this run asks for {grid.name!r} "
                         f"{grid.shape}; {fix}")
    for name, mine, want in (("cond_lat", store.cond_lat, cond_lat), ("cond_lon", store.cond_lon, cond_lon)):
        if want is not None and (np.shape(mine) != np.shape(want) or not np.allclose(mine, want)):
            raise StoreError(f"dataset {store.path} exists with other conditioning {name}; {fix}")


def prepare_dataset(
    path: str | os.PathLike,
    start: Any,
    end: Any,
    *,
    state_source: Any,
    conditioning_source: Any,
    grid: ModelGrid | None = None,
    state_variables: Sequence[str] = STATE_VARIABLES,
    conditioning_variables: Sequence[str] = CONDITIONING_VARIABLES,
    invariant_names: Sequence[str] = INVARIANTS,
    invariants: np.ndarray | None = None,
    invariant_source: Any = None,
    cond_lat: np.ndarray | None = None,
    cond_lon: np.ndarray | None = None,
    cond_margin: float = COND_MARGIN_DEG,
    stats_period: tuple[Any, Any] | None = None,
    client: Any = None,
    workers: int | None = None,
    retries: int = 0,
    retry_missing: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> DatasetStore:
    """Build (or finish) a StormCast dataset from a state and a conditioning source.

    Parameters
    ----------
    path : path-like
        The store folder (``*.zarr``).
    start, end : datetime-like
        Hourly times ``[start, end)`` (``end`` excluded), on whole hours.
    state_source : DataSource
        Returns ``[time, (lead_time,) variable, hrrr_y, hrrr_x]`` (or ``y``/``x``)
        on the HRRR projection; it is cropped to ``grid`` by coordinate values
        (or, without coordinates, must already have the grid's size).
    conditioning_source : DataSource
        Returns ``[time, variable, lat, lon]`` on a regular grid.
    grid : ModelGrid, optional
        The model grid; the StormCast v1 domain by default.
    state_variables, conditioning_variables : sequence of str
        Channels, in store order (source lexicon names).
    invariant_names : sequence of str
        Names of the invariant fields.
    invariants : np.ndarray, optional
        ``[Ci, H, W]`` invariant fields; otherwise fetched from
        ``invariant_source`` (or, if None, from ``state_source``) under
        ``invariant_names`` at the first hour it provides.
    invariant_source : DataSource, optional
        Source of the invariants (cropped like the state).
    cond_lat, cond_lon : np.ndarray, optional
        Conditioning grid kept in the store (matched by value in every fetch);
        by default the source's own grid inside the domain's latitude/longitude
        box plus ``cond_margin`` degrees, read from a first fetch.
    cond_margin : float
        Margin in degrees around the domain box.
    stats_period : (start, end), optional
        Half-open training period of the statistics; all hours by default.
    client : dask.distributed.Client, optional
        Spread the hours over this cluster.
    workers : int, optional
        Start a local Dask cluster of this many single-threaded processes
        (ignored when ``client`` is given).
    retries : int
        Extra attempts of a failing source call before the hour is declared missing.
    retry_missing : bool
        Also redo hours recorded as missing by an earlier run.
    overwrite : bool
        Replace an existing store instead of resuming it.
    progress : bool
        Show progress bars.

    Returns
    -------
    DatasetStore
        The finished store, open for reading and writing.

    Raises
    ------
    StoreError
        If an existing store has other times, variables or grid.
    PrepareError
        If a source returns the wrong variables, dims or grid, the first hours
        all fail, or no hour is usable for the statistics.
    ValueError
        If the times or options are invalid.
    """
    from tqdm.auto import tqdm

    path = Path(path)
    t0, t1 = _as_hour(start, "start"), _as_hour(end, "end")
    if t1 <= t0:
        raise ValueError(f"end {t1} must be after start {t0} (end is excluded)")
    hours = np.arange(t0, t1, np.timedelta64(1, "h"))
    times = hours.astype("datetime64[ns]")
    grid = ModelGrid.hrrr() if grid is None else grid
    if not isinstance(grid, ModelGrid):
        raise ValueError(f"grid must be a ModelGrid, got {type(grid).__name__}")
    for name, src in (("state_source", state_source), ("conditioning_source", conditioning_source)):
        if not callable(src):
            raise ValueError(f"{name} must be a callable earth2studio DataSource, got {type(src).__name__}")
    if workers is not None and (int(workers) != workers or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if isinstance(retries, bool) or not isinstance(retries, (int, np.integer)) or retries < 0:
        raise ValueError(f"retries must be a non-negative integer (extra attempts per hour), got {retries!r}")
    if (cond_lat is None) != (cond_lon is None):
        raise ValueError("pass both cond_lat and cond_lon, or neither")
    state_variables = tuple(str(v) for v in state_variables)
    conditioning_variables = tuple(str(v) for v in conditioning_variables)
    invariant_names = tuple(str(v) for v in invariant_names)
    if stats_period is not None:
        stats_period = tuple(_as_hour(p, "stats_period bound") for p in stats_period)
        if len(stats_period) != 2 or stats_period[1] <= stats_period[0]:
            raise ValueError(f"stats_period must be (start, end) with end after start, got {stats_period}")

    cfg: dict[str, Any] = dict(state_source=state_source, conditioning_source=conditioning_source, grid=grid,
                               state_variables=state_variables, conditioning_variables=conditioning_variables,
                               retries=int(retries))

    def fetch_invariants() -> np.ndarray:
        if invariants is not None:
            return np.asarray(invariants, np.float32)
        src = invariant_source if invariant_source is not None else state_source

        def one(t: np.datetime64) -> np.ndarray:
            return crop_to_grid(fetch_hour(src, t, invariant_names, "invariant"), grid, "invariant",
                                 type(src).__name__)

        inv = _first_success(one, times, "the invariant source")
        if not np.isfinite(inv).all():
            raise PrepareError(f"invariant source {type(src).__name__} returned NaN for {list(invariant_names)}")
        return inv

    if path.exists() and overwrite:
        shutil.rmtree(path)
    if path.exists():
        store = DatasetStore.open(path, mode="r+", validate=False)
        _check_existing(store, hours, grid, state_variables, conditioning_variables, invariant_names,
                        cond_lat, cond_lon)
        if not np.isfinite(store.read_invariants()).all():
            store.write_invariants(fetch_invariants())
    else:
        if cond_lat is None:
            src = type(conditioning_source).__name__

            def box(t: np.datetime64) -> tuple[np.ndarray, np.ndarray]:
                da = fetch_hour(conditioning_source, t, conditioning_variables, "conditioning")
                return conditioning_box(da, grid, cond_margin, src)

            cond_lat, cond_lon = _first_success(box, times, "the conditioning source")
        inv = fetch_invariants()
        attrs = {
            "source": {"state": describe_source(state_source), "conditioning": describe_source(conditioning_source),
                       "invariants": "array" if invariants is not None else
                       describe_source(invariant_source if invariant_source is not None else state_source)},
            "domain": {"name": grid.name, "shape": list(grid.shape),
                       "native_window": None if grid.native_window is None else list(grid.native_window)},
            "period": [str(t0), str(t1)],
            "period_end_excluded": True,
            "conditioning_margin_deg": float(cond_margin),
            "missing_reasons": {},
            "description": "StormCast dataset built by stormcast data prepare (state, conditioning, invariants)",
        }
        tmp = path.with_name(path.name + ".incomplete")
        if tmp.exists():
            shutil.rmtree(tmp)  # a creation killed earlier
        tmp_store = DatasetStore.create(tmp, times=times, state_variables=state_variables,
                                        conditioning_variables=conditioning_variables,
                                        invariant_names=invariant_names, grid=grid, cond_lat=cond_lat,
                                        cond_lon=cond_lon, attrs=attrs)
        tmp_store.write_invariants(inv)
        tmp_store.consolidate()
        os.replace(tmp, path)  # atomic: the store appears complete or not at all
        store = DatasetStore.open(path, mode="r+", validate=False)

    cfg["cond_lat"], cfg["cond_lon"] = store.cond_lat, store.cond_lon
    todo_mask = ~store.written
    if retry_missing:
        todo_mask |= store.missing
    todo = np.flatnonzero(todo_mask)
    reasons: dict[str, str] = dict(store.attrs.get("missing_reasons") or {})

    def record(index: int, reason: str | None) -> None:
        key = str(store.times[index].astype("datetime64[h]"))
        if reason is None:
            if key in reasons:  # a stale reason (killed between recording and flagging, or a retried hour)
                reasons.pop(key)
                store.set_attrs(missing_reasons=reasons)
            return
        reasons[key] = reason
        store.set_attrs(missing_reasons=reasons)  # reason first, then the flag
        store.mark_missing(index)

    bar = tqdm(total=len(todo), desc=f"prepare {path.name}", unit="h", disable=not progress)
    try:
        if todo.size and (client is not None or workers is not None):
            _run_distributed(store, todo, cfg, client, workers, record, bar)
        else:
            for i in todo:
                _, reason = _hour_task(store, int(i), store.times[i], cfg)
                record(int(i), reason)
                bar.update(1)
                bar.set_postfix(missing=len(reasons), refresh=False)
    finally:
        bar.close()

    s_stats, c_stats = compute_statistics(store, stats_period, progress=progress)
    period = stats_period if stats_period is not None else (t0, t1)
    store.write_statistics(s_stats.mean, s_stats.std, c_stats.mean, c_stats.std, period=period)
    store.set_attrs(statistics_hours=int(s_stats.count // max(1, grid.size)), missing_reasons=reasons)
    store.consolidate()
    return DatasetStore.open(path, mode="r+")


def _run_distributed(store: DatasetStore, todo: np.ndarray, cfg: Mapping[str, Any], client: Any,
                     workers: int | None, record: Callable[[int, str | None], None], bar: Any) -> None:
    """Run the hours as Dask tasks; the driver records results as they complete."""
    from distributed import Client, LocalCluster, as_completed

    own = client is None
    cluster = None
    if own:
        cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    futures: list[Any] = []
    try:
        [cfg_future] = client.scatter([dict(cfg)], broadcast=True, hash=False)
        token = uuid.uuid4().hex[:8]
        path = str(store.path)
        futures = [client.submit(_hour_task, path, int(i), store.times[i], cfg_future, pure=False,
                                 key=f"stormcast-prepare-{token}-{int(i)}") for i in todo]
        for fut in as_completed(futures):
            index, reason = fut.result()  # re-raises a task's PrepareError
            record(index, reason)
            bar.update(1)
    finally:
        for f in futures:
            if not f.done():
                f.cancel()
        if own:
            client.close()
            cluster.close()

