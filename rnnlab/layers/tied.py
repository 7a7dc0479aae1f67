"""Weight tying for language models: the output layer reuses the input embedding matrix.

With an embedding matrix E of shape (V, D) (row v = the vector of word v), a tied output layer computes
the logits of the next word from a hidden vector h (..., D) as::

    z = h E^T + b                 z (..., V), b (V,) the only weight of the output layer

(Inan et al. 2017, Press & Wolf 2017). E is used twice, so its gradient is the sum of both uses::

    dL/dE = (scatter of dL/dy_emb into the rows of the input ids)      <- the Embedding lookup
          + g^T h                                                      <- the output layer, g = dL/dz (N, V), h (N, D)
    dL/db = sum of g over all leading axes,       dL/dh = g E

In a Sequential the layers run backward last to first, so the output layer (:class:`TiedDense`) runs first:
it stores its dense (V, D) term ``g^T h`` on the embedding layer, and :class:`TiedEmbedding`'s backward adds
its sparse rows to that and writes the sum to ``grads["embeddings"]`` (dense; one optimizer update of E per
step, with the summed gradient). The output layer has no kernel of its own, so the model counts E once:
tying a V x D output layer saves V*D parameters.

A tied pair is linked by name: ``TiedDense(tied_to="embedding")`` looks up the ``TiedEmbedding`` called
``"embedding"`` in the model when :func:`link_tied_layers` runs (the model builders and loaders of the
language-model task call it; after ``rnnlab.load_model`` call it yourself). The hidden size fed to
``TiedDense`` must equal the embedding size D (e.g. the last recurrent layer has D units).
"""
from __future__ import annotations

import numpy as np

from .. import initializers
from ..backend import RowSparseGrad
from .base import Layer, register
from .embedding import Embedding


@register
class TiedEmbedding(Embedding):
    """An :class:`~rnnlab.layers.Embedding` whose matrix is also the kernel of a :class:`TiedDense` output layer.

    Forward is the plain lookup. Backward adds the output layer's pending (V, D) gradient (if any) to the
    lookup's row gradient, so ``grads["embeddings"]`` holds the total dL/dE (a dense array then).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pending = None  # dL/dE from the tied output layer of the current step

    def add_output_gradient(self, g):
        """Called by :class:`TiedDense` backward with its (V, D) gradient term."""
        self._pending = g if self._pending is None else self._pending + g

    def backward(self, grad):
        out = super().backward(grad)
        pending, self._pending = self._pending, None
        if pending is not None:
            sparse = self.grads["embeddings"]
            total = np.array(pending, dtype=self.params["embeddings"].dtype, copy=True)
            if isinstance(sparse, RowSparseGrad):
                total[sparse.indices] += sparse.values       # indices are unique (sorted) rows
            else:
                total += sparse
            self.grads["embeddings"] = total
        return out


@register
class TiedDense(Layer):
    """Output layer whose kernel is the transpose of a :class:`TiedEmbedding`'s matrix: ``z = h E^T + b``.

    Args: ``tied_to`` (name of the TiedEmbedding in the same model), ``use_bias`` (default True),
    ``bias_initializer``. Input (..., D) -> output (..., V); weights: ``bias`` (V,) only.
    """

    def __init__(self, tied_to, use_bias=True, bias_initializer="zeros", units=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(tied_to, str) or not tied_to:
            raise TypeError(f"TiedDense: tied_to must be the name of a TiedEmbedding layer, got {tied_to!r}")
        self.tied_to = tied_to
        self.use_bias = bool(use_bias)
        self.bias_initializer = initializers.get(bias_initializer)
        self.units = None if units is None else int(units)   # V, known once linked (kept in the config)
        self.source = None

    def link(self, embedding):
        """Use ``embedding`` (a built TiedEmbedding) as the tied matrix."""
        if not isinstance(embedding, TiedEmbedding):
            raise TypeError(f"TiedDense '{self.name}': tied_to={self.tied_to!r} must name a TiedEmbedding, got "
                            f"{type(embedding).__name__}")
        if self.units is not None and self.units != embedding.input_dim:
            raise ValueError(f"TiedDense '{self.name}': has {self.units} outputs but the embedding "
                             f"'{embedding.name}' has {embedding.input_dim} rows")
        self.units = embedding.input_dim
        self.source = embedding

    def build(self, input_shape):
        if self.units is None:
            raise ValueError(f"TiedDense '{self.name}': the vocabulary size is unknown; give units= or link it to "
                             f"its embedding first (rnnlab.layers.tied.link_tied_layers(model))")
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def _matrix(self, x):
        if self.source is None:
            raise RuntimeError(f"TiedDense '{self.name}' is not linked to its embedding {self.tied_to!r}; call "
                               "rnnlab.layers.tied.link_tied_layers(model) after building or loading the model")
        E = self.source.params["embeddings"]
        if x.shape[-1] != E.shape[1]:
            raise ValueError(f"Input to layer '{self.name}' (TiedDense) is incompatible: the tied embedding has "
                             f"{E.shape[1]} features, found input shape {x.shape} (the layer before must have "
                             f"{E.shape[1]} units)")
        return E

    def forward(self, x, training=False, mask=None):
        if not isinstance(x, np.ndarray) or x.ndim < 2:
            self._check_ndim(np.asarray(x), 2, "(batch, ..., features)")
        E = self._matrix(x)
        x2 = x.reshape(-1, x.shape[-1])
        z = x2 @ E.T
        if self.use_bias:
            z += self.params["bias"]
        self._cache = (x2, x.shape)
        return z.reshape(x.shape[:-1] + (E.shape[0],))

    def backward(self, grad):
        x2, shape = self._need_cache()
        E = self.source.params["embeddings"]
        g = np.asarray(grad).reshape(-1, E.shape[0])
        if self.use_bias:
            np.sum(g, axis=0, out=self.grads["bias"])
        if self.source.trainable:
            self.source.add_output_gradient(g.T @ x2)
        return (g @ E).reshape(shape)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(tied_to=self.tied_to, use_bias=self.use_bias, units=self.units,
                   bias_initializer=initializers.serialize(self.bias_initializer))
        return cfg


def link_tied_layers(model):
    """Link every :class:`TiedDense` of ``model`` (a Sequential) to the TiedEmbedding it names; returns ``model``."""
    by_name = {layer.name: layer for layer in model.layers}
    for layer in model.layers:
        if isinstance(layer, TiedDense):
            src = by_name.get(layer.tied_to)
            if src is None:
                raise ValueError(f"TiedDense '{layer.name}': no layer named {layer.tied_to!r} in the model "
                                 f"(layers: {list(by_name)})")
            layer.link(src)
    return model
