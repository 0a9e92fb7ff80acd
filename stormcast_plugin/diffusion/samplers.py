"""EDM samplers: the stochastic Heun solver of Karras et al. (2022).

The solver integrates the probability-flow ODE

.. math::

    \\frac{dx}{d\\sigma} = \\frac{x - D(x; \\sigma)}{\\sigma}

over a decreasing noise schedule (see
:func:`stormcast_plugin.diffusion.schedules.karras_sigmas`), optionally adding
"churn" noise (Algorithm 2 of the paper).  The denoiser ``D`` is any callable
``denoise(x, sigma)``; conditioning inputs are closed over by the caller.

Randomness is drawn *per sample*: with one :class:`torch.Generator` per batch
member, a member's noise depends only on its own generator, so its result does
not change with batch size or position in the batch.

References
----------
.. [1] T. Karras, M. Aittala, T. Aila, S. Laine, "Elucidating the Design Space
   of Diffusion-Based Generative Models", NeurIPS 2022, Algorithm 2.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from stormcast_plugin.diffusion.schedules import karras_sigmas

__all__ = [
    "Denoiser",
    "make_generators",
    "randn_per_sample",
    "edm_heun_sampler",
    "edm_sample",
]

Denoiser = Callable[[Tensor, Tensor], Tensor]
"""``denoise(x, sigma) -> D(x; sigma)``: ``x`` is ``[B, C, H, W]``, ``sigma`` is ``[B]``."""

Generators = Sequence[torch.Generator] | torch.Generator | None


def make_generators(
    seeds: Sequence[int], device: torch.device | str | None = None
) -> list[torch.Generator]:
    """Create one seeded random generator per sample.

    Parameters
    ----------
    seeds : sequence of int
        One seed per batch member.
    device : torch.device or str, optional
        Device the generators live on (default: CPU).

    Returns
    -------
    list of torch.Generator
        ``generators[b]`` is seeded with ``seeds[b]``.

    Raises
    ------
    ValueError
        If a seed is not an integer.
    """
    generators = []
    for b, seed in enumerate(seeds):
        try:
            seed = operator.index(seed)
        except TypeError:
            raise ValueError(
                f"seeds[{b}] must be an integer, got {seed!r} ({type(seed).__name__}); "
                "pass integer seeds such as [0, 1, 2]."
            ) from None
        generator = torch.Generator(device=device if device is not None else "cpu")
        generator.manual_seed(seed)
        generators.append(generator)
    return generators


def randn_per_sample(
    shape: tuple[int, ...],
    generators: Generators,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Standard normal noise where each sample has its own generator.

    Parameters
    ----------
    shape : tuple of int
        Output shape; ``shape[0]`` is the number of samples ``B``.
    generators : sequence of torch.Generator, torch.Generator or None
        A sequence of ``B`` generators: sample ``b`` is
        ``torch.randn(shape[1:], generator=generators[b])``, independent of
        ``B`` and of ``b``.  A single generator (or ``None`` for the global
        RNG): the whole batch is one ``torch.randn(shape)`` draw.
    dtype : torch.dtype, default torch.float32
        Dtype of the draw.
    device : torch.device or str, optional
        Device of the returned tensor.  Noise is drawn on each generator's own
        device, then moved, so CPU generators work for GPU outputs.

    Returns
    -------
    Tensor
        Noise of shape ``shape``.

    Raises
    ------
    ValueError
        If ``shape`` is empty or the number of generators is not ``shape[0]``.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        raise ValueError("shape must have a leading batch dimension, got shape=(); pass e.g. (B, C, H, W).")
    if generators is None:
        return torch.randn(shape, dtype=dtype, device=device)
    if isinstance(generators, torch.Generator):
        noise = torch.randn(shape, generator=generators, dtype=dtype, device=generators.device)
        return noise.to(device)
    generators = list(generators)
    if len(generators) != shape[0]:
        raise ValueError(
            f"got {len(generators)} generators for a batch of shape[0]={shape[0]} samples; "
            "pass exactly one generator per sample (see make_generators)."
        )
    samples = [
        torch.randn(shape[1:], generator=g, dtype=dtype, device=g.device).to(device)
        for g in generators
    ]
    if not samples:
        return torch.empty(shape, dtype=dtype, device=device)
    return torch.stack(samples)


def _churn_gamma(sigma: float, num_steps: int, S_churn: float, S_min: float, S_max: float) -> float:
    """Karras Algorithm 2 churn factor ``gamma_i`` for noise level ``sigma``."""
    if S_min <= sigma <= S_max:
        return min(S_churn / num_steps, math.sqrt(2.0) - 1.0)
    return 0.0


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
    callback: Callable[[int, float, Tensor], None] | None = None,
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
    if noise.ndim < 1:
        raise ValueError("noise must have a leading batch dimension, got a 0-d tensor; pass [B, C, H, W].")
    batch = noise.shape[0]
    if not S_churn >= 0.0:
        raise ValueError(f"S_churn must be >= 0, got {S_churn}; use 0 for a deterministic sampler.")
    if not S_noise >= 0.0:
        raise ValueError(f"S_noise must be >= 0, got {S_noise}; the usual range is 1.0 to 1.01.")
    if generators is not None and not isinstance(generators, torch.Generator):
        generators = list(generators)
        if len(generators) != batch:
            raise ValueError(
                f"got {len(generators)} generators for a batch of {batch} samples; "
                "pass one generator per sample (see make_generators)."
            )

    def D(x: Tensor, sigma: float) -> Tensor:
        sigma_b = torch.full((batch,), sigma, dtype=state_dtype, device=x.device)
        denoised = denoise(x.to(state_dtype), sigma_b)
        if denoised.shape != x.shape:
            raise ValueError(
                f"denoise returned shape {tuple(denoised.shape)} for an input of shape "
                f"{tuple(x.shape)}; the denoiser must return D(x; sigma) with the shape of x."
            )
        return denoised.to(state_dtype)

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


def edm_sample(
    denoise: Denoiser,
    shape: tuple[int, ...],
    *,
    num_steps: int = 18,
    sigma_min: float = 0.002,
    sigma_max: float = 800.0,
    rho: float = 7.0,
    S_churn: float = 0.0,
    S_min: float = 0.0,
    S_max: float = float("inf"),
    S_noise: float = 1.0,
    generators: Generators = None,
    device: torch.device | str | None = None,
    state_dtype: torch.dtype = torch.float64,
    callback: Callable[[int, float, Tensor], None] | None = None,
) -> Tensor:
    """Draw samples with a Karras schedule and the stochastic Heun solver.

    The initial noise of member ``b`` is
    ``torch.randn(shape[1:], generator=generators[b])`` drawn in float32 and
    cast to ``state_dtype``; the schedule is :func:`karras_sigmas`.

    Parameters
    ----------
    denoise : Denoiser
        ``denoise(x, sigma) -> D(x; sigma)``, see :func:`edm_heun_sampler`.
    shape : tuple of int
        Output shape ``(B, C, H, W)``.
    num_steps, sigma_min, sigma_max, rho
        Schedule parameters, see :func:`karras_sigmas`.
    S_churn, S_min, S_max, S_noise
        Churn parameters, see :func:`edm_heun_sampler`.
    generators : sequence of torch.Generator, torch.Generator or None
        One generator per sample (see :func:`make_generators`), a single
        generator for the whole batch, or ``None`` for the global RNG.
    device : torch.device or str, optional
        Device of the samples.
    state_dtype : torch.dtype, default torch.float64
        Integration dtype; the result has this dtype.
    callback : callable, optional
        ``callback(i, sigma_i, x)`` progress hook, see :func:`edm_heun_sampler`.

    Returns
    -------
    Tensor
        Samples of shape ``shape`` and dtype ``state_dtype``.
    """
    sigmas = karras_sigmas(num_steps, sigma_min, sigma_max, rho, dtype=torch.float64)
    if generators is not None and not isinstance(generators, torch.Generator):
        generators = list(generators)
    noise = randn_per_sample(shape, generators, dtype=torch.float32, device=device)
    return edm_heun_sampler(
        denoise,
        noise,
        sigmas,
        S_churn=S_churn,
        S_min=S_min,
        S_max=S_max,
        S_noise=S_noise,
        generators=generators,
        state_dtype=state_dtype,
        callback=callback,
    )
