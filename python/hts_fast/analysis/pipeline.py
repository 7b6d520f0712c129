"""analyze() and analyze_many(): the WeightWatcher-style layer table of models.

The pipeline: plan the layers (``planning``), read and cut them into matrices chunk by chunk
(``layer_matrices``), compute the ESDs (with the plain power-law fit in the same compiled pass
where it applies: ``layer_spectra``), run the fits of the options (``option_fits``), compute
the metric columns (``metrics``) and build the table (``table``). docs/architecture.md
follows one call through these steps.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from .. import _threads
from .._progress import check_progress, progress_bar
from .._timing import StageTimer
from ..fits import marchenko_pastur
from ..fits.compare import COLUMNS as COMPARE_COLUMNS
from ..fits.compare import compare_tail
from ..fits.powerlaw import PowerLawFit, fit_powerlaw_batch
from ..fits.truncated import TPL_ALPHA_MIN
from ..spectra.esd import esd_batch
from . import fast_route, randomized_esd
from .base_model import BaseDelta, pair_with_base
from .device import check_device, device_matrices, device_spectra, resolve_device
from .layer_matrices import LayerError, known_layout, layer_matrices, read_weight
from .layer_spectra import LayerSpectraTable, expand_stacks
from .metrics import batch_norm_metrics, batch_slice_stats, norm_columns, slice_columns
from .option_fits import (
    alpha_ci_columns,
    alternative_fits,
    check_alpha_ci,
    check_tpl_alpha_min,
    clipped_fits,
    peak_fits,
    tpl_fits,
)
from .peft import LoraProduct, check_peft
from .phases import phases
from .planning import Owner, Planned, check_compat, plan_layers
from .randomize import RandomizedLayer, compat_stream, randomized_columns
from .table import (
    ALPHA_CI_COLUMNS,
    ALT_FIT_COLUMNS,
    ALT_FITS,
    BASE_DELTA_COLUMN,
    DETX_COLUMNS,
    FIT_KINDS,
    MP_COLUMNS,
    OPTION_INT_COLUMNS,
    PEFT_COLUMN,
    PHASE_COLUMN,
    RANDOM_MP_COLUMNS,
    RANDOMIZE_COLUMNS,
    TPL_COLUMNS,
    base_row,
    failed_row,
    fit_columns,
    skipped_frame,
    summary_of_columns,
    table_columns,
    table_fit_columns,
    to_frame,
    to_rows,
)
from .xmax import Xmax, check_xmax, fitted_evals

#: analyze()'s esd_method values (hts_fast.analysis.fast_route for "auto" and "gram32").
AnalyzeEsdMethod = Literal["auto", "svd", "gram", "gram32", "randomized"]
#: Eigenvalues below this count as weak rank loss (WeightWatcher's default tolerance).
WEAK_RANK_TOLERANCE = 1e-6


def analyze(
    model: Any,
    *,
    layers: Sequence[Any] | Any | None = None,
    min_evals: int = 8,
    max_evals: int = 15000,
    max_N: int = 50000,
    conv2d_norm: bool = True,
    esd_method: AnalyzeEsdMethod = "auto",
    compat: Literal["weightwatcher-0.7.7"] | None = None,
    threads: int | None = None,
    tolerance: float = WEAK_RANK_TOLERANCE,
    peft: bool | Literal["with_base"] = False,
    randomize: bool = False,
    seed: int | None = None,
    mp_fit: bool = False,
    detX: bool = False,
    fit: Literal["PL", "TPL", "E_TPL", "EXP", "LOGNORMAL"] = "PL",
    tpl_alpha_min: float | None = TPL_ALPHA_MIN,
    compare: bool = False,
    fix_fingers: Literal["clip_xmax", "xmin_peak"] | None = None,
    max_fingers: int = 10,
    xmax: float | Literal["force"] | None = None,
    device: Literal["cpu", "cuda", "auto"] = "cpu",
    alpha_ci: bool | float = False,
    progress: bool | None = None,
    base_model: Any = None,
    _spectra_sink: dict[int, np.ndarray] | None = None,
    _random_sink: dict[int, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Analyze every weight matrix of ``model``: ESD, power-law fit and norm metrics.

    Parameters
    ----------
    model
        A ``torch.nn.Module`` (Hugging Face models included), a state dict (``dict`` of
        tensors/arrays, or ``{"state_dict": {...}}``), or a sequence of (name, array) pairs.
    layers
        Filters by id, type or name (WeightWatcher's ``layers=``).
    min_evals, max_evals, max_N
        Size tests: a layer is skipped if M*rf < min_evals, M*rf > max_evals or N > max_N
        (0 disables the first two), as WeightWatcher 0.7.7.
    conv2d_norm
        Scale conv2d slices by sqrt(1/2) (every eigenvalue halved), as WeightWatcher.
    esd_method
        ``"auto"`` (the default): layers whose matrices' smaller side is >= 512 take the
        float64 Gram route (``"gram"``, 4x faster than svd on a Llama-7B block), the others
        ``"svd"``; compat mode is ``"svd"`` throughout; with options outside the default
        fused pass (fit other than "PL", fix_fingers, a numeric xmax) ``"svd"``, on the GPU
        ``"gram"``. ``"gram32"``: the float32 Gram route (float32 Gram product, float64
        eigensolve), with a guard that redoes a layer by the float64 Gram route when its
        error bound could change the power-law fit (``df.attrs["esd_redone"]`` counts
        them). Our ``esd_error_bound`` column holds each row's eigenvalue error bound;
        rank columns a Gram route cannot resolve are -1/NaN with the reason
        (hts_fast.analysis.fast_route).
        ``"svd"`` (float64 gesdd, WeightWatcher's numbers) or ``"gram"`` (faster; rank
        columns less reliable, see :func:`hts_fast.esd`), or ``"randomized"``: layers whose
        smaller side is >= 1024 get a certified top-k ESD and fit
        (hts_fast.spectra.randomized.certified_spectrum); entropy, sv_min, log_alpha_norm are
        NaN and matrix_rank, rank_loss, weak_rank_loss -1 for them (status_reason says so),
        smaller layers get the exact svd ESD. Not combinable with compat, peft, randomize,
        mp_fit, detX, fit != "PL", fix_fingers or compare.
    compat
        ``"weightwatcher-0.7.7"`` reproduces WeightWatcher 0.7.7, quirks included; None (the
        default) fixes its bugs (README: "analyze(): default vs compat").
    threads
        Worker threads (None: all cores); results do not depend on it.
    tolerance
        Eigenvalues below it count as ``weak_rank_loss``.
    peft
        LoRA adapters: True analyzes only each lora_A/lora_B pair's product B·A (row named
        ``...lora_BA...``); ``"with_base"`` also W + B·A (``...lora_W_plus_AB...``) and the
        other layers; a ``peft`` column marks the product rows (see hts_fast.analysis.peft).
    randomize
        Also decompose each layer's weights with their entries shuffled: columns
        max_rand_eval, rand_distance, ww_softrank, ww_maxdist (hts_fast.analysis.randomize).
        With ``randomize`` the shuffled spectra also get a Marchenko-Pastur fit: columns
        rand_num_spikes, num_traps, rand_sigma_mp, rand_mp_softrank, rand_W_scale,
        rand_bulk_max, rand_bulk_min.
    seed
        Seeds the shuffles (default mode: None means 0; compat: None uses the global
        ``np.random`` state, as WeightWatcher does).
    mp_fit
        Marchenko-Pastur fit of each ESD's bulk: num_spikes, sigma_mp, mp_softrank, W_scale,
        bulk_max, bulk_min (hts_fast.fits.marchenko_pastur).
    detX
        The detX constraint: detX_num, detX_val, detX_val_unrescaled, num_ERG_spikes,
        ERG_gap.
    fit
        ``"PL"`` (power law, the default), ``"TPL"`` (truncated power law, xmin over every
        eigenvalue) or ``"E_TPL"`` (xmin around the ESD's peak; compat: WeightWatcher 0.7.7's
        range and alpha > 1, default: the corrected range): alpha, xmin and D of the TPL fit,
        its rate in a ``Lambda`` column, sigma NaN (hts_fast.fits.tpl_search); our columns
        loglik, alpha_se and Lambda_se after the others. For model comparison (not in
        compat): ``"EXP"``, the exponential tail with xmin by the smallest KS distance (its
        rate in ``Lambda``; our columns loglik, Lambda_se), and ``"LOGNORMAL"``, the
        lognormal truncated at the power law's xmin (our columns lognormal_mu,
        lognormal_sigma, loglik); alpha and sigma are NaN for both (hts_fast.fits.alternatives).
        With TPL/E_TPL, our column ``tpl_status`` is the chosen fit's status: "converged",
        "power_law" (Lambda = 0), or "alpha_bound" (alpha held on ``tpl_alpha_min``).
    tpl_alpha_min
        fit="TPL"/"E_TPL": the lower bound of the TPL exponent alpha, 1 by default
        (:data:`hts_fast.fits.truncated.TPL_ALPHA_MIN`, justified there and in docs/fits.md):
        every xmin candidate is fitted by maximum likelihood over alpha >= tpl_alpha_min, and
        a fit whose unconstrained maximum lies below ends on the bound (``tpl_status``
        "alpha_bound", alpha = the bound). This is the convention of the E-TPL exponents in
        the HT-SR literature (powerlaw 1.5 accepts only alpha > 1). None: the unconstrained
        maximum-likelihood alpha (any real value; on MiniLM's E_TPL it ranges from about -16
        to 3). At most 2. Compat keeps WeightWatcher 0.7.7's rule (unconstrained fits, a
        candidate kept only when alpha > 1), so there it must stay at its default.
    fix_fingers, max_fingers
        ``"clip_xmax"``: refit with the 2, 3, ... largest eigenvalues clipped ("fingers"
        from finite size) and keep the first fit whose alpha drops by more than 1 (stop when
        alpha <= 2), WeightWatcher's rule; columns raw_alpha (the unclipped fit's alpha) and
        num_fingers. ``"xmin_peak"``: xmin searched only in [0.95, 1.5) times the ESD's peak
        (hts_fast.fits.tpl_search.peak_xmin_range); WeightWatcher 0.7.7 fails every layer there
        (its own fitter cannot take an xmin range), which compat reproduces. Compat reproduces WeightWatcher's reset of max_fingers to 10 whenever it
        is below half the number of eigenvalues and its num_fingers = clipped count - 1;
        the default uses max_fingers as given and reports the clipped count.
    xmax
        Upper end of the fitted tail: None, a number (eigenvalues above it leave the fit) or
        ``"force"`` (the largest eigenvalue). Compat with fit="TPL"/"E_TPL" follows powerlaw
        as WeightWatcher 0.7.7 calls it: D's CDF is renormalised at xmax; ``"force"`` with
        fit="PL" is invalid in compat and changes nothing by default (hts_fast.analysis.xmax).
    alpha_ci
        True (a 95 % interval) or a level in (0, 1): our columns alpha_ci_low and
        alpha_ci_high, the percentile bootstrap interval of alpha with the xmin search rerun
        on each of 1,000 resamples (hts_fast.bootstrap_alpha), seeded by ``seed`` and the
        layer id. Plain power-law fits only.
    device
        ``"cpu"``; ``"cuda"``: the eigensolves on the GPU for a model whose weights are
        already there (with esd_method="gram"; nothing is moved between devices, a host
        model raises RuntimeError); ``"auto"``: the GPU when the weights are on it
        (hts_fast.analysis.device).
    compare
        Likelihood-ratio tests of the power-law tail (fit="PL") against the exponential,
        lognormal and truncated power law at its xmin: columns pl_exp_R, pl_exp_p,
        pl_lognormal_R, pl_lognormal_p, pl_tpl_R, pl_tpl_p (hts_fast.fits.compare).
    progress
        A progress bar on stderr (layers done, rate, time left; tqdm): None (the default)
        shows it when stderr is a terminal, True always (off a terminal, as one line at most
        every 10 s and one at the end, not carriage returns), False never. It advances by
        chunks (128-256 MB of weights), so a small model's bar jumps from 0 to done.
    base_model
        A model of the same architecture (any input ``model`` may be, e.g. the pretrained
        model a fine-tune started from): each analyzed layer is analyzed as W - W_base, and
        the column ``base_delta`` says which rows are (hts_fast.analysis.base_model). By
        default layers pair by their full name (a layer the base lacks is analyzed as it
        is, with a warning; shapes that do not match raise ValueError); compat pairs them
        as WeightWatcher 0.7.7 does. Not combinable with peft or device="cuda".

    Returns
    -------
    pandas.DataFrame
        One row per analyzed layer: WeightWatcher's 32 columns in its order, then
        ``status_reason``, ``fit_method``, ``esd_method`` (the route each layer's ESD took),
        ``esd_error_bound`` (its eigenvalue error bound, W's units squared; NaN for a
        failed layer). ``df.attrs["esd_redone"]`` counts the "gram32" layers the guard
        redid in float64. ``df.attrs["skipped"]`` is a
        DataFrame of the layers not analyzed and why; ``df.attrs["compat"]`` the mode;
        ``df.attrs["seconds"]`` the time spent in each stage (extract, esd, fit, metrics).
        A layer whose weight cannot be analyzed (NaN/Inf, complex, meta or sparse tensor,
        empty) gets ``status="failed"`` with the reason; the other layers are unaffected.

    Raises
    ------
    TypeError
        For an unsupported model type.
    """
    options = _Options(
        layers=layers, min_evals=min_evals, max_evals=max_evals, max_N=max_N,
        conv2d_norm=conv2d_norm, esd_method=esd_method, compat=compat, threads=threads,
        tolerance=tolerance, peft=peft, randomize=randomize, seed=seed, mp_fit=mp_fit,
        detX=detX, fit=fit, tpl_alpha_min=tpl_alpha_min, compare=compare,
        fix_fingers=fix_fingers, max_fingers=max_fingers, xmax=xmax, device=device,
        alpha_ci=alpha_ci, progress=progress, base_model=base_model,
    )  # fmt: skip
    return _analyze_models([model], options, spectra_sink=_spectra_sink,
                           random_sink=_random_sink, raise_errors=True)[0]  # fmt: skip


def analyze_many(models: Sequence[Any], **options: Any) -> list[pd.DataFrame | Exception]:
    """Analyze several models in one pipeline; one table (or the error) per model, in order.

    Takes :func:`analyze`'s keyword options and returns what ``analyze(model, **options)``
    would for each model, the same numbers: the layers of all models share the batched ESD,
    fit and metric stages, which saves most of the per-call overhead on zoos of small
    models. A model that cannot be opened (an unreadable file, an unsupported type) gives its
    exception in its place instead of stopping the others; a layer that cannot be analyzed
    fails only its row, as in :func:`analyze`. ``df.attrs["seconds"]`` of each table is its
    equal share of the batch's stage times. With ``randomize=True`` the models are analyzed
    one after the other (one shuffle stream per model, as :func:`analyze`).
    """
    return analyze_batch(models, options, as_rows=False)


def analyze_batch(models: Sequence[Any], options: dict[str, Any], *, as_rows: bool) -> list[Any]:
    """analyze_many(), or its rows form for scans (see _analyze_models)."""
    parsed = _Options(**options)
    if parsed.randomize:
        return [_analyze_models([m], parsed, as_rows=as_rows)[0] for m in models]
    return _analyze_models(list(models), parsed, as_rows=as_rows)


@dataclass(frozen=True)
class _Options:
    """analyze()'s keyword options, checked; the defaults are analyze()'s (a test compares)."""

    layers: Any = None
    min_evals: int = 8
    max_evals: int = 15000
    max_N: int = 50000
    conv2d_norm: bool = True
    esd_method: AnalyzeEsdMethod = "auto"
    compat: str | None = None
    threads: int | None = None
    tolerance: float = WEAK_RANK_TOLERANCE
    peft: bool | str = False
    randomize: bool = False
    seed: int | None = None
    mp_fit: bool = False
    detX: bool = False
    fit: str = "PL"
    tpl_alpha_min: float | None = TPL_ALPHA_MIN
    compare: bool = False
    fix_fingers: str | None = None
    max_fingers: int = 10
    xmax: Xmax = None
    device: str = "cpu"
    alpha_ci: bool | float = False
    progress: bool | None = None
    base_model: Any = None

    def __post_init__(self) -> None:
        check_compat(self.compat)
        check_progress(self.progress)
        object.__setattr__(self, "peft", check_peft(self.peft))
        fit, fix_fingers = self.fit, self.fix_fingers
        if fit not in ("PL", "TPL", "E_TPL", *ALT_FITS):
            msg = f"fit must be 'PL', 'TPL', 'E_TPL', 'EXP' or 'LOGNORMAL', got {fit!r}"
            raise ValueError(msg)
        check_tpl_alpha_min(self.tpl_alpha_min, fit=fit, compat=self.compat)
        if fit in ALT_FITS and (self.compat or self.xmax is not None):
            msg = f"fit={fit!r} is ours (WeightWatcher 0.7.7 has none): no compat, no xmax"
            raise ValueError(msg)
        if fix_fingers not in (None, "clip_xmax", "xmin_peak") or (fix_fingers and fit != "PL"):
            msg = (f"fix_fingers must be None, 'clip_xmax' or 'xmin_peak' (with fit='PL'), "
                   f"got {fix_fingers!r}")  # fmt: skip
            raise ValueError(msg)
        if self.compare and (fit != "PL" or fix_fingers):
            msg = "compare=True tests the plain power-law fit; use it with fit='PL', no fix_fingers"
            raise ValueError(msg)
        if fix_fingers and self.max_fingers < 1:
            msg = f"max_fingers must be >= 1, got {self.max_fingers}"
            raise ValueError(msg)
        xmax = check_xmax(self.xmax, fit=fit, compat=self.compat, fix_fingers=fix_fingers)
        object.__setattr__(self, "xmax", xmax)
        check_device(self.device, esd_method=self.esd_method, compat=self.compat)
        object.__setattr__(self, "alpha_ci", check_alpha_ci(self.alpha_ci, self))
        if self.base_model is not None and (self.peft or self.device != "cpu"):
            msg = "base_model cannot be combined with peft or a GPU device"
            raise ValueError(msg)
        if self.esd_method == "randomized":
            randomized_esd.check_options(compat=self.compat, peft=self.peft,
                                         randomize=self.randomize, mp_fit=self.mp_fit,
                                         detX=self.detX, fit=fit, fix_fingers=fix_fingers,
                                         compare=self.compare)  # fmt: skip


@dataclass
class _Model:
    """One model of a batch: its index in the batch, its layers and the analyzed ones."""

    index: int
    plans: list[Planned]
    active: list[Planned]


def _analyze_models(
    models: list[Any], opt: _Options, *, spectra_sink: dict[int, np.ndarray] | None = None,
    random_sink: dict[int, np.ndarray] | None = None, raise_errors: bool = False,
    as_rows: bool = False,
) -> list[Any]:  # fmt: skip
    """The pipeline behind analyze() and analyze_many(): plan every model, then read, ESD,
    fit and measure all their layers together, then cut the result into one table each.

    Returns per model its DataFrame or, with ``as_rows`` (for scans, no pandas), a dict with
    ``table`` (column names, rows of Python values), ``summary`` and ``seconds``; or the
    exception that stopped the model (raised instead with ``raise_errors``).
    """
    n_threads = _threads.resolve_threads(opt.threads)
    timer = StageTimer()
    results: list[Any] = [None] * len(models)
    with timer.stage("extract"):
        batch = _plan_models(models, opt, results, raise_errors)
        active = [plan for member in batch for plan in member.active]
        device = resolve_device(opt.device, [p.layer.weight for p in active], opt.esd_method)
    # the pooled ESDs themselves only where something reads them: the spectra sink (plots)
    # and the options that refit or reread them
    keep_pooled = bool(spectra_sink is not None or opt.randomize or opt.mp_fit or opt.detX
                       or opt.alpha_ci or opt.compare)  # fmt: skip
    spectra = _decompose(active, opt, device, n_threads, timer, keep_pooled)
    with timer.stage("fit"):
        fitted = _fit(spectra, opt, n_threads)
    with timer.stage("metrics"), np.errstate(all="ignore"):
        columns, layout = _columns(spectra, fitted, opt, active, n_threads)
        _cut_into_tables(batch, spectra.pooled, columns, layout, results, opt, as_rows,
                         spectra_sink, random_sink)  # fmt: skip
    share = {stage: seconds / max(1, len(batch)) for stage, seconds in timer.seconds.items()}
    for member in batch:
        result = results[member.index]
        if as_rows:
            result["seconds"] = sum(share.values())
        else:
            result.attrs["seconds"] = dict(share)
    return results


def _plan_models(models: list[Any], opt: _Options, results: list[Any],
                 raise_errors: bool) -> list[_Model]:  # fmt: skip
    """Plan each model's layers (and pair them with the base model's); a model whose planning
    fails gets its exception in ``results`` (or it is raised) and no entry."""
    batch: list[_Model] = []
    for k, model in enumerate(models):
        try:
            plans = plan_layers(model, opt.layers, opt.min_evals, opt.max_evals, opt.max_N,
                                opt.compat, opt.peft)  # fmt: skip
            if opt.base_model is not None:
                base_plans = plan_layers(opt.base_model, opt.layers, opt.min_evals,
                                         opt.max_evals, opt.max_N, opt.compat)  # fmt: skip
                pair_with_base(plans, base_plans, opt.compat)
        except Exception as exc:
            if raise_errors:
                raise
            results[k] = exc
            continue
        batch.append(_Model(k, plans, [p for p in plans if not p.skip_reason]))
    return batch


@dataclass
class _Spectra:
    """The batch's decomposed layers.

    ``pooled``: (plan, sorted ESD, per-matrix spectra) of each analyzed layer that has an ESD
    (the ESD None and no per-matrix spectra on the fused pass without ``keep_pooled``);
    ``fused``: the fused pass's table (fits, norm sums, slice summaries) or None;
    ``esd_method``: the route of the unfused paths ("auto" resolved)."""

    pooled: list[tuple[Planned, Any, Any]]
    fused: LayerSpectraTable | None
    esd_method: str


def _decompose(active: list[Planned], opt: _Options, device: str, n_threads: int,
               timer: StageTimer, keep_pooled: bool) -> _Spectra:  # fmt: skip
    """Read the weights and compute the ESDs chunk by chunk, each chunk one batch across
    threads; the next chunk is read by a background thread while this one is decomposed,
    and a chunk's weights (and a file's mapped pages) are released once its ESDs are done.
    The plain power-law fit runs inside the ESD threads, layer by layer
    (layer_spectra.layer_spectra_table: the fused pass); randomize's shuffled spectra are
    computed per chunk too."""
    compat = opt.compat
    fused = (opt.fit == "PL" and not opt.fix_fingers and device == "cpu"
             and opt.esd_method in ("svd", "gram", "gram32", "auto")
             and opt.xmax in (None, "force"))  # fmt: skip
    # the route of the unfused paths: "auto" is svd there (gram on the GPU)
    esd_method = opt.esd_method
    if esd_method == "auto" and not fused:
        esd_method = "gram" if device == "cuda" else "svd"
    pooled: list[tuple[Planned, Any, Any]] = []
    fused_tables: list[LayerSpectraTable] = []
    chunks = _chunks(active, n_threads)
    stream = compat_stream(opt.seed) if opt.randomize and compat else None  # one for all chunks

    def read(k: int) -> tuple[list[Owner], list[np.ndarray], list[float]]:
        return _extract(chunks[k], compat, opt.conv2d_norm, esd_method, device)

    # a reader thread only when there is a next chunk to read (most models are one chunk)
    reading = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="hts_fast-read")
               if len(chunks) > 1 else contextlib.nullcontext())  # fmt: skip
    bar = progress_bar(len(active), progress=opt.progress, desc="analyze", unit="layer")
    with reading as reader, bar:
        upcoming = None
        for k in range(len(chunks)):
            with timer.stage("extract"):
                owners, matrices, scales = upcoming.result() if upcoming else read(k)
                upcoming = reader.submit(read, k + 1) if k + 1 < len(chunks) else None
            with timer.stage("esd+fit" if fused else "esd"):
                if fused:
                    done, table = _layer_spectra(owners, matrices, scales, esd_method,
                                                 compat, n_threads, opt.tolerance,
                                                 keep_pooled)  # fmt: skip
                    fused_tables.append(table)
                else:
                    matrices, scales = expand_stacks(matrices, scales)  # one matrix per entry
                    if device == "cuda":
                        spectra = device_spectra(matrices, scales)
                    elif esd_method == "randomized":
                        spectra = randomized_esd.layer_spectra(owners, matrices, scales,
                                                               threads=n_threads, seed=opt.seed)  # fmt: skip
                    else:
                        spectra = esd_batch(matrices, method=esd_method, scales=scales,
                                            threads=n_threads, on_error="return")  # fmt: skip
                    done = _pool(owners, spectra, compat)
                pooled.extend(done)
            if opt.randomize:
                with timer.stage("randomize"):
                    _randomize(owners, *expand_stacks(matrices, scales), done,
                               compat=bool(compat), seed=opt.seed,
                               auto=opt.esd_method == "auto",
                               threads=n_threads, stream=stream)  # fmt: skip
            del owners, matrices, scales
            bar.update(len(chunks[k]))
    fused_table = LayerSpectraTable.concatenate(fused_tables) if fused else None
    return _Spectra(pooled, fused_table, esd_method)


@dataclass
class _Fits:
    """The power-law (or other) fits of the pooled layers, and the columns their kind adds:
    ``fits`` (empty on the fused pass unless something reads them), ``raw_alphas`` and
    ``fingers`` (fix_fingers="clip_xmax"), ``extra`` (the TPL / alternative fits' columns)."""

    fits: list[Any]
    raw_alphas: Any = None
    fingers: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def _fit(spectra: _Spectra, opt: _Options, n_threads: int) -> _Fits:
    """Fit every pooled ESD in one batch, by the option's fit (the fused pass already did)."""
    pooled, compat = spectra.pooled, opt.compat
    if spectra.fused is not None:  # the fits are in the table; objects only when asked for
        return _Fits(spectra.fused.fits() if opt.alpha_ci or opt.compare else [])
    if opt.fix_fingers == "clip_xmax":
        fits, raw_alphas, fingers = clipped_fits(pooled, opt.max_fingers, compat, n_threads)
        return _Fits(fits, raw_alphas, fingers)
    if opt.fix_fingers == "xmin_peak":
        return _Fits(peak_fits(pooled, compat, n_threads))
    if opt.fit in ALT_FITS:
        fits, extra = alternative_fits(pooled, opt.fit, n_threads)
        return _Fits(fits, extra=extra)
    # the eigenvalues up to xmax (all of them without one) enter the fit
    fit_pooled = [(p, fitted_evals(e, opt.xmax), parts) for p, e, parts in pooled]
    if opt.fit == "PL":
        return _Fits(fit_powerlaw_batch([evals for _, evals, _ in fit_pooled],
                                        threads=n_threads))  # fmt: skip
    fits, extra = tpl_fits(fit_pooled, opt.fit, compat, n_threads, opt.xmax, opt.tpl_alpha_min)
    return _Fits(fits, extra=extra)


def _columns(spectra: _Spectra, fitted: _Fits, opt: _Options, active: list[Planned],
             n_threads: int) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """The batch's table columns (in pooled order) and their layout for table_columns():
    the metrics, the route patches, then each option's own columns."""
    pooled, compat, fit = spectra.pooled, opt.compat, opt.fit
    columns = _metric_columns(pooled, fitted.fits, compat=bool(compat), tolerance=opt.tolerance,
                              fused=spectra.fused, kind=FIT_KINDS[fit])  # fmt: skip
    if spectra.esd_method == "randomized":  # top-k ESDs: exact norms, NaN where all are needed
        randomized_esd.patch_columns(pooled, columns)
    fast_route.patch_columns(pooled, columns)
    option_columns = []
    if opt.fix_fingers == "clip_xmax":
        option_columns += ["raw_alpha", "num_fingers"]
        columns["raw_alpha"], columns["num_fingers"] = fitted.raw_alphas, fitted.fingers
    if fit in ("TPL", "E_TPL", "EXP"):
        option_columns.append("Lambda")
    if fit != "PL":
        columns.update(fitted.extra)
    if opt.base_model is not None:
        columns[BASE_DELTA_COLUMN] = [plan.base_delta for plan, _, _ in pooled]
        for plan in active:
            plan.row[BASE_DELTA_COLUMN] = plan.base_delta
    if opt.peft:
        option_columns.append(PEFT_COLUMN)
        columns[PEFT_COLUMN] = [plan.peft for plan, _, _ in pooled]
        for plan in active:
            plan.row[PEFT_COLUMN] = plan.peft
    if opt.randomize:
        option_columns += RANDOMIZE_COLUMNS + RANDOM_MP_COLUMNS
        for col in RANDOMIZE_COLUMNS:
            columns[col] = [plan.extra[col] for plan, _, _ in pooled]
    if opt.mp_fit or opt.randomize or opt.detX:
        extra = _spectral_columns(pooled, columns, compat=bool(compat), mp=opt.mp_fit,
                                  randomized=opt.randomize, det=opt.detX)  # fmt: skip
        mp_ok = extra.pop("_mp_ok", [])
        columns.update(extra)
        option_columns += ((MP_COLUMNS if opt.mp_fit else [])
                           + (DETX_COLUMNS if opt.detX else []))  # fmt: skip
        if opt.detX:
            fast_route.patch_detx(pooled, columns, compat=bool(compat))
        if opt.mp_fit:
            columns[PHASE_COLUMN] = phases(columns, mp_ok,
                                           fast_route.phase_ranks(pooled, columns))  # fmt: skip
    ours = [PHASE_COLUMN] if opt.mp_fit else []
    if fit != "PL":
        ours += ALT_FIT_COLUMNS.get(fit, TPL_COLUMNS)
    if opt.base_model is not None:
        ours.append(BASE_DELTA_COLUMN)
    if opt.alpha_ci:
        ours += ALPHA_CI_COLUMNS
        columns.update(alpha_ci_columns(pooled, fitted.fits, opt.alpha_ci, opt.seed, n_threads))
    if opt.compare:
        ours += COMPARE_COLUMNS
        tests = [compare_tail(evals, f.xmin, f.alpha).columns() if f.status == "success"
                 else dict.fromkeys(COMPARE_COLUMNS, math.nan)
                 for (_, evals, _), f in zip(pooled, fitted.fits, strict=True)]  # fmt: skip
        for col in COMPARE_COLUMNS:
            columns[col] = [t[col] for t in tests]
    int_columns = OPTION_INT_COLUMNS | {"num_fingers"} | ({"ERG_gap"} if compat else set())
    layout = {"option_columns": option_columns, "int_columns": frozenset(int_columns),
              "our_columns": ours}  # fmt: skip
    return columns, layout


def _cut_into_tables(
    batch: list[_Model], pooled: list[tuple[Planned, Any, Any]], columns: dict[str, Any],
    layout: dict[str, Any], results: list[Any], opt: _Options, as_rows: bool,
    spectra_sink: dict[int, np.ndarray] | None, random_sink: dict[int, np.ndarray] | None,
) -> None:  # fmt: skip
    """Each model's table from the batch's columns, into ``results`` (a DataFrame with its
    attrs, or rows and summary with ``as_rows``); the sinks get each row's ESD and shuffled
    ESD by row index."""
    compat = opt.compat
    owner = {id(plan): n for n, member in enumerate(batch) for plan in member.active}
    rows_of: list[list[int]] = [[] for _ in batch]  # pooled rows of each model
    for at, (plan, _, _) in enumerate(pooled):
        rows_of[owner[id(plan)]].append(at)
    for n, member in enumerate(batch):
        table = _model_table(member, pooled, rows_of[n], columns, layout, compat=compat)
        if as_rows:
            results[member.index] = {"table": to_rows(table),
                                     "summary": summary_of_columns(table, compat=compat)}  # fmt: skip
            continue
        frame = to_frame(table)
        frame.attrs["compat"] = compat
        frame.attrs["esd_redone"] = sum(
            1 for plan in member.active
            if getattr(plan.extra.get(fast_route.EXTRA_KEY), "redone", False))  # fmt: skip
        frame.attrs["skipped"] = skipped_frame(member.plans)
        position = {id(plan): k for k, plan in enumerate(member.active)}
        if spectra_sink is not None:  # for plots (hts_fast.zoo.report): row index -> its ESD
            spectra_sink.update({position[id(pooled[at][0])]: pooled[at][1]
                                 for at in rows_of[n]})  # fmt: skip
        if random_sink is not None and opt.randomize:  # the shuffled ESDs, the same way
            for at in rows_of[n]:
                plan = pooled[at][0]
                random_sink[position[id(plan)]] = plan.extra["rand_evals"]
        results[member.index] = frame


def _model_table(
    member: _Model, pooled: list[tuple[Planned, np.ndarray, list[np.ndarray]]],
    picked: list[int], columns: dict[str, Any], layout: dict[str, Any], *, compat: str | None,
) -> dict[str, Any]:  # fmt: skip
    """One model's table columns from the batch's (its analyzed layers at ``picked``)."""
    active = member.active
    position = {id(plan): k for k, plan in enumerate(active)}
    analyzed = [position[id(pooled[at][0])] for at in picked]
    if len(picked) == len(pooled):
        own = columns
    else:
        take = np.array(picked, dtype=np.intp)
        own = {col: values[take] if isinstance(values, np.ndarray)
               else [values[at] for at in picked] for col, values in columns.items()}  # fmt: skip
    return table_columns([p.row for p in active], analyzed, own, **layout,
                         compat=compat)  # fmt: skip


#: A chunk reads weights worth max(CHUNK_MIN_BYTES, the largest layer) in float64, at most
#: CHUNK_MAX_BYTES, but at least one layer per thread. Two chunks are in memory at once (one
#: decomposed, the next being read), so peak memory stays a small multiple of the largest
#: layer (README "Checkpoint files").
CHUNK_MIN_BYTES = 128 * 2**20
CHUNK_MAX_BYTES = 256 * 2**20


def _float64_bytes(plan: Planned) -> int:
    weight = plan.layer.weight
    if type(weight) is np.ndarray:
        return 8 * weight.size
    return 8 * math.prod(getattr(weight, "shape", ()) or (0,))


def _chunks(active: list[Planned], threads: int) -> list[list[Planned]]:
    """Split the layers into consecutive chunks of weights to read and decompose together."""
    sizes = [_float64_bytes(p) for p in active]
    largest = max(sizes, default=0)
    # room for `threads` layers as large as the largest, so that one big layer does not leave
    # the other threads idle at the end of its chunk
    budget = min(CHUNK_MAX_BYTES, max(CHUNK_MIN_BYTES, threads * largest))
    if sum(sizes) <= budget:
        return [list(active)] if active else []
    chunks: list[list[Planned]] = [[]]
    size = 0
    for plan, nbytes in zip(active, sizes, strict=True):
        if chunks[-1] and size + nbytes > budget and len(chunks[-1]) >= threads:
            chunks.append([])
            size = 0
        chunks[-1].append(plan)
        size += nbytes
    return chunks if chunks[0] else []


def _extract(
    active: list[Planned], compat: str | None, conv2d_norm: bool, esd_method: str,
    device: str = "cpu",
) -> tuple[list[Owner], list[np.ndarray], list[float]]:  # fmt: skip
    """Read each layer's weight and cut it into matrices; failures become failed rows.

    Returns the owners (each layer's first matrix and count), the entries (a matrix, or a
    conv2d kernel's positions as one 3-D stack, as layer_spectra.layer_spectra_table takes
    them; see layer_spectra.expand_stacks) and one scale per entry.
    """
    entries: list[np.ndarray] = []
    scales: list[float] = []
    owners: list[Owner] = []
    count = 0  # matrices so far
    for plan in active:
        plan.row = base_row(plan, esd_method)
        try:
            if device == "cuda":
                parts = device_matrices(plan.layer.weight, plan.layer.layer_type,
                                        conv2d_norm=conv2d_norm)  # fmt: skip
            elif isinstance(plan.layer.weight, LoraProduct):
                parts = plan.layer.weight.layer_matrices(compat)
            elif isinstance(plan.layer.weight, BaseDelta):
                parts = plan.layer.weight.layer_matrices(compat, conv2d_norm)
            else:
                array = read_weight(plan.layer.weight, compat)
                parts = layer_matrices(array, plan.layer.layer_type, compat=compat,
                                       conv2d_norm=conv2d_norm,
                                       layout=known_layout(plan.layer.weight))  # fmt: skip
        except (LayerError, TypeError, ValueError) as exc:
            failed_row(plan.row, str(exc), compat=bool(compat))
            continue
        stack = parts.matrices
        n = len(stack)
        owners.append((plan, count, n, parts.keep_top))
        count += n
        if type(stack) is np.ndarray:  # a 3-D stack: one entry
            entries.append(stack)
            scales.append(parts.scale)
        else:
            entries.extend(stack)
            scales.extend([parts.scale] * n)
    return owners, entries, scales


def _layer_spectra(
    owners: list[Owner], matrices: list[np.ndarray], scales: list[float], method: str,
    compat: str | None, threads: int, tolerance: float, keep_pooled: bool,
) -> tuple[list[tuple[Planned, np.ndarray | None, None]], LayerSpectraTable]:  # fmt: skip
    """_pool(), the power-law fits and the norm sums of a chunk in one compiled pass
    (layer_spectra.layer_spectra_table). Returns the pooled entries (no per-matrix spectra;
    their ESDs None without ``keep_pooled``) and the table rows of those layers, in the same
    order; a failed layer gets its failed row."""
    if method == "auto":
        routes = [fast_route.auto_route(plan.shape.M if plan.shape else 0, compat=bool(compat))
                  for plan, _, _, _ in owners]  # fmt: skip
    else:
        routes = [method] * len(owners)
    table, records = fast_route.routed_table(owners, matrices, scales, routes, threads=threads,
                                             tolerance=tolerance, compat=bool(compat),
                                             keep_pooled=keep_pooled)  # fmt: skip
    for (plan, _, _, _), record in zip(owners, records, strict=True):
        if record is not None:
            plan.extra[fast_route.EXTRA_KEY] = record
            plan.row["esd_method"] = record.route
    for k, error in sorted(table.errors.items()):
        detail = getattr(error, "detail", f": {error}")
        failed_row(owners[k][0].row, f"weight{detail}", compat=bool(compat))
    if table.errors:
        ok = [k for k in range(len(owners)) if k not in table.errors]
        table, owners = table.select(ok), [owners[k] for k in ok]
    pooled = [(plan, evals, None) for (plan, _, _, _), evals in zip(owners, table.pooled,
                                                                     strict=True)]  # fmt: skip
    return pooled, table


def _pool(
    owners: list[Owner], spectra: list[Any], compat: str | None
) -> list[tuple[Planned, np.ndarray, list[np.ndarray]]]:
    """Concatenate each layer's spectra into its sorted ESD; a failed matrix fails its layer."""
    pooled: list[tuple[Planned, np.ndarray, list[np.ndarray]]] = []
    for plan, first, count, keep_top in owners:
        parts = spectra[first : first + count]
        error = next((p for p in parts if isinstance(p, Exception)), None)
        if error is not None:
            detail = getattr(error, "detail", f": {error}")  # esd_batch's message, renamed
            failed_row(plan.row, f"weight{detail}", compat=bool(compat))
            continue
        evals = np.sort(np.concatenate(parts)) if count > 1 else parts[0]
        if keep_top is not None:
            evals = evals[-keep_top:]
            parts = [evals]
        pooled.append((plan, evals, parts))
    return pooled


def _randomize(
    owners: list[Owner], matrices: list[np.ndarray], scales: list[float],
    done: list[tuple[Planned, np.ndarray, list[np.ndarray]]], *, compat: bool,
    seed: int | None, auto: bool, threads: int, stream: Any = None,
) -> None:  # fmt: skip
    """Shuffled-weights columns of the chunk's analyzed layers, stored in ``plan.extra``.

    With ``auto`` (esd_method="auto", never in compat) every shuffled matrix takes the float64
    Gram route, small layers' too: its columns (max_rand_eval, ww_softrank, rand_distance
    over the whole spectrum) need no rank resolution, and it is 2-4x faster than svd there.
    Otherwise each layer's shuffled matrices take the route its own ESD took."""
    where = {id(plan): (first, count, keep_top) for plan, first, count, keep_top in owners}
    layers = []
    for plan, evals, _ in done:
        first, count, keep_top = where[id(plan)]
        layer_matrices_, scale = matrices[first : first + count], scales[first]
        if isinstance(plan.layer.weight, LoraProduct) and not compat:
            explicit = plan.layer.weight.dense_matrices()
            layer_matrices_, scale, keep_top = explicit.matrices, 1.0, explicit.keep_top
        n_comp = None
        if compat and plan.shape is not None:  # WeightWatcher's num_components
            weight = plan.layer.weight
            lora_rank = weight.rank if isinstance(weight, LoraProduct) else None
            n_comp = lora_rank or plan.shape.M * plan.shape.rf
        layers.append(RandomizedLayer(plan.layer.layer_id, layer_matrices_, scale, evals,
                                      keep_top, n_comp))  # fmt: skip
    if not layers:
        return
    routes = ["gram" if auto and not compat else plan.row["esd_method"] for plan, _, _ in done]
    columns = randomized_columns(layers, seed=seed, compat=compat, esd_method=routes,
                                 threads=threads, stream=stream)  # fmt: skip
    for k, (plan, _, _) in enumerate(done):
        plan.extra.update({col: columns[col][k] for col in RANDOMIZE_COLUMNS})
        plan.extra["rand_evals"] = columns["rand_evals"][k]


def _spectral_columns(
    pooled: list[tuple[Planned, np.ndarray, list[np.ndarray]]], columns: dict[str, Any], *,
    compat: bool, mp: bool, randomized: bool, det: bool,
) -> dict[str, list[Any]]:  # fmt: skip
    """Marchenko-Pastur fits (of the ESD and of the shuffled ESD) and detX, per layer."""
    out: dict[str, list[Any]] = {}
    for k, (plan, evals, _) in enumerate(pooled):
        assert plan.shape is not None
        N, M = plan.shape.N, plan.shape.M
        values: dict[str, Any] = {}
        if mp:
            fit = marchenko_pastur.mp_fit(evals, N, M, compat=compat)
            values.update(fit.columns())
            values["_mp_ok"] = fit.status == "success"
        if randomized:
            fit = marchenko_pastur.mp_fit(plan.extra["rand_evals"], N, M, compat=compat)
            rand = fit.columns()
            values.update({f"rand_{key}": value for key, value in rand.items()})
            values["num_traps"] = rand["num_spikes"]
        if det:
            result = marchenko_pastur.detx(evals, compat=compat)
            spikes = columns["num_pl_spikes"][k]
            fitted = columns["status"][k] == "success" or compat
            values.update(result.columns())
            values.update(marchenko_pastur.erg_columns(result.detX_num,
                                                       int(spikes) if fitted else None))  # fmt: skip
        for key, value in values.items():
            out.setdefault(key, []).append(value)
    return out


def _metric_columns(
    pooled: list[tuple[Planned, np.ndarray, Any]], fits: list[PowerLawFit], *,
    compat: bool, tolerance: float, fused: LayerSpectraTable | None = None,
    kind: str = "power-law",
) -> dict[str, Any]:  # fmt: skip
    """ESD, fit and norm columns of the analyzed layers, as arrays in ``pooled`` order
    (``fused``: their fits, norm sums and slice summaries when the ESD pass computed them,
    see layer_spectra.layer_spectra_table; ``fits`` is then not read; ``kind``: the fit's
    name in failure reasons)."""
    if not pooled:
        return {}
    if fused is not None:
        columns = table_fit_columns(fused, compat=compat)
        columns.update(norm_columns(
            *(fused.real(c) for c in ("norm", "lambda_max")),
            *(fused.count(c) for c in ("matrix_rank", "weak_rank_loss")),
            *(fused.real(c) for c in ("entropy", "alpha_norm_sum")),
            fused.count("num_evals"), columns["alpha"]))  # fmt: skip
        columns.update(slice_columns(
            *(fused.real(c) for c in ("sv_max", "sv_min_smallest", "sv_min_largest")),
            fused.count("rank_loss"), compat=compat))  # fmt: skip
        columns["has_esd"] = [True] * len(pooled)
        return columns
    columns = fit_columns(fits, compat=compat, kind=kind)
    N = np.array([plan.row["N"] for plan, _, _ in pooled], dtype=np.float64)
    columns.update(batch_norm_metrics([evals for _, evals, _ in pooled], N, columns["alpha"],
                                      compat=compat, tolerance=tolerance))  # fmt: skip
    slices = [part for _, _, parts in pooled for part in parts]
    owner = np.repeat(np.arange(len(pooled)), [len(parts) for _, _, parts in pooled])
    columns.update(batch_slice_stats(slices, owner, N, len(pooled), compat=compat))
    columns["has_esd"] = [True] * len(pooled)
    return columns
