"""Dense (gradient checks for every activation, torch nn.Linear parity) and Dropout."""
import json

import numpy as np
import pytest
import torch

from rnnlab import activations, backend
from rnnlab.layers import Activation, Dense, Dropout, get_layer_class
from rnnlab.testing import check_layer_gradients, rel_error


@pytest.mark.parametrize("act", activations.names())
@pytest.mark.parametrize("ndim", [2, 3])
def test_dense_gradient_check_every_activation(act, ndim, float64):
    gen = np.random.default_rng(0)
    layer = Dense(4, activation=act, bias_initializer="random_normal")
    shape = (3, 5) if ndim == 2 else (2, 3, 5)
    x = gen.standard_normal(shape)
    if act in ("relu", "hard_sigmoid"):
        # keep pre-activations away from the kinks where finite differences are undefined
        layer(x)
        a = x.reshape(-1, 5) @ layer.params["kernel"] + layer.params["bias"]
        kink = 0.0 if act == "relu" else np.array([-3.0, 3.0])
        assert np.min(np.abs(a[..., None] - kink)) > 1e-4
    errs = check_layer_gradients(layer, x)
    assert set(errs) == {"input[0]", f"{layer.name}/kernel", f"{layer.name}/bias"}
    assert max(errs.values()) < 1e-7


def test_dense_matches_torch_linear(float64):
    gen = np.random.default_rng(1)
    layer = Dense(6, activation="tanh")
    x = gen.standard_normal((4, 3, 5))
    y = layer(x, training=True)
    g = gen.standard_normal(y.shape)
    dx = layer.backward(g)
    lin = torch.nn.Linear(5, 6).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(layer.params["kernel"].T))
        lin.bias.copy_(torch.tensor(layer.params["bias"]))
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.tanh(lin(tx))
    ty.backward(torch.tensor(g))
    assert rel_error(y, ty.detach().numpy()) < 1e-12
    assert rel_error(dx, tx.grad.numpy()) < 1e-12
    assert rel_error(layer.grads["kernel"], lin.weight.grad.numpy().T) < 1e-12
    assert rel_error(layer.grads["bias"], lin.bias.grad.numpy()) < 1e-12


def test_dense_errors():
    with pytest.raises(ValueError, match="units must be a positive int"):
        Dense(0)
    d = Dense(3)
    d(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"expected last dimension 4.*found shape \(2, 5\)"):
        d(np.zeros((2, 5), np.float32))


# ------------------------------------------------------------------------ Dropout
def test_dropout_identity_at_inference_and_inverted_scaling_at_training():
    x = np.ones((200, 50), np.float32)
    d = Dropout(0.3)
    y = d(x)
    assert y is x or np.array_equal(y, x)
    assert np.array_equal(d.backward(np.full_like(x, 2.0)), np.full_like(x, 2.0))
    y = d(x, training=True)
    assert y.dtype == np.float32
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    assert abs(kept.mean() - 0.7) < 0.02  # 10,000 draws
    g = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(d.backward(g), g * y)  # same mask, same scale


def test_dropout_reproducible_with_seed_and_rng():
    x = np.ones((4, 6), np.float32)
    backend.set_random_seed(5)
    a = Dropout(0.5)(x, training=True)
    backend.set_random_seed(5)
    b = Dropout(0.5)(x, training=True)
    assert np.array_equal(a, b)
    s1, s2 = Dropout(0.5, seed=3), Dropout(0.5, seed=3)
    assert np.array_equal(s1(x, training=True), s2(x, training=True))


def test_dropout_noise_shape_broadcasts_along_time():
    x = np.ones((3, 10, 8), np.float32)
    y = Dropout(0.5, noise_shape=(None, 1, 8))(x, training=True)
    assert np.all(y == y[:, :1, :])  # same features dropped at every step
    assert np.any(y == 0) and np.any(y != 0)


def test_dropout_gradient_check(float64):
    gen = np.random.default_rng(2)
    d = Dropout(0.4)
    x = gen.standard_normal((3, 4, 5))
    errs = check_layer_gradients(d, x)
    assert errs["input[0]"] < 1e-8
    # and the checked mask really drops something
    backend.set_random_seed(1234)
    assert np.any(d(x, training=True) == 0)


def test_dropout_errors_and_config():
    with pytest.raises(ValueError, match=r"rate must be a float in \[0, 1\), got 1.5"):
        Dropout(1.5)
    with pytest.raises(ValueError, match=r"noise_shape \(1, 2\) does not broadcast to the input shape \(3, 4\)"):
        Dropout(0.5, noise_shape=(1, 2))(np.ones((3, 4), np.float32), training=True)
    with pytest.raises(TypeError, match="must be floating point"):
        Dropout(0.5).forward(np.ones((2, 2), np.int64), training=True)
    d = Dropout(0.25, noise_shape=(None, 1, 4), name="drop")
    back = get_layer_class("Dropout")(**json.loads(json.dumps(d.get_config())))
    assert back.rate == 0.25 and back.noise_shape == (None, 1, 4) and back.name == "drop"


def test_dropout_passes_mask_and_activation_layer_still_works():
    m = np.array([[True, False]])
    assert Dropout(0.5).compute_mask(None, m) is m
    y = Activation("relu")(np.array([[-1.0, 2.0]]))
    np.testing.assert_array_equal(y, [[0.0, 2.0]])
