"""hts_fast: compiled Heavy-Tailed Self-Regularization analysis of neural-network weights.

Public API
----------
esd, esd_batch
    Eigenvalues of W^T W for one matrix or many (float64, ascending).
conv2d_matrices, esd_conv2d
    Conv2d kernels as rf = kh*kw matrices, WeightWatcher's conventions.
fit_powerlaw, fit_powerlaw_batch, powerlaw_curve, PowerLawFit
    Power-law fit of the ESD tail over every xmin candidate.
fit_curves
    Every xmin candidate's alpha, D (and Lambda for the truncated power law) as a table.
bootstrap_alpha
    Bootstrap confidence interval of alpha (the xmin search rerun per resample).
analyze, describe, summary
    The WeightWatcher-style layer table of a whole model (``base_model=``: of W - W_base).
distances
    Per-layer distances between two models' weights (raw, euclidean, CKA).
layerwise_ratios
    AlphaPruning's per-matrix sparsity ratios from a layer table (hts_fast.schedules.pruning).
build_info
    What was compiled and loaded.
gpu
    The optional GPU backend (the module hts_fast.spectra.gpu).

TempBalance and AlphaDecay, the layer-wise learning-rate and weight-decay schedules, are in
hts_fast.tempbalance (imported on demand: it needs torch).

The package is grouped by concern: spectra/, fits/, analysis/, loaders/, zoo/,
schedules/
(docs/architecture.md).
"""

from __future__ import annotations

from ._build_info import build_info
from .analysis.distances import distances
from .analysis.pipeline import analyze, analyze_many
from .analysis.planning import describe
from .analysis.table import summary
from .fits.bootstrap import AlphaInterval, bootstrap_alpha
from .fits.curves import fit_curves
from .fits.powerlaw import (
    PowerLawCurve,
    PowerLawFit,
    fit_powerlaw,
    fit_powerlaw_batch,
    powerlaw_curve,
)
from .schedules.pruning import layerwise_ratios
from .spectra import gpu as gpu  # documented as hts_fast.gpu
from .spectra.conv2d import Conv2dMatrices, conv2d_matrices, esd_conv2d
from .spectra.esd import esd, esd_batch

#: The one source of the version: pyproject.toml reads it from here (scikit-build-core's regex
#: provider) and passes it to CMake, which compiles it into _core (build_info()["version"]).
__version__: str = "0.1.0"

__all__ = [
    "AlphaInterval",
    "Conv2dMatrices",
    "PowerLawCurve",
    "PowerLawFit",
    "__version__",
    "analyze",
    "analyze_many",
    "bootstrap_alpha",
    "build_info",
    "conv2d_matrices",
    "describe",
    "distances",
    "esd",
    "esd_batch",
    "esd_conv2d",
    "fit_curves",
    "fit_powerlaw",
    "fit_powerlaw_batch",
    "layerwise_ratios",
    "powerlaw_curve",
    "summary",
]
