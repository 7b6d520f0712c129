"""The ``hts-fast`` command and ``python -m hts_fast`` (the README's main command)."""

from __future__ import annotations

import json
import subprocess
import sys

import hts_fast
import numpy as np
import pandas as pd
import pytest
from hts_fast.cli import default_input, main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hts_fast", *args], capture_output=True,
                          text=True, check=False)  # fmt: skip


def test_bundled_demo_runs_and_matches_the_api(tmp_path):
    out = tmp_path / "demo.csv"
    result = _run("--out", str(out))  # no command, no path: analyze the bundled demo
    assert result.returncode == 0, result.stderr
    assert "5 layers analyzed" in result.stdout
    table = pd.read_csv(out)
    api = hts_fast.analyze(str(default_input()))
    assert list(table["name"]) == ["random.dense", "heavy.t3", "heavy.t2", "spiked.lowrank",
                                   "conv.random"]  # fmt: skip
    assert list(table.columns) == list(api.columns)
    np.testing.assert_allclose(table["alpha"], api["alpha"], rtol=1e-15)
    with np.load(default_input()) as archive:
        heavy = archive["heavy.t3"]
    alphas = table.set_index("name")["alpha"]
    assert alphas["heavy.t3"] == hts_fast.fit_powerlaw(hts_fast.esd(heavy)).alpha
    # heavy-tailed layers have smaller alpha than the random one
    assert alphas["heavy.t2"] < alphas["heavy.t3"] < alphas["random.dense"]


def test_bad_arrays_are_reported_and_the_rest_analyzed(tmp_path, capsys):
    rng = np.random.default_rng(0)
    good = rng.standard_normal((40, 30)).astype(np.float32)
    nan = good.copy()
    nan[0, 0] = np.nan
    path = tmp_path / "w.npz"
    np.savez(path, good=good, bias=np.ones(30), broken=nan, ints=np.ones((9, 9), dtype=np.int8),
             obj=np.full((9, 9), {"a": 1}, dtype=object))  # fmt: skip
    out = tmp_path / "w.json"
    assert main(["analyze", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = {row["name"]: row for row in json.loads(out.read_text())}
    assert rows["good"]["status"] == "success"
    assert "NaN or Inf" in rows["broken"]["status_reason"]
    assert "int8" in rows["ints"]["status_reason"]
    assert "object arrays hold pickles and are refused" in printed  # never unpickled
    assert "bias" in printed  # listed as not analyzed, with the reason


def test_options_reach_analyze(tmp_path):
    out = tmp_path / "t.csv"
    result = _run("analyze", str(default_input()), "--esd-method", "gram", "--layers", "dense",
                  "--compat", "weightwatcher-0.7.7", "--randomize", "--seed", "3",
                  "--quiet", "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    table = pd.read_csv(out)
    # compat keeps WeightWatcher's ".weight" rule: the demo's plain names give no layers
    assert table.empty
    result = _run("analyze", str(default_input()), "--esd-method", "gram", "--layers", "dense",
                  "--randomize", "--seed", "3", "--quiet", "--out", str(out))  # fmt: skip
    table = pd.read_csv(out)
    assert set(table["layer_type"]) == {"dense"}
    assert (table["esd_method"] == "gram").all()
    assert table["rand_distance"].notna().all()


def test_describe_and_unreadable_input(tmp_path):
    result = _run("describe", str(default_input()))
    assert result.returncode == 0, result.stderr
    assert "conv.random" in result.stdout
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"\x01\x02")
    result = _run("analyze", str(bad))
    assert result.returncode == 2
    assert "x.safetensors" in result.stderr
    result = _run("analyze", str(tmp_path / "missing.onnx"))
    assert result.returncode == 2
    assert "no such file" in result.stderr


def test_parquet_output(tmp_path):
    import importlib.util

    out = tmp_path / "t.parquet"
    result = _run("analyze", str(default_input()), "--quiet", "--out", str(out))
    if importlib.util.find_spec("pyarrow") is None:  # optional: a clear message, no traceback
        assert result.returncode == 1
        assert "writing parquet needs pyarrow" in result.stderr
        assert "Traceback" not in result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert list(pd.read_parquet(out)["name"])[:2] == ["random.dense", "heavy.t3"]


def test_fit_options_on_the_command_line(tmp_path):
    out = tmp_path / "t.csv"
    result = _run("analyze", str(default_input()), "--fit", "E_TPL", "--mp-fit", "--detx",
                  "--quiet", "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out)
    assert {"Lambda", "sigma_mp", "detX_num", "phase"} <= set(table.columns)
    assert set(table["fit_method"].dropna()) <= {"E_TPL[corrected]"}
    result = _run("analyze", str(default_input()), "--fit", "TPL", "--compare")
    assert result.returncode == 2
    assert "compare=True" in result.stderr


def test_the_fit_s_own_columns_are_printed():
    result = _run("analyze", str(default_input()), "--fit", "EXP")
    assert result.returncode == 0, result.stderr
    header = next(
        line for line in result.stdout.splitlines() if line.lstrip().startswith("layer_id")
    )
    assert header.split()[6:10] == ["alpha", "xmin", "Lambda", "loglik"]
    first = hts_fast.analyze(str(default_input()), fit="EXP").iloc[0]
    row = next(line for line in result.stdout.splitlines() if line.split()[:1] == ["0"])
    assert float(row.split()[8]) == pytest.approx(first["Lambda"], rel=1e-3)
