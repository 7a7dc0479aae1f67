"""The compiled and packed paths of the fused loop (rnnlab.layers.fused_loop), all optional.

Every method here either runs a part of the loop in rnnlab/_native (the C kernels and the packed GEMM) or
says it cannot (returns None / False), and the loop then does the same work in NumPy. One condition gates all
of them, :meth:`NativePaths._native_float32`: float32 weights, the kernel built, and ``backend`` not "numpy".
Which path ran is recorded in ``layer.last_path`` (fused_loop.PATHS). Measurements: docs/benchmarks.md.

Packed products (float32, AVX-512 CPU): the T per-step products with the same matrix (``h_{t-1} W_h``
forward, ``dA_t W_h^T`` backward) and the weight gradients sharing one dA run in rnnlab/_native/_gemm.c with
that matrix packed once per call (a BLAS call repacks it every step), where
:func:`rnnlab._native.packed_gemm_wins` says the kernel is faster for the shape. Same products, another
summation order: results agree with NumPy's to float32 rounding.

With several BLAS threads (:meth:`NativePaths._split_products`) the layer's large products (input projection, dX,
weight gradients) also run in the packed kernel, over rnnlab's own row or column blocks, and the fused loops split
their batch rows at any batch size: no product of the layer wakes NumPy's BLAS pool, whose worker would spin beside
rnnlab's second thread. Inference on an Embedding's output takes the input projection from rows of a cached table
``E W_x`` (:meth:`NativePaths._table_projection`, checked bit for bit against the weights it was built from).
"""
from __future__ import annotations

import types
import weakref

import numpy as np

from .. import _native, backend


def addr(a):
    """The data address of an array, for the compiled kernels (rnnlab._native)."""
    return a.ctypes.data


#: Products below this many multiply-adds stay with NumPy in :func:`matmul`: OpenBLAS runs them on the calling
#: thread anyway (its GEMM goes multi-threaded from 65536 * 4 multiply-adds), so they wake no pool
OWNED_MIN_MULADDS = 1 << 18


def matmul(a, b, out=None):
    """``a @ b`` for the products next to the recurrent layers (Dense and the layers built on it), on the same
    threads as those layers' own products: when they keep theirs off NumPy's BLAS pool
    (:meth:`NativePaths._split_products`: several BLAS threads, float32, AVX-512, :attr:`NativePaths.SPLIT_PRODUCTS`),
    a float32 2-D product large enough for OpenBLAS to wake its pool (:data:`OWNED_MIN_MULADDS`), with b (K, N) at most
    :attr:`NativePaths.SPLIT_MAX_PACKED_FLOATS`, N >= 16 and at least 16 rows (packing b costs about what a
    few-row product does), runs in the packed kernel over rnnlab's row blocks
    (:func:`rnnlab._native.split_matmul`, b packed at each call) instead. Why: one Dense(60) head in OpenBLAS woke
    its worker, which then spun beside the recurrent layer's second row block for the rest of the train step (char
    config, batch 128: 47 ms a step against 35 ms with every product in OpenBLAS). Otherwise ``np.matmul``.
    Same products, another summation order: agreement with NumPy to float32 rounding. ``a`` may have any strides
    (``x.T`` is fine); ``out``, when given, must be C-contiguous."""
    if (a.dtype == np.float32 and b.dtype == np.float32 and a.ndim == 2 and b.ndim == 2
            and b.shape[1] >= 16 and b.size <= NativePaths.SPLIT_MAX_PACKED_FLOATS and a.shape[0] >= 16
            and a.shape[0] * a.shape[1] * b.shape[1] >= OWNED_MIN_MULADDS
            and (out is None or (out.dtype == np.float32 and out.flags.c_contiguous))
            and NativePaths._splitting_threads()):
        if out is None:
            out = np.empty((a.shape[0], b.shape[1]), np.float32)
        return _native.split_matmul(_native.PackedMatrix(*b.shape).pack(b), a, out)
    return np.matmul(a, b, out=out)


#: Largest batch for which the compiled inference loops (``_native_loop``) run with backend="auto". They do one
#: matrix-vector product per batch row and step; from about 8 rows on, NumPy's one GEMM per step is faster
#: (measurements: docs/benchmarks.md, "Fast-path thresholds").
NATIVE_MAX_BATCH = 4


class NativePaths:
    """Mixin of :class:`~rnnlab.layers.fused_loop.FusedRNN`: its optional compiled and packed paths."""

    def _native_ready(self, ws):
        """True when :meth:`_native_loop` can run this (inference, no recurrent dropout) call; asked before
        the input projection (``ws.native_ok``), which then uses the raw kernel and no bias: the compiled
        loops add the bias (and any gate scaling) themselves."""
        return False

    def _native_loop(self, ws):
        """Run the whole time loop (step 3 of the module docstring) in compiled code, filling the same
        buffers as the step loop; return False to run the NumPy loop instead (which must then still get
        a correct ``ws.A``). ``ws.m`` is the (T, B, 1) mask or None. ``ws.native`` records which loop ran."""
        return False

    def _native_float32(self):
        """The one condition of every compiled path (inference loops, C steps, packed GEMMs): float32 weights,
        the kernel built, and ``backend`` not "numpy" ("native" without the kernel is an error at the call)."""
        if self.backend == "numpy" or np.dtype(self.dtype) != np.float32:
            return False
        if self.backend == "native" and not _native.available():
            raise RuntimeError(f"Layer '{self.name}' ({type(self).__name__}): backend='native' but the compiled "
                               f"kernel is not in use ({_native.why_unavailable()}); use backend='auto' or 'numpy'")
        return _native.available()

    @staticmethod
    def _native_step_ptrs(ws, **cell_ptrs):
        """The raw addresses the compiled training steps of a cell take (``ws.fast.cptr``): the cell's own
        per-step ones (``cell_ptrs``), ``da`` (dA_t), ``grads`` (the carried-gradient buffers by id: the
        backward loop swaps them around) and the path fields ``isa`` (0 auto, 1 portable, for the tests),
        ``fwd_isa``/``bwd_isa`` (the path last taken), ``bias`` (see :meth:`_steps_add_bias`). All are
        C-contiguous float32 arrays of this workspace, alive as long as it is."""
        return types.SimpleNamespace(da=addr(ws.dA_t), grads={id(v): addr(v) for v in ws.carry + ws.dnew + ws.dprev},
                                     isa=0, fwd_isa=0, bwd_isa=0, bias=None, **cell_ptrs)

    def _steps_add_bias(self, ws, b_in):
        """True when the cell's compiled training steps (``ws.fast.cptr``, LSTM and GRU) will add the input bias
        ``b_in`` to A[t] at step t themselves (``cptr.bias``: its address, else None): the same sums as
        ``A += b_in`` before the loop, without that pass over the whole (T, B, W) buffer."""
        cp = ws.fast.cptr if ws.fast is not None else None
        if cp is None:
            return False
        cp.bias = None
        if (b_in is None or ws.native_ok or not _native.loaded()
                or not (b_in.dtype == np.float32 and b_in.ndim == 1 and b_in.flags.c_contiguous)):
            return False
        cp.bias = addr(b_in)
        return True

    def _native_inputs(self, ws):
        """What every compiled loop takes besides ``ws.A`` and the state buffers: the (T, B) mask or None,
        the recurrent kernel and the bias (None without one) as float32 C arrays, and the workspace's
        scratch for the kernel's packed copy of W_h."""
        m = None if ws.m is None else ws.m.reshape(ws.T, ws.B)
        rk = np.ascontiguousarray(self.params["recurrent_kernel"], dtype=np.float32)
        b = np.ascontiguousarray(self.params["bias"], dtype=np.float32) if self.use_bias else None
        if ws.native_wp is None:
            # 64-byte aligned: the loop reads every packed row with full-width vector loads at every step
            ws.native_wp = backend.empty_aligned(rk.size, np.float32)
        return m, rk, b, ws.native_wp

    # ------------------------------------------------------- packed products
    #: With several BLAS threads, run every large product of the layer (input projection, dX, weight gradients,
    #: the per-step products) in the packed kernel on rnnlab's own threads (row or column blocks) instead of
    #: NumPy's BLAS pool; see :meth:`_split_products`
    SPLIT_PRODUCTS = True

    def _split_products(self, ws):
        """True when this call's large products run in the packed kernel split over rnnlab's own threads
        (:func:`rnnlab._native.split_matmul`, :meth:`_grad_products`), not in NumPy's multi-threaded BLAS:
        float32 compiled path, AVX-512, several BLAS threads, :attr:`SPLIT_PRODUCTS`, and the per-step products
        stay off the BLAS too (:meth:`_steps_off_blas`). Why: OpenBLAS's worker spins ~130 ms after each call
        (docs/benchmarks.md), taking the core that the fused loops' second row block needs; with no product of the
        layer in its pool it stays asleep, and both loops split their rows. A layer whose T step products go to the
        BLAS anyway keeps its pool busy all along: there the split only added rnnlab's threads beside the spinning
        worker (SimpleRNN(512) at batch 128, 2 threads, same process: inference 77-81 -> 94-108 ms)."""
        return self._splitting_threads() and self._native_float32() and self._steps_off_blas(ws)

    @classmethod
    def _splitting_threads(cls):
        """The process-wide part of :meth:`_split_products`, which :func:`matmul` (Dense) follows too:
        :attr:`SPLIT_PRODUCTS`, several BLAS threads and the AVX-512 packed kernel."""
        return cls.SPLIT_PRODUCTS and (_native.blas_threads() or 1) > 1 and _native.gemm_available()

    def _steps_off_blas(self, ws):
        """Whether this call's T per-step products leave NumPy's BLAS alone: the fused loop runs them (LSTM, GRU:
        rows split over rnnlab's threads), or the packed kernel does on the calling thread
        (:func:`rnnlab._native.packed_gemm_wins` for the (B, U) @ (U, W) step)."""
        if ws.rec_mask is None and self._has_fused_forward(ws):
            return True
        W = self._step_weight(ws)
        return W is not None and _native.packed_gemm_wins(ws.B, self.units, W.shape[1])

    #: Largest packed matrix (K x N floats) a split product (input projection, dX) takes: 4 MB, the large config's
    #: 512 x 2048 W_x. Since the packed kernel blocks A's rows (384 at a time, _gemm.c) its 10240 x 512 x 2048
    #: projection runs at OpenBLAS's speed (2 threads: 117 against 119 ms), and keeping it on rnnlab's threads
    #: leaves OpenBLAS's worker asleep beside the split loop (large-config inference at 2 threads, same process:
    #: 306-321 -> 242-245 ms). Above it OpenBLAS keeps the product.
    SPLIT_MAX_PACKED_FLOATS = 1 << 20

    #: dX = dA W_x^T in the packed kernel also without the split (one BLAS thread), where the kernel wins
    #: (:func:`_native.packed_gemm_wins`, W_x at most :attr:`SPLIT_MAX_PACKED_FLOATS`). imdb's LSTM, same process,
    #: 1 thread, whole train step: 27.49 -> 27.35 ms, and 27.05 together with the single pack of
    #: :meth:`_grad_products`. False: NumPy's matmul (tests that hold every product on the BLAS).
    PACKED_INPUT_GRAD = True

    def _input_grad_product(self, ws, dA2, out):
        """``out = dA W_x^T`` ((T*B, W) @ (W, D), the input gradient): the packed kernel over row blocks when
        :meth:`_split_products`, on the calling thread when :attr:`PACKED_INPUT_GRAD` and the kernel wins (W_x at
        most :attr:`SPLIT_MAX_PACKED_FLOATS` either way), else NumPy's matmul."""
        kernel = self.params["kernel"]
        if dA2.dtype != np.float32 or kernel.dtype != np.float32 or kernel.size > self.SPLIT_MAX_PACKED_FLOATS:
            return np.matmul(dA2, kernel.T, out=out)
        split = self._split_products(ws)
        if not split and not (self.PACKED_INPUT_GRAD and self._native_float32()
                              and _native.packed_gemm_wins(*dA2.shape, kernel.shape[0])):
            return np.matmul(dA2, kernel.T, out=out)
        pm = ws.packed_dx
        if pm is None or (pm.K, pm.N) != kernel.T.shape:
            ws.packed_dx = pm = _native.PackedMatrix(*kernel.T.shape)
        pm.pack(kernel.T)
        return _native.split_matmul(pm, dA2, out) if split else pm.matmul(dA2, out)

    # (the batch <= NATIVE_MAX_BATCH inference path: products up to this size run on the calling thread)
    PACKED_PROJECTION_MAX_MULADDS = 1 << 24

    def _packed_projection(self, ws, kernel):
        """The input projection ``A = X W_x`` of the small-batch inference path (``ws.native_ok``) in the packed
        kernel, on the calling thread like the compiled loop after it, when NumPy's BLAS runs a thread pool (or
        its thread count cannot be read: another BLAS than OpenBLAS);
        True when done (else NumPy's matmul runs). W_x is packed into a buffer kept on the workspace, rows
        unchanged since the last call only compared (_gemm.c). Why: waking a multi-threaded BLAS's pool for this
        small product cost more than the product when another pool's threads were spinning; a single-threaded BLAS
        was the faster of the two, so it keeps the product, as it does above ``PACKED_PROJECTION_MAX_MULADDS``
        (long sequences, wide layers). Measurements: docs/benchmarks.md, "Fast-path thresholds".
        Any other call with several BLAS threads (:meth:`_split_products`, W_x at most
        :attr:`SPLIT_MAX_PACKED_FLOATS`): the same product over rnnlab's row blocks (:func:`_native.split_matmul`)."""
        M, (K, N) = ws.T * ws.B, kernel.shape
        split = (not ws.native_ok and kernel.dtype == np.float32 and M >= 8
                 and K * N <= self.SPLIT_MAX_PACKED_FLOATS and self._split_products(ws))
        if not split and (not ws.native_ok or kernel.dtype != np.float32 or M < 8
                          or M * K * N > self.PACKED_PROJECTION_MAX_MULADDS or not _native.gemm_available()
                          or _native.blas_threads() == 1):
            return False
        pm = ws.packed_x
        if pm is None or (pm.K, pm.N) != (K, N):
            ws.packed_x = pm = _native.PackedMatrix(K, N)
        pm.pack(kernel)
        if split:       # (any batch, several BLAS threads: over rnnlab's row blocks, see _split_products)
            _native.split_matmul(pm, ws.X.reshape(M, K), ws.A.reshape(M, N))
        else:
            pm.matmul(ws.X.reshape(M, K), ws.A.reshape(M, N))
        return True

    #: Largest input-projection table (vocabulary x gate width) :meth:`_table_projection` keeps per layer
    TABLE_MAX_BYTES = 128 << 20

    def _table_projection(self, ws, x_in, kernel):
        """Inference on the output of an Embedding (``x_in[b, t] = E[ids[b, t]]``): the input projection
        ``A[t, b] = x_in[b, t] W_x`` gathered from rows of a cached table ``P = E W_x`` (V, W) instead of a GEMM over
        the B*T rows; True when done (A filled, time-major, reversed for go_backwards; ``ws.X`` is then not filled:
        inference does not read it), else the caller does the GEMM.

        Exactness: the table is used only when ``kernel`` equals the copy it was built from and the B*T input rows
        equal the rows of the copy of E it was built from (one gather and compare, bit for bit), so any change of
        either weight, or of the Embedding's output after the lookup, only costs that check; the products are the
        same sums as the GEMM's rows (agreement to float32 rounding). Cost: building P is V/(B*T) projections'
        worth of GEMM, so it is built only after V projection rows by GEMM (doubled after each table found stale),
        and only while it fits in :attr:`TABLE_MAX_BYTES`. Float32 paths only."""
        from .embedding import Embedding

        look = Embedding.last_lookup
        if look is None or look[0]() is not x_in or not self._native_float32():
            return False
        E, flat = look[1](), look[2]
        T, B = ws.T, ws.B
        if E is None:
            return False
        if (E.dtype != kernel.dtype or x_in.dtype != kernel.dtype or E.ndim != 2 or E.shape[1] != kernel.shape[0]
                or flat.size != B * T or E.shape[0] * kernel.shape[1] * kernel.itemsize > self.TABLE_MAX_BYTES):
            return False
        st = self.__dict__.get("_proj_table")
        if st is None or st.E() is not E or st.kernel.shape != kernel.shape:
            self.__dict__["_proj_table"] = types.SimpleNamespace(E=weakref.ref(E), kernel=kernel.copy(), snapE=None,
                                                                 table=None, rows=0, need=E.shape[0])
            return False
        if st.table is None:
            # (no check while counting: the table is built from the weights of the call that builds it, and a
            # change before its next use is caught there; tiny batches pay nothing until it exists)
            st.rows += B * T
            if st.rows < st.need:
                return False
            np.copyto(st.kernel, kernel)
            st.snapE = E.copy()
            if kernel.size <= self.SPLIT_MAX_PACKED_FLOATS and self._split_products(ws):
                # (on rnnlab's threads like the layer's other products: NumPy's BLAS pool stays asleep)
                st.table = np.empty((E.shape[0], kernel.shape[1]), kernel.dtype)
                _native.split_matmul(_native.PackedMatrix(*kernel.shape).pack(st.kernel), st.snapE, st.table)
            else:
                st.table = np.matmul(st.snapE, st.kernel)
        rows = np.take(st.snapE, flat, axis=0)
        if not (np.array_equal(st.kernel, kernel) and np.array_equal(rows, x_in.reshape(B * T, -1))):
            st.table = st.snapE = None   # stale: W_x, E or the lookup's output changed since the table was built
            st.rows, st.need = 0, 2 * st.need
            return False
        ids = flat.reshape(B, T).T
        if self.go_backwards:
            ids = ids[::-1]
        # the rows are gathered by the fused loop step by step where it runs (LSTM: _takes_table_rows), else here
        ws.table_rows = (st.table, np.ascontiguousarray(ids, dtype=np.int64))
        if not self._takes_table_rows(ws):
            self._gather_table_rows(ws)
        return True

    def _takes_table_rows(self, ws):
        """Whether this call's fused forward loop copies A[t]'s rows from the table itself (``ws.table_rows``),
        step by step: LSTM, see there. Else :meth:`_gather_table_rows` fills all of A first."""
        return False

    @staticmethod
    def _gather_table_rows(ws):
        """Fill A (T, B, W) from ``ws.table_rows`` (table, time-major ids) and clear it."""
        if ws.table_rows is None:
            return
        table, ids = ws.table_rows
        ws.table_rows = None
        # (mode="clip": the ids are in range (the rows compared equal), and np.take with out= and the default
        # mode="raise" buffers the whole result: 0.87 vs 0.19 ms for 2560 rows of 512 here)
        np.take(table, ids.reshape(-1), axis=0, out=ws.A.reshape(ws.T * ws.B, -1), mode="clip")

    def _fused_forward(self, ws):
        """Run the whole time loop of the packed path (``ws.pk`` set, no recurrent dropout) in one compiled call
        doing per step what the Python loop does (the packed product, then the cell's step kernel, then the
        masked rows' carry): the same bits without ~2 Python-level calls per step. With several BLAS threads
        the batch rows are split into blocks (:func:`rnnlab._native.row_blocks`), each running the whole loop
        on its own thread: rows never interact, so there is nothing to synchronise and the bits are the same.
        True when done; the base class has none (LSTM and GRU do, see :meth:`_has_fused_forward`)."""
        return False

    def _fused_backward(self, ws, g_out):
        """Run the whole BPTT time loop of the packed path (``ws.pkb`` set; no recurrent dropout) in one
        compiled call doing per step what the Python loop does, by the row blocks of :func:`rnnlab._native.row_blocks`
        (rows never interact: the same bits); ``g_out`` the (B, T, U) output gradient of return_sequences, or None.
        On return ``ws.carry`` holds dL/dS[0] and ``ws.A`` holds dA, as after the Python loop. True when done; the
        base class has none (LSTM and GRU reset_after=True do)."""
        return False

    def _compiled_backward_loop(self, ws, kind, before, after, g_out, dnew=()):
        """Run ``rnnlab._native.fused_bwd_loop_kernel(kind)`` over the row blocks of
        :func:`rnnlab._native.row_blocks`, as the LSTM and GRU :meth:`_fused_backward` call it. The kernel takes
        ``(packed W_h^T, *before, g, g_t, g_b, *after, T, rows, B, U, isa)``; ``before`` and ``after`` are
        ``(address, floats per batch row)`` pairs of the (B, ...) buffers, offset to each block's first row;
        ``g`` is ``g_out`` (B, T, U) in float32 (row stride T U, step stride U) or None. With a mask (``ws.m``) the
        kernel is the masked one, taking after ``isa`` the (T, B) mask and output factor ``ws.fac`` (offset to the
        block's first row), the (T,) flags ``ws.partial`` (of the whole batch: they choose the Python loop's branch)
        and ``dnew`` (pairs as ``after``: the masked steps' scratch, ``ws.dnew``). Returns True."""
        fn = _native.fused_bwd_loop_kernel(kind, masked=ws.m is not None)
        cp, B, U, T = ws.fast.cptr, ws.B, self.units, ws.T
        wpt = addr(ws.pkb.pm.buf)
        g = g_t = g_b = 0
        if g_out is not None:
            g_keep = np.ascontiguousarray(g_out, dtype=np.float32)      # (B, T, U): step t of row b at b T U + t U
            g, g_t, g_b = addr(g_keep), U, T * U
        if ws.m is not None:   # (uint8 (T, B), uint8 (T,), float32 (T, B), kept alive for the calls)
            m_keep = [np.ascontiguousarray(ws.m, dtype=np.uint8), np.ascontiguousarray(ws.partial, dtype=np.uint8),
                      np.ascontiguousarray(ws.fac, dtype=np.float32)]
            mk, part, fac = [addr(v) for v in m_keep]

        def run(block):
            b0, b1 = block
            tail = () if ws.m is None else (mk + b0, part, fac + 4 * b0, *[p + 4 * b0 * w for p, w in dnew])
            return fn(wpt, *[p + 4 * b0 * w for p, w in before], g + 4 * b0 * g_b if g else None, g_t, g_b,
                      *[p + 4 * b0 * w for p, w in after], T, b1 - b0, B, U, cp.isa, *tail)

        uses = _native.run_blocks(run, _native.row_blocks(B))
        if not all(uses):   # (cannot happen: ws.pkb is only made where the packed GEMM runs; A[T-1] is spent)
            raise RuntimeError(f"Layer '{self.name}': the compiled backward loop could not run its packed GEMM")
        cp.bwd_isa = uses[0]
        return True

    @staticmethod
    def _fused_rows(ws):
        """The row blocks of :meth:`_fused_forward`: :func:`rnnlab._native.row_blocks` when the packed path was
        taken for the split (``ws.fused_split``, see :meth:`_packed_forward`), else the whole batch."""
        return _native.row_blocks(ws.B) if ws.fused_split else [(0, ws.B)]

    def _has_fused_backward(self, ws):
        """Whether :meth:`_fused_backward` exists for this layer (LSTM, GRU: where their fused forward does)."""
        return False

    def _has_fused_forward(self, ws):
        """Whether :meth:`_fused_forward` can run on this workspace: its compiled step kernels are set up
        (``ws.fast.cptr``: LSTM and GRU with their default activations, float32) and loaded."""
        return ws.fast is not None and ws.fast.cptr is not None and _native.loaded()

    def _fused_blocks(self, ws, whole):
        """The row blocks of :meth:`_fused_forward`, each with a float32 scratch of its rows for the per-step
        product: ``whole`` (B, width) itself for one block, else buffers kept on the workspace."""
        blocks = self._fused_rows(ws)
        if len(blocks) == 1:
            return [(blocks[0], whole)]
        width = whole.shape[1]
        key = (tuple(blocks), width)
        cached = ws.fused_scratch
        if cached is None or cached[0] != key:
            scratch = [backend.empty_aligned((b1 - b0, width), np.float32) for b0, b1 in blocks]
            ws.fused_scratch = cached = (key, scratch)
        return list(zip(blocks, cached[1]))

    def _step_weight(self, ws):
        """The matrix of the per-step forward product ``h_{t-1} @ W`` (the raw recurrent kernel here; LSTM
        and GRU give their pre-scaled fast-path copy), or None when a step does not do one full
        (B, U) @ (U, W) product (GRU reset_after=False): then no packed products."""
        return self.params["recurrent_kernel"]

    def _step_out(self, ws, t):
        """Where step t's forward product goes (GRU: its Q[t])."""
        return ws.tmpW

    def _packed_forward(self, ws):
        """The per-step forward products through a packed W_h (``pk.step[t]()`` does step t's), or None
        for NumPy's matmul; the plan is made once per workspace, W_h packed on every call."""
        W = self._step_weight(ws)
        B, U = ws.B, self.units
        if W is None or not self._native_float32():
            return None
        # (docs/benchmarks.md, "Fast-path thresholds")
        # products too large for the single-threaded kernel next to a multi-threaded BLAS: the packed path all
        # the same when the fused loop can split its rows over as many threads; smaller ones split too when the
        # layer keeps all its products off the BLAS pool (_split_products), else one block
        can_split = (ws.rec_mask is None and self._has_fused_forward(ws) and _native.gemm_available()
                     and len(_native.row_blocks(B)) > 1)
        wins = _native.packed_gemm_wins(B, U, W.shape[1])
        ws.fused_split = can_split and (not wins or self._split_products(ws))
        if not wins and not can_split:
            return None
        pk = ws.packed_fwd
        if pk is None or len(pk.step) < ws.T:   # (made at the first call's T: a longer one, up to cap, extends it)
            pm = _native.PackedMatrix(U, W.shape[1]) if pk is None else pk.pm
            outs = [self._step_out(ws, t) for t in range(ws.T)]
            prod = pm.bind(B, ws.HR.strides[1] // 4, outs[0].strides[0] // 4)
            # (HR[t] and the outputs are float32 buffers of this workspace, alive as long as it is)
            step = [(lambda a, c: (lambda: prod(a, c)))(addr(ws.HR[t]), addr(outs[t])) for t in range(ws.T)]
            ws.packed_fwd = pk = types.SimpleNamespace(pm=pm, step=step)
        pk.pm.pack(W)
        return pk

    def _packed_backward(self, ws):
        """W_h^T packed for the per-step ``dA_t W_h^T``: ``pkb.prod(a_address, out_address)`` with addresses
        of workspace buffers (``pkb.addr`` maps the ids of dA_t, tmpU and the carried-gradient buffers to
        theirs), or None for NumPy's matmul on the ``ws.WhT`` copy."""
        W = self._step_weight(ws)
        B, U = ws.B, self.units
        if W is None or not self._native_float32():
            return None
        # (a product too large for one thread: packed all the same when the compiled loop splits its rows)
        if not _native.packed_gemm_wins(B, W.shape[1], U) and not (
                ws.rec_mask is None and self._has_fused_backward(ws) and self._split_products(ws)
                and len(_native.row_blocks(B)) > 1):
            return None
        pkb = ws.packed_bwd
        if pkb is None or len(pkb.src) < ws.T:
            kU = W.shape[1]
            pm = _native.PackedMatrix(kU, U) if pkb is None else pkb.pm
            bufs = [ws.dA_t, ws.tmpU] + ws.carry + ws.dnew + ws.dprev
            ws.packed_bwd = pkb = types.SimpleNamespace(pm=pm, prod=pm.bind(B, kU, U),
                                                        addr={id(v): addr(v) for v in bufs},
                                                        src=[addr(self._dh_source(ws, t)) for t in range(ws.T)])
        pkb.pm.pack(self.params["recurrent_kernel"].T)
        return pkb

    def _dh_source(self, ws, t):
        """The (B, W) gradient step t multiplies by W_h^T (GRU: its dQ, kept in Q[t])."""
        return ws.dA_t

    def _dh_product(self, ws, t, a, out):
        """``out = a @ W_h^T`` for step t's backward, ``a`` being ``_dh_source(ws, t)``: packed or NumPy."""
        pkb = ws.pkb
        if pkb is not None:
            pkb.prod(pkb.src[t], pkb.addr[id(out)])
        else:
            np.matmul(a, ws.WhT, out=out)

    #: dA (or GRU's dQ) up to this size takes the packed kernel for the weight gradients; above it OpenBLAS
    #: was faster here (docs/benchmarks.md, "Fast-path thresholds")
    PACKED_GRAD_MAX_BYTES = 16 << 20

    def _grad_products(self, ws, dA2, pairs):
        """``out = lhs^T @ dA2`` for each ``(lhs, out)``: one GEMM each, or, when the packed kernel wins, dA2
        packed once (a buffer of dA's size, at most :attr:`PACKED_GRAD_MAX_BYTES`, kept on the workspace) for all
        the products. Why one pack of the whole dA rather than a chunk of ``_native.PACK_KC`` rows at a time, as
        before: the chunk's pack, its products and their outputs (1.3 MB for imdb's LSTM) did not fit the core's
        L2 together, and the whole train step measured 0.4 ms faster with this and the packed dX (same process,
        1 thread). The sums are the same: the kernel's own K chunks are ``PACK_KC`` rows, added in order."""
        K, N = dA2.shape
        M = max(lhs.shape[1] for lhs, _ in pairs)
        if (dA2.dtype == np.float32 and all(out.dtype == np.float32 for _, out in pairs)
                and dA2.nbytes <= self.PACKED_GRAD_MAX_BYTES and self._split_products(ws)):
            self._grad_products_split(ws, dA2, pairs)
            return
        if not (dA2.dtype == np.float32 and self._native_float32() and dA2.nbytes <= self.PACKED_GRAD_MAX_BYTES
                and _native.packed_gemm_wins(M, K, N)):
            for lhs, out in pairs:
                np.matmul(lhs.T, dA2, out=out)
            return
        if ws.packed_grad is None:
            ws.packed_grad = {}          # by N, kept per workspace (sized for the most rows seen)
        pm = ws.packed_grad.get(N)
        if pm is None:
            pm = ws.packed_grad[N] = _native.PackedMatrix(K, N)
        pm.with_rows(K).pack(dA2)
        for lhs, out in pairs:
            pm.matmul(lhs.T, out)

    def _grad_products_split(self, ws, dA2, pairs):
        """:meth:`_grad_products` over rnnlab's threads: the columns of dA (and of every ``out``) split into one block
        per BLAS thread (whole 64-column panels), each thread running the whole chunked pass over its columns with
        its own packed chunk buffers. Each element is the same sum as in the unsplit packed pass: the same bits."""
        K, N = dA2.shape
        n = max(1, min(_native.blas_threads() or 1, (N + 63) // 64))
        panels = (N + 63) // 64
        cols = [(min(N, 64 * (i * panels // n)), min(N, 64 * ((i + 1) * panels // n))) for i in range(n)]
        kc = _native.PACK_KC
        if ws.packed_grad is None:
            ws.packed_grad = {}

        def run(block):
            i, (n0, n1) = block
            for k0 in range(0, K, kc):
                chunk = dA2[k0:k0 + kc, n0:n1]
                key = ("split", i, chunk.shape[0], n1 - n0)
                pm = ws.packed_grad.get(key)
                if pm is None:
                    pm = ws.packed_grad[key] = _native.PackedMatrix(chunk.shape[0], n1 - n0)
                pm.pack(chunk)
                for lhs, out in pairs:
                    pm.matmul(lhs[k0:k0 + kc].T, out[:, n0:n1], accumulate=k0 > 0)

        _native.run_blocks(run, list(enumerate(cols)))
