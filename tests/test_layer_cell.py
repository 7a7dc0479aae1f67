"""``layer.cell`` of LSTM / GRU / SimpleRNN before and after the build, against Keras 3 (torch backend): the cell
exists from construction (unbuilt, no weights, the layer's arguments), building the layer builds that same cell
object, and a one-step call of the unbuilt cell builds the layer (one weight set)."""
import numpy as np
import pytest

from rnnlab import regularizers
from rnnlab.layers import GRU, LSTM, SimpleRNN

keras = pytest.importorskip("keras")

CASES = [(LSTM, "LSTM", {}), (GRU, "GRU", {}), (GRU, "GRU", {"reset_after": False}), (SimpleRNN, "SimpleRNN", {})]


@pytest.mark.parametrize("cls, kname, kw", CASES)
def test_unbuilt_cell_matches_keras(cls, kname, kw):
    ours, theirs = cls(4, kernel_regularizer="l2", **kw), getattr(keras.layers, kname)(4, kernel_regularizer="l2", **kw)
    c, kc = ours.cell, theirs.cell
    assert type(c).__name__ == type(kc).__name__
    assert c.name == kc.name
    assert c.built is False and kc.built is False and not ours.built
    assert c.get_weights() == [] and kc.get_weights() == []
    assert c.units == kc.units == 4
    assert c.state_size == kc.state_size and c.output_size == kc.output_size
    assert isinstance(c.kernel_regularizer, regularizers.L2)
    assert c.kernel_regularizer.get_config() == pytest.approx(kc.kernel_regularizer.get_config())
    for key in ("units", "activation", "use_bias", "dropout", "recurrent_dropout", "recurrent_activation",
                "unit_forget_bias", "reset_after"):
        if key in kc.get_config():
            assert c.get_config()[key] == kc.get_config()[key], key
    assert ours.cell is c   # one object


@pytest.mark.parametrize("cls, kname, kw", CASES)
def test_building_the_layer_builds_the_same_cell(cls, kname, kw):
    ours, theirs = cls(4, **kw), getattr(keras.layers, kname)(4, **kw)
    c, kc = ours.cell, theirs.cell
    ours.build((None, 5, 3))
    theirs.build((None, 5, 3))
    assert ours.cell is c and theirs.cell is kc
    assert c.built and kc.built
    assert [w.shape for w in c.get_weights()] == [tuple(w.shape) for w in kc.get_weights()]
    assert c.params is ours.params
    # the cell steps with the layer's weights: copy Keras's, one step of each cell agrees
    ours.set_weights(theirs.get_weights())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3)).astype("float32")
    states = [rng.standard_normal((2, 4)).astype("float32") for _ in np.atleast_1d(c.state_size)]
    out, new = c(x, states)
    k_out, k_new = kc(x, states if len(states) > 1 else states[0])
    np.testing.assert_allclose(out, keras.ops.convert_to_numpy(k_out), rtol=1e-5, atol=1e-6)
    k_new = k_new if isinstance(k_new, (list, tuple)) else [k_new]
    for a, b in zip(new, k_new):
        np.testing.assert_allclose(a, keras.ops.convert_to_numpy(b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls, kname, kw", CASES)
def test_calling_the_unbuilt_cell_builds_the_layer_once(cls, kname, kw):
    layer = cls(4, return_sequences=True, **kw)
    cell = layer.cell
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 3)).astype("float32")
    out, states = cell(x[:, 0], cell.get_initial_state(2))
    assert layer.built and cell.built
    kernel = layer.params["kernel"]
    assert kernel.shape[0] == 3
    y = layer(x)                      # no rebuild: the layer runs on the weights the cell's call made
    assert layer.params["kernel"] is kernel
    np.testing.assert_allclose(y[:, 0], out, rtol=2e-5, atol=2e-6)
    # Keras behaves the same way: the cell's weights are the layer's
    k = getattr(keras.layers, kname)(4, **kw)
    kc = k.cell
    kc(x[:, 0], kc.get_initial_state(2))
    kk = kc.kernel
    k.build((None, 6, 3))
    assert k.cell.kernel is kk and k.built


def test_unbuilt_cell_rejects_a_bad_step_shape():
    cell = LSTM(4).cell
    with pytest.raises(ValueError, match="lstm_cell.*one step's input must be"):
        cell(np.ones((2, 5, 3), "float32"))
