"""The workspace of the fused loop (rnnlab.layers.fused_loop): typed, owned by the loop, grow-only in T and batch.

A :class:`Workspace` holds every buffer of one call of the loop. It is allocated for ``cap`` steps and
``cap_B`` batch rows (the longest T and the largest batch seen) and :meth:`Workspace.use` (T, B) points its
attributes at views of the first T (+1) steps and B rows: a shorter sequence or a smaller batch reuses the
memory, and a call of another length rebuilds nothing. Each buffer is kept flat, so the (T, B, .) view of its
first T * B rows is C-contiguous with exactly the layout a fresh (T, B, .) allocation would have (the loop's
GEMMs take ``A.reshape(T * B, W)``). Fields are declared (``__slots__``): the loop's own here, a cell's own in a
subclass the layer names (``FusedRNN._workspace_class``, e.g. LSTM's ``TC``).
"""
from __future__ import annotations

import numpy as np

from .. import backend


class Workspace:
    """The buffers of the fused loop, owned by the loop (``FusedRNN._workspace``).

    Time-major buffers (``X`` (T, B, D), ``A`` (T, B, W), the state list ``S`` ((T+1, B, U) each), ``HR``, and a
    cell's own, e.g. LSTM's ``TC``) come from :meth:`time_buffer`, per-step scratch (``dA_t``, ``tmpW``,
    ``carry``, ...: (B, .)) from :meth:`batch_buffer`. A change of T only re-slices the time-major views (the
    per-step view and address lists a cell builds once for ``cap`` steps stay valid: index t < T). A change of B
    re-slices every buffer and clears the batch-dependent caches (``fast``, the packed plans, the fused loop's
    row scratch); :meth:`use` then returns True and the layer rebuilds its cell's views (``_alloc_cell``).
    Per-call fields (``m``, ``in_mask``, ``rec_mask``, ``pk``, ``native``, ...) are set by each forward.
    ``pending``: a training forward's cache refers to this workspace and its backward has not run (the next
    forward then takes another one).
    """

    __slots__ = (
        "key", "cap", "cap_B", "T", "B", "D", "dtype", "pending", "_bufs", "_derived", "_by_batch",
        # the loop's buffers (fused_loop module docstring)
        "X", "A", "S", "HR", "dA", "dA_t", "tmpW", "tmpU", "tmpU2", "carry", "dnew", "dprev",
        # set by each forward call
        "m", "notm", "mf", "notmf", "partial", "fac", "in_mask", "rec_mask", "pk", "pkb", "native", "native_ok",
        "table_rows", "onehot",
        # a cell's own fast-path views and constants (LSTM, GRU reset_after=True; None otherwise)
        "fast",
        # filled lazily by the packed / compiled paths (fused_native)
        "packed_grad", "packed_x", "packed_dx", "packed_fwd", "packed_bwd", "WhT", "native_wp", "fused_scratch", "fused_split",
    )

    #: per batch size (they hold (B, .) arrays, views or raw addresses of this batch size): kept for the last
    #: KEPT_BATCHES batch sizes, with the views of the (B, .) buffers and a cell subclass's own non-buffer fields
    BATCH_CACHES = ("fast", "packed_fwd", "packed_bwd", "fused_scratch")
    KEPT_BATCHES = 4

    def __init__(self, key, cap, cap_B, D):
        self.key, self.cap, self.cap_B, self.D = key, cap, cap_B, D
        self.T, self.B = cap, cap_B
        self.dtype = None
        self.pending = False
        self._bufs = {}      # name -> (flat array or list of them, extra steps or None for (B, .), row shape)
        self._derived = {}   # name -> function(ws) giving a view of other buffers
        self._by_batch = {}  # batch size -> its batch-dependent fields (see use)
        self.dA = None
        self.m = self.notm = self.mf = self.notmf = self.partial = self.fac = None
        self.in_mask = self.rec_mask = self.pk = self.pkb = None
        self.native = self.native_ok = False
        self.table_rows = None
        self.onehot = None   # time-major ids of one-hot input rows (FusedRNN._onehot_ids), else None
        self.fast = None
        self.packed_grad = self.packed_x = self.packed_dx = self.packed_fwd = self.packed_bwd = None
        self.WhT = self.native_wp = self.fused_scratch = None
        self.fused_split = False

    def fields(self):
        """``(name, value)`` of every declared field that is set (this class's and a cell subclass's)."""
        for cls in type(self).__mro__:
            for name in cls.__dict__.get("__slots__", ()):
                if hasattr(self, name):
                    yield name, getattr(self, name)

    def time_buffer(self, name, row_shape, extra=0, count=None, dtype=None, aligned=True):
        """A (cap + extra, cap_B, *row_shape) buffer (``count`` of them as a list), exposed as ``name``: a view of
        its first T + extra steps and B rows. Kept if it exists (a cell's buffers survive a change of batch)."""
        return self._buffer(name, row_shape, extra, count, dtype, aligned)

    def batch_buffer(self, name, row_shape, count=None, dtype=None):
        """A (cap_B, *row_shape) per-step scratch buffer (``count`` of them as a list), exposed as ``name``: a view
        of its first B rows."""
        return self._buffer(name, row_shape, None, count, dtype, False)

    def _buffer(self, name, row_shape, extra, count, dtype, aligned):
        if name not in self._bufs:
            dt = dtype or self.dtype or "float64"
            size = (self.cap_B if extra is None else (self.cap + extra) * self.cap_B) * int(np.prod(row_shape))
            make = (lambda: backend.empty_aligned(size, dt)) if aligned else (lambda: np.empty(size, dt))  # noqa: E731
            self._bufs[name] = ([make() for _ in range(count)] if count is not None else make(), extra,
                                tuple(row_shape))
            self._view(name)
        return getattr(self, name)

    def _view(self, name):
        flat, extra, row = self._bufs[name]
        shape = (self.B,) + row if extra is None else (self.T + extra, self.B) + row
        n = int(np.prod(shape))
        setattr(self, name, [f[:n].reshape(shape) for f in flat] if isinstance(flat, list) else flat[:n].reshape(shape))

    def derive(self, name, fn):
        """Expose ``name`` as ``fn(ws)``, a view of other buffers, recomputed by :meth:`use`."""
        self._derived[name] = fn
        setattr(self, name, fn(self))

    def _batch_fields(self):
        """The batch-dependent fields: the (B, .) buffers' views, BATCH_CACHES, a cell subclass's non-buffer ones."""
        own = [n for cls in type(self).__mro__[:-2] for n in cls.__dict__.get("__slots__", ())]
        return ([n for n, (_, extra, _) in self._bufs.items() if extra is None] + list(self.BATCH_CACHES)
                + [n for n in own if n not in self._bufs])

    def use(self, T, B):
        """Make the attributes views of the first T steps and B rows (T <= cap, B <= cap_B). True when the layer
        must rebuild its cell's views (``_alloc_cell``): B changed to a batch size not seen lately. The
        batch-dependent fields of the last KEPT_BATCHES batch sizes are kept (the same view objects: the compiled
        paths map them to addresses by id), so alternating batch sizes rebuild nothing."""
        if T == self.T and B == self.B:
            return False
        batch_changed, rebuild = B != self.B, False
        if batch_changed:
            names = self._batch_fields()
            self._by_batch.pop(self.B, None)
            self._by_batch[self.B] = {n: getattr(self, n, None) for n in names}
            while len(self._by_batch) > self.KEPT_BATCHES:
                self._by_batch.pop(next(iter(self._by_batch)))
            saved = self._by_batch.get(B)
            self.B = B
            if saved is None:
                rebuild = True
                for name, (_, extra, _) in self._bufs.items():
                    if extra is None:
                        self._view(name)
                for name in self.BATCH_CACHES:
                    setattr(self, name, None)
            else:
                for name, value in saved.items():
                    setattr(self, name, value)
            self.dA = self.pk = self.pkb = None
            self.fused_split = False
        self.T = T
        for name, (_, extra, _) in self._bufs.items():
            if extra is not None:
                self._view(name)
        for name, fn in self._derived.items():
            setattr(self, name, fn(self))
        return rebuild

    def alloc_loop_buffers(self, n_states, U, W, dtype, rec_dropout):
        """The buffers every cell's loop uses (the fused_loop module docstring names them); a cell adds its own
        in ``_alloc_cell``. (The buffers the compiled loops stream through start on a cache line.)"""
        D = self.D
        self.dtype = dtype
        self.time_buffer("X", (D,))
        self.time_buffer("A", (W,))
        self.dA = None                           # after a backward: A, holding dA (see the fused_loop docstring)
        self.batch_buffer("dA_t", (W,))          # dA of the current step
        self.time_buffer("S", (U,), extra=1, count=n_states)
        if rec_dropout:
            self.time_buffer("HR", (U,))         # h_{t-1} * recurrent mask, as it enters the recurrent GEMM
        else:
            self.derive("HR", lambda w: w.S[0][:w.T])
        self.batch_buffer("tmpW", (W,))
        self.batch_buffer("tmpU", (U,))
        self.batch_buffer("tmpU2", (U,))
        for name in ("carry", "dnew", "dprev"):
            self.batch_buffer(name, (U,), count=n_states)


class WorkspaceOwner:
    """Mixin of :class:`~rnnlab.layers.fused_loop.FusedRNN`: the pool of its workspaces."""

    #: the workspace type of this layer's loop (a cell with buffers of its own declares a subclass)
    _workspace_class = Workspace

    #: workspaces kept per layer: one per dropout mode in use, plus those still referenced by an unconsumed
    #: forward cache (a shared layer called twice before its backward passes); beyond this many the least
    #: recently used is dropped
    MAX_WORKSPACES = 3

    def _workspace(self, T, B, D, rec_dropout):
        """A free workspace for (D, dtype, dropout mode, backend) holding at least T steps and B rows: grow-only
        in T and B (a shorter or smaller call uses views, no reallocation), never one still referenced by an
        unconsumed training cache (``ws.pending``)."""
        key = (D, self.dtype, rec_dropout, self.backend)
        pool = self.__dict__.setdefault("_ws_pool", [])
        free = [w for w in pool if w.key == key and not w.pending]
        ws = next((w for w in free if w.cap >= T and w.cap_B >= B), None)
        if ws is None:
            cap, cap_B = max([T] + [w.cap for w in free]), max([B] + [w.cap_B for w in free])
            for w in free[:1]:          # grow: the old, smaller one goes
                pool.remove(w)
            ws = self._workspace_class(key, cap, cap_B, D)
            ws.alloc_loop_buffers(len(self._state_names), self.units, self._n_gates * self.units, self.dtype,
                                  rec_dropout)
            self._alloc_cell(ws)        # (the cell's per-step lists cover all cap steps)
        if ws in pool:
            pool.remove(ws)
        pool.append(ws)                 # most recently used last
        while len(pool) > self.MAX_WORKSPACES:
            pool.pop(0)
        if B != ws.B and ws.use(ws.cap, B):
            self._alloc_cell(ws)        # a batch size not seen lately: the cell's views made for its B rows
        ws.use(T, B)
        self._ws = ws
        return ws

    def release_workspaces(self):
        """Drop the kept workspaces (their memory) and any input-projection table (fused_native); the next call
        allocates afresh."""
        self.__dict__.pop("_ws_pool", None)
        self.__dict__.pop("_proj_table", None)
        self._ws = None

    def _alloc_cell(self, ws):
        """A cell's own buffers and per-step views on ``ws`` (its ``_workspace_class`` declares them), made with
        ``ws.T == ws.cap``; called again after a change of batch size."""
