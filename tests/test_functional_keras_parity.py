"""Functional models built with the same code in Keras 3 (torch backend) and rnnlab, weights copied layer by
layer: the same outputs, and the same weights after one SGD step, in float64."""
import types

import numpy as np
import pytest

import rnnlab
from rnnlab.testing import rel_error

keras = pytest.importorskip("keras")

RN = types.SimpleNamespace(Input=rnnlab.Input, Model=rnnlab.Model, layers=rnnlab.layers)
TOL = 1e-7


@pytest.fixture(autouse=True)
def _float64():
    # Keras caches its global dtype policy from floatx the first time a layer is made: pin it to float64 too
    old_policy = keras.config.dtype_policy()
    rnnlab.set_floatx("float64")
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy(old_policy)
    keras.config.set_floatx("float32")
    rnnlab.set_floatx("float32")


def _np(a):
    if isinstance(a, dict):
        return {k: _np(v) for k, v in a.items()}
    if isinstance(a, (list, tuple)):
        return [_np(v) for v in a]
    return np.asarray(keras.ops.convert_to_numpy(a), dtype=np.float64)


def _copy_weights(km, rm):
    kinds = [type(l).__name__ for l in km.layers]
    assert [type(l).__name__ for l in rm.layers] == kinds, "model.layers must list the layers in Keras' order"
    for kl, rl in zip(km.layers, rm.layers):
        kw = kl.get_weights()
        if kw:
            rl.set_weights(kw)


def _assert_close(a, b, tol=TOL):
    a, b = _np(a), _np(b)
    if isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_close(x, y, tol)
        return
    assert a.shape == b.shape, (a.shape, b.shape)
    assert rel_error(a, b) < tol, rel_error(a, b)


def _parity(build, xs, ys, loss, rtol=TOL):
    km, rm = build(keras), build(RN)
    assert all(w.dtype == np.float64 for w in km.get_weights() + rm.get_weights())
    _copy_weights(km, rm)
    _assert_close(rm.predict(xs, batch_size=len(_first(xs))), km.predict(xs, batch_size=len(_first(xs)), verbose=0))
    w0 = km.get_weights()
    km.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss)
    rm.compile(optimizer=rnnlab.optimizers.SGD(0.5), loss=loss)
    kl = km.train_on_batch(xs, ys)
    rl = rm.train_on_batch(xs, ys)
    kl = kl[0] if isinstance(kl, list) else kl
    rl = rl[0] if isinstance(rl, list) else rl
    assert abs(float(kl) - float(rl)) < 1e-7 * max(1.0, abs(float(kl)))
    kw, rw = km.get_weights(), rm.get_weights()
    assert len(kw) == len(rw)
    # the step moved every weight (guards against comparing two no-op steps)
    assert all(rel_error(w, b) > 1e-6 for w, b in zip(rw, w0))
    for a, b in zip(rw, kw):
        _assert_close(a, b, rtol)
    return km, rm


def _first(xs):
    return xs[0] if isinstance(xs, list) else xs


def test_two_inputs_concatenate_shared_dense():
    def build(K):
        a, b = K.Input((4,)), K.Input((4,))
        shared = K.layers.Dense(3, activation="tanh")
        merged = K.layers.Concatenate()([shared(a), shared(b)])
        return K.Model([a, b], K.layers.Dense(2, activation="softmax")(merged))

    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((6, 4)), rng.standard_normal((6, 4))]
    y = np.eye(2)[rng.integers(0, 2, 6)]
    _parity(build, xs, y, "categorical_crossentropy")


def _lstm_seq2seq(K, n_in=5, n_out=6, latent=4):
    """The keras-io lstm_seq2seq training model, with only the imports changed."""
    encoder_inputs = K.Input(shape=(None, n_in))
    encoder = K.layers.LSTM(latent, return_state=True)
    encoder_outputs, state_h, state_c = encoder(encoder_inputs)
    encoder_states = [state_h, state_c]
    decoder_inputs = K.Input(shape=(None, n_out))
    decoder_lstm = K.layers.LSTM(latent, return_sequences=True, return_state=True)
    decoder_outputs, _, _ = decoder_lstm(decoder_inputs, initial_state=encoder_states)
    decoder_dense = K.layers.Dense(n_out, activation="softmax")
    decoder_outputs = decoder_dense(decoder_outputs)
    return K.Model([encoder_inputs, decoder_inputs], decoder_outputs)


def _lstm_seq2seq_inference(K, model, latent=4):
    """The keras-io lstm_seq2seq inference models, rebuilt from the trained model's layers."""
    encoder_inputs = model.input[0]
    encoder_outputs, state_h_enc, state_c_enc = model.layers[2].output
    encoder_states = [state_h_enc, state_c_enc]
    encoder_model = K.Model(encoder_inputs, encoder_states)
    decoder_inputs = model.input[1]
    decoder_state_input_h = K.Input(shape=(latent,))
    decoder_state_input_c = K.Input(shape=(latent,))
    decoder_states_inputs = [decoder_state_input_h, decoder_state_input_c]
    decoder_lstm = model.layers[3]
    decoder_outputs, state_h_dec, state_c_dec = decoder_lstm(decoder_inputs, initial_state=decoder_states_inputs)
    decoder_states = [state_h_dec, state_c_dec]
    decoder_dense = model.layers[4]
    decoder_outputs = decoder_dense(decoder_outputs)
    decoder_model = K.Model([decoder_inputs] + decoder_states_inputs, [decoder_outputs] + decoder_states)
    return encoder_model, decoder_model


def test_lstm_seq2seq_training_and_inference_models():
    rng = np.random.default_rng(1)
    enc = np.eye(5)[rng.integers(0, 5, (3, 7))]
    dec = np.eye(6)[rng.integers(0, 6, (3, 4))]
    target = np.eye(6)[rng.integers(0, 6, (3, 4))]
    km, rm = _parity(_lstm_seq2seq, [enc, dec], target, "categorical_crossentropy")
    k_enc, k_dec = _lstm_seq2seq_inference(keras, km)
    r_enc, r_dec = _lstm_seq2seq_inference(RN, rm)
    ks, rs = k_enc.predict(enc, verbose=0), r_enc.predict(enc)
    _assert_close(rs, ks)
    step = dec[:, :1]
    _assert_close(r_dec.predict([step] + rs), k_dec.predict([step] + ks, verbose=0))
    # the decoder LSTM is shared by the training model and the inference decoder: same weights object
    assert r_dec.layers[-2] is rm.layers[3] or rm.layers[3] in r_dec.layers


def _luong(K, V=11, E=4, U=5, Vt=9):
    src, tgt = K.Input((None,), dtype="int32"), K.Input((None,), dtype="int32")
    enc_seq, h, c = K.layers.LSTM(U, return_sequences=True, return_state=True)(
        K.layers.Embedding(V, E, mask_zero=True)(src))
    dec_seq = K.layers.LSTM(U, return_sequences=True)(K.layers.Embedding(Vt, E)(tgt), initial_state=[h, c])
    context = K.layers.Attention()([dec_seq, enc_seq])
    hidden = K.layers.Dense(U, activation="tanh")(K.layers.Concatenate()([context, dec_seq]))
    return K.Model([src, tgt], K.layers.Dense(Vt, activation="softmax")(hidden))


def test_luong_attention_encoder_decoder():
    rng = np.random.default_rng(2)
    src = rng.integers(1, 11, (4, 6))
    src[0, 4:] = 0
    src[2, 3:] = 0
    tgt = rng.integers(0, 9, (4, 5))
    y = rng.integers(0, 9, (4, 5))
    _parity(_luong, [src, tgt], y, "sparse_categorical_crossentropy")


def test_siamese_embedding_gru():
    def build(K):
        a, b = K.Input((6,), dtype="int32"), K.Input((6,), dtype="int32")
        emb, gru = K.layers.Embedding(13, 4, mask_zero=True), K.layers.GRU(5)
        ea, eb = gru(emb(a)), gru(emb(b))
        merged = K.layers.Concatenate()([K.layers.Subtract()([ea, eb]), K.layers.Multiply()([ea, eb])])
        return K.Model([a, b], K.layers.Dense(1, activation="sigmoid")(merged))

    rng = np.random.default_rng(3)
    a, b = rng.integers(1, 13, (5, 6)), rng.integers(1, 13, (5, 6))
    a[1, 4:] = 0
    b[3, 2:] = 0
    y = rng.integers(0, 2, (5, 1)).astype(float)
    _parity(build, [a, b], y, "binary_crossentropy")


def test_two_outputs_masks_through_bidirectional():
    def build(K):
        x = K.Input((7,), dtype="int32")
        h = K.layers.Bidirectional(K.layers.LSTM(3, return_sequences=True))(
            K.layers.Embedding(10, 4, mask_zero=True)(x))
        tags = K.layers.Dense(4, activation="softmax")(h)
        doc = K.layers.Dense(1, activation="sigmoid")(K.layers.GlobalAveragePooling1D()(h))
        return K.Model(x, [tags, doc])

    rng = np.random.default_rng(4)
    x = rng.integers(1, 10, (5, 7))
    x[0, 5:] = 0
    x[3, 2:] = 0
    ys = [rng.integers(0, 4, (5, 7)), rng.integers(0, 2, (5, 1)).astype(float)]
    _parity(build, x, ys, ["sparse_categorical_crossentropy", "binary_crossentropy"])


def test_merge_layers_match_keras():
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((3, 4, 5)) for _ in range(3)]
    for name in ["Add", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"]:
        _assert_close(getattr(rnnlab.layers, name)()(xs), getattr(keras.layers, name)()(xs))
    _assert_close(rnnlab.layers.Subtract()(xs[:2]), keras.layers.Subtract()(xs[:2]))
    _assert_close(rnnlab.layers.Concatenate(axis=1)(xs), keras.layers.Concatenate(axis=1)(xs))
    b = rng.standard_normal((3, 6, 5))
    for axes, norm in [(2, False), (2, True), ((1, 1), False)]:
        pair = [xs[0], b] if axes == 2 else [xs[0], rng.standard_normal((3, 4, 2))]
        _assert_close(rnnlab.layers.Dot(axes, normalize=norm)(pair), keras.layers.Dot(axes, normalize=norm)(pair))
    v = [rng.standard_normal((3, 5)), rng.standard_normal((3, 5))]
    _assert_close(rnnlab.layers.Dot(1)(v), keras.layers.Dot(1)(v))
    for r, k in [(rnnlab.layers.Reshape((5, 4)), keras.layers.Reshape((5, 4))),
                 (rnnlab.layers.Flatten(), keras.layers.Flatten()),
                 (rnnlab.layers.Permute((2, 1)), keras.layers.Permute((2, 1)))]:
        _assert_close(r(xs[0]), k(xs[0]))


def test_symbolic_shapes_match_keras():
    shapes = {}
    for tag, K in (("k", keras), ("r", RN)):
        x = K.Input((None,), dtype="int32")
        e = K.layers.Embedding(20, 8)(x)
        seq, h, c = K.layers.LSTM(6, return_sequences=True, return_state=True)(e)
        bi = K.layers.Bidirectional(K.layers.GRU(3, return_sequences=True))(seq)
        att = K.layers.Attention()([bi, bi])
        d = K.layers.Dot(axes=2)([bi, att])
        fl = K.layers.Flatten()(K.layers.Permute((2, 1))(K.layers.Reshape((-1, 2))(K.layers.Dense(4)(h))))
        shapes[tag] = [tuple(t.shape) for t in (e, seq, h, c, bi, att, d, fl)]
    assert shapes["k"] == shapes["r"]


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_load_keras_weights_into_functional_model(tmp_path, suffix):
    pytest.importorskip("h5py")

    def build(K):
        a, b = K.Input((5,), dtype="int32"), K.Input((5,), dtype="int32")
        emb, gru = K.layers.Embedding(13, 4, mask_zero=True), K.layers.GRU(5)
        ea, eb = gru(emb(a)), gru(emb(b))
        merged = K.layers.Concatenate()([K.layers.Subtract()([ea, eb]), K.layers.Multiply()([ea, eb])])
        h = K.layers.Bidirectional(K.layers.LSTM(2))(K.layers.RepeatVector(3)(merged))
        return K.Model([a, b], K.layers.Dense(1, activation="sigmoid")(h))

    km = build(keras)
    path = str(tmp_path / f"m{suffix}")
    if suffix == ".keras":
        km.save(path)
    else:
        km.save_weights(path)
    rm = build(RN)
    rm.load_weights(path)
    rng = np.random.default_rng(6)
    x = [rng.integers(1, 13, (3, 5)), rng.integers(1, 13, (3, 5))]
    _assert_close(rm.predict(x), km.predict(x, verbose=0))


def test_functional_model_saved_as_keras_files(tmp_path):
    """model.save('x.keras') / save_weights('x.weights.h5') of a functional model write Keras 3 files."""
    pytest.importorskip("h5py")

    def build(K):
        a, b = K.Input((5,), dtype="int32"), K.Input((5,), dtype="int32")
        emb, gru = K.layers.Embedding(13, 4, mask_zero=True), K.layers.GRU(5)
        ea, eb = gru(emb(a)), gru(emb(b))
        merged = K.layers.Concatenate()([K.layers.Subtract()([ea, eb]), K.layers.Multiply()([ea, eb])])
        return K.Model([a, b], K.layers.Dense(1, activation="sigmoid")(merged))

    rm = build(RN)
    rng = np.random.default_rng(7)
    x = [rng.integers(1, 13, (3, 5)), rng.integers(1, 13, (3, 5))]
    rm.save(str(tmp_path / "m.keras"))
    km = keras.models.load_model(str(tmp_path / "m.keras"))
    _assert_close(rm.predict(x), km.predict(x, verbose=0))
    rm.save_weights(str(tmp_path / "m.weights.h5"))
    km2 = build(keras)
    km2.load_weights(str(tmp_path / "m.weights.h5"))
    _assert_close(rm.predict(x), km2.predict(x, verbose=0))
