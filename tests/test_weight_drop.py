"""WeightDrop: DropConnect on a recurrent layer's W_h, one mask per call (AWD-LSTM's weight drop)."""
import numpy as np
import pytest

import rnnlab
from rnnlab import layers as L
from rnnlab.testing import numerical_gradient


@pytest.fixture
def f64():
    rnnlab.set_floatx("float64")
    yield
    rnnlab.set_floatx("float32")


def _pair(cell, seed=0, **kw):
    """A WeightDrop-wrapped layer and a plain twin with the same weights."""
    rnnlab.set_random_seed(seed)
    inner = getattr(L, cell)(5, return_sequences=True, **kw)
    wd = L.WeightDrop(inner, rate=0.4, seed=7)
    rnnlab.set_random_seed(seed)
    twin = getattr(L, cell)(5, return_sequences=True, **kw)
    return wd, twin


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "SimpleRNN"])
def test_training_call_is_the_layer_with_masked_weights(cell, f64):
    """A training call equals the plain layer run with W_h * M (the same M at every step); dW_h is the plain
    layer's gradient times M, the other gradients and dx are the plain layer's; W_h keeps its own values."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 6, 4))
    g = rng.standard_normal((3, 6, 5))
    wd, twin = _pair(cell)
    wd(x[:1])
    twin(x[:1])
    twin.set_weights(wd.layer.get_weights())
    own = wd.layer.params["recurrent_kernel"].copy()
    y = wd.forward(x, training=True)
    dx = wd.backward(g)
    M = wd._mask
    keep = 1 - wd.rate
    assert set(np.unique(M)) <= {0.0, 1 / keep} and 0 < np.count_nonzero(M) < M.size
    np.testing.assert_array_equal(wd.layer.params["recurrent_kernel"], own)
    twin.params["recurrent_kernel"][...] = own * M
    np.testing.assert_array_equal(y, twin.forward(x, training=True))
    np.testing.assert_array_equal(dx, twin.backward(g))
    for k in twin.grads:
        want = twin.grads[k] * M if k == "recurrent_kernel" else twin.grads[k]
        np.testing.assert_array_equal(wd.layer.grads[k], want, err_msg=k)


def test_finite_differences_with_the_mask_fixed(f64):
    """dL/dW_h (and dL/dW_x) of L = sum(g * y) with the call's mask held fixed, against central differences."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 3))
    g = rng.standard_normal((2, 5, 5))
    wd, _ = _pair("LSTM", seed=2)
    wd(x[:1])
    wd.forward(x, training=True)
    wd.backward(g)
    M = wd._mask.copy()

    def loss():
        wd._mask = M
        return float((wd._masked(lambda: wd.layer.forward(x, training=True)) * g).sum())

    for name in ("recurrent_kernel", "kernel"):
        num = numerical_gradient(loss, wd.layer.params[name])
        np.testing.assert_allclose(wd.layer.grads[name], num, rtol=1e-6, atol=1e-8, err_msg=name)


def test_inference_and_rate_zero_are_the_plain_layer(f64):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 3))
    wd, twin = _pair("GRU")
    wd(x[:1])
    twin(x[:1])
    twin.set_weights(wd.layer.get_weights())
    np.testing.assert_array_equal(wd(x), twin(x))
    wd0 = L.WeightDrop(L.GRU(5, return_sequences=True), rate=0.0)
    twin0 = L.GRU(5, return_sequences=True)
    wd0(x[:1])
    twin0(x[:1])
    twin0.set_weights(wd0.layer.get_weights())
    np.testing.assert_array_equal(wd0.forward(x, training=True), twin0.forward(x, training=True))


def test_new_mask_per_call_and_seeded():
    x = np.random.default_rng(3).standard_normal((2, 4, 3)).astype(np.float32)
    a = L.WeightDrop(L.LSTM(4), rate=0.5, seed=1)
    b = L.WeightDrop(L.LSTM(4), rate=0.5, seed=1)
    a(x)
    b(x)
    a.forward(x, training=True)
    b.forward(x, training=True)
    m1 = a._mask.copy()
    np.testing.assert_array_equal(m1, b._mask)
    a.forward(x, training=True)
    assert not np.array_equal(m1, a._mask)


def test_in_a_stateful_language_model_and_saved(tmp_path):
    """Inside a stateful Sequential LM: fit runs, reset_states reaches the wrapped layer, the model saves and
    loads with the wrapper (its rate, weight and inner layer) and predicts the same."""
    rnnlab.set_random_seed(0)
    m = rnnlab.Sequential([L.Input((7,), batch_size=4, dtype="int32"), L.Embedding(20, 8),
                           L.WeightDrop(L.LSTM(6, return_sequences=True, stateful=True), rate=0.3),
                           L.Dense(20, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(4)
    x = rng.integers(0, 20, (8, 7))
    y = rng.integers(0, 20, (8, 7))
    m.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    wd = m.layers[1]
    assert wd.stateful and wd.states is not None and np.abs(wd.states[0]).sum() > 0
    m.reset_states()
    assert np.abs(wd.states[0]).sum() == 0
    p = m.predict(x[:4], batch_size=4, verbose=0)
    path = tmp_path / "lm.npz"
    m.save(path)
    m2 = rnnlab.saving.load_model(path)
    w2 = m2.layers[1]
    assert isinstance(w2, L.WeightDrop) and w2.rate == 0.3 and w2.weight == "recurrent_kernel"
    m.reset_states()
    m2.reset_states()
    np.testing.assert_array_equal(m2.predict(x[:4], batch_size=4, verbose=0), m.predict(x[:4], batch_size=4, verbose=0))
    assert p.shape == (4, 7, 20)


def test_bad_arguments():
    with pytest.raises(TypeError, match="WeightDrop: layer"):
        L.WeightDrop("lstm")
    for rate in (1.0, -0.1, True, "0.5"):
        with pytest.raises(ValueError, match="rate"):
            L.WeightDrop(L.LSTM(3), rate=rate)
    wd = L.WeightDrop(L.Dense(3), weight="recurrent_kernel")
    with pytest.raises(ValueError, match="has no weight 'recurrent_kernel'.*kernel, bias"):
        wd(np.zeros((2, 4), np.float32))
