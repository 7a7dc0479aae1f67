"""Supervised fastText classifier: word n-gram hashing, hand-written gradient, SGD step, learning, files,
bad input, and ``rnnlab train classify --model fasttext``."""
import json

import numpy as np
import pytest

from rnnlab.embeddings.fasttext import ft_hash_bytes
from rnnlab.models.fasttext_classifier import FastTextClassifier, loss_and_grads, word_ngram_features


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
    eps = 1e-6
    for M, G in ((W, gW), (O, gO)):
        num = np.zeros_like(M)
        for idx in np.ndindex(M.shape):
            old = M[idx]
            M[idx] = old + eps
            lp = loss_and_grads(W, O, feats, y)[0]
            M[idx] = old - eps
            lm = loss_and_grads(W, O, feats, y)[0]
            M[idx] = old
            num[idx] = (lp - lm) / (2 * eps)
        np.testing.assert_allclose(G, num, rtol=1e-6, atol=1e-9)
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
    assert cli.main(["train", "classify", "--model", "fasttext", "--data", str(csv), "--word-ngrams", "2",
                     "--bucket", "0", "--out", str(out)]) == 1
    assert "bucket=0" in capsys.readouterr().err


def _write_sup_bin(path, words, labels, bucket, dim, rng):
    import struct

    with open(path, "wb") as f:
        f.write(struct.pack("<ii", 793712314, 12))
        f.write(struct.pack("<12id", dim, 5, 5, 1, 5, 2, 3, 3, bucket, 0, 0, 100, 1e-4))   # softmax, supervised
        f.write(struct.pack("<iiiqq", len(words) + len(labels), len(words), len(labels), 100, -1))
        for w in words:
            f.write(w.encode() + b"\0" + struct.pack("<qb", 3, 0))
        for lab in labels:
            f.write(lab.encode() + b"\0" + struct.pack("<qb", 3, 1))
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
