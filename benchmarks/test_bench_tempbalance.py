"""One TempBalance step on a CIFAR ResNet-18 (TempBalance's own benchmark model): hts_fast's
TempBalance.recompute() vs TempBalance's estimator (torch.linalg.svdvals per layer plus its
median fit, written out below) and vs WeightWatcher 0.7.7's analyze() on the same model, in
the same process. On a GPU (when there is one) both torch paths run there.

    python -m pytest benchmarks/test_bench_tempbalance.py --benchmark-only
"""

from __future__ import annotations

import contextlib
import io
import logging
import math

import numpy as np
import pytest

from .conftest import quiet_call, record

torch = pytest.importorskip("torch", reason="TempBalance schedules torch models")
from hts_fast.tempbalance import TempBalance

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


class BasicBlock(torch.nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(cout)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout)
        self.shortcut = torch.nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, stride, bias=False),
                                                torch.nn.BatchNorm2d(cout))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet18(torch.nn.Module):
    """The CIFAR ResNet-18 of TempBalance's experiments (3x3 stem, 64-512 channels, 10
    classes; 11.2 M parameters), random weights."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(64)
        blocks, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = torch.nn.Sequential(*blocks)
        self.linear = torch.nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(torch.relu(self.bn1(self.conv1(x))))
        return self.linear(x.mean(dim=(2, 3)))


def tempbalance_estimator(model: torch.nn.Module) -> list[float]:
    """TempBalance's per-epoch ESD pass, as its code does it: every Conv2d/Linear, the conv
    kernel as kh*kw matrices times sqrt(0.5), one batched float32 svdvals per layer on the
    weights' device, eigenvalues sorted, the median-rule alpha; alphas of all layers."""
    alphas = []
    for module in model.modules():
        if not isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            continue
        matrix = module.weight.detach().clone()
        if isinstance(module, torch.nn.Conv2d):
            matrix = torch.flatten(matrix, start_dim=2) * math.sqrt(0.5)
            matrix = matrix.transpose(1, 2).transpose(0, 1)
        eigs = torch.square(torch.linalg.svdvals(matrix).flatten())
        eigs, _ = torch.sort(eigs, descending=False)
        i = int(len(eigs) / 2)
        xmin = eigs[i]
        n = float(len(eigs) - i)
        seq = torch.arange(n, device=eigs.device)
        alpha = 1 + n / torch.sum(torch.log(eigs[i:] / xmin))
        D = torch.max(torch.abs(1 - (eigs[i:] / xmin) ** (-alpha + 1) - seq / n))
        alphas.append(alpha.item() + 0 * D.item())
    return alphas


def _model(device: str) -> torch.nn.Module:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    torch.manual_seed(18)
    return ResNet18().to(device)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize("device", DEVICES)
def test_tempbalance_step_hts_fast(benchmark, device):
    model = _model(device)
    tb = TempBalance(model)

    def run():
        tb.recompute()
        _sync(device)

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    record(benchmark, f"tempbalance step resnet18 {device}", "hts_fast.TempBalance")
    # the same alphas as TempBalance's estimator (float32 svdvals vs our float64 Gram)
    table = tb.table
    theirs = dict(zip([n for n, m in model.named_modules()
                       if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))],
                      tempbalance_estimator(model), strict=True))  # fmt: skip
    tuned = table[table["tuned"]]
    np.testing.assert_allclose(tuned["alpha"], [theirs[n] for n in tuned["name"]], rtol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_tempbalance_step_own_estimator(benchmark, device):
    model = _model(device)

    def run():
        tempbalance_estimator(model)
        _sync(device)

    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    record(benchmark, f"tempbalance step resnet18 {device}", "TempBalance svdvals+median")


def test_tempbalance_step_weightwatcher(benchmark):
    ww = pytest.importorskip("weightwatcher")
    logging.getLogger("weightwatcher").setLevel(logging.CRITICAL)
    model = _model("cpu")

    def run():
        with contextlib.redirect_stdout(io.StringIO()):
            return quiet_call(ww.WeightWatcher(model=model).analyze)

    benchmark.pedantic(run, rounds=2, iterations=1)
    record(benchmark, "tempbalance step resnet18 cpu", "weightwatcher.analyze")
