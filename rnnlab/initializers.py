"""Weight initializers with Keras names and semantics.

Each initializer is a callable ``init(shape, dtype) -> ndarray``. Look one up with
:func:`get`, which accepts a name (``"glorot_uniform"``), an instance, or a callable.

Fan-in/fan-out follow Keras: for a 2-D shape ``(fan_in, fan_out)``; for more dimensions
the receptive field (all leading dims but the last two) multiplies both.
"""
from __future__ import annotations

import math

import numpy as np

from . import backend
from ._config import ConfigObject


def _fans(shape):
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


class Initializer(ConfigObject):
    """Base class: subclasses implement ``__call__(shape, dtype)`` and ``get_config()`` (their arguments), which
    gives ``from_config`` and the constructor-like ``repr`` (:class:`rnnlab._config.ConfigObject`)."""

    @property
    def seed(self):
        """``None`` (draw from :func:`rnnlab.backend.rng`, seeded by ``set_random_seed``) or an int: then every
        call gives the same values, as a seeded Keras 3 initializer does."""
        return self.__dict__.get("_seed")

    @seed.setter
    def seed(self, value):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0):
            raise ValueError(f"{type(self).__name__}: seed must be a non-negative int or None, got {value!r}")
        self._seed = None if value is None else int(value)

    def _rng(self):
        return np.random.default_rng(self.seed) if self.seed is not None else backend.rng()

    def get_config(self) -> dict:
        return {}


class Zeros(Initializer):
    def __call__(self, shape, dtype=None):
        return np.zeros(shape, dtype=backend.standardize_dtype(dtype))


class Ones(Initializer):
    def __call__(self, shape, dtype=None):
        return np.ones(shape, dtype=backend.standardize_dtype(dtype))


class Constant(Initializer):
    def __init__(self, value=0.0):
        self.value = float(value)

    def __call__(self, shape, dtype=None):
        return np.full(shape, self.value, dtype=backend.standardize_dtype(dtype))

    def get_config(self):
        return {"value": self.value}


class RandomUniform(Initializer):
    """U(minval, maxval); Keras' default ``"uniform"`` is U(-0.05, 0.05)."""

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        self.minval, self.maxval, self.seed = float(minval), float(maxval), seed

    def __call__(self, shape, dtype=None):
        gen = self._rng()
        return _chunked(shape, dtype, lambda n: gen.uniform(self.minval, self.maxval, size=n))

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class RandomNormal(Initializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean, self.stddev, self.seed = float(mean), float(stddev), seed

    def __call__(self, shape, dtype=None):
        gen = self._rng()
        return _chunked(shape, dtype, lambda n: gen.normal(self.mean, self.stddev, size=n))

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class Orthogonal(Initializer):
    """A (semi-)orthogonal matrix times ``gain`` (Saxe et al. 2014); Keras' recurrent default.

    The shape is flattened to (prod(shape[:-1]), shape[-1]); the QR decomposition of a
    Gaussian matrix gives Q, whose columns are made unique by the signs of diag(R).
    For a recurrent kernel (U, 4U) each row is a unit vector and the rows are orthogonal.
    """

    def __init__(self, gain=1.0, seed=None):
        self.gain, self.seed = float(gain), seed

    def __call__(self, shape, dtype=None):
        shape = tuple(int(s) for s in shape)
        if len(shape) < 2:
            raise ValueError(f"Orthogonal: shape must have at least 2 dimensions, got {shape}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = self._rng().normal(0.0, 1.0, size=(max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(shape).astype(backend.standardize_dtype(dtype))

    def get_config(self):
        return {"gain": self.gain, "seed": self.seed}


class TruncatedNormal(Initializer):
    """``mean + stddev * z`` with ``z ~ N(0, 1)`` redrawn while ``|z| > 2`` (Keras ``TruncatedNormal``)."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean, self.stddev, self.seed = float(mean), float(stddev), seed

    def __call__(self, shape, dtype=None):
        out = _truncated_normal(self._rng(), shape, self.stddev, dtype)
        if self.mean:
            out += np.asarray(self.mean, dtype=out.dtype)
        return out

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class VarianceScaling(Initializer):
    """Keras ``VarianceScaling``: with ``n`` = fan_in, fan_out or their mean (``mode``) and ``s = scale / max(1, n)``:
    ``truncated_normal`` draws N(0, 1) truncated at 2 times ``sqrt(s) / 0.8796...`` (the truncated distribution's
    standard deviation is then ``sqrt(s)``), ``untruncated_normal`` N(0, s), ``uniform`` U(-sqrt(3 s), sqrt(3 s))."""

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0):
            raise ValueError(f"VarianceScaling: scale must be a positive float, got {scale!r}")
        if mode not in self._MODES:
            raise ValueError(f"VarianceScaling: mode must be one of {self._MODES}, got {mode!r}")
        if distribution == "normal":          # Keras' older name
            distribution = "truncated_normal"
        if distribution not in self._DISTRIBUTIONS:
            raise ValueError(f"VarianceScaling: distribution must be one of {self._DISTRIBUTIONS}, got "
                             f"{distribution!r}")
        self.scale, self.mode, self.distribution, self.seed = float(scale), mode, distribution, seed

    def __call__(self, shape, dtype=None):
        fan_in, fan_out = _fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        s = self.scale / max(1.0, n)
        gen = self._rng()
        if self.distribution == "truncated_normal":
            return _truncated_normal(gen, shape, math.sqrt(s) / 0.87962566103423978, dtype)
        if self.distribution == "untruncated_normal":
            std = math.sqrt(s)
            return _chunked(shape, dtype, lambda k: gen.normal(0.0, std, size=k))
        limit = math.sqrt(3.0 * s)
        return _chunked(shape, dtype, lambda k: gen.uniform(-limit, limit, size=k))

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution, "seed": self.seed}


class _SeedOnly(Initializer):
    """An initializer whose only argument is ``seed`` (Glorot, He, LeCun: Keras's fixed VarianceScaling cases)."""

    def __init__(self, seed=None):
        self.seed = seed

    def get_config(self):
        return {"seed": self.seed}


class GlorotUniform(_SeedOnly):
    """U(-limit, limit) with limit = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010); Keras's
    ``VarianceScaling(1.0, "fan_avg", "uniform")``."""

    def __call__(self, shape, dtype=None):
        fan_in, fan_out = _fans(shape)
        limit = math.sqrt(6.0 / max(1.0, fan_in + fan_out))
        gen = self._rng()
        return _chunked(shape, dtype, lambda n: gen.uniform(-limit, limit, size=n))


class GlorotNormal(_SeedOnly):
    """Truncated normal (at 2 stddev) with stddev = sqrt(2 / (fan_in + fan_out)); Keras's
    ``VarianceScaling(1.0, "fan_avg", "truncated_normal")``."""

    def __call__(self, shape, dtype=None):
        fan_in, fan_out = _fans(shape)
        std = math.sqrt(2.0 / max(1.0, fan_in + fan_out)) / 0.87962566103423978
        return _truncated_normal(self._rng(), shape, std, dtype)


class HeNormal(_SeedOnly):
    """Truncated normal (at 2 stddev) with stddev = sqrt(2 / fan_in) (He et al. 2015); Keras's
    ``VarianceScaling(2.0, "fan_in", "truncated_normal")``."""

    def __call__(self, shape, dtype=None):
        fan_in, _ = _fans(shape)
        std = math.sqrt(2.0 / max(1.0, fan_in)) / 0.87962566103423978
        return _truncated_normal(self._rng(), shape, std, dtype)


class HeUniform(_SeedOnly):
    """U(-limit, limit) with limit = sqrt(6 / fan_in); Keras's ``VarianceScaling(2.0, "fan_in", "uniform")``."""

    def __call__(self, shape, dtype=None):
        fan_in, _ = _fans(shape)
        limit = math.sqrt(6.0 / max(1.0, fan_in))
        gen = self._rng()
        return _chunked(shape, dtype, lambda n: gen.uniform(-limit, limit, size=n))


class LecunNormal(_SeedOnly, VarianceScaling):
    """``VarianceScaling(1.0, "fan_in", "truncated_normal")`` (LeCun 1998)."""
    scale, mode, distribution = 1.0, "fan_in", "truncated_normal"


class LecunUniform(_SeedOnly, VarianceScaling):
    """``VarianceScaling(1.0, "fan_in", "uniform")``: U(-sqrt(3 / fan_in), sqrt(3 / fan_in))."""
    scale, mode, distribution = 1.0, "fan_in", "uniform"


class Identity(Initializer):
    """``gain`` times the identity matrix (2-D shapes only; Keras ``Identity``/``IdentityInitializer``)."""

    def __init__(self, gain=1.0):
        self.gain = float(gain)

    def __call__(self, shape, dtype=None):
        shape = tuple(int(s) for s in shape)
        if len(shape) != 2:
            raise ValueError(f"Identity: shape must be 2-D, got {shape}")
        return (self.gain * np.eye(*shape)).astype(backend.standardize_dtype(dtype))

    def get_config(self):
        return {"gain": self.gain}


#: values drawn per block by the random initializers (a float64 block of 2 MB)
_CHUNK = 1 << 18


def _chunked(shape, dtype, draw):
    """An array of ``shape`` in ``dtype`` filled block by block with ``draw(n)`` (the next ``n`` float64 values
    of the stream, C order). The stream is consumed exactly as one ``draw(size)`` would consume it, so the
    values are bit-identical to drawing the whole table in float64 and casting, without the float64 table."""
    out = np.empty(tuple(int(s) for s in shape), dtype=backend.standardize_dtype(dtype))
    flat = out.reshape(-1)
    for i in range(0, flat.size, _CHUNK):
        n = min(_CHUNK, flat.size - i)
        flat[i:i + n] = draw(n)
    return out


def _truncated_normal(gen, shape, std, dtype=None):
    """N(0, 1) truncated at 2 (values beyond are redrawn), times ``std``, in ``dtype``. Drawn block by block
    (:func:`_chunked`); the redraws then run over the positions beyond 2 in index order, as a whole-table draw
    would, so the values are bit-identical to it."""
    bad_idx = []

    def first(n, start=[0]):          # noqa: B006 - the running offset of the blocks
        z = gen.normal(0.0, 1.0, size=n)
        bad = np.flatnonzero(np.abs(z) > 2.0)
        if bad.size:
            bad_idx.append(bad + start[0])
        start[0] += n
        return z * std

    out = _chunked(shape, dtype, first)
    flat = out.reshape(-1)
    idx = np.concatenate(bad_idx) if bad_idx else np.zeros(0, np.intp)
    while idx.size:
        z = gen.normal(0.0, 1.0, size=idx.size)
        ok = np.abs(z) <= 2.0
        flat[idx[ok]] = z[ok] * std
        idx = idx[~ok]
    return out


_REGISTRY = {
    "zeros": Zeros,
    "ones": Ones,
    "constant": Constant,
    "uniform": RandomUniform,
    "random_uniform": RandomUniform,
    "normal": RandomNormal,
    "random_normal": RandomNormal,
    "glorot_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal,
    "he_normal": HeNormal,
    "he_uniform": HeUniform,
    "orthogonal": Orthogonal,
    "truncated_normal": TruncatedNormal,
    "variance_scaling": VarianceScaling,
    "lecun_normal": LecunNormal,
    "lecun_uniform": LecunUniform,
    "identity": Identity,
}
_CLASS_NAMES = {cls.__name__: cls for cls in _REGISTRY.values()}
_CLASS_NAMES["IdentityInitializer"] = Identity   # Keras 3's class name in configs


def get(identifier) -> Initializer:
    """Resolve an initializer from a name, a ``{"class_name", "config"}`` dict, an instance or a callable."""
    if isinstance(identifier, Initializer) or (callable(identifier) and not isinstance(identifier, (str, type))):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if isinstance(identifier, dict):
        cls = _CLASS_NAMES.get(identifier.get("class_name"))
        if cls is None:
            raise ValueError(f"Unknown initializer class {identifier.get('class_name')!r}; valid: {sorted(_CLASS_NAMES)}")
        return cls(**identifier.get("config", {}))
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in _REGISTRY:
            return _REGISTRY[key]()
        if identifier in _CLASS_NAMES:
            return _CLASS_NAMES[identifier]()
    raise ValueError(f"Unknown initializer {identifier!r}; valid names: {sorted(_REGISTRY)}")


def serialize(init) -> dict | str:
    """JSON-able description of an initializer (for model configs)."""
    if isinstance(init, Initializer):
        return {"class_name": type(init).__name__, "config": init.get_config()}
    if isinstance(init, str):
        return init
    raise ValueError(f"Cannot serialize custom initializer {init!r}; pass a built-in name or Initializer")
