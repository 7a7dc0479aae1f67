"""Run state for the ``rnnlab train`` commands: task model files, checkpoints, resume and time budgets.

Task model files
    A task's model is one ``.npz`` of plain arrays (read with ``allow_pickle=False``) holding a JSON
    document under ``__task__`` (a uint8 array): ``{"task": "classify", ...}`` with whatever the task needs
    to use the model again (tokenizer, label names, settings). A Sequential-based task file is also a normal
    rnnlab model file (``rnnlab.load_model`` reads it and ignores ``__task__``). :func:`read_task_file` checks
    the task name, so a charlm model passed to ``predict`` is refused with a clear message.

Training
    Every command trains in :meth:`rnnlab.Model.fit` (the one engine, :mod:`rnnlab.models.engine`);
    :class:`TrainLoop` is the run around it: one ``fit`` call with the callbacks below.

Checkpoints and resume
    After every completed epoch :class:`TrainLoop` writes ``OUT/checkpoint.npz``: weights, optimizer state
    (slots, iteration count, learning rate) and, in ``__task__["run"]``, the epoch count, the history, the
    best validation value, the plateau counter and the **state of rnnlab's random generator** (which drives
    shuffling and dropout). ``--resume`` rebuilds the model exactly as a fresh run would (same seed, so the
    same random draws are used up by initialisation), then loads all of that; the remaining epochs then
    draw the same shuffles and dropout masks as an uninterrupted run, so the final weights are identical.
    The best model by the validation metric is written to ``OUT/model.npz`` whenever it improves. All writes
    are atomic (temporary file + rename), so a kill during a save leaves the previous file intact.

Time budget
    ``--max-minutes M`` (wall clock) and/or ``--max-cpu-minutes C`` (process CPU time, independent of the
    machine's load): a :class:`rnnlab.callbacks.TimeBudget` checks the clocks before each epoch and each
    batch (``fit`` stops before the batch, never inside a step); when the budget is spent
    the partial epoch is evaluated (its model kept only if it beats the best so far), marked ``partial``
    in the history, and training ends. The checkpoint stays at the last completed epoch, so ``--resume``
    repeats the interrupted epoch from its start.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings

import numpy as np

from .. import backend, io as _rio
from .common import Timer, atomic_write_json

TASK_KEY = "__task__"


# ---------------------------------------------------------------------------------------- files
def encode_json(doc) -> np.ndarray:
    """``doc`` as a uint8 JSON array (:func:`rnnlab.io.encode_json`; a run's history may hold NaN/inf)."""
    return _rio.encode_json(doc, allow_nan=True)


def write_npz(path, arrays: dict, docs=None) -> None:
    """Write ``arrays`` (name -> numeric array) and ``docs`` (name -> JSON document) as one ``.npz``, atomically,
    through the library's one writer :func:`rnnlab.io.write_npz` (run documents may hold NaN/inf losses)."""
    _rio.write_npz(path, arrays, docs, allow_nan=True)


def read_npz(path) -> dict:
    """All arrays of an ``.npz`` (no pickle), read through :class:`rnnlab.io.NpzArchive` (headers checked
    against the stored sizes and the read limit); :class:`rnnlab.io.FileFormatError` naming the file for
    anything unreadable."""
    return _rio.read_npz_arrays(path, "rnnlab model file")


def read_task_file(path, task=None, arrays=True):
    """``(doc, arrays)`` of a task model file; ``task`` (a name or a tuple of names) must match ``doc["task"]``.
    With ``arrays=False`` only the document is read (no other member is inflated) and ``arrays`` is None."""
    with _rio.NpzArchive(path, "rnnlab model file") as arc:
        path = arc.path
        if TASK_KEY in arc:
            if arc.dtype(TASK_KEY) != np.uint8 or len(arc.shape(TASK_KEY)) != 1:
                raise _rio.FileFormatError(f"{path}: corrupt '{TASK_KEY}' entry (dtype {arc.dtype(TASK_KEY)}, shape "
                                           f"{arc.shape(TASK_KEY)})", path=path, member=TASK_KEY)
            doc = arc.read_json(TASK_KEY)
        else:
            probe = dict.fromkeys(arc.names)
            if "__config__" in arc and arc.dtype("__config__") == np.uint8 and len(arc.shape("__config__")) == 1:
                probe["__config__"] = arc.read("__config__")
            doc = _legacy_task_doc(path, probe)
            if doc is None:
                raise _rio.FileFormatError(f"{path} is not a model written by an 'rnnlab train' command (no "
                                           f"'{TASK_KEY}' entry)", path=path)
        out = {k: arc.read(k) for k in arc.names if k != TASK_KEY} if arrays else None
    if not isinstance(doc, dict) or "task" not in doc:
        raise ValueError(f"{path}: corrupt '{TASK_KEY}' entry (expected a JSON object with a 'task' key)")
    wanted = (task,) if isinstance(task, str) else task
    if wanted is not None and doc["task"] not in wanted:
        raise ValueError(f"{path} is a '{doc['task']}' model (from 'rnnlab train {doc['task']}'); this command "
                         f"needs a {' or '.join(repr(w) for w in wanted)} model")
    return doc, out


def _legacy_task_doc(path, arrays):
    """The task of a file written before its command stored a ``__task__`` entry (``rnnlab train tag``:
    a tagger file; ``rnnlab train forecast``: an echo state network file, or a model file next to the run's
    ``forecast.json``), as ``{"task": ..., "legacy": True}``; None when it is none of these."""
    if "__tagger__" in arrays:
        return {"task": "tag", "legacy": True}
    if "__config__" in arrays:
        try:
            fmt = json.loads(arrays["__config__"].tobytes().decode("utf-8")).get("format")
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, RecursionError, ValueError):
            fmt = None
        if fmt == "rnnlab-esn":
            return {"task": "forecast", "legacy": True}
    if "__rnnlab__" in arrays and os.path.exists(os.path.join(os.path.dirname(os.path.abspath(path)),
                                                                "forecast.json")):
        return {"task": "forecast", "legacy": True}
    return None


def add_task_entry(path, doc, extra_arrays=None) -> None:
    """Add (or replace) the ``__task__`` document of an existing ``.npz`` model file, atomically, with
    ``extra_arrays`` (e.g. a checkpoint's optimizer state) beside it."""
    arrays = read_npz(path)
    arrays.pop(TASK_KEY, None)
    arrays.update(extra_arrays or {})
    write_npz(path, arrays, {TASK_KEY: doc})


def save_sequential_task_file(model, path, doc, include_optimizer=True) -> None:
    """Save a Sequential model as a normal rnnlab model file plus the ``__task__`` document, atomically, in one
    write (the model file's arrays and its ``__rnnlab__`` document, checked as strictly as ``save_model`` does)."""
    from ..models.saving import model_file_contents

    arrays, model_docs = model_file_contents(model, include_optimizer=include_optimizer)
    for key, model_doc in model_docs.items():      # strict JSON, as save_model writes it
        arrays[key] = _rio.encode_json(model_doc, f"{os.fspath(path)}: member '{key}'")
    write_npz(path, arrays, {TASK_KEY: doc})


def load_sequential_task_file(path, task):
    """``(model, doc)`` from :func:`save_sequential_task_file` (optimizer state restored)."""
    from ..models.saving import load_model

    doc, _ = read_task_file(path, task, arrays=False)
    return load_model(path), doc


class SequentialTaskAdapter:
    """What the :class:`TrainLoop` adapters of the tasks whose model is one Sequential share (``self.model``,
    ``self.doc``; subclasses set ``task``): the optimizer, and task files written with
    :func:`save_sequential_task_file` (the optimizer state only in ``checkpoint.npz``) and read back."""

    task = None

    @property
    def optimizer(self):
        return self.model.optimizer

    def save(self, path, run):
        save_sequential_task_file(self.model, path, {**self.doc, "run": run},
                                  include_optimizer=os.path.basename(path) == "checkpoint.npz")

    def load(self, path):
        self.model, doc = load_sequential_task_file(path, self.task)
        return doc.get("run")


# ------------------------------------------------------------------------------------------ RNG
def rng_state() -> dict:
    """The JSON-able state of rnnlab's random generator (shuffles, dropout masks)."""
    return backend.rng().bit_generator.state


def set_rng_state(state: dict) -> None:
    backend.rng().bit_generator.state = state


class preserved_rng:
    """``with preserved_rng(): ...`` leaves rnnlab's generator as it was (e.g. building an evaluation copy of
    a model draws initial weights; a resumed run must not see those draws at another point in time)."""

    def __enter__(self):
        self._state = rng_state()
        return self

    def __exit__(self, *exc):
        set_rng_state(self._state)
        return False


# --------------------------------------------------------------------------------------- budget
class BudgetTimer(Timer):
    """Wall-clock budget (``--max-minutes``) and/or process-CPU budget (``--max-cpu-minutes``).

    On a shared machine the wall clock measures the other users as much as the run; the CPU time of the
    process (``time.process_time``: all its threads) is the compute actually spent, so a CPU budget gives the
    same amount of training whatever the load. Either limit, when set, ends training.
    """

    def __init__(self, max_minutes=None, max_cpu_minutes=None):
        super().__init__(max_minutes)
        self.cpu_start = time.process_time()
        self.max_cpu_seconds = None if max_cpu_minutes is None else 60.0 * float(max_cpu_minutes)

    @property
    def cpu_elapsed(self):
        return time.process_time() - self.cpu_start

    def expired(self):
        return super().expired() or (self.max_cpu_seconds is not None and self.cpu_elapsed >= self.max_cpu_seconds)


def add_budget_arguments(parser):
    """``--max-cpu-minutes`` (the wall-clock ``--max-minutes`` is a common train flag)."""
    parser.add_argument("--max-cpu-minutes", type=float, default=None,
                        help="stop cleanly after this many minutes of process CPU time (a load-independent "
                             "budget on a shared machine), keeping the best checkpoint")


# ----------------------------------------------------------------------------------------- loop
class TrainLoop:
    """A task's run around :meth:`rnnlab.Model.fit`: evaluation, best model, checkpoints, resume, time budget,
    learning-rate decay on plateau, early stopping -- as the engine's callbacks (see :meth:`fit`).

    The task supplies an *adapter* with

    * ``model`` and ``fit_arguments() -> dict``: the data ``fit`` trains on (``x``/``y``/``batch_size``/
      ``shuffle``/``tbptt_steps``, or ``x`` a PyDataset such as :class:`EpochBatchSet`); optionally
      ``train_logs(logs) -> logs`` to add entries derived from the epoch's training logs (a perplexity);
    * or, instead, ``train_epoch(epoch, timer) -> dict``: one pass over the training data run by the adapter
      (stop between batches when ``timer.expired()``; put ``"partial": True`` in the result then); each such
      epoch is then one step of :class:`EpochSteps` in the same ``fit``;
    * ``evaluate() -> dict``: validation metrics (empty dict when there is no validation data);
    * ``save(path, run)``: write the model (+ optimizer state) with ``run`` (a JSON-able dict) in its file;
    * ``load(path) -> run``: restore model and optimizer from a checkpoint, return its ``run`` dict;
    * ``optimizer``: the optimizer (for the learning rate).

    ``monitor`` is a key of ``evaluate()``'s result (``mode`` "min" or "max"); without validation data the
    training metric of the same name is used. ``patience`` (early stopping, as Keras ``EarlyStopping``):
    training ends after that many completed epochs in a row without a better monitored value; the best
    model is in ``OUT/model.npz`` either way (the counter is part of the checkpoint, so ``--resume`` keeps it).
    """

    def __init__(self, out, adapter, *, monitor="loss", mode="min", max_minutes=None, verbose=1,
                 lr_decay=None, lr_patience=0, min_lr=0.0, config=None, max_cpu_minutes=None, patience=None):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if lr_decay is not None and not 0.0 < lr_decay < 1.0:
            raise ValueError(f"--lr-decay must be in (0, 1), got {lr_decay}")
        if max_minutes is not None and not max_minutes > 0:
            raise ValueError(f"--max-minutes must be > 0, got {max_minutes}")
        if max_cpu_minutes is not None and not max_cpu_minutes > 0:
            raise ValueError(f"--max-cpu-minutes must be > 0, got {max_cpu_minutes}")
        if patience is not None and int(patience) < 1:
            raise ValueError(f"--patience must be >= 1, got {patience}")
        self.max_cpu_minutes = max_cpu_minutes
        self.patience = None if patience is None else int(patience)
        self.out, self.adapter, self.monitor, self.mode = out, adapter, monitor, mode
        from .. import distributed as _dist
        self._root = _dist.is_root()  # under mpiexec rank 0 alone prints and writes (rnnlab.distributed)
        if not self._root:  # the task's own prints (summaries, samples) too: a command's stdout is rank 0's
            sys.stdout = open(os.devnull, "w")
        self.max_minutes, self.verbose = max_minutes, (verbose if self._root else 0)
        self.lr_decay, self.lr_patience, self.min_lr = lr_decay, int(lr_patience), float(min_lr)
        self.config = config or {}
        self.checkpoint_path = os.path.join(out, "checkpoint.npz")
        self.model_path = os.path.join(out, "model.npz")
        self.run = {"epoch": 0, "history": [], "best": None, "best_epoch": None, "wait": 0, "stale": 0,
                    "train_seconds": 0.0, "train_cpu_seconds": 0.0, "rng": None, "config": self.config}

    def _better(self, value, best):
        if best is None:
            return True
        return value < best if self.mode == "min" else value > best

    def resume(self):
        """Load ``OUT/checkpoint.npz`` (model, optimizer, run state, RNG). Temporary files a killed run left in
        ``OUT`` (``.tmp-<pid>-*`` of a process no longer running) are removed first."""
        if self._root:
            _rio.remove_stale_temp_files(self.out)
        if not os.path.exists(self.checkpoint_path):
            raise FileNotFoundError(f"--resume: no checkpoint at {self.checkpoint_path} (nothing to resume; "
                                    "run without --resume first, with the same --out)")
        run = self.adapter.load(self.checkpoint_path)
        if not isinstance(run, dict) or "epoch" not in run or "rng" not in run:
            raise ValueError(f"{self.checkpoint_path}: not a checkpoint written by this command (no run state)")
        old, new = run.get("config") or {}, self.config
        diff = {k: (old.get(k), new.get(k)) for k in set(old) | set(new) if old.get(k) != new.get(k)}
        if diff:
            raise ValueError(f"--resume: the checkpoint was trained with other settings {diff} "
                             "(file: was, now); resume with the same settings")
        self.run.update(run)
        set_rng_state(run["rng"])
        # a partial epoch (budget stop) may have saved a better model.npz after this checkpoint: keep its
        # value as the one to beat, so a later, worse epoch does not overwrite it
        if os.path.exists(self.model_path):
            try:
                kept = (read_task_file(self.model_path, arrays=False)[0].get("run") or {})
            except (ValueError, OSError):
                kept = {}
            if kept.get("best") is not None and self.run["best"] is not None and \
                    self._better(kept["best"], self.run["best"]):
                self.run["best"], self.run["best_epoch"] = kept["best"], kept.get("best_epoch")
        if self.verbose:
            print(f"resuming from {self.checkpoint_path} after epoch {run['epoch']}", flush=True)

    def fit(self, epochs):
        """Run epochs ``run["epoch"] .. epochs-1`` in :meth:`rnnlab.Model.fit` with this run's callbacks; returns
        the run dict (history, best, stop reason).

        The engine runs every batch (and the NaN policy); the run's bookkeeping is callbacks: a
        :class:`~rnnlab.callbacks.TimeBudget` on the run's clocks, the task's validation and history record,
        the best model (a ``save_best_only`` :class:`~rnnlab.callbacks.ModelCheckpoint` writing ``model.npz``),
        :class:`~rnnlab.callbacks.ReduceLROnPlateau` (``lr_decay``), :class:`~rnnlab.callbacks.EarlyStopping`
        (``patience``) and the checkpoint (``checkpoint.npz``, the run state beside the weights and optimizer).
        An adapter with ``fit_arguments()`` gives ``fit`` its data (arrays, a PyDataset, ``tbptt_steps``); an
        adapter with only ``train_epoch(epoch, timer)`` runs each epoch as one step of an engine
        (:class:`EpochSteps`), so both go through the same ``fit`` and the same callbacks."""
        from .. import callbacks as _cb
        from .. import distributed as _dist

        timer = BudgetTimer(self.max_minutes, self.max_cpu_minutes)
        self._cpu0 = time.process_time()
        self._start_secs, self._start_cpu = self.run["train_seconds"], self.run["train_cpu_seconds"]
        self._timer = timer
        engine_data = getattr(self.adapter, "fit_arguments", None)
        model = self.adapter.model if engine_data is not None else EpochSteps(self.adapter, timer)
        key = "_monitor"   # _RunRecord resolves it per epoch: validation value, else the training value
        budget = self.time_budget = _cb.TimeBudget(self.max_minutes, self.max_cpu_minutes, timer=timer)
        record = _RunRecord(self, budget, epochs, printing_epochs=engine_data is None)
        if engine_data is None:
            model.loop = self
        best = _BestModel(self, key)
        cbs = [budget, record, best]
        self._decay = self._stopper = None
        if self.lr_decay:
            self._decay = _cb.ReduceLROnPlateau(key, factor=self.lr_decay, patience=max(self.lr_patience, 1),
                                                mode=self.mode, min_delta=0.0, min_lr=self.min_lr)
            cbs.append(self._decay)
        if self.patience is not None:
            self._stopper = _cb.EarlyStopping(key, patience=self.patience, mode=self.mode)
            cbs.append(self._stopper)
        cbs += [_RunCheckpoint(self, record), _RunRestore(self, best)]
        kwargs = dict(engine_data()) if engine_data is not None else {"x": EpochSteps.Epochs()}
        verbose = self.verbose if engine_data is not None else 0
        self._improved = False
        with warnings.catch_warnings():   # a non-finite stop is reported as the run's stop_reason (stderr, rc 3)
            warnings.filterwarnings("ignore", message=r".*update skipped, training stopped", category=RuntimeWarning)
            model.fit(**kwargs, epochs=epochs, initial_epoch=self.run["epoch"], verbose=verbose, callbacks=cbs)
        stop_reason = model.stop_reason
        if self._stopper is not None and self._stopper.stopped_epoch > 0:
            stop_reason = (f"early stopping: no better {'val ' if record.had_validation else ''}{self.monitor} for "
                           f"{self.patience} epoch(s) (best: epoch {self.run['best_epoch']})")
        if stop_reason and self.verbose:
            print(f"stopped: {stop_reason}", flush=True)
        self.run["stop_reason"] = stop_reason
        if self._root and not os.path.exists(self.model_path):  # no validation value ever (e.g. NaN at once)
            self.adapter.save(self.model_path, self._run_doc())
        if _dist.current() is not None:
            _dist.current().barrier()  # the other ranks may read model.npz next: wait for rank 0's writes
        return self.run

    def _run_doc(self):
        return {k: v for k, v in self.run.items()}


# ------------------------------------------------------------------------ the run as engine callbacks
from ..callbacks import Callback as _Callback, ModelCheckpoint as _ModelCheckpoint  # noqa: E402
from ..models.engine import Engine as _Engine  # noqa: E402


class EpochSteps(_Engine):
    """An adapter that trains its own epochs (``train_epoch(epoch, timer)``, e.g. a tagger with its own batches)
    as an engine whose one step is one epoch: ``fit`` then runs its epochs, callbacks and budget exactly as for a
    model, so every ``rnnlab train`` command goes through :meth:`rnnlab.Model.fit`. ``partial``/``stop_reason``
    in the epoch's logs mean what they mean for :class:`TrainLoop`."""

    _steps_are_collective = True   # under mpiexec every rank runs the adapter's epoch (its steps reduce)

    class Epochs:
        """One batch per epoch (the adapter's whole epoch)."""

        def __len__(self):
            return 1

        def __getitem__(self, i):
            return ()

    def __init__(self, adapter, timer):
        self.adapter, self.timer = adapter, timer
        self.compiled, self.metrics = True, []
        self.stop_training, self.stop_reason, self.history = False, None, None
        self.current_epoch = 0
        self.loop = None

    @property
    def optimizer(self):
        return self.adapter.optimizer

    @property
    def built(self):
        return True

    def iter_weights(self, prefix=""):
        m = getattr(self.adapter, "model", None)
        return iter(()) if m is None or not hasattr(m, "iter_weights") else m.iter_weights(prefix)

    def train_step(self, data):
        logs = dict(self.adapter.train_epoch(self.current_epoch, self.timer))
        if logs.get("stop_reason"):
            self.stop_reason = logs["stop_reason"]
            self.stop_training = True
        if logs.get("partial"):
            self.stop_training = True
            if self.stop_reason is None:
                self.stop_reason = f"time budget ({self.loop.time_budget.describe()}) reached during epoch {self.current_epoch + 1}"
        return logs


class _RunRecord(_Callback):
    """First at every epoch end: the task's validation (``adapter.evaluate()`` -> ``val_*`` logs), the history
    record (training logs, validation, the epoch's starting learning rate, seconds, ``partial``) and the run's
    clocks."""

    def __init__(self, loop, budget, epochs, printing_epochs):
        super().__init__()
        self.loop, self.budget, self.epochs, self.printing_epochs = loop, budget, epochs, printing_epochs
        self.had_validation = False

    def on_epoch_begin(self, epoch, logs=None):
        if isinstance(self.model, EpochSteps):
            self.model.current_epoch = epoch
        self.t0 = time.perf_counter()
        self.lr = float(self.loop.adapter.optimizer.learning_rate)
        if self.printing_epochs and self.loop.verbose and not self.model.stop_training:
            print(f"Epoch {epoch + 1}/{self.epochs}", flush=True)

    def on_epoch_end(self, epoch, logs=None):
        loop = self.loop
        tr = {k: v for k, v in logs.items() if not k.startswith("val_") and k != "learning_rate"}
        partial = bool(tr.pop("partial", False)) or self.budget.stopped_during_epoch == epoch
        tr.pop("stop_reason", None)
        if hasattr(loop.adapter, "train_logs"):
            tr = loop.adapter.train_logs(tr)
        va = loop.adapter.evaluate()
        self.had_validation = self.had_validation or bool(va)
        logs.clear()
        logs.update(tr)
        logs.update({f"val_{k}": v for k, v in va.items()})
        value = va.get(loop.monitor, tr.get(loop.monitor))
        logs["_monitor"] = value if value is not None and math.isfinite(value) else math.nan
        rec = {"epoch": epoch + 1, **tr, **{f"val_{k}": v for k, v in va.items()}, "learning_rate": self.lr,
               "seconds": round(time.perf_counter() - self.t0, 2)}
        if partial:
            rec["partial"] = True
        self.partial = partial
        loop.run["history"].append(rec)
        loop.run["train_seconds"] = loop._start_secs + loop._timer.elapsed
        loop.run["train_cpu_seconds"] = loop._start_cpu + time.process_time() - loop._cpu0


class _BestModel(_ModelCheckpoint):
    """``ModelCheckpoint(save_best_only=True)`` writing the task's ``model.npz`` (with the run state) through the
    adapter whenever the monitored value improves (a non-finite value never does)."""

    def __init__(self, loop, key):
        super().__init__(loop.model_path, monitor=key, mode=loop.mode, save_best_only=True)
        self.loop = loop

    def on_epoch_end(self, epoch, logs=None):
        loop = self.loop
        value = logs.get(self.monitor)
        loop._improved = value is not None and math.isfinite(value) and loop._better(value, self.best)
        if loop._improved:
            self.best = value
            loop.run["best"], loop.run["best_epoch"], loop.run["wait"] = value, epoch + 1, 0
            if not loop._record.partial:
                loop.run["stale"] = 0
            if loop._root:
                self._save(self.filepath, epoch, logs)
        else:
            loop.run["wait"] += 1
            if not loop._record.partial:
                loop.run["stale"] = loop.run.get("stale", 0) + 1

    def _save(self, path, epoch, logs):
        self.loop.adapter.save(path, self.loop._run_doc())


class _RunCheckpoint(_Callback):
    """Last at every epoch end: the learning-rate message, the summary line, ``checkpoint.npz`` after a complete
    epoch (weights, optimizer state and the run: epoch, history, best, counters, clocks, the random generator)
    and ``history.json``."""

    def __init__(self, loop, record):
        super().__init__()
        self.loop, self.record = loop, record
        loop._record = record

    def on_epoch_begin(self, epoch, logs=None):
        self.lr0 = float(self.loop.adapter.optimizer.learning_rate)

    def on_epoch_end(self, epoch, logs=None):
        loop = self.loop
        decay = loop._decay
        if decay is not None:
            loop.run["wait"] = decay.wait
            new = float(loop.adapter.optimizer.learning_rate)
            if new < self.lr0 and loop.verbose:
                print(f"  no improvement of val {loop.monitor} for {decay.patience} epoch(s): "
                      f"learning rate -> {new:.4g}", flush=True)
        if loop._stopper is not None and not self.record.partial:
            loop.run["stale"] = loop._stopper.wait
        rec = loop.run["history"][-1]
        if loop.verbose:
            shown = {k: v for k, v in rec.items() if k not in ("epoch",)}
            print("  " + " - ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}"
                                    for k, v in shown.items()) + ("  (best, saved)" if loop._improved else ""),
                  flush=True)
        if not self.record.partial:
            loop.run["epoch"] = epoch + 1
            loop.run["rng"] = rng_state()
            if loop._root:
                loop.adapter.save(loop.checkpoint_path, loop._run_doc())
        if loop._root:
            atomic_write_json(os.path.join(loop.out, "history.json"), loop.run["history"])


class _RunRestore(_Callback):
    """Begins after the other callbacks (``_restores_state``): a resumed run's best value, plateau and
    early-stopping counters (from ``checkpoint.npz``'s run state) go into the callbacks that decide on them."""

    _restores_state = True
    runs_on_every_rank = False

    def __init__(self, loop, best):
        super().__init__()
        self.loop, self.best = loop, best

    def on_train_begin(self, logs=None):
        run = self.loop.run
        self.best.best = run["best"]
        inf = math.inf if self.loop.mode == "min" else -math.inf
        b = inf if run["best"] is None else float(run["best"])
        if self.loop._decay is not None:
            self.loop._decay.set_state({"best": b, "wait": int(run.get("wait", 0)), "cooldown_counter": 0})
        if self.loop._stopper is not None:
            self.loop._stopper.set_state({"best": b, "wait": int(run.get("stale", 0)),
                                          "best_epoch": max(int(run.get("best_epoch") or 1) - 1, 0)})


from ..models.data_adapters import PyDataset as _PyDataset  # noqa: E402


class EpochBatchSet(_PyDataset):
    """A task's training batches for ``Model.fit``: ``draw()`` (called at every epoch's start, so it may use
    rnnlab's generator: a checkpoint's RNG state repeats it on ``--resume``) returns the epoch's ``count`` batch
    keys (e.g. index arrays), ``make(key)`` builds the batch ``(x, y)``."""

    def __init__(self, count, draw, make):
        super().__init__()
        self.count, self.draw, self.make = int(count), draw, make
        self.keys = None

    def __len__(self):
        return self.count

    def on_epoch_begin(self):
        self.keys = list(self.draw())
        if len(self.keys) != self.count:
            raise RuntimeError(f"EpochBatchSet: draw() gave {len(self.keys)} batches, expected {self.count}")

    def __getitem__(self, i):
        return self.make(self.keys[i])
