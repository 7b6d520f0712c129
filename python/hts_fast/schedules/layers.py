"""The layers a schedule tunes, and the optimizer parameter groups they make.

TempBalance's rules, from the model's structure alone (so the tuned set never changes during
training and the optimizer's groups stay valid):

1. every ``torch.nn.Conv2d`` and ``torch.nn.Linear`` (subclasses included), in
   ``named_modules()`` order;
2. the first and the last of them left out (``remove_first`` / ``remove_last``: usually the
   stem and the classifier);
3. those with fewer than ``eigs_thresh`` eigenvalues left out: a conv2d kernel of shape
   (out, in, kh, kw) has kh*kw*min(out, in), a linear (out, in) min(out, in).

Every excluded layer is listed with the reason, never dropped silently.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

#: Key of the parameter groups that :func:`parameter_groups` builds: the tuned layer's name,
#: or ``REST`` for the group of every other parameter.
GROUP_KEY = "hts_fast_layer"
REST = ""

NormMatch = Literal["name", "order"]


@dataclass(frozen=True)
class ScheduledLayer:
    """One Conv2d or Linear layer of the model.

    ``eigs_num`` is the length of its pooled ESD, ``params`` the weight's entry count;
    ``tuned`` says whether the schedule sets its values, ``reason`` why not.
    """

    name: str
    module: Any
    kind: Literal["conv2d", "linear"]
    eigs_num: int
    params: int
    tuned: bool
    reason: str


def _layer_kind(module: Any, torch: Any) -> Literal["conv2d", "linear"] | None:
    if isinstance(module, torch.nn.Conv2d):
        return "conv2d"
    if isinstance(module, torch.nn.Linear):
        return "linear"
    return None


def find_layers(
    model: Any, *, remove_first: bool, remove_last: bool, eigs_thresh: int
) -> list[ScheduledLayer]:
    """Every Conv2d and Linear layer of ``model`` with whether it is tuned (rules above).

    Raises TypeError when ``model`` is not a ``torch.nn.Module``, ValueError when a layer's
    weight has an unexpected shape.
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        msg = f"model must be a torch.nn.Module, got {type(model).__name__}"
        raise TypeError(msg)
    found = [(name, module, kind) for name, module in model.named_modules()
             if (kind := _layer_kind(module, torch)) is not None]  # fmt: skip
    layers = []
    for position, (name, module, kind) in enumerate(found):
        shape = tuple(effective_weight(module).shape)
        if (kind == "conv2d" and len(shape) != 4) or (kind == "linear" and len(shape) != 2):
            msg = f"layer {name!r} ({kind}) has a weight of shape {shape}"
            raise ValueError(msg)
        rf = shape[2] * shape[3] if kind == "conv2d" else 1
        eigs_num = rf * min(shape[0], shape[1])
        reason = ""
        if remove_first and position == 0:
            reason = "the first Conv2d/Linear layer (remove_first_layer)"
        elif remove_last and position == len(found) - 1:
            reason = "the last Conv2d/Linear layer (remove_last_layer)"
        elif eigs_num < eigs_thresh:
            reason = f"{eigs_num} eigenvalues, fewer than eigs_thresh = {eigs_thresh}"
        params = math.prod(shape)
        layers.append(ScheduledLayer(name, module, kind, eigs_num, params, not reason, reason))
    return layers


def effective_weight(module: Any) -> Any:
    """``module.weight`` detached, as the layer computes it: a parametrized layer's (weight_norm,
    spectral_norm) is computed on access, read here without gradient tracking and with the
    module in eval mode for the read, so that spectral_norm does not run a power-iteration
    step (which would change its state) because its spectrum was looked at."""
    import torch

    training = module.training
    try:
        module.train(False)
        with torch.no_grad():
            return module.weight.detach()
    finally:
        module.train(training)


def _norm_owner(
    name: str, position: int, tuned: dict[str, int], preceding: list[tuple[int, str]],
    match: NormMatch,
) -> str | None:  # fmt: skip
    """The tuned layer a normalisation layer follows: by name ("bn" -> "conv", TempBalance's
    ``batchnorm_type="name"``) or the nearest Conv2d/Linear before it in module order."""
    if match == "name":
        owner = name.replace("bn", "conv")
        return owner if owner in tuned else None
    before = [layer for at, layer in preceding if at < position]
    return before[-1] if before and before[-1] in tuned else None


def parameter_groups(
    model: Any, layers: list[ScheduledLayer], *, batchnorm: bool, layernorm: bool,
    norm_match: NormMatch = "name", values: Callable[[str], dict[str, float]],
) -> list[dict[str, Any]]:  # fmt: skip
    """Optimizer parameter groups: one per tuned layer (its weight and bias, every parameter
    of its submodules, such as the ``parametrizations.weight.original*`` of a
    ``torch.nn.utils.parametrizations.weight_norm`` / ``spectral_norm`` layer, plus the
    BatchNorm / LayerNorm parameters that follow it when ``batchnorm`` / ``layernorm``), in
    module order, then one group of every other parameter. Each group is
    ``{"params": [...], GROUP_KEY: layer name or REST, **values(layer name or REST)}``.
    Every parameter of ``model`` is in exactly one group (shared parameters once, in the
    first group that claims them); an empty rest group is left out.
    """
    import torch

    if norm_match not in ("name", "order"):
        msg = f"norm_match must be 'name' or 'order', got {norm_match!r}"
        raise ValueError(msg)
    tuned = {layer.name: k for k, layer in enumerate(layers) if layer.tuned}
    batchnorms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d,
                  torch.nn.SyncBatchNorm)  # fmt: skip
    members: dict[str, list[Any]] = {name: [] for name in tuned}
    claimed: set[int] = set()

    def claim(owner: str, module: Any, recurse: bool = False) -> None:
        for p in module.parameters(recurse=recurse):
            if id(p) not in claimed:
                claimed.add(id(p))
                members[owner].append(p)

    modules = list(model.named_modules())
    kinds = {layer.name: layer.kind for layer in layers}
    convs = [(at, name) for at, (name, _) in enumerate(modules) if kinds.get(name) == "conv2d"]
    linears = [(at, name) for at, (name, _) in enumerate(modules) if kinds.get(name) == "linear"]
    # A tuned layer's own parameters first, then those under it: a parametrized layer
    # (weight_norm, spectral_norm) keeps its weight's parts in
    # ``parametrizations.weight.original*``, submodules of the layer; they train its weight
    # and take its value. Claiming the direct ones first keeps a tuned layer nested in
    # another one its own.
    for recurse in (False, True):
        for name, module in modules:
            if name in tuned:
                claim(name, module, recurse)
    for at, (name, module) in enumerate(modules):
        owner = None
        if batchnorm and isinstance(module, batchnorms):
            owner = _norm_owner(name, at, tuned, convs, norm_match)
        elif layernorm and isinstance(module, torch.nn.LayerNorm):
            owner = _norm_owner(name, at, tuned, linears, "order")
        if owner is not None:
            claim(owner, module)
    rest = []
    for p in model.parameters():
        if id(p) not in claimed:
            claimed.add(id(p))
            rest.append(p)
    groups = [{"params": members[name], GROUP_KEY: name, **values(name)} for name in tuned]
    if rest:
        groups.append({"params": rest, GROUP_KEY: REST, **values(REST)})
    return groups
