"""What a StormCast package is: its parts, the file names of both layouts, its errors.

A package holds everything a forecast needs besides the input data: the
regression and diffusion networks, the state / conditioning / invariant
variable names, the normalisation statistics, the invariant fields, the
model grid and the diffusion sampler settings
(:class:`StormCastPackage`). :meth:`StormCastPackage.validate` checks that
these parts fit together; the loaders and writers call it at their
boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from stormcast_plugin.models.nn.mdlus import CheckpointError
from stormcast_plugin.models.nn.networks import EDMPrecond, RegressionNet
from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions, StormCastNets
from stormcast_plugin.utils.local_time import LOCAL_TIME_CHANNELS

__all__ = [
    "CHECKSUM_NAME",
    "DEFAULT_REPO",
    "DEFAULT_REVISION",
    "DEFAULT_SOURCE",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "OFFICIAL_FILES",
    "CheckpointError",
    "PackageFormatError",
    "PackageNotFoundError",
    "StormCastPackage",
]

DEFAULT_REPO = "nvidia/stormcast-v1-era5-hrrr"
DEFAULT_REVISION = "6c89a0877a0d6b231033d3b0d8b9828a6f833ed8"
DEFAULT_SOURCE = f"hf://{DEFAULT_REPO}@{DEFAULT_REVISION}"

# ---- the official layout (PhysicsNeMo / earth2studio)
REGRESSION_FILE = "StormCastUNet.0.0.mdlus"
DIFFUSION_FILE = "EDMPrecond.0.0.mdlus"
MODEL_YAML = "model.yaml"
METADATA_FILE = "metadata.zarr.zip"
OFFICIAL_FILES: tuple[str, ...] = (MODEL_YAML, REGRESSION_FILE, DIFFUSION_FILE, METADATA_FILE)
"""Files that make up the official layout (``config.json`` is optional)."""

# ---- this project's own layout, written by save_package
FORMAT_NAME = "stormcast-plugin-package"
FORMAT_VERSION = 1
MANIFEST_NAME = "stormcast_package.json"
CHECKSUM_NAME = "stormcast_package.sha256"
"""``sha256sum``-style list covering the manifest and every other file of an export."""
OWN_REGRESSION = "regression.safetensors"
OWN_DIFFUSION = "diffusion.safetensors"
OWN_DATA = "data.safetensors"
OWN_README = "README.md"

HF_FILES = sorted(
    set(OFFICIAL_FILES)
    | {"config.json", MANIFEST_NAME, CHECKSUM_NAME, OWN_REGRESSION, OWN_DIFFUSION, OWN_DATA, OWN_README}
)
"""Every file name either layout can use (what a Hugging Face download fetches)."""

LAYOUTS = ("official", "stormcast-plugin")
INFO_KEYS = ("name", "description", "license", "source", "layout")
NEEDS = (
    "a StormCast package is either the official layout (model.yaml, StormCastUNet.0.0.mdlus, "
    "EDMPrecond.0.0.mdlus, metadata.zarr.zip) or an export written by save_package "
    f"({MANIFEST_NAME} and the files it lists)"
)


class PackageNotFoundError(FileNotFoundError):
    """A package (or a file it needs) cannot be found or downloaded."""


class PackageFormatError(CheckpointError):
    """A package's files are present but their content is invalid."""


@dataclass
class StormCastPackage:
    """Everything StormCast needs besides the input data.

    Attributes
    ----------
    regression : RegressionNet
        Mean next-state network, input ``cat[state, conditioning, invariants]``.
    diffusion : EDMPrecond or None
        Residual denoiser, condition ``cat[state, regression mean, invariants]``;
        ``None`` for a regression-only package.
    state_variables, conditioning_variables, invariant_names : tuple of str
        Channel names, in network order.
    state_mean, state_std : numpy.ndarray
        float32 ``[C]`` normalisation of the state.
    conditioning_mean, conditioning_std : numpy.ndarray
        float32 ``[Ce]`` normalisation of the conditioning.
    invariants : numpy.ndarray
        float32 ``[Ci, H, W]`` static fields, as the networks see them.
    grid : ModelGrid
        The model grid (``H x W``).
    sampler : SamplerOptions
        Diffusion sampler settings.
    info : dict
        ``name``, ``description``, ``license``, ``source`` and ``layout``
        (``"official"`` or ``"stormcast-plugin"``).
    local_time : bool
        The networks take two more channels after the invariants: cos and sin
        of the local solar time of the input state
        (:func:`~stormcast_plugin.utils.local_time.local_time_channels`).
    """

    regression: RegressionNet
    diffusion: EDMPrecond | None
    state_variables: tuple[str, ...]
    conditioning_variables: tuple[str, ...]
    invariant_names: tuple[str, ...]
    state_mean: np.ndarray
    state_std: np.ndarray
    conditioning_mean: np.ndarray
    conditioning_std: np.ndarray
    invariants: np.ndarray
    grid: Any
    sampler: SamplerOptions = field(default_factory=SamplerOptions)
    info: dict = field(default_factory=dict)
    local_time: bool = False

    def __post_init__(self) -> None:
        self.state_variables = tuple(str(v) for v in self.state_variables)
        self.conditioning_variables = tuple(str(v) for v in self.conditioning_variables)
        self.invariant_names = tuple(str(v) for v in self.invariant_names)
        self.local_time = bool(self.local_time)
        for name in ("state_mean", "state_std", "conditioning_mean", "conditioning_std", "invariants"):
            setattr(self, name, np.ascontiguousarray(np.asarray(getattr(self, name), dtype=np.float32)))
        info = {"name": "stormcast", "description": "", "license": "unknown", "source": "",
                "layout": "stormcast-plugin"}
        info.update(self.info or {})
        self.info = info

    @property
    def shape(self) -> tuple[int, int]:
        """Grid shape ``(H, W)``."""
        return tuple(int(s) for s in self.invariants.shape[-2:])

    @property
    def input_invariant_names(self) -> tuple[str, ...]:
        """Names of the channels after the state and conditioning: invariants, then local time."""
        return self.invariant_names + (LOCAL_TIME_CHANNELS if self.local_time else ())

    def nets(self) -> StormCastNets:
        """The two networks wrapped in a :class:`~stormcast_plugin.models.nn.stormcast_nets.StormCastNets`."""
        return StormCastNets(self.regression, self.diffusion)

    def to(self, device: str | torch.device | None) -> "StormCastPackage":
        """Move the networks to ``device`` (in place) and return ``self``."""
        if device is not None:
            self.regression.to(device)
            if self.diffusion is not None:
                self.diffusion.to(device)
        return self

    def validate(self) -> "StormCastPackage":
        """Check that all parts of the package fit together.

        Returns
        -------
        StormCastPackage
            ``self``, for chaining.

        Raises
        ------
        ValueError
            Naming the inconsistent part, the values found and what was
            expected.
        """
        if not isinstance(self.regression, RegressionNet):
            raise ValueError(
                f"regression is a {type(self.regression).__name__}; expected a "
                "stormcast_plugin.models.nn.RegressionNet (load one with load_mdlus)"
            )
        if self.diffusion is not None and not isinstance(self.diffusion, EDMPrecond):
            raise ValueError(
                f"diffusion is a {type(self.diffusion).__name__}; expected a stormcast_plugin.models.nn.EDMPrecond or None"
            )
        if not isinstance(self.sampler, SamplerOptions):
            raise ValueError(
                f"sampler is a {type(self.sampler).__name__}; expected SamplerOptions "
                "(build one with SamplerOptions.from_dict)"
            )
        layout = self.info.get("layout")
        if layout not in LAYOUTS:
            raise ValueError(f"info['layout'] is {layout!r}; expected one of {LAYOUTS}")
        for what, names in (
            ("state", self.state_variables),
            ("conditioning", self.conditioning_variables),
            ("invariant", self.invariant_names),
        ):
            dup = sorted({v for v in names if names.count(v) > 1})
            if dup:
                raise ValueError(f"{what} variable names are duplicated: {dup}; each channel needs a unique name")
        c, ce, ci = len(self.state_variables), len(self.conditioning_variables), len(self.input_invariant_names)
        if c == 0:
            raise ValueError("state_variables is empty; a package needs at least one state variable")
        extra = " (including the 2 local-time channels)" if self.local_time else ""
        _check_stats("state", self.state_mean, self.state_std, c)
        _check_stats("conditioning", self.conditioning_mean, self.conditioning_std, ce)

        rc = self.regression.config
        if rc.out_channels != c:
            raise ValueError(
                f"the regression net predicts {rc.out_channels} channels but the package has {c} state "
                "variables; the variable list does not belong to this checkpoint"
            )
        if rc.in_channels != c + ce + ci:
            raise ValueError(
                f"the regression net takes {rc.in_channels} input channels; the package gives "
                f"{c} state + {ce} conditioning + {ci} invariants{extra} = {c + ce + ci}. "
                "Check the conditioning variables, the invariant names and local_time"
            )
        if self.diffusion is not None:
            if self.diffusion.img_channels != c:
                raise ValueError(
                    f"the diffusion net denoises {self.diffusion.img_channels} channels; expected the "
                    f"{c} state variables"
                )
            if self.diffusion.condition_channels != 2 * c + ci:
                raise ValueError(
                    f"the diffusion net expects {self.diffusion.condition_channels} condition channels; "
                    f"the package gives 2 x {c} (state, regression mean) + {ci} invariants{extra} = {2 * c + ci}"
                )
        inv = self.invariants
        if inv.ndim != 3 or inv.shape[0] != len(self.invariant_names):
            raise ValueError(
                f"invariants have shape {inv.shape}; expected [{len(self.invariant_names)}, H, W] for the "
                f"invariant names {list(self.invariant_names)}"
            )
        if not np.isfinite(inv).all():
            raise ValueError("invariants contain NaN or infinite values; fill them before packaging")
        gshape = tuple(int(s) for s in self.grid.shape)
        if tuple(inv.shape[1:]) != gshape:
            raise ValueError(
                f"invariants cover a {tuple(inv.shape[1:])} grid but the package grid "
                f"{getattr(self.grid, 'name', '?')!r} is {gshape}; crop the invariants to the grid"
            )
        for net_name, net in (("regression", self.regression), ("diffusion", self.diffusion)):
            if net is None:
                continue
            try:
                net.config.check_grid(gshape)
            except ValueError as err:
                raise ValueError(f"the {net_name} net cannot run on the package grid: {err}") from err
        return self

    def check_finite_weights(self) -> "StormCastPackage":
        """Check that every network parameter and buffer is finite.

        Returns
        -------
        StormCastPackage
            ``self``, for chaining.

        Raises
        ------
        ValueError
            Naming the network, how many values are NaN or infinite and in
            which tensors.
        """
        for net_name, net in (("regression", self.regression), ("diffusion", self.diffusion)):
            if net is None:
                continue
            bad = []
            for key, tensor in net.state_dict().items():
                if tensor.is_floating_point() or tensor.is_complex():
                    n = int((~torch.isfinite(tensor)).sum())
                    if n:
                        bad.append((key, n, tensor.numel()))
            if bad:
                total = sum(n for _, n, _ in bad)
                listed = ", ".join(f"{key!r} ({n} of {size})" for key, n, size in bad[:5])
                more = f" and {len(bad) - 5} more tensors" if len(bad) > 5 else ""
                raise ValueError(
                    f"the {net_name} net has {total} non-finite (NaN or infinite) weights in "
                    f"{len(bad)} tensors: {listed}{more}; the training diverged or the checkpoint is "
                    "damaged: export an earlier finite checkpoint"
                )
        return self


def _check_stats(what: str, mean: np.ndarray, std: np.ndarray, n: int) -> None:
    for label, arr in (("mean", mean), ("std", std)):
        if arr.shape != (n,):
            raise ValueError(
                f"{what}_{label} has shape {arr.shape}; expected ({n},), one value per {what} variable"
            )
        if not np.isfinite(arr).all():
            idx = np.nonzero(~np.isfinite(arr))[0][:5].tolist()
            raise ValueError(
                f"{what}_{label} contains NaN or infinite values in channels {idx}; "
                "recompute the statistics over finite data"
            )
    if (std <= 0).any():
        idx = np.nonzero(std <= 0)[0][:5].tolist()
        raise ValueError(
            f"{what}_std must be > 0; channels {idx} have {std[idx].tolist()}. "
            "A constant channel needs a positive std (e.g. 1.0) to be normalised"
        )
