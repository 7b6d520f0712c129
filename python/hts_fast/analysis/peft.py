"""LoRA adapters (PEFT): the product B·A of each lora_A / lora_B pair as one layer.

A LoRA layer adds ``s * B @ A`` to a frozen weight W (``A``: rank x in, ``B``: out x rank,
``s = lora_alpha / rank``, or ``lora_alpha / sqrt(rank)`` with rsLoRA). With ``peft=True``
analyze() reports one row per pair, named after the lora_A layer with ``lora_A`` replaced by
``lora_BA``; with ``peft="with_base"`` also W + B·A (named ``lora_W_plus_AB``, W being the
last analyzed non-LoRA layer before the pair, as in a PEFT model's module order) and the
ordinary layers. WeightWatcher 0.7.7's ``peft=`` option does the same (reference doc 7.10).

Default mode:

* B·A's nonzero spectrum comes from the rank x rank matrix R_B R_A^T (QR factors of B and
  A^T), which has the same singular values as the out x in product, in float64 and in
  O((out + in) rank^2) instead of a full SVD;
* the adapter's scale s multiplies B·A in both rows when the checkpoint states it
  (``adapter_config.json`` of an adapter folder: lora_alpha, or its ``alpha_pattern`` entry
  for the module, over the pair's actual rank, or its square root with rsLoRA), else s = 1;
* W + s B·A keeps its whole spectrum (it is an ordinary full-rank weight).

Compat mode (``compat="weightwatcher-0.7.7"``) reproduces WeightWatcher: B·A formed in float32,
no scale, its ``rank`` largest eigenvalues kept, and W + B·A also cut to ``rank`` eigenvalues.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .layer_matrices import LayerError, LayerMatrices, LayerShape, read_weight

PEFT_MODES = (False, True, "with_base")


def check_peft(peft: Any) -> bool | str:
    """Validate analyze()'s ``peft`` argument; return it."""
    if peft not in PEFT_MODES or (peft is not False and peft is not True and peft != "with_base"):
        msg = f"peft must be False, True or 'with_base', got {peft!r}"
        raise ValueError(msg)
    return peft


@dataclass(frozen=True)
class LoraScaling:
    """How a PEFT adapter scales B·A: lora_alpha over the pair's rank (its square root with
    rsLoRA); ``alpha_pattern`` overrides lora_alpha for the modules whose name ends in one
    of its keys, as PEFT does."""

    lora_alpha: float
    use_rslora: bool
    alpha_pattern: dict[str, float]

    def scale(self, module: str, rank: int) -> float:
        """The scale s of the pair of ``module`` (its name without ``.lora_A...``)."""
        alpha = self.lora_alpha
        for key, value in self.alpha_pattern.items():
            if module == key or module.endswith("." + key):
                alpha = value
        return alpha / (math.sqrt(rank) if self.use_rslora else rank)


def adapter_scaling(path: Any) -> LoraScaling | None:
    """The scaling an adapter folder's ``adapter_config.json`` states, else None."""
    try:
        config_path = Path(path) / "adapter_config.json"
    except TypeError:
        return None
    if not config_path.is_file():
        return None
    try:
        config = json.loads(config_path.read_text())
        lora_alpha = float(config["lora_alpha"])
        pattern = {str(k): float(v) for k, v in (config.get("alpha_pattern") or {}).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not math.isfinite(lora_alpha):
        return None
    return LoraScaling(lora_alpha, bool(config.get("use_rslora")), pattern)


def module_of(longname: str) -> str:
    """The adapted module's name: the part of a factor's name before ``.lora_A``/``.lora_B``."""
    return longname.split(".lora_")[0]


def _shape2(weight: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in getattr(weight, "shape", ()))


@dataclass
class LoraProduct:
    """The weight of a ``lora_BA`` (``base`` None) or ``lora_W_plus_AB`` row, read on demand.

    ``a``, ``b`` and ``base`` are the raw weights (arrays, tensors or lazy file tensors);
    ``transpose_a``/``transpose_b`` align them as WeightWatcher does (A is made rank x in,
    then B is transposed if its columns do not match A's rows).
    """

    a: Any
    b: Any
    base: Any
    scale: float
    transpose_a: bool
    transpose_b: bool
    shape: tuple[int, int]  # of B·A
    rank: int

    @classmethod
    def pair(cls, a: Any, b: Any, base: Any = None, scale: float = 1.0) -> LoraProduct:
        """Align A and B by their shapes; raise LayerError when they cannot be multiplied."""
        a_shape, b_shape = _shape2(a), _shape2(b)
        if len(a_shape) != 2 or len(b_shape) != 2:
            msg = f"LoRA factors must be 2-D, got A {a_shape} and B {b_shape}"
            raise LayerError(msg)
        transpose_a = a_shape[0] > a_shape[1]
        rank, cols = a_shape[::-1] if transpose_a else a_shape
        transpose_b = b_shape[1] != rank
        rows, inner = b_shape[::-1] if transpose_b else b_shape
        if inner != rank:
            msg = f"LoRA factors cannot be multiplied: B {b_shape} and A {a_shape}"
            raise LayerError(msg)
        if base is not None and sorted(_shape2(base)) != sorted((rows, cols)):
            msg = f"base weight {_shape2(base)} does not match B·A {(rows, cols)}"
            raise LayerError(msg)
        return cls(a, b, base, scale, transpose_a, transpose_b, (rows, cols), rank)

    def layer_shape(self) -> LayerShape:
        return LayerShape(max(self.shape), min(self.shape), 1)

    def _factors(self, compat: str | None) -> tuple[np.ndarray, np.ndarray]:
        a = read_weight(self.a, compat)
        b = read_weight(self.b, compat)
        dtype = np.float32 if compat else np.float64
        a = (a.T if self.transpose_a else a).astype(dtype, copy=False)
        b = (b.T if self.transpose_b else b).astype(dtype, copy=False)
        return a, b

    def _base(self, compat: str | None, like: tuple[int, int]) -> np.ndarray:
        w = read_weight(self.base, compat)
        w = w if w.shape == like else w.T  # WeightWatcher adds B·A^T to a transposed base
        return w.astype(np.float32 if compat else np.float64, copy=False)

    def dense_matrices(self) -> LayerMatrices:
        """The explicit out x in matrix s·B·A (or W + s·B·A) in float64, for randomize=True,
        which shuffles its entries (the rank x rank shortcut has other entries)."""
        a, b = self._factors(None)
        product = self.scale * (b @ a)
        if self.base is not None:
            return LayerMatrices((self._base(None, self.shape) + product,), 1.0)
        return LayerMatrices((product,), 1.0, keep_top=self.rank)

    def layer_matrices(self, compat: str | None) -> LayerMatrices:
        """The matrices whose spectrum is this row's ESD (see the module docstring)."""
        a, b = self._factors(compat)
        for name, factor in (("A", a), ("B", b)):
            if not np.isfinite(factor).all():
                msg = f"LoRA factor {name} holds NaN or Inf"
                raise LayerError(msg)
        if compat:
            product = np.dot(b, a)  # float32, as WeightWatcher
            if self.base is not None:
                product = self._base(compat, product.shape) + product
            return LayerMatrices((product,), 1.0, keep_top=self.rank)
        if self.base is not None:
            w = self._base(compat, self.shape)
            return LayerMatrices((w + self.scale * (b @ a),), 1.0)
        r_b = np.linalg.qr(b, mode="r")
        r_a = np.linalg.qr(a.T, mode="r")
        return LayerMatrices((r_b @ r_a.T,), self.scale)


def lora_role(layer_type: str, longname: str) -> str:
    """'A', 'B', 'other' (an unpaired LoRA tensor) or '' (not a LoRA layer)."""
    # default mode types 2-D weights named like embeddings "embedding"; a factor is 2-D
    if layer_type not in ("dense", "embedding") or "lora_" not in longname:
        return ""
    if "lora_A" in longname:
        return "A"
    if "lora_B" in longname:
        return "B"
    return "other"
