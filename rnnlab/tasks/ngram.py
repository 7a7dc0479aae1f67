"""``rnnlab ngram``: n-gram language-model baseline on PTB-style token files.

Example::

    rnnlab ngram --order 3 --train data/ptb/train.txt --valid data/ptb/valid.txt --test data/ptb/test.txt \\
        --smoothing kn --out runs/ngram3

Prints one JSON line ``{"valid_perplexity": ..., "test_perplexity": ..., "train_seconds": ...}`` (plus the
settings and vocabulary figures) and writes it to ``OUT/metrics.json``. See :mod:`rnnlab.ngram`.
"""
from __future__ import annotations

import os
import time


def add_ngram_arguments(parser):
    parser.add_argument("--order", type=int, default=3, help="n (default 3)")
    parser.add_argument("--train", required=True, help="PTB-style training file (one sentence per line)")
    parser.add_argument("--valid", required=True, help="validation file")
    parser.add_argument("--test", default=None, help="test file (optional)")
    parser.add_argument("--smoothing", choices=["kn", "mkn", "addk"], default="kn",
                        help="interpolated Kneser-Ney, modified KN, or add-k (default kn)")
    parser.add_argument("--k", type=float, default=0.01, help="add-k constant (default 0.01)")
    parser.add_argument("--discount", type=float, default=None, help="fixed KN discount (default: estimated)")
    parser.add_argument("--max-vocab", type=int, default=None,
                        help="keep only the most frequent training tokens (others -> <unk>)")
    parser.add_argument("--encoding", default="utf-8", help="encoding of the token files (default utf-8)")
    parser.add_argument("--out", default=None, help="output folder for metrics.json (default runs/ngram-N-SMOOTHING)")


def ngram(args) -> int:
    from ..datasets.text_corpus import build_vocab, read_token_file
    from ..ngram import UNK, NGramLM, stream_of
    from .common import finish_run, output_dir

    for flag in ("train", "valid", "test"):
        path = getattr(args, flag)
        if path is not None and not os.path.isfile(path):
            raise FileNotFoundError(f"--{flag}: no such file {path}")
    start = time.perf_counter()
    train_sents = read_token_file(args.train, args.encoding)
    if not train_sents:
        raise ValueError(f"--train {args.train}: no tokens")
    vocab = list(build_vocab(train_sents, max_size=args.max_vocab))
    model = NGramLM(args.order, args.smoothing, k=args.k, discount=args.discount)
    model.fit(stream_of(train_sents), vocab=vocab)
    train_seconds = time.perf_counter() - start
    metrics = {"order": args.order, "smoothing": args.smoothing, "vocab_size": len(vocab),
               "train_tokens": model.train_tokens, "train_seconds": train_seconds}
    if args.smoothing == "addk":
        metrics["k"] = args.k
    known = set(vocab)
    for name in ("valid", "test"):
        path = getattr(args, name)
        if path is None:
            continue
        tokens = stream_of(read_token_file(path, args.encoding))
        if not tokens:
            raise ValueError(f"--{name} {path}: no tokens")
        metrics[f"{name}_perplexity"] = model.perplexity(tokens)
        metrics[f"{name}_tokens"] = len(tokens)
        metrics[f"{name}_unk_rate"] = sum(1 for t in tokens if t == UNK or t not in known) / len(tokens)
    out = output_dir(args.out, f"ngram-{args.order}-{args.smoothing}")
    finish_run(out, metrics)
    return 0
