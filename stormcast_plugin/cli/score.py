"""The ``stormcast score`` command: arguments and their run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from stormcast_plugin.scoring.report import number_text
from stormcast_plugin.statistics import DEFAULT_SPECTRAL_BANDS_KM, DEFAULT_THRESHOLDS, DEFAULT_WINDOWS

__all__ = ["add_score_arguments", "score_from_args"]


def add_score_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``stormcast score`` arguments to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The (sub)parser to fill.

    Returns
    -------
    argparse.ArgumentParser
        The same parser.
    """
    parser.add_argument("forecast", help="forecast store (.zarr or .nc) written by `stormcast forecast`")
    parser.add_argument("truth", help="truth: a store of the same layout, or a StormCast dataset store")
    parser.add_argument("--out", default=None, help="output folder (default: FORECAST_scores)")
    parser.add_argument("--variables", default=None, help="comma-separated variables (default: all)")
    parser.add_argument("--thresholds", default=",".join(number_text(t) for t in DEFAULT_THRESHOLDS),
                        help="reflectivity thresholds in dBZ (default %(default)s)")
    parser.add_argument("--windows", default=",".join(str(w) for w in DEFAULT_WINDOWS),
                        help="odd FSS neighbourhood sizes in grid points (default %(default)s)")
    parser.add_argument("--spectral-bands", default=",".join(number_text(b) for b in DEFAULT_SPECTRAL_BANDS_KM),
                        help="wavelength band edges in km for the forecast/truth power ratios in the table "
                             "(default %(default)s: below 15, 15 to 60, 60 km and above)")
    parser.add_argument("--seed", type=int, default=0, help="rank-histogram tie-breaking seed (default 0)")
    parser.add_argument("--no-plots", action="store_true", help="write the tables only")
    return parser


def _number_list(text: str, option: str, kind: type) -> list[Any]:
    try:
        values = [kind(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{option} {text!r} is not a comma-separated list of "
                         f"{'integers' if kind is int else 'numbers'}, e.g. "
                         f"{'1,9,25' if kind is int else '20,30,40'}") from None
    if not values:
        raise ValueError(f"{option} is empty; give at least one value")
    return values


def score_from_args(args: argparse.Namespace) -> int:
    """Run ``stormcast score`` from parsed arguments.

    Parameters
    ----------
    args : argparse.Namespace
        From a parser filled by :func:`add_score_arguments`.

    Returns
    -------
    int
        0 on success. Errors raise ``ValueError`` (``ScoreError``,
        ``ForecastStoreError``) or ``FileNotFoundError`` with a message for
        the command line to print, which then exits with status 2.
    """
    from stormcast_plugin.scoring.evaluate import score
    from stormcast_plugin.scoring.report import SPECTRAL_PREFIX, markdown_table

    out = Path(args.out) if args.out else Path(str(Path(args.forecast)).rstrip("/") + "_scores")
    table = score(args.forecast, args.truth, variables=args.variables, out_dir=out,
                  thresholds=_number_list(args.thresholds, "--thresholds", float),
                  windows=_number_list(args.windows, "--windows", int), seed=args.seed,
                  spectral_bands_km=_number_list(args.spectral_bands, "--spectral-bands", float),
                  plots=not args.no_plots)
    cols = [c for c in ("variable", "lead_time_h", "rmse", "crps", "spread_skill") if c in table.columns]
    cols += [c for c in table.columns if c.startswith(SPECTRAL_PREFIX)]
    print(markdown_table(table, cols), end="")
    print(f"wrote {len(table.attrs['files'])} files to {out}", file=sys.stderr)
    return 0
