"""Vector files: the word2vec text and binary formats, and GloVe text files.

* word2vec text: a header line ``V D``, then ``V`` lines ``word x_1 ... x_D`` (space separated).
* word2vec binary: the same header line, then per word the UTF-8 word, one space, ``D`` little-endian
  float32 values (4 bytes each) and a newline (word2vec.c's layout; gensim reads and writes it; readers skip
  the newline, so files without it load too).
* GloVe text: no header, lines ``word x_1 ... x_D``; ``D`` comes from the first line.

Malformed files raise ``ValueError`` naming the file and the line (text) or entry number and byte offset
(binary). Files are read incrementally; a header's counts are checked against the file size before the table is
allocated (see :func:`load_word2vec_format`); bytes that do not decode raise :class:`rnnlab.io.FileEncodingError`
(a ``ValueError``) naming the file, the line and the byte offset, and suggesting ``--encoding``.
"""
from __future__ import annotations

import os

import numpy as np

from .. import io as _rio
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


def _capacity(path, V, D, limit, remaining, min_entry):
    """How many rows to allocate: the header's count (or ``limit``), but never more than the rest of the file
    could hold at ``min_entry`` bytes per entry; a dimension one entry cannot even hold is refused at once."""
    n = V if limit is None else min(V, int(limit))
    if D > _rio.MAX_DIM or min_entry > max(remaining, 0) and n > 0:
        raise _rio.FileTooLargeError(f"{path}: line 1: the header declares {V:,} vectors of dimension {D:,}: one "
                                     f"vector needs at least {min_entry:,} bytes, the file has {max(remaining, 0):,} "
                                     "after the header", path=path)
    return n, min(n, remaining // min_entry)


def _finish(words, rows, path, dtype):
    if not len(words):
        raise ValueError(f"{path}: no vectors in the file")
    vecs = np.asarray(rows[:len(words)], dtype=dtype)
    seen = {}
    for i, w in enumerate(words):
        if w in seen:
            raise ValueError(f"{path}: word {w!r} appears twice (entries {seen[w] + 1} and {i + 1})")
        seen[w] = i
    return KeyedVectors(vecs, words)


class _Lines:
    """Text lines of a file read in binary and decoded one at a time: a bad byte is reported with the file, the
    line and the absolute byte offset (and the advice to give ``--encoding``); a line is at most ``max_len``
    bytes (so a file without newlines is never read into memory whole)."""

    def __init__(self, f, path, encoding, max_len=1 << 24):
        self.f, self.path, self.encoding, self.max_len = f, path, encoding, max_len
        self.lineno, self.offset = 0, 0

    def readline(self):
        raw = self.f.readline(self.max_len + 1)
        if not raw:
            return None
        self.lineno += 1
        start, self.offset = self.offset, self.offset + len(raw)
        if len(raw) > self.max_len and not raw.endswith(b"\n"):
            raise _rio.FileFormatError(f"{self.path}: line {self.lineno} (byte offset {start}) is longer than "
                                       f"{self.max_len:,} bytes", path=self.path)
        try:
            return raw.decode(self.encoding)
        except UnicodeDecodeError as e:
            raise _rio.decode_error(self.path, e, line=self.lineno, line_start=start, encoding=self.encoding) from None

    def __iter__(self):
        while True:
            line = self.readline()
            if line is None:
                return
            yield line


def _binary_entries(f, path, n, D, pos):
    """Yield ``(i, byte_offset, word, vector_bytes)`` for ``n`` entries of a word2vec binary file, reading in
    1 MiB chunks (a word is at most 64 kB)."""
    buf, base, at = b"", pos, 0      # buf holds the file from byte `base`; `at` is the cursor in buf

    def fill(need):
        nonlocal buf, base, at
        if len(buf) - at >= need:
            return True
        buf, base, at = buf[at:], base + at, 0
        while len(buf) < need:
            chunk = f.read(max(need - len(buf), 1 << 20))
            if not chunk:
                return False
            buf += chunk
        return True

    for i in range(n):
        while fill(1) and buf[at:at + 1] in (b"\n", b"\r"):
            at += 1
        start = base + at
        if not fill(1):
            raise ValueError(f"{path}: entry {i + 1} (byte {start}): file ends after {i} of {n} vectors")
        sp = buf.find(b" ", at, at + 65536)
        while sp < 0 and len(buf) - at < 65536:
            if not fill(len(buf) - at + 1):
                break
            sp = buf.find(b" ", at, at + 65536)
        if sp < 0:
            raise ValueError(f"{path}: entry {i + 1} (byte {start}): file ends after {i} of {n} vectors"
                             if len(buf) - at < 65536 else
                             f"{path}: entry {i + 1} (byte {start}): no space after the word within 64 kB")
        raw_word = buf[at:sp]
        at = sp + 1
        if not fill(4 * D):
            raise ValueError(f"{path}: entry {i + 1} (byte {start}): vector of "
                             f"{raw_word.decode('utf-8', 'replace')!r} is truncated ({len(buf) - at} of {4 * D} bytes)")
        yield i, start, raw_word, buf[at:at + 4 * D]
        at += 4 * D


def load_word2vec_format(path, binary=False, limit=None, dtype=np.float32, encoding="utf-8"):
    """Read a word2vec text or binary file into a :class:`KeyedVectors` (first ``limit`` words only if given).

    The file is read incrementally. The header's counts are checked against the file's size before the table
    is allocated: a dimension no entry in the file could hold is refused (:class:`rnnlab.io.FileTooLargeError`),
    and at most as many rows are allocated as the rest of the file can hold (``4 D + 2`` bytes per binary
    entry, ``2 D + 1`` per text line), so a lying header costs no memory and ends with "file ends after k of V
    vectors". Undecodable bytes raise :class:`rnnlab.io.FileEncodingError` with the line and byte offset."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        lines = _Lines(f, path, encoding, max_len=4096)
        try:
            header = lines.readline()
        except _rio.FileFormatError:
            raise ValueError(f"{path}: line 1: expected a header 'num_words dim' (a short first line)") from None
        if not header:
            raise ValueError(f"{path}: line 1: empty file, expected a header 'num_words dim'")
        V, D = _parse_header(header, path)
        remaining = size - lines.offset
        if binary:
            n, cap = _capacity(path, V, D, limit, remaining, 4 * D + 2)
            words, rows = [], np.empty((cap, D), dtype=dtype)
            for i, start, raw_word, vec in _binary_entries(f, path, n, D, lines.offset):
                try:
                    word = raw_word.decode(encoding)
                except UnicodeDecodeError as e:
                    raise _rio.decode_error(path, e, line=None, line_start=start, encoding=encoding) from None
                if not word or "\n" in word:
                    raise ValueError(f"{path}: entry {i + 1} (byte {start}): malformed word {raw_word[:40]!r}")
                rows[i] = np.frombuffer(vec, dtype="<f4")
                words.append(word)
            return _finish(words, rows, path, dtype)

        n, cap = _capacity(path, V, D, limit, remaining, 2 * D + 1)
        lines.max_len = 65536 + 64 * D
        words, rows = [], np.empty((cap, D), dtype=dtype)
        for line in lines:
            if len(words) >= n:
                break
            parts = line.rstrip("\r\n").rstrip(" ").split(" ")
            _append_row(parts, D, path, lines.lineno, words, rows)
    if len(words) < n:
        raise ValueError(f"{path}: line {lines.lineno}: file ends after {len(words)} of {V} vectors")
    return _finish(words, rows, path, dtype)


def _append_row(parts, D, path, lineno, words, rows, where=""):
    """Check one ``word x_1 ... x_D`` text line (already split) and write it into ``rows[len(words)]``."""
    if len(parts) != D + 1:
        raise ValueError(f"{path}: line {lineno}: expected a word and {D} numbers{where}, "
                         f"got {len(parts) - 1} numbers")
    try:
        rows[len(words)] = [float(x) for x in parts[1:]]
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


def load_glove(path, limit=None, dtype=np.float32, encoding="utf-8"):
    """Read a GloVe text file (no header; the dimension is taken from the first line), incrementally: rows go
    into blocks of at most 4096 (never more than the file can hold); undecodable bytes raise
    :class:`rnnlab.io.FileEncodingError` with the line and byte offset."""
    path = os.fspath(path)
    words, blocks, D, block = [], [], None, None
    with open(path, "rb") as f:
        lines = _Lines(f, path, encoding)
        for line in lines:
            lineno = lines.lineno
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
                lines.max_len = 65536 + 64 * D
            if block is None or len(block[0]) == len(block[1]):
                block = ([], np.empty((4096, D), dtype=dtype))
                blocks.append(block)
            _append_row(parts, D, path, lineno, block[0], block[1], " (as line 1)")
    if not blocks:
        return _finish([], None, path, dtype)
    for ws, _ in blocks:
        words.extend(ws)
    rows = np.concatenate([b[:len(ws)] for ws, b in blocks]) if len(blocks) > 1 else blocks[0][1]
    return _finish(words, rows, path, dtype)


def load_vectors(path, format=None, limit=None, encoding="utf-8"):
    """Load any supported file: ``format`` = "word2vec", "word2vec-binary", "glove" or None (guess:
    ``.bin`` -> binary, a ``V D`` first line -> word2vec text, otherwise GloVe)."""
    path = os.fspath(path)
    if format is None:
        if path.endswith(".bin"):
            format = "word2vec-binary"
        else:
            with open(path, "rb") as f:
                first = f.readline(4096).decode("utf-8", errors="replace").split()
            format = "word2vec" if len(first) == 2 and all(p.isdigit() for p in first) else "glove"
    if format == "word2vec":
        return load_word2vec_format(path, binary=False, limit=limit, encoding=encoding)
    if format == "word2vec-binary":
        return load_word2vec_format(path, binary=True, limit=limit, encoding=encoding)
    if format == "glove":
        return load_glove(path, limit=limit, encoding=encoding)
    raise ValueError(f"load_vectors: format must be 'word2vec', 'word2vec-binary' or 'glove', got {format!r}")
