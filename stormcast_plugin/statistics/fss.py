"""The fractions skill score (Roberts and Lean 2008) and neighbourhood fractions.

Kept here rather than taken from ``scores.spatial.fss_2d``, whose
definitions differ in three ways that matter for radar reflectivity: its
neighbourhoods either drop the border of the domain or pad it with zeros
(diluting events near the edge), where these are cut at the edge and
averaged over the points inside; it scores 0 when neither side has an event,
where this is NaN (undefined); and it has no ensemble (probabilistic) form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from stormcast_plugin.statistics.utils import (
    DEFAULT_THRESHOLDS,
    DEFAULT_WINDOWS,
    align,
    as_dims,
    check_dims,
    check_windows,
    ensemble_dim_of,
    safe_divide,
    threshold_coord,
)

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = ["fss", "neighbourhood_fraction"]


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
        The ``(y, x)`` dimensions; default the spatial dimensions.

    Returns
    -------
    xarray.DataArray
        Fractions in [0, 1], same shape as ``field``.
    """
    import xarray as xr

    size = int(check_windows([window])[0])
    ydim, xdim = as_dims(dims, field)
    check_dims((ydim, xdim), field)

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
        The ``(y, x)`` dimensions the neighbourhoods span; default the
        spatial dimensions of the truth.
    ensemble_dim : str, optional
        The member dimension; default found by name (an ensemble dimension
        of the forecast missing from the truth).

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

    sp = as_dims(spatial, truth)
    if len(sp) != 2:
        raise ValueError(f"spatial must name two dimensions (y, x), got {sp}")
    ens = ensemble_dim_of(forecast, truth, ensemble_dim)
    f, t = align(forecast, truth)
    d = as_dims(dims, sp)
    check_dims(d, f, t)
    lacking = [s for s in sp if s not in d]
    if lacking:
        raise ValueError(f"fss dims {d} must include the spatial dimensions {sp} (missing {lacking}); "
                         "the score compares neighbourhood fractions summed over the domain")
    thr = threshold_coord(thresholds)
    win = check_windows(windows)
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
            cols.append(1.0 - safe_divide(num, den))
        rows.append(xr.concat(cols, dim=xr.DataArray(win, dims="window", name="window")))
    out = xr.concat(rows, dim=xr.DataArray(thr, dims="threshold", name="threshold"))
    keep = [x for x in out.dims if x not in ("threshold", "window")]
    return out.transpose(*keep, "threshold", "window").rename("fss")
