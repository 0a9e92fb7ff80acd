"""The DDPM++ U-Net ("SongUNet") used by both StormCast networks.

The module tree and parameter names follow PhysicsNeMo's ``SongUNet`` so that
its state dicts load unchanged: encoder blocks ``enc.{r}x{r}_conv``,
``enc.{r}x{r}_down``, ``enc.{r}x{r}_block{i}``; decoder blocks
``dec.{r}x{r}_in0/in1``, ``dec.{r}x{r}_up``, ``dec.{r}x{r}_block{i}``,
``dec.{r}x{r}_aux_norm/aux_conv``, where ``r`` is the *first* image dimension
at that level (``512x512`` for a 512 x 640 grid).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stormcast_plugin.models.nn.layers import Conv2d, GroupNorm, Linear, PositionalEmbedding, UNetBlock

__all__ = ["SongUNet", "SongUNetConfig"]

_EMBEDDINGS = ("positional", "zero")


@dataclass(frozen=True)
class SongUNetConfig:
    """Architecture of a :class:`SongUNet`.

    Parameters
    ----------
    img_resolution : tuple of int
        Training grid ``(H, W)``. It names the blocks and sizes the additive
        spatial embedding; without that embedding the network runs on any grid
        whose sides are multiples of ``2 ** (len(channel_mult) - 1)``.
    in_channels, out_channels : int
        Input and output channel counts.
    model_channels : int
        Width of the first level (128 in StormCast).
    channel_mult : tuple of int
        Width multiplier per level; one level per entry.
    channel_mult_emb : int
        Embedding width as a multiple of ``model_channels``.
    channel_mult_noise : int
        Noise-embedding width as a multiple of ``model_channels``.
    num_blocks : int
        Residual blocks per encoder level (decoder levels get one more).
    attn_resolutions : tuple of int
        Levels (by first image dimension) whose blocks get self-attention.
    bottleneck_attention : bool
        Self-attention in the first bottleneck decoder block.
    dropout : float
        Dropout probability in residual blocks (active in training only).
    embedding_type : str
        ``"positional"`` (noise-level embedding, diffusion) or ``"zero"``
        (no conditioning, regression).
    additive_pos_embed : bool
        Learned ``[1, model_channels, H, W]`` embedding added after the first
        convolution.
    resample_filter : tuple of int
        Taps of the resampling filter.
    """

    img_resolution: tuple[int, int]
    in_channels: int
    out_channels: int
    model_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 2, 2, 2)
    channel_mult_emb: int = 4
    channel_mult_noise: int = 1
    num_blocks: int = 4
    attn_resolutions: tuple[int, ...] = ()
    bottleneck_attention: bool = True
    dropout: float = 0.10
    embedding_type: str = "positional"
    additive_pos_embed: bool = False
    resample_filter: tuple[int, ...] = (1, 1)

    def __post_init__(self) -> None:
        res = self.img_resolution
        if isinstance(res, int):
            res = (res, res)
        object.__setattr__(self, "img_resolution", tuple(int(r) for r in res))
        for name in ("channel_mult", "attn_resolutions", "resample_filter"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if len(self.img_resolution) != 2:
            raise ValueError(f"img_resolution {res!r} must be (H, W)")
        if self.embedding_type not in _EMBEDDINGS:
            raise ValueError(
                f"embedding_type {self.embedding_type!r} is not supported; use one of {_EMBEDDINGS}"
            )
        for name in ("in_channels", "out_channels", "model_channels", "num_blocks", "channel_mult_emb",
                     "channel_mult_noise"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(
                f"channel_mult {self.channel_mult} must have at least one level, each a positive "
                "multiplier, e.g. (1, 2, 2)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout {self.dropout!r} must be in [0, 1)")
        self.check_grid(self.img_resolution)

    @property
    def grid_multiple(self) -> int:
        """Grid sides must be multiples of this number."""
        return 2 ** (len(self.channel_mult) - 1)

    def check_grid(self, shape: tuple[int, int]) -> None:
        """Raise ValueError when the network cannot take a grid of ``shape``."""
        m = self.grid_multiple
        bad = [s for s in shape if s < 1 or s % m]
        if bad:
            near = [
                sorted({max(m, (s // m) * m), max(m, -(-s // m) * m)}) for s in shape
            ]
            raise ValueError(
                f"grid {tuple(shape)} does not fit a U-Net with {len(self.channel_mult)} levels: "
                f"each side must be a multiple of {m}; nearest valid sizes: "
                f"H in {near[0]}, W in {near[1]}"
            )
        if self.additive_pos_embed and tuple(shape) != self.img_resolution:
            raise ValueError(
                f"grid {tuple(shape)} differs from the training grid {self.img_resolution}, "
                "which the learned spatial embedding (additive_pos_embed) fixes; "
                "crop or pad the input to that grid"
            )

    def replace(self, **changes: Any) -> "SongUNetConfig":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dictionary (lists for tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SongUNetConfig":
        """Build from :meth:`to_dict` output; unknown keys raise ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown SongUNet config keys {unknown}; known keys: {sorted(names)}")
        return cls(**dict(d))


class SongUNet(nn.Module):
    """DDPM++ U-Net mapping ``[B, in, H, W]`` (and a noise level per sample)
    to ``[B, out, H, W]``."""

    def __init__(self, config: SongUNetConfig) -> None:
        super().__init__()
        self.config = c = config
        emb_channels = c.model_channels * c.channel_mult_emb
        noise_channels = c.model_channels * c.channel_mult_noise
        self.emb_channels = emb_channels
        block = dict(
            emb_channels=emb_channels,
            num_heads=1,
            dropout=c.dropout,
            skip_scale=math.sqrt(0.5),
            eps=1e-6,
            resample_filter=c.resample_filter,
        )
        if c.additive_pos_embed:
            h, w = c.img_resolution
            self.spatial_emb = nn.Parameter(torch.empty(1, c.model_channels, h, w))
            nn.init.trunc_normal_(self.spatial_emb, std=0.02)
        if c.embedding_type == "positional":
            self.map_noise = PositionalEmbedding(noise_channels, endpoint=True)
            self.map_layer0 = Linear(noise_channels, emb_channels)
            self.map_layer1 = Linear(emb_channels, emb_channels)

        first = c.img_resolution[0]
        self.enc = nn.ModuleDict()
        cout = c.in_channels
        for level, mult in enumerate(c.channel_mult):
            res = first >> level
            if level == 0:
                self.enc[f"{res}x{res}_conv"] = Conv2d(cout, c.model_channels, kernel=3)
                cout = c.model_channels
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **block)
            for i in range(c.num_blocks):
                cin, cout = cout, c.model_channels * mult
                self.enc[f"{res}x{res}_block{i}"] = UNetBlock(
                    cin, cout, attention=res in c.attn_resolutions, **block
                )
        skips = [blk.out_channels for blk in self.enc.values()]

        self.dec = nn.ModuleDict()
        last = len(c.channel_mult) - 1
        for level, mult in reversed(list(enumerate(c.channel_mult))):
            res = first >> level
            if level == last:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(
                    cout, cout, attention=c.bottleneck_attention, **block
                )
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **block)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **block)
            for i in range(c.num_blocks + 1):
                cin, cout = cout + skips.pop(), c.model_channels * mult
                attn = i == c.num_blocks and res in c.attn_resolutions
                self.dec[f"{res}x{res}_block{i}"] = UNetBlock(cin, cout, attention=attn, **block)
            if level == 0:
                self.dec[f"{res}x{res}_aux_norm"] = GroupNorm(cout, eps=1e-6)
                self.dec[f"{res}x{res}_aux_conv"] = Conv2d(
                    cout, c.out_channels, kernel=3, init_scale=1e-5
                )
        # Which decoder blocks take a skip connection (the "_block" ones).
        self._dec_concat = {name: "_block" in name for name in self.dec}
        if c.embedding_type == "zero":
            self._register_load_state_dict_pre_hook(self._drop_unused_embedding)

    @staticmethod
    def _drop_unused_embedding(state_dict, prefix, *args) -> None:
        # Older releases built the noise-embedding layers even for the zero
        # embedding (the official regression checkpoint carries them) but never
        # used them: the conditioning vector is zero whatever their weights.
        for key in [k for k in state_dict if k.startswith(prefix + "map_")]:
            del state_dict[key]

    def embedding(self, noise_labels: Tensor | None, dtype: torch.dtype, device: torch.device) -> Tensor:
        """Conditioning vector for the noise labels: ``[B, emb_channels]``, or
        ``[1, emb_channels]`` when one vector serves the whole batch (the zero
        embedding, or a single noise label); the blocks then fold it into a
        convolution bias. The zero embedding ignores ``noise_labels``."""
        if self.config.embedding_type == "zero":
            return torch.zeros(1, self.emb_channels, dtype=dtype, device=device)
        emb = self.map_noise(noise_labels.reshape(-1))
        emb = F.silu(self.map_layer0(emb))
        return F.silu(self.map_layer1(emb))

    def forward(self, x: Tensor, noise_labels: Tensor | None = None) -> Tensor:
        """Apply the U-Net.

        Parameters
        ----------
        x : Tensor
            ``[B, in_channels, H, W]`` (the callers,
            :class:`~stormcast_plugin.models.nn.stormcast_nets.StormCastNets`
            and training, check the channels).
        noise_labels : Tensor, optional
            ``[B]`` (or ``[1]``) noise conditioning ``c_noise``; ignored, and
            may be None, for the zero embedding.

        Raises
        ------
        ValueError
            If the grid of ``x`` does not fit the network (:meth:`SongUNetConfig.check_grid`).
        """
        c = self.config
        c.check_grid(tuple(x.shape[-2:]))
        emb = self.embedding(noise_labels, x.dtype, x.device)

        skips = []
        for name, blk in self.enc.items():
            if isinstance(blk, UNetBlock):
                x = blk(x, emb)
            else:
                x = blk(x)
                if c.additive_pos_embed:
                    x = x + self.spatial_emb.to(x.dtype)
            skips.append(x)

        out = None
        for name, blk in self.dec.items():
            if name.endswith("_aux_norm"):
                out = blk(x)
            elif name.endswith("_aux_conv"):
                out = blk(F.silu(out))
            else:
                if self._dec_concat[name]:
                    x = torch.cat([x, skips.pop()], dim=1)
                x = blk(x, emb)
        return out
