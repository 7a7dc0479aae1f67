"""Shared test set-up: Keras runs on the torch backend; each test starts in float32 with fresh names."""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

import rnnlab  # noqa: E402
from rnnlab import backend  # noqa: E402

SHARED_DATA = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.native``: needs the compiled kernel (rnnlab/_native); ``@pytest.mark.native_gemm``: also
    its packed GEMM (an AVX-512 CPU). Such tests skip, saying why, where these are not in use."""
    from rnnlab import _native
    skip_native = skip_gemm = None
    if not _native.available():
        skip_native = pytest.mark.skip(reason=f"native kernel not in use: {_native.why_unavailable()}")
    if not _native.gemm_available():
        skip_gemm = pytest.mark.skip(reason="packed GEMM not in use (needs the native kernel and an AVX-512 "
                                            f"CPU): {_native.why_unavailable() or 'no AVX-512'}")
    for item in items:
        if skip_native is not None and "native" in item.keywords:
            item.add_marker(skip_native)
        if skip_gemm is not None and "native_gemm" in item.keywords:
            item.add_marker(skip_gemm)


@pytest.fixture(autouse=True)
def _fresh_state():
    backend.set_floatx("float32")
    backend.clear_session()
    backend.set_random_seed(0)
    yield
    backend.set_floatx("float32")


@pytest.fixture
def float64():
    """Run a test in float64 (gradient checks, parity at 1e-6)."""
    backend.set_floatx("float64")
    yield
    backend.set_floatx("float32")


@pytest.fixture
def shared_data():
    """Path of ../shared/data; skips the test when it is absent."""
    if not os.path.isdir(SHARED_DATA):
        pytest.skip(f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def rewrite_tagger_doc():
    """``rewrite(path, out, change)``: copy a tagger file (.npz) to ``out`` with ``change(doc)`` applied to its JSON
    document (an older or newer file version, a corrupted entry); returns ``str(out)``."""
    import json

    import numpy as np

    def rewrite(path, out, change):
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        doc = json.loads(arrays["__tagger__"].tobytes().decode("utf-8"))
        change(doc)
        arrays["__tagger__"] = np.frombuffer(json.dumps(doc).encode("utf-8"), dtype=np.uint8)
        np.savez(out, **arrays)
        return str(out)
    return rewrite
