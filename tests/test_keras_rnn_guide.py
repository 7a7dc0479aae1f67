"""The Keras "Working with RNNs" guide, its code run with only the imports changed.

Its sections here: Sequential models with Embedding/LSTM/GRU/SimpleRNN, the encoder-decoder whose decoder starts
from the encoder's states (functional API), cross-batch statefulness and state reuse, Bidirectional, and the
LSTM vs RNN(LSTMCell) model with BatchNormalization trained on MNIST-shaped data (random arrays here: no download).
Its custom NestedCell section needs a hand-written backward in rnnlab (no autodiff): docs/cells.md and
tests/test_cells.py carry that cell, written as an rnnlab ``Cell``.
"""
import numpy as np

import rnnlab as keras
from rnnlab import layers


def test_working_with_rnns_guide_runs_unchanged(capsys):

    model = keras.Sequential()
    model.add(layers.Embedding(input_dim=1000, output_dim=64))
    model.add(layers.LSTM(128))
    model.add(layers.Dense(10))
    model.summary()

    model = keras.Sequential()
    model.add(layers.Embedding(input_dim=1000, output_dim=64))
    model.add(layers.GRU(256, return_sequences=True))
    model.add(layers.SimpleRNN(128))
    model.add(layers.Dense(10))
    model.summary()

    encoder_vocab, decoder_vocab = 1000, 2000
    encoder_input = layers.Input(shape=(None,))
    encoder_embedded = layers.Embedding(input_dim=encoder_vocab, output_dim=64)(encoder_input)
    output, state_h, state_c = layers.LSTM(64, return_state=True, name="encoder")(encoder_embedded)
    encoder_state = [state_h, state_c]
    decoder_input = layers.Input(shape=(None,))
    decoder_embedded = layers.Embedding(input_dim=decoder_vocab, output_dim=64)(decoder_input)
    decoder_output = layers.LSTM(64, name="decoder")(decoder_embedded, initial_state=encoder_state)
    output = layers.Dense(10)(decoder_output)
    model = keras.Model([encoder_input, decoder_input], output)
    model.summary()

    paragraph1 = np.random.random((20, 10, 50)).astype(np.float32)
    paragraph2 = np.random.random((20, 10, 50)).astype(np.float32)
    paragraph3 = np.random.random((20, 10, 50)).astype(np.float32)
    lstm_layer = layers.LSTM(64, stateful=True)
    output = lstm_layer(paragraph1)
    output = lstm_layer(paragraph2)
    output = lstm_layer(paragraph3)
    lstm_layer.reset_states()

    lstm_layer = layers.LSTM(64, stateful=True)
    output = lstm_layer(paragraph1)
    output = lstm_layer(paragraph2)
    existing_state = lstm_layer.states
    new_lstm_layer = layers.LSTM(64)
    new_output = new_lstm_layer(paragraph3, initial_state=existing_state)

    model = keras.Sequential()
    model.add(keras.Input(shape=(5, 10)))
    model.add(layers.Bidirectional(layers.LSTM(64, return_sequences=True)))
    model.add(layers.Bidirectional(layers.LSTM(32)))
    model.add(layers.Dense(10))
    model.summary()

    batch_size, input_dim, units, output_size = 64, 28, 64, 10
    def build_model(allow_cudnn_kernel=True):
        if allow_cudnn_kernel:
            lstm_layer = keras.layers.LSTM(units, input_shape=(None, input_dim))
        else:
            lstm_layer = keras.layers.RNN(keras.layers.LSTMCell(units), input_shape=(None, input_dim))
        model = keras.models.Sequential([lstm_layer, keras.layers.BatchNormalization(), keras.layers.Dense(output_size)])
        return model
    x_train = np.random.rand(128, 28, 28).astype("float32"); y_train = np.random.randint(0, 10, 128)
    x_test, y_test = x_train[:64], y_train[:64]
    model = build_model(allow_cudnn_kernel=True)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), optimizer="sgd", metrics=["accuracy"])
    model.fit(x_train, y_train, validation_data=(x_test, y_test), batch_size=batch_size, epochs=1)
    noncudnn_model = build_model(allow_cudnn_kernel=False)
    noncudnn_model.set_weights(model.get_weights())
    noncudnn_model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), optimizer="sgd", metrics=["accuracy"])
    noncudnn_model.fit(x_train, y_train, validation_data=(x_test, y_test), batch_size=batch_size, epochs=1)
    sample, sample_label = x_test[0], y_test[0]
    result = model.predict(keras.ops.expand_dims(sample, 0))
    result = keras.ops.argmax(result, axis=1)
    assert np.asarray(result).shape == (1,) and 0 <= int(np.asarray(result)[0]) < 10

    # the guide's point: the LSTM layer and RNN(LSTMCell) compute the same function from the same weights
    twin = build_model(allow_cudnn_kernel=False)
    twin.set_weights(model.get_weights())
    np.testing.assert_allclose(twin.predict(x_test[:8]), model.predict(x_test[:8]), rtol=1e-5, atol=1e-6)
    # state reuse: the new layer started from the stateful layer's states, not from zeros
    assert not np.allclose(new_output, layers.LSTM(64, weights=new_lstm_layer.get_weights())(paragraph3))
    out = capsys.readouterr().out
    assert "Total params" in out and "Epoch 1/1" in out


def test_recurrent_seed_fixes_the_dropout_masks():
    """Keras 3's ``seed=`` on LSTM/GRU/SimpleRNN: the same seed gives the same dropout masks, another seed others."""
    x = np.random.default_rng(0).standard_normal((4, 6, 5)).astype("float32")
    for cls in (layers.LSTM, layers.GRU, layers.SimpleRNN):
        def run(seed):
            layer = cls(3, dropout=0.5, recurrent_dropout=0.3, seed=seed, kernel_initializer="ones",
                        recurrent_initializer="ones")
            return layer(x, training=True), layer
        a, la = run(7)
        b, _ = run(7)
        c, _ = run(8)
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c)
        cfg = la.get_config()
        assert cfg["seed"] == 7 and cls.from_config(cfg).seed == 7
    try:
        layers.LSTM(3, seed="7")
    except TypeError as e:
        assert "seed must be an int or None" in str(e)
    else:
        raise AssertionError("a string seed was accepted")
