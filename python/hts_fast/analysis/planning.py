"""Which layers of a model analyze() reads: discovery, WeightWatcher's support tests in its
order, shared weights, LoRA pairs, and describe()."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from .layer_matrices import COMPAT, LayerError, LayerShape, layer_shape, not_a_matrix_reason
from .layers import Layer, apply_filters, discover_layers
from .peft import LoraProduct, LoraScaling, adapter_scaling, check_peft, lora_role, module_of

DESCRIBE_COLUMNS = ["layer_id", "name", "M", "N", "Q", "layer_type", "longname", "num_evals",
                    "rf", "analyzed", "skip_reason"]  # fmt: skip


@dataclass(slots=True)
class Planned:
    """A layer and what the size tests decided about it."""

    layer: Layer
    shape: LayerShape | None
    skip_reason: str = ""
    row: dict[str, Any] = field(default_factory=dict)
    peft: bool = False  # a LoRA product row
    extra: dict[str, Any] = field(default_factory=dict)  # columns of analyze() options
    base_delta: bool = False  # analyzed as W - W_base (analyze(base_model=...))


#: A layer's place in the flat list of matrices: (plan, first index, count, keep_top).
Owner = tuple[Planned, int, int, "int | None"]


def check_compat(compat: str | None) -> str | None:
    """Return ``compat`` when it is None or WeightWatcher 0.7.7's name; ValueError otherwise."""
    if compat not in (None, COMPAT):
        msg = f"compat must be None or {COMPAT!r}, got {compat!r}"
        raise ValueError(msg)
    return compat


def plan_layers(
    model: Any, layers: Any, min_evals: int, max_evals: int, max_N: int, compat: str | None,
    peft: bool | str = False,
) -> list[Planned]:  # fmt: skip
    """Discover the layers and apply WeightWatcher's support tests in its order (2.4).

    With ``peft``, LoRA pairs then become product rows (hts_fast.analysis.peft), in WeightWatcher's
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
            key = weight_identity(layer.weight)
            if key in seen_weights:
                first = seen_weights[key]
                reason = f"shares its weight with layer {first.layer_id} ({first.longname})"
            else:
                seen_weights[key] = layer
        plans.append(Planned(layer, shape, reason))
    if peft:
        scaling = None if compat else adapter_scaling(model)
        plans = pair_lora(plans, peft_only=peft is True, scaling=scaling, compat=compat)
    return plans


def lora_plan(plan: Planned, product: LoraProduct, old: str, new: str) -> Planned:
    """The row of a LoRA product, named after ``plan``'s layer with ``old`` replaced by ``new``."""
    layer = plan.layer
    renamed = Layer(layer.layer_id, layer.name.replace(old, new), layer.longname.replace(old, new),
                    layer.layer_type, product, layer.source)  # fmt: skip
    return Planned(renamed, product.layer_shape(), peft=True)


def pair_lora(
    plans: list[Planned], *, peft_only: bool, scaling: LoraScaling | None, compat: str | None
) -> list[Planned]:
    """Replace each analyzed lora_A/lora_B pair by its B·A row (and W + B·A row).

    Walks the analyzed layers as WeightWatcher's PEFT iterator does: W is the last analyzed
    non-LoRA layer before the pair; with ``peft_only`` the other layers are not analyzed.
    """
    result: list[Planned] = []
    pending: list[Planned] = []  # lora_A rows waiting for their lora_B
    last_a: Planned | None = None
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
            pending.append(lora_plan(a_plan, product, "lora_A", "lora_BA"))
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
                result.append(Planned(plan.layer, plan.shape, "replaced by its W + B·A row"))
                pending.append(lora_plan(plan, with_base, "lora_B", "lora_W_plus_AB"))
            # WeightWatcher yields the pair's rows last-in first-out
            result.extend(reversed(pending) if compat else pending)
            pending, last_a = [], None
    if last_a is not None:
        last_a.skip_reason = "lora_A without a lora_B after it"
        result.append(last_a)
    return result


def weight_identity(weight: Any) -> Any:
    """A key equal for two layers that hold the very same weight memory."""
    from ..loaders import LazyTensor

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
    compat = check_compat(compat)
    peft = check_peft(peft)
    rows = []
    for plan in plan_layers(model, layers, min_evals, max_evals, max_N, compat, peft):
        shape = plan.shape
        N, M, rf = (shape.N, shape.M, shape.rf) if shape else (-1, -1, -1)
        rows.append({
            "layer_id": plan.layer.layer_id, "name": plan.layer.name, "M": M, "N": N,
            "Q": N / M if M > 0 else -1.0, "layer_type": plan.layer.layer_type,
            "longname": plan.layer.longname, "num_evals": num_evals(plan, compat), "rf": rf,
            "analyzed": not plan.skip_reason, "skip_reason": plan.skip_reason,
        })  # fmt: skip
    return pd.DataFrame(rows, columns=DESCRIBE_COLUMNS)


def num_evals(plan: Planned, compat: str | None) -> int:
    """How many eigenvalues the layer's ESD will have: M*rf, or a LoRA product's rank."""
    weight, shape = plan.layer.weight, plan.shape
    if shape is None:
        return -1
    if isinstance(weight, LoraProduct) and (weight.base is None or compat):
        return weight.rank
    return shape.M * shape.rf
