"""Smoke test of benchmarks/esn_vs_reservoirpy.py on a small reservoir (reservoirpy rows run only if installed)."""
import importlib.util
import json
import os

BENCH = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "esn_vs_reservoirpy.py")


def test_benchmark_small(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("esn_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "b.json"
    res = mod.main(["--units", "100", "--seeds", "3", "--skip-rnn", "--out", str(out)])
    ours = res["rnnlab ESN"]  # medians over 3 reservoirs (a single small one can diverge in closed loop)
    assert ours["one_step_nrmse"] < 0.05 and ours["multi_step_nrmse"] < 0.5
    if "reservoirpy, rnnlab's W/W_in/bias" in res:  # same matrices -> same errors
        same = res["reservoirpy, rnnlab's W/W_in/bias"]
        assert abs(same["one_step_nrmse"] - ours["one_step_nrmse"]) < 1e-6 * ours["one_step_nrmse"] + 1e-12
    assert json.loads(out.read_text())["units"] == 100
    assert "| rnnlab ESN |" in capsys.readouterr().out
