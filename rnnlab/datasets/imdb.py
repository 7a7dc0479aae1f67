"""The IMDB movie-review sentiment data (Maas et al., 2011) from its three usual forms.

* :func:`load_imdb_csv` -- the 50,000-review CSV (``review,sentiment``; ``.csv`` or ``.csv.gz``). In the copy
  described by ``shared/data/README.md`` rows 1-25,000 are the official **train** split and rows 25,001-50,000
  the **test** split; ``train_rows=25000`` (the default) splits there.
* :func:`load_imdb_folder` -- an extracted ``aclImdb/`` folder (``train|test/pos|neg/<id>_<rating>.txt``),
  read in the CSV's order (by review id, negative before positive), so both forms give the same arrays.
* :func:`load_imdb_npz` -- Keras' pre-tokenised ``imdb.npz`` (+ the word index JSON), with Keras'
  ``start_char=1, oov_char=2, index_from=3`` conventions and Keras' seeded shuffle, so the result equals
  ``keras.datasets.imdb.load_data`` for the same file.

``np.load`` is always called with ``allow_pickle=False``. Keras' real ``imdb.npz`` stores its ragged
``x_train``/``x_test`` as NumPy *object* arrays, which NumPy can only load through pickle; those members are
read here without pickle, by a small interpreter of the pickle opcodes (:func:`_parse_object_array`) that can
rebuild NumPy arrays, dtypes and lists of integers and nothing else (any other class, function or opcode in the
stream -> an error; nothing is imported or called).
The pickle-free alternative is the *flat* layout written by :func:`save_imdb_npz`:
``x_train_values`` (all ids concatenated, int32) plus ``x_train_offsets`` (``n + 1`` start offsets), the same for
``x_test``, and ``y_train``/``y_test``.

:func:`download_imdb` fetches ``aclImdb_v1.tar.gz`` from the dataset's canonical address into a cache folder
(once; later calls reuse it) and extracts it safely.

Labels: 1 = positive, 0 = negative.
"""
from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import struct
import tarfile
import tokenize
import urllib.request
import zlib

import numpy as np

from .. import io as _rio
from ..text import Tokenizer, clean_review, pad_sequences

#: canonical address of the Large Movie Review Dataset v1.0
IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
#: sha256 of ``aclImdb_v1.tar.gz`` as published (84,125,825 bytes)
IMDB_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"

LABELS = {"negative": 0, "positive": 1, "neg": 0, "pos": 1, "0": 0, "1": 1}


# ----------------------------------------------------------------------------------------------------
# raw text readers
# ----------------------------------------------------------------------------------------------------
def _open_text(path, encoding):
    if str(path).endswith(".gz"):
        return gzip.open(path, "rt", encoding=encoding, newline="")
    return open(path, "r", encoding=encoding, newline="")


def read_imdb_csv(path, text_column="review", label_column="sentiment", encoding="utf-8", max_rows=None):
    """Read ``(texts, labels)`` from a review CSV (plain or ``.gz``).

    Labels may be ``positive``/``negative``, ``pos``/``neg`` or ``1``/``0``. Errors name the file and the line:
    missing columns, a ragged row, an unknown label, an empty review, undecodable bytes.
    """
    texts, labels = [], []
    try:
        with _open_text(path, encoding) as f:
            reader = csv.reader(f)
            try:
                header = next(reader)
            except StopIteration:
                raise ValueError(f"{path}: empty file (expected a header with {text_column!r},{label_column!r})")
            missing = [c for c in (text_column, label_column) if c not in header]
            if missing:
                raise ValueError(f"{path}, line 1: missing column(s) {missing}; the header has {header}")
            ti, li = header.index(text_column), header.index(label_column)
            for row in reader:
                if max_rows is not None and len(texts) >= max_rows:
                    break
                line = reader.line_num
                if len(row) != len(header):
                    raise ValueError(f"{path}, line {line}: {len(row)} fields, the header has {len(header)}")
                label = LABELS.get(row[li].strip().lower())
                if label is None:
                    raise ValueError(f"{path}, line {line}: unknown label {row[li]!r} "
                                     "(expected positive/negative, pos/neg or 1/0)")
                if not row[ti].strip():
                    raise ValueError(f"{path}, line {line}: empty review text")
                texts.append(row[ti])
                labels.append(label)
    except UnicodeDecodeError as e:
        raise _rio.FileEncodingError(f"{path}: not valid {encoding} ({e.reason} at byte offset {e.start} of a "
                                     f"decoded block near line {len(texts) + 2}); pass encoding=... (--encoding) if "
                                     "the file uses another encoding", path=path) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:   # a truncated or damaged .gz
        raise _rio.FileFormatError(f"{path}: damaged or truncated gzip file near line {len(texts) + 2} "
                                   f"({type(e).__name__}: {e})", path=path) from None
    except csv.Error as e:
        raise ValueError(f"{path}: malformed CSV near line {len(texts) + 2}: {e}") from None
    return texts, np.asarray(labels, dtype=np.int64)


_NAME = re.compile(r"^(\d+)_(\d+)\.txt$")


def read_imdb_folder(root, split="train", encoding="utf-8"):
    """``(texts, labels)`` of one split of an ``aclImdb/`` folder, ordered by review id, neg before pos."""
    items = []
    for label_name, label in (("neg", 0), ("pos", 1)):
        folder = os.path.join(root, split, label_name)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{root}: no folder {split}/{label_name} (is this an aclImdb/ folder?)")
        for name in os.listdir(folder):
            m = _NAME.match(name)
            if m is None:
                continue      # e.g. urls_pos.txt lives one level up; ignore anything not <id>_<rating>.txt
            items.append((int(m.group(1)), label, os.path.join(folder, name)))
    if not items:
        raise ValueError(f"{root}: no <id>_<rating>.txt review files under {split}/")
    items.sort()
    texts = []
    for _, _, path in items:
        with open(path, "rb") as f:
            raw = f.read()
        try:
            texts.append(raw.decode(encoding))
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not valid {encoding} at byte offset {e.start} ({e.reason})") from None
    return texts, np.asarray([lab for _, lab, _ in items], dtype=np.int64)


# ----------------------------------------------------------------------------------------------------
# texts -> ids
# ----------------------------------------------------------------------------------------------------
def texts_to_ids(train_texts, test_texts, num_words=None, maxlen=None, clean=True, oov_token="<OOV>",
                 padding="pre", truncating="pre", tokenizer=None):
    """Fit a :class:`Tokenizer` on the train texts only and convert both splits.

    ``clean`` applies :func:`rnnlab.text.clean_review` (``<br />`` -> space, tags removed) first.
    With ``maxlen`` the id lists are padded/truncated to ``int32`` arrays (Keras' defaults: both "pre");
    without it they stay lists. Returns ``(x_train, x_test, tokenizer)``.
    """
    if clean:
        train_texts = [clean_review(t) for t in train_texts]
        test_texts = [clean_review(t) for t in test_texts]
    if tokenizer is None:
        tokenizer = Tokenizer(num_words=num_words, oov_token=oov_token)
        tokenizer.fit_on_texts(train_texts)
    x_train = tokenizer.texts_to_sequences(train_texts)
    x_test = tokenizer.texts_to_sequences(test_texts)
    if maxlen is not None:
        x_train = pad_sequences(x_train, maxlen=maxlen, padding=padding, truncating=truncating)
        x_test = pad_sequences(x_test, maxlen=maxlen, padding=padding, truncating=truncating)
    return x_train, x_test, tokenizer


def load_imdb_csv(path, num_words=None, maxlen=None, train_rows=25000, clean=True, oov_token="<OOV>",
                  encoding="utf-8", text_column="review", label_column="sentiment"):
    """IMDB from the CSV: ``((x_train, y_train), (x_test, y_test), tokenizer)``.

    Rows ``1..train_rows`` are the training split, the rest the test split (the official split for the
    shared copy). The tokenizer is fitted on the training texts only; ``num_words`` keeps the most frequent
    words (ids ``< num_words``, others become ``oov_token``).
    """
    texts, labels = read_imdb_csv(path, text_column, label_column, encoding)
    if not 0 < train_rows < len(texts):
        raise ValueError(f"{path}: train_rows={train_rows} leaves no train or no test rows "
                         f"(the file has {len(texts)} rows)")
    x_train, x_test, tok = texts_to_ids(texts[:train_rows], texts[train_rows:], num_words, maxlen, clean, oov_token)
    return (x_train, labels[:train_rows]), (x_test, labels[train_rows:]), tok


def load_imdb_folder(root, num_words=None, maxlen=None, clean=True, oov_token="<OOV>", encoding="utf-8"):
    """IMDB from an ``aclImdb/`` folder: ``((x_train, y_train), (x_test, y_test), tokenizer)``."""
    train_texts, y_train = read_imdb_folder(root, "train", encoding)
    test_texts, y_test = read_imdb_folder(root, "test", encoding)
    x_train, x_test, tok = texts_to_ids(train_texts, test_texts, num_words, maxlen, clean, oov_token)
    return (x_train, y_train), (x_test, y_test), tok


# ----------------------------------------------------------------------------------------------------
# Keras imdb.npz
# ----------------------------------------------------------------------------------------------------
class _ArrayStub:
    """An ndarray being rebuilt by :func:`_parse_object_array` (filled in by the BUILD opcode)."""

    __slots__ = ("value",)

    def __init__(self):
        self.value = None


class _DtypeBox:
    __slots__ = ("dtype",)

    def __init__(self, dtype):
        self.dtype = dtype


_MARK = object()
_ALLOWED_GLOBALS = {("numpy.core.multiarray", "_reconstruct"): "reconstruct",
                    ("numpy._core.multiarray", "_reconstruct"): "reconstruct",
                    ("numpy", "ndarray"): "ndarray", ("numpy", "dtype"): "dtype",
                    ("numpy.core.multiarray", "scalar"): "scalar", ("numpy._core.multiarray", "scalar"): "scalar",
                    ("numpy.core.numeric", "_frombuffer"): "frombuffer",
                    ("numpy._core.numeric", "_frombuffer"): "frombuffer",
                    ("_codecs", "encode"): "encode"}   # protocols 0-2 write bytes as _codecs.encode(text, "latin1")


def _unbox(v):
    if isinstance(v, _ArrayStub):
        if v.value is None:
            raise ValueError("an array is used before its data was given")
        return v.value
    if isinstance(v, _DtypeBox):
        return v.dtype
    if isinstance(v, list):
        return [_unbox(x) for x in v]
    return v


def _as_text(v):
    return v.decode("latin1") if isinstance(v, (bytes, bytearray)) else str(v)


def _parse_object_array(data: bytes):
    """Rebuild the NumPy object array that ``np.save`` pickled into ``data`` **without pickle**.

    A small interpreter of the pickle opcodes such a stream uses (protocols 0-5, as written by Python 2 and 3
    NumPy): it knows only NumPy's array reconstruction (``_reconstruct``, ``ndarray``, ``dtype``, ``scalar``),
    lists, tuples, integers, booleans, ``None`` and strings. Any other global (class or function) or opcode is a
    ``ValueError``; nothing is imported or called beyond building arrays and dtypes."""
    stack: list = []
    memo: dict = {}
    pos, n = 0, len(data)

    def take(k):
        nonlocal pos
        if k < 0 or pos + k > n:
            raise ValueError("truncated stream")
        out = data[pos:pos + k]
        pos += k
        return out

    def line():
        nonlocal pos
        end = data.find(b"\n", pos)
        if end < 0:
            raise ValueError("truncated stream")
        out = data[pos:end]
        pos = end + 1
        return out

    def pop_mark():
        for k in range(len(stack) - 1, -1, -1):
            if stack[k] is _MARK:
                items = stack[k + 1:]
                del stack[k:]
                return items
        raise ValueError("MARK missing")

    def global_(module, name):
        kind = _ALLOWED_GLOBALS.get((module, name))
        if kind is None:
            raise ValueError(f"refusing to load {module}.{name} (only NumPy arrays are allowed)")
        stack.append(("__global__", kind))

    def reduce_(func, args):
        kind = func[1] if isinstance(func, tuple) and len(func) == 2 and func[0] == "__global__" else None
        args = tuple(args) if isinstance(args, (tuple, list)) else None
        if kind == "reconstruct" and args and args[0] == ("__global__", "ndarray"):
            return _ArrayStub()
        if kind == "dtype" and args:
            return _DtypeBox(np.dtype(_as_text(args[0])))
        if kind == "scalar" and args and len(args) == 2:
            dt = _unbox(args[0])
            if dt.hasobject:
                raise ValueError("object scalar in the stream")
            return np.frombuffer(bytes(args[1]), dtype=dt)[0].item()
        if kind == "encode" and args and len(args) == 2 and isinstance(args[0], str) \
                and str(args[1]).lower() in ("latin1", "latin-1"):
            return args[0].encode("latin1")
        if kind == "frombuffer" and args and len(args) == 4:
            buf, dt, shape, order = args
            dt = _unbox(dt)
            if dt.hasobject:
                raise ValueError("object buffer in the stream")
            return np.frombuffer(bytes(buf), dtype=dt).reshape(tuple(int(d) for d in shape),
                                                               order=_as_text(order)).copy()
        raise ValueError(f"unsupported call {func!r} in the stream")

    def build(obj, state):
        if isinstance(obj, _DtypeBox):
            if isinstance(state, tuple) and len(state) > 1 and _as_text(state[1]) in ("<", ">"):
                obj.dtype = obj.dtype.newbyteorder(_as_text(state[1]))
            return
        if isinstance(obj, _ArrayStub) and isinstance(state, tuple) and len(state) == 5:
            _, shape, dtype, fortran, raw = state
            dtype = _unbox(dtype)
            shape = tuple(int(d) for d in shape)
            order = "F" if fortran else "C"
            if dtype.hasobject:
                items = _unbox(raw)
                if not isinstance(items, list) or len(items) != int(np.prod(shape)):
                    raise ValueError("object array data does not match its shape")
                arr = np.empty(len(items), dtype=object)
                for k, item in enumerate(items):
                    arr[k] = item
                obj.value = arr.reshape(shape, order=order)
            else:
                buf = raw.encode("latin1") if isinstance(raw, str) else bytes(raw)
                obj.value = np.frombuffer(buf, dtype=dtype).reshape(shape, order=order).copy()
            return
        raise ValueError("unsupported BUILD in the stream")

    fixed = {b"K": ("<B", 1), b"M": ("<H", 2), b"J": ("<i", 4)}
    while True:
        op = take(1)
        if op in fixed:
            fmt, k = fixed[op]
            stack.append(struct.unpack(fmt, take(k))[0])
        elif op == b"\x80":                      # PROTO
            take(1)
        elif op == b"\x95":                    # FRAME
            take(8)
        elif op == b".":                       # STOP
            if len(stack) != 1:
                raise ValueError("malformed stream (stack at STOP)")
            return _unbox(stack[0])
        elif op == b"(":
            stack.append(_MARK)
        elif op == b"c":                       # GLOBAL
            module = line().decode("latin1")
            global_(module, line().decode("latin1"))
        elif op == b"\x93":                    # STACK_GLOBAL
            name, module = stack.pop(), stack.pop()
            global_(_as_text(module), _as_text(name))
        elif op == b"R":
            args = stack.pop()
            stack.append(reduce_(stack.pop(), args))
        elif op == b"b":
            state = stack.pop()
            build(stack[-1], state)
        elif op == b"N":
            stack.append(None)
        elif op in (b"\x88", b"\x89"):
            stack.append(op == b"\x88")
        elif op == b"\x8a":                    # LONG1
            stack.append(int.from_bytes(take(take(1)[0]), "little", signed=True))
        elif op in (b"I", b"L"):               # INT / LONG (text)
            text = line().decode("latin1").rstrip("L")
            stack.append(True if text == "01" else False if text == "00" else int(text))
        elif op in (b"U", b"C"):               # SHORT_BINSTRING / SHORT_BINBYTES
            stack.append(bytes(take(take(1)[0])))
        elif op in (b"T", b"B"):               # BINSTRING / BINBYTES
            stack.append(bytes(take(struct.unpack("<I", take(4))[0])))
        elif op == b"\x96":                    # BYTEARRAY8
            stack.append(bytearray(take(struct.unpack("<Q", take(8))[0])))
        elif op == b"\x8e":                    # BINBYTES8
            stack.append(bytes(take(struct.unpack("<Q", take(8))[0])))
        elif op == b"\x8c":                    # SHORT_BINUNICODE
            stack.append(take(take(1)[0]).decode("utf-8"))
        elif op == b"V":                       # UNICODE (protocol 0)
            stack.append(line().decode("raw-unicode-escape"))
        elif op == b"S":                       # STRING (protocol 0: a quoted Python 2 str)
            text = line()
            if len(text) < 2 or text[:1] != text[-1:] or text[:1] not in (b"'", b'"'):
                raise ValueError("malformed STRING opcode")
            stack.append(codecs.escape_decode(text[1:-1])[0])
        elif op == b"X":                       # BINUNICODE
            stack.append(take(struct.unpack("<I", take(4))[0]).decode("utf-8"))
        elif op == b")":
            stack.append(())
        elif op == b"t":
            stack.append(tuple(pop_mark()))
        elif op in (b"\x85", b"\x86", b"\x87"):  # TUPLE1..3
            k = op[0] - 0x84
            if len(stack) < k:
                raise ValueError("malformed stream (tuple)")
            items = stack[-k:]
            del stack[-k:]
            stack.append(tuple(items))
        elif op == b"]":
            stack.append([])
        elif op == b"l":
            stack.append(pop_mark())
        elif op == b"a":
            item = stack.pop()
            stack[-1].append(item)
        elif op == b"e":
            items = pop_mark()
            stack[-1].extend(items)
        elif op == b"p":                       # PUT / BINPUT / LONG_BINPUT / MEMOIZE
            memo[int(line())] = stack[-1]
        elif op == b"q":
            memo[take(1)[0]] = stack[-1]
        elif op == b"r":
            memo[struct.unpack("<I", take(4))[0]] = stack[-1]
        elif op == b"\x94":
            memo[len(memo)] = stack[-1]
        elif op == b"g":                       # GET / BINGET / LONG_BINGET
            stack.append(memo[int(line())])
        elif op == b"h":
            stack.append(memo[take(1)[0]])
        elif op == b"j":
            stack.append(memo[struct.unpack("<I", take(4))[0]])
        elif op == b"0":
            stack.pop()
        elif op == b"1":
            pop_mark()
        elif op == b"2":
            stack.append(stack[-1])
        else:
            raise ValueError(f"unsupported pickle opcode {op!r} at byte {pos - 1}")


def _read_object_member(path, arc, key):
    data = io.BytesIO(arc.raw_bytes(key))
    try:
        version = np.lib.format.read_magic(data)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(data)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(data)
    except (ValueError, SyntaxError, tokenize.TokenError, EOFError) as e:   # checked when opened: never here
        raise _rio.FileFormatError(f"{path}: member {key!r} has a bad .npy header ({e})", path=path) from None
    if not dtype.hasobject:
        raise _rio.FileFormatError(f"{path}: member {key!r} is not an object array", path=path)
    try:
        arr = _parse_object_array(data.read())
    except Exception as e:  # noqa: BLE001 - any failure of an untrusted stream is a bad file
        raise _rio.FileFormatError(f"{path}: member {key!r} holds a pickle that is not a plain array of id lists "
                                   f"({type(e).__name__}: {e})", path=path, member=key) from None
    if not isinstance(arr, np.ndarray) or arr.shape != shape:
        raise _rio.FileFormatError(f"{path}: member {key!r} did not unpickle to an array of shape {shape}",
                                   path=path, member=key)
    return arr


def _ragged(path, arc, key):
    """Return ``x`` as a list of int64 arrays, from the flat layout or a (restricted) object array."""
    err = _rio.FileFormatError
    if key + "_values" in arc:
        if key + "_offsets" not in arc:
            raise err(f"{path}: has {key}_values but no {key}_offsets", path=path)
        for k in (key + "_values", key + "_offsets"):
            if len(arc.shape(k)) != 1 or arc.dtype(k).kind not in "iu":
                raise err(f"{path}: {key}_values/{key}_offsets must be 1-D integer arrays", path=path)
        values, offsets = arc.read(key + "_values"), arc.read(key + "_offsets")
        if len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != len(values) or np.any(np.diff(offsets) < 0):
            raise err(f"{path}: {key}_offsets must start at 0, never decrease and end at "
                      f"len({key}_values)={len(values)}", path=path)
        return [values[offsets[i]:offsets[i + 1]].astype(np.int64) for i in range(len(offsets) - 1)]
    if key not in arc:
        raise err(f"{path}: no {key!r} (nor {key}_values/{key}_offsets); members: {sorted(arc.names)[:10]}",
                  path=path)
    if arc.dtype(key).hasobject:
        arr = _read_object_member(path, arc, key)
    else:
        if len(arc.shape(key)) != 2 or arc.dtype(key).kind not in "iu":
            raise err(f"{path}: {key!r} must be ragged (object) or a 2-D integer array, got {arc.dtype(key)} "
                      f"{arc.shape(key)}", path=path)
        return [row.astype(np.int64) for row in arc.read(key)]
    if arr.ndim != 1:
        raise err(f"{path}: {key!r} must be a 1-D array of id lists, got shape {arr.shape}", path=path)
    out = []
    for i, seq in enumerate(arr):
        try:
            a = np.asarray(seq)
        except Exception:  # noqa: BLE001
            a = None
        if a is None or a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
            raise err(f"{path}: {key}[{i}] is not a list of integer ids", path=path)
        out.append(a.astype(np.int64))
    return out


def save_imdb_npz(path, x_train, y_train, x_test, y_test):
    """Write the pickle-free flat layout (raw word ranks, as in Keras' file, without start/oov shifts): a
    compressed ``.npz`` (``.npz`` is appended to a path without it, as ``np.savez_compressed`` does) written
    atomically by :func:`rnnlab.io.write_npz`; returns the path."""
    arrays = {}
    for key, xs in (("x_train", x_train), ("x_test", x_test)):
        lengths = np.array([len(x) for x in xs], dtype=np.int64)
        arrays[key + "_offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        arrays[key + "_values"] = (np.concatenate([np.asarray(x, dtype=np.int32) for x in xs])
                                   if len(xs) else np.zeros(0, np.int32))
    arrays["y_train"] = np.asarray(y_train, dtype=np.int64)
    arrays["y_test"] = np.asarray(y_test, dtype=np.int64)
    path = os.fspath(path)
    return _rio.write_npz(path if path.endswith(".npz") else path + ".npz", arrays, compress=True)


def load_imdb_npz(path, num_words=None, skip_top=0, maxlen=None, seed=113, start_char=1, oov_char=2,
                  index_from=3):
    """Keras' ``imdb.load_data`` on a local file: ``((x_train, y_train), (x_test, y_test))``.

    Same steps and results as Keras: seeded shuffle of each split (``seed``); ``start_char`` prepended and
    every raw rank shifted by ``index_from`` (0 = padding, 1 = start, 2 = out-of-vocabulary); sequences of
    length ``>= maxlen`` *dropped* (not truncated: pad/truncate afterwards with ``pad_sequences``); ids outside
    ``[skip_top, num_words)`` replaced by ``oov_char`` (or dropped when it is ``None``). ``x_*`` are object arrays
    of Python lists, as in Keras.

    The archive is read through :class:`rnnlab.io.NpzArchive` (member headers checked against stored sizes and
    the read limit before anything is read); every problem is an :class:`rnnlab.io.FileFormatError` (a
    ``ValueError``) naming the file.
    """
    try:
        arc = _rio.NpzArchive(path, "IMDB .npz file", allow_object=True)
    except _rio.FileFormatError as e:
        if isinstance(e, _rio.FileTooLargeError) or e.member is not None:
            raise
        raise _rio.FileFormatError(f"{path}: not a readable .npz file ({e})", path=path) from None
    with arc:
        x_train, x_test = _ragged(path, arc, "x_train"), _ragged(path, arc, "x_test")
        for key in ("y_train", "y_test"):
            if key not in arc:
                raise _rio.FileFormatError(f"{path}: no {key!r} array", path=path)
            if len(arc.shape(key)) != 1 or arc.dtype(key).kind not in "iub":
                raise _rio.FileFormatError(f"{path}: {key!r} must be a 1-D integer array, got {arc.dtype(key)} "
                                           f"{arc.shape(key)}", path=path, member=key)
        y_train, y_test = arc.read("y_train"), arc.read("y_test")
    return _keras_pipeline(path, x_train, y_train, x_test, y_test, num_words, skip_top, maxlen, seed, start_char,
                           oov_char, index_from)


def _keras_pipeline(path, x_train, y_train, x_test, y_test, num_words, skip_top, maxlen, seed, start_char,
                    oov_char, index_from):
    """Keras' steps on raw word ranks: shuffle each split, shift by ``index_from``, prepend ``start_char``,
    drop reviews of length >= ``maxlen``, map ids outside ``[skip_top, num_words)`` to ``oov_char``."""
    for key, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if len(x) != len(y):
            raise ValueError(f"{path}: {len(x)} x_{key} sequences but {len(y)} y_{key} labels")
    rng = np.random.RandomState(seed)
    order = np.arange(len(x_train))
    rng.shuffle(order)
    x_train, y_train = [x_train[i] for i in order], y_train[order]
    order = np.arange(len(x_test))
    rng.shuffle(order)
    x_test, y_test = [x_test[i] for i in order], y_test[order]

    def shift(x):
        x = [int(w) + index_from for w in x] if (start_char is not None or index_from) else [int(w) for w in x]
        return [start_char] + x if start_char is not None else x

    x_train, x_test = [shift(x) for x in x_train], [shift(x) for x in x_test]
    if maxlen:
        keep = [i for i, x in enumerate(x_train) if len(x) < maxlen]
        x_train, y_train = [x_train[i] for i in keep], y_train[keep]
        keep = [i for i, x in enumerate(x_test) if len(x) < maxlen]
        x_test, y_test = [x_test[i] for i in keep], y_test[keep]
        if not x_train or not x_test:
            raise ValueError(f"{path}: no sequence shorter than maxlen={maxlen}; increase maxlen")
    if not num_words:
        num_words = max((max(x) for x in x_train + x_test if x), default=0)
    if oov_char is not None:
        def limit(x):
            return [w if skip_top <= w < num_words else oov_char for w in x]
    else:
        def limit(x):
            return [w for w in x if skip_top <= w < num_words]

    def as_object(seqs):
        out = np.empty(len(seqs), dtype=object)
        for i, s in enumerate(seqs):
            out[i] = limit(s)
        return out

    return (as_object(x_train), y_train), (as_object(x_test), y_test)


def load_word_index(path):
    """Keras' IMDB word index JSON (word -> frequency rank from 1)."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            index = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    if not isinstance(index, dict) or not all(isinstance(v, int) for v in index.values()):
        raise ValueError(f"{path}: expected a JSON object mapping words to integer ranks")
    return index


def decode_review(ids, word_index, index_from=3, start_char=1, oov_char=2, oov_word="?"):
    """Turn Keras-convention ids back into text (padding and start markers skipped, oov -> ``oov_word``)."""
    reverse = {rank + index_from: w for w, rank in word_index.items()}
    words = []
    for i in ids:
        i = int(i)
        if i == 0 or i == start_char:
            continue
        words.append(oov_word if i == oov_char else reverse.get(i, oov_word))
    return " ".join(words)


# ----------------------------------------------------------------------------------------------------
# keras.datasets.imdb surface: load_data / get_word_index on local files
# ----------------------------------------------------------------------------------------------------
def _local_file(path, what, fn):
    """``path`` as given, else under ``~/.keras/datasets/`` (where Keras keeps its downloads); nothing is fetched."""
    path = os.fspath(path)
    if os.path.exists(path):
        return path
    cached = os.path.join(os.path.expanduser("~"), ".keras", "datasets", path)
    if not os.path.isabs(path) and os.path.exists(cached):
        return cached
    raise FileNotFoundError(
        f"{fn}: no local file {path!r} (nor ~/.keras/datasets/{os.path.basename(path)}). rnnlab reads {what} "
        "from a local file and never downloads it here: pass path= to a Keras imdb.npz (or the flat layout of "
        "rnnlab.datasets.imdb.save_imdb_npz), or to the review CSV (review,sentiment; .csv or .csv.gz) together "
        "with word_index_path= to the Keras word index JSON")


_WORD = re.compile(r"[a-z0-9']+")


def _csv_to_ranks(path, word_index):
    """Review CSV -> raw Keras word ranks (1 = most frequent) with the Keras word index. Tokens: lower case,
    ``<br />`` as a space, runs of ``[a-z0-9']``; a word not in the index gets rank ``len(index) + 1`` (an id
    above every ``num_words`` cut, so it turns into ``oov_char``). Close to, not identical with, the
    tokenisation behind Keras' ``imdb.npz``."""
    texts, labels = read_imdb_csv(path)
    unknown = len(word_index) + 1
    ranks = [[word_index.get(w, unknown) for w in _WORD.findall(t.replace("<br />", " ").lower())] for t in texts]
    return ranks, labels


def load_data(path="imdb.npz", num_words=None, skip_top=0, maxlen=None, seed=113, start_char=1, oov_char=2,
              index_from=3, word_index_path=None, train_rows=25000, **kwargs):
    """``keras.datasets.imdb.load_data`` with its signature, defaults and index conventions, on a LOCAL file.

    Returns ``(x_train, y_train), (x_test, y_test)``: ``x_*`` object arrays of Python lists of ids, ``y_*``
    int64 labels (1 = positive). Ids: ``0`` padding, ``start_char`` (1) begins every review, ``oov_char`` (2)
    replaces words outside ``[skip_top, num_words)``, a word of frequency rank ``r`` (1 = most frequent,
    ``get_word_index()``) has id ``r + index_from``. ``maxlen`` drops (does not truncate) longer reviews. Each
    split is shuffled with ``np.random.RandomState(seed)`` as Keras does.

    ``path``: a Keras ``imdb.npz`` (its object arrays are read with a restricted reader that rebuilds only
    NumPy arrays of integer lists; ``np.load`` runs with ``allow_pickle=False``), rnnlab's pickle-free flat
    layout (:func:`save_imdb_npz`), or the review CSV (``review,sentiment``, e.g. ``shared/data/imdb_reviews.csv.gz``:
    rows ``1..train_rows`` train, the rest test) tokenised with the Keras word index at ``word_index_path``
    (default: ``imdb_word_index.json`` next to the CSV). A relative ``path`` that does not exist is looked for
    in ``~/.keras/datasets/``. Nothing is downloaded.
    """
    legacy = dict(kwargs)
    if "nb_words" in legacy:  # Keras 1 name
        num_words = legacy.pop("nb_words")
    if legacy:
        raise TypeError(f"imdb.load_data: unexpected keyword argument(s) {sorted(legacy)}")
    for name, value in (("num_words", num_words), ("maxlen", maxlen)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0):
            raise ValueError(f"imdb.load_data: {name} must be a positive int or None, got {value!r}")
    if isinstance(skip_top, bool) or not isinstance(skip_top, (int, np.integer)) or skip_top < 0:
        raise ValueError(f"imdb.load_data: skip_top must be an int >= 0, got {skip_top!r}")
    path = _local_file(path, "the IMDB data", "imdb.load_data")
    lower = path.lower()
    if lower.endswith((".csv", ".csv.gz")):
        if word_index_path is None:
            word_index_path = os.path.join(os.path.dirname(path), "imdb_word_index.json")
        index = get_word_index(word_index_path)
        ranks, labels = _csv_to_ranks(path, index)
        if not 0 < train_rows < len(ranks):
            raise ValueError(f"{path}: train_rows={train_rows} leaves no train or no test rows "
                             f"(the file has {len(ranks)} rows)")
        return _keras_pipeline(path, ranks[:train_rows], labels[:train_rows], ranks[train_rows:],
                               labels[train_rows:], num_words, skip_top, maxlen, seed, start_char, oov_char,
                               index_from)
    return load_imdb_npz(path, num_words=num_words, skip_top=skip_top, maxlen=maxlen, seed=seed,
                         start_char=start_char, oov_char=oov_char, index_from=index_from)


def get_word_index(path="imdb_word_index.json"):
    """``keras.datasets.imdb.get_word_index``: the word -> frequency rank (from 1) dict, from a LOCAL JSON file
    (``path`` as given, else ``~/.keras/datasets/<path>``). Ids in :func:`load_data` are ``rank + index_from``."""
    return load_word_index(_local_file(path, "the IMDB word index", "imdb.get_word_index"))


# ----------------------------------------------------------------------------------------------------
# download
# ----------------------------------------------------------------------------------------------------
def default_cache_dir():
    """``$RNNLAB_DATA`` or ``~/.cache/rnnlab/datasets``."""
    return os.environ.get("RNNLAB_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "rnnlab", "datasets")


def _safe_extract(archive, dest):
    root = os.path.realpath(dest)
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for m in members:
            target = os.path.realpath(os.path.join(dest, m.name))
            if not (target == root or target.startswith(root + os.sep)):
                raise ValueError(f"{archive}: member {m.name!r} would be written outside {dest}")
            if not (m.isfile() or m.isdir()):
                raise ValueError(f"{archive}: member {m.name!r} is a link or device; refusing to extract")
        tar.extractall(dest, members=members)


def download_imdb(cache_dir=None, url=IMDB_URL, sha256=IMDB_SHA256, timeout=60, progress=None):
    """Download and extract ``aclImdb_v1.tar.gz`` once; return the path of the ``aclImdb/`` folder.

    The archive goes to ``cache_dir`` (default :func:`default_cache_dir`) through a ``.part`` file renamed
    when complete, its sha256 is checked when ``sha256`` is given, and it is extracted into a temporary
    folder renamed to ``aclImdb`` (so an interrupted run never leaves a half folder that later calls trust).
    A second call finds the folder and does not touch the network. ``progress(done_bytes, total_bytes)``
    is called while downloading if given.
    """
    cache_dir = cache_dir or default_cache_dir()
    os.makedirs(cache_dir, exist_ok=True)
    folder = os.path.join(cache_dir, "aclImdb")
    if os.path.isdir(os.path.join(folder, "train")) and os.path.isdir(os.path.join(folder, "test")):
        return folder
    archive = os.path.join(cache_dir, os.path.basename(url.split("?")[0]) or "aclImdb_v1.tar.gz")
    if not os.path.exists(archive):
        part = archive + ".part"
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as out:
                total = int(resp.headers.get("Content-Length") or 0)
                done = 0
                while True:
                    chunk = resp.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
            if total and done != total:
                raise ValueError(f"download of {url} stopped after {done} of {total} bytes")
        except OSError as e:
            if os.path.exists(part):
                os.unlink(part)
            raise ValueError(f"could not download {url}: {e}") from None
        if sha256 and digest.hexdigest() != sha256:
            os.unlink(part)
            raise ValueError(f"download of {url}: sha256 {digest.hexdigest()} does not match the expected {sha256}")
        os.replace(part, archive)
    tmp = os.path.join(cache_dir, ".aclImdb.extracting")
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    _safe_extract(archive, tmp)
    inner = os.path.join(tmp, "aclImdb")
    if not os.path.isdir(inner):
        shutil.rmtree(tmp)
        raise ValueError(f"{archive}: no aclImdb/ folder inside the archive")
    if os.path.exists(folder):
        shutil.rmtree(folder)
    os.replace(inner, folder)
    shutil.rmtree(tmp)
    return folder
