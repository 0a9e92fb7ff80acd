"""The StormCast dataset format: one zarr store per dataset.

Layout (zarr format 2, consolidated metadata, readable with
``xarray.open_zarr``)::

    time            [time]                      int64 hours since 1970-01-01 (hourly, sorted, unique)
    variable        [variable]                  state variable names (earth2studio names)
    cond_variable   [cond_variable]             conditioning variable names
    invariant       [invariant]                 invariant names (lsm, orography)
    y, x            [y], [x]                    projected coordinates of the model grid (m)
    grid_lat, grid_lon [y, x]                   2-D latitude / longitude (deg N, deg E in 0..360)
    lat, lon        [lat], [lon]                regular grid of the conditioning (deg)
    state           [time, variable, y, x]      float32, one chunk per hour
    conditioning    [time, cond_variable, lat, lon]  float32, one chunk per hour
    invariants      [invariant, y, x]           float32
    written         [time]                      uint8: 1 once the hour is completely written
    missing         [time]                      uint8: 1 for hours the sources could not provide
    state_mean, state_std                [variable]       float64 normalisation statistics
    conditioning_mean, conditioning_std  [cond_variable]  float64

Group attributes: ``format`` ("stormcast-dataset"), ``format_version``,
``grid`` (name, projection and, for HRRR crops, the native window),
``statistics_period`` and free-form ``source``/``description``.

An hour is written data first, flag last, each in its own chunk: a process
killed at any moment leaves every flagged hour complete, and at most the hour
in flight to redo. Unwritten values read as NaN.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from stormcast_plugin.io.replace import DATASET, check_replaceable
from stormcast_plugin.utils.time import as_time, as_times, epoch_hours, format_time, format_times

__all__ = ["FORMAT", "FORMAT_VERSION", "DatasetStore", "StoreError"]

FORMAT = "stormcast-dataset"
FORMAT_VERSION = 1
_EPOCH = np.datetime64("1970-01-01T00", "h")


class StoreError(ValueError):
    """A dataset store is missing, malformed or inconsistent."""


def _hours(times: Iterable[Any]) -> np.ndarray:
    """Whole hours since 1970-01-01T00 (int64) of the store's times."""
    try:
        t = as_times(times, "times", whole_hours=True)
    except ValueError as err:
        raise StoreError(str(err)) from None
    return np.round(epoch_hours(t)).astype(np.int64)


def _names(values: Sequence[str], what: str) -> np.ndarray:
    names = [str(v) for v in values]
    if not names:
        raise StoreError(f"{what} names are empty")
    dup = sorted({v for v in names if names.count(v) > 1})
    if dup:
        raise StoreError(f"{what} names are duplicated: {dup}")
    width = max(8, max(len(n) for n in names))
    return np.array(names, dtype=f"<U{width}")


class DatasetStore:
    """A StormCast dataset on disk (see the module docstring for the layout).

    Use :meth:`create` to make one and :meth:`open` to read or extend one.
    """

    def __init__(self, path: Path, group: Any) -> None:
        self.path = Path(path)
        self.group = group
        self._load_index()

    # ------------------------------------------------------------------ create
    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        times: Sequence[Any],
        state_variables: Sequence[str],
        conditioning_variables: Sequence[str],
        invariant_names: Sequence[str],
        grid: Any,
        cond_lat: np.ndarray,
        cond_lon: np.ndarray,
        overwrite: bool = False,
        attrs: Mapping[str, Any] | None = None,
    ) -> "DatasetStore":
        """Create an empty store (all hours unwritten).

        Parameters
        ----------
        path : path-like
            Destination folder (``*.zarr``).
        times : sequence of datetime-like
            Hourly times, sorted and unique.
        state_variables, conditioning_variables, invariant_names : sequence of str
            Channel names, in channel order.
        grid : ModelGrid
            The model grid of the state.
        cond_lat, cond_lon : np.ndarray
            1-D latitude / longitude of the conditioning grid.
        overwrite : bool
            Replace an existing store.
        attrs : mapping, optional
            Extra group attributes (``source``, ``description`` ...).
        """
        import zarr

        path = Path(path)
        if path.exists():
            check_replaceable(path, [DATASET], overwrite=overwrite)  # only a dataset store this package wrote
            shutil.rmtree(path)
        hours = _hours(times)
        if (np.diff(hours) <= 0).any():
            raise StoreError("times must be sorted and unique")
        state_names = _names(state_variables, "state variable")
        cond_names = _names(conditioning_variables, "conditioning variable")
        inv_names = _names(invariant_names, "invariant")
        cond_lat = np.asarray(cond_lat, dtype=np.float64)
        cond_lon = np.asarray(cond_lon, dtype=np.float64)
        if cond_lat.ndim != 1 or cond_lon.ndim != 1:
            raise StoreError("cond_lat and cond_lon must be 1-D (a regular lat/lon grid)")
        h, w = grid.shape
        nt, c, ce, ci = len(hours), len(state_names), len(cond_names), len(inv_names)

        g = zarr.open_group(str(path), mode="w", zarr_format=2)

        def arr(name, dims, data=None, *, shape=None, dtype=None, chunks=None, fill=None, **attrs_):
            shape = shape if shape is not None else np.shape(data)
            a = g.create_array(name, shape=shape, dtype=dtype or np.asarray(data).dtype,
                               chunks=chunks or shape, fill_value=fill)
            a.attrs.update({"_ARRAY_DIMENSIONS": list(dims), **attrs_})
            if data is not None:
                a[...] = data
            return a

        arr("time", ["time"], hours, units="hours since 1970-01-01 00:00:00", calendar="proleptic_gregorian")
        arr("variable", ["variable"], state_names)
        arr("cond_variable", ["cond_variable"], cond_names)
        arr("invariant", ["invariant"], inv_names)
        arr("y", ["y"], np.asarray(grid.y, np.float64), units="m")
        arr("x", ["x"], np.asarray(grid.x, np.float64), units="m")
        arr("grid_lat", ["y", "x"], np.asarray(grid.lat, np.float64), units="degrees_north")
        arr("grid_lon", ["y", "x"], np.asarray(grid.lon, np.float64), units="degrees_east")
        arr("lat", ["lat"], cond_lat, units="degrees_north")
        arr("lon", ["lon"], cond_lon, units="degrees_east")
        arr("state", ["time", "variable", "y", "x"], shape=(nt, c, h, w), dtype="float32",
            chunks=(1, c, h, w), fill=float("nan"))
        arr("conditioning", ["time", "cond_variable", "lat", "lon"], shape=(nt, ce, len(cond_lat), len(cond_lon)),
            dtype="float32", chunks=(1, ce, len(cond_lat), len(cond_lon)), fill=float("nan"))
        arr("invariants", ["invariant", "y", "x"], shape=(ci, h, w), dtype="float32", fill=float("nan"))
        arr("written", ["time"], shape=(nt,), dtype="uint8", chunks=(1,))
        arr("missing", ["time"], shape=(nt,), dtype="uint8", chunks=(1,))
        for name, dim, n in (("state", "variable", c), ("conditioning", "cond_variable", ce)):
            arr(f"{name}_mean", [dim], shape=(n,), dtype="float64", fill=float("nan"))
            arr(f"{name}_std", [dim], shape=(n,), dtype="float64", fill=float("nan"))
        grid_attrs = {"name": grid.name, "projection": dict(grid.projection or {})}
        window = getattr(grid, "native_window", None)
        if window is not None:
            grid_attrs["native_window"] = [int(v) for v in window]
        g.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "grid": grid_attrs,
                        **dict(attrs or {})})
        zarr.consolidate_metadata(str(path))
        return cls.open(path, mode="r+", validate=False)

    # -------------------------------------------------------------------- open
    @classmethod
    def open(cls, path: str | Path, mode: str = "r", *, validate: bool = True) -> "DatasetStore":
        """Open an existing store.

        Parameters
        ----------
        path : path-like
            The store folder.
        mode : str
            ``"r"`` to read, ``"r+"`` to write hours and statistics.
        validate : bool
            Check structure, times and statistics (see :meth:`validate`).
        """
        import zarr

        path = Path(path)
        if not path.exists():
            raise StoreError(f"dataset {path} does not exist; create it with `stormcast data synth` or "
                             "`stormcast data prepare`")
        try:
            g = zarr.open_group(str(path), mode=mode, zarr_format=2, use_consolidated=False)
        except Exception as err:  # zarr raises several kinds for a non-store
            raise StoreError(f"{path} is not a readable zarr store ({err})") from err
        if g.attrs.get("format") != FORMAT:
            raise StoreError(f"{path} is not a StormCast dataset (format attribute {g.attrs.get('format')!r}, "
                             f"expected {FORMAT!r})")
        store = cls(path, g)
        if validate:
            store.validate()
        return store

    def _load_index(self) -> None:
        g = self.group
        required = ["time", "variable", "cond_variable", "invariant", "y", "x", "grid_lat", "grid_lon",
                    "lat", "lon", "state", "conditioning", "invariants", "written", "missing",
                    "state_mean", "state_std", "conditioning_mean", "conditioning_std"]
        absent = [k for k in required if k not in g]
        if absent:
            raise StoreError(f"dataset {self.path} lacks arrays {absent}; it is incomplete or not in this format")
        hours = np.asarray(g["time"][:], dtype=np.int64)
        self.times = (_EPOCH + hours.astype("timedelta64[h]")).astype("datetime64[ns]")
        self.state_variables = tuple(str(v) for v in g["variable"][:])
        self.conditioning_variables = tuple(str(v) for v in g["cond_variable"][:])
        self.invariant_names = tuple(str(v) for v in g["invariant"][:])
        self.cond_lat = np.asarray(g["lat"][:])
        self.cond_lon = np.asarray(g["lon"][:])
        self._grid = None

    # -------------------------------------------------------------- properties
    @property
    def grid(self) -> Any:
        """The model grid (:class:`~stormcast_plugin.utils.grid.ModelGrid`)."""
        if self._grid is None:
            from stormcast_plugin.utils.grid import ModelGrid

            g = self.group
            meta = dict(g.attrs.get("grid", {}))
            self._grid = ModelGrid.from_arrays(g["y"][:], g["x"][:], g["grid_lat"][:], g["grid_lon"][:],
                                               projection=meta.get("projection") or None,
                                               name=meta.get("name", "custom"))
        return self._grid

    @property
    def written(self) -> np.ndarray:
        """Boolean mask of completely written hours."""
        return np.asarray(self.group["written"][:], dtype=bool)

    @property
    def missing(self) -> np.ndarray:
        """Boolean mask of hours recorded as missing."""
        return np.asarray(self.group["missing"][:], dtype=bool)

    @property
    def missing_times(self) -> np.ndarray:
        """Times recorded as missing."""
        return self.times[self.missing]

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    def __len__(self) -> int:
        return len(self.times)

    def __repr__(self) -> str:
        return (f"DatasetStore({str(self.path)!r}, {len(self)} hours {format_time(self.times[0])}..{format_time(self.times[-1])}, "
                f"{len(self.state_variables)} state / {len(self.conditioning_variables)} conditioning variables, "
                f"grid {self.grid.shape}, {int(self.written.sum())} written, {int(self.missing.sum())} missing)")

    # ------------------------------------------------------------------ lookup
    def index_of(self, times: Any) -> np.ndarray:
        """Indices of ``times`` (see :func:`~stormcast_plugin.utils.time.as_times`); unknown times
        raise StoreError naming them."""
        want = as_times(times, "times")
        idx = np.searchsorted(self.times, want)
        ok = (idx < len(self.times)) & (self.times[np.minimum(idx, len(self.times) - 1)] == want)
        if not ok.all():
            raise StoreError(
                f"dataset {self.path} has no hours {format_times(want[~ok])}; it covers "
                f"{format_time(self.times[0])} .. {format_time(self.times[-1])}"
            )
        return idx

    def variable_index(self, names: Sequence[str], kind: str = "state") -> list[int]:
        """Channel indices of ``names`` (StoreError naming the unknown ones)."""
        have = self.state_variables if kind == "state" else self.conditioning_variables
        unknown = [n for n in names if n not in have]
        if unknown:
            raise StoreError(f"dataset {self.path} has no {kind} variables {unknown}; it has {list(have)}")
        return [have.index(n) for n in names]

    # ------------------------------------------------------------------- read
    def _read(self, name: str, index: Any, channels: list[int] | None) -> np.ndarray:
        """Hours ``index`` of array ``name``; a damaged hour raises StoreError naming it."""
        a = self.group[name]
        if isinstance(index, (int, np.integer)):
            idx = np.array([int(index)])
        elif isinstance(index, slice):
            idx = np.arange(len(self.times))[index]
        else:
            idx = np.asarray(index, dtype=np.int64)
        rows = []
        for i in idx:
            try:
                rows.append(np.asarray(a[int(i)]))
            except Exception as err:  # noqa: BLE001 - any codec or metadata failure of one chunk
                raise StoreError(f"dataset {self.path}: array {name!r} at {format_time(self.times[int(i)])} cannot "
                                 f"be read ({type(err).__name__}: {err}); the store is damaged: rewrite that hour "
                                 "(`stormcast data prepare` resumes) or restore the store") from None
        data = np.stack(rows) if rows else np.empty((0,) + a.shape[1:], a.dtype)
        if name in ("state", "conditioning") and len(idx):
            # a written hour whose chunk is gone reads as the NaN fill value: report it, never return it
            empty = np.isnan(data.reshape(len(idx), -1)).all(axis=1)
            if empty.any():  # the flags are read only then
                empty &= self.written[idx] & ~self.missing[idx]
            if empty.any():
                raise StoreError(f"dataset {self.path}: {name} of {format_times(self.times[idx[empty]])} is marked "
                                 "written but its data is missing (a lost or deleted chunk); rewrite those hours "
                                 "(`stormcast data prepare` resumes) or restore the store")
        if channels is not None:
            data = data[:, channels]
        return data

    def read_state(self, index: Any, variables: Sequence[str] | None = None) -> np.ndarray:
        """State ``[n, C, H, W]`` at time index/indices/slice ``index``."""
        ch = None if variables is None else self.variable_index(variables, "state")
        return self._read("state", index, ch)

    def read_conditioning(self, index: Any, variables: Sequence[str] | None = None) -> np.ndarray:
        """Conditioning ``[n, Ce, nlat, nlon]`` on its own grid."""
        ch = None if variables is None else self.variable_index(variables, "conditioning")
        return self._read("conditioning", index, ch)

    def read_invariants(self, names: Sequence[str] | None = None) -> np.ndarray:
        """Invariants ``[Ci, H, W]``."""
        inv = np.asarray(self.group["invariants"][:])
        if names is None:
            return inv
        unknown = [n for n in names if n not in self.invariant_names]
        if unknown:
            raise StoreError(f"dataset {self.path} has no invariants {unknown}; it has {list(self.invariant_names)}")
        return inv[[self.invariant_names.index(n) for n in names]]

    @property
    def has_statistics(self) -> bool:
        return bool(np.isfinite(self.group["state_std"][:]).all())

    def statistics(self) -> dict[str, np.ndarray]:
        """Normalisation statistics (StoreError when absent or invalid)."""
        stats = {k: np.asarray(self.group[k][:]) for k in
                 ("state_mean", "state_std", "conditioning_mean", "conditioning_std")}
        self._check_statistics(stats)
        return stats

    def _check_statistics(self, stats: Mapping[str, np.ndarray]) -> None:
        for prefix, names in (("state", self.state_variables), ("conditioning", self.conditioning_variables)):
            mean, std = stats[f"{prefix}_mean"], stats[f"{prefix}_std"]
            bad = [n for n, m, s in zip(names, mean, std) if not (np.isfinite(m) and np.isfinite(s) and s > 0)]
            if bad:
                raise StoreError(
                    f"dataset {self.path}: {prefix} statistics are missing, NaN or have zero std for {bad[:10]}; "
                    "recompute them (`stormcast data prepare` computes them over the training period)"
                )

    # ------------------------------------------------------------------ write
    def _writable(self) -> None:
        if getattr(self.group, "read_only", False):
            raise StoreError(f"dataset {self.path} is open read-only; open it with mode='r+'")

    def write_hour(self, index: int, state: np.ndarray, conditioning: np.ndarray) -> None:
        """Write one hour (data first, then the ``written`` flag)."""
        self._writable()
        s_shape = self.group["state"].shape[1:]
        c_shape = self.group["conditioning"].shape[1:]
        state = np.asarray(state, dtype=np.float32)
        conditioning = np.asarray(conditioning, dtype=np.float32)
        if state.shape != s_shape or conditioning.shape != c_shape:
            raise StoreError(f"hour {format_time(self.times[index])}: state {state.shape} / conditioning {conditioning.shape} "
                             f"do not match the store's {s_shape} / {c_shape}")
        self.group["state"][int(index)] = state
        self.group["conditioning"][int(index)] = conditioning
        self.group["missing"][int(index)] = 0
        self.group["written"][int(index)] = 1

    def mark_missing(self, index: int) -> None:
        """Record an hour the sources could not provide."""
        self._writable()
        self.group["missing"][int(index)] = 1
        self.group["written"][int(index)] = 1

    def write_invariants(self, invariants: np.ndarray) -> None:
        self._writable()
        inv = np.asarray(invariants, dtype=np.float32)
        if inv.shape != self.group["invariants"].shape or not np.isfinite(inv).all():
            raise StoreError(f"invariants must be finite with shape {self.group['invariants'].shape}; got {inv.shape}")
        self.group["invariants"][...] = inv

    def write_statistics(self, state_mean: np.ndarray, state_std: np.ndarray, conditioning_mean: np.ndarray,
                         conditioning_std: np.ndarray, period: tuple[Any, Any] | None = None) -> None:
        """Store normalisation statistics (validated: finite, std > 0)."""
        self._writable()
        stats = {"state_mean": state_mean, "state_std": state_std,
                 "conditioning_mean": conditioning_mean, "conditioning_std": conditioning_std}
        stats = {k: np.asarray(v, dtype=np.float64) for k, v in stats.items()}
        for k, v in stats.items():
            if v.shape != self.group[k].shape:
                raise StoreError(f"{k} has shape {v.shape}; expected {self.group[k].shape}")
        self._check_statistics(stats)
        for k, v in stats.items():
            self.group[k][...] = v
        if period is not None:
            self.group.attrs["statistics_period"] = [format_time(as_time(p, "statistics period bound"))
                                                     for p in period]

    def set_attrs(self, **attrs: Any) -> None:
        self._writable()
        self.group.attrs.update(json.loads(json.dumps(attrs, default=str)))

    def consolidate(self) -> None:
        """Refresh the consolidated metadata (after attribute changes)."""
        import zarr

        zarr.consolidate_metadata(str(self.path))

    # --------------------------------------------------------------- validate
    def validate(
        self,
        *,
        state_variables: Sequence[str] | None = None,
        conditioning_variables: Sequence[str] | None = None,
        grid: Any = None,
        require_statistics: bool = False,
        check_values: bool = False,
    ) -> "DatasetStore":
        """Check the store before training or forecasting.

        Parameters
        ----------
        state_variables, conditioning_variables : sequence of str, optional
            Variables a model needs: missing ones are named.
        grid : ModelGrid, optional
            The grid a model runs on: a different store grid is rejected.
        require_statistics : bool
            Statistics must exist, be finite and have std > 0.
        check_values : bool
            Scan every written hour for NaN (slow for big stores).

        Raises
        ------
        StoreError
            Naming the first problem found and how to fix it.
        """
        hours = np.asarray(self.group["time"][:], dtype=np.int64)
        if (np.diff(hours) == 0).any():
            dup = self.times[1:][np.diff(hours) == 0][:5]
            raise StoreError(f"dataset {self.path} has duplicated times {format_times(dup)}")
        if (np.diff(hours) < 0).any():
            at = self.times[1:][np.diff(hours) < 0][:5]
            raise StoreError(f"dataset {self.path} has unsorted times (going back at {format_times(at)})")
        for want, have, what in ((state_variables, self.state_variables, "state"),
                                 (conditioning_variables, self.conditioning_variables, "conditioning")):
            if want is not None:
                lack = [v for v in want if v not in have]
                if lack:
                    raise StoreError(f"dataset {self.path} lacks {what} variables {lack}; the model needs "
                                     f"{list(want)}")
        if grid is not None:
            mine = self.grid
            if tuple(mine.shape) != tuple(grid.shape):
                raise StoreError(f"dataset {self.path} is on a {mine.shape} grid; the model grid "
                                 f"{grid.name!r} is {tuple(grid.shape)}")
            mine.check_coords(np.asarray(grid.y), np.asarray(grid.x))
        if require_statistics:
            self.statistics()
        if check_values:
            for i in np.nonzero(self.written & ~self.missing)[0]:
                for name, names in (("state", self.state_variables), ("conditioning", self.conditioning_variables)):
                    block = np.asarray(self.group[name][int(i)])
                    bad = ~np.isfinite(block).reshape(block.shape[0], -1).all(axis=1)
                    if bad.any():
                        raise StoreError(f"dataset {self.path}: {name} at {format_time(self.times[i])} has NaN or infinite "
                                         f"values in {[n for n, b in zip(names, bad) if b][:10]}")
        return self

    def to_xarray(self) -> Any:
        """The store as an ``xarray.Dataset`` (lazy)."""
        import xarray as xr

        return xr.open_zarr(str(self.path), consolidated=False)
