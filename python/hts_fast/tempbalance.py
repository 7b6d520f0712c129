"""Layer-wise schedules from the ESD of each layer: TempBalance (learning rates) and AlphaDecay
(weight decay), on hts_fast's spectra.

::

    from hts_fast.tempbalance import TempBalance

    tb = TempBalance(model)                      # TempBalance's defaults
    optimizer = torch.optim.SGD(tb.param_groups(0.1), momentum=0.9, weight_decay=5e-4)
    for epoch in range(epochs):
        train_one_epoch(model, optimizer)
        tb.step(optimizer, lr=cosine(epoch))     # new spectra, new per-layer learning rates
        print(tb.table[["name", "alpha", "lr"]])

Each call to :meth:`TempBalance.step` computes the ESD of every tuned layer, fits its tail,
maps the layers' scores (alpha by default) onto [lr_min_ratio, lr_max_ratio] times the
global learning rate and writes each layer's rate into its optimizer group. Tuned layers are
TempBalance's (:mod:`hts_fast.schedules.layers`), the estimator is TempBalance's median rule
by default (:mod:`hts_fast.schedules.estimate`), the maps are TempBalance's
(:mod:`hts_fast.schedules.assign`).

What differs from TempBalance's own code (docs/tempbalance.md has the details):

* alpha is finite or the layer is held: a flat spectrum (an orthogonal layer, flat to the
  weights' precision: :func:`hts_fast.schedules.estimate.flat_tolerance`) gets an infinite
  or huge alpha from TempBalance, which moves every other layer's rate to an end of the
  range; here that layer keeps its previous multiplier (1 at the first computation), is
  left out of the range's min and max, and the table's ``reason`` says why;
* with more than half its eigenvalues ~0 (a rank-deficient layer) TempBalance's alpha is
  NaN; here the median index is counted among the eigenvalues above 1e-5 (TempBalance's
  ``filter_zeros=True``), which gives a finite alpha, and ``reason`` notes it;
* s_max = s_min (one tuned layer, equal scores) gives the range's midpoint, where
  TempBalance's ``np.interp`` gives the top of the range; sqrt/log2 maps reject scores
  they cannot take, naming the layer;
* excluded layers (first, last, fewer than ``eigs_thresh`` eigenvalues) are listed in the
  table with the reason;
* optimizer groups are matched by the layer name stored in each group (key
  ``"hts_fast_layer"``), not by position, so other groups may be added;
* the spectra are hts_fast's compiled float64 ones (Gram route by default); CUDA weights
  are decomposed on their GPU and only the per-layer numbers come back.

torch is imported only when a schedule is built.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import pandas as pd

from .schedules.assign import Assign, check_ratios, multipliers
from .schedules.estimate import Estimator, XminRule, layer_metrics
from .schedules.layers import (
    GROUP_KEY,
    REST,
    NormMatch,
    ScheduledLayer,
    effective_weight,
    find_layers,
    parameter_groups,
)

__all__ = ["AlphaDecay", "TempBalance"]

Metric = Literal["alpha", "alphahat", "spectral_norm", "D", "norm"]
METRICS = ("alpha", "alphahat", "spectral_norm", "D", "norm")
#: The table's metric columns, in order.
METRIC_COLUMNS = ["alpha", "alphahat", "spectral_norm", "D", "norm", "xmin", "num_pl_spikes"]


def _check_value(value: Any, what: str) -> float:
    if isinstance(value, bool):
        msg = f"{what} must be a number >= 0, got {value!r}"
        raise TypeError(msg)
    try:
        number = float(value)
    except (TypeError, ValueError):
        msg = f"{what} must be a number >= 0, got {value!r}"
        raise TypeError(msg) from None
    if not (math.isfinite(number) and number >= 0):
        msg = f"{what} must be a finite number >= 0, got {value!r}"
        raise ValueError(msg)
    return number


def _check_int(value: Any, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        msg = f"{what} must be an integer >= {low}, got {value!r}"
        raise ValueError(msg)
    return int(value)


class _LayerwiseSchedule:
    """Shared machinery: the tuned layers, their spectra and multipliers, the table."""

    #: The optimizer-group key the schedule sets ("lr" or "weight_decay").
    quantity: str = "lr"

    def __init__(
        self, model: Any, *, min_ratio: float, max_ratio: float, metric: Metric,
        assign: Assign, xmin: XminRule, xmin_pos: int, eigs_thresh: int,
        remove_first_layer: bool, remove_last_layer: bool, batchnorm: bool, layernorm: bool,
        batchnorm_match: NormMatch, filter_zeros: bool, conv_norm: float,
        esd_method: Literal["gram", "svd"], threads: int | None, interval: int,
    ) -> None:  # fmt: skip
        self.min_ratio, self.max_ratio = check_ratios(min_ratio, max_ratio, type(self).__name__)
        if metric not in METRICS:
            msg = f"metric must be one of {METRICS}, got {metric!r}"
            raise ValueError(msg)
        if assign not in ("linear", "sqrt", "log2", "step"):
            msg = f"assign must be 'linear', 'sqrt', 'log2' or 'step', got {assign!r}"
            raise ValueError(msg)
        if batchnorm_match not in ("name", "order"):
            msg = f"batchnorm_match must be 'name' or 'order', got {batchnorm_match!r}"
            raise ValueError(msg)
        self.metric, self.assign = metric, assign
        self.estimator = Estimator(xmin=xmin, xmin_pos=xmin_pos, filter_zeros=filter_zeros,
                                   conv_norm=conv_norm, esd_method=esd_method,
                                   threads=threads)  # fmt: skip
        self.interval = _check_int(interval, "interval", 1)
        self.batchnorm, self.layernorm = bool(batchnorm), bool(layernorm)
        self.batchnorm_match: NormMatch = batchnorm_match
        self.model = model
        self.layers: list[ScheduledLayer] = find_layers(
            model, remove_first=bool(remove_first_layer), remove_last=bool(remove_last_layer),
            eigs_thresh=_check_int(eigs_thresh, "eigs_thresh", 0),
        )  # fmt: skip
        self._tuned = [layer for layer in self.layers if layer.tuned]
        self._multiplier = {layer.name: 1.0 for layer in self._tuned}
        self._metrics: dict[str, dict[str, Any]] = {}
        self._computed = False  # _metrics alone cannot say: it stays empty with no tuned layer
        self._value: float | None = None
        self._calls = 0
        self._table: pd.DataFrame | None = None

    # -------------------------------------------------------------- computing

    def recompute(self) -> dict[str, float]:
        """Compute every tuned layer's spectrum and multiplier now; return name -> multiplier.

        A layer without a finite score keeps its previous multiplier (1 at first) and is
        left out of the range; its ``reason`` in :attr:`table` says why.
        """
        weights = [(layer.name, effective_weight(layer.module)) for layer in self._tuned]
        rows = layer_metrics(weights, [layer.kind for layer in self._tuned], self.estimator)
        self._metrics = {}
        scored, scores = [], []
        for layer, row in zip(self._tuned, rows, strict=True):
            score = row[self.metric]
            if not math.isfinite(score):
                why = row["reason"] or f"{self.metric} is {score!r}"
                row["reason"] = f"held at its previous value: {why}"
            else:
                scored.append(layer.name)
                scores.append(score)
            self._metrics[layer.name] = row
        values = multipliers(scores, scored, assign=self.assign, min_ratio=self.min_ratio,
                             max_ratio=self.max_ratio)  # fmt: skip
        for name, value in zip(scored, values, strict=True):
            self._multiplier[name] = float(value)
        self._computed = True
        self._table = None
        return dict(self._multiplier)

    @property
    def multipliers(self) -> dict[str, float]:
        """Tuned layer name -> the factor its group's value is of the global value."""
        return dict(self._multiplier)

    def _values(self, name: str) -> float:
        assert self._value is not None
        return self._value * (self._multiplier[name] if name != REST else 1.0)

    # -------------------------------------------------------------- the optimizer

    def _groups(self, base: dict[str, float]) -> list[dict[str, Any]]:
        def values(name: str) -> dict[str, float]:
            return {**base, self.quantity: self._values(name)}

        return parameter_groups(self.model, self.layers, batchnorm=self.batchnorm,
                                layernorm=self.layernorm, norm_match=self.batchnorm_match,
                                values=values)  # fmt: skip

    def _apply(self, optimizer: Any, value: float, others: dict[str, float],
               recompute: bool | None) -> None:  # fmt: skip
        groups = getattr(optimizer, "param_groups", None)
        if not isinstance(groups, list):
            msg = f"optimizer must be a torch optimizer, got {type(optimizer).__name__}"
            raise TypeError(msg)
        named = {g[GROUP_KEY]: g for g in groups if isinstance(g, dict) and GROUP_KEY in g}
        missing = [layer.name for layer in self._tuned if layer.name not in named]
        if missing:
            msg = (f"the optimizer has no group for the tuned layer {missing[0]!r}; build it "
                   f"from {type(self).__name__}.param_groups()")  # fmt: skip
            raise ValueError(msg)
        self._calls += 1
        due = self._calls % self.interval == 0 if recompute is None else bool(recompute)
        if due or not self._computed:
            self.recompute()
        self._value = value
        self._table = None
        for name, group in named.items():
            if name != REST and name not in self._multiplier:
                msg = f"the optimizer's group for {name!r} names no layer this schedule tunes"
                raise ValueError(msg)
            group[self.quantity] = self._values(name)
            group.update(others)

    # -------------------------------------------------------------- the table

    @property
    def table(self) -> pd.DataFrame:
        """One row per Conv2d/Linear layer, in module order, as of the last computation.

        Columns: ``name``, ``type`` ("conv2d"/"linear"), ``eigs_num`` (pooled ESD length),
        ``params`` (weight entries), ``tuned``; the metrics ``alpha``, ``alphahat``,
        ``spectral_norm`` (largest eigenvalue of W^T W, after the conv2d scaling),
        ``D``, ``norm`` (sum of the eigenvalues), ``xmin``, ``num_pl_spikes`` (NaN / -1 for
        layers not tuned or not fitted); ``multiplier``, the scheduled value
        (``lr`` or ``weight_decay``; a layer not tuned shows the global value, NaN before one
        is given) and ``reason`` (why a layer is not tuned or is held).

        Raises RuntimeError before the first computation (``param_groups()``, ``step()`` or
        ``recompute()``).
        """
        if not self._computed:
            msg = (f"{type(self).__name__}.table is empty until the spectra are computed: call "
                   "param_groups(), step() or recompute() first")  # fmt: skip
            raise RuntimeError(msg)
        if self._table is None:
            self._table = self._build_table()
        return self._table

    def _build_table(self) -> pd.DataFrame:
        rows = []
        base = math.nan if self._value is None else self._value
        for layer in self.layers:
            row: dict[str, Any] = {"name": layer.name, "type": layer.kind,
                                   "eigs_num": layer.eigs_num, "params": layer.params,
                                   "tuned": layer.tuned}  # fmt: skip
            metrics = self._metrics.get(layer.name, {})
            for col in METRIC_COLUMNS:
                row[col] = metrics.get(col, -1 if col == "num_pl_spikes" else math.nan)
            multiplier = self._multiplier.get(layer.name, 1.0)
            row["multiplier"] = multiplier
            row[self.quantity] = base * multiplier
            row["reason"] = layer.reason or metrics.get("reason", "")
            rows.append(row)
        frame = pd.DataFrame(rows)
        frame["num_pl_spikes"] = frame["num_pl_spikes"].astype(np.int64)
        return frame


class TempBalance(_LayerwiseSchedule):
    """Per-layer learning rates from the layers' ESDs (TempBalance, Zhou et al., NeurIPS 2023).

    Parameters
    ----------
    model : torch.nn.Module
        Its Conv2d and Linear layers are scheduled (module docstring of
        :mod:`hts_fast.schedules.layers` for which).
    lr_min_ratio, lr_max_ratio : float
        The range of the multipliers of the global learning rate (0.5, 1.5).
    metric : {"alpha", "alphahat", "spectral_norm", "D", "norm"}
        The score mapped onto the range (higher score, higher rate).
    assign : {"linear", "sqrt", "log2", "step"}
        The map (:mod:`hts_fast.schedules.assign`).
    xmin : {"median", "fit", "peak"}
        How the tail is chosen: the median rule (TempBalance's default, O(N)), the full KS
        scan (WeightWatcher's), or the scan within the ESD's peak range.
    xmin_pos : int
        The median rule's xmin is the eigenvalue at index N // xmin_pos.
    eigs_thresh : int
        Layers with fewer eigenvalues are not tuned.
    remove_first_layer, remove_last_layer : bool
        Leave the first / last Conv2d or Linear untuned.
    batchnorm : bool
        BatchNorm parameters share their conv's learning rate.
    layernorm : bool
        LayerNorm parameters share the preceding Linear's learning rate.

    Other keyword-only parameters: ``batchnorm_match`` ("name": "bn" -> "conv" in the name,
    TempBalance's default; "order": the nearest conv before it), ``filter_zeros`` (count the
    median among eigenvalues > 1e-5), ``conv_norm`` (conv2d eigenvalues multiplied by it,
    0.5), ``esd_method`` ("gram", fast, or "svd"), ``threads`` (CPU threads; results do not
    depend on it) and ``interval`` (:meth:`step` recomputes the spectra on every
    ``interval``-th call and holds the multipliers in between).
    """

    quantity = "lr"

    def __init__(
        self, model: Any, lr_min_ratio: float = 0.5, lr_max_ratio: float = 1.5,
        metric: Metric = "alpha", assign: Assign = "linear", xmin: XminRule = "median",
        xmin_pos: int = 2, eigs_thresh: int = 50, remove_first_layer: bool = True,
        remove_last_layer: bool = True, batchnorm: bool = True, layernorm: bool = False, *,
        batchnorm_match: NormMatch = "name", filter_zeros: bool = False,
        conv_norm: float = 0.5, esd_method: Literal["gram", "svd"] = "gram",
        threads: int | None = None, interval: int = 1,
    ) -> None:  # fmt: skip
        super().__init__(
            model, min_ratio=lr_min_ratio, max_ratio=lr_max_ratio, metric=metric,
            assign=assign, xmin=xmin, xmin_pos=xmin_pos, eigs_thresh=eigs_thresh,
            remove_first_layer=remove_first_layer, remove_last_layer=remove_last_layer,
            batchnorm=batchnorm, layernorm=layernorm, batchnorm_match=batchnorm_match,
            filter_zeros=filter_zeros, conv_norm=conv_norm, esd_method=esd_method,
            threads=threads, interval=interval,
        )  # fmt: skip

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Parameter groups for any torch optimizer, with each tuned layer's learning rate
        from the current weights (the spectra are computed now).

        One group per tuned layer, then one of every other parameter at ``lr``; every
        parameter of the model is in exactly one group.
        """
        self._value = _check_value(lr, "lr")
        self.recompute()
        return self._groups({})

    def step(self, optimizer: Any, lr: float, *, recompute: bool | None = None) -> None:
        """Set every group's learning rate for the global rate ``lr``.

        The spectra are recomputed on every ``interval``-th call (every call by default) or
        when ``recompute`` is True; otherwise the multipliers are held and only ``lr``
        changes. ``optimizer`` must hold the groups of :meth:`param_groups` (matched by
        name; groups it added itself are left alone).
        """
        self._apply(optimizer, _check_value(lr, "lr"), {}, recompute)


class AlphaDecay(_LayerwiseSchedule):
    """Per-layer weight decay from the layers' ESDs (AlphaDecay): the same layers,
    estimator and maps as :class:`TempBalance`, with the multipliers applied to the weight
    decay (lighter tail, higher alpha: stronger decay). The learning rate is the same for
    every group.

    ``wd_min_ratio`` / ``wd_max_ratio`` default to the Adam setting of AlphaDecay's LLaMA
    pretraining scripts (0.666, 3; its class's own defaults are 0.5, 1.5). BatchNorm and
    LayerNorm parameters stay at the global weight decay unless ``batchnorm`` /
    ``layernorm`` (AlphaDecay's class has ``batchnorm=True``). Other parameters as
    :class:`TempBalance`.
    """

    quantity = "weight_decay"

    def __init__(
        self, model: Any, wd_min_ratio: float = 0.666, wd_max_ratio: float = 3.0,
        metric: Metric = "alpha", assign: Assign = "linear", xmin: XminRule = "median",
        xmin_pos: int = 2, eigs_thresh: int = 50, remove_first_layer: bool = True,
        remove_last_layer: bool = True, batchnorm: bool = False, layernorm: bool = False, *,
        batchnorm_match: NormMatch = "name", filter_zeros: bool = False,
        conv_norm: float = 0.5, esd_method: Literal["gram", "svd"] = "gram",
        threads: int | None = None, interval: int = 1,
    ) -> None:  # fmt: skip
        super().__init__(
            model, min_ratio=wd_min_ratio, max_ratio=wd_max_ratio, metric=metric,
            assign=assign, xmin=xmin, xmin_pos=xmin_pos, eigs_thresh=eigs_thresh,
            remove_first_layer=remove_first_layer, remove_last_layer=remove_last_layer,
            batchnorm=batchnorm, layernorm=layernorm, batchnorm_match=batchnorm_match,
            filter_zeros=filter_zeros, conv_norm=conv_norm, esd_method=esd_method,
            threads=threads, interval=interval,
        )  # fmt: skip

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Parameter groups with ``lr`` everywhere and each tuned layer's weight decay from
        the current weights (the rest of the parameters at ``weight_decay``)."""
        base = {"lr": _check_value(lr, "lr")}
        self._value = _check_value(weight_decay, "weight_decay")
        self.recompute()
        return self._groups(base)

    def step(self, optimizer: Any, weight_decay: float, lr: float | None = None, *,
             recompute: bool | None = None) -> None:  # fmt: skip
        """Set every group's weight decay for the global ``weight_decay`` (and every group's
        learning rate to ``lr`` when given); recomputation as :meth:`TempBalance.step`."""
        others = {} if lr is None else {"lr": _check_value(lr, "lr")}
        self._apply(optimizer, _check_value(weight_decay, "weight_decay"), others, recompute)
