"""Build hook for rnnlab's one optional C extension (rnnlab/_native/_kernels.c).

Everything else is in pyproject.toml. ``optional=True``: without a C compiler the install still succeeds
and rnnlab uses its NumPy fallback (same results, slower word2vec updates and batch-1 LSTM inference);
``rnnlab._native.available()`` tells which path runs. ``_cells.c`` (the recurrent cells' loops and gate kernels) and
``_gemm.c`` (a GEMM with a packed right-hand side, AVX-512) go into the same shared library.
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "rnnlab._native._kernels",
    sources=["rnnlab/_native/_kernels.c", "rnnlab/_native/_cells.c", "rnnlab/_native/_gemm.c",
             "rnnlab/_native/_fasttext.c"],
    depends=["rnnlab/_native/_cells_vec.h"],   # included twice by _cells.c (AVX2, AVX-512)
    extra_compile_args=["-O3", "-ffp-contract=off"],
    optional=True,
)])
