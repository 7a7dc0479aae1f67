"""Parity with PyTorch nn.RNN / nn.LSTM / nn.GRU in float64: outputs, final states and every gradient.

The loss is L = sum(out * R) + sum(h_n * Rh) (+ sum(c_n * Rc)) with fixed random R; rnnlab's
backward must give the same dL/dx, dL/dh0 (dL/dc0) and dL/dW (PyTorch's mapped back to Keras
layout with rnnlab.interop) within 1e-6 relative.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rnnlab import interop  # noqa: E402
from rnnlab.layers import GRU, LSTM, SimpleRNN  # noqa: E402
from rnnlab.testing import rel_error  # noqa: E402

TOL = 1e-6
B, T, D, H = 3, 6, 5, 4
TORCH = {"RNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}


def _torch_run(mod, x, h0, c0, R, Rh, Rc):
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0, requires_grad=True)
    if c0 is not None:
        c0t = torch.tensor(c0, requires_grad=True)
        out, (hn, cn) = mod(xt, (h0t, c0t))
    else:
        c0t = None
        out, hn = mod(xt, h0t)
        cn = None
    loss = (out * torch.tensor(R)).sum() + (hn * torch.tensor(Rh)).sum()
    if cn is not None:
        loss = loss + (cn * torch.tensor(Rc)).sum()
    mod.zero_grad()
    loss.backward()
    res = dict(out=out.detach().numpy(), hn=hn.detach().numpy(), dx=xt.grad.numpy(), dh0=h0t.grad.numpy())
    if cn is not None:
        res.update(cn=cn.detach().numpy(), dc0=c0t.grad.numpy())
    return res


def _make(kind, num_layers=1, bidirectional=False, bias=True, **kw):
    torch.manual_seed(0)
    return TORCH[kind](D, H, num_layers=num_layers, batch_first=True, bias=bias,
                       bidirectional=bidirectional, dtype=torch.float64, **kw)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_unidirectional_parity(float64, kind, num_layers, bias):
    extra = {"nonlinearity": "relu"} if (kind == "RNN" and num_layers == 2) else {}
    mod = _make(kind, num_layers, bias=bias, **extra)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, T, D))
    h0 = rng.standard_normal((num_layers, B, H)) * 0.5
    c0 = rng.standard_normal((num_layers, B, H)) * 0.5 if kind == "LSTM" else None
    R = rng.standard_normal((B, T, H))
    Rh = rng.standard_normal((num_layers, B, H))
    Rc = rng.standard_normal((num_layers, B, H))
    ref = _torch_run(mod, x, h0, c0, R, Rh, Rc)

    layers = interop.from_torch(mod)
    assert len(layers) == num_layers
    for layer in layers:
        layer.return_state = True
    # forward through the stack
    y = x
    finals = []
    for k, layer in enumerate(layers):
        init = [h0[k]] if c0 is None else [h0[k], c0[k]]
        res = layer(y, initial_state=init, training=True)
        y = res[0]
        finals.append(res[1:])
    assert rel_error(y, ref["out"]) < TOL
    assert rel_error(np.stack([f[0] for f in finals]), ref["hn"]) < TOL
    if c0 is not None:
        assert rel_error(np.stack([f[1] for f in finals]), ref["cn"]) < TOL
    # backward through the stack
    g = R
    dh0 = [None] * num_layers
    dc0 = [None] * num_layers
    for k in range(num_layers - 1, -1, -1):
        grads = [g, Rh[k]] + ([Rc[k]] if c0 is not None else [])
        back = layers[k].backward(grads)
        g = back[0]
        dh0[k] = back[1]
        if c0 is not None:
            dc0[k] = back[2]
    assert rel_error(g, ref["dx"]) < TOL
    assert rel_error(np.stack(dh0), ref["dh0"]) < TOL
    if c0 is not None:
        assert rel_error(np.stack(dc0), ref["dc0"]) < TOL
    tgrads = interop.torch_module_grads(mod)
    for k, layer in enumerate(layers):
        names = list(layer.params)
        assert len(tgrads[k][0]) == len(names)
        for name, tg in zip(names, tgrads[k][0]):
            err = rel_error(layer.grads[name], tg)
            assert err < TOL, (kind, k, name, err)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_bidirectional_parity(float64, kind):
    """Both directions of a bidirectional PyTorch module: the reverse direction is go_backwards=True."""
    mod = _make(kind, 1, bidirectional=True)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((B, T, D))
    h0 = rng.standard_normal((2, B, H)) * 0.5
    c0 = rng.standard_normal((2, B, H)) * 0.5 if kind == "LSTM" else None
    R = rng.standard_normal((B, T, 2 * H))
    Rh = rng.standard_normal((2, B, H))
    Rc = rng.standard_normal((2, B, H))
    ref = _torch_run(mod, x, h0, c0, R, Rh, Rc)
    (bi,) = interop.from_torch(mod)  # a Bidirectional; its two directions are checked one by one here
    fw, bw = bi.forward_layer, bi.backward_layer
    assert fw.go_backwards is False and bw.go_backwards is True
    outs, dxs = [], []
    tgrads = interop.torch_module_grads(mod)[0]
    for d, layer in enumerate((fw, bw)):
        layer.return_state = True
        init = [h0[d]] if c0 is None else [h0[d], c0[d]]
        res = layer(x, initial_state=init, training=True)
        seq = res[0] if d == 0 else res[0][:, ::-1]
        outs.append(seq)
        assert rel_error(res[1], ref["hn"][d]) < TOL
        if c0 is not None:
            assert rel_error(res[2], ref["cn"][d]) < TOL
        gseq = R[:, :, d * H:(d + 1) * H]
        if d == 1:
            gseq = gseq[:, ::-1]
        back = layer.backward([gseq, Rh[d]] + ([Rc[d]] if c0 is not None else []))
        dxs.append(back[0])
        assert rel_error(back[1], ref["dh0"][d]) < TOL
        if c0 is not None:
            assert rel_error(back[2], ref["dc0"][d]) < TOL
        for name, tg in zip(layer.params, tgrads[d]):
            assert rel_error(layer.grads[name], tg) < TOL, (kind, d, name)
    assert rel_error(np.concatenate(outs, axis=-1), ref["out"]) < TOL
    assert rel_error(dxs[0] + dxs[1], ref["dx"]) < TOL


@pytest.mark.parametrize("cls,kind,kw", [(SimpleRNN, "RNN", {}), (LSTM, "LSTM", {}), (GRU, "GRU", {}),
                                         (SimpleRNN, "RNN", {"bias": False})])
def test_to_torch_round_trip(float64, cls, kind, kw):
    """rnnlab weights copied into a torch module give the same outputs; from_torch gives them back."""
    layer = cls(H, return_sequences=True, use_bias=kw.get("bias", True))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((B, T, D))
    y = layer(x)
    if layer.use_bias:  # non-zero biases so the bias mapping is exercised
        layer.set_weights(layer.get_weights()[:2] + [rng.standard_normal(layer.params["bias"].shape)])
        y = layer(x)
    mod = _make(kind, **kw)
    interop.to_torch([layer], mod)
    with torch.no_grad():
        out = mod(torch.tensor(x))[0].numpy()
    assert rel_error(y, out) < TOL
    back = interop.from_torch(mod)[0]
    for a, b in zip(layer.get_weights(), back.get_weights()):
        assert rel_error(a, b) < 1e-12


def test_plain_function_gru_reorders_gates():
    """PyTorch r, z, n rows become Keras z, r, h columns, and back."""
    rng = np.random.default_rng(4)
    w_ih, w_hh = rng.standard_normal((3 * H, D)), rng.standard_normal((3 * H, H))
    b_ih, b_hh = rng.standard_normal(3 * H), rng.standard_normal(3 * H)
    k, rk, b = interop.gru_from_torch(w_ih, w_hh, b_ih, b_hh)
    assert k.shape == (D, 3 * H) and rk.shape == (H, 3 * H) and b.shape == (2, 3 * H)
    np.testing.assert_array_equal(k[:, :H], w_ih[H:2 * H].T)       # z block from torch's second block
    np.testing.assert_array_equal(k[:, H:2 * H], w_ih[:H].T)       # r block from torch's first block
    np.testing.assert_array_equal(b[1, 2 * H:], b_hh[2 * H:])
    back = interop.gru_to_torch(k, rk, b)
    for name, ref in (("weight_ih", w_ih), ("weight_hh", w_hh), ("bias_ih", b_ih), ("bias_hh", b_hh)):
        np.testing.assert_array_equal(back[name], ref)


def test_plain_functions_sum_biases_and_validate():
    rng = np.random.default_rng(5)
    w_ih, w_hh = rng.standard_normal((4 * H, D)), rng.standard_normal((4 * H, H))
    b_ih, b_hh = rng.standard_normal(4 * H), rng.standard_normal(4 * H)
    k, rk, b = interop.lstm_from_torch(w_ih, w_hh, b_ih, b_hh)
    np.testing.assert_allclose(b, b_ih + b_hh)
    np.testing.assert_array_equal(k, w_ih.T)
    with pytest.raises(ValueError, match="weight_hh"):
        interop.lstm_from_torch(w_ih, w_hh[:, :2])
    with pytest.raises(ValueError, match="reset_after=False"):
        interop.gru_to_torch(np.zeros((D, 3 * H)), np.zeros((H, 3 * H)), np.zeros(3 * H))
    with pytest.raises(TypeError, match="nn.RNN, nn.LSTM, nn.GRU, nn.Embedding or nn.Linear"):
        interop.from_torch(torch.nn.Conv1d(2, 2, 1))
    with pytest.raises(ValueError, match="num_layers=2"):
        interop.to_torch([LSTM(H)], _make("LSTM", 2))
    nobias = SimpleRNN(H, use_bias=False)
    nobias(np.zeros((1, 2, D)))
    with pytest.raises(ValueError, match="bias=True but layer .* use_bias=False"):
        interop.to_torch([nobias], _make("RNN"))
    g = GRU(H, reset_after=False)
    g(np.zeros((1, 2, D)))
    with pytest.raises(ValueError, match="reset_after=False"):
        interop.to_torch([g], _make("GRU"))
