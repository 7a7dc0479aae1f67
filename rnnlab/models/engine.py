"""The training engine of functional models: compile / fit / evaluate / predict and the ``*_on_batch`` methods.

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

    A subclass provides: ``_inputs_names()``, ``_outputs_names()``, ``_prepare_inputs(x, what)`` (-> list of
    arrays), ``_run(xs, training)`` (-> list of outputs, list of output masks), ``_backprop(grads)`` and
    ``_pack_outputs(list)``."""

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

    def compute_gradients(self, x, y, sample_weight=None, training=False):
        """Forward, loss and backward on one batch *without* an update: afterwards every layer's ``grads``
        holds dL/dW (summed over a shared layer's calls). Returns the loss. For diagnostics and gradient
        checks; ``training`` switches dropout on."""
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
        return total

    def test_step(self, data):
        """Loss and metrics of one batch ``(x, y[, sample_weight])`` in inference mode (no update)."""
        x, y, sw = self._unpack(data, "test_step")
        self._require_compiled("test_step")
        xs, ys, sws = self._prepare(x, y, sw, "test_step")
        return self._evaluate_arrays(xs, ys, sws, max(len(xs[0]), 1))

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

    def _evaluate_arrays(self, xs, ys, sws, batch_size, bar=None):
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
        return self._return(self.test_step((x, y, sample_weight)), return_dict)

    def predict_on_batch(self, x):
        """The model outputs for one batch (inference mode)."""
        xs = self._prepare_inputs(x, "predict_on_batch")
        return self._pack_outputs(self._run(xs, False)[0])

    def _return(self, logs, return_dict):
        if return_dict:
            return logs
        return logs["loss"] if len(logs) == 1 else list(logs.values())

    def predict(self, x, batch_size=32, verbose=0):
        """Outputs for ``x`` in batches of ``batch_size`` (inference mode): one array, a list, or a dict (as the
        model's outputs were given)."""
        batch_size = check_batch_size(batch_size)
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

    def evaluate(self, x, y, batch_size=32, verbose=0, sample_weight=None, return_dict=False):
        """Loss (and metrics) over ``x``/``y``: a float, ``[loss, ...]``, or a dict."""
        self._require_compiled("evaluate")
        batch_size = check_batch_size(batch_size)
        xs, ys, sws = self._prepare(x, y, sample_weight, "evaluate")
        steps = math.ceil(len(xs[0]) / batch_size)
        bar = ProgressBar(steps) if verbose else None
        logs = self._evaluate_arrays(xs, ys, sws, batch_size, bar=bar if verbose == 1 else None)
        if verbose == 1:
            bar.finish(steps, logs, len(xs[0]))
        elif verbose:
            print(bar.summary_line(steps, logs, len(xs[0])), file=bar.stream, flush=True)
        return self._return(logs, return_dict)

    def fit(self, x, y=None, batch_size=32, epochs=1, verbose=1, callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, sample_weight=None, initial_epoch=0, stream=None,
            tbptt_steps=None, class_weight=None):
        """Train for ``epochs`` passes over the data; returns a :class:`~rnnlab.callbacks.History`.

        ``validation_split`` holds out the *last* fraction of the data (before shuffling), as Keras.
        A NaN/inf loss or gradient stops training before the bad update, with a warning naming the
        epoch and step; the weights keep their last finite values (``history.stop_reason`` says why).

        ``class_weight``: ``{class: weight}`` (one output); each sample's weight is multiplied by the weight of
        its class (integer labels, one-hot rows or a 0/1 column; per time step for ``(N, T)`` labels). A class of
        ``y`` without an entry keeps weight 1 (as Keras); an entry for a class that is not in ``y`` is an error.

        ``tbptt_steps=k`` (or ``(k1, k2)``) trains with truncated BPTT (:class:`rnnlab.training.TBPTT`):
        each batch of ``batch_size`` sequences (N, T, ...) is run in windows along time, one update per
        ``k1`` steps, the gradient flowing ``k2`` steps back, the state carried between windows by the
        model's stateful recurrent layers (reset at the start of each batch). One progress step is one
        window; the epoch loss is the mean over all steps. Validation runs whole sequences from reset
        states (``len(x_val)`` must be a multiple of ``batch_size``).
        """
        self._require_compiled("fit")
        batch_size = check_batch_size(batch_size)
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"fit: epochs must be a non-negative int, got {epochs!r}")
        xs, ys, sws = self._prepare(x, y, sample_weight, "fit")
        if class_weight is not None:
            sws = self._apply_class_weight(class_weight, ys, sws)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("fit: validation_data must be (x_val, y_val) or (x_val, y_val, sample_weight)")
            val = self._prepare(validation_data[0], validation_data[1],
                                validation_data[2] if len(validation_data) == 3 else None, "fit(validation_data)")
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
        n = len(xs[0])
        if n == 0:
            raise ValueError("fit: no training samples")
        dist = _distributed.current()  # data-parallel under mpiexec: rank 0 logs, calls back and validates
        if dist is not None:
            _distributed.fit_begin(dist, self, xs)
            if not dist.is_root:
                verbose, callbacks = 0, None
        tbptt = None
        windows = [None]
        local_bs = batch_size
        if tbptt_steps is not None:
            from ..training import TBPTT
            if len(xs) != 1 or len(ys) != 1:
                raise ValueError("fit: tbptt_steps needs a model with one input and one output")
            tbptt = TBPTT.from_steps(self, tbptt_steps)
            if dist is not None and (batch_size % dist.size or n % batch_size):
                raise ValueError(f"fit: truncated BPTT on {dist.size} MPI ranks needs batch_size ({batch_size}) to be a "
                                 f"multiple of the number of ranks and to divide the number of sequences ({n}); "
                                 f"each rank owns batch_size / {dist.size} of the streams")
            local_bs = batch_size if dist is None else batch_size // dist.size
            _, T = tbptt.check_data(xs[0], ys[0], local_bs, sws[0])
            windows = tbptt.windows(T)
            if val is not None:
                tbptt.check_data(val[0][0], val[1][0], local_bs, val[2][0], "fit(validation)")
        history = History()
        cbs = list(callbacks or []) + [history]
        for cb in cbs:
            if not isinstance(cb, Callback):
                raise TypeError(f"fit: callbacks must be Callback instances, got {type(cb).__name__}")
            cb.set_model(self)
        self.history = history
        self.stop_training = False
        self.stop_reason = None
        stream = stream or sys.stdout
        steps = math.ceil(n / batch_size) if tbptt is None else n // batch_size * len(windows)
        params = {"epochs": epochs, "steps": steps, "verbose": verbose, "batch_size": batch_size, "samples": n}
        for cb in cbs:
            if hasattr(cb, "set_params"):
                cb.set_params(params)
        for cb in cbs:
            cb.on_train_begin({})
        last_logs: dict = {}
        loss_names, _ = self._log_names()
        for epoch in range(initial_epoch, epochs):
            if self.stop_training:
                break
            for cb in cbs:
                cb.on_epoch_begin(epoch, {})
            if dist is not None:
                dist.sync_control(self)  # e.g. LearningRateScheduler ran on rank 0
            for m in self.metrics:
                m.reset()
            order = backend.rng().permutation(n) if shuffle else None
            if dist is not None and order is not None:
                dist.bcast_(order)  # rank 0's order: the global batches of one process
            if verbose in (1, 2):
                print(f"Epoch {epoch + 1}/{epochs}", file=stream, flush=True)
            bar = ProgressBar(steps, stream=stream) if verbose in (1, 2) else None
            loss_sum, per_sum, seen, wsum = 0.0, None, 0, 0
            step = -1
            units = ((sl, w) for sl in batch_slices(n, batch_size) for w in windows)
            for step, (sl, win) in enumerate(units):
                idx = order[sl] if order is not None else sl
                if dist is not None:
                    idx = _distributed.local_rows(dist, idx)
                for cb in cbs:
                    cb.on_train_batch_begin(step, {})
                try:
                    if win is None:
                        total, per = self._train_batch([a[idx] for a in xs], [take(a, idx) for a in ys],
                                                       [take(a, idx) for a in sws], epoch, step)
                    else:
                        total = tbptt.train_window(xs[0], ys[0], sws[0], idx, win, epoch, step)
                        per = []
                except NonFiniteLoss as e:
                    history.stop_reason = self.stop_reason = warn_stop(e, bar)
                    self.stop_training = True
                    break
                bs = sl.stop - sl.start
                wt = bs if win is None else bs * (win[1] - win[2])  # TBPTT: weight by the window's new steps
                loss_sum += total * wt
                per = [p for p in per if p is not None]
                per_sum = [p * wt for p in per] if per_sum is None else [a + p * wt for a, p in zip(per_sum, per)]
                wsum += wt
                seen += bs if win is None or win[1] == windows[-1][1] else 0
                logs = {"loss": loss_sum / wsum, **dict(zip(loss_names, [p / wsum for p in per_sum])),
                        **self._metric_logs()}
                for cb in cbs:
                    cb.on_train_batch_end(step, dict(logs))
                if bar and verbose == 1:
                    bar.update(step + 1, logs, seen)
                if dist is not None:
                    dist.sync_control(self)  # rank 0's callbacks decide: stop, learning rate
                if self.stop_training:
                    break
            if wsum == 0:
                break
            logs = {"loss": loss_sum / wsum, **dict(zip(loss_names, [p / wsum for p in per_sum or []])),
                    **self._metric_logs()}
            if val is not None and (dist is None or dist.is_root):
                if tbptt is not None:
                    self.reset_states()
                vlogs = self._evaluate_arrays(val[0], val[1], val[2], local_bs)
                if tbptt is not None:
                    self.reset_states()
                logs.update({f"val_{k}": v for k, v in vlogs.items()})
            done = step + 1 if seen < n else steps
            if verbose == 1:
                bar.finish(done, logs, seen)
            elif verbose == 2:
                print(bar.summary_line(done, logs, seen), file=stream, flush=True)
            for cb in cbs:
                cb.on_epoch_end(epoch, logs)
            if dist is not None:
                dist.sync_control(self)
            last_logs = logs
        for cb in cbs:
            cb.on_train_end(dict(last_logs))
        if dist is not None:  # e.g. EarlyStopping(restore_best_weights) set rank 0's weights
            _distributed.fit_end(dist, self)
        return history
