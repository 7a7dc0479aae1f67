"""The Keras IMDB LSTM, trained data-parallel on MPI ranks: the script is ordinary; the launcher makes it parallel.

    mpiexec -n 2 .venv/bin/python examples/mpi_imdb_lstm.py                       # 2 ranks on this machine
    mpiexec -n 2 .venv/bin/python examples/mpi_imdb_lstm.py --train-reviews 2000 --epochs 1
    .venv/bin/python examples/mpi_imdb_lstm.py                                    # the same, one process

``Embedding(20000, 128) -> LSTM(128) -> Dense(1, sigmoid)``, Adam, batch 32 (the *global* batch: under
``mpiexec -n N`` each rank trains on 32 / N reviews of every batch and the gradients are averaged, see
docs/distributed.md), reviews cut to 80 words, read from ``../shared/data/imdb_reviews.csv.gz``. Rank 0 alone
prints and writes ``--out``; the weights it saves are those of one process with the same batches.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import rnnlab  # noqa: E402
from rnnlab import distributed  # noqa: E402
from rnnlab.datasets.imdb import load_imdb_csv  # noqa: E402
from rnnlab.layers import LSTM, Dense, Embedding  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                    "imdb_reviews.csv.gz")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--train-reviews", type=int, default=25000)
    ap.add_argument("--test-reviews", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32, help="global batch (all ranks together)")
    ap.add_argument("--out", default="runs/mpi_imdb_lstm")
    args = ap.parse_args(argv)

    rnnlab.set_random_seed(1)
    (x, y), (xt, yt), _ = load_imdb_csv(args.data, num_words=20000, maxlen=80)
    x, y = x[:args.train_reviews], y[:args.train_reviews]
    xt, yt = xt[:args.test_reviews], yt[:args.test_reviews]
    model = rnnlab.Sequential([rnnlab.Input((80,), dtype="int32"), Embedding(20000, 128), LSTM(128),
                               Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    if distributed.is_root():
        print(f"{distributed.size()} rank(s), global batch {args.batch_size}, {len(x)} train reviews", flush=True)
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, validation_data=(xt, yt), verbose=2)
    if distributed.is_root():  # rank 0 alone reports and writes
        print(f"trained in {time.perf_counter() - t0:.1f} s", flush=True)
        os.makedirs(args.out, exist_ok=True)
        model.save(os.path.join(args.out, "model.keras"))
        print(f"saved {os.path.join(args.out, 'model.keras')}", flush=True)


if __name__ == "__main__":
    main()
