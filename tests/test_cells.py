"""Public recurrent cells and RNN(cell): Keras 3's own golden values (rnn_test.py, stacked_rnn_cells_test.py,
lstm_test.py), float64 parity with Keras 3 (torch backend) through get/set_weights, user-written cells (incl.
the "Working with RNNs" guide's nested-state cell) gradient-checked through RNN and Bidirectional, the
bit-for-bit equality of RNN(LSTMCell(n)) and LSTM(n), and the errors for malformed cells and states.

"fast" runs a built-in cell through its optimised loop (exactly LSTMCell etc.); "loop" runs the same cell
through RNN's own per-step loop (a subclass: a subclass may change the step, so it never takes the fast loop)."""
import numpy as np
import pytest

import rnnlab
from rnnlab import initializers
from rnnlab.layers import (GRU, LSTM, RNN, Bidirectional, Cell, GRUCell, LSTMCell, SimpleRNN, SimpleRNNCell,
                           StackedRNNCells, register)
from rnnlab.testing import check_layer_gradients, numerical_gradient, rel_error


# ----------------------------------------------------------------- the cells of Keras's rnn_test.py
@register
class OneStateTestCell(Cell):
    """Keras rnn_test.OneStateRNNCell: h_t = x_t K + h_{t-1} R, ones weights."""

    def __init__(self, units, state_size=None, init="ones", **kwargs):
        super().__init__(**kwargs)
        self.units, self.init = units, init
        self.state_size = state_size if state_size else units

    def build(self, input_shape):
        self.add_weight("kernel", (input_shape[-1], self.units), self.init)
        self.add_weight("recurrent_kernel", (self.units, self.units), self.init)
        super().build(input_shape)

    def forward_step(self, x, states, training=False):
        h = x @ self.params["kernel"] + states[0] @ self.params["recurrent_kernel"]
        return h, [h], (x, states[0])

    def backward_step(self, d_output, d_states, cache):
        x, h0 = cache
        g = d_output + d_states[0]
        self.grads["kernel"] += x.T @ g
        self.grads["recurrent_kernel"] += h0.T @ g
        return g @ self.params["kernel"].T, [g @ self.params["recurrent_kernel"].T]

    def get_config(self):
        return dict(super().get_config(), units=self.units, init=self.init)


@register
class TwoStatesTestCell(Cell):
    """Keras rnn_test.TwoStatesRNNCell (both outputs read states[0], as there); ``act`` makes it nonlinear."""

    def __init__(self, units, state_size=None, init="ones", act=None, **kwargs):
        super().__init__(**kwargs)
        self.units, self.init, self.act = units, init, act
        self.state_size = state_size if state_size else [units, units]
        self.output_size = units

    def build(self, input_shape):
        self.add_weight("kernel", (input_shape[-1], self.units), self.init)
        self.add_weight("recurrent_kernel_1", (self.units, self.units), self.init)
        self.add_weight("recurrent_kernel_2", (self.units, self.units), self.init)
        super().build(input_shape)

    def forward_step(self, x, states, training=False):
        p = self.params
        h = x @ p["kernel"]
        o1 = h + states[0] @ p["recurrent_kernel_1"]
        o2 = h + states[0] @ p["recurrent_kernel_2"]
        if self.act == "tanh":
            o1, o2 = np.tanh(o1), np.tanh(o2)
        return o1 + o2, [o1, o2], (x, states[0], o1, o2)

    def backward_step(self, d_output, d_states, cache):
        x, s0, o1, o2 = cache
        p = self.params
        g1, g2 = d_output + d_states[0], d_output + d_states[1]
        if self.act == "tanh":
            g1, g2 = g1 * (1 - o1 ** 2), g2 * (1 - o2 ** 2)
        self.grads["kernel"] += x.T @ (g1 + g2)
        self.grads["recurrent_kernel_1"] += s0.T @ g1
        self.grads["recurrent_kernel_2"] += s0.T @ g2
        ds0 = g1 @ p["recurrent_kernel_1"].T + g2 @ p["recurrent_kernel_2"].T
        return (g1 + g2) @ p["kernel"].T, [ds0, np.zeros_like(d_states[1])]

    def get_config(self):
        return dict(super().get_config(), units=self.units, init=self.init, act=self.act)


@register
class NestedTestCell(Cell):
    """The Keras guide's NestedCell: inputs [(B, i1), (B, i2, i3)], states [(B, u1), (B, u2, u3)],
    output (o1, o23) with o1 = x1 K1, o23 = einsum(x2, K23); the states accumulate the outputs."""

    def __init__(self, unit_1, unit_2, unit_3, **kwargs):
        super().__init__(**kwargs)
        self.unit_1, self.unit_2, self.unit_3 = unit_1, unit_2, unit_3
        self.state_size = [unit_1, (unit_2, unit_3)]
        self.output_size = [unit_1, (unit_2, unit_3)]

    def build(self, input_shapes):
        i1, (i2, i3) = input_shapes[0][1], input_shapes[1][1:]
        self.add_weight("kernel_1", (i1, self.unit_1), "glorot_uniform")
        self.add_weight("kernel_2_3", (i2, i3, self.unit_2, self.unit_3), "glorot_uniform")
        super().build(input_shapes)

    def forward_step(self, x, states, training=False):
        x1, x2 = x
        o1 = x1 @ self.params["kernel_1"]
        o23 = np.einsum("bij,ijkl->bkl", x2, self.params["kernel_2_3"])
        return (o1, o23), [states[0] + o1, states[1] + o23], (x1, x2)

    def backward_step(self, d_output, d_states, cache):
        x1, x2 = cache
        g1, g23 = d_output[0] + d_states[0], d_output[1] + d_states[1]
        self.grads["kernel_1"] += x1.T @ g1
        self.grads["kernel_2_3"] += np.einsum("bij,bkl->ijkl", x2, g23)
        dx = [g1 @ self.params["kernel_1"].T, np.einsum("bkl,ijkl->bij", g23, self.params["kernel_2_3"])]
        return dx, [d_states[0], d_states[1]]


def _c(v):
    return initializers.Constant(v)


def _const_lstm_cell(units, sub=False, **kw):
    cls = type("LoopLSTMCell", (LSTMCell,), {}) if sub else LSTMCell
    return cls(units, kernel_initializer=_c(0.01), recurrent_initializer=_c(0.02), bias_initializer=_c(0.03), **kw)


# ------------------------------------------------------------------ Keras rnn_test.py golden values
def test_keras_forward_pass_single_state():
    seq = np.ones((1, 2, 3))
    assert np.allclose(RNN(OneStateTestCell(2))(seq), [[9.0, 9.0]])
    assert np.allclose(RNN(OneStateTestCell(2), return_sequences=True)(seq), [[[3.0, 3.0], [9.0, 9.0]]])
    out, state = RNN(OneStateTestCell(2), return_sequences=True, return_state=True)(seq)
    assert np.allclose(out, [[[3.0, 3.0], [9.0, 9.0]]]) and np.allclose(state, [[9.0, 9.0]])
    for size in (2, [2], (2,)):
        assert np.allclose(RNN(OneStateTestCell(2, state_size=size))(seq), [[9.0, 9.0]])


def test_keras_forward_pass_two_states():
    seq = np.ones((1, 2, 3))
    assert np.allclose(RNN(TwoStatesTestCell(2))(seq), [[18.0, 18.0]])
    out, s1, s2 = RNN(TwoStatesTestCell(2), return_sequences=True, return_state=True)(seq)
    assert np.allclose(out, [[[6.0, 6.0], [18.0, 18.0]]])
    assert np.allclose(s1, [[9.0, 9.0]]) and np.allclose(s2, [[9.0, 9.0]])


def test_keras_initial_state():
    seq = np.ones((2, 3, 2))
    out, st = RNN(OneStateTestCell(2), return_state=True)(seq, initial_state=np.ones((2, 2)))
    assert np.allclose(out, 22.0) and np.allclose(st, 22.0)
    out, s1, s2 = RNN(TwoStatesTestCell(2), return_state=True)(seq, initial_state=[np.ones((2, 2))] * 2)
    assert np.allclose(out, 44.0) and np.allclose(s1, 22.0) and np.allclose(s2, 22.0)


def test_keras_statefulness():
    seq = np.ones((1, 2, 3))
    layer = RNN(OneStateTestCell(2), stateful=True, return_state=True)
    layer(seq)
    out, st = layer(seq)
    assert np.allclose(out, [[45.0, 45.0]]) and np.allclose(st, [[45.0, 45.0]])
    layer = RNN(TwoStatesTestCell(2), stateful=True, return_state=True)
    layer(seq)
    out, s1, s2 = layer(seq)
    assert np.allclose(out, [[90.0, 90.0]]) and np.allclose(s1, 45.0) and np.allclose(s2, 45.0)
    layer.reset_states()
    assert np.allclose(layer(seq)[0], [[18.0, 18.0]])


def test_keras_go_backwards():
    seq = np.arange(24).reshape((2, 3, 4)).astype("float32")
    layer = RNN(OneStateTestCell(2), go_backwards=True)
    layer(seq)
    assert np.allclose(layer(seq), [[202.0, 202.0], [538.0, 538.0]])
    layer = RNN(OneStateTestCell(2), stateful=True, return_state=True)
    layer(seq)
    out, st = layer(seq)
    assert np.allclose(out, [[954.0, 954.0], [3978.0, 3978.0]]) and np.allclose(st, out)


def test_keras_compute_output_shape():
    assert RNN(OneStateTestCell(8)).compute_output_shape((3, 4, 5)) == (3, 8)
    assert RNN(OneStateTestCell(8), return_sequences=True).compute_output_shape((None, None, 3)) == (None, None, 8)
    shapes = RNN(TwoStatesTestCell(8), return_sequences=True, return_state=True).compute_output_shape((3, 4, 5))
    assert shapes == [(3, 4, 8), (3, 8), (3, 8)]


# ------------------------------------------------------ Keras stacked_rnn_cells_test.py golden values
def test_keras_stacked_single_state():
    seq = np.arange(24).reshape((2, 3, 4)).astype("float32")
    out = RNN([OneStateTestCell(3), OneStateTestCell(2)], return_sequences=True)(seq)
    assert np.allclose(out, [[[18, 18], [156, 156], [786, 786]], [[162, 162], [1020, 1020], [4386, 4386]]])
    out, s1, s2 = RNN(StackedRNNCells([OneStateTestCell(3), OneStateTestCell(2)]), return_state=True)(seq)
    assert np.allclose(out, [[786, 786], [4386, 4386]])
    assert np.allclose(s1, [[158] * 3, [782] * 3]) and np.allclose(s2, [[786, 786], [4386, 4386]])


def test_keras_stacked_two_states():
    seq = np.arange(24).reshape((2, 3, 4)).astype("float32")
    out = RNN([TwoStatesTestCell(3), TwoStatesTestCell(2)], return_sequences=True)(seq)
    assert np.allclose(out, [[[72, 72], [624, 624], [3144, 3144]], [[648, 648], [4080, 4080], [17544, 17544]]])
    out, s1, s2 = RNN([TwoStatesTestCell(3), TwoStatesTestCell(2)], return_state=True)(seq)
    assert np.allclose(out, [[3144, 3144], [17544, 17544]])
    assert np.allclose(s1[0], [[158] * 3, [782] * 3]) and np.allclose(s1[1], [[158] * 3, [782] * 3])
    assert np.allclose(s2[0], [[1572] * 2, [8772] * 2]) and np.allclose(s2[1], [[1572] * 2, [8772] * 2])


def test_keras_stacked_statefulness():
    seq = np.arange(24).reshape((2, 3, 4)).astype("float32")
    layer = RNN([OneStateTestCell(3), OneStateTestCell(2)], stateful=True)
    layer(seq)
    assert np.allclose(layer(seq), [[34092, 34092], [173196, 173196]])
    layer = RNN([TwoStatesTestCell(3), TwoStatesTestCell(2)], stateful=True)
    layer(seq)
    assert np.allclose(layer(seq), [[136368, 136368], [692784, 692784]])


def test_keras_return_state_stacked_lstm_cell():
    layer = RNN([LSTMCell(10), LSTMCell(10)], return_state=True)
    out = layer(np.zeros((2, 3, 5)))
    assert len(out) == 3 and out[0].shape == (2, 10)
    assert [a.shape for a in out[1]] == [(2, 10)] * 2 and [a.shape for a in out[2]] == [(2, 10)] * 2
    shape = layer.compute_output_shape((2, 3, 5))
    assert shape[0] == (2, 10) and list(shape[1]) == [(2, 10)] * 2 and list(shape[2]) == [(2, 10)] * 2


# ------------------------------------------------------------------- Keras lstm_test.py golden values
LSTM_CASES = [({}, [0.6288687, 0.86899155, 0.9460773]), ({"go_backwards": True}, [0.35622165, 0.74789524, 0.8872726]),
              ({"unroll": True}, [0.6288687, 0.86899155, 0.9460773]),
              ({"unit_forget_bias": False}, [0.57019705, 0.8661914, 0.9459622]),
              ({"use_bias": False}, [0.54986924, 0.86226785, 0.9443936])]


@pytest.mark.parametrize("implementation", [1, 2])
@pytest.mark.parametrize("kind", ["layer", "fast", "loop"])
@pytest.mark.parametrize("case", range(len(LSTM_CASES)))
def test_keras_lstm_correctness(implementation, kind, case):
    kw, expected = LSTM_CASES[case]
    seq = np.arange(72).reshape((3, 6, 4)).astype("float32")
    cell_kw = {k: v for k, v in kw.items() if k in ("unit_forget_bias", "use_bias")}
    rnn_kw = {k: v for k, v in kw.items() if k not in cell_kw}
    if kind == "layer":
        layer = LSTM(3, kernel_initializer=_c(0.01), recurrent_initializer=_c(0.02), bias_initializer=_c(0.03),
                     implementation=implementation, **kw)
    else:
        layer = RNN(_const_lstm_cell(3, sub=kind == "loop", implementation=implementation, **cell_kw), **rnn_kw)
    out = layer(seq)
    assert np.allclose(out, np.repeat(np.array(expected)[:, None], 3, axis=1), atol=1e-5, rtol=1e-5)
    assert (layer.get_config().get("implementation", None) if kind == "layer"
            else layer.cell.get_config()["implementation"]) == implementation


@pytest.mark.parametrize("kind", ["layer", "fast", "loop"])
def test_keras_lstm_statefulness_initial_state_masking(kind):
    def make(units, **kw):
        if kind == "layer":
            return LSTM(units, kernel_initializer=_c(0.01), recurrent_initializer=_c(0.02),
                        bias_initializer=_c(0.03), **kw)
        return RNN(_const_lstm_cell(units, sub=kind == "loop"), **kw)

    seq = np.arange(24).reshape((2, 3, 4)).astype("float32")
    layer = make(4, stateful=True)
    layer(seq)
    expected = np.repeat([[0.3124785], [0.6863672]], 4, axis=1)
    assert np.allclose(layer(seq), expected, atol=1e-5)
    layer.reset_state()
    layer(seq)
    assert np.allclose(layer(seq), expected, atol=1e-5)

    seq = np.arange(24).reshape((2, 4, 3)).astype("float32")
    init = [np.arange(4).reshape((2, 2)).astype("float32")] * 2
    assert np.allclose(make(2)(seq, initial_state=init), [[0.20574439, 0.3558822], [0.64930826, 0.66276]], atol=1e-5)
    assert np.allclose(make(2, go_backwards=True)(seq, initial_state=init),
                       [[0.13281618, 0.2790356], [0.5839337, 0.5992567]], atol=1e-5)

    mask = np.array([[True, True, True, False], [True, True, False, False]])
    assert np.allclose(make(2)(seq, mask=mask), [[0.11755939] * 2, [0.28556206] * 2], atol=1e-5)
    out = make(2, return_sequences=True)(seq, mask=mask)
    assert np.allclose(out[0, :, 0], [0.01588910, 0.05552048, 0.11755939, 0.11755939], atol=1e-5)
    assert np.allclose(out[1, :, 0], [0.14185596, 0.28556206, 0.28556206, 0.28556206], atol=1e-5)
    out = make(2, return_sequences=True, zero_output_for_mask=True)(seq, mask=mask)
    assert np.allclose(out[0, :, 1], [0.01588910, 0.05552048, 0.11755939, 0.0], atol=1e-5)
    assert np.allclose(out[1, :, 1], [0.14185596, 0.28556206, 0.0, 0.0], atol=1e-5)
    back = np.array([[False, True, True, True], [False, False, True, True]])
    assert np.allclose(make(2, go_backwards=True)(seq, mask=back), [[0.15341201] * 2, [0.3844719] * 2], atol=1e-5)


# -------------------------------------------------------------- RNN(LSTMCell(n)) is LSTM(n), bit for bit
@pytest.mark.parametrize("layer_cls, cell_cls, kw", [(LSTM, LSTMCell, {}), (GRU, GRUCell, {}),
                                                     (GRU, GRUCell, {"reset_after": False}),
                                                     (SimpleRNN, SimpleRNNCell, {})])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rnn_over_builtin_cell_equals_layer_bit_for_bit(layer_cls, cell_cls, kw, dtype):
    rnnlab.set_floatx(dtype)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 9, 5)).astype(dtype)
    mask = np.ones((4, 9), bool)
    mask[1, 6:] = False
    for backend in ("numpy", "auto"):
        layer = layer_cls(6, return_sequences=True, return_state=True, backend=backend, **kw)
        rnn = RNN(cell_cls(6, **kw), return_sequences=True, return_state=True, backend=backend)
        layer(x)
        rnn(x)
        rnn.set_weights(layer.get_weights())
        g = [rng.standard_normal(o.shape).astype(dtype) for o in layer.forward(x, training=True, mask=mask)]
        for a, b in zip(layer.forward(x, training=True, mask=mask), rnn.forward(x, training=True, mask=mask)):
            assert np.array_equal(a, b)
        assert layer.last_path == rnn.last_path
        if backend == "numpy":
            assert rnn.last_path == "numpy"
        assert np.array_equal(layer.backward(g), rnn.backward(g))
        for (_, o1, w1), (_, o2, w2) in zip(layer.iter_weights(), rnn.iter_weights()):
            assert np.array_equal(o1.grads[w1], o2.grads[w2])


@pytest.mark.parametrize("cell_fn", [lambda: LSTMCell(5), lambda: GRUCell(5), lambda: GRUCell(5, reset_after=False),
                                     lambda: SimpleRNNCell(5)])
def test_cell_loop_matches_fast_loop(float64, cell_fn):
    """The readable per-step loop and the optimised loop compute the same function (float64, masks, states)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 7, 4))
    mask = rng.random((3, 7)) > 0.3
    fast_cell = cell_fn()
    loop_cell = type("Sub", (type(fast_cell),), {}).from_config(fast_cell.get_config())
    fast = RNN(fast_cell, return_sequences=True, return_state=True, go_backwards=True)
    loop = RNN(loop_cell, return_sequences=True, return_state=True, go_backwards=True)
    fast(x)
    loop(x)
    loop.set_weights([w + 0.1 * rng.standard_normal(w.shape) for w in fast.get_weights()])
    fast.set_weights(loop.get_weights())
    init = [rng.standard_normal((3, 5)) for _ in fast.cell.get_initial_state(3)]
    a = fast.forward(x, training=True, mask=mask, initial_state=init)
    b = loop.forward(x, training=True, mask=mask, initial_state=init)
    assert fast.last_path != "cell_loop" and loop.last_path == "cell_loop"
    for u, v in zip(a, b):
        assert rel_error(u, v) < 1e-13
    g = [rng.standard_normal(o.shape) for o in a]
    for u, v in zip(fast.backward(g), loop.backward(g)):    # [dx, *d_initial_states]
        assert rel_error(u, v) < 1e-13
    for (_, o1, w1), (_, o2, w2) in zip(fast.iter_weights(), loop.iter_weights()):
        assert rel_error(o1.grads[w1], o2.grads[w2]) < 1e-13


# ------------------------------------------------------------------------------ gradient checks
@pytest.fixture
def float64():
    rnnlab.set_floatx("float64")


def _mask(B=3, T=5):
    m = np.ones((B, T), bool)
    m[0, 3:] = False
    m[1, 0] = False
    return m


@pytest.mark.parametrize("opts", [{}, {"return_sequences": True, "go_backwards": True},
                                  {"return_state": True, "return_sequences": True}])
def test_gradcheck_custom_cell_through_rnn(float64, opts):
    x = np.random.default_rng(0).standard_normal((3, 5, 4))
    layer = RNN(TwoStatesTestCell(3, init="glorot_uniform", act="tanh"), **opts)
    init = [np.random.default_rng(1).standard_normal((3, 3)) * 0.5 for _ in range(2)]
    check_layer_gradients(layer, x, mask=_mask(), initial_state=init)
    check_layer_gradients(layer, x)


def test_gradcheck_custom_cell_through_bidirectional(float64):
    x = np.random.default_rng(0).standard_normal((3, 5, 4))
    for mode in ("concat", "sum"):
        layer = Bidirectional(RNN(TwoStatesTestCell(3, init="glorot_uniform", act="tanh"), return_sequences=True),
                              merge_mode=mode)
        check_layer_gradients(layer, x, mask=_mask())


def test_gradcheck_nested_state_cell(float64):
    rng = np.random.default_rng(0)
    x1, x2 = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 4, 2, 3))
    layer = RNN(NestedTestCell(2, 3, 2), return_sequences=True)
    init = [rng.standard_normal((2, 2)), rng.standard_normal((2, 3, 2))]
    errs = check_layer_gradients(layer, [x1, x2], initial_state=init, mask=np.array([[1, 1, 0, 1], [1, 1, 1, 1]], bool))
    assert "initial_state[1]" in errs and "input[1]" in errs
    out1, out23 = layer([x1, x2])
    assert out1.shape == (2, 4, 2) and out23.shape == (2, 4, 3, 2)
    # from zero states, the final states are the sums of the outputs over time
    layer_s = RNN(NestedTestCell(2, 3, 2), return_state=True)
    layer_s([x1, x2])
    layer_s.set_weights(layer.get_weights())
    (o1, o23), s1, s2 = layer_s([x1, x2])
    assert np.allclose(s1, np.einsum("bti,iu->bu", x1, layer.get_weights()[0]))
    assert np.allclose(s2, np.einsum("btij,ijkl->bkl", x2, layer.get_weights()[1]))
    assert np.allclose(o1, x1[:, -1] @ layer.get_weights()[0])


@pytest.mark.parametrize("cell_fn", [lambda: type("L", (LSTMCell,), {})(3, dropout=0.2, recurrent_dropout=0.3),
                                     lambda: type("G", (GRUCell,), {})(3, recurrent_dropout=0.3),
                                     lambda: type("G0", (GRUCell,), {})(3, reset_after=False, dropout=0.2),
                                     lambda: StackedRNNCells([LSTMCell(3), GRUCell(2, recurrent_dropout=0.2)])])
def test_gradcheck_builtin_cells_on_the_cell_loop(float64, cell_fn):
    x = np.random.default_rng(0).standard_normal((3, 5, 4))
    layer = RNN(cell_fn(), return_sequences=True, return_state=True)
    layer(x)
    init = [np.random.default_rng(1).standard_normal(s.shape) * 0.5
            for s in (layer.forward(x, training=False)[1:] if not isinstance(layer.cell, StackedRNNCells)
                      else [a for st in layer.forward(x)[1:] for a in (st if isinstance(st, list) else [st])])]
    check_layer_gradients(layer, x, mask=_mask(), initial_state=init)


def test_one_step_cell_backward(float64):
    rng = np.random.default_rng(5)
    cell = LSTMCell(3)
    x, h, c = rng.standard_normal((2, 4)), rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    out, (h1, c1) = cell(x, [h, c])
    g = [rng.standard_normal((2, 3)) for _ in range(3)]
    dx, dh, dc = cell.backward(g)

    def loss(xx, hh, cc):
        o, (a, b) = cell.forward(xx, [hh, cc])
        return np.sum(o * g[0]) + np.sum(a * g[1]) + np.sum(b * g[2])

    for arr, grad in ((x, dx), (h, dh), (c, dc)):
        assert rel_error(numerical_gradient(lambda: loss(x, h, c), arr), grad) < 1e-8


# ---------------------------------------------------------------------------------------- errors
def test_error_cell_without_state_size():
    class NoState(Cell):
        def forward_step(self, x, states, training=False):
            return x, states, None

    with pytest.raises(ValueError, match=r"cell '.*' \(NoState\) has no state_size"):
        RNN(NoState())
    with pytest.raises(TypeError, match="cell must be a recurrent cell"):
        RNN("lstm")


def test_error_wrong_states_structure_and_shape():
    cell = LSTMCell(3)
    x = np.ones((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"\(LSTMCell\) expects 2 state array\(s\) \[\(batch, 3\), \(batch, 3\)\], got 1"):
        cell(x, [np.zeros((2, 3))])
    with pytest.raises(ValueError, match=r"state 1 of cell .*LSTMCell\) must have shape \(2, 3\)"):
        cell(x, [np.zeros((2, 3)), np.zeros((2, 4))])
    layer = RNN(OneStateTestCell(2))
    seq = np.ones((2, 3, 2), np.float32)
    with pytest.raises(ValueError, match=r"initial_state: state 0 of cell .*OneStateTestCell\) must have shape \(2, 2\)"):
        layer(seq, initial_state=[np.ones((2, 3))])
    with pytest.raises(ValueError, match=r"initial_state: cell .* expects 1 state array\(s\) \[\(batch, 2\)\], got 2"):
        layer(seq, initial_state=[np.ones((2, 2))] * 2)
    nested = RNN(NestedTestCell(2, 3, 2))
    with pytest.raises(ValueError, match=r"\[\(batch, 2\), \(batch, 3, 2\)\]"):
        nested([np.ones((2, 4, 3)), np.ones((2, 4, 2, 3))], initial_state=[np.ones((2, 2)), np.ones((2, 3))])

    class BadStates(OneStateTestCell):
        def forward_step(self, x, states, training=False):
            h, new, cache = super().forward_step(x, states)
            return h, new + new, cache

    with pytest.raises(ValueError, match=r"returned new states of shapes .* its state_size says \[\(batch, 2\)\]"):
        RNN(BadStates(2))(seq)


def test_error_empty_stacked_cells():
    with pytest.raises(ValueError, match="StackedRNNCells: cells must be a non-empty list"):
        StackedRNNCells([])
    with pytest.raises(ValueError, match=r"cells\[1\] \(str\) is not a cell"):
        StackedRNNCells([LSTMCell(2), "gru"])


def test_error_implementation_and_backend():
    with pytest.raises(ValueError, match="implementation must be 1 or 2"):
        LSTMCell(3, implementation=3)
    with pytest.raises(ValueError, match="implementation must be 1 or 2"):
        GRU(3, implementation=0)
    with pytest.raises(ValueError, match="backend must be 'auto', 'numpy' or 'native'"):
        LSTM(3, backend="cuda")


# ------------------------------------------------------------------------------ configs
def test_configs_round_trip():
    layer = RNN([LSTMCell(4, implementation=1), GRUCell(3, reset_after=False)], return_sequences=True,
                go_backwards=True, backend="numpy")
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    y = layer(x)
    clone = RNN.from_config(layer.get_config())
    clone(x)
    clone.set_weights(layer.get_weights())
    assert np.array_equal(clone(x), y)
    cfg = clone.get_config()
    assert cfg["backend"] == "numpy" and cfg["cell"]["class_name"] == "StackedRNNCells"
    assert cfg["cell"]["config"]["cells"][0]["config"]["implementation"] == 1
    for cls in (LSTM, GRU):
        for impl in (1, 2):
            c = cls(3, implementation=impl, backend="numpy", use_cudnn=False).get_config()
            assert (c["implementation"], c["backend"], c["use_cudnn"]) == (impl, "numpy", False)
            assert cls.from_config(c).implementation == impl
    assert SimpleRNN(3, backend="native").get_config()["backend"] == "native"


def test_one_step_call_and_initial_state():
    cell = GRUCell(4)
    x = np.random.default_rng(0).standard_normal((3, 2)).astype(np.float32)
    out, states = cell(x)
    assert out.shape == (3, 4) and isinstance(states, list) and np.array_equal(states[0], out)
    z = cell.get_initial_state(3)
    assert len(z) == 1 and z[0].shape == (3, 4) and not z[0].any()
    assert LSTMCell(5).state_size == [5, 5] and LSTMCell(5).output_size == 5
    assert StackedRNNCells([LSTMCell(2), GRUCell(3)]).state_size == [[2, 2], 3]


# ------------------------------------------------------------------ the layers' cells, decoding, inputs
@pytest.mark.parametrize("cls, kw", [(LSTM, {}), (GRU, {}), (GRU, {"reset_after": False}), (SimpleRNN, {})])
def test_layer_cell_steps_like_the_layer(cls, kw):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 6, 4)).astype(np.float32)
    layer = cls(5, return_sequences=True, return_state=True, **kw)
    y, *final = layer(x)
    cell = layer.cell
    assert cell.params is layer.params and type(cell).__name__ == cls.__name__ + "Cell"
    states = cell.get_initial_state(3)
    for t in range(6):
        out, states = cell(x[:, t], states)
        np.testing.assert_allclose(out, y[:, t], rtol=2e-5, atol=2e-6)
    for a, b in zip(states, final):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("cell, attention", [("lstm", "dot"), ("gru", "concat"), ("rnn", "none")])
def test_seq2seq_decoding_steps_the_cell_with_the_same_results(cell, attention, monkeypatch):
    """Greedy and beam decoding step the decoder cells; the tokens equal decoding with the decoder layers
    run on length-1 sequences (the previous implementation, rebuilt here as the reference)."""
    from rnnlab.datasets import Vocabulary
    from rnnlab.models.seq2seq import Seq2Seq

    rnnlab.set_random_seed(3)
    m = Seq2Seq(Vocabulary(list("abcdefgh")), Vocabulary(list("wxyz")), embedding_dim=6, units=8, cell=cell,
                num_layers=2, attention=attention, max_source_len=8, max_target_len=7)
    X = np.random.default_rng(0).integers(3, 11, size=(5, 6))
    X[1, 4:] = 0
    got_greedy = m.greedy_decode(X)
    got_beam = [m.beam_decode(X[i], beam_size=3) for i in range(2)]

    def layer_step(self, tokens, states, H, mask, finals):
        x = self.tgt_emb.forward(tokens[:, None])
        new = []
        for layer, st in zip(self.decoder, states):
            res = layer.forward(x, initial_state=st)
            x = res[0]
            new.append(list(res[1:]))
        logits, A = self._output(x, H, mask, finals)
        return logits[:, 0], (None if A is None else A[:, 0]), new

    monkeypatch.setattr(Seq2Seq, "_dec_step", layer_step)
    want_greedy = m.greedy_decode(X)
    want_beam = [m.beam_decode(X[i], beam_size=3) for i in range(2)]
    assert np.array_equal(got_greedy[0], want_greedy[0])
    np.testing.assert_allclose(got_greedy[1], want_greedy[1], rtol=1e-4, atol=1e-6)
    for g, w in zip(got_beam, want_beam):
        assert np.array_equal(np.asarray(g[0]), np.asarray(w[0]))


@pytest.mark.parametrize("make", [lambda: LSTM(3), lambda: GRU(3), lambda: RNN(OneStateTestCell(3, init="glorot_uniform"))])
def test_one_hot_bool_and_01_inputs_are_cast(make):
    ids = np.random.default_rng(0).integers(0, 4, size=(2, 5))
    onehot = np.eye(4, dtype=bool)[ids]
    layer = make()
    y = layer(onehot.astype(np.float32))
    assert np.array_equal(layer(onehot), y) and np.array_equal(layer(onehot.astype(np.int64)), y)
    with pytest.raises(TypeError, match="integer ids need an Embedding first; one-hot data can be passed as bool/0-1"):
        layer(ids[:, :, None])


def test_use_cudnn_accepted():
    assert LSTM(3, use_cudnn=False).use_cudnn is False and GRU(3, use_cudnn="auto").get_config()["use_cudnn"] == "auto"


def test_gradient_norms_over_time_for_rnn_over_cells(float64):
    """rnnlab.diagnostics records dL/dh_t (and dL/dc_t) for RNN(cell) too: through the fast loop for exactly
    LSTMCell (equal to LSTM's record) and through RNN's own loop for a subclass (the same values)."""
    from rnnlab.diagnostics import gradient_norms_over_time
    from rnnlab.layers import Dense

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 6, 3)), rng.standard_normal((4, 1))
    results = []
    for make in (lambda: LSTM(5), lambda: RNN(LSTMCell(5)), lambda: RNN(type("Sub", (LSTMCell,), {})(5))):
        rnnlab.set_random_seed(1)
        model = rnnlab.Sequential([make(), Dense(1)])
        model.compile("sgd", "mse")
        model.predict(x)
        if results:
            model.set_weights(results[0][0])
        results.append((model.get_weights(), {s: list(gradient_norms_over_time(model, x, y, state=s).values())[0]
                                              for s in ("h", "c", "all")}))
    ref = results[0][1]
    for _, got in results[1:]:
        for s in ref:
            assert got[s].shape == (6,) and rel_error(got[s], ref[s]) < 1e-12, s


@pytest.mark.parametrize("kind", ["fast", "loop"])
def test_tbptt_with_rnn_over_a_cell(float64, kind):
    """Truncated BPTT (overlapping windows: states_after) trains RNN(LSTMCell) as it trains LSTM."""
    from rnnlab.layers import Dense
    from rnnlab.optimizers import SGD

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 9, 2)), rng.normal(size=(4, 9, 2))
    cell = LSTMCell(3) if kind == "fast" else type("Sub", (LSTMCell,), {})(3)
    models = []
    for layer in (LSTM(3, stateful=True, return_sequences=True), RNN(cell, stateful=True, return_sequences=True)):
        rnnlab.set_random_seed(2)
        m = rnnlab.Sequential([rnnlab.Input((None, 2), batch_size=4), layer, Dense(2)])
        m.compile(SGD(0.1), "mse")
        models.append(m)
    models[1].set_weights(models[0].get_weights())
    hist = [m.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0, tbptt_steps=(2, 4)).history["loss"]
            for m in models]
    assert np.allclose(hist[0], hist[1], rtol=1e-12)
    for a, b in zip(*(m.get_weights() for m in models)):
        assert rel_error(a, b) < 1e-12
    assert models[1].layers[0].last_path == ("cell_loop" if kind == "loop" else "numpy")


def test_save_and_load_a_model_with_rnn_over_cells(tmp_path):
    from rnnlab.layers import Dense
    from rnnlab.models import load_model

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 6, 3)).astype(np.float32), rng.standard_normal((4, 1)).astype(np.float32)
    m = rnnlab.Sequential([RNN([LSTMCell(5, implementation=1), GRUCell(4, reset_after=False),
                                OneStateTestCell(3, init="glorot_uniform")], go_backwards=True), Dense(1)])
    m.compile("adam", "mse")
    m.fit(x, y, epochs=2, verbose=0)
    m.save(tmp_path / "m.npz")
    m2 = load_model(tmp_path / "m.npz")
    assert np.array_equal(m2.predict(x), m.predict(x))
    cells = m2.layers[0].cell.cells
    assert cells[0].implementation == 1 and not cells[1].reset_after and type(cells[2]) is OneStateTestCell


def test_functional_model_with_rnn_cell_states():
    from rnnlab.layers import Dense
    from rnnlab.models import Input, Model

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 6, 3)).astype(np.float32), rng.standard_normal((4, 1)).astype(np.float32)
    inp = Input((6, 3))
    out, h, c = RNN(LSTMCell(5), return_state=True)(inp)
    model = Model(inp, Dense(1)(c))
    model.compile("adam", "mse")
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=5, verbose=0)
    assert model.evaluate(x, y, verbose=0) < before


def test_gradcheck_bidirectional_stacked_cells_return_state(float64):
    """return_state of a stacked RNN appends one entry per cell (a list for the LSTM cell); Bidirectional passes
    the nested state gradients back to each direction."""
    x = np.random.default_rng(0).standard_normal((3, 4, 2))
    layer = Bidirectional(RNN([LSTMCell(3), GRUCell(2)], return_state=True, return_sequences=True))
    out = layer(x)
    assert len(out) == 5 and isinstance(out[1], list) and out[2].shape == (3, 2)
    assert layer.compute_mask(x, None) == [None] * 5
    check_layer_gradients(layer, x, mask=np.array([[1, 1, 1, 0], [1, 1, 1, 1], [0, 1, 1, 1]], bool))


def test_docs_cells_md_example_cell(float64):
    """The user-written cell of docs/cells.md runs as written and passes the gradient check (RNN, Bidirectional)."""
    import os
    import re

    path = os.path.join(os.path.dirname(__file__), "..", "docs", "cells.md")
    blocks = re.findall(r"```python\n(.*?)```", open(path).read(), re.S)
    ns = {}
    exec(compile(blocks[1].replace("@register\n", ""), "docs/cells.md", "exec"), ns)
    x = np.random.default_rng(0).standard_normal((3, 5, 4))
    check_layer_gradients(RNN(ns["MinimalRNNCell"](3), return_sequences=True), x, mask=_mask())
    register(ns["MinimalRNNCell"])
    check_layer_gradients(Bidirectional(RNN(ns["MinimalRNNCell"](3))), x)


def test_stacked_initial_state_nested_or_flat():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    layer = RNN([LSTMCell(3), GRUCell(2)], return_state=True)
    h1, c1, h2 = (rng.standard_normal((2, n)).astype(np.float32) for n in (3, 3, 2))
    nested = layer(x, initial_state=[[h1, c1], h2])
    flat = layer(x, initial_state=[h1, c1, h2])
    assert np.array_equal(nested[0], flat[0]) and not np.array_equal(nested[0], layer(x)[0])
    with pytest.raises(ValueError, match=r"StackedRNNCells\) expects 3 state array\(s\) \[\[\(batch, 3\), \(batch, 3\)\], "
                                         r"\[\(batch, 2\)\]\], got 2"):
        layer(x, initial_state=[h1, c1])
