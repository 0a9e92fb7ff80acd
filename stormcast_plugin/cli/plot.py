"""The ``stormcast plot`` command: arguments and their run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_plot_arguments", "plot_from_args"]


def add_plot_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``stormcast plot`` arguments to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The (sub)parser to fill.

    Returns
    -------
    argparse.ArgumentParser
        The same parser.
    """
    parser.add_argument("forecast", help="forecast store (.zarr or .nc)")
    parser.add_argument("--variables", default=None, help="comma-separated variables (default: all)")
    parser.add_argument("--out", default=None, help="output folder (default: FORECAST_plots)")
    parser.add_argument("--member", type=int, default=0,
                        help="ensemble member to draw, 0 to members - 1 (default 0)")
    parser.add_argument("--time-index", type=int, default=0, help="initial time index, from 0 (default 0)")
    parser.add_argument("--no-gif", action="store_true", help="skip the animations")
    return parser


def plot_from_args(args: argparse.Namespace) -> int:
    """Run ``stormcast plot`` from parsed arguments.

    Parameters
    ----------
    args : argparse.Namespace
        From a parser filled by :func:`add_plot_arguments`.

    Returns
    -------
    int
        0 on success. A member or initial time the store does not have raises
        ``SelectionError`` (a ``ValueError``), which the command line prints
        before exiting with status 2.
    """
    from stormcast_plugin.plot.forecast import SelectionError, plot_forecast

    for option, value in (("--member", args.member), ("--time-index", args.time_index)):
        if value < 0:  # refused before the store is read: a negative number is never a member or time
            raise SelectionError(f"{option} {value} is negative; members and initial times are numbered from 0")
    variables = [v.strip() for v in args.variables.split(",")] if args.variables else None
    out = Path(args.out) if args.out else Path(str(Path(args.forecast)).rstrip("/") + "_plots")
    paths = plot_forecast(args.forecast, variables, out, time_index=args.time_index,
                          member=args.member, gif=not args.no_gif)
    print(f"wrote {len(paths)} pictures to {out}", file=sys.stderr)
    return 0
