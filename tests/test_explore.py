"""rnnlab explore, server side: the gate tracer against the layers (and PyTorch), the API values against the
models, select-and-match and gate statistics by hand, every task's model file, path traversal, bounded input."""
import http.client
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import rnnlab
from rnnlab.cli import main
from rnnlab.explore import open_model, trace_rnn
from rnnlab.explore import session as S
from rnnlab.explore.server import MAX_BODY, make_server
from rnnlab.layers import GRU, LSTM, Bidirectional, Dense, Embedding, SimpleRNN

QUOTES = 'He said "yes" and she said "no", then "maybe" and left. ' * 40


# ------------------------------------------------------------------------------------------- the tracer
def _x(T=7, D=5, seed=0):
    return np.random.default_rng(seed).normal(size=(1, T, D)).astype("float32")


CELLS = [
    ("lstm", lambda **k: LSTM(6, return_sequences=True, **k)),
    ("lstm_hard", lambda **k: LSTM(6, return_sequences=True, recurrent_activation="hard_sigmoid", activation="relu", **k)),
    ("gru_after", lambda **k: GRU(6, return_sequences=True, **k)),
    ("gru_before", lambda **k: GRU(6, return_sequences=True, reset_after=False, **k)),
    ("gru_nobias", lambda **k: GRU(6, return_sequences=True, use_bias=False, **k)),
    ("rnn", lambda **k: SimpleRNN(6, return_sequences=True, **k)),
    # a generic RNN layer around a public cell
    ("rnn_lstmcell", lambda **k: rnnlab.layers.RNN(rnnlab.layers.LSTMCell(6), return_sequences=True, **k)),
    ("rnn_grucell", lambda **k: rnnlab.layers.RNN(rnnlab.layers.GRUCell(6), return_sequences=True, **k)),
]


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("name,make", CELLS, ids=[c[0] for c in CELLS])
def test_trace_h_equals_the_layers_own_forward(name, make, go_backwards):
    layer = make(go_backwards=go_backwards)
    x = _x()
    y = np.asarray(layer(x))[0]                      # the layer's own forward (its time loop / C kernel)
    series, final = trace_rnn(layer, x[0])
    h = series["h"]
    if go_backwards:                                 # Keras: outputs in processing order
        h = h[::-1]
    np.testing.assert_allclose(h, y, rtol=1e-5, atol=1e-5)
    assert set(series) == set(S._trace.SERIES[S._trace.cell_type(layer)])
    np.testing.assert_allclose(final["h"], series["h"][0 if go_backwards else -1])


def test_trace_lstm_gates_obey_the_cell_equations(float64):
    layer = LSTM(4, return_sequences=True)
    layer(_x())
    s, _ = trace_rnn(layer, _x()[0])
    assert s["h"].dtype == np.float64
    c_prev = np.vstack([np.zeros(4), s["c"][:-1]])
    np.testing.assert_allclose(s["c"], s["f"] * c_prev + s["i"] * s["g"], atol=1e-12)
    np.testing.assert_allclose(s["h"], s["o"] * np.tanh(s["c"]), atol=1e-12)
    for g in "ifo":
        assert ((s[g] > 0) & (s[g] < 1)).all()


def test_trace_matches_pytorch_lstm_and_gru_with_copied_weights(float64):
    torch = pytest.importorskip("torch")
    x = _x(T=9, D=5, seed=3).astype("float64")
    lstm = LSTM(6, return_sequences=True)
    lstm(x)
    W, U, b = lstm.get_weights()
    t = torch.nn.LSTM(5, 6, batch_first=True).double()
    with torch.no_grad():   # Keras i,f,c,o columns == PyTorch i,f,g,o rows
        t.weight_ih_l0.copy_(torch.tensor(W.T)); t.weight_hh_l0.copy_(torch.tensor(U.T))
        t.bias_ih_l0.copy_(torch.tensor(b)); t.bias_hh_l0.zero_()
        out, (hn, cn) = t(torch.tensor(x, dtype=torch.float64))
    s, final = trace_rnn(lstm, x[0])
    np.testing.assert_allclose(s["h"], out[0].numpy(), atol=1e-12)
    np.testing.assert_allclose(final["c"], cn[0, 0].numpy(), atol=1e-12)

    gru = GRU(6, return_sequences=True)   # reset_after=True is PyTorch's GRU
    gru(x)
    W, U, b = gru.get_weights()
    perm = np.r_[6:12, 0:6, 12:18]       # Keras z,r,h -> PyTorch r,z,n
    g = torch.nn.GRU(5, 6, batch_first=True).double()
    with torch.no_grad():
        g.weight_ih_l0.copy_(torch.tensor(W[:, perm].T)); g.weight_hh_l0.copy_(torch.tensor(U[:, perm].T))
        g.bias_ih_l0.copy_(torch.tensor(b[0][perm])); g.bias_hh_l0.copy_(torch.tensor(b[1][perm]))
        out, _ = g(torch.tensor(x, dtype=torch.float64))
    s, _ = trace_rnn(gru, x[0])
    np.testing.assert_allclose(s["h"], out[0].numpy(), atol=1e-12)


def test_stack_equals_the_model_forward_and_chunks_carry_the_state():
    model = rnnlab.Sequential([rnnlab.Input((None,), dtype="int32"), Embedding(11, 4),
                               Bidirectional(LSTM(5, return_sequences=True), name="bi"),
                               GRU(3, return_sequences=True, name="gru"), Dense(11)])
    ids = np.random.default_rng(0).integers(0, 11, (1, 12)).astype("int32")
    ref = np.asarray(model(ids))
    stack = S.Stack(model.layers)
    assert [p["label"] for p in stack.describe()] == ["bi/" + model.layers[1].forward_layer.name,
                                                       "bi/" + model.layers[1].backward_layer.name, "gru"]
    out, series, _ = stack.run(ids)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    # the single-direction GRU on one text in two chunks, state carried = in one piece
    solo = rnnlab.Sequential([rnnlab.Input((None,), dtype="int32"), Embedding(11, 4), GRU(3, return_sequences=True)])
    st = S.Stack(solo.layers)
    _, whole, _ = st.run(ids)
    _, a, fin = st.run(ids[:, :5])
    _, b, _ = st.run(ids[:, 5:], fin)
    lab = st.parts[0][0]
    np.testing.assert_allclose(np.vstack([a[lab]["h"], b[lab]["h"]]), whole[lab]["h"], atol=1e-12)


def test_state_grad_norms_equals_gradient_norms_over_time():
    """The helper used for Seq2Seq and Tagger models gives diagnostics' numbers on a Sequential model (a
    training step with a zero learning rate runs the same forward and backward pass)."""
    from rnnlab import losses, optimizers
    from rnnlab.diagnostics import gradient_norms_over_time

    model = rnnlab.Sequential([rnnlab.Input((None,), dtype="int32"), Embedding(11, 4),
                               Bidirectional(LSTM(5, return_sequences=True), name="bi"),
                               GRU(3, return_sequences=True, go_backwards=True, name="gru"), Dense(11)])
    model.compile(optimizer=optimizers.SGD(0.0), loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 11, (1, 9)).astype("int32"), rng.integers(0, 11, (1, 9))
    ref = gradient_norms_over_time(model, x, y)
    parts = [p for layer in model.layers for p in S._trace.recurrent_parts(layer)]
    got = S.state_grad_norms(parts, lambda: model.train_on_batch(x, y))
    assert list(got) == list(ref)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-6)
    assert not any("state_grads" in vars(layer) or "_record_state_grads" in vars(layer) for _, layer in parts)


def test_trace_refuses_non_recurrent_layers_and_bad_shapes():
    with pytest.raises(ValueError, match="not an LSTM, GRU or SimpleRNN"):
        S._trace.cell_type(Dense(3))
    layer = LSTM(3)
    layer(_x())
    with pytest.raises(ValueError, match="expects 5 input features, got 2"):
        trace_rnn(layer, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="no recurrent layer"):
        S.Stack([Dense(2)])


# ------------------------------------------------------------------------------------------- analyses
def test_rank_units_and_find_matches_by_hand():
    T, U = 60, 6
    v = np.zeros((T, U))
    v[10:14, 4] = 1.0          # unit 4 is on exactly where the span is ...
    v[40:44, 4] = 1.0          # ... and at one other place of the same length
    v[50:52, 4] = 1.0          # ... and at a shorter one
    v[:, 2] = 0.5              # unit 2 is on everywhere: not specific
    order, score, m_in, m_out = S.rank_units(v, 10, 14)
    assert order[0] == 4 and score[4] == pytest.approx(1.0) and score[2] == pytest.approx(0.0)
    assert m_in[4] == 1.0 and m_out[4] == 0.0
    matches = S.find_matches(v, [4], [0.5], 4)
    assert [(s, e) for s, e, _ in matches] == [(10, 14), (40, 44), (50, 52)]   # same length first
    assert S.find_matches(v, [4, 1], [0.5, 0.5], 4) == []
    with pytest.raises(ValueError, match="non-empty span"):
        S.rank_units(v, 5, 5)


def test_gate_saturation_fractions():
    f = np.array([[0.05, 0.5], [0.95, 0.5], [0.02, 0.99], [0.5, 0.95]])
    res = S.gate_saturation({"l": {"f": f}}, {"l": ("f",)})
    assert res["l"]["f"]["left"] == [0.5, 0.0] and res["l"]["f"]["right"] == [0.25, 0.5]


# ------------------------------------------------------------------------------------------- models
def _write(tmp, name, text):
    p = tmp / name
    p.write_text(text, encoding="utf-8")
    return str(p)


@pytest.fixture(scope="module")
def charlm_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("charlm")
    text = _write(tmp, "q.txt", QUOTES)
    assert main(["train", "charlm", "--text", text, "--epochs", "2", "--units", "16", "--embedding-dim", "8",
                 "--batch-size", "4", "--bptt", "20", "--lr", "0.02", "--verbose", "0", "--out", str(tmp / "run")]) == 0
    return str(tmp / "run" / "model.npz"), text


@pytest.fixture(scope="module")
def server(charlm_model):
    path, text = charlm_model
    ex = open_model(path)
    httpd, app = make_server(ex, "127.0.0.1", 0, open(text).read(), 1500)
    th = threading.Thread(target=httpd.serve_forever, daemon=True)
    th.start()
    app.start_corpus()
    t0 = time.time()
    while not app.corpus.ready and app.corpus.error is None and time.time() - t0 < 60:
        time.sleep(0.05)
    assert app.corpus.ready, app.corpus.error
    yield ex, app, httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def _req(port, method, path, body=None, headers=None, raw=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c.putrequest(method, path, skip_host="Host" in h, skip_accept_encoding=True)   # the path goes out byte for byte
    for k, v in h.items():
        c.putheader(k, v)
    if data is not None and "Content-Length" not in h:
        c.putheader("Content-Length", str(len(data)))
    c.endheaders(data)
    r = c.getresponse()
    out = r.status, r.read()
    c.close()
    return out


def _post(port, path, body):
    status, raw = _req(port, "POST", path, body)
    return status, json.loads(raw)


def test_trace_api_values_equal_the_tracer_and_the_model(server):
    from rnnlab.tasks.charlm import build_stream_model, log_softmax

    ex, app, port = server
    text = 'She said "never".'
    status, d = _post(port, "/api/trace", {"text": text, "layer": "rnn_0", "series": "f", "units": [3, 7]})
    assert status == 200 and d["tokens"] == list(text)
    ids = np.asarray(ex.tok.encode(text))
    emb = ex.model.layers[0].forward(ids[None].astype("int32"))[0]
    series, _ = trace_rnn(ex.model.layers[1], emb)
    np.testing.assert_allclose(d["values"]["3"], series["f"][:, 3], atol=1e-4)
    np.testing.assert_allclose(d["values"]["7"], series["f"][:, 7], atol=1e-4)
    # predictions against the real model (its own layers, a batch-1 stream model as 'rnnlab generate' builds)
    m = build_stream_model(ex.V, ex.settings, 1)
    m.load_weights(ex.path)
    m.reset_states()
    p = np.exp(log_softmax(m.predict_on_batch(ids[None].astype("int32"))[0]))
    for t in (0, 5, len(text) - 1):
        best = int(np.argmax(p[t]))
        assert d["topk"][t][0] == [ex.tok.index_char[best], pytest.approx(p[t, best], abs=1e-4)]
    assert d["p_next"][4] == pytest.approx(p[4, ids[5]], abs=1e-4) and d["p_next"][-1] is None


def test_select_api_ranks_units_and_finds_matches_in_the_corpus(server):
    ex, app, port = server
    text = 'He said "yes" and she said "no".'
    status, d = _post(port, "/api/select", {"text": text, "layer": "rnn_0", "series": "h", "start": 9, "end": 12,
                                            "n_units": 2})
    assert status == 200 and d["where"] == "corpus" and d["selection"] == "yes"
    scores = [r["score"] for r in d["ranked"]]
    assert scores == sorted(scores, reverse=True)
    assert d["chosen"] == [r["unit"] for r in d["ranked"][:len(d["chosen"])]]
    # every match is a run where all chosen units are at or above their thresholds, in the corpus series
    v = app.corpus.series["rnn_0"]["h"].astype(np.float64)
    assert d["matches"]
    for m in d["matches"]:
        run = v[m["start"]:m["end"]][:, d["chosen"]]
        assert (run >= np.asarray(d["thresholds"]) - 1e-3).all()
        assert m["match"] == "".join(app.corpus.tokens[m["start"]:m["end"]][:200])
    status, d = _post(port, "/api/select", {"text": text, "start": 30, "end": 99})
    assert status == 400 and "end must be in" in d["error"]


def test_stats_api_counts_saturated_steps_of_the_corpus(server):
    ex, app, port = server
    status, d = _post(port, "/api/stats", {"text": "abc"})
    assert status == 200 and d["source"] == "corpus" and d["steps"] == 1500
    f = app.corpus.series["rnn_0"]["f"].astype(np.float32)
    np.testing.assert_allclose(d["layers"]["rnn_0"]["f"]["left"], (f < 0.1).mean(0), atol=1e-4)
    np.testing.assert_allclose(d["layers"]["rnn_0"]["o"]["right"],
                               (app.corpus.series["rnn_0"]["o"].astype(np.float32) > 0.9).mean(0), atol=1e-4)
    assert set(d["layers"]["rnn_0"]) == {"i", "f", "o"}


def test_sample_and_gradient_apis(server):
    from rnnlab import losses
    from rnnlab.diagnostics import gradient_norms_over_time
    from rnnlab.tasks.charlm import build_stream_model

    ex, app, port = server
    body = {"seed": "He said", "length": 25, "temperature": 0.7, "sample_seed": 3}
    s1, a = _post(port, "/api/sample", body)
    s2, b = _post(port, "/api/sample", body)
    assert s1 == s2 == 200 and a["text"] == b["text"] and len(a["text"]) == 25
    assert _post(port, "/api/sample", {**body, "temperature": -1})[0] == 400
    assert _post(port, "/api/sample", {**body, "length": 10 ** 6})[0] == 400
    text = 'He said "yes".'
    status, d = _post(port, "/api/gradients", {"text": text})
    assert status == 200 and d["tokens"] == list(text[:-1])
    m = build_stream_model(ex.V, ex.settings, 1)
    m.load_weights(ex.path)
    m.compile(optimizer="sgd", loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    ids = np.asarray(ex.tok.encode(text))
    ref = gradient_norms_over_time(m, ids[None, :-1].astype("int32"), ids[None, 1:])
    np.testing.assert_allclose(d["norms"]["rnn_0"], ref["rnn_0"], rtol=1e-5)
    # the loss of the last step only: what reaches t steps back from one prediction
    status, d = _post(port, "/api/gradients", {"text": text, "last_only": True})
    w = np.zeros((1, len(ids) - 1))
    w[0, -1] = 1.0
    m.reset_states()      # the model is stateful: the call above advanced its state
    ref = gradient_norms_over_time(m, ids[None, :-1].astype("int32"), ids[None, 1:], sample_weight=w)
    assert status == 200
    np.testing.assert_allclose(d["norms"]["rnn_0"], ref["rnn_0"], rtol=1e-5)
    assert _post(port, "/api/gradients", {"text": text, "last_only": "yes"})[0] == 400


def test_an_internal_error_is_a_500_with_a_message_and_the_server_goes_on(server, monkeypatch, capsys):
    ex, app, port = server

    def broken(body):
        raise RuntimeError("boom")

    monkeypatch.setattr(app, "stats", broken)
    status, d = _post(port, "/api/stats", {})
    assert status == 500 and d == {"error": "internal error in stats: RuntimeError: boom"}
    assert _req(port, "GET", "/api/info")[0] == 200


def test_corpus_is_cut_to_the_memory_budget(charlm_model, monkeypatch, capsys):
    from rnnlab.explore import server as srv

    path, text = charlm_model
    ex = open_model(path)
    per_char = 2 * 16 * 6                     # one LSTM(16), six float16 series
    monkeypatch.setattr(srv, "MAX_CORPUS_BYTES", 100 * per_char)
    app = srv.ExploreApp(ex, QUOTES, 20000)
    assert len(app.text) == 100 and app.full_chars == len(QUOTES)
    assert "tracing the first 100 characters of --text" in capsys.readouterr().err


def test_static_files_and_info(server):
    ex, app, port = server
    status, html = _req(port, "GET", "/")
    assert status == 200 and b"rnnlab explore" in html and b"/app.js" in html
    for p in ("/app.js", "/style.css", "/favicon.svg"):
        assert _req(port, "GET", p)[0] == 200
    status, raw = _req(port, "GET", "/api/info")
    info = json.loads(raw)
    assert info["kind"] == "charlm" and info["predictions"] and not info["attention"]
    assert info["layers"][0]["series"] == ["h", "c", "i", "f", "g", "o"] and info["corpus"]["chars"] == 1500
    assert json.loads(_req(port, "GET", "/api/progress")[1])["ready"] is True
    d = json.loads(_req(port, "GET", "/api/corpus?start=10&length=20")[1])
    assert d["text"] == QUOTES[10:30]


TRAVERSAL = ["/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
             "/..%2f..%2fetc%2fpasswd", "/static/../../etc/passwd", "/app.js/../../../etc/passwd",
             "/..%5c..%5cetc%5cpasswd", "/%252e%252e/etc/passwd", "//etc/passwd", "/etc/passwd",
             "/index.html%00.js", "/./app.js", "/APP.JS", "/api/../app.js", "/static/app.js", "/rnnlab/explore/server.py",
             "/api/info/../../../etc/passwd", "/%c0%ae%c0%ae/etc/passwd"]


@pytest.mark.parametrize("path", TRAVERSAL)
def test_path_traversal_and_unknown_paths_are_404(server, path):
    ex, app, port = server
    status, body = _req(port, "GET", path)
    assert status == 404, path
    assert b"root:" not in body and b"import" not in body
    assert json.loads(body) == {"error": "not found"}
    assert _req(port, "POST", path, {"text": "x"})[0] == 404


def test_foreign_host_header_is_refused(server):
    ex, app, port = server
    status, body = _req(port, "GET", "/api/info", headers={"Host": "evil.example:%d" % port})
    assert status == 403 and json.loads(body) == {"error": "forbidden host"}
    assert _req(port, "POST", "/api/trace", {"text": "a"}, headers={"Host": "evil.example"})[0] == 403
    assert _req(port, "GET", "/api/info", headers={"Host": f"localhost:{port}"})[0] == 200


def test_bounded_and_bad_input(server):
    ex, app, port = server
    status, d = _post(port, "/api/trace", {"text": "a" * (S.MAX_TEXT_CHARS + 1)})
    assert status == 400 and f"the limit is {S.MAX_TEXT_CHARS}" in d["error"]
    status, body = _req(port, "POST", "/api/trace", raw=b"x" * (MAX_BODY + 1))
    assert status == 413 and b"limit" in body
    status, body = _req(port, "POST", "/api/trace", raw=b"{}", headers={"Content-Length": "99999999999"})
    assert status == 413
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.putrequest("POST", "/api/trace")
    c.endheaders()
    assert c.getresponse().status == 411
    c.close()
    assert _req(port, "POST", "/api/trace", raw=b"{not json")[0] == 400
    assert _req(port, "POST", "/api/trace", raw=b"[1, 2]")[0] == 400
    status, d = _post(port, "/api/trace", {"text": "abc", "layer": "nope"})
    assert status == 400 and "unknown layer 'nope'" in d["error"]
    status, d = _post(port, "/api/trace", {"text": "abc", "series": "z"})
    assert status == 400 and "no series 'z'" in d["error"]
    status, d = _post(port, "/api/trace", {"text": "abc", "units": [16]})
    assert status == 400 and "[0, 15]" in d["error"]
    assert _post(port, "/api/trace", {"text": "abc", "units": list(range(17))})[0] == 400
    assert _post(port, "/api/trace", {"text": 5})[0] == 400
    assert _post(port, "/api/attention", {"text": "abc"})[0] == 400       # not a seq2seq model
    assert _req(port, "PUT", "/api/trace", {"text": "a"})[0] == 405
    assert _req(port, "HEAD", "/")[0] == 405
    assert _req(port, "GET", "/api/corpus?start=0&length=999999")[0] == 400


# ------------------------------------------------------------------------------------------- other tasks
def test_window_charlm_predictions_use_the_windows(tmp_path):
    text = _write(tmp_path, "q.txt", QUOTES)
    assert main(["train", "charlm", "--text", text, "--preset", "keras-nietzsche", "--units", "8", "--maxlen", "10",
                 "--epochs", "1", "--verbose", "0", "--out", str(tmp_path / "w")]) == 0
    ex = open_model(str(tmp_path / "w"))          # a run folder works too
    t = 'He said "yes"'
    tokens, series, _, out = ex.trace(t)
    info = ex.output_info(out, tokens)
    from rnnlab.tasks.charlm import one_hot_windows

    ids = np.asarray(ex.tok.encode(t))
    pad = np.r_[np.full(9, ex.tok.char_index[" "]), ids]
    p = np.asarray(ex.model.predict_on_batch(one_hot_windows(pad, [len(ids) - 1], 10, ex.V)))[0]
    assert info["topk"][-1][0][1] == pytest.approx(p.max(), abs=1e-4)
    assert series["rnn_0"]["h"].shape == (len(t), 8)
    shown, norms = ex.gradient_norms(t)
    assert len(shown) == 10 and len(norms["rnn_0"]) == 10


def test_wordlm_classify_tag_seq2seq_and_saved_sequential(tmp_path):
    from rnnlab.datasets.conll import generate_two_sided_tagging, write_conll
    from rnnlab.tasks.classify import predict_proba

    # wordlm
    lines = "the cat sat on the mat\na dog ran to the house\n" * 30
    tr, va = _write(tmp_path, "train.txt", lines), _write(tmp_path, "valid.txt", lines[:200])
    assert main(["train", "wordlm", "--train", tr, "--valid", va, "--units", "8", "--embedding-dim", "8",
                 "--batch-size", "4", "--bptt", "10", "--epochs", "1", "--verbose", "0", "--eval-batch-size", "2",
                 "--out", str(tmp_path / "wl")]) == 0
    ex = open_model(str(tmp_path / "wl" / "model.npz"))
    tokens, series, _, out = ex.trace("the cat sat\na dog")
    assert ex.kind == "wordlm" and tokens == ["the", "cat", "sat", "<eos>", "a", "dog"]
    assert ex.encode("the cat\n  ")[0] == ["the", "cat", "<eos>"] and ex.encode("a dog\n")[0] == ["a", "dog", "<eos>"]
    assert len(ex.output_info(out, tokens)["topk"]) == 6
    assert len(ex.sample("the cat", 5, 1.0, 0).split()) <= 5
    assert len(ex.gradient_norms("the cat sat on")[1]["rnn_0"]) == 3

    # classify: the output equals 'rnnlab predict''s probabilities
    sys.path.insert(0, os.path.dirname(__file__))
    from test_cli_classify import SMALL, write_data

    data = write_data(tmp_path / "d.csv")
    assert main(["train", "classify", "--data", data, "--out", str(tmp_path / "cl")] + SMALL) == 0
    ex = open_model(str(tmp_path / "cl" / "model.npz"))
    tokens, series, _, out = ex.trace("a great superb film")
    got = dict(ex.output_info(out, tokens)["classes"])
    ref = predict_proba(ex.model, [ex._ids("a great superb film")])[0]
    assert [got[c] for c in ex.classes] == pytest.approx(ref, abs=1e-4)
    with pytest.raises(ValueError, match="label must be one of"):
        ex.gradient_norms("a great film", "maybe")
    assert len(ex.gradient_norms("a great film", ex.classes[0])[1]) == 1

    # tag (Tagger.save, as 'rnnlab train tag' writes it): tags equal Tagger.predict
    f = write_conll(generate_two_sided_tagging(60, seed=0), str(tmp_path / "t.conll"))
    assert main(["train", "tag", "--train", f, "--valid", f, "--epochs", "1", "--units", "8", "--embedding-dim", "8",
                 "--char-features", "--out", str(tmp_path / "tg"), "--verbose", "0"]) == 0
    ex = open_model(str(tmp_path / "tg" / "model.npz"))
    words = "mr alba said kell corp".split()
    tokens, series, _, out = ex.trace(" ".join(words))
    assert ex.output_info(out, tokens)["tags"] == ex.tagger.predict([words])[0]
    assert len(series) == 2    # the two directions of the BiLSTM
    shown, norms = ex.gradient_norms(" ".join(words))          # labels: the predicted tags
    assert shown == words and len(norms) == 2 and all(len(v) == 5 and min(v) > 0 for v in norms.values())
    other = ex.gradient_norms(" ".join(words), " ".join(["O"] * 5))[1]
    assert all(other[k] != norms[k] for k in norms) or ex.tagger.predict([words])[0] == ["O"] * 5
    with pytest.raises(ValueError, match="2 tags for 5 words"):
        ex.gradient_norms(" ".join(words), "O O")
    with pytest.raises(ValueError, match="was not seen in training"):
        ex.gradient_norms(" ".join(words), "O O O O NOPE")

    # seq2seq: attention equals Seq2Seq.translate; the encoder trace equals the encoder's forward
    pairs = "".join(f"{w}\t{w[::-1]}\n" for w in ["abc", "bca", "cab", "aab", "bba", "ccb", "acb", "bac"] * 5)
    assert main(["train", "seq2seq", "--pairs", _write(tmp_path, "p.tsv", pairs), "--epochs", "1", "--units", "8",
                 "--embedding-dim", "4", "--out", str(tmp_path / "s2s"), "--verbose", "0"]) == 0
    ex = open_model(str(tmp_path / "s2s" / "model.npz"))
    d = ex.translate("abc")
    out, att = ex.model.translate(["abc"])[0]
    assert d["output"] == out and d["source"] == ["a", "b", "c"]
    np.testing.assert_allclose(d["attention"], att, atol=1e-4)
    # the default encoder is bidirectional: both directions are traced, each in reading order, and together
    # they are the encoder's output H = [forward; backward]
    assert ex.model.bidirectional
    assert [(l["label"], l["direction"]) for l in ex.info()["layers"]] == [
        ("forward_encoder_0", "left-to-right"), ("backward_encoder_0", "right-to-left")]
    tokens, series, _, _ = ex.trace("abc")
    X = ex.model.encode_sources(["abc"])
    H, _, _ = ex.model._encode(X)
    np.testing.assert_allclose(series["forward_encoder_0"]["h"], H[0][:, :8], atol=1e-5)
    np.testing.assert_allclose(series["backward_encoder_0"]["h"], H[0][:, 8:], atol=1e-5)
    shown, norms = ex.gradient_norms("abc", "cba")
    assert shown == ["a", "b", "c"] and set(norms) == {"forward_encoder_0", "backward_encoder_0", "decoder_0"}
    assert len(norms["forward_encoder_0"]) == len(norms["backward_encoder_0"]) == 3
    assert len(norms["decoder_0"]) == 4     # <start> c b a
    assert min(norms["forward_encoder_0"] + norms["backward_encoder_0"] + norms["decoder_0"]) > 0
    assert main(["train", "seq2seq", "--pairs", _write(tmp_path, "p.tsv", pairs), "--epochs", "1", "--units", "8",
                 "--embedding-dim", "4", "--unidirectional", "--out", str(tmp_path / "s2s_uni"), "--verbose", "0"]) == 0
    uni = open_model(str(tmp_path / "s2s_uni" / "model.npz"))
    assert [(l["label"], l["direction"]) for l in uni.info()["layers"]] == [("encoder_0", "left-to-right")]
    np.testing.assert_allclose(uni.trace("abc")[1]["encoder_0"]["h"], uni.model._encode(X)[0][0], atol=1e-5)
    assert set(uni.gradient_norms("abc", "cba")[1]) == {"encoder_0", "decoder_0"}
    greedy = ex.model.translate(["abc"])[0][0]     # default label: the model's own output, cut at max_target_len
    assert len(ex.gradient_norms("abc")[1]["decoder_0"]) == min(len(greedy), ex.model.max_target_len) + 1

    # a Sequential saved with model.save: token ids typed as numbers
    model = rnnlab.Sequential([rnnlab.Input((None,), dtype="int32"), Embedding(9, 3), SimpleRNN(4), Dense(2)])
    model(np.zeros((1, 3), "int32"))
    model.save(str(tmp_path / "seq.npz"))
    ex = open_model(str(tmp_path / "seq.npz"))
    tokens, series, _, out = ex.trace("1 2 3 8")
    assert ex.kind == "sequential" and tokens == ["1", "2", "3", "8"]
    np.testing.assert_allclose(out, model(np.array([[1, 2, 3, 8]], "int32")), atol=1e-5)
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 8\]"):
        ex.trace("1 9")
    with pytest.raises(ValueError, match="whitespace-separated integers"):
        ex.trace("one two")


def test_open_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model file"):
        open_model(str(tmp_path / "nope.npz"))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not an rnnlab .npz model file"):
        open_model(str(bad))
    np.savez(str(tmp_path / "other.npz"), a=np.zeros(2))
    with pytest.raises(ValueError, match="not a model file written by rnnlab"):
        open_model(str(tmp_path / "other.npz"))
    model = rnnlab.Sequential([rnnlab.Input((3,)), Dense(2)])
    model(np.zeros((1, 3), "float32"))
    model.save(str(tmp_path / "dense.npz"))
    with pytest.raises(ValueError, match="no recurrent layer"):
        open_model(str(tmp_path / "dense.npz"))


# ------------------------------------------------------------------------------------------- the command
def test_cli_serves_on_loopback_and_reports_progress(charlm_model, tmp_path):
    from rnnlab.cli import build_parser

    args = build_parser(["explore", "m.npz"]).parse_args(["explore", "m.npz"])
    assert args.host == "127.0.0.1"
    path, text = charlm_model
    proc = subprocess.Popen([sys.executable, "-m", "rnnlab", "explore", path, "--text", text, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "charlm model" in line and "http://127.0.0.1:" in line, line + proc.stderr.read()
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        t0 = time.time()
        while True:
            p = json.loads(_req(port, "GET", "/api/progress")[1])
            assert p["total"] >= 1 and 0 <= p["done"] <= p["total"]
            if p["ready"] or time.time() - t0 > 60:
                break
            time.sleep(0.1)
        assert p["ready"] and p["tokens"] == len(QUOTES)
    finally:
        proc.terminate()
        proc.wait(10)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["explore", str(tmp_path / "missing.npz")]) == 1
    assert "no such model file" in capsys.readouterr().err
    assert main(["explore", str(tmp_path / "missing.npz"), "--port", "70000"]) == 1
    assert "--port must be in [0, 65535]" in capsys.readouterr().err


def test_functional_models_open_when_they_are_a_chain_and_are_refused_clearly_otherwise(tmp_path):
    import rnnlab
    from rnnlab import layers
    from rnnlab.explore.session import open_model

    ids = rnnlab.Input((None,), dtype="int32")
    chain = rnnlab.Model(ids, layers.Dense(1)(layers.LSTM(4)(layers.Embedding(20, 3)(ids))))
    chain.save(str(tmp_path / "chain.npz"))
    ex = open_model(str(tmp_path / "chain.npz"))
    tokens, series = ex.trace("1 2 19")[:2]
    assert tokens == ["1", "2", "19"] and series      # token ids read through the Embedding after the InputLayer
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 19\]"):
        ex.trace("1 20")

    a, b = rnnlab.Input((None, 5)), rnnlab.Input((None, 5))
    two = rnnlab.Model([a, b], layers.Dense(1)(layers.Concatenate()([layers.LSTM(4)(a), layers.GRU(3)(b)])))
    two.save(str(tmp_path / "two.npz"))
    with pytest.raises(ValueError, match="holds a model with 2 inputs"):
        open_model(str(tmp_path / "two.npz"))
