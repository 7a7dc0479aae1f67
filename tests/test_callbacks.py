"""Callbacks: hook order and arguments, EarlyStopping parity with Keras 3, ModelCheckpoint file names,
learning-rate callbacks, TerminateOnNaN, LambdaCallback."""
import math

import numpy as np
import pytest

import rnnlab
from rnnlab import callbacks
from rnnlab.layers import Dense


def _model(lr=0.05):
    m = rnnlab.Sequential([rnnlab.Input((2,)), Dense(1)])
    m.compile(rnnlab.optimizers.SGD(lr), "mse")
    return m


def _data(n=20):
    gen = np.random.default_rng(0)
    x = gen.normal(size=(n, 2)).astype("float32")
    return x, (x @ np.array([[1.0], [-1.0]], dtype="float32"))


class Recorder(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin",))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_train_batch_begin(self, batch, logs=None):
        self.calls.append(("batch_begin", batch))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch, sorted(logs)))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, sorted(logs)))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end",))


def test_hook_order_params_and_logs():
    x, y = _data(10)
    m = _model()
    m.compile(rnnlab.optimizers.SGD(0.05), "mse", ["mae"])
    rec = Recorder()
    m.fit(x, y, batch_size=4, epochs=3, initial_epoch=1, validation_split=0.2, verbose=0, callbacks=[rec])
    assert rec.model is m
    assert rec.params["epochs"] == 3 and rec.params["steps"] == 2  # 8 training samples / 4
    batch_keys = ["loss", "mae"]
    epoch_keys = ["loss", "mae", "val_loss", "val_mae"]
    per_epoch = [("batch_begin", 0), ("batch_end", 0, batch_keys), ("batch_begin", 1), ("batch_end", 1, batch_keys)]
    assert rec.calls == ([("train_begin",)]
                         + [("epoch_begin", 1)] + per_epoch + [("epoch_end", 1, epoch_keys)]
                         + [("epoch_begin", 2)] + per_epoch + [("epoch_end", 2, epoch_keys)]
                         + [("train_end",)])


def test_keras2_batch_hook_names_are_called():
    seen = []

    class Old(callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(batch)

    x, y = _data(12)
    _model().fit(x, y, batch_size=5, epochs=1, verbose=0, callbacks=[Old()])
    assert seen == [0, 1, 2]


def test_stop_training_from_a_batch_hook_ends_after_that_batch():
    class StopAt(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    x, y = _data(20)
    rec = Recorder()
    h = _model().fit(x, y, batch_size=4, epochs=5, verbose=0, callbacks=[StopAt(), rec])
    assert h.epoch == [0]
    assert [c for c in rec.calls if c[0] == "batch_end"] == [("batch_end", 0, ["loss"]), ("batch_end", 1, ["loss"])]


class _FakeModel:
    """Stands in for a model: its 'weights' are the number of the current epoch."""

    def __init__(self):
        self.epoch = -1
        self.stop_training = False
        self.restored = None
        self.metrics = []

    def get_weights(self):
        return [np.array(self.epoch)]

    def set_weights(self, w):
        self.restored = int(w[0])


def _drive(cb, values, monitor="val_loss"):
    model = _FakeModel()
    cb.set_model(model)
    cb.on_train_begin({})
    ran = 0
    for epoch, v in enumerate(values):
        model.epoch = epoch
        cb.on_epoch_end(epoch, {monitor: v})
        ran += 1
        if model.stop_training:
            break
    cb.on_train_end({})
    return ran, int(cb.stopped_epoch), int(cb.best_epoch) if hasattr(cb, "best_epoch") else None, model.restored


@pytest.mark.parametrize("kwargs", [
    dict(patience=0), dict(patience=2), dict(patience=3, min_delta=0.05), dict(patience=1, baseline=0.6),
    dict(patience=2, start_from_epoch=3), dict(patience=2, restore_best_weights=True),
    dict(patience=10, restore_best_weights=True), dict(patience=1, mode="max", monitor="val_accuracy"),
])
def test_early_stopping_matches_keras(kwargs):
    keras = pytest.importorskip("keras")
    gen = np.random.default_rng(len(str(kwargs)))
    for trial in range(20):
        n = int(gen.integers(3, 15))
        if trial % 2:  # a noisy decreasing curve
            values = list(np.round(1.0 / (1 + np.arange(n)) + 0.3 * gen.random(n), 3))
        else:
            values = list(np.round(gen.random(n), 2))  # ties happen with two decimals
        monitor = kwargs.get("monitor", "val_loss")
        ours = _drive(callbacks.EarlyStopping(**kwargs), values, monitor)
        theirs = _drive(keras.callbacks.EarlyStopping(**kwargs), values, monitor)
        assert ours == theirs, (kwargs, values)


def test_early_stopping_restores_best_weights_in_a_real_fit():
    gen = np.random.default_rng(0)
    x = gen.normal(size=(64, 2)).astype("float32")
    y = gen.normal(size=(64, 1)).astype("float32")  # noise: validation loss soon stops improving
    m = rnnlab.Sequential([rnnlab.Input((2,)), Dense(16, activation="relu"), Dense(1)])
    m.compile(rnnlab.optimizers.Adam(0.05), "mse")
    es = callbacks.EarlyStopping(patience=3, restore_best_weights=True)
    h = m.fit(x[:48], y[:48], validation_data=(x[48:], y[48:]), epochs=100, verbose=0, callbacks=[es])
    assert es.stopped_epoch == h.epoch[-1] < 99
    assert es.best_epoch == int(np.argmin(h.history["val_loss"]))
    assert m.evaluate(x[48:], y[48:]) == pytest.approx(min(h.history["val_loss"]), rel=1e-5)


def test_early_stopping_missing_monitor_warns_and_never_stops():
    x, y = _data(8)
    es = callbacks.EarlyStopping(monitor="val_loss", patience=0)
    with pytest.warns(RuntimeWarning, match="'val_loss' is not in the logs"):
        h = _model().fit(x, y, epochs=3, verbose=0, callbacks=[es])
    assert len(h.epoch) == 3


def test_callback_argument_errors():
    with pytest.raises(ValueError, match="mode must be 'auto', 'min' or 'max', got 'best'"):
        callbacks.EarlyStopping(mode="best")
    with pytest.raises(ValueError, match="patience must be a non-negative int, got -1"):
        callbacks.EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match=r"factor must be in \(0, 1\), got 1.5"):
        callbacks.ReduceLROnPlateau(factor=1.5)
    with pytest.raises(TypeError, match="schedule must be callable, got float"):
        callbacks.LearningRateScheduler(0.1)
    with pytest.raises(TypeError, match=r"unknown hook\(s\) \['on_epoch_ended'\]"):
        callbacks.LambdaCallback(on_epoch_ended=print)
    x, y = _data(8)
    with pytest.raises(TypeError, match="callbacks must be Callback instances, got function"):
        _model().fit(x, y, verbose=0, callbacks=[lambda: None])


def test_model_checkpoint_names_and_best_only(tmp_path):
    x, y = _data(40)
    m = _model(lr=0.02)
    pattern = str(tmp_path / "ck-{epoch:02d}-{val_loss:.4f}.npz")
    h = m.fit(x[:30], y[:30], validation_data=(x[30:], y[30:]), epochs=3, verbose=0,
              callbacks=[callbacks.ModelCheckpoint(pattern)])
    expected = {f"ck-{e + 1:02d}-{v:.4f}.npz" for e, v in enumerate(h.history["val_loss"])}
    assert {p.name for p in tmp_path.iterdir()} == expected
    # the last checkpoint holds the final model
    last = rnnlab.load_model(tmp_path / f"ck-03-{h.history['val_loss'][2]:.4f}.npz")
    np.testing.assert_array_equal(last.predict(x), m.predict(x))


def test_model_checkpoint_save_best_only_and_weights_only(tmp_path):
    m = _model()
    ck = callbacks.ModelCheckpoint(str(tmp_path / "w.npz"), monitor="val_loss", save_best_only=True,
                                   save_weights_only=True)
    ck.set_model(m)
    saved = []
    for epoch, v in enumerate([0.5, 0.4, 0.45, 0.3]):
        m.layers[0].params["bias"][...] = epoch  # mark the weights with the epoch
        ck.on_epoch_end(epoch, {"val_loss": v})
        other = _model()
        other.load_weights(tmp_path / "w.npz")
        saved.append(float(other.layers[0].params["bias"][0]))
    assert saved == [0.0, 1.0, 1.0, 3.0]  # epoch 2 (0.45) did not improve on 0.4
    with pytest.raises(ValueError, match="weights-only files load with model.load_weights"):
        rnnlab.load_model(tmp_path / "w.npz")
    bad = callbacks.ModelCheckpoint(str(tmp_path / "{val_acc}.npz"))
    bad.set_model(m)
    with pytest.raises(ValueError, match="refers to 'val_acc' which is not in the logs"):
        bad.on_epoch_end(0, {"loss": 1.0})


class _FakeOptModel:
    def __init__(self, lr):
        self.optimizer = rnnlab.optimizers.SGD(lr)
        self.stop_training = False
        self.metrics = []


def _drive_lr(cb, values):
    model = _FakeOptModel(0.1)
    cb.set_model(model)
    cb.on_train_begin({})
    recorded = []
    for epoch, v in enumerate(values):
        logs = {"loss": v}
        cb.on_epoch_end(epoch, logs)
        recorded.append((round(logs["learning_rate"], 9), round(float(model.optimizer.learning_rate), 9)))
    return recorded


@pytest.mark.parametrize("kwargs", [
    dict(factor=0.5, patience=1), dict(factor=0.5, patience=1, min_lr=0.02, cooldown=1),
    dict(factor=0.2, patience=2, min_delta=0.05, cooldown=2), dict(factor=0.5, patience=0, min_lr=0.01),
])
def test_reduce_lr_on_plateau_matches_keras(kwargs):
    keras = pytest.importorskip("keras")
    gen = np.random.default_rng(7)
    for trial in range(10):
        values = list(np.round(gen.random(int(gen.integers(4, 14))), 2))
        ours = _drive_lr(callbacks.ReduceLROnPlateau(monitor="loss", **kwargs), values)
        theirs = _drive_lr(keras.callbacks.ReduceLROnPlateau(monitor="loss", **kwargs), values)
        assert ours == theirs, (kwargs, values)


def test_reduce_lr_on_plateau_in_fit_lands_in_history():
    x, y = _data(8)
    m = _model(lr=0.0)  # nothing learns: every epoch is a plateau
    h = m.fit(x, y, epochs=4, verbose=0,
              callbacks=[callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1)])
    assert h.history["learning_rate"] == [0.0] * 4
    m = _model(lr=1e-9)
    h = m.fit(x, y, epochs=4, verbose=0, shuffle=False,
              callbacks=[callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=1.0)])
    # the first epoch improves on inf; each later one misses min_delta and halves the rate
    assert h.history["learning_rate"] == pytest.approx([1e-9, 1e-9, 5e-10, 2.5e-10])


def test_learning_rate_scheduler_sets_rate_each_epoch():
    x, y = _data(8)
    m = _model()
    seen = []
    cbs = [callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 * 0.5 ** epoch),
           callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(m.optimizer.learning_rate))]
    h = m.fit(x, y, epochs=3, verbose=0, callbacks=cbs)
    assert seen == pytest.approx([0.1, 0.05, 0.025])
    assert h.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.025])
    one_arg = callbacks.LearningRateScheduler(lambda epoch: 0.3)
    one_arg.set_model(m)
    one_arg.on_epoch_begin(0)
    assert m.optimizer.learning_rate == pytest.approx(0.3)
    bad = callbacks.LearningRateScheduler(lambda epoch, lr: float("nan"))
    bad.set_model(m)
    with pytest.raises(ValueError, match="must return a finite float, got nan"):
        bad.on_epoch_begin(4)


def test_terminate_on_nan_stops_like_keras(capsys):
    m = _model()
    cb = callbacks.TerminateOnNaN()
    cb.set_model(m)
    cb.on_train_batch_end(3, {"loss": 0.5})
    assert not m.stop_training
    cb.on_train_batch_end(4, {"loss": math.inf})
    assert m.stop_training
    assert "Batch 4: Invalid loss, terminating training" in capsys.readouterr().err


def test_history_is_fresh_per_fit_and_holds_epochs():
    x, y = _data(8)
    m = _model()
    h1 = m.fit(x, y, epochs=2, verbose=0)
    h2 = m.fit(x, y, epochs=4, initial_epoch=2, verbose=0)
    assert h1.epoch == [0, 1] and h2.epoch == [2, 3]
    assert len(h1.history["loss"]) == 2 and len(h2.history["loss"]) == 2
    assert m.history is h2 and h2.stop_reason is None


# ------------------------------------------------------------------------------ CSVLogger
def _drive_csv(cb, epochs_logs, train_end=True):
    cb.on_train_begin({})
    for e, logs in enumerate(epochs_logs):
        cb.on_epoch_end(e, dict(logs))
    if train_end:
        cb.on_train_end({})


@pytest.mark.parametrize("logs,sep", [
    ([{"loss": 0.5, "accuracy": 0.25}, {"loss": 0.25, "accuracy": 0.75}], ","),
    ([{"loss": 0.5, "val_loss": 0.6, "learning_rate": 0.01}, {"loss": 0.4, "val_loss": 0.55}], ";"),
    ([{"loss": 1.5, "mae": 0.125}], "\t"),
])
def test_csv_logger_writes_what_keras_writes(tmp_path, logs, sep):
    import keras
    from rnnlab.callbacks import CSVLogger
    _drive_csv(CSVLogger(tmp_path / "ours.csv", separator=sep), logs)
    _drive_csv(keras.callbacks.CSVLogger(str(tmp_path / "keras.csv"), separator=sep), logs)
    assert (tmp_path / "ours.csv").read_bytes() == (tmp_path / "keras.csv").read_bytes()


def test_csv_logger_append_like_keras(tmp_path):
    import keras
    from rnnlab.callbacks import CSVLogger
    logs = [{"loss": 0.5}, {"loss": 0.25}]
    for name, make in [("ours.csv", lambda p: CSVLogger(p, append=True)),
                       ("keras.csv", lambda p: keras.callbacks.CSVLogger(str(p), append=True))]:
        _drive_csv(make(tmp_path / name), logs)
        _drive_csv(make(tmp_path / name), logs[:1])
    text = (tmp_path / "ours.csv").read_text()
    assert text == (tmp_path / "keras.csv").read_text()
    assert text.count("epoch") == 1 and len(text.splitlines()) == 4


def test_csv_logger_in_fit_and_overwrites(tmp_path):
    import rnnlab
    from rnnlab.callbacks import CSVLogger
    from rnnlab.layers import Dense
    path = tmp_path / "sub" / "log.csv"
    model = rnnlab.Sequential([Dense(1, input_shape=(3,))])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    x, y = np.random.rand(20, 3).astype("float32"), np.random.rand(20, 1).astype("float32")
    for _ in range(2):
        hist = model.fit(x, y, epochs=3, verbose=0, validation_split=0.25, callbacks=[CSVLogger(path)])
    rows = path.read_text().splitlines()
    assert rows[0].split(",") == ["epoch"] + sorted(hist.history)
    assert len(rows) == 4 and [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2"]
    assert float(rows[-1].split(",")[rows[0].split(",").index("val_loss")]) == pytest.approx(hist.history["val_loss"][-1])


def test_csv_logger_bad_arguments(tmp_path):
    from rnnlab.callbacks import CSVLogger
    with pytest.raises(ValueError, match="separator must be a single character"):
        CSVLogger(tmp_path / "x.csv", separator=", ")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(ValueError, match="cannot open"):
        CSVLogger(tmp_path / "dir.csv").on_train_begin()
