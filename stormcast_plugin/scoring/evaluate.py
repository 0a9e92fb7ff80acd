"""Score a StormCast forecast against a truth: the table, the report and the plots.

:func:`score` is what ``stormcast score FORECAST TRUTH --out DIR`` runs. Per
variable and lead time it computes, over the initial times and the grid:

* RMSE, MAE and bias of the ensemble mean (of the single run when
  deterministic);
* with an ensemble: the fair CRPS, the ensemble spread and the spread/skill
  ratio (see :mod:`stormcast_plugin.statistics`), and a rank histogram;
* for reflectivity (variables in dBZ, e.g. ``refc``): CSI, POD and FAR at
  each threshold (member counts pooled) and the (ensemble) fractions skill
  score per threshold and neighbourhood size;
* the forecast's power over the truth's in wavelength bands, and power
  spectra of forecast and truth at the last lead time verified.

It writes ``scores.csv`` and ``scores.md`` (tables by variable and lead
time, errors in the displayed units of
:func:`stormcast_plugin.plot.style.style_for`, e.g. hPa for ``msl``) and the
plots ``skill_vs_lead.png``, ``spectra.png``, ``rank_histogram.png``
(ensembles) and ``fss.png`` (reflectivity). How the truth is read and
aligned: :mod:`stormcast_plugin.scoring.truth`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from stormcast_plugin import statistics as M
from stormcast_plugin.io.forecast_store import lead_hours, load_lead, open_forecast, open_store
from stormcast_plugin.plot.style import style_for
from stormcast_plugin.scoring.figures import Collected, draw_all
from stormcast_plugin.scoring.report import SPECTRAL_PREFIX, column_order, markdown_report, number_text
from stormcast_plugin.scoring.truth import ScoreError, check_variables, forecast_field, truth_field, truth_source
from stormcast_plugin.statistics import spatial_dims
from stormcast_plugin.statistics.utils import band_edges, check_windows, threshold_coord

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import xarray as xr

__all__ = ["score"]


def _is_reflectivity(name: str, reflectivity: Sequence[str] | None) -> bool:
    if reflectivity is not None:
        return name in reflectivity
    return style_for(name)["units"] == "dBZ"


def _score_variable(var: str, fda: "xr.DataArray", ens: str | None, tda: "xr.DataArray", *,
                    thresholds: np.ndarray, windows: np.ndarray, reflectivity: bool, seed: int,
                    grid_spacing_km: float, bands_km: np.ndarray, collected: Collected,
                    stores: tuple[str, str]) -> list[dict[str, Any]]:
    style = style_for(var)
    scale, units = style["scale"], style["units"]
    ydim, xdim = spatial_dims(fda)
    dims = ("time", ydim, xdim)
    hours = lead_hours(fda)
    m = fda.sizes[ens] if ens else 0
    rows: list[dict[str, Any]] = []
    rank_counts, rank_leads = [], []
    fss_values, base_rates = [], []
    for j, h in enumerate(hours):
        f = load_lead(fda, j, stores[0]).drop_vars("lead_time").astype(np.float64)
        t = load_lead(tda, j, stores[1]).drop_vars("lead_time").astype(np.float64)
        fm = f.mean(ens) if ens else f
        verified = int((t.notnull() & fm.notnull()).sum())
        row: dict[str, Any] = {"variable": var, "units": units, "lead_time_h": float(h), "n_points": verified}
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
                    row[f"{score_name}_{number_text(thr)}"] = float(cat[score_name].isel(threshold=k))
            values = M.fss(f, t, thresholds, windows, dims, spatial=(ydim, xdim), ensemble_dim=ens)
            for k, thr in enumerate(thresholds):
                for w, win in enumerate(windows):
                    row[f"fss_{number_text(thr)}_w{int(win)}"] = float(values.isel(threshold=k, window=w))
            fss_values.append(values.values)
            base_rates.append(cat["base_rate"].values)
        ratios = M.spectral_band_ratio(f, t, (ydim, xdim), edges_km=bands_km, mean_dims=[d for d in (ens, "time") if d],
                                       grid_spacing_km=grid_spacing_km)
        for band, value in zip(ratios["band"].values, ratios.values):
            row[f"{SPECTRAL_PREFIX}{band}"] = float(value)
        if verified:  # the plot shows the spectra of the last lead time verified
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
    spectral_bands_km: Sequence[float] = M.DEFAULT_SPECTRAL_BANDS_KM,
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
    spectral_bands_km : sequence of float, optional
        Wavelength band edges in km for the spectral power ratios (default
        15 and 60 km: below 15, 15 to 60, 60 and above).
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
        per threshold T and ``fss_T_wN`` per threshold and window N; then
        ``spectral_ratio_<band>`` per wavelength band (forecast over truth
        power, members and initial times averaged; bands named as
        ``lt15km``, ``15_60km``, ``ge60km``). Scores that do not apply, and
        lead times without a verified point, are NaN.
        ``DataFrame.attrs["files"]`` lists the files written.

    Warns
    -----
    PartialForecastWarning
        For a forecast whose run stopped early: the lead hours it never
        completed are missing (NaN rows).

    Raises
    ------
    ScoreError
        For variables missing from the forecast or the truth (named), a
        truth on another grid, a truth without any of the forecast's times
        (both ranges named), or bad thresholds/windows/bands.
    ForecastStoreError
        For a damaged store, naming it, the variable and the lead hour.
    """
    import pandas as pd
    import xarray as xr

    try:  # every setting is checked before any store is read
        thr, win, bands = threshold_coord(thresholds), check_windows(windows), band_edges(spectral_bands_km)
    except ValueError as err:
        raise ScoreError(str(err)) from None
    fname = str(forecast) if not isinstance(forecast, xr.Dataset) else "(forecast dataset)"
    where = str(truth) if not isinstance(truth, xr.Dataset) else "dataset"
    fds, tds = open_forecast(forecast, name=fname), open_store(truth)
    names = check_variables(fds, variables)
    for n in names:  # name every missing variable before any work
        truth_source(tds, n, names, where)
    collected = Collected()
    rows: list[dict[str, Any]] = []
    for var in names:
        fda, ens = forecast_field(fds, var)
        tda = truth_field(truth_source(tds, var, names, where), fda, var, where)
        collected.members = max(collected.members, fda.sizes[ens] if ens else 0)
        collected.times = fda.sizes["time"]
        rows += _score_variable(var, fda, ens, tda, thresholds=thr, windows=win,
                                reflectivity=_is_reflectivity(var, reflectivity), seed=seed,
                                grid_spacing_km=grid_spacing_km, bands_km=bands, collected=collected,
                                stores=(fname, where))
    table = pd.DataFrame(rows)
    table = table[[c for c in column_order(table.columns)]]
    files: list[Path] = []
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "scores.csv", index=False, float_format="%.6g")
        (out / "scores.md").write_text(markdown_report(table, forecast, truth, collected, grid_spacing_km))
        files += [out / "scores.csv", out / "scores.md"]
        if plots:
            files += draw_all(table, collected, out, grid_spacing_km)
    table.attrs["files"] = [str(p) for p in files]
    return table
