"""Word and character tokenizers.

:class:`Tokenizer` behaves like Keras' (legacy) ``Tokenizer``: the same splitting rules, the same
frequency-ranked ``word_index`` (ties keep first-seen order, ids start at 1, index 0 is never used
so it can serve as padding, the ``oov_token`` if any takes id 1), the same ``num_words`` cut-off
(only ids ``< num_words`` are kept when converting; the index itself keeps every word) and the same
JSON format, so a tokenizer saved by Keras' ``to_json`` loads here and the other way round.

:class:`CharTokenizer` is a fixed character vocabulary for character-level models, with explicit
handling of characters that were not seen during fitting.
"""
from __future__ import annotations

import collections
import json
import os

#: Keras' default ``filters``: punctuation, tab and newline are removed (replaced by ``split``).
DEFAULT_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'


def text_to_word_sequence(text, filters=DEFAULT_FILTERS, lower=True, split=" "):
    """Split ``text`` into words the Keras way.

    Lower-case (optional), replace every character of ``filters`` by ``split``, split on ``split``
    and drop empty pieces. Apostrophes are *not* in the default filters, so ``"don't"`` stays one word.
    """
    if not isinstance(text, str):
        raise TypeError(f"text_to_word_sequence: expected a str, got {type(text).__name__}")
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a non-empty string, got {split!r}")
    if lower:
        text = text.lower()
    if filters:
        text = text.translate(str.maketrans({c: split for c in filters}))
    return [w for w in text.split(split) if w]


class Tokenizer:
    """Vocabulary of words ranked by frequency; texts <-> lists of integer ids.

    Parameters
    ----------
    num_words : int or None
        When converting, keep only words whose id is ``< num_words`` (the ``num_words - 1`` most
        frequent, counting the ``oov_token``). Others become ``oov_token`` if set, else are dropped.
    filters : str
        Characters replaced by ``split`` before splitting (ignored when ``char_level``).
    lower : bool
        Lower-case texts first.
    split : str
        Word separator.
    char_level : bool
        Every character is a token (no filtering).
    oov_token : str or None
        Token for out-of-vocabulary words; it gets id 1 when fitting.
    analyzer : callable or None
        ``text -> list of tokens``, replacing the built-in splitting (not saved in JSON).

    A text given as a ``list`` of strings is taken as already tokenised (only lower-cased), as in Keras.
    """

    def __init__(self, num_words=None, filters=DEFAULT_FILTERS, lower=True, split=" ", char_level=False,
                 oov_token=None, analyzer=None, document_count=0):
        if num_words is not None and (isinstance(num_words, bool) or not isinstance(num_words, int)
                                      or num_words < 0):
            raise ValueError(f"Tokenizer: num_words must be None or an integer >= 0, got {num_words!r}")
        if not isinstance(split, str) or not split:
            raise ValueError(f"Tokenizer: split must be a non-empty string, got {split!r}")
        if oov_token is not None and not isinstance(oov_token, str):
            raise TypeError(f"Tokenizer: oov_token must be a str or None, got {type(oov_token).__name__}")
        self.num_words = num_words
        self.filters = filters if filters is not None else ""
        self.lower = bool(lower)
        self.split = split
        self.char_level = bool(char_level)
        self.oov_token = oov_token
        self.analyzer = analyzer
        self.document_count = int(document_count)
        self.word_counts = collections.OrderedDict()
        self.word_docs = collections.defaultdict(int)
        self.index_docs = collections.defaultdict(int)
        self.word_index = {}
        self.index_word = {}

    # -- splitting ---------------------------------------------------------------------------------
    def _tokens(self, text, position):
        if isinstance(text, list):
            return [t.lower() for t in text] if self.lower else text
        if not isinstance(text, str):
            raise TypeError(f"Tokenizer: text #{position} must be a str or a list of tokens, "
                            f"got {type(text).__name__}")
        if self.char_level:
            return text.lower() if self.lower else text
        if self.analyzer is not None:
            return self.analyzer(text)
        return text_to_word_sequence(text, self.filters, self.lower, self.split)

    @staticmethod
    def _check_texts(texts, what):
        if isinstance(texts, str):
            raise TypeError(f"Tokenizer.{what}: expected a list of texts, got a single str "
                            "(wrap it in a list)")

    # -- fitting -------------------------------------------------------------------------------------
    def fit_on_texts(self, texts):
        """Count words in ``texts`` (an iterable of strings or token lists) and rebuild the index."""
        self._check_texts(texts, "fit_on_texts")
        for pos, text in enumerate(texts):
            tokens = self._tokens(text, pos)
            self.document_count += 1
            counts = self.word_counts
            for w in tokens:
                counts[w] = counts.get(w, 0) + 1
            for w in set(tokens):
                self.word_docs[w] += 1
        # stable sort: equal counts keep the order in which the words were first seen
        ranked = sorted(self.word_counts.items(), key=lambda kv: kv[1], reverse=True)
        vocab = ([] if self.oov_token is None else [self.oov_token]) + [w for w, _ in ranked]
        index = {}
        for i, w in enumerate(vocab, start=1):
            index[w] = i          # a word equal to oov_token overrides it, exactly as Keras' dict(zip(...))
        self.word_index = index
        self.index_word = {i: w for w, i in index.items()}
        for w, c in self.word_docs.items():
            self.index_docs[self.word_index[w]] = c

    def fit_on_sequences(self, sequences):
        """Update the document frequencies from id sequences (used only for the ``tfidf`` matrix)."""
        self.document_count += len(sequences)
        for seq in sequences:
            for i in set(seq):
                self.index_docs[i] += 1

    # -- conversion ----------------------------------------------------------------------------------
    def texts_to_sequences(self, texts):
        """List of id lists, one per text (see ``num_words`` and ``oov_token`` for rare/unknown words)."""
        return list(self.texts_to_sequences_generator(texts))

    def texts_to_sequences_generator(self, texts):
        """Generator form of :meth:`texts_to_sequences`."""
        self._check_texts(texts, "texts_to_sequences")
        limit = self.num_words
        oov = self.word_index.get(self.oov_token)
        for pos, text in enumerate(texts):
            ids = []
            for w in self._tokens(text, pos):
                i = self.word_index.get(w)
                if i is None or (limit and i >= limit):
                    if oov is not None:
                        ids.append(oov)
                else:
                    ids.append(i)
            yield ids

    def sequences_to_texts(self, sequences):
        """Join the words of each id sequence with spaces (ids unknown or ``>= num_words`` -> oov or dropped)."""
        return list(self.sequences_to_texts_generator(sequences))

    def sequences_to_texts_generator(self, sequences):
        """Generator form of :meth:`sequences_to_texts`."""
        limit = self.num_words
        oov = self.word_index.get(self.oov_token)
        oov_word = None if oov is None else self.index_word.get(oov)
        for seq in sequences:
            words = []
            for num in seq:
                num = int(num)
                w = self.index_word.get(num)
                if w is None or (limit and num >= limit):
                    if oov is not None:
                        if oov_word is None:
                            raise KeyError(oov)   # Keras fails the same way when the oov id was overridden
                        words.append(oov_word)
                else:
                    words.append(w)
            yield " ".join(words)

    def texts_to_matrix(self, texts, mode="binary"):
        """``(len(texts), num_words)`` bag-of-words matrix (``binary``, ``count``, ``freq``, ``tfidf``)."""
        return self.sequences_to_matrix(self.texts_to_sequences(texts), mode=mode)

    def sequences_to_matrix(self, sequences, mode="binary"):
        """Bag-of-words matrix from id sequences, same values as Keras (float64)."""
        import numpy as np
        if mode not in ("binary", "count", "freq", "tfidf"):
            raise ValueError(f"Tokenizer.sequences_to_matrix: unknown mode {mode!r} "
                             "(expected binary, count, freq or tfidf)")
        if self.num_words:
            width = self.num_words
        elif self.word_index:
            width = len(self.word_index) + 1
        else:
            raise ValueError("Tokenizer.sequences_to_matrix: set num_words or fit on texts first")
        if mode == "tfidf" and not self.document_count:
            raise ValueError("Tokenizer.sequences_to_matrix: fit the tokenizer before using tfidf mode")
        out = np.zeros((len(sequences), width))
        for row, seq in enumerate(sequences):
            if not len(seq):
                continue
            counts = collections.Counter(int(j) for j in seq if int(j) < width)
            for j, c in counts.items():
                if mode == "count":
                    out[row, j] = c
                elif mode == "freq":
                    out[row, j] = c / len(seq)
                elif mode == "binary":
                    out[row, j] = 1
                else:
                    idf = np.log(1 + self.document_count / (1 + self.index_docs.get(j, 0)))
                    out[row, j] = (1 + np.log(c)) * idf
        return out

    # -- JSON ------------------------------------------------------------------------------------------
    def get_config(self):
        """Keras' config layout: the dictionaries are JSON strings inside the JSON object."""
        return {
            "num_words": self.num_words, "filters": self.filters, "lower": self.lower, "split": self.split,
            "char_level": self.char_level, "oov_token": self.oov_token, "document_count": self.document_count,
            "word_counts": json.dumps(self.word_counts), "word_docs": json.dumps(self.word_docs),
            "index_docs": json.dumps(self.index_docs), "index_word": json.dumps(self.index_word),
            "word_index": json.dumps(self.word_index),
        }

    def to_json(self, **kwargs):
        """JSON string readable by :func:`tokenizer_from_json` and by Keras' ``tokenizer_from_json``."""
        return json.dumps({"class_name": "Tokenizer", "config": self.get_config()}, **kwargs)

    def save(self, path):
        """Write :meth:`to_json` to ``path`` atomically."""
        from ..io import atomic_write_bytes
        atomic_write_bytes(path, self.to_json().encode("utf-8"))

    @classmethod
    def load(cls, path):
        """Read a tokenizer written by :meth:`save` (or Keras' ``to_json``); see :func:`_read_json_text`."""
        return tokenizer_from_json(_read_json_text(path), source=os.fspath(path))


def _read_json_text(path):
    """The UTF-8 text of a tokenizer file: a file above :data:`rnnlab.io.MAX_JSON_BYTES` is refused before it is
    read, undecodable bytes raise :class:`rnnlab.io.FileEncodingError` (file, line, byte offset)."""
    from .. import io as rio

    path = os.fspath(path)
    if os.path.isdir(path):
        raise rio.FileFormatError(f"{path} is a directory, not a tokenizer file", path=path)
    size = os.path.getsize(path)
    if size > rio.MAX_JSON_BYTES:
        raise rio.FileTooLargeError(f"{path}: a {rio.format_bytes(size)} tokenizer file, more than the "
                                    f"{rio.format_bytes(rio.MAX_JSON_BYTES)} rnnlab reads", path=path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise rio.decode_error(path, e, line=line, encoding="utf-8") from None


def tokenizer_from_json(json_string, source="<string>"):
    """Rebuild a :class:`Tokenizer` from :meth:`Tokenizer.to_json` (Keras' format)."""
    try:
        obj = json.loads(json_string)
    except json.JSONDecodeError as e:
        raise ValueError(f"{source}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except (RecursionError, ValueError) as e:
        raise ValueError(f"{source}: unreadable JSON ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("config"), dict):
        raise ValueError(f"{source}: not a tokenizer JSON (expected an object with a 'config' object)")
    if obj.get("class_name", "Tokenizer") != "Tokenizer":
        raise ValueError(f"{source}: holds a {obj.get('class_name')!r}, not a Tokenizer")
    config = dict(obj["config"])
    tables = {}
    for key in ("word_counts", "word_docs", "index_docs", "index_word", "word_index"):
        raw = config.pop(key, "{}")
        try:
            tables[key] = json.loads(raw) if isinstance(raw, str) else dict(raw)
        except (json.JSONDecodeError, TypeError, ValueError, RecursionError):
            raise ValueError(f"{source}: config field {key!r} is not a JSON object") from None
    known = {"num_words", "filters", "lower", "split", "char_level", "oov_token", "document_count"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{source}: unknown tokenizer config fields {unknown}")
    from ..io import FileFormatError

    try:
        tok = Tokenizer(**config)
        tok.word_counts = collections.OrderedDict(tables["word_counts"])
        tok.word_docs = collections.defaultdict(int, tables["word_docs"])
        tok.index_docs = collections.defaultdict(int, {int(k): v for k, v in tables["index_docs"].items()})
        tok.word_index = {k: int(v) for k, v in tables["word_index"].items()}
        tok.index_word = {int(k): v for k, v in tables["index_word"].items()}
    except (TypeError, ValueError, AttributeError, OverflowError) as e:   # the file's content, not a bug here
        raise FileFormatError(f"{source}: not a valid tokenizer config ({type(e).__name__}: {e})",
                              path=None if source == "<string>" else source) from None
    return tok


class CharTokenizer:
    """Character vocabulary for character-level models.

    ``fit`` collects the distinct characters of the texts and sorts them (the order the classic
    Keras text-generation example uses); ids are ``0 .. vocab_size - 1`` unless ``reserve_zero``
    keeps id 0 free for padding/masking (then ids start at 1).

    Unknown characters at :meth:`encode` time follow ``unknown``:

    * ``"error"`` (default): ``ValueError`` naming the character, its code point and position;
    * ``"skip"``: dropped;
    * ``"replace"``: mapped to ``unk_char`` (which is added to the vocabulary by ``fit``).
    """

    def __init__(self, lower=False, unknown="error", unk_char="\ufffd", reserve_zero=False):
        if unknown not in ("error", "skip", "replace"):
            raise ValueError(f"CharTokenizer: unknown must be 'error', 'skip' or 'replace', got {unknown!r}")
        if unknown == "replace" and (not isinstance(unk_char, str) or len(unk_char) != 1):
            raise ValueError(f"CharTokenizer: unk_char must be a single character, got {unk_char!r}")
        self.lower = bool(lower)
        self.unknown = unknown
        self.unk_char = unk_char
        self.reserve_zero = bool(reserve_zero)
        self.chars = []
        self.char_index = {}
        self.index_char = {}

    @property
    def vocab_size(self):
        """Number of ids the model needs (including the reserved 0 when ``reserve_zero``)."""
        return len(self.chars) + (1 if self.reserve_zero else 0)

    def fit(self, texts):
        """Build the vocabulary from a string or an iterable of strings; returns ``self``."""
        if isinstance(texts, str):
            texts = [texts]
        seen = set()
        for pos, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"CharTokenizer.fit: text #{pos} must be a str, got {type(t).__name__}")
            seen.update(t.lower() if self.lower else t)
        if self.unknown == "replace":
            seen.add(self.unk_char)
        if not seen:
            raise ValueError("CharTokenizer.fit: no characters in the given texts")
        self._set_chars(sorted(seen))
        return self

    def _set_chars(self, chars):
        if len(set(chars)) != len(chars) or any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise ValueError("CharTokenizer: the vocabulary must be distinct single characters")
        off = 1 if self.reserve_zero else 0
        self.chars = list(chars)
        self.char_index = {c: i + off for i, c in enumerate(self.chars)}
        self.index_char = {i + off: c for i, c in enumerate(self.chars)}

    def encode(self, text):
        """String -> ``int64`` array of ids (unknown characters: see the class docstring)."""
        import numpy as np
        if not self.chars:
            raise ValueError("CharTokenizer.encode: call fit() (or load()) first")
        if not isinstance(text, str):
            raise TypeError(f"CharTokenizer.encode: expected a str, got {type(text).__name__}")
        if self.lower:
            text = text.lower()
        index = self.char_index
        try:
            return np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError:
            pass
        out = []
        unk = index.get(self.unk_char)
        for pos, c in enumerate(text):
            i = index.get(c)
            if i is not None:
                out.append(i)
            elif self.unknown == "skip":
                continue
            elif self.unknown == "replace":
                out.append(unk)
            else:
                raise ValueError(f"CharTokenizer.encode: character {c!r} (U+{ord(c):04X}) at position {pos} "
                                 "is not in the vocabulary (use unknown='skip' or 'replace')")
        return np.asarray(out, dtype=np.int64)

    def decode(self, ids):
        """Ids -> string (the reserved id 0 is skipped; other unknown ids raise ``ValueError``)."""
        out = []
        for pos, i in enumerate(ids):
            i = int(i)
            if self.reserve_zero and i == 0:
                continue
            c = self.index_char.get(i)
            if c is None:
                raise ValueError(f"CharTokenizer.decode: id {i} at position {pos} is outside the vocabulary "
                                 f"(valid ids {0 + self.reserve_zero}..{self.vocab_size - 1})")
            out.append(c)
        return "".join(out)

    def get_config(self):
        return {"lower": self.lower, "unknown": self.unknown, "unk_char": self.unk_char,
                "reserve_zero": self.reserve_zero, "chars": "".join(self.chars)}

    def to_json(self, **kwargs):
        return json.dumps({"class_name": "CharTokenizer", "config": self.get_config()}, **kwargs)

    @classmethod
    def from_json(cls, json_string, source="<string>"):
        try:
            obj = json.loads(json_string)
        except json.JSONDecodeError as e:
            raise ValueError(f"{source}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
        except (RecursionError, ValueError) as e:
            raise ValueError(f"{source}: unreadable JSON ({type(e).__name__}: {e})") from None
        if not isinstance(obj, dict) or obj.get("class_name") != "CharTokenizer" or \
                not isinstance(obj.get("config"), dict):
            raise ValueError(f"{source}: not a CharTokenizer JSON (class_name "
                             f"{obj.get('class_name') if isinstance(obj, dict) else None!r})")
        cfg = dict(obj["config"])
        chars = cfg.pop("chars", None)
        if not isinstance(chars, str) or not chars:
            raise ValueError(f"{source}: CharTokenizer config needs a non-empty 'chars' string")
        try:
            tok = cls(**cfg)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{source}: bad CharTokenizer config: {e}") from None
        tok._set_chars(list(chars))
        return tok

    def save(self, path):
        from ..io import atomic_write_bytes
        atomic_write_bytes(path, self.to_json(ensure_ascii=False).encode("utf-8"))

    @classmethod
    def load(cls, path):
        return cls.from_json(_read_json_text(path), source=os.fspath(path))
