#!/usr/bin/env python
"""Benchmark training throughput on CPU: ``stormcast_plugin`` vs PhysicsNeMo.

One training step of each stage, the same on both sides except for the networks:

* ``regression``: ``R(cat[state, cond, inv])``, MSE to the next state,
  backward, Adam step (lr 4e-4, betas 0.9/0.999).
* ``diffusion``: frozen regression forward (no grad, eval mode), then the
  denoiser on the noisy residual ``y + sigma n`` with the condition
  ``cat[state, r, inv]``, EDM-weighted MSE, backward, Adam step.

Ours runs ``stormcast_plugin.train.loop.Trainer.loss`` (the training code
itself, on a minimal trainer holding the nets) with ``RegressionNet`` /
``EDMPrecond``; PhysicsNeMo's side writes the same loss around
``physicsnemo.models.diffusion_unets.StormCastUNet`` and
``physicsnemo.diffusion.preconditioners.legacy.EDMPrecond``. Noise levels and
noise come from the trainer's per-sample generators
(``sample_generators(seed, step, positions)``), drawn in the same order on
both sides. Both nets start from the same weights (PhysicsNeMo networks built
as in ``bench_step.py`` and perturbed, copied into ours with a strict
``load_state_dict``), are trained in ``train()`` mode with dropout 0 (so the
losses can be compared), and see the same batch every step. Not timed on
either side: the trainer's non-finite-gradient check and gradient-norm clip.

Each (side, stage) runs in its own fresh subprocess (``bench_step.py``'s
server approach); memory is that process's ``VmHWM``, whole process and the
increase over the resident size after the imports (nets, gradients, Adam
state, activations). Timed steps are
interleaved (pn, ours, pn, ours, ...) after ``--warmup`` untimed steps; before
each timed step the driver waits for a quiet machine and re-runs a step that
other processes disturbed. The losses of the first step (a warm-up step) must
agree within ``--tolerance`` (relative).

Usage (repository root, PhysicsNeMo environment)::

    PYTHONPATH=. /work/refenv/bin/python benchmarks/bench_train.py            # small
    PYTHONPATH=. /work/refenv/bin/python benchmarks/bench_train.py --config paper
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_step import (  # noqa: E402  (helpers of the inference benchmark)
    CONFIGS, HZ, INPUT_SEED, WEIGHT_SEED, busy_jiffies, cpu_model, cpu_seconds, emit, load_string,
    maxrss_mb, others_busy, our_configs, perturb_parameters, physicsnemo_args, reset_peak_rss,
    rss_mb, wait_for_quiet,
)

LR, BETAS, P_MEAN, P_STD, SIGMA_DATA, NOISE_SEED = 4e-4, (0.9, 0.999), -1.2, 1.2, 0.5, 31
TOLERANCE = 1e-4  # relative difference of the first-step losses accepted as equal
DEFAULT_STEPS = {"small": 7, "paper": 5}


def pn_args(cfg: dict, dropout: float) -> tuple[dict, dict]:
    reg, diff = physicsnemo_args(cfg)
    return {**reg, "dropout": dropout}, {**diff, "dropout": dropout}


def prepare(cfg: dict, batch: int, dropout: float, workdir: Path) -> dict:
    from physicsnemo.diffusion.preconditioners.legacy import EDMPrecond
    from physicsnemo.models.diffusion_unets import StormCastUNet

    reg_args, diff_args = pn_args(cfg, dropout)
    torch.manual_seed(WEIGHT_SEED)
    reg, diff = StormCastUNet(**reg_args), EDMPrecond(**diff_args)
    gen = torch.Generator().manual_seed(WEIGHT_SEED + 1)
    perturb_parameters(reg, gen)
    perturb_parameters(diff, gen)
    torch.save(reg.state_dict(), workdir / "reg.pt")
    torch.save(diff.state_dict(), workdir / "diff.pt")
    (h, w), g = cfg["grid"], torch.Generator().manual_seed(INPUT_SEED)
    x = torch.randn(batch, cfg["state"], h, w, generator=g)
    torch.save(dict(
        state=x, next_state=x + 0.3 * torch.randn(x.shape, generator=g),
        conditioning=torch.randn(batch, cfg["cond"], h, w, generator=g),
        invariants=torch.randn(1, cfg["inv"], h, w, generator=g).expand(batch, -1, -1, -1).contiguous(),
    ), workdir / "batch.pt")
    return dict(regression=sum(p.numel() for p in reg.parameters()) / 1e6,
                diffusion=sum(p.numel() for p in diff.parameters()) / 1e6)


def build_side(side: str, stage: str, cfg: dict, dropout: float, workdir: Path):
    """Returns ``step(k) -> loss`` doing one full training step ``k``."""
    from stormcast_plugin.train.loop import Trainer, sample_generators

    batch = torch.load(workdir / "batch.pt", weights_only=True)
    b = batch["state"].shape[0]
    if side == "ours":
        from stormcast_plugin.models.nn import EDMPrecond, RegressionNet

        reg_cfg, diff_cfg = (dataclasses.replace(c, dropout=dropout) for c in our_configs(cfg))
        reg, diff = RegressionNet(reg_cfg), EDMPrecond(diff_cfg, sigma_data=SIGMA_DATA)
    else:
        from physicsnemo.diffusion.preconditioners.legacy import EDMPrecond
        from physicsnemo.models.diffusion_unets import StormCastUNet

        reg_args, diff_args = pn_args(cfg, dropout)
        reg, diff = StormCastUNet(**reg_args), EDMPrecond(**diff_args)
    # mmap: the loaded state dicts leave no freed heap behind in the process
    reg.load_state_dict(torch.load(workdir / "reg.pt", weights_only=True, mmap=True), strict=True)
    if stage == "diffusion":
        diff.load_state_dict(torch.load(workdir / "diff.pt", weights_only=True, mmap=True), strict=True)
        net = diff
        reg.eval().requires_grad_(False)
    else:
        net, diff = reg, None
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=LR, betas=BETAS)

    if side == "ours":
        from stormcast_plugin.models.nn import StormCastNets
        from stormcast_plugin.train.config import TrainingConfig

        tr = Trainer.__new__(Trainer)  # just what Trainer.loss reads
        tr.stage, tr.model = stage, net
        tr.nets = StormCastNets(reg, diff)
        tr.training = TrainingConfig(precision="fp32", P_mean=P_MEAN, P_std=P_STD)
        net.train()  # StormCastNets starts in eval mode

        def loss_fn(gens):
            return tr.loss(batch, gens)
    else:
        x, nxt, e, inv = batch["state"], batch["next_state"], batch["conditioning"], batch["invariants"]

        def loss_fn(gens):
            if stage == "regression":
                return torch.nn.functional.mse_loss(reg(torch.cat([x, e, inv], dim=1)), nxt)
            with torch.no_grad():
                mean = reg(torch.cat([x, e, inv], dim=1))
            y = nxt - mean
            cond = torch.cat([x, mean, inv], dim=1)
            n = torch.stack([torch.randn(1, generator=g) for g in gens]).reshape(-1)
            sigma = torch.exp(P_MEAN + P_STD * n)
            noise = torch.stack([torch.randn(y.shape[1:], generator=g) for g in gens])
            denoised = diff(y + noise * sigma[:, None, None, None], sigma, condition=cond)
            weight = ((sigma**2 + SIGMA_DATA**2) / (sigma * SIGMA_DATA) ** 2)[:, None, None, None]
            return (weight * (denoised - y) ** 2).mean()

    def step(k: int) -> float:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(sample_generators(NOISE_SEED, k, list(range(b))))
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def side_main(args) -> None:
    torch.set_num_threads(args.threads)
    import stormcast_plugin.train.loop  # noqa: F401  (imports first: the memory baseline)
    if args.side == "ours":
        import stormcast_plugin.models.nn  # noqa: F401
    else:
        import physicsnemo.diffusion.preconditioners.legacy  # noqa: F401
        import physicsnemo.models.diffusion_unets  # noqa: F401
    # Adam's first step imports torch._dynamo (about 150 MB); keep that out of the increase.
    w = torch.nn.Parameter(torch.ones(2))
    w.sum().backward()
    torch.optim.Adam([w]).step()
    gc.collect()
    rss_imports = rss_mb()
    reset_ok = reset_peak_rss()
    step = build_side(args.side, args.stage, CONFIGS[args.config], args.dropout, Path(args.workdir))
    emit(dict(ready=True))
    k = 0
    for line in sys.stdin:
        if line.strip() != "step":
            break
        c0, t0 = cpu_seconds(), time.perf_counter()
        loss = step(k)
        emit(dict(wall=time.perf_counter() - t0, cpu=cpu_seconds() - c0, loss=loss))
        k += 1
    peak = maxrss_mb()
    emit(dict(maxrss_total_mb=peak, rss_imports_mb=rss_imports,
              peak_increase_mb=peak - rss_imports if reset_ok else float("nan")))


class Side:
    def __init__(self, side: str, stage: str, workdir: Path, args) -> None:
        cmd = [sys.executable, os.path.abspath(__file__), "--side", side, "--stage", stage,
               "--config", args.config, "--workdir", str(workdir), "--threads", str(args.threads),
               "--batch", str(args.batch), "--dropout", str(args.dropout)]
        if args.grid:
            cmd += ["--grid", *map(str, args.grid)]
        if args.channels:
            cmd += ["--channels", str(args.channels)]
        self.side = side
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.read()

    def read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith("@@JSON "):
                return json.loads(line[7:])
            sys.stdout.write(line)
        raise RuntimeError(f"{self.side} side exited with status {self.proc.wait()}")

    def send(self, cmd: str) -> dict:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.read()

    def finish(self) -> dict:
        r = self.send("finish")
        self.proc.stdin.close()
        if self.proc.wait() != 0:
            raise RuntimeError(f"{self.side} side failed")
        return r


def bench_stage(stage: str, workdir: Path, args) -> dict:
    order = ["physicsnemo", "ours"]
    sides = {s: Side(s, stage, workdir, args) for s in order}
    res = {s: dict(losses=[], times=[], retries=0, kept_disturbed=0, other=[]) for s in order}
    for k in range(args.warmup + args.steps):
        for s in order:
            if k < args.warmup:  # untimed; every step of a side runs once, so losses line up
                r = sides[s].send("step")
                print(f"[{stage}] {s:11s} warm-up step {k + 1}: {r['wall']:7.2f} s, loss {r['loss']:.6g}",
                      flush=True)
            else:
                # A disturbed step cannot be redone (it changes the weights), so the
                # next step replaces it: time up to --retries extra steps.
                for attempt in range(args.retries + 1):
                    before = wait_for_quiet(args.max_busy, args.max_wait)
                    b0 = busy_jiffies()
                    r = sides[s].send("step")
                    other = max(0.0, (busy_jiffies() - b0) / HZ - r["cpu"]) / r["wall"]
                    ok = other <= args.max_busy
                    print(f"[{stage}] {s:11s} step {k + 1}: {r['wall']:7.2f} s, loss {r['loss']:.6g} "
                          f"(other processes {before:.2f} cores before, {other:.2f} during)"
                          f"{'' if ok else ' -> disturbed'}", flush=True)
                    if ok or attempt == args.retries:
                        break
                    res[s]["retries"] += 1
                res[s]["times"].append(r["wall"])
                res[s]["other"].append(other)
                res[s]["kept_disturbed"] += not ok
            res[s]["losses"].append(r["loss"])
    for s in order:
        res[s].update(sides[s].finish())
        res[s]["median_s"] = statistics.median(res[s]["times"])
        res[s]["samples_per_s"] = args.batch / res[s]["median_s"]
        res[s]["best_samples_per_s"] = args.batch / min(res[s]["times"])
    return res


def report(stage: str, res: dict, args) -> list[str]:
    pn, us = res["physicsnemo"], res["ours"]
    l0, l1 = pn["losses"][0], us["losses"][0]
    rel = abs(l1 - l0) / abs(l0)
    n = min(len(pn["losses"]), len(us["losses"]))  # a replaced step adds one on that side
    row = lambda name, a, b, fmt, ratio=None: (  # noqa: E731
        f"{name:34s}{a:>14{fmt}}{b:>14{fmt}}" + (f"{ratio:>12.3f}" if ratio is not None else ""))
    return [
        f"-- {stage} stage",
        f"{'':34s}{'physicsnemo':>14s}{'ours':>14s}{'ours/pn':>12s}",
        row("samples/s (median step)", pn["samples_per_s"], us["samples_per_s"], ".3f",
            us["samples_per_s"] / pn["samples_per_s"]),
        row("samples/s (best step)", pn["best_samples_per_s"], us["best_samples_per_s"], ".3f",
            us["best_samples_per_s"] / pn["best_samples_per_s"]),
        row("step wall time, median (s)", pn["median_s"], us["median_s"], ".3f"),
        f"{'  timed steps (s)':34s}  pn: {', '.join(f'{t:.2f}' for t in pn['times'])}; "
        f"ours: {', '.join(f'{t:.2f}' for t in us['times'])}",
        row("peak RSS, whole process (MB)", pn["maxrss_total_mb"], us["maxrss_total_mb"], ".0f",
            us["maxrss_total_mb"] / pn["maxrss_total_mb"]),
        row("peak RSS over imports (MB)", pn["peak_increase_mb"], us["peak_increase_mb"], ".0f",
            us["peak_increase_mb"] / pn["peak_increase_mb"]),
        row("other procs, cores busy (max)", max(pn["other"]), max(us["other"]), ".2f"),
        row("disturbed steps replaced / kept", pn["retries"], us["retries"], "d")
        + f"   kept: {pn['kept_disturbed']} / {us['kept_disturbed']}",
        f"first-step loss: physicsnemo {l0:.8g}, ours {l1:.8g}, relative difference {rel:.2e} -> "
        f"{'EQUAL' if rel <= args.tolerance else 'NOT EQUAL'} within {args.tolerance:g}",
        f"loss after {n} steps (both sides): physicsnemo {pn['losses'][n - 1]:.8g}, "
        f"ours {us['losses'][n - 1]:.8g}",
        f"throughput ratio ours/physicsnemo: {us['samples_per_s'] / pn['samples_per_s']:.2f} "
        f"(target >= 1.0) -> {'PASS' if us['samples_per_s'] >= pn['samples_per_s'] else 'MISS'}",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description="Training samples/s on CPU: stormcast_plugin vs PhysicsNeMo")
    p.add_argument("--config", choices=sorted(CONFIGS), default="small")
    p.add_argument("--stages", nargs="+", choices=["regression", "diffusion"],
                   default=["regression", "diffusion"])
    p.add_argument("--batch", type=int, default=None, help="batch size (default: the config's members)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per side (small 7, paper 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout on both sides (default 0)")
    p.add_argument("--grid", type=int, nargs=2, default=None, help="override the grid (for quick tests)")
    p.add_argument("--channels", type=int, default=None, help="override model_channels (quick tests)")
    p.add_argument("--tolerance", type=float, default=TOLERANCE)
    p.add_argument("--max-busy", type=float, default=0.2)
    p.add_argument("--retries", type=int, default=4)
    p.add_argument("--max-wait", type=float, default=120.0)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--side", choices=["ours", "physicsnemo"], help=argparse.SUPPRESS)
    p.add_argument("--stage", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args()
    cfg = CONFIGS[args.config]
    if args.grid:
        cfg["grid"] = tuple(args.grid)
    if args.channels:
        cfg["model_channels"] = args.channels
    args.batch = args.batch or cfg["members"]
    if args.side:
        side_main(args)
        return
    args.steps = args.steps or DEFAULT_STEPS[args.config]

    import physicsnemo

    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; torch {torch.__version__}, physicsnemo "
          f"{physicsnemo.__version__}, {args.threads} threads; load average {load_string()}", flush=True)
    h, w = cfg["grid"]
    out = dict(config=args.config, cfg=cfg, batch=args.batch, stages={})
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        params = prepare(cfg, args.batch, args.dropout, Path(tmp))
        lines = [f"== {args.config}: {h}x{w} grid, model_channels {cfg['model_channels']}, channel_mult "
                 f"{cfg['channel_mult']}, num_blocks {cfg['num_blocks']}, {cfg['state']}/{cfg['cond']}/"
                 f"{cfg['inv']} channels, batch {args.batch}, dropout {args.dropout}, Adam lr {LR}; "
                 f"params regression {params['regression']:.2f} M, diffusion {params['diffusion']:.2f} M; "
                 f"{args.steps} timed steps after {args.warmup} warm-up"]
        for stage in args.stages:
            res = bench_stage(stage, Path(tmp), args)
            out["stages"][stage] = res
            lines += report(stage, res, args)
    print("\n".join(lines), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
