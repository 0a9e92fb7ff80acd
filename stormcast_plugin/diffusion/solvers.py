r"""Solvers that walk a noise schedule with an EDM denoiser, chosen by name.

A schedule (:mod:`stormcast_plugin.diffusion.schedules`) makes the noise
levels :math:`\sigma_0 > \dots > \sigma_N = 0`; a solver walks them, starting
from :math:`x = \sigma_0 \varepsilon`. Every solver is a pure function with
the same signature::

    solver(denoise, noise, sigmas, *, generators=None, state_dtype=torch.float64,
           callback=None, **options) -> Tensor

where ``denoise(x, sigma)`` returns :math:`D(x; \sigma)`, the denoiser's
estimate of the clean sample. :data:`SOLVERS` maps names to :class:`Solver`
records (function, order, whether it draws noise, its options and its number
of denoiser evaluations).

``heun``
    Karras et al. (2022) Algorithm 2, the StormCast reference: second order,
    ``2N - 1`` evaluations, optional churn.
``euler``, ``dpmpp_2m``
    Exponential integrators of the probability-flow ODE in the data
    prediction of DPM-Solver++ (Lu et al. 2022) with
    :math:`\lambda = -\log\sigma`, :math:`h = \lambda_{i+1} - \lambda_i`:
    :math:`x_{i+1} = (\sigma_{i+1}/\sigma_i)\, x_i + (1 - e^{-h})\, \hat D_i`,
    where ``euler`` takes :math:`\hat D_i = D_i` (first order; it equals the
    Euler step of the ODE in :math:`\sigma`) and ``dpmpp_2m`` the
    two-step extrapolation
    :math:`\hat D_i = D_i + (D_i - D_{i-1}) / (2 r_i)`,
    :math:`r_i = h_{i-1} / h_i` (second order). ``N`` evaluations each.
``euler_ancestral``, ``dpmpp_2m_sde``
    The same steps for the reverse-time SDE (DPM-Solver++ SDE with
    :math:`\eta = 1`):
    :math:`x_{i+1} = (\sigma_{i+1}/\sigma_i)^2 x_i + (1 - e^{-2h})\, \hat D_i
    + \sigma_{i+1}\sqrt{1 - e^{-2h}}\, S_\text{noise}\, \epsilon_i`,
    with :math:`\hat D_i` as above (``euler_ancestral``: first order, the
    DDPM posterior step; ``dpmpp_2m_sde``: the two-step term scaled by
    :math:`(1 - e^{-2h}) / (2 r_i)`). ``N`` evaluations; the noise
    :math:`\epsilon_i` comes from the per-member generators.

The step to :math:`\sigma_N = 0` is :math:`x_N = D(x_{N-1}; \sigma_{N-1})`
for every solver but Heun (whose Euler step to 0 is the same thing).

References
----------
.. [1] T. Karras, M. Aittala, T. Aila, S. Laine, "Elucidating the Design Space
   of Diffusion-Based Generative Models", NeurIPS 2022, Algorithm 2.
.. [2] C. Lu, Y. Zhou, F. Bao, J. Chen, C. Li, J. Zhu, "DPM-Solver++: Fast
   Solver for Guided Sampling of Diffusion Probabilistic Models",
   arXiv:2211.01095, 2022.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import Tensor

from stormcast_plugin.diffusion.samplers import Denoiser, Generators, randn_per_sample
from stormcast_plugin.diffusion.schedules import karras_sigmas

__all__ = [
    "SOLVERS",
    "Solver",
    "dpmpp_2m_sampler",
    "dpmpp_2m_sde_sampler",
    "edm_euler_sampler",
    "edm_heun_sampler",
    "edm_sample",
    "euler_ancestral_sampler",
    "get_solver",
]

Callback = Callable[[int, float, Tensor], None]
"""``callback(i, sigma_i, x)``: called at the start of step ``i`` with the state at ``sigma_i``."""


# --------------------------------------------------------------------------- shared checks
def _validate_sigmas(sigmas: Tensor) -> list[float]:
    """Check a noise schedule and return it as Python floats."""
    if not isinstance(sigmas, Tensor) or sigmas.ndim != 1 or sigmas.numel() < 2:
        got = tuple(sigmas.shape) if isinstance(sigmas, Tensor) else type(sigmas).__name__
        raise ValueError(
            f"sigmas must be a 1-D tensor of at least 2 noise levels, got {got}; "
            "build it with karras_sigmas(num_steps)."
        )
    values = sigmas.detach().to("cpu", torch.float64).tolist()
    if not all(math.isfinite(s) for s in values):
        raise ValueError(f"sigmas must be finite, got {values}; build them with karras_sigmas().")
    if min(values[:-1]) <= 0.0 or values[-1] < 0.0:
        raise ValueError(
            f"sigmas must be positive except a final 0, got {values}; "
            "build them with karras_sigmas()."
        )
    if any(b > a for a, b in zip(values[:-1], values[1:])):
        raise ValueError(
            f"sigmas must be non-increasing, got {values}; build them with karras_sigmas()."
        )
    return values


def _check_batch(noise: Tensor, generators: Generators) -> Generators:
    """The generators as a list (or single/None), checked against the batch of ``noise``."""
    if noise.ndim < 1:
        raise ValueError("noise must have a leading batch dimension, got a 0-d tensor; pass [B, C, H, W].")
    if generators is not None and not isinstance(generators, torch.Generator):
        generators = list(generators)
        if len(generators) != noise.shape[0]:
            raise ValueError(
                f"got {len(generators)} generators for a batch of {noise.shape[0]} samples; "
                "pass one generator per sample (see make_generators)."
            )
    return generators


def _batched_denoiser(denoise: Denoiser, batch: int, state_dtype: torch.dtype) -> Callable[[Tensor, float], Tensor]:
    """``D(x, sigma)`` for a float ``sigma``: one ``[B]`` noise level, shape checked, ``state_dtype`` out."""

    def D(x: Tensor, sigma: float) -> Tensor:
        sigma_b = torch.full((batch,), sigma, dtype=state_dtype, device=x.device)
        denoised = denoise(x.to(state_dtype), sigma_b)
        if denoised.shape != x.shape:
            raise ValueError(
                f"denoise returned shape {tuple(denoised.shape)} for an input of shape "
                f"{tuple(x.shape)}; the denoiser must return D(x; sigma) with the shape of x."
            )
        return denoised.to(state_dtype)

    return D


# --------------------------------------------------------------------------- Heun (reference)
def _churn_gamma(sigma: float, num_steps: int, S_churn: float, S_min: float, S_max: float) -> float:
    """Karras Algorithm 2 churn factor ``gamma_i`` for noise level ``sigma``."""
    if S_min <= sigma <= S_max:
        return min(S_churn / num_steps, math.sqrt(2.0) - 1.0)
    return 0.0


def edm_heun_sampler(
    denoise: Denoiser,
    noise: Tensor,
    sigmas: Tensor,
    *,
    S_churn: float = 0.0,
    S_min: float = 0.0,
    S_max: float = float("inf"),
    S_noise: float = 1.0,
    generators: Generators = None,
    state_dtype: torch.dtype = torch.float64,
    callback: Callback | None = None,
) -> Tensor:
    r"""Stochastic Heun sampler (Karras et al. 2022, Algorithm 2).

    Starting from :math:`x_0 = \sigma_0 \varepsilon`, for each step
    :math:`i = 0, \dots, N-1`:

    .. math::

        \gamma_i &= \min(S_\text{churn}/N, \sqrt{2}-1)
            \ \text{if}\ S_\min \le \sigma_i \le S_\max\ \text{else}\ 0 \\
        \hat\sigma_i &= \sigma_i (1 + \gamma_i) \\
        \hat x_i &= x_i + \sqrt{\hat\sigma_i^2 - \sigma_i^2}\, S_\text{noise}\, \epsilon_i \\
        d_i &= (\hat x_i - D(\hat x_i; \hat\sigma_i)) / \hat\sigma_i \\
        x_{i+1} &= \hat x_i + (\sigma_{i+1} - \hat\sigma_i)\, d_i

    and, when :math:`\sigma_{i+1} \ne 0`, the trapezoidal correction
    :math:`d'_i = (x_{i+1} - D(x_{i+1}; \sigma_{i+1}))/\sigma_{i+1}`,
    :math:`x_{i+1} = \hat x_i + (\sigma_{i+1} - \hat\sigma_i)(d_i + d'_i)/2`.

    With ``N`` steps and a trailing zero in ``sigmas`` this makes exactly
    ``2N - 1`` denoiser calls.

    Parameters
    ----------
    denoise : Denoiser
        ``denoise(x, sigma)`` returning :math:`D(x; \sigma)` with the shape of
        ``x``.  It receives ``x`` in ``state_dtype`` and ``sigma`` as a ``[B]``
        tensor of ``state_dtype``; its output is cast back to ``state_dtype``.
    noise : Tensor
        Standard normal initial noise, ``[B, ...]``.
    sigmas : Tensor
        Non-increasing noise levels ``[N + 1]``, positive except the last,
        normally from :func:`karras_sigmas` (ending with 0).
    S_churn : float, default 0.0
        Total churn; 0 gives the deterministic Heun ODE solver.
    S_min, S_max : float, default 0 and inf
        Churn is applied only while ``S_min <= sigma_i <= S_max``.
    S_noise : float, default 1.0
        Scale of the churn noise (slightly above 1 counters detail loss).
    generators : sequence of torch.Generator, torch.Generator or None
        Source of churn noise, see :func:`randn_per_sample`.  Only consumed on
        steps where ``gamma_i > 0``.
    state_dtype : torch.dtype, default torch.float64
        Dtype of the integration state ``x``.
    callback : callable, optional
        ``callback(i, sigma_i, x)`` called once per step, at the start of step
        ``i``, with the state ``x`` at noise level ``sigma_i`` (a float).

    Returns
    -------
    Tensor
        Final sample, shape of ``noise``, dtype ``state_dtype``.

    Raises
    ------
    ValueError
        For an invalid schedule, negative churn settings, a generator count
        that differs from the batch size, or a denoiser output of the wrong
        shape.
    """
    sigma_values = _validate_sigmas(sigmas)
    num_steps = len(sigma_values) - 1
    generators = _check_batch(noise, generators)
    if not S_churn >= 0.0:
        raise ValueError(f"S_churn must be >= 0, got {S_churn}; use 0 for a deterministic sampler.")
    if not S_noise >= 0.0:
        raise ValueError(f"S_noise must be >= 0, got {S_noise}; the usual range is 1.0 to 1.01.")
    D = _batched_denoiser(denoise, noise.shape[0], state_dtype)

    x = noise.to(state_dtype) * sigma_values[0]
    for i in range(num_steps):
        sigma, sigma_next = sigma_values[i], sigma_values[i + 1]
        if callback is not None:
            callback(i, sigma, x)

        # Churn: raise the noise level from sigma to sigma_hat.
        gamma = _churn_gamma(sigma, num_steps, S_churn, S_min, S_max)
        sigma_hat = sigma * (1.0 + gamma)
        if gamma > 0.0:
            eps = randn_per_sample(tuple(x.shape), generators, dtype=state_dtype, device=x.device)
            x_hat = x + math.sqrt(sigma_hat**2 - sigma**2) * S_noise * eps
        else:
            x_hat = x

        # Euler step.
        d = (x_hat - D(x_hat, sigma_hat)) / sigma_hat
        x_next = x_hat + (sigma_next - sigma_hat) * d

        # Second-order (trapezoidal) correction.
        if sigma_next != 0.0:
            d_prime = (x_next - D(x_next, sigma_next)) / sigma_next
            x_next = x_hat + (sigma_next - sigma_hat) * (0.5 * d + 0.5 * d_prime)
        x = x_next
    return x


# --------------------------------------------------------------------------- exponential integrators
def _exponential_multistep(
    denoise: Denoiser,
    noise: Tensor,
    sigmas: Tensor,
    *,
    order: int,
    stochastic: bool,
    S_noise: float,
    generators: Generators,
    state_dtype: torch.dtype,
    callback: Callback | None,
) -> Tensor:
    """DPM-Solver++ steps in the data prediction, first or second order, ODE or SDE (eta = 1).

    One denoiser evaluation per step; the formulas are in the module docstring.
    """
    sigma_values = _validate_sigmas(sigmas)
    generators = _check_batch(noise, generators)
    if not S_noise >= 0.0:
        raise ValueError(f"S_noise must be >= 0, got {S_noise}; 1 draws the noise the SDE prescribes.")
    D = _batched_denoiser(denoise, noise.shape[0], state_dtype)
    # The ODE keeps e^{-h} of x; the SDE (eta = 1) keeps e^{-2h} and refills the rest with noise.
    rate = 2.0 if stochastic else 1.0

    x = noise.to(state_dtype) * sigma_values[0]
    previous: Tensor | None = None  # D at the previous step
    h_last = 0.0
    for i in range(len(sigma_values) - 1):
        sigma, sigma_next = sigma_values[i], sigma_values[i + 1]
        if callback is not None:
            callback(i, sigma, x)
        denoised = D(x, sigma)
        if sigma_next == 0.0:
            # h = infinity: the step lands on the denoiser's estimate.
            x = denoised
            break
        h = math.log(sigma / sigma_next)
        keep = math.exp(-rate * h)  # (sigma_next / sigma) ** rate
        gain = -math.expm1(-rate * h)  # 1 - keep, without cancellation for small h
        target = denoised
        if order == 2 and previous is not None and h > 0.0 and h_last > 0.0:
            r = h_last / h
            target = denoised + (denoised - previous) / (2.0 * r)
        x = keep * x + gain * target
        if stochastic:
            eps = randn_per_sample(tuple(x.shape), generators, dtype=state_dtype, device=x.device)
            x = x + (sigma_next * math.sqrt(gain) * S_noise) * eps
        previous, h_last = denoised, h
    return x


def edm_euler_sampler(
    denoise: Denoiser,
    noise: Tensor,
    sigmas: Tensor,
    *,
    generators: Generators = None,
    state_dtype: torch.dtype = torch.float64,
    callback: Callback | None = None,
) -> Tensor:
    r"""Euler steps of the probability-flow ODE: first order, ``N`` evaluations.

    :math:`x_{i+1} = x_i + (\sigma_{i+1} - \sigma_i)(x_i - D_i)/\sigma_i`
    (the first-order DPM-Solver++ step, see the module docstring).
    Parameters and return value as for :func:`dpmpp_2m_sampler`;
    ``generators`` are checked but never drawn from.
    """
    return _exponential_multistep(denoise, noise, sigmas, order=1, stochastic=False, S_noise=1.0,
                                  generators=generators, state_dtype=state_dtype, callback=callback)


def dpmpp_2m_sampler(
    denoise: Denoiser,
    noise: Tensor,
    sigmas: Tensor,
    *,
    generators: Generators = None,
    state_dtype: torch.dtype = torch.float64,
    callback: Callback | None = None,
) -> Tensor:
    r"""DPM-Solver++(2M) on the EDM parameterisation: deterministic, second order, ``N`` evaluations.

    With :math:`\lambda = -\log\sigma`, :math:`h_i = \lambda_{i+1} - \lambda_i`
    and :math:`r_i = h_{i-1}/h_i`:

    .. math::

        x_{i+1} = \frac{\sigma_{i+1}}{\sigma_i} x_i + (1 - e^{-h_i})
            \Bigl(D_i + \frac{D_i - D_{i-1}}{2 r_i}\Bigr),

    first order on the first step (no :math:`D_{-1}`) and
    :math:`x_N = D_{N-1}` on the step to :math:`\sigma_N = 0`.

    Parameters
    ----------
    denoise : Denoiser
        ``denoise(x, sigma) -> D(x; sigma)``, see :func:`edm_heun_sampler`.
    noise : Tensor
        Standard normal initial noise ``[B, ...]``; the walk starts at ``sigmas[0] * noise``.
    sigmas : Tensor
        Non-increasing noise levels ``[N + 1]``, positive except the last
        (normally :func:`~stormcast_plugin.diffusion.schedules.karras_sigmas`).
    generators : sequence of torch.Generator, torch.Generator or None
        Checked against the batch size; the ODE draws no noise.
    state_dtype : torch.dtype, default torch.float64
        Dtype of the integration state.
    callback : callable, optional
        ``callback(i, sigma_i, x)`` at the start of step ``i``.

    Returns
    -------
    Tensor
        Final sample, shape of ``noise``, dtype ``state_dtype``.

    Raises
    ------
    ValueError
        For an invalid schedule, a generator count that differs from the batch
        size or a denoiser output of the wrong shape.
    """
    return _exponential_multistep(denoise, noise, sigmas, order=2, stochastic=False, S_noise=1.0,
                                  generators=generators, state_dtype=state_dtype, callback=callback)


def euler_ancestral_sampler(
    denoise: Denoiser,
    noise: Tensor,
    sigmas: Tensor,
    *,
    S_noise: float = 1.0,
    generators: Generators = None,
    state_dtype: torch.dtype = torch.float64,
    callback: Callback | None = None,
) -> Tensor:
    r"""Ancestral (DDPM posterior) steps of the reverse SDE: first order, ``N`` evaluations.

    :math:`x_{i+1} = (\sigma_{i+1}/\sigma_i)^2 x_i + (1 - \sigma_{i+1}^2/\sigma_i^2) D_i
    + \sigma_{i+1}\sqrt{1 - \sigma_{i+1}^2/\sigma_i^2}\, S_\text{noise}\, \epsilon_i`,
    which is Euler ancestral with :math:`\eta = 1` (a step down to
    :math:`\sigma_{i+1}^2/\sigma_i` and fresh noise up to :math:`\sigma_{i+1}`).
    ``S_noise`` scales the fresh noise; ``generators`` supply it, one per
    member. Other parameters as for :func:`dpmpp_2m_sampler`.
    """
    return _exponential_multistep(denoise, noise, sigmas, order=1, stochastic=True, S_noise=S_noise,
                                  generators=generators, state_dtype=state_dtype, callback=callback)


def dpmpp_2m_sde_sampler(
    denoise: Denoiser,
    noise: Tensor,
    sigmas: Tensor,
    *,
    S_noise: float = 1.0,
    generators: Generators = None,
    state_dtype: torch.dtype = torch.float64,
    callback: Callback | None = None,
) -> Tensor:
    r"""DPM-Solver++(2M) SDE (:math:`\eta = 1`): stochastic, second order, ``N`` evaluations.

    .. math::

        x_{i+1} = \Bigl(\frac{\sigma_{i+1}}{\sigma_i}\Bigr)^2 x_i + (1 - e^{-2h_i})
            \Bigl(D_i + \frac{D_i - D_{i-1}}{2 r_i}\Bigr)
            + \sigma_{i+1}\sqrt{1 - e^{-2h_i}}\, S_\text{noise}\, \epsilon_i

    (notation of :func:`dpmpp_2m_sampler`). The noise :math:`\epsilon_i` of
    member ``b`` is drawn from ``generators[b]`` alone, so a member's sample
    does not depend on the batch. Other parameters as for
    :func:`dpmpp_2m_sampler`.
    """
    return _exponential_multistep(denoise, noise, sigmas, order=2, stochastic=True, S_noise=S_noise,
                                  generators=generators, state_dtype=state_dtype, callback=callback)


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Solver:
    """A named solver: its function and what it costs.

    Attributes
    ----------
    name : str
        The name :attr:`SamplerOptions.solver` takes.
    function : callable
        ``function(denoise, noise, sigmas, *, generators, state_dtype, callback, **options)``.
    order : int
        Order of convergence of the deterministic part.
    stochastic : bool
        Whether it draws noise from the generators after the initial noise.
    options : tuple of str
        The sampler settings (keyword arguments) it takes besides the schedule.
    extra_evaluations_per_step : int
        Denoiser evaluations per step beyond the first: 1 for Heun's
        correction, which is skipped on the step to sigma = 0.
    summary : str
        One line for tables and error messages.
    """

    name: str
    function: Callable[..., Tensor]
    order: int
    stochastic: bool
    options: tuple[str, ...]
    extra_evaluations_per_step: int
    summary: str

    def evaluations(self, num_steps: int) -> int:
        """Denoiser evaluations for ``num_steps`` steps of a schedule ending at sigma = 0."""
        return num_steps + self.extra_evaluations_per_step * (num_steps - 1)

    def __call__(self, denoise: Denoiser, noise: Tensor, sigmas: Tensor, **kwargs) -> Tensor:
        return self.function(denoise, noise, sigmas, **kwargs)


SOLVERS: Mapping[str, Solver] = MappingProxyType({
    s.name: s for s in (
        Solver("heun", edm_heun_sampler, 2, False, ("S_churn", "S_min", "S_max", "S_noise"), 1,
               "EDM stochastic Heun (Karras Alg. 2), the StormCast reference"),
        Solver("euler", edm_euler_sampler, 1, False, (), 0, "Euler / DDIM, first-order ODE"),
        Solver("dpmpp_2m", dpmpp_2m_sampler, 2, False, (), 0, "DPM-Solver++(2M), second-order multistep ODE"),
        Solver("euler_ancestral", euler_ancestral_sampler, 1, True, ("S_noise",), 0,
               "Euler ancestral (DDPM posterior), first-order SDE"),
        Solver("dpmpp_2m_sde", dpmpp_2m_sde_sampler, 2, True, ("S_noise",), 0,
               "DPM-Solver++(2M) SDE, second-order multistep SDE"),
    )
})
"""The solvers by name."""


def get_solver(name: str) -> Solver:
    """The :class:`Solver` called ``name``.

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones.
    """
    try:
        return SOLVERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown solver {name!r}; known solvers: {', '.join(SOLVERS)}") from None


# --------------------------------------------------------------------------- schedule + solver
def edm_sample(
    denoise: Denoiser,
    shape: tuple[int, ...],
    *,
    solver: str = "heun",
    num_steps: int = 18,
    sigma_min: float = 0.002,
    sigma_max: float = 800.0,
    rho: float = 7.0,
    generators: Generators = None,
    device: torch.device | str | None = None,
    state_dtype: torch.dtype = torch.float64,
    callback: Callback | None = None,
    **options: float,
) -> Tensor:
    """Draw samples: a Karras schedule walked by the solver called ``solver``.

    The initial noise of member ``b`` is
    ``torch.randn(shape[1:], generator=generators[b])`` drawn in float32 and
    cast to ``state_dtype``; the schedule is :func:`karras_sigmas`.

    Parameters
    ----------
    denoise : Denoiser
        ``denoise(x, sigma) -> D(x; sigma)``, see :func:`edm_heun_sampler`.
    shape : tuple of int
        Output shape ``(B, C, H, W)``.
    solver : str, default "heun"
        A name in :data:`SOLVERS`.
    num_steps, sigma_min, sigma_max, rho
        Schedule parameters, see :func:`karras_sigmas`.
    generators : sequence of torch.Generator, torch.Generator or None
        One generator per sample (see :func:`make_generators`), a single
        generator for the whole batch, or ``None`` for the global RNG.
    device : torch.device or str, optional
        Device of the samples.
    state_dtype : torch.dtype, default torch.float64
        Integration dtype; the result has this dtype.
    callback : callable, optional
        ``callback(i, sigma_i, x)`` progress hook.
    **options
        The solver's own settings (``S_churn``, ``S_min``, ``S_max``,
        ``S_noise`` for ``heun``; ``S_noise`` for the SDE solvers).

    Returns
    -------
    Tensor
        Samples of shape ``shape`` and dtype ``state_dtype``.

    Raises
    ------
    ValueError
        For an unknown solver, or an option the solver does not take.
    """
    spec = get_solver(solver)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ValueError(f"solver {solver!r} takes no options {unknown}; it takes {list(spec.options)}")
    sigmas = karras_sigmas(num_steps, sigma_min, sigma_max, rho, dtype=torch.float64)
    if generators is not None and not isinstance(generators, torch.Generator):
        generators = list(generators)
    noise = randn_per_sample(shape, generators, dtype=torch.float32, device=device)
    return spec(denoise, noise, sigmas, generators=generators, state_dtype=state_dtype, callback=callback,
                **options)
