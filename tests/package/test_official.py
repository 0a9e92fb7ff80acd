"""The official layout: round trips, metadata.zarr.zip as earth2studio reads it, model.yaml."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from stormcast_plugin.models.nn.mdlus import read_mdlus
from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions
from stormcast_plugin.package import PackageFormatError, PackageNotFoundError, load_package, write_official_layout
from tests.package.helpers import COND, STATE, assert_same


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_official_layout_round_trip(pkg, official_dir, tmp_path, fmt):
    folder = official_dir
    if fmt == "tar":
        folder = write_official_layout(pkg, tmp_path / "tar", mdlus_format="tar")
        assert read_mdlus(folder / "StormCastUNet.0.0.mdlus").format == "tar"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["EDMPrecond.0.0.mdlus", "StormCastUNet.0.0.mdlus", "config.json", "metadata.zarr.zip", "model.yaml"]
    )
    loaded = load_package(folder)
    assert loaded.info["layout"] == "official"
    assert_same(pkg, loaded)


def test_official_metadata_reads_like_earth2studio(official_dir):
    import xarray as xr
    import zarr

    store = zarr.storage.ZipStore(str(official_dir / "metadata.zarr.zip"), mode="r")
    try:
        meta = xr.open_zarr(store, zarr_format=2)
        assert list(meta["variable"].values) == list(STATE)
        assert list(meta["conditioning_variable"].values) == list(COND)
        assert meta["invariants"].dims == ("invariant", "y", "x")
        assert meta["invariants"].sel(invariant=["orography"]).shape == (1, 32, 32)
        meta.close()
    finally:
        store.close()


def test_custom_grid_round_trips(pkg, tmp_path):
    from stormcast_plugin.utils.grid import ModelGrid

    y, x = np.arange(32) * 2000.0, np.arange(32) * 2500.0
    lat, lon = np.meshgrid(35 + y / 111e3, 260 + x / 90e3, indexing="ij")
    grid = ModelGrid.from_arrays(y, x, lat, lon, projection={"grid_mapping_name": "transverse_mercator"},
                                 name="my-domain")
    custom = dataclasses.replace(pkg, grid=grid)
    loaded = load_package(write_official_layout(custom, tmp_path / "custom"))
    assert loaded.grid.name == "my-domain"
    np.testing.assert_array_equal(loaded.grid.lat, grid.lat)
    np.testing.assert_array_equal(loaded.grid.x, x)


def test_noise_memory_is_refused_by_the_official_layout(pkg, tmp_path):
    import yaml

    mem = dataclasses.replace(pkg, sampler=SamplerOptions.from_dict({**pkg.sampler.to_dict(), "noise_memory_h": 6}))
    with pytest.raises(ValueError, match=r"noise_memory_h = 6 h.*set it to 0.*save_package"):
        write_official_layout(mem, tmp_path / "official")
    assert not (tmp_path / "official").exists()
    # without it, the official model.yaml lists only the reference's sampler arguments
    folder = write_official_layout(pkg, tmp_path / "plain")
    args = yaml.safe_load((folder / "model.yaml").read_text())["sampler_args"]
    assert "noise_memory_h" not in args and args["num_steps"] == pkg.sampler.num_steps


def test_official_invariant_selection_and_defaults(official_dir, tmp_path):
    folder = shutil.copytree(official_dir, tmp_path / "sel")
    (folder / "model.yaml").write_text(
        "model:\n  channels: ${eval:'1+1'}\n"  # interpolations in keys we ignore are fine
        "data:\n  invariants: [orography, lsm]\nsampler_args: null\n"
    )
    loaded = load_package(folder)
    assert loaded.invariant_names == ("orography", "lsm")
    np.testing.assert_array_equal(loaded.invariants, load_package(official_dir).invariants[::-1])
    assert loaded.sampler == SamplerOptions()
    (folder / "model.yaml").write_text("sampler_args:\n  sigma_max: 88\n  solver: euler\n")
    with pytest.warns(UserWarning, match=r"ignoring sampler_args \['solver'\]"):
        assert load_package(folder).sampler == SamplerOptions(sigma_max=88.0)
    (folder / "model.yaml").write_text("data:\n  invariants: [lsm, snow]\n")
    with pytest.raises(PackageFormatError, match=r"\['snow'\]"):
        load_package(folder)


@pytest.mark.parametrize(
    "yaml_text, where",
    [
        (
            "sampler_args:\n  sigma_max: \"${eval:'__import__(\\\"os\\\").mkdir(\\\"PWNED\\\")'}\"\n",
            "sampler_args.sigma_max",
        ),
        ("data:\n  invariants: ${eval:'[\"lsm\", \"orography\"]'}\n", "data.invariants"),
    ],
)
def test_model_yaml_interpolation_is_refused(official_dir, tmp_path, monkeypatch, yaml_text, where):
    folder = shutil.copytree(official_dir, tmp_path / "evil")
    (folder / "model.yaml").write_text(yaml_text)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PackageFormatError, match="interpolation") as info:
        load_package(folder)
    assert where in str(info.value) and "literal value" in str(info.value)
    assert not (tmp_path / "PWNED").exists()


def test_missing_official_file(official_dir, tmp_path):
    folder = shutil.copytree(official_dir, tmp_path / "partial")
    (folder / "metadata.zarr.zip").unlink()
    with pytest.raises(PackageNotFoundError, match=r"missing \['metadata.zarr.zip'\]") as info:
        load_package(folder)
    assert "save_package" in str(info.value)
    with pytest.raises(PackageNotFoundError, match="does not exist"):
        load_package(tmp_path / "nowhere")
