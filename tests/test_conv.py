"""Conv1D: Keras 3 parity (outputs and, through torch autograd, input and weight gradients; float64) over
paddings valid/same/causal, strides, dilation and both data formats; finite differences; config; errors."""
import numpy as np
import pytest

import rnnlab
from rnnlab.layers import Conv1D, Dense, Embedding, GlobalMaxPooling1D, MaxPooling1D
from rnnlab.testing import check_layer_gradients, rel_error

TOL = 1e-6   # the project's parity tolerance (relative, float64); these agree to ~1e-15

CASES = [  # (L, kernel_size, strides, dilation_rate, padding)
    (7, 3, 1, 1, "valid"), (8, 3, 2, 1, "valid"), (9, 4, 3, 1, "valid"), (9, 2, 1, 3, "valid"),
    (7, 3, 1, 1, "same"), (8, 4, 1, 1, "same"), (9, 3, 2, 1, "same"), (8, 4, 3, 1, "same"), (9, 3, 1, 2, "same"),
    (7, 3, 1, 1, "causal"), (8, 2, 1, 3, "causal"), (9, 3, 2, 1, "causal"), (6, 1, 1, 1, "valid"),
]


def _keras_conv(keras, x, grad, **kw):
    """Keras output, dL/dx and weight gradients for loss sum(y * grad) (torch autograd through Keras)."""
    import torch
    layer = keras.layers.Conv1D(dtype="float64", **kw)
    xt = torch.tensor(x, requires_grad=True)
    y = layer(xt)
    (y * torch.tensor(grad)).sum().backward()
    wgrads = [v.value.grad.numpy().copy() for v in layer.weights]
    return layer, y.detach().numpy(), xt.grad.numpy(), wgrads


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("L,k,s,d,padding", CASES)
def test_keras_parity_outputs_and_gradients(float64, L, k, s, d, padding, fmt):
    keras = pytest.importorskip("keras")
    pytest.importorskip("torch")
    if padding == "causal" and fmt == "channels_first":
        pytest.skip("Keras allows padding='causal' only with channels_last")
    rng = np.random.default_rng(L * 100 + k * 10 + s)
    x = rng.standard_normal((3, L, 2) if fmt == "channels_last" else (3, 2, L))
    kw = dict(filters=4, kernel_size=k, strides=s, dilation_rate=d, padding=padding, data_format=fmt,
              activation="tanh")
    probe = Conv1D(**kw)
    yshape = probe.compute_output_shape((None,) + x.shape[1:])
    grad = rng.standard_normal((3,) + yshape[1:])
    klayer, ky, kdx, kdw = _keras_conv(keras, x, grad, **kw)
    layer = Conv1D(**kw)
    layer(x)
    layer.set_weights([w.detach().numpy() if hasattr(w, "detach") else np.asarray(w)
                       for w in klayer.get_weights()])
    y = layer(x, training=True)
    assert y.shape == ky.shape
    assert rel_error(y, ky) < TOL
    dx = layer.backward(grad)
    assert rel_error(dx, kdx) < TOL
    assert rel_error(layer.grads["kernel"], kdw[0]) < TOL
    assert rel_error(layer.grads["bias"], kdw[1]) < TOL


@pytest.mark.parametrize("kw", [
    dict(padding="valid"), dict(padding="same", strides=2), dict(padding="causal", dilation_rate=2),
    dict(padding="same", data_format="channels_first", activation="relu"), dict(use_bias=False, kernel_size=1),
])
def test_gradients_finite_differences(float64, kw):
    kw = {"filters": 3, "kernel_size": 3, "activation": "tanh", **kw}
    layer = Conv1D(**kw)
    x = np.random.default_rng(1).standard_normal((2, 7, 4) if kw.get("data_format") != "channels_first"
                                                 else (2, 4, 7))
    errors = check_layer_gradients(layer, x)
    assert set(errors) >= {"input[0]", f"{layer.name}/kernel"}


def test_weights_shapes_order_and_keras_names():
    layer = Conv1D(8, 5)
    layer(np.zeros((2, 10, 3), "float32"))
    assert [w.shape for w in layer.get_weights()] == [(5, 3, 8), (8,)]
    assert list(layer.params) == ["kernel", "bias"]
    assert layer.count_params() == 5 * 3 * 8 + 8


def test_causal_output_depends_only_on_the_past():
    layer = Conv1D(2, 3, padding="causal", dilation_rate=2)
    x = np.random.default_rng(0).standard_normal((1, 12, 2)).astype("float32")
    y1 = layer(x)
    x2 = x.copy()
    x2[:, 7:] += 5.0
    y2 = layer(x2)
    np.testing.assert_array_equal(y1[:, :7], y2[:, :7])
    assert not np.allclose(y1[:, 7:], y2[:, 7:])


def test_output_shapes_match_formulas():
    for L, k, s, d, padding in CASES:
        layer = Conv1D(2, k, strides=s, dilation_rate=d, padding=padding)
        k_eff = d * (k - 1) + 1
        expect = {"valid": (L - k_eff) // s + 1, "same": -(-L // s), "causal": (L - 1) // s + 1}[padding]
        assert layer.compute_output_shape((None, L, 3)) == (None, expect, 2)
        assert layer(np.zeros((1, L, 3), "float32")).shape == (1, expect, 2)


def test_config_round_trip():
    layer = Conv1D(6, 3, strides=2, padding="same", activation="relu", use_bias=False, name="c1")
    cfg = layer.get_config()
    again = Conv1D.from_config(cfg)
    assert again.get_config() == cfg
    assert rnnlab.layers.get_layer_class("Conv1D") is Conv1D
    x = np.random.default_rng(0).standard_normal((2, 9, 4)).astype("float32")
    layer(x)
    again(x)
    again.set_weights(layer.get_weights())
    np.testing.assert_array_equal(layer(x), again(x))


def test_kernel_longer_than_sequence_with_valid_padding_is_a_clear_error():
    layer = Conv1D(4, 5, dilation_rate=2, name="conv_a")
    with pytest.raises(ValueError, match=r"conv_a.*kernel.*9 steps.*longer than the input sequence of 6 steps"):
        layer(np.zeros((2, 6, 3), "float32"))
    with pytest.raises(ValueError, match="longer than the input sequence of 4 steps"):
        Conv1D(4, 5).compute_output_shape((None, 4, 3))
    assert Conv1D(4, 5, padding="same")(np.zeros((2, 4, 3), "float32")).shape == (2, 4, 4)
    assert Conv1D(4, 5, padding="causal")(np.zeros((2, 4, 3), "float32")).shape == (2, 4, 4)


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="ndim=3"):
        Conv1D(2, 3)(np.zeros((4, 5), "float32"))
    with pytest.raises(ValueError, match="ndim=3"):
        Conv1D(2, 3)(np.zeros((4, 5, 6, 7), "float32"))
    layer = Conv1D(2, 3)
    layer(np.zeros((1, 5, 3), "float32"))
    with pytest.raises(ValueError, match="expected last dimension 3"):
        layer(np.zeros((1, 5, 4), "float32"))
    with pytest.raises(ValueError, match="padding must be one of"):
        Conv1D(2, 3, padding="full")
    with pytest.raises(ValueError, match="filters must be a positive int"):
        Conv1D(0, 3)
    with pytest.raises(ValueError, match="kernel_size must be an int"):
        Conv1D(2, (3, 3))
    with pytest.raises(ValueError, match="strides > 1 is not compatible with dilation_rate > 1"):
        Conv1D(2, 3, strides=2, dilation_rate=2)
    with pytest.raises(ValueError, match="causal"):
        Conv1D(2, 3, padding="causal", data_format="channels_first")
    with pytest.raises(ValueError, match="groups"):
        Conv1D(2, 3, groups=2)
    with pytest.raises(TypeError, match="unexpected keyword"):
        Conv1D(2, 3, kernal_size=3)


def test_mask_is_not_propagated_and_backward_checks():
    layer = Conv1D(2, 3)
    x = np.zeros((2, 5, 3), "float32")
    layer(x)
    assert layer.compute_mask(x, np.ones((2, 5), bool)) is None
    layer.backward(np.zeros((2, 3, 2), "float32"))
    with pytest.raises(ValueError, match=r"gradient must have shape \(2, 3, 2\)"):
        layer(x, training=True)
        layer.backward(np.zeros((2, 4, 2), "float32"))
    with pytest.raises(RuntimeError, match="without a preceding forward"):
        layer.backward(np.zeros((2, 3, 2), "float32"))


def test_trains_in_a_sequential_model():
    rnnlab.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.integers(1, 50, size=(64, 20))
    y = (x[:, :5] > 25).any(axis=1).astype("float32")
    model = rnnlab.Sequential([Embedding(50, 8), Conv1D(16, 3, activation="relu"), MaxPooling1D(2),
                               Conv1D(16, 3, activation="relu", padding="same"), GlobalMaxPooling1D(),
                               Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy")
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    last = model.evaluate(x, y, verbose=0)
    first = first[0] if isinstance(first, (list, tuple)) else first
    last = last[0] if isinstance(last, (list, tuple)) else last
    assert last < 0.7 * first


def test_keras_weight_files_load_into_the_same_model(tmp_path):
    keras = pytest.importorskip("keras")
    pytest.importorskip("h5py")
    from rnnlab.layers import (BatchNormalization, GlobalAveragePooling1D, LayerNormalization,
                               SpatialDropout1D)
    x = np.random.default_rng(0).standard_normal((8, 12, 3)).astype("float32")
    kl = keras.layers
    kmodel = keras.Sequential([keras.Input((12, 3)), kl.Conv1D(4, 3, padding="same", activation="relu"),
                               kl.BatchNormalization(), kl.SpatialDropout1D(0.2), kl.MaxPooling1D(2),
                               kl.LayerNormalization(), kl.GlobalAveragePooling1D(), kl.Dense(2)])
    kmodel.compile("adam", "mse")
    kmodel.fit(x, np.zeros((8, 2)), epochs=2, verbose=0)      # moves BatchNormalization's moving statistics
    for suffix in (".weights.h5", ".keras"):
        path = str(tmp_path / f"m{suffix}")
        kmodel.save_weights(path) if suffix == ".weights.h5" else kmodel.save(path)
        model = rnnlab.Sequential([rnnlab.Input((12, 3)), Conv1D(4, 3, padding="same", activation="relu"),
                                   BatchNormalization(), SpatialDropout1D(0.2), MaxPooling1D(2),
                                   LayerNormalization(), GlobalAveragePooling1D(), Dense(2)])
        model.load_weights(path)
        np.testing.assert_allclose(model.predict(x), kmodel.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
