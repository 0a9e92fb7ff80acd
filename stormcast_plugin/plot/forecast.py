"""Maps of StormCast forecasts: single fields, per-lead-time frames, GIF loops
and multi-variable panels.

Forecast stores are those the earth2studio IO backends write (``ZarrBackend``,
``NetCDF4Backend``): one data variable per weather variable over dimensions
such as ``(ensemble, time, lead_time, hrrr_y, hrrr_x)``, with optional 2-D
``lat`` / ``lon`` fields over the spatial dimensions.

With cartopy installed and latitudes/longitudes at hand, maps are drawn on a
Lambert conformal projection with coastlines, borders and US states;
otherwise on plain axes in longitude/latitude (or grid indices when no
coordinates are known).

Importing this module is cheap: matplotlib, xarray and cartopy are imported
inside the functions that need them, and figures are rendered with the Agg
canvas without touching pyplot's global state.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from stormcast_plugin.io.forecast_store import lead_hours, open_forecast

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "REFC_LEVELS",
    "REFC_COLORS",
    "VARIABLE_STYLES",
    "style_for",
    "color_limits",
    "plot_field",
    "plot_forecast",
    "plot_panel",
]

# --------------------------------------------------------------------------
# Styles
# --------------------------------------------------------------------------

REFC_LEVELS: tuple[float, ...] = tuple(float(v) for v in range(5, 80, 5))
"""Reflectivity class boundaries, 5 to 75 dBZ in 5 dBZ steps."""

REFC_COLORS: tuple[str, ...] = (
    "#04e9e7",  # 5-10 dBZ
    "#019ff4",  # 10-15
    "#0300f4",  # 15-20
    "#02fd02",  # 20-25
    "#01c501",  # 25-30
    "#008e00",  # 30-35
    "#fdf802",  # 35-40
    "#e5bc00",  # 40-45
    "#fd9500",  # 45-50
    "#fd0000",  # 50-55
    "#d40000",  # 55-60
    "#bc0000",  # 60-65
    "#f800fd",  # 65-70
    "#9854c6",  # 70-75
)
"""The NWS radar palette, one colour per 5 dBZ class from 5 to 75 dBZ."""

REFC_OVER = "#3a3a3a"
"""Colour for 75 dBZ and above (the NWS palette's white would vanish on a
white map, so a dark grey stands in for it)."""

_TRANSPARENT = (0.0, 0.0, 0.0, 0.0)

VARIABLE_STYLES: dict[str, dict[str, Any]] = {
    # Exact names.
    "refc": dict(long_name="composite reflectivity", units="dBZ", cmap="nws_reflectivity",
                 vmin=REFC_LEVELS[0], vmax=REFC_LEVELS[-1], fixed=True),
    "t2m": dict(long_name="2 m temperature", units="K", cmap="inferno"),
    "d2m": dict(long_name="2 m dewpoint temperature", units="K", cmap="YlGnBu"),
    "msl": dict(long_name="mean sea-level pressure", units="hPa", source_units="Pa",
                scale=0.01, cmap="viridis"),
    "sp": dict(long_name="surface pressure", units="hPa", source_units="Pa",
               scale=0.01, cmap="viridis"),
    "tcwv": dict(long_name="total column water vapour", units="kg/m2", cmap="YlGnBu"),
    "lsm": dict(long_name="land-sea mask", units="1", cmap="BrBG_r", vmin=0.0, vmax=1.0,
                fixed=True),
    "orography": dict(long_name="surface height", units="m", cmap="terrain"),
    # Families: one letter followed by a level, e.g. ``u10m``, ``t850``,
    # ``q5hl``, ``Z20hl``; the level is appended to the long name.
    "t": dict(long_name="temperature", units="K", cmap="inferno"),
    "u": dict(long_name="eastward wind", units="m/s", cmap="RdBu_r", diverging=True),
    "v": dict(long_name="northward wind", units="m/s", cmap="RdBu_r", diverging=True),
    "q": dict(long_name="specific humidity", units="kg/kg", cmap="YlGnBu"),
    "r": dict(long_name="relative humidity", units="%", cmap="YlGnBu"),
    "p": dict(long_name="pressure", units="Pa", cmap="viridis"),
    "Z": dict(long_name="geopotential height", units="m", cmap="viridis"),
    "z": dict(long_name="geopotential", units="m2/s2", cmap="viridis"),
}
"""Plot styles by variable name, then by family letter (``t``, ``u``, ``v``,
``q``, ``r``, ``p``, ``Z``, ``z``).

Each entry may hold ``long_name``, ``units`` (as displayed), ``cmap`` (a
matplotlib colormap name, or ``"nws_reflectivity"``), ``vmin``/``vmax`` with
``fixed=True`` for a fixed colour range, ``diverging`` (colour range
symmetric about 0), and ``scale`` with ``source_units`` when the displayed
units differ from the stored ones (``msl`` is stored in Pa, shown in hPa).
Edit or extend it to change how variables are drawn."""

_DEFAULT_STYLE: dict[str, Any] = dict(
    long_name=None, units="", cmap="viridis", vmin=None, vmax=None, fixed=False,
    diverging=False, scale=1.0, source_units=None,
)

_DIFFERENCE_CMAP = "RdBu_r"

_FAMILY_RE = re.compile(r"^(?P<family>[A-Za-z])(?P<level>\d+)(?P<kind>hl|m)?$")
_DIFF_SUFFIX_RE = re.compile(
    r"^(?P<base>.+?)[_-](?P<tag>anom|anomaly|diff|difference|delta|bias|error|err|residual|increment)$"
)
_DIFF_PREFIX_RE = re.compile(r"^(?P<tag>anom|diff|delta|bias|error|err)[_-](?P<base>.+)$")


def _level_text(level: str, kind: str | None) -> str:
    if kind == "hl":
        return f"hybrid level {int(level)}"
    if kind == "m":
        return f"{int(level)} m"
    return f"{int(level)} hPa"


def _lookup(name: str) -> dict[str, Any]:
    """The style entry for a base variable name (no anomaly tag)."""
    if name in VARIABLE_STYLES:
        spec = dict(VARIABLE_STYLES[name])
        spec.setdefault("long_name", name)
        return spec
    m = _FAMILY_RE.match(name)
    if m and m["family"] in VARIABLE_STYLES:
        spec = dict(VARIABLE_STYLES[m["family"]])
        base = spec.get("long_name", m["family"])
        if m["kind"] == "m":
            spec["long_name"] = f"{_level_text(m['level'], m['kind'])} {base}"
        else:
            spec["long_name"] = f"{base} at {_level_text(m['level'], m['kind'])}"
        return spec
    return {"long_name": name}


def _reflectivity_cmap():
    from matplotlib.colors import BoundaryNorm, ListedColormap

    cmap = ListedColormap(list(REFC_COLORS), name="nws_reflectivity").with_extremes(
        under=_TRANSPARENT, bad=_TRANSPARENT, over=REFC_OVER
    )
    norm = BoundaryNorm(list(REFC_LEVELS), ncolors=cmap.N, clip=False)
    return cmap, norm


def style_for(name: str, *, difference: bool = False) -> dict[str, Any]:
    """How to draw variable ``name``.

    Parameters
    ----------
    name : str
        An earth2studio variable name (``"refc"``, ``"t2m"``, ``"u5hl"``,
        ``"Z20hl"``, ...). Names tagged as anomalies or differences
        (``"t2m_diff"``, ``"msl_anom"``, ``"diff_u10m"``, ...) get the base
        variable's units with a diverging colormap.
    difference : bool, optional
        Style the field as a difference or anomaly whatever its name.

    Returns
    -------
    dict
        A new dict with keys ``name``, ``long_name``, ``units`` (displayed),
        ``cmap`` (a :class:`matplotlib.colors.Colormap`), ``norm`` (a
        :class:`matplotlib.colors.Normalize` for fixed discrete palettes,
        otherwise None), ``vmin``/``vmax`` (floats for fixed ranges, else
        None: the caller picks them from the data, see :func:`color_limits`),
        ``fixed``, ``diverging`` (limits symmetric about 0), ``scale``
        (multiply the stored values by it to get displayed units) and
        ``extend`` (the colour bar's default ``extend``). Unknown names get
        ``viridis``, no units and their own name as long name.
    """
    import matplotlib

    name = str(name)
    base = name
    m = _DIFF_SUFFIX_RE.match(name) or _DIFF_PREFIX_RE.match(name)
    if m and (m["base"] in VARIABLE_STYLES or _FAMILY_RE.match(m["base"])):
        base, difference = m["base"], True
    elif m and not (name in VARIABLE_STYLES or _FAMILY_RE.match(name)):
        base, difference = m["base"], True

    spec = dict(_DEFAULT_STYLE)
    spec.update(_lookup(base))
    if not spec.get("long_name"):
        spec["long_name"] = base
    if difference:
        spec.update(cmap=_DIFFERENCE_CMAP, vmin=None, vmax=None, fixed=False, diverging=True,
                    long_name=f"{spec['long_name']} difference")

    norm = None
    extend = "neither"
    if spec["cmap"] == "nws_reflectivity":
        cmap, norm = _reflectivity_cmap()
        extend = "max"
    else:
        cmap = matplotlib.colormaps[spec["cmap"]].with_extremes(bad=_TRANSPARENT)

    return dict(
        name=name,
        long_name=str(spec["long_name"]),
        units=str(spec["units"]),
        cmap=cmap,
        norm=norm,
        vmin=None if spec["vmin"] is None else float(spec["vmin"]),
        vmax=None if spec["vmax"] is None else float(spec["vmax"]),
        fixed=bool(spec["fixed"]),
        diverging=bool(spec["diverging"]),
        scale=float(spec["scale"]),
        source_units=spec["source_units"] or str(spec["units"]),
        extend=extend,
    )


def color_limits(
    values: Any, style: dict[str, Any], percentiles: tuple[float, float] = (1.0, 99.0)
) -> tuple[float, float]:
    """Colour range for ``values`` (already in displayed units).

    Parameters
    ----------
    values : array_like
        Data of any shape; NaNs and infinities are ignored.
    style : dict
        A :func:`style_for` result.
    percentiles : tuple of float, optional
        Robust range for styles without a fixed one.

    Returns
    -------
    (float, float)
        The style's fixed range if it has one; otherwise the given
        percentiles of the data, made symmetric about 0 for diverging styles.
        A constant field gets a small range around its value.
    """
    if style.get("fixed") and style.get("vmin") is not None and style.get("vmax") is not None:
        return float(style["vmin"]), float(style["vmax"])
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size > 4_000_000:  # a regular subsample is plenty for percentiles
        a = a[:: a.size // 2_000_000]
    a = a[np.isfinite(a)]
    if a.size == 0:
        return (-1.0, 1.0) if style.get("diverging") else (0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(a, percentiles))
    if style.get("diverging"):
        m = max(abs(lo), abs(hi))
        if m == 0.0:
            m = 1.0
        return -m, m
    if hi <= lo:
        pad = max(abs(lo) * 0.01, 1e-6)
        lo, hi = lo - pad, hi + pad
    return lo, hi


def _extend(values: np.ndarray, vmin: float, vmax: float) -> str:
    """The colour bar ``extend`` that shows values outside ``[vmin, vmax]``."""
    a = np.asarray(values, dtype=np.float64)
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return "neither"
    below, above = finite.min() < vmin, finite.max() > vmax
    return {(False, False): "neither", (True, False): "min",
            (False, True): "max", (True, True): "both"}[(bool(below), bool(above))]


# --------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------

HRRR_PROJECTION = dict(central_longitude=-97.5, central_latitude=38.5,
                       standard_parallels=(38.5, 38.5))
"""The HRRR grid's Lambert conformal projection parameters."""

_NATURAL_EARTH_OK: bool | None = None


def _cartopy():
    """``(cartopy.crs, cartopy.feature)`` or None when cartopy is missing."""
    try:
        import cartopy.crs as ccrs
        import cartopy.feature as cfeature
    except Exception:  # ImportError, or a broken GEOS/PROJ install
        return None
    return ccrs, cfeature


def _natural_earth_ok(cfeature) -> bool:
    """Whether the Natural Earth shapes can be read (they may need a download)."""
    global _NATURAL_EARTH_OK
    if _NATURAL_EARTH_OK is None:
        try:
            next(iter(cfeature.COASTLINE.with_scale("50m").geometries()))
            _NATURAL_EARTH_OK = True
        except Exception as exc:  # offline, or no write access to the data dir
            warnings.warn(f"map outlines unavailable ({exc}); drawing without them", stacklevel=3)
            _NATURAL_EARTH_OK = False
    return _NATURAL_EARTH_OK


def _lambert(ccrs, lat: np.ndarray, lon: np.ndarray):
    """The HRRR projection for CONUS-like grids, else one centred on the data."""
    lat0 = float(np.nanmean(lat))
    lon0 = float((np.nanmin(lon) + np.nanmax(lon)) / 2.0)
    if -135.0 <= lon0 <= -60.0 and 20.0 <= lat0 <= 55.0:
        return ccrs.LambertConformal(**HRRR_PROJECTION)
    return ccrs.LambertConformal(central_longitude=lon0, central_latitude=lat0,
                                 standard_parallels=(lat0, lat0))


def _as_grid(data2d: Any, lat: Any, lon: Any, stride: int):
    """Validate a field and its coordinates; returns masked data, lat, lon."""
    data = np.ma.masked_invalid(np.asarray(data2d, dtype=np.float64).squeeze())
    if data.ndim != 2:
        raise ValueError(f"expected a 2-D field, got shape {np.shape(data2d)}")
    if (lat is None) != (lon is None):
        raise ValueError("give both lat and lon, or neither")
    if lat is not None:
        lat = np.asarray(lat, dtype=np.float64).squeeze()
        lon = np.asarray(lon, dtype=np.float64).squeeze()
        if lat.ndim == 1 and lon.ndim == 1:
            lon, lat = np.meshgrid(lon, lat)
        if lat.shape != data.shape or lon.shape != data.shape:
            raise ValueError(
                f"lat {lat.shape} and lon {lon.shape} do not match the field {data.shape}"
            )
        if np.nanmax(lon) > 180.0:
            lon = (lon + 180.0) % 360.0 - 180.0
    s = max(int(stride), 1)
    if s > 1:
        data = data[::s, ::s]
        if lat is not None:
            lat, lon = lat[::s, ::s], lon[::s, ::s]
    return data, lat, lon


def _region_aspect(data, lat, lon, geo_crs) -> float:
    """Height over width of the mapped region, as it will be displayed."""
    if lat is None:
        return data.shape[0] / data.shape[1]
    if geo_crs is not None:
        ccrs, _ = _cartopy()
        pts = geo_crs.transform_points(ccrs.PlateCarree(), lon, lat)
        x, y = pts[..., 0], pts[..., 1]
        return float((np.nanmax(y) - np.nanmin(y)) / max(np.nanmax(x) - np.nanmin(x), 1e-9))
    a = 1.0 / max(math.cos(math.radians(float(np.nanmean(lat)))), 0.1)
    return float(a * np.ptp(lat[np.isfinite(lat)]) / max(np.ptp(lon[np.isfinite(lon)]), 1e-9))


def _figsize(aspect: float, width: float = 8.0) -> tuple[float, float]:
    map_w = width - 1.8  # colour bar, its label and the y tick labels
    height = map_w * aspect + 1.4  # two-line title and the x tick labels
    return width, float(min(max(height, 3.0), 12.0))


def _new_figure(figsize: tuple[float, float], dpi: float = 100.0):
    """An Agg-backed figure outside pyplot's state (freed with its last reference)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _render(ax, data, lat, lon, style, vmin, vmax, *, geo: bool, map_features: bool,
            extend: str, colorbar: bool = True):
    """Draw one prepared field on ``ax``; returns the mappable."""
    from matplotlib.colors import Normalize

    use_style_norm = style["norm"] is not None and (
        (vmin is None and vmax is None)
        or (vmin == style["vmin"] and vmax == style["vmax"])
    )
    if use_style_norm:
        norm = style["norm"]
    else:
        if vmin is None or vmax is None:
            lo, hi = color_limits(data.filled(np.nan), style)
            vmin = lo if vmin is None else vmin
            vmax = hi if vmax is None else vmax
        norm = Normalize(vmin=vmin, vmax=vmax)
    cmap = style["cmap"]

    if lat is None:
        mappable = ax.imshow(data, origin="lower", cmap=cmap, norm=norm,
                             interpolation="nearest", aspect="equal")
        ax.set_xlabel("x (grid index)")
        ax.set_ylabel("y (grid index)")
    elif geo:
        ccrs, cfeature = _cartopy()
        mappable = ax.pcolormesh(lon, lat, data, cmap=cmap, norm=norm, shading="nearest",
                                 transform=ccrs.PlateCarree(), rasterized=True)
        pts = ax.projection.transform_points(ccrs.PlateCarree(), lon, lat)
        ax.set_xlim(np.nanmin(pts[..., 0]), np.nanmax(pts[..., 0]))
        ax.set_ylim(np.nanmin(pts[..., 1]), np.nanmax(pts[..., 1]))
        if map_features and _natural_earth_ok(cfeature):
            ax.coastlines(resolution="50m", linewidth=0.6)
            ax.add_feature(cfeature.BORDERS.with_scale("50m"), linewidth=0.5)
            ax.add_feature(cfeature.STATES.with_scale("50m"), linewidth=0.3, edgecolor="0.3")
        gl = ax.gridlines(draw_labels=True, x_inline=False, y_inline=False,
                          rotate_labels=False, linewidth=0.3, color="0.5", alpha=0.6,
                          linestyle=":")
        gl.top_labels = False
        gl.right_labels = False
        gl.xlabel_style = gl.ylabel_style = {"size": 8}
    else:
        mappable = ax.pcolormesh(lon, lat, data, cmap=cmap, norm=norm, shading="nearest",
                                 rasterized=True)
        ax.set_aspect(1.0 / max(math.cos(math.radians(float(np.nanmean(lat)))), 0.1))
        ax.set_xlabel("longitude (deg E)")
        ax.set_ylabel("latitude (deg N)")
        ax.grid(True, linewidth=0.3, color="0.6", alpha=0.6)

    if colorbar:
        fig = ax.get_figure()
        cb = fig.colorbar(mappable, ax=ax, extend=extend, shrink=0.9, pad=0.02, aspect=30)
        cb.set_label(style["units"] or style["long_name"])
        if style["norm"] is not None and use_style_norm and style["cmap"].name == "nws_reflectivity":
            cb.set_ticks(list(REFC_LEVELS[::2]))
    return mappable


def _want_cartopy(use_cartopy: bool | None, have_latlon: bool) -> bool:
    if use_cartopy is False:
        return False
    available = _cartopy() is not None
    if use_cartopy and not available:
        raise ImportError("use_cartopy=True but cartopy cannot be imported")
    if use_cartopy and not have_latlon:
        warnings.warn("cartopy maps need lat and lon; drawing on grid indices", stacklevel=3)
        return False
    return available and have_latlon


def plot_field(
    ax: "Axes | None",
    data2d: Any,
    lat: Any = None,
    lon: Any = None,
    name: str | None = None,
    title: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    *,
    units: str | None = None,
    scale_units: bool = True,
    use_cartopy: bool | None = None,
    map_features: bool = True,
    stride: int = 1,
    colorbar: bool = True,
    dpi: float = 100.0,
) -> "Figure":
    """Draw one 2-D field as a map with a colour bar.

    Parameters
    ----------
    ax : matplotlib.axes.Axes or None
        Axes to draw on (a cartopy ``GeoAxes`` gets a projected map); None
        makes a new figure sized to the domain.
    data2d : array_like
        The field, shape ``(ny, nx)``, in stored units (``msl`` in Pa). An
        ``xarray.DataArray`` lends its name and 2-D ``lat``/``lon``
        coordinates when those arguments are not given.
    lat, lon : array_like, optional
        Latitudes and longitudes of the grid points, both ``(ny, nx)`` or 1-D
        ``(ny,)`` and ``(nx,)``; longitudes may be in 0..360.
    name : str, optional
        Variable name, which picks the style (see :func:`style_for`).
    title : str, optional
        Axes title; defaults to the long name with units.
    vmin, vmax : float, optional
        Colour range in displayed units (hPa for ``msl``); defaults to the
        style's fixed range or robust percentiles of the field.
    units : str, optional
        Overrides the colour bar label.
    scale_units : bool, optional
        Convert the data to displayed units (Pa to hPa for ``msl``). Pass
        False when ``data2d`` is in displayed units already.
    use_cartopy : bool, optional
        None (default) uses cartopy when importable and lat/lon are given.
    map_features : bool, optional
        Draw coastlines, borders and states on cartopy maps (Natural Earth
        shapes, which cartopy downloads on first use).
    stride : int, optional
        Draw every ``stride``-th point in both directions (for speed on the
        full 1059 x 1799 HRRR grid).
    colorbar : bool, optional
        Add a colour bar.
    dpi : float, optional
        Resolution of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the map.
    """
    if name is None:
        name = getattr(data2d, "name", None) or "field"
    if lat is None and lon is None and hasattr(data2d, "coords"):
        coords = data2d.coords
        for la, lo in (("lat", "lon"), ("latitude", "longitude")):
            if la in coords and lo in coords and coords[la].ndim in (1, 2):
                lat, lon = coords[la].values, coords[lo].values
                if lat.ndim == 1 and coords[la].dims[0] != data2d.dims[-2]:
                    lat = lon = None
                break
    style = style_for(name)
    if units is not None:
        style["units"] = units
    data, lat, lon = _as_grid(data2d, lat, lon, stride)
    if scale_units and style["scale"] != 1.0:
        data = data * style["scale"]

    geo_axes = ax is not None and hasattr(ax, "projection") and hasattr(ax, "coastlines")
    if ax is None:
        geo = _want_cartopy(use_cartopy, lat is not None)
        crs = _lambert(_cartopy()[0], lat, lon) if geo else None
        fig = _new_figure(_figsize(_region_aspect(data, lat, lon, crs)), dpi=dpi)
        ax = fig.add_subplot(projection=crs) if geo else fig.add_subplot()
    else:
        geo = geo_axes and lat is not None and use_cartopy is not False
        fig = ax.get_figure()

    if style["norm"] is not None and vmin is None and vmax is None:
        extend = style["extend"]  # the style's discrete palette and range
    else:
        lo, hi = color_limits(data.filled(np.nan), style)
        vmin = lo if vmin is None else float(vmin)
        vmax = hi if vmax is None else float(vmax)
        extend = _extend(data.filled(np.nan), vmin, vmax)
    _render(ax, data, lat, lon, style, vmin, vmax, geo=geo, map_features=map_features,
            extend=extend, colorbar=colorbar)
    if title is None:
        title = style["long_name"] + (f" ({style['units']})" if style["units"] else "")
    ax.set_title(title, fontsize=10)
    return fig


# --------------------------------------------------------------------------
# Forecast stores
# --------------------------------------------------------------------------

_LATLON_NAMES = (("lat", "lon"), ("latitude", "longitude"), ("_lat", "_lon"))
_ENSEMBLE_DIMS = ("ensemble", "member", "sample")
_NON_SPATIAL = {"time", "lead_time", "variable", *_ENSEMBLE_DIMS}


def _is_latlon_name(name: str) -> bool:
    return any(name in pair for pair in _LATLON_NAMES)


def _plottable(ds: "xr.Dataset") -> list[str]:
    """Data variables with two trailing spatial dimensions."""
    out = []
    for name, da in ds.data_vars.items():
        if _is_latlon_name(str(name)) or da.ndim < 2:
            continue
        if any(d in _NON_SPATIAL for d in da.dims[-2:]):
            continue
        out.append(str(name))
    return out


def _latlon(ds: "xr.Dataset", ydim: str, xdim: str):
    """2-D ``(lat, lon)`` over ``(ydim, xdim)``, or ``(None, None)``."""
    for la, lo in _LATLON_NAMES:
        if la in ds.variables and lo in ds.variables:
            lat, lon = ds[la], ds[lo]
            break
    else:
        return None, None
    if lat.ndim == 1 and lon.ndim == 1:
        if lat.dims == (ydim,) and lon.dims == (xdim,):
            lon2, lat2 = np.meshgrid(lon.values, lat.values)
            return lat2, lon2
        return None, None

    def to2d(da):
        extra = [d for d in da.dims if d not in (ydim, xdim)]
        da = da.isel({d: 0 for d in extra})
        if set(da.dims) == {ydim, xdim}:
            da = da.transpose(ydim, xdim)
        return np.asarray(da.values, dtype=np.float64)

    lat2, lon2 = to2d(lat), to2d(lon)
    n = (ds.sizes.get(ydim), ds.sizes.get(xdim))
    if lat2.shape != n or lon2.shape != n:
        warnings.warn(f"lat/lon shape {lat2.shape} does not match the grid {n}; ignoring them",
                      stacklevel=3)
        return None, None
    return lat2, lon2


def _lead_tag(hours: float) -> str:
    """``003h``, or ``003h30m`` for leads off the hour."""
    minutes = int(round(hours * 60.0))
    h, m = divmod(minutes, 60)
    return f"{h:03d}h" if m == 0 else f"{h:03d}h{m:02d}m"


def _lead_text(hours: float) -> str:
    minutes = int(round(hours * 60.0))
    h, m = divmod(minutes, 60)
    return f"+{h} h" if m == 0 else f"+{h} h {m:02d} min"


def _time_text(value: Any) -> str:
    v = np.asarray(value)
    if np.issubdtype(v.dtype, np.datetime64):
        return np.datetime_as_string(v, unit="m").replace("T", " ") + " UTC"
    return str(value)


def _frames(ds: "xr.Dataset", var: str, time_index: int, member: int):
    """``(DataArray (lead_time, y, x), init text or None, member label or None)``."""
    da = ds[var]
    ydim, xdim = da.dims[-2:]
    member_label = None
    ens = next((d for d in _ENSEMBLE_DIMS if d in da.dims), None)
    if ens is not None:
        n = da.sizes[ens]
        if not -n <= member < n:
            raise IndexError(f"member {member} out of range for {n} ensemble members")
        member_label = da[ens].values[member].item() if ens in da.coords else member
        da = da.isel({ens: member})
    elif member not in (0, -1, None):
        raise ValueError(f"{var!r} has no ensemble dimension; member must be 0, got {member}")
    init = None
    if "time" in da.dims:
        n = da.sizes["time"]
        if not -n <= time_index < n:
            raise IndexError(f"time_index {time_index} out of range for {n} initial times")
        if "time" in da.coords:
            init = _time_text(da["time"].values[time_index])
        da = da.isel(time=time_index)
    elif "time" in da.coords and da["time"].ndim == 0:
        init = _time_text(da["time"].values)
    if "lead_time" not in da.dims:
        da = da.expand_dims("lead_time")
    extra = [d for d in da.dims if d not in ("lead_time", ydim, xdim)]
    for d in extra:
        if da.sizes[d] != 1:
            raise ValueError(f"{var!r} has an extra dimension {d!r} of size {da.sizes[d]}")
    da = da.isel({d: 0 for d in extra}).transpose("lead_time", ydim, xdim)
    return da, init, member_label


def _frame_title(style: dict[str, Any], init: str | None, hours: float, member: Any) -> str:
    head = style["long_name"] + (f" ({style['units']})" if style["units"] else "")
    parts = []
    if init is not None:
        parts.append(f"init {init}")
    parts.append(f"lead {_lead_text(hours)}")
    if member is not None:
        parts.append(f"member {member}")
    return head + "\n" + "   ".join(parts)


def _check_variables(ds: "xr.Dataset", variables: Sequence[str] | str | None) -> list[str]:
    available = _plottable(ds)
    if variables is None:
        if not available:
            raise ValueError("the forecast store holds no plottable variables")
        return available
    if isinstance(variables, str):
        variables = [variables]
    wanted = list(dict.fromkeys(str(v) for v in variables))
    unknown = [v for v in wanted if v not in available]
    if unknown:
        raise ValueError(f"unknown variable(s) {unknown}; available: {available}")
    return wanted


def plot_forecast(
    path_or_dataset: Any,
    variables: Sequence[str] | None,
    out_dir: str | Path,
    *,
    time_index: int = 0,
    member: int = 0,
    gif: bool = True,
    dpi: float = 100.0,
    fps: float = 2.0,
    percentiles: tuple[float, float] = (1.0, 99.0),
    stride: int = 1,
    use_cartopy: bool | None = None,
    map_features: bool = True,
) -> list[Path]:
    """Write a map per variable and lead time, and a GIF loop per variable.

    Parameters
    ----------
    path_or_dataset : str, Path or xarray.Dataset
        A forecast store: a zarr directory, a NetCDF file (``.nc``) or an
        open dataset.
    variables : sequence of str or None
        Variables to draw; None draws every variable on the spatial grid.
    out_dir : str or Path
        Output folder, created when missing.
    time_index : int, optional
        Index of the initial time along ``time``.
    member : int, optional
        Index of the ensemble member when the store has an ``ensemble``
        dimension.
    gif : bool, optional
        Also write ``{var}.gif``, a loop over lead times.
    dpi : float, optional
        Resolution of the images.
    fps : float, optional
        GIF frames per second.
    percentiles : tuple of float, optional
        Robust colour range for styles without a fixed one; one range per
        variable is shared by all lead times.
    stride : int, optional
        Draw every ``stride``-th grid point (2 or 3 makes full HRRR maps
        several times faster).
    use_cartopy : bool, optional
        None (default) uses cartopy maps when cartopy is importable and the
        store has ``lat``/``lon``.
    map_features : bool, optional
        Draw coastlines, borders and states on cartopy maps.

    Returns
    -------
    list of Path
        For each variable: ``{var}_{lead:03d}h.png`` per lead time (lead in
        hours), then ``{var}.gif`` when ``gif`` is set.

    Raises
    ------
    ValueError
        For variables not in the store; the message lists the available ones.
    """
    from matplotlib.animation import PillowWriter

    ds = open_forecast(path_or_dataset)
    names = _check_variables(ds, variables)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    for var in names:
        da, init, member_label = _frames(ds, var, time_index, member)
        hours = lead_hours(da)
        style = style_for(var)
        values = np.asarray(da.values, dtype=np.float64) * style["scale"]
        ydim, xdim = da.dims[-2:]
        lat, lon = _latlon(ds, ydim, xdim)
        if style["norm"] is not None:
            vmin = vmax = None
            extend = style["extend"]
        else:
            vmin, vmax = color_limits(values, style, percentiles)
            extend = _extend(values, vmin, vmax)

        geo = _want_cartopy(use_cartopy, lat is not None)
        first, lat_s, lon_s = _as_grid(values[0], lat, lon, stride)
        crs = _lambert(_cartopy()[0], lat_s, lon_s) if geo else None
        fig = _new_figure(_figsize(_region_aspect(first, lat_s, lon_s, crs)), dpi=dpi)
        ax = fig.add_subplot(projection=crs) if geo else fig.add_subplot()
        mappable = _render(ax, first, lat_s, lon_s, style, vmin, vmax, geo=geo,
                           map_features=map_features, extend=extend)
        title = ax.set_title("", fontsize=10)

        def update(i: int, _values=values, _mappable=mappable, _title=title,
                   _hours=hours, _style=style, _init=init, _member=member_label):
            field, _, _ = _as_grid(_values[i], None, None, stride)
            if hasattr(_mappable, "set_data"):
                _mappable.set_data(field)
            else:
                _mappable.set_array(field)
            _title.set_text(_frame_title(_style, _init, _hours[i], _member))
            return (_mappable, _title)

        # Lay the figure out once, on the first frame: later frames only change
        # the field and the title text, and re-running the constrained layout
        # for each would triple the drawing time.
        update(0)
        fig.get_layout_engine().execute(fig)
        fig.set_layout_engine("none")

        writer = PillowWriter(fps=fps) if gif else None
        gif_path = out / f"{var}.gif"
        with writer.saving(fig, str(gif_path), dpi) if writer else contextlib.nullcontext():
            for i, h in enumerate(hours):
                update(i)
                path = out / f"{var}_{_lead_tag(h)}.png"
                fig.savefig(path, dpi=dpi, facecolor="white")
                written.append(path)
                if writer:
                    writer.grab_frame(facecolor="white")
        if writer:
            written.append(gif_path)
        del fig
    return written


def plot_panel(
    path_or_dataset: Any,
    variables: Sequence[str] | None = None,
    out_path: str | Path | None = None,
    *,
    lead_index: int = 0,
    time_index: int = 0,
    member: int = 0,
    ncols: int = 3,
    dpi: float = 100.0,
    panel_width: float = 4.5,
    percentiles: tuple[float, float] = (1.0, 99.0),
    stride: int = 1,
    use_cartopy: bool | None = None,
    map_features: bool = True,
) -> "Figure":
    """A grid of maps, one per variable, at one lead time.

    Parameters
    ----------
    path_or_dataset : str, Path or xarray.Dataset
        A forecast store (see :func:`plot_forecast`).
    variables : sequence of str, optional
        Variables to draw; None draws all of them.
    out_path : str or Path, optional
        Save the figure there (format from the suffix).
    lead_index, time_index, member : int, optional
        Which lead time, initial time and ensemble member to draw.
    ncols : int, optional
        Panels per row.
    dpi : float, optional
        Figure resolution.
    panel_width : float, optional
        Width of one panel in inches.
    percentiles : tuple of float, optional
        Robust colour range per panel for styles without a fixed one.
    stride : int, optional
        Draw every ``stride``-th grid point.
    use_cartopy, map_features : optional
        As for :func:`plot_forecast`.

    Returns
    -------
    matplotlib.figure.Figure
        The panel figure.
    """
    ds = open_forecast(path_or_dataset)
    names = _check_variables(ds, variables)
    fields = []
    init = member_label = None
    hours = 0.0
    for var in names:
        da, init, member_label = _frames(ds, var, time_index, member)
        n = da.sizes["lead_time"]
        if not -n <= lead_index < n:
            raise IndexError(f"lead_index {lead_index} out of range for {n} lead times")
        hours = lead_hours(da)[lead_index]
        style = style_for(var)
        values = np.asarray(da.isel(lead_time=lead_index).values, dtype=np.float64) * style["scale"]
        lat, lon = _latlon(ds, *da.dims[-2:])
        fields.append((style, *_as_grid(values, lat, lon, stride)))

    ncols = max(1, min(int(ncols), len(fields)))
    nrows = math.ceil(len(fields) / ncols)
    have_latlon = all(f[2] is not None for f in fields)
    geo = _want_cartopy(use_cartopy, have_latlon)
    crs = _lambert(_cartopy()[0], fields[0][2], fields[0][3]) if geo else None
    aspect = _region_aspect(fields[0][1], fields[0][2], fields[0][3], crs)
    panel_h = (panel_width - 1.0) * aspect + 0.6
    fig = _new_figure((panel_width * ncols, panel_h * nrows + 0.6), dpi=dpi)
    for k, (style, data, lat, lon) in enumerate(fields):
        ax = fig.add_subplot(nrows, ncols, k + 1, projection=crs) if geo else \
            fig.add_subplot(nrows, ncols, k + 1)
        if style["norm"] is not None:
            vmin = vmax = None
            extend = style["extend"]
        else:
            vmin, vmax = color_limits(data.filled(np.nan), style, percentiles)
            extend = _extend(data.filled(np.nan), vmin, vmax)
        _render(ax, data, lat, lon, style, vmin, vmax, geo=geo and lat is not None,
                map_features=map_features, extend=extend)
        ax.set_title(style["long_name"] + (f" ({style['units']})" if style["units"] else ""),
                     fontsize=9)
    parts = [f"init {init}"] if init is not None else []
    parts.append(f"lead {_lead_text(hours)}")
    if member_label is not None:
        parts.append(f"member {member_label}")
    fig.suptitle("   ".join(parts), fontsize=11)
    if out_path is not None:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out_path, dpi=dpi, facecolor="white")
    return fig
