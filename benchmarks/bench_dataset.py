#!/usr/bin/env python
"""Benchmark training-sample loading: StormCastDataset against per-sample xarray decoding.

* **ours** -- :class:`stormcast_plugin.train.dataset.StormCastDataset`: one zarr
  chunk read per array and hour, the conditioning regridded with bilinear
  weights computed once per process (one fused ``grid_sample``).
* **reference** -- the approach of the PhysicsNeMo StormCast example: the
  store opened with ``xarray.open_zarr(..., chunks=None)`` (once per process;
  no dask, whose threaded scheduler deadlocks in forked workers), and per sample
  ``.sel`` of the hours ``t`` and ``t + 1`` and of the conditioning at ``t``,
  interpolated to the model grid's 2-D latitudes/longitudes with
  ``.interp(lat=xr.DataArray(grid_lat, dims=("y", "x")), lon=..., method="linear")``
  (scipy ``interpn``), then normalised.

Both produce the same fields (the largest difference is printed) and are read
through a ``torch.utils.data.DataLoader`` (batch 4 by default) with 0 and 2
worker processes. Each configuration runs one untimed warm-up epoch, then
``--epochs`` timed epochs with persistent workers (steady state: worker
start-up excluded); reported are samples per second over the timed epochs
and the ratio ours / reference. Timings on a shared machine are approximate.

By default a synthetic store is built in a temporary folder: ``--hours``
hourly random fields on a ``--size`` x ``--size`` crop of the HRRR grid
(16 state and 11 conditioning variables, the "small" preset) with the
conditioning on a 0.25 degree grid one degree around the domain. ``--store``
benchmarks an existing store instead.

Usage (from the repository root; the reference needs scipy, which the
project's environment lacks: install it apart with
``pip install --target DIR scipy`` and add DIR to the path)::

    PYTHONPATH=.:DIR .venv/bin/python benchmarks/bench_dataset.py
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from stormcast_plugin.train.dataset import StormCastDataset  # noqa: E402
from stormcast_plugin.io.dataset_store import DatasetStore  # noqa: E402

# Centre of the StormCast v1 domain in the native HRRR grid.
_CENTRE_ROW, _CENTRE_COL = 529, 899


def build_store(path: Path, *, hours: int, size: int, n_state: int, n_cond: int, seed: int = 0) -> DatasetStore:
    """A synthetic store of random fields (see the module docstring).

    Parameters
    ----------
    path : Path
        Destination (``*.zarr``), replaced if it exists.
    hours : int
        Number of consecutive hours, all written.
    size : int
        Side of the square crop of the HRRR grid.
    n_state, n_cond : int
        Numbers of state and conditioning variables.
    seed : int
        Seed of the random fields.

    Returns
    -------
    DatasetStore
    """
    from stormcast_plugin.utils.grid import ModelGrid
    from stormcast_plugin.utils.variables import INVARIANTS, PRESETS

    if hours < 2 or size < 2 or n_state < 1 or n_cond < 1:
        raise ValueError(f"need hours >= 2, size >= 2 and at least one variable of each kind; got hours={hours}, "
                         f"size={size}, state={n_state}, conditioning={n_cond}")
    r0, c0 = _CENTRE_ROW - size // 2, _CENTRE_COL - size // 2
    grid = ModelGrid.hrrr(rows=(r0, r0 + size), cols=(c0, c0 + size))
    small = PRESETS["small"]
    state = small["state"] if n_state == len(small["state"]) else tuple(f"s{i}" for i in range(n_state))
    cond = small["conditioning"] if n_cond == len(small["conditioning"]) else tuple(f"c{i}" for i in range(n_cond))
    lat_hi = np.ceil(grid.lat.max() / 0.25) * 0.25 + 1.0
    lat_lo = np.floor(grid.lat.min() / 0.25) * 0.25 - 1.0
    lon_lo = np.floor(grid.lon.min() / 0.25) * 0.25 - 1.0
    lon_hi = np.ceil(grid.lon.max() / 0.25) * 0.25 + 1.0
    cond_lat = np.arange(lat_hi, lat_lo - 1e-9, -0.25)  # descending, as ERA5
    cond_lon = np.arange(lon_lo, lon_hi + 1e-9, 0.25)
    t0 = np.datetime64("2024-05-01T00", "ns")
    store = DatasetStore.create(path, times=[t0 + np.timedelta64(h, "h") for h in range(hours)],
                                state_variables=state, conditioning_variables=cond, invariant_names=INVARIANTS,
                                grid=grid, cond_lat=cond_lat, cond_lon=cond_lon, overwrite=True,
                                attrs={"source": "synthetic (bench_dataset.py)"})
    rng = np.random.default_rng(seed)
    for i in range(hours):
        store.write_hour(i, rng.standard_normal((len(state), size, size), dtype=np.float32),
                         rng.standard_normal((len(cond), len(cond_lat), len(cond_lon)), dtype=np.float32))
    store.write_invariants(rng.random((len(INVARIANTS), size, size), dtype=np.float32))
    store.write_statistics(np.full(len(state), 0.1), np.full(len(state), 1.1),
                           np.full(len(cond), -0.1), np.full(len(cond), 0.9))
    return store


class XarrayReference(torch.utils.data.Dataset):
    """The reference loader: xarray selection and interpolation per sample.

    Serves the same pairs as ``dataset`` (its times, variables and statistics).
    The xarray dataset is opened lazily in each process.

    Parameters
    ----------
    dataset : StormCastDataset
        The dataset whose samples are reproduced.
    """

    def __init__(self, dataset: StormCastDataset) -> None:
        self.path = dataset.path
        self.times = dataset.times
        self.state_variables = list(dataset.state_variables)
        self.conditioning_variables = list(dataset.conditioning_variables)
        self.invariant_names = list(dataset.invariant_names)
        self.stats = {k: v.numpy().astype(np.float64)[:, None, None] for k, v in dataset.stats.items()}
        self._ds: Any = None
        self._targets: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_ds": None, "_targets": None}

    def __len__(self) -> int:
        return len(self.times)

    def _open(self) -> None:
        import xarray as xr

        # chunks=None: lazily indexed arrays without dask. (Dask's threaded scheduler,
        # once used in the parent, deadlocks in forked DataLoader workers; lazy
        # indexing is also the faster reference.)
        self._ds = xr.open_zarr(str(self.path), consolidated=False, chunks=None)
        lat = np.asarray(self._ds["grid_lat"].values)
        lon = np.asarray(self._ds["grid_lon"].values)
        self._targets = (xr.DataArray(lat, dims=("y", "x")), xr.DataArray(lon, dims=("y", "x")))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self._ds is None:
            self._open()
        ds = self._ds
        t = self.times[i]
        s = self.stats
        state = ds["state"].sel(variable=self.state_variables)
        s0 = state.sel(time=t).values
        s1 = state.sel(time=t + np.timedelta64(1, "h")).values
        lat, lon = self._targets
        cond = ds["conditioning"].sel(time=t, cond_variable=self.conditioning_variables)
        c = cond.interp(lat=lat, lon=lon, method="linear").values
        inv = ds["invariants"].sel(invariant=self.invariant_names).values
        hours = int((t - np.datetime64("1970-01-01T00", "ns")) // np.timedelta64(1, "h"))
        f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
        return {
            "state": f32((s0 - s["state_mean"]) / s["state_std"]),
            "next_state": f32((s1 - s["state_mean"]) / s["state_std"]),
            "conditioning": f32((c - s["conditioning_mean"]) / s["conditioning_std"]),
            "invariants": f32(inv),
            "time": torch.tensor(hours, dtype=torch.int64),
        }


def throughput(dataset: torch.utils.data.Dataset, workers: int, batch: int, epochs: int) -> float:
    """Samples per second through a DataLoader over ``epochs`` timed epochs.

    Workers are persistent and one untimed warm-up epoch runs first, so the
    figure is the steady-state rate (worker start-up and first-use costs,
    such as opening the store, are excluded).
    """
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=workers, shuffle=False,
                                         persistent_workers=workers > 0)

    def epoch() -> int:
        return sum(int(b["state"].shape[0]) for b in loader)

    epoch()
    t0 = time.perf_counter()
    n = sum(epoch() for _ in range(epochs))
    rate = n / (time.perf_counter() - t0)
    del loader  # stops persistent workers
    return rate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", type=Path, help="benchmark this existing store instead of a synthetic one")
    p.add_argument("--hours", type=int, default=64, help="hours of the synthetic store (default 64)")
    p.add_argument("--size", type=int, default=128, help="grid side of the synthetic store (default 128)")
    p.add_argument("--state-vars", type=int, default=16, help="state variables (default 16)")
    p.add_argument("--cond-vars", type=int, default=11, help="conditioning variables (default 11)")
    p.add_argument("--batch", type=int, default=4, help="batch size (default 4)")
    p.add_argument("--workers", type=str, default="0,2", help="comma-separated worker counts (default 0,2)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per configuration (default 3)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads of the main process (default 1; DataLoader workers use 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        workers = [int(w) for w in args.workers.split(",")]
    except ValueError:
        p.error(f"--workers {args.workers!r} is not a comma-separated list of integers, e.g. 0,2")
    try:
        import scipy  # noqa: F401  (xarray's linear interp needs it)
        have_scipy = True
    except ImportError:
        have_scipy = False
        print("reference skipped: xarray's interp(method='linear') needs scipy; install it apart "
              "(pip install --target DIR scipy) and add DIR to PYTHONPATH")

    with tempfile.TemporaryDirectory(prefix="bench_dataset_") as tmp:
        if args.store is None:
            path = Path(tmp) / "synthetic.zarr"
            t0 = time.perf_counter()
            build_store(path, hours=args.hours, size=args.size, n_state=args.state_vars, n_cond=args.cond_vars)
            print(f"built {path.name}: {args.hours} h, {args.size}x{args.size}, {args.state_vars} state / "
                  f"{args.cond_vars} conditioning variables in {time.perf_counter() - t0:.1f} s")
        else:
            path = args.store
        ours = StormCastDataset(path)
        st = DatasetStore.open(path)
        print(f"{ours!r}\nconditioning grid {len(st.cond_lat)}x{len(st.cond_lon)}; batch {args.batch}, "
              f"{args.epochs} timed epochs of {len(ours)} samples; cores {os.cpu_count()} (shared machine: "
              "timings are approximate)")
        ref = XarrayReference(ours) if have_scipy else None
        if ref is not None:
            a, b = ours[len(ours) // 2], ref[len(ours) // 2]
            diff = max(float((a[k] - b[k]).abs().max()) for k in b)
            print(f"largest difference ours - reference over one sample: {diff:.2e} (normalised units)")
        print(f"{'workers':>8} {'ours (samples/s)':>17} {'reference (samples/s)':>22} {'ratio':>7}")
        for w in workers:
            r_ours = throughput(ours, w, args.batch, args.epochs)
            r_ref = throughput(ref, w, args.batch, args.epochs) if ref is not None else float("nan")
            print(f"{w:>8d} {r_ours:>17.1f} {r_ref:>22.1f} {r_ours / r_ref:>6.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
