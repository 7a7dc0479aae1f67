"""benchmarks/fair.py (each library in its own process) runs end to end; timings are not asserted."""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "fair.py")


def _run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_quick_rows_for_every_side(tmp_path):
    out = tmp_path / "fair.json"
    # this checkout doubles as the "baseline" tree: the harness must time it in a process of its own
    proc = _run("--quick", "--threads", "1", "--cells", "LSTM,GRU", "--rows", "imdb-train,imdb128-infer",
                "--baseline", ROOT, "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())
    assert {(r["cell"], r["row"]) for r in rows} == {("LSTM", "imdb-train"), ("LSTM", "imdb128-infer"),
                                                     ("GRU", "imdb-train"), ("GRU", "imdb128-infer")}
    for r in rows:
        assert r["threads"] == 1
        for side in ("torch", "rnnlab", "baseline"):
            lo, hi = r[f"{side}_spread"]
            assert 0 < lo <= r[f"{side}_ms"] * 1.0000001 and r[f"{side}_ms"] <= hi * 1.0000001
        assert r["rnnlab_ratio"] == pytest.approx(r["torch_ms"] / r["rnnlab_ms"])
    assert "| LSTM | imdb-train |" in proc.stdout


def test_bad_arguments_are_refused_without_traceback(tmp_path):
    for args, needle in [(("--rows", "imdb-fly"), "--rows: unknown row 'imdb-fly'"),
                         (("--cells", "Transformer"), "--cells: unknown cell 'Transformer'"),
                         (("--threads", "0"), "--threads must be positive"),
                         (("--baseline", str(tmp_path)), "holds no rnnlab package")]:
        proc = _run(*args)
        assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr
