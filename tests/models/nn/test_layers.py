import math

import pytest
import torch
import torch.nn.functional as F

from stormcast_plugin.models.nn.layers import (
    Conv2d,
    GroupNorm,
    PositionalEmbedding,
    UNetAttention,
    UNetBlock,
    group_count,
)
from tests.conftest import randomize_


def test_group_count_follows_min_channels_rule():
    assert group_count(128) == 32
    assert group_count(16) == 4
    assert group_count(6) == 2
    with pytest.raises(ValueError, match="cannot be split"):
        group_count(30)  # 30 -> 8 groups, not a divisor


def test_groupnorm_eval_uses_unbiased_group_variance():
    torch.manual_seed(0)
    gn = randomize_(GroupNorm(8, eps=1e-6), seed=1).eval()
    x = torch.randn(2, 8, 3, 5)
    g = gn.num_groups
    xg = x.reshape(2, g, -1)
    mean = xg.mean(-1, keepdim=True)
    var = xg.var(-1, keepdim=True, unbiased=True)
    ref = ((xg - mean) / torch.sqrt(var + 1e-6)).reshape_as(x)
    ref = ref * gn.weight[None, :, None, None] + gn.bias[None, :, None, None]
    torch.testing.assert_close(gn(x), ref, rtol=1e-5, atol=1e-5)


def test_groupnorm_train_is_standard_group_norm_with_silu():
    gn = randomize_(GroupNorm(8, silu=True), seed=2).train()
    x = torch.randn(2, 8, 4, 4)
    ref = F.silu(F.group_norm(x, 2, gn.weight, gn.bias, 1e-6))
    torch.testing.assert_close(gn(x), ref)


@pytest.mark.parametrize("up", [False, True])
def test_box_resampling_equals_filter_convolution(up):
    conv = Conv2d(3, 5, kernel=3, up=up, down=not up)
    randomize_(conv)
    x = torch.randn(2, 3, 8, 6)
    fast = conv(x)
    conv._box = False  # force the generic filter path
    slow = conv(x)
    assert fast.shape == (2, 5, 16, 12) if up else (2, 5, 4, 3)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kernel", [1, 3])
def test_up_convolution_at_low_resolution_equals_upsample_then_convolve(kernel):
    conv = Conv2d(4, 6, kernel=kernel, up=True)
    randomize_(conv, seed=kernel)
    x = torch.randn(2, 4, 7, 5, dtype=torch.float64, requires_grad=True)
    conv = conv.double()
    fused = conv(x)
    up = torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
    direct = torch.nn.functional.conv2d(up, conv.weight, conv.bias, padding=kernel // 2)
    assert fused.shape == (2, 6, 14, 10)
    torch.testing.assert_close(fused, direct, rtol=1e-12, atol=1e-12)
    # gradients agree too (the kernel is built from the weights inside autograd)
    g = torch.randn_like(direct)
    grads_fused = torch.autograd.grad(fused, [x, conv.weight, conv.bias], g)
    grads_direct = torch.autograd.grad(direct, [x, conv.weight, conv.bias], g)
    for a, b in zip(grads_fused, grads_direct):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_downsample_is_two_by_two_mean():
    conv = Conv2d(1, 1, kernel=0, down=True)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    expected = torch.tensor([[2.5, 4.5], [10.5, 12.5]])
    torch.testing.assert_close(conv(x)[0, 0], expected)


def test_positional_embedding_matches_formula():
    emb = PositionalEmbedding(8, endpoint=True)
    sigma = torch.tensor([0.5, -1.0])
    freqs = [(1 / 10000) ** (k / 3) for k in range(4)]
    expected = torch.tensor(
        [[math.sin(s * f) for f in freqs] + [math.cos(s * f) for f in freqs] for s in sigma.tolist()]
    )
    torch.testing.assert_close(emb(sigma), expected)


def test_positional_embedding_fills_missing_freqs_on_load():
    emb = PositionalEmbedding(8)
    emb.load_state_dict({}, strict=True)  # old checkpoints lacked the buffer


def test_attention_matches_softmax_formula():
    torch.manual_seed(0)
    att = randomize_(UNetAttention(8, num_heads=2), seed=3).eval()
    x = torch.randn(2, 8, 3, 4)
    qkv = att.qkv(att.norm(x)).reshape(2, 2, 4, 3, 12)
    q, k, v = qkv[:, :, :, 0], qkv[:, :, :, 1], qkv[:, :, :, 2]  # [b, h, c, n]
    w = torch.softmax(torch.einsum("bhcq,bhck->bhqk", q, k) / math.sqrt(4), dim=-1)
    a = torch.einsum("bhqk,bhck->bhcq", w, v).reshape(2, 8, 3, 4)
    torch.testing.assert_close(att(x), att.proj(a) + x, rtol=1e-5, atol=1e-5)


def _reference_block(blk: UNetBlock, x: torch.Tensor, emb: torch.Tensor, mode: str) -> torch.Tensor:
    """The block written out step by step (training-mode group norm), every sum and scaling explicit."""
    def norm(m, t):
        return F.silu(F.group_norm(t, m.num_groups, m.weight, m.bias, m.eps))

    def resample(t):
        if mode == "up":
            return F.interpolate(t, scale_factor=2.0, mode="nearest")
        return F.avg_pool2d(t, 2) if mode == "down" else t

    s = blk.skip_scale
    h = F.conv2d(resample(norm(blk.norm0, x)), blk.conv0.weight, blk.conv0.bias, padding=1)
    h = h + F.linear(emb, blk.affine.weight, blk.affine.bias)[:, :, None, None]
    h = F.conv2d(norm(blk.norm1, h), blk.conv1.weight, blk.conv1.bias, padding=1)
    skip = x if blk.skip is None else F.conv2d(resample(x), blk.skip.weight, blk.skip.bias)
    h = (h + skip) * s
    if blk.attn is not None:
        b, c, hh, ww = h.shape
        a = blk.attn
        qkv = F.conv2d(F.group_norm(h, a.norm.num_groups, a.norm.weight, a.norm.bias, a.norm.eps),
                       a.qkv.weight, a.qkv.bias).reshape(b, c, 3, hh * ww)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        w = torch.softmax(torch.einsum("bcq,bck->bqk", q, k) / math.sqrt(c), dim=-1)
        out = torch.einsum("bqk,bck->bcq", w, v).reshape(b, c, hh, ww)
        h = (h + F.conv2d(out, a.proj.weight, a.proj.bias)) * s
    return h


@pytest.mark.parametrize("mode,attention,cin", [("none", False, 8), ("none", True, 8), ("none", False, 6),
                                                ("up", False, 6), ("down", True, 6)])
def test_unet_block_equals_the_written_out_formula(mode, attention, cin):
    """Scalings and embedding bias applied through the convolutions equal the explicit sums."""
    blk = UNetBlock(cin, 8, emb_channels=5, up=mode == "up", down=mode == "down", attention=attention,
                    skip_scale=math.sqrt(0.5)).double()
    randomize_(blk, seed=4)
    x = torch.randn(2, cin, 8, 6, dtype=torch.float64)
    for emb in (torch.randn(2, 5, dtype=torch.float64), torch.randn(1, 5, dtype=torch.float64)):
        ours = blk(x, emb)
        ref = _reference_block(blk, x, emb, mode)
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
        g = torch.randn_like(ref)
        params = list(blk.parameters())
        for a, b in zip(torch.autograd.grad(ours, params, g), torch.autograd.grad(ref, params, g)):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("resample", ["none", "up", "down"])
def test_one_embedding_for_the_batch_folds_into_the_conv_bias(resample):
    """A [1, E] embedding (folded into conv0's bias) equals the same vector repeated per sample."""
    blk = UNetBlock(6, 8, emb_channels=5, up=resample == "up", down=resample == "down").double()
    randomize_(blk, seed=3)
    x = torch.randn(3, 6, 8, 10, dtype=torch.float64)
    emb = torch.randn(1, 5, dtype=torch.float64)
    folded = blk(x, emb)
    repeated = blk(x, emb.expand(3, -1).contiguous())
    torch.testing.assert_close(folded, repeated, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(folded)
    params = [p for p in blk.parameters()]
    ga = torch.autograd.grad(folded, params, g)
    gb = torch.autograd.grad(repeated, params, g)
    for p, a, b in zip(params, ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert float(ga[[i for i, p in enumerate(params) if p is blk.affine.weight][0]].abs().max()) > 0


def test_unet_block_loads_legacy_attention_names():
    blk = UNetBlock(8, 8, emb_channels=4, attention=True)
    randomize_(blk)
    state = blk.state_dict()
    legacy = {}
    for k, v in state.items():
        k = k.replace("attn.norm.", "norm2.").replace("attn.qkv.", "qkv.").replace("attn.proj.", "proj.")
        legacy[k] = v
    assert "qkv.weight" in legacy and "attn.qkv.weight" not in legacy
    fresh = UNetBlock(8, 8, emb_channels=4, attention=True)
    fresh.load_state_dict(legacy, strict=True)
    torch.testing.assert_close(fresh.attn.qkv.weight, blk.attn.qkv.weight)
