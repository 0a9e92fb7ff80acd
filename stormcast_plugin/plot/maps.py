"""Drawing one field as a map: cartopy projections when available, plain axes otherwise.

With cartopy installed and latitudes/longitudes at hand, maps are drawn on a
Lambert conformal projection with coastlines, borders and US states;
otherwise on plain axes in longitude/latitude (or grid indices when no
coordinates are known). Figures are rendered with the Agg canvas without
touching pyplot's global state; matplotlib and cartopy are imported when
first used.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from stormcast_plugin.plot.style import REFC_LEVELS, color_limits, colorbar_extend, style_for
from stormcast_plugin.utils.coords import LATLON_PAIRS

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "HRRR_PROJECTION",
    "as_grid",
    "cartopy_modules",
    "figure_size",
    "lambert_projection",
    "new_figure",
    "plot_field",
    "region_aspect",
    "render_field",
    "want_cartopy",
]

HRRR_PROJECTION = dict(central_longitude=-97.5, central_latitude=38.5,
                       standard_parallels=(38.5, 38.5))
"""The HRRR grid's Lambert conformal projection parameters."""

_NATURAL_EARTH_OK: bool | None = None


def cartopy_modules():
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


def lambert_projection(ccrs, lat: np.ndarray, lon: np.ndarray):
    """The HRRR projection for CONUS-like grids, else one centred on the data."""
    lat0 = float(np.nanmean(lat))
    lon0 = float((np.nanmin(lon) + np.nanmax(lon)) / 2.0)
    if -135.0 <= lon0 <= -60.0 and 20.0 <= lat0 <= 55.0:
        return ccrs.LambertConformal(**HRRR_PROJECTION)
    return ccrs.LambertConformal(central_longitude=lon0, central_latitude=lat0,
                                 standard_parallels=(lat0, lat0))


def as_grid(data2d: Any, lat: Any, lon: Any, stride: int):
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


def region_aspect(data, lat, lon, geo_crs) -> float:
    """Height over width of the mapped region, as it will be displayed."""
    if lat is None:
        return data.shape[0] / data.shape[1]
    if geo_crs is not None:
        ccrs, _ = cartopy_modules()
        pts = geo_crs.transform_points(ccrs.PlateCarree(), lon, lat)
        x, y = pts[..., 0], pts[..., 1]
        return float((np.nanmax(y) - np.nanmin(y)) / max(np.nanmax(x) - np.nanmin(x), 1e-9))
    a = 1.0 / max(math.cos(math.radians(float(np.nanmean(lat)))), 0.1)
    return float(a * np.ptp(lat[np.isfinite(lat)]) / max(np.ptp(lon[np.isfinite(lon)]), 1e-9))


def figure_size(aspect: float, width: float = 8.0) -> tuple[float, float]:
    """Figure ``(width, height)`` in inches for a map of height/width ``aspect`` with title and colour bar."""
    map_w = width - 1.8  # colour bar, its label and the y tick labels
    height = map_w * aspect + 1.4  # two-line title and the x tick labels
    return width, float(min(max(height, 3.0), 12.0))


def new_figure(figsize: tuple[float, float], dpi: float = 100.0):
    """An Agg-backed figure outside pyplot's state (freed with its last reference)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def render_field(ax, data, lat, lon, style, vmin, vmax, *, geo: bool, map_features: bool,
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
        ccrs, cfeature = cartopy_modules()
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


def want_cartopy(use_cartopy: bool | None, have_latlon: bool) -> bool:
    """Whether to draw on cartopy axes: asked for (or not refused), importable, and lat/lon at hand."""
    if use_cartopy is False:
        return False
    available = cartopy_modules() is not None
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
        for la, lo in LATLON_PAIRS:
            if la in coords and lo in coords and coords[la].ndim in (1, 2):
                lat, lon = coords[la].values, coords[lo].values
                if lat.ndim == 1 and coords[la].dims[0] != data2d.dims[-2]:
                    lat = lon = None
                break
    style = style_for(name)
    if units is not None:
        style["units"] = units
    data, lat, lon = as_grid(data2d, lat, lon, stride)
    if scale_units and style["scale"] != 1.0:
        data = data * style["scale"]

    geo_axes = ax is not None and hasattr(ax, "projection") and hasattr(ax, "coastlines")
    if ax is None:
        geo = want_cartopy(use_cartopy, lat is not None)
        crs = lambert_projection(cartopy_modules()[0], lat, lon) if geo else None
        fig = new_figure(figure_size(region_aspect(data, lat, lon, crs)), dpi=dpi)
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
        extend = colorbar_extend(data.filled(np.nan), vmin, vmax)
    render_field(ax, data, lat, lon, style, vmin, vmax, geo=geo, map_features=map_features,
            extend=extend, colorbar=colorbar)
    if title is None:
        title = style["long_name"] + (f" ({style['units']})" if style["units"] else "")
    ax.set_title(title, fontsize=10)
    return fig
