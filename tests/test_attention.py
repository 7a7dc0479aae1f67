"""Attention / AdditiveAttention: finite-difference gradients (float64), Keras 3 parity, masks, errors."""
import numpy as np
import pytest

from rnnlab.layers import AdditiveAttention, Attention
from rnnlab.testing import check_layer_gradients, rel_error


def _data(B=2, Tq=3, Tv=4, D=5, Dk=None, seed=0, key=False):
    g = np.random.default_rng(seed)
    q = g.standard_normal((B, Tq, D))
    v = g.standard_normal((B, Tv, D))
    xs = [q, v]
    if key:
        xs.append(g.standard_normal((B, Tv, Dk or D)))
    return xs


def _masks(B=2, Tq=3, Tv=4):
    qm = np.ones((B, Tq), bool)
    qm[1, -1] = False
    vm = np.ones((B, Tv), bool)
    vm[0, -2:] = False
    return [qm, vm]


CONFIGS = [
    dict(cls=Attention, kw=dict()),
    dict(cls=Attention, kw=dict(use_scale=True)),
    dict(cls=Attention, kw=dict(score_mode="concat")),
    dict(cls=Attention, kw=dict(score_mode="concat", use_scale=True)),
    dict(cls=Attention, kw=dict(score_mode="general")),
    dict(cls=Attention, kw=dict(score_mode="general", use_scale=True)),
    dict(cls=AdditiveAttention, kw=dict()),
    dict(cls=AdditiveAttention, kw=dict(use_scale=False)),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c['cls'].__name__}-{c['kw']}")
@pytest.mark.parametrize("key", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_gradients(float64, cfg, key, masked):
    layer = cfg["cls"](**cfg["kw"])
    xs = _data(key=key)
    kw = {"mask": _masks()} if masked else {}
    errs = check_layer_gradients(layer, xs, **kw)
    assert len(errs) >= 2 + key
    # perturb learned weights away from their initial values so their gradients are exercised
    for w in layer.params.values():
        w += 0.3
    check_layer_gradients(layer, xs, **kw)


@pytest.mark.parametrize("cfg", CONFIGS[:1] + CONFIGS[4:5] + CONFIGS[6:7], ids=lambda c: f"{c['cls'].__name__}-{c['kw']}")
def test_gradients_with_returned_scores_and_causal(float64, cfg):
    layer = cfg["cls"](**cfg["kw"])
    xs = _data(Tq=4, Tv=4)
    check_layer_gradients(layer, xs, return_attention_scores=True, use_causal_mask=True, mask=[None, _masks()[1]])


def test_general_with_different_dims(float64):
    layer = Attention(score_mode="general")
    xs = _data(D=3, Dk=6, key=True)
    xs[1] = np.random.default_rng(3).standard_normal((2, 4, 7))  # value dim differs too
    out = layer(xs)
    assert out.shape == (2, 3, 7)
    assert layer.params["kernel"].shape == (3, 6)
    check_layer_gradients(layer, xs)


def test_dropout_gradient(float64):
    layer = Attention(dropout=0.4)
    xs = _data()
    out_train = layer(xs, training=True)
    out_eval = layer(xs, training=False)
    assert not np.allclose(out_train, out_eval)
    check_layer_gradients(layer, xs, training=True)


# ------------------------------------------------------------------------------------------- Keras parity
@pytest.fixture
def keras_f64_matmul(monkeypatch):
    """Keras 3.15's torch-backend ``ops.matmul`` promotes float64 x float64 to float32 (its dtype lattice
    follows JAX without x64), which limits agreement to ~1e-7. For a float64 reference we route its matmul
    straight to ``torch.matmul``; every other Keras op is unchanged."""
    import torch
    import keras.src.backend.torch.numpy as tnp
    from keras.src.backend.torch.core import convert_to_tensor

    monkeypatch.setattr(tnp, "matmul", lambda a, b: torch.matmul(convert_to_tensor(a), convert_to_tensor(b)))


def _keras_layer(cfg, dtype="float64"):
    import keras

    name = cfg["cls"].__name__
    kw = dict(cfg["kw"])
    return getattr(keras.layers, name)(dtype=dtype, **kw)


@pytest.mark.parametrize("cfg", [c for c in CONFIGS if c["kw"].get("score_mode") != "general"],
                         ids=lambda c: f"{c['cls'].__name__}-{c['kw']}")
@pytest.mark.parametrize("key", [False, True])
def test_keras_parity(float64, keras_f64_matmul, cfg, key):
    import keras

    xs = _data(B=3, Tq=5, Tv=6, D=4, key=key, seed=7)
    qm, vm = np.ones((3, 5), bool), np.ones((3, 6), bool)
    qm[0, 3:] = False
    vm[1, 4:] = False
    vm[2, 1:] = False
    kl = _keras_layer(cfg)
    k_out, k_scores = kl(list(xs), mask=[qm, vm], return_attention_scores=True)
    ours = cfg["cls"](**cfg["kw"])
    ours([x.copy() for x in xs])  # build
    kw = [np.asarray(w) + 0.25 * (i + 1) for i, w in enumerate(kl.get_weights())]
    kl.set_weights(kw)
    k_out, k_scores = kl(list(xs), mask=[qm, vm], return_attention_scores=True)
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in kw]
    ours.set_weights(kw)
    out, scores = ours(xs, mask=[qm, vm], return_attention_scores=True)
    k_out = keras.ops.convert_to_numpy(k_out)
    k_scores = keras.ops.convert_to_numpy(k_scores)
    assert k_out.dtype == np.float64 and k_scores.dtype == np.float64
    assert rel_error(out, k_out) < 1e-6
    assert rel_error(scores, k_scores) < 1e-6
    np.testing.assert_allclose(out, k_out, rtol=1e-6, atol=1e-12)
    # padded value positions get (numerically) zero weight, masked queries give zero output
    assert np.all(scores[1, :, 4:] < 1e-12)
    assert np.all(out[0, 3:] == 0)


def test_keras_parity_causal(float64, keras_f64_matmul):
    import keras

    xs = _data(B=2, Tq=5, Tv=5, D=3, seed=2)
    kl = keras.layers.Attention(use_scale=True, dtype="float64")
    k_out, k_sc = kl(list(xs), return_attention_scores=True, use_causal_mask=True)
    ours = Attention(use_scale=True)
    ours(xs)
    ours.set_weights(kl.get_weights())
    out, sc = ours(xs, return_attention_scores=True, use_causal_mask=True)
    assert rel_error(out, keras.ops.convert_to_numpy(k_out)) < 1e-6
    assert rel_error(sc, keras.ops.convert_to_numpy(k_sc)) < 1e-6
    assert np.allclose(np.triu(sc[0], 1), 0)


def test_keras_weight_names_and_shapes():
    a = Attention(use_scale=True, score_mode="concat")
    a(_data(D=4))
    assert list(a.params) == ["scale", "concat_score_weight"] and a.params["scale"].shape == ()
    b = AdditiveAttention()
    b(_data(D=4))
    assert list(b.params) == ["scale"] and b.params["scale"].shape == (4,)
    c = Attention()
    c(_data())
    assert c.params == {} and c.count_params() == 0
    g = Attention(score_mode="general")
    g(_data(D=4))
    assert list(g.params) == ["kernel"] and g.params["kernel"].shape == (4, 4)


def test_config_round_trip():
    for layer in (Attention(use_scale=True, score_mode="general", dropout=0.1), AdditiveAttention(use_scale=False)):
        cfg = layer.get_config()
        clone = type(layer).from_config(cfg)
        assert clone.get_config() == cfg


def test_float32_default_and_output_mask():
    layer = Attention()
    xs = [x.astype(np.float32) for x in _data()]
    out = layer(xs)
    assert out.dtype == np.float32
    qm, vm = _masks()
    assert np.array_equal(layer.compute_mask(xs, [qm, vm]), qm)
    assert layer.compute_mask(xs, None) is None


# ------------------------------------------------------------------------------------------- errors
def test_errors():
    q, v = _data()
    with pytest.raises(ValueError, match="list of inputs"):
        Attention()(q)
    with pytest.raises(ValueError, match="length 2 or 3"):
        Attention()([q])
    with pytest.raises(ValueError, match="score_mode"):
        Attention(score_mode="cosine")
    with pytest.raises(ValueError, match="same last dimension"):
        Attention()([q, np.zeros((2, 4, 6))])
    with pytest.raises(ValueError, match="same batch size"):
        Attention()([q, np.zeros((3, 4, 5))])
    with pytest.raises(ValueError, match="key and value"):
        Attention()([q, v, np.zeros((2, 5, 5))])
    with pytest.raises(ValueError, match="value_mask must have shape"):
        Attention()([q, v], mask=[None, np.ones((2, 3), bool)])
    with pytest.raises(ValueError, match="mask must be a list"):
        Attention()([q, v], mask=np.ones((2, 4), bool))
    with pytest.raises(ValueError, match="shape \\(batch, time, dim\\)"):
        Attention()([q[0], v[0]])
    layer = Attention(score_mode="general")
    layer([q, v])
    with pytest.raises(ValueError, match="built for query dim"):
        layer([np.zeros((2, 3, 2)), v])
    with pytest.raises(RuntimeError, match="without a preceding forward"):
        Attention().backward(np.zeros((2, 3, 5)))
    a = Attention()
    a([q, v])
    with pytest.raises(ValueError, match="gradient for the output must have shape"):
        a.backward(np.zeros((2, 3, 4)))
