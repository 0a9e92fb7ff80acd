"""Skill of a model package on a held-out synthetic period.

For several initial times of a held-out store (another synthetic seed), run an
ensemble forecast and compare, per variable and lead time, the RMSE of the
ensemble mean with persistence, and the spread/skill ratio. Realism is
reported beside skill: the forecast/truth spectral power in three wavelength
bands (below 15 km, 15-60 km, 60 km and above; 1 is right, above 1 too noisy),
the RMSE of the members in a 4-point border over that inside it, the
reflectivity CSI at 20 dBZ of the members against persistence's, and the
drift (bias of the domain mean) against RMSE / 4.

    stormcast data synth --out /tmp/heldout.zarr --start 2024-04-22T00 --hours 40 \
        --grid 64x64 --preset tiny --seed 1 --terrain-seed 0
    python benchmarks/demo_skill.py --package stormcast_plugin/assets/demo \
        --store /tmp/heldout.zarr --members 4 --hours 6 --inits 6

The held-out store must cover the package's domain (its orography: keep the
training seed as ``--terrain-seed``); the networks see the package's invariants.

Prints a markdown table and writes JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import OrderedDict

import numpy as np
import torch
import xarray as xr


def realism_tables(fc, tr, ps, variables, leads) -> dict:
    """Print and return band ratios, edge/interior error, refc CSI at 20 dBZ and drift per variable and lead."""
    from realism import BORDER, band_ratios, edge_interior_ratio

    from stormcast_plugin import statistics as M

    out = {}
    m, i = fc.sizes["ensemble"], fc.sizes["init"]
    print(f"\n| variable | lead (h) | power <15 km | 15-60 km | >=60 km | edge/interior RMSE ({BORDER}-point border) "
          "| drift (bias of the mean) | RMSE / 4 |")
    print("|---|---|---|---|---|---|---|---|")
    for v in variables:
        for lead in leads:
            f = fc.sel(variable=v, lead_time=lead).values  # [member, init, y, x]
            t = tr.sel(variable=v, lead_time=lead).values  # [init, y, x]
            br = band_ratios(f.reshape(m * i, 1, *f.shape[2:]), np.tile(t, (m, 1, 1))[:, None])[0]
            ei = float(edge_interior_ratio((f - t[None])[:, :, None])[0])
            bias = float((f.mean(axis=0) - t).mean())
            rmse = float(np.sqrt(((f.mean(axis=0) - t) ** 2).mean()))
            out[f"{v}@{lead}h"] = {"bands": br.tolist(), "edge_interior": ei, "bias": bias, "rmse": rmse}
            print(f"| {v} | {lead} | {br[0]:.2f} | {br[1]:.2f} | {br[2]:.2f} | {ei:.2f} | {bias:.3g} | {rmse / 4:.3g} |")
    if "refc" in variables:
        red = ("init", "y", "x")
        f = fc.sel(variable="refc")
        t = tr.sel(variable="refc")
        csi_m = M.csi(f, t, thresholds=[20.0], dims=red).mean("ensemble").squeeze(drop=True)
        csi_p = M.csi(ps.sel(variable="refc"), t, thresholds=[20.0], dims=red).squeeze(drop=True)
        print("\n| lead (h) | refc CSI 20 dBZ (members) | persistence |")
        print("|---|---|---|")
        for lead in tr.lead_time.values[1:]:
            a, b = float(csi_m.sel(lead_time=lead)), float(csi_p.sel(lead_time=lead))
            out[f"refc_csi20@{int(lead)}h"] = {"model": a, "persistence": b}
            print(f"| {int(lead)} | {a:.3f} | {b:.3f} |")
        last = int(tr.lead_time.values[-1])
        quiet = t.sel(lead_time=last).values <= 10.0  # [init, y, x]
        echo = f.sel(lead_time=last).values > 10.0  # [member, init, y, x]
        share = float(echo[:, quiet].mean()) if quiet.any() else float("nan")
        out[f"refc_spurious10@{last}h"] = share
        print(f"\nspurious echoes at +{last} h: {100 * share:.1f} % of member points above 10 dBZ where the truth "
              "has none")
    return out


def calibration_table(fc, tr, variables, last: int) -> dict:
    """Per variable: the rank histogram over leads +1..``last`` (largest bin over
    the calibrated frequency 1 / (members + 1)) and the bias and RMSE of the
    ensemble mean at +``last`` h."""
    from stormcast_plugin import statistics as M

    leads = list(range(1, last + 1))
    hist = M.rank_histogram(fc.sel(lead_time=leads), tr.sel(lead_time=leads),
                            dims=("init", "lead_time", "y", "x"), ensemble_dim="ensemble")
    freq = hist / hist.sum("rank")
    m = fc.sizes["ensemble"]
    red = ("init", "y", "x")
    bias = M.bias(fc.mean("ensemble").sel(lead_time=last), tr.sel(lead_time=last), dims=red)
    rmse = M.rmse(fc.mean("ensemble").sel(lead_time=last), tr.sel(lead_time=last), dims=red)
    out = {}
    print(f"\n| variable | rank histogram +1..+{last} h (bins 0..{m}, % of points) | largest bin / calibrated "
          f"| bias +{last} h | RMSE / 4 |")
    print("|---|---|---|---|---|")
    for v in variables:
        f = freq.sel(variable=v).values
        b, r = float(bias.sel(variable=v)), float(rmse.sel(variable=v))
        out[v] = {"rank_frequency": [float(x) for x in f], "largest_over_calibrated": float(f.max() * (m + 1)),
                  f"bias@{last}h": b, f"rmse@{last}h": r}
        print(f"| {v} | {' '.join(f'{100 * x:.0f}' for x in f)} | {f.max() * (m + 1):.2f} | {b:.3g} | {r / 4:.3g} |")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--package", default=None, help="model package (default: the embedded demo)")
    p.add_argument("--store", required=True, help="held-out dataset store")
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--hours", type=int, default=6)
    p.add_argument("--inits", type=int, default=6, help="number of initial times")
    p.add_argument("--spacing", type=int, default=5, help="hours between initial times")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--leads", default=None,
                   help="comma-separated lead hours of the realism and skill tables (default: 1 and --hours)")
    p.add_argument("--sampler-steps", type=int, default=None)
    p.add_argument("--sampler", action="append", default=[], metavar="KEY=VALUE",
                   help="override a sampler option of the package, e.g. --sampler S_churn=10 (repeatable)")
    p.add_argument("--regression-only", action="store_true", help="score the regression mean alone")
    p.add_argument("--other-terrain", action="store_true",
                   help="score even if the store's invariants (orography) are not the package's")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from stormcast_plugin import statistics as M
    from stormcast_plugin.data.store_sources import StoreConditioningSource, StoreStateSource
    from stormcast_plugin.io.dataset_store import DatasetStore
    from stormcast_plugin.run import fetch_state
    from stormcast_plugin.models.px.stormcast import StormCast

    from realism import load_with_sampler

    pkg = load_with_sampler(args.package, args.sampler)
    store = DatasetStore.open(args.store)
    if not args.other_terrain:
        from stormcast_plugin.train.dataset import normalize_invariants

        seen = normalize_invariants(store.read_invariants(pkg.invariant_names))
        gap = np.abs(seen - pkg.invariants).max(axis=(1, 2))
        if gap.max() > 1e-3:
            far = ", ".join(f"{n} {g:.3g}" for n, g in zip(pkg.invariant_names, gap))
            raise SystemExit(
                f"the invariants of {args.store} differ from the package's (largest gap, normalised units: {far}): "
                "the store covers another terrain, which the model never sees. Make held-out data on the "
                "training domain (stormcast data synth --seed OTHER --terrain-seed TRAINING_SEED) or pass "
                "--other-terrain to score anyway"
            )
    model = StormCast(pkg, StoreConditioningSource(store), seed=args.seed, sampler_steps=args.sampler_steps,
                      regression_only=args.regression_only)
    state_src = StoreStateSource(store)
    variables = list(model.variables)
    inits = [store.times[1 + i * args.spacing] for i in range(args.inits)]
    if store.times[-1] < inits[-1] + np.timedelta64(args.hours, "h"):
        raise SystemExit("the store is too short for these initial times and hours")

    fc_all, tr_all, ps_all = [], [], []
    for t0 in inits:
        x, coords = fetch_state(state_src, [t0], variables, model.grid)
        xe = x.unsqueeze(0).repeat(args.members, 1, 1, 1, 1, 1)
        ce = OrderedDict(ensemble=np.arange(args.members))
        ce.update(coords)
        steps = []
        for h, (y, _) in enumerate(model.create_iterator(xe, ce)):
            steps.append(y[:, 0, 0].numpy())  # [member, var, H, W]
            if h == args.hours:
                break
        fc_all.append(np.stack(steps, axis=1))  # [member, lead, var, H, W]
        idx = store.index_of([t0 + np.timedelta64(h, "h") for h in range(args.hours + 1)])
        truth = store.read_state(idx, variables)  # [lead, var, H, W]
        tr_all.append(truth)
        ps_all.append(np.broadcast_to(truth[:1], truth.shape))
    dims = ("init", "lead_time", "variable", "y", "x")
    fc = xr.DataArray(np.stack(fc_all, axis=1), dims=("ensemble",) + dims)
    tr = xr.DataArray(np.stack(tr_all), dims=dims)
    ps = xr.DataArray(np.stack(ps_all), dims=dims)
    fc = fc.assign_coords(variable=variables, lead_time=np.arange(args.hours + 1))
    tr = tr.assign_coords(variable=variables, lead_time=np.arange(args.hours + 1))
    ps = ps.assign_coords(variable=variables, lead_time=np.arange(args.hours + 1))

    red = ("init", "y", "x")
    rmse_model = M.rmse(fc.mean("ensemble"), tr, dims=red)
    rmse_pers = M.rmse(ps, tr, dims=red)
    if args.members > 1:
        ssr = M.spread_skill_ratio(fc, tr, dims=red, ensemble_dim="ensemble")
    else:  # a single member has no spread
        ssr = xr.full_like(rmse_model, np.nan)
    leads = sorted({int(h) for h in args.leads.split(",")}) if args.leads else sorted({1, args.hours})
    if max(leads) > args.hours or min(leads) < 1:
        raise SystemExit(f"--leads {args.leads}: every lead must lie in 1..--hours ({args.hours})")
    realism = realism_tables(fc, tr, ps, variables, leads)
    calibration = calibration_table(fc, tr, variables, min(6, args.hours)) if args.members > 1 else {}
    results = {}
    print("| variable | lead (h) | RMSE model | RMSE persistence | ratio | spread/skill |")
    print("|---|---|---|---|---|---|")
    for v in variables:
        for lead in leads:
            a = float(rmse_model.sel(variable=v, lead_time=lead))
            b = float(rmse_pers.sel(variable=v, lead_time=lead))
            s = float(ssr.sel(variable=v, lead_time=lead))
            results[f"{v}@{lead}h"] = {"rmse": a, "rmse_persistence": b, "spread_skill": s}
            print(f"| {v} | {lead} | {a:.4g} | {b:.4g} | {a / b:.3f} | {s:.2f} |")
    beats = all(r["rmse"] < r["rmse_persistence"] for r in results.values())
    ssr_lead = min(6, args.hours)
    ssr_ok = args.members > 1 and all(0.5 <= r["spread_skill"] <= 1.5 for k, r in results.items()
                                      if k.endswith(f"@{ssr_lead}h"))
    print(f"\nbeats persistence everywhere: {beats}; spread/skill in [0.5, 1.5] at +{ssr_lead} h: {ssr_ok}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"results": results, "beats_persistence": beats, "spread_skill_ok": ssr_ok,
                       "realism": realism, "calibration": calibration, "members": args.members, "inits": [str(t) for t in inits]}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
