"""Truncated BPTT (rnnlab.training.TBPTT, Sequential.fit(tbptt_steps=...)): windows, exact gradients
against PyTorch with detached states, state carry, learning across chunk boundaries, errors."""
import numpy as np
import pytest

import rnnlab
from rnnlab.callbacks import Callback
from rnnlab.layers import GRU, LSTM, Bidirectional, Dense, SimpleRNN
from rnnlab.optimizers import SGD, Adam
from rnnlab.training import TBPTT


def _model(cell=LSTM, units=3, D=2, out=2, B=4, stateful=True, **kw):
    return rnnlab.Sequential([rnnlab.Input((None, D), batch_size=B if stateful else None),
                              cell(units, stateful=stateful, return_sequences=True, **kw), Dense(out)])


class GradRecorder(Callback):
    """Copies every layer's gradients after each training step."""

    def __init__(self):
        super().__init__()
        self.grads = []

    def on_train_batch_end(self, step, logs=None):
        self.grads.append([np.array(l.grads[k].to_dense() if hasattr(l.grads[k], "to_dense") else l.grads[k])
                           for l in self.model.layers for k in l.params])


def test_windows_disjoint_and_overlapping():
    m = _model()
    assert TBPTT(m, 3).windows(10) == [(0, 3, 0, 3), (3, 6, 3, 6), (6, 9, 6, 9), (9, 10, 9, 10)]
    # k1=2, k2=5: an update every 2 steps, gradient through at most 5 steps, windows overlap by 3
    assert TBPTT(m, 2, 5).windows(7) == [(0, 2, 0, 0), (0, 4, 2, 1), (1, 6, 4, 3), (3, 7, 6, 7)]
    assert TBPTT(m, 10).windows(10) == [(0, 10, 0, 10)]


def test_full_length_equals_ordinary_bptt(float64):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 9, 2)), rng.normal(size=(4, 9, 2))
    a, b = _model(), _model(stateful=False)
    b.build((None, 9, 2))
    b.set_weights(a.get_weights())
    a.compile(SGD(0.1), "mse")
    b.compile(SGD(0.1), "mse")
    h = a.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, tbptt_steps=9)
    loss_b = b.train_on_batch(x, y)
    assert h.history["loss"][0] == pytest.approx(loss_b, rel=1e-13)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-13, atol=1e-15)
    assert not np.allclose(a.get_weights()[0], _model().get_weights()[0])  # it did update


def _torch_truncated_grads(model, x, y, windows):
    """Per-window gradients by PyTorch autograd: state detached at each window start, loss = MSE over the
    window's new steps, next window restarted from the state at its start (computed without gradient)."""
    torch = pytest.importorskip("torch")
    from rnnlab.interop import dense_to_torch, lstm_to_torch, torch_module_grads

    lstm_l, dense_l = model.layers
    D, U = lstm_l.params["kernel"].shape[0], lstm_l.units
    lstm = torch.nn.LSTM(D, U, batch_first=True).double()
    lin = torch.nn.Linear(U, dense_l.units).double()
    sd = {k + "_l0": torch.tensor(v) for k, v in lstm_to_torch(*lstm_l.get_weights()).items()}
    lstm.load_state_dict(sd)
    lin.load_state_dict({k: torch.tensor(v) for k, v in dense_to_torch(*dense_l.get_weights()).items()})
    xt, yt = torch.tensor(x), torch.tensor(y)
    B = x.shape[0]
    state = (torch.zeros(1, B, U, dtype=torch.float64), torch.zeros(1, B, U, dtype=torch.float64))
    out = []
    for s, e, ls, ns in windows:
        lstm.zero_grad()
        lin.zero_grad()
        h0, c0 = state[0].detach(), state[1].detach()
        seq, _ = lstm(xt[:, s:e], (h0, c0))
        pred = lin(seq)
        loss = ((pred[:, ls - s:] - yt[:, ls:e]) ** 2).mean()
        loss.backward()
        g = torch_module_grads(lstm)[0][0]
        out.append([np.asarray(a) for a in g] + [lin.weight.grad.numpy().T.copy(), lin.bias.grad.numpy().copy()])
        with torch.no_grad():
            if ns > s:
                _, state = lstm(xt[:, s:ns], (h0, c0))
            else:
                state = (h0, c0)
    return out


@pytest.mark.parametrize("k1,k2", [(4, 4), (5, 5), (3, 7), (2, 5)])
def test_truncated_gradient_equals_torch_with_detached_states(float64, k1, k2):
    rng = np.random.default_rng(1)
    T = 13
    x, y = rng.normal(size=(4, T, 2)), rng.normal(size=(4, T, 2))
    m = _model()
    m.compile(SGD(0.0), "mse")  # lr 0: the weights stay, so every window is compared at the same weights
    rec = GradRecorder()
    m.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, tbptt_steps=(k1, k2), callbacks=[rec])
    windows = TBPTT(m, k1, k2).windows(T)
    ref = _torch_truncated_grads(m, x, y, windows)
    assert len(rec.grads) == len(ref) == len(windows)
    for got, want in zip(rec.grads, ref):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)
    # truncation changes the gradient: the full-BPTT gradient of the whole-sequence loss is different
    full = _model()
    full.set_weights(m.get_weights())
    full.compile(SGD(0.0), "mse")
    rec_full = GradRecorder()
    full.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, tbptt_steps=T, callbacks=[rec_full])
    assert not np.allclose(rec.grads[-1][1], rec_full.grads[0][1])


def test_tbptt_helper_train_on_batch_updates_once_per_window(float64):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(4, 10, 2)), rng.normal(size=(4, 10, 2))
    m = _model(cell=GRU)
    m.compile(SGD(0.05), "mse")
    losses = TBPTT(m, 4).train_on_batch(x, y)
    assert len(losses) == 3 and m.optimizer.iterations == 3
    assert all(np.isfinite(losses))


@pytest.mark.parametrize("cell", [SimpleRNN, LSTM, GRU])
def test_state_carried_chunked_output_equals_unchunked(cell):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 12, 2)).astype("float32")
    st = _model(cell=cell)
    full = _model(cell=cell, stateful=False)
    full.build((None, 12, 2))
    full.set_weights(st.get_weights())
    want = full.predict(x)
    got = np.concatenate([st.predict(x[:, s:s + 5], batch_size=4) for s in range(0, 12, 5)], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # after fit(tbptt) the model's states are the carried ones; reset_states() returns to zeros
    st.reset_states()
    np.testing.assert_allclose(st.predict(x, batch_size=4), want, rtol=1e-5, atol=1e-6)


def test_windows_carry_state_through_fit_with_lr_zero():
    """With lr 0, the per-window outputs of a TBPTT epoch (loss on new steps) equal the unchunked loss."""
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(4, 11, 2)).astype("float32"), rng.normal(size=(4, 11, 2)).astype("float32")
    m = _model()
    m.compile(SGD(0.0), "mse")
    h = m.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, tbptt_steps=3)
    m.reset_states()
    full = m.evaluate(x, y, batch_size=4)
    assert h.history["loss"][0] == pytest.approx(full, rel=1e-5)


def _echo(delay, B=16, T=400, seed=1):
    r = np.random.default_rng(seed)
    bits = r.integers(0, 2, (B, T)).astype("float32")
    y = np.zeros_like(bits)
    y[:, delay:] = bits[:, :-delay]
    return bits[..., None] * 2 - 1, y[..., None]


def _echo_model(stateful):
    return rnnlab.Sequential([rnnlab.Input((None, 1), batch_size=16 if stateful else None),
                              SimpleRNN(16, stateful=stateful, return_sequences=True),
                              Dense(1, activation="sigmoid")])


def _position_accuracy(p, y, delay, k):
    acc = ((p > 0.5) == (y > 0.5))[:, delay:, 0]
    pos = (np.arange(y.shape[1]) % k)[delay:]
    return acc.mean(), [acc[:, pos == j].mean() for j in range(k)]


def test_learns_echo_across_chunk_boundaries_only_with_carried_state():
    """y_t = x_{t-3} with chunks of 4: at chunk positions 0-2 the needed bit lies in the previous chunk."""
    delay, k = 3, 4
    x, y = _echo(delay)
    xt, yt = _echo(delay, seed=2)
    carry = _echo_model(True)
    carry.compile(Adam(0.01), "binary_crossentropy")
    carry.fit(x, y, batch_size=16, epochs=20, shuffle=False, verbose=0, tbptt_steps=k)
    carry.reset_states()
    acc_c, pos_c = _position_accuracy(carry.predict(xt, batch_size=16), yt, delay, k)
    # the same chunks as independent sequences (state reset at every chunk boundary)
    rnnlab.set_random_seed(0)
    reset = _echo_model(False)
    reset.compile(Adam(0.01), "binary_crossentropy")
    reset.fit(x.reshape(-1, k, 1), y.reshape(-1, k, 1), batch_size=16, epochs=20, verbose=0)
    p = reset.predict(xt.reshape(-1, k, 1)).reshape(yt.shape)
    acc_r, pos_r = _position_accuracy(p, yt, delay, k)
    assert acc_c > 0.97 and min(pos_c) > 0.95
    assert max(pos_r[:3]) < 0.6 and pos_r[3] > 0.95 and acc_r < 0.7


def test_k2_longer_than_k1_reaches_further_back():
    """Delay 5: chunks of 4 give no gradient path from any target to its source; (k1, k2) = (2, 8) does."""
    delay = 5
    x, y = _echo(delay)
    xt, yt = _echo(delay, seed=2)
    accs = {}
    for steps in (4, (2, 8)):
        rnnlab.set_random_seed(0)
        m = _echo_model(True)
        m.compile(Adam(0.01), "binary_crossentropy")
        m.fit(x, y, batch_size=16, epochs=20, shuffle=False, verbose=0, tbptt_steps=steps)
        m.reset_states()
        accs[steps if isinstance(steps, int) else "2,8"] = _position_accuracy(
            m.predict(xt, batch_size=16), yt, delay, 2)[0]
    assert accs[4] < 0.7 and accs["2,8"] > 0.97


# ------------------------------------------------------------------------------ errors
def test_bad_steps():
    m = _model()
    for bad in (0, -2, 1.5, True, "4"):
        with pytest.raises(ValueError, match="k1 must be an int >= 1"):
            TBPTT(m, bad)
    with pytest.raises(ValueError, match=r"k2 .* must be >= k1"):
        TBPTT(m, 5, 3)
    m.compile("sgd", "mse")
    x = np.zeros((4, 6, 2), "float32")
    with pytest.raises(ValueError, match="tbptt_steps must be an int k or a pair"):
        m.fit(x, x, batch_size=4, verbose=0, tbptt_steps=(1, 2, 3))
    with pytest.raises(ValueError, match="k2 must be an int >= 1"):
        m.fit(x, x, batch_size=4, verbose=0, tbptt_steps=(2, 0))


def test_bad_models():
    with pytest.raises(ValueError, match=r"layer 0 'simple_rnn' \(SimpleRNN\) is not stateful"):
        TBPTT(_model(cell=SimpleRNN, stateful=False), 3)
    with pytest.raises(ValueError, match="no recurrent layer"):
        TBPTT(rnnlab.Sequential([rnnlab.Input((5, 2)), Dense(3)]), 3)
    with pytest.raises(ValueError, match="go_backwards=True"):
        TBPTT(_model(go_backwards=True), 3)
    m = rnnlab.Sequential([rnnlab.Input((None, 2), batch_size=4), LSTM(3, stateful=True)])
    with pytest.raises(ValueError, match="return_sequences=False"):
        TBPTT(m, 3)
    bi = rnnlab.Sequential([rnnlab.Input((None, 2), batch_size=4),
                            Bidirectional(LSTM(3, stateful=True, return_sequences=True))])
    with pytest.raises(ValueError, match="wraps a recurrent layer"):
        TBPTT(bi, 3)
    with pytest.raises(TypeError, match="expected a Sequential model"):
        TBPTT(object(), 3)


def test_bad_data_and_batch_sizes():
    m = _model(B=4)
    m.compile("sgd", "mse")
    x = np.zeros((8, 6, 2), "float32")
    with pytest.raises(ValueError, match=r"stateful with batch size 4, but batch_size=2"):
        m.fit(x, x, batch_size=2, verbose=0, tbptt_steps=3)
    with pytest.raises(ValueError, match=r"number of sequences \(6\) to be a multiple of batch_size \(4\)"):
        m.fit(x[:6], x[:6], batch_size=4, verbose=0, tbptt_steps=3)
    with pytest.raises(ValueError, match=r"one target per time step, y of shape \(8, 6, \.\.\.\)"):
        m.fit(x, np.zeros((8, 2), "float32"), batch_size=4, verbose=0, tbptt_steps=3)
    with pytest.raises(ValueError, match=r"fit\(validation\).*multiple of batch_size"):
        m.fit(x, x, batch_size=4, verbose=0, tbptt_steps=3, validation_data=(x[:5], x[:5]))
    pooled = rnnlab.Sequential([rnnlab.Input((None, 2), batch_size=4),
                                LSTM(3, stateful=True, return_sequences=True),
                                rnnlab.layers.GlobalAveragePooling1D()])
    pooled.compile("sgd", "mse")
    with pytest.raises(ValueError, match=r"one output per time step .* outputs \(4, 3\)"):
        pooled.fit(x, np.zeros((8, 6, 3), "float32"), batch_size=4, verbose=0, tbptt_steps=3)


def test_masks_and_per_step_sample_weight(float64):
    """Padded ids (mask_zero) and (N, T) sample weights: k = T equals train_on_batch; with k < T each window
    sees only its own slice of the weights (a window whose weights are all zero leaves the weights alone)."""
    rng = np.random.default_rng(5)
    T = 8
    x = rng.integers(1, 20, (4, T))
    x[0, 5:] = 0
    x[2, 2:] = 0
    y = rng.integers(0, 3, (4, T))
    sw = rng.uniform(0.5, 2.0, (4, T))

    def model(stateful):
        return rnnlab.Sequential([rnnlab.Input((T if not stateful else None,), batch_size=4 if stateful else None,
                                               dtype="int32"),
                                  rnnlab.layers.Embedding(20, 3, mask_zero=True),
                                  LSTM(4, stateful=stateful, return_sequences=True),
                                  Dense(3, activation="softmax")])
    a, b = model(True), model(False)
    b.set_weights(a.get_weights())
    for m in (a, b):
        m.compile(SGD(0.1), "sparse_categorical_crossentropy")
    a.fit(x, y, batch_size=4, shuffle=False, verbose=0, tbptt_steps=T, sample_weight=sw)
    b.train_on_batch(x, y, sample_weight=sw)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-12, atol=1e-14)
    sw2 = sw.copy()
    sw2[:, 4:] = 0.0
    before = a.get_weights()
    losses = TBPTT(a, 4).train_on_batch(x, y, sample_weight=sw2)
    assert losses[0] > 0 and losses[1] == 0.0
    after_first = a.get_weights()
    assert not np.allclose(after_first[1], before[1])
    c = model(True)
    c.set_weights(before)
    c.compile(SGD(0.1), "sparse_categorical_crossentropy")
    TBPTT(c, 4).train_on_batch(x[:, :4], y[:, :4], sample_weight=sw2[:, :4])   # the first window alone
    for wa, wc in zip(after_first, c.get_weights()):
        np.testing.assert_allclose(wa, wc, rtol=1e-12, atol=1e-14)


def test_dropout_layers_train():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(4, 12, 2)).astype("float32"), rng.normal(size=(4, 12, 1)).astype("float32")
    m = rnnlab.Sequential([rnnlab.Input((None, 2), batch_size=4),
                           GRU(5, stateful=True, return_sequences=True, dropout=0.2, recurrent_dropout=0.2),
                           rnnlab.layers.Dropout(0.3), Dense(1)])
    m.compile("adam", "mse")
    h = m.fit(x, y, batch_size=4, epochs=3, verbose=0, tbptt_steps=(3, 5), validation_data=(x, y))
    assert len(h.history["loss"]) == 3 and all(np.isfinite(h.history["val_loss"]))
    assert m.optimizer.iterations == 3 * 4


def test_stateful_layer_keeps_the_model_batch_size_from_its_first_call():
    """Input(shape, batch_size=4) fixes a stateful layer's batch before any call (as batch_input_shape does)."""
    m = rnnlab.Sequential([rnnlab.Input((None, 2), batch_size=4), LSTM(3, stateful=True)])
    with pytest.raises(ValueError, match="stateful and was set up for batch size 4, got a batch of 2"):
        m.predict(np.zeros((2, 5, 2), "float32"), batch_size=2)
    assert m.predict(np.zeros((4, 5, 2), "float32"), batch_size=4).shape == (4, 3)
