"""``hts_fast.distances``: how far apart two models' weights are, layer by layer.

Methods (both modes):

* ``"raw"``: the Frobenius norm of the difference of the two weight tensors as stored
  (a conv kernel's whole 4-D tensor), and of their biases (``delta_b``);
* ``"euclidean"``: the mean over a layer's matrices (a conv2d kernel's rf positions, as
  analyze() reads them, without conv2d_norm) of ||W1 - W2||_F;
* ``"cka"``: the mean over a layer's matrices of a CKA similarity (1 = the same up to a
  rotation and a scale; not a distance).

Default mode: layers are paired by their full name (``longname``); the norms are taken in
float64; ``"cka"`` is linear CKA with the rows of each matrix as samples, the columns
centred (Kornblith et al. 2019); a layer whose shapes differ gets NaN, a bias missing on
either side NaN ``delta_b``. Returns one row per layer present in both models.

``compat="weightwatcher-0.7.7"``: WeightWatcher 0.7.7's ``distances`` table: the analyzed
layers of the two models paired by position (the shorter list wins), the norms in the
weights' dtype (float32 for torch models), ``"cka"`` its uncentred form
||W1ᵀW2|| / sqrt(||W1ᵀW1|| ||W2W2ᵀ||) (the square root of uncentred linear CKA), -1 for a
pair whose shapes differ, biases of dense torch layers (any ``.bias`` of a state dict),
the table indexed by layer_id.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from .. import _threads
from .layer_matrices import known_layout, layer_matrices, read_weight
from .planning import Planned, check_compat, plan_layers

METHODS = ("raw", "euclidean", "cka")
Method = Literal["raw", "euclidean", "cka"]
COMPAT_COLUMNS = ["method", "layer_id", "name", "delta_W", "delta_b", "M", "N", "b_shape",
                  "longname"]  # fmt: skip
COLUMNS = ["layer_id", "name", "longname", "layer_type", "N", "M", "method", "delta_W",
           "delta_b"]  # fmt: skip
#: WeightWatcher's value for a pair it cannot compare
ERROR = -1


def distances(
    model_1: Any,
    model_2: Any,
    method: Method = "euclidean",
    *,
    layers: Sequence[Any] | Any | None = None,
    min_evals: int = 8,
    max_evals: int = 15000,
    max_N: int = 50000,
    compat: Literal["weightwatcher-0.7.7"] | None = None,
) -> pd.DataFrame:
    """Per-layer distance between the weights of two models of the same architecture.

    ``model_1`` and ``model_2``: anything :func:`hts_fast.analyze` takes. ``layers``,
    ``min_evals``, ``max_evals``, ``max_N`` choose the layers as in analyze(), for both
    models. ``method``: ``"raw"``, ``"euclidean"`` or ``"cka"`` (module notes; any case).

    Returns a DataFrame, one row per compared layer: ``layer_id, name, longname,
    layer_type, N, M, method, delta_W, delta_b`` (float64; ``delta_b`` only with "raw",
    NaN where either layer has no bias). ``df.attrs["unmatched"]`` lists the longnames of
    analyzed layers only one of the models has. With ``compat``, WeightWatcher 0.7.7's
    table (module notes): indexed by layer_id, columns ``method, name, delta_W, delta_b,
    M, N, b_shape, longname``.

    Raises ValueError for an unknown method.
    """
    compat = check_compat(compat)
    if not isinstance(method, str) or method.lower() not in METHODS:
        msg = f"method must be 'raw', 'euclidean' or 'cka', got {method!r}"
        raise ValueError(msg)
    method = method.lower()  # type: ignore[assignment]
    plans = [[p for p in plan_layers(m, layers, min_evals, max_evals, max_N, compat)
              if not p.skip_reason] for m in (model_1, model_2)]  # fmt: skip
    biases = [_biases(m, compat) for m in (model_1, model_2)]
    if compat:
        # one BLAS thread: results independent of the thread count, and NumPy's bundled
        # OpenBLAS 0.3.31 crashes (SIGSEGV) on the 30522 x 30522 float32 product 0.7.7's
        # CKA forms for MiniLM's embeddings when it runs on 2 threads (measured here)
        with _threads.single_threaded_blas():
            return _compat_table(plans[0], plans[1], biases, method, compat)
    second = {p.layer.longname: p for p in plans[1]}
    rows = []
    for plan in plans[0]:
        other = second.pop(plan.layer.longname, None)
        if other is None:
            continue
        layer = plan.layer
        assert plan.shape is not None
        row = {"layer_id": layer.layer_id, "name": layer.name, "longname": layer.longname,
               "layer_type": layer.layer_type, "N": plan.shape.N, "M": plan.shape.M,
               "method": method, "delta_W": _distance(plan, other, method),
               "delta_b": math.nan}  # fmt: skip
        if method == "raw":
            b1, b2 = (b.get(layer.longname) for b in biases)
            if b1 is not None and b2 is not None and np.shape(b1) == np.shape(b2):
                row["delta_b"] = float(np.linalg.norm(_float64(b1) - _float64(b2)))
        rows.append(row)
    table = pd.DataFrame(rows, columns=COLUMNS)
    names = {p.layer.longname for p in plans[0]}
    table.attrs["unmatched"] = sorted(names ^ {p.layer.longname for p in plans[1]})
    return table.astype({"layer_id": np.int64, "N": np.int64, "M": np.int64,
                         "delta_W": np.float64, "delta_b": np.float64})  # fmt: skip


def _float64(weight: Any) -> np.ndarray:
    return np.asarray(read_weight(weight, None), dtype=np.float64)


def _matrices(plan: Planned, compat: str | None) -> list[np.ndarray]:
    """The layer's matrices as analyze() reads them, without conv2d_norm (0.7.7's Wmats)."""
    array = read_weight(plan.layer.weight, compat)
    parts = layer_matrices(array, plan.layer.layer_type, compat=compat, conv2d_norm=False,
                           layout=known_layout(plan.layer.weight))  # fmt: skip
    if compat and parts.keep_top is not None:  # 0.7.7 keeps a 3-D weight as one array
        return [array]
    return list(parts.matrices)


def _distance(plan: Planned, other: Planned, method: str) -> float:
    """Default mode: one layer pair's delta_W in float64, NaN when the shapes differ."""
    if method == "raw":
        w1, w2 = _float64(plan.layer.weight), _float64(other.layer.weight)
        if w1.shape != w2.shape:
            return _mismatch(plan, w1.shape, w2.shape)
        return float(np.linalg.norm(w1 - w2))
    pairs = list(zip(_matrices(plan, None), _matrices(other, None), strict=False))
    if len(pairs) != len(_matrices(plan, None)) or any(a.shape != b.shape for a, b in pairs):
        return _mismatch(plan, np.shape(plan.layer.weight), np.shape(other.layer.weight))
    values = []
    for a, b in pairs:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        values.append(np.linalg.norm(a - b) if method == "euclidean" else linear_cka(a, b))
    return float(np.mean(values))


def _mismatch(plan: Planned, a: Any, b: Any) -> float:
    warnings.warn(f"layer {plan.layer.longname}: shapes {tuple(a)} and {tuple(b)} differ; "
                  "its distance is NaN", stacklevel=4)  # fmt: skip
    return math.nan


def linear_cka(a: np.ndarray, b: np.ndarray) -> float:
    """Linear CKA of two matrices with the same number of rows (the samples), columns
    centred: ||AᵀB||_F² / (||AᵀA||_F ||BᵀB||_F), in [0, 1]; NaN when either is constant."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    cross = np.linalg.norm(a.T @ b) ** 2
    scale = np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)
    return float(cross / scale) if scale > 0 else math.nan


def _biases(model: Any, compat: str | None) -> dict[str, Any]:
    """longname -> bias tensor of the layers that have one (compat: WeightWatcher's rule,
    only dense layers of a torch module)."""
    from ..loaders import checkpoint_tensors, is_checkpoint_path
    from .layers import _is_torch_module, _module_type

    if _is_torch_module(model):
        found = {}
        for path, module in model.named_modules():
            bias = getattr(module, "bias", None)
            if bias is None or not hasattr(bias, "shape"):
                continue
            if compat and _module_type(module) != "dense":
                continue
            found[path or type(module).__name__] = bias.detach()
        return found
    if is_checkpoint_path(model):
        pairs: Any = checkpoint_tensors(model)[0]
    elif isinstance(model, Mapping):
        inner = model.get("state_dict") if "state_dict" in model else None
        pairs = (inner if isinstance(inner, Mapping) else model).items()
    else:
        return {}
    return {k[: -len(".bias")]: v for k, v in pairs
            if isinstance(k, str) and k.endswith(".bias")}  # fmt: skip


def _compat_table(
    first: list[Planned], second: list[Planned], biases: list[dict[str, Any]], method: str,
    compat: str,
) -> pd.DataFrame:  # fmt: skip
    """WeightWatcher 0.7.7's distances table (see the module notes)."""
    columns: dict[str, list[Any]] = {c: [] for c in COMPAT_COLUMNS}
    for p1, p2 in zip(first, second, strict=False):
        values: dict[str, Any] = {"method": method, "layer_id": p1.layer.layer_id,
                                  "name": p1.layer.name, "longname": p1.layer.longname}  # fmt: skip
        if method == "raw":
            w1 = read_weight(p1.layer.weight, compat)
            w2 = read_weight(p2.layer.weight, compat)
            values.update(M=min(w1.shape), N=max(w1.shape), delta_W=_compat_norm(w1, w2, method))
            b1, b2 = biases[0].get(p1.layer.longname), biases[1].get(p2.layer.longname)
            if b1 is not None and b2 is not None and len(b1) == len(b2):
                b1, b2 = read_weight(b1, compat), read_weight(b2, compat)
                values.update(b_shape=b1.shape[0], delta_b=_compat_norm(b1, b2, method))
            else:
                values.update(b_shape="unknown", delta_b=0)
        else:
            m1, m2 = _matrices(p1, compat), _matrices(p2, compat)
            delta = 0.0
            for a, b in zip(m1, m2, strict=False):
                delta += _compat_norm(a, b, method)
            values.update(M=min(m1[0].shape), N=max(m1[0].shape), delta_W=delta / float(len(m1)),
                          b_shape="unknown", delta_b=0.0)  # fmt: skip
        for col in COMPAT_COLUMNS:
            columns[col].append(values[col])
    table = pd.DataFrame({col: pd.Series(vals) for col, vals in columns.items()})
    table = (
        table.astype({"layer_id": np.int64, "M": np.int64, "N": np.int64}) if len(table) else table
    )
    return table.set_index("layer_id")


def _compat_norm(a: np.ndarray, b: np.ndarray, method: str) -> Any:
    """WeightWatcher 0.7.7's matrix_distance: in the arrays' own dtype, -1 for shapes that
    differ."""
    if a.shape != b.shape:
        return ERROR
    if method in ("raw", "euclidean"):
        return np.linalg.norm(a - b)
    cross = np.linalg.norm(np.dot(a.T, b))
    norm = np.sqrt(np.linalg.norm(np.dot(a.T, a)) * np.linalg.norm(np.dot(b, b.T)))
    if norm < 1e-6:
        norm = norm + 1e-6
    return cross / norm


__all__ = ["METHODS", "distances", "linear_cka"]
