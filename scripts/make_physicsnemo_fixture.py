#!/usr/bin/env python
"""Generate the PhysicsNeMo parity fixture for ``stormcast_plugin``.

``stormcast_plugin`` reimplements PhysicsNeMo's StormCast networks
(``StormCastUNet`` regression net and ``EDMPrecond`` diffusion net, both
wrapping a ``SongUNet``) in pure torch, with identical state-dict keys.  To
prove numerical equality *without* PhysicsNeMo installed in the test
environment, this script builds small random-weight PhysicsNeMo networks, saves
them as ``.mdlus`` checkpoints, runs them on random inputs and stores the inputs
and outputs.  The test-suite then loads the ``.mdlus`` files with our own
loader and compares against the stored outputs.

The other direction is covered too: small random-weight networks of
*this* package are exported with ``stormcast_plugin``'s ``write_mdlus``, loaded
in PhysicsNeMo with ``Module.from_checkpoint`` (which refuses a file whose
``mdlus_file_version`` or constructor arguments it does not accept) and run
there; the archives and PhysicsNeMo's outputs are stored, and the tests check
that this package's outputs on the same archives equal PhysicsNeMo's. The
script imports ``stormcast_plugin`` from the repository it lives in (it puts
the repository root on ``sys.path``, as ``PYTHONPATH=.`` would); the networks
and ``write_mdlus`` need nothing beyond torch, so the reference environment
needs no install of this package.

This script is *not* imported by the tests; it is only run by hand, in a
separate reference environment that has PhysicsNeMo installed (never in the
project's own environment).

Creating the reference environment (from the repository root)::

    python3.11 -m venv refenv
    refenv/bin/pip install torch==2.14.1 torchvision==0.29.1 nvidia-physicsnemo

Running it::

    refenv/bin/python scripts/make_physicsnemo_fixture.py --out tests/fixtures/physicsnemo

Optional extras (nothing is written to the fixture directory by these)::

    # print the parameter counts of the StormCast paper configuration
    refenv/bin/python scripts/make_physicsnemo_fixture.py --out tests/fixtures/physicsnemo \
        --paper-param-counts
    # dump state-dict keys/shapes of the reg_attn and diff_posemb cases
    refenv/bin/python scripts/make_physicsnemo_fixture.py --out tests/fixtures/physicsnemo \
        --dump-keys /tmp/parity_keys.txt

Output layout under ``--out``::

    manifest.json   {"physicsnemo_version", "torch_version", "cases": [
                        {"name", "kind": "regression"|"diffusion", "class",
                         "mdlus", "format": "zip"|"tar", "arrays", "seed",
                         "args": <constructor kwargs>}, ...],
                     "exports": [
                        {"name", "kind", "class", "mdlus", "format", "arrays",
                         "seed", "config": <SongUNetConfig.to_dict()>,
                         "sigma_data" (diffusion only)}, ...]}
    <name>.mdlus    checkpoint written by physicsnemo ``Module.save`` (cases)
                    or by ``stormcast_plugin``'s ``write_mdlus`` (exports)
    <name>.npz      float32 arrays
                    regression: x [B,Cin,H,W], out [B,Cout,H,W]
                    diffusion:  x [B,Cout,H,W], sigma [B],
                                condition [B,Ccond,H,W], out [B,Cout,H,W]
                    ``out`` is always PhysicsNeMo's output (for exports: of
                    the network ``Module.from_checkpoint`` built from the
                    exported archive)

All weights are perturbed away from their initial values (zero-initialised
convolutions, GroupNorm affine parameters, biases and the learned spatial
embedding included) so that every layer influences the output; the script
checks this by nudging each parameter tensor and verifying the output moves.
Models are run in ``eval()`` mode, in float32, on CPU, under ``torch.no_grad()``.
After saving, every checkpoint is re-loaded with ``Module.from_checkpoint`` and
must reproduce the stored output bit-for-bit, and the ``model.pt`` inside every
archive must load with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shutil
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

import physicsnemo
from physicsnemo.core.module import Module
from physicsnemo.diffusion.preconditioners.legacy import EDMPrecond
from physicsnemo.models.diffusion_unets import StormCastUNet

# This package's networks and writer, from the repository this script is in.
REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from stormcast_plugin.models.nn import EDMPrecond as OwnEDMPrecond  # noqa: E402
from stormcast_plugin.models.nn import RegressionNet, SongUNetConfig  # noqa: E402
from stormcast_plugin.models.nn.mdlus import write_mdlus  # noqa: E402

# Settings shared by every case: these are the StormCast settings (and also the
# SongUNet defaults), spelled out so the manifest records them explicitly.
COMMON = dict(
    model_type="SongUNet",
    resample_filter=[1, 1],
    channel_mult_noise=1,
    channel_mult_emb=4,
    encoder_type="standard",
    decoder_type="standard",
    dropout=0.1,
)

# Noise levels of the diffusion batch: one per sample, spanning EDM's range
# (sigma_min=0.002, sigma_max=800 as used by StormCast sampling).
DIFFUSION_SIGMAS = [0.002, 0.5, 80.0, 800.0]

# Fixture cases.  Sizes are chosen to keep all files together well under 3 MB
# while still exercising: channel changes between levels (skip 1x1 convs),
# num_blocks 1 and 2, attention in the bottleneck and in encoder/decoder blocks,
# non-square grids in both orientations (keys are named after H only), the
# positional noise embedding, the additive spatial embedding, and both
# checkpoint formats.
CASES = [
    dict(
        name="reg_attn",
        kind="regression",
        format="zip",
        batch=2,
        args=dict(
            img_resolution=[16, 24],
            img_in_channels=5,
            img_out_channels=3,
            embedding_type="zero",
            model_channels=16,
            channel_mult=[1, 1, 2],
            num_blocks=1,
            attn_resolutions=[],
            bottleneck_attention=True,
            **COMMON,
        ),
    ),
    dict(
        name="reg_noattn",
        kind="regression",
        format="tar",
        batch=2,
        args=dict(
            img_resolution=[16, 24],
            img_in_channels=5,
            img_out_channels=3,
            embedding_type="zero",
            model_channels=8,
            channel_mult=[1, 2, 2],
            num_blocks=2,
            attn_resolutions=[],
            bottleneck_attention=False,
            **COMMON,
        ),
    ),
    dict(
        name="reg_blockattn",
        kind="regression",
        format="zip",
        batch=2,
        args=dict(
            img_resolution=[16, 24],
            img_in_channels=4,
            img_out_channels=2,
            embedding_type="zero",
            model_channels=8,
            channel_mult=[1, 2, 2],
            num_blocks=1,
            # level-1 resolution (named after H: 16 >> 1 = 8) -> attention in
            # the encoder blocks and the last decoder block of that level
            attn_resolutions=[8],
            bottleneck_attention=True,
            **COMMON,
        ),
    ),
    dict(
        name="diff_posemb",
        kind="diffusion",
        format="zip",
        batch=len(DIFFUSION_SIGMAS),
        condition_channels=4,
        args=dict(
            img_resolution=[24, 16],
            img_channels=3,
            img_in_channels=3 + 4,
            img_out_channels=3,
            sigma_data=0.5,
            embedding_type="positional",
            additive_pos_embed=True,
            model_channels=8,
            channel_mult=[1, 2, 2],
            num_blocks=2,
            attn_resolutions=[],
            bottleneck_attention=True,
            **COMMON,
        ),
    ),
    dict(
        name="diff_plain",
        kind="diffusion",
        format="tar",
        batch=len(DIFFUSION_SIGMAS),
        condition_channels=3,
        args=dict(
            img_resolution=[16, 24],
            img_channels=2,
            img_in_channels=2 + 3,
            img_out_channels=2,
            sigma_data=0.5,
            embedding_type="positional",
            additive_pos_embed=False,
            model_channels=8,
            channel_mult=[1, 2, 2],
            num_blocks=1,
            attn_resolutions=[],
            bottleneck_attention=False,
            **COMMON,
        ),
    ),
    dict(
        # Last, so that the cases before keep their seeds. PhysicsNeMo's
        # default embedding_type ("positional", left out of the
        # arguments on purpose): the zero noise label passes through the
        # embedding layers, whose weights then shape the output.
        name="reg_positional",
        kind="regression",
        format="zip",
        batch=2,
        args=dict(
            img_resolution=[16, 24],
            img_in_channels=4,
            img_out_channels=2,
            model_channels=8,
            channel_mult=[1, 2],
            num_blocks=1,
            attn_resolutions=[],
            bottleneck_attention=True,
            **COMMON,
        ),
    ),
]

# Networks of this package exported with write_mdlus and run in PhysicsNeMo.
# Both formats, both regression embeddings, diffusion with and without the
# additive spatial embedding, and a sigma_data other than the default.
_EXPORT_SIZES = dict(model_channels=8, channel_mult=[1, 2], num_blocks=1, dropout=0.1, resample_filter=[1, 1])
EXPORTS = [
    dict(
        name="export_reg_zero",
        kind="regression",
        format="zip",
        batch=2,
        config=dict(img_resolution=[16, 24], in_channels=5, out_channels=3, embedding_type="zero",
                    attn_resolutions=[], bottleneck_attention=True, **_EXPORT_SIZES),
    ),
    dict(
        name="export_reg_positional",
        kind="regression",
        format="tar",
        batch=2,
        config=dict(img_resolution=[16, 24], in_channels=4, out_channels=2, embedding_type="positional",
                    attn_resolutions=[16], bottleneck_attention=False, **_EXPORT_SIZES),
    ),
    dict(
        name="export_diff_posemb",
        kind="diffusion",
        format="zip",
        batch=len(DIFFUSION_SIGMAS),
        condition_channels=3,
        sigma_data=0.7,
        config=dict(img_resolution=[24, 16], in_channels=2 + 3, out_channels=2, embedding_type="positional",
                    additive_pos_embed=True, attn_resolutions=[], bottleneck_attention=True, **_EXPORT_SIZES),
    ),
    dict(
        name="export_diff_plain",
        kind="diffusion",
        format="tar",
        batch=len(DIFFUSION_SIGMAS),
        condition_channels=2,
        sigma_data=0.5,
        config=dict(img_resolution=[16, 24], in_channels=2 + 2, out_channels=2, embedding_type="positional",
                    attn_resolutions=[], bottleneck_attention=True, **_EXPORT_SIZES),
    ),
]

BASE_SEED = 20240611
EXPORT_SEED = 20250301


def build(kind: str, args: dict) -> Module:
    """Instantiate the PhysicsNeMo network for a case."""
    if kind == "regression":
        return StormCastUNet(**args)
    if kind == "diffusion":
        return EDMPrecond(**args)
    raise ValueError(kind)


@torch.no_grad()
def perturb_parameters(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Add random noise to every parameter so nothing sits at its init value.

    Weight tensors get noise of std ``0.5 / sqrt(fan_in)`` (comparable to
    their Xavier init, which makes the ~zero-initialised ``conv1``,
    ``attn.proj`` and ``aux_conv`` layers significant); 1-D tensors (biases,
    GroupNorm weights/biases) get std 0.2; the learned spatial embedding gets
    std 0.2.  Buffers (resample filters, positional frequencies, sigma_data)
    are constants and are left untouched.
    """
    for name, p in sorted(model.named_parameters()):
        if name.endswith("spatial_emb"):
            std = 0.2
        elif p.ndim >= 2:
            std = 0.5 / math.sqrt(p[0].numel())
        else:
            std = 0.2
        noise = torch.randn(p.shape, generator=gen, dtype=p.dtype) * std
        p.add_(noise)


def make_inputs(case: dict, gen: torch.Generator) -> dict:
    """Random float32 inputs for a case."""
    a = case["args"]
    h, w = a["img_resolution"]
    b = case["batch"]
    if case["kind"] == "regression":
        x = torch.randn(b, a["img_in_channels"], h, w, generator=gen)
        return {"x": x}
    cout = a["img_out_channels"]
    sigma = torch.tensor(DIFFUSION_SIGMAS, dtype=torch.float32)
    clean = a["sigma_data"] * torch.randn(b, cout, h, w, generator=gen)
    noise = torch.randn(b, cout, h, w, generator=gen)
    x = clean + sigma.view(-1, 1, 1, 1) * noise  # a realistic noisy state
    cond = torch.randn(b, case["condition_channels"], h, w, generator=gen)
    return {"x": x, "sigma": sigma, "condition": cond}


@torch.no_grad()
def run_model(model: torch.nn.Module, kind: str, inputs: dict) -> torch.Tensor:
    """Forward pass in float32 on CPU."""
    if kind == "regression":
        return model(inputs["x"])
    return model(inputs["x"], inputs["sigma"], condition=inputs["condition"])


@torch.no_grad()
def insensitive_parameters(
    model: torch.nn.Module, kind: str, inputs: dict, ref: torch.Tensor
) -> list[str]:
    """Names of parameter tensors whose perturbation leaves the output unchanged."""
    dead = []
    for name, p in model.named_parameters():
        saved = p.detach().clone()
        p.add_(0.05 * torch.ones_like(p) + 0.05 * torch.rand_like(p))
        out = run_model(model, kind, inputs)
        p.copy_(saved)
        if torch.equal(out, ref) or (out - ref).abs().max().item() < 1e-6:
            dead.append(name)
    assert torch.equal(run_model(model, kind, inputs), ref)
    return dead


def save_mdlus(model: Module, path: Path, legacy_format: bool) -> None:
    """``model.save(path, legacy_format=...)`` with two PhysicsNeMo quirks avoided.

    * ``Module.save`` asks GitPython for the HEAD commit of the *current working
      directory's* repository and raises ``ValueError`` inside a repository that
      has no commits yet; we therefore save from a scratch directory (the hash is
      only stored with ``verbose=True`` anyway).
    * With ``legacy_format=True`` it calls ``fsspec`` ``put(Path(...)/"model.tar",
      file_name)``; because the source is a ``Path`` (not a ``str``) fsspec
      treats ``file_name`` as a directory and writes ``file_name/model.tar``
      (failing when that directory does not exist).  We let it write into a
      scratch directory and move the tar archive into place.
    """
    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
        if not legacy_format:
            model.save(str(path), legacy_format=False)
            return
        target = Path(scratch) / "checkpoint.mdlus"
        target.mkdir()
        model.save(str(target), legacy_format=True)
        shutil.move(str(target / "model.tar"), str(path))


def read_archive_member(path: Path, member: str) -> bytes:
    """Read one file out of a .mdlus archive (zip or legacy tar)."""
    if tarfile.is_tarfile(path):
        with tarfile.open(path, "r") as tar:
            f = tar.extractfile(member)
            assert f is not None
            return f.read()
    with zipfile.ZipFile(path, "r") as archive:
        return archive.read(member)


def archive_format(path: Path) -> str:
    # tar must be checked first (as PhysicsNeMo does)
    if tarfile.is_tarfile(path):
        return "tar"
    if zipfile.is_zipfile(path):
        return "zip"
    return "unknown"


def key_summary(sd: dict) -> str:
    groups: dict[str, int] = {}
    for k in sd:
        parts = k.split(".")
        top = ".".join(parts[:3]) if parts[0] == "model" and len(parts) > 3 else parts[0]
        top = ".".join(top.split(".")[:2]) if top.startswith("model.") else top
        groups[top] = groups.get(top, 0) + 1
    return ", ".join(f"{g}: {n}" for g, n in groups.items())


def make_case(case: dict, index: int, out_dir: Path) -> tuple[dict, Module]:
    name, kind, args = case["name"], case["kind"], case["args"]
    seed = BASE_SEED + index
    torch.manual_seed(seed)
    model = build(kind, args)
    gen = torch.Generator().manual_seed(seed + 1000)
    perturb_parameters(model, gen)
    model.eval()
    inputs = make_inputs(case, gen)
    out = run_model(model, kind, inputs)
    if not torch.isfinite(out).all():
        raise RuntimeError(f"{name}: non-finite output")

    dead = insensitive_parameters(model, kind, inputs, out)
    # With embedding_type="zero" the embedding is identically zero, so the
    # weight of every UNetBlock.affine layer cannot influence the output
    # (only its bias does).  Anything else being dead is a fixture bug.
    expected_dead = (
        {n for n, _ in model.named_parameters() if n.endswith("affine.weight")}
        if args.get("embedding_type", "positional") == "zero"
        else set()
    )
    unexpected = sorted(set(dead) - expected_dead)
    if unexpected:
        raise RuntimeError(f"{name}: parameters with no effect on output: {unexpected}")

    mdlus = (out_dir / f"{name}.mdlus").resolve()
    save_mdlus(model, mdlus, legacy_format=(case["format"] == "tar"))
    fmt = archive_format(mdlus)
    if fmt != case["format"]:
        raise RuntimeError(f"{name}: expected {case['format']} archive, got {fmt}")

    arrays = {k: v.numpy().astype(np.float32) for k, v in inputs.items()}
    arrays["out"] = out.numpy().astype(np.float32)
    npz = out_dir / f"{name}.npz"
    np.savez_compressed(npz, **arrays)

    sd = model.state_dict()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[{name}] {type(model).__name__} ({kind}, {fmt})")
    print(f"  state-dict keys: {len(sd)}  ({key_summary(sd)})")
    print(f"  parameters: {n_params:,}  buffers in state dict: "
          f"{sorted({k.rsplit('.', 1)[-1] for k in sd} - {'weight', 'bias', 'spatial_emb'})}")
    print(f"  arrays: " + ", ".join(f"{k}{list(v.shape)}" for k, v in arrays.items()))
    print(f"  out: mean {arrays['out'].mean():+.4f} std {arrays['out'].std():.4f} "
          f"absmax {np.abs(arrays['out']).max():.4f}")
    print(f"  params without effect (expected): {len(dead)}")
    print(f"  sizes: {mdlus.name} {mdlus.stat().st_size:,} B, {npz.name} {npz.stat().st_size:,} B")

    entry = dict(
        name=name,
        kind=kind,
        **{"class": type(model).__name__},
        mdlus=mdlus.name,
        format=fmt,
        arrays=npz.name,
        seed=seed,
        args=args,
    )
    return entry, model


@torch.no_grad()
def verify_case(entry: dict, out_dir: Path) -> None:
    """Reload the checkpoint with PhysicsNeMo and check everything round-trips."""
    mdlus = out_dir / entry["mdlus"]
    arrays = dict(np.load(out_dir / entry["arrays"]))
    loaded = Module.from_checkpoint(str(mdlus))
    loaded.eval()
    inputs = {k: torch.from_numpy(v) for k, v in arrays.items() if k != "out"}
    out = run_model(loaded, entry["kind"], inputs).numpy()
    if not np.array_equal(out, arrays["out"]):
        diff = np.abs(out - arrays["out"]).max()
        raise RuntimeError(f"{entry['name']}: from_checkpoint output differs (max {diff})")

    sd = torch.load(
        io.BytesIO(read_archive_member(mdlus, "model.pt")),
        map_location="cpu",
        weights_only=True,
    )
    ref_sd = loaded.state_dict()
    if list(sd) != list(ref_sd) or any(not torch.equal(sd[k], ref_sd[k]) for k in sd):
        raise RuntimeError(f"{entry['name']}: model.pt state dict mismatch")
    json.loads(read_archive_member(mdlus, "args.json"))
    json.loads(read_archive_member(mdlus, "metadata.json"))
    print(f"[{entry['name']}] verified: from_checkpoint reproduces output exactly, "
          f"model.pt loads with weights_only=True ({len(sd)} tensors)")


def export_inputs(case: dict, gen: torch.Generator) -> dict:
    """Random inputs for an export case (the layout of :func:`make_inputs`)."""
    c = case["config"]
    args = dict(img_resolution=c["img_resolution"], img_out_channels=c["out_channels"],
                img_in_channels=c["in_channels"], sigma_data=case.get("sigma_data", 0.5))
    return make_inputs({**case, "args": args}, gen)


@torch.no_grad()
def make_export(case: dict, index: int, out_dir: Path) -> dict:
    """Export one of this package's networks with write_mdlus, load the
    archive in PhysicsNeMo and store PhysicsNeMo's output on fixed inputs."""
    name, kind = case["name"], case["kind"]
    seed = EXPORT_SEED + index
    torch.manual_seed(seed)
    config = SongUNetConfig(**case["config"])
    own = RegressionNet(config) if kind == "regression" else OwnEDMPrecond(config, sigma_data=case["sigma_data"])
    gen = torch.Generator().manual_seed(seed + 1000)
    perturb_parameters(own, gen)
    own.eval()
    inputs = export_inputs(case, gen)

    mdlus = write_mdlus(own, out_dir / f"{name}.mdlus", fmt=case["format"])
    fmt = archive_format(mdlus)
    if fmt != case["format"]:
        raise RuntimeError(f"{name}: expected {case['format']} archive, got {fmt}")
    # strict=True (the default): every key of the archive must be one
    # PhysicsNeMo's network has, and none may be missing.
    loaded = Module.from_checkpoint(str(mdlus))
    loaded.eval()
    expected_class = "StormCastUNet" if kind == "regression" else "EDMPrecond"
    if type(loaded).__name__ != expected_class:
        raise RuntimeError(f"{name}: PhysicsNeMo built a {type(loaded).__name__}, expected {expected_class}")
    theirs, ours = loaded.state_dict(), own.state_dict()
    ours.pop("residual_scale", None)  # not in the official layout (ones here)
    if set(theirs) != set(ours) or any(not torch.equal(theirs[k], ours[k]) for k in ours):
        raise RuntimeError(f"{name}: PhysicsNeMo's state dict differs from the exported network's")

    out = run_model(loaded, kind, inputs)
    if not torch.isfinite(out).all():
        raise RuntimeError(f"{name}: non-finite output")
    diff = (run_model(own, kind, inputs) - out).abs().max().item()
    if diff > 1e-5:
        raise RuntimeError(f"{name}: stormcast_plugin and PhysicsNeMo outputs differ by {diff:.3e}")

    arrays = {k: v.numpy().astype(np.float32) for k, v in inputs.items()}
    arrays["out"] = out.numpy().astype(np.float32)
    npz = out_dir / f"{name}.npz"
    np.savez_compressed(npz, **arrays)
    print(f"[{name}] write_mdlus -> Module.from_checkpoint: {type(loaded).__name__} ({kind}, {fmt}), "
          f"{sum(p.numel() for p in loaded.parameters()):,} parameters; max |ours - PhysicsNeMo| {diff:.2e}; "
          f"sizes: {mdlus.name} {mdlus.stat().st_size:,} B, {npz.name} {npz.stat().st_size:,} B")
    entry = dict(name=name, kind=kind, **{"class": expected_class}, mdlus=mdlus.name, format=fmt,
                 arrays=npz.name, seed=seed, config=config.to_dict())
    if kind == "diffusion":
        entry["sigma_data"] = case["sigma_data"]
    return entry


def dump_keys(models: dict, path: Path) -> None:
    with open(path, "w") as f:
        for name in ("reg_attn", "diff_posemb"):
            model = models[name]
            sd = model.state_dict()
            f.write(f"# {name}: {type(model).__name__}, {len(sd)} keys\n")
            for k, v in sd.items():
                kind = "param" if any(k == n for n, _ in model.named_parameters()) else "buffer"
                f.write(f"{k}\t{list(v.shape)}\t{kind}\n")
            f.write("\n")
    print(f"wrote state-dict keys to {path}")


def paper_param_counts() -> None:
    """Print parameter counts of the StormCast paper configuration."""
    sizes = dict(
        model_channels=128,
        channel_mult=[1, 2, 2, 2, 2],
        num_blocks=4,
        attn_resolutions=[],
    )
    configs = {
        "StormCastUNet (regression)": (
            StormCastUNet,
            dict(
                img_resolution=[512, 640],
                img_in_channels=127,
                img_out_channels=99,
                model_type="SongUNet",
                embedding_type="zero",
                **sizes,
            ),
        ),
        "EDMPrecond (diffusion, additive_pos_embed=True)": (
            EDMPrecond,
            dict(
                img_resolution=[512, 640],
                img_channels=99,
                img_in_channels=299,
                img_out_channels=99,
                model_type="SongUNet",
                embedding_type="positional",
                additive_pos_embed=True,
                **sizes,
            ),
        ),
        "EDMPrecond (diffusion, additive_pos_embed=False)": (
            EDMPrecond,
            dict(
                img_resolution=[512, 640],
                img_channels=99,
                img_in_channels=299,
                img_out_channels=99,
                model_type="SongUNet",
                embedding_type="positional",
                additive_pos_embed=False,
                **sizes,
            ),
        ),
    }
    for label, (cls, kwargs) in configs.items():
        model = cls(**kwargs)
        n = sum(p.numel() for p in model.parameters())
        print(f"{label}: {n:,} parameters, {len(model.state_dict())} state-dict keys")
        print(f"    {cls.__name__}(**{json.dumps(kwargs)})")
        del model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--dump-keys", type=Path, default=None,
                        help="also write reg_attn/diff_posemb state-dict keys here")
    parser.add_argument("--paper-param-counts", action="store_true",
                        help="also print parameter counts of the paper configuration")
    args = parser.parse_args()

    torch.set_default_dtype(torch.float32)
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)

    entries, models = [], {}
    for i, case in enumerate(CASES):
        entry, model = make_case(case, i, out_dir)
        entries.append(entry)
        models[case["name"]] = model

    exports = [make_export(case, i, out_dir) for i, case in enumerate(EXPORTS)]

    manifest = dict(
        physicsnemo_version=physicsnemo.__version__,
        torch_version=torch.__version__,
        cases=entries,
        exports=exports,
    )
    with open(out_dir / "manifest.json", "w") as f:
        json.dump(manifest, f, indent=2, allow_nan=False)
        f.write("\n")

    for entry in entries:
        verify_case(entry, out_dir)

    print("args.json of reg_attn.mdlus:")
    print(json.dumps(json.loads(read_archive_member(out_dir / "reg_attn.mdlus", "args.json")),
                     indent=2))

    total = sum(f.stat().st_size for f in out_dir.iterdir() if f.is_file())
    print(f"total fixture size: {total:,} B in {len(os.listdir(out_dir))} files")

    if args.dump_keys is not None:
        dump_keys(models, args.dump_keys)
    if args.paper_param_counts:
        paper_param_counts()


if __name__ == "__main__":
    main()
