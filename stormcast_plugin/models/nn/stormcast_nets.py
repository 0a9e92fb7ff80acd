"""The StormCast step on normalised tensors.

One hour ahead from the normalised state ``x`` and the conditioning ``e``
(already on the model grid), the invariants ``inv`` and any time-varying
extra channels ``k`` (the local-time channels)::

    r  = R(cat[x, e, inv, k])                             regression mean
    d ~  EDM sampler with D(. ; sigma | cat[x, r, inv, k]) diffusion residual
    x' = r + s * d                                        s: residual scale

:class:`StormCastNets` owns this input contract for inference and training
alike: :meth:`~StormCastNets.regression_input` and
:meth:`~StormCastNets.denoiser_condition` build the network inputs,
:meth:`~StormCastNets.regression_loss` and :meth:`~StormCastNets.diffusion_loss`
the training losses (formulas in :mod:`stormcast_plugin.diffusion.losses`).

Everything is batched: ensemble members are batch entries, each with its own
random generator, so a member's result depends on its seed only. This module
knows nothing of coordinates, files or earth2studio.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from stormcast_plugin.diffusion import losses
from stormcast_plugin.diffusion.samplers import Generators, randn_per_sample
from stormcast_plugin.models.nn.filters import shapiro_filter
from stormcast_plugin.diffusion.schedules import karras_sigmas
from stormcast_plugin.diffusion.solvers import SOLVERS, Solver, get_solver
from stormcast_plugin.models.nn.networks import EDMPrecond, RegressionNet

__all__ = ["SamplerOptions", "StormCastNets", "check_tensor"]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass(frozen=True)
class SamplerOptions:
    """Diffusion sampler settings: the solver, its noise schedule and options.

    The defaults are StormCast's reference sampler: the EDM stochastic Heun
    solver over 18 Karras noise levels from 800 to 0.002 (``rho`` 7) without
    churn, the deterministic second-order ODE solve with
    ``2 * num_steps - 1`` network evaluations. ``solver`` picks another solver
    by name from :data:`~stormcast_plugin.diffusion.solvers.SOLVERS` (e.g.
    ``"dpmpp_2m"``, ``num_steps`` evaluations); the schedule settings apply to
    every solver, ``S_churn``, ``S_min`` and ``S_max`` to ``heun`` alone and
    ``S_noise`` to ``heun`` and the stochastic solvers. Mappings without
    ``solver`` (older package manifests) mean ``"heun"``.

    ``noise_memory_h`` is not a sampler setting of the reference: when
    positive, :class:`~stormcast_plugin.models.px.stormcast.StormCast` correlates each
    member's initial sampler noise from one hour to the next as an AR(1)
    process with this e-folding time in hours (see
    :func:`~stormcast_plugin.models.px.stormcast.member_noise`). Every hour's noise is still
    standard normal, so each step samples the same distribution, but a
    member's residuals stay alike for several hours, as the errors of a
    forecast do. 0 (the default) draws independent noise every hour.

    ``mean_filter`` is not a setting of the reference either: when positive,
    every step passes the regression mean through
    :func:`~stormcast_plugin.models.nn.filters.shapiro_filter` of that
    strength (the share of the two-grid-length wave removed; four-grid-length
    waves lose a quarter of it, long waves nothing) before the residual is
    sampled on it. It keeps a network that amplifies its shortest waves a
    little every hour from filling a long rollout with grid-scale noise.
    0 (the default) leaves the mean as the network gives it.

    Each field's metadata states the values it accepts (``ge``, ``gt``:
    bounds; ``allow_inf``: infinity too; ``expected``: in words), which
    configuration readers check.
    """

    solver: str = field(default="heun", metadata={"expected": f"one of {list(SOLVERS)}"})
    num_steps: int = field(default=18, metadata={"ge": 1})
    sigma_min: float = field(default=0.002, metadata={"gt": 0})
    sigma_max: float = field(default=800.0, metadata={"gt": 0})
    rho: float = field(default=7.0, metadata={"gt": 0})
    S_churn: float = field(default=0.0, metadata={"ge": 0})
    S_min: float = field(default=0.0, metadata={"ge": 0})
    S_max: float = field(default=math.inf, metadata={"gt": 0, "allow_inf": True})
    S_noise: float = field(default=1.0, metadata={"gt": 0})
    noise_memory_h: float = field(default=0.0, metadata={"ge": 0})
    mean_filter: float = field(default=0.0, metadata={"ge": 0, "le": 1})

    def __post_init__(self) -> None:
        spec = get_solver(self.solver)
        if not (math.isfinite(self.noise_memory_h) and self.noise_memory_h >= 0):
            raise ValueError(
                f"noise_memory_h must be a finite number of hours >= 0, got {self.noise_memory_h!r}; "
                "0 draws independent noise every hour"
            )
        if not 0.0 <= self.mean_filter <= 1.0:
            raise ValueError(f"mean_filter must lie in [0, 1] (the share of the two-grid-length wave removed "
                             f"from the regression mean each step), got {self.mean_filter!r}; 0 turns it off")
        if int(self.num_steps) < 1:
            raise ValueError(f"num_steps must be at least 1, got {self.num_steps!r}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(
                f"need 0 < sigma_min < sigma_max, got sigma_min={self.sigma_min}, sigma_max={self.sigma_max}"
            )
        if self.S_churn > 0 and "S_churn" not in spec.options:
            raise ValueError(
                f"S_churn = {self.S_churn:g} applies to the heun solver only, not to {self.solver!r}; "
                "set S_churn to 0, or use an SDE solver (dpmpp_2m_sde, euler_ancestral) for sampling noise"
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SamplerOptions":
        """Build from a mapping; unknown keys raise ValueError."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown sampler options {unknown}; known: {sorted(names)}")
        convert = {"num_steps": int, "solver": _solver_name}
        return cls(**{k: convert.get(k, float)(v) for k, v in d.items()})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def solver_spec(self) -> Solver:
        """The :class:`~stormcast_plugin.diffusion.solvers.Solver` named by :attr:`solver`."""
        return get_solver(self.solver)

    def solver_options(self) -> dict[str, float]:
        """The settings the solver takes as keyword arguments (e.g. the churn of ``heun``)."""
        return {k: getattr(self, k) for k in self.solver_spec.options}

    @property
    def denoiser_evaluations(self) -> int:
        """Diffusion network evaluations per step."""
        return self.solver_spec.evaluations(int(self.num_steps))

    @property
    def network_evaluations(self) -> int:
        """Network evaluations per step: the regression net's one plus :attr:`denoiser_evaluations`."""
        return 1 + self.denoiser_evaluations


def _solver_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"solver must be a name, one of {list(SOLVERS)}; got {value!r}")
    return value


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


def _autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _per_sample(x: Tensor, batch: int) -> Tensor:
    """``[C, H, W]`` or ``[1 | B, C, H, W]`` as ``[B, C, H, W]`` (a view)."""
    return (x.unsqueeze(0) if x.ndim == 3 else x).expand(batch, -1, -1, -1)


class StormCastNets(nn.Module):
    """The regression and diffusion networks, their inputs, losses and the one-hour step.

    Parameters
    ----------
    regression : RegressionNet
        Predicts the mean next state from :meth:`regression_input`.
    diffusion : EDMPrecond, optional
        Denoiser of the residual conditioned on :meth:`denoiser_condition`;
        without it the step is regression only.

    Notes
    -----
    Every method taking ``invariants`` accepts ``[C_inv, H, W]`` (shared by
    the batch) or ``[1 | B, C_inv, H, W]``, and an optional ``extra``
    ``[B, C_extra, H, W]`` of per-sample channels placed right after them
    (the local-time channels). The networks count both as their invariant
    channels (:attr:`invariant_channels`).
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

    # ------------------------------------------------------------------ inputs
    @staticmethod
    def regression_input(state: Tensor, conditioning: Tensor, invariants: Tensor,
                         extra: Tensor | None = None) -> Tensor:
        """The regression net's input ``cat[state, conditioning, invariants, extra]``.

        Parameters
        ----------
        state : Tensor
            ``[B, C, H, W]`` normalised state at t.
        conditioning : Tensor
            ``[B, C_cond, H, W]`` normalised conditioning at t.
        invariants : Tensor
            ``[C_inv, H, W]`` or ``[1 | B, C_inv, H, W]``.
        extra : Tensor, optional
            ``[B, C_extra, H, W]`` per-sample channels after the invariants.

        Returns
        -------
        Tensor
            ``[B, C + C_cond + C_inv + C_extra, H, W]`` in the state's dtype.
        """
        return _stack(state, conditioning, invariants, extra)

    @staticmethod
    def denoiser_condition(state: Tensor, regression_mean: Tensor, invariants: Tensor,
                           extra: Tensor | None = None) -> Tensor:
        """The denoiser's condition ``cat[state, regression_mean, invariants, extra]``
        (shapes as in :meth:`regression_input`)."""
        return _stack(state, regression_mean, invariants, extra)

    def regression_mean(self, state: Tensor, conditioning: Tensor, invariants: Tensor, *,
                        extra: Tensor | None = None, net: nn.Module | None = None,
                        autocast_dtype: torch.dtype | None = None) -> Tensor:
        """The regression mean ``r = R(regression_input(...))``, float32.

        ``net`` runs in place of :attr:`regression` (a wrapped or averaged
        copy of it, e.g. DistributedDataParallel or EMA weights).
        """
        net = self.regression if net is None else net
        with _autocast(state.device, autocast_dtype):
            return net(self.regression_input(state, conditioning, invariants, extra)).float()

    # ------------------------------------------------------------------ losses
    def regression_loss(self, state: Tensor, conditioning: Tensor, invariants: Tensor, next_state: Tensor, *,
                        extra: Tensor | None = None, net: nn.Module | None = None,
                        autocast_dtype: torch.dtype | None = None, input_noise: float = 0.0,
                        generators: Generators = None) -> Tensor:
        """Mean squared error of the regression mean to ``next_state``.

        A residual regression net with a ``tendency_scale`` is scored in units
        of each channel's typical hourly change, so all channels weigh alike.
        ``net`` runs in place of :attr:`regression` (its scale is
        :attr:`regression`'s). With ``input_noise`` > 0, Gaussian noise of that
        standard deviation (drawn from ``generators``, one per sample) is added
        to ``state`` before the net sees it, and the target stays clean.
        """
        if input_noise > 0:
            state = state + input_noise * randn_per_sample(tuple(state.shape), generators, dtype=state.dtype,
                                                           device=state.device)
        pred = self.regression_mean(state, conditioning, invariants, extra=extra, net=net,
                                    autocast_dtype=autocast_dtype)
        scale = getattr(self.regression, "tendency_scale", None)
        return losses.regression_loss(pred, next_state, None if scale is None else scale.reshape(1, -1, 1, 1))

    def diffusion_loss(self, state: Tensor, conditioning: Tensor, invariants: Tensor, next_state: Tensor, *,
                       generators: Generators, extra: Tensor | None = None, P_mean: float = -1.2,
                       P_std: float = 1.2, net: nn.Module | None = None,
                       autocast_dtype: torch.dtype | None = None) -> Tensor:
        """EDM loss of the denoiser on the residual of the (frozen) regression mean.

        The target is ``(next_state - r) / residual_scale`` (per channel), the
        condition :meth:`denoiser_condition`; noise levels and noise are drawn
        from ``generators`` (one per sample: a sample's draw is its own),
        see :func:`~stormcast_plugin.diffusion.losses.edm_loss`. ``net`` runs
        in place of :attr:`diffusion` (its scale and ``sigma_data`` are
        :attr:`diffusion`'s).
        """
        if self.diffusion is None:
            raise ValueError("these StormCastNets have no diffusion net; build them with one to train it")
        with torch.no_grad():
            mean = self.regression_mean(state, conditioning, invariants, extra=extra, autocast_dtype=autocast_dtype)
        target = (next_state - mean) / self.diffusion.residual_scale.reshape(1, -1, 1, 1)
        condition = self.denoiser_condition(state, mean, invariants, extra)
        net = self.diffusion if net is None else net

        def denoise(x: Tensor, sigma: Tensor) -> Tensor:
            with _autocast(x.device, autocast_dtype):
                return net(x, sigma, condition).float()

        return losses.edm_loss(denoise, target, P_mean=P_mean, P_std=P_std,
                               sigma_data=float(self.diffusion.sigma_data), generator=generators)

    # ------------------------------------------------------------------ step
    def _check_inputs(self, state: Tensor, conditioning: Tensor, invariants: Tensor,
                      extra: Tensor | None) -> None:
        if isinstance(invariants, Tensor) and invariants.ndim == 3:
            invariants = invariants.unsqueeze(0)
        n_extra = 0
        if extra is not None:
            if not isinstance(extra, Tensor) or extra.ndim != 4:
                raise ValueError(f"extra must be a [batch, C, H, W] tensor, got "
                                 f"{tuple(extra.shape) if isinstance(extra, Tensor) else type(extra).__name__}")
            n_extra = extra.shape[1]
            check_tensor("extra", extra, n_extra)
        n_inv = self.invariant_channels
        if n_inv is None:
            n_inv = n_extra + (invariants.shape[1] if isinstance(invariants, Tensor) and invariants.ndim == 4 else 0)
        check_tensor("invariants", invariants, n_inv - n_extra)
        check_tensor("state", state, self.state_channels)
        check_tensor("conditioning", conditioning, self.conditioning_channels(n_inv))
        b, _, h, w = state.shape
        for name, x in (("conditioning", conditioning), ("extra", extra)):
            if x is not None and (x.shape[0] != b or x.shape[-2:] != state.shape[-2:]):
                raise ValueError(
                    f"{name} shape {tuple(x.shape)} does not match the state "
                    f"{tuple(state.shape)}: expected [{b}, C, {h}, {w}]"
                )
        if invariants.shape[-2:] != state.shape[-2:]:
            raise ValueError(
                f"invariants grid {tuple(invariants.shape[-2:])} differs from the state grid ({h}, {w})"
            )
        if invariants.shape[0] not in (1, b):
            raise ValueError(f"invariants batch {invariants.shape[0]} must be 1 or the state batch {b}")
        self.regression.config.check_grid((h, w))

    @torch.no_grad()
    def step(
        self,
        state: Tensor,
        conditioning: Tensor,
        invariants: Tensor,
        *,
        extra: Tensor | None = None,
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
        extra : Tensor, optional
            ``[B, C_extra, H, W]`` per-sample channels after the invariants
            (the local-time channels of t).
        sampler : SamplerOptions
            Diffusion sampler settings: solver, noise schedule and options.
        generators : list of torch.Generator or torch.Generator, optional
            One generator per batch member makes every member reproducible on
            its own; a single generator draws the whole batch.
        regression_only : bool
            Skip the diffusion residual (deterministic mean forecast).
        autocast_dtype : torch.dtype, optional
            Run the networks under autocast in this dtype (``torch.bfloat16``).
        callback : callable, optional
            ``callback(i, sigma_i, x)`` at the start of each solver step.
        initial_noise : Tensor, optional
            ``[B, C_state, H, W]`` standard normal noise the sampler starts
            from, instead of a draw from ``generators`` (which still give the
            noise that churn and the SDE solvers draw on the way).

        Returns
        -------
        Tensor
            ``[B, C_state, H, W]`` normalised state at t + 1 h, float32.
        """
        self._check_inputs(state, conditioning, invariants, extra)
        state = state.float()
        device = state.device
        mean = self.regression_mean(state, conditioning, invariants, extra=extra, autocast_dtype=autocast_dtype)
        if sampler.mean_filter > 0:
            mean = shapiro_filter(mean, sampler.mean_filter)
        if regression_only or self.diffusion is None:
            return mean
        condition = self.denoiser_condition(state, mean, invariants, extra)

        def denoise(x: Tensor, sigma: Tensor) -> Tensor:
            # The sampler gives all samples the same noise level: one embedding serves the batch.
            with _autocast(device, autocast_dtype):
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
        residual = sampler.solver_spec(denoise, noise, sigmas, generators=generators, callback=callback,
                                       **sampler.solver_options())
        scale = self.diffusion.residual_scale.to(device=device, dtype=torch.float32).reshape(1, -1, 1, 1)
        return mean + residual.float() * scale


def _stack(state: Tensor, second: Tensor, invariants: Tensor, extra: Tensor | None) -> Tensor:
    b = state.shape[0]
    parts = [state, second.to(state), _per_sample(invariants, b).to(state)]
    if extra is not None:
        parts.append(extra.to(state))
    return torch.cat(parts, dim=1)
