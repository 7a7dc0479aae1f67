"""utils: to_categorical (Keras values), one_hot, set_random_seed re-export, errors."""
import numpy as np
import pytest

from rnnlab import backend, utils


def test_to_categorical_matches_keras():
    import keras
    for y, n in (([0, 2, 1, 2], None), (np.array([[1], [3]]), 5), (np.array([[0, 1], [2, 0]]), 4)):
        got = utils.to_categorical(y, n)
        ref = keras.utils.to_categorical(y, n)
        assert got.shape == ref.shape
        np.testing.assert_array_equal(got, ref)
        assert got.dtype == np.float32


def test_to_categorical_float_whole_numbers_and_dtype():
    got = utils.to_categorical(np.array([1.0, 0.0]), dtype="float64")
    np.testing.assert_array_equal(got, [[0, 1], [1, 0]])
    assert got.dtype == np.float64


def test_one_hot_keeps_all_axes():
    ids = np.array([[0, 2, 1]])
    out = utils.one_hot(ids, 3)
    assert out.shape == (1, 3, 3)
    np.testing.assert_array_equal(out.argmax(-1), ids)
    assert utils.one_hot(np.array([[1]]), 2).shape == (1, 1, 2)


def test_errors_name_the_value():
    with pytest.raises(ValueError, match="labels must be >= 0, got -1"):
        utils.to_categorical([0, -1, 2])
    with pytest.raises(ValueError, match=r"label 3 is out of range for num_classes=3 \(labels must be in \[0, 3\)\)"):
        utils.to_categorical([0, 3], num_classes=3)
    with pytest.raises(ValueError, match="whole numbers, got 1.5"):
        utils.to_categorical([0.0, 1.5])
    with pytest.raises(ValueError, match="depth must be a positive int, got 0"):
        utils.one_hot([0], 0)
    with pytest.raises(ValueError, match="label 4 is out of range for depth=4"):
        utils.one_hot([[4]], 4)
    with pytest.raises(TypeError, match="labels must be an integer array, got dtype <U1"):
        utils.one_hot(np.array(["a"]), 2)
    with pytest.raises(ValueError, match="empty labels"):
        utils.to_categorical(np.array([], dtype=np.int64))


def test_set_random_seed_is_the_backend_one():
    assert utils.set_random_seed is backend.set_random_seed
    utils.set_random_seed(3)
    a = backend.rng().random(3)
    utils.set_random_seed(3)
    assert np.array_equal(a, backend.rng().random(3))


def test_pydataset_is_keras_utils_name_and_trains_like_arrays():
    """keras.utils.PyDataset code runs with `rnnlab.utils`: a subclass serving the same batches as fit's own
    (unshuffled) batching gives the same weights."""
    from rnnlab.models.data_adapters import PyDataset as engine_pydataset

    assert utils.PyDataset is engine_pydataset
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        utils.NoSuchThing  # noqa: B018

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 3)), rng.normal(size=(12, 1))

    class Batches(utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return x[4 * i:4 * i + 4], y[4 * i:4 * i + 4]

    import rnnlab

    def model():
        utils.set_random_seed(1)
        m = rnnlab.Sequential([rnnlab.layers.Input((3,)), rnnlab.layers.Dense(1)])
        m.compile(optimizer="sgd", loss="mse")
        return m

    a, b = model(), model()
    a.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    b.fit(Batches(), epochs=2, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-12)
