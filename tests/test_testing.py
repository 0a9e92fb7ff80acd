"""stormcast_plugin.testing: random packages of plausible magnitude."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from stormcast_plugin.testing import random_package
from tests.package.helpers import COND, INV, STATE, inputs, outputs


def test_random_package_is_plausible_and_nontrivial():
    from stormcast_plugin.utils.grid import ModelGrid

    grid = ModelGrid.hrrr(rows=(500, 532), cols=(800, 832))
    pkg = random_package(STATE, COND, INV, grid, model_channels=8, channel_mult=(1, 2), seed=3)
    pkg.validate()
    stats = dict(zip(pkg.state_variables, zip(pkg.state_mean, pkg.state_std)))
    assert 270 < stats["t2m"][0] < 300 and stats["msl"][0] == pytest.approx(101325)
    assert 0 < stats["q5hl"][0] < 0.02 and stats["p5hl"][0] > 50000
    assert set(np.unique(pkg.invariants[0])) <= {0.0, 1.0} and (pkg.invariants[1] > 0).all()
    r, d = outputs(pkg)
    assert r.abs().mean() > 1e-3 and torch.isfinite(d).all()
    x, _ = inputs(pkg)
    assert not torch.allclose(d, x, atol=1e-3)
    again = random_package(STATE, COND, INV, pkg.grid, model_channels=8, channel_mult=(1, 2), seed=3)
    assert torch.equal(outputs(again)[0], r)
    with pytest.raises(ValueError, match="state_variables is empty"):
        random_package([], COND, INV, grid)


def test_importing_it_loads_no_torch():
    code = "import sys, stormcast_plugin.testing; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
