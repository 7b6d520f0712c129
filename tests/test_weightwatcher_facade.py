"""hts_fast.weightwatcher against WeightWatcher 0.7.7 itself: the README's snippets and the
usage patterns of public scripts run on both packages and agree (1e-6 relative on the fit
columns, 1e-9 on the rest); plus the native base_model= and distances()."""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import logging
import subprocess
import sys
import warnings

import hts_fast
import hts_fast.weightwatcher as hw
import numpy as np
import pandas as pd
import pytest

from .conftest import REQUIRE_REFERENCES, _require
from .packaged_model import load_minilm
from .weightwatcher_reference import FIT_COLUMNS

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.weightwatcher


@pytest.fixture(scope="module")
def ww():
    module = _require("weightwatcher")
    logging.getLogger("weightwatcher").setLevel(logging.CRITICAL)
    return module


@contextlib.contextmanager
def quiet():
    with (warnings.catch_warnings(), np.errstate(all="ignore"),
          contextlib.redirect_stdout(io.StringIO())):  # fmt: skip
        warnings.simplefilter("ignore")
        yield


def small_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Embedding(60, 24),
        torch.nn.Linear(24, 64),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3),  # out >= in
        torch.nn.Conv2d(32, 16, 2),  # out < in, rf even: 0.7.7's N/M toggle
        torch.nn.Linear(64, 40, bias=False),
        torch.nn.LayerNorm(40),
        torch.nn.Linear(40, 5),  # M < min_evals
    )


def assert_same(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    assert list(ours.columns) == list(theirs.columns)
    assert list(ours.index) == list(theirs.index)
    for col in theirs.columns:
        a, b = ours[col].to_numpy(), theirs[col].to_numpy()
        if theirs[col].dtype.kind in "fiu" and col not in ("layer_id", "M", "N", "rf"):
            rtol = 1e-6 if col in FIT_COLUMNS else 1e-9
            np.testing.assert_allclose(a.astype(float), b.astype(float), rtol=rtol, err_msg=col)
        else:
            assert [str(x) for x in a] == [str(x) for x in b], col


def both(ww, call: str, *args, model=None, base_model=None, **kwargs):
    """The same call on a fresh watcher of each package."""
    with quiet():
        theirs = getattr(ww.WeightWatcher(model=model, base_model=base_model), call)(
            *args, **kwargs
        )
        ours = getattr(hw.WeightWatcher(model=model, base_model=base_model), call)(*args, **kwargs)
    return ours, theirs


# -- the API itself -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["analyze", "describe", "distances", "get_ESD",
                                    "get_Weights", "get_summary", "SVDSmoothing",
                                    "SVDSharpness", "get_framework_layer"])  # fmt: skip
def test_signatures_are_0_7_7s(ww, method):
    theirs = inspect.signature(getattr(ww.WeightWatcher, method)).parameters
    ours = inspect.signature(getattr(hw.WeightWatcher, method)).parameters
    assert list(ours) == list(theirs)
    assert [p.default for p in ours.values()] == [p.default for p in theirs.values()]


def test_constants_are_0_7_7s(ww):
    assert hw.__version__ == ww.__version__ == "0.7.7"
    for name in ("RAW", "EUCLIDEAN", "CKA", "DEF_SAVE_DIR"):
        assert getattr(hw, name) == getattr(ww, name) == getattr(hw.constants, name)
    for group in ("LAYER_TYPE", "FRAMEWORK", "METRICS"):
        theirs = {k: v for k, v in vars(getattr(ww, group)).items() if not k.startswith("_")}
        ours = {k: v for k, v in vars(getattr(hw, group)).items() if not k.startswith("_")}
        assert ours == theirs, group


def test_import_loads_no_torch_sklearn_powerlaw_matplotlib_and_no_logging_config():
    code = ("import logging, sys; import hts_fast.weightwatcher as ww; "
            "print(sorted(m for m in ('torch', 'sklearn', 'powerlaw', 'matplotlib') "
            "if m in sys.modules)); "
            "print(len(logging.getLogger().handlers), logging.getLogger().level)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split("\n")  # fmt: skip
    assert out[0] == "[]"
    assert out[1] == f"0 {logging.WARNING}"


# -- the README and the usage patterns --------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"mp_fit": True}, {"ERG": True}, {"min_evals": 20},
                                    {"fix_fingers": "clip_xmax"},
                                    {"layers": [4, 5], "start_ids": 3},
                                    {"layers": ["dense"]}, {"layers": [-1]}])  # fmt: skip
def test_analyze_and_summary_match(ww, kwargs):
    model = small_model()
    with quiet():
        watcher, theirs_w = hw.WeightWatcher(model=model), ww.WeightWatcher(model=model)
        ours, theirs = watcher.analyze(**kwargs), theirs_w.analyze(**kwargs)
        summaries = watcher.get_summary(ours), theirs_w.get_summary()
    assert_same(ours, theirs)
    assert watcher.get_details() is ours
    assert list(summaries[0]) == list(summaries[1])
    for key, value in summaries[1].items():
        rtol = 1e-6 if key in ("alpha", "alpha_weighted", "log_alpha_norm") else 1e-9
        np.testing.assert_allclose(summaries[0][key], value, rtol=rtol, err_msg=key)


def test_warning_rows_and_state_dict_input(ww):
    state = small_model(1).state_dict()
    ours, theirs = both(ww, "analyze", model=state)
    assert_same(ours[ours.warning != ""], theirs[theirs.warning != ""])
    assert int(theirs["layer_id"].min()) == 1  # 0.7.7's state-dict ids


def test_get_esd_loop_over_layer_ids_and_weights(ww):
    model = small_model(2)
    ours_w, theirs_w = hw.WeightWatcher(model=model), ww.WeightWatcher(model=model)
    with quiet():
        details = theirs_w.analyze()
        for i in details.layer_id:
            np.testing.assert_allclose(ours_w.get_ESD(layer=int(i)),
                                       theirs_w.get_ESD(layer=int(i)), rtol=1e-9)  # fmt: skip
        for layer in (None, "1", 3, 99, "nope"):
            a, b = ours_w.get_ESD(layer=layer), theirs_w.get_ESD(layer=layer)
            np.testing.assert_allclose(a, b, rtol=1e-9)
            ws, theirs = ours_w.get_Weights(layer=layer), theirs_w.get_Weights(layer=layer)
            assert len(ws) == len(theirs)
            for w, t in zip(ws, theirs, strict=True):
                assert w.dtype == t.dtype
                np.testing.assert_array_equal(w, t)


def test_get_esd_random_is_0_7_7s_with_the_same_seed(ww):
    """get_ESD(random=True): the shuffled weights' ESD (five shuffles pooled below 100
    eigenvalues: every layer of this model but the conv2d one), equal to 0.7.7's after
    the same np.random.seed, which leaves the global random state where 0.7.7 leaves it."""
    model = small_model(2)
    with quiet():
        ids = [int(i) for i in ww.WeightWatcher(model=model).describe()["layer_id"]]
    for layer in [*ids, None]:
        draws = []
        for package in (ww, hw):
            with quiet():
                np.random.seed(5)  # noqa: NPY002 - both shuffle with NumPy's global state
                evals = package.WeightWatcher(model=model).get_ESD(layer=layer, random=True)
            draws.append((np.asarray(evals), np.random.random()))  # noqa: NPY002
        (ours, after_ours), (theirs, after_theirs) = draws[1], draws[0]
        assert len(theirs) > 0
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12 * theirs.max())
        assert after_ours == after_theirs
        with quiet():
            plain = hw.WeightWatcher(model=model).get_ESD(layer=layer)
        assert len(ours) in (len(plain), 5 * len(plain))
        assert not np.allclose(ours[-len(plain) :], plain)  # shuffled, not the ESD itself


def test_layer_ids_taken_from_a_details_table_filter_like_0_7_7(ww):
    """NumPy integer ids (details.layer_id.values[...]) filter as Python ints do, kept and
    excluded; an integer array, which 0.7.7 ignores (it analyzes every layer), is read as
    its list of ids."""
    model = small_model(2)
    with quiet():
        details = ww.WeightWatcher(model=model).analyze()
    picked = list(details.layer_id.to_numpy()[[0, 3]])
    assert all(isinstance(i, np.integer) for i in picked)
    for layers in (picked, [-i for i in picked]):
        ours, theirs = both(ww, "analyze", model=model, layers=layers)
        assert_same(ours, theirs)
    ours = hw.WeightWatcher(model=model).analyze(layers=np.array(picked))
    assert ours["layer_id"].tolist() == [int(i) for i in picked]
    native = hts_fast.analyze(model, layers=np.array([1, 2]))
    assert native["layer_id"].tolist() == [1, 2]


def test_describe_matches(ww):
    model = small_model(3)
    for kwargs in ({}, {"min_evals": 30}, {"layers": ["conv2d"]}):
        ours, theirs = both(ww, "describe", model=model, **kwargs)
        assert_same(ours, theirs)
    ours, theirs = both(ww, "describe", model=model.state_dict())
    assert_same(ours, theirs)


@pytest.mark.parametrize("method", ["raw", "euclidean", "cka"])
def test_distances_match(ww, method):
    m1, m2 = small_model(4), small_model(5)
    ours, theirs = both(ww, "distances", m1, m2, method=method)
    assert_same(ours[2], theirs[2])
    assert ours[2].index.name == theirs[2].index.name == "layer_id"
    np.testing.assert_allclose(ours[:2], theirs[:2], rtol=1e-9)
    ours, theirs = both(ww, "distances", m1.state_dict(), m2.state_dict(), method=method.upper())
    assert_same(ours[2], theirs[2])


def test_cka_constant_pattern(ww):
    m1, m2 = small_model(6), small_model(7)
    with quiet():
        d1, d2, _ = hw.WeightWatcher().distances(m1, m2, method=hw.constants.CKA)
        t1, t2, _ = ww.WeightWatcher().distances(m1, m2, method=ww.constants.CKA)
    np.testing.assert_allclose([d1, d2], [t1, t2], rtol=1e-9)


def test_base_model_deltas_match(ww):
    model, base = small_model(8), small_model(9)
    ours, theirs = both(ww, "analyze", model=model, base_model=base)
    assert_same(ours, theirs)
    # analyze(model=, base_model=) on an empty watcher takes the base too
    with quiet():
        a = hw.WeightWatcher().analyze(model=model, base_model=base)
        b = ww.WeightWatcher().analyze(model=model, base_model=base)
    assert_same(a, b)
    assert_same(a, ours)


def test_base_model_without_model_is_ignored_as_in_0_7_7(ww, caplog):
    model, base = small_model(8), small_model(9)
    with quiet(), caplog.at_level(logging.WARNING, logger="hts_fast.weightwatcher"):
        ours = hw.WeightWatcher(model=model).analyze(base_model=base)
        theirs = ww.WeightWatcher(model=model).analyze(base_model=base)
    assert_same(ours, theirs)
    assert_same(ours, both(ww, "analyze", model=model)[1])  # the plain analysis
    assert "base_model= is ignored" in caplog.text


def test_minilm_readme_snippet(ww):
    try:
        model = load_minilm()
    except ImportError as exc:
        if REQUIRE_REFERENCES:
            raise
        pytest.skip(str(exc))
    ours, theirs = both(ww, "analyze", model=model)
    assert len(ours) == 39
    assert_same(ours, theirs)


# -- keywords not computed, invalid ones --------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{"pool": False}, {"ww2x": True}, {"vectors": True},
                                    {"intra": True}, {"stacked": True}, {"fft": True},
                                    {"conv2d_fft": True}, {"inverse": True},
                                    {"channels": "first"}, {"finger_thresh": 2.0},
                                    {"pl_package": "powerlaw"},
                                    {"xmin_max": 3.0, "fix_fingers": "xmin_peak"}])  # fmt: skip
def test_unsupported_keywords_raise_naming_them(kwargs):
    watcher = hw.WeightWatcher(model=small_model())
    name = next(iter(kwargs))
    name = "pool" if name == "ww2x" else name
    with pytest.raises(NotImplementedError, match=name):
        watcher.analyze(**kwargs)


@pytest.mark.parametrize("kwargs", [{"min_evals": 50, "max_evals": 40}, {"fit": "TPL"},
                                    {"layers": [1, -2]}, {"svd_method": "exact"},
                                    {"xmax": 0}, {"start_ids": -1}])  # fmt: skip
def test_invalid_params_raise_like_0_7_7(ww, kwargs):
    with quiet(), pytest.raises(Exception, match="params not valid"):
        ww.WeightWatcher(model=small_model()).analyze(**kwargs)
    with pytest.raises(ValueError, match="params not valid"):
        hw.WeightWatcher(model=small_model()).analyze(**kwargs)


# -- in-place edits ---------------------------------------------------------------------------


def trapped_model() -> torch.nn.Module:
    model = small_model(10)
    with torch.no_grad():
        model[1].weight += 0.6 * torch.randn(64, 1) @ torch.randn(1, 24)  # a rank-1 spike
        model[5].weight[3, 7] = 4.0  # one huge entry: a correlation trap when shuffled
    return model


def test_svd_sharpness_matches_with_the_same_random_state(ww):
    model = trapped_model()
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    with quiet():
        np.random.seed(3)  # noqa: NPY002 - WeightWatcher draws from the legacy global state
        returned = ww.WeightWatcher(model=a).SVDSharpness()
        np.random.seed(3)  # noqa: NPY002 - WeightWatcher draws from the legacy global state
        assert hw.WeightWatcher(model=b).SVDSharpness() is returned is None
    changed = False
    for (name, p), (_, q), (_, o) in zip(a.named_parameters(), b.named_parameters(),
                                         model.named_parameters(), strict=True):  # fmt: skip
        np.testing.assert_allclose(q.detach().numpy(), p.detach().numpy(), rtol=0, atol=1e-6,
                                   err_msg=name)  # fmt: skip
        changed |= not torch.equal(p, o)
    assert changed  # the trap was removed


def test_svd_smoothing_rmt_keeps_the_spike_like_0_7_7(ww):
    """0.7.7 reconstructs with a randomized SVD; with one well-separated spike it is exact
    to float32 precision, so the weights agree."""
    model = trapped_model()
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    with quiet():
        ww.WeightWatcher(model=a).SVDSmoothing(method="rmt", layers=[2])
        assert hw.WeightWatcher(model=b).SVDSmoothing(method="rmt", layers=[2]) is b
    ours, theirs = b[1].weight.detach().numpy(), a[1].weight.detach().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * np.abs(theirs).max())
    assert np.linalg.matrix_rank(ours.astype(np.float64), tol=1e-4) < 24
    assert b[1].weight.dtype == torch.float32


def test_svd_smoothing_percent_is_the_exact_low_rank_approximation():
    model = small_model(11)
    weight = model[1].weight.detach().numpy().astype(np.float64)
    hw.WeightWatcher(model=model).SVDSmoothing(method="svd", percent=0.5, layers=[2])
    u, s, vt = np.linalg.svd(weight, full_matrices=False)
    k = int(0.5 * 24)
    expected = (u[:, :k] * s[:k]) @ vt[:k]
    np.testing.assert_allclose(model[1].weight.detach().numpy(), expected, atol=1e-6)


# -- the native API ---------------------------------------------------------------------------


def test_native_base_model_marks_rows_and_pairs_by_name():
    model, base = small_model(12), small_model(13)
    table = hts_fast.analyze(model, base_model=base)
    assert table["base_delta"].dtype == bool
    assert table["base_delta"].all()
    delta = copy.deepcopy(model)
    with torch.no_grad():
        for p, q in zip(delta.parameters(), base.parameters(), strict=True):
            p -= q
    expected = hts_fast.analyze(delta)
    for col in ("alpha", "norm", "lambda_max", "entropy"):
        np.testing.assert_allclose(table[col], expected[col], rtol=1e-6, err_msg=col)
    # a base with a layer fewer: that layer is analyzed as it is, with a warning
    fewer = {k: v for k, v in base.state_dict().items() if not k.startswith("5.")}
    with pytest.warns(UserWarning, match="no layer named 5"):
        table = hts_fast.analyze(model.state_dict(), base_model=fewer)
    assert list(table.loc[table["name"] == "5", "base_delta"]) == [False]
    assert table.loc[table["name"] != "5", "base_delta"].all()


def test_native_base_model_shape_mismatch_names_the_layer():
    model = {"a.weight": np.ones((20, 10)), "b.weight": np.ones((30, 12))}
    base = {"a.weight": np.ones((20, 10)), "b.weight": np.ones((30, 11))}
    with pytest.raises(ValueError, match=r"layer b: weight \(30, 12\)"):
        hts_fast.analyze(model, base_model=base)


def test_native_distances():
    m1, m2 = small_model(14), small_model(15)
    raw = hts_fast.distances(m1, m2, "raw")
    w1, w2 = m1[1].weight.detach().double().numpy(), m2[1].weight.detach().double().numpy()
    row = raw.set_index("longname").loc["1"]
    assert row["delta_W"] == pytest.approx(np.linalg.norm(w1 - w2), rel=1e-12)
    b1, b2 = m1[1].bias.detach().double().numpy(), m2[1].bias.detach().double().numpy()
    assert row["delta_b"] == pytest.approx(np.linalg.norm(b1 - b2), rel=1e-12)
    assert np.isnan(raw.set_index("longname").loc["5", "delta_b"])  # no bias
    # CKA: 1 for a model against a rotated and scaled copy of itself, < 1 otherwise
    rotated = copy.deepcopy(m1)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((24, 24)))
    with torch.no_grad():
        rotated[1].weight.copy_(torch.from_numpy(3.0 * w1 @ q))  # rows are the samples
    cka = hts_fast.distances(m1, rotated, "cka", layers=[2]).iloc[0]["delta_W"]
    assert cka == pytest.approx(1.0, abs=1e-6)  # float32 weights
    assert hts_fast.distances(m1, m2, "cka", layers=[2]).iloc[0]["delta_W"] < 0.9
    with pytest.raises(ValueError, match="method must be"):
        hts_fast.distances(m1, m2, "cosine")
