"""A bounded reader of the zarr (format 2) store inside ``metadata.zarr.zip``.

The official metadata file is small (names, statistics, invariants), but it
is a download: a hostile or broken copy could declare arrays of any size or
hold chunks that inflate without bound. This reader allocates nothing it has
not checked first:

- the caller states the exact shape it will accept for each array
  (:meth:`ZarrZip.read`), from what the package needs;
- each chunk's zip member must declare no more bytes than the chunk can
  hold (plus the compressor's overhead), and is read with that limit;
- each compressed chunk must declare (blosc, zstd, lz4 headers) or inflate to
  (zlib, gzip, bz2, lzma, read with a limit) no more than the chunk's bytes.

Dtypes: floats, integers, fixed-width strings and ``vlen-utf8`` /
``vlen-bytes`` strings. As xarray does, values equal to a float array's fill
value read as NaN, missing float chunks read as NaN, and ``scale_factor`` /
``add_offset`` attributes are applied.
"""

from __future__ import annotations

import bz2
import json
import lzma
import math
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from stormcast_plugin.package.spec import PackageFormatError

__all__ = ["ZarrZip"]

_MAX_JSON_BYTES = 1 << 22
_MAX_CHUNKS = 1 << 16
_MAX_STRING = 1024  # characters (or bytes) of one name
_OVERHEAD = 1024  # bytes a compressor may add to an incompressible chunk, besides 1/64 of it
_COMPRESSORS = ("blosc", "zstd", "lz4", "zlib", "gzip", "bz2", "lzma")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


class ZarrZip:
    """Read-only view of a zarr format 2 store zipped at ``path``; use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as err:
            raise self.error(f"is not a readable zip ({_first_line(err)}); download the package again") from err
        self._members = {info.filename: info for info in self._zip.infolist()}
        self._meta: dict[str, Any] | None = None
        if ".zmetadata" in self._members:  # consolidated metadata, as xarray writes by default
            meta = self._json(".zmetadata")
            if not isinstance(meta, dict) or not isinstance(meta.get("metadata"), dict):
                raise self.error("has a .zmetadata without a 'metadata' mapping; it is not a zarr store")
            self._meta = meta["metadata"]

    def __enter__(self) -> "ZarrZip":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._zip.close()

    def error(self, message: str) -> PackageFormatError:
        """A one-line error naming the file."""
        return PackageFormatError(f"{self.path}: {message}")

    # ------------------------------------------------------------------ raw members
    def _member(self, name: str, limit: int) -> bytes | None:
        info = self._members.get(name)
        if info is None:
            return None
        if info.file_size > limit:
            raise self.error(f"member {name!r} declares {info.file_size} bytes; at most {limit} can be valid")
        try:
            with self._zip.open(info) as f:
                data = f.read(limit + 1)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, zlib.error) as err:
            raise self.error(f"member {name!r} cannot be read ({_first_line(err)}); download the package again") from err
        if len(data) > limit:
            raise self.error(f"member {name!r} inflates beyond {limit} bytes; the file is damaged or hostile")
        return data

    def _json(self, name: str) -> Any:
        if self._meta is not None and name != ".zmetadata":
            return self._meta.get(name)
        data = self._member(name, _MAX_JSON_BYTES)
        if data is None:
            return None
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise self.error(f"member {name!r} is not valid JSON ({_first_line(err)})") from err

    # ------------------------------------------------------------------ metadata
    def attrs(self, name: str = "") -> dict:
        """The attributes of array ``name`` (or of the root group)."""
        attrs = self._json(f"{name}/.zattrs" if name else ".zattrs")
        return attrs if isinstance(attrs, dict) else {}

    def has(self, name: str) -> bool:
        """True when the store holds an array called ``name``."""
        return isinstance(self._json(f"{name}/.zarray"), dict)

    def _spec(self, name: str) -> dict:
        spec = self._json(f"{name}/.zarray")
        if not isinstance(spec, dict):
            raise self.error(f"lacks the array {name!r}")
        shape, chunks = spec.get("shape"), spec.get("chunks")
        ints = (list, tuple)
        if (not isinstance(shape, ints) or not isinstance(chunks, ints) or len(shape) != len(chunks)
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
                or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in chunks)):
            raise self.error(f"array {name!r} has shape {shape!r} and chunks {chunks!r}; expected lists of "
                             "non-negative and positive integers of one length")
        return spec

    def shape(self, name: str) -> tuple[int, ...]:
        """Declared shape of array ``name`` (nothing is read but its metadata)."""
        return tuple(self._spec(name)["shape"])

    def dims(self, name: str) -> tuple[str, ...]:
        """Dimension names of array ``name`` (xarray's ``_ARRAY_DIMENSIONS``)."""
        dims = self.attrs(name).get("_ARRAY_DIMENSIONS")
        if isinstance(dims, list) and len(dims) == len(self.shape(name)) and all(isinstance(d, str) for d in dims):
            return tuple(dims)
        return tuple(f"dim_{i}" for i in range(len(self.shape(name))))

    def _dtype(self, name: str, spec: dict) -> tuple[np.dtype, str | None]:
        raw = spec.get("dtype")
        try:
            dtype = np.dtype(raw) if isinstance(raw, str) else None
        except TypeError:
            dtype = None
        filters = spec.get("filters") or []
        ids = [f.get("id") if isinstance(f, dict) else f for f in filters]
        if dtype is not None and dtype.kind == "O" and ids in (["vlen-utf8"], ["vlen-bytes"]):
            return dtype, ids[0]
        if dtype is None or dtype.kind not in "fiubUS" or ids:
            raise self.error(f"array {name!r} has dtype {raw!r} with filters {ids}; expected numbers or strings")
        if dtype.kind in "US" and dtype.itemsize > 4 * _MAX_STRING:
            raise self.error(f"array {name!r} holds strings of {dtype.itemsize} bytes; names are shorter")
        return dtype, None

    # ------------------------------------------------------------------ data
    def read(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Array ``name``, which must have exactly ``shape`` (checked before anything is read)."""
        spec = self._spec(name)
        declared = tuple(spec["shape"])
        if declared != tuple(shape):
            raise self.error(f"array {name!r} declares shape {declared}; the package needs {tuple(shape)}")
        dtype, vlen = self._dtype(name, spec)
        chunks = tuple(spec["chunks"])
        grid = tuple(math.ceil(s / c) for s, c in zip(declared, chunks))
        if math.prod(grid) > _MAX_CHUNKS:
            raise self.error(f"array {name!r} is cut into {math.prod(grid)} chunks; at most {_MAX_CHUNKS} are read")
        n_items = math.prod(chunks)
        raw_bytes = 4 + n_items * (4 + _MAX_STRING) if vlen else n_items * dtype.itemsize
        needed = math.prod(declared) * (4 + _MAX_STRING if vlen else dtype.itemsize)
        if raw_bytes > max(needed, 1 << 20):
            raise self.error(f"array {name!r} declares chunks {chunks} of {raw_bytes} bytes, more than its "
                             f"shape {declared} needs")
        order = spec.get("order", "C")
        if order not in ("C", "F"):
            raise self.error(f"array {name!r} has order {order!r}; expected 'C' or 'F'")
        sep = spec.get("dimension_separator") or "."
        if sep not in (".", "/"):
            raise self.error(f"array {name!r} has dimension_separator {sep!r}; expected '.' or '/'")
        out_dtype = object if vlen else dtype
        out = np.empty(declared, dtype=out_dtype)
        for index in np.ndindex(*grid):
            key = f"{name}/" + (sep.join(map(str, index)) if index else "0")
            blob = self._member(key, raw_bytes + raw_bytes // 64 + _OVERHEAD)
            if blob is None:
                block = None
            else:
                data = self._decompress(name, key, spec.get("compressor"), blob, raw_bytes)
                block = self._decode(name, key, data, dtype, vlen, chunks, order)
            where = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(index, chunks, declared))
            if block is None:
                if dtype.kind != "f":
                    raise self.error(f"lacks the chunk {key!r} of the array {name!r}")
                out[where] = np.nan
            else:
                out[where] = block[tuple(slice(0, w.stop - w.start) for w in where)]
        return self._cf_decode(name, spec, out, dtype, vlen)

    def _decompress(self, name: str, key: str, compressor: Any, blob: bytes, limit: int) -> bytes:
        if compressor is None:
            return blob
        cid = compressor.get("id") if isinstance(compressor, dict) else None
        if cid not in _COMPRESSORS:
            raise self.error(f"array {name!r} uses the compressor {cid!r}; supported: {list(_COMPRESSORS)}")
        try:
            if cid in ("blosc", "zstd", "lz4"):
                declared = self._declared_size(cid, blob)
                if declared is None or declared > limit:
                    raise self.error(f"chunk {key!r} declares {declared} bytes once inflated; at most {limit} "
                                     "fit the array")
                import numcodecs

                codec = {"blosc": numcodecs.Blosc, "zstd": numcodecs.Zstd, "lz4": numcodecs.LZ4}[cid]()
                return bytes(codec.decode(blob))
            if cid in ("zlib", "gzip"):
                inflater = zlib.decompressobj(47)  # zlib or gzip header, detected
                data = inflater.decompress(blob, limit + 1)
                done = inflater.eof
            else:
                inflater = bz2.BZ2Decompressor() if cid == "bz2" else lzma.LZMADecompressor()
                data = inflater.decompress(blob, max_length=limit + 1)
                done = inflater.eof
        except PackageFormatError:
            raise
        except Exception as err:  # each codec raises its own kind for corrupt data
            raise self.error(f"chunk {key!r} cannot be decompressed ({_first_line(err)})") from err
        if len(data) > limit or not done:
            raise self.error(f"chunk {key!r} inflates beyond the {limit} bytes the array needs")
        return data

    @staticmethod
    def _declared_size(cid: str, blob: bytes) -> int | None:
        """Inflated size written in the header of a blosc, zstd or lz4 chunk (None when absent)."""
        if cid == "blosc":
            if len(blob) < 16 or int.from_bytes(blob[12:16], "little") != len(blob):
                return None
            return int.from_bytes(blob[4:8], "little")
        if cid == "lz4":
            return int.from_bytes(blob[:4], "little") if len(blob) >= 4 else None
        if len(blob) < 6 or blob[:4] != b"\x28\xb5\x2f\xfd":
            return None
        fhd = blob[4]
        single = (fhd >> 5) & 1
        pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3]
        size = (1 if single else 0, 2, 4, 8)[fhd >> 6]
        if size == 0 or len(blob) < pos + size:
            return None  # content size not recorded: refuse rather than inflate blindly
        return int.from_bytes(blob[pos:pos + size], "little") + (256 if size == 2 else 0)

    def _decode(self, name: str, key: str, data: bytes, dtype: np.dtype, vlen: str | None,
                chunks: tuple[int, ...], order: str) -> np.ndarray:
        n = math.prod(chunks)
        if vlen is None:
            if len(data) != n * dtype.itemsize:
                raise self.error(f"chunk {key!r} holds {len(data)} bytes; a {chunks} chunk of {dtype} has "
                                 f"{n * dtype.itemsize}")
            return np.frombuffer(data, dtype=dtype).reshape(chunks, order=order)
        view = memoryview(data)
        if len(view) < 4 or int.from_bytes(view[:4], "little") != n:
            raise self.error(f"chunk {key!r} of the string array {name!r} does not hold {n} items")
        items, pos = [], 4
        for _ in range(n):
            size = int.from_bytes(view[pos:pos + 4], "little") if pos + 4 <= len(view) else -1
            if size < 0 or size > _MAX_STRING or pos + 4 + size > len(view):
                raise self.error(f"chunk {key!r} of the string array {name!r} is truncated or holds a "
                                 f"string over {_MAX_STRING} bytes")
            text = bytes(view[pos + 4:pos + 4 + size])
            items.append(text.decode("utf-8", errors="replace") if vlen == "vlen-utf8" else text)
            pos += 4 + size
        block = np.empty(n, dtype=object)
        block[:] = items
        return block.reshape(chunks, order=order)

    def _cf_decode(self, name: str, spec: dict, values: np.ndarray, dtype: np.dtype, vlen: str | None) -> np.ndarray:
        if vlen is not None or dtype.kind in "US":
            decode = (lambda v: v.decode("utf-8", errors="replace")) if dtype.kind == "S" else str
            flat = [decode(v) if isinstance(v, bytes) else str(v) for v in values.reshape(-1)]
            return np.array(flat, dtype=object).reshape(values.shape)
        fill = spec.get("fill_value")
        if dtype.kind == "f" and fill is not None:
            try:
                fill = float(fill)
            except (TypeError, ValueError) as err:
                raise self.error(f"array {name!r} has fill_value {fill!r}; expected a number") from err
            if not math.isnan(fill):
                values = np.where(values == fill, np.nan, values)
        attrs = self.attrs(name)
        scale, offset = attrs.get("scale_factor"), attrs.get("add_offset")
        if scale is not None or offset is not None:
            try:
                values = values * float(1.0 if scale is None else scale) + float(0.0 if offset is None else offset)
            except (TypeError, ValueError) as err:
                raise self.error(f"array {name!r} has scale_factor {scale!r} / add_offset {offset!r}; "
                                 "expected numbers") from err
        return values
