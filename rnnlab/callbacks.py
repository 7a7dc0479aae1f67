"""Callbacks with Keras' hook names.

``fit`` calls, in order: ``set_model``/``set_params``, ``on_train_begin``, then per epoch
``on_epoch_begin(epoch)``, per batch ``on_train_batch_begin(batch)`` / ``on_train_batch_end(batch, logs)``
(``logs`` = running means of loss and metrics over the epoch so far, as Keras 3), then
``on_epoch_end(epoch, logs)`` with the epoch's loss, metrics and ``val_*`` entries, and finally
``on_train_end``. Epochs are 0-based in hooks (printed 1-based). Setting ``model.stop_training = True``
in a hook ends training after the current batch (batch hooks) or epoch (epoch hooks).

Provided: :class:`History` (always installed by ``fit``), :class:`EarlyStopping`, :class:`ModelCheckpoint`,
:class:`TerminateOnNaN`, :class:`ReduceLROnPlateau`, :class:`LearningRateScheduler`, :class:`LambdaCallback`,
:class:`CSVLogger`, :class:`TimeBudget` (stop cleanly between batches after a wall-clock or CPU budget) and
:class:`BackupAndRestore` (resume an interrupted ``fit`` exactly: weights, optimizer slots, epoch, the random
generator and the callbacks' state).

Callback state. A callback whose decisions depend on past epochs (:class:`EarlyStopping`,
:class:`ReduceLROnPlateau`, :class:`ModelCheckpoint` with ``save_best_only``) has ``get_state()`` -> a JSON-able
dict and ``set_state(state)``; :class:`BackupAndRestore` saves and restores it, so a resumed run stops, decays
and saves exactly when an uninterrupted one would.
"""
from __future__ import annotations

import csv
import math
import os
import sys
import time
import warnings

import numpy as np


class Callback:
    """Base class: override the hooks you need. ``self.model`` and ``self.params`` are set by ``fit``."""

    model = None

    def __init__(self):
        self.params: dict = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = dict(params)

    # training
    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs)

    # Keras 2 names, called by the default on_train_batch_* above
    def on_batch_begin(self, batch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...

    # evaluation / prediction (accepted for Keras compatibility)
    def on_test_begin(self, logs=None): ...
    def on_test_end(self, logs=None): ...
    def on_test_batch_begin(self, batch, logs=None): ...
    def on_test_batch_end(self, batch, logs=None): ...
    def on_predict_begin(self, logs=None): ...
    def on_predict_end(self, logs=None): ...
    def on_predict_batch_begin(self, batch, logs=None): ...
    def on_predict_batch_end(self, batch, logs=None): ...


class History(Callback):
    """Records the logs of every epoch: ``history.history["loss"]``, ``history.epoch`` (0-based).

    ``stop_reason`` is ``None`` after a normal run, or the message of fit's NaN/inf guard.
    """

    def __init__(self):
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []
        self.stop_reason: str | None = None

    def on_train_begin(self, logs=None):
        self.epoch = []
        self.history = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


def _resolve_mode(mode, monitor, who):
    """``"min"`` or ``"max"``; ``"auto"`` picks max for accuracy-like names and min otherwise."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{who}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        name = monitor.lower()
        return "max" if ("acc" in name or name.endswith("auc") or "fmeasure" in name) else "min"
    return mode


def _num_out(v):
    """A float for JSON (inf/nan as strings), or None."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else repr(v)


def _num_in(v):
    return None if v is None else float(v)


def _monitor_value(logs, monitor, who):
    value = (logs or {}).get(monitor)
    if value is None:
        warnings.warn(f"{who}: the monitored metric {monitor!r} is not in the logs (available: "
                      f"{sorted(logs or {})}); skipping", RuntimeWarning, stacklevel=3)
        return None
    return float(value)


class EarlyStopping(Callback):
    """Stop training when ``monitor`` stops improving (Keras 3 semantics).

    An epoch improves when ``value < best - min_delta`` (mode ``min``) or ``value > best + min_delta``
    (mode ``max``). ``wait`` counts epochs since the last improvement; when it reaches ``patience``
    (and the epoch is not the first) training stops. With ``baseline``, ``wait`` restarts only for
    values that also beat the baseline. Epochs before ``start_from_epoch`` are ignored.
    ``restore_best_weights=True`` loads the weights of the best epoch at the end of training
    (also when training ran to the last epoch without stopping early, as Keras 3 does).
    Attributes after training: ``stopped_epoch`` (0 if not stopped), ``best``, ``best_epoch``.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be a non-negative int, got {patience!r}")
        self.monitor = str(monitor)
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = _resolve_mode(mode, self.monitor, "EarlyStopping")
        self.baseline = None if baseline is None else float(baseline)
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_weights = None
        self.best_epoch = 0

    def _better(self, value, reference):
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        value = _monitor_value(logs, self.monitor, "EarlyStopping")
        if value is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.get_weights(), epoch
        self.wait += 1
        if self._better(value, self.best):
            self.best, self.best_epoch = value, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._better(value, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def get_state(self):
        """``wait``, ``best``, ``best_epoch``, ``stopped_epoch`` and (``restore_best_weights``) the best weights."""
        st = {"wait": self.wait, "best": _num_out(self.best), "best_epoch": self.best_epoch,
              "stopped_epoch": self.stopped_epoch}
        if self.restore_best_weights and self.best_weights is not None:
            st["best_weights"] = [np.array(w) for w in self.best_weights]   # arrays: stored as npz members
        return st

    def set_state(self, state):
        self.wait, self.best_epoch = int(state["wait"]), int(state["best_epoch"])
        self.best, self.stopped_epoch = _num_in(state["best"]), int(state.get("stopped_epoch", 0))
        if "best_weights" in state:
            self.best_weights = [np.array(w) for w in state["best_weights"]]

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model (or only its weights) at the end of every epoch.

    ``filepath`` is formatted with ``epoch`` (1-based) and the epoch's logs, e.g.
    ``"ckpt-{epoch:02d}-{val_loss:.3f}.npz"``. ``save_best_only`` writes only when ``monitor``
    improves on the best value so far (and on ``initial_value_threshold`` when given).
    Files are written atomically through ``model.save``/``save_weights``, so the name decides the format
    (:mod:`rnnlab.models.keras_format`): ``.keras`` a Keras 3 archive, ``.weights.h5`` Keras 3 weights
    (``save_weights_only=True``), ``.h5``/``.hdf5`` refused at the first save, anything else rnnlab's npz.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto", save_freq="epoch", initial_value_threshold=None):
        super().__init__()
        if save_freq != "epoch":
            raise ValueError(f"ModelCheckpoint: only save_freq='epoch' is supported, got {save_freq!r}")
        self.filepath = os.fspath(filepath)
        self.monitor = str(monitor)
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.mode = _resolve_mode(mode, self.monitor, "ModelCheckpoint")
        self.initial_value_threshold = initial_value_threshold
        self.best = None if initial_value_threshold is None else float(initial_value_threshold)

    def get_state(self):
        return {"best": _num_out(self.best)}

    def set_state(self, state):
        self.best = _num_in(state["best"])

    def _format(self, epoch, logs):
        try:
            return self.filepath.format(epoch=epoch + 1, **logs)
        except KeyError as e:
            raise ValueError(f"ModelCheckpoint: filepath {self.filepath!r} refers to {e} which is not in the "
                             f"logs (available: epoch, {', '.join(sorted(logs))})") from None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self._format(epoch, logs)
        if self.save_best_only:
            value = _monitor_value(logs, self.monitor, "ModelCheckpoint")
            if value is None:
                return
            # a NaN/inf value never improves (as Keras, whose best starts at +-inf)
            improved = math.isfinite(value) and (self.best is None or
                                                 (value < self.best if self.mode == "min" else value > self.best))
            if not improved:
                if self.verbose:
                    prev = "inf" if self.best is None else f"{self.best:.5f}"
                    print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {prev}")
                return
            if self.verbose:
                prev = "inf" if self.best is None else f"{self.best:.5f}"
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {prev} to {value:.5f}, saving to {path}")
            self.best = value
        elif self.verbose:
            print(f"Epoch {epoch + 1}: saving model to {path}")
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        self._save(path, epoch, logs)

    def _save(self, path, epoch, logs):
        """Write the file (override to save in another format, e.g. a task file with its run state)."""
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class TerminateOnNaN(Callback):
    """Stop training when a batch loss is NaN or inf, as Keras.

    ``fit`` already refuses any update whose loss or gradient is not finite and stops by itself;
    this callback is the Keras spelling of the same intent (it also catches a non-finite running loss).
    """

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            print(f"Batch {batch}: Invalid loss, terminating training", file=sys.stderr)
            self.model.stop_training = True


class ReduceLROnPlateau(Callback):
    """Multiply the optimizer's learning rate by ``factor`` when ``monitor`` has not improved by
    ``min_delta`` for ``patience`` epochs; then wait ``cooldown`` epochs; never go below ``min_lr``.
    Adds ``learning_rate`` to the epoch logs (so it lands in ``history``), as Keras 3."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        super().__init__()
        if not 0.0 < float(factor) < 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor!r}")
        self.monitor, self.factor, self.patience, self.verbose = str(monitor), float(factor), int(patience), verbose
        self.mode = _resolve_mode(mode, self.monitor, "ReduceLROnPlateau")
        self.min_delta, self.cooldown, self.min_lr = float(min_delta), int(cooldown), float(min_lr)
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.cooldown_counter = 0

    def _better(self, value):
        return value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta

    def get_state(self):
        return {"best": _num_out(self.best), "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def set_state(self, state):
        self.best, self.wait = _num_in(state["best"]), int(state["wait"])
        self.cooldown_counter = int(state["cooldown_counter"])

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        opt = self.model.optimizer
        logs["learning_rate"] = float(opt.learning_rate)
        value = _monitor_value(logs, self.monitor, "ReduceLROnPlateau")
        if value is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._better(value):
            self.best, self.wait = value, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = float(opt.learning_rate)
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    opt.learning_rate = new
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new:.6g}.")
                    self.cooldown_counter, self.wait = self.cooldown, 0


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of every epoch to ``schedule(epoch, lr)`` (or
    ``schedule(epoch)`` for one-argument functions), as Keras. Adds ``learning_rate`` to the logs."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be callable, got {type(schedule).__name__}")
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        opt = self.model.optimizer
        lr = float(opt.learning_rate)
        try:
            new = self.schedule(epoch, lr)
        except TypeError:
            new = self.schedule(epoch)
        if hasattr(new, "item"):
            new = new.item()
        if isinstance(new, bool) or not isinstance(new, (int, float)) or not math.isfinite(new):
            raise ValueError(f"LearningRateScheduler: schedule({epoch}) must return a finite float, got {new!r}")
        opt.learning_rate = float(new)
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {float(new):.6g}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class LambdaCallback(Callback):
    """Callback from plain functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``."""

    _HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
              "on_train_batch_end")

    def __init__(self, **hooks):
        super().__init__()
        unknown = set(hooks) - set(self._HOOKS)
        if unknown:
            raise TypeError(f"LambdaCallback: unknown hook(s) {sorted(unknown)}; valid: {list(self._HOOKS)}")
        self._fns = dict(hooks)

    def _call(self, name, *args, logs=None):
        fn = self._fns.get(name)
        if fn is not None:
            fn(*args, logs if logs is not None else {})

    def on_train_begin(self, logs=None):
        self._call("on_train_begin", logs=logs)

    def on_train_end(self, logs=None):
        self._call("on_train_end", logs=logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call("on_epoch_begin", epoch, logs=logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call("on_epoch_end", epoch, logs=logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._call("on_train_batch_begin", batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        self._call("on_train_batch_end", batch, logs=logs)


class CSVLogger(Callback):
    """Write one CSV row per epoch: ``epoch`` (0-based, as Keras) then every log key in sorted order.

    The columns are fixed by the first epoch's logs, as in Keras 3: ``epoch`` followed by the sorted
    keys; when no ``val_*`` key is present then, a ``val_<key>`` column is added for every key (filled
    with ``NA`` while there is no validation). A key missing from a later epoch is written ``NA``; a
    list-valued entry as ``"[a, b]"``. ``append=True`` adds to an existing file (the header is written only
    when the file is empty or new); otherwise the file is overwritten at ``on_train_begin``. Each row is
    flushed at once, so the file can be watched while training runs.
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: separator must be a single character, got {separator!r}")
        self.sep = separator
        self.append = bool(append)
        self.keys = None
        self._file = None
        self._writer = None
        self._header = True

    def on_train_begin(self, logs=None):
        self._header = True
        if self.append and os.path.exists(self.filename):
            with open(self.filename, "r", encoding="utf-8") as f:
                self._header = not f.readline()
        if self._file is not None and not self._file.closed:
            self._file.close()
        folder = os.path.dirname(os.path.abspath(self.filename))
        try:
            os.makedirs(folder, exist_ok=True)
            self._file = open(self.filename, "a" if self.append else "w", encoding="utf-8", newline="")
        except OSError as e:
            raise ValueError(f"CSVLogger: cannot open {self.filename!r} for writing ({e.strerror or e})") from None
        self._writer = None
        self.keys = None

    @staticmethod
    def _cell(value):
        if isinstance(value, str):
            return value
        if isinstance(value, np.ndarray) and value.ndim == 0:
            return value.item()
        if isinstance(value, (list, tuple, np.ndarray)):
            return f'"[{", ".join(map(str, value))}]"'
        return value

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._file is None or self._file.closed:
            self.on_train_begin()
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys += [f"val_{k}" for k in self.keys]
        if self._writer is None:
            self._writer = csv.writer(self._file, delimiter=self.sep, lineterminator="\r\n")
            if self._header:
                self._writer.writerow(["epoch"] + self.keys)
        self._writer.writerow([epoch] + [self._cell(logs.get(k, "NA")) for k in self.keys])
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None and not self._file.closed:
            self._file.close()
        self._writer = None


class TimeBudget(Callback):
    """Stop training cleanly when a wall-clock and/or CPU-time budget is spent (checked between batches).

    ``max_minutes``: wall clock since ``on_train_begin``; ``max_cpu_minutes``: CPU time of the process (all its
    threads, ``time.process_time``), a load-independent budget on a shared machine. Either limit ends training.
    ``timer``: instead of the two limits, any object with ``expired()`` (asked once before every epoch and once
    before every batch).

    The check runs in ``on_epoch_begin`` and ``on_train_batch_begin``: ``fit`` then stops *before* that epoch
    or batch (no step is cut short). An epoch that ran some batches still ends with its validation and
    ``on_epoch_end`` (its logs over the batches run; ``fit``'s ``history.partial_epochs`` lists it, and
    ``self.stopped_during_epoch`` names it), so the best model of a partial epoch can still be kept.
    ``model.stop_reason`` says ``"time budget (...) reached during epoch k"`` / ``"... before epoch k"``
    (1-based), which :class:`BackupAndRestore` reads as an interruption to resume from (it keeps its backup).
    """

    def __init__(self, max_minutes=None, max_cpu_minutes=None, timer=None):
        super().__init__()
        for name, v in (("max_minutes", max_minutes), ("max_cpu_minutes", max_cpu_minutes)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0):
                raise ValueError(f"TimeBudget: {name} must be a number > 0 or None, got {v!r}")
        if timer is not None and not callable(getattr(timer, "expired", None)):
            raise TypeError(f"TimeBudget: timer must have an expired() method, got {type(timer).__name__}")
        self.max_minutes, self.max_cpu_minutes, self.timer = max_minutes, max_cpu_minutes, timer
        self.stopped_before_epoch = self.stopped_during_epoch = None
        self._epoch = 0
        self._ran = False

    def describe(self):
        """``"100 wall minutes"`` / ``"5 CPU minutes"`` / both."""
        parts = []
        if self.max_minutes is not None:
            parts.append(f"{self.max_minutes:g} wall minutes")
        if self.max_cpu_minutes is not None:
            parts.append(f"{self.max_cpu_minutes:g} CPU minutes")
        return " / ".join(parts) or "the timer's budget"

    def expired(self):
        if self.timer is not None:
            return bool(self.timer.expired())
        if self.max_minutes is not None and time.perf_counter() - self._t0 >= 60.0 * self.max_minutes:
            return True
        return self.max_cpu_minutes is not None and time.process_time() - self._c0 >= 60.0 * self.max_cpu_minutes

    def on_train_begin(self, logs=None):
        self._t0, self._c0 = time.perf_counter(), time.process_time()
        self.stopped_before_epoch = self.stopped_during_epoch = None

    def _stop(self, during):
        self.model.stop_training = True
        where = "during" if during else "before"
        if during:
            self.stopped_during_epoch = self._epoch
        else:
            self.stopped_before_epoch = self._epoch
        self.model.stop_reason = f"time budget ({self.describe()}) reached {where} epoch {self._epoch + 1}"

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._ran = epoch, False
        if self.expired():
            self._stop(False)

    def on_train_batch_begin(self, batch, logs=None):
        if self.model.stop_training:
            return
        if self.expired():
            self._stop(self._ran)
        self._ran = True


class BackupAndRestore(Callback):
    """Resume an interrupted ``fit`` where it stopped (Keras' ``BackupAndRestore``), exactly.

    After every epoch (``save_freq="epoch"``) it writes ``backup_dir/backup.npz`` atomically: the weights, the
    optimizer state (slots, iteration count, learning rate), the next epoch, the state of rnnlab's random
    generator (shuffles, dropout masks) and the state of every other callback that has ``get_state()``
    (:class:`EarlyStopping`, :class:`ReduceLROnPlateau`, :class:`ModelCheckpoint`). When ``fit`` starts and the
    file exists, all of it is restored (its ``on_train_begin`` runs after the other callbacks' so their state
    is not reset afterwards) and ``fit`` continues at the saved epoch: the remaining epochs draw the same
    shuffles and dropout masks, so the final weights equal an uninterrupted run's (same code, same data, same
    callbacks in the same order). A partial epoch (a :class:`TimeBudget` stop) is not backed up: it is
    repeated from its start.

    ``delete_checkpoint=True`` removes the backup when ``fit`` ends normally (not when ``model.stop_reason``
    says it was interrupted: a time budget or a non-finite loss), as Keras. The model must be built and
    compiled the same way (and from the same seed) in the run that resumes.
    """

    _restores_state = True   # fit runs its on_train_begin after the other callbacks'
    runs_on_every_rank = True  # under mpiexec every rank restores the backup (rank 0 alone writes it)

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        super().__init__()
        if save_freq != "epoch":
            raise ValueError(f"BackupAndRestore: only save_freq='epoch' is supported, got {save_freq!r}")
        if not isinstance(backup_dir, (str, os.PathLike)) or not os.fspath(backup_dir):
            raise ValueError(f"BackupAndRestore: backup_dir must be a folder path, got {backup_dir!r}")
        self.backup_dir = os.fspath(backup_dir)
        self.delete_checkpoint = bool(delete_checkpoint)
        self.path = os.path.join(self.backup_dir, "backup.npz")
        self.restored_epoch = None
        self._callbacks = []

    def set_callbacks(self, callbacks):
        """The other callbacks of this ``fit`` (set by ``fit``): their ``get_state()`` is backed up."""
        self._callbacks = [cb for cb in callbacks if cb is not self]

    def _stateful(self):
        return [(i, cb) for i, cb in enumerate(self._callbacks) if callable(getattr(cb, "get_state", None))]

    def on_train_begin(self, logs=None):
        self.restored_epoch = None
        if not os.path.exists(self.path):
            return
        from . import backend
        from .io import read_npz

        # the one checked reading path; a file without the __run__ document is a FileFormatError (a ValueError)
        arrays, docs = read_npz(self.path, "rnnlab BackupAndRestore backup", docs=("__run__",))
        run = docs["__run__"]
        n = sum(1 for k in arrays if k.startswith("w:"))
        self.model.set_weights([arrays[f"w:{i}"] for i in range(n)])
        opt = {k[4:]: v for k, v in arrays.items() if k.startswith("opt:")}
        paths = {p for p, _, _ in self.model.iter_weights()}
        unknown = sorted({k.rpartition("/")[0] for k in opt if "/" in k} - paths)
        if unknown:
            raise ValueError(f"BackupAndRestore: {self.path} holds optimizer slots of weights {unknown[:3]} that "
                             f"this model does not have (its weights: {sorted(paths)[:3]} ...); the optimizer "
                             "state is keyed by weight path: build the model with the same layer names")
        if opt:
            self.model.optimizer.set_state(opt)
        backend.rng().bit_generator.state = run["rng"]
        states = run.get("callbacks", {})
        for key, st in states.items():      # lists of arrays were stored as members cb:<key>:<name>:<j>
            for name, count in st.pop("__arrays__", {}).items():
                st[name] = [arrays[f"cb:{key}:{name}:{j}"] for j in range(count)]
        for i, cb in self._stateful():
            st = states.get(f"{i}:{type(cb).__name__}")
            if st is not None:
                cb.set_state(st)
        self.restored_epoch = int(run["epoch"])
        self.model.continue_from_epoch(self.restored_epoch)   # fit goes on from here

    def on_epoch_end(self, epoch, logs=None):
        if epoch in (getattr(self.model.history, "partial_epochs", None) or []) or \
                getattr(self.model, "stop_reason", None):
            return   # a partial epoch: the backup stays at the last complete one
        from . import backend, distributed
        from .io import write_npz

        if not distributed.is_root():
            return
        arrays = {f"w:{i}": w for i, w in enumerate(self.model.get_weights())}
        for k, v in self.model.optimizer.get_state().items():
            arrays[f"opt:{k}"] = np.asarray(v)
        states = {}
        for i, cb in self._stateful():
            key, st = f"{i}:{type(cb).__name__}", dict(cb.get_state())
            for name in [k for k, v in st.items() if isinstance(v, list) and v and
                         all(isinstance(a, np.ndarray) for a in v)]:
                for j, a in enumerate(st[name]):
                    arrays[f"cb:{key}:{name}:{j}"] = a
                st.setdefault("__arrays__", {})[name] = len(st.pop(name))
            states[key] = st
        run = {"epoch": epoch + 1, "rng": backend.rng().bit_generator.state, "callbacks": states}
        os.makedirs(self.backup_dir, exist_ok=True)
        # the one writer, atomically; allow_nan: a callback's state may hold inf (EarlyStopping's first best)
        write_npz(self.path, arrays, {"__run__": run}, allow_nan=True)

    def on_train_end(self, logs=None):
        from . import distributed

        if self.delete_checkpoint and not getattr(self.model, "stop_reason", None) and distributed.is_root() \
                and os.path.exists(self.path):
            os.unlink(self.path)


def __getattr__(name):  # only for names that do not exist: an AttributeError naming the rnnlab equivalent
    from ._compat import missing
    raise missing("rnnlab.callbacks", name)
