"""SVDSmoothing and SVDSharpness: WeightWatcher 0.7.7's in-place low-rank edits of a model's
weights, with the ESDs, fits and SVDs computed by hts_fast.

Per analyzed layer (0.7.7's default size tests, ``layers=`` filter), a count k of singular
components is chosen from the layer's ESD (without conv2d_norm, as 0.7.7):

* SVDSmoothing ``method``: ``"detX"`` (the detX count), ``"alpha_min"`` (the power-law
  tail's num_pl_spikes), ``"rmt"`` (the Marchenko-Pastur fit's num_spikes), ``"auto"``
  (num_spikes when alpha > 6, else detX), anything else int(percent * M * rf);
* SVDSharpness: k = -num_spikes of the MP fit of the weights with their entries permuted
  (NumPy's global random state, as 0.7.7), the "correlation traps".

A dense, conv1d or embedding weight W is then replaced by its best rank-k approximation
(k > 0), or has its |k| largest singular components removed (k < 0); k = 0 leaves it as
it is. A conv2d kernel is edited position by position with ceil(k / rf). Biases are not
touched. Differences from 0.7.7 (docs/weightwatcher.md): the rank-k approximation is the
exact one (LAPACK SVD) where 0.7.7 uses scikit-learn's randomized TruncatedSVD; the weights
keep their dtype; a layer whose MP fit fails is left as it is (0.7.7 keeps its top singular
component only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg

from ..analysis.layer_matrices import COMPAT, layer_matrices, read_weight
from ..analysis.layers import _is_torch_module
from ..analysis.planning import Planned, plan_layers
from ..fits import marchenko_pastur
from ..fits.powerlaw import fit_powerlaw
from ..spectra.esd import esd_batch
from . import constants as c
from .options import logger, not_implemented


def _layers(model: Any, layers: Any) -> list[Planned]:
    if not (_is_torch_module(model) or isinstance(model, Mapping)):
        raise not_implemented("model", type(model).__name__,
                              "SVDSmoothing/SVDSharpness edit torch modules and state dicts")  # fmt: skip
    plans = plan_layers(model, layers, c.DEFAULT_MIN_EVALS, c.DEFAULT_MAX_EVALS,
                        c.DEFAULT_MAX_N, COMPAT)  # fmt: skip
    return [p for p in plans if not p.skip_reason]


def _matrices(plan: Planned) -> list[np.ndarray]:
    array = read_weight(plan.layer.weight, COMPAT)
    if array.ndim == 3:
        raise not_implemented("layers", plan.layer.longname, "a 3-D weight")
    return list(layer_matrices(array, plan.layer.layer_type, compat=COMPAT,
                               conv2d_norm=False).matrices)  # fmt: skip


def _esd(matrices: list[np.ndarray]) -> np.ndarray:
    return np.sort(np.concatenate(esd_batch(matrices, method="svd")))


def low_rank(W: np.ndarray, k: int) -> np.ndarray:
    """W (float64) with only its k largest singular components (k > 0) or without its |k|
    largest (k < 0); W itself for k = 0 or k >= min(W.shape)."""
    if k == 0 or k >= min(W.shape):
        return W
    u, s, vt = scipy.linalg.svd(W, full_matrices=False, lapack_driver="gesdd")
    s = s.copy()
    if k > 0:
        s[k:] = 0.0
    else:
        s[:-k] = 0.0
    return (u * s) @ vt


def _replace(plan: Planned, k: int) -> None:
    """Edit the layer's weight in place with low_rank(., k) (per kernel position for conv2d)."""
    weight = plan.layer.weight
    original = read_weight(weight, None)
    new = np.array(original, dtype=np.float64)
    if plan.layer.layer_type == "conv2d":
        assert plan.shape is not None
        k = math.ceil(k / plan.shape.rf)
        for i in range(new.shape[2]):
            for j in range(new.shape[3]):
                new[:, :, i, j] = low_rank(new[:, :, i, j], k)
    else:
        new = low_rank(new, k)
    if type(weight).__module__.startswith("torch"):
        import torch

        with torch.no_grad():
            weight.copy_(torch.from_numpy(new).to(weight.dtype))
    else:
        weight[...] = new


def svd_smoothing(model: Any, *, percent: float, layers: Any, method: str, fit: str,
                  svd_method: str) -> None:  # fmt: skip
    """SVDSmoothing on every analyzed layer of ``model``, in place (module notes)."""
    if svd_method not in (c.FAST_SVD, c.ACCURATE_SVD):
        msg = f"Error, params not valid: svd_method {svd_method!r}"
        raise ValueError(msg)
    if method == c.LAMBDA_MIN and fit not in (c.PL, c.POWER_LAW):
        raise not_implemented("fit", fit, "SVDSmoothing(method='alpha_min') with a TPL fit")
    for plan in _layers(model, layers):
        assert plan.shape is not None
        evals = _esd(_matrices(plan)) if method in (c.DETX, c.LAMBDA_MIN, c.RMT, c.AUTO) else None
        if method == c.DETX:
            k = marchenko_pastur.detx(evals, compat=True).detX_num
        elif method == c.LAMBDA_MIN:
            found = fit_powerlaw(evals)
            k = int(np.count_nonzero(evals >= found.xmin)) if found.status == "success" else -1
        elif method == c.RMT:
            k = marchenko_pastur.mp_fit(evals, plan.shape.N, plan.shape.M, compat=True).num_spikes
        elif method == c.AUTO:
            alpha = fit_powerlaw(evals).alpha
            k = (marchenko_pastur.mp_fit(evals, plan.shape.N, plan.shape.M, compat=True).num_spikes
                 if alpha > 6 else marchenko_pastur.detx(evals, compat=True).detX_num)  # fmt: skip
        else:
            k = int(percent * plan.shape.M * plan.shape.rf)
        logger.info(f"SVDSmoothing layer {plan.layer.longname}: k = {k}")
        _replace(plan, int(k))


def svd_sharpness(model: Any, *, layers: Any, plot: bool = False, id_offset: int = 0) -> None:
    """SVDSharpness on every analyzed layer of ``model``, in place (module notes).

    ``plot``: 0.7.7's Marchenko-Pastur figures of each permuted ESD (``mpfit1`` for a square
    layer, ``mpfit2``), saved in ``ww-img`` as ``ww.layer{id}.{kind}.png`` (ids shifted by
    ``id_offset``) and shown (hts_fast.weightwatcher.figures)."""
    figs = None
    if plot:
        from . import figures

        figs = figures.Figures(figures.require_pyplot(), figures.save_folder(True))
    for plan in _layers(model, layers):
        assert plan.shape is not None
        permuted = []
        for W in _matrices(plan):
            flat = np.asarray(W).reshape(-1)
            order = np.random.permutation(np.arange(flat.size))  # noqa: NPY002 - as 0.7.7
            permuted.append(flat[order].reshape(W.shape))
        evals = _esd(permuted)
        fit = marchenko_pastur.mp_fit(evals, plan.shape.N, plan.shape.M, compat=True)
        if figs is not None:
            row = {"layer_id": plan.layer.layer_id + id_offset, "name": plan.layer.name,
                   "longname": plan.layer.longname, "N": plan.shape.N, "M": plan.shape.M,
                   "sigma_mp": fit.sigma_mp, "W_scale": fit.W_scale,
                   "num_spikes": fit.num_spikes, "mp_softrank": fit.mp_softrank}  # fmt: skip
            figures.mp_figures(figs, pd.Series(row), evals, shuffled=False)
        if fit.status != "success":
            logger.warning(f"SVDSharpness: the MP fit of layer {plan.layer.longname} failed "
                           f"({fit.reason}); left as it is")  # fmt: skip
            continue
        _replace(plan, -int(fit.num_spikes))
