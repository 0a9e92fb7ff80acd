"""Tests for EDM preconditioning, noise-level sampling and training losses."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from stormcast_plugin.diffusion import (
    edm_loss,
    edm_loss_weight,
    edm_precondition_coefficients,
    regression_loss,
    sample_training_sigma,
)

Z = 5.0  # statistical checks use 5 standard errors


# ----------------------------------------------------------------------------
# Preconditioning coefficients and loss weight
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("sd", [0.5, 1.3])
def test_coefficients_at_sigma_equal_sigma_data(sd):
    c_skip, c_out, c_in, c_noise = edm_precondition_coefficients(torch.tensor([sd], dtype=torch.float64), sd)
    assert c_skip.item() == pytest.approx(0.5, rel=1e-14)
    assert c_out.item() == pytest.approx(sd / math.sqrt(2), rel=1e-14)
    assert c_in.item() == pytest.approx(1 / (sd * math.sqrt(2)), rel=1e-14)
    assert c_noise.item() == pytest.approx(math.log(sd) / 4, rel=1e-14)


@pytest.mark.parametrize("sd", [0.5, 1.3])
def test_coefficients_match_table_1(sd):
    sigmas = [0.002, 0.1, 0.5, 1.0, 7.3, 80.0, 800.0]
    c_skip, c_out, c_in, c_noise = edm_precondition_coefficients(torch.tensor(sigmas, dtype=torch.float64), sd)
    for k, s in enumerate(sigmas):
        assert c_skip[k].item() == pytest.approx(sd * sd / (s * s + sd * sd), rel=1e-13)
        assert c_out[k].item() == pytest.approx(s * sd / math.sqrt(s * s + sd * sd), rel=1e-13)
        assert c_in[k].item() == pytest.approx(1.0 / math.sqrt(sd * sd + s * s), rel=1e-13)
        assert c_noise[k].item() == pytest.approx(0.25 * math.log(s), rel=1e-13, abs=1e-15)


def test_coefficients_give_unit_variance_network_input_and_target():
    # For y with std sd and n with std sigma: c_in (y + n) has unit variance, and the
    # effective network target (y - c_skip (y + n)) / c_out has unit variance.
    sd = 0.5
    sigma = torch.logspace(-3, 3, 25, dtype=torch.float64)
    c_skip, c_out, c_in, _ = edm_precondition_coefficients(sigma, sd)
    torch.testing.assert_close(c_in**2 * (sd**2 + sigma**2), torch.ones_like(sigma))
    target_var = ((1 - c_skip) ** 2 * sd**2 + c_skip**2 * sigma**2) / c_out**2
    torch.testing.assert_close(target_var, torch.ones_like(sigma))
    # and the loss weight is 1 / c_out^2
    torch.testing.assert_close(edm_loss_weight(sigma, sd) * c_out**2, torch.ones_like(sigma))


def test_coefficients_preserve_shape_and_dtype_and_accept_floats():
    sigma = torch.rand(2, 1, 1, 1) + 0.1
    for c in edm_precondition_coefficients(sigma):
        assert c.shape == sigma.shape and c.dtype == torch.float32
    c_skip, *_ = edm_precondition_coefficients(2.0, sigma_data=1.0)
    assert c_skip.item() == pytest.approx(1.0 / 5.0)


def test_loss_weight_formula():
    for s, sd in [(0.3, 0.5), (1.0, 0.5), (12.0, 2.0)]:
        got = edm_loss_weight(torch.tensor(s, dtype=torch.float64), sd).item()
        assert got == pytest.approx((s * s + sd * sd) / (s * sd) ** 2, rel=1e-14)


@pytest.mark.parametrize("bad", [0.0, -0.5, float("nan")])
def test_bad_sigma_data_raises(bad):
    with pytest.raises(ValueError, match="sigma_data must be positive"):
        edm_precondition_coefficients(torch.ones(1), bad)


# ----------------------------------------------------------------------------
# Training noise levels
# ----------------------------------------------------------------------------


def test_sample_training_sigma_is_lognormal_from_generator():
    sigma = sample_training_sigma(6, P_mean=-1.2, P_std=1.2, generator=torch.Generator().manual_seed(4))
    n = torch.randn(6, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(sigma, torch.exp(-1.2 + 1.2 * n))
    assert sigma.shape == (6,) and sigma.dtype == torch.float32 and bool((sigma > 0).all())
    assert sample_training_sigma(3, dtype=torch.float64).dtype == torch.float64


def test_sample_training_sigma_statistics():
    # ln(sigma) ~ N(P_mean, P_std^2); SE of the mean P_std/sqrt(n), of the std ~ P_std/sqrt(2n).
    n, P_mean, P_std = 20000, 0.4, 0.8
    log_sigma = sample_training_sigma(
        n, P_mean=P_mean, P_std=P_std, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    ).log()
    assert abs(log_sigma.mean().item() - P_mean) < Z * P_std / math.sqrt(n)
    assert abs(log_sigma.std().item() - P_std) < Z * P_std / math.sqrt(2 * n)


# ----------------------------------------------------------------------------
# EDM loss
# ----------------------------------------------------------------------------


def _hand_edm_loss(y, sigma, noise, sd):
    """Element-wise EDM loss for the denoiser D(x, s) = 0.3 x + s, with Python loops."""
    out = torch.empty_like(y)
    for b in range(y.shape[0]):
        s = sigma[b].item()
        w = (s * s + sd * sd) / (s * sd) ** 2
        for idx in itertools.product(*(range(n) for n in y.shape[1:])):
            yy = y[(b, *idx)].item()
            x = yy + s * noise[(b, *idx)].item()
            D = 0.3 * x + s
            out[(b, *idx)] = w * (D - yy) ** 2
    return out


def test_edm_loss_matches_hand_computation_for_all_reductions():
    y = torch.tensor([[[[0.1, -0.4], [1.2, 0.0]]], [[[2.0, -1.0], [0.5, 0.3]]]], dtype=torch.float64)
    noise = torch.tensor([[[[1.0, 0.5], [-0.2, 2.0]]], [[[-1.0, 0.0], [0.7, -0.3]]]], dtype=torch.float64)
    sigma = torch.tensor([0.5, 2.0], dtype=torch.float64)
    seen = []

    def denoise(x, s):
        seen.append(s.clone())
        return 0.3 * x + s.view(-1, 1, 1, 1)

    expected = _hand_edm_loss(y, sigma, noise, sd=0.7)
    none = edm_loss(denoise, y, sigma=sigma, noise=noise, sigma_data=0.7, reduction="none")
    torch.testing.assert_close(none, expected, rtol=1e-13, atol=0)
    torch.testing.assert_close(seen[0], sigma, rtol=0, atol=0)
    mean = edm_loss(denoise, y, sigma=sigma, noise=noise, sigma_data=0.7)
    total = edm_loss(denoise, y, sigma=sigma, noise=noise, sigma_data=0.7, reduction="sum")
    assert mean.ndim == 0 and total.ndim == 0
    assert mean.item() == pytest.approx(sum(expected.flatten().tolist()) / 8, rel=1e-13)
    assert total.item() == pytest.approx(sum(expected.flatten().tolist()), rel=1e-13)


def test_edm_loss_draws_sigma_then_noise_from_generator():
    y = torch.randn(3, 2, 4, 4)
    g = torch.Generator().manual_seed(8)
    sigma = torch.exp(-1.2 + 1.2 * torch.randn(3, generator=g))
    noise = torch.randn(y.shape, generator=g)
    denoise = lambda x, s: 0.5 * x  # noqa: E731
    expected = edm_loss(denoise, y, sigma=sigma, noise=noise, reduction="none")
    got = edm_loss(denoise, y, generator=torch.Generator().manual_seed(8), reduction="none")
    torch.testing.assert_close(got, expected)


def test_edm_loss_with_exact_gaussian_denoiser_matches_analytic_expectation():
    # y ~ N(mu, s0^2); the exact denoiser gives D - y ~ N(0, v) with posterior variance
    # v = s0^2 sigma^2 / (s0^2 + sigma^2), so E[loss] = weight(sigma) * v.
    # (D - y)^2 / v ~ chi^2_1 (mean 1, var 2): SE of the mean ratio is sqrt(2 / n).
    mu, s0, sd = 0.3, 0.8, 0.5
    sigmas = [0.05, 0.5, 2.0, 20.0]
    # 8000 elements per noise level; 32000 in all stays below torch's intra-op
    # parallel grain size, which keeps the test fast on a busy machine.
    per = 80 * 100
    g = torch.Generator().manual_seed(0)
    y = mu + s0 * torch.randn(len(sigmas), 1, 80, 100, generator=g, dtype=torch.float64)
    sigma = torch.tensor(sigmas, dtype=torch.float64)

    def exact(x, s):
        s2 = s.view(-1, 1, 1, 1) ** 2
        return (s0**2 * x + s2 * mu) / (s0**2 + s2)

    loss = edm_loss(exact, y, sigma=sigma, sigma_data=sd, generator=g, reduction="none")
    for b, s in enumerate(sigmas):
        expected = (s * s + sd * sd) / (s * sd) ** 2 * s0**2 * s**2 / (s0**2 + s**2)
        ratio = loss[b].mean().item() / expected
        assert abs(ratio - 1.0) < Z * math.sqrt(2 / per), (s, ratio)


# ----------------------------------------------------------------------------
# Regression loss
# ----------------------------------------------------------------------------


def test_regression_loss_reductions():
    pred = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    target = torch.tensor([[0.0, 2.5], [1.0, 1.0]])
    sq = [[1.0, 0.25], [4.0, 4.0]]
    torch.testing.assert_close(regression_loss(pred, target, reduction="none"), torch.tensor(sq))
    assert regression_loss(pred, target).item() == pytest.approx(9.25 / 4)
    assert regression_loss(pred, target, reduction="sum").item() == pytest.approx(9.25)
