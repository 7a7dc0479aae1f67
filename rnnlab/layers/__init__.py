"""Layers: each one computes a forward pass and its hand-written backward pass."""
from .base import Layer, get_layer_class, register  # noqa: F401
from .core import Activation, Dense  # noqa: F401
from .recurrent import RNN  # noqa: F401
from .simple_rnn import SimpleRNN  # noqa: F401
from .lstm import LSTM  # noqa: F401
from .gru import GRU  # noqa: F401
from .core import Dropout  # noqa: F401
from .embedding import Embedding  # noqa: F401
from .attention import AdditiveAttention, Attention  # noqa: F401
from .core import Masking, RepeatVector  # noqa: F401
from .wrappers import Bidirectional, TimeDistributed  # noqa: F401
from .pooling import GlobalAveragePooling1D, GlobalMaxPooling1D  # noqa: F401
from .tied import TiedDense, TiedEmbedding  # noqa: F401
