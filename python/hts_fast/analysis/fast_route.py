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

from ..fits.powerlaw import fit_powerlaw_batch
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


def guard(
    evals: Sequence[np.ndarray], bounds: Sequence[np.ndarray], fits: Sequence[Any], *,
    threads: int,
) -> list[bool]:  # fmt: skip
    """Whether each layer's power-law fit could change within its error bound, in which case
    analyze() redoes the layer in float64.

    ``bounds``: each layer's :func:`eigenvalue_bounds`. Each fitted layer is refitted with
    every eigenvalue moved by its bound
    (:func:`_perturbed`: all up, all down, the tail and the rest in opposite directions);
    a refit that fails, takes another number of tail values (another xmin: the shifts keep
    the values' order) or another selection rule fails the guard. All up and all down also
    move the values near the fit's 1e-5 threshold across it. Those shifts are the ones that
    move the KS distances of neighbouring xmin candidates against each other; this checks
    the fit's sensitivity at the bound, it is not a proof over every perturbation. Returns
    one bool per layer (True: redo).
    """
    batch: list[np.ndarray] = []
    owner: list[int] = []
    for k, (values, bound, fit) in enumerate(zip(evals, bounds, fits, strict=True)):
        if fit.status == "success":  # a failed fit keeps its reason; nothing to keep stable
            batch.extend(_perturbed(values, bound, fit.xmin))
            owner.extend([k] * 4)
    refits = fit_powerlaw_batch(batch, threads=threads) if batch else []
    redo = [False] * len(evals)
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
    the tolerance; status_reason says so."""
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
            lost += list(RANK_INT)
        if not record.floor <= 2 * SV_MIN_RTOL * record.lambda_min:
            columns["sv_min"][k] = math.nan
            lost.append("sv_min")
        if record.weak_unresolved:
            columns["weak_rank_loss"][k] = -1
            lost.append("weak_rank_loss")
        if lost:
            precision = "float32" if record.route == "gram32" else "float64"
            note = (f"{precision} Gram ESD resolves eigenvalues to {record.floor:.3g}: "
                    f"{', '.join(lost)} not available (esd_method='svd' computes them)")  # fmt: skip
            reason = columns["status_reason"][k]
            columns["status_reason"][k] = f"{reason}; {note}" if reason else note
    columns["esd_error_bound"] = bounds


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
