"""Scale-selective smoothing of a field on the model grid.

:func:`shapiro_filter` is the fourth-order filter that grid-point weather
models use to keep their shortest waves from growing: along each axis it
multiplies a wave of wavenumber ``k`` by

``1 - strength * sin(k dx / 2) ** (2 * order)``

which removes ``strength`` of the two-grid-length wave, ``strength / 4`` of
the four-grid-length wave (order 2) and leaves long waves alone (the eight-
grid-length wave loses ``0.021 * strength``). Outside the grid the field is
continued by its edge values (zero gradient), so constant fields pass
unchanged up to the edges.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["shapiro_filter"]


def _minus_quarter_laplacian(x: Tensor, axis: int) -> Tensor:
    """``-(x[i-1] - 2 x[i] + x[i+1]) / 4`` along ``axis`` (-2 or -1), edges replicated."""
    pad = (0, 0, 1, 1) if axis == -2 else (1, 1, 0, 0)
    p = F.pad(x, pad, mode="replicate")
    if axis == -2:
        return -(p[..., :-2, :] - 2 * p[..., 1:-1, :] + p[..., 2:, :]) / 4
    return -(p[..., :-2] - 2 * p[..., 1:-1] + p[..., 2:]) / 4


def shapiro_filter(x: Tensor, strength: float, order: int = 2) -> Tensor:
    """Damp the shortest waves of ``x`` ``[..., H, W]`` (at least 3 dimensions).

    Parameters
    ----------
    x : Tensor
        Fields, the last two dimensions the grid.
    strength : float
        Share of the two-grid-length wave removed per application, 0 to 1
        (0 returns ``x``).
    order : int
        The filter's order ``n``: the response is ``1 - strength * sin^(2n)``.

    Returns
    -------
    Tensor
        The filtered fields, in ``x``'s shape and dtype.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"filter strength must lie in [0, 1], got {strength!r}")
    if strength == 0.0:
        return x
    shape = x.shape
    out = x.reshape(-1, 1, *shape[-2:]) if x.dim() != 4 else x
    for axis in (-2, -1):
        y = out
        for _ in range(order):
            y = _minus_quarter_laplacian(y, axis)
        out = out - strength * y
    return out.reshape(shape)
