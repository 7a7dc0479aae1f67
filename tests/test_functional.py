"""Functional API: symbolic tensors, Model(inputs, outputs), shared layers, fan-out, merge/reshaping layers.

Gradients are checked by finite differences in float64 (rnnlab.testing.check_layer_gradients), for every merge
layer and for whole graphs (a model is a layer: its backward is the chain rule over the graph)."""
import numpy as np
import pytest

import rnnlab
from rnnlab import layers as L
from rnnlab.testing import check_layer_gradients


@pytest.fixture
def f64():
    rnnlab.set_floatx("float64")
    yield
    rnnlab.set_floatx("float32")


def _rng(seed=0):
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------ symbolic tensors
def test_input_and_symbolic_shapes():
    x = rnnlab.Input((None,), dtype="int32", name="tokens")
    assert x.shape == (None, None) and x.dtype == "int32" and x.name == "tokens"
    e = L.Embedding(50, 8, mask_zero=True)(x)
    assert e.shape == (None, None, 8)
    seq, h, c = L.LSTM(6, return_sequences=True, return_state=True)(e)
    assert seq.shape == (None, None, 6) and h.shape == (None, 6) and c.shape == (None, 6)
    assert rnnlab.layers.Input is rnnlab.Input
    assert isinstance(x._keras_history[0], rnnlab.layers.InputLayer)
    with pytest.raises(TypeError, match="symbolic"):
        np.asarray(h)


def test_input_validation():
    with pytest.raises(TypeError, match="shape"):
        rnnlab.Input("abc")
    with pytest.raises(ValueError, match="sparse"):
        rnnlab.Input((3,), sparse=True)
    with pytest.raises(TypeError, match="dtype"):
        rnnlab.Input((3,), dtype="str")
    assert rnnlab.Input((3,), batch_size=4).shape == (4, 3)


def test_wrong_rank_or_size_fails_at_call_naming_layer_and_shapes():
    d = L.Dense(4, name="proj")
    d(rnnlab.Input((3,)))
    with pytest.raises(ValueError, match=r"proj.*\(None, 3\).*\(None, 5\)"):
        d(rnnlab.Input((5,)))
    with pytest.raises(ValueError, match="lstm_x.*ndim=3"):
        L.LSTM(3, name="lstm_x")(rnnlab.Input((4,)))


def test_sequential_accepts_functional_input():
    m = rnnlab.Sequential([rnnlab.Input((5, 2)), L.LSTM(3), L.Dense(1)])
    assert m.built and m.input_shape == (None, 5, 2)
    m2 = rnnlab.Sequential([rnnlab.Input((None,), batch_size=4, dtype="int32"), L.Embedding(9, 3)])
    assert m2.input_shape == (4, None) and m2._input_dtype == "int32"


def test_model_layers_order_and_attributes_like_keras_lstm_seq2seq():
    # the keras-io lstm_seq2seq graph: model.layers[2] is the encoder LSTM, [3] the decoder LSTM, [4] the Dense
    enc_in = rnnlab.Input((None, 7))
    _, h, c = L.LSTM(5, return_state=True)(enc_in)
    dec_in = rnnlab.Input((None, 9))
    dec_lstm = L.LSTM(5, return_sequences=True, return_state=True)
    dec_out, _, _ = dec_lstm(dec_in, initial_state=[h, c])
    dense = L.Dense(9, activation="softmax")
    out = dense(dec_out)
    model = rnnlab.Model([enc_in, dec_in], out)
    kinds = [type(l).__name__ for l in model.layers]
    assert kinds == ["InputLayer", "InputLayer", "LSTM", "LSTM", "Dense"]
    assert model.layers[0] is enc_in._keras_history[0] and model.layers[1] is dec_in._keras_history[0]
    assert model.layers[3] is dec_lstm and model.get_layer(index=4) is dense
    assert model.get_layer(name=dense.name) is dense
    assert model.input == [enc_in, dec_in] and model.inputs == [enc_in, dec_in] and model.output is out
    assert model.layers[2].output[1] is h and model.layers[2].input is enc_in
    assert dense.input is dec_out and dense.output is out
    with pytest.raises(ValueError, match="No such layer"):
        model.get_layer("nope")
    with pytest.raises(ValueError, match="never been called"):
        L.Dense(2).output


# ------------------------------------------------------------------------ running
def test_model_matches_layer_by_layer_numpy():
    rng = _rng()
    a, b = rnnlab.Input((4,)), rnnlab.Input((3,))
    d1, d2 = L.Dense(5, activation="tanh"), L.Dense(2)
    out = d2(L.Concatenate()([d1(a), b]))
    m = rnnlab.Model([a, b], out)
    xa, xb = rng.standard_normal((6, 4)), rng.standard_normal((6, 3))
    ref = d2(np.concatenate([d1(xa), xb.astype("float32")], axis=1))
    np.testing.assert_allclose(m([xa, xb]), ref, rtol=1e-6)
    np.testing.assert_allclose(m({a.name: xa, b.name: xb}), ref, rtol=1e-6)


def test_masks_travel_along_the_graph():
    x = rnnlab.Input((5,), dtype="int32")
    e = L.Embedding(10, 3, mask_zero=True)(x)
    rnn = L.GRU(4, return_sequences=True)
    s = rnn(e)
    pooled = L.GlobalAveragePooling1D()(s)
    m = rnnlab.Model(x, [s, pooled])
    ids = np.array([[1, 2, 3, 0, 0], [4, 5, 0, 0, 0]])
    seq, pool = m(ids)
    # the GRU skips masked steps and the pooling averages the valid steps only
    np.testing.assert_allclose(seq[1, :2], rnn(m.layers[1](ids[1:, :2]))[0], rtol=1e-5)
    np.testing.assert_allclose(pool[1], seq[1, :2].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(pool[0], seq[0, :3].mean(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(m._last_out_masks[0], ids != 0)


# ------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("cls,kw,n", [(L.Add, {}, 3), (L.Subtract, {}, 2), (L.Multiply, {}, 3), (L.Average, {}, 3),
                                      (L.Maximum, {}, 3), (L.Minimum, {}, 3), (L.Concatenate, {"axis": -1}, 3),
                                      (L.Concatenate, {"axis": 1}, 2)])
def test_merge_layer_gradients(f64, cls, kw, n):
    rng = _rng(1)
    xs = [rng.standard_normal((3, 4, 5)) for _ in range(n)]
    check_layer_gradients(cls(**kw), xs)


def test_elementwise_merge_broadcast_gradient(f64):
    rng = _rng(2)
    check_layer_gradients(L.Multiply(), [rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 1, 5))])
    check_layer_gradients(L.Add(), [rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 4, 1))])


@pytest.mark.parametrize("shapes,axes,normalize", [(((3, 5), (3, 5)), 1, False), (((3, 5), (3, 5)), 1, True),
                                                   (((3, 4, 5), (3, 6, 5)), 2, False),
                                                   (((3, 4, 5), (3, 6, 5)), 2, True),
                                                   (((3, 4, 5), (3, 5)), (2, 1), False),
                                                   (((3, 5, 4), (3, 5, 6)), 1, True)])
def test_dot_gradients_and_values(f64, shapes, axes, normalize):
    rng = _rng(3)
    xs = [rng.standard_normal(s) for s in shapes]
    layer = L.Dot(axes, normalize=normalize)
    y = layer(xs)
    a1, a2 = (axes, axes) if isinstance(axes, int) else axes
    x1, x2 = xs
    if normalize:
        x1 = x1 / np.linalg.norm(x1, axis=a1, keepdims=True)
        x2 = x2 / np.linalg.norm(x2, axis=a2, keepdims=True)
    ref = np.stack([np.tensordot(x1[i], x2[i], axes=(a1 - 1, a2 - 1)) for i in range(len(x1))])
    np.testing.assert_allclose(y, ref.reshape(y.shape), rtol=1e-10)
    check_layer_gradients(layer, xs)


def test_max_tie_splits_gradient_like_torch(f64):
    layer = L.Maximum()
    x = np.array([[1.0, 2.0]])
    y = layer([x, np.array([[1.0, 3.0]])])
    g = layer.backward(np.ones_like(y))
    np.testing.assert_allclose(g[0], [[0.5, 0.0]])
    np.testing.assert_allclose(g[1], [[0.5, 1.0]])


@pytest.mark.parametrize("layer,shape", [(lambda: L.Reshape((2, -1)), (3, 4, 3)), (lambda: L.Flatten(), (3, 4, 2)),
                                         (lambda: L.Permute((2, 1)), (3, 4, 5)),
                                         (lambda: L.Permute((3, 1, 2)), (2, 3, 4, 5))])
def test_reshaping_gradients(f64, layer, shape):
    check_layer_gradients(layer(), _rng(4).standard_normal(shape))


def test_reshaping_shapes():
    x = rnnlab.Input((4, 6))
    assert L.Reshape((3, 8))(x).shape == (None, 3, 8)
    assert L.Reshape((-1, 2))(x).shape == (None, 12, 2)
    assert L.Flatten()(x).shape == (None, 24)
    assert L.Permute((2, 1))(x).shape == (None, 6, 4)
    assert L.RepeatVector(3)(L.Flatten()(x)).shape == (None, 3, 24)
    with pytest.raises(ValueError, match="total size"):
        L.Reshape((5, 5))(x)
    with pytest.raises(ValueError, match="consecutive"):
        L.Permute((1, 3))


def test_whole_graph_gradient_with_fan_out_and_shared_dense(f64):
    rng = _rng(5)
    a, b = rnnlab.Input((4,)), rnnlab.Input((4,))
    shared = L.Dense(3, activation="tanh")
    ha, hb = shared(a), shared(b)
    both = L.Concatenate()([ha, hb, ha])           # ha used twice
    out1 = L.Dense(2)(both)
    out2 = L.Multiply()([ha, hb])
    m = rnnlab.Model([a, b], [out1, out2])
    check_layer_gradients(m, [rng.standard_normal((5, 4)), rng.standard_normal((5, 4))])


def test_siamese_shared_embedding_gru_gradient(f64):
    """One Embedding+GRU encoder applied to two inputs: one weight set, gradients summed over both calls."""
    rng = _rng(6)
    a, b = rnnlab.Input((5,), dtype="int32"), rnnlab.Input((5,), dtype="int32")
    emb, gru = L.Embedding(12, 4, mask_zero=True), L.GRU(3)
    ea, eb = gru(emb(a)), gru(emb(b))
    merged = L.Concatenate()([L.Subtract()([ea, eb]), L.Multiply()([ea, eb])])
    out = L.Dense(1, activation="sigmoid")(merged)
    m = rnnlab.Model([a, b], out)
    ia = rng.integers(1, 12, (4, 5))
    ib = rng.integers(1, 12, (4, 5))
    ia[0, 3:] = 0
    ib[1, 2:] = 0
    check_layer_gradients(m, [ia, ib])


def test_encoder_decoder_attention_gradient(f64):
    rng = _rng(7)
    src, tgt = rnnlab.Input((5,), dtype="int32"), rnnlab.Input((4,), dtype="int32")
    emb_s, emb_t = L.Embedding(10, 4, mask_zero=True), L.Embedding(9, 4)
    enc_seq, h, c = L.LSTM(3, return_sequences=True, return_state=True)(emb_s(src))
    dec_seq = L.LSTM(3, return_sequences=True)(emb_t(tgt), initial_state=[h, c])
    ctx = L.Attention()([dec_seq, enc_seq])
    hid = L.Dense(3, activation="tanh")(L.Concatenate()([ctx, dec_seq]))
    out = L.Dense(9, activation="softmax")(hid)
    m = rnnlab.Model([src, tgt], out)
    s = rng.integers(1, 10, (2, 5))
    s[0, 3:] = 0
    check_layer_gradients(m, [s, rng.integers(0, 9, (2, 4))])


def test_nested_model_called_twice_gradient(f64):
    rng = _rng(8)
    i = rnnlab.Input((3, 2))
    enc = rnnlab.Model(i, L.SimpleRNN(4)(i), name="encoder")
    a, b = rnnlab.Input((3, 2)), rnnlab.Input((3, 2))
    out = L.Dense(1)(L.Add()([enc(a), enc(b)]))
    m = rnnlab.Model([a, b], out)
    assert [type(l).__name__ for l in m.layers] == ["InputLayer", "InputLayer", "Model", "Add", "Dense"]
    check_layer_gradients(m, [rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 3, 2))])


def test_shared_layer_gradient_is_sum_over_calls(f64):
    rng = _rng(9)
    x = rnnlab.Input((3,))
    d = L.Dense(3, use_bias=False)
    m = rnnlab.Model(x, d(d(x)))
    xv = rng.standard_normal((4, 3))
    y = m(xv, training=True)
    g = rng.standard_normal(y.shape)
    m.input_grad_needed = False
    m.backward(g)
    m.input_grad_needed = True
    W = d.params["kernel"]
    h = xv @ W
    expected = xv.T @ (g @ W.T) + h.T @ g
    np.testing.assert_allclose(d.grads["kernel"], expected, rtol=1e-10)


# ------------------------------------------------------------------------ bad graphs
def test_outputs_not_depending_on_inputs():
    a, b = rnnlab.Input((3,), name="a"), rnnlab.Input((3,), name="b")
    y = L.Dense(2)(b)
    with pytest.raises(ValueError, match="graph disconnected.*name=b.*inputs \\['a'\\]"):
        rnnlab.Model(a, y)


def test_layer_called_on_different_batch_sizes():
    a, b = rnnlab.Input((3,), batch_size=4), rnnlab.Input((3,), batch_size=5)
    with pytest.raises(ValueError, match="different batch sizes"):
        L.Add(name="adder")([a, b])


def test_duplicate_layer_names():
    x = rnnlab.Input((3,))
    y = L.Dense(2, name="same")(L.Dense(3, name="same")(x))
    with pytest.raises(ValueError, match='"same" is used 2 times'):
        rnnlab.Model(x, y)


def test_cycle_is_reported():
    x = rnnlab.Input((3,))
    d1, d2 = L.Dense(3, name="d1"), L.Dense(3, name="d2")
    h = d1(x)
    y = d2(h)
    d1._inbound_nodes[0].parents = [y]        # a hand-edited graph: d1 now reads d2's output
    with pytest.raises(ValueError, match="cycle"):
        rnnlab.Model(x, y)


def test_mixed_symbolic_and_arrays_and_call_only_layer():
    with pytest.raises(TypeError, match="mix of symbolic"):
        L.Add()([rnnlab.Input((3,)), np.zeros((1, 3))])

    class KerasStyle(rnnlab.layers.Layer):
        def call(self, x):
            return x

    with pytest.raises(TypeError, match="forward.*backward.*check_layer_gradients"):
        KerasStyle()(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="check_layer_gradients"):
        KerasStyle()(rnnlab.Input((3,)))


def test_model_input_checks():
    a, b = rnnlab.Input((3,), name="a"), rnnlab.Input((2,), name="b")
    m = rnnlab.Model([a, b], L.Concatenate()([a, b]))
    with pytest.raises(ValueError, match="expects 2 input"):
        m([np.zeros((1, 3))])
    with pytest.raises(ValueError, match=r"keys \['c'\] name no input"):
        m({"a": np.zeros((1, 3)), "c": np.zeros((1, 2))})
    with pytest.raises(ValueError, match=r"missing input\(s\) \['b'\]"):
        m({"a": np.zeros((1, 3))})
    with pytest.raises(ValueError, match="input 'b' expects shape"):
        m([np.zeros((1, 3)), np.zeros((1, 4))])


# ------------------------------------------------------------------------ config, json, files, summary
def _attention_model():
    src, tgt = rnnlab.Input((None,), dtype="int32", name="src"), rnnlab.Input((None,), dtype="int32", name="tgt")
    enc_seq, h, c = L.LSTM(5, return_sequences=True, return_state=True)(L.Embedding(11, 4, mask_zero=True)(src))
    dec_seq = L.LSTM(5, return_sequences=True)(L.Embedding(9, 4)(tgt), initial_state=[h, c])
    ctx = L.Attention()([dec_seq, enc_seq])
    hid = L.Dense(5, activation="tanh")(L.Concatenate()([ctx, dec_seq]))
    return rnnlab.Model([src, tgt], L.Dense(9, activation="softmax", name="probs")(hid), name="luong")


def _ids(seed=0):
    rng = _rng(seed)
    s = rng.integers(1, 11, (3, 6))
    s[0, 4:] = 0
    return [s, rng.integers(0, 9, (3, 5))]


def test_get_config_from_config_and_json_round_trip():
    m = _attention_model()
    m2 = rnnlab.Model.from_config(m.get_config())
    assert [type(l).__name__ for l in m2.layers] == [type(l).__name__ for l in m.layers]
    assert [l.name for l in m2.layers] == [l.name for l in m.layers]
    m2.set_weights(m.get_weights())
    np.testing.assert_allclose(m2.predict(_ids()), m.predict(_ids()), rtol=1e-6)
    m3 = rnnlab.models.model_from_json(m.to_json())
    assert m3.get_config() == m.get_config()
    seq = rnnlab.Sequential([rnnlab.Input((4,)), L.Dense(3)])
    assert rnnlab.models.model_from_json(seq.to_json()).get_config() == seq.get_config()


def test_shared_layer_and_nested_model_config_round_trip():
    i = rnnlab.Input((3, 2))
    enc = rnnlab.Model(i, L.SimpleRNN(4)(i), name="encoder")
    a, b = rnnlab.Input((3, 2)), rnnlab.Input((3, 2))
    d = L.Dense(2)
    out = L.Add()([d(enc(a)), d(enc(b))])
    m = rnnlab.Model([a, b], out)
    m2 = rnnlab.Model.from_config(m.get_config())
    m2.set_weights(m.get_weights())
    x = [_rng(1).standard_normal((2, 3, 2)), _rng(2).standard_normal((2, 3, 2))]
    np.testing.assert_allclose(m2.predict(x), m.predict(x), rtol=1e-6)


def test_save_and_load_model_functional(tmp_path):
    m = _attention_model()
    m.compile("adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = _ids()
    y = _rng(3).integers(0, 9, (3, 5))
    m.fit(x, y, epochs=2, verbose=0)
    m.save(tmp_path / "m.npz")
    m2 = rnnlab.load_model(tmp_path / "m.npz")
    assert isinstance(m2, rnnlab.Model) and m2.name == "luong"
    np.testing.assert_allclose(m2.predict(x), m.predict(x), rtol=1e-6)
    np.testing.assert_allclose(m2.evaluate(x, y), m.evaluate(x, y), rtol=1e-6)
    # the optimizer state came back: one more step gives the same weights
    m.train_on_batch(x, y)
    m2.train_on_batch(x, y)
    for a, b in zip(m.get_weights(), m2.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    m.save_weights(tmp_path / "w.npz")
    m3 = _attention_model()
    m3.load_weights(tmp_path / "w.npz")
    np.testing.assert_allclose(m3.predict(x), m.predict(x), rtol=1e-6)


def test_summary_connected_to_and_counts():
    m = _attention_model()
    lines = []
    m.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Connected to" in text and "Param #" in text
    assert "src[0][0]" in text and "lstm[0][1], lstm[0][2]" in text
    total = sum(int(np.prod(w.shape)) for w in m.get_weights())
    assert f"Total params: {total:,}" in text
    # LSTM(5) on 4 features: 4 * 5 * (4 + 5 + 1) = 200 (Keras' count)
    assert any(l.startswith("lstm (LSTM)") and l.split()[-2].rstrip(",") for l in lines)
    assert any("lstm (LSTM)" in l and " 200 " in l for l in lines)


def test_prebuilt_embedding_called_on_input_keras_io_idiom():
    """keras-io pretrained_word_embeddings: Embedding.build((1,)) + set_weights, then called on Input((None,))."""
    emb = L.Embedding(20, 4, trainable=False)
    emb.build((1,))
    matrix = _rng(4).standard_normal((20, 4)).astype("float32")
    emb.set_weights([matrix])
    x = rnnlab.Input((None,), dtype="int64")
    y = L.Dense(1)(L.GlobalMaxPooling1D()(emb(x)))
    m = rnnlab.Model(x, y)
    lines = []
    m.summary(print_fn=lines.append)
    assert any("Non-trainable params: 80" in l for l in lines)
    ids = np.array([[1, 2, 3]])
    np.testing.assert_allclose(m.layers[1](ids), matrix[ids], rtol=1e-6)
    with pytest.raises(ValueError, match=r"dense_x.*built for input shape \(None, 3\).*\(None, 5\)"):
        d = L.Dense(2, name="dense_x")
        d(rnnlab.Input((3,)))
        d(rnnlab.Input((5,)))


def test_keras_docstring_golden_values():
    # keras.layers.Dot docstring: x (1, 5, 2), y (1, 2, 5), axes=(1, 2)
    x = np.arange(10, dtype="float32").reshape(1, 5, 2)
    y = np.arange(10, 20, dtype="float32").reshape(1, 2, 5)
    np.testing.assert_array_equal(L.Dot(axes=(1, 2))([x, y]), [[[260, 360], [320, 445]]])
    # keras.layers.Concatenate docstring: (2, 2, 5) and (2, 1, 5) along axis 1
    a = np.arange(20, dtype="float32").reshape(2, 2, 5)
    b = np.arange(20, 30, dtype="float32").reshape(2, 1, 5)
    out = L.Concatenate(axis=1)([a, b])
    np.testing.assert_array_equal(out, [[[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [20, 21, 22, 23, 24]],
                                        [[10, 11, 12, 13, 14], [15, 16, 17, 18, 19], [25, 26, 27, 28, 29]]])


def test_default_layer_names_follow_keras():
    names = [L.GlobalAveragePooling1D().name, L.SimpleRNN(2).name, L.TimeDistributed(L.Dense(2)).name,
             rnnlab.Input((3,))._keras_history[0].name]
    assert names == ["global_average_pooling1d", "simple_rnn", "time_distributed", "input_layer"]
