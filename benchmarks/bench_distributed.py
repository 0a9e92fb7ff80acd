#!/usr/bin/env python
"""Campaign throughput (member-hours per second) with 1 and with N processes under torchrun.

The driver makes one demo case (the embedded demo model's synthetic truth)
and then, for each process count, runs ``torchrun --standalone
--nproc_per_node N`` on this script in ``--worker`` mode. The machine's cores
are split between the processes (``OMP_NUM_THREADS = cores // N``). Each worker
builds the model and the sources, waits at a barrier, and then times
:func:`stormcast_plugin.run.run_forecast` over the same campaign into a fresh
zarr store. The timed span leaves out interpreter start-up, imports and
model loading. Rank 0 prints one JSON line.

It reports, for each process count:

* member-hours per second;
* seconds per member-hour per process;
* bytes written to the store per member-hour, from the chunk files on disk
  (zstd, earth2studio's default). The fields alone, uncompressed, are
  ``variables x ny x nx x 4`` bytes;
* with ``--paper-write``: the time one process takes to write one member-hour
  of the paper's state (99 x 512 x 640 float32, smooth random fields) into
  a local zarr store through :func:`stormcast_plugin.io.forecast_store.write_hour`,
  and the bytes that lands on disk.

Usage (repository root)::

    PYTHONPATH=. python benchmarks/bench_distributed.py --procs 1,2 --members 4 --starts 2 --hours 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START = "2024-05-01T00"


def _store_bytes(path: Path, variables: list[str]) -> int:
    return sum(f.stat().st_size for v in variables for f in (path / v).rglob("*") if f.is_file()
               and f.name != "zarr.json")


def worker(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from stormcast_plugin.data.store_sources import StoreConditioningSource, StoreStateSource
    from stormcast_plugin.demo import demo_package
    from stormcast_plugin.distributed import setup, teardown
    from stormcast_plugin.models.px.stormcast import StormCast
    from stormcast_plugin.run import run_forecast

    ranks = setup("cpu")
    package = demo_package()
    model = StormCast(package, StoreConditioningSource(args.case), seed=0,
                      sampler_steps=args.sampler_steps).to(ranks.device)
    starts = np.datetime64(START, "ns") + np.arange(args.starts) * np.timedelta64(args.every, "h")
    ranks.barrier()
    t0, c0 = time.perf_counter(), time.process_time()
    run_forecast(model, StoreStateSource(args.case), starts, args.hours, args.out, members=args.members,
                 batch_size=args.batch, progress=False, ranks=ranks)
    cpu = [time.process_time() - c0]
    ranks.barrier()
    seconds = time.perf_counter() - t0
    if ranks.world > 1:
        gathered: list = [None] * ranks.world
        torch.distributed.all_gather_object(gathered, cpu[0])
        cpu = gathered
    if ranks.main:
        variables = [str(v) for v in model.variables]
        member_hours = args.members * args.starts * args.hours
        print(json.dumps(dict(procs=ranks.world, threads=torch.get_num_threads(), seconds=seconds, cpu=sum(cpu),
                              member_hours=member_hours, store_bytes=_store_bytes(Path(args.out), variables),
                              variables=len(variables), grid=list(package.grid.shape))), flush=True)
    teardown()


def paper_write(repeats: int = 3) -> tuple[float, int]:
    """(seconds, bytes on disk) of writing one 99 x 512 x 640 member-hour, median of ``repeats``."""
    from collections import OrderedDict

    import numpy as np
    import torch

    from stormcast_plugin.io.forecast_store import add_forecast_arrays, open_output, write_hour

    names = [f"v{i}" for i in range(99)]
    # smooth fields (a few waves plus weak noise) compress like weather, not like white noise
    y, x = np.meshgrid(np.linspace(0, 6, 512), np.linspace(0, 8, 640), indexing="ij")
    rng = np.random.default_rng(0)
    base = np.stack([np.sin(y * rng.uniform(0.5, 2) + x * rng.uniform(0.5, 2)) * 10 + 280 for _ in names])
    fields = torch.from_numpy((base + rng.normal(0, 0.05, base.shape)).astype(np.float32))[None, None, None]
    times = []
    with tempfile.TemporaryDirectory(prefix="bench-write-") as tmp:
        coords = OrderedDict(ensemble=np.arange(repeats), time=np.array([START], dtype="datetime64[ns]"),
                             lead_time=np.array([np.timedelta64(0, "h")]), hrrr_y=np.arange(512.0),
                             hrrr_x=np.arange(640.0))
        io = open_output(Path(tmp) / "w.zarr")
        add_forecast_arrays(io, coords, names, member_chunk=1)
        for m in range(repeats):
            one = OrderedDict(coords)
            one["ensemble"] = coords["ensemble"][m:m + 1]
            t0 = time.perf_counter()
            write_hour(io, fields, one, names)
            times.append(time.perf_counter() - t0)
        size = _store_bytes(Path(tmp) / "w.zarr", names) // repeats
    return sorted(times)[len(times) // 2], size


def driver(args: argparse.Namespace) -> None:
    import numpy as np

    from stormcast_plugin.datagen.demo_case import demo_sources

    cores = os.cpu_count() or 1
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-dist-") as tmp:
        span = (args.starts - 1) * args.every + args.hours
        *_, store = demo_sources(np.datetime64(START), span, Path(tmp) / "case")
        for k, n in enumerate([int(p) for p in args.procs.split(",")] * args.rounds):
            out = Path(tmp) / f"hc-{k}.zarr"
            load = os.getloadavg()[0]
            env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // n)), "PYTHONUNBUFFERED": "1"}
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
                   __file__, "--worker", "--case", str(store.path), "--out", str(out), "--members",
                   str(args.members), "--starts", str(args.starts), "--every", str(args.every), "--hours",
                   str(args.hours), "--batch", str(args.batch), "--sampler-steps", str(args.sampler_steps)]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{n} process(es) failed:\n{done.stderr[-3000:]}")
            line = [ln for ln in done.stdout.splitlines() if ln.startswith("{")][-1]
            results.append({**json.loads(line), "load": load})
    print(f"machine: {cores} cores")
    print("| processes x threads | load average before | member-hours | seconds | member-hours/s | "
          "CPU s per member-hour (all ranks) | store bytes per member-hour |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        rate = r["member_hours"] / r["seconds"]
        written = r["member_hours"] * (args.hours + 1) / args.hours  # lead 0 is written too
        print(f"| {r['procs']} x {r['threads']} | {r['load']:.2f} | {r['member_hours']} | {r['seconds']:.1f} | "
              f"{rate:.3f} | {r['cpu'] / r['member_hours']:.2f} | {r['store_bytes'] / written:.0f} |")
    r = results[0]
    raw = r["variables"] * r["grid"][0] * r["grid"][1] * 4
    print(f"fields per member-hour uncompressed: {raw} bytes ({r['variables']} variables x {r['grid']} x 4)")
    if args.paper_write:
        seconds, size = paper_write()
        print(f"one paper-size member-hour (99 x 512 x 640 float32 = {99 * 512 * 640 * 4} bytes): written in "
              f"{seconds:.2f} s by one process, {size} bytes on disk")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--procs", default="1,2", help="process counts to compare (default %(default)s)")
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--starts", type=int, default=2, help="initial times")
    p.add_argument("--every", type=int, default=12, help="hours between initial times")
    p.add_argument("--hours", type=int, default=3)
    p.add_argument("--batch", type=int, default=2, help="members stepped together")
    p.add_argument("--sampler-steps", type=int, default=12, help="the demo package's own setting")
    p.add_argument("--rounds", type=int, default=2, help="runs of each process count, interleaved")
    p.add_argument("--paper-write", action="store_true", help="also time writing one paper-size member-hour")
    args = p.parse_args()
    worker(args) if args.worker else driver(args)


if __name__ == "__main__":
    main()
