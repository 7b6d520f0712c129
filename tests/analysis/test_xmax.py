"""analyze(xmax=...): None, a number, or "force" (hts_fast.analysis.xmax)."""

from __future__ import annotations

import numpy as np
import pytest
from hts_fast import analyze, fit_curves, fit_powerlaw
from hts_fast.fits.truncated import fit_truncated_powerlaw_at

from ..conftest import _require

COMPAT = "weightwatcher-0.7.7"


def _state(seed: int = 3, rows: int = 120, cols: int = 60) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"a.weight": rng.standard_t(3.0, (rows, cols)),
            "b.weight": rng.standard_t(4.0, (rows, cols))}  # fmt: skip


def _spectra(state: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
    sink: dict[int, np.ndarray] = {}
    analyze(state, _spectra_sink=sink)
    return sink


def _truncated_ks(x: np.ndarray, xmin: float, alpha: float, lam: float, top: float) -> float:
    """D against the TPL CDF renormalised to [xmin, top], with mpmath's incomplete gamma."""
    mpmath = _require("mpmath")
    tail = np.sort(x[x >= xmin])
    with mpmath.workdps(40):
        s = mpmath.mpf(1) - mpmath.mpf(alpha)
        lam_ = mpmath.mpf(lam)
        upper = mpmath.gammainc(s, lam_ * mpmath.mpf(xmin))
        total = upper - mpmath.gammainc(s, lam_ * mpmath.mpf(top))
        cdf = [float((upper - mpmath.gammainc(s, lam_ * mpmath.mpf(v))) / total) for v in tail]
    return float(np.max(np.abs(np.array(cdf) - np.arange(len(tail)) / len(tail))))


def test_force_changes_nothing_by_default() -> None:
    state = _state()
    for fit in ("PL", "TPL"):
        plain, forced = analyze(state, fit=fit), analyze(state, fit=fit, xmax="force")
        for col in ("alpha", "xmin", "D", "xmax", "num_pl_spikes"):
            assert forced[col].tolist() == plain[col].tolist()


def test_compat_force_tests_the_tpl_against_the_cdf_cut_at_the_largest_eigenvalue() -> None:
    state = _state()
    spectra = _spectra(state)
    table = analyze(state, fit="TPL", compat=COMPAT, xmax="force")
    plain = analyze(state, fit="TPL", compat=COMPAT)
    assert not np.allclose(table["D"], plain["D"])  # the cut changes D
    for k, evals in spectra.items():
        row = table.iloc[k]
        top = float(evals[-1])
        # the fit at the chosen xmin is the ordinary one; only the KS test is renormalised
        fit = fit_truncated_powerlaw_at(evals, float(row["xmin"]))
        assert row["alpha"] == pytest.approx(fit.alpha, rel=1e-10)
        assert row["Lambda"] == pytest.approx(fit.Lambda, rel=1e-10)
        expected = _truncated_ks(evals, row["xmin"], row["alpha"], row["Lambda"], top)
        assert row["D"] == pytest.approx(expected, rel=1e-8)
        # and the choice is the smallest such D among the valid (alpha > 1) fits
        curve = fit_curves(evals, fit="TPL", alpha_above_one=True, cdf_xmax=top)
        assert curve["xmin"][curve.attrs["selected"]] == row["xmin"]


def test_numeric_xmax_leaves_the_largest_eigenvalues_out() -> None:
    state = _state()
    spectra = _spectra(state)
    cut = float(np.median([np.quantile(e, 0.97) for e in spectra.values()]))
    table = analyze(state, xmax=cut)
    for k, evals in spectra.items():
        expected = fit_powerlaw(evals[evals <= cut])
        row = table.iloc[k]
        assert (row["alpha"], row["xmin"], row["xmax"]) == (expected.alpha, expected.xmin,
                                                            expected.xmax)  # fmt: skip
        assert row["xmax"] <= cut
        assert row["num_pl_spikes"] == expected.num_pl_spikes


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"xmax": "force", "compat": COMPAT}, ValueError, "needs fit='TPL'"),
        ({"xmax": "max"}, ValueError, "xmax must be"),
        ({"xmax": -1.0}, ValueError, "xmax must be"),
        ({"xmax": True}, TypeError, "xmax must be"),
        ({"xmax": 5.0, "fix_fingers": "clip_xmax"}, ValueError, "fix_fingers"),
    ],
)
def test_bad_xmax(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        analyze(_state(), **kwargs)


@pytest.mark.parametrize("k", [3, -5])
def test_compat_int_drops_the_largest_as_weightwatcher(k) -> None:
    from hts_fast.analysis.table import WW_COLUMNS

    from ..weightwatcher_reference import assert_same_table, run_weightwatcher

    state = _state()
    ours = analyze(state, compat=COMPAT, xmax=k)
    theirs = run_weightwatcher(state, xmax=k)
    assert_same_table(ours, theirs[WW_COLUMNS])
    spectra = _spectra(state)
    fit = fit_powerlaw(spectra[0][: -abs(k)])
    assert ours["alpha"].iloc[0] == pytest.approx(fit.alpha, rel=1e-12)
    assert ours["xmax"].iloc[0] == spectra[0][-abs(k) - 1]


def test_compat_zero_is_refused_as_weightwatcher() -> None:
    with pytest.raises(ValueError, match="xmax=0"):
        analyze(_state(), compat=COMPAT, xmax=0)


def test_default_int_is_a_value() -> None:
    state = _state()
    spectra = _spectra(state)
    cut = float(np.floor(spectra[0][-3]))
    table = analyze(state, xmax=int(cut))
    fit = fit_powerlaw(spectra[0][spectra[0] <= cut])
    assert table["alpha"].iloc[0] == pytest.approx(fit.alpha, rel=1e-12)
