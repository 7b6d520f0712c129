"""examples/tempbalance_digits.py runs end to end (two short seeds) and draws its figure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..conftest import _require

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tempbalance_digits.py"


def test_tempbalance_digits_example(tmp_path):
    for module in ("torch", "sklearn", "matplotlib"):
        _require(module)
    out = tmp_path / "figure.png"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--epochs", "2", "--seeds", "2", "--out", str(out)],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("SGD + cosine ")
    assert "test accuracy" in lines[0]
    assert lines[1].startswith("SGD + cosine + TempBalance")
    accuracy = float(lines[1].split("test accuracy")[1].split("+-")[0])
    assert accuracy > 50  # 2 epochs on digits: far above chance (10 %)
    assert out.stat().st_size > 10_000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
