"""What every ``rnnlab train`` command shares: common flags, output folder, atomic writes, metrics line."""
from __future__ import annotations

import json
import os
import re
import sys
import time

from .. import io as _rio


#: the default wall-clock budget of the train commands whose --epochs default is "until no improvement"
DEFAULT_MAX_MINUTES = 15.0
#: the epoch cap used when --epochs is not given (early stopping or --max-minutes ends the run first)
UNTIL_PLATEAU_EPOCHS = 10_000


def add_common_train_arguments(parser, *, epochs=10, batch_size=32, cell="lstm", units=128, layers=1,
                               embedding_dim=128, dropout=0.0, optimizer="adam", lr=1e-3, out=None,
                               patience=None, max_minutes=None):
    """The flags all ``train`` commands take (defaults chosen per task). With ``epochs=None`` the default is
    "until the validation metric stops improving": ``--patience`` epochs in a row without a better value end the
    run (the best epoch's model is kept), within ``--max-minutes`` (default ``max_minutes``)."""
    g = parser.add_argument_group("training")
    if epochs is None:
        g.add_argument("--epochs", type=int, default=None,
                       help=f"at most this many epochs (default: until the validation metric has not improved for "
                            f"--patience epochs, within --max-minutes)")
        g.add_argument("--patience", type=int, default=patience or 3,
                       help=f"early stopping: epochs without a better validation value before stopping "
                            f"(default {patience or 3}); the best epoch's model is kept")
    else:
        g.add_argument("--epochs", type=int, default=epochs)
    g.add_argument("--batch-size", type=int, default=batch_size)
    g.add_argument("--cell", choices=["lstm", "gru", "rnn"], default=cell)
    g.add_argument("--units", type=int, default=units)
    g.add_argument("--layers", type=int, default=layers)
    g.add_argument("--bidirectional", action="store_true")
    g.add_argument("--embedding-dim", type=int, default=embedding_dim)
    g.add_argument("--dropout", type=float, default=dropout)
    g.add_argument("--optimizer", default=optimizer, help="adam, rmsprop, sgd, adagrad")
    g.add_argument("--lr", type=float, default=lr, help="learning rate")
    g.add_argument("--clipnorm", type=float, default=None)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", default=out, help="output folder (model, history, metrics.json)")
    g.add_argument("--max-minutes", type=float, default=max_minutes,
                   help="stop cleanly after this many minutes of training, keeping the best checkpoint"
                        + (f" (default {max_minutes:g}; 0 or a negative value: no limit)" if max_minutes else ""))
    g.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    g.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2])
    g.add_argument("--force", action="store_true",
                   help="build the model even when its estimated parameter memory exceeds the available memory")
    return g


#: recurrent weight blocks per cell (LSTM i/f/c/o, GRU z/r/h, SimpleRNN one)
_GATES = {"lstm": 4, "gru": 3, "rnn": 1}
#: optimizer slots per weight (what ``make_optimizer``'s optimizers keep besides the weight and its gradient)
_SLOTS = {"adam": 2, "adamw": 2, "nadam": 2, "adamax": 2, "adadelta": 2, "rmsprop": 1, "adagrad": 1, "sgd": 0}


#: models below this are not estimated against the available memory (64 MiB; each weight is still checked)
MODEL_CHECK_MIN_BYTES = 64 * 2 ** 20


def estimate_params(*, units, layers=1, cell="lstm", bidirectional=False, vocab=0, embedding_dim=0, input_dim=0,
                    outputs=0, last_units=None) -> int:
    """Parameters of ``[Embedding(vocab, E)] -> RNN(units) x layers -> [Dense(outputs)]`` from sizes alone
    (nothing is built). A recurrent layer with ``g`` weight blocks (LSTM 4, GRU 3, SimpleRNN 1), input width
    ``n`` and ``u`` units holds ``g * (n*u + u*u + 2u)`` parameters (two biases: an upper bound for GRU's
    ``reset_after``), twice when bidirectional; the first layer's ``n`` is ``E`` (or ``input_dim`` without an
    embedding), the next ones' ``u`` (``2u`` bidirectional); the output layer adds ``(n + 1) * outputs``.
    ``last_units``: the last recurrent layer's units when they differ (a tied word model: ``E``)."""
    g, d = _GATES.get(str(cell).lower(), 4), 2 if bidirectional else 1
    n = int(vocab) * int(embedding_dim)
    fan_in = int(embedding_dim) if embedding_dim else int(input_dim)
    for i in range(int(layers)):
        u = int(last_units) if (last_units is not None and i == int(layers) - 1) else int(units)
        n += d * g * (fan_in * u + u * u + 2 * u)
        fan_in = d * u
    return n + (fan_in + 1) * int(outputs) if outputs else n


def check_model_memory(args, command, optimizer=None, extra_params=0, **sizes) -> int:
    """Refuse a model whose parameter memory would not fit, before any layer is built: the parameters of
    :func:`estimate_params` (``sizes``; ``units``/``layers``/``cell``/``bidirectional``/``embedding_dim`` default
    to the flags in ``args``) times the float size times ``2 + slots`` (the weight, its gradient and the
    optimizer's slots: Adam 2, RMSprop 1, SGD 0) is compared with :func:`rnnlab.io.available_memory`. Too
    much: :class:`rnnlab.io.MemoryLimitError` naming the flag that weighs most (the one whose value set to 1
    shrinks the estimate most), the estimate and the memory available; ``--force`` skips the check.
    ``extra_params``: parameters of a second part estimated separately (a seq2seq decoder). Returns the
    estimate in bytes."""
    import numpy as np
    from .. import backend
    flags = {"units": "--units", "layers": "--layers", "embedding_dim": "--embedding-dim"}
    for k in ("units", "layers", "cell", "bidirectional", "embedding_dim"):
        if k not in sizes and getattr(args, k, None) is not None:
            sizes[k] = getattr(args, k)
    opt = str(optimizer or getattr(args, "optimizer", None) or "adam").lower()
    slots = _SLOTS.get(opt, 2)
    per = np.dtype(backend.floatx()).itemsize * (2 + slots)
    n = estimate_params(**sizes) + int(extra_params)
    nbytes = n * per
    if getattr(args, "force", False) or _rio._ALLOW_LARGE or nbytes < MODEL_CHECK_MIN_BYTES:
        return nbytes
    avail = _rio.available_memory()
    if nbytes <= avail:
        return nbytes
    shrink = {k: n - extra_params - estimate_params(**dict(sizes, **{k: 1})) for k in flags if sizes.get(k)}
    blame = max(shrink, key=shrink.get) if shrink else "units"
    raise _rio.MemoryLimitError(
        f"train {command}: {flags[blame]} {sizes.get(blame)} makes the model about {n:,} parameters; with their "
        f"gradients and {slots} {opt} slot(s) that is an estimated {_rio.format_bytes(nbytes)}, more than the "
        f"{_rio.format_bytes(avail)} of memory available; use a smaller {flags[blame]} (or --force to try anyway)")


def epochs_to_run(args):
    """``--epochs``, or the open-ended cap when it was left to early stopping; checks ``--patience`` and turns a
    ``--max-minutes`` of 0 or less into "no limit"."""
    if getattr(args, "max_minutes", None) is not None and args.max_minutes <= 0:
        args.max_minutes = None
    if getattr(args, "patience", None) is not None and args.patience < 1:
        raise ValueError(f"--patience must be >= 1, got {args.patience}")
    if args.epochs is None:
        return UNTIL_PLATEAU_EPOCHS
    if args.epochs < 0:
        raise ValueError(f"--epochs must be >= 0, got {args.epochs}")
    return args.epochs


def check_lm_settings(settings, positive, token, bidirectional):
    """The checks ``train charlm`` and ``train wordlm`` share: the ``positive`` keys of ``settings`` positive ints,
    dropout in [0, 1), lr > 0, and no ``--bidirectional`` (a language model would see the ``token`` it has to
    predict). Errors name the flag."""
    for k in positive:
        v = settings[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"--{k.replace('_', '-')} must be a positive integer, got {v!r}")
    if not 0.0 <= settings["dropout"] < 1.0:
        raise ValueError(f"--dropout must be in [0, 1), got {settings['dropout']}")
    if not settings["lr"] > 0:
        raise ValueError(f"--lr must be > 0, got {settings['lr']}")
    if bidirectional:
        raise ValueError(f"--bidirectional does not apply to a language model (it would see the {token} it has to "
                         "predict)")


def add_threads_argument(group):
    """``--threads`` (BLAS threads), default: the cores this process may use."""
    group.add_argument("--threads", type=int, default=None,
                       help=f"BLAS threads (default: the cores that are free when the command starts: this machine's "
                            f"{default_threads()} cores minus the 1-minute load average, at least 1); on a machine "
                            "shared with other jobs --threads 1 is steadier")


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def free_cores() -> int:
    """The default ``--threads``: the cores this process may use minus the 1-minute load average, rounded, at least
    1 (all cores on an idle machine). Measured on the shared 2-core machine: seq2seq addition took 96 s an epoch
    with 2 BLAS threads while another process held a core, 5 s with 1 thread (OpenBLAS threads wait for each
    other when one of them is descheduled)."""
    cores = default_threads()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return cores
    return int(min(cores, max(1, round(cores - load))))


def threads(args) -> int:
    n = getattr(args, "threads", None)
    if n is None:
        return free_cores()
    if n < 1:
        raise ValueError(f"--threads must be >= 1, got {n}")
    return n


def make_optimizer(args):
    """The optimizer named by ``args.optimizer`` (adam, rmsprop, sgd, adagrad) with ``args.lr`` and, when set,
    per-weight ``clipnorm=args.clipnorm`` (Keras ``clipnorm``)."""
    from .. import optimizers

    cls = {"adam": optimizers.Adam, "rmsprop": optimizers.RMSprop, "sgd": optimizers.SGD,
           "adagrad": optimizers.Adagrad}.get(args.optimizer.lower())
    if cls is None:
        raise ValueError(f"--optimizer must be one of adam, rmsprop, sgd, adagrad; got {args.optimizer!r}")
    return cls(args.lr, clipnorm=args.clipnorm) if args.clipnorm else cls(args.lr)


def output_dir(path, default_name):
    """Create the output folder and take its run lock (:class:`rnnlab.io.RunLock`: a second live run into the
    same folder is refused with :class:`rnnlab.io.RunLockedError`; a lock left by a dead process is taken over).
    The lock is released when the command ends."""
    path = path or os.path.join("runs", default_name)
    os.makedirs(path, exist_ok=True)
    from .. import distributed
    if distributed.is_root():  # under mpiexec rank 0 holds the lock for the job (rnnlab.distributed)
        _rio.RunLock(path).acquire()
    return path


def atomic_write_bytes(path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: never a truncated file (see
    :func:`rnnlab.io.atomic_write_bytes`: umask permissions, folder fsync, stale temporaries removed)."""
    _rio.atomic_write_bytes(path, data)


def atomic_write_json(path, obj) -> None:
    _rio.atomic_write_json(path, obj)


#: a stop reason that means training failed (a non-finite loss or gradient), not a budget or early stop
_NON_FINITE = re.compile(r"\b(?:is|became|was) [-+]?(?:nan|inf)\b|non-finite|not finite", re.IGNORECASE)

#: set by finish_run when the run stopped on a non-finite loss; the CLI turns it into a non-zero exit status
_failed_run = None


def is_non_finite_stop(reason) -> bool:
    """True when ``reason`` (a run's ``stop_reason``) says training stopped on a NaN/inf loss or gradient."""
    return isinstance(reason, str) and bool(_NON_FINITE.search(reason))


def take_failed_run():
    """The stop reason of the last :func:`finish_run` that ended on a non-finite loss (then cleared), or None."""
    global _failed_run
    reason, _failed_run = _failed_run, None
    return reason


def finish_run(out_dir, metrics: dict) -> dict:
    """Print the final metrics as one JSON line and write them to ``out_dir/metrics.json`` (rank 0 alone under
    ``mpiexec``; the other ranks' stdout is already silenced by the run loop). A run whose
    ``stop_reason`` is a non-finite loss also prints ``rnnlab: training stopped: <reason>`` on stderr, and the
    ``rnnlab`` command then exits with status 3 (the files are written as usual)."""
    global _failed_run
    clean = {k: (float(v) if hasattr(v, "__float__") and not isinstance(v, (bool, int, str)) else v)
             for k, v in metrics.items()}
    from .. import distributed
    if distributed.is_root():  # under mpiexec rank 0 alone writes: the other ranks ran no run callbacks
        atomic_write_json(os.path.join(out_dir, "metrics.json"), clean)
    print(json.dumps(clean, sort_keys=True), flush=True)
    reason = clean.get("stop_reason")
    if is_non_finite_stop(reason):
        _failed_run = reason
        print(f"rnnlab: training stopped: {reason}", file=sys.stderr, flush=True)
    return clean


class Timer:
    """Wall-clock budget helper for ``--max-minutes``."""

    def __init__(self, max_minutes=None):
        self.start = time.perf_counter()
        self.max_seconds = None if max_minutes is None else 60.0 * float(max_minutes)

    @property
    def elapsed(self):
        return time.perf_counter() - self.start

    def expired(self):
        return self.max_seconds is not None and self.elapsed >= self.max_seconds


def add_vectors_arguments(group):
    """``--vectors FILE`` and ``--freeze-vectors`` (classify and tag)."""
    group.add_argument("--vectors", default=None,
                       help="pretrained word vectors (word2vec text, word2vec binary .bin, or GloVe text; e.g. "
                            "written by `rnnlab train word2vec`): their dimension must equal --embedding-dim; the "
                            "words found initialise the embedding rows (lowercased lookup as a fallback)")
    group.add_argument("--freeze-vectors", action="store_true",
                       help="keep the embedding matrix fixed during training (default: fine-tune it)")


def apply_vectors(path, weight, word_index, embedding_dim, verbose=1):
    """Copy the vectors of ``path`` into the rows of the embedding ``weight`` (V, D) for ``word_index`` (word ->
    row; rows of words without a vector keep their initial values). Returns the coverage
    ``{"vectors_file", "vectors_found", "vocabulary", "vectors_coverage"}``.

    Errors: a file whose dimension differs from ``--embedding-dim`` (a ValueError naming both); no word of the
    vocabulary in the file gives a warning on stderr with the coverage (0 of N) and training goes on with the
    initial rows."""
    from ..embeddings.io import load_vectors

    kv = load_vectors(path)
    if kv.vector_size != int(embedding_dim):
        raise ValueError(f"--vectors {path}: the vectors have dimension {kv.vector_size} but --embedding-dim is "
                         f"{embedding_dim}; pass --embedding-dim {kv.vector_size}")
    found = 0
    for word, i in word_index.items():
        if not 0 <= i < weight.shape[0]:
            continue
        j = kv.key_to_index.get(word)
        if j is None:
            j = kv.key_to_index.get(word.lower())
        if j is not None:
            weight[i] = kv.vectors[j]
            found += 1
    n = sum(1 for i in word_index.values() if 0 <= i < weight.shape[0])
    cov = {"vectors_file": str(path), "vectors_found": found, "vocabulary": n,
           "vectors_coverage": round(found / n, 4) if n else 0.0}
    if found == 0:
        print(f"rnnlab: warning: --vectors {path}: none of the {n} vocabulary words has a vector (coverage 0.0%); "
              "the embeddings start from their random initial values", file=sys.stderr, flush=True)
    elif verbose:
        print(f"--vectors {path}: {found} of {n} vocabulary words have a vector ({100.0 * found / n:.1f}%)",
              flush=True)
    return cov
