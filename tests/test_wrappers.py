"""Bidirectional and TimeDistributed: float64 finite-difference checks of every path, shapes, config, errors."""
import numpy as np
import pytest

import rnnlab
from rnnlab.layers import GRU, LSTM, Bidirectional, Dense, Dropout, SimpleRNN, TimeDistributed, get_layer_class
from rnnlab.testing import check_layer_gradients

B, T, D, U = 3, 4, 2, 2
MASK = np.array([[1, 1, 1, 0], [0, 1, 1, 1], [1, 0, 1, 1]], bool)  # right-, left- and middle-padded rows


def _x(seed=0):
    return np.random.default_rng(seed).standard_normal((B, T, D))


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_gradients_every_merge_mode(float64, merge_mode, return_sequences, cls):
    layer = Bidirectional(cls(U, return_sequences=return_sequences), merge_mode=merge_mode)
    errs = check_layer_gradients(layer, _x())
    # input + 3 weights per direction
    assert len(errs) == 7 and max(errs.values()) < 1e-6


@pytest.mark.parametrize("merge_mode", ["concat", "mul", None])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("cls", [LSTM, GRU, SimpleRNN])
def test_gradients_return_state_initial_state_mask(float64, merge_mode, return_sequences, cls):
    layer = Bidirectional(cls(U, return_sequences=return_sequences, return_state=True), merge_mode=merge_mode)
    n = 4 if cls is LSTM else 2
    rng = np.random.default_rng(1)
    init = [rng.standard_normal((B, U)) * 0.5 for _ in range(n)]
    errs = check_layer_gradients(layer, _x(), initial_state=init, mask=MASK)
    assert sum(k.startswith("initial_state") for k in errs) == n
    assert max(errs.values()) < 1e-6


def test_gradients_backward_layer_and_go_backwards_forward(float64):
    """A custom backward_layer (different units and activation) is used as given."""
    layer = Bidirectional(LSTM(U, return_sequences=True),
                          backward_layer=GRU(3, return_sequences=True, go_backwards=True, activation="relu"))
    y = layer(_x())
    assert y.shape == (B, T, U + 3)
    assert max(check_layer_gradients(layer, _x(), mask=MASK).values()) < 1e-6


def test_state_routing():
    """With return_state the states come out as (output, *forward states, *backward states) and the
    initial_state halves go to the matching direction."""
    rnnlab.set_floatx("float64")
    layer = Bidirectional(LSTM(U, return_state=True, return_sequences=True))
    x = _x()
    rng = np.random.default_rng(2)
    init = [rng.standard_normal((B, U)) for _ in range(4)]
    out, hf, cf, hb, cb = layer(x, initial_state=init)
    fo, fh, fc = layer.forward_layer(x, initial_state=init[:2])
    bo, bh, bc = layer.backward_layer(x, initial_state=init[2:])
    np.testing.assert_allclose(out, np.concatenate([fo, bo[:, ::-1]], axis=-1))
    for a, b in ((hf, fh), (cf, fc), (hb, bh), (cb, bc)):
        np.testing.assert_allclose(a, b)
    assert layer.backward_layer.go_backwards and not layer.forward_layer.go_backwards


def test_names_weights_counts_and_config():
    layer = Bidirectional(LSTM(64, return_sequences=True, name="enc"), input_shape=(5, 100))
    model = rnnlab.Sequential([layer, TimeDistributed(Dense(7))])
    assert layer.forward_layer.name == "forward_enc" and layer.backward_layer.name == "backward_enc"
    paths = [p for p, _, _ in model.iter_weights()]
    assert paths[:3] == [f"{layer.name}/forward_enc/kernel", f"{layer.name}/forward_enc/recurrent_kernel",
                         f"{layer.name}/forward_enc/bias"]
    assert paths[3] == f"{layer.name}/backward_enc/kernel"
    assert paths[-2:] == [f"{model.layers[1].name}/{model.layers[1].layer.name}/kernel",
                          f"{model.layers[1].name}/{model.layers[1].layer.name}/bias"]
    assert layer.count_params() == 2 * (100 * 256 + 64 * 256 + 256)
    assert model.output_shape == (None, 5, 7)
    assert model.layers[1].count_params() == 128 * 7 + 7
    lines = []
    model.summary(print_fn=lines.append)
    assert any("(None, 5, 128)" in ln and "84,480" in ln for ln in lines)
    # the material's example: Bidirectional(SimpleRNN(64, return_sequences=True)) on (1, 5, 100) -> (1, 5, 128)
    assert Bidirectional(SimpleRNN(64, return_sequences=True))(np.zeros((1, 5, 100))).shape == (1, 5, 128)
    # config round trip keeps weights' shapes and options
    cfg = layer.get_config()
    again = get_layer_class("Bidirectional").from_config(cfg)
    assert again.merge_mode == "concat" and again.forward_layer.units == 64 and again.backward_layer.go_backwards
    again(np.zeros((1, 5, 100), np.float32))
    again.set_weights(layer.get_weights())
    x = np.random.default_rng(0).standard_normal((2, 5, 100)).astype(np.float32)
    np.testing.assert_allclose(again(x), layer(x), rtol=1e-6)


def test_weights_argument_and_set_weights_order():
    rnnlab.set_floatx("float64")
    ref = Bidirectional(GRU(U))
    ref(_x())
    w = [np.random.default_rng(i).standard_normal(a.shape) for i, a in enumerate(ref.get_weights())]
    layer = Bidirectional(GRU(U), weights=w)
    layer(_x())
    for a, b in zip(layer.get_weights(), w):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(layer.forward_layer.params["kernel"], w[0])
    np.testing.assert_array_equal(layer.backward_layer.params["kernel"], w[3])


def test_save_load_model_round_trip(tmp_path):
    model = rnnlab.Sequential([rnnlab.layers.Embedding(20, 4, mask_zero=True, input_length=6),
                               Bidirectional(GRU(3, return_sequences=True), merge_mode="sum"),
                               TimeDistributed(Dense(5, activation="softmax"))])
    x = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 9]])
    y = model.predict(x)
    model.save(tmp_path / "m.npz")
    back = rnnlab.load_model(tmp_path / "m.npz")
    np.testing.assert_allclose(back.predict(x), y, rtol=1e-6)


def test_stateful_carries_and_resets():
    rnnlab.set_floatx("float64")
    layer = Bidirectional(LSTM(U, stateful=True, return_sequences=True), batch_input_shape=(B, T, D))
    x = _x()
    y1 = layer(x)
    y2 = layer(x)
    assert not np.allclose(y1, y2)  # the second call starts from the carried states
    assert len(layer.states) == 4
    layer.reset_states()
    np.testing.assert_allclose(layer(x), y1)
    with pytest.raises(ValueError, match="stateful.*batch size 3, got a batch of 2"):
        layer(x[:2])
    with pytest.raises(AttributeError, match="not stateful"):
        Bidirectional(LSTM(U)).reset_states()


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="merge_mode must be one of"):
        Bidirectional(LSTM(U), merge_mode="max")
    with pytest.raises(TypeError, match="recurrent layer"):
        Bidirectional(Dense(3))
    with pytest.raises(ValueError, match="different go_backwards"):
        Bidirectional(LSTM(U), backward_layer=LSTM(U))
    with pytest.raises(ValueError, match="same return_sequences"):
        Bidirectional(LSTM(U), backward_layer=LSTM(U, go_backwards=True, return_sequences=True))
    layer = Bidirectional(LSTM(U))
    x = _x().astype(np.float32)
    with pytest.raises(ValueError, match=r"mask must have shape \(batch, timesteps\) = \(3, 4\), got \(3, 5\)"):
        layer(x, mask=np.ones((B, T + 1), bool))
    with pytest.raises(ValueError, match=r"initial_state expects 4 arrays"):
        layer(x, initial_state=[np.zeros((B, U))] * 2)
    with pytest.raises(ValueError, match="expected ndim=3"):
        layer(np.zeros((B, D), np.float32))
    with pytest.raises(TypeError, match="floating point"):
        layer(np.full((B, T, D), 5, np.int64))      # token ids (0/1 integers are one-hot data: cast, issue 18)
    layer(x, training=True)
    with pytest.raises(ValueError, match=r"gradient for the output must have shape \(3, 4\), got \(3, 2\)"):
        layer.backward(np.zeros((B, U)))
    with pytest.raises(TypeError, match="TimeDistributed: layer must be"):
        TimeDistributed("dense")
    td = TimeDistributed(Dense(3))
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        td(np.zeros((B, D), np.float32))
    with pytest.raises(ValueError, match=r"mask must have shape \(batch, timesteps\) = \(3, 4\)"):
        td(x, mask=np.ones((B, 2), bool))


def test_time_distributed_gradients_and_values(float64):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((B, T, D))
    td = TimeDistributed(Dense(3, activation="tanh"))
    y = td(x)
    dense = td.layer
    for t in range(T):
        np.testing.assert_allclose(y[:, t], np.tanh(x[:, t] @ dense.params["kernel"] + dense.params["bias"]))
    assert max(check_layer_gradients(td, x, mask=MASK).values()) < 1e-6
    assert td.compute_mask(x, MASK) is MASK
    # a wrapped Dropout: the gradient uses the same per-element masks as the forward
    assert max(check_layer_gradients(TimeDistributed(Dropout(0.5)), x).values()) < 1e-6
    # a wrapped recurrent layer over (B, T, T2, F)
    x4 = rng.standard_normal((2, 3, 4, D))
    td_rnn = TimeDistributed(GRU(2))
    assert td_rnn(x4).shape == (2, 3, 2)
    assert td_rnn.compute_output_shape((None, 3, 4, D)) == (None, 3, 2)
    assert max(check_layer_gradients(td_rnn, x4).values()) < 1e-6


def test_gradients_with_dropout_in_training(float64):
    """Both directions draw their own dropout / recurrent-dropout masks once per call; the backward uses them."""
    layer = Bidirectional(LSTM(U, return_sequences=True, dropout=0.3, recurrent_dropout=0.3), merge_mode="sum")
    assert max(check_layer_gradients(layer, _x(), mask=MASK).values()) < 1e-6
    x = _x()
    rnnlab.set_random_seed(0)
    a = layer(x, training=True)
    assert not np.allclose(a, layer(x, training=False))
    np.testing.assert_array_equal(layer(x), layer(x))  # inference: no dropout


def test_inner_input_shape_builds_the_model():
    """Keras 2 style: the wrapped layer's input_shape gives the model its input shape."""
    model = rnnlab.Sequential([Bidirectional(GRU(4, input_shape=(7, 3))), Dense(1)])
    assert model.built and model.output_shape == (None, 1)
    assert model.layers[0].output_shape == (None, 8)
    assert model.count_params() == 2 * (3 * 12 + 4 * 12 + 2 * 12) + 9


def test_fit_learns_what_only_the_backward_direction_sees():
    """Tag each token with 'the NEXT token is > 5' on padded variable-length batches: a Bidirectional LSTM
    learns it (masked accuracy 1.0 here), a forward-only LSTM cannot see the future (about 0.65)."""
    rng = np.random.default_rng(0)
    N, Tn = 600, 8
    x = np.zeros((N, Tn), np.int64)
    y = np.zeros((N, Tn), np.int64)
    for i, n in enumerate(rng.integers(3, Tn + 1, N)):
        ids = rng.integers(1, 10, n)
        x[i, :n] = ids
        y[i, :n] = np.append(ids[1:], 0) > 5

    def run(layer):
        rnnlab.set_random_seed(0)
        m = rnnlab.Sequential([rnnlab.layers.Embedding(10, 8, mask_zero=True), layer,
                               TimeDistributed(Dense(2, activation="softmax"))])
        m.compile(optimizer=rnnlab.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        m.fit(x[:500], y[:500], epochs=12, batch_size=32, verbose=0)
        return m.evaluate(x[500:], y[500:])[1]

    bi = run(Bidirectional(LSTM(8, return_sequences=True)))
    uni = run(LSTM(8, return_sequences=True))
    assert bi > 0.97 and uni < 0.8, (bi, uni)
