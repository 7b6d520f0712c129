"""NumPy checkpoints: ``.npy`` files and ``.npz`` archives, read without unpickling anything.

A ``.npy`` file is a magic string, a version, a header (a Python literal giving ``descr``,
``fortran_order`` and ``shape``) and the raw array bytes. An ``.npz`` is a zip archive of
``.npy`` members (stored, or deflated by ``savez_compressed``).

The whole file is validated when it is opened, before any tensor is read: the zip central
directory (every member a ``.npy`` array, as ``np.savez`` writes, and none twice), each
member's ``.npy`` header (its shape x item size must be exactly the bytes that follow it),
and every member read once through ``zipfile`` so that its CRC-32 and its local header are
checked (chunk by chunk: memory stays bounded). A
``.npy`` file's header must likewise match the file's size. Any violation raises one
TensorReadError naming the file, the member and the numbers. Object arrays hold pickles:
their tensors are refused when loaded (a per-tensor error), never unpickled.
"""

from __future__ import annotations

import math
import struct
import zipfile
import zlib
from collections import Counter
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.lib import format as npformat

from .lazy import LazyTensor, TensorReadError, failing_tensor

#: What zipfile and numpy's .npy header reader raise on damaged bytes.
ZIP_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error,
              NotImplementedError, RuntimeError, struct.error)  # fmt: skip
#: Bytes read at a time while checking a member's CRC.
CRC_CHUNK = 1 << 20
_PICKLES = "object arrays hold pickles and are refused"


def _header(f: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype[Any], int]:
    """Read a .npy header from ``f``: (shape, fortran_order, dtype, bytes the header takes)."""
    version = npformat.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = npformat.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = npformat.read_array_header_2_0(f)
    else:
        msg = f".npy version {version} is not supported"
        raise ValueError(msg)
    return tuple(shape), fortran, dtype, f.tell()


def _data_bytes(shape: tuple[int, ...], dtype: np.dtype[Any]) -> int:
    return math.prod(shape) * dtype.itemsize


def _npz_member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> LazyTensor:
    """One ``.npy`` member, its header checked against the member's size; data on demand."""
    name = info.filename[: -len(".npy")]
    source = str(path)
    try:
        with archive.open(info) as f:
            shape, _, dtype, header_bytes = _header(f)
    except ZIP_ERRORS as exc:
        msg = f"{path}: member {info.filename}: unreadable .npy header ({exc})"
        raise TensorReadError(msg) from None
    if dtype.hasobject:
        return failing_tensor(name, shape, str(dtype), source, _PICKLES)
    needed = _data_bytes(shape, dtype)
    held = info.file_size - header_bytes
    if needed != held:
        what = "truncated" if needed > held else "trailing bytes"
        msg = (f"{path}: member {info.filename}: {what}: its .npy header declares shape {shape} "
               f"of {dtype}, {needed:,} data bytes; the member holds {held:,} after its "
               f"{header_bytes}-byte header")  # fmt: skip
        raise TensorReadError(msg)

    def load() -> np.ndarray:
        try:
            with zipfile.ZipFile(path) as again, again.open(info.filename) as f:
                return npformat.read_array(f, allow_pickle=False)
        except ZIP_ERRORS as exc:
            msg = f"{source}: tensor {name!r}: {exc}"
            raise TensorReadError(msg) from exc

    return LazyTensor(name, shape, str(dtype), load, source)


def _check_member_bytes(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Read the member through zipfile, discarding the bytes: its local header, its
    compressed stream and its CRC-32 are checked; raise TensorReadError when one is bad."""
    try:
        with archive.open(info) as f:
            while f.read(CRC_CHUNK):
                pass
    except ZIP_ERRORS as exc:
        msg = f"{path}: member {info.filename}: damaged ({exc})"
        raise TensorReadError(msg) from None


def npz_tensors(path: Path) -> list[tuple[str, LazyTensor]]:
    """Return the (name, tensor) pairs of an ``.npz`` archive's ``.npy`` members, in file
    order, after validating the whole archive; raise TensorReadError naming the file when any
    part of it is damaged. A tensor is named after its member (``a.weight.npy`` -> ``a.weight``).
    """
    try:
        archive = zipfile.ZipFile(path)
    except ZIP_ERRORS as exc:
        msg = f"{path}: not a readable .npz file ({exc})"
        raise TensorReadError(msg) from exc
    with archive:
        members = archive.infolist()
        other = next((i.filename for i in members if not i.filename.endswith(".npy")), None)
        if other is not None:
            msg = f"{path}: the member {other!r} is not a .npy array"
            raise TensorReadError(msg)
        twice = [n for n, k in Counter(i.filename for i in members).items() if k > 1]
        if twice:
            msg = f"{path}: the member {twice[0]} appears more than once in the archive"
            raise TensorReadError(msg)
        tensors = [(m.filename[: -len(".npy")], _npz_member(path, archive, m)) for m in members]
        for member in members:
            _check_member_bytes(path, archive, member)
    return tensors


def npy_tensor(path: Path) -> list[tuple[str, LazyTensor]]:
    """A single ``.npy`` array named after the file (``<stem>.weight``), memory-mapped; its
    header is checked against the file's size (TensorReadError naming the file)."""
    name = path.stem if path.stem.endswith(".weight") else f"{path.stem}.weight"
    source = str(path)
    try:
        with path.open("rb") as f:
            shape, fortran, dtype, offset = _header(f)
            size = f.seek(0, 2)
    except ZIP_ERRORS as exc:
        msg = f"{source}: not a readable .npy file ({exc})"
        raise TensorReadError(msg) from exc
    if dtype.hasobject:
        return [(name, failing_tensor(name, shape, str(dtype), source, _PICKLES))]
    needed = _data_bytes(shape, dtype)
    if offset + needed != size:
        what = "truncated" if offset + needed > size else "trailing bytes"
        msg = (f"{source}: {what}: the .npy header declares shape {shape} of {dtype}, "
               f"{needed:,} data bytes; the file holds {size - offset:,} after its {offset}-byte "
               "header")  # fmt: skip
        raise TensorReadError(msg)

    def load() -> np.ndarray:
        if needed == 0:
            return np.zeros(shape, dtype)
        try:
            order = "F" if fortran else "C"
            return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                             order=order)  # fmt: skip
        except (OSError, ValueError) as exc:
            msg = f"{source}: tensor {name!r}: {exc}"
            raise TensorReadError(msg) from exc

    return [(name, LazyTensor(name, shape, str(dtype), load, source, ("npy", source)))]
