"""Keras 3 weight files (.weights.h5 and the weights inside .keras archives) loaded into the equivalent
rnnlab Sequential give the same predictions; mismatches and wrong layer types are refused clearly."""
import os
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")

import rnnlab  # noqa: E402
from rnnlab.models.keras_weights import keras_key, load_keras_weights  # noqa: E402

T = 7


def _build(lib, specs, input_shape, input_dtype=None):
    """The same model in Keras (lib=keras) or rnnlab (lib=rnnlab) from ``[(class name, kwargs), ...]``;
    a wrapper spec is ``(name, inner spec, kwargs)``."""
    def make(spec):
        if len(spec) == 3:
            name, inner, kw = spec
            return getattr(lib.layers, name)(make(inner), **kw)
        name, kw = spec
        return getattr(lib.layers, name)(**kw)

    inp = lib.Input(input_shape, dtype=input_dtype) if input_dtype else lib.Input(input_shape)
    return lib.Sequential([inp] + [make(s) for s in specs])


def _randomise(kmodel, seed):
    rng = np.random.default_rng(seed)
    kmodel.set_weights([rng.standard_normal(w.shape).astype(w.dtype) * 0.4 for w in kmodel.get_weights()])


def _tokens(seed=0, pad=True):
    x = np.random.default_rng(seed).integers(1, 30, (5, T))
    if pad:
        x[0, 4:] = 0      # right padding
        x[1, :3] = 0      # left padding
    return x


MODELS = {
    "embedding_lstm_dense": ([("Embedding", dict(input_dim=30, output_dim=6, mask_zero=True)),
                              ("LSTM", dict(units=5)), ("Dense", dict(units=1, activation="sigmoid"))],
                             (T,), "int32"),
    "gru_both_variants_stacked": ([("Embedding", dict(input_dim=30, output_dim=4)),
                                   ("GRU", dict(units=5, return_sequences=True)),
                                   ("GRU", dict(units=3, reset_after=False, return_sequences=True)),
                                   ("GRU", dict(units=4, reset_after=False)),
                                   ("Dense", dict(units=3, activation="softmax"))],
                                  (T,), "int32"),
    "simple_rnn_lstm_time_distributed": ([("SimpleRNN", dict(units=6, return_sequences=True)),
                                          ("Dropout", dict(rate=0.3)),
                                          ("LSTM", dict(units=4, return_sequences=True, go_backwards=True)),
                                          ("TimeDistributed", ("Dense", dict(units=2)), {}),
                                          ("SimpleRNN", dict(units=3)),
                                          ("Dense", dict(units=2)), ("Dense", dict(units=1))],
                                         (T, 3), None),
    "bidirectional": ([("Embedding", dict(input_dim=30, output_dim=5, mask_zero=True)),
                       ("Bidirectional", ("LSTM", dict(units=4, return_sequences=True)), {}),
                       ("Bidirectional", ("GRU", dict(units=3, reset_after=False)), dict(merge_mode="sum")),
                       ("Dense", dict(units=2))],
                      (T,), "int32"),
}


@pytest.fixture
def keras_float64():
    old = keras.config.floatx()
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx(old)


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
@pytest.mark.parametrize("which", list(MODELS))
def test_keras_file_gives_keras_predictions(float64, keras_float64, tmp_path, which, suffix):
    specs, shape, dtype = MODELS[which]
    km = _build(keras, specs, shape, dtype)
    _randomise(km, 1)
    path = str(tmp_path / f"m{suffix}")
    km.save_weights(path) if suffix == ".weights.h5" else km.save(path)
    x = _tokens() if dtype else np.random.default_rng(2).standard_normal((5,) + shape)
    ref = keras.ops.convert_to_numpy(km(x))
    ours = _build(rnnlab, specs, shape, dtype)
    ours.load_weights(path)                      # dispatches on the suffix
    got = ours.predict(x)
    rel = np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-12)
    assert rel < 1e-6, f"{which}{suffix}: max relative error {rel:.2e}"
    for a, b in zip(ours.get_weights(), km.get_weights()):
        np.testing.assert_array_equal(a, keras.ops.convert_to_numpy(b))


def test_float32_file_into_float32_model(tmp_path):
    specs, shape, dtype = MODELS["embedding_lstm_dense"]
    km = _build(keras, specs, shape, dtype)
    _randomise(km, 3)
    km.save_weights(str(tmp_path / "a.weights.h5"))
    ours = load_keras_weights(_build(rnnlab, specs, shape, dtype), tmp_path / "a.weights.h5")
    assert ours.get_weights()[0].dtype == np.float32
    x = _tokens(4)
    np.testing.assert_allclose(ours.predict(x), keras.ops.convert_to_numpy(km(x)), rtol=1e-5, atol=1e-6)


def test_keras_key_is_keras_snake_case():
    from keras.src.utils.naming import to_snake_case
    for name in ("SimpleRNN", "LSTM", "GRU", "Dense", "TimeDistributed", "Bidirectional", "Embedding",
                 "GlobalAveragePooling1D", "RepeatVector"):
        assert keras_key(name) == to_snake_case(name)


# ------------------------------------------------------------------------------ errors
def _saved(tmp_path, specs, shape=(T, 3), dtype=None, name="k.weights.h5"):
    km = _build(keras, specs, shape, dtype)
    path = str(tmp_path / name)
    km.save_weights(path)
    return path


def _unchanged(model, before):
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_wrong_layer_type(tmp_path):
    path = _saved(tmp_path, [("LSTM", dict(units=4)), ("Dense", dict(units=1))])
    ours = _build(rnnlab, [("GRU", dict(units=4)), ("Dense", dict(units=1))], (T, 3))
    before = ours.get_weights()
    with pytest.raises(ValueError, match=r"layer 0 'gru' \(GRU\) has 3 weights, but .* no weights for the 1\. GRU "
                                         r"layer .*wrong layer type or order.*lstm \('lstm[_\d]*': \[\(3, 16\), \(4, 16\), \(16,\)\]\)"):
        load_keras_weights(ours, path)
    _unchanged(ours, before)
    bpath = _saved(tmp_path, [("Bidirectional", ("GRU", dict(units=3)), {})], name="b.weights.h5")
    bours = _build(rnnlab, [("Bidirectional", ("LSTM", dict(units=3)), {})], (T, 3))
    with pytest.raises(ValueError, match=r"layer 0 'bidirectional' \(Bidirectional\): wrong layer type, the file "
                                         r"holds GRU/GRU weights .* with LSTM/LSTM cells"):
        load_keras_weights(bours, bpath)


def test_shape_mismatch_names_layer_weight_and_both_shapes(tmp_path):
    path = _saved(tmp_path, [("LSTM", dict(units=4)), ("Dense", dict(units=1))])
    ours = _build(rnnlab, [("LSTM", dict(units=5)), ("Dense", dict(units=1))], (T, 3))
    before = ours.get_weights()
    with pytest.raises(ValueError, match=r"layer 0 'lstm' \(LSTM\), weight 0 'kernel': the model has shape "
                                         r"\(3, 20\), the file's 'layers/lstm/cell/vars/0' has shape \(3, 16\)"):
        load_keras_weights(ours, path)
    _unchanged(ours, before)


def test_gru_variant_mismatch_hint(tmp_path):
    path = _saved(tmp_path, [("GRU", dict(units=4, reset_after=False))])
    ours = _build(rnnlab, [("GRU", dict(units=4))], (T, 3))
    with pytest.raises(ValueError, match=r"weight 2 'bias': the model has shape \(2, 12\), .* shape \(12,\) "
                                         r"\(a GRU bias of shape \(2, 3\*units\) is reset_after=True"):
        load_keras_weights(ours, path)


def test_extra_and_missing_layers(tmp_path):
    path = _saved(tmp_path, [("LSTM", dict(units=4)), ("Dense", dict(units=3)), ("Dense", dict(units=1))])
    fewer = _build(rnnlab, [("LSTM", dict(units=4)), ("Dense", dict(units=3))], (T, 3))
    with pytest.raises(ValueError, match=r"weights for layers the model does not have: dense_1 \('dense[_\d]*': "
                                         r"\[\(3, 1\), \(1,\)\]\)"):
        load_keras_weights(fewer, path)
    more = _build(rnnlab, [("LSTM", dict(units=4)), ("Dense", dict(units=3)), ("Dense", dict(units=1)),
                           ("Dense", dict(units=1))], (T, 3))
    with pytest.raises(ValueError, match=r"layer 3 'dense_\d+' \(Dense\) has 2 weights, but .* the 3\. Dense layer "
                                         r"\(group 'layers/dense_2'\)"):
        load_keras_weights(more, path)
    # weightless layers may differ between the two models
    nodrop = _build(rnnlab, [("LSTM", dict(units=4)), ("Dropout", dict(rate=0.5)), ("Dense", dict(units=3)),
                             ("Dense", dict(units=1))], (T, 3))
    load_keras_weights(nodrop, path)


def test_bad_files(tmp_path):
    ours = _build(rnnlab, [("LSTM", dict(units=4))], (T, 3))
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_keras_weights(ours, str(tmp_path / "nope.weights.h5"))
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(ValueError, match="neither an HDF5 file nor a .keras archive"):
        ours.load_weights(str(bad))
    import zipfile
    z = tmp_path / "x.keras"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("config.json", "{}")
    with pytest.raises(ValueError, match="zip archive without model.weights.h5"):
        ours.load_weights(str(z))
    legacy = tmp_path / "legacy.h5"
    with h5py.File(legacy, "w") as f:
        f.attrs["layer_names"] = [b"lstm"]
    with pytest.raises(ValueError, match="legacy Keras 2 HDF5 file"):
        load_keras_weights(ours, str(legacy))
    unbuilt = rnnlab.Sequential([rnnlab.layers.LSTM(4)])
    with pytest.raises(ValueError, match="not built yet"):
        load_keras_weights(unbuilt, str(legacy))


def test_without_h5py_says_how_to_install(tmp_path, monkeypatch):
    path = _saved(tmp_path, [("LSTM", dict(units=4))])
    ours = _build(rnnlab, [("LSTM", dict(units=4))], (T, 3))
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match="load_keras_weights needs h5py .*pip install h5py"):
        load_keras_weights(ours, path)
    assert os.path.exists(path)
