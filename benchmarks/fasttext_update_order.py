"""Why rnnlab's and gensim's skip-gram fastText vectors differ in scale: the order of the updates.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/fasttext_update_order.py --max-words 30000 --epochs 2

Trains three skip-gram fastText models on the first ``--max-words`` IMDB words (same settings) and prints the
mean norms of the training inputs ``x`` (a word's summed subword rows over its n-gram count) and of the output
vectors ``y``, by word count:

* gensim's ``FastText`` (its Cython loop: one (centre, context) pair at a time, weights updated after each);
* rnnlab's ``FastText(update="chunk")`` (chunks of ~1000 words, every update of a chunk computed from the
  chunk's start) and ``FastText(update="pair")`` (the compiled per-pair loop, when it is built);
* a sequential reference in plain NumPy: gensim's loop order and update rule (the centre's subword rows
  predict each context word with its own noise words, every row updated after every pair), with rnnlab's
  sampling tables, windows, learning-rate schedule and the exact sigmoid. One Python step per pair: ~3k
  words/s, for small corpora only.

If the reference lands on gensim's norms and rnnlab's chunked training does not, the update order (not the
sigmoid table, the noise table, subsampling or windows, which the reference shares with rnnlab) is what
separates them. Measured: docs/results.md (fastText section).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from rnnlab import _native  # noqa: E402
from rnnlab.embeddings import FastText  # noqa: E402
from rnnlab.tasks.word2vec import read_sentences  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "imdb_reviews.csv.gz")
BINS = ((0, 10), (10, 100), (100, None))


def norms_by_count(counts, X, Y):
    out = {}
    for lo, hi in BINS:
        sel = np.nonzero((counts >= lo) & (counts < (hi or np.inf)))[0]
        if not len(sel):                                     # no word in this band: no mean
            out[f"count {lo}-{hi or ''}"] = (0, float("nan"), float("nan"))
            continue
        out[f"count {lo}-{hi or ''}"] = (len(sel), float(np.linalg.norm(X[sel], axis=1).mean()),
                                          float(np.linalg.norm(Y[sel], axis=1).mean()))
    return out


def training_inputs(W, rows):
    """x(w) = summed rows / number of n-grams (gensim's training divisor, rnnlab's default)."""
    return np.stack([W[r].sum(0) / max(len(r) - 1, 1) for r in rows])


def sequential_reference(sents, hp, seed=5):
    """gensim's per-pair loop in NumPy on an rnnlab model's vocabulary, tables and initial weights."""
    m = FastText(**hp, update="chunk")
    m.build_vocab(sents)
    kv = m.wv
    rows = [kv.subword_rows[kv.subword_offsets[i]:kv.subword_offsets[i] + kv.subword_lengths[i]]
            for i in range(len(kv))]
    W, Y = m.input_matrix, m.syn1neg
    rng = np.random.default_rng(seed)
    total, done = hp["epochs"] * m.corpus_word_count, 0
    ends = np.cumsum(m.sentence_lengths)
    K = hp["negative"]
    for _ in range(hp["epochs"]):
        for s0, s1 in zip(ends - m.sentence_lengths, ends):
            alpha = max(hp["alpha"] - (hp["alpha"] - hp["min_alpha"]) * done / total, hp["min_alpha"])
            ids = m.corpus_ids[s0:s1]
            ids = ids[rng.random(len(ids)) < m._keep[ids]]
            red = hp["window"] - rng.integers(0, hp["window"], len(ids))
            for i in range(len(ids)):
                ri = rows[ids[i]]
                div = max(len(ri) - 1, 1)
                for j in range(max(0, i - red[i]), min(len(ids), i + red[i] + 1)):
                    if j == i:
                        continue
                    neu1 = W[ri].sum(0) / div                       # the centre's input, fresh for every pair
                    tg = np.concatenate([[ids[j]], m._draw_noise(rng, (K,))])
                    keep = np.ones(K + 1, bool)
                    keep[1:] = tg[1:] != ids[j]
                    tg = tg[keep]
                    label = np.zeros(len(tg), np.float32)
                    label[0] = 1.0
                    g = (label - 1.0 / (1.0 + np.exp(-(Y[tg] @ neu1)))) * alpha
                    work = g @ Y[tg]
                    np.add.at(Y, tg, g[:, None] * neu1[None, :])
                    np.add.at(W, ri, np.broadcast_to(work, (len(ri), len(work))))
            done += s1 - s0
    return m.counts, training_inputs(W, rows), Y


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--max-words", type=int, default=30000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    try:
        from gensim.models import FastText as GFT
    except ImportError:
        sys.exit("this benchmark needs gensim: .venv/bin/pip install gensim")
    sents, _ = read_sentences(args.data, csv_column="review", max_words=args.max_words)
    hp = dict(vector_size=50, window=5, min_count=3, negative=5, sample=1e-3, alpha=0.025, min_alpha=0.0001,
              epochs=args.epochs, workers=1, sg=1, seed=args.seed, min_n=3, max_n=6, bucket=200000)
    res = {}
    g = GFT(sents, **hp)
    gx = np.stack([(g.wv.vectors_vocab[i] + g.wv.vectors_ngrams[g.wv.buckets_word[i]].sum(0))
                   / max(len(g.wv.buckets_word[i]), 1) for i in range(len(g.wv))])
    res["gensim (per pair)"] = norms_by_count(np.array([g.wv.get_vecattr(w, "count") for w in g.wv.index_to_key]),
                                              gx, g.syn1neg)
    for update, name in (("chunk", "rnnlab (chunks)"), ("pair", "rnnlab (per pair, compiled)")):
        if update == "pair" and _native.fasttext_sg_pairs_kernel() is None:
            continue                                        # no compiled loop: the NumPy reference below is it
        m = FastText(sents, **hp, update=update)
        kv = m.wv
        rows = [kv.subword_rows[kv.subword_offsets[i]:kv.subword_offsets[i] + kv.subword_lengths[i]]
                for i in range(len(kv))]
        res[name] = norms_by_count(m.counts, training_inputs(m.input_matrix, rows), m.syn1neg)
    t = time.perf_counter()
    res["reference (per pair, NumPy)"] = norms_by_count(*sequential_reference(sents, hp))
    print(f"{len(sents)} reviews, {sum(map(len, sents)):,} words, {args.epochs} epochs; reference "
          f"{time.perf_counter() - t:.1f} s\n")
    print("| training | " + " | ".join(f"{b}: mean norm x / y" for b in res["gensim (per pair)"]) + " |")
    print("|---|" + "---|" * len(BINS))
    for name, r in res.items():
        print(f"| {name} | " + " | ".join(f"{x:.3f} / {y:.3f} ({n} words)" for n, x, y in r.values()) + " |")


if __name__ == "__main__":
    main()
