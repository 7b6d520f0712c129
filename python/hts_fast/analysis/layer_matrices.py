"""From a layer's weight tensor to the matrices whose spectra are pooled, and its N, M, rf.

Two conventions (see README "analyze(): default vs compat"):

* default: N >= M always; Conv1d (out, in, k) kernels are read as k slices like conv2d; a
  4-D kernel whose first two dims are smaller than its last two (kh + kw > out + in) is read
  in Keras layout (kh, kw, in, out), the layout test WeightWatcher itself uses.
* ``compat="weightwatcher-0.7.7"``: WeightWatcher's orientation quirks, including the
  conv2d N/M toggle and its "flip" branch, and 3-D weights treated as one stacked matrix.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .._arrays import as_float_array
from ..spectra.conv2d import CONV2D_NORM_SCALE, conv2d_matrices, oihw_slices

COMPAT = "weightwatcher-0.7.7"
_NATIVE_FLOATS = (np.float16, np.float32, np.float64)


class LayerError(ValueError):
    """A layer's weight cannot be analyzed; the message says why."""


class LayerShape(NamedTuple):
    """Dimensions used by the size tests, known from the shape alone (a NamedTuple: built
    once per layer of every model, it must be cheap)."""

    N: int
    M: int
    rf: int


class LayerMatrices(NamedTuple):
    """The matrices of one layer, the multiplier applied to each, and how to pool them.

    ``matrices``: a tuple of 2-D arrays, or one 3-D array whose slices are the matrices (a
    conv2d kernel's positions). ``keep_top``: keep only this many largest pooled eigenvalues
    (WeightWatcher's handling of 3-D weights in compat mode), else all.
    """

    matrices: tuple[np.ndarray, ...] | np.ndarray
    scale: float
    keep_top: int | None = None


def _shape_of(weight: Any) -> tuple[int, ...]:
    if type(weight) is np.ndarray:
        return weight.shape
    return tuple(int(d) for d in getattr(weight, "shape", ()))


def is_keras_conv2d(shape: tuple[int, ...]) -> bool:
    """Whether a 4-D kernel looks like Keras's (kh, kw, in, out) rather than (out, in, kh, kw)."""
    return len(shape) == 4 and shape[0] + shape[1] < shape[2] + shape[3]


def known_layout(weight: Any) -> str | None:
    """The axis order of a weight's 4-D kernel when its source fixes it: "oihw" for a torch
    tensor and for a file whose format says so (LazyTensor.layout); None otherwise, where a
    kernel whose kernel dims exceed its channel dims is read in Keras layout (a guess)."""
    if type(weight).__module__.startswith("torch"):
        return "oihw"
    return getattr(weight, "layout", None)


def _keras_guess(shape: tuple[int, ...], layout: str | None) -> bool:
    return layout is None and is_keras_conv2d(shape)


def layer_shape(weight: Any, layer_type: str, compat: str | None) -> LayerShape | None:
    """Return N, M, rf for a weight of this type, or None when it is not a matrix layer.

    Needs only ``weight.shape``; nothing is read.
    """
    shape = _shape_of(weight)
    if layer_type == "conv2d":
        if len(shape) != 4:
            return None
        out_ch, in_ch, kh, kw = shape
        if not compat and _keras_guess(shape, known_layout(weight)):
            kh, kw, in_ch, out_ch = shape
        rf = kh * kw
        if compat:
            if out_ch + in_ch < kh + kw:  # WeightWatcher's "flip" branch
                return LayerShape(out_ch, in_ch, rf)
            if out_ch < in_ch and rf % 2 == 0:  # the per-slice N/M toggle
                return LayerShape(out_ch, in_ch, rf)
        return LayerShape(max(out_ch, in_ch), min(out_ch, in_ch), rf)
    if layer_type in ("dense", "conv1d", "embedding"):
        if len(shape) == 2:
            return LayerShape(max(shape), min(shape), 1)
        if len(shape) == 3:
            if compat:
                return LayerShape(max(shape), min(shape), 1)
            if layer_type == "conv1d":
                out_ch, in_ch, k = shape
                return LayerShape(max(out_ch, in_ch), min(out_ch, in_ch), k)
        return None
    return None


def not_a_matrix_reason(weight: Any, layer_type: str) -> str:
    """Explain why layer_shape() returned None."""
    shape = _shape_of(weight)
    return f"{len(shape)}-D weight {shape} of a {layer_type} layer is not a weight matrix"


def read_weight(weight: Any, compat: str | None) -> np.ndarray:
    """Return the weight as a NumPy float array (a view when possible).

    In compat mode torch tensors and checkpoint tensors become float32, as WeightWatcher's
    ``.float().numpy()``.
    Raises LayerError with the reason when the tensor cannot be read.
    """
    if (type(weight) is np.ndarray and weight.dtype.type in _NATIVE_FLOATS and weight.size
            and weight.dtype.isnative):  # fmt: skip
        return weight  # the common case, checked first: a plain float array as it is
    from ..loaders import LazyTensor, TensorReadError

    if isinstance(weight, LazyTensor):
        try:
            weight = weight.load()
        except (TensorReadError, OSError) as exc:
            raise LayerError(str(exc)) from None
        if compat and weight.dtype.kind == "f" and weight.dtype != np.float32:
            # WeightWatcher reads files through torch and calls .float() on every tensor
            weight = weight.astype(np.float32)
    module = type(weight).__module__
    if module.startswith("torch"):
        tensor = weight.detach()
        if tensor.layout != __import__("torch").strided:
            msg = f"sparse weight tensor (layout {tensor.layout}) is not supported"
            raise LayerError(msg)
        if tensor.device.type == "meta":
            msg = "weight is a meta tensor and holds no data"
            raise LayerError(msg)
        if tensor.device.type != "cpu":
            msg = f"weight is on {tensor.device}; move the model to the CPU first"
            raise LayerError(msg)
        if tensor.is_complex() or not tensor.is_floating_point():
            msg = f"weight dtype {tensor.dtype} is not a real floating-point type"
            raise LayerError(msg)
        if compat:
            tensor = tensor.float()
        weight = tensor
    try:
        array = as_float_array(weight, "weight")
    except TypeError as exc:
        raise LayerError(str(exc)) from None
    if array.size == 0:
        msg = f"weight is empty (shape {array.shape})"
        raise LayerError(msg)
    return array


def layer_matrices(
    array: np.ndarray,
    layer_type: str,
    *,
    compat: str | None,
    conv2d_norm: bool,
    layout: str | None = None,
) -> LayerMatrices:
    """Return the matrices (views of ``array``) of a layer whose layer_shape() is not None.
    ``layout``: :func:`known_layout` of the weight ``array`` was read from."""
    keras = not compat and _keras_guess(array.shape, layout)
    if layer_type == "conv2d":
        if array.ndim == 4 and not keras:
            # PyTorch layout: the slices as one 3-D view (no per-slice objects)
            scale = CONV2D_NORM_SCALE if conv2d_norm else 1.0
            return LayerMatrices(oihw_slices(array), scale)
        layout = "hwio" if keras else "oihw"
        parts = conv2d_matrices(array, layout=layout, conv2d_norm=conv2d_norm)
        return LayerMatrices(parts.matrices, parts.scale)
    if array.ndim == 2:
        return LayerMatrices((array,), 1.0)
    if compat:
        # WeightWatcher hands the 3-D array to scipy's batched SVD (one matrix per leading
        # index) and keeps the M largest singular values of all of them.
        keep = min(array.shape)
        return LayerMatrices(tuple(array[i] for i in range(array.shape[0])), 1.0, keep_top=keep)
    out_ch, in_ch, k = array.shape
    slices = tuple(array[:, :, j].T if out_ch < in_ch else array[:, :, j] for j in range(k))
    return LayerMatrices(slices, 1.0)


__all__ = [
    "COMPAT",
    "LayerError",
    "LayerMatrices",
    "LayerShape",
    "known_layout",
    "layer_matrices",
    "layer_shape",
    "not_a_matrix_reason",
    "read_weight",
]
