"""fastText word vectors: n-gram hashing (vs gensim and by hand), gradients through the n-gram sums, OOV
vectors, similarity, bad input."""
import numpy as np
import pytest

from rnnlab.embeddings.fasttext import (FastText, FastTextKeyedVectors, compute_ngrams_bytes,
                                        fasttext_loss_and_grads, ft_hash_bytes, ngram_hashes, skipgram_pairs)

WORDS = ["hello", "naïve", "日本語", "a", "", "x-y", "café✓", "running", "zürich", "\U0001F600ok"]


# ------------------------------------------------------------------------------------- hashing
def test_fnv1a_hand_computed_values():
    # standard FNV-1a 32-bit vectors (ASCII bytes: the sign extension does not apply)
    assert ft_hash_bytes(b"") == 0x811C9DC5
    assert ft_hash_bytes(b"a") == 0xE40C292C
    assert ft_hash_bytes(b"foobar") == 0xBF9CF968
    # bytes >= 0x80 are xored sign-extended (int8 -> uint32), as Facebook's Dictionary::hash:
    # h0 = 0x811c9dc5; h1 = (h0 ^ 0xffffffc3) * 16777619 mod 2^32; h2 = (h1 ^ 0xffffffa9) * 16777619 mod 2^32
    h = 0x811C9DC5
    for x in (0xFFFFFFC3, 0xFFFFFFA9):
        h = ((h ^ x) * 16777619) % 2 ** 32
    assert ft_hash_bytes("é".encode()) == h == 0x3CFA68C1
    # a plain FNV-1a (no sign extension) differs there
    h_plain = 0x811C9DC5
    for x in (0xC3, 0xA9):
        h_plain = ((h_plain ^ x) * 16777619) % 2 ** 32
    assert h_plain != h


def test_ngrams_by_hand():
    assert compute_ngrams_bytes("where", 3, 3) == [b"<wh", b"whe", b"her", b"ere", b"re>"]
    # n = 1 never yields a lone boundary mark; the whole <word> is an n-gram when short enough
    assert compute_ngrams_bytes("ab", 1, 4) == [b"<a", b"<ab", b"<ab>", b"a", b"ab", b"ab>", b"b", b"b>"]
    # multi-byte characters stay whole: "é" counts as one character
    assert compute_ngrams_bytes("é", 3, 3) == ["<é>".encode()]
    assert ngram_hashes("where", 3, 3, 1000) == [ft_hash_bytes(g) % 1000 for g in
                                                 [b"<wh", b"whe", b"her", b"ere", b"re>"]]
    assert ngram_hashes("where", 3, 6, 0) == [] and ngram_hashes("where", 0, 0, 10) == []


def test_same_buckets_as_gensim():
    gft = pytest.importorskip("gensim.models.fasttext", reason="gensim not installed (optional test dependency)")
    for w in WORDS:
        for mn, mx, b in ((3, 6, 2000000), (1, 3, 1000), (2, 5, 7)):
            assert compute_ngrams_bytes(w, mn, mx) == gft.compute_ngrams_bytes(w, mn, mx), w
            assert ngram_hashes(w, mn, mx, b) == list(gft.ft_ngram_hashes(w, mn, mx, b)), w
        assert ft_hash_bytes(w.encode()) == gft.ft_hash_bytes(w.encode())


# ------------------------------------------------------------------------------------- gradients
def _problem(seed, V=9, bucket=13, D=4, N=16, window=3, K=3):
    rng = np.random.default_rng(seed)
    vocab = ["cat", "cats", "dog", "dogs", "x", "running", "runs", "é", "ab"][:V]
    W = rng.normal(0, 0.5, (V + bucket, D))
    syn1 = rng.normal(0, 0.5, (V, D))
    kv = FastTextKeyedVectors(np.zeros((V, D)), vocab, W[:V], W[V:], 2, 4)
    words = rng.integers(0, V, N)
    sid = (np.arange(N) >= 7).astype(np.int64) + (np.arange(N) >= 8)
    reduced = rng.integers(1, window + 1, N)
    neg = rng.integers(0, V, (N, K))
    return W, syn1, kv, words, sid, reduced, neg, window


def _dense(shape, idx, rows):
    G = np.zeros(shape)
    np.add.at(G, idx, rows)
    return G


@pytest.mark.parametrize("sg,norm,pairs", [(0, "gensim", False), (1, "facebook", False), (1, "gensim", False),
                                           (1, "gensim", True), (1, "facebook", True)])
def test_gradients_through_ngram_sums_match_finite_differences(sg, norm, pairs):
    W, syn1, kv, words, sid, reduced, neg, window = _problem(5 + sg)
    csr = (kv.subword_rows, kv.subword_offsets, kv.subword_lengths)
    assert kv.subword_lengths.min() >= 2          # every word has n-gram rows besides its own
    assert len(set(kv.subword_lengths)) > 1       # CBOW's all-rows mean differs from a mean of word means
    if pairs:                                     # one row of noise words per (centre, partner) pair
        P = len(skipgram_pairs(sid, reduced, window)[0])
        neg = np.random.default_rng(1).integers(0, len(kv), (P, 3))
        assert P > len(words)

    def f(a, b):
        return fasttext_loss_and_grads(a, b, *csr, words, sid, reduced, neg, sg, window, subword_norm=norm,
                                       pair_negatives=pairs)[0]

    loss, ii, ir, oi, orows = fasttext_loss_and_grads(W, syn1, *csr, words, sid, reduced, neg, sg, window,
                                                      subword_norm=norm, pair_negatives=pairs)
    gW, g1 = _dense(W.shape, ii, ir), _dense(syn1.shape, oi, orows)
    assert np.isclose(loss, f(W, syn1))
    ngram_rows = np.unique(kv.subword_rows[kv.subword_rows >= len(kv)])
    assert np.abs(gW[ngram_rows]).max() > 1e-3 and np.abs(g1).max() > 1e-3
    eps = 1e-6
    for M, G, which in ((W, gW, 0), (syn1, g1, 1)):
        num = np.zeros_like(M)
        for idx in np.ndindex(M.shape):
            Mp, Mm = M.copy(), M.copy()
            Mp[idx] += eps
            Mm[idx] -= eps
            num[idx] = ((f(Mp, syn1) - f(Mm, syn1)) if which == 0 else (f(W, Mp) - f(W, Mm))) / (2 * eps)
        np.testing.assert_allclose(G, num, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("norm", ["facebook", "gensim"])
def test_fasttext_update_gives_every_subword_row_the_full_input_gradient(norm):
    W, syn1, kv, words, sid, reduced, neg, window = _problem(6)
    csr = (kv.subword_rows, kv.subword_offsets, kv.subword_lengths)
    _, ii, exact, _, _ = fasttext_loss_and_grads(W, syn1, *csr, words, sid, reduced, neg, 1, window,
                                                 subword_norm=norm)
    _, ii2, full, _, _ = fasttext_loss_and_grads(W, syn1, *csr, words, sid, reduced, neg, 1, window,
                                                 fasttext_update=True, subword_norm=norm)
    np.testing.assert_array_equal(ii, ii2)
    uniq = np.unique(words)
    lens = kv.subword_lengths[uniq]
    div = lens if norm == "facebook" else lens - 1           # gensim divides by the n-grams alone
    np.testing.assert_allclose(full, exact * np.repeat(div, lens)[:, None], rtol=1e-12)


def test_skipgram_pairs_and_per_pair_loss_by_hand():
    # sentence 0 = positions 0..2, sentence 1 = 3..4; windows 1, 2, 1 | 2, 1
    sid, red = np.array([0, 0, 0, 1, 1]), np.array([1, 2, 1, 2, 1])
    c, p = skipgram_pairs(sid, red, 2)
    assert list(zip(c.tolist(), p.tolist())) == [(0, 1), (1, 0), (1, 2), (2, 1), (3, 4), (4, 3)]
    W, syn1, kv, words, _, _, _, _ = _problem(3, N=5)
    csr = (kv.subword_rows, kv.subword_offsets, kv.subword_lengths)
    neg = np.random.default_rng(2).integers(0, len(kv), (6, 2))
    neg[0, 0] = words[0]                              # a noise word equal to its target is skipped
    loss = fasttext_loss_and_grads(W, syn1, *csr, words, sid, red, neg, 1, 2, pair_negatives=True)[0]

    def x(w):
        rows = kv.subword_rows[kv.subword_offsets[w]:kv.subword_offsets[w] + kv.subword_lengths[w]]
        return W[rows].sum(axis=0) / (len(rows) - 1)  # gensim's divisor (the default)

    expect = 0.0
    for q, (cn, pj) in enumerate(zip(c, p)):          # input: the partner's x; target: the centre's word
        t = words[cn]
        expect -= np.log(_sig(x(words[pj]) @ syn1[t]))
        expect -= sum(np.log(_sig(-x(words[pj]) @ syn1[k])) for k in neg[q] if k != t)
    assert np.isclose(loss, expect, rtol=1e-12)
    with pytest.raises(ValueError, match=r"one row of noise words per pair, \(6, K\), got \(5, 2\)"):
        fasttext_loss_and_grads(W, syn1, *csr, words, sid, red, neg[:5], 1, 2, pair_negatives=True)


def test_training_with_pair_negatives():
    kw = dict(vector_size=8, min_count=1, sg=1, epochs=1, bucket=300, seed=4, update="chunk")  # an option of the chunks
    a = FastText(SENTS, pair_negatives=True, **kw)
    b = FastText(SENTS, pair_negatives=True, **kw)
    c = FastText(SENTS, pair_negatives=False, **kw)
    np.testing.assert_array_equal(a.input_matrix, b.input_matrix)
    assert np.isfinite(a.input_matrix).all() and np.abs(a.input_matrix - c.input_matrix).max() > 1e-4


def _one_pair_problem():
    rng = np.random.default_rng(11)
    vocab = ["cat", "running", "x"]
    V, bucket, D = 3, 40, 5
    W = rng.normal(0, 0.5, (V + bucket, D))
    syn1 = rng.normal(0, 0.5, (V, D))
    kv = FastTextKeyedVectors(np.zeros((V, D)), vocab, W[:V], W[V:], 3, 6)
    return W, syn1, kv, (kv.subword_rows, kv.subword_offsets, kv.subword_lengths)


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


@pytest.mark.parametrize("norm", ["facebook", "gensim"])
def test_skipgram_hidden_vector_by_hand(norm):
    """Skip-gram input of a word: its summed rows over n_w (Facebook) or over its n-gram count (gensim)."""
    W, syn1, kv, csr = _one_pair_problem()
    i = kv.key_to_index["running"]
    rows = kv.subword_rows[kv.subword_offsets[i]:kv.subword_offsets[i] + kv.subword_lengths[i]]
    n = len(rows)
    x = W[rows].sum(axis=0) / (n if norm == "facebook" else n - 1)
    # "running" predicts "cat" (target 0) with noise word "x" (2); "cat" predicts "running" (the other pair)
    words, sid, red, neg = np.array([i, 0]), np.zeros(2, int), np.ones(2, int), np.array([[2], [2]])
    loss, ii, ir, oi, orows = fasttext_loss_and_grads(W, syn1, *csr, words, sid, red, neg, 1, 1,
                                                      subword_norm=norm)
    j = kv.key_to_index["cat"]
    cat_rows = kv.subword_rows[kv.subword_offsets[j]:kv.subword_offsets[j] + kv.subword_lengths[j]]
    xc = W[cat_rows].sum(axis=0) / (len(cat_rows) if norm == "facebook" else len(cat_rows) - 1)
    expect = -np.log(_sig(x @ syn1[j])) - np.log(_sig(-x @ syn1[2])) \
        - np.log(_sig(xc @ syn1[i])) - np.log(_sig(-xc @ syn1[2]))
    assert np.isclose(loss, expect, rtol=1e-12)
    gY = _dense(syn1.shape, oi, orows)
    # output row of "cat" gets (s(x.Y_cat) - 1) x only from the pair whose input is "running"
    np.testing.assert_allclose(gY[j], (_sig(x @ syn1[j]) - 1) * x, rtol=1e-12)


def test_cbow_hidden_vector_is_the_mean_of_all_subword_rows_of_the_window():
    """CBOW (Facebook's computeHidden and gensim's cbow_mean=1): h averages every row of the window, so a
    context word with more n-grams weighs more; not the mean of the context words' vectors."""
    W, syn1, kv, csr = _one_pair_problem()
    i, j = kv.key_to_index["running"], kv.key_to_index["cat"]
    # sentence "running x cat", window 1: the centre "x" (position 1) has context {running, cat}
    words, sid, red = np.array([i, 2, j]), np.zeros(3, int), np.ones(3, int)
    neg = np.array([[2], [j], [2]])
    _, _, _, oi, orows = fasttext_loss_and_grads(W, syn1, *csr, words, sid, red, neg, 0, 1)
    ri = kv.subword_rows[kv.subword_offsets[i]:kv.subword_offsets[i] + kv.subword_lengths[i]]
    rj = kv.subword_rows[kv.subword_offsets[j]:kv.subword_offsets[j] + kv.subword_lengths[j]]
    assert len(ri) != len(rj)
    h = np.concatenate([W[ri], W[rj]]).mean(axis=0)
    # output row "x": the centre "x" adds (s(h . Y_x) - 1) h; the centres "running" and "cat" (context {x},
    # hidden h0 = mean of x's rows) have "x" as their noise word and add s(h0 . Y_x) h0 each
    h0 = W[kv.subword_rows[kv.subword_offsets[2]:kv.subword_offsets[2] + kv.subword_lengths[2]]].mean(axis=0)
    expect = (_sig(h @ syn1[2]) - 1) * h + 2 * _sig(h0 @ syn1[2]) * h0
    np.testing.assert_allclose(_dense(syn1.shape, oi, orows)[2], expect, rtol=1e-10)


@pytest.mark.parametrize("sg", [0, 1])
def test_one_update_matches_gensim_train_batch(sg):
    """Trace against gensim's own Cython step (fasttext_inner.train_batch_any) from the same weights: window 1,
    no subsampling, the noise word forced through gensim's cum_table. One small step of both agree to the
    first order (gensim's 512-entry sigmoid table and its per-pair sequential updates leave ~1%);
    skip-gram with Facebook's divisor n_w instead of gensim's n-gram count is 30% off on the output rows."""
    gensim_ft = pytest.importorskip("gensim.models.fasttext", reason="gensim not installed (optional test dependency)")
    from gensim.models.fasttext_inner import train_batch_any

    D, bucket, alpha = 8, 50, 1e-3
    g = gensim_ft.FastText(vector_size=D, window=1, min_count=1, sample=0, negative=1, sg=sg, bucket=bucket,
                           seed=0, workers=1, min_n=3, max_n=6)
    g.build_vocab(corpus_iterable=[["is", "where"], ["is", "where"], ["zz"], ["a"]])
    V = len(g.wv)
    rng = np.random.default_rng(0)
    g.wv.vectors_vocab[:] = rng.normal(0, 0.5, (V, D))
    g.wv.vectors_ngrams[:] = rng.normal(0, 0.5, (bucket, D))
    g.syn1neg[:] = rng.normal(0, 0.5, (V, D))
    k = g.wv.key_to_index["zz"]
    g.cum_table[:k] = 0                 # every draw x in [1, 2**31) bisects to k (x = 0: probability 2**-31)
    g.cum_table[k:] = 2 ** 31
    W0 = np.vstack([g.wv.vectors_vocab, g.wv.vectors_ngrams]).astype(np.float64)
    Y0 = g.syn1neg.astype(np.float64)
    sent = ["is", "where"] if sg else ["is", "a", "where"]
    train_batch_any(g, [sent], alpha, *g._get_thread_working_mem())
    dW_ref = np.vstack([g.wv.vectors_vocab, g.wv.vectors_ngrams]) - W0
    dY_ref = g.syn1neg - Y0
    kv = FastTextKeyedVectors(np.zeros((V, D)), list(g.wv.index_to_key), W0[:V], W0[V:], 3, 6)
    csr = (kv.subword_rows, kv.subword_offsets, kv.subword_lengths)
    words = np.array([g.wv.key_to_index[w] for w in sent])
    N = len(words)

    def rel_err(norm):
        _, ii, ir, oi, orows = fasttext_loss_and_grads(W0, Y0, *csr, words, np.zeros(N, int), np.ones(N, int),
                                                       np.full((N, 1), k), sg, 1, scale=-alpha,
                                                       fasttext_update=True, subword_norm=norm)
        dW, dY = _dense(W0.shape, ii, ir), _dense(Y0.shape, oi, orows)
        return (np.abs(dW - dW_ref).max() / np.abs(dW_ref).max(), np.abs(dY - dY_ref).max() / np.abs(dY_ref).max())

    eW, eY = rel_err("gensim")
    assert eW < 0.03 and eY < 0.03, (eW, eY)
    if sg:
        assert rel_err("facebook")[1] > 0.2


# ------------------------------------------------------------------------------------- model
SENTS = [["the", "cat", "sat", "on", "the", "mat"], ["dogs", "and", "cats", "are", "running"],
         ["the", "dog", "runs", "after", "the", "cat"], ["a", "runner", "is", "running", "fast"]] * 150


@pytest.mark.parametrize("sg", [0, 1])
def test_training_vectors_and_oov(sg):
    m = FastText(SENTS, vector_size=16, min_count=1, sg=sg, epochs=3, bucket=5000, seed=3)
    wv = m.wv
    V = len(wv)
    assert m.input_matrix.shape == (V + 5000, 16)
    # in-vocabulary: mean of the word's own row and its n-gram rows
    i = wv.key_to_index["running"]
    rows = [i] + [V + h for h in ngram_hashes("running", 3, 6, 5000)]
    np.testing.assert_allclose(wv["running"], m.input_matrix[rows].mean(axis=0), rtol=1e-5, atol=1e-7)
    # out of vocabulary: mean of the n-gram rows only
    assert not wv.has_index_for("runnings") and "runnings" in wv
    oov_rows = [V + h for h in ngram_hashes("runnings", 3, 6, 5000)]
    np.testing.assert_allclose(wv["runnings"], m.input_matrix[oov_rows].mean(axis=0), rtol=1e-6)
    assert wv["runnings"].shape == (16,)
    # shared n-grams give an OOV form a vector close to its lemma
    assert wv.similarity("running", "runnings") > wv.similarity("mat", "runnings")
    sims = wv.most_similar("runnings", topn=3)
    assert len(sims) == 3 and all(w in wv.key_to_index for w, _ in sims)
    assert wv.most_similar(positive=["cat", "dogs"], negative=["dog"], topn=2)
    assert np.isfinite(m.input_matrix).all()


def test_training_moves_ngram_rows_and_is_reproducible():
    a = FastText(SENTS, vector_size=8, min_count=1, sg=1, epochs=2, bucket=300, seed=4)
    b = FastText(SENTS, vector_size=8, min_count=1, sg=1, epochs=2, bucket=300, seed=4)
    np.testing.assert_array_equal(a.input_matrix, b.input_matrix)
    c = FastText(SENTS, vector_size=8, min_count=1, sg=1, epochs=1, bucket=300, seed=4)
    c.build_vocab(SENTS)
    start = c.input_matrix.copy()
    c.train()
    used = np.unique(c.wv.subword_rows[c.wv.subword_rows >= len(c.wv)])
    assert np.abs(c.input_matrix[used] - start[used]).max() > 1e-3


def test_max_n_zero_is_plain_word2vec_style():
    m = FastText(SENTS, vector_size=8, min_count=1, max_n=0, bucket=0, epochs=1)
    assert m.input_matrix.shape == (len(m.wv), 8)
    np.testing.assert_allclose(m.wv["cat"], m.input_matrix[m.wv.key_to_index["cat"]], rtol=1e-6)
    assert "catz" not in m.wv
    with pytest.raises(KeyError, match="catz.*no character n-grams"):
        m.wv["catz"]


@pytest.mark.parametrize("pair_negatives", [True, False])
def test_loss_decreases(pair_negatives):
    # sample=0: subsampling keeps ~4% of this 20-word corpus, so the summed loss of an epoch would mostly
    # measure which words the draw kept
    m = FastText(SENTS, vector_size=16, min_count=1, sg=1, epochs=1, bucket=2000, compute_loss=True, seed=2,
                 sample=0, pair_negatives=pair_negatives)
    first = m.training_loss
    m.train(epochs=4)
    assert m.training_loss < 0.8 * first


# ------------------------------------------------------------------------------------- bad input
def test_bad_arguments():
    with pytest.raises(ValueError, match=r"min_n must be <= max_n, got min_n=5 > max_n=3"):
        FastText(SENTS, min_n=5, max_n=3)
    with pytest.raises(ValueError, match=r"bucket=0 .*max_n=6"):
        FastText(SENTS, bucket=0)
    with pytest.raises(ValueError, match=r"FastText: the corpus is empty"):
        FastText([[], []])
    with pytest.raises(ValueError, match=r"FastText: the corpus is empty"):
        FastText([])
    with pytest.raises(ValueError, match=r"FastText: no word occurs at least min_count=50"):
        FastText([["a", "b"]], min_count=50)
    with pytest.raises(ValueError, match=r"FastText: vector_size must be an int >= 1"):
        FastText(SENTS, vector_size=0)
    with pytest.raises(ValueError, match=r"FastText: bucket must be an int >= 0, got -1"):
        FastText(SENTS, bucket=-1)
    with pytest.raises(TypeError, match=r"FastText: sentences must be an iterable of token lists"):
        FastText("just a string")
    with pytest.raises(ValueError, match=r"FastText: subword_norm must be one of \('facebook', 'gensim'\), "
                                         r"got 'fb'"):
        FastText(SENTS, subword_norm="fb")


@pytest.mark.parametrize("sg", [0, 1])
def test_subword_norm_changes_skipgram_training_only(sg):
    kw = dict(vector_size=8, min_count=1, sg=sg, epochs=1, bucket=300, seed=4)
    a = FastText(SENTS, subword_norm="gensim", **kw)
    b = FastText(SENTS, subword_norm="facebook", **kw)
    if sg:
        assert np.abs(a.input_matrix - b.input_matrix).max() > 1e-4
    else:
        np.testing.assert_array_equal(a.input_matrix, b.input_matrix)
    # the saved vectors are the mean of the rows either way
    V = len(b.wv)
    i = b.wv.key_to_index["cat"]
    rows = [i] + [V + h for h in ngram_hashes("cat", 3, 6, 300)]
    np.testing.assert_allclose(b.wv["cat"], b.input_matrix[rows].mean(axis=0), rtol=1e-5, atol=1e-7)


def test_data_parallel_mode_is_refused(monkeypatch):
    from rnnlab import distributed

    m = FastText(vector_size=8, min_count=1, bucket=100)
    m.build_vocab(SENTS)
    monkeypatch.setattr(distributed, "current", lambda: object())
    with pytest.raises(ValueError, match=r"FastText: the data-parallel mode \(mpiexec\) is not supported"):
        m.train()
