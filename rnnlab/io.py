"""Reading and writing rnnlab's own files safely: one error family, bounded reads, atomic writes, run locks.

Errors
    Every problem with a file is an :class:`RnnlabError` that names the file (and the archive member or line
    when there is one). The classes also derive from the built-in type an existing ``except`` clause expects:

    * :class:`FileFormatError` (``ValueError``): not an rnnlab file, a damaged archive, a config that does not
      match the arrays, an undecodable byte (:class:`FileEncodingError`);
    * :class:`FileTooLargeError` (``ValueError``): a size a file declares is above what the file holds or
      above a limit (see below);
    * :class:`MemoryLimitError` (``ValueError``): a model or table would not fit in the memory available;
    * :class:`RunLockedError` (``OSError``): another live run holds the output folder.

    ``rnnlab`` on the command line prints any of them as ``rnnlab: error: ...`` with exit status 1.

Reading ``.npz`` archives (:class:`NpzArchive`)
    Nothing is unpickled (``allow_pickle=False``) and nothing is allocated before it is checked. Opening an
    archive reads the zip directory and the ``.npy`` header of each member only (shape, dtype). A member is
    refused when its header declares more bytes than the archive stores for it (``shape (10**12,)`` in a
    1 kB member), when its stored size is above the read limit, or when a compressed member inflates more
    than :data:`MAX_COMPRESSION_RATIO` times and past 1 MiB (a "zip bomb"). Members are read one at a time
    and only on request: an extra member in a file is never inflated. The read limit is
    :func:`max_read_bytes`: the ``RNNLAB_MAX_READ_BYTES`` environment variable when set, otherwise the memory
    available to the process (``MemAvailable`` and the address-space limit ``RLIMIT_AS``; no memory bound
    under :func:`allow_large_allocations`).

Sizes in configs
    A config read from a file is checked before anything is built from it: every size-like integer
    (``units``, ``input_dim``, ``output_dim``, ...) must be positive, at most :data:`MAX_DIM` (2**31 - 1),
    and at most the largest dimension of the non-empty arrays the file holds or 65,536, whichever is larger
    (:func:`check_config_sizes`); layer counts at most the number of arrays.
    Loaders then build the model *shape-only* (:func:`shape_only`: weights are zero-stride views, no memory)
    and compare every weight shape with the file's headers before the real build allocates anything.

Memory estimates
    :func:`check_allocation` compares a planned allocation with the available memory and raises
    :class:`MemoryLimitError` when it does not fit, unless :func:`allow_large_allocations` was called (the
    command line's ``--force``). ``Layer.add_weight`` calls it for every weight (weight + gradient).

Writes
    :func:`atomic_write_bytes` writes ``.tmp-<pid>-<name>-<random>`` in the target folder, fsyncs it, gives
    it the umask's normal permissions (``0666 & ~umask``; a temporary file would otherwise stay ``0600``),
    renames it over the target and fsyncs the folder, so after a crash either the old or the new file is
    there, complete. Temporary files left by a killed process (:func:`remove_stale_temp_files`: the pid in
    the name is no longer running) are removed by the next write to the same folder and by ``--resume``.

rnnlab's ``.npz`` files: one writer, one reader
    Every rnnlab file that holds arrays (model, weights, task model, checkpoint, ``BackupAndRestore`` backup,
    Seq2Seq, echo state network, tagger, fastText classifier) is written by :func:`write_npz`: named arrays
    (``<name>.npy`` members, never object arrays) and named JSON documents stored as 1-D uint8 arrays of
    UTF-8 text (:func:`encode_json`: a value JSON cannot hold is refused naming the file, the member and the
    place in the document), written through :func:`atomic_open`. :func:`read_npz` reads such a file back
    through :class:`NpzArchive`; loaders that validate a config against the array headers first use
    :class:`NpzArchive` directly.

Run locks
    :class:`RunLock` (``OUT/.rnnlab.lock``, holding the pid and host) keeps two ``rnnlab train`` runs out
    of the same ``--out`` folder. A lock whose process is gone (same host, pid not running) is stale and is
    taken over.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import socket
import tokenize
import zipfile
import zlib

import numpy as np

__all__ = ["RnnlabError", "FileFormatError", "FileTooLargeError", "FileEncodingError", "MemoryLimitError",
           "RunLockedError", "NpzArchive", "read_npz_arrays", "check_npz_file", "decode_json", "check_config_sizes",
           "shape_only", "max_read_bytes", "available_memory", "check_allocation", "allow_large_allocations",
           "atomic_write_bytes", "atomic_write_json", "remove_stale_temp_files", "RunLock", "format_bytes",
           "decode_error", "gunzip_bytes", "atomic_open", "encode_json", "write_npz", "read_npz"]

#: the largest size-like integer a config read from a file may hold (the sanity limit)
MAX_DIM = 2 ** 31 - 1
#: a config size up to this is never refused by check_config_sizes (sizes a config holds for parts the model
#: does not use, e.g. a tagger's char_dim without character features; the shape-only build then compares)
MIN_DIM_BOUND = 2 ** 16
#: a compressed archive member may inflate at most this many times (when it inflates past 1 MiB)
MAX_COMPRESSION_RATIO = 200
#: at most this many members in an archive
MAX_MEMBERS = 100_000
#: largest JSON document read from an archive member or a JSON file
MAX_JSON_BYTES = 256 * 2 ** 20
#: config keys that are sizes (checked by check_config_sizes)
SIZE_KEYS = frozenset({"units", "input_dim", "output_dim", "embedding_dim", "vocab_size", "num_words",
                       "src_vocab", "tgt_vocab", "src_vocab_size", "tgt_vocab_size", "hidden", "hidden_units",
                       "char_dim", "char_units", "word_dim", "attention_units", "latent_dim", "num_classes",
                       "input_length", "key_dim", "num_heads", "n_classes", "esn_units", "filters"})


# ------------------------------------------------------------------------------------------- errors
class RnnlabError(Exception):
    """Base of rnnlab's file and resource errors; ``path`` and ``member`` name where (None when n/a)."""

    def __init__(self, message, path=None, member=None):
        super().__init__(message)
        self.path = None if path is None else os.fspath(path)
        self.member = member


class FileFormatError(RnnlabError, ValueError):
    """A file that is not what it should be: wrong kind, damaged, inconsistent with itself."""


class FileTooLargeError(FileFormatError):
    """A size declared in a file is more than the file holds, or more than the read limit."""


class FileEncodingError(FileFormatError):
    """Bytes that do not decode in the expected text encoding (message: file, line, byte offset)."""


class MemoryLimitError(RnnlabError, ValueError):
    """An allocation that would not fit in the available memory (``--force`` / allow_large_allocations)."""


class RunLockedError(RnnlabError, OSError):
    """Another running process holds the output folder's lock."""


def format_bytes(n) -> str:
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} PB"  # pragma: no cover


def decode_error(path, e: UnicodeDecodeError, line=None, line_start=None, encoding=None) -> FileEncodingError:
    """A :class:`FileEncodingError` for ``e`` raised while decoding ``path`` (``line``: 1-based line number;
    ``line_start``: byte offset of that line in the file, so the offset reported is absolute)."""
    offset = e.start + (line_start or 0)
    where = f"line {line}, byte offset {offset}" if line is not None else f"byte offset {offset}"
    enc = encoding or e.encoding
    return FileEncodingError(f"{os.fspath(path)}: {where}: cannot decode byte(s) {e.object[e.start:e.end]!r} "
                             f"as {enc} ({e.reason}); give the file's encoding with --encoding (encoding= in "
                             "Python), e.g. latin-1", path=path)


# ------------------------------------------------------------------------------------------ memory
def available_memory() -> int:
    """Bytes this process can still allocate: ``MemAvailable`` of ``/proc/meminfo`` (or the physical memory),
    lowered by the address-space limit ``RLIMIT_AS`` minus what the process already maps."""
    avail = None
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 2 ** 62
    try:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            used = 0
            try:
                with open("/proc/self/status", "rb") as f:
                    for line in f:
                        if line.startswith(b"VmSize:"):
                            used = int(line.split()[1]) * 1024
                            break
            except (OSError, ValueError, IndexError):
                pass
            avail = min(avail, max(soft - used, 0))
    except (ImportError, ValueError, OSError):
        pass
    return int(avail)


def max_read_bytes() -> int:
    """The largest amount of array data a loader reads: ``RNNLAB_MAX_READ_BYTES`` or the available memory."""
    env = os.environ.get("RNNLAB_MAX_READ_BYTES")
    if env:
        try:
            return int(float(env))
        except ValueError:
            raise ValueError(f"RNNLAB_MAX_READ_BYTES must be a number of bytes, got {env!r}") from None
    if _ALLOW_LARGE:          # --force: the memory estimate is the user's call (file sizes are still checked)
        return 2 ** 62
    return available_memory()


_ALLOW_LARGE = False
#: allocations below this are not checked by check_allocation (64 MiB)
MIN_CHECKED_BYTES = 64 * 2 ** 20


def allow_large_allocations(flag=True) -> None:
    """Turn the memory check of :func:`check_allocation` off (``flag=True``) or back on (the CLI's ``--force``)."""
    global _ALLOW_LARGE
    _ALLOW_LARGE = bool(flag)


def check_allocation(nbytes, what) -> None:
    """Raise :class:`MemoryLimitError` when ``nbytes`` (an estimate, before allocating) exceeds the available
    memory, unless :func:`allow_large_allocations` is on. ``what`` names the thing (``"layer 'lstm' weight
    'kernel' (100000, 400000) float32"``)."""
    if _ALLOW_LARGE:
        return
    nbytes = int(nbytes)
    if nbytes < MIN_CHECKED_BYTES:      # small: never worth a look at /proc
        return
    avail = available_memory()
    if nbytes > avail:
        raise MemoryLimitError(f"{what} needs {format_bytes(nbytes)}, more than the {format_bytes(avail)} of memory "
                               "available; use smaller sizes (or --force / rnnlab.io.allow_large_allocations() "
                               "to try anyway)")


# ------------------------------------------------------------------------------------------- npz
def check_npz_file(path, what="rnnlab model file") -> str:
    """``path`` as a string if it names an existing zip archive; ``FileNotFoundError`` when there is no
    such path, :class:`FileFormatError` naming the file for a folder, an empty file or anything but a zip
    archive (NumPy would try to unpickle it, which rnnlab never does)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such {what[7:] if what.startswith('rnnlab ') else what}: {path}")
    if os.path.isdir(path):
        raise FileFormatError(f"{path} is a directory, not an {what} (give the .npz file inside it)", path=path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise FileFormatError(f"{path}: cannot read the {what} ({e.strerror or e})", path=path) from None
    if head[:2] != b"PK":
        kind = "an empty file" if not head else ("a bare .npy array" if head[:1] == b"\x93" else "not an .npz archive")
        raise FileFormatError(f"{path} is not an {what} ({kind})", path=path)
    return path


class _Member:
    __slots__ = ("name", "zname", "shape", "dtype", "fortran", "nbytes", "stored", "compressed")

    def __init__(self, name, zname, shape, dtype, fortran, nbytes, stored, compressed):
        self.name, self.zname, self.shape, self.dtype, self.fortran = name, zname, shape, dtype, fortran
        self.nbytes, self.stored, self.compressed = nbytes, stored, compressed


class NpzArchive:
    """An ``.npz`` opened for checked, lazy reading::

        with NpzArchive(path, what="rnnlab model file") as arc:
            arc.names                       # member names (without ".npy")
            arc.shape("w:lstm/kernel"), arc.dtype("w:lstm/kernel")   # from the headers: nothing read yet
            w = arc.read("w:lstm/kernel")   # one member, checked against the read limit
            doc = arc.read_json("__rnnlab__")

    Opening reads only the zip directory and each member's ``.npy`` header and refuses (with
    :class:`FileFormatError` / :class:`FileTooLargeError` naming the file and the member) object arrays,
    headers that declare more data than stored, members above the read limit and zip bombs.
    """

    def __init__(self, path, what="rnnlab model file", limit=None, allow_object=False):
        self.path = check_npz_file(path)   # every rnnlab model file is a zip: one wording for all of them
        self.what = what
        self.allow_object = bool(allow_object)   # object members listed (never read by read()): see raw_bytes
        self.limit = max_read_bytes() if limit is None else int(limit)
        self.read_total = 0
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
            raise FileFormatError(f"{self.path} is not an {what} (not a readable zip archive: {e})",
                                  path=self.path) from None
        try:
            self._members = self._scan()
        except BaseException:
            self._zip.close()
            raise

    def _err(self, msg, member=None, cls=FileFormatError):
        what = self.what[7:] if self.what.startswith("rnnlab ") else self.what
        where = f"{self.path}: corrupt {what}: member '{member}' " if member is not None else \
            f"{self.path}: corrupt {what}: "
        return cls(f"{where}{msg}", path=self.path, member=member)

    def _scan(self):
        infos = self._zip.infolist()
        if len(infos) > MAX_MEMBERS:
            raise self._err(f"it holds {len(infos)} members, more than rnnlab reads ({MAX_MEMBERS})")
        members = {}
        for info in infos:
            if info.is_dir():
                continue
            zname = info.filename
            name = zname[:-4] if zname.endswith(".npy") else zname
            if name in members:
                raise self._err("appears twice in the archive", name)
            if info.flag_bits & 0x1:
                raise self._err("is encrypted", name)
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise self._err(f"uses zip compression method {info.compress_type} (only stored and deflated "
                                "members are read)", name)
            stored, compressed = int(info.file_size), int(info.compress_size)
            if info.compress_type == zipfile.ZIP_DEFLATED and stored > 2 ** 20 and \
                    stored > MAX_COMPRESSION_RATIO * max(compressed, 1):
                raise self._err(f"inflates from {format_bytes(compressed)} to {format_bytes(stored)} (more than "
                                f"{MAX_COMPRESSION_RATIO}x: refused as a zip bomb)", name, FileTooLargeError)
            if info.compress_type == zipfile.ZIP_STORED and stored != compressed:
                raise self._err(f"is stored uncompressed but its sizes differ ({stored} vs {compressed} bytes)", name)
            try:
                with self._zip.open(info) as fp:
                    version = np.lib.format.read_magic(fp)
                    if version == (1, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
                    elif version in ((2, 0), (3, 0)):
                        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp) if version == (2, 0) \
                            else _read_header_3(fp)
                    else:
                        raise ValueError(f"unknown .npy format version {version}")
                    offset = fp.tell()
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, SyntaxError, tokenize.TokenError,
                    UnicodeDecodeError, RecursionError, MemoryError, TypeError, KeyError, IndexError,
                    NotImplementedError) as e:     # (zipfile: an unsupported zip version or flag bit)
                # (the .npy header is a Python literal: a garbled one can fail in the tokenizer or the parser)
                raise self._err(f"is not a readable .npy array ({type(e).__name__}: {e})", name) from None
            if dtype.hasobject:
                if not self.allow_object:
                    raise self._err(f"holds Python objects (dtype {dtype}); rnnlab never unpickles", name)
                if stored > self.limit:
                    raise self._err(f"holds {format_bytes(stored)}, more than the read limit of "
                                    f"{format_bytes(self.limit)}", name, FileTooLargeError)
                members[name] = _Member(name, zname, tuple(shape), dtype, fortran, stored - offset, stored, compressed)
                continue
            if dtype.itemsize == 0 and dtype.kind not in "SUV":
                raise self._err(f"has an unusable dtype {dtype}", name)
            n = math.prod(shape)
            nbytes = n * dtype.itemsize
            if offset + nbytes != stored:
                cls = FileTooLargeError if offset + nbytes > stored else FileFormatError
                raise self._err(f"declares shape {shape} {dtype} ({format_bytes(nbytes)}) but the archive stores "
                                f"{format_bytes(max(stored - offset, 0))} of data for it", name, cls)
            members[name] = _Member(name, zname, tuple(shape), dtype, fortran, nbytes, stored, compressed)
        return members

    # ------------------------------------------------------------------ headers
    @property
    def names(self):
        return list(self._members)

    def __contains__(self, name):
        return name in self._members

    def shape(self, name):
        return self._member(name).shape

    def dtype(self, name):
        return self._member(name).dtype

    def nbytes(self, name):
        return self._member(name).nbytes

    def max_dim(self, names=None):
        """The largest dimension of the non-empty arrays among ``names`` (all members by default); 0 if none."""
        dims = [d for m in self._members.values() if names is None or m.name in names
                if m.nbytes > 0 or math.prod(m.shape) > 0 for d in m.shape]
        return max(dims, default=0)

    def _member(self, name):
        try:
            return self._members[name]
        except KeyError:
            raise self._err(f"no member '{name}' (it holds {sorted(self._members)[:8]})") from None

    # ------------------------------------------------------------------ data
    def read(self, name, *, kinds=None, shape=None):
        """Read one member. ``kinds``: allowed dtype kinds (e.g. ``"f"``); ``shape``: the exact shape wanted.
        Both are checked from the header before reading."""
        m = self._member(name)
        if m.dtype.hasobject:
            raise self._err(f"holds Python objects (dtype {m.dtype}); rnnlab never unpickles", name)
        if kinds is not None and m.dtype.kind not in kinds:
            raise self._err(f"has dtype {m.dtype}, expected kind {kinds!r}", name)
        if shape is not None and tuple(shape) != m.shape:
            raise self._err(f"has shape {m.shape}, expected {tuple(shape)}", name)
        if self.read_total + m.nbytes > self.limit:
            raise self._err(f"holds {format_bytes(m.nbytes)}; with the {format_bytes(self.read_total)} already "
                            f"read that is more than the read limit of {format_bytes(self.limit)} (set "
                            "RNNLAB_MAX_READ_BYTES to change it)", name, FileTooLargeError)
        try:
            with self._zip.open(m.zname) as fp:
                arr = np.lib.format.read_array(fp, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError) as e:
            raise self._err(f"is damaged ({type(e).__name__}: {e})", name) from None
        if arr.shape != m.shape or arr.dtype != m.dtype:   # pragma: no cover - the header was read above
            raise self._err(f"changed while reading ({arr.shape} {arr.dtype})", name)
        self.read_total += m.nbytes
        return arr

    def raw_bytes(self, name):
        """The whole member (``.npy`` header included) as bytes, within the read limit (for object members,
        which a caller decodes itself)."""
        m = self._member(name)
        if self.read_total + m.stored > self.limit:
            raise self._err(f"holds {format_bytes(m.stored)}, more than the read limit of {format_bytes(self.limit)}",
                            name, FileTooLargeError)
        try:
            with self._zip.open(m.zname) as fp:
                data = fp.read()
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError) as e:
            raise self._err(f"is damaged ({type(e).__name__}: {e})", name) from None
        self.read_total += m.stored
        return data

    def read_json(self, name, max_bytes=MAX_JSON_BYTES):
        """A JSON document stored as a 1-D uint8 array (UTF-8 bytes) or a 0-d string array."""
        m = self._member(name)
        if m.nbytes > max_bytes:
            raise self._err(f"is a {format_bytes(m.nbytes)} document, more than {format_bytes(max_bytes)}",
                            name, FileTooLargeError)
        if m.dtype == np.uint8 and len(m.shape) == 1:
            raw = self.read(name)
            try:
                text = raw.tobytes().decode("utf-8")
            except UnicodeDecodeError as e:
                raise self._err(f"is not UTF-8 text (byte offset {e.start}: {e.reason})", name) from None
        elif m.dtype.kind == "U" and m.shape == ():
            text = str(self.read(name))
        else:
            raise self._err(f"is not a JSON document (dtype {m.dtype}, shape {m.shape})", name)
        return decode_json(text, f"{self.path}: member '{name}'", path=self.path)

    def close(self):
        self._zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _read_header_3(fp):
    """``.npy`` format 3.0 (UTF-8 header): NumPy has no public reader for it in every version."""
    import ast
    import struct

    hlen = struct.unpack("<I", fp.read(4))[0]
    if hlen > 100_000:
        raise ValueError(f"header of {hlen} bytes")
    header = fp.read(hlen).decode("utf-8")
    d = ast.literal_eval(header)
    if not isinstance(d, dict) or set(d) != {"descr", "fortran_order", "shape"}:
        raise ValueError(f"bad header {header[:80]!r}")
    shape = d["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(x, int) and x >= 0 for x in shape):
        raise ValueError(f"bad shape {shape!r}")
    return shape, bool(d["fortran_order"]), np.lib.format.descr_to_dtype(d["descr"])


def build_error(path, what, e) -> FileFormatError:
    """A :class:`FileFormatError` for an exception raised while building an object from ``path``'s config."""
    if isinstance(e, RnnlabError):
        return e
    return FileFormatError(f"{os.fspath(path)}: the saved {what} config is not valid ({type(e).__name__}: {e})",
                           path=path)


#: the exceptions a constructor may raise on a bad config read from a file (wrapped by build_error)
BUILD_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError, OverflowError)


def read_npz_arrays(path, what="rnnlab model file", names=None) -> dict:
    """All (or ``names``) arrays of an ``.npz``, each checked as in :class:`NpzArchive`."""
    with NpzArchive(path, what) as arc:
        return {k: arc.read(k) for k in (arc.names if names is None else names)}


def decode_json(text, where, path=None):
    """``json.loads`` with every failure (syntax, nesting too deep, a huge integer) as :class:`FileFormatError`
    naming ``where``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise FileFormatError(f"{where}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})",
                              path=path) from None
    except (RecursionError, ValueError) as e:
        raise FileFormatError(f"{where}: unreadable JSON ({type(e).__name__}: {e})", path=path) from None


#: config keys that count layers (bounded by the number of arrays in the file)
COUNT_KEYS = frozenset({"layers", "num_layers", "n_layers"})


def check_config_sizes(config, bound, where, path=None, count_bound=None):
    """Every size-like integer (:data:`SIZE_KEYS`) anywhere in ``config`` (nested dicts and lists) must be
    an int in ``[0, min(max(bound, MIN_DIM_BOUND), MAX_DIM)]``; otherwise :class:`FileTooLargeError` /
    :class:`FileFormatError` naming ``where``, the key and the numbers. ``bound`` is what the file's arrays can
    hold (e.g. :meth:`NpzArchive.max_dim`). With ``count_bound`` (the number of arrays in the file), layer counts
    (:data:`COUNT_KEYS`) must be at most that."""
    limit = min(max(int(bound), MIN_DIM_BOUND), MAX_DIM)
    climit = None if count_bound is None else min(int(count_bound), MAX_DIM)

    def walk(obj, trail, depth):
        if depth > 100:
            raise FileFormatError(f"{where}: config nested more than 100 levels deep", path=path)
        if isinstance(obj, dict):
            for k, v in obj.items():
                counts = climit is not None and k in COUNT_KEYS
                if (k in SIZE_KEYS or counts) and v is not None and not isinstance(v, (dict, list)):
                    if isinstance(v, bool) or not isinstance(v, int):
                        raise FileFormatError(f"{where}: config {trail}{k} must be an integer, got {v!r:.60}",
                                              path=path)
                    if v < 0:
                        raise FileFormatError(f"{where}: config {trail}{k} = {v} is negative", path=path)
                    if counts and v > climit:
                        raise FileTooLargeError(
                            f"{where}: config {trail}{k} = {v:,} layers but the file holds only {count_bound:,} "
                            "arrays: refused before building", path=path)
                    if not counts and v > limit:
                        raise FileTooLargeError(
                            f"{where}: config {trail}{k} = {v:,} is more than the file's arrays can hold (largest "
                            f"dimension stored: {int(bound):,}; sizes up to {MIN_DIM_BOUND:,} are always allowed; "
                            f"sanity limit {MAX_DIM:,}): refused before building",
                            path=path)
                else:
                    walk(v, f"{trail}{k}.", depth + 1)
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                walk(v, f"{trail}{i}.", depth + 1)

    walk(config, "", 0)


@contextlib.contextmanager
def shape_only():
    """Inside this block ``Layer.add_weight`` allocates nothing: every weight is a zero-stride view of one
    element (its shape is right, its values are not), no initializer runs and rnnlab's random generator is
    left as it was. Loaders build a model from a file's config this way and compare the weight shapes with
    the file's array headers before building it for real."""
    from . import backend
    from .layers import base

    state = backend.rng().bit_generator.state
    token = base._SHAPE_ONLY.set(True)
    try:
        yield
    finally:
        base._SHAPE_ONLY.reset(token)
        backend.rng().bit_generator.state = state


# ------------------------------------------------------------------------------------------ gzip
def gunzip_bytes(data, path, limit=None) -> bytes:
    """Decompress gzip ``data`` (all members) read from ``path``, at most ``limit`` bytes of output
    (:func:`max_read_bytes` by default). A damaged or truncated stream is a :class:`FileFormatError`, output
    past the limit a :class:`FileTooLargeError`, both naming the file."""
    path = os.fspath(path)
    limit = max_read_bytes() if limit is None else int(limit)
    out, total, rest = [], 0, data
    while rest:
        d = zlib.decompressobj(wbits=31)
        try:
            while True:
                chunk = d.decompress(rest, 1 << 22)
                total += len(chunk)
                if total > limit:
                    raise FileTooLargeError(f"{path}: the gzip stream inflates past {format_bytes(limit)} (the read "
                                            "limit; set RNNLAB_MAX_READ_BYTES to change it)", path=path)
                out.append(chunk)
                rest = d.unconsumed_tail
                if not rest or d.eof:
                    break
        except zlib.error as e:
            raise FileFormatError(f"{path}: not a valid gzip file ({e}) after {total:,} bytes of data",
                                  path=path) from None
        if not d.eof:
            raise FileFormatError(f"{path}: the gzip file is truncated (the compressed stream ends before its end "
                                  f"marker, after {total:,} bytes of data); the file was cut off while being written "
                                  "or copied", path=path)
        rest = d.unused_data.lstrip(b"\0")   # a following gzip member (or trailing padding)
    return b"".join(out)


# ----------------------------------------------------------------------------------------- writes
_TMP_RE = re.compile(r"^\.tmp-(\d+)-")


def _umask() -> int:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)   # no /proc: read it by setting it (and put it back at once)
    os.umask(mask)
    return mask


def _pid_alive(pid) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def fsync_dir(folder) -> None:
    """fsync a folder (so a rename in it survives a crash); silently skipped where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_path(path) -> str:
    """A fresh temporary name beside ``path``: ``.tmp-<pid>-<name>-<random>``."""
    folder, base = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(folder, f".tmp-{os.getpid()}-{base}-{secrets.token_hex(4)}")


def remove_stale_temp_files(folder) -> list:
    """Remove ``.tmp-<pid>-*`` files in ``folder`` whose process is no longer running (left by a run killed
    during a save); returns the names removed."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = _TMP_RE.match(name)
        if m is None or _pid_alive(int(m.group(1))):
            continue
        try:
            os.unlink(os.path.join(folder, name))
            removed.append(name)
        except OSError:
            pass
    return removed


@contextlib.contextmanager
def atomic_open(path):
    """``with atomic_open(path) as f: f.write(...)``: a binary file object on a temporary file in ``path``'s
    folder; when the block ends normally the file is fsynced (umask permissions), renamed over ``path`` and the
    folder fsynced. An exception in the block (or in the rename) leaves any old file intact and no temporary."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    remove_stale_temp_files(folder)
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)   # the umask applies, as for open()
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder (fsynced, umask permissions),
    renamed over ``path``, then the folder fsynced. A failure leaves any old file intact and no temporary."""
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


# ------------------------------------------------------------------------ npz files: one writer, one reader
def _json_problem(obj, allow_nan, trail="", depth=0):
    """``(trail, value, reason)`` of the first value in ``obj`` that ``json.dumps`` refuses; None if none."""
    if depth > 500:
        return trail or "the document", obj, "nested more than 500 levels deep"
    if obj is None or isinstance(obj, (str, bool, int)):
        return None
    if isinstance(obj, float):
        return None if allow_nan or math.isfinite(obj) else (trail or "the document", obj, "not finite")
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not (k is None or isinstance(k, (str, bool, int, float))):
                return f"{trail}{k!r:.40}", k, f"a {type(k).__name__} key (JSON keys are strings)"
            found = _json_problem(v, allow_nan, f"{trail}{k}.", depth + 1)
            if found:
                return found
        return None
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            found = _json_problem(v, allow_nan, f"{trail}{i}.", depth + 1)
            if found:
                return found
        return None
    return trail or "the document", obj, f"a {type(obj).__module__}.{type(obj).__qualname__}, not a JSON value"


def encode_json(doc, where="JSON document", allow_nan=False, form="uint8") -> np.ndarray:
    """``doc`` as the 1-D uint8 array of its JSON text (UTF-8), the form rnnlab ``.npz`` files store their
    documents in (``form="str"``: a 0-d unicode array of the text, the form Seq2Seq files have always used;
    :meth:`NpzArchive.read_json` reads both). A value JSON cannot hold is refused naming ``where`` and its place in the document
    (``config.layers.0.units``): :class:`TypeError` for a type (a NumPy scalar: use ``.item()``; an array:
    store it as an array member), :class:`ValueError` for NaN/Infinity unless ``allow_nan`` (then Python's
    ``NaN``/``Infinity`` tokens are written, which :func:`decode_json` reads back) and for a circular reference."""
    try:
        text = json.dumps(doc, allow_nan=bool(allow_nan))
    except (TypeError, ValueError, RecursionError) as e:
        found = _json_problem(doc, allow_nan)
        if found is None:
            raise ValueError(f"{where}: cannot be written as JSON ({type(e).__name__}: {e})") from None
        at, value, reason = found
        at = at.rstrip(".")
        if reason == "not finite":
            raise ValueError(f"{where}: {at} = {value!r} is not finite; JSON has no NaN/Infinity (store None or a "
                             "string, or write with allow_nan=True: Python's NaN/Infinity tokens, which rnnlab reads "
                             "back)") from None
        if reason.startswith("nested"):
            raise ValueError(f"{where}: {at} is {reason}") from None
        hint = " (use .item() for a NumPy scalar)" if isinstance(value, np.generic) else \
            " (store an array as an array member, not inside a JSON document)" if isinstance(value, np.ndarray) else ""
        raise TypeError(f"{where}: {at} is {reason}: {value!r:.60}{hint}") from None
    if form == "str":
        return np.array(text)
    if form != "uint8":
        raise ValueError(f"encode_json: form must be 'uint8' or 'str', got {form!r}")
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


#: member names write_npz refuses: they are np.savez's own keyword arguments
_RESERVED_NAMES = frozenset({"file", "allow_pickle"})


def write_npz(path, arrays=None, docs=None, *, compress=False, allow_nan=False, doc_form="uint8") -> str:
    """Write one rnnlab ``.npz`` file, atomically (:func:`atomic_open`); returns ``path`` as a string.

    ``arrays``: name -> array (numeric, bool or fixed-width string; never object arrays: nothing is pickled),
    each stored as the member ``<name>.npy`` by ``np.savez`` (the names ``file`` and ``allow_pickle`` are
    reserved). ``docs``: name -> a JSON-able
    document, stored as a 1-D uint8 array of its UTF-8 JSON text (:func:`encode_json`; ``allow_nan`` as
    there; ``doc_form="str"``: 0-d unicode arrays instead, Seq2Seq's form). ``compress=True`` deflates the members (``np.savez_compressed``'s format), otherwise they are stored.

    Every value is checked before the file is opened: a bad name, an object array, a document JSON cannot hold
    is a :class:`TypeError`/:class:`ValueError` naming the file and the member, and any old file at ``path``
    stays as it was. Read back with :func:`read_npz` (or :class:`NpzArchive` for lazy, header-first reading).
    """
    path = os.fspath(path)
    arrays, docs = dict(arrays or {}), dict(docs or {})
    if doc_form not in ("uint8", "str"):
        raise ValueError(f"write_npz: doc_form must be 'uint8' or 'str', got {doc_form!r}")
    members = {}
    for key, value in list(arrays.items()) + list(docs.items()):
        if not isinstance(key, str) or not key or "\0" in key:
            raise TypeError(f"{path}: member names must be non-empty strings, got {key!r:.60}")
        if key in _RESERVED_NAMES:
            raise ValueError(f"{path}: member name '{key}' is reserved (np.savez's own arguments "
                             f"{sorted(_RESERVED_NAMES)}); choose another name")
    for key, a in arrays.items():
        if key in docs:
            raise ValueError(f"{path}: member '{key}' is given both as an array and as a JSON document")
        arr = np.asarray(a)
        if arr.dtype.hasobject:
            raise TypeError(f"{path}: array member '{key}' has dtype object (from a {type(a).__name__}); rnnlab "
                            "files hold only numeric, bool and string arrays (nothing is pickled): store Python "
                            "values in a JSON document (docs=)")
        members[key] = arr
    for key, doc in docs.items():
        members[key] = encode_json(doc, f"{path}: member '{key}'", allow_nan, doc_form)
    with atomic_open(path) as f:       # NumPy's own .npz writer, straight into the temporary file
        (np.savez_compressed if compress else np.savez)(f, allow_pickle=False, **members)
    return path


def read_npz(path, what="rnnlab file", docs=(), arrays=True, max_json_bytes=MAX_JSON_BYTES):
    """``(arrays, documents)`` of an ``.npz`` written by :func:`write_npz`, through :class:`NpzArchive` (the
    one checked reading path: headers and sizes checked before anything is inflated, no pickle).

    ``docs``: names of the JSON documents wanted; each must be present (else :class:`FileFormatError` naming
    the file, ``what`` and the member) and is decoded by :meth:`NpzArchive.read_json` (a uint8 UTF-8 array,
    or the 0-d string array some older files hold), at most ``max_json_bytes`` (:class:`FileTooLargeError`).
    ``arrays``: True = every other member, False = none (only the documents are read), or a list of names.
    """
    with NpzArchive(path, what) as arc:
        out_docs = {}
        for name in docs:
            if name not in arc:
                raise FileFormatError(f"{arc.path} is not an {what} (no '{name}' entry; it holds "
                                      f"{sorted(arc.names)[:8]})", path=arc.path, member=name)
            out_docs[name] = arc.read_json(name, max_bytes=max_json_bytes)
        if arrays is True:
            names = [n for n in arc.names if n not in out_docs]
        elif not arrays:
            names = []
        else:
            names = list(arrays)
        out = {n: arc.read(n) for n in names}
    return out, out_docs


# ------------------------------------------------------------------------------------------- locks
class RunLock:
    """``OUT/.rnnlab.lock``: held by one process at a time. :meth:`acquire` creates it (``O_EXCL``) with the
    pid and host; when it exists and its process is alive, :class:`RunLockedError` names the folder and the
    pid; when that process is gone (same host) the stale lock is taken over. The same process may acquire
    it again (re-entrant)."""

    NAME = ".rnnlab.lock"
    _held: dict = {}

    def __init__(self, folder):
        self.folder = os.path.abspath(os.fspath(folder))
        self.path = os.path.join(self.folder, self.NAME)

    def _owner(self):
        try:
            with open(self.path, "rb") as f:
                doc = json.loads(f.read(4096).decode("utf-8"))
            return int(doc.get("pid", -1)), str(doc.get("host", ""))
        except (OSError, ValueError, AttributeError, TypeError):
            return None

    def acquire(self):
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                owner = self._owner()
                if owner is None:          # being written right now, or garbage: look again
                    import time
                    time.sleep(0.05)
                    owner = self._owner()
                if owner is not None and owner[0] == me["pid"] and owner[1] == me["host"]:
                    RunLock._held[self.path] = self
                    return self
                if owner is not None and owner[1] == me["host"] and not _pid_alive(owner[0]) or owner is None:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path)       # stale: its process is gone
                    continue
                raise RunLockedError(f"{self.folder} is in use by another rnnlab run (pid {owner[0]} on "
                                     f"{owner[1]}, lock file {self.path}); wait for it to finish or choose "
                                     "another --out", path=self.path)
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            RunLock._held[self.path] = self
            return self
        raise RunLockedError(f"{self.folder}: could not take the lock {self.path}", path=self.path)

    def release(self):
        RunLock._held.pop(self.path, None)
        owner = self._owner()
        if owner is not None and owner[0] == os.getpid():
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    @classmethod
    def release_all(cls):
        for lock in list(cls._held.values()):
            lock.release()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


import atexit  # noqa: E402

atexit.register(RunLock.release_all)
