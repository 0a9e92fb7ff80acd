"""Times and lead times: the one parser and the one formatter.

Every boundary that takes times from a caller (data sources, the
conditioning fetcher, dataset stores, synthetic data, preparation, training
periods) parses them with :func:`as_times` / :func:`as_time`, lead times with
:func:`as_lead_times`, and names them in messages with :func:`format_times`
and :func:`format_lead_times`. Times are UTC ``datetime64[ns]`` without a
time zone, as earth2studio uses them.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from numbers import Number
from typing import Any

import numpy as np

__all__ = [
    "as_lead_times",
    "as_time",
    "as_times",
    "epoch_hours",
    "format_lead_times",
    "format_time",
    "format_times",
]

_EPOCH = np.datetime64("1970-01-01T00", "ns")
_HOUR = np.timedelta64(1, "h")
_MAX_LISTED = 8
_UNITS = ("h", "m", "s", "ms", "us", "ns")


def _one(value: Any) -> np.datetime64:
    """One time as ``datetime64[ns]``; aware datetimes are converted to UTC."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return np.datetime64(value, "ns")
    if hasattr(value, "to_datetime64"):  # pandas Timestamp
        return np.datetime64(value.to_datetime64(), "ns")
    if isinstance(value, (Number, bool, np.bool_)):  # a number has no calendar
        raise TypeError
    return np.datetime64(value, "ns")


def as_times(value: Any, what: str = "time", *, whole_hours: bool = False) -> np.ndarray:
    """Times given in any usual form as a 1-D ``datetime64[ns]`` array.

    Parameters
    ----------
    value : datetime, np.datetime64, str, pandas Timestamp or a sequence/array of them
        The times: ISO 8601 strings such as ``'2024-05-01T00'``; time-zone
        aware datetimes are converted to UTC.
    what : str
        The argument's name, used in error messages.
    whole_hours : bool
        Refuse times that are not on the hour (StormCast steps whole hours).

    Returns
    -------
    np.ndarray
        ``datetime64[ns]`` times, in the order given.

    Raises
    ------
    ValueError
        If ``value`` is empty, holds NaT, a number or something that is not a
        time, or (with ``whole_hours``) a time that is not on the hour.
    """
    try:
        if isinstance(value, np.ndarray) and value.dtype.kind == "M":
            out = value.astype("datetime64[ns]").ravel()
        elif isinstance(value, (datetime, np.datetime64, str)) or hasattr(value, "to_datetime64"):
            out = np.array([_one(value)], dtype="datetime64[ns]")
        else:
            out = np.array([_one(v) for v in np.asarray(value, dtype=object).ravel()], dtype="datetime64[ns]")
    except (TypeError, ValueError):
        raise ValueError(
            f"{what} {value!r} is not a time or a sequence of times; pass an ISO 8601 string such as "
            "'2024-05-01T00', a datetime, an np.datetime64 or an array of them"
        ) from None
    if out.size == 0:
        raise ValueError(f"{what} is empty; pass at least one time")
    if np.isnat(out).any():
        raise ValueError(f"{what} contains NaT ({format_times(out)}); pass valid times")
    if whole_hours:
        floor = out.astype("datetime64[h]").astype("datetime64[ns]")
        off = np.flatnonzero(floor != out)
        if off.size:
            i = int(off[0])
            raise ValueError(
                f"{what} {format_time(out[i])} is not on the hour; times must be whole hours (StormCast "
                f"steps one hour at a time): pass e.g. {format_time(floor[i])}"
            )
    return out


def as_time(value: Any, what: str = "time", *, whole_hours: bool = False) -> np.datetime64:
    """Exactly one time as ``np.datetime64[ns]`` (see :func:`as_times`).

    Raises
    ------
    ValueError
        If ``value`` is not one valid time (or, with ``whole_hours``, not on the hour).
    """
    out = as_times(value, what, whole_hours=whole_hours)
    if out.size != 1:
        raise ValueError(f"{what} must be a single time, got {out.size}: {format_times(out)}")
    return out[0]


def as_lead_times(value: Any, what: str = "lead_time") -> np.ndarray:
    """Lead times as a 1-D ``timedelta64[ns]`` array.

    Parameters
    ----------
    value : np.timedelta64, timedelta or a sequence/array of them
        Plain numbers are refused: they have no unit.
    what : str
        The argument's name, used in error messages.

    Returns
    -------
    np.ndarray
        ``timedelta64[ns]`` lead times, in the order given.

    Raises
    ------
    ValueError
        If ``value`` is empty, holds NaT or something that is not a time delta.
    """
    try:
        if isinstance(value, np.ndarray) and value.dtype.kind == "m":
            out = value.astype("timedelta64[ns]").ravel()
        elif isinstance(value, (timedelta, np.timedelta64)):
            out = np.array([np.timedelta64(value, "ns")])
        elif isinstance(value, (list, tuple, np.ndarray)):
            items = np.asarray(value, dtype=object).ravel()
            if not all(isinstance(v, (timedelta, np.timedelta64)) for v in items):
                raise TypeError
            out = np.array([np.timedelta64(v, "ns") for v in items], dtype="timedelta64[ns]")
        else:
            raise TypeError
    except (TypeError, ValueError):
        raise ValueError(
            f"{what} {value!r} is not a time delta or a sequence of them; pass np.timedelta64(1, 'h') "
            "or an array of timedelta64 (plain numbers have no unit)"
        ) from None
    if out.size == 0:
        raise ValueError(f"{what} is empty; pass at least one lead time")
    if np.isnat(out).any():
        raise ValueError(f"{what} contains NaT; pass valid time deltas")
    return out


def epoch_hours(times: np.ndarray) -> np.ndarray:
    """Hours since 1970-01-01T00 UTC (float64) of ``datetime64`` times."""
    return (np.asarray(times, dtype="datetime64[ns]") - _EPOCH) / _HOUR


def _unit(values: np.ndarray) -> str:
    """The coarsest unit, from hours down, that shows every value exactly."""
    for unit in _UNITS:
        if (values.astype(f"datetime64[{unit}]").astype("datetime64[ns]") == values).all():
            return unit
    return "ns"


def format_time(value: Any) -> str:
    """One ``datetime64`` time in ISO 8601, to the hour when it is on the hour ('2024-05-01T00')."""
    t = np.asarray(value, dtype="datetime64[ns]").reshape(1)
    return str(np.datetime_as_string(t[0], unit=_unit(t)))


def format_times(values: Any, limit: int = _MAX_LISTED) -> str:
    """A short printable list of ``datetime64`` times: ``'[2024-05-01T00, ...] and 3 more'``.

    All are shown in the coarsest unit that is exact for every one of them.
    """
    t = np.asarray(values, dtype="datetime64[ns]").ravel()
    unit = _unit(t[~np.isnat(t)])
    items = [str(np.datetime_as_string(v, unit=unit)) for v in t[:limit]]
    more = f" and {t.size - limit} more" if t.size > limit else ""
    return "[" + ", ".join(items) + "]" + more


def format_lead_times(values: Any, limit: int = _MAX_LISTED) -> str:
    """A short printable list of lead times in hours: ``'[0h, 1h, 1.5h]'``."""
    d = np.asarray(values, dtype="timedelta64[ns]").ravel()
    items = [f"{v / _HOUR:g}h" for v in d[:limit]]
    more = f" and {d.size - limit} more" if d.size > limit else ""
    return "[" + ", ".join(items) + "]" + more
