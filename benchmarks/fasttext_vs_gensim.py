"""rnnlab FastText vs gensim FastText on the IMDB reviews: same tokens, hyperparameters, one thread each, one process.

    .venv/bin/pip install gensim          # optional, benchmark only
    .venv/bin/python benchmarks/fasttext_vs_gensim.py --max-words 2000000 --epochs 5 --sg 1

Corpus: the reviews of ../shared/data/imdb_reviews.csv.gz tokenised as ``rnnlab train word2vec`` does
(rnnlab.tasks.word2vec.tokenize), one review = one sentence, the first ``--max-words`` words.

Rare words where subwords matter: before training, ``--held-out`` inflected forms (``lemma + s / ed / ing / ly
/ er``, both forms occurring >= 10 times in the corpus, drawn with a fixed seed) are deleted from the training
text. After training, each held-out form is out of vocabulary; fastText still builds its vector from its
character n-grams. Scores: the mean cosine between the held-out form and its lemma, against the mean cosine
between the held-out form and a random vocabulary word (the chance level), and how often the lemma is among
the form's 10 nearest vocabulary words. word2vec trained on the same text has no vector for any of them
(coverage 0), which is what "word2vec's absence of one" means in the table.

Speed: corpus words x epochs per CPU-second of each constructor call (vocabulary + n-gram hashing +
training; ``time.process_time``) and per wall second. Quality: questions-words.txt, wordsim353.tsv and
simlex999.txt shipped in gensim's test data (questions with a word outside the vocabulary are skipped; the
vocabularies are identical).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from rnnlab.embeddings import FastText, KeyedVectors, Word2Vec  # noqa: E402
from rnnlab.tasks.word2vec import read_sentences  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "imdb_reviews.csv.gz")
SUFFIXES = ("s", "ed", "ing", "ly", "er")


def evaluate(kv, test_dir):
    a = kv.evaluate_word_analogies(os.path.join(test_dir, "questions-words.txt"))
    ws = kv.evaluate_word_pairs(os.path.join(test_dir, "wordsim353.tsv"))
    sl = kv.evaluate_word_pairs(os.path.join(test_dir, "simlex999.txt"))
    return {"analogy_accuracy": a["accuracy"], "analogy_questions": a["total"],
            "wordsim353_spearman": ws["spearman"], "simlex999_spearman": sl["spearman"]}


def pick_held_out(sents, k, seed):
    from collections import Counter

    counts = Counter(w for s in sents for w in s)
    pairs = []
    for w, c in counts.items():
        if c < 10 or len(w) < 4:
            continue
        for suf in SUFFIXES:
            f = w + suf
            if counts.get(f, 0) >= 10:
                pairs.append((f, w))
    pairs.sort()
    forms = {}
    rng = np.random.default_rng(seed)
    for i in rng.permutation(len(pairs)):
        f, lemma = pairs[i]
        if f not in forms and lemma not in forms:
            forms[f] = lemma
        if len(forms) == k:
            break
    lemmas = set(forms.values())
    forms = {f: l for f, l in forms.items() if f not in lemmas}        # a held-out form is never a lemma
    return forms


def rare_word_scores(vec_of, kv, forms, seed):
    """vec_of(word) -> vector or None. Mean cos(form, lemma), mean cos(form, random word), lemma in top 10."""
    rng = np.random.default_rng(seed)
    un = kv.get_normed_vectors()
    cos_l, cos_r, top10, covered = [], [], 0, 0
    for f, lemma in forms.items():
        v = vec_of(f)
        if v is None or lemma not in kv.key_to_index:
            continue
        covered += 1
        v = v / max(np.linalg.norm(v), 1e-30)
        sims = un @ v.astype(un.dtype)
        cos_l.append(float(sims[kv.key_to_index[lemma]]))
        cos_r.append(float(sims[rng.integers(0, len(kv))]))
        top10 += kv.key_to_index[lemma] in np.argpartition(-sims, 10)[:10]
    n = len(forms)
    return {"held_out": n, "covered": covered, "mean_cos_lemma": float(np.mean(cos_l)) if cos_l else None,
            "mean_cos_random": float(np.mean(cos_r)) if cos_r else None,
            "lemma_in_top10": top10 / n if n else None}


def run_gensim(GFT, sents, hp, ft, n, args, test_dir, forms, res):
    t, c = time.perf_counter(), time.process_time()
    g = GFT(sents, **hp, **ft)
    g_wall, g_cpu = time.perf_counter() - t, time.process_time() - c
    gkv = KeyedVectors(np.asarray(g.wv.vectors), list(g.wv.index_to_key))
    res["gensim"] = {"wall_s": g_wall, "cpu_s": g_cpu, "words_per_cpu_s": n * args.epochs / g_cpu,
                     "words_per_s": n * args.epochs / g_wall, **evaluate(gkv, test_dir),
                     "rare": rare_word_scores(lambda w: np.asarray(g.wv[w]), gkv, forms, 0)}
    print("gensim", json.dumps(res["gensim"]), flush=True)
    del g
    return gkv


def run_fasttext_package(sents, hp, ft, n, args, test_dir, forms):
    """Facebook's fastText on the same tokens (one line per review; its vocabulary adds the line end </s>)."""
    import tempfile

    import fasttext

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "corpus.txt")
        with open(path, "w", encoding="utf-8") as f:
            for s in sents:
                f.write(" ".join(s) + "\n")
        t, c = time.perf_counter(), time.process_time()
        m = fasttext.train_unsupervised(path, model="skipgram" if hp["sg"] else "cbow", dim=hp["vector_size"],
                                        ws=hp["window"], minCount=hp["min_count"], neg=hp["negative"],
                                        t=hp["sample"], lr=hp["alpha"], epoch=hp["epochs"], minn=ft["min_n"],
                                        maxn=ft["max_n"], bucket=ft["bucket"], thread=1, verbose=0)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
    words = [w for w in m.words if w != "</s>"]
    kv = KeyedVectors(np.stack([m.get_word_vector(w) for w in words]), words)
    return {"wall_s": wall, "cpu_s": cpu, "words_per_cpu_s": n * args.epochs / cpu, "words_per_s": n * args.epochs / wall,
            **evaluate(kv, test_dir), "rare": rare_word_scores(lambda w: m.get_word_vector(w), kv, forms, 0)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--max-words", type=int, default=2000000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--sg", type=int, default=1, choices=[0, 1])
    ap.add_argument("--bucket", type=int, default=2000000)
    ap.add_argument("--held-out", type=int, default=300, help="inflected forms deleted from the training text")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip-word2vec", action="store_true")
    ap.add_argument("--skip-gensim", action="store_true")
    ap.add_argument("--fasttext-package", action="store_true",
                    help="also train Facebook's fasttext package (skipgram/cbow, lr = alpha, t = sample, 1 thread) "
                         "on the same tokens, as a third reference")
    ap.add_argument("--batch-words", type=int, default=None, help="rnnlab's chunk size (default: Word2Vec's)")
    ap.add_argument("--subword-norm", default="gensim",
                    help="rnnlab's skip-gram divisor of the summed subword rows: gensim (n-grams, the default), "
                         "facebook (n-grams + 1), or both comma-separated (one rnnlab run each)")
    ap.add_argument("--update", default=None,
                    help="rnnlab's update order: pair (one (centre, context) pair at a time, gensim's order; the "
                         "compiled loop), chunk (batched chunks), or both comma-separated (one rnnlab run each); "
                         "default: FastText's default")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    try:
        import gensim
        from gensim.models import FastText as GFT
    except ImportError:
        sys.exit("this benchmark needs gensim: .venv/bin/pip install gensim")
    test_dir = os.path.join(os.path.dirname(gensim.__file__), "test", "test_data")
    sents, n_all = read_sentences(args.data, csv_column="review", max_words=args.max_words)
    forms = pick_held_out(sents, args.held_out, args.seed)
    sents = [[w for w in s if w not in forms] for s in sents]
    sents = [s for s in sents if s]
    n = sum(len(s) for s in sents)
    print(f"corpus: {len(sents)} reviews, {n:,} words after deleting {len(forms)} held-out inflected forms "
          f"({n_all - n:,} tokens); gensim {gensim.__version__}, 1 thread each", flush=True)
    hp = dict(vector_size=100, window=5, min_count=5, negative=5, sample=1e-3, alpha=0.025, min_alpha=0.0001,
              epochs=args.epochs, workers=1, sg=args.sg, seed=args.seed)
    ft = dict(min_n=3, max_n=6, bucket=args.bucket)
    res = {"corpus_words": n, "hyperparameters": {**hp, **ft}, "held_out_examples": list(forms.items())[:15]}

    gkv = None
    if not args.skip_gensim:
        gkv = run_gensim(GFT, sents, hp, ft, n, args, test_dir, forms, res)

    if args.fasttext_package:
        res["fasttext package"] = run_fasttext_package(sents, hp, ft, n, args, test_dir, forms)
        print("fasttext package", json.dumps(res["fasttext package"]), flush=True)

    norms = args.subword_norm.split(",")
    updates = [None] if args.update is None else args.update.split(",")
    for norm, upd in ((a, b) for a in norms for b in updates):
        tags = ([norm] if len(norms) > 1 else []) + ([upd] if len(updates) > 1 else [])
        side = "ours" + (f" ({', '.join(tags)})" if tags else "")
        t, c = time.perf_counter(), time.process_time()
        m = FastText(sents, **hp, **ft, batch_words=args.batch_words, subword_norm=norm, update=upd)
        o_wall, o_cpu = time.perf_counter() - t, time.process_time() - c
        res[side] = {"update": m.update, "wall_s": o_wall, "cpu_s": o_cpu, "words_per_cpu_s": n * args.epochs / o_cpu,
                     "words_per_s": n * args.epochs / o_wall, **evaluate(m.wv, test_dir),
                     "same_vocab": None if gkv is None else set(m.wv.index_to_key) == set(gkv.index_to_key),
                     "rare": rare_word_scores(lambda w: m.wv[w] if w in m.wv else None, m.wv, forms, 0)}
        print(side, json.dumps(res[side]), flush=True)
        del m

    if not args.skip_word2vec:
        t, c = time.perf_counter(), time.process_time()
        w = Word2Vec(sents, **hp)
        res["word2vec"] = {"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c,
                           **evaluate(w.wv, test_dir),
                           "rare": rare_word_scores(lambda x: w.wv[x] if x in w.wv else None, w.wv, forms, 0)}
        print("word2vec", json.dumps(res["word2vec"]), flush=True)

    print(f"\n| model | words/CPU-s | words/s (wall) | CPU s / wall s | analogy | WS353 | SimLex | held-out forms "
          f"covered | cos(form, lemma) | cos(form, random) | lemma in top 10 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for side in ("gensim", *(k for k in res if k.startswith("ours")), "fasttext package", "word2vec"):
        if side not in res:
            continue
        e, r = res[side], res[side]["rare"]
        speed = (f"{e['words_per_cpu_s']:,.0f} | {e['words_per_s']:,.0f}" if "words_per_cpu_s" in e else " | ")
        fmt = (lambda x: "-" if x is None else f"{x:.3f}")
        print(f"| {side} | {speed} | {e['cpu_s']:.1f} / {e['wall_s']:.1f} | {100 * e['analogy_accuracy']:.2f}% "
              f"({e['analogy_questions']} q) | {e['wordsim353_spearman']:.3f} | {e['simlex999_spearman']:.3f} | "
              f"{r['covered']} / {r['held_out']} | {fmt(r['mean_cos_lemma'])} | {fmt(r['mean_cos_random'])} | "
              f"{fmt(r['lemma_in_top10'])} |")
    for side in (k for k in res if k.startswith("ours")):
        if "gensim" in res:
            print(f"speed ratio (words/CPU-s, {side} / gensim): "
                  f"{res[side]['words_per_cpu_s'] / res['gensim']['words_per_cpu_s']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
