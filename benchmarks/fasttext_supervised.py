"""rnnlab's supervised fastText vs the `fasttext` package on the official IMDB split, same tokens and settings.

    .venv/bin/pip install fasttext        # optional, benchmark only
    .venv/bin/python benchmarks/fasttext_supervised.py --dim 10 --word-ngrams 2 --epochs 5 --lr 0.1 [--loss hs]

Data: rows 1-25,000 of ../shared/data/imdb_reviews.csv.gz (the aclImdb train split) for training, rows
25,001-50,000 (the test split) for testing; ``<br />`` removed, lowercased, letters/digits tokens
(rnnlab.tasks.word2vec.tokenize; the same tokens as ``rnnlab train classify --model fasttext``). The package
gets them as ``__label__positive tok tok ...`` lines in a temporary file; rnnlab's classifier the same token
lists. Both: one thread, the same dim / wordNgrams / bucket / lr / epoch / minCount / lrUpdateRate. Times are
the training calls only (package: reading its file + training; rnnlab: vocabulary + n-gram hashing + SGD),
wall and process CPU. Repeats (``--repeats``) give the spread: the package's one thread reads the texts in
file order like rnnlab, but its initialisation is seeded differently.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from rnnlab.models.fasttext_classifier import FastTextClassifier  # noqa: E402
from rnnlab.tasks.word2vec import tokenize  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "imdb_reviews.csv.gz")


def load(path, train_rows=25000):
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    toks = [tokenize(r["review"]) for r in rows]
    labels = [r["sentiment"] for r in rows]
    return (toks[:train_rows], labels[:train_rows]), (toks[train_rows:], labels[train_rows:])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--dim", type=int, default=10)
    ap.add_argument("--word-ngrams", type=int, default=2)
    ap.add_argument("--bucket", type=int, default=2000000)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--loss", choices=["softmax", "hs"], default="softmax", help="both sides' loss")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    (xtr, ytr), (xte, yte) = load(args.data)
    print(f"IMDB official split: {len(xtr)} train / {len(xte)} test reviews, "
          f"{sum(map(len, xtr)):,} training tokens", flush=True)
    res = {"settings": vars(args), "runs": []}
    try:
        import fasttext
    except ImportError:
        fasttext = None
        print("the fasttext package is not installed: rnnlab only (pip install fasttext)", flush=True)
    with tempfile.TemporaryDirectory() as d:
        tr_file, te_file = os.path.join(d, "train.txt"), os.path.join(d, "test.txt")
        for path, xs, ys in ((tr_file, xtr, ytr), (te_file, xte, yte)):
            with open(path, "w", encoding="utf-8") as f:
                for x, y in zip(xs, ys):
                    f.write(f"__label__{y} " + " ".join(x) + "\n")
        for rep in range(args.repeats):
            if fasttext is not None:
                t, c = time.perf_counter(), time.process_time()
                m = fasttext.train_supervised(tr_file, dim=args.dim, wordNgrams=args.word_ngrams, bucket=args.bucket,
                                              lr=args.lr, epoch=args.epochs, minCount=1, thread=1, verbose=0,
                                              loss=args.loss)
                wall, cpu = time.perf_counter() - t, time.process_time() - c
                n, prec, _ = m.test(te_file)
                res["runs"].append({"side": "fasttext package", "repeat": rep, "accuracy": prec, "test_texts": n,
                                    "train_wall_s": wall, "train_cpu_s": cpu})
                if rep == 0:
                    # the package's own model read by rnnlab: same word/bigram features -> same predictions
                    bin_path = os.path.join(d, "sup.bin")
                    m.save_model(bin_path)
                    mine = FastTextClassifier.from_facebook(bin_path)
                    theirs = [lab[0] for lab in m.predict([" ".join(x) for x in xte], k=1)[0]]
                    agree = float(np.mean([a == b for a, b in zip(mine.predict(xte), theirs)]))
                    res["package_model_in_rnnlab_prediction_agreement"] = agree
                    print(f"the package's .bin read by rnnlab: predictions agree on {100 * agree:.2f}% of the "
                          "test reviews", flush=True)
                print(json.dumps(res["runs"][-1]), flush=True)
                del m
            ours = FastTextClassifier(dim=args.dim, word_ngrams=args.word_ngrams, bucket=args.bucket, lr=args.lr,
                                      epochs=args.epochs, min_count=1, seed=rep, loss=args.loss)
            ours.fit(xtr, ytr)
            ev = ours.evaluate(xte, yte)
            res["runs"].append({"side": "rnnlab", "repeat": rep, "accuracy": ev["accuracy"], "test_texts": len(xte),
                                "train_wall_s": ours.train_seconds, "train_cpu_s": ours.train_cpu_seconds})
            print(json.dumps(res["runs"][-1]), flush=True)
            del ours
    print("\n| side | test accuracy | train wall s | train CPU s |")
    print("|---|---|---|---|")
    for side in dict.fromkeys(r["side"] for r in res["runs"]):
        rs = [r for r in res["runs"] if r["side"] == side]
        acc = [r["accuracy"] for r in rs]
        print(f"| {side} | {100 * np.mean(acc):.2f}%" + (f" (min {100 * min(acc):.2f}, max {100 * max(acc):.2f})"
                                                         if len(rs) > 1 else "")
              + f" | {np.mean([r['train_wall_s'] for r in rs]):.1f} | {np.mean([r['train_cpu_s'] for r in rs]):.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
