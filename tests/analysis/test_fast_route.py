"""The float32 Gram route (esd_method="gram32") and analyze()'s default esd_method="auto":
eigenvalues within the stated bound of NumPy's own SVD, the routing, the guard's float64
redo, the rank columns the route cannot resolve, randomize on the same route."""

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
    bound = fast_route.error_bound("gram32", max(shape), float(ref[-1]))
    assert got.dtype == np.float64
    assert got.shape == (min(shape),)
    assert np.all(np.abs(got - ref) <= bound)
    # and the bound is not vacuous: float32 rounding is visible, float64's is not
    assert np.abs(got - ref).max() > fast_route.error_bound("gram", max(shape), float(ref[-1]))


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
    assert auto["esd_method"].tolist() == ["svd", "gram32", "gram32"]
    compat = hts_fast.analyze(_model(), compat="weightwatcher-0.7.7")
    assert set(compat["esd_method"]) == {"svd"}
    # the bound column: u * sqrt(N) * lambda_max of each row's route
    for _, row in auto.iterrows():
        u = 2.0**-24 / 4 if row["esd_method"] == "gram32" else 2.0**-53
        assert row["esd_error_bound"] == pytest.approx(u * math.sqrt(row["N"]) * row["lambda_max"])


def test_auto_is_the_svd_fit_within_the_contract():
    """alpha, xmin, D, lambda_max within 1e-5 relative and num_pl_spikes equal (the issue's
    contract), and the norm columns to float32 Gram rounding."""
    svd = hts_fast.analyze(_model(), esd_method="svd")
    auto = hts_fast.analyze(_model())
    assert auto.attrs["esd_redone"] == 0
    for col in ("alpha", "xmin", "D", "lambda_max"):
        np.testing.assert_allclose(auto[col], svd[col], rtol=1e-5, err_msg=col)
    assert auto["num_pl_spikes"].tolist() == svd["num_pl_spikes"].tolist()
    for col in ("log_norm", "stable_rank", "entropy", "alpha_weighted", "log_spectral_norm"):
        np.testing.assert_allclose(auto[col], svd[col], rtol=1e-6, err_msg=col)
    # rectangular layers resolve every eigenvalue: their rank columns are svd's
    for col in ("matrix_rank", "rank_loss", "weak_rank_loss"):
        assert auto[col].tolist() == svd[col].tolist()
    np.testing.assert_allclose(auto["sv_min"], svd["sv_min"], rtol=1e-4)


def test_results_do_not_depend_on_the_thread_count():
    one = hts_fast.analyze(_model(), threads=1)
    two = hts_fast.analyze(_model(), threads=2)
    for col in ("alpha", "D", "xmin", "entropy", "esd_error_bound"):
        np.testing.assert_array_equal(one[col], two[col])


def test_the_guard_redoes_layers_in_float64(monkeypatch):
    """A bound large enough to move xmin sends every float32 layer to the float64 Gram
    route: the rows then equal esd_method="gram"'s, and df.attrs counts them."""
    real = fast_route.error_bound
    monkeypatch.setattr(fast_route, "error_bound",
                        lambda route, inner, lmax: real(route, inner, lmax) * (
                            1e5 if route == "gram32" else 1.0))  # fmt: skip
    auto = hts_fast.analyze(_model())
    gram = hts_fast.analyze(_model(), esd_method="gram")
    assert auto["esd_method"].tolist() == ["svd", "gram", "gram"]
    assert auto.attrs["esd_redone"] == 2
    for col in ("alpha", "D", "xmin", "entropy", "matrix_rank"):
        np.testing.assert_array_equal(auto[col].iloc[1:], gram[col].iloc[1:])


def test_the_guard_fires_exactly_when_the_fit_moves():
    evals = _numpy_esd(_student_t((400, 1200), seed=7))
    fit = hts_fast.fit_powerlaw(evals)
    assert fast_route.guard([evals], [0.0], [fit], threads=1) == [False]
    # moving every value by a tenth of xmin changes the candidate set near xmin
    assert fast_route.guard([evals], [0.1 * fit.xmin], [fit], threads=1) == [True]
    # the decision is the refits': redo iff one of them takes another tail
    bound = 0.1 * fit.xmin
    refits = [hts_fast.fit_powerlaw(p) for p in fast_route._perturbed(evals, bound, fit.xmin)]
    assert any(r.num_pl_spikes != fit.num_pl_spikes for r in refits)


def test_rank_columns_of_a_square_layer_are_marked_unresolved():
    """A square Gaussian layer's smallest eigenvalues lie near 0, below the float32 route's
    resolution: matrix_rank, rank_loss -1, sv_min NaN and the reason; svd computes them."""
    w = np.random.default_rng(4).standard_normal((640, 640)).astype(np.float32) * 0.05
    auto = hts_fast.analyze({"sq.weight": w}).iloc[0]
    svd = hts_fast.analyze({"sq.weight": w}, esd_method="svd").iloc[0]
    assert auto["esd_method"] in ("gram32", "gram")
    if auto["esd_method"] == "gram32":
        assert auto["matrix_rank"] == -1
        assert auto["rank_loss"] == -1
        assert math.isnan(auto["sv_min"])
        assert "matrix_rank, rank_loss, sv_min" in auto["status_reason"]
        assert "esd_method='svd'" in auto["status_reason"]
    assert svd["matrix_rank"] == 640
    assert svd["sv_min"] > 0
    assert auto["alpha"] == pytest.approx(svd["alpha"], rel=1e-5)


def test_randomize_takes_each_layers_route():
    model = {"wide.weight": _student_t((600, 1500), 5)}
    auto = hts_fast.analyze(model, randomize=True, seed=3)
    svd = hts_fast.analyze(model, randomize=True, seed=3, esd_method="svd")
    assert auto["esd_method"].iloc[0] == "gram32"
    for col in ("max_rand_eval", "ww_softrank", "rand_distance"):
        np.testing.assert_allclose(auto[col], svd[col], rtol=1e-5, err_msg=col)
    # a difference of two eigenvalues: within twice the bound, absolutely
    bound = auto["esd_error_bound"].iloc[0]
    np.testing.assert_allclose(auto["ww_maxdist"], svd["ww_maxdist"], rtol=0, atol=2 * bound)


def test_unfused_options_take_svd_under_auto():
    table = hts_fast.analyze(_model(), fit="TPL")
    assert set(table["esd_method"]) == {"svd"}
