"""Wrappers: ``Bidirectional`` (a recurrent layer run both ways) and ``TimeDistributed``.

Both own their inner layers (``self._sublayers``), so weights, counts, trainability and
optimizer paths recurse through them (``bidirectional/forward_lstm/kernel``, ...).

Bidirectional (Keras 3 semantics), for an RNN layer ``L`` called on x (B, T, D) with mask m::

    forward_L  = L rebuilt from its config, named "forward_<name>"
    backward_L = L rebuilt with go_backwards=True, named "backward_<name>" (or ``backward_layer``)
    y_f = forward_L(x, m, initial_state[:n])      y_b = backward_L(x, m, initial_state[n:])
    y_b <- y_b reversed in time                   (only with return_sequences: back to input order)
    concat: y = [y_f, y_b] (last axis)   sum: y_f + y_b   ave: (y_f + y_b) / 2   mul: y_f * y_b
    None:   [y_f, y_b]
    return_state: [y, *states_f, *states_b]  (merge_mode None: [y_f, y_b, *states_f, *states_b])

With ``return_sequences`` both inner layers get ``zero_output_for_mask=True`` (as Keras forces),
so masked steps output zeros. The mask goes to both directions unchanged (``go_backwards``
reverses it inside the RNN together with the inputs).

Backward, with g = dL/dy::

    concat: g_f = g[..., :U], g_b = g[..., U:]     sum: g_f = g_b = g     ave: g_f = g_b = g / 2
    mul:    g_f = g * y_b,    g_b = g * y_f        None: [g_f, g_b] given directly
    g_b <- g_b reversed in time (return_sequences); state gradients routed to their direction;
    dL/dx = dx_f + dx_b;  initial_state given -> [dx, *dstates_f, *dstates_b]

TimeDistributed(layer) folds time into batch: x (B, T, ...) -> layer(x.reshape(B*T, ...)) ->
reshape to (B, T, ...); backward does the same to the gradient. The input mask passes through
unchanged (the inner layer computes every step, as Keras; a masked loss ignores the padded steps).
"""
from __future__ import annotations

import numpy as np

from .. import backend
from .base import Layer, format_shape, get_layer_class, register
from .recurrent import validate_mask

_MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def _removeprefix(s: str, prefix: str) -> str:
    return s[len(prefix):] if s.startswith(prefix) else s


def _serialize(layer: Layer) -> dict:
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def _deserialize(cfg, what) -> Layer:
    if isinstance(cfg, Layer):
        return cfg
    if not isinstance(cfg, dict) or not isinstance(cfg.get("class_name"), str) or not isinstance(cfg.get("config"), dict):
        raise ValueError(f"{what} must be a Layer or a dict {{'class_name': str, 'config': dict}}, got {cfg!r:.200}")
    return get_layer_class(cfg["class_name"]).from_config(dict(cfg["config"]))


@register
class Bidirectional(Layer):
    """Runs a recurrent layer forwards and backwards in time and merges the two outputs (Keras ``Bidirectional``).

    Args:
        layer: a ``SimpleRNN``, ``LSTM`` or ``GRU`` instance (its config is copied; its own weights are not used).
            The backward copy gets ``go_backwards=True`` (as Keras sets it, not toggles it): a ``layer`` that
            already has ``go_backwards=True`` needs an explicit ``backward_layer`` with ``go_backwards=False``.
        merge_mode: ``"concat"`` (default), ``"sum"``, ``"mul"``, ``"ave"`` or ``None`` (return ``[y_f, y_b]``).
        weights: optional initial weights, Keras ``get_weights()`` order (forward ones, then backward ones).
        backward_layer: optional layer for the backward direction; must have ``go_backwards`` different from
            ``layer`` and the same ``stateful``, ``return_sequences``, ``return_state``.

    Shapes: x (B, T, D) -> (B, 2U) / (B, T, 2U) for concat, (B, U) / (B, T, U) otherwise.
    ``initial_state`` is split half/half: the first half to the forward layer, the rest to the backward one.
    ``get_weights()`` is the forward layer's weights followed by the backward layer's, as Keras.
    The equations of forward and backward are in the module docstring.
    """

    _float_input = False  # like the RNNs: integer ids need an Embedding first (the inner layers say so)

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None, **kwargs):
        if not isinstance(layer, Layer):
            raise TypeError(f"Bidirectional: layer must be an rnnlab recurrent Layer instance (SimpleRNN, LSTM, GRU), "
                            f"got {type(layer).__name__}")
        for attr in ("go_backwards", "return_sequences", "return_state", "stateful"):
            if not hasattr(layer, attr):
                raise TypeError(f"Bidirectional: layer must be a recurrent layer (SimpleRNN, LSTM, GRU) with "
                                f"'{attr}', got {type(layer).__name__}")
        if backward_layer is not None and not isinstance(backward_layer, Layer):
            raise TypeError(f"Bidirectional: backward_layer must be a Layer instance, got {type(backward_layer).__name__}")
        if merge_mode not in _MERGE_MODES:
            raise ValueError(f"Bidirectional: merge_mode must be one of {list(_MERGE_MODES)}, got {merge_mode!r}")
        kwargs.setdefault("dtype", layer.dtype)
        super().__init__(weights=weights if weights else None, **kwargs)
        if self.batch_input_shape is None and layer.batch_input_shape is not None:
            self.batch_input_shape = layer.batch_input_shape

        cfg = layer.get_config()
        cfg["name"] = "forward_" + _removeprefix(layer.name, "forward_")
        self.forward_layer = type(layer).from_config(cfg)
        if backward_layer is None:
            cfg = layer.get_config()
            cfg["go_backwards"] = True
            cfg["name"] = "backward_" + _removeprefix(layer.name, "backward_")
            self.backward_layer = type(layer).from_config(cfg)
        else:
            self.backward_layer = backward_layer
        fw, bw = self.forward_layer, self.backward_layer
        if fw.go_backwards == bw.go_backwards:
            raise ValueError("Bidirectional: forward layer and backward layer should have different go_backwards "
                             f"values, got forward_layer.go_backwards={fw.go_backwards}, "
                             f"backward_layer.go_backwards={bw.go_backwards}")
        for a in ("stateful", "return_sequences", "return_state"):
            if getattr(fw, a) != getattr(bw, a):
                raise ValueError(f"Bidirectional: forward layer and backward layer must have the same {a}, got "
                                 f"{getattr(fw, a)} (forward) and {getattr(bw, a)} (backward)")
        for sub in (fw, bw):  # Keras forces zero outputs at masked steps when returning sequences
            if hasattr(sub, "zero_output_for_mask"):
                sub.zero_output_for_mask = sub.return_sequences
        self.merge_mode = merge_mode
        self.stateful = fw.stateful
        self.return_sequences = fw.return_sequences
        self.return_state = fw.return_state
        self._sublayers = [fw, bw]

    # ------------------------------------------------------------------ shapes
    def _shape_from_dims(self, input_dim, input_length):
        if input_dim is None and input_length is None:
            return None
        return (None if input_length is None else int(input_length), None if input_dim is None else int(input_dim))

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.forward_layer._maybe_build(input_shape)
        self.backward_layer._maybe_build(input_shape)
        super().build(input_shape)

    def _n_states(self, layer):
        return len(getattr(layer, "_state_names", ())) or len(getattr(layer, "state_size", []))

    def compute_output_shape(self, input_shape):
        out = self.forward_layer.compute_output_shape(tuple(input_shape))
        states = []
        if self.return_state:
            out, states = out[0], list(out[1:])
            states = states + list(self.backward_layer.compute_output_shape(tuple(input_shape))[1:])
        if self.merge_mode == "concat":
            out = tuple(out[:-1]) + (None if out[-1] is None else 2 * out[-1],)
            outs = [out]
        elif self.merge_mode is None:
            outs = [tuple(out), tuple(self.backward_layer.compute_output_shape(tuple(input_shape))[0]
                                      if self.return_state else
                                      self.backward_layer.compute_output_shape(tuple(input_shape)))]
        else:
            outs = [tuple(out)]
        if self.return_state or self.merge_mode is None:
            return outs + [tuple(s) for s in states]
        return outs[0]

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if self.return_sequences:
            out = [mask, mask] if self.merge_mode is None else mask
        else:
            out = [None, None] if self.merge_mode is None else None
        if self.return_state:
            n = sum(len(getattr(sub, "_returned_states", sub._state_names if hasattr(sub, "_state_names") else []))
                    for sub in (self.forward_layer, self.backward_layer))
            return (out if isinstance(out, list) else [out]) + [None] * n
        return out

    # ----------------------------------------------------------------- weights
    def set_weights(self, weights):
        """Load Keras ``Bidirectional.get_weights()``: the forward layer's arrays, then the backward layer's.

        Weights of another recurrent type (e.g. a Keras GRU's into an LSTM) are reported as such."""
        try:
            super().set_weights(weights)
        except ValueError as e:
            hint = self._weights_kind_hint(weights)
            if hint:
                raise ValueError(f"{e}. {hint}") from None
            raise

    def _weights_kind_hint(self, weights):
        """Name the recurrent type the given arrays look like when it is not the wrapped type."""
        hint = getattr(self.forward_layer, "_weights_kind_hint", None)
        return hint(weights, wrapper="Bidirectional") if hint is not None else None

    # ------------------------------------------------------------------ states
    @property
    def states(self):
        fs, bs = getattr(self.forward_layer, "states", None), getattr(self.backward_layer, "states", None)
        if fs and bs:
            return list(fs) + list(bs)
        return None

    def reset_states(self, states=None):
        """Stateful only: zero both directions' carried states (or set them: forward half, then backward half)."""
        if not self.stateful:
            raise AttributeError(f"Layer '{self.name}' is not stateful (stateful=False): nothing to reset")
        if states is None:
            self.forward_layer.reset_states()
            self.backward_layer.reset_states()
            return
        fs, bs = self._split_states(states, "states")
        self.forward_layer.reset_states(fs)
        self.backward_layer.reset_states(bs)

    reset_state = reset_states

    def _split_states(self, states, arg):
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        nf, nb = self._n_states(self.forward_layer), self._n_states(self.backward_layer)
        if len(states) != nf + nb:
            raise ValueError(f"Layer '{self.name}' (Bidirectional): {arg} expects {nf + nb} arrays "
                             f"({nf} for the forward layer, then {nb} for the backward layer), got {len(states)}")
        return states[:nf], states[nf:]

    # ------------------------------------------------------------------ forward
    def forward(self, x, training=False, mask=None, initial_state=None):
        """Run both directions and merge (see the module docstring). Returns the merged output, or a list with
        ``return_state`` / ``merge_mode=None``."""
        if not self.built:
            raise RuntimeError(f"Layer '{self.name}' is not built: call it on data (layer(x)) or build() first")
        if isinstance(x, np.ndarray) and x.ndim == 3:
            mask = validate_mask(self, mask, x.shape[0], x.shape[1])
        fs = bs = None
        given_state = initial_state is not None
        if given_state:
            fs, bs = self._split_states(initial_state, "initial_state")
        yf = self.forward_layer.forward(x, training=training, mask=mask, initial_state=fs)
        yb = self.backward_layer.forward(x, training=training, mask=mask, initial_state=bs)
        f_states = b_states = []
        if self.return_state:
            yf, f_states = yf[0], list(yf[1:])
            yb, b_states = yb[0], list(yb[1:])
        if self.return_sequences:
            yb = yb[:, ::-1]
        mm = self.merge_mode
        if mm == "concat":
            out = np.concatenate([yf, yb], axis=-1)
        elif mm == "sum":
            out = yf + yb
        elif mm == "ave":
            out = (yf + yb) * yf.dtype.type(0.5)
        elif mm == "mul":
            out = yf * yb
        else:
            out = [yf, np.ascontiguousarray(yb)]
        self._cache = (yf, yb, given_state, (len(f_states), len(b_states)), yf.shape, yb.shape)
        if mm is None:
            return out + f_states + b_states if self.return_state else out
        if self.return_state:
            return [out] + f_states + b_states
        return out

    # ----------------------------------------------------------------- backward
    def _check_grad(self, g, shape, what):
        if g is None:
            return None
        g = np.asarray(g)
        if g.shape != tuple(shape):
            raise ValueError(f"Layer '{self.name}' (Bidirectional): gradient for {what} must have shape "
                             f"{tuple(shape)}, got {g.shape}")
        return g

    def backward(self, grad):
        """Split dL/dy by merge mode, run both directions' BPTT, add the input gradients (module docstring)."""
        yf, yb, given_state, (nf, nb), fshape, bshape = self._need_cache()
        mm = self.merge_mode
        n_out = 2 if mm is None else 1
        if self.return_state or mm is None:
            n_total = n_out + (nf + nb if self.return_state else 0)
            if not isinstance(grad, (list, tuple)) or len(grad) != n_total:
                raise ValueError(f"Layer '{self.name}' (Bidirectional) returned {n_total} outputs: backward expects "
                                 f"a list of {n_total} gradients (None = zero), got {type(grad).__name__}"
                                 + (f" of {len(grad)}" if isinstance(grad, (list, tuple)) else ""))
            outs, states = list(grad[:n_out]), list(grad[n_out:])
        else:
            if isinstance(grad, (list, tuple)):
                raise ValueError(f"Layer '{self.name}' (Bidirectional) returned one output: backward expects one "
                                 f"gradient array, got a list of {len(grad)}")
            outs, states = [grad], []
        g_fs, g_bs = states[:nf], states[nf:]
        if mm is None:
            gf = self._check_grad(outs[0], fshape, "the forward output")
            gb = self._check_grad(outs[1], bshape, "the backward output")
        else:
            oshape = fshape[:-1] + (fshape[-1] + bshape[-1],) if mm == "concat" else fshape
            g = self._check_grad(outs[0], oshape, "the output")
            if g is None:
                gf = gb = None
            elif mm == "concat":
                gf, gb = g[..., :fshape[-1]], g[..., fshape[-1]:]
            elif mm == "sum":
                gf = gb = g
            elif mm == "ave":
                gf = gb = g * g.dtype.type(0.5)
            else:  # mul
                gf, gb = g * yb, g * yf
        if self.return_sequences and gb is not None:
            gb = gb[:, ::-1]
        if self.return_state:
            gf_arg, gb_arg = [gf] + g_fs, [gb] + g_bs
        else:
            gf_arg, gb_arg = gf, gb
        need = self.input_grad_needed
        self.forward_layer.input_grad_needed = self.backward_layer.input_grad_needed = need
        try:
            df = self.forward_layer.backward(gf_arg)
            db = self.backward_layer.backward(gb_arg)
        finally:
            self.forward_layer.input_grad_needed = self.backward_layer.input_grad_needed = True
        if df is None:
            return None
        if given_state:
            return [df[0] + db[0]] + list(df[1:]) + list(db[1:])
        return df + db

    # ------------------------------------------------------------ serialization
    def get_config(self):
        cfg = super().get_config()
        cfg.update(layer=_serialize(self.forward_layer), merge_mode=self.merge_mode,
                   backward_layer=_serialize(self.backward_layer))
        return cfg

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = _deserialize(config.get("layer"), "Bidirectional config 'layer'")
        if config.get("backward_layer") is not None:
            config["backward_layer"] = _deserialize(config["backward_layer"], "Bidirectional config 'backward_layer'")
        return cls(**config)


class _OneLayerWrapper(Layer):
    """Base of the wrappers around one inner layer, ``self.layer`` (TimeDistributed, WeightDrop): the layer is
    checked, owned (``_sublayers``: weights, counts and optimizer paths recurse into it), gives the wrapper its
    dtype and float-input rule, and its config sits in the wrapper's under ``"layer"``."""

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise TypeError(f"{type(self).__name__}: layer must be an rnnlab Layer instance, got "
                            f"{type(layer).__name__}")
        kwargs.setdefault("dtype", layer.dtype)
        super().__init__(**kwargs)
        self.layer = layer
        self._sublayers = [layer]
        self._float_input = getattr(layer, "_float_input", True)

    def get_config(self):
        cfg = super().get_config()
        cfg["layer"] = _serialize(self.layer)
        return cfg

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = _deserialize(config.get("layer"), f"{cls.__name__} config 'layer'")
        return cls(**config)


@register
class TimeDistributed(_OneLayerWrapper):
    """Applies ``layer`` to every time step: (B, T, ...) -> (B, T, ...) with shared weights (Keras ``TimeDistributed``).

    Forward: ``y = layer(x.reshape(B*T, ...)).reshape(B, T, ...)`` (time folded into batch; for ``Dropout``
    each step gets its own draw, as with Keras' per-step calls). Backward: the same folding of dL/dy, then
    the inner layer's backward; its weight gradients are summed over all steps by the inner layer itself.
    The input mask (B, T) passes through to the next layer unchanged. As in Keras, the wrapped layer also
    receives it: for (B, T, F) inputs its ``forward`` gets ``mask`` of shape (B*T,), True where the folded sample
    is a real step (layers that ignore masks, such as Dense, still compute every step; for inputs of rank > 3 the
    wrapped layer gets no mask, since a per-step mask would not match its own (batch, steps) mask).
    """

    def __init__(self, layer, **kwargs):
        super().__init__(layer, **kwargs)
        if getattr(layer, "return_state", False):
            raise ValueError(f"TimeDistributed: the wrapped layer '{layer.name}' has return_state=True; "
                             "it must return one array")

    def _child_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 3:
            raise ValueError(f"TimeDistributed '{self.name}': needs an input of at least 3 dimensions "
                             f"(batch, timesteps, ...), got input shape {format_shape(input_shape)}")
        return (None,) + input_shape[2:]

    def build(self, input_shape):
        self.layer._maybe_build(self._child_shape(input_shape))
        super().build(tuple(input_shape))

    def compute_output_shape(self, input_shape):
        child = self.layer.compute_output_shape(self._child_shape(input_shape))
        return (input_shape[0], input_shape[1]) + tuple(child[1:])

    def compute_mask(self, inputs, mask=None):
        return mask

    def forward(self, x, training=False, mask=None):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"Layer '{self.name}': inputs must be a NumPy array, got {type(x).__name__}")
        if x.ndim < 3:
            raise ValueError(f"Input to layer '{self.name}' (TimeDistributed) is incompatible: expected ndim>=3 "
                             f"(batch, timesteps, ...), found ndim={x.ndim} with shape {x.shape}")
        B, T = x.shape[:2]
        mask = validate_mask(self, mask, B, T)
        # Keras hands the wrapped layer the mask of each step; here the steps are folded into the batch,
        # so a (B, T) mask becomes one entry per folded sample, (B*T,), given when each sample is a vector
        step_mask = mask.reshape(B * T) if mask is not None and x.ndim == 3 else None
        y = self.layer.forward(x.reshape((B * T,) + x.shape[2:]), training=training, mask=step_mask)
        self._cache = (x.shape, y.shape)
        return y.reshape((B, T) + y.shape[1:])

    def backward(self, grad):
        x_shape, y_shape = self._need_cache()
        B, T = x_shape[:2]
        grad = np.asarray(grad)
        if grad.shape != (B, T) + tuple(y_shape[1:]):
            raise ValueError(f"Layer '{self.name}' (TimeDistributed): gradient must have shape "
                             f"{(B, T) + tuple(y_shape[1:])}, got {grad.shape}")
        dx = self.layer.backward(grad.reshape(y_shape))
        if dx is None:
            return None
        return dx.reshape(x_shape)


@register
class WeightDrop(_OneLayerWrapper):
    """DropConnect on one weight matrix of a layer, one mask per call (AWD-LSTM's weight drop; Wan et al. 2013,
    Merity, Keskar & Socher 2017). Not a Keras layer.

    ``WeightDrop(LSTM(U, ...), rate=0.5)`` drops entries of the recurrent matrix W_h (``weight``, default
    ``"recurrent_kernel"``) instead of units of h: at each training call a mask ``M`` of W_h's shape is drawn
    (each entry kept with probability ``1 - rate``, scaled by ``1 / (1 - rate)``), and the wrapped layer runs with
    ``W_h' = W_h * M`` at **every time step** of that call (the same dropped connections for the whole sequence,
    so the recurrence itself is regularised without touching the carried state h, and the layer's fast paths
    stay as they are). At inference (``training=False``) the layer runs with W_h itself.

    Backward: the wrapped layer gives ``dL/dW_h'``; since ``W_h' = W_h * M``, ``dL/dW_h = dL/dW_h' * M``. The mask
    is applied again (the same products, the same bits) around the wrapped layer's backward, so W_h holds its own
    values between calls and the optimizer updates W_h. Masks come from :func:`rnnlab.backend.rng`
    (``set_random_seed``), or from the layer's own generator with ``seed=``.
    Shapes, states, masks and ``initial_state`` are the wrapped layer's (``layer.states``, ``reset_states``).
    """

    def __init__(self, layer, rate=0.5, weight="recurrent_kernel", seed=None, **kwargs):
        super().__init__(layer, **kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.number)) or not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"WeightDrop: rate must be a float in [0, 1), got {rate!r}")
        if not isinstance(weight, str):
            raise TypeError(f"WeightDrop: weight must be the name of one of the layer's weights, got {weight!r}")
        self.rate = float(rate)
        self.weight = weight
        self.seed = seed
        self._gen = backend.seeded_rng("WeightDrop", seed)
        for a in ("stateful", "return_sequences", "return_state"):
            if hasattr(layer, a):
                setattr(self, a, getattr(layer, a))
        self._mask = None

    def build(self, input_shape):
        self.layer._maybe_build(tuple(input_shape))
        if self.weight not in self.layer.params:
            raise ValueError(f"WeightDrop '{self.name}': the wrapped layer '{self.layer.name}' has no weight "
                             f"{self.weight!r} (its weights: {', '.join(self.layer.params) or 'none'})")
        super().build(tuple(input_shape))

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    @property
    def states(self):
        return getattr(self.layer, "states", None)

    def reset_states(self, states=None):
        return self.layer.reset_states(states)

    reset_state = reset_states

    def _masked(self, fn):
        """Run fn() with the wrapped weight multiplied by this call's mask, then put its own values back."""
        w = self.layer.params[self.weight]
        own = w.copy()
        np.multiply(own, self._mask, out=w)
        try:
            return fn()
        finally:
            np.copyto(w, own)

    def forward(self, x, training=False, mask=None, initial_state=None):
        if not self.built:
            raise RuntimeError(f"Layer '{self.name}' is not built: call it on data (layer(x)) or build() first")
        kw = {} if initial_state is None else {"initial_state": initial_state}
        self.layer.input_grad_needed = self.input_grad_needed
        if not training or self.rate == 0.0:
            self._mask = None
            return self.layer.forward(x, training=training, mask=mask, **kw)
        w = self.layer.params[self.weight]
        keep = 1.0 - self.rate
        rng = self._gen if self._gen is not None else backend.rng()
        self._mask = ((rng.random(w.shape) < keep) / keep).astype(w.dtype)
        return self._masked(lambda: self.layer.forward(x, training=training, mask=mask, **kw))

    def backward(self, grad):
        self.layer.input_grad_needed = self.input_grad_needed
        if self._mask is None:
            return self.layer.backward(grad)
        out = self._masked(lambda: self.layer.backward(grad))
        self.layer.grads[self.weight] *= self._mask
        return out

    def get_config(self):
        cfg = super().get_config()
        cfg.update(rate=self.rate, weight=self.weight, seed=self.seed)
        return cfg
