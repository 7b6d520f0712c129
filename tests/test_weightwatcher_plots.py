"""hts_fast.weightwatcher's analyze(plot=True, savefig=...) against WeightWatcher 0.7.7: the
same PNG files, the same number of figures shown, and the curves drawn are 0.7.7's (the
xmin scan of its power-law fit, its Marchenko-Pastur density)."""

from __future__ import annotations

import logging
import subprocess
import sys

import hts_fast
import hts_fast.weightwatcher as hw
import numpy as np
import pytest
from hts_fast.weightwatcher import figures

from .conftest import _require
from .test_weightwatcher_facade import quiet

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.weightwatcher

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def plt():
    matplotlib = _require("matplotlib")
    matplotlib.use("Agg")
    return _require("matplotlib.pyplot")


@pytest.fixture(scope="module")
def ww(plt):
    module = _require("weightwatcher")
    logging.getLogger("weightwatcher").setLevel(logging.CRITICAL)
    return module


def plot_model(seed: int = 0) -> torch.nn.Module:
    """Layers of each kind the figures treat differently: an embedding, a dense layer, a
    square one (Q = 1: the quarter-circle MP figures), a conv2d (pooled slices)."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Embedding(60, 24),
        torch.nn.Linear(24, 64),
        torch.nn.Linear(32, 32),
        torch.nn.Conv2d(16, 32, 3),
    )


def pngs(folder) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def assert_valid_pngs(files: dict[str, bytes], plt, folder) -> None:
    for name, data in files.items():
        assert data.startswith(PNG_SIGNATURE), name
        assert len(data) > 5000, name
        pixels = plt.imread(folder / name)
        assert min(pixels.shape[:2]) > 200, name
        assert pixels[..., :3].std() > 0.02, name  # something was drawn


@pytest.mark.parametrize("kwargs", [{}, {"mp_fit": True, "detX": True, "layers": [2, 3]},
                                    {"randomize": True},
                                    {"fix_fingers": "clip_xmax", "start_ids": 1},
                                    {"xmax": 3, "layers": [1, 2]}])  # fmt: skip
def test_same_figure_files_as_0_7_7(ww, plt, tmp_path, kwargs):
    model = plot_model()
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    with quiet():
        np.random.seed(0)  # noqa: NPY002 - both shuffle with NumPy's global state
        ww.WeightWatcher(model=model).analyze(plot=True, savefig=str(theirs), **kwargs)
        plt.close("all")  # 0.7.7 leaves its figure open
        np.random.seed(0)  # noqa: NPY002 - both shuffle with NumPy's global state
        details = hw.WeightWatcher(model=model).analyze(plot=True, savefig=str(ours), **kwargs)
    expected = pngs(theirs)
    files = pngs(ours)
    assert sorted(files) == sorted(expected)
    assert len(details) > 0
    assert len(files) >= 5 * len(details)
    assert_valid_pngs(files, plt, ours)
    assert plt.get_fignums() == []  # every figure closed


def test_shown_figures_and_savefig_true_and_false(ww, plt, tmp_path, monkeypatch):
    """0.7.7 shows every figure, saved or not; savefig=True saves into ./ww-img, False
    nowhere. The figures shown are counted on both packages."""
    model = plot_model(1)
    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(len(plt.get_fignums())))
    monkeypatch.chdir(tmp_path)
    counts = {}
    for name, package in (("theirs", ww), ("ours", hw)):
        for savefig in (False, True):
            (tmp_path / name / str(savefig)).mkdir(parents=True)
            monkeypatch.chdir(tmp_path / name / str(savefig))
            shown.clear()
            with quiet():
                package.WeightWatcher(model=model).analyze(plot=True, savefig=savefig,
                                                           mp_fit=True, layers=[3, 4])  # fmt: skip
            plt.close("all")  # 0.7.7 leaves its figure open
            counts[name, savefig] = len(shown)
            saved = sorted(p.name for p in (tmp_path / name / str(savefig)).rglob("*.png"))
            counts[name, savefig, "files"] = saved
            if savefig:
                assert {p.parent.name for p in (tmp_path / name / "True").rglob("*.png")} == {
                    "ww-img"}  # fmt: skip
    assert counts["ours", False] == counts["theirs", False] > 0
    assert counts["ours", True] == counts["theirs", True] == counts["ours", False]
    assert counts["ours", False, "files"] == counts["theirs", False, "files"] == []
    assert counts["ours", True, "files"] == counts["theirs", True, "files"]
    assert all(n >= 1 for n in shown)  # a figure was open at each show


def test_plot_false_draws_nothing(plt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hw.WeightWatcher(model=plot_model()).analyze(savefig=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs", [{}, {"fix_fingers": "clip_xmax"}, {"xmax": 3}])
def test_xmin_scan_is_0_7_7s(ww, kwargs):
    """esd4/esd5 draw D and alpha at every candidate xmin: 0.7.7's own fit objects'
    xmins, Ds and alphas (its WWFit, or the clipped fit's for fix_fingers='clip_xmax')."""
    from weightwatcher.RMT_Util import fit_clipped_powerlaw
    from weightwatcher.WW_powerlaw import pl_fit

    model = fingered_model() if kwargs.get("fix_fingers") else plot_model(2)
    spectra: dict[int, np.ndarray] = {}
    with quiet():
        table = hts_fast.analyze(model, compat="weightwatcher-0.7.7", _spectra_sink=spectra,
                                 **kwargs)  # fmt: skip
    fingers = []
    for at, evals in spectra.items():
        row = table.iloc[at]
        scan = figures.xmin_scan(evals, row, kwargs.get("xmax"))
        clipped = figures.plotted_evals(np.sort(evals), kwargs.get("xmax"))
        nz = clipped[clipped > 1e-5]
        with quiet():
            if kwargs.get("fix_fingers"):
                theirs, num_fingers, _ = fit_clipped_powerlaw(nz, max_fingers=10, pl_package="ww")
                fingers.append(num_fingers)
                assert int(row["num_fingers"]) == num_fingers
            else:
                theirs = pl_fit(data=nz)
        np.testing.assert_allclose(scan.xmins, theirs.xmins, rtol=1e-12)
        np.testing.assert_allclose(scan.Ds, theirs.Ds, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(scan.alphas, theirs.alphas, rtol=1e-9)
        assert scan.best.xmin == pytest.approx(row["xmin"], rel=1e-12)
    if kwargs.get("fix_fingers"):
        assert min(fingers) > 0  # clipped fits were compared


def fingered_model() -> dict[str, np.ndarray]:
    """Gaussian dense layers, the second and third with weak rank-one spikes: their ESD
    tails end in a few outliers ("fingers") that fix_fingers='clip_xmax' clips (1 to 6 of
    them here)."""
    rng = np.random.default_rng(1)
    layers = {}
    for k, (N, M) in enumerate([(120, 60), (200, 50), (80, 64)]):
        w = rng.standard_normal((N, M)) / np.sqrt(M)
        for _ in range(k):
            strength = 3 * (0.6 + 0.5 * rng.random())
            w += strength * np.outer(rng.standard_normal(N) / np.sqrt(N),
                                     rng.standard_normal(M) / np.sqrt(M))  # fmt: skip
        layers[f"dense{k}.weight"] = w
    return layers


def test_mp_density_is_0_7_7s_and_normalised(ww):
    from scipy import integrate
    from weightwatcher.RMT_Util import marchenko_pastur_pdf, quarter_circle_pdf

    for Q, sigma in ((2.0, 1.0), (4.0, 0.7), (1.5, 1.3)):
        x, theirs = marchenko_pastur_pdf(0.0, 100.0, Q, sigma)
        np.testing.assert_allclose(figures.mp_density(x, Q, sigma), theirs, rtol=1e-12)
        low, high = (sigma * (1 - Q**-0.5)) ** 2, (sigma * (1 + Q**-0.5)) ** 2
        total = integrate.quad(lambda v, Q=Q, s=sigma: figures.mp_density(np.array([v]), Q, s)[0],
                               low, high)[0]  # fmt: skip
        assert total == pytest.approx(1.0, abs=1e-6)
        assert figures.mp_density(np.array([0.5 * low, 2 * high]), Q, sigma).tolist() == [0, 0]
    x, theirs = quarter_circle_pdf(0.0, 1.999, 0.8)
    np.testing.assert_allclose(figures.quarter_circle_density(x, 0.8), theirs, rtol=1e-6)
    total = integrate.quad(lambda v: figures.quarter_circle_density(np.array([v]), 1.0)[0], 0, 2)
    assert total[0] == pytest.approx(1.0, abs=1e-9)


def test_save_folder_is_0_7_7s():
    assert figures.save_folder(True) == "ww-img" == hw.DEF_SAVE_DIR
    assert figures.save_folder("imgs/run1") == "imgs/run1"
    assert figures.save_folder(False) is None
    assert figures.save_folder("") is None


def test_tpl_figures_draw_the_truncated_law_and_its_scan(plt, tmp_path):
    """fit='TPL' with plot=True: esd..esd5 for every layer; the esd4/esd5 scan is the one
    the compat search chose from (its smallest D is the row's D, at the row's xmin)."""
    model = plot_model()
    with quiet():
        details = hw.WeightWatcher(model=model).analyze(plot=True, savefig=str(tmp_path),
                                                        fit="TPL", pl_package="powerlaw")  # fmt: skip
        spectra: dict[int, np.ndarray] = {}
        table = hts_fast.analyze(model, compat="weightwatcher-0.7.7", fit="TPL",
                                 _spectra_sink=spectra)  # fmt: skip
    assert (details["status"] == "success").all()
    kinds = ("esd", "esd2", "esd3", "esd4", "esd5")
    expected = {f"ww.layer{i}.{k}.png" for i in details["layer_id"] for k in kinds}
    files = pngs(tmp_path)
    assert set(files) == expected
    assert_valid_pngs(files, plt, tmp_path)
    for at, evals in spectra.items():
        row = table.iloc[at]
        scan = figures.tpl_scan(evals, row, None, "TPL")
        best = int(np.argmin(scan["Ds"].to_numpy()))
        assert scan["xmins"].iloc[best] == pytest.approx(row["xmin"], rel=1e-12)
        assert scan["Ds"].iloc[best] == pytest.approx(row["D"], rel=1e-9)
        assert scan["alphas"].iloc[best] == pytest.approx(row["alpha"], rel=1e-9)
        assert (scan["alphas"] > 1).all()


@pytest.mark.parametrize(("alpha", "Lambda", "xmin"), [(0.5, 3.0, 0.2), (2.5, 0.7, 1.5),
                                                        (3.0, 0.0, 2.0)])  # fmt: skip
def test_tpl_density_is_normalised_and_has_the_closed_form(alpha, Lambda, xmin):
    """Against closed forms: Lambda^(alpha-1) Gamma(1-alpha, Lambda xmin) normalises
    x^-alpha e^(-Lambda x) for alpha < 1; Lambda = 0 is the power law (alpha-1)/xmin
    (x/xmin)^-alpha; otherwise the density integrates to 1 (trapezoid on a fine grid)."""
    import scipy.special

    x = np.geomspace(xmin, xmin * 1e4 if Lambda == 0 else xmin + 60 / Lambda, 200_001)
    p = figures.tpl_density(x, alpha, Lambda, xmin)
    if Lambda == 0:
        np.testing.assert_allclose(p, (alpha - 1) / xmin * (x / xmin) ** -alpha, rtol=1e-12)
    elif alpha < 1:
        norm = Lambda ** (alpha - 1) * scipy.special.gamma(1 - alpha) * scipy.special.gammaincc(
            1 - alpha, Lambda * xmin)  # fmt: skip
        np.testing.assert_allclose(p, x**-alpha * np.exp(-Lambda * x) / norm, rtol=1e-8)
    else:
        assert np.trapezoid(p, x) == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("kwargs", [{"fit": "E_TPL", "pl_package": "powerlaw"},
                                    {"fix_fingers": "xmin_peak"}])  # fmt: skip
def test_failed_fits_draw_the_failed_figures_where_0_7_7_raises(ww, plt, tmp_path, kwargs):
    """Every layer of this model fails these fits; 0.7.7 raises AttributeError in its
    plotting (with powerlaw 2.0 or pl_package='ww'); the facade draws esd, esd2, esd3."""
    model = plot_model()
    with quiet(), pytest.raises(AttributeError):
        ww.WeightWatcher(model=model).analyze(plot=True, savefig=str(tmp_path / "t"), **kwargs)
    plt.close("all")
    with quiet():
        details = hw.WeightWatcher(model=model).analyze(plot=True, savefig=str(tmp_path / "o"),
                                                        **kwargs)  # fmt: skip
    assert (details["status"] == "failed").all()
    files = pngs(tmp_path / "o")
    assert set(files) == {f"ww.layer{i}.{k}.png" for i in details["layer_id"]
                          for k in ("esd", "esd2", "esd3")}  # fmt: skip
    assert_valid_pngs(files, plt, tmp_path / "o")


def test_svd_sharpness_plot_and_svd_smoothing_plot_like_0_7_7(ww, plt, tmp_path, monkeypatch):
    """SVDSharpness(plot=True): the MP figures of the permuted ESDs in ./ww-img, the same
    files as 0.7.7 with the same random state, and the same edited weights;
    SVDSmoothing(plot=True) draws nothing in either."""
    import copy

    from .test_weightwatcher_facade import trapped_model

    model = trapped_model()
    folders = {}
    for name, package in (("theirs", ww), ("ours", hw)):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        edited = copy.deepcopy(model)
        with quiet():
            np.random.seed(3)  # noqa: NPY002 - both shuffle with NumPy's global state
            package.WeightWatcher(model=edited).SVDSharpness(plot=True)
            plt.close("all")
            package.WeightWatcher(model=copy.deepcopy(model)).SVDSmoothing(plot=True)
            plt.close("all")
        folders[name] = (pngs(tmp_path / name / "ww-img"), edited)
    (theirs, a), (ours, b) = folders["theirs"], folders["ours"]
    assert sorted(ours) == sorted(theirs)
    assert len(ours) >= 3
    assert_valid_pngs(ours, plt, tmp_path / "ours" / "ww-img")
    folders_made = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_dir())
    assert folders_made == ["ours", "ours/ww-img", "theirs", "theirs/ww-img"]
    for (label, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        np.testing.assert_allclose(q.detach().numpy(), p.detach().numpy(), rtol=0, atol=1e-6,
                                   err_msg=label)  # fmt: skip


def test_plot_without_matplotlib_says_how_to_install():
    code = ("import sys; sys.modules['matplotlib'] = None; import numpy as np; "
            "import hts_fast.weightwatcher as ww; "
            "w = ww.WeightWatcher(model={'a.weight': np.random.default_rng(0).random((30, 20))}); "
            "w.analyze(plot=True)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)  # fmt: skip
    assert result.returncode == 1
    assert 'ImportError: analyze(plot=True) needs matplotlib: pip install "hts_fast[report]"' in (
        result.stderr)  # fmt: skip


def test_failed_fit_layer_gets_the_esd_figures_without_a_scan(plt, tmp_path):
    """A zero matrix (no positive eigenvalue: the fit fails; 0.7.7 raises AttributeError on
    it) gets esd, esd2, esd3 and no xmin scan; its neighbour all five."""
    rng = np.random.default_rng(4)
    model = {"a.weight": np.zeros((30, 20)), "b.weight": rng.standard_normal((30, 20))}
    with quiet():
        details = hw.WeightWatcher(model=model).analyze(plot=True, savefig=str(tmp_path))
    assert list(details["status"]) == ["failed", "success"]
    files = pngs(tmp_path)
    assert sorted(files) == sorted(
        [f"ww.layer1.{k}.png" for k in ("esd", "esd2", "esd3")]
        + [f"ww.layer2.{k}.png" for k in ("esd", "esd2", "esd3", "esd4", "esd5")])  # fmt: skip
    assert all(data.startswith(PNG_SIGNATURE) for data in files.values())
    assert plt.get_fignums() == []
