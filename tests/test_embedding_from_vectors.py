"""Embedding.from_vectors: rows from pretrained vectors, Keras-initialised OOV rows, frozen weights, errors."""
import numpy as np
import pytest

from rnnlab import initializers
from rnnlab.embeddings import KeyedVectors
from rnnlab.layers import GRU, Dense, Embedding
from rnnlab.models import Sequential
from rnnlab.text import Tokenizer

TEXTS = ["the cat sat on the mat", "the dog ate the cat food", "a zebra sat"]


def _setup(dim=4):
    tok = Tokenizer()
    tok.fit_on_texts(TEXTS)
    words = ["the", "cat", "sat", "dog", "mat", "on"]          # 'ate', 'food', 'a', 'zebra' have no vector
    rng = np.random.default_rng(0)
    kv = KeyedVectors(rng.normal(size=(len(words), dim)).astype(np.float32), words)
    return tok, kv


def test_rows_come_from_vectors_and_oov_rows_from_the_initializer():
    tok, kv = _setup()
    init = initializers.RandomUniform(-0.05, 0.05, seed=3)
    emb = Embedding.from_vectors(kv, tok, embeddings_initializer=init)
    V = max(tok.word_index.values()) + 1
    emb(np.array([[1, 2]]))                                    # builds; weights= applied at build
    M = emb.get_weights()[0]
    assert M.shape == (V, 4) and emb.input_dim == V and emb.output_dim == 4
    assert np.all(M[0] == 0)                                   # padding row
    expect_init = initializers.RandomUniform(-0.05, 0.05, seed=3)((V, 4), np.float32)
    oov = sorted((w for w in tok.word_index if w not in kv), key=tok.word_index.get)
    assert emb.oov_words == oov and emb.oov_count == len(oov) == 4
    assert emb.pretrained_count == V - 1 - 4
    for w, i in tok.word_index.items():
        if w in kv:
            np.testing.assert_array_equal(M[i], kv[w])
        else:
            np.testing.assert_array_equal(M[i], expect_init[i])
            assert np.abs(M[i]).max() <= 0.05 and np.abs(M[i]).max() > 0


def test_num_words_of_the_tokenizer_limits_the_rows():
    tok, kv = _setup()
    tok.num_words = 4                                          # ids 1..3 only
    emb = Embedding.from_vectors(kv, tok)
    emb(np.array([[0, 3]]))
    M = emb.get_weights()[0]
    assert M.shape == (4, 4)
    inv = {i: w for w, i in tok.word_index.items()}
    for i in range(1, 4):
        if inv[i] in kv:
            np.testing.assert_array_equal(M[i], kv[inv[i]])
    # a plain word_index dict and an explicit num_words work as well
    emb2 = Embedding.from_vectors(kv, {"cat": 1, "zebra": 2}, num_words=5, mask_zero=True, name="pre")
    emb2(np.array([[1, 2, 0]]))
    assert emb2.get_weights()[0].shape == (5, 4) and emb2.oov_words == ["zebra"] and emb2.mask_zero
    assert emb2.name == "pre"


def test_frozen_embedding_is_non_trainable_in_summary_and_fit():
    tok, kv = _setup()
    emb = Embedding.from_vectors(kv, tok, trainable=False, mask_zero=True)
    model = Sequential([emb, GRU(3), Dense(1, activation="sigmoid")])
    model.build((None, 5))
    lines = []
    model.summary(print_fn=lines.append)
    V = emb.input_dim
    total = model.count_params()
    assert f"Non-trainable params: {V * 4:,}" in "\n".join(lines)
    assert f"Trainable params: {total - V * 4:,}" in "\n".join(lines)
    before = [w.copy() for w in model.get_weights()]
    model.compile(optimizer="adam", loss="binary_crossentropy")
    x = np.array([[1, 2, 3, 0, 0], [4, 5, 6, 7, 0]])
    model.fit(x, np.array([1.0, 0.0]), epochs=2, batch_size=2, verbose=0)
    after = model.get_weights()
    np.testing.assert_array_equal(after[0], before[0])         # embedding untouched
    assert any(not np.array_equal(a, b) for a, b in zip(after[1:], before[1:]))
    # trainable=True: the same run moves the embedding rows that occur
    emb_t = Embedding.from_vectors(kv, tok, trainable=True, mask_zero=True)
    m2 = Sequential([emb_t, GRU(3), Dense(1, activation="sigmoid")])
    m2.compile(optimizer="adam", loss="binary_crossentropy")
    m2.fit(x, np.array([1.0, 0.0]), epochs=2, batch_size=2, verbose=0)
    assert not np.array_equal(emb_t.get_weights()[0][1], kv.vectors[kv.key_to_index[tok.index_word[1]]])


def test_bad_input():
    tok, kv = _setup()
    with pytest.raises(ValueError, match="embedding_dim=50.*dimension 4"):
        Embedding.from_vectors(kv, tok, output_dim=50)
    with pytest.raises(TypeError, match="tokenizer must be"):
        Embedding.from_vectors(kv, ["the", "cat"])
    with pytest.raises(ValueError, match="word_index is empty"):
        Embedding.from_vectors(kv, Tokenizer())
    with pytest.raises(ValueError, match="weights="):
        Embedding.from_vectors(kv, tok, weights=[np.zeros((3, 4))])
    with pytest.raises(TypeError, match="KeyedVectors or a dict"):
        Embedding.from_vectors([[0.0] * 4], tok)
