"""word2vec text/binary and GloVe files: exact round trips, malformed files, gensim interop (if installed)."""
import numpy as np
import pytest

from rnnlab.embeddings import (KeyedVectors, load_glove, load_vectors, load_word2vec_format, save_glove,
                               save_word2vec_format)


@pytest.fixture
def kv():
    rng = np.random.default_rng(0)
    vecs = (rng.normal(size=(6, 5)) * np.array([1, 1e-6, 1e3, 1, 0])).astype(np.float32)
    return KeyedVectors(vecs, ["the", "café", "naïve", "x", "it's", "b2"])


@pytest.mark.parametrize("binary", [False, True])
def test_word2vec_round_trip_is_exact(kv, tmp_path, binary):
    p = tmp_path / ("v.bin" if binary else "v.txt")
    save_word2vec_format(kv, p, binary=binary)
    back = load_word2vec_format(p, binary=binary)
    assert back.index_to_key == kv.index_to_key
    np.testing.assert_array_equal(back.vectors, kv.vectors)
    assert p.read_bytes().startswith(b"6 5\n")
    two = load_word2vec_format(p, binary=binary, limit=2)
    assert two.index_to_key == ["the", "café"]
    same = load_vectors(p)
    np.testing.assert_array_equal(same.vectors, kv.vectors)


def test_binary_layout(tmp_path):
    kv = KeyedVectors(np.array([[1.0, -2.0]], dtype=np.float32), ["ab"])
    p = tmp_path / "v.bin"
    kv.save_word2vec_format(p, binary=True)
    assert p.read_bytes() == b"1 2\nab " + np.array([1.0, -2.0], "<f4").tobytes() + b"\n"
    # files without the newline after each vector (as gensim 4 writes them) load too
    p.write_bytes(b"2 2\nab " + np.array([1, 2], "<f4").tobytes() + b"cd " + np.array([3, 4], "<f4").tobytes())
    back = load_word2vec_format(p, binary=True)
    assert back.index_to_key == ["ab", "cd"]
    np.testing.assert_array_equal(back.vectors, [[1, 2], [3, 4]])


def test_glove_round_trip(kv, tmp_path):
    p = tmp_path / "g.txt"
    save_glove(kv, p)
    assert not p.read_text().startswith("6 5")
    back = load_glove(p)
    np.testing.assert_array_equal(back.vectors, kv.vectors)
    assert load_vectors(p).index_to_key == kv.index_to_key


def test_malformed_files(tmp_path):
    p = tmp_path / "bad.txt"
    cases = [
        ("2 3\na 1 2 3\nb 1 2\n", "line 3: expected a word and 3 numbers, got 2"),
        ("2 3\na 1 2 3\nb 1 x 3\n", "line 3: not a number in the vector of 'b'"),
        ("3 3\na 1 2 3\nb 1 2 3\n", "file ends after 2 of 3 vectors"),
        ("two 3\n", "line 1: expected a header"),
        ("2 2\na 1 2\na 3 4\n", "word 'a' appears twice"),
    ]
    for text, msg in cases:
        p.write_text(text)
        with pytest.raises(ValueError, match=msg):
            load_word2vec_format(p)
    p.write_text("a 1 2 3\nb 1 2\n")
    with pytest.raises(ValueError, match="line 2: expected a word and 3 numbers"):
        load_glove(p)
    p.write_text("2 3\na 1 2 3\n")
    with pytest.raises(ValueError, match="line 1: looks like a word2vec header"):
        load_glove(p)
    b = tmp_path / "bad.bin"
    b.write_bytes(b"2 3\na " + np.zeros(3, "<f4").tobytes() + b"\nb " + np.zeros(2, "<f4").tobytes())
    with pytest.raises(ValueError, match=r"entry 2 \(byte \d+\): vector of 'b' is truncated"):
        load_word2vec_format(b, binary=True)
    b.write_bytes(b"3 1\na " + np.zeros(1, "<f4").tobytes())
    with pytest.raises(ValueError, match="file ends after 1 of 3 vectors"):
        load_word2vec_format(b, binary=True)
    with pytest.raises(ValueError, match="without whitespace"):
        save_word2vec_format(KeyedVectors(np.zeros((1, 2)), ["a b"]), tmp_path / "x.txt")
    with pytest.raises(ValueError, match="format must be"):
        load_vectors(p, format="fasttext")


@pytest.mark.parametrize("binary", [False, True])
def test_gensim_interop(kv, tmp_path, binary):
    gensim_models = pytest.importorskip("gensim.models", reason="gensim is an optional benchmark dependency")
    ours = tmp_path / "ours"
    save_word2vec_format(kv, ours, binary=binary)
    g = gensim_models.KeyedVectors.load_word2vec_format(str(ours), binary=binary)
    assert list(g.index_to_key) == kv.index_to_key
    np.testing.assert_array_equal(g.vectors, kv.vectors)
    theirs = tmp_path / "theirs"
    g.save_word2vec_format(str(theirs), binary=binary)
    back = load_word2vec_format(theirs, binary=binary)
    assert back.index_to_key == kv.index_to_key
    np.testing.assert_array_equal(back.vectors, kv.vectors)
