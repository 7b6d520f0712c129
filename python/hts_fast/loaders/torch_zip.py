"""PyTorch ``.bin`` / ``.pt`` / ``.pth`` checkpoints (the zip format) read without torch and
without running pickle code.

The pickle inside (``<root>/data.pkl``) is read by a restricted unpickler: only the handful
of names that rebuild tensors and containers are resolved, each to hts_fast's own function,
so nothing from the file is ever imported or called. Any other reference (``os.system``,
``builtins.eval``, a model class...) stops the read with an error naming it. Tensor data is
memory-mapped from the zip when stored uncompressed (torch's default), each storage once
however many tensors view it (tied weights keep one identity), and read only when a tensor
is loaded: bfloat16 and float8 are widened to float32 then, view by view. Tensors of
dtypes hts_fast does not read (complex) fail alone when loaded. A big-endian file (its
``byteorder`` record) is read in its byte order.

The whole checkpoint is validated when it is opened, before any tensor is read: the zip
central directory, one ``data.pkl`` (its CRC checked), every storage it references present
with exactly the bytes its element count needs, an uncompressed storage's local header and
data within the file, and every tensor's extent (offset + the span of its sizes and strides)
within its storage. Any violation raises one TensorReadError naming the file. The CRCs of
uncompressed storages are not checked (that would read every weight once more): a flipped
bit there changes a value, which the analysis sees as a value.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .lazy import LazyTensor, TensorReadError
from .safetensors_files import bf16_to_float32, float8_to_float32

#: torch storage class name -> NumPy dtype of its elements ("bfloat16": widened exactly
#: when the tensor is read); "torch.storage.UntypedStorage" holds bytes ("u1")
STORAGE_DTYPES = {
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2",
    "BFloat16Storage": "bfloat16", "LongStorage": "<i8", "IntStorage": "<i4",
    "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
    "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128",
}  # fmt: skip
#: torch dtype name -> its elements' NumPy dtype, or the kind widened when read ("bfloat16",
#: "float8_*"); the dtypes _rebuild_tensor_v3 (bytes storages) names
TORCH_DTYPES = {
    "float64": "<f8", "float32": "<f4", "float16": "<f2", "bfloat16": "bfloat16",
    "float8_e4m3fn": "float8_e4m3fn", "float8_e5m2": "float8_e5m2", "int64": "<i8",
    "int32": "<i4", "int16": "<i2", "int8": "i1", "uint8": "u1", "uint16": "<u2",
    "uint32": "<u4", "uint64": "<u8", "bool": "?",
}  # fmt: skip
#: torch dtypes a checkpoint may hold that hts_fast does not read: such a tensor fails alone
#: (its layer's row says so), the rest of the file is read; name -> bytes per element
UNREAD_TORCH_DTYPES = {
    "complex32": 4, "complex64": 8, "complex128": 16, "float8_e4m3fnuz": 1,
    "float8_e5m2fnuz": 1, "float8_e8m0fnu": 1, "float4_e2m1fn_x2": 1,
}  # fmt: skip
#: a kind -> the NumPy dtype its raw elements are stored as
RAW_DTYPES = {"bfloat16": "<u2", "float8_e4m3fn": "u1", "float8_e5m2": "u1"}


def _raw_dtype(kind: str) -> np.dtype:
    if kind in UNREAD_TORCH_DTYPES:
        return np.dtype(("V", UNREAD_TORCH_DTYPES[kind]))
    return np.dtype(RAW_DTYPES.get(kind, kind))


class _StorageType:
    def __init__(self, name: str) -> None:
        self.dtype = STORAGE_DTYPES[name]


class _UntypedStorage:
    dtype = "u1"


class _TorchDtype:
    def __init__(self, name: str) -> None:
        self.name = name


@dataclass(frozen=True)
class _Storage:
    """One storage of the archive: its key and its raw elements (memory-mapped when the
    entry is uncompressed; bfloat16 as its uint16 bits, an untyped storage as bytes), in the
    file's byte order ``order`` ("<" or ">")."""

    key: str
    kind: str
    raw: np.ndarray
    order: str = "<"


@dataclass(frozen=True)
class StoredTensor:
    """A tensor as the checkpoint's pickle rebuilds it: a read-only strided view of its
    storage's raw elements, and its kind (a NumPy dtype string, "bfloat16", "float8_e4m3fn",
    "float8_e5m2", or a torch dtype hts_fast does not read). ``identity`` is the same for two
    tensors on the same bytes (tied weights)."""

    raw: np.ndarray
    kind: str
    identity: tuple[Any, ...]

    def widen(self, where: str = "") -> np.ndarray:
        """The tensor's values: float32 for bfloat16 and float8 (exact), the raw view
        otherwise; TensorReadError, its message starting with ``where`` (the file, and the
        tensor), for a dtype hts_fast does not read."""
        if self.kind in UNREAD_TORCH_DTYPES:
            msg = (f"{where}: dtype torch.{self.kind} is not supported (supported: "
                   f"{', '.join(TORCH_DTYPES)})")  # fmt: skip
            raise TensorReadError(msg)
        if self.kind == "bfloat16":
            return bf16_to_float32(np.ascontiguousarray(self.raw))
        if self.kind.startswith("float8"):
            return float8_to_float32(self.kind, np.ascontiguousarray(self.raw))
        if not self.raw.dtype.isnative:  # a big-endian file
            return self.raw.astype(self.raw.dtype.newbyteorder("="))
        return self.raw


def _view(storage: _Storage, kind: str, offset: Any, size: Any, stride: Any) -> StoredTensor:
    """A read-only view of ``storage`` reinterpreted as ``kind`` (elements ``offset``, sizes,
    strides in elements of that kind); raise pickle.UnpicklingError when the view does not
    lie inside the storage."""
    size, stride = tuple(size), tuple(stride)
    numbers = (offset, *size, *stride)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in numbers):
        msg = f"tensor view with offset {offset!r}, sizes {size!r}, strides {stride!r}"
        raise pickle.UnpicklingError(msg)
    if len(size) != len(stride):
        msg = f"tensor view with {len(size)} sizes and {len(stride)} strides"
        raise pickle.UnpicklingError(msg)
    elements = storage.raw
    raw_dtype = _raw_dtype(kind).newbyteorder(storage.order)
    if elements.dtype != raw_dtype:  # a bytes storage read as the tensor's dtype
        if elements.size % raw_dtype.itemsize:
            msg = (f"storage {storage.key} holds {elements.size:,} bytes, not a whole number "
                   f"of {kind} elements ({raw_dtype.itemsize} bytes)")  # fmt: skip
            raise pickle.UnpicklingError(msg)
        elements = elements.view(raw_dtype)
    identity = (storage.key, offset, size, stride, kind)
    if 0 in size:
        return StoredTensor(np.zeros(size, dtype=raw_dtype), kind, identity)
    end = offset + 1 + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if end > elements.size:
        msg = (f"a tensor (offset {offset:,}, sizes {size}, strides {stride}) reaches element "
               f"{end - 1:,} of a storage of {elements.size:,} elements")  # fmt: skip
        raise pickle.UnpicklingError(msg)
    if not size:
        return StoredTensor(elements[offset : offset + 1].reshape(()), kind, identity)
    item = elements.itemsize
    view = np.lib.stride_tricks.as_strided(elements[offset:], shape=size,
                                           strides=tuple(s * item for s in stride),
                                           writeable=False)  # fmt: skip
    return StoredTensor(view, kind, identity)


def _rebuild_tensor(storage: _Storage, offset: int, size: Any, stride: Any, *_: Any) -> Any:
    """torch._utils._rebuild_tensor(_v2): a view of a typed storage."""
    return _view(storage, storage.kind, offset, size, stride)


def _rebuild_tensor_v3(storage: _Storage, offset: int, size: Any, stride: Any,
                       _requires_grad: Any, _hooks: Any, dtype: Any, *_: Any) -> Any:  # fmt: skip
    """torch._utils._rebuild_tensor_v3: a view of a bytes storage as ``dtype`` (torch.save
    uses it for the dtypes without a typed storage class: float8, uint16/32/64...)."""
    if not isinstance(dtype, _TorchDtype):
        msg = f"_rebuild_tensor_v3 with dtype {dtype!r:.80}"
        raise pickle.UnpicklingError(msg)
    return _view(storage, TORCH_DTYPES.get(dtype.name, dtype.name), offset, size, stride)


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


def _ordered_dict(*args: Any) -> collections.OrderedDict[Any, Any]:
    return collections.OrderedDict(*args)


ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "Size"): tuple,
    ("torch.storage", "UntypedStorage"): _UntypedStorage(),
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
    **{("torch", name): _TorchDtype(name) for name in (*TORCH_DTYPES, *UNREAD_TORCH_DTYPES)},
}


class _TensorOnlyUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, storage: Any) -> None:
        super().__init__(io.BytesIO(data))
        self._storage = storage

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            msg = (
                f"refused to load {module}.{name}: the pickle references code that is not a "
                "tensor or container; hts_fast never runs code from a checkpoint"
            )
            raise pickle.UnpicklingError(msg) from None

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType | _UntypedStorage)):  # fmt: skip
            msg = f"unexpected persistent id {pid!r:.80}"
            raise pickle.UnpicklingError(msg)
        return self._storage(pid[1].dtype, str(pid[2]), int(pid[4]))


def _entry_offset(info: zipfile.ZipInfo, path: Path, file_size: int) -> int:
    """Byte offset of an uncompressed entry's data in the zip file, its local header checked
    (signature, the name the central directory gives) and its data within the file; raise
    pickle.UnpicklingError saying what is wrong."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            msg = f"corrupt zip entry {info.filename}: no local header at byte {info.header_offset}"
            raise pickle.UnpicklingError(msg)
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        name = f.read(name_len)
    if name != info.filename.encode():
        msg = f"corrupt zip entry {info.filename}: its local header names {name[:80]!r}"
        raise pickle.UnpicklingError(msg)
    offset = info.header_offset + 30 + name_len + extra_len
    if offset + info.compress_size > file_size:
        msg = (f"truncated: storage {info.filename} declares data bytes [{offset:,}, "
               f"{offset + info.compress_size:,}), the file holds {file_size:,}")  # fmt: skip
        raise pickle.UnpicklingError(msg)
    return offset


def _byte_order(archive: zipfile.ZipFile, root: str, path: Path) -> str:
    """The storages' byte order as the archive records it ("<" or ">"; files written before
    torch recorded it are little-endian); TensorReadError for any other record."""
    try:
        recorded = archive.read(f"{root}byteorder").strip()
    except KeyError:
        return "<"
    # a damaged entry: zipfile's own errors (a mangled name is a UnicodeDecodeError, a
    # ValueError) and the decompressor's
    except (zipfile.BadZipFile, OSError, zlib.error, NotImplementedError, ValueError, EOFError,
            struct.error) as exc:  # fmt: skip
        msg = f"{path}: {exc}"
        raise TensorReadError(msg) from exc
    if recorded not in (b"little", b"big"):
        msg = f"{path}: its byteorder record is {recorded[:20]!r}, neither 'little' nor 'big'"
        raise TensorReadError(msg)
    return "<" if recorded == b"little" else ">"


def read_torch_zip(path: str | Path) -> dict[str, Any]:
    """Return the checkpoint's top-level object (normally a dict of name -> NumPy array),
    every tensor read (bfloat16 and float8 widened to float32).

    Raises TensorReadError for a file that is not a torch zip checkpoint, is corrupt, or
    whose pickle references anything besides tensors and containers, and for a tensor of a
    dtype hts_fast does not read.
    """
    return _widened(_stored_tensors(Path(path)), str(path))


def _widened(value: Any, source: str) -> Any:
    if isinstance(value, StoredTensor):
        return value.widen(source)
    if isinstance(value, dict):
        return type(value)((k, _widened(v, source)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return type(value)(_widened(v, source) for v in value)
    return value


def _stored_tensors(path: Path) -> Any:
    """The checkpoint's top-level object with StoredTensor views (no tensor data read), the
    whole file validated (module docstring); TensorReadError naming the file otherwise."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile, NotImplementedError, ValueError) as exc:
        msg = (f"{path}: not a torch zip checkpoint ({exc}); legacy (pre-1.6) torch files "
               "are not read, re-save them with torch.save")  # fmt: skip
        raise TensorReadError(msg) from exc
    file_size = path.stat().st_size
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            msg = f"{path}: expected one data.pkl in the archive, found {len(pickles)}"
            raise TensorReadError(msg)
        root = pickles[0][: -len("data.pkl")]
        order = _byte_order(archive, root, path)
        storages: dict[str, _Storage] = {}

        def storage(dtype: str, key: str, numel: int) -> _Storage:
            """Each storage once, however many tensors view it (so tied tensors share it)."""
            if key not in storages:
                storages[key] = _Storage(key, dtype, _storage_data(dtype, key, numel), order)
            elif storages[key].kind != dtype or storages[key].raw.size != numel:
                msg = f"storage {key} is declared twice, as different storages"
                raise pickle.UnpicklingError(msg)
            return storages[key]

        def _storage_data(dtype: str, key: str, numel: int) -> np.ndarray:
            name = f"{root}data/{key}"
            try:
                info = archive.getinfo(name)
            except KeyError:
                msg = f"storage {key} is missing from the archive"
                raise pickle.UnpicklingError(msg) from None
            raw_dtype = _raw_dtype(dtype).newbyteorder(order)
            itemsize = raw_dtype.itemsize
            if info.file_size != numel * itemsize:
                msg = (f"storage {key} holds {info.file_size:,} bytes, the pickle declares "
                       f"{numel:,} elements of {itemsize} bytes ({numel * itemsize:,})")  # fmt: skip
                raise pickle.UnpicklingError(msg)
            if info.compress_type == zipfile.ZIP_STORED:
                if info.compress_size != info.file_size:
                    msg = (f"corrupt zip entry {name}: stored uncompressed, yet its sizes "
                           f"differ ({info.compress_size:,} and {info.file_size:,} bytes)")  # fmt: skip
                    raise pickle.UnpicklingError(msg)
                offset = _entry_offset(info, path, file_size)
            if numel == 0:
                data = np.zeros(0, dtype=raw_dtype)
            elif info.compress_type == zipfile.ZIP_STORED:
                data = np.memmap(path, dtype=raw_dtype, mode="r", offset=offset, shape=(numel,))
            else:
                data = np.frombuffer(archive.read(name), dtype=raw_dtype, count=numel)
            return data

        try:
            return _TensorOnlyUnpickler(archive.read(pickles[0]), storage).load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
                AttributeError, struct.error, zipfile.BadZipFile, OSError, NotImplementedError,
                zlib.error, OverflowError, RecursionError, UnicodeDecodeError) as exc:  # fmt: skip
            msg = f"{path}: {exc}"
            raise TensorReadError(msg) from exc


def torch_zip_tensors(path: str | Path) -> list[tuple[str, LazyTensor]]:
    """(name, tensor) pairs of a torch zip checkpoint's state dict, in the file's order; each
    tensor's data is read (and bfloat16 or float8 widened) only when it is loaded.

    A top-level ``{"state_dict": {...}}`` is unwrapped; non-tensor entries are left out. A
    tensor of a dtype hts_fast does not read fails when loaded (its layer's row says so).
    """
    loaded = _stored_tensors(Path(path))
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        msg = f"{path}: the checkpoint holds a {type(loaded).__name__}, not a state dict"
        raise TensorReadError(msg)
    source = str(path)
    tensors = []
    for name, value in loaded.items():
        if not isinstance(value, StoredTensor):
            continue
        name = str(name)
        dtype = value.kind if value.kind in (*RAW_DTYPES, *UNREAD_TORCH_DTYPES) else str(
            np.dtype(value.kind))  # fmt: skip
        where = f"{source}: tensor {name!r}"
        tensors.append((name, LazyTensor(name, value.raw.shape, dtype,
                                         lambda v=value, w=where: v.widen(w), source,
                                         (source, *value.identity), layout="oihw")))  # fmt: skip
    return tensors
