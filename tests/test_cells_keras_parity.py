"""RNN(cell) and the cells against Keras 3 (torch backend) in float64, weights copied with get/set_weights.

Each case runs twice: "fast" (exactly LSTMCell etc.: the optimised loop of rnnlab.layers.fused_loop) and
"loop" (a subclass of the cell: RNN's own per-step loop and the cell's forward_step). Tolerance as in
test_recurrent_keras_parity.py (Keras on torch rounds some internal ops through float32)."""
import numpy as np
import pytest

keras = pytest.importorskip("keras")

import rnnlab  # noqa: E402
from rnnlab.layers import (RNN, Bidirectional, GRUCell, LSTMCell, SimpleRNNCell, StackedRNNCells,  # noqa: E402
                           register)
from rnnlab.testing import rel_error  # noqa: E402

TOL = 1e-6
B, T, D = 4, 6, 5
CELLS = {"SimpleRNNCell": SimpleRNNCell, "LSTMCell": LSTMCell, "GRUCell": GRUCell}
# the "loop" kind: registered subclasses (Bidirectional rebuilds its layer from the config)
LOOP_CELLS = {name: register(type("Loop" + name, (cls,), {})) for name, cls in CELLS.items()}


@pytest.fixture(autouse=True)
def float64():
    rnnlab.set_floatx("float64")


def _np(a):
    if isinstance(a, (list, tuple)):
        return [_np(t) for t in a]
    return keras.ops.convert_to_numpy(a)


def _flat(a):
    return [v for t in a for v in _flat(t)] if isinstance(a, (list, tuple)) else [a]


def _ours(name, kind, units, **kw):
    return (LOOP_CELLS if kind == "loop" else CELLS)[name](units, **kw)


def _keras_cell(name, units, **kw):
    return getattr(keras.layers, name)(units, dtype="float64", **kw)


def _copy(klayer, ours, x, seed=7):
    klayer(x)
    rng = np.random.default_rng(seed)
    klayer.set_weights([rng.standard_normal(w.shape) * 0.5 for w in klayer.get_weights()])
    ours(x)
    ours.set_weights(klayer.get_weights())


def _x(seed=0):
    return np.random.default_rng(seed).standard_normal((B, T, D))


def _mask():
    m = np.ones((B, T), bool)
    m[0, 4:] = False
    m[1, 1:] = False
    m[2, :2] = False
    return m


def _assert_close(a, b):
    a, b = _flat(a), _flat(b)
    assert len(a) == len(b)
    for u, v in zip(a, b):
        assert np.shape(u) == np.shape(v)
        assert rel_error(u, v) < TOL


KINDS = ["fast", "loop"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("masked", [False, True])
def test_rnn_simple_rnn_cell(kind, masked):
    k = keras.layers.RNN(_keras_cell("SimpleRNNCell", 3), return_sequences=True, dtype="float64")
    ours = RNN(_ours("SimpleRNNCell", kind, 3), return_sequences=True)
    x = _x()
    _copy(k, ours, x)
    m = _mask() if masked else None
    _assert_close(ours(x, mask=m), _np(k(x, mask=m)))


@pytest.mark.parametrize("kind", KINDS)
def test_rnn_lstm_cell_return_state(kind):
    k = keras.layers.RNN(_keras_cell("LSTMCell", 3), return_state=True, dtype="float64")
    ours = RNN(_ours("LSTMCell", kind, 3), return_state=True)
    x = _x(1)
    _copy(k, ours, x)
    _assert_close(ours(x), _np(k(x)))
    rng = np.random.default_rng(2)
    init = [rng.standard_normal((B, 3)), rng.standard_normal((B, 3))]
    _assert_close(ours(x, initial_state=init, mask=_mask()), _np(k(x, initial_state=init, mask=_mask())))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reset_after", [True, False])
def test_rnn_gru_cell_go_backwards(kind, reset_after):
    k = keras.layers.RNN(_keras_cell("GRUCell", 3, reset_after=reset_after), go_backwards=True,
                         return_sequences=True, return_state=True, dtype="float64")
    ours = RNN(_ours("GRUCell", kind, 3, reset_after=reset_after), go_backwards=True, return_sequences=True,
               return_state=True)
    x = _x(2)
    _copy(k, ours, x)
    _assert_close(ours(x), _np(k(x)))
    _assert_close(ours(x, mask=_mask()), _np(k(x, mask=_mask())))


@pytest.mark.parametrize("kind", KINDS)
def test_rnn_stacked_lstm_gru_cells(kind):
    k = keras.layers.RNN(keras.layers.StackedRNNCells([_keras_cell("LSTMCell", 4), _keras_cell("GRUCell", 3)],
                                                      dtype="float64"),
                         return_sequences=True, return_state=True, dtype="float64")
    ours = RNN(StackedRNNCells([_ours("LSTMCell", kind, 4), _ours("GRUCell", kind, 3)]), return_sequences=True,
               return_state=True)
    x = _x(3)
    _copy(k, ours, x)
    got, want = ours(x), _np(k(x))
    assert isinstance(got[1], list) and len(got[1]) == 2      # the LSTM cell's [h, c], then the GRU's h
    _assert_close(got, want)
    _assert_close(ours(x, mask=_mask()), _np(k(x, mask=_mask())))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("merge_mode", ["concat", "sum"])
def test_bidirectional_rnn_lstm_cell(kind, merge_mode):
    k = keras.layers.Bidirectional(keras.layers.RNN(_keras_cell("LSTMCell", 3), return_sequences=True,
                                                    dtype="float64"), merge_mode=merge_mode, dtype="float64")
    ours = Bidirectional(RNN(_ours("LSTMCell", kind, 3), return_sequences=True), merge_mode=merge_mode)
    x = _x(4)
    _copy(k, ours, x)
    _assert_close(ours(x), _np(k(x)))
    _assert_close(ours(x, mask=_mask()), _np(k(x, mask=_mask())))


@pytest.mark.parametrize("name, kw", [("SimpleRNNCell", {}), ("LSTMCell", {}), ("GRUCell", {}),
                                      ("GRUCell", {"reset_after": False})])
def test_cell_one_step_with_given_states(name, kw):
    kcell = _keras_cell(name, 3, **kw)
    ours = CELLS[name](3, **kw)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((B, D))
    n = 2 if name == "LSTMCell" else 1
    states = [rng.standard_normal((B, 3)) for _ in range(n)]
    kcell(x, states)
    kcell.set_weights([rng.standard_normal(w.shape) * 0.5 for w in kcell.get_weights()])
    ours(x, states)
    ours.set_weights(kcell.get_weights())
    k_out, k_states = kcell(x, states)
    out, new = ours(x, states)
    _assert_close([out, new], [_np(k_out), _np(k_states)])


@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "SimpleRNNCell"])
def test_load_keras_weights_file_into_rnn_over_cell(tmp_path, name):
    """A Keras RNN(cell) model's .weights.h5 loads into the rnnlab model of the same layers (and a model with
    another cell type is refused, naming both)."""
    import rnnlab.models.keras_weights as kw
    from rnnlab import Sequential
    from rnnlab.layers import Dense

    x = _x(6)
    km = keras.Sequential([keras.Input((T, D), dtype="float64"), keras.layers.RNN(_keras_cell(name, 4), dtype="float64"),
                           keras.layers.Dense(1, dtype="float64")])
    path = str(tmp_path / "m.weights.h5")
    km.save_weights(path)
    ours = Sequential([RNN(CELLS[name](4)), Dense(1)])
    ours.build((None, T, D))
    kw.load_keras_weights(ours, path)
    _assert_close(ours.predict(x), _np(km(x)))
    other = Sequential([RNN((GRUCell if name == "LSTMCell" else LSTMCell)(4)), Dense(1)])
    other.build((None, T, D))
    with pytest.raises(ValueError, match="wrong layer type"):
        kw.load_keras_weights(other, path)
