"""analyze()'s ESD routes per layer: ``esd_method="auto"`` (the default: the float64 Gram
route for large layers, svd for small ones), the float32 Gram route ``"gram32"`` with the
guard that redoes a layer in float64 when its error bound could change the power-law fit,
each layer's eigenvalue error bound, and the rank columns a Gram route cannot resolve.

The route (``"gram32"``, :func:`hts_fast.esd`): W converted to float32 in blocks, its Gram
matrix by ssyrk, then the float64 two-stage eigensolver. Its error is the float32 Gram
product's rounding; :func:`eigenvalue_bounds` estimates it per eigenvalue (its largest, at
lambda_max, is the ``esd_error_bound`` column) and :func:`guard` refits each layer with its
eigenvalues moved by their bounds. docs/large-models.md has the measured accuracy table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..fits.powerlaw import fit_powerlaw_batch, powerlaw_curve
from .layer_spectra import LayerSpectraTable, expand_stacks, layer_spectra_table

#: esd_method="auto": layers whose matrices' smaller side is at least this take the float64
#: Gram route; smaller ones the float64 svd (a few ms each, and every rank column exact).
AUTO_GRAM_MIN_ORDER = 512
#: Unit roundoff of float32 and float64.
UNIT_ROUNDOFF = {"gram32": 2.0**-24, "gram": 2.0**-53, "svd": 2.0**-53}
#: eigenvalue_bounds()' constant for the float32 route: 2.6 times the largest measured
#: |error_i| / (u32 sqrt(k) max(lambda_i, mean lambda)), 0.096 (Student-t and Gaussian layers
#: 768 x 3072 to 4096 x 11008 and the synthetic Llama-2-7B block: 0.009 to 0.096).
GRAM32_BOUND_CONSTANT = 0.25
#: plan.extra key of a layer's route record (:class:`RouteRecord`).
EXTRA_KEY = "esd_route"
#: the rank columns that count eigenvalues near zero
RANK_INT = ("matrix_rank", "rank_loss")
#: sv_min = sqrt(lambda_min) is reported when its relative error bound, floor / (2 lambda_min),
#: is within this (the route's 1e-5 contract)
SV_MIN_RTOL = 1e-5
#: guard(): a float32 layer is redone when the eigenvalue bounds could move its alpha by more
#: than this, relative (the route's 1e-5 contract; :func:`alpha_shift` is a worst case: every
#: tail value moved by its whole bound against xmin, where the measured errors are below 0.4
#: of the bounds and of either sign)
GUARD_ALPHA_RTOL = 1e-5
#: guard(): a candidate's KS distance moves by at most about this times delta (alpha - 1)
#: when its tail values move by relative amounts up to delta (2 through the fitted CDF, 1/e
#: through alpha; rounded up)
KS_SHIFT_FACTOR = 3.0


@dataclass
class RouteRecord:
    """How a layer's ESD was computed.

    Attributes
    ----------
    route : {"svd", "gram", "gram32"}
        The route whose eigenvalues the row holds ("gram" after a guarded redo).
    bound : float
        :func:`error_bound` of that route (the largest eigenvalue's bound), in eigenvalue
        units (W's units squared): the ``esd_error_bound`` column.
    floor : float
        The bound of the smallest eigenvalues (the resolution near zero), same units.
    lambda_min : float
        The smallest eigenvalue.
    weak_unresolved : bool
        An eigenvalue lies within ``bound`` of the weak-rank tolerance (weak_rank_loss
        cannot be told).
    redone : bool
        The float32 result was replaced by the float64 one by the guard.
    """

    route: str
    bound: float
    floor: float = math.nan
    lambda_min: float = math.nan
    weak_unresolved: bool = False
    redone: bool = False


def auto_route(smaller_side: int, *, compat: bool) -> str:
    """The route esd_method="auto" takes for a layer whose matrices' smaller side is
    ``smaller_side``: "svd" in compat mode and below AUTO_GRAM_MIN_ORDER, else "gram".

    Why not "gram32": per matrix it is only 10-20% faster than "gram" at 4096 x 11008 (the
    float64 eigensolve is ~70% of the time either way), and its guard sends about one large
    layer in seven to a float64 redo, which costs more than that (docs/large-models.md)."""
    return "gram" if not compat and smaller_side >= AUTO_GRAM_MIN_ORDER else "svd"


def eigenvalue_bounds(route: str, inner: int, evals: np.ndarray) -> np.ndarray:
    """Estimated bound on the error of each eigenvalue of an ESD, in eigenvalue units (W's
    units squared): ``c * u * sqrt(inner) * max(lambda_i, mean lambda) + u64 * sqrt(n) *
    lambda_max``, with u the unit roundoff of the route's Gram product (2**-24 for "gram32",
    2**-53 otherwise), ``inner`` the summed dimension (the matrices' larger side), n the
    number of eigenvalues, c = GRAM32_BOUND_CONSTANT (0.25) for "gram32" and 1 otherwise.
    Returns an array like ``evals``.

    A length-k dot product rounds like sqrt(k) independent errors of u; the Gram entries'
    rounding moves an eigenvalue by about that much relative to it, and at least by that
    much of the mean eigenvalue (the bulk's scale); the float64 eigensolve adds ~u64 sqrt(n)
    lambda_max (the level below which the "gram" route's eigenvalues are noise). Measured on Student-t and Gaussian
    layers from 768 x 3072 to 4096 x 11008 and on the synthetic Llama-2-7B block, the largest
    |error_i| / (u32 sqrt(k) max(lambda_i, mean)) was 0.096, so c = 0.25 keeps a 2.6x
    margin. An estimate, not a worst-case proof (that would be ~k u32 ||W||_F^2, far too
    loose to act on); tests check it against NumPy's SVD.
    """
    constant = GRAM32_BOUND_CONSTANT if route == "gram32" else 1.0
    scale = constant * UNIT_ROUNDOFF[route] * math.sqrt(max(inner, 1))
    values = np.asarray(evals, dtype=np.float64)
    if not len(values):
        return values.copy()
    solve = UNIT_ROUNDOFF["gram"] * math.sqrt(len(values)) * float(values.max())
    return scale * np.maximum(values, float(values.mean())) + solve


def error_bound(route: str, inner: int, n: int, lambda_max: float) -> float:
    """The largest of :func:`eigenvalue_bounds` (the bound of lambda_max) for an ESD of ``n``
    values, in W's units squared: ``c * u * sqrt(inner) * lambda_max + u64 * sqrt(n) *
    lambda_max``; the ``esd_error_bound`` column."""
    constant = GRAM32_BOUND_CONSTANT if route == "gram32" else 1.0
    return (constant * UNIT_ROUNDOFF[route] * math.sqrt(max(inner, 1))
            + UNIT_ROUNDOFF["gram"] * math.sqrt(max(n, 1))) * lambda_max  # fmt: skip


def _perturbed(evals: np.ndarray, bounds: np.ndarray, xmin: float) -> list[np.ndarray]:
    """The ESD with every eigenvalue moved by its bound: all up, all down, the tail
    (>= xmin) up and the rest down, and the reverse (each sorted, clipped at 0)."""
    tail = evals >= xmin
    shifts = [np.ones_like(evals), -np.ones_like(evals), np.where(tail, 1.0, -1.0),
              np.where(tail, -1.0, 1.0)]  # fmt: skip
    return [np.sort(np.maximum(evals + bounds * s, 0.0)) for s in shifts]


def alpha_shift(alpha: float, xmin: float, bound_at_xmin: float) -> float:
    """How far, relative, alpha can move when the tail values move by their bounds, the
    relative bound delta = bound / xmin being the tail's largest (bounds grow no faster than
    the values above the mean): alpha - 1 = n / sum(log(x_i / xmin)), each log moves by at
    most 2 delta, so alpha moves by at most 2 delta (alpha - 1)^2 / alpha, relative."""
    delta = bound_at_xmin / xmin
    return 2.0 * delta * (alpha - 1.0) ** 2 / alpha


def ks_margin_holds(values: np.ndarray, bounds: np.ndarray, fit: Any, *, threads: int) -> bool:
    """Whether the chosen xmin keeps the smallest KS distance when every candidate's D moves
    by its bound: D_j can move by KS_SHIFT_FACTOR * delta_j * |alpha_j - 1| (delta_j = the
    bound of x_j over x_j), so every other candidate must stay above the chosen one by the
    two moves together. False as well when the full scan selects another fit than ``fit``."""
    try:
        curve = powerlaw_curve(values, threads=threads)
    except ValueError:
        return False
    if curve.best.num_pl_spikes != fit.num_pl_spikes:
        return False
    at = np.searchsorted(values, curve.xmins)
    with np.errstate(divide="ignore", invalid="ignore"):
        slack = KS_SHIFT_FACTOR * bounds[at] / curve.xmins * np.abs(curve.alphas - 1.0)
    chosen = int(np.flatnonzero(curve.xmins == curve.best.xmin)[0])
    others = np.ones(len(curve.xmins), dtype=bool)
    others[chosen] = False
    reach = curve.Ds[chosen] + slack[chosen]
    return not bool(np.any(curve.Ds[others] - slack[others] <= reach))


def guard(
    evals: Sequence[np.ndarray], bounds: Sequence[np.ndarray], fits: Sequence[Any], *,
    threads: int,
) -> list[bool]:  # fmt: skip
    """Whether each layer's power-law fit could change within its error bound, in which case
    analyze() redoes the layer in float64.

    ``bounds``: each layer's :func:`eigenvalue_bounds`. A fitted layer is redone when

    1. its bound at xmin could move alpha by more than GUARD_ALPHA_RTOL (:func:`alpha_shift`;
       a bound floored at a large mean eigenvalue, as under one huge spike, trips it);
    2. another xmin candidate's KS distance comes within the two candidates' possible moves
       of the chosen one's (:func:`ks_margin_holds`), so the choice of xmin could change;
    3. a refit with every eigenvalue moved by its bound (:func:`_perturbed`: all up, all
       down, the tail and the rest in opposite directions) fails, takes another number of
       tail values or another selection rule; all up and all down also move the values
       near the fit's 1e-5 threshold across it.

    These bound the effect of the eigenvalue bounds on alpha and on the choice of xmin; D at
    the chosen xmin is not bounded to 1e-5 by them (its worst case, KS_SHIFT_FACTOR delta
    (alpha - 1) / D, would redo every layer) but measured (docs/large-models.md), and the
    bounds themselves are estimates (:func:`eigenvalue_bounds`). Returns one bool per layer
    (True: redo).
    """
    batch: list[np.ndarray] = []
    owner: list[int] = []
    redo = [False] * len(evals)
    for k, (values, bound, fit) in enumerate(zip(evals, bounds, fits, strict=True)):
        if fit.status != "success":  # a failed fit keeps its reason; nothing to keep stable
            continue
        at_xmin = float(bound[np.searchsorted(values, fit.xmin)])
        if (alpha_shift(fit.alpha, fit.xmin, at_xmin) > GUARD_ALPHA_RTOL
                or not ks_margin_holds(values, bound, fit, threads=threads)):  # fmt: skip
            redo[k] = True
            continue
        batch.extend(_perturbed(values, bound, fit.xmin))
        owner.extend([k] * 4)
    refits = fit_powerlaw_batch(batch, threads=threads) if batch else []
    for k, refit in zip(owner, refits, strict=True):
        fit = fits[k]
        redo[k] = redo[k] or (refit.status != "success" or refit.method != fit.method
                              or refit.num_pl_spikes != fit.num_pl_spikes)  # fmt: skip
    return redo


def weak_unresolved(evals: np.ndarray, bounds: np.ndarray, tolerance: float) -> bool:
    """Whether an eigenvalue lies within its bound of the weak-rank ``tolerance``."""
    return bool(np.any(np.abs(evals - tolerance) <= bounds))


def patch_columns(pooled: list[Any], columns: dict[str, Any]) -> None:
    """Our esd_error_bound column (every row with a float64 or float32 ESD route; the
    randomized top-k route has its own certificates), and the rank columns of Gram-route layers ("gram",
    "gram32") the route cannot resolve: matrix_rank, rank_loss -1 when the smallest eigenvalue lies within its
    bound (which eigenvalues are zero cannot be told), sv_min NaN when its relative error
    bound exceeds SV_MIN_RTOL, weak_rank_loss -1 when an eigenvalue lies within its bound of
    the tolerance; status_reason says so. entropy, normalised by log(matrix_rank), is NaN
    with the rank."""
    bounds = np.full(len(pooled), math.nan)
    for k, (plan, evals, _) in enumerate(pooled):
        record = plan.extra.get(EXTRA_KEY)
        if record is None:  # an unfused route: the bound from its ESD, where it has one
            route = plan.row.get("esd_method")
            if route in UNIT_ROUNDOFF and evals is not None and len(evals) and plan.shape:
                bounds[k] = error_bound(route, plan.shape.N, len(evals), float(evals[-1]))
            continue
        bounds[k] = record.bound
        if record.route not in ("gram", "gram32"):
            continue
        lost = []
        if record.lambda_min <= record.floor:  # some eigenvalues cannot be told from zero
            for col in RANK_INT:
                columns[col][k] = -1
            columns["entropy"][k] = math.nan  # normalised by log(matrix_rank)
            lost += [*RANK_INT, "entropy"]
        if not record.floor <= 2 * SV_MIN_RTOL * record.lambda_min:
            columns["sv_min"][k] = math.nan
            lost.append("sv_min")
        if record.weak_unresolved:
            columns["weak_rank_loss"][k] = -1
            lost.append("weak_rank_loss")
        if lost:
            _note_lost(columns, k, record, lost)
    columns["esd_error_bound"] = bounds


def _note_lost(columns: dict[str, Any], k: int, record: RouteRecord, lost: list[str]) -> None:
    precision = "float32" if record.route == "gram32" else "float64"
    note = (f"{precision} Gram ESD resolves eigenvalues to {record.floor:.3g}: "
            f"{', '.join(lost)} not available (esd_method='svd' computes them)")  # fmt: skip
    reason = columns["status_reason"][k]
    columns["status_reason"][k] = f"{reason}; {note}" if reason else note


def patch_detx(pooled: list[Any], columns: dict[str, Any], *, compat: bool) -> None:
    """detX columns (detX=True) of Gram-route layers whose detX count the route cannot
    resolve: detX of the ESD with every eigenvalue moved down by its bound and up by its
    bound; if the counts differ, detX_num and num_ERG_spikes are -1, detX_val,
    detX_val_unrescaled and ERG_gap NaN, and status_reason says so."""
    from ..fits.marchenko_pastur import detx

    for k, (plan, evals, _) in enumerate(pooled):
        record = plan.extra.get(EXTRA_KEY)
        if record is None or record.route not in ("gram", "gram32") or evals is None:
            continue
        bounds = eigenvalue_bounds(record.route, int(plan.shape.N), evals)
        counts = {detx(np.sort(np.maximum(evals + sign * bounds, 0.0)), compat=compat).detX_num
                  for sign in (-1.0, 1.0)}  # fmt: skip
        if len(counts) == 1 and columns["detX_num"][k] in counts:
            continue
        for col in ("detX_num", "num_ERG_spikes"):
            columns[col][k] = -1
        for col in ("detX_val", "detX_val_unrescaled", "ERG_gap"):
            columns[col][k] = math.nan
        _note_lost(columns, k, record, ["detX_num", "detX_val"])


def phase_ranks(pooled: list[Any], columns: dict[str, Any]) -> list[int]:
    """The rank the phases' rank-collapse rule reads: matrix_rank, or where a Gram route
    left it unresolved (-1), the number of eigenvalues above the route's resolution near
    zero (the ones that do not vanish at the route's precision)."""
    ranks = []
    for k, (plan, evals, _) in enumerate(pooled):
        rank = int(columns["matrix_rank"][k])
        record = plan.extra.get(EXTRA_KEY)
        if rank < 0 and record is not None and evals is not None:
            rank = int(np.count_nonzero(evals > record.floor))
        ranks.append(rank)
    return ranks


def routed_table(
    layers: Sequence[tuple[Any, int, int, int | None]], matrices: list[Any], scales: list[float],
    routes: Sequence[str], *, threads: int, tolerance: float, compat: bool, keep_pooled: bool,
) -> tuple[LayerSpectraTable, list[RouteRecord | None]]:  # fmt: skip
    """layer_spectra_table() with a route per layer, the float32 layers guarded.

    ``layers``: (plan, first, count, keep_top) per layer, indexing ``matrices`` with their
    3-D stacks expanded (as layer_spectra_table's ``layers``); ``routes``: "svd", "gram" or
    "gram32" per layer. The float32 layers that fail :func:`guard` are recomputed by the
    float64 Gram route and their record says ``redone``. Returns the table (rows in
    ``layers`` order; pooled ESDs None without ``keep_pooled``) and each row's
    :class:`RouteRecord` (None for a failed layer).
    """
    flat, flat_scales = expand_stacks(matrices, scales)
    Ns = [float(plan.shape.N) if plan.shape else 0.0 for plan, _, _, _ in layers]

    def run(rows: list[int], route: str) -> LayerSpectraTable:
        sub: list[Any] = []
        sub_scales: list[float] = []
        spans = []
        for k in rows:
            _, first, count, keep_top = layers[k]
            spans.append((len(sub), count, keep_top))
            sub += flat[first : first + count]
            sub_scales += flat_scales[first : first + count]
        return layer_spectra_table(sub, sub_scales, spans, [Ns[k] for k in rows], method=route,
                                   threads=threads, tolerance=tolerance, compat=compat,
                                   keep_pooled=True)  # fmt: skip

    parts = []
    for route in sorted(set(routes)):
        rows = [k for k, r in enumerate(routes) if r == route]
        parts.append((run(rows, route), rows))
    table = LayerSpectraTable.assemble(len(layers), parts)
    fast = [k for k in range(len(layers)) if routes[k] == "gram32" and k not in table.errors]
    redone: set[int] = set()
    if fast:
        bounds = [eigenvalue_bounds("gram32", int(Ns[k]), table.pooled[k]) for k in fast]
        redo = guard([table.pooled[k] for k in fast], bounds, [table.fit(k) for k in fast],
                     threads=threads)  # fmt: skip
        again = [k for k, flag in zip(fast, redo, strict=True) if flag]
        if again:
            table = LayerSpectraTable.assemble(len(layers), [(table, range(len(layers))),
                                                             (run(again, "gram"), again)])  # fmt: skip
            redone = set(again)
    records: list[RouteRecord | None] = [None] * len(layers)
    for k in range(len(layers)):
        evals = table.pooled[k]
        if k in table.errors or evals is None or not len(evals):
            continue
        route = "gram" if k in redone else routes[k]
        bounds_k = eigenvalue_bounds(route, int(Ns[k]), evals)
        records[k] = RouteRecord(route, error_bound(route, int(Ns[k]), len(evals),
                                                    float(evals[-1])),
                                 floor=float(bounds_k[0]), lambda_min=float(evals[0]),
                                 redone=k in redone)  # fmt: skip
        if route in ("gram", "gram32"):
            records[k].weak_unresolved = weak_unresolved(evals, bounds_k, tolerance)
    if not keep_pooled:
        table.pooled = [None] * len(layers)
    return table, records
