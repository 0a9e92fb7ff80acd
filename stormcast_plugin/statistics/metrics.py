"""Verification metrics for StormCast forecasts, xarray in and xarray out.

Every function takes ``xarray.DataArray`` objects with named dimensions,
reduces over ``dims`` (by default the two spatial dimensions) and returns an
``xarray.DataArray`` (or ``Dataset``) over the dimensions left.

Deterministic scores
    :func:`rmse`, :func:`mae`, :func:`bias`.
Ensemble scores
    :func:`crps_ensemble` (fair CRPS), :func:`spread_skill_ratio`,
    :func:`rank_histogram`.
Spectra
    :func:`radial_power_spectrum`, :func:`spectral_ratio`.
Reflectivity (events ``value >= threshold``)
    :func:`contingency_table`, :func:`categorical_scores`, :func:`csi`,
    :func:`pod`, :func:`far` and the fractions skill score :func:`fss`.

Conventions
-----------
* Spatial dimensions are found by name (``hrrr_y``/``hrrr_x``, ``y``/``x``,
  ``lat``/``lon``, ``latitude``/``longitude``), otherwise they are the last two
  dimensions of the truth. The ensemble dimension is ``ensemble``, ``member``
  or ``sample`` when the forecast has it and the truth does not.
* Forecast and truth must share the coordinates of their common dimensions
  exactly (an exact ``xarray.align``); nothing is silently dropped.
* NaN marks missing data. The means of the deterministic scores and of the
  CRPS skip it; contingency counts ignore points where either side is NaN;
  spectra and FSS of a field holding NaN are NaN.

``earth2studio.statistics`` has CRPS, rank-histogram and spectral statistics,
but they need ``physicsnemo`` (not a dependency of this plugin) and work on
torch tensors with coordinate dictionaries; its FSS drops the borders of the
domain. The few lines below avoid both the extra dependency and the
conversions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Hashable, Iterable, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = [
    "SPATIAL_DIM_PAIRS",
    "ENSEMBLE_DIMS",
    "DEFAULT_THRESHOLDS",
    "DEFAULT_WINDOWS",
    "HRRR_SPACING_KM",
    "spatial_dims",
    "ensemble_dim_of",
    "rmse",
    "mae",
    "bias",
    "crps_ensemble",
    "spread_skill_ratio",
    "rank_histogram",
    "radial_power_spectrum",
    "spectral_ratio",
    "contingency_table",
    "categorical_scores",
    "csi",
    "pod",
    "far",
    "neighbourhood_fraction",
    "fss",
]

SPATIAL_DIM_PAIRS: tuple[tuple[str, str], ...] = (
    ("hrrr_y", "hrrr_x"), ("y", "x"), ("lat", "lon"), ("latitude", "longitude"),
)
"""Spatial dimension names recognised, in order of preference."""

ENSEMBLE_DIMS: tuple[str, ...] = ("ensemble", "member", "sample")
"""Names recognised as the ensemble dimension."""

DEFAULT_THRESHOLDS: tuple[float, ...] = (20.0, 30.0, 40.0)
"""Reflectivity thresholds in dBZ."""

DEFAULT_WINDOWS: tuple[int, ...] = (1, 9, 25)
"""FSS neighbourhood sizes in grid points (3, 27 and 75 km on the HRRR grid)."""

HRRR_SPACING_KM = 3.0
"""Grid spacing of the HRRR grid in km."""

# --------------------------------------------------------------------------
# Dimension helpers
# --------------------------------------------------------------------------

def spatial_dims(da: "xr.DataArray") -> tuple[str, str]:
    """The ``(y, x)`` dimension names of ``da``.

    Parameters
    ----------
    da : xarray.DataArray
        A field with at least two dimensions.

    Returns
    -------
    tuple of str
        The first pair of :data:`SPATIAL_DIM_PAIRS` present, otherwise the
        last two dimensions.

    Raises
    ------
    ValueError
        If ``da`` has fewer than two dimensions.
    """
    for pair in SPATIAL_DIM_PAIRS:
        if all(d in da.dims for d in pair):
            return pair
    if da.ndim < 2:
        raise ValueError(f"expected a field with two spatial dimensions, got dims {tuple(da.dims)}; "
                         "give a DataArray with (..., y, x) dimensions")
    return str(da.dims[-2]), str(da.dims[-1])


def ensemble_dim_of(forecast: "xr.DataArray", truth: "xr.DataArray | None" = None,
                    ensemble_dim: str | None = None) -> str | None:
    """The ensemble dimension of ``forecast`` (absent from ``truth``), or None.

    Parameters
    ----------
    forecast : xarray.DataArray
        The forecast.
    truth : xarray.DataArray, optional
        The truth; a dimension it also has is not an ensemble dimension.
    ensemble_dim : str, optional
        An explicit name; it must be a dimension of ``forecast``.

    Returns
    -------
    str or None

    Raises
    ------
    ValueError
        If ``ensemble_dim`` is given but is not a forecast dimension, or is
        also a truth dimension.
    """
    if ensemble_dim is not None:
        if ensemble_dim not in forecast.dims:
            raise ValueError(f"ensemble_dim {ensemble_dim!r} is not a forecast dimension "
                             f"{tuple(forecast.dims)}; pass the name of the member dimension")
        if truth is not None and ensemble_dim in truth.dims:
            raise ValueError(f"ensemble_dim {ensemble_dim!r} is also a truth dimension; the truth must "
                             "be a single field (select or average its members first)")
        return ensemble_dim
    for name in ENSEMBLE_DIMS:
        if name in forecast.dims and (truth is None or name not in truth.dims):
            return name
    return None


def _require_ensemble(forecast: "xr.DataArray", truth: "xr.DataArray | None",
                      ensemble_dim: str | None, what: str) -> str:
    name = ensemble_dim_of(forecast, truth, ensemble_dim)
    if name is None:
        raise ValueError(f"{what} needs an ensemble forecast: none of the dimensions {tuple(forecast.dims)} "
                         f"is an ensemble dimension {ENSEMBLE_DIMS} missing from the truth; pass "
                         "ensemble_dim=")
    return name


def _as_dims(dims: Any, default: "xr.DataArray | Sequence[str]") -> tuple[str, ...]:
    """``dims`` as a tuple; None gives ``default`` (the spatial dims of a DataArray)."""
    if dims is None:
        return spatial_dims(default) if hasattr(default, "dims") else tuple(default)
    if isinstance(dims, str):
        return (dims,)
    return tuple(str(d) for d in dims)


def _check_dims(dims: Iterable[str], *arrays: "xr.DataArray") -> None:
    have: set[Hashable] = set()
    for a in arrays:
        have.update(a.dims)
    unknown = [d for d in dims if d not in have]
    if unknown:
        raise ValueError(f"cannot reduce over {unknown}: not dimensions of the inputs "
                         f"{sorted(str(h) for h in have)}; choose dims among those")


def _align(forecast: "xr.DataArray", truth: "xr.DataArray") -> tuple["xr.DataArray", "xr.DataArray"]:
    """Exact alignment: shared dimensions need identical sizes and coordinates."""
    import xarray as xr

    for d in set(forecast.dims) & set(truth.dims):
        if forecast.sizes[d] != truth.sizes[d]:
            raise ValueError(f"dimension {d!r} has {forecast.sizes[d]} points in the forecast and "
                             f"{truth.sizes[d]} in the truth; select matching points first")
    try:
        f, t = xr.align(forecast, truth, join="exact")
    except ValueError as err:
        raise ValueError(f"forecast and truth coordinates differ ({err}); align them first "
                         "(e.g. truth.assign_coords or sel to the forecast's coordinates)") from err
    return f, t


def _prepare(forecast: "xr.DataArray", truth: "xr.DataArray", dims: Any
             ) -> tuple["xr.DataArray", "xr.DataArray", tuple[str, ...]]:
    f, t = _align(forecast, truth)
    d = _as_dims(dims, t)
    _check_dims(d, f, t)
    return f, t, d


def _no_member_reduction(dims: Sequence[str], ens: str, what: str) -> None:
    if ens in dims:
        raise ValueError(f"{what} already uses the ensemble dimension {ens!r}; leave it out of dims {tuple(dims)}")


def _safe_divide(num: "xr.DataArray", den: "xr.DataArray") -> "xr.DataArray":
    """``num / den`` with NaN where ``den`` is 0."""
    return (num / den.where(den != 0)).astype(np.float64)


# --------------------------------------------------------------------------
# Deterministic scores
# --------------------------------------------------------------------------

def rmse(forecast: "xr.DataArray", truth: "xr.DataArray", dims: Any = None, *,
         skipna: bool = True) -> "xr.DataArray":
    """Root-mean-square error ``sqrt(mean((forecast - truth)**2))``.

    Parameters
    ----------
    forecast, truth : xarray.DataArray
        Fields with named dimensions; dimensions of one missing from the other
        broadcast (an ensemble forecast gets one RMSE per member; pass the
        ensemble mean for the usual ensemble-mean RMSE).
    dims : str or sequence of str, optional
        Dimensions to average over; default the spatial dimensions.
    skipna : bool, optional
        Ignore NaN (missing) points in the mean.

    Returns
    -------
    xarray.DataArray
        Named ``rmse``, over the dimensions not reduced.
    """
    f, t, d = _prepare(forecast, truth, dims)
    return np.sqrt(((f - t) ** 2).mean(d, skipna=skipna)).rename("rmse")


def mae(forecast: "xr.DataArray", truth: "xr.DataArray", dims: Any = None, *,
        skipna: bool = True) -> "xr.DataArray":
    """Mean absolute error ``mean(|forecast - truth|)`` (see :func:`rmse`)."""
    f, t, d = _prepare(forecast, truth, dims)
    return abs(f - t).mean(d, skipna=skipna).rename("mae")


def bias(forecast: "xr.DataArray", truth: "xr.DataArray", dims: Any = None, *,
         skipna: bool = True) -> "xr.DataArray":
    """Mean error ``mean(forecast - truth)``: positive when the forecast is too high."""
    f, t, d = _prepare(forecast, truth, dims)
    return (f - t).mean(d, skipna=skipna).rename("bias")


# --------------------------------------------------------------------------
# Ensemble scores
# --------------------------------------------------------------------------

def _crps_kernel(x: np.ndarray, y: np.ndarray, fair: bool) -> np.ndarray:
    """Pointwise CRPS of members ``x[..., m]`` against ``y[...]``, O(m log m)."""
    x = np.sort(np.asarray(x, dtype=np.float64), axis=-1)  # NaN sort last and propagate
    y = np.asarray(y, dtype=np.float64)
    m = x.shape[-1]
    skill = np.abs(x - y[..., None]).mean(axis=-1)
    # sum_{i,j} |x_i - x_j| = 2 sum_k (2k - m - 1) x_(k) for sorted x, k = 1..m.
    k = np.arange(1, m + 1, dtype=np.float64)
    pairs = 2.0 * ((2.0 * k - m - 1.0) * x).sum(axis=-1)
    if fair:
        spread = pairs / (2.0 * m * (m - 1)) if m > 1 else np.zeros_like(skill)
    else:
        spread = pairs / (2.0 * m * m)
    return skill - spread


def crps_ensemble(forecast: "xr.DataArray", truth: "xr.DataArray", dims: Any = None, *,
                  ensemble_dim: str | None = None, fair: bool = True,
                  skipna: bool = True) -> "xr.DataArray":
    """Continuous ranked probability score of an ensemble, averaged over ``dims``.

    The fair (unbiased) estimator of Ferro (2014) is used by default::

        CRPS = 1/m sum_i |X_i - y| - 1/(2 m (m - 1)) sum_{i,j} |X_i - X_j|

    Its expectation over ensembles drawn from a distribution F equals the
    CRPS of F itself for any ensemble size m, so scores of ensembles of
    different sizes compare fairly. The pair sum is evaluated in
    O(m log m) from the sorted members ``x_(1) <= ... <= x_(m)`` as
    ``2 sum_k (2k - m - 1) x_(k)``. A one-member "ensemble" has no spread
    term: its CRPS is the absolute error.

    Parameters
    ----------
    forecast : xarray.DataArray
        Ensemble forecast with an ensemble dimension.
    truth : xarray.DataArray
        Verifying field without the ensemble dimension.
    dims : str or sequence of str, optional
        Dimensions to average over; default the spatial dimensions. Pass
        ``()`` for the pointwise score.
    ensemble_dim : str, optional
        The member dimension (default: found by name, see
        :data:`ENSEMBLE_DIMS`).
    fair : bool, optional
        False gives the standard (biased) estimator with ``1/(2 m^2)``.
    skipna : bool, optional
        Ignore NaN points in the average.

    Returns
    -------
    xarray.DataArray
        Named ``crps``, in the units of the variable.
    """
    import xarray as xr

    ens = _require_ensemble(forecast, truth, ensemble_dim, "crps_ensemble")
    f, t, d = _prepare(forecast, truth, dims)
    _no_member_reduction(d, ens, "crps_ensemble")
    point = xr.apply_ufunc(
        _crps_kernel, f, t, kwargs={"fair": bool(fair)},
        input_core_dims=[[ens], []], dask="parallelized", output_dtypes=[np.float64],
        dask_gufunc_kwargs={"allow_rechunk": True},
    )
    return (point.mean(d, skipna=skipna) if d else point).rename("crps")


def spread_skill_ratio(forecast: "xr.DataArray", truth: "xr.DataArray", dims: Any = None, *,
                       ensemble_dim: str | None = None,
                       components: bool = False) -> "xr.DataArray | xr.Dataset":
    """Ratio of ensemble spread to the RMSE of the ensemble mean.

    ``spread = sqrt((m + 1) / m * mean(var))`` with ``var`` the unbiased
    (``ddof=1``) member variance at each point, and
    ``skill = sqrt(mean((ensemble_mean - truth)**2))``, means over ``dims``.

    The ``(m + 1) / m`` factor (Fortin et al. 2014) makes the ratio 1 for a
    calibrated finite ensemble: when the truth and the m members are draws
    from one distribution of variance s^2, the ensemble mean errs with
    expected squared error ``s^2 (1 + 1/m)`` while the expected member
    variance is ``s^2``.

    Parameters
    ----------
    forecast, truth : xarray.DataArray
        Ensemble forecast (m >= 2 members) and verifying field.
    dims : str or sequence of str, optional
        Dimensions to average over; default the spatial dimensions.
    ensemble_dim : str, optional
        The member dimension (default: found by name).
    components : bool, optional
        Return a Dataset with ``spread``, ``skill`` and ``ratio`` instead.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        The ratio (named ``spread_skill``): below 1 an under-dispersive
        ensemble, above 1 an over-dispersive one.

    Raises
    ------
    ValueError
        For fewer than two members.
    """
    import xarray as xr

    ens = _require_ensemble(forecast, truth, ensemble_dim, "spread_skill_ratio")
    f, t, d = _prepare(forecast, truth, dims)
    _no_member_reduction(d, ens, "spread_skill_ratio")
    m = f.sizes[ens]
    if m < 2:
        raise ValueError(f"spread_skill_ratio needs at least 2 members along {ens!r}, got {m}")
    valid = t.notnull()
    var = f.var(ens, ddof=1).where(valid)
    spread = np.sqrt((m + 1.0) / m * var.mean(d))
    skill = np.sqrt(((f.mean(ens) - t) ** 2).mean(d))
    ratio = _safe_divide(spread, skill)
    if components:
        return xr.Dataset({"spread": spread, "skill": skill, "ratio": ratio})
    return ratio.rename("spread_skill")


def rank_histogram(forecast: "xr.DataArray", truth: "xr.DataArray", dims: Any = None, *,
                   ensemble_dim: str | None = None, seed: int = 0) -> "xr.DataArray":
    """Counts of the truth's rank among the ensemble members.

    The rank of ``y`` among m members is the number of members below it,
    0..m (m + 1 bins). Ties (members equal to ``y``) are broken at random:
    with ``b`` members below and ``e`` equal, the rank is uniform on
    ``b .. b + e``, drawn from ``numpy.random.default_rng(seed)`` so that the
    histogram is reproducible. Points where the truth or a member is NaN are
    not counted. A calibrated ensemble gives a flat histogram, an
    under-dispersive one a U shape, a biased one a slope.

    Parameters
    ----------
    forecast, truth : xarray.DataArray
        Ensemble forecast and verifying field.
    dims : str or sequence of str, optional
        Dimensions to count over; default the spatial dimensions.
    ensemble_dim : str, optional
        The member dimension (default: found by name).
    seed : int, optional
        Seed of the tie-breaking draws.

    Returns
    -------
    xarray.DataArray
        Named ``rank_histogram``, int64 counts with a new ``rank`` dimension
        (0..m) after the dimensions not reduced.
    """
    import xarray as xr

    ens = _require_ensemble(forecast, truth, ensemble_dim, "rank_histogram")
    f, t, d = _prepare(forecast, truth, dims)
    _no_member_reduction(d, ens, "rank_histogram")
    m = f.sizes[ens]
    f, t = xr.broadcast(f.compute(), t.compute(), exclude=[ens])
    rest = [dim for dim in t.dims]
    x = np.asarray(f.transpose(*rest, ens).values, dtype=np.float64)
    y = np.asarray(t.transpose(*rest).values, dtype=np.float64)
    below = (x < y[..., None]).sum(axis=-1)
    ties = (x == y[..., None]).sum(axis=-1)
    rng = np.random.default_rng(seed)
    ranks = below + np.floor(rng.random(y.shape) * (ties + 1)).astype(np.int64)
    valid = np.isfinite(y) & np.isfinite(x).all(axis=-1)
    ranks = np.where(valid, ranks, -1)
    keep = [dim for dim in rest if dim not in d]
    r = xr.DataArray(ranks, dims=rest).transpose(*keep, *[dim for dim in rest if dim in d])
    flat = r.values.reshape(int(np.prod([r.sizes[k] for k in keep], dtype=np.int64)), -1)
    counts = np.stack([np.bincount(row[row >= 0], minlength=m + 1) for row in flat]) \
        if flat.shape[0] else np.zeros((0, m + 1), np.int64)
    coords = {k: t.coords[k] for k in keep if k in t.coords}
    out = xr.DataArray(counts.reshape([r.sizes[k] for k in keep] + [m + 1]).astype(np.int64),
                       dims=keep + ["rank"], coords={**coords, "rank": np.arange(m + 1)},
                       name="rank_histogram")
    out.attrs["members"] = int(m)
    return out


# --------------------------------------------------------------------------
# Spectra
# --------------------------------------------------------------------------

def _radial_bins(ny: int, nx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Mask of kept modes, their bin index, modes per bin and bin count K."""
    n = max(ny, nx)
    ky = np.fft.fftfreq(ny) * n
    kx = np.fft.fftfreq(nx) * n
    k = np.rint(np.hypot(ky[:, None], kx[None, :])).astype(np.int64)
    nbins = n // 2
    keep = (k >= 1) & (k <= nbins)
    index = k[keep] - 1
    counts = np.bincount(index, minlength=nbins)
    return keep, index, counts, nbins


def _spectrum_kernel(a: np.ndarray, keep: np.ndarray, index: np.ndarray, counts: np.ndarray,
                     nbins: int, taper: bool) -> np.ndarray:
    ny, nx = a.shape[-2:]
    flat = np.asarray(a, dtype=np.float64).reshape(-1, ny, nx)
    out = np.full((flat.shape[0], nbins), np.nan)
    window = None
    if taper:
        window = np.outer(np.hanning(ny), np.hanning(nx))
        window = window / np.sqrt(np.mean(window ** 2))  # keep the total variance
    for i, field in enumerate(flat):
        if not np.isfinite(field).all():
            continue
        field = field - field.mean()
        if window is not None:
            field = field * window
        power = np.abs(np.fft.fft2(field)) ** 2 / float(ny * nx) ** 2
        out[i] = np.bincount(index, weights=power[keep], minlength=nbins) / counts
    return out.reshape(a.shape[:-2] + (nbins,))


def radial_power_spectrum(field: "xr.DataArray", dims: Any = None, *,
                          grid_spacing_km: float | None = HRRR_SPACING_KM,
                          taper: bool = False) -> "xr.DataArray":
    """Radially averaged power spectrum of each 2-D field.

    The field (mean removed) is Fourier transformed over its two spatial
    dimensions; ``|F|^2 / (ny nx)^2`` is the variance carried by each mode
    (the powers of all modes sum to the field's variance, Parseval). Modes
    are binned by their radial wavenumber ``k = sqrt(ky^2 + kx^2)`` rounded
    to an integer, with ``ky, kx`` counted in cycles per ``n = max(ny, nx)``
    grid lengths (cycles across the longer side of the domain), and the
    powers are averaged within each bin. Bins ``k = 1 .. n // 2`` are
    returned: the mean (k = 0) and the corner modes beyond the Nyquist
    radius are left out.

    Fields are treated as periodic; ``taper=True`` applies a 2-D Hann window
    (rescaled to keep the variance) to limit leakage from the edges.

    Parameters
    ----------
    field : xarray.DataArray
        One or many fields; other dimensions are kept.
    dims : sequence of two str, optional
        The ``(y, x)`` dimensions; default :func:`spatial_dims`.
    grid_spacing_km : float or None, optional
        Grid spacing (3 km for HRRR); adds a ``wavelength_km`` coordinate
        ``n * grid_spacing_km / k``.
    taper : bool, optional
        Apply a Hann window before the transform.

    Returns
    -------
    xarray.DataArray
        Named ``power_spectrum`` with dimension ``wavenumber`` (int, cycles per
        domain length) replacing the spatial ones, coordinates ``modes``
        (modes per bin) and ``wavelength_km``; in squared units of the field.
        Fields with NaN give NaN spectra.

    Raises
    ------
    ValueError
        If ``dims`` does not name two dimensions of ``field``, or the field is
        smaller than 2 x 2 grid points.
    """
    import xarray as xr

    ydim, xdim = _as_dims(dims, field)
    _check_dims((ydim, xdim), field)
    ny, nx = field.sizes[ydim], field.sizes[xdim]
    if max(ny, nx) < 2:
        raise ValueError(f"a power spectrum needs at least 2 points along {ydim!r} or {xdim!r}, got {ny} x {nx}")
    keep, index, counts, nbins = _radial_bins(ny, nx)
    out = xr.apply_ufunc(
        _spectrum_kernel, field, input_core_dims=[[ydim, xdim]], output_core_dims=[["wavenumber"]],
        kwargs=dict(keep=keep, index=index, counts=counts, nbins=nbins, taper=bool(taper)),
        dask="parallelized", output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {"wavenumber": nbins}, "allow_rechunk": True},
    )
    k = np.arange(1, nbins + 1)
    coords: dict[str, Any] = {"wavenumber": k, "modes": ("wavenumber", counts)}
    if grid_spacing_km is not None:
        if not grid_spacing_km > 0:
            raise ValueError(f"grid_spacing_km must be positive, got {grid_spacing_km}")
        coords["wavelength_km"] = ("wavenumber", max(ny, nx) * float(grid_spacing_km) / k)
    out = out.assign_coords(coords).rename("power_spectrum")
    out.attrs.update(long_name="radially averaged power spectrum",
                     wavenumber_units=f"cycles per {max(ny, nx)} grid lengths")
    return out


def spectral_ratio(forecast: "xr.DataArray", truth: "xr.DataArray", dims: Any = None, *,
                   mean_dims: Sequence[str] = (), grid_spacing_km: float | None = HRRR_SPACING_KM,
                   taper: bool = False) -> "xr.DataArray":
    """Forecast power over truth power, per wavenumber.

    1 means the forecast has the truth's variance at that scale; below 1
    over-smoothed (typical of deterministic regression at small scales),
    above 1 too noisy.

    Parameters
    ----------
    forecast, truth : xarray.DataArray
        Fields over the same spatial grid.
    dims : sequence of two str, optional
        The ``(y, x)`` dimensions; default :func:`spatial_dims` of the truth.
    mean_dims : sequence of str, optional
        Dimensions over which each spectrum is averaged before the ratio
        (e.g. ``("ensemble", "time")``); each spectrum averages those it has.
    grid_spacing_km, taper : optional
        As for :func:`radial_power_spectrum`.

    Returns
    -------
    xarray.DataArray
        Named ``spectral_ratio`` over ``wavenumber`` and the dimensions left.
    """
    f, t = _align(forecast, truth)
    d = _as_dims(dims, t)
    pf = radial_power_spectrum(f, d, grid_spacing_km=grid_spacing_km, taper=taper)
    pt = radial_power_spectrum(t, d, grid_spacing_km=grid_spacing_km, taper=taper)
    _check_dims(mean_dims, pf, pt)
    pf = pf.mean([m for m in mean_dims if m in pf.dims])
    pt = pt.mean([m for m in mean_dims if m in pt.dims])
    return _safe_divide(pf, pt).rename("spectral_ratio")


# --------------------------------------------------------------------------
# Categorical scores
# --------------------------------------------------------------------------

def _threshold_coord(thresholds: Any) -> np.ndarray:
    thr = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if thr.ndim != 1 or thr.size == 0 or not np.isfinite(thr).all():
        raise ValueError(f"thresholds must be a non-empty list of finite numbers, got {thresholds!r}")
    return thr


def contingency_table(forecast: "xr.DataArray", truth: "xr.DataArray",
                      thresholds: Any = DEFAULT_THRESHOLDS, dims: Any = None) -> "xr.Dataset":
    """Counts of hits, misses, false alarms and correct negatives.

    An event is ``value >= threshold``. Points where either side is NaN are
    not counted.

    Parameters
    ----------
    forecast, truth : xarray.DataArray
        Fields (reflectivity in dBZ for the default thresholds).
    thresholds : float or sequence of float, optional
        Event thresholds; default 20, 30 and 40 dBZ.
    dims : str or sequence of str, optional
        Dimensions to count over; default the spatial dimensions (add the
        ensemble dimension to pool the members).

    Returns
    -------
    xarray.Dataset
        ``hits``, ``misses``, ``false_alarms``, ``correct_negatives`` (int64)
        over a ``threshold`` dimension and the dimensions left.
    """
    import xarray as xr

    f, t, d = _prepare(forecast, truth, dims)
    thr = _threshold_coord(thresholds)
    valid = f.notnull() & t.notnull()
    parts = []
    for value in thr:
        fe = (f >= value) & valid
        te = (t >= value) & valid
        parts.append(xr.Dataset({
            "hits": (fe & te).sum(d),
            "misses": (~fe & te).sum(d),
            "false_alarms": (fe & ~te).sum(d),
            "correct_negatives": (valid & ~fe & ~te).sum(d),
        }))
    out = xr.concat(parts, dim=xr.DataArray(thr, dims="threshold", name="threshold"))
    return out.astype(np.int64)


def categorical_scores(forecast: "xr.DataArray", truth: "xr.DataArray",
                       thresholds: Any = DEFAULT_THRESHOLDS, dims: Any = None) -> "xr.Dataset":
    """CSI, POD, FAR and the observed base rate, with their contingency counts.

    ``csi = hits / (hits + misses + false_alarms)``,
    ``pod = hits / (hits + misses)``, ``far = false_alarms / (hits + false_alarms)``
    and ``base_rate = (hits + misses) / valid points``. A score whose
    denominator is 0 (no events to find, or none forecast for FAR) is NaN:
    it is undefined rather than perfect or useless.

    Parameters
    ----------
    forecast, truth, thresholds, dims
        As for :func:`contingency_table`.

    Returns
    -------
    xarray.Dataset
        ``csi``, ``pod``, ``far``, ``base_rate`` and the four counts.
    """
    table = contingency_table(forecast, truth, thresholds, dims)
    h, m, fa, cn = (table[k] for k in ("hits", "misses", "false_alarms", "correct_negatives"))
    out = table.copy()
    out["csi"] = _safe_divide(h, h + m + fa)
    out["pod"] = _safe_divide(h, h + m)
    out["far"] = _safe_divide(fa, h + fa)
    out["base_rate"] = _safe_divide(h + m, h + m + fa + cn)
    return out


def csi(forecast: "xr.DataArray", truth: "xr.DataArray", thresholds: Any = DEFAULT_THRESHOLDS,
        dims: Any = None) -> "xr.DataArray":
    """Critical success index (threat score) per threshold; NaN without events.

    See :func:`categorical_scores`.
    """
    return categorical_scores(forecast, truth, thresholds, dims)["csi"].rename("csi")


def pod(forecast: "xr.DataArray", truth: "xr.DataArray", thresholds: Any = DEFAULT_THRESHOLDS,
        dims: Any = None) -> "xr.DataArray":
    """Probability of detection per threshold; NaN without observed events.

    See :func:`categorical_scores`.
    """
    return categorical_scores(forecast, truth, thresholds, dims)["pod"].rename("pod")


def far(forecast: "xr.DataArray", truth: "xr.DataArray", thresholds: Any = DEFAULT_THRESHOLDS,
        dims: Any = None) -> "xr.DataArray":
    """False alarm ratio per threshold; NaN without forecast events.

    See :func:`categorical_scores`.
    """
    return categorical_scores(forecast, truth, thresholds, dims)["far"].rename("far")


# --------------------------------------------------------------------------
# Fractions skill score
# --------------------------------------------------------------------------

def _check_windows(windows: Any) -> np.ndarray:
    w = np.atleast_1d(np.asarray(windows))
    if w.ndim != 1 or w.size == 0 or not all(float(v).is_integer() and int(v) >= 1 and int(v) % 2 == 1
                                             for v in w):
        raise ValueError(f"windows must be odd positive integers (neighbourhood sizes in grid points, "
                         f"e.g. 1, 9, 25), got {list(np.ravel(windows))}")
    return w.astype(np.int64)


def _box_mean(a: np.ndarray, size: int) -> np.ndarray:
    """Mean of ``a[..., y, x]`` over ``size x size`` boxes clipped to the domain."""
    if size == 1:
        return np.asarray(a, dtype=np.float64)
    ny, nx = a.shape[-2:]
    half = size // 2
    table = np.zeros(a.shape[:-2] + (ny + 1, nx + 1))
    table[..., 1:, 1:] = np.asarray(a, dtype=np.float64).cumsum(axis=-2).cumsum(axis=-1)
    y0 = np.clip(np.arange(ny) - half, 0, ny)[:, None]
    y1 = np.clip(np.arange(ny) + half + 1, 0, ny)[:, None]
    x0 = np.clip(np.arange(nx) - half, 0, nx)[None, :]
    x1 = np.clip(np.arange(nx) + half + 1, 0, nx)[None, :]
    total = table[..., y1, x1] - table[..., y0, x1] - table[..., y1, x0] + table[..., y0, x0]
    return total / ((y1 - y0) * (x1 - x0))


def neighbourhood_fraction(field: "xr.DataArray", threshold: float, window: int,
                           dims: Any = None) -> "xr.DataArray":
    """Fraction of points with ``value >= threshold`` in a square neighbourhood.

    Edge handling: near the border the ``window x window`` box is cut at the
    domain edge and the fraction is taken over the points inside the domain
    (no padding, so the border neither adds nor dilutes events). It is
    computed in O(1) per point from a summed-area table. NaN points give
    NaN fractions wherever their box (and, through the table, later boxes)
    reaches, so a field with missing values has NaN fractions.

    Parameters
    ----------
    field : xarray.DataArray
        Fields over two spatial dimensions.
    threshold : float
        Event threshold.
    window : int
        Odd neighbourhood size in grid points (1: the binary field itself).
    dims : sequence of two str, optional
        The ``(y, x)`` dimensions; default :func:`spatial_dims`.

    Returns
    -------
    xarray.DataArray
        Fractions in [0, 1], same shape as ``field``.
    """
    import xarray as xr

    size = int(_check_windows([window])[0])
    ydim, xdim = _as_dims(dims, field)
    _check_dims((ydim, xdim), field)

    def kernel(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float64)
        binary = np.where(np.isnan(a), np.nan, (a >= threshold).astype(np.float64))
        return _box_mean(binary, size)

    return xr.apply_ufunc(kernel, field, input_core_dims=[[ydim, xdim]], output_core_dims=[[ydim, xdim]],
                          dask="parallelized", output_dtypes=[np.float64],
                          dask_gufunc_kwargs={"allow_rechunk": True}).transpose(*field.dims)


def fss(forecast: "xr.DataArray", truth: "xr.DataArray", thresholds: Any = DEFAULT_THRESHOLDS,
        windows: Any = DEFAULT_WINDOWS, dims: Any = None, *, spatial: Sequence[str] | None = None,
        ensemble_dim: str | None = None) -> "xr.DataArray":
    """Fractions skill score (Roberts and Lean 2008) per threshold and window.

    ``FSS = 1 - sum (Pf - Po)^2 / (sum Pf^2 + sum Po^2)`` with ``Pf``, ``Po``
    the forecast and observed neighbourhood fractions
    (:func:`neighbourhood_fraction`, boxes clipped at the domain edge) and the
    sums over ``dims``. With an ensemble forecast, ``Pf`` is the mean of the
    members' fractions (the probabilistic FSS of Necker et al. 2024).

    Conventions: a perfect forecast scores 1 and a forecast whose events
    never overlap the observed ones within the window scores 0. When neither
    forecast nor truth has any event, the score is 0/0 and returned as NaN
    (undefined, not perfect): filter or report such cases separately. A
    field with NaN gives NaN.

    Parameters
    ----------
    forecast, truth : xarray.DataArray
        Fields over the same grid (reflectivity in dBZ for the defaults).
    thresholds : float or sequence of float, optional
        Event thresholds (``value >= threshold``); default 20, 30, 40 dBZ.
    windows : int or sequence of int, optional
        Odd neighbourhood sizes in grid points; default 1, 9, 25
        (3, 27, 75 km on the HRRR grid).
    dims : str or sequence of str, optional
        Dimensions summed over; default the spatial ones, which it must
        include. Adding ``time`` gives the aggregated FSS over many cases.
    spatial : sequence of two str, optional
        The ``(y, x)`` dimensions the neighbourhoods span; default
        :func:`spatial_dims` of the truth.
    ensemble_dim : str, optional
        The member dimension; default found by name (forecast-only
        :data:`ENSEMBLE_DIMS`).

    Returns
    -------
    xarray.DataArray
        Named ``fss`` with ``threshold`` and ``window`` dimensions after those
        not reduced.

    Raises
    ------
    ValueError
        For even or non-positive windows, or ``dims`` lacking a spatial
        dimension.
    """
    import xarray as xr

    sp = _as_dims(spatial, truth)
    if len(sp) != 2:
        raise ValueError(f"spatial must name two dimensions (y, x), got {sp}")
    ens = ensemble_dim_of(forecast, truth, ensemble_dim)
    f, t = _align(forecast, truth)
    d = _as_dims(dims, sp)
    _check_dims(d, f, t)
    lacking = [s for s in sp if s not in d]
    if lacking:
        raise ValueError(f"fss dims {d} must include the spatial dimensions {sp} (missing {lacking}); "
                         "the score compares neighbourhood fractions summed over the domain")
    thr = _threshold_coord(thresholds)
    win = _check_windows(windows)
    rows = []
    for value in thr:
        cols = []
        for size in win:
            pf = neighbourhood_fraction(f, float(value), int(size), sp)
            if ens is not None:
                pf = pf.mean(ens, skipna=False)
            po = neighbourhood_fraction(t, float(value), int(size), sp)
            num = ((pf - po) ** 2).sum(d, skipna=False)
            den = (pf ** 2).sum(d, skipna=False) + (po ** 2).sum(d, skipna=False)
            cols.append(1.0 - _safe_divide(num, den))
        rows.append(xr.concat(cols, dim=xr.DataArray(win, dims="window", name="window")))
    out = xr.concat(rows, dim=xr.DataArray(thr, dims="threshold", name="threshold"))
    keep = [x for x in out.dims if x not in ("threshold", "window")]
    return out.transpose(*keep, "threshold", "window").rename("fss")

