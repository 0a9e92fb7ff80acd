"""Noise-level schedules for EDM sampling.

A schedule is a pure function returning the decreasing sequence of noise
levels ``sigma_0 > sigma_1 > ... > sigma_{N-1} > sigma_N = 0`` that a solver
(see :mod:`stormcast_plugin.diffusion.samplers`) integrates over.  Keeping the
schedule separate from the solver lets either be swapped independently.

References
----------
.. [1] T. Karras, M. Aittala, T. Aila, S. Laine, "Elucidating the Design Space
   of Diffusion-Based Generative Models", NeurIPS 2022, Eq. (5).
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

__all__ = ["karras_sigmas"]


def _require_positive_finite(name: str, value: float) -> float:
    """Return ``value`` as a float, raising if it is not a positive finite real."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r} ({type(value).__name__}).")
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be positive and finite, got {value!r}; pass a value > 0.")
    return value


def karras_sigmas(
    num_steps: int = 18,
    sigma_min: float = 0.002,
    sigma_max: float = 800.0,
    rho: float = 7.0,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Karras et al. (2022) noise levels, with a trailing zero.

    .. math::

        \sigma_i = \Bigl(\sigma_{\max}^{1/\rho}
            + \tfrac{i}{N-1}\bigl(\sigma_{\min}^{1/\rho}
            - \sigma_{\max}^{1/\rho}\bigr)\Bigr)^{\rho},
        \quad i = 0, \dots, N-1, \qquad \sigma_N = 0.

    Parameters
    ----------
    num_steps : int, default 18
        Number of solver steps ``N`` (>= 1).  With ``N == 1`` the schedule is
        ``[sigma_max, 0]``.
    sigma_min : float, default 0.002
        Smallest non-zero noise level, ``sigma_{N-1}``.
    sigma_max : float, default 800.0
        Largest noise level, ``sigma_0``.  Must exceed ``sigma_min``.
    rho : float, default 7.0
        Warping exponent; larger values concentrate steps near ``sigma_min``.
    dtype : torch.dtype, default torch.float64
        Dtype of the returned tensor.  The schedule is always evaluated in
        float64 and then cast.
    device : torch.device or str, optional
        Device of the returned tensor.

    Returns
    -------
    Tensor
        Shape ``[num_steps + 1]``, strictly decreasing, ending with ``0``.
        The first and last non-zero entries equal ``sigma_max`` and
        ``sigma_min`` up to the rounding of ``(sigma^(1/rho))^rho`` (e.g.
        ``799.9999999999999`` for 800), exactly as the formula evaluates.

    Raises
    ------
    ValueError
        If ``num_steps < 1``, ``sigma_min`` or ``sigma_max`` are not positive,
        ``sigma_min >= sigma_max``, or ``rho <= 0``.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral):
        raise ValueError(
            f"num_steps must be an integer, got {num_steps!r} ({type(num_steps).__name__}); "
            "pass e.g. num_steps=18."
        )
    num_steps = int(num_steps)
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}; pass a positive step count.")
    sigma_min = _require_positive_finite("sigma_min", sigma_min)
    sigma_max = _require_positive_finite("sigma_max", sigma_max)
    rho = _require_positive_finite("rho", rho)
    if sigma_min >= sigma_max:
        raise ValueError(
            f"sigma_min must be smaller than sigma_max, got sigma_min={sigma_min} >= "
            f"sigma_max={sigma_max}; swap them or widen the range."
        )

    if num_steps == 1:
        sigmas = torch.tensor([sigma_max], dtype=torch.float64)
    else:
        i = torch.arange(num_steps, dtype=torch.float64)
        max_inv_rho = sigma_max ** (1.0 / rho)
        min_inv_rho = sigma_min ** (1.0 / rho)
        sigmas = (max_inv_rho + i / (num_steps - 1) * (min_inv_rho - max_inv_rho)) ** rho
    sigmas = torch.cat([sigmas, sigmas.new_zeros(1)])
    return sigmas.to(dtype=dtype, device=device)
