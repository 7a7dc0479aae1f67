"""Models: Sequential (Keras-style stack of layers) and its saving."""
from .saving import load_model  # noqa: F401
from .sequential import Input, InputSpec, Sequential  # noqa: F401
from .seq2seq import Seq2Seq  # noqa: F401,E402
from .esn import EchoStateNetwork  # noqa: F401,E402
from .keras_weights import load_keras_weights  # noqa: F401,E402
from .functional import InputLayer, KerasTensor, Model, model_from_json  # noqa: F401,E402
from .nbsvm import NBSVMClassifier  # noqa: F401,E402
