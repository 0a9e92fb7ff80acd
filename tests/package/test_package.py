"""Package loading, export, validation and resolution (local, Hub cache, earth2studio)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions
from stormcast_plugin.models.nn.mdlus import CheckpointError, read_mdlus
from stormcast_plugin.package._impl import (
    DEFAULT_REPO,
    DEFAULT_REVISION,
    MANIFEST_NAME,
    PackageFormatError,
    PackageNotFoundError,
    StormCastPackage,
    load_package,
    random_package,
    resolve_package,
    save_package,
    write_official_layout,
)

STATE = ("u10m", "v10m", "t2m", "msl", "q5hl", "Z5hl", "p5hl", "refc")
COND = ("u10m", "t2m", "tcwv", "sp", "z500", "q850")
INV = ("lsm", "orography")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # These networks are tiny: extra threads only add contention on a busy machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


def _inputs(pkg: StormCastPackage):
    g = torch.Generator().manual_seed(0)
    h, w = pkg.invariants.shape[1:]
    c, ce = len(pkg.state_variables), len(pkg.conditioning_variables)
    x = torch.randn(2, c, h, w, generator=g)
    e = torch.randn(2, ce, h, w, generator=g)
    return x, e


def _outputs(pkg: StormCastPackage):
    x, e = _inputs(pkg)
    inv = torch.from_numpy(pkg.invariants)[None].expand(2, -1, -1, -1)
    with torch.no_grad():
        r = pkg.regression(torch.cat([x, e, inv], 1))
        d = pkg.diffusion(x, torch.tensor([0.3, 5.0]), torch.cat([x, r, inv], 1))
    return r, d


def _assert_same(a: StormCastPackage, b: StormCastPackage) -> None:
    assert a.state_variables == b.state_variables
    assert a.conditioning_variables == b.conditioning_variables
    assert a.invariant_names == b.invariant_names
    for name in ("state_mean", "state_std", "conditioning_mean", "conditioning_std", "invariants"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert getattr(b, name).dtype == np.float32
    assert a.regression.config == b.regression.config
    assert a.diffusion.config == b.diffusion.config
    assert float(a.diffusion.sigma_data) == float(b.diffusion.sigma_data)
    for na, nb in ((a.regression, b.regression), (a.diffusion, b.diffusion)):
        sa, sb = na.state_dict(), nb.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.sampler == b.sampler
    assert a.grid.fingerprint() == b.grid.fingerprint()
    np.testing.assert_array_equal(a.grid.lat, b.grid.lat)
    np.testing.assert_array_equal(a.grid.x, b.grid.x)
    for oa, ob in zip(_outputs(a), _outputs(b)):
        assert torch.equal(oa, ob)


# ------------------------------------------------------------------ random packages and validation
def test_random_package_is_plausible_and_nontrivial(pkg):
    pkg.validate()
    stats = dict(zip(pkg.state_variables, zip(pkg.state_mean, pkg.state_std)))
    assert 270 < stats["t2m"][0] < 300 and stats["msl"][0] == pytest.approx(101325)
    assert 0 < stats["q5hl"][0] < 0.02 and stats["p5hl"][0] > 50000
    assert set(np.unique(pkg.invariants[0])) <= {0.0, 1.0} and (pkg.invariants[1] > 0).all()
    r, d = _outputs(pkg)
    assert r.abs().mean() > 1e-3 and torch.isfinite(d).all()
    x, _ = _inputs(pkg)
    assert not torch.allclose(d, x, atol=1e-3)
    again = random_package(STATE, COND, INV, pkg.grid, model_channels=8, channel_mult=(1, 2), seed=3)
    assert torch.equal(_outputs(again)[0], r)


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


# ------------------------------------------------------------------ own layout
def test_own_layout_round_trip(pkg, own_dir):
    names = sorted(p.name for p in own_dir.iterdir())
    assert names == sorted(["README.md", MANIFEST_NAME, "data.safetensors", "diffusion.safetensors",
                            "regression.safetensors"])
    manifest = json.loads((own_dir / MANIFEST_NAME).read_text())
    assert manifest["sampler"]["S_max"] == "inf"
    assert set(manifest["files"]) == set(names) - {MANIFEST_NAME}
    readme = (own_dir / "README.md").read_text()
    assert 'StormCast.load_model("path/to/this/folder")' in readme and "`q5hl`" in readme
    loaded = load_package(own_dir)
    assert loaded.info["layout"] == "stormcast-plugin" and loaded.info["license"] == "Apache-2.0"
    _assert_same(pkg, loaded)
    # A file inside the folder and the earth2studio-style file:// URL name the same package.
    assert resolve_package(own_dir / MANIFEST_NAME) == own_dir.resolve()
    assert resolve_package(f"file://{own_dir}") == own_dir.resolve()


def test_own_layout_without_diffusion(pkg, tmp_path):
    reg_only = dataclasses.replace(pkg, diffusion=None)
    out = save_package(reg_only, tmp_path / "reg")
    assert not (out / "diffusion.safetensors").exists()
    loaded = load_package(out)
    assert loaded.diffusion is None
    with pytest.raises(ValueError, match="needs a diffusion net"):
        write_official_layout(reg_only, tmp_path / "official")


def test_noise_memory_round_trips_and_is_refused_by_the_official_layout(pkg, tmp_path):
    from stormcast_plugin.models.nn.stormcast_nets import SamplerOptions

    mem = dataclasses.replace(pkg, sampler=SamplerOptions.from_dict({**pkg.sampler.to_dict(), "noise_memory_h": 6}))
    back = load_package(save_package(mem, tmp_path / "own"))
    assert back.sampler.noise_memory_h == 6.0
    assert "e-folding time 6 h" in (tmp_path / "own" / "README.md").read_text()
    with pytest.raises(ValueError, match=r"noise_memory_h = 6 h.*set it to 0.*save_package"):
        write_official_layout(mem, tmp_path / "official")
    assert not (tmp_path / "official").exists()
    # without it, the official model.yaml lists only the reference's sampler arguments
    import yaml

    folder = write_official_layout(pkg, tmp_path / "plain")
    args = yaml.safe_load((folder / "model.yaml").read_text())["sampler_args"]
    assert "noise_memory_h" not in args and args["num_steps"] == pkg.sampler.num_steps


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


# ------------------------------------------------------------------ official layout
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
    _assert_same(pkg, loaded)


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


def test_bad_sources(tmp_path):
    with pytest.raises(ValueError, match="unsupported scheme"):
        resolve_package("s3://bucket/pkg")
    with pytest.raises(ValueError, match="hf://org/repo"):
        resolve_package("hf://just-a-name")
    with pytest.raises(ValueError, match="two revisions"):
        resolve_package("hf://org/repo@a", revision="b")
    with pytest.raises(ValueError, match="applies only to 'hf://'"):
        resolve_package(tmp_path, revision="main")
    with pytest.raises(TypeError, match="expected a folder path"):
        resolve_package(42)


# ------------------------------------------------------------------ Hugging Face cache (offline)
def _fake_hub_cache(cache: Path, repo_id: str, files_from: Path, commit: str, ref: str | None) -> None:
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    for f in files_from.iterdir():
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        try:
            (snap / f.name).symlink_to(os.path.relpath(blob, snap))
        except OSError:
            shutil.copyfile(blob, snap / f.name)
    if ref is not None:
        (repo / "refs").mkdir()
        (repo / "refs" / ref).write_text(commit)


@pytest.fixture
def offline(monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    return hf_constants


def test_hf_offline_cache(pkg, official_dir, own_dir, tmp_path, offline, monkeypatch):
    cache = tmp_path / "hub"
    _fake_hub_cache(cache, "org/official", official_dir, COMMIT, "main")
    _fake_hub_cache(cache, "org/exported", own_dir, COMMIT, "main")
    a = load_package("hf://org/official", cache_dir=cache)
    assert a.info["layout"] == "official" and a.info["source"] == "hf://org/official"
    _assert_same(pkg, a)
    b = load_package(f"hf://org/exported@{COMMIT}", cache_dir=cache)
    assert b.info["layout"] == "stormcast-plugin"
    assert resolve_package("hf://org/exported", revision=COMMIT, cache_dir=cache) == resolve_package(
        "hf://org/exported", cache_dir=cache
    )
    # The default cache location (HF_HOME / HF_HUB_CACHE) is honoured too.
    monkeypatch.setattr(offline, "HF_HUB_CACHE", str(cache))
    assert resolve_package("hf://org/official").parent.name == "snapshots"


def test_hf_default_package_is_pinned(official_dir, tmp_path, offline, monkeypatch):
    cache = tmp_path / "hub"
    _fake_hub_cache(cache, DEFAULT_REPO, official_dir, DEFAULT_REVISION, ref=None)  # no refs/main
    monkeypatch.setattr(offline, "HF_HUB_CACHE", str(cache))
    assert resolve_package().name == DEFAULT_REVISION
    assert resolve_package(f"hf://{DEFAULT_REPO}").name == DEFAULT_REVISION


def test_hf_uncached_offline_explains_what_to_do(tmp_path, offline):
    with pytest.raises(PackageNotFoundError) as info:
        load_package("hf://org/missing@v1", cache_dir=tmp_path / "empty")
    msg = str(info.value)
    assert "hf://org/missing@v1" in msg and "huggingface-cli download org/missing --revision v1" in msg
    assert "HF_HOME" in msg and "folder" in msg
    with pytest.raises(FileNotFoundError):  # PackageNotFoundError is a FileNotFoundError
        load_package(f"hf://{DEFAULT_REPO}", cache_dir=tmp_path / "empty")


# ------------------------------------------------------------------ earth2studio Package
def test_earth2studio_package(pkg, own_dir, official_dir, tmp_path, offline):
    from earth2studio.models.auto import Package

    loaded = load_package(Package(str(official_dir)))
    assert loaded.info["layout"] == "official"
    assert load_package(Package(str(own_dir))).info["layout"] == "stormcast-plugin"
    cache = tmp_path / "hub"
    _fake_hub_cache(cache, "org/repo", own_dir, COMMIT, "main")
    hub = load_package(Package(f"hf://org/repo@{COMMIT}"), cache_dir=cache)
    _assert_same(pkg, hub)


def test_package_object_on_another_file_system(pkg, own_dir, tmp_path):
    class RemotePackage:  # duck-typed like earth2studio's Package for, say, s3:// or ngc://
        root = "s3://bucket/stormcast"

        def resolve(self, name):
            if not (own_dir / name).is_file():
                raise FileNotFoundError(name)
            return str(own_dir / name)

    loaded = load_package(RemotePackage(), cache_dir=tmp_path)
    assert loaded.info["source"] == "s3://bucket/stormcast"
    _assert_same(pkg, loaded)


def test_residual_regression_survives_export(tmp_path):
    import dataclasses

    from stormcast_plugin.utils.grid import ModelGrid
    from stormcast_plugin.models.nn import RegressionNet
    from stormcast_plugin.package._impl import load_package, random_package, save_package

    grid = ModelGrid.hrrr(rows=(500, 516), cols=(800, 824))
    pkg = random_package(["u10m", "t2m"], ["z500"], ["lsm"], grid, model_channels=8, seed=2)
    reg = RegressionNet(pkg.regression.config, residual=True)
    reg.load_state_dict(pkg.regression.state_dict())
    pkg = dataclasses.replace(pkg, regression=reg)
    loaded = load_package(save_package(pkg, tmp_path / "p"))
    assert loaded.regression.residual is True
