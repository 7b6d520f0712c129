"""GPU: a synthetic 7B-class model end to end, and the fit kernel's throughput.

224 matrices as in a 32-layer 7B transformer (per layer 4 of 4096x4096 and 3 of 4096x11008;
heavy-tailed entries, Student t with 3 degrees of freedom), generated on the device. Timed:
eigenvalues (float64 Gram + cuSOLVER, equal shapes batched) plus the batched power-law fit, and
separately the fit alone in ESDs per second. Skipped without a GPU backend. Run with:

    python -m pytest benchmarks/test_bench_gpu.py -s -m gpu

``HTS_FAST_BENCH_SIZES=small`` shrinks the model to 4 layers of 1024x1024 / 1024x2752.
"""

from __future__ import annotations

import importlib.util
import time

import hts_fast
import numpy as np
import pytest
from hts_fast.spectra import gpu

from .conftest import SIZES

_STATUS = gpu.status()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _STATUS["loaded"], reason=str(_STATUS.get("reason"))),
]

LAYERS, D, FF, CHUNK = (32, 4096, 11008, 8) if SIZES == "full" else (4, 1024, 2752, 4)


class _Device:
    """Random matrices and synchronisation with torch (preferred) or CuPy."""

    def __init__(self) -> None:
        if importlib.util.find_spec("torch") is not None:
            import torch

            if torch.cuda.is_available():
                self.torch, self.name = torch, "torch"
                self.generator = torch.Generator(device="cuda").manual_seed(0)
                return
        import cupy

        self.cupy, self.name = cupy, "cupy"
        self.rng = cupy.random.default_rng(0)

    def heavy(self, count: int, rows: int, cols: int):
        """Student-t(3) entries scaled by 1/sqrt(cols), float32 (as checkpoints store)."""
        if self.name == "torch":
            t = self.torch
            g = self.generator
            z = t.randn(count, rows, cols, device="cuda", generator=g)
            chi2 = t.randn(3, count, rows, cols, device="cuda", generator=g).pow_(2).sum(0)
            return z.div_(chi2.div_(3).sqrt_()).div_(cols**0.5)
        z = self.rng.standard_normal((count, rows, cols), dtype="float32")
        chi2 = (self.rng.standard_normal((3, count, rows, cols), dtype="float32") ** 2).sum(0)
        return z / self.cupy.sqrt(chi2 / 3) / np.float32(cols**0.5)

    def sync(self) -> None:
        if self.name == "torch":
            self.torch.cuda.synchronize()
        else:
            self.cupy.cuda.runtime.deviceSynchronize()


def test_7b_model_end_to_end():
    dev = _Device()
    shapes = [(4 * LAYERS, D, D), (3 * LAYERS, D, FF)]  # 128 + 96 = 224 matrices (full)
    spectra, t_eig, t_gen = [], 0.0, 0.0
    for count, rows, cols in shapes:
        for first in range(0, count, CHUNK):
            t0 = time.perf_counter()
            batch = dev.heavy(min(CHUNK, count - first), rows, cols)
            dev.sync()
            t1 = time.perf_counter()
            spectra.extend(gpu.eigenvalues(batch))  # float64 Gram + eigvalsh, batched
            dev.sync()
            t_eig += time.perf_counter() - t1
            t_gen += t1 - t0
            del batch
    t0 = time.perf_counter()
    fits = gpu.fit_powerlaw_batch(spectra)
    dev.sync()
    t_fit = time.perf_counter() - t0
    results = fits.to_fits()
    total = t_eig + t_fit
    print(
        f"\n[gpu {dev.name}] {len(spectra)} matrices ({D}x{D}, {D}x{FF}): eigenvalues "
        f"{t_eig:.2f} s + fits {t_fit:.3f} s = {total:.2f} s end to end "
        f"(generation {t_gen:.2f} s not counted); device: {_STATUS['module']}"
    )
    assert len(results) == len(spectra)
    # spot check against the CPU kernel
    for k in (0, len(spectra) - 1):
        host = spectra[k].get() if dev.name == "cupy" else spectra[k].cpu().numpy()
        want = hts_fast.fit_powerlaw(host)
        assert abs(results[k].alpha - want.alpha) <= 1e-9 * want.alpha
        assert results[k].xmin == want.xmin


@pytest.mark.parametrize("n", [1024, 4096])
def test_fit_throughput(n):
    dev = _Device()
    count = 256 if SIZES == "full" else 32
    spectra = gpu.eigenvalues(dev.heavy(count, n, n + n // 2))
    gpu.fit_powerlaw_batch(spectra[:2])  # compile / warm up
    dev.sync()
    t0 = time.perf_counter()
    gpu.fit_powerlaw_batch(spectra)
    dev.sync()
    seconds = time.perf_counter() - t0
    print(f"\n[gpu {dev.name}] fit of {count} ESDs of {n}: {seconds:.3f} s = "
          f"{count / seconds:.1f} ESDs/s")  # fmt: skip
