"""The Keras examples named in issue 18, with only their imports changed to rnnlab, on small synthetic data
(and small sizes/epochs so that they run in seconds). Each test follows its script's calls in order; the
script's own names and arguments are kept (RMSprop(lr=...), bool one-hot arrays, imdb.load_data(num_words=),
get_file, LambdaCallback, pad_sequences, Embedding.build((1,)) + set_weights ...)."""
import io
import random

import numpy as np
import pytest


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """A HOME whose ~/.keras/datasets holds what the scripts' get_file/load_data would download."""
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = tmp_path / ".keras" / "datasets"
    folder.mkdir(parents=True)
    g = np.random.default_rng(0)
    from rnnlab.datasets.imdb import save_imdb_npz
    seqs = [list(g.integers(1, 300, size=g.integers(5, 30))) for _ in range(48)]
    labels = g.integers(0, 2, size=48)
    save_imdb_npz(folder / "imdb.npz", seqs[:32], labels[:32], seqs[32:], labels[32:])
    words = "the will to truth, which is to tempt us to many a hazardous enterprise. ".split()
    text = " ".join(g.choice(words, size=400))
    (folder / "nietzsche.txt").write_text("PREFACE\n" + text, encoding="utf-8")
    return folder


def test_keras2_imdb_lstm(keras_home):
    from rnnlab.datasets import imdb
    from rnnlab.layers import LSTM, Dense, Embedding
    from rnnlab.models import Sequential
    from rnnlab.preprocessing import sequence

    max_features, maxlen, batch_size = 2000, 20, 8
    (x_train, y_train), (x_test, y_test) = imdb.load_data(num_words=max_features)
    x_train = sequence.pad_sequences(x_train, maxlen=maxlen)
    x_test = sequence.pad_sequences(x_test, maxlen=maxlen)
    assert x_train.shape == (32, maxlen) and x_test.shape == (16, maxlen)
    model = Sequential()
    model.add(Embedding(max_features, 16))
    model.add(LSTM(16, dropout=0.2, recurrent_dropout=0.2))
    model.add(Dense(1, activation="sigmoid"))
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=batch_size, epochs=1, validation_data=(x_test, y_test), verbose=0)
    score, acc = model.evaluate(x_test, y_test, batch_size=batch_size)
    assert np.isfinite(score) and 0 <= acc <= 1


def _sample(preds, temperature=1.0):
    preds = np.asarray(preds).astype("float64")
    preds = np.log(preds) / temperature
    exp_preds = np.exp(preds)
    preds = exp_preds / np.sum(exp_preds)
    probas = np.random.multinomial(1, preds, 1)
    return np.argmax(probas)


def test_keras2_nietzsche_lstm_text_generation(keras_home):
    from rnnlab.callbacks import LambdaCallback
    from rnnlab.layers import LSTM, Activation, Dense
    from rnnlab.models import Sequential
    from rnnlab.optimizers import RMSprop
    from rnnlab.utils import get_file

    path = get_file("nietzsche.txt", origin="https://s3.amazonaws.com/text-datasets/nietzsche.txt")
    with io.open(path, encoding="utf-8") as f:
        text = f.read().lower()
    chars = sorted(list(set(text)))
    char_indices = dict((c, i) for i, c in enumerate(chars))
    indices_char = dict((i, c) for i, c in enumerate(chars))
    maxlen, step = 10, 40
    sentences = [text[i: i + maxlen] for i in range(0, len(text) - maxlen, step)]
    next_chars = [text[i + maxlen] for i in range(0, len(text) - maxlen, step)]
    x = np.zeros((len(sentences), maxlen, len(chars)), dtype=bool)
    y = np.zeros((len(sentences), len(chars)), dtype=bool)
    for i, sentence in enumerate(sentences):
        for t, char in enumerate(sentence):
            x[i, t, char_indices[char]] = 1
        y[i, char_indices[next_chars[i]]] = 1
    model = Sequential()
    model.add(LSTM(32, input_shape=(maxlen, len(chars))))
    model.add(Dense(len(chars)))
    model.add(Activation("softmax"))
    with pytest.warns(DeprecationWarning, match="lr"):
        optimizer = RMSprop(lr=0.01)
    model.compile(loss="categorical_crossentropy", optimizer=optimizer)
    generated = []

    def on_epoch_end(epoch, _):
        start_index = random.randint(0, len(text) - maxlen - 1)
        sentence = text[start_index: start_index + maxlen]
        for _ in range(5):
            x_pred = np.zeros((1, maxlen, len(chars)))
            for t, char in enumerate(sentence):
                x_pred[0, t, char_indices[char]] = 1.0
            preds = model.predict(x_pred, verbose=0)[0]
            next_char = indices_char[_sample(preds, 0.5)]
            sentence = sentence[1:] + next_char
            generated.append(next_char)

    model.fit(x, y, batch_size=32, epochs=1, callbacks=[LambdaCallback(on_epoch_end=on_epoch_end)], verbose=0)
    assert len(generated) == 5 and all(c in chars for c in generated)


def test_keras_io_addition_rnn():
    import rnnlab as keras
    from rnnlab import layers

    digits, maxlen = 2, 2 + 1 + 2
    chars = "0123456789+ "
    ctable = {c: i for i, c in enumerate(sorted(set(chars)))}
    g = np.random.default_rng(1)
    questions, answers = [], []
    for _ in range(64):
        a, b = int(g.integers(0, 100)), int(g.integers(0, 100))
        questions.append(f"{a}+{b}".ljust(maxlen)[::-1])
        answers.append(str(a + b).ljust(digits + 1))
    x = np.zeros((len(questions), maxlen, len(chars)), dtype=bool)
    y = np.zeros((len(questions), digits + 1, len(chars)), dtype=bool)
    for i, sentence in enumerate(questions):
        for t, c in enumerate(sentence):
            x[i, t, ctable[c]] = 1
    for i, sentence in enumerate(answers):
        for t, c in enumerate(sentence):
            y[i, t, ctable[c]] = 1
    model = keras.Sequential()
    model.add(layers.Input((maxlen, len(chars))))
    model.add(layers.LSTM(16))
    model.add(layers.RepeatVector(digits + 1))
    model.add(layers.LSTM(16, return_sequences=True))
    model.add(layers.Dense(len(chars), activation="softmax"))
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.summary()
    model.fit(x[:48], y[:48], batch_size=16, epochs=1, validation_data=(x[48:], y[48:]), verbose=0)
    preds = np.argmax(model.predict(x[48:50], verbose=0), axis=-1)
    assert preds.shape == (2, digits + 1)


def test_keras_io_lstm_character_level_text_generation(keras_home):
    import rnnlab as keras
    from rnnlab import layers

    path = keras.utils.get_file("nietzsche.txt", origin="https://s3.amazonaws.com/text-datasets/nietzsche.txt")
    with io.open(path, encoding="utf-8") as f:
        text = f.read().lower().replace("\n", " ")
    chars = sorted(list(set(text)))
    char_indices = dict((c, i) for i, c in enumerate(chars))
    indices_char = dict((i, c) for i, c in enumerate(chars))
    maxlen, step = 10, 40
    sentences = [text[i: i + maxlen] for i in range(0, len(text) - maxlen, step)]
    next_chars = [text[i + maxlen] for i in range(0, len(text) - maxlen, step)]
    x = np.zeros((len(sentences), maxlen, len(chars)), dtype="bool")
    y = np.zeros((len(sentences), len(chars)), dtype="bool")
    for i, sentence in enumerate(sentences):
        for t, char in enumerate(sentence):
            x[i, t, char_indices[char]] = 1
        y[i, char_indices[next_chars[i]]] = 1
    model = keras.Sequential([keras.Input(shape=(maxlen, len(chars))), layers.LSTM(32),
                              layers.Dense(len(chars), activation="softmax")])
    optimizer = keras.optimizers.RMSprop(learning_rate=0.01)
    model.compile(loss="categorical_crossentropy", optimizer=optimizer)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    x_pred = np.zeros((1, maxlen, len(chars)))
    for t, char in enumerate(sentences[0]):
        x_pred[0, t, char_indices[char]] = 1.0
    preds = model.predict(x_pred, verbose=0)[0]
    assert indices_char[_sample(preds, 1.0)] in chars


def test_keras_io_bidirectional_lstm_imdb(keras_home):
    import rnnlab as keras
    from rnnlab import layers

    max_features, maxlen = 2000, 20
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(max_features, 16)(inputs)
    x = layers.Bidirectional(layers.LSTM(8, return_sequences=True))(x)
    x = layers.Bidirectional(layers.LSTM(8))(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.summary()
    (x_train, y_train), (x_val, y_val) = keras.datasets.imdb.load_data(num_words=max_features)
    x_train = keras.utils.pad_sequences(x_train, maxlen=maxlen)
    x_val = keras.utils.pad_sequences(x_val, maxlen=maxlen)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=8, epochs=1, validation_data=(x_val, y_val), verbose=0)
    assert set(history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_keras_io_pretrained_word_embeddings_cnn():
    import rnnlab as keras
    from rnnlab import layers
    from rnnlab.layers import Embedding, TextVectorization

    g = np.random.default_rng(2)
    vocab_words = [f"w{i}" for i in range(60)]
    samples = [" ".join(g.choice(vocab_words, size=g.integers(30, 60))) for _ in range(40)]
    labels = g.integers(0, 3, size=40)
    class_names = ["a", "b", "c"]
    vectorizer = TextVectorization(max_tokens=200, output_sequence_length=50)
    vectorizer.adapt(samples[:30])
    voc = vectorizer.get_vocabulary()
    word_index = dict(zip(voc, range(len(voc))))
    num_tokens, embedding_dim = len(voc) + 2, 8
    embedding_matrix = np.zeros((num_tokens, embedding_dim))
    for word, i in word_index.items():
        embedding_matrix[i] = g.normal(size=embedding_dim)      # (the script reads GloVe vectors here)
    embedding_layer = Embedding(num_tokens, embedding_dim, trainable=False)
    embedding_layer.build((1,))
    embedding_layer.set_weights([embedding_matrix])
    int_sequences_input = keras.Input(shape=(None,), dtype="int32")
    embedded_sequences = embedding_layer(int_sequences_input)
    x = layers.Conv1D(16, 5, activation="relu")(embedded_sequences)
    x = layers.MaxPooling1D(5)(x)
    x = layers.Conv1D(16, 3, activation="relu")(x)
    x = layers.GlobalMaxPooling1D()(x)
    x = layers.Dense(16, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    preds = layers.Dense(len(class_names), activation="softmax")(x)
    model = keras.Model(int_sequences_input, preds)
    model.summary()
    x_train = keras.ops.convert_to_numpy(vectorizer(np.array([[s] for s in samples[:30]])))
    x_val = keras.ops.convert_to_numpy(vectorizer(np.array([[s] for s in samples[30:]])))
    model.compile(loss="sparse_categorical_crossentropy", optimizer="rmsprop", metrics=["acc"])
    model.fit(x_train, labels[:30], batch_size=8, epochs=1, validation_data=(x_val, labels[30:]), verbose=0)
    probabilities = model.predict(x_val[:1], verbose=0)
    assert class_names[int(keras.ops.argmax(probabilities[0]))] in class_names
