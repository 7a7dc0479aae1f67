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
        self.interactive = (hasattr(self.stream, "isatty") and self.stream.isatty()) if interactive is None else interactive
        self.min_interval = 1.0 / max_hz
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._last_len = 0

    def line(self, step: int, values: dict, samples: int | None = None, final=False) -> str:
        now = time.perf_counter()
        elapsed = now - self.start
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
