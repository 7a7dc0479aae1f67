"""fastText word vectors (Bojanowski et al. 2017): word2vec whose input vector is built from subwords.

A word ``w`` is the set of its character n-grams: ``<w>`` is written with boundary marks ``<`` and ``>``,
cut into every run of ``n`` characters for ``min_n <= n <= max_n`` (the single marks ``<`` and ``>``
alone are never taken), and each n-gram ``g`` is hashed into one of ``bucket`` rows with the 32-bit FNV-1a
hash of its UTF-8 bytes, exactly as Facebook's fastText and gensim do (including their sign extension of
bytes >= 0x80: ``h = (h ^ int8(byte)) * 16777619 mod 2**32``, start ``h = 2166136261``).

Parameters: one input matrix ``W`` of shape ``(V + bucket, D)`` in Facebook's layout (rows ``0..V-1`` the
vocabulary words, row ``V + b`` the n-gram bucket ``b``) and the output vectors ``Y`` (V, D). With
``S(w) = [w] + [V + hash(g) % bucket for g in ngrams(w)]`` (duplicates kept, as both reference
implementations do), ``n_w = |S(w)|`` and the summed rows ``s(w) = sum_{r in S(w)} W[r]``:

* **skip-gram** predicts every context word from ``x(w) = s(w) / d_w`` of the centre ``w``, where
  ``subword_norm="gensim"`` (the default) divides by the number of n-grams, ``d_w = max(n_w - 1, 1)``, as
  gensim's training does (``fasttext_inner.pyx``: the word row plus the n-gram rows, scaled by
  ``1 / len(ngrams)``), and ``subword_norm="facebook"`` by all rows, ``d_w = n_w`` (Facebook's
  ``Model::computeHidden``). The exact gradient is ``dL/dW[r] = sum_{positions p of w} dL/dx_p / d_w``.
* **CBOW** predicts the centre from the mean of *every* subword row of the window,
  ``h = sum_{ctx j} s(w_j) / sum_{ctx j} n_{w_j}`` (Facebook and gensim alike: a word with more n-grams
  weighs more); the exact gradient of a row of a context word is ``dL/dh / sum_ctx n``.

Everything else is word2vec with negative sampling (:mod:`rnnlab.embeddings.word2vec`, whose batched loss,
sampling tables, learning-rate schedule, subsampling and dynamic windows are reused, and are gensim's).

Training applies fastText's update instead of the exact gradient (Facebook's ``Model::update`` for the
unsupervised models and gensim's ``fasttext_inner``): every subword row of a position gets the *full*
``-alpha dL/dx_p`` (CBOW: the full ``-alpha dL/dh``), not divided by ``d_w`` (or the window's row count).
:func:`fasttext_loss_and_grads` returns either, ``fasttext_update=False`` giving the exact gradient that the
tests check by finite differences; a test traces one step against gensim's own Cython ``train_batch_any``.

Word vectors (:class:`FastTextKeyedVectors`): an in-vocabulary word's vector is the mean of its rows,
``s(w) / n_w`` (gensim's ``adjust_vectors`` and Facebook's ``getWordVector``, with either ``subword_norm``);
a word never seen (out of vocabulary) gets the mean of its n-gram rows
``(1/|G|) sum_{g in G(w)} W[V + hash(g) % bucket]``, so ``wv["unseeable"]`` works for any string with at
least one n-gram.

Why the divisor matters (the one training difference between gensim and Facebook): gensim's skip-gram
input ``s(w) / (n_w - 1)`` is ``n_w / (n_w - 1)`` times the saved vector (3..6-grams: 2x for "a", whose only
n-gram is ``<a>``; 7/6 for "the"; 23/22 for "running"), so short, frequent words have larger inputs while
training.
The SimLex-999 / WS353 / analogy figures of both settings against gensim are in docs/results.md.

Update order (``update``). gensim and Facebook update one (centre, context) pair at a time: the centre's
rows and the targets' output vectors change after every pair, and the next pair sees them.
``update="pair"`` does the same (:func:`sg_pairs_update`; CBOW one centre at a time,
:func:`cbow_centres_update`: compiled loops in ``rnnlab/_native/_fasttext.c``, NumPy loops as the fallback
and reference) with rnnlab's tables, subsampling, reduced windows and learning rate (constant within a chunk
of ``batch_words``), noise words drawn per pair (CBOW: per centre) in Python from the training generator
and passed in, the exact sigmoid ``1 / (1 + exp(-f))`` in float32
(gensim: a 512-entry table, and no update for a score beyond +-8, which never occurred in the IMDB runs),
and, within one pair, every score computed from the output vectors before that pair's update (gensim
updates the targets one after the other, which differs only when a noise word repeats in a pair).
``update="chunk"`` is rnnlab's word2vec training: every update of a chunk of ~1000 words is computed from
the chunk's starting weights (``fasttext_loss_and_grads``). The two learn the same scores ``x . y``, but
with chunks the training inputs ``x`` end ~1.6x shorter and the output vectors ``y`` ~1.6x longer than
gensim's; the per-pair loop lands on gensim's norms (``benchmarks/fasttext_update_order.py``).
Defaults (``update=None``, measured against gensim on IMDB in docs/results.md): skip-gram ``"pair"`` when
the compiled loop is built (within one point of gensim on analogies, WS353 and SimLex, 1.27x its speed;
the chunks were 2 SimLex points under), else ``"chunk"`` (the NumPy per-pair loop runs ~3k words/s); CBOW
``"chunk"`` (both orders meet the targets, the chunks score higher on all three sets).
"""
from __future__ import annotations

import numpy as np

from .. import _native
from .keyed_vectors import KeyedVectors
from .word2vec import Word2Vec, _log_sigmoid, _pair_mask, _sigmoid, batch_loss_and_grads

__all__ = ["FastText", "FastTextKeyedVectors", "ft_hash_bytes", "compute_ngrams_bytes", "ngram_hashes",
           "fasttext_loss_and_grads", "skipgram_pairs", "sg_pairs_update", "sg_pair_count",
           "cbow_centres_update"]

_FNV_OFFSET = 2166136261
_FNV_PRIME = 16777619


def ft_hash_bytes(data: bytes) -> int:
    """Facebook fastText's ``Dictionary::hash``: 32-bit FNV-1a over the bytes, each byte sign-extended from
    ``int8`` to ``uint32`` before the xor (so bytes >= 0x80 xor ``0xFFFFFF80 | byte``). gensim's
    ``ft_hash_bytes`` is the same function."""
    h = _FNV_OFFSET
    for c in data:
        h ^= c if c < 0x80 else (c | 0xFFFFFF00)
        h = (h * _FNV_PRIME) & 0xFFFFFFFF
    return h


def compute_ngrams_bytes(word: str, min_n: int, max_n: int) -> list:
    """The character n-grams of ``<word>`` as UTF-8 byte strings, in fastText's order.

    For every start character ``i`` and ``n = 1 .. max_n`` characters (UTF-8 continuation bytes stay with
    their character), the n-gram is kept when ``n >= min_n``, except a 1-character n-gram that is a boundary
    mark (``<`` at the start, ``>`` at the end). The whole ``<word>`` is included when it is short enough.
    """
    b = ("<" + word + ">").encode("utf-8")
    L = len(b)
    out = []
    for i in range(L):
        if (b[i] & 0xC0) == 0x80:
            continue
        j, n = i, 1
        while j < L and n <= max_n:
            j += 1
            while j < L and (b[j] & 0xC0) == 0x80:
                j += 1
            if n >= min_n and not (n == 1 and (i == 0 or j == L)):
                out.append(b[i:j])
            n += 1
    return out


def ngram_hashes(word: str, min_n: int, max_n: int, bucket: int) -> list:
    """Bucket numbers ``ft_hash_bytes(g) % bucket`` of the n-grams of ``word`` (empty when ``max_n == 0``
    or ``bucket == 0``); the same numbers as gensim's ``ft_ngram_hashes`` and Facebook's ``getSubwords``
    (minus its offset ``nwords``)."""
    if bucket <= 0 or max_n <= 0:
        return []
    return [ft_hash_bytes(g) % bucket for g in compute_ngrams_bytes(word, min_n, max_n)]


def _check_ngram_args(who, min_n, max_n, bucket):
    for name, val in (("min_n", min_n), ("max_n", max_n), ("bucket", bucket)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 0:
            raise ValueError(f"{who}: {name} must be an int >= 0, got {val!r}")
    if max_n > 0 and min_n < 1:
        raise ValueError(f"{who}: min_n must be >= 1 when max_n > 0 (n-grams of {min_n} characters), got "
                         f"min_n={min_n}")
    if max_n > 0 and min_n > max_n:
        raise ValueError(f"{who}: min_n must be <= max_n, got min_n={min_n} > max_n={max_n}")
    if max_n > 0 and bucket == 0:
        raise ValueError(f"{who}: bucket=0 leaves no rows for the character n-grams of max_n={max_n}; "
                         "give bucket >= 1 or max_n=0 (no subwords, plain word2vec)")


# ---------------------------------------------------------------------------------------------- math
def _segments(lens):
    """Start offsets of consecutive segments of lengths ``lens`` (all >= 1)."""
    starts = np.zeros(len(lens), dtype=np.int64)
    if len(lens) > 1:
        np.cumsum(lens[:-1], out=starts[1:])
    return starts


def _gather_subwords(sub_flat, sub_off, sub_len, uniq):
    """Flattened subword rows of the words ``uniq`` and the segment starts (CSR of their lists)."""
    lens = sub_len[uniq]
    seg = _segments(lens)
    total = int(lens.sum())
    # position k of the flat list belongs to word u at offset k - seg[u] inside its own list
    flat = np.repeat(sub_off[uniq] - seg, lens) + np.arange(total, dtype=np.int64)
    return sub_flat[flat], seg, lens


_SUBWORD_NORMS = ("facebook", "gensim")
_UPDATES = ("pair", "chunk")


def _check_subword_norm(who, subword_norm):
    if not isinstance(subword_norm, str) or subword_norm not in _SUBWORD_NORMS:
        raise ValueError(f"{who}: subword_norm must be one of {_SUBWORD_NORMS}, got {subword_norm!r}")


def skipgram_pairs(sentence_ids, reduced_windows, window):
    """The skip-gram pairs of a chunk in centre-major order: ``(centres, partners)`` position arrays, one
    entry per pair (centre ``n``, partner ``j``) with ``0 < |j - n| <= reduced_windows[n]`` inside one
    sentence. With ``pair_negatives=True`` :func:`fasttext_loss_and_grads` takes one row of noise words per
    pair, in this order."""
    valid = _pair_mask(reduced_windows, sentence_ids, window)
    n, a = np.nonzero(valid)
    return n, n + a - int(window)


def _sg_pairs_loss_and_grads(X, syn1neg, words, centres, partners, negatives, scale, compute_loss):
    """Skip-gram with its own noise words per pair (gensim's and Facebook's draws): input ``X[partner]``
    (X: (N, D), one row per position), target the centre's word and ``negatives[p]``. Returns ``(loss,
    dL/dX (N, D), out_idx, out_rows)``, all gradients times ``scale``."""
    N, D = X.shape
    tgt = words[centres]
    Xp = X[partners]                                                 # (P, D)
    Tpos = syn1neg[tgt]                                              # (P, D)
    Tneg = syn1neg[negatives]                                        # (P, K, D)
    fpos = np.einsum("pd,pd->p", Xp, Tpos)
    fneg = np.matmul(Tneg, Xp[:, :, None])[:, :, 0]                  # (P, K)
    nmask = (negatives != tgt[:, None]).astype(X.dtype)              # a noise word equal to the target: skipped
    loss = 0.0
    if compute_loss:
        loss = -float(_log_sigmoid(fpos).sum() + np.sum(_log_sigmoid(-fneg) * nmask))
    gpos = _sigmoid(fpos) - 1.0                                      # dL/df, label 1
    gneg = _sigmoid(fneg) * nmask                                    # label 0
    if scale != 1.0:
        gpos *= scale
        gneg *= scale
    gXp = gpos[:, None] * Tpos + np.matmul(gneg[:, None, :], Tneg)[:, 0]
    gX = np.zeros((N, D), dtype=gXp.dtype)
    _native.scatter_add(gX, partners, gXp)
    out_idx = np.concatenate([tgt, negatives.ravel()])
    out_rows = np.concatenate([gpos[:, None] * Xp, (gneg[:, :, None] * Xp[:, None, :]).reshape(-1, D)])
    return loss, gX, out_idx, out_rows


def fasttext_loss_and_grads(W, syn1neg, sub_flat, sub_off, sub_len, words, sentence_ids, reduced_windows,
                            negatives, sg, window, scale=1.0, compute_loss=True, fasttext_update=False,
                            subword_norm="gensim", pair_negatives=False):
    """Loss of one chunk and the gradients with respect to the input matrix ``W`` (subword rows) and ``syn1neg``.

    Args:
        W: (V + bucket, D) input matrix (vocabulary rows first).
        sub_flat, sub_off, sub_len: the subword lists in CSR form: the rows of ``W`` of word ``w`` are
            ``sub_flat[sub_off[w]:sub_off[w] + sub_len[w]]`` (its own row first, each ``sub_len >= 1``).
        words, sentence_ids, reduced_windows, negatives, sg, window, scale, compute_loss: as
            :func:`rnnlab.embeddings.word2vec.batch_loss_and_grads`.
        fasttext_update: False gives the exact gradient; True gives fastText's update direction, every
            subword row receiving the full ``dL/dx_p`` (skip-gram) or the full ``dL/dh`` (CBOW).
        subword_norm: skip-gram only, the divisor of the summed rows ``S(w)``: ``"facebook"`` ``n_w`` (all
            rows), ``"gensim"`` ``max(n_w - 1, 1)`` (the n-grams only, as gensim's training).
        pair_negatives: skip-gram only. False: ``negatives`` is (N, K), the noise words of each centre,
            shared by its pairs (word2vec's batched loss). True: ``negatives`` is (P, K), one row per pair of
            :func:`skipgram_pairs` (centre-major order), each pair scored against its own noise words.

    The model: skip-gram ``x(w) = S(w) / d_w`` (``d_w`` from ``subword_norm``) predicts each context word;
    CBOW ``h = sum_ctx S(w_j) / sum_ctx n_{w_j}``, the mean of *all* subword rows of the window (Facebook
    and gensim), predicts the centre. Exact gradients: ``dL/dW[s] = sum_p dL/dx_p / d_w`` and
    ``dL/dW[s] = sum_(centres n) dL/dh_n / C_n`` (``C_n`` the rows in the window of ``n``).

    Returns ``(loss, in_idx, in_rows, out_idx, out_rows)`` as word2vec's function: the (scaled) gradient
    with respect to ``W`` is ``sum_i e_{in_idx[i]} in_rows[i]`` with repeated indices adding up.
    """
    _check_subword_norm("fasttext_loss_and_grads", subword_norm)
    words = np.asarray(words)
    uniq, inv = np.unique(words, return_inverse=True)
    rows, seg, lens = _gather_subwords(sub_flat, sub_off, sub_len, uniq)
    dtype = W.dtype
    S = np.add.reduceat(W[rows], seg, axis=0)                      # (U, D) summed subword rows
    if sg:
        div = lens if subword_norm == "facebook" else np.maximum(lens - 1, 1)
        X = S / div[:, None].astype(dtype)                           # x(w) = S(w) / d_w
        cbow_weights = None
    else:
        X = S                                                        # CBOW: h = sum of S / rows in the window
        cbow_weights = lens[inv]
    # word2vec's batched loss reads the input vectors as rows ``words`` of a (V, D) table; only the rows of
    # this chunk's words are written into an uninitialised buffer (never read elsewhere)
    if sg and pair_negatives:
        centres, partners = skipgram_pairs(sentence_ids, reduced_windows, window)
        negatives = np.asarray(negatives)
        if negatives.ndim != 2 or negatives.shape[0] != len(centres):
            raise ValueError(f"fasttext_loss_and_grads: pair_negatives=True needs one row of noise words per "
                             f"pair, ({len(centres)}, K), got {negatives.shape}")
        loss, gX, out_idx, out_rows = _sg_pairs_loss_and_grads(X[inv], syn1neg, words, centres, partners,
                                                               negatives, scale, compute_loss)
    else:
        Xtab = np.empty(syn1neg.shape, dtype=dtype)
        Xtab[uniq] = X
        loss, _, gX, out_idx, out_rows = batch_loss_and_grads(
            Xtab, syn1neg, words, sentence_ids, reduced_windows, negatives, sg, window, scale=scale,
            compute_loss=compute_loss, cbow_mean_update=fasttext_update, cbow_weights=cbow_weights)
    GU = np.zeros((len(uniq), W.shape[1]), dtype=gX.dtype)
    _native.scatter_add(GU, inv, np.ascontiguousarray(gX))          # dL/dx (CBOW: dL/dS) per distinct word
    if sg and not fasttext_update:
        GU /= div[:, None].astype(GU.dtype)                         # d x(w) / d W[s] = 1 / d_w
    return loss, rows, np.repeat(GU, lens, axis=0), out_idx, out_rows


_MAX_NEGATIVE_PAIR = 64     # the compiled per-pair loop keeps one pair's targets on its stack


def sg_pair_count(sentence_ids, reduced_windows):
    """Number of skip-gram pairs of a chunk: position ``i`` pairs with every ``j`` of its sentence with
    ``0 < |j - i| <= reduced_windows[i]`` (``sentence_ids`` nondecreasing). Equals
    ``len(skipgram_pairs(...)[0])`` without building the pairs."""
    sid = np.asarray(sentence_ids, dtype=np.int64)
    red = np.asarray(reduced_windows, dtype=np.int64)
    pos = np.arange(len(sid), dtype=np.int64)
    first = np.searchsorted(sid, sid, "left")
    last = np.searchsorted(sid, sid, "right") - 1
    return int((np.minimum(last, pos + red) - np.maximum(first, pos - red)).sum())


def _ns_step(W, Y, rows, tg, x, alpha, compute_loss):
    """One negative-sampling update of the per-pair/per-centre NumPy loops: scores ``f = Y[tg] x`` (``tg[0]``
    the target, the rest noise words), ``g = alpha (label - sigmoid(f))``, then ``Y[tg] += g x`` and every input
    row ``W[rows] += g Y[tg]`` (from ``Y`` before this update). Returns the log-likelihood ``log s_0 +
    sum log(1 - s_k)`` (0.0 unless ``compute_loss``), or ``None`` on a non-finite score (nothing updated)."""
    with np.errstate(invalid="ignore", over="ignore"):
        f = Y[tg] @ x
    if not np.isfinite(f).all():
        return None
    label = np.zeros(len(tg), np.float32)
    label[0] = 1.0
    sg = np.float32(1.0) / (np.float32(1.0) + np.exp(-f))
    ll = 0.0
    if compute_loss:
        s64 = sg.astype(np.float64)
        ll = float(np.log(s64[0]) + np.log1p(-s64[1:]).sum())
    g = (label - sg) * alpha
    work = g @ Y[tg]                                       # from Y before this update
    np.add.at(Y, tg, g[:, None] * x[None, :])
    np.add.at(W, rows, np.broadcast_to(work, (len(rows), len(work))))
    return ll


def _sg_pairs_numpy(W, Y, sub_flat, sub_off, sub_len, ids, sid, red, neg, alpha, facebook_div, compute_loss):
    """The per-pair loop of :func:`sg_pairs_update` in NumPy (the fallback, ~3k words/s, and the reference
    of the compiled loop). Returns ``(pairs done or -(p + 1) on a non-finite score, loss)``."""
    N, K = len(ids), neg.shape[1]
    alpha = np.float32(alpha)
    p, loss = 0, 0.0
    for i in range(N):
        rows = sub_flat[sub_off[ids[i]]:sub_off[ids[i]] + sub_len[ids[i]]]
        n = len(rows)
        div = np.float32(n if facebook_div else max(n - 1, 1))
        for j in range(max(0, i - red[i]), min(N - 1, i + red[i]) + 1):
            if j == i or sid[j] != sid[i]:
                continue
            if p >= len(neg):
                return -(p + 1), loss
            x = W[rows].sum(0) / div                       # the centre's input, fresh for every pair
            tg = np.concatenate([ids[j:j + 1], neg[p][neg[p] != ids[j]]])
            step = _ns_step(W, Y, rows, tg, x, alpha, compute_loss)
            if step is None:
                return -(p + 1), loss
            loss -= step
            p += 1
    return p, loss


def _cbow_numpy(W, Y, sub_flat, sub_off, sub_len, ids, sid, red, neg, alpha, compute_loss):
    """The per-centre CBOW loop of :func:`cbow_centres_update` in NumPy (fallback and reference)."""
    N = len(ids)
    alpha = np.float32(alpha)
    done, loss = 0, 0.0
    for i in range(N):
        ctx = [j for j in range(max(0, i - red[i]), min(N - 1, i + red[i]) + 1) if j != i and sid[j] == sid[i]]
        if not ctx:
            continue
        rows = np.concatenate([sub_flat[sub_off[ids[j]]:sub_off[ids[j]] + sub_len[ids[j]]] for j in ctx])
        h = W[rows].sum(0) / np.float32(len(rows))
        tg = np.concatenate([ids[i:i + 1], neg[i][neg[i] != ids[i]]])
        step = _ns_step(W, Y, rows, tg, h, alpha, compute_loss)
        if step is None:
            return -(i + 1), loss
        loss -= step
        done += 1
    return done, loss


def _check_update_args(who, W, syn1neg, sub_flat, sub_off, sub_len, words, sentence_ids, reduced_windows,
                       negatives, n_rows):
    for name, a in (("W", W), ("syn1neg", syn1neg)):
        if not (isinstance(a, np.ndarray) and a.dtype == np.float32 and a.ndim == 2 and a.flags.c_contiguous
                and a.flags.writeable):
            raise ValueError(f"{who}: {name} must be a writeable C-contiguous float32 matrix, got "
                             f"{getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}")
    if W.shape[1] != syn1neg.shape[1]:
        raise ValueError(f"{who}: W has {W.shape[1]} columns and syn1neg {syn1neg.shape[1]}")
    i64 = (lambda a: np.ascontiguousarray(a, dtype=np.int64))
    ids, sid, red = i64(words), i64(sentence_ids), i64(reduced_windows)
    sub = (i64(sub_flat), i64(sub_off), i64(sub_len))
    neg = i64(negatives)
    N = len(ids)
    if sid.shape != (N,) or red.shape != (N,):
        raise ValueError(f"{who}: sentence_ids and reduced_windows must be ({N},) like words, got "
                         f"{sid.shape} and {red.shape}")
    if N and (np.any(np.diff(sid) < 0) or red.min() < 1):
        raise ValueError(f"{who}: sentence_ids must be nondecreasing and reduced_windows >= 1")
    P = n_rows(sid, red)
    if neg.ndim != 2 or neg.shape[0] != P or neg.shape[1] > _MAX_NEGATIVE_PAIR:
        raise ValueError(f"{who}: negatives must be ({P}, K) with K <= {_MAX_NEGATIVE_PAIR}, one row per "
                         f"{'pair' if who == 'sg_pairs_update' else 'position'}, got {neg.shape}")
    V = syn1neg.shape[0]
    for name, a, hi in (("words", ids, V), ("negatives", neg, V), ("sub_flat", sub[0], W.shape[0])):
        if a.size and (a.min() < 0 or a.max() >= hi):
            raise ValueError(f"{who}: {name} must be in [0, {hi}), got [{a.min()}, {a.max()}]")
    return sub, ids, sid, red, neg, P


def cbow_centres_update(W, syn1neg, sub_flat, sub_off, sub_len, words, sentence_ids, reduced_windows,
                        negatives, alpha, compute_loss=False, native=True):
    """CBOW fastText updates of one chunk, one centre at a time, in place (gensim's order).

    For every position ``i`` (in order) with at least one partner ``j`` (``0 < |j - i| <=
    reduced_windows[i]``, same sentence): ``h`` = the mean of every ``W`` row of every partner's ``S(w_j)``
    (from the current ``W``), targets ``w_i`` (label 1) and ``negatives[i]`` (label 0, one equal to ``w_i``
    skipped), ``g_t = alpha (label_t - sigmoid(Y[t] . h))`` from ``Y`` before this centre's update, then
    ``Y[t] += g_t h`` and every one of those rows ``+= sum_t g_t Y[t]`` (fastText's full update).
    ``negatives``: (N, K), one row per position. Other arguments and the return value as
    :func:`sg_pairs_update` (``(centres updated, loss)``).
    """
    sub, ids, sid, red, neg, _ = _check_update_args(
        "cbow_centres_update", W, syn1neg, sub_flat, sub_off, sub_len, words, sentence_ids, reduced_windows,
        negatives, lambda s, r: len(s))
    fn = _native.fasttext_cbow_kernel() if native else None
    if fn is None:
        done, loss = _cbow_numpy(W, syn1neg, *sub, ids, sid, red, neg, alpha, compute_loss)
    else:
        scratch = np.empty(2 * W.shape[1], dtype=np.float32)
        out = np.zeros(1, dtype=np.float64)
        done = fn(W.ctypes.data, syn1neg.ctypes.data, *(a.ctypes.data for a in sub), ids.ctypes.data,
                  sid.ctypes.data, red.ctypes.data, len(ids), neg.ctypes.data, neg.shape[1], W.shape[1],
                  float(alpha), scratch.ctypes.data, out.ctypes.data if compute_loss else None)
        loss = float(out[0])
    if done < 0:
        raise FloatingPointError(f"cbow_centres_update: non-finite score at centre {-done - 1} of {len(ids)} "
                                 f"(alpha {float(alpha):.5f}); the centres before it were applied")
    return done, loss


def sg_pairs_update(W, syn1neg, sub_flat, sub_off, sub_len, words, sentence_ids, reduced_windows, negatives,
                    alpha, subword_norm="gensim", compute_loss=False, native=True):
    """Skip-gram fastText updates of one chunk, one (centre, context) pair at a time, in place (gensim's order).

    For every position ``i`` (in order) and partner ``j`` of :func:`skipgram_pairs` (``0 < |j - i| <=
    reduced_windows[i]``, same sentence, increasing ``j``), pair number ``p``: ``x = s(w_i) / d`` from the
    current ``W`` (``d`` from ``subword_norm``), targets ``w_j`` (label 1) and ``negatives[p]`` (label 0, a
    noise word equal to ``w_j`` skipped), ``g_t = alpha (label_t - sigmoid(Y[t] . x))`` (exact sigmoid, float32)
    with every score from ``Y`` before this pair's update, then ``Y[t] += g_t x`` and every row of ``S(w_i)``
    ``+= sum_t g_t Y[t]``. The next pair sees these updates (unlike :func:`fasttext_loss_and_grads`, whose
    chunk updates are all computed from the chunk's starting weights).

    Args:
        W: (V + bucket, D) float32 input matrix, C order (updated in place).
        syn1neg: (V, D) float32 output vectors, C order (updated in place).
        sub_flat, sub_off, sub_len: the subword lists in CSR form (as :func:`fasttext_loss_and_grads`).
        words, sentence_ids, reduced_windows: (N,) the chunk's word ids, nondecreasing sentence numbers and
            windows in ``[1, window]``.
        negatives: (P, K) noise words, one row per pair (``P = sg_pair_count(sentence_ids, reduced_windows)``),
            ``K <= 64``.
        alpha: the learning rate of this chunk.
        native: use the compiled loop (rnnlab/_native/_fasttext.c) when it is built; False (or no compiled
            loop) runs the NumPy loop, which gives the same arrays to float32 rounding, ~40x slower.

    Returns ``(pairs, loss)``: the pairs applied and, with ``compute_loss``, their summed negative-sampling
    loss. Raises ``FloatingPointError`` on a non-finite score (the pairs before it stay applied).
    """
    _check_subword_norm("sg_pairs_update", subword_norm)
    (sub_flat, sub_off, sub_len), ids, sid, red, neg, P = _check_update_args(
        "sg_pairs_update", W, syn1neg, sub_flat, sub_off, sub_len, words, sentence_ids, reduced_windows,
        negatives, sg_pair_count)
    N = len(ids)
    fb = subword_norm == "facebook"
    fn = _native.fasttext_sg_pairs_kernel() if native else None
    if fn is None:
        done, loss = _sg_pairs_numpy(W, syn1neg, sub_flat, sub_off, sub_len, ids, sid, red, neg, alpha, fb,
                                     compute_loss)
    else:
        scratch = np.empty(2 * W.shape[1], dtype=np.float32)
        out = np.zeros(1, dtype=np.float64)
        done = fn(W.ctypes.data, syn1neg.ctypes.data, sub_flat.ctypes.data, sub_off.ctypes.data,
                  sub_len.ctypes.data, ids.ctypes.data, sid.ctypes.data, red.ctypes.data, N, neg.ctypes.data, P,
                  neg.shape[1], W.shape[1], float(alpha), int(fb), scratch.ctypes.data,
                  out.ctypes.data if compute_loss else None)
        loss = float(out[0])
    if done < 0:
        raise FloatingPointError(f"sg_pairs_update: non-finite score at pair {-done - 1} of {P} (alpha "
                                 f"{float(alpha):.5f}); the pairs before it were applied")
    return done, loss


# ------------------------------------------------------------------------------------------ vectors
class FastTextKeyedVectors(KeyedVectors):
    """:class:`KeyedVectors` of the vocabulary plus the n-gram buckets, so any string gets a vector.

    ``vectors`` (V, D) are the in-vocabulary word vectors ``x(w)``; ``vectors_vocab`` (V, D) the words' own
    rows and ``vectors_ngrams`` (bucket, D) the n-gram rows. ``kv[word]`` returns ``vectors[i]`` for a
    vocabulary word and, for any other string, the mean of its n-gram rows (``KeyError`` only when the
    string has no n-gram, e.g. ``max_n=0``). ``word in kv`` is True for every string that has a vector
    (gensim's convention); ``kv.has_index_for(word)`` tests vocabulary membership. ``similarity``,
    ``most_similar`` (query words may be out of vocabulary; answers come from the vocabulary) and the
    evaluations are :class:`KeyedVectors`'s. ``plain_words`` are vocabulary words that have no n-grams
    (Facebook's models: the end-of-line token ``</s>``).
    """

    def __init__(self, vectors, index_to_key, vectors_vocab, vectors_ngrams, min_n, max_n, counts=None,
                 plain_words=()):
        super().__init__(vectors, index_to_key, counts=counts)
        self.vectors_vocab = np.asarray(vectors_vocab)
        self.vectors_ngrams = np.asarray(vectors_ngrams)
        bucket = self.vectors_ngrams.shape[0]
        _check_ngram_args("FastTextKeyedVectors", min_n, max_n, bucket)
        if self.vectors_vocab.shape != self.vectors.shape:
            raise ValueError(f"FastTextKeyedVectors: vectors_vocab has shape {self.vectors_vocab.shape}, "
                             f"expected {self.vectors.shape}")
        if self.vectors_ngrams.ndim != 2 or self.vectors_ngrams.shape[1] != self.vectors.shape[1]:
            raise ValueError(f"FastTextKeyedVectors: vectors_ngrams must be (bucket, {self.vectors.shape[1]}), "
                             f"got {self.vectors_ngrams.shape}")
        self.min_n, self.max_n, self.bucket = int(min_n), int(max_n), int(bucket)
        # the subword lists S(w) of the vocabulary in CSR form, rows of the stacked (V + bucket, D) matrix
        V = len(self.index_to_key)
        self.plain_words = frozenset(plain_words)   # words without n-grams (fastText's end-of-line "</s>")
        lists = [[i] + ([] if w in self.plain_words else [V + h for h in self.ngram_rows(w)])
                 for i, w in enumerate(self.index_to_key)]
        self.subword_lengths = np.array([len(s) for s in lists], dtype=np.int64)
        self.subword_offsets = _segments(self.subword_lengths)
        self.subword_rows = np.fromiter((r for s in lists for r in s), dtype=np.int64,
                                        count=int(self.subword_lengths.sum()))

    def has_index_for(self, key):
        return key in self.key_to_index

    def __contains__(self, key):
        return key in self.key_to_index or (isinstance(key, str) and
                                            bool(ngram_hashes(key, self.min_n, self.max_n, self.bucket)))

    def ngram_rows(self, word):
        """Bucket rows of ``word``'s n-grams (see :func:`ngram_hashes`)."""
        return ngram_hashes(word, self.min_n, self.max_n, self.bucket)

    def get_vector(self, key, norm=False):
        if key in self.key_to_index:
            return super().get_vector(key, norm=norm)
        if not isinstance(key, str):
            raise KeyError(f"word {key!r} not in vocabulary (and not a string)")
        rows = self.ngram_rows(key)
        if not rows:
            raise KeyError(f"word {key!r} not in vocabulary and has no character n-grams "
                           f"(min_n={self.min_n}, max_n={self.max_n}, bucket={self.bucket})")
        v = self.vectors_ngrams[rows].mean(axis=0)
        if norm:
            v = v / max(np.linalg.norm(v), 1e-30)
        return v

    def __getitem__(self, key):
        if isinstance(key, (list, tuple)):
            return np.stack([self.get_vector(k) for k in key]) if key else np.zeros((0, self.vector_size))
        return self.get_vector(key)

    def similarity(self, w1, w2):
        a, b = self.get_vector(w1, norm=True), self.get_vector(w2, norm=True)
        return float(np.dot(a, b))

    def _query(self, positive, negative):
        def conv(ws):
            if ws is None or isinstance(ws, np.ndarray):
                return ws
            if isinstance(ws, str):
                ws = [ws]
            return [self.get_vector(w) if isinstance(w, str) and w not in self.key_to_index else w for w in ws]
        return super()._query(conv(positive), conv(negative))

    def recompute_word_vectors(self):
        """``vectors[i] = mean of the rows of S(word i)`` from ``vectors_vocab`` and ``vectors_ngrams``."""
        V = len(self.index_to_key)
        for b0 in range(0, V, 4096):                 # word blocks keep the gathered rows small
            b1 = min(b0 + 4096, V)
            rows, _, lens = _gather_subwords(self.subword_rows, self.subword_offsets, self.subword_lengths,
                                             np.arange(b0, b1))
            S = self.vectors_vocab[b0:b1].astype(np.float64)
            ng = rows >= V
            if ng.any():
                owner = np.repeat(np.arange(b1 - b0), lens)[ng]
                _native.scatter_add(S, owner, self.vectors_ngrams[rows[ng] - V])
            self.vectors[b0:b1] = S / lens[:, None]
        self.fill_norms(force=True)


# ------------------------------------------------------------------------------------------ training
class FastText(Word2Vec):
    """Train fastText word vectors (skip-gram or CBOW with subword n-grams, negative sampling).

    ``FastText(sentences, vector_size=100, window=5, min_count=5, sg=0, min_n=3, max_n=6, bucket=2000000)``
    takes every argument of :class:`rnnlab.embeddings.Word2Vec` (gensim's names and defaults) plus the
    n-gram settings of gensim's ``FastText`` and Facebook's ``-minn -maxn -bucket``. ``max_n=0`` trains
    without subwords (then ``bucket`` may be 0). ``subword_norm`` (skip-gram only): ``"gensim"`` (default)
    trains the input ``s(w) / (number of n-grams)`` as gensim does, ``"facebook"`` ``s(w) / (n-grams + 1)``
    as Facebook's fastText; the saved vectors are ``s(w) / (n-grams + 1)`` either way. ``pair_negatives``
    (skip-gram only): False (default) draws the ``negative`` noise words once per centre word and shares them
    among its pairs, as rnnlab's word2vec; True draws them per (centre, context) pair as gensim and Facebook
    do (the same expected gradient; ~1.5x the training time, no measurable change of the vectors' scale on
    IMDB, see docs/results.md); it applies to ``update="chunk"`` (``"pair"`` always draws per pair).
    ``update``: ``"pair"`` trains one (centre, context) pair (CBOW: one centre) at a time, as gensim and
    Facebook do (compiled loops; the default for skip-gram when they are built), ``"chunk"`` in vectorised
    chunks of ``batch_words`` (rnnlab's word2vec; the default for CBOW, and for skip-gram without a
    compiler); ``None`` picks the default. See the module docstring. The vectors are in ``model.wv``, a
    :class:`FastTextKeyedVectors`; the raw input matrix in Facebook's layout is ``model.input_matrix``
    ((V + bucket, D); ``wv.vectors_vocab`` and ``wv.vectors_ngrams`` are views of it). See the module
    docstring for the math and the update rule.

    Errors (``ValueError``): ``min_n > max_n``, ``bucket=0`` with ``max_n > 0``, an empty corpus, an unknown
    ``update``, and every check of :class:`Word2Vec`.
    """

    _progress_label = "fastText"

    _WHO = "FastText"

    def __init__(self, sentences=None, corpus_file=None, vector_size=100, window=5, min_count=5, sg=0,
                 min_n=3, max_n=6, bucket=2000000, negative=5, ns_exponent=0.75, sample=1e-3, alpha=0.025,
                 min_alpha=0.0001, epochs=5, seed=1, workers=1, batch_words=None, max_vocab_size=None,
                 compute_loss=False, verbose=False, subword_norm="gensim", pair_negatives=False, update=None):
        _check_ngram_args("FastText", min_n, max_n, bucket)
        _check_subword_norm("FastText", subword_norm)
        if update is None:
            update = self._default_update(sg)
        if update not in _UPDATES:
            raise ValueError(f"FastText: update must be one of {_UPDATES} or None, got {update!r}")
        self.update = update
        self.subword_norm = subword_norm
        self.pair_negatives = bool(pair_negatives)
        self.min_n, self.max_n, self.bucket = int(min_n), int(max_n), int(bucket)
        if max_n == 0:
            self.bucket = 0
        self.input_matrix = None
        super().__init__(sentences=sentences, corpus_file=corpus_file, vector_size=vector_size, window=window,
                         min_count=min_count, sg=sg, negative=negative, ns_exponent=ns_exponent, sample=sample,
                         alpha=alpha, min_alpha=min_alpha, epochs=epochs, seed=seed, workers=workers,
                         batch_words=batch_words, max_vocab_size=max_vocab_size, compute_loss=compute_loss,
                         verbose=verbose)

    @staticmethod
    def _check_int(name, val, low):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < low:
            raise ValueError(f"FastText: {name} must be an int >= {low}, got {val!r}")

    def build_vocab(self, sentences):
        """Count words (as :meth:`Word2Vec.build_vocab`), then hash every vocabulary word's n-grams and set up
        the input matrix: word rows U(-1, 1)/D (word2vec's start), n-gram rows U(-1, 1)/D (gensim's)."""
        try:
            super().build_vocab(sentences)
        except (ValueError, TypeError) as e:
            msg = str(e)
            if msg.startswith("Word2Vec:"):
                raise type(e)("FastText:" + msg[len("Word2Vec:"):]) from None
            raise
        words = self.wv.index_to_key
        V, D = len(words), self.vector_size
        rng = np.random.default_rng([self.seed, 17])
        W = np.empty((V + self.bucket, D), dtype=np.float32)
        W[:V] = self.wv.vectors
        if self.bucket:
            # row blocks keep the temporary small for the default 2M buckets
            for b0 in range(V, V + self.bucket, 262144):
                b1 = min(b0 + 262144, V + self.bucket)
                W[b0:b1] = (rng.random((b1 - b0, D), dtype=np.float32) * 2.0 - 1.0) / D
        self.input_matrix = W
        self.wv = FastTextKeyedVectors(np.zeros((V, D), dtype=np.float32), words, W[:V], W[V:], self.min_n,
                                       self.max_n, counts=self.counts)
        kv = self.wv
        self._sub_flat, self._sub_off, self._sub_len = kv.subword_rows, kv.subword_offsets, kv.subword_lengths
        kv.recompute_word_vectors()
        return self

    @staticmethod
    def _default_update(sg):
        """``"pair"`` for skip-gram when the compiled per-pair loop is built, else ``"chunk"`` (measured:
        docs/results.md, fastText section)."""
        return "pair" if sg and _native.fasttext_sg_pairs_kernel() is not None else "chunk"

    def _train_chunk(self, chunk, alpha, rng):
        words = self._chunk_words(chunk, rng)
        if words is None:
            return 0.0
        ids, sid, reduced = words
        w0, w1 = chunk[2], chunk[3]
        if self.update == "pair":
            args = (self.input_matrix, self.syn1neg, self._sub_flat, self._sub_off, self._sub_len, ids, sid,
                    reduced)
            try:
                if self.sg:
                    neg = self._draw_noise(rng, (sg_pair_count(sid, reduced), self.negative))
                    _, loss = sg_pairs_update(*args, neg, alpha, self.subword_norm, self.compute_loss)
                else:
                    neg = self._draw_noise(rng, (len(ids), self.negative))
                    _, loss = cbow_centres_update(*args, neg, alpha, self.compute_loss)
            except FloatingPointError as e:
                raise FloatingPointError(f"FastText diverged in the chunk of corpus words {w0:,}-{w1:,}: {e}. "
                                         f"Train again with a smaller alpha (now {self.alpha})") from None
            return loss
        per_pair = bool(self.sg) and self.pair_negatives
        n_rows = len(skipgram_pairs(sid, reduced, self.window)[0]) if per_pair else len(ids)
        if n_rows == 0:
            return 0.0
        neg = self._draw_noise(rng, (n_rows, self.negative))
        loss, in_idx, in_rows, out_idx, out_rows = fasttext_loss_and_grads(
            self.input_matrix, self.syn1neg, self._sub_flat, self._sub_off, self._sub_len, ids, sid, reduced,
            neg, self.sg, self.window, scale=-alpha, compute_loss=self.compute_loss, fasttext_update=True,
            subword_norm=self.subword_norm, pair_negatives=per_pair)
        self._check_finite(chunk, alpha, loss, in_rows, out_rows)
        _native.scatter_add(self.syn1neg, out_idx, np.ascontiguousarray(out_rows))
        _native.scatter_add(self.input_matrix, in_idx, in_rows)
        return loss

    def _check_finite(self, chunk, alpha, loss, *arrays):
        try:
            super()._check_finite(chunk, alpha, loss, *arrays)
        except FloatingPointError as e:
            raise FloatingPointError("FastText" + str(e)[len("Word2Vec"):]) from None

    def train(self, epochs=None):
        """SGD passes over the corpus (see :meth:`Word2Vec.train`), then ``wv.vectors`` are recomputed."""
        if self.wv is None:
            raise ValueError("FastText: call build_vocab(sentences) before train()")
        from .. import distributed as _dist

        if _dist.current() is not None:
            # word2vec's data-parallel mode averages wv.vectors / syn1neg; fastText's parameters are input_matrix
            raise ValueError("FastText: the data-parallel mode (mpiexec) is not supported; train in one process "
                             "(workers=N threads share the arrays)")
        out = super().train(epochs)
        self.wv.recompute_word_vectors()
        return out
