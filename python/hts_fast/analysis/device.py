"""``analyze(device=...)``: where the eigensolves run.

* ``"cpu"`` (the default): the compiled CPU kernels; weights on a GPU are refused per layer.
* ``"cuda"``: the weights must already be on a GPU (CUDA torch tensors or CuPy arrays, e.g. a
  model after ``model.cuda()``); every layer's Gram matrix and its symmetric eigensolve run
  there (cuSOLVER through torch or CuPy, equal shapes batched, float64;
  :mod:`hts_fast.spectra.gpu`), and only the eigenvalues (min(N, M) numbers per matrix) come
  back to the host, where the fits and metrics run (they cost well under 1 % of the
  eigensolves). Weights on the host are an error, never copied to the GPU behind the caller's
  back; so is a machine without a GPU.
* ``"auto"``: ``"cuda"`` when the model's weights are on a GPU, else ``"cpu"``.

The GPU route is the Gram route: use it with ``esd_method="gram"`` (its accuracy contract is
the CPU ``gram`` one: every column within 1e-9 relative of ``svd`` but the rank columns).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ..spectra.conv2d import CONV2D_NORM_SCALE
from .layer_matrices import LayerError, LayerMatrices

Device = Literal["cpu", "cuda", "auto"]


def on_gpu(weight: Any) -> bool:
    """Whether ``weight`` is a CUDA torch tensor or a CuPy array."""
    module = type(weight).__module__
    if module.startswith("torch"):
        return getattr(getattr(weight, "device", None), "type", "") == "cuda"
    return module.startswith("cupy")


def check_device(device: Any, *, esd_method: str, compat: str | None) -> Device:
    """Validate the option; raises ValueError for an unknown device or a combination the GPU
    route does not compute (compat's gesdd numbers, esd_method other than "gram")."""
    if device not in ("cpu", "cuda", "auto"):
        msg = f"device must be 'cpu', 'cuda' or 'auto', got {device!r}"
        raise ValueError(msg)
    if device != "cpu" and compat:
        msg = "compat reproduces WeightWatcher's CPU gesdd numbers: use device='cpu'"
        raise ValueError(msg)
    if device == "cuda" and esd_method not in ("gram", "auto"):
        msg = "device='cuda' computes Gram ESDs on the GPU: pass esd_method='gram' (or 'auto')"
        raise ValueError(msg)
    return device


def resolve_device(device: Device, weights: list[Any], esd_method: str) -> Literal["cpu", "cuda"]:
    """The device a batch runs on. ``"cuda"`` needs the weights on a GPU (RuntimeError
    otherwise, saying why); ``"auto"`` picks ``"cuda"`` when they are there (and
    esd_method="gram" or "auto")."""
    if device == "cpu":
        return "cpu"
    placed = [on_gpu(w) for w in weights]
    if device == "auto":
        return "cuda" if placed and all(placed) and esd_method in ("gram", "auto") else "cpu"
    if device == "cuda" and not (placed and all(placed)):
        from ..spectra import gpu

        info = gpu.status()
        reason = "" if info["loaded"] else f" (GPU backend: {info['reason']})"
        msg = ("device='cuda' needs the model's weights on a GPU (CUDA torch tensors or CuPy "
               f"arrays, e.g. model.cuda()); they are on the host{reason}")  # fmt: skip
        raise RuntimeError(msg)
    return device  # type: ignore[return-value]


def device_matrices(weight: Any, layer_type: str, *, conv2d_norm: bool) -> LayerMatrices:
    """The matrices of a GPU-resident layer, as views on the device (no copies)."""
    shape = tuple(int(d) for d in weight.shape)
    if not _is_real_float(weight):
        msg = f"weight dtype {weight.dtype} is not a real floating-point type"
        raise LayerError(msg)
    if layer_type == "conv2d" and len(shape) == 4:
        _, _, kh, kw = shape
        slices = tuple(weight[:, :, i, j] for i in range(kh) for j in range(kw))
        return LayerMatrices(slices, CONV2D_NORM_SCALE if conv2d_norm else 1.0)
    if len(shape) == 2:
        return LayerMatrices((weight,), 1.0)
    msg = f"{len(shape)}-D {layer_type} weights are not analyzed on the GPU (device='cpu' is)"
    raise LayerError(msg)


def _is_real_float(weight: Any) -> bool:
    if type(weight).__module__.startswith("torch"):
        return bool(weight.is_floating_point()) and not weight.is_complex()
    return np.dtype(weight.dtype).kind == "f"


def device_spectra(matrices: list[Any], scales: list[float]) -> list[np.ndarray | Exception]:
    """Ascending eigenvalues of (scale W)^T (scale W) for every matrix, computed on the GPU
    (float64) and copied to the host; a matrix with NaN/Inf gives its error."""
    from ..spectra import gpu

    if not matrices:
        return []
    values = gpu.esd_batch(matrices, dtype="float64")
    out: list[np.ndarray | Exception] = []
    for v, scale in zip(values, scales, strict=True):
        host = v.get() if hasattr(v, "get") else v.detach().cpu().numpy()
        host = np.asarray(host, dtype=np.float64) * (scale * scale)
        if not np.all(np.isfinite(host)):
            out.append(ValueError("NaN or Inf entries (its GPU ESD is not finite)"))
        else:
            out.append(host)
    return out
