"""Analysis: the :func:`hts_fast.analyze` pipeline, from a model to its layer table.

Modules, in the order the pipeline uses them
--------------------------------------------
pipeline
    :func:`hts_fast.analyze` and :func:`hts_fast.analyze_many`: options, chunks, stages.
planning
    Which layers are analyzed and why others are skipped (:func:`hts_fast.describe`).
layers
    Layer discovery in torch modules, state dicts, named arrays and checkpoint files.
layer_matrices
    A layer's weight tensor as the matrices whose spectra are pooled, with N, M, rf.
peft
    LoRA adapters: the product B·A of each pair as one layer.
device
    ``analyze(device=...)``: the CPU kernels or the GPU backend.
layer_spectra
    The compiled pass per layer: pooled ESD, singular-value summary, power-law fit and
    norm sums (``csrc/cpu/layer_spectra.cpp``).
randomized_esd
    ``esd_method="randomized"``: which layers get a certified top-k ESD.
option_fits, xmax
    The fits of the options other than the plain power law, and the ``xmax`` option.
randomize
    ``randomize=True``: ESDs of the shuffled matrices (``csrc/cpu/shuffle.cpp``).
metrics, phases
    The metric columns (``csrc/cpu/norm_metrics.cpp``) and the 5+1 phases.
table
    The result table: WeightWatcher 0.7.7's columns and dtypes, the DataFrame, summary().
"""
