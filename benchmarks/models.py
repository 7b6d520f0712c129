"""Benchmark models, built in code (weights are heavy-tailed random, float32)."""

from __future__ import annotations

import numpy as np

from .conftest import SIZES


def _t(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (rng.standard_t(4.0, size=shape) * 0.02).astype(np.float32)


def transformer_state(blocks: int = 12, d: int = 768, mlp: int = 3072) -> dict[str, np.ndarray]:
    """A BERT-base-shaped state dict: embeddings, then per block q, k, v, o, MLP in/out."""
    rng = np.random.default_rng(12)
    state = {
        "embeddings.word_embeddings.weight": _t(rng, 30522, d),
        "embeddings.position_embeddings.weight": _t(rng, 512, d),
    }
    for b in range(blocks):
        p = f"encoder.layer.{b}"
        for name in ("query", "key", "value"):
            state[f"{p}.attention.self.{name}.weight"] = _t(rng, d, d)
        state[f"{p}.attention.output.dense.weight"] = _t(rng, d, d)
        state[f"{p}.intermediate.dense.weight"] = _t(rng, mlp, d)
        state[f"{p}.output.dense.weight"] = _t(rng, d, mlp)
    return state


def resnet_state() -> dict[str, np.ndarray]:
    """ResNet-18 conv shapes (out, in, kh, kw) plus the classifier."""
    rng = np.random.default_rng(18)
    state = {"conv1.weight": _t(rng, 64, 3, 7, 7)}
    stages = [(64, 64), (128, 64), (256, 128), (512, 256)]
    for s, (out_ch, in_ch) in enumerate(stages, start=1):
        state[f"layer{s}.0.conv1.weight"] = _t(rng, out_ch, in_ch, 3, 3)
        state[f"layer{s}.0.conv2.weight"] = _t(rng, out_ch, out_ch, 3, 3)
        if out_ch != in_ch:
            state[f"layer{s}.0.downsample.0.weight"] = _t(rng, out_ch, in_ch, 1, 1)
        state[f"layer{s}.1.conv1.weight"] = _t(rng, out_ch, out_ch, 3, 3)
        state[f"layer{s}.1.conv2.weight"] = _t(rng, out_ch, out_ch, 3, 3)
    state["fc.weight"] = _t(rng, 1000, 512)
    return state


def cifar_resnet_state(blocks_per_stage: int = 9) -> dict[str, np.ndarray]:
    """CIFAR ResNet-56 conv shapes (16/32/64 channels, 3x3), the zoo models of HT-SR papers."""
    rng = np.random.default_rng(56)
    state = {"conv1.weight": _t(rng, 16, 3, 3, 3)}
    in_ch = 16
    for s, out_ch in enumerate((16, 32, 64), start=1):
        for b in range(blocks_per_stage):
            state[f"layer{s}.{b}.conv1.weight"] = _t(rng, out_ch, in_ch, 3, 3)
            state[f"layer{s}.{b}.conv2.weight"] = _t(rng, out_ch, out_ch, 3, 3)
            in_ch = out_ch
    state["fc.weight"] = _t(rng, 10, 64)
    return state


def models() -> dict[str, object]:
    """name -> zero-argument loader of the model's state dict."""
    from tests.packaged_model import load_minilm

    if SIZES == "full":
        return {"minilm": load_minilm, "transformer12": transformer_state,
                "resnet18": resnet_state, "cifar_resnet56": cifar_resnet_state}  # fmt: skip
    return {"minilm": load_minilm, "transformer2": lambda: transformer_state(blocks=2, d=256,
                                                                          mlp=1024)}  # fmt: skip
