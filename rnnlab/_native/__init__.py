"""Row scatter-adds, with an optional compiled kernel and an exact NumPy fallback.

``scatter_add(W, idx, rows)`` does ``W[idx[i]] += rows[i]`` with repeated indices adding up, and
``scatter_add_outer(W, idx, coef, H)`` does ``W[idx[n, k]] += coef[n, k] * H[n]`` without building the
``(N, K, D)`` products. word2vec spends most of its time here: NumPy's only tool for it, ``np.add.at``,
walks the flat element indices one at a time (about 3-8 ns a value), where a C loop over whole rows runs
at memory speed.

``setup.py`` builds ``_kernels.c`` when the machine has a C compiler (``optional=True``: the install
succeeds without one). Both paths visit the rows in the same order and round the same way (the C file
is compiled with ``-ffp-contract=off``), so they give bit-identical arrays; the tests check that.
Set ``RNNLAB_NO_NATIVE=1`` to force the NumPy path. :func:`available` says whether the kernel is in use.
"""
from __future__ import annotations

import ctypes
import os

import numpy as np

from ..backend import empty_aligned

_LIB = None
_WHY_NOT = None


def _load():
    global _LIB, _WHY_NOT
    if os.environ.get("RNNLAB_NO_NATIVE", "") not in ("", "0"):
        _WHY_NOT = "disabled by RNNLAB_NO_NATIVE"
        return
    try:
        from . import _kernels  # the extension module; its shared library also holds the C functions
    except ImportError as e:
        _WHY_NOT = f"not built ({e}); reinstall with a C compiler present (pip install -e .)"
        return
    try:
        lib = ctypes.CDLL(_kernels.__file__)
    except OSError as e:  # pragma: no cover - the module imported, so its file loads
        _WHY_NOT = f"cannot load {_kernels.__file__}: {e}"
        return
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    for suffix in ("f32", "f64"):
        getattr(lib, f"rnnlab_scatter_add_{suffix}").argtypes = [p, p, p, i64, i64]
        getattr(lib, f"rnnlab_scatter_add_outer_{suffix}").argtypes = [p, p, p, p, i64, i64, i64]
        getattr(lib, f"rnnlab_embedding_grad_{suffix}").argtypes = [p, p, i64, i64, i64, p, p, p, p]
        getattr(lib, f"rnnlab_embedding_grad_{suffix}").restype = i64
        getattr(lib, f"rnnlab_onehot_rows_{suffix}").argtypes = [p, i64, i64, i64, p]
        getattr(lib, f"rnnlab_onehot_rows_{suffix}").restype = i64
        for kind in ("adam", "adam_lazy"):
            fn = getattr(lib, f"rnnlab_{kind}_{suffix}")
            fn.argtypes = [p, p, p, p, p, p, i64, i64, i64] + [ctypes.c_double] * 6
            fn.restype = ctypes.c_int
    lib.rnnlab_lstm_infer_f32.argtypes = [p, p, p, p, p, p, p, p, i64, i64, i64, i64, i64]
    lib.rnnlab_lstm_infer_f32.restype = ctypes.c_int
    lib.rnnlab_gru_infer_f32.argtypes = [p, p, p, p, p, p, p, p, i64, i64, i64, i64, i64]
    lib.rnnlab_gru_infer_f32.restype = ctypes.c_int
    lib.rnnlab_rnn_infer_f32.argtypes = [p, p, p, p, p, p, i64, i64, i64, i64]
    lib.rnnlab_rnn_infer_f32.restype = ctypes.c_int
    lib.rnnlab_lstm_gates_fwd_f32.argtypes = [p, p, p, p, p, p, p, i64, i64, i64]
    lib.rnnlab_lstm_gates_fwd_f32.restype = ctypes.c_int
    lib.rnnlab_lstm_gates_bwd_f32.argtypes = [p, p, p, p, p, p, p, i64, i64, i64]
    lib.rnnlab_lstm_gates_bwd_f32.restype = ctypes.c_int
    lib.rnnlab_gru_gates_fwd_f32.argtypes = [p, p, p, p, p, p, i64, i64, i64]
    lib.rnnlab_gru_gates_fwd_f32.restype = ctypes.c_int
    lib.rnnlab_gru_gates_bwd_f32.argtypes = [p, p, p, p, p, p, i64, i64, i64]
    lib.rnnlab_gru_gates_bwd_f32.restype = ctypes.c_int
    lib.rnnlab_lstm_fwd_loop_f32.argtypes = [p, p, i64, i64, p, p, p, p, p, p, p, i64, i64, i64, i64, i64, p, p]
    lib.rnnlab_lstm_fwd_loop_f32.restype = ctypes.c_int
    lib.rnnlab_lstm_bwd_loop_f32.argtypes = [p, p, p, p, p, i64, i64, p, p, p, p, i64, i64, i64, i64, i64]
    lib.rnnlab_lstm_bwd_loop_f32.restype = ctypes.c_int
    lib.rnnlab_gru_bwd_loop_f32.argtypes = [p, p, p, p, p, i64, i64, p, p, p, i64, i64, i64, i64, i64]
    lib.rnnlab_gru_bwd_loop_f32.restype = ctypes.c_int
    if hasattr(lib, "rnnlab_lstm_bwd_loop_masked_f32"):   # (a library built before the masked loops: None below)
        lib.rnnlab_lstm_bwd_loop_masked_f32.argtypes = lib.rnnlab_lstm_bwd_loop_f32.argtypes + [p, p, p, p, p]
        lib.rnnlab_lstm_bwd_loop_masked_f32.restype = ctypes.c_int
        lib.rnnlab_gru_bwd_loop_masked_f32.argtypes = lib.rnnlab_gru_bwd_loop_f32.argtypes + [p, p, p, p]
        lib.rnnlab_gru_bwd_loop_masked_f32.restype = ctypes.c_int
    lib.rnnlab_gru_fwd_loop_f32.argtypes = [p, p, i64, i64, p, p, p, p, p, p, i64, i64, i64, i64, i64]
    lib.rnnlab_gru_fwd_loop_f32.restype = ctypes.c_int
    lib.rnnlab_tanh_approx_f32_isa.argtypes = [p, p, i64, i64]
    lib.rnnlab_cells_isa.argtypes = [i64]
    lib.rnnlab_cells_isa.restype = ctypes.c_int
    lib.rnnlab_step_isa.argtypes = [i64]
    lib.rnnlab_step_isa.restype = ctypes.c_int
    lib.rnnlab_packed_size.argtypes = [i64, i64]
    lib.rnnlab_packed_size.restype = i64
    lib.rnnlab_pack_f32.argtypes = [p, i64, i64, p, i64, i64]
    lib.rnnlab_pack_f32.restype = None
    lib.rnnlab_gemm_isa.argtypes = []
    lib.rnnlab_gemm_isa.restype = ctypes.c_int
    lib.rnnlab_gemm_packed_f32.argtypes = [p, i64, i64, p, i64, i64, i64, i64, i64, p]
    lib.rnnlab_gemm_prefetch_min.argtypes = [i64]
    lib.rnnlab_gemm_prefetch_min.restype = i64
    lib.rnnlab_gemm_mc.argtypes = [i64]
    lib.rnnlab_gemm_mc.restype = i64
    lib.rnnlab_gemm_packed_f32.restype = ctypes.c_int
    _LIB = lib


_load()


def available() -> bool:
    """True when the compiled kernel is loaded (else the NumPy fallback runs)."""
    return _LIB is not None


def why_unavailable() -> str | None:
    """Why the NumPy fallback is used (``None`` when the kernel is loaded)."""
    return _WHY_NOT


_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def _check(W, idx, n_rows, what):
    if not (isinstance(W, np.ndarray) and W.ndim == 2 and W.flags.c_contiguous and W.flags.writeable):
        raise ValueError(f"{what}: W must be a writeable C-contiguous 2-D array, got "
                         f"{type(W).__name__} {getattr(W, 'shape', '')}")
    if W.dtype not in _SUFFIX:
        raise TypeError(f"{what}: W must be float32 or float64, got {W.dtype}")
    idx = np.ascontiguousarray(idx, dtype=np.int64).reshape(-1)
    if idx.size != n_rows:
        raise ValueError(f"{what}: {idx.size} indices for {n_rows} rows")
    if idx.size and (idx.min() < 0 or idx.max() >= W.shape[0]):
        raise ValueError(f"{what}: indices must be in [0, {W.shape[0]}), got [{idx.min()}, {idx.max()}]")
    return idx


def onehot_ids(X):
    """The column of the 1 in each row of X (n, D) float32/float64 as int64 (n,) when every row is one-hot (one
    element equal to 1, all others 0 of either sign), else None; one compiled pass that stops at the first row that
    is not (the NumPy fallback: one argmax, one count and one gather)."""
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        return None
    n, D = X.shape
    if _LIB is not None and X.dtype in _SUFFIX and X.strides[1] == X.itemsize and X.strides[0] % X.itemsize == 0:
        ids = np.empty(n, np.int64)
        ok = getattr(_LIB, f"rnnlab_onehot_rows_{_SUFFIX[X.dtype]}")(X.ctypes.data, X.strides[0] // X.itemsize, n, D,
                                                                     ids.ctypes.data)
        return ids if ok else None
    ids = X.argmax(axis=1)
    if np.count_nonzero(X) != n or not (X[np.arange(n), ids] == 1).all():
        return None
    return ids.astype(np.int64, copy=False)


def scatter_add(W, idx, rows):
    """``W[idx[i]] += rows[i]`` for every i, in order (repeated indices add up); ``rows`` is (n, D)."""
    rows = np.ascontiguousarray(rows, dtype=W.dtype)
    D = W.shape[1] if W.ndim == 2 else -1
    if rows.ndim != 2 or rows.shape[1] != D:
        raise ValueError(f"scatter_add: rows must have shape (n, {D}), got {rows.shape}")
    idx = _check(W, idx, rows.shape[0], "scatter_add")
    if idx.size == 0:
        return
    if _LIB is not None:
        getattr(_LIB, f"rnnlab_scatter_add_{_SUFFIX[W.dtype]}")(
            W.ctypes.data, idx.ctypes.data, rows.ctypes.data, idx.size, D)
        return
    # one unbuffered np.add.at over the flat views (element index idx * D + j): about 2x faster than
    # sorting + np.add.reduceat and 2-4x faster than the 2-D np.add.at for 30k-60k rows of 100
    flat = np.multiply(idx[:, None], D) + np.arange(D, dtype=np.int64)
    np.add.at(W.reshape(-1), flat.reshape(-1), rows.reshape(-1))


def scatter_add_outer(W, idx, coef, H):
    """``W[idx[n, k]] += coef[n, k] * H[n]`` for every (n, k) in row-major order; idx, coef (N, K), H (N, D)."""
    coef = np.ascontiguousarray(coef, dtype=W.dtype)
    H = np.ascontiguousarray(H, dtype=W.dtype)
    D = W.shape[1] if W.ndim == 2 else -1
    if coef.ndim != 2 or H.shape != (coef.shape[0], D):
        raise ValueError(f"scatter_add_outer: coef must be (N, K) and H (N, {D}), got {coef.shape} and {H.shape}")
    N, K = coef.shape
    idx = _check(W, idx, N * K, "scatter_add_outer")
    if idx.size == 0:
        return
    if _LIB is not None:
        getattr(_LIB, f"rnnlab_scatter_add_outer_{_SUFFIX[W.dtype]}")(
            W.ctypes.data, idx.ctypes.data, coef.ctypes.data, H.ctypes.data, N, K, D)
        return
    scatter_add(W, idx, (coef[:, :, None] * H[:, None, :]).reshape(N * K, D))


def embedding_grad(ids, g, V):
    """The Embedding's row-sparse gradient in one compiled pass: ``(uid, rows)`` with the distinct ``ids`` ascending
    and, for each, the sum of its rows of ``g`` (n, D) in their original order: the bits of embedding.py's NumPy
    route for mostly distinct ids (each id's first row, the repeats added one by one). ``ids`` (n,) integers in
    [0, V). None when the kernel is not loaded, g is not float32/float64, or repeats are the majority (NumPy's
    other route, np.add.reduceat, sums in another order): the caller's NumPy code then runs."""
    if _LIB is None or not isinstance(g, np.ndarray) or g.dtype not in _SUFFIX or g.ndim != 2:
        return None
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    g = np.ascontiguousarray(g)
    n, D = g.shape
    if ids.shape != (n,) or n == 0 or ids.min() < 0 or ids.max() >= V:
        return None
    uid = np.empty(n, np.int64)
    rows = np.empty((n, D), g.dtype)
    head, nxt = np.empty(int(V), np.int64), np.empty(n, np.int64)
    u = getattr(_LIB, f"rnnlab_embedding_grad_{_SUFFIX[g.dtype]}")(
        ids.ctypes.data, g.ctypes.data, n, D, int(V), uid.ctypes.data, rows.ctypes.data, head.ctypes.data,
        nxt.ctypes.data)
    if 2 * (n - u) >= n:
        return None
    return uid[:u], rows[:u]


def _fusable(a, dtype):
    return (isinstance(a, np.ndarray) and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable)


def adam_update(w, m, v, vh, g, idx, b1, b2, c1, c2, eps, alpha, lazy=False) -> bool:
    """The Adam step of ``rnnlab.optimizers.Adam._update`` in one pass, when the kernel can do it.

    ``w, m, v`` (and ``vh`` with amsgrad, else None) are updated in place. ``idx`` None: ``g`` is the
    dense gradient; else ``g`` holds the rows ``idx`` of a RowSparseGrad, applied with the dense rule
    (every row's m, v decay), or with ``lazy=True`` the rule of ``Adam(lazy=True)``: only those rows change
    (each as that NumPy branch computes it). ``c1 = (1 - b1) scale``, ``c2 = (1 - b2) scale^2``, ``alpha`` the
    bias-corrected step, all Python floats (rounded to the array dtype once, as NumPy does).
    Returns False, touching nothing, when the kernel is not loaded or the arrays are not all
    C-contiguous float32/float64 of one dtype and shape (or an index is out of range): the caller then
    runs its NumPy code, which gives the same bits.
    """
    if _LIB is None or not isinstance(w, np.ndarray) or w.dtype not in _SUFFIX:
        return False
    dt = w.dtype
    arrays = (w, m, v) if vh is None else (w, m, v, vh)
    if not all(_fusable(a, dt) and a.shape == w.shape for a in arrays):
        return False
    if not isinstance(g, np.ndarray) or g.dtype != dt:
        return False
    if lazy and idx is None:
        return False                         # (lazy only changes sparse updates; the caller's dense path runs)
    if idx is None:
        if g.shape != w.shape:
            return False
        g = np.ascontiguousarray(g)
        R, D, n, idx_ptr = w.size, 1, 0, None
    else:
        if w.ndim != 2 or g.ndim != 2 or g.shape[1] != w.shape[1]:
            return False
        idx = np.asarray(idx)
        if idx.ndim != 1 or idx.dtype.kind not in "iu" or idx.size != g.shape[0]:
            return False
        if idx.size and (idx.min() < 0 or idx.max() >= w.shape[0]):
            return False                     # negative (wrapping) or bad indices: NumPy's business
        idx = np.ascontiguousarray(idx, dtype=np.int64)
        g = np.ascontiguousarray(g)
        (R, D), n, idx_ptr = w.shape, idx.size, idx.ctypes.data
    fn = getattr(_LIB, f"rnnlab_adam{'_lazy' if lazy else ''}_{_SUFFIX[dt]}")
    scalars = (float(b1), float(b2), float(c1), float(c2), float(eps), float(alpha))
    its = w.itemsize
    ptrs = [a.ctypes.data for a in (w, m, v)] + [None if vh is None else vh.ctypes.data]

    def run(block):
        # rows [r0, r1) of every array, gradient rows [k0, k1) (their indices shifted by -r0, in a copy)
        r0, r1, k0, k1, idx_part = block
        off = r0 * D * its
        p = [None if q is None else q + off for q in ptrs]
        gp = g.ctypes.data + (k0 * D * its if idx_ptr is not None else off)
        ip = None if idx_ptr is None else idx_part.ctypes.data
        return fn(p[0], p[1], p[2], p[3], gp, ip, k1 - k0, r1 - r0, D, *scalars)

    blocks = _adam_blocks(R, D, idx if idx_ptr is not None else None)
    rcs = run_blocks(run, blocks)
    if any(rc != 0 for rc in rcs):
        raise MemoryError("rnnlab._native.adam_update: cannot allocate the row map")
    return True


#: Fewest elements per thread for which :func:`adam_update` splits its rows over NumPy's BLAS thread count (the
#: step is a stream over w, m, v: a second core adds bandwidth; below this the hand-off costs more than it saves)
ADAM_SPLIT_MIN = 1 << 18


def _adam_blocks(R, D, idx):
    """The row blocks of :func:`adam_update`: ``[(r0, r1, k0, k1, idx_part)]``, one per BLAS thread when the arrays
    are large (:data:`ADAM_SPLIT_MIN` elements a thread) and a sparse gradient's indices are strictly increasing
    (RowSparseGrad's sorted unique ids: block b's gradient rows are one slice), else the whole. Every element goes
    through the same operations whatever the blocks: the same bits."""
    whole = [(0, R, 0, 0 if idx is None else idx.size, idx)]
    n = min(blas_threads() or 1, (R * D) // ADAM_SPLIT_MIN, R)
    if n < 2:
        return whole
    if idx is not None and idx.size > 1 and not bool(np.all(idx[1:] > idx[:-1])):
        return whole
    out = []
    for b in range(n):
        r0, r1 = b * R // n, (b + 1) * R // n
        if idx is None:
            out.append((r0, r1, 0, 0, None))
        else:
            k0, k1 = (int(k) for k in np.searchsorted(idx, [r0, r1]))
            out.append((r0, r1, k0, k1, idx[k0:k1] - r0))
    return out


# ------------------------------------------------------------------ recurrent cells (_cells.c)
def _cell_arrays_ok(arrays):
    return all(isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous for a in arrays)


def _cell_extras(bias, bias_shape, scratch, n_scratch, mask, T, B):
    """Checks shared by the cell loops: ``(scratch, mask as (T, B) uint8 or None)``, or None when the bias,
    the scratch (allocated when None) or the mask does not fit (the caller then returns 0)."""
    if bias is not None and (not _cell_arrays_ok((bias,)) or bias.shape != bias_shape):
        return None
    if scratch is None:
        scratch = empty_aligned(n_scratch, np.float32)
    elif not (_cell_arrays_ok((scratch,)) and scratch.flags.writeable and scratch.size >= n_scratch):
        return None
    m = _mask_u8(mask, T, B)
    if m is False:
        return None
    return scratch, m


def lstm_infer(A, Wh, H, C, TC, mask=None, bias=None, scratch=None, prescaled=False, portable=False, isa=None) -> int:
    """The LSTM inference time loop of ``rnnlab.layers.lstm`` (sigmoid/tanh, float32) in C.

    ``A`` (T, B, 4U): the input projection ``x W_x`` (plus the bias, unless ``bias`` (4U,) is given: then
    the kernel adds it), overwritten with the gate activations; ``Wh`` (U, 4U) the recurrent kernel
    (``prescaled=True``: A, bias and Wh with the sigmoid gates' columns already scaled by 1/2, as lstm.py's
    NumPy fast path has them); ``H, C`` (T+1, B, U) the states with ``H[0], C[0]`` set; ``TC`` (T, B, U)
    receives tanh(c_t); ``mask`` (T, B) bool or None: masked steps carry the states; ``scratch``: a float32
    array of at least U * 4U elements for the packed recurrent kernel (allocated when None).
    Agrees with the NumPy loop to ~1e-6 relative (not bit for bit: another summation order and a tanh
    approximation, see _cells.c).
    Returns 0 (nothing done) when the kernel is not loaded or the arrays do not fit, else the code path
    taken (1 portable C, 2 AVX2/FMA, 3 AVX-512); ``portable=True`` forces the portable C, ``isa=2`` at
    most AVX2 (for the tests).
    """
    if _LIB is None or not _cell_arrays_ok((A, Wh, H, C, TC)) or A.ndim != 3:
        return 0
    T, B, W = A.shape
    U = W // 4
    if (W != 4 * U or Wh.shape != (U, W) or H.shape != (T + 1, B, U) or C.shape != H.shape
            or TC.shape != (T, B, U) or not all(a.flags.writeable for a in (A, H, C, TC))):
        return 0
    extras = _cell_extras(bias, (W,), scratch, U * W, mask, T, B)
    if extras is None:
        return 0
    scratch, m = extras
    return _LIB.rnnlab_lstm_infer_f32(A.ctypes.data, None if bias is None else bias.ctypes.data, Wh.ctypes.data,
                                      scratch.ctypes.data, H.ctypes.data, C.ctypes.data, TC.ctypes.data,
                                      None if m is None else m.ctypes.data, T, B, U, int(bool(prescaled)),
                                      _loop_isa(portable, isa))


def lstm_step_kernels():
    """``(fwd, bwd)``: the ctypes functions ``rnnlab_lstm_gates_fwd_f32`` / ``rnnlab_lstm_gates_bwd_f32`` of
    _cells.c (the elementwise part of one LSTM training step, float32; see there), or None when the kernel
    is not loaded. lstm.py calls them on raw addresses of its workspace buffers (it checks dtypes and
    contiguity when it sets them up): one C call per time step instead of ~10 ufunc calls."""
    if _LIB is None:
        return None
    return _LIB.rnnlab_lstm_gates_fwd_f32, _LIB.rnnlab_lstm_gates_bwd_f32


def loaded() -> bool:
    """Whether the compiled library is loaded (the layers ask this instead of touching it)."""
    return _LIB is not None


def fused_loop_kernel(cell):
    """The ctypes function ``rnnlab_{cell}_fwd_loop_f32`` of _cells.c ("lstm" or "gru": the packed-path forward
    time loop in one call, see rnnlab/layers/fused_loop.py), or None when the kernel is not loaded."""
    if _LIB is None:
        return None
    return {"lstm": _LIB.rnnlab_lstm_fwd_loop_f32, "gru": _LIB.rnnlab_gru_fwd_loop_f32}[cell]


def fused_bwd_loop_kernel(cell, masked=False):
    """The ctypes function ``rnnlab_{cell}_bwd_loop_f32`` of _cells.c ("lstm" or "gru": the packed-path backward
    time loop in one call, see rnnlab/layers/lstm.py, gru.py), or with ``masked`` its masked variant
    ``rnnlab_{cell}_bwd_loop_masked_f32`` (the same arguments, then the mask, the partial-step flags, the output
    factor and the scratch of the masked steps: :meth:`rnnlab.layers.fused_native.NativePaths._compiled_backward_loop`);
    None when the kernel is not loaded (or, masked, built before that variant existed)."""
    if _LIB is None:
        return None
    name = {"lstm": "rnnlab_lstm_bwd_loop", "gru": "rnnlab_gru_bwd_loop"}[cell] + ("_masked_f32" if masked else "_f32")
    return getattr(_LIB, name, None)


def gru_step_kernels():
    """``(fwd, bwd)``: ``rnnlab_gru_gates_fwd_f32`` / ``rnnlab_gru_gates_bwd_f32`` of _cells.c (the
    elementwise part of one GRU reset_after=True training step, float32), or None when the kernel is not
    loaded; gru.py calls them on raw addresses of its workspace buffers, as lstm.py does with
    :func:`lstm_step_kernels`."""
    if _LIB is None:
        return None
    return _LIB.rnnlab_gru_gates_fwd_f32, _LIB.rnnlab_gru_gates_bwd_f32


def _loop_isa(portable, isa):
    """The isa argument of the C loops: 0 auto (the widest vectors), 1 portable, 2 at most AVX2 (tests)."""
    return 1 if portable else (0 if isa is None else int(isa))


def _mask_u8(mask, T, B):
    """The (T, B) uint8 mask for the cell kernels; None for no mask, False when the shape is wrong."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape != (T, B):
        return False
    return np.ascontiguousarray(mask, dtype=np.uint8)


def gru_infer(A, Wh, H, Q, mask=None, bias=None, scratch=None, prescaled=False, portable=False, isa=None) -> int:
    """The GRU (``reset_after=True``) inference time loop of ``rnnlab.layers.gru`` (sigmoid/tanh, float32) in C.

    ``A`` (T, B, 3U): the input projection ``x W_x`` (plus the input bias, unless ``bias`` is given),
    overwritten with z, r and the candidate hh; ``Wh`` (U, 3U) the recurrent kernel; ``bias`` (2, 3U)
    ``[b_x; b_h]`` or None (then no recurrent bias either); ``prescaled=True``: A, bias and Wh with the z, r
    columns already halved (gru.py's NumPy fast-path weights). ``H`` (T+1, B, U) the states with ``H[0]``
    set; ``Q`` (T, B, 3U) receives ``h_{t-1} W_h + b_h`` with its z, r columns halved, as the NumPy fast
    path stores it; ``mask`` (T, B) bool or None: masked steps carry the state; ``scratch``: float32, at
    least U * 3U elements, for the packed recurrent kernel (allocated when None).
    Agrees with the NumPy loop to ~1e-6 relative (not bit for bit). Returns 0 (nothing done) when the
    kernel is not loaded or the arrays do not fit, else the code path taken (1 portable C, 2 AVX2/FMA,
    3 AVX-512); ``portable=True`` forces the portable C, ``isa=2`` at most AVX2 (for the tests).
    """
    if _LIB is None or not _cell_arrays_ok((A, Wh, H, Q)) or A.ndim != 3:
        return 0
    T, B, W = A.shape
    U = W // 3
    if (W != 3 * U or Wh.shape != (U, W) or H.shape != (T + 1, B, U) or Q.shape != A.shape
            or not all(a.flags.writeable for a in (A, H, Q))):
        return 0
    extras = _cell_extras(bias, (2, W), scratch, U * W, mask, T, B)
    if extras is None:
        return 0
    scratch, m = extras
    bx = bh = None
    if bias is not None:
        bx, bh = bias[0].ctypes.data, bias[1].ctypes.data
    return _LIB.rnnlab_gru_infer_f32(A.ctypes.data, bx, bh, Wh.ctypes.data, scratch.ctypes.data,
                                     H.ctypes.data, Q.ctypes.data, None if m is None else m.ctypes.data,
                                     T, B, U, int(bool(prescaled)), _loop_isa(portable, isa))


def rnn_infer(A, Wh, H, mask=None, bias=None, scratch=None, portable=False, isa=None) -> int:
    """The SimpleRNN (activation tanh) inference time loop of ``rnnlab.layers.simple_rnn`` (float32) in C.

    ``A`` (T, B, U): the input projection ``x W_x`` (plus the bias, unless ``bias`` (U,) is given: then the
    kernel adds it), left holding the pre-activations ``a_t = x_t W_x + b + h_{t-1} W_h`` as the NumPy loop
    leaves them; ``Wh`` (U, U) the recurrent kernel; ``H`` (T+1, B, U) the states with ``H[0]`` set,
    ``H[t+1] = tanh(a_t)``; ``mask`` (T, B) bool or None: masked steps carry the state; ``scratch``: float32,
    at least U * U elements, for the packed recurrent kernel (allocated when None).
    Agrees with the NumPy loop to ~1e-6 relative (not bit for bit). Returns 0 (nothing done) when the
    kernel is not loaded or the arrays do not fit, else the code path taken (1 portable C, 2 AVX2/FMA,
    3 AVX-512); ``portable=True`` forces the portable C, ``isa=2`` at most AVX2 (for the tests).
    """
    if _LIB is None or not _cell_arrays_ok((A, Wh, H)) or A.ndim != 3:
        return 0
    T, B, U = A.shape
    if Wh.shape != (U, U) or H.shape != (T + 1, B, U) or not all(a.flags.writeable for a in (A, H)):
        return 0
    extras = _cell_extras(bias, (U,), scratch, U * U, mask, T, B)
    if extras is None:
        return 0
    scratch, m = extras
    return _LIB.rnnlab_rnn_infer_f32(A.ctypes.data, None if bias is None else bias.ctypes.data, Wh.ctypes.data,
                                     scratch.ctypes.data, H.ctypes.data, None if m is None else m.ctypes.data,
                                     T, B, U, _loop_isa(portable, isa))


def tanh_approx(x, portable=False, isa=None):
    """The tanh approximation the cell kernels use (float32; for the tests). None when not loaded.
    ``isa``: 0 the widest vectors the CPU has, 1 portable C (= ``portable=True``), 2 at most AVX2."""
    if _LIB is None:
        return None
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.empty_like(x)
    if isa is None:
        isa = 1 if portable else 0
    _LIB.rnnlab_tanh_approx_f32_isa(x.ctypes.data, y.ctypes.data, x.size, int(isa))
    return y


# ------------------------------------------------------------------ packed GEMM (_gemm.c)
_GEMM_ISA = None


def gemm_available() -> bool:
    """True when the packed GEMM of _gemm.c runs here (kernel loaded and the CPU has AVX-512)."""
    global _GEMM_ISA
    if _LIB is None:
        return False
    if _GEMM_ISA is None:
        _GEMM_ISA = int(_LIB.rnnlab_gemm_isa())
    return _GEMM_ISA == 1


_BLAS_THREADS_FN = False   # False: not looked up yet; None: not found


def _find_blas_threads_fn():
    """OpenBLAS's ``get_num_threads`` in the library NumPy loaded (found through /proc/self/maps), or None."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
                     "openblas_get_num_threads64_", "openblas_get_num_threads"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.argtypes, fn.restype = [], ctypes.c_int
                return fn
    return None


def blas_threads():
    """The number of threads NumPy's OpenBLAS uses now, or None when it cannot be asked (another BLAS)."""
    global _BLAS_THREADS_FN
    if _BLAS_THREADS_FN is False:
        _BLAS_THREADS_FN = _find_blas_threads_fn()
    if _BLAS_THREADS_FN is None:
        return None
    return int(_BLAS_THREADS_FN())


#: The K-chunk of _gemm.c (its KC): products split into chunks of this many rows of B, each accumulated
#: in order, give the same sums as one product.
PACK_KC = 256

#: Products up to this many multiply-adds (M * K * N) take the packed kernel even when the BLAS has
#: several threads: the per-step products of the imdb configs (B32, U128: 2.1M) ran faster on one core
#: here (~100 GFLOP/s) than on OpenBLAS's two threads (59-79). Larger ones need the BLAS on one thread.
PACKED_MAX_MULADDS_THREADED = 1 << 22


def packed_gemm_wins(M, K, N) -> bool:
    """Whether rnnlab's recurrent layers should use the packed kernel for repeated (M, K) @ (K, N) products:
    it is available, M >= 8 (below that the per-row loops or the BLAS's GEMV win), and NumPy's BLAS runs on
    one thread, or the product is small (:data:`PACKED_MAX_MULADDS_THREADED`). The kernel is single-threaded."""
    if M < 8 or not gemm_available():
        return False
    return M * K * N <= PACKED_MAX_MULADDS_THREADED or blas_threads() == 1


#: Fewest batch rows a thread takes in the row-split forward loops (:func:`row_blocks`).
SPLIT_MIN_ROWS = 8


def row_blocks(B):
    """How the packed path's forward time loop (LSTM, GRU) splits its B batch rows over threads:
    ``[(b0, b1), ...]``, one block per thread of NumPy's BLAS (each at least :data:`SPLIT_MIN_ROWS` rows),
    ``[(0, B)]`` when the BLAS runs one thread or cannot be asked. Rows never interact in a recurrent layer, so
    each block runs the whole sequence on its own, with no synchronisation between steps; the products of
    each row are the same sums whatever the block, so the results are the same bits as one block."""
    n = blas_threads() or 1
    n = max(1, min(n, B // SPLIT_MIN_ROWS))
    return [(i * B // n, (i + 1) * B // n) for i in range(n)]


def split_matmul(pm, a, out, accumulate=False):
    """``out = a @ B`` (or ``+=``) with B packed in ``pm`` (:class:`PackedMatrix`), a's rows split into one block per
    thread of NumPy's BLAS (:func:`run_blocks`; each block at least :data:`SPLIT_MIN_ROWS` rows). Each row is the same
    sum whatever the blocks: the same bits as one ``pm.matmul``."""
    M = a.shape[0]
    n = max(1, min(blas_threads() or 1, M // SPLIT_MIN_ROWS))
    blocks = [(i * M // n, (i + 1) * M // n) for i in range(n)]
    run_blocks(lambda b: pm.matmul(a[b[0]:b[1]], out[b[0]:b[1]], accumulate), blocks)
    return out


_POOL = None        # (pid, workers, ThreadPoolExecutor) for run_blocks (made anew in a forked child)


def run_blocks(fn, blocks):
    """``[fn(block) for block in blocks]``, the first block on the calling thread and the others on a pool
    of worker threads kept for the process (fn should spend its time in a compiled call that releases the
    GIL: the row-split loops). Exceptions propagate."""
    global _POOL
    if len(blocks) == 1:
        return [fn(blocks[0])]
    import concurrent.futures

    need = len(blocks) - 1
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] < need:
        _POOL = (os.getpid(), need, concurrent.futures.ThreadPoolExecutor(max_workers=need,
                                                                           thread_name_prefix="rnnlab-rows"))
    futures = [_POOL[2].submit(fn, b) for b in blocks[1:]]
    try:
        first = fn(blocks[0])
    finally:
        rest = [f.result() for f in futures]
    return [first] + rest


def _elem_strides(a, what):
    s0, s1 = a.strides
    if s0 % 4 or s1 % 4:
        raise ValueError(f"{what}: strides {a.strides} are not whole float32 elements")
    return s0 // 4, s1 // 4


class PackedMatrix:
    """A float32 matrix B (K, N) packed once (_gemm.c) for many products ``a @ B`` (AVX-512 only; check
    :func:`gemm_available` first). The layers keep one per workspace and refresh it with :meth:`pack`
    at each call; :meth:`matmul` checks its arguments, :meth:`bind` gives an unchecked fast form for the
    per-step loops."""

    def __init__(self, K, N):
        if _LIB is None:
            raise RuntimeError(f"rnnlab._native: kernel not loaded ({_WHY_NOT})")
        self.K, self.N = int(K), int(N)
        n = int(_LIB.rnnlab_packed_size(self.K, self.N))
        # 64-byte aligned (each packed row is 256 bytes: its four vector loads then never straddle cache lines)
        self.buf = empty_aligned(n, np.float32)

    def with_rows(self, K):
        """This matrix re-shaped for K rows (same N): its buffer kept when large enough (a packed matrix of
        fewer rows uses a prefix of it), else a new one. For products whose row count varies from call to call
        (the weight gradients of variable-length batches) without a buffer per length. Returns self."""
        K = int(K)
        n = int(_LIB.rnnlab_packed_size(K, self.N))
        if n > self.buf.size:
            self.buf = empty_aligned(n, np.float32)
        self.K = K
        return self

    def pack(self, B):
        """Copy B (K, N), any strides, into the packed buffer."""
        if not (isinstance(B, np.ndarray) and B.dtype == np.float32 and B.shape == (self.K, self.N)):
            raise ValueError(f"PackedMatrix.pack: expected a float32 array of shape {(self.K, self.N)}, got "
                             f"{getattr(B, 'dtype', type(B).__name__)} {getattr(B, 'shape', '')}")
        rs, cs = _elem_strides(B, "PackedMatrix.pack")
        _LIB.rnnlab_pack_f32(B.ctypes.data, rs, cs, self.buf.ctypes.data, self.K, self.N)
        return self

    def matmul(self, a, out, accumulate=False):
        """``out = a @ B`` (or ``out += a @ B``); a (M, K) float32 with any element strides (``x.T`` is fine),
        out (M, N) float32 with unit column stride. Returns out; raises when the kernel cannot run."""
        if not (isinstance(a, np.ndarray) and a.dtype == np.float32 and a.ndim == 2 and a.shape[1] == self.K):
            raise ValueError(f"PackedMatrix.matmul: a must be float32 of shape (M, {self.K}), got "
                             f"{getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}")
        M = a.shape[0]
        if not (isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (M, self.N)
                and out.strides[1] == 4 and out.flags.writeable):
            raise ValueError(f"PackedMatrix.matmul: out must be a writeable float32 array of shape {(M, self.N)} "
                             f"with contiguous rows, got {getattr(out, 'dtype', '')} {getattr(out, 'shape', '')} "
                             f"strides {getattr(out, 'strides', '')}")
        rsa, csa = _elem_strides(a, "PackedMatrix.matmul")
        ldc, _ = _elem_strides(out, "PackedMatrix.matmul")
        if not _LIB.rnnlab_gemm_packed_f32(a.ctypes.data, rsa, csa, self.buf.ctypes.data, ldc, M, self.K, self.N,
                                           int(bool(accumulate)), out.ctypes.data):
            raise RuntimeError("PackedMatrix.matmul: this CPU has no AVX-512 (check gemm_available())")
        return out

    def bind(self, M, lda, ldc):
        """``f(a_address, out_address)``: ``out = a @ B`` for row-major a (M, K) with row stride ``lda`` and out
        (M, N) with row stride ``ldc`` (float32 elements), unchecked; the caller owns the arrays and keeps
        them alive (the recurrent layers pass addresses of their workspace buffers)."""
        fn, bp, K, N = _LIB.rnnlab_gemm_packed_f32, self.buf.ctypes.data, self.K, self.N
        return lambda a, c: fn(a, lda, 1, bp, ldc, M, K, N, 0, c)


def _optional_kernel(name, argtypes, restype):
    """The ctypes function ``name`` of the library with its signature set, or ``None`` when the library is not
    loaded or was built without it (an older build): the caller then runs its NumPy code."""
    fn = getattr(_LIB, name, None) if _LIB is not None else None
    if fn is not None:
        fn.argtypes, fn.restype = argtypes, restype
    return fn


def fasttext_sg_pairs_kernel():
    """The ctypes function ``rnnlab_ft_sg_pairs_f32`` of _fasttext.c (fastText skip-gram, one pair at a time;
    see rnnlab/embeddings/fasttext.py), or ``None`` (:func:`_optional_kernel`)."""
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    return _optional_kernel("rnnlab_ft_sg_pairs_f32", [p, p, p, p, p, p, p, p, i64, p, i64, i64, i64, ctypes.c_float,
                                                       i64, p, p], i64)


def fasttext_cbow_kernel():
    """The ctypes function ``rnnlab_ft_cbow_f32`` of _fasttext.c (fastText CBOW, one centre at a time), or
    ``None`` (:func:`_optional_kernel`)."""
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    return _optional_kernel("rnnlab_ft_cbow_f32", [p, p, p, p, p, p, p, p, i64, p, i64, i64, ctypes.c_float, p, p],
                            i64)
