"""``rnnlab train wordlm``: word-level language model on PTB-style files, reported as perplexity.

::

    rnnlab train wordlm --train train.txt --valid valid.txt [--test test.txt] [--vocab-size N]
                        [--cell lstm|gru|rnn --layers 2 --units 256 --embedding-dim 256 --dropout 0.3]
                        [--tie-weights] [--bptt 35] [--optimizer sgd --lr 20 --clipnorm 0.25]
                        [--lr-decay 0.25 --lr-patience 1]

Files: one sentence per line, tokens separated by spaces, ``<eos>`` appended to every line
(:func:`rnnlab.datasets.text_corpus.load_word_corpus`); the vocabulary comes from the training file
(``--vocab-size`` keeps the most frequent words, the rest -> ``<unk>``).

Model (a stateful Sequential)::

    Embedding(V, E) -> Dropout -> [LSTM|GRU|SimpleRNN(U, return_sequences=True, stateful=True) -> Dropout] x layers
        -> Dense(V)                           (logits)
        or, with --tie-weights, TiedDense: z = h E^T + b, reusing the embedding matrix E (V, E)

Weight tying and the output layer: the output layer's kernel would be (H, V) for a last hidden size H; tying
sets it to E^T, which needs H = E, so with ``--tie-weights`` the **last recurrent layer has
``--embedding-dim`` units** (the others ``--units``), and the output layer keeps only its bias (V,). E then gets
the sum of two gradients each step, the sparse rows of the lookup plus the dense ``g^T h`` of the output
(:mod:`rnnlab.layers.tied`, checked against finite differences and PyTorch in the tests), and the model has
V*E fewer parameters.

Training: the training id stream is cut into ``--batch-size`` contiguous streams and walked in windows of
``--bptt`` steps by ``Model.fit(..., tbptt_steps=bptt)`` (state carried between windows, gradient cut at each
window's start; states reset every epoch). ``--clipnorm C`` clips the *global* gradient norm (all weights
together) to C. After each epoch the validation perplexity is measured (``--eval-batch-size`` streams); when it
does not improve for ``--lr-patience`` epochs the learning rate is multiplied by ``--lr-decay``; the best model
is kept. Perplexity = exp(mean negative log-likelihood per token, ``<eos>`` included, ``<unk>`` counted as a word),
the same convention as ``rnnlab ngram``.

Defaults (the recipe): tied weights (``--no-tie-weights`` to untie), variational dropout on the embedding output
and between layers (one mask per sequence and feature for the whole BPTT window; ``--no-variational-dropout``),
``--dropout`` by the rule of :func:`default_dropout` (by size: 0.5 below 3M training tokens, 0.3 below 30M, else
0.1; by budget: at most 0.2 when the budget or ``--epochs`` allows fewer than 6 epochs, :func:`budget_epochs`),
plain SGD with learning rate 20 and global clipnorm 0.25, the learning rate divided by 4 on a plateau (the
Zaremba et al. 2014 / PyTorch ``word_language_model`` recipe: on WikiText-2, at the same number of steps, it
measured validation perplexity 412 where Adam 2e-3 with clipnorm 5, the earlier default, measured 788; Adam's
per-coordinate steps also let the many rare rows of a tied output matrix grow, and one Adam run collapsed to
worse than uniform; ``--optimizer adam --lr 2e-3 --clipnorm 5`` restores it), early stopping after 3 epochs
without a better validation perplexity, within ``--max-minutes 15``. The final line also gives the perplexity **without
``<eos>``** (``*_perplexity_without_eos``: the mean over the targets that are not ``<eos>``; the model still reads
every ``<eos>`` as input), for comparison with figures that leave it out. ``--weight-drop R`` adds AWD-LSTM's
DropConnect on each recurrent layer's W_h (:class:`rnnlab.layers.WeightDrop`; off by default).

Outputs: ``OUT/model.npz`` (best validation perplexity; an rnnlab model file with a ``__task__`` entry holding
the vocabulary), ``checkpoint.npz``, ``history.json``, ``metrics.json``; the last line printed is
``{"valid_perplexity": ..., "test_perplexity": ..., "train_seconds": ...}``.
"""
from __future__ import annotations

import math
import os

import numpy as np

from .common import add_common_train_arguments, finish_run, output_dir
from .runstate import SequentialTaskAdapter

TASK = "wordlm"


def build_model(vocab, s, batch_size):
    """The stateful language model for ``batch_size`` parallel streams (see
    :func:`rnnlab.models.lm.build_wordlm_model`)."""
    from ..models.lm import build_wordlm_model

    return build_wordlm_model(vocab, s, batch_size)


def compile_model(model, s):
    from .. import losses, optimizers

    cls = {"adam": optimizers.Adam, "rmsprop": optimizers.RMSprop, "sgd": optimizers.SGD,
           "adagrad": optimizers.Adagrad}.get(s["optimizer"].lower())
    if cls is None:
        raise ValueError(f"--optimizer must be one of adam, rmsprop, sgd, adagrad; got {s['optimizer']!r}")
    opt = cls(s["lr"], global_clipnorm=s["clipnorm"]) if s["clipnorm"] else cls(s["lr"])
    model.compile(optimizer=opt, loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def stream_batches(ids, batch_size, what="training"):
    """``(x, y)`` (B, L): B contiguous streams, y = x shifted by one token."""
    n = (len(ids) - 1) // batch_size
    if n < 1:
        raise ValueError(f"the {what} data ({len(ids)} tokens) is too short for {batch_size} streams; use a smaller "
                         "batch size")
    x = ids[:n * batch_size].reshape(batch_size, n).astype(np.int32)
    y = ids[1:n * batch_size + 1].reshape(batch_size, n).astype(np.int64)
    return x, y


def stream_nll(model, ids, chunk=100):
    """Mean negative log-likelihood (nats per token) of ``ids[1:]`` read as the model's stateful streams."""
    from ..models.lm import log_softmax

    x, y = stream_batches(ids, model.input_shape[0], "evaluation")
    model.reset_states()
    total = 0.0
    for s in range(0, x.shape[1], chunk):
        lp = log_softmax(model.predict_on_batch(x[:, s:s + chunk]))
        total -= float(np.take_along_axis(lp, y[:, s:s + chunk, None], axis=2).sum())
    model.reset_states()
    return total / y.size


#: training epochs below which the dropout rule caps ``--dropout`` at :data:`SHORT_RUN_DROPOUT`: a 2-layer tied
#: LSTM-256 with dropout 0.2 was still improving after 6 epochs of a 1M-token corpus (``docs/results.md``), so a
#: run that can afford fewer epochs than this has no over-fitting for a larger dropout to prevent
SHORT_RUN_EPOCHS = 6
#: the dropout of a run that the budget or ``--epochs`` limits to fewer than :data:`SHORT_RUN_EPOCHS` epochs
SHORT_RUN_DROPOUT = 0.2


def wordlm_flops_per_token(vocab, s):
    """Floating-point operations of one training step per token: ``6 x (recurrent + output parameters)`` (2 for
    the forward matrix products, 4 for the backward ones; the embedding lookup is a row copy). A recurrent
    layer with ``g`` gate blocks (LSTM 4, GRU 3, SimpleRNN 1), input ``n`` and ``U`` units has
    ``g (n U + U U + b U)`` parameters (``b`` = 2 bias vectors for the GRU's ``reset_after``, else 1); the output layer ``(H + 1) V`` for a last hidden size H (= the embedding
    size with tied weights). The tied 2 x LSTM-256 over V = 10,000 is 21.7 MFLOP a token (the softmax 15.4 of
    them), over WikiText-2's 33,278 words 57.6 MFLOP."""
    g = {"lstm": 4, "gru": 3, "rnn": 1}.get(s["cell"], 4)
    n, rec = s["embedding_dim"], 0
    for i in range(s["layers"]):
        u = s["embedding_dim"] if s["tie_weights"] and i == s["layers"] - 1 else s["units"]
        rec += g * (n * u + u * u + (2 if s["cell"] == "gru" else 1) * u)
        n = u
    return 6.0 * (rec + (n + 1) * vocab)


def budget_epochs(train_tokens, vocab, s, max_minutes=None, max_cpu_minutes=None, epochs=None):
    """How many epochs of ``train_tokens`` the run can afford: ``C / (N x F)`` for the budget's operations
    ``C = minutes x 60 x 8e10`` (one thread at the measured :data:`rnnlab.models.lm.CHARLM_FLOPS_PER_THREAD`;
    the smaller of ``--max-minutes`` and ``--max-cpu-minutes`` where set), ``N`` training tokens and ``F``
    operations a token (:func:`wordlm_flops_per_token`), and at most ``--epochs`` when given. None when nothing
    limits the run. One thread, not ``--threads`` (whose default follows the machine's load), so that the same
    command picks the same dropout and ``--resume`` finds the same settings. The PTB-sized IMDB corpus (975k
    tokens, V = 10,000) in 15 minutes: 3.4 epochs (measured: 4.8 CPU-minutes an epoch, validation included);
    WikiText-2 (2.08M tokens, V = 33,278): 0.6."""
    from ..models.lm import CHARLM_FLOPS_PER_THREAD

    limits = [m for m in (max_minutes, max_cpu_minutes) if m is not None and m > 0]
    allowed = None
    if limits:
        ops = min(limits) * 60.0 * CHARLM_FLOPS_PER_THREAD
        allowed = ops / (max(int(train_tokens), 1) * wordlm_flops_per_token(vocab, s))
    if epochs is not None:
        allowed = float(epochs) if allowed is None else min(allowed, float(epochs))
    return allowed


def default_dropout(train_tokens, epochs=None):
    """The rule for ``--dropout`` when it is not given.

    By size: 0.5 below 3M training tokens (PTB, WikiText-2: a 2-layer LSTM trained to convergence over-fits them
    within a few epochs; Zaremba et al. 2014 use 0.5 for their medium model), 0.3 up to 30M, 0.1 above.

    By budget: when the run can afford fewer than :data:`SHORT_RUN_EPOCHS` (6) epochs (``epochs``, from
    :func:`budget_epochs`; None: unlimited), at most :data:`SHORT_RUN_DROPOUT` (0.2). Dropout trades speed of
    learning for less over-fitting, and a short run ends before the over-fitting starts: on the PTB-sized IMDB
    corpus with a 15-CPU-minute budget (3 epochs) dropout 0.2 was ahead of 0.5 at every epoch, validation
    perplexity 210.7 / 166.5 / 147.1 against 230.1 / 192.9 / 176.1, test 141.2 against 167.1
    (``docs/results.md``). WikiText-2 in the default 15 minutes gets 0.6 of one epoch, where no training token is
    seen twice (0.2 was ahead after the first epoch above; on WikiText-2 after 15% of an epoch the two tied,
    test 626.9 against 622.4)."""
    if train_tokens < 0:
        raise ValueError(f"default_dropout: train_tokens must be >= 0, got {train_tokens}")
    by_size = 0.5 if train_tokens < 3_000_000 else (0.3 if train_tokens < 30_000_000 else 0.1)
    if epochs is not None and epochs < SHORT_RUN_EPOCHS:
        return min(by_size, SHORT_RUN_DROPOUT)
    return by_size


def stream_nll_parts(model, ids, eos_id, chunk=100):
    """``(nll with <eos>, nll without)``: mean negative log-likelihood per token of ``ids[1:]`` over all targets,
    and over the targets that are not ``<eos>`` (the model still reads the ``<eos>`` inputs)."""
    from ..models.lm import log_softmax

    x, y = stream_batches(ids, model.input_shape[0], "evaluation")
    model.reset_states()
    total = total_words = 0.0
    for s in range(0, x.shape[1], chunk):
        lp = log_softmax(model.predict_on_batch(x[:, s:s + chunk]))
        yy = y[:, s:s + chunk]
        nll = -np.take_along_axis(lp, yy[..., None], axis=2)[..., 0]
        total += float(nll.sum())
        total_words += float(nll[yy != eos_id].sum())
    model.reset_states()
    n_words = int((y != eos_id).sum())
    return total / y.size, total_words / max(n_words, 1)


def _ppl(nll):
    return float(math.exp(min(nll, 700.0)))


class _Adapter(SequentialTaskAdapter):
    task = TASK

    def __init__(self, model, doc, train_ids, valid_ids, s, verbose):
        self.model, self.doc, self.s, self.verbose = model, doc, s, verbose
        self.x, self.y = stream_batches(train_ids, s["batch_size"])
        self.valid_ids = valid_ids
        self.eval_model = None

    def fit_arguments(self):
        """``Model.fit``'s data (TrainLoop): truncated BPTT over the B streams in windows of ``--bptt`` steps
        (states carried between windows, gradient cut at each window's start)."""
        return {"x": self.x, "y": self.y, "batch_size": self.x.shape[0], "tbptt_steps": self.s["bptt"],
                "shuffle": False}

    def train_logs(self, logs):
        """The epoch's training logs with the perplexity of its loss."""
        return {**logs, "perplexity": _ppl(logs["loss"])}

    def _evaluation_model(self):
        """The model for ``--eval-batch-size`` streams, with the current weights."""
        if self.eval_model is None:
            from .runstate import preserved_rng

            with preserved_rng():
                self.eval_model = build_model(self.doc["vocab_size"], self.s, self.s["eval_batch_size"])
        self.eval_model.set_weights(self.model.get_weights())
        return self.eval_model

    def nll(self, ids):
        return stream_nll(self._evaluation_model(), ids)

    def nll_parts(self, ids, eos_id):
        return stream_nll_parts(self._evaluation_model(), ids, eos_id)

    def evaluate(self):
        nll = self.nll(self.valid_ids)
        return {"loss": nll, "perplexity": _ppl(nll)}

    def load(self, path):
        model, doc = load_wordlm(path)
        self.model = model
        return doc.get("run")


def load_wordlm(path):
    """``(model, doc)`` from a wordlm model file (tied layers linked, optimizer state restored)."""
    from ..layers import tied  # noqa: F401  (registers TiedEmbedding / TiedDense for loading)
    from .runstate import load_sequential_task_file

    model, doc = load_sequential_task_file(path, TASK)
    return tied.link_tied_layers(model), doc


def add_train_arguments(parser):
    d = parser.add_argument_group("data")
    d.add_argument("--train", required=True, help="PTB-style training file (one sentence per line)")
    d.add_argument("--valid", required=True, help="validation file (picks the best epoch, drives LR decay)")
    d.add_argument("--test", default=None, help="test file (perplexity of the best model)")
    d.add_argument("--vocab-size", type=int, default=None, help="keep this many words (incl. <unk>, <eos>)")
    d.add_argument("--encoding", default="utf-8")
    m = parser.add_argument_group("model")
    tie = m.add_mutually_exclusive_group()
    tie.add_argument("--tie-weights", dest="tie_weights", action="store_true", default=True,
                     help="output layer = embedding matrix transposed (the default)")
    tie.add_argument("--no-tie-weights", dest="tie_weights", action="store_false",
                     help="a separate output matrix")
    m.add_argument("--no-variational-dropout", dest="variational_dropout", action="store_false",
                   help="draw a new dropout mask at every step (default: one mask per sequence and feature for "
                        "the embedding and between layers, shared by all steps: variational dropout)")
    m.add_argument("--weight-drop", type=float, default=0.0,
                   help="AWD-LSTM's weight drop: DropConnect with this rate on each recurrent layer's W_h, one mask "
                        "per window shared by its steps (rnnlab.layers.WeightDrop; default 0: off)")
    m.add_argument("--bptt", type=int, default=35, help="time steps per truncated-BPTT window")
    m.add_argument("--eval-batch-size", type=int, default=10, help="parallel streams for valid/test perplexity")
    m.add_argument("--lr-decay", type=float, default=0.25,
                   help="multiply the learning rate by this when validation perplexity does not improve (1: off)")
    m.add_argument("--lr-patience", type=int, default=1, help="epochs without improvement before decaying")
    from .common import add_threads_argument

    add_threads_argument(m)
    from .runstate import add_budget_arguments

    add_budget_arguments(m)
    add_common_train_arguments(parser, epochs=None, patience=3, max_minutes=15.0, batch_size=20, cell="lstm",
                               units=256, layers=2, embedding_dim=256, dropout=None, optimizer="sgd", lr=20.0)
    parser.set_defaults(clipnorm=0.25)


def _settings(args):
    s = {k: getattr(args, k) for k in ("cell", "units", "layers", "embedding_dim", "dropout", "optimizer", "lr",
                                       "clipnorm", "batch_size", "bptt", "eval_batch_size", "tie_weights", "seed",
                                       "vocab_size", "variational_dropout")}
    if s["dropout"] is None:
        s["dropout"] = 0.3   # replaced by the size rule (default_dropout) once the corpus is read
    wd = getattr(args, "weight_drop", 0.0)
    if not 0.0 <= wd < 1.0:
        raise ValueError(f"--weight-drop must be in [0, 1), got {wd}")
    if wd:
        s["weight_drop"] = float(wd)   # (absent when off: the settings of earlier runs stay as they were)
    from .common import check_lm_settings
    if s["vocab_size"] is not None and s["vocab_size"] < 3:
        raise ValueError(f"--vocab-size must be >= 3 (<unk>, <eos> and a word), got {s['vocab_size']}")
    check_lm_settings(s, ("units", "layers", "embedding_dim", "batch_size", "bptt", "eval_batch_size"), "word",
                      args.bidirectional)
    return s


def train(args):
    from .. import backend
    from ..datasets.text_corpus import load_word_corpus
    from ..demo import limit_blas_threads
    from .runstate import TrainLoop

    from .common import epochs_to_run, threads

    epochs = epochs_to_run(args)
    s = _settings(args)
    if args.lr_decay is not None and not 0.0 < args.lr_decay <= 1.0:
        raise ValueError(f"--lr-decay must be in (0, 1], got {args.lr_decay}")
    limit_blas_threads(threads(args))
    corpus = load_word_corpus(args.train, args.valid, args.test, max_vocab=args.vocab_size, encoding=args.encoding)
    vocab = corpus["vocab"]
    V = len(vocab)
    affordable = budget_epochs(len(corpus["train"]), V, s, args.max_minutes, args.max_cpu_minutes, args.epochs)
    if args.dropout is None:
        s["dropout"] = default_dropout(len(corpus["train"]), affordable)
    out = output_dir(args.out, f"wordlm-{os.path.basename(os.path.dirname(os.path.abspath(args.train)))}")
    from .common import check_model_memory
    check_model_memory(args, "wordlm", units=s["units"], layers=s["layers"], cell=s["cell"], bidirectional=False,
                       vocab=V, embedding_dim=s["embedding_dim"], outputs=0 if s["tie_weights"] else V,
                       last_units=s["embedding_dim"] if s["tie_weights"] else None)
    backend.set_random_seed(args.seed)
    model = compile_model(build_model(V, s, s["batch_size"]), s)
    words = [None] * V
    for w, i in vocab.items():
        words[i] = w
    doc = {"task": TASK, "vocab": words, "vocab_size": V, "settings": s}
    if args.verbose:
        print(f"{len(corpus['train']):,} training / {len(corpus['valid']):,} validation"
              + (f" / {len(corpus['test']):,} test" if corpus["test"] is not None else "")
              + f" tokens; vocabulary {V:,}; <unk> share of valid {np.mean(corpus['valid'] == vocab['<unk>']):.1%}; "
              f"{model.count_params():,} parameters{' (tied)' if s['tie_weights'] else ''}; dropout {s['dropout']:g}"
              + (" (the rule" + ("" if affordable is None else f": {affordable:.1f} epochs affordable") + ")"
                 if args.dropout is None else ""), flush=True)
    adapter = _Adapter(model, doc, corpus["train"], corpus["valid"], s, args.verbose)
    decay = args.lr_decay if args.lr_decay is not None and args.lr_decay < 1.0 else None
    loop = TrainLoop(out, adapter, monitor="loss", mode="min", max_minutes=args.max_minutes, verbose=args.verbose,
                     max_cpu_minutes=args.max_cpu_minutes,
                     lr_decay=decay, lr_patience=args.lr_patience, config=s,
                     patience=getattr(args, "patience", None) if args.epochs is None else None)
    if args.resume:
        loop.resume()
    run = loop.fit(epochs)
    best_model, _ = load_wordlm(loop.model_path)
    adapter.model = best_model
    eos = vocab["<eos>"]
    valid_nll, valid_nll_words = adapter.nll_parts(corpus["valid"], eos)
    test_nll, test_nll_words = (adapter.nll_parts(corpus["test"], eos) if corpus["test"] is not None
                                else (None, None))
    if args.verbose:
        print(f"model saved to {loop.model_path} (best epoch {run['best_epoch']})", flush=True)
    return finish_run(out, {
        "valid_perplexity": _ppl(valid_nll), "test_perplexity": None if test_nll is None else _ppl(test_nll),
        "valid_perplexity_without_eos": _ppl(valid_nll_words),
        "test_perplexity_without_eos": None if test_nll_words is None else _ppl(test_nll_words),
        "dropout": s["dropout"], "variational_dropout": s["variational_dropout"],
        "train_seconds": round(run["train_seconds"], 1), "train_cpu_seconds": round(run["train_cpu_seconds"], 1),
        "epochs_run": len(run["history"]), "best_epoch": run["best_epoch"], "stop_reason": run.get("stop_reason"),
        "vocab_size": V, "parameters": int(best_model.count_params()), "tied": s["tie_weights"],
        "train_tokens": int(len(corpus["train"])), "model": loop.model_path,
    })
