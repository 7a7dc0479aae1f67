"""Weight conversion between PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` / ``nn.Embedding`` / ``nn.Linear``
and rnnlab layers (a bidirectional PyTorch layer <-> :class:`~rnnlab.layers.Bidirectional` with ``merge_mode="concat"``).

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
Embedding  weight (V, E)                           embeddings (V, E) (the same matrix)
Linear     weight (out, in), bias (out,)           Dense kernel (in, out) = weight.T, bias (out,)
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




# ------------------------------------------------------------------ Embedding and Linear (Dense)
def embedding_from_torch(weight):
    """``nn.Embedding.weight`` (V, E) -> Embedding weights ``[embeddings]`` (the same matrix)."""
    w = _np(weight)
    _check2("embedding_from_torch: weight", w, None)
    return [w.copy()]


def dense_from_torch(weight, bias=None):
    """``nn.Linear`` ``weight`` (out, in) and ``bias`` (out,) -> Dense weights ``[kernel (in, out)(, bias)]``."""
    w, b = _np(weight), _np(bias)
    _check2("dense_from_torch: weight", w, None)
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"dense_from_torch: bias must have shape ({w.shape[0]},), got {b.shape}")
    return [w.T.copy()] + ([b.copy()] if b is not None else [])


def dense_to_torch(kernel, bias=None):
    """Dense ``kernel`` (in, out)(, ``bias``) -> dict ``weight`` (out, in)(, ``bias``) of an ``nn.Linear``."""
    k = _np(kernel)
    _check2("dense_to_torch: kernel", k, None)
    out = {"weight": k.T.copy()}
    if bias is not None:
        out["bias"] = _np(bias).copy()
    return out


# ------------------------------------------------------------------ whole modules / state dicts
class _StateDictSpec:
    """What :func:`from_torch` needs from an ``nn.RNN/LSTM/GRU`` when only its ``state_dict`` is given."""

    def __init__(self, sd, kind, nonlinearity):
        if not any(k.startswith("weight_ih_l") for k in sd):
            raise ValueError(f"from_torch: the state_dict has no 'weight_ih_l0' entry; keys: {sorted(sd)[:8]}")
        if any(k.startswith("weight_hr_l") for k in sd):
            raise ValueError("from_torch: the state_dict has weight_hr_l* (nn.LSTM with proj_size), "
                             "which has no rnnlab/Keras equivalent")
        w_hh = _np(sd["weight_hh_l0"])
        H = w_hh.shape[1]
        gates = w_hh.shape[0] // H if H else 0
        inferred = {1: "RNN", 3: "GRU", 4: "LSTM"}.get(gates)
        if inferred is None or w_hh.shape[0] != gates * H:
            raise ValueError(f"from_torch: weight_hh_l0 has shape {w_hh.shape}; expected (gates*H, H) with "
                             "1 (RNN), 3 (GRU) or 4 (LSTM) gates")
        if kind is not None and kind != inferred:
            raise ValueError(f"from_torch: kind={kind!r} but the state_dict holds {inferred} weights "
                             f"(weight_hh_l0 {w_hh.shape}: {gates} gate(s) of {H} units)")
        self.kind = inferred
        self.hidden_size = H
        self.input_size = _np(sd["weight_ih_l0"]).shape[1]
        self.num_layers = len([k for k in sd if k.startswith("weight_ih_l") and not k.endswith("_reverse")])
        self.bidirectional = "weight_ih_l0_reverse" in sd
        self.bias = "bias_ih_l0" in sd
        self.nonlinearity = nonlinearity
        self.proj_size = 0
        self._sd = sd

    def __getattr__(self, name):  # weight_ih_l0 ... like the module's parameters
        sd = self.__dict__.get("_sd", {})
        if name in sd:
            return sd[name]
        raise AttributeError(name)


def _module_kind(obj):
    """'RNN' | 'LSTM' | 'GRU' | 'Embedding' | 'Linear' for a torch module or a state-dict spec."""
    if isinstance(obj, _StateDictSpec):
        return obj.kind
    name = type(obj).__name__
    if name in ("Embedding", "Linear"):
        return name
    if name in _KINDS:
        return _kind(obj)
    raise TypeError(f"from_torch/to_torch: expected a torch.nn.RNN, nn.LSTM, nn.GRU, nn.Embedding or nn.Linear "
                    f"module (or a state_dict of one), got {name}")


def _as_spec(module_or_state_dict, kind, nonlinearity):
    if isinstance(module_or_state_dict, dict) or type(module_or_state_dict).__name__ == "OrderedDict":
        sd = dict(module_or_state_dict)
        if kind in ("Embedding", "Linear") or (kind is None and set(sd) <= {"weight", "bias"}):
            if kind is None:
                if "bias" not in sd:
                    raise ValueError("from_torch: a state_dict with only 'weight' can be an nn.Embedding or an "
                                     "nn.Linear without bias: pass kind='Embedding' or kind='Linear'")
                kind = "Linear"
            if "weight" not in sd:
                raise ValueError(f"from_torch: an {kind} state_dict needs 'weight', got keys {sorted(sd)}")
            return kind, sd
        if kind not in (None, "RNN", "LSTM", "GRU"):
            raise ValueError(f"from_torch: kind must be one of 'RNN', 'LSTM', 'GRU', 'Embedding', 'Linear', got {kind!r}")
        spec = _StateDictSpec(sd, kind, nonlinearity)
        return spec.kind, spec
    k = _module_kind(module_or_state_dict)
    if kind is not None and kind != k:
        raise ValueError(f"from_torch: kind={kind!r} but the module is an nn.{k}")
    return k, module_or_state_dict


def from_torch(module_or_state_dict, return_sequences=None, dtype=None, *, kind=None, merge_mode="concat",
               return_state=False, nonlinearity="tanh", mask_zero=None):
    """Build rnnlab layers carrying the weights of a PyTorch module (or of its ``state_dict()``).

    * ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``: a list with one layer per PyTorch layer
      (``SimpleRNN`` / ``LSTM`` / ``GRU(reset_after=True)``); with ``bidirectional=True`` each entry is a
      :class:`~rnnlab.layers.Bidirectional` (``merge_mode="concat"``, which is what PyTorch computes; its
      backward direction holds the ``*_reverse`` weights). ``return_sequences`` defaults to True
      (PyTorch returns the whole sequence); ``return_state`` is passed to every layer. Layer k > 0 takes
      ``num_directions * H`` inputs, so the list runs as a stack, or as a ``Sequential``.
    * ``nn.Embedding``: one :class:`~rnnlab.layers.Embedding`; ``mask_zero`` defaults to
      ``padding_idx == 0`` (the usual padding id; masks are rnnlab's, PyTorch only freezes that row).
    * ``nn.Linear``: one :class:`~rnnlab.layers.Dense` (no activation), ``kernel = weight.T``.

    A ``state_dict`` works too: the recurrent kind, sizes, layers and directions are read from its keys and
    shapes (an ``nn.RNN`` state dict does not record its nonlinearity: pass ``nonlinearity="relu"`` if so);
    ``{"weight", "bias"}`` is read as ``nn.Linear``; a lone ``{"weight"}`` needs ``kind="Embedding"`` or
    ``kind="Linear"``. Layers are built (weights set) and use ``dtype`` (default: rnnlab's floatx).
    """
    from .layers.core import Dense
    from .layers.embedding import Embedding
    from .layers.gru import GRU
    from .layers.lstm import LSTM
    from .layers.simple_rnn import SimpleRNN
    from .layers.wrappers import Bidirectional

    kind, module = _as_spec(module_or_state_dict, kind, nonlinearity)
    dtype = backend.standardize_dtype(dtype)
    if kind == "Embedding":
        w = module["weight"] if isinstance(module, dict) else module.weight
        pad = None if isinstance(module, dict) else module.padding_idx
        mz = (pad == 0) if mask_zero is None else bool(mask_zero)
        (emb,) = embedding_from_torch(w)
        layer = Embedding(emb.shape[0], emb.shape[1], mask_zero=mz, dtype=dtype)
        layer._maybe_build((None, None))
        layer.set_weights([emb])
        return layer
    if kind == "Linear":
        if isinstance(module, dict):
            ws = dense_from_torch(module["weight"], module.get("bias"))
        else:
            ws = dense_from_torch(module.weight, module.bias)
        layer = Dense(ws[0].shape[1], use_bias=len(ws) == 2, dtype=dtype)
        layer._maybe_build((None, ws[0].shape[0]))
        layer.set_weights(ws)
        return layer

    H = module.hidden_size
    rs = True if return_sequences is None else bool(return_sequences)
    ndir = 2 if module.bidirectional else 1
    weights = torch_module_weights(module)
    layers = []
    for k, row in enumerate(weights):
        in_dim = module.input_size if k == 0 else ndir * H
        kw = dict(return_sequences=rs, return_state=bool(return_state), use_bias=bool(module.bias), dtype=dtype)
        if kind == "RNN":
            proto = SimpleRNN(H, activation=module.nonlinearity, **kw)
        elif kind == "LSTM":
            proto = LSTM(H, **kw)
        else:
            proto = GRU(H, reset_after=True, **kw)
        layer = Bidirectional(proto, merge_mode=merge_mode) if ndir == 2 else proto
        layer._maybe_build((None, None, in_dim))
        layer.set_weights([w for direction in row for w in direction])
        layers.append(layer)
    return layers


def torch_module_weights(module) -> list:
    """All weights of an ``nn.RNN/LSTM/GRU`` (or a state-dict spec) in rnnlab/Keras layout:
    ``[[w_dir0, (w_dir1)], ...]`` per layer, each ``w`` a list ``[kernel, recurrent_kernel(, bias)]``."""
    kind = module.kind if isinstance(module, _StateDictSpec) else _kind(module)
    conv = _KINDS[kind][0]
    out = []
    for layer in _suffixes(module):
        row = []
        for sfx in layer:
            g = lambda n: getattr(module, n + sfx, None)  # noqa: E731
            row.append(conv(g("weight_ih"), g("weight_hh"), g("bias_ih"), g("bias_hh")))
        out.append(row)
    return out


def _directions(entry):
    """A Bidirectional -> [forward_layer, backward_layer]; a (fw, bw) pair -> list; a layer -> [layer]."""
    if hasattr(entry, "forward_layer") and hasattr(entry, "backward_layer"):
        if entry.merge_mode != "concat":
            raise ValueError(f"to_torch: Bidirectional '{entry.name}' has merge_mode={entry.merge_mode!r}; a "
                             "bidirectional PyTorch module concatenates the two directions (merge_mode='concat')")
        return [entry.forward_layer, entry.backward_layer]
    return list(entry) if isinstance(entry, (list, tuple)) else [entry]


def _new_torch_module(layers):
    """A fresh PyTorch module (batch_first=True) shaped like ``layers`` (see :func:`to_torch`)."""
    import torch

    from .layers.core import Dense
    from .layers.embedding import Embedding

    single = layers[0] if len(layers) == 1 else None
    if isinstance(single, Embedding):
        return torch.nn.Embedding(single.input_dim, single.output_dim, dtype=getattr(torch, single.dtype))
    if isinstance(single, Dense):
        if single.activation.name != "linear":
            raise ValueError(f"to_torch: Dense '{single.name}' has activation {single.activation.name!r}; "
                             "nn.Linear has none (apply it separately, or give module= to copy the weights only)")
        return torch.nn.Linear(single.params["kernel"].shape[0], single.units, bias=single.use_bias,
                               dtype=getattr(torch, single.dtype))
    dirs = [_directions(e) for e in layers]
    first = dirs[0][0]
    kind = {"SimpleRNN": "RNN", "LSTM": "LSTM", "GRU": "GRU"}.get(type(first).__name__)
    if kind is None:
        raise TypeError(f"to_torch: cannot make a PyTorch module from layer '{first.name}' ({type(first).__name__}); "
                        "expected SimpleRNN/LSTM/GRU (or Bidirectional of them), an Embedding or a Dense")
    ndir = len(dirs[0])
    for k, d in enumerate(dirs):
        for layer in d:
            if type(layer) is not type(first) or layer.units != first.units or len(d) != ndir:
                raise ValueError(f"to_torch: layer {k} ('{layer.name}', {type(layer).__name__}({layer.units})) does "
                                 f"not match layer 0 ({type(first).__name__}({first.units}), {ndir} direction(s)); a "
                                 "PyTorch module has one cell type and size for all layers and directions")
            if not layer.built:
                raise ValueError(f"to_torch: layer '{layer.name}' is not built (call it on data first)")
        if ndir == 2 and (d[0].go_backwards or not d[1].go_backwards):
            raise ValueError(f"to_torch: layer {k}: the second direction must be the go_backwards one")
        if ndir == 1 and d[0].go_backwards:
            raise ValueError(f"to_torch: layer {k} ('{d[0].name}') has go_backwards=True; a unidirectional "
                             "PyTorch module runs forwards")
    kw = dict(num_layers=len(dirs), bias=first.use_bias, batch_first=True, bidirectional=ndir == 2,
              dtype=getattr(torch, first.dtype))
    input_size = first.params["kernel"].shape[0]
    if kind == "RNN":
        act = first.activation.name
        if act not in ("tanh", "relu"):
            raise ValueError(f"to_torch: SimpleRNN activation {act!r} has no nn.RNN equivalent (tanh or relu)")
        return torch.nn.RNN(input_size, first.units, nonlinearity=act, **kw)
    return getattr(torch.nn, kind)(input_size, first.units, **kw)


def to_torch(layers, module=None):
    """Copy rnnlab layers' weights into a PyTorch module (in place; shapes checked) and return it.

    ``layers``: for ``nn.RNN/LSTM/GRU`` a list with one entry per PyTorch layer, each a recurrent layer, a
    :class:`~rnnlab.layers.Bidirectional` (``merge_mode="concat"``) or a ``(forward, backward)`` pair
    (what :func:`from_torch` returns); for ``nn.Embedding`` an ``Embedding``; for ``nn.Linear`` a ``Dense``.
    Without ``module`` a new one is created (``batch_first=True``, rnnlab's dtype) from the layers' sizes
    (a ``Dense`` must then have no activation, a ``SimpleRNN`` tanh or relu).
    """
    import torch

    layers = list(layers) if isinstance(layers, (list, tuple)) else [layers]
    if module is None:
        module = _new_torch_module(layers)
    kind = _module_kind(module)
    if kind in ("Embedding", "Linear"):
        if len(layers) != 1:
            raise ValueError(f"to_torch: an nn.{kind} takes one layer, got {len(layers)}")
        layer = layers[0]
        want = "Embedding" if kind == "Embedding" else "Dense"
        if type(layer).__name__ != want:
            raise TypeError(f"to_torch: an nn.{kind} takes a {want} layer, got '{layer.name}' ({type(layer).__name__})")
        if kind == "Embedding":
            w = {"weight": layer.params["embeddings"]}
        else:
            if (module.bias is not None) != layer.use_bias:
                raise ValueError(f"to_torch: nn.Linear bias={module.bias is not None} but Dense '{layer.name}' has "
                                 f"use_bias={layer.use_bias}")
            w = dense_to_torch(*layer.get_weights())
        with torch.no_grad():
            for name, value in w.items():
                p = getattr(module, name)
                if tuple(p.shape) != value.shape:
                    raise ValueError(f"to_torch: nn.{kind}.{name} has shape {tuple(p.shape)}, layer '{layer.name}' "
                                     f"gives {value.shape}")
                p.copy_(torch.as_tensor(value, dtype=p.dtype))
        return module

    conv = _KINDS[kind][1]
    if len(layers) != module.num_layers:
        raise ValueError(f"to_torch: the module has num_layers={module.num_layers}, got {len(layers)} layer(s)")
    want = {"RNN": "SimpleRNN", "LSTM": "LSTM", "GRU": "GRU"}[kind]
    with torch.no_grad():
        for k, (entry, sfxs) in enumerate(zip(layers, _suffixes(module))):
            entry = _directions(entry)
            if len(entry) != len(sfxs):
                raise ValueError(f"to_torch: layer {k} needs {len(sfxs)} direction(s) "
                                 f"(bidirectional={module.bidirectional}), got {len(entry)}")
            for layer, sfx in zip(entry, sfxs):
                if type(layer).__name__ != want:
                    raise TypeError(f"to_torch: an nn.{kind} takes {want} layers, got '{layer.name}' "
                                    f"({type(layer).__name__})")
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
