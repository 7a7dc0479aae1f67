"""Text utilities: word and character tokenizers, padding, hashing one-hot, review cleaning.

The word :class:`Tokenizer`, :func:`pad_sequences` and :func:`one_hot` reproduce the results of
their Keras counterparts (``keras.src.legacy.preprocessing.text.Tokenizer``,
``keras.utils.pad_sequences``, the legacy ``one_hot``); the tests check this against Keras itself.
"""
from .clean import clean_review, strip_html_breaks  # noqa: F401
from .sequence import hashing_trick, one_hot, pad_sequences  # noqa: F401
from .tokenizer import (CharTokenizer, Tokenizer, DEFAULT_FILTERS, text_to_word_sequence,  # noqa: F401
                        tokenizer_from_json)
