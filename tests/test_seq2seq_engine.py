"""Seq2Seq on the one engine (issue 16): the training model is a functional Model of public layers, fit runs
Engine.fit, the gradient through the graph is exact (float64 finite differences of the whole model, through the
engine's own loss), format-1 files still load with the same outputs, newer formats are refused by version."""
import io
import json
import os
import warnings

import numpy as np
import pytest

import rnnlab
from rnnlab.callbacks import Callback
from rnnlab.datasets import Vocabulary
from rnnlab.models.functional import Model
from rnnlab.models.seq2seq import FORMAT_VERSION, Seq2Seq, StateOverTime
from rnnlab.optimizers import SGD, Adam

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def _pairs(n, seed):
    gen = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = "".join(gen.choice(list("abcde"), size=gen.integers(1, 7)))
        out.append((s, s[::-1]))
    return out


def _model(**kw):
    sv = Vocabulary(list("abcde"))
    tv = Vocabulary(list("abcde"))
    args = dict(embedding_dim=4, units=5, max_source_len=8, max_target_len=8)
    args.update(kw)
    return Seq2Seq(sv, tv, **args)


def test_training_model_is_a_functional_model_of_public_layers():
    m = _model(bidirectional=True, attention="dot")
    tm = m.training_model
    assert isinstance(tm, Model) and len(tm.inputs) == 2 and len(tm.outputs) == 1
    kinds = {type(l).__name__ for l in tm.layers}
    assert kinds == {"InputLayer", "Embedding", "Bidirectional", "Concatenate", "LSTM", "Attention", "Dense"}
    # the same weights as Seq2Seq's own list (one set, shared with the decoding path and the encoder model)
    assert tm.count_params() == m.count_params()
    ids_tm = {(id(o), w) for _, o, w in tm.iter_weights()}
    assert ids_tm == {(id(o), w) for _, o, w in m.iter_weights()}
    lines = []
    m.summary(print_fn=lines.append)
    assert any(l.startswith("Total params: " + f"{m.count_params():,}") for l in lines)
    assert any("bidirectional_encoder_0" in l and "source_embedding" in l for l in lines)
    # the graph's output equals Seq2Seq.forward and a Keras-style predict on [source ids, decoder input ids]
    X = m.encode_sources(["abc", "edcba"], warn=False)
    Yin, _ = m.encode_targets(["cba", "abcde"])
    np.testing.assert_array_equal(tm.predict([X, Yin]), m.forward(X, Yin)[0])


@pytest.mark.parametrize("kw", [dict(attention="dot", bidirectional=True),
                                dict(attention="concat", cell="gru", num_layers=2),
                                dict(attention="none", bidirectional=True, num_layers=2)], ids=str)
def test_engine_gradient_of_the_whole_model_matches_finite_differences(float64, kw):
    """Engine.compute_gradients on the training model (its loss masked by the target mask that travels along
    the graph) against central differences of Engine.evaluate's loss, every weight of the model."""
    m = _model(**kw)
    gen = np.random.default_rng(0)
    for _, owner, w in m.iter_weights():
        owner.params[w] += 0.3 * gen.standard_normal(owner.params[w].shape)
    pairs = [("abc", "cba"), ("edcba", "abcde"), ("a", "")]
    X = m.encode_sources([s for s, _ in pairs], warn=False)
    Yin, Yout = m.encode_targets([t for _, t in pairs])
    tm = m.training_model
    tm.compile(SGD(0.1), loss=m.loss_fn)
    loss = tm.compute_gradients([X, Yin], Yout)
    # the masked loss: the mean over the real target steps only
    logits, _ = m.forward(X, Yin)
    assert loss == pytest.approx(m.loss_fn(Yout, logits, mask=Yout != 0), rel=1e-12)

    def f():
        return tm.evaluate([X, Yin], Yout, batch_size=8)

    for path, owner, w in m.iter_weights():
        g = owner.grads[w]
        g = g.to_dense() if hasattr(g, "to_dense") else np.array(g)
        flat = owner.params[w].reshape(-1)
        for k in gen.choice(flat.size, size=min(flat.size, 6), replace=False):
            old = flat[k]
            flat[k] = old + 1e-6
            lp = f()
            flat[k] = old - 1e-6
            lm = f()
            flat[k] = old
            np.testing.assert_allclose(g.reshape(-1)[k], (lp - lm) / 2e-6, rtol=1e-5, atol=1e-8, err_msg=path)


def test_fit_runs_the_engine_and_equals_a_plain_loop_over_the_same_batches():
    """Seq2Seq.fit (Engine.fit on the pairs' batches) gives the weights of the loop it replaced: the same
    permutation per epoch, each batch cut to its longest sequences, loss_and_grads, one optimizer step."""
    train = _pairs(150, 0)
    rnnlab.set_random_seed(5)
    a = _model(bidirectional=True)
    rnnlab.set_random_seed(5)
    b = _model(bidirectional=True)
    a.fit(train, epochs=2, batch_size=32, optimizer=Adam(0.01, clipnorm=5.0), verbose=0, seed=3)
    X = b.encode_sources([s for s, _ in train], warn=False)
    Yin, Yout = b.encode_targets([t for _, t in train])
    src_len, tgt_len = np.count_nonzero(X, axis=1), np.count_nonzero(Yout, axis=1)
    opt, gen = Adam(0.01, clipnorm=5.0), np.random.default_rng(3)
    refs = list(b.trainable_weight_refs())
    for _ in range(2):
        order = gen.permutation(len(train))
        for k in range(0, len(train), 32):
            idx = order[k:k + 32]
            ts, tt = int(src_len[idx].max()), int(tgt_len[idx].max())
            b.loss_and_grads(X[idx, :ts], Yin[idx, :tt], Yout[idx, :tt])
            opt.apply(refs)
    for (p, oa, wa), (_, ob, wb) in zip(a.iter_weights(), b.iter_weights()):
        np.testing.assert_allclose(oa.params[wa], ob.params[wb], rtol=1e-5, atol=1e-6, err_msg=p)
    assert [h["epoch"] for h in a.history] == [1, 2] and all(h["steps"] == 5 for h in a.history)
    assert a.training_model.optimizer is not None and a.training_model.history.history["loss"]


def test_fit_stops_on_budget_hook_and_passes_callbacks():
    train = _pairs(100, 1)
    m = _model()
    seen = []

    class Count(Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(batch)

    hist = m.fit(train, epochs=5, batch_size=10, verbose=0, on_epoch_end=lambda e, logs: e == 1,
                 callbacks=[Count()])
    assert len(hist) == 2 and len(seen) == 20
    m.history = []
    hist = m.fit(train, epochs=5, batch_size=10, verbose=0, time_budget=0.0)
    assert len(hist) == 1 and hist[0]["steps"] == 1      # stopped after the first batch, epoch closed cleanly
    out = io.StringIO()
    m.history = []
    m.fit(train, epochs=1, batch_size=50, verbose=2, validation_pairs=train[:10], stream=out)
    assert "Epoch 1/1" in out.getvalue() and "val exact match" in out.getvalue()
    assert 0.0 <= m.history[0]["val_exact_match"] <= 1.0


def test_state_over_time_gradients(float64):
    layer = StateOverTime()
    gen = np.random.default_rng(0)
    state, seq = gen.standard_normal((2, 3)), gen.standard_normal((2, 4, 5))
    y = layer.forward([state, seq])
    assert y.shape == (2, 4, 3) and np.array_equal(y[:, 2], state)
    dstate, dseq = layer.backward(np.ones((2, 4, 3)))
    assert dseq is None and np.allclose(dstate, 4.0)
    g = gen.standard_normal((2, 4, 3))
    num = np.zeros_like(state)
    for i in np.ndindex(state.shape):
        s = state.copy()
        s[i] += 1e-6
        up = (layer.forward([s, seq]) * g).sum()
        s[i] -= 2e-6
        num[i] = (up - (layer.forward([s, seq]) * g).sum()) / 2e-6
    layer.forward([state, seq])
    np.testing.assert_allclose(layer.backward(g)[0], num, rtol=1e-7)
    assert layer.compute_mask([state, seq], [None, np.ones((2, 4), bool)]).shape == (2, 4)
    with pytest.raises(ValueError, match="StateOverTime"):
        layer.forward([state, seq[:1]])


def test_format_1_file_loads_with_the_same_outputs(tmp_path):
    """A bidirectional model saved by the format-1 Seq2Seq (before the engine): same weights by name, same
    teacher-forced logits and attention, same greedy translations."""
    path = os.path.join(FIXTURES, "seq2seq_v1_bidirectional.npz")
    with open(os.path.join(FIXTURES, "seq2seq_v1_bidirectional.json")) as f:
        want = json.load(f)
    with np.load(path, allow_pickle=False) as z:
        assert json.loads(str(z["__config__"]))["version"] == 1
    m = Seq2Seq.load(path)
    assert m.bidirectional and m.name == "s2s_v1"
    X = m.encode_sources(want["sources"], warn=False)
    Yin, Yout = m.encode_targets(want["targets"])
    logits, A = m.forward(X, Yin)
    mask = Yout != 0
    np.testing.assert_allclose(logits[mask], np.array(want["logits"])[mask], atol=2e-5)
    np.testing.assert_allclose(A[mask], np.array(want["attention"])[mask], atol=2e-5)
    res = m.translate(want["sources"])
    assert [o for o, _ in res] == want["translations"]
    for (_, a), b in zip(res, want["translation_attention"]):
        np.testing.assert_allclose(a, b, atol=2e-5)
    # saved again: format 2, the same weight names, loads to the same outputs
    m.save(str(tmp_path / "v2.npz"))
    with np.load(str(tmp_path / "v2.npz"), allow_pickle=False) as z, np.load(path, allow_pickle=False) as z1:
        assert json.loads(str(z["__config__"]))["version"] == FORMAT_VERSION == 2
        assert sorted(z.files) == sorted(z1.files)
    assert [o for o, _ in Seq2Seq.load(str(tmp_path / "v2.npz")).translate(want["sources"])] == want["translations"]


@pytest.mark.parametrize("version", [3, 99, "2", None, True, 0])
def test_unknown_format_version_is_refused_naming_it(tmp_path, version):
    m = _model()
    p = str(tmp_path / "m.npz")
    m.save(p)
    with np.load(p, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["__config__"]))
    meta["version"] = version
    arrays["__config__"] = np.array(json.dumps(meta))
    np.savez(p, **arrays)
    with pytest.raises(ValueError, match=rf"format version {version!r}.*reads versions 1 to 2"):
        Seq2Seq.load(p)


def test_nan_policy_is_the_engines():
    m = _model()
    _, owner, w = next(iter(m.iter_weights()))
    owner.params[w][...] = np.nan
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        m.fit(_pairs(20, 2), epochs=2, batch_size=10, verbose=0)
    assert any("loss is nan at epoch 1, step 1" in str(r.message) for r in rec)
    assert m.stop_reason == m.training_model.stop_reason and "loss is nan" in m.stop_reason
    assert m.history == []


# ------------------------------------------------------------------------------------------ Keras parity
def _keras_seq2seq(K, m):
    """Seq2Seq's training graph written with Keras 3 layers (the same names), for a model ``m``."""
    E, U, Ud, V = m.embedding_dim, m.units, m.dec_units, len(m.target_vocab)
    src = K.Input((None,), dtype="int32", name="source_ids")
    yin = K.Input((None,), dtype="int32", name="decoder_input_ids")
    h = K.layers.Embedding(len(m.source_vocab), E, mask_zero=True, name="source_embedding")(src)
    rnn = K.layers.LSTM(U, return_sequences=True, return_state=True, name="encoder_0")
    if m.bidirectional:
        H, hf, cf, hb, cb = K.layers.Bidirectional(rnn, name="bidirectional_encoder_0")(h)
        states = [K.layers.Concatenate(name="bidirectional_encoder_0_state_0")([hf, hb]),
                  K.layers.Concatenate(name="bidirectional_encoder_0_state_1")([cf, cb])]
    else:
        H, hs, cs = rnn(h)
        states = [hs, cs]
    d = K.layers.Embedding(V, E, mask_zero=True, name="target_embedding")(yin)
    S = K.layers.LSTM(Ud, return_sequences=True, return_state=True, name="decoder_0")(d, initial_state=states)[0]
    if m.attention == "concat":
        q = K.layers.Dense(Ud, use_bias=False, name="attention_query")(S)
        k = K.layers.Dense(Ud, use_bias=False, name="attention_key")(H)
        ctx = K.layers.AdditiveAttention(name="attention")([q, H, k])
    else:
        ctx = K.layers.Attention(name="attention")([S, H])
    hc = K.layers.Dense(Ud, activation="tanh", use_bias=False, name="attention_combine")(
        K.layers.Concatenate(name="context_and_state")([ctx, S]))
    return K.Model([src, yin], K.layers.Dense(V, name="output")(hc))


@pytest.mark.parametrize("kw", [dict(bidirectional=True, attention="dot"),
                                dict(bidirectional=False, attention="concat")], ids=str)
def test_training_model_matches_the_same_graph_in_keras(kw):
    """The training model and the same graph built with Keras 3 (torch backend), weights copied: the same logits
    on padded batches and the same weights after one SGD step of the masked loss, in float64."""
    keras = pytest.importorskip("keras")
    from rnnlab.testing import rel_error

    old_policy = keras.config.dtype_policy()
    rnnlab.set_floatx("float64")
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        m = _model(**kw)
        km = _keras_seq2seq(keras, m)
        rm = m.training_model
        # rnnlab's weights, moved away from the initial values (which leave the additive query path nearly flat:
        # tanh(q + k) ~ q + k and q cancels in the softmax), copied into the Keras layers of the same names
        gen = np.random.default_rng(0)
        for _, owner, w in m.iter_weights():
            owner.params[w] += 0.3 * gen.standard_normal(owner.params[w].shape)
        for layer in rm.layers:
            if layer.count_params():
                km.get_layer(layer.name).set_weights(layer.get_weights())
        pairs = [("abc", "cba"), ("edcba", "abcde"), ("a", ""), ("bb", "bb")]
        X = m.encode_sources([s for s, _ in pairs], warn=False)
        Yin, Yout = m.encode_targets([t for _, t in pairs])
        assert (X == 0).any() and (Yout == 0).any()          # padded sources and targets: masks matter
        mask = Yout != 0
        kl = np.asarray(keras.ops.convert_to_numpy(km.predict([X, Yin], verbose=0)))
        rl = rm.predict([X, Yin])
        assert rel_error(rl[mask], kl[mask]) < 1e-7
        w0 = [w.copy() for w in rm.get_weights()]
        km.compile(optimizer=keras.optimizers.SGD(0.5),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        rm.compile(optimizer=SGD(0.5), loss=m.loss_fn)
        k_loss, r_loss = float(km.train_on_batch([X, Yin], Yout)), float(rm.train_on_batch([X, Yin], Yout))
        assert abs(k_loss - r_loss) < 1e-7 * max(1.0, abs(k_loss))
        for layer in rm.layers:
            if layer.count_params():
                for a, b in zip(layer.get_weights(), km.get_layer(layer.name).get_weights()):
                    assert rel_error(a, np.asarray(b)) < 1e-7, layer.name
        assert all(rel_error(a, b) > 1e-6 for a, b in zip(rm.get_weights(), w0))   # the step moved every weight
    finally:
        keras.config.set_dtype_policy(old_policy)
        keras.config.set_floatx("float32")
        rnnlab.set_floatx("float32")


# ------------------------------------------------------------------------------------------ the command
def test_cli_encoder_is_bidirectional_by_default(tmp_path, capsys):
    from rnnlab.cli import main

    common = ["train", "seq2seq", "--generate", "addition", "--num-pairs", "300", "--digits", "2", "--epochs", "1",
              "--units", "4", "--embedding-dim", "3", "--verbose", "0", "--threads", "1"]
    for extra, want in (([], True), (["--unidirectional"], False), (["--bidirectional"], True)):
        out = str(tmp_path / f"run{len(extra)}{want}")
        assert main(common + extra + ["--out", out]) == 0
        metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert metrics["bidirectional"] is want
        assert Seq2Seq.load(os.path.join(out, "model.npz")).bidirectional is want
    assert main(common + ["--unidirectional", "--bidirectional", "--out", str(tmp_path / "bad")]) == 1
    assert "--unidirectional and --bidirectional contradict" in capsys.readouterr().err


def test_cli_cpu_budget_stops_through_the_engine(tmp_path, capsys):
    from rnnlab.cli import main

    assert main(["train", "seq2seq", "--generate", "addition", "--num-pairs", "2000", "--digits", "2", "--units", "4",
                 "--embedding-dim", "3", "--batch-size", "8", "--max-cpu-minutes", "0.0001", "--verbose", "0",
                 "--threads", "1", "--out", str(tmp_path / "o")]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["stop_reason"].startswith("time budget") and metrics["epochs_run"] == 1
    assert os.path.exists(metrics["model"])
