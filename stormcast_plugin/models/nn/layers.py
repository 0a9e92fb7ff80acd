"""Building blocks of the DDPM++ U-Net (Song et al. 2021, Karras et al. 2022).

Every layer keeps the parameter and buffer names of PhysicsNeMo's layers
(``weight``, ``bias``, ``resample_filter``, ``freqs``, ``norm0``, ``conv0``,
``affine``, ``attn.qkv`` ...), so state dicts of StormCast checkpoints load
with strict key matching. The arithmetic is the same; where a cheaper kernel
gives the same numbers (average pooling for the 2x2 box filter, nearest
upsampling for its transpose, the fused native group norm) it is used.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Conv2d",
    "GroupNorm",
    "Linear",
    "PositionalEmbedding",
    "UNetAttention",
    "UNetBlock",
    "group_count",
    "init_weight",
]


# Each mode: (variance numerator, uses fan_out, uniform draw).
_INIT_MODES = {
    "xavier_uniform": (6.0, True, True),
    "xavier_normal": (2.0, True, False),
    "kaiming_uniform": (3.0, False, True),
    "kaiming_normal": (1.0, False, False),
}


def init_weight(
    shape: Sequence[int], fan_in: int, fan_out: int, mode: str = "xavier_uniform"
) -> Tensor:
    """Random initial weights with the given fan-in/fan-out scaling.

    Parameters
    ----------
    shape : sequence of int
        Shape of the tensor to draw.
    fan_in, fan_out : int
        Number of inputs and outputs feeding one unit.
    mode : str
        ``xavier_uniform``, ``xavier_normal``, ``kaiming_uniform`` or
        ``kaiming_normal`` (a KeyError names any other).
    """
    num, xavier, uniform = _INIT_MODES[mode]
    scale = math.sqrt(num / (fan_in + fan_out if xavier else fan_in))
    return scale * (torch.rand(*shape) * 2 - 1 if uniform else torch.randn(*shape))


class Linear(nn.Module):
    """Fully connected layer ``y = x W^T + b``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        init_mode: str = "xavier_uniform",
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(
            init_weight([out_features, in_features], in_features, out_features, init_mode)
            * init_scale
        )
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.to(x.dtype)
        b = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, w, b)


class Conv2d(nn.Module):
    """2-D convolution with optional 2x resampling before it.

    Down-sampling filters the input with the normalised outer product of
    ``resample_filter`` at stride 2; up-sampling applies its transpose. With
    the StormCast filter ``[1, 1]`` these are exactly 2x2 average pooling and
    nearest-neighbour up-sampling, which are used directly.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts.
    kernel : int
        Square kernel size; 0 means resampling only (no weights).
    bias : bool
        Whether the convolution has a bias.
    up, down : bool
        Resample by 2 before the convolution (at most one of them).
    resample_filter : sequence of int
        1-D taps of the separable resampling filter.
    init_mode, init_scale : str, float
        Weight initialisation for new networks.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        bias: bool = True,
        up: bool = False,
        down: bool = False,
        resample_filter: Sequence[int] = (1, 1),
        init_mode: str = "xavier_uniform",
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.up = up
        self.down = down
        fan_in, fan_out = in_channels * kernel * kernel, out_channels * kernel * kernel
        self.weight = (
            nn.Parameter(
                init_weight([out_channels, in_channels, kernel, kernel], fan_in, fan_out, init_mode)
                * init_scale
            )
            if kernel
            else None
        )
        self.bias = nn.Parameter(torch.zeros(out_channels)) if kernel and bias else None
        taps = torch.as_tensor(list(resample_filter), dtype=torch.float32)
        filt = torch.outer(taps, taps)[None, None] / taps.sum().square()
        self.register_buffer("resample_filter", filt if (up or down) else None)
        # The 2x2 box filter is plain average pooling / nearest up-sampling.
        self._box = list(resample_filter) == [1, 1]

    def _resample(self, x: Tensor) -> Tensor:
        if not (self.up or self.down):
            return x
        if self._box:
            if self.down:
                return F.avg_pool2d(x, 2)
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        f = self.resample_filter.to(x.dtype)
        pad = (f.shape[-1] - 1) // 2
        c = x.shape[1]
        if self.down:
            return F.conv2d(x, f.tile([c, 1, 1, 1]), groups=c, stride=2, padding=pad)
        return F.conv_transpose2d(x, (f * 4).tile([c, 1, 1, 1]), groups=c, stride=2, padding=pad)

    def forward(self, x: Tensor, extra_bias: Tensor | None = None, scale: float = 1.0) -> Tensor:
        """Convolve ``x``.

        ``extra_bias`` (``[out_channels]``) is added to the bias, and the
        output is multiplied by ``scale``, inside the convolution (through the
        weights) instead of as separate passes over the output; both need a
        kernel (a resampling-only Conv2d takes neither).
        """
        if self.weight is None:
            return self._resample(x)
        w = self.weight.to(x.dtype)
        b = self.bias
        if extra_bias is not None:
            b = extra_bias if b is None else b + extra_bias
        b = b.to(x.dtype) if b is not None else None
        if scale != 1:
            w = w * scale
            b = b * scale if b is not None else None
        if self.up and self._box and w.shape[-1] in (1, 3):
            return self._up_conv(x, w, b)
        return F.conv2d(self._resample(x), w, b, padding=w.shape[-1] // 2)

    @staticmethod
    def _up_conv(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        """Nearest 2x up-sampling then the convolution, done at the low resolution.

        A 1x1 convolution commutes with nearest up-sampling, so it runs first
        (4x fewer operations). A 3x3 convolution of the up-sampled image is a
        stride-2 transposed convolution of the original with a 4x4 kernel:
        along each axis, output row ``2i + a`` sees rows ``i - 1, i, i`` of the
        input (``a = 0``) or ``i, i, i + 1`` (``a = 1``), so the kernel taps
        are ``[w1, w0 + w1, w-1 + w0, w-1]`` (2.25x fewer operations, same
        result up to rounding).
        """
        if w.shape[-1] == 1:
            return F.interpolate(F.conv2d(x, w, b), scale_factor=2.0, mode="nearest")
        taps = _UP_TAPS.to(device=w.device, dtype=w.dtype)
        kernel = torch.einsum("ka,oiab,lb->iokl", taps, w, taps)
        return F.conv_transpose2d(x, kernel, b, stride=2, padding=1)


# Rows: taps of the 4-tap transposed kernel; columns: the 3x3 kernel's taps -1, 0, 1.
_UP_TAPS = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def group_count(num_channels: int, num_groups: int = 32, min_channels_per_group: int = 4) -> int:
    """Number of groups used for ``num_channels``: at most ``num_groups``,
    with at least ``min_channels_per_group`` channels per group."""
    groups = min(num_groups, -(-num_channels // min_channels_per_group))
    if num_channels % groups:
        raise ValueError(
            f"{num_channels} channels cannot be split into {groups} equal groups; "
            "choose model_channels * channel_mult divisible by 4 (and by 32 above 128)"
        )
    return groups


class GroupNorm(nn.Module):
    """Group normalisation with an optional fused SiLU.

    In training mode it is the standard (biased variance) group norm. In
    evaluation mode the variance is the unbiased sample variance over each
    group, which is how PhysicsNeMo's inference path normalises; the result
    is computed with the fused native kernel by rescaling eps and the weight
    (``var_u = var_b * n/(n-1)``), so outputs match that reference.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6, silu: bool = False) -> None:
        super().__init__()
        self.num_groups = group_count(num_channels)
        self.eps = eps
        self.silu = silu
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight
        eps = self.eps
        if not self.training:
            n = (x.shape[1] // self.num_groups) * x.shape[2] * x.shape[3]
            if n > 1:
                ratio = n / (n - 1)
                eps = eps / ratio
                w = w / math.sqrt(ratio)
        # Under autocast group_norm runs in float32; keep its parameters there.
        if not torch.is_autocast_enabled(x.device.type):
            w, b = w.to(x.dtype), self.bias.to(x.dtype)
        else:
            b = self.bias
        y = F.group_norm(x, self.num_groups, w, b, eps)
        return F.silu(y) if self.silu else y


class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding of a scalar (the noise level) per sample.

    Returns ``[sin(x f_k), cos(x f_k)]`` with geometric frequencies
    ``f_k = (1/max_positions)^(k / (C/2 - endpoint))``.
    """

    def __init__(self, num_channels: int, max_positions: int = 10000, endpoint: bool = True) -> None:
        super().__init__()
        half = num_channels // 2
        k = torch.arange(half, dtype=torch.float32) / (half - (1 if endpoint else 0))
        self.register_buffer("freqs", (1.0 / max_positions) ** k)
        self._register_load_state_dict_pre_hook(self._fill_freqs)

    def _fill_freqs(self, state_dict, prefix, *args) -> None:
        # Checkpoints written before the frequencies became a buffer lack them.
        state_dict.setdefault(prefix + "freqs", self.freqs.clone())

    def forward(self, x: Tensor) -> Tensor:
        arg = torch.outer(x, self.freqs.to(x.dtype))
        return torch.cat([arg.sin(), arg.cos()], dim=1)


class UNetAttention(nn.Module):
    """Multi-head self-attention over all pixels, added back to the input
    (``num_heads`` divides ``channels``)."""

    def __init__(self, channels: int, num_heads: int = 1, eps: float = 1e-6) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm = GroupNorm(channels, eps=eps)
        self.qkv = Conv2d(channels, channels * 3, kernel=1, init_scale=math.sqrt(0.2))
        self.proj = Conv2d(channels, channels, kernel=1, init_scale=1e-5)

    def forward(self, x: Tensor, scale: float = 1.0) -> Tensor:
        """``(x + attention(x)) * scale``."""
        b, c, h, w = x.shape
        heads = self.num_heads
        # qkv channels are laid out as [head, channel, (q, k, v)].
        qkv = self.qkv(self.norm(x)).reshape(b, heads, c // heads, 3, h * w)
        q, k, v = qkv.permute(3, 0, 1, 4, 2).unbind(0)  # each [b, heads, hw, c/heads]
        a = F.scaled_dot_product_attention(q, k, v)
        a = a.transpose(-1, -2).reshape(b, c, h, w)
        return self.proj(a, scale=scale).add_(x, alpha=scale)


class UNetBlock(nn.Module):
    """Residual block: GN-SiLU-conv, add the embedding, GN-SiLU-dropout-conv,
    skip connection, optional self-attention; each residual sum is scaled by
    ``skip_scale``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts.
    emb_channels : int
        Width of the noise embedding vector.
    up, down : bool
        Resample by 2 in the first convolution and the skip.
    attention : bool
        Append a self-attention layer.
    num_heads : int
        Attention heads.
    dropout : float
        Dropout probability before the second convolution.
    skip_scale : float
        Factor applied after each residual sum (1/sqrt(2) in DDPM++).
    eps : float
        Group norm epsilon.
    resample_filter : sequence of int
        Resampling filter taps.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        up: bool = False,
        down: bool = False,
        attention: bool = False,
        num_heads: int = 1,
        dropout: float = 0.0,
        skip_scale: float = 1.0,
        eps: float = 1e-6,
        resample_filter: Sequence[int] = (1, 1),
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.dropout = dropout
        self.skip_scale = skip_scale
        self.norm0 = GroupNorm(in_channels, eps=eps, silu=True)
        self.conv0 = Conv2d(
            in_channels, out_channels, kernel=3, up=up, down=down, resample_filter=resample_filter
        )
        self.affine = Linear(emb_channels, out_channels)
        self.norm1 = GroupNorm(out_channels, eps=eps, silu=True)
        self.conv1 = Conv2d(out_channels, out_channels, kernel=3, init_scale=1e-5)
        self.skip = None
        if in_channels != out_channels or up or down:
            self.skip = Conv2d(
                in_channels, out_channels, kernel=1, up=up, down=down, resample_filter=resample_filter
            )
        self.attn = UNetAttention(out_channels, num_heads, eps) if attention else None
        self._register_load_state_dict_pre_hook(self._rename_legacy_attention)

    @staticmethod
    def _rename_legacy_attention(state_dict, prefix, *args) -> None:
        # Older checkpoints kept the attention weights on the block itself.
        for old, new in (("norm2", "attn.norm"), ("qkv", "attn.qkv"), ("proj", "attn.proj")):
            for leaf in ("weight", "bias"):
                key = f"{prefix}{old}.{leaf}"
                if key in state_dict:
                    state_dict[f"{prefix}{new}.{leaf}"] = state_dict.pop(key)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        orig = x
        # The adds and scalings work in place on fresh convolution outputs,
        # which autograd does not keep for the backward pass: no extra copies.
        if emb.shape[0] == 1:  # one embedding for the whole batch: a bias of the convolution
            x = self.conv0(self.norm0(x), extra_bias=self.affine(emb)[0])
        else:
            x = self.conv0(self.norm0(x))
            x = x.add_(self.affine(emb).to(x.dtype)[:, :, None, None])
        x = self.norm1(x)
        # (conv1(x) + skip) * s, with s applied through the convolutions' weights
        s = self.skip_scale
        x = self.conv1(F.dropout(x, p=self.dropout, training=self.training), scale=s)
        if self.skip is not None:
            x = x.add_(self.skip(orig, scale=s))
        else:
            x = x.add_(orig, alpha=s)
        if self.attn is not None:
            x = self.attn(x, scale=s)
        return x
