"""Embedding: integer ids -> dense vectors, with a row-sparse weight gradient.

Forward, with ``W`` = ``embeddings`` of shape (input_dim, output_dim):

    y[b, ..., :] = W[ids[b, ...], :]          ids (B, ...) int  ->  y (B, ..., output_dim)

This is ``one_hot(ids, input_dim) @ W`` without building the one-hot matrix.

Backward, with g = dL/dy flattened to (N, output_dim) and the ids flattened to (N,):

    dL/dW[v, :] = sum of g[n, :] over all n with ids[n] == v

Only rows that occur are non-zero, so ``grads["embeddings"]`` is a
:class:`rnnlab.backend.RowSparseGrad` with the unique ids (sorted) and their summed rows.
The sum uses one stable argsort of the ids. When most ids in the batch are distinct (a large
vocabulary), each id's first sorted row is gathered and the few repeats are added with ``np.add.at``
(measured 1.46 -> 0.33 ms for 32 x 80 ids from 20000 and 128 features, 1 thread); when repeats are
the majority (a small vocabulary), ``np.add.reduceat`` over the sorted rows (1.3 ms for 5120 ids from
60, where the add.at route takes 5.9 ms). Both beat a dense one-hot GEMM and a plain ``np.add.at``.
Ids have no gradient: ``backward`` returns ``None``.

``mask_zero=True`` reserves id 0 for padding: ``compute_mask`` gives ``ids != 0`` (so
``input_dim`` must be the vocabulary size + 1). Keras 2's ``input_length=T`` means input shape (T,).
"""
from __future__ import annotations

import weakref

import numpy as np

from .. import _native, initializers
from ..backend import RowSparseGrad
from .base import Layer, register


@register
class Embedding(Layer):
    """Turns non-negative integer ids into dense vectors of size ``output_dim``.

    Args: ``input_dim`` (vocabulary size, ids in ``[0, input_dim)``), ``output_dim``,
    ``embeddings_initializer`` (Keras default ``"uniform"``, U(-0.05, 0.05)), ``mask_zero``,
    ``input_length`` (Keras 2: fixed sequence length), plus the base ``name``, ``trainable``,
    ``dtype``, ``weights`` (the ``(input_dim, output_dim)`` matrix, as Keras 3, or ``[matrix]``, as Keras 2),
    ``input_shape``/``batch_input_shape``.
    Weight: ``embeddings`` (input_dim, output_dim); ``layer.embeddings`` is it as a Variable.
    """

    _float_input = False
    #: ``(weakref to the output, weakref to the embeddings matrix, flat ids)`` of the last inference lookup of any
    #: Embedding
    last_lookup = None

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", mask_zero=False,
                 input_length=None, **kwargs):
        for arg, val in (("input_dim", input_dim), ("output_dim", output_dim)):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val <= 0:
                raise ValueError(f"Embedding: {arg} must be a positive int, got {val!r}")
        if input_length is not None and (isinstance(input_length, bool) or not isinstance(input_length, (int, np.integer))
                                         or input_length <= 0):
            raise ValueError(f"Embedding: input_length must be a positive int or None, got {input_length!r}")
        w = kwargs.get("weights")
        if w is not None:
            # Keras 3 takes the matrix itself (weights=matrix), Keras 2 a list (weights=[matrix]): accept both
            if hasattr(w, "detach") and hasattr(w, "numpy"):
                w = w.detach().cpu().numpy()
            if isinstance(w, (list, tuple)) and len(w) == 1:
                w = w[0]
            w = np.asarray(w)
            if w.dtype.kind not in "biuf" or w.shape != (int(input_dim), int(output_dim)):
                raise ValueError(f"Embedding: weights must be one ({int(input_dim)}, {int(output_dim)}) matrix "
                                 f"(input_dim, output_dim), or a list holding it; got dtype {w.dtype}, "
                                 f"shape {w.shape}")
            kwargs["weights"] = [w]
        super().__init__(input_length=input_length, **kwargs)
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.input_length = None if input_length is None else int(input_length)
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.mask_zero = bool(mask_zero)

    @classmethod
    def from_vectors(cls, vectors, tokenizer, trainable=True, num_words=None, output_dim=None,
                     embeddings_initializer="uniform", mask_zero=False, lowercase_fallback=False, **kwargs):
        """An Embedding whose rows start from pretrained word vectors, for a tokenizer's vocabulary.

        Row ``i`` of the ``(num_words, dim)`` matrix is the vector of the word with id ``i`` in
        ``tokenizer.word_index``; row 0 (padding) is zeros; words without a vector get the rows that
        ``embeddings_initializer`` (Keras' default ``"uniform"``, U(-0.05, 0.05)) draws for them, as if the
        layer had been built as usual and the known rows overwritten.

        Args:
            vectors: :class:`rnnlab.embeddings.KeyedVectors` or a dict word -> 1-D vector.
            tokenizer: a fitted :class:`rnnlab.text.Tokenizer` (its ``word_index``, and ``num_words`` when
                set) or a ``word_index`` dict (word -> id >= 1).
            trainable: ``False`` freezes the matrix (``summary()`` counts it as non-trainable).
            num_words: rows (ids ``>= num_words`` are left out); default ``tokenizer.num_words`` or the
                largest id + 1.
            output_dim: if given, must equal the vectors' dimension (``ValueError`` otherwise).
            lowercase_fallback: look up ``word.lower()`` when ``word`` has no vector.
            **kwargs: other :class:`Embedding` arguments (``name``, ``input_length``, ...).

        The words that got a random row are in ``layer.oov_words`` (id order) and their number in
        ``layer.oov_count``; ``layer.pretrained_count`` rows came from ``vectors``.
        """
        from ..embeddings.matrix import embedding_matrix

        if "weights" in kwargs:
            raise ValueError("Embedding.from_vectors: weights= cannot be combined with vectors")
        if isinstance(tokenizer, dict):
            word_index = tokenizer
        elif isinstance(getattr(tokenizer, "word_index", None), dict):
            word_index = tokenizer.word_index
            if num_words is None and getattr(tokenizer, "num_words", None):
                num_words = int(tokenizer.num_words)
        else:
            raise TypeError(f"Embedding.from_vectors: tokenizer must be a fitted Tokenizer or a word_index dict, "
                            f"got {type(tokenizer).__name__}")
        if not word_index:
            raise ValueError("Embedding.from_vectors: the tokenizer's word_index is empty (fit it on texts first)")
        init = initializers.get(embeddings_initializer)
        matrix, oov = embedding_matrix(vectors, word_index, num_words=num_words, embedding_dim=output_dim,
                                       dtype=kwargs.get("dtype"), lowercase_fallback=lowercase_fallback,
                                       initializer=init)
        layer = cls(matrix.shape[0], matrix.shape[1], embeddings_initializer=init, mask_zero=mask_zero,
                    trainable=trainable, weights=[matrix], **kwargs)
        layer.oov_words = oov
        layer.oov_count = len(oov)
        in_range = sum(1 for i in word_index.values() if i < matrix.shape[0])
        layer.pretrained_count = in_range - len(oov)
        return layer

    def _shape_from_dims(self, input_dim, input_length):
        # input_dim of an Embedding is the vocabulary size, not a feature width
        return (int(input_length),) if input_length is not None else None

    def build(self, input_shape):
        self.add_weight("embeddings", (self.input_dim, self.output_dim), self.embeddings_initializer)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return np.asarray(inputs) != 0

    def _check_ids(self, ids):
        if not isinstance(ids, np.ndarray):
            raise TypeError(f"Layer '{self.name}': inputs must be a NumPy array of integer ids, got {type(ids).__name__}")
        if ids.dtype.kind not in "iu":
            raise TypeError(
                f"Layer '{self.name}' (Embedding) expects integer token ids, got dtype {ids.dtype}; "
                "convert with ids.astype('int64') (ids are indices, not features)"
            )
        if ids.ndim < 1:
            raise ValueError(f"Layer '{self.name}' (Embedding) expects ids of shape (batch, ...), got a scalar")
        if self.input_length is not None and (ids.ndim != 2 or ids.shape[1] != self.input_length):
            raise ValueError(f"Layer '{self.name}' (Embedding) was declared with input_length={self.input_length}: "
                             f"expected ids of shape (batch, {self.input_length}), got shape {ids.shape}")
        if ids.size:
            lo, hi = ids.min(), ids.max()
            if lo < 0 or hi >= self.input_dim:
                bad = int(lo) if lo < 0 else int(hi)
                raise ValueError(
                    f"Layer '{self.name}' (Embedding): id {bad} is out of range [0, {self.input_dim}) "
                    f"(input_dim={self.input_dim}); raise input_dim to the vocabulary size"
                    + (" + 1 (id 0 is padding with mask_zero=True)" if self.mask_zero else "")
                )

    def forward(self, ids, training=False, mask=None):
        self._check_ids(ids)
        flat = ids.reshape(-1)
        out = np.take(self.params["embeddings"], flat, axis=0)
        self._cache = (flat, ids.shape)
        out = out.reshape(ids.shape + (self.output_dim,))
        if not training:
            # which rows this output holds, for a next layer that can take its input projection from rows of a
            # cached table (the recurrent layers' inference path, rnnlab.layers.fused_native); that layer
            # checks the rows themselves before using it, so a modified output only costs the check
            Embedding.last_lookup = (weakref.ref(out), weakref.ref(self.params["embeddings"]), flat)
        return out

    def backward(self, grad):
        flat, shape = self._need_cache()
        g = np.asarray(grad)
        expected = shape + (self.output_dim,)
        if g.shape != expected:
            raise ValueError(f"Layer '{self.name}' (Embedding): backward expects a gradient of shape {expected}, "
                             f"got {g.shape}")
        g = g.reshape(-1, self.output_dim)
        w = self.params["embeddings"]
        if flat.size == 0:
            self.grads["embeddings"] = RowSparseGrad(np.zeros(0, np.intp), np.zeros((0, self.output_dim), w.dtype), w.shape)
            return None
        fast = _native.embedding_grad(flat, g, w.shape[0]) if g.dtype == w.dtype else None
        if fast is not None:      # the compiled kernel (rnnlab/_native): the same sums in the same order, one pass
            self.grads["embeddings"] = RowSparseGrad(fast[0].astype(np.intp, copy=False), fast[1], w.shape)
            return None
        order = np.argsort(flat, kind="stable")
        ids_sorted = flat[order]
        first = np.concatenate(([True], ids_sorted[1:] != ids_sorted[:-1]))
        starts = np.flatnonzero(first)
        g_sorted = g[order]
        n_dup = flat.size - starts.size
        if 2 * n_dup < flat.size:
            # mostly distinct ids (a large vocabulary): take each id's first row, add the few repeats
            values = g_sorted[starts]
            if n_dup:
                dup = ~first
                np.add.at(values, (np.cumsum(first) - 1)[dup], g_sorted[dup])
        else:
            values = np.add.reduceat(g_sorted, starts, axis=0)
        values = values.astype(w.dtype, copy=False)
        self.grads["embeddings"] = RowSparseGrad(ids_sorted[starts].astype(np.intp, copy=False), values, w.shape)
        return None

    def get_config(self):
        cfg = super().get_config()
        cfg.update(input_dim=self.input_dim, output_dim=self.output_dim,
                   embeddings_initializer=initializers.serialize(self.embeddings_initializer),
                   mask_zero=self.mask_zero)
        return cfg
