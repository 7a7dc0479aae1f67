"""PyTorch interop for whole modules: 2-layer bidirectional nn.LSTM/GRU/RNN <-> stacks of rnnlab Bidirectional
layers (outputs, final states and every gradient in float64), nn.Embedding <-> Embedding, nn.Linear <-> Dense,
state_dicts, to_torch building new modules, and the errors."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rnnlab  # noqa: E402
from rnnlab import interop  # noqa: E402
from rnnlab.layers import GRU, LSTM, Bidirectional, Dense, Embedding, SimpleRNN  # noqa: E402
from rnnlab.testing import rel_error  # noqa: E402

TOL = 1e-6
B, T, D, H = 3, 5, 4, 3
TORCH = {"RNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}


def _module(kind, num_layers=2, **kw):
    torch.manual_seed(0)
    return TORCH[kind](D, H, num_layers=num_layers, batch_first=True, bidirectional=True, dtype=torch.float64, **kw)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_two_layer_bidirectional_parity_with_gradients(float64, kind):
    """L = sum(out R) + sum(h_n Rh) (+ sum(c_n Rc)): outputs, final states, dL/dx, dL/dh0 (dc0) and every weight
    gradient agree with PyTorch's autograd."""
    mod = _module(kind)
    lstm = kind == "LSTM"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, D))
    h0 = rng.standard_normal((4, B, H)) * 0.5
    c0 = rng.standard_normal((4, B, H)) * 0.5
    R = rng.standard_normal((B, T, 2 * H))
    Rh, Rc = rng.standard_normal((4, B, H)), rng.standard_normal((4, B, H))

    xt, h0t, c0t = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    out, st = mod(xt, (h0t, c0t) if lstm else h0t)
    hn, cn = st if lstm else (st, None)
    loss = (out * torch.tensor(R)).sum() + (hn * torch.tensor(Rh)).sum()
    if lstm:
        loss = loss + (cn * torch.tensor(Rc)).sum()
    loss.backward()

    layers = interop.from_torch(mod, return_state=True)
    assert len(layers) == 2 and all(isinstance(la, Bidirectional) and la.merge_mode == "concat" for la in layers)

    def init(k):  # PyTorch's state index is layer * 2 + direction; Bidirectional takes forward half, backward half
        per_dir = [[h0[2 * k + d]] + ([c0[2 * k + d]] if lstm else []) for d in (0, 1)]
        return per_dir[0] + per_dir[1]

    def state_grads(k):
        per_dir = [[Rh[2 * k + d]] + ([Rc[2 * k + d]] if lstm else []) for d in (0, 1)]
        return per_dir[0] + per_dir[1]

    y, finals = x, []
    for k, layer in enumerate(layers):
        res = layer(y, initial_state=init(k), training=True)
        y, st_k = res[0], res[1:]
        finals.append(st_k)
    n = 2 if lstm else 1
    assert rel_error(y, out.detach().numpy()) < TOL
    got_hn = np.stack([finals[k][d * n] for k in range(2) for d in range(2)])
    assert rel_error(got_hn, hn.detach().numpy()) < TOL
    if lstm:
        got_cn = np.stack([finals[k][d * n + 1] for k in range(2) for d in range(2)])
        assert rel_error(got_cn, cn.detach().numpy()) < TOL

    g = R
    dstates = {}
    for k in (1, 0):
        back = layers[k].backward([g] + state_grads(k))
        g = back[0]
        dstates[k] = back[1:]
    assert rel_error(g, xt.grad.numpy()) < TOL
    got_dh0 = np.stack([dstates[k][d * n] for k in range(2) for d in range(2)])
    assert rel_error(got_dh0, h0t.grad.numpy()) < TOL
    if lstm:
        got_dc0 = np.stack([dstates[k][d * n + 1] for k in range(2) for d in range(2)])
        assert rel_error(got_dc0, c0t.grad.numpy()) < TOL
    tgrads = interop.torch_module_grads(mod)
    for k, layer in enumerate(layers):
        ours = [owner.grads[w] for _, owner, w in layer.iter_weights()]
        ref = tgrads[k][0] + tgrads[k][1]
        assert len(ours) == len(ref)
        for a, b in zip(ours, ref):
            assert rel_error(a, b) < TOL


def test_embedding_bilstm_linear_model_parity(float64):
    """nn.Embedding -> 2-layer bidirectional nn.LSTM -> nn.Linear (every step) as one rnnlab Sequential built with
    from_torch: outputs and the gradients of every weight (embedding rows included) agree."""
    torch.manual_seed(1)
    V, E, C = 11, 4, 5
    emb = torch.nn.Embedding(V, E, dtype=torch.float64)
    rnn = torch.nn.LSTM(E, H, num_layers=2, batch_first=True, bidirectional=True, dtype=torch.float64)
    lin = torch.nn.Linear(2 * H, C, dtype=torch.float64)
    ids = np.random.default_rng(2).integers(0, V, (B, T))
    R = np.random.default_rng(3).standard_normal((B, T, C))
    ref = lin(rnn(emb(torch.tensor(ids)))[0])
    (ref * torch.tensor(R)).sum().backward()

    model = rnnlab.Sequential([interop.from_torch(emb), *interop.from_torch(rnn), interop.from_torch(lin)])
    assert model.layers[0].mask_zero is False      # padding_idx None
    out, _ = model._forward(ids, training=True)
    assert rel_error(out, ref.detach().numpy()) < TOL
    model._backward(R)
    g_emb = model.layers[0].grads["embeddings"]
    assert rel_error(g_emb.to_dense() if hasattr(g_emb, "to_dense") else g_emb, emb.weight.grad.numpy()) < TOL
    dense = model.layers[-1]
    assert rel_error(dense.grads["kernel"], lin.weight.grad.numpy().T) < TOL
    assert rel_error(dense.grads["bias"], lin.bias.grad.numpy()) < TOL
    tgrads = interop.torch_module_grads(rnn)
    for k in range(2):
        ours = [o.grads[w] for _, o, w in model.layers[1 + k].iter_weights()]
        for a, b in zip(ours, tgrads[k][0] + tgrads[k][1]):
            assert rel_error(a, b) < TOL
    # and back: a fresh PyTorch stack from the rnnlab layers computes the same
    emb2, rnn2, lin2 = (interop.to_torch(model.layers[0]), interop.to_torch(model.layers[1:3]),
                        interop.to_torch(model.layers[3]))
    with torch.no_grad():
        again = lin2(rnn2(emb2(torch.tensor(ids)))[0]).numpy()
    assert rel_error(again, out) < 1e-12


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_state_dict_and_module_give_the_same_layers(float64, kind):
    mod = _module(kind, bias=True)
    a = interop.from_torch(mod)
    b = interop.from_torch(mod.state_dict())
    assert [type(x.forward_layer) for x in a] == [type(x.forward_layer) for x in b]
    for la, lb in zip(a, b):
        for wa, wb in zip(la.get_weights(), lb.get_weights()):
            np.testing.assert_array_equal(wa, wb)
    uni = TORCH[kind](D, H, num_layers=3, batch_first=True, bias=False, dtype=torch.float64)
    layers = interop.from_torch(uni.state_dict())
    assert len(layers) == 3 and not any(isinstance(x, Bidirectional) for x in layers)
    assert all(not x.use_bias for x in layers)


def test_state_dict_linear_embedding_and_errors(float64):
    lin = torch.nn.Linear(4, 2, dtype=torch.float64)
    d = interop.from_torch(lin.state_dict())
    assert isinstance(d, Dense) and d.get_weights()[0].shape == (4, 2)
    np.testing.assert_array_equal(d.get_weights()[0], lin.weight.detach().numpy().T)
    emb = torch.nn.Embedding(7, 3, padding_idx=0, dtype=torch.float64)
    e = interop.from_torch(emb.state_dict(), kind="Embedding")
    assert isinstance(e, Embedding) and e.mask_zero is False   # a state dict does not keep padding_idx
    assert interop.from_torch(emb).mask_zero is True          # the module does: padding_idx=0 -> mask_zero
    np.testing.assert_array_equal(e.get_weights()[0], emb.weight.detach().numpy())
    nobias = torch.nn.Linear(4, 2, bias=False, dtype=torch.float64)
    with pytest.raises(ValueError, match="kind='Embedding' or kind='Linear'"):
        interop.from_torch(nobias.state_dict())
    assert not interop.from_torch(nobias.state_dict(), kind="Linear").use_bias
    with pytest.raises(ValueError, match="kind='GRU' but the state_dict holds LSTM"):
        interop.from_torch(_module("LSTM").state_dict(), kind="GRU")
    with pytest.raises(ValueError, match="kind='LSTM' but the module is an nn.GRU"):
        interop.from_torch(_module("GRU"), kind="LSTM")
    with pytest.raises(ValueError, match="proj_size"):
        interop.from_torch(torch.nn.LSTM(D, H, proj_size=2).state_dict())
    with pytest.raises(ValueError, match="no 'weight_ih_l0'"):
        interop.from_torch({"foo": torch.zeros(2)})


@pytest.mark.parametrize("cls,kind", [(LSTM, "LSTM"), (GRU, "GRU"), (SimpleRNN, "RNN")])
def test_to_torch_new_and_existing_modules(float64, cls, kind):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((B, T, D))
    layers = [Bidirectional(cls(H, return_sequences=True)), Bidirectional(cls(H, return_sequences=True))]
    y = x
    for la in layers:
        y = la(y)
        la.set_weights([rng.standard_normal(w.shape) * 0.5 for w in la.get_weights()])
    y = layers[1](layers[0](x))
    mod = interop.to_torch(layers)
    assert isinstance(mod, TORCH[kind]) and mod.bidirectional and mod.num_layers == 2 and mod.batch_first
    with torch.no_grad():
        assert rel_error(mod(torch.tensor(x))[0].numpy(), y) < 1e-12
    existing = _module(kind)
    interop.to_torch(layers, existing)
    with torch.no_grad():
        assert rel_error(existing(torch.tensor(x))[0].numpy(), y) < 1e-12
    # the old (forward, backward) pair form still works
    interop.to_torch([(la.forward_layer, la.backward_layer) for la in layers], _module(kind))


def test_to_torch_errors(float64):
    x = np.zeros((1, T, D))
    summed = Bidirectional(LSTM(H, return_sequences=True), merge_mode="sum")
    summed(x)
    with pytest.raises(ValueError, match="merge_mode='sum'.*concatenates"):
        interop.to_torch([summed, summed])
    relu_dense = Dense(3, activation="relu")
    relu_dense(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="activation 'relu'; nn.Linear has none"):
        interop.to_torch(relu_dense)
    interop.to_torch(relu_dense, torch.nn.Linear(4, 3, dtype=torch.float64))  # weights only: allowed
    with pytest.raises(TypeError, match="an nn.Linear takes a Dense layer"):
        interop.to_torch(summed, torch.nn.Linear(4, 3))
    gru = Bidirectional(GRU(H, return_sequences=True))
    gru(x)
    with pytest.raises(TypeError, match="an nn.LSTM takes LSTM layers"):
        interop.to_torch([gru, gru], _module("LSTM"))
    mixed = [Bidirectional(LSTM(H, return_sequences=True)), Bidirectional(LSTM(H + 1, return_sequences=True))]
    mixed[0](x)
    mixed[1](np.zeros((1, T, 2 * H)))
    with pytest.raises(ValueError, match="does not match layer 0"):
        interop.to_torch(mixed)
    emb = Embedding(5, 2)
    emb(np.zeros((1, 3), np.int64))
    with pytest.raises(ValueError, match=r"nn.Embedding.weight has shape \(6, 2\)"):
        interop.to_torch(emb, torch.nn.Embedding(6, 2))
