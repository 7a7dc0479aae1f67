"""``rnnlab.ops``: the ``keras.ops`` functions that tutorials call on arrays, backed by NumPy.

rnnlab computes with NumPy arrays, so a "tensor" here is an ``np.ndarray``: ``convert_to_tensor`` and
``convert_to_numpy`` both return one (``convert_to_numpy`` accepts torch tensors, rnnlab
:class:`~rnnlab.variables.Variable` objects and nested lists). The functions follow Keras 3's names, arguments
and defaults (``axis=-1`` for ``softmax``/``log_softmax``/``argmax``...), and differ only in what NumPy itself
does. These are for preparing inputs and reading outputs (sampling, decoding); they carry no gradient.

Activations: ``softmax(x, axis=-1) = exp(x - max) / sum(exp(x - max))``, ``log_softmax``, ``sigmoid(x) = 1 / (1 +
exp(-x))``, ``relu``, ``tanh``, ``softplus``. ``one_hot(x, num_classes, axis=-1)`` puts the
new axis last (float ``floatx``); ``top_k(x, k, sorted=True)`` returns ``(values, indices)`` along the last axis.
"""
from __future__ import annotations

import numpy as np

from . import backend

__all__ = [
    "convert_to_tensor", "convert_to_numpy", "cast", "shape", "ndim", "size", "dtype",
    "argmax", "argmin", "argsort", "sort", "max", "min", "sum", "mean", "std", "var", "prod", "cumsum", "any", "all",
    "abs", "exp", "log", "log1p", "sqrt", "square", "power", "sign", "round", "floor", "ceil", "clip", "maximum",
    "minimum", "add", "subtract", "multiply", "divide", "true_divide", "floor_divide", "negative", "matmul", "dot",
    "tensordot", "einsum",
    "reshape", "expand_dims", "squeeze", "transpose", "concatenate", "stack", "split", "tile", "repeat", "flip",
    "take", "take_along_axis", "where", "zeros", "ones", "zeros_like", "ones_like", "full", "arange", "eye",
    "linspace", "array", "equal", "not_equal", "greater", "greater_equal", "less", "less_equal", "logical_and",
    "logical_or", "logical_not", "isnan", "isfinite", "pad", "norm",
    "softmax", "log_softmax", "sigmoid", "relu", "tanh", "softplus", "one_hot", "top_k", "logsumexp",
    "categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy",
]


def convert_to_numpy(x) -> np.ndarray:
    """An ``np.ndarray`` from an array, a nested list, a torch tensor or an rnnlab ``Variable``."""
    if hasattr(x, "detach") and hasattr(x, "numpy"):      # torch tensor
        return x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray) and hasattr(x, "numpy") and callable(x.numpy):  # Variable, tf tensor
        return np.asarray(x.numpy())
    return np.asarray(x)


def convert_to_tensor(x, dtype=None, sparse=None):
    """Like Keras: an array of ``dtype``; Python floats become ``floatx`` (NumPy would pick float64)."""
    a = convert_to_numpy(x)
    if dtype is not None:
        return a.astype(backend.standardize_dtype(dtype) if isinstance(dtype, str) else dtype)
    if a.dtype == np.float64 and not isinstance(x, np.ndarray) and not hasattr(x, "numpy"):
        a = a.astype(backend.floatx())
    return a


def array(x, dtype=None):
    return convert_to_tensor(x, dtype=dtype)


def cast(x, dtype):
    return convert_to_numpy(x).astype(dtype)


def shape(x):
    return tuple(convert_to_numpy(x).shape)


def ndim(x):
    return convert_to_numpy(x).ndim


def size(x):
    return convert_to_numpy(x).size


def dtype(x):
    return convert_to_numpy(x).dtype.name


def _unary(fn):
    def op(x):
        return fn(convert_to_numpy(x))
    op.__name__ = fn.__name__
    op.__doc__ = f"Elementwise ``np.{fn.__name__}``."
    return op


abs = _unary(np.abs)          # noqa: A001 - Keras' name
exp = _unary(np.exp)
log = _unary(np.log)
log1p = _unary(np.log1p)
sqrt = _unary(np.sqrt)
square = _unary(np.square)
sign = _unary(np.sign)
floor = _unary(np.floor)
ceil = _unary(np.ceil)
negative = _unary(np.negative)
tanh = _unary(np.tanh)
isnan = _unary(np.isnan)
isfinite = _unary(np.isfinite)
logical_not = _unary(np.logical_not)


def _binary(fn):
    def op(x1, x2):
        return fn(convert_to_numpy(x1), convert_to_numpy(x2))
    op.__name__ = fn.__name__
    op.__doc__ = f"Elementwise ``np.{fn.__name__}`` with broadcasting."
    return op


add = _binary(np.add)
subtract = _binary(np.subtract)
multiply = _binary(np.multiply)
divide = _binary(np.divide)
true_divide = _binary(np.true_divide)
floor_divide = _binary(np.floor_divide)
power = _binary(np.power)
maximum = _binary(np.maximum)
minimum = _binary(np.minimum)
equal = _binary(np.equal)
not_equal = _binary(np.not_equal)
greater = _binary(np.greater)
greater_equal = _binary(np.greater_equal)
less = _binary(np.less)
less_equal = _binary(np.less_equal)
logical_and = _binary(np.logical_and)
logical_or = _binary(np.logical_or)
matmul = _binary(np.matmul)
dot = _binary(np.dot)


def round(x, decimals=0):  # noqa: A001
    return np.round(convert_to_numpy(x), decimals)


def clip(x, x_min, x_max):
    return np.clip(convert_to_numpy(x), x_min, x_max)


def argmax(x, axis=None, keepdims=False):
    return np.argmax(convert_to_numpy(x), axis=axis, keepdims=keepdims)


def argmin(x, axis=None, keepdims=False):
    return np.argmin(convert_to_numpy(x), axis=axis, keepdims=keepdims)


def argsort(x, axis=-1):
    return np.argsort(convert_to_numpy(x), axis=axis)


def sort(x, axis=-1):
    return np.sort(convert_to_numpy(x), axis=axis)


def _reduce(fn):
    def op(x, axis=None, keepdims=False):
        return fn(convert_to_numpy(x), axis=axis, keepdims=keepdims)
    op.__name__ = fn.__name__
    op.__doc__ = f"``np.{fn.__name__}`` over ``axis`` (all axes by default)."
    return op


max = _reduce(np.max)         # noqa: A001
min = _reduce(np.min)         # noqa: A001
sum = _reduce(np.sum)         # noqa: A001
mean = _reduce(np.mean)
std = _reduce(np.std)
var = _reduce(np.var)
prod = _reduce(np.prod)
any = _reduce(np.any)         # noqa: A001
all = _reduce(np.all)         # noqa: A001


def cumsum(x, axis=None):
    return np.cumsum(convert_to_numpy(x), axis=axis)


def tensordot(x1, x2, axes=2):
    return np.tensordot(convert_to_numpy(x1), convert_to_numpy(x2), axes=axes)


def einsum(subscripts, *operands):
    return np.einsum(subscripts, *[convert_to_numpy(o) for o in operands])


def reshape(x, newshape):
    return np.reshape(convert_to_numpy(x), newshape)


def expand_dims(x, axis):
    return np.expand_dims(convert_to_numpy(x), axis)


def squeeze(x, axis=None):
    return np.squeeze(convert_to_numpy(x), axis=axis)


def transpose(x, axes=None):
    return np.transpose(convert_to_numpy(x), axes)


def concatenate(xs, axis=0):
    return np.concatenate([convert_to_numpy(x) for x in xs], axis=axis)


def stack(x, axis=0):
    return np.stack([convert_to_numpy(a) for a in x], axis=axis)


def split(x, indices_or_sections, axis=0):
    return np.split(convert_to_numpy(x), indices_or_sections, axis=axis)


def tile(x, repeats):
    return np.tile(convert_to_numpy(x), repeats)


def repeat(x, repeats, axis=None):
    return np.repeat(convert_to_numpy(x), repeats, axis=axis)


def flip(x, axis=None):
    return np.flip(convert_to_numpy(x), axis=axis)


def take(x, indices, axis=None):
    return np.take(convert_to_numpy(x), convert_to_numpy(indices), axis=axis)


def take_along_axis(x, indices, axis=None):
    return np.take_along_axis(convert_to_numpy(x), convert_to_numpy(indices), axis=axis)


def where(condition, x1=None, x2=None):
    if x1 is None and x2 is None:
        return np.nonzero(convert_to_numpy(condition))
    return np.where(convert_to_numpy(condition), convert_to_numpy(x1), convert_to_numpy(x2))


def pad(x, pad_width, mode="constant", constant_values=None):
    kw = {} if constant_values is None else {"constant_values": constant_values}
    return np.pad(convert_to_numpy(x), pad_width, mode=mode, **kw)


def norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002
    return np.linalg.norm(convert_to_numpy(x), ord=ord, axis=axis, keepdims=keepdims)


def _dtype(dtype):
    return backend.floatx() if dtype is None else dtype


def zeros(shape, dtype=None):
    return np.zeros(shape, _dtype(dtype))


def ones(shape, dtype=None):
    return np.ones(shape, _dtype(dtype))


def full(shape, fill_value, dtype=None):
    return np.full(shape, fill_value, dtype)


def zeros_like(x, dtype=None):
    return np.zeros_like(convert_to_numpy(x), dtype=dtype)


def ones_like(x, dtype=None):
    return np.ones_like(convert_to_numpy(x), dtype=dtype)


def arange(start, stop=None, step=1, dtype=None):
    return np.arange(start, stop, step, dtype=dtype) if stop is not None else np.arange(start, dtype=dtype)


def eye(N, M=None, k=0, dtype=None):  # noqa: N803
    return np.eye(N, M, k, dtype=_dtype(dtype))


def linspace(start, stop, num=50, endpoint=True, dtype=None):
    return np.linspace(start, stop, num, endpoint=endpoint, dtype=dtype)


# ------------------------------------------------------------------ activations and losses
def _float(x):
    a = convert_to_numpy(x)
    return a if a.dtype.kind == "f" else a.astype(backend.floatx())


def softmax(x, axis=-1):
    """``exp(x - max(x)) / sum(exp(x - max(x)))`` along ``axis``."""
    a = _float(x)
    e = np.exp(a - np.max(a, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def logsumexp(x, axis=None, keepdims=False):
    a = _float(x)
    m = np.max(a, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def log_softmax(x, axis=-1):
    """``x - logsumexp(x)`` along ``axis``."""
    a = _float(x)
    return a - logsumexp(a, axis=axis, keepdims=True)


def sigmoid(x):
    """``1 / (1 + exp(-x))`` (computed without overflow for large ``|x|``)."""
    a = _float(x)
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(a.dtype)


def relu(x):
    return np.maximum(_float(x), 0)


def softplus(x):
    a = _float(x)
    return np.logaddexp(0, a).astype(a.dtype)


def one_hot(x, num_classes, axis=-1, dtype=None):
    """Integer ids of shape ``S`` -> ``S + (num_classes,)`` (new axis at ``axis``); ids outside
    ``[0, num_classes)`` give all-zero rows, as in Keras."""
    ids = convert_to_numpy(x)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"one_hot: x must hold integer ids, got dtype {ids.dtype}")
    out = (ids[..., None] == np.arange(int(num_classes))).astype(_dtype(dtype))
    return np.moveaxis(out, -1, axis) if axis != -1 else out


def top_k(x, k, sorted=True):  # noqa: A002
    """The ``k`` largest entries along the last axis: ``(values, indices)``, largest first."""
    a = convert_to_numpy(x)
    if not 1 <= int(k) <= a.shape[-1]:
        raise ValueError(f"top_k: k must be in [1, {a.shape[-1]}] (the last axis), got {k}")
    idx = np.argsort(-a, axis=-1, kind="stable")[..., :int(k)]
    return np.take_along_axis(a, idx, axis=-1), idx


def categorical_crossentropy(target, output, from_logits=False, axis=-1):
    t, o = _float(target), _float(output)
    if from_logits:
        return -np.sum(t * log_softmax(o, axis=axis), axis=axis)
    o = o / np.sum(o, axis=axis, keepdims=True)
    eps = backend.epsilon()
    return -np.sum(t * np.log(np.clip(o, eps, 1 - eps)), axis=axis)


def sparse_categorical_crossentropy(target, output, from_logits=False, axis=-1):
    t = convert_to_numpy(target).astype(np.int64)
    o = _float(output)
    return categorical_crossentropy(one_hot(t, o.shape[axis], dtype=o.dtype), o, from_logits=from_logits, axis=axis)


def binary_crossentropy(target, output, from_logits=False):
    t, o = _float(target), _float(output)
    if from_logits:
        return np.maximum(o, 0) - o * t + np.log1p(np.exp(-np.abs(o)))
    eps = backend.epsilon()
    o = np.clip(o, eps, 1 - eps)
    return -(t * np.log(o) + (1 - t) * np.log(1 - o))


def __getattr__(name):  # only for names that do not exist: an AttributeError naming the rnnlab equivalent
    from ._compat import missing
    raise missing("rnnlab.ops", name)
