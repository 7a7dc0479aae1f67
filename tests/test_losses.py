"""Losses: values and gradients against PyTorch and Keras 3 (float64), masking, weights, errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rnnlab import losses
from rnnlab.testing import numerical_gradient, rel_error

TOL = 1e-6


def _torch(x, grad=True):
    return torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=grad)


def _num_grad(loss, y_true, y_pred, eps=1e-6, **kw):
    return numerical_gradient(lambda: loss(y_true, y_pred, **kw), y_pred, eps)


@pytest.fixture
def gen():
    return np.random.default_rng(7)


# ------------------------------------------------------------------------ torch parity
def test_bce_probs_matches_torch(gen):
    p = gen.uniform(0.02, 0.98, size=(6, 3))
    t = (gen.uniform(size=(6, 3)) > 0.5).astype(np.float64)
    v, g = losses.BinaryCrossentropy().forward_backward(t, p)
    tp = _torch(p)
    ref = torch.nn.BCELoss()(tp, _torch(t, False))
    ref.backward()
    assert abs(v - ref.item()) <= TOL * abs(ref.item())
    assert rel_error(g, tp.grad.numpy()) < TOL


def test_bce_logits_matches_torch_including_large_logits(gen):
    x = gen.standard_normal((5, 4)) * 5
    x[0, 0], x[1, 1] = 60.0, -80.0  # stable path: no overflow, no nan
    t = gen.uniform(size=(5, 4))  # soft labels
    v, g = losses.BinaryCrossentropy(from_logits=True).forward_backward(t, x)
    tx = _torch(x)
    ref = torch.nn.BCEWithLogitsLoss()(tx, _torch(t, False))
    ref.backward()
    assert np.isfinite(v)
    assert abs(v - ref.item()) <= TOL * abs(ref.item())
    assert rel_error(g, tx.grad.numpy()) < TOL


def test_cce_logits_matches_torch_cross_entropy(gen):
    x = gen.standard_normal((7, 5)) * 3
    lab = gen.integers(0, 5, size=7)
    t = np.eye(5)[lab]
    for loss, target in ((losses.CategoricalCrossentropy(from_logits=True), t),
                         (losses.SparseCategoricalCrossentropy(from_logits=True), lab)):
        v, g = loss.forward_backward(target, x)
        tx = _torch(x)
        ref = torch.nn.CrossEntropyLoss()(tx, torch.tensor(lab))
        ref.backward()
        assert abs(v - ref.item()) <= TOL * abs(ref.item())
        assert rel_error(g, tx.grad.numpy()) < TOL


def test_sparse_probs_matches_torch_nll_on_log_probs(gen):
    p = gen.uniform(0.05, 1.0, size=(6, 4))
    p /= p.sum(axis=1, keepdims=True)
    lab = gen.integers(0, 4, size=6)
    for loss, target in ((losses.SparseCategoricalCrossentropy(), lab),
                         (losses.CategoricalCrossentropy(), np.eye(4)[lab])):
        v, g = loss.forward_backward(target, p)
        tp = _torch(p)
        # Keras renormalises the probabilities first: the torch graph does the same
        ref = F.nll_loss(torch.log(tp / tp.sum(dim=1, keepdim=True)), torch.tensor(lab))
        ref.backward()
        assert abs(v - ref.item()) <= TOL * abs(ref.item())
        assert rel_error(g, tp.grad.numpy()) < TOL


def test_sequence_sparse_logits_with_mask_matches_torch_ignore_index(gen):
    b, t, c = 3, 5, 6
    x = gen.standard_normal((b, t, c))
    lab = gen.integers(0, c, size=(b, t))
    mask = np.ones((b, t), bool)
    mask[0, 3:] = False
    mask[2, 1:] = False
    v, g = losses.SparseCategoricalCrossentropy(from_logits=True).forward_backward(lab, x, mask=mask)
    tx = _torch(x)
    tl = torch.tensor(np.where(mask, lab, -100))
    ref = F.cross_entropy(tx.reshape(-1, c), tl.reshape(-1), ignore_index=-100)
    ref.backward()
    assert abs(v - ref.item()) <= TOL * abs(ref.item())
    assert rel_error(g, tx.grad.numpy()) < TOL
    assert np.all(g[~mask] == 0)


def test_mse_and_mae_match_torch(gen):
    y = gen.standard_normal((4, 3))
    t = gen.standard_normal((4, 3))
    for loss, ref_fn in ((losses.MeanSquaredError(), torch.nn.MSELoss()), (losses.get("mae"), torch.nn.L1Loss())):
        v, g = loss.forward_backward(t, y)
        ty = _torch(y)
        ref = ref_fn(ty, _torch(t, False))
        ref.backward()
        assert abs(v - ref.item()) <= TOL * abs(ref.item())
        assert rel_error(g, ty.grad.numpy()) < TOL


# ------------------------------------------------------------------------ keras parity
CASES = [
    ("binary_crossentropy", False, "bin"), ("binary_crossentropy", True, "bin"),
    ("categorical_crossentropy", False, "cat"), ("categorical_crossentropy", True, "cat"),
    ("sparse_categorical_crossentropy", False, "sparse"), ("sparse_categorical_crossentropy", True, "sparse"),
    ("mean_squared_error", None, "reg"), ("mean_absolute_error", None, "reg"),
]


def _data(kind, from_logits, gen, shape=(4, 3, 5)):
    if kind == "bin":
        y = gen.standard_normal(shape) * 2 if from_logits else gen.uniform(0.01, 0.99, shape)
        return (gen.uniform(size=shape) > 0.5).astype(np.float64), y
    if kind in ("cat", "sparse"):
        y = gen.standard_normal(shape) * 2 if from_logits else gen.uniform(0.01, 1.0, shape)
        lab = gen.integers(0, shape[-1], size=shape[:-1])
        return (lab if kind == "sparse" else np.eye(shape[-1])[lab]), y
    return gen.standard_normal(shape), gen.standard_normal(shape)


@pytest.mark.parametrize("name,from_logits,kind", CASES)
def test_values_match_keras_with_mask_and_sample_weight(name, from_logits, kind, gen):
    import keras
    kcls = {"binary_crossentropy": keras.losses.BinaryCrossentropy,
            "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
            "sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy,
            "mean_squared_error": keras.losses.MeanSquaredError,
            "mean_absolute_error": keras.losses.MeanAbsoluteError}[name]
    kw = {} if from_logits is None else {"from_logits": from_logits}
    kloss = kcls(dtype="float64", **kw)
    ours = losses.get(name) if from_logits is None else type(losses.get(name))(from_logits=from_logits)
    y_true, y_pred = _data(kind, from_logits, gen)
    assert abs(ours(y_true, y_pred) - float(kloss(y_true, y_pred))) <= TOL * abs(float(kloss(y_true, y_pred)))
    sw = gen.uniform(0.1, 2.0, size=(4, 3))
    got = ours(y_true, y_pred, sample_weight=sw)
    ref = float(kloss(y_true, y_pred, sample_weight=sw))
    assert abs(got - ref) <= TOL * abs(ref)
    # masked steps: Keras reads the mask attached to y_pred (_keras_mask) and averages over valid entries
    mask = np.ones((4, 3), bool)
    mask[1, 1:] = False
    mask[3, 2] = False
    typ = keras.ops.convert_to_tensor(y_pred, dtype="float64")
    typ._keras_mask = keras.ops.convert_to_tensor(mask)
    ref = float(kloss(y_true, typ, sample_weight=sw))
    got = ours(y_true, y_pred, sample_weight=sw, mask=mask)
    assert abs(got - ref) <= TOL * abs(ref)


@pytest.mark.parametrize("name,from_logits,kind", CASES)
def test_gradients_match_finite_differences_with_mask_and_weights(name, from_logits, kind, gen):
    ours = losses.get(name) if from_logits is None else type(losses.get(name))(from_logits=from_logits)
    y_true, y_pred = _data(kind, from_logits, gen, shape=(3, 2, 4))
    if kind == "reg" and name == "mean_absolute_error":
        y_pred = y_true + np.sign(gen.standard_normal(y_true.shape)) * gen.uniform(0.1, 1.0, y_true.shape)
    sw = gen.uniform(0.1, 2.0, size=(3,))
    mask = np.array([[1, 1], [1, 0], [0, 1]], bool)
    v, g = ours.forward_backward(y_true, y_pred, sample_weight=sw, mask=mask)
    num = _num_grad(ours, y_true, y_pred, sample_weight=sw, mask=mask)
    assert abs(v - ours(y_true, y_pred, sample_weight=sw, mask=mask)) == 0
    assert g.shape == y_pred.shape and g.dtype == y_pred.dtype
    assert rel_error(g, num) < 1e-7


def test_clipping_zeroes_gradient_and_matches_keras_at_extremes():
    import keras
    p = np.array([[0.0, 1.0, 0.3, 1e-9]])
    t = np.array([[1.0, 0.0, 1.0, 1.0]])
    v, g = losses.BinaryCrossentropy().forward_backward(t, p)
    ref = float(keras.losses.BinaryCrossentropy(dtype="float64")(t, p))
    assert np.isfinite(v) and abs(v - ref) <= TOL * ref
    assert g[0, 0] == 0 and g[0, 1] == 0 and g[0, 3] == 0 and g[0, 2] != 0


def test_per_sample_weight_broadcasts_over_time(gen):
    lab = gen.integers(0, 3, size=(2, 4))
    x = gen.standard_normal((2, 4, 3))
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    a = loss(lab, x, sample_weight=np.array([2.0, 0.5]))
    b = loss(lab, x, sample_weight=np.array([[2.0] * 4, [0.5] * 4]))
    assert a == pytest.approx(b, rel=1e-12)
    assert a != pytest.approx(loss(lab, x), rel=1e-6)


def test_all_masked_gives_zero_loss_and_gradient(gen):
    x = gen.standard_normal((2, 3, 4))
    v, g = losses.CategoricalCrossentropy(from_logits=True).forward_backward(
        np.eye(4)[gen.integers(0, 4, (2, 3))], x, mask=np.zeros((2, 3), bool))
    assert v == 0.0 and not np.any(g)


def test_reduction_sum(gen):
    y, t = gen.standard_normal((5, 2)), gen.standard_normal((5, 2))
    assert losses.MeanSquaredError(reduction="sum")(t, y) == pytest.approx(5 * losses.mse(t, y), rel=1e-12)


def test_float32_gradient_dtype_and_vector_predictions(gen):
    p = gen.uniform(0.1, 0.9, size=(8, 1)).astype(np.float32)
    t = (gen.uniform(size=8) > 0.5).astype(np.int64)  # (B,) labels with (B, 1) predictions
    v, g = losses.get("binary_crossentropy").forward_backward(t, p)
    assert g.dtype == np.float32 and g.shape == (8, 1)
    v1, g1 = losses.get("binary_crossentropy").forward_backward(t, p[:, 0])
    assert v1 == pytest.approx(v, rel=1e-6) and g1.shape == (8,)


# ------------------------------------------------------------------------ get / errors
def test_get_names_instances_classes_and_serialize():
    assert isinstance(losses.get("mse"), losses.MeanSquaredError)
    assert isinstance(losses.get("mean_squared_error"), losses.MeanSquaredError)
    assert isinstance(losses.get("SparseCategoricalCrossentropy"), losses.SparseCategoricalCrossentropy)
    inst = losses.BinaryCrossentropy(from_logits=True)
    assert losses.get(inst) is inst
    assert isinstance(losses.get(losses.binary_crossentropy), losses.BinaryCrossentropy)
    back = losses.get(losses.serialize(inst))
    assert isinstance(back, losses.BinaryCrossentropy) and back.from_logits is True
    with pytest.raises(ValueError, match="Unknown loss 'msee'.*mean_squared_error"):
        losses.get("msee")
    with pytest.raises(TypeError, match="loss identifier"):
        losses.get(3.5)


def test_validation_errors():
    with pytest.raises(ValueError, match=r"label 5 is out of range.*\[0, 3\)"):
        losses.sparse_categorical_crossentropy(np.array([0, 5]), np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"label -1 is out of range"):
        losses.sparse_categorical_crossentropy(np.array([0, -1]), np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"y_true.shape=\(3,\).*y_pred.shape=\(2, 3\)"):
        losses.sparse_categorical_crossentropy(np.array([0, 1, 2]), np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"same shape.*\(4, 1\).*\(3, 1\)"):
        losses.binary_crossentropy(np.zeros((4, 1)), np.full((3, 1), 0.5))
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy"):
        losses.categorical_crossentropy(np.array([0, 1]), np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="non-integer value 0.5"):
        losses.sparse_categorical_crossentropy(np.array([0.5, 1.0]), np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 3\).*\(2, 4\)"):
        losses.mse(np.zeros((2, 3, 1)), np.zeros((2, 3, 1)), mask=np.ones((2, 4), bool))
    with pytest.raises(ValueError, match=r"sample_weight must have shape"):
        losses.mse(np.zeros((2, 3)), np.zeros((2, 3)), sample_weight=np.ones(3))
    with pytest.raises(TypeError, match="y_pred must be a float array"):
        losses.mse(np.zeros((2, 3)), np.array([["a"] * 3] * 2))
    with pytest.raises(ValueError, match="reduction"):
        losses.MeanSquaredError(reduction="avg")
