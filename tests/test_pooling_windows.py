"""MaxPooling1D / AveragePooling1D: Keras 3 parity (outputs and autograd gradients, float64), a loop reference
for "same" padding, finite differences, config, errors; GlobalAveragePooling1D's Keras defaults."""
import numpy as np
import pytest

import rnnlab
from rnnlab.layers import AveragePooling1D, GlobalAveragePooling1D, MaxPooling1D
from rnnlab.testing import check_layer_gradients, rel_error

TOL = 1e-6

# (L, pool_size, strides, padding); for "same" these have even (symmetric) padding, where Keras' torch backend
# excludes the padding as TensorFlow does (uneven padding: see test_same_padding_uneven_matches_loop_reference)
KERAS_CASES = [(6, 2, None, "valid"), (7, 3, 1, "valid"), (9, 3, 2, "valid"), (8, 4, 3, "valid"),
               (5, 1, 1, "valid"), (7, 3, 1, "same"), (8, 2, 2, "same"), (9, 3, 3, "same"), (6, 5, 1, "same"),
               (7, 3, 2, "same")]


def _loop_reference(x, pool, stride, padding, kind):
    """Window by window, padding never counted (TensorFlow / Keras-reference semantics)."""
    B, L, C = x.shape
    if padding == "valid":
        out, left = (L - pool) // stride + 1, 0
    else:
        out = -(-L // stride)
        left = max((out - 1) * stride + pool - L, 0) // 2
    y = np.zeros((B, out, C))
    for t in range(out):
        lo, hi = max(t * stride - left, 0), min(t * stride - left + pool, L)
        win = x[:, lo:hi]
        y[:, t] = win.max(axis=1) if kind == "max" else win.mean(axis=1)
    return y


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("L,p,s,padding", KERAS_CASES)
@pytest.mark.parametrize("kind", ["max", "average"])
def test_keras_parity_outputs_and_gradients(float64, kind, L, p, s, padding, fmt):
    keras = pytest.importorskip("keras")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(L * 10 + p)
    x = rng.standard_normal((2, L, 3) if fmt == "channels_last" else (2, 3, L))
    kcls = keras.layers.MaxPooling1D if kind == "max" else keras.layers.AveragePooling1D
    cls = MaxPooling1D if kind == "max" else AveragePooling1D
    xt = torch.tensor(x, requires_grad=True)
    ky = kcls(p, strides=s, padding=padding, data_format=fmt, dtype="float64")(xt)
    grad = rng.standard_normal(tuple(ky.shape))
    (ky * torch.tensor(grad)).sum().backward()
    layer = cls(p, strides=s, padding=padding, data_format=fmt)
    y = layer(x, training=True)
    assert y.shape == tuple(ky.shape)
    assert rel_error(y, ky.detach().numpy()) < TOL
    assert rel_error(layer.backward(grad), xt.grad.numpy()) < TOL


@pytest.mark.parametrize("L,p,s", [(6, 3, 2), (8, 3, 2), (6, 4, 3), (7, 4, 3), (5, 2, 1), (10, 4, 1)])
@pytest.mark.parametrize("kind", ["max", "average"])
def test_same_padding_uneven_matches_loop_reference(float64, kind, L, p, s):
    x = np.random.default_rng(L + p + s).standard_normal((2, L, 3))
    cls = MaxPooling1D if kind == "max" else AveragePooling1D
    np.testing.assert_allclose(cls(p, strides=s, padding="same")(x), _loop_reference(x, p, s, "same", kind),
                               rtol=1e-13, atol=1e-14)


def test_values_by_hand():
    x = np.array([[[1.0], [5.0], [2.0], [4.0], [3.0]]])
    np.testing.assert_array_equal(MaxPooling1D()(x)[0, :, 0], [5.0, 4.0])
    np.testing.assert_array_equal(AveragePooling1D()(x)[0, :, 0], [3.0, 3.0])
    np.testing.assert_array_equal(MaxPooling1D(padding="same")(x)[0, :, 0], [5.0, 4.0, 3.0])
    np.testing.assert_array_equal(AveragePooling1D(padding="same")(x)[0, :, 0], [3.0, 3.0, 3.0])
    np.testing.assert_allclose(AveragePooling1D(3, strides=1, padding="same")(x)[0, :, 0],
                               [3.0, 8 / 3, 11 / 3, 3.0, 3.5], rtol=1e-6)   # float32


@pytest.mark.parametrize("kw", [dict(), dict(pool_size=3, strides=1), dict(pool_size=3, strides=2, padding="same"),
                                dict(pool_size=4, strides=3, padding="same", data_format="channels_first")])
@pytest.mark.parametrize("cls", [MaxPooling1D, AveragePooling1D])
def test_gradients_finite_differences(float64, cls, kw):
    x = np.random.default_rng(2).standard_normal((2, 7, 3))
    if kw.get("data_format") == "channels_first":
        x = x.transpose(0, 2, 1).copy()
    check_layer_gradients(cls(**kw), x)


def test_max_ties_send_the_gradient_to_one_step(float64):
    layer = MaxPooling1D(3, strides=1)
    x = np.ones((1, 4, 1))
    layer(x, training=True)
    dx = layer.backward(np.ones((1, 2, 1)))
    np.testing.assert_array_equal(dx[0, :, 0], [1.0, 1.0, 0.0, 0.0])   # the first max of each window


def test_config_round_trip_and_defaults():
    for cls in (MaxPooling1D, AveragePooling1D):
        layer = cls()
        assert (layer.pool_size, layer.strides, layer.padding, layer.data_format) == (2, 2, "valid", "channels_last")
        layer = cls(3, strides=1, padding="same", data_format="channels_first", name="p")
        cfg = layer.get_config()
        assert cls.from_config(cfg).get_config() == cfg
        assert rnnlab.layers.get_layer_class(cls.__name__) is cls
        assert layer.count_params() == 0 if layer.built else True
        assert layer.compute_output_shape((None, 4, 9)) == (None, 4, 9)
        assert layer.compute_mask(None, np.ones((2, 9), bool)) is None


def test_bad_input():
    with pytest.raises(ValueError, match=r"'mp'.*pool_size=4 is longer than the input sequence of 3 steps"):
        MaxPooling1D(4, name="mp")(np.zeros((2, 3, 5), "float32"))
    with pytest.raises(ValueError, match="ndim=3"):
        AveragePooling1D()(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="padding must be one of"):
        MaxPooling1D(padding="causal")
    with pytest.raises(ValueError, match="pool_size must be an int"):
        MaxPooling1D(0)
    with pytest.raises(ValueError, match="data_format must be one of"):
        AveragePooling1D(data_format="NCW")
    layer = MaxPooling1D()
    layer(np.zeros((2, 6, 3)), training=True)
    with pytest.raises(ValueError, match=r"gradient must have shape \(2, 3, 3\)"):
        layer.backward(np.zeros((2, 6, 3)))


def test_global_average_pooling_keras_defaults_and_config():
    layer = GlobalAveragePooling1D()
    assert (layer.data_format, layer.keepdims) == ("channels_last", False)
    cfg = GlobalAveragePooling1D(data_format="channels_first", keepdims=True, name="g").get_config()
    assert GlobalAveragePooling1D.from_config(cfg).get_config() == cfg
    assert layer.compute_mask(np.zeros((2, 3, 4)), np.ones((2, 3), bool)) is None
