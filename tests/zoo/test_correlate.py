"""hts-fast correlate: rank correlations of per-checkpoint metrics with labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.stats
from hts_fast.cli import main
from hts_fast.zoo.correlate import attach_labels, checkpoint_metrics, rank_correlations

from .test_scan import _zoo


def test_rank_correlations_overall_and_within_groups():
    # Simpson's paradox by construction: within each width the metric rises with the label,
    # across widths it falls
    rows = []
    for width, offset in ((1, 10.0), (2, 0.0)):
        for k in range(6):
            rows.append({"width": width, "metric_x": offset + k, "acc": 0.5 * width + 0.01 * k})
    data = pd.DataFrame(rows)
    table = rank_correlations(data, "acc", ["width"], metrics=["metric_x"]).set_index("group")
    assert abs(table.loc["width=1", "spearman"] - 1.0) < 1e-15
    assert abs(table.loc["width=2", "kendall"] - 1.0) < 1e-15
    assert table.loc["all", "spearman"] < 0
    rho, p = scipy.stats.spearmanr(data["metric_x"], data["acc"])
    assert table.loc["all", "spearman"] == rho
    assert table.loc["all", "spearman_p"] == p
    assert table.loc["all", "n"] == 12


def test_correlate_command_on_a_scanned_zoo(tmp_path, capsys):
    zoo = _zoo(tmp_path / "zoo", runs=6)
    db = tmp_path / "zoo.sqlite"
    assert main(["scan", str(zoo), "--store", str(db), "--quiet"]) == 1  # the broken file
    capsys.readouterr()
    from hts_fast.zoo.store import Store

    with Store(db) as store:
        metrics = checkpoint_metrics(store.frame("layers"))
    runs = metrics[metrics["path"].str.contains("run")].sort_values("path")
    # a label that is a known monotone function of mean alpha: Spearman = -1 exactly
    labels = pd.DataFrame({"path": [f"zoo/{p.split('/')[-1]}" for p in runs["path"]],
                           "accuracy": -runs["alpha"].to_numpy(),
                           "batch": [16, 16, 16, 64, 64, 64]})  # fmt: skip
    labels_file = tmp_path / "labels.csv"
    labels.to_csv(labels_file, index=False)
    out = tmp_path / "corr.csv"
    assert main(["correlate", str(db), "--labels", str(labels_file), "--group-by", "batch",
                 "--out", str(out)]) == 0  # fmt: skip
    table = pd.read_csv(out).set_index(["metric", "group"])
    assert abs(table.loc[("alpha", "all"), "spearman"] + 1.0) < 1e-15
    assert table.loc[("alpha", "all"), "n"] == 6
    assert abs(table.loc[("alpha", "batch=16"), "kendall"] + 1.0) < 1e-15
    joined = attach_labels(metrics, labels, labels_file)
    expected = scipy.stats.kendalltau(joined["log_norm"], joined["accuracy"])[0]
    np.testing.assert_allclose(table.loc[("log_norm", "all"), "kendall"], expected, rtol=1e-12)
    assert "accuracy" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("name,acc\nx,1\n")
    assert main(["correlate", str(db), "--labels", str(bad)]) == 2


def test_a_rescanned_path_counts_with_its_latest_analysis():
    layers = pd.DataFrame({"path": ["a", "a", "a", "b"], "checkpoint_id": [1, 1, 3, 2],
                           "status": ["success"] * 4, "alpha": [5.0, 7.0, 2.0, 4.0]})  # fmt: skip
    metrics = checkpoint_metrics(layers).set_index("path")
    assert metrics.loc["a", "alpha"] == 2.0
    assert metrics.loc["b", "alpha"] == 4.0
