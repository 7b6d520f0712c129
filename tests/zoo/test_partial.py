"""Damaged checkpoints in a scan: "failed" (no result, non-zero exit) and "partial" (some
layers failed), and correlate/report leaving them out unless asked."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import hts_fast
import numpy as np
import pandas as pd
import pytest
import scipy.stats
from hts_fast.cli import main
from hts_fast.zoo.correlate import checkpoint_metrics, left_out_message
from hts_fast.zoo.scan import scan
from hts_fast.zoo.store import Store


def _damaged_zoo(root: Path) -> Path:
    """Five good runs, one run with a NaN layer, a safetensors file cut inside its header
    and a file of random bytes."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(4)
    for k in range(5):
        folder = root / f"run{k:02d}"
        folder.mkdir(parents=True)
        save_file({"fc1.weight": rng.standard_t(3 + k, (64, 32)).astype(np.float32),
                   "fc2.weight": rng.standard_t(3 + k, (32, 64)).astype(np.float32)},
                  str(folder / "model.safetensors"))  # fmt: skip
    nan = root / "run_nan"
    nan.mkdir()
    bad = rng.standard_normal((48, 24)).astype(np.float32)
    bad[3, 5] = np.nan
    save_file({"fc1.weight": rng.standard_t(4, (64, 32)).astype(np.float32), "fc2.weight": bad,
               "fc3.weight": rng.standard_t(5, (40, 30)).astype(np.float32)},
              str(nan / "model.safetensors"))  # fmt: skip
    whole = (root / "run00" / "model.safetensors").read_bytes()
    (root / "truncated.safetensors").write_bytes(whole[:40])  # inside the JSON header
    (root / "garbage.safetensors").write_bytes(rng.bytes(5000))
    return root


def _checkpoints(db: Path) -> pd.DataFrame:
    with Store(db, readonly=True) as store:
        frame = store.frame("checkpoints")
    frame["name"] = [Path(p).name for p in frame["path"]]
    return frame.set_index("name")


def test_scan_stores_failed_and_partial_checkpoints_and_exits_non_zero(tmp_path, capsys):
    zoo = _damaged_zoo(tmp_path / "zoo")
    db = tmp_path / "zoo.sqlite"
    assert main(["scan", str(zoo), "--store", str(db), "--quiet"]) == 1  # the failed ones
    out = capsys.readouterr().out
    assert "5 analyzed, 1 partial (some layers failed), 0 already stored, 2 failed" in out
    assert f"partial: {zoo / 'run_nan'}: 1 of 3 layers failed" in out
    stored = _checkpoints(db)
    assert stored.loc["truncated.safetensors", "status"] == "failed"
    assert stored.loc["garbage.safetensors", "status"] == "failed"
    for name in ("truncated.safetensors", "garbage.safetensors"):
        assert name in stored.loc[name, "error"]  # the error names the file
        assert np.isnan(stored.loc[name, "n_layers"])
        assert np.isnan(stored.loc[name, "n_failed"])
    assert "truncated" in stored.loc["truncated.safetensors", "error"]
    # the NaN layer: its row failed with the reason, the others were analyzed
    expected = hts_fast.analyze(str(zoo / "run_nan"))
    assert list(expected["status"]) == ["success", "failed", "success"]
    assert stored.loc["run_nan", "status"] == "partial"
    assert (stored.loc["run_nan", "n_layers"], stored.loc["run_nan", "n_failed"]) == (3, 1)
    with Store(db, readonly=True) as store:
        layers = store.frame("layers")
    rows = layers[layers["path"] == str(zoo / "run_nan")]
    assert list(rows["status"]) == list(expected["status"])
    assert "NaN" in rows["status_reason"].iloc[1]
    np.testing.assert_array_equal(rows["alpha"].to_numpy()[[0, 2]],
                                  expected["alpha"].to_numpy()[[0, 2]])  # fmt: skip
    # nothing computed was lost: every good run is done, with its layers
    done = stored[stored["status"] == "done"]
    assert sorted(done.index) == [f"run{k:02d}" for k in range(5)]
    assert (done["n_failed"] == 0).all()
    assert (done["n_layers"] == 2).all()
    # a resumed scan skips done and partial ones; retry_failed retries only the failed ones
    again = scan([zoo], db, retry_failed=True)
    assert (again.done, again.partial, again.skipped, again.failed) == (0, 0, 6, 2)
    # without a failed checkpoint the scan exits 0, partial ones included
    (zoo / "truncated.safetensors").unlink()
    (zoo / "garbage.safetensors").unlink()
    assert main(["scan", str(zoo), "--store", str(tmp_path / "clean.sqlite"), "--quiet"]) == 0
    assert _checkpoints(tmp_path / "clean.sqlite")["status"].value_counts().to_dict() == {
        "done": 5, "partial": 1}  # fmt: skip


def _labels(zoo: Path, path: Path) -> pd.DataFrame:
    names = [*(f"run{k:02d}" for k in range(5)), "run_nan", "truncated.safetensors",
             "garbage.safetensors"]  # fmt: skip
    labels = pd.DataFrame({"path": [f"zoo/{n}" for n in names],
                           "accuracy": np.linspace(0.9, 0.5, len(names))})  # fmt: skip
    labels.to_csv(path, index=False)
    return labels


def test_correlate_leaves_out_failed_and_partial_checkpoints_and_says_so(tmp_path, capsys):
    zoo = _damaged_zoo(tmp_path / "zoo")
    db = tmp_path / "zoo.sqlite"
    scan([zoo], db)
    labels = _labels(zoo, tmp_path / "labels.csv")
    out = tmp_path / "corr.csv"
    assert main(["correlate", str(db), "--labels", str(tmp_path / "labels.csv"),
                 "--out", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "# 5 checkpoints with labels" in printed
    assert ("left out 3 checkpoint(s): 2 failed (no result), 1 partial (some layers failed; "
            "--include-partial keeps them)") in printed  # fmt: skip
    assert f"partial: {zoo / 'run_nan'}: 1 of 3 layers failed" in printed
    assert f"failed: {zoo / 'garbage.safetensors'}: no result: " in printed
    table = pd.read_csv(out).set_index("metric")
    # the independent reference: scipy on the five complete runs' mean alpha
    with Store(db, readonly=True) as store:
        layers = store.frame("layers")
    means = [layers.loc[layers["path"] == str(zoo / f"run{k:02d}"), "alpha"].mean()
             for k in range(5)]  # fmt: skip
    rho = scipy.stats.spearmanr(means, labels["accuracy"][:5])[0]
    assert table.loc["alpha", "n"] == 5
    assert table.loc["alpha", "spearman"] == pytest.approx(rho, abs=1e-12)
    # --include-partial: the partial run enters with the mean over its analyzed layers
    assert main(["correlate", str(db), "--labels", str(tmp_path / "labels.csv"),
                 "--include-partial", "--out", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "# 6 checkpoints with labels" in printed
    assert "left out 2 checkpoint(s): 2 failed (no result)" in printed
    expected = hts_fast.analyze(str(zoo / "run_nan"))
    partial_mean = expected.loc[expected["status"] == "success", "alpha"].mean()
    rho = scipy.stats.spearmanr([*means, partial_mean], labels["accuracy"][:6])[0]
    assert pd.read_csv(out).set_index("metric").loc["alpha", "spearman"] == pytest.approx(
        rho, abs=1e-12)  # fmt: skip


def test_checkpoint_metrics_takes_each_paths_latest_outcome():
    checkpoints = pd.DataFrame({
        "id": [1, 2, 3, 4], "path": ["a", "b", "a", "c"],
        "status": ["done", "done", "failed", "partial"],
        "error": ["", "", "TensorReadError: a: truncated", ""],
    })  # fmt: skip
    layers = pd.DataFrame({"path": ["a", "a", "b", "c", "c"], "checkpoint_id": [1, 1, 2, 4, 4],
                           "status": ["success", "success", "success", "success", "failed"],
                           "alpha": [5.0, 7.0, 3.0, 4.0, np.nan]})  # fmt: skip
    metrics = checkpoint_metrics(layers, checkpoints)
    # a's file was changed and its new version failed: its old numbers no longer count
    assert list(metrics["path"]) == ["b"]
    left = metrics.attrs["left_out"].set_index("path")
    assert left.loc["a", "status"] == "failed"
    assert left.loc["a", "reason"] == "no result: TensorReadError: a: truncated"
    assert (left.loc["c", "status"], left.loc["c", "n_failed"], left.loc["c", "n_layers"]) == (
        "partial", 1, 2)  # fmt: skip
    assert left_out_message(metrics).startswith("left out 2 checkpoint(s): 1 failed")
    kept = checkpoint_metrics(layers, checkpoints, include_partial=True).set_index("path")
    assert kept.loc["c", "alpha"] == 4.0  # the mean over its analyzed layer
    assert left_out_message(checkpoint_metrics(layers[layers["path"] == "b"])) == ""


def _as_schema_2(db: Path) -> None:
    """Turn a current store into one of schema 2: no n_failed, "done" for partial ones."""
    with sqlite3.connect(db) as con:
        con.execute("UPDATE checkpoints SET status = 'done' WHERE status = 'partial'")
        con.execute("ALTER TABLE checkpoints DROP COLUMN n_failed")
        con.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")


def test_a_schema_2_store_is_read_as_is_and_migrated_when_opened_for_writing(tmp_path):
    zoo = _damaged_zoo(tmp_path / "zoo")
    db = tmp_path / "zoo.sqlite"
    scan([zoo], db)
    current = _checkpoints(db)
    _as_schema_2(db)
    before = db.read_bytes()
    with Store(db, readonly=True) as store:
        assert not store.counts_failed
        assert store.counts() == {"done": 5, "failed": 2, "partial": 1}
    pd.testing.assert_frame_equal(_checkpoints(db), current)  # computed on reading
    assert db.read_bytes() == before  # and nothing written
    with Store(db) as store:  # opened for writing: migrated in place
        assert store.counts_failed
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("3",)
        assert "n_failed" in {row[1] for row in con.execute("PRAGMA table_info(checkpoints)")}
    pd.testing.assert_frame_equal(_checkpoints(db), current)
    again = scan([zoo], db)  # resumes: nothing analyzed again
    assert (again.done, again.partial, again.skipped) == (0, 0, 8)


def test_zoo_report_leaves_out_failed_and_partial_checkpoints(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the report needs matplotlib")
    zoo = _damaged_zoo(tmp_path / "zoo")
    db = tmp_path / "zoo.sqlite"
    scan([zoo], db)
    _labels(zoo, tmp_path / "labels.csv")
    out = tmp_path / "report"
    assert main(["report", str(db), "--out", str(out), "--labels",
                 str(tmp_path / "labels.csv")]) == 0  # fmt: skip
    assert "left out 3 checkpoint(s): 2 failed" in capsys.readouterr().err
    text = (out / "report.html").read_text(encoding="utf-8")
    assert "Left out (left out 3 checkpoint(s)" in text
    assert "1 of 3 layers failed" in text
    from hts_fast.zoo.report import zoo_report

    zoo_report(db, out, labels=tmp_path / "labels.csv", include_partial=True)
    assert "left out 2 checkpoint(s): 2 failed (no result)" in capsys.readouterr().err


def test_a_checkpoint_cut_short_is_failed_not_partial(tmp_path, capsys):
    """A safetensors file cut to half its length, or one byte short, is no result: the scan
    stores it as failed with the loader's message and exits non-zero (issue 17)."""
    from safetensors.numpy import save_file

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    rng = np.random.default_rng(9)
    good = zoo / "good.safetensors"
    save_file({f"fc{k}.weight": rng.standard_t(4, (96, 48)).astype(np.float32) for k in range(4)},
              str(good))  # fmt: skip
    whole = good.read_bytes()
    (zoo / "half.safetensors").write_bytes(whole[: len(whole) // 2])
    (zoo / "short.safetensors").write_bytes(whole[:-1])
    db = tmp_path / "zoo.sqlite"
    assert main(["scan", str(zoo), "--store", str(db), "--quiet"]) == 1
    stored = _checkpoints(db)
    assert stored.loc["good.safetensors", "status"] == "done"
    for name in ("half.safetensors", "short.safetensors"):
        assert stored.loc[name, "status"] == "failed"
        assert name in stored.loc[name, "error"]
        assert "truncated" in stored.loc[name, "error"]
    capsys.readouterr()


def test_a_rerun_exits_1_while_a_checkpoint_of_its_paths_is_stored_as_failed(tmp_path, capsys):
    zoo = _damaged_zoo(tmp_path / "zoo")
    db = tmp_path / "zoo.sqlite"
    assert main(["scan", str(zoo), "--store", str(db), "--quiet"]) == 1
    capsys.readouterr()
    # nothing new to analyze: the two failed checkpoints are skipped, not retried
    assert main(["scan", str(zoo), "--store", str(db), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "0 analyzed, 0 partial (some layers failed), 8 already stored (2 failed earlier)" in out
    for name in ("truncated.safetensors", "garbage.safetensors"):
        assert f"failed (in an earlier scan; --retry-failed retries it): {zoo / name}" in out
    again = scan([zoo], db)
    assert sorted(again.failed_before) == sorted(
        str(zoo / n) for n in ("garbage.safetensors", "truncated.safetensors"))  # fmt: skip
    assert (again.skipped, again.failed) == (8, 0)
    # a scan of paths without the failed ones exits 0
    assert main(["scan", str(zoo / "run00"), "--store", str(db), "--quiet"]) == 0
