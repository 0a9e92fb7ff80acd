"""``python -m stormcast_plugin.train CONFIG --run-dir DIR [--set key=value ...]``.

Under torchrun every rank runs this; rank 0 writes checkpoints and logs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("config", help="YAML config file or preset name (paper, tiny)")
    p.add_argument("--run-dir", required=True, help="run folder (checkpoints, logs); resumed if it exists")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set training.lr=2e-4 (repeatable)")
    p.add_argument("--stage", choices=["regression", "diffusion", "all"], default="all",
                   help="stage(s) to train (default: all, regression then diffusion)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)
    return p


def run_from_args(args: argparse.Namespace) -> int:
    from stormcast_plugin.train.config import ConfigError, load_config
    from stormcast_plugin.train.run import run_training

    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    stages = ("regression", "diffusion") if args.stage == "all" else (args.stage,)
    summaries = run_training(config, args.run_dir, stages=stages, device=args.device,
                             progress=not args.no_progress, stop_after=args.stop_after)
    for s in summaries:
        loss = s["history"][-1]["loss"] if s["history"] else float("nan")
        print(f"[{s['stage']}] step {s['step']} loss {loss:.5f}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="python -m stormcast_plugin.train",
                                                   description="Train StormCast (regression, then diffusion)."))
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
