"""GGUF files (llama.cpp's format), read without the gguf library and without torch.

Layout, all little-endian: the magic ``b"GGUF"``, a uint32 version (2 or 3), a uint64 tensor
count and a uint64 metadata count; then the metadata, each entry a string key, a uint32 value
type and the value (a scalar, a string, or an array: uint32 element type, uint64 length,
elements); then one info per tensor: string name, uint32 n_dims, n_dims uint64 sizes in ggml
order (``ne[0]`` varies fastest, so a row of ``ne[0]`` values is contiguous), uint32 ggml
type and a uint64 offset into the data section. A string is a uint64 byte length followed by
UTF-8 bytes. The data section starts at the end of the infos rounded up to the alignment
(``general.alignment``, default 32); every tensor offset is a multiple of it.

Every count and length is checked against the bytes left in the file before anything is read
or allocated, so a damaged header is refused (TensorReadError naming the file) instead of
allocating or looping per a bogus count. The whole file is then validated before any tensor
is read, as llama.cpp does: every name UTF-8 and unique, every type known, every row a whole
number of blocks, the data laid out in info order (each tensor at the previous one's end
rounded up to the alignment) and the last tensor ending inside the file. Any violation is
one TensorReadError naming the file and giving the numbers; only a known quantization that
is not read here stays a per-tensor error, raised when that tensor is loaded. Data is
memory-mapped and converted only when a tensor is loaded; Q8_0 and Q4_0 blocks are
dequantized here, chunk by chunk, into float32.
"""

from __future__ import annotations

import math
import mmap
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .lazy import LazyTensor, TensorReadError, failing_tensor
from .safetensors_files import bf16_to_float32

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
#: ggml tensors have at most this many dimensions (llama.cpp refuses files with more)
MAX_DIMS = 4
#: Q8_0/Q4_0 blocks dequantized per step (2 Mi values, 8 MiB of float32)
CHUNK_BLOCKS = 1 << 16

#: ggml type id -> (name, values per block, bytes per block)
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
}  # fmt: skip
#: supported ggml type name -> (LazyTensor dtype, how the stored values are read)
SUPPORTED: dict[str, tuple[str, str]] = {
    "F32": ("float32", "<f4"), "F16": ("float16", "<f2"), "BF16": ("bfloat16", "<u2"),
    "F64": ("float64", "<f8"), "Q8_0": ("q8_0", "blocks"), "Q4_0": ("q4_0", "blocks"),
    "I8": ("int8", "i1"), "I16": ("int16", "<i2"), "I32": ("int32", "<i4"),
    "I64": ("int64", "<i8"),
}  # fmt: skip
_SUPPORTED_NOTE = "supported: F32, F16, BF16, F64, Q8_0, Q4_0"

#: metadata value type id -> struct format of the fixed-size ones
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}  # fmt: skip
_STRING, _ARRAY = 8, 9
_U64 = struct.Struct("<Q")


class _HeaderError(Exception):
    """The header cannot be parsed; becomes a TensorReadError naming the file."""


@dataclass(frozen=True)
class _TensorInfo:
    """One tensor info as stored: ``dims`` in ggml order, ``offset`` into the data section."""

    name: str
    name_is_utf8: bool
    dims: tuple[int, ...]
    type_id: int
    offset: int


class _Cursor:
    """Reads the header from a memory map, never past the end of the file."""

    def __init__(self, buf: mmap.mmap, size: int) -> None:
        self.buf = buf
        self.size = size
        self.pos = 0

    def advance(self, n: int, what: str) -> int:
        """Move past ``n`` bytes and return where they start; refuses to pass the end."""
        start = self.pos
        if n > self.size - start:
            msg = (f"{what}: {n} bytes at offset {start} run past the end of the file "
                   f"({self.size} bytes)")  # fmt: skip
            raise _HeaderError(msg)
        self.pos = start + n
        return start

    def unpack(self, fmt: str, what: str) -> Any:
        return struct.unpack_from(fmt, self.buf, self.advance(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> bytes:
        length = self.unpack("<Q", f"{what} length")
        start = self.advance(length, what)
        return self.buf[start : start + length]

    def fits(self, count: int, min_bytes: int, what: str) -> None:
        """Refuse ``count`` items of at least ``min_bytes`` each that cannot fit in the rest."""
        if count * min_bytes > self.size - self.pos:
            msg = (f"{what} count {count} cannot fit in the {self.size - self.pos} bytes left "
                   f"at offset {self.pos}")  # fmt: skip
            raise _HeaderError(msg)


def _skip_strings(cursor: _Cursor, count: int, what: str) -> None:
    """Move past ``count`` strings (an array of strings, e.g. a tokenizer vocabulary)."""
    cursor.fits(count, 8, what)
    buf, size, pos = cursor.buf, cursor.size, cursor.pos
    for _ in range(count):
        if size - pos < 8:
            break
        pos += 8 + _U64.unpack_from(buf, pos)[0]
        if pos > size:
            break
    else:
        cursor.pos = pos
        return
    msg = f"{what}: a string runs past the end of the file ({size} bytes)"
    raise _HeaderError(msg)


def _value(cursor: _Cursor, value_type: int, key: str) -> Any:
    """Read one metadata value: scalars and strings are returned, arrays skipped (None)."""
    what = f"metadata {key!r}"
    if value_type in _SCALARS:
        return cursor.unpack(_SCALARS[value_type], what)
    if value_type == _STRING:
        return cursor.string(what).decode("utf-8", "replace")
    if value_type != _ARRAY:
        msg = f"{what} has unknown value type {value_type}"
        raise _HeaderError(msg)
    item_type = cursor.unpack("<I", what)
    count = cursor.unpack("<Q", what)
    if item_type in _SCALARS:
        cursor.advance(count * struct.calcsize(_SCALARS[item_type]), what)
    elif item_type == _STRING:
        _skip_strings(cursor, count, what)
    else:  # nested arrays are refused by llama.cpp too
        msg = f"{what} is an array of unsupported element type {item_type}"
        raise _HeaderError(msg)
    return None


def _metadata(cursor: _Cursor, count: int) -> dict[str, Any]:
    """The metadata entries (arrays recorded as None); duplicated keys are refused."""
    cursor.fits(count, 8 + 4 + 1, "metadata")
    metadata: dict[str, Any] = {}
    for _ in range(count):
        key = cursor.string("metadata key").decode("utf-8", "replace")
        value = _value(cursor, cursor.unpack("<I", f"metadata {key!r} type"), key)
        if key in metadata:
            msg = f"metadata key {key!r} appears more than once"
            raise _HeaderError(msg)
        metadata[key] = value
    return metadata


def _tensor_infos(cursor: _Cursor, count: int) -> list[_TensorInfo]:
    cursor.fits(count, 8 + 4 + 4 + 8, "tensor")
    infos = []
    for _ in range(count):
        raw = cursor.string("tensor name")
        try:
            name, is_utf8 = raw.decode("utf-8"), True
        except UnicodeDecodeError:
            name, is_utf8 = raw.decode("utf-8", "backslashreplace"), False
        n_dims = cursor.unpack("<I", f"tensor {name!r} dimension count")
        if n_dims > MAX_DIMS:
            msg = f"tensor {name!r} has {n_dims} dimensions (at most {MAX_DIMS})"
            raise _HeaderError(msg)
        start = cursor.advance(8 * n_dims, f"tensor {name!r} dimensions")
        dims = struct.unpack_from(f"<{n_dims}Q", cursor.buf, start)
        type_id = cursor.unpack("<I", f"tensor {name!r} type")
        offset = cursor.unpack("<Q", f"tensor {name!r} offset")
        infos.append(_TensorInfo(name, is_utf8, dims, type_id, offset))
    return infos


def _alignment(metadata: dict[str, Any]) -> int:
    value = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value & (value - 1):
        msg = f"general.alignment {value!r} is not a positive power of two"
        raise _HeaderError(msg)
    return value


def _parse(buf: mmap.mmap, size: int) -> tuple[list[_TensorInfo], int, int]:
    """Return the tensor infos, the data section's start and the alignment."""
    cursor = _Cursor(buf, size)
    magic = buf[:4]
    if magic != MAGIC:
        msg = f"no GGUF magic, the file starts with {magic!r}"
        raise _HeaderError(msg)
    cursor.advance(4, "magic")
    version = cursor.unpack("<I", "version")
    if version not in VERSIONS:
        swapped = version & 0xFFFF == 0 and version != 0
        msg = "big-endian GGUF files are not supported" if swapped else (
            f"version {version} is not supported (2 and 3 are)")  # fmt: skip
        raise _HeaderError(msg)
    n_tensors = cursor.unpack("<Q", "tensor count")
    n_metadata = cursor.unpack("<Q", "metadata count")
    alignment = _alignment(_metadata(cursor, n_metadata))
    infos = _tensor_infos(cursor, n_tensors)
    data_start = -(-cursor.pos // alignment) * alignment
    return infos, data_start, alignment


def _nbytes(info: _TensorInfo, path: Path) -> int:
    """The bytes of one tensor's data, its info checked: UTF-8 name, known ggml type, sizes
    in range, rows of whole blocks; TensorReadError naming the file and tensor otherwise."""
    where = f"{path}: tensor {info.name!r}"
    if not info.name_is_utf8:
        msg = f"{where}: the name is not valid UTF-8"
        raise TensorReadError(msg)
    kind = GGML_TYPES.get(info.type_id)
    if kind is None:
        msg = f"{where}: unknown ggml tensor type {info.type_id}"
        raise TensorReadError(msg)
    name, block, type_size = kind
    if math.prod(max(d, 1) for d in info.dims) * 8 >= 2**63:  # NumPy's limit, even when empty
        msg = f"{where}: dimensions {list(info.dims)} out of range"
        raise TensorReadError(msg)
    row = info.dims[0] if info.dims else 1
    if row % block:
        msg = f"{where}: row length {row} is not a multiple of the {name} block size {block}"
        raise TensorReadError(msg)
    return math.prod(info.dims) // block * type_size


def _check_layout(path: Path, infos: list[_TensorInfo], data_start: int, alignment: int,
                  size: int) -> None:  # fmt: skip
    """The tensors' data as llama.cpp lays it out: in info order, each starting where the
    previous one ends rounded up to the alignment, the last one ending inside the file; no
    name twice. Raise TensorReadError naming the file and giving the numbers otherwise."""
    names = Counter(info.name for info in infos)
    expected = end = 0
    for info in infos:
        if names[info.name] > 1:
            msg = f"{path}: tensor {info.name!r}: the name appears more than once in the file"
            raise TensorReadError(msg)
        nbytes = _nbytes(info, path)
        if info.offset != expected:
            msg = (f"{path}: tensor {info.name!r}: data offset {info.offset:,}, the layout "
                   f"expects {expected:,} (tensors follow each other in info order, each "
                   f"padded to the alignment {alignment})")  # fmt: skip
            raise TensorReadError(msg)
        end = expected + nbytes
        expected = -(-end // alignment) * alignment
    if data_start + end > size:
        msg = (f"{path}: truncated: the tensor infos declare {end:,} data bytes after byte "
               f"{data_start:,}, the file holds {max(size - data_start, 0):,}")  # fmt: skip
        raise TensorReadError(msg)


def _scales(blocks: np.ndarray) -> np.ndarray:
    """Each block's scale d, the float16 in its first two bytes, as a float32 column."""
    return np.ascontiguousarray(blocks[:, :2]).view("<f2").astype(np.float32)


def _dequantize_q8_0(blocks: np.ndarray, out: np.ndarray) -> None:
    """Q8_0 blocks (34 bytes: float16 d, 32 int8 q) into ``out`` (n_blocks, 32): d * q."""
    for start in range(0, len(blocks), CHUNK_BLOCKS):
        chunk = blocks[start : start + CHUNK_BLOCKS]
        np.multiply(chunk[:, 2:].view(np.int8), _scales(chunk),
                    out=out[start : start + CHUNK_BLOCKS])  # fmt: skip


def _dequantize_q4_0(blocks: np.ndarray, out: np.ndarray) -> None:
    """Q4_0 blocks (18 bytes: float16 d, 16 bytes of nibbles) into ``out`` (n_blocks, 32).

    Byte j holds value j in its low nibble and value j + 16 in its high nibble; each value
    is d * (nibble - 8).
    """
    for start in range(0, len(blocks), CHUNK_BLOCKS):
        chunk = blocks[start : start + CHUNK_BLOCKS]
        rows = out[start : start + CHUNK_BLOCKS]
        scale, packed = _scales(chunk), chunk[:, 2:]
        np.multiply((packed & 0x0F).view(np.int8) - np.int8(8), scale, out=rows[:, :16])
        np.multiply((packed >> 4).view(np.int8) - np.int8(8), scale, out=rows[:, 16:])


def _read(path: Path, kind: tuple[str, int, int], shape: tuple[int, ...],
          begin: int) -> np.ndarray:  # fmt: skip
    """The tensor's data in row-major ``shape``: a read-only memory map for F32/F16/F64 and
    the integer types, a new float32 array for BF16 (exact), Q8_0 and Q4_0 (dequantized)."""
    type_name, block, type_size = kind
    count = math.prod(shape)
    storage = SUPPORTED[type_name][1]
    wide = np.float32 if storage in ("blocks", "<u2") else storage
    if count == 0:
        return np.zeros(shape, dtype=wide)
    if storage != "blocks":
        raw = np.memmap(path, dtype=storage, mode="r", offset=begin, shape=(count,))
        return (bf16_to_float32(raw) if type_name == "BF16" else raw).reshape(shape)
    blocks = np.memmap(path, dtype=np.uint8, mode="r", offset=begin,
                       shape=(count // block, type_size))  # fmt: skip
    out = np.empty((count // block, block), dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # a stored inf/nan scale stays inf/nan
        (_dequantize_q8_0 if type_name == "Q8_0" else _dequantize_q4_0)(blocks, out)
    return out.reshape(shape)


def _loader(path: Path, name: str, kind: tuple[str, int, int], shape: tuple[int, ...],
            begin: int) -> Callable[[], np.ndarray]:  # fmt: skip
    def load() -> np.ndarray:
        try:
            return _read(path, kind, shape, begin)
        except (OSError, ValueError) as exc:  # the file changed after its header was read
            msg = f"{path}: tensor {name!r}: cannot read the data ({exc})"
            raise TensorReadError(msg) from exc

    return load


def _entry(path: Path, info: _TensorInfo, data_start: int) -> LazyTensor:
    """The LazyTensor of one checked tensor info (see _check_layout); an unsupported
    quantization fails when loaded."""
    source = str(path)
    shape = tuple(reversed(info.dims))
    kind = GGML_TYPES[info.type_id]
    type_name = kind[0]
    if type_name not in SUPPORTED:
        reason = f"quantization {type_name} is not supported ({_SUPPORTED_NOTE})"
        return failing_tensor(info.name, shape, type_name.lower(), source, reason)
    begin = data_start + info.offset
    return LazyTensor(info.name, shape, SUPPORTED[type_name][0],
                      _loader(path, info.name, kind, shape, begin), source,
                      identity=("gguf", str(path.resolve()), begin))  # fmt: skip


def gguf_tensors(path: Path) -> list[tuple[str, LazyTensor]]:
    """Return the (name, tensor) pairs of a GGUF file in file order.

    Shapes are NumPy/PyTorch row-major: the reverse of the ggml sizes, so a ggml matrix with
    ``ne = [n_in, n_out]`` is returned as ``(n_out, n_in)``, the layout of a PyTorch Linear
    weight. Loading gives F32 -> float32, F16 -> float16, F64 -> float64, I8..I64 -> integers
    (all memory-mapped), BF16 -> float32 (exact), Q8_0 and Q4_0 -> float32 (dequantized).
    Other quantizations load as TensorReadError. Raises TensorReadError naming the file when
    it is not a readable GGUF file or any part of it is damaged.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if size < 24:
                msg = f"{path}: not a readable GGUF file (truncated: {size} bytes, no header)"
                raise TensorReadError(msg)
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                infos, data_start, alignment = _parse(buf, size)
    except _HeaderError as exc:
        msg = f"{path}: not a readable GGUF file ({exc})"
        raise TensorReadError(msg) from None
    except OSError as exc:
        msg = f"{path}: not a readable GGUF file ({exc})"
        raise TensorReadError(msg) from exc
    _check_layout(path, infos, data_start, alignment, size)
    return [(info.name, _entry(path, info, data_start)) for info in infos]
