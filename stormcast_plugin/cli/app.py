"""The ``stormcast`` command line.

Subcommands::

    stormcast forecast   run a forecast (embedded offline default unless --package)
    stormcast hindcast   run forecasts from many initial times into one store
    stormcast plot       draw maps and animations of a forecast store
    stormcast score      score a forecast against a truth store
    stormcast train      train a model (regression, then diffusion)
    stormcast export     write a trained run as a model package
    stormcast data       synthesise or prepare a dataset store

Each subcommand's arguments live in its own module of this package.

Heavy libraries load only inside the subcommand that needs them, so
``stormcast --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stormcast",
        description="StormCast: kilometre-scale storm emulator (regression + EDM diffusion).",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    from stormcast_plugin.cli.forecast import add_forecast_arguments

    add_forecast_arguments(sub.add_parser(
        "forecast", help="run a forecast",
        description="Run a StormCast forecast and write it to zarr or netCDF. Without --package the embedded "
        "offline default runs (a demonstration model on a synthetic case)."))

    from stormcast_plugin.cli.hindcast import add_hindcast_arguments

    add_hindcast_arguments(sub.add_parser(
        "hindcast", help="run forecasts from many initial times into one store",
        description="Run a hindcast campaign: forecasts from many initial times into one store (dimension time); "
        "also under torchrun. --resume completes an interrupted campaign."))

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


def _forecast(args: argparse.Namespace) -> int:
    from stormcast_plugin.cli.forecast import forecast_from_args

    return forecast_from_args(args)


def _hindcast(args: argparse.Namespace) -> int:
    from stormcast_plugin.cli.hindcast import hindcast_from_args

    return hindcast_from_args(args)


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


def _interrupt(signum: int, frame: object) -> None:
    # SIGTERM (a scheduler's time-out, kill) unwinds like Ctrl-C, so partial
    # outputs and temporary folders are cleaned up on the way out.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stormcast`` command.

    Returns 0 on success, 2 for a bad input (one line on stderr naming the
    value and the fix), 1 for a run that failed midway, 130 when interrupted.
    """
    import signal

    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    handler = {"forecast": _forecast, "hindcast": _hindcast, "plot": _plot, "train": _train, "export": _export, "data": _data,
               "score": _score}
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return handler[args.command](args)
    except (ValueError, FileExistsError, FileNotFoundError, PermissionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: an output being replaced keeps its previous contents", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
