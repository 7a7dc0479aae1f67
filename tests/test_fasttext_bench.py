"""The fastText benchmark's rare-word protocol on a tiny corpus (held-out forms, OOV scoring)."""
import importlib.util
import os

import numpy as np

from rnnlab.embeddings import FastText, Word2Vec

_SPEC = importlib.util.spec_from_file_location(
    "fasttext_vs_gensim", os.path.join(os.path.dirname(__file__), "..", "benchmarks", "fasttext_vs_gensim.py"))
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)


def test_held_out_forms_and_oov_scores():
    base = ["walk", "talk", "jump", "play", "look", "the", "dog", "cat", "park", "runs"]
    rng = np.random.default_rng(0)
    sents = []
    for _ in range(600):
        w = str(rng.choice(base))
        sents.append(["the", "dog", w, w + "ed", "in", "the", "park"] if w in base[:5] else ["a", w, "cat"])
    forms = bench.pick_held_out(sents, 3, seed=1)
    assert len(forms) == 3
    assert all(f == lemma + "ed" and lemma in base[:5] for f, lemma in forms.items())
    assert not set(forms) & set(forms.values())
    train = [[w for w in s if w not in forms] for s in sents]
    ft = FastText(train, vector_size=16, min_count=1, sg=1, epochs=3, bucket=5000, seed=1)
    assert not any(ft.wv.has_index_for(f) for f in forms)
    r = bench.rare_word_scores(lambda w: ft.wv[w] if w in ft.wv else None, ft.wv, forms, 0)
    assert r["covered"] == 3 and r["held_out"] == 3 and -1 <= r["mean_cos_lemma"] <= 1
    w2v = Word2Vec(train, vector_size=16, min_count=1, sg=1, epochs=1)
    r = bench.rare_word_scores(lambda w: w2v.wv[w] if w in w2v.wv else None, w2v.wv, forms, 0)
    assert r["covered"] == 0 and r["mean_cos_lemma"] is None and r["lemma_in_top10"] == 0.0


def test_update_order_reference_runs_and_measures_training_inputs():
    """benchmarks/fasttext_update_order.py: the per-pair NumPy reference trains (outputs leave 0, inputs move)
    and the norms it reports are of x(w) = summed subword rows / number of n-grams."""
    spec = importlib.util.spec_from_file_location(
        "fasttext_update_order", os.path.join(os.path.dirname(__file__), "..", "benchmarks",
                                              "fasttext_update_order.py"))
    order = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(order)
    sents = [["the", "dog", "runs", "fast"], ["a", "cat", "runs", "slowly"]] * 20
    hp = dict(vector_size=6, window=2, min_count=1, negative=2, sample=0.0, alpha=0.025, min_alpha=0.0001,
              epochs=1, workers=1, sg=1, seed=3, min_n=3, max_n=6, bucket=500)
    counts, X, Y = order.sequential_reference(sents, hp, seed=0)
    start = FastText(**hp)
    start.build_vocab(sents)
    kv = start.wv
    rows = [kv.subword_rows[kv.subword_offsets[i]:kv.subword_offsets[i] + kv.subword_lengths[i]]
            for i in range(len(kv))]
    X0 = order.training_inputs(start.input_matrix, rows)
    i = kv.key_to_index["slowly"]
    hand = start.input_matrix[[i] + [len(kv) + h for h in kv.ngram_rows("slowly")]].sum(axis=0)
    np.testing.assert_allclose(X0[i], hand / len(kv.ngram_rows("slowly")), rtol=1e-6)
    assert counts.tolist() == start.counts.tolist()
    assert np.isfinite(X).all() and np.abs(Y).min() > 0 and np.abs(X - X0).max() > 1e-3
    r = order.norms_by_count(counts, X, Y)
    assert sum(n for n, _, _ in r.values()) == len(kv)
