"""Each tuned layer's ESD metrics, computed where its weights are.

The ESD is TempBalance's: a Linear weight as it is; a Conv2d kernel (out, in, kh, kw) as its
kh*kw matrices of out x in, each multiplied by sqrt(conv_norm) (so every eigenvalue is
``conv_norm`` times the raw one), their eigenvalues of W^T W pooled. Then one power-law fit:

* ``"median"``: xmin at index N // xmin_pos (:func:`hts_fast.fits.fixed_xmin.fit_median_xmin`);
* ``"fit"``: every xmin candidate, smallest KS distance (:func:`hts_fast.fit_powerlaw_batch`,
  WeightWatcher's default fit; eigenvalues <= 1e-5 left out);
* ``"peak"``: the candidates in [0.95 p, 1.5 p), p the peak of the log10 histogram (100 bins)
  (TempBalance's ``fix-finger`` with its lower bound in the same units as the upper: it
  compares log10(0.95 p) with eigenvalues).

Metrics per layer: ``alpha``, ``D``, ``xmin``, ``num_pl_spikes``, ``spectral_norm``
(largest eigenvalue), ``norm`` (sum of the eigenvalues: the squared Frobenius norm),
``alphahat`` (alpha * log10 spectral_norm) and ``eigs_num``. A layer whose alpha is not
finite gets NaN metrics and its ``reason``.

A flat spectrum is a failed fit too (:func:`flat_tolerance`): when the tail's spread
lambda_max / xmin - 1 is within what rounding the weights leaves in an orthogonal matrix,
the tail is flat to the weights' precision and its alpha (about 3e6 for a float32
orthogonal layer, about 500 for a bf16 one) would only measure the rounding. Such a layer
gets alpha, D, xmin NaN, num_pl_spikes 0 and a ``reason`` saying so, on both paths.

Where: weights on the CPU go through the compiled float64 kernels (:func:`hts_fast.esd_batch`,
threads across matrices). CUDA weights stay on their GPU: Gram matrices and batched
eigensolves there (:func:`hts_fast.spectra.gpu.esd_batch`, float64, equal shapes stacked), the
median fit as torch operations on the device, the other fits by the CUDA fit kernels; only
the per-layer numbers come back to the host, in one copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .._arrays import as_float_array
from ..fits.fixed_xmin import FLAT_RTOL, FixedXminFit, fit_median_xmin, reindexed_note
from ..fits.powerlaw import DEFAULT_THRESHOLD, fit_powerlaw_batch
from ..fits.tpl_search import PEAK_BINS, peak_candidate
from ..spectra.conv2d import oihw_slices
from ..spectra.esd import esd_batch

XminRule = Literal["median", "fit", "peak"]
#: The per-layer numbers, in the order of the device path's result rows.
FIELDS = ("alpha", "D", "xmin", "num_pl_spikes", "spectral_norm", "norm", "eigs_num")


@dataclass(frozen=True)
class Estimator:
    """How a layer's ESD and fit are computed (see the module docstring)."""

    xmin: XminRule = "median"
    xmin_pos: int = 2
    filter_zeros: bool = False
    conv_norm: float = 0.5
    esd_method: Literal["gram", "svd"] = "gram"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.xmin not in ("median", "fit", "peak"):
            msg = f"xmin must be 'median', 'fit' or 'peak', got {self.xmin!r}"
            raise ValueError(msg)
        pos = self.xmin_pos
        if isinstance(pos, bool) or not isinstance(pos, (int, np.integer)) or pos < 2:
            msg = f"xmin_pos must be an integer >= 2 (1 would put xmin past the end), got {pos!r}"
            raise ValueError(msg)
        if not (isinstance(self.conv_norm, (int, float)) and 0 < self.conv_norm < math.inf):
            msg = f"conv_norm must be a number > 0, got {self.conv_norm!r}"
            raise ValueError(msg)
        if self.esd_method not in ("gram", "svd"):
            msg = f"esd_method must be 'gram' or 'svd', got {self.esd_method!r}"
            raise ValueError(msg)


def _where(weights: list[tuple[str, Any]]) -> str:
    """The device of the whole set, "cpu" or "cuda"; ValueError naming a layer elsewhere or mixed."""
    types = {name: getattr(w.device, "type", "cpu") for name, w in weights}
    for name, kind in types.items():
        if kind not in ("cpu", "cuda"):
            msg = f"layer {name!r} has its weight on {kind!r}; TempBalance runs on cpu or cuda"
            raise ValueError(msg)
    if len(set(types.values())) > 1:
        cpu = next(n for n, t in types.items() if t == "cpu")
        gpu = next(n for n, t in types.items() if t == "cuda")
        msg = (f"the tuned layers are on different devices ({cpu!r} on cpu, {gpu!r} on cuda); "
               "move the whole model to one device")  # fmt: skip
        raise ValueError(msg)
    return next(iter(types.values()), "cpu")


def storage_eps(weight: Any) -> tuple[float, str]:
    """The machine epsilon of ``weight``'s dtype (a torch tensor or a NumPy array) and the
    dtype's name. A dtype that is not a floating type (integers, say) has no rounding of its
    own: float64's epsilon is used for it, the strictest choice (the tolerance then rests on
    the float32 term of :func:`flat_tolerance`)."""
    dtype = getattr(weight, "dtype", None)
    if dtype is not None and type(dtype).__module__ == "torch":
        import torch

        if dtype.is_floating_point:
            return float(torch.finfo(dtype).eps), str(dtype).removeprefix("torch.")
    else:
        np_dtype = np.dtype(dtype) if dtype is not None else np.dtype(np.float64)
        if np.issubdtype(np_dtype, np.floating):
            return float(np.finfo(np_dtype).eps), np_dtype.name
    return float(np.finfo(np.float64).eps), f"{dtype} (not a float type: float64's epsilon)"


def flat_tolerance(eps: float, n: int) -> float:
    """The largest tail spread lambda_max / xmin - 1 that is still flat, for weights stored
    with machine epsilon ``eps`` and ``n`` eigenvalues: 4 eps + 8 sqrt(n) eps(float32).

    The two terms are the two roundings an orthogonal initialisation carries. Storing it
    rounds each entry to the weights' precision, which moves the squared singular values by
    about one eps of the storage dtype (measured: 0.6 eps for bf16 and fp16 at 64..512
    wide); 4 eps leaves a margin. ``torch.nn.init.orthogonal_`` orthogonalises in float32
    whatever the model's dtype, which leaves a spread growing with the width (measured 64..512
    wide: 8-15 eps(float32) over the median-rule tail, 11-34 over the whole spectrum);
    8 sqrt(n) eps(float32) covers it with a margin of 8 or more on the tail, so a float64
    model cast from a float32 initialisation is caught too. Any trained
    or random layer spreads by orders of magnitude more (a Gaussian layer's tail by a
    factor of about 2 or more).
    """
    return 4.0 * eps + 8.0 * math.sqrt(n) * float(np.finfo(np.float32).eps)


def _flag_flat(row: dict[str, Any], weight: Any) -> None:
    """Turn ``row`` into a failed fit when its tail is flat to the weight's precision."""
    xmin, top = row["xmin"], row["spectral_norm"]
    if not (math.isfinite(xmin) and xmin > 0 and math.isfinite(row["alpha"])):
        return
    eps, dtype = storage_eps(weight)
    spread = top / xmin - 1.0
    tolerance = flat_tolerance(eps, int(row["eigs_num"]))
    if spread <= tolerance:
        row.update(alpha=math.nan, D=math.nan, xmin=math.nan, num_pl_spikes=0)
        row["reason"] = (
            f"the spectrum is flat to the weights' precision: lambda_max / xmin - 1 = "
            f"{spread:.3g} <= {tolerance:.3g} (4 eps({dtype}) + 8 sqrt(n) eps(float32), "
            f"n = {row['eigs_num']}), an orthogonal layer; no finite alpha describes it"
        )


def layer_metrics(
    weights: list[tuple[str, Any]], kinds: list[str], est: Estimator
) -> list[dict[str, Any]]:
    """One dict of FIELDS (plus ``alphahat`` and ``reason``) per (name, weight) pair."""
    if not weights:
        return []
    if _where(weights) == "cuda":
        rows = _device_metrics(weights, kinds, est)
    else:
        rows = _host_metrics(weights, kinds, est)
    for row, (_, weight) in zip(rows, weights, strict=True):
        _flag_flat(row, weight)
        row["alphahat"] = row["alpha"] * math.log10(row["spectral_norm"]) if (
            row["spectral_norm"] > 0) else math.nan  # fmt: skip
    return rows


# ---------------------------------------------------------------- host


def _host_metrics(weights: list[tuple[str, Any]], kinds: list[str],
                  est: Estimator) -> list[dict[str, Any]]:  # fmt: skip
    matrices, scales, owners = [], [], []
    for k, ((name, weight), kind) in enumerate(zip(weights, kinds, strict=True)):
        arr = as_float_array(weight, f"layer {name!r}")
        parts = list(oihw_slices(arr)) if kind == "conv2d" else [arr]
        scale = math.sqrt(est.conv_norm) if kind == "conv2d" else 1.0
        matrices += parts
        scales += [scale] * len(parts)
        owners += [k] * len(parts)
    spectra = esd_batch(
        matrices, method=est.esd_method, scales=scales, threads=est.threads, on_error="return"
    )
    for k, values in zip(owners, spectra, strict=True):
        if isinstance(values, Exception):
            detail = getattr(values, "detail", f": {values}")
            msg = f"layer {weights[k][0]!r}: its weight has no ESD{detail}"
            raise type(values)(msg) from values
    pooled: list[list[np.ndarray]] = [[] for _ in weights]
    for k, values in zip(owners, spectra, strict=True):
        pooled[k].append(values)  # type: ignore[arg-type]
    evals = [np.sort(np.concatenate(parts)) for parts in pooled]
    fits = _host_fits(evals, est)
    rows = []
    for values, fit in zip(evals, fits, strict=True):
        rows.append({"alpha": fit.alpha, "D": fit.D, "xmin": fit.xmin,
                     "num_pl_spikes": fit.num_pl_spikes, "spectral_norm": float(values[-1]),
                     "norm": float(values.sum()), "eigs_num": len(values),
                     "reason": fit.reason})  # fmt: skip
    return rows


def _host_fits(evals: list[np.ndarray], est: Estimator) -> list[FixedXminFit]:
    if est.xmin == "median":
        return [fit_median_xmin(v, xmin_pos=est.xmin_pos, filter_zeros=est.filter_zeros)
                for v in evals]  # fmt: skip
    if est.xmin == "fit":
        out = []
        for fit in fit_powerlaw_batch(evals, threads=est.threads):
            if fit.status != "success" or not math.isfinite(fit.alpha):
                out.append(FixedXminFit.failed(fit.reason or f"alpha {fit.alpha!r}"))
            else:
                out.append(FixedXminFit(fit.alpha, fit.D, fit.xmin, fit.xmin_index,
                                        fit.num_pl_spikes, "success"))  # fmt: skip
        return out
    return [_peak_fit(v, est.threads) for v in evals]


def _peak_fit(evals: np.ndarray, threads: int | None) -> FixedXminFit:
    """The smallest-D candidate with alpha > 1 inside [0.95 peak, 1.5 peak)."""
    x = evals[evals > DEFAULT_THRESHOLD]
    found = peak_candidate(x, threads=threads)
    if isinstance(found, str):
        return FixedXminFit.failed(found)
    curve, k = found
    return FixedXminFit(float(curve.alphas[k]), float(curve.Ds[k]), float(curve.xmins[k]), k,
                        len(x) - k, "success")  # fmt: skip


# ---------------------------------------------------------------- device (torch)


def median_fit_torch(values: Any, *, xmin_pos: int, filter_zeros: bool,
                     threshold: float = DEFAULT_THRESHOLD) -> Any:  # fmt: skip
    """The median-rule fit of one ascending torch spectrum, as torch operations on its device
    (no host synchronisation): a float64 tensor (alpha, D, xmin, n, ok, above); ok = 1 for a
    finite fit; above = the number of eigenvalues above ``threshold`` when the median index
    fell on a zero and was counted among them (without ``filter_zeros``), else 0, for the
    host's note. The same rule as :func:`hts_fast.fits.fixed_xmin.fit_median_xmin`."""
    import torch

    N = values.shape[0]
    positions = torch.arange(N, device=values.device)
    zeros = (values <= threshold).sum()
    plain = torch.full_like(zeros, N // xmin_pos)
    counted = zeros + torch.div(N - zeros, xmin_pos, rounding_mode="floor")
    if filter_zeros:
        index = counted
        above = torch.zeros_like(zeros)
    else:
        reindexed = values[plain.clamp(max=N - 1)] <= threshold
        index = torch.where(reindexed, counted, plain)
        above = torch.where(reindexed, N - zeros, 0)
    index = index.clamp(max=N - 1)
    xmin = values[index]
    tail = positions >= index
    n = (N - index).to(values.dtype)
    ratio = torch.where(tail & (xmin > 0), values / xmin.clamp_min(threshold), 1.0)
    total = torch.log(ratio).sum()
    ok = (zeros < N) & (xmin > threshold) & (total > 0) & (values[-1] > xmin * (1 + FLAT_RTOL))
    alpha = 1.0 + n / torch.where(ok, total, 1.0)
    j = (positions - index).to(values.dtype)
    cdf = 1.0 - ratio ** (1.0 - alpha) - j / n
    D = torch.where(tail, cdf.abs(), 0.0).max()
    nan = torch.tensor(math.nan, dtype=values.dtype, device=values.device)
    return torch.stack([torch.where(ok, alpha, nan), torch.where(ok, D, nan),
                        torch.where(ok, xmin, nan), torch.where(ok, n, 0.0),
                        ok.to(values.dtype), above.to(values.dtype)])  # fmt: skip


def peak_select_torch(values: Any, curve_alpha: Any, curve_D: Any,
                      threshold: float = DEFAULT_THRESHOLD) -> Any:  # fmt: skip
    """The xmin_peak choice from one spectrum's all-candidate scan, as torch operations on its
    device: ``values`` ascending, ``curve_alpha`` / ``curve_D`` at the same positions (NaN
    where no candidate). Returns a float64 tensor (alpha, D, xmin, n, ok, 0), shaped as
    :func:`median_fit_torch`'s."""
    import torch

    valid = values > threshold
    logs = torch.log10(torch.where(valid, values, 1.0))
    lo = torch.where(valid, logs, math.inf).min()
    hi = torch.where(valid, logs, -math.inf).max()
    width = (hi - lo) / PEAK_BINS
    bins = torch.floor((logs - lo) / torch.where(width > 0, width, 1.0)).clamp(0, PEAK_BINS - 1)
    counts = torch.zeros(PEAK_BINS, dtype=values.dtype, device=values.device)
    counts.scatter_add_(0, bins.long(), valid.to(values.dtype))
    peak = 10.0 ** (lo + torch.argmax(counts).to(values.dtype) * width)
    low, high = 0.95 * peak, 1.5 * peak
    usable = (valid & (values >= low) & (values < high) & ~torch.isnan(curve_alpha)
              & (curve_alpha > 1) & torch.isfinite(curve_alpha))  # fmt: skip
    k = torch.argmin(torch.where(usable, curve_D, math.inf))
    ok = usable.any()
    nan = torch.tensor(math.nan, dtype=values.dtype, device=values.device)
    n = (values.shape[0] - k).to(values.dtype)
    return torch.stack([torch.where(ok, curve_alpha[k], nan), torch.where(ok, curve_D[k], nan),
                        torch.where(ok, values[k], nan), torch.where(ok, n, 0.0),
                        ok.to(values.dtype), torch.zeros_like(n)])  # fmt: skip


def _device_metrics(weights: list[tuple[str, Any]], kinds: list[str],
                    est: Estimator) -> list[dict[str, Any]]:  # fmt: skip
    import torch

    from ..spectra import gpu

    if est.xmin != "median":
        gpu.require()  # the fit kernels; the median rule needs torch on the device only
    slices, owners = [], []
    for k, ((_, weight), kind) in enumerate(zip(weights, kinds, strict=True)):
        w = weight.detach()
        parts = [w[:, :, i, j] for i in range(w.shape[2]) for j in range(w.shape[3])] if (
            kind == "conv2d") else [w]  # fmt: skip
        slices += parts
        owners += [k] * len(parts)
    spectra = gpu.esd_batch(slices, dtype="float64")
    pooled: list[list[Any]] = [[] for _ in weights]
    for k, values in zip(owners, spectra, strict=True):
        pooled[k].append(values)
    evals = []
    for (_, _), kind, parts in zip(weights, kinds, pooled, strict=True):
        scale2 = est.conv_norm if kind == "conv2d" else 1.0
        evals.append(torch.sort(torch.cat(parts) * scale2).values)
    if est.xmin == "median":
        fits = [median_fit_torch(v, xmin_pos=est.xmin_pos, filter_zeros=est.filter_zeros)
                for v in evals]  # fmt: skip
    else:
        batch = gpu.fit_powerlaw_batch(evals, threshold=DEFAULT_THRESHOLD)
        if est.xmin == "fit":
            ok = (batch.error == 0) & torch.isfinite(batch.alpha)
            nan = torch.full_like(batch.alpha, math.nan)  # failed fits hold -1
            alpha, D, xmin = (torch.where(ok, v, nan) for v in (batch.alpha, batch.D, batch.xmin))
            spikes = torch.where(ok, batch.num_pl_spikes, 0).to(torch.float64)
            fits = [torch.stack([alpha[b], D[b], xmin[b], spikes[b], ok[b].to(torch.float64),
                                 torch.zeros_like(spikes[b])])
                    for b in range(len(evals))]  # fmt: skip
        else:
            off = [int(o) for o in batch.offsets]
            fits = [peak_select_torch(batch.values[off[b]:off[b + 1]],
                                      batch.curve_alpha[off[b]:off[b + 1]],
                                      batch.curve_D[off[b]:off[b + 1]])
                    for b in range(len(evals))]  # fmt: skip
    norms = [torch.stack([v[-1], v.sum()]) for v in evals]
    table = torch.stack([torch.cat([f, m]) for f, m in zip(fits, norms, strict=True)])
    host = table.cpu().numpy()  # the one device-to-host copy: 8 numbers per layer
    rows = []
    for k, (alpha, D, xmin, n, ok, above, lam_max, total) in enumerate(host):
        N = int(evals[k].shape[0])
        reason = "" if ok else f"no finite alpha on the device ({est.xmin} rule)"
        if ok and above:  # the note the host path gives (fit_median_xmin)
            reason = reindexed_note(N // est.xmin_pos, DEFAULT_THRESHOLD, int(above))
        rows.append({"alpha": float(alpha), "D": float(D), "xmin": float(xmin),
                     "num_pl_spikes": int(n), "spectral_norm": float(lam_max),
                     "norm": float(total), "eigs_num": int(evals[k].shape[0]),
                     "reason": reason})  # fmt: skip
    return rows
