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
pass (:class:`RunningStats`) over the written hours of the training period.

Resumability: the store is created atomically (built under a temporary name,
then renamed); an hour gets its ``written`` flag only after its data (see
:mod:`~stormcast_plugin.io.dataset_store`), and a re-run skips flagged hours. A run
killed at any moment therefore loses at most the hours in flight.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time as _time
import uuid
from collections import OrderedDict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from stormcast_plugin.data.crop import grid_window
from stormcast_plugin.utils.coords import LAT_NAMES, LON_NAMES, SPATIAL_DIM_PAIRS, match_values
from stormcast_plugin.utils.grid import ModelGrid
from stormcast_plugin.utils.time import as_time, format_time
from stormcast_plugin.utils.variables import CONDITIONING_VARIABLES, INVARIANTS, STATE_VARIABLES
from stormcast_plugin.io.dataset_store import DatasetStore, StoreError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import xarray as xr

__all__ = [
    "COND_MARGIN_DEG",
    "PrepareError",
    "RunningStats",
    "RenameVariables",
    "prepare_dataset",
    "compute_statistics",
    "add_prepare_arguments",
    "prepare_from_args",
]

COND_MARGIN_DEG = 2.0
"""Margin (degrees) added around the domain's latitude/longitude box for the conditioning."""

_GRID_TOL_M = 1.0
_LATLON_TOL_DEG = 1e-4
_FIRST_FETCH_TRIES = 24
_REASON_CHARS = 500


class PrepareError(ValueError):
    """A source or configuration problem that stops dataset preparation."""


# --------------------------------------------------------------------------
# Streaming statistics
# --------------------------------------------------------------------------


class RunningStats:
    """Per-channel streaming mean and variance in float64.

    Each batch is reduced with a two-pass (corrected) mean and sum of squared
    deviations; batches and other accumulators are combined with the parallel
    formula of Chan, Golub and LeVeque, so large offsets with a small spread
    (surface pressure ~1e5 Pa varying by a few Pa) lose no precision.

    Parameters
    ----------
    channels : int, optional
        Number of channels; taken from the first batch when omitted.
    axis : int
        Channel axis of the batches given to :meth:`update` (1 for ``[n, C, ...]``).
    """

    def __init__(self, channels: int | None = None, axis: int = 1) -> None:
        if channels is not None and (int(channels) != channels or channels < 1):
            raise ValueError(f"channels must be a positive integer, got {channels!r}")
        self.axis = int(axis)
        self.channels = None if channels is None else int(channels)
        self._n = 0
        self._mean = None if channels is None else np.zeros(int(channels), np.float64)
        self._m2 = None if channels is None else np.zeros(int(channels), np.float64)

    def __repr__(self) -> str:
        return f"RunningStats(channels={self.channels}, count={self._n})"

    @property
    def count(self) -> int:
        """Number of values seen per channel."""
        return self._n

    @property
    def mean(self) -> np.ndarray:
        """Per-channel mean ``[C]`` (float64)."""
        self._need_data()
        return self._mean.copy()

    @property
    def variance(self) -> np.ndarray:
        """Per-channel population variance ``[C]`` (float64)."""
        self._need_data()
        return self._m2 / self._n

    @property
    def std(self) -> np.ndarray:
        """Per-channel population standard deviation ``[C]`` (float64)."""
        return np.sqrt(self.variance)

    def _need_data(self) -> None:
        if self._n == 0:
            raise ValueError("RunningStats has seen no data; call update() with at least one value first")

    def _check_channels(self, c: int, what: str) -> None:
        if self.channels is None:
            self.channels = c
            self._mean = np.zeros(c, np.float64)
            self._m2 = np.zeros(c, np.float64)
        elif c != self.channels:
            raise ValueError(f"{what} has {c} channels; this RunningStats has {self.channels}")

    def _combine(self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        n_a = self._n
        if n_b == 0:
            return
        if n_a == 0:
            self._n, self._mean, self._m2 = n_b, mean_b.copy(), m2_b.copy()
            return
        n = n_a + n_b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (n_b / n)
        self._m2 = self._m2 + m2_b + delta * delta * (n_a * (n_b / n))
        self._n = n

    def update(self, batch: Any) -> "RunningStats":
        """Add a batch, reducing over every axis but the channel axis.

        Parameters
        ----------
        batch : array-like
            ``[n, C, ...]`` (channel axis ``axis``), any real dtype.

        Returns
        -------
        RunningStats
            ``self``.

        Raises
        ------
        ValueError
            If the batch has fewer than 2 dims, a different channel count, or
            NaN / infinite values (naming the channels).
        """
        x = np.asarray(batch)
        if x.ndim < 2:
            raise ValueError(f"batch has shape {x.shape}; expected [n, C, ...] with a channel axis {self.axis}")
        if x.dtype.kind not in "fiub":
            raise ValueError(f"batch has dtype {x.dtype}; expected a real numeric array")
        x = np.moveaxis(x, self.axis, 0)
        c = int(x.shape[0])
        self._check_channels(c, "batch")
        n = int(x[0].size) if c else 0
        if n == 0:
            return self
        mean = np.empty(c, np.float64)
        m2 = np.empty(c, np.float64)
        for k in range(c):  # one channel at a time keeps the float64 copy small
            xc = np.asarray(x[k], dtype=np.float64).ravel()
            mu = xc.mean()
            d = xc - mu
            corr = d.mean()  # second pass: removes the rounding error of the first mean
            d -= corr
            mean[k] = mu + corr
            m2[k] = float(np.dot(d, d))
        bad = ~(np.isfinite(mean) & np.isfinite(m2))
        if bad.any():
            raise ValueError(f"batch has NaN or infinite values in channels {np.flatnonzero(bad).tolist()[:10]}")
        self._combine(n, mean, m2)
        return self

    def merge(self, other: "RunningStats") -> "RunningStats":
        """Fold another accumulator (over disjoint data) into this one.

        Returns
        -------
        RunningStats
            ``self``.

        Raises
        ------
        ValueError
            If ``other`` is not a RunningStats or has a different channel count.
        """
        if not isinstance(other, RunningStats):
            raise ValueError(f"can only merge a RunningStats, got {type(other).__name__}")
        if other._n == 0:
            return self
        self._check_channels(int(other.channels), "the other RunningStats")
        self._combine(other._n, other._mean, other._m2)
        return self


# --------------------------------------------------------------------------
# Source helpers
# --------------------------------------------------------------------------


def _describe(source: Any) -> str:
    """A short description of a source for messages and attributes."""
    if source is None:
        return "none"
    cls = type(source)
    name = f"{cls.__module__}.{cls.__qualname__}"
    inner = getattr(source, "source", None)
    if inner is not None and inner is not source and callable(inner):
        return f"{name}({_describe(inner)})"
    return name


def _to_datetime(t: np.datetime64) -> datetime:
    return np.datetime64(t, "us").astype(datetime)


class _SourceFailed(Exception):
    """The source could not provide an hour (a missing hour, not a configuration error)."""


def _short(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}"
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


def _fetch(source: Any, t: np.datetime64, variables: Sequence[str], what: str) -> "xr.DataArray":
    """``[variable, ...spatial]`` of ``source`` at ``t``; missing data raise :class:`_SourceFailed`."""
    import xarray as xr

    name = type(source).__name__
    try:
        da = source([_to_datetime(t)], list(variables))
    except Exception as err:  # any source failure is a missing hour; the reason is recorded
        raise _SourceFailed(f"{what} source {name} failed: {_short(err)}") from err
    if not isinstance(da, xr.DataArray):
        raise PrepareError(f"{what} source {name} returned {type(da).__name__}; expected an xarray.DataArray "
                           "with dims [time, variable, ...]")
    absent = [d for d in ("time", "variable") if d not in da.dims]
    if absent:
        raise PrepareError(f"{what} source {name} returned dims {list(da.dims)} without {absent}")
    times = np.asarray(da["time"].values).astype("datetime64[ns]")
    hit = np.flatnonzero(times == np.datetime64(t, "ns"))
    if hit.size == 0:
        raise _SourceFailed(f"{what} source {name} returned no data for {format_time(t)}")
    names = [str(v) for v in np.asarray(da["variable"].values)]
    lacking = [v for v in variables if v not in names]
    if lacking:
        raise PrepareError(f"{what} source {name} returned no variables {lacking[:10]}; it returned "
                           f"{names[:10]}. Use variable names of the source's lexicon")
    da = da.isel(time=int(hit[0]), variable=[names.index(v) for v in variables])
    spatial = {d for pair in SPATIAL_DIM_PAIRS for d in pair}
    extra = [d for d in da.dims if d != "variable" and d not in spatial and da.sizes[d] == 1]
    return da.isel({d: 0 for d in extra})  # lead_time and other size-1 dims


def _check_dims(da: "xr.DataArray", spatial: Sequence[str], what: str, src: str) -> None:
    extra = [(d, da.sizes[d]) for d in da.dims if d != "variable" and d not in spatial]
    if extra:
        raise PrepareError(f"{what} source {src} returned extra dims {extra}; expected only time, variable and "
                           f"{list(spatial)} (size-1 extra dims such as lead_time are dropped)")


def _crop_to_grid(da: "xr.DataArray", grid: ModelGrid, what: str, src: str) -> np.ndarray:
    """``[C, H, W]`` float32: ``da [variable, sy, sx]`` cut to ``grid`` by coordinate values."""
    try:
        window = grid_window(da, grid, _GRID_TOL_M, f"{what} source {src}")
    except ValueError as err:
        raise PrepareError(str(err)) from None
    _check_dims(da, tuple(window), what, src)
    values = da.isel(window).transpose("variable", *window).values
    return np.ascontiguousarray(values, dtype=np.float32)


def _latlon_dims(da: "xr.DataArray", src: str) -> tuple[str, str]:
    lat = next((d for d in LAT_NAMES if d in da.dims), None)
    lon = next((d for d in LON_NAMES if d in da.dims), None)
    if lat is None or lon is None:
        raise PrepareError(f"conditioning source {src} returned spatial dims "
                           f"{[d for d in da.dims if d != 'variable']}; expected 1-D lat/lon (or "
                           "latitude/longitude) coordinates of a regular grid")
    for d in (lat, lon):
        if d not in da.coords or np.asarray(da[d].values).ndim != 1:
            raise PrepareError(f"conditioning source {src} has no 1-D {d} coordinate")
    _check_dims(da, (lat, lon), "conditioning", src)
    return lat, lon


def _crop_latlon(da: "xr.DataArray", lat: np.ndarray, lon: np.ndarray, src: str) -> np.ndarray:
    """``[C, nlat, nlon]`` float32 of ``da`` at the given latitudes/longitudes (matched by value)."""
    dlat, dlon = _latlon_dims(da, src)
    ilat = match_values(np.asarray(da[dlat].values), lat, _LATLON_TOL_DEG)
    ilon = match_values(np.asarray(da[dlon].values), lon, _LATLON_TOL_DEG, period=360.0)
    if ilat is None or ilon is None:
        axis = "latitudes" if ilat is None else "longitudes"
        raise PrepareError(f"conditioning source {src} does not have the dataset's conditioning {axis}; "
                           "the source's grid changed, or the store was built with another source")
    values = da.transpose("variable", dlat, dlon).values
    return np.ascontiguousarray(values[:, ilat][:, :, ilon], dtype=np.float32)


def _lon_interval(lon: np.ndarray) -> tuple[float, float]:
    """Centre and half-width (degrees) of the shortest interval holding ``lon``."""
    a = np.mod(np.asarray(lon, np.float64), 360.0)
    b = np.mod(a + 180.0, 360.0) - 180.0
    (lo, hi) = min(((a.min(), a.max()), (b.min(), b.max())), key=lambda r: r[1] - r[0])
    return 0.5 * (lo + hi), 0.5 * (hi - lo)


def _conditioning_box(da: "xr.DataArray", grid: ModelGrid, margin: float, src: str) -> tuple[np.ndarray, np.ndarray]:
    """The source's own latitudes/longitudes inside the domain's box plus ``margin`` degrees."""
    dlat, dlon = _latlon_dims(da, src)
    lat = np.asarray(da[dlat].values, np.float64)
    lon = np.asarray(da[dlon].values, np.float64)
    glat = np.asarray(grid.lat)
    lo, hi = glat.min() - margin, glat.max() + margin
    sel_lat = np.flatnonzero((lat >= lo) & (lat <= hi))
    centre, half = _lon_interval(grid.lon)
    dist = np.abs(np.mod(lon - centre + 180.0, 360.0) - 180.0)
    sel_lon = np.flatnonzero(dist <= half + margin)
    if sel_lat.size < 2 or sel_lon.size < 2:
        raise PrepareError(f"conditioning source {src} has {sel_lat.size} latitudes x {sel_lon.size} longitudes "
                           f"in the domain's box plus {margin} degrees; it does not cover the domain {grid.name!r}")
    blat, blon = lat[sel_lat], lon[sel_lon]
    if not (glat.min() >= blat.min() and glat.max() <= blat.max()):
        raise PrepareError(f"conditioning source {src} latitudes {lat.min():.2f}..{lat.max():.2f} do not cover the "
                           f"domain's {glat.min():.2f}..{glat.max():.2f}")
    unwrapped = np.mod(blon - centre + 180.0, 360.0) - 180.0
    for name, arr in (("latitudes", blat), ("longitudes", unwrapped)):
        d = np.diff(arr)
        if not ((d > 0).all() or (d < 0).all()):
            raise PrepareError(f"conditioning source {src}: the {name} around the domain are not monotonic in the "
                               "source's order (the box crosses its seam); pass cond_lat/cond_lon explicitly")
    gdist = np.abs(np.mod(np.asarray(grid.lon) - centre + 180.0, 360.0) - 180.0)
    if gdist.max() > np.abs(unwrapped).max() + 1e-9 or unwrapped.min() > -half or unwrapped.max() < half:
        raise PrepareError(f"conditioning source {src} longitudes do not cover the domain {grid.name!r}")
    return blat, blon


# --------------------------------------------------------------------------
# Adaptors
# --------------------------------------------------------------------------


class RenameVariables:
    """Serve variables under other names, optionally scaled, from a DataSource.

    Used to read the invariants from HRRR: ``orography`` (m) is the HRRR
    lexicon's surface geopotential ``z`` divided by g.

    Parameters
    ----------
    source : DataSource
        The wrapped source.
    mapping : Mapping[str, str | tuple[str, float]]
        ``{name: source_name}`` or ``{name: (source_name, scale)}``; names not
        listed are passed through.
    """

    def __init__(self, source: Any, mapping: Mapping[str, Any]) -> None:
        if not callable(source):
            raise ValueError(f"source must be a callable DataSource, got {type(source).__name__}")
        self.source = source
        self.mapping: dict[str, tuple[str, float]] = {}
        for name, spec in mapping.items():
            src_name, scale = (spec, 1.0) if isinstance(spec, str) else spec
            self.mapping[str(name)] = (str(src_name), float(scale))

    def __call__(self, time: Any, variable: Any) -> "xr.DataArray":
        names = [variable] if isinstance(variable, str) else [str(v) for v in variable]
        specs = [self.mapping.get(n, (n, 1.0)) for n in names]
        wanted = list(OrderedDict.fromkeys(s for s, _ in specs))
        da = self.source(time, wanted)
        got = [str(v) for v in np.asarray(da["variable"].values)]
        parts = [da.isel(variable=got.index(s)) * scale if scale != 1.0 else da.isel(variable=got.index(s))
                 for s, scale in specs]
        import xarray as xr

        out = xr.concat(parts, dim="variable")
        return out.assign_coords(variable=np.array(names)).transpose("time", "variable", ...)


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
        for attempt in range(int(cfg.get("retries", 0)) + 1):
            try:
                da = _fetch(source, t, variables, what)
                last = None
                break
            except _SourceFailed as err:
                last = str(err)
                if attempt < int(cfg.get("retries", 0)):
                    _time.sleep(float(cfg.get("retry_wait", 1.0)))
        if last is not None:
            return None, None, last
        if what == "state":
            values = _crop_to_grid(da, grid, what, src)
        else:
            values = _crop_latlon(da, cfg["cond_lat"], cfg["cond_lon"], src)
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
        except _SourceFailed as err:
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
    if sg.shape != grid.shape or not (np.allclose(sg.y, grid.y, atol=_GRID_TOL_M)
                                      and np.allclose(sg.x, grid.x, atol=_GRID_TOL_M)):
        raise StoreError(f"dataset {store.path} exists on grid {sg.shape}; this run asks for {grid.name!r} "
                         f"{grid.shape}; {fix}")
    for name, mine, want in (("cond_lat", store.cond_lat, cond_lat), ("cond_lon", store.cond_lon, cond_lon)):
        if want is not None and (np.shape(mine) != np.shape(want) or not np.allclose(mine, want)):
            raise StoreError(f"dataset {store.path} exists with other conditioning {name}; {fix}")


def compute_statistics(store: DatasetStore, period: tuple[Any, Any] | None = None, *,
                       progress: bool = False) -> tuple[RunningStats, RunningStats]:
    """Streaming statistics of the written, non-missing hours in ``period``.

    Parameters
    ----------
    store : DatasetStore
        The dataset.
    period : (start, end), optional
        Half-open time range; all hours by default.
    progress : bool
        Show a progress bar.

    Returns
    -------
    tuple[RunningStats, RunningStats]
        State and conditioning accumulators.

    Raises
    ------
    PrepareError
        If no usable hour lies in the period.
    """
    from tqdm.auto import tqdm

    use = store.written & ~store.missing
    if period is not None:
        s0, s1 = (_as_hour(p, "statistics period bound").astype("datetime64[ns]") for p in period)
        use &= (store.times >= s0) & (store.times < s1)
    idx = np.flatnonzero(use)
    if idx.size == 0:
        where = "" if period is None else f" in the statistics period {period[0]} .. {period[1]} (end excluded)"
        raise PrepareError(f"dataset {store.path} has no written, non-missing hours{where}; statistics need at "
                           "least one (choose another period, or check the missing_reasons attribute)")
    s_stats = RunningStats(len(store.state_variables))
    c_stats = RunningStats(len(store.conditioning_variables))
    for i in tqdm(idx, desc="statistics", unit="h", disable=not progress, leave=False):
        s_stats.update(store.read_state(int(i)))
        c_stats.update(store.read_conditioning(int(i)))
    return s_stats, c_stats


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
            return _crop_to_grid(_fetch(src, t, invariant_names, "invariant"), grid, "invariant",
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
                da = _fetch(conditioning_source, t, conditioning_variables, "conditioning")
                return _conditioning_box(da, grid, cond_margin, src)

            cond_lat, cond_lon = _first_success(box, times, "the conditioning source")
        inv = fetch_invariants()
        attrs = {
            "source": {"state": _describe(state_source), "conditioning": _describe(conditioning_source),
                       "invariants": "array" if invariants is not None else
                       _describe(invariant_source if invariant_source is not None else state_source)},
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


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def add_prepare_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``stormcast data prepare`` options to ``parser``."""
    p = parser
    p.add_argument("--out", required=True, help="dataset store to create or resume (*.zarr)")
    p.add_argument("--start", required=True, help="first hour, ISO 8601 (e.g. 2022-01-01T00)")
    p.add_argument("--end", required=True, help="end hour, excluded (e.g. 2023-01-01T00)")
    p.add_argument("--domain", default="v1", help="'v1' (StormCast v1 512x640 crop, default) or "
                   "'R0:R1,C0:C1' native HRRR rows/columns")
    p.add_argument("--variables", default="full", help="variable preset: full (default), small or tiny")
    p.add_argument("--state-source", default="hrrr",
                   help="'hrrr' (earth2studio HRRR, default), 'random', or MODULE:ATTR (a class is instantiated)")
    p.add_argument("--conditioning-source", default="arco",
                   help="'arco' (ERA5, default), 'wb2', 'cds', 'random', or MODULE:ATTR")
    p.add_argument("--invariants", default=None, help="a .npy file [Ci, H, W] of lsm, orography "
                   "(default: read from the state source)")
    p.add_argument("--stats-start", default=None, help="training period start for statistics (default: --start)")
    p.add_argument("--stats-end", default=None, help="training period end, excluded (default: --end)")
    p.add_argument("--workers", type=int, default=None, help="local Dask worker processes (default: sequential)")
    p.add_argument("--scheduler", default=None, help="address of a running Dask scheduler to use")
    p.add_argument("--retries", type=int, default=0, help="extra attempts per failing hour (default 0)")
    p.add_argument("--retry-missing", action="store_true", help="redo hours an earlier run recorded as missing")
    p.add_argument("--overwrite", action="store_true", help="rebuild an existing store from scratch")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def _parse_domain(text: str) -> ModelGrid:
    if text in ("v1", "stormcast_v1"):
        return ModelGrid.hrrr()
    try:
        rows, cols = text.split(",")
        r0, r1 = (int(v) for v in rows.split(":"))
        c0, c1 = (int(v) for v in cols.split(":"))
    except ValueError:
        raise ValueError(f"--domain {text!r} is not 'v1' or 'R0:R1,C0:C1' (native HRRR rows and columns, "
                         "e.g. 273:785,579:1219)") from None
    return ModelGrid.hrrr((r0, r1), (c0, c1))


def _load_object(spec: str) -> Any:
    import importlib

    module, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot load source {spec!r}: {err}") from None
    return obj() if isinstance(obj, type) else obj


def _sources(args: argparse.Namespace, grid: ModelGrid) -> tuple[Any, Any, Any]:
    """State, conditioning and invariant sources named on the command line."""
    state_name, cond_name = args.state_source, args.conditioning_source
    if state_name == "hrrr":
        from earth2studio.data import HRRR

        state = HRRR(verbose=False)
        inv = RenameVariables(state, {"lsm": "lsm", "orography": ("z", 1.0 / 9.81)})
    elif state_name == "random":
        from earth2studio.data import Random

        state = Random(OrderedDict(hrrr_y=np.asarray(grid.y), hrrr_x=np.asarray(grid.x)))
        inv = None
    elif ":" in state_name:
        state, inv = _load_object(state_name), None
    else:
        raise ValueError(f"unknown --state-source {state_name!r}; choose hrrr, random or MODULE:ATTR")
    if cond_name in ("arco", "wb2", "cds"):
        import earth2studio.data as e2d

        cls = {"arco": getattr(e2d, "ARCO_ERA5", None) or e2d.ARCO, "wb2": e2d.WB2ERA5, "cds": e2d.CDS}[cond_name]
        cond = cls(verbose=False)
    elif cond_name == "random":
        from earth2studio.data import Random

        lat, lon = np.asarray(grid.lat), np.asarray(grid.lon)
        box_lat = np.arange(np.ceil(lat.max() + 3), np.floor(lat.min() - 3) - 0.25, -0.25)
        box_lon = np.arange(np.floor(lon.min() - 3), np.ceil(lon.max() + 3) + 0.25, 0.25)
        cond = Random(OrderedDict(lat=box_lat, lon=box_lon))
    elif ":" in cond_name:
        cond = _load_object(cond_name)
    else:
        raise ValueError(f"unknown --conditioning-source {cond_name!r}; choose arco, wb2, cds, random or MODULE:ATTR")
    return state, cond, inv


def prepare_from_args(args: argparse.Namespace) -> int:
    """Run ``stormcast data prepare`` from parsed arguments (see :func:`add_prepare_arguments`).

    Returns
    -------
    int
        The exit status (0).
    """
    from stormcast_plugin.utils.variables import PRESETS

    if args.variables not in PRESETS:
        raise ValueError(f"--variables {args.variables!r} is unknown; choose one of {sorted(PRESETS)}")
    grid = _parse_domain(args.domain)
    state, cond, inv_source = _sources(args, grid)
    invariants = None
    if args.invariants:
        invariants = np.load(args.invariants)
    stats = None
    if args.stats_start or args.stats_end:
        stats = (args.stats_start or args.start, args.stats_end or args.end)
    client = None
    if args.scheduler:
        from distributed import Client

        client = Client(args.scheduler)
    try:
        store = prepare_dataset(
            args.out, args.start, args.end, state_source=state, conditioning_source=cond, grid=grid,
            state_variables=PRESETS[args.variables]["state"],
            conditioning_variables=PRESETS[args.variables]["conditioning"],
            invariants=invariants, invariant_source=inv_source, stats_period=stats, client=client,
            workers=args.workers, retries=args.retries, retry_missing=args.retry_missing,
            overwrite=args.overwrite, progress=not args.no_progress,
        )
    finally:
        if client is not None:
            client.close()
    print(f"wrote {store}", file=sys.stderr)
    if store.missing.any():
        print(f"{int(store.missing.sum())} hours missing (reasons in the store's missing_reasons attribute)",
              file=sys.stderr)
    return 0

