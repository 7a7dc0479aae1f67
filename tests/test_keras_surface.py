"""The Keras surface tutorials touch: weights as objects, bool/0-1 one-hot inputs, namespaces."""
import numpy as np
import pytest

import rnnlab
from rnnlab.layers import LSTM, Bidirectional, Dense, Embedding
from rnnlab.variables import Variable


# ------------------------------------------------------------------ weights as objects
def _model():
    m = rnnlab.Sequential([Embedding(10, 4, input_length=5), Bidirectional(LSTM(3)), Dense(2)])
    m.build((None, 5))
    return m


def test_model_weights_are_variables_in_get_weights_order():
    m = _model()
    ws = m.weights
    assert all(isinstance(v, Variable) for v in ws)
    arrays = m.get_weights()
    assert len(ws) == len(arrays) == 1 + 6 + 2
    for v, a in zip(ws, arrays):
        assert v.shape == a.shape and v.dtype == str(a.dtype)
        np.testing.assert_array_equal(v.numpy(), a)
    assert [v.name for v in ws][:4] == ["embeddings", "kernel", "recurrent_kernel", "bias"]
    assert ws[0].path == f"{m.layers[0].name}/embeddings"
    assert ws[1].path.startswith(m.layers[1].name + "/")


def test_keras_order_matches_keras_get_weights_shapes():
    import keras
    km = keras.Sequential([keras.Input((5,)), keras.layers.Embedding(10, 4),
                           keras.layers.Bidirectional(keras.layers.LSTM(3)), keras.layers.Dense(2)])
    ours = _model()
    assert [v.shape for v in ours.weights] == [tuple(v.shape) for v in km.weights]
    assert [v.name for v in ours.weights] == [v.name for v in km.weights]


def test_trainable_and_non_trainable_split_follows_layer_trainable():
    m = _model()
    m.layers[0].trainable = False
    assert [v.name for v in m.non_trainable_weights] == ["embeddings"]
    assert len(m.trainable_weights) == 8 and all(v.trainable for v in m.trainable_weights)
    assert not m.weights[0].trainable
    assert m.layers[0].trainable_weights == [] and len(m.layers[0].non_trainable_weights) == 1


def test_variable_is_a_live_view_and_assign_writes_in_place():
    m = _model()
    dense = m.layers[-1]
    before = dense.params["kernel"]
    v = dense.kernel
    assert isinstance(v, Variable) and v.path == f"{dense.name}/kernel"
    v.assign(np.full(v.shape, 0.5))
    assert dense.params["kernel"] is before and np.all(before == 0.5)
    dense.params["kernel"][0, 0] = 7.0           # what an optimizer does
    assert v.numpy()[0, 0] == 7.0 and np.asarray(v)[0, 0] == 7.0
    out = v.numpy()
    out[...] = 0                                  # numpy() is a copy
    assert before[0, 0] == 7.0
    with pytest.raises(ValueError, match=r"assign expects shape \(6, 2\), got \(2, 6\)"):
        v.assign(np.zeros((2, 6)))
    with pytest.raises(TypeError, match="assign expects numbers"):
        v.assign(np.array([["a"] * 2] * 6))
    v.assign_add(np.ones(v.shape))
    assert before[0, 0] == 8.0


def test_assign_then_training_keeps_the_optimizer_working():
    m = rnnlab.Sequential([Dense(1, input_shape=(2,))])
    m.compile(optimizer="sgd", loss="mse")
    m.weights[0].assign(np.zeros((2, 1)))
    m.weights[1].assign(np.zeros(1))
    x = np.array([[1.0, 2.0]], "float32")
    m.train_on_batch(x, np.array([[1.0]], "float32"))
    # one SGD step on mse from zero weights: w = 0.01 * 2 * (1 - 0) * x
    np.testing.assert_allclose(m.weights[0].numpy()[:, 0], 0.02 * x[0], rtol=1e-6)


def test_layer_weight_attributes_and_unknown_attribute():
    emb = Embedding(10, 4)
    emb.build((None, 3))
    assert emb.embeddings.shape == (10, 4)
    lstm = LSTM(3)
    lstm.build((None, 5, 2))
    assert [lstm.kernel.shape, lstm.recurrent_kernel.shape, lstm.bias.shape] == [(2, 12), (3, 12), (12,)]
    with pytest.raises(AttributeError, match="has no attribute 'kernal'"):
        lstm.kernal


# ------------------------------------------------------------------ bool / 0-1 one-hot inputs
def test_bool_one_hot_is_cast_like_keras_for_dense():
    x = np.zeros((3, 5), dtype=bool)
    x[np.arange(3), [0, 2, 4]] = True
    d = Dense(2)
    np.testing.assert_allclose(d(x), d(x.astype("float32")))
    np.testing.assert_allclose(d(x.astype(np.int8)), d(x.astype("float32")))


def test_bool_one_hot_through_a_model_fit_predict():
    x = np.zeros((8, 6), dtype=bool)
    x[np.arange(8), np.arange(8) % 6] = True
    y = np.zeros((8, 3), dtype=bool)
    y[np.arange(8), np.arange(8) % 3] = True
    m = rnnlab.Sequential([Dense(3, activation="softmax", input_shape=(6,))])
    m.compile(optimizer="adam", loss="categorical_crossentropy")
    m.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_allclose(m.predict(x), m.predict(x.astype("float32")))


def test_string_input_error_says_what_to_do():
    d = Dense(2)
    with pytest.raises(TypeError, match=r"inputs must be numeric, got dtype <U1.*one-hot data may be bool or 0/1 "
                                         r"integers.*Embedding"):
        d(np.array([["a", "b"]]))
