"""esd(method="randomized") and analyze(esd_method="randomized") against the exact route."""

from __future__ import annotations

import hts_fast
import numpy as np
import pytest
import scipy.linalg
from hts_fast.analysis import randomized_esd
from hts_fast.spectra import randomized as er

from ..packaged_model import load_minilm


def exact(w: np.ndarray) -> np.ndarray:
    return np.sort(scipy.linalg.svdvals(np.asarray(w, dtype=np.float64)) ** 2)


def planted(m: int, n: int, lam: np.ndarray, seed: int = 0) -> np.ndarray:
    """float32 m x n matrix with ESD ``lam`` (orthogonal U, signed coordinate columns)."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((m, m)))
    w = np.zeros((m, n))
    w[:, rng.permutation(n)[:m]] = u * np.sqrt(lam) * rng.choice([-1.0, 1.0], m)
    return w.astype(np.float32)


def bulk_and_tail(m: int, tail: int, seed: int = 1) -> np.ndarray:
    """A flat bulk in [1, 4] and a Pareto tail above 4 (density exponent 3.5)."""
    rng = np.random.default_rng(seed)
    return np.r_[1.0 + 3.0 * rng.random(m - tail), 4.0 * (1 - rng.random(tail)) ** (-1 / 2.5)]


@pytest.fixture(scope="module")
def layer() -> np.ndarray:
    return planted(1024, 2752, bulk_and_tail(1024, 60))


@pytest.fixture(scope="module")
def layer_ref(layer) -> np.ndarray:
    return exact(layer)


@pytest.fixture(scope="module")
def minilm_mats() -> list[np.ndarray]:
    try:
        model = load_minilm()
    except ImportError as exc:
        pytest.skip(str(exc))
    names = ["encoder.layer.0.intermediate.dense.weight", "encoder.layer.3.output.dense.weight",
             "encoder.layer.5.attention.self.query.weight"]  # fmt: skip
    return [model[name] for name in names]


@pytest.mark.parametrize("operator", ["gram", "matrix"])
def test_top_k_within_bounds_on_minilm_layers(minilm_mats, operator):
    for w in minilm_mats:
        ref = exact(w)
        got = er.top_eigenvalues(w, 8, operator=operator)
        top = ref[-8:]
        assert got.route == f"krylov-{operator}"
        np.testing.assert_array_less(np.abs(got.values - top), got.bounds + 1e-13 * top[-1])
        np.testing.assert_allclose(got.values, top, rtol=1e-8)
        assert got.values[-1] == pytest.approx(ref[-1], rel=1e-10)
        assert got.frobenius_sq == pytest.approx(ref.sum(), rel=1e-12)


def test_known_spectrum_and_scale(layer, layer_ref):
    ref = layer_ref
    got = hts_fast.esd(layer, method="randomized", k=8, scale=0.5)
    np.testing.assert_allclose(got, ref[-8:] * 0.25, rtol=1e-8)


def test_deterministic_for_any_thread_count(layer):
    mats = [layer, layer[:, ::-1].copy(), layer[::2]]
    one = [hts_fast.esd(m, method="randomized", k=6, seed=3) for m in mats]
    for threads in (1, 2):
        out = hts_fast.esd_batch(mats, method="randomized", k=6, seed=3, threads=threads)
        for a, b in zip(one, out, strict=True):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(one[0], hts_fast.esd(layer, method="randomized", k=6, seed=4))


def separated_tail(m: int, tail: int = 150, seed: int = 1) -> np.ndarray:
    """A flat bulk in [1, 2] and a Pareto tail above 6 (density exponent 3)."""
    rng = np.random.default_rng(seed)
    return np.r_[1.0 + rng.random(m - tail), 6.0 * (1 - rng.random(tail)) ** (-1 / 2.0)]


def assert_same_fit(values: np.ndarray, ref: np.ndarray) -> None:
    fit, full = hts_fast.fit_powerlaw(values), hts_fast.fit_powerlaw(ref)
    assert fit.alpha == pytest.approx(full.alpha, rel=1e-8)
    assert fit.xmin == pytest.approx(full.xmin, rel=1e-8)
    assert fit.num_pl_spikes == full.num_pl_spikes
    assert values[-1] == pytest.approx(ref[-1], rel=1e-8)


def test_krylov_route_certifies_a_separated_tail():
    w = planted(1024, 2752, separated_tail(1024), seed=1)
    ref = exact(w)
    got = er.certified_spectrum(w, k0=8)
    spec = got.spectrum
    assert spec.route == "krylov-gram"
    assert not spec.complete
    assert got.ks[-1] == len(spec.values) < 1024
    top = ref[-len(spec.values) :]
    np.testing.assert_array_less(np.abs(spec.values - top), spec.bounds + 1e-13 * ref[-1])
    np.testing.assert_allclose(spec.values, top, rtol=1e-8)
    assert spec.frobenius_sq == pytest.approx(ref.sum(), rel=1e-12)
    assert_same_fit(spec.values, ref)


@pytest.mark.parametrize(("shape", "seed"), [((1024, 2752), 0), ((1024, 2048), 1),
                                             ((1536, 1024), 2)])  # fmt: skip
def test_certified_fit_equals_exact_fit_on_heavy_tailed_layers(shape, seed):
    rng = np.random.default_rng(seed)
    w = (rng.standard_t(3.0, size=shape) / np.sqrt(shape[0])).astype(np.float32)
    ref = exact(w)
    got = er.certified_spectrum(w, k0=16)
    assert_same_fit(got.spectrum.values, ref)
    if got.spectrum.complete:
        np.testing.assert_allclose(got.spectrum.values, ref, rtol=1e-8, atol=1e-10 * ref[-1])


def test_light_tailed_matrix_falls_back_to_the_whole_spectrum():
    """A Gaussian (Marchenko-Pastur) layer: no separated top, so the Krylov basis is
    abandoned and the dense route returns every eigenvalue."""
    w = np.random.default_rng(5).standard_normal((1024, 2048)).astype(np.float32)
    ref = exact(w)
    got = er.certified_spectrum(w)
    assert got.spectrum.route == "dense"
    assert got.spectrum.complete
    assert got.ks[-1] == 1024
    np.testing.assert_allclose(got.spectrum.values, ref, rtol=1e-10)
    assert_same_fit(got.spectrum.values, ref)


def test_analyze_randomized_matches_exact_on_heavy_tailed_layer(layer, monkeypatch):
    monkeypatch.setattr(randomized_esd, "EXACT_BELOW", 512)
    model = {"big.weight": layer, "small.weight": layer[:300, :400].copy()}
    svd = hts_fast.analyze(model, esd_method="svd")
    rnd = hts_fast.analyze(model, esd_method="randomized")
    for col in ("alpha", "lambda_max", "xmin", "xmax", "D", "alpha_weighted", "sv_max"):
        np.testing.assert_allclose(rnd[col], svd[col], rtol=1e-6, err_msg=col)
    for col in ("norm", "log_norm", "stable_rank", "num_evals", "num_pl_spikes"):
        np.testing.assert_allclose(rnd[col], svd[col], rtol=1e-12, err_msg=col)
    big, small = rnd.iloc[0], rnd.iloc[1]
    if "top" in big["status_reason"]:  # a top-k ESD: the whole-spectrum columns are marked
        assert np.isnan(big["entropy"])
        assert big["matrix_rank"] == -1
    assert small["status_reason"] == ""
    assert small["entropy"] == svd.iloc[1]["entropy"]
    assert (rnd["esd_method"] == "randomized").all()


def test_options_needing_the_whole_spectrum_are_refused(layer):
    with pytest.raises(ValueError, match=r"randomized.*mp_fit=True"):
        hts_fast.analyze({"w": layer}, esd_method="randomized", mp_fit=True)
    with pytest.raises(ValueError, match="need method='randomized'"):
        hts_fast.esd(layer, k=3)
    with pytest.raises(ValueError, match="needs k"):
        hts_fast.esd(layer, method="randomized")


def test_unconverged_iteration_raises(layer):
    with pytest.raises(er.ConvergenceError, match="certified only"):
        er.top_eigenvalues(layer, 40, power_iters=1, oversample=0)


def test_dense_eigensolve_equals_dsyevd():
    from hts_fast.spectra.exact import symmetric_eigenvalues

    a = np.random.default_rng(2).standard_normal((300, 700))
    g = a @ a.T
    ref = scipy.linalg.eigvalsh(g, driver="evd")
    for arr in (g.copy(), np.asfortranarray(g), g.astype(np.float32)):
        got = symmetric_eigenvalues(arr)
        tol = 1e-12 if arr.dtype == np.float64 else 1e-6
        np.testing.assert_allclose(got, ref, rtol=0, atol=tol * ref[-1])


def test_certified_fit_equals_exact_fit_on_minilm_matrices():
    try:
        model = load_minilm()
    except ImportError as exc:
        pytest.skip(str(exc))
    mats = [w for name, w in model.items() if w.ndim == 2 and min(w.shape) >= 384
            and name.startswith(("encoder.layer.0.", "encoder.layer.5."))]  # fmt: skip
    assert len(mats) == 12
    for w in mats:
        ref = exact(w)
        got = er.certified_spectrum(w)
        assert_same_fit(got.spectrum.values, ref)
        assert got.spectrum.frobenius_sq == pytest.approx(ref.sum(), rel=1e-12)
