"""The bounded zarr-in-a-zip reader reads what xarray and zarr write, in every supported encoding."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from stormcast_plugin.package import PackageFormatError
from stormcast_plugin.package.zarr_zip import ZarrZip


def _zip_folder(folder: Path, path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for root, _, files in os.walk(folder):
            for name in files:
                full = Path(root) / name
                zf.write(full, full.relative_to(folder).as_posix())
    return path


@pytest.mark.parametrize("codec", [None, "Zstd", "Zlib", "GZip", "LZ4", "BZ2", "LZMA", "Blosc"])
def test_reads_what_xarray_writes(tmp_path, codec):
    import numcodecs
    import xarray as xr

    rng = np.random.default_rng(0)
    inv = rng.normal(size=(3, 37, 45)).astype(np.float32)
    names = np.array(["lsm", "orography", "a_much_longer_name"], dtype=object)  # vlen-utf8 strings
    ds = xr.Dataset({"invariants": (("invariant", "y", "x"), inv),
                     "m": ("invariant", np.array([1.0, -9999.0, 3.0]))},
                    coords={"invariant": names, "code": ("invariant", np.array(["a", "bb", "ccc"]))})
    compressor = None if codec is None else getattr(numcodecs, codec)()
    ds.to_zarr(tmp_path / "store", zarr_format=2, consolidated=True,
               encoding={"invariants": {"chunks": (2, 16, 20), "compressors": compressor},
                         "m": {"_FillValue": -9999.0}})
    with ZarrZip(_zip_folder(tmp_path / "store", tmp_path / "store.zip")) as z:
        assert z.shape("invariants") == (3, 37, 45) and z.dims("invariants") == ("invariant", "y", "x")
        np.testing.assert_array_equal(z.read("invariants", (3, 37, 45)), inv)  # edge chunks included
        assert list(z.read("invariant", (3,))) == list(names)
        assert list(z.read("code", (3,))) == ["a", "bb", "ccc"]
        np.testing.assert_array_equal(z.read("m", (3,)), [1.0, np.nan, 3.0])  # the fill value reads as NaN, as in xarray
        with pytest.raises(PackageFormatError, match=r"'invariants' declares shape \(3, 37, 45\); the package needs"):
            z.read("invariants", (3, 37, 44))


def test_fortran_order_slash_separated_big_endian_and_bytes(tmp_path):
    import zarr

    a = np.arange(35, dtype=">f8").reshape(5, 7)
    group = zarr.open_group(str(tmp_path / "store"), mode="w", zarr_format=2)
    arr = group.create_array("a", shape=a.shape, chunks=(2, 3), dtype=">f8", order="F", compressors=None,
                              chunk_key_encoding={"name": "v2", "separator": "/"}, fill_value=np.nan)
    arr[:] = a
    s = group.create_array("s", shape=(2,), chunks=(2,), dtype="S5", compressors=None, fill_value=b"")
    s[:] = np.array([b"ab", b"cdefg"])
    with ZarrZip(_zip_folder(tmp_path / "store", tmp_path / "store.zip")) as z:
        np.testing.assert_array_equal(z.read("a", (5, 7)), a)
        assert list(z.read("s", (2,))) == ["ab", "cdefg"]
        with pytest.raises(PackageFormatError, match="lacks the array 'b'"):
            z.read("b", (1,))


def test_missing_float_chunk_reads_as_nan_and_missing_name_chunk_is_an_error(tmp_path):
    import zarr

    group = zarr.open_group(str(tmp_path / "store"), mode="w", zarr_format=2)
    f = group.create_array("f", shape=(4,), chunks=(2,), dtype="<f4", compressors=None, fill_value=np.nan)
    f[:] = np.arange(4, dtype=np.float32)
    names = group.create_array("names", shape=(2,), chunks=(1,), dtype="<U3", compressors=None, fill_value="")
    names[:] = np.array(["a", "b"])
    os.remove(tmp_path / "store" / "f" / "1")
    os.remove(tmp_path / "store" / "names" / "1")
    with ZarrZip(_zip_folder(tmp_path / "store", tmp_path / "store.zip")) as z:
        np.testing.assert_array_equal(z.read("f", (4,)), [0, 1, np.nan, np.nan])
        with pytest.raises(PackageFormatError, match="lacks the chunk 'names/1'"):
            z.read("names", (2,))
