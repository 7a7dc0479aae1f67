"""The functional keras-io examples run with only the imports changed (``import rnnlab as keras``), on small
synthetic data of the same shapes: bidirectional_lstm_imdb, lstm_seq2seq (training, inference models rebuilt
from the trained layers, greedy decoding), timeseries_weather_forecasting's model."""
import os

import numpy as np

import rnnlab as keras
from rnnlab import layers


def test_bidirectional_lstm_imdb():
    max_features = 20000
    maxlen = 20
    # --- keras-io code (model and training), imports changed
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(max_features, 128)(inputs)
    x = layers.Bidirectional(layers.LSTM(64, return_sequences=True))(x)
    x = layers.Bidirectional(layers.LSTM(64))(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    lines = []
    model.summary(print_fn=lines.append)
    # --- synthetic data of the example's shapes
    rng = np.random.default_rng(0)
    x_train = rng.integers(1, max_features, (64, maxlen))
    y_train = rng.integers(0, 2, 64)
    x_val = rng.integers(1, max_features, (16, maxlen))
    y_val = rng.integers(0, 2, 16)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=32, epochs=2, validation_data=(x_val, y_val), verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    # Keras' parameter count of this model: 2,560,000 + 98,816 + 98,816 + 129
    assert any("Total params: 2,757,761" in l for l in lines)


def test_lstm_seq2seq_train_infer_decode():
    rng = np.random.default_rng(1)
    input_characters = sorted(set("abcdefg "))
    target_characters = sorted(set("\t\nxyzw "))
    num_encoder_tokens, num_decoder_tokens = len(input_characters), len(target_characters)
    max_encoder_seq_length, max_decoder_seq_length = 6, 5
    input_token_index = dict([(char, i) for i, char in enumerate(input_characters)])
    target_token_index = dict([(char, i) for i, char in enumerate(target_characters)])
    n = 40
    encoder_input_data = np.zeros((n, max_encoder_seq_length, num_encoder_tokens), dtype="float32")
    decoder_input_data = np.zeros((n, max_decoder_seq_length, num_decoder_tokens), dtype="float32")
    decoder_target_data = np.zeros((n, max_decoder_seq_length, num_decoder_tokens), dtype="float32")
    encoder_input_data[np.arange(n)[:, None], np.arange(max_encoder_seq_length),
                       rng.integers(0, num_encoder_tokens, (n, max_encoder_seq_length))] = 1.0
    dec = rng.integers(0, num_decoder_tokens, (n, max_decoder_seq_length))
    decoder_input_data[np.arange(n)[:, None], np.arange(max_decoder_seq_length), dec] = 1.0
    decoder_target_data[:, :-1] = decoder_input_data[:, 1:]
    decoder_target_data[:, -1, target_token_index[" "]] = 1.0
    latent_dim = 16
    batch_size, epochs = 16, 2

    # --- keras-io code, imports changed
    encoder_inputs = keras.Input(shape=(None, num_encoder_tokens))
    encoder = keras.layers.LSTM(latent_dim, return_state=True)
    encoder_outputs, state_h, state_c = encoder(encoder_inputs)
    encoder_states = [state_h, state_c]
    decoder_inputs = keras.Input(shape=(None, num_decoder_tokens))
    decoder_lstm = keras.layers.LSTM(latent_dim, return_sequences=True, return_state=True)
    decoder_outputs, _, _ = decoder_lstm(decoder_inputs, initial_state=encoder_states)
    decoder_dense = keras.layers.Dense(num_decoder_tokens, activation="softmax")
    decoder_outputs = decoder_dense(decoder_outputs)
    model = keras.Model([encoder_inputs, decoder_inputs], decoder_outputs)
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit([encoder_input_data, decoder_input_data], decoder_target_data, batch_size=batch_size, epochs=epochs,
              validation_split=0.2, verbose=0)

    encoder_inputs = model.input[0]  # input_1
    encoder_outputs, state_h_enc, state_c_enc = model.layers[2].output  # lstm_1
    encoder_states = [state_h_enc, state_c_enc]
    encoder_model = keras.Model(encoder_inputs, encoder_states)
    decoder_inputs = model.input[1]  # input_2
    decoder_state_input_h = keras.Input(shape=(latent_dim,))
    decoder_state_input_c = keras.Input(shape=(latent_dim,))
    decoder_states_inputs = [decoder_state_input_h, decoder_state_input_c]
    decoder_lstm = model.layers[3]
    decoder_outputs, state_h_dec, state_c_dec = decoder_lstm(decoder_inputs, initial_state=decoder_states_inputs)
    decoder_states = [state_h_dec, state_c_dec]
    decoder_dense = model.layers[4]
    decoder_outputs = decoder_dense(decoder_outputs)
    decoder_model = keras.Model([decoder_inputs] + decoder_states_inputs, [decoder_outputs] + decoder_states)
    reverse_target_char_index = dict((i, char) for char, i in target_token_index.items())

    def decode_sequence(input_seq):
        states_value = encoder_model.predict(input_seq, verbose=0)
        target_seq = np.zeros((1, 1, num_decoder_tokens))
        target_seq[0, 0, target_token_index["\t"]] = 1.0
        stop_condition = False
        decoded_sentence = ""
        while not stop_condition:
            output_tokens, h, c = decoder_model.predict([target_seq] + states_value, verbose=0)
            sampled_token_index = np.argmax(output_tokens[0, -1, :])
            sampled_char = reverse_target_char_index[sampled_token_index]
            decoded_sentence += sampled_char
            if sampled_char == "\n" or len(decoded_sentence) > max_decoder_seq_length:
                stop_condition = True
            target_seq = np.zeros((1, 1, num_decoder_tokens))
            target_seq[0, 0, sampled_token_index] = 1.0
            states_value = [h, c]
        return decoded_sentence

    decoded = decode_sequence(encoder_input_data[0:1])
    assert 1 <= len(decoded) <= max_decoder_seq_length + 1 and set(decoded) <= set(target_characters)
    # the inference models share the trained layers: the decoder reproduces the training model's first step
    h, c = encoder_model.predict(encoder_input_data[:3], verbose=0)
    step = decoder_model.predict([decoder_input_data[:3, :1], h, c], verbose=0)[0]
    np.testing.assert_allclose(step[:, 0], model.predict([encoder_input_data[:3], decoder_input_data[:3, :1]])[:, 0],
                               rtol=1e-5)
    assert len(input_token_index) == num_encoder_tokens


def test_timeseries_weather_forecasting_model(tmp_path):
    rng = np.random.default_rng(2)
    past, features = 12, 7
    t = rng.standard_normal((96, past, features)).astype("float32")
    y = t[:, -1, :1] * 0.5 + 0.1
    learning_rate = 0.001
    epochs = 3
    path_checkpoint = os.path.join(tmp_path, "model_checkpoint.weights.h5")
    # --- keras-io code, imports changed (tf.data datasets replaced by the arrays they yield)
    inputs = keras.layers.Input(shape=(t.shape[1], t.shape[2]))
    lstm_out = keras.layers.LSTM(32)(inputs)
    outputs = keras.layers.Dense(1)(lstm_out)
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="mse")
    lines = []
    model.summary(print_fn=lines.append)
    es_callback = keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=0, patience=5)
    modelckpt_callback = keras.callbacks.ModelCheckpoint(monitor="val_loss", filepath=path_checkpoint, verbose=0,
                                                         save_weights_only=True, save_best_only=True)
    history = model.fit(t[:64], y[:64], epochs=epochs, validation_data=(t[64:], y[64:]),
                        callbacks=[es_callback, modelckpt_callback], verbose=0)
    assert len(history.history["val_loss"]) == epochs
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert os.path.exists(path_checkpoint)
    # 4 * 32 * (7 + 32 + 1) + 33 = 5,153 (Keras' count)
    assert any("Total params: 5,153" in l for l in lines)
