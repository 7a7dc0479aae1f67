"""Layers: each one computes a forward pass and its hand-written backward pass."""
from .base import Layer, get_layer_class, register  # noqa: F401
from .core import Activation, Dense  # noqa: F401
from .recurrent import RNN  # noqa: F401
from .cells import Cell, StackedRNNCells  # noqa: F401
from .simple_rnn import SimpleRNN, SimpleRNNCell  # noqa: F401
from .lstm import LSTM, LSTMCell  # noqa: F401
from .gru import GRU, GRUCell  # noqa: F401
from .core import Dropout  # noqa: F401
from .embedding import Embedding  # noqa: F401
from .attention import AdditiveAttention, Attention  # noqa: F401
from .core import Masking, RepeatVector  # noqa: F401
from .wrappers import Bidirectional, TimeDistributed, WeightDrop  # noqa: F401
from .pooling import GlobalAveragePooling1D, GlobalMaxPooling1D  # noqa: F401
from .pooling import AveragePooling1D, MaxPooling1D  # noqa: F401
from .conv import Conv1D  # noqa: F401
from .normalization import BatchNormalization, LayerNormalization  # noqa: F401
from .regularization import SpatialDropout1D  # noqa: F401
from .text_vectorization import TextVectorization  # noqa: F401
from .tied import TiedDense, TiedEmbedding  # noqa: F401
from .merge import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract,  # noqa: F401
                    add, average, concatenate, dot, maximum, minimum, multiply, subtract)
from .reshaping import Flatten, Permute, Reshape  # noqa: F401
from .crf import CRF  # noqa: F401  (rnnlab-only: a linear-chain CRF output for taggers)


def __getattr__(name):  # Input / InputLayer live with the functional API (rnnlab.models.functional)
    if name in ("Input", "InputLayer"):
        from ..models import functional
        return getattr(functional, name)
    if name in _KERAS_ALIASES:  # Keras' second names of the same classes
        return globals()[_KERAS_ALIASES[name]]
    from .._compat import missing
    raise missing("rnnlab.layers", name)


_KERAS_ALIASES = {"MaxPool1D": "MaxPooling1D", "AvgPool1D": "AveragePooling1D", "GlobalMaxPool1D": "GlobalMaxPooling1D",
                  "GlobalAvgPool1D": "GlobalAveragePooling1D", "Convolution1D": "Conv1D"}
