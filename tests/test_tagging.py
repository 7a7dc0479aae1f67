"""Tagger: end-to-end float64 gradients (incl. the char BiLSTM path), masking, bi vs uni, files, CLI."""
import json

import numpy as np
import pytest

from rnnlab import backend, cli
from rnnlab.datasets.conll import (
    Sentence, generate_suffix_tagging, generate_two_sided_tagging, read_conll, write_conll,
)
from rnnlab.optimizers import Adam
from rnnlab.tagging.tagger import Tagger, build_tagger
from rnnlab.testing import rel_error

TRAIN = [Sentence("John lives in New York".split(), ["B-PER", "O", "O", "B-LOC", "I-LOC"]),
         Sentence("Mary left".split(), ["B-PER", "O"])]


@pytest.mark.parametrize("cell, bidirectional, chars, layers", [
    ("lstm", True, True, 1), ("gru", False, True, 2), ("rnn", True, False, 1)])
def test_loss_gradients_match_finite_differences(float64, cell, bidirectional, chars, layers):
    model = build_tagger(TRAIN, char_features=chars, embedding_dim=3, units=3, cell=cell, layers=layers,
                         bidirectional=bidirectional, char_dim=2, char_units=2)
    w, c, y = model.encode([s.tokens for s in TRAIN], [s.tags for s in TRAIN])
    assert (w[1, 2:] == 0).all()  # the second sentence is padded
    model.loss_and_grads(w, c, y)
    rng = np.random.default_rng(0)
    checked = 0
    for path, owner, name in model.iter_weights():
        g = owner.grads[name]
        g = g.to_dense() if hasattr(g, "to_dense") else np.array(g)
        p = owner.params[name]
        flat = rng.choice(p.size, size=min(6, p.size), replace=False)
        if name == "embeddings":  # rows that occur in the batch
            rows = np.unique((c if "char" in path else w).ravel())
            flat = np.ravel_multi_index((rows[rng.integers(0, len(rows), 6)], rng.integers(0, p.shape[1], 6)),
                                        p.shape)
        num = np.empty(len(flat))
        for k, i in enumerate(flat):
            idx = np.unravel_index(i, p.shape)
            old = p[idx]
            p[idx] = old + 1e-6
            lp = model.loss_and_grads(w, c, y)
            p[idx] = old - 1e-6
            lm = model.loss_and_grads(w, c, y)
            p[idx] = old
            num[k] = (lp - lm) / 2e-6
        model.loss_and_grads(w, c, y)
        g = owner.grads[name]
        g = g.to_dense() if hasattr(g, "to_dense") else np.array(g)
        ana = g.ravel()[flat]
        # central differences of a mean cross-entropy resolve about 1e-10 absolutely; a wrong backward is off
        # by the size of the gradient itself (1e-5 .. 1e-1 here)
        np.testing.assert_allclose(ana, num, rtol=1e-6, atol=1e-9, err_msg=path)
        checked += 1
    assert checked == len(list(model.iter_weights()))
    # padding rows of the word embedding get no gradient
    assert np.all(model.word_emb.grads["embeddings"].to_dense()[0] == 0)


def test_padding_does_not_change_predictions():
    model = build_tagger(TRAIN, char_features=True, embedding_dim=4, units=5, char_dim=3, char_units=3)
    alone = model.forward(*model.encode([TRAIN[1].tokens])[:2])[0][0]
    batched = model.forward(*model.encode([TRAIN[0].tokens, TRAIN[1].tokens])[:2])[0][1, :2]
    np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=1e-6)


def test_bidirectional_beats_unidirectional_on_the_two_sided_task():
    train = generate_two_sided_tagging(800, seed=0)
    valid = generate_two_sided_tagging(200, seed=1)
    scores = {}
    for bi in (True, False):
        backend.set_random_seed(0)
        m = build_tagger(train, bidirectional=bi, embedding_dim=16, units=16)
        m.fit(train, valid, epochs=5, batch_size=32, optimizer=Adam(0.01), verbose=0)
        scores[bi] = m.evaluate(valid)
    # a left-to-right tagger cannot know the type of an entity announced by a trigger after it
    assert scores[True]["f1"] > 0.9
    assert scores[True]["f1"] > scores[False]["f1"] + 0.2


def test_save_load_and_unknown_words(tmp_path):
    model = build_tagger(TRAIN, char_features=True, embedding_dim=4, units=4)
    p = model.save(tmp_path / "t.npz")
    back = Tagger.load(p)
    sents = [["John", "visited", "Zzyzx"], ["Mary"]]  # unknown words map to <unk>
    assert back.predict(sents) == model.predict(sents)
    np.testing.assert_array_equal(back.encode(sents)[0], model.encode(sents)[0])
    assert model.encode(sents)[0][0, 2] == 1
    with pytest.raises(ValueError, match="not an rnnlab tagger file"):
        np.savez(tmp_path / "x.npz", a=np.zeros(1))
        Tagger.load(tmp_path / "x.npz")


def test_unknown_tags_in_evaluation():
    model = build_tagger(TRAIN, embedding_dim=4, units=4)
    test = [Sentence(["Paris"], ["B-GPE"], line=12)]
    with pytest.raises(ValueError, match=r"tag 'B-GPE' \(line 12\) was not seen in training"):
        model.evaluate(test)
    ev = model.evaluate(test, unknown_tags="O")
    assert ev["token_accuracy"] in (0.0, 1.0)


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="cell must be one of"):
        build_tagger(TRAIN, cell="lstmx")
    with pytest.raises(ValueError, match="units must be a positive int"):
        build_tagger(TRAIN, units=0)


def _files(tmp_path, n=120):
    paths = {}
    for name, seed, k in (("train", 0, n), ("valid", 1, 40), ("test", 2, 40)):
        paths[name] = write_conll(generate_two_sided_tagging(k, seed=seed), str(tmp_path / f"{name}.conll"))
    return paths


def test_cli_train_and_tag(tmp_path, capsys):
    f = _files(tmp_path)
    out = tmp_path / "run"
    rc = cli.main(["train", "tag", "--train", f["train"], "--valid", f["valid"], "--test", f["test"], "--epochs", "2",
                   "--units", "8", "--embedding-dim", "8", "--char-features", "--out", str(out), "--verbose", "0"])
    assert rc == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m == json.loads((out / "metrics.json").read_text())
    for k in ("valid_token_accuracy", "valid_f1", "test_precision", "test_recall", "test_f1"):
        assert 0.0 <= m[k] <= 1.0
    assert m["bidirectional"] is True and m["char_features"] is True
    rc = cli.main(["tag", "--model", str(out / "model.npz"), "mr alba said", "kell corp"])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("mr\t") and lines[3] == "" and lines[4].startswith("kell\t")
    tags = {ln.split("\t")[1] for ln in lines if ln}
    assert tags <= {"O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"}


def test_cli_unknown_tag_and_missing_valid(tmp_path, capsys):
    f = _files(tmp_path, n=20)
    bad = tmp_path / "bad.conll"
    bad.write_text("the O\nalba B-GPE\n\n")
    rc = cli.main(["train", "tag", "--train", f["train"], "--valid", str(bad), "--epochs", "1", "--out",
                   str(tmp_path / "o"), "--verbose", "0"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "valid data: tag 'B-GPE' (line 1) does not occur in the training data" in err
    rc = cli.main(["train", "tag", "--train", f["train"], "--valid", str(bad), "--epochs", "1", "--units", "4",
                   "--embedding-dim", "4", "--out", str(tmp_path / "o"), "--verbose", "0", "--unknown-tags", "O"])
    assert rc == 0
    capsys.readouterr()
    rc = cli.main(["train", "tag", "--train", f["train"], "--epochs", "1", "--out", str(tmp_path / "o")])
    assert rc == 1 and "--valid is required" in capsys.readouterr().err
    ragged = tmp_path / "ragged.conll"
    ragged.write_text("a O\nb O x\n")
    rc = cli.main(["train", "tag", "--train", str(ragged), "--valid", str(ragged), "--out", str(tmp_path / "o")])
    assert rc == 1 and "line 2: 3 columns" in capsys.readouterr().err


def test_cli_conllu_pos_tags(tmp_path, capsys):
    rows = []
    for i in range(30):
        rows += [f"1\tthe\tthe\tDET\t_\t_\t2\tdet\t_\t_", f"2\tdog{i % 3}\tdog\tNOUN\t_\t_\t3\tnsubj\t_\t_",
                 "3\truns\trun\tVERB\t_\t_\t0\troot\t_\t_", ""]
    p = tmp_path / "pos.conllu"
    p.write_text("\n".join(rows) + "\n")
    assert read_conll(str(p), format="conllu")[0].tags == ["DET", "NOUN", "VERB"]
    rc = cli.main(["train", "tag", "--train", str(p), "--valid", str(p), "--format", "conllu", "--epochs", "5", "--batch-size", "4",
                   "--units", "8", "--embedding-dim", "8", "--lr", "0.05", "--out", str(tmp_path / "o"),
                   "--verbose", "0", "--unidirectional", "--cell", "gru"])
    assert rc == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "valid_f1" not in m  # POS tags are not entity spans
    assert m["valid_token_accuracy"] == 1.0


def test_keras_parity_of_the_whole_tagger_with_char_features(float64):
    """The same network in Keras 3 (functional, torch backend, float64) with our weights: same tag probabilities
    and the same masked loss and weight gradients (padded words have fully masked character rows)."""
    keras = pytest.importorskip("keras")
    torch = pytest.importorskip("torch")
    model = build_tagger(TRAIN, char_features=True, embedding_dim=3, units=4, cell="lstm", bidirectional=True,
                         char_dim=2, char_units=3)
    rng = np.random.default_rng(0)
    for _, owner, name in model.iter_weights():  # larger weights than the initializers draw: a sharper test
        p = owner.params[name]
        p[...] = rng.standard_normal(p.shape) * 0.5
    w, c, y = model.encode([s.tokens for s in TRAIN], [s.tags for s in TRAIN])
    B, T, L = c.shape
    L_ = keras.layers
    w_in = keras.Input((T,), dtype="int64")
    c_in = keras.Input((T, L), dtype="int64")
    e = L_.Embedding(len(model.words), 3, mask_zero=True, dtype="float64")(w_in)
    ce = L_.Embedding(len(model.chars), 2, mask_zero=True, dtype="float64")(c_in)
    f = L_.TimeDistributed(L_.Bidirectional(L_.LSTM(3, dtype="float64"), dtype="float64"), dtype="float64")(ce)
    h = L_.Concatenate(dtype="float64")([e, f])
    h = L_.Bidirectional(L_.LSTM(4, return_sequences=True, dtype="float64"), dtype="float64")(h)
    p = L_.TimeDistributed(L_.Dense(len(model.tags), activation="softmax", dtype="float64"), dtype="float64")(h)
    kmodel = keras.Model([w_in, c_in], p)
    k_emb, k_cemb, k_char, k_rnn, k_out = [l for l in kmodel.layers if l.weights]
    k_emb.set_weights(model.word_emb.get_weights())
    k_cemb.set_weights(model.char_emb.get_weights())
    k_char.set_weights(model.char_rnn.get_weights())
    k_rnn.set_weights(model.rnns[0].get_weights())
    k_out.set_weights(model.out.get_weights())

    ours_p, mask = model.forward(w, c, training=True)
    loss = model.loss.forward_backward(y, ours_p, mask=mask)
    model.backward(loss[1])
    kp = kmodel([torch.tensor(w), torch.tensor(c)])
    # the project's parity tolerance (docs/architecture.md): 1e-6 relative in float64 (Keras on the torch backend
    # agrees with a float64 NumPy loop to about 1e-8 itself)
    assert rel_error(ours_p, keras.ops.convert_to_numpy(kp)) < 1e-6
    m = torch.tensor(mask, dtype=torch.float64)
    picked = torch.gather(kp, 2, torch.tensor(y)[..., None])[..., 0]
    kloss = -(torch.log(picked) * m).sum() / m.sum()
    assert abs(kloss.item() - loss[0]) < 1e-6 * abs(loss[0])
    kvars = [v for l in (k_emb, k_cemb, k_char, k_rnn, k_out) for v in l.weights]
    grads = torch.autograd.grad(kloss, [v.value for v in kvars])
    ours_g = [owner.grads[n] for _, owner, n in model.iter_weights()]
    assert len(ours_g) == len(grads)
    for (path, _, _), g, kg in zip(model.iter_weights(), ours_g, grads):
        g = g.to_dense() if hasattr(g, "to_dense") else g
        assert rel_error(g, kg.detach().numpy()) < 1e-6, path


def test_char_features_tag_unseen_words():
    train = generate_suffix_tagging(400, seed=0)
    held = generate_suffix_tagging(100, seed=1, held_out=True)
    seen = {t for s in train for t in s.tokens}
    assert all(t not in seen for s in held for t, g in zip(s.tokens, s.tags) if g != "O")  # entities all unseen
    f1 = {}
    for chars in (False, True):
        backend.set_random_seed(0)
        m = build_tagger(train, char_features=chars, embedding_dim=16, units=16, char_dim=8, char_units=16)
        m.fit(train, held, epochs=5, batch_size=16, optimizer=Adam(0.01), verbose=0)
        f1[chars] = m.evaluate(held)["f1"]
    # words only: every held-out entity word is <unk>, its type cannot be known; characters show the suffix
    assert f1[True] > 0.8 and f1[True] > f1[False] + 0.4


def _tiny_tag_run(tmp_path, capsys, out="run", extra=()):
    f = _files(tmp_path, n=20)
    rc = cli.main(["train", "tag", "--train", f["train"], "--valid", f["valid"], "--epochs", "1", "--units", "4",
                   "--embedding-dim", "4", "--out", str(tmp_path / out), "--verbose", "0", *extra])
    assert rc == 0
    capsys.readouterr()
    return f, tmp_path / out / "model.npz"


def test_cli_directory_and_non_utf8_conll_are_one_line_errors(tmp_path, capsys):
    f = _files(tmp_path, n=20)
    rc = cli.main(["train", "tag", "--train", f["train"], "--valid", str(tmp_path), "--out", str(tmp_path / "o"),
                   "--verbose", "0"])
    assert rc == 1
    assert capsys.readouterr().err.strip() == f"rnnlab: error: {tmp_path}: is a directory, expected a file"
    latin = tmp_path / "latin.conll"
    latin.write_bytes("the O\ncaf\xe9 B-LOC\n\nmr O\nalba B-PER\n".encode("latin-1"))
    rc = cli.main(["train", "tag", "--train", str(latin), "--valid", str(latin), "--epochs", "1", "--units", "4",
                   "--embedding-dim", "4", "--out", str(tmp_path / "o"), "--verbose", "0"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "latin.conll: cannot decode byte(s) b'\\xe9' at byte offset 9 (line 2, column 4) as utf-8" in err
    assert "--encoding" in err and "codec can't decode" not in err
    rc = cli.main(["train", "tag", "--train", str(latin), "--valid", str(latin), "--epochs", "1", "--units", "4",
                   "--embedding-dim", "4", "--out", str(tmp_path / "o"), "--verbose", "0", "--encoding", "latin-1"])
    assert rc == 0
    assert read_conll(str(latin), encoding="latin-1")[0].tokens == ["the", "caf\xe9"]


def test_cli_tag_refuses_garbage_and_other_tasks_models(tmp_path, capsys):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"hello not a zip")
    assert cli.main(["tag", "--model", str(garbage), "hi"]) == 1
    err = capsys.readouterr().err
    assert f"{garbage} is not an rnnlab model file" in err and "pickle" not in err
    assert cli.main(["tag", "--model", str(tmp_path), "hi"]) == 1
    assert "is a directory, not an rnnlab model file" in capsys.readouterr().err
    text = tmp_path / "t.txt"
    text.write_text("abcab " * 100, encoding="utf-8")
    assert cli.main(["train", "charlm", "--text", str(text), "--epochs", "1", "--units", "4", "--batch-size", "4",
                     "--bptt", "10", "--verbose", "0", "--out", str(tmp_path / "c")]) == 0
    capsys.readouterr()
    assert cli.main(["tag", "--model", str(tmp_path / "c" / "model.npz"), "hi"]) == 1
    assert "is a 'charlm' model (from 'rnnlab train charlm'); this command needs a 'tag' model" in \
        capsys.readouterr().err


def test_cli_tag_model_given_to_other_commands_names_its_task(tmp_path, capsys):
    _, model = _tiny_tag_run(tmp_path, capsys)
    for argv, needs in ((["predict", "--model", str(model), "hi"], "classify"),
                        (["generate", "--model", str(model)], "charlm"),
                        (["evaluate", "--model", str(model), "--data", str(model)], "classify")):
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert f"{model} is a 'tag' model (from 'rnnlab train tag'); this command needs a '{needs}' model" in err
    # a tagger file written before tag models had a '__task__' entry: still tags, still named
    legacy = tmp_path / "legacy.npz"
    with np.load(model, allow_pickle=False) as d:
        np.savez(legacy, **{k: d[k] for k in d.files if k != "__task__"})
    assert cli.main(["tag", "--model", str(legacy), "mr alba"]) == 0
    assert capsys.readouterr().out.startswith("mr\t")
    assert cli.main(["predict", "--model", str(legacy), "hi"]) == 1
    assert "is a 'tag' model" in capsys.readouterr().err


def _tag_arrays(path):
    with np.load(path, allow_pickle=False) as d:
        return {k: d[k] for k in d.files if k != "__task__"}


def test_cli_tag_resume_equals_uninterrupted_and_plot(tmp_path, capsys):
    f = _files(tmp_path, n=30)
    base = ["train", "tag", "--train", f["train"], "--valid", f["valid"], "--epochs", "3", "--units", "4",
            "--embedding-dim", "4", "--dropout", "0.3", "--batch-size", "8", "--seed", "5", "--verbose", "0"]
    assert cli.main(base + ["--out", str(tmp_path / "full")]) == 0
    part = base + ["--out", str(tmp_path / "part")]
    part[part.index("--epochs") + 1] = "1"
    assert cli.main(part) == 0
    assert cli.main(base + ["--out", str(tmp_path / "part"), "--resume"]) == 0
    capsys.readouterr()
    for name in ("checkpoint.npz", "model.npz"):
        a, b = _tag_arrays(tmp_path / "full" / name), _tag_arrays(tmp_path / "part" / name)
        assert set(a) == set(b), name
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name}: {k}")
    assert any(k.startswith("opt:") for k in _tag_arrays(tmp_path / "full" / "checkpoint.npz"))
    ha = json.loads((tmp_path / "full" / "history.json").read_text())
    hb = json.loads((tmp_path / "part" / "history.json").read_text())
    assert [h["epoch"] for h in ha] == [1, 2, 3] and {"loss", "accuracy", "val_loss", "val_f1"} <= set(ha[0])
    assert [h["loss"] for h in ha] == [h["loss"] for h in hb]
    # the checkpoint and the model are tagger files that 'rnnlab tag' reads
    assert cli.main(["tag", "--model", str(tmp_path / "part" / "model.npz"), "mr alba said"]) == 0
    assert capsys.readouterr().out.startswith("mr\t")
    # other settings are refused
    assert cli.main(base + ["--out", str(tmp_path / "part"), "--resume", "--units", "5"]) == 1
    assert "other settings" in capsys.readouterr().err
    pytest.importorskip("matplotlib")
    assert cli.main(["plot", str(tmp_path / "full")]) == 0
    assert any(p.suffix == ".png" for p in (tmp_path / "full").iterdir())
