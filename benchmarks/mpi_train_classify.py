"""Throughput of ``rnnlab train classify`` on 1 and 2 MPI ranks (each rank trains its rows of every batch).

    python benchmarks/mpi_train_classify.py --rows 1600 --out /tmp/mpi-bench          # writes the small CSV, 1 rank
    mpiexec -n 2 python benchmarks/mpi_train_classify.py --rows 1600 --out /tmp/mpi-bench

Each run writes ``--rows`` IMDB reviews (from /work/shared/data or ``--data``) to a small CSV once, runs
``rnnlab train classify`` on it in this process (RNN alone: ``--ensemble none``; no validation, so the time is the
training steps) and prints: the training samples per second (wall clock of the run's ``fit``, rank 0's
validation included), and per rank the process CPU seconds per batch, the same without the CPU spent inside
MPI calls (MPICH spins while it waits for the other rank, so that part measures waiting), and the wall seconds
per batch in the gradient collectives. One BLAS thread per rank
(``OPENBLAS_NUM_THREADS=1`` is set before numpy loads) so 2 ranks use the 2 cores that 1 rank with 1 thread
leaves half idle. Not a test: the machine is shared; state the load (``uptime``) with every figure.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402


def write_rows(src, dst, rows):
    import csv
    opener = gzip.open if src.endswith(".gz") else open
    with opener(src, "rt", encoding="utf-8", newline="") as f, open(dst + ".tmp", "w", encoding="utf-8",
                                                                    newline="") as g:
        r, w = csv.reader(f), csv.writer(g)
        w.writerow(next(r))
        for i, row in enumerate(r):
            if i >= rows:
                break
            w.writerow(row)
    os.replace(dst + ".tmp", dst)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="/work/shared/data/imdb_reviews.csv.gz")
    p.add_argument("--rows", type=int, default=1600)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--units", type=int, default=64)
    p.add_argument("--maxlen", type=int, default=200)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    from rnnlab import distributed
    from rnnlab.cli import main as cli
    from rnnlab.models.engine import Engine
    from rnnlab.tasks import runstate

    rank, size = distributed.rank(), distributed.size()
    os.makedirs(a.out, exist_ok=True)
    csv_path = os.path.join(a.out, f"imdb-{a.rows}.csv")
    if rank == 0 and not os.path.exists(csv_path):
        write_rows(a.data, csv_path, a.rows)
    if distributed.current() is not None:
        distributed.current().barrier()

    clock = {"batches": 0, "samples": 0}
    real_fit = runstate.TrainLoop.fit

    def timed_fit(self, epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        a0 = distributed.current().allreduce_seconds if distributed.current() is not None else 0.0
        r = real_fit(self, epochs)
        clock["wall"], clock["cpu"] = time.perf_counter() - t0, time.process_time() - c0
        clock["allreduce"] = (distributed.current().allreduce_seconds - a0) if distributed.current() else 0.0
        return r

    def counting_fit(self, *args, **kwargs):  # the batches fit runs, and their global rows
        from rnnlab.models import data_adapters
        x = kwargs.get("x", args[0] if args else None)
        if data_adapters.is_dataset(x) and hasattr(x, "make"):
            make = x.make

            def counted(key):
                b = make(key)
                clock["batches"] += 1
                clock["samples"] += len(b[1])
                return b
            x.make = counted
        return real_engine_fit(self, *args, **kwargs)

    clock["coll_cpu"] = 0.0
    real_call = distributed.Context._call

    def timed_call(self, what, fn, *args):  # process CPU spent inside MPI collectives (MPICH spins while waiting)
        c0 = time.process_time()
        try:
            return real_call(self, what, fn, *args)
        finally:
            clock["coll_cpu"] += time.process_time() - c0
    distributed.Context._call = timed_call

    real_engine_fit = Engine.fit
    runstate.TrainLoop.fit = timed_fit
    Engine.fit = counting_fit
    try:
        cli(["train", "classify", "--data", csv_path, "--test-fraction", "0.1", "--valid-fraction", "0.05",
             "--epochs", str(a.epochs), "--batch-size", str(a.batch_size), "--units", str(a.units),
             "--embedding-dim", "64", "--maxlen", str(a.maxlen), "--ensemble", "none", "--seed", "1",
             "--verbose", "0", "--out", os.path.join(a.out, f"run-{size}")])
    finally:
        runstate.TrainLoop.fit, Engine.fit = real_fit, real_engine_fit
    distributed.Context._call = real_call
    mine = np.array([clock["wall"], clock["cpu"], clock["allreduce"], clock["batches"], clock["samples"],
                     clock["coll_cpu"]])
    ctx = distributed.current()
    allr = mine[None, :]
    if ctx is not None:
        allr = np.zeros((size, mine.size))
        ctx.comm.Gather(mine, allr, root=0)
    if rank == 0:
        with open("/proc/loadavg") as f:
            load = f.read().split()[:3]
        res = {"ranks": size, "load": load, "fit_wall_s": round(float(allr[0, 0]), 2),
               "samples": int(allr[0, 4]), "batches": int(allr[0, 3]),
               "samples_per_s": round(float(allr[0, 4] / allr[0, 0]), 1),
               "cpu_s_per_batch_per_rank": [round(float(r[1] / r[3]), 4) for r in allr],
               "cpu_s_per_batch_per_rank_outside_mpi": [round(float((r[1] - r[5]) / r[3]), 4) for r in allr],
               "allreduce_s_per_batch_per_rank": [round(float(r[2] / r[3]), 4) for r in allr]}
        sys.__stdout__.write(json.dumps(res) + "\n")
        sys.__stdout__.flush()


if __name__ == "__main__":
    main()
