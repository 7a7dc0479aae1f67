"""Per-step states and gate activations of the recurrent layers, from the layers' weights.

The recurrent layers compute their gates inside their own (partly compiled) time loops and do not keep
them. ``rnnlab explore`` needs every gate at every step, so this module runs a small, separate NumPy
forward pass that reads only the layer's Keras-format weights (``layer.get_weights()``) and its config
(activations, ``reset_after``). Its ``h`` outputs are checked against the layer's own forward pass in
``tests/test_explore.py``, so a change to the layers' math cannot silently make these pictures wrong.

Shapes: one sequence, ``x`` (T, D); U units; every returned series is (T, U), row t = after reading x_t.

LSTM (Keras gate order i, f, c, o in the kernel columns; ``sigma`` = recurrent_activation, ``phi`` = activation)::

    [a_i a_f a_g a_o] = x_t W + h_{t-1} U + b
    i_t = sigma(a_i)   f_t = sigma(a_f)   g_t = phi(a_g)   o_t = sigma(a_o)
    c_t = f_t * c_{t-1} + i_t * g_t        h_t = o_t * phi(c_t)

    series: h, c, i, f, g (the candidate), o

GRU (Keras order z, r, h; ``reset_after=True`` has a bias of shape (2, 3U): input and recurrent)::

    z_t = sigma(x_t W_z + b_z + h_{t-1} U_z + b'_z)      r_t = sigma(x_t W_r + b_r + h_{t-1} U_r + b'_r)
    reset_after:   n_t = phi(x_t W_h + b_h + r_t * (h_{t-1} U_h + b'_h))
    reset_before:  n_t = phi(x_t W_h + b_h + (r_t * h_{t-1}) U_h)
    h_t = z_t * h_{t-1} + (1 - z_t) * n_t

    series: h, z, r, n (the candidate)

SimpleRNN::  h_t = phi(x_t W + h_{t-1} U + b)      series: h

A ``go_backwards`` layer reads the sequence from the end; its series are returned in input order (row t =
the state after reading x_t), as :func:`rnnlab.diagnostics.gradient_norms_over_time` does.
"""
from __future__ import annotations

import numpy as np

#: series names per cell type, in display order; "g"/"n" are the candidates
SERIES = {"LSTM": ("h", "c", "i", "f", "g", "o"), "GRU": ("h", "z", "r", "n"), "SimpleRNN": ("h",)}
#: which series are gates in (0, 1) (saturation statistics)
GATES = {"LSTM": ("i", "f", "o"), "GRU": ("z", "r"), "SimpleRNN": ()}
DESCRIPTIONS = {"h": "hidden state h", "c": "cell state c", "i": "input gate i", "f": "forget gate f",
                "g": "candidate g", "o": "output gate o", "z": "update gate z", "r": "reset gate r",
                "n": "candidate n"}


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


_ACT = {
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "hard_sigmoid": lambda x: np.clip(x + 3.0, 0.0, 6.0) / 6.0,
    "relu": lambda x: np.maximum(x, 0.0),
    "linear": lambda x: x,
    None: lambda x: x,
}


def _act(layer, key):
    name = _config(layer).get(key)
    if name not in _ACT:
        raise ValueError(f"explore: layer '{layer.name}' uses {key}={name!r}; the state tracer knows "
                         f"{sorted(k for k in _ACT if k)}")
    return _ACT[name]


def cell_type(layer) -> str:
    """'LSTM', 'GRU' or 'SimpleRNN' for a recurrent layer (by class, including subclasses), or for a generic
    ``RNN(cell)`` layer whose cell is an ``LSTMCell``, ``GRUCell`` or ``SimpleRNNCell``."""
    for cls in type(layer).__mro__:
        if cls.__name__ in SERIES:
            return cls.__name__
    cell = getattr(layer, "cell", None)
    if cell is not None and not isinstance(cell, (list, tuple)):
        for cls in type(cell).__mro__:
            if cls.__name__.endswith("Cell") and cls.__name__[:-4] in SERIES:
                return cls.__name__[:-4]
    raise ValueError(f"explore: layer '{getattr(layer, 'name', layer)}' ({type(layer).__name__}) is not an "
                     "LSTM, GRU or SimpleRNN")


def _config(layer) -> dict:
    """The layer's config, with its cell's (activations, units, reset_after) for a generic ``RNN(cell)``."""
    cfg = dict(layer.get_config())
    cell = getattr(layer, "cell", None)
    if "activation" not in cfg and cell is not None and hasattr(cell, "get_config"):
        cfg.update(cell.get_config())
    return cfg


def units(layer) -> int:
    u = getattr(layer, "units", None)
    return int(u if u is not None else layer.cell.units)


def _weights(layer):
    w = [np.asarray(a) for a in layer.get_weights()]
    dt = np.result_type(w[0].dtype, np.float32)
    w = [a.astype(dt, copy=False) for a in w]
    if len(w) == 2:
        w.append(None)
    if len(w) != 3:
        raise ValueError(f"explore: layer '{layer.name}' has {len(w)} weight arrays; expected kernel, "
                         "recurrent_kernel[, bias]")
    return w


def zero_state(layer):
    U = units(layer)
    return {"h": np.zeros(U), "c": np.zeros(U)} if cell_type(layer) == "LSTM" else {"h": np.zeros(U)}


def trace_rnn(layer, x, state=None):
    """Run ``layer``'s cell over one sequence ``x`` (T, D) from ``state`` (default zeros).

    Returns ``(series, final_state)``: ``series`` maps each name of ``SERIES[cell_type(layer)]`` to a
    (T, U) array in the weights' float dtype (float32 or float64) in input order; ``final_state`` ({"h": (U,), ["c": (U,)]}) continues the sequence
    in a later call (used to process a long text in chunks).
    """
    kind = cell_type(layer)
    W, Uw, b = _weights(layer)
    dt = W.dtype                                      # float32 layers are traced in float32 (twice as fast)
    x = np.asarray(x, dtype=dt)
    if x.ndim != 2:
        raise ValueError(f"explore: trace_rnn expects one sequence of shape (T, D), got {x.shape}")
    if layer.go_backwards:
        x = x[::-1]
    if x.shape[1] != W.shape[0]:
        raise ValueError(f"explore: layer '{layer.name}' expects {W.shape[0]} input features, got {x.shape[1]}")
    U = units(layer)
    T = x.shape[0]
    st = zero_state(layer) if state is None else state
    st = {k: np.asarray(v, dtype=dt).copy() for k, v in st.items()}
    phi = _act(layer, "activation")
    h = st["h"]
    if kind == "SimpleRNN":
        xw = x @ W + (0 if b is None else b)
        out = np.empty((T, U), dt)
        for t in range(T):
            h = phi(xw[t] + h @ Uw)
            out[t] = h
        series = {"h": out}
        final = {"h": h}
    elif kind == "LSTM":
        sig = _act(layer, "recurrent_activation")
        xw = x @ W + (0 if b is None else b)
        A = np.empty((T, 4 * U), dt)                  # pre-activations; the gates follow in one vectorised step
        H, C = np.empty((T, U), dt), np.empty((T, U), dt)
        c = st["c"]
        for t in range(T):
            a = xw[t] + h @ Uw
            A[t] = a
            s = sig(a)
            c = s[U:2 * U] * c + s[:U] * phi(a[2 * U:3 * U])
            h = s[3 * U:] * phi(c)
            H[t], C[t] = h, c
        series = {"h": H, "c": C, "i": sig(A[:, :U]), "f": sig(A[:, U:2 * U]), "g": phi(A[:, 2 * U:3 * U]),
                  "o": sig(A[:, 3 * U:])}
        final = {"h": h, "c": c}
    else:  # GRU
        sig = _act(layer, "recurrent_activation")
        reset_after = bool(_config(layer).get("reset_after", True))
        if b is None:
            b_in, b_rec = 0, np.zeros(3 * U, dt)
        elif b.ndim == 2:
            b_in, b_rec = b[0], b[1]
        else:
            b_in, b_rec = b, np.zeros(3 * U, dt)
        xw = x @ W + b_in
        buf = {k: np.empty((T, U), dt) for k in SERIES["GRU"]}
        Uzr, Uh = Uw[:, :2 * U], Uw[:, 2 * U:]
        for t in range(T):
            if reset_after:
                hu = h @ Uw + b_rec
                zr = sig(xw[t, :2 * U] + hu[:2 * U])
                z, r = zr[:U], zr[U:]
                n = phi(xw[t, 2 * U:] + r * hu[2 * U:])
            else:
                zr = sig(xw[t, :2 * U] + h @ Uzr)
                z, r = zr[:U], zr[U:]
                n = phi(xw[t, 2 * U:] + (r * h) @ Uh)
            h = z * h + (1 - z) * n
            buf["h"][t], buf["z"][t], buf["r"][t], buf["n"][t] = h, z, r, n
        series = buf
        final = {"h": h}
    if layer.go_backwards:
        series = {k: v[::-1] for k, v in series.items()}
    return series, final


def recurrent_parts(layer):
    """``[(label, rnn layer)]`` of a recurrent layer or a Bidirectional wrapper (its two directions)."""
    fw, bw = getattr(layer, "forward_layer", None), getattr(layer, "backward_layer", None)
    if fw is not None and bw is not None:
        return [(f"{layer.name}/{fw.name}", fw), (f"{layer.name}/{bw.name}", bw)]
    try:
        cell_type(layer)
    except ValueError:
        return []
    return [(layer.name, layer)]
