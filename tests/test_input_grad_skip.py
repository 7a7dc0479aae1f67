"""The lowest layer of a model's backward pass skips dL/dx (``Layer.input_grad_needed``): its weight
gradients are exactly those of the full backward pass, it returns None, and the flag is restored."""
import numpy as np
import pytest

import rnnlab
from rnnlab.layers import GRU, LSTM, Bidirectional, Dense, Embedding, SimpleRNN


def _model(first, x_shape, embed=False):
    rnnlab.set_random_seed(0)
    layers = ([Embedding(30, 5)] if embed else []) + [first, Dense(3)]
    m = rnnlab.Sequential([rnnlab.Input(x_shape[1:])] + layers)
    m.compile("sgd", "mse")
    return m


def _full_backward_grads(m, x, y):
    """Forward + backward through every layer with the input gradient computed (the old path)."""
    out, mask = m._forward(m._prepare_x(x), training=True)
    _, grad = m.loss.forward_backward(y, out, mask=m._loss_mask(out, mask))
    for layer in reversed(m.layers):
        grad = layer.backward(grad)
    return grad, [owner.grads[w].copy() for _, owner, w in m.trainable_weight_refs()]


@pytest.mark.parametrize("first", [
    lambda: SimpleRNN(4), lambda: LSTM(4), lambda: GRU(4), lambda: GRU(4, reset_after=False),
    lambda: Bidirectional(LSTM(4)), lambda: LSTM(4, return_sequences=True),
])
def test_lowest_layer_skips_input_grad_with_identical_weight_grads(first):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 5, 2)).astype("float32")
    a = _model(first(), x.shape)
    y = rng.standard_normal((6,) + tuple(a.output_shape[1:])).astype("float32")
    b = _model(first(), x.shape)
    b.set_weights(a.get_weights())
    dx, want = _full_backward_grads(a, x, y)
    assert dx is not None and dx.shape == x.shape  # called directly, the layer still returns dL/dx

    lowest = b.layers[0]
    seen = []
    orig = lowest.backward
    lowest.backward = lambda g: seen.append(out := orig(g)) or out
    out, mask = b._forward(b._prepare_x(x), training=True)
    _, grad = b.loss.forward_backward(y, out, mask=b._loss_mask(out, mask))
    b._backward(grad)
    assert seen == [None]                      # dL/dx was skipped
    assert lowest.input_grad_needed is True    # and the flag is back for direct calls
    got = [owner.grads[w] for _, owner, w in b.trainable_weight_refs()]
    assert len(got) == len(want) > 0
    for g, wnt in zip(got, want):
        np.testing.assert_array_equal(g, wnt)


def test_layer_above_an_embedding_still_returns_its_input_grad():
    x = np.array([[1, 2, 3, 0], [4, 5, 6, 7]])
    m = _model(LSTM(4), x.shape, embed=True)
    lstm = m.layers[1]
    seen = []
    orig = lstm.backward
    lstm.backward = lambda g: seen.append(out := orig(g)) or out
    m.train_on_batch(x, np.zeros((2, 3), "float32"))
    assert seen[0] is not None and seen[0].shape == (2, 4, 5)


def test_initial_state_gradients_are_still_returned():
    rng = np.random.default_rng(2)
    layer = LSTM(3)
    x = rng.standard_normal((2, 4, 2)).astype("float32")
    layer(x)
    h0 = [rng.standard_normal((2, 3)).astype("float32") for _ in range(2)]
    layer.forward(x, training=True, initial_state=h0)
    layer.input_grad_needed = False
    try:
        g = layer.backward(np.ones((2, 3), "float32"))
    finally:
        layer.input_grad_needed = True
    assert isinstance(g, list) and len(g) == 3 and g[1].shape == (2, 3)
