"""Streaming metrics with Keras semantics.

A metric computes a per-element value ``v`` of shape ``y_pred.shape[:-1]`` (per sample, or per
sample and time step for sequence outputs) and keeps a weighted running mean over batches:

    total += sum(v * w);  count += sum(w);  result() = total / count   (0 when count is 0)

with ``w = sample_weight * mask`` (``sample_weight`` of shape (B,) broadcasts over time steps;
masked steps get weight 0, so they are ignored). This is what Keras' ``MeanMetricWrapper`` computes.

Per-element values:

* ``binary_accuracy``: ``mean_C [ (y_pred > threshold) == y_true ]`` (threshold 0.5);
* ``categorical_accuracy``: ``argmax y_true == argmax y_pred``;
* ``sparse_categorical_accuracy``: ``y_true == argmax y_pred`` (integer labels);
* ``mae`` / ``mse``: ``mean_C |y_pred - y_true|`` / ``mean_C (y_pred - y_true)^2``.

``get("accuracy", loss=...)`` picks the accuracy like Keras: binary for binary_crossentropy,
categorical for categorical_crossentropy, sparse categorical for sparse_categorical_crossentropy;
without a deciding loss it looks at the first batch: one output unit -> binary, labels with one
axis fewer than the predictions (or a trailing axis of 1) -> sparse, else categorical.
Deliberate difference from Keras: with ``BinaryCrossentropy(from_logits=True)`` the binary
accuracy thresholds the logits at 0 (= probability 0.5) instead of at 0.5.
"""
from __future__ import annotations

import numpy as np


def _arr(x):
    if hasattr(x, "detach") and hasattr(x, "numpy"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _weights(shape, sample_weight, mask, name):
    w = None
    if sample_weight is not None:
        sw = _arr(sample_weight).astype(np.float64)
        if sw.ndim == len(shape) + 1 and sw.shape[-1] == 1:
            sw = sw[..., 0]
        if sw.shape != shape:
            if sw.ndim >= 1 and sw.shape == shape[: sw.ndim]:
                sw = np.broadcast_to(sw.reshape(sw.shape + (1,) * (len(shape) - sw.ndim)), shape)
            else:
                raise ValueError(f"metric '{name}': sample_weight must have shape {shape[:1]} or {shape}, "
                                 f"got shape {sw.shape}")
        w = sw
    if mask is not None:
        m = _arr(mask)
        if m.ndim == len(shape) + 1 and m.shape[-1] == 1:
            m = m[..., 0]
        if m.shape != shape:
            raise ValueError(f"metric '{name}': mask must have shape {shape} (y_pred.shape[:-1]), got shape {m.shape}")
        w = m.astype(np.float64) if w is None else w * m.astype(bool)
    return w


def _same_shape_true(y_true, y_pred, name):
    if y_true.shape == y_pred.shape:
        return y_true
    if y_pred.shape[-1] == 1 and y_true.shape == y_pred.shape[:-1]:
        return y_true[..., None]
    raise ValueError(f"metric '{name}': y_true and y_pred must have the same shape, got y_true.shape={y_true.shape} "
                     f"and y_pred.shape={y_pred.shape}")


def _pred2d(y_pred):
    y_pred = _arr(y_pred)
    if y_pred.ndim < 1 or y_pred.size == 0:
        raise ValueError(f"y_pred must be a non-empty array of shape (batch, ...), got shape {y_pred.shape}")
    return y_pred[:, None] if y_pred.ndim == 1 else y_pred


# ----------------------------------------------------------- per-element functions
def binary_accuracy(y_true, y_pred, threshold=0.5):
    """Per-element ``mean_C[(y_pred > threshold) == y_true]``, shape ``y_pred.shape[:-1]``."""
    y_pred = _pred2d(y_pred)
    y_true = _same_shape_true(_arr(y_true), y_pred, "binary_accuracy")
    return np.mean((y_pred > threshold) == (y_true > 0.5), axis=-1)


def categorical_accuracy(y_true, y_pred):
    """Per-element ``argmax(y_true) == argmax(y_pred)`` over the last axis."""
    y_pred = _pred2d(y_pred)
    y_true = _arr(y_true)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"metric 'categorical_accuracy': y_true (one-hot) must have y_pred's shape {y_pred.shape}, "
                         f"got {y_true.shape} (integer labels? use sparse_categorical_accuracy)")
    return (np.argmax(y_true, axis=-1) == np.argmax(y_pred, axis=-1)).astype(np.float64)


def sparse_categorical_accuracy(y_true, y_pred):
    """Per-element ``y_true == argmax(y_pred)`` with integer labels of shape ``y_pred.shape[:-1]``."""
    y_pred = _pred2d(y_pred)
    y_true = _arr(y_true)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    if y_true.shape != y_pred.shape[:-1]:
        raise ValueError(f"metric 'sparse_categorical_accuracy': y_true must have shape y_pred.shape[:-1] = "
                         f"{y_pred.shape[:-1]}, got {y_true.shape}")
    return (y_true == np.argmax(y_pred, axis=-1)).astype(np.float64)


def mean_absolute_error(y_true, y_pred):
    y_pred = _pred2d(y_pred)
    y_true = _same_shape_true(_arr(y_true), y_pred, "mean_absolute_error")
    return np.mean(np.abs(y_pred - y_true), axis=-1)


def mean_squared_error(y_true, y_pred):
    y_pred = _pred2d(y_pred)
    y_true = _same_shape_true(_arr(y_true), y_pred, "mean_squared_error")
    d = y_pred - y_true
    return np.mean(d * d, axis=-1)


# ------------------------------------------------------------------- Metric objects
class Metric:
    """Weighted running mean of a per-element function; ``update``/``result``/``reset``."""

    def __init__(self, fn, name, **fn_kwargs):
        self._fn = fn
        self._fn_kwargs = fn_kwargs
        self.name = name
        self.reset()

    def reset(self) -> None:
        self.total = 0.0
        self.count = 0.0

    def update(self, y_true, y_pred, sample_weight=None, mask=None) -> None:
        values = self._fn(y_true, y_pred, **self._fn_kwargs)
        w = _weights(values.shape, sample_weight, mask, self.name)
        if w is None:
            self.total += float(np.sum(values))
            self.count += float(values.size)
        else:
            self.total += float(np.sum(values * w))
            self.count += float(np.sum(w))

    def result(self) -> float:
        return self.total / self.count if self.count else 0.0

    def get_config(self) -> dict:
        return {"name": self.name, **self._fn_kwargs}

    def __repr__(self):
        return f"<Metric {self.name}={self.result():.4f}>"


class BinaryAccuracy(Metric):
    def __init__(self, name="binary_accuracy", threshold=0.5):
        super().__init__(binary_accuracy, name, threshold=float(threshold))


class CategoricalAccuracy(Metric):
    def __init__(self, name="categorical_accuracy"):
        super().__init__(categorical_accuracy, name)


class SparseCategoricalAccuracy(Metric):
    def __init__(self, name="sparse_categorical_accuracy"):
        super().__init__(sparse_categorical_accuracy, name)


class MeanAbsoluteError(Metric):
    def __init__(self, name="mean_absolute_error"):
        super().__init__(mean_absolute_error, name)


class MeanSquaredError(Metric):
    def __init__(self, name="mean_squared_error"):
        super().__init__(mean_squared_error, name)


class Accuracy(Metric):
    """``"accuracy"``/``"acc"``: resolves to binary, categorical or sparse categorical accuracy from
    the loss when it decides, else from the shapes of the first batch (see the module docstring)."""

    def __init__(self, name="accuracy", loss=None):
        self._loss = loss
        self.kind = None
        fn, threshold = None, 0.5
        if loss is not None:
            from . import losses as _losses
            try:
                lo = _losses.get(loss)
            except (TypeError, ValueError):  # a custom loss: decide from the shapes
                lo = None
            if isinstance(lo, _losses.BinaryCrossentropy):
                fn, threshold = binary_accuracy, (0.0 if lo.from_logits else 0.5)
            elif isinstance(lo, _losses.SparseCategoricalCrossentropy):
                fn = sparse_categorical_accuracy
            elif isinstance(lo, _losses.CategoricalCrossentropy):
                fn = categorical_accuracy
        super().__init__(fn, name)
        if fn is not None:
            self._set(fn, threshold)

    def _set(self, fn, threshold=0.5):
        self._fn = fn
        self.kind = fn.__name__
        self._fn_kwargs = {"threshold": threshold} if fn is binary_accuracy else {}

    def update(self, y_true, y_pred, sample_weight=None, mask=None):
        if self._fn is None:
            yt, yp = _arr(y_true), _arr(y_pred)
            if yp.ndim == 1 or yp.shape[-1] == 1:
                self._set(binary_accuracy)
            elif yt.ndim < yp.ndim or (yt.ndim == yp.ndim and yt.shape[-1] == 1):
                self._set(sparse_categorical_accuracy)
            else:
                self._set(categorical_accuracy)
        super().update(y_true, y_pred, sample_weight, mask)

    def get_config(self):
        return {"name": self.name}


_FACTORIES = {
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
}
_CLASS_NAMES = {c.__name__: c for c in (BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
                                        MeanAbsoluteError, MeanSquaredError, Accuracy)}


def names() -> list[str]:
    return sorted(["accuracy", "acc", *_FACTORIES])


def get(identifier, loss=None) -> Metric:
    """A fresh :class:`Metric` from a name (``"accuracy"``/``"acc"`` resolved with ``loss``, see the
    module docstring; ``"binary_accuracy"``, ``"mae"`` ...), a class, or an existing instance (as is).
    The metric's ``name`` is the identifier string, as the key Keras puts in ``history``."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, str):
        key = identifier.strip()
        if key.lower() in ("accuracy", "acc"):
            return Accuracy(name=key, loss=loss)
        if key.lower() in _FACTORIES:
            return _FACTORIES[key.lower()](name=key)
        if key in _CLASS_NAMES:
            return _CLASS_NAMES[key]()
        raise ValueError(f"Unknown metric {identifier!r}; valid names: {names()}")
    raise TypeError(f"Could not interpret metric identifier {identifier!r} (type {type(identifier).__name__})")
