"""FastText(update="pair"): skip-gram one (centre, context) pair at a time (gensim's order).

The compiled loop (rnnlab/_native/_fasttext.c) and the NumPy fallback must both equal, to float32 rounding,
a plain transliteration of the per-pair reference of benchmarks/fasttext_update_order.py (written out here
again, independent of the library code), and that reference must tell a loop without the n-gram update or
with the other divisor apart.
"""
import numpy as np
import pytest

from rnnlab import _native
from rnnlab.embeddings import FastText
from rnnlab.embeddings import fasttext as ftmod
from rnnlab.embeddings.fasttext import cbow_centres_update, sg_pair_count, sg_pairs_update, skipgram_pairs

WORDS = ["the", "cat", "sat", "on", "mat", "running", "runner", "dogs", "dog", "a", "unbelievable", "é-clair"]
HAS_KERNEL = _native.fasttext_sg_pairs_kernel() is not None
HAS_CBOW_KERNEL = _native.fasttext_cbow_kernel() is not None


def corpus(seed=0, n=40):
    rng = np.random.default_rng(seed)
    return [[WORDS[k] for k in rng.integers(0, len(WORDS), rng.integers(2, 12))] for _ in range(n)]


def reference(W, Y, rows_of, ids, sid, red, neg, alpha, div_mode="gensim", ngram_update=True):
    """benchmarks/fasttext_update_order.py's loop body with the chunk's draws given (float32 throughout)."""
    W, Y = W.copy(), Y.copy()
    p = 0
    for i in range(len(ids)):
        ri = rows_of[ids[i]]
        div = max(len(ri) - 1, 1) if div_mode == "gensim" else len(ri)
        for j in range(max(0, i - red[i]), min(len(ids), i + red[i] + 1)):
            if j == i or sid[j] != sid[i]:
                continue
            neu1 = W[ri].sum(0) / div
            tg = np.concatenate([[ids[j]], neg[p]])
            keep = np.ones(len(tg), bool)
            keep[1:] = tg[1:] != ids[j]
            tg = tg[keep]
            label = np.zeros(len(tg), np.float32)
            label[0] = 1.0
            g = (label - 1.0 / (1.0 + np.exp(-(Y[tg] @ neu1)))) * np.float32(alpha)
            work = g @ Y[tg]
            np.add.at(Y, tg, g[:, None] * neu1[None, :])
            upd = ri if ngram_update else ri[:1]
            np.add.at(W, upd, np.broadcast_to(work, (len(upd), len(work))))
            p += 1
    assert p == len(neg)
    return W, Y


def setup_chunk(seed=0, n_words=80, window=4, K=5, D=16):
    m = FastText(corpus(seed), vector_size=D, min_count=1, sg=1, bucket=64, epochs=1, window=window,
                 update="chunk", seed=3)
    rng = np.random.default_rng(seed + 100)
    kv = m.wv
    rows_of = [kv.subword_rows[kv.subword_offsets[i]:kv.subword_offsets[i] + kv.subword_lengths[i]]
               for i in range(len(kv))]
    ids = m.corpus_ids[:n_words]
    sid = np.repeat(np.arange(len(m.sentence_lengths)), m.sentence_lengths)[:n_words]
    red = window - rng.integers(0, window, len(ids))
    neg = rng.integers(0, len(kv), (sg_pair_count(sid, red), K))
    W = m.input_matrix.copy()
    Y = (rng.standard_normal(m.syn1neg.shape) * 0.3).astype(np.float32)   # nonzero, so the input rows move
    return m, rows_of, ids, sid, red, neg, W, Y


def test_pair_count_equals_skipgram_pairs():
    rng = np.random.default_rng(1)
    sid = np.sort(rng.integers(0, 7, 60))
    for window in (1, 3, 5):
        red = window - rng.integers(0, window, 60)
        assert sg_pair_count(sid, red) == len(skipgram_pairs(sid, red, window)[0])


@pytest.mark.parametrize("native", [pytest.param(True, marks=pytest.mark.skipif(
    not HAS_KERNEL, reason="compiled per-pair loop not built")), False])
@pytest.mark.parametrize("subword_norm", ["gensim", "facebook"])
def test_loop_equals_per_pair_reference(native, subword_norm):
    m, rows_of, ids, sid, red, neg, W0, Y0 = setup_chunk()
    alpha = 0.2
    Wr, Yr = reference(W0, Y0, rows_of, ids, sid, red, neg, alpha, subword_norm)
    W, Y = W0.copy(), Y0.copy()
    done, _ = sg_pairs_update(W, Y, m._sub_flat, m._sub_off, m._sub_len, ids, sid, red, neg, alpha,
                              subword_norm=subword_norm, native=native)
    assert done == len(neg) > 100
    tol = dict(rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(W, Wr, **tol)
    np.testing.assert_allclose(Y, Yr, **tol)
    # the tolerance separates the right loop from a loop without the n-gram update or with the other divisor
    V = len(rows_of)
    Wn, _ = reference(W0, Y0, rows_of, ids, sid, red, neg, alpha, subword_norm, ngram_update=False)
    assert not np.allclose(W[V:], Wn[V:], **tol)
    other = "facebook" if subword_norm == "gensim" else "gensim"
    Wd, Yd = reference(W0, Y0, rows_of, ids, sid, red, neg, alpha, other)
    assert not np.allclose(W, Wd, **tol) and not np.allclose(Y, Yd, **tol)


@pytest.mark.skipif(not HAS_KERNEL, reason="compiled per-pair loop not built")
def test_compiled_and_numpy_loops_train_the_same_model(monkeypatch):
    kw = dict(vector_size=12, min_count=1, sg=1, bucket=40, epochs=2, window=3, seed=5, update="pair",
              compute_loss=True)
    a = FastText(corpus(2), **kw)
    monkeypatch.setattr(_native, "fasttext_sg_pairs_kernel", lambda: None)
    b = FastText(corpus(2), **kw)
    np.testing.assert_allclose(a.input_matrix, b.input_matrix, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a.syn1neg, b.syn1neg, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a.training_loss, b.training_loss, rtol=1e-5)
    assert a.training_loss > 0
    assert not np.allclose(a.input_matrix, FastText(corpus(2), **{**kw, "update": "chunk"}).input_matrix, atol=1e-4)


def test_library_without_the_symbol_falls_back(monkeypatch):
    class OldLib:                                 # a build of _kernels without _fasttext.c
        pass

    monkeypatch.setattr(_native, "_LIB", OldLib())
    assert _native.fasttext_sg_pairs_kernel() is None
    monkeypatch.setattr(_native, "_LIB", None)
    assert _native.fasttext_sg_pairs_kernel() is None
    m = FastText(corpus(0), vector_size=8, min_count=1, sg=1, bucket=30, epochs=1)
    assert m.update == "chunk"                    # the fast default without the compiled loop
    m = FastText(corpus(0), vector_size=8, min_count=1, sg=1, bucket=30, epochs=1, update="pair")
    assert m.update == "pair" and np.isfinite(m.wv.vectors).all()


def test_default_update():
    sg = FastText(corpus(0), vector_size=8, min_count=1, sg=1, bucket=30, epochs=1)
    assert sg.update == ("pair" if HAS_KERNEL else "chunk")
    assert FastText(corpus(0), vector_size=8, min_count=1, sg=0, bucket=30, epochs=1).update == "chunk"


def test_pair_training_is_deterministic_and_learns():
    kw = dict(vector_size=16, min_count=1, sg=1, bucket=50, window=3, seed=7, update="pair", compute_loss=True)
    a1 = FastText(corpus(4, 150), epochs=1, **kw)
    a2 = FastText(corpus(4, 150), epochs=1, **kw)
    np.testing.assert_array_equal(a1.input_matrix, a2.input_matrix)
    late = FastText(corpus(4, 150), epochs=8, **kw)
    assert late.training_loss < a1.training_loss     # last epoch's loss after 8 epochs below the first's


def test_bad_arguments():
    with pytest.raises(ValueError, match="update must be one of"):
        FastText(corpus(0), min_count=1, sg=1, bucket=30, update="pairs")
    with pytest.raises(ValueError, match="update must be one of"):
        FastText(corpus(0), min_count=1, sg=0, bucket=30, update=1)
    m, rows_of, ids, sid, red, neg, W, Y = setup_chunk()
    with pytest.raises(ValueError, match="one row per pair"):
        sg_pairs_update(W, Y, m._sub_flat, m._sub_off, m._sub_len, ids, sid, red, neg[1:], 0.1)
    with pytest.raises(ValueError, match="float32"):
        sg_pairs_update(W.astype(np.float64), Y, m._sub_flat, m._sub_off, m._sub_len, ids, sid, red, neg, 0.1)
    with pytest.raises(ValueError, match="negatives must be in"):
        sg_pairs_update(W, Y, m._sub_flat, m._sub_off, m._sub_len, ids, sid, red, neg + 1000, 0.1)


def test_divergence_raises_clearly():
    m, rows_of, ids, sid, red, neg, W, Y = setup_chunk()
    Y[:] = np.inf
    for native in (True, False):
        with pytest.raises(FloatingPointError, match="non-finite score at pair 0"):
            sg_pairs_update(W.copy(), Y.copy(), m._sub_flat, m._sub_off, m._sub_len, ids, sid, red, neg, 0.1,
                            native=native)
    wide = np.zeros((len(neg), ftmod._MAX_NEGATIVE_PAIR + 1), dtype=np.int64)   # the C loop's stack bound
    with pytest.raises(ValueError, match="K <= 64"):
        sg_pairs_update(W, Y, m._sub_flat, m._sub_off, m._sub_len, ids, sid, red, wide, 0.1)


def cbow_reference(W, Y, rows_of, ids, sid, red, neg, alpha, ngram_update=True, mean=True):
    """gensim's fasttext_fast_sentence_cbow_neg order with the chunk's draws given (float32 throughout)."""
    W, Y = W.copy(), Y.copy()
    for i in range(len(ids)):
        ctx = [j for j in range(max(0, i - red[i]), min(len(ids), i + red[i] + 1)) if j != i and sid[j] == sid[i]]
        if not ctx:
            continue
        rows = np.concatenate([rows_of[ids[j]] if ngram_update else rows_of[ids[j]][:1] for j in ctx])
        allrows = np.concatenate([rows_of[ids[j]] for j in ctx])
        h = W[allrows].sum(0) / (len(allrows) if mean else len(ctx))
        tg = np.concatenate([[ids[i]], neg[i]])
        keep = np.ones(len(tg), bool)
        keep[1:] = tg[1:] != ids[i]
        tg = tg[keep]
        label = np.zeros(len(tg), np.float32)
        label[0] = 1.0
        with np.errstate(over="ignore"):                 # the mean=False variant saturates
            g = (label - 1.0 / (1.0 + np.exp(-(Y[tg] @ h)))) * np.float32(alpha)
        work = g @ Y[tg]
        np.add.at(Y, tg, g[:, None] * h[None, :])
        np.add.at(W, rows, np.broadcast_to(work, (len(rows), len(work))))
    return W, Y


@pytest.mark.parametrize("native", [pytest.param(True, marks=pytest.mark.skipif(
    not HAS_CBOW_KERNEL, reason="compiled CBOW loop not built")), False])
def test_cbow_loop_equals_per_centre_reference(native):
    m, rows_of, ids, sid, red, _, W0, Y0 = setup_chunk()
    neg = np.random.default_rng(9).integers(0, len(rows_of), (len(ids), 5))
    alpha = 0.2
    Wr, Yr = cbow_reference(W0, Y0, rows_of, ids, sid, red, neg, alpha)
    W, Y = W0.copy(), Y0.copy()
    done, _ = cbow_centres_update(W, Y, m._sub_flat, m._sub_off, m._sub_len, ids, sid, red, neg, alpha,
                                  native=native)
    assert done == sum(1 for i in range(len(ids)) if np.sum(sid == sid[i]) > 1) > 30
    tol = dict(rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(W, Wr, **tol)
    np.testing.assert_allclose(Y, Yr, **tol)
    V = len(rows_of)
    Wn, _ = cbow_reference(W0, Y0, rows_of, ids, sid, red, neg, alpha, ngram_update=False)
    assert not np.allclose(W[V:], Wn[V:], **tol)
    Wd, Yd = cbow_reference(W0, Y0, rows_of, ids, sid, red, neg, alpha, mean=False)   # divisor: words, not rows
    assert not np.allclose(W, Wd, **tol) and not np.allclose(Y, Yd, **tol)
    with pytest.raises(ValueError, match="one row per position"):
        cbow_centres_update(W, Y, m._sub_flat, m._sub_off, m._sub_len, ids, sid, red, neg[1:], alpha)


@pytest.mark.skipif(not HAS_CBOW_KERNEL, reason="compiled CBOW loop not built")
def test_cbow_compiled_and_numpy_loops_train_the_same_model(monkeypatch):
    kw = dict(vector_size=12, min_count=1, sg=0, bucket=40, epochs=2, window=3, seed=5, update="pair",
              compute_loss=True)
    a = FastText(corpus(2), **kw)
    monkeypatch.setattr(_native, "fasttext_cbow_kernel", lambda: None)
    b = FastText(corpus(2), **kw)
    np.testing.assert_allclose(a.input_matrix, b.input_matrix, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a.syn1neg, b.syn1neg, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a.training_loss, b.training_loss, rtol=1e-5)
    assert a.training_loss > 0


def test_pair_training_with_threads():
    """workers=2: both threads run the per-pair loop on the shared arrays (Hogwild, as gensim's workers)."""
    kw = dict(vector_size=8, min_count=1, sg=1, bucket=50, window=3, seed=7, update="pair", epochs=3,
              batch_words=60)
    one = FastText(corpus(5, 200), **kw)
    twos = [FastText(corpus(5, 200), workers=2, **kw) for _ in range(5)]
    assert all(np.isfinite(two.input_matrix).all() for two in twos)
    # the same amount of training: the rows moved about as far from the common start. On this 50-row toy
    # model the two threads' unlocked updates collide often, so one run's distance varies (0.5-1.3x of one
    # thread's over 30 runs): the median of five runs is compared
    start = FastText(**{**kw, "epochs": 1})
    start.build_vocab(corpus(5, 200))
    d1 = np.linalg.norm(one.input_matrix - start.input_matrix)
    d2 = np.median([np.linalg.norm(two.input_matrix - start.input_matrix) for two in twos])
    assert 0.5 < d2 / d1 < 2.0
