"""Equality with PhysicsNeMo's StormCast networks on stored reference outputs.

The fixture under tests/fixtures/physicsnemo was written by
scripts/make_physicsnemo_fixture.py in an environment with PhysicsNeMo 2.2.2:

* ``cases``: small random-weight PhysicsNeMo networks saved as .mdlus archives
  (zip and tar), their inputs and their outputs. Here the archives are loaded
  without PhysicsNeMo and must reproduce those outputs to 1e-5 in float32.
* ``exports``: small random-weight networks of this package written with
  ``write_mdlus``, loaded by PhysicsNeMo's ``Module.from_checkpoint`` and run
  there. Our outputs on the same archives must equal PhysicsNeMo's to 1e-5,
  and ``write_mdlus`` must still write what PhysicsNeMo accepted.
"""

import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from stormcast_plugin.models.nn import EDMPrecond, RegressionNet
from stormcast_plugin.models.nn.mdlus import load_mdlus, read_mdlus, write_mdlus

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "physicsnemo"
MANIFEST = json.loads((FIXTURE / "manifest.json").read_text())
CASES = MANIFEST["cases"]
EXPORTS = MANIFEST["exports"]


def _outputs(net, case):
    arrays = np.load(FIXTURE / case["arrays"])
    x = torch.from_numpy(arrays["x"])
    with torch.no_grad():
        if case["kind"] == "regression":
            assert isinstance(net, RegressionNet)
            out = net(x)
        else:
            assert isinstance(net, EDMPrecond)
            out = net(x, torch.from_numpy(arrays["sigma"]), torch.from_numpy(arrays["condition"]))
    return out, torch.from_numpy(arrays["out"])


@pytest.mark.parametrize("case", CASES + EXPORTS, ids=[c["name"] for c in CASES + EXPORTS])
def test_outputs_equal_physicsnemo(case):
    net = load_mdlus(FIXTURE / case["mdlus"])
    out, ref = _outputs(net, case)
    assert out.shape == ref.shape
    err = (out - ref).abs().max().item()
    assert err <= 1e-5, f"{case['name']}: max abs difference {err:.3e} > 1e-5"
    # The reference outputs are not trivially small: a broken layer would show.
    assert ref.abs().max().item() > 1e-2


def test_fixture_covers_both_formats_and_features():
    for group in (CASES, EXPORTS):
        assert {c["format"] for c in group} == {"zip", "tar"}
    args = [c["args"] for c in CASES]
    assert any(a.get("additive_pos_embed") for a in args)
    assert any(a.get("bottleneck_attention") is False for a in args)
    assert any(a.get("attn_resolutions") for a in args)
    # a regression net saved with PhysicsNeMo's default (positional) embedding
    assert any(c["kind"] == "regression" and "embedding_type" not in c["args"] for c in CASES)
    configs = [c["config"] for c in EXPORTS]
    regression = {c["config"]["embedding_type"] for c in EXPORTS if c["kind"] == "regression"}
    assert regression == {"zero", "positional"}
    assert any(c["additive_pos_embed"] for c in configs)
    assert any(c.get("sigma_data", 0.5) != 0.5 for c in EXPORTS)


def test_positional_regression_uses_its_embedding_layers():
    (case,) = [c for c in CASES if c["name"] == "reg_positional"]
    net = load_mdlus(FIXTURE / case["mdlus"])
    assert net.config.embedding_type == "positional"
    with torch.no_grad():
        net.model.map_layer0.bias.add_(0.5)
    out, ref = _outputs(net, case)
    # the embedding of the zero noise label is part of the answer
    assert (out - ref).abs().max().item() > 1e-3


@pytest.mark.parametrize("case", CASES[:1], ids=[CASES[0]["name"]])
def test_state_dict_keys_match_exactly(case):
    archive = read_mdlus(FIXTURE / case["mdlus"])
    net = load_mdlus(FIXTURE / case["mdlus"])
    assert set(archive.state_dict) == set(net.state_dict())


def _members(path):
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as tar:
            return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


@pytest.mark.parametrize("case", EXPORTS, ids=[c["name"] for c in EXPORTS])
def test_write_mdlus_still_writes_what_physicsnemo_accepted(case, tmp_path):
    stored = FIXTURE / case["mdlus"]
    net = load_mdlus(stored)
    assert net.config.to_dict() == case["config"]
    if case["kind"] == "diffusion":
        assert float(net.sigma_data) == pytest.approx(case["sigma_data"])
    rewritten = write_mdlus(net, tmp_path / case["mdlus"], fmt=case["format"])
    old, new = _members(stored), _members(rewritten)
    assert sorted(old) == sorted(new) == ["args.json", "metadata.json", "model.pt"]
    # args.json and metadata.json (mdlus_file_version above all) as PhysicsNeMo accepted them
    for name in ("args.json", "metadata.json"):
        assert json.loads(new[name]) == json.loads(old[name]), name
    assert json.loads(new["metadata.json"])["mdlus_file_version"] == "0.1.0"
    a, b = (torch.load(io.BytesIO(m["model.pt"]), weights_only=True) for m in (old, new))
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
