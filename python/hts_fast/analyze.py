"""analyze(), describe() and summary(): the WeightWatcher-style layer table of a model."""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from . import _threads, esd_randomized, marchenko_pastur
from ._frame import frame_from_columns
from ._timing import StageTimer
from .compare import COLUMNS as COMPARE_COLUMNS
from .compare import compare_tail
from .device import check_device, device_matrices, device_spectra, resolve_device
from .esd import EsdMethod, esd_batch, layer_spectra
from .fits import DEFAULT_THRESHOLD, PowerLawFit, fit_powerlaw_batch
from .layer_matrices import (
    COMPAT,
    LayerError,
    LayerShape,
    layer_matrices,
    layer_shape,
    not_a_matrix_reason,
    read_weight,
)
from .layers import Layer, apply_filters, discover_layers
from .metrics import (
    LayerSliceStats,
    batch_norm_metrics,
    batch_slice_stats,
    warning_label,
)
from .peft import LoraProduct, LoraScaling, adapter_scaling, check_peft, lora_role, module_of
from .phases import phases
from .randomize import RandomizedLayer, compat_stream, randomized_columns
from .xmax import Xmax, cdf_xmax, check_xmax, fitted_evals

#: WeightWatcher 0.7.7's 32 analyze() columns, in its order (reference doc 6.1).
WW_COLUMNS = [
    "layer_id", "name", "D", "M", "N", "Q", "alpha", "alpha_weighted", "entropy", "has_esd",
    "lambda_max", "layer_type", "log_alpha_norm", "log_norm", "log_spectral_norm", "longname",
    "matrix_rank", "norm", "num_evals", "num_pl_spikes", "rank_loss", "rf", "sigma",
    "spectral_norm", "stable_rank", "status", "sv_max", "sv_min", "warning", "weak_rank_loss",
    "xmax", "xmin",
]  # fmt: skip
#: Our columns, after WeightWatcher's.
EXTRA_COLUMNS = ["status_reason", "fit_method", "esd_method"]
#: WeightWatcher's extra columns with peft=True/"with_base" and randomize=True (its columns are
#: sorted by name).
PEFT_COLUMN = "peft"
RANDOMIZE_COLUMNS = ["max_rand_eval", "rand_distance", "ww_softrank", "ww_maxdist"]
MP_COLUMNS = ["num_spikes", "sigma_mp", "mp_softrank", "W_scale", "bulk_max", "bulk_min"]
#: randomize=True also fits the shuffled spectra (num_traps repeats rand_num_spikes, 0.7.7)
RANDOM_MP_COLUMNS = ["rand_num_spikes", "num_traps", "rand_sigma_mp", "rand_mp_softrank",
                     "rand_W_scale", "rand_bulk_max", "rand_bulk_min"]  # fmt: skip
DETX_COLUMNS = ["detX_num", "detX_val", "detX_val_unrescaled", "num_ERG_spikes", "ERG_gap"]
#: integer columns of those options (ERG_gap too in compat mode; NaN-able by default)
OPTION_INT_COLUMNS = {"num_spikes", "rand_num_spikes", "num_traps", "detX_num",
                      "num_ERG_spikes"}  # fmt: skip
INT_COLUMNS = {"layer_id", "M", "N", "matrix_rank", "num_evals", "num_pl_spikes", "rank_loss",
               "rf", "weak_rank_loss"}  # fmt: skip
#: our columns with fit="TPL"/"E_TPL": the fit's log-likelihood (natural log, summed over the
#: tail) and the standard errors of alpha and Lambda from the observed Fisher information
TPL_COLUMNS = ["loglik", "alpha_se", "Lambda_se"]
#: fits for model comparison (hts_fast.alt_fits) and their columns: the exponential tail's rate
#: is the Lambda column; the lognormal is fitted above the power law's xmin
ALT_FITS = ("EXP", "LOGNORMAL")
ALT_FIT_COLUMNS = {"EXP": ["loglik", "Lambda_se"],
                   "LOGNORMAL": ["lognormal_mu", "lognormal_sigma", "loglik"]}  # fmt: skip
#: our column with mp_fit=True: the 5+1 phases of training (hts_fast.phases)
PHASE_COLUMN = "phase"
STRING_COLUMNS = {"name", "layer_type", "longname", "status", "warning", *EXTRA_COLUMNS,
                  PHASE_COLUMN}  # fmt: skip
SUMMARY_COLUMNS = ["log_norm", "alpha", "alpha_weighted", "log_alpha_norm", "log_spectral_norm",
                   "stable_rank", "mp_softrank"]  # fmt: skip
DESCRIBE_COLUMNS = ["layer_id", "name", "M", "N", "Q", "layer_type", "longname", "num_evals",
                    "rf", "analyzed", "skip_reason"]  # fmt: skip
#: Eigenvalues below this count as weak rank loss (WeightWatcher's default tolerance).
WEAK_RANK_TOLERANCE = 1e-6


@dataclass
class _Planned:
    """A layer and what the size tests decided about it."""

    layer: Layer
    shape: LayerShape | None
    skip_reason: str = ""
    row: dict[str, Any] = field(default_factory=dict)
    peft: bool = False  # a LoRA product row
    extra: dict[str, Any] = field(default_factory=dict)  # columns of analyze() options


#: A layer's place in the flat list of matrices: (plan, first index, count, keep_top).
_Owner = tuple[_Planned, int, int, "int | None"]


def _check_compat(compat: str | None) -> str | None:
    if compat not in (None, COMPAT):
        msg = f"compat must be None or {COMPAT!r}, got {compat!r}"
        raise ValueError(msg)
    return compat


def _plan(
    model: Any, layers: Any, min_evals: int, max_evals: int, max_N: int, compat: str | None,
    peft: bool | str = False,
) -> list[_Planned]:  # fmt: skip
    """Discover the layers and apply WeightWatcher's support tests in its order (2.4).

    With ``peft``, LoRA pairs then become product rows (hts_fast.peft), in WeightWatcher's
    row order in compat mode and in layer-id order otherwise.
    """
    found = discover_layers(model, compat)
    filtered = apply_filters(found, layers)
    plans = []
    seen_weights: dict[int, Layer] = {}
    for pos, layer in enumerate(found):
        shape = None
        if layer.weight is not None and layer.layer_type not in ("unknown", "norm"):
            shape = layer_shape(layer.weight, layer.layer_type, compat)
        reason = ""
        if pos in filtered:
            reason = f"filtered: {filtered[pos]}"
        elif layer.weight is None:
            reason = "no weight"
        elif layer.layer_type == "unknown":
            reason = "layer type unknown"
        elif layer.layer_type == "norm":
            reason = "normalization layers are not analyzed"
        elif shape is None:
            reason = not_a_matrix_reason(layer.weight, layer.layer_type)
        elif min_evals and shape.M * shape.rf < min_evals:
            reason = f"too few eigenvalues: M*rf = {shape.M * shape.rf} < min_evals = {min_evals}"
        elif max_evals and shape.M * shape.rf > max_evals:
            reason = f"too many eigenvalues: M*rf = {shape.M * shape.rf} > max_evals = {max_evals}"
        elif max_N < shape.N:
            reason = f"N = {shape.N} > max_N = {max_N}"
        elif not compat:
            # A weight shared by several layers (tied embeddings) is analyzed once.
            key = _weight_identity(layer.weight)
            if key in seen_weights:
                first = seen_weights[key]
                reason = f"shares its weight with layer {first.layer_id} ({first.longname})"
            else:
                seen_weights[key] = layer
        plans.append(_Planned(layer, shape, reason))
    if peft:
        scaling = None if compat else adapter_scaling(model)
        plans = _pair_lora(plans, peft_only=peft is True, scaling=scaling, compat=compat)
    return plans


def _lora_plan(plan: _Planned, product: LoraProduct, old: str, new: str) -> _Planned:
    layer = plan.layer
    renamed = Layer(layer.layer_id, layer.name.replace(old, new), layer.longname.replace(old, new),
                    layer.layer_type, product, layer.source)  # fmt: skip
    return _Planned(renamed, product.layer_shape(), peft=True)


def _pair_lora(
    plans: list[_Planned], *, peft_only: bool, scaling: LoraScaling | None, compat: str | None
) -> list[_Planned]:
    """Replace each analyzed lora_A/lora_B pair by its B·A row (and W + B·A row).

    Walks the analyzed layers as WeightWatcher's PEFT iterator does: W is the last analyzed
    non-LoRA layer before the pair; with ``peft_only`` the other layers are not analyzed.
    """
    result: list[_Planned] = []
    pending: list[_Planned] = []  # lora_A rows waiting for their lora_B
    last_a: _Planned | None = None
    last_w: Any = None
    for plan in plans:
        role = "" if plan.skip_reason else lora_role(plan.layer.layer_type, plan.layer.longname)
        if not role:
            if not plan.skip_reason:
                last_w = plan.layer.weight
                if peft_only:
                    plan.skip_reason = "peft=True analyzes only the LoRA products"
            result.append(plan)
        elif role == "other":
            plan.skip_reason = "LoRA tensor that is neither lora_A nor lora_B"
            result.append(plan)
        elif role == "A":
            if last_a is not None:
                last_a.skip_reason = "lora_A without a lora_B after it"
                result.append(last_a)
            last_a = plan
        elif last_a is None:
            plan.skip_reason = "lora_B without a lora_A before it"
            result.append(plan)
        else:
            a_plan, base = last_a, None if peft_only else last_w
            try:
                product = LoraProduct.pair(a_plan.layer.weight, plan.layer.weight)
            except LayerError as exc:
                for p in (a_plan, plan):
                    p.skip_reason = f"LoRA pair not analyzed: {exc}"
                result.extend((a_plan, plan))
                last_a = None
                continue
            scale = (
                scaling.scale(module_of(a_plan.layer.longname), product.rank) if scaling else 1.0
            )
            product.scale = scale
            pending.append(_lora_plan(a_plan, product, "lora_A", "lora_BA"))
            with_base = None
            if base is not None:
                try:
                    with_base = LoraProduct.pair(a_plan.layer.weight, plan.layer.weight, base,
                                                 scale)  # fmt: skip
                except LayerError as exc:
                    plan.skip_reason = f"W + B·A not analyzed: {exc}"
            a_plan.skip_reason = f"analyzed as {pending[-1].layer.longname}"
            result.append(a_plan)
            if with_base is None:
                if not plan.skip_reason:
                    plan.skip_reason = f"analyzed in {pending[-1].layer.longname}"
                result.append(plan)
            else:
                result.append(_Planned(plan.layer, plan.shape, "replaced by its W + B·A row"))
                pending.append(_lora_plan(plan, with_base, "lora_B", "lora_W_plus_AB"))
            # WeightWatcher yields the pair's rows last-in first-out
            result.extend(reversed(pending) if compat else pending)
            pending, last_a = [], None
    if last_a is not None:
        last_a.skip_reason = "lora_A without a lora_B after it"
        result.append(last_a)
    return result


def _weight_identity(weight: Any) -> Any:
    """A key equal for two layers that hold the very same weight memory."""
    from .loaders import LazyTensor

    if isinstance(weight, LazyTensor):
        return weight.identity if weight.identity is not None else id(weight)
    if isinstance(weight, np.ndarray):
        return ("numpy", weight.__array_interface__["data"][0], weight.shape, weight.strides,
                weight.dtype.str)  # fmt: skip
    if type(weight).__module__.startswith("torch") and hasattr(weight, "data_ptr"):
        if weight.device.type == "meta" or weight.layout != __import__("torch").strided:
            return id(weight)
        return ("torch", str(weight.device), weight.data_ptr(), tuple(weight.shape),
                tuple(weight.stride()), str(weight.dtype))  # fmt: skip
    return id(weight)


def _base_row(plan: _Planned, esd_method: str) -> dict[str, Any]:
    layer, shape = plan.layer, plan.shape
    assert shape is not None
    return {
        "layer_id": layer.layer_id, "name": layer.name, "longname": layer.longname,
        "layer_type": layer.layer_type, "N": shape.N, "M": shape.M, "rf": shape.rf,
        "Q": shape.N / shape.M if shape.M else -1.0, "esd_method": esd_method,
    }  # fmt: skip


def _failed_row(row: dict[str, Any], reason: str, *, compat: bool) -> dict[str, Any]:
    """A layer whose spectrum could not be computed: NaN metrics, -1 for counts."""
    nan = math.nan
    for col in WW_COLUMNS:
        if col not in row:
            row[col] = -1 if col in INT_COLUMNS else nan
    row.update(has_esd=False, status="failed", status_reason=reason, fit_method="",
               warning=warning_label(nan, True, compat=compat))  # fmt: skip
    return row


def _fit_columns(fit: PowerLawFit, *, compat: bool) -> dict[str, Any]:
    failed = fit.status != "success"
    if failed and compat:  # WeightWatcher's defaults for a failed fit
        alpha, D, sigma, xmin, spikes, xmax = -1.0, -1.0, -1.0, -1.0, -1, math.nan
    else:
        alpha, D, sigma, xmin, spikes, xmax = (
            fit.alpha, fit.D, fit.sigma, fit.xmin, fit.num_pl_spikes, fit.xmax)  # fmt: skip
        if failed:
            spikes = -1
        elif compat and fit.method == "small_n" and fit.num_fit < 8 and fit.xmin_index == 0:
            # WeightWatcher computes sigma before its small-n fallback sets alpha
            sigma = -1.0 / math.sqrt(fit.num_fit)
    return {
        "alpha": alpha, "D": D, "sigma": sigma, "xmin": xmin, "xmax": xmax,
        "num_pl_spikes": spikes, "status": "failed" if failed else "success",
        "status_reason": f"power-law fit failed: {fit.reason}" if failed else "",
        "fit_method": fit.method, "warning": warning_label(alpha, failed, compat=compat),
    }  # fmt: skip


#: pandas' default string dtype (what dtype="str" means), built once: parsing the name per
#: column costs more than building the column.
_STRING_DTYPE = pd.array([], dtype="str").dtype
#: Its array class: _from_sequence is the ExtensionArray constructor pd.array() dispatches
#: to, without pd.array's type inference (about half the cost per column).
_STRING_ARRAY = _STRING_DTYPE.construct_array_type()


def _column_names(option_columns: Sequence[str] = (), our_columns: Sequence[str] = ()) -> list[str]:
    """The table's columns: WeightWatcher's, with those its options add, sorted by name after
    layer_id and name as WeightWatcher sorts them; then ours."""
    return [*WW_COLUMNS[:2], *sorted([*WW_COLUMNS[2:], *option_columns]), *EXTRA_COLUMNS,
            *our_columns]  # fmt: skip


def _table_columns(
    rows: list[dict[str, Any]], analyzed: list[int], columns: dict[str, Any], *,
    option_columns: Sequence[str] = (), int_columns: frozenset[str] = frozenset(),
    our_columns: Sequence[str] = (), compat: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The table's columns with WeightWatcher's dtypes: NumPy arrays, and lists of str.

    ``rows`` hold each layer's own values (ids, names, shape, and everything for a failed
    layer); ``columns`` hold arrays of the analyzed layers' values, which sit at positions
    ``analyzed``.
    """
    n = len(rows)
    at = np.array(analyzed, dtype=np.intp)
    data: dict[str, Any] = {}
    for col in _column_names(option_columns, our_columns):
        if col in columns and len(at) == n:
            values = columns[col]
        else:
            is_int = col in INT_COLUMNS or col in int_columns
            # an option column of a failed layer
            missing = -1 if is_int else "" if col in STRING_COLUMNS else math.nan
            values = [row.get(col, missing) for row in rows]
            if col in columns:
                values = np.array(values, dtype=object)
                values[at] = columns[col]
        if col in INT_COLUMNS or col in int_columns:
            data[col] = np.asarray(values, dtype=np.int64)
        elif col in ("has_esd", PEFT_COLUMN):
            data[col] = np.asarray(values, dtype=bool)
        elif col in STRING_COLUMNS:
            data[col] = [str(v) for v in values]
        else:
            data[col] = np.asarray(values, dtype=np.float64)
    if compat and n and all(s == "failed" for s in data["status"]):
        # WeightWatcher's -1 defaults of a failed fit stay Python ints when no fit succeeded
        for col in ("alpha", "D", "sigma", "xmin"):
            if (data[col] == -1).all():
                data[col] = data[col].astype(np.int64)
    return data


def _to_frame(columns: dict[str, Any]) -> pd.DataFrame:
    """The DataFrame of _table_columns()' result (str columns in pandas' string dtype)."""
    return frame_from_columns({
        col: _STRING_ARRAY._from_sequence(values, dtype=_STRING_DTYPE)
        if isinstance(values, list) else values
        for col, values in columns.items()
    })  # fmt: skip


def _to_rows(columns: dict[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """_table_columns()' result as column names and rows of plain Python values."""
    lists = [values.tolist() if isinstance(values, np.ndarray) else values
             for values in columns.values()]  # fmt: skip
    return list(columns), list(zip(*lists, strict=True))


def analyze(
    model: Any,
    *,
    layers: Sequence[Any] | Any | None = None,
    min_evals: int = 8,
    max_evals: int = 15000,
    max_N: int = 50000,
    conv2d_norm: bool = True,
    esd_method: EsdMethod = "svd",
    compat: Literal["weightwatcher-0.7.7"] | None = None,
    threads: int | None = None,
    tolerance: float = WEAK_RANK_TOLERANCE,
    peft: bool | Literal["with_base"] = False,
    randomize: bool = False,
    seed: int | None = None,
    mp_fit: bool = False,
    detX: bool = False,
    fit: Literal["PL", "TPL", "E_TPL", "EXP", "LOGNORMAL"] = "PL",
    compare: bool = False,
    fix_fingers: Literal["clip_xmax", "xmin_peak"] | None = None,
    max_fingers: int = 10,
    xmax: float | Literal["force"] | None = None,
    device: Literal["cpu", "cuda", "auto"] = "cpu",
    alpha_ci: bool | float = False,
    _spectra_sink: dict[int, np.ndarray] | None = None,
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
        ``"svd"`` (float64 gesdd, WeightWatcher's numbers) or ``"gram"`` (faster; rank
        columns less reliable, see :func:`hts_fast.esd`), or ``"randomized"``: layers whose
        smaller side is >= 1024 get a certified top-k ESD and fit
        (hts_fast.esd_randomized.certified_spectrum); entropy, sv_min, log_alpha_norm are
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
        other layers; a ``peft`` column marks the product rows (see hts_fast.peft).
    randomize
        Also decompose each layer's weights with their entries shuffled: columns
        max_rand_eval, rand_distance, ww_softrank, ww_maxdist (hts_fast.randomize).
        With ``randomize`` the shuffled spectra also get a Marchenko-Pastur fit: columns
        rand_num_spikes, num_traps, rand_sigma_mp, rand_mp_softrank, rand_W_scale,
        rand_bulk_max, rand_bulk_min.
    seed
        Seeds the shuffles (default mode: None means 0; compat: None uses the global
        ``np.random`` state, as WeightWatcher does).
    mp_fit
        Marchenko-Pastur fit of each ESD's bulk: num_spikes, sigma_mp, mp_softrank, W_scale,
        bulk_max, bulk_min (hts_fast.marchenko_pastur).
    detX
        The detX constraint: detX_num, detX_val, detX_val_unrescaled, num_ERG_spikes,
        ERG_gap.
    fit
        ``"PL"`` (power law, the default), ``"TPL"`` (truncated power law, xmin over every
        eigenvalue) or ``"E_TPL"`` (xmin around the ESD's peak; compat: WeightWatcher 0.7.7's
        range and alpha > 1, default: the corrected range): alpha, xmin and D of the TPL fit,
        its rate in a ``Lambda`` column, sigma NaN (hts_fast.tpl_search); our columns
        loglik, alpha_se and Lambda_se after the others. For model comparison (not in
        compat): ``"EXP"``, the exponential tail with xmin by the smallest KS distance (its
        rate in ``Lambda``; our columns loglik, Lambda_se), and ``"LOGNORMAL"``, the
        lognormal truncated at the power law's xmin (our columns lognormal_mu,
        lognormal_sigma, loglik); alpha and sigma are NaN for both (hts_fast.alt_fits).
    fix_fingers, max_fingers
        ``"clip_xmax"``: refit with the 2, 3, ... largest eigenvalues clipped ("fingers"
        from finite size) and keep the first fit whose alpha drops by more than 1 (stop when
        alpha <= 2), WeightWatcher's rule; columns raw_alpha (the unclipped fit's alpha) and
        num_fingers. ``"xmin_peak"``: xmin searched only in [0.95, 1.5) times the ESD's peak
        (hts_fast.tpl_search.peak_xmin_range); WeightWatcher 0.7.7 fails every layer there
        (its own fitter cannot take an xmin range), which compat reproduces. Compat reproduces WeightWatcher's reset of max_fingers to 10 whenever it
        is below half the number of eigenvalues and its num_fingers = clipped count - 1;
        the default uses max_fingers as given and reports the clipped count.
    xmax
        Upper end of the fitted tail: None, a number (eigenvalues above it leave the fit) or
        ``"force"`` (the largest eigenvalue). Compat with fit="TPL"/"E_TPL" follows powerlaw
        as WeightWatcher 0.7.7 calls it: D's CDF is renormalised at xmax; ``"force"`` with
        fit="PL" is invalid in compat and changes nothing by default (hts_fast.xmax).
    alpha_ci
        True (a 95 % interval) or a level in (0, 1): our columns alpha_ci_low and
        alpha_ci_high, the percentile bootstrap interval of alpha with the xmin search rerun
        on each of 1,000 resamples (hts_fast.bootstrap_alpha), seeded by ``seed`` and the
        layer id. Plain power-law fits only.
    device
        ``"cpu"``; ``"cuda"``: the eigensolves on the GPU for a model whose weights are
        already there (with esd_method="gram"; nothing is moved between devices, a host
        model raises RuntimeError); ``"auto"``: the GPU when the weights are on it
        (hts_fast.device).
    compare
        Likelihood-ratio tests of the power-law tail (fit="PL") against the exponential,
        lognormal and truncated power law at its xmin: columns pl_exp_R, pl_exp_p,
        pl_lognormal_R, pl_lognormal_p, pl_tpl_R, pl_tpl_p (hts_fast.compare).

    Returns
    -------
    pandas.DataFrame
        One row per analyzed layer: WeightWatcher's 32 columns in its order, then
        ``status_reason``, ``fit_method``, ``esd_method``. ``df.attrs["skipped"]`` is a
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
        detX=detX, fit=fit, compare=compare, fix_fingers=fix_fingers, max_fingers=max_fingers,
        xmax=xmax, device=device, alpha_ci=alpha_ci,
    )  # fmt: skip
    return _analyze_models([model], options, spectra_sink=_spectra_sink, raise_errors=True)[0]


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
    return _analyze_batch(models, options, as_rows=False)


def _analyze_batch(models: Sequence[Any], options: dict[str, Any], *, as_rows: bool) -> list[Any]:
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
    esd_method: EsdMethod = "svd"
    compat: str | None = None
    threads: int | None = None
    tolerance: float = WEAK_RANK_TOLERANCE
    peft: bool | str = False
    randomize: bool = False
    seed: int | None = None
    mp_fit: bool = False
    detX: bool = False
    fit: str = "PL"
    compare: bool = False
    fix_fingers: str | None = None
    max_fingers: int = 10
    xmax: Xmax = None
    device: str = "cpu"
    alpha_ci: bool | float = False

    def __post_init__(self) -> None:
        _check_compat(self.compat)
        object.__setattr__(self, "peft", check_peft(self.peft))
        fit, fix_fingers = self.fit, self.fix_fingers
        if fit not in ("PL", "TPL", "E_TPL", *ALT_FITS):
            msg = f"fit must be 'PL', 'TPL', 'E_TPL', 'EXP' or 'LOGNORMAL', got {fit!r}"
            raise ValueError(msg)
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
        object.__setattr__(self, "alpha_ci", _check_alpha_ci(self.alpha_ci, self))
        if self.esd_method == "randomized":
            esd_randomized.check_options(compat=self.compat, peft=self.peft,
                                         randomize=self.randomize, mp_fit=self.mp_fit,
                                         detX=self.detX, fit=fit, fix_fingers=fix_fingers,
                                         compare=self.compare)  # fmt: skip


#: our columns with alpha_ci: the bootstrap interval of alpha (hts_fast.bootstrap_alpha)
ALPHA_CI_COLUMNS = ["alpha_ci_low", "alpha_ci_high"]
#: resamples per layer for alpha_ci
ALPHA_CI_RESAMPLES = 1000


def _check_alpha_ci(alpha_ci: Any, opt: _Options) -> float | None:
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


def _alpha_ci_columns(
    pooled: list[tuple[_Planned, np.ndarray, Any]], fits: list[PowerLawFit], level: float,
    seed: int | None, threads: int,
) -> dict[str, list[float]]:  # fmt: skip
    """Bootstrap interval of each fitted layer's alpha; layer k's resamples are seeded by
    (seed, layer_id), so a layer's interval does not depend on the other layers."""
    from .bootstrap import bootstrap_alpha

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


@dataclass
class _Model:
    """One model of a batch: its index in the batch, its layers and the analyzed ones."""

    index: int
    plans: list[_Planned]
    active: list[_Planned]


def _analyze_models(
    models: list[Any], opt: _Options, *, spectra_sink: dict[int, np.ndarray] | None = None,
    raise_errors: bool = False, as_rows: bool = False,
) -> list[Any]:  # fmt: skip
    """The pipeline behind analyze() and analyze_many(): plan every model, then read, ESD,
    fit and measure all their layers together, then cut the result into one table each.

    Returns per model its DataFrame or, with ``as_rows`` (for scans, no pandas), a dict with
    ``table`` (column names, rows of Python values), ``summary`` and ``seconds``; or the
    exception that stopped the model (raised instead with ``raise_errors``).
    """
    compat, fit, fix_fingers = opt.compat, opt.fit, opt.fix_fingers
    n_threads = _threads.resolve_threads(opt.threads)
    timer = StageTimer()
    results: list[pd.DataFrame | Exception | None] = [None] * len(models)
    batch: list[_Model] = []
    with timer.stage("extract"):
        for k, model in enumerate(models):
            try:
                plans = _plan(model, opt.layers, opt.min_evals, opt.max_evals, opt.max_N, compat,
                              opt.peft)  # fmt: skip
            except Exception as exc:
                if raise_errors:
                    raise
                results[k] = exc
                continue
            batch.append(_Model(k, plans, [p for p in plans if not p.skip_reason]))
        active = [plan for member in batch for plan in member.active]
        device = resolve_device(opt.device, [p.layer.weight for p in active], opt.esd_method)

    # 1-2. read weights and compute ESDs chunk by chunk, each chunk one batch across threads;
    # the next chunk is read by a background thread while this one is decomposed, and a
    # chunk's weights (and a file's mapped pages) are released once its ESDs are done
    pooled: list[tuple[_Planned, np.ndarray, list[np.ndarray]]] = []
    # the plain power-law fit runs inside the ESD threads, layer by layer (esd.layer_spectra)
    fused = (fit == "PL" and not fix_fingers and device == "cpu"
             and opt.esd_method in ("svd", "gram") and opt.xmax in (None, "force"))  # fmt: skip
    fused_fits: list[PowerLawFit] = []
    chunks = _chunks(active, n_threads)
    stream = compat_stream(opt.seed) if opt.randomize and compat else None  # one for all chunks

    def read(k: int) -> tuple[list[_Owner], list[np.ndarray], list[float]]:
        return _extract(chunks[k], compat, opt.conv2d_norm, opt.esd_method, device)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hts_fast-read") as reader:
        upcoming = None
        for k in range(len(chunks)):
            with timer.stage("extract"):
                owners, matrices, scales = upcoming.result() if upcoming else read(k)
                upcoming = reader.submit(read, k + 1) if k + 1 < len(chunks) else None
            with timer.stage("esd+fit" if fused else "esd"):
                if fused:
                    done, chunk_fits = _layer_spectra(owners, matrices, scales, opt.esd_method,
                                                      compat, n_threads)  # fmt: skip
                    pooled.extend(done)
                    fused_fits.extend(chunk_fits)
                elif device == "cuda":
                    spectra = device_spectra(matrices, scales)
                elif opt.esd_method == "randomized":
                    spectra = esd_randomized.layer_spectra(owners, matrices, scales,
                                                           threads=n_threads, seed=opt.seed)  # fmt: skip
                else:
                    spectra = esd_batch(matrices, method=opt.esd_method, scales=scales,
                                        threads=n_threads, on_error="return")  # fmt: skip
                if not fused:
                    done = _pool(owners, spectra, compat)
                    pooled.extend(done)
            if opt.randomize:
                with timer.stage("randomize"):
                    _randomize(owners, matrices, scales, done, compat=bool(compat), seed=opt.seed,
                               esd_method=opt.esd_method, threads=n_threads,
                               stream=stream)  # fmt: skip
            del owners, matrices, scales

    # 3. power-law fits in one batch, then the metrics
    with timer.stage("fit"):
        if fused:
            fits = fused_fits
        elif fix_fingers == "clip_xmax":
            fits, raw_alphas, fingers = _clipped_fits(pooled, opt.max_fingers, compat, n_threads)
        elif fix_fingers == "xmin_peak":
            fits = _peak_fits(pooled, compat, n_threads)
        elif fit in ALT_FITS:
            fits, tpl_columns = _alt_fits(pooled, fit, n_threads)
        else:  # the eigenvalues up to xmax (all of them without one) enter the fit
            fit_pooled = [(p, fitted_evals(e, opt.xmax), parts) for p, e, parts in pooled]
            if fit == "PL":
                fits = fit_powerlaw_batch([evals for _, evals, _ in fit_pooled],
                                          threads=n_threads)  # fmt: skip
            else:
                fits, tpl_columns = _tpl_fits(fit_pooled, fit, compat, n_threads, opt.xmax)
    with timer.stage("metrics"), np.errstate(all="ignore"):
        columns = _metric_columns(pooled, fits, compat=bool(compat), tolerance=opt.tolerance)
        if opt.esd_method == "randomized":  # top-k ESDs: exact norms, NaN where all are needed
            esd_randomized.patch_columns(pooled, columns)
        option_columns = []
        if fix_fingers == "clip_xmax":
            option_columns += ["raw_alpha", "num_fingers"]
            columns["raw_alpha"], columns["num_fingers"] = raw_alphas, fingers
        if fit in ("TPL", "E_TPL", "EXP"):
            option_columns.append("Lambda")
        if fit != "PL":
            columns.update(tpl_columns)
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
            if opt.mp_fit:
                columns[PHASE_COLUMN] = phases(columns, mp_ok)
        ours = [PHASE_COLUMN] if opt.mp_fit else []
        if fit != "PL":
            ours += ALT_FIT_COLUMNS.get(fit, TPL_COLUMNS)
        if opt.alpha_ci:
            ours += ALPHA_CI_COLUMNS
            columns.update(_alpha_ci_columns(pooled, fits, opt.alpha_ci, opt.seed, n_threads))
        if opt.compare:
            ours += COMPARE_COLUMNS
            tests = [compare_tail(evals, f.xmin, f.alpha).columns() if f.status == "success"
                     else dict.fromkeys(COMPARE_COLUMNS, math.nan)
                     for (_, evals, _), f in zip(pooled, fits, strict=True)]  # fmt: skip
            for col in COMPARE_COLUMNS:
                columns[col] = [t[col] for t in tests]
        int_columns = OPTION_INT_COLUMNS | {"num_fingers"} | ({"ERG_gap"} if compat else set())
        layout = {"option_columns": option_columns, "int_columns": frozenset(int_columns),
                  "our_columns": ours}  # fmt: skip
        owner = {id(plan): n for n, member in enumerate(batch) for plan in member.active}
        rows_of = [[] for _ in batch]  # pooled rows of each model
        for at, (plan, _, _) in enumerate(pooled):
            rows_of[owner[id(plan)]].append(at)
        for n, member in enumerate(batch):
            table = _model_table(member, pooled, rows_of[n], columns, layout, compat=compat)
            if as_rows:
                results[member.index] = {"table": _to_rows(table),
                                         "summary": summary_of_columns(table, compat=compat)}  # fmt: skip
                continue
            frame = _to_frame(table)
            frame.attrs["compat"] = compat
            frame.attrs["skipped"] = _skipped_frame(member.plans)
            if spectra_sink is not None:  # for plots (hts_fast.report): row index -> its ESD
                position = {id(plan): k for k, plan in enumerate(member.active)}
                spectra_sink.update({position[id(pooled[at][0])]: pooled[at][1]
                                     for at in rows_of[n]})  # fmt: skip
            results[member.index] = frame
    share = {stage: seconds / max(1, len(batch)) for stage, seconds in timer.seconds.items()}
    for member in batch:
        result = results[member.index]
        if as_rows:
            result["seconds"] = sum(share.values())
        else:
            result.attrs["seconds"] = dict(share)
    return results


def _model_table(
    member: _Model, pooled: list[tuple[_Planned, np.ndarray, list[np.ndarray]]],
    picked: list[int], columns: dict[str, Any], layout: dict[str, Any], *, compat: str | None,
) -> dict[str, Any]:  # fmt: skip
    """One model's table columns from the batch's (its analyzed layers at ``picked``)."""
    position = {id(plan): k for k, plan in enumerate(member.active)}
    if len(picked) == len(pooled):
        own = columns
    else:
        take = np.array(picked, dtype=np.intp)
        own = {col: values[take] if isinstance(values, np.ndarray)
               else [values[at] for at in picked] for col, values in columns.items()}  # fmt: skip
    return _table_columns([p.row for p in member.active],
                          [position[id(pooled[at][0])] for at in picked], own, **layout,
                          compat=compat)  # fmt: skip


#: A chunk reads weights worth max(CHUNK_MIN_BYTES, the largest layer) in float64, at most
#: CHUNK_MAX_BYTES, but at least one layer per thread. Two chunks are in memory at once (one
#: decomposed, the next being read), so peak memory stays a small multiple of the largest
#: layer (README "Checkpoint files").
CHUNK_MIN_BYTES = 128 * 2**20
CHUNK_MAX_BYTES = 256 * 2**20


def _float64_bytes(plan: _Planned) -> int:
    return 8 * math.prod(getattr(plan.layer.weight, "shape", ()) or (0,))


def _chunks(active: list[_Planned], threads: int) -> list[list[_Planned]]:
    """Split the layers into consecutive chunks of weights to read and decompose together."""
    sizes = [_float64_bytes(p) for p in active]
    largest = max(sizes, default=0)
    # room for `threads` layers as large as the largest, so that one big layer does not leave
    # the other threads idle at the end of its chunk
    budget = min(CHUNK_MAX_BYTES, max(CHUNK_MIN_BYTES, threads * largest))
    if sum(sizes) <= budget:
        return [list(active)] if active else []
    chunks: list[list[_Planned]] = [[]]
    size = 0
    for plan, nbytes in zip(active, sizes, strict=True):
        if chunks[-1] and size + nbytes > budget and len(chunks[-1]) >= threads:
            chunks.append([])
            size = 0
        chunks[-1].append(plan)
        size += nbytes
    return chunks if chunks[0] else []


def _extract(
    active: list[_Planned], compat: str | None, conv2d_norm: bool, esd_method: str,
    device: str = "cpu",
) -> tuple[list[_Owner], list[np.ndarray], list[float]]:  # fmt: skip
    """Read each layer's weight and cut it into matrices; failures become failed rows."""
    matrices: list[np.ndarray] = []
    scales: list[float] = []
    owners: list[_Owner] = []
    for plan in active:
        plan.row = _base_row(plan, esd_method)
        try:
            if device == "cuda":
                parts = device_matrices(plan.layer.weight, plan.layer.layer_type,
                                        conv2d_norm=conv2d_norm)  # fmt: skip
            elif isinstance(plan.layer.weight, LoraProduct):
                parts = plan.layer.weight.layer_matrices(compat)
            else:
                array = read_weight(plan.layer.weight, compat)
                parts = layer_matrices(array, plan.layer.layer_type, compat=compat,
                                       conv2d_norm=conv2d_norm)  # fmt: skip
        except (LayerError, TypeError, ValueError) as exc:
            _failed_row(plan.row, str(exc), compat=bool(compat))
            continue
        owners.append((plan, len(matrices), len(parts.matrices), parts.keep_top))
        matrices.extend(parts.matrices)
        scales.extend([parts.scale] * len(parts.matrices))
    return owners, matrices, scales


def _layer_spectra(
    owners: list[_Owner], matrices: list[np.ndarray], scales: list[float], method: str,
    compat: str | None, threads: int,
) -> tuple[list[tuple[_Planned, np.ndarray, Any]], list[PowerLawFit]]:  # fmt: skip
    """_pool() and the power-law fits of a chunk in one compiled pass (esd.layer_spectra);
    each pooled entry carries its LayerSliceStats instead of its matrices' spectra."""
    layers = [(first, count, keep_top) for _, first, count, keep_top in owners]
    Ns = [plan.shape.N if plan.shape else 0 for plan, _, _, _ in owners]
    results = layer_spectra(matrices, scales, layers, Ns, method=method, threads=threads)
    pooled, fits = [], []
    for (plan, _, _, _), result in zip(owners, results, strict=True):
        if isinstance(result, Exception):
            detail = getattr(result, "detail", f": {result}")
            _failed_row(plan.row, f"weight{detail}", compat=bool(compat))
            continue
        evals, stats, fit = result
        pooled.append((plan, evals, stats))
        fits.append(fit)
    return pooled, fits


def _pool(
    owners: list[_Owner], spectra: list[Any], compat: str | None
) -> list[tuple[_Planned, np.ndarray, list[np.ndarray]]]:
    """Concatenate each layer's spectra into its sorted ESD; a failed matrix fails its layer."""
    pooled: list[tuple[_Planned, np.ndarray, list[np.ndarray]]] = []
    for plan, first, count, keep_top in owners:
        parts = spectra[first : first + count]
        error = next((p for p in parts if isinstance(p, Exception)), None)
        if error is not None:
            detail = getattr(error, "detail", f": {error}")  # esd_batch's message, renamed
            _failed_row(plan.row, f"weight{detail}", compat=bool(compat))
            continue
        evals = np.sort(np.concatenate(parts)) if count > 1 else parts[0]
        if keep_top is not None:
            evals = evals[-keep_top:]
            parts = [evals]
        pooled.append((plan, evals, parts))
    return pooled


#: WeightWatcher's clip_xmax constants: a clipped fit wins when alpha drops by more than
#: FINGER_THRESHOLD; the search stops once alpha <= FINGER_MIN_ALPHA.
FINGER_THRESHOLD, FINGER_MIN_ALPHA = 1.0, 2.0


def _clipped_fits(
    pooled: list[tuple[_Planned, np.ndarray, list[np.ndarray]]], max_fingers: int,
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


def _peak_fits(
    pooled: list[tuple[_Planned, np.ndarray, list[np.ndarray]]], compat: str | None,
    threads: int,
) -> list[PowerLawFit]:  # fmt: skip
    """fix_fingers="xmin_peak": the power-law fit with xmin restricted to the peak's range."""
    from .fits import powerlaw_curve
    from .tpl_search import peak_xmin_range

    if compat:  # WeightWatcher hands WWFit a (low, high) xmin and the fit fails
        reason = "fix_fingers='xmin_peak' needs the powerlaw package in WeightWatcher 0.7.7"
        return [PowerLawFit.failed(reason) for _ in pooled]
    rows = []
    for _, evals, _ in pooled:
        x = evals[evals > DEFAULT_THRESHOLD]
        try:
            curve = powerlaw_curve(x, threads=threads)
        except ValueError as exc:
            rows.append(PowerLawFit.failed(str(exc)))
            continue
        low, high = peak_xmin_range(x)
        inside = np.flatnonzero((curve.xmins >= low) & (curve.xmins < high) & (curve.alphas > 1))
        if len(inside) == 0:
            rows.append(PowerLawFit.failed(f"no xmin candidate with alpha > 1 in [{low:.6g}, "
                                           f"{high:.6g})"))  # fmt: skip
            continue
        k = int(inside[np.argmin(curve.Ds[inside])])  # the first on ties
        xmin = float(curve.xmins[k])
        rows.append(PowerLawFit(alpha=float(curve.alphas[k]), xmin=xmin, xmax=float(x[-1]),
                                D=float(curve.Ds[k]), sigma=float(curve.sigmas[k]),
                                num_pl_spikes=int(len(x) - k), num_fit=len(x),
                                method="xmin_peak", status="success",
                                xmin_index=k))  # fmt: skip
    return rows


def _tpl_fits(
    pooled: list[tuple[_Planned, np.ndarray, list[np.ndarray]]], fit: str, compat: str | None,
    threads: int, xmax: Xmax = None,
) -> tuple[list[PowerLawFit], dict[str, list[float]]]:  # fmt: skip
    """Truncated power-law fits of every ESD as PowerLawFit rows (sigma NaN), and their
    Lambda, log-likelihood and standard-error columns (TPL_COLUMNS); fit_method records the
    E_TPL range variant. ``xmax``: see hts_fast.xmax."""
    from .tpl_search import fit_truncated_powerlaw

    variant = ("weightwatcher-0.7.7" if compat else "corrected") if fit == "E_TPL" else None
    label = f"E_TPL[{variant}]" if variant else "TPL"
    rows: list[PowerLawFit] = []
    extra: dict[str, list[float]] = {col: [] for col in ("Lambda", *TPL_COLUMNS)}
    for _, evals, _ in pooled:
        search = fit_truncated_powerlaw(evals, variant=variant, threads=threads,
                                        alpha_above_one=bool(compat),
                                        cdf_xmax=cdf_xmax(evals, xmax, compat))  # fmt: skip
        tpl = search.fit
        if tpl.status == "failed":
            rows.append(PowerLawFit.failed(tpl.reason))
            for values in extra.values():
                values.append(math.nan)
            continue
        index = int(np.searchsorted(evals, tpl.xmin))
        rows.append(PowerLawFit(alpha=tpl.alpha, xmin=tpl.xmin, xmax=float(evals[-1]), D=tpl.D,
                                sigma=math.nan, num_pl_spikes=tpl.n, num_fit=tpl.n,
                                method=label, status="success", reason="",
                                xmin_index=index))  # fmt: skip
        for col, value in (("Lambda", tpl.Lambda), ("loglik", tpl.loglik),
                           ("alpha_se", tpl.alpha_se), ("Lambda_se", tpl.Lambda_se)):  # fmt: skip
            extra[col].append(value)
    return rows, extra


def _alt_fits(
    pooled: list[tuple[_Planned, np.ndarray, Any]], fit: str, threads: int
) -> tuple[list[PowerLawFit], dict[str, list[float]]]:  # fmt: skip
    """Exponential (xmin by KS) or lognormal (above the power law's xmin) fits as PowerLawFit
    rows (alpha and sigma NaN) and their own columns (ALT_FIT_COLUMNS)."""
    from .alt_fits import fit_exponential_batch, fit_lognormal

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


def _randomize(
    owners: list[_Owner], matrices: list[np.ndarray], scales: list[float],
    done: list[tuple[_Planned, np.ndarray, list[np.ndarray]]], *, compat: bool,
    seed: int | None, esd_method: str, threads: int, stream: Any = None,
) -> None:  # fmt: skip
    """Shuffled-weights columns of the chunk's analyzed layers, stored in ``plan.extra``."""
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
    columns = randomized_columns(layers, seed=seed, compat=compat, esd_method=esd_method,
                                 threads=threads, stream=stream)  # fmt: skip
    for k, (plan, _, _) in enumerate(done):
        plan.extra.update({col: columns[col][k] for col in RANDOMIZE_COLUMNS})
        plan.extra["rand_evals"] = columns["rand_evals"][k]


def _spectral_columns(
    pooled: list[tuple[_Planned, np.ndarray, list[np.ndarray]]], columns: dict[str, Any], *,
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
    pooled: list[tuple[_Planned, np.ndarray, list[np.ndarray]]], fits: list[PowerLawFit], *,
    compat: bool, tolerance: float,
) -> dict[str, Any]:  # fmt: skip
    """ESD, fit and norm columns of the analyzed layers, as arrays in ``pooled`` order."""
    if not pooled:
        return {}
    fit_rows = [_fit_columns(fit, compat=compat) for fit in fits]
    columns: dict[str, Any] = {key: [r[key] for r in fit_rows] for key in fit_rows[0]}
    N = np.array([plan.row["N"] for plan, _, _ in pooled], dtype=np.float64)
    alpha = np.array(columns["alpha"], dtype=np.float64)
    columns.update(batch_norm_metrics([evals for _, evals, _ in pooled], N, alpha,
                                      compat=compat, tolerance=tolerance))  # fmt: skip
    if isinstance(pooled[0][2], LayerSliceStats):  # computed with the ESDs (esd.layer_spectra)
        columns.update(LayerSliceStats.columns([stats for _, _, stats in pooled], compat=compat))
    else:
        slices = [part for _, _, parts in pooled for part in parts]
        owner = np.repeat(np.arange(len(pooled)), [len(parts) for _, _, parts in pooled])
        columns.update(batch_slice_stats(slices, owner, N, len(pooled), compat=compat))
    columns["has_esd"] = [True] * len(pooled)
    return columns


#: The skipped-layers table's columns.
SKIPPED_COLUMNS = ["layer_id", "name", "longname", "layer_type", "skip_reason"]
_NO_SKIPPED = pd.DataFrame([], columns=SKIPPED_COLUMNS)  # copied: building one costs 0.1 ms


def _skipped_frame(plans: list[_Planned]) -> pd.DataFrame:
    """The layers not analyzed and why (an empty table when every layer was)."""
    if not any(p.skip_reason for p in plans):
        return _NO_SKIPPED.copy()
    rows = [
        {"layer_id": p.layer.layer_id, "name": p.layer.name, "longname": p.layer.longname,
         "layer_type": p.layer.layer_type, "skip_reason": p.skip_reason}
        for p in plans if p.skip_reason
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=SKIPPED_COLUMNS)


def describe(
    model: Any,
    *,
    layers: Sequence[Any] | Any | None = None,
    min_evals: int = 8,
    max_evals: int = 15000,
    max_N: int = 50000,
    compat: Literal["weightwatcher-0.7.7"] | None = None,
    peft: bool | Literal["with_base"] = False,
) -> pd.DataFrame:
    """Return the layer table without computing any spectrum.

    Every layer is listed: ``layer_id, name, M, N, Q, layer_type, longname, num_evals, rf``
    (WeightWatcher's describe() columns; ``num_evals`` = M*rf) plus ``analyzed`` and
    ``skip_reason``. Shapes are read from the tensors' metadata only.
    """
    compat = _check_compat(compat)
    peft = check_peft(peft)
    rows = []
    for plan in _plan(model, layers, min_evals, max_evals, max_N, compat, peft):
        shape = plan.shape
        N, M, rf = (shape.N, shape.M, shape.rf) if shape else (-1, -1, -1)
        rows.append({
            "layer_id": plan.layer.layer_id, "name": plan.layer.name, "M": M, "N": N,
            "Q": N / M if M > 0 else -1.0, "layer_type": plan.layer.layer_type,
            "longname": plan.layer.longname, "num_evals": _num_evals(plan, compat), "rf": rf,
            "analyzed": not plan.skip_reason, "skip_reason": plan.skip_reason,
        })  # fmt: skip
    return pd.DataFrame(rows, columns=DESCRIBE_COLUMNS)


def _num_evals(plan: _Planned, compat: str | None) -> int:
    """How many eigenvalues the layer's ESD will have: M*rf, or a LoRA product's rank."""
    weight, shape = plan.layer.weight, plan.shape
    if shape is None:
        return -1
    if isinstance(weight, LoraProduct) and (weight.base is None or compat):
        return weight.rank
    return shape.M * shape.rf


def summary(details: pd.DataFrame) -> dict[str, float]:
    """Mean of each summary metric over the layers (WeightWatcher's get_summary()).

    Columns: log_norm, alpha, alpha_weighted, log_alpha_norm, log_spectral_norm,
    stable_rank (and mp_softrank when present). In compat mode failed fits count with
    WeightWatcher's alpha of -1; by default only successful fits are averaged.
    """
    wanted = {"status", *SUMMARY_COLUMNS}
    # one conversion of the whole table: pandas' per-column access costs more than the means
    # on small tables
    values = details.to_numpy(dtype=object)
    columns = {col: values[:, k] for k, col in enumerate(details.columns) if col in wanted}
    return summary_of_columns(columns, compat=details.attrs.get("compat"))


def summary_of_columns(columns: dict[str, Any], *, compat: str | None) -> dict[str, float]:
    """summary() of a table given as columns (name -> sequence of one value per layer)."""
    status = columns.get("status")
    keep = None
    if compat is None and status is not None:
        keep = np.array([s == "success" for s in status], dtype=bool)
    means = {}
    for col in SUMMARY_COLUMNS:
        if col in columns:
            values = np.asarray(columns[col], dtype=np.float64)
            if keep is not None:
                values = values[keep]
            values = values[~np.isnan(values)]  # as pandas' mean, NaN skipped
            means[col] = float(values.mean()) if len(values) else math.nan
    return means
