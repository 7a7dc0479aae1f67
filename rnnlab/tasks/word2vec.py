"""``rnnlab train word2vec --text FILE`` and ``rnnlab similar --vectors FILE WORD ...``.

``train`` reads a text file (one sentence per line; ``--csv-column`` for a CSV column such as IMDB's
``review``; ``.gz`` is read transparently), lowercases and tokenises it (letters/digits with inner
apostrophes, HTML ``<br />`` removed), trains :class:`rnnlab.embeddings.Word2Vec`, writes
``vectors.txt`` (word2vec text format; ``--binary`` adds ``vectors.bin``) into ``--out`` and ends with the
metrics line (vocabulary size, words/s, and analogy / pair scores when ``--analogies`` / ``--pairs`` are given).
"""
from __future__ import annotations

import csv
import gzip
import os
import re

from .common import finish_run, output_dir

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")


def tokenize(text):
    """Lowercase, drop ``<br />`` tags, keep runs of letters/digits (with inner apostrophes)."""
    return _TOKEN.findall(text.replace("<br />", " ").lower())


def read_sentences(path, csv_column=None, max_words=None):
    """Token lists from a text file (one per line) or a CSV column; stops after ``max_words`` words."""
    opener = gzip.open if str(path).endswith(".gz") else open
    sents, n = [], 0
    with opener(path, "rt", encoding="utf-8", newline="" if csv_column else None) as f:
        if csv_column:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or csv_column not in reader.fieldnames:
                raise ValueError(f"{path}: no column {csv_column!r} (columns: {reader.fieldnames})")
            texts = (row[csv_column] for row in reader)
        else:
            texts = f
        for text in texts:
            toks = tokenize(text)
            if max_words is not None and n + len(toks) > max_words:
                toks = toks[:max_words - n]
            if toks:
                sents.append(toks)
                n += len(toks)
            if max_words is not None and n >= max_words:
                break
    return sents, n


def add_corpus_arguments(p):
    """The text arguments of ``train word2vec`` and ``train fasttext`` (read by :func:`read_sentences`)."""
    p.add_argument("--text", required=True, help="text file (one sentence per line), .gz allowed")
    p.add_argument("--csv-column", default=None, help="read this CSV column instead of lines (e.g. review)")
    p.add_argument("--max-words", type=int, default=None, help="use only the first N words")


def add_sgns_arguments(p):
    """The negative-sampling training arguments Word2Vec and FastText share (gensim's names and defaults)."""
    p.add_argument("--vector-size", type=int, default=100)
    p.add_argument("--window", type=int, default=5)
    p.add_argument("--min-count", type=int, default=5)
    p.add_argument("--negative", type=int, default=5)
    p.add_argument("--sample", type=float, default=1e-3)
    p.add_argument("--alpha", type=float, default=0.025)
    p.add_argument("--min-alpha", type=float, default=0.0001)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--workers", type=int, default=1, help="threads")
    p.add_argument("--batch-words", type=int, default=None)
    p.add_argument("--seed", type=int, default=1)


def sgns_kwargs(args):
    """The keyword arguments of Word2Vec / FastText from :func:`add_sgns_arguments`'s flags (and ``--sg``)."""
    return dict(vector_size=args.vector_size, window=args.window, min_count=args.min_count, sg=args.sg,
                negative=args.negative, sample=args.sample, alpha=args.alpha, min_alpha=args.min_alpha,
                epochs=args.epochs, seed=args.seed, workers=args.workers, batch_words=args.batch_words,
                verbose=bool(args.verbose))


def add_evaluation_arguments(p):
    p.add_argument("--analogies", default=None, help="questions-words.txt style file to evaluate")
    p.add_argument("--pairs", default=None, help="word pairs with human scores (tab separated)")


def evaluate_vectors(wv, args, metrics):
    """Add the ``--analogies`` / ``--pairs`` scores of the vectors ``wv`` to ``metrics``."""
    if args.analogies:
        a = wv.evaluate_word_analogies(args.analogies)
        metrics.update(analogy_accuracy=a["accuracy"], analogy_questions=a["total"], analogy_oov=a["oov"])
    if args.pairs:
        r = wv.evaluate_word_pairs(args.pairs)
        metrics.update(pairs_spearman=r["spearman"], pairs_oov_ratio=r["oov_ratio"])
    return metrics


def add_train_arguments(p):
    add_corpus_arguments(p)
    p.add_argument("--sg", type=int, choices=[0, 1], default=0, help="0 = CBOW, 1 = skip-gram")
    add_sgns_arguments(p)
    p.add_argument("--binary", action="store_true", help="also write vectors.bin (word2vec binary)")
    add_evaluation_arguments(p)
    p.add_argument("--plot", nargs="*", default=None, metavar="WORD", help="write word_map.png of these words")
    p.add_argument("--out", default=None)
    p.add_argument("--verbose", type=int, default=1, choices=[0, 1])


def train(args):
    from ..embeddings import Word2Vec, plot_word_map

    sents, n = read_sentences(args.text, args.csv_column, args.max_words)
    model = Word2Vec(sents, **sgns_kwargs(args))
    out = output_dir(args.out, "word2vec")
    model.wv.save_word2vec_format(os.path.join(out, "vectors.txt"))
    if args.binary:
        model.wv.save_word2vec_format(os.path.join(out, "vectors.bin"), binary=True)
    metrics = {"task": "word2vec", "sg": args.sg, "corpus_words": n, "vocab_size": len(model.wv),
               "vector_size": args.vector_size, "epochs": args.epochs, "workers": args.workers,
               "words_per_second": round(model.words_per_second, 1),
               "train_seconds": round(model.train_seconds, 3)}
    evaluate_vectors(model.wv, args, metrics)
    if args.plot:
        plot_word_map(model.wv, [w for w in args.plot if w in model.wv], os.path.join(out, "word_map.png"))
    return finish_run(out, metrics)


def add_similar_arguments(p):
    p.add_argument("--vectors", required=True, help="word2vec text/binary (.bin) or GloVe file")
    p.add_argument("--format", choices=["word2vec", "word2vec-binary", "glove"], default=None)
    p.add_argument("--topn", type=int, default=10)
    p.add_argument("--negative", nargs="*", default=[], help="words to subtract (analogies: b - a + c)")
    p.add_argument("words", nargs="+", help="query words (added together)")


def similar(args):
    from ..embeddings import load_vectors

    kv = load_vectors(args.vectors, format=args.format)
    for w, s in kv.most_similar(positive=args.words, negative=args.negative, topn=args.topn):
        print(f"{w}\t{s:.4f}")
    return 0
