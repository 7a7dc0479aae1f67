"""KeyedVectors (cosine, 3CosAdd, evaluations, Spearman), embedding_matrix and the PCA word map."""
import numpy as np
import pytest

from rnnlab import backend
from rnnlab.embeddings import KeyedVectors, embedding_matrix, pca_2d, plot_word_map, rankdata, spearman


@pytest.fixture
def kv():
    # king - man + woman = queen exactly in this toy space; "apple" far away
    words = ["man", "woman", "king", "queen", "apple", "boy", "girl"]
    vecs = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 0],
                     [0, 0, 0, 1], [1, 0, 0, 0.2], [0, 1, 0, 0.2]], dtype=np.float32)
    return KeyedVectors(vecs, words)


def test_lookup_and_errors(kv):
    np.testing.assert_array_equal(kv["king"], [1, 0, 1, 0])
    assert kv[["man", "apple"]].shape == (2, 4)
    assert "queen" in kv and "zebra" not in kv and len(kv) == 7
    assert kv.key_to_index["queen"] == 3 and kv.index_to_key[3] == "queen"
    for call in (lambda: kv["zebra"], lambda: kv.similarity("man", "zebra"),
                 lambda: kv.most_similar(positive=["zebra"]), lambda: kv.doesnt_match(["man", "zebra"])):
        with pytest.raises(KeyError, match="zebra"):
            call()
    with pytest.raises(ValueError, match="duplicate key 'a'"):
        KeyedVectors(np.zeros((2, 3)), ["a", "a"])
    with pytest.raises(ValueError, match="2 keys for 3 vectors"):
        KeyedVectors(np.zeros((3, 3)), ["a", "b"])


def test_similarity_most_similar_analogy(kv):
    assert kv.similarity("king", "queen") == pytest.approx(0.5)
    assert kv.similarity("man", "apple") == pytest.approx(0.0)
    res = kv.most_similar(positive=["woman", "king"], negative=["man"], topn=3)
    assert res[0][0] == "queen"
    # 3CosAdd: cos(queen, u(woman) + u(king) - u(man)) computed by hand
    u = lambda w: kv[w] / np.linalg.norm(kv[w])  # noqa: E731
    q = u("woman") + u("king") - u("man")
    assert res[0][1] == pytest.approx(float(u("queen") @ q / np.linalg.norm(q)), rel=1e-6)
    assert [w for w, _ in res] == [w for w, _ in sorted(res, key=lambda t: -t[1])]
    assert all(w not in ("woman", "king", "man") for w, _ in res)
    assert kv.most_similar("man", topn=1)[0][0] == "boy"
    assert kv.most_similar("man", topn=2, restrict_vocab=3) == kv.most_similar("man", topn=2)[:0] + \
        [(w, s) for w, s in kv.most_similar("man", topn=6) if kv.key_to_index[w] < 3][:2]
    assert kv.doesnt_match(["man", "boy", "apple"]) == "apple"
    with pytest.raises(ValueError, match="topn"):
        kv.most_similar("man", topn=0)


def test_evaluate_word_analogies(kv, tmp_path):
    p = tmp_path / "q.txt"
    p.write_text(": royal\nman woman king queen\nMan King woman queen\nman woman king zebra\n"
                 ": other\nman woman boy apple\nboy girl man woman\n")
    r = kv.evaluate_word_analogies(p)
    assert r["oov"] == 1 and r["total"] == 4 and r["oov_ratio"] == pytest.approx(0.2)
    secs = {s["section"]: s for s in r["sections"]}
    assert secs["royal"]["correct"] == 2 and secs["royal"]["total"] == 2
    assert secs["other"]["total"] == 2
    expect = [kv.most_similar(positive=[b, c], negative=[a], topn=1)[0][0] == d
              for a, b, c, d in (("man", "woman", "boy", "apple"), ("boy", "girl", "man", "woman"))]
    assert secs["other"]["correct"] == sum(expect)
    assert r["accuracy"] == pytest.approx((2 + sum(expect)) / 4)
    bad = tmp_path / "bad.txt"
    bad.write_text(": s\nman woman king\n")
    with pytest.raises(ValueError, match="line 2: expected 4 words"):
        kv.evaluate_word_analogies(bad)
    bad.write_text("man woman king queen\n")
    with pytest.raises(ValueError, match="line 1: question before"):
        kv.evaluate_word_analogies(bad)


def test_rankdata_and_spearman():
    np.testing.assert_allclose(rankdata([10, 20, 20, 5, 20]), [2, 4, 4, 1, 4])
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    x, y = [1, 2, 2, 3, 5, 4], [2, 1, 3, 3, 6, 4]
    rx, ry = rankdata(x), rankdata(y)
    assert spearman(x, y) == pytest.approx(np.corrcoef(rx, ry)[0, 1])
    try:
        from scipy.stats import spearmanr
    except ImportError:
        return
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 40), rng.normal(size=40)
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, rel=1e-12)


def test_evaluate_word_pairs(kv, tmp_path):
    p = tmp_path / "pairs.tsv"
    p.write_text("# comment\nman\tboy\t9.0\nman\tapple\t1.0\nking\tqueen\t5\nKING\tzebra\t3\n\nwoman\tgirl\t8.5\n")
    r = kv.evaluate_word_pairs(p)
    assert r["pairs"] == 4 and r["oov"] == 1 and r["oov_ratio"] == pytest.approx(0.2)
    sims = [kv.similarity(a, b) for a, b in (("man", "boy"), ("man", "apple"), ("king", "queen"), ("woman", "girl"))]
    assert r["spearman"] == pytest.approx(spearman(sims, [9, 1, 5, 8.5]))
    p.write_text("man\tboy\tnine\n")
    with pytest.raises(ValueError, match="line 1: score 'nine'"):
        kv.evaluate_word_pairs(p)
    p.write_text("man boy 9\n")
    with pytest.raises(ValueError, match="line 1: expected 3 fields"):
        kv.evaluate_word_pairs(p)


def test_embedding_matrix(kv):
    backend.set_random_seed(5)
    word_index = {"king": 1, "zebra": 2, "queen": 3, "apple": 5, "rare": 9}
    M, unknown = embedding_matrix(kv, word_index, num_words=6)
    assert M.shape == (6, 4) and M.dtype == np.float32
    np.testing.assert_array_equal(M[0], 0)
    np.testing.assert_array_equal(M[1], kv["king"])
    np.testing.assert_array_equal(M[3], kv["queen"])
    assert unknown == ["zebra"]
    assert np.all(np.abs(M[2]) <= 0.05) and np.any(M[2] != 0)
    np.testing.assert_array_equal(M[4], 0)                 # id without a word stays zero
    M2, unk2 = embedding_matrix({"king": np.ones(4)}, {"King": 1, "x": 2}, lowercase_fallback=True, seed=1)
    assert M2.shape == (3, 4) and unk2 == ["x"] and np.all(M2[1] == 1)
    M3, _ = embedding_matrix({"king": np.ones(4)}, {"King": 1, "x": 2}, lowercase_fallback=True, seed=1)
    M4, unk4 = embedding_matrix({"king": np.ones(4)}, {"King": 1, "x": 2}, seed=2)
    np.testing.assert_array_equal(M2, M3)                  # same seed, same random rows
    assert unk4 == ["King", "x"] and not np.allclose(M4[2], M2[2])
    with pytest.raises(ValueError, match="embedding_dim=8 but the vectors have dimension 4"):
        embedding_matrix(kv, word_index, embedding_dim=8)
    with pytest.raises(ValueError, match="ids must be ints >= 1"):
        embedding_matrix(kv, {"king": 0})
    with pytest.raises(ValueError, match="1-D vectors of one length"):
        embedding_matrix({"a": np.ones(3), "b": np.ones(4)}, {"a": 1})
    with pytest.raises(TypeError, match="KeyedVectors or a dict"):
        embedding_matrix([1, 2], {"a": 1})


def test_pca_and_word_map(kv, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2)) @ np.array([[3.0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0]]) + 7
    coords, ratio = pca_2d(X)
    assert ratio.sum() == pytest.approx(1.0)
    # distances are preserved when the data lie in a plane
    d = lambda A: np.linalg.norm(A[:, None] - A[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(d(coords), d(X), atol=1e-9)
    assert ratio[0] > ratio[1]
    with pytest.raises(ValueError, match="at least 2 rows"):
        pca_2d(np.ones((1, 3)))
    png = tmp_path / "map.png"
    c = plot_word_map(kv, ["man", "woman", "king", "queen", "apple"], png, groups=list("aabbc"))
    assert c.shape == (5, 2) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(KeyError, match="zebra"):
        plot_word_map(kv, ["man", "zebra"], png)
