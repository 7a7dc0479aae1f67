"""LSTM and GRU (reset_after=True) training steps with the elementwise gate math in C
(rnnlab/_native/_cells.c, ``rnnlab_lstm_gates_fwd_f32`` / ``rnnlab_lstm_gates_bwd_f32``,
``rnnlab_gru_gates_fwd_f32`` / ``rnnlab_gru_gates_bwd_f32``, float32) agree with the NumPy fast path
(the float32 fast-path tolerance 2e-6) on outputs, states, dx and every weight gradient; the C steps are
taken when they should be (and only then); the backward step is bit-identical to the NumPy one."""
import numpy as np
import pytest

import rnnlab
from rnnlab import _native
from rnnlab import layers as L

TOL = 2e-6  # the float32 fast-path tolerance of tests/test_recurrent_fast_paths.py


def _run(layer, x, steps=1, mask=None, initial_state=None, portable=False, seed=5, isa=None):
    """Training forward + backward of ``layer`` (its path chosen by its ``backend``); ``steps`` calls in a row
    (stateful). ``portable``/``isa`` pin the compiled steps' instruction set (``ws.fast.cptr.isa``: a private
    field, as it simulates another CPU, which no public switch does). Returns the outputs, dx and gradients of
    the last call."""
    for _ in range(steps):
        if (portable or isa) and layer._ws is not None and layer._ws.fast.cptr is not None:
            layer._ws.fast.cptr.isa = 1 if portable else isa
        kw = {} if initial_state is None else dict(initial_state=initial_state)
        y = layer.forward(x, training=True, mask=mask, **kw)
        ys = y if isinstance(y, list) else [y]
        rng = np.random.default_rng(seed)
        gs = [rng.standard_normal(v.shape).astype(np.float32) for v in ys]
        dx = layer.backward(gs if isinstance(y, list) else gs[0])
    dxs = dx if isinstance(dx, list) else [dx]
    return [v.copy() for v in ys], [v.copy() for v in dxs], {k: np.array(v) for k, v in layer.grads.items()}


CELLS = ["LSTM", "GRU"]


def _pair(cell, U, x, second="numpy", **kw):
    """The same layer twice; the second one with ``backend=second`` (by default NumPy only: the public switch)."""
    a, b = getattr(L, cell)(U, **kw), getattr(L, cell)(U, backend=second, **kw)
    a(x)
    b(x)
    b.set_weights(a.get_weights())
    shape = a.params["bias"].shape
    bias = np.linspace(-0.5, 0.5, int(np.prod(shape))).astype(np.float32).reshape(shape)
    a.params["bias"][...] = bias
    b.params["bias"][...] = bias
    return a, b


def _close(r1, r2):
    (y1, d1, g1), (y2, d2, g2) = r1, r2
    for p, q in zip(y1 + d1, y2 + d2):
        assert p.dtype == q.dtype == np.float32
        np.testing.assert_allclose(p, q, rtol=TOL, atol=TOL)
    assert g1.keys() == g2.keys()
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=TOL, atol=TOL * 10, err_msg=k)


CASES = [
    dict(return_sequences=True),
    dict(return_state=True, go_backwards=True),
    dict(return_sequences=True, return_state=True),
    dict(return_sequences=True, recurrent_dropout=0.3),
]


@pytest.mark.native
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("U", [16, 6])          # the AVX2 path (where there is one) and the portable one
@pytest.mark.parametrize("B", [1, 3, 32])
@pytest.mark.parametrize("kw", CASES)
@pytest.mark.parametrize("masked", [False, True])
def test_native_training_matches_numpy(cell, U, B, kw, masked):
    rng = np.random.default_rng(B * 100 + U)
    T, D = 7, 5
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    mask = None
    if masked:
        mask = np.ones((B, T), bool)
        mask[0, 4:] = False
        mask[-1, :2] = False
    nat, ref = _pair(cell, U, x, **kw)
    rnnlab.set_random_seed(1)   # the same dropout masks on both
    r_nat = _run(nat, x, mask=mask)
    rnnlab.set_random_seed(1)
    r_ref = _run(ref, x, mask=mask)
    assert ref.last_path == "numpy" and nat.last_path in ("native_steps", "fused_loop")
    cp = nat._ws.fast.cptr
    assert cp is not None
    assert cp.fwd_isa == cp.bwd_isa == _native._LIB.rnnlab_step_isa(U)  # the C steps ran, on the widest path
    assert cp.bias is not None                    # ... and added the input bias to A[t] themselves
    _close(r_nat, r_ref)


@pytest.mark.native
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("U", [16, 6])
def test_initial_state_and_dstate(cell, U):
    rng = np.random.default_rng(7)
    B, T, D = 3, 6, 4
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    n_states = 2 if cell == "LSTM" else 1
    s0 = [rng.standard_normal((B, U)).astype(np.float32) for _ in range(n_states)]
    mask = np.ones((B, T), bool)
    mask[1, 3:] = False
    nat, ref = _pair(cell, U, x, return_sequences=True, return_state=True)
    r_nat = _run(nat, x, mask=mask, initial_state=s0)
    r_ref = _run(ref, x, mask=mask, initial_state=s0)
    assert ref.last_path == "numpy"
    assert len(r_nat[1]) == 1 + n_states          # dx, dh0 (, dc0)
    assert nat._ws.fast.cptr.bwd_isa > 0
    _close(r_nat, r_ref)


@pytest.mark.native
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("U", [16, 6])
def test_stateful(cell, U):
    rng = np.random.default_rng(11)
    B, T, D = 3, 5, 4
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    nat, ref = _pair(cell, U, x, stateful=True, return_sequences=True)
    nat.reset_states()
    ref.reset_states()
    r_nat = _run(nat, x, steps=3)
    r_ref = _run(ref, x, steps=3)
    assert ref.last_path == "numpy"
    _close(r_nat, r_ref)
    for p, q in zip(nat.states, ref.states):
        np.testing.assert_allclose(p, q, rtol=TOL, atol=TOL)


@pytest.mark.native
@pytest.mark.parametrize("cell", CELLS)
def test_portable_and_vector_steps_agree(cell):
    rng = np.random.default_rng(13)
    B, T, D, U = 5, 6, 4, 32
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    vec, por = _pair(cell, U, x, second="auto", return_sequences=True)
    r_vec = _run(vec, x)
    r_por = _run(por, x, portable=True)
    _run(por, x, portable=True)
    assert por._ws.fast.cptr.fwd_isa == por._ws.fast.cptr.bwd_isa == 1
    _close(r_vec, r_por)


@pytest.mark.native
@pytest.mark.parametrize("cell", CELLS)
def test_avx512_and_avx2_steps_give_the_same_bits(cell):
    """The AVX-512 step kernels (U % 16 == 0) do the AVX2 ones' operations on 16 lanes: the same bits."""
    rng = np.random.default_rng(19)
    B, T, D, U = 5, 6, 4, 32
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    wide, narrow = _pair(cell, U, x, second="auto", return_sequences=True)
    r_wide = _run(wide, x)
    _run(narrow, x, isa=2)
    r_narrow = _run(narrow, x, isa=2)
    cw, cn = wide._ws.fast.cptr, narrow._ws.fast.cptr
    assert cw.fwd_isa == _native._LIB.rnnlab_step_isa(U) and cn.fwd_isa == cn.bwd_isa == 2
    for p, q in zip(r_wide[0] + r_wide[1], r_narrow[0] + r_narrow[1]):
        np.testing.assert_array_equal(p, q)
    for k in r_wide[2]:
        np.testing.assert_array_equal(r_wide[2][k], r_narrow[2][k])


@pytest.mark.native
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("U", [16, 6])
@pytest.mark.parametrize("rdrop", [0.0, 0.3])
def test_backward_step_bit_identical(cell, U, rdrop, monkeypatch):
    """The same forward buffers, then the C and the NumPy backward steps: the same bits (the products on the BLAS
    in both: the layer's split products held off)."""
    from rnnlab.layers.fused_native import NativePaths
    monkeypatch.setattr(NativePaths, "SPLIT_PRODUCTS", False)
    monkeypatch.setattr(NativePaths, "PACKED_INPUT_GRAD", False)
    rng = np.random.default_rng(17)
    B, T, D = 4, 6, 3
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    layer = getattr(L, cell)(U, return_sequences=True, recurrent_dropout=rdrop)
    layer(x)
    layer.forward(x, training=True)
    ws = layer._ws
    # the buffers the backward reads and overwrites: A (-> dA), the states, GRU's Q (-> dQ), X (-> dx)
    bufs = [ws.A, ws.X, *ws.S] + ([ws.Q] if cell == "GRU" else [])
    saved_bufs, cache = [v.copy() for v in bufs], layer._cache
    g = rng.standard_normal((B, T, U)).astype(np.float32)
    out = []
    for lib in (_native._LIB, None):
        for v, w in zip(bufs, saved_bufs):
            v[...] = w
        layer._cache = cache     # backward consumes it
        saved, _native._LIB = _native._LIB, lib
        try:
            dx = layer.backward(g)
        finally:
            _native._LIB = saved
        out.append((dx.copy(), ws.A.copy(), {k: np.array(v) for k, v in layer.grads.items()}))
    assert layer._ws.fast.cptr.bwd_isa > 0
    np.testing.assert_array_equal(out[0][1], out[1][1])     # dA, every step
    np.testing.assert_array_equal(out[0][0], out[1][0])
    for k in out[0][2]:
        np.testing.assert_array_equal(out[0][2][k], out[1][2][k])


@pytest.mark.parametrize("cell", CELLS)
def test_float64_and_inference_do_not_take_the_training_steps(cell):
    rnnlab.set_floatx("float64")
    x = np.random.default_rng(0).standard_normal((3, 4, 2))
    layer = getattr(L, cell)(8, return_sequences=True)
    layer(x)
    layer.forward(x, training=True)
    assert layer._ws.fast.cptr is None          # float64: NumPy only (the gradient checks run there)


@pytest.mark.native
@pytest.mark.parametrize("cell", CELLS)
def test_no_kernel_no_c_steps(cell, monkeypatch):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    layer = getattr(L, cell)(16, return_sequences=True)
    layer(x)
    # (the workspace, with the C steps set up, exists) the library gone after that (private: simulates its absence, which no public switch does at run time)
    monkeypatch.setattr(_native, "_LIB", None)
    _run(layer, x)
    assert layer._ws.fast.cptr.fwd_isa == layer._ws.fast.cptr.bwd_isa == 0


def test_gru_reset_before_has_no_c_steps():
    x = np.random.default_rng(0).standard_normal((3, 4, 2)).astype(np.float32)
    layer = L.GRU(8, return_sequences=True, reset_after=False)
    layer(x)
    layer.forward(x, training=True)
    assert layer._ws.fast is None               # reset_after=False: no fast path, NumPy only
