"""The ``stormcast`` command line.

Subcommands::

    stormcast forecast   run a forecast (embedded offline default unless --package)
    stormcast plot       draw maps and animations of a forecast store

Heavy libraries load only inside the subcommand that needs them, so
``stormcast --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stormcast",
        description="StormCast: kilometre-scale storm emulator (regression + EDM diffusion).",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    f = sub.add_parser(
        "forecast",
        help="run a forecast",
        description="Run a StormCast forecast and write it to zarr or netCDF. Without --package "
        "the embedded offline default runs (a demonstration model on a synthetic case).",
    )
    f.add_argument("--start", default="2024-05-01T00", help="initial time, ISO 8601 (default %(default)s)")
    f.add_argument("--hours", type=int, default=12, help="forecast length in hours (default %(default)s)")
    f.add_argument("--members", type=int, default=1, help="ensemble members (default %(default)s)")
    f.add_argument("--out", default="forecast.zarr", help="output store, .zarr or .nc (default %(default)s)")
    f.add_argument("--format", choices=["zarr", "netcdf"], help="output format (default: from --out suffix)")
    f.add_argument("--package", help="model package: a folder, hf://org/repo[@rev], or 'official' "
                   "(nvidia/stormcast-v1-era5-hrrr); default: the embedded demo")
    f.add_argument("--state-source", default=None,
                   help="initial state: 'demo' (default with the demo model) or 'hrrr' (earth2studio HRRR)")
    f.add_argument("--conditioning-source", default=None,
                   help="conditioning: 'demo', 'arco' (ERA5, default for packages), 'cds', 'gfs', 'wb2'")
    f.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    f.add_argument("--seed", type=int, default=0, help="noise seed (default %(default)s)")
    f.add_argument("--sampler-steps", type=int, help="diffusion sampler steps (default: the package's)")
    f.add_argument("--batch-size", type=int, help="members stepped together (default: all)")
    f.add_argument("--regression-only", action="store_true", help="deterministic mean forecast, no diffusion")
    f.add_argument("--overwrite", action="store_true", help="replace an existing output")
    f.add_argument("--plot", metavar="VARS", help="also draw these variables (comma-separated) next to the output")
    f.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    from stormcast_plugin.cli.plot import add_plot_arguments

    add_plot_arguments(sub.add_parser("plot", help="draw maps of a forecast", description="Draw maps per lead "
                                      "time (PNG) and an animation (GIF) of chosen variables of a forecast store."))
    from stormcast_plugin.cli.train import add_export_arguments, add_train_arguments

    add_train_arguments(sub.add_parser("train", help="train a model (regression, then diffusion)",
                                       description="Train StormCast from a YAML config (or preset paper/tiny); "
                                       "resumes from the run folder's checkpoints. Also runs under torchrun."))
    add_export_arguments(sub.add_parser("export", help="export a trained run as a model package",
                                        description="Write a model package (weights, config, statistics, "
                                        "invariants, checksums, model card) that StormCast.load_model reads."))

    from stormcast_plugin.cli.score import add_score_arguments

    add_score_arguments(sub.add_parser("score", help="score a forecast against truth",
                                       description="Score a forecast store against a truth store (another "
                                       "forecast-like store or a dataset store): table by variable and lead "
                                       "time (CSV, markdown) and plots."))
    from stormcast_plugin.cli.data import add_data_commands

    add_data_commands(sub)
    return p


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _conditioning_source(name: str, package):
    import earth2studio.data as e2d

    sources = {"arco": "ARCO", "cds": "CDS", "gfs": "GFS_FX", "wb2": "WB2ERA5"}
    if name not in sources:
        raise SystemExit(f"error: unknown conditioning source {name!r}; choose demo, {', '.join(sources)}")
    return getattr(e2d, sources[name])()


def _state_source(name: str, package):
    if name == "hrrr":
        from earth2studio.data import HRRR

        from stormcast_plugin.data.crop import CropToGrid

        return CropToGrid(HRRR(), package.grid)
    raise SystemExit(f"error: unknown state source {name!r}; choose demo or hrrr")


def _forecast(args: argparse.Namespace) -> int:
    import numpy as np

    from stormcast_plugin.run import open_output, run_forecast

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        print(f"error: {out} already exists; choose another --out or pass --overwrite", file=sys.stderr)
        return 2
    try:
        start = np.datetime64(args.start, "h")
    except ValueError:
        print(f"error: --start {args.start!r} is not an ISO 8601 time such as 2024-05-01T00", file=sys.stderr)
        return 2

    from stormcast_plugin.models.px.stormcast import StormCast
    from stormcast_plugin.package import DEFAULT_REPO, DEFAULT_REVISION, load_package

    workdir = None
    if args.package is None:
        import tempfile

        from stormcast_plugin.demo import demo_package

        package = demo_package()
        default_sources = "demo"
        print(f"Running the embedded default: {package.info.get('description', '')}", file=sys.stderr)
        workdir = tempfile.TemporaryDirectory(prefix="stormcast-demo-")
    else:
        source = f"hf://{DEFAULT_REPO}@{DEFAULT_REVISION}" if args.package == "official" else args.package
        package = load_package(source)
        default_sources = None
    state_name = args.state_source or default_sources or "hrrr"
    cond_name = args.conditioning_source or default_sources or "arco"
    demo_state = demo_cond = None
    if "demo" in (state_name, cond_name):
        import tempfile

        from stormcast_plugin.datagen.demo_case import demo_sources

        workdir = workdir or tempfile.TemporaryDirectory(prefix="stormcast-demo-")
        demo_state, demo_cond, _ = demo_sources(start, args.hours, workdir.name)
    model = StormCast(
        package,
        demo_cond if cond_name == "demo" else _conditioning_source(cond_name, package),
        seed=args.seed,
        sampler_steps=args.sampler_steps,
        regression_only=args.regression_only,
    ).to(_device(args.device))
    io = open_output(out, fmt=args.format, overwrite=args.overwrite)
    run_forecast(
        model,
        demo_state if state_name == "demo" else _state_source(state_name, package),
        start,
        args.hours,
        io,
        members=args.members,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        attrs={"state_source": state_name, "conditioning_source": cond_name},
    )
    print(f"wrote {out} ({args.members} member(s), {args.hours} h)", file=sys.stderr)
    if args.plot:
        return _plot(argparse.Namespace(forecast=str(out), variables=args.plot, out=None, member=0,
                                        time_index=0, no_gif=False))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from stormcast_plugin.cli.plot import plot_from_args

    return plot_from_args(args)


def _train(args: argparse.Namespace) -> int:
    from stormcast_plugin.cli.train import train_from_args

    return train_from_args(args)


def _export(args: argparse.Namespace) -> int:
    from stormcast_plugin.cli.train import export_from_args

    return export_from_args(args)


def _data(args: argparse.Namespace) -> int:
    from stormcast_plugin.cli.data import run_data

    return run_data(args)


def _score(args: argparse.Namespace) -> int:
    from stormcast_plugin.cli.score import score_from_args

    return int(score_from_args(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stormcast`` command."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        handler = {"forecast": _forecast, "plot": _plot, "train": _train, "export": _export, "data": _data,
                   "score": _score}
        return handler[args.command](args)
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
