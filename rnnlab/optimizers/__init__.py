"""Optimizers with Keras 3 update rules, applied in place to layer weights.

Usage (what ``Model.fit`` does each step)::

    opt = Adam(learning_rate=1e-3, clipnorm=1.0)
    opt.apply(model.trainable_weight_refs())   # refs: (path, owner_layer, weight_name)

For each ref, ``owner.grads[name]`` is read and ``owner.params[name]`` is updated **in place**; the
optimizer's slot variables (momenta, second moments ...) are keyed by ``path``. ``iterations`` counts
``apply`` calls; ``learning_rate`` may be reassigned between steps (decay, ReduceLROnPlateau) or be a
callable ``schedule(iterations) -> float``.

Update rules (``g`` the gradient after clipping, ``t = iterations + 1``, all exactly as Keras 3):

* SGD:        ``v = momentum v - lr g``;  ``w += v`` (nesterov: ``w += momentum v - lr g``);
              without momentum ``w -= lr g``.
* RMSprop:    ``s = rho s + (1-rho) g^2``; centered: ``a = rho a + (1-rho) g``, ``den = s - a^2 + eps``,
              else ``den = s + eps``; ``inc = lr g / sqrt(den)``; momentum: ``m = momentum m + inc``, ``w -= m``;
              else ``w -= inc``.
* Adam:       ``m += (1-b1)(g - m)``; ``v += (1-b2)(g^2 - v)``; amsgrad: ``vh = max(vh, v)`` used for v;
              ``w -= lr sqrt(1-b2^t) / (1-b1^t) * m / (sqrt(v) + eps)``.
* Adagrad:    ``acc += g^2`` (``acc`` starts at ``initial_accumulator_value``); ``w -= lr g / sqrt(acc + eps)``.

PyTorch places epsilon differently (Adam: ``sqrt(v)/sqrt(1-b2^t) + eps``; RMSprop/Adagrad:
``sqrt(.) + eps``), so the two libraries agree exactly only with ``epsilon=0``; the parity tests use that.

Clipping (Keras 3, at most one of them): ``clipnorm`` rescales each weight's gradient to L2 norm
``<= clipnorm`` (``g * c / max(||g||, c)``); ``global_clipnorm`` rescales all gradients together by
``c / max(global_norm, c)`` (NaN when the global norm is not finite, so a bad step is visible);
``clipvalue`` clips elementwise to ``[-c, c]``. Norm clipping is folded into the update as a scalar,
so it costs no extra pass over the gradients.

Sparse gradients (:class:`rnnlab.backend.RowSparseGrad`, from ``Embedding``) are applied without
building the dense ``(V, E)`` gradient, with results identical to the dense gradient: slots of
untouched rows still decay (Adam/RMSprop/momentum), as in Keras and dense PyTorch. SGD without
momentum and Adagrad only touch the rows present. ``Adam(lazy=True)`` instead updates only the rows
present in a sparse gradient (moments and weights), which is ``torch.optim.SparseAdam``'s rule.
"""
from __future__ import annotations

import json
import math
import numbers
import warnings

import numpy as np

from .. import _native
from ..backend import RowSparseGrad
from . import schedules
from .schedules import LearningRateSchedule


def _sq_norm(g) -> float:
    if g is None:
        return 0.0
    if isinstance(g, RowSparseGrad):
        return g.sq_norm()
    flat = g.reshape(-1)
    return float(np.dot(flat, flat))


def global_norm(grads) -> float:
    """``sqrt(sum ||g||^2)`` over a list of gradients (arrays, RowSparseGrad or None).

    Returns ``inf``/``nan`` when a gradient holds them, so training loops can detect divergence.
    """
    return math.sqrt(sum(_sq_norm(g) for g in grads))


def _check_positive_or_none(owner, name, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{owner}: {name} must be a positive number or None, got {value!r}")
    return float(value)


def _check_unit(owner, name, value, upper_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a float, got {type(value).__name__}")
    ok = 0.0 <= value < 1.0 if upper_open else 0.0 <= value <= 1.0
    if not ok:
        raise ValueError(f"{owner}: {name} must be in [0, 1{')' if upper_open else ']'}, got {value!r}")
    return float(value)


def _epsilon(owner, value):
    """Keras 2 wrote ``epsilon=None`` for "the backend epsilon" (1e-7)."""
    return _check_nonneg(owner, "epsilon", 1e-7 if value is None else value)


def _legacy_kwargs(owner, learning_rate, legacy):
    """Keras 2 argument names: ``lr`` (renamed ``learning_rate``) and ``decay`` (time-based decay
    ``lr / (1 + decay * iterations)``, here an :class:`~rnnlab.optimizers.schedules.InverseTimeDecay`).
    Each gives a ``DeprecationWarning``; anything else is a ``TypeError`` naming it."""
    legacy = dict(legacy)
    if "lr" in legacy:
        warnings.warn(f"{owner}: the argument `lr` is deprecated (Keras 2); use `learning_rate` instead",
                      DeprecationWarning, stacklevel=4)
        learning_rate = legacy.pop("lr")
    if "decay" in legacy:
        decay = legacy.pop("decay")
        if isinstance(decay, bool) or not isinstance(decay, numbers.Real) or not math.isfinite(decay) or decay < 0:
            raise ValueError(f"{owner}: decay must be a finite number >= 0, got {decay!r}")
        if decay > 0:
            warnings.warn(f"{owner}: the argument `decay` is deprecated (Keras 2); it is applied as "
                          f"learning_rate=InverseTimeDecay(learning_rate, decay_steps=1, decay_rate={decay}), "
                          "which is the schedule to pass instead", DeprecationWarning, stacklevel=4)
            if callable(learning_rate) or isinstance(learning_rate, dict):
                raise ValueError(f"{owner}: decay={decay} cannot be combined with a learning-rate schedule; "
                                 "give one schedule")
            learning_rate = schedules.InverseTimeDecay(learning_rate, 1, decay)
    if legacy:
        raise TypeError(f"{owner}: unexpected keyword argument(s) {sorted(legacy)}")
    return learning_rate


def _check_nonneg(owner, name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0 or not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


class Optimizer:
    """Base class. Subclasses define ``_slot_names`` and ``_update(path, w, g, scale, slots)``.

    ``_update`` receives the weight array ``w`` (updated in place), the raw gradient ``g``
    (ndarray or RowSparseGrad, already value-clipped when ``clipvalue`` is set) and a scalar
    ``scale`` from norm clipping; the effective gradient is ``scale * g``.
    """

    _slot_names: tuple = ()

    def __init__(self, learning_rate=0.001, clipnorm=None, clipvalue=None, global_clipnorm=None, name=None,
                 **legacy):
        cls = type(self).__name__
        learning_rate = _legacy_kwargs(cls, learning_rate, legacy)
        self.clipnorm = _check_positive_or_none(cls, "clipnorm", clipnorm)
        self.clipvalue = _check_positive_or_none(cls, "clipvalue", clipvalue)
        self.global_clipnorm = _check_positive_or_none(cls, "global_clipnorm", global_clipnorm)
        if sum(v is not None for v in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                f"{cls}: only one of clipnorm, clipvalue and global_clipnorm can be set. Received: "
                f"clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}"
            )
        self.name = name or cls.lower()
        self.learning_rate = learning_rate
        self.iterations = 0
        self._slots: dict[str, dict[str, np.ndarray]] = {}
        self._scratch: dict[str, np.ndarray] = {}

    # -------------------------------------------------------- learning rate
    @property
    def learning_rate(self):
        """Current learning rate as a float (a schedule is evaluated at ``iterations``)."""
        if self._lr_schedule is not None:
            return float(self._lr_schedule(self.iterations))
        return self._lr

    @learning_rate.setter
    def learning_rate(self, value):
        cls = type(self).__name__
        if isinstance(value, dict):  # a serialized schedule (get_config of an optimizer with one)
            value = schedules.deserialize(value)
        if callable(value) and not isinstance(value, numbers.Real):
            self._lr_schedule, self._lr = value, None
            return
        if hasattr(value, "item") and np.ndim(value) == 0:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{cls}: learning_rate must be a finite number >= 0 or a schedule, got {value!r}")
        self._lr_schedule, self._lr = None, float(value)

    @property
    def lr(self):
        """Keras 2's name of :attr:`learning_rate` (reading or setting it gives a ``DeprecationWarning``)."""
        warnings.warn(f"{type(self).__name__}.lr is deprecated (Keras 2); use .learning_rate", DeprecationWarning,
                      stacklevel=2)
        return self.learning_rate

    @lr.setter
    def lr(self, value):
        warnings.warn(f"{type(self).__name__}.lr is deprecated (Keras 2); use .learning_rate", DeprecationWarning,
                      stacklevel=2)
        self.learning_rate = value

    # ------------------------------------------------------------- applying
    def apply(self, refs) -> None:
        """One optimisation step over ``refs`` = iterable of ``(path, owner_layer, weight_name)``."""
        items = []
        for ref in refs:
            try:
                path, owner, wname = ref
            except (TypeError, ValueError):
                raise TypeError(f"{type(self).__name__}.apply: refs must be (path, owner_layer, weight_name) "
                                f"triples, got {ref!r}") from None
            g = owner.grads.get(wname)
            if g is None:
                continue
            w = owner.params[wname]
            if tuple(g.shape) != w.shape:
                raise ValueError(f"{type(self).__name__}: gradient of '{path}' has shape {tuple(g.shape)}, "
                                 f"expected the weight shape {w.shape}")
            items.append((path, w, g))
        lr = self.learning_rate
        global_scale = 1.0
        if self.global_clipnorm is not None:
            gnorm = global_norm([g for _, _, g in items])
            c = self.global_clipnorm
            global_scale = c * min(1.0 / gnorm, 1.0 / c) if math.isfinite(gnorm) and gnorm > 0 else (
                1.0 if gnorm == 0 else float("nan"))
        for path, w, g in items:
            scale = global_scale
            if self.clipnorm is not None:
                n = math.sqrt(_sq_norm(g))
                scale = self.clipnorm / max(n, self.clipnorm) if n > 0 else 1.0
            elif self.clipvalue is not None:
                v = self.clipvalue
                if isinstance(g, RowSparseGrad):
                    g = RowSparseGrad(g.indices, np.clip(g.values, -v, v), g.shape)
                else:
                    g = np.clip(g, -v, v)
            self._update(lr, w, g, scale, self._get_slots(path, w))
        self.iterations += 1

    def _get_slots(self, path, w):
        slots = self._slots.get(path)
        if slots is None:
            slots = {name: self._init_slot(name, w) for name in self._slot_names}
            self._slots[path] = slots
        else:
            for name in self._slot_names:
                s = slots.get(name)
                if s is None:
                    raise ValueError(f"{type(self).__name__}: state for '{path}' lacks slot '{name}'")
                if s.shape != w.shape:
                    raise ValueError(f"{type(self).__name__}: slot '{name}' of '{path}' has shape {s.shape}, "
                                     f"but the weight has shape {w.shape}")
                if s.dtype != w.dtype:
                    slots[name] = s.astype(w.dtype)
        return slots

    def _init_slot(self, name, w):
        return np.zeros_like(w)

    def _tmp(self, w):
        """A scratch buffer shaped like ``w`` (reused between steps, not part of the state)."""
        key = (w.shape, w.dtype.str)
        buf = self._scratch.get(key)
        if buf is None:
            buf = self._scratch[key] = np.empty_like(w)
        return buf

    def _row_tmp(self, shape, dtype, k):
        """``k`` scratch arrays of ``shape`` (the rows of a RowSparseGrad) and ``dtype`` (the weight's),
        reused between steps (grown when a batch has more rows)."""
        dtype = np.dtype(dtype)
        key = ("rows", k, tuple(shape[1:]), dtype.str)
        buf = self._scratch.get(key)
        n = shape[0]
        if buf is None or buf.shape[1] < n:
            buf = self._scratch[key] = np.empty((k, max(n, 1)) + tuple(shape[1:]), dtype)
        return [buf[i, :n] for i in range(k)]

    def _update(self, lr, w, g, scale, slots):  # pragma: no cover - abstract
        raise NotImplementedError

    # ---------------------------------------------------------------- state
    def get_state(self) -> dict:
        """Everything needed to resume: ``iterations``, ``learning_rate`` (or, for a schedule of
        :mod:`rnnlab.optimizers.schedules`, ``learning_rate_schedule``: its config as UTF-8 JSON bytes) and
        every slot as ``"<weight path>/<slot name>"``. Arrays are copies."""
        state = {"iterations": np.array(self.iterations, dtype=np.int64)}
        if self._lr_schedule is None:
            state["learning_rate"] = np.array(self._lr, dtype=np.float64)
        elif isinstance(self._lr_schedule, LearningRateSchedule) and \
                type(self._lr_schedule).__name__ in schedules._CLASSES:
            # the schedule itself, as JSON bytes (state entries are arrays, so that checkpoints stay npz)
            doc = json.dumps(schedules.serialize(self._lr_schedule)).encode("utf-8")
            state["learning_rate_schedule"] = np.frombuffer(doc, dtype=np.uint8).copy()
        for path, slots in self._slots.items():
            for name, arr in slots.items():
                state[f"{path}/{name}"] = arr.copy()
        return state

    def set_state(self, state: dict) -> None:
        """Restore what :meth:`get_state` returned (shapes are checked at the next ``apply``)."""
        if not isinstance(state, dict) or "iterations" not in state:
            raise ValueError(f"{type(self).__name__}.set_state: expected the dict from get_state() with an "
                             f"'iterations' entry, got {type(state).__name__} with keys {list(state)[:5] if isinstance(state, dict) else ''}")
        slots: dict[str, dict[str, np.ndarray]] = {}
        schedule = None
        if "learning_rate_schedule" in state:
            raw = np.asarray(state["learning_rate_schedule"])
            try:
                schedule = schedules.deserialize(json.loads(raw.astype(np.uint8).tobytes().decode("utf-8")))
            except (ValueError, UnicodeDecodeError, TypeError) as e:
                raise ValueError(f"{type(self).__name__}.set_state: 'learning_rate_schedule' is not a saved "
                                 f"schedule ({e})") from None
        for key, arr in state.items():
            if key in ("iterations", "learning_rate", "learning_rate_schedule"):
                continue
            path, _, name = key.rpartition("/")
            if not path or name not in self._slot_names:
                raise ValueError(f"{type(self).__name__}.set_state: unexpected entry {key!r}; slots are "
                                 f"'<weight path>/<slot>' with slot in {list(self._slot_names)}")
            slots.setdefault(path, {})[name] = np.array(arr, copy=True)
        self.iterations = int(np.asarray(state["iterations"]))
        if schedule is not None:
            self.learning_rate = schedule
        elif "learning_rate" in state and self._lr_schedule is None:
            self.learning_rate = float(np.asarray(state["learning_rate"]))
        self._slots = slots

    def get_config(self) -> dict:
        """Constructor arguments; a schedule of :mod:`rnnlab.optimizers.schedules` is kept as its
        ``{"class_name", "config"}`` (any other callable is saved as its current value)."""
        if self._lr_schedule is None:
            lr = self._lr
        elif isinstance(self._lr_schedule, LearningRateSchedule) and \
                type(self._lr_schedule).__name__ in schedules._CLASSES:
            lr = schedules.serialize(self._lr_schedule)
        else:
            lr = self.learning_rate
        return {"name": self.name, "learning_rate": lr, "clipnorm": self.clipnorm,
                "clipvalue": self.clipvalue, "global_clipnorm": self.global_clipnorm}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum (Keras 3 formulas).

    Slot: ``momentum`` (the velocity ``v``), only when ``momentum > 0``.
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.momentum = _check_unit("SGD", "momentum", momentum)
        self.nesterov = bool(nesterov)
        self._slot_names = ("momentum",) if self.momentum > 0 else ()

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}

    def _update(self, lr, w, g, scale, slots):
        step = lr * scale
        sparse = isinstance(g, RowSparseGrad)
        if self.momentum == 0:
            if sparse:
                w[g.indices] -= step * g.values
            else:
                tmp = np.multiply(g, step, out=self._tmp(w))
                w -= tmp
            return
        v, mu = slots["momentum"], self.momentum
        v *= mu
        if sparse:
            v[g.indices] -= step * g.values
            if self.nesterov:
                tmp = np.multiply(v, mu, out=self._tmp(w))
                w += tmp
                w[g.indices] -= step * g.values
            else:
                w += v
            return
        tmp = np.multiply(g, step, out=self._tmp(w))
        v -= tmp
        if self.nesterov:
            w -= tmp
            np.multiply(v, mu, out=tmp)
            w += tmp
        else:
            w += v


class RMSprop(Optimizer):
    """RMSprop (Keras 3): ``s = rho s + (1 - rho) g^2``; ``w -= lr g / sqrt(s + eps)``.

    Slots: ``velocity`` (``s``), ``momentum`` when ``momentum > 0``, ``average_gradient`` when centered.
    """

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho = _check_unit("RMSprop", "rho", rho)
        self.momentum = _check_unit("RMSprop", "momentum", momentum)
        self.epsilon = _epsilon("RMSprop", epsilon)
        self.centered = bool(centered)
        names = ["velocity"]
        if self.momentum > 0:
            names.append("momentum")
        if self.centered:
            names.append("average_gradient")
        self._slot_names = tuple(names)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}

    def _update(self, lr, w, g, scale, slots):
        rho, s = self.rho, slots["velocity"]
        s *= rho
        if isinstance(g, RowSparseGrad):
            idx, gv = g.indices, g.values * scale
            s[idx] += (1 - rho) * (gv * gv)
            if self.centered:
                a = slots["average_gradient"]
                a *= rho
                a[idx] += (1 - rho) * gv
                den = s[idx] - a[idx] ** 2 + self.epsilon
            else:
                den = s[idx] + self.epsilon
            inc = lr * gv / np.sqrt(den)
            if self.momentum > 0:
                m = slots["momentum"]
                m *= self.momentum
                m[idx] += inc
                w -= m
            else:
                w[idx] -= inc
            return
        tmp = np.multiply(g, g, out=self._tmp(w))
        tmp *= (1 - rho) * scale * scale
        s += tmp
        if self.centered:
            a = slots["average_gradient"]
            a *= rho
            np.multiply(g, (1 - rho) * scale, out=tmp)
            a += tmp
            np.multiply(a, a, out=tmp)
            np.subtract(s, tmp, out=tmp)
            tmp += self.epsilon
        else:
            np.add(s, self.epsilon, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.divide(g, tmp, out=tmp)
        tmp *= lr * scale
        if self.momentum > 0:
            m = slots["momentum"]
            m *= self.momentum
            m += tmp
            w -= m
        else:
            w -= tmp


class Adam(Optimizer):
    """Adam (Keras 3 formulas, epsilon outside the square root, bias correction folded into the step).

    Slots: ``momentum`` (m), ``velocity`` (v), ``velocity_hat`` when ``amsgrad``.
    ``lazy=True``: a RowSparseGrad updates only its rows (m, v and w of other rows untouched), the
    rule of ``torch.optim.SparseAdam``; dense gradients are unaffected by ``lazy``.
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 lazy=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = _check_unit("Adam", "beta_1", beta_1, upper_open=True)
        self.beta_2 = _check_unit("Adam", "beta_2", beta_2, upper_open=True)
        self.epsilon = _epsilon("Adam", epsilon)
        self.amsgrad = bool(amsgrad)
        self.lazy = bool(lazy)
        self._slot_names = ("momentum", "velocity", "velocity_hat") if self.amsgrad else ("momentum", "velocity")

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                "amsgrad": self.amsgrad, "lazy": self.lazy}

    def _update(self, lr, w, g, scale, slots):
        b1, b2 = self.beta_1, self.beta_2
        t = self.iterations + 1
        alpha = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        m, v = slots["momentum"], slots["velocity"]
        sparse = isinstance(g, RowSparseGrad)
        if _native.adam_update(
                w, m, v, slots["velocity_hat"] if self.amsgrad else None, g.values if sparse else g,
                g.indices if sparse else None, b1, b2, (1 - b1) * scale, (1 - b2) * scale * scale,
                self.epsilon, alpha, lazy=sparse and self.lazy):
            return  # the compiled kernel: the same operations in one pass, bit-identical to the code below
        if sparse:
            # the rows of the gradient go through reused scratch buffers: fancy-index arithmetic
            # (m[idx] += x) allocates fresh (rows, E) temporaries, which cost ~10x the arithmetic
            # itself for an embedding batch (page faults; measured 2.1 vs 0.16 ms per slot update)
            idx, gv = g.indices, g.values
            r1, r2, r3, r4 = self._row_tmp(gv.shape, w.dtype, 4)
            if self.lazy:
                np.take(m, idx, axis=0, out=r1)
                r1 *= b1
                np.multiply(gv, (1 - b1) * scale, out=r3)
                r1 += r3                                   # m_i
                np.take(v, idx, axis=0, out=r2)
                r2 *= b2
                np.multiply(gv, gv, out=r3)
                r3 *= (1 - b2) * scale * scale
                r2 += r3                                   # v_i
                m[idx], v[idx] = r1, r2
                if self.amsgrad:
                    vh = slots["velocity_hat"]
                    np.take(vh, idx, axis=0, out=r3)
                    np.maximum(r3, r2, out=r2)
                    vh[idx] = r2
                np.multiply(r1, alpha, out=r4)
                np.sqrt(r2, out=r3)
                r3 += self.epsilon
                np.divide(r4, r3, out=r3)                  # alpha m_i / (sqrt(v_i) + eps)
                np.take(w, idx, axis=0, out=r1)
                r1 -= r3
                w[idx] = r1
                return
            m *= b1
            np.take(m, idx, axis=0, out=r1)
            np.multiply(gv, (1 - b1) * scale, out=r3)
            r1 += r3
            m[idx] = r1
            v *= b2
            np.take(v, idx, axis=0, out=r2)
            np.multiply(gv, gv, out=r3)
            r3 *= (1 - b2) * scale * scale
            r2 += r3
            v[idx] = r2
        else:
            tmp = np.multiply(g, (1 - b1) * scale, out=self._tmp(w))
            m *= b1
            m += tmp
            np.multiply(g, g, out=tmp)
            tmp *= (1 - b2) * scale * scale
            v *= b2
            v += tmp
        if self.amsgrad:
            vh = slots["velocity_hat"]
            np.maximum(vh, v, out=vh)
            v = vh
        tmp = np.sqrt(v, out=self._tmp(w))
        tmp += self.epsilon
        np.divide(m, tmp, out=tmp)
        tmp *= alpha
        w -= tmp


class Adagrad(Optimizer):
    """Adagrad (Keras 3): ``acc += g^2``; ``w -= lr g / sqrt(acc + eps)``; slot ``accumulator``
    starts at ``initial_accumulator_value``. Sparse gradients touch only their rows (exact)."""

    _slot_names = ("accumulator",)

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value = _check_nonneg("Adagrad", "initial_accumulator_value",
                                                       initial_accumulator_value)
        self.epsilon = _epsilon("Adagrad", epsilon)

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}

    def _init_slot(self, name, w):
        return np.full_like(w, self.initial_accumulator_value)

    def _update(self, lr, w, g, scale, slots):
        acc = slots["accumulator"]
        if isinstance(g, RowSparseGrad):
            idx, gv = g.indices, g.values * scale
            ai = acc[idx] + gv * gv
            acc[idx] = ai
            w[idx] -= lr * gv / np.sqrt(ai + self.epsilon)
            return
        tmp = np.multiply(g, g, out=self._tmp(w))
        tmp *= scale * scale
        acc += tmp
        np.add(acc, self.epsilon, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.divide(g, tmp, out=tmp)
        tmp *= lr * scale
        w -= tmp


_CLASSES = {"SGD": SGD, "RMSprop": RMSprop, "Adam": Adam, "Adagrad": Adagrad}
_ALIASES = {k.lower(): v for k, v in _CLASSES.items()}


def get(identifier) -> Optimizer:
    """Resolve an optimizer: an instance (returned as is), a name (``"adam"``, ``"sgd"``,
    ``"rmsprop"``, ``"adagrad"``, case-insensitive, Keras defaults), a class, or
    ``{"class_name": ..., "config": {...}}`` (see :func:`serialize`)."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier()
    if isinstance(identifier, dict):
        cname = identifier.get("class_name")
        if cname not in _CLASSES:
            raise ValueError(f"Unknown optimizer class {cname!r}; valid: {sorted(_CLASSES)}")
        return _CLASSES[cname].from_config(identifier.get("config", {}))
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier.strip().lower())
        if cls is None:
            raise ValueError(f"Unknown optimizer {identifier!r}; valid names: {sorted(_ALIASES)}")
        return cls()
    raise TypeError(f"Could not interpret optimizer identifier {identifier!r} (type {type(identifier).__name__})")


def serialize(opt: Optimizer) -> dict:
    """JSON-able ``{"class_name", "config"}`` (the slots/iterations are in :meth:`Optimizer.get_state`)."""
    return {"class_name": type(opt).__name__, "config": opt.get_config()}


def __getattr__(name):  # only for names that do not exist: an AttributeError naming the rnnlab equivalent
    from .._compat import missing
    raise missing("rnnlab.optimizers", name)
