"""Array module, dtype policy and the global random generator.

Everything numeric in rnnlab goes through NumPy (``xp``). Only calls that CuPy also
offers are used, so a GPU backend can slot in later by swapping ``xp``.

The default float type is float32 (fast, what Keras uses). Gradient checks switch to
float64 with :func:`set_floatx`::

    import rnnlab
    rnnlab.set_floatx("float64")
"""
from __future__ import annotations

import random as _pyrandom

import numpy as np

xp = np

_FLOATX = "float32"
_EPSILON = 1e-7
_VALID_FLOATX = ("float32", "float64")
_RNG = np.random.default_rng()
_NAME_COUNTS: dict[str, int] = {}


def empty_aligned(shape, dtype=None, align: int = 64) -> np.ndarray:
    """``np.empty(shape, dtype)`` whose data starts on an ``align``-byte boundary (default 64: a cache line,
    one AVX-512 vector).

    NumPy only promises 16 bytes. The compiled loops stream their packed weights and per-step rows with
    full-width vector loads; from an address 16 bytes off a line every 64-byte load straddles two cache
    lines, which made the batch-1 inference loops ~15% slower (see docs/benchmarks.md). The result is a
    C-contiguous, writeable view of a slightly larger buffer.
    """
    dtype = np.dtype(floatx() if dtype is None else dtype)
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(n) for n in shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + align, np.uint8)
    off = (-raw.ctypes.data) % align
    return raw[off:off + nbytes].view(dtype).reshape(shape)


def floatx() -> str:
    """The default float dtype name for new layers and data ("float32" or "float64")."""
    return _FLOATX


def set_floatx(value: str) -> None:
    """Set the default float dtype for layers built from now on ("float32" or "float64")."""
    global _FLOATX
    name = np.dtype(value).name if not isinstance(value, str) else value
    if name not in _VALID_FLOATX:
        raise ValueError(f"set_floatx: expected one of {list(_VALID_FLOATX)}, got {value!r}")
    _FLOATX = name


def epsilon() -> float:
    """Fuzz factor used in losses and optimizers (Keras' default, 1e-7)."""
    return _EPSILON


def set_epsilon(value: float) -> None:
    global _EPSILON
    _EPSILON = float(value)


def rng() -> np.random.Generator:
    """The library's random generator (initializers, dropout masks, shuffling)."""
    return _RNG


def seeded_rng(owner: str, seed) -> np.random.Generator | None:
    """A layer's own generator for Keras's ``seed=`` argument (None: draw from :func:`rng`); a seed that is not an
    int (or None) is a TypeError naming ``owner``."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{owner}: seed must be an int or None, got {type(seed).__name__}")
    return np.random.default_rng(int(seed))


def set_random_seed(seed: int) -> None:
    """Seed rnnlab's generator and Python's ``random`` so runs are reproducible.

    Same seed, same code, same data: identical weights, dropout masks, shuffles and
    therefore identical training curves.
    """
    global _RNG
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"set_random_seed: seed must be an int, got {type(seed).__name__}")
    _RNG = np.random.default_rng(int(seed))
    _pyrandom.seed(int(seed))
    np.random.seed(int(seed) % (2**32))


def unique_name(base: str) -> str:
    """Keras-style automatic names: ``lstm``, ``lstm_1``, ``lstm_2`` ..."""
    n = _NAME_COUNTS.get(base, 0)
    _NAME_COUNTS[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def clear_session() -> None:
    """Reset automatic layer names (as ``keras.backend.clear_session``)."""
    _NAME_COUNTS.clear()


def standardize_dtype(dtype) -> str:
    """Return a float dtype name, defaulting to :func:`floatx`."""
    if dtype is None:
        return _FLOATX
    name = np.dtype(dtype).name
    if name not in _VALID_FLOATX:
        raise ValueError(f"dtype: expected one of {list(_VALID_FLOATX)}, got {dtype!r}")
    return name


class RowSparseGrad:
    """A gradient that is non-zero only in some rows of a (V, E) weight (embeddings).

    ``indices`` are unique row numbers, ``values[k]`` the summed gradient of row ``indices[k]``.
    Optimizers apply it without ever building the dense (V, E) array; :meth:`to_dense`
    exists for checks and for code that wants the plain array.
    """

    __slots__ = ("indices", "values", "shape")

    def __init__(self, indices, values, shape):
        self.indices = indices
        self.values = values
        self.shape = tuple(shape)

    @property
    def dtype(self):
        return self.values.dtype

    def to_dense(self):
        out = np.zeros(self.shape, dtype=self.values.dtype)
        out[self.indices] = self.values
        return out

    def sq_norm(self) -> float:
        return float(np.vdot(self.values, self.values))

    def __mul__(self, scalar):
        return RowSparseGrad(self.indices, self.values * scalar, self.shape)

    __rmul__ = __mul__
