"""Coordinate names and matching coordinates by value.

The one home of the dimension-name tables (projected and geographic spatial
dimensions, ensemble dimensions) and of :func:`match_values`, which finds a
grid's coordinates inside another's: cropping a larger source to a model
grid, aligning a truth with a forecast and preparing a dataset all use it.
:func:`finite_coordinates` and :func:`wrap_longitude` check and normalise
coordinate arrays given by callers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "ENSEMBLE_DIMS",
    "LAT_NAMES",
    "LATLON_PAIRS",
    "LON_NAMES",
    "PROJECTED_DIM_PAIRS",
    "SPATIAL_DIM_PAIRS",
    "finite_coordinates",
    "match_values",
    "wrap_longitude",
]

PROJECTED_DIM_PAIRS: tuple[tuple[str, str], ...] = (("hrrr_y", "hrrr_x"), ("y", "x"))
"""Dimension pairs of a field on the HRRR (Lambert conformal) projection: rows, columns."""

LAT_NAMES: tuple[str, ...] = ("lat", "latitude")
LON_NAMES: tuple[str, ...] = ("lon", "longitude")
LATLON_PAIRS: tuple[tuple[str, str], ...] = tuple(zip(LAT_NAMES, LON_NAMES))
"""Names of geographic coordinates (or dimensions of a regular lat/lon grid)."""

SPATIAL_DIM_PAIRS: tuple[tuple[str, str], ...] = PROJECTED_DIM_PAIRS + LATLON_PAIRS
"""Every spatial dimension pair recognised, in order of preference."""

ENSEMBLE_DIMS: tuple[str, ...] = ("ensemble", "member", "sample")
"""Names recognised as an ensemble dimension."""


def match_values(have: np.ndarray, want: np.ndarray, tol: float, period: float | None = None) -> np.ndarray | None:
    """Index into ``have`` of the nearest value to each of ``want``.

    Parameters
    ----------
    have, want
        1-D coordinate values; ``have`` need not be sorted.
    tol
        Largest accepted distance between a wanted value and its match.
    period
        Compare modulo this period (360 for longitudes), so 359.9 matches 0.

    Returns
    -------
    numpy.ndarray or None
        Integer indices, one per wanted value, or None when some wanted value
        has no match within ``tol`` (or ``have`` is empty).
    """
    have = np.asarray(have, np.float64)
    want = np.asarray(want, np.float64)
    if have.size == 0:
        return None
    if period is not None:
        have, want = np.mod(have, period), np.mod(want, period)
    order = np.argsort(have, kind="stable")
    ordered = have[order]
    upper = np.clip(np.searchsorted(ordered, want), 0, ordered.size - 1)
    lower = np.clip(upper - 1, 0, ordered.size - 1)
    pick = np.where(np.abs(ordered[lower] - want) <= np.abs(ordered[upper] - want), lower, upper)
    dist = np.abs(ordered[pick] - want)
    if period is not None:
        # across the seam the nearest value may be at the other end of the sorted axis
        dist = np.minimum(dist, period - dist)
        for end in (0, ordered.size - 1):
            d_end = np.abs(ordered[end] - want)
            d_end = np.minimum(d_end, period - d_end)
            better = d_end < dist
            pick, dist = np.where(better, end, pick), np.where(better, d_end, dist)
    if (dist > tol).any():
        return None
    return order[pick]


def finite_coordinates(name: str, value: Any, ndim: int | None = None) -> np.ndarray:
    """``value`` as a float64 array, checked to be finite (and of rank ``ndim``).

    Parameters
    ----------
    name
        The argument's name, used in error messages.
    value
        Coordinate values (array-like).
    ndim
        Required number of dimensions, if any.

    Returns
    -------
    numpy.ndarray
        float64 values (a view of ``value`` when it already is float64).

    Raises
    ------
    ValueError
        If the values are not numeric, have another rank, or are not all finite.
    """
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric, got {type(value).__name__}; pass an array of floats") from None
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} has shape {arr.shape}; expected a {ndim}-D array")
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr.ravel()))
        raise ValueError(
            f"{name} contains {bad.size} non-finite values (first at flat index {int(bad[0])}); "
            "pass finite coordinates"
        )
    return arr


def wrap_longitude(lon: np.ndarray) -> np.ndarray:
    """Longitudes (degrees east, any convention) in [0, 360)."""
    out = np.mod(lon, 360.0)
    # np.mod of a tiny negative value rounds to exactly 360
    return np.where(out >= 360.0, out - 360.0, out)
