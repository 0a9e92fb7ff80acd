"""Model grids: the HRRR native grid, its crops and any other 2-D grid.

The HRRR native grid is a Lambert conformal conic projection
(:data:`~stormcast_plugin.utils.projection.HRRR_PROJECTION`) sampled every
3 km (1059 rows x 1799 columns). StormCast v1 runs on the 512 x 640 crop
``rows 273:785, columns 579:1219`` of that grid (:meth:`ModelGrid.hrrr`);
:func:`hrrr_crop` cuts a smaller crop centred on that domain.

This module needs only NumPy to import.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, Union

import numpy as np

from stormcast_plugin.utils.coords import finite_coordinates, wrap_longitude
from stormcast_plugin.utils.projection import HRRR_PROJECTION, lcc_to_latlon

__all__ = [
    "HRRR_NX",
    "HRRR_NY",
    "HRRR_X",
    "HRRR_Y",
    "STORMCAST_V1_CENTER",
    "STORMCAST_V1_COLS",
    "STORMCAST_V1_ROWS",
    "ModelGrid",
    "hrrr_crop",
]

HRRR_NY, HRRR_NX = 1059, 1799
"""Rows and columns of the HRRR native grid."""
HRRR_DX = 3000.0
HRRR_Y: np.ndarray = -1587306.1525566636 + HRRR_DX * np.arange(HRRR_NY, dtype=np.float64)
"""Projection y (northing, metres) of the 1059 HRRR native rows, south to north."""
HRRR_X: np.ndarray = -2697520.1425219304 + HRRR_DX * np.arange(HRRR_NX, dtype=np.float64)
"""Projection x (easting, metres) of the 1799 HRRR native columns, west to east."""
HRRR_Y.setflags(write=False)
HRRR_X.setflags(write=False)

STORMCAST_V1_ROWS = slice(273, 785)
"""Native HRRR rows of the StormCast v1 domain (512 rows)."""
STORMCAST_V1_COLS = slice(579, 1219)
"""Native HRRR columns of the StormCast v1 domain (640 columns)."""
STORMCAST_V1_CENTER = (529, 899)
"""Native HRRR row and column at the centre of the StormCast v1 domain."""

Window = Union[slice, Sequence[int]]
"""A crop along one axis: ``slice(start, stop)`` or ``(start, stop)``."""



def _parse_window(value: Window, size: int, axis: str, grid: str) -> tuple[int, int]:
    """``(start, stop)`` of a contiguous crop of an axis of length ``size``."""
    if isinstance(value, slice):
        if value.step not in (None, 1):
            raise ValueError(
                f"{axis} crop {value!r} has step {value.step}; only contiguous crops (step 1) are supported"
            )
        start = 0 if value.start is None else value.start
        stop = size if value.stop is None else value.stop
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        start, stop = value
    else:
        raise ValueError(
            f"{axis} crop {value!r} is not a slice or a (start, stop) pair; pass e.g. slice(273, 785)"
        )
    try:
        start_i, stop_i = int(start), int(stop)
        integral = start_i == start and stop_i == stop
    except (TypeError, ValueError):
        integral = False
    if not integral:
        raise ValueError(f"{axis} crop {value!r} has non-integer bounds; pass integers")
    if not 0 <= start_i < stop_i <= size:
        raise ValueError(
            f"{axis} crop {start_i}:{stop_i} is out of range for the {grid} grid with {size} {axis}; "
            f"expected 0 <= start < stop <= {size}"
        )
    return start_i, stop_i


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(frozen=True, eq=False)
class ModelGrid:
    """A 2-D model grid: projection axes, their latitudes/longitudes and a name.

    Build it with :meth:`hrrr` (a crop of the HRRR native grid) or
    :meth:`from_arrays` (any grid). Arrays are stored as read-only float64
    copies; longitudes are normalised to [0, 360).

    Parameters
    ----------
    y : np.ndarray
        ``[H]`` strictly monotonic row coordinate (metres for HRRR).
    x : np.ndarray
        ``[W]`` strictly monotonic column coordinate.
    lat : np.ndarray
        ``[H, W]`` latitudes in degrees north, within [-90, 90].
    lon : np.ndarray
        ``[H, W]`` longitudes in degrees east (normalised to [0, 360)).
    projection : dict, optional
        CF grid-mapping attributes; empty for a grid without a known projection.
    name : str, optional
        A label used in messages.
    native_window : tuple[int, int, int, int], optional
        ``(row_start, row_stop, col_start, col_stop)`` in the HRRR native grid
        when the grid is a crop of it (set by :meth:`hrrr`); None otherwise.
    """

    y: np.ndarray
    x: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    projection: dict = field(default_factory=dict)
    name: str = "custom"
    native_window: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        # Private read-only float64 copies: the caller's arrays are never touched.
        y = np.array(finite_coordinates("y", self.y, 1), dtype=np.float64)
        x = np.array(finite_coordinates("x", self.x, 1), dtype=np.float64)
        for axis, arr in (("y", y), ("x", x)):
            if arr.size < 2:
                raise ValueError(
                    f"{axis} has {arr.size} points; a model grid needs at least 2 along each axis"
                )
            d = np.diff(arr)
            if not ((d > 0).all() or (d < 0).all()):
                first = int(np.flatnonzero(d * d[0] <= 0)[0]) + 1
                raise ValueError(
                    f"{axis} is not strictly monotonic (first break at index {first}); "
                    "pass sorted, unique coordinates"
                )
        shape = (y.size, x.size)
        lat = np.array(finite_coordinates("lat", self.lat, 2), dtype=np.float64)
        lon = finite_coordinates("lon", self.lon, 2)
        for nm, arr in (("lat", lat), ("lon", lon)):
            if arr.shape != shape:
                raise ValueError(f"{nm} has shape {arr.shape}; expected (len(y), len(x)) = {shape}")
        if (np.abs(lat) > 90.0).any():
            raise ValueError(f"lat spans [{lat.min()}, {lat.max()}]; expected latitudes within [-90, 90]")
        lon = np.array(wrap_longitude(lon), dtype=np.float64)
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        # native_window is only set by hrrr(), from ranges it has checked.
        window = None if self.native_window is None else tuple(int(v) for v in self.native_window)
        for arr in (y, x, lat, lon):
            arr.setflags(write=False)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "lat", lat)
        object.__setattr__(self, "lon", lon)
        object.__setattr__(self, "projection", dict(self.projection))
        object.__setattr__(self, "native_window", window)

    def __repr__(self) -> str:
        return f"ModelGrid(name={self.name!r}, shape={self.shape})"

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return (int(self.y.size), int(self.x.size))

    @property
    def size(self) -> int:
        """Number of grid points ``H * W``."""
        return int(self.y.size * self.x.size)

    # -- constructors ------------------------------------------------------

    @classmethod
    def hrrr(
        cls,
        rows: Window = STORMCAST_V1_ROWS,
        cols: Window = STORMCAST_V1_COLS,
        name: str | None = None,
    ) -> "ModelGrid":
        """A crop of the HRRR native 3 km grid (default: the StormCast v1 domain).

        Parameters
        ----------
        rows, cols : slice or (start, stop)
            Native row and column ranges; ``slice(None)`` takes the whole axis.
        name : str, optional
            Label; by default ``"stormcast_v1"`` for the v1 crop and
            ``"hrrr[r0:r1,c0:c1]"`` otherwise.

        Returns
        -------
        ModelGrid

        Raises
        ------
        ValueError
            If a crop is out of range of the 1059 x 1799 native grid.
        """
        r0, r1 = _parse_window(rows, HRRR_NY, "rows", "1059 x 1799 HRRR native")
        c0, c1 = _parse_window(cols, HRRR_NX, "cols", "1059 x 1799 HRRR native")
        if name is None:
            v1 = (r0, r1, c0, c1) == (STORMCAST_V1_ROWS.start, STORMCAST_V1_ROWS.stop,
                                      STORMCAST_V1_COLS.start, STORMCAST_V1_COLS.stop)
            name = "stormcast_v1" if v1 else f"hrrr[{r0}:{r1},{c0}:{c1}]"
        y = HRRR_Y[r0:r1]
        x = HRRR_X[c0:c1]
        lat, lon = lcc_to_latlon(y, x, HRRR_PROJECTION)
        return cls(y=y, x=x, lat=lat, lon=lon, projection=dict(HRRR_PROJECTION),
                   name=name, native_window=(r0, r1, c0, c1))

    @classmethod
    def from_arrays(
        cls,
        y: np.ndarray,
        x: np.ndarray,
        lat: np.ndarray,
        lon: np.ndarray,
        projection: Mapping[str, Any] | None = None,
        name: str = "custom",
    ) -> "ModelGrid":
        """A grid from explicit coordinates (validated; lon normalised to [0, 360)).

        Parameters
        ----------
        y, x : np.ndarray
            1-D strictly monotonic axes of lengths H and W.
        lat, lon : np.ndarray
            ``[H, W]`` finite latitudes (within [-90, 90]) and longitudes.
        projection : Mapping, optional
            CF grid-mapping attributes, if known.
        name : str, optional
            Label, by default ``"custom"``.

        Returns
        -------
        ModelGrid

        Raises
        ------
        ValueError
            If any array has the wrong rank or shape, is not finite, the axes are
            not monotonic, or a latitude lies outside [-90, 90].
        """
        return cls(y=y, x=x, lat=lat, lon=lon, projection=dict(projection or {}), name=name)

    def crop(self, rows: Window, cols: Window) -> "ModelGrid":
        """A sub-grid; ``rows``/``cols`` index this grid (slices or (start, stop)).

        Raises
        ------
        ValueError
            If a crop is out of range of this grid's shape.
        """
        h, w = self.shape
        r0, r1 = _parse_window(rows, h, "rows", f"{self.name!r} {h} x {w}")
        c0, c1 = _parse_window(cols, w, "cols", f"{self.name!r} {h} x {w}")
        if self.native_window is not None:
            nr, _, nc, _ = self.native_window
            return ModelGrid.hrrr((nr + r0, nr + r1), (nc + c0, nc + c1))
        return ModelGrid(
            y=self.y[r0:r1], x=self.x[c0:c1], lat=self.lat[r0:r1, c0:c1], lon=self.lon[r0:r1, c0:c1],
            projection=dict(self.projection), name=f"{self.name}[{r0}:{r1},{c0}:{c1}]",
        )

    # -- serialisation -----------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description.

        HRRR crops store only their native row/column ranges; other grids store
        their arrays as (nested) lists.
        """
        if self.native_window is not None:
            r0, r1, c0, c1 = self.native_window
            return {"kind": "hrrr", "name": self.name, "rows": [r0, r1], "cols": [c0, c1]}
        return {
            "kind": "custom",
            "name": self.name,
            "projection": _jsonable(self.projection),
            "y": self.y.tolist(),
            "x": self.x.tolist(),
            "lat": self.lat.tolist(),
            "lon": self.lon.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelGrid":
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ValueError
            If ``d`` is not a mapping made by :meth:`to_dict` (unknown kind or
            missing keys).
        """
        if not isinstance(d, Mapping):
            raise ValueError(
                f"grid description must be a dict, got {type(d).__name__}; pass ModelGrid.to_dict() output"
            )
        kind = d.get("kind")
        need = {"hrrr": ("rows", "cols"), "custom": ("y", "x", "lat", "lon")}
        if kind not in need:
            raise ValueError(
                f"grid description has kind {kind!r}; expected 'hrrr' or 'custom' (as written by to_dict)"
            )
        missing = [k for k in need[kind] if k not in d]
        if missing:
            raise ValueError(
                f"{kind} grid description is missing keys {missing}; pass ModelGrid.to_dict() output"
            )
        if kind == "hrrr":
            return cls.hrrr(tuple(d["rows"]), tuple(d["cols"]), name=d.get("name"))
        return cls.from_arrays(d["y"], d["x"], d["lat"], d["lon"], projection=d.get("projection") or {},
                               name=d.get("name", "custom"))

    # -- identity and checks -----------------------------------------------

    def fingerprint(self) -> str:
        """Short SHA-1 of the grid's shape and y, x, lat, lon values (a cache key)."""
        cached = self.__dict__.get("_fingerprint")
        if cached is None:
            h = hashlib.sha1(repr(self.shape).encode())
            for arr in (self.y, self.x, self.lat, self.lon):
                h.update(np.ascontiguousarray(arr, dtype=np.float64).tobytes())
            cached = h.hexdigest()[:16]
            object.__setattr__(self, "_fingerprint", cached)
        return cached

    def check_coords(self, y: np.ndarray, x: np.ndarray, atol: float = 1.0) -> None:
        """Check that ``y``/``x`` are this grid's axes to within ``atol``.

        Raises
        ------
        ValueError
            Naming the first coordinate (and index) that differs, and the grid
            expected.
        """
        for axis, got, want in (("y", y, self.y), ("x", x, self.x)):
            try:
                arr = np.asarray(got, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(
                    f"coordinate {axis} is not numeric ({type(got).__name__}); pass the grid's {axis} values"
                ) from None
            if arr.shape != want.shape:
                raise ValueError(
                    f"coordinate {axis} has shape {arr.shape}; expected {want.shape} for grid {self.name!r} "
                    f"of shape {self.shape}; pass data on this grid or build a matching ModelGrid"
                )
            bad = np.flatnonzero(~(np.abs(arr - want) <= atol))
            if bad.size:
                i = int(bad[0])
                raise ValueError(
                    f"coordinate {axis}[{i}] = {arr[i]!r} differs from {want[i]!r} of grid {self.name!r} "
                    f"(shape {self.shape}) by more than atol={atol}; pass data on this grid or build a "
                    "matching ModelGrid"
                )


def hrrr_crop(shape: Sequence[int]) -> ModelGrid:
    """An ``(H, W)`` crop of the HRRR grid centred on the StormCast v1 domain.

    The crop's rows are centred on native row 529 and its columns on native
    column 899 (the centre of StormCast v1's 512 x 640 domain).

    Parameters
    ----------
    shape : (int, int)
        Rows and columns of the crop, at least 2 each.

    Returns
    -------
    ModelGrid

    Raises
    ------
    ValueError
        If ``shape`` is not two integers of at least 2, or the crop does not
        fit in the 1059 x 1799 native HRRR grid.
    """
    try:
        h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"crop shape {shape!r} is not a pair of integers; pass (H, W)") from None
    if h < 2 or w < 2:
        raise ValueError(f"crop shape {h}x{w} is too small; give at least 2 rows and 2 columns")
    r0 = STORMCAST_V1_CENTER[0] - h // 2
    c0 = STORMCAST_V1_CENTER[1] - w // 2
    if r0 < 0 or r0 + h > HRRR_NY or c0 < 0 or c0 + w > HRRR_NX:
        raise ValueError(
            f"a {h}x{w} crop centred on HRRR row {STORMCAST_V1_CENTER[0]}, column {STORMCAST_V1_CENTER[1]} "
            f"does not fit in the {HRRR_NY} x {HRRR_NX} native grid; use at most "
            f"{2 * min(STORMCAST_V1_CENTER[0], HRRR_NY - STORMCAST_V1_CENTER[0])} rows and "
            f"{2 * min(STORMCAST_V1_CENTER[1], HRRR_NX - STORMCAST_V1_CENTER[1])} columns, "
            "or pass a ModelGrid"
        )
    return ModelGrid.hrrr(rows=(r0, r0 + h), cols=(c0, c0 + w))
