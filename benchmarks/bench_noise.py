#!/usr/bin/env python
"""The sampler noise's share of a StormCast step at the paper size (99 x 512 x 640).

Measured on this machine:

* noise per member-step for one 99 x 512 x 640 state. Without a noise memory
  it is one float32 field drawn by a CPU generator (what the sampler starts
  from). With a noise memory of ``--tau`` hours it is either the stateless
  ``member_noise``, which draws ``ceil(3 tau) + 1`` float64 fields and sums
  them, or the rollout's ``NoiseMemory`` in its steady state, which draws one
  field and sums the window it keeps. With CUDA the script also times the same
  draws on the device, and the host-to-device copy of a CPU field;
* the step: FLOPs of the paper networks (one regression forward plus
  ``2 * steps - 1`` diffusion forwards), counted with
  ``torch.utils.flop_counter`` on a reduced grid (``--grid``, default 64 x 80)
  and scaled by the number of pixels to 512 x 640. The convolutions scale
  exactly. The bottleneck attention scales with the square of its tokens and
  is below 1 % here. The script also times one diffusion forward on this
  machine at the reduced grid.

Without a GPU, the step time on a GPU is the FLOP count divided by an
assumed sustained rate (``--gpu-tflops``), and the output says so.

Usage (repository root)::

    PYTHONPATH=. python benchmarks/bench_noise.py --tau 3 --gpu-tflops 200,400
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

SHAPE = (99, 512, 640)
T0 = np.datetime64("2024-05-01T00", "ns")
HOUR = np.timedelta64(1, "h")


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def noise_times(tau: float, repeats: int) -> dict[str, float]:
    from stormcast_plugin.models.px.noise import NoiseMemory, member_noise

    out = {}
    g = torch.Generator().manual_seed(1)
    out["cpu float32 field (no memory)"] = timed(lambda: torch.randn(SHAPE, generator=g), repeats)
    out[f"cpu member_noise, tau {tau:g} h (stateless)"] = timed(
        lambda: member_noise(0, 0, T0, 12 * HOUR, SHAPE, tau), max(1, repeats // 2))
    memory = NoiseMemory()
    memory(0, [0], [T0], 11 * HOUR, SHAPE, tau)  # fill the window
    hours = iter(range(12, 12 + repeats))
    out[f"cpu NoiseMemory, tau {tau:g} h (one field per step)"] = timed(
        lambda: memory(0, [0], [T0], next(hours) * HOUR, SHAPE, tau), repeats)
    del memory
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        gd = torch.Generator(device=dev).manual_seed(1)
        host = torch.randn(SHAPE)
        out["cuda float32 field (no memory)"] = timed(lambda: torch.randn(SHAPE, generator=gd, device=dev), repeats)
        out["host-to-device copy of a float32 field"] = timed(lambda: host.to(dev), repeats)
        memory = NoiseMemory()
        memory(0, [0], [T0], 11 * HOUR, SHAPE, tau, dev)
        hours = iter(range(12, 12 + repeats))
        out[f"cuda NoiseMemory, tau {tau:g} h"] = timed(
            lambda: memory(0, [0], [T0], next(hours) * HOUR, SHAPE, tau, dev), repeats)
    return out


def step_flops(grid: tuple[int, int], steps: int) -> tuple[float, float, float]:
    """(TFLOP per member-step at 512x640, diffusion forward seconds on this machine at ``grid``, attention share)."""
    from torch.utils.flop_counter import FlopCounterMode

    from stormcast_plugin.models.nn import EDMPrecond, RegressionNet, SongUNetConfig

    common = dict(img_resolution=grid, model_channels=128, channel_mult=(1, 2, 2, 2, 2), num_blocks=4,
                  attn_resolutions=(), bottleneck_attention=True)
    reg = RegressionNet(SongUNetConfig(in_channels=127, out_channels=99, embedding_type="zero", **common)).eval()
    diff = EDMPrecond(SongUNetConfig(in_channels=299, out_channels=99, embedding_type="positional",
                                     additive_pos_embed=True, **common)).eval()
    h, w = grid
    x, cond = torch.randn(1, 99, h, w), torch.randn(1, 200, h, w)
    sigma = torch.tensor([1.0])
    with torch.inference_mode():
        with FlopCounterMode(display=False) as fc:
            diff(x, sigma, cond)
        f_diff = fc.get_total_flops()
        attention = sum(v for k, v in fc.get_flop_counts().get("Global", {}).items()
                        if "attention" in str(k) or "bmm" in str(k))
        with FlopCounterMode(display=False) as fc:
            reg(torch.randn(1, 127, h, w))
        f_reg = fc.get_total_flops()
        seconds = timed(lambda: diff(x, sigma, cond), 3)
    scale = (512 * 640) / (h * w)
    return (f_reg + (2 * steps - 1) * f_diff) * scale / 1e12, seconds, attention / f_diff


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tau", type=float, default=3.0, help="noise memory in hours (the demo package's: 3)")
    p.add_argument("--steps", type=int, default=18, help="sampler steps (paper: 18)")
    p.add_argument("--grid", default="64x80", help="reduced grid for the FLOP count and CPU timing")
    p.add_argument("--gpu-tflops", default="200,400", help="assumed sustained GPU rates in TFLOP/s")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    grid = tuple(int(v) for v in args.grid.split("x"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cuda: {torch.cuda.is_available()}")
    noise = noise_times(args.tau, args.repeats)
    print("| noise per member-step at 99x512x640 | seconds |")
    print("|---|---|")
    for k, v in noise.items():
        print(f"| {k} | {v:.3f} |")
    tflop, forward_s, attention = step_flops(grid, args.steps)
    pixels = (512 * 640) / (grid[0] * grid[1])
    print(f"step at 512x640: {tflop:.1f} TFLOP per member (regression + {2 * args.steps - 1} diffusion forwards; "
          f"counted at {grid[0]}x{grid[1]}, x{pixels:g}); attention {100 * attention:.2f} % of a forward")
    cpu_step = forward_s * (2 * args.steps) * pixels
    print(f"this machine: diffusion forward at {grid[0]}x{grid[1]} {forward_s:.3f} s -> a 512x640 member-step "
          f"~{cpu_step / 60:.0f} min on this CPU (extrapolated by pixels)")
    plain = noise["cpu float32 field (no memory)"]
    cached = noise[f"cpu NoiseMemory, tau {args.tau:g} h (one field per step)"]
    stateless = noise[f"cpu member_noise, tau {args.tau:g} h (stateless)"]
    print("| assumed GPU rate | GPU step (estimate) | CPU noise, no memory | stateless memory | kept memory |")
    print("|---|---|---|---|---|")
    for rate in [float(r) for r in args.gpu_tflops.split(",")]:
        step = tflop / rate
        share = lambda n: f"{n:.2f} s = {100 * n / (step + n):.0f} %"  # noqa: E731
        print(f"| {rate:g} TFLOP/s | {step:.2f} s | {share(plain)} | {share(stateless)} | {share(cached)} |")


if __name__ == "__main__":
    main()
