"""The default ESD route (esd_method="auto") against svd on the benchmark models: time ratio
and the accuracy contract (alpha, xmin, D, lambda_max within 1e-5 relative, num_pl_spikes
equal), with the largest relative deviation of each column in the timing table.

    python -m pytest benchmarks/test_bench_default_route.py -s

Full sizes: MiniLM, the BERT-12-shaped transformer, ResNet-18 and CIFAR ResNet-56 shapes
(benchmarks/models.py). docs/large-models.md quotes the table.
"""

from __future__ import annotations

import time

import hts_fast
import numpy as np
import pytest

from .conftest import _timings
from .models import models

MODELS = models()
CONTRACT = ("alpha", "xmin", "D", "lambda_max")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_default_route_against_svd(name):
    try:
        state = MODELS[name]()
    except ImportError as exc:
        pytest.skip(str(exc))
    tables: dict[str, object] = {}
    seconds = {"svd": float("inf"), "auto": float("inf")}
    for method in ("svd", "auto", "svd", "auto"):  # interleaved; the faster of two runs each
        start = time.perf_counter()
        tables[method] = hts_fast.analyze(state, esd_method=method, progress=False)
        seconds[method] = min(seconds[method], time.perf_counter() - start)
    svd, auto = tables["svd"], tables["auto"]
    group = f"default route vs svd: {name}"
    _timings[group]["svd route"] = seconds["svd"]
    _timings[group]["hts_fast.analyze[auto]"] = seconds["auto"]
    routes = auto["esd_method"].value_counts().to_dict()
    _timings[group][f"(routes {routes}, {auto.attrs['esd_redone']} redone)"] = float("nan")
    ok = (svd["status"] == "success").to_numpy()
    worst = {col: float(np.max(np.abs(auto[col].to_numpy()[ok] / svd[col].to_numpy()[ok] - 1),
                               initial=0.0))
             for col in CONTRACT}  # fmt: skip
    _timings[group]["(max rel. deviation " + ", ".join(f"{c} {v:.1e}" for c, v in worst.items())
                    + ")"] = float("nan")  # fmt: skip
    for col in CONTRACT:
        np.testing.assert_allclose(auto[col][ok], svd[col][ok], rtol=1e-5, err_msg=col)
    assert auto["num_pl_spikes"].tolist() == svd["num_pl_spikes"].tolist()
