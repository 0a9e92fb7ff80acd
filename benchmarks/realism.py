"""Realism of a model package's rollouts: where excess (or missing) power comes from.

Runs ensemble rollouts from several initial times of a held-out store and
reports, per variable and lead time, the forecast/truth spectral power in
three wavelength bands (below 15 km, 15-60 km, 60 km and above; mean spectra
over initial times and members), the RMSE of the members in a 4-point border
over the RMSE in the interior, the RMSE of the ensemble mean and the spread.
Each candidate source of power can be switched on or off on its own:

--mode full            the package as shipped
--mode regression      the regression mean alone (no sampled residual)
--mode zero-denoiser   the sampler with D(x; sigma) = 0 (adds exactly nothing)
--mode zero-network    the sampler with the U-Net output F = 0 inside the EDM
                       preconditioning (D = c_skip x): what the preconditioned
                       sampler adds when the network brings no information
--noise-memory H       override the sampler's noise memory (0: independent)
--spread-factor F      multiply the sampled residual (the residual scale) by F
--sampler KEY=VALUE    override another sampler option

--sigma-check N adds, on N one-hour samples of the store, the denoiser error
per noise level (relative to the error of D = c_skip x, the best denoiser
that ignores the data) and the spectral band ratio of the sampled one-hour
residual over the true one (x(t+1) minus the regression mean).

    stormcast data synth --out /tmp/s17.zarr --start 2024-04-01T00 --hours 400 \
        --grid 64x64 --preset tiny --seed 17 --terrain-seed 0
    python benchmarks/realism.py --store /tmp/s17.zarr --inits 4 --spacing 60 \
        --hours 12 --members 2 --mode regression

Prints markdown tables and writes JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import OrderedDict

import numpy as np
import torch

BORDER = 4  # points of the edge band scored apart from the interior


def edge_interior_ratio(err: np.ndarray, border: int = BORDER) -> np.ndarray:
    """RMSE in a ``border``-point frame over RMSE inside it, for ``err[..., H, W]`` (reduced over all but the last
    three axes: returns one ratio per ``err.shape[-3]`` channel)."""
    mask = np.zeros(err.shape[-2:], dtype=bool)
    mask[:border] = mask[-border:] = True
    mask[:, :border] = mask[:, -border:] = True
    sq = np.moveaxis(err.reshape(-1, *err.shape[-3:]), 1, 0).reshape(err.shape[-3], -1, *err.shape[-2:]) ** 2
    edge = np.sqrt(sq[:, :, mask].mean(axis=(1, 2)))
    inner = np.sqrt(sq[:, :, ~mask].mean(axis=(1, 2)))
    return edge / np.maximum(inner, 1e-30)


def band_ratios(fc: np.ndarray, tr: np.ndarray) -> np.ndarray:
    """``[C, 3]`` spectral band ratios of ``fc[S, C, H, W]`` over ``tr[S', C, H, W]`` (mean spectra over samples)."""
    import xarray as xr

    from stormcast_plugin.statistics import spectral_band_ratio

    f = xr.DataArray(fc, dims=("sample", "variable", "y", "x"))
    t = xr.DataArray(tr, dims=("sample", "variable", "y", "x"))
    r = spectral_band_ratio(f, t, dims=("y", "x"), mean_dims=("sample",))
    return r.transpose("variable", "band").values


def _patch(model, mode: str, spread_factor: float) -> None:
    net = model.nets.diffusion
    if mode == "zero-denoiser":
        net.forward = lambda x, sigma, condition=None: torch.zeros_like(x.float())
    elif mode == "zero-network":
        net.model.forward = lambda x, noise_labels, class_labels=None, **kw: torch.zeros(
            x.shape[0], net.img_channels, *x.shape[2:], dtype=x.dtype)
    if spread_factor != 1.0:
        net.set_residual_scale(net.residual_scale * float(spread_factor))


def rollouts(model, store, inits, hours: int, members: int):
    from stormcast_plugin.data.store_sources import StoreStateSource
    from stormcast_plugin.run import fetch_state

    src = StoreStateSource(store)
    variables = list(model.variables)
    fcs, trs = [], []
    for t0 in inits:
        x, coords = fetch_state(src, [t0], variables, model.grid)
        xe = x.unsqueeze(0).repeat(members, 1, 1, 1, 1, 1)
        ce = OrderedDict(ensemble=np.arange(members))
        ce.update(coords)
        steps = []
        for h, (y, _) in enumerate(model.create_iterator(xe, ce)):
            steps.append(y[:, 0, 0].numpy())
            if h == hours:
                break
        fcs.append(np.stack(steps, axis=1))  # [member, lead, C, H, W]
        trs.append(store.read_state(store.index_of([t0 + np.timedelta64(h, "h") for h in range(hours + 1)]),
                                    variables))
    return np.stack(fcs, axis=1), np.stack(trs)  # [M, I, L, C, H, W], [I, L, C, H, W]


def rollout_table(fc: np.ndarray, tr: np.ndarray, leads, variables) -> dict:
    out = {}
    std = tr.std(axis=(0, 1, 3, 4))  # climatological scale for reading RMSE
    for lead in leads:
        f = fc[:, :, lead]
        t = tr[:, lead]
        m, i = f.shape[:2]
        br = band_ratios(f.reshape(m * i, *f.shape[2:]), np.tile(t, (m, 1, 1, 1)))
        ei = edge_interior_ratio(f - t[None])
        rmse = np.sqrt(((f.mean(0) - t) ** 2).mean(axis=(0, 2, 3)))
        spread = np.sqrt(f.var(axis=0, ddof=1).mean(axis=(0, 2, 3))) if m > 1 else np.full(len(variables), np.nan)
        for k, v in enumerate(variables):
            out[f"{v}@{lead}h"] = {"bands": br[k].tolist(), "edge_interior": float(ei[k]),
                                   "rmse": float(rmse[k]), "spread": float(spread[k]), "std": float(std[k])}
    return out


def print_rollout(res: dict, variables, leads) -> None:
    print("| variable | lead (h) | power <15 km | 15-60 km | >=60 km | edge/interior RMSE | RMSE | spread |")
    print("|---|---|---|---|---|---|---|---|")
    for v in variables:
        for lead in leads:
            r = res[f"{v}@{lead}h"]
            b = r["bands"]
            print(f"| {v} | {lead} | {b[0]:.2f} | {b[1]:.2f} | {b[2]:.2f} | {r['edge_interior']:.2f} | "
                  f"{r['rmse']:.3g} | {r['spread']:.3g} |")


def sigma_check(model, store, n: int, seed: int = 0, crop: int = 0) -> dict:
    """Denoiser error per sigma and the one-hour residual spectrum on ``n`` samples of ``store``."""
    from stormcast_plugin.utils.local_time import local_time_channels

    variables = list(model.variables)
    nets = model.nets
    net = nets.diffusion
    idx = np.unique(np.linspace(1, len(store.times) - 2, n).round().astype(int))
    x0 = torch.from_numpy(store.read_state(idx, variables)).float()
    x1 = torch.from_numpy(store.read_state(idx + 1, variables)).float()
    times = np.asarray(store.times)[idx]
    s0 = (x0 - model.state_mean) / model.state_std
    s1 = (x1 - model.state_mean) / model.state_std
    cond = model._conditioning(times, np.timedelta64(0, "h"))
    extra = torch.from_numpy(local_time_channels(times, model.lon)).float() if model.local_time else None
    inv = model.invariants
    if crop:  # the centre crop the networks were trained on, instead of the whole grid
        h, w = s0.shape[-2:]
        ys, xs = slice((h - crop) // 2, (h + crop) // 2), slice((w - crop) // 2, (w + crop) // 2)
        s0, s1, cond, inv = s0[..., ys, xs], s1[..., ys, xs], cond[..., ys, xs], inv[..., ys, xs]
        extra = None if extra is None else extra[..., ys, xs]
    with torch.no_grad():
        mean = nets.regression_mean(s0, cond, inv, extra=extra)
        condition = nets.denoiser_condition(s0, mean, inv, extra)
        sd = float(net.sigma_data)
        # In the denoiser's units: the package's residual scale (the rms scaling measured in training, times
        # the spread calibration). The rms scaling means an RMS of sigma_data on the training residuals.
        r_true = (s1 - mean) / net.residual_scale.reshape(1, -1, 1, 1)
        rms_r = r_true.pow(2).mean(dim=(0, 2, 3)).sqrt().tolist()
        g = torch.Generator().manual_seed(seed)
        per_sigma = {}
        for sigma in (0.002, 0.01, 0.05, 0.2, 0.5, 1.0, 2.0, 10.0, 80.0):
            noise = torch.randn(r_true.shape, generator=g)
            d = net(r_true + sigma * noise, torch.tensor(sigma), condition)
            c_skip = sd ** 2 / (sigma ** 2 + sd ** 2)
            err = ((d - r_true) ** 2).mean(dim=(0, 2, 3))
            base = ((c_skip * (r_true + sigma * noise) - r_true) ** 2).mean(dim=(0, 2, 3))
            per_sigma[sigma] = (err / base).tolist()
        # one sampled residual per sample with the package's sampler
        gens = [torch.Generator().manual_seed(seed + 1000 + k) for k in range(len(idx))]
        nxt = nets.step(s0, cond, inv, extra=extra, sampler=model.sampler, generators=gens)
    sampled = (nxt - mean) * model.state_std
    true = (s1 - mean) * model.state_std
    br = band_ratios(sampled.numpy(), true.numpy())
    rms_ratio = (sampled.pow(2).mean(dim=(0, 2, 3)) / true.pow(2).mean(dim=(0, 2, 3))).sqrt().tolist()
    ei_mean = edge_interior_ratio(((mean - s1) * model.state_std).numpy())
    print("\nDenoiser error E|D - r|^2 over that of D = c_skip x (1: no better than ignoring the data), "
          f"{len(idx)} samples, r = (x(t+1) - regression mean) / residual scale; first row: RMS of r (the rms "
          f"residual scaling intends sigma_data = {sd})")
    print("| sigma | " + " | ".join(variables) + " |")
    print("|---|" + "---|" * len(variables))
    print("| RMS r | " + " | ".join(f"{v:.3g}" for v in rms_r) + " |")
    for sigma, vals in per_sigma.items():
        print(f"| {sigma:g} | " + " | ".join(f"{v:.3g}" for v in vals) + " |")
    print("\nOne-hour sampled residual over the true residual (x(t+1) - regression mean): RMS ratio and band "
          "ratios; regression-mean one-hour error edge/interior")
    print("| variable | RMS ratio | <15 km | 15-60 km | >=60 km | mean error edge/interior |")
    print("|---|---|---|---|---|---|")
    for k, v in enumerate(variables):
        print(f"| {v} | {rms_ratio[k]:.2f} | {br[k, 0]:.2f} | {br[k, 1]:.2f} | {br[k, 2]:.2f} | {ei_mean[k]:.2f} |")
    return {"denoiser_error_ratio": {str(s): v for s, v in per_sigma.items()}, "residual_rms_denoiser_units": rms_r,
            "sampled_residual_rms_ratio": rms_ratio, "sampled_residual_bands": br.tolist(),
            "mean_error_edge_interior": ei_mean.tolist()}


def load_with_sampler(package: str | None, overrides: list[str]):
    """The package at ``package`` (the embedded demo when None) with ``KEY=VALUE`` sampler overrides."""
    from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions

    if package is None:
        from stormcast_plugin.demo import demo_package

        pkg = demo_package()
    else:
        from stormcast_plugin.package import load_package

        pkg = load_package(package)
    opts = pkg.sampler.to_dict()
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--sampler {item!r} must look like KEY=VALUE")
        opts[key.strip()] = value.strip()
    pkg.sampler = SamplerOptions.from_dict(opts)
    return pkg


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--package", default=None, help="model package (default: the embedded demo)")
    p.add_argument("--store", required=True, help="held-out dataset store (the package's terrain)")
    p.add_argument("--members", type=int, default=2)
    p.add_argument("--hours", type=int, default=12)
    p.add_argument("--leads", default=None, help="comma-separated lead hours to print (default 1, 3, 6, hours)")
    p.add_argument("--inits", type=int, default=4)
    p.add_argument("--spacing", type=int, default=60, help="hours between initial times")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", choices=("full", "regression", "zero-denoiser", "zero-network"), default="full")
    p.add_argument("--noise-memory", type=float, default=None)
    p.add_argument("--spread-factor", type=float, default=1.0)
    p.add_argument("--sampler", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--sigma-check", type=int, default=0, metavar="N")
    p.add_argument("--crop", type=int, default=0, help="--sigma-check on the centre crop of this size")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from stormcast_plugin.data.store_sources import StoreConditioningSource
    from stormcast_plugin.io.dataset_store import DatasetStore
    from stormcast_plugin.models.px.stormcast import StormCast

    overrides = list(args.sampler)
    if args.noise_memory is not None:
        overrides.append(f"noise_memory_h={args.noise_memory}")
    pkg = load_with_sampler(args.package, overrides)
    store = DatasetStore.open(args.store)
    model = StormCast(pkg, StoreConditioningSource(store), seed=args.seed,
                      regression_only=args.mode == "regression")
    _patch(model, args.mode, args.spread_factor)
    variables = list(model.variables)
    report = {"mode": args.mode, "sampler": pkg.sampler.to_dict(), "spread_factor": args.spread_factor}
    if args.sigma_check:
        report["sigma_check"] = sigma_check(model, store, args.sigma_check, args.seed, args.crop)
    if args.inits > 0:
        inits = [store.times[1 + i * args.spacing] for i in range(args.inits)]
        if store.times[-1] < inits[-1] + np.timedelta64(args.hours, "h"):
            raise SystemExit("the store is too short for these initial times and hours")
        leads = ([int(v) for v in args.leads.split(",")] if args.leads
                 else sorted({1, min(3, args.hours), min(6, args.hours), args.hours}))
        members = 1 if args.mode == "regression" else args.members
        fc, tr = rollouts(model, store, inits, args.hours, members)
        res = rollout_table(fc, tr, leads, variables)
        print(f"\n{args.mode}, noise memory {pkg.sampler.noise_memory_h} h, spread x{args.spread_factor}, "
              f"{members} members, {len(inits)} initial times")
        print_rollout(res, variables, leads)
        report["rollout"] = res
        report["inits"] = [str(t) for t in inits]
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
