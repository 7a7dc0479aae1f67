"""float32 GEMM throughput of the shapes the recurrent layers run: NumPy (per OpenBLAS kernel set), rnnlab's packed kernel, torch.matmul.

    .venv/bin/python benchmarks/gemm_shapes.py [--threads 1] [--coretypes inherit,SkylakeX]

Each OpenBLAS kernel set is measured in its own subprocess (OPENBLAS_CORETYPE is read once, when NumPy
loads OpenBLAS); ``inherit`` keeps the environment's setting. Shapes (M, K, N), C = A @ B:
the per-step recurrent products (B, U) @ (U, kU) and (B, kU) @ (kU, U), the all-steps input projection
(T*B, D) @ (D, kU) and weight gradient (D, T*B) @ (T*B, kU), and 1024^3 for the peak. Best of 5 runs.
Used in docs/benchmarks.md to show how much of the gap to PyTorch's oneDNN LSTM is the BLAS kernel.
The ``rnnlab packed`` column is rnnlab/_native/_gemm.c with B packed once outside the timing, as the layers
pack W_h once per call for all T steps (shown when the kernel is built and the CPU has AVX-512).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SHAPES = [(1, 128, 512), (32, 128, 512), (32, 512, 128), (128, 128, 512), (128, 512, 2048), (128, 2048, 512),
          (2560, 128, 512), (128, 2560, 512), (1024, 1024, 1024)]


def _measure(matmul, make, m, k, n):
    a, b, c = make((m, k)), make((k, n)), make((m, n))
    reps = max(3, int(2e8 / (2 * m * k * n)))
    matmul(a, b, c)
    best = 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            matmul(a, b, c)
        best = max(best, 2.0 * m * k * n * reps / (time.perf_counter() - t0) / 1e9)
    return best


def worker(torch_too):
    import numpy as np

    out = {"numpy": {}, "core": None}
    try:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from run_all import blas_description
        out["core"] = blas_description()
    except Exception as e:  # pragma: no cover
        out["core"] = f"unknown ({e})"
    make = lambda shp: np.random.default_rng(0).standard_normal(shp).astype(np.float32)  # noqa: E731
    for shp in SHAPES:
        out["numpy"][str(shp)] = _measure(lambda a, b, c: np.matmul(a, b, out=c), make, *shp)
    if torch_too:
        try:
            from rnnlab import _native
        except ImportError:  # pragma: no cover - run from a checkout without rnnlab installed
            _native = None
        if _native is not None and _native.gemm_available():
            def packed(shp):
                m, k, n = shp
                a, c = make((m, k)), make((m, n))
                pm = _native.PackedMatrix(k, n).pack(make((k, n)))
                return _measure(lambda *_: pm.matmul(a, c), make, m, k, n)
            out["packed"] = {str(shp): packed(shp) for shp in SHAPES}
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        tmake = lambda shp: torch.randn(shp)  # noqa: E731
        out["torch"] = {str(shp): _measure(lambda a, b, c: torch.matmul(a, b, out=c), tmake, *shp) for shp in SHAPES}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--coretypes", default="inherit,SkylakeX",
                   help="comma-separated OPENBLAS_CORETYPE values ('inherit' = the environment's)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--torch", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        json.dump(worker(args.torch), sys.stdout)
        return 0
    cols, packed_col = [], None
    for i, core in enumerate(c for c in args.coretypes.split(",") if c):
        env = dict(os.environ)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(args.threads)
        if core != "inherit":
            env["OPENBLAS_CORETYPE"] = core
        cmd = [sys.executable, os.path.abspath(__file__), "--worker"] + (["--torch"] if i == 0 else [])
        res = json.loads(subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=True).stdout)
        cols.append((f"NumPy [{res['core'].split('; ')[-1]}]", res["numpy"]))
        if "torch" in res:
            torch_col = ("torch.matmul", res["torch"])
            packed_col = ("rnnlab packed", res["packed"]) if "packed" in res else None
    if packed_col is not None:
        cols.append(packed_col)
    cols.append(torch_col)
    print(f"float32 GEMM GFLOP/s, {args.threads} thread(s), best of 5; load average {os.getloadavg()[0]:.2f}")
    print("| (M, K, N) | " + " | ".join(name for name, _ in cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for shp in SHAPES:
        print(f"| {shp} | " + " | ".join(f"{col[str(shp)]:.0f}" for _, col in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
