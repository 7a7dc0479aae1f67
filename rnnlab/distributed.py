"""Synchronous data-parallel training on MPI (``mpi4py``): one model replica per rank, gradients averaged.

Launch any training script (or ``rnnlab train ...``) with ``mpiexec -n N``; nothing else changes. Each rank
(process) then:

1. receives the initial weights from rank 0 (``Bcast``, in one buffer per dtype) when ``fit`` starts;
2. draws the epoch's shuffle order and takes rank 0's (``Bcast``), so the *global* batches are exactly the
   batches one process with the same ``batch_size`` would see;
3. takes its contiguous shard of every global batch of ``B`` samples: rank ``r`` of ``N`` gets rows
   ``[lo_r, hi_r)`` of ``np.array_split`` (``B mod N`` ranks get one row more) -- of arrays (:func:`local_rows`),
   of each whole batch a ``PyDataset``/generator gives every rank alike (:func:`local_batch`), and of the streams
   of truncated BPTT, whose states the rank carries (:class:`StreamShards`);
4. runs the ordinary forward and hand-written backward on its shard;
5. averages the gradients with ``Allreduce`` over a few large flat buckets (not one call per weight);
6. applies the same optimizer update (the weights stay bit-identical across ranks).

Scaling, so that the reduced gradient *is* the single-process gradient. The losses reduce as Keras'
``sum_over_batch_size``: ``L_j = sum_i l_ij w_ij / N_j`` where ``N_j`` counts the non-masked entries of output
``j`` (all entries without a mask). Rank ``r`` sees the count ``N_rj`` of its shard and computes
``L_rj = sum_{i in r} l_ij w_ij / N_rj``. With ``N_j = sum_r N_rj`` (one small ``Allreduce`` of the counts and
the local loss sums before the backward pass)

    L_j = sum_r (N_rj / N_j) L_rj,        dL/dtheta = sum_r (N_rj / N_j) dL_rj/dtheta,

so each rank scales its output gradient ``dL_rj/do`` by ``N_rj / N_j`` before the backward pass and the
gradients are *summed*. Masks (per-rank counts differ) and ``sample_weight`` (it multiplies, it does not
change ``N``) are therefore exact, as are uneven shards and a rank with no sample at all (it contributes 0).
``reduction="sum"`` losses use the factor 1.

Embedding gradients (:class:`~rnnlab.backend.RowSparseGrad`) are *not* densified while that is cheaper: the
ranks ``Allgather`` their row counts, then ``Allgatherv`` the row ids and the rows, and every rank sums the rows
of equal id. When the ranks together hold more rows than the matrix has, the dense ``(V, E)`` gradient is
reduced instead (plus a ``V``-byte mask of the rows present). Either way the result holds the union of the
rows the global batch touched, as one process would (so ``Adam(lazy=True)``, SGD and Adagrad touch the same
rows).

Clipping (``clipnorm``/``clipvalue``/``global_clipnorm``) runs in the optimizer, after the reduction, on the
global gradient. The NaN guard needs no extra message: a non-finite loss or gradient on any rank makes the
reduced loss/gradient non-finite on every rank, so every rank raises
:class:`~rnnlab.training.NonFiniteLoss` at the same step, before the update.

Rank 0 alone prints the progress bar, runs the callbacks (checkpoints, logs, early stopping) and validation;
its ``model.stop_training`` and plain learning rate are broadcast at epoch begin/end and after every step, and
its weights after the last callback (``restore_best_weights``), so every rank follows its callbacks. A rank that dies or
raises does not leave the others waiting forever: an uncaught exception calls ``MPI_Abort`` (message on
stderr), MPI's launcher ends the job when a rank is killed, and a watchdog aborts the job when one collective
waits longer than ``timeout`` seconds (``RNNLAB_MPI_TIMEOUT``, default 600).

The training metrics whose state is a ``(total, count)`` pair (every built-in metric) are reduced in the same
small ``Allreduce`` as the loss, so the logs are those of the global batch; other metric states stay per rank.

Dropout: during a sharded step rnnlab's generator is wrapped (:class:`RowDraws`): a mask whose first axis is the
rank's ``B_r`` rows is drawn for all ``B`` rows and the rank keeps its own, so the masks -- and the generator's
state afterwards -- are one process's; after a step that left a rank without rows its generator takes rank 0's
state. A loss that averages over samples, not entries (:class:`~rnnlab.layers.crf.CRFLoss`, or
``mean_over = "samples"``), counts rows. Weight penalties enter once after the reduction; activity penalties
``R(y_r) / B_r`` are reduced with weights ``B_r / B``; constraints run after the update.
"""
from __future__ import annotations

import math
import os
import sys
import threading
import time

import numpy as np

from .backend import RowSparseGrad

#: seconds a rank with an uncaught exception waits, after printing it, before it aborts the MPI job
ABORT_GRACE_SECONDS = 1.0

__all__ = ["Context", "init", "current", "launched", "rank", "size", "is_root", "shard", "broadcast_weights",
           "DistributedError", "BUCKET_BYTES", "local_rows", "local_batch", "StreamShards"]

# environment variables a launcher sets: MPICH/Intel MPI (hydra), Open MPI, PMIx, Slurm's PMI
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")

BUCKET_BYTES = 16 << 20  #: gradients are reduced in flat buckets of at most this many bytes (one per dtype)


class DistributedError(RuntimeError):
    """MPI is not available, or the ranks disagree (different models, a timeout)."""


def launched() -> bool:
    """True when this process was started by ``mpiexec``/``mpirun``/``srun`` with more than one rank
    (read from the launcher's environment; ``RNNLAB_DISTRIBUTED=0`` turns the detection off)."""
    if os.environ.get("RNNLAB_DISTRIBUTED", "") == "0":
        return False
    for var in _SIZE_VARS:
        v = os.environ.get(var)
        if v is not None:
            try:
                return int(v) > 1
            except ValueError:
                continue
    return False


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise DistributedError(
            "rnnlab.distributed needs mpi4py and an MPI library: pip install \"rnnlab[mpi]\" (mpi4py and the mpich "
            f"wheel) or install mpi4py against your system MPI; import failed: {e}") from None
    return MPI


class Context:
    """The communicator of one data-parallel job and the collectives the engine uses.

    ``Context(comm=None, timeout=None)``: ``comm`` defaults to ``MPI.COMM_WORLD``; ``timeout`` (seconds) is how
    long one collective may wait for the other ranks before the job is aborted."""

    def __init__(self, comm=None, timeout=None):
        MPI = _import_mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        if timeout is None:
            raw = os.environ.get("RNNLAB_MPI_TIMEOUT", "600")
            try:
                timeout = float(raw)
            except ValueError:
                raise DistributedError(f"RNNLAB_MPI_TIMEOUT must be a number of seconds, got {raw!r}") from None
        if not timeout > 0:
            raise DistributedError(f"rnnlab.distributed: timeout must be > 0 seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self.allreduce_seconds = 0.0  #: time spent in the gradient collectives (benchmarks read it)
        self.row_paths = {"gather": 0, "dense": 0}  #: how the row-sparse gradients were reduced (counts)
        self._deadline = None
        self._what = ""
        self._watchdog = None
        #: ``(B, slice)`` of the next step's shard (set by local_rows/local_batch, used once by train_batch) and of
        #: the TBPTT streams while a StreamShards epoch runs: the step's dropout masks are drawn for all B rows
        self.batch_rows = None
        self.stream_rows = None

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ failure handling
    def _start_watchdog(self):
        if self._watchdog is not None:
            return

        def watch():
            while True:
                time.sleep(min(1.0, self.timeout / 4))
                d = self._deadline
                if d is not None and time.monotonic() > d:
                    sys.stderr.write(
                        f"rnnlab.distributed: rank {self.rank}/{self.size} waited more than {self.timeout:g} s in "
                        f"{self._what} for the other ranks (one may have died or hang); aborting the MPI job "
                        f"(set RNNLAB_MPI_TIMEOUT to allow longer steps)\n")
                    sys.stderr.flush()
                    self.comm.Abort(3)

        self._watchdog = threading.Thread(target=watch, name="rnnlab-mpi-watchdog", daemon=True)
        self._watchdog.start()

    def _install_excepthook(self):
        previous = sys.excepthook
        ctx = self

        def hook(etype, value, tb):
            previous(etype, value, tb)
            sys.stderr.write(f"rnnlab.distributed: rank {ctx.rank}/{ctx.size} stopped with an uncaught "
                             f"{etype.__name__}; aborting the MPI job so the other ranks do not wait for it\n")
            sys.stderr.flush()
            # An error raised on every rank at once (a DistributedError from a collective check) is printed by each;
            # the first MPI_Abort ends the whole job and MPI's launcher drops output it has not forwarded yet, so
            # give the others a moment to print theirs before aborting.
            time.sleep(ABORT_GRACE_SECONDS)
            ctx.comm.Abort(1)

        sys.excepthook = hook

    def _call(self, what, fn, *args):
        self._what = what
        self._deadline = time.monotonic() + self.timeout
        try:
            return fn(*args)
        finally:
            self._deadline = None

    # ------------------------------------------------------------------ collectives
    def allreduce_(self, buf, op="sum"):
        """In-place ``Allreduce`` of a contiguous NumPy array (``op`` "sum", "max" or "min")."""
        mop = {"sum": self.MPI.SUM, "max": self.MPI.MAX, "min": self.MPI.MIN}[op]
        self._call("Allreduce", self.comm.Allreduce, self.MPI.IN_PLACE, buf, mop)
        return buf

    def bcast_(self, buf, root=0):
        """In-place ``Bcast`` of a contiguous NumPy array from ``root``."""
        self._call("Bcast", self.comm.Bcast, buf, root)
        return buf

    def barrier(self):
        """Wait until every rank is here (e.g. until rank 0 has written a file the others read)."""
        self._call("Barrier", self.comm.Barrier)

    def sync_control(self, model, root=0):
        """Take ``root``'s ``model.stop_training`` and plain-number learning rate: callbacks (early stopping,
        LearningRateScheduler, ReduceLROnPlateau) run on rank 0 only, and every rank must follow them."""
        opt = getattr(model, "optimizer", None)
        plain = opt is not None and getattr(opt, "_lr_schedule", None) is None and hasattr(opt, "learning_rate")
        buf = np.array([1.0 if getattr(model, "stop_training", False) else 0.0,
                        float(opt.learning_rate) if plain else 0.0])
        self.bcast_(buf, root)
        model.stop_training = bool(buf[0])
        if plain and float(opt.learning_rate) != buf[1]:
            opt.learning_rate = float(buf[1])

    def bcast_flag(self, flag, root=0) -> bool:
        b = np.array([1 if flag else 0], np.int8)
        return bool(self.bcast_(b, root)[0])

    def check_same(self, values, what):
        """Every rank must hold the same int64 ``values`` (a signature); else a DistributedError on every rank."""
        a = np.asarray(values, np.int64).reshape(-1)
        n = np.array([a.size], np.int64)
        lo, hi = self.allreduce_(n.copy(), "min"), self.allreduce_(n.copy(), "max")
        same = lo[0] == hi[0]
        if same:
            same = np.array_equal(self.allreduce_(a.copy(), "min"), self.allreduce_(a.copy(), "max"))
        if not same:
            raise DistributedError(f"rnnlab.distributed: the ranks disagree on {what} (rank {self.rank} has "
                                   f"{a.tolist()[:16]}); every rank must build the same model and data shapes")

    def broadcast_arrays(self, arrays, root=0):
        """Overwrite ``arrays`` (a list of NumPy arrays, same shapes on every rank) with ``root``'s values,
        one ``Bcast`` per dtype."""
        arrays = list(arrays)
        self.check_same([len(arrays)] + [d for a in arrays for d in (a.ndim, *a.shape, a.dtype.num)],
                        "the weights' shapes and dtypes")
        for _, group in _group_by_dtype(arrays):
            flat = np.concatenate([a.reshape(-1) for a in group]) if len(group) > 1 else \
                np.ascontiguousarray(group[0]).reshape(-1).copy()
            self.bcast_(flat, root)
            off = 0
            for a in group:
                a[...] = flat[off:off + a.size].reshape(a.shape)
                off += a.size

    def shard(self, n):
        """This rank's ``slice`` of a batch of ``n`` rows (contiguous, sizes differ by at most one)."""
        return shard(n, self.rank, self.size)

    def allreduce_gradients(self, refs):
        """Sum the gradients ``owner.grads[w]`` of ``refs`` over the ranks, in place: dense gradients in flat
        buckets of at most :data:`BUCKET_BYTES` per dtype; RowSparseGrad by gathering the rows (see module)."""
        t0 = time.perf_counter()
        slots = [(owner, w) for _, owner, w in refs if owner.grads.get(w) is not None or w in owner.params]
        # which weights are row-sparse on some rank (a rank with no sample has only dense zeros)
        kinds = np.array([2 if isinstance(owner.grads.get(w), RowSparseGrad) else
                          (1 if owner.grads.get(w) is not None else 0) for owner, w in slots], np.int8)
        kinds_all = self.allreduce_(kinds.copy(), "max") if kinds.size else kinds
        dense, sparse = [], []
        for (owner, w), k in zip(slots, kinds_all):
            g = owner.grads.get(w)
            if k == 0:
                continue
            p = owner.params[w]
            if k == 2:
                if g is None:
                    g = RowSparseGrad(np.zeros(0, np.intp), np.zeros((0,) + p.shape[1:], p.dtype), p.shape)
                elif not isinstance(g, RowSparseGrad):
                    rows = np.flatnonzero(np.any(g.reshape(len(g), -1) != 0, axis=1))
                    g = RowSparseGrad(rows.astype(np.intp), g[rows], g.shape)
                sparse.append((owner, w, g))
            else:
                if g is None:
                    g = np.zeros_like(p)
                owner.grads[w] = g
                dense.append((owner, w))
        for _, group in _group_by_dtype(dense, key=lambda ow: ow[0].grads[ow[1]]):
            for bucket in _buckets(group, lambda ow: ow[0].grads[ow[1]].nbytes):
                gs = [owner.grads[w] for owner, w in bucket]
                flat = np.concatenate([g.reshape(-1) for g in gs])
                self.allreduce_(flat)
                off = 0
                for (owner, w), g in zip(bucket, gs):
                    owner.grads[w] = flat[off:off + g.size].reshape(g.shape)
                    off += g.size
        for owner, w, g in sparse:
            owner.grads[w] = self._allgather_rows(g)
        self.allreduce_seconds += time.perf_counter() - t0

    def _allgather_rows(self, g):
        counts = np.zeros(self.size, np.int64)
        mine = np.array([len(g.indices)], np.int64)
        self._call("Allgather", self.comm.Allgather, mine, counts)
        if int(counts.sum()) > g.shape[0]:
            # gathering would move more rows than the matrix has: Allreduce the dense matrix instead, and the
            # union of the row ids as a 0/1 mask (so the result holds the same rows as the gathered one)
            self.row_paths["dense"] += 1
            dense = g.to_dense()
            self.allreduce_(dense)
            present = np.zeros(g.shape[0], np.int8)
            present[g.indices] = 1
            rows = np.flatnonzero(self.allreduce_(present, "max")).astype(np.intp)
            return RowSparseGrad(rows, dense[rows], g.shape)
        self.row_paths["gather"] += 1
        idx = np.empty(int(counts.sum()), np.int64)
        self._call("Allgatherv", self.comm.Allgatherv, np.ascontiguousarray(g.indices, np.int64), (idx, counts))
        row = int(np.prod(g.shape[1:]))
        vals = np.empty((int(counts.sum()),) + tuple(g.shape[1:]), g.values.dtype)
        self._call("Allgatherv", self.comm.Allgatherv, np.ascontiguousarray(g.values), (vals, counts * row))
        uniq, inv = np.unique(idx, return_inverse=True)
        out = np.zeros((len(uniq),) + tuple(g.shape[1:]), g.values.dtype)
        np.add.at(out, inv, vals)
        return RowSparseGrad(uniq.astype(np.intp), out, g.shape)


def _group_by_dtype(items, key=lambda a: a):
    groups = {}
    for it in items:
        groups.setdefault(np.asarray(key(it)).dtype.str, []).append(it)
    return sorted(groups.items())


def _buckets(items, nbytes):
    bucket, size = [], 0
    for it in items:
        b = nbytes(it)
        if bucket and size + b > BUCKET_BYTES:
            yield bucket
            bucket, size = [], 0
        bucket.append(it)
        size += b
    if bucket:
        yield bucket


def shard(n, rank, size):
    """Rank ``rank``'s contiguous ``slice`` of ``n`` rows split over ``size`` ranks (``np.array_split`` sizes)."""
    base, extra = divmod(int(n), int(size))
    lo = rank * base + min(rank, extra)
    return slice(lo, lo + base + (rank < extra))


_CONTEXT = None
_DISABLED = False


def init(comm=None, timeout=None) -> Context:
    """Start (or return) the data-parallel context: imports mpi4py (a clear :class:`DistributedError` without
    it), installs the abort-on-uncaught-exception hook and the collective watchdog. ``fit`` calls it by itself
    when the process was launched by ``mpiexec`` with more than one rank."""
    global _CONTEXT
    if _CONTEXT is None:
        ctx = Context(comm, timeout)
        if ctx.size > 1:
            ctx._install_excepthook()
            ctx._start_watchdog()
        _CONTEXT = ctx
    return _CONTEXT


def current():
    """The active :class:`Context` when training runs on more than one rank, else ``None``.

    Started on first use when :func:`launched` says an MPI launcher started this process."""
    if _CONTEXT is not None:
        return _CONTEXT if _CONTEXT.size > 1 else None
    if _DISABLED or not launched():
        return None
    ctx = init()
    return ctx if ctx.size > 1 else None


def rank() -> int:
    """This process's rank (0 outside MPI)."""
    ctx = current()
    return 0 if ctx is None else ctx.rank


def size() -> int:
    """The number of ranks (1 outside MPI)."""
    ctx = current()
    return 1 if ctx is None else ctx.size


def is_root() -> bool:
    """True on rank 0 and outside MPI: the process that writes files, logs and progress."""
    return rank() == 0


def broadcast_weights(model, root=0):
    """Copy ``root``'s weights into ``model`` on every rank (a no-op outside MPI)."""
    ctx = current()
    if ctx is None:
        return
    arrays = [owner.params[w] for _, owner, w in _all_refs(model)]
    ctx.broadcast_arrays(arrays, root)


def _all_refs(model):
    it = getattr(model, "iter_weights", None)
    if it is None:
        raise TypeError(f"rnnlab.distributed: expected an rnnlab model, got {type(model).__name__}")
    return list(it())


def finite_all(value: float) -> bool:
    """True when ``value`` is finite on every rank (a NaN guard for loops that do not reduce their loss)."""
    ctx = current()
    ok = math.isfinite(value)
    if ctx is None:
        return ok
    return bool(ctx.allreduce_(np.array([0 if ok else 1], np.int64), "max")[0] == 0)


# ---------------------------------------------------------------------- the engine's hooks
def _means_over_samples(loss):
    """True for a loss whose mean is over the batch's samples (rows) whatever the mask: a loss that sets
    ``mean_over = "samples"``, and :class:`~rnnlab.layers.crf.CRFLoss` (the mean NLL over whole sentences)."""
    if getattr(loss, "mean_over", None) == "samples":
        return True
    from .layers.crf import CRFLoss
    return isinstance(loss, CRFLoss)


def _count(out, lmask, loss=None):
    """N of ``sum_over_batch_size`` for one output: its non-masked per-element losses (all without a mask); the
    batch's rows for a loss that averages over samples (:func:`_means_over_samples`)."""
    if loss is not None and _means_over_samples(loss):
        return int(np.shape(out)[0])
    if lmask is not None:
        return int(np.count_nonzero(lmask))
    shape = np.shape(out)
    return int(shape[0]) if len(shape) == 1 else int(np.prod(shape[:-1]))


def fit_begin(ctx, model, xs):
    """Before the first step of ``fit``: build an unbuilt model from the data's shape (every rank the same
    way), then take rank 0's weights. Returns False (nothing done yet) for an unbuilt model when ``xs`` is
    ``None`` (a dataset: ``fit`` calls again with its first batch)."""
    if not getattr(model, "built", True) and hasattr(model, "build"):
        if xs is None:
            return False
        model.build((None,) + tuple(xs[0].shape[1:]))
    arrays = [owner.params[w] for _, owner, w in _all_refs(model)]
    ctx.broadcast_arrays(arrays)
    return True


def fit_end(ctx, model):
    """After ``fit``'s last callback: every rank takes rank 0's weights (a callback such as
    ``EarlyStopping(restore_best_weights=True)`` may have changed them on rank 0 alone)."""
    ctx.broadcast_arrays([owner.params[w] for _, owner, w in _all_refs(model)])


def train_batch(ctx, model, xs, ys, sws, epoch=0, step=0, time_mask=None):
    """The engine's training step on this rank's shard, composed of the engine's public step pieces
    (:meth:`~rnnlab.models.engine.Engine.loss_step`, ``backpropagate``, ``output_losses``, ``output_metrics``,
    ``output_loss_weights``): forward, one small ``Allreduce`` of the loss counts and sums, the scaled backward,
    the bucketed gradient ``Allreduce``, the NaN check and the update.
    Returns ``(global total loss, [global loss per output or None])``."""
    from .training import NonFiniteLoss, checked_update

    losses = model.output_losses
    weights = model.output_loss_weights
    m = len(losses)
    empty = len(xs[0]) == 0
    # metrics with a (total, count) state are reduced too: their step deltas ride in the same small Allreduce
    mets = [(j, met) for j, ms in enumerate(model.output_metrics) if ys[j] is not None for met in ms]
    summable = [(j, met) for j, met in mets if isinstance(getattr(met, "total", None), float)
                and isinstance(getattr(met, "count", None), float)]
    from . import backend, regularizers
    from .layers.base import _ACTIVITY_LOSSES

    # the tail of the small Allreduce: [activity penalty x rows, rows, has activity penalties, ranks without rows]
    stats = np.zeros(2 * m + 2 * len(summable) + 4, np.float64)
    stats[-1] = 1.0 if empty else 0.0  # ranks without rows: they draw no dropout mask (the generator is re-synced)
    stats[-3] = len(xs[0])
    old = [(met.total, met.count) for _, met in summable]
    active = [False] * m
    rows = ctx.batch_rows or ctx.stream_rows
    ctx.batch_rows = None
    tape = regularizers.ActivityTape()  # activity regularizers add R(y) / B_r here and R'(y) / B_r in backward
    token = _ACTIVITY_LOSSES.set(tape)
    try:
        if not empty:
            gen = backend._RNG
            if rows is not None and rows[1].stop - rows[1].start == len(xs[0]) and rows[0] != len(xs[0]):
                backend._RNG = RowDraws(gen, *rows)  # the whole batch's dropout masks, this rank's rows of them
            try:
                outs, lmasks, per, grads = model.loss_step(xs, ys, sws, time_mask, training=True)
            finally:
                backend._RNG = gen
            if tape.losses:
                stats[-4], stats[-2] = tape.total() * len(xs[0]), 1.0
        total, per_g = _reduced_step(ctx, model, stats, xs, ys, sws, epoch, step, empty, active, summable, old, mets,
                                     None if empty else (outs, lmasks, per, grads))
    finally:
        _ACTIVITY_LOSSES.reset(token)
    return total, per_g


def _reduced_step(ctx, model, stats, xs, ys, sws, epoch, step, empty, active, summable, old, mets, local):
    """The rest of :func:`train_batch` (the activity tape still set for the backward pass)."""
    from . import regularizers
    from .training import NonFiniteLoss, checked_update

    losses = model.output_losses
    weights = model.output_loss_weights
    m = len(losses)
    if not empty:
        outs, lmasks, per, grads = local
        for k, ((j, met), (t0, c0)) in enumerate(zip(summable, old)):
            met.update(ys[j], outs[j], sample_weight=sws[j], mask=lmasks[j])
            stats[2 * m + 2 * k], stats[2 * m + 2 * k + 1] = met.total - t0, met.count - c0
            met.total, met.count = t0, c0
        for j in range(m):
            if per[j] is None:
                continue
            active[j] = True
            mean = getattr(losses[j], "reduction", "sum_over_batch_size") == "sum_over_batch_size"
            n = _count(outs[j], lmasks[j], losses[j]) if mean else 1
            stats[j] = n
            stats[m + j] = per[j] * n
    else:
        active = [l is not None and y is not None for l, y in zip(losses, ys)]
    ctx.allreduce_(stats)
    if stats[-1] > 0:
        _rng_state_sync(ctx)
    B = stats[-3]
    per_g, total = [], 0.0
    for j in range(m):
        if not active[j]:
            per_g.append(None)
            continue
        mean = getattr(losses[j], "reduction", "sum_over_batch_size") == "sum_over_batch_size"
        lj = (0.0 if stats[j] == 0 else stats[m + j] / stats[j]) if mean else stats[m + j]
        per_g.append(lj)
        total += weights[j] * lj
    refs = list(model.trainable_weight_refs())
    # Keras: loss + sum(model.losses). The activity penalties R(y_r) / B_r of the shards, weighted B_r / B, are the
    # whole batch's R(y) / B; the weight penalties are the same on every rank (added once, not reduced)
    total += (stats[-4] / B if B else 0.0) + regularizers.weight_penalty(refs)
    if not math.isfinite(total):
        raise NonFiniteLoss("loss", total, epoch, step)
    if empty:
        for _, owner, w in refs:
            owner.grads[w] = None
    else:
        factors, shares = {}, {}
        for j, g in enumerate(grads):
            if g is None:
                continue
            mean = getattr(losses[j], "reduction", "sum_over_batch_size") == "sum_over_batch_size"
            n_local = _count(outs[j], lmasks[j], losses[j])
            factors[j] = (0.0 if stats[j] == 0 else n_local / stats[j]) if mean else 1.0
            shares[j] = (n_local, stats[j]) if mean else (1, 1)
        if stats[-2] > 0 and any(n * B != len(xs[0]) * N for n, N in shares.values()):
            raise ValueError(
                f"rnnlab.distributed: model '{getattr(model, 'name', type(model).__name__)}' has activity "
                f"regularizers (a penalty per row, R(y) / batch) and a loss whose share of this batch is not this "
                f"rank's share of the rows (masks or per-time-step losses: {sorted(factors.values())} against "
                f"{len(xs[0])}/{int(B)} rows); the two gradients cannot be combined exactly: train it in one "
                "process, or without the activity regularizer")
        if len(set(factors.values())) <= 1:
            # one factor (one output, or equal shares): scale the weights' gradients after the backward pass, which
            # also covers gradients a loss writes itself (CRFLoss fills its CRF's transition gradients)
            model.backpropagate(grads)
            f = next(iter(factors.values()), 1.0)
            if f != 1.0:
                for _, owner, w in refs:
                    g = owner.grads.get(w)
                    if isinstance(g, RowSparseGrad):
                        owner.grads[w] = RowSparseGrad(g.indices, g.values * g.values.dtype.type(f), g.shape)
                    elif g is not None:
                        owner.grads[w] = g * g.dtype.type(f)
        else:
            model.backpropagate([g if g is None else g * g.dtype.type(factors[j]) for j, g in enumerate(grads)])
    ctx.allreduce_gradients(refs)
    regularizers.add_penalty_gradients(refs)  # after the reduction: dR/dW once, as one process adds it
    checked_update(model.optimizer, refs, total, epoch, step)
    regularizers.apply_constraints(refs)  # Keras: each weight's constraint after the update
    for k, (_, met) in enumerate(summable):  # every rank: the metric over the global batch
        met.total = old[k][0] + float(stats[2 * m + 2 * k])
        met.count = old[k][1] + float(stats[2 * m + 2 * k + 1])
    if not empty:
        done = {id(met) for _, met in summable}
        for j, met in mets:
            if id(met) not in done:  # other metric states stay this rank's own
                met.update(ys[j], outs[j], sample_weight=sws[j], mask=lmasks[j])
    return total, per_g


def local_rows(ctx, idx):
    """This rank's rows of a global batch ``idx`` (an index array or a slice); the next :func:`train_batch`
    draws its dropout masks for the whole batch and keeps these rows (:class:`RowDraws`)."""
    if isinstance(idx, slice):
        idx = np.arange(idx.start or 0, idx.stop)
    sl = ctx.shard(len(idx))
    ctx.batch_rows = (len(idx), sl)
    return idx[sl]


class RowDraws:
    """rnnlab's random generator during one sharded step: a draw ``random(shape)`` whose first axis is this rank's
    ``B_r`` rows (every dropout mask: ``Dropout``, ``SpatialDropout1D``, the recurrent layers' input and recurrent
    masks, attention dropout) is drawn for all ``B`` rows of the global batch and this rank's rows are returned.
    Every rank therefore uses the masks one process draws for those rows, and the generator advances exactly as
    one process's does (the next shuffle, the next batch of a dataset are the same). Other calls go to the
    generator unchanged. (A layer built with its own ``seed=`` draws from its own generator, per rank.)"""

    def __init__(self, gen, total, rows):
        self.gen, self.total, self.rows = gen, int(total), rows
        self.local = rows.stop - rows.start

    def random(self, size=None, dtype=np.float64, out=None):
        if out is None and size is not None:
            shape = tuple(int(d) for d in np.atleast_1d(size))
            if shape and shape[0] == self.local:
                return self.gen.random((self.total,) + shape[1:], dtype=dtype)[self.rows].copy()
        return self.gen.random(size, dtype=dtype, out=out)

    def __getattr__(self, name):
        return getattr(self.gen, name)


def _rng_state_sync(ctx):
    """Every rank takes rank 0's generator state (after a step that left a rank without rows, which drew no
    dropout masks): a JSON document in one uint8 ``Bcast`` (no pickle)."""
    import json
    from . import backend

    state = backend.rng().bit_generator.state
    raw = np.frombuffer(json.dumps(state).encode("utf-8"), np.uint8)
    n = ctx.bcast_(np.array([raw.size], np.int64))[0]
    buf = raw.copy() if ctx.is_root else np.zeros(int(n), np.uint8)
    ctx.bcast_(buf)
    if not ctx.is_root:
        backend.rng().bit_generator.state = json.loads(buf.tobytes().decode("utf-8"))


def local_batch(ctx, xs, ys, sws):
    """This rank's rows of one whole prepared batch (the lists ``fit`` makes of a dataset's batch: one array per
    input, one array or ``None`` per output's targets and sample weights): the contiguous shard
    :meth:`Context.shard` of its ``B`` rows. Every rank builds the same whole batch (a dataset drawn from
    rnnlab's seeded generator), then trains on ``B / N`` of its rows; :func:`train_batch` weights the shards by
    their loss counts, so the summed gradient is the whole batch's."""
    sl = ctx.shard(len(xs[0]))
    ctx.batch_rows = (len(xs[0]), sl)
    return ([a[sl] for a in xs], [None if a is None else a[sl] for a in ys],
            [None if a is None else a[sl] for a in sws])


def _layer_batch(layer):
    """The batch size a stateful recurrent layer is set up for: its carried states' rows, else its built batch."""
    states = layer.states
    if states:
        return int(states[0].shape[0])
    shape = layer.batch_input_shape if layer.batch_input_shape is not None else layer.input_shape
    if shape is None or isinstance(shape, list):
        return None
    return shape[0]


class StreamShards:
    """Truncated BPTT under ``mpiexec``: rank ``r`` owns the rows :meth:`Context.shard` of every batch of ``B``
    streams and its stateful layers carry only those rows' states.

    ``StreamShards(ctx, layers, batch_size, n)``: ``layers`` are the model's stateful recurrent layers,
    ``batch_size`` the global ``B`` (at least one stream per rank, dividing the ``n`` sequences). The layers may
    be built for the global ``B`` (as one process builds them: ``rnnlab train charlm/wordlm`` do) -- then
    :meth:`begin` gives them zero states of this rank's ``B_r`` rows before an epoch's training and :meth:`end`
    gathers every rank's rows back into ``(B, ...)`` states afterwards (``Allgatherv``; the states one process
    would hold, e.g. for validation on rank 0) -- or for this rank's ``B_r`` alone (``batch_size=B // N``, then
    nothing is swapped). The gradient of each window is the whole batch's (:func:`train_batch` weights the
    shards by their loss counts), so the updates equal one process's."""

    def __init__(self, ctx, layers, batch_size, n):
        self.ctx, self.layers, self.batch_size = ctx, list(layers), int(batch_size)
        if self.batch_size < ctx.size:
            raise ValueError(f"fit: truncated BPTT on {ctx.size} MPI ranks needs at least one stream per rank: "
                             f"batch_size ({self.batch_size}) must be >= {ctx.size}")
        if n % self.batch_size:
            raise ValueError(f"fit: truncated BPTT on stateful layers needs the number of sequences ({n}) to be a "
                             f"multiple of batch_size ({self.batch_size}); every batch must hold exactly "
                             f"{self.batch_size} sequences")
        self.rows = ctx.shard(self.batch_size)
        self.local = self.rows.stop - self.rows.start
        fixed = {_layer_batch(layer) for layer in self.layers} - {None}
        if len(fixed) > 1 or (fixed and next(iter(fixed)) not in (self.batch_size, self.local)):
            raise ValueError(f"fit: truncated BPTT on {ctx.size} MPI ranks: the stateful layers are set up for batch "
                             f"size(s) {sorted(_layer_batch(l) or 0 for l in self.layers)}; build them for the "
                             f"global batch_size ({self.batch_size}: each rank then carries its "
                             f"{self.local} streams) or for this rank's {self.local} streams")
        self.swap = self.local != self.batch_size and (not fixed or self.batch_size in fixed)
        #: the batch size the layers are set up for outside training (validation batches use it)
        self.layer_batch = self.batch_size if self.swap else self.local
        self._is_local = False

    def begin(self):
        """Before an epoch's training windows: this rank's rows of zero states."""
        if not self.swap or self._is_local:
            return
        from .layers.cells import state_shapes

        for layer in self.layers:
            layer.states = [np.zeros((self.local,) + tuple(s), layer.dtype) for s in state_shapes(layer.cell)]
        self._is_local = True
        self.ctx.stream_rows = (self.batch_size, self.rows)

    def end(self):
        """After an epoch's training windows: every rank's rows gathered into the ``(B, ...)`` states (the same on
        every rank; those one process would hold)."""
        self.ctx.stream_rows = None
        if not self._is_local:
            return
        counts = np.array([(lambda s: s.stop - s.start)(shard(self.batch_size, r, self.ctx.size))
                           for r in range(self.ctx.size)], np.int64)
        for layer in self.layers:
            whole = []
            for s in layer.states:
                s = np.ascontiguousarray(s)
                row = int(np.prod(s.shape[1:]))
                out = np.empty((self.batch_size,) + s.shape[1:], s.dtype)
                self.ctx._call("Allgatherv", self.ctx.comm.Allgatherv, s, (out, counts * row))
                whole.append(out)
            layer.states = whole
        self._is_local = False


# ---------------------------------------------------------------------- word2vec: shards + periodic averaging
def train_word2vec(model, ctx, epochs):
    """Data-parallel :meth:`rnnlab.embeddings.Word2Vec.train` (called by it under ``mpiexec``): local SGD with
    periodic model averaging over ``ctx`` (every rank holds the vocabulary and corpus, the chunks of every epoch
    are dealt round robin, ``syn0``/``syn1neg`` are averaged every ``model.sync_words`` words). The loop drives
    the model's own chunks and SGD step, so it lives with the model: :func:`rnnlab.embeddings.parallel.train_word2vec`.
    Returns ``(trained words of all ranks, seconds)``."""
    from .embeddings.parallel import train_word2vec as _train

    return _train(model, ctx, epochs)
