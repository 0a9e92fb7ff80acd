"""Shared test fixtures: tiny networks and deterministic inputs."""

from __future__ import annotations

import pytest
import torch

# Test tensors are small: one thread per process avoids OpenMP contention
# between the xdist workers (and with anything else on a 2-core machine).
torch.set_num_threads(1)


@pytest.fixture
def tiny_config():
    """A factory for small SongUNet configurations."""
    from stormcast_plugin.models.nn import SongUNetConfig

    def make(in_channels=5, out_channels=3, **kw):
        base = dict(
            img_resolution=(16, 24),
            in_channels=in_channels,
            out_channels=out_channels,
            model_channels=16,
            channel_mult=(1, 2, 2),
            num_blocks=1,
            embedding_type="zero",
        )
        base.update(kw)
        return SongUNetConfig(**base)

    return make


def randomize_(module: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> torch.nn.Module:
    """Perturb every parameter so that no layer sits at its initial value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return module
