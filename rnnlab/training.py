"""Training-loop helpers: the live progress bar, batching, and the non-finite-loss signal."""
from __future__ import annotations

import math
import sys
import time

import numpy as np


class NonFiniteLoss(Exception):
    """Raised inside a training step when the loss or the gradient norm is NaN/inf.

    The step's update is *not* applied, so the weights keep their last finite values.
    """

    def __init__(self, what, value, epoch, step):
        self.what, self.value, self.epoch, self.step = what, value, epoch, step
        super().__init__(
            f"{what} is {value} at epoch {epoch + 1}, step {step + 1} (batch index {step}): update skipped, "
            "training stopped, "
            "weights kept at their last finite values (try a lower learning rate or clipnorm)"
        )


def checked_update(optimizer, refs, loss, epoch=0, step=0) -> None:
    """The one NaN policy of every training loop, then the update: a non-finite ``loss`` or gradient norm
    raises :class:`NonFiniteLoss` *before* ``optimizer.apply(refs)``, so the weights keep their last finite
    values. Loops catch it, warn (:func:`warn_stop`) and stop training."""
    if not math.isfinite(loss):
        raise NonFiniteLoss("loss", loss, epoch, step)
    ok, gnorm = grads_finite([owner.grads[w] for _, owner, w in refs])
    if not ok:
        raise NonFiniteLoss("gradient norm", gnorm, epoch, step)
    optimizer.apply(refs)


def warn_stop(error, bar=None) -> str:
    """Report a :class:`NonFiniteLoss` that stops training: a RuntimeWarning below the live progress bar.
    Returns the message (the loops keep it as ``stop_reason``)."""
    import warnings

    if bar is not None and bar.interactive and bar._last_len:
        bar.stream.write("\n")  # keep the live bar line; the warning goes below it
        bar._last_len = 0
    warnings.warn(str(error), RuntimeWarning, stacklevel=3)
    return str(error)


def _fmt_value(v: float) -> str:
    return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.4e}"


def _fmt_per_step(seconds: float, unit: str = "step") -> str:
    """Keras-style time per step: ``1s/step``, ``25ms/step`` or ``310us/step``."""
    if seconds >= 1:
        return f"{seconds:.0f}s/{unit}"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/{unit}"
    return f"{seconds * 1e6:.0f}us/{unit}"


def _fmt_time(seconds: float) -> str:
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{seconds:.0f}s"


class _NullStream:
    """Where the progress of ranks other than 0 goes (rnnlab.distributed)."""

    def write(self, text):
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False


class ProgressBar:
    """A Keras-style one-line progress bar for one epoch.

    ``12/40 [======>.......] - ETA: 3s - loss: 0.4312 - accuracy: 0.8125 - 95 samples/s``

    On a terminal the line is redrawn in place at most ``max_hz`` times a second; when the stream
    is not a terminal (logs, CI) only the final line of each epoch is written, so logs stay clean.
    """

    def __init__(self, target: int, width: int = 30, stream=None, max_hz: float = 10.0, interactive=None):
        self.target = int(target)
        self.width = width
        self.stream = stream if stream is not None else sys.stdout
        from . import distributed
        if not distributed.is_root():  # under mpiexec only rank 0 draws progress
            self.stream, interactive = _NullStream(), False
        self.interactive = (hasattr(self.stream, "isatty") and self.stream.isatty()) if interactive is None else interactive
        self.min_interval = 1.0 / max_hz
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._last_len = 0

    def line(self, step: int, values: dict, samples: int | None = None, final=False) -> str:
        now = time.perf_counter()
        elapsed = now - self.start
        if not self.target and not final:   # a generator without steps_per_epoch: the epoch's length is unknown
            parts = [f"{step}/Unknown", f"{_fmt_time(elapsed)} {_fmt_per_step(elapsed / max(step, 1))}"]
            parts += [f"{k}: {_fmt_value(v)}" for k, v in values.items()]
            return " - ".join(parts)
        n = len(str(self.target))
        frac = step / self.target if self.target else 1.0
        filled = int(self.width * frac)
        bar = "=" * max(filled - 1, 0) + ("=" if final or filled >= self.width else ">" if filled > 0 else "") 
        bar = bar.ljust(self.width, ".")
        parts = [f"{step:>{n}}/{self.target} [{bar}]"]
        if final:
            parts.append(f"{_fmt_time(elapsed)} {_fmt_per_step(elapsed / max(step, 1))}")
        else:
            eta = elapsed / max(step, 1) * (self.target - step)
            parts.append(f"ETA: {_fmt_time(eta)}")
        parts += [f"{k}: {_fmt_value(v)}" for k, v in values.items()]
        if samples is not None and elapsed > 0:
            parts.append(f"{samples / elapsed:.1f} samples/s")
        return " - ".join(parts)

    def summary_line(self, step: int, values: dict, samples: int | None = None) -> str:
        """The ``verbose=2`` form (no bar): ``40/40 - 1s - 25ms/step - loss: 0.4312 - ... - 95.2 samples/s``."""
        elapsed = time.perf_counter() - self.start
        parts = [f"{step}/{self.target}", _fmt_time(elapsed), _fmt_per_step(elapsed / max(step, 1))]
        parts += [f"{k}: {_fmt_value(v)}" for k, v in values.items()]
        if samples is not None and elapsed > 0:
            parts.append(f"{samples / elapsed:.1f} samples/s")
        return " - ".join(parts)

    def update(self, step: int, values: dict, samples: int | None = None) -> None:
        if not self.interactive:
            return
        now = time.perf_counter()
        if now - self._last_draw < self.min_interval and step < self.target:
            return
        self._last_draw = now
        text = self.line(step, values, samples)
        pad = max(self._last_len - len(text), 0)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._last_len = len(text)

    def finish(self, step: int, values: dict, samples: int | None = None) -> None:
        text = self.line(step, values, samples, final=True)
        pad = max(self._last_len - len(text), 0)
        self.stream.write(("\r" if self.interactive else "") + text + " " * pad + "\n")
        self.stream.flush()


def grads_finite(grads) -> tuple[bool, float]:
    """``(all finite, global norm)`` for a list of gradients (arrays, RowSparseGrad or None).

    The norm is one dot product per array. A float32 sum of squares can overflow to inf for
    large but finite gradients, so an infinite norm is confirmed element by element before it
    counts as non-finite (that slow path runs only when the fast norm is not finite).
    """
    from .optimizers import global_norm

    with np.errstate(over="ignore", invalid="ignore"):
        norm = global_norm(grads)
    if math.isfinite(norm):
        return True, norm
    for g in grads:
        if g is None:
            continue
        vals = g.values if hasattr(g, "values") and hasattr(g, "indices") else g
        if not np.all(np.isfinite(vals)):
            return False, norm
    # finite entries whose squares overflowed: recompute the norm in float64
    total = 0.0
    for g in grads:
        if g is not None:
            vals = g.values if hasattr(g, "values") and hasattr(g, "indices") else g
            v = np.asarray(vals, dtype=np.float64).reshape(-1)
            total += float(np.dot(v, v))
    return True, math.sqrt(total)


def batch_slices(n: int, batch_size: int):
    """Consecutive slices of at most ``batch_size`` covering ``range(n)`` (the last one may be shorter)."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def take(a, idx):
    """``a[idx]``, or ``None`` when ``a`` is ``None`` (optional sample weights)."""
    return None if a is None else a[idx]


def check_batch_size(batch_size):
    """Validate ``batch_size`` (a positive int) and return it as ``int``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


# ------------------------------------------------------------------------ truncated BPTT
def _check_steps(arg, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"TBPTT: {arg} must be an int >= 1 (time steps), got {value!r}")
    return int(value)


class TBPTT:
    """Truncated backpropagation through time, TBPTT(k1, k2), for a stateful Sequential model.

    A long sequence (or B long streams side by side, one per batch row) is cut into windows
    along time; each window gets one forward pass, one backward pass and one optimizer update,
    and the recurrent state is *carried* from window to window while the *gradient is cut* at
    the window's first step:

    * ``k1`` (the stride): an update every ``k1`` time steps. Window ``i`` ends at
      ``e_i = min((i + 1) k1, T)``, and only the steps new in it, ``[i k1, e_i)`` (``k1`` of
      them, fewer in a last partial window), contribute to its loss (and metrics).
    * ``k2`` (the depth, ``k2 >= k1``, default ``k1``): how many steps back the gradient
      flows. The window starts at ``s_i = max(0, (i + 1) k1 - k2)`` from the state the network
      had there (a constant: no gradient flows into it), so the loss at step ``t`` is
      backpropagated to step ``s_i``, i.e. through ``t - s_i + 1`` steps: ``k2`` for the last
      step of a full window, ``k2 - k1 + 1`` for the first new one.

    With ``k1 == k2 == k`` the windows are disjoint chunks of ``k`` steps (the usual "train a
    language model on chunks of 35 steps" scheme): each step is run forward once, and the
    state leaving one chunk enters the next. With ``k2 > k1`` consecutive windows overlap by
    ``k2 - k1`` steps, which are recomputed with the updated weights; the state at the start
    of the next window is read from the current window's forward pass
    (:meth:`rnnlab.layers.recurrent.RNN.states_after`). With ``k1 = k2 = T`` it is ordinary
    full BPTT, one update per batch.

    The loss of window ``i`` is the model's loss over the new steps only,
    ``L_i = sum_{t in [e_i - k1, e_i)} l_t w_t / N_i`` (its mean over those steps and the batch;
    masks and ``sample_weight`` as in ``fit``), and its gradient is the exact gradient of
    ``L_i`` with respect to the weights when the state at ``s_i`` is held fixed.

    Requirements, checked with clear errors: the model has at least one recurrent layer; every
    recurrent layer is ``stateful=True`` (the carried state lives in the layer), runs forward in
    time (no ``go_backwards``, no ``Bidirectional``: a backward direction needs the end of the
    sequence first) and has ``return_sequences=True``; the model's output has a time axis and
    ``y`` has one target per step ``(N, T, ...)``; the batch size equals the stateful layers'
    fixed batch size and divides the number of sequences. States are reset at the start of
    every batch of sequences (a batch holds ``batch_size`` independent sequences / streams).
    Dropout masks are drawn once per window.

    Use ``model.fit(x, y, batch_size=B, tbptt_steps=k)`` (or ``tbptt_steps=(k1, k2)``), or
    ``TBPTT(model, k1, k2).train_on_batch(x, y)`` for one batch of full-length sequences.
    """

    def __init__(self, model, k1, k2=None):
        self.k1 = _check_steps("k1", k1)
        self.k2 = self.k1 if k2 is None else _check_steps("k2", k2)
        if self.k2 < self.k1:
            raise ValueError(f"TBPTT: k2 (steps the gradient flows back, {self.k2}) must be >= k1 (steps between "
                             f"updates, {self.k1}); otherwise some steps' losses would have no gradient path")
        self.model = model
        self.recurrent = self._recurrent_layers(model)

    @classmethod
    def from_steps(cls, model, tbptt_steps):
        """``tbptt_steps`` as ``fit`` takes it: ``k`` (``k1 = k2 = k``) or ``(k1, k2)``."""
        if isinstance(tbptt_steps, (tuple, list)):
            if len(tbptt_steps) != 2:
                raise ValueError(f"fit: tbptt_steps must be an int k or a pair (k1, k2), got {tbptt_steps!r}")
            return cls(model, tbptt_steps[0], tbptt_steps[1])
        return cls(model, tbptt_steps)

    @staticmethod
    def _recurrent_layers(model):
        from .layers.recurrent import RNN
        from .layers.wrappers import WeightDrop

        layers = getattr(model, "layers", None)
        if layers is None:
            raise TypeError(f"TBPTT: expected a Sequential model, got {type(model).__name__}")
        rec = []
        for i, layer in enumerate(layers):
            desc = f"layer {i} '{layer.name}' ({type(layer).__name__})"
            if isinstance(layer, WeightDrop) and isinstance(layer.layer, RNN):
                layer = layer.layer   # (runs its layer left to right as it is: the checks and states are its layer's)
            inner = [getattr(layer, a, None) for a in ("forward_layer", "backward_layer", "layer")]
            if any(isinstance(c, RNN) for c in inner):
                raise ValueError(f"TBPTT: {desc} wraps a recurrent layer; truncated BPTT runs left to right in "
                                 "chunks, which a Bidirectional (its backward direction starts from the end of the "
                                 "sequence) or a recurrent layer inside a wrapper cannot follow")
            if not isinstance(layer, RNN):
                continue
            if not layer.stateful:
                raise ValueError(f"TBPTT: {desc} is not stateful; truncated BPTT carries the state from one chunk "
                                 "to the next inside the layer: build it with stateful=True and a fixed batch size "
                                 "(e.g. batch_input_shape=(batch, None, features) or Input(shape, batch_size=...))")
            if layer.go_backwards:
                raise ValueError(f"TBPTT: {desc} has go_backwards=True; chunks are processed forward in time")
            if not layer.return_sequences:
                raise ValueError(f"TBPTT: {desc} has return_sequences=False; truncated BPTT needs one output "
                                 "per time step from every recurrent layer (return_sequences=True)")
            rec.append(layer)
        if not rec:
            raise ValueError("TBPTT: the model has no recurrent layer (SimpleRNN, LSTM, GRU); there is no state "
                             "to carry and no time to truncate")
        return rec

    # ------------------------------------------------------------------ windows
    def windows(self, T):
        """The windows over ``T`` steps: ``(start, end, loss_start, next_start)`` tuples.

        The forward pass covers ``[start, end)``, the loss ``[loss_start, end)``; the next window
        starts at ``next_start`` from the state this window's forward pass had there.
        """
        T = int(T)
        out = []
        e = 0
        while e < T:
            end = min(e + self.k1, T)
            out.append([max(0, e + self.k1 - self.k2), end, e, end])
            e = end
        for a, b in zip(out, out[1:]):
            a[3] = b[0]
        return [tuple(w) for w in out]

    def check_data(self, x, y, batch_size, sample_weight=None, what="fit"):
        """Validate shapes and the batch size for a TBPTT run over ``x`` (N, T, ...)."""
        model = self.model
        if x.ndim < 2:
            raise ValueError(f"{what}: truncated BPTT needs sequences x of shape (samples, timesteps, ...), "
                             f"got shape {x.shape}")
        n, T = x.shape[0], x.shape[1]
        out_shape = getattr(model, "output_shape", None)
        if out_shape is not None and len(out_shape) < 3:
            raise ValueError(f"{what}: truncated BPTT needs a model with one output per time step (batch, "
                             f"timesteps, ...); this model outputs {out_shape}")
        if y.ndim < 2 or y.shape[1] != T:
            raise ValueError(f"{what}: truncated BPTT needs one target per time step, y of shape ({n}, {T}, ...), "
                             f"got {y.shape}")
        if sample_weight is not None and sample_weight.ndim == 2 and sample_weight.shape != (n, T):
            raise ValueError(f"{what}: sample_weight must have shape ({n},) or ({n}, {T}), got {sample_weight.shape}")
        for layer in self.recurrent:
            fixed = layer.states[0].shape[0] if layer.states is not None else layer._fixed_batch()
            if fixed is not None and fixed != batch_size:
                raise ValueError(f"{what}: layer '{layer.name}' is stateful with batch size {fixed}, but "
                                 f"batch_size={batch_size}; truncated BPTT needs batch_size == {fixed}")
        if n % batch_size:
            raise ValueError(f"{what}: truncated BPTT on stateful layers needs the number of sequences ({n}) to be "
                             f"a multiple of batch_size ({batch_size}); every batch must hold exactly "
                             f"{batch_size} sequences")
        return n, T

    # ------------------------------------------------------------------ training
    def train_window(self, x, y, sample_weight, idx, window, epoch=0, step=0):
        """One update on ``window`` of the batch ``idx`` of ``x``/``y``; returns the window's loss.

        The first window of a batch resets the states; afterwards the states are set to where the
        next window starts.
        """
        s, e, ls, ns = window
        model = self.model
        if s == 0 and ls == 0:
            model.reset_states()
        xw, yw = x[idx, s:e], y[idx, s:e]
        sw = None
        if sample_weight is not None:
            sw = sample_weight[idx] if sample_weight.ndim == 1 else sample_weight[idx, s:e]
        tmask = None
        if ls > s:
            tmask = np.zeros(yw.shape[:2], dtype=bool)
            tmask[:, ls - s:] = True
        loss = model.train_step((xw, yw, sw), epoch=epoch, step=step, time_mask=tmask)["loss"]
        if ns != e:
            for layer in self.recurrent:
                layer.reset_states(layer.states_after(ns - s))
        return loss

    def train_on_batch(self, x, y, sample_weight=None):
        """Train on one batch of full sequences ``x`` (B, T, ...) window by window (states reset first).

        Returns the list of the windows' losses.
        """
        model = self.model
        if not getattr(model, "compiled", False):
            raise RuntimeError("TBPTT.train_on_batch: call model.compile(optimizer, loss, metrics) first")
        x, y = np.asarray(x), np.asarray(y)
        if len(x) != len(y):
            raise ValueError(f"TBPTT.train_on_batch: x and y must have the same number of samples, got x: {len(x)} "
                             f"and y: {len(y)}")
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
        self.check_data(x, y, len(x), sample_weight, "TBPTT.train_on_batch")
        for m in model.metrics:
            m.reset()
        sl = slice(0, len(x))
        return [self.train_window(x, y, sample_weight, sl, w, 0, i) for i, w in enumerate(self.windows(x.shape[1]))]

    def fit(self, x, y, **kwargs):
        """``model.fit(x, y, tbptt_steps=(k1, k2), **kwargs)``."""
        return self.model.fit(x, y, tbptt_steps=(self.k1, self.k2), **kwargs)
