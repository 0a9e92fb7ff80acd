"""Hostile .mdlus archives: compression bombs, forged sizes, malformed JSON
and state dicts. Each is refused with a one-line CheckpointError naming the
file, before the reader inflates or allocates what the file claims."""

import io
import json
import tarfile
import tracemalloc
import zipfile

import pytest
import torch

from stormcast_plugin.models.nn import RegressionNet
from stormcast_plugin.models.nn.mdlus import CheckpointError, load_mdlus, read_mdlus, write_mdlus
from tests.conftest import randomize_

MiB = 1 << 20


@pytest.fixture
def reg_net(tiny_config):
    return randomize_(RegressionNet(tiny_config()), seed=1).eval()


@pytest.fixture
def members(tmp_path, reg_net):
    """The members of a valid archive of ``reg_net``."""
    path = write_mdlus(reg_net, tmp_path / "valid.mdlus")
    # a first read imports torch's meta-device kernels, which the memory
    # measurements below should not count
    read_mdlus(path)
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


class _Zeros(io.RawIOBase):
    """``size`` zero bytes, produced in chunks (never held whole)."""

    def __init__(self, size):
        self.left = size

    def readable(self):
        return True

    def readinto(self, buf):
        n = min(len(buf), self.left)
        buf[:n] = bytes(n)
        self.left -= n
        return n


def _zip(path, blobs, bomb_size=0):
    """A zip of ``blobs``; with ``bomb_size`` model.pt is that many deflated zeros."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, blob in blobs.items():
            if name == "model.pt" and bomb_size:
                with zf.open("model.pt", "w", force_zip64=True) as dst:
                    src = _Zeros(bomb_size)
                    while chunk := src.read(MiB):
                        dst.write(chunk)
            else:
                zf.writestr(name, blob)
    return path


def _state_bytes(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def _peak_bytes(fn):
    """Peak Python memory while ``fn`` runs (bytes objects included)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _refused(path, match):
    with pytest.raises(CheckpointError, match=match) as err:
        load_mdlus(path)
    msg = str(err.value)
    assert "\n" not in msg and path.name in msg
    return msg


def test_zip_bomb_is_refused_before_inflating(tmp_path, members):
    # 128 MiB of zeros deflate to about 128 kB: far past any float weights' ratio
    bomb = _zip(tmp_path / "bomb.mdlus", members, bomb_size=128 * MiB)
    assert bomb.stat().st_size < 1 * MiB
    peak = _peak_bytes(lambda: _refused(bomb, "compression bomb"))
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB: the member was inflated"


def test_tar_bomb_is_refused_before_inflating(tmp_path, members):
    bomb = tmp_path / "bomb.mdlus"
    with tarfile.open(bomb, "w:gz", compresslevel=1) as tar:
        for name, blob in members.items():
            size = 128 * MiB if name == "model.pt" else len(blob)
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, _Zeros(size) if name == "model.pt" else io.BytesIO(blob))
    assert bomb.stat().st_size < 2 * MiB
    peak = _peak_bytes(lambda: _refused(bomb, "compression bomb"))
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB: the member was inflated"


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_member_larger_than_the_declared_network_is_not_read(tmp_path, members, fmt):
    # stored, not compressed: only args.json tells that 12 MiB is too much
    # for this network (about 1.2 MB of float32 weights)
    blobs = {**members, "model.pt": bytes(12 * MiB)}
    path = tmp_path / "padded.mdlus"
    if fmt == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            for name, blob in blobs.items():
                zf.writestr(name, blob)
    else:
        with tarfile.open(path, "w") as tar:
            for name, blob in blobs.items():
                info = tarfile.TarInfo(name)
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    del blobs
    peak = _peak_bytes(lambda: _refused(path, r"declares 12582912 bytes.*StormCastUNet of \d+ values"))
    assert peak < 6 * MiB, f"peak {peak / MiB:.1f} MiB: the member was read"


def _with_args(members, change):
    args = json.loads(members["args.json"])
    args["__args__"].update(change)
    return {**members, "args.json": json.dumps(args).encode()}


def test_huge_network_in_args_json_is_refused_before_allocating(tmp_path, members):
    # a learned spatial embedding of 16 x 2**20 x 2**20 values: 64 TiB
    blobs = _with_args(members, {"img_resolution": [2**20, 2**20], "additive_pos_embed": True})
    path = _zip(tmp_path / "huge.mdlus", blobs)
    msg = _refused(path, "does not match the network args.json declares")
    assert "17592186" in msg  # the declared values, counted without allocating them


def test_absurd_block_count_in_args_json_is_refused(tmp_path, members):
    blobs = _with_args(members, {"channel_mult": [1, 2], "num_blocks": 2500})
    _refused(_zip(tmp_path / "deep.mdlus", blobs), "declares 10006 U-Net blocks")


@pytest.mark.parametrize("args", [[1, 2], "StormCastUNet", 3, None])
def test_args_json_that_is_not_an_object(tmp_path, members, args):
    path = _zip(tmp_path / "args.mdlus", {**members, "args.json": json.dumps(args).encode()})
    msg = _refused(path, "args.json in .* holds a JSON .*, not an object")
    assert "re-save" in msg


@pytest.mark.parametrize("args", [{"__name__": "StormCastUNet", "__args__": [1]},
                                  {"__name__": ["StormCastUNet"], "__args__": {}}])
def test_args_json_fields_of_the_wrong_type(tmp_path, members, args):
    path = _zip(tmp_path / "fields.mdlus", {**members, "args.json": json.dumps(args).encode()})
    _refused(path, r'args.json in .* needs "__name__" \(a string\) and "__args__" \(an object\).*re-save')


def test_metadata_json_that_is_not_an_object(tmp_path, members):
    path = _zip(tmp_path / "meta.mdlus", {**members, "metadata.json": b"[]"})
    _refused(path, "metadata.json in .* holds a JSON list, not an object")


def test_args_json_values_of_the_wrong_type(tmp_path, members):
    blobs = _with_args(members, {"model_channels": "many"})
    _refused(_zip(tmp_path / "values.mdlus", blobs), "args.json does not describe a valid StormCastUNet")


@pytest.mark.parametrize(
    "change, what",
    [
        ({"model.enc.16x16_conv.bias": [0.0] * 16}, "entry 'model.enc.16x16_conv.bias' is a list, not a tensor"),
        ({"model.extra": {"inner": torch.zeros(2)}}, "entry 'model.extra' is a dict, not a tensor"),
        ({"model.count": 3}, "entry 'model.count' is a int, not a tensor"),
        ({0: torch.zeros(2)}, "key 0 is a int, not a parameter name"),
    ],
)
def test_state_dict_with_a_non_tensor_entry(tmp_path, members, reg_net, change, what):
    state = {**reg_net.state_dict(), **change}
    path = _zip(tmp_path / "state.mdlus", {**members, "model.pt": _state_bytes(state)})
    msg = _refused(path, "model.pt in .*: " + what)
    assert "re-save" in msg


def test_a_valid_archive_still_loads_with_bounded_reading(tmp_path, members, reg_net):
    # the same members deflated (not as PhysicsNeMo stores them) load as well
    path = _zip(tmp_path / "deflated.mdlus", members)
    archive = read_mdlus(path)
    assert archive.format == "zip" and set(archive.state_dict) == set(reg_net.state_dict())
    x = torch.randn(1, 5, 16, 24)
    torch.testing.assert_close(load_mdlus(path)(x), reg_net(x), rtol=0, atol=0)
