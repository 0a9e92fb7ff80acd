#!/usr/bin/env python
"""Benchmark fetching StormCast's ERA5 conditioning onto the HRRR grid, per step.

* **earth2studio** -- ``earth2studio.data.fetch_data(source, time, variable,
  lead_time, device, interp_to=coords | {"_lat": lat, "_lon": lon},
  interp_method="linear")``, the call Earth2Studio's StormCast wrapper makes
  every step (``earth2studio/models/px/stormcast.py``, ``StormCast.__call__``):
  xarray ``DataArray.interp`` (scipy ``interpn``) from the 0.25 degree grid to
  the model grid's 2-D latitudes/longitudes. It needs scipy; without it this
  row is skipped.
* **ours** -- ``stormcast_plugin.data.conditioning.ConditioningFetcher``: the
  bilinear weights are built once (the warm-up call, reported separately);
  every step reads the block of source points the domain needs and applies
  the weights in one fused ``grid_sample`` (``--method gather``: four
  ``index_select`` gathers and a weighted sum).

Both read the same in-memory source: 26 smooth random fields (the StormCast
conditioning variables, with roughly physical means and spreads) on the ERA5
grid, 721 x 1440, latitude 90..-90, longitude 0..359.75, the same for every
time. The target is the StormCast v1 domain (512 x 640). Each timed step asks
for a new hour; the methods' steps are interleaved so that both see the same
load. Reported: median and minimum seconds per step, the speed-up,
and the largest difference between the two results (absolute, and relative to
each variable's spread). Timings on a shared machine are approximate.

Usage (from the repository root; scipy, which the project's environment lacks,
can come from a separate ``pip install --target DIR scipy`` added to the path)::

    PYTHONPATH=.:DIR .venv/bin/python benchmarks/bench_conditioning.py --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import OrderedDict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

VARIABLES = (
    "u10m v10m t2m tcwv sp msl u1000 u850 u500 u250 v1000 v850 v500 v250 "
    "z1000 z850 z500 z250 t1000 t850 t500 t250 q1000 q850 q500 q250"
).split()

# Rough (mean, spread) so that the float32 rounding of each field is realistic.
_SCALES = {
    "u": (0.0, 10.0), "v": (0.0, 10.0), "t2m": (285.0, 15.0), "tcwv": (20.0, 10.0),
    "sp": (95000.0, 5000.0), "msl": (101000.0, 1500.0),
    "z1000": (1000.0, 800.0), "z850": (14500.0, 800.0), "z500": (55000.0, 1500.0), "z250": (103000.0, 2000.0),
    "t1000": (290.0, 12.0), "t850": (280.0, 12.0), "t500": (255.0, 10.0), "t250": (225.0, 8.0),
    "q1000": (0.008, 0.004), "q850": (0.005, 0.003), "q500": (0.001, 0.0008), "q250": (5e-5, 4e-5),
}


def _scale(name: str) -> tuple[float, float]:
    return _SCALES.get(name) or _SCALES[name[0]]


def smooth_fields(lat: np.ndarray, lon: np.ndarray, seed: int = 0, waves: int = 12) -> np.ndarray:
    """``[26, nlat, nlon]`` float32 sums of random low-order waves (periodic in longitude)."""
    rng = np.random.default_rng(seed)
    phi = np.radians(lat)[:, None]
    lam = np.radians(lon)[None, :]
    out = np.empty((len(VARIABLES), lat.size, lon.size), dtype=np.float32)
    for i, name in enumerate(VARIABLES):
        n = rng.integers(0, 9, waves)
        m = rng.integers(0, 13, waves)
        a = rng.standard_normal(waves) / np.sqrt(waves)
        lat_part = np.cos(n * phi + rng.uniform(0, np.pi, waves))  # [nlat, K]
        phase = rng.uniform(0, 2 * np.pi, waves)[:, None]
        lon_part = a[:, None] * np.cos(m[:, None] * lam + phase)  # [K, nlon]
        mean, spread = _scale(name)
        out[i] = mean + spread * (lat_part @ lon_part)
    return out


class InMemorySource:
    """An earth2studio DataSource returning the same fields for every requested time.

    Like a store that reads only what is asked, it copies nothing when the
    variables are requested in stored order (both methods ask that way), so the
    timings measure the conditioning pipeline rather than this stand-in.
    """

    def __init__(self, fields: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> None:
        import xarray as xr

        self.da = xr.DataArray(fields, dims=["variable", "lat", "lon"],
                               coords={"variable": list(VARIABLES), "lat": lat, "lon": lon})

    def __call__(self, time, variable):
        times = np.asarray(time, dtype="datetime64[ns]").ravel()
        names = [str(v) for v in variable]
        da = self.da if names == list(VARIABLES) else self.da.sel(variable=names)
        da = da.expand_dims(time=times.size).assign_coords(time=times)
        return da.transpose("time", "variable", "lat", "lon")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per method (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random fields")
    parser.add_argument("--method", choices=("grid_sample", "gather"), default="grid_sample",
                        help="how ours applies the cached weights (default grid_sample)")
    parser.add_argument("--skip-earth2studio", action="store_true", help="time only ours")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")

    import torch

    from stormcast_plugin.data.conditioning import ConditioningFetcher
    from stormcast_plugin.utils.grid import ModelGrid

    lat = np.linspace(90.0, -90.0, 721)
    lon = np.arange(1440) * 0.25
    fields = smooth_fields(lat, lon, args.seed)
    source = InMemorySource(fields, lat, lon)
    grid = ModelGrid.hrrr()
    t0 = np.datetime64("2024-06-01T00", "ns")
    lead = np.array([np.timedelta64(0, "h")], dtype="timedelta64[ns]")
    print(f"source: {len(VARIABLES)} x {lat.size} x {lon.size} float32 (0.25 deg); "
          f"target: {grid.name} {grid.shape}; ours: {args.method}; "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs")

    # -- ours: the warm-up call builds (and caches) the weights ---------------
    fetcher = ConditioningFetcher(source, VARIABLES, grid, device="cpu", regrid_method=args.method)
    start = time.perf_counter()
    fetcher(t0, lead)
    warm = time.perf_counter() - start
    methods = {"stormcast_plugin ConditioningFetcher": lambda t: fetcher(t, lead)}

    # -- earth2studio ----------------------------------------------------------
    if not args.skip_earth2studio:
        try:
            import scipy  # noqa: F401  (xarray's linear interp needs it)
        except ImportError:
            print("earth2studio path skipped: xarray's interp_method='linear' needs scipy, "
                  "which is not installed")
        else:
            from earth2studio.data import fetch_data

            variable = np.array(VARIABLES)

            def e2s_step(t: np.ndarray) -> torch.Tensor:
                coords = OrderedDict(time=t, lead_time=lead, variable=variable, hrrr_y=grid.y, hrrr_x=grid.x)
                x, _ = fetch_data(
                    source,
                    time=coords["time"],
                    variable=variable,
                    lead_time=coords["lead_time"],
                    device="cpu",
                    interp_to=coords | {"_lat": grid.lat, "_lon": grid.lon},
                    interp_method="linear",
                )
                return x

            e2s_step(np.array([t0]))  # warm-up
            methods["earth2studio fetch_data(interp linear)"] = e2s_step
    methods["(source call alone, in both rows)"] = lambda t: source(t, VARIABLES)

    # Interleaved, so that both see the same load on a shared machine.
    timings: dict[str, list[float]] = {name: [] for name in methods}
    results: dict[str, object] = {}
    for k in range(args.repeats):
        t = np.array([t0 + np.timedelta64(k + 1, "h")], dtype="datetime64[ns]")
        for name, fn in methods.items():
            start = time.perf_counter()
            results[name] = fn(t)
            timings[name].append(time.perf_counter() - start)
    rows = list(timings.items())
    ours = results["stormcast_plugin ConditioningFetcher"]
    e2s = results.get("earth2studio fetch_data(interp linear)")
    ours_t = timings["stormcast_plugin ConditioningFetcher"]

    # -- report --------------------------------------------------------------
    base = statistics.median(rows[1][1] if e2s is not None else rows[0][1])
    print(f"\nweights built in the warm-up call of ours: {warm:.3f} s (once per source/target grid)\n")
    print(f"{'method':40s} {'median s/step':>14s} {'min s/step':>11s} {'speed-up':>9s}")
    for name, ts in rows:
        med = statistics.median(ts)
        ratio = "" if name.startswith("(") else f"{base / med:8.1f}x"
        print(f"{name:40s} {med:14.4f} {min(ts):11.4f} {ratio:>9s}")
    if e2s is not None:
        a = e2s.reshape(len(VARIABLES), *grid.shape).double()
        b = ours.reshape(len(VARIABLES), *grid.shape).double()
        diff = (a - b).abs().flatten(1).amax(1)
        spread = torch.tensor([_scale(v)[1] for v in VARIABLES], dtype=torch.float64)
        worst = int(torch.argmax(diff / spread))
        print(f"\nmax |earth2studio - ours|: {diff.max().item():.3g} "
              f"(largest on {VARIABLES[int(diff.argmax())]}); "
              f"relative to the field spread: {(diff / spread).max().item():.2e} ({VARIABLES[worst]})")
        print(f"ours is {base / statistics.median(ours_t):.1f}x faster per step (target >= 10x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
