#!/usr/bin/env python
"""Benchmark one full StormCast step on CPU: ``stormcast_plugin`` vs PhysicsNeMo.

One step is the regression network followed by the diffusion sampler. Three
sides run on the same networks, inputs and member noise:

* **physicsnemo** -- PhysicsNeMo's ``StormCastUNet`` and legacy ``EDMPrecond``
  driven exactly as Earth2Studio's StormCast wrapper drives them
  (``earth2studio.models.px.stormcast.StormCast._forward``): one ensemble
  member at a time, under ``torch.inference_mode``, regression on
  ``cat(x, conditioning, invariants)``, then
  ``physicsnemo.diffusion.samplers.sample(..., solver="edm_stochastic_heun")``
  with an ``EDMNoiseScheduler`` denoiser and ``latents = sigma_max * randn``.
  That solver evaluates the network twice on every step, the last one
  included: 1 + 36 = 37 evaluations per member.
* **ours** -- ``stormcast_plugin.models.nn.stormcast_nets.StormCastNets.step`` on the whole
  ensemble as one batch, one ``torch.Generator`` per member, with the same
  18-step Heun sampler: 1 + 35 = 36 evaluations per batch (no second
  evaluation at sigma = 0).
* **fast** -- the same ``StormCastNets.step`` with the sampler that
  ``--fast`` names (default: the bundled demo package's sampler, e.g.
  ``dpmpp_2m:11``; ``SOLVER:STEPS[:KEY=VALUE...]``), the default of
  ``stormcast forecast``. Its result differs from the other two by the
  solver's discretisation, so it is reported, not checked.

Both sides use the same weights (random PhysicsNeMo networks built from a fixed
seed and perturbed so that every layer matters, copied into ours with a strict
``load_state_dict``), the same inputs and the same initial noise
(``torch.randn(shape, generator=torch.Generator().manual_seed(seed_m))`` for
member ``m``). Each side runs in its own fresh subprocess (this script re-runs
itself with ``--side`` and drives it over a pipe), so memory is per side.

Measured per side:

* wall time of a full step, median over ``--repeats`` runs (the minimum is
  printed too), after a warm-up forward of each network. The two sides' steps
  are interleaved (pn, ours, pn, ours, ...) so that both see the same machine.
  The machine may be shared: before each timed step the driver waits until
  other processes keep at most ``--max-busy`` cores busy, measures how busy
  they kept the CPUs during the step (``/proc/stat`` minus the side's own CPU
  time) and re-runs a disturbed step (up to ``--retries`` times);
* peak resident memory: the process's high-water mark (``VmHWM``, which is
  what ``getrusage().ru_maxrss`` reports, but without the parent's peak that
  ``ru_maxrss`` inherits through vfork + exec), for the whole process and as
  the increase over the resident size once the networks are built (the
  high-water mark is reset at that point through ``/proc/self/clear_refs``);
* the FLOP rate of one diffusion forward at the batch size the step uses
  (FLOPs from ``torch.utils.flop_counter.FlopCounterMode``: convolutions,
  matmuls, attention), as a fraction of the FLOP rate of a 2048 x 2048
  float32 matmul timed right after it in the same process.

Results are called equal when the largest absolute difference of the
normalised next state is within ``--tolerance`` (default 1e-3; float32
operation order, and PhysicsNeMo's float32 sampler state against our float64
one, make differences of order 1e-6 to 1e-4).

Usage (from the repository root, in an environment with PhysicsNeMo)::

    PYTHONPATH=. /work/refenv/bin/python benchmarks/bench_step.py --config all
    PYTHONPATH=. /work/refenv/bin/python benchmarks/bench_step.py --fast dpmpp_2m:8 --sides ours fast

Configurations (``--config``):

* ``small``: the paper network narrowed to ``model_channels`` 32 on a 64 x 64
  grid, 4 ensemble members (99 state, 26 conditioning, 2 invariant channels,
  channel_mult [1,2,2,2,2], 4 blocks per level, additive spatial embedding on
  the diffusion net).  Targets per member: ours >= 1.5x, fast >= 6x faster
  than PhysicsNeMo.
* ``paper``: the StormCast paper networks (model_channels 128, channel_mult
  [1,2,2,2,2], num_blocks 4, 99/26/2 channels, additive_pos_embed on the
  diffusion net) on a reduced 64 x 80 grid, 1 member.  Targets: ours >= 0.95x,
  fast >= 3x.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

CONFIGS = {
    "small": dict(
        grid=(64, 64),
        members=4,
        model_channels=32,
        channel_mult=[1, 2, 2, 2, 2],
        num_blocks=4,
        state=99,
        cond=26,
        inv=2,
        target=1.5,
        fast_target=6.0,
    ),
    "paper": dict(
        grid=(64, 80),
        members=1,
        model_channels=128,
        channel_mult=[1, 2, 2, 2, 2],
        num_blocks=4,
        state=99,
        cond=26,
        inv=2,
        target=0.95,
        fast_target=3.0,
    ),
}

# StormCast's sampler settings (Earth2Studio model.yaml sampler_args).
SAMPLER = dict(
    num_steps=18, sigma_min=0.002, sigma_max=800.0, rho=7.0,
    S_churn=0.0, S_min=0.0, S_max=float("inf"), S_noise=1.0,
)
WEIGHT_SEED = 20240611
INPUT_SEED = 7
MEMBER_SEED = 1000  # member m draws its noise from Generator().manual_seed(MEMBER_SEED + m)
TOLERANCE = 1e-3  # max abs difference (normalised units) accepted as "equal"
SIDES = ("physicsnemo", "ours", "fast")


def fast_sampler(spec: str | None) -> dict:
    """The fast side's sampler settings: ``SOLVER:STEPS[:KEY=VALUE...]`` or the bundled demo's sampler."""
    from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions

    if spec is None:
        from stormcast_plugin.demo import demo_package

        opts = demo_package().sampler.to_dict()
    else:
        parts = spec.split(":")
        opts = {**SAMPLER, "solver": parts[0], "num_steps": parts[1] if len(parts) > 1 else 18}
        for item in parts[2:]:
            key, _, value = item.partition("=")
            opts[key] = value
    opts.pop("noise_memory_h", None)  # a setting of the model's member noise, not of the step
    return SamplerOptions.from_dict(opts).to_dict()


# --------------------------------------------------------------------------- helpers


def load_string() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "n/a"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def maxrss_mb() -> float:
    """Peak resident set size of this process (MB).

    ``VmHWM`` from ``/proc/self/status``: the same high-water mark that
    ``getrusage(RUSAGE_SELF).ru_maxrss`` reports, without the parent's peak
    that ``ru_maxrss`` inherits when the process is spawned with vfork + exec
    (as ``subprocess`` does), and resettable through ``/proc/self/clear_refs``.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def reset_peak_rss() -> bool:
    """Reset the kernel's resident high-water mark (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def physicsnemo_args(cfg: dict) -> tuple[dict, dict]:
    """Constructor kwargs of StormCastUNet and EDMPrecond for a config."""
    common = dict(
        img_resolution=list(cfg["grid"]),
        model_type="SongUNet",
        model_channels=cfg["model_channels"],
        channel_mult=list(cfg["channel_mult"]),
        num_blocks=cfg["num_blocks"],
        attn_resolutions=[],
        bottleneck_attention=True,
        channel_mult_noise=1,
        channel_mult_emb=4,
        resample_filter=[1, 1],
        encoder_type="standard",
        decoder_type="standard",
        dropout=0.1,
    )
    s, c, i = cfg["state"], cfg["cond"], cfg["inv"]
    reg = dict(img_in_channels=s + c + i, img_out_channels=s, embedding_type="zero", **common)
    diff = dict(
        img_channels=s,
        img_in_channels=s + s + s + i,  # noisy state + cat(state, regression mean, invariants)
        img_out_channels=s,
        sigma_data=0.5,
        embedding_type="positional",
        additive_pos_embed=True,
        **common,
    )
    return reg, diff


def our_configs(cfg: dict):
    from stormcast_plugin.models.nn import SongUNetConfig

    s, c, i = cfg["state"], cfg["cond"], cfg["inv"]
    common = dict(
        img_resolution=tuple(cfg["grid"]),
        model_channels=cfg["model_channels"],
        channel_mult=tuple(cfg["channel_mult"]),
        num_blocks=cfg["num_blocks"],
        attn_resolutions=(),
        bottleneck_attention=True,
    )
    reg = SongUNetConfig(in_channels=s + c + i, out_channels=s, embedding_type="zero", **common)
    diff = SongUNetConfig(
        in_channels=3 * s + i, out_channels=s, embedding_type="positional",
        additive_pos_embed=True, **common,
    )
    return reg, diff


@torch.no_grad()
def perturb_parameters(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Move every parameter off its initial value (as the parity fixture does),
    so zero-initialised layers influence the result."""
    for name, p in sorted(model.named_parameters()):
        if name.endswith("spatial_emb") or p.ndim < 2:
            std = 0.2
        else:
            std = 0.5 / math.sqrt(p[0].numel())
        p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * std)


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def time_call(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --------------------------------------------------------------------------- prepare


def prepare(cfg: dict, workdir: Path) -> None:
    """Build PhysicsNeMo networks and inputs with fixed seeds; save them."""
    from physicsnemo.diffusion.preconditioners.legacy import EDMPrecond
    from physicsnemo.models.diffusion_unets import StormCastUNet

    reg_args, diff_args = physicsnemo_args(cfg)
    torch.manual_seed(WEIGHT_SEED)
    reg = StormCastUNet(**reg_args)
    diff = EDMPrecond(**diff_args)
    gen = torch.Generator().manual_seed(WEIGHT_SEED + 1)
    perturb_parameters(reg, gen)
    perturb_parameters(diff, gen)
    torch.save(reg.state_dict(), workdir / "reg.pt")
    torch.save(diff.state_dict(), workdir / "diff.pt")
    n_reg = sum(p.numel() for p in reg.parameters())
    n_diff = sum(p.numel() for p in diff.parameters())
    b, (h, w) = cfg["members"], cfg["grid"]
    g = torch.Generator().manual_seed(INPUT_SEED)
    inputs = dict(
        state=torch.randn(b, cfg["state"], h, w, generator=g),
        cond=torch.randn(b, cfg["cond"], h, w, generator=g),
        inv=torch.randn(cfg["inv"], h, w, generator=g),
    )
    torch.save(inputs, workdir / "inputs.pt")
    (workdir / "params.json").write_text(json.dumps(dict(regression=n_reg, diffusion=n_diff)))


# --------------------------------------------------------------------------- sides


def build_physicsnemo(cfg: dict, workdir: Path):
    from physicsnemo.diffusion.preconditioners.legacy import EDMPrecond
    from physicsnemo.models.diffusion_unets import StormCastUNet

    reg_args, diff_args = physicsnemo_args(cfg)
    reg = StormCastUNet(**reg_args)
    diff = EDMPrecond(**diff_args)
    reg.load_state_dict(torch.load(workdir / "reg.pt", weights_only=True), strict=True)
    diff.load_state_dict(torch.load(workdir / "diff.pt", weights_only=True), strict=True)
    return reg.eval(), diff.eval()


def run_physicsnemo(cfg: dict, workdir: Path, repeats: int, counter: dict):
    """Returns (step function, diffusion forward function, diffusion net)."""
    from physicsnemo.diffusion.noise_schedulers import EDMNoiseScheduler
    from physicsnemo.diffusion.samplers import sample

    reg, diff = build_physicsnemo(cfg, workdir)
    inputs = torch.load(workdir / "inputs.pt", weights_only=True)
    state, cond, inv = inputs["state"], inputs["cond"], inputs["inv"][None]
    sa = SAMPLER

    @torch.inference_mode()
    def forward_one(x: torch.Tensor, conditioning: torch.Tensor, seed: int) -> torch.Tensor:
        # Earth2Studio StormCast._forward (normalisation omitted: inputs are
        # already normalised); only the latent draw is seeded per member.
        invariant_tensor = inv.repeat(x.shape[0], 1, 1, 1)
        concats = torch.cat((x, conditioning, invariant_tensor), dim=1)
        out = reg(concats)
        counter["evals"] += 1
        condition = torch.cat((x, out, invariant_tensor), dim=1)
        latents = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
        latents = sa["sigma_max"] * latents

        def _conditional_diffusion(latent_x, t):
            counter["evals"] += 1
            return diff(latent_x, t, condition=condition)

        scheduler = EDMNoiseScheduler(
            sigma_min=sa["sigma_min"], sigma_max=sa["sigma_max"], rho=sa["rho"]
        )
        denoiser = scheduler.get_denoiser(x0_predictor=_conditional_diffusion)
        edm_out = sample(
            denoiser,
            latents,
            noise_scheduler=scheduler,
            num_steps=sa["num_steps"],
            solver="edm_stochastic_heun",
            solver_options={k: sa[k] for k in ("S_churn", "S_min", "S_max", "S_noise")},
        )
        out += edm_out
        return out

    def step() -> torch.Tensor:
        # Earth2Studio loops over batch entries, one member at a time.
        outs = [
            forward_one(state[m : m + 1], cond[m : m + 1], MEMBER_SEED + m)
            for m in range(state.shape[0])
        ]
        return torch.cat(outs)

    # One sample at a time, as the step runs it.
    x1 = torch.randn(state[:1].shape, generator=torch.Generator().manual_seed(1)) * 10.0
    c1 = torch.randn(1, 2 * cfg["state"] + cfg["inv"], *cfg["grid"],
                     generator=torch.Generator().manual_seed(2))
    s1 = torch.tensor([10.0])

    @torch.inference_mode()
    def diff_forward():
        return diff(x1, s1, condition=c1)

    @torch.inference_mode()
    def warmup():
        reg(torch.cat((state[:1], cond[:1], inv), dim=1))
        diff_forward()

    return step, diff_forward, warmup


def run_ours(cfg: dict, workdir: Path, repeats: int, counter: dict, sampler: dict = SAMPLER):
    from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions, StormCastNets
    from stormcast_plugin.diffusion import make_generators
    from stormcast_plugin.models.nn import EDMPrecond, RegressionNet

    reg_cfg, diff_cfg = our_configs(cfg)
    reg = RegressionNet(reg_cfg)
    diff = EDMPrecond(diff_cfg)
    res = reg.load_state_dict(torch.load(workdir / "reg.pt", weights_only=True), strict=True)
    assert not res.missing_keys and not res.unexpected_keys, res
    res = diff.load_state_dict(torch.load(workdir / "diff.pt", weights_only=True), strict=True)
    assert not res.missing_keys and not res.unexpected_keys, res
    nets = StormCastNets(reg, diff).eval()
    inputs = torch.load(workdir / "inputs.pt", weights_only=True)
    state, cond, inv = inputs["state"], inputs["cond"], inputs["inv"]
    b = state.shape[0]
    opts = SamplerOptions.from_dict(sampler)

    def count(*_):
        counter["evals"] += 1

    reg.register_forward_pre_hook(count)
    diff.register_forward_pre_hook(count)

    def step() -> torch.Tensor:
        gens = make_generators([MEMBER_SEED + m for m in range(b)])
        return nets.step(state, cond, inv, sampler=opts, generators=gens)

    # The diffusion forward at the batch size the step uses (all members).
    xb = torch.randn(state.shape, generator=torch.Generator().manual_seed(1)) * 10.0
    cb = torch.randn(b, diff.condition_channels, *cfg["grid"],
                     generator=torch.Generator().manual_seed(2))
    sb = torch.full((b,), 10.0)

    @torch.no_grad()
    def diff_forward():
        return diff(xb, sb, cb)

    @torch.no_grad()
    def warmup():
        reg(torch.cat((state, cond, inv.expand(b, -1, -1, -1)), dim=1))
        diff_forward()

    return step, diff_forward, warmup


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def emit(obj: dict) -> None:
    sys.stdout.write("@@JSON " + json.dumps(obj) + "\n")
    sys.stdout.flush()


def side_main(args) -> None:
    """A side as a server: build, warm up, then run one step per ``step``
    line read from stdin; ``finish`` measures the FLOP rate and exits."""
    torch.set_num_threads(args.threads)
    cfg = CONFIGS[args.config]
    workdir = Path(args.workdir)
    counter = {"evals": 0}
    if args.side == "physicsnemo":
        step, diff_forward, warmup = run_physicsnemo(cfg, workdir, args.repeats, counter)
    else:
        sampler = json.loads(args.sampler) if args.side == "fast" else SAMPLER
        step, diff_forward, warmup = run_ours(cfg, workdir, args.repeats, counter, sampler)
    warmup()
    gc.collect()
    rss_built = rss_mb()
    maxrss_built = maxrss_mb()
    reset_ok = reset_peak_rss()
    emit(dict(ready=True))
    out, evals = None, None
    for line in sys.stdin:
        cmd = line.strip()
        c0, t0 = cpu_seconds(), time.perf_counter()
        if cmd == "step":
            counter["evals"] = 0
            out = step()
            evals = counter["evals"]
            emit(dict(wall=time.perf_counter() - t0, cpu=cpu_seconds() - c0))
        elif cmd == "forward":
            # diffusion forward (median of 3) and the 2048^2 matmul, back to back
            t_fwd = time_call(diff_forward, 3)
            mm = matmul_gflops()
            emit(dict(wall=time.perf_counter() - t0, cpu=cpu_seconds() - c0,
                      diff_forward_s=t_fwd, matmul_gflops=mm))
        elif cmd == "finish":
            break
    maxrss_step = maxrss_mb()
    flops = count_flops(diff_forward)
    torch.save(out, workdir / f"out_{args.side}.pt")
    emit(dict(
        side=args.side,
        members=cfg["members"],
        evals_per_step=evals,
        maxrss_total_mb=maxrss_step,
        rss_after_build_mb=rss_built,
        maxrss_before_steps_mb=maxrss_built,
        peak_reset=reset_ok,
        step_peak_increase_mb=maxrss_step - (rss_built if reset_ok else maxrss_built),
        diff_forward_batch=1 if args.side == "physicsnemo" else cfg["members"],
        diff_forward_gflop=flops / 1e9,
        torch=torch.__version__,
        threads=torch.get_num_threads(),
    ))


# --------------------------------------------------------------------------- driver


def busy_jiffies() -> int:
    """Busy CPU time of the whole machine (all cores), in clock ticks."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    guest = sum(v[8:10]) if len(v) > 9 else 0  # already counted in user/nice
    return sum(v) - idle - guest


HZ = os.sysconf("SC_CLK_TCK")


def others_busy(interval: float = 2.0) -> float:
    """Cores kept busy by other processes (ours are idle while this samples)."""
    b0 = busy_jiffies()
    time.sleep(interval)
    return (busy_jiffies() - b0) / HZ / interval


def wait_for_quiet(max_busy: float, max_wait: float) -> float:
    t0 = time.time()
    busy = others_busy()
    while busy > max_busy and time.time() - t0 < max_wait:
        busy = others_busy(5.0)
    return busy


class Side:
    """A side running in its own fresh process."""

    def __init__(self, side: str, name: str, workdir: Path, args) -> None:
        cmd = [
            sys.executable, os.path.abspath(__file__), "--side", side, "--config", name,
            "--workdir", str(workdir), "--repeats", str(args.repeats), "--threads", str(args.threads),
        ]
        if side == "fast":
            cmd += ["--sampler", json.dumps(args.fast_sampler)]
        self.side = side
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.read()  # ready

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


def bench_config(name: str, args) -> dict:
    cfg = CONFIGS[name]
    with tempfile.TemporaryDirectory(prefix=f"bench_step_{name}_") as tmp:
        workdir = Path(tmp)
        prepare(cfg, workdir)
        params = json.loads((workdir / "params.json").read_text())
        order = [s for s in SIDES if s in args.sides]
        if args.ours_first:
            order = order[1:] + order[:1] if order[0] == "physicsnemo" else order
        sides = {s: Side(s, name, workdir, args) for s in order}
        timed = {s: dict(step=[], forward=[]) for s in order}

        def timed_call(side: str, cmd: str, label: str) -> dict:
            # Wait for other processes to go quiet, run, and redo the call when
            # they kept more than --max-busy cores busy meanwhile.
            for attempt in range(args.retries + 1):
                before = wait_for_quiet(args.max_busy, args.max_wait)
                load = load_string()
                b0 = busy_jiffies()
                r = sides[side].send(cmd)
                other = max(0.0, (busy_jiffies() - b0) / HZ - r["cpu"]) / r["wall"]
                r.update(others_busy_cores=other, loadavg=load, attempt=attempt)
                ok = other <= args.max_busy
                r["disturbed"] = not ok
                note = "" if ok else (" -> disturbed, again" if attempt < args.retries
                                      else " -> disturbed, kept (out of retries)")
                print(f"[{name}] {side:11s} {label}: {r['wall']:8.2f} s (load average {load}, "
                      f"other processes {before:.2f} cores before, {other:.2f} during){note}",
                      flush=True)
                if ok:
                    break
            return r

        # Interleave the timed steps (pn, ours, pn, ours, ...) so that both
        # sides see the same machine.
        for rep in range(args.repeats):
            for s in order:
                timed[s]["step"].append(timed_call(s, "step", f"step {rep + 1}/{args.repeats}"))
        for s in order:
            timed[s]["forward"].append(timed_call(s, "forward", "diffusion forward + matmul"))
        results = {}
        for s in order:
            r = sides[s].finish()
            steps, fwd = timed[s]["step"], timed[s]["forward"][-1]
            r.update(
                step_times_s=[x["wall"] for x in steps],
                step_median_s=statistics.median(x["wall"] for x in steps),
                others_busy_cores=[x["others_busy_cores"] for x in steps],
                disturbed_retries=sum(x["attempt"] for x in steps),
                disturbed_kept=sum(x["disturbed"] for x in steps) + fwd["disturbed"],
                loadavg=[x["loadavg"] for x in steps],
                diff_forward_s=fwd["diff_forward_s"],
                diff_forward_gflops=r["diff_forward_gflop"] / fwd["diff_forward_s"],
                matmul_gflops=fwd["matmul_gflops"],
                forward_others_busy=fwd["others_busy_cores"],
            )
            results[s] = r
        outs = {s: torch.load(workdir / f"out_{s}.pt", weights_only=True).double() for s in order}
    ref = outs.get("physicsnemo", outs.get("ours"))
    gaps = {s: (outs[s] - ref).abs() for s in order if outs[s] is not ref}
    return dict(
        config=name, cfg=cfg, params=params, results=results, fast_sampler=args.fast_sampler,
        reference_side="physicsnemo" if "physicsnemo" in outs else "ours",
        max_abs_diff={s: g.max().item() for s, g in gaps.items()},
        mean_abs_diff={s: g.mean().item() for s, g in gaps.items()},
        ref_std=ref.std().item(), finite={s: bool(torch.isfinite(o).all()) for s, o in outs.items()},
    )


def report(r: dict, tol: float) -> str:
    cfg, res = r["cfg"], r["results"]
    sides = [s for s in SIDES if s in res]
    m = cfg["members"]
    h, w = cfg["grid"]
    fs = r["fast_sampler"]
    names = dict(physicsnemo="physicsnemo", ours="ours heun:18", fast=f"fast {fs['solver']}:{fs['num_steps']}")

    def row(label: str, values: list[str]) -> str:
        return f"{label:34s}" + "".join(f"{v:>18s}" for v in values)

    def col(key: str, fmt: str, fn=None) -> list[str]:
        return [format(fn(res[s]) if fn else res[s][key], fmt) for s in sides]

    lines = [
        f"== {r['config']}: {h}x{w} grid, model_channels {cfg['model_channels']}, channel_mult "
        f"{cfg['channel_mult']}, num_blocks {cfg['num_blocks']}, {cfg['state']}/{cfg['cond']}/"
        f"{cfg['inv']} state/cond/inv channels, {m} member(s); params regression "
        f"{r['params']['regression'] / 1e6:.2f} M, diffusion {r['params']['diffusion'] / 1e6:.2f} M; "
        f"fast sampler {fs}",
        row("", [names[s] for s in sides]),
        row("network evaluations per step", col("evals_per_step", "d")),
        row("step wall time, median (s)", col("step_median_s", ".3f")),
        row("  per member (s)", col(None, ".3f", lambda x: x["step_median_s"] / m)),
        row("step wall time, min (s)", col(None, ".3f", lambda x: min(x["step_times_s"]))),
        row("  all repeats (s)", [", ".join(f"{t:.2f}" for t in res[s]["step_times_s"]) for s in sides]),
        row("peak RSS, whole process (MB)", col("maxrss_total_mb", ".0f")),
        row("peak RSS over built nets (MB)", col("step_peak_increase_mb", ".0f")),
        row("diffusion fwd batch", col("diff_forward_batch", "d")),
        row("diffusion fwd GFLOP / sample", col(None, ".2f", lambda x: x["diff_forward_gflop"] / x["diff_forward_batch"])),
        row("diffusion fwd time / sample (s)", col(None, ".4f", lambda x: x["diff_forward_s"] / x["diff_forward_batch"])),
        row("diffusion fwd GFLOP/s", col("diff_forward_gflops", ".1f")),
        row("2048^2 matmul GFLOP/s (same proc)", col("matmul_gflops", ".1f")),
        row("fraction of matmul rate", col(None, ".1%", lambda x: x["diff_forward_gflops"] / x["matmul_gflops"])),
        row("other procs, cores busy (max)", col(None, ".2f", lambda x: max(x["others_busy_cores"]))),
        row("disturbed steps re-run", col("disturbed_retries", "d")),
        row("disturbed timings kept", col("disturbed_kept", "d")),
    ]
    ref = r["reference_side"]
    for s, gap in r["max_abs_diff"].items():
        note = ""
        if s == "ours":
            eq = gap <= tol and r["finite"][s]
            note = f" -> {'EQUAL' if eq else 'NOT EQUAL'} within {tol:g}"
        lines.append(f"result: max |{s} - {ref}| = {gap:.3e} (mean {r['mean_abs_diff'][s]:.2e}, "
                     f"output std {r['ref_std']:.3f}){note}")
    for s in sides:
        for base in sides:
            if sides.index(base) >= sides.index(s):
                continue
            ratio = res[base]["step_median_s"] / res[s]["step_median_s"]
            target = {("physicsnemo", "ours"): cfg["target"], ("physicsnemo", "fast"): cfg["fast_target"]}.get((base, s))
            verdict = f" (target >= {target}) -> {'PASS' if ratio >= target else 'MISS'}" if target else ""
            lines.append(f"speed-up per member, {names[s]} over {names[base]}: {ratio:.2f}x{verdict}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description="One StormCast step on CPU: stormcast_plugin vs PhysicsNeMo")
    p.add_argument("--config", choices=["small", "paper", "all"], default="all")
    p.add_argument("--repeats", type=int, default=3, help="timed full steps per side (default 3)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--tolerance", type=float, default=TOLERANCE,
                   help=f"max abs difference accepted as equal (default {TOLERANCE:g})")
    p.add_argument("--max-busy", type=float, default=0.2,
                   help="before each timed step wait while other processes keep more than this "
                   "many cores busy (default 0.2)")
    p.add_argument("--retries", type=int, default=8,
                   help="redo a timed call disturbed by other processes up to this many times")
    p.add_argument("--max-wait", type=float, default=120.0,
                   help="longest wait for a quiet machine before each step (s, default 120)")
    p.add_argument("--ours-first", action="store_true", help="run our side before PhysicsNeMo's")
    p.add_argument("--json", type=Path, default=None, help="also write all results to this file")
    p.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES),
                   help="which sides to run (default all three)")
    p.add_argument("--fast", default=None, metavar="SOLVER:STEPS[:KEY=VALUE...]",
                   help="sampler of the fast side (default: the bundled demo package's sampler)")
    p.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    p.add_argument("--sampler", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.side:
        side_main(args)
        return

    import physicsnemo

    args.fast_sampler = fast_sampler(args.fast)
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; torch {torch.__version__}, "
          f"physicsnemo {physicsnemo.__version__}, {args.threads} threads; "
          f"load average {load_string()}; fast sampler {args.fast_sampler}", flush=True)
    names = ["small", "paper"] if args.config == "all" else [args.config]
    all_results = []
    for name in names:
        r = bench_config(name, args)
        all_results.append(r)
        print(report(r, args.tolerance), flush=True)
    if args.json:
        args.json.write_text(json.dumps(all_results, indent=2))


if __name__ == "__main__":
    main()
