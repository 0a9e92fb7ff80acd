"""``stormcast data``: build dataset stores, synthetic or from real sources.

The parsers of ``stormcast data synth`` and ``stormcast data prepare`` and
the translation of their arguments; the work is done by
:mod:`stormcast_plugin.datagen`, imported when a command runs.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import OrderedDict
from typing import Any

import numpy as np

from stormcast_plugin.utils.grid import ModelGrid
from stormcast_plugin.utils.variables import PRESETS

__all__ = ["add_data_commands", "add_prepare_arguments", "add_synth_arguments", "parse_grid",
           "prepare_from_args", "run_data", "synth_from_args"]


def add_data_commands(sub: Any) -> argparse.ArgumentParser:
    """Add ``data`` (with ``synth`` and ``prepare``) to the subcommands ``sub`` of ``stormcast``."""
    d = sub.add_parser("data", help="build datasets (synthetic or from real sources)")
    dsub = d.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    add_synth_arguments(dsub.add_parser("synth", help="generate a synthetic storm-resolving dataset"))
    add_prepare_arguments(dsub.add_parser(
        "prepare", help="build a dataset from HRRR and ERA5 (earth2studio sources)",
        description="Build a dataset store hour by hour from earth2studio sources (HRRR state, ERA5 "
        "conditioning by default); resumable, optionally on a Dask cluster."))
    return d


def run_data(args: argparse.Namespace) -> int:
    """Run the ``stormcast data`` command chosen in ``args``; returns the exit status."""
    if args.data_command == "synth":
        return synth_from_args(args)
    if args.data_command == "prepare":
        return prepare_from_args(args)
    print("error: choose a data command: synth or prepare (stormcast data --help)", file=sys.stderr)
    return 2


# --------------------------------------------------------------------------
# stormcast data synth
# --------------------------------------------------------------------------


def parse_grid(text: str) -> tuple[int, int]:
    """Parse a grid size ``"HxW"`` (``"64x64"``, ``"128X96"``) into ``(H, W)``.

    Raises
    ------
    ValueError
        If the text is not two integers of at least 2 separated by ``x``.
    """
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if m is None:
        raise ValueError(f"grid size {text!r} is not of the form 'HxW'; pass for example '64x64'")
    h, w = int(m.group(1)), int(m.group(2))
    if h < 2 or w < 2:
        raise ValueError(f"grid size {h}x{w} is too small; give at least 2 rows and 2 columns")
    return h, w


def add_synth_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``stormcast data synth`` options to ``parser``."""
    s = parser
    s.add_argument("--out", required=True, help="store to write (.zarr)")
    s.add_argument("--start", default="2024-05-01T00", help="first hour (default %(default)s)")
    s.add_argument("--hours", type=int, default=240, help="number of hours (default %(default)s)")
    s.add_argument("--grid", default="64x64",
                   help="grid size HxW, an HRRR crop centred on the StormCast v1 domain (default %(default)s)")
    s.add_argument("--preset", default="small", help="variable preset: tiny, small, full (default %(default)s)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    s.add_argument("--terrain-seed", type=int, default=None,
                   help="seed of the orography and land alone (default: --seed); keep it fixed and vary --seed "
                        "for other weather over the same domain, e.g. a held-out period")
    s.add_argument("--overwrite", action="store_true", help="replace an existing store")
    s.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return s


def synth_from_args(args: argparse.Namespace) -> int:
    """Run ``stormcast data synth`` from parsed arguments (see :func:`add_synth_arguments`)."""
    from stormcast_plugin.datagen.synth import synthesize
    from stormcast_plugin.io.replace import DATASET, replacing

    grid = parse_grid(args.grid)
    if args.hours < 1:
        raise ValueError(f"--hours {args.hours} must be at least 1")
    # written beside --out and swapped in when complete: a failed or killed run keeps the old store
    with replacing(args.out, [DATASET], overwrite=args.overwrite) as tmp:
        synthesize(tmp, args.start, args.hours, grid=grid, preset=args.preset, seed=args.seed,
                   terrain_seed=args.terrain_seed, progress=not args.no_progress)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------
# stormcast data prepare
# --------------------------------------------------------------------------


def add_prepare_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``stormcast data prepare`` options to ``parser``."""
    p = parser
    p.add_argument("--out", required=True, help="dataset store to create or resume (*.zarr)")
    p.add_argument("--start", required=True, help="first hour, ISO 8601 (e.g. 2022-01-01T00)")
    p.add_argument("--end", required=True, help="end hour, excluded (e.g. 2023-01-01T00)")
    p.add_argument("--domain", default="v1", help="'v1' (StormCast v1 512x640 crop, default) or "
                   "'R0:R1,C0:C1' native HRRR rows/columns")
    p.add_argument("--variables", default="full", help="variable preset: full (default), small or tiny")
    p.add_argument("--state-source", default="hrrr",
                   help="'hrrr' (earth2studio HRRR, default), 'random', or MODULE:ATTR (a class is instantiated)")
    p.add_argument("--conditioning-source", default="arco",
                   help="'arco' (ERA5, default), 'wb2', 'cds', 'random', or MODULE:ATTR")
    p.add_argument("--invariants", default=None, help="a .npy file [Ci, H, W] of lsm, orography "
                   "(default: read from the state source)")
    p.add_argument("--stats-start", default=None, help="training period start for statistics (default: --start)")
    p.add_argument("--stats-end", default=None, help="training period end, excluded (default: --end)")
    p.add_argument("--workers", type=int, default=None, help="local Dask worker processes (default: sequential)")
    p.add_argument("--scheduler", default=None, help="address of a running Dask scheduler to use")
    p.add_argument("--retries", type=int, default=0, help="extra attempts per failing hour (default 0)")
    p.add_argument("--retry-missing", action="store_true", help="redo hours an earlier run recorded as missing")
    p.add_argument("--overwrite", action="store_true", help="rebuild an existing store from scratch")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def _parse_domain(text: str) -> ModelGrid:
    if text in ("v1", "stormcast_v1"):
        return ModelGrid.hrrr()
    try:
        rows, cols = text.split(",")
        r0, r1 = (int(v) for v in rows.split(":"))
        c0, c1 = (int(v) for v in cols.split(":"))
    except ValueError:
        raise ValueError(f"--domain {text!r} is not 'v1' or 'R0:R1,C0:C1' (native HRRR rows and columns, "
                         "e.g. 273:785,579:1219)") from None
    return ModelGrid.hrrr((r0, r1), (c0, c1))


def _load_object(spec: str) -> Any:
    import importlib

    module, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot load source {spec!r}: {err}") from None
    return obj() if isinstance(obj, type) else obj


def _sources(args: argparse.Namespace, grid: ModelGrid) -> tuple[Any, Any, Any]:
    """State, conditioning and invariant sources named on the command line."""
    state_name, cond_name = args.state_source, args.conditioning_source
    if state_name == "hrrr":
        from earth2studio.data import HRRR

        state = HRRR(verbose=False)
        from stormcast_plugin.datagen.sources import RenameVariables

        inv = RenameVariables(state, {"lsm": "lsm", "orography": ("z", 1.0 / 9.81)})
    elif state_name == "random":
        from earth2studio.data import Random

        state = Random(OrderedDict(hrrr_y=np.asarray(grid.y), hrrr_x=np.asarray(grid.x)))
        inv = None
    elif ":" in state_name:
        state, inv = _load_object(state_name), None
    else:
        raise ValueError(f"unknown --state-source {state_name!r}; choose hrrr, random or MODULE:ATTR")
    if cond_name in ("arco", "wb2", "cds"):
        import earth2studio.data as e2d

        cls = {"arco": getattr(e2d, "ARCO_ERA5", None) or e2d.ARCO, "wb2": e2d.WB2ERA5, "cds": e2d.CDS}[cond_name]
        cond = cls(verbose=False)
    elif cond_name == "random":
        from earth2studio.data import Random

        lat, lon = np.asarray(grid.lat), np.asarray(grid.lon)
        box_lat = np.arange(np.ceil(lat.max() + 3), np.floor(lat.min() - 3) - 0.25, -0.25)
        box_lon = np.arange(np.floor(lon.min() - 3), np.ceil(lon.max() + 3) + 0.25, 0.25)
        cond = Random(OrderedDict(lat=box_lat, lon=box_lon))
    elif ":" in cond_name:
        cond = _load_object(cond_name)
    else:
        raise ValueError(f"unknown --conditioning-source {cond_name!r}; choose arco, wb2, cds, random or MODULE:ATTR")
    return state, cond, inv


def prepare_from_args(args: argparse.Namespace) -> int:
    """Run ``stormcast data prepare`` from parsed arguments (see :func:`add_prepare_arguments`).

    Without ``--overwrite`` an existing dataset store is resumed in place;
    with it the store is rebuilt beside the old one, which is replaced only
    when the new one is complete.

    Returns
    -------
    int
        The exit status (0).
    """
    if args.variables not in PRESETS:
        raise ValueError(f"--variables {args.variables!r} is unknown; choose one of {sorted(PRESETS)}")
    grid = _parse_domain(args.domain)
    state, cond, inv_source = _sources(args, grid)
    invariants = None
    if args.invariants:
        invariants = np.load(args.invariants)
    stats = None
    if args.stats_start or args.stats_end:
        stats = (args.stats_start or args.start, args.stats_end or args.end)
    if args.overwrite:  # rebuild from scratch beside the old store; without it, resume in place
        from stormcast_plugin.io.replace import DATASET, replacing

        with replacing(args.out, [DATASET], overwrite=True) as tmp:
            return _prepare(args, tmp, grid, state, cond, inv_source, invariants, stats)
    from stormcast_plugin.io.replace import DATASET, check_replaceable

    check_replaceable(args.out, [DATASET], overwrite=True)  # never the current folder or a foreign folder
    return _prepare(args, args.out, grid, state, cond, inv_source, invariants, stats)


def _prepare(args: argparse.Namespace, out, grid, state, cond, inv_source, invariants, stats) -> int:
    from stormcast_plugin.datagen.prepare import prepare_dataset

    client = None
    if args.scheduler:
        from distributed import Client

        client = Client(args.scheduler)
    try:
        store = prepare_dataset(
            out, args.start, args.end, state_source=state, conditioning_source=cond, grid=grid,
            state_variables=PRESETS[args.variables]["state"],
            conditioning_variables=PRESETS[args.variables]["conditioning"],
            invariants=invariants, invariant_source=inv_source, stats_period=stats, client=client,
            workers=args.workers, retries=args.retries, retry_missing=args.retry_missing,
            progress=not args.no_progress,
        )
    finally:
        if client is not None:
            client.close()
    print(f"wrote {args.out}", file=sys.stderr)
    if store.missing.any():
        print(f"{int(store.missing.sum())} hours missing (reasons in the store's missing_reasons attribute)",
              file=sys.stderr)
    return 0


