"""Per-member random numbers for the diffusion samplers.

Randomness is drawn *per sample*: with one :class:`torch.Generator` per batch
member, a member's noise depends only on its own generator, so its result does
not change with batch size or position in the batch. The solvers that consume
it are in :mod:`stormcast_plugin.diffusion.solvers`; the noise levels they walk
come from :mod:`stormcast_plugin.diffusion.schedules`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = [
    "Denoiser",
    "Generators",
    "make_generators",
    "randn_per_sample",
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
