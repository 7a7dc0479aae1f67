"""The optional compiled scatter kernels (rnnlab._native): built where a C compiler exists, bit-identical to
the NumPy fallback, and word2vec trains to the same vectors on either path."""
import shutil

import numpy as np
import pytest

from rnnlab import _native
from rnnlab.embeddings import word2vec as w2v
from rnnlab.embeddings.word2vec import Word2Vec


@pytest.fixture
def numpy_path(monkeypatch):
    """Run the NumPy fallback inside the test."""
    def use_numpy():
        monkeypatch.setattr(_native, "_LIB", None)
    return use_numpy


def test_kernel_is_built_where_a_compiler_exists():
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler on this machine: the NumPy fallback is the expected path")
    assert _native.available(), _native.why_unavailable()


def _problem(dtype, seed=0, V=50, D=7, n=400):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((V, D)).astype(dtype)
    idx = rng.integers(0, V // 5, n)           # many repeats
    return W, idx, rng


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_scatter_add_native_equals_numpy_bit_for_bit(dtype, numpy_path):
    if not _native.available():
        pytest.skip(f"kernel not in use: {_native.why_unavailable()}")
    W, idx, rng = _problem(dtype)
    rows = rng.standard_normal((len(idx), W.shape[1])).astype(dtype)
    coef = rng.standard_normal((len(idx) // 4, 4)).astype(dtype)
    H = rng.standard_normal((len(idx) // 4, W.shape[1])).astype(dtype)
    a, b = W.copy(), W.copy()
    _native.scatter_add(a, idx, rows)
    _native.scatter_add_outer(b, idx, coef, H)
    numpy_path()
    a2, b2 = W.copy(), W.copy()
    _native.scatter_add(a2, idx, rows)
    _native.scatter_add_outer(b2, idx, coef, H)
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(b, b2)


@pytest.mark.parametrize("native", [True, False])
def test_scatter_add_values(native, numpy_path):
    if not native:
        numpy_path()
    W, idx, rng = _problem("float64")
    rows = rng.standard_normal((len(idx), W.shape[1]))
    want = W.copy()
    for i, r in zip(idx, rows):                # the definition, one row at a time
        want[i] += r
    got = W.copy()
    _native.scatter_add(got, idx, rows)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    coef = rng.standard_normal((len(idx) // 4, 4))
    H = rng.standard_normal((len(idx) // 4, W.shape[1]))
    want = W.copy()
    for n in range(coef.shape[0]):
        for k in range(4):
            want[idx[4 * n + k]] += coef[n, k] * H[n]
    got = W.copy()
    _native.scatter_add_outer(got, idx.reshape(-1, 4), coef, H)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_bad_input_is_refused_before_any_write():
    W = np.zeros((5, 3), np.float32)
    with pytest.raises(ValueError, match=r"indices must be in \[0, 5\), got \[0, 5\]"):
        _native.scatter_add(W, np.array([0, 5]), np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"indices must be in \[0, 5\)"):
        _native.scatter_add_outer(W, np.array([[-1, 0]]), np.ones((1, 2), np.float32), np.ones((1, 3), np.float32))
    with pytest.raises(ValueError, match=r"rows must have shape \(n, 3\), got \(2, 4\)"):
        _native.scatter_add(W, np.array([0, 1]), np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="3 indices for 2 rows"):
        _native.scatter_add(W, np.array([0, 1, 2]), np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        _native.scatter_add(np.zeros((3, 5), np.float32).T, np.array([0]), np.ones((1, 3), np.float32))
    with pytest.raises(TypeError, match="float32 or float64, got int64"):
        _native.scatter_add(np.zeros((5, 3), np.int64), np.array([0]), np.ones((1, 3)))
    assert not W.any()


def test_cbow_factored_output_is_the_same_gradient():
    rng = np.random.default_rng(4)
    V, D, N, w, K = 13, 5, 21, 2, 3
    syn0, syn1 = rng.standard_normal((V, D)), rng.standard_normal((V, D))
    words, neg = rng.integers(0, V, N), rng.integers(0, V, (N, K))
    sid, red = np.repeat([0, 1, 2], 7), rng.integers(1, w + 1, N)
    loss, ii, ir, oi, orr = w2v.batch_loss_and_grads(syn0, syn1, words, sid, red, neg, 0, w)
    loss2, ii2, ir2, (targets, d, H) = w2v.batch_loss_and_grads(syn0, syn1, words, sid, red, neg, 0, w,
                                                                factored_output=True)
    assert loss2 == loss
    np.testing.assert_array_equal(ir2, ir)
    np.testing.assert_array_equal(targets.ravel(), oi)
    np.testing.assert_array_equal((d[:, :, None] * H[:, None, :]).reshape(-1, D), orr)
    with pytest.raises(ValueError, match="CBOW"):
        w2v.batch_loss_and_grads(syn0, syn1, words, sid, red, neg, 1, w, factored_output=True)


@pytest.mark.parametrize("sg", [0, 1])
def test_word2vec_same_vectors_on_both_paths(sg, numpy_path):
    if not _native.available():
        pytest.skip(f"kernel not in use: {_native.why_unavailable()}")
    rng = np.random.default_rng(0)
    sents = [[f"w{i}" for i in rng.integers(0, 40, 12)] for _ in range(150)]
    a = Word2Vec(sents, vector_size=16, window=3, min_count=1, sg=sg, epochs=2, seed=5)
    numpy_path()
    b = Word2Vec(sents, vector_size=16, window=3, min_count=1, sg=sg, epochs=2, seed=5)
    np.testing.assert_array_equal(a.wv.vectors, b.wv.vectors)
    np.testing.assert_array_equal(a.syn1neg, b.syn1neg)
