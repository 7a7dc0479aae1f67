"""The training machinery: progress output, the NaN/inf guard, batching, casting, masks, errors."""
import io
import math
import re

import numpy as np
import pytest

import rnnlab
from rnnlab import training
from rnnlab.backend import RowSparseGrad
from rnnlab.layers import Dense, Dropout, Embedding, SimpleRNN


class TTY(io.StringIO):
    def isatty(self):
        return True


def _dense_model(d=3, lr=0.05, metrics=None):
    m = rnnlab.Sequential([rnnlab.Input((d,)), Dense(1)])
    m.compile(rnnlab.optimizers.SGD(lr), "mse", metrics)
    return m


def _data(n=40, d=3, seed=0):
    gen = np.random.default_rng(seed)
    x = gen.normal(size=(n, d)).astype("float32")
    return x, x.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------ progress output
def test_live_bar_on_a_terminal_redraws_in_place_and_ends_with_a_summary():
    x, y = _data(400)
    buf = TTY()
    _dense_model(metrics=["mae"]).fit(x, y, batch_size=8, epochs=1, verbose=1, stream=buf)
    text = buf.getvalue()
    assert text.startswith("Epoch 1/1\n")
    frames = text[len("Epoch 1/1\n"):].split("\r")[1:]
    live, final = frames[:-1], frames[-1]
    assert live, "a terminal gets at least one live frame"
    assert re.match(r"\s*\d+/50 \[=*>?\.*\] - ETA: \d+s - loss: \d+\.\d{4} - mae: \d+\.\d{4} - "
                    r"\d+\.\d samples/s", live[0])
    assert re.match(r"50/50 \[={30}\] - \d+s \d+(ms|us)/step - loss: \d+\.\d{4} - mae: \d+\.\d{4} - "
                    r"\d+\.\d samples/s\s*\n$", final)


def test_live_bar_is_throttled_to_ten_redraws_per_second(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(training.time, "perf_counter", lambda: clock[0])
    buf = TTY()
    bar = training.ProgressBar(200, stream=buf)
    for step in range(1, 201):
        clock[0] += 0.01  # 100 updates per second, 2 s in all
        bar.update(step, {"loss": 1.0 / step})
    bar.finish(200, {"loss": 0.0005})
    draws = buf.getvalue().count("\r")
    assert 20 <= draws <= 23  # ~10 per second over 2 s, plus the last step and the final line
    assert buf.getvalue().endswith("\n") and "loss: 5.0000e-04" in buf.getvalue()


def test_not_a_terminal_gets_only_final_lines_and_verbose_2_one_line_per_epoch():
    x, y = _data(40)
    m = _dense_model()
    buf = io.StringIO()
    m.fit(x, y, batch_size=8, epochs=2, verbose=1, stream=buf, validation_data=(x[:8], y[:8]))
    lines = buf.getvalue().split("\n")
    assert "\r" not in buf.getvalue()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and lines[4] == ""
    for line in (lines[1], lines[3]):
        assert re.fullmatch(r"5/5 \[={30}\] - \d+s \d+(ms|us)/step - loss: \S+ - val_loss: \S+ - [\d.]+ samples/s",
                            line), line
    buf = io.StringIO()
    m.fit(x, y, batch_size=8, epochs=2, verbose=2, stream=buf)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 4 and lines[0] == "Epoch 1/2"
    assert re.fullmatch(r"5/5 - \d+s - \d+(ms|us)/step - loss: \S+ - [\d.]+ samples/s", lines[1]), lines[1]


def test_verbose_0_is_silent(capsys):
    x, y = _data(16)
    m = _dense_model()
    m.fit(x, y, epochs=2, verbose=0)
    m.evaluate(x, y, verbose=0)
    m.predict(x)
    assert capsys.readouterr() == ("", "")


def test_value_and_time_formatting():
    assert training._fmt_value(0.43125) == "0.4313" and training._fmt_value(2.5e-5) == "2.5000e-05"
    assert training._fmt_time(3.4) == "3s" and training._fmt_time(75) == "1:15" and training._fmt_time(3725) == "1:02:05"
    assert training._fmt_per_step(0.0253) == "25ms/step" and training._fmt_per_step(3e-4) == "300us/step"
    assert training._fmt_per_step(2.0) == "2s/step"


# ------------------------------------------------------------------ NaN / inf guard
def test_exploding_learning_rate_stops_before_the_bad_update():
    x, y = _data(64)
    y = y * 100
    m = _dense_model(lr=1e4)
    snapshots = []
    cb = rnnlab.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: snapshots.append((b, [w.copy() for w in m.get_weights()])))
    with pytest.warns(RuntimeWarning) as rec:
        h = m.fit(x, y, batch_size=8, epochs=50, shuffle=False, verbose=0, callbacks=[cb])
    msgs = [str(w.message) for w in rec if "training stopped" in str(w.message)]
    assert len(msgs) == 1
    msg = msgs[0]
    assert re.search(r"(loss|gradient norm) is (nan|inf) at epoch \d+, step \d+ \(batch index \d+\): update skipped",
                     msg), msg
    epoch, step = map(int, re.search(r"epoch (\d+), step (\d+)", msg).groups())
    assert m.stop_training and h.stop_reason == msg == m.stop_reason
    assert epoch < 50 and len(snapshots) == (epoch - 1) * 8 + step - 1  # every earlier step succeeded
    # the epoch with the refused step is recorded when at least one of its steps succeeded
    assert h.epoch == list(range(epoch if step > 1 else epoch - 1))
    assert all(np.isfinite(h.history["loss"]))
    for a, b in zip(m.get_weights(), snapshots[-1][1]):
        np.testing.assert_array_equal(a, b)
        assert np.all(np.isfinite(a))


class _InfGradDense(Dense):
    """A Dense whose weight gradient becomes inf on a chosen call (finite loss, bad gradient)."""

    bad_call = 2

    def backward(self, grad):
        out = super().backward(grad)
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == self.bad_call:
            self.grads["kernel"][0, 0] = np.inf
        return out


def test_non_finite_gradient_with_finite_loss_is_refused():
    x, y = _data(32)
    layer = _InfGradDense(1)
    m = rnnlab.Sequential([rnnlab.Input((3,)), layer])
    m.compile(rnnlab.optimizers.Adam(0.01), "mse")
    after_first = []
    cb = rnnlab.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: after_first.append(m.get_weights()))
    with pytest.warns(RuntimeWarning, match=r"gradient norm is inf at epoch 1, step 2 \(batch index 1\)"):
        h = m.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0, callbacks=[cb])
    assert len(after_first) == 1 and m.optimizer.iterations == 1
    for a, b in zip(m.get_weights(), after_first[0]):
        np.testing.assert_array_equal(a, b)
    assert h.epoch == [0] and h.history["loss"][0] > 0  # the partial epoch keeps its finite step


def test_grads_finite_handles_overflow_and_sparse():
    big = np.full((1000,), 1e30, dtype=np.float32)  # finite, but its float32 sum of squares overflows
    ok, norm = training.grads_finite([big, None])
    assert ok and norm == pytest.approx(1e30 * math.sqrt(1000), rel=1e-6)
    ok, _ = training.grads_finite([np.array([1.0, np.nan], dtype=np.float32)])
    assert not ok
    sparse = RowSparseGrad(np.array([1]), np.array([[np.inf, 0.0]], dtype=np.float32), (3, 2))
    assert not training.grads_finite([sparse])[0]
    ok, norm = training.grads_finite([np.array([3.0, 4.0], dtype=np.float32)])
    assert ok and norm == pytest.approx(5.0)


# ------------------------------------------------------------------ data handling
class _Spy(Dense):
    def forward(self, x, training=False, mask=None):
        self.seen = getattr(self, "seen", []) + [(x.dtype, x[:, 0].copy())]
        return super().forward(x, training=training, mask=mask)


def test_x_is_cast_to_the_model_dtype_and_batches_keep_order_without_shuffle():
    spy = _Spy(1)
    m = rnnlab.Sequential([rnnlab.Input((1,)), spy])
    m.compile("sgd", "mse")
    x = np.arange(10, dtype=np.float64).reshape(10, 1)
    m.fit(x, np.zeros((10, 1)), batch_size=4, shuffle=False, verbose=0)
    assert [d for d, _ in spy.seen] == [np.float32] * 3
    assert np.concatenate([v for _, v in spy.seen]).tolist() == list(range(10))
    spy.seen = []
    m.fit(x.astype(int), np.zeros((10, 1)), batch_size=4, shuffle=True, verbose=0)  # ints into Dense: floats
    assert [d for d, _ in spy.seen] == [np.float32] * 3
    assert sorted(np.concatenate([v for _, v in spy.seen]).tolist()) == list(range(10))


def test_token_ids_stay_integers_and_declared_input_dtype():
    m = rnnlab.Sequential([rnnlab.Input((4,), dtype="int32"), Embedding(10, 2)])
    out = m.predict(np.array([[1.0, 2.0, 3.0, 0.0]]))  # integral floats become int32 ids
    np.testing.assert_array_equal(out[0, 1], m.layers[0].params["embeddings"][2])
    with pytest.raises(TypeError, match=r"declared with dtype int32 \(token ids\), got non-integer values"):
        m.predict(np.array([[1.5, 2.0, 3.0, 0.0]]))
    with pytest.raises(TypeError, match="Input: dtype must be a numeric dtype"):
        rnnlab.Input((3,), dtype="U3")


def test_output_mask_reaches_the_loss_and_metrics():
    m = rnnlab.Sequential([Embedding(12, 4, mask_zero=True, input_length=6),
                           SimpleRNN(5, return_sequences=True), Dense(3, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    gen = np.random.default_rng(0)
    ids = gen.integers(1, 12, size=(8, 6))
    ids[:, 4:] = 0  # padding
    y = gen.integers(0, 3, size=(8, 6))
    loss, acc = m.evaluate(ids, y)
    probs = m.predict(ids)
    mask = ids != 0
    p_true = np.take_along_axis(probs, y[..., None], axis=-1)[..., 0]
    assert loss == pytest.approx(float(np.mean(-np.log(p_true[mask]))), rel=1e-5)
    assert loss != pytest.approx(float(np.mean(-np.log(p_true))), rel=1e-3)
    assert acc == pytest.approx(float(np.mean(probs.argmax(-1)[mask] == y[mask])))


def test_sample_weight_scales_the_loss_and_is_sliced_with_the_batches():
    x, y = _data(20)
    m = _dense_model()
    base = m.evaluate(x, y, batch_size=7)
    assert m.evaluate(x, y, batch_size=7, sample_weight=np.full(20, 2.0)) == pytest.approx(2 * base, rel=1e-6)
    w = np.zeros(20)
    w[:10] = 1.0
    half = m.evaluate(x[:10], y[:10], batch_size=10)
    assert m.evaluate(x, y, batch_size=20, sample_weight=w) == pytest.approx(half / 2, rel=1e-6)
    with pytest.raises(ValueError, match="sample_weight has 19 entries for 20 samples"):
        m.fit(x, y, sample_weight=np.ones(19), verbose=0)


def _rnn_regressor(T=5, D=3, lr=0.1):
    m = rnnlab.Sequential([rnnlab.Input((T, D)), SimpleRNN(4), Dense(1)])
    m.compile(rnnlab.optimizers.SGD(lr), "mse")
    return m


def _seq_data(n=16, T=5, D=3, seed=0):
    gen = np.random.default_rng(seed)
    x = gen.normal(size=(n, T, D))
    return x, x.sum(axis=(1, 2))[:, None] + gen.normal(size=(n, 1))


def test_fit_with_all_zero_sample_weights_leaves_the_weights_unchanged():
    """Plain fit (no tbptt): zero weights on every sample give a zero gradient at every step."""
    x, y = _seq_data()
    m = _rnn_regressor()
    before = m.get_weights()
    m.fit(x, y, batch_size=5, epochs=1, sample_weight=np.zeros(len(x)), verbose=0)   # 4 steps, last one partial
    for a, b in zip(m.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    m.fit(x, y, batch_size=5, epochs=1, verbose=0)                                  # sanity: unweighted fit moves
    assert not all(np.array_equal(a, b) for a, b in zip(m.get_weights(), before))


def test_fit_sample_weight_step_equals_training_on_the_weighted_samples_only(float64):
    """One full-batch SGD step of fit (no tbptt, shuffled) with weights [w, 0] equals one step on the first
    half alone with the same weights w at half the learning rate: the loss is sum_i w_i l_i / batch_size
    (Keras' sum_over_batch_size: the divisor is the batch size, not the sum of the weights), and the
    batch of the first half alone is half as large."""
    n, lr = 8, 0.1
    x, y = _seq_data(2 * n)
    w = np.random.default_rng(1).uniform(0.5, 2.0, n)   # unequal, so weights sliced with the wrong rows show
    a = _rnn_regressor(lr=lr)
    b = _rnn_regressor(lr=lr / 2)
    b.set_weights(a.get_weights())
    start = a.get_weights()
    a.fit(x, y, batch_size=2 * n, epochs=1, shuffle=True, sample_weight=np.concatenate([w, np.zeros(n)]), verbose=0)
    b.fit(x[:n], y[:n], batch_size=n, epochs=1, shuffle=False, sample_weight=w, verbose=0)
    for wa, wb, w0 in zip(a.get_weights(), b.get_weights(), start):
        assert np.max(np.abs(wa - w0)) > 1e-4                       # a real step was taken
        np.testing.assert_allclose(wa, wb, rtol=1e-12, atol=1e-14)
    c = _rnn_regressor(lr=lr)                                        # the same step without the weights differs
    c.set_weights(start)
    c.fit(x, y, batch_size=2 * n, epochs=1, shuffle=False, verbose=0)
    assert not np.allclose(c.get_weights()[0], a.get_weights()[0], rtol=1e-6, atol=0)


def test_validation_data_and_split_arguments():
    x, y = _data(20)
    m = _dense_model()
    h = m.fit(x[:15], y[:15], validation_data=(x[15:], y[15:], np.full(5, 3.0)), epochs=1, verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(3 * m.evaluate(x[15:], y[15:]), rel=1e-5)
    with pytest.raises(ValueError, match=r"validation_data must be \(x_val, y_val\)"):
        m.fit(x, y, validation_data=x, verbose=0)
    with pytest.raises(ValueError, match=r"validation_split must be in \(0, 1\), got 1.5"):
        m.fit(x, y, validation_split=1.5, verbose=0)
    with pytest.raises(ValueError, match="x and y must have the same number of samples, got x: 5 and y: 4"):
        m.fit(x, y, validation_data=(x[:5], y[:4]), verbose=0)


def test_argument_and_state_errors():
    x, y = _data(10)
    m = rnnlab.Sequential([rnnlab.Input((3,)), Dense(1)])
    with pytest.raises(RuntimeError, match="call model.compile"):
        m.fit(x, y, verbose=0)
    m.compile("adam")
    with pytest.raises(ValueError, match="compiled without a loss"):
        m.fit(x, y, verbose=0)
    assert m.predict(x).shape == (10, 1)  # predicting needs no loss
    m.compile("adam", "mse")
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        m.fit(x, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="epochs must be a non-negative int, got -1"):
        m.fit(x, y, epochs=-1, verbose=0)
    with pytest.raises(ValueError, match="y is required"):
        m.fit(x, verbose=0)
    with pytest.raises(ValueError, match=r"expected last dimension 3 .* found shape \(10, 4\)"):
        m.fit(np.zeros((10, 4)), y, verbose=0)


def test_train_test_predict_on_batch():
    x, y = _data(12)
    m = _dense_model(metrics=["mae"])
    before = m.test_on_batch(x, y, return_dict=True)
    assert set(before) == {"loss", "mae"}
    logs = m.train_on_batch(x, y, return_dict=True)
    assert logs["loss"] == pytest.approx(before["loss"], rel=1e-6)  # loss of the predictions before the update
    assert m.test_on_batch(x, y)[0] < before["loss"]
    # the same batch gives the same bits; other batch sizes only agree to float32 rounding, because a BLAS may
    # sum a GEMM in a different order for another row count (seen: 3e-8 with OpenBLAS's AVX-512 kernels)
    np.testing.assert_array_equal(m.predict_on_batch(x), m.predict(x, batch_size=12))
    np.testing.assert_allclose(m.predict_on_batch(x), m.predict(x, batch_size=5), rtol=1e-6, atol=1e-7)
    assert m.predict(x[:0]).shape == (0, 1)


def test_same_seed_same_history_with_dropout_and_shuffle():
    x, y = _data(48, d=4)

    def run(seed):
        rnnlab.set_random_seed(seed)
        m = rnnlab.Sequential([rnnlab.Input((4,)), Dense(8, activation="relu"), Dropout(0.3), Dense(1)])
        m.compile("adam", "mse")
        return m.fit(x, y, batch_size=8, epochs=3, verbose=0).history["loss"]

    assert run(3) == run(3)
    assert run(3) != run(4)


class _CountingEmbedding(Embedding):
    def backward(self, grad):
        self.backward_calls = getattr(self, "backward_calls", 0) + 1
        return super().backward(grad)


@pytest.mark.parametrize("frozen", [True, False])
def test_backward_skips_layers_before_the_first_trainable_one(frozen):
    emb = _CountingEmbedding(10, 3, input_length=4)
    emb.trainable = not frozen
    m = rnnlab.Sequential([emb, SimpleRNN(2), Dense(1)])
    m.compile("sgd", "mse")
    before = emb.get_weights()[0]
    ids = np.random.default_rng(0).integers(0, 10, size=(8, 4))
    m.fit(ids, np.ones((8, 1)), batch_size=4, verbose=0)
    assert getattr(emb, "backward_calls", 0) == (0 if frozen else 2)
    assert np.array_equal(emb.get_weights()[0], before) == frozen
