"""randomize=True: each layer's ESD against the ESD of its own entries shuffled.

Shuffling a weight matrix keeps its entries' distribution and destroys their correlations,
so the shuffled ESD is what the layer would look like without learned structure (close to
Marchenko-Pastur for any entry distribution with a finite variance). As WeightWatcher 0.7.7
(reference doc 7.1), for a layer with matrices W_1..W_rf (its conv2d slices, scaled like the
ESD) and n_comp eigenvalues:

* ``rand_evals``: every W_k flattened, shuffled, reshaped and decomposed, repeated 5 times
  when n_comp < 100 else once, all eigenvalues pooled and sorted; ``max_rand_eval`` = its
  maximum;
* a second, single shuffle gives ``r2``: ``rand_distance`` = the Jensen-Shannon distance
  between the sorted ESD and the sorted ``r2``, each treated as a probability vector
  (normalised to sum 1, natural log); ``ww_softrank`` = max(r2) / max(ESD); ``ww_maxdist`` =
  max(ESD) - max(r2) (eigenvalue units).

Random numbers: with ``compat`` the shuffles draw from NumPy's legacy generator in
WeightWatcher's order (layer by layer: the replicas' slices, then r2's), so
``np.random.seed(s)`` before WeightWatcher equals ``seed=s`` here (or, with ``seed=None``,
the global ``np.random`` state itself is used, as WeightWatcher does). By default the k-th
matrix a layer shuffles uses the compiled cache-blocked shuffle (csrc/cpu/shuffle.cpp, 3x
faster than NumPy's Fisher-Yates on an embedding table) seeded by
``SeedSequence([seed, layer_id, k])`` (seed None means 0), so results do not depend on which
layers are analyzed together or on the thread count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._core_loader import core
from ..spectra.esd import esd_batch

#: Layers with fewer eigenvalues than this get REPLICAS_SMALL shuffled copies pooled.
SMALL_LAYER = 100
REPLICAS_SMALL = 5


@dataclass(frozen=True)
class RandomizedLayer:
    """What randomize() needs of one analyzed layer."""

    layer_id: int
    matrices: Sequence[np.ndarray]
    scale: float
    evals: np.ndarray  # the layer's own ESD, ascending
    keep_top: int | None = None
    #: what decides the number of replicas (default: len(evals); compat: WeightWatcher's M*rf
    #: with its conv2d N/M toggle)
    n_comp: int | None = None


class _LayerShuffler:
    """Shuffles one layer's matrices with the compiled cache-blocked shuffle, the k-th matrix
    seeded by ``SeedSequence([seed, layer_id, k])``: uniform permutations, reproducible.
    ``shuffle`` only records the work; ``run_all`` does it on several threads."""

    def __init__(self, seed: int, layer_id: int, pending: list[tuple[np.ndarray, int]]) -> None:
        self.key = (seed, layer_id)
        self.count = 0
        self.pending = pending

    def shuffle(self, flat: np.ndarray) -> None:
        state = np.random.SeedSequence([*self.key, self.count]).generate_state(1, np.uint64)
        self.count += 1
        self.pending.append((flat, int(state[0])))


def _run_all(pending: list[tuple[np.ndarray, int]], threads: int) -> None:
    """Do the recorded shuffles; each has its own seed, so the thread count changes nothing."""
    if threads <= 1 or len(pending) <= 1:
        for flat, seed in pending:
            core.shuffle(flat, seed)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:  # the kernel releases the GIL
        list(pool.map(lambda job: core.shuffle(*job), pending))


def compat_stream(seed: int | None) -> Any:
    """WeightWatcher's random source: the global ``np.random`` (seed None) or a legacy
    generator seeded once per analysis (chunks must continue the same stream)."""
    return np.random if seed is None else np.random.RandomState(seed)


def _generators(
    seed: int | None, compat: bool, pending: list[tuple[np.ndarray, int]], stream: Any
) -> Callable[[int], Any]:
    """layer_id -> the random source that shuffles that layer (see the module docstring)."""
    if compat:
        shared = stream if stream is not None else compat_stream(seed)
        return lambda layer_id: shared
    return lambda layer_id: _LayerShuffler(0 if seed is None else seed, layer_id, pending)


def _shuffled(matrix: np.ndarray, rng: Any) -> np.ndarray:
    flat = np.array(matrix, dtype=matrix.dtype).reshape(-1)  # a C-order copy, as W.flatten()
    rng.shuffle(flat)
    return flat.reshape(matrix.shape)


def replicas_for(n_comp: int) -> int:
    """How many shuffled copies a layer with ``n_comp`` eigenvalues pools (0.7.7's rule)."""
    return REPLICAS_SMALL if n_comp < SMALL_LAYER else 1


def shuffled_esd(
    matrices: Sequence[np.ndarray], *, n_comp: int, rng: Any, keep_top: int | None = None,
    esd_method: str = "svd",
) -> np.ndarray:  # fmt: skip
    """The pooled ESD of a layer's shuffled matrices, ascending (eigenvalues of W^T W, in
    the units of W squared): every matrix flattened, shuffled by ``rng.shuffle`` (NumPy's
    global ``np.random`` gives WeightWatcher 0.7.7's ``get_ESD(random=True)`` for the same
    seed), reshaped and decomposed; :func:`replicas_for` copies pooled; ``keep_top`` as
    :class:`RandomizedLayer`. No conv2d scaling, as 0.7.7's."""
    runs = []
    for _ in range(replicas_for(n_comp)):
        shuffled = [_shuffled(w, rng) for w in matrices]
        run = np.sort(np.concatenate(esd_batch(shuffled, method=esd_method)))
        runs.append(run if keep_top is None else run[-keep_top:])
    return np.sort(np.concatenate(runs))


def randomized_columns(
    layers: Sequence[RandomizedLayer], *, seed: int | None, compat: bool,
    esd_method: str | Sequence[str], threads: int, stream: Any = None,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Return max_rand_eval, rand_distance, ww_softrank, ww_maxdist (one value per layer) and
    the pooled shuffled spectra under ``"rand_evals"`` (a list, for the MP fit).

    Shuffles run in layer order; all shuffled matrices are then decomposed in one batch per
    ESD route (``esd_method``: one for all layers, or one per layer).
    ``stream`` (compat): the random source to continue, from :func:`compat_stream`, when
    the layers come in several calls.
    """
    pending: list[tuple[np.ndarray, int]] = []  # default mode: shuffles done in parallel below
    generator = _generators(seed, compat, pending, stream)
    matrices: list[np.ndarray] = []
    scales: list[float] = []
    spans: list[tuple[int, int, int]] = []  # per layer: first, replicas, slices
    for layer in layers:
        rng = generator(layer.layer_id)
        n_comp = len(layer.evals) if layer.n_comp is None else layer.n_comp
        replicas = replicas_for(n_comp)
        first = len(matrices)
        for _ in range(replicas + 1):  # the pooled replicas, then r2
            for w in layer.matrices:
                matrices.append(_shuffled(w, rng))
                scales.append(layer.scale)
        spans.append((first, replicas, len(layer.matrices)))
    _run_all(pending, threads)
    del pending
    routes = [esd_method] * len(layers) if isinstance(esd_method, str) else list(esd_method)
    spectra: list[Any] = [None] * len(matrices)
    for route in sorted(set(routes)):  # one batch per ESD route (esd_method="auto")
        picked = [i for k, (first, replicas, slices) in enumerate(spans) if routes[k] == route
                  for i in range(first, first + (replicas + 1) * slices)]  # fmt: skip
        done = esd_batch([matrices[i] for i in picked], method=route,
                         scales=[scales[i] for i in picked], threads=threads)  # fmt: skip
        for i, values in zip(picked, done, strict=True):
            spectra[i] = values
    del matrices
    out: dict[str, Any] = {key: np.empty(len(layers)) for key in
                           ("max_rand_eval", "rand_distance", "ww_softrank", "ww_maxdist")}  # fmt: skip
    out["rand_evals"] = []
    for k, (layer, (first, replicas, slices)) in enumerate(zip(layers, spans, strict=True)):
        runs = []  # one spectrum per replica (the last one is r2)
        for r in range(replicas + 1):
            run = np.sort(np.concatenate(spectra[first + r * slices : first + (r + 1) * slices]))
            runs.append(run if layer.keep_top is None else run[-layer.keep_top :])
        pooled, r2 = np.sort(np.concatenate(runs[:-1])), runs[-1]
        evals = layer.evals
        out["rand_evals"].append(pooled)
        out["max_rand_eval"][k] = pooled[-1]
        out["rand_distance"][k] = jensen_shannon_distance(evals, r2)
        out["ww_softrank"][k] = r2[-1] / evals[-1]
        out["ww_maxdist"][k] = evals[-1] - r2[-1]
    return out


def jensen_shannon_distance(p: np.ndarray, q: np.ndarray) -> float:
    """sqrt((KL(p||m) + KL(q||m)) / 2), m = (p + q) / 2, each vector normalised to sum 1.

    NaN when the two vectors differ in length.
    """
    if len(p) != len(q):
        return float("nan")
    m = (p + q) / 2
    import scipy.stats  # imported when needed: it costs 0.4 s to import

    return float(np.sqrt((scipy.stats.entropy(p, m) + scipy.stats.entropy(q, m)) / 2))
