"""``TextVectorization``: raw strings to padded integer token ids, with Keras 3's vocabulary and ids.

Pipeline for each input string (Keras semantics):

1. **standardize** -- ``"lower_and_strip_punctuation"`` (default): ASCII letters lowercased (as TensorFlow's
   ``tf.strings.lower``, which Keras calls: other letters keep their case), then every character of
   ``!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~'`` removed; ``"lower"``; ``"strip_punctuation"``; ``None``; or a callable
   that receives a NumPy array of ``str`` and returns one of the same shape (as Keras on non-TensorFlow
   backends).
2. **split** -- ``"whitespace"`` (default: runs of ASCII whitespace separate tokens, no empty tokens),
   ``"character"`` (Unicode code points), ``None`` (the whole string is one token), or a callable
   ``str -> list of str``.
3. **ngrams** -- ``None``, an int n (all widths 1..n) or a tuple of widths; for each width in order, the
   space-joined runs of that many tokens are appended (``tf.strings.ngrams``).
4. **lookup** -- id 0 is the padding/mask token ``""``, id 1 the out-of-vocabulary token ``"[UNK]"``, ids 2.. the
   vocabulary. ``adapt(texts)`` counts every token and orders the vocabulary by count, high to low, ties broken
   by the token itself, high to low (Keras: ``np.lexsort((tokens, counts))[::-1]``); ``max_tokens`` keeps the
   first ``max_tokens - 2``.
5. **pad** -- the rows are padded with 0 at the end to the longest row, or padded/truncated at the end to
   ``output_sequence_length``. The result is an int64 array (N, L) (a ``TokenIds`` ndarray, which also has
   Keras tensors' ``.numpy()``).

Bag-of-words modes (as Keras, there is no padding id: id 0 is ``"[UNK]"``, ids 1.. the vocabulary, and
``max_tokens`` keeps ``max_tokens - 1`` learned tokens). Output (N, V), V = the vocabulary size (``max_tokens``
with ``pad_to_max_tokens=True``), floatx, with c[n, v] the number of times id v occurs in text n::

    "multi_hot":  y[n, v] = 1 if c[n, v] > 0 else 0      ("binary" is accepted as the Keras 2 name)
    "count":      y[n, v] = c[n, v]
    "tf_idf":     y[n, v] = c[n, v] * idf[v],   idf[v] = log(1 + D / (1 + d_v))  from ``adapt`` (D documents, d_v of
                  them containing token v; the OOV weight is the mean of the others), or ``idf_weights=`` given with
                  ``vocabulary=`` (OOV weight: their mean)

Input: a string, a list/tuple/array of N strings, or N rows of one string each (N, 1) (``bytes`` are decoded
with ``encoding``). The layer has no weights; it sits before ``Embedding`` (its ids are Embedding's input), and
``get_config()`` carries the vocabulary, so a saved model rebuilds it.
``output_mode="one_hot"``, ``sparse`` and ``ragged`` are not implemented.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable

import numpy as np

from .base import Layer, register

_PUNCT = re.compile(r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']')
_WS = re.compile(r"[ \t\n\v\f\r]+")
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
_STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation")
_SPLIT = ("whitespace", "character")
_MODES = ("int", "multi_hot", "count", "tf_idf")
MASK_TOKEN = ""
OOV_TOKEN = "[UNK]"


class TokenIds(np.ndarray):
    """The int64 id array TextVectorization returns: a plain NumPy array plus ``.numpy()`` (a plain ndarray view),
    so tutorial code written for Keras tensors (``vectorizer(texts).numpy()``) runs unchanged."""

    def numpy(self):
        return self.view(np.ndarray)


@register
class TextVectorization(Layer):
    """Strings -> int64 token ids or bag-of-words rows (Keras ``TextVectorization``); see the module docstring."""

    _float_input = False

    def __init__(self, max_tokens=None, standardize="lower_and_strip_punctuation", split="whitespace",
                 ngrams=None, output_mode="int", output_sequence_length=None, pad_to_max_tokens=False,
                 vocabulary=None, idf_weights=None, encoding="utf-8", **kwargs):
        super().__init__(**kwargs)
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, (int, np.integer))
                                       or max_tokens <= 1):
            raise ValueError(f"TextVectorization: max_tokens must be None or an int > 1, got {max_tokens!r}")
        self.max_tokens = None if max_tokens is None else int(max_tokens)
        if not (standardize is None or callable(standardize) or standardize in _STANDARDIZE):
            raise ValueError(f"TextVectorization: standardize must be one of {_STANDARDIZE}, None or a callable, "
                             f"got {standardize!r}")
        if not (split is None or callable(split) or split in _SPLIT):
            raise ValueError(f"TextVectorization: split must be one of {_SPLIT}, None or a callable, got {split!r}")
        self.standardize = standardize
        self.split = split
        if ngrams is None:
            self._ngrams = None
        elif isinstance(ngrams, (int, np.integer)) and not isinstance(ngrams, bool) and ngrams >= 1:
            self._ngrams = tuple(range(1, int(ngrams) + 1))
        elif isinstance(ngrams, (tuple, list)) and ngrams and all(
                isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1 for n in ngrams):
            self._ngrams = tuple(int(n) for n in ngrams)
        else:
            raise ValueError(f"TextVectorization: ngrams must be None, an int >= 1 or a tuple of ints, got {ngrams!r}")
        self.ngrams = ngrams if not isinstance(ngrams, list) else tuple(ngrams)
        output_mode = {"binary": "multi_hot", "tf-idf": "tf_idf"}.get(output_mode, output_mode)
        if output_mode not in _MODES:
            raise ValueError(f"TextVectorization: output_mode must be one of {_MODES} (rnnlab does not implement "
                             f"'one_hot'), got {output_mode!r}")
        self.output_mode = output_mode
        if output_mode != "int" and output_sequence_length is not None:
            raise ValueError(f"TextVectorization: output_sequence_length must not be set when output_mode is not "
                             f"'int', got output_sequence_length={output_sequence_length!r} with "
                             f"output_mode={output_mode!r}")
        if idf_weights is not None and (output_mode != "tf_idf" or vocabulary is None):
            raise ValueError("TextVectorization: idf_weights goes with output_mode='tf_idf' and a vocabulary=")
        if output_sequence_length is not None and (isinstance(output_sequence_length, bool) or not isinstance(
                output_sequence_length, (int, np.integer)) or output_sequence_length < 1):
            raise ValueError(f"TextVectorization: output_sequence_length must be None or a positive int, got "
                             f"{output_sequence_length!r}")
        self.output_sequence_length = None if output_sequence_length is None else int(output_sequence_length)
        self.pad_to_max_tokens = bool(pad_to_max_tokens)
        self.encoding = encoding
        self._vocab: list[str] | None = None
        self._index: dict[str, int] = {}
        self._idf: np.ndarray | None = None
        if vocabulary is not None:
            self.set_vocabulary(vocabulary, idf_weights=idf_weights)
        self.built = True

    # -------------------------------------------------------------- vocabulary
    @property
    def _specials(self):
        """The special tokens in front of the vocabulary: padding and OOV for ids, OOV alone for bag-of-words."""
        return [MASK_TOKEN, OOV_TOKEN] if self.output_mode == "int" else [OOV_TOKEN]

    def set_vocabulary(self, vocabulary, idf_weights=None):
        """Use ``vocabulary``: a list of tokens (ids 2.. in that order -- 1.. in the bag-of-words modes; leading
        special tokens are accepted) or, as Keras, the path of a UTF-8 text file with one token per line.
        ``idf_weights`` (one per token) are the weights of ``output_mode="tf_idf"``."""
        if isinstance(vocabulary, (str, os.PathLike)):
            try:
                with open(vocabulary, encoding="utf-8") as f:
                    lines = f.read().split("\n")
            except OSError as e:
                raise ValueError(f"TextVectorization '{self.name}': cannot read the vocabulary file "
                                 f"{str(vocabulary)!r}: {e.strerror or e}") from None
            if lines and lines[-1] == "":
                lines.pop()
            vocabulary = lines
        if isinstance(vocabulary, bytes) or not isinstance(vocabulary, Iterable):
            raise TypeError(f"TextVectorization '{self.name}': vocabulary must be a list of strings, got "
                            f"{type(vocabulary).__name__}")
        vocab = [self._decode(t) for t in vocabulary]
        if vocab[:1] == [MASK_TOKEN]:
            vocab = vocab[1:]
        if vocab[:1] == [OOV_TOKEN]:
            vocab = vocab[1:]
        for special in (MASK_TOKEN, OOV_TOKEN):
            if special in vocab:
                raise ValueError(f"TextVectorization '{self.name}': the special token {special!r} may only appear at "
                                 f"the start of the vocabulary (ids 0 and 1), found it at position "
                                 f"{vocab.index(special)} of the learned tokens")
        seen = Counter(vocab)
        repeated = sorted(t for t, n in seen.items() if n > 1)
        if repeated:
            raise ValueError(f"TextVectorization '{self.name}': the vocabulary has repeated tokens {repeated[:10]}")
        n_special = len(self._specials)
        if self.max_tokens is not None and len(vocab) + n_special > self.max_tokens:
            raise ValueError(f"TextVectorization '{self.name}': a vocabulary of {len(vocab)} tokens plus the "
                             f"{n_special} special token(s) is larger than max_tokens={self.max_tokens}")
        idf = None
        if self.output_mode == "tf_idf":
            if idf_weights is None:
                raise ValueError(f"TextVectorization '{self.name}': output_mode='tf_idf' with a given vocabulary "
                                 "needs idf_weights= (one per token), or call adapt() to learn both")
            idf = np.asarray(idf_weights, dtype=np.float64)
            if idf.ndim != 1 or len(idf) != len(vocab):
                raise ValueError(f"TextVectorization '{self.name}': idf_weights must be one weight per vocabulary "
                                 f"token ({len(vocab)}), got shape {idf.shape}")
        elif idf_weights is not None:
            raise ValueError(f"TextVectorization '{self.name}': idf_weights only apply to output_mode='tf_idf'")
        self._set_vocab(vocab, idf)

    def _set_vocab(self, vocab, idf=None):
        self._vocab = self._specials + list(vocab)
        self._index = {t: i for i, t in enumerate(self._vocab)}
        self._idf = None if idf is None else np.concatenate([[idf.mean() if len(idf) else 0.0], idf])

    def get_vocabulary(self, include_special_tokens=True):
        """The tokens in id order (``["", "[UNK]", most frequent, ...]``; bag-of-words modes: no ``""``)."""
        self._require_vocab("get_vocabulary")
        return list(self._vocab) if include_special_tokens else list(self._vocab[len(self._specials):])

    def vocabulary_size(self):
        """Number of ids, the two special tokens included (an ``Embedding``'s ``input_dim``)."""
        self._require_vocab("vocabulary_size")
        return len(self._vocab)

    def _require_vocab(self, what):
        if self._vocab is None:
            raise ValueError(f"TextVectorization '{self.name}': {what} needs a vocabulary, and this layer has none "
                             "yet: call layer.adapt(texts) on your training texts first, or pass vocabulary=[...] "
                             "(or call set_vocabulary)")

    def adapt(self, data, batch_size=None, steps=None):
        """Learn the vocabulary from ``data``: a list/array of strings, or an iterable of such batches.

        Tokens are counted after standardize/split/ngrams; the order is count high to low, ties broken by the
        token high to low, as Keras; ``max_tokens`` keeps the ``max_tokens - 2`` first (``- 1`` in the
        bag-of-words modes). ``tf_idf`` also learns ``idf = log(1 + D / (1 + d))`` per token."""
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1):
            raise ValueError(f"TextVectorization '{self.name}': steps must be None or a positive int, got {steps!r}")
        counts: Counter = Counter()
        doc_counts: Counter = Counter()
        n_docs = 0
        for rows in self._batches(data, steps):
            for tokens in rows:
                counts.update(tokens)
                doc_counts.update(set(tokens))
                n_docs += 1
        counts.pop(MASK_TOKEN, None)
        counts.pop(OOV_TOKEN, None)
        order = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
        if self.max_tokens is not None:
            order = order[:self.max_tokens - len(self._specials)]
        vocab = [t for t, _ in order]
        idf = None
        if self.output_mode == "tf_idf":
            idf = np.log(1.0 + n_docs / (1.0 + np.array([doc_counts[t] for t in vocab], dtype=np.float64)))
        self._set_vocab(vocab, idf)

    def _batches(self, data, steps):
        """Token lists of ``data``, batch by batch (one batch when data is a list/array of strings)."""
        if isinstance(data, (str, bytes)):
            raise TypeError(f"TextVectorization '{self.name}': adapt expects a list or array of strings, got one "
                            "string; wrap it in a list")
        if isinstance(data, np.ndarray) or (isinstance(data, (list, tuple)) and (
                not data or isinstance(data[0], (str, bytes, np.str_, np.bytes_)) or (
                    isinstance(data[0], (list, tuple, np.ndarray)) and len(data[0]) == 1
                    and isinstance(data[0][0], (str, bytes, np.str_, np.bytes_))))):
            yield self._tokenize(data, "adapt data")
            return
        if not isinstance(data, Iterable):
            raise TypeError(f"TextVectorization '{self.name}': adapt expects a list/array of strings or an iterable "
                            f"of batches of strings, got {type(data).__name__}")
        for i, batch in enumerate(data):
            if steps is not None and i >= steps:
                break
            if isinstance(batch, (str, bytes)):
                batch = [batch]
            yield self._tokenize(batch, f"adapt batch {i}")

    # ---------------------------------------------------------------- pipeline
    def _decode(self, t):
        if isinstance(t, (bytes, np.bytes_)):
            return bytes(t).decode(self.encoding)
        if isinstance(t, (str, np.str_)):
            return str(t)
        raise TypeError(f"TextVectorization '{self.name}': expected strings, got an element of type "
                        f"{type(t).__name__} ({t!r})")

    def _strings(self, inputs, what):
        """``inputs`` as a 1-D object array of str; ``scalar`` says whether one string was given."""
        if hasattr(inputs, "numpy") and not isinstance(inputs, np.ndarray):
            inputs = inputs.numpy()
        if isinstance(inputs, (str, bytes, np.str_, np.bytes_)):
            return np.array([self._decode(inputs)], dtype=object), True
        arr = np.asarray(inputs, dtype=object) if not isinstance(inputs, np.ndarray) else inputs
        if arr.ndim == 2 and self.split is not None:
            if arr.shape[1] != 1:
                raise ValueError(f"TextVectorization '{self.name}': {what} must be a list of strings (N,) or rows "
                                 f"of one string (N, 1), got shape {arr.shape}")
            arr = arr[:, 0]
        elif arr.ndim == 2 and self.split is None:
            pass
        elif arr.ndim != 1:
            raise ValueError(f"TextVectorization '{self.name}': {what} must be a list of strings (N,) or rows of one "
                             f"string (N, 1), got an array of shape {arr.shape}")
        flat = np.array([self._decode(t) for t in arr.reshape(-1)], dtype=object).reshape(arr.shape)
        return flat, False

    def _standardize(self, strings):
        if self.standardize is None:
            return strings
        if callable(self.standardize):
            out = self.standardize(strings.astype(str))
            out = np.asarray(out)
            if out.shape != strings.shape:
                raise ValueError(f"TextVectorization '{self.name}': the standardize callable must return an array "
                                 f"of shape {strings.shape}, got {out.shape}")
            return np.array([self._decode(t) for t in out.reshape(-1)], dtype=object).reshape(out.shape)
        lower = self.standardize in ("lower", "lower_and_strip_punctuation")
        strip = self.standardize in ("strip_punctuation", "lower_and_strip_punctuation")
        out = []
        for s in strings.reshape(-1):
            if lower:
                s = s.translate(_ASCII_LOWER)
            if strip:
                s = _PUNCT.sub("", s)
            out.append(s)
        return np.array(out, dtype=object).reshape(strings.shape)

    def _split_one(self, s):
        if self.split is None:
            return [s]
        if self.split == "whitespace":
            return [t for t in _WS.split(s) if t]
        if self.split == "character":
            return list(s)
        tokens = self.split(s)
        if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Iterable):
            raise TypeError(f"TextVectorization '{self.name}': the split callable must return a list of strings, "
                            f"got {type(tokens).__name__}")
        return [self._decode(t) for t in tokens]

    def _with_ngrams(self, tokens):
        if self._ngrams is None:
            return tokens
        out = []
        for n in self._ngrams:
            out.extend(" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
        return out

    def _tokenize(self, inputs, what="inputs"):
        strings, _ = self._strings(inputs, what)
        strings = self._standardize(strings)
        if strings.ndim == 2:   # split=None on (N, k): each element is one token
            return [self._with_ngrams([s for s in row]) for row in strings]
        return [self._with_ngrams(self._split_one(s)) for s in strings]

    # ----------------------------------------------------------------- running
    def __call__(self, inputs, *args, training=False, mask=None, **kwargs):
        if type(inputs).__name__ == "KerasTensor":
            raise TypeError(
                f"TextVectorization '{self.name}': rnnlab models take numeric inputs only, so this layer cannot be "
                "called on a symbolic Input; vectorize the texts outside the model (ids = vectorizer(texts)) and "
                "start the model with rnnlab.Input(shape=(None,), dtype='int32')")
        return self.forward(inputs, training=training, mask=mask)

    def forward(self, inputs, training=False, mask=None):
        self._require_vocab("calling the layer")
        scalar = isinstance(inputs, (str, bytes, np.str_, np.bytes_))
        rows = self._tokenize(inputs)
        idx, oov = self._index, self._index[OOV_TOKEN]
        ids = [[idx.get(t, oov) for t in row] for row in rows]
        if self.output_mode != "int":
            return self._bag_of_words(ids, scalar)
        L = self.output_sequence_length if self.output_sequence_length is not None else max(
            (len(r) for r in ids), default=0)
        out = np.zeros((len(ids), L), dtype=np.int64)
        for i, r in enumerate(ids):
            r = r[:L]
            out[i, :len(r)] = r
        self._cache = None
        return (out[0] if scalar else out).view(TokenIds)

    def _bag_of_words(self, ids, scalar):
        V = len(self._vocab)
        if self.pad_to_max_tokens and self.max_tokens is not None:
            V = max(V, self.max_tokens)
        counts = np.zeros((len(ids), V), dtype=np.float64)
        rows = np.repeat(np.arange(len(ids)), [len(r) for r in ids])
        cols = np.fromiter((i for r in ids for i in r), dtype=np.intp, count=len(rows))
        np.add.at(counts, (rows, cols), 1.0)
        if self.output_mode == "multi_hot":
            counts = (counts > 0).astype(np.float64)
        elif self.output_mode == "tf_idf":
            counts[:, :len(self._idf)] *= self._idf
        out = counts.astype(self.dtype)
        return out[0] if scalar else out

    def backward(self, grad):
        raise TypeError(f"Layer '{self.name}' (TextVectorization): its outputs are integer ids, so no gradient flows "
                        "through it; put it before the first layer with weights")

    def compute_output_shape(self, input_shape):
        if self.output_mode != "int":
            width = self.max_tokens if self.pad_to_max_tokens and self.max_tokens is not None else (
                None if self._vocab is None else len(self._vocab))
            return (tuple(input_shape)[0], width)
        return (tuple(input_shape)[0], self.output_sequence_length)

    def compute_mask(self, inputs, mask=None):
        return None

    def count_params(self):
        return 0

    def get_config(self):
        cfg = super().get_config()
        cfg.update(max_tokens=self.max_tokens, standardize=self.standardize if not callable(self.standardize) else None,
                   split=self.split if not callable(self.split) else None,
                   ngrams=list(self.ngrams) if isinstance(self.ngrams, tuple) else self.ngrams,
                   output_mode=self.output_mode, output_sequence_length=self.output_sequence_length,
                   pad_to_max_tokens=self.pad_to_max_tokens, encoding=self.encoding,
                   vocabulary=None if self._vocab is None else self.get_vocabulary(include_special_tokens=False),
                   idf_weights=None if self._idf is None else [float(w) for w in self._idf[1:]])
        if callable(self.standardize) or callable(self.split):
            raise ValueError(f"TextVectorization '{self.name}': a callable standardize/split cannot be written to a "
                             "config; use one of the named modes to save this layer")
        return cfg
