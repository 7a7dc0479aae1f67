"""TextVectorization: Keras 3's golden values (keras/src/layers/preprocessing/text_vectorization_test.py; Keras's
own layer needs TensorFlow, absent here), the vocabulary order rule of Keras's IndexLookup.finalize_state
(np.lexsort((tokens, counts))[::-1]) on random text with many ties, standardize/split/ngrams, padding, errors,
config round trip and use in front of an Embedding model."""
import numpy as np
import pytest

import rnnlab
from rnnlab.layers import Dense, Embedding, GlobalAveragePooling1D, TextVectorization


# ------------------------------------------------------------- Keras golden values
def test_keras_adapt_flow():
    layer = TextVectorization(max_tokens=5000, output_mode="int", output_sequence_length=4)
    layer.adapt(["foo bar", "bar baz", "baz bada boom"])
    out = layer([["foo qux bar"], ["qux baz"]])
    np.testing.assert_array_equal(out, [[4, 1, 3, 0], [1, 2, 0, 0]])
    assert out.dtype == np.int64
    assert layer.get_vocabulary() == ["", "[UNK]", "baz", "bar", "foo", "boom", "bada"]


def test_keras_adapt_with_generator_and_steps():
    def gen():
        while True:
            yield ["hello world", "foo bar"]
            yield ["baz qux", "hello foo"]

    layer = TextVectorization()
    layer.adapt(gen(), steps=2)
    assert layer.get_vocabulary() == ["", "[UNK]", "hello", "foo", "world", "qux", "baz", "bar"]


@pytest.mark.parametrize("how", ["init", "set"])
def test_keras_fixed_vocabulary(how):
    kw = dict(max_tokens=5000, output_mode="int", output_sequence_length=4)
    if how == "init":
        layer = TextVectorization(vocabulary=["baz", "bar", "foo"], **kw)
    else:
        layer = TextVectorization(**kw)
        layer.set_vocabulary(["baz", "bar", "foo"])
    np.testing.assert_array_equal(layer([["foo qux bar"], ["qux baz"]]), [[4, 1, 3, 0], [1, 2, 0, 0]])


def test_keras_standardization_modes():
    text = ["Hello, World!. This is just a nice test!"]
    layer = TextVectorization(vocabulary=["hello", "world", "this", "is", "nice", "test"])
    np.testing.assert_array_equal(layer(text), [[2, 3, 4, 5, 1, 1, 6, 7]])
    layer = TextVectorization(standardize="lower",
                              vocabulary=["hello,", "hello", "world", "this", "is", "nice", "test"])
    np.testing.assert_array_equal(layer(text), [[2, 1, 5, 6, 1, 1, 7, 1]])
    layer = TextVectorization(standardize="strip_punctuation", vocabulary=["Hello", "World", "Test"])
    np.testing.assert_array_equal(layer(["Hello, World! Test."]), [[2, 3, 4]])
    layer = TextVectorization(standardize=None, vocabulary=["Hello", "world"])
    np.testing.assert_array_equal(layer(["Hello hello"]), [[2, 1]])


def test_keras_splitting_modes():
    np.testing.assert_array_equal(TextVectorization(split="character", vocabulary=list("abcde"))(["abcf"]),
                                  [[2, 3, 4, 1]])
    layer = TextVectorization(split=lambda s: s.split("|"), vocabulary=["foo", "bar", "foobar"])
    np.testing.assert_array_equal(layer(["foo|bar"]), [[4]])     # Keras: "|" is stripped before the split
    layer = TextVectorization(standardize=None, split=lambda s: s.split("|"), vocabulary=["foo", "bar"])
    np.testing.assert_array_equal(layer(["foo|bar"]), [[2, 3]])
    layer = TextVectorization(split=None, vocabulary=["foo", "bar", "baz"])
    np.testing.assert_array_equal(layer([["foo"], ["bar"], ["unknown"]]), [[2], [3], [1]])


def test_keras_callable_standardize_gets_numpy_strings():
    seen = []

    def std(text):
        seen.append((type(text).__name__, text.dtype.kind))
        return np.char.replace(np.char.lower(text), ",", "")

    layer = TextVectorization(standardize=std)
    layer.adapt(["Hello, world."])
    assert seen and all(s == ("ndarray", "U") for s in seen)
    assert "hello" in layer.get_vocabulary() and "world." in layer.get_vocabulary()


def test_keras_ngrams_max_tokens_and_vocabulary_queries():
    layer = TextVectorization(ngrams=2)
    layer.adapt(["foo bar baz"])
    assert {"foo bar", "bar baz"} <= set(layer.get_vocabulary())
    layer = TextVectorization(ngrams=(1, 3))
    layer.adapt(["foo bar baz"])
    vocab = layer.get_vocabulary()
    assert "foo" in vocab and "foo bar baz" in vocab and "foo bar" not in vocab
    layer = TextVectorization(max_tokens=5)
    layer.adapt(["a b c d e f g h i j"])
    assert layer.get_vocabulary() == ["", "[UNK]", "j", "i", "h"]
    layer = TextVectorization(vocabulary=["foo", "bar", "baz"])
    assert layer.get_vocabulary()[:2] == ["", "[UNK]"]
    assert layer.get_vocabulary(include_special_tokens=False) == ["foo", "bar", "baz"]
    assert layer.vocabulary_size() == 5


# ------------------------------------------------------------- Keras's ordering rule
def _keras_order(docs, max_tokens=None):
    """The vocabulary as Keras's IndexLookup.finalize_state builds it from token counts."""
    counts = {}
    for d in docs:
        for t in d.split():
            counts[t] = counts.get(t, 0) + 1
    tokens = np.array(list(counts), dtype=object)
    c = np.array([counts[t] for t in tokens])
    order = np.lexsort((tokens, c))[::-1]
    if max_tokens:
        order = order[:max_tokens - 2]
    return ["", "[UNK]"] + [tokens[i] for i in order]


@pytest.mark.parametrize("max_tokens", [None, 12, 40])
def test_vocabulary_order_and_ids_follow_keras_rule_with_ties(max_tokens):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(30)] + ["zeta", "alpha", "Ωmega", "émile", "b"]
    docs = [" ".join(rng.choice(words, size=rng.integers(1, 12))) for _ in range(60)]
    layer = TextVectorization(max_tokens=max_tokens, standardize=None)
    layer.adapt(docs)
    expect = _keras_order(docs, max_tokens)
    assert layer.get_vocabulary() == expect
    index = {t: i for i, t in enumerate(expect)}
    out = layer(docs)
    for row, d in zip(out, docs):
        toks = d.split()
        np.testing.assert_array_equal(row[:len(toks)], [index.get(t, 1) for t in toks])
        assert np.all(row[len(toks):] == 0)


def test_standardize_lowercases_ascii_only_and_splits_on_ascii_whitespace():
    layer = TextVectorization()
    layer.adapt(["ÉCOLE Ecole  it's\tdone\n(yes)", "a-b c.d"])
    vocab = layer.get_vocabulary()
    assert "ÉCOLE".replace("COLE", "cole") in vocab        # as tf.strings.lower: É keeps its case
    assert {"ecole", "its", "done", "yes", "ab", "cd"} <= set(vocab)
    assert all(t == t.strip() and t for t in vocab[2:])


# ------------------------------------------------------------- shapes and inputs
def test_input_forms_and_padding():
    layer = TextVectorization(vocabulary=["a", "b", "c"])
    expect = [[2, 3, 4], [3, 0, 0]]
    for inputs in (["a b c", "b"], ("a b c", "b"), np.array(["a b c", "b"]), np.array([["a b c"], ["b"]]),
                   [[b"a b c"], [b"b"]], np.array(["a b c", "b"], dtype=object)):
        np.testing.assert_array_equal(layer(inputs), expect)
    np.testing.assert_array_equal(layer("c a"), [4, 2])
    assert layer([]).shape == (0, 0)
    layer = TextVectorization(vocabulary=["a", "b", "c"], output_sequence_length=2)
    np.testing.assert_array_equal(layer(["a b c", "b", ""]), [[2, 3], [3, 0], [0, 0]])
    assert layer.compute_output_shape((None,)) == (None, 2)


# ------------------------------------------------------------- errors
def test_called_before_adapt_is_a_clear_error():
    layer = TextVectorization(name="tv")
    with pytest.raises(ValueError, match=r"'tv'.*needs a vocabulary.*call layer.adapt\(texts\)"):
        layer(["some text"])
    with pytest.raises(ValueError, match="needs a vocabulary"):
        layer.get_vocabulary()


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="output_mode must be one of"):
        TextVectorization(output_mode="one_hot")
    with pytest.raises(ValueError, match="output_sequence_length must not be set"):
        TextVectorization(output_mode="count", output_sequence_length=3)
    with pytest.raises(ValueError, match="needs idf_weights"):
        TextVectorization(output_mode="tf_idf", vocabulary=["a"])
    with pytest.raises(ValueError, match=r"one weight per vocabulary token \(2\)"):
        TextVectorization(output_mode="tf_idf", vocabulary=["a", "b"], idf_weights=[1.0])
    with pytest.raises(ValueError, match="standardize must be one of"):
        TextVectorization(standardize="upper")
    with pytest.raises(ValueError, match="split must be one of"):
        TextVectorization(split="comma")
    with pytest.raises(ValueError, match="output_sequence_length must be None or a positive int"):
        TextVectorization(output_sequence_length=0)
    with pytest.raises(ValueError, match="max_tokens must be None or an int > 1"):
        TextVectorization(max_tokens=1)
    with pytest.raises(ValueError, match="ngrams"):
        TextVectorization(ngrams="2")
    layer = TextVectorization(vocabulary=["a"], name="tv")
    with pytest.raises(ValueError, match=r"'tv'.*\(N,\) or rows of one string \(N, 1\).*\(2, 2\)"):
        layer([["a", "b"], ["c", "d"]])
    with pytest.raises(TypeError, match="expected strings, got an element of type int"):
        layer([1, 2])
    with pytest.raises(TypeError, match="adapt expects a list or array of strings, got one string"):
        layer.adapt("a b c")
    with pytest.raises(ValueError, match="repeated tokens"):
        TextVectorization(vocabulary=["a", "b", "a"])
    with pytest.raises(ValueError, match="larger than max_tokens=4"):
        TextVectorization(vocabulary=["a", "b", "c"], max_tokens=4)
    with pytest.raises(ValueError, match="special token"):
        TextVectorization(vocabulary=["a", "[UNK]"])
    with pytest.raises(TypeError, match="no gradient flows"):
        layer.backward(np.zeros((1, 1)))


# ------------------------------------------------------------- config and models
def test_config_round_trip_keeps_the_vocabulary():
    layer = TextVectorization(max_tokens=100, output_sequence_length=6, ngrams=(1, 2), name="tv")
    layer.adapt(["the cat sat", "the dog sat down"])
    cfg = layer.get_config()
    again = TextVectorization.from_config(cfg)
    assert again.get_config() == cfg
    assert again.get_vocabulary() == layer.get_vocabulary()
    np.testing.assert_array_equal(again(["the cat sat down"]), layer(["the cat sat down"]))
    assert rnnlab.layers.get_layer_class("TextVectorization") is TextVectorization
    with pytest.raises(ValueError, match="callable standardize/split cannot be written to a config"):
        TextVectorization(split=lambda s: s.split(",")).get_config()


def test_ids_feed_an_embedding_model():
    texts = ["good movie", "bad movie", "very good", "very bad film"] * 8
    y = np.array([1, 0, 1, 0] * 8, "float32")
    tv = TextVectorization(output_sequence_length=5)
    tv.adapt(texts)
    x = tv(texts)
    rnnlab.set_random_seed(0)
    model = rnnlab.Sequential([Embedding(tv.vocabulary_size(), 8, mask_zero=True), GlobalAveragePooling1D(),
                               Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=40, batch_size=8, verbose=0)
    assert model.evaluate(x, y, verbose=0)[1] == 1.0


def test_symbolic_input_is_refused_with_the_way_to_do_it():
    layer = TextVectorization(vocabulary=["a"])
    with pytest.raises(TypeError, match=r"vectorize the texts outside the model.*dtype='int32'"):
        layer(rnnlab.Input(shape=(1,)))


def test_keras_vocabulary_from_file(tmp_path):
    # keras/src/layers/preprocessing/text_vectorization_test.py::test_vocabulary_from_file
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("foo\nbar\nbaz\n", encoding="utf-8")
    layer = TextVectorization(vocabulary=str(vocab_file), output_mode="int")
    np.testing.assert_array_equal(layer(["foo bar baz unknown"]), [[2, 3, 4, 1]])
    with pytest.raises(ValueError, match=r"cannot read the vocabulary file '.*missing.txt'"):
        TextVectorization(vocabulary=str(tmp_path / "missing.txt"))


# ------------------------------------------------------------- bag-of-words modes
def test_keras_multi_hot_count_tf_idf_golden_values():
    # keras/src/layers/preprocessing/text_vectorization_test.py: test_multi_hot_output, test_output_mode_count_output,
    # test_output_mode_tf_idf_output, test_pad_to_max_tokens
    layer = TextVectorization(output_mode="multi_hot", vocabulary=["foo", "bar", "baz"])
    np.testing.assert_array_equal(layer([["foo bar"], ["baz foo foo"]]), [[0, 1, 1, 0], [0, 1, 0, 1]])
    assert layer.get_vocabulary() == ["[UNK]", "foo", "bar", "baz"] and layer.vocabulary_size() == 4
    layer = TextVectorization(output_mode="count", vocabulary=["foo", "bar", "baz"])
    np.testing.assert_array_equal(layer(["foo bar", "baz foo foo"]), [[0, 1, 1, 0], [0, 2, 0, 1]])
    layer = TextVectorization(output_mode="tf_idf", vocabulary=["foo", "bar", "baz"], idf_weights=[0.3, 0.5, 0.2])
    np.testing.assert_allclose(layer(["foo bar", "baz foo foo"]), [[0.0, 0.3, 0.5, 0.0], [0.0, 0.6, 0.0, 0.2]],
                               rtol=1e-6)
    np.testing.assert_allclose(layer(["qux"]), [[np.mean([0.3, 0.5, 0.2]), 0, 0, 0]], rtol=1e-6)   # OOV weight
    layer = TextVectorization(output_mode="multi_hot", vocabulary=["foo", "bar"], max_tokens=8, pad_to_max_tokens=True)
    assert layer(["foo bar"]).shape == (1, 8)
    assert TextVectorization(output_mode="binary", vocabulary=["a"]).output_mode == "multi_hot"


def test_adapted_tf_idf_weights_and_bag_of_words_vocabulary():
    docs = ["the cat sat", "the dog sat", "the end", "a cat"]
    layer = TextVectorization(output_mode="tf_idf", max_tokens=5)
    layer.adapt(docs)
    vocab = layer.get_vocabulary()
    assert vocab == ["[UNK]", "the", "sat", "cat", "end"]           # max_tokens - 1 learned tokens
    d = {"the": 3, "sat": 2, "cat": 2, "end": 1}
    idf = np.array([np.log(1 + 4 / (1 + d[t])) for t in vocab[1:]])
    out = layer(["the the cat dog"])
    np.testing.assert_allclose(out, [[idf.mean(), 2 * idf[0], 0, idf[2], 0]], rtol=1e-6)
    cfg = layer.get_config()
    again = TextVectorization.from_config(cfg)
    np.testing.assert_array_equal(again(["the the cat dog"]), out)
    assert layer.compute_output_shape((None,)) == (None, 5)
