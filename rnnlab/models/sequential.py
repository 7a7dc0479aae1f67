"""Sequential: a plain stack of layers, a :class:`~rnnlab.Model` as in Keras 3.

The model owns the order: forward runs the layers first to last (passing each layer's output
mask to the next), the loss gives dL/d(output), backward runs the layers last to first, and the
optimizer updates every trainable weight in place. compile / fit / evaluate / predict and the
``*_on_batch`` methods are the one training engine of every model (:mod:`rnnlab.models.engine`);
this class only provides the stack's forward and backward.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from .. import variables as _variables
from ..layers.base import Layer, format_shape


class InputSpec:
    """What ``rnnlab.Input(shape)`` returns: the input shape (without batch) of a Sequential model."""

    def __init__(self, shape, batch_size=None, dtype=None, name=None):
        if isinstance(shape, int):
            shape = (shape,)
        if not isinstance(shape, (tuple, list)):
            raise TypeError(f"Input: shape must be a tuple of ints/None, got {shape!r}")
        self.shape = (batch_size,) + tuple(None if d is None else int(d) for d in shape)
        if dtype is not None:
            dt = np.dtype(dtype)
            if dt.kind not in "biuf":
                raise TypeError(f"Input: dtype must be a numeric dtype such as 'float32' or 'int32', got {dtype!r}")
            dtype = dt.name
        self.dtype = dtype
        self.name = name

    def __repr__(self):
        return f"Input(shape={format_shape(self.shape[1:])})"


from .functional import Input, InputLayer, Model, is_symbolic  # noqa: E402,F401  (rnnlab.Input: symbolic)


class Sequential(Model):
    """A linear stack of layers: ``Sequential([Embedding(20000, 128), LSTM(128), Dense(1, "sigmoid")])``.

    A :class:`~rnnlab.Model` (as in Keras 3): it trains with the same engine, and it is a layer, so it can be
    called on symbolic tensors inside a functional model."""

    input_grad_needed = True
    _float_input = False

    def __init__(self, layers=None, name=None, trainable=True):
        # a Model without a graph: the attributes of Layer/Model set by hand (no inputs/outputs to trace)
        self.name = name or backend.unique_name("sequential")
        self.trainable = bool(trainable)
        self.dtype = backend.floatx()
        self.params, self.grads = {}, {}
        self._cache = None
        self._initial_weights = None
        self.batch_input_shape = None
        self.output_shape = None
        self.layers: list[Layer] = []
        self._input_shape = None
        self._input_dtype = None
        self._declared_input_shape = None  # from Input(...) / the first layer's input_shape: data must match it
        self.optimizer = None
        self.loss = None
        self._losses = []
        self.metrics: list = []
        self.compiled = False
        self.stop_training = False
        self.stop_reason = None
        self.history = None
        self._last_mask = None
        for layer in layers or []:
            self.add(layer)

    @property
    def _sublayers(self):
        return self.layers

    # ---------------------------------------------------------------- building
    def add(self, layer):
        """Append a layer (or, first, an ``Input``); builds it at once when the input shape is known."""
        if isinstance(layer, InputLayer):
            layer = layer.output
        if is_symbolic(layer):  # rnnlab.Input(...): its shape and dtype
            layer = InputSpec(layer.shape[1:], batch_size=layer.shape[0], name=layer.name,
                              dtype=getattr(layer._keras_history[0], "input_dtype", None))
        if isinstance(layer, InputSpec):
            if self.layers:
                raise ValueError("Input(...) can only be the first entry of a Sequential model")
            self._input_shape = layer.shape
            self._declared_input_shape = layer.shape
            self._input_dtype = layer.dtype
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add: expected a Layer, got {type(layer).__name__}")
        if any(layer is other or layer.name == other.name for other in self.layers):
            raise ValueError(f"Sequential.add: a layer named '{layer.name}' is already in the model; layer names must be unique")
        if getattr(layer, "return_state", False):
            raise ValueError(f"Layer '{layer.name}' has return_state=True, which returns several arrays; "
                             "Sequential needs one output per layer")
        if not self.layers and self._input_shape is None and layer.batch_input_shape is not None:
            self._input_shape = layer.batch_input_shape
            self._declared_input_shape = tuple(layer.batch_input_shape)
        self.layers.append(layer)
        if self._input_shape is not None:
            self.build(self._input_shape)

    def build(self, input_shape=None):
        """Build every layer for ``input_shape`` (with the batch axis), propagating shapes layer by layer."""
        shape = tuple(input_shape) if input_shape is not None else self._input_shape
        if shape is None:
            raise ValueError("Sequential.build: the input shape is unknown; give the first layer input_shape= or "
                             "start with rnnlab.Input(shape), or call the model on data")
        self._input_shape = shape
        for layer in self.layers:
            if layer.built:
                expected = layer.input_shape
                if expected is not None and len(expected) == len(shape) and any(
                        a is not None and b is not None and a != b for a, b in zip(expected[1:], shape[1:])):
                    raise ValueError(f"Layer '{layer.name}' was built for input {format_shape(expected)} but receives {format_shape(shape)}")
            else:
                layer._maybe_build(shape)
            shape = layer.output_shape if layer.output_shape is not None else layer.compute_output_shape(shape)
        self.output_shape = shape

    @property
    def input_shape(self):
        """The model's input shape with the batch axis (``None`` until known)."""
        return self._input_shape

    def pop(self):
        """Remove and return the last layer (as Keras' ``Sequential.pop``)."""
        if not self.layers:
            raise TypeError("Sequential.pop: there are no layers in the model")
        layer = self.layers.pop()
        if self.layers and self._input_shape is not None:
            self.build(self._input_shape)
        else:
            self.output_shape = self._input_shape
        return layer

    def reset_states(self):
        """Zero the carried states of every stateful recurrent layer."""
        for layer in self.layers:
            if getattr(layer, "stateful", False):
                layer.reset_states()

    @property
    def built(self):
        return bool(self.layers) and all(layer.built for layer in self.layers)

    def get_layer(self, name=None, index=None):
        """The layer called ``name`` (or at position ``index``)."""
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No layer named {name!r}; layers: {[l.name for l in self.layers]}")

    # ---------------------------------------------------------------- weights
    def _require_built(self, what):
        if not self.built:
            raise ValueError(f"Sequential.{what}: the model is not built yet; give the first layer input_shape=, "
                             "start with rnnlab.Input(shape), or fit/call it on data first")

    def iter_weights(self, prefix=""):
        """``(path, owner_layer, weight_name)`` for every weight, layer by layer in Keras order."""
        for layer in self.layers:
            yield from layer.iter_weights(prefix)

    def trainable_weight_refs(self):
        """The refs of :meth:`iter_weights` that train (layers with ``trainable=False`` left out):
        what ``optimizer.apply`` receives."""
        refs = []
        for layer in self.layers:
            refs.extend(layer.trainable_weight_refs())
        return refs

    weights = property(lambda self: _variables.weights_of(self), doc="All weights as Variable views (Keras order).")
    trainable_weights = property(lambda self: _variables.trainable_weights_of(self))
    non_trainable_weights = property(lambda self: _variables.non_trainable_weights_of(self))

    def get_weights(self):
        """Copies of all weights, the layers' ``get_weights()`` lists concatenated (Keras order)."""
        self._require_built("get_weights")
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights):
        """Load weights given in :meth:`get_weights` order (count and shapes checked, copied in place)."""
        self._require_built("set_weights")
        weights = list(weights)
        total = sum(len(list(layer.iter_weights())) for layer in self.layers)
        if len(weights) != total:
            raise ValueError(f"Sequential.set_weights: the model has {total} weight arrays, got {len(weights)}")
        i = 0
        for layer in self.layers:
            n = len(list(layer.iter_weights()))
            layer.set_weights(weights[i:i + n])
            i += n

    def count_params(self):
        """Total number of weights (trainable and not)."""
        self._require_built("count_params")
        return sum(layer.count_params() for layer in self.layers)

    def summary(self, print_fn=None, line_length=70):
        """Print a Keras-style table: each layer's type, output shape and parameter count. A model (or layer)
        not built yet is listed too, its unknown shapes and counts shown as ``?`` (as Keras' "unbuilt")."""
        out = print_fn or print
        w1, w2 = 32, 24
        w3 = max(line_length - w1 - w2, 12)
        rule = "─" * (w1 + w2 + w3)
        out(f'Model: "{self.name}"')
        out(rule)
        out(f"{'Layer (type)':<{w1}}{'Output Shape':<{w2}}{'Param #':>{w3}}")
        out("═" * (w1 + w2 + w3))
        total = trainable = 0
        unknown = False
        for layer in self.layers:
            label = f"{layer.name} ({type(layer).__name__})"
            shape = "?" if layer.output_shape is None else format_shape(layer.output_shape)
            if layer.built:
                n = layer.count_params()
                total += n
                trainable += layer.count_trainable_params()
                params = f"{n:,}"
            else:
                unknown = True
                params = "? (unbuilt)"
            out(f"{label:<{w1}}{shape:<{w2}}{params:>{w3}}")
        out(rule)
        itemsize = np.dtype(self.layers[0].dtype).itemsize if self.layers else 4

        def size(n):
            b = n * itemsize
            return f"{b / 2**20:.2f} MB" if b >= 2**20 else f"{b / 2**10:.2f} KB" if b >= 2**10 else f"{b:.2f} B"

        more = " + ? (unbuilt layers)" if unknown else ""
        out(f"Total params: {total:,} ({size(total)}){more}")
        out(f"Trainable params: {trainable:,} ({size(trainable)}){more}")
        out(f"Non-trainable params: {total - trainable:,} ({size(total - trainable)})")
        out(rule)

    # ---------------------------------------------------------------- engine hooks
    def _inputs_names(self):
        return ["input"]

    def _outputs_names(self):
        return [self.layers[-1].name] if self.layers else ["output"]

    @property
    def output_names(self):
        return self._outputs_names()

    def _output_shapes(self):
        return [self.output_shape]

    def _prepare_inputs(self, x, what):
        if x is None:
            raise ValueError(f"{what}: x is required")
        x = self._prepare_x(x)
        self._check_declared_shape(x)       # data entering fit/evaluate/predict/*_on_batch (not a layer call)
        return [x]

    def _run(self, xs, training):
        out, mask = self._forward(xs[0], training)
        return [out], [mask]

    def _backprop(self, grads):
        self._backward(grads[0])

    def _pack_outputs(self, outs):
        return outs[0]

    def _compile_config(self):
        """The compile settings as Sequential files have always stored them (one loss)."""
        from .. import losses as _l, optimizers as _o
        return {"optimizer": _o.serialize(self.optimizer), "loss": _l.serialize(self.loss),
                "metrics": [m if isinstance(m, str) else m.name for m in self._metric_ids]}

    def _compile_from_config(self, comp):
        from .. import losses as _l, optimizers as _o
        self.compile(optimizer=_o.get(comp["optimizer"]), loss=_l.get(comp["loss"]), metrics=comp.get("metrics") or [])

    def __repr__(self):
        return f"<Sequential name={self.name!r} layers={len(self.layers)} built={self.built}>"

    def _train_step(self, xb, yb, swb, epoch=0, step=0, time_mask=None):
        """Deprecated private spelling kept for old callers: use :meth:`train_step`."""
        return self._train_batch([xb], [yb], [swb], epoch, step, time_mask)[0]

    # ---------------------------------------------------------------- as a layer
    def forward(self, inputs, training=False, mask=None):
        """The stack's forward (layer contract): the layers' caches serve :meth:`backward`."""
        x = self._prepare_x(inputs)
        out, self._last_mask = self._forward(x, training, mask)  # a mask from the graph reaches the first layer
        self._cache = True
        return out

    def backward(self, grad):
        """The layers' backward passes last to first; returns dL/dx (``None`` when not needed)."""
        self._need_cache()
        if not self.input_grad_needed:
            self._backward(grad)
            return None
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    def compute_output_shape(self, input_shape):
        if not self.built:
            self.build(tuple(input_shape))
        return self.output_shape

    def compute_mask(self, inputs, mask=None):
        return self._last_mask

    def _maybe_build(self, input_shape):
        if not self.built:
            self.build(tuple(input_shape))

    def _check_call_shapes(self, tensors):
        if len(tensors) != 1:
            raise ValueError(f"Sequential '{self.name}' takes one input, got {len(tensors)}")
        if not self.built:
            self.build(tensors[0].shape)
        elif self._input_shape is not None:
            a, b = tensors[0].shape, self._input_shape
            if len(a) != len(b) or any(x is not None and y is not None and x != y for x, y in zip(a[1:], b[1:])):
                raise ValueError(f"Input to model '{self.name}' is incompatible: it was built for input "
                                 f"{format_shape(b)}, got {format_shape(a)}")

    @property
    def _outputs(self):
        from .functional import KerasTensor
        return [KerasTensor(self.output_shape, dtype=self.layers[-1].dtype if self.layers else None)]

    # ---------------------------------------------------------------- running
    def _prepare_x(self, x):
        if hasattr(x, "detach") and hasattr(x, "numpy"):
            x = x.detach().cpu().numpy()
        x = np.asarray(x)
        if x.ndim == 0:
            raise ValueError(f"x must have a batch dimension, got a scalar {x!r}")
        if not self.layers:
            raise ValueError("The model has no layers")
        if not self.built:
            self.build((None,) + x.shape[1:])
        if self._input_dtype is not None and x.dtype != self._input_dtype:
            target = np.dtype(self._input_dtype)
            if target.kind in "iu" and x.dtype.kind == "f" and not np.array_equal(x, np.round(x)):
                raise TypeError(f"x: the model input is declared with dtype {target.name} (token ids), "
                                f"got non-integer values of dtype {x.dtype}")
            x = x.astype(target)
        x = self.layers[0]._convert_inputs(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"x must be numeric, got dtype {x.dtype}")
        return x

    def _check_declared_shape(self, x):
        """Data must match a declared input shape (Keras's input-spec check): the same rank and, on every
        non-batch axis the declaration fixes, the same size (``None`` axes are free). A shape only inferred
        from earlier data (no declaration) is not enforced. Checked where data enters the model (every
        fit/evaluate/predict/*_on_batch goes through ``_prepare_inputs``); calling the model as a layer
        (``model(x)``, or nested in another model) stays lenient, as Keras 3's Sequential is."""
        decl = self._declared_input_shape
        if decl is None or x.ndim != len(decl):
            return          # another rank: the first layer's own check says so ("expected ndim=...")
        # a first layer on features checks their (last) axis itself with its own message; the axes between
        # batch and features (time), and every axis of token ids (Embedding), are checked here
        from ..layers.embedding import Embedding
        axes = range(1, x.ndim) if isinstance(self.layers[0], Embedding) else range(1, x.ndim - 1)
        if any(decl[i] is not None and decl[i] != x.shape[i] for i in axes):
            raise ValueError(f"Input to Sequential model '{self.name}' is incompatible with its declared input "
                             f"shape: expected {format_shape(decl)}, got an array of shape {tuple(x.shape)}")

    def _forward(self, x, training, mask=None):
        for layer in self.layers:
            y = layer.forward(x, training=training, mask=mask)
            mask = layer.compute_mask(x, mask)
            x = y
        return x, mask

    def _backward(self, grad):
        """Run the layers' backward passes last to first. Layers before the first one with trainable
        weights are skipped: nothing upstream needs their gradients (e.g. a frozen Embedding), so the
        lowest layer that runs is told it need not compute dL/dx (``Layer.input_grad_needed``)."""
        first = next((i for i, layer in enumerate(self.layers)
                      if next(iter(layer.trainable_weight_refs()), None) is not None), len(self.layers))
        if first == len(self.layers):
            return
        lowest = self.layers[first]
        lowest.input_grad_needed = False
        try:
            for layer in self.layers[:first - 1:-1] if first > 0 else reversed(self.layers):
                grad = layer.backward(grad)
                if grad is None:
                    break
        finally:
            lowest.input_grad_needed = True

    def __call__(self, x, training=False, mask=None, **kwargs):
        """Forward pass on ``x`` (one batch) returning the output; builds the model if needed. On a symbolic
        tensor it records a call in a functional graph (a Sequential nested in a Model)."""
        if is_symbolic(x):
            return Layer.__call__(self, x, training=training, mask=mask, **kwargs)
        return self._forward(self._prepare_x(x), training)[0]

    def _loss_mask(self, out, mask):
        if mask is not None and out.ndim >= 3 and mask.shape == out.shape[:2]:
            return mask
        return None

    def _check_xy(self, x, y, sample_weight, what):
        """``y`` (and ``sample_weight``) as arrays checked against ``x``'s number of samples."""
        if y is None:
            raise ValueError(f"{what}: y is required")
        y = np.asarray(y)
        if len(x) != len(y):
            raise ValueError(f"{what}: x and y must have the same number of samples, got x: {len(x)} and y: {len(y)}")
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
            if len(sample_weight) != len(x):
                raise ValueError(f"{what}: sample_weight has {len(sample_weight)} entries for {len(x)} samples")
        return y, sample_weight

    # ----------------------------------------------------------------- files
    def get_config(self):
        """JSON-able description: name, input shape/dtype and each layer's class name and config."""
        return {"name": self.name, "input_shape": None if self._input_shape is None else list(self._input_shape),
                "input_dtype": self._input_dtype,
                "layers": [{"class_name": type(l).__name__, "config": l.get_config()} for l in self.layers],
                **({"input_shape_declared": True} if self._declared_input_shape is not None else {})}

    @classmethod
    def from_config(cls, config):
        """A new Sequential (fresh weights) from :meth:`get_config`."""
        from ..layers.base import get_layer_class
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError("Sequential.from_config: expected a dict with a 'layers' list")
        model = cls(name=config.get("name"))
        if config.get("input_dtype") is not None:
            model._input_dtype = np.dtype(config["input_dtype"]).name
        for entry in config["layers"]:
            model.layers.append(get_layer_class(entry["class_name"]).from_config(dict(entry["config"])))
        if config.get("input_shape") is not None:
            model.build(tuple(config["input_shape"]))
        if config.get("input_shape_declared") and config.get("input_shape") is not None:
            model._declared_input_shape = tuple(config["input_shape"])
        elif model.layers and model.layers[0].batch_input_shape is not None:
            model._declared_input_shape = tuple(model.layers[0].batch_input_shape)
        return model

    def to_json(self, **kwargs):
        """The architecture as JSON (``{"class_name": "Sequential", "config": ...}``); see ``model_from_json``."""
        import json
        return json.dumps({"class_name": "Sequential", "config": self.get_config()}, **kwargs)

    def save(self, path, include_optimizer=True):
        """``.keras``: a Keras 3 archive; ``.h5``: refused; else one rnnlab ``.npz`` (see rnnlab.models.keras_format)."""
        from . import keras_format; keras_format.save(self, path, include_optimizer=include_optimizer)  # noqa: E702

    def save_weights(self, path):
        """``.weights.h5``: a Keras 3 weights file; ``.keras``/``.h5``: refused; else one rnnlab ``.npz``."""
        from . import keras_format; keras_format.save_weights(self, path)  # noqa: E702

    def load_weights(self, path):
        """Load weights from :meth:`save_weights` or :meth:`save` files, matched by position (shapes checked).

        A Keras 3 file (``*.weights.h5``, or a ``*.keras`` archive) is read by
        :func:`rnnlab.models.keras_weights.load_keras_weights` (needs h5py).
        """
        from . import keras_format; keras_format.load_weights(self, path)  # noqa: E702
