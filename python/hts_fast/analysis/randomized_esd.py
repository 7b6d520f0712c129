"""``analyze(esd_method="randomized")``: which layers get a certified top-k ESD
(:func:`hts_fast.spectra.randomized.certified_spectrum`), and the metric columns that a top-k
cannot give."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..spectra.esd import esd_batch
from ..spectra.exact import tagged
from ..spectra.randomized import certified_spectrum

#: Columns analyze() cannot compute from a top-k ESD (NaN, or -1 for counts).
UNAVAILABLE_FLOAT = ("entropy", "sv_min", "log_alpha_norm")
UNAVAILABLE_INT = ("matrix_rank", "rank_loss", "weak_rank_loss")
#: analyze(): layers whose smaller side is below this get the exact svd ESD (cheap enough).
EXACT_BELOW = 1024
#: Where analyze() keeps a layer's CertifiedSpectrum (in its plan's ``extra``).
EXTRA_KEY = "_randomized_esd"


def check_options(**options: Any) -> None:
    """Reject analyze() options that need the whole spectrum (or WeightWatcher's svd)."""
    bad = [f"{name}={value!r}" for name, value in options.items()
           if value not in (None, False, "PL")]  # fmt: skip
    if bad:
        msg = (f"esd_method='randomized' computes only the top of each ESD; it cannot be "
               f"combined with {', '.join(bad)} (use esd_method='svd' or 'gram')")  # fmt: skip
        raise ValueError(msg)


def layer_spectra(
    owners: list[Any], matrices: list[np.ndarray], scales: list[float], *, threads: int,
    seed: int | None,
) -> list[Any]:  # fmt: skip
    """Each matrix's ESD for analyze(esd_method="randomized"), as esd_batch returns them.

    A layer of one matrix whose smaller side is at least EXACT_BELOW gets its certified
    top-k (:func:`certified_spectrum`, recorded in ``plan.extra[EXTRA_KEY]``); every other
    matrix (small ones, conv2d slices, LoRA products) gets the exact svd ESD.
    """
    spectra: list[Any] = [None] * len(matrices)
    certified: list[tuple[Any, int]] = []
    exact: list[int] = []
    for plan, first, count, keep_top in owners:
        big = count == 1 and keep_top is None and min(matrices[first].shape) >= EXACT_BELOW
        if big:
            certified.append((plan, first))
        else:
            exact.extend(range(first, first + count))
    if exact:
        values = esd_batch([matrices[i] for i in exact], method="svd",
                           scales=[scales[i] for i in exact], threads=threads,
                           on_error="return")  # fmt: skip
        for i, value in zip(exact, values, strict=True):
            spectra[i] = value

    def one(item: tuple[Any, int]) -> Any:
        plan, i = item
        try:
            result = certified_spectrum(matrices[i], scale=scales[i], seed=seed or 0)
        except (TypeError, ValueError, RuntimeError) as exc:
            return tagged(type(exc)(f"matrix {i}: {exc}"), f"matrix {i}")
        plan.extra[EXTRA_KEY] = result
        return result.spectrum.values

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for (_, i), value in zip(certified, pool.map(one, certified), strict=True):
            spectra[i] = value
    return spectra


def patch_columns(pooled: list[Any], columns: dict[str, Any]) -> None:
    """Correct the metric columns of layers whose ESD is a top-k: norm, log_norm and
    stable_rank from the exact Frobenius norm, num_evals the whole ESD's length; the columns
    that need every eigenvalue become NaN (-1 for counts) with a note in status_reason."""
    for k, (plan, _, _) in enumerate(pooled):
        result = plan.extra.get(EXTRA_KEY)
        if result is None or result.spectrum.complete:
            continue
        spec = result.spectrum
        columns["norm"][k] = spec.frobenius_sq
        columns["log_norm"][k] = math.log10(spec.frobenius_sq)
        columns["stable_rank"][k] = spec.frobenius_sq / spec.values[-1]
        columns["num_evals"][k] = spec.n_evals
        for col in UNAVAILABLE_FLOAT:
            columns[col][k] = math.nan
        for col in UNAVAILABLE_INT:
            columns[col][k] = -1
        note = (f"randomized ESD: top {len(spec.values)} of {spec.n_evals} eigenvalues "
                f"(k tried: {', '.join(map(str, result.ks))}); "
                f"{', '.join(UNAVAILABLE_FLOAT + UNAVAILABLE_INT)} not available")  # fmt: skip
        reason = columns["status_reason"][k]
        columns["status_reason"][k] = f"{reason}; {note}" if reason else note
