"""Reshaping layers (Keras ``Reshape``, ``Flatten``, ``Permute``; ``RepeatVector`` lives in core.py).

All three only move numbers around, so backward undoes the move on ``g = dL/dy``:

* ``Reshape(target_shape)``: ``(B, *s) -> (B, *target_shape)`` (one entry may be -1); ``dL/dx = reshape(g, x.shape)``.
* ``Flatten()``: ``(B, d_1, ..., d_k) -> (B, d_1 ... d_k)``; ``dL/dx = reshape(g, x.shape)``.
* ``Permute(dims)``: ``y = transpose(x, (0, *dims))`` with 1-based ``dims``; ``dL/dx = transpose(g, inverse)``.

They do not support masking (as in Keras): the output carries no mask.
"""
from __future__ import annotations

import math

import numpy as np

from .base import Layer, format_shape, register
from .core import RepeatVector  # noqa: F401  (re-exported: the Keras reshaping layers together)


def _int_tuple(value, what, layer_cls):
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in value):
        raise TypeError(f"{layer_cls}: {what} must be a tuple of ints, got {value!r}")
    return tuple(int(d) for d in value)


@register
class Reshape(Layer):
    """Reshape each sample to ``target_shape`` (without the batch axis); at most one entry may be -1."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = _int_tuple(target_shape, "target_shape", "Reshape")
        if sum(d == -1 for d in self.target_shape) > 1 or any(d < -1 or d == 0 for d in self.target_shape):
            raise ValueError(f"Reshape: target_shape may hold positive ints and at most one -1, got "
                             f"{self.target_shape}")

    def _resolve(self, in_shape):
        """The target shape for a per-sample input shape (``None`` entries unknown)."""
        tgt = list(self.target_shape)
        if any(d is None for d in in_shape):
            return tuple(None if d == -1 else d for d in tgt)
        n = math.prod(in_shape)
        known = math.prod(d for d in tgt if d != -1)
        if -1 in tgt:
            if known == 0 or n % known:
                raise ValueError(f"Layer '{self.name}' (Reshape): cannot reshape input {format_shape(tuple(in_shape))} "
                                 f"({n} values per sample) to {self.target_shape}")
            tgt[tgt.index(-1)] = n // known
        elif known != n:
            raise ValueError(f"Layer '{self.name}' (Reshape): total size of the new shape {self.target_shape} "
                             f"({known}) must equal the input's per-sample size {n} (input "
                             f"{format_shape(tuple(in_shape))})")
        return tuple(tgt)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        return (input_shape[0],) + self._resolve(input_shape[1:])

    def compute_mask(self, inputs, mask=None):
        return None

    def forward(self, x, training=False, mask=None):
        x = np.asarray(x)
        if x.ndim < 1:
            raise ValueError(f"Layer '{self.name}' (Reshape): inputs need a batch axis, got a scalar")
        tgt = self._resolve(x.shape[1:])
        self._cache = x.shape
        return x.reshape((x.shape[0],) + tgt)

    def backward(self, grad):
        shape = self._need_cache()
        return np.asarray(grad).reshape(shape)

    def get_config(self):
        cfg = super().get_config()
        cfg["target_shape"] = list(self.target_shape)
        return cfg


@register
class Flatten(Layer):
    """``(B, d_1, ..., d_k) -> (B, d_1 * ... * d_k)``."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"Flatten: only data_format='channels_last' (or None) is supported, got {data_format!r}")
        self.data_format = data_format

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        rest = input_shape[1:]
        return (input_shape[0], None if any(d is None for d in rest) else math.prod(rest))

    def compute_mask(self, inputs, mask=None):
        return None

    def forward(self, x, training=False, mask=None):
        x = np.asarray(x)
        if x.ndim < 1:
            raise ValueError(f"Layer '{self.name}' (Flatten): inputs need a batch axis, got a scalar")
        self._cache = x.shape
        return x.reshape(x.shape[0], -1) if x.ndim != 1 else x.reshape(-1, 1)

    def backward(self, grad):
        shape = self._need_cache()
        return np.asarray(grad).reshape(shape)

    def get_config(self):
        cfg = super().get_config()
        cfg["data_format"] = self.data_format
        return cfg


@register
class Permute(Layer):
    """Permute the non-batch axes: ``Permute((2, 1))`` turns ``(B, T, D)`` into ``(B, D, T)`` (1-based dims)."""

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        self.dims = _int_tuple(dims, "dims", "Permute")
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise ValueError(f"Invalid permutation argument `dims` for Permute Layer. The set of indices in `dims` "
                             f"must be consecutive and start from 1. Received dims={self.dims}")

    def _check_rank(self, ndim, shape):
        if ndim != len(self.dims) + 1:
            raise ValueError(f"Input to layer '{self.name}' (Permute) is incompatible: dims={self.dims} needs "
                             f"inputs of rank {len(self.dims) + 1}, got shape {format_shape(tuple(shape))}")

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        self._check_rank(len(input_shape), input_shape)
        return (input_shape[0],) + tuple(input_shape[d] for d in self.dims)

    def compute_mask(self, inputs, mask=None):
        return None

    def forward(self, x, training=False, mask=None):
        x = np.asarray(x)
        self._check_rank(x.ndim, x.shape)
        perm = (0,) + self.dims
        self._cache = perm
        return np.ascontiguousarray(x.transpose(perm))

    def backward(self, grad):
        perm = self._need_cache()
        return np.ascontiguousarray(np.asarray(grad).transpose(np.argsort(perm)))

    def get_config(self):
        cfg = super().get_config()
        cfg["dims"] = list(self.dims)
        return cfg
