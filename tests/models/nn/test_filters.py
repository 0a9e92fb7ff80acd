"""The mean filter: its response to single waves, what it leaves alone, and the step's use of it."""

import math

import pytest
import torch

from stormcast_plugin.models.nn.filters import shapiro_filter


def _wave(wavelength: int, h: int = 24, w: int = 32, axis: int = -1) -> torch.Tensor:
    i = torch.arange(w if axis == -1 else h, dtype=torch.float64)
    line = torch.cos(2 * math.pi * i / wavelength)
    field = line.expand(h, w) if axis == -1 else line[:, None].expand(h, w)
    return field.reshape(1, 1, h, w).clone()


@pytest.mark.parametrize("wavelength", [2, 4, 8])
@pytest.mark.parametrize("axis", [-1, -2])
def test_each_wave_is_multiplied_by_its_response_away_from_the_edges(wavelength, axis):
    strength = 0.6
    x = _wave(wavelength, axis=axis)
    out = shapiro_filter(x, strength)
    response = 1 - strength * math.sin(math.pi / wavelength) ** 4  # k dx / 2 = pi / wavelength
    inner = (slice(None), slice(None), slice(3, -3), slice(3, -3))
    torch.testing.assert_close(out[inner], response * x[inner], rtol=0, atol=1e-12)


def test_known_responses_two_and_four_grid_lengths():
    x = _wave(2)
    assert shapiro_filter(x, 1.0)[..., 3:-3].abs().max() < 1e-12  # the 2dx wave is gone
    x4 = _wave(4)
    torch.testing.assert_close(shapiro_filter(x4, 1.0)[..., 3:-3], 0.75 * x4[..., 3:-3], rtol=0, atol=1e-12)


def test_constants_and_zero_strength_pass_unchanged_shape_and_dtype_kept():
    const = torch.full((2, 3, 10, 12), 7.5)
    torch.testing.assert_close(shapiro_filter(const, 0.8), const, rtol=0, atol=1e-6)
    x = torch.randn(2, 3, 10, 12, generator=torch.Generator().manual_seed(0))
    assert shapiro_filter(x, 0.0) is x
    five = torch.randn(2, 2, 3, 10, 12, dtype=torch.float64)
    out = shapiro_filter(five, 0.5)
    assert out.shape == five.shape and out.dtype == torch.float64


def test_it_removes_power_at_small_scales_only():
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(1, 1, 64, 64, generator=g, dtype=torch.float64)
    smooth = _wave(32, 64, 64) + _wave(32, 64, 64, axis=-2)
    out = shapiro_filter(smooth + noise, 0.5)
    assert (out - smooth).var() < 0.75 * noise.var()  # white noise loses much of its power
    torch.testing.assert_close(shapiro_filter(smooth, 0.5)[..., 4:-4, 4:-4], smooth[..., 4:-4, 4:-4],
                               rtol=0, atol=3e-3)  # a 32-point wave loses 0.0006 of its amplitude at most


def test_bad_strength_is_refused():
    with pytest.raises(ValueError, match=r"strength must lie in \[0, 1\], got 1.5"):
        shapiro_filter(torch.zeros(1, 1, 4, 4), 1.5)
