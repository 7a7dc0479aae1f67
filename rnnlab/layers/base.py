"""The Layer contract every rnnlab layer follows.

A layer is built once for an input shape, then runs ``forward`` and ``backward``:

* ``build(input_shape)`` creates the weights with :meth:`add_weight`. ``input_shape`` includes
  the batch dimension (``None`` when unknown): ``(None, T, D)``. Multi-input layers get a list.
* ``forward(inputs, training=False, mask=None, **kw)`` computes the output and keeps exactly
  what ``backward`` needs in ``self._cache``.
* ``backward(grad)`` consumes that cache, **overwrites** ``self.grads[name]`` for every weight
  and returns the gradient with respect to the inputs, in the same structure as the inputs
  (an array for one input, a list for several, e.g. ``[dx, dh0, dc0]`` when an RNN was given
  ``initial_state``). If the layer returned several outputs (``return_state``), ``grad`` is a
  list in the same structure; ``None`` entries mean zero.
* ``input_grad_needed`` (default True): a model sets it False on the lowest layer of its backward pass,
  whose input is data (or comes from layers without trainable weights). A layer may then skip computing
  dL/dx and return ``None`` (the recurrent layers, Bidirectional and Dense do: one GEMM less per step).
* ``compute_output_shape(input_shape)`` and ``compute_mask(inputs, mask)`` describe outputs.

Weights live in ``self.params`` (an ordered dict keyed with the Keras weight names:
``kernel``, ``recurrent_kernel``, ``bias``, ``embeddings``); insertion order is Keras'
``get_weights()`` order. Optimizers update these arrays **in place**, so a layer may keep
references to them; ``set_weights`` copies into the existing arrays, never rebinds.

Wrappers (Bidirectional, TimeDistributed) list their inner layers in ``self._sublayers``;
weights, counts and trainability then recurse through them.

Calling a layer on an array (``LSTM(64)(x)``) builds it for ``x.shape`` and runs ``forward``.
Calling it on symbolic tensors (``rnnlab.Input(...)`` or another layer's symbolic output) runs nothing: it
records a node of a functional graph and returns symbolic outputs (:mod:`rnnlab.models.functional`); a
layer called in several nodes is shared (one weight set, gradients summed over its calls).
"""
from __future__ import annotations

import contextvars
import math
import re
from typing import Any, Iterator

import numpy as np

from .. import backend, initializers

_LAYER_REGISTRY: dict[str, type] = {}


def register(cls):
    """Class decorator: make a layer class known to model loading (``from_config``)."""
    _LAYER_REGISTRY[cls.__name__] = cls
    return cls


def get_layer_class(name: str) -> type:
    try:
        return _LAYER_REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown layer class {name!r}; known: {sorted(_LAYER_REGISTRY)}") from None


def _snake(name: str) -> str:
    """Keras' ``to_snake_case``, so default names match Keras: ``SimpleRNN`` -> ``simple_rnn``, ``LSTMCell`` ->
    ``lstm_cell``, ``GlobalAveragePooling1D`` -> ``global_average_pooling1d``, ``Conv1D`` -> ``conv1d``."""
    s = re.sub(r"\W+", "", name)
    s = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", s)
    s = re.sub("([a-z])([A-Z])", r"\1_\2", s)
    return s.lower()


_BASE_KWARGS = {
    "name", "trainable", "dtype", "input_shape", "batch_input_shape", "batch_size",
    "input_dim", "input_length", "weights",
}

#: weight name -> the prefix of its ``<prefix>_regularizer`` / ``<prefix>_constraint`` argument (Keras' names)
_WEIGHT_ARG_PREFIX = {"kernel": "kernel", "recurrent_kernel": "recurrent", "bias": "bias", "embeddings": "embeddings"}
_REG_KWARGS = frozenset({f"{p}_{k}" for p in _WEIGHT_ARG_PREFIX.values() for k in ("regularizer", "constraint")}
                        | {"activity_regularizer"})
#: while a training step runs: the list the activity regularizers append their penalties to (rnnlab.regularizers)
_ACTIVITY_LOSSES: contextvars.ContextVar = contextvars.ContextVar("rnnlab_activity_losses", default=None)


#: what a float-input layer's dtype errors suggest
_FLOAT_INPUT_HINT = ("; float, bool and integer arrays are accepted and cast to floatx (one-hot data may be "
                     "bool or 0/1 integers), text must be turned into numbers first (e.g. "
                     "rnnlab.preprocessing.text.Tokenizer), and integer token ids need an Embedding layer first")


def format_shape(shape) -> str:
    if isinstance(shape, list):
        return "[" + ", ".join(format_shape(s) for s in shape) + "]"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class Layer:
    """Base class of all layers. See the module docstring for the contract."""

    #: extra keyword arguments this layer class accepts in ``__init__`` via ``**kwargs``
    _extra_kwargs: frozenset = frozenset()
    #: whether ``backward`` must return dL/dx; see the module docstring
    input_grad_needed: bool = True

    def __init__(self, name=None, trainable=True, dtype=None, **kwargs):
        unknown = set(kwargs) - _BASE_KWARGS - _REG_KWARGS - set(self._extra_kwargs)
        if unknown:
            raise TypeError(
                f"{type(self).__name__}: unexpected keyword argument(s) {sorted(unknown)}"
            )
        self.name = name if name is not None else backend.unique_name(_snake(type(self).__name__))
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"{type(self).__name__}: name must be a non-empty string, got {name!r}")
        self.trainable = bool(trainable)
        self.dtype = backend.standardize_dtype(dtype)
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self._sublayers: list[Layer] = []
        self.built = False
        self.input_shape = None
        self.output_shape = None
        self._cache: Any = None
        self._initial_weights = kwargs.get("weights")
        self.batch_input_shape = self._resolve_input_shape(kwargs)
        self._init_regularization(kwargs)

    def _init_regularization(self, kwargs):
        """Keras' ``*_regularizer`` / ``*_constraint`` / ``activity_regularizer`` arguments
        (:mod:`rnnlab.regularizers`, :mod:`rnnlab.constraints`); the engine applies them."""
        from .. import constraints as _constraints, regularizers as _regularizers
        for p in _WEIGHT_ARG_PREFIX.values():
            for k, mod in (("regularizer", _regularizers), ("constraint", _constraints)):
                arg = f"{p}_{k}"
                if arg in kwargs or not hasattr(self, arg):
                    setattr(self, arg, mod.get(kwargs.get(arg), f"{type(self).__name__} {arg}"))
        self.activity_regularizer = _regularizers.get(kwargs.get("activity_regularizer"),
                                                      f"{type(self).__name__} activity_regularizer")
        if self.activity_regularizer is not None:
            _regularizers.wrap_activity(self)

    def weight_regularizer(self, wname):
        """The regularizer of weight ``wname`` (``kernel_regularizer`` for ``kernel`` ...) or ``None``."""
        p = _WEIGHT_ARG_PREFIX.get(wname)
        return None if p is None else getattr(self, f"{p}_regularizer", None)

    def weight_constraint(self, wname):
        """The constraint of weight ``wname`` (``kernel_constraint`` for ``kernel`` ...) or ``None``."""
        p = _WEIGHT_ARG_PREFIX.get(wname)
        return None if p is None else getattr(self, f"{p}_constraint", None)

    # ----------------------------------------------------------------- shapes
    def _resolve_input_shape(self, kw) -> tuple | None:
        """Turn ``input_shape`` / ``batch_input_shape`` / ``input_dim`` / ``input_length``
        into a full batch input shape, as Keras 2 did. Subclasses with a different meaning of
        ``input_dim``/``input_length`` (RNNs, Embedding) override :meth:`_shape_from_dims`."""
        if kw.get("batch_input_shape") is not None:
            shape = tuple(kw["batch_input_shape"])
            return tuple(None if d is None else int(d) for d in shape)
        if kw.get("input_shape") is not None:
            shape = kw["input_shape"]
            if isinstance(shape, int):
                shape = (shape,)
            return (kw.get("batch_size"),) + tuple(None if d is None else int(d) for d in shape)
        dims = self._shape_from_dims(kw.get("input_dim"), kw.get("input_length"))
        if dims is not None:
            return (kw.get("batch_size"),) + dims
        return None

    def _shape_from_dims(self, input_dim, input_length):
        if input_dim is not None:
            return (int(input_dim),)
        return None

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_mask(self, inputs, mask=None):
        """The mask for this layer's output: by default the input mask passes through."""
        return mask

    # ---------------------------------------------------------------- weights
    def build(self, input_shape) -> None:
        """Create weights for ``input_shape`` (with batch dim). Subclasses call ``super().build``."""
        self.input_shape = input_shape
        self.built = True

    def add_weight(self, name: str, shape, initializer="zeros") -> np.ndarray:
        if _SHAPE_ONLY.get():   # rnnlab.io.shape_only(): a loader checking shapes, nothing allocated
            shape = tuple(int(s) for s in shape)
            if any(s < 0 for s in shape):
                raise ValueError(f"{self.name}: weight {name!r} would have a negative shape {shape}")
            self.params[name] = self.grads[name] = np.lib.stride_tricks.as_strided(
                np.zeros(1, self.dtype), shape, (0,) * len(shape), writeable=True)
            return self.params[name]
        _check_weight_memory(self, name, shape)
        init = initializers.get(initializer)
        value = np.asarray(init(tuple(int(s) for s in shape), self.dtype), dtype=self.dtype)
        if value.shape != tuple(shape):
            raise ValueError(f"{self.name}: initializer for {name!r} returned shape {value.shape}, expected {tuple(shape)}")
        self.params[name] = np.ascontiguousarray(value).reshape(value.shape)  # keeps 0-d weights 0-d
        self.grads[name] = np.zeros_like(self.params[name])
        return self.params[name]

    def _maybe_build(self, input_shape):
        if not self.built:
            _check_not_featureless(self, input_shape)
            self.build(input_shape)
            self.output_shape = self.compute_output_shape(input_shape)
            if self._initial_weights is not None:
                self.set_weights(self._initial_weights)
                self._initial_weights = None

    def iter_weights(self, prefix: str = "") -> Iterator[tuple[str, "Layer", str]]:
        """Yield ``(path, owner_layer, weight_name)`` for all weights, in Keras order.

        ``path`` is ``"outer/inner/kernel"``; the optimizer keys its state on it.
        """
        for wname in self.params:
            yield f"{prefix}{self.name}/{wname}", self, wname
        for sub in self._sublayers:
            yield from sub.iter_weights(f"{prefix}{self.name}/")

    def trainable_weight_refs(self):
        """Like :meth:`iter_weights` but only weights that train (honours ``trainable`` of wrappers)."""
        if not self.trainable:
            return
        for wname in self.params:
            yield f"{self.name}/{wname}", self, wname
        for sub in self._sublayers:
            for path, owner, wname in sub.trainable_weight_refs():
                yield f"{self.name}/{path}", owner, wname

    @property
    def weights(self) -> list:
        """All weights as :class:`rnnlab.variables.Variable` views (``.numpy()``, ``.shape``, ``.name``,
        ``.path``, ``.trainable``, ``assign``), in Keras order (that of :meth:`get_weights`)."""
        from ..variables import weights_of
        return weights_of(self)

    @property
    def trainable_weights(self) -> list:
        from ..variables import trainable_weights_of
        return trainable_weights_of(self)

    @property
    def non_trainable_weights(self) -> list:
        from ..variables import non_trainable_weights_of
        return non_trainable_weights_of(self)

    def __getattr__(self, name):
        # only reached when normal lookup fails: ``layer.kernel``, ``layer.embeddings`` ... as Variables
        params = self.__dict__.get("params")
        if params is not None and name in params:
            from ..variables import Variable
            return Variable(self, name, f"{self.__dict__.get('name')}/{name}",
                            self.__dict__.get("trainable", True)
                            and name not in getattr(self, "_non_trainable_params", ()))
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the weights in Keras ``get_weights()`` order and shapes."""
        return [owner.params[w].copy() for _, owner, w in self.iter_weights()]

    def set_weights(self, weights) -> None:
        """Load weights given in Keras ``get_weights()`` order and shapes (copied in place)."""
        if not self.built:
            raise RuntimeError(
                f"Layer '{self.name}' is not built yet, so its weight shapes are unknown: call it on "
                "data or give it input_shape= before set_weights()"
            )
        refs = list(self.iter_weights())
        if not isinstance(weights, (list, tuple)):
            raise TypeError(f"Layer '{self.name}': set_weights expects a list of arrays, got {type(weights).__name__}")
        if len(weights) != len(refs):
            names = [p.split("/", 1)[1] for p, _, _ in refs]
            raise ValueError(
                f"Layer '{self.name}': set_weights expects {len(refs)} arrays {names}, got {len(weights)}"
            )
        arrays = []
        for i, ((path, owner, wname), w) in enumerate(zip(refs, weights)):
            w = np.asarray(w)
            target = owner.params[wname]
            if w.shape != target.shape:
                raise ValueError(
                    f"Layer '{self.name}': weight {i} ('{path.split('/', 1)[1]}') expects shape "
                    f"{target.shape}, got {w.shape}"
                )
            if not np.issubdtype(w.dtype, np.number):
                raise TypeError(f"Layer '{self.name}': weight {i} ('{wname}') must be numeric, got dtype {w.dtype}")
            arrays.append(w)
        for (path, owner, wname), w in zip(refs, arrays):
            owner.params[wname][...] = w
        self._weights_changed()

    def _weights_changed(self) -> None:
        """Hook for layers that derive cached quantities from weights (called after set_weights)."""
        for sub in self._sublayers:
            sub._weights_changed()

    def count_params(self) -> int:
        if not self.built:
            raise ValueError(
                f"You tried to call count_params on layer '{self.name}', but the layer isn't built. "
                "Build it first (call it on data or give input_shape=)."
            )
        return int(sum(math.prod(owner.params[w].shape) for _, owner, w in self.iter_weights()))

    def count_trainable_params(self) -> int:
        return int(sum(math.prod(owner.params[w].shape) for _, owner, w in self.trainable_weight_refs()))

    def zero_grads(self) -> None:
        for _, owner, w in self.iter_weights():
            g = owner.grads.get(w)
            if isinstance(g, np.ndarray):
                g[...] = 0
            else:
                owner.grads[w] = np.zeros_like(owner.params[w])

    # ---------------------------------------------------------------- running
    def forward(self, inputs, training=False, mask=None):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, grad):
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def _need_cache(self):
        if self._cache is None:
            raise RuntimeError(
                f"Layer '{self.name}': backward() called without a preceding forward(training=True) "
                "(or the cache was already consumed)"
            )
        cache, self._cache = self._cache, None
        return cache

    def __call__(self, inputs, *args, training=False, mask=None, **kwargs):
        if _symbolic_call_args(inputs, kwargs):  # functional API: record a node (rnnlab.models.functional)
            from ..models.functional import symbolic_call
            _check_has_forward(self)
            return symbolic_call(self, inputs, *args, training=training, mask=mask, **kwargs)
        _check_has_forward(self)
        inputs = self._convert_inputs(inputs)
        shape = [(None,) + a.shape[1:] for a in inputs] if isinstance(inputs, list) else (None,) + inputs.shape[1:]
        self._maybe_build(shape)
        if not isinstance(inputs, list) and inputs.ndim and inputs.shape[0] == 0:
            empty = _empty_batch_result(self, inputs)   # a zero-size batch: an empty result, for every layer
            if empty is not None:
                return empty
        return self.forward(inputs, *args, training=training, mask=mask, **kwargs)

    def _convert_inputs(self, inputs):
        if isinstance(inputs, (list, tuple)):
            return [self._convert_one(a) for a in inputs]
        return self._convert_one(inputs)

    def _convert_one(self, a):
        """Array-like -> NumPy array. Layers taking floats cast float, bool and integer arrays (one-hot
        data built as ``np.zeros(..., dtype=bool)`` or 0/1 ints) to the layer dtype, as Keras casts to floatx;
        other dtypes (strings, objects) are a TypeError saying what to do."""
        if hasattr(a, "detach") and hasattr(a, "numpy"):  # torch tensor
            a = a.detach().cpu().numpy()
        elif hasattr(a, "numpy") and callable(a.numpy) and not isinstance(a, np.ndarray):  # Variable
            a = a.numpy()
        a = np.asarray(a)
        if not self._float_input:  # token ids: leave the dtype for the layer to check and report
            return a
        if a.dtype.kind == "f" and a.dtype != self.dtype:
            a = a.astype(self.dtype)
        elif a.dtype.kind in "biu":
            a = a.astype(self.dtype)
        elif a.dtype.kind != "f":  # strings, objects, dates (a layer that takes strings sets _float_input False)
            raise TypeError(f"Layer '{self.name}' ({type(self).__name__}): inputs must be numeric, got dtype "
                            f"{a.dtype}{_FLOAT_INPUT_HINT}")
        return a

    #: whether integer inputs are converted to floats (False for Embedding, which takes ids)
    _float_input = True

    # ------------------------------------------------------------- validation
    def _check_ndim(self, x, ndim, what="(batch, ...)", arg="inputs"):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"Layer '{self.name}': {arg} must be a NumPy array, got {type(x).__name__}")
        if x.ndim != ndim:
            raise ValueError(
                f"Input to layer '{self.name}' ({type(self).__name__}) is incompatible: expected "
                f"ndim={ndim} {what}, found ndim={x.ndim} with shape {x.shape}"
            )

    def _check_last_dim(self, x, expected, arg="inputs"):
        if expected is not None and x.shape[-1] != expected:
            raise ValueError(
                f"Input to layer '{self.name}' ({type(self).__name__}) is incompatible: expected "
                f"last dimension {expected} (the layer was built for input shape "
                f"{format_shape(self.input_shape)}), found shape {x.shape}"
            )

    def _check_float(self, x, arg="inputs"):
        if x.dtype.kind != "f":
            raise TypeError(f"Layer '{self.name}': {arg} must be floating point, got dtype {x.dtype}"
                            f"{_FLOAT_INPUT_HINT}")

    # ---------------------------------------------------------- serialization
    def get_config(self) -> dict:
        cfg = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        if self.batch_input_shape is not None:
            cfg["batch_input_shape"] = list(self.batch_input_shape)
        from .. import constraints as _constraints, regularizers as _regularizers
        for arg in sorted(_REG_KWARGS):
            obj = getattr(self, arg, None)
            if obj is not None:
                cfg[arg] = (_regularizers if arg.endswith("regularizer") else _constraints).serialize(obj)
        return cfg

    @classmethod
    def from_config(cls, config: dict) -> "Layer":
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} built={self.built}>"

    # ------------------------------------------------------- functional API
    def _node_attr(self, attr, what):
        nodes = self.__dict__.get("_inbound_nodes")
        if not nodes:
            raise ValueError(f"Layer '{self.name}' has never been called on a symbolic tensor, so it has no "
                                 f"defined {what} (call it on rnnlab.Input(...) or another layer's output first)")
        return getattr(nodes[0], attr)()

    @property
    def input(self):
        """The symbolic input tensor(s) of the layer's first call in a functional graph (as Keras ``layer.input``)."""
        return self._node_attr("call_input", "input")

    @property
    def output(self):
        """The symbolic output tensor(s) of the layer's first call in a functional graph (``layer.output``)."""
        return self._node_attr("call_output", "output")


def _symbolic_call_args(inputs, kwargs) -> bool:
    """Whether a call is on symbolic tensors (functional API) rather than arrays."""
    if getattr(inputs, "_is_symbolic", False):
        return True
    if isinstance(inputs, (list, tuple)) and inputs and any(getattr(a, "_is_symbolic", False) for a in inputs):
        return True
    if isinstance(inputs, dict) and any(getattr(a, "_is_symbolic", False) for a in inputs.values()):
        return True
    st = kwargs.get("initial_state")
    return isinstance(st, (list, tuple)) and any(getattr(a, "_is_symbolic", False) for a in st)


def _check_has_forward(layer):
    """A subclass written the Keras way (only ``call()``) gets a clear error: rnnlab has no autodiff."""
    cls = type(layer)
    if cls.forward is Layer.forward and "call" in dir(cls):
        raise TypeError(
            f"Layer '{layer.name}' ({cls.__name__}) defines call() but not forward()/backward(). rnnlab has no "
            "automatic differentiation: a custom layer implements forward(inputs, training=False, mask=None) "
            "(keep what backward needs in self._cache) and backward(grad) (fill self.grads[name] for every weight "
            "and return dL/dinputs); check your backward with rnnlab.testing.check_layer_gradients(layer, x). "
            "See docs/functional.md, 'Writing your own layer'.")


#: True inside rnnlab.io.shape_only(): add_weight gives zero-stride views instead of allocating
_SHAPE_ONLY = contextvars.ContextVar("rnnlab_shape_only", default=False)


def _check_weight_memory(layer, name, shape):
    """A weight and its gradient that would not fit in the available memory: a clear error before allocating."""
    n = 1
    for s in shape:
        n *= int(s)
    nbytes = 2 * n * np.dtype(layer.dtype).itemsize
    from ..io import MIN_CHECKED_BYTES, check_allocation
    if nbytes >= MIN_CHECKED_BYTES:
        check_allocation(nbytes, f"layer '{layer.name}' weight '{name}' {tuple(int(s) for s in shape)} "
                                 f"{np.dtype(layer.dtype).name} (with its gradient)")


def _check_not_featureless(layer, input_shape):
    """A layer whose feature axis (the last) is 0: a clear error instead of a model that silently computes with
    nothing (``LSTM`` on ``(batch, time, 0)``). Not for token-id layers (an ``Embedding``'s last axis is time)."""
    if not (isinstance(input_shape, tuple) and len(input_shape) >= 2 and input_shape[-1] == 0):
        return
    from .embedding import Embedding
    if not isinstance(layer, Embedding):
        raise ValueError(f"Layer '{layer.name}' ({type(layer).__name__}): the input has 0 features (shape "
                         f"{format_shape(input_shape)}); the last axis must be at least 1")


def _empty_batch_result(layer, inputs):
    """The output of ``layer`` for a zero-size batch: zeros of :meth:`Layer.compute_output_shape` (a list of them
    for several outputs), the same empty result a model's ``predict`` gives; None when the layer does not define
    its output shape or it is not fully known (the layer's forward then runs)."""
    if type(layer).compute_output_shape is Layer.compute_output_shape:
        return None
    out = layer.compute_output_shape((0,) + tuple(inputs.shape[1:]))
    shapes = out if isinstance(out, list) else [out]
    if not all(isinstance(sh, tuple) and all(isinstance(d, (int, np.integer)) for d in sh[1:]) for sh in shapes):
        return None
    arrays = [np.zeros((0,) + tuple(int(d) for d in sh[1:]), dtype=layer.dtype) for sh in shapes]
    return arrays if isinstance(out, list) else arrays[0]
