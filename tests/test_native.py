"""The optional compiled scatter kernels (rnnlab._native): built where a C compiler exists, bit-identical to
the NumPy fallback, and word2vec trains to the same vectors on either path."""
import os
import shutil

import numpy as np
import pytest

from rnnlab import _native
from rnnlab.backend import RowSparseGrad
from rnnlab.optimizers import Adam
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
    if os.environ.get("RNNLAB_NO_NATIVE", "") not in ("", "0"):
        pytest.skip("RNNLAB_NO_NATIVE is set: the NumPy fallback was asked for")
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


# ------------------------------------------------------------------ fused Adam step
class _Owner:
    def __init__(self, params):
        self.params, self.grads = params, {}


def _adam_run(make_opt, dtype, sparse, steps=4, seed=0, repeat_rows=False):
    """``steps`` Adam steps on a (V, D) table (sparse or dense gradient) and a 1-D bias (dense), odd sizes
    so the SIMD loop's scalar tail runs too; returns the weights and every slot."""
    rng = np.random.default_rng(seed)
    V, D = 37, 11
    owner = _Owner({"table": rng.standard_normal((V, D)).astype(dtype),
                    "bias": rng.standard_normal(13).astype(dtype)})
    opt = make_opt()
    refs = [("l/table", owner, "table"), ("l/bias", owner, "bias")]
    for step in range(steps):
        n = 9 if step % 2 else 1
        if sparse:
            idx = rng.integers(0, V, n) if repeat_rows else np.sort(rng.choice(V, n, replace=False))
            gt = RowSparseGrad(idx.astype(np.intp), (3 * rng.standard_normal((n, D))).astype(dtype), (V, D))
        else:
            gt = (3 * rng.standard_normal((V, D))).astype(dtype)
            gt[rng.random((V, D)) < 0.3] = 0                       # zero gradients: v may stay 0
        owner.grads = {"table": gt, "bias": rng.standard_normal(13).astype(dtype)}
        opt.apply(refs)
    return [owner.params["table"], owner.params["bias"]] + [a for s in opt._slots.values() for a in s.values()]


_ADAMS = {
    "plain": lambda: Adam(0.01),
    "amsgrad": lambda: Adam(0.01, amsgrad=True),
    "clipnorm": lambda: Adam(0.03, beta_1=0.8, beta_2=0.95, epsilon=1e-4, clipnorm=0.7),
    "global_clipnorm-amsgrad": lambda: Adam(0.02, global_clipnorm=1.5, amsgrad=True),
    "clipvalue-eps0": lambda: Adam(0.01, clipvalue=0.3, epsilon=0.0),
    "lazy": lambda: Adam(0.01, lazy=True),                      # sparse: rnnlab_adam_lazy_*, only the rows given
    "lazy-amsgrad": lambda: Adam(0.02, lazy=True, amsgrad=True),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "rowsparse"])
@pytest.mark.parametrize("name", list(_ADAMS))
def test_adam_native_equals_numpy_bit_for_bit(dtype, sparse, name, numpy_path):
    if not _native.available():
        pytest.skip(f"kernel not in use: {_native.why_unavailable()}")
    a = _adam_run(_ADAMS[name], dtype, sparse)
    numpy_path()
    b = _adam_run(_ADAMS[name], dtype, sparse)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(x, y)
    if "eps0" not in name:                                       # epsilon 0 and a zero gradient: 0/0 on both
        assert all(np.isfinite(x).all() for x in a[:2]), "the weights should stay finite"


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("lazy", [False, True])
def test_adam_native_repeated_rows_last_one_wins_like_numpy(amsgrad, lazy, numpy_path):
    if not _native.available():
        pytest.skip(f"kernel not in use: {_native.why_unavailable()}")
    a = _adam_run(lambda: Adam(0.01, amsgrad=amsgrad, lazy=lazy), "float32", True, repeat_rows=True)
    numpy_path()
    b = _adam_run(lambda: Adam(0.01, amsgrad=amsgrad, lazy=lazy), "float32", True, repeat_rows=True)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_adam_native_nan_gradient_propagates_like_numpy(numpy_path):
    if not _native.available():
        pytest.skip(f"kernel not in use: {_native.why_unavailable()}")
    out = []
    for _ in range(2):
        w = np.arange(12, dtype=np.float32).reshape(3, 4)
        owner = _Owner({"w": w})
        opt = Adam(0.1, amsgrad=True)
        for g in (np.full((3, 4), np.nan, np.float32), np.ones((3, 4), np.float32)):
            owner.grads = {"w": g}
            opt.apply([("w", owner, "w")])
        out.append([w] + list(opt._slots["w"].values()))
        numpy_path()
    for x, y in zip(*out):
        np.testing.assert_array_equal(x, y)
    assert np.isnan(out[0][0]).all()


def test_adam_update_refuses_what_it_cannot_do_exactly():
    if not _native.available():
        pytest.skip(f"kernel not in use: {_native.why_unavailable()}")
    w = np.ones((4, 3), np.float32)
    m, v = np.zeros_like(w), np.zeros_like(w)
    args = (0.9, 0.999, 0.1, 0.001, 1e-7, 0.01)
    before = (w.copy(), m.copy(), v.copy())
    assert not _native.adam_update(w, m, v, None, np.ones((4, 3)), None, *args)           # float64 grad
    assert not _native.adam_update(w, m, v, None, np.ones((3, 4), np.float32), None, *args)  # shape
    assert not _native.adam_update(w, np.zeros((3, 4), np.float32).T, v, None, w, None, *args)  # F order
    assert not _native.adam_update(w, m, v, None, np.ones((1, 3), np.float32), np.array([-1]), *args)
    assert not _native.adam_update(w, m, v, None, np.ones((1, 3), np.float32), np.array([4]), *args)
    assert not _native.adam_update(w.astype(np.float16), m, v, None, w, None, *args)
    for x, y in zip((w, m, v), before):
        np.testing.assert_array_equal(x, y)
    assert _native.adam_update(w, m, v, None, np.ones((1, 3), np.float32), np.array([2]), *args)
    assert (w[2] != 1).all() and (w[[0, 1, 3]] == 1).all()     # m = 0 elsewhere: those rows do not move


def test_adam_lazy_kernel_touches_only_the_given_rows():
    if not _native.available():
        pytest.skip(f"kernel not in use: {_native.why_unavailable()}")
    rng = np.random.default_rng(3)
    w = rng.standard_normal((6, 5)).astype(np.float32)
    m, v = rng.random((6, 5)).astype(np.float32), rng.random((6, 5)).astype(np.float32)
    before = (w.copy(), m.copy(), v.copy())
    g = np.full((2, 5), 0.5, np.float32)
    g[1, 2] = np.nan
    args = (0.9, 0.999, 0.1, 0.001, 1e-7, 0.01)
    assert not _native.adam_update(w, m, v, None, g, None, *args, lazy=True)   # lazy needs rows
    assert _native.adam_update(w, m, v, None, g, np.array([4, 1]), *args, lazy=True)
    for x, x0 in zip((w, m, v), before):
        np.testing.assert_array_equal(x[[0, 2, 3, 5]], x0[[0, 2, 3, 5]])       # untouched, not decayed
        assert (x[4] != x0[4]).all()
        assert np.isnan(x[1, 2]) and np.isfinite(np.delete(x[1], 2)).all()     # NaN stays in its element
