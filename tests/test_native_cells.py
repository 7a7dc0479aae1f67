"""The native (C) LSTM, GRU (reset_after=True) and SimpleRNN (tanh) inference loops (rnnlab/_native/_cells.c) agree with the
NumPy loops, are taken when they should be (and only then), and their tanh approximation is accurate to
< 1e-6 relative over float32."""
import os
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np
import pytest

import rnnlab
from rnnlab import _native
from rnnlab import layers as L

TOL = 2e-6  # the float32 fast-path tolerance of tests/test_recurrent_fast_paths.py


def _pair(U, D, x, cls=L.LSTM, **kw):
    """Two layers (LSTMs by default) with the same weights; the second runs on NumPy only (backend="numpy")."""
    nat, ref = cls(U, **kw), cls(U, backend="numpy", **kw)
    nat(x)
    ref(x)
    ref.set_weights(nat.get_weights())
    return nat, ref


def _close(a, b):
    a, b = (a if isinstance(a, list) else [a]), (b if isinstance(b, list) else [b])
    assert len(a) == len(b)
    for p, q in zip(a, b):
        assert p.dtype == q.dtype == np.float32
        np.testing.assert_allclose(p, q, rtol=TOL, atol=TOL)


@dataclass(frozen=True)
class Cell:
    """What the mirrored LSTM / GRU / SimpleRNN tests below need to know about one cell."""
    name: str
    cls: type
    n_states: int               # states a layer carries (LSTM: h, c)
    buffers: tuple              # the workspace buffers the backward reads besides A and S (filled by the native loop too)
    seed: dict                  # per-test seed offsets, as they were when each cell had its own copy of the tests
    bias_case: dict             # the bias kwargs of the fifth test_native_matches_numpy case
    kw: dict                    # extra layer kwargs of the long-sequence and backward tests
    not_native: tuple           # layer kwargs that must keep the layer on the NumPy loop
    rec_dropout_native: bool    # recurrent_dropout checked: inference still native, training not
    infer: str                  # the _native function: infer(A, Wh, H, *bufs, mask, bias=, portable=)
    gates: int                  # A's width is gates * U
    kernel_units: tuple         # U of the portable-vs-vector comparison
    kernel_wh: object           # Wh from a float64 standard-normal (U, gates * U) draw
    kernel_bias: object         # the bias shape for U
    kernel_bufs: object         # (T, B, U) -> the buffers after H (states first), initial values set
    kernel_states: int          # how many of those (with H) are states that masked steps carry
    kernel_extra: object = field(default=None)   # (out, A, Wh, b, mask, U, T, B) -> further checks


def _lstm_bufs(T, B, U):
    C = np.zeros((T + 1, B, U), np.float32)
    C[0] = -0.25
    return C, np.empty((T, B, U), np.float32)


def _gru_prescaled(out, A, Wh, b, mask, U, T, B):
    # prescaled (the NumPy fast path's halved z, r columns) gives the same results
    half = np.ones(3 * U, np.float32)
    half[:2 * U] = 0.5
    H2 = np.zeros((T + 1, B, U), np.float32)
    H2[0] = 0.5
    Q2, A3 = np.empty((T, B, 3 * U), np.float32), A * half
    assert _native.gru_infer(A3, Wh * half, H2, Q2, mask, bias=b * half, prescaled=True) > 0
    for p, q in zip((A3, H2, Q2), out[0]):
        np.testing.assert_allclose(p, q, rtol=TOL, atol=TOL)


def _rnn_preactivations(out, A, Wh, b, mask, U, T, B):
    # the pre-activations are kept: a_t = x_t W_x + b + h_{t-1} W_h, h_t = tanh(a_t) where not masked
    A2, H = out[0]
    np.testing.assert_allclose(A2, A + b + np.einsum("tbu,uv->tbv", H[:-1], Wh), rtol=1e-5, atol=1e-5)
    t, b_ = np.nonzero(mask)
    np.testing.assert_allclose(H[t + 1, b_], np.tanh(A2[t, b_]), rtol=TOL, atol=TOL)


CELLS = [
    # LSTM: gate activations, tanh(c_t), states h and c
    Cell("lstm", L.LSTM, 2, ("TC",),
         dict(match=0, stateful=5, long=1, not_taken=2, backward=4, kernel=3),
         dict(unit_forget_bias=False, bias_initializer="random_normal"), dict(),
         (dict(activation="relu"), dict(recurrent_activation="hard_sigmoid"), dict(dtype="float64")), False,
         "lstm_infer", 4, (32,), lambda W: 0.3 * W, lambda U: 4 * U, _lstm_bufs, 2),
    # GRU (reset_after=True): z, r, hh; q (z, r columns halved); the state h
    Cell("gru", L.GRU, 1, ("Q",),
         dict(match=7, stateful=6, long=8, not_taken=9, backward=10, kernel=11),
         dict(bias_initializer="random_normal"), dict(bias_initializer="random_normal"),
         (dict(reset_after=False), dict(activation="relu"), dict(recurrent_activation="hard_sigmoid"),
          dict(dtype="float64")), True,
         "gru_infer", 3, (32, 48),            # 3U = 96, 144: full 64-column panels plus a 32 / 16 tail
         lambda W: 0.3 * W, lambda U: (2, 3 * U), lambda T, B, U: (np.empty((T, B, 3 * U), np.float32),), 1,
         _gru_prescaled),
    # SimpleRNN (tanh): the pre-activations a_t and the state h
    Cell("rnn", L.SimpleRNN, 1, (),
         dict(match=13, stateful=14, long=15, not_taken=16, backward=17, kernel=18),
         dict(bias_initializer="random_normal"), dict(bias_initializer="random_normal"),
         (dict(activation="relu"), dict(activation="sigmoid"), dict(dtype="float64")), True,
         "rnn_infer", 1, (16, 48, 80),         # one 16 tail; 48 tail; a full 64-column panel plus a 16 tail
         lambda W: W / np.sqrt(W.shape[0]),    # gain ~1, as the initializers
         lambda U: U, lambda T, B, U: (), 1, _rnn_preactivations),
]
per_cell = pytest.mark.parametrize("cell", CELLS, ids=[c.name for c in CELLS])
_MATCH_KW = [
    dict(),
    dict(return_sequences=True),
    dict(return_state=True, go_backwards=True),
    dict(return_sequences=True, return_state=True, use_bias=False),
]


@pytest.mark.native
@pytest.mark.parametrize("U", [16, 6])          # 16: the AVX2 path where the CPU has it; 6: portable C
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("cell, kw", [
    pytest.param(c, kw, id=f"{c.name}-kw{i}")
    for c in CELLS for i, kw in enumerate(_MATCH_KW + [dict(return_sequences=True, **c.bias_case)])])
@pytest.mark.parametrize("masked", [False, True])
def test_native_matches_numpy(U, B, cell, kw, masked):
    rng = np.random.default_rng(U * 10 + B + cell.seed["match"])
    T, D = 9, 5
    x = (2 * rng.standard_normal((B, T, D))).astype(np.float32)
    nat, ref = _pair(U, D, x, cls=cell.cls, **kw)
    mask = None
    if masked:
        mask = np.ones((B, T), bool)
        mask[0, 5:] = False
        mask[-1, :3] = False
        mask[0, 2] = False
    for h0 in (None, [rng.standard_normal((B, U)).astype(np.float32) for _ in range(cell.n_states)]):
        y = nat.forward(x, training=False, mask=mask, initial_state=h0)
        assert nat._ws.native
        yr = ref.forward(x, training=False, mask=mask, initial_state=h0)
        assert not ref._ws.native
        _close(y, yr)
        # the buffers the backward would read (see CELLS) and all the states
        for name in ("A",) + cell.buffers:
            np.testing.assert_allclose(getattr(nat._ws, name), getattr(ref._ws, name), rtol=TOL, atol=TOL)
        assert len(nat._ws.S) == len(ref._ws.S) == cell.n_states
        for S, Sr in zip(nat._ws.S, ref._ws.S):
            np.testing.assert_allclose(S, Sr, rtol=TOL, atol=TOL)


@pytest.mark.native
@per_cell
@pytest.mark.parametrize("B", [1, 3])
def test_native_stateful_two_calls(cell, B):
    rng = np.random.default_rng(cell.seed["stateful"])
    U, T, D = 32, 7, 4
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    nat, ref = _pair(U, D, x, cls=cell.cls, stateful=True, return_sequences=True)
    nat.reset_states()
    ref.reset_states()
    for _ in range(2):
        _close(nat.forward(x), ref.forward(x))
        assert nat._ws.native and not ref._ws.native
        _close(nat.states, ref.states)


@pytest.mark.native
@per_cell
def test_native_long_sequence_and_model_predict(cell):
    rng = np.random.default_rng(cell.seed["long"])
    B, T, D, U = 1, 80, 128, 128
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    nat, ref = _pair(U, D, x, cls=cell.cls, return_sequences=True, **cell.kw)
    _close(nat(x), ref(x))
    assert nat._ws.native
    tokens = rng.integers(0, 50, (2, 30))
    model = rnnlab.Sequential([L.Embedding(50, 16, input_length=30), cell.cls(32), L.Dense(1)])
    p = model.predict_on_batch(tokens)
    assert model.layers[1]._ws.native
    model.layers[1].backend = "numpy"            # the public switch
    _close(p, model.predict_on_batch(tokens))
    assert not model.layers[1]._ws.native and model.layers[1].last_path == "numpy"


@pytest.mark.native
@per_cell
def test_native_not_taken_when_it_should_not_be(cell):
    rng = np.random.default_rng(cell.seed["not_taken"])
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    lay = cell.cls(8)
    lay(x)
    assert lay._ws.native
    lay.forward(x, training=True)             # training: the NumPy loop (it keeps what backward needs)
    assert not lay._ws.native
    lay.backward(np.ones((2, 8), np.float32))
    lay.forward(x, training=False)
    assert lay._ws.native
    for kw in cell.not_native:
        other = cell.cls(8, **kw)
        other(x)
        assert not other._ws.native, kw
    if cell.rec_dropout_native:
        rd = cell.cls(8, recurrent_dropout=0.3)   # recurrent dropout only acts in training; inference is native
        rd(x)
        assert rd._ws.native
        rd.forward(x, training=True)
        assert not rd._ws.native


@pytest.mark.native
@per_cell
def test_backward_after_native_forward_matches(cell):
    """The native loop leaves A, its other buffers and S as the NumPy loop does, so a backward after it gives
    the same grads."""
    rng = np.random.default_rng(cell.seed["backward"])
    B, T, D, U = 3, 6, 4, 16
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    nat, ref = _pair(U, D, x, cls=cell.cls, return_sequences=True, **cell.kw)
    g = rng.standard_normal((B, T, U)).astype(np.float32)
    for lay in (nat, ref):
        lay.input_grad_needed = True
        lay.forward(x, training=False)
    assert nat._ws.native and not ref._ws.native
    _close(nat.backward(g), ref.backward(g))
    for k in nat.grads:
        np.testing.assert_allclose(nat.grads[k], ref.grads[k], rtol=1e-5, atol=1e-5)


@pytest.mark.native
@pytest.mark.parametrize("cell, U", [pytest.param(c, U, id=f"{c.name}-U{U}") for c in CELLS for U in c.kernel_units])
def test_portable_and_vector_kernels_agree(cell, U):
    """The vector rows (isa 0: the widest here) and the portable C agree to the fast-path tolerance; the AVX-512
    rows give the AVX2 rows' bits (isa 2 caps at AVX2; same panels, same FMA order, tanh16 = tanh8; on a CPU
    without AVX-512 both calls take the same path)."""
    rng = np.random.default_rng(cell.seed["kernel"])
    T, B = 12, 2
    A = rng.standard_normal((T, B, cell.gates * U)).astype(np.float32)
    Wh = cell.kernel_wh(rng.standard_normal((U, cell.gates * U))).astype(np.float32)
    b = rng.standard_normal(cell.kernel_bias(U)).astype(np.float32)
    mask = rng.random((T, B)) < 0.7
    infer = getattr(_native, cell.infer)
    out, paths = {}, {}
    for isa in (0, 1, 2):
        H = np.zeros((T + 1, B, U), np.float32)
        H[0] = 0.5
        bufs, A2 = cell.kernel_bufs(T, B, U), A.copy()
        paths[isa] = infer(A2, Wh, H, *bufs, mask, bias=b, isa=isa)
        out[isa] = (A2, H) + tuple(bufs)
    assert paths[0] == _native._LIB.rnnlab_cells_isa(U) and paths[1] == 1 and paths[2] == min(paths[0], 2)
    for p, q in zip(out[0], out[1]):
        np.testing.assert_allclose(p, q, rtol=TOL, atol=TOL)
    for p, q in zip(out[0], out[2]):
        np.testing.assert_array_equal(p, q)
    # masked steps carry the states
    t, b_ = np.nonzero(~mask)
    for S in out[0][1:1 + cell.kernel_states]:
        np.testing.assert_array_equal(S[t + 1, b_], S[t, b_])
    if cell.kernel_extra is not None:
        cell.kernel_extra([out[0], out[1]], A, Wh, b, mask, U, T, B)


@pytest.mark.native
@pytest.mark.parametrize("isa", [0, 1, 2])     # the widest vectors here, portable C, at most AVX2
def test_tanh_approximation_relative_error(isa):
    """Every 61st positive float32 bit pattern (~35M values, all exponents; tanh is odd): relative error
    < 1e-6 against float64 tanh (measured: ~1.5e-7 over every 3rd pattern)."""
    worst = 0.0
    for lo in range(0, 0x7F800000, 1 << 27):
        bits = np.arange(lo, min(lo + (1 << 27), 0x7F800000), 61, dtype=np.uint32)
        x = bits.view(np.float32)
        for s in (1, -1):
            y = _native.tanh_approx(s * x, isa=isa)
            ref = np.tanh(s * x.astype(np.float64))
            rel = np.abs(y - ref) / np.maximum(np.abs(ref), np.finfo(np.float32).tiny)
            worst = max(worst, float(rel.max()))
    assert worst < 1e-6, worst
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 20.0, -20.0, 0.625, -0.625], np.float32)
    y = _native.tanh_approx(special, isa=isa)
    assert np.isnan(y[0]) and y[1] == 1.0 and y[2] == -1.0 and y[3] == 0.0 and y[4] == 0.0
    assert y[5] == 1.0 and y[6] == -1.0
    np.testing.assert_allclose(y[7:], np.tanh(special[7:].astype(np.float64)), rtol=1e-6)


@pytest.mark.native
def test_tanh_vector_widths_give_the_same_bits():
    """The AVX-512 tanh (16 lanes) does the AVX2 one's operations in the same order: the same bits, tails
    (n % 16 != 0) included; where the CPU lacks one of them both calls take the same path."""
    x = np.arange(0, 0x7F800000, 977, dtype=np.uint32).view(np.float32)[:-3]
    x = np.concatenate([x, -x, np.array([np.nan, np.inf, -np.inf, -0.0], np.float32)])
    a, b = _native.tanh_approx(x, isa=0), _native.tanh_approx(x, isa=2)
    np.testing.assert_array_equal(a, b)
    assert x.size % 16 != 0


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


@pytest.mark.native
@pytest.mark.parametrize("cls", [L.LSTM, L.GRU, L.SimpleRNN])
def test_batches_above_the_limit_stay_on_numpy(cls):
    """One matrix-vector product per row and step loses to NumPy's GEMM from about 8 rows on."""
    from rnnlab.layers.fused_loop import NATIVE_MAX_BATCH

    rng = np.random.default_rng(5)
    lay = cls(8)
    small = rng.standard_normal((NATIVE_MAX_BATCH, 4, 3)).astype(np.float32)
    big = rng.standard_normal((NATIVE_MAX_BATCH + 1, 4, 3)).astype(np.float32)
    lay(small)
    assert lay._ws.native
    lay(big)
    assert not lay._ws.native


@pytest.mark.native
@per_cell
@pytest.mark.parametrize("U", [32, 48])
def test_weights_edited_in_place_between_native_calls(cell, U):
    """The loop keeps its packed copy of W_h in the workspace and only rewrites the rows that differ from
    W_h (_cells.c pack_panels): a call after an in-place edit of one element of the recurrent kernel (no
    set_weights, no hook) must see the new weights, bit for bit as a layer that packs them afresh."""
    rng = np.random.default_rng(cell.seed["kernel"] + 100)
    B, T, D = 1, 12, 5
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    lay = cell.cls(U, return_sequences=True)
    y0 = lay(x)
    assert lay._ws.native
    rk = lay.params["recurrent_kernel"]
    for k, j in ((0, 0), (U - 1, rk.shape[1] - 1), (U // 2, 70 % rk.shape[1])):
        rk[k, j] += 0.5                        # one element in the first, the last and a middle packed row
        y1 = lay(x)
        fresh = cell.cls(U, return_sequences=True)
        fresh(x)
        fresh.set_weights(lay.get_weights())
        np.testing.assert_array_equal(y1, fresh(x))
        assert lay._ws.native and fresh._ws.native
        assert not np.array_equal(y1, y0)
        y0 = y1


@pytest.mark.parametrize("shape", [(3,), (2, 5, 7), (80, 1, 512), 0, (0, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_empty_aligned(shape, dtype):
    a = rnnlab.backend.empty_aligned(shape, dtype)
    assert a.shape == ((shape,) if isinstance(shape, int) else shape) and a.dtype == dtype
    assert a.flags.c_contiguous and a.flags.writeable
    if a.size:
        assert a.ctypes.data % 64 == 0
    a[...] = 1
    assert np.all(a == 1)
    assert rnnlab.backend.empty_aligned((4, 4)).dtype == np.dtype(rnnlab.backend.floatx())
    assert rnnlab.backend.empty_aligned(10, np.float32, align=256).ctypes.data % 256 == 0


@per_cell
def test_workspace_buffers_start_on_a_cache_line(cell):
    """The buffers the compiled loops stream through (A, the states, the packed W_h scratch, TC / Q) are
    64-byte aligned: NumPy's 16 made every AVX-512 load straddle two cache lines (~15% of a batch-1 call)."""
    lay = cell.cls(32)
    lay(np.ones((1, 7, 5), np.float32))
    ws = lay._ws
    bufs = [ws.A, ws.X] + list(ws.S) + [getattr(ws, n) for n in cell.buffers]
    if _native.available():
        bufs.append(ws.native_wp)
    for b in bufs:
        assert b.ctypes.data % 64 == 0
