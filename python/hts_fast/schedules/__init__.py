"""Schedules: the layer-wise training and pruning rules built on the ESD engine.

Modules
-------
layers
    The Conv2d and Linear layers of a torch model a schedule tunes (TempBalance's rules:
    first and last removed, too few eigenvalues excluded), and the optimizer's parameter
    groups (normalisation layers follow their conv or linear layer).
estimate
    Each tuned layer's ESD metrics (alpha by the median rule, the full xmin scan or the
    peak range; alphahat, spectral_norm, D, norm), on the CPU or, for CUDA weights, on the GPU.
assign
    Scores to per-layer multipliers: TempBalance's linear, sqrt, log2 and step maps.
pruning
    AlphaPruning's layer-wise sparsity ratios (:func:`hts_fast.layerwise_ratios`).

The public classes are in :mod:`hts_fast.tempbalance` (``TempBalance``, ``AlphaDecay``).
Nothing here imports torch at import time.
"""
