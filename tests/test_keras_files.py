"""Files that are what their names say: .keras / .weights.h5 written by rnnlab load in Keras 3 (and back),
.h5 refused with a clear error, other suffixes keep rnnlab's npz (rnnlab.models.keras_format)."""
import os
import sys
import zipfile

import numpy as np
import pytest

import rnnlab
from rnnlab.callbacks import ModelCheckpoint
from rnnlab.layers import (GRU, LSTM, Bidirectional, Conv1D, Dense, Dropout, Embedding, GlobalAveragePooling1D,
                           LayerNormalization, MaxPooling1D, SimpleRNN, TimeDistributed)
from rnnlab.models.keras_format import KerasFormatError

pytest.importorskip("h5py")
keras = pytest.importorskip("keras")

IDS = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 9], [9, 8, 1, 1, 0, 0]])


def _text_model():
    m = rnnlab.Sequential([Embedding(10, 4, mask_zero=True, input_length=6),
                           Bidirectional(GRU(3, return_sequences=True)), Dropout(0.1),
                           TimeDistributed(Dense(2)), LSTM(2), Dense(1, activation="sigmoid")])
    m.build((None, 6))
    return m


def _float_model():
    m = rnnlab.Sequential([SimpleRNN(4, return_sequences=True, input_shape=(6, 3)),
                           GRU(3, reset_after=False, return_sequences=True), Dense(2, activation="tanh")])
    m.build((None, 6, 3))
    return m


def _conv_model():
    m = rnnlab.Sequential([Embedding(10, 4, input_length=6), Conv1D(5, 3, padding="same", activation="relu"),
                           MaxPooling1D(2), LayerNormalization(), GlobalAveragePooling1D(), Dense(3)])
    m.build((None, 6))
    return m


def _bn_model():
    from rnnlab.layers import AveragePooling1D, BatchNormalization, SpatialDropout1D
    m = rnnlab.Sequential([Conv1D(4, 3, padding="causal", dilation_rate=2, input_shape=(6, 3)), BatchNormalization(),
                           SpatialDropout1D(0.2), AveragePooling1D(2), GRU(3), Dense(2)])
    m.compile(optimizer="adam", loss="mse")      # a little training moves the BatchNormalization statistics
    x = np.random.default_rng(0).normal(size=(3, 6, 3))
    m.fit(x, np.zeros((3, 2)), epochs=2, verbose=0)
    return m


def _input(m):
    if m.layers[0].__class__.__name__ == "Embedding":
        return IDS
    return np.random.default_rng(0).normal(size=(3, 6, 3))


def _kpredict(km, x):
    return np.asarray(km.predict(x, verbose=0))


def _rel(a, b):
    """max |a - b| / max |b| (the measure of the Keras parity tests, test_keras_weights.py)"""
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12)


@pytest.mark.parametrize("make", [_text_model, _float_model, _conv_model, _bn_model])
def test_keras_loads_rnnlab_keras_archive_and_predicts_the_same(tmp_path, float64, make):
    keras.backend.set_floatx("float64")
    try:
        m = make()
        x = _input(m)
        m.save(tmp_path / "m.keras")
        with zipfile.ZipFile(tmp_path / "m.keras") as z:
            assert sorted(z.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        km = keras.saving.load_model(tmp_path / "m.keras")
        assert [type(l).__name__ for l in km.layers] == [type(l).__name__ for l in m.layers]
        for a, b in zip(m.get_weights(), km.get_weights()):     # every weight arrives exactly
            np.testing.assert_array_equal(a, keras.ops.convert_to_numpy(b))
        assert _rel(m.predict(x), _kpredict(km, x)) < 1e-6
        # and the rnnlab reader gives the same model back
        back = rnnlab.saving.load_model(tmp_path / "m.keras")
        np.testing.assert_array_equal(back.predict(x), m.predict(x))
    finally:
        keras.backend.set_floatx("float32")


@pytest.mark.parametrize("make", [_text_model, _float_model])
def test_keras_loads_rnnlab_weights_h5(tmp_path, make):
    m = make()
    x = _input(m)
    m.save_weights(tmp_path / "m.weights.h5")
    m.save(tmp_path / "arch.keras")
    km = keras.saving.load_model(tmp_path / "arch.keras")
    for w in km.weights:                      # scramble, then load the weights file
        w.assign(np.zeros(w.shape))
    km.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_allclose(_kpredict(km, x), m.predict(x), rtol=1e-5, atol=1e-6)
    fresh = make()
    fresh.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_array_equal(fresh.predict(x), m.predict(x))


def test_keras_written_keras_file_loads_in_rnnlab(tmp_path):
    km = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(10, 4, mask_zero=True),
                           keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True)),
                           keras.layers.GRU(2), keras.layers.Dense(2, activation="softmax")])
    km.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    km.save(tmp_path / "k.keras")
    m = rnnlab.saving.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(m.predict(IDS), _kpredict(km, IDS), rtol=1e-5, atol=1e-6)
    assert m.layers[0].mask_zero


def test_compile_settings_survive_rnnlab_keras_round_trip(tmp_path):
    m = _float_model()
    m.compile(optimizer=rnnlab.optimizers.RMSprop(0.01), loss="mse", metrics=["mae"])
    m.save(tmp_path / "c.keras")
    back = rnnlab.saving.load_model(tmp_path / "c.keras")
    assert isinstance(back.optimizer, rnnlab.optimizers.RMSprop) and back.optimizer.learning_rate == 0.01
    assert back.compiled
    assert not rnnlab.saving.load_model(tmp_path / "c.keras", compile=False).compiled


def test_other_suffixes_keep_rnnlab_npz(tmp_path):
    m = _float_model()
    x = _input(m)
    for name in ("m.npz", "m.bin", "model"):
        m.save(tmp_path / name)
        with open(tmp_path / name, "rb") as f:
            assert f.read(2) == b"PK"          # a zip (npz), not HDF5
        np.testing.assert_array_equal(rnnlab.saving.load_model(tmp_path / name).predict(x), m.predict(x))
    m.save_weights(tmp_path / "w.npz")
    fresh = _float_model()
    fresh.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(fresh.predict(x), m.predict(x))


@pytest.mark.parametrize("call,name,match", [
    (lambda m, p: m.save(p), "m.h5", r"legacy HDF5 format.*'\.keras'.*'\.weights\.h5'.*m\.npz"),
    (lambda m, p: m.save(p), "m.hdf5", r"legacy HDF5 format"),
    (lambda m, p: m.save_weights(p), "m.h5", r"legacy HDF5 format.*m\.npz"),
    (lambda m, p: m.save(p), "m.weights.h5", r"weights-only file; use model.save_weights"),
    (lambda m, p: m.save_weights(p), "m.keras", r"whole-model archive; use model.save"),
    (lambda m, p: m.load_weights(p), "m.h5", r"legacy HDF5 format.*does not read"),
    (lambda m, p: rnnlab.saving.load_model(p), "m.hdf5", r"legacy HDF5 format"),
])
def test_misleading_names_are_refused_and_nothing_is_written(tmp_path, call, name, match):
    m = _float_model()
    with pytest.raises(KerasFormatError if "load_weights" not in match else ValueError, match=match):
        call(m, tmp_path / name)
    assert not os.path.exists(tmp_path / name)


def test_without_h5py_keras_names_are_refused_offering_npz(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    m = _float_model()
    with pytest.raises(KerasFormatError, match=r"needs h5py.*e\.g\. '.*m\.npz'"):
        m.save(tmp_path / "m.keras")
    with pytest.raises(KerasFormatError, match="needs h5py"):
        m.save_weights(tmp_path / "m.weights.h5")
    assert os.listdir(tmp_path) == []
    m.save(tmp_path / "m.npz")                 # the offered alternative works


def test_model_keras_cannot_express_is_refused(tmp_path):
    from rnnlab.layers import TiedDense, TiedEmbedding
    emb = TiedEmbedding(10, 4, input_length=6)
    m = rnnlab.Sequential([emb, LSTM(4, return_sequences=True), TiedDense(emb.name, units=10)])
    m.build((None, 6))
    with pytest.raises(KerasFormatError, match=r"Keras cannot express layer .*TiedEmbedding.*e\.g\. '.*t\.npz'"):
        m.save(tmp_path / "t.keras")
    assert not os.path.exists(tmp_path / "t.keras")
    with pytest.raises(KerasFormatError, match="not supported"):
        rnnlab.models.keras_format.save(rnnlab.models.EchoStateNetwork(units=4), tmp_path / "e.keras")
    assert os.listdir(tmp_path) == []


def test_model_checkpoint_follows_the_suffix_rules(tmp_path):
    m = _float_model()
    m.compile(optimizer="sgd", loss="mse")
    x = _input(m).astype("float32")
    y = np.zeros((3, 6, 2), "float32")
    m.fit(x, y, epochs=2, verbose=0, callbacks=[ModelCheckpoint(str(tmp_path / "best.keras"), monitor="loss"),
                                                ModelCheckpoint(str(tmp_path / "w.weights.h5"), monitor="loss",
                                                                save_weights_only=True)])
    km = keras.saving.load_model(tmp_path / "best.keras")
    np.testing.assert_allclose(_kpredict(km, x), m.predict(x), rtol=1e-5, atol=1e-6)
    km.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_allclose(_kpredict(km, x), m.predict(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(KerasFormatError, match="legacy HDF5"):
        m.fit(x, y, epochs=1, verbose=0, callbacks=[ModelCheckpoint(str(tmp_path / "best.h5"), monitor="loss")])
    assert not os.path.exists(tmp_path / "best.h5")


def test_saving_namespace_functions(tmp_path):
    m = _float_model()
    rnnlab.saving.save_model(m, tmp_path / "s.keras")
    with pytest.raises(FileExistsError, match="overwrite=False"):
        rnnlab.saving.save_model(m, tmp_path / "s.keras", overwrite=False)
    with pytest.raises(ValueError, match="holds weights only"):
        rnnlab.saving.load_model(tmp_path / "x.weights.h5")
    with pytest.raises(ValueError, match="custom_objects are not used"):
        rnnlab.saving.load_model(tmp_path / "s.keras", custom_objects={"X": object})


def _seq2seq_functional():
    enc_in = rnnlab.Input((5,), dtype="int32")
    dec_in = rnnlab.Input((4, 3))
    e = Embedding(10, 4, mask_zero=True)(enc_in)
    _, h, c = LSTM(6, return_state=True)(e)
    d = LSTM(6, return_sequences=True)(dec_in, initial_state=[h, c])
    a = Dense(3, activation="tanh")(d)
    b = Dense(3)(dec_in)
    out = TimeDistributed(Dense(2, activation="softmax"))(rnnlab.layers.Concatenate()([a, b]))
    return rnnlab.Model([enc_in, dec_in], out)


def test_functional_model_keras_archive_both_ways(tmp_path, float64):
    keras.backend.set_floatx("float64")
    try:
        m = _seq2seq_functional()
        xs = [IDS[:, :5], np.random.default_rng(3).normal(size=(3, 4, 3))]
        rnnlab.models.keras_format.save(m, tmp_path / "f.keras")   # what Model.save should delegate to
        km = keras.saving.load_model(tmp_path / "f.keras")
        for a, b in zip(m.get_weights(), km.get_weights()):
            np.testing.assert_array_equal(a, keras.ops.convert_to_numpy(b))
        assert _rel(m.predict(xs), _kpredict(km, xs)) < 1e-6
        back = rnnlab.saving.load_model(tmp_path / "f.keras")
        np.testing.assert_array_equal(back.predict(xs), m.predict(xs))
        km.save(tmp_path / "k.keras")               # and a functional model written by Keras itself
        again = rnnlab.saving.load_model(tmp_path / "k.keras")
        assert _rel(again.predict(xs), _kpredict(km, xs)) < 1e-6
        rnnlab.models.keras_format.save_weights(m, tmp_path / "f.weights.h5")
        km2 = keras.saving.load_model(tmp_path / "f.keras")
        km2.load_weights(tmp_path / "f.weights.h5")
        assert _rel(m.predict(xs), _kpredict(km2, xs)) < 1e-6
    finally:
        keras.backend.set_floatx("float32")


def test_top_level_load_model_reads_keras_archives(tmp_path):
    m = _float_model()
    m.save(tmp_path / "m.keras")
    x = _input(m)
    for load in (rnnlab.load_model, rnnlab.models.load_model, rnnlab.saving.load_model):
        np.testing.assert_array_equal(load(tmp_path / "m.keras").predict(x), m.predict(x))
    with pytest.raises(KerasFormatError, match="legacy HDF5"):
        rnnlab.load_model(tmp_path / "m.h5")


def test_every_supported_layer_config_deserializes_in_keras():
    """Each layer class rnnlab writes to config.json is rebuilt by keras.layers.deserialize with the same config."""
    from rnnlab.layers import (Activation, Add, Average, AveragePooling1D, BatchNormalization, Concatenate, Dot,
                               Flatten, GlobalMaxPooling1D, Masking, Maximum, Minimum, Multiply, Permute,
                               RepeatVector, Reshape, SpatialDropout1D, Subtract)
    from rnnlab.models.keras_format import KERAS_ARGS, _layer_config
    layers = [Dense(2, activation="relu"), Embedding(5, 2, mask_zero=True), SimpleRNN(2, go_backwards=True),
              LSTM(2, return_sequences=True, unit_forget_bias=False), GRU(2, reset_after=False), Dropout(0.1),
              SpatialDropout1D(0.1), Activation("tanh"), Masking(1.0), RepeatVector(2), Flatten(), Reshape((2, 2)),
              Permute((2, 1)), GlobalAveragePooling1D(), GlobalMaxPooling1D(keepdims=True), MaxPooling1D(2),
              AveragePooling1D(3, strides=1, padding="same"), Conv1D(2, 3, padding="causal", dilation_rate=2),
              BatchNormalization(momentum=0.9), LayerNormalization(epsilon=1e-5), Bidirectional(LSTM(2)),
              TimeDistributed(Dense(2)), Add(), Subtract(), Multiply(), Average(), Maximum(), Minimum(),
              Concatenate(axis=1), Dot(axes=1)]
    assert {type(l).__name__ for l in layers} == set(KERAS_ARGS)
    for layer in layers:
        entry = _layer_config(layer, "x.keras")
        klayer = keras.layers.deserialize(entry)
        kcfg = klayer.get_config()
        assert type(klayer).__name__ == type(layer).__name__
        for k, v in entry["config"].items():
            if k in ("layer", "backward_layer") or k.endswith("initializer"):
                continue
            if k == "dtype":
                assert klayer.dtype == v
                continue
            want = list(v) if isinstance(v, tuple) else v
            if k == "data_format" and want is None:
                want = "channels_last"            # Keras' default for None
            got = list(kcfg[k]) if isinstance(kcfg[k], tuple) else kcfg[k]
            if isinstance(got, list) and len(got) == 1 and not isinstance(want, list):
                got = got[0]                      # Keras stores 1-D sizes as 1-tuples
            assert got == want, (type(layer).__name__, k, got, want)


def test_keras_written_archive_with_many_layer_types_loads_in_rnnlab(tmp_path):
    L = keras.layers
    km = keras.Sequential([keras.Input((8, 3)), L.Masking(0.0), L.Conv1D(4, 3, padding="same", activation="relu"),
                           L.BatchNormalization(), L.SpatialDropout1D(0.1), L.MaxPooling1D(2),
                           L.Bidirectional(L.GRU(3, reset_after=False, return_sequences=True), merge_mode="sum"),
                           L.TimeDistributed(L.Dense(2)), L.LayerNormalization(), L.SimpleRNN(2),
                           L.Dropout(0.2), L.Dense(1, activation="sigmoid")])
    g = np.random.default_rng(4)
    for w in km.weights:
        w.assign(g.normal(scale=0.5, size=w.shape))
    km.layers[2].moving_variance.assign(np.abs(g.normal(size=4)) + 0.5)
    km.save(tmp_path / "k.keras")
    x = g.normal(size=(4, 8, 3)).astype("float32")
    m = rnnlab.saving.load_model(tmp_path / "k.keras")
    assert [type(l).__name__ for l in m.layers] == [type(l).__name__ for l in km.layers]
    assert _rel(m.predict(x), _kpredict(km, x)) < 1e-5          # float32 in both


def test_bad_keras_archives_are_clear_errors(tmp_path):
    def archive(name, **members):
        with zipfile.ZipFile(tmp_path / name, "w") as z:
            for k, v in members.items():
                z.writestr(k.replace("_", "."), v)
        return tmp_path / name
    with pytest.raises(ValueError, match="no config.json"):
        rnnlab.saving.load_model(archive("a.keras", metadata_json="{}"))
    with pytest.raises(ValueError, match="not valid JSON"):
        rnnlab.saving.load_model(archive("b.keras", config_json="{nope"))
    (tmp_path / "c.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a .keras archive"):
        rnnlab.saving.load_model(tmp_path / "c.keras")
    km = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.LeakyReLU()])
    km.save(tmp_path / "d.keras")
    with pytest.raises(ValueError, match=r"config.json layer 2 \('leaky_re_lu'\) is a Keras LeakyReLU, which rnnlab does not have"):
        rnnlab.saving.load_model(tmp_path / "d.keras")


def test_keras_functional_archive_with_unknown_layer_names_file_and_layer(tmp_path):
    inp = keras.Input((4,))
    km = keras.Model(inp, keras.layers.LeakyReLU()(keras.layers.Dense(3)(inp)))
    km.save(tmp_path / "f.keras")
    with pytest.raises(ValueError, match=r"f\.keras: the Keras functional model uses something rnnlab does not "
                                         r"support.*LeakyReLU"):
        rnnlab.saving.load_model(tmp_path / "f.keras")
