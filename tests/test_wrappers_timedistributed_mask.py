"""TimeDistributed hands the incoming mask to the layer it wraps (Keras 3's time_distributed_test.py masking case,
ported: a mask-aware Dense wrapper zeroes the masked steps), with a finite-difference check of that path."""
import numpy as np
import pytest

from rnnlab import initializers
from rnnlab.layers import Dense, Layer, TimeDistributed
from rnnlab.testing import check_layer_gradients


class MaskedDense(Layer):
    """Dense whose output is multiplied by the mask it receives (one entry per sample), as in Keras's test."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.layer = Dense(units, kernel_initializer=initializers.Constant(0.01), use_bias=False)
        self._sublayers = [self.layer]
        self.seen_masks = []

    def build(self, input_shape):
        self.layer._maybe_build(input_shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def forward(self, x, training=False, mask=None):
        self.seen_masks.append(None if mask is None else np.array(mask))
        y = self.layer.forward(x, training=training)
        m = np.ones(len(x), x.dtype) if mask is None else np.asarray(mask, x.dtype)
        self._cache = m
        return y * m[:, None]

    def backward(self, grad):
        m = self._need_cache()
        return self.layer.backward(grad * m[:, None])


def test_keras_masking_case():
    # keras/src/layers/rnn/time_distributed_test.py::test_masking
    sequence = np.arange(24).reshape((3, 2, 4)).astype("float32")
    layer = TimeDistributed(MaskedDense(1))
    mask = np.array([[False, True], [True, False], [True, True]])
    out = layer(sequence, mask=mask)
    np.testing.assert_allclose(out, np.array([[[0], [0.22]], [[0.38], [0]], [[0.7], [0.86]]]), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(layer.layer.seen_masks[-1], mask.reshape(-1))
    assert layer.compute_mask(sequence, mask) is mask


def test_keras_correctness_case_without_mask():
    # keras/src/layers/rnn/time_distributed_test.py::test_correctness
    sequence = np.arange(24).reshape((3, 2, 4)).astype("float32")
    layer = TimeDistributed(Dense(1, kernel_initializer=initializers.Constant(0.01), use_bias=False))
    np.testing.assert_allclose(layer(sequence), [[[0.06], [0.22]], [[0.38], [0.54]], [[0.7], [0.86]]], rtol=1e-6)
    inner = MaskedDense(1)
    TimeDistributed(inner)(sequence)
    assert inner.seen_masks[-1] is None


def test_masked_path_gradients(float64):
    x = np.random.default_rng(0).standard_normal((3, 4, 2))
    mask = np.random.default_rng(1).random((3, 4)) > 0.4
    check_layer_gradients(TimeDistributed(MaskedDense(3)), x, mask=mask)


def test_bad_mask_shape_is_a_clear_error():
    layer = TimeDistributed(MaskedDense(1), name="td")
    with pytest.raises(ValueError, match=r"'td'.*mask must have shape \(batch, timesteps\) = \(3, 2\), got \(3, 3\)"):
        layer(np.zeros((3, 2, 4), "float32"), mask=np.ones((3, 3), bool))
