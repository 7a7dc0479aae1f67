"""Embedding: forward/gradient vs torch, equivalence with one-hot @ Dense, sparse gradient, masks, errors."""
import numpy as np
import pytest
import torch

import rnnlab
from rnnlab.backend import RowSparseGrad
from rnnlab.layers import Dense, Embedding
from rnnlab.testing import check_layer_gradients, rel_error


def _ids(gen, shape, v):
    return gen.integers(0, v, size=shape)


def test_shapes_weights_and_tutorial_example():
    emb = Embedding(input_dim=64, output_dim=100)
    out = emb(np.array([[1, 2, 3]]))
    assert out.shape == (1, 3, 100) and out.dtype == np.float32
    assert [w.shape for w in emb.get_weights()] == [(64, 100)]
    assert emb.count_params() == 6400
    assert np.abs(emb.params["embeddings"]).max() <= 0.05  # Keras "uniform": U(-0.05, 0.05)
    assert emb.compute_output_shape((None, 7)) == (None, 7, 100)
    # Keras 2 input_length means input shape (input_length,)
    assert Embedding(10, 4, input_length=12).batch_input_shape == (None, 12)
    # any number of leading axes
    assert Embedding(10, 4)(np.zeros((2, 3, 5), np.int64)).shape == (2, 3, 5, 4)


def test_forward_and_weight_gradient_match_torch(float64):
    gen = np.random.default_rng(0)
    emb = Embedding(20, 6)
    ids = _ids(gen, (4, 9), 20)
    ids[0, :4] = 3  # repeated ids must be summed
    out = emb(ids, training=True)
    g = gen.standard_normal(out.shape)
    assert emb.backward(g) is None
    temb = torch.nn.Embedding(20, 6).double()
    with torch.no_grad():
        temb.weight.copy_(torch.tensor(emb.params["embeddings"]))
    tout = temb(torch.tensor(ids))
    tout.backward(torch.tensor(g))
    assert rel_error(out, tout.detach().numpy()) < 1e-12
    sg = emb.grads["embeddings"]
    assert isinstance(sg, RowSparseGrad)
    assert np.array_equal(sg.indices, np.unique(ids))
    assert rel_error(sg.to_dense(), temb.weight.grad.numpy()) < 1e-12


def test_equals_one_hot_times_bias_free_dense(float64):
    gen = np.random.default_rng(1)
    v, e = 11, 5
    emb = Embedding(v, e)
    dense = Dense(e, use_bias=False)
    ids = _ids(gen, (3, 7), v)
    onehot = np.eye(v)[ids]
    dense(onehot)
    emb(ids)
    dense.set_weights([emb.params["embeddings"].copy()])
    y_emb = emb(ids, training=True)
    y_dense = dense(onehot, training=True)
    np.testing.assert_allclose(y_emb, y_dense, rtol=1e-12, atol=1e-14)
    g = gen.standard_normal(y_emb.shape)
    emb.backward(g)
    dense.backward(g)
    np.testing.assert_allclose(emb.grads["embeddings"].to_dense(), dense.grads["kernel"], rtol=1e-12, atol=1e-13)


def test_finite_difference_gradient_check(float64):
    gen = np.random.default_rng(2)
    emb = Embedding(9, 4, embeddings_initializer="random_normal")
    ids = _ids(gen, (3, 5), 9)
    ids[1, :] = 2
    errs = check_layer_gradients(emb, ids)
    assert errs and all(err < 1e-8 for err in errs.values())


def test_mask_zero_mask_and_config_round_trip():
    emb = Embedding(10, 3, mask_zero=True, name="emb")
    ids = np.array([[5, 2, 0, 0], [1, 0, 0, 0]])
    emb(ids)
    np.testing.assert_array_equal(emb.compute_mask(ids), ids != 0)
    assert Embedding(10, 3).compute_mask(ids) is None
    cfg = emb.get_config()
    import json
    back = Embedding(**json.loads(json.dumps(cfg)))
    assert back.mask_zero and back.input_dim == 10 and back.output_dim == 3 and back.name == "emb"
    assert rnnlab.layers.get_layer_class("Embedding") is Embedding


def test_weights_argument_and_set_weights():
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    emb = Embedding(4, 3, weights=[w])
    np.testing.assert_array_equal(emb(np.array([[3, 0]]))[0], w[[3, 0]])
    with pytest.raises(ValueError, match=r"expects shape \(4, 3\), got \(3, 3\)"):
        emb.set_weights([np.zeros((3, 3))])


def test_validation_errors():
    emb = Embedding(10, 3)
    with pytest.raises(ValueError, match=r"id 10 is out of range \[0, 10\).*input_dim=10"):
        emb(np.array([[1, 10]]))
    with pytest.raises(ValueError, match=r"id -2 is out of range"):
        emb(np.array([[1, -2]]))
    with pytest.raises(TypeError, match="expects integer token ids, got dtype float64"):
        emb(np.array([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="input_dim must be a positive int, got 0"):
        Embedding(0, 3)
    with pytest.raises(ValueError, match="output_dim must be a positive int"):
        Embedding(5, 2.5)
    emb(np.array([[1, 2]]), training=True)
    with pytest.raises(ValueError, match=r"gradient of shape \(1, 2, 3\), got \(1, 2, 4\)"):
        emb.backward(np.zeros((1, 2, 4), np.float32))


def test_gradient_is_compact_for_large_vocabulary():
    gen = np.random.default_rng(3)
    emb = Embedding(50000, 16)
    ids = _ids(gen, (8, 20), 300)
    emb(ids, training=True)
    emb.backward(np.ones((8, 20, 16), np.float32))
    sg = emb.grads["embeddings"]
    assert sg.values.shape == (len(np.unique(ids)), 16) and sg.values.dtype == np.float32
    counts = np.bincount(ids.reshape(-1), minlength=50000)[sg.indices]
    np.testing.assert_array_equal(sg.values[:, 0], counts.astype(np.float32))


def test_matches_keras_embedding_output_and_mask(float64):
    import keras
    gen = np.random.default_rng(5)
    ours = Embedding(12, 4, mask_zero=True)
    ids = _ids(gen, (3, 6), 12)
    ids[0, 4:] = 0
    y = ours(ids)
    kemb = keras.layers.Embedding(12, 4, mask_zero=True, dtype="float64")
    kemb.build((None, 6))
    kemb.set_weights(ours.get_weights())
    assert [w.shape for w in kemb.get_weights()] == [w.shape for w in ours.get_weights()]
    assert rel_error(y, keras.ops.convert_to_numpy(kemb(ids))) < 1e-12
    np.testing.assert_array_equal(ours.compute_mask(ids), keras.ops.convert_to_numpy(kemb.compute_mask(ids)))
