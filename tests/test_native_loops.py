"""Issue 24's fast paths: the LSTM backward time loop in one compiled call (``rnnlab_lstm_bwd_loop_f32``, by row
blocks) and the input projection of inference taken from a cached table ``E W_x`` when the recurrent layer reads an
Embedding's output.

The compiled backward loop runs the same kernels in the same order as the per-step Python loop, so it is checked
for *equal bits* against that loop (its ``_fused_backward`` switched off), for every output/state combination it
takes and for a split of the batch rows over blocks. The table path is checked against the GEMM path (float32
rounding: the table rows are the same sums as the GEMM's rows), and for every way its weights can go stale."""
import numpy as np
import pytest

import rnnlab
from rnnlab import _native
from rnnlab import layers as L
from rnnlab.layers import lstm as lstm_mod


@pytest.fixture(autouse=True)
def _float32():
    old = rnnlab.backend.floatx() if hasattr(rnnlab.backend, "floatx") else "float32"
    rnnlab.set_floatx("float32")
    yield
    rnnlab.set_floatx(old)


def _grads(layer, x, g, fused, initial_state=None, monkeypatch=None):
    if not fused:
        monkeypatch.setattr(layer, "_fused_backward", lambda ws, g_out: False)
    out = layer.forward(x, training=True, initial_state=initial_state)
    dx = layer.backward(g)
    got = list(dx) if isinstance(dx, list) else [dx]
    return got + [layer.grads[k].copy() for k in ("kernel", "recurrent_kernel", "bias")], out


@pytest.mark.native_gemm
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("kw", [{}, dict(return_sequences=True), dict(go_backwards=True),
                                dict(return_sequences=True, go_backwards=True), dict(initial_state=True),
                                dict(return_state=True)])
def test_fused_backward_same_bits_as_step_loop(monkeypatch, cell, threads, kw):
    kw = dict(kw)
    init = kw.pop("initial_state", False)
    monkeypatch.setattr(_native, "blas_threads", lambda: threads)
    rng = np.random.default_rng(threads)
    B, T, D, U = 27, 6, 10, 32
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    n_states = 2 if cell == "LSTM" else 1
    h0 = [rng.standard_normal((B, U)).astype(np.float32) for _ in range(n_states)] if init else None
    res = []
    for fused in (False, True):
        rnnlab.set_random_seed(3)
        layer = getattr(L, cell)(U, **kw)
        layer(x)
        b = layer.params["bias"]
        b[...] = np.linspace(-0.5, 0.5, b.size).reshape(b.shape)
        out = layer.forward(x, training=True, initial_state=h0)
        outs = out if isinstance(out, list) else [out]
        g = [np.random.default_rng(7 + i).standard_normal(o.shape).astype(np.float32) for i, o in enumerate(outs)]
        got, _ = _grads(layer, x, g if isinstance(out, list) else g[0], fused, h0, monkeypatch)
        assert layer.last_backward_path == ("fused_loop" if fused else "steps")
        res.append(got)
    assert len(res[0]) == len(res[1]) == (4 + n_states if init else 4)
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)


@pytest.mark.native_gemm
def test_fused_backward_blocks_and_fallbacks(monkeypatch):
    """Rows split over 2 blocks at 2 BLAS threads (each block its own loop), with or without a mask (the masked
    loop: tests/test_native_masked_loops.py); recurrent dropout or recorded state gradients take the Python loop."""
    calls = []
    real = _native.run_blocks

    def spy(fn, blocks):
        calls.append(list(blocks))
        return real(fn, blocks)
    monkeypatch.setattr(_native, "run_blocks", spy)
    monkeypatch.setattr(_native, "blas_threads", lambda: 2)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 5, 8)).astype(np.float32)
    layer = L.LSTM(16)
    layer(x)
    layer.forward(x, training=True)
    calls.clear()
    real_fb = type(layer)._fused_backward

    def fb(self, ws, g_out):
        calls.append("loop")
        return real_fb(self, ws, g_out)
    monkeypatch.setattr(type(layer), "_fused_backward", fb)
    layer.backward(np.ones((32, 16), np.float32))
    assert layer.last_backward_path == "fused_loop"
    assert calls[calls.index("loop") + 1] == [(0, 16), (16, 32)]
    mask = np.ones((32, 5), bool)
    mask[3, 2:] = False
    layer.forward(x, training=True, mask=mask)
    calls.clear()
    layer.backward(np.ones((32, 16), np.float32))
    assert layer.last_backward_path == "fused_loop"
    assert calls[calls.index("loop") + 1] == [(0, 16), (16, 32)]
    drop = L.LSTM(16, recurrent_dropout=0.2)
    drop(x)
    drop.forward(x, training=True)
    drop.backward(np.ones((32, 16), np.float32))
    assert drop.last_backward_path == "steps"


@pytest.mark.native_gemm
def test_fused_backward_gradient_check():
    """The fused path's gradients against central differences of the loss (float32, loose but failing for a
    wrong step or a lost output-gradient term)."""
    rng = np.random.default_rng(5)
    B, T, D, U = 8, 4, 3, 16
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    layer = L.LSTM(U, return_sequences=True)
    layer(x)
    w = rng.standard_normal((B, T, U)).astype(np.float32)

    def loss():
        return float(np.sum(layer.forward(x, training=True).astype(np.float64) * w))
    layer.forward(x, training=True)
    layer.backward(w)
    assert layer.last_backward_path == "fused_loop"
    gk = layer.grads["recurrent_kernel"].copy()
    rk = layer.params["recurrent_kernel"]
    eps = 1e-2
    for idx in [(0, 0), (3, 17), (15, 63), (7, 40)]:
        old = rk[idx]
        rk[idx] = old + eps
        lp = loss()
        rk[idx] = old - eps
        lm = loss()
        rk[idx] = old
        num = (lp - lm) / (2 * eps)
        assert abs(num - gk[idx]) <= 2e-2 * max(1.0, abs(num)), (idx, num, gk[idx])


# ----------------------------------------------------------------------------- the table projection
def _model(cell="LSTM", V=50, D=8, U=16, **kw):
    rnnlab.set_random_seed(0)
    emb = L.Embedding(V, D, mask_zero=kw.pop("mask_zero", False))
    rec = getattr(L, cell)(U, **kw)
    m = rnnlab.Sequential([emb, rec])
    m.build((None, 7))
    return m, emb, rec


def _reference(m, ids, rec, monkeypatch):
    with monkeypatch.context() as mp:
        mp.setattr(type(rec), "_table_projection", lambda self, ws, x_in, kernel: False)
        return m.predict_on_batch(ids)


@pytest.mark.native
@pytest.mark.parametrize("cell,B,kw", [("LSTM", 9, {}), ("LSTM", 2, {}), ("LSTM", 5, {}), ("GRU", 9, {}),
                                       ("SimpleRNN", 9, {}),
                                       ("LSTM", 9, dict(go_backwards=True, return_sequences=True)),
                                       ("LSTM", 9, dict(mask_zero=True, return_sequences=True))])
def test_table_projection_matches_gemm(monkeypatch, cell, B, kw):
    m, emb, rec = _model(cell, **kw)
    ids = np.random.default_rng(1).integers(0 if kw.get("mask_zero") else 1, 50, (B, 7))
    ids[0, 5:] = 0
    ref = _reference(m, ids, rec, monkeypatch)
    for _ in range(60 // (B * 7) + 3):            # past the V = 50 rows after which the table pays
        out = m.predict_on_batch(ids)
    st = rec._proj_table
    assert st.table is not None and st.table.shape == (50, rec.params["recurrent_kernel"].shape[1])
    # (B 2: the compiled batch <= 4 loop; B 5: the Python step loop (no packed product below 8 rows), which gathers
    # A before its steps although the LSTM would take the rows in its fused loop)
    assert rec.last_path == {2: "native_loop", 5: "native_steps"}.get(B, rec.last_path)
    np.testing.assert_allclose(out, ref, rtol=2e-6, atol=2e-6)


@pytest.mark.native
def test_table_built_only_after_it_pays_and_never_in_training():
    m, emb, rec = _model(V=100)
    ids = np.random.default_rng(2).integers(1, 100, (2, 7))       # 14 rows a call: the table needs 100
    m.predict_on_batch(ids)
    for i in range(7):
        m.predict_on_batch(ids)
        assert rec._proj_table.table is None, i
    m.predict_on_batch(ids)
    assert rec._proj_table.table is not None
    calls = []
    real = type(rec)._table_projection

    def spy(self, ws, x_in, kernel):
        calls.append(1)
        return real(self, ws, x_in, kernel)
    type(rec)._table_projection = spy
    try:
        x = emb.forward(ids, training=True)
        rec.forward(x, training=True)
    finally:
        type(rec)._table_projection = real
    assert calls == []


@pytest.mark.native
@pytest.mark.parametrize("change", ["embeddings", "kernel", "bias", "output", "set_weights"])
def test_stale_table_is_never_used(monkeypatch, change):
    """Any change of a weight the table was built from (or of the Embedding's output after the lookup) gives the
    GEMM's result, not the table's."""
    m, emb, rec = _model()
    ids = np.random.default_rng(3).integers(1, 50, (9, 7))
    for _ in range(3):
        m.predict_on_batch(ids)
    assert rec._proj_table.table is not None
    rng = np.random.default_rng(4)
    if change == "embeddings":
        emb.params["embeddings"][ids[4, 3]] += 0.5                   # one row the batch reads
    elif change == "kernel":
        rec.params["kernel"][2, 5] += 0.5
    elif change == "bias":
        rec.params["bias"][3] += 0.5
    elif change == "set_weights":
        emb.set_weights([rng.standard_normal((50, 8)).astype(np.float32)])
    if change == "output":
        x = emb.forward(ids)
        x[1, 1] += 1.0                                               # the lookup's output modified in place
        got = rec.forward(x)
        ref = _reference_layer(rec, x.copy(), monkeypatch)
    else:
        got = m.predict_on_batch(ids)
        ref = _reference(m, ids, rec, monkeypatch)
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=2e-6)
    if change != "bias":                       # (the table holds x W_x only: the bias is added after it)
        assert rec._proj_table.table is None and rec._proj_table.need == 100    # stale: rebuilt only later


def _reference_layer(rec, x, monkeypatch):
    with monkeypatch.context() as mp:
        mp.setattr(type(rec), "_table_projection", lambda self, ws, x_in, kernel: False)
        return rec.forward(x)


@pytest.mark.native
def test_table_size_cap(monkeypatch):
    m, emb, rec = _model()
    monkeypatch.setattr(type(rec), "TABLE_MAX_BYTES", 50 * 64 * 4 - 1)       # V * 4U * 4 bytes does not fit
    ids = np.random.default_rng(5).integers(1, 50, (9, 7))
    for _ in range(4):
        m.predict_on_batch(ids)
    assert rec.__dict__.get("_proj_table") is None


@pytest.mark.native
def test_numpy_backend_and_float64_take_no_table():
    rnnlab.set_random_seed(0)
    ids = np.random.default_rng(6).integers(1, 50, (9, 7))
    for kw, fx in [(dict(backend="numpy"), "float32"), ({}, "float64")]:
        rnnlab.set_floatx(fx)
        m = rnnlab.Sequential([L.Embedding(50, 8), L.LSTM(16, **kw)])
        m.build((None, 7))
        for _ in range(4):
            m.predict_on_batch(ids)
        assert m.layers[1].__dict__.get("_proj_table") is None
    rnnlab.set_floatx("float32")


# ----------------------------------------------------------------------------- Adam over row blocks
@pytest.mark.native
@pytest.mark.parametrize("kind", ["dense", "sparse", "lazy", "amsgrad", "unsorted"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_row_blocks_same_bits(monkeypatch, kind, dtype):
    """The fused Adam step split over row blocks (several BLAS threads, large arrays) gives the bits of one call;
    unsorted sparse indices are not split."""
    rng = np.random.default_rng(8)
    R, D = 37, 5
    w0, m0, v0 = (rng.standard_normal((R, D)).astype(dtype) for _ in range(3))
    v0 = np.abs(v0)
    vh0 = np.abs(rng.standard_normal((R, D))).astype(dtype) if kind == "amsgrad" else None
    if kind == "dense" or kind == "amsgrad":
        idx, g = None, rng.standard_normal((R, D)).astype(dtype)
    else:
        idx = np.sort(rng.choice(R, 11, replace=False))
        if kind == "unsorted":
            idx = idx[::-1].copy()
        g = rng.standard_normal((idx.size, D)).astype(dtype)
    seen = []
    real = _native.run_blocks

    def spy(fn, blocks):
        seen.append(len(blocks))
        return real(fn, blocks)
    monkeypatch.setattr(_native, "run_blocks", spy)
    out = []
    for threads, split_min in [(1, 1 << 18), (3, 8)]:
        monkeypatch.setattr(_native, "blas_threads", lambda: threads)
        monkeypatch.setattr(_native, "ADAM_SPLIT_MIN", split_min)
        w, m, v = w0.copy(), m0.copy(), v0.copy()
        vh = None if vh0 is None else vh0.copy()
        assert _native.adam_update(w, m, v, vh, g, idx, 0.9, 0.999, 0.1, 0.001, 1e-7, 3e-3, lazy=kind == "lazy")
        out.append([w, m, v] + ([] if vh is None else [vh]))
    assert seen == [1, 1 if kind == "unsorted" else 3]
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(out[0][0], w0)


@pytest.mark.native_gemm
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kw", [{}, dict(go_backwards=True, return_sequences=True),
                                dict(mask_zero=True, return_sequences=True)])
def test_table_rows_copied_in_the_loop_same_bits(monkeypatch, threads, kw):
    """LSTM: the fused loop copies each step's rows from the table itself (rnnlab_lstm_fwd_loop_f32 with P, ids),
    by row blocks at 2 threads; the same bits as gathering all of A before the loop."""
    monkeypatch.setattr(_native, "blas_threads", lambda: threads)
    m, emb, rec = _model(U=32, **kw)
    ids = np.random.default_rng(9).integers(0 if kw.get("mask_zero") else 1, 50, (20, 7))
    ids[2, 4:] = 0
    for _ in range(3):
        m.predict_on_batch(ids)
    taken = []
    real = type(rec)._takes_table_rows
    monkeypatch.setattr(type(rec), "_takes_table_rows", lambda self, ws: taken.append(real(self, ws)) or taken[-1])
    got = rec.forward(emb.forward(ids), mask=emb.compute_mask(ids))
    assert taken == [True] and rec.last_path == "fused_loop" and rec._ws.fused_split == (threads == 2)
    monkeypatch.setattr(type(rec), "_takes_table_rows", lambda self, ws: False)
    ref = rec.forward(emb.forward(ids), mask=emb.compute_mask(ids))
    for a, b in zip(got if isinstance(got, list) else [got], ref if isinstance(ref, list) else [ref]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.native
def test_table_released_with_the_workspaces():
    m, emb, rec = _model()
    ids = np.random.default_rng(3).integers(1, 50, (9, 7))
    for _ in range(3):
        m.predict_on_batch(ids)
    assert rec._proj_table.table is not None
    before = m.predict_on_batch(ids)
    rec.release_workspaces()
    assert "_proj_table" not in rec.__dict__
    np.testing.assert_allclose(m.predict_on_batch(ids), before, rtol=2e-6, atol=2e-6)    # (the GEMM again)


# ----------------------------------------------------------------------------- the Embedding's gradient
@pytest.mark.native
@pytest.mark.parametrize("V,shape", [(20000, (32, 80)), (60, (16, 40)), (7, (3, 5)), (5, (1, 1))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_embedding_grad_kernel_same_bits_as_numpy(monkeypatch, V, shape, dtype):
    """The compiled row-sparse gradient (distinct ids ascending, each id's rows summed in original order) against
    embedding.py's NumPy code, bit for bit (where repeats dominate, V = 60 and 7, the kernel declines and NumPy's
    reduceat route runs: then both sides are that route)."""
    rnnlab.set_floatx("float64" if dtype == np.float64 else "float32")
    rng = np.random.default_rng(V)
    ids = rng.integers(0, V, shape)
    g = rng.standard_normal(shape + (6,)).astype(dtype) * np.float32(1e3) ** rng.integers(-1, 2, shape + (6,))
    emb = L.Embedding(V, 6)
    emb.build(shape)
    res = []
    for native in (True, False):
        if not native:
            monkeypatch.setattr(_native, "embedding_grad", lambda *a: None)
        emb.forward(ids, training=True)
        emb.backward(g)
        gr = emb.grads["embeddings"]
        res.append((np.asarray(gr.indices), np.asarray(gr.values)))
    np.testing.assert_array_equal(res[0][0], res[1][0])
    assert res[0][1].dtype == res[1][1].dtype == dtype
    np.testing.assert_array_equal(res[0][1], res[1][1])
    assert np.all(np.diff(res[0][0]) > 0)
    dense = np.zeros((V, 6))
    np.add.at(dense, ids.reshape(-1), g.reshape(-1, 6).astype(np.float64))
    np.testing.assert_allclose(res[0][1], dense[res[0][0]], rtol=1e-5, atol=1e-3)


def test_embedding_grad_kernel_declines_bad_input():
    g = np.ones((3, 2), np.float32)
    assert _native.embedding_grad(np.array([0, 1, 5]), g, 5) is None          # an id out of range
    assert _native.embedding_grad(np.array([0, 1]), g, 5) is None             # ids and rows disagree
    assert _native.embedding_grad(np.array([0, 1, 2]), g.astype(np.int32), 5) is None
    assert _native.embedding_grad(np.array([1, 1, 1]), g, 5) is None          # repeats the majority: NumPy's route
    uid, rows = _native.embedding_grad(np.array([4, 1, 4, 0, 3]), np.arange(10, dtype=np.float32).reshape(5, 2), 5)
    np.testing.assert_array_equal(uid, [0, 1, 3, 4])
    np.testing.assert_array_equal(rows, [[6, 7], [2, 3], [8, 9], [0 + 4, 1 + 5]])


@pytest.mark.native
def test_weights_changed_while_counting(monkeypatch):
    """No check while the table is not built yet: a change of W_x or E between those calls is simply part of the
    weights the table is built from at the call that builds it, and every result equals the GEMM's."""
    m, emb, rec = _model()
    ids = np.random.default_rng(12).integers(1, 50, (3, 7))        # 21 rows a call: built on the 4th call (> 50)
    for i in range(6):
        rec.params["kernel"][i, 3] += 0.25
        emb.params["embeddings"][ids[0, i]] -= 0.5
        got = m.predict_on_batch(ids)
        np.testing.assert_allclose(got, _reference(m, ids, rec, monkeypatch), rtol=2e-6, atol=2e-6)
        if i == 3:
            assert rec._proj_table.table is not None                # built from the weights of this call
    assert rec._proj_table.table is None and rec._proj_table.need == 100   # then found stale (changed again)
