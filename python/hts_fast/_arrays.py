"""Input checks and zero-copy conversion of user arrays (NumPy, torch) to NumPy."""

from __future__ import annotations

from typing import Any

import numpy as np

SUPPORTED_FLOATS = (np.float16, np.float32, np.float64)


def _from_torch(tensor: Any, what: str) -> np.ndarray:
    if tensor.device.type != "cpu":
        msg = (
            f"{what} is a torch tensor on {tensor.device}; hts_fast's CPU kernels need a CPU "
            "tensor (call .cpu() yourself: data is never moved between devices implicitly)"
        )
        raise ValueError(msg)
    tensor = tensor.detach()
    if tensor.is_complex():
        msg = f"{what} is a complex torch tensor ({tensor.dtype}); weights must be real"
        raise TypeError(msg)
    if not tensor.is_floating_point():
        msg = f"{what} has torch dtype {tensor.dtype}; expected a floating-point tensor"
        raise TypeError(msg)
    import torch

    if tensor.dtype == torch.bfloat16:
        # NumPy has no bfloat16: widen once (exact).
        return tensor.to(torch.float32).numpy()
    return tensor.numpy()  # shares memory, no copy


def as_float_array(x: Any, what: str, *, allow_int: bool = False) -> np.ndarray:
    """Return ``x`` as a NumPy float16/32/64 array, without copying when possible.

    Integer and bool input is converted to float64 when ``allow_int`` is true and
    rejected otherwise. Raises TypeError for non-numeric, complex or unsupported input.
    """
    if type(x) is np.ndarray and x.dtype.type in SUPPORTED_FLOATS and x.dtype.isnative:
        return x  # the common case, checked first because analyze() passes thousands
    module = type(x).__module__
    if module.startswith("torch") and hasattr(x, "detach"):
        arr = _from_torch(x, what)
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:
            msg = f"{what} could not be read as an array: {exc}"
            raise TypeError(msg) from exc
    if arr.dtype.kind == "c":
        msg = f"{what} is complex ({arr.dtype}); weights and eigenvalues must be real"
        raise TypeError(msg)
    if arr.dtype.byteorder not in "=|":  # big-endian data on a little-endian machine
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype.kind in "iub" and allow_int:
        arr = arr.astype(np.float64)
    elif arr.dtype.type not in SUPPORTED_FLOATS:
        msg = f"{what} has unsupported dtype {arr.dtype}; expected float16, float32 or float64"
        raise TypeError(msg)
    return arr


def as_matrix(x: Any, what: str) -> np.ndarray:
    """Return ``x`` as a 2-D float array view; raise ValueError for other shapes."""
    arr = as_float_array(x, what)
    if arr.ndim != 2:
        msg = f"{what} must be a 2-D matrix, got {arr.ndim}-D shape {arr.shape}" + (
            "; use esd_conv2d() for 4-D conv kernels" if arr.ndim == 4 else ""
        )
        raise ValueError(msg)
    if arr.size == 0:
        msg = f"{what} is empty (shape {arr.shape}); it has no spectrum"
        raise ValueError(msg)
    return arr
