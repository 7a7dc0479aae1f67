"""Supervised fastText classifier: word n-gram hashing, hand-written gradient, SGD step, learning, files,
bad input, and ``rnnlab train classify --model fasttext``."""
import json

import numpy as np
import pytest

from rnnlab.embeddings.fasttext import ft_hash_bytes
from rnnlab.testing import numerical_gradient
from rnnlab.models.fasttext_classifier import (FastTextClassifier, hs_loss_and_grads, huffman_paths, loss_and_grads,
                                               word_ngram_features)


def _sext(h):
    """uint32 hash -> the uint64 fastText gets from `uint64_t h = (int32_t) hash` (sign extension)."""
    return h if h < 2 ** 31 else h + 2 ** 64 - 2 ** 32


def test_word_ngram_hashes_by_hand():
    toks = ["not", "good", "é", "</s>"]
    hs = [ft_hash_bytes(t.encode()) for t in toks]
    assert any(h >= 2 ** 31 for h in hs)           # the sign extension matters for this text
    bucket = 1000003
    want = []
    for i in range(len(hs)):
        g = _sext(hs[i])
        for j in range(i + 1, min(len(hs), i + 3)):
            g = (g * 116049371 + _sext(hs[j])) % 2 ** 64
            want.append(g % bucket)
    got = word_ngram_features(np.array(hs, dtype=np.uint32), 3, bucket)
    assert got.tolist() == want
    assert word_ngram_features(np.array(hs, dtype=np.uint32), 1, bucket).size == 0


def test_loss_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    W, O = rng.normal(0, 0.5, (12, 4)), rng.normal(0, 0.5, (3, 4))
    feats, y = np.array([1, 5, 5, 9, 11]), 2
    loss, gh, gO, p = loss_and_grads(W, O, feats, y)
    gW = np.zeros_like(W)
    np.add.at(gW, feats, gh / len(feats))
    assert np.isclose(p.sum(), 1.0) and np.isclose(loss, -np.log(p[y]))
    for M, G in ((W, gW), (O, gO)):
        np.testing.assert_allclose(G, numerical_gradient(lambda: loss_and_grads(W, O, feats, y)[0], M), rtol=1e-6, atol=1e-9)
    assert np.abs(gW[5]).max() > 0 and np.all(gW[[0, 2, 3]] == 0)


def test_one_sgd_step_is_the_hand_gradient():
    m = FastTextClassifier(dim=4, word_ngrams=2, bucket=50, lr=0.5, epochs=1, seed=3, lr_update_rate=10 ** 6)
    texts, labels = [["a", "b", "a"], ["c"]], ["x", "y"]
    m.fit(texts[:1] + texts[1:], labels)            # builds everything; redo the first step by hand below
    m2 = FastTextClassifier(dim=4, word_ngrams=2, bucket=50, lr=0.5, epochs=1, seed=3, lr_update_rate=10 ** 6)
    m2.fit(texts, labels)
    np.testing.assert_array_equal(m.input_matrix, m2.input_matrix)      # reproducible
    rng = np.random.default_rng(3)
    V = len(m.words)
    W = ((rng.random((V + 50, 4), dtype=np.float32) * 2 - 1) / 4).astype(np.float32).astype(np.float64)
    O = np.zeros((2, 4))
    for text, y in zip(texts, [0, 1]):
        f = m.features(text)
        _, gh, gO, _ = loss_and_grads(W, O, f, y)
        O -= 0.5 * gO
        np.add.at(W, f, -0.5 * gh / len(f))
    np.testing.assert_allclose(m.output_matrix, O, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(m.input_matrix, W, rtol=1e-5, atol=1e-7)


def _negation_data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    fill = ["the", "movie", "was", "plot", "actors", "really", "quite", "film"]
    texts, labels = [], []
    for i in range(n):
        pos = i % 2 == 0
        core = ["good"] if pos else ["not", "good"]       # only the bigram "not good" tells them apart
        t = list(rng.choice(fill, 3)) + core + list(rng.choice(fill, 2)) + (["not"] if pos else [])
        texts.append([str(w) for w in t])
        labels.append("pos" if pos else "neg")
    return texts, labels


def test_bigrams_learn_what_words_cannot():
    texts, labels = _negation_data()
    bi = FastTextClassifier(dim=8, word_ngrams=2, bucket=10007, lr=0.5, epochs=20).fit(texts, labels)
    uni = FastTextClassifier(dim=8, word_ngrams=1, lr=0.5, epochs=20).fit(texts, labels)
    tt, tl = _negation_data(200, seed=1)
    assert bi.evaluate(tt, tl)["accuracy"] == 1.0
    assert uni.evaluate(tt, tl)["accuracy"] < 0.8


def test_save_load_round_trip(tmp_path):
    texts, labels = _negation_data(100)
    m = FastTextClassifier(dim=4, bucket=1009, epochs=2).fit(texts, labels)
    m.save(tmp_path / "m.npz")
    back = FastTextClassifier.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(back.predict_proba(texts), m.predict_proba(texts))
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="other.npz: not a FastTextClassifier file"):
        FastTextClassifier.load(tmp_path / "other.npz")


def test_bad_input():
    with pytest.raises(ValueError, match=r"bucket=0 leaves no rows for the word n-grams of word_ngrams=2"):
        FastTextClassifier(word_ngrams=2, bucket=0)
    with pytest.raises(ValueError, match=r"dim must be an int >= 1, got 0"):
        FastTextClassifier(dim=0)
    with pytest.raises(ValueError, match=r"lr must be a finite number > 0"):
        FastTextClassifier(lr=float("nan"))
    m = FastTextClassifier(bucket=100)
    with pytest.raises(ValueError, match=r"need at least 2 classes"):
        m.fit([["a"], ["b"]], ["x", "x"])
    with pytest.raises(ValueError, match=r"no training words"):
        m.fit([[], []], ["x", "y"])
    with pytest.raises(ValueError, match=r"3 texts but 2 labels"):
        m.fit([["a"], ["b"], ["c"]], ["x", "y"])
    with pytest.raises(TypeError, match=r"text 1 is a string"):
        m.fit([["a"], "b c"], ["x", "y"])
    with pytest.raises(ValueError, match=r"call fit\(\) first"):
        m.predict([["a"]])
    m.fit([["a"], ["b"]], ["x", "y"])
    with pytest.raises(ValueError, match=r"label\(s\) \['z'\] unknown"):
        m.evaluate([["a"]], ["z"])


def test_cli_classify_model_fasttext(tmp_path, capsys):
    from rnnlab import cli

    texts, labels = _negation_data(300)
    csv = tmp_path / "d.csv"
    csv.write_text("review,sentiment\n" + "".join(f"{' '.join(t)},{lab}\n" for t, lab in zip(texts, labels)))
    out = tmp_path / "run"
    rc = cli.main(["train", "classify", "--model", "fasttext", "--data", str(csv), "--train-rows", "200",
                   "--ft-dim", "8", "--ft-lr", "0.5", "--ft-epochs", "20", "--bucket", "10007", "--out", str(out)])
    assert rc == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["model_type"] == "fasttext" and metrics["test_accuracy"] == 1.0
    assert metrics["train_texts"] == 200 and metrics["test_texts"] == 100 and metrics["train_cpu_seconds"] >= 0
    m = FastTextClassifier.load(out / "model_fasttext.npz")
    assert m.classes == ["neg", "pos"]
    rc = cli.main(["train", "classify", "--model", "fasttext", "--data", str(csv), "--train-rows", "200",
                   "--ft-dim", "8", "--ft-lr", "0.5", "--ft-epochs", "20", "--bucket", "10007", "--ft-loss", "hs",
                   "--out", str(tmp_path / "hs")])
    assert rc == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["test_accuracy"] == 1.0
    assert FastTextClassifier.load(tmp_path / "hs" / "model_fasttext.npz").loss == "hs"
    assert cli.main(["train", "classify", "--model", "fasttext", "--data", str(csv), "--word-ngrams", "2",
                     "--bucket", "0", "--out", str(out)]) == 1
    assert "bucket=0" in capsys.readouterr().err


def _write_sup_bin(path, words, labels, bucket, dim, rng, loss=3, label_counts=None):
    import struct

    label_counts = label_counts or [3] * len(labels)
    with open(path, "wb") as f:
        f.write(struct.pack("<ii", 793712314, 12))
        f.write(struct.pack("<12id", dim, 5, 5, 1, 5, 2, loss, 3, bucket, 0, 0, 100, 1e-4))  # loss 3 softmax, 1 hs
        f.write(struct.pack("<iiiqq", len(words) + len(labels), len(words), len(labels), 100, -1))
        for w in words:
            f.write(w.encode() + b"\0" + struct.pack("<qb", 3, 0))
        for lab, c in zip(labels, label_counts):
            f.write(lab.encode() + b"\0" + struct.pack("<qb", c, 1))
        W = rng.normal(size=(len(words) + bucket, dim)).astype("<f4")
        O = rng.normal(size=(len(labels), dim)).astype("<f4")
        for M in (W, O):
            f.write(struct.pack("<?qq", False, *M.shape) + M.tobytes())
    return W, O


def test_from_facebook_supervised_bin(tmp_path):
    rng = np.random.default_rng(0)
    words, labels = ["</s>", "good", "not", "movie"], ["__label__pos", "__label__neg"]
    W, O = _write_sup_bin(tmp_path / "s.bin", words, labels, 11, 3, rng)
    m = FastTextClassifier.from_facebook(tmp_path / "s.bin")
    assert m.classes == labels and m.words == words and m.bucket == 11 and m.word_ngrams == 2
    text = ["not", "good", "unknown"]
    toks = text + ["</s>"]
    hs = [ft_hash_bytes(t.encode()) for t in toks]
    feats = [words.index(t) for t in toks if t in words]
    feats += [4 + ((_sext(hs[i]) * 116049371 + _sext(hs[i + 1])) % 2 ** 64) % 11 for i in range(3)]
    h = W[feats].astype(np.float64).mean(axis=0)
    z = O.astype(np.float64) @ h
    p = np.exp(z - z.max())
    np.testing.assert_allclose(m.predict_proba([text])[0], p / p.sum(), rtol=1e-6)
    from rnnlab.embeddings.fasttext_io import load_facebook_model

    assert load_facebook_model(tmp_path / "s.bin").labels == labels


# ------------------------------------------------------------------------------ hierarchical softmax
def test_huffman_tree_by_hand():
    # Facebook's buildTree on counts sorted 5 (class 0), 3 (class 2), 2 (class 3), 1 (class 1): merge 2+1 -> n0
    # (class 3 code 1), then n0 (3) with class 2 (3; the leaf is not < the node, so n0 first) -> n1 (class 2
    # code 1), then class 0 with n1 (6) -> n2 (n1 code 1)
    paths, codes = huffman_paths([5, 1, 3, 2])
    assert [p.tolist() for p in paths] == [[2], [0, 1, 2], [1, 2], [0, 1, 2]]
    assert [c.tolist() for c in codes] == [[0], [0, 0, 1], [1, 1], [1, 0, 1]]
    # two classes: one inner node, the more frequent class takes code 1
    p2, c2 = huffman_paths([4, 9])
    assert [p.tolist() for p in p2] == [[0], [0]] and [c.tolist() for c in c2] == [[0], [1]]
    with pytest.raises(ValueError, match="at least 2 classes"):
        huffman_paths([3])


@pytest.mark.parametrize("counts", [[5, 1, 3, 2], [1, 1, 1, 1, 1, 1, 1], [10, 3]])
def test_hs_probabilities_sum_to_one_and_gradients_match_finite_differences(counts):
    rng = np.random.default_rng(len(counts))
    K = len(counts)
    paths, codes = huffman_paths(counts)
    W, O = rng.normal(0, 0.5, (12, 4)), rng.normal(0, 0.5, (K, 4))
    feats = np.array([1, 5, 5, 9, 11])
    losses = [hs_loss_and_grads(W, O, feats, paths[k], codes[k])[0] for k in range(K)]
    assert np.isclose(np.exp(-np.array(losses)).sum(), 1.0)
    y = K - 1
    loss, gh, gO = hs_loss_and_grads(W, O, feats, paths[y], codes[y])
    gW = np.zeros_like(W)
    np.add.at(gW, feats, gh / len(feats))
    for M, G in ((W, gW), (O, gO)):
        np.testing.assert_allclose(G, numerical_gradient(lambda: hs_loss_and_grads(W, O, feats, paths[y], codes[y])[0], M), rtol=1e-6, atol=1e-9)
    assert np.abs(gO[paths[y]]).min() > 0 and np.all(gO[K - 1] == 0)       # the last row is no inner node


def test_hs_sgd_steps_are_the_hand_gradient_and_predict_proba_is_the_tree():
    texts = [["a", "b", "a"], ["c"], ["b", "d"], ["a", "d"]]
    labels = ["x", "y", "z", "z"]
    kw = dict(dim=4, word_ngrams=2, bucket=50, lr=0.5, epochs=1, seed=3, lr_update_rate=10 ** 6, loss="hs")
    m = FastTextClassifier(**kw).fit(texts, labels)
    assert m.class_counts.tolist() == [1, 1, 2]
    paths, codes = huffman_paths([1, 1, 2])
    rng = np.random.default_rng(3)
    V = len(m.words)
    W = ((rng.random((V + 50, 4), dtype=np.float32) * 2 - 1) / 4).astype(np.float32).astype(np.float64)
    O = np.zeros((3, 4))
    for text, y in zip(texts, [0, 1, 2, 2]):
        f = m.features(text)
        _, gh, gO = hs_loss_and_grads(W, O, f, paths[y], codes[y])
        O -= 0.5 * gO
        np.add.at(W, f, -0.5 * gh / len(f))
    np.testing.assert_allclose(m.output_matrix, O, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(m.input_matrix, W, rtol=1e-5, atol=1e-7)
    P = m.predict_proba(texts)
    expect = [[np.exp(-hs_loss_and_grads(W, O, m.features(t), paths[k], codes[k])[0]) for k in range(3)]
              for t in texts]
    np.testing.assert_allclose(P, expect, rtol=1e-5)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-12)


def test_hs_learns_and_round_trips(tmp_path):
    texts, labels = _negation_data()
    m = FastTextClassifier(dim=8, word_ngrams=2, bucket=10007, lr=0.5, epochs=20, loss="hs").fit(texts, labels)
    tt, tl = _negation_data(200, seed=1)
    assert m.evaluate(tt, tl)["accuracy"] == 1.0
    m.save(tmp_path / "hs.npz")
    back = FastTextClassifier.load(tmp_path / "hs.npz")
    assert back.loss == "hs" and back.class_counts.tolist() == m.class_counts.tolist()
    np.testing.assert_array_equal(back.predict_proba(tt), m.predict_proba(tt))
    with pytest.raises(ValueError, match=r"loss must be 'softmax' or 'hs', got 'ns'"):
        FastTextClassifier(loss="ns")


def test_from_facebook_hs_bin(tmp_path):
    rng = np.random.default_rng(1)
    words, labels = ["</s>", "good", "not", "movie"], ["__label__a", "__label__b", "__label__c"]
    W, O = _write_sup_bin(tmp_path / "h.bin", words, labels, 11, 3, rng, loss=1, label_counts=[7, 4, 2])
    m = FastTextClassifier.from_facebook(tmp_path / "h.bin")
    assert m.loss == "hs" and m.classes == labels
    text = ["not", "good", "movie"]
    h = W[m.features(text)].astype(np.float64).mean(axis=0)
    s = 1 / (1 + np.exp(-(O.astype(np.float64) @ h)))
    # tree of counts 7, 4, 2: n0 = {c (2), b (4, code 1)}, n1 = {a (7), n0 (6)}: n0 < a, so n0 first, a code 1
    expect = [s[1], (1 - s[1]) * s[0], (1 - s[1]) * (1 - s[0])]
    np.testing.assert_allclose(m.predict_proba([text])[0], expect, rtol=1e-6)
    _write_sup_bin(tmp_path / "ns.bin", words, labels, 11, 3, rng, loss=2)
    with pytest.raises(ValueError, match=r"ns.bin: the model was trained with loss=ns"):
        FastTextClassifier.from_facebook(tmp_path / "ns.bin")


def test_hs_matches_the_fasttext_package(tmp_path):
    """The package's own hs model read into rnnlab gives the package's probabilities for every label."""
    fasttext = pytest.importorskip("fasttext", reason="the fasttext package is an optional test dependency")
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(30)]
    lines = []
    for i in range(1000):
        k = int(rng.integers(0, 4)) if i % 3 else 0           # label 0 most frequent
        toks = [vocab[(k * 3 + int(j)) % 30] for j in rng.integers(0, 12, 6)]   # overlapping vocabularies
        lines.append(f"__label__{k} " + " ".join(toks))
    (tmp_path / "t.txt").write_text("\n".join(lines) + "\n")
    texts = [line.split()[1:] for line in lines[:40]]
    # This build of the package is erratic on small files (see test_fasttext_io): it raises "Encountered NaN"
    # at random, and some trainings end saturated (every probability 0 or 1, nothing to compare). Retry
    # (a training takes ~0.1 s) until one gives intermediate probabilities for most texts, else skip.
    for _ in range(20):
        try:
            ft = fasttext.train_supervised(str(tmp_path / "t.txt"), loss="hs", dim=5, epoch=5, lr=0.05,
                                           wordNgrams=2, bucket=10000, thread=1, verbose=0)
        except RuntimeError as e:
            if "NaN" not in str(e):
                raise
            continue
        # a list goes through multilinePredict (the one-line path uses np.array(copy=False), refused by NumPy 2)
        all_labs, all_probs = ft.predict([" ".join(t) for t in texts], k=-1, threshold=0.0)
        if sum(len(labs) == 4 and max(p) < 0.99 for labs, p in zip(all_labs, all_probs)) >= 20:
            break
    else:
        pytest.skip("the fasttext package kept failing ('Encountered NaN' or saturated) on the small test corpus")
    ft.save_model(str(tmp_path / "m.bin"))
    m = FastTextClassifier.from_facebook(tmp_path / "m.bin")
    assert m.loss == "hs" and len(m.classes) == 4
    P = m.predict_proba(texts)
    assert max(max(p) for p in all_probs) > 0.5                   # a model that learnt something
    # (the package's search may leave out leaves far below the best one, so it can return fewer labels)
    for labs, probs, row in zip(all_labs, all_probs, P):
        assert set(labs) <= set(m.classes) and labs[0] == m.classes[int(np.argmax(row))]
        ours = dict(zip(m.classes, row))
        # the package clips each probability at 1e-5 (std_log of fastText) and returns float32 values
        for lab, p in zip(labs, probs):
            assert abs(ours[lab] - p) < 1e-4 + 1e-3 * p, (lab, ours[lab], p)
