"""Finite-difference gradient checks for hand-written backward passes.

The check builds a scalar loss ``L = sum_i sum(out_i * R_i)`` from every output of a layer
(``R_i`` fixed random arrays), computes dL/d(inputs, initial states, weights) with the layer's
own ``backward``, and compares with central differences ``(L(w+e) - L(w-e)) / 2e``.
Run it in float64 (``rnnlab.set_floatx("float64")`` before building the layer), where a
correct backward agrees to about 1e-9 relative.

The random generator is reseeded before every forward pass, so layers that draw random
masks (dropout) see the same masks in every evaluation and can be checked too.
"""
from __future__ import annotations

import numpy as np

from . import backend


def _as_list(x):
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _leaves(x):
    """The arrays of a (possibly nested) list of outputs, in order (nested states: StackedRNNCells)."""
    if isinstance(x, (list, tuple)):
        return [leaf for v in x for leaf in _leaves(v)]
    return [x]


def _like(structure, leaves):
    """``leaves`` (an iterator) put back into the nesting of ``structure``."""
    if isinstance(structure, (list, tuple)):
        return [_like(v, leaves) for v in structure]
    return next(leaves)


def rel_error(a, b) -> float:
    """``||a - b|| / max(||a|| + ||b||, 1e-12)``: 0 for identical arrays, ~1 for unrelated ones."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12))


def numerical_gradient(f, arr, eps=1e-6, indices=None):
    """Central differences ``(f() with arr[i] + eps  -  f() with arr[i] - eps) / (2 eps)`` for every element ``i``
    of the array ``arr``, which the no-argument scalar function ``f`` reads: ``arr`` is changed in place and each
    element restored after its two evaluations. Returns a float64 array of ``arr``'s shape; with ``indices`` (a
    sequence of element indices of ``arr``, e.g. tuples from ``np.unravel_index``) only those elements, as a
    float64 array of ``len(indices)`` in their order (a spot check of a large weight)."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"numerical_gradient: arr must be the NumPy array f reads (changed in place), got "
                        f"{type(arr).__name__}")
    picks = list(np.ndindex(arr.shape)) if indices is None else [tuple(np.atleast_1d(i)) for i in indices]
    g = np.zeros(len(picks), dtype=np.float64)
    for k, i in enumerate(picks):
        old = arr[i]
        arr[i] = old + eps
        lp = f()
        arr[i] = old - eps
        lm = f()
        arr[i] = old
        g[k] = (lp - lm) / (2 * eps)
    return g.reshape(arr.shape) if indices is None else g


def check_layer_gradients(layer, inputs, *, initial_state=None, mask=None, training=True,
                          eps=1e-6, tol=1e-6, seed=1234, check_weights=True, **forward_kwargs):
    """Compare ``layer.backward`` with finite differences; raise AssertionError on mismatch.

    ``inputs`` is an array or a list of arrays (integer arrays, e.g. token ids, are not
    differentiated). ``initial_state`` (list of arrays) is passed to ``forward`` and
    differentiated too. Returns ``{name: relative_error}`` for everything checked.
    """
    if layer.dtype != "float64":
        raise ValueError(f"check_layer_gradients needs a float64 layer (got {layer.dtype}); call rnnlab.set_floatx('float64') first")
    multi_input = isinstance(inputs, (list, tuple))
    xs = [np.array(a, copy=True) for a in _as_list(inputs)]
    states = [np.array(s, dtype=np.float64, copy=True) for s in _as_list(initial_state)]
    kwargs = dict(forward_kwargs)
    if mask is not None:
        kwargs["mask"] = mask

    def run():
        backend.set_random_seed(seed)
        x_arg = xs if multi_input else xs[0]
        if states:
            return layer(x_arg, initial_state=states, training=training, **kwargs)
        return layer(x_arg, training=training, **kwargs)

    outs = _as_list(run())
    gen = np.random.default_rng(seed + 1)
    rs = [gen.standard_normal(np.shape(o)) for o in _leaves(outs)]

    def loss():
        layer._weights_changed()
        return float(sum(np.sum(np.asarray(o, dtype=np.float64) * r) for o, r in zip(_leaves(run()), rs)))

    # analytic
    outs = _as_list(run())
    grad_arg = _like(outs, iter(rs)) if len(outs) > 1 else rs[0]
    got = layer.backward(grad_arg)
    got = _as_list(got) if (multi_input or states) else [got]
    analytic = {}
    for i, x in enumerate(xs):
        if x.dtype.kind == "f":
            analytic[f"input[{i}]"] = (x, got[i])
    for j, s in enumerate(states):
        analytic[f"initial_state[{j}]"] = (s, got[len(xs) + j])
    if check_weights:
        for path, owner, wname in layer.iter_weights():
            g = owner.grads[wname]
            if hasattr(g, "to_dense"):
                g = g.to_dense()
            analytic[path] = (owner.params[wname], np.array(g, copy=True))

    errors = {}
    failures = []
    for name, (arr, g_an) in analytic.items():
        if g_an is None:
            g_an = np.zeros_like(arr)
        g_an = np.asarray(g_an, dtype=np.float64)
        if g_an.shape != arr.shape:
            failures.append(f"{name}: gradient shape {g_an.shape} != value shape {arr.shape}")
            continue
        g_num = numerical_gradient(loss, arr, eps)
        layer._weights_changed()
        err = rel_error(g_an, g_num)
        errors[name] = err
        if err > tol:
            failures.append(f"{name}: relative error {err:.3e} > {tol:g}")
    if failures:
        raise AssertionError(f"gradient check failed for layer '{layer.name}':\n  " + "\n  ".join(failures))
    return errors
