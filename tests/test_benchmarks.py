"""The benchmark suite's quick mode runs end to end and produces a well-formed table (timings are not asserted)."""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "run_all.py")
CELLS = ("SimpleRNN", "LSTM", "GRU", "BiLSTM")
CONFIGS = ("imdb", "char", "large", "latency")
WITH_EMBEDDING = ("imdb", "latency")


def _run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def _expected_rows():
    rows = set()
    for cfg in CONFIGS:
        for cell in CELLS:
            rows |= {(cell, cfg, "train"), (cell, cfg, "infer")}
            if cfg in WITH_EMBEDDING:
                rows.add((cell, cfg, "train-lazy"))
    return rows


def test_quick_mode_table_and_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = _run("--quick", "--threads", "1", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    assert len(results) == 1
    info, rows = results[0]["info"], results[0]["rows"]
    assert info["threads"] == 1 and info["quick"] is True
    assert info["gemm_peak_gflops"] > 0 and info["gemm_peak_gflops_end"] > 0
    assert len(info["loadavg_start"]) == 3 and len(info["loadavg_end"]) == 3
    assert info["step_gemm_gflops"] and all(v > 0 for v in info["step_gemm_gflops"].values())

    # every cell x config x mode exactly once
    keys = [(r["cell"], r["config"], r["mode"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert set(keys) == _expected_rows()
    for r in rows:
        assert r["rnnlab_ms"] > 0 and r["torch_ms"] > 0 and r["reps"] == 1
        assert r["speedup"] == pytest.approx(r["torch_ms"] / r["rnnlab_ms"])
        assert r["cpu_speedup"] > 0
        peak = max(info["gemm_peak_gflops"], info["gemm_peak_gflops_end"])
        assert r["gflops"] > 0 and r["peak_pct"] == pytest.approx(100 * r["gflops"] / peak)
        if r["mode"] == "infer":
            assert r["step_mb"] is None and r["bptt_mb"] is None and r["torch_saved_mb"] is None
        else:
            # a training step allocates at least the activations it keeps; torch saves some tensors
            assert r["step_mb"] > 0 and r["bptt_mb"] > 0 and r["torch_saved_mb"] > 0
            assert r["step_mb"] >= r["bptt_mb"] * 0.5

    # the printed markdown table: header, separator, one line per row
    lines = proc.stdout.splitlines()
    assert any(line.startswith("load average") or "load average at start" in line for line in lines)
    header = [i for i, line in enumerate(lines) if line.startswith("| cell | config | mode |")]
    assert len(header) == 1
    table = []
    for line in lines[header[0] + 2:]:
        if not line.startswith("|"):
            break
        table.append([c.strip() for c in line.strip("|").split("|")])
    ncols = len(lines[header[0]].strip("|").split("|"))
    assert len(table) == len(rows) and all(len(c) == ncols for c in table)
    assert {(c[0], c[1], c[2]) for c in table} == _expected_rows()
    assert "1 thread(s)" in proc.stdout
    # the target summary names each target
    for phrase in ("Targets at 1 thread(s):", "IMDB-LSTM training >= 1.5x", "batch-1 latency >= 2x",
                   "large configs >= 75% of GEMM peak", "training-step memory / BPTT activations"):
        assert phrase in proc.stdout


def test_bad_arguments_are_rejected():
    proc = _run("--quick", "--cells", "LSTM,Transformer")
    assert proc.returncode == 2 and "unknown cell 'Transformer'" in proc.stderr
    proc = _run("--quick", "--configs", "huge")
    assert proc.returncode == 2 and "unknown config 'huge'" in proc.stderr
    proc = _run("--quick", "--threads", "0")
    assert proc.returncode == 2 and "--threads" in proc.stderr
