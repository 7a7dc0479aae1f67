"""``rnnlab train fasttext --text FILE``: fastText word vectors with subword n-grams.

Reads the text as ``rnnlab train word2vec`` does (one sentence per line, or ``--csv-column``; ``.gz`` read
transparently; lowercased, ``<br />`` removed, letters/digits with inner apostrophes), trains
:class:`rnnlab.embeddings.FastText` (skip-gram by default, as Facebook's ``fasttext skipgram``; ``--sg 0``
for CBOW) with a progress line on stderr, and writes into ``--out``:

* ``vectors.vec``: the in-vocabulary vectors, word2vec text format (what Facebook publishes as ``.vec``);
* ``model.bin``: the whole model in Facebook's ``.bin`` format (words, n-gram buckets, arguments), which
  ``fasttext.load_model`` and :func:`rnnlab.embeddings.load_facebook_model` read, so out-of-vocabulary
  words keep getting vectors (``--no-bin`` skips it: with the default 2M buckets it is ~800 MB at D=100).

It ends with a short summary (``--show WORD ...`` prints the nearest words of each given word, which may be
out of vocabulary) and the JSON metrics line (vocabulary size, n-gram buckets used, words/s, and analogy /
pair scores with ``--analogies`` / ``--pairs``).
"""
from __future__ import annotations

import os

import numpy as np

from .common import finish_run, output_dir
from .word2vec import (add_corpus_arguments, add_evaluation_arguments, add_sgns_arguments, evaluate_vectors,
                       read_sentences, sgns_kwargs)


def add_train_arguments(p):
    add_corpus_arguments(p)
    p.add_argument("--sg", type=int, choices=[0, 1], default=1, help="1 = skip-gram (default), 0 = CBOW")
    add_sgns_arguments(p)
    p.add_argument("--min-n", type=int, default=3, help="shortest character n-gram")
    p.add_argument("--max-n", type=int, default=6, help="longest character n-gram (0: no subwords)")
    p.add_argument("--bucket", type=int, default=2000000, help="number of hashed n-gram rows")
    p.add_argument("--subword-norm", choices=["gensim", "facebook"], default="gensim",
                   help="skip-gram training input: summed subword rows over the n-gram count (gensim, default) "
                        "or over the n-grams + 1 (Facebook's fastText); saved vectors are the mean either way")
    p.add_argument("--update", choices=["pair", "chunk"], default=None,
                   help="update order (FastText(update=...)): pair = one (centre, context) pair at a time, as "
                        "gensim and Facebook's fastText (CBOW: one centre at a time); chunk = rnnlab's word2vec "
                        "chunks of ~1000 words from the chunk's starting weights. Default: pair for skip-gram when "
                        "the compiled loop is built, else chunk")
    p.add_argument("--no-bin", dest="write_bin", action="store_false", help="do not write model.bin")
    p.add_argument("--show", nargs="*", default=[], metavar="WORD",
                   help="print the 5 nearest words of each WORD (out-of-vocabulary words allowed)")
    add_evaluation_arguments(p)
    p.add_argument("--out", default=None)
    p.add_argument("--verbose", type=int, default=1, choices=[0, 1])


def train(args):
    from ..embeddings.fasttext import FastText
    from ..embeddings.fasttext_io import save_facebook_model, save_vec

    if args.max_words is not None and args.max_words < 1:
        raise ValueError(f"--max-words must be >= 1, got {args.max_words}")
    sents, n = read_sentences(args.text, args.csv_column, args.max_words)
    if n == 0:
        raise ValueError(f"{args.text}: no words in the text (the corpus is empty)")
    if args.verbose:
        print(f"fastText: {n:,} words in {len(sents):,} sentences from {args.text}", flush=True)
    model = FastText(sents, min_n=args.min_n, max_n=args.max_n, bucket=args.bucket, subword_norm=args.subword_norm,
                     update=args.update, **sgns_kwargs(args))
    out = output_dir(args.out, "fasttext")
    save_vec(model.wv, os.path.join(out, "vectors.vec"))
    if args.write_bin:
        save_facebook_model(model, os.path.join(out, "model.bin"))
    wv = model.wv
    used = np.unique(wv.subword_rows[wv.subword_rows >= len(wv)]).size
    metrics = {"task": "fasttext", "sg": args.sg, "update": model.update, "corpus_words": n, "vocab_size": len(wv),
               "vector_size": args.vector_size, "min_n": args.min_n, "max_n": args.max_n, "bucket": model.bucket,
               "ngram_buckets_used": int(used), "epochs": args.epochs, "workers": args.workers,
               "words_per_second": round(model.words_per_second, 1),
               "train_seconds": round(model.train_seconds, 3)}
    evaluate_vectors(wv, args, metrics)
    if args.verbose:
        print(f"vocabulary {len(wv):,} words, {used:,} of {model.bucket:,} n-gram buckets used; "
              f"{model.words_per_second:,.0f} words/s; vectors in {out}", flush=True)
    for w in args.show:
        if w not in wv:
            print(f"{w}: no vector (not in the vocabulary and no character n-grams)", flush=True)
            continue
        tag = "" if wv.has_index_for(w) else " (out of vocabulary: from its n-grams)"
        near = ", ".join(f"{x} {s:.3f}" for x, s in wv.most_similar(w, topn=5))
        print(f"{w}{tag}: {near}", flush=True)
    return finish_run(out, metrics)


# ------------------------------------------------------------------ rnnlab train classify --model fasttext
def add_classify_arguments(parser):
    """The flags of ``rnnlab train classify --model fasttext`` (added to the classify parser)."""
    g = parser.add_argument_group("fastText classifier (--model fasttext)")
    g.add_argument("--model", choices=["rnn", "fasttext"], default="rnn",
                   help="rnn: the recurrent classifier (default); fasttext: averaged word + word n-gram "
                        "embeddings into a linear softmax (Joulin et al. 2017)")
    g.add_argument("--word-ngrams", type=int, default=2, help="fastText: word n-grams up to this length")
    g.add_argument("--bucket", type=int, default=2000000, help="fastText: hashed word n-gram rows")
    g.add_argument("--ft-dim", type=int, default=10, help="fastText: embedding size")
    g.add_argument("--ft-lr", type=float, default=0.1, help="fastText: SGD learning rate (linear decay to 0)")
    g.add_argument("--ft-epochs", type=int, default=5, help="fastText: epochs")
    g.add_argument("--ft-min-count", type=int, default=1, help="fastText: minimum word count")
    g.add_argument("--ft-loss", choices=["softmax", "hs"], default="softmax",
                   help="fastText: softmax (default) or hs, a hierarchical softmax over a Huffman tree of the classes")


def train_classify(args):
    """``rnnlab train classify --model fasttext``: the same data files, split and metrics line as the
    recurrent classifier (``--test`` / ``--train-rows`` / ``--test-fraction`` with the same seeded split).
    Texts are cleaned as there (``--no-clean`` skips it) and tokenised as ``rnnlab train word2vec`` does
    (lowercase, letters/digits with inner apostrophes). fastText picks no best epoch, so the validation
    rows stay in the training set. Writes ``model_fasttext.npz`` and ``metrics.json`` into ``--out``."""
    import time

    from ..models.fasttext_classifier import FastTextClassifier
    from ..text import clean_review
    from .classify import read_labelled_file
    from .word2vec import tokenize

    model = FastTextClassifier(dim=args.ft_dim, word_ngrams=args.word_ngrams, bucket=args.bucket, lr=args.ft_lr,
                               epochs=args.ft_epochs, min_count=args.ft_min_count, seed=args.seed,
                               verbose=bool(args.verbose), loss=args.ft_loss)
    texts, labels, lines, (tcol, lcol) = read_labelled_file(args.data, args.text_column, args.label_column,
                                                           args.delimiter, args.encoding)
    n = len(texts)
    if args.test:
        te_texts, te_labels, _, _ = read_labelled_file(args.test, tcol, lcol, args.delimiter, args.encoding)
        tr = np.arange(n)
    elif args.train_rows is not None:
        if not 0 < args.train_rows < n:
            raise ValueError(f"--train-rows must be in [1, {n - 1}] for {args.data} ({n} rows), got {args.train_rows}")
        tr, te = np.arange(args.train_rows), np.arange(args.train_rows, n)
        te_texts, te_labels = [texts[i] for i in te], [labels[i] for i in te]
    else:
        frac = 0.2 if args.test_fraction is None else args.test_fraction
        if not 0.0 < frac < 1.0:
            raise ValueError(f"--test-fraction must be in (0, 1), got {frac}")
        perm = np.random.default_rng(args.seed + 7919).permutation(n)
        n_test = int(round(n * frac))
        if n_test < 1 or n_test >= n:
            raise ValueError(f"--test-fraction {frac} leaves no test or no training rows of {n}")
        te, tr = np.sort(perm[:n_test]), np.sort(perm[n_test:])
        te_texts, te_labels = [texts[i] for i in te], [labels[i] for i in te]

    def prep(ts):
        return [tokenize(clean_review(t) if args.clean else t) for t in ts]

    out = output_dir(args.out, "classify-fasttext")
    c0, t0 = time.process_time(), time.perf_counter()
    x_train, y_train = prep([texts[i] for i in tr]), [labels[i] for i in tr]
    if args.verbose:
        print(f"fastText classifier: {len(x_train)} training / {len(te_texts)} test texts; dim {args.ft_dim}, "
              f"word n-grams <= {args.word_ngrams}, {args.bucket:,} buckets", flush=True)
    model.fit(x_train, y_train)
    train_cpu, train_wall = time.process_time() - c0, time.perf_counter() - t0
    unseen = sorted(set(te_labels) - set(model.classes))
    if unseen:
        raise ValueError(f"{args.test or args.data}: test label(s) {unseen[:5]} do not occur in the training rows "
                         f"(classes {model.classes})")
    test = model.evaluate(prep(te_texts), te_labels)
    train_acc = model.evaluate(x_train, y_train)["accuracy"]
    path = os.path.join(out, "model_fasttext.npz")
    model.save(path)
    return finish_run(out, {
        "model_type": "fasttext", "test_accuracy": test["accuracy"], "test_loss": test["loss"],
        "train_accuracy": train_acc, "train_seconds": round(train_wall, 2), "train_cpu_seconds": round(train_cpu, 2),
        "epochs_run": args.ft_epochs, "classes": len(model.classes), "train_texts": len(x_train),
        "test_texts": len(te_texts), "vocab_size": len(model.words), "ft_loss": model.loss, "model": path,
    })
