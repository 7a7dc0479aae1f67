"""1-D convolution: ``Conv1D`` (Keras semantics, channels-last by default).

Shapes: x (B, L, C) -> y (B, L_out, F); ``kernel`` (k, C, F), ``bias`` (F,) -- Keras' weight shapes and order.
``data_format="channels_first"`` reads x as (B, C, L) and returns (B, F, L_out).

Forward, with dilation d, stride s and x_p the input padded by (p_l, p_r) zero steps on the time axis::

    a[b, t, f] = sum_{j<k} sum_c x_p[b, t*s + j*d, c] * W[j, c, f] + bias[f]        y = act(a)

    padding="valid":   p_l = p_r = 0,                          L_out = floor((L - d*(k-1) - 1) / s) + 1
    padding="same":    L_out = ceil(L / s), P = max((L_out-1)*s + d*(k-1) + 1 - L, 0),
                       p_l = floor(P / 2), p_r = P - p_l        (TensorFlow/Keras "same")
    padding="causal":  p_l = d*(k-1), p_r = 0 (output t sees only inputs <= t*s), L_out as "valid" on x_p

It runs as one GEMM per kernel tap j: the strided view ``X_j = x_p[:, j*d :: s][:, :L_out]`` (B*L_out, C) times
``W[j]`` (C, F), accumulated; there is no loop over batch or time and no im2col copy of all taps at once.

Backward, with G = dL/da (from dL/dy and the activation, written from y)::

    dL/dW[j] = X_j^T G          (one GEMM per tap over all B*L_out rows)
    dL/dbias = sum_{b,t} G
    dL/dx_p[:, j*d :: s][:, :L_out] += G W[j]^T      then dL/dx = dL/dx_p without the padding

Masks: as in Keras, Conv1D does not propagate a mask (its output has another length); ``compute_mask`` gives None.
``groups`` other than 1 is not supported (ValueError).
"""
from __future__ import annotations

import numpy as np

from .. import activations as _act
from .. import initializers
from .base import Layer, format_shape, register

_PADDINGS = ("valid", "same", "causal")
_FORMATS = ("channels_last", "channels_first")


def _as_int1(value, what, cls, minimum=1):
    """Keras accepts an int or a 1-tuple for 1-D kernel_size/strides/dilation_rate."""
    v = value
    if isinstance(v, (tuple, list)):
        if len(v) != 1:
            raise ValueError(f"{cls}: {what} must be an int or a tuple of 1 int, got {value!r}")
        v = v[0]
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < minimum:
        raise ValueError(f"{cls}: {what} must be an int >= {minimum} (or a tuple of one), got {value!r}")
    return int(v)


def conv_padding(length, k_eff, stride, padding):
    """``(pad_left, pad_right, out_length)`` for an axis of ``length`` and effective window ``k_eff``.

    ``k_eff = dilation*(k-1) + 1`` for a convolution, ``pool_size`` for pooling. ``out_length`` may be <= 0
    for "valid" windows larger than the input; callers report that."""
    if padding == "same":
        out = -(-length // stride)
        total = max((out - 1) * stride + k_eff - length, 0)
        return total // 2, total - total // 2, out
    if padding == "causal":
        left = k_eff - 1
        return left, 0, (length + left - k_eff) // stride + 1
    return 0, 0, (length - k_eff) // stride + 1 if length >= k_eff else 0


def tap_slice(j_offset, stride, out_len):
    """Rows of the padded time axis that kernel tap starting at ``j_offset`` reads for ``out_len`` outputs."""
    return slice(j_offset, j_offset + (out_len - 1) * stride + 1, stride)


@register
class Conv1D(Layer):
    """1-D convolution over time (Keras ``Conv1D``); see the module docstring for the equations."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 groups=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or filters <= 0:
            raise ValueError(f"Conv1D: filters must be a positive int, got {filters!r}")
        self.filters = int(filters)
        self.kernel_size = _as_int1(kernel_size, "kernel_size", "Conv1D")
        self.strides = _as_int1(strides, "strides", "Conv1D")
        self.dilation_rate = _as_int1(dilation_rate, "dilation_rate", "Conv1D")
        if self.strides > 1 and self.dilation_rate > 1:
            raise ValueError(f"Conv1D: strides > 1 is not compatible with dilation_rate > 1 (as in Keras), got "
                             f"strides={self.strides}, dilation_rate={self.dilation_rate}")
        if not isinstance(padding, str) or padding.lower() not in _PADDINGS:
            raise ValueError(f"Conv1D: padding must be one of {_PADDINGS}, got {padding!r}")
        self.padding = padding.lower()
        data_format = "channels_last" if data_format is None else data_format
        if data_format not in _FORMATS:
            raise ValueError(f"Conv1D: data_format must be one of {_FORMATS}, got {data_format!r}")
        if self.padding == "causal" and data_format != "channels_last":
            raise ValueError("Conv1D: padding='causal' needs data_format='channels_last' (as in Keras)")
        self.data_format = data_format
        if groups != 1:
            raise ValueError(f"Conv1D: only groups=1 is supported by rnnlab, got groups={groups!r}")
        self.groups = 1
        self.activation = _act.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    # ------------------------------------------------------------------ shapes
    @property
    def _k_eff(self):
        return self.dilation_rate * (self.kernel_size - 1) + 1

    def _split_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise ValueError(f"Input to layer '{self.name}' (Conv1D) is incompatible: expected ndim=3 "
                             f"(batch, steps, channels), found input shape {format_shape(input_shape)}")
        if self.data_format == "channels_last":
            return input_shape[1], input_shape[2]
        return input_shape[2], input_shape[1]

    def _out_len(self, length):
        if length is None:
            return None
        out = conv_padding(length, self._k_eff, self.strides, self.padding)[2]
        if out <= 0:
            raise ValueError(
                f"Layer '{self.name}' (Conv1D): the kernel (kernel_size={self.kernel_size}, dilation_rate="
                f"{self.dilation_rate}, i.e. {self._k_eff} steps) is longer than the input sequence of {length} "
                f"steps with padding='{self.padding}'; use a shorter kernel, a longer input, or padding='same' "
                "or 'causal'")
        return out

    def build(self, input_shape):
        _, channels = self._split_shape(input_shape)
        if channels is None:
            raise ValueError(f"Conv1D '{self.name}': the channel dimension of the input must be known, got "
                             f"input shape {format_shape(tuple(input_shape))}")
        self.add_weight("kernel", (self.kernel_size, channels, self.filters), self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer)
        super().build(tuple(input_shape))

    def compute_output_shape(self, input_shape):
        length, _ = self._split_shape(input_shape)
        out = self._out_len(length)
        if self.data_format == "channels_last":
            return (input_shape[0], out, self.filters)
        return (input_shape[0], self.filters, out)

    def compute_mask(self, inputs, mask=None):
        return None

    # ----------------------------------------------------------------- running
    def forward(self, x, training=False, mask=None):
        self._check_ndim(x, 3, "(batch, steps, channels)" if self.data_format == "channels_last"
                         else "(batch, channels, steps)")
        self._check_float(x)
        if self.data_format == "channels_first":
            x = x.transpose(0, 2, 1)
        W = self.params["kernel"]
        self._check_last_dim(x, W.shape[1])
        B, L, C = x.shape
        out = self._out_len(L)
        left, right, _ = conv_padding(L, self._k_eff, self.strides, self.padding)
        if left or right:
            xp = np.zeros((B, L + left + right, C), dtype=x.dtype)
            xp[:, left:left + L] = x
        else:
            xp = x
        a = np.zeros((B * out, self.filters), dtype=x.dtype)
        for j in range(self.kernel_size):
            xj = xp[:, tap_slice(j * self.dilation_rate, self.strides, out)]
            a += xj.reshape(B * out, C) @ W[j]
        if self.use_bias:
            a += self.params["bias"]
        y = self.activation.forward(a, out=a)
        self._cache = (xp, y, (B, L, C), left, out)
        y = y.reshape(B, out, self.filters)
        return y.transpose(0, 2, 1) if self.data_format == "channels_first" else y

    def backward(self, grad):
        xp, y, (B, L, C), left, out = self._need_cache()
        grad = np.asarray(grad)
        want = (B, out, self.filters) if self.data_format == "channels_last" else (B, self.filters, out)
        if grad.shape != want:
            raise ValueError(f"Layer '{self.name}' (Conv1D): gradient must have shape {want}, got {grad.shape}")
        if self.data_format == "channels_first":
            grad = grad.transpose(0, 2, 1)
        G = self.activation.backward(y, np.ascontiguousarray(grad).reshape(y.shape))
        W = self.params["kernel"]
        dW = self.grads["kernel"]
        need_dx = self.input_grad_needed
        dxp = np.zeros(xp.shape, dtype=G.dtype) if need_dx else None
        G3 = G.reshape(B, out, self.filters)
        for j in range(self.kernel_size):
            sl = tap_slice(j * self.dilation_rate, self.strides, out)
            xj = xp[:, sl].reshape(B * out, C)
            np.matmul(xj.T, G, out=dW[j])
            if need_dx:
                dxp[:, sl] += (G @ W[j].T).reshape(B, out, C)
        if self.use_bias:
            np.sum(G3, axis=(0, 1), out=self.grads["bias"])
        if not need_dx:
            return None
        dx = dxp[:, left:left + L]
        return dx.transpose(0, 2, 1) if self.data_format == "channels_first" else dx

    def get_config(self):
        cfg = super().get_config()
        cfg.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides, padding=self.padding,
                   data_format=self.data_format, dilation_rate=self.dilation_rate, groups=self.groups,
                   activation=_act.serialize(self.activation), use_bias=self.use_bias,
                   kernel_initializer=initializers.serialize(self.kernel_initializer),
                   bias_initializer=initializers.serialize(self.bias_initializer))
        return cfg


__all__ = ["Conv1D", "conv_padding", "tap_slice"]
