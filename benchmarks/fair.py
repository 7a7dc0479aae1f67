"""rnnlab vs PyTorch, measured so that neither side can handicap the other: each library in its own process.

    .venv/bin/python benchmarks/fair.py                          # every cell and row, 1 and 2 threads, 3 rounds
    .venv/bin/python benchmarks/fair.py --cells LSTM --threads 1 --rows imdb-train,imdb-infer
    .venv/bin/python benchmarks/fair.py --baseline ../old-checkout   # also time another rnnlab tree (before/after)
    .venv/bin/python benchmarks/fair.py --quick                  # smoke test: tiny shapes, 1 round, 2 steps

Why this harness: ``run_all.py`` alternates rnnlab and PyTorch steps inside ONE process. There, a thread pool left
spinning by one library (OpenBLAS's workers after an rnnlab call, PyTorch's OpenMP team after a torch call) takes a
core from the other, and each evicts the other's weights from the caches. Those effects handicap whichever side runs
second. Here every measurement runs in a fresh process that imports only its own library:

* Sides: ``torch`` (PyTorch as its users write it: ``batch_first=True``, default ``zero_grad()``, the library's
  own default kernels), ``rnnlab`` (this checkout) and, with ``--baseline DIR``, ``baseline`` (the rnnlab package
  found in DIR, e.g. a ``git worktree`` of an older commit: the same harness gives before/after figures).
* Thread settings: OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS set before NumPy or torch is imported,
  and ``torch.set_num_threads``; identical for every side.
* Rounds: ``--rounds`` interleaved rounds, the side order rotating every round (A B C, B C A, ...), so that a
  noisy period of the machine hits every side. In each process every row gets ``--warmup`` steps (at least 20 by
  default: PyTorch needs them too; with 4 its LSTM step was measured 33% slower) and then ``--steps`` timed steps.
* Report: per row and side the median over all timed steps of all rounds, and the spread as the lowest and
  highest per-round median; ratio = PyTorch median / rnnlab median (> 1: rnnlab faster).

Rows (model = [Embedding] + recurrent layer (last output) + Dense head, the shapes of run_all.py):
``imdb``  Embedding(20000, 128) + RNN(128) + Dense(1), batch 32, length 80 (train and infer);
``imdb128`` the same at batch 128 (infer: inference at batch 32 and 128 for every cell);
``char``  one-hot (60) + RNN(128) + Dense(60, softmax), batch 128, length 40;
``large`` float (512) + RNN(512) + Dense(1), batch 128, length 80;
``latency`` the imdb model at batch 1.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CELLS = ("SimpleRNN", "LSTM", "GRU", "BiLSTM")
CONFIGS = {
    "imdb": dict(B=32, T=80, V=20000, D=128, U=128, out=1, loss="bce"),
    "imdb128": dict(B=128, T=80, V=20000, D=128, U=128, out=1, loss="bce"),
    "char": dict(B=128, T=40, V=None, D=60, U=128, out=60, loss="cce"),
    "large": dict(B=128, T=80, V=None, D=512, U=512, out=1, loss="mse"),
    "latency": dict(B=1, T=80, V=20000, D=128, U=128, out=1, loss="bce"),
}
QUICK = {name: dict(cfg, B=min(cfg["B"], 4), T=6, V=None if cfg["V"] is None else 50, D=8, U=8,
                    out=min(cfg["out"], 8)) for name, cfg in CONFIGS.items()}
ROWS = ("imdb-train", "imdb-infer", "imdb128-infer", "char-train", "char-infer", "large-train", "large-infer",
        "latency-train", "latency-infer")
SIDES = ("torch", "rnnlab", "baseline")


# ----------------------------------------------------------------------------- worker side
def _data(np, cfg):
    """The same inputs and targets as run_all.py's rows (seeded), for one config."""
    from run_all import _make_data  # benchmarks/ is this script's folder, first on sys.path
    return _make_data(np, cfg)


def _rnnlab_step(cell, cfg, mode):
    import numpy as np

    import rnnlab
    from rnnlab import layers as L

    rnnlab.set_random_seed(0)
    U = cfg["U"]
    rec = {"SimpleRNN": lambda: L.SimpleRNN(U), "LSTM": lambda: L.LSTM(U), "GRU": lambda: L.GRU(U),
           "BiLSTM": lambda: L.Bidirectional(L.LSTM(U))}[cell]()
    if cfg["V"] is not None:
        stack = [L.Embedding(cfg["V"], cfg["D"]), rec]
    else:
        stack = [rnnlab.Input((cfg["T"], cfg["D"])), rec]
    act, loss = {"bce": ("sigmoid", "binary_crossentropy"), "cce": ("softmax", "categorical_crossentropy"),
                 "mse": ("linear", "mse")}[cfg["loss"]]
    model = rnnlab.Sequential(stack + [L.Dense(cfg["out"], activation=act)])
    model.compile(rnnlab.optimizers.Adam(1e-3), loss)
    x, y = _data(np, cfg)
    if mode == "infer":
        return lambda: model.predict_on_batch(x)
    return lambda: model.train_on_batch(x, y)


def _torch_step(cell, cfg, mode):
    import numpy as np
    import torch
    from torch import nn

    torch.manual_seed(0)
    D, U, V = cfg["D"], cfg["U"], cfg["V"]
    bi = cell == "BiLSTM"

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(V, D) if V is not None else None
            kind = {"SimpleRNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU, "BiLSTM": nn.LSTM}[cell]
            self.rnn = kind(D, U, batch_first=True, bidirectional=bi)
            self.head = nn.Linear(U * (2 if bi else 1), cfg["out"])

        def forward(self, x):
            if self.emb is not None:
                x = self.emb(x)
            _, h = self.rnn(x)
            h = h[0] if isinstance(h, tuple) else h
            return self.head(torch.cat([h[-2], h[-1]], dim=1) if bi else h[-1])

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    lossf = {"bce": nn.BCEWithLogitsLoss(), "cce": nn.CrossEntropyLoss(), "mse": nn.MSELoss()}[cfg["loss"]]
    x, y = _data(np, cfg)
    tx = torch.from_numpy(x)
    ty = torch.from_numpy(y.argmax(axis=1)) if cfg["loss"] == "cce" else torch.from_numpy(y)
    if mode == "infer":
        net.eval()

        def infer():
            with torch.no_grad():
                net(tx)
        return infer

    def train():
        opt.zero_grad()
        lossf(net(tx), ty).backward()
        opt.step()
    return train


def worker(args):
    """One process, one side: time every requested (cell, row) and print JSON {key: [step seconds]}."""
    configs = QUICK if args.quick else CONFIGS
    if args.side == "torch":
        import torch
        torch.set_num_threads(args.threads)
        make = _torch_step
    else:
        make = _rnnlab_step
    out = {}
    for cell in args.cells.split(","):
        for row in args.rows.split(","):
            cfg_name, mode = row.rsplit("-", 1)
            step = make(cell, configs[cfg_name], mode)
            t_end = time.perf_counter() + args.warmup_seconds
            for i in range(args.warmup):
                step()
            while time.perf_counter() < t_end:  # at least --warmup-seconds of warm-up too
                step()
            times = []
            for _ in range(args.steps):
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
            out[f"{cell}/{row}"] = times
    return out


# ----------------------------------------------------------------------------- parent side
def run_side(side, threads, args):
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    tree = args.baseline if side == "baseline" else ROOT
    env["PYTHONPATH"] = os.path.abspath(tree) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--side", side, "--threads", str(threads),
           "--cells", args.cells, "--rows", args.rows, "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--warmup-seconds", str(args.warmup_seconds)] + (["--quick"] if args.quick else [])
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"fair.py: the {side} worker ({threads} thread(s)) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def measure(threads, sides, args):
    """{side: {key: [per-round lists of step times]}} over interleaved rounds with rotating side order."""
    res = {s: {} for s in sides}
    for r in range(args.rounds):
        order = sides[r % len(sides):] + sides[:r % len(sides)]
        for side in order:
            t0 = time.time()
            for key, times in run_side(side, threads, args).items():
                res[side].setdefault(key, []).append(times)
            print(f"# {threads} thread(s), round {r + 1}/{args.rounds}: {side} done in {time.time() - t0:.0f} s",
                  file=sys.stderr, flush=True)
    return res


def table(threads, res, sides):
    def stats(rounds):
        med = statistics.median([t for rnd in rounds for t in rnd])
        per_round = [statistics.median(rnd) for rnd in rounds]
        return med * 1e3, min(per_round) * 1e3, max(per_round) * 1e3

    rn_sides = [s for s in sides if s != "torch"]
    head = "| cell | row | torch ms (spread) | " + " | ".join(f"{s} ms (spread) | {s} ratio" for s in rn_sides) + " |"
    lines = [f"### {threads} thread(s)", "", head, "|---|---|---:|" + "---:|---:|" * len(rn_sides)]
    rows = []
    for key in res["torch"]:
        cell, row = key.split("/")
        tm, tlo, thi = stats(res["torch"][key])
        cells = [cell, row, f"{tm:.2f} ({tlo:.2f}-{thi:.2f})"]
        entry = dict(threads=threads, cell=cell, row=row, torch_ms=tm, torch_spread=[tlo, thi])
        for s in rn_sides:
            m, lo, hi = stats(res[s][key])
            cells += [f"{m:.2f} ({lo:.2f}-{hi:.2f})", f"{tm / m:.2f}"]
            entry[f"{s}_ms"], entry[f"{s}_spread"], entry[f"{s}_ratio"] = m, [lo, hi], tm / m
        lines.append("| " + " | ".join(cells) + " |")
        rows.append(entry)
    return "\n".join(lines) + "\n", rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--cells", default=",".join(CELLS), help=f"comma-separated subset of {','.join(CELLS)}")
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per side (default 3)")
    p.add_argument("--steps", type=int, default=30, help="timed steps per row, process and round (default 30)")
    p.add_argument("--warmup", type=int, default=20, help="warm-up steps per row and process (default 20)")
    p.add_argument("--warmup-seconds", type=float, default=0.0, help="and at least this much warm-up time")
    p.add_argument("--baseline", metavar="DIR", help="also time the rnnlab package in DIR (another checkout)")
    p.add_argument("--quick", action="store_true", help="tiny shapes, 1 round, 2 warm-up and 2 timed steps")
    p.add_argument("--json", help="also write the rows to this file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in args.cells.split(","):
        if name not in CELLS:
            p.error(f"--cells: unknown cell {name!r}; choose from {', '.join(CELLS)}")
    for name in args.rows.split(","):
        if name not in ROWS:
            p.error(f"--rows: unknown row {name!r}; choose from {', '.join(ROWS)}")
    for arg in ("rounds", "steps"):
        if getattr(args, arg) < 1:
            p.error(f"--{arg} must be >= 1, got {getattr(args, arg)}")
    if args.warmup < 0 or args.warmup_seconds < 0:
        p.error("--warmup and --warmup-seconds must be >= 0")
    if args.quick:
        args.rounds, args.steps, args.warmup = 1, 2, 2
    if args.worker:
        args.threads = int(args.threads)
        json.dump(worker(args), sys.stdout)
        return 0
    try:
        thread_counts = [int(t) for t in args.threads.split(",")]
    except ValueError:
        p.error(f"--threads must be comma-separated integers, got {args.threads!r}")
    if min(thread_counts) < 1:
        p.error(f"--threads must be positive integers, got {args.threads!r}")
    if args.baseline and not os.path.isfile(os.path.join(args.baseline, "rnnlab", "__init__.py")):
        p.error(f"--baseline: {args.baseline!r} holds no rnnlab package (expected {args.baseline}/rnnlab/__init__.py)")
    sides = ["torch", "rnnlab"] + (["baseline"] if args.baseline else [])
    print(f"rnnlab vs PyTorch, each library in its own process; load average {os.getloadavg()[0]:.2f}", flush=True)
    all_rows = []
    for n in thread_counts:
        text, rows = table(n, measure(n, sides, args), sides)
        print(text, flush=True)
        all_rows += rows
    print("ms: median over all timed steps of all rounds; spread: lowest-highest per-round median; "
          "ratio = PyTorch ms / rnnlab ms (> 1: rnnlab faster).")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(all_rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
