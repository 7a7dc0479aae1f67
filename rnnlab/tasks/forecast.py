"""``rnnlab train forecast``: direct multi-step time-series forecasting from a CSV column (or a generated series).

::

    rnnlab train forecast --csv FILE --column C [--date-column D] --window W --horizon H
                          [--model rnn|esn] [--cell lstm|gru|rnn] [--units 32] [--epochs 50] ...
    rnnlab train forecast --generate mackey-glass|sines --length 2000 --window 50 --horizon 10

What it does, in order:

1. Load the series (:func:`rnnlab.datasets.timeseries.load_csv_column`; ``--missing interpolate|drop`` for gaps).
2. Split the *targets* chronologically into train | valid | test (``--valid-fraction``, ``--test-fraction``);
   each window's input is the ``W`` values before its target start ``t``, its target the next ``H`` values.
3. Fit the scaler (``--scaler standard|minmax``) on the training part only; scale everything with it.
4. ``--model rnn``: ``Input((W, 1)) -> [cell(units)] x layers -> Dense(H)`` (direct multi-step output: all ``H``
   values at once), MSE, early stopping on the validation loss (``--patience``) with the best weights kept.
   Training runs in ``Model.fit`` with the run callbacks of the other train commands
   (:class:`~rnnlab.tasks.runstate.TrainLoop`):
   ``OUT/checkpoint.npz`` after every epoch, ``--resume`` continuing exactly where an uninterrupted run would
   be, ``--max-minutes`` / ``--max-cpu-minutes`` stopping between batches.
   ``--model esn``: an :class:`~rnnlab.models.EchoStateNetwork` fitted one step ahead (teacher forcing) on the
   training part, then forecasting ``H`` steps in closed loop after a warm-up on each window.
5. Report RMSE / MAE / NRMSE (original units; NRMSE = RMSE / std of the truth) on the validation and test
   windows, next to the naive (last value) and seasonal-naive (value one period earlier, ``--period``; estimated
   from the training part's autocorrelation when not given) baselines on the same windows.
6. Save the model (``OUT/model.npz``, with a ``__task__`` entry naming the task), the scaler (in
   ``OUT/forecast.json``) and, for ``--model rnn``, the per-epoch losses (``OUT/history.json``, for
   ``rnnlab plot OUT``), draw ``OUT/forecast.png`` (forecast vs
   truth on the test part; needs matplotlib, skipped with a note when absent or with ``--no-plot``), and print
   one JSON metrics line (also ``OUT/metrics.json``).
"""
from __future__ import annotations

import os
import sys

from .common import Timer, add_common_train_arguments, atomic_write_json, finish_run, output_dir
from .runstate import SequentialTaskAdapter

TASK = "forecast"


def add_train_arguments(parser):
    d = parser.add_argument_group("data")
    src = d.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", help="CSV file with a header row")
    src.add_argument("--generate", choices=["mackey-glass", "sines"], help="use a generated series instead")
    d.add_argument("--column", default=None, help="value column (header name or 0-based index); required with --csv")
    d.add_argument("--date-column", default=None, help="date/label column (used for the plot's axis labels)")
    d.add_argument("--encoding", default="utf-8", help="text encoding of --csv (default utf-8)")
    d.add_argument("--missing", choices=["error", "interpolate", "drop"], default="error",
                   help="gaps (empty/NA cells): error (default), linear interpolation, or drop the rows")
    d.add_argument("--length", type=int, default=2000, help="with --generate: number of values")
    d.add_argument("--window", type=int, required=True, help="input window length W")
    d.add_argument("--horizon", type=int, default=1, help="forecast horizon H (values predicted at once)")
    d.add_argument("--valid-fraction", type=float, default=0.15)
    d.add_argument("--test-fraction", type=float, default=0.15)
    d.add_argument("--log", action="store_true",
                   help="model log(values) (positive series with growing seasonal swings); errors stay in original units")
    d.add_argument("--scaler", choices=["standard", "minmax"], default="standard")
    d.add_argument("--period", type=int, default=None, help="season length for the seasonal-naive baseline")
    m = parser.add_argument_group("model")
    m.add_argument("--model", choices=["rnn", "esn"], default="rnn")
    m.add_argument("--residual", action="store_true",
                   help="rnn model: predict the change from the window's last value (helps trending series)")
    m.add_argument("--patience", type=int, default=10, help="early stopping patience (epochs, rnn model)")
    m.add_argument("--esn-units", type=int, default=300)
    m.add_argument("--spectral-radius", type=float, default=0.9)
    m.add_argument("--leak-rate", type=float, default=0.3)
    m.add_argument("--input-scaling", type=float, default=0.5)
    m.add_argument("--density", type=float, default=0.1)
    m.add_argument("--ridge", type=float, default=1e-6)
    m.add_argument("--washout", type=int, default=50)
    m.add_argument("--plot", default=None, help="PNG path for forecast vs truth (default OUT/forecast.png)")
    m.add_argument("--no-plot", action="store_true")
    g = add_common_train_arguments(parser, epochs=50, batch_size=32, units=32, embedding_dim=0, lr=3e-3)
    from .runstate import add_budget_arguments

    add_budget_arguments(g)


def estimate_period(x, max_lag=None):
    """Season length from the training part: remove a linear trend, take the autocorrelation up to ``max_lag``
    and return the lag of its highest value after its first negative one (1 when it never turns negative)."""
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    max_lag = min(max_lag or n // 2, n // 2)
    if max_lag < 2:
        return 1
    t = np.arange(n)
    d = x - np.polyval(np.polyfit(t, x, 1), t)
    den = float(d @ d)
    if den == 0.0:
        return 1
    acf = np.array([float(d[:-k] @ d[k:]) / den for k in range(1, max_lag + 1)])
    neg = np.flatnonzero(acf < 0)
    if neg.size == 0:
        return 1
    return int(np.argmax(acf[neg[0]:])) + int(neg[0]) + 1


def _load_series(args):
    from ..datasets.timeseries import load_csv_column, mackey_glass, sum_of_sines

    if args.csv:
        if args.column is None:
            raise ValueError("--column is required with --csv (a header name or a 0-based index)")
        values, dates = load_csv_column(args.csv, args.column, date_column=args.date_column, missing=args.missing,
                                       encoding=args.encoding)
        return values, dates, os.path.splitext(os.path.basename(args.csv))[0]
    if args.length < 10:
        raise ValueError(f"--length must be >= 10, got {args.length}")
    if args.generate == "mackey-glass":
        return mackey_glass(args.length, discard=200), None, "mackey-glass"
    return sum_of_sines(args.length, periods=(24.0, 60.0), noise=0.1, seed=args.seed), None, "sines"


class _LogScaler:
    """``z = scaler(log x)``; inverse ``x = exp(scaler^-1(z))``."""

    def __init__(self, inner):
        self.inner = inner

    def transform(self, x):
        import numpy as np
        return self.inner.transform(np.log(x))

    def inverse_transform(self, z):
        import numpy as np
        return np.exp(self.inner.inverse_transform(z))

    def get_config(self):
        return {"log": True, **self.inner.get_config()}


def _build_rnn(args, window, horizon):
    from .. import layers, optimizers
    from ..models import Input, Sequential

    cell = {"lstm": layers.LSTM, "gru": layers.GRU, "rnn": layers.SimpleRNN}[args.cell]
    # fixed layer names: the optimizer state of a checkpoint is keyed by weight path, so names must not depend
    # on what else was built in the process
    stack = [Input((window, 1))]
    for i in range(args.layers):
        rnn = cell(args.units, return_sequences=i < args.layers - 1, dropout=args.dropout, name=f"rnn_{i}")
        stack.append(layers.Bidirectional(rnn, name=f"bidirectional_{i}") if args.bidirectional else rnn)
    stack.append(layers.Dense(horizon, name="output"))
    model = Sequential(stack, name="forecaster")
    opt = {"adam": optimizers.Adam, "rmsprop": optimizers.RMSprop, "sgd": optimizers.SGD,
           "adagrad": optimizers.Adagrad}.get(args.optimizer.lower())
    if opt is None:
        raise ValueError(f"--optimizer must be one of adam, rmsprop, sgd, adagrad; got {args.optimizer!r}")
    model.compile(optimizer=opt(args.lr, clipnorm=args.clipnorm) if args.clipnorm else opt(args.lr), loss="mse")
    return model


class _Adapter(SequentialTaskAdapter):
    """What :class:`~rnnlab.tasks.runstate.TrainLoop` needs from the forecasting task (``--model rnn``): the data
    for ``Model.fit`` (the training windows, shuffled from rnnlab's generator, so a checkpoint's RNG state makes
    ``--resume`` repeat what an uninterrupted run does), the validation MSE (scaled units, the early-stopping
    value), and model files with a ``__task__`` entry (+ the optimizer state in ``checkpoint.npz``)."""

    task = TASK

    def __init__(self, model, doc, train, valid, args):
        self.model, self.doc, self.args = model, doc, args
        self.x, self.y = train
        self.valid = valid

    def fit_arguments(self):
        """What :class:`~rnnlab.tasks.runstate.TrainLoop` passes to ``Model.fit``: the windows, shuffled every epoch
        from rnnlab's generator (the checkpoint's RNG state repeats the order on ``--resume``)."""
        return {"x": self.x, "y": self.y, "batch_size": self.args.batch_size, "shuffle": True}

    def evaluate(self):
        if self.valid is None:
            return {}
        return {"loss": float(self.model.evaluate(self.valid[0], self.valid[1], batch_size=256))}


def _settings(args):
    """The settings a resumed run must share with the checkpoint (data, split, scaling, model, optimizer)."""
    keys = ("csv", "column", "generate", "length", "missing", "encoding", "window", "horizon", "valid_fraction",
            "test_fraction", "log", "scaler", "model", "residual", "cell", "units", "layers", "bidirectional",
            "dropout", "optimizer", "lr", "clipnorm", "seed", "batch_size")
    return {k: getattr(args, k) for k in keys}


def train(args):
    import numpy as np

    from .. import backend
    from ..datasets.timeseries import Scaler, split_windows
    from ..forecast_metrics import all_errors, naive_forecast, seasonal_naive_forecast
    from ..models import EchoStateNetwork

    for name in ("window", "horizon", "epochs", "batch_size", "units", "layers"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.resume and args.model != "rnn":
        raise ValueError("--resume continues an --model rnn run; an ESN is fitted in one pass (run it again)")
    backend.set_random_seed(args.seed)
    series, dates, name = _load_series(args)
    parts = split_windows(series, args.window, args.horizon, args.valid_fraction, args.test_fraction)
    a, b = parts["bounds"]
    if args.log:
        if np.any(series <= 0):
            raise ValueError(f"--log needs positive values; the series has {int(np.sum(series <= 0))} value(s) <= 0")
        scaler = _LogScaler(Scaler(args.scaler).fit(np.log(series[:a])))
    else:
        scaler = Scaler(args.scaler).fit(series[:a])
    z = scaler.transform(series)
    period = args.period or estimate_period(series[:a], max_lag=max(2, min(a // 2, 400)))
    if period < 1:
        raise ValueError(f"--period must be >= 1, got {period}")
    out = output_dir(args.out, f"forecast-{name}")
    Xtr, Ytr, ttr = parts["train"]
    Xva, Yva, tva = parts["valid"]
    Xte, Yte, tte = parts["test"]
    zx = lambda X: scaler.transform(X)  # noqa: E731
    if args.verbose:
        print(f"{name}: {len(series)} values; windows train/valid/test {len(Xtr)}/{len(Xva)}/{len(Xte)} "
              f"(W={args.window}, H={args.horizon}); seasonal period {period}", flush=True)
    timer = Timer(args.max_minutes)
    import time as _time
    cpu0 = _time.process_time()
    if args.model == "rnn":
        from .runstate import TrainLoop, load_sequential_task_file

        from .common import check_model_memory    # the parameter memory, before building a layer
        check_model_memory(args, "forecast", embedding_dim=0, input_dim=1, outputs=args.horizon)
        model = _build_rnn(args, args.window, args.horizon)
        target = (lambda X, Y: scaler.transform(Y) - zx(X[:, -1, :])) if args.residual else \
            (lambda X, Y: scaler.transform(Y))
        val = (zx(Xva), target(Xva, Yva)) if len(Xva) else None
        adapter = _Adapter(model, {"task": TASK}, (zx(Xtr), target(Xtr, Ytr)), val, args)
        loop = TrainLoop(out, adapter, monitor="loss", mode="min", max_minutes=args.max_minutes,
                         max_cpu_minutes=args.max_cpu_minutes, verbose=args.verbose, config=_settings(args),
                         patience=args.patience)
        if args.resume:
            loop.resume()
        run = loop.fit(args.epochs)
        model, _ = load_sequential_task_file(loop.model_path, TASK)   # the best epoch's weights

        def predict(X, starts=None):
            P = model.predict(zx(X), batch_size=256)
            if args.residual:
                P = P + zx(X[:, -1, :])
            return scaler.inverse_transform(P)

        model_path = loop.model_path
        model.save(model_path)          # a plain model file again (the task entry is added below)
        epochs_run = len(run["history"])
    else:
        esn = EchoStateNetwork(args.esn_units, spectral_radius=args.spectral_radius, leak_rate=args.leak_rate,
                               input_scaling=args.input_scaling, density=args.density, ridge=args.ridge,
                               washout=min(args.washout, max(0, a - 2)), seed=args.seed)
        esn.fit(z[: a - 1], z[1:a])

        def predict(X, starts=None):  # closed loop from the state after all values before each target start
            return scaler.inverse_transform(esn.forecast(z, starts, args.horizon))

        model_path = esn.save(os.path.join(out, "model.npz"))
        epochs_run = 1
    train_secs, train_cpu = timer.elapsed, _time.process_time() - cpu0
    if args.model == "rnn":             # the epoch loop's totals (a resumed run adds the earlier part)
        train_secs, train_cpu = run["train_seconds"], run["train_cpu_seconds"]
    info = {"model": args.model, "window": args.window, "horizon": args.horizon, "scaler": scaler.get_config(),
            "period": period, "bounds": [a, b], "source": name}
    atomic_write_json(os.path.join(out, "forecast.json"), info)
    from .runstate import add_task_entry

    add_task_entry(model_path, {"task": "forecast", **info})   # other commands name the task of this file
    metrics = {"model": args.model, "window": args.window, "horizon": args.horizon, "period": period,
               "train_windows": len(Xtr), "valid_windows": len(Xva), "test_windows": len(Xte)}
    for part, X, Y, t in (("valid", Xva, Yva, tva), ("test", Xte, Yte, tte)):
        if len(X) == 0:
            continue
        P = predict(X, t)
        metrics.update(all_errors(Y, P, f"{part}_"))
        metrics.update(all_errors(Y, naive_forecast(series, t, args.horizon), f"{part}_naive_"))
        if t.min() >= period:
            metrics.update(all_errors(Y, seasonal_naive_forecast(series, t, args.horizon, period),
                                      f"{part}_seasonal_naive_"))
        if part == "test":
            test_pred = P
    metrics.update(epochs_run=epochs_run, train_seconds=round(train_secs, 2), train_cpu_seconds=round(train_cpu, 2),
                   model_file=model_path)
    if args.model == "rnn":
        metrics.update(best_epoch=run["best_epoch"], stop_reason=run.get("stop_reason"))
    if not args.no_plot and len(Xte):
        path = args.plot or os.path.join(out, "forecast.png")
        try:
            plot_forecast(series, tte, test_pred, args.horizon, path, dates=dates, bounds=(a, b),
                          title=f"{name}: {args.model} W={args.window} H={args.horizon}")
            metrics["plot"] = path
        except ImportError as e:
            print(f"rnnlab: note: no plot ({e})", file=sys.stderr)
    return finish_run(out, metrics)


def plot_forecast(series, starts, preds, horizon, path, dates=None, bounds=None, title=None):
    """Draw the series and forecast paths (every ``horizon``-th test window, so they tile the test part)."""
    import numpy as np

    from ..plotting import _pyplot, save_figure

    plt = _pyplot()
    x = np.asarray(series)
    fig, ax = plt.subplots(figsize=(10, 4))
    lo = max(0, int(starts[0]) - 3 * horizon - 20) if bounds is None else max(0, bounds[0] - 20)
    idx = np.arange(lo, len(x))
    ax.plot(idx, x[lo:], color="black", lw=1.2, label="truth")
    if bounds is not None:
        ax.axvspan(bounds[1], len(x) - 1, color="0.92", label="test part")
    shown = False
    for i in range(0, len(starts), max(1, horizon)):
        t = int(starts[i])
        ax.plot(np.arange(t, t + horizon) if horizon > 1 else [t], preds[i], color="tab:red", lw=1.5,
                marker="." if horizon == 1 else None, label=None if shown else "forecast")
        shown = True
    if dates is not None:
        ticks = idx[:: max(1, len(idx) // 8)]
        ax.set_xticks(ticks)
        ax.set_xticklabels([dates[i] for i in ticks], rotation=30, ha="right", fontsize=8)
    ax.set_title(title or "forecast vs truth")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
