"""The fits analyze() runs on pooled ESDs for its options other than the plain power law:
fix_fingers, TPL/E_TPL, EXP/LOGNORMAL, and the bootstrap interval of alpha (alpha_ci)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from ..fits.powerlaw import DEFAULT_THRESHOLD, PowerLawFit, fit_powerlaw_batch
from .planning import Planned
from .table import ALPHA_CI_COLUMNS, ALT_FIT_COLUMNS, TPL_COLUMNS, TPL_STATUS_COLUMN
from .xmax import Xmax, cdf_xmax

#: resamples per layer for alpha_ci
ALPHA_CI_RESAMPLES = 1000


def check_alpha_ci(alpha_ci: Any, opt: Any) -> float | None:
    """The interval's level (True: 0.95), or None; only for the plain power-law fit."""
    if alpha_ci is False or alpha_ci is None:
        return None
    level = 0.95 if alpha_ci is True else float(alpha_ci)
    if not 0 < level < 1:
        msg = f"alpha_ci must be True, False or a level in (0, 1), got {alpha_ci!r}"
        raise ValueError(msg)
    if opt.fit != "PL" or opt.fix_fingers or opt.xmax not in (None, "force"):
        msg = "alpha_ci bootstraps the plain power-law fit: use it with fit='PL', no fix_fingers"
        raise ValueError(msg)
    return level


def alpha_ci_columns(
    pooled: list[tuple[Planned, np.ndarray, Any]], fits: list[PowerLawFit], level: float,
    seed: int | None, threads: int,
) -> dict[str, list[float]]:  # fmt: skip
    """Bootstrap interval of each fitted layer's alpha; layer k's resamples are seeded by
    (seed, layer_id), so a layer's interval does not depend on the other layers."""
    from ..fits.bootstrap import bootstrap_alpha

    out: dict[str, list[float]] = {col: [] for col in ALPHA_CI_COLUMNS}
    for (plan, evals, _), fit in zip(pooled, fits, strict=True):
        low = high = math.nan
        if fit.status == "success":
            state = np.random.SeedSequence([seed or 0, plan.layer.layer_id]).generate_state(1)
            interval = bootstrap_alpha(evals, resamples=ALPHA_CI_RESAMPLES, level=level,
                                       seed=int(state[0]), threads=threads)  # fmt: skip
            low, high = interval.low, interval.high
        out["alpha_ci_low"].append(low)
        out["alpha_ci_high"].append(high)
    return out


#: WeightWatcher's clip_xmax constants: a clipped fit wins when alpha drops by more than
#: FINGER_THRESHOLD; the search stops once alpha <= FINGER_MIN_ALPHA.
FINGER_THRESHOLD, FINGER_MIN_ALPHA = 1.0, 2.0


def clipped_fits(
    pooled: list[tuple[Planned, np.ndarray, list[np.ndarray]]], max_fingers: int,
    compat: str | None, threads: int,
) -> tuple[list[PowerLawFit], list[float], list[int]]:  # fmt: skip
    """fix_fingers="clip_xmax": every layer's fit with its largest eigenvalues clipped."""
    arrays: list[np.ndarray] = []
    plans = []  # per layer: (first index in arrays, number of fingers tried)
    for _, evals, _ in pooled:
        x = evals[evals > DEFAULT_THRESHOLD]
        limit = max_fingers
        if compat and (max_fingers < 0 or max_fingers < len(evals) / 2):
            limit = 10  # WeightWatcher resets it unless it is >= half the ESD
        plans.append((len(arrays), limit))
        arrays.append(x)
        arrays.extend(x[:-idx] for idx in range(2, max(limit, 2)) if idx < len(x))
    fits = fit_powerlaw_batch(arrays, threads=threads)
    rows, raw, fingers = [], [], []
    for (_, evals, _), (first_at, limit) in zip(pooled, plans, strict=True):
        first = fits[first_at]
        best, count, failed = first, 0, first.status != "success" or limit <= 2
        idx = 1
        for idx in range(2, limit):
            k = first_at + idx - 1
            trial = fits[k] if idx < len(arrays[first_at]) else None
            if trial is None or trial.status != "success":
                failed = True
                break
            if trial.alpha + FINGER_THRESHOLD < first.alpha:
                best, count = trial, (idx - 1 if compat else idx)
                break
            if trial.alpha <= FINGER_MIN_ALPHA:
                break
        if compat and len(arrays[first_at]) - (idx + 3) < 2:
            failed = True  # WeightWatcher's check refits of the 3 next clippings would raise
        if failed and not compat and first.status == "success":
            best, count, failed = first, 0, False  # nothing could be clipped: the raw fit
        if failed:
            rows.append(PowerLawFit.failed("clip_xmax: a clipped fit failed"))
            raw.append(first.alpha if first.status == "success" else math.nan)
            fingers.append(-1)
            continue
        # the spikes are counted on the whole ESD, xmax is the clipped one's
        spikes = int(len(evals) - np.searchsorted(evals, best.xmin, side="left"))
        rows.append(replace(best, num_pl_spikes=spikes))
        raw.append(first.alpha)
        fingers.append(count)
    return rows, raw, fingers


def peak_fits(
    pooled: list[tuple[Planned, np.ndarray, list[np.ndarray]]], compat: str | None,
    threads: int,
) -> list[PowerLawFit]:  # fmt: skip
    """fix_fingers="xmin_peak": the power-law fit with xmin restricted to the peak's range."""
    from ..fits.tpl_search import peak_candidate

    if compat:  # WeightWatcher hands WWFit a (low, high) xmin and the fit fails
        reason = "fix_fingers='xmin_peak' needs the powerlaw package in WeightWatcher 0.7.7"
        return [PowerLawFit.failed(reason) for _ in pooled]
    rows = []
    for _, evals, _ in pooled:
        x = evals[evals > DEFAULT_THRESHOLD]
        found = peak_candidate(x, threads=threads)
        if isinstance(found, str):
            rows.append(PowerLawFit.failed(found))
            continue
        curve, k = found
        xmin = float(curve.xmins[k])
        rows.append(PowerLawFit(alpha=float(curve.alphas[k]), xmin=xmin, xmax=float(x[-1]),
                                D=float(curve.Ds[k]), sigma=float(curve.sigmas[k]),
                                num_pl_spikes=int(len(x) - k), num_fit=len(x),
                                method="xmin_peak", status="success",
                                xmin_index=k))  # fmt: skip
    return rows


def check_tpl_alpha_min(value: Any, *, fit: str, compat: str | None) -> None:
    """analyze()'s tpl_alpha_min: None or a number in the fit's range
    (hts_fast.fits.truncated.check_alpha_min), other than the default only with fit="TPL" or
    "E_TPL" and not in compat (which keeps WeightWatcher's filter on unconstrained fits)."""
    from ..fits.truncated import TPL_ALPHA_MIN, check_alpha_min

    check_alpha_min(value)
    if value == TPL_ALPHA_MIN and value is not None:
        return
    if fit not in ("TPL", "E_TPL"):
        msg = "tpl_alpha_min bounds the truncated power law: use it with fit='TPL' or 'E_TPL'"
        raise ValueError(msg)
    if compat:
        msg = (f"compat={compat!r} reproduces WeightWatcher 0.7.7's TPL (unconstrained fits, a "
               f"candidate kept when alpha > 1): leave tpl_alpha_min at {TPL_ALPHA_MIN:g}")  # fmt: skip
        raise ValueError(msg)


def tpl_fits(
    pooled: list[tuple[Planned, np.ndarray, list[np.ndarray]]], fit: str, compat: str | None,
    threads: int, xmax: Xmax = None, alpha_min: float | None = None,
) -> tuple[list[PowerLawFit], dict[str, list[Any]]]:  # fmt: skip
    """Truncated power-law fits of every ESD as PowerLawFit rows (sigma NaN), and their
    Lambda, status, log-likelihood and standard-error columns (TPL_COLUMNS); fit_method
    records the E_TPL range variant. ``xmax``: see hts_fast.analysis.xmax. ``alpha_min``: the
    lower bound of alpha in every candidate's fit (None: unconstrained); compat ignores it and
    applies WeightWatcher's filter (alpha > 1) to unconstrained fits."""
    from ..fits.tpl_search import fit_truncated_powerlaw

    variant = ("weightwatcher-0.7.7" if compat else "corrected") if fit == "E_TPL" else None
    label = f"E_TPL[{variant}]" if variant else "TPL"
    rows: list[PowerLawFit] = []
    extra: dict[str, list[Any]] = {col: [] for col in ("Lambda", *TPL_COLUMNS)}
    for _, evals, _ in pooled:
        search = fit_truncated_powerlaw(evals, variant=variant, threads=threads,
                                        alpha_above_one=bool(compat),
                                        cdf_xmax=cdf_xmax(evals, xmax, compat),
                                        alpha_min=None if compat else alpha_min)  # fmt: skip
        tpl = search.fit
        if tpl.status == "failed":
            rows.append(PowerLawFit.failed(tpl.reason))
            for col, values in extra.items():
                values.append("" if col == TPL_STATUS_COLUMN else math.nan)
            continue
        index = int(np.searchsorted(evals, tpl.xmin))
        rows.append(PowerLawFit(alpha=tpl.alpha, xmin=tpl.xmin, xmax=float(evals[-1]), D=tpl.D,
                                sigma=math.nan, num_pl_spikes=tpl.n, num_fit=tpl.n,
                                method=label, status="success", reason="",
                                xmin_index=index))  # fmt: skip
        for col, value in (("Lambda", tpl.Lambda), (TPL_STATUS_COLUMN, tpl.status),
                           ("loglik", tpl.loglik), ("alpha_se", tpl.alpha_se),
                           ("Lambda_se", tpl.Lambda_se)):  # fmt: skip
            extra[col].append(value)
    return rows, extra


def alternative_fits(
    pooled: list[tuple[Planned, np.ndarray, Any]], fit: str, threads: int
) -> tuple[list[PowerLawFit], dict[str, list[float]]]:  # fmt: skip
    """Exponential (xmin by KS) or lognormal (above the power law's xmin) fits as PowerLawFit
    rows (alpha and sigma NaN) and their own columns (ALT_FIT_COLUMNS)."""
    from ..fits.alternatives import fit_exponential_batch, fit_lognormal

    rows: list[PowerLawFit] = []
    columns: dict[str, list[float]] = {col: [] for col in ALT_FIT_COLUMNS[fit]}
    if fit == "EXP":
        columns["Lambda"] = []
    spectra = [evals for _, evals, _ in pooled]
    # EXP: the exponential fits themselves; LOGNORMAL: the power-law fits whose xmin it takes
    first = (fit_exponential_batch(spectra, threads=threads) if fit == "EXP"
             else fit_powerlaw_batch(spectra, threads=threads))  # fmt: skip
    for (_, evals, _), pl in zip(pooled, first, strict=True):
        if fit == "EXP":
            result: Any = pl
            values = {"Lambda": result.Lambda, "loglik": result.loglik,
                      "Lambda_se": result.Lambda_se}  # fmt: skip
        elif pl.status != "success":
            result = None
            values = {}
        else:
            result = fit_lognormal(evals, pl.xmin)
            values = {"lognormal_mu": result.mu, "lognormal_sigma": result.sigma,
                      "loglik": result.loglik}  # fmt: skip
        for col, out in columns.items():
            out.append(values.get(col, math.nan))
        if result is None or result.status != "success":
            reason = result.reason if result is not None else f"power-law fit: {pl.reason}"
            rows.append(PowerLawFit.failed(f"{fit} fit failed: {reason}"))
            continue
        index = int(np.searchsorted(evals, result.xmin))
        rows.append(PowerLawFit(alpha=math.nan, xmin=result.xmin, xmax=float(evals[-1]),
                                D=result.D, sigma=math.nan, num_pl_spikes=result.n,
                                num_fit=result.n, method=fit, status="success", reason="",
                                xmin_index=index))  # fmt: skip
    return rows, columns
