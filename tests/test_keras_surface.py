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


# ------------------------------------------------------------------ namespaces
def test_keras_import_paths_exist():
    from rnnlab.preprocessing.sequence import pad_sequences
    from rnnlab.preprocessing.text import Tokenizer, text_to_word_sequence  # noqa: F401
    from rnnlab.utils import pad_sequences as pad2, plot_model, set_random_seed, to_categorical  # noqa: F401
    from rnnlab.layers import Input  # noqa: F401
    from rnnlab import ops  # noqa: F401
    from rnnlab.datasets.imdb import get_word_index, load_data  # noqa: F401
    assert pad_sequences is pad2 is rnnlab.text.pad_sequences
    assert rnnlab.preprocessing.text.Tokenizer is rnnlab.text.Tokenizer
    assert rnnlab.layers.MaxPool1D is rnnlab.layers.MaxPooling1D


@pytest.mark.parametrize("module,name,hint", [
    ("rnnlab.layers", "CuDNNLSTM", "rnnlab.layers.LSTM"),
    ("rnnlab.optimizers", "Nadam", "rnnlab.optimizers.Adam"),
    ("rnnlab.callbacks", "TensorBoard", "CSVLogger"),
    ("rnnlab.utils", "model_to_dot", "plot_model"),
    ("rnnlab", "mixed_precision", "set_floatx"),
    ("rnnlab.ops", "stop_gradient", "no gradient"),
])
def test_missing_attribute_names_the_equivalent(module, name, hint):
    import importlib
    mod = importlib.import_module(module)
    with pytest.raises(AttributeError, match=f"'{module}' has no attribute '{name}'.*{hint}"):
        getattr(mod, name)
    assert not hasattr(mod, name + "Nope")


def test_ops_match_keras_ops():
    import keras
    from rnnlab import ops
    g = np.random.default_rng(0)
    x = g.normal(size=(3, 5)).astype("float32")
    for name, args in [("softmax", (x,)), ("log_softmax", (x,)), ("sigmoid", (x,)), ("relu", (x,)),
                       ("argmax", (x,)), ("argmax", (x, 1)), ("argmin", (x, 0)), ("expand_dims", (x, 0)),
                       ("squeeze", (x[None],)), ("max", (x, 1)), ("sum", (x,)), ("mean", (x, 0)),
                       ("concatenate", ([x, x], 1)), ("stack", ([x, x], 0)), ("logsumexp", (x, 1)),
                       ("one_hot", (np.array([0, 2, 1]), 3)), ("softplus", (x,)), ("tanh", (x,))]:
        ours = ops.__dict__[name](*args)
        theirs = keras.ops.convert_to_numpy(getattr(keras.ops, name)(*args))
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6, err_msg=name)
    vals, idx = ops.top_k(x, 2)
    kv, ki = keras.ops.top_k(x, 2)
    np.testing.assert_allclose(vals, keras.ops.convert_to_numpy(kv), rtol=1e-6)
    np.testing.assert_array_equal(idx, keras.ops.convert_to_numpy(ki))
    import torch
    assert ops.convert_to_numpy(torch.ones(2)).tolist() == [1.0, 1.0]
    assert ops.convert_to_tensor([1.5]).dtype == np.float32
    with pytest.raises(ValueError, match=r"top_k: k must be in \[1, 5\]"):
        ops.top_k(x, 6)


def test_utils_normalize_matches_keras():
    import keras
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 1.0]], "float32")
    for axis, order in [(-1, 2), (1, 1)]:
        np.testing.assert_allclose(rnnlab.utils.normalize(x, axis, order),
                                   np.asarray(keras.utils.normalize(x, axis, order)), rtol=1e-6)
    # (Keras' NumPy path turns axis=0 into -1, `axis or -1`; rnnlab normalises along the axis asked for)
    np.testing.assert_allclose(rnnlab.utils.normalize(x, 0, 1), x / np.array([[4.0, 5.0]]), rtol=1e-6)


def test_get_file_finds_local_files_only(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".keras" / "datasets").mkdir(parents=True)
    (tmp_path / ".keras" / "datasets" / "nietzsche.txt").write_text("PREFACE")
    path = rnnlab.utils.get_file("nietzsche.txt", origin="https://s3.amazonaws.com/text-datasets/nietzsche.txt")
    assert open(path).read() == "PREFACE"
    with pytest.raises(FileNotFoundError, match=r"'other.txt' is not on this machine.*does not download"):
        rnnlab.utils.get_file("other.txt", origin="https://example.org/other.txt")


def test_plot_model_sequential_and_functional(tmp_path):
    from rnnlab.utils import _model_graph, plot_model
    m = _model()
    out = plot_model(m, to_file=tmp_path / "seq.png", show_shapes=True, dpi=50)
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert _model_graph(m)[1] == [(0, 1), (1, 2)]
    inp = rnnlab.Input((5,))
    a, b = Dense(3)(inp), Dense(3)(inp)
    fm = rnnlab.Model(inp, rnnlab.layers.Add()([a, b]))
    layers, edges = _model_graph(fm)
    assert len(layers) == 4 and sorted(edges) == [(0, 1), (0, 2), (1, 3), (2, 3)]
    assert plot_model(fm, to_file=tmp_path / "f.png", rankdir="LR", dpi=50).endswith("f.png")
    with pytest.raises(ValueError, match="rankdir must be 'TB' or 'LR'"):
        plot_model(fm, to_file=tmp_path / "g.png", rankdir="BT")


# ------------------------------------------------------------------ keras.datasets.imdb
RAW_TRAIN = [[1, 14, 22, 16], [5, 2, 700, 9, 9, 3], [1], [8, 40, 4, 3, 2]]
RAW_TEST = [[3, 5], [1, 2, 3, 4, 5, 6, 7], [60]]


@pytest.mark.parametrize("kw", [dict(), dict(num_words=10, skip_top=2), dict(maxlen=6, seed=5)])
def test_imdb_load_data_signature_and_values_match_keras(tmp_path, monkeypatch, kw):
    import inspect
    kimdb = pytest.importorskip("keras.src.datasets.imdb")
    from rnnlab.datasets import imdb
    ours_sig = inspect.signature(imdb.load_data).parameters
    for name, p in inspect.signature(kimdb.load_data).parameters.items():
        if p.kind is p.VAR_KEYWORD:
            continue
        assert name in ours_sig and ours_sig[name].default == p.default, name
    def ragged(seqs):   # Keras' own layout: object arrays of lists (what its imdb.npz holds)
        arr = np.empty(len(seqs), dtype=object)
        for i, seq in enumerate(seqs):
            arr[i] = list(seq)
        return arr
    np.savez(tmp_path / "imdb.npz", x_train=ragged(RAW_TRAIN), y_train=np.array([1, 0, 1, 0]),
             x_test=ragged(RAW_TEST), y_test=np.array([0, 1, 1]))
    monkeypatch.setattr(kimdb, "get_file", lambda *a, **k: str(tmp_path / "imdb.npz"))
    (kx, ky), (kxt, kyt) = kimdb.load_data(**kw)
    monkeypatch.chdir(tmp_path)
    (x, y), (xt, yt) = imdb.load_data(**kw)          # default path "imdb.npz", found in the working folder
    assert x.dtype == object and [list(s) for s in x] == [list(s) for s in kx]
    assert [list(s) for s in xt] == [list(s) for s in kxt]
    np.testing.assert_array_equal(y, ky)
    np.testing.assert_array_equal(yt, kyt)


def test_imdb_load_data_from_review_csv_with_word_index(tmp_path):
    import gzip
    import json
    from rnnlab.datasets import imdb
    (tmp_path / "imdb_word_index.json").write_text(json.dumps({"the": 1, "movie": 2, "good": 3, "bad": 4,
                                                               "isn't": 5}))
    rows = ["review,sentiment", "The movie<br />was good,positive", "bad BAD movie,negative",
            "isn't the movie good,positive"]
    with gzip.open(tmp_path / "r.csv.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")
    (x, y), (xt, yt) = imdb.load_data(path=tmp_path / "r.csv.gz", train_rows=2, seed=0)
    index = imdb.get_word_index(tmp_path / "imdb_word_index.json")
    train = {tuple(s): lab for s, lab in zip(x, y)}
    # "was" is not in the index: rank len(index) + 1 = 6, id 9, the largest id; with num_words=None Keras takes
    # num_words = that largest id and keeps ids < num_words, so it becomes oov_char 2 (Keras' rule, kept)
    assert train == {(1, 4, 5, 2, 6): 1, (1, 7, 7, 5): 0}
    assert [list(s) for s in xt] == [[1, 8, 4, 5, 6]] and yt.tolist() == [1]
    (x2, _), _ = imdb.load_data(path=tmp_path / "r.csv.gz", train_rows=2, seed=0, num_words=6)
    assert sorted(map(tuple, x2)) == [(1, 2, 2, 5), (1, 4, 5, 2, 2)]   # ids >= 6 -> oov_char 2
    assert index["isn't"] == 5
    with pytest.raises(FileNotFoundError, match="never downloads it"):
        imdb.load_data(path=tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="num_words must be a positive int"):
        imdb.load_data(path=tmp_path / "r.csv.gz", num_words=0)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['bogus'\]"):
        imdb.load_data(path=tmp_path / "r.csv.gz", bogus=1)


def test_imdb_get_word_index_shared(shared_data):
    import os
    from rnnlab.datasets import imdb
    index = imdb.get_word_index(os.path.join(shared_data, "imdb_word_index.json"))
    assert len(index) == 88584 and index["the"] == 1 and index["and"] == 2


# ------------------------------------------------------------------ Embedding(weights=), seeds
@pytest.mark.parametrize("wrap", [lambda m: m, lambda m: [m], lambda m: (m,)])
def test_embedding_weights_matrix_or_list(wrap):
    m = np.arange(12, dtype="float32").reshape(4, 3)
    emb = Embedding(4, 3, weights=wrap(m), trainable=False)
    out = emb(np.array([[1, 3]]))
    np.testing.assert_array_equal(out[0], m[[1, 3]])
    np.testing.assert_array_equal(emb.embeddings.numpy(), m)
    assert not emb.embeddings.trainable


def test_embedding_weights_wrong_shape_is_clear():
    with pytest.raises(ValueError, match=r"weights must be one \(4, 3\) matrix.*got dtype float64, shape \(3, 4\)"):
        Embedding(4, 3, weights=np.zeros((3, 4)))


def test_embedding_weights_same_as_keras_embedding_weights():
    import keras
    m = np.random.default_rng(1).normal(size=(6, 2)).astype("float32")
    ids = np.array([[0, 5, 2]])
    k = keras.layers.Embedding(6, 2, weights=m)
    np.testing.assert_allclose(Embedding(6, 2, weights=m)(ids), keras.ops.convert_to_numpy(k(ids)))


@pytest.mark.parametrize("name", ["uniform", "normal", "glorot_uniform", "glorot_normal", "he_normal", "he_uniform",
                                  "orthogonal"])
def test_seeded_initializers_repeat_and_differ_by_seed(name):
    from rnnlab import initializers
    cls = type(initializers.get(name))
    a, b, c = cls(seed=3)((4, 5)), cls(seed=3)((4, 5)), cls(seed=4)((4, 5))
    init = cls(seed=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(init((4, 5)), init((4, 5)))     # a seeded initializer repeats (Keras 3)
    assert not np.array_equal(a, c)
    assert init.get_config()["seed"] == 3 and cls(**init.get_config()).seed == 3
    with pytest.raises(ValueError, match="seed must be a non-negative int or None, got 'x'"):
        cls(seed="x")


def test_seeded_initializer_in_a_layer_is_reproducible():
    from rnnlab.initializers import GlorotUniform
    d1, d2 = Dense(3, kernel_initializer=GlorotUniform(seed=7)), Dense(3, kernel_initializer=GlorotUniform(seed=7))
    d1.build((None, 4))
    rnnlab.backend.set_random_seed(99)
    d2.build((None, 4))
    np.testing.assert_array_equal(d1.kernel.numpy(), d2.kernel.numpy())


# ------------------------------------------------------------------ Keras imdb.npz without pickle
def _object_array(items):
    arr = np.empty(len(items), dtype=object)
    for i, it in enumerate(items):
        arr[i] = it
    return arr


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_object_array_streams_of_every_protocol_parse_without_pickle(protocol):
    import pickle    # only to produce the streams NumPy/Keras files hold; the reader never uses it
    from rnnlab.datasets.imdb import _parse_object_array
    items = [[1, 14, 22, 2 ** 40], [], [5, -3], np.array([7, 8], dtype=np.int32), list(range(300))]
    got = _parse_object_array(pickle.dumps(_object_array(items), protocol=protocol))
    assert got.dtype == object and got.shape == (5,)
    for a, b in zip(got, items):
        assert list(np.asarray(a)) == list(np.asarray(b))
    assert np.asarray(got[3]).dtype == np.int32


def test_python2_style_stream_parses():
    """The stream Python 2's NumPy wrote into Keras' imdb.npz: GLOBAL, SHORT_BINSTRING, BINPUT, APPENDS."""
    from rnnlab.datasets.imdb import _parse_object_array
    stream = (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\nq\x02K\x00\x85U\x01b\x87R"
              b"q\x03(K\x01K\x02\x85cnumpy\ndtype\nq\x04U\x02O8K\x00K\x01\x87Rq\x05(K\x03U\x01|NNNJ\xff\xff\xff\xff"
              b"J\xff\xff\xff\xffK?tb\x89]q\x06(]q\x07(K\x01K\x0eM\x10\x27e]q\x08(K\x05eetb.")
    got = _parse_object_array(stream)
    assert [list(x) for x in got] == [[1, 14, 10000], [5]]


@pytest.mark.parametrize("stream,match", [
    (b"\x80\x02cos\nsystem\nq\x01.", "refusing to load os.system"),
    (b"\x80\x02cbuiltins\neval\n.", "refusing to load builtins.eval"),
    (b"\x80\x02]q\x01(K\x01", "truncated stream"),
    (b"\x80\x04\x97.", "unsupported pickle opcode"),
])
def test_hostile_or_broken_streams_are_refused(stream, match):
    from rnnlab.datasets.imdb import _parse_object_array
    with pytest.raises(ValueError, match=match):
        _parse_object_array(stream)


def test_imdb_module_does_not_import_pickle():
    import ast
    import inspect
    from rnnlab.datasets import imdb
    tree = ast.parse(inspect.getsource(imdb))
    names = {a.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
             for a in node.names} | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "pickle" not in names


def test_variable_arithmetic_and_indexing_read_the_current_value():
    d = Dense(2)
    d.build((None, 3))
    v = d.kernel
    v.assign(np.arange(6.0).reshape(3, 2))
    np.testing.assert_array_equal(v * 2, np.arange(6.0).reshape(3, 2) * 2)
    np.testing.assert_array_equal(np.ones((1, 3)) @ v, [[6.0, 9.0]])
    np.testing.assert_array_equal(1 - v, 1 - np.arange(6.0).reshape(3, 2))
    row = v[0]
    row[...] = 99                                  # indexing gives a copy
    assert v.numpy()[0, 0] == 0 and v[2, 1] == 5


# ------------------------------------------------------------------ more Keras initializers
@pytest.mark.parametrize("name,kw,std,bound", [
    ("truncated_normal", dict(mean=0.5, stddev=0.2), 0.2 * 0.8796, (0.1, 0.9)),
    ("variance_scaling", dict(scale=2.0, mode="fan_avg", distribution="uniform"), np.sqrt(2.0 / 250), None),
    ("variance_scaling", dict(scale=1.0, mode="fan_out", distribution="untruncated_normal"), np.sqrt(1 / 300), None),
    ("variance_scaling", dict(), np.sqrt(1 / 200), None),
    ("lecun_normal", dict(), np.sqrt(1 / 200), None),
    ("lecun_uniform", dict(), np.sqrt(1 / 200), None),
])
def test_keras_initializers_statistics_and_configs(name, kw, std, bound):
    import keras
    from rnnlab import initializers
    cls = type(initializers.get(name))
    init = cls(seed=1, **kw)
    w = init((200, 300), "float64")
    kw_ = keras.ops.convert_to_numpy(keras.initializers.get({"class_name": cls.__name__,
                                                             "config": dict(kw, seed=1)})((200, 300)))
    # the same distribution as Keras: spread within 3% on 60,000 draws (different generators, not the same values)
    assert np.std(w) == pytest.approx(std, rel=0.03) and np.std(kw_) == pytest.approx(std, rel=0.03)
    assert abs(np.max(np.abs(w - w.mean())) - np.max(np.abs(kw_ - kw_.mean()))) < 0.1 * np.max(np.abs(kw_))
    if bound:
        assert bound[0] <= w.min() and w.max() <= bound[1]
    kcfg = keras.initializers.get({"class_name": cls.__name__, "config": dict(kw, seed=1)}).get_config()
    for k, v in init.get_config().items():
        assert kcfg[k] == v, k
    np.testing.assert_array_equal(init((200, 300), "float64"), w)


def test_identity_initializer_and_errors():
    from rnnlab import initializers
    np.testing.assert_array_equal(initializers.get("identity")((2, 3)), np.eye(2, 3))
    assert initializers.get({"class_name": "IdentityInitializer", "config": {"gain": 2.0}})((2, 2))[1, 1] == 2.0
    with pytest.raises(ValueError, match="Identity: shape must be 2-D"):
        initializers.get("identity")((2, 2, 2))
    with pytest.raises(ValueError, match="mode must be one of"):
        initializers.VarianceScaling(mode="fan")
