"""A drop-in for WeightWatcher 0.7.7 scripts: ``import hts_fast.weightwatcher as ww``.

``ww.WeightWatcher(model=..., base_model=..., log_level=...)`` has 0.7.7's methods
(analyze, describe, get_details, get_summary, get_ESD, get_Weights, get_framework_layer,
distances, SVDSmoothing, SVDSharpness) and gives 0.7.7's numbers, computed by hts_fast in
compat mode. A keyword value it does not compute raises NotImplementedError naming it.
0.7.7's constants are here too (``ww.RAW``, ``ww.constants.CKA``, ``ww.LAYER_TYPE``, ...).

Modules
-------
watcher
    The WeightWatcher class.
options
    0.7.7's analyze() keywords: its checks, and their translation to hts_fast.analyze().
smoothing
    SVDSmoothing and SVDSharpness (in-place low-rank edits of the weights).
figures
    analyze(plot=True, savefig=...): 0.7.7's per-layer figures (matplotlib, imported only
    then).
constants
    0.7.7's constant names and values.

Importing it imports neither torch, scikit-learn, powerlaw nor matplotlib, and configures no
logging (0.7.7 calls logging.basicConfig); its logger is ``hts_fast.weightwatcher``.
docs/weightwatcher.md lists the 0.7.7 behaviours it copies and the ones it fixes.
"""

from __future__ import annotations

from . import constants
from .constants import (
    CKA,
    DEF_SAVE_DIR,
    EUCLIDEAN,
    FRAMEWORK,
    LAYER_TYPE,
    METRICS,
    RAW,
)
from .watcher import WeightWatcher

#: The WeightWatcher version whose API and numbers this module reproduces.
__version__ = "0.7.7"

__all__ = [
    "CKA",
    "DEF_SAVE_DIR",
    "EUCLIDEAN",
    "FRAMEWORK",
    "LAYER_TYPE",
    "METRICS",
    "RAW",
    "WeightWatcher",
    "__version__",
    "constants",
]
