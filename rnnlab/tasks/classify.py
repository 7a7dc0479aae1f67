"""``rnnlab train classify``, ``rnnlab predict`` and ``rnnlab evaluate``: text classification (sentiment).

Train on any CSV/TSV (plain or ``.gz``) with a text column and a label column (2 or more classes)::

    rnnlab train classify --data reviews.csv [--test test.csv | --test-fraction 0.2 | --train-rows 25000]
                          [--text-column review --label-column sentiment] [--valid-fraction 0.1]
                          [--vocab-size 20000 --maxlen 400 --pool max|avg|last] [--cell gru --bidirectional ...]

``--train-rows N`` takes rows 1..N as the training split and the rest as the test split (the official IMDB
split of ``shared/data/imdb_reviews.csv.gz`` is ``--train-rows 25000``). The delimiter follows the file name
(``.tsv``/``.tab`` -> tab, else comma) unless ``--delimiter`` is given. Text column default: the first of
``review, text, sentence, document`` in the header; label column: the first of ``sentiment, label, class,
category, y``.

Pipeline: :func:`rnnlab.text.clean_review` (``<br />`` -> space, other tags dropped, entities unescaped;
``--no-clean`` skips it) -> a Keras-exact :class:`rnnlab.text.Tokenizer` fitted on the training texts
(``--vocab-size`` ids, unknown words -> ``<OOV>``, Keras' default filters delete punctuation) -> at most
``--maxlen`` ids per text (``--truncating pre`` keeps the end of long texts, as Keras' default).
Model::

    Embedding(V, E, mask_zero=True) -> [Bidirectional](GRU|LSTM|SimpleRNN(U, return_sequences=True)) x layers
        -> GlobalMaxPooling1D(use_mask=True) | GlobalAveragePooling1D | last output  -> Dropout
        -> Dense(1, sigmoid) (2 classes)  |  Dense(K, softmax) (K > 2 classes)

By default (``--ensemble nbsvm``) an NBSVM (:class:`rnnlab.models.nbsvm.NBSVMClassifier`: binarized word uni- and
bigrams scaled by the naive-Bayes log-count ratio, logistic regression; Wang & Manning 2012) is trained on the same
rows too, and the command predicts with ``w * p_rnn + (1 - w) * p_nbsvm``, ``w`` in {0, 0.1, ..., 1} picked on the
validation rows (:func:`pick_ensemble_weight`); ``--ensemble fasttext``: the same with a fastText bag of words and
bigrams (:class:`rnnlab.models.fasttext_classifier.FastTextClassifier`, 20 epochs), the default before NBSVM;
``--ensemble none``: the recurrent model alone. On the IMDB official split: GRU 0.876, fastText 0.897, GRU +
fastText 0.899, NBSVM 0.916, and the default mix (validation picks w = 0: NBSVM alone) 0.916 (docs/results.md,
docs/task-defaults.md).

Batches are bucketed by length (a shuffled chunk of 50 batches is sorted by length, then the batch order is
shuffled), each batch padded ("pre") only to its own longest text; padded steps are masked everywhere, so
bucketing changes speed, not results per text.

Outputs in ``--out`` (default ``runs/classify-NAME``): ``model.npz`` (best by validation accuracy; a normal
rnnlab model file whose ``__task__`` JSON entry holds the tokenizer, the class names, the settings and the mix
``{"ensemble": {"kind": "nbsvm", "file": "model_nbsvm.npz", "rnn_weight": w}}``, or with fastText
``{"kind": "fasttext", "fasttext_file": "model_fasttext.npz", "rnn_weight": w}``; no pickle), ``model_nbsvm.npz``
or ``model_fasttext.npz`` (the second model; keep it next to ``model.npz``), ``checkpoint.npz`` (resume),
``history.json``, ``metrics.json``; the last stdout line is the JSON metrics
``{"test_accuracy": ..., "test_loss": ..., "train_seconds": ...}``.

Use it::

    rnnlab predict --model runs/x/model.npz "What a wonderful film" "Dull and far too long"
    rnnlab evaluate --model runs/x/model.npz --data test.csv [--skip-rows 25000]
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re

import numpy as np

from .common import add_common_train_arguments, finish_run, make_optimizer, output_dir
from .runstate import SequentialTaskAdapter

TEXT_COLUMNS = ("review", "text", "sentence", "document")
LABEL_COLUMNS = ("sentiment", "label", "class", "category", "y")
TASK = "classify"


# ----------------------------------------------------------------------------------------------- data
def _delimiter_for(path, delimiter=None):
    if delimiter:
        return "\t" if delimiter in ("\\t", "tab", "TAB") else delimiter
    name = str(path).lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return "\t" if name.endswith((".tsv", ".tab")) else ","


def read_labelled_file(path, text_column=None, label_column=None, delimiter=None, encoding="utf-8"):
    """Read ``(texts, labels, line_numbers, (text_column, label_column))`` from a CSV/TSV (``.gz`` allowed).

    Errors (``ValueError``) name the file and the line: missing or unknown columns, a row with another
    number of fields than the header, an empty text or label, bytes that are not ``encoding``.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such data file: {path}")
    delim = _delimiter_for(path, delimiter)
    with open(path, "rb") as f:
        raw = f.read()
    if path.lower().endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: not a readable gzip file ({e})") from None
    from ..datasets.text_corpus import decode_bytes

    text = decode_bytes(raw, path, encoding)
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    try:
        header = next(reader)
    except StopIteration:
        raise ValueError(f"{path}: empty file (expected a header line with a text and a label column)") from None
    except csv.Error as e:
        raise ValueError(f"{path}, line 1: malformed header: {e}") from None
    header = [h.strip() for h in header]
    sep = "tab" if delim == "\t" else repr(delim)

    def pick(given, candidates, what, flag):
        if given is not None:
            if given not in header:
                raise ValueError(f"{path}, line 1: no column {given!r} ({flag}); the header ({sep}-separated) "
                                 f"has {header}")
            return given
        for c in candidates:
            if c in header:
                return c
        raise ValueError(f"{path}, line 1: cannot find the {what} column (tried {list(candidates)}); the header "
                         f"({sep}-separated) has {header}; name it with {flag}")

    tcol = pick(text_column, TEXT_COLUMNS, "text", "--text-column")
    lcol = pick(label_column, LABEL_COLUMNS, "label", "--label-column")
    if tcol == lcol:
        raise ValueError(f"{path}: the text and label columns are both {tcol!r}")
    ti, li = header.index(tcol), header.index(lcol)
    texts, labels, lines = [], [], []
    end = reader.line_num  # the last line read so far; a row starts on the line after it
    try:
        for row in reader:
            line, end = end + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                last_line = text.count("\n") + (0 if text.endswith("\n") else 1)
                if end > line and end >= last_line and text.count('"') % 2:
                    raise ValueError(f"{path}, line {line}: a quoted field starting on this line is never closed "
                                     f"(the row runs on to line {end}, the end of the file); check the quotes")
                span = f" (the row runs on to line {end}: a quoted field spans lines)" if end > line else ""
                raise ValueError(f"{path}, line {line}: {len(row)} fields, the header has {len(header)} "
                                 f"({sep}-separated){span}; is a field quoted wrongly?")
            t, lab = row[ti], row[li].strip()
            if not t.strip():
                raise ValueError(f"{path}, line {line}: empty text in column {tcol!r}")
            if not lab:
                raise ValueError(f"{path}, line {line}: empty label in column {lcol!r}")
            texts.append(t)
            labels.append(lab)
            lines.append(line)
    except csv.Error as e:
        raise ValueError(f"{path}, line {end + 1}: malformed row: {e}") from None
    if not texts:
        raise ValueError(f"{path}: no data rows after the header")
    return texts, labels, lines, (tcol, lcol)


def encode_labels(labels, classes, lines, path):
    """Label strings -> class ids; an unknown label is an error naming the line."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.empty(len(labels), dtype=np.int64)
    for i, (lab, line) in enumerate(zip(labels, lines)):
        k = index.get(lab)
        if k is None:
            known = list(classes)[:20] + (["..."] if len(classes) > 20 else [])
            raise ValueError(f"{path}, line {line}: unknown label {lab[:80]!r}; the model knows {len(classes)} "
                             f"classes {known}")
        out[i] = k
    return out


def _clean(texts, clean):
    if not clean:
        return list(texts)
    from ..text import clean_review

    return [clean_review(t) for t in texts]


def _trim_tokenizer(tok):
    """A copy of ``tok`` that keeps only the ``num_words`` kept ids (same conversions, much smaller JSON)."""
    from ..text import Tokenizer

    n = tok.num_words
    small = Tokenizer(num_words=n, filters=tok.filters, lower=tok.lower, split=tok.split,
                      char_level=tok.char_level, oov_token=tok.oov_token, document_count=tok.document_count)
    keep = {w: i for w, i in tok.word_index.items() if n is None or i < n}
    small.word_index = keep
    small.index_word = {i: w for w, i in keep.items()}
    small.word_counts.update((w, tok.word_counts[w]) for w in keep if w in tok.word_counts)
    small.word_docs.update((w, tok.word_docs[w]) for w in keep if w in tok.word_docs)
    small.index_docs.update((i, tok.index_docs[i]) for i in keep.values() if i in tok.index_docs)
    return small


def texts_to_id_lists(tok, texts, maxlen, truncating="pre"):
    """Token ids per text, at most ``maxlen`` of them (``pre``: keep the end), at least one (an empty
    result becomes ``[0]``: a fully padded, masked row)."""
    seqs = tok.texts_to_sequences(texts)
    out = []
    for s in seqs:
        if maxlen and len(s) > maxlen:
            s = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        out.append(np.asarray(s if s else [0], dtype=np.int32))
    return out


def pad_batch(seqs, idx):
    """Pre-pad the sequences ``idx`` with 0 to their longest length: (len(idx), T) int32."""
    T = max(len(seqs[i]) for i in idx)
    x = np.zeros((len(idx), T), dtype=np.int32)
    for r, i in enumerate(idx):
        s = seqs[i]
        x[r, T - len(s):] = s
    return x


def bucket_batches(lengths, batch_size, rng=None, chunk_batches=50):
    """Index arrays of batches. With ``rng``: shuffle, sort chunks of ``chunk_batches`` batches by length,
    shuffle the batch order. Without: sorted by length (for evaluation)."""
    lengths = np.asarray(lengths)
    n = len(lengths)
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    perm = rng.permutation(n)
    chunk = batch_size * chunk_batches
    batches = []
    for c in range(0, n, chunk):
        part = perm[c:c + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


# ---------------------------------------------------------------------------------------------- model
def build_model(vocab_in, n_classes, args):
    import rnnlab
    from ..layers import GRU, LSTM, Bidirectional, Dense, Dropout, Embedding, SimpleRNN
    from ..layers.pooling import GlobalAveragePooling1D, GlobalMaxPooling1D

    cell = {"lstm": LSTM, "gru": GRU, "rnn": SimpleRNN}[args.cell]
    # fixed layer names: optimizer state is keyed by weight path, so names must not depend on what else
    # was built in the process
    layers = [rnnlab.Input((None,), dtype="int32"),
              Embedding(vocab_in, args.embedding_dim, mask_zero=True, name="embedding")]
    for i in range(args.layers):
        last = i == args.layers - 1
        rnn = cell(args.units, return_sequences=not (last and args.pool == "last"),
                   recurrent_dropout=0.0, dropout=args.rnn_dropout, name=f"rnn_{i}")
        layers.append(Bidirectional(rnn, name=f"bidirectional_{i}") if args.bidirectional else rnn)
    if args.pool == "max":
        layers.append(GlobalMaxPooling1D(use_mask=True, name="pool"))
    elif args.pool == "avg":
        layers.append(GlobalAveragePooling1D(name="pool"))
    if args.dropout:
        layers.append(Dropout(args.dropout, name="dropout"))
    layers.append(Dense(1, activation="sigmoid", name="output") if n_classes == 2
                  else Dense(n_classes, activation="softmax", name="output"))
    model = rnnlab.Sequential(layers, name="classifier")
    model.compile(optimizer=make_optimizer(args), loss="binary_crossentropy" if n_classes == 2
                  else "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def predict_proba(model, seqs, batch_size=128):
    """Class probabilities (N, K) for id lists (length-sorted batches, inference mode)."""
    n = len(seqs)
    probs = None
    for idx in bucket_batches([len(s) for s in seqs], batch_size):
        out = np.asarray(model.predict_on_batch(pad_batch(seqs, idx)), dtype=np.float64)
        if out.shape[-1] == 1:
            out = np.concatenate([1.0 - out, out], axis=1)
        if probs is None:
            probs = np.zeros((n, out.shape[1]))
        probs[idx] = out
    return probs


def scores(probs, y):
    """``{"loss": mean cross-entropy (nats), "accuracy": ...}``."""
    p = np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)
    return {"loss": float(-np.mean(np.log(p))), "accuracy": float(np.mean(np.argmax(probs, axis=1) == y))}


# ------------------------------------------------------------------------- the combined (ensemble) model
#: the fastText part of the default combination trains this many epochs (on the IMDB official split, validation
#: / test accuracy of fastText alone: 5 epochs, the package default, 0.870 / 0.858; 10: 0.897 / 0.891; 15:
#: 0.901 / 0.896; 20: 0.902 / 0.897; see docs/results.md)
ENSEMBLE_FT_EPOCHS = 20
#: the candidate weights of the recurrent model's probabilities, picked on the validation rows
ENSEMBLE_WEIGHTS = tuple(i / 10 for i in range(11))
#: the NBSVM part (the default, ``--ensemble nbsvm``) takes at most this many full-batch Adam steps, the step with
#: the best validation accuracy (every 10th) kept; on the IMDB official split validation / test accuracy of NBSVM
#: alone after 50 steps 0.930 / 0.916, after 100 0.929 / 0.918 (docs/results.md)
ENSEMBLE_NBSVM_STEPS = 100


#: the fastText part's words: lowercase runs of letters/digits with inner apostrophes, the tokens of
#: ``rnnlab train word2vec`` and ``--model fasttext`` (a test checks they agree; not imported from the sibling
#: task module, see tests/test_task_defaults_layers.py)
_FT_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")


def fasttext_tokens(texts):
    """Token lists for the fastText part: cleaned texts tokenised as ``rnnlab train word2vec`` does."""
    return [_FT_TOKEN.findall(t.replace("<br />", " ").lower()) for t in texts]


def ensemble_bucket(args, tokens):
    """The hashed n-gram rows of the combined model's fastText part: ``min(--bucket, 4 x training tokens)``
    (a corpus has fewer distinct word n-grams than tokens, so 4x keeps collisions rare while the file of a small
    data set stays small; IMDB's 5.8M tokens give fastText's 2,000,000)."""
    return int(max(1, min(args.bucket, 4 * sum(len(t) for t in tokens))))


def part_proba(part, tokens, classes):
    """The class probabilities (N, K) of the mix's second model, a token-list classifier (NBSVM or fastText:
    ``predict_proba`` and ``classes``), with the columns in ``classes`` order."""
    p = part.predict_proba(tokens)
    cols = [part.classes.index(c) if c in part.classes else None for c in classes]
    out = np.zeros((len(tokens), len(classes)))
    for k, j in enumerate(cols):
        if j is not None:
            out[:, k] = p[:, j]
    return out


def pick_ensemble_weight(p_rnn, p_ft, y):
    """The weight ``w`` of ``w * p_rnn + (1 - w) * p_ft`` among :data:`ENSEMBLE_WEIGHTS` with the best accuracy
    on the labelled rows ``y`` (ties: the lower cross-entropy, then the larger ``w``). Returns ``(w, scores)``."""
    best = None
    for w in ENSEMBLE_WEIGHTS:
        sc = scores(w * p_rnn + (1.0 - w) * p_ft, y)
        key = (sc["accuracy"], -sc["loss"], w)
        if best is None or key > best[0]:
            best = (key, w, sc)
    return best[1], best[2]


def load_ensemble_part(model_path, doc):
    """``(second model, rnn weight)`` of a combined classify model, or ``None`` for an RNN-only one. The second
    model's file lies next to ``model_path``: ``doc["ensemble"]["file"]`` (``kind`` ``"nbsvm"``: an
    :class:`~rnnlab.models.nbsvm.NBSVMClassifier`) or, in the fastText form, ``doc["ensemble"]["fasttext_file"]``
    (a :class:`~rnnlab.models.fasttext_classifier.FastTextClassifier`; files written before NBSVM have it)."""
    ens = doc.get("ensemble")
    if not ens:
        return None
    kind = ens.get("kind", "fasttext") if isinstance(ens, dict) else None
    key = "fasttext_file" if kind == "fasttext" else "file"
    if kind not in ("fasttext", "nbsvm") or key not in ens or "rnn_weight" not in ens:
        raise ValueError(f"{model_path}: corrupt 'ensemble' entry {ens!r:.200} (expected kind 'fasttext' with "
                         "fasttext_file, or 'nbsvm' with file; and rnn_weight)")
    w = ens["rnn_weight"]
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= w <= 1.0:
        raise ValueError(f"{model_path}: corrupt 'ensemble' entry: rnn_weight must be in [0, 1], got {w!r}")
    if not isinstance(ens[key], str) or not ens[key]:
        raise ValueError(f"{model_path}: corrupt 'ensemble' entry: {key} must be a file name, got {ens[key]!r:.80}")
    path = os.path.join(os.path.dirname(os.path.abspath(os.fspath(model_path))), os.path.basename(ens[key]))
    if not os.path.exists(path):
        name = "fastText" if kind == "fasttext" else "NBSVM"
        raise FileNotFoundError(f"{model_path} combines its recurrent model with the {name} model "
                                f"{os.path.basename(path)}, which is missing from the same folder ({path}); copy "
                                "both files together")
    if kind == "nbsvm":
        from ..models.nbsvm import NBSVMClassifier

        return NBSVMClassifier.load(path), float(w)
    from ..models.fasttext_classifier import FastTextClassifier

    return FastTextClassifier.load(path), float(w)


def classify_proba(model_path, model, doc, tok, texts, batch_size=128):
    """Class probabilities (N, K) for raw texts from a classify model file: the recurrent model's, mixed with
    its second model's (``w * p_rnn + (1 - w) * p_part``, NBSVM or fastText) when the file holds an ensemble."""
    cleaned = _clean(texts, doc["clean"])
    p = predict_proba(model, texts_to_id_lists(tok, cleaned, doc["maxlen"], doc["truncating"]), batch_size)
    part = load_ensemble_part(model_path, doc)
    if part is None:
        return p
    second, w = part
    return w * p + (1.0 - w) * part_proba(second, fasttext_tokens(cleaned), doc["classes"])


class _Adapter(SequentialTaskAdapter):
    """What :class:`~rnnlab.tasks.runstate.TrainLoop` needs from the classification task."""

    task = TASK

    def __init__(self, model, doc, train, valid, args):
        self.model, self.doc, self.args = model, doc, args
        self.x, self.y = train
        self.valid = valid
        self.lengths = np.array([len(s) for s in self.x])

    def fit_arguments(self):
        """``Model.fit``'s data (TrainLoop): length-bucketed, padded batches drawn every epoch from rnnlab's
        generator (so a checkpoint's RNG state repeats them on ``--resume``)."""
        from .. import backend
        from .runstate import EpochBatchSet

        m = self.model
        if not any(met.name == "accuracy" for met in m.metrics):  # models saved before the metric was compiled in
            m.compile(optimizer=m.optimizer, loss=m.loss, metrics=["accuracy"])
        bs, two = self.args.batch_size, self.doc["n_classes"] == 2
        chunk = bs * 50                                           # bucket_batches' chunks of 50 batches
        count = sum(-(-min(chunk, len(self.x) - c) // bs) for c in range(0, len(self.x), chunk))

        def batch(idx):
            yb = self.y[idx]
            return pad_batch(self.x, idx), (yb.reshape(-1, 1).astype(np.float32) if two else yb)
        return {"x": EpochBatchSet(count, lambda: bucket_batches(self.lengths, bs, backend.rng()), batch)}

    def evaluate(self):
        if self.valid is None:
            return {}
        return scores(predict_proba(self.model, self.valid[0]), self.valid[1])


# ------------------------------------------------------------------------------------------- commands
def add_train_arguments(parser):
    d = parser.add_argument_group("data")
    d.add_argument("--data", required=True, help="CSV/TSV (optionally .gz) with a header, a text and a label column")
    g = d.add_mutually_exclusive_group()
    g.add_argument("--test", help="separate test file (same columns)")
    g.add_argument("--test-fraction", type=float, default=None, help="random held-out test fraction (default 0.2)")
    g.add_argument("--train-rows", type=int, default=None,
                   help="rows 1..N train, the rest test (IMDB official split: 25000)")
    d.add_argument("--valid-fraction", type=float, default=0.1,
                   help="part of the training rows held out to pick the best epoch (0: keep the last epoch)")
    d.add_argument("--text-column", default=None)
    d.add_argument("--label-column", default=None)
    d.add_argument("--delimiter", default=None, help="field separator (default from the file name: .tsv -> tab)")
    d.add_argument("--encoding", default="utf-8")
    d.add_argument("--vocab-size", type=int, default=20000, help="number of word ids kept (Tokenizer num_words)")
    d.add_argument("--maxlen", type=int, default=400, help="at most this many words per text")
    d.add_argument("--truncating", choices=["pre", "post"], default="pre",
                   help="pre: keep the end of long texts (Keras default); post: keep the start")
    d.add_argument("--no-clean", dest="clean", action="store_false", help="skip the <br /> / HTML clean-up")
    m = parser.add_argument_group("model")
    m.add_argument("--pool", choices=["max", "avg", "last"], default="max",
                   help="how the recurrent outputs become one vector (max/avg over the real steps, or the last state)")
    m.add_argument("--rnn-dropout", type=float, default=0.0, help="dropout on the recurrent layers' inputs")
    m.add_argument("--ensemble", choices=["nbsvm", "fasttext", "none"], default="nbsvm",
                   help="nbsvm (default): also train an NBSVM (naive-Bayes-scaled word uni- and bigrams, logistic "
                        "regression) on the same rows and predict with w * recurrent + (1 - w) * NBSVM "
                        "probabilities, w picked on the validation rows (written to model_nbsvm.npz next to "
                        "model.npz); fasttext: the same with a fastText bag of words and bigrams "
                        "(model_fasttext.npz); none: the recurrent model alone")
    m.add_argument("--eval-batch-size", type=int, default=128)
    from .common import add_threads_argument

    add_threads_argument(m)
    from .runstate import add_budget_arguments

    add_budget_arguments(m)
    from .common import add_vectors_arguments

    add_vectors_arguments(m)
    add_common_train_arguments(parser, epochs=None, patience=2, max_minutes=15.0, batch_size=32, cell="gru",
                               units=64, embedding_dim=64, dropout=0.0, lr=1e-3)
    from .fasttext import add_classify_arguments  # --model fasttext (the bag-of-n-grams baseline)

    add_classify_arguments(parser)


def _check_args(args):
    for name in ("batch_size", "units", "layers", "embedding_dim", "vocab_size", "maxlen"):
        v = getattr(args, name)
        if v is None or v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {v}")
    for name in ("dropout", "rnn_dropout"):
        v = getattr(args, name)
        if not 0.0 <= v < 1.0:
            raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1), got {v}")
    if not 0.0 <= args.valid_fraction < 1.0:
        raise ValueError(f"--valid-fraction must be in [0, 1), got {args.valid_fraction}")
    if args.test_fraction is not None and not 0.0 < args.test_fraction < 1.0:
        raise ValueError(f"--test-fraction must be in (0, 1), got {args.test_fraction}")


def _settings(args):
    """The settings a resumed run must share with the checkpoint."""
    keys = ("cell", "units", "layers", "bidirectional", "embedding_dim", "dropout", "rnn_dropout", "optimizer",
            "clipnorm", "seed", "batch_size", "vocab_size", "maxlen", "truncating", "clean", "pool",
            "valid_fraction", "test_fraction", "train_rows", "test", "vectors", "freeze_vectors")
    return {k: getattr(args, k) for k in keys}


def train(args):
    if getattr(args, "model", "rnn") == "fasttext":   # rnnlab/tasks/fasttext.py: same data, split, metrics
        from .fasttext import train_classify

        return train_classify(args)
    from .. import backend
    from ..demo import limit_blas_threads
    from ..text import Tokenizer
    from .runstate import TrainLoop

    from .common import apply_vectors, epochs_to_run, threads

    epochs = epochs_to_run(args)
    _check_args(args)
    limit_blas_threads(threads(args))
    texts, labels, lines, (tcol, lcol) = read_labelled_file(args.data, args.text_column, args.label_column,
                                                           args.delimiter, args.encoding)
    split_rng = np.random.default_rng(args.seed + 7919)
    n = len(texts)
    if args.test:
        te_texts, te_labels, te_lines, _ = read_labelled_file(args.test, tcol, lcol, args.delimiter, args.encoding)
        tr_idx, test_path = np.arange(n), args.test
    elif args.train_rows is not None:
        if not 0 < args.train_rows < n:
            raise ValueError(f"--train-rows must be in [1, {n - 1}] for {args.data} ({n} rows), got {args.train_rows}")
        tr_idx = np.arange(args.train_rows)
        te = np.arange(args.train_rows, n)
        te_texts, te_labels, te_lines = [texts[i] for i in te], [labels[i] for i in te], [lines[i] for i in te]
        test_path = args.data
    else:
        frac = 0.2 if args.test_fraction is None else args.test_fraction
        perm = split_rng.permutation(n)
        n_test = int(round(n * frac))
        if n_test < 1 or n_test >= n:
            raise ValueError(f"--test-fraction {frac} leaves no test or no training rows of {n}")
        te, tr_idx = np.sort(perm[:n_test]), np.sort(perm[n_test:])
        te_texts, te_labels, te_lines = [texts[i] for i in te], [labels[i] for i in te], [lines[i] for i in te]
        test_path = args.data
    va_idx = None
    if args.valid_fraction > 0:
        perm = split_rng.permutation(len(tr_idx))
        n_val = int(round(len(tr_idx) * args.valid_fraction))
        if n_val >= 1 and n_val < len(tr_idx):
            va_idx, tr_idx = np.sort(tr_idx[perm[:n_val]]), np.sort(tr_idx[perm[n_val:]])
    classes = sorted({labels[i] for i in tr_idx})
    if len(classes) < 2:
        raise ValueError(f"{args.data}: the training rows hold only one label {classes}; need 2 or more classes")
    y_all = encode_labels(labels, classes + sorted(set(labels) - set(classes)), lines, args.data)
    unseen = sorted({labels[i] for i in (va_idx if va_idx is not None else [])} - set(classes))
    if unseen:
        raise ValueError(f"{args.data}: label(s) {unseen} occur only in the validation rows; the training rows have "
                         f"{classes}")
    y_test = encode_labels(te_labels, classes, te_lines, test_path)

    name = os.path.splitext(os.path.basename(args.data).replace(".gz", ""))[0]
    out = output_dir(args.out, f"classify-{name}")
    backend.set_random_seed(args.seed)
    tr_texts = _clean([texts[i] for i in tr_idx], args.clean)
    tok = Tokenizer(num_words=args.vocab_size, oov_token="<OOV>")
    tok.fit_on_texts(tr_texts)
    tok = _trim_tokenizer(tok)
    vocab_in = min(args.vocab_size, len(tok.word_index) + 1)
    x_train = texts_to_id_lists(tok, tr_texts, args.maxlen, args.truncating)
    y_train = y_all[tr_idx]
    valid = va_clean = None
    if va_idx is not None:
        va_clean = _clean([texts[i] for i in va_idx], args.clean)
        valid = (texts_to_id_lists(tok, va_clean, args.maxlen, args.truncating), y_all[va_idx])
    te_clean = _clean(te_texts, args.clean)
    x_test = texts_to_id_lists(tok, te_clean, args.maxlen, args.truncating)
    from .common import check_model_memory
    check_model_memory(args, "classify", vocab=vocab_in, outputs=1 if len(classes) == 2 else len(classes))
    model = build_model(vocab_in, len(classes), args)
    coverage = {}
    if args.vectors:
        emb = model.get_layer("embedding")
        coverage = apply_vectors(args.vectors, emb.params["embeddings"],
                                 {w: i for w, i in tok.word_index.items() if 1 <= i < vocab_in}, args.embedding_dim,
                                 args.verbose)
        emb._weights_changed()
        if args.freeze_vectors:
            emb.trainable = False
    doc = {"task": TASK, "tokenizer": json.loads(tok.to_json()), "classes": classes, "n_classes": len(classes),
           "maxlen": args.maxlen, "truncating": args.truncating, "clean": args.clean, "text_column": tcol,
           "label_column": lcol, "delimiter": _delimiter_for(args.data, args.delimiter)}
    if args.verbose:
        lens = np.array([len(s) for s in x_train])
        print(f"{len(x_train)} training / {0 if valid is None else len(valid[0])} validation / {len(x_test)} test "
              f"texts; classes {classes}; vocabulary {vocab_in} ids; words per text (<= {args.maxlen}): "
              f"mean {lens.mean():.0f}, max {lens.max()}; {model.count_params():,} parameters", flush=True)
    adapter = _Adapter(model, doc, (x_train, y_train), valid, args)
    loop = TrainLoop(out, adapter, monitor="accuracy", mode="max", max_minutes=args.max_minutes,
                     verbose=args.verbose, max_cpu_minutes=args.max_cpu_minutes, config=_settings(args),
                     patience=getattr(args, "patience", None) if args.epochs is None else None)
    if args.resume:
        loop.resume()
    run = loop.fit(epochs)
    from .runstate import load_sequential_task_file

    best, best_doc = load_sequential_task_file(loop.model_path, TASK)
    p_test = predict_proba(best, x_test, args.eval_batch_size)
    test = rnn_test = scores(p_test, y_test)
    combined = {}
    if args.ensemble != "none":
        test, combined = _train_ensemble(args, out, loop.model_path, best, best_doc, classes, tr_texts, y_train,
                                         va_clean, valid, te_clean, y_test, p_test)
    if args.verbose:
        print(f"model saved to {loop.model_path} (best epoch {run['best_epoch']})", flush=True)
    last = run["history"][-1] if run["history"] else {}
    return finish_run(out, {
        "test_accuracy": test["accuracy"], "test_loss": test["loss"],
        "valid_accuracy": run["best"] if valid is not None else None,
        "train_accuracy": last.get("accuracy"), "train_seconds": round(run["train_seconds"], 1),
        "train_cpu_seconds": round(run["train_cpu_seconds"], 1), "epochs_run": len(run["history"]),
        "best_epoch": run["best_epoch"], "stop_reason": run.get("stop_reason"), "classes": len(classes),
        "train_texts": len(x_train), "test_texts": len(x_test), "model": loop.model_path, **coverage,
        "rnn_test_accuracy": rnn_test["accuracy"], **combined,
    })


def _train_ensemble(args, out, model_path, best, best_doc, classes, tr_texts, y_train, va_clean, valid, te_clean,
                    y_test, p_test):
    """The second model of the mix (``--ensemble nbsvm``, the default, or ``fasttext``) trained on the same
    training rows, mixed with the recurrent model as ``w * p_rnn + (1 - w) * p_part``, ``w`` picked on the
    validation rows (:func:`pick_ensemble_weight`; 0.5 without validation rows).

    * ``nbsvm``: :class:`rnnlab.models.nbsvm.NBSVMClassifier` (binarized word uni- and bigrams scaled by the
      naive-Bayes log-count ratio, logistic regression; :data:`ENSEMBLE_NBSVM_STEPS` full-batch Adam steps, the
      step with the best validation accuracy kept), written to ``model_nbsvm.npz``;
    * ``fasttext``: a fastText bag of words and word n-grams (``--word-ngrams``, ``--ft-dim``, ``--ft-lr``,
      ``--ft-min-count``; :data:`ENSEMBLE_FT_EPOCHS` epochs; :func:`ensemble_bucket` rows), ``model_fasttext.npz``.

    Records the mix in ``model.npz``; returns ``(test scores, metrics)``."""
    import time

    from .runstate import save_sequential_task_file

    kind = args.ensemble
    c0, t0 = time.process_time(), time.perf_counter()
    tr_tokens = fasttext_tokens(tr_texts)
    va_tokens = fasttext_tokens(va_clean) if valid is not None else None
    if kind == "nbsvm":
        from ..models.nbsvm import NBSVMClassifier

        part = NBSVMClassifier(ngrams=2, steps=ENSEMBLE_NBSVM_STEPS)
        part.fit(tr_tokens, [classes[k] for k in y_train],
                 validation_data=None if valid is None else (va_tokens, [classes[k] for k in valid[1]]))
        what = f"NBSVM part (uni+bigrams, {part.n_features:,} features, best step {part.best_step})"
    else:
        from ..models.fasttext_classifier import FastTextClassifier

        part = FastTextClassifier(dim=args.ft_dim, word_ngrams=args.word_ngrams,
                                  bucket=ensemble_bucket(args, tr_tokens), lr=args.ft_lr, epochs=ENSEMBLE_FT_EPOCHS,
                                  min_count=args.ft_min_count, seed=args.seed)
        part.fit(tr_tokens, [classes[k] for k in y_train])
        what = f"fastText part ({ENSEMBLE_FT_EPOCHS} epochs, {part.bucket:,} n-gram rows)"
    if valid is not None:
        p_va_rnn = predict_proba(best, valid[0], args.eval_batch_size)
        p_va_part = part_proba(part, va_tokens, classes)
        w, va = pick_ensemble_weight(p_va_rnn, p_va_part, valid[1])
        va_part = scores(p_va_part, valid[1])["accuracy"]
    else:
        w, va, va_part = 0.5, None, None
    p_te_part = part_proba(part, fasttext_tokens(te_clean), classes)
    test = scores(w * p_test + (1.0 - w) * p_te_part, y_test)
    name = f"model_{kind}.npz"
    part_path = os.path.join(out, name)
    # the fastText entry keeps its first form (files written before NBSVM load unchanged)
    ens = ({"kind": "fasttext", "fasttext_file": name, "rnn_weight": w} if kind == "fasttext"
           else {"kind": kind, "file": name, "rnn_weight": w})
    from .. import distributed
    if distributed.is_root():  # under mpiexec rank 0 alone writes the run's files
        part.save(part_path)  # atomic (rnnlab.io.write_npz)
        save_sequential_task_file(best, model_path, {**best_doc, "ensemble": ens}, include_optimizer=False)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    if args.verbose:
        print(f"{what}: validation accuracy {va_part if va_part is None else round(va_part, 4)}; mix {w:.1f} x "
              f"recurrent + {1 - w:.1f} x {kind}: validation {None if va is None else round(va['accuracy'], 4)} "
              f"({wall:.0f} s)", flush=True)
    metrics = {f"{kind}_test_accuracy": scores(p_te_part, y_test)["accuracy"], f"{kind}_valid_accuracy": va_part,
               "ensemble": kind, "ensemble_rnn_weight": w,
               "ensemble_valid_accuracy": None if va is None else va["accuracy"],
               "ensemble_seconds": round(wall, 1), "ensemble_cpu_seconds": round(cpu, 1), f"{kind}_model": part_path}
    if kind == "nbsvm":
        metrics["nbsvm_best_step"] = part.best_step
    return test, metrics


def load_classifier(path):
    """``(model, doc, tokenizer)`` from a classify model file (clear error for another task's file)."""
    from ..text import tokenizer_from_json
    from .runstate import load_sequential_task_file

    model, doc = load_sequential_task_file(path, TASK)
    return model, doc, tokenizer_from_json(json.dumps(doc["tokenizer"]), source=str(path))


def add_predict_arguments(parser):
    parser.add_argument("--model", required=True, help="model.npz written by rnnlab train classify")
    parser.add_argument("text", nargs="+", help="text(s) to classify")


def predict(args):
    model, doc, tok = load_classifier(args.model)
    texts = list(args.text)
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"text #{i + 1} is empty; give some words to classify")
    probs = classify_proba(args.model, model, doc, tok, texts)
    for t, p in zip(texts, probs):
        k = int(np.argmax(p))
        print(f"{doc['classes'][k]}\t{p[k]:.4f}\t{t}")
    return 0


def add_evaluate_arguments(parser):
    parser.add_argument("--model", required=True, help="model.npz written by rnnlab train classify")
    parser.add_argument("--data", required=True, help="labelled CSV/TSV (the model's text/label columns)")
    parser.add_argument("--text-column", default=None)
    parser.add_argument("--label-column", default=None)
    parser.add_argument("--delimiter", default=None)
    parser.add_argument("--encoding", default="utf-8")
    parser.add_argument("--skip-rows", type=int, default=0,
                        help="ignore the first N data rows (e.g. 25000: the IMDB test split of the shared CSV)")


def evaluate(args):
    model, doc, tok = load_classifier(args.model)
    texts, labels, lines, _ = read_labelled_file(args.data, args.text_column or doc["text_column"],
                                                 args.label_column or doc["label_column"], args.delimiter,
                                                 args.encoding)
    if not 0 <= args.skip_rows < len(texts):
        raise ValueError(f"--skip-rows must be in [0, {len(texts) - 1}] for {args.data}, got {args.skip_rows}")
    texts, labels, lines = texts[args.skip_rows:], labels[args.skip_rows:], lines[args.skip_rows:]
    y = encode_labels(labels, doc["classes"], lines, args.data)
    res = scores(classify_proba(args.model, model, doc, tok, texts), y)
    print(json.dumps({"accuracy": res["accuracy"], "loss": res["loss"], "samples": len(y)}, sort_keys=True))
    return 0
