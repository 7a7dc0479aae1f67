"""``rnnlab train seq2seq`` and ``rnnlab translate``: encoder-decoder models on source<TAB>target pairs.

Train::

    rnnlab train seq2seq --pairs FILE.tsv [--test-fraction 0.1] [--attention dot|general|concat|none]
                         [--level char|word] [--reverse-source] [--cell lstm|gru|rnn] [--units 64] ...
    rnnlab train seq2seq --generate dates|addition [--num-pairs 50000]     (built-in generated data)

``--generate addition`` draws the keras-io ``addition_rnn`` example's pairs (operands of 1 to ``--digits`` digits,
:func:`rnnlab.datasets.keras_addition_pairs`); ``--addition-recipe uniform`` gives the former uniform operands.
The encoder is bidirectional by default (``--unidirectional`` for a left-to-right one): with defaults only, the
keras-io addition data (3+3 digits, 45,000 training pairs) reach >= 99% held-out exact match (docs/results.md),
which the unidirectional encoder did not within the budget. The model trains through the one engine
(``Seq2Seq.fit`` -> ``Engine.fit``), until the validation exact match stops improving (``--patience``) or the
``--max-minutes`` budget ends; the best epoch is kept.

Writes ``OUT/model.npz`` (weights + JSON config with the vocabularies) and ends with one JSON line of
metrics (``exact_match_accuracy``, ``token_accuracy`` on the held-out part), also in ``OUT/metrics.json``.

Translate::

    rnnlab translate --model OUT/model.npz "3rd of march 2021" [--beam 5] [--show-attention] [--plot a.png]

Inputs longer than the model's maximum source length are truncated with a warning; unknown characters
or words become ``<unk>`` with a warning; an empty input gives an empty output.
"""
from __future__ import annotations

import os
import sys
import time

from .common import Timer, add_common_train_arguments, finish_run, output_dir


def add_train_arguments(parser):
    src = parser.add_argument_group("data")
    g = src.add_mutually_exclusive_group(required=True)
    g.add_argument("--pairs", help="TSV file of source<TAB>target lines")
    g.add_argument("--generate", choices=["dates", "addition"], help="use generated pairs instead of a file")
    src.add_argument("--num-pairs", type=int, default=50000, help="with --generate: number of pairs")
    src.add_argument("--digits", type=int, default=3, help="with --generate addition: digits per operand (at most)")
    src.add_argument("--addition-recipe", choices=["keras", "uniform"], default="keras",
                     help="with --generate addition: keras (default) = the keras-io addition_rnn example's pairs "
                          "(each operand 1 to --digits digits long, the length uniform; a+b and b+a once; the "
                          "same pairs and split as --pairs on a file from benchmarks/addition_pairs.py with this "
                          "--seed); uniform = both operands uniform in 0 .. 10**digits - 1 (rnnlab's former "
                          "generator: mostly full-length operands)")
    src.add_argument("--test-fraction", type=float, default=0.1, help="held-out fraction (disjoint sources)")
    src.add_argument("--level", choices=["char", "word"], default="char", help="tokenisation level")
    src.add_argument("--max-source-len", type=int, default=None, help="default: longest training source")
    m = parser.add_argument_group("model")
    m.add_argument("--attention", choices=["dot", "general", "concat", "none"], default="dot")
    m.add_argument("--reverse-source", action="store_true")
    m.add_argument("--unidirectional", action="store_true",
                   help="a left-to-right encoder (default: bidirectional, which --bidirectional also asks for)")
    m.add_argument("--beam", type=int, default=1, help="beam size for the final evaluation (1 = greedy)")
    src.add_argument("--valid-fraction", type=float, default=0.05,
                     help="part of the training pairs (at most 2000) held out to pick the best epoch and stop early")
    from .common import add_threads_argument
    from .runstate import add_budget_arguments

    add_threads_argument(m)
    add_budget_arguments(parser)
    add_common_train_arguments(parser, epochs=None, patience=10, max_minutes=15.0, batch_size=64, units=64,
                               embedding_dim=32, lr=0.005)


def _optimizer(args):
    from .. import optimizers

    cls = {"adam": optimizers.Adam, "rmsprop": optimizers.RMSprop, "sgd": optimizers.SGD,
           "adagrad": optimizers.Adagrad}.get(args.optimizer.lower())
    if cls is None:
        raise ValueError(f"--optimizer must be one of adam, rmsprop, sgd, adagrad; got {args.optimizer!r}")
    return cls(args.lr, clipnorm=args.clipnorm if args.clipnorm else 5.0)


def train(args):
    import numpy as np

    from .. import backend
    from ..datasets.seq2seq_data import (Vocabulary, addition_splits, date_splits, keras_addition_pairs, load_pairs,
                                         split_pairs)
    from ..models.seq2seq import Seq2Seq

    from .common import epochs_to_run, threads

    if not 0.0 < args.test_fraction < 1.0:
        raise ValueError(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
    if not 0.0 <= args.valid_fraction < 1.0:
        raise ValueError(f"--valid-fraction must be in [0, 1), got {args.valid_fraction}")
    epochs = epochs_to_run(args)
    if args.unidirectional and args.bidirectional:
        raise ValueError("--unidirectional and --bidirectional contradict each other (the encoder is bidirectional "
                         "by default)")
    bidirectional = not args.unidirectional
    if args.dropout:
        print("rnnlab: note: --dropout is not used by seq2seq models", file=sys.stderr)
    from ..demo import limit_blas_threads

    limit_blas_threads(threads(args))
    backend.set_random_seed(args.seed)
    if args.pairs:
        pairs = load_pairs(args.pairs)
        train_pairs, test_pairs = split_pairs(pairs, args.test_fraction, seed=args.seed)
        name = os.path.splitext(os.path.basename(args.pairs))[0]
    else:
        n_test = max(1, int(round(args.num_pairs * args.test_fraction)))
        n_train = args.num_pairs - n_test
        if args.generate == "dates":
            train_pairs, test_pairs = date_splits(n_train, n_test, seed=args.seed)
        elif args.addition_recipe == "keras":
            train_pairs, test_pairs = split_pairs(keras_addition_pairs(args.num_pairs, args.digits, seed=args.seed),
                                                  args.test_fraction, seed=args.seed)
        else:
            train_pairs, test_pairs = addition_splits(n_train, n_test, digits=args.digits, seed=args.seed)
        name = args.generate
    if not train_pairs or not test_pairs:
        raise ValueError(f"need at least one training and one held-out pair, got {len(train_pairs)} and "
                         f"{len(test_pairs)} (more data or another --test-fraction)")
    valid_pairs = []
    n_val = min(2000, int(round(len(train_pairs) * args.valid_fraction)))
    if n_val >= 1 and n_val < len(train_pairs):
        order = np.random.default_rng(args.seed + 17).permutation(len(train_pairs))
        valid_pairs = [train_pairs[i] for i in order[:n_val]]
        train_pairs = [train_pairs[i] for i in np.sort(order[n_val:])]
    out = output_dir(args.out, f"seq2seq-{name}")
    sv = Vocabulary.build([s for s, _ in train_pairs], level=args.level)
    tv = Vocabulary.build([t for _, t in train_pairs], level=args.level)
    max_src = args.max_source_len or max(len(sv.tokenize(s)) for s, _ in train_pairs)
    max_tgt = max(len(tv.tokenize(t)) for _, t in train_pairs)
    from .common import check_model_memory, estimate_params   # encoder + decoder (a lower bound: no attention)
    check_model_memory(args, "seq2seq", vocab=len(sv), bidirectional=bidirectional, extra_params=estimate_params(
        vocab=len(tv), embedding_dim=args.embedding_dim, units=args.units * (2 if bidirectional else 1),
        layers=args.layers, cell=args.cell, outputs=len(tv)))
    model = Seq2Seq(sv, tv, embedding_dim=args.embedding_dim, units=args.units, cell=args.cell,
                    num_layers=args.layers, bidirectional=bidirectional, attention=args.attention,
                    reverse_source=args.reverse_source, max_source_len=max_src, max_target_len=max_tgt + 2)
    if args.verbose:
        print(f"{len(train_pairs)} training / {len(test_pairs)} held-out pairs; vocabularies {len(sv)} / {len(tv)}; "
              f"{model.count_params():,} parameters; attention={args.attention}; "
              f"{'bidirectional' if bidirectional else 'unidirectional'} encoder", flush=True)
    timer = Timer(args.max_minutes)
    cpu0 = time.process_time()
    budget = None if args.max_minutes is None else 60.0 * args.max_minutes
    path = os.path.join(out, "model.npz")
    best = {"value": -1.0, "epoch": None, "stale": 0, "stop": None}
    patience = getattr(args, "patience", None) if args.epochs is None else None

    def on_epoch_end(epoch, logs):
        """Validation exact match after every epoch: the best epoch is saved; early stopping after --patience."""
        if not valid_pairs:
            return False
        acc = model.evaluate(valid_pairs)["exact_match_accuracy"]
        logs["val_exact_match_accuracy"] = acc
        if acc > best["value"]:
            best.update(value=acc, epoch=epoch + 1, stale=0)
            model.save(path)
        else:
            best["stale"] += 1
        if args.verbose:
            print(f"  val exact match {acc:.4f}{' (best, saved)' if best['epoch'] == epoch + 1 else ''}", flush=True)
        if patience is not None and best["stale"] >= patience:
            best["stop"] = f"early stopping: no better val exact match for {patience} epoch(s) (best: epoch " \
                           f"{best['epoch']})"
            return True
        return False

    extra = []
    if args.max_cpu_minutes is not None:   # a load-independent budget: the engine's TimeBudget callback
        from ..callbacks import TimeBudget

        extra.append(TimeBudget(max_cpu_minutes=args.max_cpu_minutes))
    model.fit(train_pairs, epochs=epochs, batch_size=args.batch_size, optimizer=_optimizer(args),
              time_budget=budget, verbose=args.verbose, seed=args.seed, on_epoch_end=on_epoch_end, callbacks=extra)
    train_secs = timer.elapsed
    cpu_secs = time.process_time() - cpu0
    epochs_run = len(model.history)
    final_loss = model.history[-1]["loss"] if model.history else None
    stop_reason = getattr(model, "stop_reason", None)
    if best["epoch"] is None:
        path = model.save(path)
    else:
        model = Seq2Seq.load(path)
    if args.beam > 1:
        preds = [p for p, _ in model.translate([s for s, _ in test_pairs], beam_size=args.beam, warn=False)]
        exact = float(np.mean([p == t for p, (_, t) in zip(preds, test_pairs)]))
        ev = model.evaluate(test_pairs)
        ev["exact_match_accuracy"] = exact
    else:
        ev = model.evaluate(test_pairs)
    if args.verbose:
        for (s, t), p in list(zip(test_pairs, ev["predictions"]))[:5]:
            print(f"  {s!r} -> {p!r}  (expected {t!r})")
        print(f"model saved to {path}")
    return finish_run(out, {
        "exact_match_accuracy": ev["exact_match_accuracy"], "token_accuracy": ev["token_accuracy"],
        "data": args.pairs or (f"addition ({args.addition_recipe})" if args.generate == "addition" else args.generate),
        "train_pairs": len(train_pairs), "test_pairs": len(test_pairs), "attention": args.attention,
        "bidirectional": bidirectional,
        "final_loss": final_loss,
        "epochs_run": epochs_run, "best_epoch": best["epoch"], "valid_exact_match_accuracy":
            best["value"] if best["epoch"] else None, "stop_reason": best["stop"] or stop_reason,
        "train_seconds": round(train_secs, 1), "train_cpu_seconds": round(cpu_secs, 1), "model": path,
    })


def add_translate_arguments(parser):
    parser.add_argument("--model", required=True, help="model.npz written by rnnlab train seq2seq")
    parser.add_argument("text", nargs="+", help="text(s) to convert")
    parser.add_argument("--beam", type=int, default=1, help="beam size (1 = greedy)")
    parser.add_argument("--show-attention", action="store_true", help="print the attention map as text")
    parser.add_argument("--plot", default=None, help="write the attention heat map of the first text to this PNG")


def translate(args):
    from ..models.seq2seq import Seq2Seq
    from ..plotting import attention_text

    if args.beam < 1:
        raise ValueError(f"--beam must be >= 1, got {args.beam}")
    model = Seq2Seq.load(args.model)
    results = model.translate(list(args.text), beam_size=args.beam)
    for i, (text, (out, att)) in enumerate(zip(args.text, results)):
        print(out)
        src = model.source_vocab.tokenize(text)[: model.max_source_len]
        outs = model.target_vocab.tokenize(out) + ["<end>"]
        if args.show_attention and att.size:
            print(attention_text(att, src, outs[: att.shape[0]]))
        if args.plot and i == 0 and att.size:
            from ..plotting import attention_heatmap

            attention_heatmap(att, src, outs[: att.shape[0]], args.plot, title=f"{text!r} -> {out}")
            print(f"attention heat map written to {args.plot}", file=sys.stderr)
    return 0
