"""Shared pieces of the statistics: dimension lookup, alignment and defaults.

Conventions of every statistic
------------------------------
* Spatial dimensions are found by name (the pairs of
  :data:`stormcast_plugin.utils.coords.SPATIAL_DIM_PAIRS`), otherwise they
  are the last two dimensions of the truth. The ensemble dimension is one of
  :data:`stormcast_plugin.utils.coords.ENSEMBLE_DIMS` that the forecast has
  and the truth does not.
* Forecast and truth must share the coordinates of their common dimensions
  exactly (an exact ``xarray.align``); nothing is silently dropped.
* NaN marks missing data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Hashable, Iterable, Sequence

import numpy as np

from stormcast_plugin.utils.coords import ENSEMBLE_DIMS, SPATIAL_DIM_PAIRS

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = [
    "DEFAULT_THRESHOLDS",
    "DEFAULT_WINDOWS",
    "HRRR_SPACING_KM",
    "ensemble_dim_of",
    "spatial_dims",
]

DEFAULT_THRESHOLDS: tuple[float, ...] = (20.0, 30.0, 40.0)
"""Reflectivity thresholds in dBZ."""

DEFAULT_WINDOWS: tuple[int, ...] = (1, 9, 25)
"""FSS neighbourhood sizes in grid points (3, 27 and 75 km on the HRRR grid)."""

HRRR_SPACING_KM = 3.0
"""Grid spacing of the HRRR grid in km."""


def scores_module(name: str) -> Any:
    """``scores.<name>``, imported on first use (importing ``scores`` takes seconds).

    Raises
    ------
    ImportError
        Naming the package to install when ``scores`` is missing.
    """
    import importlib

    try:
        return importlib.import_module(f"scores.{name}")
    except ImportError as err:
        raise ImportError(f"this statistic uses the 'scores' package ({err}); install it with "
                          "`pip install scores`") from err


def spatial_dims(da: "xr.DataArray") -> tuple[str, str]:
    """The ``(y, x)`` dimension names of ``da``.

    Parameters
    ----------
    da : xarray.DataArray
        A field with at least two dimensions.

    Returns
    -------
    tuple of str
        The first pair of ``SPATIAL_DIM_PAIRS`` present, otherwise the last
        two dimensions.

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


def require_ensemble(forecast: "xr.DataArray", truth: "xr.DataArray | None",
                     ensemble_dim: str | None, what: str) -> str:
    """The ensemble dimension, or a ValueError saying that ``what`` needs one."""
    name = ensemble_dim_of(forecast, truth, ensemble_dim)
    if name is None:
        raise ValueError(f"{what} needs an ensemble forecast: none of the dimensions {tuple(forecast.dims)} "
                         f"is an ensemble dimension {ENSEMBLE_DIMS} missing from the truth; pass "
                         "ensemble_dim=")
    return name


def as_dims(dims: Any, default: "xr.DataArray | Sequence[str]") -> tuple[str, ...]:
    """``dims`` as a tuple; None gives ``default`` (the spatial dims of a DataArray)."""
    if dims is None:
        return spatial_dims(default) if hasattr(default, "dims") else tuple(default)
    if isinstance(dims, str):
        return (dims,)
    return tuple(str(d) for d in dims)


def check_dims(dims: Iterable[str], *arrays: "xr.DataArray") -> None:
    """Raise a ValueError naming any of ``dims`` that no array has."""
    have: set[Hashable] = set()
    for a in arrays:
        have.update(a.dims)
    unknown = [d for d in dims if d not in have]
    if unknown:
        raise ValueError(f"cannot reduce over {unknown}: not dimensions of the inputs "
                         f"{sorted(str(h) for h in have)}; choose dims among those")


def align(forecast: "xr.DataArray", truth: "xr.DataArray") -> tuple["xr.DataArray", "xr.DataArray"]:
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


def prepare(forecast: "xr.DataArray", truth: "xr.DataArray", dims: Any
            ) -> tuple["xr.DataArray", "xr.DataArray", tuple[str, ...]]:
    """Aligned forecast and truth and the checked dimensions to reduce."""
    f, t = align(forecast, truth)
    d = as_dims(dims, t)
    check_dims(d, f, t)
    return f, t, d


def no_member_reduction(dims: Sequence[str], ens: str, what: str) -> None:
    """Refuse reducing over the ensemble dimension a statistic already uses."""
    if ens in dims:
        raise ValueError(f"{what} already uses the ensemble dimension {ens!r}; leave it out of dims {tuple(dims)}")


def safe_divide(num: "xr.DataArray", den: "xr.DataArray") -> "xr.DataArray":
    """``num / den`` with NaN where ``den`` is 0."""
    return (num / den.where(den != 0)).astype(np.float64)


def threshold_coord(thresholds: Any) -> np.ndarray:
    """Event thresholds as a float array; a ValueError for empty or non-finite ones."""
    thr = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if thr.ndim != 1 or thr.size == 0 or not np.isfinite(thr).all():
        raise ValueError(f"thresholds must be a non-empty list of finite numbers, got {thresholds!r}")
    return thr


def band_edges(edges_km: Any) -> np.ndarray:
    """Wavelength band edges in km as a float array; a ValueError unless positive and increasing."""
    e = np.asarray(edges_km, dtype=np.float64).ravel()
    if e.size == 0 or not np.isfinite(e).all() or not np.all(e > 0) or not np.all(np.diff(e) > 0):
        raise ValueError(f"spectral band edges must be increasing positive wavelengths in km, e.g. 15,60; "
                         f"got {list(np.ravel(edges_km))}")
    return e


def check_windows(windows: Any) -> np.ndarray:
    """FSS neighbourhood sizes as an int array; a ValueError unless odd and positive."""
    w = np.atleast_1d(np.asarray(windows))
    if w.ndim != 1 or w.size == 0 or not all(float(v).is_integer() and int(v) >= 1 and int(v) % 2 == 1
                                             for v in w):
        raise ValueError(f"windows must be odd positive integers (neighbourhood sizes in grid points, "
                         f"e.g. 1, 9, 25), got {list(np.ravel(windows))}")
    return w.astype(np.int64)
