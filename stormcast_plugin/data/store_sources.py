"""earth2studio data sources reading a StormCast dataset store.

:class:`StoreStateSource` serves the HRRR-like state on the model grid
(``[time, variable, hrrr_y, hrrr_x]``, like earth2studio's ``HRRR``) and
:class:`StoreConditioningSource` the conditioning on the store's regular
lat/lon grid (``[time, variable, lat, lon]``, like ``ARCO``). Both follow the
earth2studio ``DataSource`` protocol, so they work with
``earth2studio.data.fetch_data``, :class:`~stormcast_plugin.data.conditioning.ConditioningFetcher`
and the :class:`~stormcast_plugin.models.px.stormcast.StormCast` model: a prepared store
can initialise and drive forecasts offline.

Only the hours asked for are read (one zarr chunk per hour). Hours that are
not in the store, not written yet or recorded missing are refused with a
``ValueError`` naming them. Importing this module does not import
earth2studio.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stormcast_plugin.io.dataset_store import DatasetStore
from stormcast_plugin.utils.time import as_times, format_time, format_times

if TYPE_CHECKING:  # pragma: no cover - typing only
    import xarray as xr

__all__ = ["StoreConditioningSource", "StoreStateSource"]

_MAX_LISTED = 8


def _as_names(value: Any) -> list[str]:
    """Normalise earth2studio's ``variable`` argument to a list of names."""
    if isinstance(value, str):
        return [value]
    try:
        names = [v for v in np.asarray(value, dtype=object).ravel().tolist()]
    except (TypeError, ValueError):
        raise ValueError(f"variable {value!r} is not a name or a sequence of names") from None
    bad = [v for v in names if not isinstance(v, (str, np.str_))]
    if bad:
        raise ValueError(f"variable names must be strings; got {bad[:_MAX_LISTED]}")
    if not names:
        raise ValueError("variable is empty; pass at least one variable name")
    return [str(v) for v in names]


class _StoreSource:
    """Shared machinery: the store, time lookup and the written/missing checks."""

    _kind = "state"

    def __init__(self, store_or_path: "DatasetStore | str | os.PathLike[str]") -> None:
        if isinstance(store_or_path, DatasetStore):
            self.store = store_or_path
        elif isinstance(store_or_path, (str, os.PathLike)):
            self.store = DatasetStore.open(Path(store_or_path), mode="r")
        else:
            raise ValueError(
                f"{type(self).__name__} needs a DatasetStore or the path of a dataset store; got "
                f"{type(store_or_path).__name__}"
            )
        self._arrays: dict[str, Any] = {}

    def __repr__(self) -> str:
        s = self.store
        return (f"{type(self).__name__}({str(s.path)!r}, {len(s)} hours {format_time(s.times[0])} .. "
                f"{format_time(s.times[-1])}, {len(self.variables)} variables)")

    @property
    def variables(self) -> tuple[str, ...]:
        """Variable names the source provides."""
        s = self.store
        return s.state_variables if self._kind == "state" else s.conditioning_variables

    @property
    def times(self) -> np.ndarray:
        """Times the source can serve now (written and not missing), ``datetime64[ns]``."""
        s = self.store
        return s.times[s.written & ~s.missing]

    def _array(self, name: str) -> Any:
        """The zarr array ``name`` (handles cached: metadata is read once)."""
        a = self._arrays.get(name)
        if a is None:
            a = self.store.group[name]
            self._arrays[name] = a
        return a

    def _time_index(self, time: Any) -> tuple[np.ndarray, np.ndarray]:
        """Requested times and their indices in the store, checked to be readable."""
        name = type(self).__name__
        s = self.store
        want = as_times(time, "time")
        idx = np.searchsorted(s.times, want)
        found = (idx < len(s.times)) & (s.times[np.minimum(idx, len(s.times) - 1)] == want)
        if not found.all():
            raise ValueError(
                f"{name}: dataset {s.path} has no hours {format_times(want[~found])}; it covers "
                f"{format_time(s.times[0])} .. {format_time(s.times[-1])} hourly "
                f"({len(s.times)} hours). Request times in that range on whole hours"
            )
        # Read only the flags of the hours requested (one small chunk each).
        written = np.asarray(self._array("written").get_orthogonal_selection((idx,)), dtype=bool)
        missing = np.asarray(self._array("missing").get_orthogonal_selection((idx,)), dtype=bool)
        if (~written).any():
            raise ValueError(
                f"{name}: hours {format_times(want[~written])} of dataset {s.path} are not written yet; "
                "finish preparing the dataset (`stormcast data prepare` resumes where it stopped) or "
                "request written hours"
            )
        if missing.any():
            raise ValueError(
                f"{name}: hours {format_times(want[missing])} of dataset {s.path} are recorded missing "
                "(the sources could not provide them when it was prepared); request other hours"
            )
        return want, idx

    def _channels(self, variable: Any) -> tuple[list[str], list[int]]:
        """Requested names and their channel indices (ValueError naming unknown ones)."""
        names = _as_names(variable)
        have = self.variables
        unknown = [v for v in names if v not in have]
        if unknown:
            raise ValueError(
                f"{type(self).__name__}: dataset {self.store.path} has no {self._kind} variables {unknown}; "
                f"it has {list(have)}. Request variables the dataset holds or prepare a dataset with them"
            )
        return names, [have.index(v) for v in names]

    def _read(self, array: str, idx: np.ndarray, channels: list[int]) -> np.ndarray:
        """``[len(idx), len(channels), ...]`` float32: one chunk read per hour."""
        a = self._array(array)
        identity = channels == list(range(a.shape[1]))
        blocks = []
        for i in idx.tolist():
            block = np.asarray(a[int(i)])
            blocks.append(block if identity else block[channels])
        return np.stack(blocks).astype(np.float32, copy=False)

    async def fetch(self, time: Any, variable: Any) -> "xr.DataArray":
        """Async variant of ``__call__`` (earth2studio's async DataSource protocol).

        Parameters
        ----------
        time : datetime, np.datetime64 or a sequence/array of them
            Times to return (UTC).
        variable : str or sequence of str
            Variable names.

        Returns
        -------
        xr.DataArray
            As :meth:`__call__`.
        """
        return self(time, variable)


class StoreStateSource(_StoreSource):
    """The state of a dataset store as an earth2studio DataSource.

    Parameters
    ----------
    store_or_path : DatasetStore or path-like
        An open store, or the path of one (opened read-only and validated).

    Raises
    ------
    ValueError
        If ``store_or_path`` is neither; :class:`~stormcast_plugin.data.StoreError`
        (a ValueError) if the path is not a valid dataset store.

    Examples
    --------
    >>> src = StoreStateSource("cases/may2024.zarr")           # doctest: +SKIP
    >>> da = src([np.datetime64("2024-05-01T00")], ["t2m"])    # doctest: +SKIP
    >>> da.dims
    ('time', 'variable', 'hrrr_y', 'hrrr_x')
    """

    _kind = "state"

    def __init__(self, store_or_path: "DatasetStore | str | os.PathLike[str]") -> None:
        super().__init__(store_or_path)
        g = self.store.group
        self.hrrr_y = np.asarray(g["y"][:], dtype=np.float64)
        self.hrrr_x = np.asarray(g["x"][:], dtype=np.float64)
        self.lat = np.asarray(g["grid_lat"][:], dtype=np.float64)
        self.lon = np.mod(np.asarray(g["grid_lon"][:], dtype=np.float64), 360.0)

    def __call__(self, time: Any, variable: Any) -> "xr.DataArray":
        """State at ``time`` for ``variable``.

        Parameters
        ----------
        time : datetime, np.datetime64 or a sequence/array of them
            Times to return (UTC, whole hours held by the store).
        variable : str or sequence of str
            State variable names.

        Returns
        -------
        xr.DataArray
            ``[time, variable, hrrr_y, hrrr_x]`` float32 with coordinates
            ``time``, ``variable`` (in the requested order), ``hrrr_y``/``hrrr_x``
            (projected metres) and 2-D ``lat``/``lon`` (degrees, lon in 0..360).

        Raises
        ------
        ValueError
            Naming the requested times the store lacks (with its time range),
            has not written yet or recorded missing, or the variables it lacks
            (with those it has).
        """
        import xarray as xr

        names, channels = self._channels(variable)
        times, idx = self._time_index(time)
        data = self._read("state", idx, channels)
        return xr.DataArray(
            data,
            dims=("time", "variable", "hrrr_y", "hrrr_x"),
            coords={
                "time": times,
                "variable": np.array(names),
                "hrrr_y": self.hrrr_y,
                "hrrr_x": self.hrrr_x,
                "lat": (("hrrr_y", "hrrr_x"), self.lat),
                "lon": (("hrrr_y", "hrrr_x"), self.lon),
            },
        )


class StoreConditioningSource(_StoreSource):
    """The conditioning of a dataset store as an earth2studio DataSource.

    The fields stay on the store's regular lat/lon grid; the consumer
    (:class:`~stormcast_plugin.data.conditioning.ConditioningFetcher`, the
    StormCast model) regrids them to the model grid.

    Parameters
    ----------
    store_or_path : DatasetStore or path-like
        An open store, or the path of one (opened read-only and validated).

    Raises
    ------
    ValueError
        If ``store_or_path`` is neither; :class:`~stormcast_plugin.data.StoreError`
        (a ValueError) if the path is not a valid dataset store.
    """

    _kind = "conditioning"

    def __init__(self, store_or_path: "DatasetStore | str | os.PathLike[str]") -> None:
        super().__init__(store_or_path)
        self.lat = np.asarray(self.store.cond_lat, dtype=np.float64)
        self.lon = np.asarray(self.store.cond_lon, dtype=np.float64)

    def __call__(self, time: Any, variable: Any) -> "xr.DataArray":
        """Conditioning at ``time`` for ``variable``.

        Parameters
        ----------
        time : datetime, np.datetime64 or a sequence/array of them
            Times to return (UTC, whole hours held by the store).
        variable : str or sequence of str
            Conditioning variable names.

        Returns
        -------
        xr.DataArray
            ``[time, variable, lat, lon]`` float32 on the store's conditioning
            grid, with 1-D ``lat``/``lon`` coordinates; variables in the
            requested order.

        Raises
        ------
        ValueError
            Naming the requested times the store lacks (with its time range),
            has not written yet or recorded missing, or the variables it lacks
            (with those it has).
        """
        import xarray as xr

        names, channels = self._channels(variable)
        times, idx = self._time_index(time)
        data = self._read("conditioning", idx, channels)
        return xr.DataArray(
            data,
            dims=("time", "variable", "lat", "lon"),
            coords={"time": times, "variable": np.array(names), "lat": self.lat, "lon": self.lon},
        )

