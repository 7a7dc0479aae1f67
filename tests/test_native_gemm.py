"""The packed GEMM of rnnlab/_native/_gemm.c (``rnnlab._native.PackedMatrix``) and the recurrent layers'
packed products (per-step h W_h and dA W_h^T, weight gradients; rnnlab/layers/recurrent.py).

The kernel sums in another order than the BLAS, so it is checked against a float64 product with the
classic rounding bound |C - AB| <= gamma_K |A||B| (gamma_K ~ K u, u = 2^-24), which holds for any
summation order and fails for a wrong one (a lost or repeated k term is ~|a b|, far above it); the layers
are checked against their NumPy-matmul path with the float32 fast-path tolerance."""
import numpy as np
import pytest

import rnnlab
from rnnlab import _native
from rnnlab import layers as L
from rnnlab.layers.fused_native import NativePaths

U24 = 2.0 ** -24


def _bound(a, b, K, c0=None):
    """gamma_{K+1} |a| |b| (+ |c0| when accumulating), elementwise, in float64."""
    g = (K + 2) * U24 / (1 - (K + 2) * U24)
    bnd = g * (np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)))
    if c0 is not None:
        bnd += g * np.abs(c0.astype(np.float64))
    return bnd + 1e-38


@pytest.mark.native_gemm
@pytest.mark.parametrize("M", [1, 5, 6, 7, 13, 32])
@pytest.mark.parametrize("K", [1, 7, 256, 257, 600])
@pytest.mark.parametrize("N", [1, 16, 63, 64, 65, 130])
def test_packed_matmul_within_rounding_bound(M, K, N):
    rng = np.random.default_rng(M * 1000 + K * 10 + N)
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    out = np.full((M, N), np.nan, np.float32)        # beta = 0 must not read the old contents
    _native.PackedMatrix(K, N).pack(b).matmul(a, out)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    assert np.all(np.abs(out - ref) <= _bound(a, b, K))


@pytest.mark.native_gemm
def test_strided_operands_and_accumulate():
    rng = np.random.default_rng(1)
    K, M, N = 300, 11, 70
    x = rng.standard_normal((K, M)).astype(np.float32)    # a = x.T: element strides (1, M)
    bt = rng.standard_normal((N, K)).astype(np.float32)   # b = bt.T: packed from a transposed view
    big = np.zeros((M, N + 9), np.float32)
    out = big[:, 3:3 + N]                                   # row stride N + 9, contiguous rows
    c0 = rng.standard_normal((M, N)).astype(np.float32)
    out[...] = c0
    pm = _native.PackedMatrix(K, N).pack(bt.T)
    pm.matmul(x.T, out, accumulate=True)
    ref = c0.astype(np.float64) + x.T.astype(np.float64) @ bt.T.astype(np.float64)
    assert np.all(np.abs(out - ref) <= _bound(x.T, bt.T, K, c0))
    assert not big[:, :3].any() and not big[:, 3 + N:].any()   # nothing written outside out
    # bind: the unchecked per-step form on raw addresses
    a = np.ascontiguousarray(x.T)
    o2 = np.empty((M, N), np.float32)
    pm.bind(M, K, N)(a.ctypes.data, o2.ctypes.data)
    o3 = pm.matmul(a, np.empty((M, N), np.float32))
    np.testing.assert_array_equal(o2, o3)


@pytest.mark.native_gemm
def test_chunked_products_equal_one_product():
    # the layers' weight gradients pack dA in chunks of PACK_KC rows and accumulate: the kernel's own chunks,
    # so the same sums bit for bit
    rng = np.random.default_rng(5)
    K, M, N = 2 * _native.PACK_KC + 37, 9, 80
    x = rng.standard_normal((K, M)).astype(np.float32)
    d = rng.standard_normal((K, N)).astype(np.float32)
    whole = _native.PackedMatrix(K, N).pack(d).matmul(x.T, np.empty((M, N), np.float32))
    out = np.empty((M, N), np.float32)
    kc = _native.PACK_KC
    for k0 in range(0, K, kc):
        pm = _native.PackedMatrix(min(kc, K - k0), N).pack(d[k0:k0 + kc])
        pm.matmul(x[k0:k0 + kc].T, out, accumulate=k0 > 0)
    np.testing.assert_array_equal(out, whole)


@pytest.mark.native_gemm
def test_with_rows_reuses_the_buffer_for_fewer_rows():
    # the weight gradients keep one packed dA per width and re-shape it for each batch's T*B rows: fewer rows
    # use a prefix of the buffer, more rows grow it, and every product equals a fresh matrix's bit for bit
    rng = np.random.default_rng(7)
    N, M = 80, 9
    pm = _native.PackedMatrix(300, N)
    bufs = []
    for K in (300, 41, 2 * _native.PACK_KC + 5, 300, 3 * _native.PACK_KC + 11):
        x = rng.standard_normal((K, M)).astype(np.float32)
        d = rng.standard_normal((K, N)).astype(np.float32)
        got = pm.with_rows(K).pack(d).matmul(x.T, np.empty((M, N), np.float32))
        assert pm.K == K
        want = _native.PackedMatrix(K, N).pack(d).matmul(x.T, np.empty((M, N), np.float32))
        np.testing.assert_array_equal(got, want)
        bufs.append(pm.buf)
    # kept for 41 rows and again for 300 after growing to 517; grown for 517 and for 779
    assert bufs[1] is bufs[0] and bufs[3] is bufs[2] and bufs[2] is not bufs[1] and bufs[4] is not bufs[3]


@pytest.mark.native_gemm
@pytest.mark.parametrize("M,K,N", [(1, 7, 5), (5, 300, 130), (13, 600, 200), (32, 257, 64), (128, 512, 2048)])
def test_prefetch_changes_no_bits(M, K, N):
    """The chunk prefetch of a large packed B (_gemm.c, above rnnlab_gemm_prefetch_min floats) only moves data
    into the cache: the products are identical with it forced on for every size and with it off, across K
    chunks, several panels, a partial last panel and a partial last row block."""
    rng = np.random.default_rng(M * 1000 + K)
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    pm = _native.PackedMatrix(K, N).pack(b)
    lib = _native._LIB
    old = lib.rnnlab_gemm_prefetch_min(-1)          # (-1: read only)
    try:
        outs = []
        c0 = rng.standard_normal((M, N)).astype(np.float32)
        for floats in (0, 1 << 62):
            lib.rnnlab_gemm_prefetch_min(floats)
            outs += [pm.matmul(a, np.empty((M, N), np.float32)), pm.matmul(a, c0.copy(), accumulate=True)]
        np.testing.assert_array_equal(outs[0], outs[2])
        np.testing.assert_array_equal(outs[1], outs[3])
        exact = a.astype(np.float64) @ b.astype(np.float64)      # and right, with the prefetch on
        assert np.all(np.abs(outs[0] - exact) <= _bound(a, b, K))
        assert np.all(np.abs(outs[1] - (exact + c0)) <= _bound(a, b, K, c0))
    finally:
        assert lib.rnnlab_gemm_prefetch_min(old) in (0, 1 << 62)
    assert lib.rnnlab_gemm_prefetch_min(-1) == old == 1 << 18


@pytest.mark.native_gemm
def test_nan_and_inf_propagate():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((8, 20)).astype(np.float32)
    b = rng.standard_normal((20, 40)).astype(np.float32)
    a[3, 5] = np.nan
    a[6, 0] = np.inf
    out = _native.PackedMatrix(20, 40).pack(b).matmul(a, np.empty((8, 40), np.float32))
    assert np.isnan(out[3]).all()
    assert not np.isfinite(out[6]).any()
    assert np.isfinite(np.delete(out, [3, 6], axis=0)).all()


@pytest.mark.native_gemm
def test_bad_arguments_are_named():
    pm = _native.PackedMatrix(4, 5)
    with pytest.raises(ValueError, match=r"shape \(4, 5\)"):
        pm.pack(np.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match="float32"):
        pm.pack(np.zeros((4, 5)))
    pm.pack(np.ones((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"\(M, 4\)"):
        pm.matmul(np.zeros((3, 5), np.float32), np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="out must be"):
        pm.matmul(np.zeros((3, 4), np.float32), np.zeros((3, 6), np.float32))
    with pytest.raises(ValueError, match="out must be"):
        pm.matmul(np.zeros((3, 4), np.float32), np.zeros((5, 3), np.float32).T)   # columns not contiguous


def test_policy():
    assert not _native.packed_gemm_wins(4, 128, 512)          # batch <= 4: per-row loops / GEMV
    assert _native.packed_gemm_wins(32, 128, 512) == _native.gemm_available()
    n = _native.blas_threads()
    assert n is None or n >= 1


# ------------------------------------------------------------------ the layers' packed products
def _layer_run(cell, kw, x, g, packed, monkeypatch):
    monkeypatch.setattr(_native, "packed_gemm_wins", (lambda *a: True) if packed else (lambda *a: False))
    # (with several BLAS threads the layers also split their products over rnnlab's threads: off for the reference)
    monkeypatch.setattr(NativePaths, "SPLIT_PRODUCTS", packed)
    rnnlab.set_random_seed(0)
    layer = getattr(L, cell)(32, return_sequences=True, **kw)
    layer(x)
    b = layer.params["bias"]
    b[...] = np.linspace(-0.5, 0.5, b.size).reshape(b.shape)
    rnnlab.set_random_seed(1)
    y = layer.forward(x, training=True)
    dx = layer.backward(g)
    ws = layer._ws
    taken = (ws.pk is not None, ws.pkb is not None, getattr(ws, "packed_grad", None) is not None)
    inf = layer.forward(x)
    return y, dx, {k: v.copy() for k, v in layer.grads.items()}, inf, taken


@pytest.mark.native_gemm
@pytest.mark.parametrize("cell,kw", [("LSTM", {}), ("GRU", {}), ("SimpleRNN", {}),
                                     ("LSTM", dict(go_backwards=True, recurrent_dropout=0.2)),
                                     ("GRU", dict(recurrent_dropout=0.2)),
                                     ("LSTM", dict(recurrent_activation="hard_sigmoid")),   # the general steps
                                     ("GRU", dict(recurrent_activation="hard_sigmoid"))])
def test_layers_packed_products_match_numpy(cell, kw, monkeypatch):
    rnnlab.set_floatx("float32")
    rng = np.random.default_rng(3)
    B, T, D = 9, 30, 5                                   # T * B = 270 rows of dA: two chunks
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    g = rng.standard_normal((B, T, 32)).astype(np.float32)
    ref = _layer_run(cell, kw, x, g, False, monkeypatch)
    got = _layer_run(cell, kw, x, g, True, monkeypatch)
    assert ref[4] == (False, False, False)
    assert got[4] == (True, True, True)              # every packed product ran
    for p, q in zip(got[:2] + got[3:4], ref[:2] + ref[3:4]):
        np.testing.assert_allclose(p, q, rtol=2e-6, atol=2e-6)
    for k in ref[2]:
        np.testing.assert_allclose(got[2][k], ref[2][k], rtol=2e-6, atol=2e-5, err_msg=k)


@pytest.mark.native_gemm
def test_masked_and_gru_reset_before(monkeypatch):
    rnnlab.set_floatx("float32")
    monkeypatch.setattr(_native, "packed_gemm_wins", lambda *a: True)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((10, 5, 3)).astype(np.float32)
    layer = L.GRU(16, reset_after=False)                 # no single per-step product: NumPy throughout
    layer(x)
    layer.forward(x, training=True)
    layer.backward(np.ones((10, 16), np.float32))
    assert layer._ws.pk is None and layer._ws.pkb is None
    mask = np.ones((10, 5), bool)
    mask[2, 3:] = False
    outs = []
    for packed in (True, False):
        monkeypatch.setattr(_native, "packed_gemm_wins", (lambda *a: packed))
        lstm = L.LSTM(16, return_sequences=True)
        rnnlab.set_random_seed(0)
        lstm.build(x.shape)
        lstm.forward(x, training=True, mask=mask)
        outs.append(lstm.backward(np.ones((10, 5, 16), np.float32)))
    np.testing.assert_allclose(outs[0], outs[1], rtol=2e-6, atol=2e-6)


@pytest.mark.native_gemm
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_fused_forward_loop_same_bits_as_per_step_loop(cell, masked, training, monkeypatch):
    """The packed path's whole time loop in one C call (``_fused_forward``, _cells.c) against the per-step
    Python loop it replaces (the same two kernels per step): identical outputs, states, gate buffers and
    (training) gradients, with a mask carrying rows over and the compiled steps adding the input bias."""
    rnnlab.set_floatx("float32")
    monkeypatch.setattr(_native, "packed_gemm_wins", lambda *a: True)
    rng = np.random.default_rng(5)
    B, T, D, U = 9, 7, 5, 32                              # B > 4: the packed path, also in inference
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    mask = None
    if masked:
        mask = np.ones((B, T), bool)
        mask[2, 4:] = False                               # trailing padding
        mask[5, :3] = False                               # leading padding
        mask[7, 3] = False                                # a hole
    g = rng.standard_normal((B, T, U)).astype(np.float32)
    runs, fused_calls = [], []
    for fused in (True, False):
        rnnlab.set_random_seed(0)
        layer = getattr(L, cell)(U, return_sequences=True, return_state=True)
        layer.build(x.shape)
        b = layer.params["bias"]
        b[...] = np.linspace(-0.5, 0.5, b.size).reshape(b.shape)
        real = type(layer)._fused_forward
        calls = []

        def spy(self, ws, real=real, fused=fused, calls=calls):
            calls.append(fused)
            return real(self, ws) if fused else False
        monkeypatch.setattr(type(layer), "_fused_forward", spy)
        outs = layer.forward(x, training=training, mask=mask)
        ws = layer._ws
        assert ws.pk is not None and not ws.native
        res = [np.array(o) for o in outs] + [ws.A.copy()] + [S.copy() for S in ws.S]
        if training:
            dx = layer.backward([g] + [None] * (len(outs) - 1))
            res += [dx] + [layer.grads[k].copy() for k in sorted(layer.grads)]
        runs.append(res)
        fused_calls.append(calls)
        monkeypatch.setattr(type(layer), "_fused_forward", real)
    assert fused_calls == [[True], [False]]
    assert len(runs[0]) == len(runs[1])
    for got, ref in zip(*runs):
        np.testing.assert_array_equal(got, ref)
    if masked:                                            # the carry really ran: padded rows keep their state
        h = runs[0][0]
        np.testing.assert_array_equal(h[2, 4:], np.broadcast_to(h[2, 3], (T - 4, U)))


def _run_cell(cell, x, mask, g, training, seed=0, **kw):
    rnnlab.set_random_seed(seed)
    layer = getattr(L, cell)(x.shape[0] and 32, return_sequences=True, return_state=True, **kw)
    layer.build(x.shape)
    b = layer.params["bias"]
    b[...] = np.linspace(-0.5, 0.5, b.size).reshape(b.shape)
    outs = layer.forward(x, training=training, mask=mask)
    ws = layer._ws
    res = [np.array(o) for o in outs] + [ws.A.copy()] + [S.copy() for S in ws.S]
    if training:
        res.append(layer.backward([g] + [None] * (len(outs) - 1)))
        res += [layer.grads[k].copy() for k in sorted(layer.grads)]
    return res, ws


@pytest.mark.native_gemm
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
@pytest.mark.parametrize("B,threads", [(17, 2), (40, 3), (16, 2)])
@pytest.mark.parametrize("training", [False, True])
def test_row_split_forward_same_bits(cell, B, threads, training, monkeypatch):
    """With several BLAS threads the fused forward loop runs its batch rows in blocks on threads
    (``_native.row_blocks`` / ``run_blocks``): the same outputs, states, gate buffers and gradients as one
    block, bit for bit (uneven blocks, a mask with padded and holed rows). (The layer's other products held on
    the BLAS, whose sums differ from the packed kernel's: the split products have their own test.)"""
    rnnlab.set_floatx("float32")
    monkeypatch.setattr(NativePaths, "SPLIT_PRODUCTS", False)
    monkeypatch.setattr(NativePaths, "PACKED_INPUT_GRAD", False)     # (dX on the BLAS in both runs)
    rng = np.random.default_rng(B)
    T, D, U = 6, 5, 32
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    mask = np.ones((B, T), bool)
    mask[1, 4:] = False
    mask[B - 1, :2] = False
    mask[B // 2, 3] = False
    g = rng.standard_normal((B, T, U)).astype(np.float32)
    calls = []
    real = _native.run_blocks

    def spy(fn, blocks):
        calls.append(list(blocks))
        return real(fn, blocks)
    monkeypatch.setattr(_native, "run_blocks", spy)
    monkeypatch.setattr(_native, "blas_threads", lambda: 1)
    ref, _ = _run_cell(cell, x, mask, g, training)
    # the fused forward loop, and in training the (masked) fused backward loop, which the second run keeps in the
    # per-step loop (its W_h^T product "too large" for the packed kernel, no split products here)
    n_ref = 2 if training else 1
    assert [len(c) for c in calls] == [1] * n_ref
    monkeypatch.setattr(_native, "blas_threads", lambda: threads)
    monkeypatch.setattr(_native, "PACKED_MAX_MULADDS_THREADED", 0)   # products "too large" for one thread
    got, ws = _run_cell(cell, x, mask, g, training)
    blocks = [blk[0] if isinstance(blk[0], tuple) else blk for blk in calls[n_ref]]   # (LSTM: (rows, scratch))
    assert len(calls) == n_ref + 1 and len(blocks) == min(threads, B // 8) > 1
    assert blocks[0][0] == 0 and blocks[-1][1] == B and all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    assert len(got) == len(ref)
    for p, q in zip(got, ref):
        np.testing.assert_array_equal(p, q)


@pytest.mark.native_gemm
def test_row_split_policy(monkeypatch):
    """Several BLAS threads: a per-step product too large for the single-threaded kernel alone still takes
    the packed path when the fused loop can split its rows; not with recurrent dropout (no fused loop), not
    for a batch too small for two blocks of 8 rows, not for SimpleRNN (no fused loop). Smaller products: one
    block when the layer leaves its other products to the BLAS pool, split when it keeps them off it."""
    rnnlab.set_floatx("float32")
    monkeypatch.setattr(_native, "blas_threads", lambda: 2)
    monkeypatch.setattr(NativePaths, "SPLIT_PRODUCTS", False)
    rng = np.random.default_rng(0)
    U = 512                                               # 16 x 512 x 2048: above PACKED_MAX_MULADDS_THREADED
    assert not _native.packed_gemm_wins(16, U, 4 * U) and not _native.packed_gemm_wins(17, U, U)
    for B, kw, cell, packed in [(16, {}, "LSTM", True), (16, {}, "GRU", True), (15, {}, "LSTM", False),
                                (16, dict(recurrent_dropout=0.1), "LSTM", False), (17, {}, "SimpleRNN", False)]:
        x = rng.standard_normal((B, 3, 4)).astype(np.float32)
        layer = getattr(L, cell)(U, **kw)
        layer(x)
        layer.forward(x, training=True)
        assert (layer._ws.pk is not None) == packed, (B, kw, cell)
        assert getattr(layer._ws, "fused_split", False) == packed
    # a product the single-threaded kernel wins anyway (imdb: 32 x 128 x 512): packed, one block
    x = rng.standard_normal((32, 3, 4)).astype(np.float32)
    layer = L.LSTM(128)
    layer(x)
    layer.forward(x)
    assert layer._ws.pk is not None and not layer._ws.fused_split and layer._fused_rows(layer._ws) == [(0, 32)]
    monkeypatch.setattr(NativePaths, "SPLIT_PRODUCTS", True)
    layer.forward(x)
    assert layer._ws.pk is not None and layer._ws.fused_split and layer._fused_rows(layer._ws) == [(0, 16), (16, 32)]
    monkeypatch.setattr(_native, "blas_threads", lambda: 1)        # one BLAS thread: nothing to split over
    layer.forward(x)
    assert layer._ws.pk is not None and not layer._ws.fused_split
    monkeypatch.setattr(_native, "blas_threads", lambda: 2)
    assert _native.row_blocks(16) == [(0, 8), (8, 16)] and _native.row_blocks(15) == [(0, 15)]
    monkeypatch.setattr(_native, "blas_threads", lambda: None)      # another BLAS: one block
    assert _native.row_blocks(64) == [(0, 64)]


def test_run_blocks_order_and_errors():
    assert _native.run_blocks(lambda b: b[1] - b[0], [(0, 3), (3, 7), (7, 12)]) == [3, 4, 5]

    def boom(b):
        if b[0]:
            raise ValueError("block failed")
        return 1
    with pytest.raises(ValueError, match="block failed"):
        _native.run_blocks(boom, [(0, 4), (4, 8)])


def test_float64_never_packed(monkeypatch):
    monkeypatch.setattr(_native, "packed_gemm_wins", lambda *a: True)
    rnnlab.set_floatx("float64")
    try:
        x = np.random.default_rng(0).standard_normal((9, 4, 3))
        layer = L.LSTM(8)
        layer(x)
        layer.forward(x, training=True)
        layer.backward(np.ones((9, 8)))
        assert layer._ws.pk is None and layer._ws.pkb is None   # the gradient checks run on NumPy
    finally:
        rnnlab.set_floatx("float32")


@pytest.mark.native_gemm
@pytest.mark.parametrize("cell", ["LSTM", "GRU", "SimpleRNN"])
def test_small_batch_inference_projection_packed(cell, monkeypatch):
    """Batch <= 4 inference with a multi-threaded BLAS: the input projection X W_x runs in the packed kernel on
    this thread (W_x packed into a buffer kept on the workspace); it agrees with the NumPy-matmul projection to
    float32 rounding, follows an in-place edit of the kernel, and is left to the BLAS in training, above the
    size limit, below 8 rows and when the BLAS has one thread (the layer's split products held off: their own test
    is test_split_products)."""
    rnnlab.set_floatx("float32")
    monkeypatch.setattr(_native, "blas_threads", lambda: 2)
    monkeypatch.setattr(NativePaths, "SPLIT_PRODUCTS", False)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 40, 24)).astype(np.float32)
    layer = getattr(L, cell)(32, return_sequences=True)
    layer(x)
    outs = []
    for packed in (False, True):
        layer.release_workspaces()                            # a fresh workspace
        with monkeypatch.context() as mp:
            if not packed:
                mp.setattr(type(layer), "_packed_projection", lambda self, ws, kernel: False)
            y = layer.forward(x)
        assert layer._ws.native
        assert (getattr(layer._ws, "packed_x", None) is not None) == packed
        outs.append(y)
    np.testing.assert_allclose(outs[1], outs[0], rtol=2e-6, atol=2e-6)
    # the projection itself, against a float64 product, within the rounding bound (A: before the loop's gate math)
    ws = layer._ws
    kern = layer.params["kernel"]
    pm = ws.packed_x
    assert pm.K == kern.shape[0] and pm.N == kern.shape[1]
    A = np.empty((40, kern.shape[1]), np.float32)
    layer._packed_projection(ws, kern)                    # packs and fills ws.A again
    np.copyto(A, ws.A.reshape(40, -1))
    exact = x[0].astype(np.float64) @ kern.astype(np.float64)
    assert np.all(np.abs(A - exact) <= _bound(x[0], kern, kern.shape[0]))
    # an in-place edit of W_x reaches the next call (only changed packed rows are rewritten: _gemm.c)
    kern[3, 5] += 1.0
    layer._packed_projection(ws, kern)
    exact = x[0].astype(np.float64) @ kern.astype(np.float64)
    assert np.all(np.abs(ws.A.reshape(40, -1) - exact) <= _bound(x[0], kern, kern.shape[0]))
    # not in training, not for big products, not below 8 rows
    layer.forward(x, training=True)
    assert not layer._ws.native_ok and not layer._packed_projection(layer._ws, kern)
    with monkeypatch.context() as mp:
        mp.setattr(type(layer), "PACKED_PROJECTION_MAX_MULADDS", 40 * 24 * kern.shape[1] - 1)
        layer.forward(x)
        assert layer._ws.native_ok and not layer._packed_projection(layer._ws, kern)
    layer.forward(x)
    assert layer._packed_projection(layer._ws, kern)
    monkeypatch.setattr(_native, "blas_threads", lambda: 1)   # a single-threaded BLAS: no pool to avoid
    assert not layer._packed_projection(layer._ws, kern)
    short = getattr(L, cell)(32)
    short(x[:, :7])
    assert short._ws.native and getattr(short._ws, "packed_x", None) is None


@pytest.mark.native_gemm
@pytest.mark.parametrize("cell", ["LSTM", "GRU", "SimpleRNN"])
def test_split_products(cell, monkeypatch):
    """Several BLAS threads: the layer's input projection, dX and weight gradients run in the packed kernel over
    rnnlab's threads (rows of X and dA, columns of the gradients); they agree with NumPy's BLAS to float32 rounding,
    and the column-split weight gradients are the bits of the unsplit packed pass."""
    rnnlab.set_floatx("float32")
    rng = np.random.default_rng(11)
    B, T, D = 20, 30, 5                                   # T * B = 600 rows of dA: three chunks
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    g = rng.standard_normal((B, T, 32)).astype(np.float32)
    monkeypatch.setattr(_native, "blas_threads", lambda: 2)
    ref = _layer_run(cell, {}, x, g, False, monkeypatch)
    monkeypatch.setattr(NativePaths, "SPLIT_PRODUCTS", True)
    # only the split can take the kernel for the large products; the (B, U) step products stay packed (SimpleRNN
    # has no fused loop: its steps must leave the BLAS alone for the split to apply, _steps_off_blas)
    monkeypatch.setattr(_native, "packed_gemm_wins", lambda M, K, N: M == B)
    rnnlab.set_random_seed(0)
    layer = getattr(L, cell)(32, return_sequences=True)
    layer(x)
    b = layer.params["bias"]
    b[...] = np.linspace(-0.5, 0.5, b.size).reshape(b.shape)
    rnnlab.set_random_seed(1)
    y = layer.forward(x, training=True)
    dx = layer.backward(g)
    ws = layer._ws
    assert ws.packed_x is not None and ws.packed_dx is not None
    assert any(k[0] == "split" for k in ws.packed_grad)
    np.testing.assert_allclose(y, ref[0], rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(dx, ref[1], rtol=2e-6, atol=2e-6)
    for k in ref[2]:
        np.testing.assert_allclose(layer.grads[k], ref[2][k], rtol=2e-6, atol=2e-5, err_msg=k)
    # the split gradient products against the unsplit packed pass: the same bits
    dA2 = rng.standard_normal((T * B, 200)).astype(np.float32)      # 200 columns: blocks of 2 and 2 panels (partial)
    lhs = [rng.standard_normal((T * B, n)).astype(np.float32) for n in (5, 32)]
    outs = [[np.full((n, 200), np.nan, np.float32) for n in (5, 32)] for _ in range(2)]
    layer._grad_products_split(ws, dA2, list(zip(lhs, outs[0])))
    monkeypatch.setattr(NativePaths, "SPLIT_PRODUCTS", False)
    monkeypatch.setattr(_native, "packed_gemm_wins", lambda *a: True)
    layer._grad_products(ws, dA2, list(zip(lhs, outs[1])))
    for left, a, c in zip(lhs, *outs):
        np.testing.assert_array_equal(a, c)
        exact = left.T.astype(np.float64) @ dA2.astype(np.float64)
        assert np.all(np.abs(a - exact) <= _bound(left.T, dA2, T * B))
    # a W_x above SPLIT_MAX_PACKED_FLOATS stays on the BLAS
    monkeypatch.setattr(NativePaths, "SPLIT_PRODUCTS", True)
    monkeypatch.setattr(NativePaths, "SPLIT_MAX_PACKED_FLOATS", layer.params["kernel"].size - 1)
    layer.release_workspaces()
    layer.forward(x, training=True)
    layer.backward(g)
    assert layer._ws.packed_x is None and layer._ws.packed_dx is None
    # split_matmul: row blocks of one packed product, the bits of one call
    pm = _native.PackedMatrix(200, 7).pack(rng.standard_normal((200, 7)).astype(np.float32))
    o1, o2 = np.empty((T * B, 7), np.float32), np.empty((T * B, 7), np.float32)
    _native.split_matmul(pm, dA2, o1)
    pm.matmul(dA2, o2)
    np.testing.assert_array_equal(o1, o2)


@pytest.mark.native_gemm
def test_dense_products_follow_the_recurrent_layers_threads(monkeypatch):
    """fused_native.matmul, Dense's products: with several BLAS threads and SPLIT_PRODUCTS, a product large enough
    to wake OpenBLAS's pool runs in the packed kernel over rnnlab's row blocks (the bits of one packed call, within
    rounding of the exact product); small ones, float64, a too-large packed matrix, N < 16 or one BLAS thread stay
    with NumPy. Dense's forward and backward agree with NumPy's products either way."""
    from rnnlab.layers import fused_native
    rng = np.random.default_rng(5)
    calls = []
    real = _native.split_matmul
    monkeypatch.setattr(_native, "split_matmul", lambda *a, **k: calls.append(a[1].shape) or real(*a, **k))
    monkeypatch.setattr(_native, "blas_threads", lambda: 2)
    monkeypatch.setattr(NativePaths, "SPLIT_PRODUCTS", True)
    a = rng.standard_normal((128, 128)).astype(np.float32)
    b = rng.standard_normal((128, 60)).astype(np.float32)
    got = fused_native.matmul(a, b)
    assert calls == [(128, 128)]
    one = _native.PackedMatrix(128, 60).pack(b).matmul(a, np.empty((128, 60), np.float32))
    np.testing.assert_array_equal(got, one)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    assert np.all(np.abs(got - exact) <= _bound(a, b, 128))
    out = np.full((128, 60), np.nan, np.float32)
    assert fused_native.matmul(a.T.copy().T, b, out=out) is out          # strided a, given out
    np.testing.assert_array_equal(out, one)
    calls.clear()
    fused_native.matmul(a[:8, :8], b[:8, :])                             # small: OpenBLAS runs it on one thread
    fused_native.matmul(a.astype(np.float64), b.astype(np.float64))      # float64
    fused_native.matmul(a, b[:, :8])                                     # N < 16
    fused_native.matmul(a[:15], b)                                       # fewer than 16 rows
    monkeypatch.setattr(NativePaths, "SPLIT_MAX_PACKED_FLOATS", b.size - 1)
    fused_native.matmul(a, b)                                            # packed matrix too large
    monkeypatch.setattr(NativePaths, "SPLIT_MAX_PACKED_FLOATS", 1 << 18)
    monkeypatch.setattr(_native, "blas_threads", lambda: 1)
    fused_native.matmul(a, b)                                            # one BLAS thread
    assert calls == []
    # Dense through it: forward, kernel gradient and input gradient within float32 rounding of NumPy's
    monkeypatch.setattr(_native, "blas_threads", lambda: 2)
    rnnlab.set_floatx("float32")
    dense = L.Dense(60)
    x = rng.standard_normal((4, 32, 128)).astype(np.float32)
    y = dense(x)
    g = rng.standard_normal(y.shape).astype(np.float32)
    dx = dense.backward(g)
    assert len(calls) == 3
    W = dense.params["kernel"]
    x2, g2 = x.reshape(-1, 128), g.reshape(-1, 60)
    np.testing.assert_allclose(y.reshape(-1, 60), x2 @ W + dense.params["bias"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dense.grads["kernel"], x2.T @ g2, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dx.reshape(-1, 128), g2 @ W.T, rtol=1e-5, atol=1e-5)


@pytest.mark.native_gemm
@pytest.mark.parametrize("K,N", [(1, 1), (15, 63), (17, 65), (512, 128), (33, 200)])
def test_transposed_pack_is_the_contiguous_pack(K, N):
    """Packing a transposed view (rsb == 1, the blocked path of rnnlab_pack_f32) and packing its contiguous copy
    give the same packed buffer, zero-padded past N."""
    rng = np.random.default_rng(K * 1000 + N)
    bt = rng.standard_normal((N, K)).astype(np.float32)
    a = _native.PackedMatrix(K, N)
    a.buf[...] = np.nan
    a.pack(bt.T)
    b = _native.PackedMatrix(K, N).pack(np.ascontiguousarray(bt.T))
    np.testing.assert_array_equal(a.buf, b.buf)


@pytest.mark.native_gemm
@pytest.mark.parametrize("M,K,N", [(1, 300, 70), (50, 513, 130), (1000, 64, 64)])
def test_row_blocking_changes_no_bits(M, K, N):
    """The kernel's outer blocks of rows (rnnlab_gemm_mc) leave every element's sum as it was: the same bits
    for any block size, with and without accumulation."""
    lib = _native._LIB
    rng = np.random.default_rng(M + K + N)
    a = rng.standard_normal((M, K)).astype(np.float32)
    pm = _native.PackedMatrix(K, N).pack(rng.standard_normal((K, N)).astype(np.float32))
    c0 = rng.standard_normal((M, N)).astype(np.float32)
    old = lib.rnnlab_gemm_mc(-1)
    outs = []
    try:
        for mc in (1, 6, 7, 384, 1 << 40):
            lib.rnnlab_gemm_mc(mc)
            o1 = pm.matmul(a, np.full((M, N), np.nan, np.float32))
            o2 = pm.matmul(a, c0.copy(), accumulate=True)
            outs.append((o1, o2))
    finally:
        lib.rnnlab_gemm_mc(old)
    assert lib.rnnlab_gemm_mc(-1) == old == 384
    for o1, o2 in outs[1:]:
        np.testing.assert_array_equal(o1, outs[0][0])
        np.testing.assert_array_equal(o2, outs[0][1])


@pytest.mark.native_gemm
def test_no_split_when_the_steps_use_the_blas(monkeypatch):
    """A layer whose per-step products go to NumPy's BLAS (no fused loop, the packed kernel not winning: SimpleRNN
    at a large width, or recurrent dropout) keeps its projection and gradients there too: the split would only add
    rnnlab's threads beside OpenBLAS's spinning worker. LSTM's fused loop splits whatever packed_gemm_wins says."""
    rnnlab.set_floatx("float32")
    monkeypatch.setattr(_native, "blas_threads", lambda: 2)
    monkeypatch.setattr(NativePaths, "SPLIT_PRODUCTS", True)
    monkeypatch.setattr(_native, "packed_gemm_wins", lambda *a: False)
    x = np.random.default_rng(12).standard_normal((20, 30, 5)).astype(np.float32)
    srnn = L.SimpleRNN(32)
    srnn(x)
    assert srnn._ws.packed_x is None and not srnn._split_products(srnn._ws)
    lstm = L.LSTM(32)
    lstm(x)
    assert lstm._split_products(lstm._ws) and lstm._ws.packed_x is not None
    drop = L.LSTM(32, recurrent_dropout=0.3)
    drop(x)
    drop.forward(x, training=True)
    assert not drop._split_products(drop._ws)
