"""The rnnlab vs PyTorch benchmark suite: every cell, every config, training and inference, 1 and 2 threads.

    .venv/bin/python benchmarks/run_all.py                 # full suite, 1 and 2 threads (~10-15 min)
    .venv/bin/python benchmarks/run_all.py --threads 1     # one thread count only
    .venv/bin/python benchmarks/run_all.py --quick         # smoke test: tiny configs, 1 repeat
    .venv/bin/python benchmarks/run_all.py --json out.json # also write the raw numbers

What is measured (see docs/benchmarks.md for the results and their discussion):

* Cells: SimpleRNN, LSTM, GRU (reset_after=True, the PyTorch form) and Bidirectional(LSTM); PyTorch
  ``nn.RNN(tanh)``, ``nn.LSTM``, ``nn.GRU``, ``nn.LSTM(bidirectional=True)``.
* Configs (model = [Embedding] + recurrent layer (last output) + Dense head):
  ``imdb``    Embedding(20000, 128) + RNN(128) + Dense(1, sigmoid), batch 32, length 80, binary cross-entropy;
  ``char``    one-hot input (60 symbols) + RNN(128) + Dense(60, softmax), batch 128, length 40, cross-entropy;
  ``large``   float input (512 features) + RNN(512) + Dense(1), batch 128, length 80, mean squared error;
  ``latency`` the imdb model at batch 1.
* Modes: ``train`` = one training step (forward + backward + Adam update, dense Adam on both sides:
  rnnlab's ``Adam()`` applies the Embedding's row-sparse gradient with the exact dense semantics, PyTorch
  gets a dense embedding gradient); ``train-lazy`` (configs with an Embedding) = rnnlab ``Adam(lazy=True)``
  vs PyTorch ``nn.Embedding(sparse=True)`` + ``SparseAdam`` for the embedding and ``Adam`` for the rest;
  ``infer`` = one forward pass in inference mode (rnnlab ``predict_on_batch``, PyTorch ``no_grad``).
* Timing: after warm-up, rnnlab and PyTorch repetitions alternate (the order flips every repetition) so
  that contention on this shared machine hits both; medians of wall time are reported, and process CPU
  time is recorded too (CPU/wall well below the thread count means the process was descheduled).
  ``speed-up`` = PyTorch median time / rnnlab median time (> 1: rnnlab faster); ``CPU speed-up`` the same
  with the medians of process CPU time (less sensitive to descheduling on a loaded machine; at 2 threads it
  compares total work, not latency).
* GFLOP/s: the GEMM work of the model (forward: 2*T*B*(D+U)*kU per direction + the head; a training step
  counts 3x the forward GEMMs, the usual convention) divided by rnnlab's median time, against the GEMM peak
  NumPy reaches in the same process (best of several float32 1024^3 / 2048x512x2048 products).
* Memory (training rows): ``step MB`` = the peak of NumPy allocations during one rnnlab training step
  (``tracemalloc``, which NumPy reports to), started after the weights, gradients and optimizer slots
  exist and after dropping the layers' cached activations and workspaces, so it counts everything the
  step allocates (activations, buffers, temporaries); ``BPTT MB`` = the activations a hand-written BPTT
  must keep (inputs x_t, states h_t (and c_t), gate activations: T*B*(D + U + 4U + U) for LSTM,
  T*B*(D + U + 3U + U) for GRU, T*B*(D + U) for SimpleRNN; x counted once for Bidirectional);
  ``torch MB`` = the bytes of the distinct tensors PyTorch's autograd saves for backward in the same step
  (``torch.autograd.graph.saved_tensors_hooks``; PyTorch's transient peak is not visible to tracemalloc).

Thread counts are set per worker process through OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS
(before NumPy loads) and ``torch.set_num_threads`` (threadpoolctl is not a dependency).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CELLS = ("SimpleRNN", "LSTM", "GRU", "BiLSTM")
CONFIGS = {
    # name: batch, length, vocab (None: float input), input width, units, head outputs, loss
    "imdb": dict(B=32, T=80, V=20000, D=128, U=128, out=1, loss="bce"),
    "char": dict(B=128, T=40, V=None, D=60, U=128, out=60, loss="cce"),
    "large": dict(B=128, T=80, V=None, D=512, U=512, out=1, loss="mse"),
    "latency": dict(B=1, T=80, V=20000, D=128, U=128, out=1, loss="bce"),
}
QUICK_CONFIGS = {
    "imdb": dict(B=4, T=6, V=50, D=8, U=8, out=1, loss="bce"),
    "char": dict(B=4, T=5, V=None, D=7, U=8, out=7, loss="cce"),
    "large": dict(B=4, T=6, V=None, D=16, U=16, out=1, loss="mse"),
    "latency": dict(B=1, T=6, V=50, D=8, U=8, out=1, loss="bce"),
}
GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3, "BiLSTM": 4}
# floats per (step, sequence) a hand-written BPTT must keep besides x_t: h_t, gate activations, c_t / q_h
KEEP = {"SimpleRNN": lambda U: U, "LSTM": lambda U: U + 4 * U + U, "GRU": lambda U: U + 3 * U + U,
        "BiLSTM": lambda U: 2 * (U + 4 * U + U)}

# ----------------------------------------------------------------------------- worker side
def blas_description():
    """OpenBLAS version/config and the kernel core in use (best effort, via ctypes on the loaded library)."""
    import ctypes

    libs = []
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as f:
            for line in f:
                path = line.split()[-1] if line.split() else ""
                if "openblas" in path.lower() and ".so" in path and path not in libs:
                    libs.append(path)
    except OSError:
        pass
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                try:
                    core_fn = getattr(lib, f"{prefix}_get_corename{suffix}")
                    config_fn = getattr(lib, f"{prefix}_get_config{suffix}")
                except AttributeError:
                    continue
                core_fn.restype = config_fn.restype = ctypes.c_char_p
                env = os.environ.get("OPENBLAS_CORETYPE")
                how = f"OPENBLAS_CORETYPE={env}" if env else "OpenBLAS's own CPU detection"
                return f"{config_fn().decode().strip()}; kernels {core_fn().decode()} ({how})"
    return "BLAS not identified"


def _bidirectional_available():
    try:
        from rnnlab.layers import Bidirectional  # noqa: F401
    except ImportError:
        return False
    return True


def _gemm_peak(np, quick):
    """Best float32 GFLOP/s of np.matmul on large products (the 'peak' the suite compares against)."""
    best = 0.0
    shapes = [(256, 256, 256)] if quick else [(1024, 1024, 1024), (2048, 512, 2048)]
    for m, k, n in shapes:
        a = np.random.default_rng(0).standard_normal((m, k)).astype(np.float32)
        b = np.random.default_rng(1).standard_normal((k, n)).astype(np.float32)
        c = np.empty((m, n), np.float32)
        np.matmul(a, b, out=c)
        for _ in range(2 if quick else 8):
            t0 = time.perf_counter()
            np.matmul(a, b, out=c)
            best = max(best, 2.0 * m * k * n / (time.perf_counter() - t0) / 1e9)
    return best


def _step_gemm_rate(np, B, U, W, quick):
    """GFLOP/s of the per-step recurrent product (B, U) @ (U, W), the operation BPTT is made of."""
    a = np.ones((B, U), np.float32)
    b = np.ones((U, W), np.float32)
    c = np.empty((B, W), np.float32)
    n = 20 if quick else max(50, int(2e8 / (2 * B * U * W)))
    np.matmul(a, b, out=c)
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            np.matmul(a, b, out=c)
        best = max(best, 2.0 * B * U * W * n / (time.perf_counter() - t0) / 1e9)
    return best


def _flops(cell, cfg, mode):
    B, T, D, U, out = cfg["B"], cfg["T"], cfg["D"], cfg["U"], cfg["out"]
    W = GATES[cell] * U
    dirs = 2 if cell == "BiLSTM" else 1
    fwd = dirs * 2.0 * T * B * (D + U) * W + 2.0 * B * dirs * U * out
    return fwd if mode == "infer" else 3.0 * fwd


def _make_data(np, cfg):
    rng = np.random.default_rng(0)
    B, T = cfg["B"], cfg["T"]
    if cfg["V"] is not None:
        x = rng.integers(1, cfg["V"], size=(B, T))
    elif cfg["loss"] == "cce":
        x = np.eye(cfg["D"], dtype=np.float32)[rng.integers(0, cfg["D"], size=(B, T))]
    else:
        x = rng.standard_normal((B, T, cfg["D"])).astype(np.float32)
    if cfg["loss"] == "bce":
        y = rng.integers(0, 2, size=(B, 1)).astype(np.float32)
    elif cfg["loss"] == "cce":
        y = np.eye(cfg["out"], dtype=np.float32)[rng.integers(0, cfg["out"], size=B)]
    else:
        y = rng.standard_normal((B, cfg["out"])).astype(np.float32)
    return x, y


def _rnnlab_model(cell, cfg, lazy):
    import rnnlab
    from rnnlab import layers as L

    U = cfg["U"]
    rec = {"SimpleRNN": lambda: L.SimpleRNN(U), "LSTM": lambda: L.LSTM(U), "GRU": lambda: L.GRU(U),
           "BiLSTM": lambda: L.Bidirectional(L.LSTM(U))}[cell]
    if cfg["V"] is not None:
        stack = [L.Embedding(cfg["V"], cfg["D"], input_length=cfg["T"]), rec()]
    else:
        stack = [rec()]
        stack[0].batch_input_shape = (None, cfg["T"], cfg["D"])
    act, loss = {"bce": ("sigmoid", "binary_crossentropy"), "cce": ("softmax", "categorical_crossentropy"),
                 "mse": ("linear", "mse")}[cfg["loss"]]
    model = rnnlab.Sequential(stack + [L.Dense(cfg["out"], activation=act)])
    model.compile(rnnlab.optimizers.Adam(1e-3, lazy=lazy), loss)
    return model


def _torch_model(torch, cell, cfg, lazy):
    nn = torch.nn
    D, U, V = cfg["D"], cfg["U"], cfg["V"]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(V, D, sparse=lazy) if V is not None else None
            kind = {"SimpleRNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU, "BiLSTM": nn.LSTM}[cell]
            self.rnn = kind(D, U, batch_first=True, bidirectional=(cell == "BiLSTM"))
            self.head = nn.Linear(U * (2 if cell == "BiLSTM" else 1), cfg["out"])

        def forward(self, x):
            if self.emb is not None:
                x = self.emb(x)
            _, h = self.rnn(x)
            h = h[0] if isinstance(h, tuple) else h
            last = torch.cat([h[-2], h[-1]], dim=1) if cell == "BiLSTM" else h[-1]
            return self.head(last)

    net = Net()
    if lazy:
        opts = [torch.optim.SparseAdam(list(net.emb.parameters()), lr=1e-3),
                torch.optim.Adam([p for n, p in net.named_parameters() if not n.startswith("emb.")], lr=1e-3)]
    else:
        opts = [torch.optim.Adam(net.parameters(), lr=1e-3)]
    lossf = {"bce": nn.BCEWithLogitsLoss(), "cce": nn.CrossEntropyLoss(), "mse": nn.MSELoss()}[cfg["loss"]]
    return net, opts, lossf


def _clear_caches(model):
    """Drop every layer's cached activations and time-loop workspace (so a step allocates them anew)."""
    todo = list(model.layers)
    while todo:
        layer = todo.pop()
        for attr in ("_cache", "_ws"):
            if hasattr(layer, attr):
                setattr(layer, attr, None)
        if hasattr(layer, "release_workspaces"):   # the recurrent layers keep a small pool of workspaces
            layer.release_workspaces()
        for attr in ("forward_layer", "backward_layer", "layer"):
            sub = getattr(layer, attr, None)
            if sub is not None and hasattr(sub, "forward"):
                todo.append(sub)


def _row(np, torch, cell, cfg_name, cfg, mode, args, peak):
    import tracemalloc

    lazy = mode == "train-lazy"
    x, y = _make_data(np, cfg)
    model = _rnnlab_model(cell, cfg, lazy)
    net, opts, lossf = _torch_model(torch, cell, cfg, lazy)
    tx = torch.from_numpy(x)
    if cfg["loss"] == "cce":
        ty = torch.from_numpy(y.argmax(axis=1))
    else:
        ty = torch.from_numpy(y)

    if mode == "infer":
        def rn():
            model.predict_on_batch(x)

        def th():
            with torch.no_grad():
                net(tx)
    else:
        def rn():
            model.train_on_batch(x, y)

        def th():
            for o in opts:
                o.zero_grad(set_to_none=False)
            lossf(net(tx), ty).backward()
            for o in opts:
                o.step()

    # warm-up, then choose the number of repetitions from the measured step time
    rn()
    th()
    t0 = time.perf_counter()
    if not args.quick:
        rn()
        th()
    one = time.perf_counter() - t0
    reps = 1 if args.quick else int(min(args.max_repeats, max(args.min_repeats, args.budget / max(one, 1e-6))))
    wall = {"rn": [], "th": []}
    cpu = {"rn": [], "th": []}
    for r in range(reps):
        order = (("rn", rn), ("th", th)) if r % 2 == 0 else (("th", th), ("rn", rn))
        for key, fn in order:
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            w1, c1 = time.perf_counter(), time.process_time()
            wall[key].append(w1 - w0)
            cpu[key].append(c1 - c0)
    med = {k: float(np.median(v)) for k, v in wall.items()}
    cpu_med = {k: float(np.median(v)) for k, v in cpu.items()}
    flops = _flops(cell, cfg, mode)
    row = dict(cell=cell, config=cfg_name, mode=mode, rnnlab_ms=med["rn"] * 1e3, torch_ms=med["th"] * 1e3,
               speedup=med["th"] / med["rn"], rnnlab_cpu_wall=cpu_med["rn"] / med["rn"],
               torch_cpu_wall=cpu_med["th"] / med["th"], cpu_speedup=cpu_med["th"] / cpu_med["rn"],
               gflops=flops / med["rn"] / 1e9,
               torch_gflops=flops / med["th"] / 1e9, peak_pct=100.0 * flops / med["rn"] / 1e9 / peak,
               step_mb=None, bptt_mb=None, torch_saved_mb=None, reps=reps)

    if mode != "infer":
        # rnnlab: tracemalloc peak of one step, caches dropped first (weights/grads/slots already exist)
        _clear_caches(model)
        tracemalloc.start()
        tracemalloc.reset_peak()
        rn()
        row["step_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        B, T, D, U = cfg["B"], cfg["T"], cfg["D"], cfg["U"]
        row["bptt_mb"] = 4.0 * T * B * (D + KEEP[cell](U)) / 2**20
        # torch: distinct storages autograd saves for backward in one step
        seen = {}

        def pack(t):
            try:
                st = t.untyped_storage()
                seen[(st.data_ptr(), st.nbytes())] = st.nbytes()
            except Exception:  # pragma: no cover - exotic tensors (mkldnn) have no storage
                seen[id(t)] = t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            th()
        row["torch_saved_mb"] = sum(seen.values()) / 2**20
    return row


def worker(args):
    """Runs in a subprocess whose thread-count variables were set before NumPy was imported."""
    import numpy as np
    import torch

    import rnnlab

    torch.set_num_threads(args.threads)
    rnnlab.set_random_seed(0)
    torch.manual_seed(0)
    configs = QUICK_CONFIGS if args.quick else CONFIGS
    cells = [c for c in args.cells.split(",") if c]
    if "BiLSTM" in cells and not _bidirectional_available():
        cells.remove("BiLSTM")
    info = dict(threads=args.threads, quick=args.quick, numpy=np.__version__, torch=torch.__version__,
                blas=blas_description(), loadavg_start=list(os.getloadavg()), cpu_start=time.process_time(),
                wall_start=time.time())
    peak = _gemm_peak(np, args.quick)
    info["gemm_peak_gflops"] = peak
    step_rates = {}
    rows = []
    skipped = []
    t_start = time.time()
    for cfg_name in [c for c in args.configs.split(",") if c]:
        cfg = configs[cfg_name]
        for cell in cells:
            if args.max_minutes and time.time() - t_start > 60 * args.max_minutes:
                skipped.append(f"{cell}/{cfg_name}")
                continue
            W = GATES[cell] * cfg["U"]
            step_rates[f"{cfg_name}:{cfg['B']}x{cfg['U']}x{W}"] = _step_gemm_rate(np, cfg["B"], cfg["U"], W, args.quick)
            modes = ["train"] + (["train-lazy"] if cfg["V"] is not None else []) + ["infer"]
            for mode in modes:
                row = _row(np, torch, cell, cfg_name, cfg, mode, args, peak)
                rows.append(row)
                print(f"# {row['cell']:<9} {row['config']:<8} {row['mode']:<10} rnnlab {row['rnnlab_ms']:9.2f} ms  "
                      f"torch {row['torch_ms']:9.2f} ms  speed-up {row['speedup']:5.2f}", file=sys.stderr, flush=True)
    info["step_gemm_gflops"] = step_rates
    info["skipped"] = skipped
    info["gemm_peak_gflops_end"] = _gemm_peak(np, args.quick)
    # % of peak against the higher of the two peak measurements (contention lowers either one)
    peak = max(peak, info["gemm_peak_gflops_end"])
    for row in rows:
        row["peak_pct"] = 100.0 * row["gflops"] / peak
    info["loadavg_end"] = list(os.getloadavg())
    info["cpu_s"] = time.process_time() - info.pop("cpu_start")
    info["wall_s"] = time.time() - info.pop("wall_start")
    return dict(info=info, rows=rows)


# ----------------------------------------------------------------------------- parent side
def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def format_table(result):
    """Markdown table of one worker's result (one thread count)."""
    info = result["info"]
    lines = [f"### {info['threads']} thread(s)", "",
             f"GEMM peak (NumPy float32, this run): {info['gemm_peak_gflops']:.0f} GFLOP/s at the start, "
             f"{info['gemm_peak_gflops_end']:.0f} at the end (% of peak uses the higher); BLAS: {info['blas']}; "
             f"load average {info['loadavg_start'][0]:.2f} at the start, {info['loadavg_end'][0]:.2f} at the end; "
             f"worker wall {info['wall_s']:.0f} s, CPU {info['cpu_s']:.0f} s.", "",
             "| cell | config | mode | rnnlab ms | torch ms | speed-up | CPU speed-up | rnnlab CPU/wall | GFLOP/s "
             "| % of peak | step MB | BPTT MB | torch saved MB | reps |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['cell']} | {r['config']} | {r['mode']} | {r['rnnlab_ms']:.2f} | {r['torch_ms']:.2f} | "
                     f"{r['speedup']:.2f} | {r['cpu_speedup']:.2f} | {r['rnnlab_cpu_wall']:.2f} | {r['gflops']:.1f} | "
                     f"{r['peak_pct']:.0f} | "
                     f"{_fmt(r['step_mb'], '.1f')} | {_fmt(r['bptt_mb'], '.1f')} | {_fmt(r['torch_saved_mb'], '.1f')} | "
                     f"{r['reps']} |")
    rates = ", ".join(f"{k} {v:.0f}" for k, v in info["step_gemm_gflops"].items())
    lines += ["", f"Per-step recurrent GEMM (B, U) @ (U, kU) in NumPy, GFLOP/s: {rates}.", ""]
    if info.get("skipped"):
        lines += [f"Not measured (the worker's --max-minutes ran out): {', '.join(info['skipped'])}.", ""]
    return "\n".join(lines)


def summarize(result):
    """The issue's targets, checked against one worker's rows (a few lines of text)."""
    rows, info = result["rows"], result["info"]
    get = {(r["cell"], r["config"], r["mode"]): r for r in rows}
    out = [f"Targets at {info['threads']} thread(s):"]
    train = [r for r in rows if r["mode"] == "train"]
    if train:
        worst = min(train, key=lambda r: r["speedup"])
        below = [f"{r['cell']}/{r['config']} {r['speedup']:.2f}" for r in train if r["speedup"] < 1.0]
        out.append(f"  training >= 1.0x PyTorch in every config: {len(train) - len(below)}/{len(train)} rows met; "
                   f"worst {worst['cell']}/{worst['config']} {worst['speedup']:.2f}x"
                   + (f"; below: {', '.join(below)}" if below else ""))
    r = get.get(("LSTM", "imdb", "train"))
    if r:
        out.append(f"  IMDB-LSTM training >= 1.5x: {r['speedup']:.2f}x ({'met' if r['speedup'] >= 1.5 else 'not met'})")
    lat = [r for r in rows if r["config"] == "latency" and r["mode"] in ("train", "infer")]
    if lat:
        out.append("  batch-1 latency >= 2x: " + ", ".join(
            f"{r['cell']} {r['mode']} {r['speedup']:.2f}x" for r in lat))
    big = [r for r in rows if r["config"] == "large"]
    if big:
        out.append("  large configs >= 75% of GEMM peak: " + ", ".join(
            f"{r['cell']} {r['mode']} {r['peak_pct']:.0f}%" for r in big))
    mem = [r for r in rows if r["step_mb"] is not None and r["mode"] == "train"]
    if mem:
        ratios = [r["step_mb"] / r["bptt_mb"] for r in mem]
        out.append(f"  training-step memory / BPTT activations: {min(ratios):.2f}x .. {max(ratios):.2f}x "
                   f"(PyTorch saved tensors / BPTT activations: "
                   f"{min(r['torch_saved_mb'] / r['bptt_mb'] for r in mem):.2f}x .. "
                   f"{max(r['torch_saved_mb'] / r['bptt_mb'] for r in mem):.2f}x)")
    return "\n".join(out) + "\n"


def run_worker_process(threads, args):
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    if args.openblas_coretype:
        env["OPENBLAS_CORETYPE"] = args.openblas_coretype
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--threads", str(threads),
           "--cells", args.cells, "--configs", args.configs, "--budget", str(args.budget),
           "--min-repeats", str(args.min_repeats), "--max-repeats", str(args.max_repeats)]
    if args.max_minutes:
        cmd += ["--max-minutes", str(args.max_minutes)]
    if args.quick:
        cmd.append("--quick")
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker ({threads} thread(s)) failed with exit code {proc.returncode}")
    return json.loads(proc.stdout)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--cells", default=",".join(CELLS), help=f"comma-separated subset of {','.join(CELLS)}")
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {','.join(CONFIGS)}")
    p.add_argument("--quick", action="store_true", help="tiny configs, one repetition (a smoke test)")
    p.add_argument("--budget", type=float, default=2.0, help="seconds of measured time per side and row (default 2)")
    p.add_argument("--min-repeats", type=int, default=5)
    p.add_argument("--max-repeats", type=int, default=60)
    p.add_argument("--max-minutes", type=float, default=None,
                   help="per worker: once this much time has passed, the remaining cell/config pairs are skipped "
                        "and listed as not measured (for a heavily loaded machine)")
    p.add_argument("--openblas-coretype", default=None,
                   help="set OPENBLAS_CORETYPE in the workers (default: the inherited environment)")
    p.add_argument("--json", help="also write the raw results to this file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in args.cells.split(","):
        if name and name not in CELLS:
            p.error(f"--cells: unknown cell {name!r}; choose from {', '.join(CELLS)}")
    for name in args.configs.split(","):
        if name and name not in CONFIGS:
            p.error(f"--configs: unknown config {name!r}; choose from {', '.join(CONFIGS)}")
    if args.worker:
        json.dump(worker(argparse.Namespace(**{**vars(args), "threads": int(args.threads)})), sys.stdout)
        return 0
    try:
        thread_counts = [int(t) for t in args.threads.split(",") if t]
    except ValueError:
        p.error(f"--threads must be comma-separated integers, got {args.threads!r}")
    if not thread_counts or min(thread_counts) < 1:
        p.error(f"--threads must be positive integers, got {args.threads!r}")
    print(f"rnnlab vs PyTorch benchmark suite{' (quick smoke test, tiny configs)' if args.quick else ''}; "
          f"load average at start: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    results = []
    for n in thread_counts:
        res = run_worker_process(n, args)
        results.append(res)
        print(format_table(res), flush=True)
        print(summarize(res), flush=True)
    print("speed-up = PyTorch median time / rnnlab median time (> 1: rnnlab faster); GFLOP/s and % of peak are "
          "rnnlab's; step MB: tracemalloc peak of one rnnlab training step; BPTT MB: activations BPTT must keep; "
          "torch saved MB: tensors PyTorch's autograd saves (see the module docstring).")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
