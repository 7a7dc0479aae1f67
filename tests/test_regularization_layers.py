"""SpatialDropout1D: whole channels dropped, the same at every step (Keras's spatial_dropout_test correctness
case), scaling, inference identity (also against Keras 3), finite differences with fixed draws, config, errors."""
import numpy as np
import pytest

import rnnlab
from rnnlab.layers import SpatialDropout1D
from rnnlab.testing import check_layer_gradients


def test_keras_correctness_case_same_mask_at_every_step():
    # keras/src/layers/regularization/spatial_dropout_test.py::test_spatial_dropout_1D_correctness
    out = SpatialDropout1D(0.5)(np.ones((10, 3, 10)), training=True)
    np.testing.assert_array_equal(out[:, 0, :], out[:, 1, :])
    np.testing.assert_array_equal(out[:, 1, :], out[:, 2, :])
    assert set(np.unique(out)) <= {0.0, 2.0}


def test_drop_rate_and_scaling():
    rnnlab.set_random_seed(1)
    x = np.random.default_rng(0).standard_normal((200, 4, 50)).astype("float32")
    layer = SpatialDropout1D(0.3)
    y = layer(x, training=True)
    kept = (y[:, 0, :] != 0)
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(y[:, :, :][np.broadcast_to(kept[:, None, :], y.shape)],
                               (x / 0.7)[np.broadcast_to(kept[:, None, :], y.shape)], rtol=1e-6)
    assert np.all(y[np.broadcast_to(~kept[:, None, :], y.shape)] == 0)


def test_inference_is_identity_as_keras():
    keras = pytest.importorskip("keras")
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype("float32")
    np.testing.assert_array_equal(SpatialDropout1D(0.5)(x), x)
    np.testing.assert_array_equal(SpatialDropout1D(0.5)(x), keras.ops.convert_to_numpy(
        keras.layers.SpatialDropout1D(0.5)(x, training=False)))


def test_gradients_finite_differences(float64):
    x = np.random.default_rng(0).standard_normal((3, 4, 5))
    check_layer_gradients(SpatialDropout1D(0.4), x, training=True)
    layer = SpatialDropout1D(0.4)
    y = layer(x, training=True)
    g = np.random.default_rng(1).standard_normal(y.shape)
    np.testing.assert_allclose(layer.backward(g), g * (y / x), rtol=1e-12)   # dL/dx = g * m


def test_seed_config_and_errors():
    x = np.ones((4, 3, 6), "float32")
    a = SpatialDropout1D(0.5, seed=3)(x, training=True)
    b = SpatialDropout1D(0.5, seed=3)(x, training=True)
    np.testing.assert_array_equal(a, b)
    layer = SpatialDropout1D(0.25, seed=7, name="sd")
    cfg = layer.get_config()
    assert "noise_shape" not in cfg
    assert SpatialDropout1D.from_config(cfg).get_config() == cfg
    assert rnnlab.layers.get_layer_class("SpatialDropout1D") is SpatialDropout1D
    m = np.ones((4, 3), bool)
    assert layer.compute_mask(x, m) is m
    with pytest.raises(ValueError, match=r"'sd'.*expected ndim=3"):
        layer(np.ones((4, 6), "float32"), training=True)
    with pytest.raises(ValueError, match="rate must be a float in"):
        SpatialDropout1D(1.0)
