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
