"""The stormcast-plugin layout: round trips, checksums, atomic overwrite."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil

import pytest

from stormcast_plugin.models.nn.mdlus import CheckpointError
from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions
from stormcast_plugin.package import (
    CHECKSUM_NAME,
    MANIFEST_NAME,
    PackageNotFoundError,
    load_package,
    resolve_package,
    save_package,
    write_official_layout,
)
from stormcast_plugin.testing import random_package
from tests.package.helpers import assert_same


def test_own_layout_round_trip(pkg, own_dir):
    names = sorted(p.name for p in own_dir.iterdir())
    assert names == sorted(["README.md", MANIFEST_NAME, CHECKSUM_NAME, "data.safetensors", "diffusion.safetensors",
                            "regression.safetensors"])
    manifest = json.loads((own_dir / MANIFEST_NAME).read_text())
    assert manifest["sampler"]["S_max"] == "inf"
    assert set(manifest["files"]) == set(names) - {MANIFEST_NAME, CHECKSUM_NAME}
    readme = (own_dir / "README.md").read_text()
    assert 'StormCast.load_model("path/to/this/folder")' in readme and "`q5hl`" in readme
    loaded = load_package(own_dir)
    assert loaded.info["layout"] == "stormcast-plugin" and loaded.info["license"] == "Apache-2.0"
    assert_same(pkg, loaded)
    # A file inside the folder and the earth2studio-style file:// URL name the same package.
    assert resolve_package(own_dir / MANIFEST_NAME) == own_dir.resolve()
    assert resolve_package(own_dir / CHECKSUM_NAME) == own_dir.resolve()
    assert resolve_package(f"file://{own_dir}") == own_dir.resolve()


def test_checksum_list_is_sha256sum_format_and_covers_every_file(own_dir):
    lines = (own_dir / CHECKSUM_NAME).read_text().splitlines()
    listed = {}
    for line in lines:
        digest, name = line.split("  ")
        listed[name] = digest
    assert sorted(listed) == sorted(p.name for p in own_dir.iterdir() if p.name != CHECKSUM_NAME)
    for name, digest in listed.items():
        assert hashlib.sha256((own_dir / name).read_bytes()).hexdigest() == digest


def test_own_layout_without_diffusion(pkg, tmp_path):
    reg_only = dataclasses.replace(pkg, diffusion=None)
    out = save_package(reg_only, tmp_path / "reg")
    assert not (out / "diffusion.safetensors").exists()
    loaded = load_package(out)
    assert loaded.diffusion is None
    with pytest.raises(ValueError, match="needs a diffusion net"):
        write_official_layout(reg_only, tmp_path / "official")


def test_noise_memory_round_trips(pkg, tmp_path):
    mem = dataclasses.replace(pkg, sampler=SamplerOptions.from_dict({**pkg.sampler.to_dict(), "noise_memory_h": 6}))
    back = load_package(save_package(mem, tmp_path / "own"))
    assert back.sampler.noise_memory_h == 6.0
    assert "e-folding time 6 h" in (tmp_path / "own" / "README.md").read_text()


def test_checksum_tamper_names_the_file(own_dir, tmp_path):
    copy = shutil.copytree(own_dir, tmp_path / "copy")
    data = bytearray((copy / "data.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (copy / "data.safetensors").write_bytes(bytes(data))
    expected = json.loads((copy / MANIFEST_NAME).read_text())["files"]["data.safetensors"]
    actual = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(CheckpointError, match="data.safetensors") as info:
        load_package(copy)
    assert expected in str(info.value) and actual in str(info.value)
    (copy / "regression.safetensors").unlink()
    with pytest.raises(PackageNotFoundError, match="regression.safetensors"):
        load_package(copy)


def test_overwrite_is_refused_then_atomic(pkg, tmp_path):
    out = save_package(pkg, tmp_path / "pkg")
    before = (out / MANIFEST_NAME).read_text()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_package(pkg, out)
    assert (out / MANIFEST_NAME).read_text() == before
    other = dataclasses.replace(pkg, info={**pkg.info, "name": "renamed"})
    save_package(other, out, overwrite=True)
    assert load_package(out).info["name"] == "renamed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]  # no temporary folders left
    # A failure while writing leaves the old export untouched.
    broken = dataclasses.replace(other, state_std=-other.state_std)
    with pytest.raises(ValueError, match="state_std must be > 0"):
        save_package(broken, out, overwrite=True)
    assert load_package(out).info["name"] == "renamed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


def test_residual_regression_survives_export(tmp_path):
    from stormcast_plugin.models.nn import RegressionNet
    from stormcast_plugin.utils.grid import ModelGrid

    grid = ModelGrid.hrrr(rows=(500, 516), cols=(800, 824))
    pkg = random_package(["u10m", "t2m"], ["z500"], ["lsm"], grid, model_channels=8, seed=2)
    reg = RegressionNet(pkg.regression.config, residual=True)
    reg.load_state_dict(pkg.regression.state_dict())
    pkg = dataclasses.replace(pkg, regression=reg)
    loaded = load_package(save_package(pkg, tmp_path / "p"))
    assert loaded.regression.residual is True


def test_bundled_demo_package_predates_the_checksum_list_and_loads():
    from stormcast_plugin.demo import DEMO_PACKAGE_DIR

    assert not (DEMO_PACKAGE_DIR / CHECKSUM_NAME).exists()
    loaded = load_package(DEMO_PACKAGE_DIR)
    assert loaded.info["name"] == "stormcast-demo" and loaded.local_time
