"""rnnlab: recurrent networks from scratch on NumPy, with hand-written backward passes."""
from . import activations, backend, initializers  # noqa: F401
from .backend import clear_session, floatx, set_floatx  # noqa: F401
from . import losses, metrics, optimizers, utils  # noqa: F401,E402
from . import constraints, regularizers  # noqa: F401,E402
from .backend import set_random_seed  # noqa: F401

__version__ = "0.1.0"
from . import callbacks, layers, models  # noqa: F401,E402
from .models import Input, Sequential, load_model  # noqa: F401,E402
from .models import Model  # noqa: F401,E402


def __getattr__(name):  # Keras-named submodules load on first use; other missing names say what to use
    if name in ("preprocessing", "saving", "ops", "datasets", "variables", "text", "plotting"):
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    from ._compat import missing
    raise missing("rnnlab", name)
