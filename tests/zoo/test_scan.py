"""hts-fast scan: discovery, the SQLite store, resuming, workers, kill -9 and Ctrl-C."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import hts_fast
import numpy as np
import pandas as pd
import pytest
from hts_fast.zoo.scan import discover, scan
from hts_fast.zoo.store import Store

#: columns that differ between two runs of the same analysis
VOLATILE = ["seconds", "finished", "id", "checkpoint_id"]


def _zoo(root: Path, runs: int = 5, size: int = 64, broken: bool = True) -> Path:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    for k in range(runs):
        folder = root / f"run{k:02d}"
        folder.mkdir(parents=True)
        save_file({"fc1.weight": rng.standard_normal((size, size // 2)).astype(np.float32),
                   "fc2.weight": rng.standard_t(3, (size // 2, size)).astype(np.float32)},
                  str(folder / "model.safetensors"))  # fmt: skip
    np.savez(root / "loose.npz", **{"a.weight": rng.standard_normal((40, 30))})
    (root / "notes.txt").write_text("not a checkpoint")
    if broken:
        (root / "broken.safetensors").write_bytes(b"\x05\x00")
    return root


def _tables(store_path: Path) -> dict[str, pd.DataFrame]:
    with Store(store_path, readonly=True) as store:
        frames = {name: store.frame(name) for name in ("checkpoints", "layers", "summaries")}
    return {name: f.drop(columns=[c for c in VOLATILE if c in f]).sort_values("path",
            kind="stable").reset_index(drop=True) for name, f in frames.items()}  # fmt: skip


def test_discovery_finds_files_and_model_folders(tmp_path):
    zoo = _zoo(tmp_path / "zoo")
    found = discover([zoo])
    assert [p.name for p in found] == ["broken.safetensors", "loose.npz"] + [
        f"run{k:02d}" for k in range(5)]  # fmt: skip
    assert [p.name for p in discover([zoo], exclude=["*broken*"], include=["*run0[12]*",
                                                                           "*.npz"])] == [
        "loose.npz", "run01", "run02"]  # fmt: skip
    with pytest.raises(FileNotFoundError, match="missing"):
        discover([tmp_path / "missing"])


def test_store_holds_what_analyze_returns_and_resumes(tmp_path):
    zoo = _zoo(tmp_path / "zoo")
    db = tmp_path / "zoo.sqlite"
    first = scan([zoo], db, esd_method="gram")
    assert (first.done, first.skipped, first.failed) == (6, 0, 1)
    assert "truncated" in first.errors[str(zoo / "broken.safetensors")]
    stages = first.stage_seconds
    assert set(stages) == {"discovery", "hashing", "analysis", "store"}
    assert stages["analysis"] > 0
    assert sum(stages.values()) <= first.seconds  # serial: one process did all of it
    tables = _tables(db)
    layers = tables["layers"][tables["layers"]["path"] == str(zoo / "run03")]
    expected = hts_fast.analyze(str(zoo / "run03"), esd_method="gram")
    for col in ["layer_id", "N", "M", "alpha", "lambda_max", "log_norm", "stable_rank"]:
        np.testing.assert_array_equal(layers[col].to_numpy(), expected[col].to_numpy())
    summary = tables["summaries"][tables["summaries"]["path"] == str(zoo / "run03")]
    assert summary["alpha"].item() == hts_fast.summary(expected)["alpha"]
    # everything stored is skipped; a failed checkpoint is retried only on request
    again = scan([zoo], db, esd_method="gram")
    assert (again.done, again.skipped, again.failed) == (0, 7, 0)
    retried = scan([zoo], db, esd_method="gram", retry_failed=True)
    assert (retried.done, retried.skipped, retried.failed) == (0, 6, 1)
    # new options or new content: analyzed again, earlier rows kept
    assert scan([zoo], db, esd_method="svd").done == 6
    from safetensors.numpy import save_file

    save_file({"fc1.weight": np.eye(40, dtype=np.float32)}, str(zoo / "run00" /
                                                                "model.safetensors"))  # fmt: skip
    changed = scan([zoo], db, esd_method="gram")
    assert (changed.done, changed.skipped) == (1, 6)
    # touched but unchanged: the worker hashes it again, finds it stored, stores nothing
    os.utime(zoo / "run01" / "model.safetensors", ns=(1, 1))
    touched = scan([zoo], db, esd_method="gram")
    assert (touched.done, touched.skipped) == (0, 7)
    counts = _tables(db)["checkpoints"].groupby("status").size().to_dict()
    assert counts == {"done": 13, "failed": 2}  # the broken file, once per option set


def test_two_workers_store_the_same_rows_as_one(tmp_path):
    zoo = _zoo(tmp_path / "zoo")
    scan([zoo], tmp_path / "serial.sqlite")
    result = scan([zoo], tmp_path / "parallel.sqlite", workers=2)
    assert (result.done, result.failed) == (6, 1)
    serial, parallel = _tables(tmp_path / "serial.sqlite"), _tables(tmp_path / "parallel.sqlite")
    for name in serial:
        pd.testing.assert_frame_equal(serial[name], parallel[name])


def _stored(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=30) as con:
            return con.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _start_scan(zoo: Path, db: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "hts_fast", "scan", str(zoo), "--store",
                             str(db), "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


#: the kill tests send SIGKILL / SIGINT, which Windows does not have
POSIX_SIGNALS = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")


@POSIX_SIGNALS
@pytest.mark.parametrize("how", ["kill -9", "ctrl-c"])
def test_interrupted_scan_resumes_to_the_same_store(tmp_path, how):
    zoo = _zoo(tmp_path / "zoo", runs=40, size=256, broken=False)
    reference = tmp_path / "reference.sqlite"
    scan([zoo], reference)
    db = tmp_path / "interrupted.sqlite"
    proc = _start_scan(zoo, db)
    deadline = time.monotonic() + 120
    while _stored(db) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the scan ended before it could be interrupted"
    proc.send_signal(signal.SIGKILL if how == "kill -9" else signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    partial = _stored(db)
    assert 3 <= partial < 41
    if how == "ctrl-c":
        assert proc.returncode == 130, err
    resumed = subprocess.run([sys.executable, "-m", "hts_fast", "scan", str(zoo), "--store",
                              str(db), "--quiet"], capture_output=True, text=True,
                             check=True)  # fmt: skip
    assert f"{partial} already stored" in resumed.stdout
    ours, theirs = _tables(db), _tables(reference)
    for name in ours:
        pd.testing.assert_frame_equal(ours[name], theirs[name])


@POSIX_SIGNALS
def test_a_kill_inside_a_checkpoint_transaction_leaves_no_trace(tmp_path):
    """SIGKILL after a checkpoint's rows are written but before its COMMIT (a test hook in
    Store._save): the store holds the checkpoints before it, no orphan row, and the resumed
    scan equals an uninterrupted one."""
    zoo = _zoo(tmp_path / "zoo", runs=6, broken=False)
    reference = tmp_path / "reference.sqlite"
    scan([zoo], reference)
    db = tmp_path / "killed.sqlite"
    command = [sys.executable, "-m", "hts_fast", "scan", str(zoo), "--store", str(db), "--quiet"]
    killed = subprocess.run(command, check=False, capture_output=True, text=True,
                            env={**os.environ, "HTS_FAST_TEST_KILL_AT_SAVE": "3"})  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _stored(db) == 2
    with sqlite3.connect(db) as con:
        for table in ("layers", "summaries"):
            orphans = con.execute(f"SELECT COUNT(*) FROM {table} WHERE checkpoint_id NOT IN "
                                  "(SELECT id FROM checkpoints)").fetchone()[0]  # fmt: skip
            assert orphans == 0, table
    resumed = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "2 already stored" in resumed.stdout
    ours, theirs = _tables(db), _tables(reference)
    for name in ours:
        pd.testing.assert_frame_equal(ours[name], theirs[name])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_dask_local_cluster_stores_the_same_rows(tmp_path):
    from ..conftest import _require

    _require("distributed")
    zoo = _zoo(tmp_path / "zoo")
    scan([zoo], tmp_path / "serial.sqlite")
    result = scan([zoo], tmp_path / "dask.sqlite", dask="local:2")
    assert (result.done, result.failed) == (6, 1)
    serial, distributed = _tables(tmp_path / "serial.sqlite"), _tables(tmp_path / "dask.sqlite")
    for name in serial:
        pd.testing.assert_frame_equal(serial[name], distributed[name])


def test_a_worker_that_dies_fails_only_its_checkpoint(tmp_path, monkeypatch):
    zoo = _zoo(tmp_path / "zoo", broken=False)
    # the worker analyzing run02 exits abruptly (as a segfault in a native reader would)
    monkeypatch.setenv("HTS_FAST_TEST_CRASH_MARKER", "run02")
    result = scan([zoo], tmp_path / "crash.sqlite", workers=2)
    assert (result.done, result.failed) == (5, 1)
    assert "died" in result.errors[str(zoo / "run02")]
    monkeypatch.delenv("HTS_FAST_TEST_CRASH_MARKER")
    retried = scan([zoo], tmp_path / "crash.sqlite", workers=2, retry_failed=True)
    assert (retried.done, retried.skipped) == (1, 5)


def test_trainer_checkpoints_inside_a_model_folder_and_variant_files(tmp_path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(1)
    run = tmp_path / "zoo" / "run"
    (run / "checkpoint-500").mkdir(parents=True)
    weights = {"fc.weight": rng.standard_normal((40, 30)).astype(np.float32)}
    save_file(weights, str(run / "model.safetensors"))
    save_file(weights, str(run / "model.fp16.safetensors"))  # a variant, not a second shard
    save_file(weights, str(run / "checkpoint-500" / "model.safetensors"))
    assert discover([tmp_path / "zoo"]) == [run, run / "checkpoint-500"]
    assert len(hts_fast.analyze(str(run))) == 1  # the variant is not read as more layers
    # the parent's identity does not include its subfolders' files
    from hts_fast.zoo.scan import content_hash

    before = content_hash(run)
    save_file(weights | {"x.weight": np.ones((9, 9), np.float32)},
              str(run / "checkpoint-500" / "model.safetensors"))  # fmt: skip
    assert content_hash(run) == before


def test_store_round_trips_types_and_keeps_the_hash_cache(tmp_path):
    zoo = _zoo(tmp_path / "zoo", runs=2, broken=False)
    db = tmp_path / "s.sqlite"
    scan([zoo], db)
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM files")  # as if cached by an older run
    assert scan([zoo], db).skipped == 3  # only skipping: the hashes are cached again
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 3
        kinds = {row[0] for row in con.execute("SELECT typeof(has_esd) FROM layers")}
    assert kinds == {"integer"}
    with pytest.raises(TypeError, match="threads"):
        scan([zoo], db, threads=2)


def test_a_stuck_checkpoint_times_out(tmp_path, monkeypatch):
    zoo = _zoo(tmp_path / "zoo", runs=3, broken=False)
    monkeypatch.setenv("HTS_FAST_TEST_HANG_MARKER", "run01")  # as a reader stuck in HDF5
    start = time.monotonic()
    result = scan([zoo], tmp_path / "t.sqlite", workers=2, timeout=3.0)
    assert time.monotonic() - start < 60
    assert (result.done, result.failed) == (3, 1)
    assert "timed out" in result.errors[str(zoo / "run01")]
    monkeypatch.delenv("HTS_FAST_TEST_HANG_MARKER")


def test_a_checkpoint_is_analyzed_from_the_bytes_it_was_hashed_from(tmp_path):
    from hts_fast.loaders.safetensors_files import preread
    from hts_fast.zoo.scan import hash_checkpoint
    from safetensors.numpy import save_file

    rng = np.random.default_rng(1)
    path = tmp_path / "one.safetensors"
    save_file({"fc.weight": rng.standard_normal((48, 24)).astype(np.float32)}, str(path))
    kept: dict[str, bytes] = {}
    digest, _ = hash_checkpoint(path, kept)
    assert kept == {str(path): path.read_bytes()}
    expected = hts_fast.analyze(str(path), esd_method="gram")
    # the file changes on disk after it was hashed: the analysis still sees the hashed bytes
    save_file({"fc.weight": np.eye(48, 24, dtype=np.float32)}, str(path))
    with preread(kept):
        seen = hts_fast.analyze(str(path), esd_method="gram")
    pd.testing.assert_frame_equal(seen, expected)
    assert digest != hash_checkpoint(path)[0]
    assert not hts_fast.analyze(str(path), esd_method="gram").equals(expected)  # block left


def _files_zoo(root: Path, count: int = 24) -> Path:
    """``count`` small safetensors files (checkpoints this process may analyze itself)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(2)
    root.mkdir()
    for k in range(count):
        save_file({"fc1.weight": rng.standard_t(4, (48, 24)).astype(np.float32),
                   "fc2.weight": rng.standard_normal((24, 48)).astype(np.float32)},
                  str(root / f"ckpt{k:02d}.safetensors"))  # fmt: skip
    return root


@pytest.mark.parametrize("workers_start", [True, False])
def test_this_process_analyzes_while_the_workers_start(tmp_path, monkeypatch, workers_start):
    import threading

    import hts_fast.zoo.scan as scan_module

    zoo = _files_zoo(tmp_path / "zoo")  # 24 checkpoints: 8 batches of 3 with 2 workers
    scan([zoo], tmp_path / "serial.sqlite")
    real_start, real_safe = scan_module._start_server, scan_module._in_process_safe
    here: list[object] = []  # the batches this process took (each asks _in_process_safe)
    three_done, workers_up = threading.Event(), threading.Event()

    def start_after_three(ready: threading.Event) -> None:
        if not workers_start:
            return  # the workers never come: this process analyzes everything
        three_done.wait(60)
        real_start(ready)
        workers_up.set()

    def safe(batch: list) -> bool:
        here.append(batch)
        if len(here) == 3:
            three_done.set()
        if len(here) > 3 and workers_start:
            workers_up.wait(60)  # batch 4 is analyzed here; then the workers take over
        return real_safe(batch)

    monkeypatch.setattr(scan_module, "_start_server", start_after_three)
    monkeypatch.setattr(scan_module, "_in_process_safe", safe)
    result = scan([zoo], tmp_path / "shared.sqlite", workers=2)
    assert (result.done, result.failed) == (24, 0)
    assert len(here) == (4 if workers_start else 8)
    serial, shared = _tables(tmp_path / "serial.sqlite"), _tables(tmp_path / "shared.sqlite")
    for name in serial:
        pd.testing.assert_frame_equal(serial[name], shared[name])


#: the first layout of the checkpoints table (the options JSON in every row)
_FIRST_LAYOUT = """
CREATE TABLE checkpoints_v1 (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL, content_hash TEXT NOT NULL,
    options TEXT NOT NULL, status TEXT NOT NULL, error TEXT NOT NULL DEFAULT '',
    seconds REAL, finished REAL, n_layers INTEGER, UNIQUE (path, content_hash, options));
INSERT INTO checkpoints_v1 SELECT c.id, c.path, c.content_hash, o.text, c.status, c.error,
    c.seconds, c.finished, c.n_layers FROM checkpoints c JOIN options o ON o.id = c.options_id;
DROP TABLE checkpoints;
ALTER TABLE checkpoints_v1 RENAME TO checkpoints;
DROP TABLE options;
DROP TABLE meta;
"""


def _meta(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as con:
        return dict(con.execute("SELECT key, value FROM meta").fetchall())


def test_a_new_store_records_its_content_hash_and_each_option_set_once(tmp_path):
    import hashlib

    from hts_fast import _reference as ref
    from hts_fast.zoo.scan import hash_checkpoint

    zoo = _zoo(tmp_path / "zoo", runs=2, broken=False)
    db = tmp_path / "s.sqlite"
    scan([zoo], db, esd_method="gram")
    scan([zoo], db, esd_method="svd")
    assert _meta(db) == {"schema": "3", "content_hash": "hts128"}
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM options").fetchone()[0] == 2
        assert con.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0] == 6
    stored = _tables(db)["checkpoints"]
    assert stored["options"].str.contains('"esd_method": "gram"').sum() == 3
    # a file checkpoint's hash: of "\0<its file's hash>\0", both hts128 (the NumPy definition)
    data = (zoo / "loose.npz").read_bytes()
    inner = ref.hash128(data).hex()
    expected = ref.hash128(f"\0{inner}\0".encode()).hex()
    assert stored.loc[stored["path"] == str(zoo / "loose.npz"), "content_hash"].tolist() == [
        expected] * 2  # fmt: skip
    assert hash_checkpoint(zoo / "loose.npz")[0] == expected
    sha = hashlib.sha256(f"\0{hashlib.sha256(data).hexdigest()[:32]}\0".encode()).hexdigest()
    assert hash_checkpoint(zoo / "loose.npz", algorithm="sha256")[0] == sha[:32]


def test_a_store_of_the_first_layout_and_sha256_resumes(tmp_path):
    zoo = _zoo(tmp_path / "zoo", runs=3)
    db = tmp_path / "old.sqlite"
    # a store made before hts128: SHA-256 content hashes, the options JSON in every row
    with Store(db) as store, sqlite3.connect(db) as con:
        con.execute("UPDATE meta SET value = 'sha256' WHERE key = 'content_hash'")
    first = scan([zoo], db, esd_method="gram")
    assert (first.done, first.failed) == (4, 1)
    before = _tables(db)
    with sqlite3.connect(db) as con:
        con.executescript(_FIRST_LAYOUT)
        assert "options" in {row[1] for row in con.execute("PRAGMA table_info(checkpoints)")}
    # opened again: migrated (same rows), still SHA-256, everything already stored is skipped
    again = scan([zoo], db, esd_method="gram")
    assert (again.done, again.skipped, again.failed) == (0, 5, 0)
    assert _meta(db) == {"schema": "3", "content_hash": "sha256"}
    after = _tables(db)
    for name in before:
        pd.testing.assert_frame_equal(before[name], after[name])
    with sqlite3.connect(db) as con:  # the ids the layers point to are kept
        assert con.execute("SELECT COUNT(*) FROM layers l JOIN checkpoints c ON "
                           "c.id = l.checkpoint_id").fetchone()[0] == len(after["layers"])  # fmt: skip
    # new content in the old store is hashed with SHA-256 too, and analyzed
    (zoo / "run00" / "model.safetensors").write_bytes((zoo / "run01" / "model.safetensors")
                                                      .read_bytes())  # fmt: skip
    changed = scan([zoo], db, esd_method="gram")
    assert (changed.done, changed.skipped) == (1, 4)
    with Store(db) as store:
        from hts_fast.zoo.scan import content_hash

        assert store.hash_algorithm == "sha256"
        digest = content_hash(zoo / "run00", store)
    assert digest in set(_tables(db)["checkpoints"]["content_hash"])
    # a store of the first layout with no rows yet becomes a new (hts128) store
    empty = tmp_path / "empty.sqlite"
    with Store(empty), sqlite3.connect(empty) as con:
        con.executescript(_FIRST_LAYOUT)
    with Store(empty) as store:
        assert store.hash_algorithm == "hts128"


@pytest.mark.parametrize(("key", "value"), [("content_hash", "blake3"), ("schema", "4")])
def test_a_store_of_a_newer_version_is_refused(tmp_path, key, value):
    db = tmp_path / "new.sqlite"
    with Store(db), sqlite3.connect(db) as con:
        con.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
    with pytest.raises(ValueError, match=rf"newer hts_fast .*{value}"):
        Store(db)
    with pytest.raises(ValueError, match=rf"newer hts_fast .*{value}"):
        Store(db, readonly=True)


def test_opening_a_current_store_writes_nothing_and_a_scan_waits_for_another_writer(tmp_path):
    zoo = _zoo(tmp_path / "zoo", runs=2, broken=False)
    db = tmp_path / "s.sqlite"
    scan([zoo], db)
    # another connection holds the write lock: opening the store to read it still works
    other = sqlite3.connect(db, timeout=0, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    with Store(db) as store:
        assert len(store.frame("checkpoints")) == 3
    # a scan's transaction waits for the lock (BEGIN IMMEDIATE, busy timeout) instead of
    # failing when it is released
    release = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    release.start()
    try:
        result = scan([_zoo(tmp_path / "more", runs=1, broken=False)], db)
    finally:
        release.join()
        other.close()
    assert result.failed == 0
    assert result.done >= 1


def test_read_only_commands_read_a_first_layout_store_without_changing_it(tmp_path):
    zoo = _zoo(tmp_path / "zoo", runs=2, broken=False)
    db = tmp_path / "old.sqlite"
    scan([zoo], db, esd_method="gram")
    with Store(db, readonly=True) as store:
        current = {name: store.frame(name) for name in ("checkpoints", "layers", "summaries")}
    with sqlite3.connect(db) as con:
        con.executescript(_FIRST_LAYOUT)
    before = db.read_bytes()
    with Store(db, readonly=True) as store:
        assert store.first_layout
        assert store.hash_algorithm == "sha256"  # rows and no meta: made before hts128
        for name, frame in current.items():
            pd.testing.assert_frame_equal(store.frame(name), frame)
    out = tmp_path / "export"
    from hts_fast.cli import main

    assert main(["export", str(db), "--format", "csv", "--out", str(out)]) == 0
    assert (out / "layers.csv").is_file()
    assert db.read_bytes() == before  # not migrated, nothing written
    with sqlite3.connect(db) as con:
        assert "meta" not in {row[0] for row in con.execute("SELECT name FROM sqlite_master")}
    with pytest.raises(FileNotFoundError, match="no such store"):
        Store(tmp_path / "missing.sqlite", readonly=True)
    (tmp_path / "other.sqlite").write_bytes(b"")
    with pytest.raises(ValueError, match="not an hts_fast store"):
        Store(tmp_path / "other.sqlite", readonly=True)


def test_files_hash_the_same_without_hashlib_file_digest(tmp_path, monkeypatch):
    """Python 3.10 has no hashlib.file_digest: the chunked fallback gives the same hashes."""
    import hashlib

    from hts_fast.zoo.scan import hash_checkpoint

    zoo = _zoo(tmp_path / "zoo", runs=1, broken=False)
    expected = {a: hash_checkpoint(zoo / "loose.npz", algorithm=a)[0] for a in ("hts128", "sha256")}
    monkeypatch.delattr(hashlib, "file_digest")
    for algorithm, digest in expected.items():
        assert hash_checkpoint(zoo / "loose.npz", algorithm=algorithm)[0] == digest


def test_a_foreign_sqlite_database_is_refused_and_left_unchanged(tmp_path, capsys):
    from hts_fast.cli import main

    zoo = _zoo(tmp_path / "zoo", runs=2, broken=False)
    foreign = tmp_path / "app.db"
    with sqlite3.connect(foreign) as con:
        con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        con.execute("INSERT INTO users (name) VALUES ('ann')")
    con.close()
    before = foreign.read_bytes()
    assert main(["scan", str(zoo), "--store", str(foreign), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{foreign}: not an hts_fast store (tables: ['users'])" in err
    assert foreign.read_bytes() == before  # no tables added, still in rollback-journal mode
    with sqlite3.connect(foreign) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    con.close()
    with pytest.raises(ValueError, match="not an hts_fast store"):
        Store(foreign)
    # an empty database file is fine: it becomes a store
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert scan([zoo], empty).done == 3
