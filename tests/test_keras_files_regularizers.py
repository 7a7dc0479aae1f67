""".keras archives with regularizers and constraints (L1, L2, L1L2; MaxNorm, NonNeg, ...): rnnlab writes them in
config.json the way Keras 3 does (module / class_name / config / registered_name), Keras loads them with the same
penalties, and rnnlab reads Keras-written ones back (rnnlab.models.keras_format)."""
import json
import os
import zipfile

import numpy as np
import pytest

import rnnlab
from rnnlab import constraints, regularizers
from rnnlab.layers import (GRU, LSTM, Bidirectional, Conv1D, Dense, Embedding, GlobalAveragePooling1D, SimpleRNN,
                           SpatialDropout1D, TimeDistributed)
from rnnlab.models.keras_format import KerasFormatError

pytest.importorskip("h5py")
keras = pytest.importorskip("keras")


def _penalty(model):
    return regularizers.weight_penalty(list(model.trainable_weight_refs()))


def _keras_penalty(km):
    return float(sum(float(keras.ops.convert_to_numpy(v)) for v in km.losses))


def _rnn_model(cls):
    m = rnnlab.Sequential([
        cls(4, input_shape=(5, 3), return_sequences=True, kernel_regularizer=regularizers.L1(0.01),
            recurrent_regularizer=regularizers.L2(0.02), bias_regularizer=regularizers.L1L2(0.001, 0.003),
            activity_regularizer="l2", kernel_constraint=constraints.MaxNorm(1.5), recurrent_constraint="unit_norm"),
        Dense(2, kernel_regularizer=regularizers.L1L2(l1=0.004, l2=0.005), bias_regularizer="l2",
              bias_constraint="non_neg")])
    m.build((None, 5, 3))
    for w in m.weights:      # non-zero biases, so the bias penalties count too
        w.assign(np.random.default_rng(0).standard_normal(w.shape).astype("float32") * 0.5)
    return m


@pytest.mark.parametrize("cls", [LSTM, GRU, SimpleRNN])
def test_written_regularizers_are_keras_config_and_load_in_keras(cls, tmp_path):
    m = _rnn_model(cls)
    path = os.fspath(tmp_path / "m.keras")
    m.save(path)
    cfg = json.loads(zipfile.ZipFile(path).read("config.json"))
    rnn_cfg, dense_cfg = (entry["config"] for entry in cfg["config"]["layers"][1:])
    assert rnn_cfg["kernel_regularizer"] == {"module": "keras.regularizers", "class_name": "L1",
                                             "config": {"l1": 0.01}, "registered_name": None}
    assert rnn_cfg["bias_regularizer"]["config"] == {"l1": 0.001, "l2": 0.003}
    assert rnn_cfg["kernel_constraint"] == {"module": "keras.constraints", "class_name": "MaxNorm",
                                            "config": {"max_value": 1.5, "axis": 0}, "registered_name": None}
    assert dense_cfg["bias_constraint"]["class_name"] == "NonNeg"

    km = keras.saving.load_model(path)
    k_rnn, k_dense = km.layers
    assert isinstance(k_rnn.kernel_regularizer, keras.regularizers.L1)
    assert isinstance(k_rnn.recurrent_regularizer, keras.regularizers.L2)
    assert isinstance(k_rnn.bias_regularizer, keras.regularizers.L1L2)
    # (Keras 3's SimpleRNN takes activity_regularizer but does not keep it, so Keras drops it; rnnlab keeps it)
    assert isinstance(k_rnn.activity_regularizer, keras.regularizers.L2) or cls is SimpleRNN
    assert isinstance(rnnlab.load_model(path).layers[0].activity_regularizer, regularizers.L2)
    assert isinstance(k_dense.kernel_regularizer, keras.regularizers.L1L2)
    assert k_dense.kernel_regularizer.get_config() == pytest.approx({"l1": 0.004, "l2": 0.005})
    k_cell = getattr(k_rnn, "cell", k_rnn)
    assert k_cell.kernel_constraint.get_config() == {"max_value": 1.5, "axis": 0}
    assert isinstance(k_cell.recurrent_constraint, keras.constraints.UnitNorm)
    assert isinstance(k_dense.bias_constraint, keras.constraints.NonNeg)
    # the same weight penalty in both libraries (all five regularized weights)
    assert _penalty(m) > 0
    np.testing.assert_allclose(_keras_penalty(km), _penalty(m), rtol=1e-5)
    x = np.random.default_rng(1).standard_normal((2, 5, 3)).astype("float32")
    np.testing.assert_allclose(km.predict(x, verbose=0), m.predict(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "SimpleRNN"])
def test_keras_written_regularizers_load_in_rnnlab(cls, tmp_path):
    K = keras.layers
    km = keras.Sequential([
        keras.Input((5, 3)),
        getattr(K, cls)(4, kernel_regularizer=keras.regularizers.L1(0.03), recurrent_regularizer="l2",
                        bias_regularizer=keras.regularizers.L1L2(0.002, 0.001), activity_regularizer="l1",
                        kernel_constraint=keras.constraints.MinMaxNorm(0.5, 1.5, rate=0.5),
                        bias_initializer="ones"),
        K.Dense(2, kernel_regularizer=keras.regularizers.L2(0.07), bias_constraint=keras.constraints.NonNeg())])
    path = os.fspath(tmp_path / "k.keras")
    km.save(path)
    m = rnnlab.load_model(path)
    rnn, dense = m.layers
    assert isinstance(rnn.kernel_regularizer, regularizers.L1)
    assert rnn.kernel_regularizer.l1 == pytest.approx(0.03)
    assert isinstance(rnn.recurrent_regularizer, regularizers.L2)
    assert isinstance(rnn.bias_regularizer, regularizers.L1L2)
    assert (rnn.bias_regularizer.l1, rnn.bias_regularizer.l2) == pytest.approx((0.002, 0.001))
    assert isinstance(rnn.activity_regularizer, regularizers.L1) or cls == "SimpleRNN"  # (Keras drops SimpleRNN's)
    assert isinstance(rnn.kernel_constraint, constraints.MinMaxNorm)
    assert rnn.kernel_constraint.get_config() == pytest.approx(
        {"min_value": 0.5, "max_value": 1.5, "rate": 0.5, "axis": 0})
    assert isinstance(dense.kernel_regularizer, regularizers.L2) and isinstance(dense.bias_constraint,
                                                                                constraints.NonNeg)
    np.testing.assert_allclose(_penalty(m), _keras_penalty(km), rtol=1e-5)
    # and back: rnnlab writes what it read, Keras reads it with the same penalty
    m.save(os.fspath(tmp_path / "again.keras"))
    np.testing.assert_allclose(_keras_penalty(keras.saving.load_model(os.fspath(tmp_path / "again.keras"))),
                               _penalty(m), rtol=1e-5)


def test_functional_model_and_embedding_conv_regularizers(tmp_path):
    ids = rnnlab.Input((6,), dtype="int32")
    x = Embedding(10, 4, embeddings_regularizer=regularizers.L2(0.1), embeddings_constraint="non_neg")(ids)
    x = Conv1D(3, 2, kernel_regularizer="l1", bias_constraint="max_norm")(x)
    out = Dense(1, kernel_regularizer=regularizers.L1L2(0.01, 0.01))(GlobalAveragePooling1D()(x))
    m = rnnlab.Model(ids, out)
    path = os.fspath(tmp_path / "f.keras")
    m.save(path)
    km = keras.saving.load_model(path)
    emb, conv = km.get_layer(m.layers[1].name), km.get_layer(m.layers[2].name)
    assert isinstance(emb.embeddings_regularizer, keras.regularizers.L2)
    assert isinstance(emb.embeddings_constraint, keras.constraints.NonNeg)
    assert isinstance(conv.kernel_regularizer, keras.regularizers.L1)
    assert isinstance(conv.bias_constraint, keras.constraints.MaxNorm)
    np.testing.assert_allclose(_keras_penalty(km), _penalty(m), rtol=1e-5)
    back = rnnlab.load_model(path)
    np.testing.assert_allclose(_penalty(back), _penalty(m), rtol=1e-6)


@pytest.mark.parametrize("layer, arg", [
    (lambda: Embedding(10, 4, input_length=6, kernel_regularizer="l2"), "kernel_regularizer"),
    (lambda: SpatialDropout1D(0.2, activity_regularizer="l2"), "activity_regularizer"),
])
def test_arguments_keras_has_not_are_refused(layer, arg, tmp_path):
    first = layer()
    m = rnnlab.Sequential([Embedding(10, 4, input_length=6), first] if isinstance(first, SpatialDropout1D)
                          else [first])
    m.build((None, 6))
    with pytest.raises(KerasFormatError, match=rf"Keras cannot express layer .*{arg}=.*e\.g\. '.*m\.npz'"):
        m.save(os.fspath(tmp_path / "m.keras"))
    assert not (tmp_path / "m.keras").exists()


def test_wrapped_layers_keep_theirs(tmp_path):
    """Bidirectional and TimeDistributed write their inner layers' regularizers and constraints too."""
    m = rnnlab.Sequential([
        Bidirectional(GRU(3, kernel_regularizer=regularizers.L2(0.05), return_sequences=True), input_shape=(4, 2)),
        TimeDistributed(Dense(2, bias_regularizer="l1", kernel_constraint="non_neg"))])
    m.build((None, 4, 2))
    for w in m.weights:
        w.assign(np.random.default_rng(0).standard_normal(w.shape).astype("float32"))
    path = os.fspath(tmp_path / "w.keras")
    m.save(path)
    km = keras.saving.load_model(path)
    assert isinstance(km.layers[0].forward_layer.kernel_regularizer, keras.regularizers.L2)
    assert isinstance(km.layers[1].layer.kernel_constraint, keras.constraints.NonNeg)
    np.testing.assert_allclose(_keras_penalty(km), _penalty(m), rtol=1e-6)
    back = rnnlab.load_model(path)
    assert isinstance(back.layers[1].layer.kernel_constraint, constraints.NonNeg)
    np.testing.assert_allclose(_penalty(back), _penalty(m), rtol=1e-7)
