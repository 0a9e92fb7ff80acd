"""StormCast's two networks and the paper presets.

* :class:`RegressionNet` predicts the next hour's mean state from
  ``cat[state, conditioning, invariants]``; a SongUNet whose noise label is
  always zero (state-dict compatible with PhysicsNeMo's ``StormCastUNet``).
* :class:`EDMPrecond` is the EDM-preconditioned denoiser of the residual,
  ``D(x; sigma) = c_skip x + c_out F(cat[c_in x, condition], c_noise)``
  (state-dict compatible with PhysicsNeMo's ``EDMPrecond``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from stormcast_plugin.diffusion.losses import edm_precondition_coefficients
from stormcast_plugin.models.nn.songunet import SongUNet, SongUNetConfig

__all__ = [
    "EDMPrecond",
    "RegressionNet",
    "paper_diffusion_config",
    "paper_regression_config",
    "count_parameters",
]


class RegressionNet(nn.Module):
    """Deterministic next-state network: ``r = F(x)`` with no noise input.

    Parameters
    ----------
    config : SongUNetConfig
        Architecture. ``embedding_type`` is ``"zero"`` (StormCast's nets: no
        conditioning vector) or ``"positional"`` (PhysicsNeMo's
        ``StormCastUNet`` default: the zero noise label still passes through
        the embedding layers, so their weights shape a constant conditioning
        vector).
    residual : bool
        Predict the hourly change instead: ``r = x_state + F(x)``, where
        ``x_state`` is the first ``out_channels`` input channels (the input is
        ``cat[state, conditioning, invariants]``). StormCast's official nets
        predict the full state (``False``); the residual form learns small
        models much faster, as persistence is then the starting point.

    Notes
    -----
    A residual net has the buffer ``tendency_scale`` (``[out]``, ones by
    default): ``r = x_state + tendency_scale * F(x)``. Set to the per-channel
    RMS of the hourly change, it lets ``F`` work in units of each channel's
    typical change (and the training loss weighs the channels alike).
    """

    def __init__(self, config: SongUNetConfig, residual: bool = False) -> None:
        super().__init__()
        if residual and config.in_channels < config.out_channels:
            raise ValueError("a residual regression net needs the state among its inputs "
                             f"(in_channels {config.in_channels} < out_channels {config.out_channels})")
        self.residual = bool(residual)
        self.model = SongUNet(config)
        if self.residual:
            self.register_buffer("tendency_scale", torch.ones(config.out_channels))
            self._register_load_state_dict_pre_hook(self._fill_scale)

    def _fill_scale(self, state_dict, prefix, *args) -> None:
        state_dict.setdefault(prefix + "tendency_scale", torch.ones_like(self.tendency_scale))

    @property
    def config(self) -> SongUNetConfig:
        return self.model.config

    def set_tendency_scale(self, scale: Tensor) -> None:
        """Set the per-channel scale of a residual net's predicted change
        (only a net built with ``residual=True`` has one)."""
        self.tendency_scale.copy_(_positive_scale(scale, self.config.out_channels, "tendency_scale")
                                  .to(self.tendency_scale.device))

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in, H, W]`` -> ``[B, out, H, W]`` (float32 result)."""
        # PhysicsNeMo feeds a zero noise label per sample; one label serves the
        # whole batch alike (the blocks then fold the embedding into a bias).
        noise = None if self.config.embedding_type == "zero" else torch.zeros(1, device=x.device)
        out = self.model(x, noise).float()
        if self.residual:
            out = out * self.tendency_scale.reshape(1, -1, 1, 1) + x[:, : self.config.out_channels].float()
        return out


def _positive_scale(scale: Tensor, channels: int, name: str) -> Tensor:
    scale = torch.as_tensor(scale, dtype=torch.float32).reshape(-1)
    if scale.numel() != channels:
        raise ValueError(f"{name} has {scale.numel()} values; the network has {channels} channels")
    if not (torch.isfinite(scale).all() and (scale > 0).all()):
        raise ValueError(f"{name} must be finite and positive, got {scale.tolist()}")
    return scale


class EDMPrecond(nn.Module):
    """EDM preconditioned denoiser around a SongUNet.

    Parameters
    ----------
    config : SongUNetConfig
        Architecture of the inner network; ``in_channels`` counts the noisy
        image and the condition channels.
    sigma_data : float
        Expected standard deviation of the data (0.5 in StormCast).

    Notes
    -----
    The buffer ``residual_scale`` (``[C]``, ones by default, as in the
    reference) is the per-channel scale of the residual the denoiser models:
    the network samples ``d`` and the physical residual (in normalised state
    units) is ``residual_scale * d``. Training on the residual divided by
    ``RMS / sigma_data`` per channel gives every channel the same weight in
    the EDM loss and the spread the preconditioning assumes, so smooth fields
    whose hourly residual is tiny are not drowned in sampler noise. Files
    without the buffer load with ones.
    """

    def __init__(self, config: SongUNetConfig, sigma_data: float = 0.5) -> None:
        super().__init__()
        if config.embedding_type == "zero":
            raise ValueError("a diffusion denoiser needs a noise embedding; use embedding_type='positional'")
        self.model = SongUNet(config)
        # A buffer, as in PhysicsNeMo's state dicts; older files lack it.
        self.register_buffer("sigma_data", torch.tensor(float(sigma_data)))
        self.register_buffer("residual_scale", torch.ones(config.out_channels))
        self._register_load_state_dict_pre_hook(self._fill_buffers)

    def _fill_buffers(self, state_dict, prefix, *args) -> None:
        state_dict.setdefault(prefix + "sigma_data", self.sigma_data.clone())
        state_dict.setdefault(prefix + "residual_scale", torch.ones_like(self.residual_scale))

    def set_residual_scale(self, scale: Tensor) -> None:
        """Set the per-channel residual scale (``[C]``, finite and positive)."""
        self.residual_scale.copy_(_positive_scale(scale, self.img_channels, "residual_scale")
                                  .to(self.residual_scale.device))

    @property
    def has_residual_scale(self) -> bool:
        """True when ``residual_scale`` differs from ones (not expressible in the official layout)."""
        return not bool(torch.all(self.residual_scale == 1))

    @property
    def config(self) -> SongUNetConfig:
        return self.model.config

    @property
    def img_channels(self) -> int:
        """Channels of the denoised image."""
        return self.model.config.out_channels

    @property
    def condition_channels(self) -> int:
        """Channels expected in ``condition``."""
        return self.model.config.in_channels - self.model.config.out_channels

    def forward(self, x: Tensor, sigma: Tensor, condition: Tensor | None = None) -> Tensor:
        """Denoise ``x`` at noise level ``sigma``.

        Parameters
        ----------
        x : Tensor
            Noisy image ``[B, C, H, W]``.
        sigma : Tensor
            Noise level per sample ``[B]`` (or a scalar for all).
        condition : Tensor, optional
            ``[B, condition_channels, H, W]`` concatenated after ``c_in x``.

        Returns
        -------
        Tensor
            ``D(x; sigma)`` in float32.
        """
        x = x.float()
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1, 1, 1, 1)
        c_skip, c_out, c_in, c_noise = edm_precondition_coefficients(sigma, float(self.sigma_data))
        arg = c_in * x
        if condition is not None:
            arg = torch.cat([arg, condition.to(arg.dtype)], dim=1)
        f_x = self.model(arg, c_noise.flatten())
        return c_skip * x + c_out * f_x.float()


def paper_regression_config(
    img_resolution: tuple[int, int] = (512, 640), in_channels: int = 127, out_channels: int = 99
) -> SongUNetConfig:
    """The StormCast paper's regression network (about 78.9 M parameters)."""
    return SongUNetConfig(
        img_resolution=img_resolution,
        in_channels=in_channels,
        out_channels=out_channels,
        embedding_type="zero",
    )


def paper_diffusion_config(
    img_resolution: tuple[int, int] = (512, 640),
    in_channels: int = 299,
    out_channels: int = 99,
    additive_pos_embed: bool = True,
) -> SongUNetConfig:
    """The StormCast paper's diffusion network (about 121.1 M parameters with
    the additive spatial embedding)."""
    return SongUNetConfig(
        img_resolution=img_resolution,
        in_channels=in_channels,
        out_channels=out_channels,
        embedding_type="positional",
        additive_pos_embed=additive_pos_embed,
    )


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
