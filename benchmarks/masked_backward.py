"""Masked training steps with and without the compiled masked BPTT loop (``rnnlab_{lstm,gru}_bwd_loop_masked_f32``),
same process, alternating rounds (docs/benchmarks.md, "Masked batches").

Arm "compiled": as shipped. Arm "python": the masked backward loop step by step in Python, as before the masked
kernels (``rnnlab._native.fused_bwd_loop_kernel(cell, masked=True)`` answering None, which is what a library built
without them does). Both arms give the same bits (tests/test_native_masked_loops.py); only the time differs.

Per arm: the median wall time of a step (min-max) and the median CPU time of the process in a step (all its
threads: less sensitive than wall time to other processes on a shared machine), and the ratio of the arms' median
CPU times in each round (both arms back to back), its median over the rounds. Models: a tagger (Embedding(5000, 64, mask_zero) -> LSTM or GRU (128, return_sequences) -> Dense(20) softmax, Adam,
batch 32, T 40, lengths uniform in 8..40) and ``Seq2Seq`` (LSTM, units 64, embedding 32, attention "dot", batch 64,
source and target lengths uniform in 5..30 characters) by ``train_on_batch`` of its training model; and the
tagger's recurrent layer alone ("layer-*": forward and backward, input (32, 40, 64) with the same kind of mask).

    python benchmarks/masked_backward.py [--rounds 5] [--steps 20] [--only layer-lstm,layer-gru,tagger-lstm,tagger-gru,seq2seq]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import rnnlab  # noqa: E402
from rnnlab import _native  # noqa: E402
from rnnlab import layers as L  # noqa: E402

_REAL = _native.fused_bwd_loop_kernel


def _python_arm(cell, masked=False):
    return None if masked else _REAL(cell)


def tagger(cell):
    rnnlab.set_random_seed(0)
    rng = np.random.default_rng(0)
    B, T, V, n_tags = 32, 40, 5000, 20
    model = rnnlab.Sequential([L.Embedding(V, 64, mask_zero=True), getattr(L, cell)(128, return_sequences=True),
                               L.Dense(n_tags, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    batches = []
    for _ in range(4):
        lengths = rng.integers(8, T + 1, B)
        ids = rng.integers(1, V, (B, T))
        ids[np.arange(T)[None, :] >= lengths[:, None]] = 0
        batches.append((ids, rng.integers(0, n_tags, (B, T))))
    rec = model.layers[1]
    return (lambda i: model.train_on_batch(*batches[i % len(batches)])), [rec]


def layer_only(cell):
    """The recurrent layer of the tagger alone: forward (training) and backward on (32, 40, 64) with its mask."""
    rnnlab.set_random_seed(0)
    rng = np.random.default_rng(0)
    B, T = 32, 40
    rec = getattr(L, cell)(128, return_sequences=True)
    x = rng.standard_normal((B, T, 64)).astype(np.float32)
    rec(x)
    mask = np.arange(T)[None, :] < rng.integers(8, T + 1, B)[:, None]
    g = rng.standard_normal((B, T, 128)).astype(np.float32)

    def step(i):
        rec.forward(x, training=True, mask=mask)
        rec.backward(g)
    return step, [rec]


def seq2seq():
    from rnnlab.datasets.seq2seq_data import Vocabulary
    from rnnlab.models.seq2seq import Seq2Seq
    from rnnlab.optimizers import Adam

    rnnlab.set_random_seed(0)
    rng = np.random.default_rng(1)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    sv, tv = Vocabulary(letters), Vocabulary(letters)
    s2s = Seq2Seq(sv, tv, embedding_dim=32, units=64, cell="lstm", max_source_len=40, max_target_len=40)
    tm = s2s.training_model
    tm.compile(optimizer=Adam(1e-3, clipnorm=1.0), loss=s2s.loss_fn)
    batches = []
    for _ in range(4):
        words = lambda: "".join(rng.choice(letters, rng.integers(5, 31)))  # noqa: E731
        pairs = [(words(), words()) for _ in range(64)]
        X = s2s.encode_sources([s for s, _ in pairs], warn=False)
        Yin, Yout = s2s.encode_targets([t for _, t in pairs])
        batches.append(([X, Yin], Yout))
    recs = [r for dirs in s2s.encoder for r in dirs] + list(s2s.decoder)
    return (lambda i: tm.train_on_batch(*batches[i % len(batches)])), recs


CONFIGS = {"layer-lstm": lambda: layer_only("LSTM"), "layer-gru": lambda: layer_only("GRU"),
           "tagger-lstm": lambda: tagger("LSTM"), "tagger-gru": lambda: tagger("GRU"), "seq2seq": seq2seq}


def measure(name, rounds, steps):
    step, recs = CONFIGS[name]()
    times = {"compiled": [], "python": []}
    cpu = {"compiled": [], "python": []}
    per_round = []       # (python median / compiled median) of each round: both arms measured back to back
    for i in range(8):                       # warm-up: workspaces, packed buffers, the table of the Embedding
        step(i)
    for r in range(rounds):
        n0 = {arm: len(v) for arm, v in cpu.items()}
        for arm in (("compiled", "python") if r % 2 == 0 else ("python", "compiled")):
            _native.fused_bwd_loop_kernel = _REAL if arm == "compiled" else _python_arm
            try:
                step(0)
                paths = {rec.last_backward_path for rec in recs}
                want = "fused_loop" if arm == "compiled" else "steps"
                if paths != {want}:
                    raise RuntimeError(f"{name}: arm {arm} ran the backward loop(s) {paths}, expected {want}")
                for i in range(steps):
                    t0, c0 = time.perf_counter(), time.process_time()
                    step(i)
                    times[arm].append(time.perf_counter() - t0)
                    cpu[arm].append(time.process_time() - c0)
            finally:
                _native.fused_bwd_loop_kernel = _REAL
        per_round.append(statistics.median(cpu["python"][n0["python"]:])
                         / statistics.median(cpu["compiled"][n0["compiled"]:]))
    res = {arm: (1e3 * statistics.median(v), 1e3 * min(v), 1e3 * max(v), 1e3 * statistics.median(cpu[arm]))
           for arm, v in times.items()}
    res["paired"] = (statistics.median(per_round), min(per_round), max(per_round))
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--only", default=",".join(CONFIGS))
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    bad = [n for n in names if n not in CONFIGS]
    if bad:
        ap.error(f"--only: unknown config(s) {bad}; choose from {sorted(CONFIGS)}")
    if not _native.available() or _native.fused_bwd_loop_kernel("lstm", masked=True) is None:
        sys.exit("masked_backward.py: the compiled kernel with the masked loops is not built (make venv)")
    load = os.getloadavg()
    print(f"# {platform.processor() or platform.machine()}, BLAS threads {_native.blas_threads()}, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {time.strftime('%H:%M:%S UTC', time.gmtime())}")
    print("| model | python masked loop: wall ms/step median (min-max), CPU ms | compiled masked loop "
          "| ratio wall, CPU | CPU ratio per round: median (min-max) |")
    print("|---|---|---|---|---|")
    for name in names:
        res = measure(name, args.rounds, args.steps)
        (p, p0, p1, pc), (c, c0, c1, cc) = res["python"], res["compiled"]
        print(f"| {name} | {p:.2f} ({p0:.2f}-{p1:.2f}), {pc:.2f} | {c:.2f} ({c0:.2f}-{c1:.2f}), {cc:.2f} "
              f"| {p / c:.3f}x, {pc / cc:.3f}x | {res['paired'][0]:.3f}x ({res['paired'][1]:.3f}-{res['paired'][2]:.3f}) |",
              flush=True)
    load = os.getloadavg()
    print(f"# load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
