"""``rnnlab train tag`` and ``rnnlab tag``: sequence labelling (one tag per token).

Train::

    rnnlab train tag --train F --valid F [--test F] [--format conll|conllu] [--token-column i --tag-column j]
                     [--cell lstm|gru|rnn] [--bidirectional | --unidirectional] [--char-features] ...
    rnnlab train tag --generate two-sided|suffix [--num-sentences 3000]   (generated tasks, see rnnlab.datasets.conll)

Defaults (Lample et al. 2016's BiLSTM-CRF recipe; only the data flags are needed): word embeddings 100 +
a character BiLSTM (25 + 25 units) per word + 6 casing features for ``--train`` files (``--no-char-features``,
``--no-casing``), the word embedding looked up by the lowercased word whenever the character and casing features
are on (they keep the case; ``--no-lowercase``), one BiLSTM(100) layer, dropout 0.5 on its input, Adam 5e-3 with clipnorm 5, word dropout 0.5 on
the words seen once (``--word-dropout``), and a linear-chain CRF output (:class:`rnnlab.layers.CRF`) for chunk
tags (B-/I-/E-/S- prefixes; ``--crf on|off|auto``), constrained to the tag scheme: ``--tag-scheme auto`` detects
IOB1 (CoNLL-2003: ``I-`` starts a chunk, ``B-`` only separates two adjacent chunks of a type), IOB2/BIO or IOBES
from the training file; a declared scheme is strict (e.g. ``I-X`` after ``O`` under ``iob2`` is an error naming the
file and line, which says that conlleval would read it as the start of a new chunk). Scoring is conlleval's for
every scheme. ``--epochs`` defaults to early stopping (3 epochs without a better validation value) within
``--max-minutes 15``; ``--threads`` defaults to the cores (``--threads 1`` on a shared machine).
Feature columns (``--feature-columns auto``): in ``--format conll`` files the columns between the token and the
tag column (CoNLL-2000's POS tags; CoNLL-2003's POS and chunk tags; none in two-column files such as WNUT-17,
none for CoNLL-U) are read as categorical inputs, each through its own embedding (``--feature-dim 25``)
concatenated to the word features (``none`` or a list of column indices to choose); such a model tags
``word|POS`` tokens in ``rnnlab tag``.
Options measured on WNUT-17 and left off (not better on validation F1 on two seeds; ``docs/results.md``):
``--word-dropout-alpha A`` (every word seen n times becomes ``<unk>`` with probability A/(A+n), instead of the
singleton rule), ``--normalize-words`` (URLs, @users, digits and a leading ``#`` normalised for the word lookup
only), ``--shape-dim N`` (an embedding of the collapsed word shape, e.g. ``Xx``, ``@x``, ``d:d``) and
``--char-encoder cnn|both`` (a width-3 character convolution max-pooled over the word, ``--char-filters 30``).
``--vectors FILE`` (word2vec text/binary or GloVe, e.g. from ``rnnlab train word2vec``) initialises the word
embeddings (dimension = ``--embedding-dim``; ``--freeze-vectors`` keeps them fixed); the coverage is reported.

The model is :class:`rnnlab.tagging.tagger.Tagger` (bidirectional by default; ``--unidirectional`` for a
left-to-right tagger). Padded batches are masked (padding steps neither feed the recurrent layers nor count in
the loss). Training is one ``Model.fit`` call of the engine (:class:`rnnlab.models.engine.Engine`; the tagger
is an engine model) over a :class:`~rnnlab.tagging.tagger.TaggingBatches` dataset, every batch one engine step
(forward, loss, backward, the one NaN policy, the update), inside :class:`rnnlab.tasks.runstate.TrainLoop`'s
callbacks like classify/charlm/wordlm: the model of the
best validation epoch (entity F1 for BIO/IOB/IOBES tags, else token accuracy) is saved to ``OUT/model.npz`` (a
tagger file with a ``__task__`` entry), every completed epoch to ``OUT/checkpoint.npz`` (weights, optimizer state,
RNG state: ``--resume`` continues exactly where an uninterrupted run would be), the per-epoch metrics to
``OUT/history.json`` (``rnnlab plot OUT``); ``--max-minutes`` / ``--max-cpu-minutes`` stop cleanly. One JSON line
reports token accuracy and (for BIO/IOB/IOBES tags) conlleval entity precision/recall/F1 on the validation and
test data (also in ``OUT/metrics.json``). Tags in the validation/test files that never occur in
the training file are an error naming the tag and line, unless ``--unknown-tags O`` scores them as ``O``.

Tag::

    rnnlab tag --model OUT/model.npz "John lives in Paris" ["another sentence" ...]

prints ``token<TAB>tag`` lines, a blank line between sentences (tokens are split on whitespace).
"""
from __future__ import annotations

import os
import sys

from .common import add_common_train_arguments, finish_run, output_dir

TASK = "tag"


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
    d.add_argument("--encoding", default="utf-8", help="text encoding of the files (default utf-8)")
    d.add_argument("--token-column", type=int, default=None, help="default: 0 (conll) / 1 FORM (conllu)")
    d.add_argument("--tag-column", type=int, default=None, help="default: last (conll) / 3 UPOS (conllu)")
    d.add_argument("--unknown-tags", choices=["error", "O"], default="error",
                   help="tags of valid/test data unseen in training: error (default) or score them as O")
    d.add_argument("--feature-columns", default="auto",
                   help="columns read as extra categorical inputs (each through its own embedding of --feature-dim): "
                        "auto (default) = for --format conll the columns between the token and the tag column, "
                        "e.g. the POS column of CoNLL-2000 (none for two-column files and for conllu), none, or "
                        "a comma-separated list of column indices")
    d.add_argument("--num-sentences", type=int, default=3000, help="with --generate: training sentences")
    lc = d.add_mutually_exclusive_group()
    lc.add_argument("--lowercase", dest="lowercase", action="store_const", const=True, default=None,
                    help="lowercase words for the word vocabulary (default: on when the character and casing "
                         "features are, which keep each word's case in the input)")
    lc.add_argument("--no-lowercase", dest="lowercase", action="store_const", const=False,
                    help="the word vocabulary keeps the case of the words")
    nw = d.add_mutually_exclusive_group()
    nw.add_argument("--normalize-words", dest="normalize_words", action="store_const", const=True, default=False,
                    help="word-vocabulary lookup only (the characters and casing features keep the token as "
                         "written): URLs -> <url>, @name -> <user>, digits -> 0, a leading # stripped")
    nw.add_argument("--no-normalize-words", dest="normalize_words", action="store_const", const=False,
                    help="look words up as written (after --lowercase; the default)")
    d.add_argument("--min-count", type=int, default=1, help="words rarer than this in training become <unk>")
    d.add_argument("--tag-scheme", choices=["auto", "iob1", "iob2", "bio", "iobes", "none"], default="auto",
                   help="chunk tag scheme of the files: auto (detected from the training file; CoNLL-2003 is "
                        "iob1), a strict scheme (a tag it forbids, e.g. I-X after O under iob2, is an error naming "
                        "the line), or none (no CRF constraints). Scoring is conlleval's for every scheme")
    m = parser.add_argument_group("model")
    m.add_argument("--unidirectional", action="store_true", help="left-to-right tagger (default: bidirectional)")
    ch = m.add_mutually_exclusive_group()
    ch.add_argument("--char-features", dest="char_features", action="store_const", const=True, default=None,
                    help="a character BiLSTM per word, plus casing features (default for --train files)")
    ch.add_argument("--no-char-features", dest="char_features", action="store_const", const=False,
                    help="words only (default for --generate two-sided)")
    m.add_argument("--no-casing", dest="casing", action="store_false",
                   help="leave out the 6 casing features (on with the character features)")
    m.add_argument("--char-dim", type=int, default=25)
    m.add_argument("--char-units", type=int, default=25)
    m.add_argument("--char-encoder", choices=["lstm", "cnn", "both"], default="lstm",
                   help="how the characters of a word are read: a BiLSTM of --char-units (default), a convolution of "
                        "--char-filters filters of width 3 max-pooled over the word (Ma & Hovy 2016), or both side "
                        "by side")
    m.add_argument("--char-filters", type=int, default=30, help="filters of the character convolution (default 30)")
    m.add_argument("--feature-dim", type=int, default=25, help="embedding size of each feature column")
    m.add_argument("--shape-dim", type=int, default=0,
                   help="embedding size of a word-shape feature (the collapsed shape: Paris -> Xx, @bob -> @x, "
                        "10:30 -> d:d) next to the character and casing features; 0 (default) = none")
    m.add_argument("--crf", choices=["auto", "on", "off"], default="auto",
                   help="a linear-chain CRF output (Viterbi decoding): auto = on for chunk/entity tags "
                        "(B-/I-/E-/S- prefixes), off for other tags such as POS")
    m.add_argument("--word-dropout", type=float, default=0.5,
                   help="training: a word seen once in the training data becomes <unk> with this probability "
                        "(Lample et al. 2016; default 0.5; 0 turns it off)")
    m.add_argument("--word-dropout-alpha", type=float, default=0.0,
                   help="instead of --word-dropout's singleton rule: every word seen n times in training becomes "
                        "<unk> with probability A/(A+n) (Kiperwasser & Goldberg 2016; 0, the default, = off)")
    m.add_argument("--output-dropout", type=float, default=0.0,
                   help="dropout on the output sequence of every recurrent layer (between layers and before the tag "
                        "scores; --dropout is on the input features)")
    from .common import add_threads_argument, add_vectors_arguments

    add_vectors_arguments(m)
    add_threads_argument(m)
    from .runstate import add_budget_arguments

    add_budget_arguments(m)
    add_common_train_arguments(parser, epochs=None, patience=3, max_minutes=15.0, batch_size=32, units=100,
                               embedding_dim=100, dropout=0.5, lr=5e-3)


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
    kw = dict(token_column=args.token_column, tag_column=args.tag_column, format=args.format,
              encoding=args.encoding, feature_columns=_feature_columns(args.feature_columns))
    train = read_conll(args.train, **kw)
    valid = read_conll(args.valid, **kw)
    test = read_conll(args.test, **kw) if args.test else None
    return train, valid, test, os.path.splitext(os.path.basename(args.train))[0]


def _feature_columns(value):
    if value in ("auto", "none"):
        return None if value == "none" else "auto"
    try:
        return [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--feature-columns must be auto, none or comma-separated column indices, got {value!r}") \
            from None


class _Adapter:
    """What :class:`~rnnlab.tasks.runstate.TrainLoop` needs from the tagging task: epochs shuffled with rnnlab's
    generator (so a checkpoint's RNG state makes ``--resume`` repeat exactly what an uninterrupted run does),
    validation token accuracy / entity F1 / loss, and tagger files with a ``__task__`` entry (+ the optimizer
    state in ``checkpoint.npz``)."""

    def __init__(self, model, optimizer, train, valid, args, doc):
        self.model, self.optimizer, self.train, self.valid, self.args, self.doc = \
            model, optimizer, train, valid, args, doc
        model.compile(optimizer)   # the tagger's loss (CRF NLL or masked cross-entropy) and decoded accuracy

    def fit_arguments(self):
        """The data of the run's one ``Model.fit`` call: the training sentences as a
        :class:`~rnnlab.tagging.tagger.TaggingBatches` dataset (shuffled from rnnlab's generator before every
        epoch, so ``--resume`` repeats it); each batch is one step of the engine (forward with word dropout,
        loss, backward, the one NaN policy, the update)."""
        from ..tagging.tagger import TaggingBatches

        return {"x": TaggingBatches(self.model, self.train, self.args.batch_size, shuffle=True)}

    def evaluate(self):
        """Validation ``loss`` (the CRF's NLL per sentence, else masked cross-entropy per token), ``accuracy``
        (token accuracy) and, for entity tags, ``precision`` / ``recall`` / ``f1`` (one inference pass,
        ``Tagger.validation_logs``); the monitored value is ``f1`` (entity tags) or ``accuracy``."""
        logs = self.model.validation_logs(self.valid, self.args.unknown_tags)
        return {k[4:]: v for k, v in logs.items()}

    def save(self, path, run):
        from .runstate import add_task_entry

        self.model.save(path)
        opt = ({f"opt:{k}": v for k, v in self.optimizer.get_state().items()}
               if os.path.basename(path) == "checkpoint.npz" else None)
        add_task_entry(path, {**self.doc, "run": run}, opt)

    def load(self, path):
        from ..tagging.tagger import Tagger
        from .runstate import read_task_file

        doc, arrays = read_task_file(path, TASK)
        self.model = Tagger.load(path)
        self.model.set_training_words(self.train)   # word dropout's words and counts (not in the file)
        self.model.compile(self.optimizer)
        state = {k[4:]: v for k, v in arrays.items() if k.startswith("opt:")}
        if state:
            self.optimizer.set_state(state)
        return doc.get("run")


def _settings(args):
    """The settings a resumed run must share with the checkpoint."""
    keys = ("train", "valid", "generate", "num_sentences", "format", "token_column", "tag_column", "encoding",
            "unknown_tags", "lowercase", "min_count", "unidirectional", "char_features", "char_dim", "char_units",
            "cell", "units", "layers", "embedding_dim", "dropout", "optimizer", "clipnorm", "seed", "batch_size",
            "casing", "crf", "tag_scheme", "word_dropout", "vectors", "freeze_vectors", "feature_columns",
            "feature_dim", "output_dropout")
    out = {k: getattr(args, k) for k in keys}
    # options added later are part of the settings only when set, so older checkpoints still resume
    for k, off in (("word_dropout_alpha", 0.0), ("normalize_words", False), ("shape_dim", 0),
                   ("char_encoder", "lstm"), ("char_filters", 30)):
        if getattr(args, k) != off:
            out[k] = getattr(args, k)
    return out


def train(args):
    from .. import backend
    from ..tagging.tagger import Tagger, build_tagger
    from .runstate import TrainLoop

    from .common import apply_vectors, epochs_to_run

    from ..demo import limit_blas_threads
    from .common import threads

    epochs = epochs_to_run(args)
    limit_blas_threads(threads(args))
    for name in ("batch_size", "units", "layers", "embedding_dim", "char_dim", "char_units", "min_count",
                 "feature_dim", "char_filters"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 0.0 <= args.output_dropout < 1.0:
        raise ValueError(f"--output-dropout must be in [0, 1), got {args.output_dropout}")
    if not 0.0 <= args.word_dropout < 1.0:
        raise ValueError(f"--word-dropout must be in [0, 1), got {args.word_dropout}")
    if args.shape_dim < 0:
        raise ValueError(f"--shape-dim must be >= 0 (0 = no word-shape feature), got {args.shape_dim}")
    if not 0.0 <= args.word_dropout_alpha < float("inf"):
        raise ValueError(f"--word-dropout-alpha must be a finite number >= 0 (0 = off), got "
                         f"{args.word_dropout_alpha}")
    if args.bidirectional and args.unidirectional:
        raise ValueError("--bidirectional and --unidirectional contradict each other (bidirectional is the default)")
    backend.set_random_seed(args.seed)
    train_s, valid_s, test_s, name = _load(args)
    if args.char_features is None:   # on for real text and the suffix task, off for the two-sided generated task
        args.char_features = args.generate != "two-sided"
    if args.lowercase is None:   # lowercased word ids when the casing features and characters carry the case
        args.lowercase = bool(args.char_features and args.casing)
    if args.shape_dim and not args.char_features:
        raise ValueError(f"--shape-dim {args.shape_dim} needs the character features (the shapes are computed "
                         "from each word's characters); leave out --no-char-features")
    scheme = _tag_scheme(args, train_s, valid_s, test_s)
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
    from ..tagging.tagger import _entity_like

    entity = _entity_like(sorted({t for s in train_s for t in s.tags}))   # chunk tags: F1 picks the best epoch
    use_crf = args.crf == "on" or (args.crf == "auto" and entity)
    from .common import check_model_memory     # the word model's parameter memory (vocabulary not yet counted)
    check_model_memory(args, "tag", bidirectional=not args.unidirectional, outputs=len(known))
    model = build_tagger(train_s, char_features=args.char_features, lowercase=args.lowercase,
                         min_count=args.min_count, embedding_dim=args.embedding_dim, units=args.units, cell=args.cell,
                         layers=args.layers, bidirectional=not args.unidirectional, char_dim=args.char_dim,
                         char_units=args.char_units, dropout=args.dropout, crf=use_crf,
                         tag_scheme=scheme if use_crf else None, casing=args.char_features and args.casing,
                         word_dropout=args.word_dropout, feature_dim=args.feature_dim,
                         output_dropout=args.output_dropout, word_dropout_alpha=args.word_dropout_alpha,
                         normalize=args.normalize_words, shape_dim=args.shape_dim,
                         char_encoder=args.char_encoder, char_filters=args.char_filters)
    coverage = {}
    if args.vectors:
        coverage = apply_vectors(args.vectors, model.word_emb.params["embeddings"],
                                 {w: i for w, i in model.words.index.items() if i >= 2}, args.embedding_dim,
                                 args.verbose)
        model.word_emb._weights_changed()
        if args.freeze_vectors:
            model.word_emb.trainable = False
    if args.verbose:
        print(f"{len(train_s)} training / {len(valid_s)} validation sentences; {len(model.words)} words, "
              f"{len(model.tags) - 1} tags{f' ({scheme})' if scheme else ''}; {model.count_params():,} parameters; "
              f"{'bi' if not args.unidirectional else 'uni'}directional {args.cell}"
              f"{' + char ' + {'lstm': 'BiLSTM', 'cnn': 'CNN', 'both': 'BiLSTM + CNN'}[args.char_encoder] if args.char_features else ''}"
              f"{' + casing' if model.config['casing'] else ''}"
              f"{f' + {len(model.shapes)} word shapes' if model.shapes is not None else ''}"
              f"{f' + {len(model.features)} feature column(s)' if model.features else ''}"
              f"{' + CRF' if use_crf else ''}", flush=True)
    adapter = _Adapter(model, _optimizer(args), train_s, valid_s, args, {"task": TASK})
    loop = TrainLoop(out, adapter, monitor="f1" if entity else "accuracy", mode="max",
                     max_minutes=args.max_minutes, max_cpu_minutes=args.max_cpu_minutes, verbose=args.verbose,
                     config=_settings(args), patience=getattr(args, "patience", None) if args.epochs is None else None)
    if args.resume:
        loop.resume()
    run = loop.fit(epochs)
    best = Tagger.load(loop.model_path)
    path = loop.model_path
    metrics = {"bidirectional": not args.unidirectional, "cell": args.cell, "char_features": args.char_features,
               "casing": model.config["casing"], "feature_columns": len(model.features), "crf": use_crf, "tag_scheme": scheme, **coverage,
               "train_sentences": len(train_s), "epochs_run": len(run["history"]), "best_epoch": run["best_epoch"],
               "stop_reason": run.get("stop_reason"), "train_seconds": round(run["train_seconds"], 1),
               "train_cpu_seconds": round(run["train_cpu_seconds"], 1), "model": path}
    for label, data in (("valid", valid_s), ("test", test_s)):
        if not data:
            continue
        ev = best.evaluate(data, unknown_tags=args.unknown_tags)
        metrics[f"{label}_token_accuracy"] = ev["token_accuracy"]
        if ev["entity_tags"]:
            metrics.update({f"{label}_precision": ev["precision"], f"{label}_recall": ev["recall"],
                            f"{label}_f1": ev["f1"]})
    if args.verbose:
        print(f"model saved to {path} (best epoch {run['best_epoch']})")
    return finish_run(out, metrics)


def _tag_scheme(args, train_s, valid_s, test_s):
    """The scheme the CRF is constrained to: the declared one (every file checked against it; a forbidden tag
    is an error naming the file and line) or the one detected from the training file (``None`` for non-chunk
    tags or mixed conventions, read by the conlleval rules without constraints)."""
    from ..tagging.spans import detect_scheme, scheme_violation

    declared = args.tag_scheme
    if declared == "none":
        return None
    if declared == "auto":
        return detect_scheme([s.tags for s in train_s])
    scheme = "iob2" if declared == "bio" else declared
    files = (("train", args.train, train_s), ("valid", args.valid, valid_s), ("test", args.test, test_s or []))
    for label, path, data in files:
        for i, s in enumerate(data):
            bad = scheme_violation(s.tags, scheme)
            if bad:
                j, msg = bad
                where = f"{path}, sentence starting at line {s.line}, token {j + 1}" if s.line else \
                    f"{label} sentence {i}, token {j + 1}"
                raise ValueError(f"{where}: {msg}. --tag-scheme {declared} is strict; pass --tag-scheme auto to "
                                 "read the file the way conlleval does")
    return scheme


def add_tag_arguments(parser):
    parser.add_argument("--model", required=True, help="model.npz written by rnnlab train tag")
    parser.add_argument("text", nargs="+", help="sentence(s) to tag (tokens separated by whitespace; for a model "
                        "trained with feature columns each token is word|feature1|... e.g. He|PRP reckons|VBZ)")


def tag(args):
    from ..tagging.tagger import Tagger
    from .runstate import read_task_file

    read_task_file(args.model, TASK)   # a clear message for another task's model or a non-model file
    model = Tagger.load(args.model)
    sents = [t.split() for t in args.text]
    feats = None
    k = len(model.features)
    if k:
        feats = []
        for i, toks in enumerate(sents):
            parts = [t.split("|") for t in toks]
            bad = [t for t, p in zip(toks, parts) if len(p) != k + 1]
            if bad:
                raise ValueError(f"{args.model} was trained with {k} feature column(s) besides the words: give each "
                                 f"token as word|{'|'.join(['feature'] * k)} (e.g. He|PRP); got {bad[0]!r} in "
                                 f"sentence {i + 1}")
            sents[i] = [p[0] for p in parts]
            feats.append([[p[j + 1] for p in parts] for j in range(k)])
    for i, (toks, tags) in enumerate(zip(sents, model.predict(sents, features=feats))):
        if i:
            print()
        if not toks:
            print("rnnlab: note: empty sentence", file=sys.stderr)
        for tok, tg in zip(toks, tags):
            print(f"{tok}\t{tg}")
    return 0
