"""TempBalance and AlphaDecay (hts_fast.tempbalance): the hand-computed case of the reference,
the estimator against TempBalance's written out in NumPy, the maps, the parameter groups and
step() with a torch optimizer."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
from hts_fast.schedules.assign import multipliers

from .test_fixed_xmin import tempbalance_median_fit

torch = pytest.importorskip("torch", reason="TempBalance schedules torch models")
from hts_fast.tempbalance import AlphaDecay, TempBalance


def tempbalance_esd(weight: torch.Tensor, conv_norm: float = 0.5) -> np.ndarray:
    """TempBalance's ESD of a Linear or Conv2d weight, float64 NumPy SVDs: the conv kernel as
    its kh*kw matrices of out x in times sqrt(conv_norm), singular values pooled, squared."""
    w = weight.detach().double().numpy()
    if w.ndim == 4:
        out_ch, in_ch = w.shape[:2]
        mats = (w.reshape(out_ch, in_ch, -1) * math.sqrt(conv_norm)).transpose(2, 0, 1)
        sv = np.linalg.svd(mats, compute_uv=False).ravel()
    else:
        sv = np.linalg.svd(w, compute_uv=False)
    return np.sort(sv**2)


def with_spectrum(rows: int, cols: int, evals: np.ndarray, seed: int) -> torch.Tensor:
    """A rows x cols float64 matrix whose W^T W has the eigenvalues ``evals`` (min(rows, cols)
    of them): U diag(sqrt(evals)) V^T with random orthogonal U, V."""
    rng = np.random.default_rng(seed)
    k = min(rows, cols)
    u, _ = np.linalg.qr(rng.standard_normal((rows, k)))
    v, _ = np.linalg.qr(rng.standard_normal((cols, k)))
    return torch.from_numpy(u @ np.diag(np.sqrt(evals)) @ v.T)


def spectrum_with_alpha(alpha: float, size: int = 64) -> np.ndarray:
    """``size`` eigenvalues whose median-rule alpha is exactly ``alpha``: the lower half in
    (0, 1), the tail exp(c j) from xmin = 1 with c = 2 / ((alpha - 1)(n - 1))."""
    n = size - size // 2
    c = 2.0 / ((alpha - 1.0) * (n - 1))
    return np.concatenate([np.linspace(0.1, 0.9, size // 2), np.exp(c * np.arange(n))])


def mlp(widths: list[int], seed: int = 0) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(a, b) for a, b in itertools.pairwise(widths)]
    return torch.nn.Sequential(*layers).double()


def test_hand_computed_case_alphas_2_3_4_give_lrs_005_010_015():
    """Reference section 5: alphas [2, 3, 4], eta = 0.1, ratios [0.5, 1.5] -> [0.05, 0.10, 0.15]."""
    values = multipliers([2.0, 3.0, 4.0], ["a", "b", "c"], assign="linear", min_ratio=0.5,
                         max_ratio=1.5)  # fmt: skip
    np.testing.assert_allclose(0.1 * values, [0.05, 0.10, 0.15], rtol=1e-15)
    # end to end: three tuned 64x64 layers built with those alphas, between a first and a
    # last layer that TempBalance leaves out
    model = mlp([8, 64, 64, 64, 64, 10])
    with torch.no_grad():
        for k, alpha in zip((1, 2, 3), (2.0, 3.0, 4.0), strict=True):
            model[k].weight.copy_(with_spectrum(64, 64, spectrum_with_alpha(alpha), seed=k))
    tb = TempBalance(model, esd_method="svd")
    groups = tb.param_groups(0.1)
    assert [g["hts_fast_layer"] for g in groups] == ["1", "2", "3", ""]
    np.testing.assert_allclose([g["lr"] for g in groups], [0.05, 0.10, 0.15, 0.1], rtol=1e-12)
    table = tb.table
    np.testing.assert_allclose(table["alpha"][1:4], [2.0, 3.0, 4.0], rtol=1e-12)
    assert table["tuned"].tolist() == [False, True, True, True, False]
    assert "first" in table["reason"][0]
    assert "last" in table["reason"][4]


@pytest.mark.parametrize("esd_method", ["gram", "svd"])
@pytest.mark.parametrize("metric", ["alpha", "alphahat", "spectral_norm", "D", "norm"])
def test_metrics_equal_tempbalance_estimator(esd_method, metric):
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3), torch.nn.Conv2d(16, 32, 3), torch.nn.Conv2d(32, 24, 1),
        torch.nn.Flatten(), torch.nn.Linear(96, 80), torch.nn.Linear(80, 70),
        torch.nn.Linear(70, 10),
    )  # fmt: skip
    with torch.no_grad():  # heavier tails than the default init
        for p in model.parameters():
            p.copy_(torch.from_numpy(np.random.default_rng(p.numel()).standard_t(3, p.shape)))
    tb = TempBalance(model, metric=metric, esd_method=esd_method)
    groups = tb.param_groups(0.1)
    table = tb.table.set_index("name")
    expected, scores = {}, []
    for name in ("1", "4", "5"):  # "2", a 32x24 1x1 conv: 24 eigenvalues < eigs_thresh
        evals = tempbalance_esd(dict(model.named_modules())[name].weight)
        alpha, D, xmin = tempbalance_median_fit(evals)
        expected[name] = {"alpha": alpha, "D": D, "xmin": xmin, "spectral_norm": evals[-1],
                          "norm": evals.sum(), "alphahat": alpha * math.log10(evals[-1]),
                          "eigs_num": len(evals)}  # fmt: skip
        scores.append(expected[name][metric])
    rtol = 1e-9 if esd_method == "gram" else 1e-11
    for name, values in expected.items():
        for col, value in values.items():
            assert table.loc[name, col] == pytest.approx(value, rel=rtol), (name, col)
    assert table.loc["2", "reason"] == "24 eigenvalues, fewer than eigs_thresh = 50"
    low, high = min(scores), max(scores)
    lrs = [0.1 * (0.5 + (s - low) / (high - low)) for s in scores]
    np.testing.assert_allclose([g["lr"] for g in groups[:3]], lrs, rtol=1e-8)


@pytest.mark.parametrize("assign", ["linear", "sqrt", "log2", "step"])
def test_assign_maps_closed_form(assign):
    s = np.array([3.1, 2.2, 5.0, 2.2, 4.4])
    got = multipliers(s, list("abcde"), assign=assign, min_ratio=0.6, max_ratio=1.4)
    if assign == "linear":
        expected = [0.6 + 0.8 * (v - 2.2) / 2.8 for v in s]
    elif assign == "sqrt":
        expected = [5 * math.sqrt(v) / sum(math.sqrt(x) for x in s) for v in s]
    elif assign == "log2":
        expected = [5 * math.log2(v) / sum(math.log2(x) for x in s) for v in s]
    else:  # ranks: 2.2 (b) 0, 2.2 (d) 1, 3.1 2, 4.4 3, 5.0 4
        expected = [0.6 + 0.8 * k / 5 for k in (2, 0, 4, 1, 3)]
    np.testing.assert_allclose(got, expected, rtol=1e-14)
    if assign in ("sqrt", "log2"):
        assert got.mean() == pytest.approx(1.0, rel=1e-14)


def test_assign_fixes():
    names = ["a", "b"]
    # s_max = s_min: the midpoint, where TempBalance's np.interp over [s_min, s_max] gives
    # every layer the top of the range (not a division by zero)
    np.testing.assert_array_equal(
        multipliers([2.5, 2.5], names, assign="linear", min_ratio=0.6, max_ratio=1.6), [1.1, 1.1]
    )
    np.testing.assert_array_equal(np.interp([2.5, 2.5], [2.5, 2.5], [0.6, 1.6]), [1.6, 1.6])
    with pytest.raises(ValueError, match="layer 'b' has the score inf"):
        multipliers([2.0, math.inf], names, assign="linear", min_ratio=0.5, max_ratio=1.5)
    with pytest.raises(ValueError, match=r"log2.*layer 'a' has 0.5"):
        multipliers([0.5, 3.0], names, assign="log2", min_ratio=0.5, max_ratio=1.5)
    with pytest.raises(ValueError, match=r"sqrt.*layer 'b' has -1.0"):
        multipliers([0.5, -1.0], names, assign="sqrt", min_ratio=0.5, max_ratio=1.5)


class Block(torch.nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(cout)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout)
        self.shortcut = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, bias=False),
                                            torch.nn.BatchNorm2d(cout))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class Net(torch.nn.Module):
    """A small ResNet-shaped model with a LayerNorm and a weight tied between two layers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 56, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(56)
        self.block = Block(56, 64)
        self.fc1 = torch.nn.Linear(64, 64)
        self.norm = torch.nn.LayerNorm(64)
        self.fc2 = torch.nn.Linear(64, 64)
        self.fc3 = torch.nn.Linear(64, 64)
        self.fc3.weight = self.fc2.weight  # tied
        self.head = torch.nn.Linear(64, 10)
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.block(x).mean(dim=(2, 3))
        x = self.norm(torch.relu(self.fc1(x)))
        return self.head(self.fc3(torch.relu(self.fc2(x)))) * self.scale


@pytest.mark.parametrize("match", ["name", "order"])
@pytest.mark.parametrize("layernorm", [False, True])
def test_param_groups_cover_every_parameter_once(match, layernorm):
    model = Net()
    tb = TempBalance(model, batchnorm_match=match, layernorm=layernorm)
    groups = tb.param_groups(0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    by_name = {g["hts_fast_layer"]: {id(p) for p in g["params"]} for g in groups}
    tuned = ["block.conv1", "block.conv2", "block.shortcut.0", "fc1", "fc2", "fc3"]
    assert list(by_name) == [*tuned, ""]
    block = model.block
    assert {id(block.bn1.weight), id(block.bn1.bias)} <= by_name["block.conv1"]
    assert {id(block.bn2.weight), id(block.bn2.bias)} <= by_name["block.conv2"]
    bn_short = {id(p) for p in block.shortcut[1].parameters()}
    # by name "shortcut.1" does not become a conv's name; by order it follows shortcut.0
    assert bn_short <= (by_name["block.shortcut.0"] if match == "order" else by_name[""])
    assert {id(p) for p in model.bn1.parameters()} <= by_name[""]  # conv1 is not tuned
    norm = {id(p) for p in model.norm.parameters()}
    assert norm <= (by_name["fc1"] if layernorm else by_name[""])
    assert by_name["fc3"] == {id(model.fc3.bias)}  # the tied weight went to fc2
    assert id(model.fc2.weight) in by_name["fc2"]
    torch.optim.SGD(groups, lr=0.1)  # a valid set of groups


def test_reading_the_spectra_leaves_spectral_norm_state_alone():
    """In training mode, reading a spectral_norm layer's weight runs a power-iteration step
    (its _u/_v buffers change); TempBalance reads it in eval mode, so computing the spectra
    changes no state, and the module is back in training mode."""
    from torch.nn.utils.parametrizations import spectral_norm

    torch.manual_seed(1)
    model = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(2)],
                                spectral_norm(torch.nn.Linear(64, 64)),
                                *[torch.nn.Linear(64, 64) for _ in range(2)])  # fmt: skip
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    tb = TempBalance(model)
    tb.param_groups(0.1)
    tb.recompute()
    assert model.training
    assert model[2].training
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    with torch.no_grad():  # the check can fail: a read in training mode does move them
        model[2].weight  # noqa: B018
    assert not torch.equal(model.state_dict()["2.parametrizations.weight.0._u"],
                           state["2.parametrizations.weight.0._u"])  # fmt: skip


def test_parametrized_layers_get_their_own_rate():
    """weight_norm / spectral_norm keep a layer's weight in parametrizations.weight.original*,
    submodules of the layer: those parameters are in the layer's group, and the layer's
    spectrum is that of its effective weight."""
    from torch.nn.utils.parametrizations import spectral_norm, weight_norm

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 64), weight_norm(torch.nn.Linear(64, 64)),
        spectral_norm(torch.nn.Linear(64, 64)), torch.nn.Linear(64, 64), torch.nn.Linear(64, 8),
    )  # fmt: skip
    with torch.no_grad():  # row norms far from the direction's: a spectrum of its own
        model[1].parametrizations.weight.original0.copy_(torch.linspace(0.2, 3.0, 64)[:, None])
    model.eval()  # spectral_norm's power iteration holds still
    tb = TempBalance(model)
    groups = tb.param_groups(0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    by_layer = {g["hts_fast_layer"]: sorted(names[id(p)] for p in g["params"]) for g in groups}
    assert by_layer == {
        "1": ["1.bias", "1.parametrizations.weight.original0",
              "1.parametrizations.weight.original1"],
        "2": ["2.bias", "2.parametrizations.weight.original"],
        "3": ["3.bias", "3.weight"],
        "": ["0.bias", "0.weight", "4.bias", "4.weight"],
    }  # fmt: skip
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    with torch.no_grad():
        alphas = [tempbalance_median_fit(tempbalance_esd(model[k].weight))[0] for k in (1, 2, 3)]
        original = tempbalance_median_fit(
            tempbalance_esd(model[1].parametrizations.weight.original1))[0]  # fmt: skip
    assert abs(original - alphas[0]) > 0.05  # the effective weight is what counts
    np.testing.assert_allclose(tb.table["alpha"][1:4], alphas, rtol=1e-9)
    low, high = min(alphas), max(alphas)
    expected = [0.1 * (0.5 + (a - low) / (high - low)) for a in alphas]
    np.testing.assert_allclose([g["lr"] for g in groups[:3]], expected, rtol=1e-12)
    optimizer = torch.optim.SGD(groups, lr=0.1)
    tb.step(optimizer, 0.05)
    np.testing.assert_allclose([g["lr"] for g in optimizer.param_groups[:3]],
                               np.array(expected) / 2, rtol=1e-12)  # fmt: skip


def test_step_with_sgd_sets_each_group_from_the_current_weights():
    model = Net()
    tb = TempBalance(model)
    optimizer = torch.optim.SGD(tb.param_groups(0.1), lr=0.1, momentum=0.9)
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 10, (16,))
    for _ in range(5):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    tb.step(optimizer, 0.03)
    modules = dict(model.named_modules())
    names = [g["hts_fast_layer"] for g in optimizer.param_groups]
    alphas = [tempbalance_median_fit(tempbalance_esd(modules[n].weight))[0] for n in names[:-1]]
    low, high = min(alphas), max(alphas)
    expected = [0.03 * (0.5 + (a - low) / (high - low)) for a in alphas]
    np.testing.assert_allclose([g["lr"] for g in optimizer.param_groups[:-1]], expected,
                               rtol=1e-6)  # fmt: skip
    assert optimizer.param_groups[-1]["lr"] == 0.03
    table = tb.table.set_index("name")
    np.testing.assert_allclose(table.loc[names[:-1], "alpha"], alphas, rtol=1e-6)
    np.testing.assert_allclose(table.loc[names[:-1], "lr"], expected, rtol=1e-6)
    assert table.loc["conv1", "lr"] == 0.03
    assert not table.loc["conv1", "tuned"]


def test_interval_holds_the_multipliers_between_recomputations():
    model = Net()
    tb = TempBalance(model, interval=3)
    optimizer = torch.optim.SGD(tb.param_groups(0.1), lr=0.1)
    first = tb.multipliers
    with torch.no_grad():
        model.block.conv1.weight.mul_(torch.linspace(0.1, 3, 64)[:, None, None, None])
    tb.step(optimizer, 0.05)
    tb.step(optimizer, 0.04)  # calls 1 and 2: held, only the global rate changes
    assert tb.multipliers == first
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.04 * first["block.conv1"])
    tb.step(optimizer, 0.03)  # call 3: recomputed
    assert tb.multipliers != first
    held = tb.multipliers
    tb.step(optimizer, 0.02, recompute=False)
    assert tb.multipliers == held


def test_a_layer_without_finite_alpha_is_held():
    """A flat spectrum (orthogonal weights): TempBalance's alpha is huge; here the layer keeps
    its multiplier (1 at first) and the other layers use the whole range."""
    model = mlp([8, 64, 64, 64, 64, 10])
    with torch.no_grad():
        model[1].weight.copy_(with_spectrum(64, 64, np.full(64, 2.0), seed=1))
        model[2].weight.copy_(with_spectrum(64, 64, spectrum_with_alpha(2.0), seed=2))
        model[3].weight.copy_(with_spectrum(64, 64, spectrum_with_alpha(5.0), seed=3))
    # equal up to rounding: TempBalance's alpha is about 1e15
    assert tempbalance_median_fit(tempbalance_esd(model[1].weight))[0] > 1e12
    tb = TempBalance(model, esd_method="svd")
    groups = tb.param_groups(0.1)
    np.testing.assert_allclose([g["lr"] for g in groups[:3]], [0.1, 0.05, 0.15], rtol=1e-9)
    row = tb.table.set_index("name").loc["1"]
    assert math.isnan(row["alpha"])
    assert row["reason"].startswith("held at its previous value")
    assert "all equal xmin" in row["reason"]


def orthogonal_model(dtype: torch.dtype) -> torch.nn.Sequential:
    """Six Linear(64, 64), the third orthogonal, cast to ``dtype`` after initialisation
    (float64 here is a model initialised in float32 and cast)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(6)])
    torch.nn.init.orthogonal_(model[2].weight)
    return model.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_an_orthogonal_layer_is_flat_to_its_precision_and_held(dtype):
    """torch's orthogonal_ is flat only to the storage precision (and float32's, where it
    orthogonalises): TempBalance's alpha is ~3e6 (float32) or ~500 (bf16) and would take
    the top of the range. Here it is a failed fit, held at the base rate, and the three
    other tuned layers span the range by the linear map of their own alphas."""
    model = orthogonal_model(dtype)
    reference = [tempbalance_median_fit(tempbalance_esd(layer.weight))[0] for layer in model]
    assert reference[2] > 100  # what TempBalance's estimator makes of it
    tb = TempBalance(model)
    groups = tb.param_groups(0.1)
    assert [g["hts_fast_layer"] for g in groups] == ["1", "2", "3", "4", ""]
    table = tb.table
    flat = table.loc[2]
    assert np.isnan(flat[["alpha", "D", "xmin"]].to_numpy(float)).all()
    assert flat["num_pl_spikes"] == 0
    assert flat["reason"].startswith("held at its previous value: the spectrum is flat")
    assert "to the weights' precision" in flat["reason"]
    assert groups[1]["lr"] == 0.1  # held: multiplier 1 at the first computation
    scored = [1, 3, 4]
    alphas = table["alpha"][scored].to_numpy()
    np.testing.assert_allclose(alphas, [reference[k] for k in scored], rtol=1e-9)
    low, high = alphas.min(), alphas.max()
    expected = 0.1 * (0.5 + (alphas - low) / (high - low))
    np.testing.assert_allclose([groups[k]["lr"] for k in (0, 2, 3)], expected, rtol=1e-12)
    assert (min(expected), max(expected)) == pytest.approx((0.05, 0.15))
    assert 0.05 < float(np.median(expected)) < 0.15


def test_flat_tolerance_and_storage_eps():
    from hts_fast.schedules.estimate import flat_tolerance, storage_eps

    assert storage_eps(torch.zeros(2, dtype=torch.bfloat16))[0] == 2.0**-7
    assert storage_eps(torch.zeros(2, dtype=torch.float16))[0] == 2.0**-10
    assert storage_eps(np.zeros(2, dtype=np.float32))[0] == 2.0**-23
    assert storage_eps(torch.zeros(2, dtype=torch.float64))[0] == 2.0**-52
    eps, what = storage_eps(torch.zeros(2, dtype=torch.int32))
    assert eps == 2.0**-52
    assert "not a float type" in what
    assert flat_tolerance(2.0**-7, 64) == 4 * 2.0**-7 + 8 * 8 * 2.0**-23


def test_a_gaussian_bf16_layer_is_not_flat():
    from hts_fast.schedules.estimate import Estimator, layer_metrics

    torch.manual_seed(1)
    weight = torch.randn(256, 256).to(torch.bfloat16)
    (row,) = layer_metrics([("g", weight)], ["linear"], Estimator())
    expected = tempbalance_median_fit(tempbalance_esd(weight))
    assert row["reason"] == ""
    np.testing.assert_allclose([row["alpha"], row["D"], row["xmin"]], expected, rtol=1e-9)


def test_the_device_path_flags_a_flat_layer_too(monkeypatch):
    """layer_metrics on the CUDA route (device eigensolver replaced by CPU torch, as in the
    orchestration test below): the orthogonal float32 layer is a failed fit there too."""
    from hts_fast.schedules import estimate
    from hts_fast.spectra import gpu

    def cpu_esd_batch(matrices, *, dtype="float64"):
        return [torch.linalg.eigvalsh(w.to(torch.float64).T @ w.to(torch.float64)).clamp_min(0)
                for w in matrices]  # fmt: skip

    monkeypatch.setattr(gpu, "esd_batch", cpu_esd_batch)
    monkeypatch.setattr(estimate, "_where", lambda weights: "cuda")
    model = orthogonal_model(torch.float32)
    weights = [(str(k), model[k].weight) for k in (1, 2, 3)]
    rows = estimate.layer_metrics(weights, ["linear"] * 3, estimate.Estimator())
    assert math.isnan(rows[1]["alpha"])
    assert rows[1]["num_pl_spikes"] == 0
    assert "flat to the weights' precision" in rows[1]["reason"]
    for k in (0, 2):
        expected = tempbalance_median_fit(tempbalance_esd(weights[k][1]))[0]
        assert rows[k]["alpha"] == pytest.approx(expected, rel=1e-9)


def test_one_tuned_layer_gets_the_midpoint():
    tb = TempBalance(mlp([8, 64, 64, 10]), lr_min_ratio=0.6, lr_max_ratio=1.8)
    groups = tb.param_groups(0.1)
    assert groups[0]["lr"] == pytest.approx(0.12)


def test_the_table_exists_when_no_layer_is_tuned():
    """First, last, and one below eigs_thresh: nothing tuned, every parameter at the global
    rate, and the table lists the three layers with their reasons."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.Linear(20, 30),
                                torch.nn.Linear(30, 5))  # fmt: skip
    tb = TempBalance(model)
    with pytest.raises(RuntimeError, match="empty until the spectra are computed"):
        tb.table  # noqa: B018 - before any computation
    groups = tb.param_groups(0.1)
    assert [(g["hts_fast_layer"], len(g["params"]), g["lr"]) for g in groups] == [("", 6, 0.1)]
    optimizer = torch.optim.SGD(groups, lr=0.1)
    tb.step(optimizer, 0.05)
    assert optimizer.param_groups[0]["lr"] == 0.05
    table = tb.table
    assert table["name"].tolist() == ["0", "1", "2"]
    assert not table["tuned"].any()
    assert table["lr"].tolist() == [0.05, 0.05, 0.05]
    assert table["eigs_num"].tolist() == [10, 20, 5]
    assert table["alpha"].isna().all()
    assert "first" in table["reason"][0]
    assert table["reason"][1] == "20 eigenvalues, fewer than eigs_thresh = 50"
    assert "last" in table["reason"][2]


def test_alpha_decay_schedules_weight_decay():
    model = mlp([8, 64, 64, 64, 64, 10])
    with torch.no_grad():
        for k, alpha in zip((1, 2, 3), (2.0, 3.0, 4.0), strict=True):
            model[k].weight.copy_(with_spectrum(64, 64, spectrum_with_alpha(alpha), seed=k))
    ad = AlphaDecay(model, esd_method="svd")
    optimizer = torch.optim.AdamW(ad.param_groups(1e-3, 0.1))
    wds = [g["weight_decay"] for g in optimizer.param_groups]
    np.testing.assert_allclose(wds, [0.0666, 0.0666 + 0.2334 / 2, 0.3, 0.1], rtol=1e-9)
    assert {g["lr"] for g in optimizer.param_groups} == {1e-3}
    ad.step(optimizer, 0.01, lr=5e-4)
    np.testing.assert_allclose([g["weight_decay"] for g in optimizer.param_groups],
                               np.array(wds) / 10, rtol=1e-9)  # fmt: skip
    assert {g["lr"] for g in optimizer.param_groups} == {5e-4}
    assert "weight_decay" in ad.table.columns
    assert "lr" not in ad.table.columns


@pytest.mark.parametrize("xmin", ["fit", "peak"])
def test_other_xmin_rules_equal_the_engine_fits(xmin):
    import hts_fast
    from hts_fast.fits.tpl_search import peak_xmin_range

    torch.manual_seed(3)
    model = mlp([8, 120, 100, 10])
    with torch.no_grad():
        model[1].weight.copy_(torch.from_numpy(np.random.default_rng(4).standard_t(3, (100, 120))))
    tb = TempBalance(model, xmin=xmin, esd_method="svd")
    tb.recompute()
    row = tb.table.set_index("name").loc["1"]
    evals = tempbalance_esd(model[1].weight)
    if xmin == "fit":
        fit = hts_fast.fit_powerlaw(evals)
        assert row["alpha"] == pytest.approx(fit.alpha, rel=1e-10)
        assert row["xmin"] == pytest.approx(fit.xmin, rel=1e-10)
    else:
        curve = hts_fast.powerlaw_curve(evals[evals > 1e-5])
        low, high = peak_xmin_range(evals)
        inside = (curve.xmins >= low) & (curve.xmins < high) & (curve.alphas > 1)
        k = np.flatnonzero(inside)[np.argmin(curve.Ds[inside])]
        assert row["alpha"] == pytest.approx(curve.alphas[k], rel=1e-10)
        assert low <= row["xmin"] < high


def test_median_fit_in_torch_equals_numpy():
    """The device path's median fit, run here on CPU tensors."""
    from hts_fast.fits.fixed_xmin import fit_median_xmin, reindexed_note
    from hts_fast.schedules.estimate import median_fit_torch

    rng = np.random.default_rng(5)
    cases = [rng.pareto(2.0, 301) + 0.2, np.concatenate([np.zeros(60), rng.pareto(3.0, 40) + 1]),
             np.concatenate([np.zeros(3), rng.pareto(3.0, 40) + 1]), np.full(50, 3.0),
             np.zeros(8)]  # fmt: skip
    for evals in cases:
        for filter_zeros in (False, True):
            expected = fit_median_xmin(evals, filter_zeros=filter_zeros)
            got = median_fit_torch(torch.from_numpy(np.sort(evals)), xmin_pos=2,
                                   filter_zeros=filter_zeros).numpy()  # fmt: skip
            if expected.status == "failed":
                assert got[4] == 0
                assert np.isnan(got[0])
                continue
            np.testing.assert_allclose(got[:4], [expected.alpha, expected.D, expected.xmin,
                                                 expected.num_pl_spikes], rtol=1e-12)  # fmt: skip
            assert got[4] == 1
            # the re-indexing note: the host's reason, rebuilt from the device's count
            if expected.reason:
                assert reindexed_note(len(evals) // 2, 1e-5, int(got[5])) == expected.reason
            else:
                assert got[5] == 0


def test_peak_selection_in_torch_equals_numpy():
    """The device path's xmin_peak choice from an all-candidate scan, on CPU tensors."""
    import hts_fast
    from hts_fast.schedules.estimate import _peak_fit, peak_select_torch

    evals = np.sort(np.random.default_rng(6).pareto(2.5, 400) + 0.05)
    curve = hts_fast.powerlaw_curve(evals)
    alphas = np.full(len(evals), np.nan)
    ds = np.full(len(evals), np.nan)
    alphas[: len(curve.alphas)], ds[: len(curve.Ds)] = curve.alphas, curve.Ds
    assert np.array_equal(curve.xmins, evals[: len(curve.xmins)])
    got = peak_select_torch(*(torch.from_numpy(a) for a in (evals, alphas, ds))).numpy()
    expected = _peak_fit(evals, None)
    np.testing.assert_allclose(got[:4], [expected.alpha, expected.D, expected.xmin,
                                         expected.num_pl_spikes], rtol=1e-12)  # fmt: skip


def test_device_path_orchestration_on_cpu_tensors(monkeypatch):
    """The CUDA path (slicing, pooling, conv scaling, the torch median fit, the one host copy)
    with the device eigensolver replaced by the same Gram + eigvalsh on CPU tensors: equal to
    the host path. The GPU test below runs the real thing."""
    from hts_fast.schedules import estimate
    from hts_fast.spectra import gpu

    def cpu_esd_batch(matrices, *, dtype="float64"):
        out = []
        for w in matrices:
            a = w.to(torch.float64)
            g = a.T @ a if a.shape[0] >= a.shape[1] else a @ a.T
            out.append(torch.linalg.eigvalsh(g).clamp_min(0))
        return out

    monkeypatch.setattr(gpu, "esd_batch", cpu_esd_batch)
    model = Net()
    tb = TempBalance(model)
    weights = [(layer.name, layer.module.weight) for layer in tb.layers if layer.tuned]
    kinds = [layer.kind for layer in tb.layers if layer.tuned]
    device = estimate._device_metrics(weights, kinds, tb.estimator)
    host = estimate._host_metrics(weights, kinds, tb.estimator)
    for d, h in zip(device, host, strict=True):
        for key in ("alpha", "D", "xmin", "spectral_norm", "norm"):
            assert d[key] == pytest.approx(h[key], rel=1e-9), key
        assert (d["num_pl_spikes"], d["eigs_num"]) == (h["num_pl_spikes"], h["eigs_num"])
        assert d["reason"] == h["reason"]
    # a rank-20 layer of 64: the median index falls on a zero and is counted above them,
    # and the device path gives the host's note
    torch.manual_seed(3)
    low = (torch.randn(64, 20) @ torch.randn(20, 64)).to(torch.float64)
    kinds = ["linear"]
    device = estimate._device_metrics([("low", low)], kinds, tb.estimator)
    host = estimate._host_metrics([("low", low)], kinds, tb.estimator)
    assert "index counted among the 20 eigenvalues above it" in host[0]["reason"]
    assert device[0]["reason"] == host[0]["reason"]
    assert device[0]["alpha"] == pytest.approx(host[0]["alpha"], rel=1e-9)


@pytest.mark.gpu
@pytest.mark.parametrize("xmin", ["median", "fit", "peak"])
def test_cuda_model_equals_cpu(xmin):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: the GPU path of TempBalance needs one")
    import hts_fast

    if not hts_fast.gpu.available():
        pytest.skip(f"no GPU backend: {hts_fast.gpu.status().get('reason')}")
    model = Net().double()
    cpu = TempBalance(model, xmin=xmin)
    cpu.recompute()
    gpu = TempBalance(model.cuda(), xmin=xmin)
    gpu.recompute()
    columns = ["alpha", "D", "xmin", "spectral_norm", "norm", "multiplier"]
    np.testing.assert_allclose(gpu.table[columns].to_numpy(float),
                               cpu.table[columns].to_numpy(float), rtol=1e-8)  # fmt: skip


def test_bad_input():
    model = Net()
    with pytest.raises(TypeError, match=r"torch.nn.Module"):
        TempBalance({"w": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="metric must be"):
        TempBalance(model, metric="beta")
    with pytest.raises(ValueError, match="xmin must be"):
        TempBalance(model, xmin="middle")
    with pytest.raises(ValueError, match="min ratio <= max ratio"):
        TempBalance(model, lr_min_ratio=1.5, lr_max_ratio=0.5)
    with pytest.raises(ValueError, match="interval"):
        TempBalance(model, interval=0)
    tb = TempBalance(model)
    with pytest.raises(RuntimeError, match="call param_groups"):
        _ = tb.table
    with pytest.raises(ValueError, match="lr must be a finite number"):
        tb.param_groups(-1.0)
    plain = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"no group for the tuned layer 'block.conv1'"):
        tb.step(plain, 0.1)
    with torch.no_grad():
        model.fc1.weight[0, 0] = math.nan
    with pytest.raises(ValueError, match=r"layer 'fc1'.*NaN"):
        tb.recompute()


def test_weights_on_another_device_name_the_layer():
    model = torch.nn.Sequential(*(torch.nn.Linear(64, 64, device="meta") for _ in range(3)))
    with pytest.raises(ValueError, match=r"layer '1' has its weight on 'meta'"):
        TempBalance(model).recompute()


def test_importing_the_schedules_does_not_import_torch():
    code = ("import sys, hts_fast, hts_fast.tempbalance, pandas as pd\n"
            "hts_fast.layerwise_ratios(pd.DataFrame({'name': ['a.0.q', 'a.1.q'], "
            "'alpha': [2.0, 3.0], 'params': [4, 4]}), 0.5)\n"
            "print('torch' in sys.modules)\n")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    assert out.strip() == "False"
