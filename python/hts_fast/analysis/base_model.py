"""``analyze(model, base_model=...)``: the spectra of W - W_base, layer by layer.

A fine-tuned model is often judged by what fine-tuning changed. Each analyzed layer of
``model`` whose counterpart in ``base_model`` is found is analyzed as the difference of the
two weights (after the same reading and slicing, before conv2d_norm's scaling, which is
linear); the rows are marked by the ``base_delta`` column.

Which layer is whose counterpart:

* compat (WeightWatcher 0.7.7): both models' analyzed layers (same filters and size tests)
  are walked in step; a model layer pairs with the current base layer when its ``name`` is
  a substring of the base layer's name, and only then does the base walk advance; otherwise
  the model layer is analyzed as it is. With PyTorch's short names this is in effect
  positional ("1" is in "11"). Matrices whose shapes differ (and are not each other's
  transpose) become zeros, with a warning. The difference is taken in the weights' own
  dtype (float32 for torch models), as 0.7.7 does.
* default: a model layer pairs with the base layer of the same ``longname`` (its full
  path); a layer the base does not have is analyzed as it is and named in a warning; shapes
  that do not match raise ValueError naming the layer. The difference is taken in float64.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .layer_matrices import LayerError, LayerMatrices, known_layout, layer_matrices, read_weight
from .planning import Planned


class BaseDelta:
    """A layer weight minus its base model's counterpart, read when the layer is analyzed.

    ``shape`` is the model weight's, so the size tests see the model's layer.
    """

    def __init__(self, weight: Any, base: Any, layer_type: str, name: str) -> None:
        self.weight = weight
        self.base = base
        self.layer_type = layer_type
        self.name = name
        self.shape = tuple(int(d) for d in getattr(weight, "shape", ()))
        #: the model weight's kernel layout when its source fixes it (known_layout)
        self.layout = known_layout(weight)

    def layer_matrices(self, compat: str | None, conv2d_norm: bool) -> LayerMatrices:
        """The layer's matrices, each minus the base's matrix at the same position (minus
        its transpose when the shapes are transposed)."""
        mine = _matrices(read_weight(self.weight, compat), self.layer_type, compat, conv2d_norm,
                         self.layout)  # fmt: skip
        theirs = _matrices(read_weight(self.base, compat), self.layer_type, compat, conv2d_norm,
                           known_layout(self.base))  # fmt: skip
        if len(mine.matrices) != len(theirs.matrices) and not compat:
            msg = (f"layer {self.name}: {len(mine.matrices)} matrices, its base model layer "
                   f"{len(theirs.matrices)}")  # fmt: skip
            raise LayerError(msg)
        deltas = []
        for w, b in zip(mine.matrices, theirs.matrices, strict=False):
            if not compat:
                w, b = w.astype(np.float64), b.astype(np.float64)
            if w.shape == b.shape:
                deltas.append(w - b)
            elif w.shape == b.T.shape:
                deltas.append(w - b.T)
            else:
                # default mode refused these shapes when pairing; compat copies 0.7.7
                warnings.warn(f"layer {self.name}: shapes {w.shape} and base {b.shape} do not "
                              "match; its delta is taken as zero (WeightWatcher 0.7.7)",
                              stacklevel=2)  # fmt: skip
                deltas.append(np.zeros_like(w))
        return LayerMatrices(tuple(deltas), mine.scale, mine.keep_top)


def _matrices(array: np.ndarray, layer_type: str, compat: str | None, norm: bool,
              layout: str | None) -> LayerMatrices:  # fmt: skip
    parts = layer_matrices(array, layer_type, compat=compat, conv2d_norm=norm, layout=layout)
    if isinstance(parts.matrices, np.ndarray):  # a conv2d stack: one matrix per position
        return parts._replace(matrices=tuple(parts.matrices))
    return parts


def _transposable(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return a == b or a == b[::-1]


def pair_with_base(plans: list[Planned], base_plans: list[Planned], compat: str | None) -> None:
    """Replace the weight of each analyzed layer of ``plans`` that has a counterpart in
    ``base_plans`` (planned with the same options) by a :class:`BaseDelta`, in place, and
    set ``plan.base_delta``. See the module notes for the two matching rules."""
    active = [p for p in plans if not p.skip_reason]
    if compat:
        base_active = iter([p for p in base_plans if not p.skip_reason])
        current = next(base_active, None)
        for plan in active:
            if current is not None and plan.layer.name in current.layer.name:
                _attach(plan, current)
                current = next(base_active, None)
        return
    by_longname = {p.layer.longname: p for p in base_plans if p.layer.weight is not None}
    missing = []
    for plan in active:
        base = by_longname.get(plan.layer.longname)
        if base is None:
            missing.append(plan.layer.longname)
            continue
        mine, theirs = _shape(plan.layer.weight), _shape(base.layer.weight)
        if not _transposable(mine, theirs) and not (
            len(mine) == 4 == len(theirs) and mine[2:] == theirs[2:]
            and mine[:2] == theirs[1::-1]):  # fmt: skip
            msg = (f"layer {plan.layer.longname}: weight {mine} and the base model's {theirs} "
                   "have different shapes")  # fmt: skip
            raise ValueError(msg)
        _attach(plan, base)
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        warnings.warn(f"base_model has no layer named {shown}: analyzed without subtracting",
                      stacklevel=3)  # fmt: skip


def _shape(weight: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in getattr(weight, "shape", ()))


def _attach(plan: Planned, base: Planned) -> None:
    layer = plan.layer
    layer.weight = BaseDelta(layer.weight, base.layer.weight, layer.layer_type, layer.longname)
    plan.base_delta = True


__all__ = ["BaseDelta", "pair_with_base"]
