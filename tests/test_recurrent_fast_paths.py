"""The fused fast paths of LSTM and GRU agree with the reference (per-slice activation) path, and a
float32 training step stays float32 everywhere (no silent float64 upcasts in the time loop)."""
import numpy as np
import pytest

import rnnlab
from rnnlab import layers as L


LOOP_FLAGS = ("return_sequences", "return_state", "go_backwards")


def _pair(cls, x, **kw):
    """Two layers with the same weights; the second one is the reference: RNN over a subclass of the layer's
    cell, which runs RNN's per-step loop and the cell's plain per-gate forward_step/backward_step (the public
    way to leave the fused loop and its fast-path formulation)."""
    cell_cls = {"LSTM": L.LSTMCell, "GRU": L.GRUCell}[cls.__name__]
    ref_cell = type("Reference" + cell_cls.__name__, (cell_cls,), {})
    fast = cls(6, **kw)
    ref = L.RNN(ref_cell(6, **{k: v for k, v in kw.items() if k not in LOOP_FLAGS}),
                **{k: v for k, v in kw.items() if k in LOOP_FLAGS})
    fast(x)
    ref(x)
    ref.set_weights(fast.get_weights())
    return fast, ref


@pytest.mark.parametrize("dtype,tol", [("float32", 2e-6), ("float64", 1e-13)])
@pytest.mark.parametrize("cls,kw", [
    (L.LSTM, dict(return_sequences=True)),
    (L.LSTM, dict(return_state=True, go_backwards=True)),
    (L.LSTM, dict(return_sequences=True, recurrent_dropout=0.3)),
    (L.GRU, dict(return_sequences=True)),
    (L.GRU, dict(return_state=True, use_bias=False)),
    (L.GRU, dict(return_sequences=True, recurrent_dropout=0.3)),
])
def test_fast_path_matches_reference_path(cls, kw, dtype, tol):
    rnnlab.set_floatx(dtype)
    try:
        rng = np.random.default_rng(3)
        B, T, D = 4, 7, 5
        x = rng.standard_normal((B, T, D)).astype(dtype)
        mask = np.ones((B, T), bool)
        mask[0, 4:] = False
        mask[2, :2] = False
        fast, ref = _pair(cls, x, **kw)
        # give the biases non-trivial values so that folding them is exercised
        for layer in (fast, ref):
            for _, owner, w in layer.iter_weights():
                if w == "bias":
                    b = owner.params["bias"]
                    b[...] = np.linspace(-0.5, 0.5, b.size).reshape(b.shape)
        outs = []
        for layer in (fast, ref):
            rnnlab.set_random_seed(1)  # same recurrent-dropout mask on both
            y = layer.forward(x, training=True, mask=mask)
            ys = y if isinstance(y, list) else [y]
            grads = [np.random.default_rng(5).standard_normal(v.shape).astype(dtype) for v in ys]
            dx = layer.backward(grads if isinstance(y, list) else grads[0])
            outs.append((ys, dx, {p.split("/")[-1]: np.array(o.grads[w]) for p, o, w in layer.iter_weights()}))
        (yf, dxf, gf), (yr, dxr, gr) = outs
        for a, b in zip(yf, yr):
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
        np.testing.assert_allclose(dxf, dxr, rtol=tol, atol=tol)
        for k in gf:
            np.testing.assert_allclose(gf[k], gr[k], rtol=tol, atol=tol * 10, err_msg=k)
        assert ref.last_path == "cell_loop" and fast.last_path != "cell_loop"
    finally:
        rnnlab.set_floatx("float32")


def _arrays(obj):
    for v in (dict(obj.fields()) if hasattr(obj, "fields") else vars(obj)).values():
        if isinstance(v, np.ndarray):
            yield v
        elif isinstance(v, list):
            yield from (a for a in v if isinstance(a, np.ndarray))
        elif hasattr(v, "__dict__") and not callable(v) and type(v).__name__ == "SimpleNamespace":
            yield from _arrays(v)


@pytest.mark.parametrize("make", [lambda: L.SimpleRNN(8), lambda: L.LSTM(8), lambda: L.GRU(8),
                                  lambda: L.GRU(8, reset_after=False), lambda: L.Bidirectional(L.LSTM(8))])
def test_float32_training_step_has_no_float64_arrays(make):
    rng = np.random.default_rng(0)
    x = rng.integers(1, 30, size=(4, 6))
    y = rng.integers(0, 2, size=(4, 1)).astype("float32")
    model = rnnlab.Sequential([L.Embedding(30, 5, input_length=6), make(), L.Dense(1, activation="sigmoid")])
    model.compile(rnnlab.optimizers.Adam(), "binary_crossentropy")
    model.train_on_batch(x, y)
    rec = model.layers[1]
    cells = [rec.forward_layer, rec.backward_layer] if hasattr(rec, "forward_layer") else [rec]
    for cell in cells:
        found = list(_arrays(cell._ws))
        assert len(found) > 5
        for arr in found:
            assert arr.dtype in (np.float32, np.bool_), (type(cell).__name__, arr.shape, arr.dtype)
    for layer in model.layers:
        for name, g in layer.grads.items():
            assert g.dtype == np.float32, (layer.name, name)
    for slots in model.optimizer._slots.values():
        assert all(s.dtype == np.float32 for s in slots.values())


@pytest.mark.parametrize("vocab", [5, 5000])  # mostly repeated ids (reduceat) / mostly distinct (gather + add.at)
def test_embedding_gradient_both_summation_routes_equal_one_hot(vocab, float64):
    rng = np.random.default_rng(vocab)
    ids = rng.integers(0, vocab, size=(4, 16))
    ids[1, :5] = ids[0, 0]  # some repeats in either case
    emb = L.Embedding(vocab, 3)
    emb(ids, training=True)
    g = rng.standard_normal((4, 16, 3))
    emb.backward(g)
    sg = emb.grads["embeddings"]
    n_dup = ids.size - np.unique(ids).size
    assert (2 * n_dup < ids.size) == (vocab == 5000)  # the two routes are both taken
    onehot = np.zeros((ids.size, vocab))
    onehot[np.arange(ids.size), ids.reshape(-1)] = 1.0
    np.testing.assert_allclose(sg.to_dense(), onehot.T @ g.reshape(-1, 3), rtol=1e-12, atol=1e-13)
    assert np.array_equal(sg.indices, np.unique(ids))


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("lazy", [False, True])
def test_adam_sparse_rows_match_the_formulas(lazy, amsgrad):
    """Adam on a RowSparseGrad (scratch-buffer path) equals the update rule written out in NumPy (float64)."""
    from rnnlab.backend import RowSparseGrad
    from rnnlab.optimizers import Adam

    rng = np.random.default_rng(7)
    V, E = 30, 4
    w = rng.standard_normal((V, E))

    class Holder:
        params, grads = {"e": w}, {}

    opt = Adam(0.01, amsgrad=amsgrad, lazy=lazy)
    ref_w, m, v, vh = w.copy(), np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    b1, b2, eps = opt.beta_1, opt.beta_2, opt.epsilon
    for t in range(1, 5):
        idx = np.sort(rng.choice(V, size=6 + t, replace=False))
        vals = rng.standard_normal((idx.size, E))
        Holder.grads["e"] = RowSparseGrad(idx, vals, (V, E))
        opt.apply([("l/e", Holder, "e")])
        g = np.zeros_like(w)
        g[idx] = vals
        rows = idx if lazy else np.arange(V)
        m[rows] = b1 * m[rows] + (1 - b1) * g[rows]
        v[rows] = b2 * v[rows] + (1 - b2) * g[rows] ** 2
        vv = v
        if amsgrad:
            vh[rows] = np.maximum(vh[rows], v[rows])
            vv = vh
        alpha = 0.01 * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        ref_w[rows] -= alpha * m[rows] / (np.sqrt(vv[rows]) + eps)
        np.testing.assert_allclose(w, ref_w, rtol=1e-12, atol=1e-14)
