"""Shared test set-up: Keras runs on the torch backend; each test starts in float32 with fresh names."""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

import rnnlab  # noqa: E402
from rnnlab import backend  # noqa: E402

SHARED_DATA = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


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
