"""The compiled BPTT loop with a mask (``rnnlab_lstm_bwd_loop_masked_f32``, ``rnnlab_gru_bwd_loop_masked_f32``):
padded batches and mask_zero Embeddings take the same one-call backward loop as unmasked ones.

At a step with a masked row anywhere in the batch (``ws.partial[t]``), the Python loop hands the step
``dnew = carry * m`` and keeps ``carry * (1 - m)``, then adds the step's dL/dS[t]; the output gradient of every step
is scaled by ``ws.fac`` first (``zero_output_for_mask`` True: the mask, False: "a real step seen so far"). The compiled
loop does the same multiplications and additions in the same order, so it is checked for *equal bits* against the
Python loop (its ``_fused_backward`` switched off), for both output-factor modes, every output/state combination,
ragged, holed and all-real masks, and row splits over 1-3 blocks (the partial flags stay those of the whole batch).
Semantics are checked apart from the Python loop too: against the float64 NumPy layer, and by central differences."""
import numpy as np
import pytest

import rnnlab
from rnnlab import _native
from rnnlab import layers as L


@pytest.fixture(autouse=True)
def _float32():
    rnnlab.set_floatx("float32")
    yield
    rnnlab.set_floatx("float32")


def _mask(kind, B, T, rng):
    if kind == "ragged":     # post-padded lengths 1..T: step 0 has no masked row (the unmasked branch)
        lengths = rng.integers(1, T + 1, B)
        lengths[0] = T
        return np.arange(T)[None, :] < lengths[:, None]
    if kind == "holes":      # masked steps anywhere, one row masked throughout, one real throughout
        m = rng.random((B, T)) < 0.6
        m[1] = False
        m[2] = True
        return m
    return np.ones((B, T), bool)   # "all": a mask with no masked step (never partial, still scaled by fac)


def _run(cell, kw, mask, x, fused, monkeypatch, h0=None, U=32):
    """A training forward + backward of a freshly seeded layer; returns (outputs, dx, grads, backward path)."""
    rnnlab.set_random_seed(3)
    layer = getattr(L, cell)(U, **kw)
    layer(x)
    b = layer.params["bias"]
    b[...] = np.linspace(-0.5, 0.5, b.size).reshape(b.shape)
    with monkeypatch.context() as mp:
        if not fused:
            mp.setattr(layer, "_fused_backward", lambda ws, g_out: False)
        out = layer.forward(x, training=True, mask=mask, initial_state=h0)
        assert layer.last_path == "fused_loop"
        outs = out if isinstance(out, list) else [out]
        g = [np.random.default_rng(7 + i).standard_normal(o.shape).astype(np.float32) for i, o in enumerate(outs)]
        dx = layer.backward(g if isinstance(out, list) else g[0])
    dxs = dx if isinstance(dx, list) else [dx]
    grads = [layer.grads[k].copy() for k in ("kernel", "recurrent_kernel", "bias")]
    return [o.copy() for o in outs], [d.copy() for d in dxs], grads, layer.last_backward_path


KWS = [{}, dict(return_sequences=True), dict(zero_output_for_mask=True),
       dict(return_sequences=True, zero_output_for_mask=True), dict(go_backwards=True, return_sequences=True),
       dict(initial_state=True, return_sequences=True), dict(return_state=True)]


@pytest.mark.native_gemm
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("kind", ["ragged", "holes", "all"])
@pytest.mark.parametrize("kw", KWS)
def test_masked_fused_backward_same_bits_as_step_loop(monkeypatch, cell, threads, kind, kw):
    kw = dict(kw)
    init = kw.pop("initial_state", False)
    monkeypatch.setattr(_native, "blas_threads", lambda: threads)
    rng = np.random.default_rng(threads + 10 * len(kw))
    B, T, D, U = 27, 7, 10, 32
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    mask = _mask(kind, B, T, rng)
    n_states = 2 if cell == "LSTM" else 1
    h0 = [rng.standard_normal((B, U)).astype(np.float32) for _ in range(n_states)] if init else None
    ref = _run(cell, kw, mask, x, False, monkeypatch, h0, U)
    got = _run(cell, kw, mask, x, True, monkeypatch, h0, U)
    assert ref[3] == "steps" and got[3] == "fused_loop"
    assert len(got[1]) == (1 + n_states if init else 1)
    for a, b in zip(ref[0] + ref[1] + ref[2], got[0] + got[1] + got[2]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.native_gemm
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_masked_split_rows_where_the_packed_gemm_does_not_win(monkeypatch, cell):
    """A product the packed kernel would not take on one thread: packed all the same (mask or not) when the
    compiled loop splits its rows over 2 blocks, and the masked loop gives the Python loop's bits."""
    calls = []
    real = _native.run_blocks

    def spy(fn, blocks):
        calls.append(list(blocks))
        return real(fn, blocks)
    monkeypatch.setattr(_native, "run_blocks", spy)
    monkeypatch.setattr(_native, "blas_threads", lambda: 2)
    monkeypatch.setattr(_native, "packed_gemm_wins", lambda *a: False)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((32, 6, 8)).astype(np.float32)
    mask = _mask("holes", 32, 6, rng)
    ref = _run(cell, dict(return_sequences=True), mask, x, False, monkeypatch, U=16)
    calls.clear()
    got = _run(cell, dict(return_sequences=True), mask, x, True, monkeypatch, U=16)
    assert got[3] == "fused_loop" and [(0, 16), (16, 32)] in calls
    for a, b in zip(ref[0] + ref[1] + ref[2], got[0] + got[1] + got[2]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.native_gemm
def test_masked_fallbacks_keep_the_python_loop(monkeypatch):
    """Recurrent dropout and recorded state gradients still take the per-step loop with a mask."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((16, 5, 8)).astype(np.float32)
    mask = _mask("ragged", 16, 5, rng)
    drop = L.GRU(16, recurrent_dropout=0.2)
    drop(x)
    drop.forward(x, training=True, mask=mask)
    drop.backward(np.ones((16, 16), np.float32))
    assert drop.last_backward_path == "steps"
    rec = L.LSTM(16, return_sequences=True)
    rec(x)
    monkeypatch.setattr(rec, "_record_state_grads", True)
    rec.forward(x, training=True, mask=mask)
    rec.backward(np.ones((16, 5, 16), np.float32))
    assert rec.last_backward_path == "steps" and rec.state_grads[0].shape == (5, 16, 16)
    plain = L.LSTM(16)
    plain(x)
    plain.forward(x, training=True, mask=mask)
    plain.backward(np.ones((16, 16), np.float32))
    assert plain.last_backward_path == "fused_loop"


@pytest.mark.native_gemm
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
@pytest.mark.parametrize("zero_output", [False, True])
def test_masked_fused_backward_matches_float64_numpy(cell, zero_output):
    """The semantics, apart from the Python float32 loop: the float64 NumPy-only layer (gradient-checked by
    central differences elsewhere) on the same weights gives the same gradients to float32 accuracy."""
    rng = np.random.default_rng(4)
    B, T, D, U = 12, 6, 5, 16
    x = rng.standard_normal((B, T, D))
    mask = _mask("holes", B, T, rng)
    g = rng.standard_normal((B, T, U))
    res = []
    for dtype, backend in (("float32", "auto"), ("float64", "numpy")):
        rnnlab.set_floatx(dtype)
        rnnlab.set_random_seed(0)
        layer = getattr(L, cell)(U, return_sequences=True, zero_output_for_mask=zero_output, backend=backend)
        layer(x.astype(dtype))
        if res:
            layer.set_weights([w.astype(dtype) for w in res[0][2]])
        out = layer.forward(x.astype(dtype), training=True, mask=mask)
        dx = layer.backward(g.astype(dtype))
        if dtype == "float32":
            assert layer.last_backward_path == "fused_loop"
        res.append((out, dx, layer.get_weights(), [layer.grads[k].copy() for k in ("kernel", "recurrent_kernel", "bias")]))
    (o32, dx32, _, g32), (o64, dx64, _, g64) = res
    np.testing.assert_allclose(o32, o64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx32, dx64, rtol=1e-3, atol=1e-4)
    for a, b in zip(g32, g64):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    # row 1 is masked throughout: no gradient reaches its inputs (its outputs are zeros in both modes)
    assert not mask[1].any() and not dx32[1].any() and np.abs(dx32).sum(axis=(1, 2)).min() == 0


@pytest.mark.native_gemm
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_masked_fused_backward_gradient_check(cell):
    """Central differences of the loss through the masked fused path (float32, loose but failing for a lost
    carry, a masked step that leaks gradient, or a wrong output factor)."""
    rng = np.random.default_rng(5)
    B, T, D, U = 8, 5, 3, 16
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    mask = _mask("holes", B, T, rng)
    layer = getattr(L, cell)(U, return_sequences=True)
    layer(x)
    w = rng.standard_normal((B, T, U)).astype(np.float32)

    def loss():
        return float(np.sum(layer.forward(x, training=True, mask=mask).astype(np.float64) * w))
    layer.forward(x, training=True, mask=mask)
    dx = layer.backward(w)
    assert layer.last_backward_path == "fused_loop"
    gk = layer.grads["recurrent_kernel"].copy()
    rk = layer.params["recurrent_kernel"]
    eps = 1e-2
    for idx in [(0, 0), (3, 17), (15, 40), (7, 30)]:
        old = rk[idx]
        rk[idx] = old + eps
        lp = loss()
        rk[idx] = old - eps
        lm = loss()
        rk[idx] = old
        num = (lp - lm) / (2 * eps)
        assert abs(num - gk[idx]) <= 2e-2 * max(1.0, abs(num)), (idx, num, gk[idx])
    for b, t in [(0, 0), (3, 2), (1, 4)]:    # row 1 is masked throughout: its input gradient is exactly 0
        old = x[b, t, 1]
        x[b, t, 1] = old + eps
        lp = loss()
        x[b, t, 1] = old - eps
        lm = loss()
        x[b, t, 1] = old
        num = (lp - lm) / (2 * eps)
        assert abs(num - dx[b, t, 1]) <= 2e-2 * max(1.0, abs(num)), (b, t, num, dx[b, t, 1])
    assert not dx[1].any()


@pytest.mark.native_gemm
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_masked_fused_backward_on_a_smaller_batch_of_the_workspace(monkeypatch, cell):
    """A second call with fewer rows and steps runs on views of the grow-only workspace (the masked loop's scratch
    ws.dnew included): the same bits as the per-step loop on the same two calls."""
    monkeypatch.setattr(_native, "blas_threads", lambda: 2)
    rng = np.random.default_rng(6)
    big = rng.standard_normal((32, 9, 6)).astype(np.float32)
    x = rng.standard_normal((19, 5, 6)).astype(np.float32)
    m_big, mask = _mask("holes", 32, 9, rng), _mask("ragged", 19, 5, rng)
    res = []
    for fused in (False, True):
        rnnlab.set_random_seed(1)
        layer = getattr(L, cell)(16, return_sequences=True)
        layer(big)
        if not fused:
            monkeypatch.setattr(layer, "_fused_backward", lambda ws, g_out: False)
        layer.forward(big, training=True, mask=m_big)
        layer.backward(np.ones((32, 9, 16), np.float32))
        layer.forward(x, training=True, mask=mask)
        dx = layer.backward(np.linspace(-1, 1, 19 * 5 * 16, dtype=np.float32).reshape(19, 5, 16))
        assert layer.last_backward_path == ("fused_loop" if fused else "steps")
        res.append([dx] + [layer.grads[k].copy() for k in ("kernel", "recurrent_kernel", "bias")])
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)
