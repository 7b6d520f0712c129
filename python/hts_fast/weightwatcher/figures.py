"""``analyze(plot=True, savefig=...)``: WeightWatcher 0.7.7's per-layer figures, drawn from
hts_fast's ESDs, fits and table.

Per analyzed layer, in 0.7.7's order, each figure is saved as
``{folder}/ww.layer{layer_id}.{kind}.png`` when ``savefig`` names a folder (``True``: 0.7.7's
``ww-img``), then shown with ``plt.show()`` and closed (0.7.7 shows every figure, saved or
not). The kinds:

``esd``
    log-log density histogram of the eigenvalues above xmin/100 (0.4 % of the largest when
    the fit failed) with the fitted power law above xmin and xmin
    (:func:`hts_fast.zoo.report.draw_esd`); alpha, D, xmin and sigma in the title. With
    ``fit="TPL"``/``"E_TPL"`` the fitted truncated power law x^-alpha exp(-Lambda x) instead
    (:func:`tpl_density`).
``esd2``, ``esd3``
    the same eigenvalues on linear axes, and the histogram of their log10; xmin (and xmax).
``esd4``, ``esd5``
    the KS distance D and alpha against each candidate xmin of the power-law scan
    (:func:`hts_fast.fits.powerlaw.powerlaw_curve`), the chosen xmin marked; for a TPL fit
    the truncated power law's candidates (:func:`tpl_scan`). A failed fit has no scan, so
    no esd4/esd5 (0.7.7 raises AttributeError there: its failed TPL, E_TPL and
    fix_fingers="xmin_peak" fits crash plot=True).

SVDSharpness(plot=True) draws ``mpfit1``/``mpfit2`` of each layer's permuted ESD into
``ww-img`` (:func:`mp_figures`), as 0.7.7 does; SVDSmoothing(plot=True) draws nothing, as
in 0.7.7.
``mpfit1``, ``mpfit2`` (``mp_fit=True``)
    the ESD rescaled to mean 1 with the fitted Marchenko-Pastur density and the bulk edge
    plus its Tracy-Widom margin (dashed); ``mpfit1`` only for square matrices (Q = 1), whose
    ``mpfit2`` shows the singular values against the quarter-circle law instead.
``randesd1``, ``randesd2`` (``randomize=True``)
    the ESD and the ESD of the shuffled weights, linear and log10, the largest shuffled
    eigenvalue marked; then ``mpfit1``/``mpfit2`` of the shuffled ESD, under the same file
    names (0.7.7 overwrites the ESD's MP figures with them).
``detX`` (``detX=True`` or ``ERG=True``)
    histogram of the log10 of the eigenvalues rescaled to mean 1, the detX = 1 eigenvalue
    and xmin.

matplotlib is imported only here, when figures are asked for.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.layer_matrices import COMPAT
from ..analysis.xmax import cdf_xmax, fitted_evals
from ..fits.powerlaw import DEFAULT_THRESHOLD, PowerLawCurve, powerlaw_curve
from ..zoo.report import draw_esd
from . import constants as c

#: Bins of every histogram (0.7.7's).
BINS = 100
#: Points of the drawn Marchenko-Pastur and quarter-circle densities.
DENSITY_POINTS = 400
MISSING_MATPLOTLIB = 'analyze(plot=True) needs matplotlib: pip install "hts_fast[report]"'


def require_pyplot() -> Any:
    """matplotlib.pyplot, or ImportError saying how to install it. The backend is left as
    the user has it (PNG files are rendered by Agg whatever it is)."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(MISSING_MATPLOTLIB) from exc
    return plt


def save_folder(savefig: str | bool) -> str | None:
    """Where 0.7.7 saves the figures: ``True`` -> ``ww-img``, a non-empty string -> that
    folder, ``False`` or ``""`` -> nowhere (shown only)."""
    if savefig is True:
        return c.DEF_SAVE_DIR
    return savefig or None


def layer_label(row: pd.Series) -> str:
    """0.7.7's 'Layer {id} ({longname or name})' of the ESD and MP figures."""
    alias = row.get("longname") or row.get("name") or ""
    return f"Layer {int(row['layer_id'])}" + (f" ({alias})" if alias else "")


def plotted_evals(evals: np.ndarray, xmax: Any) -> np.ndarray:
    """The eigenvalues 0.7.7 plots: all, or all but the k largest for ``xmax=k`` when
    k <= half of them (it clips them before the fit)."""
    if isinstance(xmax, int) and not isinstance(xmax, bool) and abs(xmax) <= len(evals) / 2:
        return evals[: len(evals) - abs(xmax)]
    return evals


def xmin_scan(evals: np.ndarray, row: pd.Series, xmax: Any) -> PowerLawCurve | None:
    """alpha, D and sigma at every candidate xmin of the power-law fit behind ``row``: the
    eigenvalues above the threshold up to ``xmax`` (see :func:`fitted_evals`), without the
    ``num_fingers + 1`` largest when fix_fingers='clip_xmax' clipped fingers (0.7.7 then
    keeps the fit of the clipped tail). None when the fit failed."""
    if row.get("status") != "success":
        return None
    values = fitted_evals(np.sort(evals), xmax)
    values = values[values > DEFAULT_THRESHOLD]
    fingers = int(row.get("num_fingers", 0) or 0)
    if fingers > 0:
        values = values[: len(values) - (fingers + 1)]
    try:
        return powerlaw_curve(values)
    except ValueError:
        return None


def tpl_scan(evals: np.ndarray, row: pd.Series, xmax: Any, fit: str) -> pd.DataFrame | None:
    """alpha and D of the truncated power law at every candidate xmin of the search behind
    ``row`` (``fit`` "TPL": every eigenvalue above the threshold; "E_TPL": 0.7.7's range
    around the ESD's peak) that 0.7.7's filter keeps (alpha > 1, a KS distance; cut at xmax
    as the compat fit): the columns ``xmins``, ``Ds``, ``alphas``, the chosen xmin at the
    smallest D. None when the fit failed."""
    if row.get("status") != "success":
        return None
    from ..fits.curves import fit_curves
    from ..fits.tpl_search import peak_xmin_range

    values = fitted_evals(np.sort(evals), xmax)
    xmin_range = (peak_xmin_range(values, variant="weightwatcher-0.7.7") if fit == c.E_TPL
                  else None)  # fmt: skip
    table = fit_curves(values, "TPL", xmin_range=xmin_range, alpha_above_one=True,
                       cdf_xmax=cdf_xmax(values, xmax, COMPAT))  # fmt: skip
    valid = table[(table["alpha"] > 1) & np.isfinite(table["D"])]  # the candidates compared
    return pd.DataFrame({"xmins": valid["xmin"], "Ds": valid["D"], "alphas": valid["alpha"]})


def mp_density(x: np.ndarray, Q: float, sigma: float) -> np.ndarray:
    """Marchenko-Pastur density of aspect ratio Q = N/M and scale sigma at x (0 outside its
    support [sigma^2 (1 - Q^-1/2)^2, sigma^2 (1 + Q^-1/2)^2])."""
    low, high = (sigma * (1 - np.sqrt(1 / Q))) ** 2, (sigma * (1 + np.sqrt(1 / Q))) ** 2
    inside = np.clip((high - x) * (x - low), 0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(Q / (2 * np.pi * sigma**2 * x) * np.sqrt(inside))


def quarter_circle_density(x: np.ndarray, sigma: float) -> np.ndarray:
    """The quarter-circle model 0.7.7 fits to the singular values of a square matrix:
    sqrt(4 - x^2) / (pi sigma^2) on [0, 2]."""
    return np.sqrt(np.clip(4 - x**2, 0, None)) / (np.pi * sigma**2)


class Figures:
    """Opens one figure at a time; saves it under 0.7.7's name, shows it, closes it."""

    def __init__(self, plt: Any, folder: str | None) -> None:
        self.plt, self.folder = plt, folder

    def new(self) -> tuple[Any, Any]:
        fig = self.plt.figure()
        return fig, fig.add_subplot()

    def done(self, fig: Any, layer_id: int, kind: str) -> None:
        ax = fig.axes[0]
        if ax.get_legend_handles_labels()[1]:
            ax.legend(fontsize=8)
        if self.folder:
            os.makedirs(self.folder, exist_ok=True)  # 0.7.7 makes only the last level
            fig.tight_layout()
            fig.savefig(os.path.join(self.folder, f"ww.layer{layer_id}.{kind}.png"))
        self.plt.show()
        self.plt.close(fig)


def tpl_density(x: np.ndarray, alpha: float, Lambda: float, xmin: float) -> np.ndarray:
    """Density of the truncated power law x^-alpha exp(-Lambda x) on [xmin, inf) at x (per
    unit eigenvalue); its normalisation integrated numerically (scipy.integrate.quad, in
    units of xmin)."""
    import scipy.integrate

    def shape(u: float) -> float:
        return u**-alpha * math.exp(-Lambda * xmin * (u - 1))

    # Lambda = 0: the pure power law (alpha > 1), normalised in closed form
    mass = scipy.integrate.quad(shape, 1.0, math.inf)[0] if Lambda > 0 else 1.0 / (alpha - 1)
    u = np.asarray(x, dtype=np.float64) / xmin
    return u**-alpha * np.exp(-Lambda * xmin * (u - 1)) / (mass * xmin)


def _draw_tpl(ax: Any, shown: np.ndarray, alpha: float, Lambda: float, xmin: float) -> None:
    """The truncated power law of the row above xmin, scaled to the tail's share."""
    positive = shown[shown > 0]
    x = np.logspace(np.log10(xmin), np.log10(positive.max()), 50)
    share = np.count_nonzero(positive >= xmin) / len(positive)
    ax.plot(x, share * tpl_density(x, alpha, Lambda, xmin), color="#c0392b",
            label=rf"TPL fit, $\alpha$ = {alpha:.2f}, $\Lambda$ = {Lambda:.3g}")  # fmt: skip
    ax.axvline(xmin, color="#c0392b", linestyle="--", linewidth=1, label="xmin")


def _esd_figures(figs: Figures, row: pd.Series, evals: np.ndarray, xmax: Any,
                 fit: str = c.PL) -> None:  # fmt: skip
    evals = plotted_evals(np.sort(evals), xmax)
    label, ok = layer_label(row), row.get("status") == "success"
    alpha, xmin, top = float(row["alpha"]), float(row["xmin"]), float(row["xmax"])
    shown = evals[evals > (xmin / 100 if ok else 0.004 * evals.max())]
    lid = int(row["layer_id"])
    truncated = fit != c.PL

    fig, ax = figs.new()
    pl_line = ok and not truncated
    draw_esd(ax, shown, alpha if pl_line else math.nan, xmin if pl_line else math.nan,
             bins=BINS)  # fmt: skip
    if ok and truncated and len(np.unique(shown[shown > 0])) > 1:
        _draw_tpl(ax, shown, alpha, float(row["Lambda"]), xmin)
    sigma = "" if truncated else rf"; $\sigma$={row['sigma']:.3f}"
    stats = (rf"$\alpha$={alpha:.3f}; $D_{{KS}}$={row['D']:.3f}; "
             rf"$\lambda_{{min}}$={xmin:.3f}{sigma}"
             if ok else "power-law fit failed")  # fmt: skip
    ax.set_title(f"Log-log ESD of {label}\n{stats}", fontsize=9)
    figs.done(fig, lid, "esd")

    fig, ax = figs.new()
    ax.hist(shown, bins=BINS, density=True)
    if ok:
        ax.axvline(xmin, color="red", label=r"$\lambda_{xmin}$")
    ax.set(title=f"Linear ESD of {label}", xlabel=r"eigenvalue $\lambda$", ylabel="density")
    figs.done(fig, lid, "esd2")

    fig, ax = figs.new()
    positive = shown[shown > 0]
    ax.hist(np.log10(positive), bins=BINS, density=True)
    if ok:
        ax.axvline(np.log10(xmin), color="red", label=r"$\lambda_{xmin}$")
        ax.axvline(np.log10(top), color="orange", label=r"$\lambda_{xmax}$")
    ax.set(title=f"ESD of {label}, log10 eigenvalues", xlabel=r"$\log_{10}\lambda$",
           ylabel="density")  # fmt: skip
    figs.done(fig, lid, "esd3")

    scan = tpl_scan(evals, row, xmax, fit) if truncated else xmin_scan(evals, row, xmax)
    if scan is None:
        return
    for kind, values, name in (("esd4", scan.Ds, r"$D_{KS}$"), ("esd5", scan.alphas, r"$\alpha$")):
        fig, ax = figs.new()
        ax.plot(scan.xmins, values, label=name)
        ax.axvline(xmin, color="red", label=r"$\lambda_{xmin}$")
        chosen = rf"chosen $\lambda_{{xmin}}$={xmin:.3g}"
        ax.set(xlabel=r"candidate $x_{min}$", ylabel=name)
        ax.set_title(rf"{name} against $x_{{min}}$, {label}" + f"\n{chosen}", fontsize=9)
        figs.done(fig, lid, kind)


def mp_figures(figs: Figures, row: pd.Series, evals: np.ndarray, *, shuffled: bool) -> None:
    prefix = "rand_" if shuffled else ""
    sigma, scale = float(row[prefix + "sigma_mp"]), float(row[prefix + "W_scale"])
    if not (math.isfinite(sigma) and sigma > 0 and math.isfinite(scale) and scale > 0):
        return  # the MP fit failed: 0.7.7 draws nothing either
    N, M = int(row["N"]), int(row["M"])
    Q = N / M
    label = layer_label(row) + (" Randomized" if shuffled else "")
    color, opacity = ("darkorchid", 0.55) if shuffled else ("royalblue", 0.60)
    rescaled = np.sort(evals) * scale**2
    edge = (sigma * (1 + Q**-0.5)) ** 2
    cutoff = edge + math.sqrt(Q**-0.5 * edge ** (2 / 3) * M ** (-2 / 3))  # Tracy-Widom margin

    def mp_panel(ax: Any, data: np.ndarray, density: Any, line: float, what: str) -> None:
        ax.hist(data, bins=BINS, density=True, alpha=opacity, color=color,
                label=rf"$\rho_{{emp}}({what})$")  # fmt: skip
        x = np.linspace(data.min(), data.max(), DENSITY_POINTS)
        ax.plot(x, density(x), color="red", linewidth=1, label="fit")
        ax.axvline(line, color="red", linestyle="--", linewidth=1)

    lid = int(row["layer_id"])
    if Q == 1:
        fig, ax = figs.new()
        mp_panel(ax, rescaled, lambda x: mp_density(x, Q, sigma), cutoff, r"\lambda")
        ax.set_title(f"MP density, fitted sigma, {label}", fontsize=9)
        figs.done(fig, lid, "mpfit1")
    fig, ax = figs.new()
    if Q == 1:
        law = "quarter circle (singular values)"
        mp_panel(ax, np.sqrt(rescaled), lambda x: quarter_circle_density(x, sigma),
                 math.sqrt(cutoff), r"\nu")  # fmt: skip
    else:
        law = "MP fit"
        mp_panel(ax, rescaled, lambda x: mp_density(x, Q, sigma), cutoff, r"\lambda")
    spikes = int(row[prefix + "num_spikes"])
    ax.set_title(f"{law}, {label}\nQ={Q:.3g} " + rf"$\sigma_{{mp}}$={sigma:.3g} "
                 rf"$R_{{mp}}$={float(row[prefix + 'mp_softrank']):.3g} spikes={spikes}",
                 fontsize=9)  # fmt: skip
    figs.done(fig, lid, "mpfit2")


def _random_figures(figs: Figures, row: pd.Series, evals: np.ndarray,
                    shuffled: np.ndarray) -> None:  # fmt: skip
    longname = row.get("longname") or ""
    lid = int(row["layer_id"])
    label = f"Layer {lid} {row['name']}" + (f" ({longname})" if longname else "")
    top = float(np.max(shuffled))
    for kind, transform, axis in (("randesd1", np.asarray, r"eigenvalue $\lambda$"),
                                  ("randesd2", np.log10, r"$\log_{10}\lambda$")):  # fmt: skip
        fig, ax = figs.new()
        ax.hist(transform(evals[evals > 0]), bins=BINS, density=True, color="g",
                label="original")  # fmt: skip
        ax.hist(transform(shuffled[shuffled > 0]), bins=BINS, density=True, color="r",
                alpha=0.5, label="shuffled")  # fmt: skip
        ax.axvline(transform(top), color="orange", label="largest shuffled")
        ax.set(xlabel=axis, ylabel="density")
        ax.set_title(f"{label}: ESD and shuffled-weights ESD", fontsize=9)
        figs.done(fig, lid, kind)


def _detx_figure(figs: Figures, row: pd.Series, evals: np.ndarray) -> None:
    rescaled = evals * (len(evals) / np.sum(evals))
    fig, ax = figs.new()
    ax.hist(np.log10(rescaled[rescaled > DEFAULT_THRESHOLD]), bins=BINS)
    ax.axvline(np.log10(float(row["detX_val_unrescaled"])), color="purple",
               label=r"det$X$ = 1")  # fmt: skip
    if row.get("status") == "success" and float(row["xmin"]) > 0:
        xmin = float(row["xmin"]) * rescaled.max() / float(row["xmax"])
        ax.axvline(np.log10(xmin), color="red", label=r"PL $\lambda_{min}$")
    ax.set(title=f"detX constraint, {row['name']}",
           xlabel="log10 eigenvalue (rescaled to mean 1)", ylabel="count")  # fmt: skip
    figs.done(fig, int(row["layer_id"]), "detX")


def draw_figures(details: pd.DataFrame, spectra: Mapping[int, np.ndarray],
                 shuffled: Mapping[int, np.ndarray], *, savefig: str | bool, xmax: Any,
                 mp_fit: bool, randomize: bool, detX: bool,
                 fit: str = c.PL) -> None:  # fmt: skip
    """Draw (save, show) 0.7.7's figures of every row of ``details``, 0.7.7's table; its
    ESD by row position in ``spectra`` (and the shuffled ESD in ``shuffled``). A row without
    an ESD (a failed layer) gets no figure."""
    figs = Figures(require_pyplot(), save_folder(savefig))
    for at in range(len(details)):
        if at not in spectra:
            continue
        row, evals = details.iloc[at], np.sort(np.asarray(spectra[at], dtype=np.float64))
        _esd_figures(figs, row, evals, xmax, fit)
        if mp_fit:
            mp_figures(figs, row, evals, shuffled=False)
        if randomize and at in shuffled:
            rand = np.sort(np.asarray(shuffled[at], dtype=np.float64))
            _random_figures(figs, row, evals, rand)
            mp_figures(figs, row, rand, shuffled=True)
        if detX:
            _detx_figure(figs, row, evals)
