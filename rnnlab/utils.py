"""Small data helpers: ``to_categorical``, ``one_hot`` and ``set_random_seed``.

``to_categorical(y, num_classes=None)`` follows Keras: labels of shape ``S`` (a trailing axis of
size 1 is dropped) become ``S + (num_classes,)`` one-hot rows; ``num_classes`` defaults to
``max(y) + 1``. The result has the library float type (:func:`rnnlab.backend.floatx`, float32 by
default, as Keras 2's default ``dtype="float32"``) unless ``dtype`` is given. Unlike Keras, which
silently wraps negative labels and truncates fractional ones, bad labels raise ``ValueError``.

``one_hot(ids, depth)``: ids of any shape ``S`` -> ``S + (depth,)``; no axis is dropped.
"""
from __future__ import annotations

import numpy as np

from . import backend
from .backend import set_random_seed  # noqa: F401  (re-export)

__all__ = ["to_categorical", "one_hot", "set_random_seed"]


def _int_labels(y, fn):
    if hasattr(y, "detach") and hasattr(y, "numpy"):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            bad = float(y[~np.isfinite(y) | (y != np.round(y))].reshape(-1)[0])
            raise ValueError(f"{fn}: labels must be whole numbers, got {bad!r}")
    elif y.dtype.kind not in "biu":
        raise TypeError(f"{fn}: labels must be an integer array, got dtype {y.dtype}")
    return y.astype(np.int64)


def _encode(y, depth, fn, arg, dtype):
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth <= 0:
        raise ValueError(f"{fn}: {arg} must be a positive int, got {depth!r}")
    depth = int(depth)
    if y.size:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0:
            raise ValueError(f"{fn}: labels must be >= 0, got {lo}")
        if hi >= depth:
            raise ValueError(f"{fn}: label {hi} is out of range for {arg}={depth} (labels must be in [0, {depth}))")
    dtype = backend.floatx() if dtype is None else np.dtype(dtype)
    flat = y.reshape(-1)
    out = np.zeros((flat.size, depth), dtype=dtype)
    out[np.arange(flat.size), flat] = 1
    return out.reshape(y.shape + (depth,))


def to_categorical(y, num_classes=None, dtype=None):
    """Integer class labels ``y`` (shape ``S``, or ``S + (1,)``) -> one-hot ``S + (num_classes,)``."""
    y = _int_labels(y, "to_categorical")
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y[..., 0]
    if num_classes is None:
        if y.size == 0:
            raise ValueError("to_categorical: cannot infer num_classes from empty labels; pass num_classes")
        if y.min() < 0:
            raise ValueError(f"to_categorical: labels must be >= 0, got {int(y.min())}")
        num_classes = int(y.max()) + 1
    return _encode(y, num_classes, "to_categorical", "num_classes", dtype)


def one_hot(ids, depth, dtype=None):
    """Integer ids of shape ``S`` -> one-hot ``S + (depth,)`` (ids must be in ``[0, depth)``)."""
    return _encode(_int_labels(ids, "one_hot"), depth, "one_hot", "depth", dtype)
