"""Benchmark: rnnlab LSTM vs PyTorch nn.LSTM, forward + backward, float32, same thread count.

    .venv/bin/python benchmarks/lstm_layer_vs_torch.py --threads 1
    .venv/bin/python benchmarks/lstm_layer_vs_torch.py --threads 2 --units 128 --batch 32 --steps 80 --dim 128

Both run the same weights on the same batch; runs alternate inside one process (the machine has
noisy periods) and the medians are compared. The loss gradient is a fixed random array on the
full output sequence (return_sequences=True), so the whole BPTT runs on both sides.
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1, help="BLAS / torch threads (default 1)")
    ap.add_argument("--units", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=30, help="timed runs of each (default 30)")
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args(argv)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy is imported
    if "numpy" in sys.modules:
        print("warning: numpy was imported before the thread count was set", file=sys.stderr)

    import numpy as np
    import torch

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from rnnlab import interop
    from rnnlab.layers import LSTM

    torch.set_num_threads(args.threads)
    B, T, D, U = args.batch, args.steps, args.dim, args.units
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    g = rng.standard_normal((B, T, U)).astype(np.float32)

    ours = LSTM(U, return_sequences=True)
    ours(x)
    ref = torch.nn.LSTM(D, U, batch_first=True)
    interop.to_torch([ours], ref)
    xt = torch.tensor(x, requires_grad=True)
    gt = torch.tensor(g)

    def run_ours():
        ours(x, training=True)
        return ours.backward(g)

    def run_torch():
        ref.zero_grad()
        xt.grad = None
        out, _ = ref(xt)
        out.backward(gt)
        return xt.grad

    # same result (float32) before timing
    dx_ours, dx_ref = run_ours(), run_torch().numpy()
    err = float(np.linalg.norm(dx_ours - dx_ref) / np.linalg.norm(dx_ref))
    for _ in range(args.warmup):
        run_ours()
        run_torch()
    t_ours, t_torch = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        run_ours()
        t1 = time.perf_counter()
        run_torch()
        t2 = time.perf_counter()
        t_ours.append(t1 - t0)
        t_torch.append(t2 - t1)
    mo, mt = float(np.median(t_ours)), float(np.median(t_torch))
    print(f"LSTM({U}) B{B} T{T} D{D} float32, forward+backward, {args.threads} thread(s), "
          f"{args.repeats} alternating runs (dx rel. diff vs torch {err:.1e})")
    print(f"  rnnlab : median {mo * 1e3:8.2f} ms   ({B / mo:8.0f} seq/s)")
    print(f"  torch  : median {mt * 1e3:8.2f} ms   ({B / mt:8.0f} seq/s)")
    print(f"  ratio rnnlab/torch = {mo / mt:.2f}")


if __name__ == "__main__":
    main()
