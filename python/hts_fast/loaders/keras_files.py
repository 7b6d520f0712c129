"""Keras weights files (``.keras`` archives and ``.h5`` files) read without Keras, weights
handed over in PyTorch layout.

Three layouts are read:

* a Keras 3 ``.keras`` file: a zip archive holding ``config.json`` (the model's
  architecture, parsed as JSON only: nothing is deserialized or instantiated),
  ``metadata.json`` and ``model.weights.h5``. The HDF5 member is read in place when it is
  stored uncompressed (Keras's default), else streamed once to a temporary file.
* a Keras 3 weights file (``model.save_weights("x.weights.h5")``): the same HDF5 layout,
  without a config. Each object that owns variables has a group ``<path>/vars`` holding
  datasets ``0``, ``1``, ... in the layer's own order (trainable variables first, then the
  others) and, in recent Keras versions (3.15 does), an attribute ``name`` with the layer's
  name. Layers of a Sequential/Functional model sit under ``layers/``, keyed not by their
  names but by their class names in snake case, numbered per class (``dense``, ``dense_1``);
  sublayers held in attributes (MultiHeadAttention's ``query_dense``, an RNN's ``cell``, a
  subclassed model's ``self.proj``) sit under the attribute's name. The optimizer's state
  (``optimizer/``) is left out.
* a legacy Keras 2 / tf.keras HDF5 file: ``model_weights/`` (whole-model files, the
  architecture in the root attribute ``model_config``) or the root (``save_weights`` files)
  lists its layers in the attribute ``layer_names``; each layer group lists its datasets,
  by path relative to the group, in ``weight_names`` (``dense/kernel:0``); both
  attributes may be split into ``layer_names0``, ``layer_names1``, ... when large.

Names: a layer's path is the names of the layers leading to it joined with "." (the top
model's own name left out); its variables are ``<path>.<variable>``, the Keras name of the
variable (``bias``, ``beta``, ``moving_mean``...) or ``vars.<i>`` where the file and config
cannot tell it. The layer's main variable is named ``<path>.weight`` and alone carries the
layer type (``LazyTensor.layer_type``; None on every other variable):

* Dense, Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose, Embedding ("dense", "conv1d",
  "conv1d", "conv2d", "conv2d", "embedding"): the kernel, converted to PyTorch layout on
  load: (in, out) -> (out, in); (k, in, out) -> (out, in, k); (kh, kw, in, out) ->
  (out, in, kh, kw); a transposed convolution's (kh, kw, out, in) -> (in, out, kh, kw),
  ConvTranspose2d's layout (the same permutation); embeddings unchanged;
* MultiHeadAttention: each of its query, key, value and attention_output projections
  (``<path>.query.weight``...) as a PyTorch Linear weight: (in, heads, head_dim) ->
  (heads * head_dim, in) and (heads, head_dim, out) -> (out, heads * head_dim), layer type
  "dense"; their biases flattened to (heads * head_dim,);
* LayerNormalization, BatchNormalization, GroupNormalization, RMSNormalization: gamma
  (``scale`` for RMSNormalization) as ``.weight``, type "norm";
* any other built-in Keras layer (DepthwiseConv2D, SeparableConv2D, EinsumDense, LSTM,
  Conv3D, quantized layers...) and its sublayers: every variable in its stored layout
  under its Keras name, none named ``.weight``, layer type None: their kernels have no
  PyTorch Linear/Conv layout, so they are not offered as weight matrices;
* a layer whose class is unknown (a weights file without config, or a custom class):
  its first variable (Keras 3) or its ``kernel``/``embeddings`` (legacy) is ``.weight``,
  converted by
  its rank alone: 2-D as a Dense kernel, 3-D as a Conv1D one, 4-D as a Conv2D one (an
  Embedding is therefore transposed), layer type None.

The order is the model's (config order) where a config says it, else the file's (HDF5
groups sort by name; numbered keys are sorted numerically). Data are read only when a
tensor is loaded, one dataset at a time: float16/32/64 as such, integers as integers,
bfloat16 (which Keras stores as 2-byte opaque data tagged ``dtype="bfloat16"``) widened
exactly to float32. Other HDF5 types (strings, compounds, references), datasets stored
in external files, virtual datasets and links to other files are refused per tensor.

The file's structure is validated when it is opened, before any tensor is read: every
group and dataset header readable, every dataset a layer names present, every dataset's
data stored and inside the file (a contiguous dataset's extent, each chunk of a chunked
one). A violation, or any error h5py raises while walking the file, is one TensorReadError
naming the file. Compressed chunks are decompressed, and their checksums checked, only when
their tensor is loaded (checking them up front would read the whole file): a damaged chunk
fails its tensor then.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import struct
import tempfile
import threading
import weakref
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from .lazy import LazyTensor, TensorReadError, failing_tensor
from .safetensors_files import bf16_to_float32

WEIGHTS_MEMBER = "model.weights.h5"
CONFIG_MEMBER = "config.json"
#: config.json / model_config larger than this is refused
MAX_CONFIG_BYTES = 100_000_000
#: nested models and groups deeper than this are not followed
MAX_DEPTH = 64
#: a chunked dataset may not claim more than this many bytes per byte stored (compression)
MAX_EXPANSION = 1024
#: Keras class -> (layer type, permutation of the stored kernel into PyTorch layout)
KERNEL_LAYOUTS: dict[str, tuple[str, tuple[int, ...]]] = {
    "Dense": ("dense", (1, 0)), "Embedding": ("embedding", (0, 1)),
    "Conv1D": ("conv1d", (2, 1, 0)), "Conv1DTranspose": ("conv1d", (2, 1, 0)),
    "Conv2D": ("conv2d", (3, 2, 0, 1)), "Conv2DTranspose": ("conv2d", (3, 2, 0, 1)),
}  # fmt: skip
#: without a known class, the kernel's rank decides its permutation
RANK_LAYOUTS: dict[int, tuple[int, ...]] = {1: (0,), 2: (1, 0), 3: (2, 1, 0), 4: (3, 2, 0, 1)}
NORM_CLASSES = {"LayerNormalization", "BatchNormalization", "SyncBatchNormalization",
                "GroupNormalization", "RMSNormalization"}  # fmt: skip
CONTAINER_CLASSES = {"Functional", "Sequential", "Model"}
#: built-in classes recognised in configs that name no module (old legacy files)
OTHER_BUILTINS = {
    "InputLayer", "EinsumDense", "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D",
    "SeparableConv2D", "Conv3D", "Conv3DTranspose", "LSTM", "GRU", "SimpleRNN", "ConvLSTM1D",
    "ConvLSTM2D", "ConvLSTM3D", "Bidirectional", "TimeDistributed", "MultiHeadAttention",
}  # fmt: skip
#: MultiHeadAttention's sublayers: Keras 3 attribute -> the sublayer's name
MHA_SUBLAYERS = {"query_dense": "query", "key_dense": "key", "value_dense": "value",
                 "output_dense": "attention_output"}  # fmt: skip
#: Keras 3 groups that hold a Sequential/Functional model's layers
LAYER_CONTAINERS = ("layers", "_layer_checkpoint_dependencies")
QUANTIZED_PREFIXES = ("int8", "int4", "float8", "gptq", "awq")


class _Damaged(Exception):
    """The HDF5 structure is damaged; becomes one TensorReadError naming the file."""


def _is_refusal(problem: str) -> bool:
    """Whether _child's or _storage_problem's reason refuses a valid feature (a link
    elsewhere, external storage), as opposed to describing damage."""
    return problem.endswith("refused") or "only plain members are read" in problem


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        msg = "reading Keras files needs the h5py package (pip install h5py)"
        raise TensorReadError(msg) from None
    return h5py


# --- the architecture, from config.json or model_config -------------------------------


@dataclass
class _Spec:
    """A layer as the model's config describes it."""

    name: str
    class_name: str
    config: dict[str, Any]
    builtin: bool  # a class of Keras itself, whose variables this module knows
    children: list[_Spec] = field(default_factory=list)  # a nested model's layers

    @property
    def quantized(self) -> bool:
        dtype = self.config.get("dtype")
        policy = dtype.get("config") if isinstance(dtype, dict) else None
        name = policy.get("name") if isinstance(policy, dict) else dtype
        kind = dtype.get("class_name") if isinstance(dtype, dict) else None
        return (
            bool(self.config.get("quantization_config"))
            or (isinstance(kind, str) and "Quantized" in kind)
            or (isinstance(name, str) and name.startswith(QUANTIZED_PREFIXES))
        )


def _spec(entry: Any, depth: int = 0) -> _Spec | None:
    """The layer a config entry ``{"class_name", "config", ...}`` describes, or None."""
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        return None
    class_name, config = entry["class_name"], entry.get("config")
    layers = None
    if isinstance(config, list):  # Keras 2.2 Sequential: the config is the layer list
        config, layers = {}, config
    elif isinstance(config, dict):
        layers = config.get("layers")
    else:
        config = {}
    name = config.get("name", entry.get("name"))
    module = entry.get("module")
    if isinstance(module, str):
        builtin = module.split(".")[0] in ("keras", "tf_keras")
    else:
        builtin = class_name in (
            KERNEL_LAYOUTS.keys() | NORM_CLASSES | CONTAINER_CLASSES | OTHER_BUILTINS
        )
    spec = _Spec(name if isinstance(name, str) else "", class_name, config, builtin)
    if isinstance(layers, list) and depth < MAX_DEPTH:
        spec.children = [s for s in (_spec(e, depth + 1) for e in layers) if s is not None]
    return spec


def _parse_config(raw: bytes | str, where: str) -> _Spec | None:
    """The model described by a JSON config; raises TensorReadError when it is not JSON."""
    if len(raw) > MAX_CONFIG_BYTES:
        msg = f"{where} is larger than {MAX_CONFIG_BYTES} bytes"
        raise TensorReadError(msg)
    try:
        config = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        msg = f"{where} is not valid JSON ({exc})"
        raise TensorReadError(msg) from exc
    if not isinstance(config, dict):
        msg = f"{where} is not a JSON object"
        raise TensorReadError(msg)
    return _spec(config)


def _snake_case(name: str) -> str:
    """Keras's ``naming.to_snake_case``: how a class name becomes an HDF5 group key."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _keys_of(specs: list[_Spec]) -> dict[str, _Spec]:
    """The HDF5 key Keras 3 gives each layer of a model: class name, numbered per class."""
    keys: dict[str, _Spec] = {}
    used: dict[str, int] = {}
    for spec in specs:
        key = _snake_case(spec.class_name)
        if key in used:
            used[key] += 1
            key = f"{key}_{used[key]}"
        else:
            used[key] = 0
        keys[key] = spec
    return keys


def _variable_names(spec: _Spec, role: str | None) -> list[str] | None:
    """The names of a built-in layer's variables in Keras 3's stored order, or None."""
    cls, cfg = spec.class_name, spec.config
    if role is not None:  # a MultiHeadAttention projection (an EinsumDense)
        return ["kernel", "bias"] if cfg.get("use_bias", True) else ["kernel"]
    bias = ["bias"] if cfg.get("use_bias", True) else []
    scale = ["gamma"] if cfg.get("scale", True) else []
    center = ["beta"] if cfg.get("center", True) else []
    if cls == "Embedding":
        return ["embeddings"]
    if cls in KERNEL_LAYOUTS or cls in ("DepthwiseConv1D", "DepthwiseConv2D", "Conv3D",
                                        "Conv3DTranspose"):  # fmt: skip
        return ["kernel", *bias]
    if cls == "EinsumDense":
        return ["kernel", "bias"] if cfg.get("bias_axes") else ["kernel"]
    if cls in ("SeparableConv1D", "SeparableConv2D"):
        return ["depthwise_kernel", "pointwise_kernel", *bias]
    if cls == "LayerNormalization":
        if cfg.get("rms_scaling"):
            return ["gamma"]
        return scale + center
    if cls in ("BatchNormalization", "SyncBatchNormalization"):
        renorm = ["moving_stddev", "renorm_mean", "renorm_stddev"] if cfg.get("renorm") else []
        return [*scale, *center, "moving_mean", "moving_variance", *renorm]
    if cls == "GroupNormalization":
        return scale + center
    if cls == "RMSNormalization":
        return ["scale"]
    return None


# --- where the HDF5 data lives -----------------------------------------------------------


class _Slice:
    """Read-only, seekable bytes ``[start, start + size)`` of a file, for h5py."""

    def __init__(self, file: IO[bytes], start: int, size: int, lock: threading.Lock) -> None:
        self._file, self._start, self._size, self._lock = file, start, size, lock
        self._pos = 0

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int | None = -1) -> bytes:
        left = max(0, self._size - self._pos)
        n = left if n is None or n < 0 else min(n, left)
        with self._lock:
            self._file.seek(self._start + self._pos)
            data = self._file.read(n)
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` straight from the file (h5py's path: no intermediate copy)."""
        view = memoryview(buffer).cast("B")
        view = view[: max(0, min(len(view), self._size - self._pos))]
        with self._lock:
            self._file.seek(self._start + self._pos)
            n = self._file.readinto(view) or 0
        self._pos += n
        return n


class _Source:
    """An HDF5 file to reopen on each load: a file path, or a slice of a file (a zip
    member stored uncompressed, or a temporary copy of a compressed one)."""

    def __init__(self, label: str, path: Path, start: int = 0, size: int | None = None,
                 spill: IO[bytes] | None = None) -> None:  # fmt: skip
        self.label, self.path, self.start, self.spill = label, path, start, spill
        self.size = path.stat().st_size if size is None else size
        self._sliced = size is not None
        self._lock = threading.Lock()
        if spill is not None:  # the temporary copy lives as long as the tensors need it
            weakref.finalize(self, spill.close)

    @contextlib.contextmanager
    def open(self) -> Iterator[Any]:
        """The HDF5 file, read-only; raises what h5py raises for a damaged file."""
        h5py = _h5py()
        if not self._sliced:
            with h5py.File(self.path, "r") as f:
                yield f
            return
        if self.spill is not None:
            view = _Slice(self.spill, 0, self.size, self._lock)
            with h5py.File(view, "r") as f:
                yield f
            return
        with (
            open(self.path, "rb") as raw,
            h5py.File(_Slice(raw, self.start, self.size, threading.Lock()), "r") as f,
        ):
            yield f


def _member_offset(raw: IO[bytes], info: zipfile.ZipInfo) -> int:
    """Byte offset of a zip member's data (after its local header)."""
    raw.seek(info.header_offset)
    local = raw.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        msg = f"corrupt local header of {info.filename}"
        raise zipfile.BadZipFile(msg)
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + name_len + extra_len


def _archive_source(path: Path) -> tuple[_Source, _Spec | None]:
    """The weights member of a ``.keras`` archive and the model its config describes."""
    label = f"{path}:{WEIGHTS_MEMBER}"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if WEIGHTS_MEMBER not in names:
                if "model.weights.npz" in names:
                    msg = (f"{path}: the weights are stored as model.weights.npz "
                           "(weights_format='npz'), which is not read")  # fmt: skip
                else:
                    msg = f"{path}: no {WEIGHTS_MEMBER} in the archive ({len(names)} members)"
                raise TensorReadError(msg)
            spec = None
            if CONFIG_MEMBER in names:
                with archive.open(CONFIG_MEMBER) as f:
                    raw = f.read(MAX_CONFIG_BYTES + 1)
                spec = _parse_config(raw, f"{path}: {CONFIG_MEMBER}")
            info = archive.getinfo(WEIGHTS_MEMBER)
            if info.flag_bits & 0x1:
                msg = f"{path}: {WEIGHTS_MEMBER} is encrypted"
                raise TensorReadError(msg)
            if info.compress_type == zipfile.ZIP_STORED:
                with open(path, "rb") as raw_file:
                    start = _member_offset(raw_file, info)
                if start + info.file_size > path.stat().st_size:
                    msg = f"{path}: {WEIGHTS_MEMBER} reaches beyond the end of the file"
                    raise TensorReadError(msg)
                return _Source(label, path, start, info.file_size), spec
            spill = tempfile.TemporaryFile(prefix="hts_fast_keras_")  # noqa: SIM115 (kept open)
            with archive.open(info) as member:
                shutil.copyfileobj(member, spill, 1 << 20)
            size = spill.tell()
            return _Source(label, path, 0, size, spill), spec
    except TensorReadError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error,
            NotImplementedError, struct.error) as exc:  # fmt: skip
        msg = f"{path}: not a readable .keras archive ({exc})"
        raise TensorReadError(msg) from exc


# --- what the HDF5 file holds ------------------------------------------------------------


@dataclass
class _Variable:
    """One stored variable: its dataset, and what can be told of it without reading it."""

    key: str  # the dataset's key in ``vars`` (Keras 3) or its weight name (legacy)
    label: str | None  # the Keras variable name, None when only the index is known
    h5path: str
    shape: tuple[int, ...] = ()
    dtype: str = "?"
    problem: str = ""


@dataclass
class _Stored:
    """The variables one layer (or sublayer) stores, and what the config says of it."""

    path: tuple[str, ...]
    spec: _Spec | None
    mode: str  # "known": spec describes it; "builtin": inside a built-in layer; "unknown"
    role: str | None  # MultiHeadAttention projection: "query", "key"...
    variables: list[_Variable]


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.bytes_ | np.str_):
        return _text(value.item())
    return value if isinstance(value, str) else None


def _name_list(attrs: Any, name: str) -> list[str] | None:
    """A legacy string-list attribute (``layer_names``, ``weight_names``), possibly split
    into ``name0``, ``name1``...; None when absent."""
    parts = [name] if name in attrs else []
    while not parts or parts[0] != name:
        if f"{name}{len(parts)}" not in attrs:
            break
        parts.append(f"{name}{len(parts)}")
    if not parts:
        return None
    values: list[str] = []
    for part in parts:
        for item in np.atleast_1d(np.asarray(attrs[part], dtype=object)).ravel():
            text = _text(item)
            if text is None:
                msg = f"attribute {part} holds a {type(item).__name__}, not strings"
                raise ValueError(msg)
            values.append(text)
    return values


def _natural(key: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", key))


def _child(group: Any, path: str) -> tuple[Any, str]:
    """``group[path]`` reached through hard links only, or (None, why not)."""
    h5py = _h5py()
    node = group
    for part in [p for p in path.split("/") if p]:
        if not isinstance(node, h5py.Group):
            return None, f"{node.name} is not a group"
        link = node.get(part, getlink=True)
        if link is None:
            return None, f"no {part!r} in {node.name}"
        if isinstance(link, h5py.ExternalLink):
            return None, f"{part!r} is a link to another file ({link.filename}), refused"
        if not isinstance(link, h5py.HardLink):
            return None, f"{part!r} is a {type(link).__name__}, only plain members are read"
        node = node[part]
    return node, ""


def _resolve(root: Any, h5path: str) -> tuple[Any, str]:
    """The dataset at ``h5path`` (hard links only), or (None, why not)."""
    node, problem = _child(root, h5path)
    if node is not None and not isinstance(node, _h5py().Dataset):
        return None, f"{h5path} is not a dataset"
    return node, problem


def _dtype_label(dataset: Any) -> tuple[str, str]:
    """(dtype name, problem) of a dataset; bfloat16 is Keras's tagged 2-byte opaque data."""
    dt = dataset.dtype
    if dt.kind in "fiub" and dt.fields is None and dt.subdtype is None:
        if dt.kind == "f" and dt.itemsize not in (2, 4, 8):
            return dt.name, f"unsupported floating-point width {dt.itemsize * 8} bits"
        return dt.name, ""
    tag = _text(dataset.attrs.get("dtype")) if "dtype" in dataset.attrs else None
    if dt.kind == "V" and dt.fields is None and dt.subdtype is None:
        if tag == "bfloat16" and dt.itemsize == 2:
            return "bfloat16", ""
        what = f"tagged {tag!r}" if tag else "untagged"
        return str(dt), f"unsupported opaque {dt.itemsize}-byte data ({what})"
    return str(dt), f"unsupported HDF5 data type {dt} (not a numeric tensor)"


def _storage_problem(dataset: Any, nbytes: int, file_size: int) -> str:
    """Why the dataset's data cannot be trusted to lie in this file, or ""."""
    h5py = _h5py()
    if dataset.external:
        files = ", ".join(str(e[0]) for e in dataset.external)
        return f"data stored in external files ({files}), refused"
    if dataset.is_virtual:
        return "a virtual dataset (data mapped from other files), refused"
    if nbytes == 0:
        return ""
    stored = dataset.id.get_storage_size()
    layout = dataset.id.get_create_plist().get_layout()
    if layout == h5py.h5d.CONTIGUOUS:
        offset = dataset.id.get_offset()
        if offset is None or stored == 0:
            return "no data stored for it"
        if offset + nbytes > file_size:
            return f"its data reaches beyond the end of the file ({file_size} bytes; truncated?)"
    elif layout == h5py.h5d.CHUNKED:
        if stored == 0:
            return "no data stored for it"
        if nbytes > stored * MAX_EXPANSION:
            return f"it claims {nbytes:,} bytes from {stored:,} stored"
        return _chunk_problem(dataset, file_size)
    return ""


def _chunk_problem(dataset: Any, file_size: int) -> str:
    """Why a chunk of the dataset lies outside the file, or "" (chunk headers only)."""
    outside: list[str] = []

    def check(chunk: Any) -> None:
        if not outside and chunk.byte_offset + chunk.size > file_size:
            outside.append(f"a chunk at bytes [{chunk.byte_offset:,}, "
                           f"{chunk.byte_offset + chunk.size:,}) reaches beyond the end of the "
                           f"file ({file_size:,} bytes; truncated?)")  # fmt: skip

    if hasattr(dataset.id, "chunk_iter"):
        dataset.id.chunk_iter(check)
    else:  # older HDF5: one query per chunk
        for i in range(dataset.id.get_num_chunks()):
            check(dataset.id.get_chunk_info(i))
    return outside[0] if outside else ""


def _inspect(root: Any, variable: _Variable, file_size: int) -> _Variable:
    """Fill in the variable's shape and dtype, or the reason it is not read (a feature
    refused per tensor); raise _Damaged when its header or data is damaged."""
    try:
        dataset, problem = _resolve(root, variable.h5path)
        if dataset is None:
            if not _is_refusal(problem):
                raise _Damaged(f"dataset {variable.h5path}: {problem}")
            variable.problem = problem
            return variable
        if dataset.shape is None:
            variable.problem = "an empty (null) dataspace"
            return variable
        variable.shape = tuple(int(d) for d in dataset.shape)
        variable.dtype, variable.problem = _dtype_label(dataset)
        if not variable.problem:
            nbytes = math.prod(variable.shape) * dataset.dtype.itemsize
            variable.problem = _storage_problem(dataset, nbytes, file_size)
            if variable.problem and not _is_refusal(variable.problem):
                raise _Damaged(f"dataset {variable.h5path}: {variable.problem}")
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise _Damaged(f"dataset {variable.h5path}: unreadable header ({exc})") from None
    return variable


def _vars_name(group: Any) -> str | None:
    """The layer name Keras 3 records on ``<group>/vars`` (attribute ``name``), if any."""
    vars_group, _ = _child(group, "vars") if "vars" in group else (None, "")
    if vars_group is None or "name" not in vars_group.attrs:
        return None
    name = _text(vars_group.attrs["name"])
    return name or None


class _Walk:
    """Collects the layers of a Keras 3 HDF5 file: ``<path>/vars/<i>`` groups."""

    def __init__(self, source: _Source, root: Any) -> None:
        self.source, self.root = source, root
        self.layers: list[_Stored] = []
        self.broken: list[tuple[str, str]] = []  # (name, reason) of unreadable groups
        self._visited: set[int] = set()

    def groups(self, group: Any, path: tuple[str, ...]) -> list[tuple[str, Any]]:
        """The hard-linked subgroups of ``group``, in natural key order; links elsewhere
        are recorded as broken."""
        h5py = _h5py()
        found = []
        for key in sorted(group.keys(), key=_natural):
            child, problem = _child(group, key)
            if isinstance(child, h5py.Group):
                found.append((key, child))
            elif child is None and _is_refusal(problem):
                self.broken.append((".".join((*path, key)), problem))
            elif child is None:
                raise _Damaged(f"group {group.name}: {problem}")
        return found

    def visit(self, group: Any, path: tuple[str, ...], spec: _Spec | None, mode: str,
              role: str | None = None, depth: int = 0) -> None:  # fmt: skip
        """Collect the group's own ``vars``, then its sublayers, depth first."""
        try:
            if depth > MAX_DEPTH or hash(group.id) in self._visited:
                return
            self._visited.add(hash(group.id))
            children = self.groups(group, path)
            own = dict(children).get("vars")
            if own is not None:
                keys = sorted(own.keys(), key=lambda k: (not k.isdigit(), _natural(k)))
                variables = [_inspect(self.root, _Variable(k, None, f"{own.name}/{k}"),
                                      self.source.size) for k in keys]  # fmt: skip
                if variables:
                    self.layers.append(_Stored(path or (_vars_name(group) or "model",),
                                               spec, mode, role, variables))  # fmt: skip
            visits = self.sublayers(children, path, spec, mode, depth)
        except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise _Damaged(f"group {group.name}: unreadable ({exc})") from None
        for child, child_path, child_spec, child_mode, child_role in visits:
            self.visit(child, child_path, child_spec, child_mode, child_role, depth + 1)

    def sublayers(self, children: list[tuple[str, Any]], path: tuple[str, ...],
                  spec: _Spec | None, mode: str, depth: int) -> list[tuple[Any, ...]]:  # fmt: skip
        """(group, path, spec, mode, role) of each sublayer: a model's layers in config
        order, then the objects held in attributes (MultiHeadAttention's in Q, K, V, O order)."""
        visits: list[tuple[Any, ...]] = []
        mha = mode == "known" and spec is not None and spec.class_name == "MultiHeadAttention"
        if mha:
            roles = list(MHA_SUBLAYERS)
            children = sorted(children, key=lambda c: roles.index(c[0]) if c[0] in roles else 4)
        for key, child in children:
            if key == "vars" or (depth == 0 and key == "optimizer"):
                continue
            if key in LAYER_CONTAINERS:
                visits.extend(self.model_layers(child, path, spec, mode))
                continue
            child_role = MHA_SUBLAYERS.get(key) if mha else None
            child_mode = "unknown" if mode == "unknown" else "builtin"
            child_spec, child_mode = (spec, "known") if child_role else (None, child_mode)
            name = _vars_name(child) or child_role or key
            visits.append((child, (*path, name), child_spec, child_mode, child_role))
        return visits

    def model_layers(self, group: Any, path: tuple[str, ...], spec: _Spec | None,
                     mode: str) -> list[tuple[Any, ...]]:  # fmt: skip
        """A model's ``layers`` group: each key matched to its config entry, by the layer
        name Keras records or else by Keras's class-name key; config order."""
        specs = spec.children if spec is not None and mode == "known" else []
        by_key, by_name = _keys_of(specs), {s.name: s for s in specs}
        order = {id(s): i for i, s in enumerate(specs)}
        matched = []
        for key, child in self.groups(group, path):
            name = _vars_name(child)
            child_spec = by_name.get(name) if name else by_key.get(key)
            if child_spec is not None:
                child_mode = "known" if child_spec.builtin else "unknown"
            else:
                child_mode = "builtin" if mode == "builtin" else "unknown"
            label = name or (child_spec.name if child_spec is not None else "") or key
            visit = (child, (*path, label), child_spec, child_mode, None)
            matched.append((order.get(id(child_spec), len(specs)), visit))
        return [visit for _, visit in sorted(matched, key=lambda m: m[0])]


def _legacy_layers(source: _Source, root: Any, weights: Any, spec: _Spec | None,
                   walk: _Walk) -> None:  # fmt: skip
    """The layers of a legacy file, in ``layer_names`` order, into ``walk.layers``."""
    h5py = _h5py()
    try:
        layer_names = _name_list(weights.attrs, "layer_names") or []
    except (OSError, ValueError, TypeError) as exc:
        msg = f"{source.label}: unreadable layer_names attribute ({exc})"
        raise TensorReadError(msg) from exc
    tops = {s.name: s for s in spec.children} if spec is not None else {}
    for layer_name in layer_names:
        try:
            group, problem = _child(weights, layer_name)
            if group is None and _is_refusal(problem):
                walk.broken.append((layer_name, problem))
                continue
            if group is None or not isinstance(group, h5py.Group):
                msg = f"layer {layer_name!r} listed in layer_names: {problem or 'not a group'}"
                raise _Damaged(msg)
            weight_names = _name_list(group.attrs, "weight_names") or []
        except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
            msg = f"layer {layer_name!r}: unreadable layer group ({exc})"
            raise _Damaged(msg) from None
        by_sub: dict[tuple[str, ...], list[_Variable]] = {}
        for weight_name in weight_names:
            parts = [p for p in re.sub(r":\d+$", "", weight_name).split("/") if p]
            if len(parts) > 1 and parts[0] == layer_name:
                parts = parts[1:]
            variable = _Variable(weight_name, parts[-1] if parts else weight_name,
                                 f"{group.name}/{weight_name}")  # fmt: skip
            by_sub.setdefault(tuple(parts[:-1]), []).append(_inspect(root, variable, source.size))
        for sub, variables in by_sub.items():
            walk.layers.append(_legacy_stored((layer_name, *sub), tops.get(layer_name), variables))


def _legacy_stored(path: tuple[str, ...], top: _Spec | None,
                   variables: list[_Variable]) -> _Stored:  # fmt: skip
    """A legacy layer's (or nested layer's) variables with the config entry that fits."""
    spec, mode = top, ("known" if top is not None and top.builtin else "unknown")
    for depth, name in enumerate(path[1:], start=1):
        if spec is None or mode != "known":
            return _Stored(path, None, mode if mode != "known" else "builtin", None, variables)
        if spec.class_name == "MultiHeadAttention" and name in MHA_SUBLAYERS.values():
            if depth == len(path) - 1:
                return _Stored(path, spec, "known", name, variables)
            return _Stored(path, None, "builtin", None, variables)
        if spec.children:
            spec = {s.name: s for s in spec.children}.get(name)
            mode = "known" if spec is not None and spec.builtin else "unknown"
        else:
            return _Stored(path, None, "builtin", None, variables)
    return _Stored(path, spec, mode, None, variables)


# --- from stored variables to PyTorch-layout tensors -------------------------------------


@dataclass
class _Layout:
    """How stored data become the tensor handed over: reshape, then permute."""

    reshape: tuple[int, ...] | None = None
    perm: tuple[int, ...] | None = None

    def shape(self, stored: tuple[int, ...]) -> tuple[int, ...]:
        shape = self.reshape if self.reshape is not None else stored
        return tuple(shape[i] for i in self.perm) if self.perm is not None else shape

    def apply(self, data: np.ndarray) -> np.ndarray:
        if self.reshape is not None:
            data = data.reshape(self.reshape)
        if self.perm is not None and self.perm != tuple(range(data.ndim)):
            data = np.transpose(data, self.perm)
        return data


@dataclass
class _Plan:
    """What one stored variable becomes."""

    suffix: str
    layout: _Layout = field(default_factory=_Layout)
    layer_type: str | None = None


def _labels(layer: _Stored) -> list[str | None]:
    """Each variable's Keras name: the file's (legacy) or the config's, if the count fits."""
    given = [v.label for v in layer.variables]
    if any(label is not None for label in given) or layer.mode != "known" or not layer.spec:
        return given
    if layer.spec.quantized:
        return given
    names = _variable_names(layer.spec, layer.role)
    if names is None or len(names) != len(layer.variables):
        return given
    return list(names)


def _main_plan(layer: _Stored, labels: list[str | None]) -> tuple[int, _Plan] | None:
    """Which variable is ``.weight`` and how it is converted, or None."""
    variables = layer.variables

    def index_of(*names: str) -> int | None:
        return next((i for i, label in enumerate(labels) if label in names), None)

    spec = layer.spec
    if layer.mode == "unknown":
        legacy = any(v.label is not None for v in variables)
        i = index_of("kernel", "embeddings") if legacy else 0
        if i is not None and variables[i].problem:
            return i, _Plan("weight")
        if i is None or not 1 <= len(variables[i].shape) <= 4:
            return None
        return i, _Plan("weight", _Layout(perm=RANK_LAYOUTS[len(variables[i].shape)]))
    if layer.mode != "known" or spec is None or spec.quantized:
        return None
    if layer.role is not None:
        i = index_of("kernel")
        if i is None or len(variables[i].shape) != 3:
            return None
        a, b, c = variables[i].shape
        reshape = (a * b, c) if layer.role == "attention_output" else (a, b * c)
        return i, _Plan("weight", _Layout(reshape, (1, 0)), "dense")
    if spec.class_name in KERNEL_LAYOUTS:
        layer_type, perm = KERNEL_LAYOUTS[spec.class_name]
        i = index_of("kernel", "embeddings")
        i = 0 if i is None and all(label is None for label in labels) else i
        if i is None or (not variables[i].problem and len(variables[i].shape) != len(perm)):
            return None
        return i, _Plan("weight", _Layout(perm=perm), layer_type)
    if spec.class_name in NORM_CLASSES:
        i = index_of("gamma", "scale")
        return None if i is None else (i, _Plan("weight", layer_type="norm"))
    return None


def _plans(layer: _Stored) -> list[_Plan]:
    """One plan per stored variable of the layer."""
    labels = _labels(layer)
    plans = [_Plan(label if label is not None else f"vars.{v.key}")
             for label, v in zip(labels, layer.variables, strict=True)]  # fmt: skip
    main = _main_plan(layer, labels)
    if main is not None:
        plans[main[0]] = main[1]
    if layer.role is not None and layer.role != "attention_output":
        for plan, label, v in zip(plans, labels, layer.variables, strict=True):
            if label == "bias" and len(v.shape) == 2:
                plan.layout = _Layout(reshape=(v.shape[0] * v.shape[1],))
    return plans


def _load(source: _Source, name: str, variable: _Variable, layout: _Layout) -> np.ndarray:
    """Read one dataset and convert it; raises TensorReadError naming the tensor."""
    try:
        with source.open() as f:
            dataset, problem = _resolve(f, variable.h5path)
            if dataset is None:
                raise TensorReadError(problem)
            if tuple(dataset.shape or ()) != variable.shape:
                msg = f"shape {dataset.shape} differs from {variable.shape} read at opening"
                raise TensorReadError(msg)
            data = np.asarray(dataset[()])
    except (TensorReadError, OSError, KeyError, ValueError, RuntimeError, TypeError,
            MemoryError) as exc:  # fmt: skip
        msg = f"{source.label}: tensor {name!r}: {exc}"
        raise TensorReadError(msg) from exc
    if variable.dtype == "bfloat16":
        data = bf16_to_float32(data.view("<u2"))
    return layout.apply(data)


def _tensor(source: _Source, name: str, variable: _Variable, plan: _Plan) -> LazyTensor:
    if variable.problem:
        return failing_tensor(name, variable.shape, variable.dtype, source.label,
                              variable.problem)  # fmt: skip

    def load() -> np.ndarray:
        return _load(source, name, variable, plan.layout)

    return LazyTensor(name, plan.layout.shape(variable.shape), variable.dtype, load,
                      source.label, layer_type=plan.layer_type, layout="oihw")  # fmt: skip


def _collect(source: _Source, walk: _Walk) -> list[tuple[str, LazyTensor]]:
    """The walk's layers as (name, tensor) pairs; a repeated name fails on load."""
    tensors: list[tuple[str, LazyTensor]] = []
    seen: set[str] = set()
    for name, reason in walk.broken:
        tensors.append((name, failing_tensor(name, (), "?", source.label, reason)))
        seen.add(name)
    for layer in walk.layers:
        for variable, plan in zip(layer.variables, _plans(layer), strict=True):
            name = ".".join((*layer.path, plan.suffix))
            if name in seen:
                twice = failing_tensor(name, variable.shape, variable.dtype, source.label,
                                       "the name is used twice")  # fmt: skip
                tensors.append((name, twice))
                continue
            seen.add(name)
            tensors.append((name, _tensor(source, name, variable, plan)))
    return tensors


def _read_source(source: _Source, spec: _Spec | None) -> list[tuple[str, LazyTensor]]:
    """Walk the HDF5 file once (headers only) and plan each tensor's load."""
    try:
        with source.open() as f:
            walk = _Walk(source, f)
            if "model_weights" in f or "layer_names" in f.attrs or "layer_names0" in f.attrs:
                if "model_weights" in f:
                    weights, problem = _child(f, "model_weights")
                    if weights is None:
                        raise TensorReadError(problem)
                    if spec is None and "model_config" in f.attrs:
                        raw = f.attrs["model_config"]
                        raw = raw if isinstance(raw, bytes | str) else _text(raw) or ""
                        spec = _parse_config(raw, f"{source.label}: model_config attribute")
                else:
                    weights = f
                _legacy_layers(source, f, weights, spec, walk)
            elif any(k in f for k in (*LAYER_CONTAINERS, "vars")):
                mode = "unknown" if spec is None or not spec.builtin else "known"
                walk.visit(f, (), spec, mode)
            else:
                msg = "no Keras weights in it (no layers/, model_weights/ or layer_names)"
                raise TensorReadError(msg)
            return _collect(source, walk)
    except TensorReadError as exc:
        text = str(exc)
        msg = text if text.startswith(source.label) else f"{source.label}: {text}"
        raise TensorReadError(msg) from exc
    except _Damaged as exc:
        msg = f"{source.label}: damaged HDF5 file: {exc}"
        raise TensorReadError(msg) from None
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
        msg = f"{source.label}: not a readable HDF5 file ({exc})"
        raise TensorReadError(msg) from exc


def keras_tensors(path: str | os.PathLike[str]) -> list[tuple[str, LazyTensor]]:
    """Return the (name, tensor) pairs of a ``.keras`` archive or a Keras ``.h5`` file.

    Names and layouts are described in the module docstring. Raises TensorReadError naming
    the file when it is not a readable Keras file, its structure is damaged, or h5py is
    missing; a feature refused per tensor (a link elsewhere, external storage, a
    non-numeric type) or a damaged compressed chunk is raised only when that tensor is
    loaded.
    """
    p = Path(path)
    if not p.is_file():
        msg = f"{p}: no such file" if not p.exists() else f"{p}: not a file"
        raise TensorReadError(msg)
    _h5py()
    if p.suffix == ".keras" or zipfile.is_zipfile(p):
        source, spec = _archive_source(p)
    else:
        source, spec = _Source(str(p), p), None
    return _read_source(source, spec)
