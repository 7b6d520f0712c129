"""Which metric tracks a label across a zoo: rank correlations, overall and within groups.

HT-SR papers compare models by rank-correlating a per-model metric (mean alpha, alpha_weighted,
log norms, ...) with test accuracy. Pooled over a whole zoo a scale metric can correlate in
one direction while inside every group of comparable models (same width, same depth) it
correlates in the other (Simpson's paradox); so every correlation is reported overall and
within each group of ``group_by``.

Only checkpoints analyzed in full enter by default: failed ones have no metrics, and a
partial one's means are over fewer layers than the others' (its failed layers are left out
of them), which would compare it on other terms; ``include_partial`` keeps the partial ones.
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
#: Columns of checkpoint_metrics(...).attrs["left_out"].
LEFT_OUT_COLUMNS = ["path", "status", "n_failed", "n_layers", "reason"]
RESULT_COLUMNS = ["label", "metric", "group", "n", "spearman", "spearman_p", "kendall",
                  "kendall_p"]  # fmt: skip


def checkpoint_metrics(
    layers: pd.DataFrame, checkpoints: pd.DataFrame | None = None, *,
    include_partial: bool = False,
) -> pd.DataFrame:  # fmt: skip
    """Mean of each METRICS column over the successfully analyzed layers of each checkpoint.

    ``layers`` is the store's layers table (a ``path`` column, one row per layer);
    ``checkpoints`` its checkpoints table, so that failed checkpoints (they have no layers)
    are seen and counted. A path analyzed more than once (its file changed, or other options)
    counts with its latest analysis only (the highest id).

    Left out: failed checkpoints (no result), and partial ones (some layers failed: their
    mean is over a different set of layers than the others') unless ``include_partial``.
    Returns one row per kept path; ``result.attrs["left_out"]`` is a DataFrame of the
    checkpoints left out (LEFT_OUT_COLUMNS: path, status, n_failed, n_layers, reason) and
    :func:`left_out_message` says it in words.
    """
    if "checkpoint_id" in layers and len(layers):
        latest = layers.groupby("path")["checkpoint_id"].transform("max")
        layers = layers[layers["checkpoint_id"] == latest]
    status = layers["status"] if "status" in layers else pd.Series("success", layers.index)
    counts = pd.DataFrame({"path": layers["path"], "bad": status == "failed"}).groupby(
        "path", sort=True)["bad"].agg(["sum", "size"])  # fmt: skip
    left: list[dict[str, object]] = []
    if checkpoints is not None and len(checkpoints):
        newest = checkpoints.sort_values("id").groupby("path", sort=True).tail(1)
        for row in newest[newest["status"] == "failed"].itertuples(index=False):
            left.append({"path": row.path, "status": "failed", "n_failed": np.nan,
                         "n_layers": np.nan, "reason": f"no result: {row.error}"})  # fmt: skip
    failed_paths = {entry["path"] for entry in left}
    if not include_partial:
        for path, (bad, size) in counts[counts["sum"] > 0].iterrows():
            if path not in failed_paths:
                left.append({"path": path, "status": "partial", "n_failed": int(bad),
                             "n_layers": int(size),
                             "reason": f"{int(bad)} of {int(size)} layers failed"})  # fmt: skip
    dropped = {entry["path"] for entry in left}
    ok = layers[(status == "success") & ~layers["path"].isin(dropped)]
    present = [m for m in METRICS if m in ok]
    result = ok.groupby("path", sort=True)[present].mean().reset_index()
    result.attrs["left_out"] = pd.DataFrame(left, columns=LEFT_OUT_COLUMNS)
    return result


def left_out_message(metrics: pd.DataFrame) -> str:
    """One line saying how many checkpoints :func:`checkpoint_metrics` left out and why
    ("" when none)."""
    left = metrics.attrs.get("left_out")
    if left is None or not len(left):
        return ""
    failed = int((left["status"] == "failed").sum())
    partial = int((left["status"] == "partial").sum())
    parts = []
    if failed:
        parts.append(f"{failed} failed (no result)")
    if partial:
        parts.append(f"{partial} partial (some layers failed; --include-partial keeps them)")
    return f"left out {len(left)} checkpoint(s): " + ", ".join(parts)


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
