"""Normalization layers: ``BatchNormalization`` and ``LayerNormalization`` (Keras 3 semantics and weights).

BatchNormalization normalizes each feature (the ``axis``, default the last) over all other axes (batch and
time). Weights, in Keras' ``get_weights()`` order: ``gamma`` (C,), ``beta`` (C,) (trainable; absent with
``scale=False`` / ``center=False``), then ``moving_mean`` (C,), ``moving_variance`` (C,) (non-trainable: saved
and loaded with the others, never given to an optimizer -- ``trainable_weight_refs`` leaves them out).

Training (``training=True`` and the layer trainable), with R the reduction axes, m the mask broadcast over the
features (all ones without a mask), n = sum_R m and c = 1/n (c = 1/(n + 1e-7) with a mask, as Keras)::

    mu = c * sum_R m x          var = c * sum_R m (x - mu)^2          inv = 1 / sqrt(var + epsilon)
    y = gamma * (x - mu) * inv + beta                      (every position, masked ones included, as Keras)
    moving_mean     <- momentum * moving_mean     + (1 - momentum) * mu
    moving_variance <- momentum * moving_variance + (1 - momentum) * var          (biased variance, as Keras)

Backward (training), with g = dL/dy, xc = x - mu, G = g * gamma::

    dL/dgamma = sum_R g * xc * inv           dL/dbeta = sum_R g
    dL/dvar   = -1/2 inv^3 sum_R G xc        dL/dmu   = -inv sum_R G - 2 c dL/dvar sum_R m xc
    dL/dx     = G inv + c m (dL/dmu + 2 dL/dvar xc)

Inference (``training=False``, or ``trainable=False`` as in Keras): mu, var are the moving statistics, so
``y = gamma (x - moving_mean) / sqrt(moving_variance + epsilon) + beta`` and ``dL/dx = g gamma inv``
(``grads`` then also holds dL/dmoving_mean and dL/dmoving_variance, for checks; no optimizer reads them).

Precision note: Keras 3 computes BatchNormalization in float32 even for float64 inputs (its
``result_type(float64, "float32")`` is float32), so Keras parity holds to float32 rounding (about 1e-7 relative);
the float64 check of rnnlab's forward and backward is against PyTorch's ``batch_norm`` and finite differences.
The mask passes through unchanged.

LayerNormalization normalizes each sample over ``axis`` (default the last; an int or a list of axes), with
``gamma``/``beta`` of the shape of those axes (Keras order gamma, beta)::

    mu = mean_A x     var = mean_A (x - mu)^2     xhat = (x - mu) / sqrt(var + epsilon)     y = gamma xhat + beta
    backward, with G = g gamma and N the number of normalized elements per sample:
    dL/dx = inv (G - mean_A G - xhat mean_A(G xhat))     dL/dgamma = sum_other g xhat     dL/dbeta = sum_other g

LayerNormalization ignores the mask for its computation and passes it through (as Keras).
"""
from __future__ import annotations

import numpy as np

from .. import initializers
from .base import Layer, format_shape, register


def _check_axis(layer, axis, ndim):
    a = axis + ndim if axis < 0 else axis
    if not 0 <= a < ndim:
        raise ValueError(f"{type(layer).__name__} '{layer.name}': axis {axis} is out of range for an input of "
                         f"ndim={ndim}")
    return a


@register
class BatchNormalization(Layer):
    """Batch normalization (Keras ``BatchNormalization``); see the module docstring for the equations."""

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"BatchNormalization: axis must be an int, got {axis!r}")
        self.axis = int(axis)
        for name, v in (("momentum", momentum), ("epsilon", epsilon)):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)):
                raise TypeError(f"BatchNormalization: {name} must be a number, got {v!r}")
        if not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"BatchNormalization: momentum must be in [0, 1], got {momentum!r}")
        if float(epsilon) <= 0:
            raise ValueError(f"BatchNormalization: epsilon must be > 0, got {epsilon!r}")
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)

    #: weights that never train (saved with the others, left out of trainable_weight_refs)
    _non_trainable_params = ("moving_mean", "moving_variance")

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        ax = _check_axis(self, self.axis, len(input_shape))
        if ax == 0:
            raise ValueError(f"BatchNormalization '{self.name}': axis must not be the batch axis 0")
        C = input_shape[ax]
        if C is None:
            raise ValueError(f"BatchNormalization '{self.name}': the size of axis {self.axis} must be known, got "
                             f"input shape {format_shape(input_shape)}")
        if self.scale:
            self.add_weight("gamma", (C,), self.gamma_initializer)
        if self.center:
            self.add_weight("beta", (C,), self.beta_initializer)
        self.add_weight("moving_mean", (C,), self.moving_mean_initializer)
        self.add_weight("moving_variance", (C,), self.moving_variance_initializer)
        super().build(input_shape)

    def trainable_weight_refs(self):
        if not self.trainable:
            return
        for wname in self.params:
            if wname not in self._non_trainable_params:
                yield f"{self.name}/{wname}", self, wname

    def _shape_c(self, x):
        shape = [1] * x.ndim
        shape[self._ax] = x.shape[self._ax]
        return tuple(shape)

    def forward(self, x, training=False, mask=None):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"Layer '{self.name}': inputs must be a NumPy array, got {type(x).__name__}")
        self._check_float(x)
        if self.input_shape is not None and x.ndim != len(self.input_shape):
            raise ValueError(f"Input to layer '{self.name}' (BatchNormalization) is incompatible: expected "
                             f"ndim={len(self.input_shape)} (built for {format_shape(self.input_shape)}), found "
                             f"ndim={x.ndim} with shape {x.shape}")
        self._ax = _check_axis(self, self.axis, x.ndim)
        C = self.params["moving_mean"].shape[0]
        if x.shape[self._ax] != C:
            raise ValueError(f"Input to layer '{self.name}' (BatchNormalization) is incompatible: expected "
                             f"size {C} on axis {self.axis}, found shape {x.shape}")
        cs = self._shape_c(x)
        red = tuple(i for i in range(x.ndim) if i != self._ax)
        gamma = self.params["gamma"].reshape(cs) if self.scale else None
        if training and self.trainable:
            if mask is not None:
                mask = np.asarray(mask)
                if mask.ndim != x.ndim - 1 or mask.shape != x.shape[:-1]:
                    raise ValueError(f"Layer '{self.name}' (BatchNormalization): the mask must have the input's "
                                     f"shape without its last axis, {x.shape[:-1]}, got {mask.shape}")
                m = np.broadcast_to(mask.astype(x.dtype)[..., None], x.shape)
                c = 1.0 / (m.sum(axis=red, keepdims=True) + 1e-7)
                mu = (m * x).sum(axis=red, keepdims=True) * c
                xc = x - mu
                var = (m * xc * xc).sum(axis=red, keepdims=True) * c
            else:
                m = None
                n = x.size // C
                c = np.full(cs, 1.0 / n, dtype=x.dtype)
                mu = x.mean(axis=red, keepdims=True)
                xc = x - mu
                var = (xc * xc).mean(axis=red, keepdims=True)
            mm, mv = self.params["moving_mean"], self.params["moving_variance"]
            mm[...] = mm * self.momentum + mu.reshape(-1) * (1.0 - self.momentum)
            mv[...] = mv * self.momentum + var.reshape(-1) * (1.0 - self.momentum)
            inv = 1.0 / np.sqrt(var + self.epsilon)
            self._cache = ("train", xc, inv, m, c, red)
        else:
            mu = self.params["moving_mean"].reshape(cs)
            inv = 1.0 / np.sqrt(self.params["moving_variance"].reshape(cs) + self.epsilon)
            xc = x - mu
            self._cache = ("infer", xc, inv, None, None, red)
        y = xc * inv
        if self.scale:
            y = y * gamma
        if self.center:
            y = y + self.params["beta"].reshape(cs)
        return y.astype(x.dtype, copy=False)

    def backward(self, grad):
        mode, xc, inv, m, c, red = self._need_cache()
        g = np.asarray(grad)
        if g.shape != xc.shape:
            raise ValueError(f"Layer '{self.name}' (BatchNormalization): gradient must have shape {xc.shape}, "
                             f"got {g.shape}")
        cs = inv.shape
        if self.scale:
            self.grads["gamma"][...] = (g * xc * inv).sum(axis=red)
            G = g * self.params["gamma"].reshape(cs)
        else:
            G = g
        if self.center:
            self.grads["beta"][...] = g.sum(axis=red)
        if mode == "infer":
            # the output depends on the moving statistics here; their gradients are exact but never applied
            self.grads["moving_mean"][...] = -(G * inv).sum(axis=red).reshape(-1)
            self.grads["moving_variance"][...] = (-0.5 * inv ** 3 * (G * xc).sum(axis=red, keepdims=True)).reshape(-1)
            return G * inv if self.input_grad_needed else None
        self.grads["moving_mean"][...] = 0
        self.grads["moving_variance"][...] = 0
        if not self.input_grad_needed:
            return None
        d_var = -0.5 * inv ** 3 * (G * xc).sum(axis=red, keepdims=True)
        mxc = xc if m is None else m * xc
        d_mu = -inv * G.sum(axis=red, keepdims=True) - 2.0 * c * d_var * mxc.sum(axis=red, keepdims=True)
        w = c if m is None else c * m
        return G * inv + w * (d_mu + 2.0 * d_var * xc)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axis=self.axis, momentum=self.momentum, epsilon=self.epsilon, center=self.center,
                   scale=self.scale, beta_initializer=initializers.serialize(self.beta_initializer),
                   gamma_initializer=initializers.serialize(self.gamma_initializer),
                   moving_mean_initializer=initializers.serialize(self.moving_mean_initializer),
                   moving_variance_initializer=initializers.serialize(self.moving_variance_initializer))
        return cfg


@register
class LayerNormalization(Layer):
    """Layer normalization (Keras ``LayerNormalization``); see the module docstring for the equations."""

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
        if not axes or any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in axes):
            raise TypeError(f"LayerNormalization: axis must be an int or a list of ints, got {axis!r}")
        self.axis = [int(a) for a in axes] if isinstance(axis, (list, tuple)) else int(axis)
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.number)) or float(epsilon) <= 0:
            raise ValueError(f"LayerNormalization: epsilon must be a number > 0, got {epsilon!r}")
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)

    def _axes(self, ndim):
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        out = sorted({_check_axis(self, a, ndim) for a in axes})
        if 0 in out:
            raise ValueError(f"LayerNormalization '{self.name}': axis must not include the batch axis 0")
        return out

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        axes = self._axes(len(input_shape))
        shape = tuple(input_shape[a] for a in axes)
        if any(d is None for d in shape):
            raise ValueError(f"LayerNormalization '{self.name}': the normalized axes {self.axis} must have known "
                             f"sizes, got input shape {format_shape(input_shape)}")
        if self.scale:
            self.add_weight("gamma", shape, self.gamma_initializer)
        if self.center:
            self.add_weight("beta", shape, self.beta_initializer)
        super().build(input_shape)

    def _bshape(self, x, axes):
        return tuple(x.shape[i] if i in axes else 1 for i in range(x.ndim))

    def forward(self, x, training=False, mask=None):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"Layer '{self.name}': inputs must be a NumPy array, got {type(x).__name__}")
        self._check_float(x)
        if self.input_shape is not None and x.ndim != len(self.input_shape):
            raise ValueError(f"Input to layer '{self.name}' (LayerNormalization) is incompatible: expected "
                             f"ndim={len(self.input_shape)} (built for {format_shape(self.input_shape)}), found "
                             f"ndim={x.ndim} with shape {x.shape}")
        axes = tuple(self._axes(x.ndim))
        built = tuple(self.input_shape[a] for a in axes) if self.input_shape is not None else None
        if built is not None and tuple(x.shape[a] for a in axes) != built:
            raise ValueError(f"Input to layer '{self.name}' (LayerNormalization) is incompatible: expected sizes "
                             f"{built} on axes {list(axes)}, found shape {x.shape}")
        bs = self._bshape(x, axes)
        mu = x.mean(axis=axes, keepdims=True)
        xc = x - mu
        var = (xc * xc).mean(axis=axes, keepdims=True)
        inv = 1.0 / np.sqrt(var + self.epsilon)
        xhat = xc * inv
        y = xhat * self.params["gamma"].reshape(bs) if self.scale else xhat
        if self.center:
            y = y + self.params["beta"].reshape(bs)
        self._cache = (xhat, inv, axes, bs)
        return y

    def backward(self, grad):
        xhat, inv, axes, bs = self._need_cache()
        g = np.asarray(grad)
        if g.shape != xhat.shape:
            raise ValueError(f"Layer '{self.name}' (LayerNormalization): gradient must have shape {xhat.shape}, "
                             f"got {g.shape}")
        other = tuple(i for i in range(g.ndim) if i not in axes)
        pshape = tuple(g.shape[a] for a in axes)
        if self.scale:
            self.grads["gamma"][...] = (g * xhat).sum(axis=other).reshape(pshape)
            G = g * self.params["gamma"].reshape(bs)
        else:
            G = g
        if self.center:
            self.grads["beta"][...] = g.sum(axis=other).reshape(pshape)
        if not self.input_grad_needed:
            return None
        return inv * (G - G.mean(axis=axes, keepdims=True) - xhat * (G * xhat).mean(axis=axes, keepdims=True))

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axis=self.axis, epsilon=self.epsilon, center=self.center, scale=self.scale,
                   beta_initializer=initializers.serialize(self.beta_initializer),
                   gamma_initializer=initializers.serialize(self.gamma_initializer))
        return cfg
