"""Inputs that were silently accepted (issue 19): zero features are refused with a clear error at build time."""
from __future__ import annotations

import numpy as np
import pytest

import rnnlab

L = rnnlab.layers


@pytest.mark.parametrize("make", [lambda: L.LSTM(3), lambda: L.GRU(3), lambda: L.SimpleRNN(3),
                                  lambda: L.Bidirectional(L.LSTM(2)), lambda: L.Dense(2)])
def test_zero_features_are_refused(make):
    layer = make()
    x = np.ones((2, 4, 0), np.float32) if not isinstance(layer, L.Dense) else np.ones((2, 0), np.float32)
    with pytest.raises(ValueError, match=rf"Layer '{layer.name}' \({type(layer).__name__}\): the input has 0 "
                                         r"features \(shape \(None, .*0\)\); the last axis must be at least 1"):
        layer(x)
    assert not layer.built


def test_zero_features_in_a_declared_model_shape():
    with pytest.raises(ValueError, match=r"Layer 'lstm_in' \(LSTM\): the input has 0 features \(shape "
                                         r"\(None, 4, 0\)\)"):
        rnnlab.Sequential([L.LSTM(3, input_shape=(4, 0), name="lstm_in"), L.Dense(1)]).build()


def test_an_embedding_over_zero_time_steps_is_still_an_empty_result():
    out = L.Embedding(5, 2)(np.ones((3, 0), np.int64))     # its last axis is time, not features
    assert out.shape == (3, 0, 2)


@pytest.mark.parametrize("make,shape,expected", [
    (lambda: L.LSTM(3), (0, 4, 2), (0, 3)),
    (lambda: L.GRU(3, return_sequences=True), (0, 4, 2), (0, 4, 3)),
    (lambda: L.SimpleRNN(3), (0, 4, 2), (0, 3)),
    (lambda: L.Bidirectional(L.LSTM(2)), (0, 4, 2), (0, 4)),
    (lambda: L.Dense(2), (0, 3), (0, 2)),
    (lambda: L.TimeDistributed(L.Dense(2)), (0, 4, 3), (0, 4, 2)),
])
def test_a_zero_size_batch_gives_an_empty_result(make, shape, expected):
    layer = make()
    out = layer(np.ones(shape, np.float32))
    assert out.shape == expected and out.dtype == np.float32
    assert layer(np.ones((2,) + shape[1:], np.float32)).shape == (2,) + expected[1:]   # built as usual


def test_a_zero_size_batch_with_states_gives_empty_states():
    outs = L.LSTM(3, return_state=True)(np.ones((0, 4, 2), np.float32))
    assert [o.shape for o in outs] == [(0, 3)] * 3


def test_a_zero_size_batch_through_a_model_matches_the_layers():
    m = rnnlab.Sequential([L.LSTM(3, input_shape=(4, 2)), L.Dense(1)])
    assert m.predict(np.ones((0, 4, 2), np.float32)).shape == (0, 1)
    assert m.layers[0](np.ones((0, 4, 2), np.float32)).shape == (0, 3)


# ---- a time length other than the declared one is refused (Keras checks data against the input spec)
def _lstm_model():
    m = rnnlab.Sequential([L.LSTM(4, input_shape=(3, 5))], name="declared_seq")
    m.compile("sgd", "mse")
    return m


@pytest.mark.parametrize("call", ["fit", "predict", "evaluate", "train_on_batch", "test_on_batch", "predict_on_batch"])
def test_sequential_refuses_another_time_length(call):
    m = _lstm_model()
    x, y = np.zeros((2, 4, 5), np.float32), np.zeros((2, 4), np.float32)
    before = [w.copy() for w in m.get_weights()]
    args = {"fit": (x, y), "evaluate": (x, y), "train_on_batch": (x, y), "test_on_batch": (x, y)}.get(call, (x,))
    kw = {"verbose": 0} if call in ("fit", "predict", "evaluate") else {}
    with pytest.raises(ValueError, match=r"Sequential model 'declared_seq'.*declared input shape: expected "
                                         r"\(None, 3, 5\), got an array of shape \(2, 4, 5\)"):
        getattr(m, call)(*args, **kw)
    assert all(np.array_equal(a, b) for a, b in zip(before, m.get_weights()))
    assert m.predict(np.zeros((2, 3, 5), np.float32), verbose=0).shape == (2, 4)   # the declared T still works


def test_calling_a_declared_sequential_as_a_layer_stays_lenient():
    # Keras 3 checks the data given to fit/predict/...; a Sequential called on a tensor falls back to running
    # its layers one by one (rnnlab too: a nested Sequential gets a masked / cropped sequence legitimately)
    m = _lstm_model()
    assert m(np.zeros((2, 4, 5), np.float32)).shape == (2, 4)


def test_sequential_declared_by_input_and_after_a_config_round_trip():
    m = rnnlab.Sequential([rnnlab.Input((3, 5)), L.GRU(2)], name="by_input")
    with pytest.raises(ValueError, match=r"'by_input'.*expected \(None, 3, 5\), got an array of shape \(1, 6, 5\)"):
        m.predict(np.zeros((1, 6, 5)), verbose=0)
    for src in (m, _lstm_model()):
        clone = rnnlab.Sequential.from_config(src.get_config())
        with pytest.raises(ValueError, match=r"expected \(None, 3, 5\), got an array of shape \(1, 7, 5\)"):
            clone.predict(np.zeros((1, 7, 5)), verbose=0)


def test_unknown_time_stays_free_and_an_undeclared_model_is_not_pinned():
    m = rnnlab.Sequential([L.LSTM(2, input_shape=(None, 5))])
    assert m.predict(np.zeros((2, 3, 5)), verbose=0).shape == (2, 2)
    assert m.predict(np.zeros((2, 8, 5)), verbose=0).shape == (2, 2)
    with pytest.raises(ValueError, match=r"expected last dimension 5 .*found shape \(2, 3, 6\)"):  # the layer's check
        m.predict(np.zeros((2, 3, 6)), verbose=0)
    lazy = rnnlab.Sequential([L.LSTM(2)])          # built from the first data: later lengths stay free
    assert lazy.predict(np.zeros((2, 3, 5)), verbose=0).shape == (2, 2)
    assert lazy.predict(np.zeros((2, 9, 5)), verbose=0).shape == (2, 2)


def test_embedding_input_length_is_enforced():
    m = rnnlab.Sequential([L.Embedding(10, 4, input_length=3), L.LSTM(2)], name="emb_seq")
    with pytest.raises(ValueError, match=r"'emb_seq'.*expected \(None, 3\), got an array of shape \(2, 5\)"):
        m.predict(np.zeros((2, 5), np.int64), verbose=0)
    emb = L.Embedding(10, 4, input_length=3, name="emb_len")
    with pytest.raises(ValueError, match=r"Layer 'emb_len' \(Embedding\) was declared with input_length=3: expected "
                                         r"ids of shape \(batch, 3\), got shape \(2, 5\)"):
        emb(np.zeros((2, 5), np.int64))
    assert emb(np.zeros((2, 3), np.int64)).shape == (2, 3, 4)
    assert L.Embedding(10, 4)(np.zeros((2, 5), np.int64)).shape == (2, 5, 4)


def test_functional_input_refuses_another_time_length():
    inp = rnnlab.Input((3, 5), name="seq_in")
    m = rnnlab.Model(inp, L.LSTM(2)(inp), name="fn")
    m.compile("sgd", "mse")
    for f in (lambda: m.predict(np.zeros((2, 4, 5)), verbose=0),
              lambda: m.fit(np.zeros((2, 4, 5)), np.zeros((2, 2)), verbose=0),
              lambda: m.train_on_batch(np.zeros((2, 4, 5)), np.zeros((2, 2)))):
        with pytest.raises(ValueError, match=r"Model 'fn': input 'seq_in' expects shape \(None, 3, 5\), got array "
                                             r"of shape \(2, 4, 5\)"):
            f()
