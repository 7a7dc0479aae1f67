"""compile / fit / evaluate / predict / *_on_batch of functional models with list and dict data."""
import warnings

import numpy as np
import pytest

import rnnlab
from rnnlab import layers as L


def _two_io(dict_io=True):
    a, b = rnnlab.Input((4,), name="a"), rnnlab.Input((3,), name="b")
    h = L.Dense(8, activation="tanh")(L.Concatenate()([a, b]))
    cls = L.Dense(1, activation="sigmoid", name="cls")(h)
    reg = L.Dense(2, name="reg")(h)
    if dict_io:
        return rnnlab.Model({"a": a, "b": b}, {"cls": cls, "reg": reg})
    return rnnlab.Model([a, b], [cls, reg])


def _data(n=64, seed=0):
    r = np.random.default_rng(seed)
    x = {"a": r.standard_normal((n, 4)), "b": r.standard_normal((n, 3))}
    y = {"cls": (x["a"][:, :1] + x["b"][:, :1] > 0).astype(float), "reg": np.c_[x["a"][:, 1], x["b"][:, 2]]}
    return x, y


def test_fit_dict_io_learns_and_logs_per_output():
    m = _two_io()
    m.compile(rnnlab.optimizers.Adam(0.02), loss={"cls": "binary_crossentropy", "reg": "mse"},
              metrics={"cls": ["accuracy"]}, loss_weights={"cls": 1.0, "reg": 0.5})
    x, y = _data()
    xv, yv = _data(32, seed=1)
    before = m.evaluate(x, y, return_dict=True)
    h = m.fit(x, y, epochs=30, batch_size=16, verbose=0, validation_data=(xv, yv))
    assert set(h.history) == {"loss", "cls_loss", "reg_loss", "cls_accuracy", "val_loss", "val_cls_loss",
                              "val_reg_loss", "val_cls_accuracy"}
    after = m.evaluate(x, y, return_dict=True)
    assert after["loss"] < 0.5 * before["loss"] and after["cls_accuracy"] > 0.9
    np.testing.assert_allclose(after["loss"], after["cls_loss"] + 0.5 * after["reg_loss"], rtol=1e-6)
    pred = m.predict(x, batch_size=10)
    assert set(pred) == {"cls", "reg"} and pred["cls"].shape == (64, 1) and pred["reg"].shape == (64, 2)


def test_list_io_matches_dict_io_and_on_batch_methods():
    rnnlab.set_random_seed(3)
    m1 = _two_io(dict_io=False)
    m2 = _two_io(dict_io=False)
    m2.set_weights(m1.get_weights())
    x, y = _data(20)
    for m in (m1, m2):
        m.compile("sgd", loss=["binary_crossentropy", "mse"])
    l1 = m1.train_on_batch([x["a"], x["b"]], [y["cls"], y["reg"]])
    l2 = m2.train_on_batch({"a": x["a"], "b": x["b"]}, [y["cls"], y["reg"]])
    np.testing.assert_allclose(l1, l2)
    for w1, w2 in zip(m1.get_weights(), m2.get_weights()):
        np.testing.assert_allclose(w1, w2)
    out = m1.predict_on_batch([x["a"], x["b"]])
    assert isinstance(out, list) and len(out) == 2
    t = m1.test_on_batch([x["a"], x["b"]], [y["cls"], y["reg"]], return_dict=True)
    assert set(t) == {"loss", "cls_loss", "reg_loss"}
    logs = m1.train_step(([x["a"], x["b"]], [y["cls"], y["reg"]]))
    assert set(logs) == {"loss", "cls_loss", "reg_loss"}


def test_output_without_loss_is_not_trained_on():
    m = _two_io(dict_io=False)
    m.compile("sgd", loss=["binary_crossentropy", None])
    x, y = _data(16)
    reg_w = [w.copy() for w in m.get_layer("reg").get_weights()]
    m.fit([x["a"], x["b"]], [y["cls"], None], epochs=1, verbose=0)
    for a, b in zip(reg_w, m.get_layer("reg").get_weights()):
        np.testing.assert_array_equal(a, b)


def test_bad_data_messages():
    m = _two_io()
    m.compile("sgd", loss={"cls": "binary_crossentropy", "reg": "mse"})
    x, y = _data(8)
    with pytest.raises(ValueError, match=r"missing input\(s\) \['b'\]"):
        m.fit({"a": x["a"]}, y, verbose=0)
    with pytest.raises(ValueError, match=r"keys \['c'\] name no input"):
        m.fit({"a": x["a"], "b": x["b"], "c": x["b"]}, y, verbose=0)
    with pytest.raises(ValueError, match="x is a list of 3 arrays but model .* has 2 input"):
        m.fit([x["a"], x["b"], x["b"]], y, verbose=0)
    with pytest.raises(ValueError, match="y is a list of 1 arrays but the model has 2 output"):
        m.fit(x, [y["cls"]], verbose=0)
    with pytest.raises(ValueError, match=r"y dict keys \['zzz'\] name no output"):
        m.fit(x, {"cls": y["cls"], "reg": y["reg"], "zzz": y["reg"]}, verbose=0)
    with pytest.raises(ValueError, match="no target for output 'reg'"):
        m.fit(x, {"cls": y["cls"]}, verbose=0)
    with pytest.raises(ValueError, match="same number of samples"):
        m.fit(x, {"cls": y["cls"][:5], "reg": y["reg"]}, verbose=0)
    with pytest.raises(ValueError, match="has 2 inputs"):
        m.predict(x["a"])
    with pytest.raises(ValueError, match=r"loss dict keys \['nope'\] name no output"):
        m.compile("sgd", loss={"nope": "mse"})
    with pytest.raises(ValueError, match="loss is a list of 1"):
        m.compile("sgd", loss=["mse"])
    m2 = _two_io()
    with pytest.raises(RuntimeError, match="compile"):
        m2.fit(x, y)


def test_nan_policy_stops_before_update():
    x = rnnlab.Input((2,))
    m = rnnlab.Model(x, L.Dense(1)(x))
    m.compile(rnnlab.optimizers.SGD(0.1), loss="mse")
    xs = np.ones((8, 2))
    xs[5, 1] = np.nan
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        h = m.fit(xs, np.ones((8, 1)), epochs=5, batch_size=2, verbose=0, shuffle=False)
    assert any("loss is nan at epoch 1, step 3" in str(e.message) for e in w)
    assert "step 3" in h.stop_reason and m.stop_training
    assert all(np.all(np.isfinite(a)) for a in m.get_weights())


def test_masked_per_step_loss_matches_sequential():
    """A per-time-step output behind Embedding(mask_zero) gets the masked loss, as in Sequential."""
    rnnlab.set_random_seed(1)
    x = rnnlab.Input((6,), dtype="int32")
    e = L.Embedding(9, 3, mask_zero=True)
    r = L.SimpleRNN(4, return_sequences=True)
    d = L.Dense(3, activation="softmax")
    fm = rnnlab.Model(x, d(r(e(x))))
    sm = rnnlab.Sequential([rnnlab.Input((6,), dtype="int32"), L.Embedding(9, 3, mask_zero=True),
                            L.SimpleRNN(4, return_sequences=True), L.Dense(3, activation="softmax")])
    sm.set_weights(fm.get_weights())
    ids = np.random.default_rng(0).integers(1, 9, (5, 6))
    ids[0, 3:] = 0
    y = np.random.default_rng(1).integers(0, 3, (5, 6))
    for m in (fm, sm):
        m.compile(rnnlab.optimizers.SGD(0.3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    np.testing.assert_allclose(fm.evaluate(ids, y), sm.evaluate(ids, y), rtol=1e-6)
    fm.train_on_batch(ids, y)
    sm.train_on_batch(ids, y)
    for a, b in zip(fm.get_weights(), sm.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_sequential_is_a_model_and_nests_in_a_functional_graph():
    rng = np.random.default_rng(4)
    seq = rnnlab.Sequential([rnnlab.Input((5, 2)), L.LSTM(3), L.Dense(2, activation="tanh")], name="inner")
    assert isinstance(seq, rnnlab.Model)
    a, b = rnnlab.Input((5, 2)), rnnlab.Input((5, 2))
    out = L.Dense(1)(L.Concatenate()([seq(a), seq(b)]))
    m = rnnlab.Model([a, b], out)
    xa, xb = rng.standard_normal((4, 5, 2)), rng.standard_normal((4, 5, 2))
    ref = m.layers[-1](np.concatenate([seq(xa), seq(xb)], axis=1))
    np.testing.assert_allclose(m.predict([xa, xb]), ref, rtol=1e-5)
    m.compile("sgd", loss="mse")
    before = [w.copy() for w in seq.get_weights()]
    m.fit([xa, xb], rng.standard_normal((4, 1)), epochs=1, verbose=0)
    assert all(np.any(w != v) for w, v in zip(seq.get_weights(), before))


def test_nested_sequential_gradient():
    """A Sequential inside a functional graph, its input also used by another branch (fan-out)."""
    from rnnlab.testing import check_layer_gradients
    rnnlab.set_floatx("float64")  # the autouse fixture of conftest.py restores float32
    rng = np.random.default_rng(5)
    seq = rnnlab.Sequential([rnnlab.Input((4, 2)), L.GRU(3, return_sequences=True), L.Dense(2)])
    x = rnnlab.Input((4, 2))
    m = rnnlab.Model(x, L.Add()([seq(x), L.Dense(2)(x)]))
    check_layer_gradients(m, rng.standard_normal((3, 4, 2)))


def test_class_weight_scales_the_loss_and_names_missing_classes():
    rng = np.random.default_rng(6)
    m = rnnlab.Sequential([rnnlab.Input((3,)), L.Dense(3, activation="softmax")])
    m.compile("sgd", loss="sparse_categorical_crossentropy")
    xs, y = rng.standard_normal((12, 3)), np.array([0, 1, 2] * 4)
    cw = {0: 1.0, 1: 2.0, 2: 0.5}
    w0 = m.get_weights()
    m.fit(xs, y, class_weight=cw, batch_size=12, epochs=1, verbose=0, shuffle=False)
    w_cw = m.get_weights()
    m.set_weights(w0)
    m.fit(xs, y, sample_weight=np.array([cw[c] for c in y]), batch_size=12, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(w_cw, m.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(ValueError, match=r"class_weight names class\(es\) \[7\] that do not occur in y"):
        m.fit(xs, y, class_weight={0: 1.0, 7: 2.0}, verbose=0)
    # a class of y without an entry keeps weight 1 (Keras)
    m.set_weights(w0)
    m.fit(xs, y, class_weight={1: 2.0}, batch_size=12, epochs=1, verbose=0, shuffle=False)
    w_partial = m.get_weights()
    m.set_weights(w0)
    m.fit(xs, y, sample_weight=np.where(y == 1, 2.0, 1.0), batch_size=12, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(w_partial, m.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_compute_gradients_matches_train_step_direction():
    rng = np.random.default_rng(7)
    x = rnnlab.Input((3,))
    d = L.Dense(1)
    m = rnnlab.Model(x, d(x))
    m.compile(rnnlab.optimizers.SGD(0.1), loss="mse")
    xs, ys = rng.standard_normal((8, 3)), rng.standard_normal((8, 1))
    loss = m.compute_gradients(xs, ys)
    g = d.grads["kernel"].copy()
    w = d.params["kernel"].copy()
    logs = m.train_step((xs, ys))
    np.testing.assert_allclose(logs["loss"], loss, rtol=1e-6)
    np.testing.assert_allclose(d.params["kernel"], w - 0.1 * g, rtol=1e-5)


def test_summary_of_a_partly_built_sequential_does_not_crash():
    emb = L.Embedding(100, 8)
    emb.build((1,))                      # the keras-io idiom before set_weights
    m = rnnlab.Sequential([emb, L.LSTM(4), L.Dense(1)])
    lines = []
    m.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "800" in text and "? (unbuilt)" in text and "Total params: 800" in text


def test_nested_sequential_config_round_trip_and_summary():
    seq = rnnlab.Sequential([rnnlab.Input((4, 2)), L.GRU(3), L.Dense(2)], name="enc")
    x = rnnlab.Input((4, 2))
    m = rnnlab.Model(x, L.Dense(1)(seq(x)))
    lines = []
    m.summary(print_fn=lines.append)
    assert any(l.startswith("enc (Sequential)") for l in lines)
    m2 = rnnlab.Model.from_config(m.get_config())
    assert type(m2.layers[1]).__name__ == "Sequential"
    m2.set_weights(m.get_weights())
    xs = np.random.default_rng(8).standard_normal((3, 4, 2))
    np.testing.assert_allclose(m2.predict(xs), m.predict(xs), rtol=1e-6)


def test_unfreezing_a_layer_after_training_trains_it():
    """Fine-tuning: a frozen Embedding is skipped by backward; after trainable=True it gets gradients."""
    rng = np.random.default_rng(9)
    x = rnnlab.Input((5,), dtype="int32")
    emb = L.Embedding(20, 4, trainable=False)
    m = rnnlab.Model(x, L.Dense(1)(L.LSTM(3)(emb(x))))
    m.compile("sgd", loss="mse")
    ids, y = rng.integers(0, 20, (8, 5)), rng.standard_normal((8, 1))
    e0 = emb.get_weights()[0].copy()
    m.fit(ids, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(emb.get_weights()[0], e0)
    emb.trainable = True
    m.fit(ids, y, epochs=1, verbose=0)
    assert np.any(emb.get_weights()[0] != e0)


def test_tbptt_on_a_functional_model_matches_sequential():
    """truncated BPTT (fit(tbptt_steps=k)) runs through the one engine for functional models too."""
    rng = np.random.default_rng(10)
    x_in = rnnlab.Input((None, 2), batch_size=4)
    lstm, dense = L.LSTM(3, stateful=True, return_sequences=True), L.Dense(1)
    fm = rnnlab.Model(x_in, dense(lstm(x_in)))
    sm = rnnlab.Sequential([rnnlab.Input((None, 2), batch_size=4), L.LSTM(3, stateful=True, return_sequences=True),
                            L.Dense(1)])
    sm.set_weights(fm.get_weights())
    xs, ys = rng.standard_normal((8, 9, 2)), rng.standard_normal((8, 9, 1))
    for m in (fm, sm):
        m.compile(rnnlab.optimizers.SGD(0.1), loss="mse")
    hf = fm.fit(xs, ys, batch_size=4, epochs=2, tbptt_steps=(3, 4), shuffle=False, verbose=0)
    hs = sm.fit(xs, ys, batch_size=4, epochs=2, tbptt_steps=(3, 4), shuffle=False, verbose=0)
    np.testing.assert_allclose(hf.history["loss"], hs.history["loss"], rtol=1e-5)
    for a, b in zip(fm.get_weights(), sm.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_mask_reaches_a_nested_sequential():
    x = rnnlab.Input((5,), dtype="int32")
    emb = L.Embedding(10, 3, mask_zero=True)
    seq = rnnlab.Sequential([rnnlab.Input((5, 3)), L.GRU(4)])
    m = rnnlab.Model(x, seq(emb(x)))
    ids = np.array([[1, 2, 0, 0, 0]])
    # masked steps are skipped: the same output as the two valid steps alone
    np.testing.assert_allclose(m.predict(ids), seq(emb(ids[:, :2])), rtol=1e-5)
