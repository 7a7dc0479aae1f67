"""One-file saving: round trips, what the file holds, atomic writes, and files that must be refused."""
import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

import rnnlab
from rnnlab.layers import GRU, LSTM, Dense, Dropout, Embedding, SimpleRNN


def _ids(n=16, T=7, vocab=20, seed=0):
    gen = np.random.default_rng(seed)
    x = gen.integers(0, vocab, size=(n, T))
    x[:, -2:] = 0
    return x, gen.integers(0, 3, size=n)


def _trained_model():
    m = rnnlab.Sequential([Embedding(20, 6, mask_zero=True, input_length=7), LSTM(5, return_sequences=True),
                           Dropout(0.2), GRU(4, return_sequences=True), SimpleRNN(3), Dense(3, activation="softmax")])
    m.compile(rnnlab.optimizers.Adam(0.01, clipnorm=1.0), "sparse_categorical_crossentropy", ["accuracy"])
    x, y = _ids()
    m.fit(x, y, epochs=2, batch_size=8, verbose=0)
    return m, x, y


def _read(path):
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _write(path, arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def test_round_trip_every_layer_kind(tmp_path):
    m, x, y = _trained_model()
    path = tmp_path / "m.npz"
    m.save(path)
    m2 = rnnlab.load_model(path)
    np.testing.assert_array_equal(m2.predict(x), m.predict(x))
    assert [l.name for l in m2.layers] == [l.name for l in m.layers]
    assert [type(l) for l in m2.layers] == [type(l) for l in m.layers]
    assert [l.get_config() for l in m2.layers] == [l.get_config() for l in m.layers]
    assert isinstance(m2.loss, rnnlab.losses.SparseCategoricalCrossentropy)
    assert [mt.name for mt in m2.metrics] == ["accuracy"]
    assert isinstance(m2.optimizer, rnnlab.optimizers.Adam) and m2.optimizer.clipnorm == 1.0
    s1, s2 = m.optimizer.get_state(), m2.optimizer.get_state()
    assert sorted(s1) == sorted(s2) and len(s1) > 2
    for k in s1:
        np.testing.assert_array_equal(s1[k], s2[k])
    assert m2.evaluate(x, y) == m.evaluate(x, y)


def test_file_holds_only_numeric_arrays_and_a_json_document(tmp_path):
    m, _, _ = _trained_model()
    path = tmp_path / "m.npz"
    m.save(path)
    arrays = _read(path)  # allow_pickle=False: would raise on any object array
    assert all(a.dtype.kind in "biuf" for a in arrays.values())
    doc = json.loads(arrays["__rnnlab__"].tobytes().decode("utf-8"))
    assert doc["format"] == "rnnlab-model" and doc["format_version"] == 1
    assert doc["rnnlab_version"] == rnnlab.__version__
    assert [l["class_name"] for l in doc["config"]["layers"]] == ["Embedding", "LSTM", "Dropout", "GRU", "SimpleRNN",
                                                                  "Dense"]
    assert doc["weights"] == [p for p, _, _ in m.iter_weights()]
    assert doc["compile"]["loss"]["class_name"] == "SparseCategoricalCrossentropy"
    np.testing.assert_array_equal(arrays["w:lstm/recurrent_kernel"], m.get_layer("lstm").params["recurrent_kernel"])
    with zipfile.ZipFile(path) as z:
        assert all(name.endswith(".npy") for name in z.namelist())


def test_compile_and_optimizer_options(tmp_path):
    m, x, _ = _trained_model()
    m.save(tmp_path / "noopt.npz", include_optimizer=False)
    m2 = rnnlab.load_model(tmp_path / "noopt.npz")
    assert m2.compiled and m2.optimizer.iterations == 0
    m3 = rnnlab.load_model(tmp_path / "noopt.npz", compile=False)
    assert not m3.compiled
    np.testing.assert_array_equal(m3.predict(x), m.predict(x))
    plain = rnnlab.Sequential([rnnlab.Input((3,)), Dense(2)])
    plain.save(tmp_path / "plain.npz")
    loaded = rnnlab.load_model(tmp_path / "plain.npz")
    assert not loaded.compiled and loaded.count_params() == 8


def test_lazily_built_model_and_declared_input_dtype_round_trip(tmp_path):
    m = rnnlab.Sequential([Dense(4, activation="tanh"), Dense(1)])  # no input shape: built on first data
    with pytest.raises(ValueError, match="not built yet"):
        m.save(tmp_path / "early.npz")
    assert not (tmp_path / "early.npz").exists()
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    y = m.predict(x)
    m.save(tmp_path / "late.npz")
    np.testing.assert_array_equal(rnnlab.load_model(tmp_path / "late.npz").predict(x), y)
    ids = rnnlab.Sequential([rnnlab.Input((2,), dtype="int32"), Embedding(5, 2)])
    ids.save(tmp_path / "ids.npz")
    again = rnnlab.load_model(tmp_path / "ids.npz")
    np.testing.assert_array_equal(again.predict(np.array([[1.0, 4.0]])), ids.predict(np.array([[1, 4]])))


def test_save_weights_and_load_weights_by_position(tmp_path):
    m, x, _ = _trained_model()
    m.save_weights(tmp_path / "w.npz")
    rnnlab.backend.clear_session()
    rnnlab.backend.set_random_seed(99)
    fresh, _, _ = _trained_model()  # same architecture, other weights (names also restart)
    assert not np.array_equal(fresh.predict(x), m.predict(x))
    fresh.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(fresh.predict(x), m.predict(x))
    fresh2 = rnnlab.Sequential([Embedding(20, 6, input_length=7, name="e"), LSTM(5, return_sequences=True),
                                Dropout(0.2), GRU(4, return_sequences=True), SimpleRNN(3),
                                Dense(3, activation="softmax")])
    m.save(tmp_path / "full.npz")
    fresh2.load_weights(tmp_path / "full.npz")  # a full model file works too
    for a, b in zip(fresh2.get_weights(), m.get_weights()):
        np.testing.assert_array_equal(a, b)
    small = rnnlab.Sequential([rnnlab.Input((3,)), Dense(2)])
    with pytest.raises(ValueError, match="the file holds 12 weight arrays, the model has 2"):
        small.load_weights(tmp_path / "w.npz")


def test_writes_are_atomic_and_a_failed_save_keeps_the_old_file(tmp_path):
    m = rnnlab.Sequential([rnnlab.Input((3,)), Dense(2)])
    path = tmp_path / "m.npz"
    m.save(path)
    before = path.read_bytes()

    class Odd(Dense):
        def get_config(self):
            cfg = super().get_config()
            cfg["units"] = object()  # not JSON-able
            return cfg

    bad = rnnlab.Sequential([rnnlab.Input((3,)), Odd(2)])
    with pytest.raises(TypeError):
        bad.save(path)
    assert path.read_bytes() == before
    m.save(path)  # overwriting works
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]  # no temporary files left behind


@pytest.mark.parametrize("content, match", [
    (b"", "not an rnnlab model file"),
    (os.urandom(256), "not an rnnlab model file"),
    (b'{"format": "rnnlab-model", "layers": []}', "not an rnnlab model file"),
    (pickle.dumps({"a": 1}), "not an rnnlab model file"),
    (b"PK\x03\x04" + os.urandom(100), "not an rnnlab model file"),
])
def test_garbage_files_are_refused(tmp_path, content, match):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        rnnlab.load_model(path)


def test_pickle_payload_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    # a pickle inside an .npz (object array) next to a valid-looking config
    m = rnnlab.Sequential([rnnlab.Input((3,)), Dense(2)])
    m.save(tmp_path / "good.npz")
    arrays = _read(tmp_path / "good.npz")
    arrays["w:dense/kernel"] = np.array([Boom()], dtype=object)
    path = tmp_path / "evil.npz"
    _write(path, arrays)
    with pytest.raises(ValueError, match="corrupt model file"):
        rnnlab.load_model(path)
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ValueError):
        rnnlab.load_model(path)
    np.save(tmp_path / "obj.npy", np.array([Boom()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        rnnlab.load_model(tmp_path / "obj.npy")
    assert not marker.exists()


def _good_arrays(tmp_path):
    m = rnnlab.Sequential([rnnlab.Input((3,)), Dense(2)])
    m.save(tmp_path / "good.npz")
    arrays = _read(tmp_path / "good.npz")
    return arrays, json.loads(arrays["__rnnlab__"].tobytes().decode())


def _with_doc(arrays, doc):
    out = dict(arrays)
    out["__rnnlab__"] = np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)
    return out


def test_foreign_and_corrupt_documents_are_refused(tmp_path):
    arrays, doc = _good_arrays(tmp_path)
    path = tmp_path / "x.npz"
    cases = [
        ({"name": "some other program", "version": 3}, "not an rnnlab model file"),
        ([1, 2, 3], "not an rnnlab model file"),
        ({**doc, "format_version": "1"}, "format_version must be an int"),
        ({**doc, "format_version": 99}, "written by a newer rnnlab"),
        ({**doc, "config": {"layers": "Dense"}}, "corrupt model config"),
        ({**doc, "config": {**doc["config"], "layers": [{"class_name": "os.system", "config": {}}]}},
         r"Unknown layer class 'os.system'; known: \[.*'Dense'"),
        ({**doc, "config": {**doc["config"], "layers": [{"class_name": "Dense", "config": {"units": 2, "bogus": 1}}]}},
         r"layer 0 \(Dense\) config is not valid: .*bogus"),
        ({**doc, "config": {**doc["config"], "input_shape": ["x", 3]}}, "corrupt model config"),
    ]
    for bad_doc, match in cases:
        _write(path, _with_doc(arrays, bad_doc))
        with pytest.raises(ValueError, match=match):
            rnnlab.load_model(path)
    broken = dict(arrays)
    broken["__rnnlab__"] = np.frombuffer(b"\xff\xfe{not json", dtype=np.uint8)
    _write(path, broken)
    with pytest.raises(ValueError, match="corrupt model file"):
        rnnlab.load_model(path)


def test_weight_mismatches_are_named(tmp_path):
    arrays, doc = _good_arrays(tmp_path)
    path = tmp_path / "x.npz"
    missing = {k: v for k, v in arrays.items() if k != "w:dense/bias"}
    _write(path, missing)
    with pytest.raises(ValueError, match=r"missing \['w:dense/bias'\], unexpected \[\]"):
        rnnlab.load_model(path)
    reshaped = dict(arrays)
    reshaped["w:dense/kernel"] = np.zeros((4, 2), dtype=np.float32)
    _write(path, reshaped)
    with pytest.raises(ValueError, match=r"weight 'dense/kernel' has shape \(4, 2\) in the file, the model expects \(3, 2\)"):
        rnnlab.load_model(path)
    ints = dict(arrays)
    ints["w:dense/bias"] = np.zeros(2, dtype=np.int64)
    _write(path, ints)
    with pytest.raises(ValueError, match="weight 'dense/bias' has non-float dtype int64"):
        rnnlab.load_model(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such model file"):
        rnnlab.load_model(tmp_path / "nope.npz")
