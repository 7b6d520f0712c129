"""AlphaPruning's layer-wise sparsity ratios (Lu et al., NeurIPS 2024) from a layer table.

For the matrices j = 1..n with metric m_j (alpha, say) and P_j parameters, target sparsity
S and epsilon:

1. ``mapping="block_wise"`` (AlphaPruning's default) replaces each m_j by the mean over its
   block (the matrices of one transformer block); ``"per_matrix"`` keeps m_j.
2. r_j = (1 - eps) + 2 eps (m_j - m_min) / (m_max - m_min): higher alpha (a less trained
   matrix), more pruning. When m_max = m_min every r_j is 1 (AlphaPruning divides by zero).
3. ratio_j = c r_j with c chosen so that the parameter-weighted mean
   sum_j P_j ratio_j / sum_j P_j is S.

AlphaPruning stops there, and its ratios can exceed 1 (on LLaMA-7B, block-wise with S = 0.8
and eps = 0.3, the largest is 1.063): a matrix cannot lose more than all its weights. Here
(``clip=True``) every ratio is at most 1 and the excess goes to the others: the matrices that
would exceed 1 are pruned entirely and c is solved again over the rest, until none exceeds 1.
The weighted mean stays S exactly and the order of the ratios is kept. ``clip=False`` gives
AlphaPruning's unclipped numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

Mapping = Literal["block_wise", "per_matrix"]
_BLOCK = re.compile(r"^(.*?(?:^|\.)\d+)(?:\.|$)")


def block_of(name: str) -> str:
    """The block a matrix belongs to: its name up to the first all-digit component
    (``model.layers.3.self_attn.q_proj`` -> ``model.layers.3``). ValueError when none."""
    match = _BLOCK.match(name)
    if match is None:
        msg = (f"layer {name!r} has no numbered block in its name (like 'layers.3.'); pass "
               "block=<function of the name> or mapping='per_matrix'")  # fmt: skip
        raise ValueError(msg)
    return match.group(1)


def _param_counts(table: pd.DataFrame, params: Sequence[float] | str | None) -> np.ndarray:
    if params is None:
        if "params" in table.columns:
            params = "params"
        elif {"N", "M", "rf"} <= set(table.columns):
            return np.asarray(table["N"] * table["M"] * table["rf"], dtype=np.float64)
        else:
            msg = ("the table has no 'params' column nor N, M and rf to count each matrix's "
                   "parameters; pass params=")  # fmt: skip
            raise ValueError(msg)
    if isinstance(params, str):
        if params not in table.columns:
            msg = f"params={params!r} is not a column of the table"
            raise ValueError(msg)
        params = table[params].to_numpy()
    counts = np.asarray(params, dtype=np.float64)
    if counts.shape != (len(table),):
        msg = f"params has {counts.size} entries for {len(table)} layers"
        raise ValueError(msg)
    return counts


def _scaled(r: np.ndarray, weights: np.ndarray, target: float, clip: bool) -> np.ndarray:
    """c * r with sum(weights * result) = target * sum(weights); with ``clip`` every value
    capped at 1 and c solved again over the uncapped ones."""
    total = target * weights.sum()
    full = np.zeros(len(r), dtype=bool)
    while True:
        budget = total - weights[full].sum()
        free = weights[~full] @ r[~full]
        c = budget / free if free > 0 else 0.0
        ratios = np.where(full, 1.0, c * r)
        if not clip:
            return ratios
        over = ~full & (ratios > 1.0)
        if not over.any():
            return ratios
        full |= over


def layerwise_ratios(
    table: pd.DataFrame,
    target: float,
    epsilon: float = 0.3,
    mapping: Mapping = "block_wise",
    metric: str = "alpha",
    *,
    params: Sequence[float] | str | None = None,
    block: Callable[[str], Any] | None = None,
    clip: bool = True,
) -> pd.Series:
    """Per-matrix sparsity ratios whose parameter-weighted mean is ``target`` (AlphaPruning).

    Parameters
    ----------
    table : pandas.DataFrame
        One row per matrix to prune, with the ``metric`` column and the matrix's full name in
        ``longname`` or ``name``: the table of :func:`hts_fast.analyze` (run it with
        ``fix_fingers="xmin_peak"`` for AlphaPruning's LLM default ``alpha_peak``) or of
        :class:`hts_fast.tempbalance.TempBalance`, filtered to the matrices you prune
        (AlphaPruning: every Linear of the decoder blocks). ``longname`` is used when the
        table has it: on a torch model analyze() puts the short name (``q_proj``) in
        ``name`` and the full path (``model.layers.3.self_attn.q_proj``) in ``longname``.
    target : float
        The overall sparsity S in [0, 1] (fraction of the parameters removed).
    epsilon : float
        Half-width of the range of the unscaled ratios, [1 - eps, 1 + eps]; in [0, 1).
    mapping : {"block_wise", "per_matrix"}
        Use each block's mean metric, or each matrix's own.
    metric : str
        The column read (higher value, more pruning).
    params : column name, sequence, or None
        Each matrix's parameter count P_j; by default the ``params`` column, else N*M*rf.
    block : callable, optional
        full name -> block key for ``block_wise``; by default :func:`block_of`.
    clip : bool
        Keep every ratio within [0, 1], redistributing the excess (module docstring);
        False returns AlphaPruning's ratios, which can exceed 1.

    Returns
    -------
    pandas.Series
        The sparsity of each matrix (fraction of its weights to remove), indexed by the
        full name (the index is named after the column read, ``longname`` or ``name``), in
        the table's order.

    Raises
    ------
    ValueError
        A missing column, a non-finite metric (naming the layer), a parameter count <= 0,
        or an argument out of range.
    """
    if not isinstance(table, pd.DataFrame):
        msg = f"table must be a pandas DataFrame, got {type(table).__name__}"
        raise TypeError(msg)
    target, epsilon = float(target), float(epsilon)
    if not 0 <= target <= 1:
        msg = f"target must be a sparsity in [0, 1], got {target!r}"
        raise ValueError(msg)
    if not 0 <= epsilon < 1:
        msg = f"epsilon must be in [0, 1), got {epsilon!r}"
        raise ValueError(msg)
    if mapping not in ("block_wise", "per_matrix"):
        msg = f"mapping must be 'block_wise' or 'per_matrix', got {mapping!r}"
        raise ValueError(msg)
    key = "longname" if "longname" in table.columns else "name"
    if key not in table.columns:
        msg = "the table has no 'longname' or 'name' column naming its matrices"
        raise ValueError(msg)
    if metric not in table.columns:
        msg = f"the table has no {metric!r} column"
        raise ValueError(msg)
    if len(table) == 0:
        return pd.Series([], dtype=np.float64, index=pd.Index([], name=key), name="sparsity")
    names = [str(n) for n in table[key]]
    values = table[metric].to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        msg = (f"layer {names[bad[0]]!r} has {metric} = {float(values[bad[0]])}; every matrix "
               "needs a finite metric (leave unfitted layers out of the table)")  # fmt: skip
        raise ValueError(msg)
    weights = _param_counts(table, params)
    if not np.all(weights > 0):
        k = int(np.flatnonzero(~(weights > 0))[0])
        msg = f"layer {names[k]!r} has {float(weights[k])} parameters; counts must be > 0"
        raise ValueError(msg)
    if mapping == "block_wise":
        keys = [(block or block_of)(name) for name in names]
        frame = pd.DataFrame({"key": keys, "m": values})
        values = frame.groupby("key", sort=False)["m"].transform("mean").to_numpy()
    low, high = values.min(), values.max()
    if high == low:
        r = np.ones(len(values))
    else:
        r = (1 - epsilon) + 2 * epsilon * (values - low) / (high - low)
    ratios = _scaled(r, weights, target, bool(clip))
    return pd.Series(ratios, index=pd.Index(names, name=key), name="sparsity")
