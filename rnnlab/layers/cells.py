"""Recurrent cells: one time step, forward and backward. ``RNN(cell)`` supplies the time loop.

A cell maps one step's input and the previous states to an output and the new states::

    output_t, states_t = cell(x_t, states_{t-1})        x_t: (B, D), each state: (B, *state_shape)

and, for training, the gradients of one step back::

    dx_t, d states_{t-1} = backward_step(d output_t, d states_t, cache_t)     (weight gradients added to grads)

Everything about *time* (the loop over steps, masking, ``go_backwards``, ``return_sequences``,
``return_state``, ``stateful``, truncated BPTT, :class:`~rnnlab.layers.Bidirectional`) is done by
:class:`rnnlab.layers.RNN` for any cell that follows the contract of :class:`Cell`.

State structure (``state_size``, as in Keras):

* an int ``n``: one state of shape (B, n);
* a list or tuple: one state per entry, an int ``n`` giving (B, n) and a tuple of ints ``(n1, n2, ...)``
  giving (B, n1, n2, ...): the Keras guide's nested cell has ``state_size = [u1, (u2, u3)]``.

The cell receives and returns its states as a list in that order. :class:`StackedRNNCells` nests them:
one entry per cell (the cell's single state array, or its list of states).
"""
from __future__ import annotations

import numpy as np

from .base import Layer, get_layer_class, register


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def state_shapes(cell):
    """The per-state shapes (without the batch axis) of a cell's flat state list, from ``state_size``."""
    own = getattr(cell, "_flat_state_shapes", None)
    if own is not None:
        return own()
    size = getattr(cell, "state_size", None)
    name = f"cell '{getattr(cell, 'name', '?')}' ({type(cell).__name__})"
    if size is None:
        raise ValueError(f"RNN: {name} has no state_size: a cell must set state_size (an int, or a list with one "
                         "int or tuple of ints per state), e.g. self.state_size = units")
    if _is_int(size):
        entries = [size]
    elif isinstance(size, (list, tuple)) and len(size) > 0:
        entries = list(size)
    else:
        raise ValueError(f"RNN: {name}: state_size must be an int or a non-empty list of ints / tuples of ints, "
                         f"got {size!r}")
    shapes = []
    for e in entries:
        if _is_int(e) and e > 0:
            shapes.append((int(e),))
        elif isinstance(e, (list, tuple)) and e and all(_is_int(d) and d > 0 for d in e):
            shapes.append(tuple(int(d) for d in e))
        else:
            raise ValueError(f"RNN: {name}: each state_size entry must be a positive int or a tuple of positive "
                             f"ints, got {e!r} in state_size={size!r}")
    return shapes


def describe_states(cell):
    """The expected state structure in words, for error messages: ``[(B, 4), (B, 4)]``."""
    nest = getattr(cell, "_describe_states", None)
    if nest is not None:
        return nest()
    return "[" + ", ".join("(batch, " + ", ".join(map(str, s)) + ")" for s in state_shapes(cell)) + "]"


def flatten_states(cell, states, batch, dtype, what):
    """Check ``states`` against the cell's structure and return the flat list of float arrays.

    Accepts the cell's own structure or the flat list; a single array is taken for a one-state cell."""
    shapes = state_shapes(cell)
    cname = f"cell '{cell.name}' ({type(cell).__name__})"
    expected = describe_states(cell)
    flat = _flat_leaves(states)
    if flat is None or len(flat) != len(shapes):
        got = type(states).__name__ if flat is None else f"{len(flat)} array(s)"
        raise ValueError(f"{what}: {cname} expects {len(shapes)} state array(s) {expected}, got {got}")
    out = []
    for i, (s, shp) in enumerate(zip(flat, shapes)):
        if hasattr(s, "detach") and hasattr(s, "numpy"):
            s = s.detach().cpu().numpy()
        s = np.asarray(s)
        if s.dtype.kind not in "fiub":
            raise TypeError(f"{what}: state {i} of {cname} must be a float array, got dtype {s.dtype}")
        want = (batch,) + shp if batch is not None else None
        if s.ndim != len(shp) + 1 or (want is not None and s.shape != want) or s.shape[1:] != shp:
            raise ValueError(f"{what}: state {i} of {cname} must have shape {want if want else ('batch',) + shp} "
                             f"(structure {expected}), got {s.shape}")
        out.append(s.astype(dtype, copy=False))
    return out


def _flat_leaves(states):
    """Arrays of a (possibly nested) list/tuple, in order; a single array is one leaf; None if not arrays."""
    if states is None:
        return None
    if isinstance(states, (list, tuple)):
        out = []
        for s in states:
            sub = _flat_leaves(s)
            if sub is None:
                return None
            out.extend(sub)
        return out
    if hasattr(states, "shape"):
        return [states]
    return None


def leaves(x):
    """The arrays of a step output or input: ``[x]`` for one array, the list for a list/tuple."""
    return list(x) if isinstance(x, (list, tuple)) else [x]


class Cell(Layer):
    """Base class of recurrent cells (built-in and user-written); see the module docstring.

    A subclass sets ``state_size`` (and ``output_size``) in ``__init__``, creates its weights in
    ``build(input_shape)`` with :meth:`add_weight` (``input_shape`` is one step's, ``(batch, D)``, or a
    list of such for a cell with several inputs) and writes::

        def forward_step(self, x, states, training=False):
            # x: (B, D) array (or list of arrays); states: list of (B, ...) arrays
            return output, new_states, cache          # cache: whatever backward_step needs

        def backward_step(self, d_output, d_states, cache):
            # d_output: like output; d_states: list like new_states (dL/d new state)
            # ADD this step's weight gradients to self.grads[name] (the loop zeroes them first)
            return dx, d_prev_states                  # dx like x; d_prev_states: list like states

    ``start_sequence(batch_size, training)`` is called once per sequence before the first step (the
    built-in cells draw their dropout masks there; keep them in the step cache, not only on ``self``).

    One step on its own: ``output, new_states = cell(x_t, states)`` (``states=None``: zeros);
    ``cell.backward([d_output, *d_states])`` then returns ``[dx, *d_prev_states]`` for that step.
    """

    state_size = None
    output_size = None

    # --------------------------------------------------------------- the contract
    def forward_step(self, x, states, training=False):
        raise NotImplementedError(f"{type(self).__name__}.forward_step(x, states, training) -> "
                                  "(output, new_states, cache)")

    def backward_step(self, d_output, d_states, cache):
        raise NotImplementedError(f"{type(self).__name__}.backward_step(d_output, d_states, cache) -> "
                                  "(dx, d_prev_states)")

    def start_sequence(self, batch_size, training=False):
        """Called once before each sequence (or one-step call); the built-in cells draw dropout masks here."""

    def get_initial_state(self, batch_size):
        """Zero states in the cell's structure: a list of (batch_size, *shape) arrays."""
        return self._nest_states([np.zeros((batch_size,) + s, self.dtype) for s in state_shapes(self)])

    def _nest_states(self, flat):
        """The flat state list in the structure this cell returns (a list; StackedRNNCells nests)."""
        return list(flat)

    # ------------------------------------------------------------- one step alone
    def __call__(self, inputs, states=None, training=False):
        xs = [self._convert_one(a) for a in leaves(inputs)]
        for a in xs:
            if a.ndim < 2:
                raise ValueError(f"Cell '{self.name}' ({type(self).__name__}): one step's input must be "
                                 f"(batch, features), got shape {a.shape}")
        shapes = [(None,) + a.shape[1:] for a in xs]
        if not self.built:
            self.build(shapes if isinstance(inputs, (list, tuple)) else shapes[0])
        return self.forward(xs if isinstance(inputs, (list, tuple)) else xs[0], states, training=training)

    def forward(self, inputs, states=None, training=False):
        """One step: ``(output, new_states)``; keeps the step cache for :meth:`backward`."""
        B = leaves(inputs)[0].shape[0]
        if states is None:
            flat = [np.zeros((B,) + s, self.dtype) for s in state_shapes(self)]
        else:
            flat = flatten_states(self, states, B, self.dtype, f"Cell '{self.name}' call")
        self.start_sequence(B, training)
        out, new, cache = self.forward_step(inputs, flat, training=training)
        self._cache = (cache, isinstance(out, (list, tuple)), len(flat))
        return out, self._nest_states(list(new))

    def backward(self, grad):
        """Gradients of the last one-step call: ``grad = [d_output, *d_states]`` (None = zero), returns
        ``[dx, *d_prev_states]`` (states flat), with this step's weight gradients in ``grads``."""
        cache, _, n = self._need_cache()
        if not isinstance(grad, (list, tuple)) or len(grad) != 1 + n:
            raise ValueError(f"Cell '{self.name}' ({type(self).__name__}): backward expects [d_output, "
                             f"{n} state gradient(s)], got {type(grad).__name__}")
        self.zero_grads()
        dx, dprev = self.backward_step(grad[0], list(grad[1:]), cache)
        return [dx] + list(dprev)

    # ------------------------------------------------------------- serialization
    def get_config(self):
        return Layer.get_config(self)


def serialize_cell(cell):
    return {"class_name": type(cell).__name__, "config": cell.get_config()}


def deserialize_cell(cfg):
    if isinstance(cfg, Layer):
        return cfg
    if not isinstance(cfg, dict) or "class_name" not in cfg:
        raise ValueError(f"RNN: a serialized cell must be {{'class_name': ..., 'config': {{...}}}}, got {cfg!r}")
    try:
        cls = get_layer_class(cfg["class_name"])
    except ValueError:
        raise ValueError(f"RNN: unknown cell class {cfg['class_name']!r}: a user-written cell rebuilt from its config "
                         "(model loading, Bidirectional) must be registered with @rnnlab.layers.register") from None
    return cls.from_config(dict(cfg.get("config", {})))


@register
class StackedRNNCells(Cell):
    """Several cells run one after the other at every step (Keras ``StackedRNNCells``).

    Step t: ``y_0 = x_t``; cell k maps ``(y_{k-1}, states_k)`` to ``(y_k, states_k')``; the output is the
    last cell's. States: one entry per cell (its array for a one-state cell, else its list);
    ``RNN([c1, c2])`` is ``RNN(StackedRNNCells([c1, c2]))``. Weights: cell 1's, then cell 2's, ...
    """

    def __init__(self, cells, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(cells, (list, tuple)) or len(cells) == 0:
            raise ValueError(f"StackedRNNCells: cells must be a non-empty list of cells, got {cells!r}")
        for i, c in enumerate(cells):
            if not isinstance(c, Layer) or getattr(c, "state_size", None) is None:
                raise ValueError(f"StackedRNNCells: cells[{i}] ({type(c).__name__}) is not a cell: a cell is a "
                                 "Layer with a state_size and forward_step/backward_step (see rnnlab.layers.Cell)")
        self.cells = list(cells)
        self._sublayers = list(cells)

    @property
    def state_size(self):
        return [c.state_size for c in self.cells]

    @property
    def output_size(self):
        return getattr(self.cells[-1], "output_size", None) or self.cells[-1].state_size

    def _flat_state_shapes(self):
        return [s for c in self.cells for s in state_shapes(c)]

    def _describe_states(self):
        return "[" + ", ".join(describe_states(c) for c in self.cells) + "]"

    def _split(self, flat):
        out, k = [], 0
        for c in self.cells:
            n = len(state_shapes(c))
            out.append(list(flat[k:k + n]))
            k += n
        return out

    def _nest_states(self, flat):
        return [s[0] if len(s) == 1 else s for s in self._split(flat)]

    def build(self, input_shape):
        shape = input_shape
        for c in self.cells:
            if not c.built:
                c.build(shape)
            out = getattr(c, "output_size", None) or state_shapes(c)[0][0]
            shape = (shape[0] if not isinstance(shape, list) else shape[0][0], int(out))
        super().build(input_shape)

    def start_sequence(self, batch_size, training=False):
        for c in self.cells:
            c.start_sequence(batch_size, training)

    def forward_step(self, x, states, training=False):
        new, caches = [], []
        for c, s in zip(self.cells, self._split(states)):
            x, ns, cache = c.forward_step(x, s, training=training)
            new.extend(ns)
            caches.append(cache)
        return x, new, caches

    def backward_step(self, d_output, d_states, cache):
        d_split = self._split(d_states)
        d_prev = []
        g = d_output
        for c, ds, cc in zip(reversed(self.cells), reversed(d_split), reversed(cache)):
            g, dp = c.backward_step(g, ds, cc)
            d_prev = list(dp) + d_prev
        return g, d_prev

    def get_config(self):
        cfg = super().get_config()
        cfg["cells"] = [serialize_cell(c) for c in self.cells]
        return cfg

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["cells"] = [deserialize_cell(c) for c in config["cells"]]
        return cls(**config)


class KerasCell(Cell):
    """What the three built-in cells share: Keras arguments, weights (``kernel`` (D, kU),
    ``recurrent_kernel`` (U, kU), ``bias``), dropout masks, the config and the fused loop.

    Dropout (training only), as in rnnlab's LSTM/GRU/SimpleRNN layers: one input mask (B, D) and one
    recurrent mask (B, U) per sequence (``start_sequence``), shared by all gates; the recurrent mask
    multiplies h_{t-1} only where it enters the recurrent product, never the carried state.
    """

    _n_gates = 1
    _state_names = ("h",)
    #: the layer class whose optimised loop (rnnlab.layers.fused_loop) runs this cell's function
    _layer_name = None

    def __init__(self, units, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", dropout=0.0, recurrent_dropout=0.0,
                 **kwargs):
        self.seed = kwargs.pop("seed", None)  # Keras argument; rnnlab draws from rnnlab.backend.rng()
        super().__init__(**kwargs)
        set_cell_arguments(self, units, activation, use_bias, kernel_initializer, recurrent_initializer,
                           bias_initializer, dropout, recurrent_dropout)
        self._masks = (None, None)

    _extra_kwargs = frozenset({"seed"})

    @property
    def output_size(self):
        return self.units

    def _input_dim(self, input_shape):
        if isinstance(input_shape, list) or len(tuple(input_shape)) != 2 or input_shape[-1] is None:
            raise ValueError(f"Cell '{self.name}' ({type(self).__name__}): one step's input must be (batch, features) "
                             f"with known features, got input shape {input_shape}")
        return int(input_shape[-1])

    def start_sequence(self, batch_size, training=False):
        """Draw this sequence's dropout masks (None when not training or the rate is 0)."""
        from .. import backend
        rng, dt = backend.rng(), self.dtype
        in_mask = rec_mask = None
        if training and self.dropout > 0.0:
            keep = 1.0 - self.dropout
            in_mask = ((rng.random((batch_size, self.params["kernel"].shape[0])) < keep) / keep).astype(dt)
        if training and self.recurrent_dropout > 0.0:
            keep = 1.0 - self.recurrent_dropout
            rec_mask = ((rng.random((batch_size, self.units)) < keep) / keep).astype(dt)
        self._masks = (in_mask, rec_mask)

    def _dropped(self, x, h):
        """(x * input mask, h_{t-1} * recurrent mask, the masks): what enters the two products."""
        in_mask, rec_mask = self._masks
        if in_mask is not None and in_mask.shape[0] != x.shape[0]:
            in_mask = rec_mask = None  # (a one-step call after a sequence of another batch size)
        xd = x if in_mask is None else x * in_mask
        hr = h if rec_mask is None else h * rec_mask
        return xd, hr, (in_mask, rec_mask)

    def _input_grads(self, dp, xd, masks):
        """Shared end of a backward step: kernel/bias gradients of the input product, and dx."""
        self.grads["kernel"] += xd.T @ dp
        dx = dp @ self.params["kernel"].T
        if masks[0] is not None:
            dx *= masks[0]
        return dx

    def get_config(self):
        from .. import activations as _act
        from .. import initializers
        cfg = super().get_config()
        cfg.update(units=self.units, activation=_act.serialize(self.activation), use_bias=self.use_bias,
                   kernel_initializer=initializers.serialize(self.kernel_initializer),
                   recurrent_initializer=initializers.serialize(self.recurrent_initializer),
                   bias_initializer=initializers.serialize(self.bias_initializer),
                   dropout=self.dropout, recurrent_dropout=self.recurrent_dropout, seed=self.seed)
        return cfg

    def _layer_kwargs(self):
        """The arguments of the matching layer (LSTM, GRU, SimpleRNN) that define the cell's function."""
        cfg = self.get_config()
        for k in ("name", "trainable", "seed", "batch_input_shape"):
            cfg.pop(k, None)
        return cfg

    def fused_layer(self, **flags):
        """The optimised loop for exactly this built-in class (a subclass may change the step: None), as the
        matching layer sharing this cell's weight and gradient arrays (rnnlab.layers.fused_loop)."""
        if type(self).__dict__.get("_layer_name") is None or not self.built:   # (a subclass does not set it)
            return None
        from .base import get_layer_class
        layer = get_layer_class(self._layer_name)(**self._layer_kwargs(), **flags)
        layer.params, layer.grads = self.params, self.grads
        layer.input_shape = (None, None, self.params["kernel"].shape[0])
        layer.built = True
        return layer


def set_cell_arguments(obj, units, activation, use_bias, kernel_initializer, recurrent_initializer,
                       bias_initializer, dropout, recurrent_dropout):
    """Check and set the arguments every built-in cell and recurrent layer takes (Keras names), with errors
    naming ``obj``'s class: ``units`` a positive int, the activation and initializers by name or object, the
    dropout rates in [0, 1)."""
    from .. import activations as _act
    from .. import initializers
    from .recurrent import check_rate
    cls = type(obj).__name__
    if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
        raise ValueError(f"{cls}: units must be a positive int, got {units!r}")
    obj.units = int(units)
    obj.activation = _act.get(activation)
    obj.use_bias = bool(use_bias)
    obj.kernel_initializer = initializers.get(kernel_initializer)
    obj.recurrent_initializer = initializers.get(recurrent_initializer)
    obj.bias_initializer = initializers.get(bias_initializer)
    obj.dropout = check_rate(cls, "dropout", dropout)
    obj.recurrent_dropout = check_rate(cls, "recurrent_dropout", recurrent_dropout)


def check_implementation(cls_name, value):
    """Keras' ``implementation`` (1 or 2: two ways of computing the same function; rnnlab computes it one way)."""
    if isinstance(value, bool) or value not in (1, 2):
        raise ValueError(f"{cls_name}: implementation must be 1 or 2 (Keras: two ways of computing the same "
                         f"function, both accepted), got {value!r}")
    return int(value)
