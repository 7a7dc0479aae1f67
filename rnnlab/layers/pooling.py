"""Pooling over time: ``MaxPooling1D`` and ``AveragePooling1D`` (windows), ``GlobalAveragePooling1D`` and
``GlobalMaxPooling1D`` (the whole sequence).

MaxPooling1D / AveragePooling1D (Keras semantics; x (B, L, C) -> y (B, L_out, C), ``channels_first``: (B, C, L)),
window p = ``pool_size``, stride s (``strides=None`` means p), windows W_t = {t*s - p_l, ..., t*s - p_l + p - 1}
restricted to the real steps 0..L-1::

    "valid":  p_l = 0,                 L_out = floor((L - p) / s) + 1
    "same":   L_out = ceil(L / s), P = max((L_out - 1)*s + p - L, 0), p_l = floor(P / 2)
    max:      y[b, t, c] = max_{i in W_t} x[b, i, c]          dL/dx[b, i, c] += g[b, t, c] at the (first) arg max
    average:  y[b, t, c] = sum_{i in W_t} x[b, i, c] / |W_t|  dL/dx[b, i, c] += g[b, t, c] / |W_t|  for i in W_t

The padded steps never count ("same" averages divide by the number of real steps, as Keras on TensorFlow and
JAX and Keras's own NumPy reference do; Keras's torch backend instead repeats the edge value when the padding is
uneven, and its tests skip that case). Both run one vectorised pass per window tap (p passes), no loop over
batch or time. Neither has weights or passes a mask on (as in Keras).

Global pooling over time: ``GlobalAveragePooling1D`` and ``GlobalMaxPooling1D``.

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

from .base import Layer, format_shape, register
from .conv import _as_int1, conv_padding, tap_slice

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


_PADDINGS = ("valid", "same")


class _Pooling1D(Layer):
    _kind = ""

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        cls = type(self).__name__
        self.pool_size = _as_int1(pool_size, "pool_size", cls)
        self.strides = self.pool_size if strides is None else _as_int1(strides, "strides", cls)
        if not isinstance(padding, str) or padding.lower() not in _PADDINGS:
            raise ValueError(f"{cls}: padding must be one of {_PADDINGS}, got {padding!r}")
        self.padding = padding.lower()
        data_format = "channels_last" if data_format is None else data_format
        if data_format not in _FORMATS:
            raise ValueError(f"{cls}: data_format must be one of {_FORMATS}, got {data_format!r}")
        self.data_format = data_format

    def _out_len(self, length):
        if length is None:
            return None
        out = conv_padding(length, self.pool_size, self.strides, self.padding)[2]
        if out <= 0:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): pool_size={self.pool_size} is longer "
                             f"than the input sequence of {length} steps with padding='valid'; use padding='same' "
                             "or a smaller pool_size")
        return out

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise ValueError(f"Input to layer '{self.name}' ({type(self).__name__}) is incompatible: expected "
                             f"ndim=3 (batch, steps, features), found input shape {format_shape(input_shape)}")
        if self.data_format == "channels_last":
            return (input_shape[0], self._out_len(input_shape[1]), input_shape[2])
        return (input_shape[0], input_shape[1], self._out_len(input_shape[2]))

    def compute_mask(self, inputs, mask=None):
        return None

    def _windows(self, x):
        """Check x, make it channels-last; return x, the padding left and the output length."""
        self._check_ndim(x, 3, "(batch, steps, features)" if self.data_format == "channels_last"
                         else "(batch, features, steps)")
        self._check_float(x)
        if self.data_format == "channels_first":
            x = x.transpose(0, 2, 1)
        L = x.shape[1]
        out = self._out_len(L)
        left = conv_padding(L, self.pool_size, self.strides, self.padding)[0]
        return x, left, out

    def _taps(self, L, left, out):
        """For each window tap j: (output rows that see a real step, the input rows they read)."""
        taps = []
        for j in range(self.pool_size):
            first = j - left                       # input index read by output 0 at tap j
            t0 = -(first // self.strides) if first < 0 else 0    # ceil(-first / s): first output on a real step
            t1 = min(out - 1, (L - 1 - first) // self.strides)    # last output on a real step
            if t1 < t0:
                continue
            taps.append((slice(t0, t1 + 1), tap_slice(first + t0 * self.strides, self.strides, t1 - t0 + 1)))
        return taps

    def _grad_in(self, grad, B, out, C):
        grad = np.asarray(grad)
        want = (B, out, C) if self.data_format == "channels_last" else (B, C, out)
        if grad.shape != want:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): gradient must have shape {want}, "
                             f"got {grad.shape}")
        return grad.transpose(0, 2, 1) if self.data_format == "channels_first" else grad

    def _to_format(self, y):
        return y.transpose(0, 2, 1) if self.data_format == "channels_first" else y

    def get_config(self):
        cfg = super().get_config()
        cfg.update(pool_size=self.pool_size, strides=self.strides, padding=self.padding,
                   data_format=self.data_format)
        return cfg


@register
class MaxPooling1D(_Pooling1D):
    """Max over windows of ``pool_size`` steps (Keras ``MaxPooling1D``); see the module docstring."""

    def forward(self, x, training=False, mask=None):
        x, left, out = self._windows(x)
        B, L, C = x.shape
        y = np.full((B, out, C), -np.inf, dtype=x.dtype)
        arg = np.zeros((B, out, C), dtype=np.intp)       # window tap that holds the max
        taps = self._taps(L, left, out)
        for j, (osl, isl) in enumerate(taps):
            xj = x[:, isl]
            better = xj > y[:, osl]                       # strict: the first max wins, as a scan would
            y[:, osl] = np.where(better, xj, y[:, osl])
            arg[:, osl] = np.where(better, j, arg[:, osl])
        self._cache = (taps, arg, x.shape)
        return self._to_format(y)

    def backward(self, grad):
        taps, arg, (B, L, C) = self._need_cache()
        g = self._grad_in(grad, B, arg.shape[1], C)
        dx = np.zeros((B, L, C), dtype=g.dtype)
        for j, (osl, isl) in enumerate(taps):
            dx[:, isl] += np.where(arg[:, osl] == j, g[:, osl], 0)
        return self._to_format(dx)


@register
class AveragePooling1D(_Pooling1D):
    """Mean over windows of ``pool_size`` steps, padding excluded (Keras ``AveragePooling1D``); see the module
    docstring."""

    def forward(self, x, training=False, mask=None):
        x, left, out = self._windows(x)
        B, L, C = x.shape
        s = np.zeros((B, out, C), dtype=x.dtype)
        count = np.zeros((out, 1), dtype=x.dtype)
        taps = self._taps(L, left, out)
        for osl, isl in taps:
            s[:, osl] += x[:, isl]
            count[osl] += 1
        inv = 1.0 / count
        self._cache = (taps, inv, x.shape)
        return self._to_format(s * inv)

    def backward(self, grad):
        taps, inv, (B, L, C) = self._need_cache()
        g = self._grad_in(grad, B, inv.shape[0], C) * inv
        dx = np.zeros((B, L, C), dtype=g.dtype)
        for osl, isl in taps:
            dx[:, isl] += g[:, osl]
        return self._to_format(dx)
