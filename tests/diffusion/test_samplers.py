"""Tests for the EDM Heun sampler and per-sample random number generation.

Most correctness tests use Gaussian data, x0 ~ N(MU, S0^2) per element, whose
exact denoiser is analytic:

    D(x; sigma) = (S0^2 x + sigma^2 MU) / (S0^2 + sigma^2).

With it the probability-flow ODE has the closed-form solution
x(sigma) - MU = (x(sigma_max) - MU) * sqrt(S0^2 + sigma^2) / sqrt(S0^2 + sigma_max^2).
"""

from __future__ import annotations

import math

import pytest
import torch

from stormcast_plugin.diffusion import (
    edm_heun_sampler,
    edm_sample,
    karras_sigmas,
    make_generators,
    randn_per_sample,
)

MU, S0 = 1.5, 0.7
SIGMA_MIN, SIGMA_MAX, RHO = 0.002, 800.0, 7.0
# 32000 i.i.d. elements for statistics; kept below torch's intra-op parallel
# grain size (32768) so the tests stay fast on a busy 2-core machine.
N_SAMPLES, SAMPLE_SHAPE = 2000, (1, 4, 4)
N_ELEM = N_SAMPLES * math.prod(SAMPLE_SHAPE)
# 5 standard errors: a false failure has probability ~6e-7 per check.
Z = 5.0


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    s2 = sigma.reshape(-1, *([1] * (x.ndim - 1))) ** 2
    return (S0**2 * x + s2 * MU) / (S0**2 + s2)


class Recorder:
    """Wraps a denoiser and records every call."""

    def __init__(self, fn=gaussian_denoiser, out_dtype=None):
        self.fn, self.out_dtype, self.calls = fn, out_dtype, []

    def __call__(self, x, sigma):
        self.calls.append((x.dtype, sigma.dtype, tuple(sigma.shape), sigma.tolist()))
        out = self.fn(x, sigma)
        return out if self.out_dtype is None else out.to(self.out_dtype)


def exact_flow_map(x_T: torch.Tensor) -> torch.Tensor:
    """Exact ODE solution from sigma_max down to sigma = 0."""
    return MU + (x_T - MU) * S0 / math.sqrt(S0**2 + SIGMA_MAX**2)


def gaussian_noise(n=N_SAMPLES, seed=0):
    return torch.randn((n, *SAMPLE_SHAPE), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------
# Hand-computed small cases
# ----------------------------------------------------------------------------


def test_two_steps_hand_computed():
    # sigmas [2, 1, 0], D(x) = x / 2, so d = (x - x/2)/sigma = x / (2 sigma).
    # Step 0: d = x0/4; Euler x = 0.75 x0; d' = 0.375 x0; x1 = x0 - (0.25 + 0.375)/2 x0 = 0.6875 x0.
    # Step 1 (sigma_next = 0, Euler only): d = x1/2; x2 = x1 - x1/2 = 0.34375 x0 = 0.6875 noise.
    noise = torch.tensor([[[[1.0, -2.0]]], [[[0.5, 3.0]]]])
    rec = Recorder(lambda x, s: 0.5 * x)
    out = edm_heun_sampler(rec, noise, torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(out, 0.6875 * noise.double(), rtol=1e-15, atol=0)
    assert [c[3] for c in rec.calls] == [[2.0, 2.0], [1.0, 1.0], [1.0, 1.0]]


def test_single_churned_step_hand_computed():
    # N = 1, S_churn = 0.1 -> gamma = 0.1, sigma_hat = 2.2,
    # x_hat = 2 noise + sqrt(2.2^2 - 2^2) eps, and with D(x) = x/2 and sigma_next = 0:
    # x1 = x_hat + (0 - 2.2) * (x_hat/2)/2.2 = x_hat / 2.
    noise = torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(11))
    rec = Recorder(lambda x, s: 0.5 * x)
    out = edm_heun_sampler(
        rec, noise, torch.tensor([2.0, 0.0], dtype=torch.float64),
        S_churn=0.1, generators=make_generators([5, 6]),
    )
    eps = torch.stack(
        [torch.randn((1, 3, 3), generator=torch.Generator().manual_seed(s), dtype=torch.float64) for s in (5, 6)]
    )
    expected = 0.5 * (2.0 * noise.double() + math.sqrt(2.2**2 - 4.0) * eps)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert rec.calls[0][3] == pytest.approx([2.2, 2.2], rel=1e-15)


def test_gamma_is_clamped_to_sqrt2_minus_1():
    rec = Recorder(lambda x, s: 0.5 * x)
    edm_heun_sampler(rec, torch.zeros(1, 1, 1, 1), torch.tensor([2.0, 0.0], dtype=torch.float64), S_churn=100.0)
    assert rec.calls[0][3][0] == pytest.approx(2.0 * math.sqrt(2.0), rel=1e-14)


def test_churn_only_inside_S_min_S_max():
    sigmas = karras_sigmas(4, SIGMA_MIN, SIGMA_MAX, RHO)
    s = sigmas.tolist()
    # window contains only sigma_1; gamma = min(S_churn/N, sqrt2 - 1) = min(1/4, 0.414) = 0.25
    rec = Recorder()
    edm_heun_sampler(rec, torch.randn(1, 1, 2, 2), sigmas, S_churn=1.0, S_min=s[1] * 0.99, S_max=s[1] * 1.01)
    seen = [c[3][0] for c in rec.calls]
    # calls: (sigma_0, sigma_1), (sigma_hat_1, sigma_2), (sigma_2, sigma_3), (sigma_3)
    expected = [s[0], s[1], 1.25 * s[1], s[2], s[2], s[3], s[3]]
    assert seen == pytest.approx(expected, rel=1e-14)


# ----------------------------------------------------------------------------
# Call counts, dtypes, callback
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("num_steps", [1, 2, 5, 18])
@pytest.mark.parametrize("S_churn", [0.0, 10.0])
def test_makes_exactly_2N_minus_1_denoiser_calls(num_steps, S_churn):
    rec = Recorder()
    edm_sample(rec, (2, 1, 2, 2), num_steps=num_steps, S_churn=S_churn, generators=make_generators([0, 1]))
    assert len(rec.calls) == 2 * num_steps - 1


def test_denoiser_receives_float64_state_and_batched_sigma():
    rec = Recorder(out_dtype=torch.float32)  # output is cast back to the state dtype
    noise = torch.randn(3, 2, 4, 4)  # float32 input noise
    out = edm_heun_sampler(rec, noise, karras_sigmas(5), S_churn=5.0)
    assert out.dtype == torch.float64
    assert out.shape == noise.shape
    assert {c[0] for c in rec.calls} == {torch.float64}
    assert {c[1] for c in rec.calls} == {torch.float64}
    assert {c[2] for c in rec.calls} == {(3,)}


def test_state_dtype_float32():
    rec = Recorder()
    out = edm_sample(rec, (2, 1, 3, 3), num_steps=4, state_dtype=torch.float32)
    assert out.dtype == torch.float32
    assert {c[0] for c in rec.calls} == {torch.float32}
    assert {c[1] for c in rec.calls} == {torch.float32}


def test_callback_called_once_per_step_with_current_state():
    seen = []
    noise = torch.randn(2, 1, 2, 2)
    sigmas = karras_sigmas(6)
    edm_heun_sampler(gaussian_denoiser, noise, sigmas, callback=lambda i, s, x: seen.append((i, s, x.clone())))
    assert [i for i, _, _ in seen] == list(range(6))
    assert [s for _, s, _ in seen] == pytest.approx(sigmas[:-1].tolist(), rel=1e-15)
    torch.testing.assert_close(seen[0][2], noise.double() * sigmas[0].item(), rtol=0, atol=0)


def test_edm_sample_initial_noise_is_torch_randn_per_seed():
    seeds, shape = [7, 123, 7], (3, 2, 3, 5)
    first = {}
    edm_sample(
        gaussian_denoiser, shape, num_steps=3, generators=make_generators(seeds),
        callback=lambda i, s, x: first.setdefault(i, x.clone()),
    )
    sigma_0 = karras_sigmas(3)[0].item()  # sigma_max up to rounding of (sigma_max^(1/rho))^rho
    assert sigma_0 == pytest.approx(SIGMA_MAX, rel=1e-14)
    for b, seed in enumerate(seeds):
        eps = torch.randn(shape[1:], generator=torch.Generator().manual_seed(seed))  # float32 draw
        torch.testing.assert_close(first[0][b], eps.double() * sigma_0, rtol=0, atol=0)


# ----------------------------------------------------------------------------
# Per-sample seeding
# ----------------------------------------------------------------------------


def test_member_result_depends_only_on_its_own_seed():
    kwargs = dict(num_steps=8, S_churn=20.0, S_min=0.01, S_max=100.0)
    shape = (1, 2, 3, 3)
    batch = edm_sample(gaussian_denoiser, (4, *shape[1:]), generators=make_generators([1, 2, 3, 4]), **kwargs)
    alone = edm_sample(gaussian_denoiser, shape, generators=make_generators([3]), **kwargs)
    permuted = edm_sample(gaussian_denoiser, (4, *shape[1:]), generators=make_generators([3, 1, 4, 2]), **kwargs)
    torch.testing.assert_close(batch[2], alone[0], rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(batch[2], permuted[0], rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(batch[0], permuted[1], rtol=1e-13, atol=1e-13)
    assert not torch.allclose(batch[0], batch[1]), "different seeds must give different samples"


def test_randn_per_sample_modes():
    shape = (3, 2, 4)
    per = randn_per_sample(shape, make_generators([9, 8, 7]), dtype=torch.float64)
    assert per.shape == shape and per.dtype == torch.float64
    for b, seed in enumerate([9, 8, 7]):
        ref = torch.randn(shape[1:], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        assert torch.equal(per[b], ref)
    single = randn_per_sample(shape, torch.Generator().manual_seed(5))
    assert torch.equal(single, torch.randn(shape, generator=torch.Generator().manual_seed(5)))
    torch.manual_seed(42)
    a = randn_per_sample(shape, None)
    torch.manual_seed(42)
    assert torch.equal(a, torch.randn(shape))


def test_make_generators_is_reproducible():
    g1, g2 = make_generators([3, 3])
    assert torch.equal(torch.randn(5, generator=g1), torch.randn(5, generator=g2))
    with pytest.raises(ValueError, match=r"seeds\[1\] must be an integer, got 1.5"):
        make_generators([1, 1.5])


def test_churn_is_reproducible_and_changes_the_result():
    kwargs = dict(num_steps=6, S_churn=10.0)
    a = edm_sample(gaussian_denoiser, (2, 1, 3, 3), generators=make_generators([0, 1]), **kwargs)
    b = edm_sample(gaussian_denoiser, (2, 1, 3, 3), generators=make_generators([0, 1]), **kwargs)
    det = edm_sample(gaussian_denoiser, (2, 1, 3, 3), generators=make_generators([0, 1]), num_steps=6)
    assert torch.equal(a, b)
    assert not torch.allclose(a, det)


# ----------------------------------------------------------------------------
# Gaussian data: pathwise accuracy and sample statistics
# ----------------------------------------------------------------------------


def scalar_heun_gain(sigmas: list[float]) -> float:
    """Deterministic Heun map for y = x - MU with the Gaussian denoiser, in Python floats.

    For Gaussian data, (x - D)/sigma = sigma y / (S0^2 + sigma^2), linear in y,
    so the whole solve is x_final - MU = g * (x_0 - MU) with a scalar gain g.
    """
    y = 1.0
    for a, b in zip(sigmas[:-1], sigmas[1:]):
        d = a * y / (S0**2 + a**2)
        y_euler = y + (b - a) * d
        if b != 0.0:
            d2 = b * y_euler / (S0**2 + b**2)
            y = y + (b - a) * (d + d2) / 2
        else:
            y = y_euler
    return y


def test_deterministic_18_steps_matches_scalar_reference_and_statistics():
    noise = gaussian_noise()
    sigma_list = [
        (SIGMA_MAX ** (1 / RHO) + i / 17 * (SIGMA_MIN ** (1 / RHO) - SIGMA_MAX ** (1 / RHO))) ** RHO
        for i in range(18)
    ] + [0.0]
    g = scalar_heun_gain(sigma_list)
    x0 = noise.double() * sigma_list[0]
    out = edm_sample(gaussian_denoiser, noise.shape, num_steps=18, generators=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, MU + g * (x0 - MU), rtol=1e-10, atol=1e-10)

    # Statistics.  The map is affine, so the mean is MU up to the start bias
    # -g*MU (x_0 has mean 0, not MU), and the variance is (g*SIGMA_MAX)^2.
    # 18 Heun steps inflate the Gaussian's std by the discretisation factor
    # g*SIGMA_MAX/S0 (about 1.12 here), which we bound separately.
    std_ratio = g * SIGMA_MAX / S0
    assert 1.0 < std_ratio < 1.2, f"18-step discretisation error larger than expected: {std_ratio}"
    mean, var = out.mean().item(), out.var().item()
    se_mean = g * SIGMA_MAX / math.sqrt(N_ELEM)
    se_var = (g * SIGMA_MAX) ** 2 * math.sqrt(2 / (N_ELEM - 1))
    assert abs(mean - MU) < Z * se_mean + abs(g * MU), (mean, se_mean)
    assert abs(var - (g * SIGMA_MAX) ** 2) < Z * se_var, (var, se_var)


def test_deterministic_solver_converges_to_exact_flow_map_at_second_order():
    noise = gaussian_noise(n=256, seed=1).double()
    errs = []
    for n in (32, 64, 128):
        out = edm_heun_sampler(gaussian_denoiser, noise, karras_sigmas(n))
        exact = exact_flow_map(noise * SIGMA_MAX)
        errs.append(((out - exact).abs() / (exact - MU).abs().clamp_min(1e-3)).max().item())
    assert errs[-1] < 5e-3, errs
    # Heun is second order: doubling the steps should cut the error by ~4x.
    assert errs[0] / errs[1] > 3.0 and errs[1] / errs[2] > 3.0, errs


def _check_gaussian_statistics(out: torch.Tensor, var_allowance: float):
    """Mean and variance within Z standard errors of N(MU, S0^2).

    Standard errors for n i.i.d. N(MU, S0^2) elements: S0/sqrt(n) for the
    mean (0.0039 here) and S0^2 sqrt(2/(n-1)) for the variance (0.79 %
    relative).  ``var_allowance`` adds the relative discretisation bias measured
    for the step count used (well below the statistical tolerance).
    """
    n = out.numel()
    mean, var = out.mean().item(), out.var().item()
    se_mean = S0 / math.sqrt(n)
    se_var = S0**2 * math.sqrt(2 / (n - 1))
    assert abs(mean - MU) < Z * se_mean, f"mean {mean} vs {MU} (SE {se_mean})"
    assert abs(var - S0**2) < Z * se_var + var_allowance * S0**2, f"var {var} vs {S0**2} (SE {se_var})"


def test_deterministic_many_steps_reproduces_data_distribution():
    out = edm_sample(gaussian_denoiser, (N_SAMPLES, *SAMPLE_SHAPE), num_steps=256,
                     generators=torch.Generator().manual_seed(2))
    # 256 steps: std error vs the exact map < 0.1 % (see convergence test) -> var bias < 0.5 %.
    _check_gaussian_statistics(out, var_allowance=0.005)


def test_stochastic_sampler_reproduces_data_distribution():
    out = edm_sample(gaussian_denoiser, (N_SAMPLES, *SAMPLE_SHAPE), num_steps=256,
                     S_churn=40.0, S_min=0.05, S_max=50.0, generators=torch.Generator().manual_seed(3))
    # Churned steps: gamma = min(40/256, sqrt2 - 1) = 0.156 while 0.05 <= sigma_i <= 50.
    _check_gaussian_statistics(out, var_allowance=0.01)


# ----------------------------------------------------------------------------
# Argument validation
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sigmas, match",
    [
        (torch.tensor([1.0]), r"at least 2 noise levels"),
        (torch.ones(2, 2), r"1-D tensor"),
        (torch.tensor([1.0, 2.0, 0.0]), r"non-increasing"),
        (torch.tensor([1.0, -1.0]), r"positive except a final 0"),
        (torch.tensor([float("nan"), 0.0]), r"finite"),
    ],
)
def test_bad_sigmas_raise(sigmas, match):
    with pytest.raises(ValueError, match=match):
        edm_heun_sampler(gaussian_denoiser, torch.zeros(1, 1, 2, 2), sigmas)


def test_other_bad_arguments_raise():
    noise, sigmas = torch.zeros(2, 1, 2, 2), karras_sigmas(3)
    with pytest.raises(ValueError, match=r"got 3 generators for a batch of 2"):
        edm_heun_sampler(gaussian_denoiser, noise, sigmas, S_churn=1.0, generators=make_generators([0, 1, 2]))
    with pytest.raises(ValueError, match=r"got 1 generators for a batch of shape\[0\]=2"):
        edm_sample(gaussian_denoiser, (2, 1, 2, 2), generators=make_generators([0]))
    with pytest.raises(ValueError, match=r"S_churn must be >= 0, got -1.0"):
        edm_heun_sampler(gaussian_denoiser, noise, sigmas, S_churn=-1.0)
    with pytest.raises(ValueError, match=r"denoise returned shape \(2, 1, 2\) for an input of shape \(2, 1, 2, 2\)"):
        edm_heun_sampler(lambda x, s: x[..., 0], noise, sigmas)
