"""Which tensors a checkpoint path holds, in WeightWatcher's order.

* a ``.safetensors`` file: its tensors, names sorted;
* a Hugging Face folder: ``model*.safetensors`` shards; with ``model.safetensors.index.json``
  the index's ``weight_map`` order grouped by shard file (shards sorted by name; a shard it
  names that is missing or unreadable, or a tensor it lists that its shard lacks, fails the
  whole checkpoint), else each shard's sorted names, shard after shard; without them ``adapter_model*.safetensors`` (a
  PEFT adapter), then ``pytorch_model*.bin`` and ``adapter_model*.bin`` shards;
* an ``.npz`` file: its arrays in file order, shapes from the headers, data on demand
  (object arrays refused);
* a torch ``.bin``/``.pt``/``.pth`` zip checkpoint (or a folder of ``pytorch_model*.bin``
  shards when it has no safetensors): its state dict in the file's order, read by a
  restricted unpickler that never runs code from the file;
* a ``.npy`` file: one tensor named ``<stem>.weight``, memory-mapped;
* an ``.onnx`` model: its graph initializers in file order (hts_fast.loaders.onnx_files);
* a Keras ``.keras``/``.h5`` file: kernels in PyTorch layout (hts_fast.loaders.keras_files);
* a ``.gguf`` file: its tensors, quantized ones dequantized (hts_fast.loaders.gguf_files).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npformat

from .lazy import LazyTensor, TensorReadError, failing_tensor
from .safetensors_files import SafetensorsFile
from .torch_zip import torch_zip_tensors

INDEX_NAME = "model.safetensors.index.json"
#: What a folder's weights are looked for as, first match wins (WeightWatcher's order).
FOLDER_PATTERNS = ("model*.safetensors", "adapter_model*.safetensors", "pytorch_model*.bin",
                   "adapter_model*.bin")  # fmt: skip
#: What zipfile and numpy's .npy reader raise on damaged archives.
_ZIP_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error,
               NotImplementedError)  # fmt: skip


def is_checkpoint_path(obj: object) -> bool:
    """Whether ``obj`` is a path analyze() should open as a checkpoint."""
    return isinstance(obj, str | os.PathLike)


def _npz_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> LazyTensor:
    """One ``.npy`` member: shape and dtype from its header, data read on demand.

    The header is checked against the member's size before anything is allocated, and
    object (pickled) arrays are refused.
    """
    name = info.filename[: -len(".npy")]
    source = str(path)
    try:
        with archive.open(info) as f:
            version = npformat.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = npformat.read_array_header_1_0(f)
            else:
                shape, _, dtype = npformat.read_array_header_2_0(f)
    except _ZIP_ERRORS as exc:
        return failing_tensor(name, (), "?", source, f"unreadable .npy header ({exc})")
    if dtype.hasobject:
        return failing_tensor(name, tuple(shape), str(dtype), source,
                              "object arrays hold pickles and are refused")  # fmt: skip
    needed = math.prod(shape) * dtype.itemsize
    if needed > info.file_size:
        return failing_tensor(name, tuple(shape), str(dtype), source,
                              f"header needs {needed} bytes, the member holds {info.file_size}")  # fmt: skip

    def load() -> np.ndarray:
        try:
            with zipfile.ZipFile(path) as again, again.open(info.filename) as f:
                return npformat.read_array(f, allow_pickle=False)
        except _ZIP_ERRORS as exc:
            msg = f"{source}: tensor {name!r}: {exc}"
            raise TensorReadError(msg) from exc

    return LazyTensor(name, tuple(shape), str(dtype), load, source)


def _npz_tensors(path: Path) -> list[tuple[str, LazyTensor]]:
    try:
        archive = zipfile.ZipFile(path)
    except _ZIP_ERRORS as exc:
        msg = f"{path}: not a readable .npz file ({exc})"
        raise TensorReadError(msg) from exc
    with archive:
        members = [i for i in archive.infolist() if i.filename.endswith(".npy")]
        return [(m.filename[: -len(".npy")], _npz_member(archive, m, path)) for m in members]


def _shards(folder: Path, pattern: str = "model*.safetensors") -> list[Path]:
    """The files of ``pattern``; when the canonical single file (``model.safetensors``) or
    numbered shards (``model-00001-of-00002.safetensors``) are there, only those, so that
    variants shipped beside them (``model.fp16.safetensors``) are not read twice."""
    files = sorted(p for p in folder.glob(pattern) if p.is_file())
    stem, suffix = pattern.split("*")
    single = [p for p in files if p.name == stem + suffix]
    if single:
        return single
    numbered = re.compile(re.escape(stem) + r"-\d+-of-\d+" + re.escape(suffix))
    shards = [p for p in files if numbered.fullmatch(p.name)]
    return shards or files


def _folder_tensors(folder: Path) -> tuple[list[tuple[str, LazyTensor]], list[int]]:
    index = folder / INDEX_NAME
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            msg = f"{index}: not a valid safetensors index ({exc})"
            raise TensorReadError(msg) from exc
        if not isinstance(weight_map, dict):
            msg = f"{index}: not a valid safetensors index (weight_map is not an object)"
            raise TensorReadError(msg)
        tensors = []
        for shard in sorted(set(weight_map.values())):
            opened = _indexed_shard(index, folder, shard)
            present = set(opened.names())
            for name, file in weight_map.items():
                if file != shard:
                    continue
                if name not in present:
                    msg = f"{index}: lists {name!r} in {shard}, which does not hold it"
                    raise TensorReadError(msg)
                tensors.append((name, opened.tensor(name)))
        return tensors, [len(tensors)]
    for pattern in FOLDER_PATTERNS:
        files = _shards(folder, pattern)
        if files:
            break
    else:
        msg = f"{folder}: no {', '.join(FOLDER_PATTERNS)} files"
        raise TensorReadError(msg)
    if files[0].suffix == ".bin":
        per_file = [torch_zip_tensors(b) for b in files]
        return [t for tensors in per_file for t in tensors], [len(t) for t in per_file]
    tensors, counts = [], []
    for shard in files:
        opened = SafetensorsFile(shard)
        tensors.extend((name, opened.tensor(name)) for name in opened.names())
        counts.append(len(opened.names()))
    return tensors, counts


def _indexed_shard(index: Path, folder: Path, shard: Any) -> SafetensorsFile:
    """A shard a safetensors index names, opened; a missing or unreadable one fails the whole
    checkpoint (TensorReadError naming the index and the shard)."""
    if not isinstance(shard, str) or Path(shard).name != shard:
        msg = f"{index}: names {shard!r} as a shard (expected a file name in {folder})"
        raise TensorReadError(msg)
    path = folder / shard
    if not path.is_file():
        msg = f"{index}: names the shard {shard}, which is missing from {folder}"
        raise TensorReadError(msg)
    try:
        return SafetensorsFile(path)
    except TensorReadError as exc:  # its message names the shard already
        msg = f"{exc} (a shard named by {index.name})"
        raise TensorReadError(msg) from exc
    except OSError as exc:
        msg = f"{path}: cannot be read ({exc}; a shard named by {index.name})"
        raise TensorReadError(msg) from exc


def checkpoint_tensors(
    path: str | os.PathLike[str],
) -> tuple[list[tuple[str, LazyTensor]], list[int]]:
    """Return the (name, tensor) pairs of a checkpoint and the number per file read.

    Raises TensorReadError for a path that is not a supported, readable checkpoint; a
    tensor-level problem is raised only when that tensor is loaded.
    """
    p = Path(path)
    if p.is_dir():
        return _folder_tensors(p)
    if not p.exists():
        msg = f"{p}: no such file or directory"
        raise TensorReadError(msg)
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        opened = SafetensorsFile(p)
        return [(name, opened.tensor(name)) for name in opened.names()], [len(opened.names())]
    readers = {".npz": _npz_tensors, ".npy": _npy_tensor, ".bin": torch_zip_tensors,
               ".pt": torch_zip_tensors, ".pth": torch_zip_tensors, ".onnx": _onnx,
               ".keras": _keras, ".h5": _keras, ".hdf5": _keras, ".gguf": _gguf}  # fmt: skip
    if suffix not in readers:
        msg = (f"{p}: unsupported checkpoint format (expected .safetensors, .bin/.pt/.pth, "
               ".npz/.npy, .onnx, .keras/.h5, .gguf or a model folder)")  # fmt: skip
        raise TensorReadError(msg)
    tensors = readers[suffix](p)
    return tensors, [len(tensors)]


def checkpoint_format(path: str | os.PathLike[str]) -> str:
    """How a checkpoint's tensors become layers: "onnx" (every initializer is a candidate
    layer, named as stored, as WeightWatcher's ONNX iterator) or "state_dict" (the
    ``.weight`` tensors, WeightWatcher's state-dict rules)."""
    return "onnx" if Path(path).suffix.lower() == ".onnx" else "state_dict"


def _npy_tensor(path: Path) -> list[tuple[str, LazyTensor]]:
    """A single ``.npy`` array, named after the file (``<stem>.weight``), memory-mapped."""
    name = path.stem if path.stem.endswith(".weight") else f"{path.stem}.weight"
    source = str(path)
    try:
        with path.open("rb") as f:
            version = npformat.read_magic(f)
            read_header = (npformat.read_array_header_1_0 if version == (1, 0)
                           else npformat.read_array_header_2_0)  # fmt: skip
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
    except (OSError, ValueError, EOFError) as exc:
        msg = f"{source}: not a readable .npy file ({exc})"
        raise TensorReadError(msg) from exc
    if dtype.hasobject:
        return [(name, failing_tensor(name, tuple(shape), str(dtype), source,
                                      "object arrays hold pickles and are refused"))]  # fmt: skip
    needed = math.prod(shape) * dtype.itemsize
    if offset + needed > path.stat().st_size:
        return [(name, failing_tensor(name, tuple(shape), str(dtype), source,
                                      f"header needs {needed} bytes after offset {offset}, "
                                      f"the file has {path.stat().st_size}"))]  # fmt: skip

    def load() -> np.ndarray:
        if needed == 0:
            return np.zeros(shape, dtype)
        try:
            order = "F" if fortran else "C"
            return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape),
                             order=order)  # fmt: skip
        except (OSError, ValueError) as exc:
            msg = f"{source}: tensor {name!r}: {exc}"
            raise TensorReadError(msg) from exc

    return [(name, LazyTensor(name, tuple(shape), str(dtype), load, source, ("npy", source)))]


def _optional_reader(module: str, function: str) -> Callable[[Path], list[tuple[str, LazyTensor]]]:
    """A reader imported on first use (its optional dependencies only then)."""

    def read(path: Path) -> list[tuple[str, LazyTensor]]:
        return getattr(importlib.import_module(f".{module}", __package__), function)(path)

    return read


_onnx = _optional_reader("onnx_files", "onnx_tensors")
_keras = _optional_reader("keras_files", "keras_tensors")
_gguf = _optional_reader("gguf_files", "gguf_tensors")
