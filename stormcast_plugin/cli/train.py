"""The ``stormcast train`` and ``stormcast export`` commands.

``python -m stormcast_plugin.train CONFIG --run-dir DIR [--set key=value ...]``
runs :func:`main` with the same arguments as ``stormcast train``; under
torchrun every rank runs it and rank 0 writes checkpoints and logs.
Heavy modules load only when a command runs, so building the parsers is cheap.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

__all__ = ["add_export_arguments", "add_train_arguments", "export_from_args", "main", "train_from_args"]


def add_train_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments of ``stormcast train`` (and ``python -m stormcast_plugin.train``)."""
    p.add_argument("config", help="YAML config file or preset name (paper, tiny, demo)")
    p.add_argument("--run-dir", required=True, help="run folder (checkpoints, logs); resumed if it exists")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set training.lr=2e-4 (repeatable)")
    p.add_argument("--stage", choices=["regression", "diffusion", "all"], default="all",
                   help="stage(s) to train (default: all, regression then diffusion)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)
    return p


def add_export_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments of ``stormcast export``."""
    p.add_argument("run_dir", help="training run folder")
    p.add_argument("out", help="package folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing package folder")
    p.add_argument("--no-ema", action="store_true", help="export the raw weights instead of the EMA")
    p.add_argument("--name", help="package name (default: the run folder name)")
    p.add_argument("--description", help="one-line description for the model card")
    p.add_argument("--push-to-hub", metavar="REPO", help="also upload to this Hugging Face repo (org/name)")
    p.add_argument("--private", action="store_true", help="create the Hub repo as private")
    return p


def train_from_args(args: argparse.Namespace) -> int:
    """Run ``stormcast train``; returns the exit status (2: bad input, 1: training failed)."""
    from stormcast_plugin.train.config import ConfigError, load_config
    from stormcast_plugin.train.loop import TrainingError
    from stormcast_plugin.train.run import run_training

    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    stages = ("regression", "diffusion") if args.stage == "all" else (args.stage,)
    try:
        summaries = run_training(config, args.run_dir, stages=stages, device=args.device,
                                 progress=not args.no_progress, stop_after=args.stop_after)
    except TrainingError as err:
        print(f"training stopped: {err}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as err:  # a bad store, run folder or device
        print(f"error: {err}", file=sys.stderr)
        return 2
    for s in summaries:
        loss = s["history"][-1]["loss"] if s["history"] else float("nan")
        print(f"[{s['stage']}] step {s['step']} loss {loss:.5f}", file=sys.stderr)
    return 0


def export_from_args(args: argparse.Namespace) -> int:
    """Run ``stormcast export``; returns the exit status."""
    from stormcast_plugin.io.replace import PACKAGE, check_replaceable
    from stormcast_plugin.train.run import export_run, push_to_hub

    check_replaceable(args.out, [PACKAGE], overwrite=args.overwrite, reading=[args.run_dir])
    out = export_run(args.run_dir, args.out, overwrite=args.overwrite, use_ema=not args.no_ema,
                     name=args.name, description=args.description)
    print(f"wrote package {out}", file=sys.stderr)
    if args.push_to_hub:
        url = push_to_hub(out, args.push_to_hub, private=args.private)
        print(f"uploaded to {url}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stormcast_plugin.train``: ``stormcast train`` for torchrun."""
    parser = add_train_arguments(argparse.ArgumentParser(
        prog="python -m stormcast_plugin.train", description="Train StormCast (regression, then diffusion)."))
    return train_from_args(parser.parse_args(argv))
