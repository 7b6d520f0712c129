"""Bootstrap confidence intervals of the power-law exponent alpha.

Each resample draws the ESD's eigenvalues with replacement and reruns the whole fit, xmin
search included (so the interval carries the uncertainty of the xmin choice, which the
analytic sigma = (alpha - 1) / sqrt(n_tail) ignores). The interval is the percentile one:
the (1 - level)/2 and (1 + level)/2 quantiles of the resampled alphas. Resamples are drawn
by ``numpy.random.default_rng(seed)`` and fitted in one parallel batch, so the result
depends on the seed only, not on the thread count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .powerlaw import fit_powerlaw_batch


@dataclass(frozen=True)
class AlphaInterval:
    """A bootstrap interval of alpha: ``low``/``high`` bounds, the ``level`` they cover, the
    resampled alphas (failed refits left out) and how many refits failed."""

    low: float
    high: float
    level: float
    alphas: np.ndarray
    failed: int


def bootstrap_alpha(
    evals: Any, *, resamples: int = 1000, level: float = 0.95, seed: int = 0,
    threads: int | None = None,
) -> AlphaInterval:  # fmt: skip
    """Percentile bootstrap interval of alpha for one ESD (see the module docstring).

    Raises ValueError for fewer than 2 eigenvalues, ``resamples`` < 1 or ``level`` outside
    (0, 1). Bounds are NaN when every refit fails.
    """
    values = np.asarray(evals, dtype=np.float64).ravel()
    if len(values) < 2:
        msg = f"a bootstrap needs at least 2 eigenvalues, got {len(values)}"
        raise ValueError(msg)
    if resamples < 1 or not 0 < level < 1:
        msg = f"resamples must be >= 1 and level in (0, 1), got {resamples} and {level}"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(resamples, len(values)))
    samples = np.sort(values[picks], axis=1)
    fits = fit_powerlaw_batch(list(samples), threads=threads)
    alphas = np.array([f.alpha for f in fits if f.status == "success"], dtype=np.float64)
    if len(alphas) == 0:
        return AlphaInterval(np.nan, np.nan, level, alphas, resamples)
    low, high = np.quantile(alphas, [(1 - level) / 2, (1 + level) / 2])
    return AlphaInterval(float(low), float(high), level, alphas, resamples - len(alphas))
