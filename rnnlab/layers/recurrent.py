"""RNN: the time loop over any recurrent cell (forward, full BPTT, masking, states).

A cell (:mod:`rnnlab.layers.cells`) computes one step; this layer runs it over time. For x (B, T, ...)
(or a list of such arrays for a cell with several inputs), an optional boolean mask m (B, T) and
initial states S_0 (zeros by default)::

    for k = 0 .. T-1:                         t = k, or T-1-k with go_backwards
        y_k, S' = cell(x[:, t], S)
        S      = where(m[:, t], S', S)        masked steps carry the states over (Keras)
        y_k    = where(m[:, t], y_k, y_{k-1}) masked steps repeat the previous output (zeros before the
                                              first real step), or give 0 with zero_output_for_mask=True

Output: ``y_{T-1}`` (B, ...), or all ``y_k`` (B, T, ...) with ``return_sequences`` (in processing order,
i.e. reversed for ``go_backwards``, as Keras); ``return_state`` appends the final states in the cell's
structure. ``stateful=True`` starts each call from the previous call's final states.

Backward (full BPTT), with dS the gradient w.r.t. the states after step k, carried back from k = T-1::

    dy_k  = dL/dy_k (+ what a masked step k+1 passed back to y_k)
    dx[:, t], dS_prev = cell.backward_step(dy_k * m, dS * m, cache_k)
    dS    = dS_prev + dS * (1 - m)            (masked rows pass their state gradient straight through)

Weight gradients: the cell adds each step's share to its ``grads`` (zeroed at the start of backward).

Fast path (optional). For the built-in cells (exactly ``SimpleRNNCell``, ``LSTMCell``, ``GRUCell``) the
same function has an optimised loop: :mod:`rnnlab.layers.fused_loop` (preallocated time-major buffers,
one GEMM for the input projection of all steps, packed products, compiled kernels). ``RNN(LSTMCell(n))``
then runs the very loop of ``LSTM(n)`` on the cell's own weights, so the two agree bit for bit. Any other
cell (a subclass too) runs the loop above.
"""
from __future__ import annotations

import numpy as np

from .base import Layer, format_shape, register
from .cells import (Cell, StackedRNNCells, deserialize_cell, describe_states, flatten_states, leaves,
                    serialize_cell, state_shapes)

__all__ = ["RNN", "Cell", "StackedRNNCells"]


# ------------------------------------------------------------ helpers shared with the cells
def act_forward_(act, x):
    """Apply ``act`` to ``x`` in place (x may be a strided view)."""
    y = act.forward(x, out=x)
    if y is not x:
        x[...] = y
    return x


def act_backward_(act, y, g, tmp):
    """``g <- g * f'(a)`` in place, the derivative written from the output ``y = f(a)``.

    ``tmp`` is scratch of g's shape. tanh, sigmoid and linear are done without allocating.
    """
    name = act.name
    if name == "tanh":
        np.multiply(y, y, out=tmp)
        np.subtract(1.0, tmp, out=tmp)
        g *= tmp
    elif name == "sigmoid":
        np.subtract(1.0, y, out=tmp)
        tmp *= y
        g *= tmp
    elif name == "linear":
        pass
    else:
        g[...] = act.backward(y, g)
    return g


def validate_mask(layer, mask, B, T):
    """A (batch, timesteps) mask as a bool array (None stays None); a wrong shape or a non-numeric dtype is an
    error naming ``layer``. Used by every recurrent loop and wrapper that takes ``mask=``."""
    if mask is None:
        return None
    if hasattr(mask, "detach") and hasattr(mask, "numpy"):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.shape != (B, T):
        raise ValueError(f"Layer '{layer.name}' ({type(layer).__name__}): mask must have shape "
                         f"(batch, timesteps) = ({B}, {T}), got {mask.shape}")
    if mask.dtype.kind not in "biuf":
        raise TypeError(f"Layer '{layer.name}' ({type(layer).__name__}): mask must be boolean "
                        f"(batch, timesteps), got dtype {mask.dtype}")
    return mask.astype(bool)


def check_rate(cls_name, arg, value):
    """A dropout rate: a float in [0, 1), else a TypeError/ValueError naming the class and argument."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{cls_name}: {arg} must be a float in [0, 1), got {value!r}")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{cls_name}: {arg} must be in [0, 1), got {value!r}")
    return value


def as_float_input(layer, x, what="inputs"):
    """An RNN input as a float array of the layer's dtype. Bool and 0/1 integer arrays (one-hot data) are
    cast, as Keras does; other integers are token ids, which need an Embedding first."""
    if hasattr(x, "detach") and hasattr(x, "numpy"):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"Layer '{layer.name}' ({type(layer).__name__}): {what} must be a NumPy array of shape "
                        f"(batch, timesteps, features), got {type(x).__name__}")
    if x.dtype.kind in "iu" and x.size and (x.min() < 0 or x.max() > 1):
        raise TypeError(f"Layer '{layer.name}' ({type(layer).__name__}): {what} must be floating point "
                        f"(batch, timesteps, features), got dtype {x.dtype} with values other than 0/1: integer "
                        "ids need an Embedding first; one-hot data can be passed as bool/0-1 or float")
    if x.dtype.kind not in "fiub":
        raise TypeError(f"Layer '{layer.name}' ({type(layer).__name__}): {what} must be floating point "
                        f"(batch, timesteps, features), got dtype {x.dtype}")
    return x if x.dtype == layer.dtype else x.astype(layer.dtype)


@register
class RNN(Layer):
    """Recurrent layer over a cell (Keras ``RNN``): ``RNN(cell, return_sequences=False, return_state=False,
    go_backwards=False, stateful=False, unroll=False, zero_output_for_mask=False)``.

    ``cell``: a :class:`~rnnlab.layers.Cell` (``SimpleRNNCell``, ``LSTMCell``, ``GRUCell``, a
    :class:`StackedRNNCells` or your own), or a list of cells (stacked). See the module docstring for
    the semantics. ``forward(x, training, mask, initial_state)`` returns the output, or
    ``[output, *final_states]`` with ``return_state``; ``backward(grad)`` returns dx, or
    ``[dx, *d_initial_states]`` (flat) when ``initial_state`` was given.
    ``unroll`` is accepted for Keras compatibility; the loop gives the same results either way.
    """

    _extra_kwargs = frozenset({"zero_output_for_mask", "unroll", "backend"})
    _float_input = False  # as_float_input casts bool / 0-1 one-hot inputs and rejects token ids
    #: diagnostics hook (rnnlab.diagnostics): when True, backward keeps ``self.state_grads``, one (T, B, ...)
    #: array per state with dL/dS after step k (output and recurrent paths summed; the output counts towards
    #: the first state when it has its shape, as for Keras-style cells whose output is h), in processing order
    _record_state_grads = False

    def __init__(self, cell, return_sequences=False, return_state=False, go_backwards=False, stateful=False,
                 **kwargs):
        self.zero_output_for_mask = bool(kwargs.pop("zero_output_for_mask", False))
        self.unroll = bool(kwargs.pop("unroll", False))
        #: rnnlab's choice of path for a built-in cell's fast loop: "auto", "numpy" or "native" (fused_loop.PATHS)
        self.backend = kwargs.pop("backend", "auto")
        if self.backend not in ("auto", "numpy", "native"):
            raise ValueError(f"RNN: backend must be 'auto', 'numpy' or 'native', got {self.backend!r}")
        if isinstance(cell, (list, tuple)):
            cell = StackedRNNCells(list(cell))
        if isinstance(cell, dict):
            cell = deserialize_cell(cell)
        if not isinstance(cell, Layer):
            raise TypeError(f"RNN: cell must be a recurrent cell (a Layer with state_size, e.g. LSTMCell(32) or a "
                            f"subclass of rnnlab.layers.Cell) or a list of cells, got {type(cell).__name__}")
        state_shapes(cell)  # a cell without (or with a malformed) state_size fails here, naming it
        if not (hasattr(cell, "forward_step") and hasattr(cell, "backward_step")):
            raise TypeError(f"RNN: cell '{cell.name}' ({type(cell).__name__}) has no forward_step/backward_step: "
                            "subclass rnnlab.layers.Cell and write both")
        kwargs.setdefault("dtype", cell.dtype)
        super().__init__(**kwargs)
        if cell.dtype != self.dtype:
            raise ValueError(f"RNN '{self.name}': dtype {self.dtype} differs from its cell's ({cell.dtype})")
        self.cell = cell
        self._sublayers = [cell]
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self._states = None     # stateful: the flat list of carried states
        self._history = None    # the flat states after each step of the last call (states_after)
        self._fused = None      # the optional fast path (module docstring), made on first use
        self._last_fused = False
        #: which loop ran the last forward call: "cell_loop" (the loop of this module) or, for a built-in cell,
        #: its fast loop's path (rnnlab.layers.fused_loop.PATHS)
        self.last_path = None

    # ------------------------------------------------------------------ shapes
    def _shape_from_dims(self, input_dim, input_length):
        if input_dim is None and input_length is None:
            return None
        return (None if input_length is None else int(input_length),
                None if input_dim is None else int(input_dim))

    @property
    def state_size(self):
        return self.cell.state_size

    @property
    def _state_names(self):
        """Names of the flat states: the built-in cells' ("h", "c") / ("h",); "h", "state_1", ... otherwise."""
        own = getattr(self.cell, "_state_names", None)
        if own is not None:
            return tuple(own)
        return ("h",) + tuple(f"state_{i}" for i in range(1, len(state_shapes(self.cell))))

    @property
    def _returned_states(self):
        """The state entries ``return_state`` appends: one per cell of a StackedRNNCells, else one per state."""
        return self.cell._nest_states(list(self._state_names))

    def build(self, input_shape):
        multi = isinstance(input_shape, list)
        shapes = [tuple(s) for s in (input_shape if multi else [input_shape])]
        for s in shapes:
            if len(s) < 3:
                raise ValueError(f"Input to layer '{self.name}' (RNN) is incompatible: expected ndim>=3 "
                                 f"(batch, timesteps, features), found input shape {format_shape(s)}")
        step = [(s[0],) + s[2:] for s in shapes]
        if not self.cell.built:
            self.cell.build(step if multi else step[0])
        super().build(input_shape)

    def _output_size(self):
        size = getattr(self.cell, "output_size", None)
        if size is None:
            return [state_shapes(self.cell)[0]]
        if isinstance(size, (list, tuple)) and size and not all(isinstance(d, (int, np.integer)) for d in size):
            return [tuple(s) if isinstance(s, (list, tuple)) else (int(s),) for s in size]
        return [tuple(size) if isinstance(size, (list, tuple)) else (int(size),)]

    def compute_output_shape(self, input_shape):
        first = tuple(input_shape[0] if isinstance(input_shape, list) else input_shape)
        b, t = first[0], first[1]
        outs = [((b, t) if self.return_sequences else (b,)) + s for s in self._output_size()]
        out = outs[0] if len(outs) == 1 else outs
        if not self.return_state:
            return out
        states = self.cell._nest_states([(b,) + s for s in state_shapes(self.cell)])
        return [out] + list(states)

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, list):
            mask = mask[0]
        out_mask = mask if self.return_sequences else None
        if self.return_state:
            return [out_mask] + [None] * len(self.cell._nest_states(state_shapes(self.cell)))
        return out_mask

    # ------------------------------------------------------------------ states
    @property
    def states(self):
        """Stateful layers: the carried states (flat list), None before the first call."""
        return self._fused.states if self._fused is not None else self._states

    @states.setter
    def states(self, value):
        if self._fused is not None:
            self._fused.states = value
        self._states = value

    def reset_states(self, states=None):
        """Stateful layers: zero the carried states (or set them to ``states``, in the cell's structure)."""
        if not self.stateful:
            raise AttributeError(f"Layer '{self.name}' is not stateful (stateful=False): nothing to reset")
        if states is None:
            for s in self.states or []:
                s[...] = 0
            return
        cur = self.states
        batch = cur[0].shape[0] if cur else self._fixed_batch()
        flat = flatten_states(self.cell, states, batch, self.dtype, f"Layer '{self.name}' (RNN) reset_states")
        self.states = [s.copy() for s in flat]

    reset_state = reset_states

    def states_after(self, steps):
        """Copies of the flat states after the first ``steps`` processed steps of the last forward call
        (0: the initial states; T: the final ones), for truncated BPTT (:class:`rnnlab.training.TBPTT`)."""
        if self._fused is not None and self._last_fused:
            return self._fused.states_after(steps)
        h = self._history
        if h is None or not 0 <= steps < len(h):
            raise ValueError(f"Layer '{self.name}': states_after(steps) needs 0 <= steps <= T of the last forward "
                             f"call (T={None if h is None else len(h) - 1}), got {steps!r}")
        return [s.copy() for s in h[steps]]

    def _fixed_batch(self):
        if self.batch_input_shape is not None:
            return self.batch_input_shape[0]
        return self.input_shape[0] if self.input_shape is not None and not isinstance(self.input_shape, list) else None

    # ------------------------------------------------------------ the fast path
    def _fused_loop(self):
        """The optimised loop of a built-in cell (its ``fused_layer``), sharing the cell's weight arrays; None
        for any other cell."""
        make = getattr(self.cell, "fused_layer", None)
        if make is None:
            return None
        if self._fused is None:
            self._fused = make(return_sequences=self.return_sequences, return_state=self.return_state,
                               go_backwards=self.go_backwards, stateful=self.stateful,
                               zero_output_for_mask=self.zero_output_for_mask, backend=self.backend,
                               name=self.name + "_loop")
            if self._fused is None:
                return None
            self._fused.batch_input_shape = self.batch_input_shape
            self._fused.input_shape = self.input_shape
            self._fused.states = self._states
        self._fused.zero_output_for_mask = self.zero_output_for_mask  # (Bidirectional sets it after __init__)
        return self._fused

    # ------------------------------------------------------------------ forward
    def _validate(self, x, mask):
        multi = isinstance(x, (list, tuple))
        xs = [as_float_input(self, a) for a in (x if multi else [x])]
        B, T = xs[0].shape[:2] if xs[0].ndim >= 2 else (None, None)
        for a in xs:
            if a.ndim < 3 or a.shape[:2] != (B, T):
                raise ValueError(f"Input to layer '{self.name}' (RNN) is incompatible: expected (batch, timesteps, "
                                 f"features) arrays with the same batch and timesteps, got shapes "
                                 f"{[a.shape for a in xs]}")
        if T == 0:
            raise ValueError(f"Layer '{self.name}' (RNN): inputs need at least one timestep, got shape {xs[0].shape}")
        if self.input_shape is not None and not multi and self.input_shape[-1] is not None \
                and xs[0].shape[2:] != tuple(self.input_shape[2:]):
            raise ValueError(f"Input to layer '{self.name}' (RNN) is incompatible: expected features "
                             f"{tuple(self.input_shape[2:])} (built for {format_shape(self.input_shape)}), "
                             f"found shape {xs[0].shape}")
        return xs, multi, B, T, validate_mask(self, mask, B, T)

    def forward(self, x, training=False, mask=None, initial_state=None):
        """Run the cell over time (module docstring). Returns the output, or ``[output, *states]``."""
        if not self.built:
            raise RuntimeError(f"Layer '{self.name}' is not built: call it on data (layer(x)) or build() first")
        xs, multi, B, T, mask = self._validate(x, mask)
        given = initial_state is not None
        if self.stateful:
            fixed = self.states[0].shape[0] if self.states else self._fixed_batch()
            if fixed is not None and B != fixed:
                raise ValueError(f"Layer '{self.name}' (RNN) is stateful and was set up for batch size {fixed}, "
                                 f"got a batch of {B}: stateful RNNs need the same batch size on every call")
        if given:
            init = flatten_states(self.cell, initial_state, B, self.dtype, f"Layer '{self.name}' (RNN) initial_state")
        elif self.stateful and self.states:
            init = self.states
        else:
            init = [np.zeros((B,) + s, self.dtype) for s in state_shapes(self.cell)]

        fused = self._fused_loop() if not multi else None
        self._last_fused = fused is not None
        if fused is not None:
            out = fused.forward(xs[0], training=training, mask=mask, initial_state=init if given else None)
            self._cache = ("fused", fused._cache, given)
            self.last_path = fused.last_path
            if self.return_state:
                return [out[0]] + list(self.cell._nest_states(out[1:]))
            return out

        cell, self.last_path = self.cell, "cell_loop"
        order = range(T - 1, -1, -1) if self.go_backwards else range(T)
        cell.start_sequence(B, training)
        states, history, caches, ys = list(init), [list(init)], [], []
        prev = None
        for k, t in enumerate(order):
            xt = [a[:, t] for a in xs]
            y, new, cache = cell.forward_step(xt if multi else xt[0], states, training=training)
            y, new = leaves(y), list(new)
            if k == 0:
                self._check_step(y, new, B)
            if mask is not None:
                m = mask[:, t]
                new = [np.where(m.reshape((B,) + (1,) * (n.ndim - 1)), n, s) for n, s in zip(new, states)]
                if prev is None:
                    prev = [np.zeros_like(a) for a in y]
                base = [np.zeros_like(a) for a in y] if self.zero_output_for_mask else prev
                y = [np.where(m.reshape((B,) + (1,) * (a.ndim - 1)), a, p) for a, p in zip(y, base)]
                prev = y
            caches.append(cache)
            ys.append(y)
            states = new
            history.append(states)
        self._history = history
        if self.stateful:
            self._states = [s.copy() for s in states]
        if self.return_sequences:
            outs = [np.stack([y[i] for y in ys], axis=1) for i in range(len(ys[0]))]
        else:
            outs = [a.copy() for a in ys[-1]]
        n_out = len(outs)
        out = outs[0] if n_out == 1 else outs
        self._cache = ("loop", (caches, mask, list(order), [a.shape for a in xs], multi, n_out,
                                [o.shape for o in outs], [s.shape for s in states], given))
        if self.return_state:
            return [out] + list(cell._nest_states([s.copy() for s in states]))
        return out

    def _check_step(self, y, new, B):
        shapes = state_shapes(self.cell)
        bad = len(new) != len(shapes) or any(np.shape(n) != (B,) + s for n, s in zip(new, shapes))
        if bad:
            raise ValueError(f"Layer '{self.name}' (RNN): cell '{self.cell.name}' ({type(self.cell).__name__}) "
                             f"returned new states of shapes {[np.shape(n) for n in new]}, but its state_size "
                             f"says {describe_states(self.cell)} with batch {B}")

    # ----------------------------------------------------------------- backward
    def _split_grad(self, grad, out_shapes, state_shapes_):
        n_out = len(out_shapes)
        if self.return_state:
            n_st = len(self.cell._nest_states(list(range(len(state_shapes_)))))
            if not isinstance(grad, (list, tuple)) or len(grad) != 1 + n_st:
                raise ValueError(f"Layer '{self.name}' (RNN) returned {1 + n_st} outputs (return_state=True): "
                                 f"backward expects a list [d_output, {n_st} state gradient(s)] (None = zero), got "
                                 f"{type(grad).__name__}")
            g_out = grad[0]
            g_states = []
            for g, ref in zip(grad[1:], self.cell._nest_states(list(range(len(state_shapes_))))):
                k = len(ref) if isinstance(ref, list) else 1
                g_states.extend([None] * k if g is None else (list(g) if isinstance(g, (list, tuple)) else [g]))
        else:
            g_out, g_states = grad, [None] * len(state_shapes_)
        g_outs = [None] * n_out if g_out is None else (list(g_out) if n_out > 1 else [g_out])
        checked = []
        for g, shp, what in zip(g_outs + g_states, list(out_shapes) + list(state_shapes_),
                                ["output"] * n_out + ["state"] * len(state_shapes_)):
            if g is None:
                checked.append(np.zeros(shp, self.dtype))
                continue
            g = np.asarray(g, dtype=self.dtype)
            if g.shape != tuple(shp):
                raise ValueError(f"Layer '{self.name}' (RNN): gradient for the {what} must have shape {tuple(shp)}, "
                                 f"got {g.shape}")
            checked.append(g)
        return checked[:n_out], checked[n_out:]

    def backward(self, grad):
        """Full BPTT (module docstring). Returns dx (a list for several inputs), or ``[dx, *d_states]`` when
        ``initial_state`` was given; None when ``input_grad_needed`` is False and no state was given."""
        kind, cache, *rest = self._need_cache()
        if kind == "fused":
            fused = self._fused
            fused._cache = cache
            fused.input_grad_needed = self.input_grad_needed
            fused._record_state_grads = self._record_state_grads
            if self.return_state and isinstance(grad, (list, tuple)):
                flat = [grad[0]]
                for g in grad[1:]:
                    flat.extend(g if isinstance(g, (list, tuple)) else [g])
                grad = flat
            out = fused.backward(grad)
            if self._record_state_grads:
                self.state_grads = fused.state_grads
            return out
        caches, mask, order, x_shapes, multi, n_out, out_shapes, st_shapes, given = cache
        g_outs, carry = self._split_grad(grad, out_shapes, st_shapes)
        cell = self.cell
        cell.zero_grads()
        B, T = x_shapes[0][:2]
        dxs = [np.zeros(s, self.dtype) for s in x_shapes]
        d_prev_out = [np.zeros(s[:1] + s[2:] if self.return_sequences else s, self.dtype) for s in out_shapes]
        rec = [np.empty((T,) + c.shape, self.dtype) for c in carry] if self._record_state_grads else None
        for k in range(T - 1, -1, -1):
            t = order[k]
            if self.return_sequences:
                dy = [g[:, k] + p for g, p in zip(g_outs, d_prev_out)]
            else:
                dy = [g + p if k == T - 1 else p.copy() for g, p in zip(g_outs, d_prev_out)]
            if mask is not None:
                m = mask[:, t]
                mf = [m.reshape((B,) + (1,) * (a.ndim - 1)) for a in dy]
                d_prev_out = [np.zeros_like(a) if self.zero_output_for_mask else np.where(f, 0, a)
                              for a, f in zip(dy, mf)]
                dy = [np.where(f, a, 0) for a, f in zip(dy, mf)]
                ms = [m.reshape((B,) + (1,) * (c.ndim - 1)) for c in carry]
                passed = [np.where(f, 0, c) for c, f in zip(carry, ms)]
                carry = [np.where(f, c, 0) for c, f in zip(carry, ms)]
            else:
                d_prev_out = [np.zeros_like(a) for a in dy]
            if rec is not None:
                for s, c in enumerate(carry):
                    rec[s][k] = c + (passed[s] if mask is not None else 0)
                if len(dy) == 1 and dy[0].shape == rec[0][k].shape:
                    rec[0][k] += dy[0]
            dx, dprev = cell.backward_step(dy if n_out > 1 else dy[0], carry, caches[k])
            carry = list(dprev)
            if mask is not None:
                carry = [c + p for c, p in zip(carry, passed)]
            for d, g in zip(dxs, leaves(dx) if multi else [dx]):
                d[:, t] = g
        if rec is not None:
            self.state_grads = rec
        if not (self.input_grad_needed or given):
            return None
        dx_out = dxs if multi else dxs[0]
        if given:
            return (dxs if multi else [dxs[0]]) + carry
        return dx_out

    # ------------------------------------------------------------ serialization
    def get_config(self):
        cfg = super().get_config()
        cfg.update(cell=serialize_cell(self.cell), return_sequences=self.return_sequences,
                   return_state=self.return_state, go_backwards=self.go_backwards, stateful=self.stateful,
                   zero_output_for_mask=self.zero_output_for_mask, unroll=self.unroll, backend=self.backend)
        return cfg

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["cell"] = deserialize_cell(config["cell"])
        return cls(**config)

