"""Weight tying (TiedEmbedding + TiedDense): summed gradient by finite differences and PyTorch, counts, files."""
import numpy as np
import pytest

import rnnlab
from rnnlab import losses
from rnnlab.layers import LSTM, Dense
from rnnlab.layers.tied import TiedDense, TiedEmbedding, link_tied_layers
from rnnlab.testing import numerical_gradient

V, D = 7, 4


def _model(hidden="lstm"):
    mid = LSTM(D, return_sequences=True, name="mid") if hidden == "lstm" else Dense(D, activation="tanh", name="mid")
    m = rnnlab.Sequential([rnnlab.Input((None,), dtype="int32"), TiedEmbedding(V, D, name="embedding"), mid,
                           TiedDense("embedding", units=V, bias_initializer="random_normal", name="out")])
    link_tied_layers(m)
    m.compile("sgd", loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    return m


def _data():
    rng = np.random.default_rng(0)
    return rng.integers(0, V, (3, 5)).astype(np.int32), rng.integers(0, V, (3, 5))


def _loss(m, x, y):
    return m.loss(y, m._forward(x, training=False)[0])


def _grads(m, x, y):
    out = m._forward(x, training=True)[0]
    _, g = m.loss.forward_backward(y, out)
    m._backward(g)
    return {p: np.asarray(o.grads[w].to_dense() if hasattr(o.grads[w], "to_dense") else o.grads[w]).copy()
            for p, o, w in m.iter_weights()}


def test_gradients_equal_finite_differences(float64):
    m = _model()
    x, y = _data()
    grads = _grads(m, x, y)
    assert isinstance(grads["embedding/embeddings"], np.ndarray)
    for p, owner, w in m.iter_weights():
        num = numerical_gradient(lambda: _loss(m, x, y), owner.params[w])
        np.testing.assert_allclose(grads[p], num, rtol=1e-6, atol=1e-9, err_msg=p)
    # rows of E never used as input still get the output layer's gradient
    unused = sorted(set(range(V)) - set(x.ravel().tolist()))
    if unused:
        assert np.abs(grads["embedding/embeddings"][unused]).sum() > 0


def test_torch_parity(float64):
    torch = pytest.importorskip("torch")
    m = _model(hidden="dense")
    x, y = _data()
    E, W, b1, b2 = [w.copy() for w in m.get_weights()]
    grads = _grads(m, x, y)
    Et = torch.tensor(E, requires_grad=True)
    Wt, b1t, b2t = (torch.tensor(a, requires_grad=True) for a in (W, b1, b2))
    h = torch.tanh(Et[torch.tensor(x, dtype=torch.long)] @ Wt + b1t)
    z = h @ Et.T + b2t
    loss = torch.nn.functional.cross_entropy(z.reshape(-1, V), torch.tensor(y.reshape(-1)))
    loss.backward()
    assert float(loss.detach()) == pytest.approx(_loss(m, x, y), rel=1e-12)
    np.testing.assert_allclose(grads["embedding/embeddings"], Et.grad.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(grads["out/bias"], b2t.grad.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(grads["mid/kernel"], Wt.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_one_sgd_step_updates_the_shared_matrix_once(float64):
    m = _model(hidden="dense")
    x, y = _data()
    before = m.get_weights()[0].copy()
    g = _grads(m, x, y)["embedding/embeddings"]
    m.train_on_batch(x, y)
    np.testing.assert_allclose(m.get_weights()[0], before - 0.01 * g, rtol=1e-10)


def test_parameter_count_and_save_load(tmp_path):
    tied = _model()
    untied = rnnlab.Sequential([rnnlab.Input((None,), dtype="int32"), rnnlab.layers.Embedding(V, D),
                                LSTM(D, return_sequences=True), Dense(V)])
    assert untied.count_params() - tied.count_params() == V * D
    x, _ = _data()
    y0 = tied(x)
    tied.save(tmp_path / "m.npz")
    loaded = rnnlab.load_model(tmp_path / "m.npz")
    with pytest.raises(RuntimeError, match="link_tied_layers"):
        loaded(x)
    link_tied_layers(loaded)
    np.testing.assert_array_equal(loaded(x), y0)


def test_errors():
    with pytest.raises(TypeError, match="tied_to"):
        TiedDense(None)
    m = rnnlab.Sequential([rnnlab.Input((None,), dtype="int32"), rnnlab.layers.Embedding(V, D, name="embedding"),
                           TiedDense("embedding", units=V)])
    with pytest.raises(TypeError, match="must name a TiedEmbedding"):
        link_tied_layers(m)
    m = rnnlab.Sequential([rnnlab.Input((None,), dtype="int32"), TiedEmbedding(V, D, name="emb"),
                           TiedDense("embedding", units=V)])
    with pytest.raises(ValueError, match="no layer named 'embedding'"):
        link_tied_layers(m)
    m = rnnlab.Sequential([rnnlab.Input((None,), dtype="int32"), TiedEmbedding(V, D, name="embedding"),
                           LSTM(D + 1, return_sequences=True), TiedDense("embedding", units=V)])
    link_tied_layers(m)
    with pytest.raises(ValueError, match="must have 4 units"):
        m(np.zeros((1, 2), dtype=np.int32))
    with pytest.raises(ValueError, match="has 9 outputs"):
        TiedDense("e", units=9).link(m.layers[0])
