"""analysis.layer_spectra (ESDs + pooling + fit per layer in one compiled pass) equals the separate
steps: esd_batch, np.sort of the concatenation, fit_powerlaw_batch, batch_slice_stats."""

from __future__ import annotations

import numpy as np
import pytest
from hts_fast._core_loader import core
from hts_fast.analysis.layer_spectra import (
    LayerSpectraTable,
    expand_stacks,
    layer_spectra,
    layer_spectra_table,
)
from hts_fast.analysis.metrics import LayerSliceStats, batch_slice_stats
from hts_fast.fits.powerlaw import fit_powerlaw_batch
from hts_fast.spectra.esd import esd_batch


def _batch():
    rng = np.random.default_rng(7)
    conv = rng.standard_t(3.0, (24, 16, 3, 3)).astype(np.float32)
    matrices = [conv[:, :, i, j] for i in range(3) for j in range(3)]  # strided views
    matrices += [rng.standard_t(4.0, (200, 60)), rng.normal(size=(30, 90)).astype(np.float16)]
    matrices += [rng.normal(size=(3, 40, 20))[k] for k in range(3)]  # pooled, top 20 kept
    bad = rng.normal(size=(20, 10))
    bad[2, 3] = np.inf
    matrices += [bad, rng.normal(size=(12, 12))]
    layers = [(0, 9, None), (9, 1, None), (10, 1, None), (11, 3, 20), (14, 2, None)]
    Ns = [24.0, 200.0, 90.0, 40.0, 20.0]
    scales = [0.5**0.5] * 9 + [1.0] * 7
    return matrices, scales, layers, Ns


@pytest.mark.parametrize("method", ["svd", "gram"])
@pytest.mark.parametrize("threads", [1, 2])
def test_equals_the_separate_steps(method, threads):
    matrices, scales, layers, Ns = _batch()
    fused = layer_spectra(matrices, scales, layers, Ns, method=method, threads=threads)
    spectra = esd_batch(matrices, method=method, scales=scales, on_error="return")
    for (first, count, keep), N, got in zip(layers, Ns, fused, strict=True):
        parts = spectra[first : first + count]
        if any(isinstance(p, Exception) for p in parts):
            assert isinstance(got, ValueError)
            assert "NaN or Inf" in str(got)
            assert got.detail.startswith(" (shape (20, 10))")
            continue
        pooled = np.sort(np.concatenate(parts)) if count > 1 else parts[0]
        if keep is not None:
            pooled = pooled[-keep:]
            parts = [pooled]
        evals, stats, fit, norms = got
        np.testing.assert_array_equal(evals, pooled)
        assert fit == fit_powerlaw_batch([pooled])[0]
        alpha = fit.alpha if fit.status == "success" else np.nan
        expected_norms = core.norm_metrics_batch([pooled], [N], [alpha], 1e-6, False, 1)
        assert norms == tuple(values[0] for values in expected_norms)
        owner = np.zeros(len(parts), dtype=np.intp)
        for compat in (False, True):
            expected = batch_slice_stats(parts, owner, np.array([N]), 1, compat=compat)
            got_stats = LayerSliceStats.columns([stats], compat=compat)
            for key, value in expected.items():
                np.testing.assert_array_equal(got_stats[key], value)


def test_a_matrix_that_cannot_be_read_fails_only_its_layer():
    rng = np.random.default_rng(1)
    good = rng.normal(size=(30, 20))
    results = layer_spectra([good, np.zeros((0, 4)), good], [1.0] * 3,
                            [(0, 1, None), (1, 1, None), (2, 1, None)], [30, 4, 30])  # fmt: skip
    assert isinstance(results[1], ValueError)
    assert "empty" in str(results[1])
    np.testing.assert_array_equal(results[0][0], results[2][0])


def test_arrays_the_kernels_cannot_read_are_converted_or_fail_their_layer():
    rng = np.random.default_rng(2)
    good = rng.normal(size=(30, 20))
    swapped = good.astype(">f8")  # foreign byte order: converted, same numbers
    integers = rng.integers(0, 5, size=(30, 20))  # not floating point: that layer fails
    results = layer_spectra([good, swapped, integers, good], [1.0] * 4,
                            [(0, 1, None), (1, 1, None), (2, 1, None), (3, 1, None)],
                            [30] * 4)  # fmt: skip
    np.testing.assert_array_equal(results[1][0], results[0][0])
    assert isinstance(results[2], TypeError)
    assert "matrix 2" in str(results[2])
    np.testing.assert_array_equal(results[3][0], results[0][0])


def _stacked_batch():
    """_batch() with the conv kernel's nine positions as one 3-D stack entry (one scale)."""
    matrices, scales, layers, Ns = _batch()
    stack = np.stack(matrices[:9])  # (9, 24, 16), a fresh array
    stack_view = np.moveaxis(np.asarray(matrices[0].base), (2, 3), (0, 1)).reshape(9, 24, 16)
    return [stack_view, *matrices[9:]], [scales[0], *scales[9:]], layers, Ns, stack


@pytest.mark.parametrize("threads", [1, 2])
def test_a_3d_stack_entry_stands_for_its_slices(threads):
    matrices, scales, layers, Ns = _batch()
    entries, entry_scales, _, _, stack = _stacked_batch()
    np.testing.assert_array_equal(entries[0], stack)  # the view holds the nine matrices
    expected = layer_spectra_table(matrices, scales, layers, Ns, threads=threads)
    got = layer_spectra_table(entries, entry_scales, layers, Ns, threads=threads)
    np.testing.assert_array_equal(got.reals, expected.reals)
    np.testing.assert_array_equal(got.counts, expected.counts)
    assert sorted(got.errors) == sorted(expected.errors) == [4]
    assert str(got.errors[4]) == str(expected.errors[4])  # "matrix 14": expanded numbering
    for a, b in zip(got.pooled, expected.pooled, strict=True):
        assert (a is None and b is None) or np.array_equal(a, b)
    flat, flat_scales = expand_stacks(entries, entry_scales)
    assert len(flat) == len(matrices)
    assert flat_scales == scales
    for a, b in zip(flat, matrices, strict=True):
        np.testing.assert_array_equal(a, b)


def test_an_unreadable_3d_stack_is_converted_like_its_slices():
    entries, entry_scales, layers, Ns, _ = _stacked_batch()
    expected = layer_spectra_table(entries, entry_scales, layers, Ns)
    swapped = [entries[0].astype(">f4"), *entries[1:]]  # foreign byte order: converted
    got = layer_spectra_table(swapped, entry_scales, layers, Ns)
    np.testing.assert_array_equal(got.reals[0], expected.reals[0])
    integers = [np.zeros((9, 24, 16), dtype=np.int32), *entries[1:]]  # fails its layer only
    failed = layer_spectra_table(integers, entry_scales, layers, Ns)
    assert isinstance(failed.errors[0], TypeError)
    assert failed.pooled[0] is None
    np.testing.assert_array_equal(failed.reals[1:3], expected.reals[1:3])


def test_the_table_columns_match_the_binding():
    """The binding's two arrays have exactly LayerSpectraTable.REALS / COUNTS columns, and the
    named columns hold what the per-layer accessors return."""
    matrices, scales, layers, Ns = _batch()
    table = layer_spectra_table(matrices, scales, layers, Ns)
    assert table.reals.shape == (len(layers), len(LayerSpectraTable.REALS))
    assert table.counts.shape == (len(layers), len(LayerSpectraTable.COUNTS))
    fit = table.fit(1)
    assert table.real("alpha")[1] == fit.alpha
    assert table.count("num_pl_spikes")[1] == fit.num_pl_spikes
    assert table.count("num_evals")[1] == len(table.pooled[1])
    assert table.real("lambda_max")[1] == table.pooled[1][-1]


@pytest.mark.parametrize("compat", [False, True])
def test_fit_columns_from_the_table_equal_those_from_fit_objects(compat):
    """analyze's fused path (table_fit_columns on the arrays) and its other paths (fit_columns
    on PowerLawFit objects) give the same columns, a failed fit and a small-n fit included."""
    from hts_fast.analysis.table import fit_columns, table_fit_columns

    rng = np.random.default_rng(3)
    matrices = [
        rng.standard_t(3.0, (200, 60)),  # a standard fit
        np.outer(np.arange(1.0, 7.0), np.arange(1.0, 5.0)),  # rank 1: the fit fails
        rng.normal(size=(30, 12)),
    ]  # 12 eigenvalues: WeightWatcher's small-n rule
    layers = [(0, 1, None), (1, 1, None), (2, 1, None)]
    table = layer_spectra_table(matrices, [1.0] * 3, layers, [200.0, 6.0, 30.0],
                                compat=compat)  # fmt: skip
    fits = table.fits()
    assert [f.status for f in fits] == ["success", "failed", "success"]
    assert fits[2].method == "small_n"
    ours, theirs = table_fit_columns(table, compat=compat), fit_columns(fits, compat=compat)
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        np.testing.assert_array_equal(np.asarray(ours[key]), np.asarray(value), err_msg=key)
    assert ours["warning"][1] == ("over-trained" if compat else "failed")
    if compat:
        assert ours["alpha"][1] == -1.0
    else:
        assert np.isnan(ours["alpha"][1])
    assert ours["status_reason"][1].startswith("power-law fit failed: only 1 eigenvalue")
    assert ours["num_pl_spikes"][1] == -1
    # without the failed fit: the shortcut of the usual case gives the same columns too,
    # also with a small-n fit of fewer than 8 values (compat: WeightWatcher's sigma)
    few = rng.normal(size=(12, 6))  # 6 eigenvalues
    for extra in (matrices[2], few):
        table = layer_spectra_table([matrices[0], extra], [1.0] * 2, [(0, 1, None), (1, 1, None)],
                                    [200.0, 30.0], compat=compat)  # fmt: skip
        ours, theirs = table_fit_columns(table, compat=compat), fit_columns(table.fits(),
                                                                            compat=compat)  # fmt: skip
        assert ours.keys() == theirs.keys()
        for key, value in theirs.items():
            np.testing.assert_array_equal(np.asarray(ours[key]), np.asarray(value), err_msg=key)
    assert ours["sigma"][1] == (-1.0 / np.sqrt(6) if compat else table.fits()[1].sigma)


def test_without_the_pooled_esds_the_numbers_are_the_same():
    """keep_pooled=False (analyze() without options that reread the spectra) returns None
    for every pooled ESD and the very same table."""
    matrices, scales, layers, Ns = _batch()
    kept = layer_spectra_table(matrices, scales, layers, Ns)
    dropped = layer_spectra_table(matrices, scales, layers, Ns, keep_pooled=False)
    assert dropped.pooled == [None] * len(layers)
    assert any(p is not None for p in kept.pooled)
    np.testing.assert_array_equal(dropped.reals, kept.reals)
    np.testing.assert_array_equal(dropped.counts, kept.counts)
    assert dropped.errors.keys() == kept.errors.keys()
