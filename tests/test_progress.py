"""Progress bars: analyze() and `hts-fast analyze` on a terminal, scans in a log, and never
when asked not to or when nobody watches."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import hts_fast
import numpy as np
import pandas as pd
import pytest
from hts_fast.zoo.scan import scan
from hts_fast.zoo.store import Store


def _model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4)
    return {f"l{k}.weight": rng.standard_t(3, (60 + k, 40)) for k in range(3)}


def test_a_bar_when_asked(capsys):
    """progress=True off a terminal (pytest's stderr): whole lines, no carriage returns
    running the updates together, the last one saying 3/3."""
    table = hts_fast.analyze(_model(), progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert 1 <= len(lines) <= 3  # the first refresh, perhaps one more, the last
    assert all(line.startswith("analyze") for line in lines)
    assert "3/3" in lines[-1]
    assert "layer" in lines[-1]
    pd.testing.assert_frame_equal(table, hts_fast.analyze(_model(), progress=False))


def test_a_bar_into_a_log_writes_a_line_every_few_seconds(monkeypatch):
    """Updates closer together than LOG_SECONDS are not written; each written one is a
    line (tqdm's clock is replaced, so the test does not wait)."""
    import io

    from hts_fast import _progress

    clock = iter(float(t) for t in range(0, 1000, 3))  # 3 s between tqdm's clock reads
    monkeypatch.setattr("tqdm.std.time", lambda: next(clock))
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    with _progress.progress_bar(20, progress=True, desc="analyze", unit="layer") as bar:
        for _ in range(20):
            bar.update(1)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert lines[-1].startswith("analyze")
    assert "20/20" in lines[-1]
    assert 3 <= len(lines) < 20  # throttled to about one per LOG_SECONDS of the fake clock


@pytest.mark.parametrize("progress", [None, False])
def test_no_bar_off_a_terminal_or_when_turned_off(capsys, progress):
    hts_fast.analyze(_model(), progress=progress)  # pytest's stderr is no terminal
    assert capsys.readouterr().err == ""


def test_progress_must_be_a_bool_or_none():
    with pytest.raises(TypeError, match="progress must be True, False or None"):
        hts_fast.analyze(_model(), progress="yes")


def _run_on_a_terminal(args: list[str], cwd: Path) -> str:
    """Run ``python -m hts_fast ARGS`` with its stderr on a pseudo-terminal; return what it
    wrote there."""
    reason = "pseudo-terminals are POSIX only"
    pty = pytest.importorskip("pty", reason=reason)
    fcntl = pytest.importorskip("fcntl", reason=reason)
    termios = pytest.importorskip("termios", reason=reason)
    leader, follower = pty.openpty()
    # a terminal of 24 x 100 (a new pseudo-terminal has no size, and tqdm draws 0 columns)
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen([sys.executable, "-m", "hts_fast", *args], cwd=cwd,
                               stdout=subprocess.DEVNULL, stderr=follower)  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the terminal closed: the process is done
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert process.wait(timeout=120) == 0
    return b"".join(chunks).decode(errors="replace")


def test_the_command_shows_a_bar_on_a_terminal_only(tmp_path):
    path = tmp_path / "model.npz"
    np.savez(path, **_model())
    on_terminal = _run_on_a_terminal(["analyze", str(path)], tmp_path)
    assert "analyze" in on_terminal
    assert "/3" in on_terminal
    quiet = _run_on_a_terminal(["analyze", str(path), "--no-progress"], tmp_path)
    assert "/3" not in quiet
    piped = subprocess.run([sys.executable, "-m", "hts_fast", "analyze", str(path)],
                           capture_output=True, text=True, cwd=tmp_path, check=True)  # fmt: skip
    assert piped.stderr == ""


def _zoo(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for k in range(3):
        np.savez(root / f"m{k}.npz", **{"a.weight": rng.standard_normal((40, 30)),
                                       "b.weight": rng.standard_t(3, (30, 50))})  # fmt: skip
    return root


def test_a_scan_logs_whole_lines_off_a_terminal(tmp_path):
    zoo = _zoo(tmp_path)
    db = tmp_path / "zoo.sqlite"
    result = subprocess.run([sys.executable, "-m", "hts_fast", "scan", str(zoo), "--store",
                             str(db)], capture_output=True, text=True, check=True)  # fmt: skip
    assert "\r" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("scan: ")]
    assert lines[-1].startswith("scan: 3/3 checkpoints (done 3, partial 0, skipped 0, failed 0)")
    again = subprocess.run([sys.executable, "-m", "hts_fast", "scan", str(zoo), "--store",
                            str(db), "--quiet"], capture_output=True, text=True, check=True)  # fmt: skip
    assert "scan: " not in again.stderr


def test_progress_is_not_part_of_a_stored_option_set(tmp_path):
    """A bar changes no number: a scan's stored options leave it out (as threads), so stores
    made before the option existed resume as they are."""
    zoo = _zoo(tmp_path)
    db = tmp_path / "zoo.sqlite"
    scan([zoo], db)
    with Store(db, readonly=True) as store:
        options = set(store.frame("checkpoints")["options"])
    assert len(options) == 1
    stored = json.loads(options.pop())
    assert "progress" not in stored
    assert "threads" not in stored
    with pytest.raises(TypeError, match="its own progress"):
        scan([zoo], db, progress=True)
