"""The workspace of the fused loop (rnnlab.layers.fused_loop): typed, owned by the loop, grow-only in T."""
from __future__ import annotations

import numpy as np

from .. import backend


class Workspace:
    """The buffers of one call of the fused loop, owned by the loop (``FusedRNN._workspace``).

    Time-major buffers (``X`` (T, B, D), ``A`` (T, B, W), the state list ``S`` ((T+1, B, U) each), ``HR``, and a
    cell's own, e.g. LSTM's ``TC``) are allocated for ``cap`` steps with :meth:`time_buffer`; :meth:`use` (T)
    points the attributes at views of their first T (+1) steps, so a shorter call reuses everything, including
    the per-step view and address lists a cell builds once for ``cap`` steps (index t < T stays valid).
    Per-step scratch (``dA_t``, ``tmpW``, ``carry``, ...) is (B, .). Per-call fields (``m``, ``in_mask``,
    ``rec_mask``, ``pk``, ``native``, ...) are set by each forward. ``pending``: a training forward's cache
    refers to this workspace and its backward has not run (the next forward then takes another one).
    """

    def __init__(self, key, cap, B, D):
        self.key, self.cap, self.B, self.D, self.T = key, cap, B, D, cap
        self.pending = False
        self.full = {}       # name -> (full array or list of arrays, extra steps)
        self.derived = {}    # name -> function(ws) giving a view of other buffers
        self.dtype = None
        # set by each forward call
        self.m = self.in_mask = self.rec_mask = self.pk = self.pkb = None
        self.native = self.native_ok = False
        # a cell's own fast-path views and constants (LSTM, GRU reset_after=True; None otherwise)
        self.fast = None
        # filled lazily by the packed / compiled paths
        self.packed_grad = self.packed_x = self.packed_fwd = self.packed_bwd = None
        self.WhT = self.native_wp = self.fused_scratch = None
        self.fused_split = False

    def time_buffer(self, name, row_shape, extra=0, count=None, dtype=None):
        """Allocate a (cap + extra, B, *row_shape) buffer (``count`` of them as a list) and expose it as ``name``."""
        dt = dtype or self.dtype or "float64"
        make = lambda: backend.empty_aligned((self.cap + extra, self.B) + tuple(row_shape), dt)  # noqa: E731
        self.full[name] = ([make() for _ in range(count)] if count is not None else make(), extra)
        self.use(self.T, force=True)
        return getattr(self, name)

    def use(self, T, force=False):
        """Make the time-major attributes views of the first T steps (T <= cap)."""
        if T == self.T and not force:
            return
        self.T = T
        for name, (arr, extra) in self.full.items():
            setattr(self, name, [a[:T + extra] for a in arr] if isinstance(arr, list) else arr[:T + extra])
        for name, fn in self.derived.items():
            setattr(self, name, fn(self))

    def alloc_loop_buffers(self, n_states, U, W, dtype, rec_dropout):
        """The buffers every cell's loop uses (the fused_loop module docstring names them); a cell adds its own
        in ``_alloc_cell``. (The buffers the compiled loops stream through start on a cache line.)"""
        B, D = self.B, self.D
        self.dtype = dtype
        self.time_buffer("X", (D,))
        self.time_buffer("A", (W,))
        self.dA = None                        # after a backward: A, holding dA (see the fused_loop docstring)
        self.dA_t = np.empty((B, W), dtype)   # dA of the current step
        self.time_buffer("S", (U,), extra=1, count=n_states)
        if rec_dropout:
            self.time_buffer("HR", (U,))      # h_{t-1} * recurrent mask, as it enters the recurrent GEMM
        else:
            self.derived["HR"] = lambda w: w.S[0][:w.T]
            self.use(self.T, force=True)
        self.tmpW = np.empty((B, W), dtype)
        self.tmpU = np.empty((B, U), dtype)
        self.tmpU2 = np.empty((B, U), dtype)
        self.carry = [np.empty((B, U), dtype) for _ in range(n_states)]
        self.dnew = [np.empty((B, U), dtype) for _ in range(n_states)]
        self.dprev = [np.empty((B, U), dtype) for _ in range(n_states)]
