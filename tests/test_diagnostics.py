"""rnnlab.diagnostics: per-time-step gradient norms (checked by finite differences on the state), the
vanishing gradient of SimpleRNN vs LSTM, Bidirectional labels, the plot, errors."""
import sys

import numpy as np
import pytest

import rnnlab
from rnnlab.diagnostics import gradient_norms_over_time, plot_gradient_norms
from rnnlab.layers import GRU, LSTM, Bidirectional, Dense, Embedding, SimpleRNN


def _fd_state_grad(model, x, y, t, state_index, eps=1e-6):
    """dL/dS_t (B, U) by central differences: the recurrent layer (model.layers[0]) is split at step t, the
    state after step t perturbed, the rest of the sequence run from it, the Dense head and loss applied."""
    rnn, head = model.layers[0], model.layers[1]
    cfg = rnn.get_config()
    cfg.update(return_sequences=True, return_state=True, go_backwards=False, name=None)
    clone = type(rnn).from_config(cfg)
    xs = x[:, ::-1] if rnn.go_backwards else x
    clone.build((None, None, xs.shape[2]))
    clone.set_weights(rnn.get_weights())
    T = xs.shape[1]
    first = clone.forward(xs[:, :t + 1])
    seq1, states = first[0], first[1:]

    def loss_with(states_t):
        if t + 1 < T:
            rest = clone.forward(xs[:, t + 1:], initial_state=[s.copy() for s in states_t])
            seq = np.concatenate([seq1[:, :t], states_t[0][:, None], rest[0]], axis=1)
        else:
            seq = np.concatenate([seq1[:, :t], states_t[0][:, None]], axis=1)
        out = seq if rnn.return_sequences else seq[:, -1]
        return model.loss(y, head.forward(out))

    g = np.zeros_like(states[state_index])
    for b in range(g.shape[0]):
        for u in range(g.shape[1]):
            plus = [s.copy() for s in states]
            minus = [s.copy() for s in states]
            plus[state_index][b, u] += eps
            minus[state_index][b, u] -= eps
            g[b, u] = (loss_with(plus) - loss_with(minus)) / (2 * eps)
    return g


@pytest.mark.parametrize("cell,kw,loss,state", [
    (SimpleRNN, dict(return_sequences=True), "mse", "h"),
    (LSTM, dict(), "binary_crossentropy", "h"),
    (LSTM, dict(return_sequences=True), "mse", "c"),
    (GRU, dict(go_backwards=True), "mse", "h"),
    (GRU, dict(reset_after=False, return_sequences=True, go_backwards=True), "mse", "h"),
])
def test_norms_equal_finite_differences(float64, cell, kw, loss, state):
    rng = np.random.default_rng(0)
    B, T, D, U = 3, 5, 2, 3
    out_units = 1 if loss == "binary_crossentropy" else 2
    model = rnnlab.Sequential([rnnlab.Input((T, D)), cell(U, **kw),
                               Dense(out_units, activation="sigmoid" if out_units == 1 else None)])
    model.compile("sgd", loss)
    x = rng.normal(size=(B, T, D))
    y_shape = (B, T, out_units) if kw.get("return_sequences") else (B, out_units)
    y = rng.integers(0, 2, y_shape).astype(float) if out_units == 1 else rng.normal(size=y_shape)
    name = model.layers[0].name
    got = gradient_norms_over_time(model, x, y, state=state, reduce="none")[name]    # (T, B), input order
    mean = gradient_norms_over_time(model, x, y, state=state)[name]
    np.testing.assert_allclose(mean, got.mean(axis=1), rtol=1e-12)
    si = model.layers[0]._state_names.index(state)
    for p in range(T):                                    # p = processing step
        g = _fd_state_grad(model, x, y, p, si)
        want = B * np.linalg.norm(g, axis=1)
        t = T - 1 - p if kw.get("go_backwards") else p
        np.testing.assert_allclose(got[t], want, rtol=1e-6, atol=1e-10)


def _first_bit(n, T, noise=8, seed=0):
    r = np.random.default_rng(seed)
    x = np.zeros((n, T, noise + 1), "float32")
    x[:, :, :noise] = r.normal(size=(n, T, noise))
    bit = r.integers(0, 2, n)
    x[:, 0, noise] = bit * 2 - 1
    return x, bit.astype("float32")[:, None]


def test_simple_rnn_gradient_vanishes_much_faster_than_lstm():
    """Remember-the-first-bit over T=60 noisy steps: the gradient reaching step 0 from the loss at the end."""
    T = 60
    x, y = _first_bit(256, T)
    ratios = {}
    for cell in (SimpleRNN, LSTM):
        rnnlab.set_random_seed(0)
        m = rnnlab.Sequential([rnnlab.Input((T, 9)), cell(16), Dense(1, activation="sigmoid")])
        m.compile("adam", "binary_crossentropy")
        n = gradient_norms_over_time(m, x, y, state="all")[m.layers[0].name]
        assert n.shape == (T,) and np.all(np.isfinite(n)) and np.all(n > 0)
        ratios[cell.__name__] = n[0] / n[T - 1]
    assert ratios["SimpleRNN"] < 1e-9
    assert ratios["LSTM"] > 1e-7
    assert ratios["LSTM"] / ratios["SimpleRNN"] > 1e3


def test_bidirectional_directions_in_input_order():
    T = 12
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, T, 3)).astype("float32"), rng.normal(size=(8, 1)).astype("float32")
    m = rnnlab.Sequential([rnnlab.Input((T, 3)), Bidirectional(LSTM(4)), Dense(1)])
    m.compile("sgd", "mse")
    res = gradient_norms_over_time(m, x, y)
    bi = m.layers[0]
    fw, bw = f"{bi.name}/{bi.forward_layer.name}", f"{bi.name}/{bi.backward_layer.name}"
    assert list(res) == [fw, bw]
    # the loss reads the forward direction's last step and the backward direction's last (= input step 0)
    assert np.argmax(res[fw]) == T - 1 and np.argmax(res[bw]) == 0


def test_masked_embedding_model_and_hook_is_off_afterwards():
    rng = np.random.default_rng(2)
    x = rng.integers(1, 20, (4, 7))
    x[0, 4:] = 0
    y = rng.integers(0, 2, (4, 1)).astype("float32")
    m = rnnlab.Sequential([Embedding(20, 5, mask_zero=True), SimpleRNN(6), Dense(1, activation="sigmoid")])
    m.compile("sgd", "binary_crossentropy")
    m.build((None, 7))
    res = gradient_norms_over_time(m, x, y, reduce="none")
    n = res[m.layers[1].name]
    assert n.shape == (7, 4) and np.all(np.isfinite(n))
    # masked steps of sample 0 (after its end) carry the state unchanged: the same gradient as its last real step
    np.testing.assert_allclose(n[4:, 0], n[3, 0], rtol=1e-6)
    layer = m.layers[1]
    assert layer._record_state_grads is False and not hasattr(layer, "state_grads")
    m.train_on_batch(x, y)
    assert not hasattr(layer, "state_grads")


def test_errors():
    m = rnnlab.Sequential([rnnlab.Input((4, 2)), SimpleRNN(3), Dense(1)])
    x, y = np.zeros((2, 4, 2), "float32"), np.zeros((2, 1), "float32")
    with pytest.raises(ValueError, match="needs a loss"):
        gradient_norms_over_time(m, x, y)
    m.compile("sgd", "mse")
    with pytest.raises(ValueError, match="state must be 'h', 'c' or 'all', got 'x'"):
        gradient_norms_over_time(m, x, y, state="x")
    with pytest.raises(ValueError, match="reduce must be 'mean' or 'none'"):
        gradient_norms_over_time(m, x, y, reduce="sum")
    with pytest.raises(ValueError, match="state='c' needs an LSTM"):
        gradient_norms_over_time(m, x, y, state="c")
    d = rnnlab.Sequential([rnnlab.Input((2,)), Dense(1)])
    d.compile("sgd", "mse")
    with pytest.raises(ValueError, match="no recurrent layer"):
        gradient_norms_over_time(d, np.zeros((2, 2), "float32"), y)
    with pytest.raises(ValueError, match="same number of samples"):
        gradient_norms_over_time(m, x, np.zeros((3, 1), "float32"))


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = plot_gradient_norms({"SimpleRNN": np.logspace(-8, 0, 20), "LSTM": np.logspace(-3, 0, 20)},
                               str(tmp_path / "sub" / "g.png"), title="t")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="non-empty dict"):
        plot_gradient_norms({}, str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match=r"norms\['a'\] must be a 1-D \(T,\) array, got shape \(2, 2\)"):
        plot_gradient_norms({"a": np.ones((2, 2))}, str(tmp_path / "x.png"))


def test_plot_without_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="plot_gradient_norms needs matplotlib: pip install matplotlib"):
        plot_gradient_norms({"a": np.ones(3)}, str(tmp_path / "x.png"))
