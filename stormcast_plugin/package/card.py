"""The model card (``README.md``) of an export."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from stormcast_plugin.package.spec import CHECKSUM_NAME, FORMAT_NAME, FORMAT_VERSION, StormCastPackage

__all__ = ["model_card"]


def _names(seq: Sequence[str]) -> str:
    return ", ".join(f"`{v}`" for v in seq) if seq else "(none)"


def _per_channel(variables: Sequence[str], values: torch.Tensor) -> str:
    return ", ".join(f"{v} {float(r):.3g}" for v, r in zip(variables, values))


def model_card(pkg: StormCastPackage) -> str:
    """Markdown description of ``pkg``: variables, grid, networks, sampler, usage, source and license."""
    info = pkg.info
    grid = pkg.grid
    h, w = (int(s) for s in grid.shape)
    lat, lon = np.asarray(grid.lat), np.asarray(grid.lon)
    rc = pkg.regression.config
    s = pkg.sampler
    if pkg.diffusion is not None:
        dc = pkg.diffusion.config
        diffusion = (
            f"EDM-preconditioned SongUNet, model_channels={dc.model_channels}, "
            f"channel_mult={list(dc.channel_mult)}, additive_pos_embed={dc.additive_pos_embed}, "
            f"sigma_data={float(pkg.diffusion.sigma_data):g}"
        )
        if pkg.diffusion.has_residual_scale:
            diffusion += (", residual scale per channel (the sampled residual is multiplied by it): "
                          + _per_channel(pkg.state_variables, pkg.diffusion.residual_scale))
    else:
        diffusion = "none (regression-only package)"
    regression_form = ""
    if getattr(pkg.regression, "residual", False):
        regression_form = "; predicts the hourly change, x(t) + s * F(...)"
        if bool(torch.any(pkg.regression.tendency_scale != 1)):
            regression_form += ", with s per channel: " + _per_channel(pkg.state_variables,
                                                                       pkg.regression.tendency_scale)
    memory = (f"\nEach member's initial noise is correlated from hour to hour (AR(1), e-folding time "
              f"{s.noise_memory_h:g} h)." if s.noise_memory_h > 0 else "")
    local_time = ("\n- Local time (2): `cos_local_time`, `sin_local_time` of the input time, after the invariants"
                  if pkg.local_time else "")
    return f"""# {info.get('name', 'stormcast')}

{info.get('description', '') or 'A StormCast model package.'}

StormCast emulates the 3 km NOAA HRRR model one hour at a time: a regression
U-Net predicts the mean next state from the current state, the ERA5-like
conditioning and the invariants; an EDM diffusion U-Net samples the residual.
This folder is a `stormcast_plugin` export (format {FORMAT_NAME} v{FORMAT_VERSION}).

## Variables

- State ({len(pkg.state_variables)}): {_names(pkg.state_variables)}
- Conditioning ({len(pkg.conditioning_variables)}): {_names(pkg.conditioning_variables)}
- Invariants ({len(pkg.invariant_names)}): {_names(pkg.invariant_names)}{local_time}

## Grid

`{getattr(grid, 'name', 'grid')}`: {h} x {w} points, latitude
{float(lat.min()):.2f} to {float(lat.max()):.2f}, longitude {float(lon.min()):.2f} to {float(lon.max()):.2f}.

## Networks

- Regression: SongUNet, model_channels={rc.model_channels}, channel_mult={list(rc.channel_mult)},
  num_blocks={rc.num_blocks}, {rc.in_channels} -> {rc.out_channels} channels{regression_form}
- Diffusion: {diffusion}

## Sampler

EDM stochastic Heun: num_steps={s.num_steps}, sigma_min={s.sigma_min:g}, sigma_max={s.sigma_max:g},
rho={s.rho:g}, S_churn={s.S_churn:g}, S_min={s.S_min:g}, S_max={s.S_max:g}, S_noise={s.S_noise:g}.{memory}

## Usage

```python
from stormcast_plugin import StormCast

model = StormCast.load_model("path/to/this/folder")
```

or `stormcast_plugin.load_package("path/to/this/folder")` for the raw parts.
The SHA-256 of every file, this one and the manifest included, is listed in
`{CHECKSUM_NAME}` (check a copy with `sha256sum -c {CHECKSUM_NAME}`) and
checked on load, so edit nothing here by hand.

## Source and license

- Source: {info.get('source', '') or 'unknown'}
- License: {info.get('license', '') or 'unknown'}
"""
