import io
import json
import zipfile

import pytest
import torch

from stormcast_plugin.models.nn import EDMPrecond, RegressionNet
from stormcast_plugin.models.nn.mdlus import CheckpointError, load_mdlus, read_mdlus, write_mdlus
from tests.conftest import randomize_


@pytest.fixture
def reg_net(tiny_config):
    return randomize_(RegressionNet(tiny_config()), seed=1).eval()


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_round_trip_both_formats(tmp_path, reg_net, tiny_config, fmt):
    path = write_mdlus(reg_net, tmp_path / "StormCastUNet.0.0.mdlus", fmt=fmt)
    archive = read_mdlus(path)
    assert archive.format == fmt and archive.name == "StormCastUNet"
    assert archive.args["img_in_channels"] == 5
    net = load_mdlus(path, expected="StormCastUNet")
    assert isinstance(net, RegressionNet) and net.config == reg_net.config
    x = torch.randn(2, 5, 16, 24)
    torch.testing.assert_close(net(x), reg_net(x), rtol=0, atol=0)


def test_diffusion_round_trip(tmp_path, tiny_config):
    cfg = tiny_config(in_channels=8, out_channels=3, embedding_type="positional", additive_pos_embed=True)
    net = randomize_(EDMPrecond(cfg, sigma_data=0.7), seed=2).eval()
    loaded = load_mdlus(write_mdlus(net, tmp_path / "EDMPrecond.0.0.mdlus"))
    assert float(loaded.sigma_data) == pytest.approx(0.7) and loaded.config == cfg
    x, c, s = torch.randn(2, 3, 16, 24), torch.randn(2, 5, 16, 24), torch.tensor([0.1, 10.0])
    torch.testing.assert_close(loaded(x, s, c), net(x, s, c), rtol=0, atol=0)


def test_residual_scale_defaults_loads_and_blocks_the_official_format(tmp_path, tiny_config):
    cfg = tiny_config(in_channels=8, out_channels=3, embedding_type="positional")
    net = randomize_(EDMPrecond(cfg), seed=2).eval()
    assert torch.equal(net.residual_scale, torch.ones(3)) and not net.has_residual_scale
    # an unscaled denoiser writes PhysicsNeMo's keys only
    archive = read_mdlus(write_mdlus(net, tmp_path / "a.mdlus"))
    assert "residual_scale" not in archive.state_dict and "sigma_data" in archive.state_dict
    # state dicts without the buffer (PhysicsNeMo's, older packages) load with ones
    other = EDMPrecond(cfg)
    other.set_residual_scale(torch.tensor([2.0, 3.0, 4.0]))
    state = {k: v for k, v in net.state_dict().items() if k != "residual_scale"}
    other.load_state_dict(state)
    assert torch.equal(other.residual_scale, torch.ones(3))
    # a scaled denoiser keeps its scale in its own state dict but has no official form
    net.set_residual_scale(torch.tensor([0.5, 1.0, 2.0]))
    assert torch.equal(net.state_dict()["residual_scale"], torch.tensor([0.5, 1.0, 2.0]))
    with pytest.raises(ValueError, match="residual_scale != 1.*save_package"):
        write_mdlus(net, tmp_path / "b.mdlus")
    with pytest.raises(ValueError, match="3 channels"):
        net.set_residual_scale(torch.ones(4))
    with pytest.raises(ValueError, match="finite and positive"):
        net.set_residual_scale(torch.tensor([1.0, 0.0, float("nan")]))


def test_wrong_network_kind_is_named(tmp_path, reg_net):
    path = write_mdlus(reg_net, tmp_path / "a.mdlus")
    with pytest.raises(CheckpointError, match="holds a StormCastUNet, expected a EDMPrecond"):
        load_mdlus(path, expected="EDMPrecond")


def test_truncated_archive_is_reported_with_its_path(tmp_path, reg_net):
    path = write_mdlus(reg_net, tmp_path / "a.mdlus")
    data = path.read_bytes()
    bad = tmp_path / "truncated.mdlus"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.mdlus"):
        load_mdlus(bad)


def test_garbage_file_is_not_an_archive(tmp_path):
    bad = tmp_path / "junk.mdlus"
    bad.write_bytes(b"not an archive at all" * 10)
    with pytest.raises(CheckpointError, match="neither zip nor tar"):
        read_mdlus(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_mdlus(tmp_path / "missing.mdlus")


def _rewrite(path, out, *, state=None, args=None):
    with zipfile.ZipFile(path) as zf:
        blobs = {n: zf.read(n) for n in zf.namelist()}
    if state is not None:
        buf = io.BytesIO()
        torch.save(state, buf)
        blobs["model.pt"] = buf.getvalue()
    if args is not None:
        blobs["args.json"] = json.dumps(args).encode()
    with zipfile.ZipFile(out, "w") as zf:
        for n, b in blobs.items():
            zf.writestr(n, b)
    return out


def test_missing_and_unexpected_keys_are_listed(tmp_path, reg_net):
    path = write_mdlus(reg_net, tmp_path / "a.mdlus")
    state = reg_net.state_dict()
    dropped = "model.dec.16x16_aux_conv.bias"
    state.pop(dropped)
    state["model.extra.weight"] = torch.zeros(1)
    bad = _rewrite(path, tmp_path / "b.mdlus", state=state)
    with pytest.raises(CheckpointError) as err:
        load_mdlus(bad)
    msg = str(err.value)
    assert dropped in msg and "model.extra.weight" in msg and "b.mdlus" in msg


def test_wrong_shapes_are_listed(tmp_path, reg_net):
    path = write_mdlus(reg_net, tmp_path / "a.mdlus")
    state = reg_net.state_dict()
    state["model.enc.16x16_conv.weight"] = torch.zeros(16, 6, 3, 3)
    bad = _rewrite(path, tmp_path / "c.mdlus", state=state)
    with pytest.raises(CheckpointError, match=r"16x16_conv.weight: file \(16, 6, 3, 3\) vs network \(16, 5, 3, 3\)"):
        load_mdlus(bad)


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_loading_never_runs_code_from_the_file(tmp_path, reg_net, capsys):
    path = write_mdlus(reg_net, tmp_path / "a.mdlus")
    # the real weights plus one object whose unpickling would run code; the
    # file has the size the network needs, so it reaches torch.load
    bad = _rewrite(path, tmp_path / "evil.mdlus", state={**reg_net.state_dict(), "x": _Evil()})
    with pytest.raises(CheckpointError, match="cannot be loaded: it holds objects other than tensors") as err:
        load_mdlus(bad)
    assert "code ran" not in capsys.readouterr().out
    # one line, and no advice to load the file unsafely
    assert "\n" not in str(err.value) and "weights_only" not in str(err.value)


def test_unsupported_constructor_arguments_are_rejected(tmp_path, reg_net):
    path = write_mdlus(reg_net, tmp_path / "a.mdlus")
    args = read_mdlus(path).args
    bad = _rewrite(path, tmp_path / "d.mdlus", args={"__name__": "StormCastUNet", "__args__": {**args, "encoder_type": "residual"}})
    with pytest.raises(CheckpointError, match="encoder_type='residual' is not supported"):
        load_mdlus(bad)
    bad = _rewrite(path, tmp_path / "e.mdlus", args={"__name__": "StormCastUNet", "__args__": {**args, "mystery": 1}})
    with pytest.raises(CheckpointError, match="unknown constructor arguments"):
        load_mdlus(bad)


def test_omitted_arguments_take_physicsnemo_defaults(tmp_path, reg_net):
    path = write_mdlus(reg_net, tmp_path / "a.mdlus")
    args = dict(read_mdlus(path).args)
    for k in ("attn_resolutions", "num_blocks"):
        args.pop(k)
    bad = _rewrite(path, tmp_path / "f.mdlus", args={"__name__": "StormCastUNet", "__args__": args})
    # PhysicsNeMo's defaults (num_blocks 4, attention at 16) differ from the file's
    # weights, so this must fail loudly rather than load a different network.
    with pytest.raises(CheckpointError, match="wrong shape|does not match the network"):
        load_mdlus(bad)
