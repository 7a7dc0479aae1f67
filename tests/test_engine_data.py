"""Engine.fit/evaluate/predict on datasets of batches (PyDataset, generators, lists) and a subclass's own
train_step/test_step/predict_step (Keras 3's "customizing what happens in fit")."""
import math

import numpy as np
import pytest

import rnnlab
from rnnlab.layers import Dense, LSTM
from rnnlab.models.data_adapters import PyDataset


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5, 3)).astype("float64")
    y = rng.normal(size=(n, 2)).astype("float64")
    return x, y


def _model(seed=1):
    rnnlab.set_random_seed(seed)
    inp = rnnlab.Input((5, 3), dtype="float64")
    out = Dense(2, dtype="float64")(LSTM(4, dtype="float64")(inp))
    m = rnnlab.Model(inp, out)
    m.compile(rnnlab.optimizers.SGD(0.1), "mse", metrics=["mae"])
    return m


class Batches(PyDataset):
    def __init__(self, x, y, batch_size):
        super().__init__()
        self.x, self.y, self.bs = x, y, batch_size
        self.begins = self.ends = 0

    def __len__(self):
        return math.ceil(len(self.x) / self.bs)

    def __getitem__(self, i):
        sl = slice(i * self.bs, (i + 1) * self.bs)
        return self.x[sl], self.y[sl]

    def on_epoch_begin(self):
        self.begins += 1

    def on_epoch_end(self):
        self.ends += 1


def test_pydataset_trains_exactly_as_the_same_unshuffled_arrays():
    x, y = _data()
    a, b = _model(), _model()
    ha = a.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    ds = Batches(x, y, 8)
    hb = b.fit(ds, epochs=2, verbose=0)
    assert ds.begins == ds.ends == 2
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-12)
    np.testing.assert_allclose(ha.history["mae"], hb.history["mae"], rtol=1e-12)
    # evaluate / predict on a dataset agree with arrays
    np.testing.assert_allclose(a.evaluate(x, y, batch_size=8), b.evaluate(Batches(x, y, 8)), rtol=1e-12)
    np.testing.assert_allclose(a.predict(x), b.predict(Batches(x, y, 8)), rtol=0, atol=1e-12)


def test_generator_with_steps_per_epoch_and_a_restarting_iterable():
    x, y = _data()
    batches = [(x[i:i + 10], y[i:i + 10]) for i in range(0, 40, 10)]
    a, b, c = _model(), _model(), _model()
    class Restart:                                            # an iterable that restarts every epoch
        def __iter__(self):
            return iter(batches)
    a.fit(Restart(), epochs=2, verbose=0)

    def gen():
        while True:
            yield from batches
    b.fit(gen(), steps_per_epoch=4, epochs=2, verbose=0)      # one-shot, 4 batches per epoch
    c.fit(x, y, batch_size=10, epochs=2, shuffle=False, verbose=0)
    for wa, wb, wc in zip(a.get_weights(), b.get_weights(), c.get_weights()):
        np.testing.assert_allclose(wa, wc, rtol=0, atol=1e-12)
        np.testing.assert_allclose(wb, wc, rtol=0, atol=1e-12)


def test_a_generator_that_runs_dry_stops_training_with_a_warning():
    x, y = _data()
    m = _model()
    gen = ((x[i:i + 10], y[i:i + 10]) for i in range(0, 40, 10))
    with pytest.warns(RuntimeWarning, match="ran out of data"):
        h = m.fit(gen, epochs=3, verbose=0)
    assert h.epoch == [0]                                     # the first epoch read it to its end


def test_validation_on_a_dataset_and_bad_arguments():
    x, y = _data()
    m = _model()
    h = m.fit(Batches(x[:30], y[:30], 10), validation_data=Batches(x[30:], y[30:], 5), epochs=1, verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(m.evaluate(x[30:], y[30:], return_dict=True)["loss"], rel=1e-12)
    with pytest.raises(ValueError, match="so y must not be given"):
        m.fit(Batches(x, y, 8), y, verbose=0)
    with pytest.raises(ValueError, match="so batch_size must not be given"):
        m.fit(Batches(x, y, 8), batch_size=8, verbose=0)
    with pytest.raises(ValueError, match="steps_per_epoch applies to a dataset"):
        m.fit(x, y, steps_per_epoch=3, verbose=0)
    with pytest.raises(ValueError, match=r"data must be \(x, y\) or \(x, y, sample_weight\)"):
        m.fit(iter([(x[:8],)]), epochs=1, verbose=0)


class Custom(rnnlab.Model):
    """A custom step: the gradient of the compiled loss, scaled by 0.5 before the update (so that it is
    visibly not the built-in step), and a logged count."""

    def train_step(self, data):
        x, y = data
        loss = self.compute_gradients(x, y, training=True)
        for layer in self.layers:
            for k, g in layer.grads.items():
                if g is not None:
                    layer.grads[k] = g * 0.5
        self.apply_gradients(loss)
        self.calls = getattr(self, "calls", 0) + 1
        return {"loss": loss, "calls": self.calls}

    def test_step(self, data):
        x, y = data
        pred = self.predict_on_batch(x)
        return {"loss": float(np.mean((pred - y) ** 2)), "seen": len(x)}


def _custom(seed=1):
    rnnlab.set_random_seed(seed)
    inp = rnnlab.Input((5, 3), dtype="float64")
    out = Dense(2, dtype="float64")(LSTM(4, dtype="float64")(inp))
    m = Custom(inp, out)
    m.compile(rnnlab.optimizers.SGD(0.1), "mse")
    return m


def test_overridden_train_step_runs_in_fit_with_arrays_and_datasets():
    x, y = _data()
    ref = _model()
    ref.compile(rnnlab.optimizers.SGD(0.05), "mse")           # half the step = half the learning rate (SGD)
    ref.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    a, b = _custom(), _custom()
    ha = a.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, validation_data=(x[:8], y[:8]))
    b.fit(Batches(x, y, 8), epochs=2, verbose=0)
    assert a.calls == b.calls == 10
    assert ha.history["calls"] == [5, 10]                     # non-loss entries: shown as returned
    assert ha.history["val_seen"] == [8, 8]
    for w0, wa, wb in zip(ref.get_weights(), a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, w0, rtol=0, atol=1e-12)
        np.testing.assert_allclose(wb, w0, rtol=0, atol=1e-12)
    assert a.evaluate(x, y, return_dict=True)["loss"] == pytest.approx(ref.evaluate(x, y), rel=1e-10)


def test_custom_predict_step_and_custom_step_errors():
    class Doubled(rnnlab.Model):
        def predict_step(self, data):
            return 2 * self.predict_on_batch(data)

    rnnlab.set_random_seed(0)
    inp = rnnlab.Input((3,), dtype="float64")
    m = Doubled(inp, Dense(2, dtype="float64")(inp))
    x = np.random.default_rng(0).normal(size=(10, 3))
    np.testing.assert_allclose(m.predict(x, batch_size=4), 2 * m.predict_on_batch(x), rtol=1e-12)

    class Bad(rnnlab.Model):
        def train_step(self, data):
            return 1.0

    b = Bad(inp, Dense(2, dtype="float64")(inp))
    with pytest.raises(RuntimeError, match="call model.compile"):
        b.fit(x, x[:, :2], verbose=0)
    b.compile("sgd")                                          # a custom step needs no compiled loss
    with pytest.raises(TypeError, match="train_step must return a dict of logs, got float"):
        b.fit(x, x[:, :2], verbose=0)


def test_a_nan_in_a_custom_step_stops_training_before_the_update():
    x, y = _data()
    m = _custom()
    w0 = m.get_weights()
    bad = x.copy()
    bad[0, 0, 0] = np.nan
    with pytest.warns(RuntimeWarning, match="loss is nan"):
        h = m.fit(bad, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert "loss is nan" in h.stop_reason
    for a, b in zip(m.get_weights(), w0):
        np.testing.assert_array_equal(a, b)


def test_progress_of_a_generator_of_unknown_length(capsys):
    from rnnlab.training import ProgressBar

    bar = ProgressBar(0, interactive=True)
    assert bar.line(3, {"loss": 0.5}).startswith("3/Unknown - ")
    x, y = _data()
    m = _model()
    m.fit(((x[i:i + 10], y[i:i + 10]) for i in range(0, 40, 10)), epochs=1, verbose=2)
    out = capsys.readouterr().out
    assert "Epoch 1/1" in out and "4/4 - " in out
