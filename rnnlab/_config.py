"""The shared surface of rnnlab's small configurable objects (losses, regularizers, constraints, initializers,
learning-rate schedules): a subclass defines ``get_config()`` (its constructor's arguments as a dict) and gets
``from_config`` and a ``repr`` that reads like the constructor call; :class:`ConfigEquality` adds equality
of type and config."""
from __future__ import annotations


class ConfigObject:
    """``from_config(config) = cls(**config)``; ``repr`` = ``Name(arg=value, ...)`` over ``get_config()``,
    leaving out the keys in ``_repr_hidden``."""

    _repr_hidden: tuple = ()

    def get_config(self) -> dict:  # pragma: no cover - subclasses define it
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k not in self._repr_hidden)
        return f"{type(self).__name__}({args})"


class ConfigEquality:
    """Two objects are equal when they have the same type and the same config; hashing stays by identity."""

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = object.__hash__
