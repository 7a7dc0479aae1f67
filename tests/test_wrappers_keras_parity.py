"""Parity with Keras 3 (torch backend, float64) for Bidirectional, TimeDistributed, Masking, RepeatVector and whole
masked Sequential stacks: rnnlab loaded with exactly what Keras' get_weights() returns gives the same outputs and
return_state states (1e-6 relative; Keras itself agrees with a float64 NumPy loop to about 2e-8)."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")

import rnnlab  # noqa: E402
from rnnlab.layers import (GRU, LSTM, Bidirectional, Dense, Embedding, Masking, RepeatVector, SimpleRNN,  # noqa: E402
                           TimeDistributed)
from rnnlab.testing import rel_error  # noqa: E402

TOL = 1e-6
B, T, D, U = 4, 6, 3, 2
CELLS = {"SimpleRNN": (SimpleRNN, {}), "LSTM": (LSTM, {}), "GRU": (GRU, {}),
         "GRU_reset_before": (GRU, {"reset_after": False})}
MODES = ["concat", "sum", "mul", "ave", None]


def _np(a):
    if isinstance(a, (list, tuple)):
        return [keras.ops.convert_to_numpy(t) for t in a]
    return [keras.ops.convert_to_numpy(a)]


def _x(seed=0):
    return np.random.default_rng(seed).standard_normal((B, T, D))


def _masks():
    right = np.ones((B, T), bool)
    right[0, 4:] = False
    right[1, 1:] = False
    right[2, :] = False                  # a fully padded row
    return {"right": right, "left": right[:, ::-1].copy()}


def _pair(name, merge_mode="concat", seed=0, backward=None, **opts):
    cls, kw = CELLS[name]
    kw = dict(kw, **opts)
    kcls = getattr(keras.layers, cls.__name__)
    kback = None if backward is None else getattr(keras.layers, cls.__name__)(U, dtype="float64", **dict(kw, **backward))
    klayer = keras.layers.Bidirectional(kcls(U, dtype="float64", **kw), merge_mode=merge_mode,
                                        backward_layer=kback, dtype="float64")
    x = _x(seed)
    klayer(x)
    rng = np.random.default_rng(seed + 100)
    klayer.set_weights([rng.standard_normal(w.shape) * 0.5 for w in klayer.get_weights()])
    ours = Bidirectional(cls(U, **kw), merge_mode=merge_mode,
                         backward_layer=None if backward is None else cls(U, **dict(kw, **backward)))
    ours(x)
    ours.set_weights(klayer.get_weights())
    return klayer, ours, x


def _compare(got, ref):
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(ref)
    for a, b in zip(got, ref):
        assert np.all(np.isfinite(a))
        assert a.shape == b.shape and rel_error(a, b) < TOL, rel_error(a, b)


# every cell with every merge mode on full outputs (sequences + states); last-output-only with two modes
UNMASKED = ([(n, m, {"return_sequences": True, "return_state": True}) for n in CELLS for m in MODES]
            + [(n, m, {}) for n in CELLS for m in ("concat", "mul")])


@pytest.mark.parametrize("name,merge_mode,opts", UNMASKED)
def test_unmasked_parity(float64, name, merge_mode, opts):
    klayer, ours, x = _pair(name, merge_mode, **opts)
    _compare(ours(x), _np(klayer(x)))


# every cell with concat and None; the arithmetic merge modes with LSTM and GRU (kept quick)
MASKED = [(n, m) for n in CELLS for m in ("concat", None)] + [(n, m) for n in ("LSTM", "GRU") for m in ("sum", "mul", "ave")]


@pytest.mark.parametrize("name,merge_mode", MASKED)
@pytest.mark.parametrize("pad", ["right", "left"])
def test_masked_parity(float64, name, merge_mode, pad):
    """Masked, right- and left-padded batches (one row fully padded): sequences and states agree."""
    klayer, ours, x = _pair(name, merge_mode, seed=1, return_sequences=True, return_state=True)
    mask = _masks()[pad]
    _compare(ours(x, mask=mask), _np(klayer(x, mask=mask)))


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
@pytest.mark.parametrize("pad", ["right", "left"])
def test_masked_last_output_parity(float64, name, pad):
    klayer, ours, x = _pair(name, "concat", seed=2, return_state=True)
    mask = _masks()[pad]
    _compare(ours(x, mask=mask), _np(klayer(x, mask=mask)))


@pytest.mark.parametrize("name", list(CELLS))
def test_initial_state_split_parity(float64, name):
    klayer, ours, x = _pair(name, "ave", seed=3, return_sequences=True, return_state=True)
    n = 4 if name == "LSTM" else 2
    rng = np.random.default_rng(8)
    init = [rng.standard_normal((B, U)) for _ in range(n)]
    mask = _masks()["left"]
    ref = _np(klayer(x, initial_state=[keras.ops.convert_to_tensor(s) for s in init], mask=mask))
    _compare(ours(x, initial_state=init, mask=mask), ref)


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_go_backwards_parity(float64, name):
    """A forward layer with go_backwards=True needs a backward_layer with go_backwards=False (Keras rule);
    the second output is flipped in time all the same."""
    klayer, ours, x = _pair(name, "concat", seed=4, backward={"go_backwards": False},
                            return_sequences=True, go_backwards=True)
    mask = _masks()["right"]
    _compare(ours(x, mask=mask), _np(klayer(x, mask=mask)))
    with pytest.raises(ValueError):  # both directions reversed: Keras refuses, so does rnnlab
        keras.layers.Bidirectional(keras.layers.LSTM(U, go_backwards=True))
    with pytest.raises(ValueError, match="different go_backwards"):
        Bidirectional(LSTM(U, go_backwards=True))


@pytest.mark.parametrize("name", ["LSTM", "GRU", "SimpleRNN"])
def test_stateful_two_batches_parity(float64, name):
    klayer, ours, x = _pair(name, "concat", seed=5, return_sequences=True, stateful=True)
    ours.reset_states()      # the build call carried states computed with the initial weights
    klayer.reset_states()
    x2 = _x(6)
    mask = _masks()["right"]
    for xb, m in ((x, None), (x2, mask)):
        _compare(ours(xb, mask=m), _np(klayer(xb, mask=m)))
    for a, b in zip(ours.states, klayer.states):
        assert rel_error(a, keras.ops.convert_to_numpy(b)) < TOL
    ours.reset_states()
    klayer.reset_states()
    _compare(ours(x2), _np(klayer(x2)))


@pytest.mark.parametrize("name", list(CELLS))
def test_shapes_counts_masks_match_keras(name):
    cls, kw = CELLS[name]
    for mm in (MODES if name == "LSTM" else ("concat", "sum", None)):
        for rs in (False, True):
            for st in (False, True):
                k = keras.layers.Bidirectional(getattr(keras.layers, cls.__name__)(U, return_sequences=rs,
                                                                                  return_state=st, **kw), merge_mode=mm)
                o = Bidirectional(cls(U, return_sequences=rs, return_state=st, **kw), merge_mode=mm)
                k.build((None, T, D))
                o.build((None, T, D))
                ks = k.compute_output_shape((None, T, D))
                os_ = o.compute_output_shape((None, T, D))
                if isinstance(os_, list):
                    assert [tuple(s) for s in ks] == os_
                else:
                    assert tuple(ks) == os_
                assert o.count_params() == k.count_params()
                assert [w.shape for w in o.get_weights()] == [tuple(w.shape) for w in k.get_weights()]
                mask = np.ones((2, T), bool)
                om = o.compute_mask(None, mask)
                first = om[0] if (st and mm is not None) else om
                if mm is None:
                    assert (first[0] is mask) == rs
                else:
                    assert (first is mask) == rs


def test_wrong_layer_type_weights_error():
    k = keras.layers.Bidirectional(keras.layers.GRU(U))
    k.build((None, T, D))
    ours = Bidirectional(LSTM(U))
    ours.build((None, T, D))
    with pytest.raises(ValueError, match=r"look like those of a Bidirectional\(GRU \(reset_after=True\)\).*is Bidirectional\(LSTM\)"):
        ours.set_weights(k.get_weights())
    k2 = keras.layers.Bidirectional(keras.layers.GRU(U, reset_after=False))
    k2.build((None, T, D))
    g = Bidirectional(GRU(U))
    g.build((None, T, D))
    with pytest.raises(ValueError, match=r"reset_after=False.*is Bidirectional\(GRU \(reset_after=True\)\)"):
        g.set_weights(k2.get_weights())
    k3 = keras.layers.Bidirectional(keras.layers.LSTM(U))
    k3.build((None, T, D))
    with pytest.raises(ValueError, match=r"expects 6 arrays"):
        ours.set_weights(k3.get_weights()[:3])


@pytest.mark.parametrize("src,dst,pattern", [
    ("GRU", "LSTM", r"look like those of a GRU \(reset_after=True\) with 2 units.*this layer is LSTM"),
    ("LSTM", "SimpleRNN", r"look like those of a LSTM with 2 units.*this layer is SimpleRNN"),
    ("SimpleRNN", "GRU", r"look like those of a SimpleRNN.*this layer is GRU \(reset_after=True\)"),
    ("GRU_reset_before", "GRU", r"GRU \(reset_after=False\).*this layer is GRU \(reset_after=True\)"),
])
def test_plain_layer_wrong_type_weights_error(src, dst, pattern):
    scls, skw = CELLS[src]
    k = getattr(keras.layers, scls.__name__)(U, **skw)
    k.build((None, T, D))
    dcls, dkw = CELLS[dst]
    ours = dcls(U, **dkw)
    ours.build((None, T, D))
    with pytest.raises(ValueError, match=r"expects shape .*got .*" + pattern):
        ours.set_weights(k.get_weights())


# ------------------------------------------------------------------------------- whole models
def _token_batch(pad):
    rng = np.random.default_rng(11)
    lengths = [6, 3, 1, 0, 4]
    ids = np.zeros((len(lengths), T), np.int64)
    for i, n in enumerate(lengths):
        if n:
            sl = slice(0, n) if pad == "right" else slice(T - n, T)
            ids[i, sl] = rng.integers(1, 12, n)
    return ids


def _models(head):
    V, E = 12, 4
    klayers = [keras.Input((T,), dtype="int32"), keras.layers.Embedding(V, E, mask_zero=True, dtype="float64"),
               keras.layers.Bidirectional(keras.layers.LSTM(U, return_sequences=True, dtype="float64"),
                                          dtype="float64")]
    ours = [Embedding(V, E, mask_zero=True, input_length=T), Bidirectional(LSTM(U, return_sequences=True))]
    if head == "lstm_dense":
        klayers += [keras.layers.LSTM(3, dtype="float64"), keras.layers.Dense(2, dtype="float64")]
        ours += [LSTM(3), Dense(2)]
    else:
        klayers += [keras.layers.GRU(3, return_sequences=True, dtype="float64"),
                    keras.layers.TimeDistributed(keras.layers.Dense(5, activation="softmax", dtype="float64"),
                                                 dtype="float64")]
        ours += [GRU(3, return_sequences=True), TimeDistributed(Dense(5, activation="softmax"))]
    kmodel = keras.Sequential(klayers)
    rng = np.random.default_rng(12)
    kmodel.set_weights([rng.standard_normal(w.shape) * 0.5 for w in kmodel.get_weights()])
    model = rnnlab.Sequential(ours)
    model.set_weights(kmodel.get_weights())
    return kmodel, model


@pytest.mark.parametrize("head", ["lstm_dense", "time_distributed"])
@pytest.mark.parametrize("pad", ["right", "left"])
def test_stacked_sequential_parity(float64, head, pad):
    """Embedding(mask_zero) -> Bidirectional(LSTM, seq) -> LSTM -> Dense, and -> GRU(seq) -> TimeDistributed(Dense),
    as whole Sequential models; the second also compares the masked loss (Keras evaluate)."""
    kmodel, model = _models(head)
    assert model.count_params() == kmodel.count_params()
    ids = _token_batch(pad)
    ref = keras.ops.convert_to_numpy(kmodel(ids))
    got = model.predict(ids)
    assert got.shape == ref.shape and rel_error(got, ref) < TOL
    if head == "time_distributed":
        y = np.random.default_rng(13).integers(0, 5, ids.shape)
        kmodel.compile(loss="sparse_categorical_crossentropy")
        model.compile(loss="sparse_categorical_crossentropy")
        kl = float(kmodel.evaluate(ids, y, verbose=0, batch_size=len(ids)))
        ol = model.evaluate(ids, y, batch_size=len(ids))
        assert abs(kl - ol) < TOL * abs(kl)


def test_time_distributed_masking_repeat_vector_parity(float64):
    rng = np.random.default_rng(14)
    x = rng.standard_normal((B, T, D))
    x[0, 3:] = 0.0
    x[2, :2] = 0.0
    kseq = keras.Sequential([keras.Input((T, D)), keras.layers.Masking(dtype="float64"),
                             keras.layers.LSTM(U, dtype="float64"), keras.layers.RepeatVector(3, dtype="float64"),
                             keras.layers.LSTM(U, return_sequences=True, dtype="float64"),
                             keras.layers.TimeDistributed(keras.layers.Dense(3, activation="tanh", dtype="float64"),
                                                          dtype="float64")])
    kseq.set_weights([rng.standard_normal(w.shape) * 0.5 for w in kseq.get_weights()])
    model = rnnlab.Sequential([Masking(input_shape=(T, D)), LSTM(U), RepeatVector(3), LSTM(U, return_sequences=True),
                               TimeDistributed(Dense(3, activation="tanh"))])
    model.set_weights(kseq.get_weights())
    assert model.output_shape == tuple(kseq.output_shape)
    ref = keras.ops.convert_to_numpy(kseq(x))
    assert rel_error(model.predict(x), ref) < TOL
    # the Masking layer's own output and mask
    km = keras.layers.Masking(mask_value=0.0, dtype="float64")
    np.testing.assert_array_equal(Masking()(x), keras.ops.convert_to_numpy(km(x)))
    np.testing.assert_array_equal(Masking().compute_mask(x), keras.ops.convert_to_numpy(km.compute_mask(x)))
