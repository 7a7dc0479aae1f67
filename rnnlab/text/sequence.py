"""``pad_sequences`` and the hashing ``one_hot``, with Keras' results."""
from __future__ import annotations

import hashlib

import numpy as np

from .tokenizer import DEFAULT_FILTERS, text_to_word_sequence


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre", value=0.0):
    """Pad/truncate a list of sequences to one ``(num_samples, maxlen) + sample_shape`` array.

    Same results as ``keras.utils.pad_sequences``:

    * ``maxlen=None`` uses the longest sequence;
    * ``truncating="pre"`` drops values from the start of longer sequences (keeps the last ``maxlen``),
      ``"post"`` from the end;
    * ``padding="pre"`` puts ``value`` before shorter sequences, ``"post"`` after;
    * elements may themselves be arrays (``sample_shape`` is taken from the first non-empty sequence);
    * values are cast to ``dtype`` the NumPy way (floats to an int dtype are truncated toward zero);
      a string ``value`` needs ``dtype=object`` or a string dtype.

    Differences, all in cases where Keras fails with a NumPy error: an empty list gives an array of
    shape ``(0, maxlen or 0)``; ``maxlen=0`` gives ``(n, 0)``; ``padding``/``truncating`` are checked
    up front (Keras only notices a bad value when it meets a non-empty sequence).
    """
    if padding not in ("pre", "post"):
        raise ValueError(f'pad_sequences: padding must be "pre" or "post", got {padding!r}')
    if truncating not in ("pre", "post"):
        raise ValueError(f'pad_sequences: truncating must be "pre" or "post", got {truncating!r}')
    if not hasattr(sequences, "__len__"):
        raise ValueError(f"pad_sequences: `sequences` must be a list of sequences, got {type(sequences).__name__}")
    if maxlen is not None:
        if isinstance(maxlen, bool) or not isinstance(maxlen, (int, np.integer)) or maxlen < 0:
            raise ValueError(f"pad_sequences: maxlen must be None or an integer >= 0, got {maxlen!r}")
        maxlen = int(maxlen)
    lengths = []
    sample_shape = None
    for idx, s in enumerate(sequences):
        try:
            n = len(s)
        except TypeError:
            raise ValueError(f"pad_sequences: sequence at position {idx} is not a sequence "
                             f"(got {type(s).__name__}: {s!r})") from None
        lengths.append(n)
        if sample_shape is None and n:
            sample_shape = np.asarray(s).shape[1:]
    sample_shape = () if sample_shape is None else sample_shape
    if maxlen is None:
        maxlen = max(lengths) if lengths else 0
    is_str_dtype = dtype is not object and (np.issubdtype(dtype, np.str_) or np.issubdtype(dtype, np.bytes_))
    if isinstance(value, str) and dtype is not object and not is_str_dtype:
        raise ValueError(f"pad_sequences: dtype {dtype} cannot hold the string value {value!r}; "
                         "use dtype=object for variable-length strings")
    out = np.full((len(lengths), maxlen) + tuple(sample_shape), value, dtype=dtype)
    if maxlen == 0:
        return out
    for idx, s in enumerate(sequences):
        if not lengths[idx]:
            continue
        part = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        try:
            part = np.asarray(part, dtype=dtype)
        except (TypeError, ValueError) as e:
            raise ValueError(f"pad_sequences: sequence at position {idx} cannot be converted to {dtype}: {e}") from None
        if part.shape[1:] != tuple(sample_shape):
            raise ValueError(f"pad_sequences: elements of the sequence at position {idx} have shape "
                             f"{part.shape[1:]}, expected {tuple(sample_shape)} (from the first non-empty sequence)")
        if padding == "post":
            out[idx, :len(part)] = part
        else:
            out[idx, maxlen - len(part):] = part
    return out


def hashing_trick(text, n, hash_function=None, filters=DEFAULT_FILTERS, lower=True, split=" ", analyzer=None):
    """Words of ``text`` -> ids in ``[1, n)`` by hashing: ``hash(word) % (n - 1) + 1`` (Keras' formula).

    ``hash_function``: ``None`` = Python's ``hash`` (changes between processes unless ``PYTHONHASHSEED``
    is fixed), ``"md5"`` = stable MD5-based hash, or any ``str -> int`` callable. Collisions are possible.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"hashing_trick: n must be an integer >= 2, got {n!r}")
    if hash_function is None:
        hash_function = hash
    elif hash_function == "md5":
        def hash_function(w):
            return int(hashlib.md5(w.encode()).hexdigest(), 16)
    elif not callable(hash_function):
        raise ValueError(f"hashing_trick: hash_function must be None, 'md5' or a callable, got {hash_function!r}")
    words = analyzer(text) if analyzer is not None else text_to_word_sequence(text, filters, lower, split)
    return [hash_function(w) % (n - 1) + 1 for w in words]


def one_hot(text, n, filters=DEFAULT_FILTERS, lower=True, split=" ", analyzer=None, hash_function=None):
    """Keras' text ``one_hot``: despite the name, a list of hashed word ids in ``[1, n)``.

    Uses Python's ``hash`` like Keras (so ids are only stable within one process unless
    ``PYTHONHASHSEED`` is set); pass ``hash_function="md5"`` for ids that never change.
    For one-hot *vectors* of integer ids see :func:`rnnlab.utils.one_hot`.
    """
    return hashing_trick(text, n, hash_function=hash_function, filters=filters, lower=lower, split=split,
                         analyzer=analyzer)
