"""Conv2d kernels as matrices, with WeightWatcher's conventions.

A conv2d kernel of shape (out, in, kh, kw) (PyTorch/ONNX, ``layout="oihw"``) or
(kh, kw, in, out) (Keras, ``layout="hwio"``) is read as rf = kh*kw matrices, one per
kernel position (row-major over (i, j)), each out x in, transposed to in x out when
out < in. Their eigenvalues are pooled into one ESD. With ``conv2d_norm`` every matrix is
multiplied by sqrt(1/2) first, so every pooled eigenvalue is half the raw one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .._arrays import as_float_array
from .esd import EsdMethod, esd_batch

Layout = Literal["oihw", "hwio"]
#: Multiplier of every conv2d slice when conv2d_norm is on (WeightWatcher: sqrt(1/2)).
CONV2D_NORM_SCALE = math.sqrt(0.5)


@dataclass(frozen=True)
class Conv2dMatrices:
    """The rf matrices of a conv2d kernel (views, no copies) and the layer's dimensions.

    ``N >= M`` always, unless ``compat="weightwatcher-0.7.7"`` reproduces WeightWatcher's
    orientation bug (see :func:`conv2d_matrices`).
    """

    matrices: tuple[np.ndarray, ...]
    N: int
    M: int
    rf: int
    scale: float


def oihw_slices(arr: np.ndarray) -> np.ndarray:
    """The rf = kh*kw matrices of a 4-D (out, in, kh, kw) kernel as one (rf, N, M) view, in
    row-major kernel-position order, each out x in slice transposed to in x out when
    out < in (so every slice has its larger side first). No copy."""
    out_ch, in_ch, kh, kw = arr.shape
    stack = arr.transpose(2, 3, 0, 1).reshape(kh * kw, out_ch, in_ch)
    return stack.transpose(0, 2, 1) if out_ch < in_ch else stack


def conv2d_matrices(
    W: Any,
    *,
    layout: Layout = "oihw",
    conv2d_norm: bool = True,
    compat: Literal["weightwatcher-0.7.7"] | None = None,
) -> Conv2dMatrices:
    """Split a 4-D conv kernel into its rf = kh*kw matrices.

    Returns
    -------
    Conv2dMatrices
        ``matrices``: rf views, each (max(out, in), min(out, in)) oriented as
        WeightWatcher does; ``N``/``M``: larger/smaller channel count; ``rf``; ``scale``:
        sqrt(1/2) with ``conv2d_norm`` else 1.

    Notes
    -----
    With ``compat="weightwatcher-0.7.7"``, N and M reproduce WeightWatcher 0.7.7, which
    swaps them once per slice when out < in: for an even rf the reported N is then ``out``
    and M is ``in`` (N < M). The matrices and eigenvalues are the same in both modes.
    """
    arr = as_float_array(W, "W")
    if arr.ndim != 4:
        msg = f"a conv2d kernel must be 4-D, got shape {arr.shape}"
        raise ValueError(msg)
    if arr.size == 0:
        msg = f"conv2d kernel is empty (shape {arr.shape})"
        raise ValueError(msg)
    if layout == "oihw":
        out_ch, in_ch, kh, kw = arr.shape

        def at(i: int, j: int) -> np.ndarray:
            return arr[:, :, i, j]  # out x in
    elif layout == "hwio":
        kh, kw, in_ch, out_ch = arr.shape

        def at(i: int, j: int) -> np.ndarray:
            return arr[i, j, :, :].T  # out x in
    else:
        msg = f"layout must be 'oihw' (PyTorch) or 'hwio' (Keras), got {layout!r}"
        raise ValueError(msg)
    if compat not in (None, "weightwatcher-0.7.7"):
        msg = f"compat must be None or 'weightwatcher-0.7.7', got {compat!r}"
        raise ValueError(msg)

    rf = kh * kw
    transpose = out_ch < in_ch
    if layout == "oihw":  # every slice at once, no per-slice indexing
        matrices = tuple(oihw_slices(arr))
    else:
        matrices = tuple(at(i, j).T if transpose else at(i, j)
                         for i in range(kh) for j in range(kw))  # fmt: skip
    N, M = max(out_ch, in_ch), min(out_ch, in_ch)
    if compat and transpose and rf % 2 == 0:
        N, M = out_ch, in_ch
    scale = CONV2D_NORM_SCALE if conv2d_norm else 1.0
    return Conv2dMatrices(matrices=matrices, N=N, M=M, rf=rf, scale=scale)


def esd_conv2d(
    W: Any,
    *,
    layout: Layout = "oihw",
    conv2d_norm: bool = True,
    method: EsdMethod = "svd",
    threads: int | None = None,
) -> np.ndarray:
    """Return the pooled ESD of a conv2d kernel: rf * min(out, in) eigenvalues, ascending.

    Each slice is scaled by sqrt(1/2) when ``conv2d_norm`` (eigenvalues halved), as
    WeightWatcher's ``analyze()`` does. The rf equal-shape slices are decomposed as one
    batch across ``threads``.
    """
    parts = conv2d_matrices(W, layout=layout, conv2d_norm=conv2d_norm)
    spectra = esd_batch(parts.matrices, method=method, scales=parts.scale, threads=threads)
    return np.sort(np.concatenate(spectra))
