"""Recurrent layers' public API: shapes, counts, initializers, config round trip, masking semantics,
statefulness, dropout, dtypes and the error messages for bad input."""
import json

import numpy as np
import pytest

import rnnlab
from rnnlab import backend
from rnnlab.layers import GRU, LSTM, SimpleRNN, get_layer_class

ALL = [SimpleRNN, LSTM, GRU]


def _built(layer):
    layer._maybe_build(layer.batch_input_shape)
    return layer


# ------------------------------------------------------------------ material counts and shapes
def test_simple_rnn_counts_from_tutorials():
    layer = _built(SimpleRNN(3, input_shape=(2, 10)))
    assert layer.count_params() == 10 * 3 + 3 * 3 + 3 == 42
    assert layer.output_shape == (None, 3)
    seq = _built(SimpleRNN(3, input_shape=(10, 10), return_sequences=True))
    assert seq.output_shape == (None, 10, 3)
    y = seq(np.zeros((2, 10, 10), np.float32))
    assert y.shape == (2, 10, 3)


def test_keras2_input_dim_and_length():
    layer = SimpleRNN(3, input_dim=10, input_length=2)
    assert layer.batch_input_shape == (None, 2, 10)
    assert _built(layer).count_params() == 42


def test_lstm_kernel_shapes():
    layer = LSTM(64)
    layer(np.zeros((1, 5, 100), np.float32))
    assert layer.params["kernel"].shape == (100, 256)
    assert layer.params["recurrent_kernel"].shape == (64, 256)
    assert layer.params["bias"].shape == (256,)
    assert list(layer.params) == ["kernel", "recurrent_kernel", "bias"]


def test_gru_bias_shapes():
    a, b = GRU(4), GRU(4, reset_after=False)
    for g in (a, b):
        g(np.zeros((1, 2, 5), np.float32))
    assert a.params["bias"].shape == (2, 12)
    assert b.params["bias"].shape == (12,)
    assert a.count_params() == 5 * 12 + 4 * 12 + 24


@pytest.mark.parametrize("cls,k", [(SimpleRNN, 1), (LSTM, 4), (GRU, 3)])
def test_keras_initializers(cls, k):
    D, U = 7, 5
    layer = cls(U)
    layer(np.zeros((1, 2, D), np.float32))
    W, R = layer.params["kernel"], layer.params["recurrent_kernel"]
    limit = np.sqrt(6.0 / (D + k * U))                      # glorot_uniform on (D, kU)
    assert np.abs(W).max() <= limit and np.abs(W).max() > 0.5 * limit
    np.testing.assert_allclose(R @ R.T, np.eye(U), atol=1e-5)  # orthogonal rows of (U, kU)
    bias = layer.params["bias"]
    expected = np.zeros_like(bias)
    if cls is LSTM:
        expected[U:2 * U] = 1.0                                # unit_forget_bias
    np.testing.assert_array_equal(bias, expected)


@pytest.mark.parametrize("cls", ALL)
def test_output_shapes_with_return_state(cls):
    n = 2 if cls is LSTM else 1
    layer = cls(4, return_sequences=True, return_state=True)
    assert layer.compute_output_shape((None, 6, 3)) == [(None, 6, 4)] + [(None, 4)] * n
    outs = layer(np.ones((2, 6, 3), np.float32))
    assert [o.shape for o in outs] == [(2, 6, 4)] + [(2, 4)] * n
    assert all(o.dtype == np.float32 for o in outs)   # float32 by default


# ------------------------------------------------------------------------ config round trip
@pytest.mark.parametrize("cls,kw", [
    (SimpleRNN, {"activation": "relu", "go_backwards": True}),
    (LSTM, {"unit_forget_bias": False, "recurrent_activation": "hard_sigmoid", "return_state": True,
            "dropout": 0.2, "recurrent_dropout": 0.1, "kernel_initializer": "he_uniform"}),
    (GRU, {"reset_after": False, "return_sequences": True, "stateful": True, "use_bias": False}),
])
def test_config_round_trip(cls, kw):
    layer = cls(5, name="rec", input_shape=(4, 3), **kw)
    cfg = layer.get_config()
    cfg2 = json.loads(json.dumps(cfg))
    clone = get_layer_class(cls.__name__).from_config(cfg2)
    assert clone.get_config() == cfg
    for key, value in kw.items():
        assert cfg[key] == value or key.endswith("initializer")
    x = np.random.default_rng(0).standard_normal((2, 4, 3)).astype(np.float32)
    layer(x)
    clone(x)
    clone.set_weights(layer.get_weights())
    if layer.stateful:
        layer.reset_states()
        clone.reset_states()
    a, b = layer(x), clone(x)
    for u, v in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
        np.testing.assert_array_equal(u, v)


# -------------------------------------------------------------------------------- masking
@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("pad", ["right", "left"])
def test_padded_batch_equals_each_sequence_alone(float64, cls, pad):
    """Sequences of different lengths in one masked batch give the results of running each alone."""
    rng = np.random.default_rng(1)
    lengths = [5, 2, 4, 1]
    T, D = max(lengths), 3
    layer = cls(4, return_sequences=True, return_state=True)
    x = np.zeros((len(lengths), T, D))
    mask = np.zeros((len(lengths), T), bool)
    seqs = [rng.standard_normal((n, D)) for n in lengths]
    for i, s in enumerate(seqs):
        sl = slice(0, len(s)) if pad == "right" else slice(T - len(s), T)
        x[i, sl] = s
        mask[i, sl] = True
    x[~mask] = 1e3  # garbage in the padding must not leak
    outs = layer(x, mask=mask)
    for i, s in enumerate(seqs):
        alone = layer(s[None])
        for a, b in zip(outs[1:], alone[1:]):        # final states
            np.testing.assert_allclose(a[i], b[0], rtol=1e-12, atol=1e-12)
        seq = outs[0][i][mask[i]]
        np.testing.assert_allclose(seq, alone[0][0], rtol=1e-12, atol=1e-12)
        if pad == "right":   # the output repeats the last real output over the padding
            np.testing.assert_allclose(outs[0][i][len(s):], np.broadcast_to(alone[0][0, -1], (T - len(s), 4)))
        else:                # before the first real step the output is zero
            assert np.all(outs[0][i][:T - len(s)] == 0)


@pytest.mark.parametrize("cls", ALL)
def test_fully_masked_sequence_is_defined(cls):
    layer = cls(3, return_sequences=True, return_state=True)
    x = np.random.default_rng(2).standard_normal((2, 4, 2)).astype(np.float32)
    mask = np.array([[False] * 4, [True] * 4])
    init = [np.full((2, 3), 0.5, np.float32) for _ in layer._state_names]
    outs = layer(x, mask=mask, initial_state=init)
    assert all(np.all(np.isfinite(o)) for o in outs)
    assert np.all(outs[0][0] == 0)
    for s, s0 in zip(outs[1:], init):
        np.testing.assert_array_equal(s[0], s0[0])   # state carried unchanged
    grads = layer.backward([np.ones_like(o) for o in outs])
    assert all(np.all(np.isfinite(g)) for g in grads)
    assert np.all(grads[0][0] == 0)                  # nothing flows into a fully masked input


def test_zero_output_for_mask_zeros_masked_steps():
    layer = LSTM(3, return_sequences=True, zero_output_for_mask=True)
    x = np.ones((1, 4, 2), np.float32)
    y = layer(x, mask=np.array([[True, False, True, False]]))
    assert np.all(y[0, [1, 3]] == 0) and np.all(y[0, [0, 2]] != 0)


def test_compute_mask_only_with_return_sequences():
    m = np.ones((2, 3), bool)
    assert LSTM(2, return_sequences=True).compute_mask(None, m) is m
    assert LSTM(2).compute_mask(None, m) is None
    assert GRU(2, return_state=True, return_sequences=True).compute_mask(None, m)[0] is m


def test_go_backwards_equals_reversed_input(float64):
    x = np.random.default_rng(3).standard_normal((2, 5, 3))
    a = GRU(4, return_sequences=True, go_backwards=True)
    b = GRU(4, return_sequences=True)
    a(x)
    b(x)
    b.set_weights(a.get_weights())
    np.testing.assert_allclose(a(x), b(x[:, ::-1]), rtol=1e-13)


# ------------------------------------------------------------------------------- stateful
@pytest.mark.parametrize("cls", ALL)
def test_stateful_continues_across_calls(float64, cls):
    x = np.random.default_rng(4).standard_normal((3, 6, 2))
    full = cls(4, return_sequences=True)
    full(x)
    st = cls(4, return_sequences=True, stateful=True)
    st(x[:, :1])
    st.set_weights(full.get_weights())
    st.reset_states()
    y = np.concatenate([st(x[:, :4]), st(x[:, 4:])], axis=1)
    np.testing.assert_allclose(y, full(x), rtol=1e-12)
    st.reset_states()
    np.testing.assert_allclose(st(x[:, :4]), full(x[:, :4]), rtol=1e-12)
    with pytest.raises(ValueError, match="stateful.*batch size 3.*got a batch of 2"):
        st(x[:2])


def test_stateful_fixed_batch_from_batch_input_shape():
    layer = LSTM(2, stateful=True, batch_input_shape=(4, 3, 2))
    with pytest.raises(ValueError, match="batch size 4"):
        layer(np.zeros((5, 3, 2), np.float32))
    with pytest.raises(AttributeError, match="not stateful"):
        LSTM(2).reset_states()


# -------------------------------------------------------------------------------- dropout
def test_dropout_masks_fixed_over_time_and_training_only(float64):
    """With identity kernel, zero recurrence and linear activation, output_t = x_t * input_mask:
    the same features are dropped at every step, kept ones are scaled by 1/(1-rate)."""
    D = 50
    layer = SimpleRNN(D, activation="linear", dropout=0.5)
    x = np.ones((2, 4, D))
    layer(x)
    layer.set_weights([np.eye(D), np.zeros((D, D)), np.zeros(D)])
    np.testing.assert_array_equal(layer(x), x[:, -1])   # inference: no dropout
    layer.return_sequences = True
    backend.set_random_seed(0)
    y = layer(x, training=True)
    assert set(np.unique(y)) == {0.0, 2.0}
    assert np.all(y == y[:, :1])                         # one mask per call, reused at every step
    assert 0.2 < np.mean(y == 0) < 0.8
    backend.set_random_seed(0)
    np.testing.assert_array_equal(layer(x, training=True), y)   # reproducible with the seed


def test_recurrent_dropout_changes_training_output_only():
    x = np.random.default_rng(5).standard_normal((4, 5, 3)).astype(np.float32)
    layer = LSTM(8, recurrent_dropout=0.5)
    y0 = layer(x)
    np.testing.assert_array_equal(layer(x, training=False), y0)
    assert not np.allclose(layer(x, training=True), y0)


def _identity_rnn(U, **kw):
    """Linear SimpleRNN with identity kernel and recurrent kernel, zero bias: h_t = x_t + (h_{t-1} * m) I."""
    layer = SimpleRNN(U, activation="linear", return_sequences=True, **kw)
    layer(np.ones((1, 2, U)))
    layer.set_weights([np.eye(U), np.eye(U), np.zeros(U)])
    return layer


def _recurrent_masks_per_step(y):
    """With x = 1 everywhere, y[:, t] = 1 + m_t * y[:, t-1]: the recurrent mask used at each step t >= 1."""
    return (y[:, 1:] - 1.0) / y[:, :-1]          # y >= 1, so no division by zero


def test_recurrent_dropout_mask_fixed_over_time_and_redrawn_per_call(float64):
    """The recurrent mask is read back from the outputs at every step: one mask per call, applied to
    h_{t-1} in the recurrent product only (the carried state and the output stay unmasked), a new one
    on each training call, none at inference."""
    B, T, U, rate = 3, 6, 40, 0.5
    layer = _identity_rnn(U, recurrent_dropout=rate)
    x = np.ones((B, T, U))
    np.testing.assert_array_equal(_recurrent_masks_per_step(layer(x)), 1.0)   # inference: no dropout
    masks = []
    for _ in range(2):
        y = layer(x, training=True)
        m = _recurrent_masks_per_step(y)
        assert set(np.unique(m)) == {0.0, 1.0 / (1.0 - rate)}
        np.testing.assert_array_equal(m, np.broadcast_to(m[:, :1], m.shape))   # same mask at every step
        np.testing.assert_array_equal(m[:, 0], layer._ws.rec_mask)             # ... and it is the drawn one
        assert 0.2 < np.mean(m == 0) < 0.8
        masks.append(m[:, 0].copy())
    assert not np.array_equal(masks[0], masks[1])                              # redrawn on the next call
    assert not np.array_equal(masks[0][0], masks[0][1])                        # one mask row per sample
    backend.set_random_seed(7)
    a = layer(x, training=True)
    backend.set_random_seed(7)
    np.testing.assert_array_equal(layer(x, training=True), a)                  # reproducible with the seed


def test_input_dropout_mask_redrawn_per_call(float64):
    """Complements test_dropout_masks_fixed_over_time_and_training_only: a new input mask on each
    training call (the same for every step of one call), also with go_backwards."""
    B, T, D = 3, 5, 40
    for go_backwards in (False, True):
        layer = SimpleRNN(D, activation="linear", dropout=0.5, return_sequences=True, go_backwards=go_backwards)
        layer(np.ones((1, 2, D)))
        layer.set_weights([np.eye(D), np.zeros((D, D)), np.zeros(D)])
        x = np.ones((B, T, D))
        y1, y2 = layer(x, training=True), layer(x, training=True)
        for y in (y1, y2):
            assert set(np.unique(y)) == {0.0, 2.0}
            assert np.all(y == y[:, :1])
        assert not np.array_equal(y1[:, 0], y2[:, 0])
        assert not np.array_equal(y1[0, 0], y1[1, 0])


# ------------------------------------------------------------------------ dtypes and errors
def test_float64_policy_and_input_casting():
    rnnlab.set_floatx("float64")
    layer = GRU(3)
    y = layer(np.ones((1, 2, 4), np.float32))
    assert y.dtype == np.float64 and layer.params["kernel"].dtype == np.float64


@pytest.mark.parametrize("cls", ALL)
def test_input_errors(cls):
    layer = cls(3)
    layer(np.zeros((2, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"expected ndim=3.*found ndim=2"):
        layer(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"expected last dimension 5.*\(2, 4, 6\)"):
        layer(np.zeros((2, 4, 6), np.float32))
    with pytest.raises(TypeError, match=r"floating point.*int64.*integer ids need an Embedding first"):
        layer(np.full((2, 4, 5), 7, np.int64))     # (0/1 integers are one-hot data: cast, as Keras does)
    with pytest.raises(ValueError, match=r"mask must have shape \(batch, timesteps\) = \(2, 4\), got \(2, 3\)"):
        layer(np.zeros((2, 4, 5), np.float32), mask=np.ones((2, 3), bool))
    with pytest.raises(ValueError, match="at least one timestep"):
        layer(np.zeros((2, 0, 5), np.float32))


def test_initial_state_errors():
    layer = LSTM(3, name="enc")
    x = np.zeros((2, 4, 5), np.float32)
    layer(x)
    with pytest.raises(ValueError, match=r"'enc'.*expects 2 state\(s\) \[h, c\], got 1"):
        layer(x, initial_state=[np.zeros((2, 3))])
    with pytest.raises(ValueError, match=r"'enc'.*initial_state\[1\] \(c\) must have shape \(batch, units\) = \(2, 3\), got \(2, 4\)"):
        layer(x, initial_state=[np.zeros((2, 3)), np.zeros((2, 4))])
    with pytest.raises(TypeError, match=r"initial_state must be a list of 2 arrays"):
        layer(x, initial_state=np.zeros((2, 3)))
    gru = GRU(3)
    gru(x)
    assert gru(x, initial_state=np.ones((2, 3), np.float32)).shape == (2, 3)   # one array is fine for 1 state


def test_backward_gradient_errors():
    layer = LSTM(3, return_state=True)
    x = np.zeros((2, 4, 5), np.float32)
    layer(x)
    with pytest.raises(ValueError, match="expects a list of 3 gradients"):
        layer.backward(np.zeros((2, 3)))
    layer(x)
    with pytest.raises(ValueError, match=r"gradient for c must have shape \(2, 3\), got \(2, 4\)"):
        layer.backward([None, None, np.zeros((2, 4))])
    layer(x)
    dx = layer.backward([np.ones((2, 3)), None, None])
    assert dx.shape == x.shape
    with pytest.raises(RuntimeError, match="without a preceding forward"):
        layer.backward([np.ones((2, 3)), None, None])


def test_constructor_errors():
    with pytest.raises(ValueError, match="units must be a positive int, got 0"):
        LSTM(0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.5"):
        GRU(2, dropout=1.5)
    with pytest.raises(ValueError, match="Unknown activation"):
        SimpleRNN(2, activation="nope")
    with pytest.raises(TypeError, match="unexpected keyword"):
        LSTM(2, W_regularizer="l2")  # Keras 1's name; kernel_regularizer is supported (tests/test_regularizers.py)


def test_torch_tensor_input():
    torch = pytest.importorskip("torch")
    layer = SimpleRNN(2)
    y = layer(torch.ones(1, 3, 4))
    assert y.shape == (1, 2) and isinstance(y, np.ndarray)
