"""Activation functions, each with its derivative expressed from the forward *output*.

Writing the derivative from the output y = f(x) means backward passes keep only the
activations they already stored, never the pre-activations:

=============  ======================  ===========================
name           y = f(x)                dy/dx from y
=============  ======================  ===========================
linear         x                       1
tanh           tanh(x)                 1 - y^2
sigmoid        1 / (1 + e^-x)          y (1 - y)
hard_sigmoid   clip(x/6 + 1/2, 0, 1)   1/6 where 0 < y < 1
relu           max(x, 0)               1 where y > 0
softplus       log(1 + e^x)            1 - e^-y
elu            x or e^x - 1            1 or y + 1
softmax        e^x / sum e^x (last)    J^T g = y * (g - sum(g*y))
=============  ======================  ===========================

``act.forward(x, out=None)`` may write into ``out`` (in place when ``out is x``);
``act.backward(y, grad)`` returns dL/dx given y and dL/dy.
"""
from __future__ import annotations

import numpy as np


class Activation_:
    name = "base"

    def forward(self, x, out=None):
        raise NotImplementedError

    def backward(self, y, grad):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(np.asarray(x))

    def __repr__(self):
        return f"<activation {self.name}>"


class Linear(Activation_):
    name = "linear"

    def forward(self, x, out=None):
        if out is None or out is x:
            return x
        np.copyto(out, x)
        return out

    def backward(self, y, grad):
        return grad


class Tanh(Activation_):
    name = "tanh"

    def forward(self, x, out=None):
        return np.tanh(x, out=out)

    def backward(self, y, grad):
        return grad * (1.0 - y * y)


def sigmoid(x, out=None):
    """Numerically stable logistic: 0.5 * (1 + tanh(x / 2)); no overflow for any x."""
    out = np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


class Sigmoid(Activation_):
    name = "sigmoid"

    def forward(self, x, out=None):
        return sigmoid(x, out=out)

    def backward(self, y, grad):
        return grad * y * (1.0 - y)


class HardSigmoid(Activation_):
    """Keras 3 hard_sigmoid: relu6(x + 3) / 6."""

    name = "hard_sigmoid"

    def forward(self, x, out=None):
        out = np.multiply(x, 1.0 / 6.0, out=out)
        out += 0.5
        return np.clip(out, 0.0, 1.0, out=out)

    def backward(self, y, grad):
        return grad * ((y > 0) & (y < 1)) * (1.0 / 6.0)


class ReLU(Activation_):
    name = "relu"

    def forward(self, x, out=None):
        return np.maximum(x, 0, out=out)

    def backward(self, y, grad):
        return grad * (y > 0)


class Softplus(Activation_):
    name = "softplus"

    def forward(self, x, out=None):
        return np.logaddexp(x, 0.0, out=out)

    def backward(self, y, grad):
        return grad * -np.expm1(-y)


class ELU(Activation_):
    name = "elu"

    def forward(self, x, out=None):
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))  # out ignored: where allocates

    def backward(self, y, grad):
        return grad * np.where(y > 0, 1.0, y + 1.0)


def softmax(x, axis=-1):
    """Softmax along ``axis``, shifted by the max for stability."""
    z = x - np.max(x, axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= np.sum(z, axis=axis, keepdims=True)
    return z


class Softmax(Activation_):
    name = "softmax"

    def forward(self, x, out=None):
        y = softmax(x)
        if out is not None:
            np.copyto(out, y)
            return out
        return y

    def backward(self, y, grad):
        return y * (grad - np.sum(grad * y, axis=-1, keepdims=True))


_REGISTRY = {
    cls.name: cls
    for cls in (Linear, Tanh, Sigmoid, HardSigmoid, ReLU, Softplus, ELU, Softmax)
}


def get(identifier) -> Activation_:
    """Resolve an activation by name (``None`` means linear) or pass an instance through."""
    if identifier is None:
        return Linear()
    if isinstance(identifier, Activation_):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _REGISTRY:
        return _REGISTRY[identifier.lower()]()
    raise ValueError(f"Unknown activation {identifier!r}; valid names: {sorted(_REGISTRY)}")


def serialize(act: Activation_) -> str:
    return act.name


def names() -> list[str]:
    return sorted(_REGISTRY)
