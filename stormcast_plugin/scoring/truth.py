"""Reading the truth and aligning it with a forecast, for scoring.

Forecast stores are those ``stormcast forecast`` writes: one variable per
weather variable over ``(ensemble?, time, lead_time, hrrr_y, hrrr_x)``. The
truth is either a store of the same layout (its ``time``/``lead_time`` are
matched, or, without ``lead_time``, its ``time`` is the valid time) or a
StormCast dataset store (``state [time, variable, y, x]``), from which the
valid times ``time + lead_time`` and the variables are picked. The truth
grid may be the forecast grid or a larger one containing it (matched by
projected coordinate values with :func:`stormcast_plugin.utils.coords.match_values`);
valid times the truth lacks score as NaN, with a warning, and a truth that
has none of the forecast's valid times is refused.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from stormcast_plugin.io.forecast_store import open_forecast, open_store
from stormcast_plugin.statistics import spatial_dims
from stormcast_plugin.utils.coords import ENSEMBLE_DIMS, LAT_NAMES, LON_NAMES, match_values

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = [
    "ScoreError",
    "align_truth",
    "check_variables",
    "forecast_field",
    "forecast_variables",
    "truth_field",
    "truth_source",
]

_LATLON_NAMES = LAT_NAMES + LON_NAMES


class ScoreError(ValueError):
    """The forecast or truth cannot be scored (missing variables, other grid, no common time...)."""


def _is_dataset_store(ds: "xr.Dataset") -> bool:
    return "state" in ds.data_vars and "variable" in ds["state"].dims and "time" in ds["state"].dims


def forecast_variables(ds: "xr.Dataset") -> list[str]:
    """Variables of a forecast store that can be scored.

    Parameters
    ----------
    ds : xarray.Dataset
        A forecast store.

    Returns
    -------
    list of str
        Data variables with a ``lead_time`` dimension and two spatial ones
        (``lat``/``lon`` fields are left out).
    """
    out = []
    for name, da in ds.data_vars.items():
        if str(name) in _LATLON_NAMES or "lead_time" not in da.dims:
            continue
        if da.ndim >= 3 and not {"lead_time", "time", *ENSEMBLE_DIMS} & set(da.dims[-2:]):
            out.append(str(name))
    return out


def forecast_field(ds: "xr.Dataset", name: str) -> tuple["xr.DataArray", str | None]:
    """A forecast variable in the order the scores expect.

    Parameters
    ----------
    ds : xarray.Dataset
        The forecast store.
    name : str
        One of :func:`forecast_variables`.

    Returns
    -------
    (xarray.DataArray, str or None)
        The variable over ``(ensemble?, time, lead_time, y, x)`` and its
        ensemble dimension (None when deterministic).

    Raises
    ------
    ScoreError
        For an extra dimension longer than 1.
    """
    da = ds[name]
    if "time" not in da.dims:
        da = da.expand_dims("time") if "time" not in da.coords else da.expand_dims(time=[da["time"].values])
    ydim, xdim = spatial_dims(da)
    ens = next((d for d in ENSEMBLE_DIMS if d in da.dims), None)
    core = [d for d in (ens, "time", "lead_time", ydim, xdim) if d is not None]
    extra = [d for d in da.dims if d not in core]
    for d in extra:
        if da.sizes[d] != 1:
            raise ScoreError(f"forecast variable {name!r} has an extra dimension {d!r} of size {da.sizes[d]}; "
                             f"expected dims (ensemble?, time, lead_time, y, x)")
    da = da.isel({d: 0 for d in extra}, drop=True).transpose(*core)
    return da, ens


def _axis_values(da: "xr.DataArray", dim: str) -> np.ndarray | None:
    if dim in da.coords and np.issubdtype(da[dim].dtype, np.number):
        return np.asarray(da[dim].values, dtype=np.float64)
    return None


def _is_index(values: np.ndarray | None) -> bool:
    return values is None or np.array_equal(values, np.arange(values.size))


def _match_axis(fname: str, fvals: np.ndarray | None, nf: int, tname: str, tvals: np.ndarray | None,
                nt: int) -> np.ndarray:
    """Indices into the truth axis for each forecast point along one axis."""
    if fvals is not None and tvals is not None:
        spacing = float(np.median(np.abs(np.diff(fvals)))) if nf > 1 else 1.0
        tol = max(1e-6, 1e-3 * spacing)
        idx = match_values(tvals, fvals, tol)
        if idx is not None:
            return idx
        if nf == nt and (_is_index(fvals) or _is_index(tvals)):
            warnings.warn(f"forecast {fname!r} and truth {tname!r} coordinates differ but one is a plain "
                          "index; matching the grids by position", stacklevel=4)
            return np.arange(nf)
        raise ScoreError(
            f"the truth's {tname!r} coordinates ({tvals[0]:.6g} .. {tvals[-1]:.6g}, {nt} points) do not "
            f"contain the forecast's {fname!r} ({fvals[0]:.6g} .. {fvals[-1]:.6g}, {nf} points); give a "
            "truth on the forecast grid (or on a grid containing it)")
    if nf == nt:
        return np.arange(nf)
    raise ScoreError(f"the forecast has {nf} points along {fname!r} and the truth {nt} along {tname!r}, "
                     "without coordinates to match them; give a truth on the forecast grid")


def _align_space(src: "xr.DataArray", fda: "xr.DataArray") -> "xr.DataArray":
    fy, fx = spatial_dims(fda)
    ty, tx = spatial_dims(src)
    iy = _match_axis(fy, _axis_values(fda, fy), fda.sizes[fy], ty, _axis_values(src, ty), src.sizes[ty])
    ix = _match_axis(fx, _axis_values(fda, fx), fda.sizes[fx], tx, _axis_values(src, tx), src.sizes[tx])
    out = src.isel({ty: iy, tx: ix})
    out = out.drop_vars([c for c in out.coords if set(out[c].dims) & {ty, tx}])
    out = out.rename({ty: fy, tx: fx}) if (ty, tx) != (fy, fx) else out
    return out.assign_coords({d: fda[d] for d in (fy, fx) if d in fda.coords})


def _missing_warning(name: str, what: str, values: np.ndarray, total: int, where: str) -> None:
    if values.size:
        shown = ", ".join(str(np.datetime64(v, "m")) if np.issubdtype(np.asarray(v).dtype, np.datetime64)
                          else str(v) for v in values[:5])
        more = f" and {values.size - 5} more" if values.size > 5 else ""
        warnings.warn(f"the truth ({where}) has no {name!r} for {values.size} of {total} {what}: {shown}{more}; "
                      "these score as NaN", stacklevel=4)


def _span(values: np.ndarray) -> str:
    v = np.unique(np.asarray(values).ravel())
    if v.size == 0:
        return "no times"
    text = [str(np.datetime64(x, "m")) if np.issubdtype(v.dtype, np.datetime64) else str(x) for x in (v[0], v[-1])]
    return f"{text[0]} to {text[1]} ({v.size} times)"


def _no_overlap(name: str, what: str, wanted: np.ndarray, have: np.ndarray, where: str) -> ScoreError:
    return ScoreError(f"the truth ({where}) has {name!r} at none of the forecast's {what}: the forecast's {what} "
                      f"run from {_span(wanted)}, the truth's times from {_span(have)}. Give a truth that covers "
                      "the forecast's period")


def truth_field(src: "xr.DataArray", fda: "xr.DataArray", name: str, where: str) -> "xr.DataArray":
    """The truth of ``name`` on the forecast's times, lead times and grid.

    Parameters
    ----------
    src : xarray.DataArray
        The truth variable (from :func:`truth_source`).
    fda : xarray.DataArray
        The forecast variable (from :func:`forecast_field`).
    name : str
        The variable name, for messages.
    where : str
        The truth's name, for messages.

    Returns
    -------
    xarray.DataArray
        Lazy, over ``(time, lead_time, y, x)`` with the forecast's
        coordinates; NaN (with a warning) where the truth has no data.

    Raises
    ------
    ScoreError
        For a truth with several members, another grid, or none of the
        forecast's times (both ranges named).
    """
    import xarray as xr

    for d in [d for d in src.dims if d in ENSEMBLE_DIMS]:
        if src.sizes[d] != 1:
            raise ScoreError(f"the truth ({where}) has {src.sizes[d]} {d!r} members for {name!r}; give a single "
                             "verifying field (select one member or the analysis)")
        src = src.isel({d: 0}, drop=True)
    if "time" not in src.dims:
        raise ScoreError(f"the truth ({where}) variable {name!r} has no 'time' dimension (dims {src.dims})")
    src = _align_space(src, fda)
    ydim, xdim = spatial_dims(fda)
    times = np.asarray(fda["time"].values)
    leads = np.asarray(fda["lead_time"].values)
    have = np.asarray(src["time"].values)
    if "lead_time" in src.dims:
        if not np.isin(times, have).any():
            raise _no_overlap(name, "initial times", times, have, where)
        _missing_warning(name, "initial times", times[~np.isin(times, have)], times.size, where)
        tl = np.asarray(src["lead_time"].values)
        _missing_warning(name, "lead times", leads[~np.isin(leads, tl)], leads.size, where)
        out = src.reindex(time=times, lead_time=leads)
    else:
        if not (np.issubdtype(times.dtype, np.datetime64) and np.issubdtype(leads.dtype, np.timedelta64)):
            raise ScoreError(f"cannot form valid times from forecast time {times.dtype} and lead_time "
                             f"{leads.dtype}; expected datetime64 and timedelta64 coordinates")
        valid = times[:, None] + leads[None, :]
        if not np.isin(valid, have).any():
            raise _no_overlap(name, "valid times", valid, have, where)
        _missing_warning(name, "valid times", np.unique(valid[~np.isin(valid, have)]), valid.size, where)
        parts = [src.reindex(time=valid[:, j]).assign_coords(time=times) for j in range(leads.size)]
        out = xr.concat(parts, dim=xr.DataArray(leads, dims="lead_time", name="lead_time"))
    extra = [d for d in out.dims if d not in ("time", "lead_time", ydim, xdim)]
    for d in extra:
        if out.sizes[d] != 1:
            raise ScoreError(f"the truth ({where}) variable {name!r} has an extra dimension {d!r} of size "
                             f"{out.sizes[d]}")
    out = out.isel({d: 0 for d in extra}, drop=True).transpose("time", "lead_time", ydim, xdim)
    return out.drop_vars([c for c in out.coords if c not in out.dims]).rename(name)


def align_truth(forecast: Any, truth: Any, variables: Sequence[str] | None = None) -> "xr.Dataset":
    """The truth on the forecast's times, lead times and grid.

    Parameters
    ----------
    forecast : str, Path or xarray.Dataset
        A forecast store.
    truth : str, Path or xarray.Dataset
        A forecast-like store or a StormCast dataset store (see the module
        docstring).
    variables : sequence of str, optional
        Variables to take; default all scorable forecast variables.

    Returns
    -------
    xarray.Dataset
        One lazy variable per name over ``(time, lead_time, y, x)`` with the
        forecast's coordinates; NaN where the truth has no data.

    Raises
    ------
    ScoreError
        Naming variables missing from the forecast or the truth, a grid that
        does not match, or a truth without any of the forecast's times
        (with both time ranges).
    """
    import xarray as xr

    fds, tds = open_forecast(forecast), open_store(truth)
    names = check_variables(fds, variables)
    where = str(truth) if not isinstance(truth, xr.Dataset) else "dataset"
    return xr.Dataset({n: truth_field(truth_source(tds, n, names, where), forecast_field(fds, n)[0], n, where)
                       for n in names})


def check_variables(fds: "xr.Dataset", variables: Sequence[str] | str | None) -> list[str]:
    """The variables to score: those asked for (a list or ``"a,b"``), or all, sorted.

    Raises
    ------
    ScoreError
        Naming variables the forecast lacks, or when there is none to score.
    """
    available = forecast_variables(fds)
    if variables is None:
        if not available:
            raise ScoreError("the forecast store holds no variables over (time, lead_time, y, x) to score")
        return sorted(available)
    if isinstance(variables, str):
        variables = [v.strip() for v in variables.split(",") if v.strip()]
    names = list(dict.fromkeys(str(v) for v in variables))
    if not names:
        raise ScoreError("no variables given; pass names such as 'refc,t2m' or leave them out to score all")
    unknown = [v for v in names if v not in available]
    if unknown:
        raise ScoreError(f"the forecast has no variables {unknown}; it has {available}")
    return names


def _truth_names(tds: "xr.Dataset") -> list[str]:
    if _is_dataset_store(tds):
        return [str(v) for v in tds["variable"].values]
    return [str(v) for v in tds.data_vars if str(v) not in _LATLON_NAMES]


def truth_source(tds: "xr.Dataset", name: str, wanted: Sequence[str], where: str) -> "xr.DataArray":
    """The truth's variable ``name`` (from a dataset store's ``state`` or a forecast-like store).

    Raises
    ------
    ScoreError
        Naming every one of ``wanted`` that the truth lacks.
    """
    have = _truth_names(tds)
    lacking = [v for v in wanted if v not in have]
    if lacking:
        kind = "dataset store" if _is_dataset_store(tds) else "store"
        raise ScoreError(f"the truth {kind} ({where}) lacks variables {lacking}; it has {have}. Score a subset "
                         "with --variables (variables=) or use a truth with these variables")
    if _is_dataset_store(tds):
        return tds["state"].sel(variable=name, drop=True)
    return tds[name]
