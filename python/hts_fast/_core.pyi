# Hand-written stub of the compiled extension (csrc/bindings). Keep in sync with the bindings.
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

__version__: str

_FitFields: TypeAlias = tuple[float, float, float, float, float, int, int, int, int, int, int]
# alpha, Lambda, xmin, loglik, D, alpha_se, Lambda_se, n, iterations, status, error, bad_index
_TplFields: TypeAlias = tuple[
    float, float, float, float, float, float, float, int, int, int, int, int
]

def _compile_info() -> dict[str, Any]: ...
def _register_lapack(
    dgesdd: object,
    dsyevd: object,
    dsyrk: object,
    dsyevd_2stage: int = 0,
    ssyrk: object | None = None,
) -> None: ...
def _lapack_ready() -> bool: ...
def _two_stage_ready() -> bool: ...
def _float32_ready() -> bool: ...
def fit_powerlaw(
    values: npt.ArrayLike, threshold: float, small_n_cutoff: int, small_n_min_tail: int
) -> _FitFields: ...
def fit_powerlaw_batch(
    spectra: list[npt.ArrayLike],
    threshold: float,
    small_n_cutoff: int,
    small_n_min_tail: int,
    threads: int,
) -> list[_FitFields]: ...
def powerlaw_curve(
    values: npt.ArrayLike,
    threshold: float,
    small_n_cutoff: int,
    small_n_min_tail: int,
    threads: int,
) -> tuple[
    _FitFields,
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
]: ...
def esd_batch(
    matrices: list[npt.NDArray[Any]], method: int, scales: list[float], threads: int
) -> list[tuple[npt.NDArray[np.float64], int, int]]: ...
def layer_spectra(
    matrices: list[npt.NDArray[Any]],
    scales: list[float],
    firsts: list[int],
    counts: list[int],
    keep_tops: list[int],
    Ns: list[float],
    method: int,
    threshold: float,
    small_n_cutoff: int,
    small_n_min_tail: int,
    tolerance: float,
    compat: bool,
    threads: int,
    keep_pooled: bool = True,
) -> tuple[
    list[npt.NDArray[np.float64] | None],
    npt.NDArray[np.float64],
    npt.NDArray[np.int64],
    list[str | None],
]: ...
def symmetric_eigenvalues(
    a: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], int, int]: ...
def norm_metrics_batch(
    spectra: list[npt.ArrayLike],
    Ns: list[float],
    alphas: list[float],
    tolerance: float,
    compat: bool,
    threads: int,
) -> tuple[
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
]: ...
def _half_to_double(bits: npt.ArrayLike) -> npt.NDArray[np.float64]: ...
def fit_truncated_powerlaw(
    values: npt.ArrayLike, xmin: float, alpha_min: float = -100.0
) -> _TplFields: ...
def fit_truncated_powerlaw_batch(
    spectra: list[npt.ArrayLike], xmins: list[float], threads: int, alpha_min: float = -100.0
) -> list[_TplFields]: ...
def _log_upper_gamma(
    s: npt.ArrayLike, x: npt.ArrayLike
) -> tuple[
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
]: ...
def fit_exponential_batch(
    spectra: list[npt.ArrayLike], threshold: float, threads: int
) -> list[tuple[Any, ...]]: ...
def fit_truncated_powerlaw_search(
    values: npt.ArrayLike,
    threshold: float,
    low: float,
    high: float,
    alpha_above: float,
    cdf_xmax: float,
    threads: int,
    alpha_min: float = -100.0,
) -> tuple[Any, ...]: ...
def fit_truncated_powerlaw_search_batch(
    spectra: list[npt.ArrayLike],
    threshold: float,
    lows: list[float],
    highs: list[float],
    alpha_above: float,
    cdf_xmaxs: list[float],
    threads: int,
    alpha_min: float = -100.0,
) -> list[tuple[Any, ...]]: ...
def truncated_powerlaw_curve(
    values: npt.ArrayLike,
    threshold: float,
    low: float,
    high: float,
    alpha_above: float,
    cdf_xmax: float,
    threads: int,
    alpha_min: float = -100.0,
) -> tuple[tuple[Any, ...], dict[str, Any]]: ...
def shuffle(array: npt.NDArray[Any], seed: int) -> None: ...
def hash128(data: Any) -> bytes: ...
def _mul128(a: int, b: int) -> tuple[int, int]: ...

class Hash128:
    name: str
    digest_size: int
    def __init__(self) -> None: ...
    def update(self, data: Any) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...
