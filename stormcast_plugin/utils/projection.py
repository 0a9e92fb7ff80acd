"""The HRRR Lambert conformal conic projection: projected metres <-> latitude/longitude.

The HRRR native grid is a Lambert conformal conic (LCC) projection of a sphere
of radius 6 371 229 m, tangent at 38.5 N with central meridian 262.5 E
(:data:`HRRR_PROJECTION`, as CF grid-mapping attributes). The transforms are
PROJ's, through pyproj (a dependency of earth2studio's GRIB reader); pyproj
is imported when a projection is first used, so importing this module needs
only NumPy.
"""

from __future__ import annotations

import functools
import json
import math
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from stormcast_plugin.utils.coords import finite_coordinates, wrap_longitude

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pyproj

__all__ = ["HRRR_PROJECTION", "latlon_to_lcc", "lcc_to_latlon"]

HRRR_PROJECTION: dict[str, Any] = {
    "grid_mapping_name": "lambert_conformal_conic",
    "standard_parallel": [38.5, 38.5],
    "longitude_of_central_meridian": 262.5,
    "latitude_of_projection_origin": 38.5,
    "earth_radius": 6371229.0,
    "false_easting": 0.0,
    "false_northing": 0.0,
}
"""CF grid-mapping attributes of the HRRR Lambert conformal conic projection."""

_REQUIRED = ("longitude_of_central_meridian", "latitude_of_projection_origin")
_SHAPE_KEYS = ("earth_radius", "semi_major_axis")
_NUMBERS = _REQUIRED + _SHAPE_KEYS + ("semi_minor_axis", "inverse_flattening", "false_easting", "false_northing")


def _number(proj: Mapping[str, Any], key: str) -> float:
    value = proj[key]
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = math.nan
    if not math.isfinite(out):
        raise ValueError(f"projection[{key!r}] = {value!r} is not a finite number; pass degrees or metres")
    return out


def _cf_key(projection: Mapping[str, Any] | None) -> str:
    """The projection's CF attributes, checked and normalised, as a cache key."""
    proj = HRRR_PROJECTION if projection is None else projection
    if not isinstance(proj, Mapping):
        raise ValueError(f"projection must be a mapping of CF attributes, got {type(proj).__name__}")
    name = proj.get("grid_mapping_name")
    if name != "lambert_conformal_conic":
        raise ValueError(
            f"projection grid_mapping_name is {name!r}; expected 'lambert_conformal_conic' "
            "(only the Lambert conformal conic projection is supported)"
        )
    sp = proj.get("standard_parallel")
    try:
        parallels = [float(v) for v in np.atleast_1d(np.asarray(sp, dtype=np.float64))]
    except (TypeError, ValueError):
        parallels = []
    if len(parallels) not in (1, 2) or not all(-90.0 < v < 90.0 for v in parallels):
        raise ValueError(
            f"projection standard_parallel = {sp!r}; expected one or two latitudes strictly "
            "between -90 and 90 degrees"
        )
    if abs(parallels[0] + parallels[-1]) < 1e-9:
        raise ValueError(
            f"projection standard_parallel = {sp!r} gives a cone constant of 0 (a Mercator "
            "projection); choose standard parallels away from the equator"
        )
    missing = [k for k in _REQUIRED if k not in proj]
    if missing:
        raise ValueError(f"projection is missing {missing}; see HRRR_PROJECTION for the attributes needed")
    if not any(k in proj for k in _SHAPE_KEYS):
        raise ValueError(
            f"projection has none of {list(_SHAPE_KEYS)}; give the earth's shape (HRRR: "
            f"earth_radius = {HRRR_PROJECTION['earth_radius']})"
        )
    # PROJ falls back to WGS84 on an unreadable earth shape: check every number here.
    cf = {"grid_mapping_name": name, "standard_parallel": [parallels[0], parallels[-1]]}
    cf.update({k: _number(proj, k) for k in _NUMBERS if k in proj})
    for key in _SHAPE_KEYS:
        if cf.get(key, 1.0) <= 0:
            raise ValueError(f"projection[{key!r}] = {cf[key]!r}; expected a positive length in metres")
    return json.dumps(cf, sort_keys=True)


@functools.lru_cache(maxsize=8)
def _transformers(key: str) -> tuple["pyproj.Transformer", "pyproj.Transformer"]:
    """(lat/lon -> projected, projected -> lat/lon) transformers; pyproj's are thread-safe."""
    import pyproj

    try:
        crs = pyproj.CRS.from_cf(json.loads(key))
    except pyproj.exceptions.CRSError as err:
        reason = str(err).rpartition(": ")[2].rstrip(")")  # PROJ's reason, after a long JSON echo
        raise ValueError(
            f"projection {key} is not a valid Lambert conformal conic ({reason}); "
            "see HRRR_PROJECTION for the expected attributes"
        ) from None
    geo = crs.geodetic_crs
    return (pyproj.Transformer.from_crs(geo, crs, always_xy=True),
            pyproj.Transformer.from_crs(crs, geo, always_xy=True))


def lcc_to_latlon(
    y: np.ndarray,
    x: np.ndarray,
    projection: Mapping[str, Any] | None = None,
    *,
    meshgrid: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude of Lambert conformal conic projection coordinates.

    Parameters
    ----------
    y, x : np.ndarray
        Projection northing and easting in metres. With ``meshgrid=True`` both
        are 1-D (rows and columns of a grid); otherwise they broadcast
        point by point.
    projection : Mapping, optional
        CF grid-mapping attributes; by default :data:`HRRR_PROJECTION`.
    meshgrid : bool, optional
        Return the ``[len(y), len(x)]`` grid (default) rather than points.

    Returns
    -------
    tuple[np.ndarray, np.ndarray]
        Latitude (degrees north) and longitude (degrees east in [0, 360)),
        each ``[len(y), len(x)]`` with ``meshgrid=True``.

    Raises
    ------
    ValueError
        If the coordinates are not finite, not 1-D with ``meshgrid=True``, do
        not broadcast together with ``meshgrid=False``, or the projection is
        not a valid Lambert conformal conic.
    """
    _, inverse = _transformers(_cf_key(projection))
    ya = finite_coordinates("y", y, 1 if meshgrid else None)
    xa = finite_coordinates("x", x, 1 if meshgrid else None)
    ya, xa = np.meshgrid(ya, xa, indexing="ij") if meshgrid else np.broadcast_arrays(ya, xa)
    lon, lat = inverse.transform(xa, ya)
    return np.asarray(lat, dtype=np.float64), wrap_longitude(np.asarray(lon, dtype=np.float64))


def latlon_to_lcc(
    lat: np.ndarray,
    lon: np.ndarray,
    projection: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Lambert conformal conic coordinates of latitude/longitude points.

    Parameters
    ----------
    lat, lon : np.ndarray
        Degrees north and east (any longitude convention); broadcast together.
    projection : Mapping, optional
        CF grid-mapping attributes; by default :data:`HRRR_PROJECTION`.

    Returns
    -------
    tuple[np.ndarray, np.ndarray]
        Northing ``y`` and easting ``x`` in metres.

    Raises
    ------
    ValueError
        If the inputs are not finite, latitudes lie outside [-90, 90], or a
        point is the pole the cone does not reach.
    """
    forward, _ = _transformers(_cf_key(projection))
    la = finite_coordinates("lat", lat)
    lo = finite_coordinates("lon", lon)
    if (np.abs(la) > 90.0).any():
        raise ValueError(f"lat spans [{la.min()}, {la.max()}]; expected latitudes within [-90, 90] degrees")
    la, lo = np.broadcast_arrays(la, lo)
    # PROJ takes longitudes within +-540 degrees only
    x, y = forward.transform(np.mod(lo + 180.0, 360.0) - 180.0, la)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    unmapped = ~(np.isfinite(y) & np.isfinite(x))
    if unmapped.any():
        raise ValueError(
            f"lat contains {float(la[unmapped].flat[0])}, the pole this conic projection cannot map; drop it"
        )
    return y, x
