"""Hostile and damaged packages: each case fails cleanly, early, and without reading outside the package."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shutil
import stat
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest
import torch

from stormcast_plugin.models.nn.mdlus import CheckpointError
from stormcast_plugin.package import (
    MANIFEST_NAME,
    PackageFormatError,
    load_package,
    save_package,
    write_official_layout,
)
from tests.package.helpers import RemotePackage, assert_same

CHECKSUMS = "stormcast_package.sha256"
META = "metadata.zarr.zip"


# ------------------------------------------------------------------ helpers
def _rewrite_zip(src: Path, dst: Path, replace: dict[str, bytes] | None = None,
                 compress: dict[str, int] | None = None) -> None:
    """Copy the zip ``src`` to ``dst`` with some members' bytes (and compression) replaced."""
    replace, compress = replace or {}, compress or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = replace.get(info.filename, zin.read(info.filename))
            zout.writestr(info.filename, data, compress_type=compress.get(info.filename, zipfile.ZIP_STORED))


def _with_array_meta(src: Path, dst: Path, name: str, **changes) -> None:
    """Change array ``name``'s metadata in both the consolidated and the per-array copy."""
    with zipfile.ZipFile(src) as z:
        consolidated = json.loads(z.read(".zmetadata"))
        array = json.loads(z.read(f"{name}/.zarray"))
    array.update(changes)
    consolidated["metadata"][f"{name}/.zarray"] = array
    _rewrite_zip(src, dst, {".zmetadata": json.dumps(consolidated).encode(),
                            f"{name}/.zarray": json.dumps(array).encode()})


def _with_dims(src: Path, dst: Path, sizes: dict[str, int]) -> None:
    """Declare new sizes for some dimensions, consistently in every array that uses them (nothing else changes)."""
    with zipfile.ZipFile(src) as z:
        consolidated = json.loads(z.read(".zmetadata"))
    meta = consolidated["metadata"]
    changed = {}
    for key, array in meta.items():
        if key.endswith("/.zarray"):
            dims = meta[key.replace(".zarray", ".zattrs")]["_ARRAY_DIMENSIONS"]
            array["shape"] = [sizes.get(d, n) for d, n in zip(dims, array["shape"])]
            array["chunks"] = list(array["shape"])
            changed[key] = json.dumps(array).encode()
    _rewrite_zip(src, dst, {".zmetadata": json.dumps(consolidated).encode(), **changed})


def _official_copy(official_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "official"
    shutil.copytree(official_dir, folder)
    (folder / META).unlink()
    return folder


def _load_bounded(folder: Path, limit: int = 256 << 20):
    """Load ``folder`` and assert that Python allocated less than ``limit`` bytes on the way
    (the hostile sizes declare gigabytes; imports on first use take tens of megabytes)."""
    tracemalloc.start()
    try:
        return load_package(folder)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < limit, f"loading allocated {peak} bytes"


def _edit_manifest(folder: Path, edit, *, update_checksum_list: bool) -> None:
    path = folder / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest, indent=2))
    if update_checksum_list and (folder / CHECKSUMS).exists():
        # an editor who also recomputes the manifest's line of the checksum list
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines = [f"{digest}  {MANIFEST_NAME}" if line.endswith(f"  {MANIFEST_NAME}") else line
                 for line in (folder / CHECKSUMS).read_text().splitlines()]
        (folder / CHECKSUMS).write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------ a. metadata.zarr.zip
@pytest.mark.parametrize("sizes, named", [
    ({"variable": 10 ** 9}, "'variable' declares shape (1000000000,)"),
    ({"conditioning_variable": 10 ** 9}, "'conditioning_variable' declares shape (1000000000,)"),
    ({"invariant": 10 ** 7}, "invariants declares 10000000 fields"),
    ({"y": 10 ** 5, "x": 10 ** 5}, "'invariants' declares shape (2, 100000, 100000)"),
])
def test_huge_declared_sizes_are_refused_before_allocation(official_dir, tmp_path, sizes, named):
    folder = _official_copy(official_dir, tmp_path)
    _with_dims(official_dir / META, folder / META, sizes)
    with pytest.raises(PackageFormatError) as info:
        _load_bounded(folder)
    msg = str(info.value)
    assert META in msg and named in msg and "\n" not in msg


def test_huge_custom_grid_is_refused_before_allocation(pkg, tmp_path):
    from stormcast_plugin.utils.grid import ModelGrid

    grid = ModelGrid.from_arrays(pkg.grid.y, pkg.grid.x, pkg.grid.lat, pkg.grid.lon, name="custom")
    source = write_official_layout(dataclasses.replace(pkg, grid=grid), tmp_path / "source")
    folder = _official_copy(source, tmp_path)
    _with_dims(source / META, folder / META, {"y": 10 ** 5, "x": 10 ** 5})
    with pytest.raises(PackageFormatError, match=r"the grid declares y \(100000,\) and x \(100000,\)"):
        _load_bounded(folder)


def test_chunks_larger_than_the_array_are_refused(official_dir, tmp_path):
    folder = _official_copy(official_dir, tmp_path)
    _with_array_meta(official_dir / META, folder / META, "conditioning_means", chunks=[2 ** 40])
    with pytest.raises(PackageFormatError, match="'conditioning_means' declares chunks"):
        _load_bounded(folder)


def test_zip_member_declaring_more_than_its_chunk_is_not_inflated(official_dir, tmp_path):
    folder = _official_copy(official_dir, tmp_path)
    bomb = bytes(200 << 20)  # 200 MB of zeros deflate to 200 kB
    _rewrite_zip(official_dir / META, folder / META, {"invariants/0.0.0": bomb},
                 {"invariants/0.0.0": zipfile.ZIP_DEFLATED})
    with pytest.raises(PackageFormatError, match=r"invariants/0\.0\.0.*declares 209715200 bytes") as info:
        _load_bounded(folder)
    assert META in str(info.value)


def test_compressed_chunk_declaring_a_huge_size_is_not_inflated(official_dir, tmp_path):
    folder = _official_copy(official_dir, tmp_path)
    with zipfile.ZipFile(official_dir / META) as z:
        chunk = bytearray(z.read("invariants/0.0.0"))
    chunk[4:8] = (1 << 30).to_bytes(4, "little")  # the blosc header's uncompressed size
    _rewrite_zip(official_dir / META, folder / META, {"invariants/0.0.0": bytes(chunk)})
    with pytest.raises(PackageFormatError, match="declares 1073741824 bytes once inflated"):
        _load_bounded(folder)


def test_zlib_chunk_inflating_beyond_its_size_is_stopped(official_dir, tmp_path):
    folder = _official_copy(official_dir, tmp_path)
    _with_array_meta(official_dir / META, tmp_path / "meta.zip", "means", compressor={"id": "zlib", "level": 1})
    _rewrite_zip(tmp_path / "meta.zip", folder / META, {"means/0": zlib.compress(bytes(4 << 10))})
    with pytest.raises(PackageFormatError, match="means/0.*inflates beyond the 32 bytes"):
        _load_bounded(folder)


def _garbage(src: Path, dst: Path) -> None:
    dst.write_bytes(b"this is not a zip file\n" * 10)


def _truncated(src: Path, dst: Path) -> None:
    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])


def _bad_crc(src: Path, dst: Path) -> None:
    data = bytearray(src.read_bytes())
    with zipfile.ZipFile(src) as z:
        info = z.getinfo("invariants/0.0.0")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 100
    data[start] ^= 0xFF
    dst.write_bytes(bytes(data))


def _bad_json(src: Path, dst: Path) -> None:
    _rewrite_zip(src, dst, {".zmetadata": b'{"metadata": {"variable/.zarray": '})


@pytest.mark.parametrize("damage", [_garbage, _truncated, _bad_crc, _bad_json])
def test_corrupt_metadata_gives_one_line_naming_the_file(official_dir, tmp_path, damage):
    folder = _official_copy(official_dir, tmp_path)
    damage(official_dir / META, folder / META)
    with pytest.raises(PackageFormatError) as info:
        load_package(folder)
    msg = str(info.value)
    assert str(folder / META) in msg and "\n" not in msg


def test_bounded_reader_reads_what_earth2studio_writes(pkg, official_dir):
    # the official files round-trip through the bounded reader (blosc chunks, fixed-width strings)
    assert_same(pkg, load_package(official_dir))


# ------------------------------------------------------------------ b. integrity of exports
def test_manifest_edit_is_caught_by_its_checksum(own_dir, tmp_path):
    folder = shutil.copytree(own_dir, tmp_path / "copy")

    def swap(m):
        m["state_variables"][0], m["state_variables"][1] = m["state_variables"][1], m["state_variables"][0]

    _edit_manifest(folder, swap, update_checksum_list=False)
    with pytest.raises(CheckpointError, match=f"checksum mismatch for .*{MANIFEST_NAME}.*{CHECKSUMS}"):
        load_package(folder)


@pytest.mark.parametrize("with_list", [True, False], ids=["export", "older-export"])
def test_manifest_cannot_point_at_an_unchecked_file(pkg, own_dir, tmp_path, with_list):
    folder = shutil.copytree(own_dir, tmp_path / "copy")
    if not with_list:
        (folder / CHECKSUMS).unlink()
    other = copy.deepcopy(pkg)
    with torch.no_grad():
        next(other.regression.parameters()).add_(1.0)
    save_package(other, tmp_path / "other")
    shutil.copy(tmp_path / "other" / "regression.safetensors", folder / "evil.safetensors")
    _edit_manifest(folder, lambda m: m["regression"].update(file="evil.safetensors"), update_checksum_list=True)
    with pytest.raises(PackageFormatError, match="regression.file is 'evil.safetensors', which no checksum covers"):
        load_package(folder)


@pytest.mark.parametrize("where", ["absolute", "relative"])
@pytest.mark.parametrize("with_list", [True, False], ids=["export", "older-export"])
def test_manifest_cannot_point_outside_the_folder(own_dir, tmp_path, where, with_list):
    folder = shutil.copytree(own_dir, tmp_path / "pkg" / "copy")
    if not with_list:
        (folder / CHECKSUMS).unlink()
    outside = tmp_path / "pkg" / "data.safetensors"
    shutil.copy(folder / "data.safetensors", outside)
    name = str(outside) if where == "absolute" else "../data.safetensors"

    def point(m):
        m["data"]["file"] = name
        m["files"][name] = m["files"]["data.safetensors"]

    _edit_manifest(folder, point, update_checksum_list=True)
    with pytest.raises(PackageFormatError, match="must be a file name beside the manifest|not a file name inside"):
        load_package(folder)


def test_packages_without_the_checksum_list_load_with_their_old_checks(pkg, own_dir, tmp_path):
    from stormcast_plugin.demo import DEMO_PACKAGE_DIR

    before = {p.name: p.read_bytes() for p in DEMO_PACKAGE_DIR.iterdir()}
    assert CHECKSUMS not in before
    assert load_package(DEMO_PACKAGE_DIR).info["name"] == "stormcast-demo"
    assert {p.name: p.read_bytes() for p in DEMO_PACKAGE_DIR.iterdir()} == before  # nothing rewritten
    folder = shutil.copytree(own_dir, tmp_path / "older")
    (folder / CHECKSUMS).unlink()
    assert_same(pkg, load_package(folder))
    data = bytearray((folder / "data.safetensors").read_bytes())
    data[-1] ^= 1
    (folder / "data.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"data.safetensors.*{MANIFEST_NAME} records"):
        load_package(folder)


def test_damaged_checksum_list_is_refused(own_dir, tmp_path):
    folder = shutil.copytree(own_dir, tmp_path / "copy")
    (folder / CHECKSUMS).write_text("0" * 64 + "  ../../etc/passwd\n")
    with pytest.raises(PackageFormatError, match="line 1"):
        load_package(folder)
    (folder / CHECKSUMS).write_text("0" * 64 + "  README.md\n")
    with pytest.raises(PackageFormatError, match=f"does not cover {MANIFEST_NAME}"):
        load_package(folder)


def test_staging_refuses_names_that_leave_the_stage(own_dir, tmp_path):
    folder = shutil.copytree(own_dir, tmp_path / "a" / "b" / "remote")
    (tmp_path / "a" / "escaped").write_text("served from outside the package")
    _edit_manifest(folder, lambda m: m["files"].update({"../../escaped": "0" * 64}), update_checksum_list=True)
    with pytest.raises(PackageFormatError, match=r"lists \['\.\./\.\./escaped'\] in 'files'; each entry must be a file name"):
        load_package(RemotePackage(folder), cache_dir=tmp_path / "cache")
    assert [p for p in tmp_path.rglob("escaped")] == [tmp_path / "a" / "escaped"]


# ------------------------------------------------------------------ c. the staging folder
@pytest.fixture
def temp_root(tmp_path, monkeypatch):
    import tempfile

    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_staging_folder_is_private(pkg, own_dir, temp_root):
    loaded = load_package(RemotePackage(own_dir))
    assert_same(pkg, loaded)
    created = [p for p in temp_root.rglob("*") if p.is_dir() and not p.is_symlink()]
    assert created
    for path in created:
        st = os.lstat(path)
        assert stat.S_IMODE(st.st_mode) == 0o700, path
        assert st.st_uid == os.getuid()


def test_staging_folder_open_to_others_is_refused(own_dir, temp_root):
    shared = temp_root / f"stormcast_plugin-{os.getuid()}"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(PermissionError, match=f"{shared}.*mode 0777.*chmod 700"):
        load_package(RemotePackage(own_dir))


def test_staging_folder_planted_as_a_link_is_refused(own_dir, temp_root, tmp_path):
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (temp_root / f"stormcast_plugin-{os.getuid()}").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PermissionError, match="not a folder"):
        load_package(RemotePackage(own_dir))
    assert not any((tmp_path / "elsewhere").iterdir())


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a folder away needs root")
def test_staging_folder_of_another_user_is_refused(own_dir, temp_root):
    theirs = temp_root / f"stormcast_plugin-{os.getuid()}"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 12345, 12345)
    with pytest.raises(PermissionError, match="belongs to user id 12345"):
        load_package(RemotePackage(own_dir))


# ------------------------------------------------------------------ d. permissions of exports
@pytest.mark.parametrize("umask, dir_mode, file_mode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
@pytest.mark.parametrize("writer", [save_package, write_official_layout])
def test_exports_get_the_usual_permissions(pkg, tmp_path, umask, dir_mode, file_mode, writer):
    old = os.umask(umask)
    try:
        out = writer(pkg, tmp_path / "out")
        replaced = writer(pkg, tmp_path / "out", overwrite=True)
    finally:
        os.umask(old)
    for folder in (out, replaced):
        assert stat.S_IMODE(folder.stat().st_mode) == dir_mode
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
        assert set(modes.values()) == {file_mode}, modes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ------------------------------------------------------------------ e. non-finite weights
@pytest.mark.parametrize("writer", [save_package, write_official_layout])
def test_non_finite_weights_are_not_exported(pkg, tmp_path, writer):
    bad = dataclasses.replace(pkg, regression=copy.deepcopy(pkg.regression))
    name, tensor = next((k, v) for k, v in bad.regression.state_dict().items() if v.numel() > 4)
    with torch.no_grad():
        tensor.view(-1)[:2] = float("nan")
        tensor.view(-1)[2] = float("inf")
    with pytest.raises(ValueError, match=rf"regression net has 3 non-finite .* '{name}' \(3 of "):
        writer(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
