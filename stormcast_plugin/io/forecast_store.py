"""Forecast stores: the one writer and reader of the files ``stormcast forecast`` makes.

A forecast store is a zarr folder (zarr format 3, written by earth2studio's
``ZarrBackend``) or a netCDF file (``NetCDF4Backend``) holding one variable
per weather variable over ``(ensemble, time, lead_time, hrrr_y, hrrr_x)``
(``time``: the initial times, one for a forecast, many for a hindcast
campaign), 2-D ``lat``/``lon``, the flags :data:`WRITTEN` and global
attributes, among them ``completed_lead_hours``: the last lead hour written
for every member of every initial time (-1 before the first).

``written[ensemble, time, lead_time]`` is 1 for each member-hour whose
fields are all in the store: a writer sets it only after the fields, so a
run killed at any moment leaves flags that never claim a missing field, and
a resumed run computes exactly the member-hours without a flag. In zarr the
fields are chunked per member, initial time and lead hour, and the flags per
block of ``member_chunk`` members and one initial time: processes that write
different such blocks never write the same chunk.

Writing (:func:`open_output`, :func:`open_existing`,
:func:`add_forecast_arrays`, :func:`write_hour`, :func:`set_attributes`,
:func:`close_output`): hours not yet written read as NaN in both formats, and
a zarr store carries consolidated metadata that is kept up to date with its
attributes, so that ``xarray.open_zarr(path)`` opens it directly.

Reading (:func:`open_store`, :func:`open_forecast`, :func:`load_lead`,
:func:`read_written`, :func:`read_state`): every error names the store, and
a read error the array and the lead hour; :func:`open_forecast` treats the
member-hours not written (or, in stores without flags, the hours past
``completed_lead_hours``) as missing and warns when there are some.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from stormcast_plugin.io.replace import FORECAST, check_replaceable

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

__all__ = [
    "NETCDF_SUFFIXES",
    "WRITTEN",
    "ForecastStoreError",
    "PartialForecastWarning",
    "add_forecast_arrays",
    "close_output",
    "completed_from_written",
    "completed_lead_hours",
    "lead_hours",
    "load_lead",
    "open_existing",
    "open_forecast",
    "open_output",
    "open_store",
    "read_state",
    "read_written",
    "set_attributes",
    "write_hour",
]

NETCDF_SUFFIXES: tuple[str, ...] = (".nc", ".nc4", ".netcdf", ".h5", ".hdf5")
"""File suffixes read and written as netCDF; anything else is a zarr store."""

_METADATA_FILES = ("zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata")

WRITTEN = "written"
"""The flag array: 1 for each ``(ensemble, time, lead_time)`` member-hour in the store."""
_FLAG_DIMS = ("ensemble", "time", "lead_time")


class ForecastStoreError(ValueError):
    """A forecast store that cannot be opened or read (corrupt metadata or chunks)."""


class PartialForecastWarning(UserWarning):
    """A forecast store whose run stopped before its last lead hour."""


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------

def _is_netcdf(path: Path) -> bool:
    return path.suffix.lower() in NETCDF_SUFFIXES


def open_output(path: str | Path, *, fmt: str | None = None, overwrite: bool = False) -> Any:
    """Create an earth2studio IO backend for a new store at ``path``.

    Parameters
    ----------
    path : str or Path
        ``.zarr`` folder or ``.nc`` file.
    fmt : {"zarr", "netcdf"}, optional
        Default: netCDF for the suffixes of :data:`NETCDF_SUFFIXES`, zarr otherwise.
    overwrite : bool, optional
        Replace an existing store; otherwise an existing path is refused.

    Returns
    -------
    earth2studio.io.ZarrBackend or earth2studio.io.NetCDF4Backend

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is not set, or it is not a
        forecast store this package wrote (:func:`stormcast_plugin.io.replace.check_replaceable`).
    ValueError
        For an unknown ``fmt``.
    """
    path = Path(path)
    fmt = fmt or ("netcdf" if _is_netcdf(path) else "zarr")
    if fmt not in ("zarr", "netcdf"):
        raise ValueError(f"output format {fmt!r} is not known; use 'zarr' or 'netcdf'")
    if path.exists():
        check_replaceable(path, [FORECAST], overwrite=overwrite)  # only a forecast store this package wrote
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "zarr":
        from earth2studio.io import ZarrBackend

        return ZarrBackend(str(path), backend_kwargs={"overwrite": False})
    from earth2studio.io import NetCDF4Backend

    return NetCDF4Backend(str(path), backend_kwargs={"mode": "w"})


def _kind(io: Any) -> str:
    root = getattr(io, "root", None)
    if hasattr(root, "create_array"):
        return "zarr"
    if hasattr(root, "createVariable"):
        return "netcdf"
    return "other"


def _consolidate(io: Any) -> None:
    import zarr

    with warnings.catch_warnings():
        # zarr 3 notes that consolidated metadata is an extension of its format 3; xarray reads it
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        zarr.consolidate_metadata(io.store)


def add_forecast_arrays(io: Any, coords: "OrderedDict[str, np.ndarray]", variables: Sequence[str], *,
                        member_chunk: int | None = None) -> None:
    """Create the forecast arrays, reading as NaN until written.

    Parameters
    ----------
    io : earth2studio IO backend
        From :func:`open_output` (other backends get their own default fill).
    coords : OrderedDict
        The full coordinates, e.g. ``ensemble, time, lead_time, hrrr_y, hrrr_x``.
    variables : sequence of str
        One float32 array per name.
    member_chunk : int, optional
        Also create the :data:`WRITTEN` flags (zarr and netCDF; ``coords``
        must hold ``ensemble, time, lead_time``), chunked in zarr by this
        many members: the members one writer steps together.
    """
    kind = _kind(io)
    names = [str(v) for v in variables]
    flags = member_chunk is not None and kind in ("zarr", "netcdf")
    shape = tuple(len(coords[d]) for d in _FLAG_DIMS) if flags else ()
    if kind == "zarr":
        io.add_array(coords, [])  # the dimension arrays first: they take no NaN fill value
        io.add_array(coords, names, fill_value=float("nan"))
        if flags:
            io.root.create_array(WRITTEN, shape=shape, chunks=(int(member_chunk), 1, shape[2]), dtype="uint8",
                                 fill_value=0, dimension_names=list(_FLAG_DIMS))
        _consolidate(io)
    elif kind == "netcdf":
        io.add_array(coords, [])
        # The backend creates variables without a fill value; unwritten values would then read
        # back as netCDF's default fill (9.97e36). A NaN _FillValue makes them NaN.
        for name in names:
            io.root.createVariable(name, "f4", list(coords), fill_value=np.float32(np.nan))
        if flags:
            io.root.createVariable(WRITTEN, "u1", _FLAG_DIMS, fill_value=False)[:] = 0
        io.root.sync()
    else:
        io.add_array(coords, names)


def open_existing(path: str | Path) -> Any:
    """A ``ZarrBackend`` on a forecast store that exists, to write more of it.

    Used by the ranks of a distributed run other than rank 0 (which created
    the store) and by a resumed run. Nothing of the store is changed by
    opening it.

    Raises
    ------
    ForecastStoreError
        When ``path`` is not a zarr forecast store with :data:`WRITTEN` flags.
    """
    path = Path(path)
    if _is_netcdf(path) or not (path / "zarr.json").is_file():
        raise ForecastStoreError(f"{path} is not a zarr forecast store; only zarr stores can be written by several "
                                 "processes or resumed (write a .zarr with --format zarr)")
    from earth2studio.io import ZarrBackend

    io = ZarrBackend(str(path), backend_kwargs={"overwrite": False})
    if WRITTEN not in io.root:
        raise ForecastStoreError(f"{path} has no {WRITTEN!r} flags (a store written before they existed, or not "
                                 "by stormcast forecast/hindcast); it cannot be resumed: write it again")
    return io


def write_hour(io: Any, fields: Any, coords: "OrderedDict[str, np.ndarray]", variables: Sequence[str]) -> None:
    """Write the fields of some members at one initial time and lead hour, then their flags.

    Parameters
    ----------
    io : earth2studio IO backend
    fields : torch.Tensor
        ``[member, 1, 1, variable, y, x]``.
    coords : OrderedDict
        ``ensemble`` (the members, ascending), ``time`` and ``lead_time``
        (one value each), ``hrrr_y``, ``hrrr_x``.
    variables : sequence of str
        The names along ``fields``' variable axis.
    """
    fields = fields.cpu()  # one copy off the device, not one per variable
    io.write([fields[..., i, :, :] for i in range(len(variables))], coords, list(variables))
    kind = _kind(io)
    if kind not in ("zarr", "netcdf") or WRITTEN not in (io.root if kind == "zarr" else io.root.variables):
        return
    members = np.asarray(coords["ensemble"]).astype(np.int64)
    t = _index_of(io, "time", coords["time"][0])
    lead = _index_of(io, "lead_time", coords["lead_time"][0])
    if kind == "zarr":
        io.root[WRITTEN].oindex[members, t, lead] = np.uint8(1)
    else:
        io.root.variables[WRITTEN][members, t, lead] = 1
        io.root.sync()


def _index_of(io: Any, dim: str, value: Any) -> int:
    values = np.asarray(io.coords[dim])
    return int(np.nonzero(values == np.asarray(value, dtype=values.dtype))[0][0])


def read_written(io: Any) -> np.ndarray | None:
    """The :data:`WRITTEN` flags ``[ensemble, time, lead_time]`` as booleans (None for a store without them)."""
    kind = _kind(io)
    if kind == "zarr" and WRITTEN in io.root:
        return np.asarray(io.root[WRITTEN][:]) == 1
    if kind == "netcdf" and WRITTEN in io.root.variables:
        return np.asarray(io.root.variables[WRITTEN][:]) == 1
    return None


def read_state(io: Any, variables: Sequence[str], members: Sequence[int], time_index: int,
               lead_index: int) -> np.ndarray:
    """The stored fields ``[member, variable, y, x]`` (float32) of some members at one time and lead."""
    members = np.asarray(members, dtype=np.int64)
    return np.stack([np.asarray(io.root[v].oindex[members, time_index, lead_index]) for v in variables], axis=1)


def completed_from_written(written: np.ndarray) -> int:
    """The last lead index written for every member and initial time (-1 before the first)."""
    whole = written.reshape(-1, written.shape[-1]).all(axis=0)
    return int(np.argmin(whole)) - 1 if not whole.all() else written.shape[-1] - 1


def set_attributes(io: Any, attrs: dict[str, Any]) -> None:
    """Write global attributes now (and refresh a zarr store's consolidated metadata).

    Parameters
    ----------
    io : earth2studio IO backend
        A zarr or netCDF backend; others are left alone.
    attrs : dict
        Attribute values (booleans become 0/1 in netCDF).
    """
    kind = _kind(io)
    if kind == "zarr":
        io.root.attrs.update(attrs)
        _consolidate(io)
    elif kind == "netcdf":
        for k, v in attrs.items():
            io.root.setncattr(k, int(v) if isinstance(v, bool) else v)
        io.root.sync()


def close_output(io: Any) -> None:
    """Close a backend that holds a file open (netCDF); a no-op for the others."""
    close = getattr(io, "close", None)
    if callable(close):
        close()


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------

def _bad_metadata(path: Path) -> list[tuple[str, str]]:
    """``(file relative to the store, JSON error)`` for each metadata file that does not parse."""
    bad = []
    for p in sorted(path.rglob("*")):
        if p.name in _METADATA_FILES and p.is_file():
            try:
                json.loads(p.read_text())
            except (ValueError, UnicodeDecodeError) as err:
                bad.append((str(p.relative_to(path)), str(err)))
    return bad


def _metadata_error(path: Path, err: Exception) -> ForecastStoreError:
    bad = _bad_metadata(path) if path.is_dir() else []
    if not bad:
        return ForecastStoreError(f"cannot open the forecast store {path}: {type(err).__name__}: {err}")
    parts = []
    for rel, why in bad:
        array = str(Path(rel).parent)
        what = "the store's group metadata" if array == "." else f"array {array!r} (every lead hour of it)"
        parts.append(f"{rel} ({what}) is not valid JSON: {why}")
    return ForecastStoreError(f"cannot open the forecast store {path}: " + "; ".join(parts)
                              + ". Restore the file(s) or write the forecast again (stormcast forecast --overwrite)")


def _mask_netcdf_default_fill(ds: "xr.Dataset") -> "xr.Dataset":
    """NaN for netCDF's default fill value in variables stored without a _FillValue."""
    try:
        import netCDF4
    except ImportError:  # read by another engine; its files carry their own fill values
        return ds
    for name, da in ds.data_vars.items():
        enc = da.encoding
        if "_FillValue" in enc or "missing_value" in enc or not np.issubdtype(da.dtype, np.floating):
            continue
        fill = netCDF4.default_fillvals.get(np.dtype(enc.get("dtype", da.dtype)).str[1:])
        if fill is not None:
            ds[name] = da.where(da != np.asarray(fill, dtype=da.dtype))
    return ds


def open_store(source: Any) -> "xr.Dataset":
    """Open a zarr store or netCDF file lazily (a Dataset passes through).

    Zarr stores open from their consolidated metadata when they have it, and
    without a warning when they do not.

    Parameters
    ----------
    source : str, Path or xarray.Dataset
        A zarr folder, a netCDF file or an open dataset.

    Returns
    -------
    xarray.Dataset

    Raises
    ------
    FileNotFoundError
        If the path does not exist.
    ForecastStoreError
        If it cannot be read, naming the store (and a metadata file that is
        not valid JSON, with its array).
    """
    import xarray as xr

    if isinstance(source, xr.Dataset):
        return source
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"no store at {path}; give a .zarr folder or a .nc file")
    try:
        if _is_netcdf(path):
            return _mask_netcdf_default_fill(xr.open_dataset(path))
        consolidated = (path / ".zmetadata").is_file() or _has_v3_consolidated(path)
        return xr.open_zarr(path, consolidated=consolidated)
    except Exception as err:  # the backends raise many kinds for a bad file
        raise _metadata_error(path, err) from err


def _has_v3_consolidated(path: Path) -> bool:
    root = path / "zarr.json"
    if not root.is_file():
        return False
    try:
        meta = json.loads(root.read_text())
    except ValueError:
        return False  # reported when the store is opened
    return bool(meta.get("consolidated_metadata"))


def completed_lead_hours(ds: "xr.Dataset") -> int | None:
    """The store's ``completed_lead_hours`` attribute, or None when it has none."""
    value = ds.attrs.get("completed_lead_hours")
    if value is None:
        return None
    try:
        return int(np.asarray(value).ravel()[0])
    except (TypeError, ValueError, IndexError):
        return None


def lead_hours(da: "xr.DataArray | xr.Dataset") -> list[float]:
    """Lead times in hours of the ``lead_time`` dimension (timedelta or numbers with units)."""
    if "lead_time" not in da.coords:
        return [float(i) for i in range(da.sizes["lead_time"])]
    v = np.asarray(da["lead_time"].values)
    if np.issubdtype(v.dtype, np.timedelta64):
        return [float(x) for x in v / np.timedelta64(1, "h")]
    v = v.astype(np.float64)
    units = str(da["lead_time"].attrs.get("units", "")).lower()
    if units.startswith("min"):
        return list(v / 60.0)
    if units.startswith("s"):
        return list(v / 3600.0)
    if units.startswith("nanosec") or (not units and v.size and np.nanmax(np.abs(v)) > 1e9):
        return list(v / 3.6e12)
    return list(v)


def _hours_text(hours: Sequence[float]) -> str:
    shown = ", ".join(f"+{h:g} h" for h in hours[:6])
    return shown + (f" and {len(hours) - 6} more" if len(hours) > 6 else "")


def open_forecast(source: Any, *, name: str | None = None) -> "xr.Dataset":
    """Open a forecast store, with the member-hours its run never wrote as missing.

    Parameters
    ----------
    source : str, Path or xarray.Dataset
        As for :func:`open_store`.
    name : str, optional
        How to call the store in messages (default its path).

    Returns
    -------
    xarray.Dataset
        Every variable over ``lead_time`` is NaN where the store's
        :data:`WRITTEN` flag is 0; in a store without flags, at the lead
        hours past its ``completed_lead_hours`` (when it has that attribute).

    Warns
    -----
    PartialForecastWarning
        Naming the store, its completed hours and the hours not written by
        every member (and, for several initial times, how many member-hours
        are missing).
    """
    import xarray as xr

    ds = open_store(source)
    if "lead_time" not in ds.dims:
        return ds
    hours = np.asarray(lead_hours(ds))
    if WRITTEN in ds.data_vars:
        keep = ds[WRITTEN].fillna(0).astype(bool)
        done = completed_from_written(keep.transpose(..., "lead_time").values)
        missing_share = (f" ({int((~keep).sum())} of {keep.size} member-hours are missing)"
                         if ds.sizes.get("time", 1) > 1 else "")
    else:
        done = completed_lead_hours(ds)
        if done is None:
            return ds
        keep = xr.DataArray(hours <= done, dims="lead_time")
        missing_share = ""
    missing = hours[hours > done]
    if missing.size == 0:
        return ds
    where = name or (str(source) if not hasattr(source, "data_vars") else "(in memory)")
    warnings.warn(f"the forecast store {where} is incomplete (completed_lead_hours = {done}): "
                  f"{missing.size} of {hours.size} lead times "
                  f"({_hours_text(list(missing))}) were not written by every member{missing_share}; what was not "
                  "written is treated as missing",
                  PartialForecastWarning, stacklevel=2)
    out = ds.copy()
    for var, da in ds.data_vars.items():
        if "lead_time" in da.dims and var != WRITTEN:
            out[var] = da.where(keep)
    return out


def load_lead(da: "xr.DataArray", index: int, store: str) -> "xr.DataArray":
    """``da`` at lead index ``index``, read into memory.

    Parameters
    ----------
    da : xarray.DataArray
        A lazy forecast variable with a ``lead_time`` dimension.
    index : int
        Index along ``lead_time``.
    store : str
        The store's name for messages.

    Returns
    -------
    xarray.DataArray
        The values at that lead time, loaded.

    Raises
    ------
    ForecastStoreError
        When a chunk cannot be read or decoded (truncated or corrupt file),
        naming the store, the array and the lead hour.
    """
    part = da.isel(lead_time=index)
    try:
        return part.load()
    except Exception as err:  # codecs and stores raise many kinds for a damaged chunk
        hour = lead_hours(da)[index]
        raise ForecastStoreError(
            f"cannot read {da.name!r} at lead +{hour:g} h (lead index {index}) from the forecast store {store}: "
            f"{type(err).__name__}: {err}. A chunk file of that hour is damaged (truncated or corrupt); "
            "write the forecast again (stormcast forecast --overwrite)") from err
