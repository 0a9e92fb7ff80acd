"""Equality with PhysicsNeMo's StormCast networks on stored reference outputs.

The fixture under tests/fixtures/physicsnemo was written by
scripts/make_physicsnemo_fixture.py in an environment with PhysicsNeMo: small
random-weight networks saved as .mdlus archives (zip and tar), their inputs
and their outputs. Here the archives are loaded without PhysicsNeMo and must
reproduce those outputs to 1e-5 in float32.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stormcast_plugin.models.nn import EDMPrecond, RegressionNet
from stormcast_plugin.models.nn.mdlus import load_mdlus, read_mdlus

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "physicsnemo"
CASES = json.loads((FIXTURE / "manifest.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_outputs_equal_physicsnemo(case):
    net = load_mdlus(FIXTURE / case["mdlus"])
    arrays = np.load(FIXTURE / case["arrays"])
    x = torch.from_numpy(arrays["x"])
    with torch.no_grad():
        if case["kind"] == "regression":
            assert isinstance(net, RegressionNet)
            out = net(x)
        else:
            assert isinstance(net, EDMPrecond)
            out = net(x, torch.from_numpy(arrays["sigma"]), torch.from_numpy(arrays["condition"]))
    ref = torch.from_numpy(arrays["out"])
    assert out.shape == ref.shape
    err = (out - ref).abs().max().item()
    assert err <= 1e-5, f"{case['name']}: max abs difference {err:.3e} > 1e-5"
    # The reference outputs are not trivially small: a broken layer would show.
    assert ref.abs().max().item() > 1e-2


def test_fixture_covers_both_formats_and_features():
    formats = {c["format"] for c in CASES}
    assert formats == {"zip", "tar"}
    args = [c["args"] for c in CASES]
    assert any(a.get("additive_pos_embed") for a in args)
    assert any(a.get("bottleneck_attention") is False for a in args)
    assert any(a.get("attn_resolutions") for a in args)


@pytest.mark.parametrize("case", CASES[:1], ids=[CASES[0]["name"]])
def test_state_dict_keys_match_exactly(case):
    archive = read_mdlus(FIXTURE / case["mdlus"])
    net = load_mdlus(FIXTURE / case["mdlus"])
    assert set(archive.state_dict) == set(net.state_dict())
