"""word2vec: finite-difference check of the hand-written batch gradients, training behaviour, bad input, CLI."""
import json
import os

import numpy as np
import pytest

from rnnlab import cli
from rnnlab.embeddings import LineSentence, Word2Vec, batch_loss_and_grads
from rnnlab.testing import numerical_gradient


def _dense(V, D, idx, rows):
    G = np.zeros((V, D))
    np.add.at(G, idx, rows)
    return G


def _problem(seed, sg, V=11, D=4, N=17, window=3, K=3):
    rng = np.random.default_rng(seed)
    syn0 = rng.normal(0, 0.5, (V, D))
    syn1 = rng.normal(0, 0.5, (V, D))
    words = rng.integers(0, V, N)
    sid = np.minimum(np.arange(N), 8) // 7 + (np.arange(N) > 7)   # sentences [0,7), [7], [8,N) (N > 8)
    reduced = rng.integers(1, window + 1, N)
    neg = rng.integers(0, V, (N, K))
    neg[0, 0] = words[0]                                # a noise word equal to the target (CBOW skips it)
    return syn0, syn1, words, sid, reduced, neg, window


@pytest.mark.parametrize("sg", [0, 1])
def test_batch_gradients_match_finite_differences(sg):
    syn0, syn1, words, sid, reduced, neg, window = _problem(3, sg)
    V, D = syn0.shape
    loss, ii, ir, oi, orows = batch_loss_and_grads(syn0, syn1, words, sid, reduced, neg, sg, window)
    g0, g1 = _dense(V, D, ii, ir), _dense(V, D, oi, orows)
    assert np.abs(g0).max() > 1e-3 and np.abs(g1).max() > 1e-3

    def f(a, b):
        return batch_loss_and_grads(a, b, words, sid, reduced, neg, sg, window)[0]

    assert np.isclose(loss, f(syn0, syn1))
    for W, G, which in ((syn0, g0, 0), (syn1, g1, 1)):
        num = numerical_gradient(lambda: f(syn0, syn1), W)
        np.testing.assert_allclose(G, num, rtol=1e-6, atol=1e-8, err_msg=f"parameter {which}")


def test_cbow_loss_is_negative_sampling_loss_by_hand():
    syn0, syn1, words, sid, reduced, neg, window = _problem(5, 0, N=9, window=1, K=1)
    words, sid, reduced, neg = words[:4], sid[:4], reduced[:4], neg[:4]
    sid[:] = 0
    reduced[:] = 1
    loss = batch_loss_and_grads(syn0, syn1, words, sid, reduced, neg, 0, window)[0]
    ls = lambda z: -np.log1p(np.exp(-z))  # noqa: E731
    expect = 0.0
    for n in range(4):
        ctx = [p for p in (n - 1, n + 1) if 0 <= p < 4]
        h = syn0[words[ctx]].mean(axis=0)
        expect -= ls(h @ syn1[words[n]])
        if neg[n, 0] != words[n]:
            expect -= ls(-h @ syn1[neg[n, 0]])
    assert np.isclose(loss, expect, rtol=1e-12)


def test_skipgram_loss_is_per_pair_negative_sampling_loss_by_hand():
    syn0, syn1, words, sid, reduced, neg, window = _problem(6, 1, N=12, window=3, K=2)
    neg[4, 1] = words[4]                                # skipped for every pair of centre 4
    loss = batch_loss_and_grads(syn0, syn1, words, sid, reduced, neg, 1, window)[0]
    ls = lambda z: -np.log1p(np.exp(-z))  # noqa: E731
    expect, pairs = 0.0, 0
    for n in range(12):
        for j in range(n - reduced[n], n + reduced[n] + 1):
            if j == n or not 0 <= j < 12 or sid[j] != sid[n]:
                continue
            pairs += 1
            x = syn0[words[j]]                          # input = context word, target = centre word
            expect -= ls(x @ syn1[words[n]])
            for k in range(2):
                if neg[n, k] != words[n]:
                    expect -= ls(-x @ syn1[neg[n, k]])
    assert pairs > 10
    assert np.isclose(loss, expect, rtol=1e-12)


def test_alias_table_is_exact_for_a_zipf_distribution():
    from rnnlab.embeddings.word2vec import _alias_table

    p = 1.0 / np.arange(1, 2001) ** 1.1
    p /= p.sum()
    prob, alias = _alias_table(p)
    implied = prob.astype(np.float64).copy()
    np.add.at(implied, alias, 1.0 - prob)
    np.testing.assert_allclose(implied / len(p), p, rtol=1e-5, atol=1e-9)


def test_cbow_mean_update_is_count_times_gradient():
    syn0, syn1, words, sid, reduced, neg, window = _problem(7, 0)
    sid[:] = 0
    reduced[:] = 1                                      # centres in the middle have 2 context words
    _, _, exact, _, _ = batch_loss_and_grads(syn0, syn1, words, sid, reduced, neg, 0, window)
    _, _, upd, _, _ = batch_loss_and_grads(syn0, syn1, words, sid, reduced, neg, 0, window,
                                           cbow_mean_update=True)
    # position p receives from centres p-1 and p+1, each with 2 context words except the end centres (1)
    N = len(words)
    np.testing.assert_allclose(upd[2:N - 2], 2 * exact[2:N - 2], rtol=1e-10)
    np.testing.assert_allclose(upd[0], 2 * exact[0], rtol=1e-10)        # only from centre 1
    assert not np.allclose(upd[1], 2 * exact[1])                         # from centres 0 (c=1) and 2 (c=2)


def _topic_corpus(n_sent=600, seed=0):
    rng = np.random.default_rng(seed)
    animals = ["cat", "dog", "horse", "cow", "sheep", "goat"]
    colours = ["red", "blue", "green", "yellow", "white", "black"]
    glue = ["the", "a", "and", "of"]
    sents = []
    for i in range(n_sent):
        topic = animals if i % 2 == 0 else colours
        sents.append([str(x) for x in rng.choice(topic + glue, size=12)])
    return sents, animals, colours


@pytest.mark.parametrize("sg", [0, 1])
def test_training_separates_topics(sg):
    sents, animals, colours = _topic_corpus()
    m = Word2Vec(sents, vector_size=20, window=3, min_count=2, sg=sg, epochs=5, seed=3, sample=0)
    kv = m.wv
    within = np.mean([kv.similarity(a, b) for a in animals for b in animals if a != b]
                     + [kv.similarity(a, b) for a in colours for b in colours if a != b])
    across = np.mean([kv.similarity(a, b) for a in animals for b in colours])
    assert within > across + 0.3, (within, across)
    top = [w for w, _ in kv.most_similar("cat", topn=5)]
    assert sum(w in animals for w in top) >= 4, top
    assert np.isfinite(kv.vectors).all()


def test_same_seed_same_vectors_and_zero_lr_changes_nothing():
    sents, _, _ = _topic_corpus(100)
    a = Word2Vec(sents, vector_size=8, min_count=1, epochs=2, seed=9)
    b = Word2Vec(sents, vector_size=8, min_count=1, epochs=2, seed=9)
    c = Word2Vec(sents, vector_size=8, min_count=1, epochs=2, seed=10)
    np.testing.assert_array_equal(a.wv.vectors, b.wv.vectors)
    assert not np.allclose(a.wv.vectors, c.wv.vectors)
    frozen = Word2Vec(vector_size=8, min_count=1, alpha=0.0, min_alpha=0.0, seed=9).build_vocab(sents)
    before = frozen.wv.vectors.copy()
    frozen.train()
    np.testing.assert_array_equal(frozen.wv.vectors, before)


def test_vocabulary_order_subsampling_and_noise_tables():
    sents = [["a"] * 50 + ["b"] * 20 + ["c"] * 5 + ["d"] * 2]
    m = Word2Vec(vector_size=4, min_count=3, sample=0.01).build_vocab(sents)
    assert m.wv.index_to_key == ["a", "b", "c"] and "d" not in m.wv
    big = Word2Vec(vector_size=50, min_count=1).build_vocab([[f"w{i}" for i in range(400)]])
    v = big.wv.vectors                                  # gensim 4's start: U(-1, 1) / D; output vectors 0
    assert np.abs(v).max() <= 1 / 50 and np.abs(v).max() > 0.9 / 50 and abs(v.mean()) < 0.01 / 50
    assert not big.syn1neg.any()
    counts = np.array([50, 20, 5])
    thr = 0.01 * 75
    np.testing.assert_allclose(m._keep, np.minimum((np.sqrt(counts / thr) + 1) * thr / counts, 1))
    p = counts ** 0.75
    np.testing.assert_allclose(m._noise_p, p / p.sum())
    # the alias table's implied distribution: P(i) = (prob[i] + sum_{j: alias[j] = i} (1 - prob[j])) / V
    V = 3
    implied = m._alias_prob.astype(np.float64).copy()
    np.add.at(implied, m._alias, 1.0 - m._alias_prob)
    np.testing.assert_allclose(implied / V, p / p.sum(), rtol=1e-6)
    draws = m._draw_noise(np.random.default_rng(0), (200000,))
    np.testing.assert_allclose(np.bincount(draws, minlength=3) / 200000, p / p.sum(), atol=4e-3)
    assert m.corpus_word_count == 75


def test_chunks_cover_corpus_on_sentence_boundaries():
    sents = [["w%d" % (i % 7)] * (1 + i % 5) for i in range(200)]
    m = Word2Vec(vector_size=4, min_count=1, batch_words=37).build_vocab(sents)
    chunks = m._chunks()
    assert chunks[0][0] == 0 and chunks[-1][1] == 200 and chunks[-1][3] == m.corpus_word_count
    for (s0, s1, w0, w1), nxt in zip(chunks, chunks[1:]):
        assert s1 == nxt[0] and w1 == nxt[2] and w1 - w0 == m.sentence_lengths[s0:s1].sum()


def test_threads_and_corpus_file(tmp_path):
    sents, animals, colours = _topic_corpus()
    p = tmp_path / "corpus.txt"
    p.write_text("\n".join(" ".join(s) for s in sents) + "\n")
    m = Word2Vec(corpus_file=str(p), vector_size=20, window=3, min_count=2, epochs=5, workers=2, seed=3,
                 sample=0, batch_words=500)
    assert len(m.wv) == 16 and m.words_per_second > 0
    assert m.wv.similarity("cat", "dog") > m.wv.similarity("cat", "red")
    assert [len(s) for s in LineSentence(p)] == [12] * 600


def test_bad_input():
    with pytest.raises(ValueError, match="corpus is empty"):
        Word2Vec([[], []])
    with pytest.raises(ValueError, match=r"min_count=5 .*3 distinct words, 4 words"):
        Word2Vec([["a", "b", "a", "c"]], min_count=5)
    with pytest.raises(TypeError, match="not a string"):
        Word2Vec("some text")
    with pytest.raises(TypeError, match="sentence 1 is a string"):
        Word2Vec([["a"], "b c"])
    with pytest.raises(ValueError, match="sg must be 0"):
        Word2Vec(sg=2)
    with pytest.raises(ValueError, match="vector_size"):
        Word2Vec(vector_size=0)
    with pytest.raises(ValueError, match="build_vocab"):
        Word2Vec().train()
    with pytest.raises(FileNotFoundError):
        Word2Vec(corpus_file="/nonexistent/corpus.txt")


def test_cli_train_and_similar(tmp_path, capsys):
    sents, animals, _ = _topic_corpus(300)
    text = tmp_path / "t.txt"
    text.write_text("\n".join(" ".join(s) for s in sents))
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("# w1\tw2\tscore\ncat\tdog\t9\ncat\tred\t1\nblue\tgreen\t8\ndog\tblue\t2\nzebra\tcat\t5\n")
    out = tmp_path / "run"
    rc = cli.main(["train", "word2vec", "--text", str(text), "--out", str(out), "--min-count", "2",
                   "--vector-size", "16", "--window", "3", "--sample", "0", "--binary", "--pairs", str(pairs),
                   "--verbose", "0", "--plot", "cat", "dog", "red", "blue"])
    assert rc == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["vocab_size"] == 16 and metrics["words_per_second"] > 0
    assert metrics["pairs_oov_ratio"] == pytest.approx(0.2) and metrics["pairs_spearman"] > 0.5
    assert json.load(open(out / "metrics.json"))["vocab_size"] == 16
    assert (out / "vectors.bin").exists() and (out / "word_map.png").stat().st_size > 1000
    assert cli.main(["similar", "--vectors", str(out / "vectors.bin"), "cat", "--topn", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and sum(line.split("\t")[0] in animals for line in lines) >= 2
    assert cli.main(["similar", "--vectors", str(out / "vectors.txt"), "zebra"]) == 1
    assert "zebra" in capsys.readouterr().err


@pytest.mark.parametrize("sg,workers", [(0, 1), (1, 1), (0, 2)])
def test_divergence_stops_with_a_clear_error(sg, workers):
    rng = np.random.default_rng(0)
    sents = [[f"w{i}" for i in rng.integers(0, 30, 15)] for _ in range(200)]
    with pytest.raises(FloatingPointError, match=r"Word2Vec diverged: non-finite updates .* smaller alpha \(now 1e\+30\)"):
        Word2Vec(sents, vector_size=8, min_count=1, sg=sg, epochs=3, seed=1, alpha=1e30, min_alpha=1e30,
                 workers=workers)
