"""Masks through the stack: Masking / Embedding(mask_zero) -> RNNs -> Bidirectional -> TimeDistributed -> loss.

The central check: sequences of different lengths in one padded batch (right- and left-padded) give the same
outputs, the same input gradients and, summed over the sequences, the same weight gradients as running each
sequence alone, unpadded. Plus Masking/RepeatVector semantics and gradients, and the bad-input errors.
"""
import numpy as np
import pytest

import rnnlab
from rnnlab.layers import (GRU, LSTM, Bidirectional, Dense, Embedding, Masking, RepeatVector, SimpleRNN,
                           TimeDistributed)
from rnnlab.testing import check_layer_gradients, rel_error

LENGTHS = [5, 2, 4, 1]
T, D, U = 5, 3, 2


def _padded(pad, seed=1):
    rng = np.random.default_rng(seed)
    seqs = [rng.standard_normal((n, D)) for n in LENGTHS]
    x = np.full((len(LENGTHS), T, D), 1e3)  # garbage in the padding must not leak
    mask = np.zeros((len(LENGTHS), T), bool)
    for i, s in enumerate(seqs):
        sl = slice(0, len(s)) if pad == "right" else slice(T - len(s), T)
        x[i, sl] = s
        mask[i, sl] = True
    return seqs, x, mask


def _grads(layer):
    return {p: np.array(owner.grads[w], copy=True) for p, owner, w in layer.iter_weights()}


def _time_order(layer, y):
    """Outputs in input time order (a plain go_backwards layer returns them in processing order)."""
    return y[:, ::-1] if getattr(layer, "go_backwards", False) and not isinstance(layer, Bidirectional) else y


LAYERS = {
    "LSTM": lambda rs: LSTM(U, return_sequences=rs),
    "GRU": lambda rs: GRU(U, return_sequences=rs),
    "GRU_reset_before": lambda rs: GRU(U, return_sequences=rs, reset_after=False),
    "SimpleRNN": lambda rs: SimpleRNN(U, return_sequences=rs),
    "LSTM_go_backwards": lambda rs: LSTM(U, return_sequences=rs, go_backwards=True),
    "Bi_LSTM_concat": lambda rs: Bidirectional(LSTM(U, return_sequences=rs)),
    "Bi_GRU_mul": lambda rs: Bidirectional(GRU(U, return_sequences=rs), merge_mode="mul"),
    "Bi_SimpleRNN_ave": lambda rs: Bidirectional(SimpleRNN(U, return_sequences=rs), merge_mode="ave"),
}


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("pad", ["right", "left"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_padded_batch_equals_each_sequence_alone(float64, name, pad, return_sequences):
    seqs, x, mask = _padded(pad)
    layer = LAYERS[name](return_sequences)
    y = layer(x, mask=mask, training=True)
    rng = np.random.default_rng(7)
    g = rng.standard_normal(y.shape)
    if return_sequences:  # a masked loss gives no gradient at padded steps
        g = _time_order(layer, _time_order(layer, g) * mask[:, :, None])
    dx = layer.backward(g)
    batch_grads = _grads(layer)
    assert np.all(np.isfinite(y)) and np.all(dx[~mask] == 0)
    y_t, g_t = _time_order(layer, y), _time_order(layer, g)
    summed = {k: np.zeros_like(v) for k, v in batch_grads.items()}
    for i, s in enumerate(seqs):
        alone = layer(s[None], training=True)
        if return_sequences:
            np.testing.assert_allclose(y_t[i][mask[i]], _time_order(layer, alone)[0], rtol=1e-10, atol=1e-12)
            gi = _time_order(layer, g_t[i][mask[i]][None])
        else:
            np.testing.assert_allclose(y[i], alone[0], rtol=1e-10, atol=1e-12)
            gi = g[i][None]
        dxi = layer.backward(gi)
        np.testing.assert_allclose(dx[i][mask[i]], dxi[0], rtol=1e-9, atol=1e-12)
        for k, v in _grads(layer).items():
            summed[k] += v
    for k in batch_grads:
        assert rel_error(batch_grads[k], summed[k]) < 1e-10, k


@pytest.mark.parametrize("pad", ["right", "left"])
def test_stacked_sequential_padded_equals_alone(float64, pad):
    """Embedding(mask_zero) -> Bidirectional(LSTM, seq) -> GRU(seq) -> TimeDistributed(Dense): the masked loss of a
    padded batch and its gradients equal those of the sequences run alone (loss weighted by their lengths)."""
    rng = np.random.default_rng(3)
    ids = [rng.integers(1, 9, n) for n in LENGTHS]
    labels = [rng.integers(0, 4, n) for n in LENGTHS]
    x = np.zeros((len(LENGTHS), T), np.int64)
    y = np.zeros((len(LENGTHS), T), np.int64)
    for i, (a, b) in enumerate(zip(ids, labels)):
        sl = slice(0, len(a)) if pad == "right" else slice(T - len(a), T)
        x[i, sl], y[i, sl] = a, b
    model = rnnlab.Sequential([Embedding(10, 3, mask_zero=True), Bidirectional(LSTM(U, return_sequences=True)),
                               GRU(U, return_sequences=True), TimeDistributed(Dense(4, activation="softmax"))])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.build((None, T))

    def loss_and_grads(xb, yb):
        out, mask = model._forward(xb, training=True)
        lmask = model._loss_mask(out, mask)
        loss, grad = model.loss.forward_backward(yb, out, mask=lmask)
        model._backward(grad)
        return loss, {p: np.array(o.grads[w].to_dense() if hasattr(o.grads[w], "to_dense") else o.grads[w])
                      for p, o, w in model.iter_weights()}

    loss, grads = loss_and_grads(x, y)
    n_real = sum(LENGTHS)
    total = 0.0
    summed = {k: np.zeros_like(v) for k, v in grads.items()}
    for a, b in zip(ids, labels):
        li, gi = loss_and_grads(a[None], b[None])
        total += li * len(a) / n_real          # the batch loss is the mean over all real steps
        for k, v in gi.items():
            summed[k] += v * len(a) / n_real
    assert abs(loss - total) < 1e-12
    for k in grads:
        assert rel_error(grads[k], summed[k]) < 1e-10, k


def test_fully_padded_sequence_defined(float64):
    """An all-padding row gives finite outputs, loss and gradients; Bidirectional outputs zeros for it."""
    model = rnnlab.Sequential([Embedding(10, 3, mask_zero=True), Bidirectional(LSTM(U, return_sequences=True)),
                               TimeDistributed(Dense(3, activation="softmax"))])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.array([[0, 0, 0, 0], [1, 2, 3, 0]])
    y = np.array([[0, 0, 0, 0], [1, 2, 0, 0]])
    out = model.predict(x)
    assert np.all(np.isfinite(out))
    bi = model.layers[1]
    assert np.all(bi(model.layers[0](x), mask=x != 0)[0] == 0)
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"]) and np.isfinite(logs["accuracy"])
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    # a batch with nothing real at all: Keras' masked mean is 0
    assert model.evaluate(np.zeros((2, 4), np.int64), y)[0] == 0.0
    # a plain masked Bidirectional on a fully masked row, with state output
    layer = Bidirectional(GRU(U, return_state=True))
    outs = layer(np.ones((2, 3, D)), mask=np.array([[False] * 3, [True] * 3]))
    assert all(np.all(np.isfinite(o)) for o in outs) and np.all(outs[0][0] == 0)


def test_mask_shape_mismatch_errors():
    x = np.zeros((2, 4, D), np.float32)
    bad = np.ones((2, 3), bool)
    for layer in (LSTM(U), Bidirectional(GRU(U)), TimeDistributed(Dense(2))):
        with pytest.raises(ValueError, match=r"mask must have shape \(batch, timesteps\) = \(2, 4\), got \(2, 3\)"):
            layer(x, mask=bad)
    with pytest.raises(TypeError, match="mask must be boolean"):
        Bidirectional(GRU(U))(x, mask=np.array([["a"] * 4] * 2))


def test_stateful_batch_size_mismatch_errors():
    model = rnnlab.Sequential([Bidirectional(LSTM(U, stateful=True, return_sequences=True),
                                             batch_input_shape=(2, 4, D)), LSTM(U, stateful=True)])
    x = np.zeros((2, 4, D), np.float32)
    model.predict(x, batch_size=2)
    with pytest.raises(ValueError, match="stateful and was set up for batch size 2, got a batch of 3"):
        model.predict(np.zeros((3, 4, D), np.float32), batch_size=3)
    layer = GRU(U, stateful=True)
    layer(x)
    with pytest.raises(ValueError, match="batch size 2, got a batch of 1"):
        layer(x[:1])


# ------------------------------------------------------------------------------- Masking
def test_masking_semantics_and_mask_flow(float64):
    x = np.array([[[1.0, 0.0], [0.0, 0.0], [0.0, 2.0], [0.0, 0.0]]])
    m = Masking()
    np.testing.assert_array_equal(m.compute_mask(x), [[True, False, True, False]])  # all features must match
    np.testing.assert_array_equal(m(x), x)
    m5 = Masking(mask_value=5.0)
    x5 = np.array([[[5.0, 5.0], [5.0, 1.0]]])
    np.testing.assert_array_equal(m5.compute_mask(x5), [[False, True]])
    np.testing.assert_array_equal(m5(x5), [[[0.0, 0.0], [5.0, 1.0]]])   # masked steps become zeros
    # Masking -> LSTM equals LSTM given the mask directly
    seqs, xp, mask = _padded("right")
    xp[~mask] = 0.0
    model = rnnlab.Sequential([Masking(input_shape=(T, D)), LSTM(U)])
    np.testing.assert_allclose(model.predict(xp), model.layers[1](xp, mask=mask))
    assert model.count_params() == model.layers[1].count_params()


def test_masking_gradient(float64):
    """Finite differences on the real entries; masked steps pass no gradient (the mask is not differentiated,
    and perturbing an all-mask_value step would unmask it, so it is checked by value)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4, D))
    x[0, 2:] = 0.0
    x[2, 0] = 0.0
    layer = Masking()
    y = layer(x, training=True)
    g = rng.standard_normal(y.shape)
    dx = layer.backward(g)
    real = layer.compute_mask(x)
    np.testing.assert_array_equal(dx[~real], 0.0)
    np.testing.assert_array_equal(dx[real], g[real])  # identity on real steps: d(sum(y g))/dx = g there
    # finite differences on one real entry
    eps = 1e-6
    xp, xm = x.copy(), x.copy()
    xp[1, 1, 0] += eps
    xm[1, 1, 0] -= eps
    num = (np.sum(layer(xp) * g) - np.sum(layer(xm) * g)) / (2 * eps)
    assert abs(num - dx[1, 1, 0]) < 1e-8
    with pytest.raises(ValueError, match="ndim>=3"):
        layer(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="mask_value must be a number"):
        Masking("0")


# --------------------------------------------------------------------------- RepeatVector
def test_repeat_vector(float64):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4))
    layer = RepeatVector(5)
    y = layer(x)
    assert y.shape == (3, 5, 4) and layer.compute_output_shape((None, 4)) == (None, 5, 4)
    for t in range(5):
        np.testing.assert_array_equal(y[:, t], x)
    assert max(check_layer_gradients(layer, x).values()) < 1e-6
    # encoder-decoder pattern: LSTM -> RepeatVector -> LSTM(seq) -> TimeDistributed(Dense)
    model = rnnlab.Sequential([LSTM(3, input_shape=(6, 2)), RepeatVector(4), LSTM(3, return_sequences=True),
                               TimeDistributed(Dense(2))])
    assert model.output_shape == (None, 4, 2)
    with pytest.raises(ValueError, match="n must be a positive int"):
        RepeatVector(0)
    with pytest.raises(ValueError, match="expected ndim=2"):
        layer(np.zeros((2, 3, 4)))
