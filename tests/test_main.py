"""``python -m hts_fast``: the README's main command on the bundled and on user input."""

from __future__ import annotations

import subprocess
import sys

import hts_fast
import numpy as np
import pytest
from hts_fast.__main__ import analyze_npz, default_input


def test_bundled_demo_runs_and_matches_the_api():
    table = analyze_npz(default_input())
    assert list(table["name"]) == [
        "random.dense",
        "heavy.t3",
        "heavy.t2",
        "spiked.lowrank",
        "conv.random",
    ]
    assert (table["status"] == "success").all()
    with np.load(default_input()) as archive:
        heavy = archive["heavy.t3"]
        conv = archive["conv.random"]
    row = table.set_index("name").loc["heavy.t3"]
    assert row["alpha"] == hts_fast.fit_powerlaw(hts_fast.esd(heavy)).alpha
    conv_row = table.set_index("name").loc["conv.random"]
    assert conv_row["num_evals"] == 9 * 16
    assert conv_row["alpha"] == hts_fast.fit_powerlaw(hts_fast.esd_conv2d(conv)).alpha
    # heavy-tailed layers have smaller alpha than the random one
    alphas = table.set_index("name")["alpha"]
    assert alphas["heavy.t2"] < alphas["heavy.t3"] < alphas["random.dense"]


def test_bad_arrays_are_reported_and_the_rest_analyzed(tmp_path):
    rng = np.random.default_rng(0)
    good = rng.standard_normal((40, 30)).astype(np.float32)
    nan = good.copy()
    nan[0, 0] = np.nan
    path = tmp_path / "w.npz"
    np.savez(path, good=good, bias=np.ones(30), broken=nan, ints=np.ones((4, 4), dtype=np.int8))
    table = analyze_npz(path).set_index("name")
    assert table.loc["good", "status"] == "success"
    assert table.loc["bias", "status"].startswith("skipped: 1-D")
    assert "NaN or Inf" in table.loc["broken", "status"]
    assert "unsupported dtype int8" in table.loc["ints", "status"]


def test_pickled_npz_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(SystemExit, match=r"not a readable \.npz"):
        analyze_npz(path)


def test_command_line_prints_the_table_and_writes_csv(tmp_path):
    out = tmp_path / "t.csv"
    result = subprocess.run(
        [sys.executable, "-m", "hts_fast", "--method", "gram", "--csv", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "heavy.t3" in result.stdout
    assert out.read_text().startswith("name,shape,")
