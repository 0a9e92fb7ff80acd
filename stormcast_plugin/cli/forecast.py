"""``stormcast forecast``: arguments, checks and the run (one process or under torchrun).

Everything a run needs is checked before anything is written: the numbers,
the start time, the device, the package, the sources and the output path
(:func:`stormcast_plugin.io.replace.check_replaceable`). The forecast is
then written beside ``--out`` and moved in place when complete, so a failed
or killed run leaves an existing output untouched; a run interrupted after
some hours with nothing there before keeps those hours, flagged in the
store's ``written`` array, and ``--resume`` completes it in place.

Under ``torchrun`` every rank checks the arguments; rank 0 owns the output
(the lock, the path beside ``--out``, the swap at the end) and the demo
case, and tells the other ranks where to write and read. The shared
arguments and the run are also those of ``stormcast hindcast``
(:mod:`stormcast_plugin.cli.hindcast`): a forecast is a campaign of one
initial time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

__all__ = ["MAX_HOURS", "MAX_MEMBERS", "add_forecast_arguments", "add_run_arguments", "forecast_from_args",
           "parse_device", "run_from_args"]

MAX_HOURS = 8784
"""Longest forecast accepted (a leap year of hourly steps)."""
MAX_MEMBERS = 100_000

_CONDITIONING = {"arco": "ARCO_ERA5", "cds": "CDS", "gfs": "GFS_FX", "wb2": "WB2ERA5"}
_STATE = ("hrrr",)
_USER_ERRORS = (ValueError, FileExistsError, FileNotFoundError, PermissionError)


def add_run_arguments(f: argparse.ArgumentParser, *, out: str) -> argparse.ArgumentParser:
    """Add the arguments ``stormcast forecast`` and ``stormcast hindcast`` share (all but the times)."""
    f.add_argument("--hours", type=int, default=12, help=f"forecast length in hours, 1 to {MAX_HOURS} "
                   "(default %(default)s)")
    f.add_argument("--members", type=int, default=1, help="ensemble members (default %(default)s)")
    f.add_argument("--out", default=out, help="output store, .zarr or .nc (default %(default)s)")
    f.add_argument("--format", choices=["zarr", "netcdf"], help="output format (default: from --out suffix)")
    f.add_argument("--package", help="model package: a folder, hf://org/repo[@rev], or 'official' "
                   "(nvidia/stormcast-v1-era5-hrrr); default: the embedded demo")
    f.add_argument("--state-source", default=None,
                   help="initial state: 'demo' (default with the demo model) or 'hrrr' (earth2studio HRRR)")
    f.add_argument("--conditioning-source", default=None,
                   help="conditioning: 'demo', 'arco' (ERA5, default for packages), 'cds', 'gfs', 'wb2'")
    f.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default; under torchrun: "
                   "cuda:LOCAL_RANK where CUDA exists, else cpu)")
    f.add_argument("--seed", type=int, default=0, help="noise seed (default %(default)s)")
    f.add_argument("--sampler-steps", type=int, help="diffusion sampler steps (default: the package's)")
    f.add_argument("--sampler", metavar="NAME", help="diffusion solver, e.g. heun, dpmpp_2m, dpmpp_2m_sde, "
                   "euler_ancestral (default: the package's)")
    f.add_argument("--max-batch", "--batch-size", dest="max_batch", type=int, metavar="N",
                   help="members stepped together, at most (default: all); halved, with a warning, when the "
                   "device runs out of memory")
    f.add_argument("--regression-only", action="store_true", help="deterministic mean forecast, no diffusion")
    f.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="run the networks in float32 (default) or under bfloat16 autocast (GPUs since Ampere)")
    f.add_argument("--compile", action="store_true", help="torch.compile the diffusion network (minutes of "
                   "compiling, then faster steps on GPUs)")
    f.add_argument("--noise-device", action="store_true",
                   help="draw the sampler noise on the model's device instead of the CPU: faster on GPUs, but "
                   "its random streams differ from the CPU's, so results repeat only on the same kind of device")
    f.add_argument("--resume", action="store_true",
                   help="complete the zarr store at --out in place: compute only the member-hours it lacks")
    f.add_argument("--overwrite", action="store_true",
                   help="replace an existing forecast store written by stormcast (nothing else)")
    f.add_argument("--plot", metavar="VARS", help="also draw these variables (comma-separated) next to the output")
    f.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return f


def add_forecast_arguments(f: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the arguments of ``stormcast forecast`` to ``f``."""
    # torchrun takes a bare --start for an abbreviation of its own --start-method: --start-time passes through
    f.add_argument("--start", "--start-time", dest="start", default="2024-05-01T00", help="initial time, ISO 8601, "
                   "on the hour (default %(default)s; write --start-time under torchrun)")
    return add_run_arguments(f, out="forecast.zarr")


def parse_device(name: str) -> Any:
    """The torch device for ``--device`` in a single process (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``).

    Raises
    ------
    ValueError
        For an unknown device, or one this machine does not have.
    """
    from stormcast_plugin.distributed import resolve_device

    return resolve_device(name)


def _check_numbers(args: argparse.Namespace) -> None:
    if not 1 <= args.hours <= MAX_HOURS:
        raise ValueError(f"--hours {args.hours} is out of range; give 1 to {MAX_HOURS} hours")
    if not 1 <= args.members <= MAX_MEMBERS:
        raise ValueError(f"--members {args.members} is out of range; give 1 to {MAX_MEMBERS}")
    if args.max_batch is not None and args.max_batch < 1:
        raise ValueError(f"--max-batch (--batch-size) {args.max_batch} must be at least 1 (or leave it out to step "
                         "all members together)")
    if args.sampler_steps is not None and args.sampler_steps < 1:
        raise ValueError(f"--sampler-steps {args.sampler_steps} must be at least 1")
    if getattr(args, "sampler", None) is not None:
        from stormcast_plugin.diffusion.solvers import SOLVERS

        if args.sampler not in SOLVERS:
            raise ValueError(f"--sampler {args.sampler!r} is not a solver; choose one of {', '.join(SOLVERS)}")
    if args.resume and args.overwrite:
        raise ValueError("--resume completes the store at --out and --overwrite replaces it: give one of them")


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
    """Whether a partial store holds any member-hour after the initial state."""
    from stormcast_plugin.io.forecast_store import WRITTEN, completed_lead_hours, open_store

    try:
        ds = open_store(path)
        if WRITTEN in ds.data_vars:
            return bool((ds[WRITTEN].isel(lead_time=slice(1, None)).fillna(0) == 1).any())
        return (completed_lead_hours(ds) or 0) >= 1
    except Exception:  # noqa: BLE001 - an unreadable partial store holds nothing worth keeping
        return False


def forecast_from_args(args: argparse.Namespace) -> int:
    """Run ``stormcast forecast``; returns the exit status."""
    from stormcast_plugin.utils.time import as_time

    return run_from_args(args, [as_time(args.start, "--start", whole_hours=True)])


# ------------------------------------------------------------------ output
def _adopt_partial(out: Path) -> Path | None:
    """With ``--resume`` and no store at ``out``: the partial store a killed run
    left beside it (``.NAME.partial-PID``, its process gone), moved into place."""
    from stormcast_plugin.io.replace import FORECAST, output_kind

    prefix = f".{out.name}.partial-"
    for p in sorted(out.parent.glob(prefix + "*")):
        pid = p.name[len(prefix):].split(".")[0]
        if not pid.isdigit() or output_kind(p) != FORECAST:
            continue
        try:
            os.kill(int(pid), 0)
            continue  # its run is alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        os.replace(p, out)
        shutil.rmtree(p.parent / f"{p.name}.case", ignore_errors=True)  # its demo case, if it had one
        return p
    return None


@contextlib.contextmanager
def _in_place(out: Path) -> Iterator[Path]:
    """``--resume``: the store at ``out`` itself, under the lock every writer of ``out`` takes."""
    import errno
    import fcntl

    from stormcast_plugin.io.replace import FORECAST, output_kind

    if not out.exists():
        adopted = _adopt_partial(out)
        if adopted is None:
            raise FileNotFoundError(f"--resume: there is no store at {out} to complete; run without --resume to "
                                    "start it")
        print(f"resuming the partial store of an interrupted run, {adopted.name}, now at {out}", file=sys.stderr)
    if output_kind(out) is None:
        raise ValueError(f"--resume: {out} is not a forecast store written by stormcast; give the store to complete")
    fd = os.open(out.parent / f".{out.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ValueError(f"another run is writing {out}; wait for it to finish") from None
            raise
        yield out
    finally:
        os.close(fd)


def _broadcast_outcome(ranks: Any, prepare: Any) -> dict[str, Any]:
    """Run ``prepare()`` on rank 0 and give its result (or its error) to every rank."""
    if ranks.main:
        try:
            result = prepare()
        except BaseException as err:
            kind = "input" if isinstance(err, _USER_ERRORS) else "run"
            ranks.broadcast({"error": str(err), "kind": kind})
            raise
        return ranks.broadcast(result)
    result = ranks.broadcast(None)
    if "error" in result:
        cls = ValueError if result["kind"] == "input" else RuntimeError
        raise cls(f"rank 0 stopped the run: {result['error']}")
    return result


# ------------------------------------------------------------------ the run
def run_from_args(args: argparse.Namespace, starts: list[Any]) -> int:
    """Run ``stormcast forecast`` or ``stormcast hindcast`` from ``starts``; returns the exit status."""
    from stormcast_plugin.distributed import setup, teardown

    _check_numbers(args)
    ranks = setup(args.device)
    try:
        return _run(args, starts, ranks)
    finally:
        teardown()


def _run(args: argparse.Namespace, starts: list[Any], ranks: Any) -> int:
    import numpy as np
    import torch

    from stormcast_plugin.demo import DEMO_PACKAGE_DIR, demo_package
    from stormcast_plugin.io.forecast_store import NETCDF_SUFFIXES, open_output
    from stormcast_plugin.io.replace import FORECAST, check_replaceable, replacing
    from stormcast_plugin.models.px.stormcast import StormCast
    from stormcast_plugin.package import DEFAULT_SOURCE, load_package
    from stormcast_plugin.run import run_forecast

    netcdf = args.format == "netcdf" or (args.format is None and Path(args.out).suffix.lower() in NETCDF_SUFFIXES)
    if netcdf and (ranks.world > 1 or args.resume):
        raise ValueError(f"--out {args.out}: a run over several processes or with --resume writes a zarr store; "
                         "name a .zarr output")
    if args.package is None:
        package_path: Any = DEMO_PACKAGE_DIR
        package = demo_package()
        default_sources = "demo"
        if ranks.main:
            print(f"Running the embedded default: {package.info.get('description', '')}", file=sys.stderr)
    else:
        package_path = DEFAULT_SOURCE if args.package == "official" else args.package
        default_sources = None
    if args.resume:
        out = Path(args.out).expanduser().resolve()  # checked under its lock (_in_place)
    else:
        out = check_replaceable(args.out, [FORECAST], overwrite=args.overwrite, reading=[package_path])
    if args.package is not None:
        package = load_package(package_path)
    state_name = args.state_source or default_sources or "hrrr"
    cond_name = args.conditioning_source or default_sources or "arco"
    state = None if state_name == "demo" else _state_source(state_name, package)
    cond = None if cond_name == "demo" else _conditioning_source(cond_name)
    starts = sorted(starts)
    span = int((starts[-1] - starts[0]) / np.timedelta64(1, "h")) + args.hours  # hours from the first start
    if state is not None:
        _check_times(state, [t.astype("datetime64[s]").item() for t in starts[:: max(1, len(starts) - 1)]], "state")
    if cond is not None and cond_name != "gfs":
        ends = [starts[0], starts[-1] + np.timedelta64(args.hours - 1, "h")]
        _check_times(cond, [t.astype("datetime64[s]").item() for t in ends], "conditioning")

    with contextlib.ExitStack() as stack:
        def prepare() -> dict[str, Any]:
            target = stack.enter_context(_in_place(out) if args.resume else replacing(
                out, [FORECAST], overwrite=args.overwrite, reading=[package_path], keep_partial=_has_hours,
                in_place_when_new=not netcdf))
            # the demo's synthetic case, hidden beside the output
            case = target.parent / (f"{target.name}.case" if target.name.startswith(".") else f".{target.name}.case")
            stack.callback(shutil.rmtree, case, ignore_errors=True)
            store = None
            if "demo" in (state_name, cond_name):
                from stormcast_plugin.datagen.demo_case import demo_sources

                store = str(demo_sources(starts[0], span, case, progress=not args.no_progress and span > 48)[2].path)
            return {"target": str(target), "case": store}

        where = _broadcast_outcome(ranks, prepare)
        if where["case"] is not None:
            from stormcast_plugin.data.store_sources import StoreConditioningSource, StoreStateSource

            state = StoreStateSource(where["case"]) if state is None else state
            cond = StoreConditioningSource(where["case"]) if cond is None else cond
        model = StormCast(package, cond, seed=args.seed, sampler_steps=args.sampler_steps,
                          sampler_args=None if getattr(args, "sampler", None) is None else {"solver": args.sampler},
                          regression_only=args.regression_only, noise_on_device=args.noise_device,
                          autocast_dtype=torch.bfloat16 if args.precision == "bf16" else None).to(ranks.device)
        if args.compile:
            model.compile_denoiser()
        target = Path(where["target"])
        io: Any = target if ranks.world > 1 or args.resume else open_output(target, fmt=args.format)
        run_forecast(model, state, np.asarray(starts), args.hours, io, members=args.members,
                     batch_size=args.max_batch, progress=not args.no_progress, resume=args.resume, ranks=ranks,
                     attrs={"state_source": state_name, "conditioning_source": cond_name})
    if not ranks.main:
        return 0
    what = f"{len(starts)} initial times, " if len(starts) > 1 else ""
    print(f"wrote {out} ({what}{args.members} member(s), {args.hours} h)", file=sys.stderr)
    if args.plot:
        from stormcast_plugin.cli.plot import plot_from_args

        return plot_from_args(argparse.Namespace(forecast=str(out), variables=args.plot, out=None, member=0,
                                                 time_index=0, no_gif=False))
    return 0
