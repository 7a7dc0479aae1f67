"""rnnlab Word2Vec vs gensim on the IMDB reviews: same corpus, hyperparameters and threads.

    .venv/bin/pip install gensim          # optional, benchmark only
    .venv/bin/python benchmarks/word2vec_vs_gensim.py --max-words 5000000 --workers 1

Corpus: the 50,000 reviews of ../shared/data/imdb_reviews.csv.gz, ``<br />`` removed, lowercased, tokens =
letters/digits with inner apostrophes (rnnlab.tasks.word2vec.tokenize), one review = one sentence.
Both sides get the same token lists and hyperparameters (vector_size 100, window 5, min_count 5, negative 5,
sample 1e-3, alpha 0.025 -> 0.0001, epochs 5, seed) and the same number of threads; ``--seeds 1,2`` repeats
every model per seed (gensim, then ours, for each seed: contention on a shared machine hits both alike) and
adds a mean row (the pair correlations move by ~0.02 between seeds).

Quality: there is no IMDB analogy set, so the standard English sets gensim ships in its test data are used:
questions-words.txt (Mikolov's 19,544 analogies; questions with a word outside the vocabulary are skipped,
the same questions for both models since the vocabularies are identical), wordsim353.tsv and simlex999.txt
(Spearman). Speed: corpus words per second of the whole constructor call (vocabulary + training), plus
training alone. Also checks file interop: our binary/text files load in gensim and gensim's in ours.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from rnnlab.embeddings import KeyedVectors, Word2Vec, load_word2vec_format  # noqa: E402
from rnnlab.tasks.word2vec import read_sentences  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "imdb_reviews.csv.gz")


def evaluate(kv, test_dir):
    a = kv.evaluate_word_analogies(os.path.join(test_dir, "questions-words.txt"))
    ws = kv.evaluate_word_pairs(os.path.join(test_dir, "wordsim353.tsv"))
    sl = kv.evaluate_word_pairs(os.path.join(test_dir, "simlex999.txt"))
    return {"analogy_accuracy": a["accuracy"], "analogy_questions": a["total"], "analogy_oov": a["oov"],
            "wordsim353_spearman": ws["spearman"], "wordsim353_oov": ws["oov_ratio"],
            "simlex999_spearman": sl["spearman"], "simlex999_oov": sl["oov_ratio"]}


def interop_check(ours, gensim_kv_cls, gkv):
    """Round trips: ours -> gensim and gensim -> ours, text and binary; max abs difference."""
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for binary in (False, True):
            p = os.path.join(d, "ours.bin" if binary else "ours.txt")
            ours.save_word2vec_format(p, binary=binary)
            g = gensim_kv_cls.load_word2vec_format(p, binary=binary)
            assert g.index_to_key == ours.index_to_key
            out[f"ours_to_gensim_{'bin' if binary else 'txt'}_maxdiff"] = float(np.max(np.abs(g.vectors - ours.vectors)))
            q = os.path.join(d, "g.bin" if binary else "g.txt")
            gkv.save_word2vec_format(q, binary=binary)
            back = load_word2vec_format(q, binary=binary)
            assert back.index_to_key == list(gkv.index_to_key)
            out[f"gensim_to_ours_{'bin' if binary else 'txt'}_maxdiff"] = float(np.max(np.abs(back.vectors - gkv.vectors)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--max-words", type=int, default=None, help="cap the corpus (default: all ~13M words)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--sg", default="0,1", help="models to run: 0 = CBOW, 1 = skip-gram")
    ap.add_argument("--seeds", default="1", help="comma-separated seeds (one run of both sides per seed)")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    try:
        import gensim
        from gensim.models import KeyedVectors as GKV
        from gensim.models import Word2Vec as GW2V
    except ImportError:
        sys.exit("this benchmark needs gensim: .venv/bin/pip install gensim")
    test_dir = os.path.join(os.path.dirname(gensim.__file__), "test", "test_data")
    t = time.perf_counter()
    sents, n = read_sentences(args.data, csv_column="review", max_words=args.max_words)
    print(f"corpus: {len(sents)} reviews, {n:,} words (read+tokenised in {time.perf_counter() - t:.1f}s); "
          f"gensim {gensim.__version__}, threads {args.workers}", flush=True)
    hp = dict(vector_size=100, window=5, min_count=5, negative=5, sample=1e-3, alpha=0.025, min_alpha=0.0001,
              epochs=args.epochs, workers=args.workers)
    results = {"corpus_words": n, "reviews": len(sents), "hyperparameters": hp, "runs": []}
    for sg, seed in [(int(s), int(e)) for s in args.sg.split(",") for e in args.seeds.split(",")]:
        name = "skip-gram" if sg else "CBOW"
        t, c = time.perf_counter(), time.process_time()
        g = GW2V(sents, sg=sg, seed=seed, **hp)
        g_total, g_cpu = time.perf_counter() - t, time.process_time() - c
        gkv = KeyedVectors(g.wv.vectors, g.wv.index_to_key)
        t, c = time.perf_counter(), time.process_time()
        m = Word2Vec(sents, sg=sg, seed=seed, **hp)
        o_total, o_cpu = time.perf_counter() - t, time.process_time() - c
        row = {"model": name, "seed": seed, "vocab": len(m.wv), "same_vocab": m.wv.index_to_key == list(g.wv.index_to_key),
               "gensim_words_per_s": n * args.epochs / g_total, "ours_words_per_s": n * args.epochs / o_total,
               "ours_train_only_words_per_s": m.words_per_second, "gensim_s": g_total, "ours_s": o_total,
               "gensim_cpu_s": g_cpu, "ours_cpu_s": o_cpu,
               "gensim_words_per_cpu_s": n * args.epochs / g_cpu, "ours_words_per_cpu_s": n * args.epochs / o_cpu,
               "gensim": evaluate(gkv, test_dir), "ours": evaluate(m.wv, test_dir)}
        row["speed_ratio"] = row["ours_words_per_s"] / row["gensim_words_per_s"]
        row["speed_ratio_cpu"] = g_cpu / o_cpu
        row["interop"] = interop_check(m.wv, GKV, g.wv)
        results["runs"].append(row)
        print(json.dumps(row, indent=1), flush=True)
    print("\n| model | side | words/s (wall) | words/CPU-s | wall / CPU s | analogy acc. | WS353 rho | SimLex rho |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results["runs"]:
        for side in ("gensim", "ours"):
            e = r[side]
            ratio = "" if side == "gensim" else f" ({r['speed_ratio']:.2f}x)"
            ratio_c = "" if side == "gensim" else f" ({r['speed_ratio_cpu']:.2f}x)"
            print(f"| {r['model']} (seed {r['seed']}) | {side} | {r[side + '_words_per_s']:,.0f}{ratio} | "
                  f"{r[side + '_words_per_cpu_s']:,.0f}{ratio_c} | {r[side + '_s']:.1f} / {r[side + '_cpu_s']:.1f} | "
                  f"{100 * e['analogy_accuracy']:.2f}% ({e['analogy_questions']} q) | {e['wordsim353_spearman']:.3f} | "
                  f"{e['simlex999_spearman']:.3f} |")
    if len(args.seeds.split(",")) > 1:
        print("\nmean over seeds:")
        for name in dict.fromkeys(r["model"] for r in results["runs"]):
            rs = [r for r in results["runs"] if r["model"] == name]
            for side in ("gensim", "ours"):
                mean = {k: float(np.mean([r[side][k] for r in rs]))
                        for k in ("analogy_accuracy", "wordsim353_spearman", "simlex999_spearman")}
                wall = float(np.mean([r[side + "_words_per_s"] for r in rs]))
                cpu = float(np.mean([r[side + "_words_per_cpu_s"] for r in rs]))
                results.setdefault("mean", []).append({"model": name, "side": side, "words_per_s": wall,
                                                       "words_per_cpu_s": cpu, **mean})
                print(f"| {name} | {side} | {wall:,.0f} | {cpu:,.0f} | | {100 * mean['analogy_accuracy']:.2f}% | "
                      f"{mean['wordsim353_spearman']:.3f} | {mean['simlex999_spearman']:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
