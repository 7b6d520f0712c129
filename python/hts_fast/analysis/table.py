"""The result table: WeightWatcher 0.7.7's columns and dtypes, each layer's row values, the
DataFrame (or plain rows for scans), the skipped-layers table and summary()."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pandas.api.extensions import ExtensionArray

from ..fits.powerlaw import FIT_METHODS, PowerLawFit
from .metrics import warning_label, warning_labels
from .planning import Planned

if TYPE_CHECKING:
    from .layer_spectra import LayerSpectraTable

#: WeightWatcher 0.7.7's 32 analyze() columns, in its order (reference doc 6.1).
WW_COLUMNS = [
    "layer_id", "name", "D", "M", "N", "Q", "alpha", "alpha_weighted", "entropy", "has_esd",
    "lambda_max", "layer_type", "log_alpha_norm", "log_norm", "log_spectral_norm", "longname",
    "matrix_rank", "norm", "num_evals", "num_pl_spikes", "rank_loss", "rf", "sigma",
    "spectral_norm", "stable_rank", "status", "sv_max", "sv_min", "warning", "weak_rank_loss",
    "xmax", "xmin",
]  # fmt: skip

#: Our columns, after WeightWatcher's: esd_method is the route a layer's ESD took ("svd",
#: "gram", "gram32"; hts_fast.analysis.fast_route), esd_error_bound its eigenvalue error
#: bound in W's units squared.
EXTRA_COLUMNS = ["status_reason", "fit_method", "esd_method", "esd_error_bound"]
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
#: our columns with fit="TPL"/"E_TPL": the chosen fit's status (TPL_STATUS_COLUMN:
#: "converged", "power_law", or "alpha_bound" when alpha is held on analyze()'s
#: tpl_alpha_min; "" for a failed row), its log-likelihood (natural log, summed over the tail)
#: and the standard errors of alpha and Lambda from the observed Fisher information
TPL_STATUS_COLUMN = "tpl_status"
TPL_COLUMNS = [TPL_STATUS_COLUMN, "loglik", "alpha_se", "Lambda_se"]
#: fits for model comparison (hts_fast.fits.alternatives) and their columns: the exponential
#: tail's rate is the Lambda column; the lognormal is fitted above the power law's xmin
ALT_FITS = ("EXP", "LOGNORMAL")
ALT_FIT_COLUMNS = {"EXP": ["loglik", "Lambda_se"],
                   "LOGNORMAL": ["lognormal_mu", "lognormal_sigma", "loglik"]}  # fmt: skip
#: our column with base_model: whether the row's spectra are those of W - W_base
BASE_DELTA_COLUMN = "base_delta"
#: our column with mp_fit=True: the 5+1 phases of training (hts_fast.analysis.phases)
PHASE_COLUMN = "phase"
STRING_COLUMNS = {"name", "layer_type", "longname", "status", "warning", *EXTRA_COLUMNS[:3],
                  PHASE_COLUMN, TPL_STATUS_COLUMN}  # fmt: skip
SUMMARY_COLUMNS = ["log_norm", "alpha", "alpha_weighted", "log_alpha_norm", "log_spectral_norm",
                   "stable_rank", "mp_softrank"]  # fmt: skip


def base_row(plan: Planned, esd_method: str) -> dict[str, Any]:
    """A layer's values known before its spectrum: ids, names, type, N, M, rf, Q, esd_method."""
    layer, shape = plan.layer, plan.shape
    assert shape is not None
    return {
        "layer_id": layer.layer_id, "name": layer.name, "longname": layer.longname,
        "layer_type": layer.layer_type, "N": shape.N, "M": shape.M, "rf": shape.rf,
        "Q": shape.N / shape.M if shape.M else -1.0, "esd_method": esd_method,
    }  # fmt: skip


def failed_row(row: dict[str, Any], reason: str, *, compat: bool) -> dict[str, Any]:
    """A layer whose spectrum could not be computed: NaN metrics, -1 for counts."""
    nan = math.nan
    for col in WW_COLUMNS:
        if col not in row:
            row[col] = -1 if col in INT_COLUMNS else nan
    row.update(has_esd=False, status="failed", status_reason=reason, fit_method="",
               warning=warning_label(nan, True, compat=compat))  # fmt: skip
    return row


#: analyze()'s fit option -> the name its failure reasons start with
FIT_KINDS = {"PL": "power-law", "TPL": "truncated power-law", "E_TPL": "E-TPL",
             "EXP": "exponential", "LOGNORMAL": "lognormal"}  # fmt: skip


def fit_columns(fits: Sequence[PowerLawFit], *, compat: bool, kind: str = "power-law"
                ) -> dict[str, Any]:  # fmt: skip
    """The table's fit columns of these fits (see :func:`fit_array_columns`; ``kind``: the
    fit's name in a failure's status_reason)."""
    return fit_array_columns(
        *(np.array([getattr(f, c) for f in fits], dtype=np.float64)
          for c in ("alpha", "D", "sigma", "xmin", "xmax")),
        *(np.array([getattr(f, c) for f in fits], dtype=np.int64)
          for c in ("num_pl_spikes", "num_fit", "xmin_index")),
        np.array([f.method for f in fits], dtype=object),
        np.array([f.status != "success" for f in fits], dtype=bool),
        [f.reason for f in fits], compat=compat, kind=kind)  # fmt: skip


#: fit_method by the kernels' method code
_METHOD_NAMES = np.array([FIT_METHODS[code] for code in sorted(FIT_METHODS)], dtype=object)


def table_fit_columns(table: LayerSpectraTable, *, compat: bool) -> dict[str, Any]:
    """The table's fit columns of the fits in a layer_spectra_table result (every row a
    decomposed layer); a failure's reason is worked out for the failed rows only."""
    failed = table.count("fit_error") != 0
    methods = _METHOD_NAMES[table.count("fit_method")]
    reasons = []
    if failed.any():
        methods[failed] = ""
        reasons = [table.fit(k).reason if bad else "" for k, bad in enumerate(failed.tolist())]
    return fit_array_columns(
        *(table.real(c) for c in ("alpha", "D", "sigma", "xmin", "xmax")),
        *(table.count(c) for c in ("num_pl_spikes", "num_fit", "xmin_index")),
        methods, failed, reasons, compat=compat)  # fmt: skip


def fit_array_columns(
    alpha: np.ndarray, D: np.ndarray, sigma: np.ndarray, xmin: np.ndarray, xmax: np.ndarray,
    spikes: np.ndarray, num_fit: np.ndarray, xmin_index: np.ndarray, method: np.ndarray,
    failed: np.ndarray, reasons: list[str], *, compat: bool, kind: str = "power-law",
) -> dict[str, Any]:  # fmt: skip
    """The fit columns (alpha, D, sigma, xmin, xmax, num_pl_spikes, status, status_reason,
    fit_method, warning) of many fits given as arrays (not modified: an array whose values
    change is copied first; the others are returned as they are).

    A failed fit has NaN values by default; in compat mode WeightWatcher's -1 defaults (xmax
    NaN). Its num_pl_spikes is -1 either way. In compat mode a small-n fit of fewer than 8
    values that fell back to the whole sample gets WeightWatcher's sigma, computed before
    its fallback set alpha: -1 / sqrt(num_fit). A failure's status_reason is "<kind> fit
    failed: <reason>" (the reason alone when it already says which fit failed).
    """
    if compat and (num_fit < 8).any():  # (method is an object array: compared only then)
        quirk = ~failed & (method == "small_n") & (num_fit < 8) & (xmin_index == 0)
        if quirk.any():
            sigma = sigma.copy()
            sigma[quirk] = -1.0 / np.sqrt(num_fit[quirk])
    n = len(failed)
    if failed.any():
        alpha, D, sigma, xmin, xmax, spikes = (a.copy() for a in (alpha, D, sigma, xmin, xmax,
                                                                   spikes))  # fmt: skip
        for values in (alpha, D, sigma, xmin):
            values[failed] = -1.0 if compat else math.nan
        xmax[failed] = math.nan
        spikes[failed] = -1
        status = np.where(failed, "failed", "success").tolist()
        status_reason = [(r if "fit failed" in r else f"{kind} fit failed: {r}") if bad else ""
                         for r, bad in zip(reasons, failed.tolist(), strict=True)]  # fmt: skip
    else:  # the usual case
        status, status_reason = ["success"] * n, [""] * n
    return {
        "alpha": alpha, "D": D, "sigma": sigma, "xmin": xmin, "xmax": xmax,
        "num_pl_spikes": spikes, "status": status, "status_reason": status_reason,
        "fit_method": method.tolist(), "warning": warning_labels(alpha, failed, compat=compat),
    }  # fmt: skip


#: pandas' default string dtype (what ``dtype="str"`` means in the installed pandas).
STRING_DTYPE = pd.array([], dtype="str").dtype


def string_array(values: Any) -> ExtensionArray:
    """A new array of pandas' str dtype holding ``str(v)`` of each value."""
    return pd.array([str(v) for v in values], dtype=STRING_DTYPE)


def column_names(option_columns: Sequence[str] = (), our_columns: Sequence[str] = ()) -> list[str]:
    """The table's columns: WeightWatcher's, with those its options add, sorted by name after
    layer_id and name as WeightWatcher sorts them; then ours."""
    return [*WW_COLUMNS[:2], *sorted([*WW_COLUMNS[2:], *option_columns]), *EXTRA_COLUMNS,
            *our_columns]  # fmt: skip


def table_columns(
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
    names = column_names(option_columns, our_columns)
    # the columns read from the rows, gathered in one pass when every row has them all
    from_rows = [col for col in names if not (col in columns and len(at) == n)]
    gathered = _gather(rows, from_rows)
    data: dict[str, Any] = {}
    for col in names:
        if col in columns and len(at) == n:
            values = columns[col]
        elif gathered is not None and col not in columns:
            values = gathered[col]
        else:
            is_int = col in INT_COLUMNS or col in int_columns
            # an option column of a failed layer
            missing = -1 if is_int else "" if col in STRING_COLUMNS else math.nan
            values = [row.get(col, missing) for row in rows]
            if col in columns:
                values = np.array(values, dtype=object)
                values[at] = columns[col]
        dtype = _column_dtype(col, int_columns)
        data[col] = list(map(str, values)) if dtype is None else np.asarray(values, dtype=dtype)
    if compat and n and all(s == "failed" for s in data["status"]):
        # WeightWatcher's -1 defaults of a failed fit stay Python ints when no fit succeeded
        for col in ("alpha", "D", "sigma", "xmin"):
            if (data[col] == -1).all():
                data[col] = data[col].astype(np.int64)
    return data


def _gather(rows: list[dict[str, Any]], keys: list[str]) -> dict[str, tuple[Any, ...]] | None:
    """Each key's values over the rows, in one pass; None when some row lacks a key."""
    if not keys or not rows:
        return None
    getter = operator.itemgetter(*keys)
    try:
        table = [getter(row) for row in rows]
    except KeyError:
        return None
    if len(keys) == 1:
        return {keys[0]: tuple(table)}
    return dict(zip(keys, zip(*table, strict=True), strict=True))


def _column_dtype(col: str, int_columns: frozenset[str]) -> np.dtype | None:
    """A table column's dtype (WeightWatcher's): int64, bool, float64, or None for str."""
    if col in INT_COLUMNS or col in int_columns:
        return np.dtype(np.int64)
    if col in ("has_esd", PEFT_COLUMN, BASE_DELTA_COLUMN):
        return np.dtype(bool)
    return None if col in STRING_COLUMNS else np.dtype(np.float64)


def to_frame(columns: dict[str, Any]) -> pd.DataFrame:
    """The DataFrame of table_columns()' result (str columns in pandas' string dtype)."""
    return pd.DataFrame({
        col: string_array(values) if isinstance(values, list) else values
        for col, values in columns.items()
    })  # fmt: skip


def to_rows(columns: dict[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """table_columns()' result as column names and rows of plain Python values."""
    lists = [values.tolist() if isinstance(values, np.ndarray) else values
             for values in columns.values()]  # fmt: skip
    return list(columns), list(zip(*lists, strict=True))


#: our columns with alpha_ci: the bootstrap interval of alpha (hts_fast.bootstrap_alpha)
ALPHA_CI_COLUMNS = ["alpha_ci_low", "alpha_ci_high"]
#: The skipped-layers table's columns.
SKIPPED_COLUMNS = ["layer_id", "name", "longname", "layer_type", "skip_reason"]


def skipped_frame(plans: list[Planned]) -> pd.DataFrame:
    """The layers not analyzed and why (an empty table when every layer was): layer_id as
    int64, the others in pandas' string dtype, whether empty or not."""
    skipped = [p for p in plans if p.skip_reason]
    layers = [p.layer for p in skipped]
    return to_frame({
        "layer_id": np.array([layer.layer_id for layer in layers], dtype=np.int64),
        "name": [layer.name for layer in layers],
        "longname": [layer.longname for layer in layers],
        "layer_type": [layer.layer_type for layer in layers],
        "skip_reason": [p.skip_reason for p in skipped],
    })  # fmt: skip


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
