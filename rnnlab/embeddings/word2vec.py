"""word2vec (Mikolov et al. 2013) with negative sampling, written by hand on NumPy.

Two models, the argument names of gensim's ``Word2Vec``:

* **CBOW** (``sg=0``): predict the centre word from the *mean* of its context vectors
  (gensim's ``cbow_mean=1``).
* **skip-gram** (``sg=1``): predict the centre word from each context word separately.

Parameters: ``syn0`` = input vectors ``X`` (V, D) (the word vectors kept at the end) and
``syn1neg`` = output vectors ``Y`` (V, D). With ``s(z) = 1 / (1 + exp(-z))``, the loss of one
prediction of target ``t`` from a hidden vector ``h`` with negatives ``n_1..n_K`` is

    L = -log s(h . Y[t]) - sum_k log s(-h . Y[n_k])

and, writing ``f_k = h . Y[t_k]`` with labels ``l_0 = 1`` (the target) and ``l_k = 0`` (negatives),

    dL/df_k = s(f_k) - l_k,   dL/dY[t_k] = (s(f_k) - l_k) h,   dL/dh = sum_k (s(f_k) - l_k) Y[t_k].

CBOW: ``h_n = (1/c_n) sum_{j in ctx(n)} X[w_j]``, so the exact gradient of a context row is
``dL/dh_n / c_n``; like word2vec.c and gensim (``cbow_mean=1``), training applies the full ``dL/dh_n`` to
every context row (``c_n`` times the gradient; :func:`batch_loss_and_grads` offers both). Skip-gram: ``h = X[w_j]`` for every pair (input ``j``,
target centre ``n``). SGD step: ``param -= alpha * dL/dparam``.

Sampling, as in word2vec.c / gensim:

* negatives from ``count(w) ** ns_exponent`` (0.75), a negative equal to the target is skipped;
* subsampling: a word with count ``c`` is kept with probability
  ``min(1, (sqrt(c / (sample * N)) + 1) * sample * N / c)`` (``N`` = in-vocabulary words), drawn anew
  each epoch, before the windows are formed;
* dynamic windows: every centre word uses a window ``r = window - b`` with ``b`` uniform in
  ``[0, window)``; windows never cross sentence ends;
* the learning rate decays linearly from ``alpha`` to ``min_alpha`` over ``epochs x`` words.

How it is batched (no per-pair Python loop): the text is cut into chunks of whole sentences of about
``batch_words`` words. Within a chunk the kept words form one array ``w`` (N,); the input vectors around
every centre are a strided (N, 2*window + 1, D) view of ``syn0[w]`` and all scores of a chunk come from a few
batched matrix products (see :func:`batch_loss_and_grads`). The updates are summed per row and scattered
back into ``syn0`` / ``syn1neg`` once per chunk (minibatch "Hogwild" SGD; with ``workers > 1`` threads
update the shared arrays without locks, as gensim's threads do).

Differences from gensim (4.4), all deliberate:

* skip-gram: the ``negative`` noise words are drawn once per *centre word* and used by every pair of that
  centre; each pair still computes its own score ``X[input] . Y[noise]`` and its own sigmoid, so every
  pair sees ``negative`` noise words from the right distribution and the expected gradient is gensim's
  (gensim draws them per pair). Sharing them per *input* word with one sigmoid weighted by the pair
  count (an earlier version) cost 3-4 analogy points on IMDB; per-centre sharing matched per-pair draws.
* updates inside a chunk use the weights of the chunk's start (gensim: after every pair);
* the exact sigmoid is used; gensim skips a (pair, target) whose score is beyond +-6 (``MAX_EXP``);
* input vectors start as U(-1, 1) / D as in gensim 4 (word2vec.c: U(-0.5, 0.5) / D), output vectors at 0.
"""
from __future__ import annotations

import math
import sys
import threading
import time
from collections import Counter

import numpy as np

from .. import _native
from .keyed_vectors import KeyedVectors

__all__ = ["Word2Vec", "LineSentence", "batch_loss_and_grads"]


def _sigmoid(x):
    out = np.negative(x)
    with np.errstate(over="ignore"):  # exp(large) = inf gives s = 0, the right limit
        np.exp(out, out=out)
    out += 1.0
    np.reciprocal(out, out=out)
    return out


def _log_sigmoid(x):
    # log s(x) = -log(1 + exp(-x)), stable for both signs
    return -np.logaddexp(0.0, -x)


class LineSentence:
    """Iterate over a plain-text file: one sentence per line, tokens separated by whitespace.

    ``lowercase=True`` lowercases each line first. Re-iterable (every pass re-reads the file), so it can be
    given to :class:`Word2Vec` as ``sentences``; lines longer than ``max_sentence_length`` tokens are split.
    """

    def __init__(self, path, lowercase=False, max_sentence_length=10000, encoding="utf-8"):
        self.path = str(path)
        self.lowercase = bool(lowercase)
        self.max_sentence_length = int(max_sentence_length)
        self.encoding = encoding
        with open(self.path, "rb"):
            pass  # FileNotFoundError now, not at the first epoch

    def __iter__(self):
        with open(self.path, encoding=self.encoding, errors="replace") as f:
            for line in f:
                if self.lowercase:
                    line = line.lower()
                toks = line.split()
                for i in range(0, len(toks), self.max_sentence_length):
                    yield toks[i:i + self.max_sentence_length]


def _windows(A, window):
    """Read-only view ``(N, 2*window + 1) + A.shape[1:]``: row ``n`` holds ``A[n - window .. n + window]``.

    Rows outside ``[0, N)`` are zeros (``A`` is copied once into a zero-padded buffer; the windows are a
    strided view of it, no further copy).
    """
    N = A.shape[0]
    pad = np.zeros((N + 2 * window,) + A.shape[1:], dtype=A.dtype)
    pad[window:window + N] = A
    return np.lib.stride_tricks.as_strided(pad, (N, 2 * window + 1) + A.shape[1:],
                                           (pad.strides[0],) + pad.strides, writeable=False)


def _partner_major(Z, window):
    """``Zp[j, m] = Z[j + m - window, 2*window - m]`` (zero outside): from "centre n, slot a" (partner
    ``n + a - window``) to "partner j, slot m" (centre ``j + m - window``). Both index the same pair."""
    m = np.arange(2 * window + 1)
    return _windows(Z, window)[:, m, 2 * window - m]


def _pair_mask(reduced_windows, sentence_ids, window):
    """(N, 2*window + 1) bool: centre ``n`` and partner ``n + a - window`` form a pair (partner inside the
    chunk and the sentence, ``0 < |a - window| <= reduced_windows[n]``)."""
    sid = np.asarray(sentence_ids, dtype=np.int64)
    sw = _windows(sid + 1, window)                      # 0 marks "outside the chunk" (ids are >= 0)
    dist = np.abs(np.arange(-window, window + 1))
    return (sw == (sid + 1)[:, None]) & (dist > 0) & (dist <= np.asarray(reduced_windows)[:, None])


def batch_loss_and_grads(syn0, syn1neg, words, sentence_ids, reduced_windows, negatives, sg, window,
                         scale=1.0, compute_loss=True, cbow_mean_update=False, factored_output=False,
                         cbow_weights=None):
    """Loss of one chunk and its gradients, by hand (the training step is ``param += -alpha * grad``).

    Args:
        syn0, syn1neg: (V, D) input and output vectors (read only here).
        words: (N,) int word ids of the kept words of the chunk, in text order.
        sentence_ids: (N,) int >= 0, equal for words of one sentence (windows stop at sentence ends).
        reduced_windows: (N,) int in ``[1, window]``, the dynamic window of each centre word.
        negatives: (N, K) int noise words of each centre word (CBOW: of its one prediction; skip-gram:
            used by every pair of that centre, each pair with its own score and sigmoid).
        sg: 0 for CBOW, 1 for skip-gram.
        scale: multiplies every returned gradient (``-alpha`` gives the SGD update directly).
        cbow_mean_update: CBOW only. False: the exact gradient ``dL/dX[ctx] = dL/dh / c``. True: every context
            row gets the full ``dL/dh`` (``c`` times the gradient), the update word2vec.c and gensim apply with
            a mean hidden layer (gensim divides by ``c`` only when ``cbow_mean=0``); training uses this.
        factored_output: CBOW only. Return the output-vector gradient as ``(targets (N, K+1), d (N, K+1),
            H (N, D))`` meaning rows ``d[n, k] * H[n]`` at ``targets[n, k]``, instead of materialising the
            ``(N*(K+1), D)`` rows (training hands the factors to :func:`rnnlab._native.scatter_add_outer`).
        cbow_weights: CBOW only, (N,) or None. None: ``h`` is the mean of the context rows (``c`` = their
            number). Given: ``h = sum_ctx syn0[w_j] / sum_ctx cbow_weights[j]``, i.e. ``syn0`` rows are sums of
            ``cbow_weights`` vectors each (fastText: a word's summed subword rows) and ``h`` their overall mean.

    How (no per-pair loop): ``Xw = windows(syn0[words])`` is a strided (N, 2w+1, D) view (row ``n`` = the
    input vectors around centre ``n``) and ``T = syn1neg[[words, negatives]]`` (N, K+1, D) the targets of
    every centre. Skip-gram scores are one batched product ``F = Xw @ T^T`` (N, 2w+1, K+1), masked to the
    real pairs; ``dL/dT = G^T @ Xw`` and the input gradient is gathered partner-major,
    ``dL/dX[j] = sum_(m,k) G[j+m-w, 2w-m, k] T[j+m-w, k]`` (one (1, (2w+1)(K+1)) @ ((2w+1)(K+1), D) product
    per position over a strided view of ``T``). CBOW: ``h = A @ Xw`` with ``A`` the masked window weights
    ``1/c``, and the context gradient partner-major in the same way.

    Returns ``(loss, in_idx, in_rows, out_idx, out_rows)``: the gradient of the loss with respect to
    ``syn0`` is ``sum_i e_{in_idx[i]} in_rows[i]`` (rows to add at those indices, duplicates adding up),
    likewise for ``syn1neg``. ``loss`` is the summed negative-sampling loss (0.0 if not computed).
    """
    words = np.asarray(words)
    N = len(words)
    w = int(window)
    if factored_output and sg:
        raise ValueError("batch_loss_and_grads: factored_output is for CBOW (sg=0) only")
    X = syn0[words]                                   # (N, D) input vector of every position
    dtype = X.dtype
    D = X.shape[1]
    negatives = np.asarray(negatives)
    K = negatives.shape[1]
    valid = _pair_mask(reduced_windows, sentence_ids, w)                 # (N, 2w+1) centre-major
    targets = np.concatenate([words[:, None], negatives], axis=1)        # (N, K+1)
    tmask = np.ones((N, K + 1), dtype=dtype)
    tmask[:, 1:] = negatives != words[:, None]        # a noise word equal to the target is skipped
    T = syn1neg[targets]                              # (N, K+1, D)
    Xw = _windows(X, w)                               # (N, 2w+1, D) view
    loss = 0.0
    if sg:
        M = valid.astype(dtype)[:, :, None] * tmask[:, None, :]          # (N, 2w+1, K+1) real (pair, target)
        F = np.matmul(Xw, T.transpose(0, 2, 1))                          # scores of every (pair, target)
        if compute_loss:
            lp = _log_sigmoid(F[:, :, 0]) * M[:, :, 0]
            loss = -float(lp.sum() + np.sum(_log_sigmoid(-F[:, :, 1:]) * M[:, :, 1:]))
        G = _sigmoid(F)
        G[:, :, 0] -= 1.0                                                # dL/dF = s(F) - label
        G *= M
        if scale != 1.0:
            G *= scale
        gT = np.matmul(G.transpose(0, 2, 1), Xw)                         # (N, K+1, D)
        Tw = _windows(T, w)                                              # (N, 2w+1, K+1, D) view
        Tw = np.lib.stride_tricks.as_strided(Tw, (N, (2 * w + 1) * (K + 1), D),
                                             (Tw.strides[0], Tw.strides[2], Tw.strides[3]), writeable=False)
        Gp = _partner_major(G, w).reshape(N, 1, (2 * w + 1) * (K + 1))
        gX = np.matmul(Gp, Tw)[:, 0]                                     # (N, D)
        return loss, words, gX, targets.ravel(), gT.reshape(-1, D)

    # CBOW: mean of the context vectors
    if cbow_weights is None:
        cnt = valid.sum(axis=1).astype(dtype)
    else:                                                                # rows each summing cbow_weights vectors
        cnt = np.sum(valid * _windows(np.asarray(cbow_weights, dtype=dtype), w), axis=1)
    active = cnt > 0
    inv = np.zeros(N, dtype=dtype)
    inv[active] = 1.0 / cnt[active]
    A = valid.astype(dtype)
    H = np.matmul((A * inv[:, None])[:, None, :], Xw)[:, 0]              # (N, D) mean context vector
    tmask *= active[:, None]
    f = np.matmul(T, H[:, :, None])[:, :, 0]                             # (N, K+1)
    if compute_loss:
        loss = -float(np.sum(_log_sigmoid(f[:, 0]) * tmask[:, 0]) + np.sum(_log_sigmoid(-f[:, 1:]) * tmask[:, 1:]))
    d = _sigmoid(f)
    d[:, 0] -= 1.0                                                       # dL/df = s(f) - label
    d *= tmask
    if scale != 1.0:
        d *= scale
    gH = np.matmul(d[:, None, :], T)[:, 0]                               # (N, D)
    if not cbow_mean_update:
        gH *= inv[:, None]                                               # d h / d X[ctx] = 1 / c
    Ap = _partner_major(A, w)[:, None, :]                                # (N, 1, 2w+1) partner-major mask
    gX = np.matmul(Ap, _windows(gH, w))[:, 0]
    if factored_output:
        return loss, words, gX, (targets, d, H)
    gY = d[:, :, None] * H[:, None, :]
    return loss, words, gX, targets.ravel(), gY.reshape(-1, D)


def _alias_table(p):
    """Walker/Vose alias table of the distribution ``p`` (V,): draw ``i`` uniform in ``[0, V)``, return ``i``
    with probability ``prob[i]`` else ``alias[i]``; exact (up to float32 ``prob``), O(1) per draw."""
    V = len(p)
    scaled = np.asarray(p, dtype=np.float64) * V
    prob = np.ones(V, dtype=np.float64)
    alias = np.arange(V, dtype=np.int64)
    small = [i for i in range(V) if scaled[i] < 1.0]
    large = [i for i in range(V) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s] = scaled[s]
        alias[s] = g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    return prob.astype(np.float32), alias     # leftovers (rounding) keep prob 1


class Word2Vec:
    """Train word vectors (CBOW or skip-gram, negative sampling) on an iterable of token lists.

    ``Word2Vec(sentences, vector_size=100, window=5, min_count=5, sg=0, ...)`` builds the vocabulary and
    trains at once when ``sentences`` (or ``corpus_file``, a text file with one sentence per line) is given;
    otherwise call :meth:`build_vocab` then :meth:`train`. The vectors are in ``model.wv``
    (a :class:`KeyedVectors`). See the module docstring for the math.

    ``workers`` threads share the arrays without locks; ``workers=1`` is fully reproducible for a ``seed``.
    ``batch_words`` sets the chunk size (words per vectorised step; default 5000 for CBOW, 1000 for
    skip-gram, which sums ~6x more updates per word into a chunk). The updates of a chunk are summed from the
    same (stale) vectors, so too large a chunk overshoots on frequent words: skip-gram diverged on IMDB with
    10000-word chunks, CBOW on the full 11.5M-word IMDB corpus with 10000 (at 3.7M words) but not with 5000.
    A diverging run stops with a ``FloatingPointError`` before writing NaN/inf. ``verbose`` shows a progress line
    with words/s on stderr (updated about twice a second).

    Under ``mpiexec -n N`` :meth:`train` is data-parallel (:func:`rnnlab.distributed.train_word2vec`): each rank
    trains on its round-robin share of the corpus chunks and the ranks average ``syn0``/``syn1neg`` after every
    ``sync_words`` corpus words of each rank (default 50,000). See docs/distributed.md for the quality cost.
    """

    def __init__(self, sentences=None, corpus_file=None, vector_size=100, window=5, min_count=5, sg=0,
                 negative=5, ns_exponent=0.75, sample=1e-3, alpha=0.025, min_alpha=0.0001, epochs=5, seed=1,
                 workers=1, batch_words=None, max_vocab_size=None, compute_loss=False, verbose=False,
                 sync_words=50000):
        self._check_int("vector_size", vector_size, 1)
        self._check_int("window", window, 1)
        self._check_int("min_count", min_count, 1)
        self._check_int("negative", negative, 1)
        self._check_int("epochs", epochs, 1)
        self._check_int("workers", workers, 1)
        self._check_int("sync_words", sync_words, 1)
        if batch_words is None:
            # summed stale updates overshoot with large chunks (see the docstring): skip-gram sums ~6x more
            # updates per word than CBOW; CBOW diverged on the full IMDB corpus with 10000-word chunks
            batch_words = 1000 if sg else 5000
        self._check_int("batch_words", batch_words, 1)
        if sg not in (0, 1, True, False):
            raise ValueError(f"Word2Vec: sg must be 0 (CBOW) or 1 (skip-gram), got {sg!r}")
        for name, val in (("alpha", alpha), ("min_alpha", min_alpha), ("sample", sample)):
            if not np.isfinite(val) or val < 0:
                raise ValueError(f"Word2Vec: {name} must be a finite number >= 0, got {val!r}")
        if not np.isfinite(ns_exponent):
            raise ValueError(f"Word2Vec: ns_exponent must be finite, got {ns_exponent!r}")
        if sentences is not None and corpus_file is not None:
            raise ValueError("Word2Vec: give either sentences or corpus_file, not both")
        self.vector_size = int(vector_size)
        self.window = int(window)
        self.min_count = int(min_count)
        self.sg = int(sg)
        self.negative = int(negative)
        self.ns_exponent = float(ns_exponent)
        self.sample = float(sample)
        self.alpha = float(alpha)
        self.min_alpha = float(min_alpha)
        self.epochs = int(epochs)
        self.seed = int(seed)
        self.workers = int(workers)
        self.sync_words = int(sync_words)
        self.batch_words = int(batch_words)
        self.max_vocab_size = max_vocab_size
        self.compute_loss = bool(compute_loss)
        self.verbose = bool(verbose)
        self.wv = None
        self.syn1neg = None
        self.training_loss = 0.0
        self.words_per_second = None
        self.train_seconds = None
        if corpus_file is not None:
            sentences = LineSentence(corpus_file)
        if sentences is not None:
            self.build_vocab(sentences)
            self.train()

    @staticmethod
    def _check_int(name, val, low):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < low:
            raise ValueError(f"Word2Vec: {name} must be an int >= {low}, got {val!r}")

    # ------------------------------------------------------------------ vocabulary
    def build_vocab(self, sentences):
        """Count words, keep those with ``count >= min_count`` (most frequent first), encode the corpus.

        The corpus is kept in memory as one int32 array of word ids plus sentence boundaries, so later
        epochs need no re-tokenisation. Raises ``ValueError`` for an empty corpus or when ``min_count``
        leaves no word.
        """
        if isinstance(sentences, (str, bytes)):
            raise TypeError("Word2Vec: sentences must be an iterable of token lists, not a string "
                            "(use corpus_file=PATH or LineSentence(PATH) for a text file)")
        counts = Counter()
        sents = []
        n_raw = 0
        for i, sent in enumerate(sentences):
            if isinstance(sent, str):
                raise TypeError(f"Word2Vec: sentence {i} is a string; each sentence must be a list of tokens")
            sent = list(sent)
            counts.update(sent)
            n_raw += len(sent)
            sents.append(sent)
        if n_raw == 0:
            raise ValueError(f"Word2Vec: the corpus is empty ({len(sents)} sentences, 0 words)")
        kept = [(w, c) for w, c in counts.items() if c >= self.min_count]
        if not kept:
            raise ValueError(f"Word2Vec: no word occurs at least min_count={self.min_count} times "
                             f"({len(counts)} distinct words, {n_raw} words in total; lower min_count)")
        kept.sort(key=lambda wc: -wc[1])  # stable sort: ties keep first-seen order
        if self.max_vocab_size is not None:
            kept = kept[:int(self.max_vocab_size)]
        index_to_key = [w for w, _ in kept]
        key_to_index = {w: i for i, w in enumerate(index_to_key)}
        self.counts = np.array([c for _, c in kept], dtype=np.int64)
        ids, lens = [], []
        get = key_to_index.get
        for sent in sents:
            enc = [j for j in map(get, sent) if j is not None]
            if enc:
                ids.extend(enc)
                lens.append(len(enc))
        self.corpus_ids = np.asarray(ids, dtype=np.int32)
        self.sentence_lengths = np.asarray(lens, dtype=np.int64)
        self.raw_word_count = n_raw
        self.corpus_word_count = len(self.corpus_ids)
        rng = np.random.default_rng(self.seed)
        V, D = len(index_to_key), self.vector_size
        # U(-1, 1) / D as gensim 4 (word2vec.c: U(-0.5, 0.5) / D; the wider start measured +0.4 analogy points
        # for CBOW on 3M IMDB words); output vectors start at zero
        vectors = ((rng.random((V, D), dtype=np.float32) * 2.0 - 1.0) / D).astype(np.float32)
        self.wv = KeyedVectors(vectors, index_to_key, counts=self.counts)
        self.syn1neg = np.zeros((V, D), dtype=np.float32)
        self._make_tables()
        return self

    def _make_tables(self):
        # noise distribution count**ns_exponent, sampled in O(1) per draw with Walker's alias table
        p = self.counts.astype(np.float64) ** self.ns_exponent
        self._noise_p = p / p.sum()
        self._alias_prob, self._alias = _alias_table(self._noise_p)
        # keep probability of each word under subsampling (word2vec.c / gensim formula)
        total = float(self.counts.sum())
        if self.sample > 0:
            thr = self.sample * total
            keep = (np.sqrt(self.counts / thr) + 1.0) * thr / self.counts
            self._keep = np.minimum(keep, 1.0)
        else:
            self._keep = np.ones(len(self.counts))

    def _draw_noise(self, rng, shape):
        """Noise words ~ count**ns_exponent: column ``i`` uniform, kept with ``alias_prob[i]``, else its alias."""
        V = len(self._alias)
        i = rng.integers(0, V, size=shape, dtype=np.int64)
        return np.where(rng.random(shape, dtype=np.float32) < self._alias_prob[i], i, self._alias[i])

    # ------------------------------------------------------------------ training
    def _chunks(self):
        """Sentence ranges [(s0, s1, w0, w1)] of about batch_words words each."""
        ends = np.cumsum(self.sentence_lengths)
        # Summed (stale) updates of a row that occurs many times in one chunk overshoot where sequential SGD
        # would saturate: a 16-word vocabulary diverged with 7000-word chunks. Keep a chunk to at most about
        # a quarter as many words as the vocabulary has (no effect on real corpora with >40k words).
        bw = min(self.batch_words, max(50, len(self.counts) // 4))
        chunks = []
        s0, w0 = 0, 0
        # boundaries at the first sentence end reaching each multiple of batch_words
        marks = np.searchsorted(ends, np.arange(bw, ends[-1] + bw, bw))
        for s1 in np.unique(np.minimum(marks, len(ends) - 1)) + 1:
            w1 = int(ends[s1 - 1])
            if w1 > w0:
                chunks.append((s0, int(s1), w0, w1))
            s0, w0 = int(s1), w1
        return chunks

    def _chunk_words(self, chunk, rng):
        """``(ids, sid, reduced)`` of a chunk ``(s0, s1, w0, w1)``: its corpus ids and their sentence numbers
        after subsampling (a word is kept with probability ``_keep[id]``), and each position's reduced window
        ``window - U{0 .. window-1}`` (gensim's); ``None`` when fewer than two words are left."""
        s0, s1, w0, w1 = chunk
        ids = self.corpus_ids[w0:w1]
        sid = np.repeat(np.arange(s1 - s0, dtype=np.int32), self.sentence_lengths[s0:s1])
        if self.sample > 0:
            keep = rng.random(len(ids)) < self._keep[ids]
            ids, sid = ids[keep], sid[keep]
        if len(ids) < 2:
            return None
        return ids, sid, self.window - rng.integers(0, self.window, len(ids))

    def _train_chunk(self, chunk, alpha, rng):
        words = self._chunk_words(chunk, rng)
        if words is None:
            return 0.0
        ids, sid, reduced = words
        N = len(ids)
        neg = self._draw_noise(rng, (N, self.negative))
        if self.sg:
            loss, in_idx, in_rows, out_idx, out_rows = batch_loss_and_grads(
                self.wv.vectors, self.syn1neg, ids, sid, reduced, neg, 1, self.window,
                scale=-alpha, compute_loss=self.compute_loss)
            self._check_finite(chunk, alpha, loss, in_rows, out_rows)
            _native.scatter_add(self.syn1neg, out_idx, out_rows)
        else:
            loss, in_idx, in_rows, (targets, d, H) = batch_loss_and_grads(
                self.wv.vectors, self.syn1neg, ids, sid, reduced, neg, 0, self.window,
                scale=-alpha, compute_loss=self.compute_loss, cbow_mean_update=True, factored_output=True)
            self._check_finite(chunk, alpha, loss, in_rows, d, H)
            _native.scatter_add_outer(self.syn1neg, targets, d, H)
        _native.scatter_add(self.wv.vectors, in_idx, in_rows)
        return loss

    def _check_finite(self, chunk, alpha, loss, *arrays):
        """Stop with a clear error instead of writing NaN/inf into the vectors (a diverged run: summed
        updates of a chunk overshoot when alpha or batch_words is too large for the corpus)."""
        if math.isfinite(loss) and all(np.isfinite(a).all() for a in arrays):
            return
        raise FloatingPointError(
            f"Word2Vec diverged: non-finite updates in the chunk of corpus words {chunk[2]:,}-{chunk[3]:,} "
            f"(alpha {alpha:.5f}); none of this chunk's updates was applied, but earlier ones may already have pushed "
            f"some vectors to huge values. "
            f"Train again with a smaller alpha (now {self.alpha}) or batch_words (now {self.batch_words})")

    def train(self, epochs=None):
        """Run ``epochs`` (default: the constructor's) passes of SGD over the encoded corpus.

        Returns ``(trained_words, seconds)``; also sets ``words_per_second`` (in-vocabulary corpus words
        per second, before subsampling, as gensim's progress counts) and ``training_loss`` (summed loss of
        the last epoch, when ``compute_loss=True``).
        """
        if self.wv is None:
            raise ValueError("Word2Vec: call build_vocab(sentences) before train()")
        epochs = self.epochs if epochs is None else int(epochs)
        from .. import distributed as _dist
        ctx = _dist.current()
        if ctx is not None:  # under mpiexec: corpus shards, vectors averaged every sync_words (rnnlab.distributed)
            return _dist.train_word2vec(self, ctx, epochs)
        chunks = self._chunks()
        total = epochs * self.corpus_word_count
        state = {"done": 0, "loss": 0.0, "next": 0, "last": 0.0}
        lock = threading.Lock()
        start = time.perf_counter()
        jobs = [(e, c) for e in range(epochs) for c in chunks]

        def alpha_now():
            frac = min(state["done"] / total, 1.0)
            return max(self.alpha - (self.alpha - self.min_alpha) * frac, self.min_alpha)

        def worker(tid):
            rng = np.random.default_rng([self.seed, tid])
            while True:
                with lock:
                    if state["next"] >= len(jobs):
                        return
                    e, c = jobs[state["next"]]
                    state["next"] += 1
                    a = alpha_now()
                try:
                    loss = self._train_chunk(c, a, rng)
                except BaseException as err:  # noqa: BLE001 - re-raised in the calling thread below
                    with lock:
                        state.setdefault("error", err)
                        state["next"] = len(jobs)      # the other workers stop after their chunk
                    return
                with lock:
                    state["done"] += c[3] - c[2]
                    if e == epochs - 1:
                        state["loss"] += loss
                    if self.verbose:
                        self._progress(state, total, start, e, epochs, a)

        if self.workers == 1:
            worker(0)
        else:
            threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(self.workers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        if "error" in state:
            raise state["error"]
        secs = time.perf_counter() - start
        self.train_seconds = secs
        self.words_per_second = total / secs if secs > 0 else float("inf")
        self.training_loss = state["loss"]
        if self.verbose:
            state["last"] = 0.0
            self._progress(state, total, start, epochs - 1, epochs, self.min_alpha)
            print(file=sys.stderr, flush=True)
        return total, secs

    #: the name the progress line starts with
    _progress_label = "word2vec"

    def _progress(self, state, total, start, epoch, epochs, alpha):
        now = time.perf_counter()
        if now - state["last"] < 0.5 and state["done"] < total:
            return
        state["last"] = now
        el = now - start
        rate = state["done"] / el if el > 0 else 0.0
        eta = (total - state["done"]) / rate if rate > 0 else 0.0
        print(f"\r{self._progress_label} {'skip-gram' if self.sg else 'CBOW'}: epoch {epoch + 1}/{epochs} "
              f"{100.0 * state['done'] / total:5.1f}%  alpha {alpha:.5f}  {rate:,.0f} words/s  "
              f"ETA {eta:.0f}s ", end="", file=sys.stderr, flush=True)
