"""Finding packages: local folders, the Hugging Face cache (offline), earth2studio Package objects."""

from __future__ import annotations

import pytest

from stormcast_plugin.package import (
    DEFAULT_REPO,
    DEFAULT_REVISION,
    PackageNotFoundError,
    load_package,
    resolve_package,
)
from tests.package.helpers import COMMIT, RemotePackage, _fake_hub_cache, assert_same


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


def test_hf_offline_cache(pkg, official_dir, own_dir, tmp_path, offline, monkeypatch):
    cache = tmp_path / "hub"
    _fake_hub_cache(cache, "org/official", official_dir, COMMIT, "main")
    _fake_hub_cache(cache, "org/exported", own_dir, COMMIT, "main")
    a = load_package("hf://org/official", cache_dir=cache)
    assert a.info["layout"] == "official" and a.info["source"] == "hf://org/official"
    assert_same(pkg, a)
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


def test_earth2studio_package(pkg, own_dir, official_dir, tmp_path, offline):
    from earth2studio.models.auto import Package

    loaded = load_package(Package(str(official_dir)))
    assert loaded.info["layout"] == "official"
    assert load_package(Package(str(own_dir))).info["layout"] == "stormcast-plugin"
    cache = tmp_path / "hub"
    _fake_hub_cache(cache, "org/repo", own_dir, COMMIT, "main")
    hub = load_package(Package(f"hf://org/repo@{COMMIT}"), cache_dir=cache)
    assert_same(pkg, hub)


def test_package_object_on_another_file_system(pkg, own_dir, official_dir, tmp_path):
    loaded = load_package(RemotePackage(own_dir), cache_dir=tmp_path)
    assert loaded.info["source"] == "s3://bucket/stormcast"
    assert_same(pkg, loaded)
    # staging the same root again (now the official layout) starts from an empty folder
    again = load_package(RemotePackage(official_dir), cache_dir=tmp_path)
    assert again.info["layout"] == "official"
