"""Zoo: many checkpoints at once, the ``hts-fast scan / export / correlate / report`` commands.

Modules
-------
scan
    Find every checkpoint under some paths, analyze each (worker processes or a Dask
    cluster), store the results; resumable (content hashes: ``csrc/cpu/hash128.cpp``).
store
    The SQLite store of a scan.
correlate
    Rank correlations of the stored metrics with labels such as test accuracy.
report
    PNG plots and a self-contained HTML page, for a model or a zoo.
demo
    A small zoo of MLPs trained on scikit-learn's digits (``hts-fast demo-zoo``).
"""
