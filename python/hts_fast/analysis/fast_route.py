"""analyze()'s default ESD route, ``esd_method="auto"``: which layers take the float32 Gram
route, each layer's eigenvalue error bound, the guard that redoes a layer in float64 when
that bound could change its power-law fit, and the rank columns the route cannot resolve.

The route (``"gram32"``, :func:`hts_fast.esd`): W converted to float32 in blocks, its Gram
matrix by ssyrk, then the float64 two-stage eigensolver. Its error is the float32 Gram
product's rounding; :func:`error_bound` estimates it per layer (``esd_error_bound``
column) and :func:`guard` refits each layer with its eigenvalues moved by that bound.
docs/large-models.md has the measured accuracy table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..fits.powerlaw import fit_powerlaw_batch
from .layer_spectra import LayerSpectraTable, expand_stacks, layer_spectra_table

#: esd_method="auto": layers whose matrices' smaller side is at least this take the float32
#: Gram route; smaller ones the float64 svd (a few ms each, and every rank column exact).
AUTO_GRAM32_MIN_ORDER = 512
#: Unit roundoff of float32 and float64.
UNIT_ROUNDOFF = {"gram32": 2.0**-24, "gram": 2.0**-53, "svd": 2.0**-53}
#: error_bound()'s constant for the float32 route: twice the largest measured
#: |error| / (u32 sqrt(k) lambda_max), 0.12 (Student-t layers 384 x 1536 to 2048 x 8192,
#: the synthetic Llama-2-7B block's seven matrices: 0.02 to 0.11).
GRAM32_BOUND_CONSTANT = 0.25
#: plan.extra key of a layer's route record (:class:`RouteRecord`).
EXTRA_KEY = "esd_route"
#: the rank columns that count eigenvalues near zero, and sv_min
RANK_FLOAT = ("sv_min",)
RANK_INT = ("matrix_rank", "rank_loss")


@dataclass
class RouteRecord:
    """How a layer's ESD was computed.

    Attributes
    ----------
    route : {"svd", "gram", "gram32"}
        The route whose eigenvalues the row holds ("gram" after a guarded redo).
    bound : float
        :func:`error_bound` of that route, in eigenvalue units (W's units squared).
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
    lambda_min: float = math.nan
    weak_unresolved: bool = False
    redone: bool = False


def auto_route(smaller_side: int, *, compat: bool) -> str:
    """The route esd_method="auto" takes for a layer whose matrices' smaller side is
    ``smaller_side``: "svd" in compat mode and below AUTO_GRAM32_MIN_ORDER, else "gram32"."""
    return "gram32" if not compat and smaller_side >= AUTO_GRAM32_MIN_ORDER else "svd"


def error_bound(route: str, inner: int, lambda_max: float) -> float:
    """Estimated bound on the error of every eigenvalue of a layer's ESD, in eigenvalue units
    (W's units squared): ``c * u * sqrt(inner) * lambda_max``, with u the unit roundoff of
    the route's Gram product (2**-24 for "gram32", 2**-53 otherwise), ``inner`` the summed
    dimension (the matrices' larger side), c = GRAM32_BOUND_CONSTANT (0.25) for "gram32" and
    1 otherwise.

    A dot product of length k rounds like sqrt(k) independent errors of u; the float64
    eigensolve adds ~u64 sqrt(n) lambda_max, negligible next to the float32 product. Measured
    on Student-t layers from 384 x 1536 to 2048 x 8192 and on the synthetic Llama-2-7B layers,
    the largest |error| / (u32 sqrt(k) lambda_max) was 0.12, so c = 0.25 keeps a 2x margin.
    An estimate, not a worst-case proof (that would be ~k u32 ||W||_F^2, too loose to act
    on); tests check it against NumPy's SVD.
    """
    constant = GRAM32_BOUND_CONSTANT if route == "gram32" else 1.0
    return constant * UNIT_ROUNDOFF[route] * math.sqrt(max(inner, 1)) * lambda_max


def _perturbed(evals: np.ndarray, bound: float, xmin: float) -> list[np.ndarray]:
    """The ESD with every eigenvalue moved by ``bound``: all up, all down, the tail
    (>= xmin) up and the rest down, and the reverse (each sorted, clipped at 0)."""
    tail = evals >= xmin
    shifts = [np.ones_like(evals), -np.ones_like(evals), np.where(tail, 1.0, -1.0),
              np.where(tail, -1.0, 1.0)]  # fmt: skip
    return [np.sort(np.maximum(evals + bound * s, 0.0)) for s in shifts]


def guard(
    evals: Sequence[np.ndarray], bounds: Sequence[float], fits: Sequence[Any], *, threads: int
) -> list[bool]:  # fmt: skip
    """Whether each layer's power-law fit could change within its error bound, in which case
    analyze() redoes the layer in float64.

    Each fitted layer is refitted with every eigenvalue moved by its bound
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


def weak_unresolved(evals: np.ndarray, bound: float, tolerance: float) -> bool:
    """Whether an eigenvalue lies within ``bound`` of the weak-rank ``tolerance``."""
    return bool(np.any(np.abs(evals - tolerance) <= bound))


def patch_columns(pooled: list[Any], columns: dict[str, Any]) -> None:
    """Our esd_error_bound column, and the rank columns of float32-route layers whose
    smallest eigenvalues lie within the error bound: matrix_rank, rank_loss -1 and sv_min
    NaN (which of those eigenvalues are zero cannot be told), weak_rank_loss -1 when an
    eigenvalue lies within the bound of its tolerance; status_reason says so."""
    bounds = np.full(len(pooled), math.nan)
    for k, (plan, _, _) in enumerate(pooled):
        record = plan.extra.get(EXTRA_KEY)
        if record is None:
            continue
        bounds[k] = record.bound
        if record.route != "gram32":
            continue
        lost = []
        if record.lambda_min <= record.bound:
            for col in RANK_FLOAT:
                columns[col][k] = math.nan
            for col in RANK_INT:
                columns[col][k] = -1
            lost += [*RANK_INT, *RANK_FLOAT]
        if record.weak_unresolved:
            columns["weak_rank_loss"][k] = -1
            lost.append("weak_rank_loss")
        if lost:
            note = (f"float32 Gram ESD resolves eigenvalues to {record.bound:.3g}: "
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
    records: list[RouteRecord | None] = [None] * len(layers)
    for k in range(len(layers)):
        if k not in table.errors:
            evals = table.pooled[k]
            bound = error_bound(routes[k], int(Ns[k]), float(evals[-1]) if len(evals) else 0.0)
            records[k] = RouteRecord(routes[k], bound)
    fast = [k for k in range(len(layers)) if routes[k] == "gram32" and k not in table.errors]
    if fast:
        redo = guard([table.pooled[k] for k in fast], [records[k].bound for k in fast],
                     [table.fit(k) for k in fast], threads=threads)  # fmt: skip
        again = [k for k, flag in zip(fast, redo, strict=True) if flag]
        if again:
            table = LayerSpectraTable.assemble(len(layers), [(table, range(len(layers))),
                                                             (run(again, "gram"), again)])  # fmt: skip
            for k in again:
                evals = table.pooled[k]
                records[k] = (RouteRecord("gram", error_bound("gram", int(Ns[k]), float(evals[-1])),
                                          redone=True)
                              if k not in table.errors else None)  # fmt: skip
    for k, record in enumerate(records):
        if record is not None:
            evals = table.pooled[k]
            record.lambda_min = float(evals[0])
            if record.route == "gram32":
                record.weak_unresolved = weak_unresolved(evals, record.bound, tolerance)
    if not keep_pooled:
        table.pooled = [None] * len(layers)
    return table, records
