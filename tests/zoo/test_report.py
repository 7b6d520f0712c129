"""hts-fast report: plots and a self-contained HTML page, rendered by a real headless browser."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from hts_fast.cli import default_input, main

from ..conftest import REQUIRE_REFERENCES, _require
from .test_scan import _zoo


def _browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    if REQUIRE_REFERENCES:
        pytest.fail("no headless browser (apt-get install chromium)")
    pytest.skip("no headless browser (apt-get install chromium)")


def _screenshot(page, png) -> np.ndarray:
    """Render ``page`` in headless Chromium; return the screenshot's pixels."""
    plt = _require("matplotlib.pyplot")
    subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", "--window-size=1000,1400", f"--screenshot={png}",
                    page.resolve().as_uri()], check=True, capture_output=True,
                   timeout=120)  # fmt: skip
    return plt.imread(png)


def _embedded_images(page) -> list[bytes]:
    text = page.read_text(encoding="utf-8")
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', text)]


def test_model_report(tmp_path, capsys):
    _require("matplotlib")
    out = tmp_path / "report"
    assert main(["report", str(default_input()), "--out", str(out)]) == 0
    page = out / "report.html"
    assert f"wrote {page}" in capsys.readouterr().out
    images = _embedded_images(page)
    # 5 layer ESDs, alpha by depth, the alpha histogram; all embedded (the page stands alone)
    assert len(images) == 7
    assert all(img.startswith(b"\x89PNG") for img in images)
    text = page.read_text(encoding="utf-8")
    assert "heavy.t3" in text
    assert 'src="http' not in text
    pixels = _screenshot(page, tmp_path / "shot.png")
    assert pixels.shape[0] > 500
    assert pixels[..., :3].std() > 0.05  # not blank: text, tables and plots were drawn


def test_zoo_report_with_labels(tmp_path):
    _require("matplotlib")
    zoo = _zoo(tmp_path / "zoo", runs=6, broken=False)
    db = tmp_path / "zoo.sqlite"
    assert main(["scan", str(zoo), "--store", str(db), "--quiet"]) == 0
    labels = pd.DataFrame({"path": [f"zoo/run{k:02d}" for k in range(6)],
                           "accuracy": np.linspace(0.5, 0.9, 6)})  # fmt: skip
    labels.to_csv(tmp_path / "labels.csv", index=False)
    out = tmp_path / "zoo_report"
    assert main(["report", str(db), "--out", str(out), "--labels",
                 str(tmp_path / "labels.csv")]) == 0  # fmt: skip
    page = out / "report.html"
    text = page.read_text(encoding="utf-8")
    assert "Rank correlations" in text
    assert "Metrics against accuracy" in text
    assert len(_embedded_images(page)) == 3
    assert (out / "metric_vs_label.png").stat().st_size > 1000
    pixels = _screenshot(page, tmp_path / "zoo.png")
    assert pixels[..., :3].std() > 0.05


def test_report_of_a_missing_or_unreadable_source(tmp_path):
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x01")
    assert main(["report", str(bad), "--out", str(tmp_path / "r")]) == 2


def test_model_report_with_a_zero_layer(tmp_path):
    _require("matplotlib")
    from hts_fast.zoo.report import model_report

    rng = np.random.default_rng(2)
    state = [("zero", np.zeros((40, 30))), ("ok", rng.standard_normal((40, 30)))]
    page = model_report(state, tmp_path / "r", min_evals=0)
    assert "ok" in page.read_text(encoding="utf-8")
