"""The native (C) LSTM, GRU (reset_after=True) and SimpleRNN (tanh) inference loops (rnnlab/_native/_cells.c) agree with the
NumPy loops, are taken when they should be (and only then), and their tanh approximation is accurate to
< 1e-6 relative over float32."""
import os
import subprocess
import sys

import numpy as np
import pytest

import rnnlab
from rnnlab import _native
from rnnlab import layers as L

needs_native = pytest.mark.skipif(not _native.available(),
                                  reason=f"native kernel not in use: {_native.why_unavailable()}")
TOL = 2e-6  # the float32 fast-path tolerance of tests/test_recurrent_fast_paths.py


@pytest.fixture(autouse=True)
def _float32():
    rnnlab.set_floatx("float32")
    rnnlab.set_random_seed(0)   # the same weights whatever ran before (an 80-step float32 run drifts ~1e-6)
    yield
    rnnlab.set_floatx("float32")


def _pair(U, D, x, cls=L.LSTM, **kw):
    """Two layers (LSTMs by default) with the same weights; the second never takes the native loop."""
    nat, ref = cls(U, **kw), cls(U, **kw)
    nat(x)
    ref(x)
    ref.set_weights(nat.get_weights())
    ref._native_ready = lambda ws: False
    return nat, ref


def _close(a, b):
    a, b = (a if isinstance(a, list) else [a]), (b if isinstance(b, list) else [b])
    assert len(a) == len(b)
    for p, q in zip(a, b):
        assert p.dtype == q.dtype == np.float32
        np.testing.assert_allclose(p, q, rtol=TOL, atol=TOL)


@needs_native
@pytest.mark.parametrize("U", [16, 6])          # 16: the AVX2 path where the CPU has it; 6: portable C
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("kw", [
    dict(),
    dict(return_sequences=True),
    dict(return_state=True, go_backwards=True),
    dict(return_sequences=True, return_state=True, use_bias=False),
    dict(return_sequences=True, unit_forget_bias=False, bias_initializer="random_normal"),
])
@pytest.mark.parametrize("masked", [False, True])
def test_native_matches_numpy(U, B, kw, masked):
    rng = np.random.default_rng(U * 10 + B)
    T, D = 9, 5
    x = (2 * rng.standard_normal((B, T, D))).astype(np.float32)
    nat, ref = _pair(U, D, x, **kw)
    mask = None
    if masked:
        mask = np.ones((B, T), bool)
        mask[0, 5:] = False
        mask[-1, :3] = False
        mask[0, 2] = False
    for h0 in (None, [rng.standard_normal((B, U)).astype(np.float32) for _ in range(2)]):
        y = nat.forward(x, training=False, mask=mask, initial_state=h0)
        assert nat._ws.native
        yr = ref.forward(x, training=False, mask=mask, initial_state=h0)
        assert not ref._ws.native
        _close(y, yr)
        # the buffers the backward would read: gate activations, tanh(c_t), all states
        np.testing.assert_allclose(nat._ws.A, ref._ws.A, rtol=TOL, atol=TOL)
        np.testing.assert_allclose(nat._ws.TC, ref._ws.TC, rtol=TOL, atol=TOL)
        for S, Sr in zip(nat._ws.S, ref._ws.S):
            np.testing.assert_allclose(S, Sr, rtol=TOL, atol=TOL)


@needs_native
@pytest.mark.parametrize("B", [1, 3])
def test_native_stateful_two_calls(B):
    rng = np.random.default_rng(5)
    U, T, D = 32, 7, 4
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    nat, ref = _pair(U, D, x, stateful=True, return_sequences=True)
    nat.reset_states()
    ref.reset_states()
    for _ in range(2):
        _close(nat.forward(x), ref.forward(x))
        assert nat._ws.native and not ref._ws.native
        _close(nat.states, ref.states)


@needs_native
def test_native_long_sequence_and_model_predict():
    rng = np.random.default_rng(1)
    B, T, D, U = 1, 80, 128, 128
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    nat, ref = _pair(U, D, x, return_sequences=True)
    _close(nat(x), ref(x))
    tokens = rng.integers(0, 50, (2, 30))
    model = rnnlab.Sequential([L.Embedding(50, 16, input_length=30), L.LSTM(32), L.Dense(1)])
    p = model.predict_on_batch(tokens)
    assert model.layers[1]._ws.native
    model.layers[1]._native_ready = lambda ws: False
    _close(p, model.predict_on_batch(tokens))
    assert not model.layers[1]._ws.native


@needs_native
def test_native_not_taken_when_it_should_not_be():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    lay = L.LSTM(8)
    lay(x)
    assert lay._ws.native
    lay.forward(x, training=True)             # training: the NumPy loop (it keeps what backward needs)
    assert not lay._ws.native
    lay.backward(np.ones((2, 8), np.float32))
    lay.forward(x, training=False)
    assert lay._ws.native
    for other in (L.LSTM(8, activation="relu"), L.LSTM(8, recurrent_activation="hard_sigmoid"),
                  L.LSTM(8, dtype="float64")):
        other(x)
        assert not other._ws.native


@needs_native
def test_backward_after_native_forward_matches():
    """The native loop leaves A, TC and S as the NumPy loop does, so a backward after it gives the same grads."""
    rng = np.random.default_rng(4)
    B, T, D, U = 3, 6, 4, 16
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    nat, ref = _pair(U, D, x, return_sequences=True)
    g = rng.standard_normal((B, T, U)).astype(np.float32)
    for lay in (nat, ref):
        lay.input_grad_needed = True
        lay.forward(x, training=False)
    assert nat._ws.native and not ref._ws.native
    _close(nat.backward(g), ref.backward(g))
    for k in nat.grads:
        np.testing.assert_allclose(nat.grads[k], ref.grads[k], rtol=1e-5, atol=1e-5)


@needs_native
def test_portable_and_vector_kernels_agree():
    rng = np.random.default_rng(3)
    T, B, U = 12, 2, 32
    A = rng.standard_normal((T, B, 4 * U)).astype(np.float32)
    Wh = (0.3 * rng.standard_normal((U, 4 * U))).astype(np.float32)
    b = rng.standard_normal(4 * U).astype(np.float32)
    mask = rng.random((T, B)) < 0.7
    out = []
    for portable in (False, True):
        H, C = np.zeros((T + 1, B, U), np.float32), np.zeros((T + 1, B, U), np.float32)
        H[0], C[0] = 0.5, -0.25
        TC, A2 = np.empty((T, B, U), np.float32), A.copy()
        assert _native.lstm_infer(A2, Wh, H, C, TC, mask, bias=b, portable=portable) == (1 if portable else _native._LIB.rnnlab_cells_isa(U))
        out.append((A2, H, C, TC))
    for p, q in zip(*out):
        np.testing.assert_allclose(p, q, rtol=TOL, atol=TOL)
    # masked steps carry the states
    H, C = out[0][1], out[0][2]
    t, b_ = np.nonzero(~mask)
    np.testing.assert_array_equal(H[t + 1, b_], H[t, b_])
    np.testing.assert_array_equal(C[t + 1, b_], C[t, b_])


@needs_native
@pytest.mark.parametrize("portable", [False, True])
def test_tanh_approximation_relative_error(portable):
    """Every 61st positive float32 bit pattern (~35M values, all exponents; tanh is odd): relative error
    < 1e-6 against float64 tanh (measured: ~1.5e-7 over every 3rd pattern)."""
    worst = 0.0
    for lo in range(0, 0x7F800000, 1 << 27):
        bits = np.arange(lo, min(lo + (1 << 27), 0x7F800000), 61, dtype=np.uint32)
        x = bits.view(np.float32)
        for s in (1, -1):
            y = _native.tanh_approx(s * x, portable=portable)
            ref = np.tanh(s * x.astype(np.float64))
            rel = np.abs(y - ref) / np.maximum(np.abs(ref), np.finfo(np.float32).tiny)
            worst = max(worst, float(rel.max()))
    assert worst < 1e-6, worst
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 20.0, -20.0, 0.625, -0.625], np.float32)
    y = _native.tanh_approx(special, portable=portable)
    assert np.isnan(y[0]) and y[1] == 1.0 and y[2] == -1.0 and y[3] == 0.0 and y[4] == 0.0
    assert y[5] == 1.0 and y[6] == -1.0
    np.testing.assert_allclose(y[7:], np.tanh(special[7:].astype(np.float64)), rtol=1e-6)


def test_no_native_env_falls_back():
    code = ("import numpy as np, rnnlab; from rnnlab import _native, layers as L\n"
            "assert not _native.available() and _native.lstm_infer(None, None, None, None, None) == 0\n"
            "assert _native.gru_infer(None, None, None, None) == 0\n"
            "lay = L.LSTM(4); y = lay(np.ones((1, 3, 2), np.float32))\n"
            "assert not lay._ws.native and y.shape == (1, 4)\n"
            "lay = L.GRU(4); y = lay(np.ones((1, 3, 2), np.float32))\n"
            "assert not lay._ws.native and y.shape == (1, 4)\nprint('ok')\n")
    env = dict(os.environ, RNNLAB_NO_NATIVE="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


# ------------------------------------------------------------------ GRU (reset_after=True)
@needs_native
@pytest.mark.parametrize("U", [16, 6])          # 16: the AVX2 path where the CPU has it; 6: portable C
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("kw", [
    dict(),
    dict(return_sequences=True),
    dict(return_state=True, go_backwards=True),
    dict(return_sequences=True, return_state=True, use_bias=False),
    dict(return_sequences=True, bias_initializer="random_normal"),
])
@pytest.mark.parametrize("masked", [False, True])
def test_gru_native_matches_numpy(U, B, kw, masked):
    rng = np.random.default_rng(U * 10 + B + 7)
    T, D = 9, 5
    x = (2 * rng.standard_normal((B, T, D))).astype(np.float32)
    nat, ref = _pair(U, D, x, cls=L.GRU, **kw)
    mask = None
    if masked:
        mask = np.ones((B, T), bool)
        mask[0, 5:] = False
        mask[-1, :3] = False
        mask[0, 2] = False
    for h0 in (None, [rng.standard_normal((B, U)).astype(np.float32)]):
        y = nat.forward(x, training=False, mask=mask, initial_state=h0)
        assert nat._ws.native
        yr = ref.forward(x, training=False, mask=mask, initial_state=h0)
        assert not ref._ws.native
        _close(y, yr)
        # the buffers the backward would read: z, r, hh; q (z, r columns halved); the states
        np.testing.assert_allclose(nat._ws.A, ref._ws.A, rtol=TOL, atol=TOL)
        np.testing.assert_allclose(nat._ws.Q, ref._ws.Q, rtol=TOL, atol=TOL)
        np.testing.assert_allclose(nat._ws.S[0], ref._ws.S[0], rtol=TOL, atol=TOL)


@needs_native
@pytest.mark.parametrize("B", [1, 3])
def test_gru_native_stateful_two_calls(B):
    rng = np.random.default_rng(6)
    U, T, D = 32, 7, 4
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    nat, ref = _pair(U, D, x, cls=L.GRU, stateful=True, return_sequences=True)
    nat.reset_states()
    ref.reset_states()
    for _ in range(2):
        _close(nat.forward(x), ref.forward(x))
        assert nat._ws.native and not ref._ws.native
        _close(nat.states, ref.states)


@needs_native
def test_gru_native_long_sequence_and_model_predict():
    rng = np.random.default_rng(8)
    B, T, D, U = 1, 80, 128, 128
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    nat, ref = _pair(U, D, x, cls=L.GRU, return_sequences=True, bias_initializer="random_normal")
    _close(nat(x), ref(x))
    assert nat._ws.native
    tokens = rng.integers(0, 50, (2, 30))
    model = rnnlab.Sequential([L.Embedding(50, 16, input_length=30), L.GRU(32), L.Dense(1)])
    p = model.predict_on_batch(tokens)
    assert model.layers[1]._ws.native
    model.layers[1]._native_ready = lambda ws: False
    _close(p, model.predict_on_batch(tokens))
    assert not model.layers[1]._ws.native


@needs_native
def test_gru_native_not_taken_when_it_should_not_be():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    lay = L.GRU(8)
    lay(x)
    assert lay._ws.native
    lay.forward(x, training=True)             # training: the NumPy loop
    assert not lay._ws.native
    lay.backward(np.ones((2, 8), np.float32))
    lay.forward(x, training=False)
    assert lay._ws.native
    for other in (L.GRU(8, reset_after=False), L.GRU(8, activation="relu"),
                  L.GRU(8, recurrent_activation="hard_sigmoid"), L.GRU(8, dtype="float64")):
        other(x)
        assert not other._ws.native
    rd = L.GRU(8, recurrent_dropout=0.3)      # recurrent dropout only acts in training; inference is native
    rd(x)
    assert rd._ws.native
    rd.forward(x, training=True)
    assert not rd._ws.native


@needs_native
def test_gru_backward_after_native_forward_matches():
    """The native loop leaves A, Q and S as the NumPy loop does, so a backward after it gives the same grads."""
    rng = np.random.default_rng(10)
    B, T, D, U = 3, 6, 4, 16
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    nat, ref = _pair(U, D, x, cls=L.GRU, return_sequences=True, bias_initializer="random_normal")
    g = rng.standard_normal((B, T, U)).astype(np.float32)
    for lay in (nat, ref):
        lay.input_grad_needed = True
        lay.forward(x, training=False)
    assert nat._ws.native and not ref._ws.native
    _close(nat.backward(g), ref.backward(g))
    for k in nat.grads:
        np.testing.assert_allclose(nat.grads[k], ref.grads[k], rtol=1e-5, atol=1e-5)


@needs_native
@pytest.mark.parametrize("U", [32, 48])         # 3U = 96, 144: full 64-column panels plus a 32 / 16 tail
def test_gru_portable_and_vector_kernels_agree(U):
    rng = np.random.default_rng(11)
    T, B = 12, 2
    A = rng.standard_normal((T, B, 3 * U)).astype(np.float32)
    Wh = (0.3 * rng.standard_normal((U, 3 * U))).astype(np.float32)
    b = rng.standard_normal((2, 3 * U)).astype(np.float32)
    mask = rng.random((T, B)) < 0.7
    out = []
    for portable in (False, True):
        H = np.zeros((T + 1, B, U), np.float32)
        H[0] = 0.5
        Q, A2 = np.empty((T, B, 3 * U), np.float32), A.copy()
        assert _native.gru_infer(A2, Wh, H, Q, mask, bias=b, portable=portable) == (1 if portable else _native._LIB.rnnlab_cells_isa(U))
        out.append((A2, H, Q))
    for p, q in zip(*out):
        np.testing.assert_allclose(p, q, rtol=TOL, atol=TOL)
    H = out[0][1]
    t, b_ = np.nonzero(~mask)
    np.testing.assert_array_equal(H[t + 1, b_], H[t, b_])
    # prescaled (the NumPy fast path's halved z, r columns) gives the same results
    half = np.ones(3 * U, np.float32)
    half[:2 * U] = 0.5
    H2 = np.zeros((T + 1, B, U), np.float32)
    H2[0] = 0.5
    Q2, A3 = np.empty((T, B, 3 * U), np.float32), A * half
    assert _native.gru_infer(A3, Wh * half, H2, Q2, mask, bias=b * half, prescaled=True) > 0
    for p, q in zip((A3, H2, Q2), out[0]):
        np.testing.assert_allclose(p, q, rtol=TOL, atol=TOL)


@needs_native
@pytest.mark.parametrize("cls", [L.LSTM, L.GRU, L.SimpleRNN])
def test_batches_above_the_limit_stay_on_numpy(cls):
    """One matrix-vector product per row and step loses to NumPy's GEMM from about 8 rows on."""
    from rnnlab.layers.recurrent import NATIVE_MAX_BATCH

    rng = np.random.default_rng(5)
    lay = cls(8)
    small = rng.standard_normal((NATIVE_MAX_BATCH, 4, 3)).astype(np.float32)
    big = rng.standard_normal((NATIVE_MAX_BATCH + 1, 4, 3)).astype(np.float32)
    lay(small)
    assert lay._ws.native
    lay(big)
    assert not lay._ws.native


# ------------------------------------------------------------------ SimpleRNN (tanh)
@needs_native
@pytest.mark.parametrize("U", [16, 6])          # 16: the AVX2 path where the CPU has it; 6: portable C
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("kw", [
    dict(),
    dict(return_sequences=True),
    dict(return_state=True, go_backwards=True),
    dict(return_sequences=True, return_state=True, use_bias=False),
    dict(return_sequences=True, bias_initializer="random_normal"),
])
@pytest.mark.parametrize("masked", [False, True])
def test_rnn_native_matches_numpy(U, B, kw, masked):
    rng = np.random.default_rng(U * 10 + B + 13)
    T, D = 9, 5
    x = (2 * rng.standard_normal((B, T, D))).astype(np.float32)
    nat, ref = _pair(U, D, x, cls=L.SimpleRNN, **kw)
    mask = None
    if masked:
        mask = np.ones((B, T), bool)
        mask[0, 5:] = False
        mask[-1, :3] = False
        mask[0, 2] = False
    for h0 in (None, [rng.standard_normal((B, U)).astype(np.float32)]):
        y = nat.forward(x, training=False, mask=mask, initial_state=h0)
        assert nat._ws.native
        yr = ref.forward(x, training=False, mask=mask, initial_state=h0)
        assert not ref._ws.native
        _close(y, yr)
        # the buffers the backward would read: the pre-activations a_t and the states
        np.testing.assert_allclose(nat._ws.A, ref._ws.A, rtol=TOL, atol=TOL)
        np.testing.assert_allclose(nat._ws.S[0], ref._ws.S[0], rtol=TOL, atol=TOL)


@needs_native
@pytest.mark.parametrize("B", [1, 3])
def test_rnn_native_stateful_two_calls(B):
    rng = np.random.default_rng(14)
    U, T, D = 32, 7, 4
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    nat, ref = _pair(U, D, x, cls=L.SimpleRNN, stateful=True, return_sequences=True)
    nat.reset_states()
    ref.reset_states()
    for _ in range(2):
        _close(nat.forward(x), ref.forward(x))
        assert nat._ws.native and not ref._ws.native
        _close(nat.states, ref.states)


@needs_native
def test_rnn_native_long_sequence_and_model_predict():
    rng = np.random.default_rng(15)
    B, T, D, U = 1, 80, 128, 128
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    nat, ref = _pair(U, D, x, cls=L.SimpleRNN, return_sequences=True, bias_initializer="random_normal")
    _close(nat(x), ref(x))
    assert nat._ws.native
    tokens = rng.integers(0, 50, (2, 30))
    model = rnnlab.Sequential([L.Embedding(50, 16, input_length=30), L.SimpleRNN(32), L.Dense(1)])
    p = model.predict_on_batch(tokens)
    assert model.layers[1]._ws.native
    model.layers[1]._native_ready = lambda ws: False
    _close(p, model.predict_on_batch(tokens))
    assert not model.layers[1]._ws.native


@needs_native
def test_rnn_native_not_taken_when_it_should_not_be():
    rng = np.random.default_rng(16)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    lay = L.SimpleRNN(8)
    lay(x)
    assert lay._ws.native
    lay.forward(x, training=True)             # training: the NumPy loop
    assert not lay._ws.native
    lay.backward(np.ones((2, 8), np.float32))
    lay.forward(x, training=False)
    assert lay._ws.native
    for other in (L.SimpleRNN(8, activation="relu"), L.SimpleRNN(8, activation="sigmoid"),
                  L.SimpleRNN(8, dtype="float64")):
        other(x)
        assert not other._ws.native
    rd = L.SimpleRNN(8, recurrent_dropout=0.3)  # recurrent dropout only acts in training; inference is native
    rd(x)
    assert rd._ws.native
    rd.forward(x, training=True)
    assert not rd._ws.native


@needs_native
def test_rnn_backward_after_native_forward_matches():
    """The native loop leaves A and S as the NumPy loop does, so a backward after it gives the same grads."""
    rng = np.random.default_rng(17)
    B, T, D, U = 3, 6, 4, 16
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    nat, ref = _pair(U, D, x, cls=L.SimpleRNN, return_sequences=True, bias_initializer="random_normal")
    g = rng.standard_normal((B, T, U)).astype(np.float32)
    for lay in (nat, ref):
        lay.input_grad_needed = True
        lay.forward(x, training=False)
    assert nat._ws.native and not ref._ws.native
    _close(nat.backward(g), ref.backward(g))
    for k in nat.grads:
        np.testing.assert_allclose(nat.grads[k], ref.grads[k], rtol=1e-5, atol=1e-5)


@needs_native
@pytest.mark.parametrize("U", [16, 48, 80])     # one 16 tail; 48 tail; a full 64-column panel plus a 16 tail
def test_rnn_portable_and_vector_kernels_agree(U):
    rng = np.random.default_rng(18)
    T, B = 12, 2
    A = rng.standard_normal((T, B, U)).astype(np.float32)
    Wh = (rng.standard_normal((U, U)) / np.sqrt(U)).astype(np.float32)  # gain ~1, as the initializers
    b = rng.standard_normal(U).astype(np.float32)
    mask = rng.random((T, B)) < 0.7
    out = []
    for portable in (False, True):
        H = np.zeros((T + 1, B, U), np.float32)
        H[0] = 0.5
        A2 = A.copy()
        assert _native.rnn_infer(A2, Wh, H, mask, bias=b, portable=portable) == (
            1 if portable else _native._LIB.rnnlab_cells_isa(U))
        out.append((A2, H))
    for p, q in zip(*out):
        np.testing.assert_allclose(p, q, rtol=TOL, atol=TOL)
    A2, H = out[0]
    t, b_ = np.nonzero(~mask)
    np.testing.assert_array_equal(H[t + 1, b_], H[t, b_])
    # the pre-activations are kept: a_t = x_t W_x + b + h_{t-1} W_h, h_t = tanh(a_t) where not masked
    np.testing.assert_allclose(A2, A + b + np.einsum("tbu,uv->tbv", H[:-1], Wh), rtol=1e-5, atol=1e-5)
    t, b_ = np.nonzero(mask)
    np.testing.assert_allclose(H[t + 1, b_], np.tanh(A2[t, b_]), rtol=TOL, atol=TOL)
