"""``hts-fast report``: PNG plots and one self-contained HTML page, for a model or a zoo.

For one model (any input analyze() takes): per layer, its ESD as a log-log density histogram
with the fitted power law drawn above xmin; alpha by depth ("correlation flow") with the
2 and 6 bounds of the well-trained range; the histogram of alphas. For a scan's store:
every checkpoint's alpha by depth, the alpha histogram of all layers and, with a labels
file, each mean metric against the label. The HTML page embeds the PNGs (base64) and the
tables, so it can be mailed or archived as one file. Needs matplotlib
(``pip install "hts_fast[report]"``).
"""

from __future__ import annotations

import base64
import html
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: Layer-table columns shown on the page.
LAYER_COLUMNS = ["layer_id", "name", "layer_type", "N", "M", "num_evals", "alpha", "xmin",
                 "D", "alpha_weighted", "log_norm", "log_spectral_norm", "stable_rank",
                 "warning", "status"]  # fmt: skip
WELL_TRAINED = (2.0, 6.0)


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        msg = 'reports need matplotlib: pip install "hts_fast[report]"'
        raise SystemExit(msg) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _pyplot().close(fig)
    return path


def draw_esd(ax: Any, evals: np.ndarray, alpha: float, xmin: float, *, bins: int = 39) -> None:
    """Draw one layer's ESD on ``ax``: a log-log density histogram of the positive eigenvalues
    (``bins`` log-spaced bins), the power law of exponent ``alpha`` above ``xmin`` scaled to
    the tail's share of the density, and xmin as a dashed line (fit lines only when alpha > 1
    and xmin > 0 are finite); a note instead when the positive eigenvalues do not spread."""
    positive = evals[evals > 0]
    if len(np.unique(positive)) < 2:  # zero or constant spectrum: nothing to draw on log axes
        ax.text(0.5, 0.5, "no spread of positive eigenvalues", ha="center", va="center")
        return
    edges = np.logspace(np.log10(positive.min()), np.log10(positive.max()), bins + 1)
    ax.hist(positive, bins=edges, density=True, color="#6a8fbf", alpha=0.8, label="ESD")
    alpha, xmin = float(alpha), float(xmin)
    if np.isfinite(alpha) and np.isfinite(xmin) and xmin > 0 and alpha > 1:
        tail = positive[positive >= xmin]
        x = np.logspace(np.log10(xmin), np.log10(positive.max()), 50)
        share = len(tail) / len(positive)  # the tail's share of the total density
        ax.plot(x, share * (alpha - 1) / xmin * (x / xmin) ** (-alpha), color="#c0392b",
                label=f"PL fit, alpha = {alpha:.2f}")  # fmt: skip
        ax.axvline(xmin, color="#c0392b", linestyle="--", linewidth=1, label="xmin")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("eigenvalue of WᵀW")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)


def plot_esd(evals: np.ndarray, row: pd.Series, path: Path) -> Path:
    """Log-log density histogram of one layer's ESD, the fitted power law above xmin."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    draw_esd(ax, evals, row.get("alpha", np.nan), row.get("xmin", np.nan))
    ax.set_title(f"{row.get('layer_id')}: {row.get('name')}", fontsize=9)
    return _save(fig, path)


def plot_alpha_by_depth(tables: dict[str, pd.DataFrame], path: Path) -> Path:
    """alpha of each layer against its position in the model, one line per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for label, table in tables.items():
        ok = table[table["status"] == "success"]
        ax.plot(np.arange(len(ok)), ok["alpha"], marker="o", markersize=3, linewidth=1,
                label=label if len(tables) <= 10 else None)  # fmt: skip
    for bound in WELL_TRAINED:
        ax.axhline(bound, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("layer (in model order)")
    ax.set_ylabel("alpha")
    ax.set_title("alpha by depth (2 <= alpha <= 6: well trained)", fontsize=9)
    if len(tables) <= 10:
        ax.legend(fontsize=6)
    return _save(fig, path)


def plot_alpha_histogram(alphas: np.ndarray, path: Path) -> Path:
    """Histogram of the layers' alphas."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    finite = alphas[np.isfinite(alphas)]
    ax.hist(finite, bins=min(30, max(5, len(finite) // 2)), color="#4e9a6a")
    for bound in WELL_TRAINED:
        ax.axvline(bound, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("alpha")
    ax.set_ylabel("layers")
    return _save(fig, path)


def plot_metric_vs_label(data: pd.DataFrame, metrics: Sequence[str], label: str,
                         path: Path) -> Path:  # fmt: skip
    """Each checkpoint's mean metric against its label, one panel per metric."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.0), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        ax.scatter(data[metric], data[label], s=14, color="#6a5acd")
        ax.set_xlabel(f"mean {metric}")
        ax.set_ylabel(label)
    return _save(fig, path)


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def _page(title: str, sections: list[tuple[str, str]]) -> str:
    style = ("body{font-family:sans-serif;margin:2em;color:#222} table{border-collapse:"
             "collapse;font-size:12px} td,th{border:1px solid #ccc;padding:2px 6px} "
             "img{margin:4px;border:1px solid #eee}")  # fmt: skip
    body = "".join(f"<h2>{html.escape(h)}</h2>\n{content}\n" for h, content in sections)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body><h1>{html.escape(title)}</h1>\n"
            f"{body}</body></html>\n")  # fmt: skip


def _table_html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="", border=0)


def model_report(model: Any, out: str | Path, **options: Any) -> Path:
    """Analyze ``model`` and write its plots and ``report.html`` into ``out``; return the page."""
    from ..analysis.pipeline import analyze
    from ..analysis.table import summary

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    spectra: dict[int, np.ndarray] = {}
    table = analyze(model, _spectra_sink=spectra, **options)
    images = []
    for index, evals in sorted(spectra.items()):
        row = table.iloc[index]
        images.append(plot_esd(evals, row, folder / f"esd_{index:04d}.png"))
    depth = plot_alpha_by_depth({str(model): table}, folder / "alpha_by_depth.png")
    hist = plot_alpha_histogram(table["alpha"].to_numpy(float), folder / "alpha_hist.png")
    means = pd.DataFrame([summary(table)])
    skipped = table.attrs.get("skipped", pd.DataFrame())
    sections = [("Summary (mean over layers)", _table_html(means)),
                ("alpha by depth", _img(depth) + _img(hist)),
                ("Layers", _table_html(table[[c for c in LAYER_COLUMNS if c in table]])),
                ("ESD of each layer", "".join(_img(p) for p in images))]  # fmt: skip
    if len(skipped):
        sections.append(("Not analyzed", _table_html(skipped)))
    page = folder / "report.html"
    page.write_text(_page(f"hts_fast report: {model}", sections), encoding="utf-8")
    return page


def zoo_report(store_path: str | Path, out: str | Path, *, labels: str | Path | None = None,
               label: str | None = None, group_by: Sequence[str] = (),
               include_partial: bool = False, options: str | None = None) -> Path:  # fmt: skip
    """Plots and ``report.html`` for a scan's store (and labels); return the page.

    The plots, means and correlations leave out failed checkpoints and, unless
    ``include_partial``, partial ones (some layers failed), as
    :func:`hts_fast.zoo.correlate.checkpoint_metrics` does; the page lists them with the
    reason, and the count is printed on stderr. Like it, they use one analysis option set
    (``options``: its id, needed when the paths' latest analyses used different ones) and
    raise ValueError for a label column that is missing or not numeric
    (:func:`hts_fast.zoo.correlate.choose_label`).
    """
    from .correlate import (
        METRICS,
        checkpoint_metrics,
        labelled,
        left_out_message,
        match_message,
        rank_correlations,
    )
    from .store import Store

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    with Store(store_path, readonly=True) as store:
        layers, checkpoints = store.frame("layers"), store.frame("checkpoints")
    if "alpha" not in layers:
        msg = f"{store_path}: the store holds no analyzed layers"
        raise ValueError(msg)
    metrics = checkpoint_metrics(layers, checkpoints, include_partial=include_partial,
                                 options=options)  # fmt: skip
    left_out = metrics.attrs["left_out"]
    if len(left_out):
        print(f"hts-fast report: {left_out_message(metrics)}", file=sys.stderr)
    kept_ids = metrics.attrs["checkpoint_ids"]
    kept = layers[layers["checkpoint_id"].isin(kept_ids)] if "checkpoint_id" in layers else layers
    kept = kept[kept["path"].isin(set(metrics["path"]))]
    tables = {Path(p).name: t for p, t in kept.groupby("path", sort=True)}
    depth = plot_alpha_by_depth(tables, folder / "alpha_by_depth.png")
    hist = plot_alpha_histogram(kept["alpha"].to_numpy(float), folder / "alpha_hist.png")
    sections = [("Checkpoints", _table_html(checkpoints[["path", "status", "n_layers",
                                                         "n_failed", "seconds", "error"]])),
                ("alpha by depth", _img(depth) + _img(hist)),
                ("Mean metrics per checkpoint", _table_html(metrics))]  # fmt: skip
    if len(left_out):
        sections.append((f"Left out ({left_out_message(metrics)})", _table_html(left_out)))
    if labels is not None:
        data, label = labelled(metrics, labels, label, group_by)
        print(f"hts-fast report: {match_message(data)}", file=sys.stderr)
        shown = [m for m in ("alpha", "alpha_weighted", "log_norm", "log_spectral_norm")
                 if m in data]  # fmt: skip
        scatter = plot_metric_vs_label(data, shown, label, folder / "metric_vs_label.png")
        correlations = rank_correlations(data, label, group_by, METRICS)
        sections += [(f"Metrics against {label}", _img(scatter)),
                     ("Rank correlations", _table_html(correlations))]  # fmt: skip
    page = folder / "report.html"
    page.write_text(_page(f"hts_fast zoo report: {store_path}", sections), encoding="utf-8")
    return page
