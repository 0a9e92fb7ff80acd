"""Reading one hour from earth2studio data sources for a dataset store.

A source is any object with the earth2studio DataSource call
``source(time_list, variable_list) -> xr.DataArray [time, variable, ...]``.
The state is cropped to the model grid and the conditioning to the store's
latitude/longitude box, both by coordinate value. A source that fails or
lacks the hour raises :class:`SourceFailed` (the hour is recorded missing);
one that returns the wrong variables, dims or grid raises
:class:`PrepareError` (preparation stops).
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from stormcast_plugin.data.crop import grid_window
from stormcast_plugin.utils.coords import LAT_NAMES, LON_NAMES, SPATIAL_DIM_PAIRS, match_values
from stormcast_plugin.utils.grid import ModelGrid
from stormcast_plugin.utils.time import format_time

if TYPE_CHECKING:  # pragma: no cover - typing only
    import xarray as xr

__all__ = [
    "GRID_TOLERANCE_M",
    "PrepareError",
    "RenameVariables",
    "SourceFailed",
    "conditioning_box",
    "crop_to_grid",
    "crop_to_latlon",
    "describe_source",
    "fetch_hour",
]

GRID_TOLERANCE_M = 1.0
"""Largest mismatch (m) between a source's projected coordinates and the model grid's."""
_LATLON_TOL_DEG = 1e-4
_REASON_CHARS = 500


class PrepareError(ValueError):
    """A source or configuration problem that stops dataset preparation."""


def describe_source(source: Any) -> str:
    """``module.Class`` of a source (and of the source it wraps), for messages and attributes."""
    if source is None:
        return "none"
    cls = type(source)
    name = f"{cls.__module__}.{cls.__qualname__}"
    inner = getattr(source, "source", None)
    if inner is not None and inner is not source and callable(inner):
        return f"{name}({describe_source(inner)})"
    return name


def _to_datetime(t: np.datetime64) -> datetime:
    return np.datetime64(t, "us").astype(datetime)


class SourceFailed(Exception):
    """The source could not provide an hour (a missing hour, not a configuration error)."""


def _short(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}"
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


def fetch_hour(source: Any, t: np.datetime64, variables: Sequence[str], what: str) -> "xr.DataArray":
    """The ``[variable, ...spatial]`` field of ``source`` at hour ``t``.

    Parameters
    ----------
    source : DataSource
        Called as ``source([t], variables)``.
    t : np.datetime64
        The hour.
    variables : sequence of str
        Names, in the order of the result.
    what : str
        The source's role ("state", "conditioning", "invariant") for messages.

    Returns
    -------
    xr.DataArray
        The hour's variables; size-1 dims other than the spatial ones dropped.

    Raises
    ------
    SourceFailed
        If the source raises or returns no data for ``t`` (a missing hour).
    PrepareError
        If it returns something else than a DataArray, or lacks dims or variables.
    """
    import xarray as xr

    name = type(source).__name__
    try:
        da = source([_to_datetime(t)], list(variables))
    except Exception as err:  # any source failure is a missing hour; the reason is recorded
        raise SourceFailed(f"{what} source {name} failed: {_short(err)}") from err
    if not isinstance(da, xr.DataArray):
        raise PrepareError(f"{what} source {name} returned {type(da).__name__}; expected an xarray.DataArray "
                           "with dims [time, variable, ...]")
    absent = [d for d in ("time", "variable") if d not in da.dims]
    if absent:
        raise PrepareError(f"{what} source {name} returned dims {list(da.dims)} without {absent}")
    times = np.asarray(da["time"].values).astype("datetime64[ns]")
    hit = np.flatnonzero(times == np.datetime64(t, "ns"))
    if hit.size == 0:
        raise SourceFailed(f"{what} source {name} returned no data for {format_time(t)}")
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


def crop_to_grid(da: "xr.DataArray", grid: ModelGrid, what: str, src: str) -> np.ndarray:
    """``[C, H, W]`` float32: ``da [variable, y, x]`` cut to ``grid`` by coordinate value.

    Raises
    ------
    PrepareError
        If ``da`` is not on the grid's projection, does not cover the grid or
        has other dims (``what`` and ``src`` name the source).
    """
    try:
        window = grid_window(da, grid, GRID_TOLERANCE_M, f"{what} source {src}")
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


def crop_to_latlon(da: "xr.DataArray", lat: np.ndarray, lon: np.ndarray, src: str) -> np.ndarray:
    """``[C, nlat, nlon]`` float32 of ``da [variable, lat, lon]`` at the store's latitudes/longitudes.

    Raises
    ------
    PrepareError
        If ``da`` is not on a regular lat/lon grid or lacks one of the
        latitudes/longitudes (``src`` names the source).
    """
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


def conditioning_box(da: "xr.DataArray", grid: ModelGrid, margin: float, src: str) -> tuple[np.ndarray, np.ndarray]:
    """The source's own latitudes/longitudes inside the domain's box plus ``margin`` degrees.

    Returns
    -------
    tuple[np.ndarray, np.ndarray]
        The latitudes and longitudes, in the source's order.

    Raises
    ------
    PrepareError
        If the source does not cover the domain, or the box crosses the
        source's longitude seam.
    """
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

