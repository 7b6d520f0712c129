"""WeightWatcher 0.7.7 as the reference of the parity tests, and the table comparison.

WeightWatcher 0.7.7 reads every model through torch, state dicts of NumPy arrays included
(it tests ``type(weights) == torch.Tensor``), so a comparison needs both packages: without
either the test skips with the reason, unless HTS_FAST_REQUIRE_REFERENCES=1 (CI) makes that a
failure. This module imports neither, so the tests that import it run their other checks
without them.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd
from hts_fast.analysis.table import WW_COLUMNS

from .conftest import _require

FIT_COLUMNS = {"alpha", "alpha_weighted", "D", "sigma", "xmin", "log_alpha_norm"}
EXACT_COLUMNS = {"layer_id", "name", "longname", "layer_type", "M", "N", "rf", "num_evals",
                 "num_pl_spikes", "rank_loss", "weak_rank_loss", "matrix_rank", "status",
                 "warning", "has_esd", "peft"}  # fmt: skip


def require_weightwatcher() -> Any:
    """The weightwatcher module, after checking that torch (which it reads models with) imports."""
    _require("torch")
    return _require("weightwatcher")


def run_weightwatcher(model: Any, **kwargs: Any) -> pd.DataFrame:
    """WeightWatcher(model=model).analyze(**kwargs), its logging and printing silenced."""
    ww = require_weightwatcher()
    logging.getLogger("weightwatcher").setLevel(logging.CRITICAL)
    with (
        warnings.catch_warnings(),
        np.errstate(all="ignore"),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        return ww.WeightWatcher(model=model).analyze(**kwargs)


def assert_same_table(
    ours: pd.DataFrame, theirs: pd.DataFrame, columns: list[str] = WW_COLUMNS
) -> None:
    """The first ``columns`` of ours equal WeightWatcher's: names, order, values and dtypes."""
    assert list(ours.columns[: len(columns)]) == list(theirs.columns) == columns
    assert list(ours["layer_id"]) == list(theirs["layer_id"])
    for col in columns:
        a, b = ours[col].to_numpy(), theirs[col].to_numpy()
        if col in EXACT_COLUMNS:
            assert [str(x) for x in a] == [str(x) for x in b], col
        else:
            rtol = 1e-6 if col in FIT_COLUMNS else 1e-9
            np.testing.assert_allclose(a.astype(float), b.astype(float), rtol=rtol, err_msg=col)
        if col not in ("name", "longname", "layer_type", "status", "warning"):
            if col == "xmax" and theirs[col].dtype == object:
                continue  # WeightWatcher's None for a failed fit makes the column object
            assert ours[col].dtype == theirs[col].dtype, col
