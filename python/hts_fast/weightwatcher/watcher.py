"""``hts_fast.weightwatcher.WeightWatcher``: WeightWatcher 0.7.7's class on hts_fast's engine.

Every method computes through :func:`hts_fast.analyze` (compat mode) and the analysis
modules; what the class adds is 0.7.7's state (the model, base model and framework it
remembers between calls), its layer ids, its checks and its return types. The 0.7.7
behaviours it copies and the few it fixes are listed in docs/weightwatcher.md.
"""

from __future__ import annotations

import inspect
import numbers
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.distances import distances as _distances
from ..analysis.layer_matrices import COMPAT, layer_matrices, read_weight
from ..analysis.pipeline import analyze as _analyze
from ..analysis.planning import Planned, plan_layers
from ..analysis.planning import describe as _describe
from ..analysis.randomize import shuffled_esd
from ..analysis.table import (
    DETX_COLUMNS,
    MP_COLUMNS,
    PEFT_COLUMN,
    RANDOM_MP_COLUMNS,
    RANDOMIZE_COLUMNS,
    WW_COLUMNS,
)
from ..spectra.esd import esd_batch
from . import constants as c
from .options import (
    ANALYZE_DEFAULTS,
    analyze_options,
    check_params,
    check_supported,
    ignored,
    logger,
    not_implemented,
    shift_filters,
)

#: The columns 0.7.7 can return (ours, such as status_reason, are dropped).
WW_TABLE_COLUMNS = frozenset([*WW_COLUMNS, *RANDOMIZE_COLUMNS, *RANDOM_MP_COLUMNS,
                              *MP_COLUMNS, *DETX_COLUMNS, PEFT_COLUMN, "Lambda", "raw_alpha",
                              "num_fingers"])  # fmt: skip
DESCRIBE_COLUMNS = ["layer_id", "name", "M", "N", "Q", "layer_type", "longname", "num_evals",
                    "rf"]  # fmt: skip
SUMMARY_METRICS = ["log_norm", "alpha", "alpha_weighted", "log_alpha_norm",
                   "log_spectral_norm", "stable_rank", "mp_softrank"]  # fmt: skip


def infer_framework(model: Any) -> str:
    """0.7.7's framework name for a model: 'pytorch', 'keras', 'onnx', 'pystatedict' (a
    dict), 'pystatedict_dir' (a folder of checkpoint files) or 'unknown'."""
    if model is None:
        return c.FRAMEWORK.UNKNOWN
    names = [str(cls) for cls in inspect.getmro(type(model))]
    for word, framework in (("torch", c.FRAMEWORK.PYTORCH), ("keras", c.FRAMEWORK.KERAS),
                            ("onnx", c.FRAMEWORK.ONNX), ("dict", c.FRAMEWORK.PYSTATEDICT)):  # fmt: skip
        if any(word in name for name in names):
            return framework
    if isinstance(model, str | os.PathLike) and os.path.isdir(model):
        return c.FRAMEWORK.PYSTATEDICT_DIR
    return c.FRAMEWORK.UNKNOWN


def _check_params_none(params: Any) -> None:
    if params is not None:
        raise not_implemented("params", "a dict", "the methods take their keywords instead")


class WeightWatcher:
    """WeightWatcher 0.7.7's API (``import hts_fast.weightwatcher as ww``).

    ``model``: a torch module, a state dict, an ONNX model or a checkpoint folder;
    ``base_model``: the model whose weights are subtracted (analyze() then analyzes
    W - W_base); ``log_level``: the level of the ``hts_fast.weightwatcher`` logger.
    ``framework`` is accepted and ignored, as in 0.7.7 (always inferred).
    """

    def __init__(self, model: Any = None, framework: Any = None, base_model: Any = None,
                 log_level: Any = None) -> None:  # fmt: skip
        if log_level:
            logger.setLevel(log_level)
        self.model = model
        self.base_model = base_model
        self.details: pd.DataFrame | None = None
        self.framework: str | None = None
        self.results = None
        if model is not None:
            self.framework = infer_framework(model)
        if model is None and base_model is not None:
            logger.error("base_model is ignored without a model")

    def __repr__(self) -> str:
        rows = "no analysis yet" if self.details is None else f"{len(self.details)} layers"
        return f"hts_fast.weightwatcher.WeightWatcher({rows})"

    infer_framework = staticmethod(infer_framework)

    # -- state ------------------------------------------------------------------------

    def _set_model(self, model: Any, base_model: Any = None) -> None:
        """0.7.7's set_model_: a given model replaces the remembered one; a base_model is
        taken only together with a model and only when none is remembered yet."""
        self.model = model or self.model
        if self.model is None:
            msg = "no model: pass model= to the constructor or to this call"
            raise ValueError(msg)
        if base_model is not None and (model is None or self.base_model is not None):
            logger.warning("base_model= is ignored: WeightWatcher 0.7.7 takes it only from "
                           "the constructor or with model= on a watcher that has none")  # fmt: skip
        if model is not None and self.base_model is None:
            self.base_model = base_model
        if self.framework is None:
            self.framework = infer_framework(self.model)
        if self.framework == c.FRAMEWORK.PYSTATEDICT and isinstance(self.model, Mapping):
            if "state_dict" in self.model:
                self.model = self.model["state_dict"]
            if isinstance(self.base_model, Mapping) and "state_dict" in self.base_model:
                # 0.7.7 puts the base's inner dict in self.model here; we unwrap the base
                self.base_model = self.base_model["state_dict"]

    def _id_offset(self, model: Any, start_ids: int) -> int:
        """0.7.7's layer id minus ours for this model (start_ids, its framework rules)."""
        framework = infer_framework(model)
        if framework == c.FRAMEWORK.ONNX:
            return 0
        if isinstance(model, Mapping):
            first = start_ids or (1 if self.framework == c.FRAMEWORK.PYSTATEDICT else 0)
            return first - 1
        return start_ids

    # -- analyze, describe, summary ------------------------------------------------------

    def analyze(self, model=None, layers=[], min_evals=c.DEFAULT_MIN_EVALS,  # noqa: B006
                max_evals=c.DEFAULT_MAX_EVALS, min_size=None, max_size=None,
                max_N=c.DEFAULT_MAX_N, glorot_fix=False, plot=False, randomize=False,
                savefig=c.DEF_SAVE_DIR, mp_fit=False, conv2d_norm=True, ww2x=False, pool=True,
                conv2d_fft=False, fft=False, deltas=False, intra=False, vectors=False,
                channels=None, stacked=False, fix_fingers=False, xmin_max=None,
                max_fingers=c.DEFAULT_MAX_FINGERS, finger_thresh=c.DEFAULT_FINGER_THRESH,
                fit=c.PL, sparsify=True, detX=False, ERG=False, svd_method=c.FAST_SVD,
                tolerance=c.WEAK_RANK_LOSS_TOLERANCE, start_ids=c.DEFAULT_START_ID,
                pl_package=c.WW_POWERLAW_PACKAGE, xmax=None, base_model=None, peft=False,
                inverse=False) -> pd.DataFrame:  # fmt: skip
        """0.7.7's analyze(): one row per analyzed layer, 0.7.7's columns and numbers.

        Every 0.7.7 keyword is taken; a value this facade does not compute raises
        NotImplementedError naming the keyword. Returns the DataFrame (also kept as
        ``self.details``); an empty DataFrame without columns when no layer is analyzed.
        ``plot=True`` draws 0.7.7's figures of each layer, saved as
        ``{folder}/ww.layer{id}.{kind}.png`` when ``savefig`` is True (``ww-img``) or a
        folder, and shown (hts_fast.weightwatcher.figures; needs matplotlib).
        """
        p = {name: value for name, value in locals().items() if name in ANALYZE_DEFAULTS}
        self._set_model(model, base_model)
        if ww2x:
            logger.warning("ww2x is deprecated (WeightWatcher 0.7.7): it means pool=False")
            p["ww2x"], p["pool"] = False, False
        check_params(p)
        check_supported(p)
        ignored(p)
        options = analyze_options(p)
        if self.base_model is not None and options["peft"]:
            raise not_implemented("peft", peft, "with a base_model (0.7.7 ignores peft then)")
        sinks: dict[str, dict[int, np.ndarray]] = {}
        if plot:
            from .figures import require_pyplot

            require_pyplot()  # before the analysis: a missing matplotlib fails at once
            sinks = {"_spectra_sink": {}, "_random_sink": {}}
        offset = self._id_offset(self.model, start_ids)
        table = _analyze(self.model, layers=shift_filters(layers, offset), compat=COMPAT,
                         base_model=self.base_model, **options, **sinks)  # fmt: skip
        details = self._ww_table(table, offset)
        self.details = details
        if plot:
            from .figures import draw_figures

            draw_figures(details, sinks["_spectra_sink"], sinks["_random_sink"],
                         savefig=savefig, xmax=options["xmax"], mp_fit=options["mp_fit"],
                         randomize=options["randomize"], detX=options["detX"],
                         fit=options["fit"])  # fmt: skip
        return details

    @staticmethod
    def _ww_table(table: pd.DataFrame, offset: int) -> pd.DataFrame:
        if len(table) == 0:
            return pd.DataFrame(columns=[])
        keep = [col for col in table.columns if col in WW_TABLE_COLUMNS]
        details = table[keep].copy()
        details.attrs = {}
        if offset:
            details["layer_id"] = details["layer_id"] + offset
        return details

    def get_details(self) -> pd.DataFrame | None:
        """The last analyze() table, or None."""
        return self.details

    def get_summary(self, details: pd.DataFrame | None = None) -> dict[str, Any]:
        """Mean over the rows of each summary metric present (log_norm, alpha,
        alpha_weighted, log_alpha_norm, log_spectral_norm, stable_rank, mp_softrank), of
        ``details`` or the last analyze() table; failed fits (alpha -1) included, as 0.7.7."""
        if details is None:
            details = self.details
        columns = details.columns if details is not None else []
        return {m: details[m].mean() for m in SUMMARY_METRICS if m in columns}

    def describe(self, model=None, layers=[], min_evals=c.DEFAULT_MIN_EVALS,  # noqa: B006
                 max_evals=c.DEFAULT_MAX_EVALS, min_size=None, max_size=None,
                 max_N=c.DEFAULT_MAX_N, glorot_fix=False, savefig=c.DEF_SAVE_DIR, ww2x=False,
                 pool=True, conv2d_fft=False, fft=False, conv2d_norm=True, intra=False,
                 channels=None, stacked=False, start_ids=0, base_model=None,
                 peft=False) -> pd.DataFrame:  # fmt: skip
        """0.7.7's describe(): the analyzed layers' ids, names, shapes and num_evals, no SVD.
        An empty DataFrame without columns when there is none."""
        p = {**ANALYZE_DEFAULTS, **{k: v for k, v in locals().items() if k in ANALYZE_DEFAULTS}}
        self._set_model(model, base_model)
        if ww2x:
            p["ww2x"], p["pool"] = False, False
        check_params(p)
        check_supported(p)
        ignored(p)
        if peft:
            raise not_implemented("peft", peft, "in describe()")
        offset = self._id_offset(self.model, start_ids)
        table = _describe(self.model, layers=shift_filters(layers, offset), min_evals=min_evals,
                          max_evals=max_evals, max_N=max_N, compat=COMPAT)  # fmt: skip
        table = table[table["analyzed"]]
        if len(table) == 0:
            logger.warning("No layers found")
            return pd.DataFrame(columns=[])
        table = table[DESCRIBE_COLUMNS].reset_index(drop=True)
        if offset:
            table["layer_id"] = table["layer_id"] + offset
        return table

    # -- one layer -------------------------------------------------------------------------

    def _layer(self, model: Any, layer: Any) -> Planned | None:
        """The first analyzed layer (default describe() options) matching 0.7.7's ``layer=``:
        a layer id, a name, or None (the first); None (and an error logged) otherwise."""
        self._set_model(model)
        offset = self._id_offset(self.model, 0)
        plans = [p for p in plan_layers(self.model, None, c.DEFAULT_MIN_EVALS,
                                        c.DEFAULT_MAX_EVALS, c.DEFAULT_MAX_N, COMPAT)
                 if not p.skip_reason]  # fmt: skip
        for plan in plans:
            if layer is None or (isinstance(layer, str) and plan.layer.name == layer) or (
                    isinstance(layer, numbers.Integral) and not isinstance(layer, str)
                    and plan.layer.layer_id + offset == layer):  # fmt: skip
                return plan
        logger.error(f"layer {layer!r} is not among the analyzed layers")
        return None

    def _matrices(self, plan: Planned) -> tuple[list[np.ndarray], int | None]:
        array = read_weight(plan.layer.weight, COMPAT)
        parts = layer_matrices(array, plan.layer.layer_type, compat=COMPAT, conv2d_norm=False)
        return list(parts.matrices), parts.keep_top

    def get_ESD(self, model: Any = None, layer: Any = None, random: bool = False,
                params: Any = None) -> np.ndarray | list:  # fmt: skip
        """The sorted eigenvalues of a layer (by id or name; None: the first analyzed layer)
        without conv2d_norm, as 0.7.7 (a conv2d layer's are twice analyze()'s). ``[]`` when
        no analyzed layer matches.

        ``random=True``: the ESD of the layer's matrices with their entries shuffled by
        NumPy's global random state (five shuffles pooled when the layer has fewer than 100
        eigenvalues), 0.7.7's numbers after the same ``np.random.seed``."""
        _check_params_none(params)
        plan = self._layer(model, layer)
        if plan is None:
            return []
        matrices, keep_top = self._matrices(plan)
        if random:
            assert plan.shape is not None  # an analyzed layer has its shape
            return shuffled_esd(matrices, n_comp=plan.shape.M * plan.shape.rf,
                                rng=np.random, keep_top=keep_top)  # fmt: skip
        evals = np.sort(np.concatenate(esd_batch(matrices, method="svd")))
        return evals[-keep_top:] if keep_top is not None else evals

    def get_Weights(self, model: Any = None, layer: Any = None, params: Any = None) -> list:
        """A layer's weight matrices as 0.7.7 returns them: ``[W]`` for a dense layer, the
        rf kernel-position matrices of a conv2d layer (larger side first); copies, in the
        weights' dtype (float32 for torch models). ``[]`` when no analyzed layer matches."""
        _check_params_none(params)
        plan = self._layer(model, layer)
        if plan is None:
            return []
        matrices, keep_top = self._matrices(plan)
        if keep_top is not None:  # a 3-D weight stays one array in 0.7.7
            return [np.array(read_weight(plan.layer.weight, COMPAT))]
        return [np.array(m) for m in matrices]

    def get_framework_layer(self, model: Any = None, layer: Any = None,
                            params: Any = None) -> Any:  # fmt: skip
        """The torch module of a layer (its key for a state dict); ``[]`` when none matches."""
        _check_params_none(params)
        plan = self._layer(model, layer)
        if plan is None:
            return []
        if hasattr(self.model, "get_submodule") and plan.layer.source == "module":
            path = plan.layer.longname
            return (
                self.model if path == type(self.model).__name__ else self.model.get_submodule(path)
            )
        return plan.layer.name

    # -- two models ------------------------------------------------------------------------

    def distances(self, model_1: Any, model_2: Any, method: str = c.RAW,
                  layers: Any = [], start_ids: int = 0, pool: bool = True,  # noqa: B006
                  channels: Any = None) -> tuple[Any, Any, pd.DataFrame]:  # fmt: skip
        """0.7.7's distances(): ``(mean delta_W, mean delta_b, table)``, the table indexed
        by layer_id with columns method, name, delta_W, delta_b, M, N, b_shape, longname.
        Layers are paired by position, as 0.7.7 (hts_fast.distances pairs them by name)."""
        check_supported({"pool": pool, "channels": channels})
        check_params({**ANALYZE_DEFAULTS, "layers": layers, "start_ids": start_ids,
                      "pool": pool, "channels": channels})  # fmt: skip
        if not isinstance(method, str) or method.lower() not in (c.RAW, c.EUCLIDEAN, c.CKA):
            msg = f"Error, method not valid: {method!r}"
            raise ValueError(msg)
        self._set_model(model_1)
        self._set_model(model_2)  # 0.7.7 leaves the watcher on model_2
        if infer_framework(model_1) != infer_framework(model_2):
            msg = "Sorry, models are from different frameworks"
            raise ValueError(msg)
        offset = self._id_offset(model_1, start_ids)
        table = _distances(model_1, model_2, method.lower(), layers=shift_filters(layers, offset),
                           compat=COMPAT)  # fmt: skip
        if offset:
            table.index = table.index + offset
        return (np.mean(table["delta_W"].to_numpy()), np.mean(table["delta_b"].to_numpy()),
                table)  # fmt: skip

    # -- in-place edits --------------------------------------------------------------------

    def SVDSmoothing(self, model: Any = None, percent: float = 0.8, pool: bool = True,
                     layers: Any = [], method: str = c.DETX, fit: str = c.PL,  # noqa: B006
                     plot: bool = False, start_ids: int = 0,
                     svd_method: str = c.FAST_SVD) -> Any:  # fmt: skip
        """0.7.7's SVDSmoothing(): each layer's weights replaced by a low-rank version, in
        place (hts_fast.weightwatcher.smoothing). Returns the model. ``plot`` draws nothing,
        as in 0.7.7."""
        from .smoothing import svd_smoothing

        check_supported({"pool": pool})
        if plot:
            logger.info("SVDSmoothing(plot=True) draws nothing, as in WeightWatcher 0.7.7")
        self._set_model(model)
        offset = self._id_offset(self.model, start_ids)
        svd_smoothing(self.model, percent=percent, layers=shift_filters(layers, offset),
                      method=method, fit=fit, svd_method=svd_method)  # fmt: skip
        return self.model

    def SVDSharpness(self, model: Any = None, pool: bool = True, layers: Any = [],  # noqa: B006
                     plot: bool = False, start_ids: int = 0) -> Any:  # fmt: skip
        """0.7.7's SVDSharpness(): the top singular components that the shuffled weights'
        Marchenko-Pastur fit counts as spikes ("correlation traps") removed, in place.
        Returns the ``model`` argument (None when the model came from the constructor, as
        0.7.7). ``plot=True`` draws 0.7.7's MP figures of each permuted ESD into ``ww-img``."""
        from .smoothing import svd_sharpness

        check_supported({"pool": pool})
        self._set_model(model)
        offset = self._id_offset(self.model, start_ids)
        svd_sharpness(self.model, layers=shift_filters(layers, offset), plot=plot,
                      id_offset=offset)  # fmt: skip
        return model
