"""``stormcast hindcast``: a campaign of forecasts from many initial times into one store.

``--starts 2024-05-01T00/2024-05-31T00/24h`` (first/last/step, both ends
included) or a comma-separated list of times. Every other argument is that of
``stormcast forecast`` (:mod:`stormcast_plugin.cli.forecast`); the store
has one entry per initial time along ``time``, runs in one process or under
``torchrun``, and ``--resume`` completes an interrupted campaign, computing
only the member-hours its ``written`` flags lack.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

import numpy as np

__all__ = ["MAX_STARTS", "add_hindcast_arguments", "hindcast_from_args", "parse_starts"]

MAX_STARTS = 100_000
"""Most initial times in one campaign."""

_STEP = re.compile(r"^\s*(\d+)\s*([hd])\s*$", re.IGNORECASE)


def parse_starts(text: str) -> np.ndarray:
    """Initial times from ``FIRST/LAST/STEP`` (both ends included; STEP like
    ``24h`` or ``1d``) or ``T1,T2,...``, as sorted ``datetime64[ns]``.

    Raises
    ------
    ValueError
        Naming the part that is not a time on the hour, a step that is not a
        whole number of hours or days, a range that ends before it starts, or
        too many or repeated times.
    """
    from stormcast_plugin.utils.time import as_time

    parts = text.split("/")
    if len(parts) == 3:
        first = as_time(parts[0].strip(), "--starts (first)", whole_hours=True)
        last = as_time(parts[1].strip(), "--starts (last)", whole_hours=True)
        match = _STEP.match(parts[2])
        if match is None or int(match.group(1)) < 1:
            raise ValueError(f"--starts step {parts[2]!r} is not a whole number of hours or days; write e.g. 6h, "
                             "24h or 1d")
        step = np.timedelta64(int(match.group(1)) * (24 if match.group(2).lower() == "d" else 1), "h")
        if last < first:
            raise ValueError(f"--starts {text}: the last time comes before the first; write FIRST/LAST/STEP")
        count = int((last - first) // step) + 1
        if count > MAX_STARTS:
            raise ValueError(f"--starts {text} makes {count} initial times; at most {MAX_STARTS} go in one store")
        return first + step * np.arange(count)
    if len(parts) != 1:
        raise ValueError(f"--starts {text!r} is neither FIRST/LAST/STEP nor a comma-separated list of times")
    items = [p.strip() for p in text.split(",") if p.strip()]
    if not items:
        raise ValueError("--starts is empty; give FIRST/LAST/STEP or a comma-separated list of times")
    times = np.array([as_time(p, "--starts", whole_hours=True) for p in items], dtype="datetime64[ns]")
    if len(np.unique(times)) != len(times):
        raise ValueError(f"--starts {text} names a time more than once; give each initial time once")
    if len(times) > MAX_STARTS:
        raise ValueError(f"--starts names {len(times)} initial times; at most {MAX_STARTS} go in one store")
    return np.sort(times)


def add_hindcast_arguments(f: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the arguments of ``stormcast hindcast`` to ``f``."""
    from stormcast_plugin.cli.forecast import add_run_arguments

    f.add_argument("--starts", required=True, help="initial times: FIRST/LAST/STEP (e.g. "
                   "2024-05-01T00/2024-05-31T00/24h, both ends included) or T1,T2,...")
    return add_run_arguments(f, out="hindcast.zarr")


def hindcast_from_args(args: argparse.Namespace) -> int:
    """Run ``stormcast hindcast``; returns the exit status."""
    from stormcast_plugin.cli.forecast import run_from_args

    starts: list[Any] = list(parse_starts(args.starts))
    return run_from_args(args, starts)
