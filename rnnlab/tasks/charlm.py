"""``rnnlab train charlm`` and ``rnnlab generate``: character-level language models and text generation.

Train::

    rnnlab train charlm --text FILE [--valid-fraction 0.1] [--mode stream|window] [--preset keras-nietzsche]

The last ``--valid-fraction`` of the file's characters is held out (no shuffling across the cut); the
character vocabulary comes from the training part (characters seen only in the held-out part become
U+FFFD). Two ways to train:

``--mode stream`` (default; best held-out loss per minute), stateful truncated BPTT on long streams
    The training text t_0 .. t_{N-1} is cut into B = ``--batch-size`` contiguous streams, one per batch
    row; every epoch walks them left to right in windows of k = ``--bptt`` characters. The model::

        Embedding(V, E) -> LSTM|GRU|SimpleRNN(U, return_sequences=True, stateful=True) x layers
            -> Dropout -> Dense(V)  (logits; loss = mean over all B*k positions of -log softmax(z)[t_{i+1}])

    The recurrent layers are ``stateful``: the state at the end of a window is the initial state of the
    next window (the states are reset at the start of every epoch), while the gradient stops at the
    window's first step -- truncated BPTT with k1 = k2 = k (``Model.fit(..., tbptt_steps=k)``). So every
    character is a target once per epoch and sees an unbounded left context in the forward pass.
    ``--clipnorm`` clips each weight's gradient norm separately (Keras ``clipnorm``).

    Without ``--units``/``--layers`` the size follows the text and the budget
    (:func:`rnnlab.models.lm.charlm_default_size`): ``P = min(2 x training characters, sqrt(C / 120))``
    parameters with ``C = --max-minutes x 60 x 8e10`` operations (one thread), 1 layer below 2M parameters, 2
    below 8M, else 3, the width (a multiple of 64) nearest ``P``. Nietzsche, 15 minutes: ``LSTM(384)``.

``--mode window`` / ``--preset keras-nietzsche``, the classic Keras ``lstm_text_generation`` example
    Windows of ``--maxlen`` (40) characters taken every ``--step`` (3) characters, one-hot encoded, predict the
    one character that follows: ``LSTM(128) -> Dense(V, softmax)``, RMSprop(lr=0.01), batch 128. Each window
    gives one target, so it needs ~40x more compute per target than the stream mode.

Held-out loss (both modes) is the mean of ``-ln p(t_i | context)`` over the held-out characters, in nats per
character; bits per character = nats / ln 2. Stream mode evaluates the held-out text as 8 stateful streams
(each starts from a zero state, so the first few characters of each stream have little context); window
mode predicts every held-out character from the 40 characters before it.

Outputs: ``OUT/model.npz`` (best held-out loss; an rnnlab model file with a ``__task__`` entry holding the
character vocabulary and the settings), ``checkpoint.npz``, ``history.json``, ``metrics.json``; the last line
printed is ``{"valid_loss_nats_per_char": ..., "valid_bits_per_char": ..., "train_seconds": ...}``.

Generate::

    rnnlab generate --model OUT/model.npz --seed "the meaning of " --length 400 --temperature 0.5 [--top-k 10]

Sampling: with logits z (the model's scores for the next character) and temperature T > 0,
``p_i = exp(z_i / T) / sum_j exp(z_j / T)`` (T < 1 sharpens, T > 1 flattens; T = 0 means greedy argmax);
``--top-k K`` keeps the K most likely characters and renormalises. This equals the Keras example's
``exp(log(p) / T)`` renormalised. ``--sample-seed`` makes the output reproducible.
"""
from __future__ import annotations

import json
import math
import os
import sys

import numpy as np

from ..models import lm as _lm
from .common import add_common_train_arguments, finish_run, output_dir
from .runstate import SequentialTaskAdapter

TASK = "charlm"
PRESETS = {
    # the Keras example: maxlen 40, step 3, LSTM(128), Dense(softmax), RMSprop(0.01), batch 128
    "keras-nietzsche": {"mode": "window", "maxlen": 40, "step": 3, "cell": "lstm", "units": 128, "layers": 1,
                        "optimizer": "rmsprop", "lr": 0.01, "batch_size": 128, "dropout": 0.0},
}


# ------------------------------------------------------------------------------------------- models
# the model builders and sampling live in the library (rnnlab.models.lm); these names are kept for callers
build_stream_model = _lm.build_charlm_stream_model
build_window_model = _lm.build_charlm_window_model
log_softmax = _lm.log_softmax
one_hot_windows = _lm.one_hot_windows
sample_next = _lm.sample_next


def _compile(model, settings, from_logits):
    from .. import losses
    from .common import make_optimizer

    class _A:  # make_optimizer reads these attributes
        optimizer, lr, clipnorm = settings["optimizer"], settings["lr"], settings["clipnorm"]

    model.compile(optimizer=make_optimizer(_A), loss=losses.SparseCategoricalCrossentropy(from_logits=from_logits))
    return model


def stream_batches(ids, batch_size):
    """``(x, y)`` of shape (B, L): B contiguous streams of the text, y = x shifted by one character."""
    n = (len(ids) - 1) // batch_size
    if n < 2:
        raise ValueError(f"the text is too short for --batch-size {batch_size}: {len(ids)} characters give streams "
                         f"of {n} steps; use a smaller --batch-size")
    x = ids[:n * batch_size].reshape(batch_size, n)
    y = ids[1:n * batch_size + 1].reshape(batch_size, n)
    return x.astype(np.int32), y.astype(np.int64)


def stream_nll(model, ids, chunk=256):
    """Mean -ln p over ``ids[1:]`` (as the model's batch of stateful streams), in nats per character."""
    B = model.input_shape[0]
    x, y = stream_batches(ids, B)
    model.reset_states()
    total = 0.0
    for s in range(0, x.shape[1], chunk):
        z = model.predict_on_batch(x[:, s:s + chunk])
        lp = log_softmax(z)
        total -= float(np.take_along_axis(lp, y[:, s:s + chunk, None], axis=2).sum())
    model.reset_states()
    return total / y.size


def window_nll(model, ids, maxlen, vocab, batch=512, max_targets=None):
    """Mean -ln p of every character of ``ids`` after the first ``maxlen`` (window model)."""
    starts = np.arange(len(ids) - maxlen)
    if max_targets is not None and len(starts) > max_targets:
        starts = starts[:max_targets]
    total = 0.0
    for i in range(0, len(starts), batch):
        st = starts[i:i + batch]
        p = np.asarray(model.predict_on_batch(one_hot_windows(ids, st, maxlen, vocab)), dtype=np.float64)
        total -= float(np.log(np.clip(p[np.arange(len(st)), ids[st + maxlen]], 1e-12, 1.0)).sum())
    return total / max(len(starts), 1)


# ------------------------------------------------------------------------------------------ training
class _Adapter(SequentialTaskAdapter):
    task = TASK

    def __init__(self, model, doc, train_ids, valid_ids, settings, verbose):
        self.model, self.doc, self.settings, self.verbose = model, doc, settings, verbose
        self.train_ids, self.valid_ids = train_ids, valid_ids
        self.vocab = doc["vocab_size"]
        if settings["mode"] == "stream":
            self.x, self.y = stream_batches(train_ids, settings["batch_size"])
            self.eval_model = None
        else:
            self.starts = np.arange(0, len(train_ids) - settings["maxlen"], settings["step"])
            if len(self.starts) < 1:
                raise ValueError(f"the training text ({len(train_ids)} characters) is shorter than --maxlen "
                                 f"{settings['maxlen']}")

    def fit_arguments(self):
        """``Model.fit``'s data (TrainLoop). Stream mode: truncated BPTT over the B streams (``tbptt_steps``:
        states carried window to window, reset at the first window, gradient cut at each window's start). Window
        mode: one-hot windows and their next characters, shuffled every epoch from rnnlab's generator."""
        from .. import backend
        from .runstate import EpochBatchSet

        s = self.settings
        if s["mode"] == "stream":
            return {"x": self.x, "y": self.y, "batch_size": self.x.shape[0], "tbptt_steps": s["bptt"],
                    "shuffle": False}
        bs = s["batch_size"]

        def draw():
            order = self.starts[backend.rng().permutation(len(self.starts))]
            return [order[a:a + bs] for a in range(0, len(order), bs)]

        def batch(st):
            return one_hot_windows(self.train_ids, st, s["maxlen"], self.vocab), self.train_ids[st + s["maxlen"]]
        return {"x": EpochBatchSet(math.ceil(len(self.starts) / bs), draw, batch)}

    def evaluate(self):
        if self.valid_ids is None or len(self.valid_ids) < 2:
            return {}
        s = self.settings
        if s["mode"] == "stream":
            if self.eval_model is None:
                from .runstate import preserved_rng

                with preserved_rng():
                    self.eval_model = build_stream_model(self.vocab, s, s["eval_streams"])
            self.eval_model.set_weights(self.model.get_weights())
            nll = stream_nll(self.eval_model, self.valid_ids)
        else:
            nll = window_nll(self.model, self.valid_ids, s["maxlen"], self.vocab)
        return {"loss": nll, "bits_per_char": nll / math.log(2)}


def add_train_arguments(parser):
    d = parser.add_argument_group("data")
    d.add_argument("--text", required=True, help="plain UTF-8 text file (.gz allowed)")
    d.add_argument("--valid-fraction", type=float, default=0.1, help="held-out tail of the text")
    d.add_argument("--lower", action="store_true", help="lower-case the text first")
    d.add_argument("--encoding", default="utf-8")
    m = parser.add_argument_group("model")
    m.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="keras-nietzsche: the classic Keras example (window mode, maxlen 40, step 3, LSTM(128), "
                        "RMSprop lr 0.01, batch 128); explicit flags given after it still apply")
    m.add_argument("--mode", choices=["stream", "window"], default=None,
                   help="stream: stateful truncated BPTT over long streams (default); window: Keras-style windows")
    m.add_argument("--bptt", type=int, default=100, help="stream mode: characters per truncated-BPTT window")
    m.add_argument("--eval-streams", type=int, default=8, help="stream mode: parallel streams for the held-out loss")
    m.add_argument("--maxlen", type=int, default=None, help="window mode: characters per window (40)")
    m.add_argument("--step", type=int, default=None, help="window mode: stride between windows (3)")
    from .common import add_threads_argument

    add_threads_argument(m)
    from .runstate import add_budget_arguments

    add_budget_arguments(m)
    m.add_argument("--lr-decay", type=float, default=None,
                   help="multiply the learning rate by this when the held-out loss does not improve")
    m.add_argument("--lr-patience", type=int, default=1, help="epochs without improvement before --lr-decay")
    add_common_train_arguments(parser, epochs=None, patience=2, max_minutes=15.0, batch_size=None, units=None, embedding_dim=32, lr=None,
                               optimizer=None, layers=None, dropout=None, cell=None)


def resolve_settings(args, argv_flags=None):
    """Defaults < preset < flags given on the command line."""
    # units/layers None: the size rule (rnnlab.models.lm.charlm_default_size) once the text is read
    s = {"mode": "stream", "cell": "lstm", "units": None, "layers": None, "embedding_dim": 32, "dropout": 0.2,
         "optimizer": "adam", "lr": 2e-3, "batch_size": 64, "maxlen": 40, "step": 3, "bptt": 100,
         "clipnorm": 5.0, "eval_streams": 8}
    if args.preset:
        s.update(PRESETS[args.preset])
    for k in ("mode", "cell", "units", "layers", "embedding_dim", "dropout", "optimizer", "lr", "batch_size",
              "maxlen", "step", "bptt", "clipnorm", "eval_streams"):
        v = getattr(args, k, None)
        if v is not None:
            s[k] = v
    if args.preset and args.clipnorm is None and s["mode"] == "window":
        s["clipnorm"] = None      # the Keras example has no clipping
    from .common import check_lm_settings
    check_lm_settings(s, [k for k in ("units", "layers", "embedding_dim", "batch_size", "maxlen", "step", "bptt",
                                      "eval_streams") if s[k] is not None or k not in ("units", "layers")],
                      "character", args.bidirectional)
    s["seed"] = args.seed
    return s


def apply_size_rule(settings, train_chars, vocab, max_minutes):
    """Fill ``settings["units"]``/``["layers"]`` left unset (no flag, no preset): in stream mode by
    :func:`rnnlab.models.lm.charlm_default_size` (the data and the ``--max-minutes`` budget on one thread set the
    size; one thread, not ``--threads``, whose default follows the machine's load, so that the same command
    builds the same model and ``--resume`` finds it), in window mode the former fixed ``LSTM(512)``. Returns the
    rule's target parameter count, or None when it was not used."""
    if settings["units"] is not None and settings["layers"] is not None:
        return None
    if settings["mode"] != "stream":
        settings["units"] = settings["units"] or 512
        settings["layers"] = settings["layers"] or 1
        return None
    layers, units, target = _lm.charlm_default_size(train_chars, vocab, max_minutes, 1, settings["embedding_dim"],
                                                    settings["cell"], settings["layers"])
    if settings["units"] is None:
        settings["units"] = units
    settings["layers"] = layers
    return target


def train(args):
    from .. import backend
    from ..datasets.text_corpus import read_text, split_text
    from ..demo import limit_blas_threads
    from ..text import CharTokenizer
    from .runstate import TrainLoop

    from .common import epochs_to_run, threads

    epochs = epochs_to_run(args)
    settings = resolve_settings(args)
    limit_blas_threads(threads(args))
    text = read_text(args.text, args.encoding)
    if args.lower:
        text = text.lower()
    if len(text) < 3:
        raise ValueError(f"{args.text}: the text has {len(text)} characters; a character model needs more")
    if not 0.0 < args.valid_fraction < 1.0:
        raise ValueError(f"--valid-fraction must be in (0, 1), got {args.valid_fraction}")
    train_text, valid_text = split_text(text, args.valid_fraction)
    tok = CharTokenizer(unknown="replace").fit(train_text)
    train_ids, valid_ids = tok.encode(train_text), tok.encode(valid_text)
    V = tok.vocab_size
    sized = apply_size_rule(settings, len(train_ids), V, args.max_minutes)
    name = os.path.splitext(os.path.basename(args.text).replace(".gz", ""))[0]
    out = output_dir(args.out, f"charlm-{name}")
    from .common import check_model_memory
    stream = settings["mode"] == "stream"       # the whole model's parameter memory, before building a layer
    check_model_memory(args, "charlm", units=settings["units"], layers=settings["layers"], cell=settings["cell"],
                       bidirectional=False, vocab=V if stream else 0, input_dim=0 if stream else V,
                       embedding_dim=settings["embedding_dim"] if stream else 0, outputs=V,
                       optimizer=settings.get("optimizer"))
    backend.set_random_seed(args.seed)
    if settings["mode"] == "stream":
        if len(valid_ids) - 1 < 2 * settings["eval_streams"]:
            settings["eval_streams"] = max(1, (len(valid_ids) - 1) // 2)
        model = _compile(build_stream_model(V, settings, settings["batch_size"]), settings, from_logits=True)
    else:
        model = _compile(build_window_model(V, settings), settings, from_logits=False)
    doc = {"task": TASK, "tokenizer": json.loads(tok.to_json()), "vocab_size": V, "settings": settings,
           "lower": bool(args.lower)}
    if args.verbose:
        print(f"{len(train_ids):,} training / {len(valid_ids):,} held-out characters; {V} distinct; mode "
              f"{settings['mode']}; {model.count_params():,} parameters"
              + (f" ({settings['layers']} x {settings['cell'].upper()}({settings['units']}) by the size rule: "
                 f"target {sized:,} parameters)" if sized else ""), flush=True)
    adapter = _Adapter(model, doc, train_ids, valid_ids, settings, args.verbose)
    loop = TrainLoop(out, adapter, monitor="loss", mode="min", max_minutes=args.max_minutes, verbose=args.verbose,
                     max_cpu_minutes=args.max_cpu_minutes,
                     lr_decay=args.lr_decay, lr_patience=args.lr_patience,
                     patience=getattr(args, "patience", None) if args.epochs is None else None,
                     config={**settings, "valid_fraction": args.valid_fraction, "lower": bool(args.lower)})
    if args.resume:
        loop.resume()
    run = loop.fit(epochs)
    best = run["best"]
    if args.verbose:
        print(f"model saved to {loop.model_path} (best epoch {run['best_epoch']})", flush=True)
        try:
            sample = generate_text(loop.model_path, valid_text[:40], 200, 0.5, seed=args.seed)
            print(f"sample (temperature 0.5) after {valid_text[:40]!r}:\n{sample}", flush=True)
        except ValueError as e:  # pragma: no cover - sampling is only a courtesy here
            print(f"(no sample: {e})", file=sys.stderr)
    return finish_run(out, {
        "valid_loss_nats_per_char": best, "valid_bits_per_char": None if best is None else best / math.log(2),
        "train_seconds": round(run["train_seconds"], 1), "train_cpu_seconds": round(run["train_cpu_seconds"], 1),
        "epochs_run": len(run["history"]), "best_epoch": run["best_epoch"], "stop_reason": run.get("stop_reason"),
        "mode": settings["mode"], "train_chars": int(len(train_ids)), "valid_chars": int(len(valid_ids)),
        "model": loop.model_path,
    })


# ------------------------------------------------------------------------------------------ generate
def generate_text(model_path, seed_text, length, temperature=1.0, top_k=None, seed=None):
    """``seed_text`` continued by ``length`` sampled characters (the continuation only)."""
    from ..text import CharTokenizer
    from .runstate import read_task_file

    doc, _ = read_task_file(model_path, TASK)
    tok = CharTokenizer.from_json(json.dumps(doc["tokenizer"]), source=str(model_path))
    s, V = doc["settings"], doc["vocab_size"]
    if doc.get("lower"):
        seed_text = seed_text.lower()
    unknown = sorted({c for c in seed_text if c not in tok.char_index})
    if unknown:
        print(f"rnnlab: warning: seed characters not in the model's vocabulary become U+FFFD: {unknown}",
              file=sys.stderr)
    out = _lm.generate_chars(model_path, s, V, tok.encode(seed_text), length, temperature, top_k, seed,
                             pad_id=tok.char_index.get(" ", 0))
    return tok.decode(out)


def add_generate_arguments(parser):
    parser.add_argument("--model", required=True, help="model.npz written by rnnlab train charlm")
    parser.add_argument("--seed", default="", help="text to start from (the model reads it first)")
    parser.add_argument("--length", type=int, default=400, help="characters to generate")
    parser.add_argument("--temperature", type=float, default=0.5, help="> 0; lower is more conservative; 0 = greedy")
    parser.add_argument("--top-k", type=int, default=None, help="sample only among the K most likely characters")
    parser.add_argument("--sample-seed", type=int, default=None, help="random seed for reproducible sampling")


def generate(args):
    if args.length < 0:
        raise ValueError(f"--length must be >= 0, got {args.length}")
    if not (args.temperature >= 0 and math.isfinite(args.temperature)):
        raise ValueError(f"--temperature must be a finite number >= 0, got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    text = generate_text(args.model, args.seed, args.length, args.temperature, args.top_k, args.sample_seed)
    print(args.seed + text)
    return 0
