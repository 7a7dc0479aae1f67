"""``rnnlab.preprocessing``: the ``keras.preprocessing`` namespace Keras 2 code imports from.

* :mod:`rnnlab.preprocessing.sequence`: ``pad_sequences`` (Keras' results), ``make_sampling_table``.
* :mod:`rnnlab.preprocessing.text`: ``Tokenizer``, ``text_to_word_sequence``, ``one_hot``, ``hashing_trick``,
  ``tokenizer_from_json``.

The implementations live in :mod:`rnnlab.text`; these modules only give them Keras' import paths.
"""
from . import sequence, text  # noqa: F401
from .sequence import pad_sequences  # noqa: F401
