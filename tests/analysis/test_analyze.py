"""analyze() default mode: WeightWatcher's conventions with its bugs fixed, and bad input."""

from __future__ import annotations

import math

import hts_fast
import numpy as np
import pytest
from hts_fast.analysis.layers import discover_layers
from hts_fast.analysis.planning import Planned
from hts_fast.analysis.table import EXTRA_COLUMNS, WW_COLUMNS

torch = pytest.importorskip("torch")


def test_columns_and_dtypes():
    rng = np.random.default_rng(0)
    df = hts_fast.analyze(
        [("a", rng.standard_normal((60, 40))), ("b", rng.standard_normal((30, 50)))]
    )
    assert list(df.columns) == WW_COLUMNS + EXTRA_COLUMNS
    assert list(df["layer_id"]) == [0, 1]
    assert df["num_evals"].dtype == np.int64
    assert df["alpha"].dtype == np.float64
    assert df["has_esd"].dtype == bool
    assert (df["status"] == "success").all()


def test_rows_equal_the_building_blocks():
    rng = np.random.default_rng(1)
    w = rng.standard_t(3, size=(120, 80)).astype(np.float32)
    row = hts_fast.analyze({"layer.weight": w}).iloc[0]
    evals = hts_fast.esd(w)
    fit = hts_fast.fit_powerlaw(evals)
    assert row["alpha"] == fit.alpha
    assert row["xmin"] == fit.xmin
    assert row["D"] == fit.D
    assert row["lambda_max"] == evals[-1]
    assert row["norm"] == pytest.approx(float(np.sum(w.astype(np.float64) ** 2)), rel=1e-12)
    assert row["alpha_weighted"] == pytest.approx(fit.alpha * math.log10(evals[-1]), rel=1e-14)
    assert row["stable_rank"] == pytest.approx(evals.sum() / evals[-1], rel=1e-14)
    assert row["sv_min"] == pytest.approx(math.sqrt(evals[0]), rel=1e-14)
    assert row["matrix_rank"] == 80
    p = evals / evals.sum()
    assert row["entropy"] == pytest.approx(-np.sum(p * np.log(p)) / math.log(80), rel=1e-12)


def _conv_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(64, 16, (2, 2)), torch.nn.Conv2d(8, 16, 3))


def test_conv2d_orientation_fixed_by_default():
    model = _conv_model()
    default = hts_fast.analyze(model)
    compat = hts_fast.analyze(model, compat="weightwatcher-0.7.7")
    assert (default.loc[0, "N"], default.loc[0, "M"]) == (64, 16)  # N >= M
    assert (compat.loc[0, "N"], compat.loc[0, "M"]) == (16, 64)  # WeightWatcher's toggle
    # same eigenvalues, so the same fit
    assert default.loc[0, "alpha"] == compat.loc[0, "alpha"]


def test_sv_min_is_the_true_smallest_singular_value():
    model = _conv_model()
    w = model[1].weight.detach().numpy()
    slices = [np.sqrt(hts_fast.esd(w[:, :, i, j], scale=math.sqrt(0.5))) for i in range(3)
              for j in range(3)]  # fmt: skip
    default = hts_fast.analyze(model).iloc[1]
    compat = hts_fast.analyze(model, compat="weightwatcher-0.7.7").iloc[1]
    assert default["sv_min"] == pytest.approx(min(s[0] for s in slices), rel=1e-14)
    assert compat["sv_min"] == pytest.approx(max(s[0] for s in slices), rel=1e-14)


def test_failed_fit_is_labelled_failed_not_over_trained():
    model = torch.nn.Sequential(torch.nn.Linear(20, 20))
    with torch.no_grad():
        model[0].weight.zero_()
    row = hts_fast.analyze(model).iloc[0]
    assert row["status"] == "failed"
    assert row["warning"] == "failed"
    assert math.isnan(row["alpha"])
    assert "fewer than 2" in row["status_reason"] or "only 0 eigenvalue" in row["status_reason"]


def test_skipped_layers_are_reported_with_reasons():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.LayerNorm(32),
                                torch.nn.Linear(32, 4), torch.nn.ReLU())  # fmt: skip
    df = hts_fast.analyze(model)
    skipped = df.attrs["skipped"].set_index("layer_id")["skip_reason"].to_dict()
    assert skipped == {
        0: "no weight",
        2: "normalization layers are not analyzed",
        3: "too few eigenvalues: M*rf = 4 < min_evals = 8",
        4: "no weight",
    }
    table = hts_fast.describe(model)
    assert list(table["analyzed"]) == [False, True, False, False, False]
    assert table.loc[1, "num_evals"] == 32


def test_tied_weights_counted_once_by_default():
    torch.manual_seed(2)
    emb = torch.nn.Embedding(64, 16)
    head = torch.nn.Linear(16, 64, bias=False)
    head.weight = emb.weight
    model = torch.nn.Sequential(emb, head)
    df = hts_fast.analyze(model)
    assert list(df["layer_id"]) == [1]
    assert "shares its weight with layer 1" in df.attrs["skipped"].iloc[-1]["skip_reason"]


def test_conv1d_kernels_are_analyzed_as_slices_by_default():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Conv1d(16, 32, 3))
    row = hts_fast.analyze(model).iloc[0]
    w = model[0].weight.detach().numpy()
    expected = np.sort(np.concatenate([hts_fast.esd(w[:, :, k]) for k in range(3)]))
    assert (row["N"], row["M"], row["rf"], row["num_evals"]) == (32, 16, 3, 48)
    assert row["lambda_max"] == expected[-1]
    assert row["alpha"] == hts_fast.fit_powerlaw(expected).alpha
    assert hts_fast.analyze(model, compat="weightwatcher-0.7.7").empty  # M = 3 in WW


def test_gram_route_agrees_with_svd_route():
    torch.manual_seed(4)
    model = torch.nn.Sequential(torch.nn.Linear(300, 200), torch.nn.Conv2d(32, 64, 3))
    a = hts_fast.analyze(model, esd_method="svd")
    b = hts_fast.analyze(model, esd_method="gram")
    for col in ("alpha", "D", "xmin", "lambda_max", "norm", "log_alpha_norm", "entropy",
                "stable_rank", "alpha_weighted"):  # fmt: skip
        np.testing.assert_allclose(b[col], a[col], rtol=1e-9, err_msg=col)
    assert list(b["esd_method"]) == ["gram", "gram"]


def test_threads_do_not_change_results():
    torch.manual_seed(5)
    model = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(6)])
    one = hts_fast.analyze(model, threads=1)
    two = hts_fast.analyze(model, threads=2)
    assert one.equals(two)


def test_summary_means():
    rng = np.random.default_rng(6)
    df = hts_fast.analyze({f"l{k}.weight": rng.standard_normal((50, 40)) for k in range(3)})
    s = hts_fast.summary(df)
    assert s["alpha"] == pytest.approx(df["alpha"].mean())
    assert set(s) == {"log_norm", "alpha", "alpha_weighted", "log_alpha_norm",
                      "log_spectral_norm", "stable_rank"}  # fmt: skip


@pytest.mark.parametrize(
    ("weight", "reason"),
    [
        (lambda: torch.full((20, 10), float("nan")), "NaN or Inf"),
        (lambda: torch.ones(20, 10, dtype=torch.complex64), "not a real floating-point"),
        (lambda: torch.ones(20, 10, dtype=torch.int32), "not a real floating-point"),
        (lambda: torch.empty(20, 10, device="meta"), "meta tensor"),
        (lambda: torch.eye(20, 10).to_sparse(), "sparse"),
        (lambda: np.array([["a"] * 10] * 20), "unsupported dtype"),
    ],
)
def test_bad_weights_fail_their_layer_only(weight, reason):
    rng = np.random.default_rng(7)
    good = rng.standard_normal((30, 20)).astype(np.float32)
    state = {"good.weight": good, "bad.weight": weight(), "good2.weight": good * 2}
    df = hts_fast.analyze(state)
    assert list(df["status"]) == ["success", "failed", "success"]
    assert reason in df.loc[1, "status_reason"]
    assert not df.loc[1, "has_esd"]


def test_zero_size_and_one_row_matrices():
    state = {"empty.weight": np.zeros((0, 5)), "row.weight": np.ones((1, 30)),
             "zero.weight": np.zeros((12, 12))}  # fmt: skip
    df = hts_fast.analyze(state, min_evals=0)
    skipped = df.attrs["skipped"].set_index("name")["skip_reason"]
    assert skipped["empty"] == "layer type unknown"  # first dimension < 2 (WeightWatcher)
    assert skipped["row"] == "layer type unknown"
    assert df.set_index("name").loc["zero", "status"] == "failed"


def test_unsupported_model_type():
    with pytest.raises(TypeError, match=r"expected a torch.nn.Module, a state dict"):
        hts_fast.analyze(42)
    with pytest.raises(TypeError, match="not a \\(name, array\\) pair"):
        hts_fast.analyze([np.ones((3, 3))])
    with pytest.raises(ValueError, match="compat must be"):
        hts_fast.analyze({}, compat="ww")


def test_chunked_reading_gives_the_same_table(monkeypatch):
    import importlib

    module = importlib.import_module("hts_fast.analysis.pipeline")
    rng = np.random.default_rng(8)
    state = {f"l{k}.weight": rng.standard_normal((40 + k, 30)) for k in range(7)}
    whole = hts_fast.analyze(state, threads=2)
    monkeypatch.setattr(module, "CHUNK_MIN_BYTES", 10_000)  # about one layer per chunk
    chunked = hts_fast.analyze(state, threads=2)
    chunks = module._chunks([Planned(layer, None) for layer in discover_layers(state)], 2)
    assert len(chunks) == 4  # two layers (one per thread) per chunk
    assert whole.equals(chunked)
    # a bad layer in a prefetched chunk fails alone
    state["l3.weight"] = np.full((43, 30), np.nan)
    with_nan = hts_fast.analyze(state, threads=2)
    assert list(with_nan["status"]) == ["success"] * 3 + ["failed"] + ["success"] * 3
    assert with_nan.drop(index=3).equals(whole.drop(index=3))


_OPTION_SETS = [{}, {"esd_method": "gram"}, {"mp_fit": True}, {"fit": "TPL"}, {"detX": True},
                {"randomize": True, "seed": 3}]  # fmt: skip


@pytest.mark.parametrize(
    ("compat", "options"),
    [*((None, o) for o in [*_OPTION_SETS, {"alpha_ci": True, "seed": 1}]),
     *(("weightwatcher-0.7.7", o) for o in _OPTION_SETS)],
)  # fmt: skip
def test_result_frames_are_independent(compat, options):
    """Reshaping and writing one result leaves the next analyze() result as it was, for the
    option sets that add columns (alpha_ci is ours: default mode only)."""
    if compat and options.get("fit") == "TPL":
        options = {**options, "fit": "E_TPL"}
    rng = np.random.default_rng(11)
    state = {"conv.weight": rng.standard_t(3, (16, 8, 3, 3)).astype(np.float32),
             "dense.weight": rng.standard_t(4, (90, 60)),
             "small.weight": rng.standard_normal((12, 9))}  # fmt: skip
    first = hts_fast.analyze(state, compat=compat, **options)
    other = hts_fast.analyze(state, compat=compat, **options)
    pd = pytest.importorskip("pandas")
    pd.testing.assert_frame_equal(first, other, check_exact=True)
    assert first.attrs["skipped"].equals(other.attrs["skipped"])
    first.insert(1, "extra", 1.0)
    first.loc[0, "alpha"] = -7.0
    first.index.name, first.columns.name = "row", "column"
    first = first.drop(columns=["name"])
    again = hts_fast.analyze(state, compat=compat, **options)
    pd.testing.assert_frame_equal(again, other, check_exact=True)
    assert (again.index.name, again.columns.name) == (None, None)


@pytest.mark.parametrize(
    ("fit", "name"),
    [("PL", "power-law"), ("TPL", "truncated power-law"), ("E_TPL", "E-TPL"), ("EXP", "EXP")],
)
def test_a_failed_fit_is_named_by_its_kind(fit, name):
    """A constant spectrum fails every fit; status_reason names the fit that failed."""
    rng = np.random.default_rng(0)
    flat = np.ones((40, 40)) + 1e-9 * rng.standard_normal((40, 40))
    row = hts_fast.analyze({"flat.weight": flat}, fit=fit).iloc[0]
    assert row["status"] == "failed"
    assert row["status_reason"].startswith(f"{name} fit failed: ")
