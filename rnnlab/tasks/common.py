"""What every ``rnnlab train`` command shares: common flags, output folder, atomic writes, metrics line."""
from __future__ import annotations

import json
import os
import re
import sys
import time

from .. import io as _rio


def add_common_train_arguments(parser, *, epochs=10, batch_size=32, cell="lstm", units=128, layers=1,
                               embedding_dim=128, dropout=0.0, optimizer="adam", lr=1e-3, out=None):
    """The flags all ``train`` commands take (defaults chosen per task)."""
    g = parser.add_argument_group("training")
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
    g.add_argument("--max-minutes", type=float, default=None,
                   help="stop cleanly after this many minutes of training, keeping the best checkpoint")
    g.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    g.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2])
    g.add_argument("--force", action="store_true",
                   help="build the model even when its estimated parameter memory exceeds the available memory")
    return g


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
    """Print the final metrics as one JSON line and write them to ``out_dir/metrics.json``. A run whose
    ``stop_reason`` is a non-finite loss also prints ``rnnlab: training stopped: <reason>`` on stderr, and the
    ``rnnlab`` command then exits with status 3 (the files are written as usual)."""
    global _failed_run
    clean = {k: (float(v) if hasattr(v, "__float__") and not isinstance(v, (bool, int, str)) else v)
             for k, v in metrics.items()}
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
