"""rnnlab.text: Keras parity of Tokenizer / pad_sequences / one_hot, CharTokenizer, review cleaning."""
import json

import numpy as np
import pytest

from rnnlab.text import (CharTokenizer, Tokenizer, clean_review, hashing_trick, one_hot, pad_sequences,
                         strip_html_breaks, tokenizer_from_json)

# only the Keras-parity tests need Keras; the tokenizer / char-tokenizer / cleaning tests always run
try:
    import keras
except ImportError:  # pragma: no cover - depends on the environment
    keras = None
try:
    from keras.src.legacy.preprocessing import text as ktext
except ImportError:  # pragma: no cover - depends on the installed Keras
    ktext = None
needs_keras = pytest.mark.skipif(keras is None, reason="Keras is not installed")
needs_ktext = pytest.mark.skipif(ktext is None, reason="Keras legacy Tokenizer not available")

TEXTS = [
    "The cat sat on the mat.", "The dog ate my homework!!", "Don't panic -- it's only a test; the END?",
    "cat cat dog <br /> mat", "   ", "Émile said: \"bonjour\"\tto\nthe cat", "tie1 tie2 tie3",
]
NEW = ["the unknown bird sat", "dog cat zebra", ""]


def _keras_tok(**kw):
    t = ktext.Tokenizer(**kw)
    t.fit_on_texts(TEXTS)
    return t


CONFIGS = [dict(), dict(num_words=5), dict(oov_token="<OOV>"), dict(num_words=6, oov_token="<OOV>"),
           dict(lower=False), dict(char_level=True), dict(char_level=True, num_words=10, oov_token="?"),
           dict(filters="", split=" "), dict(split="a"), dict(num_words=0)]


@needs_ktext
@pytest.mark.parametrize("kw", CONFIGS, ids=[json.dumps(c) for c in CONFIGS])
def test_tokenizer_matches_keras(kw):
    ref = _keras_tok(**kw)
    tok = Tokenizer(**kw)
    tok.fit_on_texts(TEXTS)
    assert tok.word_index == ref.word_index
    assert list(tok.word_index.items()) == list(ref.word_index.items())
    assert tok.index_word == ref.index_word
    assert dict(tok.word_counts) == dict(ref.word_counts)
    assert list(tok.word_counts) == list(ref.word_counts)
    assert dict(tok.word_docs) == dict(ref.word_docs)
    assert dict(tok.index_docs) == dict(ref.index_docs)
    assert tok.document_count == ref.document_count
    for texts in (TEXTS, NEW, [["The", "cat", "zebra"]]):
        seqs = tok.texts_to_sequences(texts)
        assert seqs == ref.texts_to_sequences(texts)
        assert tok.sequences_to_texts(seqs + [[0, 99, 1, 2]]) == ref.sequences_to_texts(seqs + [[0, 99, 1, 2]])
    for mode in ("binary", "count", "freq", "tfidf"):
        np.testing.assert_allclose(tok.texts_to_matrix(NEW + TEXTS, mode=mode),
                                   ref.texts_to_matrix(NEW + TEXTS, mode=mode))


@needs_ktext
def test_tokenizer_ranking_ties_and_oov_specifics():
    tok = Tokenizer(oov_token="<OOV>")
    tok.fit_on_texts(["b a b c a b", "d"])
    # counts b=3, a=2, c=1, d=1 (ties in first-seen order), oov first
    assert tok.word_index == {"<OOV>": 1, "b": 2, "a": 3, "c": 4, "d": 5}
    assert tok.texts_to_sequences(["a z b"]) == [[3, 1, 2]]
    tok2 = Tokenizer(num_words=3)
    tok2.fit_on_texts(["b a b c a b"])
    # num_words keeps ids < num_words: b=1, a=2 kept, c=3 dropped
    ref = ktext.Tokenizer(num_words=3)
    ref.fit_on_texts(["b a b c a b"])
    assert tok2.texts_to_sequences(["a b c"]) == ref.texts_to_sequences(["a b c"]) == [[2, 1]]
    assert len(tok2.word_index) == 3  # the index keeps every word, as in Keras


@needs_ktext
def test_tokenizer_json_round_trip_both_ways(tmp_path):
    tok = Tokenizer(num_words=7, oov_token="<OOV>")
    tok.fit_on_texts(TEXTS)
    # ours -> Keras
    kt = ktext.tokenizer_from_json(tok.to_json())
    assert kt.texts_to_sequences(NEW) == tok.texts_to_sequences(NEW)
    # Keras -> ours
    ref = _keras_tok(num_words=7, oov_token="<OOV>")
    back = tokenizer_from_json(ref.to_json())
    assert back.texts_to_sequences(NEW) == ref.texts_to_sequences(NEW)
    assert back.word_index == ref.word_index and back.num_words == 7
    # file save/load
    path = tmp_path / "tok.json"
    tok.save(path)
    loaded = Tokenizer.load(path)
    assert loaded.get_config() == tok.get_config()
    assert loaded.sequences_to_texts([[1, 2, 3, 50]]) == tok.sequences_to_texts([[1, 2, 3, 50]])


def test_tokenizer_bad_input(tmp_path):
    with pytest.raises(TypeError, match="single str"):
        Tokenizer().fit_on_texts("a whole text")
    with pytest.raises(TypeError, match="text #1"):
        Tokenizer().fit_on_texts(["ok", 3])
    with pytest.raises(ValueError, match="num_words"):
        Tokenizer(num_words=-1)
    bad = tmp_path / "bad.json"
    bad.write_text('{"class_name": "Tokenizer",\n "config": {oops}}')
    with pytest.raises(ValueError, match=r"bad\.json: not valid JSON at line 2, column 13"):
        Tokenizer.load(bad)
    with pytest.raises(ValueError, match="not a Tokenizer"):
        tokenizer_from_json(CharTokenizer().fit("ab").to_json())


SEQS = [[1, 2, 3, 4, 5], [6], [], [7, 8], [9, 10, 11]]


@needs_keras
@pytest.mark.parametrize("maxlen", [None, 1, 2, 3, 5, 7])
@pytest.mark.parametrize("padding", ["pre", "post"])
@pytest.mark.parametrize("truncating", ["pre", "post"])
def test_pad_sequences_matches_keras(maxlen, padding, truncating):
    ours = pad_sequences(SEQS, maxlen=maxlen, padding=padding, truncating=truncating, value=-1)
    ref = keras.utils.pad_sequences(SEQS, maxlen=maxlen, padding=padding, truncating=truncating, value=-1)
    assert ours.dtype == ref.dtype == np.int32
    np.testing.assert_array_equal(ours, ref)


@needs_keras
def test_pad_sequences_dtypes_values_and_sample_shapes():
    kp = keras.utils.pad_sequences
    floats = [[0.5, 1.7, -2.9], [3.2]]
    for dtype, value in (("int32", 0.0), ("float32", 0.5), ("int64", 9), ("float64", np.nan)):
        np.testing.assert_array_equal(pad_sequences(floats, dtype=dtype, value=value),
                                      kp(floats, dtype=dtype, value=value))
    arrays = [np.arange(6).reshape(3, 2), np.ones((1, 2)), np.zeros((0, 2))]
    np.testing.assert_array_equal(pad_sequences(arrays, maxlen=2, dtype="float32"),
                                  kp(arrays, maxlen=2, dtype="float32"))
    strs = [["a", "b"], ["c"]]
    np.testing.assert_array_equal(pad_sequences(strs, dtype=object, value="<pad>"),
                                  kp(strs, dtype=object, value="<pad>"))
    np.testing.assert_array_equal(pad_sequences(np.array([[1, 2, 3], [4, 5, 6]]), maxlen=2),
                                  kp(np.array([[1, 2, 3], [4, 5, 6]]), maxlen=2))
    # cases where Keras fails with a NumPy error: defined results here
    assert pad_sequences([], maxlen=None).shape == (0, 0)
    assert pad_sequences([[1, 2]], maxlen=0).shape == (1, 0)


def test_pad_sequences_errors():
    with pytest.raises(ValueError, match="padding"):
        pad_sequences([[1]], padding="middle")
    with pytest.raises(ValueError, match="truncating"):
        pad_sequences([[1]], truncating="both")
    with pytest.raises(ValueError, match="position 1 is not a sequence"):
        pad_sequences([[1], 5])
    with pytest.raises(ValueError, match="string value"):
        pad_sequences([["a"]], value="x")
    with pytest.raises(ValueError, match=r"position 1 have shape \(3,\), expected \(2,\)"):
        pad_sequences([np.ones((2, 2)), np.ones((2, 3))])
    with pytest.raises(ValueError, match="maxlen"):
        pad_sequences([[1]], maxlen=-2)


@needs_ktext
def test_one_hot_and_hashing_trick_match_keras():
    text = "The quick brown fox, the LAZY dog!"
    assert one_hot(text, 50) == ktext.one_hot(text, 50)  # same process -> same Python hash
    assert hashing_trick(text, 1000, "md5") == ktext.hashing_trick(text, 1000, "md5")
    ids = hashing_trick(text, 7, "md5")
    assert len(ids) == 7 and all(1 <= i < 7 for i in ids)
    assert ids[0] == ids[4]  # "the" twice, lower-cased
    with pytest.raises(ValueError, match="n must be"):
        one_hot(text, 1)


def test_char_tokenizer_round_trip_unknowns_and_json(tmp_path):
    tok = CharTokenizer().fit(["hello world", "héllo"])
    assert tok.chars == sorted(set("hello worldhéllo"))
    ids = tok.encode("hello")
    assert ids.dtype == np.int64 and tok.decode(ids) == "hello"
    assert ids.min() >= 0 and ids.max() < tok.vocab_size
    with pytest.raises(ValueError, match=r"'Z' \(U\+005A\) at position 2"):
        tok.encode("heZlo")
    skip = CharTokenizer(unknown="skip").fit("abc")
    assert skip.decode(skip.encode("aXbYc")) == "abc"
    rep = CharTokenizer(unknown="replace", unk_char="?", reserve_zero=True).fit("abc")
    assert rep.vocab_size == 5 and 0 not in rep.encode("abc?")
    assert rep.decode(rep.encode("aZc")) == "a?c"
    assert rep.decode([0, 0, 1]) == rep.index_char[1]
    with pytest.raises(ValueError, match="id 9 at position 1"):
        rep.decode([1, 9])
    low = CharTokenizer(lower=True).fit("AbC")
    assert low.chars == ["a", "b", "c"] and low.decode(low.encode("ABC")) == "abc"
    path = tmp_path / "chars.json"
    rep.save(path)
    again = CharTokenizer.load(path)
    assert again.get_config() == rep.get_config()
    np.testing.assert_array_equal(again.encode("cab?Q"), rep.encode("cab?Q"))
    path.write_text('{"class_name": "Tokenizer", "config": {}}')
    with pytest.raises(ValueError, match="not a CharTokenizer"):
        CharTokenizer.load(path)
    with pytest.raises(ValueError, match="fit"):
        CharTokenizer().encode("a")


def test_clean_review():
    raw = 'A fine film.<br /><br />Really<BR/>good &amp; <i>moving</i>!'
    assert strip_html_breaks("a<br />b<br>c< br / >d") == "a b c d"
    # tags become spaces (never glue two words together)
    assert clean_review(raw) == "A fine film. Really good & moving !"
    assert clean_review(raw, separate_punctuation=True) == "A fine film . Really good & moving !"
    assert clean_review("<i>x</i>", strip_tags=False) == "<i>x</i>"
    assert clean_review("don't  stop\n") == "don't stop"
    # with Keras-style filtering no 'br' token survives
    tok = Tokenizer()
    tok.fit_on_texts([clean_review(raw)])
    assert "br" not in tok.word_index and "i" not in tok.word_index
