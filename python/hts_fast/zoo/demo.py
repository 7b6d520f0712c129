"""``hts-fast demo-zoo DIR``: a small real model zoo, trained here in seconds, reproducibly.

Three-layer ReLU MLPs (64 -> width -> width -> 10) trained with plain minibatch SGD on
scikit-learn's bundled 8x8 digits (1,797 images; a fixed 80/20 split) for a grid of batch
sizes, widths and learning rates: the batch-size experiment of Martin & Mahoney's 5+1
phases paper in miniature (smaller batches regularize more, so layers grow heavier tails).
Each model is saved as ``DIR/<name>/model.safetensors`` (float32 weights ``fc1.weight`` ...,
biases ``fc1.bias`` ...), and ``DIR/labels.csv`` holds one row per model: ``path``,
``test_accuracy``, ``train_accuracy``, ``batch_size``, ``width``, ``lr``. Pure NumPy with a
fixed seed per model; needs scikit-learn only for the digits data
(``pip install "hts_fast[demo]"``).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

BATCH_SIZES = (4, 16, 64, 256)
WIDTHS = (128, 256)
LEARNING_RATES = (0.02, 0.05)
EPOCHS = 30


@dataclass(frozen=True)
class Digits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits() -> Digits:
    """scikit-learn's digits, scaled to [0, 1], split 80/20 with a fixed permutation."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        msg = 'the demo zoo needs scikit-learn for its digits data: pip install "hts_fast[demo]"'
        raise SystemExit(msg) from None
    data = sklearn_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    cut = int(0.8 * len(x))
    train, test = order[:cut], order[cut:]
    return Digits(x[train], y[train], x[test], y[test])


def _init(rng: np.random.Generator, fan_out: int, fan_in: int) -> np.ndarray:
    return (rng.standard_normal((fan_out, fan_in)) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def _forward(params: dict[str, np.ndarray], x: np.ndarray) -> list[np.ndarray]:
    """Activations of every layer, input first, logits last."""
    acts = [x]
    for k in (1, 2, 3):
        z = acts[-1] @ params[f"fc{k}.weight"].T + params[f"fc{k}.bias"]
        acts.append(np.maximum(z, 0) if k < 3 else z)
    return acts


def accuracy(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of ``x`` classified as ``y``."""
    return float((_forward(params, x)[-1].argmax(axis=1) == y).mean())


def train_mlp(
    digits: Digits, *, batch_size: int, width: int, lr: float, epochs: int = EPOCHS, seed: int = 0
) -> dict[str, np.ndarray]:
    """Train one MLP with minibatch SGD on softmax cross-entropy; return its parameters."""
    rng = np.random.default_rng(seed)
    params = {"fc1.weight": _init(rng, width, 64), "fc2.weight": _init(rng, width, width),
              "fc3.weight": _init(rng, 10, width)}  # fmt: skip
    for k, n in ((1, width), (2, width), (3, 10)):
        params[f"fc{k}.bias"] = np.zeros(n, np.float32)
    n = len(digits.x_train)
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            batch = order[start : start + batch_size]
            acts = _forward(params, digits.x_train[batch])
            logits = acts[-1] - acts[-1].max(axis=1, keepdims=True)
            probs = np.exp(logits)
            probs /= probs.sum(axis=1, keepdims=True)
            grad = probs
            grad[np.arange(len(batch)), digits.y_train[batch]] -= 1
            grad /= len(batch)
            for k in (3, 2, 1):
                w = params[f"fc{k}.weight"]
                grad_w, grad_b = grad.T @ acts[k - 1], grad.sum(axis=0)
                if k > 1:
                    grad = (grad @ w) * (acts[k - 1] > 0)
                params[f"fc{k}.weight"] = w - lr * grad_w
                params[f"fc{k}.bias"] = params[f"fc{k}.bias"] - lr * grad_b
    return params


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """Write float32 tensors as a .safetensors file (header JSON, then the raw data)."""
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}  # fmt: skip
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + b"".join(blobs))


def make_demo_zoo(folder: str | Path, *, epochs: int = EPOCHS) -> pd.DataFrame:
    """Train the grid of models into ``folder``; return (and write) the labels table."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    rows = []
    grid = itertools.product(BATCH_SIZES, WIDTHS, LEARNING_RATES)
    for seed, (batch_size, width, lr) in enumerate(grid):
        params = train_mlp(digits, batch_size=batch_size, width=width, lr=lr, epochs=epochs,
                           seed=seed)  # fmt: skip
        name = f"bs{batch_size:03d}_w{width}_lr{lr:g}"
        (out / name).mkdir(exist_ok=True)
        write_safetensors(out / name / "model.safetensors", params)
        rows.append({"path": name, "test_accuracy": accuracy(params, digits.x_test,
                                                              digits.y_test),
                     "train_accuracy": accuracy(params, digits.x_train, digits.y_train),
                     "batch_size": batch_size, "width": width, "lr": lr})  # fmt: skip
    labels = pd.DataFrame(rows)
    labels.to_csv(out / "labels.csv", index=False)
    return labels
