"""WeightWatcher 0.7.7's analyze() keywords, checked as 0.7.7 checks them and translated into
:func:`hts_fast.analyze` options (compat mode).

Three outcomes per keyword value: translated (the same numbers as 0.7.7), accepted because
0.7.7 ignores it too (min_size/max_size, glorot_fix, svd_method on a CPU, sparsify without
intra; each logged), or NotImplementedError naming it. Combinations 0.7.7 rejects raise
:class:`InvalidParams` (a ValueError: 0.7.7 raises a bare Exception).
"""

from __future__ import annotations

import logging
import numbers
from typing import Any

import numpy as np

from . import constants as c

logger = logging.getLogger("hts_fast.weightwatcher")

#: 0.7.7's analyze() keywords and defaults, in its order (model first).
ANALYZE_DEFAULTS: dict[str, Any] = {
    "model": None, "layers": [], "min_evals": c.DEFAULT_MIN_EVALS,
    "max_evals": c.DEFAULT_MAX_EVALS, "min_size": None, "max_size": None,
    "max_N": c.DEFAULT_MAX_N, "glorot_fix": False, "plot": False, "randomize": False,
    "savefig": c.DEF_SAVE_DIR, "mp_fit": False, "conv2d_norm": True, "ww2x": False,
    "pool": True, "conv2d_fft": False, "fft": False, "deltas": False, "intra": False,
    "vectors": False, "channels": None, "stacked": False, "fix_fingers": False,
    "xmin_max": None, "max_fingers": c.DEFAULT_MAX_FINGERS,
    "finger_thresh": c.DEFAULT_FINGER_THRESH, "fit": c.PL, "sparsify": True, "detX": False,
    "ERG": False, "svd_method": c.FAST_SVD, "tolerance": c.WEAK_RANK_LOSS_TOLERANCE,
    "start_ids": c.DEFAULT_START_ID, "pl_package": c.WW_POWERLAW_PACKAGE, "xmax": None,
    "base_model": None, "peft": False, "inverse": False,
}  # fmt: skip

#: Keyword values 0.7.7 accepts that this facade does not compute: keyword -> its no-op
#: values (anything else raises NotImplementedError naming the keyword).
UNSUPPORTED = {
    "ww2x": (False,), "pool": (True,), "conv2d_fft": (False,), "fft": (False,),
    "intra": (False,), "vectors": (False,), "stacked": (False,), "channels": (None,),
    "inverse": (False,), "xmin_max": (None,), "finger_thresh": (c.DEFAULT_FINGER_THRESH,),
}  # fmt: skip
WHY = {
    "ww2x": "pool=False (one row per conv2d kernel position)",
    "pool": "pool=False (one row per conv2d kernel position)",
    "conv2d_fft": "the FFT of conv2d kernels (experimental in 0.7.7)",
    "fft": "fft=True (it raises AttributeError in 0.7.7)",
    "intra": "intra-layer correlations",
    "vectors": "eigenvector metrics",
    "stacked": "the stacked-layers ESD",
    "channels": "channels= (it raises TypeError in 0.7.7)",
    "inverse": "the inverse ESD",
    "xmin_max": "xmin_max= (an xmin range is only taken by the powerlaw package's fits)",
    "finger_thresh": "a finger_thresh other than 1.0",
}


class InvalidParams(ValueError):
    """A combination of keywords WeightWatcher 0.7.7 rejects ("params not valid")."""


def not_implemented(keyword: str, value: Any, what: str = "") -> NotImplementedError:
    """The error for a keyword value this facade does not reproduce."""
    return NotImplementedError(
        f"hts_fast.weightwatcher does not implement {keyword}={value!r}"
        f"{': ' + what if what else ''}; use weightwatcher 0.7.7 itself for it"
    )


def _filter_ids(layers: Any) -> list[int]:
    if isinstance(layers, numbers.Integral):
        layers = [layers]
    elif isinstance(layers, np.ndarray):
        layers = layers.tolist()
    if not isinstance(layers, list | tuple):
        return []
    return [int(f) for f in layers if isinstance(f, numbers.Integral)]


def check_params(p: dict[str, Any]) -> None:
    """0.7.7's parameter check (valid_params): raise InvalidParams for what it rejects."""
    bad = []
    min_evals, max_evals, max_N = p["min_evals"], p["max_evals"], p["max_N"]
    if min_evals and max_evals and min_evals >= max_evals:
        bad.append(f"min_evals {min_evals} >= max_evals {max_evals}")
    elif max_evals and max_evals < -1:
        bad.append(f"max_evals {max_evals} < -1")
    if max_N < max_evals:
        bad.append(f"max_N {max_N} < max_evals {max_evals}")
    if max_N < min_evals:
        bad.append(f"max_N {max_N} < min_evals {min_evals}")
    if p.get("svd_method", c.FAST_SVD) not in (c.FAST_SVD, c.ACCURATE_SVD):
        bad.append(f"svd_method {p['svd_method']!r} is not 'fast' or 'accurate'")
    if not p["pool"] and p["conv2d_fft"]:
        bad.append("conv2d_fft needs pool=True")
    if p["intra"] and p["conv2d_fft"]:
        bad.append("intra and conv2d_fft")
    channels = p["channels"]
    if isinstance(channels, str) and channels.lower() not in ("first", "last"):
        bad.append(f"channels {channels!r}")
    ids = _filter_ids(p["layers"])
    if ids and max(ids) > 0 and min(ids) < 0:
        bad.append(f"layer filter ids must be all > 0 or all < 0: {ids}")
    if not isinstance(p["savefig"], str | bool):
        bad.append(f"savefig {p['savefig']!r} is neither a folder name nor a bool")
    fix_fingers, xmax, fit = p.get("fix_fingers"), p.get("xmax"), p.get("fit", c.PL)
    if fix_fingers:
        if fix_fingers not in (c.XMIN_PEAK, c.CLIP_XMAX):
            bad.append(f"fix_fingers {fix_fingers!r}")
        elif xmax is not None and xmax is not False and isinstance(xmax, int):
            bad.append(f"fix_fingers with xmax={xmax}")
        if p.get("max_fingers") is not None and p["max_fingers"] < 1:
            bad.append(f"max_fingers {p['max_fingers']} < 1")
    if fit not in (c.PL, c.TPL, c.E_TPL, c.POWER_LAW, c.TRUNCATED_POWER_LAW):
        bad.append(f"fit {fit!r}")
    if fit == c.E_TPL and fix_fingers == c.CLIP_XMAX:
        bad.append("fit='E_TPL' with fix_fingers='clip_xmax'")
    if p["intra"] and (p.get("randomize") or p.get("vectors")):
        bad.append("intra with randomize or vectors")
    if p["start_ids"] < 0:
        bad.append(f"start_ids {p['start_ids']} < 0")
    pl_package = p.get("pl_package", c.WW_POWERLAW_PACKAGE)
    if pl_package not in (c.POWERLAW_PACKAGE, c.WW_POWERLAW_PACKAGE):
        bad.append(f"pl_package {pl_package!r}")
    if not isinstance(xmax, int) and xmax not in (False, None, "force"):
        bad.append(f"xmax {xmax!r} is not None, 'force' or an int")
    elif isinstance(xmax, int) and xmax == 0:
        bad.append("xmax 0")
    if pl_package == c.WW_POWERLAW_PACKAGE:
        if xmax == "force":
            bad.append("xmax='force' needs pl_package='powerlaw'")
        if fit not in (c.PL, c.POWER_LAW):
            bad.append(f"fit={fit!r} needs pl_package='powerlaw'")
    if p["inverse"] and p.get("vectors"):
        bad.append("inverse with vectors")
    if bad:
        raise InvalidParams("Error, params not valid: " + "; ".join(bad))


def check_supported(p: dict[str, Any]) -> None:
    """NotImplementedError for the first keyword whose value this facade does not compute."""
    for keyword, fine in UNSUPPORTED.items():
        if keyword in p and not any(p[keyword] is v or p[keyword] == v for v in fine):
            raise not_implemented(keyword, p[keyword], WHY[keyword])


def ignored(p: dict[str, Any]) -> None:
    """Log the keywords 0.7.7 accepts and ignores (as it does, or where it says nothing)."""
    if p.get("min_size") or p.get("max_size"):
        logger.warning("min_size and max_size are ignored (WeightWatcher 0.7.7: use min_evals, "
                       "max_evals)")  # fmt: skip
    if p.get("glorot_fix"):
        logger.warning("glorot_fix=True has no effect (as in WeightWatcher 0.7.7)")


def analyze_options(p: dict[str, Any]) -> dict[str, Any]:
    """hts_fast.analyze() keyword options (compat) for 0.7.7's checked analyze() keywords
    (layers and model excepted: the caller maps ids and models)."""
    fit, pl_package = p["fit"], p["pl_package"]
    fix_fingers = p["fix_fingers"] or None
    fit = {c.POWER_LAW: c.PL, c.TRUNCATED_POWER_LAW: c.TPL}.get(fit, fit)
    if pl_package == c.POWERLAW_PACKAGE:
        if fit == c.PL:
            raise not_implemented("pl_package", pl_package,
                                  "the powerlaw package's power-law fit (our PL fit is 0.7.7's "
                                  "own, pl_package='ww')")  # fmt: skip
        if fit == c.TPL and fix_fingers == c.XMIN_PEAK:  # 0.7.7 makes E_TPL exactly this
            fit, fix_fingers = c.E_TPL, None
        if fix_fingers:
            raise not_implemented("fix_fingers", fix_fingers, f"with fit={p['fit']!r}")
    if p["deltas"] and p["plot"]:
        raise not_implemented("deltas", True, "the eigenvalue-gap plots")
    return {
        "min_evals": p["min_evals"], "max_evals": p["max_evals"], "max_N": p["max_N"],
        "conv2d_norm": p["conv2d_norm"], "randomize": bool(p["randomize"]),
        "mp_fit": bool(p["mp_fit"]), "detX": bool(p["detX"] or p["ERG"]), "fit": fit,
        "fix_fingers": fix_fingers, "max_fingers": p["max_fingers"],
        "tolerance": p["tolerance"] or c.WEAK_RANK_LOSS_TOLERANCE, "xmax": p["xmax"],
        "peft": p["peft"],
    }  # fmt: skip


def shift_filters(layers: Any, offset: int) -> Any:
    """layers= given in 0.7.7's layer ids, in ours (ours = theirs - offset); a NumPy
    array is read as its list (0.7.7 ignores an array filter and analyzes every layer)."""
    if isinstance(layers, np.ndarray):
        layers = layers.tolist()
    if not offset:
        return layers
    items = layers if isinstance(layers, list | tuple) else [layers]
    shifted = []
    ids = [f for f in items if isinstance(f, numbers.Integral) and not isinstance(f, bool)]
    negative = bool(ids) and min(ids) < 0
    for f in items:
        if f in ids:
            mine = (abs(int(f)) - offset) * (-1 if negative else 1)
            if negative and mine >= 0:
                continue  # a layer this numbering does not have: nothing to drop
            if not negative and mine < 0:
                mine = 2**62  # a layer id nothing has: nothing kept by it
            shifted.append(mine)
        else:
            shifted.append(f)
    if negative and not [f for f in shifted if isinstance(f, int)] and not [
            f for f in shifted if not isinstance(f, int)]:  # fmt: skip
        return []
    return shifted
