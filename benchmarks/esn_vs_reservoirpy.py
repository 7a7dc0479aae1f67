"""Mackey-Glass (tau = 17): rnnlab EchoStateNetwork vs reservoirpy (anchor) vs rnnlab LSTM and GRU.

    OPENBLAS_NUM_THREADS=1 python benchmarks/esn_vs_reservoirpy.py [--units 500] [--seeds 5] [--rnn-seconds 90]

Data: :func:`rnnlab.datasets.timeseries.mackey_glass` (RK4, h = 0.1, one sample per time unit, 500 transient samples
dropped), scaled to [-1, 1] with the training part's min/max. Steps 0..1999 train (one step ahead, teacher
forcing), steps 2000..2999 test.

* one-step NRMSE: predictions of x[t+1] from the true x[..t] for the 1,000 test steps;
* 84-step NRMSE: closed-loop (generative) forecasts of x[t..t+83] from the state after the true x[..t-1], fed
  their own outputs, for t = 2000, 2100, ..., 2900 (10 forecasts, 840 values, one NRMSE over all);
* NRMSE = RMSE / std(truth) (:mod:`rnnlab.forecast_metrics`), the same function for every model.

Models (same reservoir size for both ESN libraries; the hyper-parameters are the classic ones for this series):

* ``rnnlab ESN``: units=N, spectral_radius=1.25, leak_rate=0.3, input_scaling=1, density=0.1, ridge=1e-7,
  washout=100, readout on [1; state] (``readout_input=False``, as reservoirpy's default ``reservoir >> readout``);
* ``reservoirpy``: ``Reservoir(N, lr=0.3, sr=1.25, input_scaling=1, rc_connectivity=0.1) >> Ridge(1e-7)``,
  ``fit(warmup=100)``, its default input weights (Bernoulli, input_connectivity 0.1) and zero bias;
* ``reservoirpy, dense uniform W_in + bias``: reservoirpy's own ``uniform`` generator for W_in (connectivity 1)
  and the bias, i.e. configured like rnnlab's reservoir;
* ``reservoirpy (our W)``: reservoirpy given rnnlab's W, W_in and bias: the anchor that both compute the same thing;
* ``LSTM`` / ``GRU``: rnnlab ``Sequential([LSTM|GRU(32), Dense(1)])`` on windows of 50 values -> next value, Adam 3e-3,
  batch 64, as many epochs as fit in ``--rnn-seconds``; the 84-step forecast slides the window over its own outputs.

Timing: "init" = drawing the reservoir (and scaling it to the spectral radius); "train" = fit (running the
reservoir over the training data + the ridge solve, or the gradient epochs); wall-clock and process CPU seconds,
median over the seeds for the ESNs. Run on a shared machine: the load average is printed with the table.
Writes ``runs/esn_benchmark.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from rnnlab.datasets.timeseries import mackey_glass  # noqa: E402
from rnnlab.forecast_metrics import nrmse  # noqa: E402
from rnnlab.models import EchoStateNetwork  # noqa: E402

TRAIN, TEST, HORIZON = 2000, 1000, 84
STARTS = list(range(TRAIN, TRAIN + TEST, 100))


def series():
    x = mackey_glass(TRAIN + TEST + HORIZON + 1, discard=500)
    lo, hi = x[:TRAIN].min(), x[:TRAIN].max()
    return 2 * (x - lo) / (hi - lo) - 1


def _clock():
    return time.perf_counter(), time.process_time()


def _since(t):
    return time.perf_counter() - t[0], time.process_time() - t[1]


def truth_multi(x):
    return np.concatenate([x[t: t + HORIZON] for t in STARTS])


def run_rnnlab_esn(x, units, seed, readout_input=False):
    t0 = _clock()
    esn = EchoStateNetwork(units, spectral_radius=1.25, leak_rate=0.3, input_scaling=1.0, density=0.1, ridge=1e-7,
                           washout=100, seed=seed, readout_input=readout_input).build(1)
    init = _since(t0)
    t0 = _clock()
    esn.fit(x[: TRAIN - 1], x[1:TRAIN])
    train = _since(t0)
    one = esn.predict(x[: TRAIN + TEST - 1])[TRAIN - 1:]
    multi = esn.forecast(x, STARTS, HORIZON).ravel()
    return {"init": init, "train": train, "one_step": nrmse(x[TRAIN: TRAIN + TEST], one),
            "multi_step": nrmse(truth_multi(x), multi)}, esn


def run_reservoirpy(x, units, seed, weights_from=None, dense_input=False):
    from reservoirpy.nodes import Reservoir, Ridge

    t0 = _clock()
    if dense_input:  # reservoirpy's own generators, configured like rnnlab's reservoir (dense U(-1,1) W_in and bias)
        from reservoirpy.mat_gen import uniform
        res = Reservoir(units, lr=0.3, sr=1.25, input_scaling=1.0, rc_connectivity=0.1, input_connectivity=1.0,
                        Win=uniform, bias=uniform, seed=seed)
    elif weights_from is None:
        res = Reservoir(units, lr=0.3, sr=1.25, input_scaling=1.0, rc_connectivity=0.1, seed=seed)
    else:
        import scipy.sparse as sp
        res = Reservoir(units, lr=0.3, W=sp.csr_array(weights_from.W), Win=weights_from.W_in[:, 1:].copy(),
                        bias=weights_from.W_in[:, 0].copy())
    res.initialize(x[:1, None])
    init = _since(t0)
    ro = Ridge(ridge=1e-7)
    model = res >> ro
    t0 = _clock()
    model.fit(x[: TRAIN - 1, None], x[1:TRAIN, None], warmup=100)
    train = _since(t0)
    res.reset()
    states = res.run(x[: TRAIN + TEST - 1, None])
    one = ro.run(states[TRAIN - 1:])[:, 0]
    multi = []
    for t in STARTS:
        res.state = {"out": states[t - 1].copy()}
        y = ro.step(states[t - 1])
        for _ in range(HORIZON):
            multi.append(float(y[0]))
            y = ro.step(res.step(y))
    return {"init": init, "train": train, "one_step": nrmse(x[TRAIN: TRAIN + TEST], one),
            "multi_step": nrmse(truth_multi(x), np.array(multi))}


def run_rnn(x, cell, seconds, window=50, seed=0):
    import rnnlab
    from rnnlab import layers, optimizers
    from rnnlab.callbacks import Callback

    rnnlab.set_random_seed(seed)
    idx = np.arange(window, TRAIN)
    X = np.stack([x[i - window: i] for i in idx])[..., None].astype("float32")
    Y = x[idx][:, None].astype("float32")
    t0 = _clock()
    model = rnnlab.Sequential([rnnlab.Input((window, 1)), {"lstm": layers.LSTM, "gru": layers.GRU}[cell](32),
                               layers.Dense(1)])
    model.compile(optimizer=optimizers.Adam(3e-3), loss="mse")
    init = _since(t0)

    class Budget(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if time.perf_counter() - t0[0] > seconds:
                self.model.stop_training = True

    t0 = _clock()
    hist = model.fit(X, Y, batch_size=64, epochs=10_000, verbose=0, callbacks=[Budget()])
    train = _since(t0)
    ti = np.arange(TRAIN, TRAIN + TEST)
    Xt = np.stack([x[i - window: i] for i in ti])[..., None].astype("float32")
    one = model.predict(Xt, batch_size=500)[:, 0]
    win = np.stack([x[t - window: t] for t in STARTS])[..., None].astype("float32")
    outs = []
    for _ in range(HORIZON):
        y = model.predict(win, batch_size=len(STARTS))  # (10, 1)
        outs.append(y[:, 0])
        win = np.concatenate([win[:, 1:], y[:, None, :]], axis=1)
    multi = np.stack(outs, axis=1).ravel()
    return {"init": init, "train": train, "one_step": nrmse(x[TRAIN: TRAIN + TEST], one),
            "multi_step": nrmse(truth_multi(x), multi), "epochs": len(hist.history["loss"]),
            "final_loss": float(hist.history["loss"][-1])}


def _median(rows, key):
    return statistics.median(r[key] for r in rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=500)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rnn-seconds", type=float, default=90.0)
    ap.add_argument("--skip-rnn", action="store_true")
    ap.add_argument("--out", default=os.path.join("runs", "esn_benchmark.json"))
    args = ap.parse_args(argv)
    x = series()
    results = {}
    ours, ours_in, rpy, rpy_dense, rpy_same = [], [], [], [], []
    try:
        import reservoirpy  # noqa: F401
        have_rpy = True
    except ImportError:
        have_rpy = False
        print("reservoirpy is not installed: the anchor rows are skipped (pip install reservoirpy)", file=sys.stderr)
    for seed in range(args.seeds):  # alternate the libraries so that machine noise hits both alike
        r, esn = run_rnnlab_esn(x, args.units, seed)
        ours.append(r)
        ours_in.append(run_rnnlab_esn(x, args.units, seed, readout_input=True)[0])
        if have_rpy:
            rpy.append(run_reservoirpy(x, args.units, seed))
            rpy_dense.append(run_reservoirpy(x, args.units, seed, dense_input=True))
            rpy_same.append(run_reservoirpy(x, args.units, seed, weights_from=esn))
    groups = [("rnnlab ESN", ours), ("rnnlab ESN, readout sees input", ours_in)]
    if have_rpy:
        groups += [("reservoirpy (defaults: sparse W_in, no bias)", rpy),
                   ("reservoirpy, dense uniform W_in + bias", rpy_dense),
                   ("reservoirpy, rnnlab's W/W_in/bias", rpy_same)]
    for name, rows in groups:
        results[name] = {
            "one_step_nrmse": _median(rows, "one_step"), "multi_step_nrmse": _median(rows, "multi_step"),
            "one_step_nrmse_all": [r["one_step"] for r in rows], "multi_step_nrmse_all": [r["multi_step"] for r in rows],
            "init_wall": statistics.median(r["init"][0] for r in rows),
            "init_cpu": statistics.median(r["init"][1] for r in rows),
            "train_wall": statistics.median(r["train"][0] for r in rows),
            "train_cpu": statistics.median(r["train"][1] for r in rows), "runs": len(rows)}
    if not args.skip_rnn:
        for cell in ("lstm", "gru"):
            r = run_rnn(x, cell, args.rnn_seconds)
            results[cell.upper() + "(32)"] = {"one_step_nrmse": r["one_step"], "multi_step_nrmse": r["multi_step"],
                                              "init_wall": r["init"][0], "init_cpu": r["init"][1],
                                              "train_wall": r["train"][0], "train_cpu": r["train"][1], "runs": 1,
                                              "epochs": r["epochs"], "final_loss": r["final_loss"]}
    load = os.getloadavg()
    print(f"\nMackey-Glass tau=17, train {TRAIN} / test {TEST} steps, reservoir {args.units} units, "
          f"ESN medians over {args.seeds} seeds; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("| model | one-step NRMSE | 84-step NRMSE | init wall / CPU s | train wall / CPU s |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        extra = f" ({r['epochs']} epochs)" if "epochs" in r else ""
        print(f"| {name}{extra} | {r['one_step_nrmse']:.2e} | {r['multi_step_nrmse']:.2e} | "
              f"{r['init_wall']:.3f} / {r['init_cpu']:.3f} | {r['train_wall']:.3f} / {r['train_cpu']:.3f} |")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"units": args.units, "seeds": args.seeds, "load_average": load, "results": results}, f, indent=2)
    print(f"\nwritten to {args.out}")
    return results


if __name__ == "__main__":
    main()
