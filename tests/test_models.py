"""Sequential: building, summary, fit/evaluate/predict, learning a memory task, NaN guard, saving."""
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

import rnnlab
from rnnlab import callbacks
from rnnlab.layers import GRU, LSTM, Dense, Embedding, SimpleRNN


def _summary_text(model):
    lines = []
    model.summary(print_fn=lines.append)
    return "\n".join(lines)


def test_material_counts_and_shapes():
    m = rnnlab.Sequential([SimpleRNN(3, input_shape=(2, 10))])
    assert m.count_params() == 42
    assert m.output_shape == (None, 3)
    m2 = rnnlab.Sequential([rnnlab.Input((10, 10)), SimpleRNN(3, return_sequences=True)])
    assert m2.output_shape == (None, 10, 3)
    m3 = rnnlab.models.Sequential([Embedding(64, 100, input_length=3)])
    assert m3.predict(np.zeros((1, 3), dtype=int)).shape == (1, 3, 100)
    m4 = rnnlab.Sequential([LSTM(64, input_dim=100, input_length=5)])
    assert m4.layers[0].params["kernel"].shape == (100, 256)


def test_summary_lists_layers_and_counts():
    m = rnnlab.Sequential([Embedding(20000, 128, input_length=80), LSTM(128), Dense(1, activation="sigmoid")])
    text = _summary_text(m)
    assert "embedding (Embedding)" in text and "(None, 80, 128)" in text
    assert "2,560,000" in text and "131,584" in text and "129" in text
    assert "Total params: 2,691,713" in text
    m.layers[0].trainable = False
    text = _summary_text(m)
    assert "Trainable params: 131,713" in text and "Non-trainable params: 2,560,000" in text


def _first_token_task(n, T=32, seed=0):
    gen = np.random.default_rng(seed)
    x = gen.integers(3, 10, size=(n, T))
    y = gen.integers(0, 2, size=n)
    x[:, 0] = y + 1  # the label is only in the first token
    return x, y.astype("float32")


@pytest.mark.slow
def test_lstm_learns_long_memory_where_no_recurrence_cannot():
    rnnlab.set_random_seed(1)
    x, y = _first_token_task(1200)
    xt, yt = _first_token_task(400, seed=1)
    m = rnnlab.Sequential([Embedding(10, 8, input_length=32), LSTM(16), Dense(1, activation="sigmoid")])
    m.compile(rnnlab.optimizers.Adam(0.01), "binary_crossentropy", ["accuracy"])
    m.fit(x, y, batch_size=32, epochs=8, verbose=0)
    acc = m.evaluate(xt, yt, return_dict=True)["accuracy"]
    assert acc > 0.95
    # without recurrence: the last step alone carries no information about the first token
    xl, xtl = x[:, -1:], xt[:, -1:]
    base = rnnlab.Sequential([Embedding(10, 8, input_length=1), LSTM(16), Dense(1, activation="sigmoid")])
    base.compile(rnnlab.optimizers.Adam(0.01), "binary_crossentropy", ["accuracy"])
    base.fit(xl, y, batch_size=32, epochs=8, verbose=0)
    assert base.evaluate(xtl, yt, return_dict=True)["accuracy"] < 0.65


def test_fit_learns_separable_problem_and_history_keys():
    gen = np.random.default_rng(0)
    x = gen.normal(size=(400, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 1.0]) > 0).astype("float32")
    m = rnnlab.Sequential([rnnlab.Input((4,)), Dense(8, activation="tanh"), Dense(1, activation="sigmoid")])
    m.compile(rnnlab.optimizers.Adam(0.05), "binary_crossentropy", ["accuracy"])
    h = m.fit(x, y, epochs=15, batch_size=32, verbose=0, validation_split=0.25)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(h.epoch) == 15 and h.history["loss"][-1] < h.history["loss"][0]
    assert h.history["val_accuracy"][-1] > 0.95
    loss, acc = m.evaluate(x, y)
    assert acc > 0.95 and loss == pytest.approx(m.evaluate(x, y, return_dict=True)["loss"])


def test_validation_split_takes_the_last_samples_before_shuffling():
    x = np.arange(10, dtype="float32").reshape(10, 1)
    y = np.zeros(10, dtype="float32")
    seen = []

    class Spy(callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            pass

    m = rnnlab.Sequential([rnnlab.Input((1,)), Dense(1)])
    m.compile("sgd", "mse")
    orig = m._train_batch  # the engine's step on prepared arrays (one list entry per input/output)

    def spy(xs, ys, sws, epoch=0, step=0, time_mask=None):
        seen.extend(xs[0][:, 0].tolist())
        return orig(xs, ys, sws, epoch, step, time_mask)

    m._train_batch = spy
    m.fit(x, y, epochs=1, batch_size=3, validation_split=0.3, verbose=0, callbacks=[Spy()])
    assert sorted(seen) == list(range(7))


def test_reproducible_with_seed():
    def run():
        rnnlab.set_random_seed(42)
        x = np.random.default_rng(0).normal(size=(64, 5, 3)).astype("float32")
        y = np.random.default_rng(1).integers(0, 2, size=64).astype("float32")
        m = rnnlab.Sequential([rnnlab.Input((5, 3)), GRU(4), Dense(1, activation="sigmoid")])
        m.compile("adam", "binary_crossentropy")
        return m.fit(x, y, epochs=2, batch_size=16, verbose=0).history["loss"]

    assert run() == run()


def test_nan_loss_stops_and_keeps_last_finite_weights():
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    y = np.ones((64, 1), dtype="float32")
    m = rnnlab.Sequential([rnnlab.Input((3,)), Dense(1)])
    m.compile(rnnlab.optimizers.SGD(0.1), "mse")
    x_bad = x.copy()
    x_bad[40] = np.inf  # batch 2 (index 2 with batch_size 16) holds the inf sample
    steps = []

    class Count(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps.append(batch)
            self.w = self.model.get_weights()

    cnt = Count()
    with pytest.warns(RuntimeWarning, match=r"epoch 1, step 3"):
        h = m.fit(x_bad, y, epochs=3, batch_size=16, shuffle=False, verbose=0, callbacks=[cnt])
    assert steps == [0, 1]
    assert "loss is" in h.stop_reason
    for a, b in zip(m.get_weights(), cnt.w):
        np.testing.assert_array_equal(a, b)
        assert np.all(np.isfinite(a))


def test_xy_length_mismatch_and_unknown_names():
    m = rnnlab.Sequential([rnnlab.Input((3,)), Dense(1)])
    with pytest.raises(ValueError, match="valid names"):
        m.compile("adamx", "mse")
    with pytest.raises(ValueError, match="valid names"):
        m.compile("adam", "mse_typo")
    with pytest.raises(ValueError, match="valid names"):
        Dense(3, activation="tanhh")
    m.compile("adam", "mse")
    with pytest.raises(ValueError, match=r"x: 10 and y: 9"):
        m.fit(np.zeros((10, 3)), np.zeros((9, 1)), verbose=0)


def test_train_on_batch_and_predict_batches():
    m = rnnlab.Sequential([rnnlab.Input((6, 2)), LSTM(3, return_sequences=True), Dense(2, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    x = np.random.default_rng(0).normal(size=(10, 6, 2))
    y = np.random.default_rng(1).integers(0, 2, size=(10, 6))
    loss, acc = m.train_on_batch(x, y)
    assert np.isfinite(loss) and 0 <= acc <= 1
    full = m.predict(x, batch_size=10)
    np.testing.assert_allclose(m.predict(x, batch_size=3), full, rtol=1e-6)
    assert full.shape == (10, 6, 2)


def test_progress_bar_output_format():
    m = rnnlab.Sequential([rnnlab.Input((3,)), Dense(1)])
    m.compile("sgd", "mse", ["mae"])
    buf = io.StringIO()
    m.fit(np.zeros((40, 3)), np.zeros((40, 1)), epochs=2, batch_size=8, verbose=1, stream=buf)
    text = buf.getvalue()
    assert "Epoch 1/2" in text and "Epoch 2/2" in text
    assert "5/5 [==============================]" in text
    assert " - loss: " in text and " - mae: " in text and "samples/s" in text
    assert "\r" not in text  # not a terminal: only the final line of each epoch
    buf = io.StringIO()
    m.fit(np.zeros((40, 3)), np.zeros((40, 1)), epochs=1, batch_size=8, verbose=2, stream=buf)
    lines = buf.getvalue().splitlines()
    assert lines[0] == "Epoch 1/1" and lines[1].startswith("5/5 - ") and "/step - loss: " in lines[1]


def test_early_stopping_restores_best(tmp_path):
    gen = np.random.default_rng(0)
    x = gen.normal(size=(64, 2)).astype("float32")
    y = gen.normal(size=(64, 1)).astype("float32")  # pure noise: val loss will stop improving
    m = rnnlab.Sequential([rnnlab.Input((2,)), Dense(16, activation="relu"), Dense(1)])
    m.compile(rnnlab.optimizers.Adam(0.05), "mse")
    es = callbacks.EarlyStopping(patience=2, restore_best_weights=True)
    ck = callbacks.ModelCheckpoint(str(tmp_path / "best.npz"), save_best_only=True)
    h = m.fit(x[:48], y[:48], validation_data=(x[48:], y[48:]), epochs=60, verbose=0, callbacks=[es, ck])
    assert len(h.epoch) < 60
    best = min(h.history["val_loss"])
    assert m.evaluate(x[48:], y[48:]) == pytest.approx(best, rel=1e-5)
    assert rnnlab.load_model(tmp_path / "best.npz").evaluate(x[48:], y[48:]) == pytest.approx(best, rel=1e-5)


def test_save_load_round_trip_identical(tmp_path):
    m = rnnlab.Sequential([Embedding(30, 8, mask_zero=True, input_length=7), GRU(5, reset_after=False),
                           Dense(3, activation="softmax")])
    m.compile(rnnlab.optimizers.Adam(0.01), "sparse_categorical_crossentropy", ["accuracy"])
    x = np.random.default_rng(0).integers(0, 30, size=(20, 7))
    y = np.random.default_rng(1).integers(0, 3, size=20)
    m.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "model.npz"
    m.save(path)
    m2 = rnnlab.load_model(path)
    np.testing.assert_array_equal(m2.predict(x), m.predict(x))
    assert m2.optimizer.iterations == m.optimizer.iterations
    # continuing training gives the same trajectory
    rnnlab.set_random_seed(5)
    a = m.fit(x, y, epochs=1, verbose=0).history["loss"]
    rnnlab.set_random_seed(5)
    b = m2.fit(x, y, epochs=1, verbose=0).history["loss"]
    assert a == b
    with zipfile.ZipFile(path) as z:  # nothing pickled inside
        for name in z.namelist():
            assert b"\x80\x04" not in z.read(name)[:2]


def test_bad_model_files_are_rejected_clearly(tmp_path):
    random_bytes = tmp_path / "random.npz"
    random_bytes.write_bytes(os.urandom(300))
    with pytest.raises(ValueError, match="not an rnnlab model file"):
        rnnlab.load_model(random_bytes)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.arange(3))
    with pytest.raises(ValueError, match="no '__rnnlab__' entry"):
        rnnlab.load_model(foreign)
    pickled = tmp_path / "evil.npz"

    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    pickled.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ValueError):
        rnnlab.load_model(pickled)
    assert not (tmp_path / "pwned").exists()
    m = rnnlab.Sequential([rnnlab.Input((3,)), Dense(2)])
    good = tmp_path / "good.npz"
    m.save(good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ValueError):
        rnnlab.load_model(truncated)
    other = rnnlab.Sequential([rnnlab.Input((4,)), Dense(2)])
    with pytest.raises(ValueError, match=r"has shape \(3, 2\) in the file, the model expects \(4, 2\)"):
        other.load_weights(good)
    with pytest.raises(FileNotFoundError):
        rnnlab.load_model(tmp_path / "missing.npz")


def test_model_structure_helpers_and_errors():
    m = rnnlab.Sequential([rnnlab.Input((4,)), Dense(3, name="a"), Dense(2, name="b")])
    assert [l.name for l in m.layers] == ["a", "b"] and m.input_shape == (None, 4)
    assert m.get_layer("b") is m.layers[1] and m.get_layer(index=0).name == "a"
    with pytest.raises(ValueError, match=r"No layer named 'c'; layers: \['a', 'b'\]"):
        m.get_layer("c")
    with pytest.raises(ValueError, match="a layer named 'a' is already in the model"):
        m.add(Dense(1, name="a"))
    with pytest.raises(TypeError, match="expected a Layer, got str"):
        m.add("dense")
    with pytest.raises(ValueError, match="return_state=True"):
        m.add(LSTM(2, return_state=True))
    with pytest.raises(ValueError, match=r"the model has 4 weight arrays, got 3"):
        m.set_weights(m.get_weights()[:3])
    assert [w.shape for w in m.get_weights()] == [(4, 3), (3,), (3, 2), (2,)]
    assert [p for p, _, _ in m.trainable_weight_refs()] == ["a/kernel", "a/bias", "b/kernel", "b/bias"]
    last = m.pop()
    assert last.name == "b" and m.output_shape == (None, 3) and m.count_params() == 15
    lazy = rnnlab.Sequential([Dense(2)])
    with pytest.raises(ValueError, match="not built yet"):
        lazy.count_params()
    lazy.predict(np.zeros((1, 5)))
    assert lazy.count_params() == 12 and "Total params: 12" in _summary_text(lazy)


def test_frozen_layer_is_not_updated_and_counts_as_non_trainable():
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = np.random.default_rng(1).normal(size=(32, 1)).astype("float32")
    m = rnnlab.Sequential([rnnlab.Input((4,)), Dense(3, name="frozen"), Dense(1, name="head")])
    m.get_layer("frozen").trainable = False
    m.compile("adam", "mse")
    before = m.get_weights()
    m.fit(x, y, epochs=2, batch_size=8, verbose=0)
    after = m.get_weights()
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert not np.array_equal(after[2], before[2])
    assert [p for p, _, _ in m.trainable_weight_refs()] == ["head/kernel", "head/bias"]
    assert "Non-trainable params: 15" in _summary_text(m)


def test_one_training_step_matches_keras():
    keras = pytest.importorskip("keras")
    gen = np.random.default_rng(0)
    ids = gen.integers(1, 15, size=(6, 9))
    ids[:2, 6:] = 0  # padded tails: the mask flows from the Embedding through the LSTM
    y = gen.integers(0, 2, size=(6, 1)).astype("float32")
    ours = rnnlab.Sequential([Embedding(15, 4, mask_zero=True, input_length=9), LSTM(5),
                              Dense(1, activation="sigmoid")])
    ours.compile(rnnlab.optimizers.SGD(0.5), "binary_crossentropy")
    theirs = keras.Sequential([keras.Input((9,), dtype="int32"), keras.layers.Embedding(15, 4, mask_zero=True),
                               keras.layers.LSTM(5), keras.layers.Dense(1, activation="sigmoid")])
    theirs.set_weights(ours.get_weights())
    theirs.compile(keras.optimizers.SGD(0.5), "binary_crossentropy")
    np.testing.assert_allclose(ours.predict(ids), theirs.predict(ids, verbose=0), rtol=1e-5, atol=1e-6)
    l1 = ours.train_on_batch(ids, y)
    l2 = theirs.train_on_batch(ids, y)
    assert l1 == pytest.approx(float(l2), rel=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-6)
