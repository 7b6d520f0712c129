"""analyze(device=...): the option's checks here; GPU runs are in the gpu-marked tests."""

from __future__ import annotations

import hts_fast
import numpy as np
import pandas as pd
import pytest
from hts_fast.analysis import device as device_mod


def _model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "fc.weight": rng.standard_t(3.0, (80, 40)),
        "conv.weight": rng.normal(size=(8, 4, 3, 3)),
    }


def test_cuda_with_host_weights_raises_saying_why():
    with pytest.raises(RuntimeError, match="weights on a GPU"):
        hts_fast.analyze(_model(), device="cuda", esd_method="gram")


def test_auto_on_host_weights_is_the_cpu_result():
    auto = hts_fast.analyze(_model(), device="auto", esd_method="gram")
    pd.testing.assert_frame_equal(auto, hts_fast.analyze(_model(), esd_method="gram"))


@pytest.mark.parametrize(
    ("options", "message"),
    [({"device": "tpu"}, "device must be"), ({"device": "cuda", "esd_method": "svd"}, "esd_method='gram'"),
     ({"device": "auto", "compat": "weightwatcher-0.7.7"}, "device='cpu'")],
)  # fmt: skip
def test_bad_combinations(options, message):
    with pytest.raises(ValueError, match=message):
        hts_fast.analyze(_model(), **options)


def test_device_of_arrays():
    assert not device_mod.on_gpu(np.zeros((2, 2)))
    torch = pytest.importorskip("torch")
    assert not device_mod.on_gpu(torch.zeros(2, 2))


@pytest.mark.gpu
def test_cuda_equals_cpu_gram_on_a_gpu_model():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = torch.nn.Sequential(torch.nn.Linear(64, 200), torch.nn.Conv2d(8, 16, 3))
    cpu = hts_fast.analyze(model, esd_method="gram")
    gpu = hts_fast.analyze(model.cuda(), device="cuda", esd_method="gram")
    columns = ["alpha", "xmin", "D", "lambda_max", "norm", "log_norm", "stable_rank", "entropy"]
    np.testing.assert_allclose(gpu[columns].to_numpy(float), cpu[columns].to_numpy(float),
                               rtol=1e-9)  # fmt: skip
