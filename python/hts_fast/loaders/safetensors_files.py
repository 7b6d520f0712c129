"""The safetensors format, read without the safetensors library and without torch.

Layout: an 8-byte little-endian header length N, N bytes of JSON mapping each tensor name to
``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the byte after the
header), an optional ``"__metadata__"`` entry, then the raw little-endian data. Every header
entry is checked against the file: unknown dtypes, negative or non-integer shapes, offsets
outside the data or not matching shape x item size, and duplicated names become per-tensor
errors; the other tensors stay readable.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .lazy import LazyTensor, TensorReadError, failing_tensor

#: safetensors dtype -> (item size in bytes, how the bytes are read)
DTYPES: dict[str, tuple[int, str]] = {
    "F64": (8, "<f8"), "F32": (4, "<f4"), "F16": (2, "<f2"), "BF16": (2, "bfloat16"),
    "F8_E4M3": (1, "float8_e4m3fn"), "F8_E5M2": (1, "float8_e5m2"),
    "I64": (8, "<i8"), "I32": (4, "<i4"), "I16": (2, "<i2"), "I8": (1, "i1"),
    "U64": (8, "<u8"), "U32": (4, "<u4"), "U16": (2, "<u2"), "U8": (1, "u1"), "BOOL": (1, "?"),
}  # fmt: skip
#: Headers larger than this are refused (the format's own limit is 100 MB).
MAX_HEADER_BYTES = 100_000_000
#: Tensors up to this size are read into memory; larger ones are memory-mapped (mapping a
#: file costs more than reading a small tensor).
SMALL_TENSOR_BYTES = 1 << 20


#: Files whose bytes the caller has already read (path -> bytes): read from memory instead.
_PREREAD: dict[str, bytes] = {}
_preread_lock = threading.Lock()


@contextlib.contextmanager
def preread(contents: Mapping[str, bytes]) -> Iterator[None]:
    """Within the block, a SafetensorsFile of one of these paths (as ``str(Path(path))``) is
    parsed from the bytes given rather than read from disk again. A scan hashes a small
    checkpoint's bytes as it reads them and analyzes those very bytes: one read, and the hash
    stored is the hash of what was analyzed."""
    added = {str(Path(p)): data for p, data in contents.items()}
    with _preread_lock:
        added = {p: d for p, d in added.items() if p not in _PREREAD}
        _PREREAD.update(added)
    try:
        yield
    finally:
        with _preread_lock:
            for p in added:
                _PREREAD.pop(p, None)


def bf16_to_float32(raw: np.ndarray) -> np.ndarray:
    """Exact bfloat16 -> float32: a bfloat16 is the upper 16 bits of a float32. The shift is
    done in place, so the conversion holds one float32-sized array (a 32000 x 4096 head:
    524 MB, not 1 GB)."""
    wide = raw.astype(np.uint32)
    wide <<= 16
    return wide.view(np.float32)


def _float8(kind: str, raw: np.ndarray) -> np.ndarray:
    try:
        import ml_dtypes
    except ImportError:
        msg = f"reading {kind} tensors needs the ml_dtypes package (pip install ml_dtypes)"
        raise TensorReadError(msg) from None
    return raw.view(getattr(ml_dtypes, kind)).astype(np.float32)


def _duplicate_checking_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            result.setdefault("__duplicates__", []).append(key)
        result[key] = value
    return result


class SafetensorsFile:
    """One .safetensors file: its tensors' names, shapes and dtypes, and lazy data access.

    Raises TensorReadError when the file itself is unusable (too short, header length beyond
    the file, header not JSON).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        #: the file's bytes when the caller had read them already (see preread), else None
        self._bytes = _PREREAD.get(str(self.path))
        size = self.path.stat().st_size if self._bytes is None else len(self._bytes)
        with self._open() as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                self._fail(f"truncated: {size} bytes, no header length")
            header_len = int.from_bytes(prefix, "little")
            if header_len > min(size - 8, MAX_HEADER_BYTES):
                self._fail(f"header length {header_len} exceeds the file ({size} bytes)")
            raw = f.read(header_len)
        try:
            header = json.loads(raw, object_pairs_hook=_duplicate_checking_pairs)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._fail(f"corrupted header, not JSON ({exc})")
        if not isinstance(header, dict):
            self._fail("corrupted header: not a JSON object")
        self.data_start = 8 + header_len
        self.data_size = size - self.data_start
        self.metadata = header.pop("__metadata__", None)
        duplicates = set(header.pop("__duplicates__", []))
        self._tensors = {
            name: self._entry(name, spec, duplicates) for name, spec in sorted(header.items())
        }

    def _open(self) -> io.BufferedIOBase:
        """The file, opened for reading (from memory if its bytes were read already)."""
        if self._bytes is not None:
            return io.BytesIO(self._bytes)
        return open(self.path, "rb")

    def _fail(self, reason: str) -> None:
        raise TensorReadError(f"{self.path}: {reason}")

    def names(self) -> list[str]:
        """Tensor names, sorted (the safetensors library's order)."""
        return list(self._tensors)

    def tensor(self, name: str) -> LazyTensor:
        return self._tensors[name]

    def _entry(self, name: str, spec: Any, duplicates: set[str]) -> LazyTensor:
        source = str(self.path)
        if not isinstance(spec, dict):
            return failing_tensor(name, (), "?", source, "header entry is not an object")
        dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
        ok_shape = isinstance(shape, list) and all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        )
        shape_t = tuple(shape) if ok_shape else ()
        dtype_s = dtype if isinstance(dtype, str) else "?"
        problem = ""
        if name in duplicates:
            problem = "the name appears more than once in the header"
        elif dtype_s not in DTYPES:
            problem = f"unknown dtype {dtype!r}"
        elif not ok_shape:
            problem = f"invalid shape {shape!r}"
        elif not (isinstance(offsets, list) and len(offsets) == 2
                  and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):  # fmt: skip
            problem = f"invalid data_offsets {offsets!r}"
        else:
            begin, end = offsets
            expected = math.prod(shape_t) * DTYPES[dtype_s][0]
            if not 0 <= begin <= end <= self.data_size:
                problem = (
                    f"data_offsets {offsets} outside the data ({self.data_size} bytes; truncated?)"
                )
            elif end - begin != expected:
                problem = f"data_offsets {offsets} hold {end - begin} bytes, shape needs {expected}"
        if problem:
            return failing_tensor(name, shape_t, dtype_s, source, problem)
        begin = offsets[0]
        return LazyTensor(name, shape_t, dtype_s,
                          lambda: self._load(name, dtype_s, shape_t, begin), source)  # fmt: skip

    def _load(self, name: str, dtype: str, shape: tuple[int, ...], begin: int) -> np.ndarray:
        kind = DTYPES[dtype][1]
        count = math.prod(shape)
        storage = {"bfloat16": "<u2", "float8_e4m3fn": "u1", "float8_e5m2": "u1"}.get(kind, kind)
        nbytes = count * DTYPES[dtype][0]
        if count == 0:
            raw = np.zeros(shape, dtype=storage)
        elif self._bytes is not None:
            start = self.data_start + begin
            raw = np.frombuffer(self._bytes, dtype=storage, count=count, offset=start)
            raw = raw.reshape(shape)
        elif nbytes <= SMALL_TENSOR_BYTES:
            with open(self.path, "rb") as f:
                f.seek(self.data_start + begin)
                data = f.read(nbytes)
            if len(data) != nbytes:
                msg = f"{self.path}: tensor {name!r} truncated: {len(data)} of {nbytes} bytes"
                raise TensorReadError(msg)
            raw = np.frombuffer(data, dtype=storage).reshape(shape)
        else:
            raw = np.memmap(self.path, dtype=storage, mode="r", offset=self.data_start + begin,
                            shape=shape)  # fmt: skip
        if kind == "bfloat16":
            return bf16_to_float32(raw)
        if kind.startswith("float8"):
            return _float8(kind, raw)
        return raw
