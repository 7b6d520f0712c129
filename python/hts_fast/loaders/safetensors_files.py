"""The safetensors format, read without the safetensors library and without torch.

Layout: an 8-byte little-endian header length N, N bytes of JSON mapping each tensor name to
``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the byte after the
header), an optional ``"__metadata__"`` entry, then the raw little-endian data.

The whole file is validated when it is opened, before any tensor is read: the header length
against the file, the JSON, every entry (a known dtype, a shape of non-negative integers,
``end - begin`` equal to the shape's byte length, no name twice), the tensors' byte ranges
tiling the data exactly (no gap, no overlap), and the file size equal to 8 + header + data.
Any violation raises one TensorReadError naming the file and giving the numbers; nothing is
allocated from a declared size before it has been checked against the file. Only a dtype the
format defines but hts_fast does not read (``F4``, ``F6_*``, ``F8_E8M0``, ``C64``) stays a
per-tensor error, raised when that tensor is loaded.
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
from typing import Any, NoReturn

import numpy as np

from .lazy import LazyTensor, TensorReadError, failing_tensor

#: safetensors dtype -> (item size in bytes, how the bytes are read)
DTYPES: dict[str, tuple[int, str]] = {
    "F64": (8, "<f8"), "F32": (4, "<f4"), "F16": (2, "<f2"), "BF16": (2, "bfloat16"),
    "F8_E4M3": (1, "float8_e4m3fn"), "F8_E5M2": (1, "float8_e5m2"),
    "I64": (8, "<i8"), "I32": (4, "<i4"), "I16": (2, "<i2"), "I8": (1, "i1"),
    "U64": (8, "<u8"), "U32": (4, "<u4"), "U16": (2, "<u2"), "U8": (1, "u1"), "BOOL": (1, "?"),
}  # fmt: skip
#: dtypes the format defines that are not read -> bits per element (sizes are still checked)
UNREAD_DTYPE_BITS: dict[str, int] = {"F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "F8_E8M0": 8,
                                     "C64": 64}  # fmt: skip
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


def float8_to_float32(kind: str, raw: np.ndarray) -> np.ndarray:
    """Exact float8 (``kind``: "float8_e4m3fn" or "float8_e5m2", raw bytes) -> float32,
    through ml_dtypes; TensorReadError saying how to install it when it is missing."""
    try:
        import ml_dtypes
    except ImportError:
        msg = f"reading {kind} tensors needs the ml_dtypes package (pip install ml_dtypes)"
        raise TensorReadError(msg) from None
    return raw.view(getattr(ml_dtypes, kind)).astype(np.float32)


def _is_count(value: Any) -> bool:
    """Whether a JSON value is a non-negative integer (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _duplicate_checking_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            result.setdefault("__duplicates__", []).append(key)
        result[key] = value
    return result


class SafetensorsFile:
    """One .safetensors file: its tensors' names, shapes and dtypes, and lazy data access.

    Raises TensorReadError naming the file when any part of it is damaged (see the module
    docstring for what is checked).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        #: the file's bytes when the caller had read them already (see preread), else None
        self._bytes = _PREREAD.get(str(self.path))
        size = self.path.stat().st_size if self._bytes is None else len(self._bytes)
        with self._open() as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                self._fail(f"truncated: {size:,} bytes, the 8-byte header length is cut off")
            header_len = int.from_bytes(prefix, "little")
            if header_len > MAX_HEADER_BYTES:
                self._fail(f"the header length field declares {header_len:,} bytes, more than "
                           f"the format's limit of {MAX_HEADER_BYTES:,}")  # fmt: skip
            if header_len > size - 8:
                self._fail(f"truncated: the header length field declares {header_len:,} header "
                           f"bytes, the file holds {size - 8:,} after it")  # fmt: skip
            raw = f.read(header_len)
        try:
            header = json.loads(raw, object_pairs_hook=_duplicate_checking_pairs)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError too
            self._fail(f"corrupted header, not JSON ({exc})")
        if not isinstance(header, dict):
            self._fail("corrupted header: not a JSON object")
        duplicates = sorted(set(header.pop("__duplicates__", [])))
        if duplicates:
            self._fail(f"corrupted header: the name {duplicates[0]!r} appears more than once")
        self.data_start = 8 + header_len
        self.data_size = size - self.data_start
        self.metadata = header.pop("__metadata__", None)
        specs = {name: self._spec(name, entry) for name, entry in sorted(header.items())}
        self._check_layout(specs)
        self._tensors = {name: self._entry(name, *spec) for name, spec in specs.items()}

    def _open(self) -> io.BufferedIOBase:
        """The file, opened for reading (from memory if its bytes were read already)."""
        if self._bytes is not None:
            return io.BytesIO(self._bytes)
        return open(self.path, "rb")

    def _fail(self, reason: str) -> NoReturn:
        raise TensorReadError(f"{self.path}: {reason}")

    def names(self) -> list[str]:
        """Tensor names, sorted (the safetensors library's order)."""
        return list(self._tensors)

    def tensor(self, name: str) -> LazyTensor:
        return self._tensors[name]

    def _spec(self, name: str, spec: Any) -> tuple[str, tuple[int, ...], int, int]:
        """Return (dtype, shape, begin, end) of one header entry, its byte length checked
        against its shape; raise TensorReadError when the entry is malformed."""
        where = f"corrupted header: tensor {name!r}"
        if not isinstance(spec, dict):
            self._fail(f"{where}: the entry is not an object")
        dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
        if not (isinstance(dtype, str) and (dtype in DTYPES or dtype in UNREAD_DTYPE_BITS)):
            self._fail(f"{where}: unknown dtype {dtype!r}")
        if not (isinstance(shape, list) and all(_is_count(d) for d in shape)):
            self._fail(f"{where}: invalid shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))
                and offsets[0] <= offsets[1]):  # fmt: skip
            self._fail(f"{where}: invalid data_offsets {offsets!r}")
        begin, end = offsets
        bits = DTYPES[dtype][0] * 8 if dtype in DTYPES else UNREAD_DTYPE_BITS[dtype]
        count = math.prod(shape)
        if count * bits % 8:
            self._fail(f"{where}: shape {shape} of {dtype} is not a whole number of bytes")
        if end - begin != count * bits // 8:
            self._fail(f"{where}: data_offsets {offsets} hold {end - begin:,} bytes, shape "
                       f"{shape} of {dtype} needs {count * bits // 8:,}")  # fmt: skip
        return dtype, tuple(shape), begin, end

    def _check_layout(self, specs: dict[str, tuple[str, tuple[int, ...], int, int]]) -> None:
        """The tensors' byte ranges must tile the data exactly: sorted by offset, each starts
        where the previous ends, and the last ends at the end of the file."""
        position, previous = 0, ""
        for name, (_, _, begin, end) in sorted(specs.items(), key=lambda s: s[1][2:]):
            if begin != position:
                what = "overlaps" if begin < position else "leaves a gap after"
                after = f"tensor {previous!r}" if previous else "the header"
                self._fail(f"corrupted header: tensor {name!r} at data bytes [{begin:,}, "
                           f"{end:,}) {what} {after}, which ends at {position:,}")  # fmt: skip
            position, previous = end, name
        if position > self.data_size:
            self._fail(f"truncated: the header declares {position:,} data bytes, the file "
                       f"holds {self.data_size:,}")  # fmt: skip
        if position < self.data_size:
            self._fail(f"trailing bytes: the header declares {position:,} data bytes, the file "
                       f"holds {self.data_size:,}")  # fmt: skip

    def _entry(self, name: str, dtype: str, shape: tuple[int, ...], begin: int,
               _end: int) -> LazyTensor:  # fmt: skip
        source = str(self.path)
        if dtype in UNREAD_DTYPE_BITS:
            return failing_tensor(name, shape, dtype, source, f"dtype {dtype} is not supported "
                                  f"(supported: {', '.join(DTYPES)})")  # fmt: skip
        return LazyTensor(name, shape, dtype, lambda: self._load(name, dtype, shape, begin),
                          source)  # fmt: skip

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
            return float8_to_float32(kind, raw)
        return raw
