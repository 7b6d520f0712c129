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

import hashlib
import json
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


def options_id(text: str) -> str:
    """The short id of an option set (its JSON text as stored): 8 hex digits of its SHA-256."""
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _differences(texts: list[str]) -> dict[str, str]:
    """Each option set's id -> the options in which the sets differ ("key=value, ...")."""
    sets = {t: json.loads(t) for t in texts}
    keys = sorted({k for s in sets.values() for k in s})
    differing = [k for k in keys if len({json.dumps(s.get(k)) for s in sets.values()}) > 1]
    return {options_id(t): ", ".join(f"{k}={s.get(k)}" for k in differing)
            for t, s in sets.items()}  # fmt: skip


def _one_option_set(checkpoints: pd.DataFrame, kept: pd.DataFrame,
                    options: str | None) -> pd.DataFrame:  # fmt: skip
    """``checkpoints`` restricted to the option set ``options`` (an :func:`options_id` or a
    prefix of one); ValueError when it names none, or when ``kept`` (each path's newest row)
    mixes option sets and none was chosen."""
    ids = checkpoints["options"].map(options_id)
    texts = sorted(set(checkpoints["options"]))
    counts = checkpoints.assign(oid=ids).groupby("oid")["path"].nunique()
    listing = "; ".join(f"{oid} ({counts[oid]} checkpoint(s)): {diff or 'all options'}"
                        for oid, diff in _differences(texts).items())  # fmt: skip
    if options is not None:
        chosen = ids.str.startswith(options)
        if not chosen.any() or ids[chosen].nunique() > 1:
            msg = f"--options {options}: matches no single option set of the store ({listing})"
            raise ValueError(msg)
        return checkpoints[chosen]
    if kept["options"].nunique() > 1:
        msg = ("the store holds results of different analysis options, which must not be "
               f"compared: {listing}; choose one with --options ID (options= in Python)")  # fmt: skip
        raise ValueError(msg)
    return checkpoints


def checkpoint_metrics(
    layers: pd.DataFrame, checkpoints: pd.DataFrame | None = None, *,
    include_partial: bool = False, options: str | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Mean of each METRICS column over the successfully analyzed layers of each checkpoint.

    ``layers`` is the store's layers table (a ``path`` column, one row per layer);
    ``checkpoints`` its checkpoints table, so that failed checkpoints (they have no layers)
    are seen and counted. A path analyzed more than once (its file changed, or other options)
    counts with its latest analysis only (the highest id). Results of different analysis
    options are never mixed: when the paths' latest analyses used different option sets,
    ValueError lists them (with their :func:`options_id` and how they differ) unless
    ``options`` chooses one by its id (or a prefix of it); then each path counts with its
    latest analysis of that set.

    Left out: failed checkpoints (no result), and partial ones (some layers failed: their
    mean is over a different set of layers than the others') unless ``include_partial``.
    Returns one row per kept path; ``result.attrs["checkpoint_ids"]`` the ids of the
    analyses averaged, ``result.attrs["left_out"]`` a DataFrame of the checkpoints left out (LEFT_OUT_COLUMNS: path, status, n_failed, n_layers, reason) and
    :func:`left_out_message` says it in words.
    """
    if checkpoints is not None and "options" in checkpoints and len(checkpoints):
        newest = checkpoints.sort_values("id").groupby("path", sort=True).tail(1)
        checkpoints = _one_option_set(checkpoints, newest, options)
        if "checkpoint_id" in layers:
            newest = checkpoints.sort_values("id").groupby("path", sort=True).tail(1)
            layers = layers[layers["checkpoint_id"].isin(set(newest["id"]))]
    elif options is not None:
        msg = "options= needs the checkpoints table with its options column"
        raise ValueError(msg)
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
    ids = ok["checkpoint_id"] if "checkpoint_id" in ok else pd.Series(dtype=int)
    result.attrs["checkpoint_ids"] = sorted(set(ids.astype(int)))
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
    Raises ValueError when the labels have no ``path`` column, nothing matches, or two label
    rows match the same checkpoint (it would count twice). ``result.attrs``: ``unmatched``
    (label rows matching no checkpoint kept) and ``unlabeled`` (kept checkpoints without a
    label); :func:`match_message` says it in words.
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
    matched: list[str | None] = []
    first_line: dict[str, int] = {}
    for line, key in enumerate(keys, start=2):  # line 1 is the CSV header
        if key in by_path:
            found: str | None = by_path[key]
        else:
            candidates = by_name.get(Path(key).name, [])
            found = candidates[0] if len(candidates) == 1 else None
        if found is not None and found in first_line:
            msg = (f"{labels_file}: lines {first_line[found]} and {line} both label the "
                   f"checkpoint {found}; give each checkpoint one label row")  # fmt: skip
            raise ValueError(msg)
        if found is not None:
            first_line[found] = line
        matched.append(found)
    joined = labels.assign(path=matched).dropna(subset=["path"])
    if joined.empty:
        msg = f"{labels_file}: no label's path matches a checkpoint of the store"
        raise ValueError(msg)
    result = joined.merge(metrics, on="path", how="inner")
    result.attrs["unmatched"] = len(labels) - len(joined)
    result.attrs["unlabeled"] = len(metrics) - len(joined)
    return result


def match_message(data: pd.DataFrame) -> str:
    """How many label rows matched no checkpoint and how many checkpoints have no label
    (from :func:`attach_labels`' attrs)."""
    return (
        f"{data.attrs.get('unmatched', 0)} label row(s) matched no checkpoint kept; "
        f"{data.attrs.get('unlabeled', 0)} checkpoint(s) kept have no label"
    )


def choose_label(labels: pd.DataFrame, labels_file: Path, label: str | None = None,
                 exclude: Sequence[str] = ()) -> str:  # fmt: skip
    """The label column: ``label`` if given, else the first column whose name contains "acc"
    (any case), else the first numeric column (``path`` and ``exclude`` never count).
    ValueError when it is missing or any non-empty cell of it is not a number (the message
    names the column, the CSV line and the value)."""
    candidates = [c for c in labels.columns if c != "path" and c not in exclude]
    if label is None:
        accuracy = [c for c in candidates if "acc" in str(c).lower()]
        numeric = [c for c in candidates if pd.api.types.is_numeric_dtype(labels[c])]
        label = (accuracy or numeric or [None])[0]
        if label is None:
            msg = f"{labels_file}: no numeric label column (columns: {list(labels.columns)})"
            raise ValueError(msg)
    elif label not in labels:
        msg = f"{labels_file}: no label column {label!r} (columns: {list(labels.columns)})"
        raise ValueError(msg)
    values = pd.to_numeric(labels[label], errors="coerce")
    bad = values.isna() & labels[label].notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        msg = (f"{labels_file}: label column {label!r}: line {row + 2} "
               f"(path {labels['path'].iloc[row] if 'path' in labels else '?'}) is not a "
               f"number: {labels[label].iloc[row]!r}")  # fmt: skip
        raise ValueError(msg)
    return str(label)


def labelled(
    metrics: pd.DataFrame,
    labels_file: Path | str,
    label: str | None = None,
    group_by: Sequence[str] = (),
) -> tuple[pd.DataFrame, str]:
    """Read the labels CSV, choose its label column (:func:`choose_label`, numeric from then
    on) and join it to ``metrics`` (:func:`attach_labels`). Returns the joined table and the
    label's name; OSError or ValueError naming the file for what is wrong with it."""
    labels_file = Path(labels_file)
    labels = pd.read_csv(labels_file)
    label = choose_label(labels, labels_file, label, group_by)
    labels[label] = pd.to_numeric(labels[label])
    return attach_labels(metrics, labels, labels_file), label


def _pair(x: np.ndarray, y: np.ndarray) -> tuple[int, float, float, float, float]:
    """The count of finite pairs, then rho, its p-value, tau and its p-value over them."""
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return (len(x), *(np.nan,) * 4)
    rho, rho_p = scipy.stats.spearmanr(x, y)
    tau, tau_p = scipy.stats.kendalltau(x, y)
    return len(x), float(rho), float(rho_p), float(tau), float(tau_p)


def rank_correlations(
    data: pd.DataFrame, label: str, group_by: Sequence[str] = (),
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Spearman's rho and Kendall's tau (with p-values) of each metric against ``label``.

    One row per metric for the whole table (group "all") and, for each combination of the
    ``group_by`` columns, one row per metric within that group ("col=value, ..."). Groups
    with fewer than 3 finite pairs or a constant column get NaN. ``n`` is the count of finite
    (metric, label) pairs the statistics are computed on. ValueError names a ``label`` or
    ``group_by`` column that ``data`` lacks.
    """
    missing = [c for c in [label, *group_by] if c not in data]
    if missing:
        msg = f"no column {missing[0]!r} in the labels or metrics (columns: {list(data.columns)})"
        raise ValueError(msg)
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
            rows.append([label, metric, name, *_pair(part[metric].to_numpy(dtype=float), y)])
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)
