"""Score a StormCast forecast against a truth: tables and plots.

:func:`score` is what ``stormcast score FORECAST TRUTH --out DIR`` runs. Per
variable and lead time it computes, over the initial times and the grid:

* RMSE, MAE and bias of the ensemble mean (of the single run when
  deterministic);
* with an ensemble: the fair CRPS, the ensemble spread and the spread/skill
  ratio (see :mod:`stormcast_plugin.statistics.metrics`), and a rank histogram;
* for reflectivity (variables in dBZ, e.g. ``refc``): CSI, POD and FAR at
  each threshold (member counts pooled) and the (ensemble) fractions skill
  score per threshold and neighbourhood size;
* power spectra of forecast and truth at the last lead time.

It writes ``scores.csv`` and ``scores.md`` (tables by variable and lead
time, errors in the displayed units of :func:`stormcast_plugin.plot.forecast.style_for`,
e.g. hPa for ``msl``) and the plots ``skill_vs_lead.png``, ``spectra.png``,
``rank_histogram.png`` (ensembles) and ``fss.png`` (reflectivity).

Forecast stores are those ``stormcast forecast`` writes: one variable per
weather variable over ``(ensemble?, time, lead_time, hrrr_y, hrrr_x)``. The
truth is either a store of the same layout (its ``time``/``lead_time`` are
matched, or, without ``lead_time``, its ``time`` is the valid time) or a
StormCast dataset store (``state [time, variable, y, x]``), from which the
valid times ``time + lead_time`` and the variables are picked. The truth
grid may be the forecast grid or a larger one containing it (matched by
projected coordinate values); valid times the truth lacks score as NaN, with
a warning.
"""

from __future__ import annotations

import argparse
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from stormcast_plugin import statistics as M
from stormcast_plugin.io.forecast_store import lead_hours, open_forecast, open_store
from stormcast_plugin.statistics.utils import check_windows, threshold_coord
from stormcast_plugin.utils.coords import ENSEMBLE_DIMS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import xarray as xr
    from matplotlib.figure import Figure

__all__ = [
    "ScoreError",
    "open_store",
    "forecast_variables",
    "align_truth",
    "score",
    "markdown_table",
    "add_score_arguments",
    "score_from_args",
]

DPI = 100
"""Resolution of the score plots."""
PANEL_SIZE = (4.2, 3.2)
"""Width and height of one plot panel in inches."""
MAX_COLUMNS = 3
"""Panels per row."""

_FORECAST_COLOR = "tab:blue"
_TRUTH_COLOR = "black"
_CRPS_COLOR = "tab:orange"
_SPREAD_COLOR = "tab:green"


class ScoreError(ValueError):
    """The forecast or truth cannot be scored (missing variables, other grid...)."""


# --------------------------------------------------------------------------
# Reading and aligning
# --------------------------------------------------------------------------

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
        if str(name) in ("lat", "lon", "latitude", "longitude") or "lead_time" not in da.dims:
            continue
        if da.ndim >= 3 and not {"lead_time", "time", *ENSEMBLE_DIMS} & set(da.dims[-2:]):
            out.append(str(name))
    return out


def _forecast_field(ds: "xr.Dataset", name: str) -> tuple["xr.DataArray", str | None]:
    """``(DataArray (ensemble?, time, lead_time, y, x), ensemble dim)``."""
    da = ds[name]
    if "time" not in da.dims:
        da = da.expand_dims("time") if "time" not in da.coords else da.expand_dims(time=[da["time"].values])
    ydim, xdim = M.spatial_dims(da)
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
        idx = np.abs(tvals[None, :] - fvals[:, None]).argmin(axis=1)
        if np.all(np.abs(tvals[idx] - fvals) <= tol):
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
    fy, fx = M.spatial_dims(fda)
    ty, tx = M.spatial_dims(src)
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


def _truth_field(src: "xr.DataArray", fda: "xr.DataArray", name: str, where: str) -> "xr.DataArray":
    """The truth of ``name`` as a DataArray (time, lead_time, y, x) on the forecast's coordinates."""
    import xarray as xr

    for d in [d for d in src.dims if d in ENSEMBLE_DIMS]:
        if src.sizes[d] != 1:
            raise ScoreError(f"the truth ({where}) has {src.sizes[d]} {d!r} members for {name!r}; give a single "
                             "verifying field (select one member or the analysis)")
        src = src.isel({d: 0}, drop=True)
    if "time" not in src.dims:
        raise ScoreError(f"the truth ({where}) variable {name!r} has no 'time' dimension (dims {src.dims})")
    src = _align_space(src, fda)
    ydim, xdim = M.spatial_dims(fda)
    times = np.asarray(fda["time"].values)
    leads = np.asarray(fda["lead_time"].values)
    have = np.asarray(src["time"].values)
    if "lead_time" in src.dims:
        _missing_warning(name, "initial times", times[~np.isin(times, have)], times.size, where)
        tl = np.asarray(src["lead_time"].values)
        _missing_warning(name, "lead times", leads[~np.isin(leads, tl)], leads.size, where)
        out = src.reindex(time=times, lead_time=leads)
    else:
        if not (np.issubdtype(times.dtype, np.datetime64) and np.issubdtype(leads.dtype, np.timedelta64)):
            raise ScoreError(f"cannot form valid times from forecast time {times.dtype} and lead_time "
                             f"{leads.dtype}; expected datetime64 and timedelta64 coordinates")
        valid = times[:, None] + leads[None, :]
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
        Naming variables missing from the forecast or the truth, or a grid
        that does not match.
    """
    import xarray as xr

    fds, tds = open_forecast(forecast), open_store(truth)
    names = _check_variables(fds, variables)
    where = str(truth) if not isinstance(truth, xr.Dataset) else "dataset"
    return xr.Dataset({n: _truth_field(_truth_source(tds, n, names, where), _forecast_field(fds, n)[0], n, where)
                       for n in names})


def _check_variables(fds: "xr.Dataset", variables: Sequence[str] | str | None) -> list[str]:
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
    return [str(v) for v in tds.data_vars if str(v) not in ("lat", "lon", "latitude", "longitude")]


def _truth_source(tds: "xr.Dataset", name: str, wanted: Sequence[str], where: str) -> "xr.DataArray":
    have = _truth_names(tds)
    lacking = [v for v in wanted if v not in have]
    if lacking:
        kind = "dataset store" if _is_dataset_store(tds) else "store"
        raise ScoreError(f"the truth {kind} ({where}) lacks variables {lacking}; it has {have}. Score a subset "
                         "with --variables (variables=) or use a truth with these variables")
    if _is_dataset_store(tds):
        return tds["state"].sel(variable=name, drop=True)
    return tds[name]


# --------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------

def _num(value: float) -> str:
    """``20`` for 20.0, ``2.5`` for 2.5 (column names and labels)."""
    return f"{value:g}"


def _is_reflectivity(name: str, reflectivity: Sequence[str] | None) -> bool:
    if reflectivity is not None:
        return name in reflectivity
    from stormcast_plugin.plot.style import style_for

    return style_for(name)["units"] == "dBZ"


class _Collected:
    """Per-variable data the plots need besides the table."""

    def __init__(self) -> None:
        self.spectra: dict[str, dict[str, Any]] = {}
        self.ranks: dict[str, dict[str, Any]] = {}
        self.fss: dict[str, dict[str, Any]] = {}
        self.members = 0
        self.times = 0


def _score_variable(var: str, fda: "xr.DataArray", ens: str | None, tda: "xr.DataArray", *,
                    thresholds: np.ndarray, windows: np.ndarray, reflectivity: bool, seed: int,
                    grid_spacing_km: float, collected: _Collected) -> list[dict[str, Any]]:
    from stormcast_plugin.plot.style import style_for

    style = style_for(var)
    scale, units = style["scale"], style["units"]
    ydim, xdim = M.spatial_dims(fda)
    dims = ("time", ydim, xdim)
    hours = lead_hours(fda)
    m = fda.sizes[ens] if ens else 0
    rows: list[dict[str, Any]] = []
    rank_counts, rank_leads = [], []
    fss_values, base_rates = [], []
    for j, h in enumerate(hours):
        f = fda.isel(lead_time=j, drop=True).astype(np.float64).load()
        t = tda.isel(lead_time=j, drop=True).astype(np.float64).load()
        fm = f.mean(ens) if ens else f
        row: dict[str, Any] = {"variable": var, "units": units, "lead_time_h": float(h),
                               "n_points": int(t.notnull().sum())}
        row["rmse"] = float(M.rmse(fm, t, dims)) * scale
        row["mae"] = float(M.mae(fm, t, dims)) * scale
        row["bias"] = float(M.bias(fm, t, dims)) * scale
        if ens:
            row["crps"] = float(M.crps_ensemble(f, t, dims, ensemble_dim=ens)) * scale
            if m >= 2:
                parts = M.spread_skill_ratio(f, t, dims, ensemble_dim=ens, components=True)
                row["spread"] = float(parts["spread"]) * scale
                row["spread_skill"] = float(parts["ratio"])
                rank_counts.append(M.rank_histogram(f, t, dims, ensemble_dim=ens, seed=seed + j).values)
                rank_leads.append(float(h))
        if reflectivity:
            cat_dims = dims + ((ens,) if ens else ())
            cat = M.categorical_scores(f, t, thresholds, cat_dims)
            for k, thr in enumerate(thresholds):
                for score_name in ("csi", "pod", "far"):
                    row[f"{score_name}_{_num(thr)}"] = float(cat[score_name].isel(threshold=k))
            values = M.fss(f, t, thresholds, windows, dims, spatial=(ydim, xdim), ensemble_dim=ens)
            for k, thr in enumerate(thresholds):
                for w, win in enumerate(windows):
                    row[f"fss_{_num(thr)}_w{int(win)}"] = float(values.isel(threshold=k, window=w))
            fss_values.append(values.values)
            base_rates.append(cat["base_rate"].values)
        if j == len(hours) - 1:
            pf = M.radial_power_spectrum(f, (ydim, xdim), grid_spacing_km=grid_spacing_km)
            pt = M.radial_power_spectrum(t, (ydim, xdim), grid_spacing_km=grid_spacing_km)
            pf_mean = pf.mean([d for d in pf.dims if d != "wavenumber"])
            pt_mean = pt.mean([d for d in pt.dims if d != "wavenumber"])
            collected.spectra[var] = dict(
                wavelength=np.asarray(pf["wavelength_km"].values), forecast=pf_mean.values * scale ** 2,
                truth=pt_mean.values * scale ** 2, lead=float(h), units=units, members=m)
        rows.append(row)
    if rank_counts:
        # Lead 0 copies the initial state into every member: pool the later leads when there are some.
        use = [i for i, h in enumerate(rank_leads) if h > 0] or list(range(len(rank_leads)))
        collected.ranks[var] = dict(counts=np.sum([rank_counts[i] for i in use], axis=0),
                                    leads=[rank_leads[i] for i in use], members=m)
    if fss_values:
        collected.fss[var] = dict(values=np.stack(fss_values), base_rate=np.stack(base_rates),
                                  leads=[float(h) for h in hours], thresholds=thresholds, windows=windows)
    return rows


def score(
    forecast: Any,
    truth: Any,
    *,
    variables: Sequence[str] | str | None = None,
    out_dir: str | Path | None = None,
    thresholds: Sequence[float] = M.DEFAULT_THRESHOLDS,
    windows: Sequence[int] = M.DEFAULT_WINDOWS,
    reflectivity: Sequence[str] | None = None,
    grid_spacing_km: float = M.HRRR_SPACING_KM,
    seed: int = 0,
    plots: bool = True,
) -> "pd.DataFrame":
    """Score a forecast against a truth, per variable and lead time.

    Parameters
    ----------
    forecast : str, Path or xarray.Dataset
        Forecast store (``.zarr`` or ``.nc``) as ``stormcast forecast`` writes.
    truth : str, Path or xarray.Dataset
        A store of the same layout or a StormCast dataset store.
    variables : sequence of str or comma-separated str, optional
        Variables to score, in that order; default every forecast variable
        (alphabetical). All must be in the truth.
    out_dir : str or Path, optional
        Folder for ``scores.csv``, ``scores.md`` and the plots (created);
        None writes nothing.
    thresholds : sequence of float, optional
        Reflectivity thresholds in dBZ for CSI/POD/FAR/FSS.
    windows : sequence of int, optional
        Odd FSS neighbourhood sizes in grid points.
    reflectivity : sequence of str, optional
        Variables scored as reflectivity; default those in dBZ (``refc``).
    grid_spacing_km : float, optional
        Grid spacing for the spectra's wavelengths and the FSS window labels.
    seed : int, optional
        Seed for the rank histogram's tie breaking.
    plots : bool, optional
        Draw the PNG plots (with ``out_dir``).

    Returns
    -------
    pandas.DataFrame
        One row per variable and lead time: ``variable``, ``units``,
        ``lead_time_h``, ``n_points`` (verified grid points), ``rmse``,
        ``mae``, ``bias`` (ensemble mean, displayed units), then with an
        ensemble ``crps`` and (two members or more) ``spread``,
        ``spread_skill``; for reflectivity ``csi_T``, ``pod_T``, ``far_T``
        per threshold T and ``fss_T_wN`` per threshold and window N. Scores
        that do not apply are NaN. ``DataFrame.attrs["files"]`` lists the
        files written.

    Raises
    ------
    ScoreError
        For variables missing from the forecast or the truth (named), a
        truth on another grid, or bad thresholds/windows.
    """
    import pandas as pd
    import xarray as xr

    thr = threshold_coord(thresholds)
    win = check_windows(windows)
    fds, tds = open_forecast(forecast), open_store(truth)
    names = _check_variables(fds, variables)
    where = str(truth) if not isinstance(truth, xr.Dataset) else "dataset"
    for n in names:  # name every missing variable before any work
        _truth_source(tds, n, names, where)
    collected = _Collected()
    rows: list[dict[str, Any]] = []
    for var in names:
        fda, ens = _forecast_field(fds, var)
        tda = _truth_field(_truth_source(tds, var, names, where), fda, var, where)
        collected.members = max(collected.members, fda.sizes[ens] if ens else 0)
        collected.times = fda.sizes["time"]
        rows += _score_variable(var, fda, ens, tda, thresholds=thr, windows=win,
                                reflectivity=_is_reflectivity(var, reflectivity), seed=seed,
                                grid_spacing_km=grid_spacing_km, collected=collected)
    table = pd.DataFrame(rows)
    table = table[[c for c in _column_order(table.columns)]]
    files: list[Path] = []
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "scores.csv", index=False, float_format="%.6g")
        (out / "scores.md").write_text(_markdown_report(table, forecast, truth, collected, grid_spacing_km))
        files += [out / "scores.csv", out / "scores.md"]
        if plots:
            files += _draw_all(table, collected, out, grid_spacing_km)
    table.attrs["files"] = [str(p) for p in files]
    return table


def _column_order(columns: Sequence[str]) -> list[str]:
    head = ["variable", "units", "lead_time_h", "n_points", "rmse", "mae", "bias", "crps", "spread",
            "spread_skill"]
    cols = [c for c in head if c in columns]
    cat = [c for c in columns if c.split("_")[0] in ("csi", "pod", "far") and c not in cols]
    fss_cols = [c for c in columns if c.startswith("fss_")]
    return cols + cat + fss_cols + [c for c in columns if c not in cols + cat + fss_cols]


# --------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------

def _cell(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "n/a" if not np.isfinite(value) else f"{value:.4g}"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value).replace("|", "\\|")


def markdown_table(table: "pd.DataFrame", columns: Sequence[str] | None = None,
                   headers: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured markdown table (no ``tabulate`` needed).

    Parameters
    ----------
    table : pandas.DataFrame
        The rows to show.
    columns : sequence of str, optional
        Columns to show, in order (default all).
    headers : sequence of str, optional
        Header texts (default the column names).

    Returns
    -------
    str
        The table; floats with 4 significant digits, NaN as ``n/a``.
    """
    columns = list(table.columns) if columns is None else list(columns)
    headers = list(columns) if headers is None else list(headers)
    if len(headers) != len(columns):
        raise ValueError(f"{len(headers)} headers for {len(columns)} columns; give one header per column")
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if c in ("variable", "units") else "---:" for c in columns) + "|"]
    for _, row in table[columns].iterrows():
        lines.append("| " + " | ".join(_cell(row[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _markdown_report(table: "pd.DataFrame", forecast: Any, truth: Any, collected: _Collected,
                     spacing: float) -> str:
    import pandas as pd

    src = lambda x: str(x) if isinstance(x, (str, Path)) else "(in memory)"  # noqa: E731
    members = f"{collected.members} members" if collected.members else "deterministic"
    parts = ["# StormCast scores", "",
             f"Forecast `{src(forecast)}` ({members}, {collected.times} initial time(s)) against truth "
             f"`{src(truth)}`. Errors in the units shown; RMSE, MAE and bias of the ensemble mean; CRPS is "
             "the fair CRPS; spread/skill uses the (m+1)/m-corrected spread.", "",
             "## Scores by variable and lead time", ""]
    labels = {"variable": "variable", "units": "units", "lead_time_h": "lead (h)", "n_points": "points",
              "rmse": "RMSE", "mae": "MAE", "bias": "bias", "crps": "CRPS", "spread": "spread",
              "spread_skill": "spread/skill"}
    cols = [c for c in labels if c in table.columns]
    parts.append(markdown_table(table, cols, [labels[c] for c in cols]))
    cat = [c for c in table.columns if c.split("_")[0] in ("csi", "pod", "far")]
    refl = table[table[cat].notna().any(axis=1)] if cat else table.iloc[0:0]
    if len(refl):
        parts += ["## Reflectivity: CSI, POD, FAR (events >= threshold, members pooled)", ""]
        heads = [f"{c.split('_')[0].upper()} {c.split('_', 1)[1]} dBZ" for c in cat]
        parts.append(markdown_table(refl, ["variable", "lead_time_h"] + cat, ["variable", "lead (h)"] + heads))
        fss_cols = [c for c in table.columns if c.startswith("fss_")]
        long = []
        for _, row in refl.iterrows():
            by_thr: dict[str, dict[str, Any]] = {}
            for c in fss_cols:
                _, thr, win = c.split("_")
                by_thr.setdefault(thr, {"variable": row["variable"], "lead_time_h": row["lead_time_h"],
                                        "threshold": thr})[win] = row[c]
            long += list(by_thr.values())
        if long:
            frame = pd.DataFrame(long)
            wins = [c for c in frame.columns if c.startswith("w")]
            heads = [f"FSS {w[1:]} pt ({_num(int(w[1:]) * spacing)} km)" for w in wins]
            parts += ["## Fractions skill score (NaN when neither side has events)", ""]
            parts.append(markdown_table(frame, ["variable", "lead_time_h", "threshold"] + wins,
                                        ["variable", "lead (h)", "threshold (dBZ)"] + heads))
    return "\n".join(parts)


# --------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------

def _grid(n: int) -> tuple[int, int]:
    ncols = max(1, min(MAX_COLUMNS, n))
    return math.ceil(n / ncols), ncols


def _figure(nrows: int, ncols: int, extra_height: float = 0.5) -> "Figure":
    from stormcast_plugin.plot.maps import new_figure

    w, h = PANEL_SIZE
    return new_figure((w * ncols, h * nrows + extra_height), dpi=DPI)


def _head(name: str) -> tuple[str, str]:
    from stormcast_plugin.plot.style import style_for

    style = style_for(name)
    return str(style["long_name"]), str(style["units"])


def _lead_axis(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("lead time (h)")
    ax.grid(True, linewidth=0.3, color="0.7")


def _plot_skill(table: "pd.DataFrame", path: Path) -> Path:
    names = list(dict.fromkeys(table["variable"]))
    nrows, ncols = _grid(len(names))
    fig = _figure(nrows, ncols)
    for k, var in enumerate(names):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        rows = table[table["variable"] == var]
        long_name, units = _head(var)
        lead = rows["lead_time_h"].to_numpy()
        ax.plot(lead, rows["rmse"], "o-", color=_FORECAST_COLOR, label="RMSE (ensemble mean)")
        if "crps" in rows and rows["crps"].notna().any():
            ax.plot(lead, rows["crps"], "s--", color=_CRPS_COLOR, label="CRPS (fair)")
        if "spread" in rows and rows["spread"].notna().any():
            ax.plot(lead, rows["spread"], "^:", color=_SPREAD_COLOR, label="ensemble spread")
        ax.set_title(f"{long_name} ({var})", fontsize=10)
        ax.set_ylabel(f"error ({units})" if units else "error")
        ax.set_ylim(bottom=0)
        _lead_axis(ax)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Skill against lead time (lower is better)", fontsize=11)
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def _wavelength_axis(ax: Any, lam: np.ndarray) -> None:
    """Log wavelength axis, large scales on the left, ticks as plain km values."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, StrMethodFormatter

    lo, hi = float(np.nanmin(lam)), float(np.nanmax(lam))
    nice = [v * 10.0 ** e for e in range(-1, 5) for v in (1, 2, 5)]
    ticks = [v for v in nice if lo * 0.999 <= v <= hi * 1.001] or [lo, hi]
    ax.set_xscale("log")
    ax.set_xlim(hi * 1.05, lo / 1.05)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _plot_spectra(collected: _Collected, path: Path) -> Path:
    from matplotlib.ticker import NullLocator

    from stormcast_plugin.plot.maps import new_figure

    names = list(collected.spectra)
    nrows, ncols = _grid(len(names))
    w, h = PANEL_SIZE
    fig = new_figure((w * ncols, 1.5 * h * nrows + 0.5), dpi=DPI)
    grid = fig.add_gridspec(2 * nrows, ncols, height_ratios=[2, 1] * nrows)
    for k, var in enumerate(names):
        spec = collected.spectra[var]
        r, c = divmod(k, ncols)
        ax = fig.add_subplot(grid[2 * r, c])
        axr = fig.add_subplot(grid[2 * r + 1, c], sharex=ax)
        long_name, units = _head(var)
        lam = spec["wavelength"]
        positive = lambda a: np.where(np.asarray(a) > 0, a, np.nan)  # noqa: E731 (log axes)
        label = "forecast (mean of member spectra)" if spec["members"] else "forecast"
        ax.plot(lam, positive(spec["truth"]), "-", color=_TRUTH_COLOR, label="truth")
        ax.plot(lam, positive(spec["forecast"]), "-", color=_FORECAST_COLOR, label=label)
        ax.set_yscale("log")
        ax.yaxis.set_minor_locator(NullLocator())
        _wavelength_axis(ax, lam)
        ax.set_ylabel(f"power ({units})$^2$" if units and units != "1" else "power")
        ax.set_title(f"{long_name} ({var}), lead +{spec['lead']:g} h", fontsize=10)
        ax.grid(True, linewidth=0.3, color="0.8")
        ax.legend(fontsize=8)
        ax.tick_params(labelbottom=False)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = positive(spec["forecast"] / positive(spec["truth"]))
        axr.plot(lam, ratio, "-", color=_FORECAST_COLOR)
        axr.axhline(1.0, color=_TRUTH_COLOR, linewidth=0.8, linestyle="--")
        if np.isfinite(ratio).any():
            axr.set_yscale("log")
            axr.yaxis.set_minor_locator(NullLocator())
        axr.set_ylabel("forecast / truth")
        axr.set_xlabel("wavelength (km)")
        axr.grid(True, linewidth=0.3, color="0.8")
    fig.suptitle("Radially averaged power spectra (ratio 1: right variance at that scale)", fontsize=11)
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def _plot_ranks(collected: _Collected, path: Path) -> Path:
    names = list(collected.ranks)
    nrows, ncols = _grid(len(names))
    fig = _figure(nrows, ncols)
    for k, var in enumerate(names):
        info = collected.ranks[var]
        ax = fig.add_subplot(nrows, ncols, k + 1)
        counts = np.asarray(info["counts"], dtype=np.float64)
        total = counts.sum()
        freq = counts / total if total else counts
        m = int(info["members"])
        ax.bar(np.arange(m + 1), freq, width=0.85, color=_FORECAST_COLOR, edgecolor="white")
        ax.axhline(1.0 / (m + 1), color=_TRUTH_COLOR, linestyle="--", linewidth=1, label="calibrated")
        leads = info["leads"]
        span = f"+{leads[0]:g} h" if len(leads) == 1 else f"+{leads[0]:g} .. +{leads[-1]:g} h"
        long_name, _ = _head(var)
        ax.set_title(f"{long_name} ({var})\nleads {span}, {int(total)} points", fontsize=10)
        ax.set_xlabel(f"rank of the truth among {m} members")
        ax.set_ylabel("relative frequency (fraction)")
        ax.set_xticks(np.arange(m + 1))
        ax.legend(fontsize=8)
    fig.suptitle("Rank histograms (flat: calibrated; U: under-dispersive; dome: over-dispersive)", fontsize=11)
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def _plot_fss(collected: _Collected, path: Path, spacing: float) -> Path:
    import matplotlib

    panels = [(var, k) for var in collected.fss for k in range(len(collected.fss[var]["thresholds"]))]
    nrows, ncols = _grid(len(panels))
    fig = _figure(nrows, ncols)
    cmap = matplotlib.colormaps["viridis"]
    for p, (var, k) in enumerate(panels):
        info = collected.fss[var]
        ax = fig.add_subplot(nrows, ncols, p + 1)
        leads = np.asarray(info["leads"])
        wins = info["windows"]
        for w, win in enumerate(wins):
            color = cmap(0.1 + 0.8 * w / max(len(wins) - 1, 1))
            ax.plot(leads, info["values"][:, k, w], "o-", color=color,
                    label=f"{int(win)} pt ({_num(int(win) * spacing)} km)")
        base = info["base_rate"][:, k]
        ax.plot(leads, 0.5 + base / 2.0, "--", color="0.4", linewidth=1, label="useful (0.5 + f0/2)")
        long_name, units = _head(var)
        ax.set_title(f"{long_name} ({var}) >= {_num(info['thresholds'][k])} {units}", fontsize=10)
        ax.set_ylabel("FSS (dimensionless)")
        ax.set_ylim(0, 1.02)
        _lead_axis(ax)
        ax.legend(fontsize=7, title="neighbourhood", title_fontsize=7)
    fig.suptitle("Fractions skill score (higher is better)", fontsize=11)
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def _draw_all(table: "pd.DataFrame", collected: _Collected, out: Path, spacing: float) -> list[Path]:
    paths = [_plot_skill(table, out / "skill_vs_lead.png"), _plot_spectra(collected, out / "spectra.png")]
    if collected.ranks:
        paths.append(_plot_ranks(collected, out / "rank_histogram.png"))
    if collected.fss:
        paths.append(_plot_fss(collected, out / "fss.png", spacing))
    return paths


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

def add_score_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``stormcast score`` arguments to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The (sub)parser to fill.

    Returns
    -------
    argparse.ArgumentParser
        The same parser.
    """
    parser.add_argument("forecast", help="forecast store (.zarr or .nc) written by `stormcast forecast`")
    parser.add_argument("truth", help="truth: a store of the same layout, or a StormCast dataset store")
    parser.add_argument("--out", default=None, help="output folder (default: FORECAST_scores)")
    parser.add_argument("--variables", default=None, help="comma-separated variables (default: all)")
    parser.add_argument("--thresholds", default=",".join(_num(t) for t in M.DEFAULT_THRESHOLDS),
                        help="reflectivity thresholds in dBZ (default %(default)s)")
    parser.add_argument("--windows", default=",".join(str(w) for w in M.DEFAULT_WINDOWS),
                        help="odd FSS neighbourhood sizes in grid points (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="rank-histogram tie-breaking seed (default 0)")
    parser.add_argument("--no-plots", action="store_true", help="write the tables only")
    return parser


def _number_list(text: str, option: str, kind: type) -> list[Any]:
    try:
        values = [kind(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{option} {text!r} is not a comma-separated list of "
                         f"{'integers' if kind is int else 'numbers'}, e.g. "
                         f"{'1,9,25' if kind is int else '20,30,40'}") from None
    if not values:
        raise ValueError(f"{option} is empty; give at least one value")
    return values


def score_from_args(args: argparse.Namespace) -> int:
    """Run ``stormcast score`` from parsed arguments.

    Parameters
    ----------
    args : argparse.Namespace
        From a parser filled by :func:`add_score_arguments`.

    Returns
    -------
    int
        0 on success (errors raise ``ValueError``/``FileNotFoundError`` with
        a message for the command line to print).
    """
    import sys

    out = Path(args.out) if args.out else Path(str(Path(args.forecast)).rstrip("/") + "_scores")
    table = score(args.forecast, args.truth, variables=args.variables, out_dir=out,
                  thresholds=_number_list(args.thresholds, "--thresholds", float),
                  windows=_number_list(args.windows, "--windows", int), seed=args.seed,
                  plots=not args.no_plots)
    cols = [c for c in ("variable", "lead_time_h", "rmse", "crps", "spread_skill") if c in table.columns]
    print(markdown_table(table, cols), end="")
    print(f"wrote {len(table.attrs['files'])} files to {out}", file=sys.stderr)
    return 0
