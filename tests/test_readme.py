"""The README's main command runs as written (after its pip install) and does its job."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from .conftest import _require

README = Path(__file__).resolve().parents[1] / "README.md"


def main_command() -> str:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- main-command:.*?-->\s*```bash\n(.+?)\n```", text, re.DOTALL)
    assert block, "README main command block not found"
    return block.group(1).strip()


def test_main_command_runs_on_the_demo_zoo(tmp_path):
    _require("sklearn")
    _require("matplotlib")
    command = main_command()
    install, _, rest = command.partition(" && ")
    assert install.startswith("pip install")
    # the console script of this interpreter's environment, whatever PATH says
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run(["bash", "-c", rest], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=900, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    labels = pd.read_csv(tmp_path / "zoo" / "labels.csv")
    assert len(labels) == 16
    assert labels["test_accuracy"].between(0.5, 1.0).all()
    assert "scan finished" in result.stdout
    assert "16 analyzed" in result.stdout
    assert "spearman" in result.stdout
    assert (tmp_path / "report" / "report.html").stat().st_size > 10_000
