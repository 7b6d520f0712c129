"""GPU backend (hts_fast.spectra.gpu) against the CPU kernels: every output, 1e-9 in float64.

Marked ``gpu``; skipped with the reason from ``hts_fast.spectra.gpu.status()`` when no GPU
backend is usable. On a GPU machine: ``python -m pytest -m gpu tests/spectra/test_gpu.py``.
"""

from __future__ import annotations

import importlib.util

import hts_fast
import numpy as np
import pytest
from hts_fast.fits.truncated import fit_truncated_powerlaw_at_batch
from hts_fast.spectra import gpu

_STATUS = gpu.status()


def needs_gpu(test):
    """Mark ``gpu`` and skip, with the backend's reason, when no GPU backend is usable."""
    skip = pytest.mark.skipif(not _STATUS["loaded"], reason=str(_STATUS.get("reason")))
    return pytest.mark.gpu(skip(test))


def _torch_cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


LIBRARIES = [
    pytest.param("cupy", marks=pytest.mark.skipif(
        importlib.util.find_spec("cupy") is None, reason="cupy not installed")),
    pytest.param("torch", marks=pytest.mark.skipif(
        not _torch_cuda(), reason="torch without CUDA")),
]  # fmt: skip
BACKENDS = [
    pytest.param("compiled", marks=pytest.mark.skipif(
        gpu._compiled()[0] is None, reason=gpu._compiled()[1])),
    pytest.param("cupy", marks=pytest.mark.skipif(
        importlib.util.find_spec("cupy") is None, reason="cupy not installed")),
]  # fmt: skip


def _to_device(x: np.ndarray, library: str):
    if library == "cupy":
        import cupy

        return cupy.asarray(x)
    import torch

    return torch.as_tensor(x, device="cuda")


def _spectra() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    out = [rng.pareto(a, n) + 0.1 for a, n in ((1.5, 700), (2.5, 1500), (3.5, 90))]
    out.append(np.linalg.svd(rng.standard_normal((500, 200)), compute_uv=False) ** 2)
    out.append(rng.pareto(2.0, 15) + 1.0)  # small-n rule
    out.append(np.array([1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 5.0, 5.0, 8.0] * 3))  # ties
    out.append(np.concatenate([np.zeros(5), rng.pareto(2.0, 50) + 0.5]))
    return out


def _close(a: float, b: float) -> bool:
    return (np.isnan(a) and np.isnan(b)) or abs(a - b) <= 1e-9 * max(1.0, abs(b))


@needs_gpu
@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("small_n", [True, False])
def test_powerlaw_fits_match_cpu(library, backend, small_n):
    spectra = _spectra()
    batch = gpu.fit_powerlaw_batch(
        [_to_device(s, library) for s in spectra], small_n=small_n, backend=backend
    )
    got = batch.to_fits()
    want = hts_fast.fit_powerlaw_batch(spectra, small_n=small_n)
    for b, (g, w) in enumerate(zip(got, want, strict=True)):
        for field in ("alpha", "xmin", "xmax", "D", "sigma"):
            assert _close(getattr(g, field), getattr(w, field)), (b, field)
        for field in ("num_pl_spikes", "num_fit", "xmin_index", "method", "status"):
            assert getattr(g, field) == getattr(w, field), (b, field)
        xmins, alphas, ds, sigmas = batch.curve(b)
        curve = hts_fast.powerlaw_curve(spectra[b], small_n=small_n)
        for mine, theirs in ((xmins, curve.xmins), (alphas, curve.alphas), (ds, curve.Ds),
                             (sigmas, curve.sigmas)):  # fmt: skip
            np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-12)


@needs_gpu
@pytest.mark.parametrize("library", LIBRARIES)
def test_powerlaw_batch_of_equal_rows_and_failures(library):
    rng = np.random.default_rng(5)
    rows = np.stack([rng.pareto(2.0, 300) + 0.1 for _ in range(6)])
    rows[2, 7] = np.nan
    rows[4, :] = 0.0
    got = gpu.fit_powerlaw_batch(_to_device(rows, library)).to_fits()
    want = hts_fast.fit_powerlaw_batch(list(rows))
    for g, w in zip(got, want, strict=True):
        assert g.status == w.status
        if w.status == "success":
            assert _close(g.alpha, w.alpha)
            assert _close(g.D, w.D)
        else:
            assert g.reason.split(" ")[0] == w.reason.split(" ")[0]


@needs_gpu
@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_tpl_fits_match_cpu(library, backend):
    spectra = _spectra()[:4]
    rng = np.random.default_rng(2)
    spectra.append(rng.exponential(1.0, 400) + 1.0)
    segment, xmins = [], []
    for k, s in enumerate(spectra):
        for q in (0.0, 0.5, 0.9):
            segment.append(k)
            xmins.append(float(np.quantile(s, q)))
    segment += [4, 4]
    xmins += [-1.0, 1e9]  # bad xmin, too few
    got = gpu.fit_truncated_powerlaw_batch(
        [_to_device(s, library) for s in spectra], xmins, segment=segment, backend=backend
    ).to_fits()
    want = fit_truncated_powerlaw_at_batch(
        [(spectra[k], x) for k, x in zip(segment, xmins, strict=True)]
    )
    for g, w in zip(got, want, strict=True):
        assert (g.status, g.n, g.iterations) == (w.status, w.n, w.iterations)
        for field in ("alpha", "Lambda", "loglik", "D", "alpha_se", "Lambda_se"):
            assert _close(getattr(g, field), getattr(w, field)), field


@needs_gpu
@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_eigenvalues_match_cpu_esd(library, dtype):
    rng = np.random.default_rng(9)
    mats = [rng.standard_normal((64, 40)), rng.standard_normal((40, 64)),
            rng.standard_normal((64, 40))]  # fmt: skip
    got = gpu.esd_batch([_to_device(m, library) for m in mats], dtype=dtype)
    for m, g in zip(mats, got, strict=True):
        host = g.get() if library == "cupy" else g.cpu().numpy()
        want = hts_fast.esd(m)
        rtol = 1e-10 if dtype == "float64" else 1e-4
        np.testing.assert_allclose(host, want, rtol=rtol, atol=rtol * want.max())


@needs_gpu
def test_device_cuda_available():
    gpu.require()
    assert hts_fast.build_info()["backends"]["cuda"]["loaded"]


def test_host_input_is_refused_not_copied():
    with pytest.raises(ValueError, match="move it to the GPU explicitly"):
        gpu.eigenvalues(np.ones((3, 3)))
    with pytest.raises(ValueError, match="move it to the GPU explicitly"):
        gpu.fit_powerlaw_batch([np.ones(5)])


def test_require_says_why_without_gpu():
    if _STATUS["loaded"]:
        pytest.skip("a GPU backend is usable here")
    with pytest.raises(RuntimeError, match="device='cuda' was requested"):
        gpu.require()
