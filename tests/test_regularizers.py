"""Regularizers and constraints (rnnlab.regularizers, rnnlab.constraints) against Keras 3 (torch backend)."""
import numpy as np
import pytest

import rnnlab
from rnnlab import constraints, regularizers
from rnnlab.layers import LSTM, GRU, SimpleRNN, Dense, Embedding, RNN, LSTMCell

keras = pytest.importorskip("keras")

REGS = ["l1", "l2", {"class_name": "L1L2", "config": {"l1": 0.02, "l2": 0.03}}]


@pytest.fixture
def float64_keras():
    old = keras.config.floatx()
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx(old)


def _kreg(reg):
    return keras.regularizers.L1L2(**reg["config"]) if isinstance(reg, dict) else keras.regularizers.get(reg)


def _models(kind, reg):
    kr = _kreg(reg)
    kw = dict(kernel_regularizer=reg, bias_regularizer=reg, activity_regularizer=reg)
    kkw = dict(kernel_regularizer=kr, bias_regularizer=kr, activity_regularizer=kr)
    if kind == "lstm":
        k_first = keras.layers.LSTM(4, recurrent_regularizer=kr, **kkw)
        r_first = LSTM(4, recurrent_regularizer=reg, input_shape=(5, 3), dtype="float64", **kw)
        shape = (5, 3)
    else:
        k_first = keras.layers.Dense(4, activation="tanh", **kkw)
        r_first = Dense(4, activation="tanh", input_shape=(3,), dtype="float64", **kw)
        shape = (3,)
    km = keras.Sequential([keras.Input(shape), k_first, keras.layers.Dense(2, kernel_regularizer=kr)])
    rm = rnnlab.Sequential([r_first, Dense(2, kernel_regularizer=reg, dtype="float64")])
    km.compile(keras.optimizers.SGD(0.25), "mse")
    rm.compile(rnnlab.optimizers.SGD(0.25), "mse")
    rm.set_weights(km.get_weights())
    return km, rm, shape


@pytest.mark.parametrize("kind", ["dense", "lstm"])
@pytest.mark.parametrize("reg", REGS, ids=["l1", "l2", "l1l2"])
def test_train_step_matches_keras(float64_keras, kind, reg):
    km, rm, shape = _models(kind, reg)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6,) + shape), rng.normal(size=(6, 2))
    # Keras' float64 objective: the compiled loss plus sum(model.losses) of a training forward
    out = km(x, training=True)
    k_loss = float(np.mean((np.asarray(out.detach()) - y) ** 2)) + sum(float(l) for l in km.losses)
    assert len(km.losses) == (5 if kind == "lstm" else 4)
    lk = km.train_on_batch(x, y)
    lr = rm.train_on_batch(x, y)
    assert abs(lr - k_loss) < 1e-7
    assert lr == pytest.approx(lk, rel=1e-6)  # Keras reports its loss through a float32 metric
    assert lr > float(np.mean((np.asarray(out.detach()) - y) ** 2)) + 1e-3  # the penalty is in the loss
    for a, b in zip(km.get_weights(), rm.get_weights()):
        np.testing.assert_allclose(b, a, atol=1e-7, rtol=0)


def test_constraints_in_training_match_keras(float64_keras):
    kc = dict(kernel_constraint=keras.constraints.MaxNorm(0.3), recurrent_constraint=keras.constraints.UnitNorm(1),
              bias_constraint=keras.constraints.NonNeg())
    rc = dict(kernel_constraint=constraints.MaxNorm(0.3), recurrent_constraint="unit_norm",
              bias_constraint="non_neg")
    rc["recurrent_constraint"] = constraints.UnitNorm(axis=1)
    km = keras.Sequential([keras.Input((5, 3)), keras.layers.GRU(4, **kc),
                           keras.layers.Dense(2, kernel_constraint=keras.constraints.MinMaxNorm(0.1, 0.4, 0.5))])
    rm = rnnlab.Sequential([GRU(4, input_shape=(5, 3), dtype="float64", **rc),
                            Dense(2, dtype="float64", kernel_constraint=constraints.MinMaxNorm(0.1, 0.4, 0.5))])
    km.compile(keras.optimizers.SGD(0.25), "mse")
    rm.compile(rnnlab.optimizers.SGD(0.25), "mse")
    rm.set_weights(km.get_weights())
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(6, 5, 3)), rng.normal(size=(6, 2))
    for _ in range(2):
        km.train_on_batch(x, y)
        rm.train_on_batch(x, y)
    for a, b in zip(km.get_weights(), rm.get_weights()):
        np.testing.assert_allclose(b, a, atol=1e-7, rtol=0)
    assert np.all(rm.layers[0].params["bias"] >= 0)
    assert np.all(np.linalg.norm(rm.layers[0].params["kernel"], axis=0) <= 0.3 + 1e-12)


@pytest.mark.parametrize("make", [
    lambda: (constraints.MaxNorm(), "MaxNorm", {}), lambda: (constraints.MaxNorm(0.7, axis=1), "MaxNorm",
                                                            {"max_value": 0.7, "axis": 1}),
    lambda: (constraints.NonNeg(), "NonNeg", {}), lambda: (constraints.UnitNorm(), "UnitNorm", {}),
    lambda: (constraints.UnitNorm(axis=1), "UnitNorm", {"axis": 1}),
    lambda: (constraints.MinMaxNorm(), "MinMaxNorm", {}),
    lambda: (constraints.MinMaxNorm(0.5, 1.5, 0.3, axis=1), "MinMaxNorm",
             {"min_value": 0.5, "max_value": 1.5, "rate": 0.3, "axis": 1})])
def test_constraint_formula_matches_keras(float64_keras, make):
    ours, name, cfg = make()
    theirs = getattr(keras.constraints, name)(**cfg)
    # float32-representable values: Keras' NonNeg (ops.maximum(w, 0)) returns float32 under float64 floatx
    w = (np.random.default_rng(3).normal(size=(5, 4)) * 2).astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(ours(w), np.asarray(theirs(keras.ops.convert_to_tensor(w))), atol=1e-12, rtol=0)
    again = constraints.get(constraints.serialize(ours))
    np.testing.assert_array_equal(again(w), ours(w))


@pytest.mark.parametrize("reg", [regularizers.L1(0.3), regularizers.L2(0.2), regularizers.L1L2(0.1, 0.4)])
def test_regularizer_values_match_keras(float64_keras, reg):
    w = np.random.default_rng(4).normal(size=(3, 4))
    k = getattr(keras.regularizers, type(reg).__name__)(**reg.get_config())
    assert reg(w) == pytest.approx(float(k(keras.ops.convert_to_tensor(w))), rel=1e-14)


def _fd_grads(model, x, y):
    """Central finite differences of compute_gradients' total (loss + penalties) w.r.t. every weight."""
    out = []
    for _, owner, wname in model.trainable_weight_refs():
        w = owner.params[wname]
        g = np.zeros_like(w)
        for i in np.ndindex(w.shape):
            old = w[i]
            w[i] = old + 1e-6
            lp = model.compute_gradients(x, y, training=True)
            w[i] = old - 1e-6
            lm = model.compute_gradients(x, y, training=True)
            w[i] = old
            g[i] = (lp - lm) / 2e-6
        out.append(g)
    return out


def test_penalty_gradient_finite_differences():
    rnnlab.set_random_seed(5)
    reg = regularizers.L1L2(0.05, 0.07)
    m = rnnlab.Sequential([SimpleRNN(3, kernel_regularizer=reg, recurrent_regularizer="l2", bias_regularizer="l1",
                                     activity_regularizer=regularizers.L2(0.3), input_shape=(4, 2), dtype="float64",
                                     bias_initializer="ones"),
                           Dense(2, kernel_regularizer="l1", activity_regularizer="l1", dtype="float64")])
    m.compile("sgd", "mse")
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(3, 4, 2)), rng.normal(size=(3, 2))
    m.compute_gradients(x, y, training=True)
    analytic = [owner.grads[w].copy() for _, owner, w in m.trainable_weight_refs()]
    for a, n in zip(analytic, _fd_grads(m, x, y)):
        np.testing.assert_allclose(a, n, atol=1e-7, rtol=1e-6)
    plain = rnnlab.Sequential([SimpleRNN(3, input_shape=(4, 2), dtype="float64"), Dense(2, dtype="float64")])
    plain.compile("sgd", "mse")
    plain.set_weights(m.get_weights())
    assert m.compute_gradients(x, y) > plain.compute_gradients(x, y) + 0.01


def test_cell_and_embedding_regularizers(float64_keras):
    cell = LSTMCell(3, kernel_regularizer="l2", recurrent_constraint="non_neg", dtype="float64")
    layer = RNN(cell, input_shape=(4, 2), dtype="float64")
    m = rnnlab.Sequential([Embedding(7, 2, embeddings_regularizer="l1", input_length=4, dtype="float64")])
    m2 = rnnlab.Sequential([layer, Dense(1, dtype="float64")])
    m2.compile("sgd", "mse")
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 4, 2))
    m2.train_on_batch(x, np.zeros((2, 1)))
    assert np.all(cell.params["recurrent_kernel"] >= 0)
    assert cell.weight_regularizer("kernel") == regularizers.L2()
    km = keras.Sequential([keras.Input((4,), dtype="int64"),
                           keras.layers.Embedding(7, 2, embeddings_regularizer="l1")])
    km.compile(keras.optimizers.SGD(0.5), "mse")
    m.compile(rnnlab.optimizers.SGD(0.5), "mse")
    m.set_weights(km.get_weights())
    ids, t = np.array([[1, 2, 3, 0], [4, 5, 6, 1]]), rng.normal(size=(2, 4, 2))
    km.train_on_batch(ids, t)
    m.train_on_batch(ids, t)
    np.testing.assert_allclose(m.get_weights()[0], km.get_weights()[0], atol=1e-7, rtol=0)
    for cls in (GRU, SimpleRNN, LSTM):
        lay = cls(2, kernel_regularizer="l1", recurrent_regularizer="l2", bias_constraint="non_neg")
        cfg = lay.get_config()
        assert cfg["kernel_regularizer"] == {"class_name": "L1", "config": {"l1": 0.01}}
        back = cls.from_config(cfg)
        assert back.recurrent_regularizer == regularizers.L2() and isinstance(back.bias_constraint,
                                                                               constraints.NonNeg)


def test_config_and_saving_round_trip(tmp_path):
    assert regularizers.get("l1") == regularizers.L1(0.01)
    assert regularizers.get("l2").get_config() == {"l2": 0.01}
    assert regularizers.get("l1_l2").get_config() == {"l1": 0.0, "l2": 0.0}
    r = regularizers.L1L2(0.1, 0.2)
    assert regularizers.get(regularizers.serialize(r)) == r
    rnnlab.set_random_seed(8)
    m = rnnlab.Sequential([LSTM(3, kernel_regularizer=r, recurrent_constraint=constraints.MaxNorm(1.5),
                                activity_regularizer="l2", input_shape=(4, 2)), Dense(1, bias_regularizer="l1")])
    m.compile("sgd", "mse")
    x, y = np.random.default_rng(9).normal(size=(2, 4, 2)), np.ones((2, 1))
    path = tmp_path / "m.npz"  # rnnlab's own format (the .keras writer does not carry regularizers yet)
    m.save(str(path))
    back = rnnlab.load_model(str(path))
    lay = back.layers[0]
    assert lay.kernel_regularizer == r and lay.activity_regularizer == regularizers.L2()
    assert lay.recurrent_constraint.get_config() == {"max_value": 1.5, "axis": 0}
    assert back.layers[1].bias_regularizer == regularizers.L1()
    assert back.compute_gradients(x, y) == pytest.approx(m.compute_gradients(x, y), rel=1e-6)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="unknown regularizer 'l3'"):
        Dense(2, kernel_regularizer="l3")
    with pytest.raises(ValueError, match="l2.*non-negative"):
        regularizers.L2(-0.1)
    with pytest.raises(ValueError, match="l1.*non-negative"):
        regularizers.L1L2(l1=float("nan"))
    with pytest.raises(TypeError, match="kernel_regularizer"):
        Dense(2, kernel_regularizer=3)
    with pytest.raises(ValueError, match="unknown constraint 'positive'"):
        LSTM(2, bias_constraint="positive")
    with pytest.raises(ValueError, match="unknown regularizer class 'Ortho'"):
        regularizers.get({"class_name": "Ortho", "config": {}})


def test_evaluate_includes_penalties_as_keras(float64_keras):
    km, rm, shape = _models("lstm", "l2")
    rng = np.random.default_rng(10)
    x, y = rng.normal(size=(8,) + shape), rng.normal(size=(8, 2))
    ke = km.evaluate(x, y, batch_size=4, verbose=0)
    re = rm.evaluate(x, y, batch_size=4)
    assert re == pytest.approx(ke, rel=1e-6)  # Keras reports through a float32 metric
    out = km(x, training=False)
    k64 = float(np.mean((np.asarray(out.detach()) - y) ** 2)) + sum(float(l) for l in km.losses)
    # one batch of 8 vs two of 4: the activity penalty is a per-batch mean, so use batch_size=8 for float64
    assert rm.evaluate(x, y, batch_size=8) == pytest.approx(k64, abs=1e-7)


def test_early_stop_leaves_no_stale_activity_outputs():
    m = rnnlab.Sequential([Dense(2, activity_regularizer="l2", input_shape=(3,), dtype="float64")])
    m.compile("sgd", "mse")
    x = np.ones((2, 3))
    with pytest.raises(Exception):
        m.train_on_batch(3 * x, np.full((2, 2), np.nan))  # non-finite loss: stops before backward
    from rnnlab.layers.base import _ACTIVITY_LOSSES
    assert _ACTIVITY_LOSSES.get() is None  # the step's tape (and the outputs it kept) is gone
    m.compute_gradients(x, np.zeros((2, 2)))
    g = m.layers[0].grads["kernel"].copy()
    out = m.predict(x)
    # dL/dy = 2 (y - 0) / (B*units) + 2 * 0.01 * y / B, then through the Dense kernel: x^T dL/dy
    dy = 2 * out / out.size + 2 * 0.01 * out / 2
    np.testing.assert_allclose(g, x.T @ dy, rtol=1e-12)


def test_conv1d_regularizer_and_constraint_match_keras(float64_keras):
    kl = keras.layers.Conv1D(3, 2, kernel_regularizer=keras.regularizers.L1L2(0.01, 0.02),
                             bias_regularizer="l2", kernel_constraint=keras.constraints.MaxNorm(0.4, axis=[0, 1]))
    km = keras.Sequential([keras.Input((6, 2)), kl, keras.layers.GlobalAveragePooling1D()])
    rm = rnnlab.Sequential([rnnlab.layers.Conv1D(3, 2, kernel_regularizer=regularizers.L1L2(0.01, 0.02),
                                                 bias_regularizer="l2", input_shape=(6, 2), dtype="float64",
                                                 kernel_constraint=constraints.MaxNorm(0.4, axis=[0, 1])),
                            rnnlab.layers.GlobalAveragePooling1D()])
    km.compile(keras.optimizers.SGD(0.25), "mse")
    rm.compile(rnnlab.optimizers.SGD(0.25), "mse")
    rm.set_weights(km.get_weights())
    rng = np.random.default_rng(11)
    x, y = rng.normal(size=(4, 6, 2)), rng.normal(size=(4, 3))
    assert rm.train_on_batch(x, y) == pytest.approx(km.train_on_batch(x, y), rel=1e-6)
    for a, b in zip(km.get_weights(), rm.get_weights()):
        np.testing.assert_allclose(b, a, atol=1e-7, rtol=0)
