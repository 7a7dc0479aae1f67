"""Tagger with a CRF, casing features and word dropout; tag schemes (IOB1/IOB2/IOBES) and conlleval scoring;
the tag command's --tag-scheme, --vectors, --crf and default char features."""
import json

import numpy as np
import pytest

from rnnlab import cli
from rnnlab.datasets.conll import Sentence, generate_two_sided_tagging, write_conll
from rnnlab.tagging.spans import detect_scheme, extract_spans, scheme_violation, span_scores
from rnnlab.tagging.tagger import Tagger, build_tagger

TRAIN = [Sentence("John Smith lives in New York".split(), ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"]),
         Sentence("Mary left 1999 x".split(), ["B-PER", "O", "O", "O"])]


def test_crf_tagger_gradients_match_finite_differences(float64):
    model = build_tagger(TRAIN, char_features=True, embedding_dim=3, units=3, char_dim=2, char_units=2,
                         crf=True, tag_scheme="iob2", casing=True)
    w, c, y = model.encode([s.tokens for s in TRAIN], [s.tags for s in TRAIN])
    rng = np.random.default_rng(0)
    for _, owner, name in model.iter_weights():   # non-zero transitions so that their gradient matters
        if owner is model.crf:
            owner.params[name][...] = rng.normal(size=owner.params[name].shape)
    model.loss_and_grads(w, c, y)
    checked = 0
    for path, owner, name in model.iter_weights():
        p = owner.params[name]
        if name == "embeddings":
            rows = np.unique((c if "char" in path else w).ravel())
            flat = np.ravel_multi_index((rows[rng.integers(0, len(rows), 5)], rng.integers(0, p.shape[1], 5)),
                                        p.shape)
        else:
            flat = rng.choice(p.size, size=min(5, p.size), replace=False)
        num = np.empty(len(flat))
        for k, i in enumerate(flat):
            idx = np.unravel_index(i, p.shape)
            if owner is model.crf and not np.isfinite(model.crf._scores()[0]).all() and name == "transitions" \
                    and not model.crf.allowed[idx]:
                num[k] = 0.0   # a forbidden transition scores -inf whatever its weight
                continue
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
        np.testing.assert_allclose(g.ravel()[flat], num, rtol=1e-6, atol=1e-9, err_msg=path)
        checked += 1
    assert checked == len(list(model.iter_weights()))
    assert any(owner is model.crf for _, owner, _ in model.iter_weights())


def test_crf_tagger_decodes_only_valid_sequences_and_round_trips(tmp_path):
    model = build_tagger(TRAIN, char_features=True, embedding_dim=4, units=4, crf=True, tag_scheme="iob2",
                         casing=True)
    rng = np.random.default_rng(1)
    for _, owner, name in model.iter_weights():
        owner.params[name][...] = rng.normal(size=owner.params[name].shape)
    for layer in model.layers:
        layer._weights_changed()
    sents = [s.tokens for s in TRAIN] + [["I-only", "words", "here"]]
    pred = model.predict(sents)
    for tags in pred:
        assert "<pad>" not in tags
        assert scheme_violation(tags, "iob2") is None, tags
    path = model.save(tmp_path / "crf.npz")
    again = Tagger.load(path)
    assert again.config["crf"] and again.config["tag_scheme"] == "iob2" and again.config["casing"]
    assert again.predict(sents) == pred
    np.testing.assert_array_equal(again.crf.transition_matrix, model.crf.transition_matrix)


def test_casing_features():
    model = build_tagger([Sentence("ab AB Ab 12 a1 -- aB".split(), ["O"] * 7)], char_features=True, casing=True,
                         embedding_dim=2, units=2)
    _, c, _ = model.encode([["ab", "AB", "Ab", "12", "a1", "--", "aB"]])
    f = model.casing_features(c)[0]
    assert f.shape == (7, 6)
    np.testing.assert_array_equal(f.argmax(-1), [0, 1, 2, 3, 4, 5, 5])
    assert (f.sum(-1) == 1).all()
    with pytest.raises(ValueError, match="casing=True needs the character vocabulary"):
        Tagger(["a"], ["O"], casing=True)


def test_word_dropout_replaces_only_singletons():
    sents = [Sentence("the cat the dog the".split(), ["O"] * 5)]
    model = build_tagger(sents, embedding_dim=2, units=2, word_dropout=0.5)
    ids = model.words.index
    assert sorted(model.singletons) == sorted([ids["cat"], ids["dog"]])
    w = np.tile(np.array([[ids["the"], ids["cat"], ids["dog"], 0]]), (2000, 1))
    out = model.drop_words(w, np.random.default_rng(0))
    assert (out[:, 0] == ids["the"]).all() and (out[:, 3] == 0).all()
    frac = (out[:, 1:3] == 1).mean()
    assert 0.45 < frac < 0.55
    assert (model.drop_words(w, np.random.default_rng(0)) == out).all()
    off = build_tagger(sents, embedding_dim=2, units=2)
    assert off.drop_words(w, np.random.default_rng(0)) is w


# ------------------------------------------------------------------------------------------- schemes
IOB1 = [["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "O"], ["O", "I-ORG"]]
IOB2 = [["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "O"], ["O", "B-ORG"]]
IOBES = [["B-PER", "E-PER", "O", "S-LOC", "S-LOC", "O"], ["O", "S-ORG"]]


def test_iob1_iob2_iobes_read_to_the_same_chunks_and_scores():
    spans = [extract_spans(s) for s in IOB2]
    assert spans == [[("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 5)], [("ORG", 1, 2)]]
    assert [extract_spans(s) for s in IOB1] == spans
    assert [extract_spans(s) for s in IOBES] == spans
    # conlleval scores: a prediction in another scheme with the same chunks is perfect
    assert span_scores(IOB1, IOB2).f1 == 1.0
    # one LOC chunk merged into the other: 2 of 3 predicted chunks correct out of 4 true ones
    wrong = [["I-PER", "I-PER", "O", "I-LOC", "I-LOC", "O"], ["O", "I-ORG"]]
    sc = span_scores(IOB1, wrong)
    assert (sc.correct, sc.predicted, sc.true) == (2, 3, 4)
    assert sc.precision == pytest.approx(2 / 3) and sc.recall == pytest.approx(0.5)


def test_detect_scheme():
    assert detect_scheme(IOB1) == "iob1"
    assert detect_scheme(IOB2) == "iob2"
    assert detect_scheme(IOBES) == "iobes"
    assert detect_scheme([["NOUN", "VERB"]]) is None
    assert detect_scheme([["B-X", "O", "I-Y"]]) is None     # both conventions: read by conlleval's rules


def test_scheme_violation_messages():
    i, msg = scheme_violation(["O", "I-PER"], "iob2")
    assert i == 1 and "I-PER follows O: not valid IOB2" in msg and "start of a new chunk" in msg
    assert scheme_violation(["I-PER"], "bio")[0] == 0
    assert scheme_violation(IOB2[0], "iob2") is None
    assert scheme_violation(IOB1[0], "iob1") is None
    assert "not valid IOB1" in scheme_violation(["O", "B-PER"], "iob1")[1]
    assert scheme_violation(IOBES[0], "iobes") is None
    assert "not valid IOBES" in scheme_violation(["B-PER", "O"], "iobes")[1]
    assert "not valid IOBES" in scheme_violation(["B-PER"], "iobes")[1]   # unclosed at the sentence end
    with pytest.raises(ValueError, match="scheme must be one of"):
        scheme_violation(["O"], "bilou")


# ------------------------------------------------------------------------------------------- the command
def _files(tmp_path, tags_fn=None):
    tr = generate_two_sided_tagging(60, seed=0)
    va = generate_two_sided_tagging(20, seed=1)
    if tags_fn:
        tr = [Sentence(s.tokens, tags_fn(s.tags)) for s in tr]
        va = [Sentence(s.tokens, tags_fn(s.tags)) for s in va]
    a, b = tmp_path / "train.conll", tmp_path / "valid.conll"
    write_conll(tr, a)
    write_conll(va, b)
    return str(a), str(b), tr


SMALL = ["--epochs", "1", "--units", "4", "--embedding-dim", "4", "--char-dim", "3", "--char-units", "3",
         "--verbose", "0", "--threads", "1"]


def test_tag_command_defaults_char_features_casing_and_crf(tmp_path, capsys):
    a, b, tr = _files(tmp_path)
    assert detect_scheme([s.tags for s in tr]) == "iob2"
    assert cli.main(["train", "tag", "--train", a, "--valid", b, "--out", str(tmp_path / "o")] + SMALL) == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m["char_features"] and m["casing"] and m["crf"] and m["tag_scheme"] == "iob2"
    t = Tagger.load(str(tmp_path / "o" / "model.npz"))
    assert t.crf is not None and t.chars is not None and t.config["word_dropout"] == 0.5
    assert cli.main(["train", "tag", "--train", a, "--valid", b, "--out", str(tmp_path / "p"), "--crf", "off",
                     "--no-char-features"] + SMALL) == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not m["char_features"] and not m["casing"] and not m["crf"]


def _to_iob1(tags):
    return ["I-" + t[2:] if t.startswith("B-") else t for t in tags]


def test_tag_command_iob1_files(tmp_path, capsys):
    a, b, tr = _files(tmp_path, _to_iob1)
    assert detect_scheme([s.tags for s in tr]) == "iob1"
    assert cli.main(["train", "tag", "--train", a, "--valid", b, "--out", str(tmp_path / "o")] + SMALL) == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m["tag_scheme"] == "iob1" and m["crf"]
    # the strict IOB2 reading refuses the same file, naming the file, the line and how conlleval reads it
    assert cli.main(["train", "tag", "--train", a, "--valid", b, "--out", str(tmp_path / "s"),
                     "--tag-scheme", "iob2"] + SMALL) == 1
    err = capsys.readouterr().err
    assert "train.conll, sentence starting at line" in err and "follows O: not valid IOB2" in err
    assert "conlleval reads it as the start of a new chunk" in err and "--tag-scheme auto" in err


def _vectors(path, words, dim):
    rng = np.random.default_rng(0)
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{len(words)} {dim}\n")
        for w in words:
            f.write(w + " " + " ".join(f"{v:.5f}" for v in rng.normal(size=dim)) + "\n")
    return str(path)


def test_tag_command_vectors(tmp_path, capsys):
    a, b, tr = _files(tmp_path)
    vocab = sorted({t for s in tr for t in s.tokens})
    half = vocab[: len(vocab) // 2]
    vec = _vectors(tmp_path / "v.txt", half + ["zzzunused"], 4)
    assert cli.main(["train", "tag", "--train", a, "--valid", b, "--out", str(tmp_path / "o"), "--vectors", vec,
                     "--freeze-vectors"] + SMALL) == 0
    out = capsys.readouterr().out
    m = json.loads(out.strip().splitlines()[-1])
    assert m["vectors_found"] == len(half) and m["vocabulary"] == len(vocab)
    assert m["vectors_coverage"] == pytest.approx(len(half) / len(vocab), abs=1e-4)
    t = Tagger.load(str(tmp_path / "o" / "model.npz"))
    from rnnlab.embeddings.io import load_vectors

    kv = load_vectors(vec)
    for w in half[:5]:   # frozen: the rows are still the file's vectors after training
        np.testing.assert_allclose(t.word_emb.params["embeddings"][t.words.index[w]], kv[w], rtol=1e-6)
    # fine-tuned: they move
    assert cli.main(["train", "tag", "--train", a, "--valid", b, "--out", str(tmp_path / "f"), "--vectors", vec]
                    + SMALL) == 0
    capsys.readouterr()
    t = Tagger.load(str(tmp_path / "f" / "model.npz"))
    assert not np.allclose(t.word_emb.params["embeddings"][t.words.index[half[0]]], kv[half[0]])
    # dimension != --embedding-dim
    assert cli.main(["train", "tag", "--train", a, "--valid", b, "--out", str(tmp_path / "d"), "--vectors",
                     _vectors(tmp_path / "v8.txt", half, 8)] + SMALL) == 1
    assert "the vectors have dimension 8 but --embedding-dim is 4; pass --embedding-dim 8" in capsys.readouterr().err
    # no overlap: a warning with the coverage, training goes on
    assert cli.main(["train", "tag", "--train", a, "--valid", b, "--out", str(tmp_path / "n"), "--vectors",
                     _vectors(tmp_path / "none.txt", ["qqq", "rrr"], 4)] + SMALL) == 0
    cap = capsys.readouterr()
    assert f"none of the {len(vocab)} vocabulary words has a vector (coverage 0.0%)" in cap.err
    assert json.loads(cap.out.strip().splitlines()[-1])["vectors_coverage"] == 0.0
