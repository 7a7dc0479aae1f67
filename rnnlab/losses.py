"""Losses with hand-written gradients, reduced like Keras 3 (``sum_over_batch_size``).

Every loss first computes a *per-element* loss ``l`` of shape ``y_pred.shape[:-1]`` (one value per
sample, or per sample and time step for sequence outputs ``(B, T, C)``), then reduces it:

    L = sum(l * w) / N

where ``w = sample_weight * mask`` (either may be absent) and ``N`` is the number of non-masked
entries of ``l`` (all of them without a mask). This is Keras 3's ``sum_over_batch_size``: masked
steps contribute nothing and the mean is over valid entries only; ``sample_weight`` multiplies
before the mean but does not change ``N``. When every entry is masked, ``L = 0`` (Keras'
``divide_no_nan``). ``reduction="sum"`` gives ``sum(l * w)``.

``sample_weight`` may be ``(B,)`` (one weight per sample, broadcast over time steps) or the
shape of ``l`` (e.g. ``(B, T)``); ``mask`` is a boolean array of the shape of ``l``.

Per-element losses (``C`` = size of the last axis, ``eps`` = :func:`rnnlab.backend.epsilon`):

=====================================  ==============================================================
binary_crossentropy, probabilities     p = clip(y, eps, 1 - eps);  l = mean_C -(t log p + (1-t) log(1-p))
binary_crossentropy, from_logits       l = mean_C max(x, 0) - x t + log(1 + exp(-|x|))
categorical_crossentropy, probs        q = clip(y / sum_C y, eps, 1 - eps);  l = -sum_C t log q
categorical_crossentropy, logits       l = -sum_C t log_softmax(x)
sparse_categorical_crossentropy        as categorical with t = one_hot(label) (never materialised)
mean_squared_error                     l = mean_C (y - t)^2
mean_absolute_error                    l = mean_C |y - t|
=====================================  ==============================================================

Gradients dl/dy (the clip has zero gradient outside ``[eps, 1-eps]``, as in Keras/PyTorch):

* BCE probs: ``(p - t) / (p (1 - p)) / C`` inside the clip range; logits: ``(sigmoid(x) - t) / C``.
* CCE probs: with ``g_c = -t_c / q_c`` (0 where clipped), ``dl/dy_j = (g_j - sum_c g_c q_c) / sum_C y``.
* CCE logits: ``softmax(x) * sum_C t - t``.
* MSE: ``2 (y - t) / C``; MAE: ``sign(y - t) / C``.

Interface: ``loss(y_true, y_pred, sample_weight=None, mask=None) -> float`` and
``loss.forward_backward(...) -> (float, dL/dy_pred)`` (gradient of the reduced loss, same shape and
dtype as ``y_pred``).
"""
from __future__ import annotations

import numpy as np

from . import backend
from ._config import ConfigObject

_REDUCTIONS = ("sum_over_batch_size", "sum")


def _as_array(x, what):
    if hasattr(x, "detach") and hasattr(x, "numpy"):  # torch tensor
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise TypeError(f"{what} must be array-like, got {type(x).__name__}") from exc


class Loss(ConfigObject):
    """Base class: subclasses implement ``_elementwise(y_true, y_pred, need_grad)``.

    ``_elementwise`` gets validated arrays and returns ``(l, dl_dy)`` where ``l`` has shape
    ``y_pred.shape[:-1]`` and ``dl_dy`` (or ``None`` when ``need_grad`` is False) the shape of ``y_pred``.
    """

    #: canonical snake_case name (what ``serialize`` returns and what metrics look at)
    name = "loss"

    def __init__(self, reduction="sum_over_batch_size", name=None):
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {list(_REDUCTIONS)}, got {reduction!r}")
        self.reduction = reduction
        if name is not None:
            self.name = str(name)

    # ---------------------------------------------------------------- public
    def __call__(self, y_true, y_pred, sample_weight=None, mask=None) -> float:
        return self._run(y_true, y_pred, sample_weight, mask, need_grad=False)[0]

    def forward_backward(self, y_true, y_pred, sample_weight=None, mask=None):
        """Return ``(loss_value, dL/dy_pred)``; the gradient has ``y_pred``'s shape and dtype."""
        return self._run(y_true, y_pred, sample_weight, mask, need_grad=True)

    def get_config(self) -> dict:
        return {"reduction": self.reduction}

    # -------------------------------------------------------------- internals
    def _prepare_pred(self, y_pred):
        y_pred = _as_array(y_pred, f"{type(self).__name__}: y_pred")
        if y_pred.dtype.kind != "f":
            if y_pred.dtype.kind in "biu":
                y_pred = y_pred.astype(backend.floatx())
            else:
                raise TypeError(f"{type(self).__name__}: y_pred must be a float array, got dtype {y_pred.dtype}")
        if y_pred.ndim < 1 or y_pred.size == 0:
            raise ValueError(f"{type(self).__name__}: y_pred must be a non-empty array of shape (batch, ...), got shape {y_pred.shape}")
        return y_pred

    def _run(self, y_true, y_pred, sample_weight, mask, need_grad):
        y_pred = self._prepare_pred(y_pred)
        squeeze_back = False
        if y_pred.ndim == 1 and self._vector_pred_ok:
            # (B,) predictions of binary/regression losses mean (B, 1)
            y_pred = y_pred[:, None]
            squeeze_back = True
        y_true = self._prepare_true(_as_array(y_true, f"{type(self).__name__}: y_true"), y_pred)
        elem, dl = self._elementwise(y_true, y_pred, need_grad)
        w, denom = self._weights(elem.shape, sample_weight, mask, y_pred.dtype)
        if w is None:
            total = float(np.sum(elem, dtype=np.float64))
        else:
            total = float(np.vdot(elem.reshape(-1).astype(np.float64, copy=False), w.reshape(-1)))
        if self.reduction == "sum_over_batch_size":
            scale = 0.0 if denom == 0 else 1.0 / denom
        else:
            scale = 1.0
        value = total * scale
        if not need_grad:
            return value, None
        if w is None:
            dl *= y_pred.dtype.type(scale)
        else:
            dl *= (w * scale).astype(y_pred.dtype, copy=False)[..., None]
        if squeeze_back:
            dl = dl[:, 0]
        return value, dl

    def _weights(self, shape, sample_weight, mask, dtype):
        """Combined per-element weights (or None) and the divisor N of sum_over_batch_size."""
        w = None
        n = int(np.prod(shape))
        cls = type(self).__name__
        if sample_weight is not None:
            sw = _as_array(sample_weight, f"{cls}: sample_weight")
            if sw.dtype.kind not in "biuf":
                raise TypeError(f"{cls}: sample_weight must be numeric, got dtype {sw.dtype}")
            if sw.ndim == len(shape) + 1 and sw.shape[-1] == 1:
                sw = sw[..., 0]
            if sw.shape == shape:
                w = sw.astype(np.float64)
            elif sw.ndim >= 1 and sw.shape == shape[: sw.ndim]:
                w = np.broadcast_to(sw.reshape(sw.shape + (1,) * (len(shape) - sw.ndim)), shape).astype(np.float64)
            else:
                raise ValueError(
                    f"{cls}: sample_weight must have shape {shape[:1]} (per sample) or {shape} (per element), "
                    f"got shape {sw.shape}"
                )
        if mask is not None:
            m = _as_array(mask, f"{cls}: mask")
            if m.ndim == len(shape) + 1 and m.shape[-1] == 1:
                m = m[..., 0]
            if m.shape != shape:
                raise ValueError(f"{cls}: mask must have shape {shape} (y_pred.shape[:-1]), got shape {m.shape}")
            m = m.astype(bool)
            n = int(np.count_nonzero(m))
            w = m.astype(np.float64) if w is None else w * m
        return w, n

    _vector_pred_ok = True

    def _prepare_true(self, y_true, y_pred):
        """Default (same-shape targets): accept a missing or extra trailing axis of size 1."""
        cls = type(self).__name__
        if y_true.dtype.kind not in "biuf":
            raise TypeError(f"{cls}: y_true must be numeric, got dtype {y_true.dtype}")
        if y_true.shape != y_pred.shape:
            if y_true.ndim == y_pred.ndim - 1 and y_pred.shape[-1] == 1 and y_true.shape == y_pred.shape[:-1]:
                y_true = y_true[..., None]
            elif y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1 and y_true.shape[:-1] == y_pred.shape:
                y_true = y_true[..., 0]
            else:
                raise ValueError(
                    f"{cls}: y_true and y_pred must have the same shape, got y_true.shape={y_true.shape} "
                    f"and y_pred.shape={y_pred.shape}"
                )
        return y_true.astype(y_pred.dtype, copy=False)


def _log1p_exp_neg_abs(x):
    return np.log1p(np.exp(-np.abs(x)))


class BinaryCrossentropy(Loss):
    """Binary cross-entropy on probabilities (default) or logits (``from_logits=True``).

    y_true, y_pred: (B, ..., C) of 0/1 targets (soft labels allowed) and probabilities/logits;
    a (B,) target with (B, 1) predictions is accepted. Per-element loss: mean over the last axis.
    Labels outside [0, 1] (or NaN) raise ``ValueError`` (Keras would return a meaningless loss).
    """

    name = "binary_crossentropy"

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction, name)
        self.from_logits = bool(from_logits)

    def get_config(self):
        return {"from_logits": self.from_logits, **super().get_config()}

    def _elementwise(self, t, y, need_grad):
        c = y.shape[-1]
        if t.size and not (t.min() >= 0 and t.max() <= 1):      # NaN fails both comparisons too
            bad = t[~((t >= 0) & (t <= 1))].reshape(-1)[0]
            raise ValueError(f"{self.name}: labels (y_true) must be in [0, 1] (0/1 or soft labels), got "
                             f"{float(bad)!r}; "
                             "for class ids use sparse_categorical_crossentropy")
        if self.from_logits:
            per = np.maximum(y, 0) - y * t + _log1p_exp_neg_abs(y)
            dl = None
            if need_grad:
                dl = np.tanh(y * 0.5)
                dl *= 0.5
                dl += 0.5
                dl -= t
                dl /= c
        else:
            eps = backend.epsilon()
            p = np.clip(y, eps, 1.0 - eps)
            per = -(t * np.log(p) + (1.0 - t) * np.log1p(-p))
            dl = None
            if need_grad:
                inside = (y >= eps) & (y <= 1.0 - eps)
                dl = (p - t) / (p * (1.0 - p) * c)
                dl *= inside
        return per.mean(axis=-1), dl


class CategoricalCrossentropy(Loss):
    """Cross-entropy with one-hot (or soft) targets over the last axis.

    y_true, y_pred: (B, ..., C), C > 1. With probabilities, ``y_pred`` is renormalised to sum to 1
    and clipped to ``[eps, 1-eps]`` as Keras does; with logits a stable log-softmax is used.
    """

    name = "categorical_crossentropy"

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction, name)
        self.from_logits = bool(from_logits)

    _vector_pred_ok = False

    def get_config(self):
        return {"from_logits": self.from_logits, **super().get_config()}

    def _prepare_pred(self, y_pred):
        y_pred = super()._prepare_pred(y_pred)
        if y_pred.ndim < 2 or y_pred.shape[-1] < 2:
            raise ValueError(
                f"{type(self).__name__}: y_pred must have shape (batch, ..., num_classes) with num_classes > 1, "
                f"got shape {y_pred.shape} (use binary_crossentropy for a single output unit)"
            )
        return y_pred

    def _prepare_true(self, y_true, y_pred):
        if y_true.shape != y_pred.shape:
            hint = ""
            if y_true.shape == y_pred.shape[:-1] or (y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1):
                hint = " (integer labels? use sparse_categorical_crossentropy or to_categorical)"
            raise ValueError(
                f"{type(self).__name__}: y_true and y_pred must have the same shape, got y_true.shape={y_true.shape} "
                f"and y_pred.shape={y_pred.shape}{hint}"
            )
        return super()._prepare_true(y_true, y_pred)

    def _elementwise(self, t, y, need_grad):
        if self.from_logits:
            z = y - y.max(axis=-1, keepdims=True)
            e = np.exp(z)
            s = e.sum(axis=-1, keepdims=True)
            logp = z - np.log(s)
            per = -np.sum(t * logp, axis=-1)
            dl = None
            if need_grad:
                e /= s
                dl = e * t.sum(axis=-1, keepdims=True)
                dl -= t
            return per, dl
        eps = backend.epsilon()
        s = y.sum(axis=-1, keepdims=True)
        q = y / s
        qc = np.clip(q, eps, 1.0 - eps)
        per = -np.sum(t * np.log(qc), axis=-1)
        dl = None
        if need_grad:
            g = -t / qc
            g *= (q >= eps) & (q <= 1.0 - eps)
            dl = (g - np.sum(g * q, axis=-1, keepdims=True)) / s
        return per, dl


class SparseCategoricalCrossentropy(Loss):
    """Cross-entropy with integer class labels.

    y_true: (B, ...) integer labels in [0, C) (a trailing axis of size 1 is accepted; float arrays
    holding whole numbers are accepted as Keras does); y_pred: (B, ..., C) probabilities or logits.
    The one-hot matrix is never built: the loss gathers ``log q[label]``.
    """

    name = "sparse_categorical_crossentropy"
    _vector_pred_ok = False

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction, name)
        self.from_logits = bool(from_logits)

    def get_config(self):
        return {"from_logits": self.from_logits, **super().get_config()}

    def _prepare_pred(self, y_pred):
        y_pred = super()._prepare_pred(y_pred)
        if y_pred.ndim < 2:
            raise ValueError(
                f"{type(self).__name__}: y_pred must have shape (batch, ..., num_classes), got shape {y_pred.shape}"
            )
        return y_pred

    def _prepare_true(self, y_true, y_pred):
        cls = type(self).__name__
        if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
            y_true = y_true[..., 0]
        if y_true.shape != y_pred.shape[:-1]:
            hint = " (one-hot targets? use categorical_crossentropy)" if y_true.shape == y_pred.shape else ""
            raise ValueError(
                f"{cls}: y_true must have shape y_pred.shape[:-1] = {y_pred.shape[:-1]} (integer labels), got "
                f"y_true.shape={y_true.shape} with y_pred.shape={y_pred.shape}{hint}"
            )
        if y_true.dtype.kind == "f":
            bad = ~np.isfinite(y_true) | (y_true != np.round(y_true))
            if np.any(bad):
                raise ValueError(f"{cls}: y_true must hold integer class labels, got the non-integer value "
                                 f"{float(y_true[bad].reshape(-1)[0])}")
        elif y_true.dtype.kind not in "biu":
            raise TypeError(f"{cls}: y_true must be an integer array of class labels, got dtype {y_true.dtype}")
        labels = y_true.astype(np.intp, copy=False)
        c = y_pred.shape[-1]
        if labels.size:
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= c:
                bad = lo if lo < 0 else hi
                raise ValueError(f"{cls}: label {bad} is out of range: labels must be in [0, {c}) for y_pred with "
                                 f"{c} classes (y_pred.shape={y_pred.shape})")
        return labels

    def _elementwise(self, labels, y, need_grad):
        c = y.shape[-1]
        y2 = y.reshape(-1, c)
        lab = labels.reshape(-1)
        rows = np.arange(lab.size)
        lead = y.shape[:-1]
        if self.from_logits:
            m = y2.max(axis=1, keepdims=True)
            e = np.subtract(y2, m)
            np.exp(e, out=e)
            s = e.sum(axis=1)
            per = np.log(s) + m[:, 0] - y2[rows, lab]
            dl = None
            if need_grad:
                e /= s[:, None]
                e[rows, lab] -= 1.0
                dl = e.reshape(y.shape)
            return per.reshape(lead), dl
        eps = backend.epsilon()
        s = y2.sum(axis=1)
        q = y2[rows, lab] / s
        qc = np.clip(q, eps, 1.0 - eps)
        per = -np.log(qc)
        dl = None
        if need_grad:
            g = np.where((q >= eps) & (q <= 1.0 - eps), -1.0 / qc, 0.0).astype(y.dtype)
            # dl/dy_j = g (delta_{j,label} - q) / s
            dl = np.broadcast_to((-(g * q) / s)[:, None], y2.shape).copy()
            dl[rows, lab] += g / s
            dl = dl.reshape(y.shape)
        return per.reshape(lead), dl


class MeanSquaredError(Loss):
    """Mean of squared errors over the last axis: ``l = mean_C (y_pred - y_true)^2``."""

    name = "mean_squared_error"

    def _elementwise(self, t, y, need_grad):
        d = y - t
        per = np.mean(d * d, axis=-1)
        dl = None
        if need_grad:
            d *= 2.0 / y.shape[-1]
            dl = d
        return per, dl


class MeanAbsoluteError(Loss):
    """Mean of absolute errors over the last axis: ``l = mean_C |y_pred - y_true|`` (gradient sign(.) / C)."""

    name = "mean_absolute_error"

    def _elementwise(self, t, y, need_grad):
        d = y - t
        per = np.mean(np.abs(d), axis=-1)
        dl = None
        if need_grad:
            dl = np.sign(d)
            dl /= y.shape[-1]
        return per, dl


# Functional forms (Keras names): per-call, default settings.
def binary_crossentropy(y_true, y_pred, from_logits=False, sample_weight=None, mask=None) -> float:
    return BinaryCrossentropy(from_logits=from_logits)(y_true, y_pred, sample_weight, mask)


def categorical_crossentropy(y_true, y_pred, from_logits=False, sample_weight=None, mask=None) -> float:
    return CategoricalCrossentropy(from_logits=from_logits)(y_true, y_pred, sample_weight, mask)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, sample_weight=None, mask=None) -> float:
    return SparseCategoricalCrossentropy(from_logits=from_logits)(y_true, y_pred, sample_weight, mask)


def mean_squared_error(y_true, y_pred, sample_weight=None, mask=None) -> float:
    return MeanSquaredError()(y_true, y_pred, sample_weight, mask)


def mean_absolute_error(y_true, y_pred, sample_weight=None, mask=None) -> float:
    return MeanAbsoluteError()(y_true, y_pred, sample_weight, mask)


mse = mean_squared_error
mae = mean_absolute_error

_ALIASES = {
    "binary_crossentropy": BinaryCrossentropy,
    "bce": BinaryCrossentropy,
    "binarycrossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "categoricalcrossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "sparsecategoricalcrossentropy": SparseCategoricalCrossentropy,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "meansquarederror": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "meanabsoluteerror": MeanAbsoluteError,
}
_FUNCTIONS = {
    binary_crossentropy: BinaryCrossentropy, categorical_crossentropy: CategoricalCrossentropy,
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy, mean_squared_error: MeanSquaredError,
    mean_absolute_error: MeanAbsoluteError,
}
_CLASSES = {c.__name__: c for c in (BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy,
                                    MeanSquaredError, MeanAbsoluteError)}


def names() -> list[str]:
    """Valid string identifiers for :func:`get`."""
    return sorted(k for k in _ALIASES if "_" in k or k in ("mse", "mae", "bce")) + sorted(_CLASSES)


def get(identifier) -> Loss:
    """Resolve a loss: a :class:`Loss` instance (returned as is), a name (``"mse"``,
    ``"binary_crossentropy"``, ``"SparseCategoricalCrossentropy"`` ...), a loss class, one of the
    functions of this module, or a ``{"class_name": ..., "config": {...}}`` dict (see :func:`serialize`)."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier) and identifier in _FUNCTIONS:
        return _FUNCTIONS[identifier]()
    if isinstance(identifier, dict):
        cname = identifier.get("class_name")
        if cname not in _CLASSES:
            raise ValueError(f"Unknown loss class {cname!r}; valid: {sorted(_CLASSES)}")
        return _CLASSES[cname].from_config(identifier.get("config", {}))
    if isinstance(identifier, str):
        key = identifier.strip().lower()
        if key in _ALIASES:
            return _ALIASES[key]()
        raise ValueError(f"Unknown loss {identifier!r}; valid names: {names()}")
    raise TypeError(f"Could not interpret loss identifier {identifier!r} (type {type(identifier).__name__}); "
                    f"give a name such as 'mse' or a Loss instance")


def serialize(loss: Loss) -> dict:
    """JSON-able description that :func:`get` turns back into an equal loss."""
    return {"class_name": type(loss).__name__, "config": loss.get_config()}
