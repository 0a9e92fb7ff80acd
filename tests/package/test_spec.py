"""StormCastPackage: the parts fit together, finite weights."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from tests.package.helpers import COND, STATE


def test_validate_reports_inconsistencies(pkg):
    bad = dataclasses.replace(pkg, state_std=np.where(np.arange(len(STATE)) == 2, 0.0, pkg.state_std))
    with pytest.raises(ValueError, match=r"state_std must be > 0; channels \[2\]"):
        bad.validate()
    bad = dataclasses.replace(pkg, invariants=pkg.invariants[:, :16])
    with pytest.raises(ValueError, match=r"invariants cover a \(16, 32\) grid"):
        bad.validate()
    bad = dataclasses.replace(pkg, conditioning_variables=COND[:-1], conditioning_mean=pkg.conditioning_mean[:-1],
                              conditioning_std=pkg.conditioning_std[:-1])
    with pytest.raises(ValueError, match="takes 16 input channels"):
        bad.validate()
    bad = dataclasses.replace(pkg, state_variables=STATE[:-1] + ("u10m",))
    with pytest.raises(ValueError, match=r"duplicated: \['u10m'\]"):
        bad.validate()


def test_check_finite_weights_counts_and_names_the_tensors(pkg):
    assert pkg.check_finite_weights() is pkg
    bad = dataclasses.replace(pkg, diffusion=copy.deepcopy(pkg.diffusion))
    name, tensor = next((k, v) for k, v in bad.diffusion.state_dict().items() if v.numel() >= 3)
    with torch.no_grad():
        tensor.view(-1)[:3] = torch.tensor([float("nan"), float("inf"), float("-inf")])
    with pytest.raises(ValueError) as info:
        bad.check_finite_weights()
    msg = str(info.value)
    assert "diffusion net has 3 non-finite" in msg and repr(name) in msg and f"(3 of {tensor.numel()})" in msg
