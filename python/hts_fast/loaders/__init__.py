"""Checkpoint readers: weights straight from files, one tensor at a time, no torch needed."""

from __future__ import annotations

from .checkpoint import checkpoint_format, checkpoint_tensors, is_checkpoint_path
from .lazy import LazyTensor, TensorReadError
from .safetensors_files import SafetensorsFile

__all__ = [
    "LazyTensor",
    "SafetensorsFile",
    "TensorReadError",
    "checkpoint_format",
    "checkpoint_tensors",
    "is_checkpoint_path",
]
