"""The StormCast step on normalised tensors.

One hour ahead from the normalised state ``x`` and the conditioning ``e``
(already on the model grid) and the invariants ``inv``::

    r  = R(cat[x, e, inv])                             regression mean
    d ~  EDM sampler with D(. ; sigma | cat[x, r, inv]) diffusion residual
    x' = r + d

Everything is batched: ensemble members are batch entries, each with its own
random generator, so a member's result depends on its seed only. This module
knows nothing of coordinates, files or earth2studio.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from stormcast_plugin.diffusion.samplers import edm_heun_sampler, randn_per_sample
from stormcast_plugin.diffusion.schedules import karras_sigmas
from stormcast_plugin.models.nn.networks import EDMPrecond, RegressionNet

__all__ = ["SamplerOptions", "StormCastNets", "check_tensor"]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass(frozen=True)
class SamplerOptions:
    """EDM stochastic Heun sampler settings (the StormCast defaults).

    With ``S_churn = 0`` the sampler is the deterministic second-order ODE
    solve and ``2 * num_steps - 1`` network evaluations are made.

    ``noise_memory_h`` is not a sampler setting of the reference: when
    positive, :class:`~stormcast_plugin.models.px.stormcast.StormCast` correlates each
    member's initial sampler noise from one hour to the next as an AR(1)
    process with this e-folding time in hours (see
    :func:`~stormcast_plugin.models.px.stormcast.member_noise`). Every hour's noise is still
    standard normal, so each step samples the same distribution, but a
    member's residuals stay alike for several hours, as the errors of a
    forecast do. 0 (the default) draws independent noise every hour.
    """

    num_steps: int = 18
    sigma_min: float = 0.002
    sigma_max: float = 800.0
    rho: float = 7.0
    S_churn: float = 0.0
    S_min: float = 0.0
    S_max: float = math.inf
    S_noise: float = 1.0
    noise_memory_h: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_memory_h) and self.noise_memory_h >= 0):
            raise ValueError(
                f"noise_memory_h must be a finite number of hours >= 0, got {self.noise_memory_h!r}; "
                "0 draws independent noise every hour"
            )
        if int(self.num_steps) < 1:
            raise ValueError(f"num_steps must be at least 1, got {self.num_steps!r}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(
                f"need 0 < sigma_min < sigma_max, got sigma_min={self.sigma_min}, sigma_max={self.sigma_max}"
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SamplerOptions":
        """Build from a mapping; unknown keys raise ValueError."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown sampler options {unknown}; known: {sorted(names)}")
        return cls(**{k: (float(v) if k != "num_steps" else int(v)) for k, v in d.items()})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_tensor(name: str, x: Tensor, channels: int, ndim: int = 4) -> None:
    """Validate a model input: rank, channel count, float dtype, finiteness."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"{name} has dtype {x.dtype}; expected a floating dtype (float32): use x.float()")
    if x.ndim != ndim or x.shape[-3] != channels:
        expect = "[batch, " if ndim == 4 else "["
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}; expected {expect}{channels}, H, W]"
        )
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).flatten(-2).any(-1)
        chans = sorted({int(i) for i in torch.nonzero(bad)[:, -1].tolist()})
        raise ValueError(
            f"{name} contains NaN or infinite values in channels {chans[:10]}; "
            "fill or mask missing data before the forecast"
        )


class StormCastNets(nn.Module):
    """The regression and diffusion networks and the one-hour step.

    Parameters
    ----------
    regression : RegressionNet
        Predicts the mean next state from ``cat[state, conditioning, invariants]``.
    diffusion : EDMPrecond, optional
        Denoiser of the residual conditioned on ``cat[state, r, invariants]``;
        without it the step is regression only.
    """

    def __init__(self, regression: RegressionNet, diffusion: EDMPrecond | None = None) -> None:
        super().__init__()
        self.regression = regression
        self.diffusion = diffusion
        self.state_channels = regression.config.out_channels
        if diffusion is not None:
            if diffusion.img_channels != self.state_channels:
                raise ValueError(
                    f"diffusion net denoises {diffusion.img_channels} channels but the regression "
                    f"net predicts {self.state_channels}; the two checkpoints do not belong together"
                )
            inv = diffusion.condition_channels - 2 * self.state_channels
            if inv < 0:
                raise ValueError(
                    f"diffusion condition has {diffusion.condition_channels} channels; expected at "
                    f"least 2 x {self.state_channels} (state and regression mean)"
                )
            self.invariant_channels = inv
        else:
            self.invariant_channels = None
        self.eval()

    def conditioning_channels(self, invariant_channels: int) -> int:
        """Conditioning channels implied by the regression input width."""
        return self.regression.config.in_channels - self.state_channels - invariant_channels

    def _check_inputs(self, state: Tensor, conditioning: Tensor, invariants: Tensor) -> Tensor:
        if isinstance(invariants, Tensor) and invariants.ndim == 3:
            invariants = invariants.unsqueeze(0)
        n_inv = self.invariant_channels
        if n_inv is None:
            n_inv = invariants.shape[1] if isinstance(invariants, Tensor) and invariants.ndim == 4 else 0
        check_tensor("invariants", invariants, n_inv)
        check_tensor("state", state, self.state_channels)
        check_tensor("conditioning", conditioning, self.conditioning_channels(n_inv))
        b, _, h, w = state.shape
        if conditioning.shape[0] != b or conditioning.shape[-2:] != state.shape[-2:]:
            raise ValueError(
                f"conditioning shape {tuple(conditioning.shape)} does not match the state "
                f"{tuple(state.shape)}: expected [{b}, C, {h}, {w}]"
            )
        if invariants.shape[-2:] != state.shape[-2:]:
            raise ValueError(
                f"invariants grid {tuple(invariants.shape[-2:])} differs from the state grid ({h}, {w})"
            )
        if invariants.shape[0] not in (1, b):
            raise ValueError(f"invariants batch {invariants.shape[0]} must be 1 or the state batch {b}")
        self.regression.config.check_grid((h, w))
        return invariants.expand(b, -1, -1, -1)

    @torch.no_grad()
    def step(
        self,
        state: Tensor,
        conditioning: Tensor,
        invariants: Tensor,
        *,
        sampler: SamplerOptions = SamplerOptions(),
        generators: Sequence[torch.Generator] | torch.Generator | None = None,
        regression_only: bool = False,
        autocast_dtype: torch.dtype | None = None,
        callback: Callable[[int, float, Tensor], None] | None = None,
        initial_noise: Tensor | None = None,
    ) -> Tensor:
        """Advance the normalised state by one hour.

        Parameters
        ----------
        state : Tensor
            ``[B, C_state, H, W]`` normalised state at t.
        conditioning : Tensor
            ``[B, C_cond, H, W]`` normalised conditioning at t on the model grid.
        invariants : Tensor
            ``[C_inv, H, W]`` (or ``[B, C_inv, H, W]``).
        sampler : SamplerOptions
            Diffusion sampler settings.
        generators : list of torch.Generator or torch.Generator, optional
            One generator per batch member makes every member reproducible on
            its own; a single generator draws the whole batch.
        regression_only : bool
            Skip the diffusion residual (deterministic mean forecast).
        autocast_dtype : torch.dtype, optional
            Run the networks under autocast in this dtype (``torch.bfloat16``).
        callback : callable, optional
            ``callback(i, sigma_i, x)`` after each sampler step.
        initial_noise : Tensor, optional
            ``[B, C_state, H, W]`` standard normal noise the sampler starts
            from, instead of a draw from ``generators`` (which still give the
            churn noise).

        Returns
        -------
        Tensor
            ``[B, C_state, H, W]`` normalised state at t + 1 h, float32.
        """
        inv = self._check_inputs(state, conditioning, invariants)
        state = state.float()
        inv = inv.to(state)
        device = state.device
        amp = (
            torch.autocast(device.type, dtype=autocast_dtype)
            if autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with amp:
            mean = self.regression(torch.cat([state, conditioning.to(state), inv], dim=1)).float()
        if regression_only or self.diffusion is None:
            return mean
        condition = torch.cat([state, mean, inv], dim=1)

        def denoise(x: Tensor, sigma: Tensor) -> Tensor:
            # The sampler gives all samples the same noise level: one embedding serves the batch.
            with amp:
                return self.diffusion(x.float(), sigma.float()[:1], condition)

        if initial_noise is None:
            noise = randn_per_sample(tuple(state.shape), generators, dtype=torch.float32, device=device)
        elif tuple(initial_noise.shape) != tuple(state.shape):
            raise ValueError(f"initial_noise has shape {tuple(initial_noise.shape)}; expected the state's "
                             f"{tuple(state.shape)}")
        else:
            noise = initial_noise.to(device=device, dtype=torch.float32)
        sigmas = karras_sigmas(
            sampler.num_steps, sampler.sigma_min, sampler.sigma_max, sampler.rho, device=device
        )
        residual = edm_heun_sampler(
            denoise,
            noise,
            sigmas,
            S_churn=sampler.S_churn,
            S_min=sampler.S_min,
            S_max=sampler.S_max,
            S_noise=sampler.S_noise,
            generators=generators,
            callback=callback,
        )
        scale = getattr(self.diffusion, "residual_scale", None)
        if scale is not None:
            residual = residual.float() * scale.to(device=device, dtype=torch.float32).reshape(1, -1, 1, 1)
        return mean + residual.float()
