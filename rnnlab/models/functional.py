"""The Keras functional API: symbolic tensors, the layer graph, and ``Model(inputs, outputs)``.

Building a graph
----------------
``rnnlab.Input(shape)`` returns a :class:`KerasTensor`: a placeholder that knows only its static shape
``(batch, *shape)`` (``None`` where unknown) and its dtype. Calling a layer on symbolic tensors does not
compute anything; it builds the layer for the input shape(s), checks them against what the layer was built
for, records a :class:`Node` (the layer, the tensors it was called on, the tensors it returned) and returns
new symbolic tensors with the shapes ``compute_output_shape`` gives::

    x = rnnlab.Input((None,), dtype="int32")
    h = rnnlab.layers.Embedding(1000, 32, mask_zero=True)(x)
    seq, state_h, state_c = rnnlab.layers.LSTM(64, return_sequences=True, return_state=True)(h)
    y = rnnlab.layers.Dense(1, activation="sigmoid")(state_h)
    model = rnnlab.Model(x, y)

``Model(inputs, outputs)`` walks back from the outputs to the inputs and orders the nodes exactly as Keras 3
does (by depth, so ``model.layers`` lists the layers in Keras' order and ``model.layers[i]`` indexes alike).

Running the graph
-----------------
Forward runs the nodes in that order. Node ``n`` with layer ``f`` computes ``y_n = f(x_n)`` from the values
of its input tensors; the output mask is ``f.compute_mask(x_n, m_n)``, where ``m_n`` are the masks of its
inputs (so ``Embedding(mask_zero=True)`` masks reach recurrent layers, ``Attention`` and pooling).

Backward is the chain rule over the graph, in reverse node order. With ``g_t = dL/dt`` for a tensor ``t``:

* a node receives the gradients of its outputs (``None`` for an output no loss depends on) and returns,
  through ``f.backward``, the gradients of its inputs;
* a tensor read by several nodes (fan-out) gets the **sum** of their input gradients:
  ``g_t = sum_{n reads t} dL/dt|_n``;
* a layer called in several nodes (a *shared* layer) has one set of weights ``W``, and
  ``dL/dW = sum_n dL/dW|_n``. Each layer keeps one forward in its cache (see :mod:`rnnlab.layers.base`), so
  after each node's forward the caches of the layer and of its sublayers are saved, and they are restored
  before that node's backward; a recurrent layer called in several nodes gets a fresh workspace per call.

Nodes whose outputs receive no gradient are skipped (their layers' gradients are set to zero), and so are
nodes without trainable weights whose inputs need no gradient (a frozen ``Embedding``, an ``Input``).
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from .. import backend
from ..layers.base import Layer, format_shape, register
from .engine import Engine

_MISSING = object()


# ----------------------------------------------------------------------------- symbolic tensors
class KerasTensor:
    """A symbolic tensor: the static ``shape`` (batch axis first, ``None`` = unknown) and ``dtype`` of a value
    the graph will compute. ``_keras_history = (layer, node_index, tensor_index)`` says where it comes from."""

    _is_symbolic = True

    def __init__(self, shape, dtype=None, name=None, history=None):
        self.shape = tuple(None if d is None else int(d) for d in shape)
        self.dtype = dtype if dtype is not None else backend.floatx()
        self.name = name
        self._keras_history = history

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def node(self):
        layer, ni, _ = self._keras_history
        return layer._inbound_nodes[ni]

    def __repr__(self):
        return f"<KerasTensor shape={format_shape(self.shape)}, dtype={self.dtype}, name={self.name}>"

    def __len__(self):
        raise TypeError("A symbolic KerasTensor has no length; use .shape")

    def __iter__(self):
        raise TypeError(f"A symbolic KerasTensor {self!r} is not iterable; a layer that returns several tensors "
                        "(e.g. LSTM(return_state=True)) returns a list you can unpack")

    def __array__(self, *args, **kwargs):
        raise TypeError(f"{self!r} is symbolic (it has no value): build a model with rnnlab.Model(inputs, outputs) "
                        "and call model.predict(...) to compute it")


def is_symbolic(x) -> bool:
    return getattr(x, "_is_symbolic", False)


def _flatten(x):
    if isinstance(x, (list, tuple)):
        out = []
        for a in x:
            out.extend(_flatten(a))
        return out
    if isinstance(x, dict):
        out = []
        for k in x:
            out.extend(_flatten(x[k]))
        return out
    return [x]


class Node:
    """One call of a layer on symbolic tensors.

    ``parents``: the input tensors, flat: the main inputs first, then ``initial_state`` tensors; ``outputs``:
    the output tensors; ``n_main``/``main_is_list``: how to rebuild the call's first argument; ``kwargs``: other
    (non-tensor) keyword arguments of the call."""

    def __init__(self, layer, parents, outputs, n_main, main_is_list, kwargs, multi):
        self.layer = layer
        self.parents = parents
        self.outputs = outputs
        self.n_main = n_main
        self.main_is_list = main_is_list
        self.kwargs = kwargs
        self.multi = multi

    @property
    def is_input(self):
        return isinstance(self.layer, InputLayer)

    @property
    def parent_nodes(self):
        return [t.node for t in self.parents]

    @property
    def input_tensors(self):
        return self.parents

    def call_input(self):
        """The first argument of the call: one tensor or a list."""
        main = self.parents[:self.n_main]
        return main if self.main_is_list else main[0]

    def call_output(self):
        return self.outputs if self.multi else self.outputs[0]


def _batch_of(shape):
    return shape[0] if shape else None


def _check_built_shape(layer, shape):
    """A built layer called on an incompatible shape fails here, naming the layer and both shapes."""
    expected = layer.input_shape
    if expected is None:
        return
    pairs = list(zip(expected, shape)) if isinstance(shape, list) and isinstance(expected, list) else None
    if isinstance(shape, list) != isinstance(expected, list):
        raise ValueError(f"Layer '{layer.name}' ({type(layer).__name__}) was built for input "
                         f"{format_shape(expected)} but is called on {format_shape(shape)}")
    for e, s in (pairs if pairs is not None else [(expected, shape)]):
        e, s = tuple(e), tuple(s)
        bad = len(e) != len(s) or any(a is not None and b is not None and a != b for a, b in zip(e[1:], s[1:]))
        if bad:
            raise ValueError(f"Input to layer '{layer.name}' ({type(layer).__name__}) is incompatible: the layer "
                             f"was built for input shape {format_shape(expected)}, got {format_shape(shape)}")


def _check_compatible(layer, shape):
    """A built layer may be called on a new shape when it would build the same weights for it (Keras: an
    ``Embedding`` built with ``build((1,))`` then called on ``(None, None)``; a ``Dense`` on a 3-D tensor); else a
    ValueError naming the layer and both shapes. The check builds a shape-only clone (nothing allocated)."""
    from ..layers import base as _base
    try:
        clone = type(layer).from_config(layer.get_config())
    except Exception:  # layers that cannot be cloned from their config: the strict check
        _check_built_shape(layer, shape)
        return
    flag = getattr(_base, "_SHAPE_ONLY", None)
    token = flag.set(True) if flag is not None else None
    try:
        try:
            clone._maybe_build(shape)
        except (ValueError, TypeError) as e:
            raise ValueError(f"Input to layer '{layer.name}' ({type(layer).__name__}) is incompatible: the layer "
                             f"was built for input shape {format_shape(layer.input_shape)}, got "
                             f"{format_shape(shape)} ({e})") from None
    finally:
        if token is not None:
            flag.reset(token)
    mine = [tuple(o.params[w].shape) for _, o, w in layer.iter_weights()]
    new = [tuple(o.params[w].shape) for _, o, w in clone.iter_weights()]
    if mine != new:
        raise ValueError(f"Input to layer '{layer.name}' ({type(layer).__name__}) is incompatible: the layer was "
                         f"built for input shape {format_shape(layer.input_shape)}, got {format_shape(shape)} (its "
                         f"weights have shapes {mine}; this input needs {new})")


def symbolic_call(layer, inputs, *args, training=False, mask=None, **kwargs):
    """``layer(inputs)`` on symbolic tensors: build, check shapes, record a :class:`Node`, return symbolic outputs."""
    if args:
        raise TypeError(f"Layer '{layer.name}': extra positional arguments {args!r} are not supported on symbolic "
                        "tensors; pass them as keywords")
    if mask is not None:
        raise TypeError(f"Layer '{layer.name}': an explicit mask= is not supported on symbolic tensors; masks "
                        "travel along the graph from Embedding(mask_zero=True) or Masking")
    if isinstance(layer, Model) and isinstance(inputs, dict):
        inputs = layer._flat_from_dict(inputs, "inputs")
    if isinstance(inputs, tuple):
        inputs = list(inputs)
    main_is_list = isinstance(inputs, list)
    main = _flatten(inputs)
    states = kwargs.pop("initial_state", None)
    state_list = [] if states is None else _flatten(states)
    for i, t in enumerate(main + state_list):
        if not is_symbolic(t):
            raise TypeError(f"Layer '{layer.name}' was called on a mix of symbolic tensors and "
                            f"{type(t).__name__} values; in a functional model every input (and initial_state) "
                            "must be a symbolic tensor from rnnlab.Input or from another layer")
    for k, v in kwargs.items():
        if any(is_symbolic(a) for a in _flatten(v)):
            raise TypeError(f"Layer '{layer.name}': symbolic tensors are supported only as inputs and "
                            f"initial_state, not as {k}=")
    if not main:
        raise ValueError(f"Layer '{layer.name}' was called on an empty list of tensors")
    batches = {t.shape[0] for t in main + state_list if t.shape and t.shape[0] is not None}
    if len(batches) > 1:
        raise ValueError(f"Layer '{layer.name}' ({type(layer).__name__}) was called on tensors of different "
                         f"batch sizes: {[format_shape(t.shape) for t in main + state_list]}")
    shape = [t.shape for t in main] if main_is_list else main[0].shape
    if isinstance(layer, Model):
        layer._check_call_shapes(main)
    elif layer.built:
        _check_compatible(layer, shape)
    else:
        layer._maybe_build(shape)
    if state_list:
        sizes = getattr(layer, "state_size", None)
        if isinstance(layer, Layer) and hasattr(layer, "_split_states") and hasattr(layer, "forward_layer"):
            fl, bl = layer.forward_layer, layer.backward_layer
            sizes = list(fl.state_size) + list(bl.state_size)
        if sizes is not None:
            sizes = list(sizes)
            if len(sizes) != len(state_list):
                raise ValueError(f"Layer '{layer.name}' ({type(layer).__name__}) has {len(sizes)} state(s), "
                                 f"got initial_state with {len(state_list)} tensor(s)")
            for i, (t, u) in enumerate(zip(state_list, sizes)):
                if len(t.shape) != 2 or (t.shape[1] is not None and t.shape[1] != u):
                    raise ValueError(f"Layer '{layer.name}' ({type(layer).__name__}): initial_state[{i}] must have "
                                     f"shape (batch, {u}), got {format_shape(t.shape)}")
    if isinstance(layer, Model):
        out_shapes = [(_batch_of(shape if not isinstance(shape, list) else shape[0]),) + tuple(t.shape[1:])
                      for t in layer._outputs]
        out_shape = out_shapes if len(out_shapes) > 1 else out_shapes[0]
    else:
        out_shape = layer.compute_output_shape(shape)
        if kwargs.get("return_attention_scores"):
            q, v = main[0].shape, main[1].shape
            out_shape = [tuple(out_shape), (q[0], q[1], v[1])]
    multi = isinstance(out_shape, list)
    shapes = out_shape if multi else [out_shape]
    nodes = layer.__dict__.setdefault("_inbound_nodes", [])
    node_index = len(nodes)
    outs = []
    for i, s in enumerate(shapes):
        nm = layer.name if len(shapes) == 1 else f"{layer.name}_{i}"
        dtype = layer.dtype if not isinstance(layer, Model) else layer._outputs[i].dtype
        outs.append(KerasTensor(s, dtype=dtype, name=nm, history=(layer, node_index, i)))
    node = Node(layer, main + state_list, outs, len(main), main_is_list, dict(kwargs), multi)
    nodes.append(node)
    return outs if multi else outs[0]


# ----------------------------------------------------------------------------- Input
@register
class InputLayer(Layer):
    """The layer behind ``rnnlab.Input``: it holds the declared shape and dtype and passes its value through."""

    _extra_kwargs = frozenset({"shape", "batch_shape", "sparse"})

    def __init__(self, shape=None, batch_size=None, dtype=None, sparse=False, batch_shape=None, name=None, **kwargs):
        if sparse:
            raise ValueError("Input: sparse=True is not supported (rnnlab has dense NumPy arrays only)")
        kwargs.pop("batch_input_shape", None)
        super().__init__(name=name if name is not None else backend.unique_name("input_layer"), **kwargs)
        if batch_shape is None:
            if shape is None:
                raise ValueError("Input: give shape= (without the batch axis), e.g. Input(shape=(None, 8))")
            if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
                shape = (shape,)
            if not isinstance(shape, (tuple, list)) or not all(
                    d is None or (isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0)
                    for d in shape):
                raise TypeError(f"Input: shape must be a tuple of non-negative ints or None, got {shape!r}")
            if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                           or batch_size <= 0):
                raise ValueError(f"Input: batch_size must be a positive int or None, got {batch_size!r}")
            batch_shape = (batch_size,) + tuple(shape)
        batch_shape = tuple(None if d is None else int(d) for d in batch_shape)
        if dtype is not None:
            try:
                dt = np.dtype(dtype)
            except TypeError:
                raise TypeError(f"Input: dtype must be a numeric dtype such as 'float32' or 'int32', got {dtype!r}") from None
            if dt.kind not in "biuf":
                raise TypeError(f"Input: dtype must be a numeric dtype such as 'float32' or 'int32', got {dtype!r}")
            dtype = dt.name
        self.input_dtype = dtype
        self.batch_input_shape = batch_shape
        self.sparse = False
        self.input_shape = batch_shape
        self.output_shape = batch_shape
        self.built = True
        t = KerasTensor(batch_shape, dtype=dtype or backend.floatx(), name=self.name, history=(self, 0, 0))
        self._inbound_nodes = [Node(self, [], [t], 0, False, {}, False)]

    # what Sequential reads from rnnlab.Input(...)
    @property
    def shape(self):
        return self.batch_input_shape

    def forward(self, x, training=False, mask=None):
        return x

    def backward(self, grad):
        return grad

    def get_config(self):
        return {"name": self.name, "batch_shape": list(self.batch_input_shape), "dtype": self.input_dtype,
                "sparse": False}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def Input(shape=None, batch_size=None, dtype=None, name=None, sparse=False, batch_shape=None):
    """A symbolic input tensor, as ``keras.Input``: ``shape`` excludes the batch axis (``None`` = any length).

    ``dtype`` (e.g. ``"int32"`` for token ids) is what inputs are converted to; ``None`` leaves them to the
    first layer. Use it as the start of a functional model, or as the first entry of ``Sequential([...])``."""
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, sparse=sparse, batch_shape=batch_shape,
                       name=name)
    return layer.output


# ----------------------------------------------------------------------------- graph helpers
def _snapshot(layer, out):
    out.append((layer, layer._cache, layer.__dict__.get("_ws", _MISSING)))
    for sub in layer._sublayers:
        _snapshot(sub, out)
    return out


def _restore(snap):
    for layer, cache, ws in snap:
        layer._cache = cache
        if ws is not _MISSING:
            layer._ws = ws


def _fresh_workspaces(layer):
    if "_ws" in layer.__dict__:
        layer._ws = None
    for sub in layer._sublayers:
        _fresh_workspaces(sub)


def _all_layers(layer, out):
    out.append(layer)
    for sub in layer._sublayers:
        _all_layers(sub, out)
    return out


def _copy_grad(g):
    if isinstance(g, backend.RowSparseGrad):
        return backend.RowSparseGrad(g.indices.copy(), g.values.copy(), g.shape)
    return None if g is None else np.array(g, copy=True)


def _add_grads(a, b):
    if a is None:
        return _copy_grad(b)
    if b is None:
        return a
    sa, sb = isinstance(a, backend.RowSparseGrad), isinstance(b, backend.RowSparseGrad)
    if sa and sb:
        idx = np.concatenate([a.indices, b.indices])
        vals = np.concatenate([a.values, b.values])
        uniq, inv = np.unique(idx, return_inverse=True)
        out = np.zeros((len(uniq),) + vals.shape[1:], vals.dtype)
        np.add.at(out, inv, vals)
        return backend.RowSparseGrad(uniq.astype(np.intp), out, a.shape)
    if sa:
        a = a.to_dense()
    if sb:
        b = b.to_dense()
    return a + b


def _has_trainable(layer):
    return next(iter(layer.trainable_weight_refs()), None) is not None


# ----------------------------------------------------------------------------- Model
@register
class Model(Engine, Layer):
    """A model defined by its input and output tensors: ``rnnlab.Model(inputs, outputs, name=None)``.

    ``inputs``/``outputs``: one symbolic tensor, a list, or a dict of them. A model is itself a layer: call it
    on symbolic tensors to nest it inside another model, or on arrays to run it.

    Attributes as in Keras: ``inputs``/``outputs`` (lists), ``input``/``output`` (one tensor, or the list),
    ``layers`` (Keras' order, InputLayers included), ``get_layer(name=, index=)``, ``input_shape``,
    ``output_shape``. Training: ``compile``/``fit``/``evaluate``/``predict`` and the ``*_on_batch`` methods
    (see :mod:`rnnlab.models.engine`)."""

    _float_input = False
    _extra_kwargs = frozenset({"inputs", "outputs"})

    def __init__(self, inputs=None, outputs=None, name=None, trainable=True, **kwargs):
        if inputs is None or outputs is None:
            raise TypeError("Model(inputs, outputs): give the input and output tensors of a functional model "
                            "(subclassing Model with call() is not supported: rnnlab has no autodiff; write a "
                            "Layer with forward/backward, or use rnnlab.Sequential)")
        if kwargs:
            raise TypeError(f"Model: unexpected keyword argument(s) {sorted(kwargs)}")
        super().__init__(name=name if name is not None else backend.unique_name("functional"),
                         trainable=trainable)
        self._input_struct = inputs
        self._output_struct = outputs
        self._inputs = self._flat_tensors(inputs, "inputs")
        self._outputs = self._flat_tensors(outputs, "outputs")
        if len({id(t) for t in self._inputs}) != len(self._inputs):
            raise ValueError(f"Model '{self.name}': the same tensor is listed twice in inputs")
        self._input_names = self._struct_names(inputs, [t.name for t in self._inputs])
        self._map_graph()
        self.input_shape = [t.shape for t in self._inputs] if len(self._inputs) > 1 else self._inputs[0].shape
        self.output_shape = [t.shape for t in self._outputs] if len(self._outputs) > 1 else self._outputs[0].shape
        self.built = True
        self._plans = {}
        self.optimizer = None
        self.loss = None
        self.metrics = []
        self._losses = []
        self.compiled = False
        self.stop_training = False
        self.stop_reason = None
        self.history = None
        self._last_out_masks = None

    # ------------------------------------------------------------------ structure
    def _flat_tensors(self, struct, what):
        if isinstance(struct, dict):
            flat = []
            for k, v in struct.items():
                if not isinstance(k, str):
                    raise TypeError(f"Model '{self.name}': {what} dict keys must be strings, got {k!r}")
                flat.append(v)
        elif isinstance(struct, (list, tuple)):
            flat = list(struct)
        else:
            flat = [struct]
        if not flat:
            raise ValueError(f"Model '{self.name}': {what} is empty")
        for i, t in enumerate(flat):
            if not is_symbolic(t):
                raise TypeError(f"Model '{self.name}': {what}[{i}] must be a symbolic tensor (from rnnlab.Input or "
                                f"a layer called on one), got {type(t).__name__}")
        return flat

    @staticmethod
    def _struct_names(struct, default):
        if isinstance(struct, dict):
            return list(struct.keys())
        return list(default)

    def _map_graph(self):
        """Order the nodes as Keras 3's ``map_graph``: depth-first from the outputs, then by decreasing depth."""
        inputs_ids = {id(t) for t in self._inputs}
        finished, in_progress, order, layer_index = set(), set(), [], {}

        def visit(t):
            layer, ni, _ = t._keras_history
            node = layer._inbound_nodes[ni]
            if id(node) in finished:
                return
            if id(node) in in_progress:
                raise ValueError(f"Model '{self.name}': tensor {t!r} from layer '{layer.name}' is part of a cycle")
            layer_index.setdefault(layer, len(layer_index))
            in_progress.add(id(node))
            if id(t) not in inputs_ids:
                for p in node.parents:
                    visit(p)
            finished.add(id(node))
            in_progress.discard(id(node))
            order.append(node)

        for t in self._outputs:
            visit(t)
        node_depth, layer_depth = {}, {}
        for node in reversed(order):
            d = node_depth.setdefault(id(node), 0)
            d = max(d, layer_depth.get(node.layer, 0))
            layer_depth[node.layer] = d
            node_depth[id(node)] = d
            if not any(id(o) in inputs_ids for o in node.outputs):
                for p in node.parents:
                    pn = p.node
                    node_depth[id(pn)] = max(d + 1, node_depth.get(id(pn), 0))
        by_id = {id(n): n for n in order}
        for t in self._inputs:
            layer = t._keras_history[0]
            if layer not in layer_depth:
                layer_depth[layer] = 0
                layer_index[layer] = -1
                n = t.node
                node_depth[id(n)] = 0
                by_id[id(n)] = n
        nodes_by_depth = defaultdict(list)
        for nid, d in node_depth.items():
            nodes_by_depth[d].append(by_id[nid])
        layers_by_depth = defaultdict(list)
        for layer, d in layer_depth.items():
            layers_by_depth[d].append(layer)
        depths = sorted(nodes_by_depth, reverse=True)
        layers = []
        for d in depths:
            layers.extend(sorted(layers_by_depth[d], key=lambda l: layer_index[l]))
        # what can be computed from the inputs, in order
        computable = set(inputs_ids)
        exec_nodes, done = [], []
        for d in depths:
            for node in nodes_by_depth[d]:
                if node.is_input or all(id(o) in computable for o in node.outputs):
                    continue
                for p in node.parents:
                    if id(p) not in computable:
                        raise ValueError(
                            f"Model '{self.name}': graph disconnected: the outputs depend on {p!r} (layer "
                            f"'{node.layer.name}' needs it), which cannot be computed from the model inputs "
                            f"{[t.name for t in self._inputs]}; add its Input to inputs=. Layers reached without "
                            f"issue: {done}")
                done.append(node.layer.name)
                exec_nodes.append(node)
                computable.update(id(o) for o in node.outputs)
        for t in self._outputs:
            if id(t) not in computable:
                raise ValueError(f"Model '{self.name}': output {t!r} cannot be computed from the inputs")
        names = [l.name for l in layers]
        for nm in names:
            if names.count(nm) > 1:
                raise ValueError(f"Model '{self.name}': the layer name \"{nm}\" is used {names.count(nm)} times; "
                                 "all layer names in a model must be unique (pass name= to one of them)")
        self._nodes = exec_nodes
        self.layers = layers
        self._sublayers = [l for l in layers if not isinstance(l, InputLayer)]
        counts = defaultdict(int)
        for node in exec_nodes:
            for l in _all_layers(node.layer, []):
                counts[id(l)] += 1
        self._shared = {id(n): any(counts[id(l)] > 1 for l in _all_layers(n.layer, [])) for n in exec_nodes}

    def _check_call_shapes(self, tensors):
        if len(tensors) != len(self._inputs):
            raise ValueError(f"Model '{self.name}' expects {len(self._inputs)} input(s), got {len(tensors)}")
        for t, i in zip(tensors, self._inputs):
            a, b = t.shape, i.shape
            if len(a) != len(b) or any(x is not None and y is not None and x != y for x, y in zip(a[1:], b[1:])):
                raise ValueError(f"Input to model '{self.name}' is incompatible: input '{i.name}' has shape "
                                 f"{format_shape(b)}, got {format_shape(a)}")

    def _flat_from_dict(self, d, what):
        unknown = [k for k in d if k not in self._input_names]
        if unknown:
            raise ValueError(f"Model '{self.name}': {what} dict keys {unknown} name no input; the inputs are "
                             f"{self._input_names}")
        missing = [k for k in self._input_names if k not in d]
        if missing:
            raise ValueError(f"Model '{self.name}': {what} is missing input(s) {missing}; the inputs are "
                             f"{self._input_names}")
        return [d[k] for k in self._input_names]

    # ------------------------------------------------------------------ Keras attributes
    @property
    def inputs(self):
        return list(self._inputs)

    @property
    def outputs(self):
        return list(self._outputs)

    @property
    def input(self):
        """The input tensor (the list when the model has several)."""
        return self._inputs[0] if len(self._inputs) == 1 and not isinstance(self._input_struct, (list, tuple)) \
            else list(self._inputs)

    @property
    def output(self):
        """The output tensor (the list when the model has several)."""
        return self._outputs[0] if len(self._outputs) == 1 and not isinstance(self._output_struct, (list, tuple)) \
            else list(self._outputs)

    @property
    def input_names(self):
        return list(self._input_names)

    @property
    def output_names(self):
        if isinstance(self._output_struct, dict):
            return list(self._output_struct.keys())
        names = []
        for t in self._outputs:
            layer, ni, ti = t._keras_history
            nm = layer.name if len(layer._inbound_nodes[ni].outputs) == 1 else f"{layer.name}_{ti}"
            base, k = nm, 1
            while nm in names:
                nm = f"{base}_{k}"
                k += 1
            names.append(nm)
        return names

    def get_layer(self, name=None, index=None):
        """The layer called ``name``, or at position ``index`` of :attr:`layers`."""
        if index is not None:
            if name is not None:
                raise ValueError("get_layer: give name= or index=, not both")
            if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
                raise TypeError(f"get_layer: index must be an int, got {index!r}")
            if not -len(self.layers) <= index < len(self.layers):
                raise ValueError(f"get_layer: index {index} is out of range: the model has {len(self.layers)} layers")
            return self.layers[index]
        if name is None:
            raise ValueError("get_layer: give name= or index=")
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}. Existing layers are: {[l.name for l in self.layers]}.")

    # ------------------------------------------------------------------ weights
    def iter_weights(self, prefix=""):
        seen = set()
        for layer in self._sublayers:
            for path, owner, w in layer.iter_weights(prefix if not isinstance(layer, Model) else
                                                     f"{prefix}{layer.name}/"):
                if (id(owner), w) not in seen:
                    seen.add((id(owner), w))
                    yield path, owner, w

    def trainable_weight_refs(self):
        if not self.trainable:
            return []
        refs, seen = [], set()
        for layer in self._sublayers:
            sub = layer.trainable_weight_refs()
            for path, owner, w in sub:
                if isinstance(layer, Model):
                    path = f"{layer.name}/{path}"
                if (id(owner), w) not in seen:
                    seen.add((id(owner), w))
                    refs.append((path, owner, w))
        return refs

    def count_trainable_params(self):
        return int(sum(math.prod(owner.params[w].shape) for _, owner, w in self.trainable_weight_refs()))

    def reset_states(self):
        """Zero the carried states of every stateful recurrent layer."""
        for layer in self._sublayers:
            if getattr(layer, "stateful", False) or isinstance(layer, Model):
                layer.reset_states()

    # ------------------------------------------------------------------ running
    def compute_output_shape(self, input_shape):
        return self.output_shape

    def compute_mask(self, inputs, mask=None):
        m = self._last_out_masks
        if m is None:
            return None
        return m if len(self._outputs) > 1 else m[0]

    def _plan(self):
        """Which tensors need a gradient: cached per value of ``input_grad_needed`` and of the layers'
        trainability (freezing or unfreezing a layer, e.g. to fine-tune an Embedding, changes the plan)."""
        key = (bool(self.input_grad_needed),) + tuple(_has_trainable(l) for l in self._sublayers)
        plan = self._plans.get(key)
        if plan is None:
            need = {id(t): key[0] for t in self._inputs}
            node_needs_in = {}
            for node in self._nodes:
                needs_in = any(need.get(id(p), False) for p in node.parents)
                node_needs_in[id(node)] = needs_in
                out_need = needs_in or _has_trainable(node.layer)
                for o in node.outputs:
                    need[id(o)] = out_need
            plan = self._plans[key] = (need, node_needs_in)
        return plan

    def forward(self, inputs, training=False, mask=None):
        """Run the graph on ``inputs`` (one array, or a list in the order of :attr:`inputs`); returns one array
        or a list (several outputs). Keeps the run (values, masks, saved caches) for :meth:`backward`."""
        xs = inputs if isinstance(inputs, list) else [inputs]
        if isinstance(inputs, tuple):
            xs = list(inputs)
        if len(xs) != len(self._inputs):
            raise ValueError(f"Model '{self.name}' expects {len(self._inputs)} input(s) {self._input_names}, "
                             f"got {len(xs)}")
        masks_in = mask if isinstance(mask, list) else [mask] * len(xs) if len(xs) == 1 else \
            (list(mask) if mask is not None else [None] * len(xs))
        values, masks = {}, {}
        batch = None
        for t, x, m in zip(self._inputs, xs, masks_in):
            x = self._convert_input(t, x)
            if batch is None:
                batch = len(x)
            elif len(x) != batch:
                raise ValueError(f"Model '{self.name}': all inputs must have the same number of samples, got "
                                 f"{[len(np.asarray(a)) for a in xs]} for {self._input_names}")
            values[id(t)] = x
            masks[id(t)] = m
        snaps = {}
        for node in self._nodes:
            layer = node.layer
            shared = self._shared[id(node)]
            vals = [values[id(p)] for p in node.parents]
            main = vals[:node.n_main]
            x = main if node.main_is_list else main[0]
            if not isinstance(layer, Model):
                x = layer._convert_inputs(x)
            kw = dict(node.kwargs)
            if len(vals) > node.n_main:
                kw["initial_state"] = vals[node.n_main:]
            ms = [masks.get(id(p)) for p in node.parents[:node.n_main]]
            m = None if all(a is None for a in ms) else (ms if node.main_is_list else ms[0])
            if shared:
                _fresh_workspaces(layer)
            y = layer.forward(x, training=training, mask=m, **kw)
            om = layer.compute_mask(x, m)
            if node.multi:
                ys = list(y)
                oms = list(om) if isinstance(om, (list, tuple)) else [om] + [None] * (len(ys) - 1)
            else:
                ys, oms = [y], [om[0] if isinstance(om, (list, tuple)) else om]
            for o, v, mm in zip(node.outputs, ys, oms):
                values[id(o)] = v
                masks[id(o)] = mm
            snaps[id(node)] = _snapshot(layer, [])
        outs = [values[id(t)] for t in self._outputs]
        self._last_out_masks = [masks.get(id(t)) for t in self._outputs]
        self._cache = (snaps, [np.shape(values[id(t)]) for t in self._inputs], [o.shape for o in outs],
                       [o.dtype for o in outs])
        return outs if len(outs) > 1 else outs[0]

    def _convert_input(self, t, x):
        if hasattr(x, "detach") and hasattr(x, "numpy"):
            x = x.detach().cpu().numpy()
        x = np.asarray(x)
        if x.ndim == 0:
            raise ValueError(f"Model '{self.name}': input '{t.name}' must have a batch dimension, got a scalar")
        if x.ndim != len(t.shape) or any(a is not None and a != b for a, b in zip(t.shape[1:], x.shape[1:])):
            raise ValueError(f"Model '{self.name}': input '{t.name}' expects shape {format_shape(t.shape)}, got "
                             f"array of shape {x.shape}")
        if x.dtype.kind not in "biuf":
            raise TypeError(f"Model '{self.name}': input '{t.name}' must be numeric, got dtype {x.dtype}")
        layer = t._keras_history[0]
        declared = getattr(layer, "input_dtype", None)
        if declared is not None and x.dtype != declared:
            target = np.dtype(declared)
            if target.kind in "iu" and x.dtype.kind == "f" and not np.array_equal(x, np.round(x)):
                raise TypeError(f"Model '{self.name}': input '{t.name}' is declared with dtype {target.name} (token "
                                f"ids), got non-integer values of dtype {x.dtype}")
            x = x.astype(target)
        return x

    def backward(self, grad):
        """Backpropagate ``grad`` (one array, or a list per output, ``None`` = zero) through the graph; fills
        every layer's ``grads`` (summed over a shared layer's calls) and returns the gradient of the inputs
        (``None`` where the inputs need none)."""
        snaps, in_shapes, out_shapes, out_dtypes = self._need_cache()
        gl = grad if isinstance(grad, (list, tuple)) else [grad]
        if len(gl) != len(self._outputs):
            raise ValueError(f"Model '{self.name}' has {len(self._outputs)} output(s): backward expects "
                             f"{len(self._outputs)} gradient(s), got {len(gl)}")
        need, node_needs_in = self._plan()
        grads = {}
        for t, g, s in zip(self._outputs, gl, out_shapes):
            if g is None:
                continue
            g = np.asarray(g)
            if g.shape != s:
                raise ValueError(f"Model '{self.name}': gradient for output '{t.name}' must have shape {s}, got "
                                 f"{g.shape}")
            grads[id(t)] = _add_grads(grads.get(id(t)), g) if id(t) in grads else g
        acc = {}
        ran = set()
        for node in reversed(self._nodes):
            layer = node.layer
            og = [grads.get(id(o)) for o in node.outputs]
            if all(g is None for g in og):
                continue
            needs_in = node_needs_in[id(node)]
            if not needs_in and not _has_trainable(layer):
                continue
            _restore(snaps[id(node)])
            shared = self._shared[id(node)]
            layer.input_grad_needed = needs_in
            try:
                gin = layer.backward(og if node.multi else og[0])
            finally:
                layer.input_grad_needed = True
            ran.add(id(layer))
            if shared:
                for _, owner, w in layer.iter_weights():
                    key = (id(owner), w)
                    prev = acc.get(key)
                    acc[key] = (owner, w, _copy_grad(owner.grads[w]) if prev is None
                                else _add_grads(prev[2], owner.grads[w]))
            if gin is None or not needs_in:
                continue
            gins = gin if isinstance(gin, (list, tuple)) else [gin]
            if len(gins) != len(node.parents):
                raise ValueError(f"Layer '{layer.name}' returned {len(gins)} input gradient(s) for "
                                 f"{len(node.parents)} input tensor(s)")
            for p, g in zip(node.parents, gins):
                if g is None or not need.get(id(p), False):
                    continue
                prev = grads.get(id(p))
                grads[id(p)] = g if prev is None else _add_grads(prev, g)
        for owner, w, g in acc.values():
            owner.grads[w] = g
        for layer in self._sublayers:
            if id(layer) not in ran:
                layer.zero_grads()
        if not self.input_grad_needed:
            return None
        dx = [grads.get(id(t)) for t in self._inputs]
        dx = [np.zeros(s) if g is None else g for g, s in zip(dx, in_shapes)]
        return dx if len(dx) > 1 else dx[0]

    def __call__(self, inputs, *args, training=False, mask=None, **kwargs):
        if isinstance(inputs, dict) and not any(is_symbolic(v) for v in inputs.values()):
            inputs = self._flat_from_dict(inputs, "inputs")
        return super().__call__(inputs, *args, training=training, mask=mask, **kwargs)

    def _convert_inputs(self, inputs):
        return inputs

    # ------------------------------------------------------------------ what the engine needs
    def _inputs_names(self):
        return list(self._input_names)

    def _outputs_names(self):
        return self.output_names

    def _output_shapes(self):
        return [t.shape for t in self._outputs]

    def _prepare_inputs(self, x, what):
        n = len(self._inputs)
        if isinstance(x, dict):
            xs = self._flat_from_dict(x, f"{what}: x")
        elif isinstance(x, (list, tuple)):
            if len(x) != n:
                raise ValueError(f"{what}: x is a list of {len(x)} arrays but model '{self.name}' has {n} input(s) "
                                 f"{self._input_names}")
            xs = list(x)
        else:
            if x is None:
                raise ValueError(f"{what}: x is required")
            if n != 1:
                raise ValueError(f"{what}: model '{self.name}' has {n} inputs {self._input_names}: give x as a list "
                                 f"or a dict keyed by input name, got one {type(x).__name__}")
            xs = [x]
        xs = [self._convert_input(t, a) for t, a in zip(self._inputs, xs)]
        lens = {len(a) for a in xs}
        if len(lens) > 1:
            raise ValueError(f"{what}: all inputs must have the same number of samples, got "
                             f"{dict(zip(self._input_names, [len(a) for a in xs]))}")
        return xs

    def _run(self, xs, training):
        out = self.forward(xs if len(xs) > 1 else xs[0], training=training)
        outs = out if len(self._outputs) > 1 else [out]
        return outs, list(self._last_out_masks)

    def _backprop(self, grads):
        self.input_grad_needed = False
        try:
            self.backward(grads if len(grads) > 1 else grads[0])
        finally:
            self.input_grad_needed = True

    def _pack_outputs(self, outs):
        if isinstance(self._output_struct, dict):
            return dict(zip(self._output_struct.keys(), outs))
        if isinstance(self._output_struct, (list, tuple)):
            return list(outs)
        return outs[0]

    def __repr__(self):
        return f"<Model name={self.name!r} inputs={self._input_names} outputs={len(self._outputs)}>"

    # ------------------------------------------------------------------ config
    def _local_nodes(self):
        """``{id(node): index}``: each layer's nodes that belong to this model, numbered per layer (Keras'
        ``node_index`` in configs and in "Connected to")."""
        mine = {id(n) for n in self._nodes} | {id(t.node) for t in self._inputs}
        index = {}
        for layer in self.layers:
            k = 0
            for n in layer.__dict__.get("_inbound_nodes", []):
                if id(n) in mine:
                    index[id(n)] = k
                    k += 1
        return index

    def _history_ref(self, t, local):
        layer, ni, ti = t._keras_history
        return [layer.name, local[id(layer._inbound_nodes[ni])], ti]

    def get_config(self):
        """JSON-able graph (Keras' functional layout): every layer's class and config with its calls
        (``inbound_nodes``: each call's input tensors as ``[layer_name, node_index, tensor_index]``), and the
        model's ``input_layers``/``output_layers``."""
        local = self._local_nodes()
        layers = []
        for layer in self.layers:
            nodes = []
            for n in layer.__dict__.get("_inbound_nodes", []):
                if id(n) not in local or n.is_input:
                    continue
                refs = [self._history_ref(p, local) for p in n.parents]
                nodes.append({"args": refs[:n.n_main], "list": n.main_is_list,
                              "initial_state": refs[n.n_main:], "kwargs": dict(n.kwargs)})
            cls = "Functional" if type(layer) is Model else type(layer).__name__
            layers.append({"class_name": cls, "name": layer.name, "config": layer.get_config(),
                           "inbound_nodes": nodes})

        def refs(tensors, struct):
            r = [self._history_ref(t, local) for t in tensors]
            if isinstance(struct, dict):
                return {k: v for k, v in zip(struct.keys(), r)}
            return r if isinstance(struct, (list, tuple)) else r[0]

        return {"name": self.name, "trainable": self.trainable, "layers": layers,
                "input_layers": refs(self._inputs, self._input_struct),
                "output_layers": refs(self._outputs, self._output_struct)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Rebuild the graph of :meth:`get_config` (new layers, fresh weights)."""
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError("Model.from_config: expected a dict with a 'layers' list (a functional model config)")
        from ..layers.base import get_layer_class
        created, pending = {}, []
        for i, entry in enumerate(config["layers"]):
            if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str) or \
                    not isinstance(entry.get("config"), dict):
                raise ValueError(f"Model.from_config: layer {i} must be {{'class_name': str, 'config': dict, "
                                 f"'inbound_nodes': list}}, got {entry!r:.200}")
            cname = entry["class_name"]
            if custom_objects and cname in custom_objects:
                lcls = custom_objects[cname]
            elif cname == "Sequential":
                from .sequential import Sequential as lcls
            else:
                lcls = Model if cname in ("Functional", "Model") else get_layer_class(cname)
            layer = lcls.from_config(dict(entry["config"]))
            name = entry.get("name", layer.name)
            if name in created:
                raise ValueError(f"Model.from_config: the layer name \"{name}\" is used twice")
            created[name] = layer
            nodes = entry.get("inbound_nodes") or []
            if not isinstance(nodes, list):
                raise ValueError(f"Model.from_config: layer '{name}': inbound_nodes must be a list")
            pending.extend((name, k, nd) for k, nd in enumerate(nodes))
        outputs = {}  # (layer name, local node index) -> list of output tensors
        for name, layer in created.items():
            if isinstance(layer, InputLayer):
                outputs[(name, 0)] = [layer.output]
        done_count = {name: (1 if isinstance(l, InputLayer) else 0) for name, l in created.items()}

        def tensor(ref):
            if not (isinstance(ref, (list, tuple)) and len(ref) == 3 and isinstance(ref[0], str)):
                raise ValueError(f"Model.from_config: a tensor reference must be [layer_name, node_index, "
                                 f"tensor_index], got {ref!r:.100}")
            outs = outputs.get((ref[0], ref[1]))
            if outs is None:
                return None
            if not isinstance(ref[2], int) or not 0 <= ref[2] < len(outs):
                raise ValueError(f"Model.from_config: tensor index {ref[2]!r} out of range for layer '{ref[0]}'")
            return outs[ref[2]]

        while pending:
            progress = False
            rest = []
            for name, k, nd in pending:
                if not isinstance(nd, dict):
                    raise ValueError(f"Model.from_config: layer '{name}': each inbound node must be a dict")
                if k != done_count[name]:  # a layer's calls are replayed in order
                    rest.append((name, k, nd))
                    continue
                args = [tensor(r) for r in nd.get("args", [])]
                states = [tensor(r) for r in nd.get("initial_state", [])]
                if any(a is None for a in args + states):
                    rest.append((name, k, nd))
                    continue
                kw = dict(nd.get("kwargs") or {})
                if states:
                    kw["initial_state"] = states
                x = args if nd.get("list", len(args) > 1) else args[0]
                out = created[name](x, **kw)
                outputs[(name, k)] = out if isinstance(out, list) else [out]
                done_count[name] += 1
                progress = True
            if not progress:
                raise ValueError(f"Model.from_config: cannot connect the layers {sorted({n for n, _, _ in rest})}: "
                                 "their inputs are never produced (a cycle or a missing layer)")
            pending = rest

        def resolve(struct):
            if isinstance(struct, dict):
                return {k: resolve(v) for k, v in struct.items()}
            if isinstance(struct, list) and struct and isinstance(struct[0], list):
                return [resolve(v) for v in struct]
            t = tensor(struct)
            if t is None:
                raise ValueError(f"Model.from_config: the model input/output {struct!r:.100} is never produced")
            return t

        return cls(resolve(config["input_layers"]), resolve(config["output_layers"]), name=config.get("name"),
                   trainable=config.get("trainable", True))

    def to_json(self, **kwargs):
        """The architecture as a JSON string (``{"class_name": "Functional", "config": ...}``); see
        :func:`rnnlab.models.model_from_json`."""
        import json
        return json.dumps({"class_name": "Functional", "config": self.get_config()}, **kwargs)

    # ------------------------------------------------------------------ files
    def save(self, path, include_optimizer=True):
        """Save architecture, weights, compile settings (and optimizer state), no pickle: ``.keras`` writes a Keras 3
        archive, anything else one rnnlab ``.npz``; load with :func:`rnnlab.load_model`."""
        from . import keras_format
        keras_format.save(self, path, include_optimizer=include_optimizer)

    def save_weights(self, path):
        """Save only the weights: ``.weights.h5`` as Keras 3 writes it, anything else one rnnlab ``.npz``."""
        from . import keras_format
        keras_format.save_weights(self, path)

    def load_weights(self, path):
        """Load weights from :meth:`save_weights`/:meth:`save` files (matched by position, shapes checked), or
        from a Keras 3 ``*.weights.h5`` / ``*.keras`` file of the same architecture (needs h5py)."""
        from . import keras_format
        keras_format.load_weights(self, path)

    def _require_built(self, what):
        """A functional model is built when it is created (kept for the loaders shared with Sequential)."""

    def _compile_config(self):
        """The compile settings as saved in model files (a loss/metrics per output)."""
        from .. import losses as _l, optimizers as _o
        names = self.output_names
        return {"optimizer": _o.serialize(self.optimizer),
                "loss": {nm: (None if l is None else _l.serialize(l)) for nm, l in zip(names, self._losses)},
                "loss_weights": dict(zip(names, self._loss_weights)),
                "metrics": {nm: [m.name for m in ms] for nm, ms in zip(names, self._out_metrics)}}

    def _compile_from_config(self, comp):
        from .. import losses as _l, optimizers as _o
        loss = comp.get("loss")
        if isinstance(loss, dict):
            loss = {k: (None if v is None else _l.get(v)) for k, v in loss.items()}
        self.compile(optimizer=_o.get(comp["optimizer"]), loss=loss, metrics=comp.get("metrics") or None,
                     loss_weights=comp.get("loss_weights"))

    # ------------------------------------------------------------------ summary
    def summary(self, print_fn=None, line_length=None):
        """A Keras-style table: each layer's name and type, output shape, parameter count and the tensors it
        is connected to (``layer[node][tensor]``); then the total, trainable and non-trainable counts."""
        out = print_fn or print
        local = self._local_nodes()
        rows = []
        for layer in self.layers:
            nodes = [n for n in layer.__dict__.get("_inbound_nodes", []) if id(n) in local]
            shapes = [t.shape for n in nodes[:1] for t in n.outputs]
            shape_txt = "?" if not shapes else (format_shape(shapes[0]) if len(shapes) == 1
                                                 else format_shape([tuple(s) for s in shapes]))
            try:
                params = f"{layer.count_params():,}" if layer.built else "? (unbuilt)"
            except ValueError:
                params = "? (unbuilt)"
            conn = []
            for n in nodes:
                conn.extend(f"{p._keras_history[0].name}[{local[id(p.node)]}][{p._keras_history[2]}]"
                            for p in n.parents)
            rows.append((f"{layer.name} ({type(layer).__name__ if type(layer) is not Model else 'Functional'})",
                         shape_txt, params, ", ".join(conn) or "-"))
        w1 = max([len("Layer (type)")] + [len(r[0]) for r in rows]) + 2
        w2 = max([len("Output Shape")] + [len(r[1]) for r in rows]) + 2
        w3 = max([len("Param #")] + [len(r[2]) for r in rows]) + 2
        w4 = max([len("Connected to")] + [len(r[3]) for r in rows])
        total_w = w1 + w2 + w3 + 2 + w4
        out(f'Model: "{self.name}"')
        out("─" * total_w)
        out(f"{'Layer (type)':<{w1}}{'Output Shape':<{w2}}{'Param #':>{w3}}  Connected to")
        out("═" * total_w)
        for r in rows:
            out(f"{r[0]:<{w1}}{r[1]:<{w2}}{r[2]:>{w3}}  {r[3]}".rstrip())
        out("─" * total_w)
        refs = list(self.iter_weights())
        total = int(sum(math.prod(o.params[w].shape) for _, o, w in refs))
        trainable = self.count_trainable_params()
        itemsize = np.dtype(backend.floatx()).itemsize
        if refs:
            itemsize = refs[0][1].params[refs[0][2]].dtype.itemsize

        def size(n):
            b = n * itemsize
            return f"{b / 2**20:.2f} MB" if b >= 2**20 else f"{b / 2**10:.2f} KB" if b >= 2**10 else f"{b:.2f} B"

        out(f"Total params: {total:,} ({size(total)})")
        out(f"Trainable params: {trainable:,} ({size(trainable)})")
        out(f"Non-trainable params: {total - trainable:,} ({size(total - trainable)})")


def model_from_json(json_string, custom_objects=None):
    """A new model (fresh weights) from :meth:`Model.to_json` or ``Sequential.to_json`` output."""
    import json
    try:
        doc = json.loads(json_string)
    except (TypeError, ValueError) as e:
        raise ValueError(f"model_from_json: not a JSON model description ({e})") from None
    if not isinstance(doc, dict) or "config" not in doc:
        raise ValueError("model_from_json: expected {'class_name': ..., 'config': ...}")
    cname = doc.get("class_name")
    if cname in ("Functional", "Model"):
        return Model.from_config(doc["config"], custom_objects=custom_objects)
    if cname == "Sequential":
        from .sequential import Sequential
        return Sequential.from_config(doc["config"])
    raise ValueError(f"model_from_json: unknown model class {cname!r} (expected 'Functional' or 'Sequential')")
