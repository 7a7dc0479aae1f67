"""Weight conversion between PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` and rnnlab layers.

Layouts (H units, I inputs):

=========  =====================================  =========================================
layer      PyTorch (per layer and direction)       rnnlab / Keras ``get_weights()``
=========  =====================================  =========================================
RNN        weight_ih (H, I), weight_hh (H, H),     kernel (I, H), recurrent_kernel (H, H),
           bias_ih (H,), bias_hh (H,)              bias (H,) = bias_ih + bias_hh
LSTM       rows i, f, g, o: (4H, I), (4H, H),      columns i, f, c, o (same order): (I, 4H),
           (4H,), (4H,)                            (H, 4H), bias (4H,) = bias_ih + bias_hh
GRU        rows r, z, n: (3H, I), (3H, H),         columns z, r, h (r and z swapped): (I, 3H),
           (3H,), (3H,)                            (H, 3H), bias (2, 3H) = [bias_ih; bias_hh]
=========  =====================================  =========================================

PyTorch's GRU is Keras' ``reset_after=True`` GRU; ``reset_after=False`` has no PyTorch form.
Going back to PyTorch, the summed RNN/LSTM bias goes into ``bias_ih`` and ``bias_hh`` is zero
(any split gives the same function).

The plain functions (``lstm_from_torch`` ...) work on arrays (NumPy or torch tensors) and need no
torch import; :func:`from_torch` / :func:`to_torch` handle whole (multi-layer, bidirectional) modules.
Because the maps are linear, the same functions map *gradients* too: pass the weight gradients
and, for RNN/LSTM, ``bias_hh=None`` (Keras' summed bias has the gradient of ``bias_ih``);
:func:`torch_module_grads` does this for a whole module.
"""
from __future__ import annotations

import numpy as np

from . import backend


def _np(a):
    if a is None:
        return None
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _check2(name, a, shape):
    if a.ndim != 2 or (shape is not None and a.shape != shape):
        raise ValueError(f"{name}: expected shape {shape if shape is not None else '2-D'}, got {a.shape}")


def _swap_rz(a, H, axis=0):
    """Reorder the 3H axis between PyTorch (r, z, n) and Keras (z, r, h); the map is its own inverse."""
    r, z, n = np.split(a, 3, axis=axis)
    return np.concatenate([z, r, n], axis=axis)


def _from_torch(k, w_ih, w_hh, b_ih, b_hh, what):
    w_ih, w_hh, b_ih, b_hh = _np(w_ih), _np(w_hh), _np(b_ih), _np(b_hh)
    if w_ih.ndim != 2:
        raise ValueError(f"{what}: weight_ih must be 2-D (gates*H, I), got shape {w_ih.shape}")
    if w_ih.shape[0] % k:
        raise ValueError(f"{what}: weight_ih rows must be a multiple of {k} (gates*H), got shape {w_ih.shape}")
    H = w_ih.shape[0] // k
    _check2(f"{what}: weight_hh", w_hh, (k * H, H))
    for nm, b in (("bias_ih", b_ih), ("bias_hh", b_hh)):
        if b is not None and b.shape != (k * H,):
            raise ValueError(f"{what}: {nm} must have shape ({k * H},), got {b.shape}")
    return H, w_ih, w_hh, b_ih, b_hh


def simple_rnn_from_torch(weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One ``nn.RNN`` layer/direction -> SimpleRNN weights ``[kernel, recurrent_kernel(, bias)]``."""
    H, w_ih, w_hh, b_ih, b_hh = _from_torch(1, weight_ih, weight_hh, bias_ih, bias_hh, "simple_rnn_from_torch")
    out = [w_ih.T.copy(), w_hh.T.copy()]
    if b_ih is not None or b_hh is not None:
        out.append((0 if b_ih is None else b_ih) + (0 if b_hh is None else b_hh))
    return out


def lstm_from_torch(weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One ``nn.LSTM`` layer/direction -> LSTM weights ``[kernel, recurrent_kernel(, bias)]`` (same gate order)."""
    H, w_ih, w_hh, b_ih, b_hh = _from_torch(4, weight_ih, weight_hh, bias_ih, bias_hh, "lstm_from_torch")
    out = [w_ih.T.copy(), w_hh.T.copy()]
    if b_ih is not None or b_hh is not None:
        out.append(np.asarray((0 if b_ih is None else b_ih) + (0 if b_hh is None else b_hh)))
    return out


def gru_from_torch(weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One ``nn.GRU`` layer/direction -> GRU(reset_after=True) weights; r/z blocks swapped, bias (2, 3H)."""
    H, w_ih, w_hh, b_ih, b_hh = _from_torch(3, weight_ih, weight_hh, bias_ih, bias_hh, "gru_from_torch")
    out = [_swap_rz(w_ih, H).T.copy(), _swap_rz(w_hh, H).T.copy()]
    if b_ih is not None or b_hh is not None:
        z = np.zeros(3 * H, dtype=w_ih.dtype)
        out.append(np.stack([_swap_rz(z if b_ih is None else b_ih, H), _swap_rz(z if b_hh is None else b_hh, H)]))
    return out


def _to_torch(k, kernel, recurrent_kernel, what):
    kernel, rk = _np(kernel), _np(recurrent_kernel)
    if kernel.ndim != 2 or kernel.shape[1] % k:
        raise ValueError(f"{what}: kernel must be 2-D (I, {k}*H), got shape {kernel.shape}")
    H = kernel.shape[1] // k
    _check2(f"{what}: recurrent_kernel", rk, (H, k * H))
    return H, kernel, rk


def simple_rnn_to_torch(kernel, recurrent_kernel, bias=None):
    """SimpleRNN weights -> dict ``weight_ih, weight_hh(, bias_ih, bias_hh)`` of one ``nn.RNN`` layer."""
    H, kernel, rk = _to_torch(1, kernel, recurrent_kernel, "simple_rnn_to_torch")
    out = {"weight_ih": kernel.T.copy(), "weight_hh": rk.T.copy()}
    if bias is not None:
        bias = _np(bias)
        if bias.shape != (H,):
            raise ValueError(f"simple_rnn_to_torch: bias must have shape ({H},), got {bias.shape}")
        out.update(bias_ih=bias.copy(), bias_hh=np.zeros_like(bias))
    return out


def lstm_to_torch(kernel, recurrent_kernel, bias=None):
    """LSTM weights -> dict ``weight_ih, weight_hh(, bias_ih, bias_hh)`` of one ``nn.LSTM`` layer."""
    H, kernel, rk = _to_torch(4, kernel, recurrent_kernel, "lstm_to_torch")
    out = {"weight_ih": kernel.T.copy(), "weight_hh": rk.T.copy()}
    if bias is not None:
        bias = _np(bias)
        if bias.shape != (4 * H,):
            raise ValueError(f"lstm_to_torch: bias must have shape ({4 * H},), got {bias.shape}")
        out.update(bias_ih=bias.copy(), bias_hh=np.zeros_like(bias))
    return out


def gru_to_torch(kernel, recurrent_kernel, bias=None):
    """GRU(reset_after=True) weights -> dict ``weight_ih, weight_hh(, bias_ih, bias_hh)`` of one ``nn.GRU`` layer."""
    H, kernel, rk = _to_torch(3, kernel, recurrent_kernel, "gru_to_torch")
    out = {"weight_ih": _swap_rz(kernel, H, axis=1).T.copy(), "weight_hh": _swap_rz(rk, H, axis=1).T.copy()}
    if bias is not None:
        bias = _np(bias)
        if bias.shape != (2, 3 * H):
            raise ValueError(f"gru_to_torch: bias must have shape (2, {3 * H}) (reset_after=True), got {bias.shape}"
                             + (" - reset_after=False GRUs have no PyTorch equivalent" if bias.shape == (3 * H,) else ""))
        out.update(bias_ih=_swap_rz(bias[0], H), bias_hh=_swap_rz(bias[1], H))
    return out


_KINDS = {
    "RNN": (simple_rnn_from_torch, simple_rnn_to_torch),
    "LSTM": (lstm_from_torch, lstm_to_torch),
    "GRU": (gru_from_torch, gru_to_torch),
}


def _kind(module):
    name = type(module).__name__
    if name not in _KINDS:
        raise TypeError(f"expected a torch.nn.RNN, nn.LSTM or nn.GRU module, got {name}")
    if getattr(module, "proj_size", 0):
        raise ValueError(f"nn.LSTM with proj_size={module.proj_size} has no rnnlab/Keras equivalent")
    return name


def _suffixes(module):
    dirs = ["", "_reverse"] if module.bidirectional else [""]
    return [[f"_l{k}{d}" for d in dirs] for k in range(module.num_layers)]


def torch_module_weights(module) -> list:
    """All weights of an ``nn.RNN/LSTM/GRU`` in rnnlab/Keras layout: ``[[w_dir0, (w_dir1)], ...]`` per layer,
    each ``w`` a list ``[kernel, recurrent_kernel(, bias)]``."""
    conv = _KINDS[_kind(module)][0]
    out = []
    for layer in _suffixes(module):
        row = []
        for sfx in layer:
            g = lambda n: getattr(module, n + sfx, None)  # noqa: E731
            row.append(conv(g("weight_ih"), g("weight_hh"), g("bias_ih"), g("bias_hh")))
        out.append(row)
    return out


def torch_module_grads(module) -> list:
    """Like :func:`torch_module_weights` for the ``.grad`` of every parameter (after ``loss.backward()``).

    The summed RNN/LSTM bias has the gradient of ``bias_ih`` (= that of ``bias_hh``), not their sum;
    the GRU keeps both rows."""
    kind = _kind(module)
    conv = _KINDS[kind][0]
    out = []
    for layer in _suffixes(module):
        row = []
        for sfx in layer:
            g = lambda n: getattr(getattr(module, n + sfx, None), "grad", None)  # noqa: E731
            row.append(conv(g("weight_ih"), g("weight_hh"), g("bias_ih"), g("bias_hh") if kind == "GRU" else None))
        out.append(row)
    return out


def from_torch(module, return_sequences=None, dtype=None):
    """Build rnnlab layers carrying the weights of a PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``.

    Returns one layer per PyTorch layer (a list), or for ``bidirectional=True`` one
    ``(forward_layer, backward_layer)`` pair per layer, the backward one with ``go_backwards=True``.
    ``return_sequences`` defaults to True (PyTorch returns the whole sequence); the layers are
    built for the module's input size. ``dtype`` defaults to rnnlab's floatx.
    """
    from .layers.gru import GRU
    from .layers.lstm import LSTM
    from .layers.simple_rnn import SimpleRNN

    kind = _kind(module)
    H = module.hidden_size
    rs = True if return_sequences is None else bool(return_sequences)
    dtype = backend.standardize_dtype(dtype)
    ndir = 2 if module.bidirectional else 1
    weights = torch_module_weights(module)
    layers = []
    for k, row in enumerate(weights):
        in_dim = module.input_size if k == 0 else ndir * H
        pair = []
        for d, w in enumerate(row):
            kw = dict(return_sequences=rs, go_backwards=(d == 1), use_bias=module.bias, dtype=dtype)
            if kind == "RNN":
                layer = SimpleRNN(H, activation=module.nonlinearity, **kw)
            elif kind == "LSTM":
                layer = LSTM(H, **kw)
            else:
                layer = GRU(H, reset_after=True, **kw)
            layer._maybe_build((None, None, in_dim))
            layer.set_weights(w)
            pair.append(layer)
        layers.append(tuple(pair) if ndir == 2 else pair[0])
    return layers


def to_torch(layers, module):
    """Copy rnnlab layers' weights into an existing PyTorch module (in place; shapes checked).

    ``layers`` has the structure :func:`from_torch` returns (a layer per PyTorch layer, or
    ``(forward, backward)`` pairs when bidirectional). Returns the module.
    """
    import torch

    kind = _kind(module)
    conv = _KINDS[kind][1]
    layers = list(layers) if isinstance(layers, (list, tuple)) else [layers]
    if len(layers) != module.num_layers:
        raise ValueError(f"to_torch: the module has num_layers={module.num_layers}, got {len(layers)} layer(s)")
    with torch.no_grad():
        for k, (entry, sfxs) in enumerate(zip(layers, _suffixes(module))):
            entry = list(entry) if isinstance(entry, (list, tuple)) else [entry]
            if len(entry) != len(sfxs):
                raise ValueError(f"to_torch: layer {k} needs {len(sfxs)} direction(s) "
                                 f"(bidirectional={module.bidirectional}), got {len(entry)}")
            for layer, sfx in zip(entry, sfxs):
                if kind == "GRU" and not getattr(layer, "reset_after", True):
                    raise ValueError(f"to_torch: layer '{layer.name}' is a GRU with reset_after=False, "
                                     "which PyTorch nn.GRU cannot represent")
                if bool(module.bias) != bool(layer.use_bias):
                    raise ValueError(f"to_torch: the module has bias={module.bias} but layer '{layer.name}' "
                                     f"has use_bias={layer.use_bias}")
                w = conv(*layer.get_weights())
                for name, value in w.items():
                    p = getattr(module, name + sfx, None)
                    if p is None:
                        raise ValueError(f"to_torch: the module has no parameter {name + sfx} "
                                         f"(bias={module.bias}), but layer '{layer.name}' has a bias")
                    if tuple(p.shape) != value.shape:
                        raise ValueError(f"to_torch: {name + sfx} has shape {tuple(p.shape)}, "
                                         f"layer '{layer.name}' gives {value.shape}")
                    p.copy_(torch.as_tensor(value, dtype=p.dtype))
    return module
