"""Gradient diagnostics: how large the gradient is at every time step (vanishing / exploding gradients).

After one forward and one backward pass on a batch, :func:`gradient_norms_over_time` reports, for every
recurrent layer, the norm of the gradient of the loss with respect to the layer's hidden state at each
time step,

    n_t = mean_b  B * || dL / dh_t^(b) ||_2          t = 0 .. T-1 (input positions),

where ``h_t^(b)`` is the state (B, U) of sample ``b`` *after* reading input step ``t`` (the layer's output
at t when it returns sequences), ``L`` is the model's loss (a mean over the batch, as in ``fit``), and the
factor ``B`` makes ``n_t`` the gradient of each sample's own loss (without masks or sample weights), so it
does not depend on the batch size. ``dL/dh_t`` is the *total* gradient: the part through the output at
``t`` plus the part through ``h_{t+1}``, i.e. exactly what full BPTT carries back to step ``t``
(``dL/dS[t+1]`` in :mod:`rnnlab.layers.recurrent`).

With the loss on the last output only (``return_sequences=False``), ``n_t`` for ``t < T-1`` is the
gradient that reaches step ``t`` from the end through ``T-1-t`` Jacobians ``dh_{s+1}/dh_s``: for a
SimpleRNN it shrinks geometrically (vanishing gradient), for an LSTM the cell state carries it with
much less decay. The same is available for the LSTM cell state (``state="c"``).

The recurrent layers record the per-step gradients only while this function runs (an opt-in flag on the
layer; off, the time loop pays one ``is None`` check per step). The backward pass overwrites the layers'
``grads`` as a training step would; the weights are not changed (stateful layers start from, and advance,
their carried states as in any forward call; call ``model.reset_states()`` first to start from zeros).
"""
from __future__ import annotations

import numpy as np

from .layers.recurrent import RNN


def _recurrent_layers(model):
    """``(label, RNN layer)`` for every recurrent layer, including both directions of a Bidirectional."""
    out = []
    for layer in model.layers:
        if isinstance(layer, RNN):
            out.append((layer.name, layer))
            continue
        for attr in ("forward_layer", "backward_layer", "layer"):
            inner = getattr(layer, attr, None)
            if isinstance(inner, RNN):
                out.append((f"{layer.name}/{inner.name}", inner))
    return out


def gradient_norms_over_time(model, x, y, sample_weight=None, state="h", reduce="mean", training=False):
    """Per-time-step gradient norms ``||dL/dh_t||`` of every recurrent layer after one backward pass.

    Parameters
    ----------
    model : Sequential, compiled with a loss.
    x, y : one batch (B, T, ...) and its targets.
    state : ``"h"`` (hidden state, default), ``"c"`` (LSTM cell state; other layers are skipped) or
        ``"all"`` (the whole recurrent state: ``sqrt(||dL/dh_t||^2 + ||dL/dc_t||^2)`` for an LSTM, ``h`` for
        the others). The LSTM's long-range gradient travels mostly through ``c``.
    reduce : ``"mean"`` gives (T,) arrays (mean over the batch, see the module docstring), ``"none"``
        gives (T, B) arrays of the per-sample norms.
    training : run the forward pass in training mode (dropout on). Default False.

    Returns
    -------
    dict ``{layer label: array}``, in layer order; a Bidirectional's directions are labelled
    ``"bidirectional/forward_lstm"`` and ``"bidirectional/backward_lstm"``. Index ``t`` is always the
    input position (a ``go_backwards`` layer's record is flipped back).
    """
    if state not in ("h", "c", "all"):
        raise ValueError(f"gradient_norms_over_time: state must be 'h', 'c' or 'all', got {state!r}")
    if reduce not in ("mean", "none"):
        raise ValueError(f"gradient_norms_over_time: reduce must be 'mean' or 'none', got {reduce!r}")
    if getattr(model, "loss", None) is None:
        raise ValueError("gradient_norms_over_time: the model needs a loss; call model.compile(optimizer, loss=...)")
    layers = _recurrent_layers(model)
    if not layers:
        raise ValueError("gradient_norms_over_time: the model has no recurrent layer (SimpleRNN, LSTM, GRU)")
    if state == "c":
        layers = [(n, l) for n, l in layers if "c" in l._state_names]
        if not layers:
            raise ValueError("gradient_norms_over_time: state='c' needs an LSTM layer; this model has none")
    try:
        for _, layer in layers:
            layer._record_state_grads = True
            layer.state_grads = None
        # forward, loss, backward without an update (the model's public step); the layers record dL/dh_t
        loss = model.compute_gradients(x, y, sample_weight=sample_weight, training=training)
        if not np.isfinite(loss):
            raise ValueError(f"gradient_norms_over_time: the loss is {loss}")
        result = {}
        B = len(x)
        for name, layer in layers:
            rec = layer.state_grads
            if rec is None:  # pragma: no cover - a layer before a non-differentiable one
                raise RuntimeError(f"gradient_norms_over_time: no gradient reached layer '{name}'")
            parts = rec if state == "all" else [rec[layer._state_names.index(state)]]
            sq = sum(np.einsum("tbu,tbu->tb", g, g) for g in (p.astype(np.float64) for p in parts))
            norms = B * np.sqrt(sq)                                    # (T, B)
            if layer.go_backwards:
                norms = norms[::-1]
            result[name] = norms.mean(axis=1) if reduce == "mean" else np.ascontiguousarray(norms)
        return result
    finally:
        for _, layer in layers:
            layer.__dict__.pop("_record_state_grads", None)
            layer.__dict__.pop("state_grads", None)


def plot_gradient_norms(norms, path, title=None, logy=True, ylabel="||dL/dh_t||"):
    """Draw ``{label: (T,) norms}`` (e.g. from :func:`gradient_norms_over_time`, several models merged)
    as one line per label against the time step, log scale by default; save a PNG at ``path``.

    Returns ``path``.
    """
    if not isinstance(norms, dict) or not norms:
        raise ValueError("plot_gradient_norms: norms must be a non-empty dict {label: (T,) array}")
    curves = {}
    for label, v in norms.items():
        v = np.asarray(v, dtype=float)
        if v.ndim != 1 or v.size == 0:
            raise ValueError(f"plot_gradient_norms: norms[{label!r}] must be a 1-D (T,) array, got shape {v.shape}")
        curves[label] = v
    from .plotting import _pyplot, save_figure

    plt = _pyplot("plot_gradient_norms")
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, v in curves.items():
        ax.plot(np.arange(v.size), v, label=label, lw=1.6)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)
