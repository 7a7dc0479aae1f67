"""GlobalAveragePooling1D / GlobalMaxPooling1D: values by hand, masks, finite differences, Keras 3 parity."""
import numpy as np
import pytest

import rnnlab
from rnnlab.layers.pooling import GlobalAveragePooling1D, GlobalMaxPooling1D
from rnnlab.testing import check_layer_gradients


def _x(B=3, T=5, F=4, seed=0):
    return np.random.default_rng(seed).standard_normal((B, T, F))


def _mask():
    return np.array([[True, True, True, False, False],
                     [False, False, True, True, True],
                     [True, True, True, True, True]])


def test_average_by_hand_with_mask():
    x = _x().astype("float32")
    m = _mask()
    y = GlobalAveragePooling1D()(x, mask=m)
    for b in range(3):
        np.testing.assert_allclose(y[b], x[b][m[b]].mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(GlobalAveragePooling1D()(x), x.mean(axis=1), rtol=1e-5, atol=1e-6)


def test_max_by_hand_with_and_without_mask():
    x = _x().astype("float32")
    m = _mask()
    np.testing.assert_array_equal(GlobalMaxPooling1D()(x, mask=m), x.max(axis=1))   # Keras: mask ignored
    y = GlobalMaxPooling1D(use_mask=True)(x, mask=m)
    for b in range(3):
        np.testing.assert_array_equal(y[b], x[b][m[b]].max(axis=0))


def test_all_masked_row_gives_zero_and_zero_gradient(float64):
    x = _x()
    m = _mask()
    m[1] = False
    for layer in (GlobalAveragePooling1D(), GlobalMaxPooling1D(use_mask=True)):
        y = layer(x, mask=m, training=True)
        assert np.all(y[1] == 0) and np.all(np.isfinite(y))
        dx = layer.backward(np.ones_like(y))
        assert np.all(dx[1] == 0)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("masked", [False, True])
def test_gradients_finite_differences(float64, keepdims, fmt, masked):
    x = _x()
    if fmt == "channels_first":
        x = x.transpose(0, 2, 1).copy()
    kw = {"mask": _mask()} if masked else {}
    check_layer_gradients(GlobalAveragePooling1D(data_format=fmt, keepdims=keepdims), x, **kw)
    check_layer_gradients(GlobalMaxPooling1D(data_format=fmt, keepdims=keepdims, use_mask=masked), x, **kw)


def test_shapes_config_and_no_output_mask():
    layer = GlobalMaxPooling1D(keepdims=True, use_mask=True)
    assert layer.compute_output_shape((None, 7, 3)) == (None, 1, 3)
    assert GlobalAveragePooling1D(data_format="channels_first").compute_output_shape((2, 3, 7)) == (2, 3)
    assert GlobalAveragePooling1D(data_format="channels_first", keepdims=True).compute_output_shape((2, 3, 7)) == (2, 3, 1)
    assert layer.compute_mask(np.zeros((2, 7, 3)), np.ones((2, 7), bool)) is None
    clone = GlobalMaxPooling1D.from_config(layer.get_config())
    assert clone.keepdims and clone.use_mask


def test_bad_input():
    with pytest.raises(ValueError, match="data_format"):
        GlobalAveragePooling1D(data_format="nhwc")
    with pytest.raises(ValueError, match=r"\(batch, steps, features\)"):
        GlobalMaxPooling1D()(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"mask must have shape .*\(2, 4\)"):
        GlobalAveragePooling1D()(np.zeros((2, 4, 3)), mask=np.ones((2, 5), bool))
    with pytest.raises(TypeError, match="floating point"):
        GlobalMaxPooling1D().forward(np.zeros((2, 4, 3), dtype=np.int64))
    layer = GlobalMaxPooling1D()
    layer(np.zeros((2, 4, 3)), training=True)
    with pytest.raises(ValueError, match="gradient must have shape"):
        layer.backward(np.zeros((2, 4)))


def test_in_a_model_embedding_mask_reaches_pooling():
    from rnnlab.layers import Dense, Embedding, GRU

    rnnlab.set_random_seed(0)
    model = rnnlab.Sequential([Embedding(20, 4, mask_zero=True), GRU(3, return_sequences=True),
                               GlobalMaxPooling1D(use_mask=True), Dense(1, activation="sigmoid")])
    ids = np.array([[0, 0, 5, 6], [7, 8, 9, 1]])
    out = model(ids)
    gru_out = model.layers[1](model.layers[0](ids), mask=ids != 0)
    expect = model.layers[3](np.stack([gru_out[0, 2:].max(0), gru_out[1].max(0)]))
    np.testing.assert_allclose(out, expect, rtol=1e-6)


@pytest.mark.parametrize("keepdims", [False, True])
def test_keras_parity(float64, keepdims):
    keras = pytest.importorskip("keras")
    x = _x()
    m = _mask()
    kavg = keras.layers.GlobalAveragePooling1D(keepdims=keepdims, dtype="float64")
    np.testing.assert_allclose(GlobalAveragePooling1D(keepdims=keepdims)(x, mask=m),
                               np.asarray(kavg(x, mask=m)), rtol=1e-12)
    kmax = keras.layers.GlobalMaxPooling1D(keepdims=keepdims, dtype="float64")
    np.testing.assert_allclose(GlobalMaxPooling1D(keepdims=keepdims)(x, mask=m), np.asarray(kmax(x)), rtol=1e-12)
    xf = x.transpose(0, 2, 1).copy()
    kf = keras.layers.GlobalAveragePooling1D(data_format="channels_first", keepdims=keepdims, dtype="float64")
    np.testing.assert_allclose(GlobalAveragePooling1D(data_format="channels_first", keepdims=keepdims)(xf),
                               np.asarray(kf(xf)), rtol=1e-6)  # Keras' unmasked mean runs in float32 here


def test_keras_gradient_parity(float64):
    torch = pytest.importorskip("torch")
    keras = pytest.importorskip("keras")
    x = _x()
    m = _mask()
    g = np.random.default_rng(3).standard_normal((3, 4))
    xt = torch.tensor(x, requires_grad=True)
    (keras.layers.GlobalAveragePooling1D(dtype="float64")(xt, mask=torch.tensor(m)) * torch.tensor(g)).sum().backward()
    layer = GlobalAveragePooling1D()
    layer(x, mask=m, training=True)
    np.testing.assert_allclose(layer.backward(g), xt.grad.numpy(), rtol=1e-12)
    xt = torch.tensor(x, requires_grad=True)
    (keras.layers.GlobalMaxPooling1D(dtype="float64")(xt) * torch.tensor(g)).sum().backward()
    layer = GlobalMaxPooling1D()
    layer(x, training=True)
    np.testing.assert_allclose(layer.backward(g), xt.grad.numpy(), rtol=1e-12)
