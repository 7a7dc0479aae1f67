"""``keras.preprocessing.text`` names (Keras 2's legacy text utilities), implemented in :mod:`rnnlab.text`:
``Tokenizer`` (``num_words``, ``filters``, ``lower``, ``split``, ``char_level``, ``oov_token``; ``fit_on_texts``,
``texts_to_sequences``, ``texts_to_matrix``, ``word_index``, ``to_json``), ``text_to_word_sequence``, ``one_hot``
(the hashing one), ``hashing_trick`` and ``tokenizer_from_json``: same results as Keras (tested against it)."""
from ..text.sequence import hashing_trick, one_hot  # noqa: F401
from ..text.tokenizer import DEFAULT_FILTERS, Tokenizer, text_to_word_sequence, tokenizer_from_json  # noqa: F401

__all__ = ["Tokenizer", "text_to_word_sequence", "one_hot", "hashing_trick", "tokenizer_from_json"]
