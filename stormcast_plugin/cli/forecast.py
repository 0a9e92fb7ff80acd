"""``stormcast forecast``: arguments, checks and the run.

Everything a run needs is checked before anything is written: the numbers,
the start time, the device, the package, the sources and the output path
(:func:`stormcast_plugin.io.replace.check_replaceable`). The forecast is
then written beside ``--out`` and moved in place when complete, so a failed
or killed run leaves an existing output untouched; a run interrupted after
some hours with nothing there before keeps those hours, marked as partial
(``completed_lead_hours``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["MAX_HOURS", "MAX_MEMBERS", "add_forecast_arguments", "forecast_from_args", "parse_device"]

MAX_HOURS = 8784
"""Longest forecast accepted (a leap year of hourly steps)."""
MAX_MEMBERS = 100_000

_CONDITIONING = {"arco": "ARCO_ERA5", "cds": "CDS", "gfs": "GFS_FX", "wb2": "WB2ERA5"}
_STATE = ("hrrr",)


def add_forecast_arguments(f: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the arguments of ``stormcast forecast`` to ``f``."""
    f.add_argument("--start", default="2024-05-01T00", help="initial time, ISO 8601, on the hour "
                   "(default %(default)s)")
    f.add_argument("--hours", type=int, default=12, help=f"forecast length in hours, 1 to {MAX_HOURS} "
                   "(default %(default)s)")
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
    f.add_argument("--overwrite", action="store_true",
                   help="replace an existing forecast store written by stormcast (nothing else)")
    f.add_argument("--plot", metavar="VARS", help="also draw these variables (comma-separated) next to the output")
    f.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return f


def parse_device(name: str) -> Any:
    """The torch device for ``--device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``).

    Raises
    ------
    ValueError
        For an unknown device, or one this machine does not have.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine (torch {torch.__version__}); "
                             "use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                             f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {name!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    return device


def _check_numbers(args: argparse.Namespace) -> None:
    if not 1 <= args.hours <= MAX_HOURS:
        raise ValueError(f"--hours {args.hours} is out of range; give 1 to {MAX_HOURS} hours")
    if not 1 <= args.members <= MAX_MEMBERS:
        raise ValueError(f"--members {args.members} is out of range; give 1 to {MAX_MEMBERS}")
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size {args.batch_size} must be at least 1 (or leave it out to step all "
                         "members together)")
    if args.sampler_steps is not None and args.sampler_steps < 1:
        raise ValueError(f"--sampler-steps {args.sampler_steps} must be at least 1")


def _conditioning_source(name: str) -> Any:
    import earth2studio.data as e2d

    if name not in _CONDITIONING:
        raise ValueError(f"unknown --conditioning-source {name!r}; choose demo, {', '.join(_CONDITIONING)}")
    return getattr(e2d, _CONDITIONING[name])()


def _state_source(name: str, package: Any) -> Any:
    if name not in _STATE:
        raise ValueError(f"unknown --state-source {name!r}; choose demo or {', '.join(_STATE)}")
    from earth2studio.data import HRRR

    from stormcast_plugin.data.crop import CropToGrid

    return CropToGrid(HRRR(), package.grid)


def _check_times(source: Any, times: list[datetime], what: str) -> None:
    """Ask an earth2studio source whether it holds ``times`` (its own offline
    check of its archive's range), before any work starts."""
    inner = getattr(source, "source", source)  # CropToGrid wraps the real source
    validate = getattr(inner, "_validate_time", None)
    if not callable(validate):
        return
    try:
        validate(times)
    except ValueError as err:
        raise ValueError(f"the {what} source cannot serve this forecast: {err}") from None


def _has_hours(path: Path) -> bool:
    from stormcast_plugin.io.forecast_store import completed_lead_hours, open_store

    try:
        return (completed_lead_hours(open_store(path)) or 0) >= 1
    except Exception:  # noqa: BLE001 - an unreadable partial store holds nothing worth keeping
        return False


def forecast_from_args(args: argparse.Namespace) -> int:
    """Run ``stormcast forecast``; returns the exit status."""
    import numpy as np

    from stormcast_plugin.demo import DEMO_PACKAGE_DIR, demo_package
    from stormcast_plugin.io.forecast_store import open_output
    from stormcast_plugin.io.replace import FORECAST, check_replaceable, replacing
    from stormcast_plugin.models.px.stormcast import StormCast
    from stormcast_plugin.package import DEFAULT_SOURCE, load_package
    from stormcast_plugin.run import run_forecast
    from stormcast_plugin.utils.time import as_time

    _check_numbers(args)
    start = as_time(args.start, "--start", whole_hours=True)
    device = parse_device(args.device)
    if args.package is None:
        package_path: Any = DEMO_PACKAGE_DIR
        package = demo_package()
        default_sources = "demo"
        print(f"Running the embedded default: {package.info.get('description', '')}", file=sys.stderr)
    else:
        package_path = DEFAULT_SOURCE if args.package == "official" else args.package
        default_sources = None
    out = check_replaceable(args.out, [FORECAST], overwrite=args.overwrite, reading=[package_path])
    if args.package is not None:
        package = load_package(package_path)
    state_name = args.state_source or default_sources or "hrrr"
    cond_name = args.conditioning_source or default_sources or "arco"
    state = None if state_name == "demo" else _state_source(state_name, package)
    cond = None if cond_name == "demo" else _conditioning_source(cond_name)
    first = start.astype("datetime64[s]").item()
    if state is not None:
        _check_times(state, [first], "state")
    if cond is not None and cond_name != "gfs":
        hours = np.arange(args.hours, dtype="timedelta64[h]")
        _check_times(cond, [(start + h).astype("datetime64[s]").item() for h in hours[[0, -1]]], "conditioning")

    with replacing(out, [FORECAST], overwrite=args.overwrite, reading=[package_path], keep_partial=_has_hours) as tmp:
        case_dir = tmp.parent / f"{tmp.name}.case"  # the demo's synthetic case, beside the partial output
        try:
            if "demo" in (state_name, cond_name):
                from stormcast_plugin.datagen.demo_case import demo_sources

                demo_state, demo_cond, _ = demo_sources(start, args.hours, case_dir,
                                                        progress=not args.no_progress and args.hours > 48)
                state = demo_state if state is None else state
                cond = demo_cond if cond is None else cond
            model = StormCast(package, cond, seed=args.seed, sampler_steps=args.sampler_steps,
                              regression_only=args.regression_only).to(device)
            io = open_output(tmp, fmt=args.format)
            run_forecast(model, state, start, args.hours, io, members=args.members, batch_size=args.batch_size,
                         progress=not args.no_progress,
                         attrs={"state_source": state_name, "conditioning_source": cond_name})
        finally:
            shutil.rmtree(case_dir, ignore_errors=True)
    print(f"wrote {out} ({args.members} member(s), {args.hours} h)", file=sys.stderr)
    if args.plot:
        from stormcast_plugin.cli.plot import plot_from_args

        return plot_from_args(argparse.Namespace(forecast=str(out), variables=args.plot, out=None, member=0,
                                                 time_index=0, no_gif=False))
    return 0

