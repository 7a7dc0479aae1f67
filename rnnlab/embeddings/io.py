"""Vector files: the word2vec text and binary formats, and GloVe text files.

* word2vec text: a header line ``V D``, then ``V`` lines ``word x_1 ... x_D`` (space separated).
* word2vec binary: the same header line, then per word the UTF-8 word, one space, ``D`` little-endian
  float32 values (4 bytes each) and a newline (word2vec.c's layout; gensim reads and writes it; readers skip
  the newline, so files without it load too).
* GloVe text: no header, lines ``word x_1 ... x_D``; ``D`` comes from the first line.

Malformed files raise ``ValueError`` naming the file and the line (text) or entry number and byte offset
(binary).
"""
from __future__ import annotations

import os

import numpy as np

from .keyed_vectors import KeyedVectors

__all__ = ["save_word2vec_format", "load_word2vec_format", "save_glove", "load_glove", "load_vectors"]


def _check_key(word):
    if not isinstance(word, str) or not word or any(c.isspace() for c in word):
        raise ValueError(f"cannot write word {word!r}: words must be non-empty strings without whitespace")


def save_word2vec_format(kv, path, binary=False):
    """Write ``kv`` (a :class:`KeyedVectors`) in word2vec text or binary format (float32 values)."""
    vecs = np.asarray(kv.vectors, dtype=np.float32)
    V, D = vecs.shape
    for w in kv.index_to_key:
        _check_key(w)
    with open(path, "wb") as f:
        f.write(f"{V} {D}\n".encode("utf-8"))
        if binary:
            le = vecs.astype("<f4")
            for w, row in zip(kv.index_to_key, le):
                f.write(w.encode("utf-8") + b" " + row.tobytes() + b"\n")
        else:
            for w, row in zip(kv.index_to_key, vecs):
                f.write((w + " " + " ".join(map(_f32repr, row.tolist())) + "\n").encode("utf-8"))


def _f32repr(x):
    # shortest decimal that rounds back to this float32 (so text files round-trip exactly)
    return np.format_float_positional(np.float32(x), unique=True, trim="-") if abs(x) >= 1e-4 or x == 0 \
        else np.format_float_scientific(np.float32(x), unique=True, trim="-")


def _parse_header(line, path):
    parts = line.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{path}: line 1: expected a header 'num_words dim', got {line.strip()[:80]!r}")
    V, D = int(parts[0]), int(parts[1])
    if D < 1:
        raise ValueError(f"{path}: line 1: dimension must be >= 1, got {D}")
    return V, D


def _finish(words, rows, path, dtype):
    vecs = np.asarray(rows, dtype=dtype).reshape(len(rows), -1) if len(rows) else None
    if vecs is None:
        raise ValueError(f"{path}: no vectors in the file")
    seen = {}
    for i, w in enumerate(words):
        if w in seen:
            raise ValueError(f"{path}: word {w!r} appears twice (entries {seen[w] + 1} and {i + 1})")
        seen[w] = i
    return KeyedVectors(vecs, words)


def load_word2vec_format(path, binary=False, limit=None, dtype=np.float32):
    """Read a word2vec text or binary file into a :class:`KeyedVectors` (first ``limit`` words only if given)."""
    path = os.fspath(path)
    if binary:
        with open(path, "rb") as f:
            data = f.read()
        nl = data.find(b"\n")
        if nl < 0:
            raise ValueError(f"{path}: line 1: missing the header line 'num_words dim'")
        V, D = _parse_header(data[:nl].decode("utf-8", errors="replace"), path)
        n = V if limit is None else min(V, int(limit))
        words, rows = [], np.empty((n, D), dtype=np.float32)
        pos = nl + 1
        for i in range(n):
            while pos < len(data) and data[pos:pos + 1] in (b"\n", b"\r"):
                pos += 1
            sp = data.find(b" ", pos)
            if sp < 0 or pos >= len(data):
                raise ValueError(f"{path}: entry {i + 1} (byte {pos}): file ends after {i} of {V} vectors")
            try:
                word = data[pos:sp].decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"{path}: entry {i + 1} (byte {pos}): word is not valid UTF-8") from None
            if not word or b"\n" in data[pos:sp]:
                raise ValueError(f"{path}: entry {i + 1} (byte {pos}): malformed word {data[pos:sp][:40]!r}")
            end = sp + 1 + 4 * D
            if end > len(data):
                raise ValueError(f"{path}: entry {i + 1} (byte {pos}): vector of {word!r} is truncated "
                                 f"({len(data) - sp - 1} of {4 * D} bytes)")
            rows[i] = np.frombuffer(data, dtype="<f4", count=D, offset=sp + 1)
            words.append(word)
            pos = end
        return _finish(words, rows.astype(dtype, copy=False), path, dtype)

    words, rows = [], []
    with open(path, encoding="utf-8") as f:
        header = f.readline()
        if not header:
            raise ValueError(f"{path}: line 1: empty file, expected a header 'num_words dim'")
        V, D = _parse_header(header, path)
        n = V if limit is None else min(V, int(limit))
        lineno = 1
        for line in f:
            if len(words) >= n:
                break
            lineno += 1
            parts = line.rstrip("\r\n").rstrip(" ").split(" ")
            _append_row(parts, D, path, lineno, words, rows)
    if len(words) < n:
        raise ValueError(f"{path}: line {lineno}: file ends after {len(words)} of {V} vectors")
    return _finish(words, rows, path, dtype)



def _append_row(parts, D, path, lineno, words, rows, where=""):
    """Check one ``word x_1 ... x_D`` text line (already split) and append it to ``words``/``rows``."""
    if len(parts) != D + 1:
        raise ValueError(f"{path}: line {lineno}: expected a word and {D} numbers{where}, "
                         f"got {len(parts) - 1} numbers")
    try:
        rows.append([float(x) for x in parts[1:]])
    except ValueError:
        raise ValueError(f"{path}: line {lineno}: not a number in the vector of {parts[0]!r}") from None
    words.append(parts[0])

def save_glove(kv, path):
    """Write GloVe text format: ``word x_1 ... x_D`` per line, no header."""
    for w in kv.index_to_key:
        _check_key(w)
    with open(path, "w", encoding="utf-8") as f:
        for w, row in zip(kv.index_to_key, np.asarray(kv.vectors, dtype=np.float32)):
            f.write(w + " " + " ".join(map(_f32repr, row.tolist())) + "\n")


def load_glove(path, limit=None, dtype=np.float32):
    """Read a GloVe text file (no header; the dimension is taken from the first line)."""
    path = os.fspath(path)
    words, rows, D = [], [], None
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if limit is not None and len(words) >= int(limit):
                break
            parts = line.rstrip("\r\n").rstrip(" ").split(" ")
            if len(parts) == 2 and lineno == 1 and all(p.isdigit() for p in parts):
                raise ValueError(f"{path}: line 1: looks like a word2vec header {line.strip()!r}; "
                                 "GloVe files have none (use load_word2vec_format)")
            if D is None:
                D = len(parts) - 1
                if D < 1:
                    raise ValueError(f"{path}: line {lineno}: expected a word followed by numbers")
            _append_row(parts, D, path, lineno, words, rows, " (as line 1)")
    return _finish(words, rows, path, dtype)


def load_vectors(path, format=None, limit=None):
    """Load any supported file: ``format`` = "word2vec", "word2vec-binary", "glove" or None (guess:
    ``.bin`` -> binary, a ``V D`` first line -> word2vec text, otherwise GloVe)."""
    path = os.fspath(path)
    if format is None:
        if path.endswith(".bin"):
            format = "word2vec-binary"
        else:
            with open(path, encoding="utf-8", errors="replace") as f:
                first = f.readline().split()
            format = "word2vec" if len(first) == 2 and all(p.isdigit() for p in first) else "glove"
    if format == "word2vec":
        return load_word2vec_format(path, binary=False, limit=limit)
    if format == "word2vec-binary":
        return load_word2vec_format(path, binary=True, limit=limit)
    if format == "glove":
        return load_glove(path, limit=limit)
    raise ValueError(f"load_vectors: format must be 'word2vec', 'word2vec-binary' or 'glove', got {format!r}")
