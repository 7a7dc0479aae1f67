"""Data-parallel Word2Vec training (local SGD with periodic model averaging) on :mod:`rnnlab.distributed`'s
communicator. It lives beside :class:`~rnnlab.embeddings.Word2Vec` because it drives the model's own corpus
chunks and SGD step; :func:`rnnlab.distributed.train_word2vec` is its public entry point."""
from __future__ import annotations

import math
import time

import numpy as np


def train_word2vec(model, ctx, epochs):
    """Data-parallel :meth:`rnnlab.embeddings.Word2Vec.train` (called by it under ``mpiexec``).

    Scheme (local SGD with periodic model averaging): every rank holds the whole vocabulary and the encoded
    corpus; the corpus chunks of every epoch are dealt round robin (chunk ``c`` to rank ``c mod N``). Each
    rank runs the ordinary chunked SGD on its chunks (one thread; noise and subsampling drawn from
    ``default_rng([seed, rank])``) and, after every ``model.sync_words`` of its own corpus words and at the end,
    all ranks replace ``syn0``/``syn1neg`` by their mean (two in-place ``Allreduce``). The learning rate decays
    with the rank's own progress through its share. Rank 0's starting vectors are broadcast first.
    Returns ``(trained words of all ranks, seconds)``."""
    if model.wv is None:
        raise ValueError("Word2Vec: call build_vocab(sentences) before train()")
    X, Y = model.wv.vectors, model.syn1neg
    ctx.check_same([len(model.counts), model.vector_size, int(model.corpus_word_count)],
                   "the word2vec vocabulary size, vector size and corpus length (every rank must read the same "
                   "corpus with the same settings)")
    ctx.broadcast_arrays([X, Y])
    chunks = model._chunks()
    jobs = [(e, c) for e in range(epochs) for c in chunks][ctx.rank::ctx.size]
    words = np.array([c[3] - c[2] for _, c in jobs], np.int64)
    local_total = max(int(words.sum()), 1)
    # the same number of averaging rounds on every rank: rounds of J local chunks
    mean_chunk = max(float(np.mean([c[3] - c[2] for c in chunks])), 1.0)
    J = max(1, int(round(model.sync_words / mean_chunk)))
    n_jobs = np.array([len(jobs)], np.int64)
    rounds = math.ceil(int(ctx.allreduce_(n_jobs, "max")[0]) / J)
    rng = np.random.default_rng([model.seed, ctx.rank])
    start = time.perf_counter()
    done, loss_sum, syncs, sync_s = 0, 0.0, 0, 0.0
    inv = 1.0 / ctx.size
    for k in range(max(rounds, 1)):
        failed = np.zeros(1, np.int64)
        err = None
        for e, c in jobs[k * J:(k + 1) * J]:
            frac = min(done / local_total, 1.0)
            a = max(model.alpha - (model.alpha - model.min_alpha) * frac, model.min_alpha)
            try:
                loss = model._train_chunk(c, a, rng)
            except FloatingPointError as ex:
                err, failed[0] = ex, 1
                break
            done += c[3] - c[2]
            if e == epochs - 1:
                loss_sum += loss
        if ctx.allreduce_(failed, "max")[0]:  # a diverged chunk on any rank stops every rank
            raise err if err is not None else FloatingPointError(
                "Word2Vec diverged on another MPI rank (its message is in that rank's output); stopped on every "
                "rank before averaging")
        t0 = time.perf_counter()
        for arr in (X, Y):
            ctx.allreduce_(arr)
            arr *= arr.dtype.type(inv)
        sync_s += time.perf_counter() - t0
        syncs += 1
    secs = time.perf_counter() - start
    total = epochs * model.corpus_word_count
    model.train_seconds = secs
    model.words_per_second = total / secs if secs > 0 else float("inf")
    model.training_loss = float(ctx.allreduce_(np.array([loss_sum]))[0])
    model.sync_count, model.sync_seconds = syncs, sync_s
    return total, secs
