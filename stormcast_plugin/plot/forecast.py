"""Maps of StormCast forecast stores: per-lead-time frames, GIF loops and panels.

Forecast stores are those ``stormcast forecast`` writes (read through
:func:`stormcast_plugin.io.forecast_store.open_forecast`): one data variable
per weather variable over dimensions such as ``(ensemble, time, lead_time,
hrrr_y, hrrr_x)``, with optional 2-D ``lat`` / ``lon`` fields over the
spatial dimensions. Lead hours that the forecast's run never completed are
not drawn (the reader warns about them).

Importing this module is cheap: matplotlib, xarray and cartopy are imported
inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from stormcast_plugin.io.forecast_store import completed_lead_hours, lead_hours, load_lead, open_forecast
from stormcast_plugin.plot.maps import (
    as_grid,
    cartopy_modules,
    figure_size,
    lambert_projection,
    new_figure,
    region_aspect,
    render_field,
    want_cartopy,
)
from stormcast_plugin.plot.style import color_limits, colorbar_extend, style_for
from stormcast_plugin.utils.coords import ENSEMBLE_DIMS, LATLON_PAIRS

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr
    from matplotlib.figure import Figure

__all__ = ["SelectionError", "plot_forecast", "plot_panel"]

# Besides the usual names, the underscored pair some earth2studio outputs use for 2-D coordinates.
_LATLON_NAMES = LATLON_PAIRS + (("_lat", "_lon"),)
_NON_SPATIAL = {"time", "lead_time", "variable", *ENSEMBLE_DIMS}


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


class SelectionError(IndexError, ValueError):
    """A member, initial time or lead time the forecast store does not have."""


def _pick(what: str, option: str, index: Any, n: int, where: str) -> int:
    """``index`` checked against ``n`` entries numbered from 0 (negative numbers are refused)."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n:
        raise SelectionError(f"{option} {index!r} is out of range: {where} has {n} {what}, numbered 0 to {n - 1}; "
                             f"choose {option} between 0 and {n - 1}")
    return int(index)


def _frames(ds: "xr.Dataset", var: str, time_index: int, member: int, where: str):
    """``(DataArray (lead_time, y, x), init text or None, member label or None)``."""
    da = ds[var]
    ydim, xdim = da.dims[-2:]
    member_label = None
    ens = next((d for d in ENSEMBLE_DIMS if d in da.dims), None)
    if ens is not None:
        member = _pick("ensemble members", "member", member, da.sizes[ens], where)
        member_label = da[ens].values[member].item() if ens in da.coords else member
        da = da.isel({ens: member})
    elif member not in (0, None):
        raise SelectionError(f"member {member!r} is out of range: {var!r} in {where} has no ensemble dimension; "
                             "choose member 0")
    init = None
    if "time" in da.dims:
        time_index = _pick("initial times", "time_index", time_index, da.sizes["time"], where)
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


def _store_name(source: Any) -> str:
    return str(source) if isinstance(source, (str, Path)) else "the forecast dataset"


def _written_leads(ds: "xr.Dataset", da: "xr.DataArray", where: str) -> list[int]:
    """Indices of the lead times the forecast's run completed (all of them without the attribute)."""
    hours = lead_hours(da)
    done = completed_lead_hours(ds)
    keep = [i for i, h in enumerate(hours) if done is None or h <= done]
    if not keep:
        raise ValueError(f"the forecast store {where} holds no completed lead hour (completed_lead_hours = "
                         f"{done}): nothing to draw")
    return keep


def _values(da: "xr.DataArray", leads: Sequence[int], scale: float, where: str) -> np.ndarray:
    """The chosen lead times as float64 in displayed units, read one lead at a time."""
    return np.stack([np.asarray(load_lead(da, i, where).values, dtype=np.float64) for i in leads]) * scale


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
        Number of the ensemble member (0 to members - 1) when the store has
        an ensemble dimension.
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

    Only the lead hours up to the store's ``completed_lead_hours`` are drawn.

    Raises
    ------
    ValueError
        For variables not in the store (the message lists the available
        ones), or a store without any completed lead hour.
    SelectionError
        For a member or initial time the store does not have (negative
        numbers included).
    ForecastStoreError
        For a damaged chunk, naming the store, the variable and the hour.
    """
    from matplotlib.animation import PillowWriter

    where = _store_name(path_or_dataset)
    ds = open_forecast(path_or_dataset, name=where)
    names = _check_variables(ds, variables)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    for var in names:
        da, init, member_label = _frames(ds, var, time_index, member, where)
        leads = _written_leads(ds, da, where)
        hours = [lead_hours(da)[i] for i in leads]
        style = style_for(var)
        values = _values(da, leads, style["scale"], where)
        ydim, xdim = da.dims[-2:]
        lat, lon = _latlon(ds, ydim, xdim)
        if style["norm"] is not None:
            vmin = vmax = None
            extend = style["extend"]
        else:
            vmin, vmax = color_limits(values, style, percentiles)
            extend = colorbar_extend(values, vmin, vmax)

        geo = want_cartopy(use_cartopy, lat is not None)
        first, lat_s, lon_s = as_grid(values[0], lat, lon, stride)
        crs = lambert_projection(cartopy_modules()[0], lat_s, lon_s) if geo else None
        fig = new_figure(figure_size(region_aspect(first, lat_s, lon_s, crs)), dpi=dpi)
        ax = fig.add_subplot(projection=crs) if geo else fig.add_subplot()
        mappable = render_field(ax, first, lat_s, lon_s, style, vmin, vmax, geo=geo,
                           map_features=map_features, extend=extend)
        title = ax.set_title("", fontsize=10)

        def update(i: int, _values=values, _mappable=mappable, _title=title,
                   _hours=hours, _style=style, _init=init, _member=member_label):
            field, _, _ = as_grid(_values[i], None, None, stride)
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
    where = _store_name(path_or_dataset)
    ds = open_forecast(path_or_dataset, name=where)
    names = _check_variables(ds, variables)
    fields = []
    init = member_label = None
    hours = 0.0
    for var in names:
        da, init, member_label = _frames(ds, var, time_index, member, where)
        lead = _pick("lead times", "lead_index", lead_index, da.sizes["lead_time"], where)
        if lead not in _written_leads(ds, da, where):
            raise SelectionError(f"lead_index {lead} (+{lead_hours(da)[lead]:g} h) was never written: {where} "
                                 f"is complete to lead hour {completed_lead_hours(ds)}")
        hours = lead_hours(da)[lead]
        style = style_for(var)
        values = _values(da, [lead], style["scale"], where)[0]
        lat, lon = _latlon(ds, *da.dims[-2:])
        fields.append((style, *as_grid(values, lat, lon, stride)))

    ncols = max(1, min(int(ncols), len(fields)))
    nrows = math.ceil(len(fields) / ncols)
    have_latlon = all(f[2] is not None for f in fields)
    geo = want_cartopy(use_cartopy, have_latlon)
    crs = lambert_projection(cartopy_modules()[0], fields[0][2], fields[0][3]) if geo else None
    aspect = region_aspect(fields[0][1], fields[0][2], fields[0][3], crs)
    panel_h = (panel_width - 1.0) * aspect + 0.6
    fig = new_figure((panel_width * ncols, panel_h * nrows + 0.6), dpi=dpi)
    for k, (style, data, lat, lon) in enumerate(fields):
        ax = fig.add_subplot(nrows, ncols, k + 1, projection=crs) if geo else \
            fig.add_subplot(nrows, ncols, k + 1)
        if style["norm"] is not None:
            vmin = vmax = None
            extend = style["extend"]
        else:
            vmin, vmax = color_limits(data.filled(np.nan), style, percentiles)
            extend = colorbar_extend(data.filled(np.nan), vmin, vmax)
        render_field(ax, data, lat, lon, style, vmin, vmax, geo=geo and lat is not None,
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
