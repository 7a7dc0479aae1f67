"""Tagger options of the WNUT-17 tuning pass (issue 20): frequency-based word dropout (``word_dropout_alpha``,
Kiperwasser & Goldberg 2016: a word seen n times becomes <unk> with probability a/(a+n)), word normalisation for
the word-vocabulary lookup (``normalize``: URLs, @users, digits, leading '#') and a word-shape embedding
(``shape_dim``); their argument checks, gradients, files (version 4; version-3 files load without them) and the CLI
flags, including ``--resume``."""
import json

import numpy as np
import pytest

from rnnlab import backend, cli
from rnnlab.datasets.conll import Sentence, write_conll
from rnnlab.tagging.tagger import Tagger, build_tagger, normalize_word, word_count_array, word_shape
from rnnlab.testing import numerical_gradient

TRAIN = [Sentence("@bob loves #Paris see http://t.co/x at 10:30 Paris".split(),
                  ["O", "O", "B-LOC", "O", "O", "O", "O", "B-LOC"]),
         Sentence("John Smith lives in New York since 1999".split(),
                  ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "O", "O"]),
         Sentence("the cat the dog the".split(), ["O"] * 5)]


def test_normalize_word():
    cases = {"http://t.co/x": "<url>", "HTTPS://a.b": "<url>", "www.example.org/a": "<url>", "@bob": "<user>",
             "@_x1": "<user>", "@": "@", "#Paris": "Paris", "#": "#", "##a": "#a", "1999": "0000",
             "10:30": "00:00", "a1b22": "a0b00", "hello": "hello", "Mr.": "Mr.", "http": "http", "www": "www"}
    for tok, key in cases.items():
        assert normalize_word(tok) == key, tok


def test_normalize_changes_only_the_word_lookup():
    plain = build_tagger(TRAIN, char_features=True, casing=True, lowercase=True, embedding_dim=3, units=3)
    norm = build_tagger(TRAIN, char_features=True, casing=True, lowercase=True, embedding_dim=3, units=3,
                        normalize=True)
    assert norm.config["normalize"] is True and plain.config["normalize"] is False
    assert {"<url>", "<user>", "0000", "00:00", "paris"} <= set(norm.words.items)
    assert not {"#paris", "@bob", "1999", "http://t.co/x"} & set(norm.words.items)
    assert {"#paris", "@bob", "1999"} <= set(plain.words.items)
    toks = [["#Paris", "@alice", "https://x.y", "2020", "PARIS"]]
    w, c, _ = norm.encode(toks)
    ix = norm.words.index
    assert w[0].tolist() == [ix["paris"], ix["<user>"], ix["<url>"], ix["0000"], ix["paris"]]
    # the characters and the casing features still read the tokens as written
    wp, cp, _ = plain.encode(toks)
    np.testing.assert_array_equal(c, cp)
    assert c[0, 0, 0] == norm.chars.index["#"]
    np.testing.assert_array_equal(norm.casing_features(c), plain.casing_features(cp))
    # both occurrences of Paris count for the word dropout statistics
    assert norm.word_counts[ix["paris"]] == 2 and norm.word_counts[ix["<url>"]] == 1


def test_word_counts_and_frequency_word_dropout_rates():
    model = build_tagger(TRAIN, embedding_dim=2, units=2, word_dropout_alpha=1.0)
    ix = model.words.index
    assert model.word_counts[ix["the"]] == 3 and model.word_counts[ix["cat"]] == 1
    assert model.word_counts[0] == 0 and model.word_counts[1] == 0 and len(model.word_counts) == len(model.words)
    np.testing.assert_array_equal(word_count_array(model, TRAIN), model.word_counts)
    n = 40000
    w = np.tile(np.array([[ix["the"], ix["cat"], 1, 0]]), (n, 1))
    out = model.drop_words(w, np.random.default_rng(0))
    assert (out[:, 2] == 1).all() and (out[:, 3] == 0).all()     # <unk> and padding stay
    assert set(np.unique(out[:, 0])) == {1, ix["the"]}
    for col, rate in ((0, 1 / 4), (1, 1 / 2)):                   # a/(a+n): n = 3 and n = 1
        frac = (out[:, col] == 1).mean()
        assert abs(frac - rate) < 4 * np.sqrt(rate * (1 - rate) / n), (col, frac)
    # alpha replaces the singleton rule; the same generator gives the same masks
    assert (model.drop_words(w, np.random.default_rng(0)) == out).all()
    half = build_tagger(TRAIN, embedding_dim=2, units=2, word_dropout_alpha=0.25)
    frac = (half.drop_words(w, np.random.default_rng(1))[:, 0] == 1).mean()
    assert abs(frac - 0.25 / 3.25) < 4 * np.sqrt(0.077 * 0.923 / n)
    # word_dropout_alpha = 0: the singleton rule of word_dropout is unchanged (frequent words never dropped)
    single = build_tagger(TRAIN, embedding_dim=2, units=2, word_dropout=0.5)
    out = single.drop_words(w, np.random.default_rng(0))
    assert (out[:, 0] == ix["the"]).all() and 0.48 < (out[:, 1] == 1).mean() < 0.52


def test_bad_values_are_refused():
    for bad in (-0.5, float("inf"), float("nan"), "1", True, None):
        with pytest.raises(ValueError, match="Tagger: word_dropout_alpha must be a finite float >= 0"):
            build_tagger(TRAIN, word_dropout_alpha=bad)
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="Tagger: normalize must be True or False, got"):
            build_tagger(TRAIN, normalize=bad)


def test_files_keep_the_options_and_version_3_files_load(tmp_path, rewrite_tagger_doc):
    m = build_tagger(TRAIN, char_features=True, casing=True, lowercase=True, embedding_dim=4, units=4, crf=True,
                     tag_scheme="iob2", word_dropout_alpha=0.25, normalize=True)
    path = m.save(tmp_path / "t.npz")
    back = Tagger.load(path)
    assert back.config["word_dropout_alpha"] == 0.25 and back.config["normalize"] is True and back.normalize
    sents = [["#Paris", "@x", "loves", "2021"], ["New", "York"]]
    assert back.predict(sents) == m.predict(sents)
    np.testing.assert_array_equal(back.encode(sents)[0], m.encode(sents)[0])

    plain = build_tagger(TRAIN, char_features=True, casing=True, lowercase=True, embedding_dim=4, units=4,
                         crf=True, tag_scheme="iob2")
    p = plain.save(tmp_path / "p.npz")

    def to_v3(doc):   # a file written before word_dropout_alpha and normalize
        assert doc["version"] == 4
        doc["version"] = 3
        for key in ("word_dropout_alpha", "normalize", "shape_dim", "char_encoder", "char_filters"):
            del doc["config"][key]
        del doc["shapes"]

    old = Tagger.load(rewrite_tagger_doc(p, tmp_path / "v3.npz", to_v3))
    assert old.config["word_dropout_alpha"] == 0.0 and old.config["normalize"] is False
    assert old.config["shape_dim"] == 0 and old.shapes is None and old.shape_emb is None
    assert old.predict(sents) == plain.predict(sents)


def _cli_base(tmp_path):
    write_conll(TRAIN * 4, tmp_path / "train.conll")
    write_conll(TRAIN, tmp_path / "valid.conll")
    return ["train", "tag", "--train", str(tmp_path / "train.conll"), "--valid", str(tmp_path / "valid.conll"),
            "--units", "4", "--embedding-dim", "4", "--char-units", "3", "--char-dim", "3", "--verbose", "0",
            "--threads", "1", "--seed", "3", "--batch-size", "4"]


def test_cli_flags_train_and_resume(tmp_path, capsys):
    base = _cli_base(tmp_path)
    assert cli.main(base + ["--epochs", "1", "--word-dropout-alpha", "-1", "--out", str(tmp_path / "bad")]) != 0
    assert "--word-dropout-alpha must be a finite number >= 0 (0 = off), got -1.0" in capsys.readouterr().err
    flags = ["--word-dropout-alpha", "0.5", "--normalize-words"]
    assert cli.main(base + flags + ["--epochs", "2", "--out", str(tmp_path / "full")]) == 0
    model = Tagger.load(str(tmp_path / "full" / "model.npz"))
    assert model.config["word_dropout_alpha"] == 0.5 and model.config["normalize"] is True
    assert "<url>" in model.words.index and "#paris" not in model.words.index
    # resume: the counts of word dropout are rebuilt from the training file, and the run repeats exactly
    assert cli.main(base + flags + ["--epochs", "1", "--out", str(tmp_path / "part")]) == 0
    assert cli.main(base + flags + ["--epochs", "2", "--out", str(tmp_path / "part"), "--resume"]) == 0
    ha = json.loads((tmp_path / "full" / "history.json").read_text())
    hb = json.loads((tmp_path / "part" / "history.json").read_text())
    assert [h["loss"] for h in ha] == [h["loss"] for h in hb]
    # a different alpha, or leaving the normalisation out, is another setting
    capsys.readouterr()
    assert cli.main(base + ["--word-dropout-alpha", "0.5", "--epochs", "3", "--out", str(tmp_path / "part"),
                            "--resume"]) == 1
    assert "other settings" in capsys.readouterr().err
    # the defaults: neither option
    assert cli.main(base + ["--epochs", "1", "--out", str(tmp_path / "d")]) == 0
    d = Tagger.load(str(tmp_path / "d" / "model.npz"))
    assert d.config["word_dropout_alpha"] == 0.0 and d.config["normalize"] is False


# ------------------------------------------------------------------------------------------- word shapes
def test_word_shape():
    cases = {"Paris": "Xx", "iPhone": "xXx", "@bob": "@x", "#NYC": "#X", "New-York": "Xx-Xx", "10:30": "d:d",
             "!!!": "!", "x": "x", "USA": "X", "a1b": "xdx", "O'Neil": "X'Xx", "": ""}
    for tok, shape in cases.items():
        assert word_shape(tok) == shape, tok


def test_shape_ids_from_characters():
    m = build_tagger(TRAIN, char_features=True, casing=True, embedding_dim=3, units=3, shape_dim=4)
    assert {"@x", "#Xx", "Xx", "x", "d:d", "d"} <= set(m.shapes.items)
    toks = [["Paris", "#York", "13:09", "¿Qué?"], ["bob"]]
    _, c, _ = m.encode(toks)
    ids = m.shape_ids(c)
    ix = m.shapes.index
    # shapes of words never seen in training; an unseen shape (here from characters unknown to the character
    # vocabulary, which read as "?") -> 1; padding -> 0
    assert ids.tolist() == [[ix["Xx"], ix["#Xx"], ix["d:d"], 1], [ix["x"], 0, 0, 0]]
    assert m.shape_ids(c).tolist() == ids.tolist()   # the cached path gives the same ids
    h = m.input_features(*m.encode(toks)[:2])
    assert h.shape == (2, 4, 3 + 2 * 16 + 6 + 4)
    np.testing.assert_array_equal(h[0, 0, -4:], m.shape_emb.params["embeddings"][ix["Xx"]])


def test_shape_embedding_gradient_matches_finite_differences(float64):
    model = build_tagger(TRAIN, char_features=True, casing=True, embedding_dim=3, units=3, char_dim=2,
                         char_units=2, crf=True, tag_scheme="iob2", shape_dim=3, dropout=0.3)
    w, c, y = model.encode([s.tokens for s in TRAIN], [s.tags for s in TRAIN])
    used = np.unique(model.shape_ids(c))
    used = used[used > 0]
    _fd_check(model, w, c, y, model.shape_emb, "embeddings",
              lambda p: [(int(i), j) for i in used[:4] for j in range(p.shape[1])])
    # the other inputs' gradients are still routed to their layers (the char embedding sits before the shapes)
    _fd_check(model, w, c, y, model.char_emb, "embeddings", lambda p: [(int(c[0, 0, 1]), 0)])


def test_shape_bad_values_and_files(tmp_path, rewrite_tagger_doc):
    for bad in (-1, True, 2.0, "3"):
        with pytest.raises(ValueError, match="Tagger: shape_dim must be an int >= 0"):
            build_tagger(TRAIN, char_features=True, shape_dim=bad)
    with pytest.raises(ValueError, match="shape_dim > 0 needs the character vocabulary"):
        build_tagger(TRAIN, shape_dim=4)
    with pytest.raises(ValueError, match="shape_dim > 0 needs the shape vocabulary"):
        Tagger(["a"], ["O"], chars=["a"], shape_dim=4)
    m = build_tagger(TRAIN, char_features=True, casing=True, embedding_dim=4, units=4, crf=True, tag_scheme="iob2",
                     shape_dim=5)
    back = Tagger.load(m.save(tmp_path / "s.npz"))
    assert back.config["shape_dim"] == 5 and back.shapes.items == m.shapes.items
    np.testing.assert_array_equal(back.shape_emb.params["embeddings"], m.shape_emb.params["embeddings"])
    sents = [["Mr.", "O'Neil", "@x"], ["NYC"]]
    assert back.predict(sents) == m.predict(sents)

    def corrupt(doc):
        doc["shapes"] = [1, 2]

    from rnnlab import io as rio
    with pytest.raises(rio.FileFormatError, match="shapes must be a list of strings"):
        Tagger.load(rewrite_tagger_doc(str(tmp_path / "s.npz"), tmp_path / "bad.npz", corrupt))


def test_cli_shape_dim(tmp_path, capsys):
    base = _cli_base(tmp_path) + ["--epochs", "1"]
    assert cli.main(base + ["--shape-dim", "-2", "--out", str(tmp_path / "bad")]) != 0
    assert "--shape-dim must be >= 0 (0 = no word-shape feature), got -2" in capsys.readouterr().err
    assert cli.main(base + ["--shape-dim", "3", "--no-char-features", "--out", str(tmp_path / "bad2")]) != 0
    assert "--shape-dim 3 needs the character features" in capsys.readouterr().err
    assert cli.main(base + ["--shape-dim", "3", "--out", str(tmp_path / "r")]) == 0
    m = Tagger.load(str(tmp_path / "r" / "model.npz"))
    assert m.config["shape_dim"] == 3 and "@x" in m.shapes.index
    capsys.readouterr()
    assert cli.main(["tag", "--model", str(tmp_path / "r" / "model.npz"), "@amy loves #Paris"]) == 0
    assert capsys.readouterr().out.startswith("@amy\t")


# ------------------------------------------------------------------------------------------- char CNN
def _fd_check(model, w, c, y, layer, name, picks):
    def loss():
        backend.set_random_seed(5)
        p, mask = model.forward(w, c, training=True)
        value, grad = model.loss_from_outputs(y, p, mask)
        model.backward(grad)
        return value

    loss()
    g = layer.grads[name]
    g = g.to_dense() if hasattr(g, "to_dense") else np.array(g)
    p = layer.params[name]
    assert np.abs(g).max() > 0, name
    idx = picks(p)
    np.testing.assert_allclose([g[i] for i in idx], numerical_gradient(loss, p, indices=idx), rtol=1e-6, atol=1e-9,
                               err_msg=f"{layer.name} {name}")


@pytest.mark.parametrize("encoder", ["cnn", "both"])
def test_char_cnn_gradients_match_finite_differences(float64, encoder):
    model = build_tagger(TRAIN, char_features=True, casing=True, embedding_dim=3, units=3, char_dim=2,
                         char_units=2, char_encoder=encoder, char_filters=3, crf=True, tag_scheme="iob2",
                         shape_dim=2, dropout=0.3)
    assert (model.char_rnn is not None) is (encoder == "both")
    w, c, y = model.encode([s.tokens for s in TRAIN], [s.tags for s in TRAIN])
    width = 3 + (2 * 2 if encoder == "both" else 0)
    assert model.input_features(w, c).shape[-1] == 3 + width + 6 + 2
    rng = np.random.default_rng(0)

    def some(p):
        return [np.unravel_index(i, p.shape) for i in rng.choice(p.size, size=min(6, p.size), replace=False)]

    _fd_check(model, w, c, y, model.char_conv, "kernel", some)
    _fd_check(model, w, c, y, model.char_conv, "bias", some)
    used = np.unique(c[c > 0])
    _fd_check(model, w, c, y, model.char_emb, "embeddings", lambda p: [(int(used[0]), 0), (int(used[-1]), 1)])
    _fd_check(model, w, c, y, model.shape_emb, "embeddings",
              lambda p: [(int(model.shape_ids(c)[0, 0]), 0), (int(model.shape_ids(c)[1, 2]), 1)])
    if encoder == "both":
        _fd_check(model, w, c, y, model.char_rnn.forward_layer, "kernel", some)


def test_char_cnn_reads_only_the_word_and_round_trips(tmp_path):
    m = build_tagger(TRAIN, char_features=True, casing=True, embedding_dim=4, units=4, char_encoder="cnn",
                     char_filters=5, crf=True, tag_scheme="iob2")
    # a word's character features do not depend on the padding of the batch (the max-pool is masked)
    _, c1, _ = m.encode([["New"]])
    _, c2, _ = m.encode([["New", "Yorkers"]])
    cf1 = m.input_features(m.encode([["New"]])[0], c1)[0, 0]
    cf2 = m.input_features(m.encode([["New", "Yorkers"]])[0], c2)[0, 0]
    np.testing.assert_allclose(cf1[4:9], cf2[4:9], rtol=1e-6)
    back = Tagger.load(m.save(tmp_path / "c.npz"))
    assert back.config["char_encoder"] == "cnn" and back.config["char_filters"] == 5 and back.char_rnn is None
    sents = [["@x", "loves", "New", "York"]]
    assert back.predict(sents) == m.predict(sents)
    for kw, msg in (({"char_encoder": "gru"}, "char_encoder must be 'lstm', 'cnn' or 'both'"),
                    ({"char_filters": 0}, "char_filters must be a positive int"),
                    ({"char_filters": True}, "char_filters must be a positive int")):
        with pytest.raises(ValueError, match=msg):
            build_tagger(TRAIN, char_features=True, **kw)


def test_cli_char_encoder(tmp_path, capsys):
    base = _cli_base(tmp_path) + ["--epochs", "1"]
    assert cli.main(base + ["--char-filters", "0", "--out", str(tmp_path / "bad")]) != 0
    assert "--char-filters must be >= 1, got 0" in capsys.readouterr().err
    assert cli.main(base + ["--char-encoder", "both", "--char-filters", "4", "--out", str(tmp_path / "r")]) == 0
    m = Tagger.load(str(tmp_path / "r" / "model.npz"))
    assert m.config["char_encoder"] == "both" and m.char_conv.params["kernel"].shape == (3, 3, 4)
