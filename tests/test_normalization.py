"""BatchNormalization and LayerNormalization: exact float64 parity with PyTorch (outputs and autograd gradients),
Keras 3 parity (outputs, moving statistics, weight order; Keras computes these layers in float32, so to float32
rounding, within the project's 1e-6), finite differences, masks, non-trainable moving statistics, config."""
import numpy as np
import pytest

import rnnlab
from rnnlab.layers import BatchNormalization, Dense, LayerNormalization, TimeDistributed
from rnnlab.testing import check_layer_gradients, rel_error

TOL = 1e-6


def _x(shape=(4, 5, 3), seed=0):
    return np.random.default_rng(seed).standard_normal(shape) * 2.0 + 1.0


def _mask():
    m = np.ones((4, 5), bool)
    m[0, 3:] = False
    m[2, :2] = False
    return m


def _random_bn_weights(layer, seed=1):
    rng = np.random.default_rng(seed)
    ws = []
    for name, w in zip(layer.params, layer.get_weights()):
        ws.append(rng.random(w.shape) + 0.5 if name == "moving_variance" else rng.standard_normal(w.shape))
    layer.set_weights(ws)
    return ws


# ------------------------------------------------------------------ BatchNormalization
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("kw", [dict(), dict(momentum=0.5, epsilon=1e-2), dict(center=False), dict(scale=False)])
def test_bn_torch_parity_float64_outputs_and_gradients(float64, kw, training):
    torch = pytest.importorskip("torch")
    x = _x()
    layer = BatchNormalization(**kw)
    layer(x)
    ws = dict(zip(layer.params, _random_bn_weights(layer)))
    momentum = kw.get("momentum", 0.99)
    eps = kw.get("epsilon", 1e-3)
    xt = torch.tensor(x, requires_grad=True)
    gamma = torch.tensor(ws["gamma"], requires_grad=True) if "gamma" in ws else None
    beta = torch.tensor(ws["beta"], requires_grad=True) if "beta" in ws else None
    rm, rv = torch.tensor(ws["moving_mean"]), torch.tensor(ws["moving_variance"])
    # torch normalizes dim 1: put the features there
    yt = torch.nn.functional.batch_norm(xt.permute(0, 2, 1), rm, rv, gamma, beta, training=training,
                                        momentum=1 - momentum, eps=eps).permute(0, 2, 1)
    g = np.random.default_rng(5).standard_normal(x.shape)
    (yt * torch.tensor(g)).sum().backward()
    y = layer(x, training=training)
    assert rel_error(y, yt.detach().numpy()) < 1e-12
    dx = layer.backward(g)
    assert rel_error(dx, xt.grad.numpy()) < 1e-12
    if gamma is not None:
        assert rel_error(layer.grads["gamma"], gamma.grad.numpy()) < 1e-12
    if beta is not None:
        assert rel_error(layer.grads["beta"], beta.grad.numpy()) < 1e-12
    if training:   # moving mean as torch's running mean; Keras keeps the biased variance (torch: unbiased)
        assert rel_error(layer.params["moving_mean"], rm.numpy()) < 1e-12
        n = x.shape[0] * x.shape[1]
        expect_var = momentum * ws["moving_variance"] + (1 - momentum) * x.reshape(-1, 3).var(axis=0)
        assert rel_error(layer.params["moving_variance"], expect_var) < 1e-12
        assert n > 1
    else:
        np.testing.assert_array_equal(layer.params["moving_mean"], ws["moving_mean"])


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("kw", [dict(), dict(momentum=0.5, epsilon=1e-2, center=False), dict(scale=False)])
def test_bn_keras_parity(float64, kw, masked):
    keras = pytest.importorskip("keras")
    x = _x()
    mask = _mask() if masked else None
    klayer = keras.layers.BatchNormalization(dtype="float64", **kw)
    klayer.build(x.shape)
    layer = BatchNormalization(**kw)
    layer(x)
    assert [w.shape for w in layer.get_weights()] == [tuple(w.shape) for w in klayer.get_weights()]
    assert [p.split("/")[-1] for p, _, _ in layer.iter_weights()] == [w.path.split("/")[-1] for w in klayer.weights]
    klayer.set_weights(_random_bn_weights(layer))
    for training in (True, False, True):
        km = None if mask is None else keras.ops.convert_to_tensor(mask)
        ky = keras.ops.convert_to_numpy(klayer(x, training=training, mask=km))
        y = layer(x, training=training, mask=mask)
        assert rel_error(y, ky) < TOL
        for ours, theirs in zip(layer.get_weights(), klayer.get_weights()):
            assert rel_error(ours, keras.ops.convert_to_numpy(theirs)) < TOL


def test_bn_axis_1_keras_parity(float64):
    keras = pytest.importorskip("keras")
    x = _x((4, 3, 6))
    klayer = keras.layers.BatchNormalization(axis=1, dtype="float64")
    klayer.build(x.shape)
    layer = BatchNormalization(axis=1)
    layer(x)
    klayer.set_weights(_random_bn_weights(layer))
    assert rel_error(layer(x, training=True), keras.ops.convert_to_numpy(klayer(x, training=True))) < TOL
    assert rel_error(layer(x), keras.ops.convert_to_numpy(klayer(x))) < TOL


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("kw", [dict(), dict(center=False), dict(scale=False, axis=1)])
def test_bn_gradients_finite_differences(float64, kw, masked, training):
    if masked and kw.get("axis") == 1:
        pytest.skip("a (batch, steps) mask goes with features on the last axis")
    layer = BatchNormalization(**kw)
    layer(_x())
    _random_bn_weights(layer)
    check_layer_gradients(layer, _x(seed=3), mask=_mask() if masked else None, training=training)


def test_bn_mask_statistics_use_only_real_steps(float64):
    x = _x()
    m = _mask()
    layer = BatchNormalization(momentum=0.0)
    layer(x, training=True, mask=m)
    real = x[m]
    np.testing.assert_allclose(layer.params["moving_mean"], real.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(layer.params["moving_variance"], real.var(axis=0), rtol=1e-6)
    assert layer.compute_mask(x, m) is m


def test_bn_moving_statistics_are_non_trainable_and_untouched_by_the_optimizer():
    rnnlab.set_random_seed(0)
    x = _x((32, 6)).astype("float32")
    y = (x[:, :1] > 1).astype("float32")
    model = rnnlab.Sequential([rnnlab.Input((6,)), BatchNormalization(), Dense(1, activation="sigmoid")])
    bn = model.layers[0]
    assert [p for p, _, _ in bn.trainable_weight_refs()] == [f"{bn.name}/gamma", f"{bn.name}/beta"]
    assert bn.count_params() == 24 and bn.count_trainable_params() == 12
    assert [w.name for w in bn.non_trainable_weights] == ["moving_mean", "moving_variance"]
    assert [w.name for w in bn.trainable_weights] == ["gamma", "beta"]
    refs = [p for p, _, _ in model.trainable_weight_refs()]
    assert not any("moving" in p for p in refs)
    model.compile("sgd", "binary_crossentropy")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    # one batch of 32: the moving stats move exactly by the batch statistics, with no optimizer step on top
    np.testing.assert_allclose(bn.params["moving_mean"], 0.01 * x.mean(axis=0), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(bn.params["moving_variance"], 0.99 + 0.01 * x.var(axis=0), rtol=1e-5)


def test_bn_frozen_layer_uses_moving_statistics_as_keras(float64):
    x = _x()
    layer = BatchNormalization(trainable=False)
    layer(x)
    ws = _random_bn_weights(layer)
    y = layer(x, training=True)
    expect = ws[0] * (x - ws[2]) / np.sqrt(ws[3] + 1e-3) + ws[1]
    np.testing.assert_allclose(y, expect, rtol=1e-12)
    np.testing.assert_array_equal(layer.params["moving_mean"], ws[2])
    assert list(layer.trainable_weight_refs()) == []


def test_bn_config_and_errors():
    layer = BatchNormalization(axis=1, momentum=0.9, epsilon=1e-5, center=False, name="bn")
    cfg = layer.get_config()
    assert BatchNormalization.from_config(cfg).get_config() == cfg
    assert rnnlab.layers.get_layer_class("BatchNormalization") is BatchNormalization
    layer = BatchNormalization(name="bn2")
    layer(np.zeros((2, 3, 4), "float32"))
    with pytest.raises(ValueError, match=r"'bn2'.*expected size 4 on axis -1"):
        layer(np.zeros((2, 3, 5), "float32"))
    with pytest.raises(ValueError, match="expected ndim=3"):
        layer(np.zeros((2, 4), "float32"))
    with pytest.raises(ValueError, match="mask must have the input's shape without its last axis"):
        layer(np.zeros((2, 3, 4), "float32"), training=True, mask=np.ones((2, 4), bool))
    with pytest.raises(ValueError, match="axis 5 is out of range"):
        BatchNormalization(axis=5)(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="momentum must be in"):
        BatchNormalization(momentum=1.5)
    with pytest.raises(TypeError, match="axis must be an int"):
        BatchNormalization(axis=[1, 2])


# ------------------------------------------------------------------ LayerNormalization
@pytest.mark.parametrize("kw", [dict(), dict(epsilon=1e-5), dict(center=False), dict(scale=False),
                                dict(axis=[1, 2])])
def test_ln_torch_parity_float64_outputs_and_gradients(float64, kw):
    torch = pytest.importorskip("torch")
    x = _x()
    layer = LayerNormalization(**kw)
    layer(x)
    rng = np.random.default_rng(2)
    ws = [rng.standard_normal(w.shape) for w in layer.get_weights()]
    layer.set_weights(ws)
    named = dict(zip(layer.params, ws))
    norm_shape = x.shape[1:] if kw.get("axis") == [1, 2] else x.shape[-1:]
    xt = torch.tensor(x, requires_grad=True)
    gamma = torch.tensor(named["gamma"], requires_grad=True) if "gamma" in named else None
    beta = torch.tensor(named["beta"], requires_grad=True) if "beta" in named else None
    yt = torch.nn.functional.layer_norm(xt, norm_shape, gamma, beta, eps=kw.get("epsilon", 1e-3))
    g = rng.standard_normal(x.shape)
    (yt * torch.tensor(g)).sum().backward()
    y = layer(x, training=True)
    assert rel_error(y, yt.detach().numpy()) < 1e-12
    assert rel_error(layer.backward(g), xt.grad.numpy()) < 1e-12
    if gamma is not None:
        assert rel_error(layer.grads["gamma"], gamma.grad.numpy()) < 1e-12
    if beta is not None:
        assert rel_error(layer.grads["beta"], beta.grad.numpy()) < 1e-12


@pytest.mark.parametrize("kw", [dict(), dict(axis=[1, 2], epsilon=0.1), dict(center=False), dict(scale=False)])
def test_ln_keras_parity(float64, kw):
    keras = pytest.importorskip("keras")
    x = _x()
    klayer = keras.layers.LayerNormalization(dtype="float64", **kw)
    klayer.build(x.shape)
    layer = LayerNormalization(**kw)
    layer(x)
    assert [w.shape for w in layer.get_weights()] == [tuple(w.shape) for w in klayer.get_weights()]
    rng = np.random.default_rng(4)
    ws = [rng.standard_normal(w.shape) for w in layer.get_weights()]
    klayer.set_weights(ws)
    layer.set_weights(ws)
    assert rel_error(layer(x), keras.ops.convert_to_numpy(klayer(x))) < TOL


@pytest.mark.parametrize("kw", [dict(), dict(axis=[1, 2]), dict(axis=1, center=False), dict(scale=False)])
def test_ln_gradients_finite_differences(float64, kw):
    layer = LayerNormalization(**kw)
    layer(_x())
    rng = np.random.default_rng(7)
    layer.set_weights([rng.standard_normal(w.shape) for w in layer.get_weights()])
    check_layer_gradients(layer, _x(seed=8))


def test_ln_keras_golden_values():
    # keras/src/layers/normalization/layer_normalization_test.py::test_output
    layer = LayerNormalization(dtype="float32", beta_initializer="ones", gamma_initializer="ones")
    inputs = np.arange(5).astype("float32")[None, :]
    out = layer(inputs)
    np.testing.assert_allclose(out, [[-0.41386, 0.29307, 1.0, 1.70693, 2.41386]], rtol=1e-5, atol=1e-5)


def test_ln_mask_passes_through_and_config_and_errors():
    x = np.zeros((2, 3, 4), "float32")
    m = np.ones((2, 3), bool)
    layer = LayerNormalization(name="ln")
    layer(x, mask=m)
    assert layer.compute_mask(x, m) is m
    cfg = LayerNormalization(axis=[1, 2], epsilon=1e-5, scale=False, name="ln2").get_config()
    assert LayerNormalization.from_config(cfg).get_config() == cfg
    with pytest.raises(ValueError, match=r"'ln'.*expected sizes \(4,\) on axes \[2\]"):
        layer(np.zeros((2, 3, 5), "float32"))
    with pytest.raises(ValueError, match="expected ndim=3"):
        layer(np.zeros((2, 4), "float32"))
    with pytest.raises(ValueError, match="must not include the batch axis"):
        LayerNormalization(axis=0)(x)
    with pytest.raises(TypeError, match="axis must be an int or a list of ints"):
        LayerNormalization(axis="last")


def test_layers_inside_time_distributed_and_sequential_fit():
    rnnlab.set_random_seed(0)
    x = _x((16, 5, 3)).astype("float32")
    y = np.random.default_rng(0).standard_normal((16, 5, 2)).astype("float32")
    model = rnnlab.Sequential([rnnlab.Input((5, 3)), LayerNormalization(), BatchNormalization(),
                               TimeDistributed(Dense(2))])
    model.compile("adam", "mse")
    h = model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert np.all(np.isfinite(h.history["loss"]))
    assert model.predict(x).shape == (16, 5, 2)


def test_saved_model_keeps_moving_statistics_and_summary_counts_them_non_trainable(tmp_path):
    from rnnlab.layers import Conv1D, GlobalAveragePooling1D, MaxPooling1D, SpatialDropout1D
    rnnlab.set_random_seed(0)
    x = _x((24, 12, 3)).astype("float32")
    y = (x[:, :, 0].mean(axis=1) > 1).astype("float32")
    model = rnnlab.Sequential([rnnlab.Input((12, 3)), Conv1D(4, 3, padding="causal"), BatchNormalization(),
                               SpatialDropout1D(0.2), MaxPooling1D(2), LayerNormalization(),
                               GlobalAveragePooling1D(), Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy")
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    bn = model.layers[1]
    assert not np.allclose(bn.params["moving_mean"], 0)
    lines = []
    model.summary(print_fn=lines.append)
    assert any("Non-trainable params: 8 " in line for line in lines)
    path = str(tmp_path / "m.npz")
    model.save(path)
    again = rnnlab.load_model(path)
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.predict(x), again.predict(x))


def test_functional_model_with_masks_matches_keras(float64):
    keras = pytest.importorskip("keras")
    ids = np.random.default_rng(0).integers(1, 30, (6, 7))
    ids[0, 4:] = 0
    ids[3, 2:] = 0

    def build(lib, L):
        inp = lib.Input(shape=(None,), dtype="int32")
        h = L.Embedding(30, 6, mask_zero=True)(inp)
        h = L.BatchNormalization()(h)
        h = L.LayerNormalization()(h)
        h = L.LSTM(5)(h)
        return lib.Model(inp, L.Dense(2)(h))

    kmodel = build(keras, keras.layers)
    model = build(rnnlab, rnnlab.layers)
    rng = np.random.default_rng(1)
    ws = [rng.random(w.shape) + 0.5 if "variance" in w.path else rng.standard_normal(w.shape) * 0.5
          for w in kmodel.weights]
    kmodel.set_weights(ws)
    model.set_weights(ws)
    for training in (False, True):   # training=True: BatchNormalization's statistics over the real steps only
        ours = model(ids, training=training)
        theirs = keras.ops.convert_to_numpy(kmodel(ids, training=training))
        assert rel_error(ours, theirs) < TOL
    for ours, theirs in zip(model.get_weights(), kmodel.get_weights()):   # same moving statistics after the update
        assert rel_error(ours, keras.ops.convert_to_numpy(theirs)) < TOL
