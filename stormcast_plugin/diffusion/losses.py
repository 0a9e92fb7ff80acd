"""Training losses for StormCast: EDM denoising loss and regression MSE.

EDM (Karras et al. 2022, Table 1) trains a denoiser
:math:`D(x; \\sigma) = c_\\text{skip} x + c_\\text{out} F(c_\\text{in} x; c_\\text{noise})`
with noise levels :math:`\\ln\\sigma \\sim \\mathcal N(P_\\text{mean}, P_\\text{std}^2)`
and the loss weight :math:`\\lambda(\\sigma) = 1/c_\\text{out}^2`, which makes the
effective training target of ``F`` unit-variance at every noise level.

These are pure functions of tensors; which network inputs they see is
:class:`~stormcast_plugin.models.nn.stormcast_nets.StormCastNets`' business,
and their settings (``P_mean``, ``P_std``, ``sigma_data``) are checked where
the training configuration is loaded.

References
----------
.. [1] T. Karras, M. Aittala, T. Aila, S. Laine, "Elucidating the Design Space
   of Diffusion-Based Generative Models", NeurIPS 2022, Table 1 and Sec. 5.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from stormcast_plugin.diffusion.samplers import Generators, randn_per_sample

__all__ = [
    "edm_precondition_coefficients",
    "sample_training_sigma",
    "edm_loss_weight",
    "edm_loss",
    "regression_loss",
]

def _reduce(loss: Tensor, reduction: str) -> Tensor:
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


def edm_precondition_coefficients(
    sigma: Tensor, sigma_data: float = 0.5
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""EDM preconditioning coefficients (Karras et al. 2022, Table 1).

    .. math::

        c_\text{skip} = \frac{\sigma_d^2}{\sigma^2 + \sigma_d^2}, \quad
        c_\text{out} = \frac{\sigma \sigma_d}{\sqrt{\sigma^2 + \sigma_d^2}}, \quad
        c_\text{in} = \frac{1}{\sqrt{\sigma_d^2 + \sigma^2}}, \quad
        c_\text{noise} = \tfrac14 \ln \sigma.

    Parameters
    ----------
    sigma : Tensor
        Noise levels (any shape, positive).  Floats are converted to tensors.
    sigma_data : float, default 0.5
        Standard deviation of the data, :math:`\sigma_d`.

    Returns
    -------
    c_skip, c_out, c_in, c_noise : Tensor
        Each with the shape and dtype of ``sigma``.

    Raises
    ------
    ValueError
        If ``sigma_data`` is not positive and finite (a denoiser's
        ``sigma_data`` buffer comes from its checkpoint).
    """
    sigma_data = float(sigma_data)
    if not (math.isfinite(sigma_data) and sigma_data > 0.0):
        raise ValueError(
            f"sigma_data must be positive and finite, got {sigma_data}; "
            "use the data standard deviation (0.5 for normalised data)."
        )
    sigma = torch.as_tensor(sigma)
    if not sigma.is_floating_point():
        sigma = sigma.to(torch.get_default_dtype())
    total_var = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / total_var
    c_out = sigma * sigma_data / total_var.sqrt()
    c_in = 1.0 / total_var.sqrt()
    c_noise = sigma.log() / 4.0
    return c_skip, c_out, c_in, c_noise


def sample_training_sigma(
    batch: int,
    *,
    P_mean: float = -1.2,
    P_std: float = 1.2,
    generator: Generators = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""Draw training noise levels :math:`\sigma = \exp(P_\text{mean} + P_\text{std} n)`, :math:`n \sim \mathcal N(0, 1)`.

    Parameters
    ----------
    batch : int
        Number of noise levels ``B`` (>= 1).
    P_mean, P_std : float, default -1.2 and 1.2
        Mean and (non-negative) standard deviation of :math:`\ln\sigma`.
    generator : torch.Generator or sequence of B generators, optional
        Random source: one generator draws the batch at once; one per sample
        draws each sample's level from its own (global RNG when ``None``).
    device : torch.device or str, optional
        Device of the result.
    dtype : torch.dtype, default torch.float32
        Dtype of the result.

    Returns
    -------
    Tensor
        Shape ``[B]``, positive.
    """
    n = randn_per_sample((batch,), generator, dtype=dtype)
    return (P_mean + P_std * n).exp().to(device)


def edm_loss_weight(sigma: Tensor, sigma_data: float = 0.5) -> Tensor:
    r"""EDM loss weight :math:`\lambda(\sigma) = (\sigma^2 + \sigma_d^2) / (\sigma \sigma_d)^2 = 1/c_\text{out}^2`.

    Parameters
    ----------
    sigma : Tensor
        Noise levels (any shape, positive).
    sigma_data : float, default 0.5
        Standard deviation of the data (positive).

    Returns
    -------
    Tensor
        Weights with the shape of ``sigma``.
    """
    sigma_data = float(sigma_data)
    sigma = torch.as_tensor(sigma)
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def edm_loss(
    denoise: Callable[[Tensor, Tensor], Tensor],
    y: Tensor,
    *,
    sigma: Tensor | None = None,
    noise: Tensor | None = None,
    P_mean: float = -1.2,
    P_std: float = 1.2,
    sigma_data: float = 0.5,
    generator: Generators = None,
    reduction: str = "mean",
) -> Tensor:
    r"""EDM denoising loss :math:`\lambda(\sigma)\,\lVert D(y + n; \sigma) - y \rVert^2`.

    With :math:`n = \sigma \epsilon`, :math:`\epsilon \sim \mathcal N(0, I)` and
    :math:`\ln\sigma \sim \mathcal N(P_\text{mean}, P_\text{std}^2)` per sample.

    Parameters
    ----------
    denoise : callable
        ``denoise(x, sigma) -> D(x; sigma)`` with ``x`` of the shape of ``y`` and
        ``sigma`` of shape ``[B]``; returns a tensor of the shape of ``x``.
    y : Tensor
        Clean targets ``[B, C, H, W]`` (any ``[B, ...]`` works).
    sigma : Tensor, optional
        Noise levels ``[B]``; drawn with :func:`sample_training_sigma` when
        ``None``.
    noise : Tensor, optional
        Standard normal noise with the shape of ``y``; drawn when ``None``.
        When both are drawn, ``sigma`` is drawn first, then ``noise``, from
        ``generator``.
    P_mean, P_std : float
        Log-normal noise-level distribution, see :func:`sample_training_sigma`.
    sigma_data : float, default 0.5
        Standard deviation of the data (sets the loss weight).
    generator : torch.Generator or sequence of B generators, optional
        Random source for ``sigma`` and ``noise`` (per sample with a sequence).
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        ``'none'`` returns the per-element weighted squared error.

    Returns
    -------
    Tensor
        Scalar, or a tensor of the shape of ``y`` for ``reduction='none'``.
    """
    batch = y.shape[0]
    if sigma is None:
        sigma = sample_training_sigma(batch, P_mean=P_mean, P_std=P_std, generator=generator, device=y.device,
                                      dtype=y.dtype)
    if noise is None:
        noise = randn_per_sample(tuple(y.shape), generator, dtype=y.dtype, device=y.device)
    sigma_b = sigma.reshape((batch,) + (1,) * (y.ndim - 1))
    D = denoise(y + noise * sigma_b, sigma)
    return _reduce(edm_loss_weight(sigma_b, sigma_data) * (D - y) ** 2, reduction)


def regression_loss(pred: Tensor, target: Tensor, scale: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Mean squared error of the regression net, optionally per-channel scaled.

    Parameters
    ----------
    pred, target : Tensor
        Prediction and target, identical shapes (the caller's networks and
        dataset agree on them).
    scale : Tensor, optional
        Divides the error (broadcast against it, e.g. ``[1, C, 1, 1]``): the
        error in units of each channel's typical hourly change, so that all
        channels weigh alike.
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        ``'none'`` returns the per-element squared error.

    Returns
    -------
    Tensor
        Scalar, or a tensor of the input shape for ``reduction='none'``.
    """
    if scale is None:
        return F.mse_loss(pred, target, reduction=reduction)
    return _reduce(((pred - target) / scale) ** 2, reduction)
