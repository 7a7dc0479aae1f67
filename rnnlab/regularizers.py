"""Weight and activity regularizers (Keras 3 ``keras.regularizers``), with hand-written gradients.

A regularizer maps a weight (or a layer output) ``W`` to a scalar penalty that training adds to the loss:

* ``L1(l1=0.01)``:   ``R(W) = l1 * sum(|W|)``,              ``dR/dW = l1 * sign(W)`` (0 at 0, as autodiff's ``abs``)
* ``L2(l2=0.01)``:   ``R(W) = l2 * sum(W**2)``,             ``dR/dW = 2 * l2 * W``
* ``L1L2(l1=0.0, l2=0.0)``: the sum of both (Keras' defaults: 0 here, 0.01 for ``L1``/``L2``).

Layers take them as ``kernel_regularizer``, ``recurrent_regularizer``, ``bias_regularizer``,
``embeddings_regularizer`` (weight penalties, added once per weight per step) and ``activity_regularizer``
(``R(y) / batch`` for every output ``y`` of the layer's call, as Keras 3 divides by the batch size).
Strings: ``"l1"``, ``"l2"``, ``"l1_l2"``/``"l1l2"`` (class defaults), and the class names.
"""
from __future__ import annotations

import math

import numpy as np

from ._config import ConfigEquality, ConfigObject

__all__ = ["Regularizer", "L1", "L2", "L1L2", "get", "serialize", "deserialize", "l1", "l2", "l1_l2"]


def _factor(value, name, cls):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)) or float(value) < 0:
        raise ValueError(f"{cls}: invalid value for argument {name}: expected a non-negative finite float, "
                         f"got {value!r}")
    return float(value)


class Regularizer(ConfigObject, ConfigEquality):
    """Base class: ``__call__(W) -> float`` and ``gradient(W) -> dR/dW`` (same shape and dtype as ``W``)."""

    def __call__(self, x) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def gradient(self, x) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}


class L1L2(Regularizer):
    """``R(W) = l1 * sum(|W|) + l2 * sum(W**2)``; Keras' defaults ``l1=0.0, l2=0.0``."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(l1, "l1", type(self).__name__)
        self.l2 = _factor(l2, "l2", type(self).__name__)

    def __call__(self, x):
        x = np.asarray(x)
        r = 0.0
        if self.l1:
            r += self.l1 * float(np.abs(x).sum())
        if self.l2:
            r += self.l2 * float(np.square(x).sum())
        return r

    def gradient(self, x):
        x = np.asarray(x)
        g = np.zeros_like(x)
        if self.l1:
            g += x.dtype.type(self.l1) * np.sign(x)
        if self.l2:
            g += x.dtype.type(2.0 * self.l2) * x
        return g

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    """``R(W) = l1 * sum(|W|)``; Keras' default ``l1=0.01``."""

    def __init__(self, l1=0.01):
        super().__init__(l1=l1, l2=0.0)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    """``R(W) = l2 * sum(W**2)``; Keras' default ``l2=0.01``."""

    def __init__(self, l2=0.01):
        super().__init__(l1=0.0, l2=l2)

    def get_config(self):
        return {"l2": self.l2}


l1, l2, l1_l2 = L1, L2, L1L2
_BY_NAME = {"L1": L1, "L2": L2, "L1L2": L1L2, "l1": L1, "l2": L2, "l1_l2": L1L2, "l1l2": L1L2}


def serialize(reg):
    """``{"class_name": ..., "config": ...}`` (Keras' shape), or ``None``."""
    if reg is None:
        return None
    return {"class_name": type(reg).__name__, "config": reg.get_config()}


def deserialize(config):
    return get(config)


def get(identifier, what="regularizer"):
    """``None``, a :class:`Regularizer`, a name (``"l1"``, ``"l2"``, ``"l1_l2"``, ``"L1"`` ...) or a serialized
    dict -> a regularizer (or ``None``). Anything else: ``ValueError``/``TypeError`` naming ``what``."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier)
        if cls is None:
            raise ValueError(f"{what}: unknown regularizer {identifier!r}; known: {sorted(_BY_NAME)}")
        return cls()
    if isinstance(identifier, dict):
        name, cfg = identifier.get("class_name"), identifier.get("config", {})
        if name not in _BY_NAME:
            raise ValueError(f"{what}: unknown regularizer class {name!r} in {identifier!r}; known: {sorted(_BY_NAME)}")
        return _BY_NAME[name](**(cfg or {}))
    raise TypeError(f"{what}: expected None, a Regularizer, a name or a config dict, got {type(identifier).__name__}")


# ------------------------------------------------------------------ what the training engine applies
class ActivityTape:
    """What one step's activity regularizers write: ``losses`` (the penalties) and, when ``record`` (a step
    with a backward pass), each layer's outputs for its backward. The engine sets it for one step only, so
    nothing is left over when a step stops early."""

    def __init__(self, record=True):
        self.losses, self.record, self.outputs = [], record, {}

    def total(self) -> float:
        return float(sum(self.losses))


def wrap_activity(layer):
    """Give ``layer`` (whose ``activity_regularizer`` is set) an instance ``forward``/``backward`` that, while a
    step's :class:`ActivityTape` is set, add ``R(y) / batch`` for each output ``y`` to the step's loss and
    ``R'(y) / batch`` to the output gradient in backward (outputs kept on a stack: shared layers' calls
    are undone in reverse order)."""
    from .layers.base import _ACTIVITY_LOSSES
    fwd, bwd = type(layer).forward.__get__(layer), type(layer).backward.__get__(layer)

    def _batch(y):
        return y.shape[0] if np.ndim(y) > 0 and y.shape[0] else 1

    def forward(inputs, *args, **kwargs):
        out = fwd(inputs, *args, **kwargs)
        tape = _ACTIVITY_LOSSES.get()
        if tape is not None:
            reg = layer.activity_regularizer
            outs = list(out) if isinstance(out, (list, tuple)) else [out]
            tape.losses.extend(reg(y) / _batch(y) for y in outs)
            if tape.record:
                tape.outputs.setdefault(id(layer), []).append(outs)
        return out

    def backward(grad):
        tape = _ACTIVITY_LOSSES.get()
        stack = None if tape is None else tape.outputs.get(id(layer))
        if stack:
            outs, reg = stack.pop(), layer.activity_regularizer
            grads = list(grad) if isinstance(grad, (list, tuple)) else [grad]
            new = []
            for y, g in zip(outs, grads):
                d = reg.gradient(y) / y.dtype.type(_batch(y))
                new.append(d if g is None else g + d)
            grad = new if isinstance(grad, (list, tuple)) else new[0]
        return bwd(grad)

    layer.forward, layer.backward = forward, backward


def _unique_refs(refs):
    seen = set()
    for path, owner, wname in refs:
        if (id(owner), wname) not in seen:
            seen.add((id(owner), wname))
            yield owner, wname


def weight_penalty(refs) -> float:
    """Sum of the weight regularizers' penalties over trainable weight refs ``(path, owner, name)``."""
    total = 0.0
    for owner, wname in _unique_refs(refs):
        reg = owner.weight_regularizer(wname) if hasattr(owner, "weight_regularizer") else None
        if reg is not None:
            total += reg(owner.params[wname])
    return total


def add_penalty_gradients(refs) -> None:
    """After backward: ``grads[w] += dR/dw`` for every regularized trainable weight."""
    for owner, wname in _unique_refs(refs):
        reg = owner.weight_regularizer(wname) if hasattr(owner, "weight_regularizer") else None
        if reg is not None:
            g = owner.grads[wname]
            if hasattr(g, "to_dense"):  # an Embedding's row-sparse gradient: the penalty touches every row
                owner.grads[wname] = g.to_dense() + reg.gradient(owner.params[wname])
            else:
                g += reg.gradient(owner.params[wname])


def apply_constraints(refs) -> None:
    """After the optimizer update: ``W <- constraint(W)`` in place, for every constrained trainable weight."""
    from . import constraints as _constraints  # noqa: F401  (the module the constraints come from)
    for owner, wname in _unique_refs(refs):
        c = owner.weight_constraint(wname) if hasattr(owner, "weight_constraint") else None
        if c is not None:
            w = owner.params[wname]
            w[...] = c(w)
            if hasattr(owner, "_weights_changed"):
                owner._weights_changed()
