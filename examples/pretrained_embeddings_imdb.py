"""The payoff of word vectors: an IMDB sentiment GRU whose Embedding starts from our word2vec vectors vs random.

    .venv/bin/python examples/pretrained_embeddings_imdb.py                 # full config, see --help
    .venv/bin/python examples/pretrained_embeddings_imdb.py --train-reviews 2000 --test-reviews 1000 --epochs 2

1. Read ``../shared/data/imdb_reviews.csv.gz``: rows 1-25,000 are the official train split, 25,001-50,000 the
   test split. ``--train-reviews`` / ``--test-reviews`` take the first N of each (both splits are sorted by
   review id with negative and positive alternating, so prefixes are balanced).
2. Fit the Keras-style :class:`rnnlab.text.Tokenizer` (``num_words``) on the train texts only.
3. Train :class:`rnnlab.embeddings.Word2Vec` on the text of the train split only (``--w2v-reviews``, all 25,000
   by default, unlabelled use; the same tokens the tokenizer sees: ``text_to_word_sequence(clean_review(text))``);
   the test text is never seen by word2vec.
4. Two identical models, ``Embedding(num_words, dim, mask_zero=True) -> GRU(units) -> Dense(1, sigmoid)``,
   Adam, binary cross-entropy, same seed and batch order: one with ``Embedding.from_vectors(wv, tokenizer)``
   (rows of words without a vector drawn as Keras would, U(-0.05, 0.05)), one with the usual random init.
   Held-out accuracy (the test reviews) after every epoch.

Prints both curves, the first epoch at which the pretrained model reaches the random model's best held-out
accuracy, and writes ``curves.json`` and ``curves.png`` (matplotlib) into ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import rnnlab  # noqa: E402
from rnnlab.datasets.imdb import read_imdb_csv, texts_to_ids  # noqa: E402
from rnnlab.embeddings import KeyedVectors, Word2Vec, load_vectors  # noqa: E402
from rnnlab.layers import GRU, LSTM, Dense, Embedding  # noqa: E402
from rnnlab.models import Sequential  # noqa: E402
from rnnlab.text import clean_review, text_to_word_sequence  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "imdb_reviews.csv.gz")


def build_model(args, tokenizer, wv=None):
    rnnlab.set_random_seed(args.seed)             # same initial GRU/Dense weights for both models
    if wv is None:
        emb = Embedding(args.num_words, args.dim, mask_zero=True)
    else:
        emb = Embedding.from_vectors(wv, tokenizer, trainable=not args.freeze, mask_zero=True)
    cell = GRU if args.cell == "gru" else LSTM
    model = Sequential([emb, cell(args.units), Dense(1, activation="sigmoid")])
    model.compile(optimizer=rnnlab.optimizers.Adam(learning_rate=args.lr), loss="binary_crossentropy",
                  metrics=["accuracy"])
    model.build((None, args.maxlen))
    return model, emb


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--train-reviews", type=int, default=25000)
    ap.add_argument("--test-reviews", type=int, default=25000, help="held-out reviews (first N of the test split)")
    ap.add_argument("--num-words", type=int, default=20000)
    ap.add_argument("--maxlen", type=int, default=200)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--units", type=int, default=64)
    ap.add_argument("--cell", choices=["gru", "lstm"], default="gru")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--freeze", action="store_true", help="pretrained Embedding with trainable=False")
    ap.add_argument("--sg", type=int, choices=[0, 1], default=1, help="word2vec model: 1 skip-gram, 0 CBOW")
    ap.add_argument("--w2v-epochs", type=int, default=5)
    ap.add_argument("--w2v-reviews", type=int, default=25000,
                    help="word2vec text: the first N reviews of the train split (all 25,000 by default)")
    ap.add_argument("--vectors", default=None, help="use this word2vec file instead of training (e.g. a saved vectors.bin)")
    ap.add_argument("--vector-scale", choices=["unit", "none"], default="unit",
                    help="unit: scale every pretrained vector to length 1 (default); none: raw word2vec vectors")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=os.path.join("runs", "pretrained_imdb"))
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    t0 = time.perf_counter()
    texts, labels = read_imdb_csv(args.data)
    if len(texts) != 50000:
        print(f"warning: {args.data} has {len(texts)} rows, expected 50,000 (25k train + 25k test)")
    tr_texts, y_tr = texts[:min(args.train_reviews, 25000)], labels[:min(args.train_reviews, 25000)]
    te_texts, y_te = texts[25000:25000 + args.test_reviews], labels[25000:25000 + args.test_reviews]
    x_tr, x_te, tok = texts_to_ids(tr_texts, te_texts, num_words=args.num_words, maxlen=args.maxlen)
    print(f"train {len(x_tr)} reviews, held-out {len(x_te)} (test split), maxlen {args.maxlen}, "
          f"vocabulary {args.num_words} ({time.perf_counter() - t0:.1f}s)", flush=True)

    w2v_info = {}
    if args.vectors:
        kv = load_vectors(args.vectors)
        print(f"vectors from {args.vectors}: {len(kv):,} words x {kv.vector_size}", flush=True)
    else:
        t = time.perf_counter()
        c = time.process_time()
        w2v_texts = texts[:min(args.w2v_reviews, 25000)]                     # train-split text only
        sents = [text_to_word_sequence(clean_review(s)) for s in w2v_texts]
        w2v = Word2Vec(sents, vector_size=args.dim, sg=args.sg, window=5, min_count=5, negative=5,
                       epochs=args.w2v_epochs, seed=args.seed, workers=1)
        w2v_s, w2v_cpu = time.perf_counter() - t, time.process_time() - c
        n_words = sum(len(s) for s in sents)
        kv = w2v.wv
        kv.save_word2vec_format(os.path.join(args.out, "vectors.bin"), binary=True)
        print(f"word2vec ({'skip-gram' if args.sg else 'CBOW'}) on {len(sents)} train reviews, {n_words:,} words: "
              f"{len(kv):,} words, {w2v_s:.1f}s wall / {w2v_cpu:.1f}s CPU; saved {args.out}/vectors.bin", flush=True)
        w2v_info = {"corpus_words": n_words, "vocab": len(kv), "seconds": w2v_s, "cpu_seconds": w2v_cpu}
    norms = np.linalg.norm(kv.vectors, axis=1)
    print(f"vector norms: median {np.median(norms):.2f}, max {norms.max():.2f}")
    if args.vector_scale == "unit":
        # unit length: the GRU sees inputs of a fixed size (raw word2vec norms of 2-10 saturate its gates at first)
        kv = KeyedVectors(kv.vectors / np.maximum(norms, 1e-12)[:, None], kv.index_to_key)

    results = {"config": vars(args), "train_reviews": len(x_tr), "test_reviews": len(x_te),
               "word2vec": w2v_info, "runs": {}}
    for name, wv in (("pretrained", kv), ("random", None)):
        model, emb = build_model(args, tok, wv)
        if wv is not None:
            results["oov_rows"] = emb.oov_count
            print(f"Embedding.from_vectors: {emb.pretrained_count} rows from word2vec, {emb.oov_count} rows "
                  f"random (no vector), e.g. {emb.oov_words[:8]}")
        rnnlab.set_random_seed(args.seed + 1)      # same batch order for both
        t = time.perf_counter()
        c = time.process_time()
        hist = model.fit(x_tr, y_tr, batch_size=args.batch_size, epochs=args.epochs,
                         validation_data=(x_te, y_te), verbose=0,
                         callbacks=[_EpochPrinter(name)])
        h = hist.history
        results["runs"][name] = {"val_accuracy": [float(v) for v in h["val_accuracy"]],
                                 "accuracy": [float(v) for v in h["accuracy"]],
                                 "val_loss": [float(v) for v in h["val_loss"]],
                                 "seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - c}

    pre, rnd = results["runs"]["pretrained"]["val_accuracy"], results["runs"]["random"]["val_accuracy"]
    best_rnd = max(rnd)
    reach_pre = next((i + 1 for i, v in enumerate(pre) if v >= best_rnd), None)
    reach_rnd = rnd.index(best_rnd) + 1
    results["random_best"] = best_rnd
    results["epochs_to_random_best"] = {"pretrained": reach_pre, "random": reach_rnd}
    print("\n| epoch | pretrained held-out acc. | random held-out acc. |")
    print("|---|---|---|")
    for i in range(args.epochs):
        print(f"| {i + 1} | {100 * pre[i]:.2f}% | {100 * rnd[i]:.2f}% |")
    print(f"\nrandom init: best held-out accuracy {100 * best_rnd:.2f}% at epoch {reach_rnd}; pretrained reaches it "
          + (f"at epoch {reach_pre}" if reach_pre else "in none of the epochs"))
    with open(os.path.join(args.out, "curves.json"), "w") as f:
        json.dump(results, f, indent=1)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ep = np.arange(1, args.epochs + 1)
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(ep, 100 * np.array(pre), "o-", label="word2vec init")
        ax.plot(ep, 100 * np.array(rnd), "s--", label="random init")
        ax.set_xlabel("epoch")
        ax.set_ylabel("held-out accuracy (%)")
        ax.set_xticks(ep)
        ax.set_title(f"IMDB {args.cell.upper()}({args.units}), {len(x_tr)} train reviews")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "curves.png"), dpi=100)
        print(f"wrote {os.path.join(args.out, 'curves.png')}")
    except ImportError:
        print("matplotlib not installed: no PNG")
    return results


class _EpochPrinter(rnnlab.callbacks.Callback):
    def __init__(self, name):
        super().__init__()
        self.name = name
        self.t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        now = time.perf_counter()
        print(f"{self.name}: epoch {epoch + 1} loss {logs.get('loss', float('nan')):.4f} "
              f"acc {logs.get('accuracy', float('nan')):.4f} held-out acc {logs.get('val_accuracy', float('nan')):.4f} "
              f"({now - self.t:.0f}s)", flush=True)
        self.t = now


if __name__ == "__main__":
    main()
