import pytest
import torch

from stormcast_plugin.models.nn import (
    EDMPrecond,
    RegressionNet,
    SongUNet,
    SongUNetConfig,
    count_parameters,
    paper_diffusion_config,
    paper_regression_config,
)
from stormcast_plugin.diffusion.losses import edm_precondition_coefficients
from tests.conftest import randomize_


def _count_on_meta(module_cls, config, **kw):
    with torch.device("meta"):
        return count_parameters(module_cls(config, **kw))


def test_paper_parameter_counts_match_reference():
    # PhysicsNeMo's StormCast networks at 512 x 640.
    assert _count_on_meta(RegressionNet, paper_regression_config()) == 78_588_387
    assert _count_on_meta(EDMPrecond, paper_diffusion_config()) == 121_058_275
    assert _count_on_meta(EDMPrecond, paper_diffusion_config(additive_pos_embed=False)) == 79_115_235


def test_paper_block_names_use_first_image_dimension():
    with torch.device("meta"):
        net = SongUNet(paper_regression_config())
    names = list(net.enc) + list(net.dec)
    assert names[0] == "512x512_conv"
    assert "256x256_down" in names and "32x32_in0" in names and "512x512_aux_conv" in names
    assert net.dec["32x32_in0"].attn is not None
    assert all(net.enc[n].attn is None for n in net.enc if n != "512x512_conv")


def test_output_shapes_and_any_valid_grid(tiny_config):
    net = RegressionNet(tiny_config(in_channels=5, out_channels=3)).eval()
    for h, w in [(16, 24), (8, 8), (32, 12)]:
        assert net(torch.randn(2, 5, h, w)).shape == (2, 3, h, w)


def test_bad_grid_names_nearest_valid_sizes(tiny_config):
    net = RegressionNet(tiny_config()).eval()
    with pytest.raises(ValueError, match=r"multiple of 4.*H in \[8, 12\]"):
        net(torch.randn(1, 5, 10, 24))
    with pytest.raises(ValueError, match="multiple of 4"):
        tiny_config(img_resolution=(18, 24))


def test_spatial_embedding_fixes_grid(tiny_config):
    cfg = tiny_config(in_channels=7, out_channels=3, embedding_type="positional", additive_pos_embed=True)
    net = EDMPrecond(cfg).eval()
    assert net.model.spatial_emb.shape == (1, 16, 16, 24)
    with pytest.raises(ValueError, match="spatial embedding"):
        net(torch.randn(1, 3, 8, 8), torch.ones(1), torch.randn(1, 4, 8, 8))


def test_edm_preconditioning_equation(tiny_config):
    cfg = tiny_config(in_channels=7, out_channels=3, embedding_type="positional")
    net = randomize_(EDMPrecond(cfg), seed=4).eval()
    x = torch.randn(2, 3, 16, 24)
    cond = torch.randn(2, 4, 16, 24)
    sigma = torch.tensor([0.3, 20.0])
    out = net(x, sigma, cond)
    s = sigma.reshape(-1, 1, 1, 1)
    c_skip, c_out, c_in, c_noise = 0.25 / (s**2 + 0.25), s * 0.5 / (s**2 + 0.25).sqrt(), 1 / (0.25 + s**2).sqrt(), s.log() / 4
    f = net.model(torch.cat([c_in * x, cond], 1), c_noise.flatten())
    torch.testing.assert_close(out, c_skip * x + c_out * f)
    got = edm_precondition_coefficients(s, 0.5)
    for a, b in zip(got, (c_skip, c_out, c_in, c_noise)):
        torch.testing.assert_close(a, b)


def test_noise_level_changes_diffusion_output(tiny_config):
    cfg = tiny_config(in_channels=3, out_channels=3, embedding_type="positional")
    net = randomize_(SongUNet(cfg), seed=5).eval()
    x = torch.randn(1, 3, 16, 24)
    a, b = net(x, torch.tensor([0.1])), net(x, torch.tensor([2.0]))
    assert (a - b).abs().max() > 1e-4


def test_batch_members_are_independent(tiny_config):
    net = randomize_(RegressionNet(tiny_config()), seed=6).eval()
    x = torch.randn(3, 5, 16, 24)
    torch.testing.assert_close(net(x)[1:2], net(x[1:2]), rtol=1e-5, atol=1e-5)


def test_config_round_trip_and_unknown_keys(tiny_config):
    cfg = tiny_config(attn_resolutions=(8,))
    assert SongUNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown SongUNet config keys"):
        SongUNetConfig.from_dict({**cfg.to_dict(), "heads": 2})
    with pytest.raises(ValueError, match="embedding_type"):
        tiny_config(embedding_type="fourier")


def test_positional_regression_embeds_a_zero_noise_label(tiny_config):
    # PhysicsNeMo's StormCastUNet default: the zero label passes through the
    # embedding layers, whose weights then change the output.
    net = randomize_(RegressionNet(tiny_config(embedding_type="positional")), seed=3).eval()
    x = torch.randn(2, 5, 16, 24)
    with torch.no_grad():
        out = net(x)
        per_sample = net.model(x, torch.zeros(2))
        torch.testing.assert_close(out, per_sample, rtol=0, atol=1e-5)
        net.model.map_layer1.bias.add_(1.0)
        assert (net(x) - out).abs().max() > 1e-3


def test_zero_embedding_ignores_legacy_embedding_layers(tiny_config):
    # Older checkpoints of the regression net carry unused map_* layers
    # (the source of the 78.9 M count quoted for the official file).
    net = randomize_(RegressionNet(tiny_config()), seed=7).eval()
    state = dict(net.state_dict())
    state["model.map_noise.freqs"] = torch.ones(8)
    state["model.map_layer0.weight"] = torch.ones(64, 16)
    state["model.map_layer0.bias"] = torch.ones(64)
    fresh = RegressionNet(tiny_config())
    fresh.load_state_dict(state, strict=True)
    x = torch.randn(1, 5, 16, 24)
    torch.testing.assert_close(fresh.eval()(x), net(x))


def test_residual_regression_adds_the_state(tiny_config):
    net = randomize_(RegressionNet(tiny_config(), residual=True), seed=8).eval()
    x = torch.randn(2, 5, 16, 24)
    torch.testing.assert_close(net(x), net.model(x) + x[:, :3])
    plain = RegressionNet(tiny_config())
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if k != "tendency_scale"})
    torch.testing.assert_close(net(x) - plain.eval()(x), x[:, :3])
    # the tendency scale multiplies the predicted change, channel by channel
    scale = torch.tensor([0.5, 2.0, 0.1])
    net.set_tendency_scale(scale)
    torch.testing.assert_close(net(x), scale.reshape(1, -1, 1, 1) * net.model(x) + x[:, :3])
    # files from before the buffer existed load with ones
    again = RegressionNet(tiny_config(), residual=True)
    again.set_tendency_scale(scale)
    again.load_state_dict(plain.state_dict())
    assert torch.equal(again.tendency_scale, torch.ones(3))
    with pytest.raises(ValueError, match="finite and positive"):
        net.set_tendency_scale(torch.tensor([1.0, -1.0, 1.0]))


def test_residual_regression_cannot_be_written_as_mdlus(tiny_config, tmp_path):
    from stormcast_plugin.models.nn.mdlus import write_mdlus

    with pytest.raises(ValueError, match="no PhysicsNeMo StormCastUNet equivalent"):
        write_mdlus(RegressionNet(tiny_config(), residual=True), tmp_path / "r.mdlus")
