"""TempBalance's maps from per-layer scores (alpha, say) to multipliers of the global value.

With scores s_1..s_n of the layers tuned at this step, r_min / r_max the ratio range:

* ``"linear"`` (TempBalance's default ``tb_linear_map``):
  r_min + (r_max - r_min) * (s_i - s_min) / (s_max - s_min). When s_max = s_min (one tuned
  layer, or equal scores) every layer gets the midpoint (r_min + r_max) / 2, the value the
  map gives the mean score. TempBalance's code evaluates the map with ``np.interp`` over
  the points (s_min, r_min), (s_max, r_max), which for s_max = s_min gives every layer
  r_max, the top of the range.
* ``"sqrt"``: n * sqrt(s_i) / sum_j sqrt(s_j); ``"log2"``: the same with log2. Both keep the
  mean multiplier at 1 and ignore r_min / r_max. sqrt needs scores >= 0, log2 scores > 1
  (alpha always is); other scores raise ValueError naming the layer, instead of giving
  negative or infinite values.
* ``"step"``: the layer of rank k (0 = smallest score, ties in layer order) gets
  r_min + (r_max - r_min) * k / n.

Higher score, higher multiplier: with alpha, a lighter tail (a less trained layer) gets a
larger learning rate (TempBalance) or a stronger weight decay (AlphaDecay).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Assign = Literal["linear", "sqrt", "log2", "step"]
ASSIGNS = ("linear", "sqrt", "log2", "step")


def check_ratios(min_ratio: float, max_ratio: float, what: str) -> tuple[float, float]:
    """The range as floats; ValueError unless 0 <= min <= max, both finite."""
    low, high = float(min_ratio), float(max_ratio)
    if not (np.isfinite(low) and np.isfinite(high) and 0 <= low <= high):
        msg = f"{what}: need 0 <= min ratio <= max ratio, both finite; got {low!r}, {high!r}"
        raise ValueError(msg)
    return low, high


def multipliers(
    scores: Sequence[float] | np.ndarray, names: Sequence[str], *, assign: Assign,
    min_ratio: float, max_ratio: float,
) -> np.ndarray:  # fmt: skip
    """One multiplier per score (finite scores only; see the module docstring)."""
    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    if n == 0:
        return s
    bad = np.flatnonzero(~np.isfinite(s))
    if len(bad):
        msg = f"layer {names[bad[0]]!r} has the score {float(s[bad[0]])}; scores must be finite"
        raise ValueError(msg)
    if assign == "linear":
        low, high = s.min(), s.max()
        if high == low:
            return np.full(n, (min_ratio + max_ratio) / 2)
        return min_ratio + (max_ratio - min_ratio) * (s - low) / (high - low)
    if assign in ("sqrt", "log2"):
        limit, rule = (0.0, ">= 0") if assign == "sqrt" else (1.0, "> 1")
        wrong = np.flatnonzero(s < limit if assign == "sqrt" else s <= limit)
        if len(wrong):
            k = wrong[0]
            msg = f"assign={assign!r} needs scores {rule}; layer {names[k]!r} has {float(s[k])}"
            raise ValueError(msg)
        t = np.sqrt(s) if assign == "sqrt" else np.log2(s)
        total = t.sum()
        return np.ones(n) if total == 0 else n * t / total
    if assign == "step":
        ranks = np.empty(n, dtype=np.float64)
        ranks[np.argsort(s, kind="stable")] = np.arange(n)
        return min_ratio + (max_ratio - min_ratio) * ranks / n
    msg = f"assign must be one of {ASSIGNS}, got {assign!r}"
    raise ValueError(msg)
