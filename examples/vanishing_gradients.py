"""Vanishing gradients: SimpleRNN vs LSTM on the same long-range task (the picture of why LSTM exists).

Task ("remember the first bit"): each sequence has T steps of 9 features, N(0, 1) noise in features
0-7 at every step and a +/-1 bit in feature 8 at step 0 only (0 afterwards); the label, read from
the last output, is that bit. Everything between step 0 and the end is distraction.

For each cell the script trains the same model (cell(16) -> Dense(1, sigmoid), Adam 0.01, batch 32)
and records the per-step gradient norms ``n_t = mean_b B ||dL/dh_t||`` on held-out data
(:func:`rnnlab.diagnostics.gradient_norms_over_time`) at initialisation and after training; for the
LSTM the whole state (h and c) is used (``state="all"``). Writes a two-panel plot and prints the
numbers::

    python examples/vanishing_gradients.py            # writes runs/vanishing_gradients.png
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import rnnlab
from rnnlab.diagnostics import gradient_norms_over_time
from rnnlab.layers import LSTM, Dense, SimpleRNN


def first_bit_data(n, T, seed, noise=8):
    """x (n, T, noise + 1): N(0, 1) noise in features 0..noise-1 at every step, the bit (+/-1) in the
    last feature at step 0 only; y (n, 1): the bit (0/1)."""
    r = np.random.default_rng(seed)
    x = np.zeros((n, T, noise + 1), "float32")
    x[:, :, :noise] = r.normal(size=(n, T, noise))
    bit = r.integers(0, 2, n)
    x[:, 0, noise] = bit * 2 - 1
    return x, bit.astype("float32")[:, None]


def run(cell, T, epochs, units, samples, seed, noise=8):
    x, y = first_bit_data(samples, T, seed + 1, noise)
    xv, yv = first_bit_data(256, T, seed + 2, noise)
    rnnlab.set_random_seed(seed)
    model = rnnlab.Sequential([rnnlab.Input((T, noise + 1)), cell(units), Dense(1, activation="sigmoid")])
    model.compile(rnnlab.optimizers.Adam(0.01), "binary_crossentropy", metrics=["accuracy"])
    name = model.layers[0].name
    state = "all" if cell is LSTM else "h"
    init = gradient_norms_over_time(model, xv, yv, state=state)[name]
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    acc = model.evaluate(xv, yv)[1]
    trained = gradient_norms_over_time(model, xv, yv, state=state)[name]
    return init, trained, acc, wall, cpu


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timesteps", type=int, default=60)
    p.add_argument("--noise", type=int, default=8, help="number of noise features")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--units", type=int, default=16)
    p.add_argument("--samples", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join("runs", "vanishing_gradients.png"))
    a = p.parse_args(argv)
    T = a.timesteps
    half = T // 2
    curves_init, curves_trained = {}, {}
    for cell in (SimpleRNN, LSTM):
        init, trained, acc, wall, cpu = run(cell, T, a.epochs, a.units, a.samples, a.seed, a.noise)
        label = f"{cell.__name__}({a.units})"
        curves_init[label], curves_trained[label] = init, trained
        print(f"{label}: held-out accuracy {acc:.3f} after {a.epochs} epochs ({wall:.1f} s wall, {cpu:.1f} s CPU)")
        for what, n in (("init", init), ("trained", trained)):
            print(f"  {what:8s} n_0 = {n[0]:.2e}  n_{half} = {n[half]:.2e}  n_{T - 1} = {n[T - 1]:.2e}  "
                  f"n_0/n_{half} = {n[0] / n[half]:.2e}  n_0/n_{T - 1} = {n[0] / n[T - 1]:.2e}")
    plt_path = a.out
    try:
        from rnnlab.plotting import _pyplot, save_figure

        plt = _pyplot("the plot")
    except ImportError as e:
        print(e)
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    for ax, curves, title in ((axes[0], curves_init, "at initialisation"),
                              (axes[1], curves_trained, f"after {a.epochs} epochs")):
        for label, v in curves.items():
            ax.plot(np.arange(T), v, label=label, lw=1.6)
        ax.set_yscale("log")
        ax.set_xlabel("time step t (the bit is at t = 0, the loss at t = T-1)")
        ax.set_ylabel("mean_b B ||dL/dh_t||  (LSTM: h and c)")
        ax.set_title(f"remember the first bit, T = {T}: {title}", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=9)
    fig.tight_layout()
    save_figure(fig, plt_path, dpi=120)
    print(f"wrote {plt_path}")



if __name__ == "__main__":
    main()
