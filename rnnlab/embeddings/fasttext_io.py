"""fastText files: ``.vec`` (word2vec text format) and Facebook's binary ``.bin`` model format.

``.vec``: the word2vec text format (header ``V D``, then ``word x_1 ... x_D``), which Facebook publishes
next to each ``.bin``; it holds the in-vocabulary word vectors only (no n-grams, so no OOV vectors).

``.bin`` (fastText 0.9, format version 12; version 11 is read too), all little-endian:

* ``int32 magic = 793712314``, ``int32 version``;
* arguments: ``int32 dim, ws, epoch, minCount, neg, wordNgrams, loss, model, bucket, minn, maxn,
  lrUpdateRate``, ``float64 t`` (``model``: 1 cbow, 2 skip-gram, 3 supervised; ``loss``: 1 hs, 2 ns,
  3 softmax, 4 one-vs-all);
* dictionary: ``int32 size, nwords, nlabels``, ``int64 ntokens, pruneidx_size``, then ``size`` entries
  ``word bytes, 0 byte, int64 count, int8 type`` (0 word, 1 label; words first), then ``pruneidx_size``
  pairs of ``int32`` (``pruneidx_size`` is -1 in an unpruned model; pairs only in pruned, quantised ones);
* ``bool quant_input``, the input matrix ``int64 rows, int64 cols`` + ``rows*cols`` float32 (rows =
  ``nwords + bucket``: words first, then the n-gram buckets), ``bool qout``, the output matrix the same way.

Reading is bounded: every count read from the header is checked against the bytes actually left in the
file (and against the other counts) before anything is allocated from it, so a truncated or corrupt file,
another version or a quantised ``.ftz`` model gives a ``ValueError`` naming the file, the byte offset and
what was expected, never a huge allocation or a raw NumPy error.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

import numpy as np

from .fasttext import FastTextKeyedVectors
from .io import load_word2vec_format, save_word2vec_format

__all__ = ["FacebookModel", "load_facebook_model", "load_facebook_vectors", "save_facebook_model", "save_vec",
           "load_vec", "FASTTEXT_MAGIC", "FASTTEXT_VERSION"]

FASTTEXT_MAGIC = 793712314
FASTTEXT_VERSION = 12
_READ_VERSIONS = (11, 12)
_MODELS = {1: "cbow", 2: "skipgram", 3: "supervised"}
_LOSSES = {1: "hs", 2: "ns", 3: "softmax", 4: "ova"}
_ARG_NAMES = ("dim", "ws", "epoch", "minCount", "neg", "wordNgrams", "loss", "model", "bucket", "minn", "maxn",
              "lrUpdateRate")
EOS = "</s>"
_MAX_WORD_BYTES = 1 << 16


def save_vec(kv, path):
    """Write the in-vocabulary vectors of ``kv`` as a fastText ``.vec`` (word2vec text) file."""
    save_word2vec_format(kv, path, binary=False)


def load_vec(path, limit=None):
    """Read a ``.vec`` file into a :class:`~rnnlab.embeddings.KeyedVectors` (no OOV vectors: no n-grams)."""
    return load_word2vec_format(path, binary=False, limit=limit)


@dataclass
class FacebookModel:
    """What a fastText ``.bin`` holds. ``args`` is a dict of the training arguments (Facebook's names;
    ``model``/``loss`` as names), ``words``/``word_counts`` the vocabulary (``</s>`` included, as fastText
    counts line ends), ``labels``/``label_counts`` the classes of a supervised model, ``input_matrix``
    ((nwords + bucket, dim)) and ``output_matrix`` ((nwords or nlabels, dim)) the parameters, and ``wv``
    the :class:`FastTextKeyedVectors` (``wv[word]`` equals fastText's ``get_word_vector``)."""
    path: str
    version: int
    args: dict
    words: list
    word_counts: np.ndarray
    labels: list
    label_counts: np.ndarray
    ntokens: int
    input_matrix: np.ndarray
    output_matrix: np.ndarray
    wv: FastTextKeyedVectors = field(repr=False, default=None)


class _Reader:
    """Sequential little-endian reads from a file with the remaining size checked first."""

    def __init__(self, f, path):
        self.f, self.path = f, path
        f.seek(0, os.SEEK_END)
        self.size = f.tell()
        f.seek(0)

    @property
    def pos(self):
        return self.f.tell()

    @property
    def left(self):
        return self.size - self.f.tell()

    def fail(self, what, pos=None):
        raise ValueError(f"{self.path}: byte {self.pos if pos is None else pos}: {what}")

    def need(self, nbytes, what):
        if nbytes > self.left:
            self.fail(f"file ends while reading {what} (needs {nbytes:,} bytes, {self.left:,} left); "
                      "the file is truncated or not a fastText .bin")

    def unpack(self, fmt, what):
        n = struct.calcsize(fmt)
        self.need(n, what)
        return struct.unpack(fmt, self.f.read(n))

    def cstring(self, what):
        start = self.pos
        chunks = []
        total = 0
        while True:
            block = self.f.read(256)
            if not block:
                self.fail(f"file ends inside {what} (no terminating 0 byte)", start)
            k = block.find(b"\0")
            if k >= 0:
                chunks.append(block[:k])
                self.f.seek(start + total + k + 1)
                break
            chunks.append(block)
            total += len(block)
            if total > _MAX_WORD_BYTES:
                self.fail(f"{what} is longer than {_MAX_WORD_BYTES} bytes: not a fastText dictionary", start)
        raw = b"".join(chunks)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.fail(f"{what} is not valid UTF-8: {raw[:40]!r}", start)

    def matrix(self, what, rows_expected, cols_expected):
        (quant,) = self.unpack("<?", f"the 'quantised' flag of {what}")
        if quant:
            self.fail(f"{what} is quantised (a .ftz model); rnnlab reads only unquantised .bin models", self.pos - 1)
        m, n = self.unpack("<qq", f"the shape of {what}")
        if (m, n) != (rows_expected, cols_expected):
            self.fail(f"{what} has shape ({m}, {n}), the header implies ({rows_expected}, {cols_expected})",
                      self.pos - 16)
        self.need(4 * m * n, f"{what} ({m} x {n} float32)")
        a = np.fromfile(self.f, dtype="<f4", count=m * n)
        if a.size != m * n:          # the file shrank while being read
            self.fail(f"file ends inside {what}")
        return a.reshape(m, n).astype(np.float32, copy=False)


def load_facebook_model(path):
    """Read a Facebook fastText ``.bin`` (format version 11 or 12) into a :class:`FacebookModel`.

    Raises ``ValueError`` naming the file for: another magic number (not a fastText file), another format
    version, arguments out of range, a dictionary or matrix that does not fit in the rest of the file
    (truncated), quantised or pruned models, inconsistent counts and trailing bytes.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        r = _Reader(f, path)
        magic, version = r.unpack("<ii", "the magic number and version")
        if magic != FASTTEXT_MAGIC:
            r.fail(f"magic number {magic} is not fastText's {FASTTEXT_MAGIC}: not a fastText .bin model", 0)
        if version not in _READ_VERSIONS:
            r.fail(f"fastText model format version {version}; rnnlab reads versions "
                   f"{', '.join(map(str, _READ_VERSIONS))} (fastText 0.9.x writes {FASTTEXT_VERSION})", 4)
        vals = r.unpack("<12i", "the training arguments")
        (t,) = r.unpack("<d", "the training arguments")
        args = dict(zip(_ARG_NAMES, vals))
        args["t"] = t
        for k in ("dim", "ws", "epoch", "neg", "wordNgrams"):
            if args[k] < (0 if k == "neg" else 1):
                r.fail(f"argument {k}={args[k]} is out of range: corrupt header", 8)
        for k in ("bucket", "minn", "maxn", "minCount", "lrUpdateRate"):
            if args[k] < 0:
                r.fail(f"argument {k}={args[k]} is negative: corrupt header", 8)
        if args["model"] not in _MODELS or args["loss"] not in _LOSSES:
            r.fail(f"model={args['model']} / loss={args['loss']} are not fastText's codes: corrupt header", 8)
        args["model"], args["loss"] = _MODELS[args["model"]], _LOSSES[args["loss"]]
        if version == 11 and args["model"] == "supervised":
            args["maxn"] = 0            # as fastText: old supervised models use no character n-grams
        if args["maxn"] > 0 and args["minn"] > args["maxn"]:
            r.fail(f"minn={args['minn']} > maxn={args['maxn']}: corrupt header", 8)
        if args["maxn"] > 0 and args["minn"] < 1:
            r.fail(f"minn={args['minn']} with maxn={args['maxn']}: corrupt header", 8)

        dict_pos = r.pos
        size, nwords, nlabels = r.unpack("<iii", "the dictionary sizes")
        ntokens, prune = r.unpack("<qq", "the dictionary sizes")
        if min(size, nwords, nlabels, ntokens) < 0 or nwords + nlabels != size:
            r.fail(f"dictionary sizes size={size}, nwords={nwords}, nlabels={nlabels}, ntokens={ntokens} are "
                   "inconsistent: corrupt header", dict_pos)
        if prune < -1:
            r.fail(f"pruneidx_size={prune} is out of range: corrupt header", dict_pos + 20)
        if prune > 0:
            r.fail(f"the dictionary is pruned ({prune} kept n-gram ids, a quantised .ftz model); rnnlab reads "
                   "only unquantised .bin models", dict_pos + 20)
        # an entry takes at least 10 bytes (0 terminator, int64 count, int8 type)
        r.need(10 * size, f"{size:,} dictionary entries")
        words, counts, types = [], np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int8)
        for i in range(size):
            words.append(r.cstring(f"dictionary entry {i + 1}"))
            counts[i], types[i] = r.unpack("<qb", f"the count of dictionary entry {i + 1}")
        if np.any(types[:nwords] != 0) or np.any(types[nwords:] != 1):
            r.fail(f"dictionary entry types do not match nwords={nwords}, nlabels={nlabels}: corrupt file")
        if len(set(words)) != size:
            r.fail("the dictionary has a repeated entry: corrupt file")
        dim = args["dim"]
        inp = r.matrix("the input matrix", nwords + args["bucket"], dim)
        out_rows = nlabels if args["model"] == "supervised" else nwords
        out = r.matrix("the output matrix", out_rows, dim)
        if r.left:
            r.fail(f"{r.left:,} unexpected bytes after the output matrix: not a fastText .bin of version {version}")

    word_list = words[:nwords]
    minn, maxn = (args["minn"], args["maxn"]) if args["maxn"] > 0 else (0, 0)
    wv = FastTextKeyedVectors(np.zeros((nwords, dim), dtype=np.float32), word_list, inp[:nwords], inp[nwords:],
                              minn, maxn, counts=counts[:nwords], plain_words=(EOS,))
    wv.recompute_word_vectors()
    return FacebookModel(path=path, version=version, args=args, words=word_list, word_counts=counts[:nwords],
                         labels=words[nwords:], label_counts=counts[nwords:], ntokens=int(ntokens),
                         input_matrix=inp, output_matrix=out, wv=wv)


def load_facebook_vectors(path):
    """Only the :class:`FastTextKeyedVectors` of a ``.bin`` model (``load_facebook_model(path).wv``)."""
    return load_facebook_model(path).wv


def _write_matrix(f, M):
    M = np.ascontiguousarray(M, dtype="<f4")
    f.write(struct.pack("<?qq", False, M.shape[0], M.shape[1]))
    f.write(M.tobytes())


def save_facebook_model(model, path):
    """Write a trained :class:`~rnnlab.embeddings.FastText` as a Facebook ``.bin`` (version 12) that the
    ``fasttext`` package loads (``fasttext.load_model``), with the same word and OOV vectors."""
    from .fasttext import FastText

    if not isinstance(model, FastText) or model.input_matrix is None:
        raise TypeError(f"save_facebook_model: expected a trained rnnlab FastText model, got {type(model).__name__}")
    wv = model.wv
    for w in wv.index_to_key:
        b = w.encode("utf-8")
        if not w or any(c.isspace() for c in w) or b"\0" in b:
            raise ValueError(f"save_facebook_model: cannot write word {w!r} (empty, whitespace or NUL)")
    V, D = wv.vectors.shape
    a = [D, model.window, model.epochs, model.min_count, model.negative, 1, 2, 2 if model.sg else 1,
         model.bucket, model.min_n, model.max_n, 100]
    with open(path, "wb") as f:
        f.write(struct.pack("<ii", FASTTEXT_MAGIC, FASTTEXT_VERSION))
        f.write(struct.pack("<12id", *a, model.sample))
        f.write(struct.pack("<iiiqq", V, V, 0, int(model.raw_word_count), -1))
        counts = wv.counts if wv.counts is not None else np.zeros(V, dtype=np.int64)
        for w, c in zip(wv.index_to_key, counts):
            f.write(w.encode("utf-8") + b"\0" + struct.pack("<qb", int(c), 0))
        _write_matrix(f, model.input_matrix)
        _write_matrix(f, model.syn1neg)
