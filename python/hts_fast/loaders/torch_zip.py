"""PyTorch ``.bin`` / ``.pt`` / ``.pth`` checkpoints (the zip format) read without torch and
without running pickle code.

The pickle inside (``<root>/data.pkl``) is read by a restricted unpickler: only the handful
of names that rebuild tensors and containers are resolved, each to hts_fast's own function,
so nothing from the file is ever imported or called. Any other reference (``os.system``,
``builtins.eval``, a model class...) stops the read with an error naming it. Tensor data is
memory-mapped from the zip when stored uncompressed (torch's default).

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
from pathlib import Path
from typing import Any

import numpy as np

from .lazy import LazyTensor, TensorReadError
from .safetensors_files import bf16_to_float32

#: torch storage class name -> NumPy dtype of its elements ("bfloat16" is widened exactly)
STORAGE_DTYPES = {
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2",
    "BFloat16Storage": "bfloat16", "LongStorage": "<i8", "IntStorage": "<i4",
    "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}  # fmt: skip


class _StorageType:
    def __init__(self, name: str) -> None:
        self.dtype = STORAGE_DTYPES[name]


def _rebuild_tensor(storage: np.ndarray, offset: int, size: Any, stride: Any, *_: Any) -> Any:
    """A read-only view of ``storage`` (elements ``offset``, sizes, strides in elements);
    raise pickle.UnpicklingError when the view does not lie inside the storage."""
    size, stride = tuple(size), tuple(stride)
    numbers = (offset, *size, *stride)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in numbers):
        msg = f"tensor view with offset {offset!r}, sizes {size!r}, strides {stride!r}"
        raise pickle.UnpicklingError(msg)
    if len(size) != len(stride):
        msg = f"tensor view with {len(size)} sizes and {len(stride)} strides"
        raise pickle.UnpicklingError(msg)
    if any(n == 0 for n in size):
        return np.zeros(size, dtype=storage.dtype)
    end = offset + 1 + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if end > storage.size:
        msg = (f"a tensor (offset {offset:,}, sizes {size}, strides {stride}) reaches element "
               f"{end - 1:,} of a storage of {storage.size:,} elements")  # fmt: skip
        raise pickle.UnpicklingError(msg)
    if not size:
        return storage[offset : offset + 1].reshape(())
    item = storage.itemsize
    return np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=tuple(s * item for s in stride), writeable=False
    )


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


def _ordered_dict(*args: Any) -> collections.OrderedDict[Any, Any]:
    return collections.OrderedDict(*args)


ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "Size"): tuple,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
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
                and isinstance(pid[1], _StorageType)):  # fmt: skip
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


def read_torch_zip(path: str | Path) -> dict[str, Any]:
    """Return the checkpoint's top-level object (normally a dict of name -> NumPy array).

    Raises TensorReadError for a file that is not a torch zip checkpoint, is corrupt, or
    whose pickle references anything besides tensors and containers.
    """
    path = Path(path)
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

        def storage(dtype: str, key: str, numel: int) -> np.ndarray:
            name = f"{root}data/{key}"
            try:
                info = archive.getinfo(name)
            except KeyError:
                msg = f"storage {key} is missing from the archive"
                raise pickle.UnpicklingError(msg) from None
            raw_dtype = "<u2" if dtype == "bfloat16" else dtype
            itemsize = np.dtype(raw_dtype).itemsize
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
            return bf16_to_float32(data) if dtype == "bfloat16" else data

        try:
            return _TensorOnlyUnpickler(archive.read(pickles[0]), storage).load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
                AttributeError, struct.error, zipfile.BadZipFile, OSError, NotImplementedError,
                zlib.error, OverflowError, RecursionError, UnicodeDecodeError) as exc:  # fmt: skip
            msg = f"{path}: {exc}"
            raise TensorReadError(msg) from exc


def torch_zip_tensors(path: str | Path) -> list[tuple[str, LazyTensor]]:
    """(name, tensor) pairs of a torch zip checkpoint's state dict, in the file's order.

    A top-level ``{"state_dict": {...}}`` is unwrapped; non-array entries are left out.
    """
    loaded = read_torch_zip(path)
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        msg = f"{path}: the checkpoint holds a {type(loaded).__name__}, not a state dict"
        raise TensorReadError(msg)
    tensors = []
    for name, value in loaded.items():
        if isinstance(value, np.ndarray):
            identity = (str(path), value.__array_interface__["data"][0], value.shape,
                        value.strides, value.dtype.str)  # fmt: skip
            tensors.append((str(name), LazyTensor(str(name), value.shape, str(value.dtype),
                                                  lambda v=value: v, str(path), identity)))  # fmt: skip
    return tensors
