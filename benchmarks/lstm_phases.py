"""Phase profile of the IMDB LSTM (Embedding(20000, 128) -> LSTM(128) -> Dense(1), batch 32, length 80, Adam)
against each phase's floor on this machine (issue 24).

    .venv/bin/python benchmarks/lstm_phases.py --threads 1          # OPENBLAS_NUM_THREADS set before NumPy loads
    .venv/bin/python benchmarks/lstm_phases.py --threads 2 --batch 128

What it does, in one process with one thread setting:

1. Machine peaks: float32 GEMM GFLOP/s (a large square product, and each phase's own shape through NumPy's BLAS)
   and memory bandwidth (a 64 MB copy: read + write bytes per second; an Adam-like stream of 3 arrays read and
   written).
2. The train step and the inference step of the model, whole, then each phase alone on the layer's own workspace
   after a warm-up step (same buffers, same kernels as inside the step): embedding gather, input projection, the
   forward time loop (and, separately, its T packed products and its T gate kernels), the backward time loop, the
   weight-gradient products, dX, embedding gradient, Adam.
3. For each phase: measured ms, its floor (FLOPs at the large-GEMM peak, or bytes at the copy bandwidth), and the
   ratio. Timings: median of ``--reps`` repetitions, in process CPU time with one thread (robust to other
   processes on the machine) or wall time with several (CPU time would add the threads up).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--json", help="write the phases to this file")
    args = p.parse_args(argv)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import numpy as np

    import rnnlab
    from rnnlab import layers as L

    clock = time.process_time if args.threads == 1 else time.perf_counter

    def timed(fn, reps=args.reps):
        fn()
        ts = []
        for _ in range(reps):
            t0 = clock()
            fn()
            ts.append(clock() - t0)
        return statistics.median(ts) * 1e3

    B, T, V, D, U = args.batch, 80, 20000, 128, 128
    W = 4 * U
    print(f"# load average {os.getloadavg()[0]:.2f}; {args.threads} thread(s); clock "
          f"{'process CPU' if args.threads == 1 else 'wall'} time; batch {B}", flush=True)

    # ---- machine peaks
    a = np.random.rand(1024, 1024).astype(np.float32)
    b = np.random.rand(1024, 1024).astype(np.float32)
    c = np.empty_like(a)
    peak = 2 * 1024 ** 3 / (timed(lambda: np.matmul(a, b, out=c), 10) * 1e-3) / 1e9
    big = np.ones(16 << 20, np.float32)      # 64 MB
    dst = np.empty_like(big)
    bw = 2 * big.nbytes / (timed(lambda: np.copyto(dst, big), 10) * 1e-3) / 1e9
    from rnnlab import _native
    w3 = [np.ones(4 << 20, np.float32) for _ in range(3)]   # 3 x 16 MB: an Adam-like stream (w, m, v read + written)
    g3 = np.zeros(4 << 20, np.float32)
    _native.adam_update(w3[0], w3[1], w3[2], None, g3, None, 0.9, 0.999, 0.1, 0.001, 1e-7, 1e-3)
    bw_adam = 6 * w3[0].nbytes / (timed(lambda: _native.adam_update(w3[0], w3[1], w3[2], None, g3, None, 0.9, 0.999,
                                                                     0.1, 0.001, 1e-7, 1e-3), 10) * 1e-3) / 1e9
    print(f"GEMM peak (1024^3 float32): {peak:.0f} GFLOP/s; copy bandwidth (64 MB): {bw:.1f} GB/s; "
          f"fused Adam stream (w, m, v, g 16 MB each): {bw_adam:.1f} GB/s (6 of the 7 arrays' bytes)")
    del a, b, c, big, dst, w3, g3

    def gemm_rate(m, k, n):
        x, y = np.random.rand(m, k).astype(np.float32), np.random.rand(k, n).astype(np.float32)
        o = np.empty((m, n), np.float32)
        return 2 * m * k * n / (timed(lambda: np.matmul(x, y, out=o), 20) * 1e-3) / 1e9

    rates = {"proj (BT,D)@(D,4U)": gemm_rate(B * T, D, W), "step (B,U)@(U,4U)": gemm_rate(B, U, W),
             "grad (D,BT)@(BT,4U)": gemm_rate(D, B * T, W)}
    print("NumPy BLAS on the phase shapes: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in rates.items()))

    # ---- the model, as benchmarks/fair.py builds it
    rnnlab.set_random_seed(0)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, V, (B, T)).astype(np.int64)
    y = rng.integers(0, 2, (B, 1)).astype(np.float32)
    emb, lstm, dense = L.Embedding(V, D), L.LSTM(U), L.Dense(1, activation="sigmoid")
    model = rnnlab.Sequential([emb, lstm, dense])
    model.compile(rnnlab.optimizers.Adam(1e-3), "binary_crossentropy")
    opt = model.optimizer
    opt_times = []
    apply = opt.apply

    def timed_apply(refs):
        t0 = clock()
        apply(refs)
        opt_times.append(clock() - t0)
    opt.apply = timed_apply
    step = timed(lambda: model.train_on_batch(ids, y))
    adam_ms = statistics.median(opt_times[1:]) * 1e3
    for _ in range(V // (B * T) + 2):     # past the calls after which the input-projection table pays
        model.predict_on_batch(ids)
    infer = timed(lambda: model.predict_on_batch(ids))
    table = getattr(lstm.__dict__.get("_proj_table"), "table", None) is not None
    print(f"train step {step:.2f} ms (path {lstm.last_path}, backward {lstm.last_backward_path}); inference "
          f"{infer:.2f} ms (projection table: {table})", flush=True)

    # ---- phases on the workspace of the last call
    model.train_on_batch(ids, y)
    ws = lstm._ws
    X2, A2 = ws.X.reshape(T * B, D), ws.A.reshape(T * B, W)
    phases = []
    fl_proj = 2 * T * B * D * W
    fl_loop = 2 * T * B * U * W

    def add(name, ms, flops=0, nbytes=0):
        floor = flops / peak / 1e6 + nbytes / bw / 1e6
        phases.append(dict(phase=name, ms=ms, floor_ms=floor, flops=flops, bytes=nbytes))

    add("embedding gather (fwd)", timed(lambda: emb.forward(ids, training=True)), 0, 2 * B * T * D * 4)
    xe = emb.forward(ids, training=True)
    kern = lstm.params["kernel"]
    # (the layer's own choice: the packed kernel over rnnlab's row blocks with several BLAS threads, else NumPy)
    add("input projection X W_x (GEMM)", timed(lambda: lstm._packed_projection(ws, kern)
                                              or np.matmul(X2, kern, out=A2)), fl_proj, (T * B * (D + W)) * 4)
    h = lstm.forward(xe, training=True)
    gh = np.ones_like(h) * 1e-3
    lstm.backward(gh)
    pair = []
    for _ in range(args.reps):          # (a training forward needs its backward before the next one reuses ws)
        t0 = clock()
        lstm.forward(xe, training=True)
        t1 = clock()
        lstm.backward(gh)
        pair.append((t1 - t0, clock() - t1))
    fwd_total = statistics.median(p[0] for p in pair) * 1e3
    bwd_total = statistics.median(p[1] for p in pair) * 1e3
    lstm.forward(xe, training=True)
    # the loop alone: the fused C loop over the same buffers (A then holds activations: the timing is the same)
    if ws.pk is not None and lstm._has_fused_forward(ws):
        add("forward loop (C, fused)", timed(lambda: lstm._fused_forward(ws)), fl_loop)
        pk = ws.pk
        add("  its T recurrent products (whole batch, one thread)", timed(lambda: [pk.step[t]() for t in range(T)]), fl_loop)
        cp = ws.fast.cptr
        f = cp.kernels[0]
        add("  its T gate kernels (one thread)", timed(lambda: [f(*cp.fwd[t], cp.bias, B, U, 0) for t in range(T)]), 0,
            T * B * (3 * W + 5 * U) * 4)
    add("LSTM forward, whole (copy-in, projection, loop, outputs)", fwd_total, fl_proj + fl_loop)
    lstm.backward(gh)
    lstm.forward(xe, training=True)
    lstm.backward(gh)
    add("weight gradients X^T dA, H^T dA, db", timed(lambda: lstm._weight_grads(ws)), fl_proj + fl_loop)
    dX = np.empty_like(X2)
    add("dX = dA W_x^T (GEMM)", timed(lambda: lstm._input_grad_product(ws, A2, dX)), fl_proj)
    pkb = lstm._packed_backward(ws)
    if pkb is not None and ws.fast is not None and ws.fast.cptr is not None:
        lstm.forward(xe, training=True)       # A holds the activations again (the loop overwrites them with dA)
        A0 = ws.A.copy()
        restore = timed(lambda: np.copyto(ws.A, A0))
        ws.pkb = pkb
        add("backward loop (C, fused)", timed(lambda: (np.copyto(ws.A, A0), lstm._fused_backward(ws, None)))
            - restore, 2 * fl_loop - fl_loop)
        lstm.backward(gh)
    if pkb is not None:
        add("  backward loop's T products dA_t W_h^T (one thread)",
            timed(lambda: [pkb.prod(pkb.src[t], pkb.addr[id(ws.tmpU)]) for t in range(T)]), fl_loop)
    cp = ws.fast.cptr
    if cp is not None:
        fb = cp.kernels[1]
        dh, dc = ws.carry
        pdh, pdc, pdp = cp.grads[id(dh)], cp.grads[id(dc)], cp.grads[id(ws.dprev[1])]
        add("  backward loop's T gate kernels (one thread)",
            timed(lambda: [fb(pdh, pdc, *cp.bwd[t][:1], cp.bwd[t][1], cp.bwd[t][2], cp.da, pdp, B, U, 0)
                           for t in range(T)]), 0, T * B * (3 * W + 5 * U) * 4)
    add("LSTM backward, whole (loop, weight gradients, dX)", bwd_total, 2 * fl_loop + 2 * fl_proj)
    ge = np.ones((B, T, D), np.float32)
    emb.forward(ids, training=True)
    add("embedding gradient (row-sparse)", timed(lambda: (emb.forward(ids, training=True), emb.backward(ge)))
        - timed(lambda: emb.forward(ids, training=True)), 0, 2 * B * T * D * 4)
    n_params = sum(w.size for w in (emb.params["embeddings"], kern, lstm.params["recurrent_kernel"],
                                    lstm.params["bias"], dense.params["kernel"], dense.params["bias"]))
    add(f"Adam (dense rule, {n_params / 1e6:.2f}M parameters)", adam_ms, 0, n_params * 4 * 6)
    add("train step, whole", step, 3 * fl_proj + 3 * fl_loop, n_params * 4 * 6)
    # inference (after the calls above: the projection table is built, nothing changed the weights since the
    # last train step... except that train step: predict until the table is rebuilt)
    for _ in range(2 * (V // (B * T)) + 4):
        model.predict_on_batch(ids)
    emb_i = timed(lambda: emb.forward(ids, training=False))
    both = timed(lambda: lstm.forward(emb.forward(ids, training=False), training=False))
    add("inference: embedding gather", emb_i, 0, 2 * B * T * D * 4)
    st = lstm.__dict__.get("_proj_table")
    if st is not None and st.table is not None:
        x_i = emb.forward(ids, training=False)
        ws_i = lstm._ws
        fk = lstm._projection_weights(ws_i)[0]
        add("inference: projection rows from the table (check + gather of all of A; the fused loop copies them "
            "step by step instead)", timed(lambda: (lstm._table_projection(ws_i, x_i, fk), lstm._gather_table_rows(ws_i))),
            0, B * T * (D * 2 + 2 * W) * 4)
        ws_i.table_rows = None
    add(f"inference: LSTM forward (path {lstm.last_path}, table {st is not None and st.table is not None})",
        both - emb_i, fl_loop)
    add("inference step, whole", infer, fl_loop)
    print(f"| phase | ms | floor ms | measured / floor |\n|---|---:|---:|---:|")
    for ph in phases:
        r = ph["ms"] / ph["floor_ms"] if ph["floor_ms"] > 0 else float("nan")
        print(f"| {ph['phase']} | {ph['ms']:.3f} | {ph['floor_ms']:.3f} | {r:.1f} |")
    print("floors: FLOPs at the 1024^3 GEMM peak, bytes at the 64 MB copy bandwidth (read + write); the train "
          f"step's: {3 * (fl_proj + fl_loop) / 1e9:.2f} GFLOP + Adam's {n_params * 24 / 1e6:.1f} MB (w, m, v read and "
          "written); inference: the loop's FLOPs only (the projection comes from the table)")
    if args.json:
        import json
        with open(args.json, "w") as f:
            json.dump(dict(threads=args.threads, batch=B, load=os.getloadavg()[0], gemm_peak=peak, copy_bw=bw,
                           adam_bw=bw_adam, shape_rates=rates, phases=phases), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
