"""analyze()'s default esd_method="auto" (float64 Gram for large layers, svd for small ones)
and the float32 Gram route (esd_method="gram32"): eigenvalues within the stated bound of
NumPy's own SVD, the routing, the guard's float64 redo, the rank columns a Gram route cannot
resolve, randomize."""

from __future__ import annotations

import math

import hts_fast
import numpy as np
import pytest
from hts_fast.analysis import fast_route


def _student_t(shape: tuple[int, int], seed: int, df: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_t(df, size=shape) * 0.02).astype(np.float32)


def _numpy_esd(w: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """The reference: NumPy's own LAPACK SVD in float64, squared, ascending."""
    s = np.linalg.svd(np.asarray(w, dtype=np.float64) * scale, compute_uv=False)
    return np.sort(s**2)


@pytest.mark.parametrize(
    ("shape", "dtype", "scale"),
    [((300, 900), np.float32, 1.0), ((900, 300), np.float32, 1.0), ((512, 512), np.float64, 1.0),
     ((256, 700), np.float16, 1.0), ((400, 1200), np.float32, 0.5)],
)  # fmt: skip
def test_gram32_eigenvalues_are_within_their_bound(shape, dtype, scale):
    w = _student_t(shape, seed=sum(shape)).astype(dtype)
    got = hts_fast.esd(w, method="gram32", scale=scale)
    ref = _numpy_esd(w, scale)
    bounds = fast_route.eigenvalue_bounds("gram32", max(shape), ref)
    assert got.dtype == np.float64
    assert got.shape == (min(shape),)
    assert np.all(np.abs(got - ref) <= bounds)
    assert bounds[-1] == pytest.approx(fast_route.error_bound("gram32", max(shape), len(ref),
                                                              ref[-1]))  # fmt: skip
    # and the bound is not vacuous: float32 rounding is visible, float64's is not
    assert np.abs(got - ref).max() > fast_route.error_bound("gram", max(shape), len(ref), ref[-1])


def test_a_transposed_view_gives_the_same_eigenvalues():
    w = _student_t((300, 800), seed=3)
    np.testing.assert_array_equal(hts_fast.esd(w.T, method="gram32"),
                                  hts_fast.esd(np.ascontiguousarray(w.T), method="gram32"))  # fmt: skip


def test_gram32_rejects_non_finite_weights_naming_them():
    w = _student_t((64, 128), seed=1)
    w[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        hts_fast.esd(w, method="gram32")


def _model() -> dict[str, np.ndarray]:
    return {"small.weight": _student_t((300, 1000), 1), "wide.weight": _student_t((600, 1800), 2),
            "tall.weight": _student_t((2048, 640), 3, df=4.0)}  # fmt: skip


def test_auto_routes_by_the_smaller_side_and_compat_keeps_svd():
    auto = hts_fast.analyze(_model())
    assert auto["esd_method"].tolist() == ["svd", "gram", "gram"]
    compat = hts_fast.analyze(_model(), compat="weightwatcher-0.7.7")
    assert set(compat["esd_method"]) == {"svd"}
    fast = hts_fast.analyze(_model(), esd_method="gram32")
    # the bound column: (c u sqrt(N) + u64 sqrt(M)) lambda_max of each row's route
    for _, row in [*auto.iterrows(), *fast.iterrows()]:
        u = 2.0**-24 / 4 if row["esd_method"] == "gram32" else 2.0**-53
        expected = (u * math.sqrt(row["N"]) + 2.0**-53 * math.sqrt(row["M"])) * row["lambda_max"]
        assert row["esd_error_bound"] == pytest.approx(expected)


@pytest.mark.parametrize("method", ["auto", "gram32"])
def test_the_fit_is_svds_within_the_contract(method):
    """alpha, xmin, D, lambda_max within 1e-5 relative and num_pl_spikes equal (the issue's
    contract), and the norm columns to the Gram product's rounding."""
    svd = hts_fast.analyze(_model(), esd_method="svd")
    auto = hts_fast.analyze(_model(), esd_method=method)
    redone = int((auto["esd_method"] == "gram").sum()) if method == "gram32" else 0
    assert auto.attrs["esd_redone"] == redone
    for col in ("alpha", "xmin", "D", "lambda_max"):
        np.testing.assert_allclose(auto[col], svd[col], rtol=1e-5, err_msg=col)
    assert auto["num_pl_spikes"].tolist() == svd["num_pl_spikes"].tolist()
    for col in ("log_norm", "stable_rank", "entropy", "alpha_weighted", "log_spectral_norm"):
        np.testing.assert_allclose(auto[col], svd[col], rtol=1e-6, err_msg=col)
    # rectangular layers resolve every eigenvalue: their rank columns are svd's
    for col in ("matrix_rank", "rank_loss", "weak_rank_loss"):
        assert auto[col].tolist() == svd[col].tolist()
    np.testing.assert_allclose(auto["sv_min"], svd["sv_min"], rtol=1e-4)


@pytest.mark.parametrize("method", ["auto", "gram32"])
def test_results_do_not_depend_on_the_thread_count(method):
    one = hts_fast.analyze(_model(), threads=1, esd_method=method)
    two = hts_fast.analyze(_model(), threads=2, esd_method=method)
    for col in ("alpha", "D", "xmin", "entropy", "esd_error_bound"):
        np.testing.assert_array_equal(one[col], two[col])


def test_the_guard_redoes_layers_in_float64(monkeypatch):
    """A bound large enough to move xmin sends every float32 layer to the float64 Gram
    route: the rows then equal esd_method="gram"'s, and df.attrs counts them."""
    real = fast_route.eigenvalue_bounds
    monkeypatch.setattr(fast_route, "eigenvalue_bounds",
                        lambda route, inner, evals: real(route, inner, evals) * (
                            1e5 if route == "gram32" else 1.0))  # fmt: skip
    auto = hts_fast.analyze(_model(), esd_method="gram32")
    gram = hts_fast.analyze(_model(), esd_method="gram")
    assert auto["esd_method"].tolist() == ["gram", "gram", "gram"]
    assert auto.attrs["esd_redone"] == 3
    for col in ("alpha", "D", "xmin", "entropy", "matrix_rank"):
        np.testing.assert_array_equal(auto[col], gram[col])


def test_the_guard_fires_exactly_when_the_fit_moves():
    evals = _numpy_esd(_student_t((400, 1200), seed=7))
    fit = hts_fast.fit_powerlaw(evals)
    assert fast_route.guard([evals], [np.zeros_like(evals)], [fit], threads=1) == [False]
    # moving every value by a tenth of xmin changes the candidate set near xmin
    bound = np.full_like(evals, 0.1 * fit.xmin)
    assert fast_route.guard([evals], [bound], [fit], threads=1) == [True]
    refits = [hts_fast.fit_powerlaw(p) for p in fast_route._perturbed(evals, bound, fit.xmin)]
    assert any(r.num_pl_spikes != fit.num_pl_spikes for r in refits)


def test_alpha_shift_bounds_the_worst_case_move_of_alpha():
    """alpha_shift() against the MLE itself: xmin moved down by delta and the rest of the
    tail up by delta (relative), the worst case, changes alpha by at most alpha_shift and
    by more than half of it (the bound is first-order tight)."""
    rng = np.random.default_rng(0)
    for alpha_true, delta in ((2.5, 1e-6), (4.0, 1e-5), (8.0, 1e-4)):
        tail = np.sort(2.0 * (1 - rng.random(500)) ** (-1 / (alpha_true - 1)))
        xmin = tail[0]

        def mle(x, xmin):
            return 1 + len(x) / np.sum(np.log(x / xmin))

        alpha = mle(tail, xmin)
        moved = np.concatenate([[xmin * (1 - delta)], tail[1:] * (1 + delta)])
        actual = abs(mle(moved, moved[0]) / alpha - 1)
        bound = fast_route.alpha_shift(alpha, xmin, delta * xmin)
        assert 0.5 * bound < actual <= bound


def test_the_guard_redoes_a_layer_whose_bound_can_move_alpha():
    """A Student-t layer plus a constant: the spike of the constant sets the mean
    eigenvalue, which floors every float32 bound, so the bound at xmin is ~1e-3 of it.
    The refits with uniform shifts keep the same tail (the old guard kept the layer and
    its alpha was 1e-2 off); the alpha-shift check sends it to float64, and the row then
    equals svd's."""
    rng = np.random.default_rng(5)
    w = (rng.standard_t(3, size=(2048, 1024)) + 20).astype(np.float32)
    evals = hts_fast.esd(w, method="gram32")
    fit = hts_fast.fit_powerlaw(evals)
    bounds = fast_route.eigenvalue_bounds("gram32", 2048, evals)
    at_xmin = bounds[np.searchsorted(evals, fit.xmin)]
    assert fast_route.alpha_shift(fit.alpha, fit.xmin, at_xmin) > 10 * fast_route.GUARD_ALPHA_RTOL
    refits = [hts_fast.fit_powerlaw(p) for p in fast_route._perturbed(evals, bounds, fit.xmin)]
    assert all(r.num_pl_spikes == fit.num_pl_spikes for r in refits)
    svd = hts_fast.analyze({"w": w}, esd_method="svd").iloc[0]
    assert abs(fit.alpha / svd["alpha"] - 1) > 1e-3  # the float32 fit alone is off
    table = hts_fast.analyze({"w": w}, esd_method="gram32")
    row = table.iloc[0]
    assert table.attrs["esd_redone"] == 1
    assert row["esd_method"] == "gram"
    assert row["num_pl_spikes"] == svd["num_pl_spikes"]
    for col in ("alpha", "xmin", "D", "lambda_max"):
        assert row[col] == pytest.approx(svd[col], rel=1e-9), col


def test_the_ks_margin_compares_every_candidate_with_the_chosen_one():
    """ks_margin_holds(): with zero bounds only a tie could move the choice; bounds of
    1e-3 of each value let the neighbours' KS distances reach the chosen one's. On this
    Student-t layer the runner-up's D is 6.8e-6 above the chosen one's, inside the float32
    bounds' reach (2.5e-5), so the layer goes to float64 although its uniform-shift refits
    agree."""
    evals = hts_fast.esd(np.random.default_rng(2).standard_t(3, size=(2048, 1024))
                         .astype(np.float32), method="gram32")  # fmt: skip
    fit = hts_fast.fit_powerlaw(evals)
    assert fast_route.ks_margin_holds(evals, np.zeros_like(evals), fit, threads=1)
    assert not fast_route.ks_margin_holds(evals, 1e-3 * evals, fit, threads=1)
    bounds = fast_route.eigenvalue_bounds("gram32", 2048, evals)
    assert not fast_route.ks_margin_holds(evals, bounds, fit, threads=1)
    curve = hts_fast.fits.powerlaw.powerlaw_curve(evals)
    gaps = np.sort(curve.Ds[curve.Ds > curve.best.D]) - curve.best.D
    assert 0 < gaps[0] < 1e-5  # the close call, measured independently of the margin rule
    assert fast_route.guard([evals], [bounds], [fit], threads=1) == [True]


@pytest.mark.parametrize(
    ("scale", "dtype"),
    [(1e-30, np.float32), (1e21, np.float64), (1e38, np.float64), (1e-120, np.float64)],
)
def test_gram32_holds_its_bound_at_any_scale(scale, dtype):
    """W is scaled by a power of two into float32's range before its Gram product, so
    weights far outside that range (where the plain float32 product overflows to Inf or
    underflows to 0) keep the bound of the unscaled case."""
    w = (_student_t((600, 300), seed=11).astype(np.float64) * scale).astype(dtype)
    got = hts_fast.esd(w, method="gram32")
    ref = _numpy_esd(w)
    assert ref[-1] > 0
    assert np.isfinite(ref[-1])
    assert np.all(np.abs(got - ref) <= fast_route.eigenvalue_bounds("gram32", 600, ref))


@pytest.mark.parametrize("method", ["auto", "gram32"])
def test_rank_columns_the_route_cannot_resolve_are_marked(method):
    """A rank-deficient layer (rank 560 of 640): its zero eigenvalues lie within the Gram
    route's bound, so matrix_rank and rank_loss are -1 and sv_min NaN. A nearly square
    Gaussian layer's smallest eigenvalue (~2e-3 of the mean) is resolved by both Gram
    routes (rank columns equal svd's); float64 also gives its sv_min to 1e-5, float32 not.
    svd computes all of them."""
    rng = np.random.default_rng(4)
    low = rng.standard_normal((640, 560)) @ rng.standard_normal((560, 640))  # float64: exact rank
    square = rng.standard_normal((640, 700)).astype(np.float32) * 0.05
    model = {"low.weight": low * 0.002, "square.weight": square}
    auto = hts_fast.analyze(model, esd_method=method)
    svd = hts_fast.analyze(model, esd_method="svd")
    route = "gram" if method == "auto" else "gram32"
    assert auto["esd_method"].tolist() == [route, route]
    low_row, square_row = auto.iloc[0], auto.iloc[1]
    assert low_row["matrix_rank"] == -1
    assert low_row["rank_loss"] == -1
    assert math.isnan(low_row["sv_min"])
    assert "matrix_rank, rank_loss, entropy, sv_min" in low_row["status_reason"]
    assert math.isnan(low_row["entropy"])
    assert "esd_method='svd'" in low_row["status_reason"]
    assert svd["matrix_rank"].iloc[0] == 560  # svd resolves the rank
    assert square_row["matrix_rank"] == svd["matrix_rank"].iloc[1] == 640
    assert square_row["rank_loss"] == svd["rank_loss"].iloc[1] == 0
    if method == "auto":
        assert square_row["sv_min"] == pytest.approx(svd["sv_min"].iloc[1], rel=1e-5)
        assert square_row["status_reason"] == ""
    else:
        assert math.isnan(square_row["sv_min"])
        assert square_row["status_reason"].endswith(
            "sv_min not available (esd_method='svd' computes them)"
        )
    np.testing.assert_allclose(auto["alpha"], svd["alpha"], rtol=1e-5)


@pytest.mark.parametrize("shape", [(600, 1500), (300, 900)])
def test_randomize_takes_the_gram_route(shape):
    """Under "auto" every shuffled matrix takes the float64 Gram route (the small layer's
    own ESD stays svd): the shuffled columns equal svd's to Gram rounding."""
    model = {"w.weight": _student_t(shape, 5)}
    auto = hts_fast.analyze(model, randomize=True, seed=3)
    svd = hts_fast.analyze(model, randomize=True, seed=3, esd_method="svd")
    assert auto["esd_method"].iloc[0] == ("gram" if min(shape) >= 512 else "svd")
    for col in ("max_rand_eval", "ww_softrank", "rand_distance"):
        np.testing.assert_allclose(auto[col], svd[col], rtol=1e-5, err_msg=col)
    # a difference of two eigenvalues: within twice the float64 Gram bound, absolutely
    bound = fast_route.error_bound("gram", max(shape), min(shape), float(svd["lambda_max"].iloc[0]))
    np.testing.assert_allclose(auto["ww_maxdist"], svd["ww_maxdist"], rtol=0, atol=2 * bound)


def test_unfused_options_take_svd_under_auto():
    table = hts_fast.analyze(_model(), fit="TPL")
    assert set(table["esd_method"]) == {"svd"}
    # the bound column is filled there too, from each row's ESD
    expected = (2.0**-53 * (np.sqrt(table["N"]) + np.sqrt(table["M"]))) * table["lambda_max"]
    np.testing.assert_allclose(table["esd_error_bound"], expected, rtol=1e-12)


def test_entropy_detx_and_phase_of_an_unresolved_rank():
    """A rank-100 layer of 600 eigenvalues on the float64 Gram route: entropy (normalised
    by log(matrix_rank)) is NaN with the rank, detX (which lands among the zero
    eigenvalues) -1/NaN, and the phase reads the rank at the route's resolution, so it is
    svd's ("Rank-collapse"). A rank-590 layer is not collapsed by either route. A
    full-rank layer keeps svd's entropy and detX."""
    rng = np.random.default_rng(8)
    model = {
        "low.weight": rng.standard_t(3, size=(1200, 100)) @ rng.standard_normal((100, 600)),
        "near.weight": rng.standard_t(3, size=(1200, 590)) @ rng.standard_normal((590, 600)),
        "full.weight": rng.standard_t(3, size=(1200, 600)),
    }
    options = {"detX": True, "mp_fit": True}
    gram = hts_fast.analyze(model, esd_method="gram", **options)
    svd = hts_fast.analyze(model, esd_method="svd", **options)
    low, near, full = (gram.iloc[k] for k in range(3))
    assert svd["matrix_rank"].tolist() == [100, 590, 600]
    assert math.isnan(low["entropy"])
    assert not math.isnan(svd["entropy"].iloc[0])
    assert low["detX_num"] == low["num_ERG_spikes"] == -1
    assert math.isnan(low["detX_val"])
    assert math.isnan(low["ERG_gap"])
    assert "detX_num, detX_val not available" in low["status_reason"]
    assert svd["phase"].tolist()[:2] == ["Rank-collapse", gram["phase"].iloc[1]]
    assert low["phase"] == "Rank-collapse"
    assert near["matrix_rank"] == -1
    assert near["phase"] != "Rank-collapse"
    assert full["matrix_rank"] == 600
    assert full["entropy"] == pytest.approx(svd["entropy"].iloc[2], rel=1e-9)
    assert full["detX_num"] == svd["detX_num"].iloc[2]
    assert full["phase"] == svd["phase"].iloc[2]
