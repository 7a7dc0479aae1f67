"""Global pooling over time: ``GlobalAveragePooling1D`` and ``GlobalMaxPooling1D``.

Both turn a sequence x (B, T, F) into one vector per sample (B, F) (``keepdims=True``: (B, 1, F));
``data_format="channels_first"`` reads x as (B, F, T) (``keepdims=True``: (B, F, 1)), as Keras. Neither has weights; the output carries no mask.

GlobalAveragePooling1D (Keras semantics, mask-aware), with m (B, T) the boolean mask (all True without one)::

    forward:   n_b = sum_t m[b, t]               y[b, f] = sum_t m[b, t] x[b, t, f] / n_b
    backward:  dL/dx[b, t, f] = m[b, t] * g[b, f] / n_b

A row whose steps are all masked has ``n_b = 0``: Keras returns NaN there, rnnlab returns 0 (and a zero
gradient), which is what a padded batch needs.

GlobalMaxPooling1D::

    forward:   y[b, f] = max_t x[b, t, f]        (Keras ignores the mask: ``use_mask=False``, the default)
               with ``use_mask=True`` (rnnlab extension) the max runs over the real steps only,
               y[b, f] = max_{t: m[b, t]} x[b, t, f]  (an all-masked row gives 0)
    backward:  dL/dx[b, t, f] = g[b, f] if t == t*(b, f) else 0,   t*(b, f) = the (first) arg max

``use_mask=True`` matters after a recurrent layer fed pre-padded ids: the padded steps output zeros
(or repeat the last output), which would otherwise compete in the max.
"""
from __future__ import annotations

import numpy as np

from .base import Layer, register

_FORMATS = ("channels_last", "channels_first")


class _GlobalPooling1D(Layer):
    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        data_format = "channels_last" if data_format is None else data_format
        if data_format not in _FORMATS:
            raise ValueError(f"{type(self).__name__}: data_format must be one of {_FORMATS}, got {data_format!r}")
        self.data_format = data_format
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise ValueError(f"{type(self).__name__} '{self.name}': expected input (batch, steps, features), "
                             f"got shape {input_shape}")
        if self.data_format == "channels_last":
            return (input_shape[0], 1, input_shape[2]) if self.keepdims else (input_shape[0], input_shape[2])
        return (input_shape[0], input_shape[1], 1) if self.keepdims else (input_shape[0], input_shape[1])

    def compute_mask(self, inputs, mask=None):
        return None

    def _prepare(self, x, mask):
        """x as (B, T, F) channels-last and the mask as a (B, T) bool array (None if absent)."""
        self._check_ndim(x, 3, "(batch, steps, features)")
        self._check_float(x)
        if self.data_format == "channels_first":
            x = x.transpose(0, 2, 1)
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != x.shape[:2]:
                raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): mask must have shape "
                                 f"(batch, steps) = {x.shape[:2]}, got {mask.shape}")
            mask = mask.astype(bool, copy=False)
        return x, mask

    def _finish(self, y):
        if not self.keepdims:
            return y
        return y[:, None, :] if self.data_format == "channels_last" else y[:, :, None]

    def _grad_in(self, grad, B, F):
        grad = np.asarray(grad)
        want = (B, F) if not self.keepdims else (B, 1, F) if self.data_format == "channels_last" else (B, F, 1)
        if grad.shape != want:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): gradient must have shape {want}, "
                             f"got {grad.shape}")
        return grad.reshape(B, F)

    def _to_format(self, dx):
        return dx.transpose(0, 2, 1) if self.data_format == "channels_first" else dx

    def get_config(self):
        cfg = super().get_config()
        cfg.update(data_format=self.data_format, keepdims=self.keepdims)
        return cfg


@register
class GlobalAveragePooling1D(_GlobalPooling1D):
    """Mean over the time axis, counting only unmasked steps (see the module docstring)."""

    def forward(self, x, training=False, mask=None):
        x, mask = self._prepare(x, mask)
        B, T, F = x.shape
        if mask is None:
            w = np.full((B, T), 1.0 / max(T, 1), dtype=x.dtype)
        else:
            n = mask.sum(axis=1, keepdims=True)
            w = (mask / np.maximum(n, 1)).astype(x.dtype)
        y = np.einsum("bt,btf->bf", w, x)
        self._cache = (w, F)
        return self._finish(y)

    def backward(self, grad):
        w, F = self._need_cache()
        g = self._grad_in(grad, w.shape[0], F)
        return self._to_format(w[:, :, None] * g[:, None, :])


@register
class GlobalMaxPooling1D(_GlobalPooling1D):
    """Max over the time axis; ``use_mask=True`` restricts it to the unmasked steps (see the module docstring)."""

    def __init__(self, data_format=None, keepdims=False, use_mask=False, **kwargs):
        super().__init__(data_format=data_format, keepdims=keepdims, **kwargs)
        self.use_mask = bool(use_mask)

    def forward(self, x, training=False, mask=None):
        x, mask = self._prepare(x, mask)
        B, T, F = x.shape
        if T == 0:
            raise ValueError(f"Layer '{self.name}' (GlobalMaxPooling1D): cannot take a max over 0 steps "
                             f"(input shape {x.shape})")
        empty = None
        if self.use_mask and mask is not None:
            xm = np.where(mask[:, :, None], x, -np.inf)
            idx = np.argmax(xm, axis=1)                                   # (B, F)
            empty = ~mask.any(axis=1)                                     # all-masked rows -> 0
        else:
            idx = np.argmax(x, axis=1)
        y = np.take_along_axis(x, idx[:, None, :], axis=1)[:, 0, :]
        if empty is not None and empty.any():
            y = y.copy()
            y[empty] = 0
        self._cache = (idx, empty, x.shape)
        return self._finish(y)

    def backward(self, grad):
        idx, empty, (B, T, F) = self._need_cache()
        g = self._grad_in(grad, B, F)
        if empty is not None and empty.any():
            g = np.where(empty[:, None], 0, g)
        dx = np.zeros((B, T, F), dtype=g.dtype)
        np.put_along_axis(dx, idx[:, None, :], g[:, None, :], axis=1)
        return self._to_format(dx)

    def get_config(self):
        cfg = super().get_config()
        cfg["use_mask"] = self.use_mask
        return cfg
