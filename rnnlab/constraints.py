"""Weight constraints (Keras 3 ``keras.constraints``), applied to a weight after every optimizer update.

With ``n = sqrt(sum(W**2, axis, keepdims=True))`` and ``eps = 1e-7`` (Keras' ``backend.epsilon()``):

* ``MaxNorm(max_value=2, axis=0)``: ``W * clip(n, 0, max_value) / (eps + n)``
* ``NonNeg()``: ``max(W, 0)``
* ``UnitNorm(axis=0)``: ``W / (eps + n)``
* ``MinMaxNorm(min_value=0.0, max_value=1.0, rate=1.0, axis=0)``:
  ``W * (rate * clip(n, min_value, max_value) + (1 - rate) * n) / (eps + n)``

Layers take them as ``kernel_constraint``, ``recurrent_constraint``, ``bias_constraint``, ``embeddings_constraint``.
Strings: the class names and their snake_case (``"max_norm"``, ``"non_neg"``, ``"unit_norm"``, ``"min_max_norm"``).
"""
from __future__ import annotations

import numpy as np

from ._config import ConfigObject

__all__ = ["Constraint", "MaxNorm", "NonNeg", "UnitNorm", "MinMaxNorm", "get", "serialize", "deserialize"]

EPSILON = 1e-7


class Constraint(ConfigObject):
    """Base class: ``__call__(W) -> projected W`` (a new array, same shape and dtype)."""

    def __call__(self, w):
        return w

    def get_config(self):
        return {}


def _norms(w, axis):
    axis = tuple(axis) if isinstance(axis, (list, tuple)) else axis  # Keras allows a list of axes (Conv kernels)
    return np.sqrt(np.sum(np.square(w), axis=axis, keepdims=True))


class MaxNorm(Constraint):
    def __init__(self, max_value=2, axis=0):
        self.max_value, self.axis = max_value, axis

    def __call__(self, w):
        w = np.asarray(w)
        n = _norms(w, self.axis)
        return (w * (np.clip(n, 0, self.max_value) / (EPSILON + n))).astype(w.dtype, copy=False)

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class NonNeg(Constraint):
    def __call__(self, w):
        return np.maximum(np.asarray(w), 0)


class UnitNorm(Constraint):
    def __init__(self, axis=0):
        self.axis = axis

    def __call__(self, w):
        w = np.asarray(w)
        return (w / (EPSILON + _norms(w, self.axis))).astype(w.dtype, copy=False)

    def get_config(self):
        return {"axis": self.axis}


class MinMaxNorm(Constraint):
    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value, self.max_value, self.rate, self.axis = min_value, max_value, rate, axis

    def __call__(self, w):
        w = np.asarray(w)
        n = _norms(w, self.axis)
        desired = self.rate * np.clip(n, self.min_value, self.max_value) + (1 - self.rate) * n
        return (w * (desired / (EPSILON + n))).astype(w.dtype, copy=False)

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate, "axis": self.axis}


_BY_NAME = {"Constraint": Constraint, "MaxNorm": MaxNorm, "NonNeg": NonNeg, "UnitNorm": UnitNorm,
            "MinMaxNorm": MinMaxNorm, "max_norm": MaxNorm, "non_neg": NonNeg, "unit_norm": UnitNorm,
            "min_max_norm": MinMaxNorm}


def serialize(c):
    return None if c is None else {"class_name": type(c).__name__, "config": c.get_config()}


def deserialize(config):
    return get(config)


def get(identifier, what="constraint"):
    """``None``, a :class:`Constraint`, a name or a serialized dict -> a constraint (or ``None``)."""
    if identifier is None or isinstance(identifier, Constraint):
        return identifier
    if isinstance(identifier, str):
        if identifier not in _BY_NAME:
            raise ValueError(f"{what}: unknown constraint {identifier!r}; known: {sorted(_BY_NAME)}")
        return _BY_NAME[identifier]()
    if isinstance(identifier, dict):
        name = identifier.get("class_name")
        if name not in _BY_NAME:
            raise ValueError(f"{what}: unknown constraint class {name!r} in {identifier!r}; known: {sorted(_BY_NAME)}")
        return _BY_NAME[name](**(identifier.get("config") or {}))
    raise TypeError(f"{what}: expected None, a Constraint, a name or a config dict, got {type(identifier).__name__}")
