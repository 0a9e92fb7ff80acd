import pytest
import torch

from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions, StormCastNets
from stormcast_plugin.diffusion.samplers import make_generators
from stormcast_plugin.models.nn import EDMPrecond, RegressionNet
from tests.conftest import randomize_

C, E, I = 3, 2, 2  # state, conditioning, invariant channels
FAST = SamplerOptions(num_steps=3)


@pytest.fixture
def nets(tiny_config):
    reg = randomize_(RegressionNet(tiny_config(in_channels=C + E + I, out_channels=C)), seed=1)
    dif = randomize_(
        EDMPrecond(tiny_config(in_channels=C + C + C + I, out_channels=C, embedding_type="positional")), seed=2
    )
    return StormCastNets(reg, dif)


def _inputs(b=2, h=16, w=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, C, h, w, generator=g), torch.randn(b, E, h, w, generator=g),
            torch.randn(I, h, w, generator=g))


def test_step_is_regression_plus_sampled_residual(nets):
    x, e, inv = _inputs()
    mean = nets.regression(torch.cat([x, e, inv.expand(2, -1, -1, -1)], 1))
    out_reg = nets.step(x, e, inv, regression_only=True)
    torch.testing.assert_close(out_reg, mean)
    out = nets.step(x, e, inv, sampler=FAST, generators=make_generators([5, 6]))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert (out - mean).abs().mean() > 1e-3  # a residual was added


def test_residual_scale_multiplies_the_sampled_residual(nets):
    x, e, inv = _inputs()
    mean = nets.step(x, e, inv, regression_only=True)
    plain = nets.step(x, e, inv, sampler=FAST, generators=make_generators([5, 6]))
    scale = torch.tensor([0.1, 2.0, 0.5])
    nets.diffusion.set_residual_scale(scale)
    scaled = nets.step(x, e, inv, sampler=FAST, generators=make_generators([5, 6]))
    torch.testing.assert_close(scaled - mean, scale.reshape(1, -1, 1, 1) * (plain - mean), rtol=1e-4, atol=1e-5)


def test_network_evaluation_count(nets):
    calls = {"reg": 0, "dif": 0}
    nets.regression.register_forward_hook(lambda *a: calls.__setitem__("reg", calls["reg"] + 1))
    nets.diffusion.register_forward_hook(lambda *a: calls.__setitem__("dif", calls["dif"] + 1))
    x, e, inv = _inputs(b=1)
    nets.step(x, e, inv, sampler=SamplerOptions(num_steps=18), generators=make_generators([0]))
    assert calls == {"reg": 1, "dif": 35}  # 36 evaluations for one StormCast hour


def test_member_result_independent_of_batch(nets):
    x, e, inv = _inputs(b=3)
    batch = nets.step(x, e, inv, sampler=FAST, generators=make_generators([10, 11, 12]))
    alone = nets.step(x[2:], e[2:], inv, sampler=FAST, generators=make_generators([12]))
    # Same noise; only float32 rounding differs (kernels vary with batch size).
    scale = batch[2:].abs().max().item()
    torch.testing.assert_close(batch[2:], alone, rtol=0, atol=1e-3 * scale)
    again = nets.step(x, e, inv, sampler=FAST, generators=make_generators([10, 11, 12]))
    torch.testing.assert_close(batch, again, rtol=0, atol=0)
    other = nets.step(x, e, inv, sampler=FAST, generators=make_generators([10, 11, 99]))
    assert (other[2] - batch[2]).abs().max() > 1e-4


def test_bfloat16_autocast_close_to_float32(nets):
    x, e, inv = _inputs(b=1)
    ref = nets.step(x, e, inv, sampler=FAST, generators=make_generators([3]))
    low = nets.step(x, e, inv, sampler=FAST, generators=make_generators([3]), autocast_dtype=torch.bfloat16)
    assert low.dtype == torch.float32
    assert (low - ref).abs().max() < 0.1 * ref.abs().max()


def test_inputs_are_not_modified(nets):
    x, e, inv = _inputs()
    copies = [t.clone() for t in (x, e, inv)]
    nets.step(x, e, inv, sampler=FAST, generators=make_generators([1, 2]))
    for a, b in zip((x, e, inv), copies):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda x, e, i: (x[:, :2], e, i), r"state has shape \(2, 2, 16, 24\); expected \[batch, 3, H, W\]"),
        (lambda x, e, i: (x, e[:, :1], i), r"conditioning has shape .* expected \[batch, 2, H, W\]"),
        (lambda x, e, i: (x, e, i[:1]), r"invariants has shape \(1, 1, 16, 24\); expected \[batch, 2, H, W\]"),
        (lambda x, e, i: (x.round().long(), e, i), r"state has dtype torch.int64; expected a floating dtype"),
        (lambda x, e, i: (x.index_put((torch.tensor([0]), torch.tensor([1])), torch.tensor(float("nan"))), e, i),
         r"state contains NaN or infinite values in channels \[1\]"),
        (lambda x, e, i: (x[..., :10, :], e[..., :10, :], i[..., :10, :]), r"multiple of 4.*nearest valid sizes"),
        (lambda x, e, i: (x, e[:1], i), r"conditioning shape .* does not match the state"),
    ],
)
def test_bad_inputs_are_named(nets, mutate, match):
    x, e, inv = mutate(*_inputs())
    with pytest.raises(ValueError, match=match):
        nets.step(x, e, inv, sampler=FAST, generators=make_generators(list(range(x.shape[0]))))


def test_mismatched_networks_rejected(tiny_config):
    reg = RegressionNet(tiny_config(in_channels=7, out_channels=3))
    dif = EDMPrecond(tiny_config(in_channels=10, out_channels=4, embedding_type="positional"))
    with pytest.raises(ValueError, match="do not belong together"):
        StormCastNets(reg, dif)


def test_sampler_options_validation():
    with pytest.raises(ValueError, match="num_steps"):
        SamplerOptions(num_steps=0)
    with pytest.raises(ValueError, match="unknown sampler options"):
        SamplerOptions.from_dict({"steps": 3})
    assert SamplerOptions.from_dict({"num_steps": "5", "S_churn": 1}).num_steps == 5


# ---------------------------------------------------------------------------- inputs and losses
def test_network_inputs_are_the_documented_concatenations(nets):
    x, e, inv = _inputs(b=2)
    clock = torch.randn(2, 1, 16, 24)
    r = torch.randn(2, C, 16, 24)
    both = inv.expand(2, -1, -1, -1)
    torch.testing.assert_close(nets.regression_input(x, e, inv), torch.cat([x, e, both], 1), rtol=0, atol=0)
    torch.testing.assert_close(nets.regression_input(x, e, inv[None], clock), torch.cat([x, e, both, clock], 1),
                               rtol=0, atol=0)
    torch.testing.assert_close(nets.denoiser_condition(x, r, both, clock), torch.cat([x, r, both, clock], 1),
                               rtol=0, atol=0)


def test_extra_channels_follow_the_invariants_in_the_step(nets):
    x, e, inv = _inputs(b=2)
    split = dict(invariants=inv[:1], extra=inv[1:].expand(2, -1, -1, -1))
    whole = nets.step(x, e, inv, sampler=FAST, generators=make_generators([1, 2]))
    torch.testing.assert_close(nets.step(x, e, **split, sampler=FAST, generators=make_generators([1, 2])), whole,
                               rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"invariants has shape \(1, 2, 16, 24\); expected \[batch, 1, H, W\]"):
        nets.step(x, e, inv, extra=split["extra"], sampler=FAST)
    with pytest.raises(ValueError, match=r"extra shape \(1, 1, 16, 24\) does not match the state"):
        nets.step(x, e, inv[:1], extra=inv[1:][None], sampler=FAST)


def test_regression_loss_is_the_mse_of_the_mean(nets, tiny_config):
    x, e, inv = _inputs(b=2)
    target = torch.randn(2, C, 16, 24)
    mean = nets.regression(torch.cat([x, e, inv.expand(2, -1, -1, -1)], 1))
    assert nets.regression_loss(x, e, inv, target).item() == pytest.approx(((mean - target) ** 2).mean().item(),
                                                                           rel=1e-6)
    # a residual net with a tendency scale: the error in units of the scale
    reg = randomize_(RegressionNet(tiny_config(in_channels=C + E + I, out_channels=C), residual=True), seed=3)
    scale = torch.tensor([0.5, 2.0, 4.0])
    reg.set_tendency_scale(scale)
    res = StormCastNets(reg)
    pred = reg(torch.cat([x, e, inv.expand(2, -1, -1, -1)], 1))
    expect = (((pred - target) / scale.reshape(1, -1, 1, 1)) ** 2).mean()
    torch.testing.assert_close(res.regression_loss(x, e, inv, target), expect, rtol=0, atol=0)


def test_diffusion_loss_is_the_edm_formula_written_out(nets):
    """Per-sample draws: sample j's ln(sigma) then its noise from generators[j]."""
    x, e, inv = _inputs(b=2)
    target = torch.randn(2, C, 16, 24)
    scale = torch.tensor([0.5, 1.0, 3.0])
    nets.diffusion.set_residual_scale(scale)
    got = nets.diffusion_loss(x, e, inv, target, generators=make_generators([4, 9]), P_mean=-1.0, P_std=1.5)

    with torch.no_grad():
        mean = nets.regression(torch.cat([x, e, inv.expand(2, -1, -1, -1)], 1))
        y = (target - mean) / scale.reshape(1, -1, 1, 1)
        gens = make_generators([4, 9])
        n = torch.stack([torch.randn(1, generator=g) for g in gens]).reshape(-1)
        sigma = torch.exp(-1.0 + 1.5 * n)
        noise = torch.stack([torch.randn(C, 16, 24, generator=g) for g in gens])
        cond = torch.cat([x, mean, inv.expand(2, -1, -1, -1)], 1)
        denoised = nets.diffusion(y + noise * sigma[:, None, None, None], sigma, cond)
        weight = ((sigma ** 2 + 0.5 ** 2) / (sigma * 0.5) ** 2)[:, None, None, None]
        expect = (weight * (denoised - y) ** 2).mean()
    torch.testing.assert_close(got, expect, rtol=0, atol=0)
    # gradients reach the denoiser only
    nets.zero_grad()
    nets.diffusion_loss(x, e, inv, target, generators=make_generators([4, 9])).backward()
    assert all(p.grad is None for p in nets.regression.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in nets.diffusion.parameters())


def test_diffusion_loss_needs_a_denoiser(nets):
    x, e, inv = _inputs(b=1)
    with pytest.raises(ValueError, match="no diffusion net"):
        StormCastNets(nets.regression).diffusion_loss(x, e, inv, x, generators=make_generators([0]))


def test_regression_input_noise_is_drawn_per_sample_and_only_on_the_state(nets):
    """The loss with ``input_noise`` equals the plain loss of a state perturbed by
    exactly the per-sample draws of the generators; zero noise changes nothing."""
    from stormcast_plugin.diffusion.samplers import randn_per_sample

    x, e, inv = _inputs(b=2)
    target = torch.randn(2, C, 16, 24)
    plain = nets.regression_loss(x, e, inv, target)
    torch.testing.assert_close(nets.regression_loss(x, e, inv, target, input_noise=0.0,
                                                    generators=make_generators([3, 4])), plain, rtol=0, atol=0)
    noisy = nets.regression_loss(x, e, inv, target, input_noise=0.3, generators=make_generators([3, 4]))
    draws = randn_per_sample(tuple(x.shape), make_generators([3, 4]), dtype=x.dtype)
    torch.testing.assert_close(noisy, nets.regression_loss(x + 0.3 * draws, e, inv, target), rtol=0, atol=0)
    assert abs(noisy.item() - plain.item()) > 1e-4
    # sample 1's draw is its own: the same generator seed gives the same perturbation alone
    alone = nets.regression_loss(x[1:], e[1:], inv, target[1:], input_noise=0.3, generators=make_generators([4]))
    torch.testing.assert_close(alone, nets.regression_loss(x[1:] + 0.3 * draws[1:], e[1:], inv, target[1:]))


def test_a_residual_identity_net_pays_the_input_noise_variance(tiny_config):
    """A residual net whose change is zero predicts its (noisy) input: its expected
    loss grows by input_noise**2 over the tendency scale squared."""
    reg = RegressionNet(tiny_config(in_channels=C + E + I, out_channels=C), residual=True)
    for p in reg.parameters():
        torch.nn.init.zeros_(p)
    reg.set_tendency_scale(torch.tensor([0.5, 1.0, 2.0]))
    nets = StormCastNets(reg)
    x, e, inv = _inputs(b=4, h=64, w=64)
    loss = nets.regression_loss(x, e, inv, x, input_noise=0.2, generators=make_generators([1, 2, 3, 4]))
    expect = (0.2 ** 2 * (1 / torch.tensor([0.5, 1.0, 2.0]) ** 2)).mean().item()
    assert loss.item() == pytest.approx(expect, rel=0.03)


def test_the_mean_filter_filters_the_regression_mean_of_the_step(nets):
    from stormcast_plugin.models.nn.filters import shapiro_filter

    x, e, inv = _inputs()
    mean = nets.step(x, e, inv, regression_only=True)
    filtered = nets.step(x, e, inv, regression_only=True, sampler=SamplerOptions(num_steps=3, mean_filter=0.5))
    torch.testing.assert_close(filtered, shapiro_filter(mean, 0.5))
    assert (filtered - mean).abs().max() > 1e-3
    full = nets.step(x, e, inv, sampler=SamplerOptions(num_steps=3, mean_filter=0.5), generators=make_generators([5, 6]))
    assert torch.isfinite(full).all() and not torch.allclose(full, filtered)
    with pytest.raises(ValueError, match=r"mean_filter must lie in \[0, 1\]"):
        SamplerOptions(mean_filter=2.0)
