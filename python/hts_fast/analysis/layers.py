"""Layer discovery: which weight matrices a model has, with WeightWatcher's ids and names.

Accepted inputs (reference doc section 2.2):

* a ``torch.nn.Module``: ``named_modules()`` order, the root included; ids start at 0 and
  every module consumes one; ``name`` is the last component of the module path (the class
  name for the root); the type comes from the class (Linear -> dense, Conv1d -> conv1d,
  Conv2d -> conv2d, Embedding -> embedding, *Norm* -> norm; also by substring of the class's
  qualified name, so Hugging Face's GPT-2 ``Conv1D`` is conv1d).
* a state dict (``dict`` of tensors or arrays, or ``{"state_dict": {...}}``): keys ending in
  ``.weight`` in dict order; ids start at 1 and every such key consumes one; ``name`` is the
  key without ``.weight``; typed from the shape (see _array_type: WeightWatcher's rule in
  compat mode, which leaves 3-D weights unknown; by default 3-D is conv1d and 2-D weights
  named like embeddings are embedding).
* a sequence of ``(name, array)`` pairs: ids are positions from 0; typed like a state dict.
* a checkpoint path (see hts_fast.loaders): ``.weight`` tensors in the file order, ids from 0,
  typed like a state dict (or as the file states, e.g. a Keras config); an ONNX model: every
  initializer, ids from 0, names as stored, 4-D -> conv2d, 2-D -> dense (WeightWatcher's ONNX
  rule). Tensors are read lazily. (WeightWatcher: folders only; with several shards and no
  index its ids jump by the running count, reproduced in compat mode.)
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

LAYER_TYPES = ("dense", "conv1d", "conv2d", "embedding", "norm", "unknown")
#: Name fragments of embedding tables (Hugging Face, GPT-2's wte/wpe, llama.cpp's token_embd).
EMBEDDING_WORDS = ("embed", "embd", "wte", "wpe")


@dataclass(slots=True)
class Layer:
    """One candidate layer: where it sits in the model and its raw weight (not yet read)."""

    layer_id: int
    name: str
    longname: str
    layer_type: str
    weight: Any  # torch tensor, NumPy array, or None
    source: str  # "module", "state_dict" or "arrays"


def _is_torch_module(obj: Any) -> bool:
    return any(
        cls.__module__.startswith("torch.nn") and cls.__name__ == "Module"
        for cls in type(obj).__mro__
    )


def _module_type(module: Any) -> str:
    """WeightWatcher's PyTorch typing rule (isinstance, or substring of the class string)."""
    import torch

    typestr = str(type(module)).lower()
    if isinstance(module, torch.nn.Linear) or "linear" in typestr:
        return "dense"
    if isinstance(module, torch.nn.Conv1d) or "conv1d" in typestr:
        return "conv1d"
    if isinstance(module, torch.nn.Conv2d) or "conv2d" in typestr:
        return "conv2d"
    if isinstance(module, torch.nn.Embedding) or "embedding" in typestr:
        return "embedding"
    if "norm" in typestr:
        return "norm"
    return "unknown"


def _array_type(weight: Any, compat: str | None = None, name: str = "") -> str:
    """A layer type from the tensor alone (no module to ask).

    compat: WeightWatcher's state-dict rule: 2-D -> dense, 4-D -> conv2d, else (or a first
    dimension below 2) unknown. Default: a type the checkpoint states (Keras configs) wins;
    else 2-D -> embedding when the name says so, else dense; 3-D -> conv1d (PyTorch's
    (out, in, k)); 4-D -> conv2d (PyTorch or Keras layout).
    """
    if type(weight) is np.ndarray:  # the common case: a shape and no stated type
        shape, stated = weight.shape, None
    else:
        shape = tuple(getattr(weight, "shape", ()))
        stated = getattr(weight, "layer_type", None)
    if not compat and isinstance(stated, str) and stated in LAYER_TYPES:
        return stated
    if len(shape) == 0 or shape[0] < 2:
        return "unknown"
    if compat:
        return _COMPAT_TYPES.get(len(shape), "unknown")
    if len(shape) == 2:
        lowered = name.lower()
        return "embedding" if any(w in lowered for w in EMBEDDING_WORDS) else "dense"
    return _DEFAULT_TYPES.get(len(shape), "unknown")


#: layer types by number of dimensions (compat: WeightWatcher's state-dict rule)
_COMPAT_TYPES = {2: "dense", 4: "conv2d"}
_DEFAULT_TYPES = {3: "conv1d", 4: "conv2d"}


def _onnx_type(weight: Any, compat: str | None) -> str:
    """WeightWatcher's ONNX rule: 4 dims -> conv2d, 2 dims -> dense (default: 3 -> conv1d)."""
    ndim = len(getattr(weight, "shape", ()))
    types = {2: "dense", 4: "conv2d"} if compat else {2: "dense", 3: "conv1d", 4: "conv2d"}
    return types.get(ndim, "unknown")


def _module_layers(model: Any) -> list[Layer]:
    layers = []
    for layer_id, (path, module) in enumerate(model.named_modules()):
        name = path.split(".")[-1] if path else type(module).__name__
        longname = path or type(module).__name__
        weight = getattr(module, "weight", None)
        layers.append(Layer(layer_id, name, longname, _module_type(module), weight, "module"))
    return layers


def _weight_name(key: Any, every_key: bool) -> str | None:
    """The layer name of a state-dict key, or None when the key is not a layer weight."""
    if not isinstance(key, str):
        return None
    if key.endswith(".weight"):
        return key[: -len(".weight")]
    return key if every_key else None


def _every_key(keys: Any, compat: str | None) -> bool:
    """Default mode: a dict or file with no ``.weight`` names at all (e.g. NumPy arrays saved
    under plain names) has every entry as a candidate layer; compat keeps WeightWatcher's
    rule, which analyzes nothing there."""
    return not compat and not any(isinstance(k, str) and k.endswith(".weight") for k in keys)


def _state_dict_layers(state: Mapping[str, Any], compat: str | None) -> list[Layer]:
    layers = []
    layer_id = 1
    every_key = _every_key(state.keys(), compat)
    for key, weight in state.items():
        name = _weight_name(key, every_key)
        if name is None:
            continue
        layer_type = _array_type(weight, compat, name)
        layers.append(Layer(layer_id, name, name, layer_type, weight, "state_dict"))
        layer_id += 1
    return layers


def _array_layers(pairs: Sequence[Any], compat: str | None) -> list[Layer]:
    layers = []
    for layer_id, pair in enumerate(pairs):
        if not (isinstance(pair, tuple | list) and len(pair) == 2 and isinstance(pair[0], str)):
            msg = f"item {layer_id} of the sequence is not a (name, array) pair"
            raise TypeError(msg)
        name, weight = pair
        layer_type = _array_type(weight, compat, name)
        layers.append(Layer(layer_id, name, name, layer_type, weight, "arrays"))
    return layers


def _checkpoint_layers(path: Any, compat: str | None) -> list[Layer]:
    from ..loaders import checkpoint_format, checkpoint_tensors

    tensors, per_file = checkpoint_tensors(path)
    if checkpoint_format(path) == "onnx":  # every initializer, ids from 0, names as stored
        return [Layer(i, name, name, _onnx_type(t, compat), t, "file")
                for i, (name, t) in enumerate(tensors)]  # fmt: skip
    layers = []
    layer_id = start = 0
    yielded = 0
    position = 0
    every_key = _every_key((name for name, _ in tensors), compat)
    for count in per_file:
        if compat:  # WeightWatcher restarts each shard at start += layers yielded so far
            start += yielded
            layer_id = start
        for name, tensor in tensors[position : position + count]:
            short = _weight_name(name, every_key)
            if short is None:
                continue
            layer_type = _array_type(tensor, compat, short)
            layers.append(Layer(layer_id, short, short, layer_type, tensor, "file"))
            layer_id += 1
            yielded += 1
        position += count
    return layers


def discover_layers(model: Any, compat: str | None = None) -> list[Layer]:
    """Return every candidate layer of ``model`` in WeightWatcher's iteration order.

    Raises TypeError for an input that is not a torch module, a state dict, a sequence of
    (name, array) pairs or a checkpoint path, and TensorReadError for an unreadable
    checkpoint.
    """
    from ..loaders import is_checkpoint_path

    if is_checkpoint_path(model):
        return _checkpoint_layers(model, compat)
    if _is_torch_module(model):
        return _module_layers(model)
    if isinstance(model, Mapping):
        inner = model.get("state_dict") if "state_dict" in model else None
        return _state_dict_layers(inner if isinstance(inner, Mapping) else model, compat)
    if isinstance(model, Sequence) and not isinstance(model, str | bytes):
        return _array_layers(model, compat)
    msg = (
        f"cannot analyze a {type(model).__module__}.{type(model).__qualname__}: expected a "
        "torch.nn.Module, a state dict (dict of name -> tensor/array, or "
        "{'state_dict': {...}}), a sequence of (name, array) pairs, or a checkpoint path"
    )
    raise TypeError(msg)


def apply_filters(layers: list[Layer], filters: Sequence[Any] | Any | None) -> dict[int, str]:
    """Return {position: reason} for the layers that ``filters`` excludes (reference doc 2.3).

    As in WeightWatcher, three groups are applied in turn and a later group overrides an
    earlier one: type names ('dense', 'conv1d', 'conv2d', 'embedding', 'norm') keep those
    types; layer ids (Python or NumPy integers, or an integer array) keep those ids (all
    >= 0) or drop the ids whose negation is listed (any < 0); other strings keep the layers with that exact ``name``, or, when every one
    contains '-', drop the layers whose name is listed after a '-'.
    """
    if isinstance(filters, np.ndarray):  # NumPy ids (e.g. a table's layer_id values)
        filters = filters.tolist()
    if filters is None or (
        isinstance(filters, Sequence) and not isinstance(filters, str) and len(filters) == 0
    ):
        return {}
    items = list(filters) if isinstance(filters, list | tuple) else [filters]
    types = [f for f in items if isinstance(f, str) and f in LAYER_TYPES[:-1]]
    ids = [int(f) for f in items
           if isinstance(f, numbers.Integral) and not isinstance(f, bool | np.bool_)]  # fmt: skip
    names = [f for f in items if isinstance(f, str) and f not in types]
    if len(types) + len(ids) + len(names) != len(items):
        msg = f"layers= takes layer ids, layer type names and layer names, got {filters!r}"
        raise TypeError(msg)
    if ids and min(ids) < 0 < max(ids):
        msg = "layers= cannot mix kept (>= 0) and excluded (< 0) layer ids"
        raise ValueError(msg)
    dashed = ["-" in n for n in names]
    if names and any(dashed) and not all(dashed):
        msg = "layers= cannot mix kept names and excluded ('-name') names"
        raise ValueError(msg)
    dropped: dict[int, str] = {}
    for pos, layer in enumerate(layers):
        reason = ""
        if types:
            reason = "" if layer.layer_type in types else "type not in layers="
        if ids and min(ids) >= 0:
            reason = "" if layer.layer_id in ids else "id not in layers="
        elif ids:
            reason = "id excluded by layers=" if -layer.layer_id in ids else ""
        if names and not any(dashed):
            reason = "" if layer.name in names else "name not in layers="
        elif names:
            reason = "name excluded by layers=" if f"-{layer.name}" in names else ""
        if reason:
            dropped[pos] = reason
    return dropped
