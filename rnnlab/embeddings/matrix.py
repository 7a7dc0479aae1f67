"""The weight matrix of an Embedding layer built from pretrained word vectors.

For a tokenizer's ``word_index`` (word -> id, ids from 1; id 0 is padding):

    M[0] = 0
    M[i] = vectors[word]           if the word has a vector
    M[i] ~ U(-0.05, 0.05)          otherwise (what Keras' Embedding "uniform" initializer draws),
                                   or that row of ``initializer((num_words, dim))`` when one is given

``M`` has ``num_words`` rows (default ``max id + 1``; as Keras' ``Tokenizer(num_words=n)``, ids ``>= n`` are
left out) and the vectors' dimension as columns.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from .keyed_vectors import KeyedVectors

__all__ = ["embedding_matrix"]


def _lookup(vectors):
    if isinstance(vectors, KeyedVectors):
        return vectors.vector_size, (lambda w: vectors.vectors[vectors.key_to_index[w]] if w in vectors else None)
    if isinstance(vectors, dict):
        if not vectors:
            raise ValueError("embedding_matrix: the vectors dict is empty")
        dims = {np.shape(v) for v in vectors.values()}
        if len(dims) != 1 or len(next(iter(dims))) != 1:
            raise ValueError(f"embedding_matrix: the vectors dict must map words to 1-D vectors of one length, "
                             f"got shapes {sorted(dims)[:5]}")
        return next(iter(dims))[0], vectors.get
    raise TypeError(f"embedding_matrix: vectors must be KeyedVectors or a dict word -> vector, "
                    f"got {type(vectors).__name__}")


def embedding_matrix(vectors, word_index, num_words=None, embedding_dim=None, dtype=None, seed=None,
                     lowercase_fallback=False, initializer=None):
    """Build the (num_words, dim) Embedding weight for ``word_index`` from ``vectors``.

    Args:
        vectors: :class:`KeyedVectors` or a dict word -> 1-D vector.
        word_index: dict word -> int id >= 1 (a tokenizer's ``word_index``; 0 is reserved for padding).
        num_words: rows of the matrix; ids ``>= num_words`` are ignored. Default: largest id + 1.
        embedding_dim: if given, must equal the vectors' dimension (a clear error otherwise).
        dtype: float dtype (default: :func:`rnnlab.floatx`).
        seed: seed for the U(-0.05, 0.05) rows of unknown words (default: the library generator
            :func:`rnnlab.backend.rng`, so ``set_random_seed`` makes it reproducible).
        lowercase_fallback: look up ``word.lower()`` when ``word`` itself has no vector.
        initializer: an :mod:`rnnlab.initializers` initializer (or its name); if given, the rows of unknown
            words are the rows of ``initializer((num_words, dim), dtype)`` (as if the layer had been built
            with it and the known rows overwritten), instead of U(-0.05, 0.05) draws. ``seed`` is then unused.

    Returns ``(matrix, unknown_words)``: ``unknown_words`` lists (in id order) the words that got a
    random row.
    """
    dim, get = _lookup(vectors)
    if embedding_dim is not None and int(embedding_dim) != dim:
        raise ValueError(f"embedding_matrix: embedding_dim={embedding_dim} but the vectors have dimension {dim}")
    if not isinstance(word_index, dict):
        raise TypeError(f"embedding_matrix: word_index must be a dict word -> id, got {type(word_index).__name__}")
    for w, i in word_index.items():
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 1:
            raise ValueError(f"embedding_matrix: word_index[{w!r}] = {i!r}; ids must be ints >= 1 "
                             "(0 is the padding row)")
    if num_words is None:
        num_words = (max(word_index.values()) + 1) if word_index else 1
    if isinstance(num_words, bool) or not isinstance(num_words, (int, np.integer)) or num_words < 1:
        raise ValueError(f"embedding_matrix: num_words must be a positive int, got {num_words!r}")
    dtype = backend.standardize_dtype(dtype)
    rng = backend.rng() if seed is None else np.random.default_rng(seed)
    M = np.zeros((int(num_words), dim), dtype=dtype)
    init_rows = None
    if initializer is not None:
        from .. import initializers

        init_rows = np.asarray(initializers.get(initializer)((int(num_words), dim), dtype), dtype=dtype)
    unknown = []
    for w, i in sorted(word_index.items(), key=lambda kv: kv[1]):
        if i >= num_words:
            continue
        v = get(w)
        if v is None and lowercase_fallback:
            v = get(w.lower())
        if v is None:
            unknown.append(w)
            M[i] = rng.uniform(-0.05, 0.05, dim) if init_rows is None else init_rows[i]
        else:
            M[i] = v
    return M, unknown
