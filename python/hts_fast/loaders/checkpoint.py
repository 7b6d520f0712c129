"""Which tensors a checkpoint path holds, in WeightWatcher's order.

* a ``.safetensors`` file: its tensors, names sorted;
* a Hugging Face folder: ``model*.safetensors`` shards; with ``model.safetensors.index.json``
  the index's ``weight_map`` order grouped by shard file (shards sorted by name; a shard it
  names that is missing or damaged, a tensor it lists twice or that its shard lacks, or a
  tensor in two shards fails the whole checkpoint), else each shard's sorted names, shard
  after shard (a tensor in two shards fails it); without them
  ``adapter_model*.safetensors`` (a PEFT adapter), then ``pytorch_model*.bin`` and
  ``adapter_model*.bin`` shards;
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
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .lazy import LazyTensor, TensorReadError
from .numpy_files import npy_tensor, npz_tensors
from .safetensors_files import SafetensorsFile
from .torch_zip import torch_zip_tensors

INDEX_NAME = "model.safetensors.index.json"
#: What a folder's weights are looked for as, first match wins (WeightWatcher's order).
FOLDER_PATTERNS = ("model*.safetensors", "adapter_model*.safetensors", "pytorch_model*.bin",
                   "adapter_model*.bin")  # fmt: skip


def is_checkpoint_path(obj: object) -> bool:
    """Whether ``obj`` is a path analyze() should open as a checkpoint."""
    return isinstance(obj, str | os.PathLike)


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


def _weight_map(index: Path) -> dict[str, Any]:
    """The index's ``weight_map`` (tensor name -> shard file name); TensorReadError naming
    the index when it is not JSON, has no such object, lists a tensor twice or maps one to
    anything but a file name."""

    def refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                msg = f"{index}: lists {key!r} more than once"
                raise TensorReadError(msg)
            result[key] = value
        return result

    try:
        weight_map = json.loads(index.read_text(), object_pairs_hook=refuse_duplicates)
        weight_map = weight_map["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, TensorReadError):
            raise
        msg = f"{index}: not a valid safetensors index ({exc})"
        raise TensorReadError(msg) from exc
    if not isinstance(weight_map, dict):
        msg = f"{index}: not a valid safetensors index (weight_map is not an object)"
        raise TensorReadError(msg)
    for name, file in weight_map.items():
        if not isinstance(file, str):
            msg = (f"{index}: not a valid safetensors index (tensor {name!r} maps to "
                   f"{file!r:.80}, not a file name)")  # fmt: skip
            raise TensorReadError(msg)
    return weight_map


def _no_tensor_twice(shards: list[tuple[Path, list[str]]]) -> None:
    """Raise TensorReadError when a tensor name sits in two shard files."""
    seen: dict[str, Path] = {}
    for path, names in shards:
        for name in names:
            if name in seen:
                msg = (f"{path.parent}: the tensor {name!r} sits in two shards, "
                       f"{seen[name].name} and {path.name}")  # fmt: skip
                raise TensorReadError(msg)
            seen[name] = path


def _folder_tensors(folder: Path) -> tuple[list[tuple[str, LazyTensor]], list[int]]:
    index = folder / INDEX_NAME
    if index.exists():
        weight_map = _weight_map(index)
        tensors, opened_shards = [], []
        for shard in sorted(set(weight_map.values()), key=str):
            opened = _indexed_shard(index, folder, shard)
            opened_shards.append((opened.path, opened.names()))
            present = set(opened.names())
            for name, file in weight_map.items():
                if file != shard:
                    continue
                if name not in present:
                    msg = f"{index}: lists {name!r} in {shard}, which does not hold it"
                    raise TensorReadError(msg)
                tensors.append((name, opened.tensor(name)))
        _no_tensor_twice(opened_shards)
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
        _no_tensor_twice([(f, [n for n, _ in t]) for f, t in zip(files, per_file, strict=True)])
        return [t for tensors in per_file for t in tensors], [len(t) for t in per_file]
    tensors, counts, opened_shards = [], [], []
    for shard in files:
        opened = SafetensorsFile(shard)
        opened_shards.append((shard, opened.names()))
        tensors.extend((name, opened.tensor(name)) for name in opened.names())
        counts.append(len(opened.names()))
    _no_tensor_twice(opened_shards)
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

    Raises TensorReadError naming the file for a path that is not a supported checkpoint or
    any damage to it (every reader validates the whole file first); only unsupported content
    of a valid file (a dtype not read) is raised when that tensor is loaded.
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
    readers = {".npz": npz_tensors, ".npy": npy_tensor, ".bin": torch_zip_tensors,
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


def _optional_reader(module: str, function: str) -> Callable[[Path], list[tuple[str, LazyTensor]]]:
    """A reader imported on first use (its optional dependencies only then)."""

    def read(path: Path) -> list[tuple[str, LazyTensor]]:
        return getattr(importlib.import_module(f".{module}", __package__), function)(path)

    return read


_onnx = _optional_reader("onnx_files", "onnx_tensors")
_keras = _optional_reader("keras_files", "keras_tensors")
_gguf = _optional_reader("gguf_files", "gguf_tensors")
