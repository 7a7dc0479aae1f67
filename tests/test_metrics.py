"""Metrics: Keras parity over several batches with sample weights and masks, accuracy selection, errors."""
import numpy as np
import pytest

from rnnlab import losses, metrics


@pytest.fixture
def gen():
    return np.random.default_rng(0)


def _keras_stream(kmetric, batches):
    import keras
    for yt, yp, sw, mask in batches:
        p = keras.ops.convert_to_tensor(yp, dtype="float64")
        if mask is not None:
            p._keras_mask = keras.ops.convert_to_tensor(mask)
        if sw is not None and mask is not None:
            # Keras cannot broadcast a (B,) weight against a (B, T) mask: give it the (B, T) weight we imply
            sw = np.broadcast_to(sw[:, None], mask.shape)
        kmetric.update_state(yt, p, sample_weight=sw)
    return float(kmetric.result())


def _ours_stream(m, batches):
    for yt, yp, sw, mask in batches:
        m.update(yt, yp, sample_weight=sw, mask=mask)
    return m.result()


def _batches(kind, gen, seq=True):
    out = []
    for b in range(3):
        shape = (4, 5, 3) if seq else (6, 3)
        lead = shape[:-1]
        if kind == "binary":
            yp = gen.uniform(size=shape[:-1] + (1,))
            yt = (gen.uniform(size=yp.shape) > 0.5).astype(np.float64)
        elif kind in ("categorical", "sparse"):
            yp = gen.uniform(size=shape)
            lab = gen.integers(0, 3, size=lead)
            yt = lab if kind == "sparse" else np.eye(3)[lab]
        else:
            yp, yt = gen.standard_normal(shape), gen.standard_normal(shape)
        sw = gen.uniform(0.2, 2.0, size=lead[:1]) if b != 1 else None
        mask = None
        if seq and b != 2:
            mask = gen.uniform(size=lead) > 0.3
            mask[:, 0] = True
        out.append((yt, yp, sw, mask))
    return out


CASES = [("binary", "binary_accuracy", "BinaryAccuracy"), ("categorical", "categorical_accuracy", "CategoricalAccuracy"),
         ("sparse", "sparse_categorical_accuracy", "SparseCategoricalAccuracy"),
         ("reg", "mae", "MeanAbsoluteError"), ("reg", "mse", "MeanSquaredError")]


@pytest.mark.parametrize("kind,name,kcls", CASES)
@pytest.mark.parametrize("seq", [False, True])
def test_streaming_matches_keras_with_weights_and_masks(kind, name, kcls, seq, gen):
    import keras
    batches = _batches(kind, gen, seq)
    ref = _keras_stream(getattr(keras.metrics, kcls)(dtype="float64"), batches)
    m = metrics.get(name)
    got = _ours_stream(m, batches)
    assert m.name == name
    assert got == pytest.approx(ref, rel=1e-6, abs=1e-12)  # Keras accumulates some metrics in float32
    m.reset()
    assert m.result() == 0.0 and m.count == 0


def test_masked_steps_are_ignored():
    m = metrics.get("sparse_categorical_accuracy")
    yp = np.array([[[0.9, 0.1], [0.9, 0.1], [0.9, 0.1]]])
    yt = np.array([[0, 1, 1]])  # only the first step is right
    m.update(yt, yp, mask=np.array([[True, False, False]]))
    assert m.result() == 1.0
    m.update(yt, yp)
    assert m.result() == pytest.approx(2 / 4)


def test_accuracy_is_picked_from_the_loss_or_the_shapes():
    assert metrics.get("accuracy", loss="binary_crossentropy").kind == "binary_accuracy"
    assert metrics.get("accuracy", loss="categorical_crossentropy").kind == "categorical_accuracy"
    assert metrics.get("acc", loss=losses.SparseCategoricalCrossentropy(from_logits=True)).kind == \
        "sparse_categorical_accuracy"
    m = metrics.get("accuracy")
    assert m.name == "accuracy" and m.kind is None
    m.update(np.array([1, 0]), np.array([[0.8], [0.7]]))  # one output unit -> binary, threshold 0.5
    assert m.kind == "binary_accuracy" and m.result() == 0.5
    m = metrics.get("accuracy", loss="mse")
    m.update(np.array([2, 0]), np.array([[0.1, 0.2, 0.7], [0.5, 0.2, 0.3]]))
    assert m.kind == "sparse_categorical_accuracy" and m.result() == 1.0
    m = metrics.get("accuracy")
    m.update(np.eye(3)[[2, 1]], np.array([[0.1, 0.2, 0.7], [0.5, 0.2, 0.3]]))
    assert m.kind == "categorical_accuracy" and m.result() == 0.5
    assert metrics.get("acc").name == "acc"


def test_binary_accuracy_on_logits_thresholds_at_zero():
    m = metrics.get("accuracy", loss=losses.BinaryCrossentropy(from_logits=True))
    m.update(np.array([1, 0, 1]), np.array([[0.3], [-0.2], [-1.0]]))
    assert m.result() == pytest.approx(2 / 3)


def test_errors():
    with pytest.raises(ValueError, match="Unknown metric 'acuracy'.*accuracy"):
        metrics.get("acuracy")
    with pytest.raises(ValueError, match=r"y_true must have shape y_pred.shape\[:-1\] = \(2,\), got \(3,\)"):
        metrics.get("sparse_categorical_accuracy").update(np.array([0, 1, 2]), np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 4\)"):
        metrics.get("mae").update(np.ones((2, 4, 1)), np.ones((2, 4, 1)), mask=np.ones((2, 5), bool))
    with pytest.raises(ValueError, match="sample_weight must have shape"):
        metrics.get("mse").update(np.ones((2, 3)), np.ones((2, 3)), sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="categorical_accuracy.*sparse_categorical_accuracy"):
        metrics.get("categorical_accuracy").update(np.array([0, 1]), np.ones((2, 3)))
    with pytest.raises(TypeError, match="metric identifier"):
        metrics.get(42)
