"""hts-fast correlate: rank correlations of per-checkpoint metrics with labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from hts_fast.cli import main
from hts_fast.zoo.correlate import (
    attach_labels,
    checkpoint_metrics,
    options_id,
    rank_correlations,
)
from hts_fast.zoo.store import Store

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


def _scanned(tmp_path):
    zoo = _zoo(tmp_path / "zoo", runs=6, broken=False)
    db = tmp_path / "zoo.sqlite"
    assert main(["scan", str(zoo), "--store", str(db), "--quiet"]) == 0
    return zoo, db


def _labels_csv(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_a_non_numeric_accuracy_cell_is_refused_not_replaced_by_another_column(tmp_path, capsys):
    _, db = _scanned(tmp_path)
    names = [f"zoo/run{k:02d}" for k in range(6)]
    # test_accuracy is the accuracy column; one cell is not a number: with the old rule the
    # default label silently became train_accuracy (the first column read as numeric)
    bad = _labels_csv(tmp_path / "bad.csv", {
        "path": names, "test_accuracy": ["0.9", "0.8", "abc", "0.7", "0.6", "0.5"],
        "train_accuracy": np.linspace(0.5, 1.0, 6)})  # fmt: skip
    capsys.readouterr()
    for extra in ([], ["--label", "test_accuracy"]):
        assert main(["correlate", str(db), "--labels", str(bad), *extra]) == 2
        err = capsys.readouterr().err
        assert "'test_accuracy'" in err
        assert "line 4" in err
        assert "'abc'" in err
        assert "zoo/run02" in err
    # the default is the column named like an accuracy, even when it is not the first numeric
    good = _labels_csv(tmp_path / "good.csv", {
        "path": names, "epochs": [3, 1, 4, 1, 5, 9], "val_acc": np.linspace(0.9, 0.4, 6)})  # fmt: skip
    out = tmp_path / "corr.csv"
    assert main(["correlate", str(db), "--labels", str(good), "--out", str(out)]) == 0
    assert "label: val_acc" in capsys.readouterr().out
    table = pd.read_csv(out).set_index("metric")
    with Store(db, readonly=True) as store:
        metrics = checkpoint_metrics(store.frame("layers"), store.frame("checkpoints"))
    joined = attach_labels(metrics, pd.read_csv(good), good)
    rho = scipy.stats.spearmanr(joined["alpha"], joined["val_acc"])[0]
    assert table.loc["alpha", "spearman"] == pytest.approx(rho, abs=1e-12)


def test_duplicate_label_rows_are_refused_and_unmatched_ones_counted(tmp_path, capsys):
    zoo, db = _scanned(tmp_path)
    names = [f"zoo/run{k:02d}" for k in range(6)]
    dup = _labels_csv(tmp_path / "dup.csv", {"path": [*names, "zoo/run03"],
                                             "accuracy": np.linspace(0.9, 0.3, 7)})  # fmt: skip
    capsys.readouterr()
    assert main(["correlate", str(db), "--labels", str(dup)]) == 2
    err = capsys.readouterr().err
    assert "lines 5 and 8" in err
    assert str(zoo / "run03") in err
    part = _labels_csv(tmp_path / "part.csv", {"path": [*names[:4], "zoo/nothere"],
                                               "accuracy": np.linspace(0.9, 0.3, 5)})  # fmt: skip
    assert main(["correlate", str(db), "--labels", str(part)]) == 0
    out = capsys.readouterr().out
    # 7 checkpoints stored (6 runs and loose.npz), 4 labelled
    assert "# 1 label row(s) matched no checkpoint kept; 3 checkpoint(s) kept have no label" in out


def test_n_counts_the_finite_pairs_the_statistics_use():
    data = pd.DataFrame({"m": [1.0, 2.0, np.nan, 4.0, 5.0, 3.0],
                         "acc": [0.1, 0.3, 0.2, np.inf, 0.5, 0.4]})  # fmt: skip
    row = rank_correlations(data, "acc", metrics=["m"]).iloc[0]
    keep = np.isfinite(data["m"]) & np.isfinite(data["acc"])
    assert row["n"] == keep.sum() == 4
    rho = scipy.stats.spearmanr(data["m"][keep], data["acc"][keep])[0]
    assert row["spearman"] == pytest.approx(rho, abs=1e-15)


def test_results_of_different_options_are_not_mixed(tmp_path, capsys):
    zoo, db = _scanned(tmp_path)
    # two of the runs again with the TPL fit: their latest rows now use other options
    assert main(["scan", str(zoo), "--store", str(db), "--quiet", "--fit", "TPL",
                 "--include", "*run0[01]*"]) == 0  # fmt: skip
    labels = _labels_csv(tmp_path / "labels.csv", {
        "path": [f"zoo/run{k:02d}" for k in range(6)], "accuracy": np.linspace(0.9, 0.4, 6)})  # fmt: skip
    capsys.readouterr()
    assert main(["correlate", str(db), "--labels", str(labels)]) == 2
    err = capsys.readouterr().err
    assert "different analysis options" in err
    assert "fit=PL" in err
    assert "fit=TPL" in err
    with Store(db, readonly=True) as store:
        layers, checkpoints = store.frame("layers"), store.frame("checkpoints")
    ids = {t: options_id(t) for t in checkpoints["options"]}
    pl = next(i for t, i in ids.items() if '"fit": "PL"' in t)
    tpl = next(i for t, i in ids.items() if '"fit": "TPL"' in t)
    assert pl in err
    assert tpl in err
    for chosen, fit, count in ((pl, "PL", 7), (tpl, "TPL", 2)):
        out = tmp_path / f"{fit}.csv"
        assert main(["correlate", str(db), "--labels", str(labels), "--options", chosen,
                     "--out", str(out)]) == 0  # fmt: skip
        assert f"# {min(count, 6)} checkpoints with labels" in capsys.readouterr().out
        # the reference: each run's mean alpha from the layers of that option set only
        ours = checkpoints[checkpoints["options"].map(options_id) == chosen]
        rows = layers[layers["checkpoint_id"].isin(ours["id"])]
        means = rows.groupby("path")["alpha"].mean()
        lab = pd.read_csv(labels)
        lab["path"] = [str(zoo / p.split("/")[1]) for p in lab["path"]]
        joined = lab.merge(means.rename("alpha").reset_index(), on="path")
        if len(joined) >= 3:
            rho = scipy.stats.spearmanr(joined["alpha"], joined["accuracy"])[0]
            got = pd.read_csv(out).set_index("metric").loc["alpha", "spearman"]
            assert got == pytest.approx(rho, abs=1e-12)
    assert main(["correlate", str(db), "--labels", str(labels), "--options", "zzzz"]) == 2
    assert "matches no single option set" in capsys.readouterr().err


def test_bad_store_label_and_group_arguments_exit_2_with_a_message(tmp_path, capsys):
    zoo, db = _scanned(tmp_path)
    labels = _labels_csv(tmp_path / "labels.csv", {
        "path": [f"zoo/run{k:02d}" for k in range(6)], "accuracy": np.linspace(0.9, 0.4, 6)})  # fmt: skip
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"junk\n")
    capsys.readouterr()
    cases = [
        (["correlate", str(junk), "--labels", str(labels)], f"{junk}: not an hts_fast store"),
        (["correlate", str(labels), "--labels", str(labels)], f"{labels}: not an hts_fast store"),
        (["export", str(junk), "--out", str(tmp_path / "t")], f"{junk}: not an hts_fast store"),
        (["correlate", str(db), "--labels", str(labels), "--group-by", "nosuch"], "'nosuch'"),
        (["correlate", str(db), "--labels", str(labels), "--label", "nosuch"],
         "no label column 'nosuch'"),
        (["report", str(db), "--out", str(tmp_path / "r"), "--labels", str(labels),
          "--label", "nosuch"], "no label column 'nosuch'"),
        (["report", str(junk), "--out", str(tmp_path / "r"), "--labels", str(labels)],
         "--labels needs a scan's store"),
        (["scan", str(zoo), "--store", str(junk), "--quiet"], f"{junk}: not an hts_fast store"),
        (["scan", str(zoo), "--store", str(tmp_path), "--quiet"], f"{tmp_path}:"),
    ]  # fmt: skip
    for argv, words in cases:
        if argv[0] == "report":
            pytest.importorskip("matplotlib")
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert words in err, (argv, err)
        assert "Traceback" not in err
    assert junk.read_bytes() == b"junk\n"
