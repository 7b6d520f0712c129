"""mp_fit and detx against WeightWatcher 0.7.7's own routines on the same eigenvalues.

WeightWatcher's per-layer entry points are called as analyze() calls them:
``WeightWatcher.apply_mp_fit(layer, random=False)`` (which wraps ``mp_fit``,
``RMT_Util.fit_density_with_range`` and ``resid_mp`` and turns any exception into -1s) and
``WeightWatcher.apply_detX(layer)`` (``rescale_eigenvalues`` + ``detX_constraint``), each on a
minimal stand-in for its layer object.

Tolerance: our KDE sums the same kernels as scikit-learn's tree but in another order (and not
in log space), so the density differs by ~1e-14 relative. The brute-force argmin and the
Nelder-Mead path depend only on comparisons of objective values, and the final sigma is a
simplex vertex computed from the starting point, so unless a comparison of two values within
~1e-14 flips, the results are bit-identical (they are, in every case below). RTOL = 1e-9
leaves room for platform rounding without hiding a different fit (a different Nelder-Mead path
moves sigma by ~xtol = 1e-4).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hts_fast.fits.marchenko_pastur import (
    KDE_BANDWIDTH,
    DetX,
    MPFit,
    detx,
    erg_columns,
    linear_kde,
    mp_fit,
    mp_fit_batch,
)

from ..conftest import _require, heavy_tailed_esd
from ..weightwatcher_reference import require_weightwatcher

pytestmark = pytest.mark.weightwatcher

RTOL = 1e-9
MP_COLUMNS = ["num_spikes", "sigma_mp", "mp_softrank", "W_scale", "bulk_max", "bulk_min"]
DETX_COLUMNS = ["detX_num", "num_ERG_spikes", "ERG_gap", "detX_val", "detX_val_unrescaled"]
INT_COLUMNS = {"num_spikes", "detX_num", "num_ERG_spikes", "ERG_gap"}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence WeightWatcher's logging, prints and NumPy/scikit-learn warnings."""
    logger = logging.getLogger("weightwatcher")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with (
            warnings.catch_warnings(),
            np.errstate(all="ignore"),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


class _Layer:
    """The attributes of WeightWatcher's WWLayer that apply_mp_fit and apply_detX use."""

    def __init__(self, evals: np.ndarray, N: int = 0, M: int = 0, num_pl_spikes: Any = None):
        self.layer_id = self.plot_id = 0
        self.name = self.longname = "layer"
        self.evals = evals
        self.N, self.M, self.rf = N, M, 1
        self.columns: list[str] = []
        if num_pl_spikes is not None:
            self.num_pl_spikes = num_pl_spikes

    def add_column(self, name: str, value: Any) -> None:
        self.columns.append(name)
        setattr(self, name, value)

    def has_column(self, name: str) -> bool:
        return name in self.__dict__


@pytest.fixture(scope="module")
def watcher() -> Any:
    _require("sklearn")
    ww = _require("weightwatcher")
    with _quiet():
        return ww.WeightWatcher()


def ww_mp_columns(watcher: Any, evals: np.ndarray, N: int, M: int) -> dict[str, Any]:
    layer = _Layer(np.asarray(evals, dtype=np.float64), N, M)
    with _quiet():
        watcher.apply_mp_fit(layer, random=False)
    return {c: getattr(layer, c) for c in MP_COLUMNS}


def ww_detx_columns(watcher: Any, evals: np.ndarray, num_pl_spikes: int = 7) -> dict[str, Any]:
    layer = _Layer(np.asarray(evals, dtype=np.float64), num_pl_spikes=num_pl_spikes)
    with _quiet():
        watcher.apply_detX(layer)
    return {c: getattr(layer, c) for c in DETX_COLUMNS}


def assert_columns_match(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    for col, value in theirs.items():
        if col in INT_COLUMNS:
            assert ours[col] == value, col
        elif math.isnan(value):
            assert math.isnan(ours[col]), col
        else:
            assert ours[col] == pytest.approx(float(value), rel=RTOL, abs=0), col


def our_detx_columns(evals: np.ndarray, num_pl_spikes: int = 7) -> dict[str, Any]:
    result = detx(evals)
    return {**result.columns(), **erg_columns(result.detX_num, num_pl_spikes)}


# ------------------------------------------------------------------------------------------
# spectra


def esd(w: np.ndarray) -> np.ndarray:
    return np.sort(np.linalg.svd(w, compute_uv=False) ** 2)


def planted_spikes(rng: np.random.Generator, rows: int, cols: int, k: int) -> np.ndarray:
    """Gaussian noise plus a rank-k signal well above the MP edge (BBP threshold)."""
    u = np.linalg.qr(rng.standard_normal((rows, k)))[0]
    v = np.linalg.qr(rng.standard_normal((cols, k)))[0]
    strengths = np.linspace(3.0, 6.0, k) * np.sqrt(rows)
    return esd(rng.standard_normal((rows, cols)) + (u * strengths) @ v.T)


def mp_quantiles(n: int, Q: float) -> np.ndarray:
    """n eigenvalues at the quantiles of the MP law of ratio Q (sigma = 1): a pure bulk."""
    a, b = (1 - Q**-0.5) ** 2, (1 + Q**-0.5) ** 2
    edges = np.linspace(a, b, 20001)
    x = (edges[1:] + edges[:-1]) / 2  # midpoints: the density is singular at 0 when Q == 1
    pdf = np.sqrt((b - x) * (x - a)) / (2 * np.pi * x / Q)
    cdf = np.concatenate(([0.0], np.cumsum(pdf * np.diff(edges))))
    return np.interp((np.arange(n) + 0.5) / n, cdf / cdf[-1], edges)


def _mp_cases() -> dict[str, tuple[np.ndarray, int, int]]:
    rng = np.random.default_rng(2026)
    g = rng.standard_normal
    cases = {
        "gauss_200x100": (esd(g((200, 100))), 200, 100),
        "gauss_400x100_scaled": (esd(g((400, 100))) * 1e-4, 400, 100),
        "gauss_150x100": (esd(g((150, 100))), 150, 100),
        "spikes1_300x150": (planted_spikes(rng, 300, 150, 1), 300, 150),
        "spikes4_300x120": (planted_spikes(rng, 300, 120, 4), 300, 120),
        "square_120": (esd(g((120, 120))), 120, 120),
        "square_spikes3_100": (planted_spikes(rng, 100, 100, 3), 100, 100),
        "student_t2.5_300x150": (heavy_tailed_esd(rng, 300, 150, 2.5), 300, 150),
        "student_t4_square_150": (heavy_tailed_esd(rng, 150, 150, 4.0), 150, 150),
        "mp_quantiles_Q3": (mp_quantiles(200, 3.0), 600, 200),
        "constant": (np.full(50, 2.0), 100, 50),
        "constant_square": (np.full(40, 0.3), 40, 40),
        "rank1_penalised": (np.r_[np.zeros(59), 5.0], 120, 60),
    }
    for n in (8, 13, 20):
        cases[f"small_n{n}"] = (esd(g((2 * n + 3, n))), 2 * n + 3, n)
    cases["small_square_n10"] = (esd(g((10, 10))), 10, 10)
    return cases


MP_CASES = _mp_cases()


# ------------------------------------------------------------------------------------------
# KDE


def test_linear_kde_normalisation_matches_scikit_learn():
    sklearn_neighbors = _require("sklearn.neighbors")
    # one training point at 0, queried at 0: the density is the kernel norm itself
    kde = sklearn_neighbors.KernelDensity(kernel="linear", bandwidth=KDE_BANDWIDTH)
    with _quiet():
        log_norm = kde.fit(np.zeros((1, 1))).score_samples(np.zeros((1, 1)))[0]
    ours = linear_kde(np.zeros(1), np.zeros(1), KDE_BANDWIDTH)[0]
    # 1/h = 10: scikit-learn's log-norm is -(log V_1 - log 2) - log h, exact up to one
    # rounding of lgamma(1.5) (its log V_1 - log 2 evaluates to 2.2e-16 instead of 0)
    assert ours == 1 / KDE_BANDWIDTH
    assert ours == pytest.approx(math.exp(log_norm), rel=1e-13)


@pytest.mark.parametrize("seed", range(4))
def test_linear_kde_matches_scikit_learn(seed):
    sklearn_neighbors = _require("sklearn.neighbors")
    rng = np.random.default_rng(seed)
    data = np.concatenate(
        (
            rng.lognormal(0, 0.7, 500),
            np.full(30, 1.0),  # ties
            [0.0, 0.1, 0.2, 0.35, 4.0],  # points exactly one bandwidth apart
        )
    )
    grid = np.linspace(0, data.max() + 0.5, 1000)
    kde = sklearn_neighbors.KernelDensity(kernel="linear", bandwidth=KDE_BANDWIDTH)
    with _quiet():
        theirs = np.exp(kde.fit(data[:, None]).score_samples(grid[:, None]))
    ours = linear_kde(rng.permutation(data), grid, KDE_BANDWIDTH)
    assert np.array_equal(ours > 0, theirs > 0)
    # scikit-learn accumulates log-kernels with logaddexp: ~1e-14 relative noise
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)


# ------------------------------------------------------------------------------------------
# MP fit against WeightWatcher


@pytest.mark.parametrize("name", sorted(MP_CASES))
def test_mp_fit_matches_weightwatcher(watcher, name):
    evals, N, M = MP_CASES[name]
    theirs = ww_mp_columns(watcher, evals, N, M)
    ours = mp_fit(evals, N, M, compat=True)
    assert ours.status == "success"
    assert_columns_match(ours.columns(), theirs)


def test_mp_fit_physics_of_the_reference_cases():
    """Sanity of what is being matched: bulk sigma ~ 1, spikes found, ratios as expected."""
    for name in ("gauss_200x100", "gauss_150x100", "square_120", "mp_quantiles_Q3"):
        fit = mp_fit(*MP_CASES[name], compat=True)
        assert fit.num_spikes <= 1, name
        assert fit.sigma_mp == pytest.approx(1.0, abs=0.1), name
    for name, k in (("spikes1_300x150", 1), ("spikes4_300x120", 4), ("square_spikes3_100", 3)):
        assert mp_fit(*MP_CASES[name], compat=True).num_spikes == k, name
    # W_scale makes the eigenvalues mean 1; scaling the input leaves the rescaled fit alone
    evals, N, M = MP_CASES["gauss_200x100"]
    base, scaled = mp_fit(evals, N, M, compat=True), mp_fit(evals * 4.0, N, M, compat=True)
    assert base.W_scale == pytest.approx(np.sqrt(len(evals) / np.sum(evals)), rel=1e-15)
    assert scaled.sigma_mp == pytest.approx(base.sigma_mp, rel=1e-12)
    assert scaled.bulk_max == pytest.approx(4.0 * base.bulk_max, rel=1e-12)


@pytest.mark.parametrize(
    ("name", "evals", "N", "M", "reason"),
    [
        ("all_zero", np.zeros(30), 60, 30, "all eigenvalues are zero"),
        ("nan", np.r_[np.linspace(0.1, 3, 29), np.nan], 60, 30, "NaN or Inf"),
        ("inf", np.r_[np.linspace(0.1, 3, 29), np.inf], 60, 30, "NaN or Inf"),
        ("empty", np.zeros(0), 60, 30, "no eigenvalues"),
        ("negative_square", np.r_[-0.5, np.linspace(0.1, 3, 29)], 30, 30, "negative"),
    ],
)
def test_mp_fit_failures_match_weightwatcher(watcher, name, evals, N, M, reason):
    # WeightWatcher raises inside mp_fit (np.mgrid / np.max of an empty array / scikit-learn on
    # NaN input) and apply_mp_fit turns that into -1 in all six columns
    theirs = ww_mp_columns(watcher, evals, N, M)
    assert all(v == -1 for v in theirs.values()), theirs
    compat = mp_fit(evals, N, M, compat=True)
    assert compat.status == "failed"
    assert reason in compat.reason
    assert_columns_match(compat.columns(), theirs)
    default = mp_fit(evals, N, M, compat=False)
    assert default.status == "failed"
    assert default.reason == compat.reason
    assert default.num_spikes == 0
    assert all(math.isnan(getattr(default, c)) for c in MP_COLUMNS[1:])


@pytest.mark.parametrize(
    ("name", "note"),
    [
        # one spike, the rest zero: every sigma on the grid gets the penalty, so
        # WeightWatcher's numbers come from Nelder-Mead wandering a flat objective
        ("rank1_penalised", "no sigma puts the MP support"),
        # a point mass: WeightWatcher fits it without complaint (Q == 1: every eigenvalue is
        # a "spike" and bulk_min is 0)
        ("constant", "all eigenvalues are equal"),
        ("constant_square", "all eigenvalues are equal"),
    ],
)
def test_meaningless_fit_is_weightwatchers_in_compat_and_failed_by_default(name, note):
    evals, N, M = MP_CASES[name]
    compat = mp_fit(evals, N, M, compat=True)  # matched against WeightWatcher above
    assert compat.status == "success"
    assert note in compat.reason
    default = mp_fit(evals, N, M, compat=False)
    assert default.status == "failed"
    assert default.reason == compat.reason
    assert math.isnan(default.sigma_mp)


def test_ordinary_fit_carries_no_note():
    assert mp_fit(*MP_CASES["gauss_200x100"], compat=True).reason == ""


def test_mp_fit_default_mode_equals_compat_on_good_spectra():
    for name in ("gauss_200x100", "square_120", "student_t2.5_300x150", "small_n8"):
        assert mp_fit(*MP_CASES[name], compat=False) == mp_fit(*MP_CASES[name], compat=True)


def test_mp_fit_batch_and_argument_checks():
    names = ["gauss_200x100", "square_120", "small_n8"]
    spectra = [MP_CASES[n][0] for n in names]
    Ns = [MP_CASES[n][1] for n in names]
    Ms = [MP_CASES[n][2] for n in names]
    batch = mp_fit_batch(spectra, Ns, Ms, compat=True)
    assert batch == [mp_fit(e, n, m, compat=True) for e, n, m in zip(spectra, Ns, Ms, strict=True)]
    assert all(isinstance(r, MPFit) for r in batch)
    with pytest.raises(ValueError, match="2 N values"):
        mp_fit_batch(spectra, Ns[:2], Ms, compat=True)
    with pytest.raises(ValueError, match="1-D"):
        mp_fit(np.ones((4, 4)), 4, 4, compat=True)
    with pytest.raises(ValueError, match="M must be a positive integer"):
        mp_fit(np.ones(4), 4, 0, compat=True)
    with pytest.raises(TypeError, match="complex"):
        mp_fit(np.ones(4, dtype=complex), 4, 4, compat=True)


# ------------------------------------------------------------------------------------------
# detX


def literal_detx_index(y: np.ndarray) -> tuple[int, int]:
    """A line-by-line port of WeightWatcher's detX_constraint(rescale=False): O(n^2)."""
    if len(y) < 2 or not (y[0] < y[-1]):
        return 0, 0
    num, idx = len(y), 0
    with np.errstate(over="ignore"):
        for idx in range(len(y) - 1, 0, -1):
            if np.prod(y[idx:]) < 1.0:
                num = len(y) - idx
                break
    return num, idx


def _detx_spectra() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    spectra = []
    for t in range(240):
        n = int(rng.integers(2, 400))
        kind = t % 8
        if kind == 0:
            e = rng.lognormal(0, rng.uniform(0.01, 6), n)
        elif kind == 1:
            e = rng.integers(0, 4, n).astype(float)  # ties and exact zeros
        elif kind == 2:
            e = np.r_[np.ones(n // 2), rng.choice([0.25, 0.5, 2.0, 4.0], n - n // 2)]
        elif kind == 3:
            e = rng.choice([1e-300, 1e-200, 1e-30, 1.0, 1e10], n)  # extreme products
        elif kind == 4:
            e = rng.exponential(1.0, n)
        elif kind == 5:
            e = np.r_[np.zeros(int(rng.integers(0, 5))), rng.pareto(2.0, n)]
        elif kind == 6:
            e = mp_quantiles(n, float(rng.uniform(1, 4))) * rng.lognormal(0, 3)
        else:
            e = np.full(n, 1.5) * (1 + (rng.random(n) < 0.05) * 1e-15)  # near-constant
        spectra.append(np.sort(e))
    # Large ESDs: partial products underflow, WeightWatcher's answer is the rounded one
    for n in (3000, 6000):
        spectra.append(np.sort(rng.chisquare(1, n) * rng.lognormal(0, 0.5, n)))
        spectra.append(mp_quantiles(n, 1.0))
    # Exact cases: sum == n, so W_scale == 1 and y == evals
    spectra += [
        np.array(v, dtype=float)
        for v in (
            [0.5, 0.5, 1.0, 2.0],  # prod(y[1:]) == 1 exactly: never below 1 -> (n, idx 1)
            [0.5, 1.5],
            [1.0, 1.0],  # constant -> (0, 0)
            [0.25, 0.75, 1.0, 2.0],
            [0.0, 0.0, 4.0],
            [0.0, 2.0],
            [0.5, 1.0, 1.0, 1.5],
            [2.0],
        )
    ]
    return spectra


DETX_SPECTRA = _detx_spectra()


def test_detx_matches_weightwatcher_and_literal_port(watcher):
    for k, evals in enumerate(DETX_SPECTRA):
        theirs = ww_detx_columns(watcher, evals, num_pl_spikes=k % 13)
        ours = our_detx_columns(evals, num_pl_spikes=k % 13)
        # pure comparisons plus WeightWatcher's own arithmetic (detX_val is y[idx] / W_scale**2
        # as it divides it back): bit-identical, NaN where WeightWatcher has NaN
        assert ours.keys() == theirs.keys()
        for col, value in theirs.items():
            assert ours[col] == value or (math.isnan(ours[col]) and math.isnan(value)), (k, col)
        with np.errstate(all="ignore"):
            w_scale = np.sqrt(len(evals)) / np.sqrt(np.sum(evals))
            y = (w_scale * w_scale) * evals
        result = detx(evals)
        assert (result.detX_num, result.index) == literal_detx_index(y), k


def test_detx_underflow_in_weightwatcher_and_exact_default():
    # 6000 MP(Q=1) eigenvalues: the tail products of WeightWatcher's np.prod underflow to 0,
    # so it stops where the true product is astronomically large; compat=False does not
    evals = mp_quantiles(6000, 1.0)
    y = evals * (len(evals) / np.sum(evals))
    compat, exact = detx(evals), detx(evals, compat=False)
    assert math.fsum(np.log(y[compat.index :])) > 50
    assert np.prod(y[compat.index :]) == 0.0
    assert exact.index < compat.index
    assert math.fsum(np.log(y[exact.index :])) < 0 <= math.fsum(np.log(y[exact.index + 1 :]))
    assert exact.detX_num == len(evals) - exact.index


def test_detx_edge_cases():
    assert detx(np.array([0.5, 0.5, 1.0, 2.0])) == DetX(4, 0.5, 0.5, 1)
    # exact mode also tries idx 0 (the whole ESD: its product is <= 1 by AM-GM)
    assert detx(np.array([0.5, 0.5, 1.0, 2.0]), compat=False) == DetX(4, 0.5, 0.5, 0)
    assert detx(np.full(5, 3.0)) == DetX(0, 3.0, 1.0, 0)
    assert detx(np.array([7.0])).detX_num == 0
    assert erg_columns(12, 5) == {"num_ERG_spikes": 12, "ERG_gap": 7}
    assert math.isnan(erg_columns(12, None)["ERG_gap"])
    with pytest.raises(ValueError, match="empty"):
        detx(np.zeros(0))


# ------------------------------------------------------------------------------------------
# analyze() end to end


def test_analyze_columns_match_weightwatcher():
    ww = require_weightwatcher()  # its state-dict path needs torch
    rng = np.random.default_rng(5)
    spike = 3.0 * np.outer(rng.standard_normal(150), rng.standard_normal(80)) / np.sqrt(80)
    state = {
        "a.weight": rng.standard_normal((64, 100)).astype(np.float32),
        "b.weight": (rng.standard_t(3.0, (300, 200)) / 10).astype(np.float32),
        "c.weight": rng.standard_normal((128, 128)).astype(np.float32),
        "d.weight": (rng.standard_normal((150, 80)) + spike).astype(np.float32),
    }
    with _quiet():
        watcher = ww.WeightWatcher(model=state)
        table = watcher.analyze(mp_fit=True, detX=True)
        # the layer's ESD exactly as analyze() saw it (float64 SVD of the float32 weight)
        spectra = {lid: watcher.get_ESD(layer=lid) for lid in table["layer_id"]}
    assert len(table) == 4
    for _, row in table.iterrows():
        evals = spectra[row["layer_id"]]
        assert len(evals) == row["num_evals"]
        fit = mp_fit(evals, int(row["N"]), int(row["M"]), compat=True)
        det = detx(evals)
        ours = {
            **fit.columns(),
            **det.columns(),
            **erg_columns(det.detX_num, int(row["num_pl_spikes"])),
        }
        theirs = {c: row[c] for c in [*MP_COLUMNS, *DETX_COLUMNS]}
        assert_columns_match(ours, theirs)
