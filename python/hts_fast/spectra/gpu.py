"""GPU backend: ESDs through cuSOLVER (CuPy or torch) and the fit kernels of ``csrc/cuda``.

Inputs stay where they are: every function takes CuPy arrays or CUDA torch tensors and returns
arrays of the same library on the same device. A host array (NumPy, CPU tensor) raises
``ValueError``; nothing is copied between host and device behind the caller's back. The only
host-to-device copies are the small metadata this module builds (offsets, pair indices, xmins
given as Python numbers), and the only device-to-host copies happen in ``to_fits()``, which
exists to make them explicit.

The fit kernels run from the compiled module ``hts_fast._cuda`` (built with
``HTS_FAST_CUDA=ON``) when it imports and sees a device; otherwise from the same kernel source
(``kernels.cuh`` and the ``HTS_HD`` math headers, shipped in the wheel) compiled at run time by
CuPy. :func:`status` says which, and why not.

Accuracy: in float64 the fits agree with the CPU kernels to ~1e-13 (the device's ``exp`` and
``log`` may differ from glibc's in the last bit; no FMA contraction is used on either side). In
float32 (``dtype="float32"`` in :func:`eigenvalues`) the eigenvalues carry an absolute error of
~1e-7 * lambda_max, so eigenvalues below ~1e-6 * lambda_max are noise; the fits themselves always
run in float64.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..fits.powerlaw import DEFAULT_THRESHOLD, SMALL_N_CUTOFF, SMALL_N_MIN_TAIL, PowerLawFit
from ..fits.powerlaw import fit_from_fields as _pl_result
from ..fits.truncated import TruncatedPowerLawFit
from ..fits.truncated import fit_from_fields as _tpl_result

__all__ = [
    "GpuPowerLawBatch",
    "GpuTplBatch",
    "available",
    "eigenvalues",
    "esd_batch",
    "fit_powerlaw_batch",
    "fit_truncated_powerlaw_batch",
    "require",
    "status",
]

# Row widths of the kernels' result arrays (kernels.cuh).
_PL_INFO, _PL_OUT_F, _PL_OUT_I = 6, 5, 6
_TPL_OUT_F, _TPL_OUT_I = 7, 5
_TPL_RULES = 56
_SELECT_THREADS = 256
_UNSORTED = 5


# ---------------------------------------------------------------- backends


def _import_cupy() -> Any:
    import cupy

    return cupy


@functools.lru_cache(maxsize=1)
def _compiled() -> tuple[Any, str]:
    """(hts_fast._cuda, "") when it imports and sees a device, else (None, reason)."""
    try:
        from .. import _cuda  # type: ignore[attr-defined]
    except ImportError as exc:
        return None, f"not built (HTS_FAST_CUDA=ON builds hts_fast._cuda): {exc}"
    if _cuda.driver_version() == 0:
        return None, f"no CUDA driver: {_cuda.device_error()}"
    if _cuda.device_count() == 0:
        return None, f"no CUDA device: {_cuda.device_error()}"
    return _cuda, ""


def _kernel_source_dirs() -> tuple[Path, Path]:
    """(directory of kernels.cuh, include directory holding hts/*.hpp)."""
    package = Path(__file__).resolve().parents[1]  # hts_fast/
    shipped = package / "cuda_src"
    if (shipped / "kernels.cuh").is_file():
        return shipped, shipped
    root = package.parents[1]  # editable install: the source tree
    return root / "csrc" / "cuda", root / "csrc" / "include"


@functools.lru_cache(maxsize=1)
def _cupy_module() -> tuple[Any, str]:
    """(cupy.RawModule of kernels.cuh, "") or (None, reason)."""
    try:
        cupy = _import_cupy()
    except ImportError as exc:
        return None, f"cupy missing ({exc}); pip install cupy-cuda12x"
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            return None, "no CUDA device visible to CuPy"
    except cupy.cuda.runtime.CUDARuntimeError as exc:  # no driver
        return None, f"no CUDA driver or device for CuPy: {exc}"
    source_dir, include_dir = _kernel_source_dirs()
    source = (source_dir / "kernels.cuh").read_text()
    options = ("-std=c++17", "--fmad=false", f"-I{include_dir}")
    module = cupy.RawModule(code=source, options=options)
    try:
        module.compile()  # now, so that a compile error shows in status()
    except cupy.cuda.compiler.CompileException as exc:
        return None, f"CuPy could not compile {source_dir / 'kernels.cuh'}: {exc}"
    return module, ""


def status() -> dict[str, Any]:
    """Which GPU backend is usable and why the others are not (for ``build_info()``)."""
    compiled, why_not_compiled = _compiled()
    if compiled is not None:
        return {
            "loaded": True,
            "module": "hts_fast._cuda",
            "architectures": getattr(compiled, "cuda_architectures", ""),
            "runtime_version": compiled.runtime_version(),
            "driver_version": compiled.driver_version(),
            "devices": compiled.device_count(),
        }
    module, why_not_cupy = _cupy_module()
    if module is not None:
        return {
            "loaded": True,
            "module": "cupy.RawModule (csrc/cuda/kernels.cuh)",
            "compiled_module": why_not_compiled,
        }
    return {"loaded": False, "reason": f"{why_not_compiled}; CuPy fallback: {why_not_cupy}"}


def available() -> bool:
    """True when the GPU fits can run (compiled module or CuPy fallback)."""
    return bool(status()["loaded"])


def require() -> None:
    """Raise RuntimeError saying why when ``device="cuda"`` cannot be honoured."""
    info = status()
    if not info["loaded"]:
        msg = f"device='cuda' was requested but no GPU backend is usable: {info['reason']}"
        raise RuntimeError(msg)


# ---------------------------------------------------------------- array libraries


class _Lib:
    """The few operations needed from CuPy or torch, on the input's device and stream."""

    def __init__(self, sample: Any) -> None:
        module = type(sample).__module__.split(".")[0]
        if module == "cupy":
            self.name = "cupy"
            self.xp = _import_cupy()
            self.device = sample.device
        elif module == "torch" and getattr(sample, "is_cuda", False):
            import torch

            self.name = "torch"
            self.xp = torch
            self.device = sample.device
        else:
            where = "a CPU torch tensor" if module == "torch" else f"a {type(sample).__name__}"
            msg = (
                f"the GPU functions take CuPy arrays or CUDA torch tensors, got {where}; move "
                "it to the GPU explicitly (cupy.asarray(x) or x.cuda()) or use the CPU "
                "functions (hts_fast.esd, hts_fast.fit_powerlaw_batch)"
            )
            raise ValueError(msg)

    def same(self, x: Any) -> bool:
        if self.name == "cupy":
            return type(x).__module__.startswith("cupy") and x.device == self.device
        return type(x).__module__.startswith("torch") and x.device == self.device

    def dtype(self, name: str) -> Any:
        return getattr(self.xp, name)

    def empty(self, shape: tuple[int, ...], dtype: str) -> Any:
        if self.name == "cupy":
            with self.device:
                return self.xp.empty(shape, dtype=dtype)
        return self.xp.empty(shape, dtype=self.dtype(dtype), device=self.device)

    def from_host(self, values: np.ndarray) -> Any:
        if self.name == "cupy":
            with self.device:
                return self.xp.asarray(values)
        return self.xp.as_tensor(values, device=self.device)

    def to_host(self, x: Any) -> np.ndarray:
        return x.get() if self.name == "cupy" else x.cpu().numpy()

    def ptr(self, x: Any) -> int:
        return int(x.data.ptr) if self.name == "cupy" else int(x.data_ptr())

    def stream(self) -> int:
        if self.name == "cupy":
            return int(self.xp.cuda.get_current_stream().ptr)
        return int(self.xp.cuda.current_stream(self.device).cuda_stream)

    def as_float64(self, x: Any) -> Any:
        if self.name == "cupy":
            return self.xp.ascontiguousarray(x, dtype=self.xp.float64)
        return x.to(self.xp.float64).contiguous()

    def concat_sorted(self, spectra: Sequence[Any]) -> Any:
        parts = [self.xp.sort(self.as_float64(s).reshape(-1)) for s in spectra]
        if self.name == "torch":
            parts = [p.values for p in parts]
        if not parts:
            return self.empty((0,), "float64")
        return self.xp.concatenate(parts) if self.name == "cupy" else self.xp.cat(parts)

    def to_cupy(self, x: Any) -> Any:
        """Zero-copy CuPy view (for the CuPy kernels); the data stays where it is."""
        return x if self.name == "cupy" else _import_cupy().asarray(x)


def _pack(spectra: Any) -> tuple[_Lib, Any, list[int]]:
    """(library, the spectra sorted and packed end to end as float64, their lengths)."""
    if isinstance(spectra, (list, tuple)):
        if not spectra:
            msg = "no spectra given"
            raise ValueError(msg)
        lib = _Lib(spectra[0])
        for k, item in enumerate(spectra):
            if not lib.same(item):
                msg = f"spectrum {k} is not on the same device and library as spectrum 0"
                raise ValueError(msg)
        return lib, lib.concat_sorted(spectra), [int(np.prod(s.shape)) for s in spectra]
    lib = _Lib(spectra)
    if spectra.ndim == 1:
        return lib, lib.concat_sorted([spectra]), [int(spectra.shape[0])]
    if spectra.ndim != 2:
        msg = f"spectra must be 1-D, 2-D (one spectrum per row) or a list, got {spectra.ndim}-D"
        raise ValueError(msg)
    rows, cols = (int(n) for n in spectra.shape)
    ordered = lib.xp.sort(lib.as_float64(spectra), -1)  # one batched sort on the device
    if lib.name == "torch":
        ordered = ordered.values
    return lib, ordered.reshape(-1), [cols] * rows


# ---------------------------------------------------------------- eigenvalues


def eigenvalues(W: Any, *, dtype: str = "float64") -> Any:
    """Eigenvalues of W^T W (ascending) on the GPU, batched over leading dimensions.

    Parameters
    ----------
    W : cupy.ndarray or CUDA torch.Tensor of shape (rows, cols) or (batch, rows, cols)
        The weights; never copied to the host.
    dtype : {"float64", "float32"}
        Precision of the Gram matrix and of the symmetric eigensolver (cuSOLVER through
        ``cupy.linalg.eigvalsh`` or ``torch.linalg.eigvalsh``). float64 matches the CPU
        ``esd(method="gram")`` to rounding; float32 is faster with an absolute error of
        ~1e-7 * lambda_max per eigenvalue.

    Returns
    -------
    array of shape (min(rows, cols),) or (batch, min(rows, cols)), same library and device
        Squared singular values of W, negative rounding noise clipped to 0.
    """
    if dtype not in ("float64", "float32"):
        msg = f"dtype must be 'float64' or 'float32', got {dtype!r}"
        raise ValueError(msg)
    lib = _Lib(W)
    if W.ndim not in (2, 3):
        msg = f"W must be 2-D or a 3-D batch, got shape {tuple(W.shape)}"
        raise ValueError(msg)
    if lib.name == "cupy":
        xp = lib.xp
        with lib.device:
            A = W.astype(dtype, copy=False)
            At = xp.swapaxes(A, -1, -2)
            G = At @ A if A.shape[-2] >= A.shape[-1] else A @ At
            return xp.maximum(xp.linalg.eigvalsh(G), 0)
    torch = lib.xp
    A = W.to(lib.dtype(dtype))
    At = A.transpose(-1, -2)
    G = At @ A if A.shape[-2] >= A.shape[-1] else A @ At
    return torch.linalg.eigvalsh(G).clamp_min(0)


def esd_batch(matrices: Sequence[Any], *, dtype: str = "float64") -> list[Any]:
    """Eigenvalues of W^T W for every matrix, equal shapes stacked into one batched eigensolve.

    Returns one ascending 1-D array per matrix, in input order, on the matrices' device.
    Stacking copies the matrices of one shape into one device buffer (on the device).
    """
    if not matrices:
        return []
    lib = _Lib(matrices[0])
    groups: dict[tuple[int, ...], list[int]] = {}
    for k, W in enumerate(matrices):
        if not lib.same(W):
            msg = f"matrix {k} is not on the same device and library as matrix 0"
            raise ValueError(msg)
        groups.setdefault(tuple(W.shape), []).append(k)
    out: list[Any] = [None] * len(matrices)
    for members in groups.values():
        parts = [matrices[k] for k in members]
        stack = lib.xp.stack(parts)
        for k, values in zip(members, eigenvalues(stack, dtype=dtype), strict=True):
            out[k] = values
    return out


# ---------------------------------------------------------------- fits


@dataclass(frozen=True)
class GpuPowerLawBatch:
    """Power-law fits of a batch of spectra; every array lives on the input's device.

    ``alpha, xmin, xmax, D, sigma`` (float64) and ``num_pl_spikes, num_fit, xmin_index,
    method, error, bad_index`` (int64) have one entry per spectrum, with the meaning of
    :class:`hts_fast.PowerLawFit` (error 0 = fitted; -1 in the float fields when failed).
    ``values`` holds the sorted spectra end to end (spectrum b at
    ``values[offsets[b]:offsets[b+1]]``; ``bad_index`` counts in the sorted spectrum), and
    ``curve_alpha, curve_D, curve_sigma`` are the per-candidate scan over the same positions
    (NaN where a value is no candidate: not fitted, or the largest).
    """

    alpha: Any
    xmin: Any
    xmax: Any
    D: Any
    sigma: Any
    num_pl_spikes: Any
    num_fit: Any
    xmin_index: Any
    method: Any
    error: Any
    bad_index: Any
    values: Any
    offsets: np.ndarray
    curve_alpha: Any
    curve_D: Any
    curve_sigma: Any
    threshold: float
    _lib: _Lib

    def to_fits(self) -> list[PowerLawFit]:
        """Copy the results to the host as :class:`hts_fast.PowerLawFit` objects."""
        host = self._lib.to_host
        floats = [host(a) for a in (self.alpha, self.xmin, self.xmax, self.D, self.sigma)]
        ints = [
            host(a)
            for a in (
                self.num_pl_spikes,
                self.num_fit,
                self.xmin_index,
                self.method,
                self.error,
                self.bad_index,
            )
        ]
        values = host(self.values) if bool((ints[4] != 0).any()) else None
        fits = []
        for b in range(len(self.offsets) - 1):
            fields = (*(float(f[b]) for f in floats), *(int(i[b]) for i in ints))
            if fields[9] == _UNSORTED:
                fits.append(PowerLawFit.failed("spectrum not in ascending order", fields[6]))
                continue
            segment = values[self.offsets[b] : self.offsets[b + 1]] if values is not None else None
            fits.append(_pl_result(fields, segment, self.threshold))
        return fits

    def curve(self, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Host copies of (xmins, alphas, Ds, sigmas) over the candidates of spectrum b."""
        sl = slice(int(self.offsets[b]), int(self.offsets[b + 1]))
        host = self._lib.to_host
        x, a, d, s = (host(v[sl]) for v in (self.values, self.curve_alpha, self.curve_D,
                                            self.curve_sigma))  # fmt: skip
        keep = ~np.isnan(a)
        return x[keep], a[keep], d[keep], s[keep]


def _offsets_of(lengths: Sequence[int]) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.asarray(lengths, dtype=np.int64), out=offsets[1:])
    return offsets


def _grid(work: int, per_block: int) -> int:
    return max(1, min(math.ceil(work / per_block), 65535 * 16))


def _pick_backend(backend: str) -> tuple[Any, Any]:
    """(compiled module or None, CuPy RawModule or None) for backend auto/compiled/cupy."""
    if backend not in ("auto", "compiled", "cupy"):
        msg = f"backend must be 'auto', 'compiled' or 'cupy', got {backend!r}"
        raise ValueError(msg)
    if backend in ("auto", "compiled"):
        compiled, why = _compiled()
        if compiled is not None:
            return compiled, None
        if backend == "compiled":
            msg = f"the compiled CUDA module is not usable: {why}"
            raise RuntimeError(msg)
    module, why = _cupy_module()
    if module is None:
        msg = f"no GPU backend for the fits: {status().get('reason', why)}"
        raise RuntimeError(msg)
    return None, module


def _cupy_stream(lib: _Lib) -> Any:
    cupy = _import_cupy()
    if lib.name == "cupy":
        return cupy.cuda.get_current_stream()
    return cupy.cuda.ExternalStream(lib.stream())


def fit_powerlaw_batch(
    spectra: Any,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    small_n: bool = True,
    backend: str = "auto",
) -> GpuPowerLawBatch:
    """All-xmin power-law fits of many spectra in one batch of kernel launches.

    Parameters
    ----------
    spectra : 2-D device array (one spectrum per row) or a sequence of 1-D device arrays
        Eigenvalues (any order, any float dtype; sorted and converted to float64 on the
        device). CuPy arrays or CUDA torch tensors, all on one device.
    threshold, small_n
        As in :func:`hts_fast.fit_powerlaw` (same candidate rules, same first-index argmin).
    backend : {"auto", "compiled", "cupy"}
        ``hts_fast._cuda``, the CuPy-compiled kernels, or whichever is usable (compiled first).

    Returns
    -------
    GpuPowerLawBatch
        Device arrays; ``.to_fits()`` copies them into ``PowerLawFit`` objects.
    """
    threshold = float(threshold)
    if not math.isfinite(threshold) or threshold < 0:
        msg = f"threshold must be a finite number >= 0, got {threshold!r}"
        raise ValueError(msg)
    cutoff = SMALL_N_CUTOFF if small_n else 0
    lib, values, lengths = _pack(spectra)
    offsets_host = _offsets_of(lengths)
    num, total = len(lengths), int(offsets_host[-1])
    offsets = lib.from_host(offsets_host)
    slots = max(total, 1)
    logx, alphas, ds, sigmas = (lib.empty((slots,), "float64") for _ in range(4))
    info = lib.empty((num, _PL_INFO), "int64")
    out_f = lib.empty((num, _PL_OUT_F), "float64")
    out_i = lib.empty((num, _PL_OUT_I), "int64")
    compiled, module = _pick_backend(backend)
    if compiled is not None:
        p = lib.ptr
        compiled.fit_powerlaw_batch(
            p(values) if total else p(logx), p(offsets), num, total, threshold, cutoff,
            SMALL_N_MIN_TAIL, p(logx), p(alphas), p(ds), p(sigmas), p(info), p(out_f),
            p(out_i), lib.stream(),
        )  # fmt: skip
    else:
        c = lib.to_cupy
        i64, f64 = np.int64, np.float64
        with _cupy_stream(lib) as stream:
            module.get_function("hts_pl_prepare")(
                (_grid(num, 64),), (64,),
                (c(values), c(offsets), i64(num), f64(threshold), i64(cutoff),
                 i64(SMALL_N_MIN_TAIL), c(logx), c(alphas), c(ds), c(info)),
            )  # fmt: skip
            if total:
                module.get_function("hts_pl_distances")(
                    (_grid(total * 32, 256),), (256,),
                    (c(logx), c(offsets), i64(num), c(alphas), c(ds), i64(total)),
                )  # fmt: skip
            module.get_function("hts_pl_select")(
                (_grid(num, 1),), (_SELECT_THREADS,),
                (c(values), c(offsets), i64(num), c(info), c(alphas), c(ds), c(sigmas),
                 c(out_f), c(out_i)),
            )  # fmt: skip
            stream.synchronize()
    return GpuPowerLawBatch(
        *(out_f[:, k] for k in range(_PL_OUT_F)),
        *(out_i[:, k] for k in range(_PL_OUT_I)),
        values=values,
        offsets=offsets_host,
        curve_alpha=alphas[:total],
        curve_D=ds[:total],
        curve_sigma=sigmas[:total],
        threshold=threshold,
        _lib=lib,
    )


@dataclass(frozen=True)
class GpuTplBatch:
    """TPL fits at fixed xmin, one entry per pair; every array lives on the input's device.

    ``alpha, Lambda, xmin, loglik, D, alpha_se, Lambda_se`` (float64) and ``n, iterations,
    status, error, bad_index`` (int64): the fields of :class:`TruncatedPowerLawFit`, status and
    error as the kernel's codes (``to_fits()`` turns them into the Python strings).
    """

    alpha: Any
    Lambda: Any
    xmin: Any
    loglik: Any
    D: Any
    alpha_se: Any
    Lambda_se: Any
    n: Any
    iterations: Any
    status: Any
    error: Any
    bad_index: Any
    xmins: np.ndarray
    _lib: _Lib

    def to_fits(self) -> list[TruncatedPowerLawFit]:
        """Copy the results to the host as :class:`TruncatedPowerLawFit` objects."""
        host = self._lib.to_host
        columns = [
            host(a)
            for a in (self.alpha, self.Lambda, self.xmin, self.loglik, self.D, self.alpha_se,
                      self.Lambda_se, self.n, self.iterations, self.status, self.error,
                      self.bad_index)
        ]  # fmt: skip
        return [
            _tpl_result(tuple(col[p].item() for col in columns), float(self.xmins[p]))
            for p in range(len(self.xmins))
        ]


def fit_truncated_powerlaw_batch(
    spectra: Any,
    xmins: Any,
    *,
    segment: Sequence[int] | None = None,
    backend: str = "auto",
) -> GpuTplBatch:
    """Truncated power-law MLE at fixed xmin for many (spectrum, xmin) pairs, one thread each.

    Parameters
    ----------
    spectra : 2-D device array or sequence of 1-D device arrays
        As in :func:`fit_powerlaw_batch` (sorted and converted to float64 on the device).
    xmins : sequence of float (or 1-D host array)
        One xmin per pair; copied to the device (it is small metadata).
    segment : sequence of int, optional
        Spectrum index of each pair; by default pair p uses spectrum p.
    backend : {"auto", "compiled", "cupy"}

    Returns
    -------
    GpuTplBatch
        Device arrays; ``.to_fits()`` copies them into ``TruncatedPowerLawFit`` objects.
    """
    lib, values, lengths = _pack(spectra)
    xmins_host = np.ascontiguousarray(np.asarray(xmins, dtype=np.float64).reshape(-1))
    num_pairs = len(xmins_host)
    seg_host = np.arange(num_pairs, dtype=np.int64) if segment is None else (
        np.ascontiguousarray(np.asarray(segment, dtype=np.int64).reshape(-1)))  # fmt: skip
    if len(seg_host) != num_pairs:
        msg = f"segment has {len(seg_host)} entries for {num_pairs} xmins"
        raise ValueError(msg)
    if num_pairs and (seg_host.min() < 0 or seg_host.max() >= len(lengths)):
        msg = f"segment entries must lie in [0, {len(lengths)}), got {seg_host.tolist()}"
        raise ValueError(msg)
    offsets_host = _offsets_of(lengths)
    if int(offsets_host[-1]) == 0:
        values = lib.empty((1,), "float64")
    offsets, seg, xm = (lib.from_host(a) for a in (offsets_host, seg_host, xmins_host))
    rules = lib.empty((_TPL_RULES,), "float64")
    out_f = lib.empty((max(num_pairs, 1), _TPL_OUT_F), "float64")
    out_i = lib.empty((max(num_pairs, 1), _TPL_OUT_I), "int64")
    compiled, module = _pick_backend(backend)
    if num_pairs and compiled is not None:
        p = lib.ptr
        compiled.fit_tpl_batch(
            p(values), p(offsets), len(lengths), p(seg), p(xm), num_pairs, p(rules), p(out_f),
            p(out_i), lib.stream(),
        )  # fmt: skip
    elif num_pairs:
        c = lib.to_cupy
        with _cupy_stream(lib) as stream:
            module.get_function("hts_tpl_rules")((1,), (1,), (c(rules),))
            module.get_function("hts_tpl_fit")(
                (_grid(num_pairs, 64),), (64,),
                (c(values), c(offsets), c(seg), c(xm), np.int64(num_pairs), c(rules),
                 c(out_f), c(out_i)),
            )  # fmt: skip
            stream.synchronize()
    out_f, out_i = out_f[:num_pairs], out_i[:num_pairs]
    return GpuTplBatch(
        *(out_f[:, k] for k in range(_TPL_OUT_F)),
        *(out_i[:, k] for k in range(_TPL_OUT_I)),
        xmins=xmins_host,
        _lib=lib,
    )
