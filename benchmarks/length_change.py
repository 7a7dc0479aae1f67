"""Cost of a sequence-length change: a training step with T alternating 80/79 vs T fixed at 80.

Model (the imdb size): Embedding(20000, 128) + LSTM(128) + Dense(1, sigmoid), batch 32, Adam, float32, as
`train classify`'s length bucketing produces it (every batch may have another T). Runs of ``--steps``
training steps alternate between the two schedules in the same process; the median time per step of each
is reported and the ratio alternating / fixed (target <= 1.02: the workspace is grow-only, a shorter T
uses views of the same buffers).

    python benchmarks/length_change.py [--threads 1] [--repeats 15] [--steps 10]
"""
from __future__ import annotations

import argparse
import os


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=80)
    p.add_argument("--units", type=int, default=128)
    args = p.parse_args(argv)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import time

    import numpy as np

    import rnnlab
    from rnnlab.layers import LSTM, Dense, Embedding

    B, T, V = args.batch, args.length, 20000
    gen = np.random.default_rng(0)
    xs = {t: gen.integers(1, V, size=(B, t)) for t in (T, T - 1)}
    y = gen.integers(0, 2, size=(B, 1)).astype("float32")
    rnnlab.set_random_seed(0)
    model = rnnlab.Sequential([Embedding(V, 128), LSTM(args.units), Dense(1, activation="sigmoid")])
    model.compile(rnnlab.optimizers.Adam(1e-3), "binary_crossentropy")

    def run(lengths):
        t0 = time.perf_counter()
        for k in range(args.steps):
            model.train_on_batch(xs[lengths[k % len(lengths)]], y)
        return (time.perf_counter() - t0) / args.steps

    schedules = {"fixed": [T], "alternating": [T, T - 1]}
    for lengths in schedules.values():
        run(lengths)                                   # warm-up (workspaces, packed buffers)
    times = {name: [] for name in schedules}
    for _ in range(args.repeats):
        for name, lengths in schedules.items():
            times[name].append(run(lengths))
    med = {name: float(np.median(v)) for name, v in times.items()}
    for name in schedules:
        print(f"{name:12s} T={'/'.join(map(str, schedules[name]))}: {1e3 * med[name]:7.2f} ms per training step "
              f"(median of {args.repeats} runs of {args.steps} steps)")
    print(f"ratio alternating / fixed: {med['alternating'] / med['fixed']:.3f}  (target <= 1.02)")


if __name__ == "__main__":
    main()
