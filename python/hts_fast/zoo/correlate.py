"""Which metric tracks a label across a zoo: rank correlations, overall and within groups.

HT-SR papers compare models by rank-correlating a per-model metric (mean alpha, alpha_weighted,
log norms, ...) with test accuracy. Pooled over a whole zoo a scale metric can correlate in
one direction while inside every group of comparable models (same width, same depth) it
correlates in the other (Simpson's paradox); so every correlation is reported overall and
within each group of ``group_by``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats

#: Per-layer columns averaged into per-checkpoint metrics (those present are used).
METRICS = ["alpha", "alpha_weighted", "log_alpha_norm", "log_norm", "log_spectral_norm",
           "stable_rank", "entropy", "rand_distance", "ww_softrank", "mp_softrank",
           "num_pl_spikes", "Lambda", "raw_alpha", "num_spikes", "detX_num"]  # fmt: skip
RESULT_COLUMNS = ["label", "metric", "group", "n", "spearman", "spearman_p", "kendall",
                  "kendall_p"]  # fmt: skip


def checkpoint_metrics(layers: pd.DataFrame) -> pd.DataFrame:
    """Mean of each METRICS column over the successfully analyzed layers of each checkpoint.

    ``layers`` is the store's layers table (a ``path`` column, one row per layer); returns
    one row per path. A path analyzed more than once (its file changed, or other options)
    counts with its latest analysis only (the highest ``checkpoint_id``).
    """
    if "checkpoint_id" in layers and len(layers):
        latest = layers.groupby("path")["checkpoint_id"].transform("max")
        layers = layers[layers["checkpoint_id"] == latest]
    ok = layers[layers["status"] == "success"] if "status" in layers else layers
    present = [m for m in METRICS if m in ok]
    return ok.groupby("path", sort=True)[present].mean().reset_index()


def attach_labels(metrics: pd.DataFrame, labels: pd.DataFrame, labels_file: Path) -> pd.DataFrame:
    """Join labels onto the per-checkpoint metrics by their ``path`` column.

    A relative path in the labels file is read relative to the labels file's folder; a
    label whose path matches no checkpoint exactly is matched by the last path component.
    Raises ValueError when the labels have no ``path`` column or nothing matches.
    """
    if "path" not in labels:
        msg = f"{labels_file}: the labels need a 'path' column naming each checkpoint"
        raise ValueError(msg)
    base = labels_file.parent
    keys = [str((base / p).resolve()) if not Path(p).is_absolute() else str(Path(p).resolve())
            for p in labels["path"].astype(str)]  # fmt: skip
    by_path = {str(Path(p).resolve()): p for p in metrics["path"]}
    by_name: dict[str, list[str]] = {}
    for p in metrics["path"]:
        by_name.setdefault(Path(p).name, []).append(p)
    matched = []
    for key in keys:
        if key in by_path:
            matched.append(by_path[key])
        else:
            candidates = by_name.get(Path(key).name, [])
            matched.append(candidates[0] if len(candidates) == 1 else None)
    joined = labels.assign(path=matched).dropna(subset=["path"])
    if joined.empty:
        msg = f"{labels_file}: no label's path matches a checkpoint of the store"
        raise ValueError(msg)
    return joined.merge(metrics, on="path", how="inner")


def _pair(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return (np.nan,) * 4
    rho, rho_p = scipy.stats.spearmanr(x, y)
    tau, tau_p = scipy.stats.kendalltau(x, y)
    return float(rho), float(rho_p), float(tau), float(tau_p)


def rank_correlations(
    data: pd.DataFrame, label: str, group_by: Sequence[str] = (),
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Spearman's rho and Kendall's tau (with p-values) of each metric against ``label``.

    One row per metric for the whole table (group "all") and, for each combination of the
    ``group_by`` columns, one row per metric within that group ("col=value, ..."). Groups
    with fewer than 3 finite pairs or a constant column get NaN.
    """
    metrics = [m for m in (metrics or METRICS) if m in data]
    groups: list[tuple[str, pd.DataFrame]] = [("all", data)]
    if group_by:
        for values, part in data.groupby(list(group_by), sort=True):
            values = values if isinstance(values, tuple) else (values,)
            name = ", ".join(f"{c}={v}" for c, v in zip(group_by, values, strict=True))
            groups.append((name, part))
    rows = []
    for name, part in groups:
        y = part[label].to_numpy(dtype=float)
        for metric in metrics:
            stats = _pair(part[metric].to_numpy(dtype=float), y)
            rows.append([label, metric, name, len(part), *stats])
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)
