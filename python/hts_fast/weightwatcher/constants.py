"""The names WeightWatcher 0.7.7 scripts read from ``weightwatcher`` or
``weightwatcher.constants`` (``ww.constants.CKA``, ``ww.LAYER_TYPE.DENSE``, ...), with 0.7.7's
values."""

from __future__ import annotations

#: distances() methods
RAW = "raw"
EUCLIDEAN = "euclidean"
CKA = "cka"
#: where plot=True saves its figures unless savefig names a folder
DEF_SAVE_DIR = "ww-img"

#: analyze() defaults
DEFAULT_MIN_EVALS = 8
DEFAULT_MAX_EVALS = 15000
DEFAULT_MAX_N = 50000
DEFAULT_MAX_FINGERS = 10
DEFAULT_FINGER_THRESH = 1.0
DEFAULT_START_ID = 0
WEAK_RANK_LOSS_TOLERANCE = 1e-6

#: fit= and fix_fingers= values
PL = "PL"
TPL = "TPL"
E_TPL = "E_TPL"
POWER_LAW = "power_law"
TRUNCATED_POWER_LAW = "truncated_power_law"
XMIN_PEAK = "xmin_peak"
CLIP_XMAX = "clip_xmax"
#: pl_package= values
WW_POWERLAW_PACKAGE = "ww"
POWERLAW_PACKAGE = "powerlaw"
#: svd_method= values
FAST_SVD = "fast"
ACCURATE_SVD = "accurate"
#: SVDSmoothing methods
SVD = "svd"
DETX = "detX"
LAMBDA_MIN = "alpha_min"
RMT = "rmt"
AUTO = "auto"

#: warning column values
UNDER_TRAINED = "under-trained"
OVER_TRAINED = "over-trained"
UNKNOWN = "unknown"


class LAYER_TYPE:
    """Values of the layer_type column."""

    UNKNOWN = "unknown"
    STACKED = "stacked"
    DENSE = "dense"
    CONV1D = "conv1d"
    CONV2D = "conv2d"
    FLATTENED = "flattened"
    EMBEDDING = "embedding"
    BIDIRECTIONAL = "bidirectional"
    NORM = "norm"


class FRAMEWORK:
    """What a model is, as WeightWatcher.infer_framework() says."""

    UNKNOWN = "unknown"
    PYTORCH = "pytorch"
    KERAS = "keras"
    ONNX = "onnx"
    PYSTATEDICT = "pystatedict"
    PYSTATEDICT_DIR = "pystatedict_dir"
    WW_FLATFILES = "ww_flatfiles"
    KERAS_H5_FILE = "keras_h5_file"


class METRICS:
    """Metric column names."""

    NORM = "norm"
    LOG_NORM = "log_norm"
    ALPHA = "alpha"
    ALPHA_WEIGHTED = "alpha_weighted"
    LOG_ALPHA_NORM = "log_alpha_norm"
    SPECTRAL_NORM = "spectral_norm"
    LOG_SPECTRAL_NORM = "log_spectral_norm"
    STABLE_RANK = "stable_rank"
    MP_SOFTRANK = "mp_softrank"
    MATRIX_RANK = "matrix_rank"
    MATRIX_ENTROPY = "entropy"
