"""Tagger on the one engine (issue 16) and feature columns (issue 20): Engine.fit over sentences, best-epoch
restore, the engine's NaN policy, train_on_batch on arrays, CRFLoss, feature columns (reading, gradients, files,
the CLI), and the tagger file's format version."""
import io
import json
import warnings

import numpy as np
import pytest

from rnnlab import backend, cli
from rnnlab import io as rio
from rnnlab.callbacks import History
from rnnlab.datasets.conll import Sentence, generate_two_sided_tagging, read_conll
from rnnlab.layers.crf import CRF, CRFLoss
from rnnlab.models.engine import Engine
from rnnlab.optimizers import Adam
from rnnlab.tagging.tagger import TaggingBatches, Tagger, build_tagger

POS = {"mr": "NNP", "dr": "NNP", "inc": "NNP", "corp": "NNP", "city": "NN", "river": "NN"}


def _with_pos(sentences):
    """The two-sided task with a POS-like feature column (name words NNP, fillers DT)."""
    out = []
    for s in sentences:
        pos = [POS.get(t, "NNP" if t[0] in "abcdefghijklmnopqrst" and t not in ("the", "a", "of", "and", "to", "was",
                                                                                  "is", "with", "for", "on", "by",
                                                                                  "from", "said", "that", "at", "met",
                                                                                  "saw", "called", "near", "after")
                        else "DT") for t in s.tokens]
        out.append(Sentence(s.tokens, s.tags, s.line, [pos]))
    return out


def _write3(path, sentences):
    with open(path, "w", encoding="utf-8") as f:
        for s in sentences:
            for t, p, g in zip(s.tokens, s.features[0], s.tags):
                f.write(f"{t} {p} {g}\n")
            f.write("\n")
    return str(path)


# ------------------------------------------------------------------------------------------- the engine
def test_tagger_is_an_engine_model_and_fit_keeps_the_best_validation_epoch():
    train = generate_two_sided_tagging(200, seed=0)
    valid = generate_two_sided_tagging(60, seed=1)
    backend.set_random_seed(0)
    m = build_tagger(train, embedding_dim=8, units=8, crf=True, tag_scheme="iob2")
    assert isinstance(m, Engine)
    hist = m.fit(train, valid, epochs=4, batch_size=16, optimizer=Adam(0.02), verbose=0)
    assert isinstance(hist, History) and m.history is hist
    f1 = hist.history["val_f1"]
    assert len(f1) == 4 and {"loss", "accuracy", "val_loss", "val_accuracy", "val_precision"} <= set(hist.history)
    # EarlyStopping(restore_best_weights): the weights after fit are those of the best validation epoch
    assert m.evaluate(valid)["f1"] == pytest.approx(max(f1), abs=1e-12)
    assert max(f1) > 0.3   # it learned (an untrained tagger scores about 0)


def test_fit_patience_stops_early():
    train = generate_two_sided_tagging(120, seed=0)
    backend.set_random_seed(0)
    m = build_tagger(train, embedding_dim=4, units=4)
    hist = m.fit(train, train[:20], epochs=30, batch_size=32, optimizer=Adam(0.0), verbose=0, patience=1)
    # a zero learning rate never improves the validation value: stopped after 1 + patience epochs
    assert len(hist.history["loss"]) == 2


def test_fit_nan_loss_stops_before_the_update_with_the_engines_policy():
    train = generate_two_sided_tagging(64, seed=0)
    backend.set_random_seed(0)
    m = build_tagger(train, embedding_dim=4, units=4, crf=True)
    m.out.layer.params["bias"][0] = np.nan          # every emission of tag 0 is NaN -> a NaN loss
    before = m.word_emb.params["embeddings"].copy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hist = m.fit(train, epochs=3, batch_size=16, verbose=0)
    assert m.stop_reason and "loss" in m.stop_reason and hist.stop_reason == m.stop_reason
    assert any("nan" in str(w.message).lower() or "finite" in str(w.message).lower() for w in caught)
    np.testing.assert_array_equal(m.word_emb.params["embeddings"], before)   # no update was applied


def test_engine_array_api_train_on_batch_and_default_loss():
    train = generate_two_sided_tagging(40, seed=0)
    backend.set_random_seed(0)
    m = build_tagger(train, char_features=True, embedding_dim=4, units=4, char_dim=3, char_units=3, crf=True)
    m.compile(Adam(0.05))
    assert isinstance(m.loss, CRFLoss)
    xs, y = m.arrays(train[:16])
    assert [a.ndim for a in xs] == [2, 3]
    first = m.train_on_batch(xs, y, return_dict=True)
    assert {"loss", "accuracy"} <= set(first)
    for _ in range(15):
        last = m.train_on_batch(xs, y, return_dict=True)
    assert last["loss"] < first["loss"]
    with pytest.raises(ValueError, match=r"the tagger has 2 input\(s\) \['words', 'chars'\], got 1"):
        m.train_on_batch(xs[0], y)
    with pytest.raises(ValueError, match="input 'chars' must be integer ids"):
        m.train_on_batch([xs[0], xs[1].astype(float)], y)


def test_tagging_batches_shuffle_from_the_seeded_generator():
    train = generate_two_sided_tagging(50, seed=0)
    m = build_tagger(train, embedding_dim=4, units=4)
    ds = TaggingBatches(m, train, batch_size=8)
    assert len(ds) == 7
    backend.set_random_seed(3)
    ds.on_epoch_begin()
    a = ds.order.copy()
    backend.set_random_seed(3)
    ds.on_epoch_begin()
    np.testing.assert_array_equal(a, ds.order)
    xs, y = ds[6]
    assert y.shape[0] == 2 and xs[0].shape == y.shape
    with pytest.raises(IndexError):
        ds[7]
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        TaggingBatches(m, train, batch_size=0)


def test_crf_loss_equals_the_negative_log_likelihood_and_its_gradient():
    rng = np.random.default_rng(0)
    crf = CRF(4)
    crf.build((None, None, 4))
    for k in ("transitions", "start_transitions", "end_transitions"):
        crf.params[k][...] = rng.normal(size=crf.params[k].shape)
    x = rng.normal(size=(3, 5, 4))
    y = rng.integers(0, 4, size=(3, 5))
    mask = np.array([[1] * 5, [1] * 3 + [0] * 2, [1] + [0] * 4], dtype=bool)
    loss = CRFLoss(crf)
    nll = np.mean(crf.log_partition(x, mask) - crf.sequence_score(x, y, mask))
    assert loss(y, x, mask=mask) == pytest.approx(nll, rel=1e-12)
    value, grad = loss.forward_backward(y, x, mask=mask)
    ref_value, ref_grad = crf.loss_and_grads(x, y, mask)
    assert value == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12)
    with pytest.raises(ValueError, match="sample_weight is not supported"):
        loss(y, x, sample_weight=np.ones(3), mask=mask)
    with pytest.raises(TypeError, match="crf must be a CRF layer"):
        CRFLoss("crf")


# ------------------------------------------------------------------------------------------- feature columns
def test_read_conll_feature_columns(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("He PRP B-NP\nreckons VBZ B-VP\n\nthe DT B-NP\n")
    s = read_conll(str(p), feature_columns="auto")
    assert s[0].features == [["PRP", "VBZ"]] and s[1].features == [["DT"]]
    assert read_conll(str(p))[0].features is None
    assert read_conll(str(p), feature_columns=[1])[0].features == [["PRP", "VBZ"]]
    two = tmp_path / "two.txt"
    two.write_text("a O\nb B-X\n")
    assert read_conll(str(two), feature_columns="auto")[0].features is None
    with pytest.raises(ValueError, match="feature column 2 is also the token or the tag column"):
        read_conll(str(p), feature_columns=[2])
    with pytest.raises(ValueError, match="c.txt, line 1: feature column 5 is out of range for 3 columns"):
        read_conll(str(p), feature_columns=[5])
    with pytest.raises(ValueError, match="feature_columns must be None, 'auto' or a list"):
        read_conll(str(p), feature_columns="pos")


def test_feature_column_gradients_match_finite_differences(float64):
    train = _with_pos(generate_two_sided_tagging(3, seed=0))
    backend.set_random_seed(0)
    m = build_tagger(train, char_features=True, casing=True, embedding_dim=3, units=3, char_dim=2, char_units=2,
                     feature_dim=2, crf=True)
    assert len(m.features) == 1 and m.feature_embs[0].params["embeddings"].shape == (len(m.features[0]), 2)
    xs, y = m.arrays(train)
    w, c, f = xs
    m.loss_and_grads(w, c, y, f=f)
    emb = m.feature_embs[0]
    g = emb.grads["embeddings"]
    g = g.to_dense() if hasattr(g, "to_dense") else np.array(g)
    p = emb.params["embeddings"]
    rows = np.unique(f)
    for r in rows:
        for j in range(p.shape[1]):
            old = p[r, j]
            p[r, j] = old + 1e-6
            lp = m.loss_and_grads(w, c, y, f=f)
            p[r, j] = old - 1e-6
            lm = m.loss_and_grads(w, c, y, f=f)
            p[r, j] = old
            assert g[r, j] == pytest.approx((lp - lm) / 2e-6, rel=1e-5, abs=1e-9)
    assert np.all(g[0] == 0)   # the padding row gets no gradient
    # the word embedding's gradient is still routed to its own slice
    m.loss_and_grads(w, c, y, f=f)
    gw = m.word_emb.grads["embeddings"]
    gw = gw.to_dense() if hasattr(gw, "to_dense") else np.array(gw)
    P = m.word_emb.params["embeddings"]
    r = int(w[0, 0])
    old = P[r, 1]
    P[r, 1] = old + 1e-6
    lp = m.loss_and_grads(w, c, y, f=f)
    P[r, 1] = old - 1e-6
    lm = m.loss_and_grads(w, c, y, f=f)
    P[r, 1] = old
    assert gw[r, 1] == pytest.approx((lp - lm) / 2e-6, rel=1e-5, abs=1e-9)


def test_feature_columns_help_and_round_trip(tmp_path):
    # the tag of the two-sided task depends on the trigger word; here the POS column alone says which words
    # are names, so a tagger that reads it learns faster than one that does not
    train = _with_pos(generate_two_sided_tagging(300, seed=0))
    valid = _with_pos(generate_two_sided_tagging(80, seed=1))
    backend.set_random_seed(0)
    m = build_tagger(train, embedding_dim=8, units=8, feature_dim=4)
    m.fit(train, valid, epochs=3, batch_size=16, optimizer=Adam(0.02), verbose=0)
    path = m.save(tmp_path / "t.npz")
    back = Tagger.load(path)
    assert [v.items for v in back.features] == [v.items for v in m.features]
    toks = [s.tokens for s in valid[:5]]
    feats = [s.features for s in valid[:5]]
    assert back.predict(toks, features=feats) == m.predict(toks, features=feats)
    with pytest.raises(ValueError, match=r"reads 1 feature column\(s\) besides the words"):
        m.predict(toks)


def test_cli_feature_columns_and_tag_with_word_bar_feature(tmp_path, capsys):
    train = _with_pos(generate_two_sided_tagging(60, seed=0))
    a = _write3(tmp_path / "train.txt", train)
    b = _write3(tmp_path / "valid.txt", _with_pos(generate_two_sided_tagging(20, seed=1)))
    small = ["--epochs", "1", "--units", "4", "--embedding-dim", "4", "--char-dim", "3", "--char-units", "3",
             "--feature-dim", "3", "--verbose", "0", "--threads", "1"]
    assert cli.main(["train", "tag", "--train", a, "--valid", b, "--out", str(tmp_path / "o")] + small) == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m["feature_columns"] == 1
    model = str(tmp_path / "o" / "model.npz")
    assert cli.main(["tag", "--model", model, "mr|NNP alba|NNP said|DT"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split("\t")[0] for ln in lines] == ["mr", "alba", "said"]
    assert cli.main(["tag", "--model", model, "mr alba"]) == 1
    assert "trained with 1 feature column(s) besides the words: give each token as word|feature" in \
        capsys.readouterr().err
    assert cli.main(["train", "tag", "--train", a, "--valid", b, "--out", str(tmp_path / "n"),
                     "--feature-columns", "none"] + small) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["feature_columns"] == 0


# ------------------------------------------------------------------------------------------- file versions
def test_version_1_files_load_and_newer_versions_are_refused(tmp_path, rewrite_tagger_doc):
    train = generate_two_sided_tagging(30, seed=0)
    m = build_tagger(train, char_features=True, embedding_dim=4, units=4, char_dim=3, char_units=3, crf=True)
    path = m.save(tmp_path / "t.npz")

    def to_v1(doc):   # a file written before feature columns: no "version", "features" or "feature_dim"
        del doc["version"], doc["features"], doc["config"]["feature_dim"]

    old = rewrite_tagger_doc(path, tmp_path / "v1.npz", to_v1)
    back = Tagger.load(old)
    sents = [s.tokens for s in train[:4]]
    assert back.predict(sents) == m.predict(sents) and back.features == []

    def to_v99(doc):
        doc["version"] = 99

    new = rewrite_tagger_doc(path, tmp_path / "v99.npz", to_v99)
    with pytest.raises(rio.FileFormatError, match=r"v99.npz: tagger file format version 99; this rnnlab reads "
                                                  r"versions 1 to 4"):
        Tagger.load(new)


def test_train_tag_runs_model_fit_with_one_engine_step_per_batch(tmp_path, capsys, monkeypatch):
    train = _with_pos(generate_two_sided_tagging(40, seed=0))
    a = _write3(tmp_path / "train.txt", train)
    b = _write3(tmp_path / "valid.txt", _with_pos(generate_two_sided_tagging(10, seed=1)))
    calls = {"fit": [], "batches": 0}
    real_fit, real_batch = Engine.fit, Engine._train_batch

    def spy_fit(self, *args, **kw):
        calls["fit"].append(type(self).__name__)
        return real_fit(self, *args, **kw)

    def spy_batch(self, *args, **kw):
        calls["batches"] += 1
        return real_batch(self, *args, **kw)

    monkeypatch.setattr(Engine, "fit", spy_fit)
    monkeypatch.setattr(Engine, "_train_batch", spy_batch)
    assert cli.main(["train", "tag", "--train", a, "--valid", b, "--out", str(tmp_path / "o"), "--epochs", "2",
                     "--batch-size", "8", "--units", "4", "--embedding-dim", "4", "--char-dim", "3",
                     "--char-units", "3", "--verbose", "0", "--threads", "1"]) == 0
    assert calls["fit"] == ["Tagger"]          # one Model.fit call, on the tagger itself
    assert calls["batches"] == 2 * 5           # 40 sentences / 8 = 5 engine steps per epoch
    hist = json.loads((tmp_path / "o" / "history.json").read_text())
    rows = hist if isinstance(hist, list) else hist.get("history", hist)
    assert len(rows) == 2


def test_tagger_fit_on_a_dataset_is_engine_fit():
    train = generate_two_sided_tagging(48, seed=0)
    backend.set_random_seed(0)
    m = build_tagger(train, embedding_dim=4, units=4)
    m.compile(Adam(0.01))
    hist = m.fit(x=TaggingBatches(m, train, batch_size=16), epochs=2, verbose=0)
    assert len(hist.history["loss"]) == 2 and "accuracy" in hist.history
    with pytest.raises(TypeError, match=r"unexpected arguments \['initial_epoch'\] for sentences"):
        m.fit(train, epochs=1, verbose=0, initial_epoch=0)


def test_tagger_fit_time_budget_stops_with_the_engines_timebudget():
    train = generate_two_sided_tagging(64, seed=0)
    backend.set_random_seed(0)
    m = build_tagger(train, embedding_dim=4, units=4)
    hist = m.fit(train, train[:10], epochs=5, batch_size=8, verbose=0, time_budget=1e-9)
    assert len(hist.history.get("loss", [])) <= 1
    assert m.stop_reason and "time budget" in m.stop_reason


def test_tagging_package_exports_the_tagger():
    import rnnlab.tagging as tagging

    assert tagging.Tagger is Tagger and tagging.TaggingBatches is TaggingBatches
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        tagging.Nope


def test_keras_parity_of_the_tagger_with_a_feature_column(float64):
    """Words + one feature column (its own Embedding) -> Concatenate -> BiLSTM -> softmax, built in Keras 3
    (functional, torch backend, float64) with our weights: same probabilities, masked loss and weight gradients."""
    keras = pytest.importorskip("keras")
    torch = pytest.importorskip("torch")
    train = _with_pos(generate_two_sided_tagging(3, seed=0))
    model = build_tagger(train, embedding_dim=3, units=4, feature_dim=2)
    rng = np.random.default_rng(0)
    for _, owner, name in model.iter_weights():
        p = owner.params[name]
        p[...] = rng.standard_normal(p.shape) * 0.5
    (w, f), y = model.arrays(train)
    T = w.shape[1]
    L_ = keras.layers
    w_in = keras.Input((T,), dtype="int64")
    f_in = keras.Input((T,), dtype="int64")
    k_emb = L_.Embedding(len(model.words), 3, mask_zero=True, dtype="float64")
    # mask_zero on the feature embedding too: Keras' Concatenate merges its inputs' masks with *any*, so an
    # unmasked input would unmask the padding; feature id 0 is padding exactly where word id 0 is
    k_femb = L_.Embedding(len(model.features[0]), 2, mask_zero=True, dtype="float64")
    k_rnn = L_.Bidirectional(L_.LSTM(4, return_sequences=True, dtype="float64"), dtype="float64")
    k_out = L_.TimeDistributed(L_.Dense(len(model.tags), activation="softmax", dtype="float64"), dtype="float64")
    h = L_.Concatenate(dtype="float64")([k_emb(w_in), k_femb(f_in)])
    kmodel = keras.Model([w_in, f_in], k_out(k_rnn(h)))
    for k, ours in ((k_emb, model.word_emb), (k_femb, model.feature_embs[0]), (k_rnn, model.rnns[0]),
                    (k_out, model.out)):
        k.set_weights(ours.get_weights())
    ours_p, mask = model.forward(w, None, training=True, f=f)
    loss, grad = model.loss.forward_backward(y, ours_p, mask=mask)
    model.backward(grad)
    kp = kmodel([torch.tensor(w), torch.tensor(f[..., 0])])
    assert np.max(np.abs(ours_p - keras.ops.convert_to_numpy(kp))) < 1e-6 * np.max(np.abs(ours_p))
    m = torch.tensor(mask, dtype=torch.float64)
    picked = torch.gather(kp, 2, torch.tensor(y)[..., None])[..., 0]
    kloss = -(torch.log(picked) * m).sum() / m.sum()
    assert abs(kloss.item() - loss) < 1e-6 * abs(loss)
    kvars = [v for l in (k_emb, k_femb, k_rnn, k_out) for v in l.weights]
    grads = torch.autograd.grad(kloss, [v.value for v in kvars])
    refs = list(model.iter_weights())
    assert len(refs) == len(grads)
    for (path, owner, name), kg in zip(refs, grads):
        g = owner.grads[name]
        g = g.to_dense() if hasattr(g, "to_dense") else np.asarray(g)
        kg = kg.detach().numpy()
        assert np.max(np.abs(g - kg)) <= 1e-6 * max(np.max(np.abs(kg)), 1e-12), path
