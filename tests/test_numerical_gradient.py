"""rnnlab.testing.numerical_gradient: the central differences every finite-difference check uses."""
import numpy as np
import pytest

from rnnlab.testing import numerical_gradient


def test_central_differences_restore_the_array():
    a = np.random.default_rng(0).standard_normal((3, 4))
    before = a.copy()
    g = numerical_gradient(lambda: float(np.sum(a ** 3)), a)
    np.testing.assert_allclose(g, 3 * before ** 2, rtol=1e-7, atol=1e-9)
    assert np.array_equal(a, before) and g.dtype == np.float64


def test_strided_view_and_scalar():
    base = np.random.default_rng(1).standard_normal((4, 6))
    view = base[:, ::2]                      # not contiguous: changed in place through the view
    g = numerical_gradient(lambda: float(np.sum(np.sin(base))), view)
    np.testing.assert_allclose(g, np.cos(view), rtol=1e-7, atol=1e-9)
    s = np.array(0.5)
    assert numerical_gradient(lambda: float(s) ** 2, s) == pytest.approx(1.0)


def test_refuses_what_it_cannot_change_in_place():
    with pytest.raises(TypeError, match="arr must be the NumPy array f reads"):
        numerical_gradient(lambda: 0.0, [1.0, 2.0])


def test_indices_spot_check_in_order():
    a = np.random.default_rng(2).standard_normal((3, 4))
    before = a.copy()
    picks = [(2, 1), (0, 3), (2, 1)]
    g = numerical_gradient(lambda: float(np.sum(a ** 3)), a, indices=picks)
    np.testing.assert_allclose(g, [3 * before[i] ** 2 for i in picks], rtol=1e-7, atol=1e-9)
    assert g.shape == (3,) and np.array_equal(a, before)
    v = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(numerical_gradient(lambda: float(v @ v), v, indices=[2, 0]), [4.0, 1.0], rtol=1e-7)
