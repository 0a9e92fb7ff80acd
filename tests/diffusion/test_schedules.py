"""Tests for :func:`stormcast_plugin.diffusion.schedules.karras_sigmas`."""

from __future__ import annotations

import math

import pytest
import torch

from stormcast_plugin.diffusion import karras_sigmas


def reference_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float) -> list[float]:
    """Karras et al. (2022) Eq. 5 evaluated with Python floats, plus the trailing 0."""
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return [(a + i / (n - 1) * (b - a)) ** rho for i in range(n)] + [0.0]


@pytest.mark.parametrize(
    "n, sigma_min, sigma_max, rho",
    [
        (2, 0.002, 800.0, 7.0),
        (5, 0.002, 800.0, 7.0),
        (18, 0.002, 800.0, 7.0),
        (7, 0.01, 80.0, 3.0),
        (4, 0.5, 2.0, 1.0),  # rho = 1: linear spacing
    ],
)
def test_matches_hand_computed_formula(n, sigma_min, sigma_max, rho):
    got = karras_sigmas(n, sigma_min, sigma_max, rho)
    expected = reference_sigmas(n, sigma_min, sigma_max, rho)
    assert got.shape == (n + 1,)
    for g, e in zip(got.tolist(), expected):
        assert g == pytest.approx(e, rel=1e-12, abs=0.0)


def test_rho_one_is_linear_spacing():
    # Independent of the general formula: with rho = 1 the levels are equally spaced.
    got = karras_sigmas(5, 1.0, 3.0, 1.0).tolist()
    assert got == pytest.approx([3.0, 2.5, 2.0, 1.5, 1.0, 0.0], rel=1e-14, abs=1e-14)


def test_endpoints_trailing_zero_monotonic_and_dtype():
    s = karras_sigmas()  # defaults: 18 steps, 0.002 .. 800, rho 7
    assert s.dtype == torch.float64
    assert s.shape == (19,)
    assert s[0].item() == pytest.approx(800.0, rel=1e-14)
    assert s[-2].item() == pytest.approx(0.002, rel=1e-12)
    assert s[-1].item() == 0.0
    assert bool((s[1:] < s[:-1]).all()), "sigmas must be strictly decreasing"


def test_single_step_is_sigma_max_then_zero():
    assert karras_sigmas(1, 0.002, 80.0).tolist() == [80.0, 0.0]


def test_dtype_and_device_arguments():
    s = karras_sigmas(4, dtype=torch.float32, device="cpu")
    assert s.dtype == torch.float32
    assert s.device.type == "cpu"
    # float32 result is the float64 schedule rounded once
    torch.testing.assert_close(s, karras_sigmas(4).float(), rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_steps=0), r"num_steps must be >= 1, got 0"),
        (dict(num_steps=-3), r"num_steps must be >= 1, got -3"),
        (dict(num_steps=2.5), r"num_steps must be an integer, got 2.5"),
        (dict(num_steps=True), r"num_steps must be an integer"),
        (dict(sigma_min=0.0), r"sigma_min must be positive.*got 0.0"),
        (dict(sigma_min=-1.0), r"sigma_min must be positive.*got -1.0"),
        (dict(sigma_min=float("nan")), r"sigma_min must be positive"),
        (dict(sigma_max=float("inf")), r"sigma_max must be positive and finite"),
        (dict(sigma_min=5.0, sigma_max=5.0), r"sigma_min must be smaller than sigma_max"),
        (dict(sigma_min=10.0, sigma_max=1.0), r"sigma_min=10.0 >= sigma_max=1.0"),
        (dict(rho=0.0), r"rho must be positive.*got 0.0"),
        (dict(rho=-7.0), r"rho must be positive.*got -7.0"),
    ],
)
def test_bad_arguments_raise_informative_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        karras_sigmas(**kwargs)


def test_numpy_integer_num_steps_is_accepted():
    np = pytest.importorskip("numpy")
    assert karras_sigmas(np.int64(3)).shape == (4,)
    assert not math.isnan(karras_sigmas(np.int64(3))[1].item())
