"""Sequential: a plain stack of layers, with Keras' compile / fit / evaluate / predict.

The model owns the order: forward runs the layers first to last (passing each layer's output
mask to the next), the loss gives dL/d(output), backward runs the layers last to first, and the
optimizer updates every trainable weight in place.
"""
from __future__ import annotations

import math
import sys
import warnings

import numpy as np

from .. import backend, losses as _losses, metrics as _metrics, optimizers as _optimizers
from .. import variables as _variables
from ..callbacks import Callback, History
from ..layers.base import Layer, format_shape
from ..training import NonFiniteLoss, ProgressBar, batch_slices, check_batch_size, grads_finite, take


class InputSpec:
    """What ``rnnlab.Input(shape)`` returns: the input shape (without batch) of a Sequential model."""

    def __init__(self, shape, batch_size=None, dtype=None, name=None):
        if isinstance(shape, int):
            shape = (shape,)
        if not isinstance(shape, (tuple, list)):
            raise TypeError(f"Input: shape must be a tuple of ints/None, got {shape!r}")
        self.shape = (batch_size,) + tuple(None if d is None else int(d) for d in shape)
        if dtype is not None:
            dt = np.dtype(dtype)
            if dt.kind not in "biuf":
                raise TypeError(f"Input: dtype must be a numeric dtype such as 'float32' or 'int32', got {dtype!r}")
            dtype = dt.name
        self.dtype = dtype
        self.name = name

    def __repr__(self):
        return f"Input(shape={format_shape(self.shape[1:])})"


from .functional import Input, InputLayer, is_symbolic  # noqa: E402,F401  (rnnlab.Input: a symbolic tensor)


class Sequential:
    """A linear stack of layers: ``Sequential([Embedding(20000, 128), LSTM(128), Dense(1, "sigmoid")])``."""

    def __init__(self, layers=None, name=None):
        self.name = name or backend.unique_name("sequential")
        self.layers: list[Layer] = []
        self._input_shape = None
        self._input_dtype = None
        self.optimizer = None
        self.loss = None
        self.metrics: list = []
        self.compiled = False
        self.stop_training = False
        self.stop_reason = None
        self.history = None
        for layer in layers or []:
            self.add(layer)

    # ---------------------------------------------------------------- building
    def add(self, layer):
        """Append a layer (or, first, an ``Input``); builds it at once when the input shape is known."""
        if isinstance(layer, InputLayer):
            layer = layer.output
        if is_symbolic(layer):  # rnnlab.Input(...): its shape and dtype
            layer = InputSpec(layer.shape[1:], batch_size=layer.shape[0], name=layer.name,
                              dtype=getattr(layer._keras_history[0], "input_dtype", None))
        if isinstance(layer, InputSpec):
            if self.layers:
                raise ValueError("Input(...) can only be the first entry of a Sequential model")
            self._input_shape = layer.shape
            self._input_dtype = layer.dtype
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add: expected a Layer, got {type(layer).__name__}")
        if any(layer is other or layer.name == other.name for other in self.layers):
            raise ValueError(f"Sequential.add: a layer named '{layer.name}' is already in the model; layer names must be unique")
        if getattr(layer, "return_state", False):
            raise ValueError(f"Layer '{layer.name}' has return_state=True, which returns several arrays; "
                             "Sequential needs one output per layer")
        if not self.layers and self._input_shape is None and layer.batch_input_shape is not None:
            self._input_shape = layer.batch_input_shape
        self.layers.append(layer)
        if self._input_shape is not None:
            self.build(self._input_shape)

    def build(self, input_shape=None):
        """Build every layer for ``input_shape`` (with the batch axis), propagating shapes layer by layer."""
        shape = tuple(input_shape) if input_shape is not None else self._input_shape
        if shape is None:
            raise ValueError("Sequential.build: the input shape is unknown; give the first layer input_shape= or "
                             "start with rnnlab.Input(shape), or call the model on data")
        self._input_shape = shape
        for layer in self.layers:
            if layer.built:
                expected = layer.input_shape
                if expected is not None and len(expected) == len(shape) and any(
                        a is not None and b is not None and a != b for a, b in zip(expected[1:], shape[1:])):
                    raise ValueError(f"Layer '{layer.name}' was built for input {format_shape(expected)} but receives {format_shape(shape)}")
            else:
                layer._maybe_build(shape)
            shape = layer.output_shape if layer.output_shape is not None else layer.compute_output_shape(shape)
        self.output_shape = shape

    @property
    def input_shape(self):
        """The model's input shape with the batch axis (``None`` until known)."""
        return self._input_shape

    def pop(self):
        """Remove and return the last layer (as Keras' ``Sequential.pop``)."""
        if not self.layers:
            raise TypeError("Sequential.pop: there are no layers in the model")
        layer = self.layers.pop()
        if self.layers and self._input_shape is not None:
            self.build(self._input_shape)
        else:
            self.output_shape = self._input_shape
        return layer

    def reset_states(self):
        """Zero the carried states of every stateful recurrent layer."""
        for layer in self.layers:
            if getattr(layer, "stateful", False):
                layer.reset_states()

    @property
    def built(self):
        return bool(self.layers) and all(layer.built for layer in self.layers)

    def get_layer(self, name=None, index=None):
        """The layer called ``name`` (or at position ``index``)."""
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No layer named {name!r}; layers: {[l.name for l in self.layers]}")

    # ---------------------------------------------------------------- weights
    def _require_built(self, what):
        if not self.built:
            raise ValueError(f"Sequential.{what}: the model is not built yet; give the first layer input_shape=, "
                             "start with rnnlab.Input(shape), or fit/call it on data first")

    def iter_weights(self):
        """``(path, owner_layer, weight_name)`` for every weight, layer by layer in Keras order."""
        for layer in self.layers:
            yield from layer.iter_weights()

    def trainable_weight_refs(self):
        """The refs of :meth:`iter_weights` that train (layers with ``trainable=False`` left out):
        what ``optimizer.apply`` receives."""
        refs = []
        for layer in self.layers:
            refs.extend(layer.trainable_weight_refs())
        return refs

    weights = property(lambda self: _variables.weights_of(self), doc="All weights as Variable views (Keras order).")
    trainable_weights = property(lambda self: _variables.trainable_weights_of(self))
    non_trainable_weights = property(lambda self: _variables.non_trainable_weights_of(self))

    def get_weights(self):
        """Copies of all weights, the layers' ``get_weights()`` lists concatenated (Keras order)."""
        self._require_built("get_weights")
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights):
        """Load weights given in :meth:`get_weights` order (count and shapes checked, copied in place)."""
        self._require_built("set_weights")
        weights = list(weights)
        total = sum(len(list(layer.iter_weights())) for layer in self.layers)
        if len(weights) != total:
            raise ValueError(f"Sequential.set_weights: the model has {total} weight arrays, got {len(weights)}")
        i = 0
        for layer in self.layers:
            n = len(list(layer.iter_weights()))
            layer.set_weights(weights[i:i + n])
            i += n

    def count_params(self):
        """Total number of weights (trainable and not)."""
        self._require_built("count_params")
        return sum(layer.count_params() for layer in self.layers)

    def summary(self, print_fn=None, line_length=70):
        """Print a Keras-style table: each layer's type, output shape and parameter count."""
        self._require_built("summary")
        out = print_fn or print
        w1, w2 = 32, 24
        w3 = max(line_length - w1 - w2, 12)
        rule = "─" * (w1 + w2 + w3)
        out(f'Model: "{self.name}"')
        out(rule)
        out(f"{'Layer (type)':<{w1}}{'Output Shape':<{w2}}{'Param #':>{w3}}")
        out("═" * (w1 + w2 + w3))
        for layer in self.layers:
            label = f"{layer.name} ({type(layer).__name__})"
            out(f"{label:<{w1}}{format_shape(layer.output_shape):<{w2}}{layer.count_params():>{w3},}")
        out(rule)
        total = self.count_params()
        trainable = sum(layer.count_trainable_params() for layer in self.layers)
        itemsize = np.dtype(self.layers[0].dtype).itemsize if self.layers else 4

        def size(n):
            b = n * itemsize
            return f"{b / 2**20:.2f} MB" if b >= 2**20 else f"{b / 2**10:.2f} KB" if b >= 2**10 else f"{b:.2f} B"

        out(f"Total params: {total:,} ({size(total)})")
        out(f"Trainable params: {trainable:,} ({size(trainable)})")
        out(f"Non-trainable params: {total - trainable:,} ({size(total - trainable)})")
        out(rule)

    # ---------------------------------------------------------------- running
    def _prepare_x(self, x):
        if hasattr(x, "detach") and hasattr(x, "numpy"):
            x = x.detach().cpu().numpy()
        x = np.asarray(x)
        if x.ndim == 0:
            raise ValueError(f"x must have a batch dimension, got a scalar {x!r}")
        if not self.layers:
            raise ValueError("The model has no layers")
        if not self.built:
            self.build((None,) + x.shape[1:])
        if self._input_dtype is not None and x.dtype != self._input_dtype:
            target = np.dtype(self._input_dtype)
            if target.kind in "iu" and x.dtype.kind == "f" and not np.array_equal(x, np.round(x)):
                raise TypeError(f"x: the model input is declared with dtype {target.name} (token ids), "
                                f"got non-integer values of dtype {x.dtype}")
            x = x.astype(target)
        x = self.layers[0]._convert_inputs(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"x must be numeric, got dtype {x.dtype}")
        return x

    def _forward(self, x, training):
        mask = None
        for layer in self.layers:
            y = layer.forward(x, training=training, mask=mask)
            mask = layer.compute_mask(x, mask)
            x = y
        return x, mask

    def _backward(self, grad):
        """Run the layers' backward passes last to first. Layers before the first one with trainable
        weights are skipped: nothing upstream needs their gradients (e.g. a frozen Embedding), so the
        lowest layer that runs is told it need not compute dL/dx (``Layer.input_grad_needed``)."""
        first = next((i for i, layer in enumerate(self.layers)
                      if next(iter(layer.trainable_weight_refs()), None) is not None), len(self.layers))
        if first == len(self.layers):
            return
        lowest = self.layers[first]
        lowest.input_grad_needed = False
        try:
            for layer in self.layers[:first - 1:-1] if first > 0 else reversed(self.layers):
                grad = layer.backward(grad)
                if grad is None:
                    break
        finally:
            lowest.input_grad_needed = True

    def __call__(self, x, training=False):
        """Forward pass on ``x`` (one batch) returning the output; builds the model if needed."""
        return self._forward(self._prepare_x(x), training)[0]

    def predict(self, x, batch_size=32, verbose=0):
        """Outputs for ``x`` in batches of ``batch_size`` (inference mode: no dropout)."""
        batch_size = check_batch_size(batch_size)
        x = self._prepare_x(x)
        outs = []
        n = len(x)
        bar = ProgressBar(math.ceil(n / batch_size)) if verbose else None
        for i, sl in enumerate(batch_slices(n, batch_size)):
            outs.append(self._forward(x[sl], training=False)[0])
            if bar:
                bar.update(i + 1, {})
        if bar:
            bar.finish(math.ceil(n / batch_size), {})
        if not outs:
            return np.zeros((0,) + tuple(self.output_shape[1:]), dtype=self.layers[-1].dtype)
        return np.concatenate(outs, axis=0)

    # -------------------------------------------------------------- training
    def compile(self, optimizer="rmsprop", loss=None, metrics=None):
        """Choose optimizer, loss and metrics (names or instances, as in Keras)."""
        self.optimizer = _optimizers.get(optimizer)
        self.loss = None if loss is None else _losses.get(loss)
        if metrics is None:
            metrics = []
        if isinstance(metrics, (str, _metrics.Metric)):
            metrics = [metrics]
        self._metric_ids = list(metrics)
        self.metrics = [_metrics.get(m, loss=self.loss) for m in self._metric_ids]
        self.compiled = True

    def _require_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(f"Sequential.{what}: call model.compile(optimizer, loss, metrics) first")
        if self.loss is None:
            raise ValueError(f"Sequential.{what}: the model was compiled without a loss; call "
                             f"model.compile(optimizer, loss=...) with one of {_losses.names()}")

    def _check_xy(self, x, y, sample_weight, what):
        if y is None:
            raise ValueError(f"{what}: y is required")
        y = np.asarray(y)
        if len(x) != len(y):
            raise ValueError(f"{what}: x and y must have the same number of samples, got x: {len(x)} and y: {len(y)}")
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
            if len(sample_weight) != len(x):
                raise ValueError(f"{what}: sample_weight has {len(sample_weight)} entries for {len(x)} samples")
        return y, sample_weight

    def _loss_mask(self, out, mask):
        if mask is not None and out.ndim >= 3 and mask.shape == out.shape[:2]:
            return mask
        return None

    def _train_step(self, xb, yb, swb, epoch=0, step=0, time_mask=None):
        out, mask = self._forward(xb, training=True)
        lmask = self._loss_mask(out, mask)
        if time_mask is not None:  # truncated BPTT: only the window's new steps enter the loss
            lmask = time_mask if lmask is None else lmask & time_mask
        loss, grad = self.loss.forward_backward(yb, out, sample_weight=swb, mask=lmask)
        if not math.isfinite(loss):
            raise NonFiniteLoss("loss", loss, epoch, step)
        self._backward(grad)
        refs = self.trainable_weight_refs()
        ok, gnorm = grads_finite([owner.grads[w] for _, owner, w in refs])
        if not ok:
            raise NonFiniteLoss("gradient norm", gnorm, epoch, step)
        self.optimizer.apply(refs)
        # metrics see the predictions of this step (made before the update), as in Keras
        for m in self.metrics:
            m.update(yb, out, sample_weight=swb, mask=lmask)
        return loss

    def train_on_batch(self, x, y, sample_weight=None, return_dict=False):
        """One gradient step on one batch; returns the loss (or a dict with the metrics)."""
        self._require_compiled("train_on_batch")
        x = self._prepare_x(x)
        y, sample_weight = self._check_xy(x, y, sample_weight, "train_on_batch")
        for m in self.metrics:
            m.reset()
        loss = self._train_step(x, y, sample_weight)
        logs = {"loss": loss, **{m.name: m.result() for m in self.metrics}}
        if return_dict:
            return logs
        return loss if not self.metrics else [loss] + [m.result() for m in self.metrics]

    def test_on_batch(self, x, y, sample_weight=None, return_dict=False):
        """Loss (and metrics) of one batch in inference mode; no update."""
        self._require_compiled("test_on_batch")
        x = self._prepare_x(x)
        y, sample_weight = self._check_xy(x, y, sample_weight, "test_on_batch")
        logs = self._evaluate_arrays(x, y, sample_weight, max(len(x), 1))
        if return_dict:
            return logs
        return logs["loss"] if not self.metrics else list(logs.values())

    def predict_on_batch(self, x):
        """The model output for one batch (inference mode)."""
        return self._forward(self._prepare_x(x), training=False)[0]

    def _evaluate_arrays(self, x, y, sample_weight, batch_size, bar=None):
        for m in self.metrics:
            m.reset()
        total, count = 0.0, 0.0
        for sl in batch_slices(len(x), batch_size):
            out, mask = self._forward(x[sl], training=False)
            lmask = self._loss_mask(out, mask)
            sw = take(sample_weight, sl)
            total += self.loss(y[sl], out, sample_weight=sw, mask=lmask) * (sl.stop - sl.start)
            count += sl.stop - sl.start
            for m in self.metrics:
                m.update(y[sl], out, sample_weight=sw, mask=lmask)
            if bar is not None:
                bar.update(sl.stop // batch_size + (sl.stop % batch_size > 0),
                           {"loss": total / count, **{m.name: m.result() for m in self.metrics}}, int(count))
        return {"loss": total / max(count, 1), **{m.name: m.result() for m in self.metrics}}

    def evaluate(self, x, y, batch_size=32, verbose=0, sample_weight=None, return_dict=False):
        """Loss (and metrics) over ``x``/``y``: a float, ``[loss, *metrics]``, or a dict."""
        self._require_compiled("evaluate")
        batch_size = check_batch_size(batch_size)
        x = self._prepare_x(x)
        y, sample_weight = self._check_xy(x, y, sample_weight, "evaluate")
        steps = math.ceil(len(x) / batch_size)
        bar = ProgressBar(steps) if verbose else None
        logs = self._evaluate_arrays(x, y, sample_weight, batch_size, bar=bar if verbose == 1 else None)
        if verbose == 1:
            bar.finish(steps, logs, len(x))
        elif verbose:
            print(bar.summary_line(steps, logs, len(x)), file=bar.stream, flush=True)
        if return_dict:
            return logs
        return logs["loss"] if not self.metrics else list(logs.values())

    def fit(self, x, y=None, batch_size=32, epochs=1, verbose=1, callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, sample_weight=None, initial_epoch=0, stream=None,
            tbptt_steps=None):
        """Train for ``epochs`` passes over the data; returns a :class:`~rnnlab.callbacks.History`.

        ``validation_split`` holds out the *last* fraction of the data (before shuffling), as Keras.
        A NaN/inf loss or gradient stops training before the bad update, with a warning naming the
        epoch and step; the weights keep their last finite values (``history.stop_reason`` says why).

        ``tbptt_steps=k`` (or ``(k1, k2)``) trains with truncated BPTT (:class:`rnnlab.training.TBPTT`):
        each batch of ``batch_size`` sequences (N, T, ...) is run in windows along time, one update per
        ``k1`` steps, the gradient flowing ``k2`` steps back, the state carried between windows by the
        model's stateful recurrent layers (reset at the start of each batch). One progress step is one
        window; the epoch loss is the mean over all steps. Validation runs whole sequences from reset
        states (``len(x_val)`` must be a multiple of ``batch_size``).
        """
        self._require_compiled("fit")
        batch_size = check_batch_size(batch_size)
        if not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"fit: epochs must be a non-negative int, got {epochs!r}")
        x = self._prepare_x(x)
        y, sample_weight = self._check_xy(x, y, sample_weight, "fit")
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("fit: validation_data must be (x_val, y_val) or (x_val, y_val, sample_weight)")
            vx = self._prepare_x(validation_data[0])
            vy, vsw = self._check_xy(vx, validation_data[1], validation_data[2] if len(validation_data) == 3 else None,
                                     "fit(validation_data)")
            val = (vx, vy, vsw)
        elif validation_split:
            if not 0.0 < validation_split < 1.0:
                raise ValueError(f"fit: validation_split must be in (0, 1), got {validation_split}")
            split = int(len(x) * (1.0 - validation_split))
            if split == 0 or split == len(x):
                raise ValueError(f"fit: validation_split={validation_split} leaves an empty train or validation set for {len(x)} samples")
            val = (x[split:], y[split:], take(sample_weight, slice(split, None)))
            x, y, sample_weight = x[:split], y[:split], take(sample_weight, slice(None, split))
        if len(x) == 0:
            raise ValueError("fit: no training samples")
        tbptt = None
        if tbptt_steps is not None:
            from ..training import TBPTT
            tbptt = TBPTT.from_steps(self, tbptt_steps)
            _, T = tbptt.check_data(x, y, batch_size, sample_weight)
            windows = tbptt.windows(T)
            if val is not None:
                tbptt.check_data(val[0], val[1], batch_size, val[2], "fit(validation)")

        history = History()
        # History goes last so it records keys other callbacks add (e.g. learning_rate), as in Keras 3
        cbs: list[Callback] = list(callbacks or []) + [history]
        last_logs: dict = {}
        for cb in cbs:
            if not isinstance(cb, Callback):
                raise TypeError(f"fit: callbacks must be Callback instances, got {type(cb).__name__}")
            cb.set_model(self)
        self.history = history
        self.stop_training = False
        self.stop_reason = None
        stream = stream or sys.stdout
        n = len(x)
        steps = math.ceil(n / batch_size) if tbptt is None else n // batch_size * len(windows)
        params = {"epochs": epochs, "steps": steps, "verbose": verbose, "batch_size": batch_size,
                  "samples": n}
        for cb in cbs:
            if hasattr(cb, "set_params"):
                cb.set_params(params)
        for cb in cbs:
            cb.on_train_begin({})
        for epoch in range(initial_epoch, epochs):
            if self.stop_training:
                break
            for cb in cbs:
                cb.on_epoch_begin(epoch, {})
            for m in self.metrics:
                m.reset()
            order = backend.rng().permutation(n) if shuffle else None
            if verbose in (1, 2):
                print(f"Epoch {epoch + 1}/{epochs}", file=stream, flush=True)
            bar = ProgressBar(steps, stream=stream) if verbose in (1, 2) else None
            loss_sum, seen, wsum = 0.0, 0, 0
            if tbptt is None:
                units = ((sl, None) for sl in batch_slices(n, batch_size))
            else:
                units = ((sl, w) for sl in batch_slices(n, batch_size) for w in windows)
            for step, (sl, win) in enumerate(units):
                idx = order[sl] if order is not None else sl
                for cb in cbs:
                    cb.on_train_batch_begin(step, {})
                try:
                    if win is None:
                        loss = self._train_step(x[idx], y[idx], take(sample_weight, idx), epoch, step)
                    else:
                        loss = tbptt.train_window(x, y, sample_weight, idx, win, epoch, step)
                except NonFiniteLoss as e:
                    history.stop_reason = self.stop_reason = str(e)
                    if bar is not None and bar.interactive and bar._last_len:
                        bar.stream.write("\n")  # keep the live bar line; the warning goes below it
                        bar._last_len = 0
                    warnings.warn(str(e), RuntimeWarning, stacklevel=2)
                    self.stop_training = True
                    break
                bs = sl.stop - sl.start
                wt = bs if win is None else bs * (win[1] - win[2])  # TBPTT: weight by the window's new steps
                loss_sum += loss * wt
                wsum += wt
                seen += bs if win is None or win[1] == windows[-1][1] else 0
                logs = {"loss": loss_sum / wsum, **{m.name: m.result() for m in self.metrics}}
                for cb in cbs:
                    cb.on_train_batch_end(step, dict(logs))
                if bar and verbose == 1:
                    bar.update(step + 1, logs, seen)
                if self.stop_training:
                    break
            if wsum == 0:
                break
            logs = {"loss": loss_sum / wsum, **{m.name: m.result() for m in self.metrics}}
            if val is not None:
                if tbptt is not None:
                    self.reset_states()
                vlogs = self._evaluate_arrays(val[0], val[1], val[2], batch_size)
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
            last_logs = logs
        for cb in cbs:
            cb.on_train_end(dict(last_logs))
        return history

    # ----------------------------------------------------------------- files
    def get_config(self):
        """JSON-able description: name, input shape/dtype and each layer's class name and config."""
        return {"name": self.name, "input_shape": None if self._input_shape is None else list(self._input_shape),
                "input_dtype": self._input_dtype,
                "layers": [{"class_name": type(l).__name__, "config": l.get_config()} for l in self.layers]}

    @classmethod
    def from_config(cls, config):
        """A new Sequential (fresh weights) from :meth:`get_config`."""
        from ..layers.base import get_layer_class
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError("Sequential.from_config: expected a dict with a 'layers' list")
        model = cls(name=config.get("name"))
        if config.get("input_dtype") is not None:
            model._input_dtype = np.dtype(config["input_dtype"]).name
        for entry in config["layers"]:
            model.layers.append(get_layer_class(entry["class_name"]).from_config(dict(entry["config"])))
        if config.get("input_shape") is not None:
            model.build(tuple(config["input_shape"]))
        return model

    def to_json(self, **kwargs):
        """The architecture as JSON (``{"class_name": "Sequential", "config": ...}``); see ``model_from_json``."""
        import json
        return json.dumps({"class_name": "Sequential", "config": self.get_config()}, **kwargs)

    def save(self, path, include_optimizer=True):
        """Save architecture, weights, compile settings (and optimizer state) to one ``.npz`` file, no pickle."""
        from .saving import save_model
        save_model(self, path, include_optimizer=include_optimizer)

    def save_weights(self, path):
        """Save only the weights (one ``.npz``, no pickle); see :meth:`load_weights`."""
        from .saving import save_weights
        save_weights(self, path)

    def load_weights(self, path):
        """Load weights from :meth:`save_weights` or :meth:`save` files, matched by position (shapes checked).

        A Keras 3 file (``*.weights.h5``, or a ``*.keras`` archive) is read by
        :func:`rnnlab.models.keras_weights.load_keras_weights` (needs h5py).
        """
        if str(path).endswith((".weights.h5", ".keras")):
            from .keras_weights import load_keras_weights
            load_keras_weights(self, path)
            return
        from .saving import load_weights
        load_weights(self, path)
