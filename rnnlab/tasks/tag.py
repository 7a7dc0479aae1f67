"""``rnnlab train tag`` and ``rnnlab tag``: sequence labelling (one tag per token).

Train::

    rnnlab train tag --train F --valid F [--test F] [--format conll|conllu] [--token-column i --tag-column j]
                     [--cell lstm|gru|rnn] [--bidirectional | --unidirectional] [--char-features] ...
    rnnlab train tag --generate two-sided|suffix [--num-sentences 3000]   (generated tasks, see rnnlab.datasets.conll)

The model is :class:`rnnlab.tagging.tagger.Tagger` (bidirectional by default; ``--unidirectional`` for a
left-to-right tagger). Padded batches are masked (padding steps neither feed the recurrent layers nor count in
the loss). After training the weights of the best validation epoch are kept, saved to ``OUT/model.npz``, and one
JSON line reports token accuracy and (for BIO/IOB/IOBES tags) conlleval entity precision/recall/F1 on the
validation and test data (also in ``OUT/metrics.json``). Tags in the validation/test files that never occur in
the training file are an error naming the tag and line, unless ``--unknown-tags O`` scores them as ``O``.

Tag::

    rnnlab tag --model OUT/model.npz "John lives in Paris" ["another sentence" ...]

prints ``token<TAB>tag`` lines, a blank line between sentences (tokens are split on whitespace).
"""
from __future__ import annotations

import os
import sys

from .common import Timer, add_common_train_arguments, finish_run, output_dir


def add_train_arguments(parser):
    d = parser.add_argument_group("data")
    src = d.add_mutually_exclusive_group(required=True)
    src.add_argument("--train", help="training file (CoNLL or CoNLL-U)")
    src.add_argument("--generate", choices=["two-sided", "suffix"],
                     help="generated task instead of files: two-sided (types need context on both sides) or suffix "
                          "(types only in the spelling of words never seen in training: needs --char-features)")
    d.add_argument("--valid", help="validation file (required with --train)")
    d.add_argument("--test", help="test file")
    d.add_argument("--format", choices=["conll", "conllu"], default="conll")
    d.add_argument("--token-column", type=int, default=None, help="default: 0 (conll) / 1 FORM (conllu)")
    d.add_argument("--tag-column", type=int, default=None, help="default: last (conll) / 3 UPOS (conllu)")
    d.add_argument("--unknown-tags", choices=["error", "O"], default="error",
                   help="tags of valid/test data unseen in training: error (default) or score them as O")
    d.add_argument("--num-sentences", type=int, default=3000, help="with --generate: training sentences")
    d.add_argument("--lowercase", action="store_true", help="lowercase words for the word vocabulary")
    d.add_argument("--min-count", type=int, default=1, help="words rarer than this in training become <unk>")
    m = parser.add_argument_group("model")
    m.add_argument("--unidirectional", action="store_true", help="left-to-right tagger (default: bidirectional)")
    m.add_argument("--char-features", action="store_true", help="add a character BiLSTM per word")
    m.add_argument("--char-dim", type=int, default=16)
    m.add_argument("--char-units", type=int, default=16)
    add_common_train_arguments(parser, epochs=10, batch_size=32, units=64, embedding_dim=50, lr=5e-3)


def _optimizer(args):
    from .. import optimizers

    cls = {"adam": optimizers.Adam, "rmsprop": optimizers.RMSprop, "sgd": optimizers.SGD,
           "adagrad": optimizers.Adagrad}.get(args.optimizer.lower())
    if cls is None:
        raise ValueError(f"--optimizer must be one of adam, rmsprop, sgd, adagrad; got {args.optimizer!r}")
    return cls(args.lr, clipnorm=args.clipnorm if args.clipnorm else 5.0)


def _load(args):
    from ..datasets.conll import generate_suffix_tagging, generate_two_sided_tagging, read_conll

    if args.generate:
        if args.num_sentences < 10:
            raise ValueError(f"--num-sentences must be >= 10, got {args.num_sentences}")
        n, m = args.num_sentences, max(50, args.num_sentences // 5)
        if args.generate == "suffix":
            return (generate_suffix_tagging(n, seed=args.seed),
                    generate_suffix_tagging(m, seed=args.seed + 1, held_out=True),
                    generate_suffix_tagging(m, seed=args.seed + 2, held_out=True), "suffix")
        return (generate_two_sided_tagging(n, seed=args.seed), generate_two_sided_tagging(m, seed=args.seed + 1),
                generate_two_sided_tagging(m, seed=args.seed + 2), "two-sided")
    if not args.valid:
        raise ValueError("--valid is required with --train")
    kw = dict(token_column=args.token_column, tag_column=args.tag_column, format=args.format)
    train = read_conll(args.train, **kw)
    valid = read_conll(args.valid, **kw)
    test = read_conll(args.test, **kw) if args.test else None
    return train, valid, test, os.path.splitext(os.path.basename(args.train))[0]


def train(args):
    from .. import backend
    from ..tagging.tagger import build_tagger

    for name in ("epochs", "batch_size", "units", "layers", "embedding_dim", "char_dim", "char_units", "min_count"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.bidirectional and args.unidirectional:
        raise ValueError("--bidirectional and --unidirectional contradict each other (bidirectional is the default)")
    if args.resume:
        raise ValueError("--resume is not supported by this task yet (train again from the start)")
    backend.set_random_seed(args.seed)
    train_s, valid_s, test_s, name = _load(args)
    # unknown tags in valid/test are reported before any training time is spent
    known = {t for s in train_s for t in s.tags}
    if args.unknown_tags == "error":
        for label, data in (("valid", valid_s), ("test", test_s or [])):
            for i, s in enumerate(data):
                bad = [t for t in s.tags if t not in known]
                if bad:
                    where = f"line {s.line}" if s.line else f"sentence {i}"
                    raise ValueError(f"{label} data: tag {bad[0]!r} ({where}) does not occur in the training data "
                                     f"(known: {sorted(known)[:20]}); use --unknown-tags O to score it as O")
    out = output_dir(args.out, f"tag-{name}")
    model = build_tagger(train_s, char_features=args.char_features, lowercase=args.lowercase,
                         min_count=args.min_count, embedding_dim=args.embedding_dim, units=args.units, cell=args.cell,
                         layers=args.layers, bidirectional=not args.unidirectional, char_dim=args.char_dim,
                         char_units=args.char_units, dropout=args.dropout)
    if args.verbose:
        print(f"{len(train_s)} training / {len(valid_s)} validation sentences; {len(model.words)} words, "
              f"{len(model.tags) - 1} tags; {model.count_params():,} parameters; "
              f"{'bi' if not args.unidirectional else 'uni'}directional {args.cell}"
              f"{' + char BiLSTM' if args.char_features else ''}", flush=True)
    timer = Timer(args.max_minutes)
    budget = None if args.max_minutes is None else 60.0 * args.max_minutes
    import time as _time
    cpu0 = _time.process_time()
    model.fit(train_s, valid_s, epochs=args.epochs, batch_size=args.batch_size, optimizer=_optimizer(args),
              time_budget=budget, verbose=args.verbose, seed=args.seed, unknown_tags=args.unknown_tags)
    secs, cpu = timer.elapsed, _time.process_time() - cpu0
    path = model.save(os.path.join(out, "model.npz"))
    metrics = {"bidirectional": not args.unidirectional, "cell": args.cell, "char_features": args.char_features,
               "train_sentences": len(train_s), "epochs_run": len(model.history), "train_seconds": round(secs, 1),
               "train_cpu_seconds": round(cpu, 1), "model": path}
    for label, data in (("valid", valid_s), ("test", test_s)):
        if not data:
            continue
        ev = model.evaluate(data, unknown_tags=args.unknown_tags)
        metrics[f"{label}_token_accuracy"] = ev["token_accuracy"]
        if ev["entity_tags"]:
            metrics.update({f"{label}_precision": ev["precision"], f"{label}_recall": ev["recall"],
                            f"{label}_f1": ev["f1"]})
    if args.verbose:
        print(f"model saved to {path}")
    return finish_run(out, metrics)


def add_tag_arguments(parser):
    parser.add_argument("--model", required=True, help="model.npz written by rnnlab train tag")
    parser.add_argument("text", nargs="+", help="sentence(s) to tag (tokens separated by whitespace)")


def tag(args):
    from ..tagging.tagger import Tagger

    model = Tagger.load(args.model)
    sents = [t.split() for t in args.text]
    for i, (toks, tags) in enumerate(zip(sents, model.predict(sents))):
        if i:
            print()
        if not toks:
            print("rnnlab: note: empty sentence", file=sys.stderr)
        for tok, tg in zip(toks, tags):
            print(f"{tok}\t{tg}")
    return 0
