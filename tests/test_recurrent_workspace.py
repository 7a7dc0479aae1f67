"""The fused loop's workspace: grow-only in T (a shorter call reuses the buffers through views, no rebuild),
and self-contained forward caches (a shared layer called twice before its backward passes, the backward passes
then run in reverse order with the caches swapped back, equals two separate layers with the same weights)."""
import numpy as np
import pytest

import rnnlab
from rnnlab import layers as L

CASES = [(L.LSTM, {}), (L.GRU, {}), (L.GRU, {"reset_after": False}), (L.SimpleRNN, {}),
         (L.LSTM, {"recurrent_dropout": 0.3, "dropout": 0.2})]


def _grads(layer):
    return {w: np.array(owner.grads[w]) for _, owner, w in layer.iter_weights()}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cls, kw", CASES)
@pytest.mark.parametrize("wrap", [False, True])
def test_shared_layer_two_calls_backward_in_reverse_order(dtype, cls, kw, wrap):
    rnnlab.set_floatx(dtype)
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((4, 9, 5)).astype(dtype)
    x2 = rng.standard_normal((4, 7, 5)).astype(dtype)   # a shorter second call: the same workspace would fit it
    mask2 = np.ones((4, 7), bool)
    mask2[1, 5:] = False

    def make():
        layer = cls(6, return_sequences=True, **kw)
        return L.RNN(L.LSTMCell(6, **kw), return_sequences=True) if wrap and cls is L.LSTM else layer

    shared, a, b = make(), make(), make()
    for layer in (shared, a, b):
        layer(x1)
    a.set_weights(shared.get_weights())
    b.set_weights(shared.get_weights())
    g1 = rng.standard_normal((4, 9, 6)).astype(dtype)
    g2 = rng.standard_normal((4, 7, 6)).astype(dtype)

    rnnlab.set_random_seed(1)
    y1 = shared.forward(x1, training=True)
    c1 = shared._cache
    rnnlab.set_random_seed(2)
    y2 = shared.forward(x2, training=True, mask=mask2)
    c2 = shared._cache
    shared._cache = c2
    d2 = shared.backward(g2)
    gr2 = _grads(shared)
    shared._cache = c1
    d1 = shared.backward(g1)
    gr1 = _grads(shared)

    rnnlab.set_random_seed(1)
    ya = a.forward(x1, training=True)
    da = a.backward(g1)
    rnnlab.set_random_seed(2)
    yb = b.forward(x2, training=True, mask=mask2)
    db = b.backward(g2)
    for u, v in ((y1, ya), (y2, yb), (d1, da), (d2, db)):
        assert np.array_equal(u, v)
    for k, v in _grads(a).items():
        assert np.array_equal(gr1[k], v), k
    for k, v in _grads(b).items():
        assert np.array_equal(gr2[k], v), k


@pytest.mark.parametrize("cls, kw", CASES[:4])
def test_length_change_reuses_the_workspace(cls, kw):
    rng = np.random.default_rng(1)
    layer = cls(5, return_sequences=True, **kw)
    fresh = cls(5, return_sequences=True, **kw)
    x = rng.standard_normal((3, 10, 4)).astype(np.float32)
    layer(x)
    fresh(x[:, :6])
    fresh.set_weights(layer.get_weights())
    layer.forward(x, training=True)
    layer.backward(np.ones((3, 10, 5), np.float32))
    ws = layer._ws
    for T in (6, 10, 3, 9):
        y = layer.forward(x[:, :T], training=True)
        assert layer._ws is ws and ws.T == T and ws.cap == 10   # the same buffers, views of the first T steps
        dx = layer.backward(np.ones((3, T, 5), np.float32))
        fresh.release_workspaces()
        assert np.array_equal(y, fresh.forward(x[:, :T], training=True))
        assert np.array_equal(dx, fresh.backward(np.ones((3, T, 5), np.float32)))
    layer.forward(np.concatenate([x, x], axis=1))                # a longer call grows it (once)
    assert layer._ws.cap == 20


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cls, kw", CASES[:4])
def test_batch_change_uses_views_of_one_workspace(dtype, cls, kw):
    """Grow-only in batch too: a smaller batch (and then a shorter one) runs on views of the same buffers, with the
    same bits as a layer that never saw another shape; a larger batch grows the workspace once."""
    rng = np.random.default_rng(2)
    layer = cls(5, return_sequences=True, **kw)
    fresh = cls(5, return_sequences=True, **kw)
    x = rng.standard_normal((8, 10, 4)).astype(dtype)
    layer(x)
    fresh(x[:1])
    fresh.set_weights(layer.get_weights())
    layer.forward(x, training=True)
    layer.backward(np.ones((8, 10, 5), dtype))
    ws, X0 = layer._ws, layer._ws.X
    mask = np.ones((8, 10), bool)
    mask[0, 7:] = False
    views = {}   # per batch size, the cell's per-step views: made once, kept while batch sizes alternate
    for B, T in ((3, 10), (1, 4), (8, 10), (5, 7), (3, 10), (8, 2), (1, 9)):
        g = rng.standard_normal((B, T, 5)).astype(dtype)
        for m in (None, mask[:B, :T]):
            y = layer.forward(x[:B, :T], training=True, mask=m)
            assert layer._ws is ws and (ws.B, ws.T, ws.cap_B, ws.cap) == (B, T, 8, 10)
            cell_views = ws.fast if ws.fast is not None else getattr(ws, "views", None)
            assert views.setdefault(B, cell_views) is cell_views
            assert ws.A.shape == (T, B, 15 if cls is L.GRU else 20 if cls is L.LSTM else 5)
            assert np.shares_memory(ws.X, X0) and ws.A.flags.c_contiguous
            dx = layer.backward(g)
            fresh.release_workspaces()
            assert np.array_equal(y, fresh.forward(x[:B, :T], training=True, mask=m)), (B, T)
            assert np.array_equal(dx, fresh.backward(g)), (B, T)
            assert np.array_equal(layer.forward(x[:B, :T], mask=m), fresh.forward(x[:B, :T], mask=m)), (B, T)
    layer.forward(np.concatenate([x, x]))                       # a larger batch grows it (once)
    assert (layer._ws.cap_B, layer._ws.cap) == (16, 10)


def test_workspace_fields_are_declared():
    layer = L.LSTM(3)
    layer(np.zeros((2, 4, 3)))
    with pytest.raises(AttributeError):
        layer._ws.undeclared = 1
