"""Weights as objects: what ``layer.weights`` / ``model.weights`` return (Keras 3's ``Variable`` surface).

A :class:`Variable` is a thin **view** of one parameter array of a layer: it keeps the owner layer and
the weight name, not a copy, so it always shows the current value (optimizers update
``owner.params[name]`` in place) and ``assign(value)`` writes **into** that array (in place, shape
checked), so optimizers, packed caches and other references keep working.

Attributes follow Keras 3: ``name`` (``"kernel"``), ``path`` (``"lstm/kernel"``, the rnnlab path of
:meth:`Layer.iter_weights`: Keras also prefixes the model name and nests the RNN cell), ``shape``,
``dtype`` (a string, ``"float32"``), ``trainable``, ``numpy()`` (a copy), ``value`` (the live array),
``assign``, ``assign_add``, ``assign_sub``; ``np.asarray(v)``, indexing and arithmetic (``v * 2``, ``x @ v``)
give plain arrays of the current value.
"""
from __future__ import annotations

import numpy as np

__all__ = ["Variable"]


class Variable:
    """One weight of a layer, seen through its owner (see the module docstring)."""

    __slots__ = ("_owner", "_name", "_path", "_trainable")

    def __init__(self, owner, name: str, path: str, trainable: bool = True):
        self._owner = owner
        self._name = name
        self._path = path
        self._trainable = bool(trainable)

    # ------------------------------------------------------------ reading
    @property
    def value(self) -> np.ndarray:
        """The live parameter array (not a copy)."""
        return self._owner.params[self._name]

    @property
    def name(self) -> str:
        return self._name

    @property
    def path(self) -> str:
        return self._path

    @property
    def shape(self) -> tuple:
        return tuple(self.value.shape)

    @property
    def dtype(self) -> str:
        return self.value.dtype.name

    @property
    def ndim(self) -> int:
        return self.value.ndim

    @property
    def trainable(self) -> bool:
        return self._trainable

    def numpy(self) -> np.ndarray:
        """A copy of the current value."""
        return self.value.copy()

    def __array__(self, dtype=None, copy=None):
        v = self.value
        return v.astype(dtype) if dtype is not None else (v.copy() if copy else v)

    def __len__(self):
        return len(self.value)

    def __getitem__(self, key):
        return self.value[key].copy() if isinstance(self.value[key], np.ndarray) else self.value[key]

    # arithmetic reads the current value and gives plain arrays (as Keras variables give tensors)
    def __add__(self, other):
        return self.value + np.asarray(other)

    def __radd__(self, other):
        return np.asarray(other) + self.value

    def __sub__(self, other):
        return self.value - np.asarray(other)

    def __rsub__(self, other):
        return np.asarray(other) - self.value

    def __mul__(self, other):
        return self.value * np.asarray(other)

    def __rmul__(self, other):
        return np.asarray(other) * self.value

    def __truediv__(self, other):
        return self.value / np.asarray(other)

    def __matmul__(self, other):
        return self.value @ np.asarray(other)

    def __rmatmul__(self, other):
        return np.asarray(other) @ self.value

    def __neg__(self):
        return -self.value

    # ------------------------------------------------------------ writing
    def assign(self, value):
        """Copy ``value`` into the weight **in place** (shape must match; cast to the weight's dtype)."""
        if hasattr(value, "detach") and hasattr(value, "numpy"):
            value = value.detach().cpu().numpy()
        if isinstance(value, Variable):
            value = value.value
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"Variable '{self._path}': assign expects numbers, got dtype {arr.dtype}")
        target = self.value
        if arr.shape != target.shape:
            raise ValueError(f"Variable '{self._path}': assign expects shape {target.shape}, got {arr.shape}")
        target[...] = arr
        changed = getattr(self._owner, "_weights_changed", None)
        if changed is not None:
            changed()
        return self

    def assign_add(self, value):
        return self.assign(self.value + np.asarray(value))

    def assign_sub(self, value):
        return self.assign(self.value - np.asarray(value))

    def __repr__(self):
        return f"<Variable path={self._path}, shape={self.shape}, dtype={self.dtype}, trainable={self._trainable}>"


def weights_of(obj) -> list:
    """All weights of a layer or model as :class:`Variable` objects, in Keras ``get_weights()`` order."""
    trainable = {path for path, _, _ in obj.trainable_weight_refs()}
    return [Variable(owner, w, path, path in trainable and w not in getattr(owner, "_non_trainable_params", ()))
            for path, owner, w in obj.iter_weights()]


def trainable_weights_of(obj) -> list:
    return [v for v in weights_of(obj) if v.trainable]


def non_trainable_weights_of(obj) -> list:
    return [v for v in weights_of(obj) if not v.trainable]
