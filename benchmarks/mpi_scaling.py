"""Benchmark: data-parallel training on MPI (rnnlab.distributed) - measured on this machine, estimated beyond it.

    .venv/bin/python benchmarks/mpi_scaling.py                 # IMDB-LSTM at 1 and 2 ranks + the PTB estimate
    .venv/bin/python benchmarks/mpi_scaling.py --steps 40 --json out.json

1. **Measured**: the IMDB-LSTM training step of the Keras example (Embedding(20000, 128) -> LSTM(128) ->
   Dense(1, sigmoid), Adam, global batch 32, 80 tokens; random token ids, as only the shapes matter for
   the time) run by ``fit`` under ``mpiexec -n 1`` (1 and 2 BLAS threads) and ``mpiexec -n 2`` (1 thread
   each: the machine has 2 cores). Reported: samples/s, the speed-up, and the share of the step spent in the
   gradient collectives (``Context.allreduce_seconds``: bucketed dense Allreduce + the Embedding rows; it
   includes waiting for the slower rank), plus the same collectives timed alone (no compute) to separate the
   transfer from the waiting.
2. **Estimated** (paper): the PTB word LM (Zaremba et al. 2014 "medium": vocabulary 10,000, 2 LSTM layers of
   650, embedding 650, batch 20 x 35 steps per rank) on 8 and 64 ranks over 10 Gbit/s Ethernet: the bytes one
   step reduces (dense weights by a ring Allreduce, ``2 (N-1)/N * bytes``; the Embedding rows gathered,
   ``(N-1) * rows * 650 * 4`` bytes, or the dense matrix once the rows outnumber it) against the compute of
   one step, timed here on one process (a few steps of the real model). Weak scaling: every rank keeps
   batch 20, so the global batch is 20 N.

3. ``--word2vec``: the quality cost of data-parallel word2vec (shards + periodic averaging): CBOW on the
   WikiText-2 train split, 1 process against 2 ranks averaging every 50,000 and every 1,000,000 words of each
   rank; analogy accuracy (questions-words.txt) and wordsim353 Spearman (gensim's test data).

Timings on a shared 2-core machine are noisy (other processes): treat them as a rough measure.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent))


def _threads(n):
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


# ------------------------------------------------------------------------ worker (under mpiexec)
def worker(steps, batch, maxlen):
    import numpy as np

    import rnnlab
    from rnnlab import distributed
    from rnnlab.layers import LSTM, Dense, Embedding

    ctx = distributed.current()
    rank = 0 if ctx is None else ctx.rank
    rnnlab.set_random_seed(0)
    m = rnnlab.Sequential([rnnlab.Input((maxlen,), dtype="int32"), Embedding(20000, 128), LSTM(128),
                           Dense(1, activation="sigmoid")])
    m.compile("adam", "binary_crossentropy")
    r = np.random.default_rng(0)
    n = steps * batch
    x = r.integers(1, 20000, size=(n, maxlen))
    y = r.integers(0, 2, size=(n, 1)).astype(np.float32)
    m.fit(x[:2 * batch], y[:2 * batch], batch_size=batch, epochs=1, verbose=0, shuffle=False)  # warm-up
    if ctx is not None:
        ctx.barrier()
        ctx.allreduce_seconds = 0.0
    t0 = time.perf_counter()
    m.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    if ctx is not None:
        ctx.barrier()
    secs = time.perf_counter() - t0
    out = {"ranks": 1 if ctx is None else ctx.size, "threads": int(os.environ.get("OMP_NUM_THREADS", "0")),
           "steps": steps, "global_batch": batch, "seconds": secs, "samples_per_s": n / secs,
           "step_ms": 1e3 * secs / steps}
    if ctx is not None:
        out["allreduce_ms_per_step"] = 1e3 * ctx.allreduce_seconds / steps
        out["allreduce_share"] = ctx.allreduce_seconds / secs
        # the same collectives alone: the dense buckets of this model and one step's Embedding rows
        refs = m.trainable_weight_refs()
        dense = np.zeros(sum(owner.params[w].size for _, owner, w in refs
                             if owner.params[w].shape[0] != 20000), np.float32)
        rows = np.zeros((batch // ctx.size * maxlen, 128), np.float32)
        gathered = np.zeros((rows.shape[0] * ctx.size, 128), np.float32)
        ctx.barrier()
        t0 = time.perf_counter()
        for _ in range(steps):
            ctx.allreduce_(dense)
            ctx.comm.Allgather(rows, gathered)
        out["collectives_alone_ms_per_step"] = 1e3 * (time.perf_counter() - t0) / steps
        out["dense_bytes_per_step"] = int(dense.nbytes)
    if rank == 0:
        print("RESULT " + json.dumps(out), flush=True)


def w2v_worker(sync_words, epochs, seed=1):
    """word2vec CBOW on WikiText-2 (train split, lower-cased) on this rank's share; rank 0 evaluates."""
    import gzip

    from rnnlab import distributed
    from rnnlab.embeddings import Word2Vec

    path = HERE.parent.parent.parent / "shared" / "data" / "wikitext-2" / "wiki.train.tokens.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        sents = [ln.lower().split() for ln in f if ln.strip() and not ln.lstrip().startswith("=")]
    m = Word2Vec(sents, vector_size=100, window=5, min_count=5, sg=0, epochs=epochs, seed=seed, workers=1,
                 sync_words=sync_words)
    if distributed.rank() != 0:
        return
    from gensim.test.utils import datapath
    a = m.wv.evaluate_word_analogies(datapath("questions-words.txt"))
    ws = m.wv.evaluate_word_pairs(datapath("wordsim353.tsv"))
    out = {"ranks": distributed.size(), "sync_words": sync_words, "epochs": epochs, "seed": seed,
           "seconds": m.train_seconds, "words_per_s": m.words_per_second,
           "syncs": getattr(m, "sync_count", 0), "sync_seconds": getattr(m, "sync_seconds", 0.0),
           "analogy_accuracy": a["accuracy"], "analogy_questions": a["total"], "wordsim353_spearman": ws["spearman"]}
    print("RESULT " + json.dumps(out), flush=True)


def launch_w2v(ranks, sync_words, epochs):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    mpiexec = Path(sys.executable).parent / "mpiexec"
    cmd = [str(mpiexec), "-n", str(ranks), sys.executable, str(HERE), "--w2v-worker", "--sync-words",
           str(sync_words), "--w2v-epochs", str(epochs)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if p.returncode != 0:
        raise SystemExit(f"mpiexec -n {ranks} (word2vec) failed:\n{p.stderr[-2000:]}")
    return json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])


def launch(ranks, threads, args):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    mpiexec = Path(sys.executable).parent / "mpiexec"
    cmd = [str(mpiexec), "-n", str(ranks), sys.executable, str(HERE), "--worker", "--steps", str(args.steps),
           "--batch", str(args.batch), "--maxlen", str(args.maxlen)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if p.returncode != 0:
        raise SystemExit(f"mpiexec -n {ranks} failed:\n{p.stderr[-2000:]}")
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    res = json.loads(line[7:])
    res["threads"] = threads
    return res


# ------------------------------------------------------------------------ the PTB estimate
def ptb_estimate(timed_steps=3, gbit=10.0, latency_s=50e-6):
    import numpy as np

    import rnnlab
    from rnnlab.layers import LSTM, Dense, Embedding

    V, E, H, B, T = 10000, 650, 650, 20, 35
    rnnlab.set_floatx("float32")
    rnnlab.set_random_seed(0)
    m = rnnlab.Sequential([rnnlab.Input((T,), dtype="int32"), Embedding(V, E), LSTM(H, return_sequences=True),
                           LSTM(H, return_sequences=True), Dense(V)])
    m.compile(rnnlab.optimizers.SGD(1.0, global_clipnorm=5.0),
              rnnlab.losses.SparseCategoricalCrossentropy(from_logits=True))
    r = np.random.default_rng(0)
    x = r.integers(0, V, size=(B, T))
    y = r.integers(0, V, size=(B, T))
    m.train_on_batch(x, y)
    t0 = time.perf_counter()
    for _ in range(timed_steps):
        m.train_on_batch(x, y)
    step_s = (time.perf_counter() - t0) / timed_steps
    refs = m.trainable_weight_refs()
    emb = sum(owner.params[w].size for _, owner, w in refs if owner.params[w].shape == (V, E))
    dense = sum(owner.params[w].size for _, owner, w in refs) - emb
    rows = len(np.unique(x))  # rows one rank's batch touches
    bw = gbit * 1e9 / 8
    est = {"params_dense": int(dense), "params_embedding": int(emb), "compute_step_s_here": step_s,
           "rows_per_rank_step": int(rows), "network_gbit_s": gbit, "latency_s": latency_s, "ranks": {}}
    for n in (8, 64):
        dense_b = 4 * dense
        t_dense = 2 * (n - 1) / n * dense_b / bw + 2 * (n - 1) * latency_s
        gathered_rows = (n - 1) * rows
        if gathered_rows + rows > V:   # rnnlab then reduces the dense matrix (and a V-byte row mask)
            t_emb = 2 * (n - 1) / n * (4 * V * E + V) / bw + 4 * (n - 1) * latency_s
            how = "dense Allreduce"
        else:
            t_emb = gathered_rows * (E * 4 + 8) / bw + 3 * (n - 1) * latency_s
            how = "Allgatherv of rows"
        comm = t_dense + t_emb
        est["ranks"][n] = {"bytes_dense": dense_b, "embedding_reduction": how, "comm_s": comm,
                           "efficiency": step_s / (step_s + comm), "speedup": n * step_s / (step_s + comm)}
    return est


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per run (default 30)")
    ap.add_argument("--batch", type=int, default=32, help="global batch (default 32)")
    ap.add_argument("--maxlen", type=int, default=80)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--skip-ptb", action="store_true", help="only the measured IMDB-LSTM part")
    ap.add_argument("--word2vec", action="store_true",
                    help="only the word2vec quality cost: CBOW on WikiText-2, 1 process against 2 ranks")
    ap.add_argument("--sync-words", type=int, default=50000, help=argparse.SUPPRESS)
    ap.add_argument("--w2v-epochs", type=int, default=3, help=argparse.SUPPRESS)
    ap.add_argument("--w2v-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--w2v-seed", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.steps, args.batch, args.maxlen)
        return
    if args.w2v_worker:
        w2v_worker(args.sync_words, args.w2v_epochs, args.w2v_seed)
        return
    if args.word2vec:
        runs = [launch_w2v(1, 50000, args.w2v_epochs)] + [launch_w2v(2, k, args.w2v_epochs)
                                                         for k in (50000, 1000000)]
        print(f"word2vec CBOW (100-d, window 5, min_count 5, {args.w2v_epochs} epochs) on WikiText-2 train")
        for r in runs:
            how = "1 process" if r["ranks"] == 1 else (f"{r['ranks']} ranks, averaged every {r['sync_words']:,} "
                                                        f"words of each rank ({r['syncs']} averagings)")
            print(f"  {how:58s} analogy {100 * r['analogy_accuracy']:5.2f}% of {r['analogy_questions']}  "
                  f"wordsim353 {r['wordsim353_spearman']:.3f}  {r['words_per_s']:,.0f} words/s")
        if args.json:
            Path(args.json).write_text(json.dumps({"word2vec": runs}, indent=2))
        return
    runs = [launch(1, 1, args), launch(1, 2, args), launch(2, 1, args)]
    base = runs[0]["samples_per_s"]
    print(f"IMDB-LSTM step (Embedding(20000,128) -> LSTM(128) -> Dense(1)), global batch {args.batch}, "
          f"{args.maxlen} tokens, {args.steps} steps")
    for r in runs:
        extra = ""
        if "allreduce_share" in r:
            extra = (f"  collectives {r['allreduce_ms_per_step']:.1f} ms/step = {100 * r['allreduce_share']:.1f}% "
                     f"of the step (alone: {r['collectives_alone_ms_per_step']:.2f} ms; "
                     f"{r['dense_bytes_per_step'] / 1e6:.2f} MB dense)")
        print(f"  {r['ranks']} rank(s) x {r['threads']} thread(s): {r['samples_per_s']:8.1f} samples/s  "
              f"{r['step_ms']:7.1f} ms/step  x{r['samples_per_s'] / base:.2f}{extra}")
    result = {"imdb_lstm": runs}
    if not args.skip_ptb:
        est = ptb_estimate()
        result["ptb_estimate"] = est
        print(f"PTB word LM (medium: V 10000, 2 x LSTM(650), batch 20 x 35 per rank): "
              f"{est['params_dense'] / 1e6:.2f} M dense + {est['params_embedding'] / 1e6:.2f} M embedding params; "
              f"one step here {est['compute_step_s_here']:.2f} s")
        for n, e in est["ranks"].items():
            print(f"  {n:2d} ranks over {est['network_gbit_s']:g} Gbit/s: {e['bytes_dense'] / 1e6:.1f} MB dense "
                  f"Allreduce + embedding by {e['embedding_reduction']}: {1e3 * e['comm_s']:.0f} ms/step of "
                  f"communication -> efficiency {100 * e['efficiency']:.0f}%, speed-up x{e['speedup']:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
