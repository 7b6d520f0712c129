"""A tensor on disk: shape and dtype known from the file's header, data read on demand."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


class TensorReadError(ValueError):
    """A checkpoint, or a tensor in it, cannot be read; the message names the file (and the
    tensor). Raised when a file is opened for any damage to it (the readers validate the
    whole file first), and when a tensor is loaded only for content that is not read (an
    unsupported dtype) or a file changed since it was opened."""


class LazyTensor:
    """A named tensor whose data is loaded (memory-mapped where possible) only when needed.

    ``shape`` and ``dtype`` come from the file header, so layer planning reads no data.
    ``np.asarray(t)`` or ``t.load()`` returns the data as a NumPy array; a tensor the file
    cannot provide raises TensorReadError naming the file and tensor.
    """

    def __init__(
        self, name: str, shape: tuple[int, ...], dtype: str, loader: Callable[[], np.ndarray],
        source: str, identity: Any = None, layer_type: str | None = None,
        layout: str | None = None,
    ) -> None:  # fmt: skip
        #: equal for two tensors that are the same bytes of the same file (tied weights)
        self.identity = identity
        #: the layer type the file itself states ("dense", "conv1d", "conv2d", "embedding"),
        #: e.g. from a Keras config; None when only the name and shape can tell
        self.layer_type = layer_type
        #: the axis order the format fixes for a 4-D kernel: "oihw" (PyTorch's: out, in, kh,
        #: kw; torch zip, ONNX, and Keras files once read); None when the file does not say
        self.layout = layout
        self.name = name
        self.shape = shape
        self.dtype = dtype
        self.source = source
        self._loader = loader

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def load(self) -> np.ndarray:
        """Return the tensor's data (a read-only memory map when no conversion is needed)."""
        return self._loader()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self.load()
        return array if dtype is None else array.astype(dtype)

    def __repr__(self) -> str:
        return f"LazyTensor({self.name!r}, shape={self.shape}, dtype={self.dtype}, {self.source})"


def failing_tensor(name: str, shape: tuple[int, ...], dtype: str, source: str,
                   reason: str) -> LazyTensor:  # fmt: skip
    """A LazyTensor whose header entry is broken: loading raises with ``reason``."""

    def fail() -> np.ndarray:
        raise TensorReadError(f"{source}: tensor {name!r}: {reason}")

    return LazyTensor(name, shape, dtype, fail, source)
