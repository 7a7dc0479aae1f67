"""One-hot inputs into SimpleRNN / LSTM / GRU: the input projection as a row lookup of W_x and dW_x as a
scatter-add (FusedRNN._onehot_ids): the same outputs and gradients as the GEMM, and the GEMM whenever the rows
are not exactly one-hot."""
import numpy as np
import pytest

import rnnlab
from rnnlab import layers as L
from rnnlab import _native
from rnnlab.layers.fused_loop import FusedRNN
from rnnlab.layers.fused_native import NativePaths

CELLS = [("SimpleRNN", {}), ("LSTM", {}), ("GRU", {}), ("GRU", {"reset_after": False}),
         ("LSTM", {"go_backwards": True, "return_sequences": True})]


def _run(cell, kw, x, g, onehot, monkeypatch, dtype, mask=None, training=True):
    # the other products on one path whatever the thread count (the packed kernel's choice depends on the widest
    # left operand of the weight-gradient pass, which the lookup leaves out): the same bits in both runs
    monkeypatch.setattr(NativePaths, "SPLIT_PRODUCTS", False)
    monkeypatch.setattr(_native, "packed_gemm_wins", lambda *a: False)
    monkeypatch.setattr(FusedRNN, "ONEHOT_ROWS", onehot)
    rnnlab.set_floatx(dtype)
    rnnlab.set_random_seed(0)
    layer = getattr(L, cell)(6, **kw)
    layer.input_grad_needed = True
    layer(x[:1])
    y = layer.forward(x, training=training, mask=mask)
    ids = layer._ws.onehot
    dx = layer.backward(g[:, :, :] if layer.return_sequences else g[:, -1])
    _run.dA = np.array(layer._ws.dA).reshape(-1, layer._ws.dA.shape[-1])   # (T*B, W) after the backward
    return y, dx, {k: np.array(v) for k, v in layer.grads.items()}, ids


@pytest.mark.parametrize("B", [5, 40])      # 40: the packed fused loop, which copies LSTM's rows of W_x itself
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell,kw", CELLS)
def test_onehot_rows_match_the_gemm(cell, kw, dtype, B, monkeypatch):
    rng = np.random.default_rng(3)
    T, D = 7, 9
    x = np.eye(D, dtype=dtype)[rng.integers(0, D, (B, T))]
    g = rng.standard_normal((B, T, 6)).astype(dtype)
    try:
        y1, dx1, gr1, ids = _run(cell, kw, x, g, True, monkeypatch, dtype)
        assert ids is not None and ids.shape == (T * B,)
        y0, dx0, gr0, ids0 = _run(cell, kw, x, g, False, monkeypatch, dtype)
        assert ids0 is None
    finally:
        rnnlab.set_floatx("float32")
    np.testing.assert_array_equal(y1, y0)          # the rows of the lookup are the GEMM's rows exactly
    np.testing.assert_array_equal(dx1, dx0)        # dX = dA W_x^T is still the GEMM
    for k in gr0:
        if k != "kernel":
            np.testing.assert_array_equal(gr1[k], gr0[k], err_msg=k)
    # dW_x[j] = the sum of dA's rows with id j: the same n terms as the GEMM's X^T dA, summed in another order, so
    # the two differ by at most 2 gamma_n times the sum of the terms' magnitudes (n = T*B rows)
    n = T * B
    u = np.finfo(dtype).eps / 2
    mag = np.zeros(gr0["kernel"].shape)
    np.add.at(mag, ids, np.abs(_run.dA.astype(np.float64)))
    bound = 2 * (n * u / (1 - n * u)) * mag + np.finfo(dtype).tiny
    assert np.all(np.abs(gr1["kernel"].astype(np.float64) - gr0["kernel"]) <= bound)


def test_onehot_rows_masked_and_finite_differences(monkeypatch):
    """A masked one-hot batch takes the lookup too; float64 finite differences of the loss w.r.t. W_x."""
    rng = np.random.default_rng(4)
    B, T, D = 3, 5, 4
    x = np.eye(D)[rng.integers(0, D, (B, T))]
    mask = np.ones((B, T), bool)
    mask[0, 3:] = False
    g = rng.standard_normal((B, T, 6))
    rnnlab.set_floatx("float64")
    try:
        y, _, grads, ids = _run("LSTM", {"return_sequences": True}, x, g, True, monkeypatch, "float64", mask=mask)
        assert ids is not None
        rnnlab.set_random_seed(0)
        layer = L.LSTM(6, return_sequences=True)
        layer(x[:1])
        W = layer.params["kernel"]
        eps = 1e-6
        for idx in [(0, 0), (1, 5), (3, 20), (2, 23)]:
            old = W[idx]
            W[idx] = old + eps
            lp = float((layer.forward(x, mask=mask) * g).sum())
            W[idx] = old - eps
            lm = float((layer.forward(x, mask=mask) * g).sum())
            W[idx] = old
            assert abs((lp - lm) / (2 * eps) - grads["kernel"][idx]) < 1e-7
    finally:
        rnnlab.set_floatx("float32")


def test_not_onehot_takes_the_gemm(monkeypatch):
    """Rows that are not exactly one-hot (a 2, two ones, an all-zero row, a NaN, input dropout's scaled ones)
    and a non-finite W_x keep the GEMM."""
    rng = np.random.default_rng(5)
    B, T, D = 4, 3, 5
    base = np.eye(D, dtype=np.float32)[rng.integers(0, D, (B, T))]
    monkeypatch.setattr(FusedRNN, "ONEHOT_ROWS", True)
    layer = L.LSTM(6)
    layer(base)
    assert layer._ws.onehot is not None
    for bad in [(1, 2, 2.0), (2, 1, None), (3, 0, np.nan)]:
        x = base.copy()
        b, t, v = bad
        if v is None:
            x[b, t] = 0                                    # an all-zero row
        else:
            x[b, t, int(np.argmax(x[b, t]))] = v
        layer(x)
        assert layer._ws.onehot is None, bad
    x = base.copy()
    x[0, 1, :2] = 1                                        # two ones in one row
    layer(x)
    assert layer._ws.onehot is None
    drop = L.LSTM(6, dropout=0.5)
    drop(base)
    drop.forward(base, training=True)
    assert drop._ws.onehot is None                         # input dropout scales the ones by 1 / keep
    layer.params["kernel"][0, 0] = np.inf
    layer(base)
    assert layer._ws.onehot is None


def test_bool_onehot_model_trains_the_same(monkeypatch):
    """Keras's character-model input (bool one-hot arrays) through a Sequential model: one train step with and
    without the lookup gives the same loss and weights to float32 rounding."""
    rng = np.random.default_rng(6)
    x = np.zeros((8, 10, 12), bool)
    x[np.arange(8)[:, None], np.arange(10)[None], rng.integers(0, 12, (8, 10))] = True
    y = np.eye(12, dtype=np.float32)[rng.integers(0, 12, 8)]
    out = []
    for onehot in (True, False):
        monkeypatch.setattr(FusedRNN, "ONEHOT_ROWS", onehot)
        rnnlab.set_random_seed(1)
        m = rnnlab.Sequential([L.Input((10, 12)), L.LSTM(16), L.Dense(12, activation="softmax")])
        m.compile(optimizer="adam", loss="categorical_crossentropy")
        loss = m.train_on_batch(x, y)
        out.append((loss, [w.copy() for w in m.get_weights()]))
        assert (m.layers[0]._ws.onehot is not None) == onehot
    np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-6)
    for a, b in zip(out[0][1], out[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("B", [2, 40])
def test_onehot_inference_paths(cell, B, monkeypatch):
    """Inference: the small-batch compiled loop (batch <= 4) and the fused loop give the GEMM's outputs."""
    rng = np.random.default_rng(7)
    x = np.eye(11, dtype=np.float32)[rng.integers(0, 11, (B, 9))]
    outs = []
    for onehot in (True, False):
        monkeypatch.setattr(FusedRNN, "ONEHOT_ROWS", onehot)
        rnnlab.set_random_seed(2)
        layer = getattr(L, cell)(16, return_sequences=True)
        outs.append(layer(x))
        assert (layer._ws.onehot is not None) == onehot
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("training", [False, True])
def test_lstm_fused_loop_copies_the_rows_itself(training, monkeypatch):
    """float32 LSTM on the packed fused loop: W_x is handed to the loop as the table (no (T, B, 4U) gather
    first), in training and inference; the outputs are the GEMM path's bits."""
    from rnnlab.layers.lstm import LSTM
    seen = []
    orig = LSTM._fused_forward
    monkeypatch.setattr(LSTM, "_fused_forward", lambda self, ws: seen.append(ws.table_rows is not None)
                        or orig(self, ws))
    rng = np.random.default_rng(8)
    x = np.eye(13, dtype=np.float32)[rng.integers(0, 13, (40, 6))]
    outs = []
    for onehot in (True, False):
        monkeypatch.setattr(FusedRNN, "ONEHOT_ROWS", onehot)
        rnnlab.set_random_seed(3)
        layer = L.LSTM(16, return_sequences=True)
        layer(x[:1])
        outs.append(layer.forward(x, training=training))
        assert layer.last_path == "fused_loop"
    assert seen[-2:] == [True, False]
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_onehot_ids_compiled_and_numpy_agree(dtype, monkeypatch):
    """rnnlab._native.onehot_ids: the compiled pass and the NumPy fallback accept and reject the same rows (a -0.0
    counts as a zero; a 2, a NaN, two ones or an all-zero row are not one-hot), on contiguous and strided rows."""
    from rnnlab import _native
    rng = np.random.default_rng(9)
    base = np.eye(7, dtype=dtype)[rng.integers(0, 7, 30)]
    base[3, (np.argmax(base[3]) + 1) % 7] = -0.0
    cases = [base]
    for r, c, v in [(4, None, 2.0), (5, None, np.nan), (6, "second", 1.0), (7, "all", 0.0)]:
        x = base.copy()
        j = int(np.argmax(x[r]))
        if c is None:
            x[r, j] = v
        elif c == "second":
            x[r, (j + 1) % 7] = v
        else:
            x[r] = v
        cases.append(x)
    wide = np.zeros((30, 12), dtype)
    wide[:, :7] = base
    cases.append(wide[:, :7])                               # rows 12 apart: a strided view
    results = []
    for lib in (_native._LIB, None):
        monkeypatch.setattr(_native, "_LIB", lib)
        results.append([_native.onehot_ids(x) for x in cases])
    for got_c, got_np, x in zip(*results, cases):
        assert (got_c is None) == (got_np is None)
        if got_c is not None:
            np.testing.assert_array_equal(got_c, got_np)
            np.testing.assert_array_equal(got_c, np.argmax(x, axis=1))
    assert [r is None for r in results[0]] == [False, True, True, True, True, False]


def test_layer_without_the_compiled_kernels(monkeypatch):
    """No compiled library: the NumPy test finds the one-hot rows and the layer gives the GEMM's outputs."""
    from rnnlab import _native
    rng = np.random.default_rng(10)
    x = np.eye(9, dtype=np.float32)[rng.integers(0, 9, (6, 5))]
    monkeypatch.setattr(_native, "_LIB", None)
    outs = []
    for onehot in (True, False):
        monkeypatch.setattr(FusedRNN, "ONEHOT_ROWS", onehot)
        rnnlab.set_random_seed(4)
        layer = L.GRU(8, return_sequences=True, go_backwards=True)
        outs.append(layer(x))
        assert (layer._ws.onehot is not None) == onehot
    np.testing.assert_array_equal(outs[0], outs[1])
