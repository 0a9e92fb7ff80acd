"""Packages shared by the package tests: one random package, saved in both layouts."""

from __future__ import annotations

import pytest

from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions
from stormcast_plugin.package import save_package, write_official_layout
from stormcast_plugin.testing import random_package
from tests.package.helpers import COND, INV, STATE


@pytest.fixture(scope="module")
def grid():
    from stormcast_plugin.utils.grid import ModelGrid

    return ModelGrid.hrrr(rows=(500, 532), cols=(800, 832))


@pytest.fixture(scope="module")
def pkg(grid):
    p = random_package(STATE, COND, INV, grid, model_channels=8, channel_mult=(1, 2), seed=3)
    p.sampler = SamplerOptions(num_steps=7, sigma_max=400.0, S_churn=0.5)
    p.info["license"] = "Apache-2.0"
    return p


@pytest.fixture(scope="module")
def own_dir(pkg, tmp_path_factory):
    return save_package(pkg, tmp_path_factory.mktemp("own") / "pkg")


@pytest.fixture(scope="module")
def official_dir(pkg, tmp_path_factory):
    return write_official_layout(pkg, tmp_path_factory.mktemp("official") / "pkg")


@pytest.fixture
def offline(monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    return hf_constants
