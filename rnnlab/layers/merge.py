"""Merge layers: combine a list of tensors into one (Keras ``Concatenate``, ``Add``, ``Subtract``,
``Multiply``, ``Average``, ``Maximum``, ``Minimum``, ``Dot``), each with its hand-written backward.

Forward and backward, for inputs ``x_1 .. x_n`` and ``g = dL/dy``:

* ``Add``:       ``y = sum_i x_i``;                 ``dL/dx_i = g``
* ``Subtract``:  ``y = x_1 - x_2``;                 ``dL/dx_1 = g``, ``dL/dx_2 = -g``
* ``Multiply``:  ``y = prod_i x_i``;                ``dL/dx_i = g * prod_{j != i} x_j``
* ``Average``:   ``y = (1/n) sum_i x_i``;           ``dL/dx_i = g / n``
* ``Maximum``/``Minimum``: pairwise left to right, ``y_2 = max(x_1, x_2)``, ``y_k = max(y_{k-1}, x_k)``; the
  gradient goes to the larger (smaller) argument, split in halves on ties (as PyTorch's ``maximum``).
* ``Concatenate(axis)``: ``y = [x_1; ...; x_n]`` along ``axis``; ``dL/dx_i`` is the slice of ``g`` for ``x_i``.
* ``Dot(axes, normalize)``: per sample, ``y = x_1 . x_2`` contracted over ``axes`` (Keras ``batch_dot``):
  ``(B, D) . (B, D) -> (B, 1)``, ``(B, P, D) . (B, Q, D)`` with ``axes=2`` ``-> (B, P, Q)``. With
  ``normalize=True`` each input is first L2-normalised along its axis, ``x / sqrt(max(sum x^2, 1e-12))``
  (cosine similarity); backward through it is ``(g - x_hat (x_hat . g)) / ||x||``.

Element-wise merges accept shapes that broadcast (a size-1 axis against a size-n one, as Keras); the
gradient of a broadcast input is summed over the axes it was broadcast along.

Masks (Keras): element-wise merges AND the given masks; ``Concatenate`` builds a full mask per input (ones
where an input has none), concatenates them along ``axis`` and takes ``any`` over the last axis.
"""
from __future__ import annotations

import numpy as np

from .base import Layer, format_shape, register


def _unbroadcast(g, shape):
    """Sum ``g`` over the axes along which an input of ``shape`` was broadcast."""
    if g.shape == tuple(shape):
        return g
    axes = tuple(i for i, (a, b) in enumerate(zip(g.shape, shape)) if b == 1 and a != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


class _Merge(Layer):
    _min_inputs = 2
    _max_inputs = None

    def _check_list(self, inputs, what="inputs"):
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"A merge layer ('{self.name}', {type(self).__name__}) must be called on a list of "
                             f"tensors, got {type(inputs).__name__}")
        n = len(inputs)
        if n < self._min_inputs or (self._max_inputs is not None and n > self._max_inputs):
            want = (f"exactly {self._min_inputs}" if self._max_inputs == self._min_inputs
                    else f"at least {self._min_inputs}")
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) must be called on a list of {want} "
                             f"inputs, got {n}")

    def build(self, input_shape):
        self._check_list(input_shape)
        self.compute_output_shape(input_shape)
        super().build([tuple(s) for s in input_shape])

    def compute_output_shape(self, input_shape):
        self._check_list(input_shape)
        shapes = [tuple(s) for s in input_shape]
        ndim = {len(s) for s in shapes}
        if len(ndim) != 1:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): inputs must have the same rank, got "
                             f"shapes {format_shape(shapes)}")
        out = []
        for dims in zip(*shapes):
            known = {d for d in dims if d is not None and d != 1}
            if len(known) > 1:
                raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): inputs with incompatible shapes "
                                 f"{format_shape(shapes)} (axes must be equal or 1)")
            if known:
                out.append(known.pop())
            elif any(d is None for d in dims):
                out.append(None)
            else:
                out.append(1)
        return tuple(out)

    def compute_mask(self, inputs, mask=None):
        if mask is None:
            return None
        if not isinstance(mask, (list, tuple)):
            raise ValueError(f"Layer '{self.name}': mask must be a list of masks, one per input")
        ms = [np.asarray(m, dtype=bool) for m in mask if m is not None]
        if not ms:
            return None
        out = ms[0]
        for m in ms[1:]:
            out = out & m
        return out

    def _check_arrays(self, inputs):
        self._check_list(inputs)
        xs = [np.asarray(x) for x in inputs]
        for i, x in enumerate(xs):
            self._check_float(x, f"inputs[{i}]")
        try:
            np.broadcast_shapes(*[x.shape for x in xs])
        except ValueError:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): inputs with incompatible shapes "
                             f"{[x.shape for x in xs]}") from None
        if len({x.ndim for x in xs}) != 1:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): inputs must have the same rank, got "
                             f"shapes {[x.shape for x in xs]}")
        return xs

    def _grads_out(self, g, shapes):
        return [_unbroadcast(gi, s) for gi, s in zip(g, shapes)]


@register
class Add(_Merge):
    """``y = x_1 + ... + x_n`` (element-wise); ``dL/dx_i = dL/dy``."""

    def forward(self, inputs, training=False, mask=None):
        xs = self._check_arrays(inputs)
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y = y + x
        self._cache = [x.shape for x in xs]
        return y

    def backward(self, grad):
        shapes = self._need_cache()
        g = np.asarray(grad)
        return self._grads_out([g.copy() for _ in shapes], shapes)


@register
class Subtract(_Merge):
    """``y = x_1 - x_2``; ``dL/dx_1 = g``, ``dL/dx_2 = -g``."""

    _max_inputs = 2

    def forward(self, inputs, training=False, mask=None):
        xs = self._check_arrays(inputs)
        self._cache = [x.shape for x in xs]
        return xs[0] - xs[1]

    def backward(self, grad):
        shapes = self._need_cache()
        g = np.asarray(grad)
        return self._grads_out([g.copy(), -g], shapes)


@register
class Multiply(_Merge):
    """``y = x_1 * ... * x_n`` (element-wise); ``dL/dx_i = g * prod_{j != i} x_j``."""

    def forward(self, inputs, training=False, mask=None):
        xs = self._check_arrays(inputs)
        y = xs[0] * xs[1]
        for x in xs[2:]:
            y = y * x
        self._cache = xs
        return y

    def backward(self, grad):
        xs = self._need_cache()
        g = np.asarray(grad)
        out = []
        for i in range(len(xs)):
            p = g
            for j, x in enumerate(xs):
                if j != i:
                    p = p * x
            out.append(p)
        return self._grads_out(out, [x.shape for x in xs])


@register
class Average(_Merge):
    """``y = (x_1 + ... + x_n) / n``; ``dL/dx_i = g / n``."""

    def forward(self, inputs, training=False, mask=None):
        xs = self._check_arrays(inputs)
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y = y + x
        self._cache = [x.shape for x in xs]
        return y / y.dtype.type(len(xs))

    def backward(self, grad):
        shapes = self._need_cache()
        g = np.asarray(grad)
        return self._grads_out([g / g.dtype.type(len(shapes)) for _ in shapes], shapes)


class _Extremum(_Merge):
    _op = None

    def forward(self, inputs, training=False, mask=None):
        xs = self._check_arrays(inputs)
        ys = [xs[0]]
        for x in xs[1:]:
            ys.append(self._op(ys[-1], x))
        self._cache = (xs, ys)
        return ys[-1]

    def backward(self, grad):
        xs, ys = self._need_cache()
        g = np.asarray(grad)
        out = [None] * len(xs)
        for k in range(len(xs) - 1, 0, -1):
            a, b = ys[k - 1], xs[k]
            wa = self._win(a, b)
            wb = self._win(b, a)
            tie = a == b
            half = g.dtype.type(0.5)
            ga = np.where(tie, g * half, np.where(wa, g, 0)).astype(g.dtype, copy=False)
            gb = np.where(tie, g * half, np.where(wb, g, 0)).astype(g.dtype, copy=False)
            out[k] = gb
            g = ga
        out[0] = g
        return self._grads_out(out, [x.shape for x in xs])


@register
class Maximum(_Extremum):
    """``y = max(x_1, ..., x_n)`` element-wise (pairwise left to right; ties split the gradient in halves)."""

    _op = staticmethod(np.maximum)
    _win = staticmethod(np.greater)


@register
class Minimum(_Extremum):
    """``y = min(x_1, ..., x_n)`` element-wise (pairwise left to right; ties split the gradient in halves)."""

    _op = staticmethod(np.minimum)
    _win = staticmethod(np.less)


@register
class Concatenate(_Merge):
    """``y = concat([x_1, ..., x_n], axis)``: all axes but ``axis`` must agree; backward slices ``dL/dy``."""

    _extra_kwargs = frozenset()

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"Concatenate: axis must be an int, got {axis!r}")
        self.axis = int(axis)

    def _norm_axis(self, ndim):
        ax = self.axis + ndim if self.axis < 0 else self.axis
        if not 0 < ax < ndim:
            raise ValueError(f"Layer '{self.name}' (Concatenate): axis={self.axis} is out of range for inputs of "
                             f"rank {ndim} (and the batch axis 0 cannot be concatenated)")
        return ax

    def compute_output_shape(self, input_shape):
        self._check_list(input_shape)
        shapes = [tuple(s) for s in input_shape]
        if len({len(s) for s in shapes}) != 1:
            raise ValueError(f"Layer '{self.name}' (Concatenate): inputs must have the same rank, got "
                             f"{format_shape(shapes)}")
        ax = self._norm_axis(len(shapes[0]))
        out = []
        for i, dims in enumerate(zip(*shapes)):
            if i == ax:
                out.append(None if any(d is None for d in dims) else sum(dims))
                continue
            known = {d for d in dims if d is not None}
            if i > 0 and len(known) > 1:
                raise ValueError(f"A `Concatenate` layer ('{self.name}') requires inputs with matching shapes "
                                 f"except for the concatenation axis {self.axis}. Received: input_shape="
                                 f"{format_shape(shapes)}")
            out.append(known.pop() if known else None)
        return tuple(out)

    def compute_mask(self, inputs, mask=None):
        if mask is None or all(m is None for m in mask):
            return None
        full = []
        for x, m in zip(inputs, mask):
            x = np.asarray(x)
            if m is None:
                full.append(np.ones(x.shape, dtype=bool))
            else:
                m = np.asarray(m, dtype=bool)
                if m.ndim < x.ndim:
                    m = np.broadcast_to(m[..., None], x.shape)
                full.append(m)
        return np.concatenate(full, axis=self.axis).any(axis=-1)

    def forward(self, inputs, training=False, mask=None):
        self._check_list(inputs)
        xs = [np.asarray(x) for x in inputs]
        for i, x in enumerate(xs):
            self._check_float(x, f"inputs[{i}]")
        self.compute_output_shape([x.shape for x in xs])
        ax = self._norm_axis(xs[0].ndim)
        self._cache = (ax, [x.shape[ax] for x in xs])
        return np.concatenate(xs, axis=ax)

    def backward(self, grad):
        ax, sizes = self._need_cache()
        g = np.asarray(grad)
        cuts = np.cumsum(sizes)[:-1]
        return [np.ascontiguousarray(p) for p in np.split(g, cuts, axis=ax)]

    def get_config(self):
        cfg = super().get_config()
        cfg["axis"] = self.axis
        return cfg


def _l2_normalize(x, axis):
    n = np.sqrt(np.maximum(np.sum(x * x, axis=axis, keepdims=True), x.dtype.type(1e-12)))
    return x / n, n


def _l2_normalize_backward(g, xh, n, axis):
    return (g - xh * np.sum(xh * g, axis=axis, keepdims=True)) / n


@register
class Dot(_Merge):
    """Per-sample dot product of two tensors along ``axes`` (Keras ``Dot``): ``(B, D).(B, D) -> (B, 1)``,
    ``(B, P, D).(B, Q, D)`` with ``axes=2`` ``-> (B, P, Q)``, ``(B, P, D).(B, D)`` with ``axes=(2, 1)`` ``-> (B, P)``.

    ``axes``: an int (same axis in both) or a pair; ``normalize=True`` L2-normalises both inputs along their
    axis first (cosine proximity). Inputs of rank 2 or 3.

    With ``X`` (B, P, K) and ``Y`` (B, K, Q) the inputs moved so that the contracted axis is last/first:
    ``Y_out = X Y``, ``dX = G Y^T``, ``dY = X^T G``."""

    _max_inputs = 2

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axes, (int, np.integer)) and not isinstance(axes, bool):
            axes = (int(axes), int(axes))
        if not isinstance(axes, (list, tuple)) or len(axes) != 2 or not all(
                isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axes):
            raise TypeError(f"Dot: axes must be an int or a pair of ints, got {axes!r}")
        self.axes = tuple(int(a) for a in axes)
        self.normalize = bool(normalize)

    def _axes_for(self, shapes):
        axes = []
        for a, s in zip(self.axes, shapes):
            nd = len(s)
            if nd not in (2, 3):
                raise ValueError(f"Layer '{self.name}' (Dot): inputs must have rank 2 or 3, got shapes "
                                 f"{format_shape([tuple(x) for x in shapes])}")
            ax = a + nd if a < 0 else a
            if not 0 < ax < nd:
                raise ValueError(f"Layer '{self.name}' (Dot): axes={self.axes} out of range for input shape "
                                 f"{format_shape(tuple(s))}")
            axes.append(ax)
        return axes

    def compute_output_shape(self, input_shape):
        self._check_list(input_shape)
        s1, s2 = (tuple(s) for s in input_shape)
        a1, a2 = self._axes_for([s1, s2])
        if s1[a1] is not None and s2[a2] is not None and s1[a1] != s2[a2]:
            raise ValueError(f"Layer '{self.name}' (Dot): incompatible input shapes {format_shape([s1, s2])}: axis "
                             f"{a1} of the first ({s1[a1]}) != axis {a2} of the second ({s2[a2]})")
        b = s1[0] if s1[0] is not None else s2[0]
        rest = [d for i, d in enumerate(s1) if i not in (0, a1)] + [d for i, d in enumerate(s2) if i not in (0, a2)]
        return (b,) + tuple(rest) if rest else (b, 1)

    def compute_mask(self, inputs, mask=None):
        return None

    def forward(self, inputs, training=False, mask=None):
        self._check_list(inputs)
        x1, x2 = (np.asarray(x) for x in inputs)
        self._check_float(x1, "inputs[0]")
        self._check_float(x2, "inputs[1]")
        self.compute_output_shape([x1.shape, x2.shape])
        if x1.shape[0] != x2.shape[0]:
            raise ValueError(f"Layer '{self.name}' (Dot): inputs have different batch sizes {x1.shape}, {x2.shape}")
        a1, a2 = self._axes_for([x1.shape, x2.shape])
        n1 = n2 = None
        if self.normalize:
            x1, n1 = _l2_normalize(x1, a1)
            x2, n2 = _l2_normalize(x2, a2)
        X = np.moveaxis(x1, a1, -1)                     # (B, [P], K)
        Y = np.moveaxis(x2, a2, 1)                      # (B, K, [Q])
        X3 = X if X.ndim == 3 else X[:, None, :]
        Y3 = Y if Y.ndim == 3 else Y[:, :, None]
        out = X3 @ Y3                                    # (B, P|1, Q|1)
        shape = self.compute_output_shape([x1.shape, x2.shape])
        self._cache = (X3, Y3, a1, a2, x1.shape, x2.shape, x1, x2, n1, n2)
        return out.reshape((x1.shape[0],) + tuple(shape[1:]))

    def backward(self, grad):
        X3, Y3, a1, a2, s1, s2, xh1, xh2, n1, n2 = self._need_cache()
        g = np.asarray(grad).reshape(X3.shape[0], X3.shape[1], Y3.shape[2])
        dX3 = g @ Y3.transpose(0, 2, 1)
        dY3 = X3.transpose(0, 2, 1) @ g
        dX = dX3 if len(s1) == 3 else dX3[:, 0, :]
        dY = dY3 if len(s2) == 3 else dY3[:, :, 0]
        dx1 = np.ascontiguousarray(np.moveaxis(dX, -1, a1))
        dx2 = np.ascontiguousarray(np.moveaxis(dY, 1, a2))
        if self.normalize:
            dx1 = _l2_normalize_backward(dx1, xh1, n1, a1)
            dx2 = _l2_normalize_backward(dx2, xh2, n2, a2)
        return [dx1, dx2]

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axes=list(self.axes), normalize=self.normalize)
        return cfg


def add(inputs, **kwargs):
    """Functional form of :class:`Add`: ``add([x1, x2])``."""
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    return Minimum(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    """Functional form of :class:`Concatenate`: ``concatenate([x1, x2], axis=-1)``."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs, axes=-1, normalize=False, **kwargs):
    return Dot(axes=axes, normalize=normalize, **kwargs)(inputs)
