"""Initializers: Keras names, bounds and statistics; Keras' own initializers as the reference."""
import numpy as np
import pytest

import rnnlab
from rnnlab import initializers
from rnnlab.layers import Activation
from rnnlab.testing import check_layer_gradients


def test_glorot_uniform_bound_and_spread():
    w = initializers.get("glorot_uniform")((300, 200))
    limit = np.sqrt(6 / 500)
    assert w.dtype == np.float32 and np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.95 * limit
    assert w.std() == pytest.approx(limit / np.sqrt(3), rel=0.03)


def test_orthogonal_rows_and_columns():
    w = initializers.get("orthogonal")((64, 256)).astype(np.float64)  # like a recurrent kernel (U, 4U)
    np.testing.assert_allclose(w @ w.T, np.eye(64), atol=1e-5)
    w = initializers.Orthogonal(gain=2.0)((50, 20)).astype(np.float64)
    np.testing.assert_allclose(w.T @ w, 4 * np.eye(20), atol=1e-4)


def test_he_normal_is_truncated_with_keras_std():
    w = initializers.get("he_normal")((400, 300)).astype(np.float64)
    std = np.sqrt(2 / 400)
    assert np.abs(w).max() <= 2 * std / 0.87962566103423978 + 1e-9
    assert w.std() == pytest.approx(std, rel=0.03)


def test_uniform_zeros_ones_and_seeds():
    w = initializers.get("uniform")((1000,))
    assert w.min() >= -0.05 and w.max() <= 0.05
    assert not initializers.get("zeros")((3, 2)).any() and initializers.get("ones")((2,)).tolist() == [1, 1]
    a = initializers.GlorotUniform(seed=3)((4, 4))
    np.testing.assert_array_equal(a, initializers.GlorotUniform(seed=3)((4, 4)))
    rnnlab.set_random_seed(9)
    b = initializers.get("glorot_uniform")((4, 4))
    rnnlab.set_random_seed(9)
    np.testing.assert_array_equal(b, initializers.get("glorot_uniform")((4, 4)))


def test_unknown_initializer_lists_valid_names():
    with pytest.raises(ValueError, match="glorot_uniform"):
        initializers.get("glorot_unifrom")


def test_statistics_match_keras():
    keras = pytest.importorskip("keras")
    for name in ["glorot_uniform", "he_normal", "uniform"]:
        ours = initializers.get(name)((256, 128)).astype(np.float64)
        theirs = np.asarray(keras.initializers.get(name)((256, 128)), dtype=np.float64)
        assert ours.std() == pytest.approx(theirs.std(), rel=0.05), name
        assert np.abs(ours).max() <= np.abs(theirs).max() * 1.05 + 1e-6, name


def test_set_floatx_switches_layer_dtype():
    rnnlab.set_floatx("float64")
    assert rnnlab.layers.Dense(2)(np.zeros((1, 3))).dtype == np.float64
    rnnlab.set_floatx("float32")
    assert rnnlab.layers.Dense(2)(np.zeros((1, 3))).dtype == np.float32
    with pytest.raises(ValueError, match="float16"):
        rnnlab.set_floatx("float16")


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "softmax", "relu"])
def test_activation_layer_gradient(act, float64):
    check_layer_gradients(Activation(act), np.random.default_rng(0).normal(size=(3, 4, 5)))


def test_batch_input_shape_and_input_dim_forms():
    m = rnnlab.Sequential([rnnlab.layers.Dense(4, batch_input_shape=(8, 3))])
    assert m.layers[0].input_shape == (8, 3) and m.count_params() == 16
    m = rnnlab.Sequential([rnnlab.layers.Dense(4, input_dim=3)])
    assert m.output_shape == (None, 4)
