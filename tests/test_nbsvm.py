"""NBSVMClassifier (naive-Bayes-scaled n-grams + logistic regression): the NB ratio by hand, the exact n-gram
features, the hand-written gradient against finite differences, learning, validation step choice, files and bad
input."""
import numpy as np
import pytest

from rnnlab.models import NBSVMClassifier
from rnnlab.models.nbsvm import logistic_loss_and_grads, nb_log_count_ratio

CORPUS = [("good film good".split(), "pos"), ("not good".split(), "neg"), ("bad film".split(), "neg"),
          ("great film".split(), "pos")]


def _fit(corpus=CORPUS, **kw):
    texts, labels = zip(*corpus)
    return NBSVMClassifier(**kw).fit(list(texts), list(labels))


def test_vocabulary_and_binarized_features_by_hand():
    m = _fit(steps=1)
    # words by count (film 3, good 3 -> alphabetical), then the rest alphabetically
    assert m.words == ["film", "good", "bad", "great", "not"]
    V = 6
    idx = {w: i + 1 for i, w in enumerate(m.words)}
    bigrams = [("good", "film"), ("film", "good"), ("not", "good"), ("bad", "film"), ("great", "film")]
    assert m.ngram_keys[0].tolist() == sorted(idx[a] * V + idx[b] for a, b in bigrams)
    assert m.n_features == 5 + 5
    # "good film good good unknown": unigrams once each (binarized), the bigrams it knows, unknown words dropped
    d, f = m._pairs([["good", "film", "good", "good", "zzz"], ["zzz"], []])
    keys = m.ngram_keys[0].tolist()
    want = sorted([idx["good"] - 1, idx["film"] - 1] + [5 + keys.index(idx["good"] * V + idx["film"]),
                                                         5 + keys.index(idx["film"] * V + idx["good"])])
    assert d.tolist() == [0] * 4 and f.tolist() == want


def test_nb_ratio_matches_a_hand_computation():
    m = _fit(steps=1)
    # binarized counts per feature (a text counts a feature once), alpha = 1
    # features: film good bad great not | bigrams in key order
    texts = [t for t, _ in CORPUS]
    pos = np.array([lab == "pos" for _, lab in CORPUS])
    d, f = m._pairs(texts)
    X = np.zeros((4, m.n_features))
    X[d, f] = 1
    assert X[0, m.words.index("good")] == 1          # "good" twice in text 0, binarized to 1
    p = 1 + X[pos].sum(0)
    q = 1 + X[~pos].sum(0)
    r = np.log(p / p.sum()) - np.log(q / q.sum())
    np.testing.assert_allclose(m.r[0], r, rtol=1e-6)
    # e.g. "great": p = 1 + 1, q = 1 + 0; |p|_1 = 10 + 6 features seen in positive texts, |q|_1 = 10 + 6
    gi = m.words.index("great")
    assert m.r[0, gi] == pytest.approx(np.log((2 / p.sum()) / (1 / q.sum())), rel=1e-6)
    # the module function directly, on pairs given by hand
    r2 = nb_log_count_ratio(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), np.array([True, False, False]), 4, 0.5)
    p2, q2 = np.array([1.5, 1.5, 0.5, 0.5]), np.array([0.5, 1.5, 1.5, 0.5])
    np.testing.assert_allclose(r2, np.log(p2 / p2.sum()) - np.log(q2 / q2.sum()))


@pytest.mark.parametrize("K", [1, 3])
def test_logistic_loss_gradients_match_finite_differences(K):
    rng = np.random.default_rng(K)
    N, F = 6, 9
    d = np.repeat(np.arange(N), 3)
    f = np.concatenate([rng.choice(F, 3, replace=False) for _ in range(N)])
    w, b, r = rng.normal(0, 0.7, (K, F)), rng.normal(0, 0.3, K), rng.normal(0, 1, (K, F))
    s = np.where(rng.random((N, K)) < 0.5, 1.0, -1.0)
    lam = 0.3
    loss, gw, gb = logistic_loss_and_grads(w, b, r, d, f, s, lam)
    # the loss by its definition
    m = np.zeros((N, K))
    for i, j in zip(d, f):
        m[i] += w[:, j] * r[:, j]
    m += b
    assert loss == pytest.approx(np.log1p(np.exp(-s * m)).sum() / N + 0.5 * lam * (w ** 2).sum(), rel=1e-12)
    eps = 1e-6
    for arr, g in ((w, gw), (b, gb)):
        num = np.zeros_like(arr)
        for ix in np.ndindex(arr.shape):
            old = arr[ix]
            arr[ix] = old + eps
            lp = logistic_loss_and_grads(w, b, r, d, f, s, lam)[0]
            arr[ix] = old - eps
            lm = logistic_loss_and_grads(w, b, r, d, f, s, lam)[0]
            arr[ix] = old
            num[ix] = (lp - lm) / (2 * eps)
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-9)


def _toy(n, seed, classes=("pos", "neg")):
    rng = np.random.default_rng(seed)
    cue = {"pos": ["great", "superb"], "neg": ["awful", "dull"], "mid": ["okay", "fine"]}
    filler = "the a film plot was is it this and actor".split()
    texts, labels = [], []
    for i in range(n):
        lab = classes[i % len(classes)]
        t = list(rng.choice(filler, 6)) + [str(rng.choice(cue[lab]))]
        rng.shuffle(t)
        texts.append(t)
        labels.append(lab)
    return texts, labels


def test_learns_binary_and_multiclass_and_probabilities_sum_to_one():
    tr, ytr = _toy(120, 0)
    te, yte = _toy(60, 1)
    m = NBSVMClassifier(steps=40).fit(tr, ytr)
    assert m.evaluate(te, yte)["accuracy"] == 1.0
    assert m.r.shape == (1, m.n_features) and m.best_step == 40 and m.valid_accuracy is None
    P = m.predict_proba(te)
    np.testing.assert_allclose(P.sum(1), 1.0)
    assert m.predict(te) == [m.classes[k] for k in P.argmax(1)]
    tr3, y3 = _toy(150, 2, ("pos", "neg", "mid"))
    te3, yt3 = _toy(60, 3, ("pos", "neg", "mid"))
    m3 = NBSVMClassifier(steps=40).fit(tr3, y3)
    assert m3.classes == ["mid", "neg", "pos"] and m3.r.shape == (3, m3.n_features)
    assert m3.evaluate(te3, yt3)["accuracy"] == 1.0
    np.testing.assert_allclose(m3.predict_proba(te3).sum(1), 1.0)


def test_validation_keeps_the_best_step():
    tr, ytr = _toy(120, 0)
    va, yva = _toy(40, 5)
    m = NBSVMClassifier(steps=25, eval_every=10, learning_rate=0.05).fit(tr, ytr, validation_data=(va, yva))
    assert m.best_step in (10, 20, 25)
    assert m.valid_accuracy == m.evaluate(va, yva)["accuracy"]
    # the kept weights are those of the best step: training again for exactly that many steps gives them
    again = NBSVMClassifier(steps=m.best_step, learning_rate=0.05).fit(tr, ytr)
    np.testing.assert_array_equal(again.weights, m.weights)


def test_save_load_round_trip(tmp_path):
    tr, ytr = _toy(90, 0, ("pos", "neg", "mid"))
    m = NBSVMClassifier(steps=15, ngrams=3).fit(tr, ytr)
    path = m.save(tmp_path / "nb.npz")
    m2 = NBSVMClassifier.load(path)
    assert (m2.words, m2.classes, m2.ngrams, m2.best_step) == (m.words, m.classes, 3, 15)
    assert [k.tolist() for k in m2.ngram_keys] == [k.tolist() for k in m.ngram_keys]
    te, _ = _toy(30, 4, ("pos", "neg", "mid"))
    np.testing.assert_array_equal(m2.predict_proba(te), m.predict_proba(te))


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="ngrams must be an int in \\[1, 3\\], got 4"):
        NBSVMClassifier(ngrams=4)
    with pytest.raises(ValueError, match="C must be a finite number > 0, got 0"):
        NBSVMClassifier(C=0)
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        NBSVMClassifier(steps=1.5)
    with pytest.raises(TypeError, match="not a string"):
        NBSVMClassifier().fit("good film", ["pos"])
    with pytest.raises(TypeError, match="text 1 is a string"):
        NBSVMClassifier().fit([["a"], "b c"], ["x", "y"])
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        NBSVMClassifier().fit([["a"], ["b"]], ["x"])
    with pytest.raises(ValueError, match="need at least 2 classes"):
        NBSVMClassifier().fit([["a"], ["b"]], ["x", "x"])
    with pytest.raises(ValueError, match="no word occurs min_count=5"):
        NBSVMClassifier(min_count=5).fit([["a"], ["b"]], ["x", "y"])
    with pytest.raises(ValueError, match="call fit\\(\\) first"):
        NBSVMClassifier().predict_proba([["a"]])
    m = _fit(steps=2)
    with pytest.raises(ValueError, match=r"validation label\(s\) \['zzz'\] are not training classes"):
        NBSVMClassifier(steps=2).fit([["a"], ["b"]], ["x", "y"], validation_data=([["a"]], ["zzz"]))
    with pytest.raises(ValueError, match=r"label\(s\) \['maybe'\] unknown to the model"):
        m.evaluate([["good"]], ["maybe"])
    # files: another kind, a missing array, a wrong shape
    from rnnlab.io import FileFormatError, write_npz

    write_npz(tmp_path / "other.npz", {"x": np.zeros(2)}, {"meta": {"kind": "rnnlab.FastTextClassifier"}})
    with pytest.raises(FileFormatError, match="not an NBSVMClassifier file \\(kind 'rnnlab.FastTextClassifier'\\)"):
        NBSVMClassifier.load(tmp_path / "other.npz")
    path = m.save(tmp_path / "ok.npz")
    from rnnlab.io import read_npz

    arrays, docs = read_npz(path, docs=("meta",))
    meta = docs["meta"]
    arrays["weights"] = arrays["weights"][:, :-1]
    write_npz(tmp_path / "bad.npz", arrays, {"meta": meta})
    with pytest.raises(FileFormatError, match=r"bad.npz: weights is float32 \(1, 9\); the settings need a float "
                                              r"array of shape \(1, 10\)"):
        NBSVMClassifier.load(tmp_path / "bad.npz")
    del arrays["keys_2"]
    arrays["weights"] = m.weights
    write_npz(tmp_path / "nokeys.npz", arrays, {"meta": meta})
    with pytest.raises(FileFormatError, match="keys_2 is missing; expected a 1-D int64 array"):
        NBSVMClassifier.load(tmp_path / "nokeys.npz")


def test_too_many_features_for_memory_is_a_clear_error(monkeypatch):
    import rnnlab.io as rio

    monkeypatch.setattr(rio, "available_memory", lambda: 1000)
    monkeypatch.setattr(rio, "MIN_CHECKED_BYTES", 0)
    tr, ytr = _toy(30, 0, ("pos", "neg", "mid"))
    with pytest.raises(rio.MemoryLimitError, match=r"NBSVMClassifier.fit: 3 x [0-9,]+ features \(ratios, weights, "
                                                   r"gradient, Adam state\) needs"):
        NBSVMClassifier(steps=1).fit(tr, ytr)
