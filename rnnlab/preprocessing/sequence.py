"""``keras.preprocessing.sequence`` names: ``pad_sequences`` (from :mod:`rnnlab.text`, Keras' results),
and ``make_sampling_table`` (Keras' formula). For skip-gram pairs see :mod:`rnnlab.embeddings`.

``make_sampling_table(size, sampling_factor=1e-5)``: the probability of keeping the word of frequency rank ``i``
(a Zipf's-law estimate; rank 0 is treated as rank 1), as in Keras: with ``gamma = 0.577``,
``f_i = sampling_factor * (i (ln i + gamma) + 1/2 - 1 / (12 i))`` and ``p_i = min(1, f_i / sqrt(f_i))``.
"""
from __future__ import annotations

import numpy as np

from ..text.sequence import pad_sequences  # noqa: F401

__all__ = ["pad_sequences", "make_sampling_table"]


def make_sampling_table(size, sampling_factor=1e-5):
    """Keras' word-rank sampling table: entry ``i`` is the probability of sampling the ``i``-th most common word."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
        raise ValueError(f"make_sampling_table: size must be a positive int, got {size!r}")
    gamma = 0.577
    rank = np.arange(size, dtype=np.float64)
    rank[0] = 1
    inv_fq = rank * (np.log(rank) + gamma) + 0.5 - 1.0 / (12.0 * rank)
    f = sampling_factor * inv_fq
    return np.minimum(1.0, f / np.sqrt(f))

