"""keras-io ``pretrained_word_embeddings`` (examples/nlp/pretrained_word_embeddings.py): its TextVectorization,
embedding-matrix and CNN model code runs with only the imports changed (``import rnnlab as keras``; the
``tf.data`` batching of ``adapt`` replaced by a stand-in with the same calls; the Newsgroup20 texts and GloVe
vectors replaced by small synthetic ones; 1 epoch instead of 20). The same model built in Keras 3 with rnnlab's
weights gives the same predictions and parameter count. The example's last part (an end-to-end model on a
``dtype="string"`` Input) needs string tensors, which rnnlab's functional API does not take; it is left out."""
import numpy as np
import pytest

import rnnlab as keras
from rnnlab import layers


class tf_data:  # noqa: N801 - stand-in for ``tensorflow.data`` with the calls the example makes
    class Dataset:
        def __init__(self, items):
            self.items = list(items)

        @classmethod
        def from_tensor_slices(cls, items):
            return cls(items)

        def batch(self, n):
            return [self.items[i:i + n] for i in range(0, len(self.items), n)]


def _synthetic_newsgroups(n=120, seed=0):
    rng = np.random.default_rng(seed)
    class_names = ["comp.graphics", "rec.autos", "sci.space"]
    topic = [["pixel", "render", "image", "polygon", "shader"], ["engine", "wheel", "brake", "gear", "car"],
             ["orbit", "rocket", "nasa", "moon", "launch"]]
    common = ["the", "a", "of", "and", "is", "to", "in", "it", "that", "for"]
    samples, labels = [], []
    for i in range(n):
        c = i % 3
        words = rng.choice(common + topic[c], size=rng.integers(150, 260))
        samples.append("Subject: " + " ".join(words).capitalize() + ".")
        labels.append(c)
    return samples, labels, class_names


def test_pretrained_word_embeddings_cnn():
    samples, labels, class_names = _synthetic_newsgroups()
    keras.set_random_seed(0)

    # --- keras-io code from here (imports changed) ---
    seed = 1337
    rng = np.random.RandomState(seed)
    rng.shuffle(samples)
    rng = np.random.RandomState(seed)
    rng.shuffle(labels)

    validation_split = 0.2
    num_validation_samples = int(validation_split * len(samples))
    train_samples = samples[:-num_validation_samples]
    val_samples = samples[-num_validation_samples:]
    train_labels = labels[:-num_validation_samples]
    val_labels = labels[-num_validation_samples:]

    vectorizer = layers.TextVectorization(max_tokens=20000, output_sequence_length=200)
    text_ds = tf_data.Dataset.from_tensor_slices(train_samples).batch(128)
    vectorizer.adapt(text_ds)

    top5 = vectorizer.get_vocabulary()[:5]
    output = vectorizer([["the cat sat on the mat"]])
    first6 = output.numpy()[0, :6]

    voc = vectorizer.get_vocabulary()
    word_index = dict(zip(voc, range(len(voc))))
    test = ["the", "cat", "sat", "on", "the", "mat"]
    assert [word_index.get(w, 1) for w in test] == list(first6)    # the example's own check ("cat" etc. are OOV here)

    # synthetic stand-in for the GloVe file
    glove_rng = np.random.default_rng(1)
    embeddings_index = {w: glove_rng.standard_normal(100).astype("float32") for w in voc[2:][::2]}

    num_tokens = len(voc) + 2
    embedding_dim = 100
    hits = 0
    misses = 0
    embedding_matrix = np.zeros((num_tokens, embedding_dim))
    for word, i in word_index.items():
        embedding_vector = embeddings_index.get(word)
        if embedding_vector is not None:
            embedding_matrix[i] = embedding_vector
            hits += 1
        else:
            misses += 1

    from rnnlab.layers import Embedding

    embedding_layer = Embedding(
        num_tokens,
        embedding_dim,
        trainable=False,
    )
    embedding_layer.build((1,))
    embedding_layer.set_weights([embedding_matrix])

    int_sequences_input = keras.Input(shape=(None,), dtype="int32")
    embedded_sequences = embedding_layer(int_sequences_input)
    x = layers.Conv1D(128, 5, activation="relu")(embedded_sequences)
    x = layers.MaxPooling1D(5)(x)
    x = layers.Conv1D(128, 5, activation="relu")(x)
    x = layers.MaxPooling1D(5)(x)
    x = layers.Conv1D(128, 5, activation="relu")(x)
    x = layers.GlobalMaxPooling1D()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    preds = layers.Dense(len(class_names), activation="softmax")(x)
    model = keras.Model(int_sequences_input, preds)
    summary = []
    model.summary(print_fn=summary.append)

    x_train = vectorizer(np.array([[s] for s in train_samples])).numpy()
    x_val = vectorizer(np.array([[s] for s in val_samples])).numpy()

    y_train = np.array(train_labels)
    y_val = np.array(val_labels)

    model.compile(
        loss="sparse_categorical_crossentropy", optimizer="rmsprop", metrics=["acc"]
    )
    history = model.fit(x_train, y_train, batch_size=128, epochs=1, validation_data=(x_val, y_val), verbose=0)
    # --- end of keras-io code ---

    assert top5[:2] == ["", "[UNK]"] and top5[2] in ("the", "a", "of", "and", "is", "to", "in", "it", "that", "for")
    assert first6[0] == word_index["the"] and first6[1] == 1
    assert hits > 0 and misses > 0
    assert x_train.shape == (96, 200) and x_train.dtype == np.int64
    assert np.isfinite(history.history["loss"][0]) and "val_loss" in history.history
    np.testing.assert_array_equal(embedding_layer.get_weights()[0], embedding_matrix.astype("float32"))  # frozen
    n_emb = num_tokens * embedding_dim
    n_train = (5 * 100 * 128 + 128) + 2 * (5 * 128 * 128 + 128) + (128 * 128 + 128) + (128 * 3 + 3)
    assert model.count_params() == n_emb + n_train
    assert any(f"Total params: {n_emb + n_train:,}" in line for line in summary)
    assert any(f"Non-trainable params: {n_emb:,}" in line for line in summary)

    # the same model in Keras 3 with rnnlab's trained weights predicts the same
    real_keras = pytest.importorskip("keras")
    kl = real_keras.layers
    kin = real_keras.Input(shape=(None,), dtype="int32")
    h = kl.Embedding(num_tokens, embedding_dim, trainable=False)(kin)
    h = kl.Conv1D(128, 5, activation="relu")(h)
    h = kl.MaxPooling1D(5)(h)
    h = kl.Conv1D(128, 5, activation="relu")(h)
    h = kl.MaxPooling1D(5)(h)
    h = kl.Conv1D(128, 5, activation="relu")(h)
    h = kl.GlobalMaxPooling1D()(h)
    h = kl.Dense(128, activation="relu")(h)
    h = kl.Dropout(0.5)(h)
    kmodel = real_keras.Model(kin, kl.Dense(len(class_names), activation="softmax")(h))
    assert kmodel.count_params() == model.count_params()
    kmodel.set_weights(model.get_weights())
    np.testing.assert_allclose(model.predict(x_val, verbose=0), kmodel.predict(x_val, verbose=0), rtol=1e-4,
                               atol=1e-6)   # float32 in both
