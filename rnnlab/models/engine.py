"""The one training engine of every model: compile / fit / evaluate / predict and the ``*_on_batch`` methods.

``Sequential`` and functional ``Model`` inherit it; the ``rnnlab train`` commands run their epochs in
:meth:`Engine.fit` (through :class:`rnnlab.tasks.runstate.TrainLoop`'s callbacks), truncated BPTT is
``fit(..., tbptt_steps=k)``, and data-parallel training under ``mpiexec`` (:mod:`rnnlab.distributed`) composes
the public step pieces below. There is no other training loop.

``fit`` takes arrays or a dataset of batches (:mod:`rnnlab.models.data_adapters`: ``PyDataset``, generators);
run control is callbacks (:mod:`rnnlab.callbacks`: ``EarlyStopping``, ``ModelCheckpoint``,
``ReduceLROnPlateau``, ``TimeBudget``, ``BackupAndRestore``, ...). A subclass may override
``train_step(data)``/``test_step(data)``/``predict_step(data)`` as in Keras 3 and build its step from
:meth:`Engine.compute_gradients` and :meth:`Engine.apply_gradients`.

Data for a model with inputs ``x_1..x_k`` and outputs ``y_1..y_m`` is given as Keras takes it: one array (one
input/output), a list in the order of ``model.inputs``/``model.outputs``, or a dict keyed by input names /
output names. ``validation_data`` is shaped the same way.

One training step (:meth:`Engine.train_step`, public: the step every loop here runs) on a batch:

1. forward with ``training=True``: outputs ``o_j`` and their masks ``m_j`` (masks from ``Embedding(mask_zero)``
   reach the loss of a per-time-step output, as in Keras);
2. the loss ``L = sum_j w_j L_j(y_j, o_j)`` with ``w_j`` the ``loss_weights`` (1 by default) and ``L_j`` the loss
   given for output ``j`` (outputs without a loss are not trained on);
3. backward with ``dL/do_j = w_j dL_j/do_j`` through the graph;
4. the NaN policy (one, for every loop): a non-finite loss or gradient norm raises
   :class:`rnnlab.training.NonFiniteLoss` *before* the update; ``fit`` stops there with a warning and the
   weights keep their last finite values;
5. the optimizer update (clipping by the optimizer's ``clipnorm``/``clipvalue``/``global_clipnorm``), then the
   metrics see this step's predictions.

Logs: ``loss`` (the weighted total), and for several outputs ``<output>_loss`` and ``<output>_<metric>``;
for one output the metric names alone (Keras 3's naming).
"""
from __future__ import annotations

import copy
import math
import sys

import numpy as np

from .. import backend, losses as _losses, metrics as _metrics, optimizers as _optimizers
from .. import regularizers as _regularizers
from ..layers.base import _ACTIVITY_LOSSES
from .. import distributed as _distributed
from ..callbacks import Callback, History
from ..training import NonFiniteLoss, ProgressBar, batch_slices, check_batch_size, checked_update, take, warn_stop


def _to_numpy(a):
    if hasattr(a, "detach") and hasattr(a, "numpy"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _per_output(value, names, what, default=None):
    """A value given once, per output in a list, or in a dict keyed by output name -> a list per output."""
    n = len(names)
    if isinstance(value, dict):
        unknown = [k for k in value if k not in names]
        if unknown:
            raise ValueError(f"compile: {what} dict keys {unknown} name no output; the outputs are {names}")
        return [value.get(nm, default) for nm in names]
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"compile: {what} is a list of {len(value)} but the model has {n} output(s) {names}")
        return list(value)
    return [value] * n


class Engine:
    """compile/fit/evaluate/predict for a model with ``forward``/``backward`` over lists of inputs/outputs.

    A model class provides the hooks ``_inputs_names()``, ``_outputs_names()``, ``_prepare_inputs(x, what)``
    (-> list of arrays), ``_run(xs, training)`` (-> list of outputs, list of output masks), ``_backprop(grads)``
    and ``_pack_outputs(list)`` (private to ``rnnlab.models``). Code outside uses the public API: ``fit``,
    ``evaluate``, ``predict``, the ``*_on_batch`` methods, ``train_step``/``test_step``/``predict_step``, and the
    step pieces ``prepare_data``, ``loss_step``, ``backpropagate``, ``apply_gradients``, ``update_metrics``,
    ``compute_gradients``, ``output_losses``, ``output_loss_weights``, ``output_metrics``."""

    # ------------------------------------------------------------------ compile
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None):
        """Choose the optimizer, a loss (and metrics, loss_weights) for each output: given once (every output),
        as a list (output order) or as a dict keyed by output name."""
        names = self._outputs_names()
        self.optimizer = _optimizers.get(optimizer)
        self._loss_ids = loss
        losses = _per_output(loss, names, "loss")
        self._losses = [None if l is None else _losses.get(l) for l in losses]
        self.loss = self._losses[0] if len(names) == 1 else self._losses
        lw = _per_output(1.0 if loss_weights is None else loss_weights, names, "loss_weights", default=0.0)
        try:
            self._loss_weights = [float(w) for w in lw]
        except (TypeError, ValueError):
            raise TypeError(f"compile: loss_weights must be numbers, got {loss_weights!r}") from None
        self._metric_ids = metrics
        if metrics is None or isinstance(metrics, (str, _metrics.Metric)) or (
                isinstance(metrics, (list, tuple)) and not any(isinstance(m, (list, tuple, dict)) for m in metrics)):
            self._metric_ids = [] if metrics is None else (
                [metrics] if isinstance(metrics, (str, _metrics.Metric)) else list(metrics))
        if metrics is None:
            per = [[] for _ in names]
        elif isinstance(metrics, dict):
            per = [m if isinstance(m, (list, tuple)) else ([] if m is None else [m])
                   for m in _per_output(metrics, names, "metrics")]
        elif isinstance(metrics, (list, tuple)) and metrics and all(isinstance(m, (list, tuple)) or m is None
                                                                        for m in metrics):
            per = [list(m or []) for m in _per_output(list(metrics), names, "metrics")]
        else:
            flat = [metrics] if isinstance(metrics, (str, _metrics.Metric)) else list(metrics)
            per = [[m if j == 0 or not isinstance(m, _metrics.Metric) else copy.deepcopy(m) for m in flat]
                   for j in range(len(names))]
        self._out_metrics = []
        for j, ms in enumerate(per):
            objs = [_metrics.get(m, loss=self._losses[j]) for m in ms]
            self._out_metrics.append(objs)
        self.metrics = [m for ms in self._out_metrics for m in ms]
        self.compiled = True

    def _require_compiled(self, what):
        if not getattr(self, "compiled", False):
            raise RuntimeError(f"{type(self).__name__}.{what}: call model.compile(optimizer, loss, metrics) first")
        if all(l is None for l in self._losses):
            raise ValueError(f"{type(self).__name__}.{what}: the model was compiled without a loss; call "
                             f"model.compile(optimizer, loss=...) with one of {_losses.names()}")

    # ------------------------------------------------------------------ data
    def _prepare_targets(self, y, n, what):
        names = self._outputs_names()
        if y is None:
            raise ValueError(f"{what}: y is required")
        if isinstance(y, dict):
            unknown = [k for k in y if k not in names]
            if unknown:
                raise ValueError(f"{what}: y dict keys {unknown} name no output; the outputs are {names}")
            ys = [None if nm not in y else _to_numpy(y[nm]) for nm in names]
        elif isinstance(y, (list, tuple)):
            if len(y) != len(names):
                raise ValueError(f"{what}: y is a list of {len(y)} arrays but the model has {len(names)} output(s) "
                                 f"{names}")
            ys = [None if a is None else _to_numpy(a) for a in y]
        else:
            if len(names) != 1:
                raise ValueError(f"{what}: the model has {len(names)} outputs {names}: give y as a list or a dict "
                                 f"keyed by output name, got one {type(y).__name__}")
            ys = [_to_numpy(y)]
        for j, (a, loss) in enumerate(zip(ys, self._losses)):
            if a is None:
                if loss is not None:
                    raise ValueError(f"{what}: no target for output '{names[j]}', which has a loss")
                continue
            if a.ndim == 0 or len(a) != n:
                got = a.shape[0] if a.ndim else "a scalar"
                if len(names) == 1:
                    raise ValueError(f"{what}: x and y must have the same number of samples, got x: {n} and y: {got}")
                raise ValueError(f"{what}: x and y must have the same number of samples, got x: {n} and y for "
                                 f"output '{names[j]}': {got}")
        return ys

    def _prepare_weights(self, sample_weight, n, what):
        names = self._outputs_names()
        if sample_weight is None:
            return [None] * len(names)
        if isinstance(sample_weight, dict) or isinstance(sample_weight, (list, tuple)) and len(names) > 1 and \
                len(sample_weight) == len(names) and all(np.ndim(s) >= 1 or s is None for s in sample_weight):
            sws = _per_output(sample_weight, names, "sample_weight")
        else:
            sws = [sample_weight] * len(names)
        out = []
        for j, s in enumerate(sws):
            if s is None:
                out.append(None)
                continue
            s = np.asarray(_to_numpy(s), dtype=np.float64)
            if s.ndim == 0 or len(s) != n:
                which = "" if len(names) == 1 else f" for output '{names[j]}'"
                raise ValueError(f"{what}: sample_weight{which} has {len(s) if s.ndim else 'no'} entries for "
                                 f"{n} samples")
            out.append(s)
        return out

    def _prepare(self, x, y, sample_weight, what):
        xs = self._prepare_inputs(x, what)
        n = len(xs[0])
        ys = self._prepare_targets(y, n, what)
        return xs, ys, self._prepare_weights(sample_weight, n, what)

    # ------------------------------------------------------------------ steps
    @staticmethod
    def _loss_mask(out, mask):
        if mask is not None and np.ndim(out) >= 3 and np.shape(mask) == np.shape(out)[:2]:
            return mask
        return None

    def _log_names(self):
        names = self._outputs_names()
        multi = len(names) > 1
        loss_names = [f"{nm}_loss" for nm, l in zip(names, self._losses) if l is not None] if multi else []
        met = [(f"{names[j]}_{m.name}" if multi else m.name) for j, ms in enumerate(self._out_metrics) for m in ms]
        return loss_names, met

    def _metric_logs(self):
        _, met = self._log_names()
        return dict(zip(met, (m.result() for ms in self._out_metrics for m in ms)))

    def _loss_and_grads(self, outs, masks, ys, sws, time_mask=None):
        total, per, grads, lmasks = 0.0, [], [], []
        for j, (out, m) in enumerate(zip(outs, masks)):
            loss = self._losses[j]
            lmask = self._loss_mask(out, m)
            if time_mask is not None:
                lmask = time_mask if lmask is None else lmask & time_mask
            lmasks.append(lmask)
            if loss is None or ys[j] is None:
                per.append(None)
                grads.append(None)
                continue
            lj, gj = loss.forward_backward(ys[j], out, sample_weight=sws[j], mask=lmask)
            w = self._loss_weights[j]
            per.append(lj)
            total += w * lj
            grads.append(gj if w == 1.0 else gj * gj.dtype.type(w))
        return total, per, grads, lmasks

    def _train_batch(self, xs, ys, sws, epoch=0, step=0, time_mask=None):
        """One update on prepared arrays; returns ``(total_loss, [loss per output or None])``."""
        dist = _distributed.current()
        if dist is not None:  # under mpiexec: this rank's shard, gradients averaged (rnnlab.distributed)
            return _distributed.train_batch(dist, self, xs, ys, sws, epoch, step, time_mask)
        token = _ACTIVITY_LOSSES.set(_regularizers.ActivityTape())  # activity regularizers add their penalties here (rnnlab.regularizers)
        try:
            outs, masks = self._run(xs, True)
            total, per, grads, lmasks = self._loss_and_grads(outs, masks, ys, sws, time_mask)
            refs = list(self.trainable_weight_refs())
            total += _ACTIVITY_LOSSES.get().total() + _regularizers.weight_penalty(refs)  # Keras: loss + sum(losses)
            if not math.isfinite(total):
                raise NonFiniteLoss("loss", total, epoch, step)
            self._backprop(grads)
        finally:
            _ACTIVITY_LOSSES.reset(token)
        _regularizers.add_penalty_gradients(refs)
        checked_update(self.optimizer, refs, total, epoch, step)
        _regularizers.apply_constraints(refs)  # Keras: each weight's constraint after the update
        for j, ms in enumerate(self._out_metrics):
            if ys[j] is not None:
                for m in ms:
                    m.update(ys[j], outs[j], sample_weight=sws[j], mask=lmasks[j])
        return total, per

    def train_step(self, data, *, epoch=0, step=0, time_mask=None):
        """One optimizer step on one batch ``data = (x, y)`` or ``(x, y, sample_weight)`` (arrays, lists or
        dicts as in ``fit``): forward, loss, backward, the NaN check, the update, the metrics' update.

        Returns the logs of this step: ``loss`` (this batch's weighted total), per-output losses, and the
        metrics' running results (not reset here: ``train_on_batch`` resets them first, ``fit`` once per
        epoch). This is the public step that loops outside the model use (the CLI tasks, truncated BPTT,
        diagnostics). On a NaN/inf loss or gradient norm it raises :class:`rnnlab.training.NonFiniteLoss` before
        the update, naming ``epoch``/``step`` (0-based, for the message). ``time_mask`` (batch, time), optional:
        only the steps where it is True enter the loss (truncated BPTT's new steps)."""
        x, y, sw = self._unpack(data, "train_step")
        self._require_compiled("train_step")
        xs, ys, sws = self._prepare(x, y, sw, "train_step")
        total, per = self._train_batch(xs, ys, sws, epoch, step, time_mask)
        return self._logs(total, per)

    def compute_gradients(self, x, y, sample_weight=None, training=False, return_outputs=False):
        """Forward, loss and backward on one batch *without* an update: afterwards every layer's ``grads``
        holds dL/dW (summed over a shared layer's calls). Returns the loss ``L`` (with the regularizers'
        penalties), or ``(L, outputs)`` with ``return_outputs=True`` (as the model packs them: an array, a list
        or a dict). For diagnostics, gradient checks and a custom ``train_step``; ``training`` switches dropout
        on. Follow it with :meth:`apply_gradients` to update."""
        self._require_compiled("compute_gradients")
        xs, ys, sws = self._prepare(x, y, sample_weight, "compute_gradients")
        token = _ACTIVITY_LOSSES.set(_regularizers.ActivityTape())
        try:
            outs, masks = self._run(xs, training)
            total, _, grads, _ = self._loss_and_grads(outs, masks, ys, sws)
            refs = list(self.trainable_weight_refs())
            total += _ACTIVITY_LOSSES.get().total() + _regularizers.weight_penalty(refs)
            self._backprop(grads)
        finally:
            _ACTIVITY_LOSSES.reset(token)
        _regularizers.add_penalty_gradients(refs)
        return (total, self._pack_outputs(outs)) if return_outputs else total

    # ------------------------------------------------------------------ public pieces of a step
    # (what a custom train_step, rnnlab.distributed or a diagnostic loop composes; the built-in step is
    # prepare_data -> loss_step -> backpropagate -> apply_gradients -> update_metrics)
    def apply_gradients(self, loss=0.0, epoch=0, step=0):
        """Update every trainable weight from the gradients its layer holds (after :meth:`compute_gradients` or
        :meth:`backpropagate`), with the one NaN policy (:func:`rnnlab.training.checked_update`: a non-finite
        ``loss`` or gradient norm raises :class:`~rnnlab.training.NonFiniteLoss` *before* the update), then the
        weights' constraints. ``epoch``/``step`` only name the place in the error message."""
        refs = list(self.trainable_weight_refs())
        checked_update(self.optimizer, refs, loss, epoch, step)
        _regularizers.apply_constraints(refs)

    def prepare_data(self, x, y=None, sample_weight=None, what="prepare_data"):
        """``(xs, ys, sws)``: lists with one array per input / output (``None`` for an output without targets
        or weights), checked and converted as ``fit`` does; ``y=None`` gives ``ys = sws = None``."""
        if y is None:
            return self._prepare_inputs(x, what), None, None
        return self._prepare(x, y, sample_weight, what)

    @property
    def output_losses(self):
        """The compiled loss object of each output (``None`` for an output without a loss)."""
        return list(self._losses)

    @property
    def output_loss_weights(self):
        """The compiled ``loss_weights``, one float per output."""
        return list(self._loss_weights)

    @property
    def output_metrics(self):
        """The compiled metric objects, one list per output."""
        return [list(ms) for ms in self._out_metrics]

    def loss_step(self, xs, ys, sws=None, time_mask=None, training=True):
        """Forward and the loss on one prepared batch (lists from :meth:`prepare_data`), no backward:

        returns ``(outputs, loss_masks, losses, output_grads)``, lists per output: the outputs ``o_j``, the
        mask each loss used (an output mask from ``Embedding(mask_zero)``, and'ed with ``time_mask``), the
        losses ``L_j`` (``None`` where there is none) and ``w_j dL_j/do_j`` (``w_j`` the loss weight), ready
        for :meth:`backpropagate` (scale them first to combine shards, as :mod:`rnnlab.distributed` does)."""
        sws = [None] * len(xs) if sws is None else sws
        outs, masks = self._run(xs, training)
        _, per, grads, lmasks = self._loss_and_grads(outs, masks, ys, sws, time_mask)
        return outs, lmasks, per, grads

    def backpropagate(self, output_grads):
        """The backward pass from dL/d(output) (one array per output, ``None`` for none) after
        :meth:`loss_step`: every layer's ``grads`` then holds dL/dW."""
        self._backprop(list(output_grads))

    def update_metrics(self, ys, outputs, sws=None, loss_masks=None):
        """Feed one batch to the compiled metrics of every output that has targets (lists per output)."""
        n = len(self._out_metrics)
        sws = [None] * n if sws is None else sws
        loss_masks = [None] * n if loss_masks is None else loss_masks
        for j, ms in enumerate(self._out_metrics):
            if ys[j] is not None:
                for m in ms:
                    m.update(ys[j], outputs[j], sample_weight=sws[j], mask=loss_masks[j])

    def test_step(self, data):
        """Loss and metrics of one batch ``(x, y[, sample_weight])`` in inference mode (no update)."""
        x, y, sw = self._unpack(data, "test_step")
        self._require_compiled("test_step")
        xs, ys, sws = self._prepare(x, y, sw, "test_step")
        return self._evaluate_arrays(xs, ys, sws, max(len(xs[0]), 1), reset=False)

    @staticmethod
    def _unpack(data, what):
        if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
            raise ValueError(f"{what}: data must be (x, y) or (x, y, sample_weight)")
        return data[0], data[1], data[2] if len(data) == 3 else None

    def _logs(self, total, per, met=True):
        loss_names, _ = self._log_names()
        logs = {"loss": total}
        logs.update(zip(loss_names, [p for p in per if p is not None]))
        if met:
            logs.update(self._metric_logs())
        return logs

    def _evaluate_arrays(self, xs, ys, sws, batch_size, bar=None, reset=True):
        if reset:
            for m in self.metrics:
                m.reset()
        n_out = len(self._losses)
        total, per_sum, count = 0.0, [0.0] * n_out, 0
        n = len(xs[0])
        penalty = None  # the weight penalties (Keras' evaluate loss includes sum(model.losses) too)
        for sl in batch_slices(n, batch_size):
            token = _ACTIVITY_LOSSES.set(_regularizers.ActivityTape(record=False))
            try:
                outs, masks = self._run([a[sl] for a in xs], False)
                if penalty is None:  # once built
                    penalty = _regularizers.weight_penalty(list(self.trainable_weight_refs()))
                reg_loss = penalty + _ACTIVITY_LOSSES.get().total()
            finally:
                _ACTIVITY_LOSSES.reset(token)
            bs = sl.stop - sl.start
            total += reg_loss * bs
            for j, (out, m) in enumerate(zip(outs, masks)):
                lmask = self._loss_mask(out, m)
                sw = take(sws[j], sl)
                if self._losses[j] is not None and ys[j] is not None:
                    lj = self._losses[j](ys[j][sl], out, sample_weight=sw, mask=lmask)
                    per_sum[j] += lj * bs
                    total += self._loss_weights[j] * lj * bs
                if ys[j] is not None:
                    for met in self._out_metrics[j]:
                        met.update(ys[j][sl], out, sample_weight=sw, mask=lmask)
            count += bs
            if bar is not None:
                bar.update(sl.stop // batch_size + (sl.stop % batch_size > 0),
                           self._logs(total / count, [p / count if self._losses[j] is not None else None
                                                      for j, p in enumerate(per_sum)]), int(count))
        c = max(count, 1)
        return self._logs(total / c, [p / c if self._losses[j] is not None and ys[j] is not None else None
                                      for j, p in enumerate(per_sum)])

    def _apply_class_weight(self, class_weight, ys, sws):
        if not isinstance(class_weight, dict) or not class_weight:
            raise TypeError(f"fit: class_weight must be a non-empty dict {{class index: weight}}, got "
                            f"{type(class_weight).__name__}")
        if len(ys) != 1:
            raise ValueError("fit: class_weight is supported for models with one output; use sample_weight per "
                             "output instead")
        table = {}
        for k, v in class_weight.items():
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
                raise ValueError(f"fit: class_weight keys must be class indices (ints >= 0), got {k!r}")
            try:
                table[int(k)] = float(v)
            except (TypeError, ValueError):
                raise TypeError(f"fit: class_weight[{k}] must be a number, got {v!r}") from None
        y = ys[0]
        if y.ndim >= 2 and y.shape[-1] > 1 and y.dtype.kind == "f":   # one-hot rows
            labels = np.argmax(y, axis=-1)
        else:
            yy = y[..., 0] if (y.ndim >= 2 and y.shape[-1] == 1) else y   # (N, 1) -> (N,)
            if yy.dtype.kind == "f" and not np.array_equal(yy, np.round(yy)):
                raise ValueError("fit: class_weight needs class labels in y (integers, one-hot rows or 0/1), got "
                                 "non-integer targets")
            labels = np.round(yy).astype(np.int64)
        present = [int(c) for c in np.unique(labels)]
        if present and present[0] < 0:
            raise ValueError(f"fit: class_weight needs class labels >= 0 in y, got {present[0]}")
        absent = sorted(k for k in table if k not in present)
        if absent:
            raise ValueError(f"fit: class_weight names class(es) {absent} that do not occur in y (classes in y: "
                             f"{present[:20]}{' ...' if len(present) > 20 else ''})")
        # as Keras: a class of y without an entry keeps weight 1
        lut = np.ones(max(max(table), max(present)) + 1)
        for k, v in table.items():
            lut[k] = v
        w = lut[labels]
        sw = sws[0]
        if sw is not None and sw.ndim < w.ndim:
            sw = sw.reshape(sw.shape + (1,) * (w.ndim - sw.ndim))
        return [w if sw is None else sw * w]

    # ------------------------------------------------------------------ public API
    def train_on_batch(self, x, y, sample_weight=None, return_dict=False):
        """One gradient step on one batch; returns the loss (or ``[loss, ...]``, or a dict)."""
        self._require_compiled("train_on_batch")
        for m in self.metrics:
            m.reset()
        logs = self.train_step((x, y, sample_weight))
        return self._return(logs, return_dict)

    def test_on_batch(self, x, y, sample_weight=None, return_dict=False):
        """Loss (and metrics) of one batch in inference mode; no update."""
        self._require_compiled("test_on_batch")
        for m in self.metrics:
            m.reset()
        return self._return(self.test_step((x, y, sample_weight)), return_dict)

    def predict_on_batch(self, x):
        """The model outputs for one batch (inference mode)."""
        xs = self._prepare_inputs(x, "predict_on_batch")
        return self._pack_outputs(self._run(xs, False)[0])

    def _return(self, logs, return_dict):
        if return_dict:
            return logs
        return logs["loss"] if len(logs) == 1 else list(logs.values())

    def predict_step(self, data):
        """The outputs for one batch ``data`` (``x``, or ``(x,)``/``(x, y, ...)`` from a dataset: its ``x`` is
        used), in inference mode. :meth:`predict` calls it per batch when a subclass overrides it."""
        if isinstance(data, tuple) and 1 <= len(data) <= 3:
            data = data[0]
        return self.predict_on_batch(data)

    def predict(self, x, batch_size=None, verbose=0, steps=None):
        """Outputs for ``x`` in batches of ``batch_size`` (default 32; inference mode): one array, a list, or a
        dict (as the model's outputs were given). ``x`` may also be a dataset/generator of batches (``steps``:
        how many)."""
        from .data_adapters import BatchSource, is_dataset

        if is_dataset(x) or self._overrides("predict_step"):
            if is_dataset(x):
                if batch_size is not None:
                    raise ValueError("predict: x is a dataset of batches, so batch_size must not be given")
                batches = BatchSource(x, steps, "predict").epoch_batches()
            else:
                bs = check_batch_size(32 if batch_size is None else batch_size)
                xs = self._prepare_inputs(x, "predict")
                batches = ((xs[0][sl] if len(xs) == 1 else [a[sl] for a in xs])
                           for sl in batch_slices(len(xs[0]), bs))
            parts = [self.predict_step(b) for b in batches]
            if not parts:
                raise ValueError("predict: no batch to predict")
            return _concat_outputs(parts)
        batch_size = check_batch_size(32 if batch_size is None else batch_size)
        xs = self._prepare_inputs(x, "predict")
        n = len(xs[0])
        steps = math.ceil(n / batch_size)
        bar = ProgressBar(steps) if verbose else None
        parts = None
        for i, sl in enumerate(batch_slices(n, batch_size)):
            outs = self._run([a[sl] for a in xs], False)[0]
            if parts is None:
                parts = [[] for _ in outs]
            for p, o in zip(parts, outs):
                p.append(o)
            if bar:
                bar.update(i + 1, {})
        if bar:
            bar.finish(steps, {})
        if parts is None:
            return self._pack_outputs([np.zeros((0,) + tuple(d or 0 for d in s[1:]), backend.floatx())
                                       for s in self._output_shapes()])
        return self._pack_outputs([np.concatenate(p, axis=0) for p in parts])

    def evaluate(self, x=None, y=None, batch_size=None, verbose=0, sample_weight=None, return_dict=False,
                 steps=None):
        """Loss (and metrics) over ``x``/``y`` (batches of ``batch_size``, default 32), or over the batches of a
        dataset/generator ``x`` (``steps``: how many): a float, ``[loss, ...]``, or a dict. A subclass's
        overridden ``test_step(data)`` runs per batch."""
        from .data_adapters import BatchSource, is_dataset

        if is_dataset(x):
            if not getattr(self, "compiled", False):
                raise RuntimeError(f"{type(self).__name__}.evaluate: call model.compile(optimizer, loss, metrics) "
                                   "first")
            for arg, val in (("y", y), ("sample_weight", sample_weight), ("batch_size", batch_size)):
                if val is not None:
                    raise ValueError(f"evaluate: x is a {type(x).__name__} of batches, so {arg} must not be given")
            return self._return(self._evaluate_source(BatchSource(x, steps, "evaluate")), return_dict)
        if self._overrides("test_step"):
            xs, ys, sws = self._prepare(x, y, sample_weight, "evaluate")
            logs = self._evaluate_custom((xs, ys, sws), check_batch_size(32 if batch_size is None else batch_size))
            return self._return(logs, return_dict)
        self._require_compiled("evaluate")
        batch_size = check_batch_size(32 if batch_size is None else batch_size)
        xs, ys, sws = self._prepare(x, y, sample_weight, "evaluate")
        steps = math.ceil(len(xs[0]) / batch_size)
        bar = ProgressBar(steps) if verbose else None
        logs = self._evaluate_arrays(xs, ys, sws, batch_size, bar=bar if verbose == 1 else None)
        if verbose == 1:
            bar.finish(steps, logs, len(xs[0]))
        elif verbose:
            print(bar.summary_line(steps, logs, len(xs[0])), file=bar.stream, flush=True)
        return self._return(logs, return_dict)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose=1, callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, sample_weight=None, initial_epoch=0, stream=None,
            tbptt_steps=None, class_weight=None, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None):
        """Train for ``epochs`` passes over the data; returns a :class:`~rnnlab.callbacks.History`.

        ``x``: arrays (one, a list in input order or a dict keyed by input name) with ``y`` the same way, or a
        :class:`~rnnlab.models.data_adapters.PyDataset` / generator / iterable of ``(x, y[, sample_weight])``
        batches (then ``y``, ``sample_weight`` and ``batch_size`` must not be given; ``steps_per_epoch`` caps or
        sets the batches per epoch). ``validation_data`` is ``(x_val, y_val[, sw])`` or such a dataset
        (``validation_steps`` batches of it). ``batch_size`` defaults to 32 (arrays only).

        Every batch runs :meth:`train_step`: a subclass that overrides ``train_step(self, data)`` (Keras 3's
        "customizing what happens in fit") receives each batch ``data`` as the dataset gave it, or
        ``(x, y)``/``(x, y, sample_weight)`` sliced from arrays (one array per input/output, a list for
        several), and returns a dict of logs: ``loss`` and any ``*_loss`` entry is averaged over the epoch
        (weighted by the batch size), every other entry is shown as returned (metrics' running results).
        Likewise evaluate runs an overridden ``test_step(data)``, predict an overridden ``predict_step(data)``.

        ``validation_split`` holds out the *last* fraction of the data (before shuffling), as Keras.
        A NaN/inf loss or gradient stops training before the bad update, with a warning naming the
        epoch and step; the weights keep their last finite values (``history.stop_reason`` says why).
        A callback that sets ``model.stop_training`` in ``on_train_batch_begin`` stops training *before* that
        batch runs (e.g. :class:`~rnnlab.callbacks.TimeBudget`); the epoch, if it ran a batch, still ends with
        validation and ``on_epoch_end``, its logs over the batches run (``history.partial_epochs`` lists it).

        ``class_weight``: ``{class: weight}`` (one output); each sample's weight is multiplied by the weight of
        its class (integer labels, one-hot rows or a 0/1 column; per time step for ``(N, T)`` labels). A class of
        ``y`` without an entry keeps weight 1 (as Keras); an entry for a class that is not in ``y`` is an error.

        ``tbptt_steps=k`` (or ``(k1, k2)``) trains with truncated BPTT (:class:`rnnlab.training.TBPTT`):
        each batch of ``batch_size`` sequences (N, T, ...) is run in windows along time, one update per
        ``k1`` steps, the gradient flowing ``k2`` steps back, the state carried between windows by the
        model's stateful recurrent layers (reset at the start of each batch). One progress step is one
        window; the epoch loss is the mean over all steps. Validation runs whole sequences from reset
        states (``len(x_val)`` must be a multiple of ``batch_size``).

        Under ``mpiexec`` every global batch is sharded: each rank trains on its contiguous rows of it (arrays:
        of the rank-0 shuffle; a dataset: every rank builds the same whole batch, e.g. drawn from rnnlab's seeded
        generator, and keeps its rows; truncated BPTT: its rows of the streams, whose states it carries), and
        the gradients are summed weighted by the shards' loss counts (:mod:`rnnlab.distributed`).
        """
        from .data_adapters import BatchSource, is_dataset

        custom = self._overrides("train_step")
        if custom:
            if not getattr(self, "compiled", False):
                raise RuntimeError(f"{type(self).__name__}.fit: call model.compile(optimizer) first")
        else:
            self._require_compiled("fit")
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"fit: epochs must be a non-negative int, got {epochs!r}")
        dist = _distributed.current()  # data-parallel under mpiexec: rank 0 logs, calls back and validates
        if custom and dist is not None and not getattr(self, "_steps_are_collective", False):
            raise ValueError(f"fit: {type(self).__name__} overrides train_step; a custom step is not data-parallel "
                             "(rnnlab.distributed averages the built-in step's gradients): run it in one process")
        source = None
        if is_dataset(x):
            for arg, val in (("y", y), ("sample_weight", sample_weight), ("batch_size", batch_size)):
                if val is not None:
                    raise ValueError(f"fit: x is a {type(x).__name__} of batches, so {arg} must not be given (each "
                                     f"batch carries it)")
            if validation_split:
                raise ValueError("fit: validation_split needs arrays; give validation_data for a dataset")
            if tbptt_steps is not None:
                raise ValueError("fit: tbptt_steps needs arrays x, y of whole sequences, not a dataset of batches")
            source = BatchSource(x, steps_per_epoch, "fit")
            xs = ys = sws = None
        else:
            if steps_per_epoch is not None:
                raise ValueError("fit: steps_per_epoch applies to a dataset or generator x; with arrays every epoch "
                                 "is one pass over the data")
            batch_size = check_batch_size(32 if batch_size is None else batch_size)
            xs, ys, sws = self._prepare(x, y, sample_weight, "fit")
        if class_weight is not None and xs is not None:
            sws = self._apply_class_weight(class_weight, ys, sws)
        val = val_source = None
        if validation_data is not None:
            if is_dataset(validation_data):
                val_source = BatchSource(validation_data, validation_steps, "fit(validation_data)")
            else:
                if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                    raise ValueError("fit: validation_data must be (x_val, y_val), (x_val, y_val, sample_weight) "
                                     "or a dataset of such batches")
                val = self._prepare(validation_data[0], validation_data[1],
                                    validation_data[2] if len(validation_data) == 3 else None,
                                    "fit(validation_data)")
        elif validation_split:
            if not 0.0 < validation_split < 1.0:
                raise ValueError(f"fit: validation_split must be in (0, 1), got {validation_split}")
            n = len(xs[0])
            split = int(n * (1.0 - validation_split))
            if split == 0 or split == n:
                raise ValueError(f"fit: validation_split={validation_split} leaves an empty train or validation set "
                                 f"for {n} samples")
            cut = slice(split, None)
            val = ([a[cut] for a in xs], [take(a, cut) for a in ys], [take(a, cut) for a in sws])
            cut = slice(None, split)
            xs, ys, sws = [a[cut] for a in xs], [take(a, cut) for a in ys], [take(a, cut) for a in sws]
        n = None
        if xs is not None:
            n = len(xs[0])
            if n == 0:
                raise ValueError("fit: no training samples")
        val_bs = batch_size or 32
        if validation_batch_size is not None:
            val_bs = check_batch_size(validation_batch_size)
        pending = False  # an unbuilt model given a dataset under mpiexec: built from its first batch, then Bcast
        if dist is not None:
            pending = not _distributed.fit_begin(dist, self, xs)
            if not dist.is_root:
                verbose = 0
                callbacks = [cb for cb in (callbacks or []) if getattr(cb, "runs_on_every_rank", False)]
        tbptt = streams = None
        windows = [None]
        if tbptt_steps is not None:
            from ..training import TBPTT
            if custom:
                raise ValueError(f"fit: tbptt_steps runs the built-in train_step window by window; "
                                 f"{type(self).__name__} overrides train_step")
            if len(xs) != 1 or len(ys) != 1:
                raise ValueError("fit: tbptt_steps needs a model with one input and one output")
            tbptt = TBPTT.from_steps(self, tbptt_steps)
            val_bs = batch_size
            if dist is not None:  # each rank carries its rows of every batch's streams (rnnlab.distributed)
                streams = _distributed.StreamShards(dist, tbptt.recurrent, batch_size, n)
                val_bs = streams.layer_batch
            _, T = tbptt.check_data(xs[0], ys[0], val_bs, sws[0])
            windows = tbptt.windows(T)
            if val is not None:
                tbptt.check_data(val[0][0], val[1][0], val_bs, val[2][0], "fit(validation)")
        history = History()
        history.partial_epochs = []
        cbs = list(callbacks or []) + [history]
        for cb in cbs:
            if not isinstance(cb, Callback):
                raise TypeError(f"fit: callbacks must be Callback instances, got {type(cb).__name__}")
            cb.set_model(self)
        self.history = history
        self.stop_training = False
        self.stop_reason = None
        stream = stream or sys.stdout
        if source is not None:
            steps = source.steps
        else:
            steps = math.ceil(n / batch_size) if tbptt is None else n // batch_size * len(windows)
        params = {"epochs": epochs, "steps": steps, "verbose": verbose, "batch_size": batch_size, "samples": n}
        for cb in cbs:
            if hasattr(cb, "set_params"):
                cb.set_params(params)
        self._initial_epoch = None
        for cb in cbs:
            if hasattr(cb, "set_callbacks"):
                cb.set_callbacks(cbs)
        # a callback that restores state (BackupAndRestore) begins last, so no other callback resets it afterwards
        for cb in sorted(cbs, key=lambda c: bool(getattr(c, "_restores_state", False))):
            cb.on_train_begin({})
        if self._initial_epoch is not None:  # a callback restored a backup (BackupAndRestore): go on from there
            initial_epoch = max(int(initial_epoch), int(self._initial_epoch))
        last_logs: dict = {}
        loss_names, _ = self._log_names() if not custom else ([], [])
        pack = self._batch_packer() if custom and source is None else None
        for epoch in range(initial_epoch, epochs):
            if self.stop_training:
                break
            for cb in cbs:
                cb.on_epoch_begin(epoch, {})
            if dist is not None:
                dist.sync_control(self)  # e.g. LearningRateScheduler ran on rank 0
            if self.stop_training:
                break
            for m in self.metrics:
                m.reset()
            if streams is not None:
                streams.begin()
            if source is None:
                order = backend.rng().permutation(n) if shuffle else None
                if dist is not None and order is not None:
                    dist.bcast_(order)  # rank 0's order: the global batches of one process
            if verbose in (1, 2):
                print(f"Epoch {epoch + 1}/{epochs}", file=stream, flush=True)
            bar = ProgressBar(steps or 0, stream=stream) if verbose in (1, 2) else None
            sums, wsum, seen, latest = {}, 0, 0, {}
            step = -1
            ran = 0
            if source is None:
                units = ((sl, w) for sl in batch_slices(n, batch_size) for w in windows)
            else:
                units = ((b, None) for b in source.epoch_batches())
            for step, (item, win) in enumerate(units):
                for cb in cbs:
                    cb.on_train_batch_begin(step, {})
                if dist is not None:
                    dist.sync_control(self)  # rank 0's callbacks decide, before the batch runs
                if self.stop_training:
                    break
                try:
                    if source is not None:
                        if custom:
                            r = self.train_step(item)
                            bs = _batch_len(item)
                        else:
                            bx, by, bw = self._unpack(item, "fit (a batch of the dataset)")
                            bxs, bys, bws = self._prepare(bx, by, bw, "fit (a batch of the dataset)")
                            if class_weight is not None:
                                bws = self._apply_class_weight(class_weight, bys, bws)
                            bs = len(bxs[0])
                            if dist is not None:  # this rank's rows of the whole batch (rnnlab.distributed)
                                if pending:
                                    pending = not _distributed.fit_begin(dist, self, bxs)
                                bxs, bys, bws = _distributed.local_batch(dist, bxs, bys, bws)
                            total, per = self._train_batch(bxs, bys, bws, epoch, step)
                            r = None
                        wt = bs
                    else:
                        sl = item
                        idx = order[sl] if order is not None else sl
                        if dist is not None:
                            idx = _distributed.local_rows(dist, idx)
                        bs = sl.stop - sl.start
                        if custom:
                            r = self.train_step(pack(xs, ys, sws, idx))
                            wt = bs
                        elif win is None:
                            total, per = self._train_batch([a[idx] for a in xs], [take(a, idx) for a in ys],
                                                           [take(a, idx) for a in sws], epoch, step)
                            r, wt = None, bs
                        else:
                            total = tbptt.train_window(xs[0], ys[0], sws[0], idx, win, epoch, step)
                            per, r = [], None
                            wt = bs * (win[1] - win[2])  # TBPTT: weight by the window's new steps
                except NonFiniteLoss as e:
                    history.stop_reason = self.stop_reason = warn_stop(e, bar)
                    self.stop_training = True
                    break
                ran += 1
                if r is None:  # the built-in step: the batch's losses, the metrics' running results
                    sums["loss"] = sums.get("loss", 0.0) + total * wt
                    for nm, p in zip(loss_names, [p for p in per if p is not None]):
                        sums[nm] = sums.get(nm, 0.0) + p * wt
                else:
                    _add_step_logs(r, wt, sums, latest, f"fit: {type(self).__name__}.train_step")
                wsum += wt
                seen += bs if win is None or win[1] == windows[-1][1] else 0
                logs = self._epoch_logs(sums, wsum, latest, custom)
                for cb in cbs:
                    cb.on_train_batch_end(step, dict(logs))
                if bar and verbose == 1:
                    bar.update(step + 1, logs, seen)
                if dist is not None:
                    dist.sync_control(self)  # rank 0's callbacks decide: stop, learning rate
                if self.stop_training:
                    break
            if streams is not None:
                streams.end()  # the ranks' stream states gathered: those of one process
            if wsum == 0:
                break
            logs = self._epoch_logs(sums, wsum, latest, custom)
            done = ran
            partial = (source is None and seen < n) or (source is not None and steps is not None and ran < steps)
            if partial:
                history.partial_epochs.append(epoch)
            if (val is not None or val_source is not None) and (dist is None or dist.is_root):
                if tbptt is not None:
                    self.reset_states()
                if val_source is not None:
                    vlogs = self._evaluate_source(val_source)
                elif self._overrides("test_step"):
                    vlogs = self._evaluate_custom(val, val_bs)
                else:
                    vlogs = self._evaluate_arrays(val[0], val[1], val[2], val_bs)
                if tbptt is not None:
                    self.reset_states()
                logs.update({f"val_{k}": v for k, v in vlogs.items()})
            elif streams is not None and (val is not None or val_source is not None):
                self.reset_states()  # the other ranks end where rank 0's validation leaves its states
            if verbose == 1:
                bar.target = bar.target or done
                bar.finish(done, logs, seen)
            elif verbose == 2:
                bar.target = bar.target or done
                print(bar.summary_line(done, logs, seen), file=stream, flush=True)
            for cb in cbs:
                cb.on_epoch_end(epoch, logs)
            if dist is not None:
                dist.sync_control(self)
            last_logs = logs
            if source is not None and source.exhausted:
                break
        history.stop_reason = self.stop_reason   # a non-finite loss, or a callback's reason (TimeBudget)
        for cb in cbs:
            cb.on_train_end(dict(last_logs))
        if dist is not None:  # e.g. EarlyStopping(restore_best_weights) set rank 0's weights
            _distributed.fit_end(dist, self)
        return history

    def continue_from_epoch(self, epoch):
        """Called by a callback's ``on_train_begin`` (e.g. :class:`~rnnlab.callbacks.BackupAndRestore` after
        restoring a backup): this ``fit`` starts at ``epoch`` (0-based) instead of ``initial_epoch``."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"continue_from_epoch: epoch must be a non-negative int, got {epoch!r}")
        self._initial_epoch = int(epoch)

    def _epoch_logs(self, sums, wsum, latest, custom):
        logs = {k: v / wsum for k, v in sums.items()}
        if custom:
            logs.update(latest)
        else:
            logs.update(self._metric_logs())
        return logs

    def _overrides(self, name):
        """True when the model's class replaces the engine's ``name`` step (Keras' custom train/test/predict)."""
        return getattr(type(self), name, None) is not getattr(Engine, name)

    def _batch_packer(self):
        """For an overridden ``train_step`` on arrays: rows ``idx`` as ``(x, y[, sample_weight])``, one array per
        input/output (a list when there are several)."""
        def one(a):
            return a[0] if len(a) == 1 else a

        def pack(xs, ys, sws, idx):
            data = (one([a[idx] for a in xs]), one([take(a, idx) for a in ys]))
            if any(s is not None for s in sws):
                data += (one([take(a, idx) for a in sws]),)
            return data
        return pack

    def _evaluate_custom(self, val, batch_size):
        """Validation through an overridden ``test_step`` on arrays."""
        pack = self._batch_packer()
        return self._run_test_steps(pack(val[0], val[1], val[2], sl) for sl in batch_slices(len(val[0][0]),
                                                                                             batch_size))

    def _evaluate_source(self, source):
        """Loss and metrics over the batches of a dataset (``test_step`` per batch)."""
        if self._overrides("test_step"):
            return self._run_test_steps(source.epoch_batches())
        for m in self.metrics:
            m.reset()
        sums, wsum = {}, 0
        logs = {}
        for b in source.epoch_batches():
            bx, by, bw = self._unpack(b, "evaluate (a batch of the dataset)")
            xs, ys, sws = self._prepare(bx, by, bw, "evaluate (a batch of the dataset)")
            logs = self._evaluate_arrays(xs, ys, sws, max(len(xs[0]), 1), reset=False)
            bs = len(xs[0])
            for k, v in logs.items():
                if k == "loss" or k.endswith("_loss"):
                    sums[k] = sums.get(k, 0.0) + v * bs
            wsum += bs
        if wsum == 0:
            raise ValueError("evaluate: the dataset gave no batch")
        logs.update({k: v / wsum for k, v in sums.items()})
        return logs

    def _run_test_steps(self, batches):
        for m in self.metrics:
            m.reset()
        sums, wsum, latest = {}, 0, {}
        for b in batches:
            r = self.test_step(b)
            bs = _batch_len(b)
            _add_step_logs(r, bs, sums, latest, f"evaluate: {type(self).__name__}.test_step")
            wsum += bs
        if wsum == 0:
            raise ValueError("evaluate: no batch to evaluate")
        return {**{k: v / wsum for k, v in sums.items()}, **latest}


def _concat_outputs(parts):
    """The per-batch outputs of ``predict_step`` joined along the batch axis (arrays, lists or dicts of them)."""
    first = parts[0]
    if isinstance(first, dict):
        return {k: np.concatenate([np.asarray(p[k]) for p in parts], axis=0) for k in first}
    if isinstance(first, (list, tuple)):
        return [np.concatenate([np.asarray(p[j]) for p in parts], axis=0) for j in range(len(first))]
    return np.concatenate([np.asarray(p) for p in parts], axis=0)


def _add_step_logs(logs, weight, sums, latest, who):
    """Fold one custom step's logs into an epoch's: ``loss`` and ``*_loss`` are summed times ``weight`` (the
    batch's rows; the caller divides by the total), any other value (a metric's running result) is kept as the
    latest. ``who`` names the step in the error when it returns no dict."""
    if not isinstance(logs, dict):
        raise TypeError(f"{who} must return a dict of logs, got {type(logs).__name__}")
    for k, v in logs.items():
        if k == "loss" or k.endswith("_loss"):
            sums[k] = sums.get(k, 0.0) + float(v) * weight
        else:
            latest[k] = v


def _batch_len(batch):
    """The number of samples of a batch ``(x, ...)`` or ``x`` (arrays, lists or dicts): the first array's length."""
    a = batch
    while True:
        if isinstance(a, dict):
            if not a:
                return 1
            a = next(iter(a.values()))
        elif isinstance(a, (tuple, list)):
            if not a:
                return 1
            a = a[0]
        else:
            break
    try:
        return max(int(len(a)), 1)
    except TypeError:
        return 1
