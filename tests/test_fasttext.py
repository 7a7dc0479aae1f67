"""fastText word vectors: n-gram hashing (vs gensim and by hand), gradients through the n-gram sums, OOV
vectors, similarity, bad input."""
import numpy as np
import pytest

from rnnlab.embeddings.fasttext import (FastText, FastTextKeyedVectors, compute_ngrams_bytes,
                                        fasttext_loss_and_grads, ft_hash_bytes, ngram_hashes)

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


@pytest.mark.parametrize("sg", [0, 1])
def test_gradients_through_ngram_sums_match_finite_differences(sg):
    W, syn1, kv, words, sid, reduced, neg, window = _problem(5 + sg)
    csr = (kv.subword_rows, kv.subword_offsets, kv.subword_lengths)
    assert kv.subword_lengths.min() >= 2          # every word has n-gram rows besides its own

    def f(a, b):
        return fasttext_loss_and_grads(a, b, *csr, words, sid, reduced, neg, sg, window)[0]

    loss, ii, ir, oi, orows = fasttext_loss_and_grads(W, syn1, *csr, words, sid, reduced, neg, sg, window)
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


def test_fasttext_update_gives_every_subword_row_the_full_input_gradient():
    W, syn1, kv, words, sid, reduced, neg, window = _problem(6)
    csr = (kv.subword_rows, kv.subword_offsets, kv.subword_lengths)
    _, ii, exact, _, _ = fasttext_loss_and_grads(W, syn1, *csr, words, sid, reduced, neg, 1, window)
    _, ii2, full, _, _ = fasttext_loss_and_grads(W, syn1, *csr, words, sid, reduced, neg, 1, window,
                                                 fasttext_update=True)
    np.testing.assert_array_equal(ii, ii2)
    uniq = np.unique(words)
    n = np.repeat(kv.subword_lengths[uniq], kv.subword_lengths[uniq])
    np.testing.assert_allclose(full, exact * n[:, None], rtol=1e-12)


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


def test_loss_decreases():
    m = FastText(SENTS, vector_size=16, min_count=1, sg=1, epochs=1, bucket=2000, compute_loss=True, seed=2)
    first = m.training_loss
    m.train(epochs=4)
    assert m.training_loss < first


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


def test_data_parallel_mode_is_refused(monkeypatch):
    from rnnlab import distributed

    m = FastText(vector_size=8, min_count=1, bucket=100)
    m.build_vocab(SENTS)
    monkeypatch.setattr(distributed, "current", lambda: object())
    with pytest.raises(ValueError, match=r"FastText: the data-parallel mode \(mpiexec\) is not supported"):
        m.train()
