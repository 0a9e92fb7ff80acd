"""Tests for the named solvers (stormcast_plugin.diffusion.solvers) against known answers.

Gaussian data, x0 ~ N(MU, S0^2) per element, has the exact denoiser
D(x; sigma) = MU + S0^2 / (S0^2 + sigma^2) (x - MU). With it every solver step
is linear in the state and in the fresh noise, so the output of a solver is
Gaussian and its mean and variance follow from a short recursion
(:func:`exact_moments`, written here from the update formulas): the
implementation's samples must match those moments, and the moments must
approach N(MU, S0^2) as the number of steps grows, at the solver's order.
"""

from __future__ import annotations

import math

import pytest
import torch

from stormcast_plugin.diffusion import (
    SOLVERS,
    dpmpp_2m_sampler,
    dpmpp_2m_sde_sampler,
    edm_euler_sampler,
    edm_heun_sampler,
    edm_sample,
    euler_ancestral_sampler,
    get_solver,
    karras_sigmas,
    make_generators,
)

from tests.diffusion.test_samplers import (
    MU,
    N_SAMPLES,
    RHO,
    S0,
    SAMPLE_SHAPE,
    SIGMA_MAX,
    SIGMA_MIN,
    Z,
    exact_flow_map,
    gaussian_denoiser,
    scalar_heun_gain,
)

STOCHASTIC = ("euler_ancestral", "dpmpp_2m_sde")
ODE = ("heun", "euler", "dpmpp_2m")


class Counter:
    def __init__(self, fn=gaussian_denoiser):
        self.fn, self.sigmas = fn, []

    def __call__(self, x, sigma):
        self.sigmas.append(sigma[0].item())
        return self.fn(x, sigma)


def exact_moments(name: str, sigmas: list[float]) -> tuple[float, float]:
    """Mean and variance of a solver's output for Gaussian data, from x_0 = sigma_0 * N(0, 1).

    y = x - MU; the denoiser gives k_i y_i with k_i = S0^2 / (S0^2 + sigma_i^2).
    A step is y_{i+1} = A y_i + B y_{i-1} + s eps_i: track E[y_i] and the
    covariance of (y_i, y_{i-1}).
    """
    order = 1 if name in ("euler", "euler_ancestral") else 2
    sde = name in STOCHASTIC
    m, m_prev = -MU, 0.0
    v, v_prev, c = sigmas[0] ** 2, 0.0, 0.0  # Var y_i, Var y_{i-1}, Cov(y_i, y_{i-1})
    k = [S0**2 / (S0**2 + s**2) for s in sigmas]
    h_last = None
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        if s_next == 0.0:
            return MU + k[i] * m, k[i] ** 2 * v
        h = math.log(s / s_next)
        keep = (s_next / s) ** (2 if sde else 1)
        gain = 1.0 - keep
        A, B = keep + gain * k[i], 0.0
        if order == 2 and h_last is not None:
            w = h / (2.0 * h_last)  # 1 / (2 r)
            A += gain * w * k[i]
            B = -gain * w * k[i - 1]
        noise_var = s_next**2 * gain if sde else 0.0
        m, m_prev = A * m + B * m_prev, m
        v, v_prev, c = A * A * v + B * B * v_prev + 2 * A * B * c + noise_var, v, A * v + B * c
        h_last = h
    return MU + m, v


def exact_variance(name: str, n: int, sigma_max: float = SIGMA_MAX) -> float:
    sig = karras_sigmas(n, SIGMA_MIN, sigma_max, RHO).tolist()
    if name == "heun":
        return (scalar_heun_gain(sig) * sig[0]) ** 2
    return exact_moments(name, sig)[1]


# ----------------------------------------------------------------------------
# Registry and cost
# ----------------------------------------------------------------------------


def test_registry_names_and_functions():
    assert list(SOLVERS) == ["heun", "euler", "dpmpp_2m", "euler_ancestral", "dpmpp_2m_sde"]
    assert get_solver("heun").function is edm_heun_sampler
    assert get_solver("dpmpp_2m").function is dpmpp_2m_sampler
    assert get_solver("dpmpp_2m_sde").function is dpmpp_2m_sde_sampler
    assert [n for n, s in SOLVERS.items() if s.stochastic] == list(STOCHASTIC)


@pytest.mark.parametrize("name", [None, "dpm++", "Heun", 3])
def test_unknown_solver_is_refused_with_the_known_names(name):
    with pytest.raises(ValueError, match=r"unknown solver .*; known solvers: heun, euler, dpmpp_2m, "
                                         r"euler_ancestral, dpmpp_2m_sde"):
        get_solver(name)
    with pytest.raises(ValueError, match=r"unknown solver"):
        edm_sample(gaussian_denoiser, (1, 1, 2, 2), solver=name)


@pytest.mark.parametrize("name", list(SOLVERS))
@pytest.mark.parametrize("num_steps", [1, 2, 5, 11])
def test_reported_evaluations_are_the_denoiser_calls(name, num_steps):
    counter = Counter()
    edm_sample(counter, (2, 1, 2, 2), solver=name, num_steps=num_steps, generators=make_generators([0, 1]))
    assert len(counter.sigmas) == SOLVERS[name].evaluations(num_steps)
    assert SOLVERS[name].evaluations(num_steps) == (2 * num_steps - 1 if name == "heun" else num_steps)


@pytest.mark.parametrize("name", ["euler", "dpmpp_2m", "euler_ancestral", "dpmpp_2m_sde"])
def test_single_evaluation_solvers_see_each_noise_level_once(name):
    counter = Counter()
    edm_sample(counter, (1, 1, 2, 2), solver=name, num_steps=6, generators=make_generators([0]))
    assert counter.sigmas == pytest.approx(karras_sigmas(6)[:-1].tolist(), rel=1e-15)


def test_solver_options_are_checked():
    with pytest.raises(ValueError, match=r"solver 'dpmpp_2m' takes no options \['S_churn'\]; it takes \[\]"):
        edm_sample(gaussian_denoiser, (1, 1, 2, 2), solver="dpmpp_2m", S_churn=1.0)
    with pytest.raises(ValueError, match=r"S_noise must be >= 0, got -1"):
        dpmpp_2m_sde_sampler(gaussian_denoiser, torch.zeros(1, 1, 2, 2), karras_sigmas(3), S_noise=-1.0)
    with pytest.raises(ValueError, match=r"got 3 generators for a batch of 2"):
        dpmpp_2m_sampler(gaussian_denoiser, torch.zeros(2, 1, 2, 2), karras_sigmas(3),
                         generators=make_generators([0, 1, 2]))
    with pytest.raises(ValueError, match=r"non-increasing"):
        dpmpp_2m_sampler(gaussian_denoiser, torch.zeros(1, 1, 2, 2), torch.tensor([1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match=r"denoise returned shape"):
        euler_ancestral_sampler(lambda x, s: x[..., 0], torch.zeros(1, 1, 2, 2), karras_sigmas(2))


# ----------------------------------------------------------------------------
# Hand-computed steps (D(x) = x / 2)
# ----------------------------------------------------------------------------


def test_dpmpp_2m_hand_computed():
    # sigmas [4, 2, 1, 0], x0 = 4 n. Step 0 (first order, sigma ratio 1/2): x1 = x0/2 + (1/2)(x0/2) = 0.75 x0.
    # Step 1: h = h_last = log 2, r = 1: D1 = 0.375 x0, D1 + (D1 - D0)/2 = 0.3125 x0, x2 = 0.375 x0 + 0.15625 x0.
    # Step 2 lands on D2 = x2 / 2 = 0.265625 x0 = 1.0625 n.
    noise = torch.tensor([[[[1.0, -2.0]]], [[[0.5, 3.0]]]])
    out = dpmpp_2m_sampler(lambda x, s: 0.5 * x, noise, torch.tensor([4.0, 2.0, 1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(out, 1.0625 * noise.double(), rtol=1e-15, atol=0)


def test_euler_hand_computed_and_equal_to_heuns_first_stage():
    # x1 = 0.75 x0, x2 = 0.75 x1, x3 = x2 / 2 = 0.28125 x0 = 1.125 n.
    noise = torch.tensor([[[[1.0, -2.0]]]])
    sig = torch.tensor([4.0, 2.0, 1.0, 0.0], dtype=torch.float64)
    out = edm_euler_sampler(lambda x, s: 0.5 * x, noise, sig)
    torch.testing.assert_close(out, 1.125 * noise.double(), rtol=1e-15, atol=0)
    # One step to sigma = 0 is Heun's Euler step, for any denoiser.
    noise = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(4))
    one = torch.tensor([3.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(edm_euler_sampler(gaussian_denoiser, noise, one),
                               edm_heun_sampler(gaussian_denoiser, noise, one), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("name", STOCHASTIC)
def test_sde_first_step_hand_computed(name):
    # sigmas [2, 1, 0]: x1 = (1/4) x0 + (3/4) D(x0) + 1 * sqrt(3/4) eps = 0.625 x0 + sqrt(0.75) eps; x2 = x1 / 2.
    noise = torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(11))
    out = SOLVERS[name](lambda x, s: 0.5 * x, noise, torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64),
                        generators=make_generators([5, 6]), S_noise=1.0)
    eps = torch.stack([torch.randn((1, 3, 3), generator=torch.Generator().manual_seed(s), dtype=torch.float64)
                       for s in (5, 6)])
    torch.testing.assert_close(out, 0.5 * (0.625 * 2.0 * noise.double() + math.sqrt(0.75) * eps),
                               rtol=1e-13, atol=1e-13)


# ----------------------------------------------------------------------------
# Per-member generators
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", STOCHASTIC)
def test_member_result_depends_only_on_its_own_seed(name):
    shape = (1, 2, 3, 3)
    batch = edm_sample(gaussian_denoiser, (4, *shape[1:]), solver=name, num_steps=6,
                       generators=make_generators([1, 2, 3, 4]))
    alone = edm_sample(gaussian_denoiser, shape, solver=name, num_steps=6, generators=make_generators([3]))
    permuted = edm_sample(gaussian_denoiser, (4, *shape[1:]), solver=name, num_steps=6,
                          generators=make_generators([3, 1, 4, 2]))
    torch.testing.assert_close(batch[2], alone[0], rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(batch[2], permuted[0], rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(batch[0], permuted[1], rtol=1e-13, atol=1e-13)
    assert not torch.allclose(batch[0], batch[1])
    # The walk draws fresh noise: the result differs from the ODE's from the same initial noise.
    ode = edm_sample(gaussian_denoiser, shape, solver="dpmpp_2m", num_steps=6, generators=make_generators([3]))
    assert (alone - ode).abs().max() > 1e-3


# ----------------------------------------------------------------------------
# Gaussian data: the exact map and the exact moments
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name, order", [("euler", 1), ("dpmpp_2m", 2), ("heun", 2)])
def test_ode_solvers_converge_to_the_exact_map_at_their_order(name, order):
    noise = torch.randn(256, 1, 1, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = exact_flow_map(noise * SIGMA_MAX)
    errs = []
    for n in (32, 64, 128, 256):
        out = SOLVERS[name](gaussian_denoiser, noise, karras_sigmas(n))
        errs.append(((out - exact).abs() / (exact - MU).abs().clamp_min(1e-3)).max().item())
    rates = [math.log2(a / b) for a, b in zip(errs[:-1], errs[1:])]
    assert all(r > order - 0.25 for r in rates[1:]), (errs, rates)
    assert errs[-1] < (0.02 if order == 1 else 1e-3), errs


@pytest.mark.parametrize("name", ["euler", "dpmpp_2m"])
def test_ode_solvers_match_the_exact_moment_recursion(name):
    # The ODE output is an affine map of the standard normal noise: mean and variance follow exactly.
    sig = karras_sigmas(9)
    zero = SOLVERS[name](gaussian_denoiser, torch.zeros(1, 1, 1, 1), sig).item()
    gain = SOLVERS[name](gaussian_denoiser, torch.ones(1, 1, 1, 1), sig).item() - zero
    mean, var = exact_moments(name, sig.tolist())
    assert zero == pytest.approx(mean, rel=1e-12)
    assert gain**2 == pytest.approx(var, rel=1e-10)  # the noise is standard normal


@pytest.mark.parametrize("name", STOCHASTIC)
@pytest.mark.parametrize("num_steps", [4, 11])
def test_sde_samples_have_the_exact_moments_of_the_scheme(name, num_steps):
    sig = karras_sigmas(num_steps)
    mean, var = exact_moments(name, sig.tolist())
    out = edm_sample(gaussian_denoiser, (N_SAMPLES, *SAMPLE_SHAPE), solver=name, num_steps=num_steps,
                     generators=torch.Generator().manual_seed(5))
    n = out.numel()
    assert abs(out.mean().item() - mean) < Z * math.sqrt(var / n)
    assert abs(out.var().item() - var) < Z * var * math.sqrt(2 / (n - 1))


@pytest.mark.parametrize("name, order", [("euler_ancestral", 1), ("dpmpp_2m_sde", 2)])
def test_sde_moments_converge_to_the_data_distribution(name, order):
    # |Var / S0^2 - 1| falls with the number of steps, at about the solver's order.
    errs = [abs(exact_variance(name, n) / S0**2 - 1.0) for n in (64, 128, 256, 512)]
    rates = [math.log2(a / b) for a, b in zip(errs[:-1], errs[1:])]
    assert all(r > order - 0.3 for r in rates[1:]), (errs, rates)
    # ... and the sampler's own samples at many steps have the data's moments.
    out = edm_sample(gaussian_denoiser, (N_SAMPLES, *SAMPLE_SHAPE), solver=name, num_steps=512,
                     generators=torch.Generator().manual_seed(6))
    n = out.numel()
    assert abs(out.mean().item() - MU) < Z * S0 / math.sqrt(n)
    assert abs(out.var().item() - S0**2) < Z * S0**2 * math.sqrt(2 / (n - 1)) + errs[-1] * S0**2


def test_variance_ratios_at_typical_step_counts():
    # Where each solver stands for N(1.5, 0.7^2) data with the Karras schedule (sigma_max 800),
    # the numbers BENCHMARKS.md quotes. The reference Heun at 18 steps inflates the variance by 25 %.
    ratio = {(name, n): exact_variance(name, n) / S0**2
             for name, n in [("heun", 18), ("heun", 12), ("heun", 6), ("euler", 11), ("dpmpp_2m", 11),
                             ("dpmpp_2m", 18), ("euler_ancestral", 11), ("dpmpp_2m_sde", 11)]}
    assert ratio["heun", 18] == pytest.approx(1.252, abs=0.002)
    assert ratio["heun", 12] == pytest.approx(1.694, abs=0.002)
    assert ratio["heun", 6] == pytest.approx(11.86, abs=0.01)
    assert ratio["euler", 11] == pytest.approx(0.439, abs=0.002)
    assert ratio["dpmpp_2m", 11] == pytest.approx(1.340, abs=0.002)
    assert ratio["dpmpp_2m", 18] == pytest.approx(1.260, abs=0.002)
    assert ratio["euler_ancestral", 11] == pytest.approx(0.28, abs=0.01)
    assert ratio["dpmpp_2m_sde", 11] == pytest.approx(1.15, abs=0.01)
