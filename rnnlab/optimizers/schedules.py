"""Learning-rate schedules with Keras 3's formulas and arguments (``keras.optimizers.schedules``).

A schedule is a callable ``schedule(step) -> float``; give it to an optimizer as ``learning_rate``.
The optimizer evaluates it at its ``iterations`` count before each update (step 0 for the first
update), exactly as Keras does, and saves it in its config, so a saved model or checkpoint resumes
at the same point of the schedule (``iterations`` is part of the optimizer state).

With ``s`` the step (an integer >= 0; a negative step raises ``ValueError``):

* ``ExponentialDecay(initial_learning_rate, decay_steps, decay_rate, staircase=False)``:
  ``lr(s) = initial_learning_rate * decay_rate ** (s / decay_steps)``
  (``floor(s / decay_steps)`` with ``staircase=True``).
* ``InverseTimeDecay(initial_learning_rate, decay_steps, decay_rate, staircase=False)``:
  ``lr(s) = initial_learning_rate / (1 + decay_rate * s / decay_steps)`` (floored ratio with staircase).
  Keras 2's optimizer argument ``decay=d`` is ``InverseTimeDecay(lr, 1, d)``.
* ``PiecewiseConstantDecay(boundaries, values)``: ``values[0]`` for ``s <= boundaries[0]``,
  ``values[i]`` for ``boundaries[i-1] < s <= boundaries[i]``, ``values[-1]`` for ``s > boundaries[-1]``
  (``len(values) == len(boundaries) + 1``, boundaries increasing).
* ``CosineDecay(initial_learning_rate, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0)``:
  without warm-up, with ``p = min(s, decay_steps) / decay_steps``,
  ``lr(s) = initial_learning_rate * ((1 - alpha) * 0.5 * (1 + cos(pi p)) + alpha)``.
  With ``warmup_target``: for ``s < warmup_steps`` the rate rises linearly,
  ``initial + (warmup_target - initial) * s / warmup_steps``; afterwards the cosine decay above runs from
  ``warmup_target`` over ``s - warmup_steps`` (``s`` capped at ``warmup_steps + decay_steps``).

``serialize(schedule)`` gives ``{"class_name": ..., "config": {...}}`` (Keras's config keys) and
``deserialize`` rebuilds it.
"""
from __future__ import annotations

import math
import numbers

from .._config import ConfigEquality, ConfigObject

__all__ = ["LearningRateSchedule", "ExponentialDecay", "InverseTimeDecay", "PiecewiseConstantDecay",
           "CosineDecay", "serialize", "deserialize"]


def _real(owner, name, value, positive=False, nonneg=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be a finite number, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{owner}: {name} must be > 0, got {value!r}")
    if nonneg and value < 0:
        raise ValueError(f"{owner}: {name} must be >= 0, got {value!r}")
    return float(value) if not isinstance(value, numbers.Integral) else value


class LearningRateSchedule(ConfigObject, ConfigEquality):
    """Base class: subclasses implement ``_value(step)`` for a float step >= 0 and ``get_config``."""

    def __call__(self, step):
        if hasattr(step, "item") and getattr(step, "ndim", 0) == 0:
            step = step.item()
        if isinstance(step, bool) or not isinstance(step, numbers.Real) or not math.isfinite(step):
            raise TypeError(f"{type(self).__name__}: step must be a number (the optimizer's iterations), "
                            f"got {step!r}")
        if step < 0:
            raise ValueError(f"{type(self).__name__}: step must be >= 0 (the number of updates applied so far), "
                             f"got {step}")
        return float(self._value(float(step)))

    def _value(self, step):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    _repr_hidden = ("name",)


class _RateDecay(LearningRateSchedule):
    """The shared arguments of :class:`ExponentialDecay` and :class:`InverseTimeDecay`: the decay progress is
    ``p = step / decay_steps`` (floored with ``staircase``); a subclass maps ``p`` to the rate in ``_decay(p)``."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name=None):
        cls = type(self).__name__
        self.initial_learning_rate = _real(cls, "initial_learning_rate", initial_learning_rate, nonneg=True)
        self.decay_steps = _real(cls, "decay_steps", decay_steps, positive=True)
        self.decay_rate = _real(cls, "decay_rate", decay_rate, nonneg=True)
        self.staircase = bool(staircase)
        self.name = cls if name is None else name

    def _value(self, step):
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self._decay(p)

    def _decay(self, p):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class ExponentialDecay(_RateDecay):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (floored exponent with ``staircase``)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="ExponentialDecay"):
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def _decay(self, p):
        return self.initial_learning_rate * self.decay_rate ** p


class InverseTimeDecay(_RateDecay):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)`` (floored ratio with ``staircase``)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="InverseTimeDecay"):
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def _decay(self, p):
        return self.initial_learning_rate / (1.0 + self.decay_rate * p)


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[i]`` on the step interval ``(boundaries[i-1], boundaries[i]]`` (see the module docstring)."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        cls = type(self).__name__
        try:
            boundaries, values = list(boundaries), list(values)
        except TypeError:
            raise TypeError(f"{cls}: boundaries and values must be lists of numbers, got "
                            f"{type(boundaries).__name__} and {type(values).__name__}") from None
        if not boundaries:
            raise ValueError(f"{cls}: boundaries must not be empty")
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"{cls}: the length of boundaries should be 1 less than the length of values; "
                             f"got {len(boundaries)} boundaries and {len(values)} values")
        self.boundaries = [_real(cls, f"boundaries[{i}]", b) for i, b in enumerate(boundaries)]
        if any(b2 <= b1 for b1, b2 in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError(f"{cls}: boundaries must be strictly increasing, got {self.boundaries}")
        self.values = [_real(cls, f"values[{i}]", v, nonneg=True) for i, v in enumerate(values)]
        self.name = name

    def _value(self, step):
        for b, v in zip(self.boundaries, self.values):
            if step <= b:
                return v
        return self.values[-1]

    def get_config(self):
        return {"boundaries": list(self.boundaries), "values": list(self.values), "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Cosine decay from ``initial_learning_rate`` (or from ``warmup_target`` after a linear warm-up)
    to ``alpha`` times that rate over ``decay_steps`` steps (see the module docstring)."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay", warmup_target=None,
                 warmup_steps=0):
        cls = type(self).__name__
        self.initial_learning_rate = _real(cls, "initial_learning_rate", initial_learning_rate, nonneg=True)
        self.decay_steps = _real(cls, "decay_steps", decay_steps, positive=True)
        self.alpha = _real(cls, "alpha", alpha, nonneg=True)
        self.warmup_target = None if warmup_target is None else _real(cls, "warmup_target", warmup_target,
                                                                      nonneg=True)
        self.warmup_steps = _real(cls, "warmup_steps", warmup_steps, nonneg=True)
        if self.warmup_target is not None and not self.warmup_steps > 0:
            raise ValueError(f"{cls}: warmup_target is set, so warmup_steps must be > 0, got {warmup_steps!r}")
        self.name = name

    def _decay(self, step, start):
        frac = step / self.decay_steps
        cosine = 0.5 * (1.0 + math.cos(math.pi * frac))
        return start * ((1.0 - self.alpha) * cosine + self.alpha)

    def _value(self, step):
        if self.warmup_target is None:
            return self._decay(min(step, self.decay_steps), self.initial_learning_rate)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            delta = self.warmup_target - self.initial_learning_rate
            return delta * (step / self.warmup_steps) + self.initial_learning_rate
        return self._decay(step - self.warmup_steps, self.warmup_target)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


_CLASSES = {c.__name__: c for c in (ExponentialDecay, InverseTimeDecay, PiecewiseConstantDecay, CosineDecay)}


def serialize(schedule: LearningRateSchedule) -> dict:
    """``{"class_name": ..., "config": {...}}`` for a schedule of this module."""
    if not isinstance(schedule, LearningRateSchedule) or type(schedule).__name__ not in _CLASSES:
        raise TypeError(f"serialize: expected one of the schedules {sorted(_CLASSES)}, got {type(schedule).__name__}")
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config) -> LearningRateSchedule:
    """Rebuild a schedule from :func:`serialize`'s dict (also Keras's ``{"class_name", "config"}``)."""
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise ValueError(f"deserialize: expected {{'class_name': ..., 'config': {{...}}}}, got {config!r:.200}")
    name = config.get("class_name")
    cls = _CLASSES.get(name)
    if cls is None:
        raise ValueError(f"Unknown learning-rate schedule {name!r}; known: {sorted(_CLASSES)}")
    try:
        return cls.from_config(dict(config["config"]))
    except TypeError as e:
        raise ValueError(f"deserialize: the config of {name} is not valid: {e}") from None
