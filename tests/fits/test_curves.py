"""hts_fast.fit_curves: every candidate's row against the fixed-xmin fits and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from hts_fast import fit_curves, fit_powerlaw
from hts_fast.fits.truncated import fit_truncated_powerlaw_at

from ..conftest import heavy_tailed_esd
from .test_tpl import tpl_sample


def test_powerlaw_curve_rows_match_the_closed_form() -> None:
    x = np.sort(heavy_tailed_esd(np.random.default_rng(4), 300, 200, 3.0))
    table = fit_curves(x, fit="PL")
    assert list(table.columns) == ["xmin", "alpha", "D", "sigma", "n"]
    for k in (0, 50, 120, len(x) - 30):
        tail = x[k:]
        alpha = 1.0 + len(tail) / np.sum(np.log(tail / tail[0]))  # Clauset's MLE
        cdf = 1.0 - (tail / tail[0]) ** (1.0 - alpha)
        D = np.max(np.abs(cdf - np.arange(len(tail)) / len(tail)))
        row = table.iloc[k]
        assert row["xmin"] == x[k]
        assert row["n"] == len(tail)
        assert row["alpha"] == pytest.approx(alpha, rel=1e-12)
        assert row["D"] == pytest.approx(D, rel=1e-10)
        assert row["sigma"] == pytest.approx((alpha - 1.0) / np.sqrt(len(tail)), rel=1e-12)
    best = fit_powerlaw(x)
    assert table["xmin"][table.attrs["selected"]] == best.xmin


def test_tpl_curve_rows_match_the_fixed_xmin_kernel() -> None:
    x = tpl_sample(np.random.default_rng(6), 800, 2.2, 0.1, 1.0)
    table = fit_curves(x, fit="TPL")
    assert {"xmin", "alpha", "Lambda", "D", "loglik", "alpha_se", "Lambda_se", "n",
            "status"} == set(table.columns)  # fmt: skip
    assert len(table) == len(np.unique(x)) - 1
    for k in (0, 1, 200, 500, len(table) - 1):
        row = table.iloc[k]
        fit = fit_truncated_powerlaw_at(x, float(row["xmin"]))
        assert row["status"] == fit.status
        assert row["n"] == fit.n
        for column, value in [("alpha", fit.alpha), ("Lambda", fit.Lambda), ("D", fit.D),
                              ("loglik", fit.loglik), ("alpha_se", fit.alpha_se)]:  # fmt: skip
            assert row[column] == pytest.approx(value, rel=1e-10, abs=1e-300), column
    sub = fit_curves(x, fit="TPL", xmin_range=(1.5, 3.0))
    assert sub["xmin"].between(1.5, 3.0, inclusive="left").all()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="fit must be"):
        fit_curves([1.0, 2.0, 3.0], fit="EXP")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"apply to fit=.TPL. only"):
        fit_curves([1.0, 2.0, 3.0], xmin_range=(1.0, 2.0))
    with pytest.raises(ValueError, match="NaN"):
        fit_curves([1.0, np.nan, 3.0], fit="TPL")
