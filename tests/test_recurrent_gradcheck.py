"""Finite-difference gradient checks (float64) of SimpleRNN, LSTM and GRU for every option:
inputs, initial states (dh0/dc0) and every weight, through the full BPTT."""
import numpy as np
import pytest

from rnnlab.layers import GRU, LSTM, SimpleRNN
from rnnlab.testing import check_layer_gradients

B, T, D, U = 3, 4, 3, 3
VARIANTS = {
    "SimpleRNN": (SimpleRNN, {}),
    "LSTM": (LSTM, {}),
    "LSTM_no_forget_bias": (LSTM, {"unit_forget_bias": False}),
    "GRU": (GRU, {}),
    "GRU_reset_before": (GRU, {"reset_after": False}),
}
OPTIONS = {
    "default": {},
    "sequences_and_state": {"return_sequences": True, "return_state": True},
    "go_backwards": {"go_backwards": True, "return_sequences": True},
    "go_backwards_last": {"go_backwards": True, "return_state": True},
    "no_bias": {"use_bias": False, "return_sequences": True},
}


def _x(seed=0):
    return np.random.default_rng(seed).standard_normal((B, T, D))


def _init(layer, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((B, U)) * 0.5 for _ in layer._state_names]


def _mask(kind):
    m = np.ones((B, T), bool)
    if kind == "right":
        m[0, 2:] = False
        m[1, 1:] = False
    elif kind == "left":
        m[0, :2] = False
        m[1, :3] = False
    m[2, :] = kind == "none"  # a fully masked row when masking
    return m


def _randomize_bias(layer):
    """Non-zero biases so that the bias gradients are exercised at a generic point."""
    if "bias" in layer.params:
        layer.params["bias"][...] = np.random.default_rng(9).standard_normal(layer.params["bias"].shape) * 0.3


def _check(layer, x, **kw):
    layer(x)
    _randomize_bias(layer)
    errors = check_layer_gradients(layer, x, **kw)
    # everything was checked: inputs, states given, all weights
    assert "input[0]" in errors
    assert sum(1 for k in errors if k.endswith(("kernel", "bias"))) == len(layer.params)
    assert max(errors.values()) < 1e-6
    return errors


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("option", list(OPTIONS))
def test_gradients(float64, variant, option):
    cls, kw = VARIANTS[variant]
    _check(cls(U, **kw, **OPTIONS[option]), _x())


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_gradients_initial_state(float64, variant):
    cls, kw = VARIANTS[variant]
    layer = cls(U, return_sequences=True, return_state=True, **kw)
    errors = _check(layer, _x(), initial_state=_init(layer))
    n = len(layer._state_names)
    assert all(f"initial_state[{j}]" in errors for j in range(n))  # dh0 (and dc0) checked


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("pad", ["right", "left"])
@pytest.mark.parametrize("opts", [
    {"return_sequences": True, "return_state": True},
    {"return_state": True},
    {"return_sequences": True, "zero_output_for_mask": True},
    {"return_sequences": True, "go_backwards": True, "return_state": True},
])
def test_gradients_masked(float64, variant, pad, opts):
    cls, kw = VARIANTS[variant]
    layer = cls(U, **kw, **opts)
    _check(layer, _x(2), initial_state=_init(layer), mask=_mask(pad))


@pytest.mark.parametrize("cls,acts", [
    (SimpleRNN, {"activation": "softplus"}),
    (SimpleRNN, {"activation": "relu"}),
    (LSTM, {"activation": "softplus", "recurrent_activation": "hard_sigmoid"}),
    (LSTM, {"activation": "elu", "recurrent_activation": "tanh"}),
    (GRU, {"activation": "softplus", "recurrent_activation": "hard_sigmoid"}),
    (GRU, {"activation": "linear", "recurrent_activation": "tanh", "reset_after": False}),
])
def test_gradients_non_default_activations(float64, cls, acts):
    layer = cls(U, return_sequences=True, **acts)
    _check(layer, _x(3), initial_state=_init(layer))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_gradients_with_dropout(float64, variant):
    """Dropout masks are drawn from rnnlab's generator, reseeded by the checker before each pass."""
    cls, kw = VARIANTS[variant]
    layer = cls(U, dropout=0.3, recurrent_dropout=0.4, return_sequences=True, **kw)
    _check(layer, _x(4), initial_state=_init(layer), mask=_mask("right"))


def test_unit_forget_bias_does_not_change_gradients(float64):
    """unit_forget_bias only sets the initial bias: with equal weights the gradients are equal."""
    x = _x(5)
    g = np.random.default_rng(6).standard_normal((B, U))
    a, b = LSTM(U, unit_forget_bias=True), LSTM(U, unit_forget_bias=False)
    a(x)
    b(x)
    assert not np.array_equal(a.params["bias"], b.params["bias"])
    b.set_weights(a.get_weights())
    a(x, training=True)
    b(x, training=True)
    np.testing.assert_array_equal(a.backward(g), b.backward(g))
    for name in a.params:
        np.testing.assert_array_equal(a.grads[name], b.grads[name])
