"""ONNX model files (``.onnx``): the initializers, read without the onnx or protobuf packages.

An ONNX file is one protobuf message, a ``ModelProto``. Its ``graph`` (field 7, a
``GraphProto``) lists the weights as ``initializer`` entries (field 5, ``TensorProto``), each
with ``dims`` (1), ``data_type`` (2), ``name`` (8) and its values either as little-endian
bytes in ``raw_data`` (9), in a typed repeated field (``float_data`` 4, ``int32_data`` 5,
``int64_data`` 7, ``double_data`` 10, ``uint64_data`` 11; float16, bfloat16 and float8
values sit one per ``int32_data`` entry, in its low bits), or, when ``data_location`` (14) is
EXTERNAL, in a file beside the model named by the ``external_data`` (13) key/value pairs
``location``, ``offset`` and ``length``.

A minimal protobuf wire-format parser walks the file through a read-only memory map and
records where each tensor's bytes are; ``raw_data`` and external data are memory-mapped when
the tensor is loaded, typed fields are decoded then. Every length and count is checked
against the bytes present before anything is allocated.

The whole model is validated when it is opened, before any tensor is read: the protobuf
wire format of the model, its graphs, nodes, attributes and value infos, and for every
initializer a name (unique), a known data type, non-negative dims, and data matching dims x
item size: ``raw_data`` of exactly that length, typed fields with
exactly that many values (counted, not decoded), or external data in a regular file inside
the model's folder that is long enough. Any violation raises one TensorReadError naming the
model file (and the data file) with the numbers. A data type the format defines but that is
not read here (text, complex, packed sub-byte, exponent-only) and segmented tensors stay
per-tensor errors, raised when that tensor is loaded. Not read: sparse initializers (graph
field 15), constants inside nodes and subgraphs, training-only initializers, and external
data checksums (checking one would read the whole data file).
"""

from __future__ import annotations

import math
import mmap
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import NamedTuple

import numpy as np

from .lazy import LazyTensor, TensorReadError, failing_tensor
from .safetensors_files import bf16_to_float32, float8_to_float32

# protobuf wire types (3 and 4, groups, are not used by ONNX and refused)
VARINT, I64, LEN, I32 = 0, 1, 2, 5
MASK64 = (1 << 64) - 1
# TensorProto fields
DIMS, DATA_TYPE, SEGMENT, FLOAT_DATA, INT32_DATA, INT64_DATA = 1, 2, 3, 4, 5, 7
NAME, RAW_DATA, DOUBLE_DATA, UINT64_DATA, EXTERNAL_DATA, DATA_LOCATION = 8, 9, 10, 11, 13, 14
EXTERNAL = 1
FIELD_NAMES = {FLOAT_DATA: "float_data", INT32_DATA: "int32_data", INT64_DATA: "int64_data",
               DOUBLE_DATA: "double_data", UINT64_DATA: "uint64_data"}  # fmt: skip
#: wire types each known field may use (repeated numbers: one element, or packed)
MODEL_WIRE = {1: (VARINT,), 2: (LEN,), 3: (LEN,), 4: (LEN,), 5: (VARINT,), 6: (LEN,), 7: (LEN,),
              8: (LEN,), 14: (LEN,), 20: (LEN,), 25: (LEN,), 26: (LEN,)}  # fmt: skip
GRAPH_WIRE = {1: (LEN,), 2: (LEN,), 5: (LEN,), 10: (LEN,), 11: (LEN,), 12: (LEN,), 13: (LEN,),
              14: (LEN,), 15: (LEN,), 16: (LEN,)}  # fmt: skip
TENSOR_WIRE = {DIMS: (VARINT, LEN), DATA_TYPE: (VARINT,), SEGMENT: (LEN,),
               FLOAT_DATA: (I32, LEN), INT32_DATA: (VARINT, LEN), 6: (LEN,),
               INT64_DATA: (VARINT, LEN), NAME: (LEN,), RAW_DATA: (LEN,), DOUBLE_DATA: (I64, LEN),
               UINT64_DATA: (VARINT, LEN), 12: (LEN,), EXTERNAL_DATA: (LEN,),
               DATA_LOCATION: (VARINT,), 16: (LEN,)}  # fmt: skip
#: The messages around the initializers that are checked for well-formed wire format:
#: message -> {field: (allowed wire types, the nested message checked in turn or None)}.
_L, _V = (LEN,), (VARINT,)
STRUCTURE: dict[str, dict[int, tuple[tuple[int, ...], str | None]]] = {
    "ModelProto": {1: (_V, None), 2: (_L, None), 3: (_L, None), 4: (_L, None), 5: (_V, None),
                   6: (_L, None), 7: (_L, "GraphProto"), 8: (_L, "OperatorSetIdProto"),
                   14: (_L, None), 20: (_L, None), 25: (_L, None), 26: (_L, None)},
    "GraphProto": {1: (_L, "NodeProto"), 2: (_L, None), 5: (_L, "TensorProto"),
                   10: (_L, None), 11: (_L, "ValueInfoProto"), 12: (_L, "ValueInfoProto"),
                   13: (_L, "ValueInfoProto"), 14: (_L, None), 15: (_L, None), 16: (_L, None)},
    "OperatorSetIdProto": {1: (_L, None), 2: (_V, None)},
    "NodeProto": {1: (_L, None), 2: (_L, None), 3: (_L, None), 4: (_L, None),
                  5: (_L, "AttributeProto"), 6: (_L, None), 7: (_L, None), 8: (_L, None),
                  9: (_L, None)},
    "AttributeProto": {1: (_L, None), 2: ((I32,), None), 3: (_V, None), 4: (_L, None),
                       5: (_L, "TensorProto"), 6: (_L, "GraphProto"), 7: ((I32, LEN), None),
                       8: ((VARINT, LEN), None), 9: (_L, None), 10: (_L, "TensorProto"),
                       11: (_L, "GraphProto"), 13: (_L, None), 14: (_L, None),
                       15: (_L, None), 20: (_V, None), 21: (_L, None), 22: (_L, None),
                       23: (_L, None)},
    "ValueInfoProto": {1: (_L, None), 2: (_L, "TypeProto"), 3: (_L, None), 4: (_L, None)},
    "TypeProto": {1: (_L, "TypeProto.Tensor"), 4: (_L, None), 5: (_L, None), 6: (_L, None),
                  8: (_L, None), 9: (_L, "TypeProto.Tensor")},
    "TypeProto.Tensor": {1: (_V, None), 2: (_L, "TensorShapeProto")},
    "TensorShapeProto": {1: (_L, "TensorShapeProto.Dimension")},
    "TensorShapeProto.Dimension": {1: (_V, None), 2: (_L, None), 3: (_L, None)},
    "TensorProto": {number: (wires, None) for number, wires in TENSOR_WIRE.items()},
}  # fmt: skip
#: Subgraphs (inside node attributes) deeper than this are refused.
MAX_NESTING = 32
#: More dimensions than this are refused (NumPy's own limit is 64).
MAX_RANK = 64
#: Packed varints are decoded this many bytes at a time (bounds the temporary arrays).
VARINT_CHUNK = 1 << 18


class OnnxType(NamedTuple):
    """How one TensorProto data type is stored and read."""

    dtype: str  #: LazyTensor.dtype ("bfloat16" and float8 load widened to float32)
    storage: str  #: NumPy dtype of the stored little-endian elements
    field: int  #: the typed field holding the values when there is no raw_data


#: TensorProto.DataType code -> how it is read
DATA_TYPES: dict[int, OnnxType] = {
    1: OnnxType("float32", "<f4", FLOAT_DATA), 2: OnnxType("uint8", "u1", INT32_DATA),
    3: OnnxType("int8", "i1", INT32_DATA), 4: OnnxType("uint16", "<u2", INT32_DATA),
    5: OnnxType("int16", "<i2", INT32_DATA), 6: OnnxType("int32", "<i4", INT32_DATA),
    7: OnnxType("int64", "<i8", INT64_DATA), 9: OnnxType("bool", "?", INT32_DATA),
    10: OnnxType("float16", "<f2", INT32_DATA), 11: OnnxType("float64", "<f8", DOUBLE_DATA),
    12: OnnxType("uint32", "<u4", UINT64_DATA), 13: OnnxType("uint64", "<u8", UINT64_DATA),
    16: OnnxType("bfloat16", "<u2", INT32_DATA), 17: OnnxType("float8_e4m3fn", "u1", INT32_DATA),
    18: OnnxType("float8_e4m3fnuz", "u1", INT32_DATA),
    19: OnnxType("float8_e5m2", "u1", INT32_DATA),
    20: OnnxType("float8_e5m2fnuz", "u1", INT32_DATA),
}  # fmt: skip
_SUB_BYTE = "is a packed sub-byte type, not supported"
#: data types that cannot be read as weights -> (ONNX name, why)
UNREADABLE_TYPES: dict[int, tuple[str, str]] = {
    0: ("UNDEFINED", "is not set"), 8: ("STRING", "holds text, not numbers"),
    14: ("COMPLEX64", "is not a real floating-point type"),
    15: ("COMPLEX128", "is not a real floating-point type"),
    21: ("UINT4", _SUB_BYTE), 22: ("INT4", _SUB_BYTE), 23: ("FLOAT4E2M1", _SUB_BYTE),
    24: ("FLOAT8E8M0", "is an exponent-only scale type, not supported"),
    25: ("UINT2", _SUB_BYTE), 26: ("INT2", _SUB_BYTE), 27: ("FLOAT6E2M3", _SUB_BYTE),
    28: ("FLOAT6E3M2", _SUB_BYTE),
}  # fmt: skip


class _Malformed(Exception):
    """The protobuf bytes are malformed; the message says where."""


class _Field(NamedTuple):
    number: int
    wire: int
    value: int  #: the varint or fixed-width value; for LEN the payload length
    start: int  #: first byte of the value (for LEN, of the payload)
    end: int  #: the byte after the field


def _varint(buf: bytes | mmap.mmap, pos: int, end: int) -> tuple[int, int]:
    """Return the varint at ``pos`` (at most 10 bytes, taken modulo 2**64) and the position
    after it."""
    value = shift = 0
    for i in range(pos, min(end, pos + 10)):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value & MASK64, i + 1
        shift += 7
    if end - pos >= 10:
        msg = f"varint at byte {pos} is longer than 10 bytes"
        raise _Malformed(msg)
    msg = f"truncated varint at byte {pos}"
    raise _Malformed(msg)


def _signed(value: int) -> int:
    """A varint read as a two's-complement int64."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _fields(buf: bytes | mmap.mmap, start: int, end: int) -> Iterator[_Field]:
    """Yield the fields of the message in ``buf[start:end]``; raise _Malformed on bad bytes.

    Every field consumes at least its tag byte, and a length is checked against the bytes
    left in the message before it is used.
    """
    pos = start
    while pos < end:
        tag, value_start = _varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0 or tag > 0xFFFFFFFF:
            msg = f"invalid field number {number} at byte {pos}"
            raise _Malformed(msg)
        if wire == VARINT:
            value, after = _varint(buf, value_start, end)
        elif wire in (I64, I32):
            after = value_start + (8 if wire == I64 else 4)
            if after > end:
                msg = f"field {number} at byte {pos} is cut off"
                raise _Malformed(msg)
            value = int.from_bytes(buf[value_start:after], "little")
        elif wire == LEN:
            value, value_start = _varint(buf, value_start, end)
            if value > end - value_start:
                msg = (f"field {number} at byte {pos} claims {value} bytes, the enclosing "
                       f"message has {end - value_start} left")  # fmt: skip
                raise _Malformed(msg)
            after = value_start + value
        elif wire in (3, 4):
            msg = f"group field {number} at byte {pos} (wire type {wire}, not used by ONNX)"
            raise _Malformed(msg)
        else:
            msg = f"invalid wire type {wire} at byte {pos}"
            raise _Malformed(msg)
        yield _Field(number, wire, value, value_start, after)
        pos = after


def _checked_fields(buf: bytes | mmap.mmap, start: int, end: int, message: str,
                    wires: dict[int, tuple[int, ...]]) -> Iterator[_Field]:  # fmt: skip
    """_fields, refusing a known field number with a wire type its type cannot have."""
    for f in _fields(buf, start, end):
        allowed = wires.get(f.number)
        if allowed is not None and f.wire not in allowed:
            msg = f"{message} field {f.number} at byte {f.start} has wire type {f.wire}"
            raise _Malformed(msg)
        yield f


@dataclass
class _Entry:
    """What one TensorProto says (byte positions are in the model file)."""

    start: int
    end: int
    name: str | None = None
    dims: list[int] = field(default_factory=list)
    data_type: int = 0
    raw: tuple[int, int] | None = None  #: (offset, length) of raw_data
    external: dict[str, str] = field(default_factory=dict)
    location: int = 0
    segmented: bool = False
    #: why the tensor cannot be read, found while parsing (the first one is reported)
    problems: list[str] = field(default_factory=list)


def _text(buf: bytes | mmap.mmap, f: _Field, strict: bool = False) -> str:
    data = bytes(buf[f.start : f.end])
    try:
        return data.decode("utf-8", "strict" if strict else "replace")
    except UnicodeDecodeError:
        msg = f"field {f.number} at byte {f.start} is not UTF-8 text"
        raise _Malformed(msg) from None


def _add_dims(buf: bytes | mmap.mmap, f: _Field, entry: _Entry) -> None:
    """Append the dims of one (packed or single) ``dims`` field; past MAX_RANK + 1 dims the
    rest are not read (the tensor is refused)."""
    if f.wire == VARINT:
        values = [f.value] if len(entry.dims) <= MAX_RANK else []
    else:
        values, pos = [], f.start
        while pos < f.end and len(values) + len(entry.dims) <= MAX_RANK:
            value, pos = _varint(buf, pos, f.end)
            values.append(value)
    entry.dims.extend(_signed(v) for v in values)


def _string_entry(buf: bytes | mmap.mmap, f: _Field) -> tuple[str, str]:
    """Return (key, value) of a StringStringEntryProto."""
    pair = {1: "", 2: ""}
    for item in _checked_fields(buf, f.start, f.end, "external_data", {1: (LEN,), 2: (LEN,)}):
        if item.number in pair:
            pair[item.number] = _text(buf, item, strict=True)
    return pair[1], pair[2]


def _parse_tensor(buf: bytes | mmap.mmap, entry: _Entry) -> None:
    """Fill ``entry`` from its TensorProto bytes; raise _Malformed on bad bytes (the fields
    read before stay in ``entry``)."""
    for f in _checked_fields(buf, entry.start, entry.end, "TensorProto", TENSOR_WIRE):
        if f.number == DIMS:
            _add_dims(buf, f, entry)
        elif f.number == DATA_TYPE:
            entry.data_type = _signed(f.value)
        elif f.number == SEGMENT:
            entry.segmented = True
        elif f.number == NAME:
            entry.name = _text(buf, f, strict=True)
        elif f.number == RAW_DATA:
            entry.raw = (f.start, f.end - f.start)
        elif f.number == EXTERNAL_DATA:
            key, value = _string_entry(buf, f)
            entry.external[key] = value
        elif f.number == DATA_LOCATION:
            entry.location = _signed(f.value)


def _check_structure(buf: bytes | mmap.mmap, start: int, end: int, message: str,
                     depth: int = 0) -> None:  # fmt: skip
    """Walk the message's fields and those of the nested messages STRUCTURE names (the graph,
    its nodes and their attributes, value infos and their types, subgraphs): raise _Malformed
    where the wire format is broken, as a protobuf parser would. Strings, bytes and the
    other messages are skipped by their lengths."""
    if depth > MAX_NESTING:
        msg = f"{message} nested more than {MAX_NESTING} deep"
        raise _Malformed(msg)
    schema = STRUCTURE[message]
    wires = {number: allowed for number, (allowed, _) in schema.items()}
    for f in _checked_fields(buf, start, end, message, wires):
        nested = schema.get(f.number, ((), None))[1]
        if nested is not None and f.wire == LEN:
            _check_structure(buf, f.start, f.end, nested, depth + 1)


def _graph_spans(buf: bytes | mmap.mmap, size: int) -> list[tuple[int, int]]:
    """Return the byte spans of the ModelProto's graph field (several merge, as in protobuf),
    after checking the model's structure (_check_structure)."""
    _check_structure(buf, 0, size, "ModelProto")
    graphs, has_ir_version = [], False
    for f in _checked_fields(buf, 0, size, "ModelProto", MODEL_WIRE):
        if f.number == 1:
            has_ir_version = True
        elif f.number == 7:
            graphs.append((f.start, f.end))
    if not has_ir_version:
        msg = "no ir_version field, not an ONNX ModelProto"
        raise _Malformed(msg)
    if not graphs:
        msg = "the ModelProto has no graph"
        raise _Malformed(msg)
    return graphs


def _entries(buf: bytes | mmap.mmap, size: int) -> list[_Entry]:
    """Return the graph's initializers in file order; a malformed TensorProto keeps what was
    read before the damage and notes the problem, a malformed model or graph raises."""
    entries = []
    for start, end in _graph_spans(buf, size):
        for f in _checked_fields(buf, start, end, "GraphProto", GRAPH_WIRE):
            if f.number != 5:
                continue
            entry = _Entry(f.start, f.end)
            try:
                _parse_tensor(buf, entry)
            except _Malformed as exc:
                entry.problems.insert(0, f"malformed TensorProto ({exc})")
            entries.append(entry)
    return entries


def _decimal(entry: _Entry, key: str) -> int | None:
    """An external_data ``offset`` or ``length`` (a decimal string), None when absent."""
    value = entry.external.get(key)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= 20):
        msg = f"external data {key} {value[:40]!r} is not a non-negative 64-bit integer"
        raise _Malformed(msg)
    return int(value)


def _external_file(folder: Path, location: str) -> Path:
    """Return the resolved path of an external data file; refuse absolute paths and paths
    that lead outside the model's folder (``..`` or symbolic links)."""
    if not location:
        msg = "external data has no location"
        raise _Malformed(msg)
    windows = PureWindowsPath(location)
    if (PurePosixPath(location).is_absolute() or windows.is_absolute() or windows.drive
            or location.startswith("\\")):  # fmt: skip
        msg = f"external data location {location!r} is an absolute path (refused)"
        raise _Malformed(msg)
    try:
        target = (folder / location).resolve()
        inside = target.is_relative_to(folder.resolve())
        is_file = inside and target.is_file()
    except (OSError, RuntimeError, ValueError) as exc:
        msg = f"external data location {location!r} cannot be resolved ({exc})"
        raise _Malformed(msg) from None
    if not inside:
        msg = f"external data location {location!r} leads outside the model's folder (refused)"
        raise _Malformed(msg)
    if not is_file:
        msg = f"external data file {target} does not exist (or is not a regular file)"
        raise _Malformed(msg)
    return target


def _external_span(entry: _Entry, folder: Path, needed: int) -> tuple[Path, int]:
    """Return the data file and offset of an EXTERNAL tensor, checked against the file."""
    target = _external_file(folder, entry.external.get("location", ""))
    offset, length = _decimal(entry, "offset") or 0, _decimal(entry, "length")
    try:
        size = target.stat().st_size
    except OSError as exc:
        msg = f"external data file {target} cannot be read ({exc})"
        raise _Malformed(msg) from None
    if offset > size:
        msg = f"external data offset {offset} is beyond the end of {target} ({size} bytes)"
        raise _Malformed(msg)
    length = size - offset if length is None else length
    if offset + length > size:
        msg = (f"external data bytes {offset}..{offset + length} run past the end of {target} "
               f"({size} bytes; truncated?)")  # fmt: skip
        raise _Malformed(msg)
    if length != needed:
        msg = f"external data in {target} holds {length} bytes, the shape needs {needed}"
        raise _Malformed(msg)
    return target, offset


def _widen(kind: OnnxType, raw: np.ndarray) -> np.ndarray:
    """The array analyze() gets: bfloat16 and float8 widened exactly to float32."""
    if kind.dtype == "bfloat16":
        return bf16_to_float32(raw)
    if kind.dtype.startswith("float8"):
        return float8_to_float32(kind.dtype, raw)
    return raw


def _decode_varints(data: np.ndarray) -> np.ndarray:
    """Decode packed varints (a uint8 array) to uint64 values, VARINT_CHUNK bytes at a time."""
    out = np.empty(
        sum(int(np.count_nonzero(data[i : i + VARINT_CHUNK] < 0x80))
            for i in range(0, data.size, VARINT_CHUNK)),
        dtype=np.uint64,
    )  # fmt: skip
    pos = done = 0
    while pos < data.size:
        window = data[pos : pos + VARINT_CHUNK]
        ends = np.flatnonzero(window < 0x80)
        if ends.size == 0:
            msg = "packed varints end inside a value" if pos + window.size == data.size else (
                "varint longer than 10 bytes")  # fmt: skip
            raise _Malformed(msg)
        part = window[: ends[-1] + 1]
        firsts = np.concatenate(([0], ends[:-1] + 1))
        lengths = ends - firsts + 1
        if lengths.max() > 10:
            msg = "varint longer than 10 bytes"
            raise _Malformed(msg)
        shifts = ((np.arange(part.size) - np.repeat(firsts, lengths)) * 7).astype(np.uint64)
        values = np.bitwise_or.reduceat((part & 0x7F).astype(np.uint64) << shifts, firsts)
        out[done : done + values.size] = values
        done += values.size
        pos += part.size
    return out


def _typed_values(buf: bytes, number: int) -> np.ndarray:
    """Return the values of repeated field ``number`` in the TensorProto ``buf``, packed and
    unpacked occurrences in order: float32, float64 or (varint fields) uint64."""
    fixed = {FLOAT_DATA: ("<f4", "<u4"), DOUBLE_DATA: ("<f8", "<u8")}.get(number)
    chunks: list[np.ndarray] = []
    pending: list[int] = []

    def flush() -> None:
        if pending:
            ints = np.array(pending, dtype=fixed[1] if fixed else np.uint64)
            chunks.append(ints.view(fixed[0]) if fixed else ints)
            pending.clear()

    for f in _checked_fields(buf, 0, len(buf), "TensorProto", TENSOR_WIRE):
        if f.number != number:
            continue
        if f.wire != LEN:
            pending.append(f.value)
            continue
        flush()
        if f.value == 0:
            continue
        if fixed:
            itemsize = np.dtype(fixed[0]).itemsize
            if f.value % itemsize:
                msg = f"packed {FIELD_NAMES[number]} of {f.value} bytes is not whole values"
                raise _Malformed(msg)
            chunks.append(np.frombuffer(buf, fixed[0], f.value // itemsize, f.start))
        else:
            chunks.append(_decode_varints(np.frombuffer(buf, np.uint8, f.value, f.start)))
    flush()
    empty = np.zeros(0, dtype=fixed[0] if fixed else np.uint64)
    return np.concatenate([empty, *chunks])


def _from_typed(kind: OnnxType, values: np.ndarray) -> np.ndarray:
    """Typed-field values as ``kind.storage`` (int32_data holds narrow types in its low bits)."""
    if kind.field in (FLOAT_DATA, DOUBLE_DATA):
        return values
    if kind.field == INT64_DATA:  # varints: uint64 values
        return values.view(kind.storage)
    if kind.field == UINT64_DATA:
        return values.astype(kind.storage)
    low = values.astype(np.uint32)
    if kind.storage == "?":
        return low != 0
    unsigned = {1: np.uint8, 2: np.uint16, 4: np.uint32}[np.dtype(kind.storage).itemsize]
    return low.astype(unsigned).view(kind.storage)


def _typed_loader(path: Path, entry: _Entry, name: str, shape: tuple[int, ...],
                  kind: OnnxType) -> Callable[[], np.ndarray]:  # fmt: skip
    """Load a tensor held in a typed field: re-read its TensorProto and decode the field."""
    source = str(path)

    def load() -> np.ndarray:
        count = math.prod(shape)
        try:
            with open(path, "rb") as f:
                f.seek(entry.start)
                buf = f.read(entry.end - entry.start)
            if len(buf) != entry.end - entry.start:
                msg = f"{source}: tensor {name!r}: the file is shorter than when it was opened"
                raise TensorReadError(msg)
            values = _typed_values(buf, kind.field)
        except OSError as exc:
            msg = f"{source}: tensor {name!r}: {exc}"
            raise TensorReadError(msg) from None
        except _Malformed as exc:
            msg = (f"{source}: tensor {name!r}: {exc} (counted from the TensorProto's start, "
                   f"byte {entry.start})")  # fmt: skip
            raise TensorReadError(msg) from None
        if values.size != count:
            msg = (f"{source}: tensor {name!r}: {FIELD_NAMES[kind.field]} holds {values.size} "
                   f"values, shape {shape} needs {count}")  # fmt: skip
            raise TensorReadError(msg)
        try:
            return _widen(kind, _from_typed(kind, values).reshape(shape))
        except (TensorReadError, ValueError) as exc:
            msg = f"{source}: tensor {name!r}: {exc}"
            raise TensorReadError(msg) from None

    return load


def _mapped_loader(data_path: Path, offset: int, name: str, shape: tuple[int, ...],
                   kind: OnnxType, source: str) -> Callable[[], np.ndarray]:  # fmt: skip
    """Load a tensor's little-endian bytes at ``offset`` in ``data_path`` as a memory map."""

    def load() -> np.ndarray:
        try:
            if math.prod(shape) == 0:
                raw = np.zeros(shape, dtype=kind.storage)
            else:
                raw = np.memmap(data_path, dtype=kind.storage, mode="r", offset=offset,
                                shape=shape)  # fmt: skip
            return _widen(kind, raw)
        except (OSError, ValueError) as exc:
            msg = f"{source}: tensor {name!r}: reading {data_path}: {exc}"
            raise TensorReadError(msg) from None

    return load


def _count_varints(buf: bytes | mmap.mmap, start: int, end: int) -> int:
    """The number of packed varints in ``buf[start:end]``, checked as _decode_varints would,
    without decoding them; VARINT_CHUNK bytes are copied at a time (no view of ``buf`` is
    kept, so a memory map can be closed even while the error propagates)."""
    count, last_end = 0, -1
    for at in range(0, end - start, VARINT_CHUNK):
        chunk = np.frombuffer(buf[start + at : min(start + at + VARINT_CHUNK, end)], np.uint8)
        ends = np.flatnonzero(chunk < 0x80) + at
        reach = ends if ends.size else np.array([at + chunk.size - 1])
        if int(np.diff(reach, prepend=last_end).max()) > 10:
            msg = "varint longer than 10 bytes"
            raise _Malformed(msg)
        if ends.size:
            count += ends.size
            last_end = int(ends[-1])
    if last_end != end - start - 1:
        msg = "packed varints end inside a value"
        raise _Malformed(msg)
    return count


def _typed_count(buf: bytes | mmap.mmap, entry: _Entry, number: int) -> int:
    """How many values the repeated field ``number`` holds in the entry's TensorProto,
    packed and unpacked occurrences together; raise _Malformed on bad bytes."""
    itemsize = {FLOAT_DATA: 4, DOUBLE_DATA: 8}.get(number)
    count = 0
    for f in _checked_fields(buf, entry.start, entry.end, "TensorProto", TENSOR_WIRE):
        if f.number != number:
            continue
        if f.wire != LEN:
            count += 1
        elif itemsize:
            if f.value % itemsize:
                msg = f"packed {FIELD_NAMES[number]} of {f.value} bytes is not whole values"
                raise _Malformed(msg)
            count += f.value // itemsize
        elif f.value:
            count += _count_varints(buf, f.start, f.end)
    return count


def _entry_problem(entry: _Entry, kind: OnnxType | None) -> str:
    """Why the entry makes the model unreadable, or "" (data sizes are checked separately)."""
    if entry.problems:
        return entry.problems[0]
    if not entry.name:
        return "the initializer has no name"
    if len(entry.dims) > MAX_RANK:
        return f"more than {MAX_RANK} dimensions"
    if any(d < 0 for d in entry.dims):
        return f"negative dimension in dims {entry.dims}"
    if kind is None and (entry.data_type not in UNREADABLE_TYPES or entry.data_type == 0):
        onnx_name, why = UNREADABLE_TYPES.get(entry.data_type, ("", ""))
        if not onnx_name:
            return f"unknown data type {entry.data_type}"
        return f"data type {onnx_name} ({entry.data_type}) {why}"
    if entry.location not in (0, EXTERNAL):
        return f"unknown data_location {entry.location}"
    return ""


def _unsupported(entry: _Entry, kind: OnnxType | None) -> str:
    """Why a well-formed entry is not read here, or "" (a per-tensor error, not a damaged
    file)."""
    if kind is None:
        onnx_name, why = UNREADABLE_TYPES[entry.data_type]
        return f"data type {onnx_name} ({entry.data_type}) {why}"
    if entry.segmented:
        return "segmented tensors (TensorProto.segment) are not supported"
    return ""


def _initializer(buf: bytes | mmap.mmap, entry: _Entry, name: str, path: Path,
                 resolved: Path) -> LazyTensor:  # fmt: skip
    """The LazyTensor for one parsed TensorProto, its data checked against its shape;
    ``resolved`` is the model file's resolved path, for ``identity``. Raises _Malformed
    saying what is wrong when the entry makes the model unreadable."""
    source = str(path)
    kind = DATA_TYPES.get(entry.data_type)
    problem = _entry_problem(entry, kind)
    if problem:
        raise _Malformed(f"initializer {name!r}: {problem}")
    shape = tuple(entry.dims)
    unsupported = _unsupported(entry, kind)
    if kind is None or unsupported:
        dtype = kind.dtype if kind else UNREADABLE_TYPES[entry.data_type][0].lower()
        return failing_tensor(name, shape, dtype, source, unsupported)
    needed = math.prod(shape) * np.dtype(kind.storage).itemsize
    if entry.location == EXTERNAL:
        try:
            data_path, offset = _external_span(entry, path.parent, needed)
        except _Malformed as exc:
            raise _Malformed(f"initializer {name!r}: {exc}") from None
        identity = ("onnx", str(data_path), offset)
        loader = _mapped_loader(data_path, offset, name, shape, kind, source)
        return LazyTensor(name, shape, kind.dtype, loader, source, identity)
    if entry.raw is not None:
        offset, length = entry.raw
        if length != needed:
            msg = (f"initializer {name!r}: raw_data holds {length:,} bytes, shape {shape} x "
                   f"{kind.dtype} needs {needed:,}")  # fmt: skip
            raise _Malformed(msg)
        loader = _mapped_loader(resolved, offset, name, shape, kind, source)
        return LazyTensor(name, shape, kind.dtype, loader, source, ("onnx", str(resolved), offset))
    try:
        count = _typed_count(buf, entry, kind.field)
    except _Malformed as exc:
        raise _Malformed(f"initializer {name!r}: {exc}") from None
    if count != math.prod(shape):
        msg = (f"initializer {name!r}: {FIELD_NAMES[kind.field]} holds {count:,} values, "
               f"shape {shape} needs {math.prod(shape):,}")  # fmt: skip
        raise _Malformed(msg)
    return LazyTensor(name, shape, kind.dtype, _typed_loader(path, entry, name, shape, kind),
                      source)  # fmt: skip


def onnx_tensors(path: Path) -> list[tuple[str, LazyTensor]]:
    """Return the (name, tensor) pairs of an ONNX model's graph initializers, in file order.

    Raises TensorReadError naming the file when it is not a readable ONNX ModelProto or any
    initializer is damaged (see the module docstring); a data type that is not read here is
    raised only when that tensor is loaded.
    """
    path = Path(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            msg = f"{path}: not a regular file, not an ONNX model"
            raise TensorReadError(msg)
        resolved = path.resolve()
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                msg = f"{path}: empty file, not an ONNX model"
                raise TensorReadError(msg)
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                entries = _entries(buf, len(buf))
                tensors, seen = [], set()
                for index, entry in enumerate(entries):
                    name = entry.name or f"<initializer {index}>"
                    if name in seen:
                        msg = f"initializer {name!r}: the name appears more than once"
                        raise _Malformed(msg)
                    seen.add(name)
                    tensor = _initializer(buf, entry, name, path, resolved)
                    tensor.layout = "oihw"  # ONNX's Conv weight layout (M, C/group, kH, kW)
                    tensors.append((name, tensor))
    except OSError as exc:
        msg = f"{path}: cannot be read ({exc})"
        raise TensorReadError(msg) from exc
    except _Malformed as exc:
        msg = f"{path}: not a readable ONNX model ({exc})"
        raise TensorReadError(msg) from None
    return tensors
