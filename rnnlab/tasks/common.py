"""What every ``rnnlab train`` command shares: common flags, output folder, atomic writes, metrics line."""
from __future__ import annotations

import json
import os
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
    return g


def output_dir(path, default_name):
    path = path or os.path.join("runs", default_name)
    os.makedirs(path, exist_ok=True)
    return path


def atomic_write_bytes(path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: never a truncated file (see
    :func:`rnnlab.io.atomic_write_bytes`: umask permissions, folder fsync, stale temporaries removed)."""
    _rio.atomic_write_bytes(path, data)


def atomic_write_json(path, obj) -> None:
    _rio.atomic_write_json(path, obj)


def finish_run(out_dir, metrics: dict) -> dict:
    """Print the final metrics as one JSON line and write them to ``out_dir/metrics.json``."""
    clean = {k: (float(v) if hasattr(v, "__float__") and not isinstance(v, (bool, int, str)) else v)
             for k, v in metrics.items()}
    atomic_write_json(os.path.join(out_dir, "metrics.json"), clean)
    print(json.dumps(clean, sort_keys=True), flush=True)
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
