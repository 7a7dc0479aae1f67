"""Core layers: Dense, Activation, Dropout, Masking, RepeatVector.

Dense on inputs with more than 2 dimensions applies the same matrix to the last axis
(as Keras does), so ``Dense`` after a ``return_sequences=True`` RNN acts on every time step.
"""
from __future__ import annotations

import numpy as np

from .. import activations as _act
from .. import backend, initializers
from . import fused_native as _products
from .base import Layer, register


@register
class Dense(Layer):
    """Fully connected layer: ``y = f(x W + b)``.

    Shapes: x (..., D) -> y (..., units); ``kernel`` (D, units), ``bias`` (units,).

    Backward, with g = dL/dy and a = x W + b (so dL/da = f'(a) * g, written from y):
        dL/dW = x^T (dL/da)   summed over all leading axes (one GEMM on the flattened batch)
        dL/db = sum of dL/da  over all leading axes
        dL/dx = (dL/da) W^T
    """

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"Dense: units must be a positive int, got {units!r}")
        self.units = int(units)
        self.activation = _act.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(f"Dense '{self.name}': needs a known last input dimension, got input shape {input_shape}")
        self.add_weight("kernel", (input_shape[-1], self.units), self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def forward(self, x, training=False, mask=None):
        if x.ndim < 2:
            self._check_ndim(x, 2, "(batch, features)")
        self._check_last_dim(x, self.params["kernel"].shape[0])
        x2 = x.reshape(-1, x.shape[-1])
        a = _products.matmul(x2, self.params["kernel"])
        if self.use_bias:
            a += self.params["bias"]
        y = self.activation.forward(a, out=a)
        self._cache = (x2, y, x.shape)
        return y.reshape(x.shape[:-1] + (self.units,))

    def backward(self, grad):
        x2, y, x_shape = self._need_cache()
        da = self.activation.backward(y, grad.reshape(y.shape))
        _products.matmul(x2.T, da, out=self.grads["kernel"])
        if self.use_bias:
            np.sum(da, axis=0, out=self.grads["bias"])
        if not self.input_grad_needed:
            return None
        return _products.matmul(da, self.params["kernel"].T).reshape(x_shape)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(units=self.units, activation=_act.serialize(self.activation), use_bias=self.use_bias,
                   kernel_initializer=initializers.serialize(self.kernel_initializer),
                   bias_initializer=initializers.serialize(self.bias_initializer))
        return cfg


@register
class Activation(Layer):
    """Applies an activation function elementwise (softmax over the last axis)."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = _act.get(activation)

    def forward(self, x, training=False, mask=None):
        y = self.activation.forward(x)
        self._cache = y
        return y

    def backward(self, grad):
        return self.activation.backward(self._need_cache(), grad)

    def get_config(self):
        cfg = super().get_config()
        cfg["activation"] = _act.serialize(self.activation)
        return cfg


@register
class Dropout(Layer):
    """Inverted dropout: at training time each element is kept with probability ``1 - rate`` and
    scaled by ``1 / (1 - rate)``; at inference (``training=False``) the layer is the identity.

    Forward (training):  ``m = (u >= rate) / (1 - rate)`` with ``u ~ U[0, 1)`` of shape ``noise_shape``
    (``None`` entries take the input's size; a 1 broadcasts one draw along that axis, e.g.
    ``(batch, 1, features)`` drops the same features at every time step), ``y = x * m``.
    Backward: ``dL/dx = dL/dy * m`` (the same mask). Masks come from :func:`rnnlab.backend.rng`
    (reproducible with ``set_random_seed``); ``seed=`` gives the layer its own generator instead.
    Shapes: any ``(batch, ...)`` -> same shape; no weights.
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.number)) or not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"Dropout: rate must be a float in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.noise_shape = None if noise_shape is None else tuple(None if d is None else int(d) for d in noise_shape)
        self._gen = backend.seeded_rng("Dropout", seed)
        self.seed = seed

    def _mask_shape(self, x):
        if self.noise_shape is None:
            return x.shape
        if len(self.noise_shape) != x.ndim:
            raise ValueError(f"Dropout '{self.name}': noise_shape {self.noise_shape} must have one entry per input "
                             f"axis; input shape is {x.shape}")
        shape = tuple(x.shape[i] if d is None else d for i, d in enumerate(self.noise_shape))
        for i, (d, n) in enumerate(zip(shape, x.shape)):
            if d not in (1, n):
                raise ValueError(f"Dropout '{self.name}': noise_shape {self.noise_shape} does not broadcast to the "
                                 f"input shape {x.shape} (axis {i}: {d} vs {n})")
        return shape

    def forward(self, x, training=False, mask=None):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"Layer '{self.name}': inputs must be a NumPy array, got {type(x).__name__}")
        self._check_float(x)
        if not training or self.rate == 0.0:
            self._cache = (None,)
            return x
        gen = self._gen if self._gen is not None else backend.rng()
        u = gen.random(self._mask_shape(x), dtype=x.dtype)
        m = np.where(u >= self.rate, x.dtype.type(1.0 / (1.0 - self.rate)), x.dtype.type(0.0))
        self._cache = (m,)
        return x * m

    def backward(self, grad):
        (m,) = self._need_cache()
        if m is None:
            return grad
        return grad * m

    def get_config(self):
        cfg = super().get_config()
        cfg.update(rate=self.rate, noise_shape=None if self.noise_shape is None else list(self.noise_shape),
                   seed=self.seed)
        return cfg


@register
class Masking(Layer):
    """Masks padded time steps: a step is masked when **all** its features equal ``mask_value`` (Keras ``Masking``).

    Forward, x (B, T, ...F):  ``m[b, t] = any(x[b, t] != mask_value)``,  ``y = x * m[..., None]``
    (masked steps become zeros), and ``compute_mask`` gives ``m`` (B, T) to the next layers
    (recurrent layers then carry their state over those steps; a masked loss ignores them).
    Backward: ``dL/dx = dL/dy * m[..., None]``. No weights.
    """

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(mask_value, bool) or not isinstance(mask_value, (int, float, np.number)):
            raise TypeError(f"Masking: mask_value must be a number, got {mask_value!r}")
        self.mask_value = float(mask_value)

    def _mask(self, x):
        return np.any(x != x.dtype.type(self.mask_value), axis=-1)

    def compute_mask(self, inputs, mask=None):
        inputs = np.asarray(inputs)
        if inputs.ndim < 3:
            raise ValueError(f"Masking '{self.name}': needs inputs (batch, timesteps, features), got shape {inputs.shape}")
        return self._mask(inputs)

    def forward(self, x, training=False, mask=None):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"Layer '{self.name}': inputs must be a NumPy array, got {type(x).__name__}")
        self._check_float(x)
        if x.ndim < 3:
            raise ValueError(f"Input to layer '{self.name}' (Masking) is incompatible: expected ndim>=3 "
                             f"(batch, timesteps, features), found ndim={x.ndim} with shape {x.shape}")
        m = self._mask(x)[..., None].astype(x.dtype)
        self._cache = m
        return x * m

    def backward(self, grad):
        m = self._need_cache()
        return grad * m

    def get_config(self):
        cfg = super().get_config()
        cfg["mask_value"] = self.mask_value
        return cfg


@register
class RepeatVector(Layer):
    """Repeats a vector ``n`` times along a new time axis (Keras ``RepeatVector``).

    Forward: x (B, F) -> y (B, n, F) with ``y[:, t] = x``. Backward: ``dL/dx = sum_t dL/dy[:, t]``.
    No weights; the output carries no mask.
    """

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
            raise ValueError(f"RepeatVector: n must be a positive int, got {n!r}")
        self.n = int(n)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n) + tuple(input_shape[1:])

    def compute_mask(self, inputs, mask=None):
        return None

    def forward(self, x, training=False, mask=None):
        self._check_ndim(x, 2, "(batch, features)")
        self._cache = x.shape
        return np.repeat(x[:, None, :], self.n, axis=1)

    def backward(self, grad):
        shape = self._need_cache()
        grad = np.asarray(grad)
        if grad.shape != (shape[0], self.n, shape[1]):
            raise ValueError(f"Layer '{self.name}' (RepeatVector): gradient must have shape "
                             f"{(shape[0], self.n, shape[1])}, got {grad.shape}")
        return grad.sum(axis=1)

    def get_config(self):
        cfg = super().get_config()
        cfg["n"] = self.n
        return cfg
