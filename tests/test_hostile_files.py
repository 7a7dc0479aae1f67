"""Hostile and damaged files (issue 19): every loader refuses them with an rnnlab error naming the file,
before it allocates what the file declares.

Each case is built here, in the test. All cases are then loaded in ONE child process whose address space is
limited with ``RLIMIT_AS`` to what it uses after importing rnnlab plus :data:`BUDGET`: an attempted
allocation of what a hostile file declares (GBs to TBs) fails there with ``MemoryError``, which fails the
case. The child also reports each case's growth of the peak resident memory (``ru_maxrss``).
"""
from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import rnnlab
from rnnlab import io as rio

#: address space the child may add after importing rnnlab (and h5py)
BUDGET = 600 * 2 ** 20
#: each case's allowed growth of the peak resident memory
RSS_BOUND = 150 * 2 ** 20


# ------------------------------------------------------------------------------------------ helpers
def _npz_bytes(arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _read_npz(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _doc(arrays, key):
    return json.loads(arrays[key].tobytes().decode("utf-8"))


def _set_doc(arrays, key, doc):
    arrays = dict(arrays)
    arrays[key] = np.frombuffer(json.dumps(doc).encode("utf-8"), dtype=np.uint8)
    return arrays


def _npy_header(shape, dtype="<f8"):
    """A version-1.0 ``.npy`` header declaring ``shape`` (and no data)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _small_model(path):
    rnnlab.set_random_seed(0)
    m = rnnlab.Sequential([rnnlab.layers.LSTM(4, input_shape=(3, 2)), rnnlab.layers.Dense(1)])
    m.compile(optimizer="adam", loss="mse")
    m.fit(np.ones((4, 3, 2), np.float32), np.ones((4, 1), np.float32), epochs=1, verbose=0)
    m.save(path)
    return _read_npz(path)


def _lstm_units(doc, units):
    for layer in doc["config"]["layers"]:
        if layer["class_name"] == "LSTM":
            layer["config"]["units"] = units
    return doc


# -------------------------------------------------------------------------------------------- cases
def _case_units(tmp, units):
    good = _small_model(tmp / "good.npz")
    p = tmp / f"units_{units}.npz"
    p.write_bytes(_npz_bytes(_set_doc(good, "__rnnlab__", _lstm_units(_doc(good, "__rnnlab__"), units))))
    return p


def build_cases(tmp):
    """``[(name, path, code, expected error class name, substrings of the message)]``; ``P`` is the path."""
    cases = []

    def add(name, path, code, err, *subs):
        cases.append((name, str(path), code, err, [str(path)] + list(subs)))

    # configs whose sizes exceed the arrays: refused before any layer is built
    add("units_1e9", _case_units(tmp, 10 ** 9), "rnnlab.load_model(P)", "FileTooLargeError",
        "units = 1,000,000,000", "refused before building")
    add("units_6e7", _case_units(tmp, 60_000_000), "rnnlab.load_model(P)", "FileTooLargeError", "units = 60,000,000")
    add("units_8_vs_4", _case_units(tmp, 8), "rnnlab.load_model(P)", "FileFormatError", "the model expects")

    good = _read_npz(tmp / "good.npz")
    # an .npy header declaring 10**12 float64 (8 TB) in a tiny member
    p = tmp / "huge_header.npz"
    with zipfile.ZipFile(p, "w") as z:
        for k, v in good.items():
            buf = io.BytesIO()
            np.save(buf, v)
            z.writestr(k + ".npy", buf.getvalue())
        z.writestr("w:extra.npy", _npy_header((10 ** 12,)) + b"\0" * 64)
    add("npy_header_1e12", p, "rnnlab.load_model(P)", "FileTooLargeError", "w:extra", "(1000000000000,)")

    # a compressed extra member that inflates to 300 MB (a zip bomb)
    p = tmp / "bomb.npz"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for k, v in good.items():
            buf = io.BytesIO()
            np.save(buf, v)
            z.writestr(k + ".npy", buf.getvalue())
        n = 300 * 2 ** 20 // 8
        with z.open("extra.npy", "w", force_zip64=True) as f:
            f.write(_npy_header((n,)))
            block = bytes(8 * 2 ** 20)
            for _ in range(n * 8 // len(block)):
                f.write(block)
    add("zip_bomb_member", p, "rnnlab.load_model(P)", "FileTooLargeError", "extra", "zip bomb")

    # optimizer slots of the wrong shape / dtype / unknown names: refused at load, not at the first fit
    slot = next(k for k in good if k.startswith("opt:") and k.endswith("/momentum"))
    for name, value in (("slot_shape", np.zeros((7,), np.float32)),
                        ("slot_dtype", np.zeros(good[slot].shape, np.int64))):
        arrays = dict(good)
        arrays[slot] = value
        p = tmp / f"{name}.npz"
        p.write_bytes(_npz_bytes(arrays))
        add(name, p, "rnnlab.load_model(P)", "FileFormatError", "optimizer slot", slot)
    arrays = dict(good)
    arrays["opt:nowhere/momentum"] = np.zeros(3, np.float32)
    p = tmp / "slot_unknown.npz"
    p.write_bytes(_npz_bytes(arrays))
    add("slot_unknown", p, "rnnlab.load_model(P)", "FileFormatError", "opt:nowhere/momentum")

    # odd configs: no optimizer in the compile settings, JSON nested 100,000 deep, a layer config of the wrong type
    doc = _doc(good, "__rnnlab__")
    doc["compile"] = {"loss": "mse"}
    p = tmp / "no_optimizer.npz"
    p.write_bytes(_npz_bytes(_set_doc(good, "__rnnlab__", doc)))
    add("compile_without_optimizer", p, "rnnlab.load_model(P)", "FileFormatError", "compile settings")
    arrays = dict(good)
    arrays["__rnnlab__"] = np.frombuffer(b'{"format": "rnnlab-model", "x": ' + b"[" * 100000 + b"]" * 100000 + b"}",
                                         dtype=np.uint8)
    p = tmp / "deep.npz"
    p.write_bytes(_npz_bytes(arrays))
    add("json_nested_deep", p, "rnnlab.load_model(P)", "FileFormatError", "__rnnlab__")
    doc = _doc(good, "__rnnlab__")
    doc["config"]["layers"][0]["config"]["units"] = "many"
    p = tmp / "units_str.npz"
    p.write_bytes(_npz_bytes(_set_doc(good, "__rnnlab__", doc)))
    add("units_not_int", p, "rnnlab.load_model(P)", "FileFormatError", "units must be an integer")

    # a damaged byte inside a stored weight (bad CRC-32) and a file cut in half
    raw = bytearray((tmp / "good.npz").read_bytes())
    at = raw.find(b"recurrent_kernel.npy")       # the local header's name, then the member's data
    assert at > 0
    raw[at + 150] ^= 0xFF
    p = tmp / "crc.npz"
    p.write_bytes(bytes(raw))
    add("bad_crc", p, "rnnlab.load_model(P)", "FileFormatError", "recurrent_kernel", "CRC")
    p = tmp / "half.npz"
    p.write_bytes((tmp / "good.npz").read_bytes()[:2000])
    add("truncated_npz", p, "rnnlab.load_model(P)", "FileFormatError", "not a readable zip archive")

    # Seq2Seq / ESN / tagger: the same checks through the same reader
    from rnnlab.datasets import Vocabulary
    from rnnlab.models.esn import EchoStateNetwork
    from rnnlab.models.seq2seq import Seq2Seq
    from rnnlab.tagging.tagger import Tagger

    s2s = tmp / "s2s.npz"
    Seq2Seq(Vocabulary(list("abc")), Vocabulary(list("xy")), embedding_dim=3, units=3, max_source_len=5,
            max_target_len=5).save(str(s2s))
    arrays = _read_npz(s2s)
    meta = json.loads(str(arrays["__config__"]))
    meta["config"]["units"] = 10 ** 9
    arrays["__config__"] = np.array(json.dumps(meta))
    p = tmp / "s2s_units.npz"
    p.write_bytes(_npz_bytes(arrays))
    add("seq2seq_units_1e9", p, "Seq2Seq.load(P)", "FileTooLargeError", "units = 1,000,000,000")
    meta["config"]["units"] = 3
    meta["config"]["num_layers"] = 10 ** 6
    arrays["__config__"] = np.array(json.dumps(meta))
    p = tmp / "s2s_layers.npz"
    p.write_bytes(_npz_bytes(arrays))
    add("seq2seq_layers_1e6", p, "Seq2Seq.load(P)", "FileTooLargeError", "num_layers = 1,000,000")
    p = tmp / "s2s_notzip.npz"
    p.write_bytes(b"\x93NUMPY" + b"\0" * 100)
    add("seq2seq_not_zip", p, "Seq2Seq.load(P)", "FileFormatError", "not an rnnlab model file")
    raw = bytearray(s2s.read_bytes())
    at = raw.find(b"recurrent_kernel.npy")
    assert at > 0
    raw[at + 150] ^= 0xFF
    p = tmp / "s2s_crc.npz"
    p.write_bytes(bytes(raw))
    add("seq2seq_bad_crc", p, "Seq2Seq.load(P)", "FileFormatError", "recurrent_kernel", "CRC")

    esn = tmp / "esn.npz"
    EchoStateNetwork(units=5, washout=2, seed=0).fit(np.sin(np.arange(30.0)), np.cos(np.arange(30.0))).save(esn)
    arrays = _read_npz(esn)
    doc = _doc(arrays, "__config__")
    doc["config"]["units"] = 10 ** 9
    p = tmp / "esn_units.npz"
    p.write_bytes(_npz_bytes(_set_doc(arrays, "__config__", doc)))
    add("esn_units_1e9", p, "EchoStateNetwork.load(P)", "FileTooLargeError", "units = 1,000,000,000")
    doc["config"]["units"] = 4
    p = tmp / "esn_units_4.npz"
    p.write_bytes(_npz_bytes(_set_doc(arrays, "__config__", doc)))
    add("esn_units_mismatch", p, "EchoStateNetwork.load(P)", "FileFormatError", "array W is")
    p = tmp / "esn_zip_garbage.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("__config__.npy", b"garbage")
    add("esn_garbage_member", p, "EchoStateNetwork.load(P)", "FileFormatError", "__config__")

    tg = tmp / "tagger.npz"
    Tagger(["the", "cat"], ["O", "N"], embedding_dim=3, units=2, char_dim=2, char_units=2).save(tg)
    arrays = _read_npz(tg)
    doc = _doc(arrays, "__tagger__")
    doc["config"]["embedding_dim"] = 10 ** 9
    p = tmp / "tagger_dim.npz"
    p.write_bytes(_npz_bytes(_set_doc(arrays, "__tagger__", doc)))
    add("tagger_embedding_1e9", p, "Tagger.load(P)", "FileTooLargeError", "embedding_dim = 1,000,000,000")
    doc["config"]["embedding_dim"] = 3
    doc["words"] = [f"w{i}" for i in range(5000)]
    p = tmp / "tagger_words.npz"
    p.write_bytes(_npz_bytes(_set_doc(arrays, "__tagger__", doc)))
    add("tagger_vocab_vs_arrays", p, "Tagger.load(P)", "FileFormatError", "expected a float array of shape")

    # vector files: a word2vec binary header asking for 10**8 x 10**6 floats (364 TiB)
    p = tmp / "huge.bin"
    p.write_bytes(b"100000000 1000000\nword " + np.zeros(4, "<f4").tobytes())
    add("w2v_binary_header", p, "load_word2vec_format(P, binary=True)", "FileTooLargeError",
        "100,000,000 vectors of dimension 1,000,000")
    p = tmp / "huge_rows.bin"
    p.write_bytes(b"2000000000 2\na " + np.zeros(2, "<f4").tobytes())
    add("w2v_binary_rows", p, "load_word2vec_format(P, binary=True)", "ValueError", "file ends after 1 of 2000000000")
    p = tmp / "huge.txt"
    p.write_bytes(b"1000000000 3\na 1 2 3\n")
    add("w2v_text_rows", p, "load_word2vec_format(P)", "ValueError", "file ends after 1 of 1000000000")
    p = tmp / "latin1.txt"
    p.write_bytes(b"2 2\na 1 2\ncaf\xe9 3 4\n")
    add("w2v_text_latin1", p, "load_word2vec_format(P)", "FileEncodingError", "line 3", "byte offset 13", "--encoding")
    p = tmp / "glove_latin1.txt"
    p.write_bytes(b"a 1 2\nb 3 4\n\xff 5 6\n")
    add("glove_latin1", p, "load_glove(P)", "FileEncodingError", "line 3", "byte offset 12")
    p = tmp / "one_line.txt"
    p.write_bytes(b"a" + b" 1" * (9 * 2 ** 20))
    add("glove_line_too_long", p, "load_glove(P)", "FileFormatError", "longer than")

    # text and gzip
    p = tmp / "corpus.txt.gz"
    p.write_bytes(gzip.compress(b"hello world\n" * 5000)[:-30])
    add("truncated_gz", p, "read_text(P)", "FileFormatError", "truncated")
    p = tmp / "pairs.tsv"
    p.write_bytes(b"a\tb\nc\xff\td\n")
    add("pairs_latin1", p, "load_pairs(P)", "FileEncodingError", "line 2", "byte offset 5")
    p = tmp / "tok.json"
    p.write_bytes(b'{"class_name": "Tokenizer", "config": {"num_words": "\xff"}}')
    add("tokenizer_bytes", p, "Tokenizer.load(P)", "FileEncodingError", "byte offset")

    # IMDB npz: an .npy header garbled into a Python token error, and a member declaring 10**12 ids
    p = tmp / "imdb_tok.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("x_train.npy", b"\x93NUMPY\x01\x00" + (118).to_bytes(2, "little")
                   + b"{'descr': '<i8', 'fortran_order" + b" " * 86 + b"\n")
    add("imdb_token_error", p, "load_imdb_npz(P)", "FileFormatError", "x_train")
    p = tmp / "imdb_huge.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("x_train_values.npy", _npy_header((10 ** 12,), "<i4") + b"\0" * 16)
    add("imdb_huge_member", p, "load_imdb_npz(P)", "FileTooLargeError", "x_train_values")

    # Keras weights: a .keras archive whose weights member is a zip bomb, and an h5 with a huge declared dataset
    p = tmp / "bomb.keras"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", "{}")
        with z.open("model.weights.h5", "w", force_zip64=True) as f:
            block = bytes(8 * 2 ** 20)
            for _ in range(40):
                f.write(block)
    add("keras_zip_bomb", p, "load_keras_weights(model(), P)", "FileTooLargeError", "zip bomb")
    try:
        import h5py
    except ImportError:   # pragma: no cover - h5py is in the test extra
        h5py = None
    if h5py is not None:
        p = tmp / "huge.weights.h5"
        with h5py.File(p, "w") as f:
            v = f.create_group("layers/dense/vars")
            v.attrs["name"] = "dense"
            v.create_dataset("0", shape=(10 ** 5, 10 ** 5), dtype="f4", chunks=(100, 100), compression="gzip")
            v.create_dataset("1", shape=(2,), dtype="f4")
        add("h5_huge_dataset", p, "load_keras_weights(model(), P)", "ValueError", "has shape (100000, 100000)")
        p = tmp / "vars_dataset.weights.h5"
        with h5py.File(p, "w") as f:
            f.create_dataset("layers/dense/vars", data=np.zeros(3))
        add("h5_vars_not_group", p, "load_keras_weights(model(), P)", "FileFormatError", "layers/dense/vars")
        p = tmp / "cut.weights.h5"
        with h5py.File(tmp / "whole.weights.h5", "w") as f:
            v = f.create_group("layers/dense/vars")
            v.create_dataset("0", data=np.zeros((3, 2), "f4"))
            v.create_dataset("1", data=np.zeros(2, "f4"))
        p.write_bytes((tmp / "whole.weights.h5").read_bytes()[:1500])
        add("h5_truncated", p, "load_keras_weights(model(), P)", "FileFormatError", "cut.weights.h5")
    return cases


CHILD = textwrap.dedent('''
    import json, resource, sys
    import numpy as np
    import rnnlab
    from rnnlab import io as rio
    from rnnlab.datasets.imdb import load_imdb_npz
    from rnnlab.datasets.seq2seq_data import load_pairs
    from rnnlab.datasets.text_corpus import read_text
    from rnnlab.embeddings.io import load_glove, load_word2vec_format
    from rnnlab.models.esn import EchoStateNetwork
    from rnnlab.models.keras_weights import load_keras_weights
    from rnnlab.models.seq2seq import Seq2Seq
    from rnnlab.tagging.tagger import Tagger
    from rnnlab.text.tokenizer import Tokenizer
    try:
        import h5py  # noqa: F401  (mapped before the limit is set)
    except ImportError:
        pass

    def model():
        m = rnnlab.Sequential([rnnlab.layers.Dense(2, input_shape=(3,))])
        m.build((None, 3))
        return m

    def vm():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024

    model()
    cases = json.load(sys.stdin)
    budget = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (vm() + budget, resource.getrlimit(resource.RLIMIT_AS)[1]))
    out = []
    for name, path, code, _, _ in cases:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            exec(code, dict(globals(), P=path))
            res = {"type": None, "msg": "", "mro": []}
        except BaseException as e:   # the test decides what is acceptable
            res = {"type": type(e).__name__, "msg": str(e)[:2000], "mro": [c.__name__ for c in type(e).__mro__]}
        res["rss_growth"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
        out.append([name, res])
    print(json.dumps(out))
''')


@pytest.fixture(scope="module")
def hostile_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    cases = build_cases(tmp)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("RNNLAB_MAX_READ_BYTES", None)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(BUDGET)], input=json.dumps(cases), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {c[0]: c for c in cases}, dict(json.loads(proc.stdout.strip().splitlines()[-1]))


CASE_NAMES = ["units_1e9", "units_6e7", "units_8_vs_4", "npy_header_1e12", "zip_bomb_member", "slot_shape",
              "slot_dtype", "slot_unknown", "compile_without_optimizer", "json_nested_deep", "units_not_int",
              "bad_crc", "truncated_npz", "seq2seq_units_1e9", "seq2seq_layers_1e6", "seq2seq_not_zip",
              "seq2seq_bad_crc", "esn_units_1e9", "esn_units_mismatch", "esn_garbage_member",
              "tagger_embedding_1e9", "tagger_vocab_vs_arrays", "w2v_binary_header", "w2v_binary_rows",
              "w2v_text_rows", "w2v_text_latin1", "glove_latin1", "glove_line_too_long", "truncated_gz",
              "pairs_latin1", "tokenizer_bytes", "imdb_token_error", "imdb_huge_member", "keras_zip_bomb",
              "h5_huge_dataset", "h5_vars_not_group", "h5_truncated"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_hostile_file_is_refused_clearly_within_bounded_memory(hostile_results, name):
    cases, results = hostile_results
    if name not in cases:
        pytest.skip(f"{name}: needs h5py")
    _, path, code, expected, substrings = cases[name]
    res = results[name]
    assert res["type"] is not None, f"{name}: {code} accepted a hostile file"
    assert res["type"] != "MemoryError", f"{name}: tried to allocate what the file declares: {res['msg']}"
    assert expected in res["mro"], f"{name}: expected {expected}, got {res['type']}: {res['msg']}"
    assert "ValueError" in res["mro"], res          # existing `except ValueError` clauses keep working
    for s in substrings:
        assert s in res["msg"], f"{name}: {s!r} not in the message {res['msg']!r}"
    assert res["rss_growth"] < RSS_BOUND, f"{name}: peak memory grew by {res['rss_growth'] / 2**20:.0f} MB"


def test_every_case_is_checked():
    assert len(CASE_NAMES) == len(set(CASE_NAMES))


def test_rlimit_child_really_fails_on_a_large_allocation():
    """The harness itself: inside the limited child a 2 GB allocation is a MemoryError (so a loader that
    allocates what a file declares cannot pass)."""
    code = CHILD.replace("cases = json.load(sys.stdin)", "cases = [['big', '', 'np.ones(2 * 2**30 // 8)', '', []]]")
    proc = subprocess.run([sys.executable, "-c", code, str(BUDGET)], input="", capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert dict(json.loads(proc.stdout.strip().splitlines()[-1]))["big"]["type"] == "MemoryError"


def test_error_family_derives_from_builtin_types():
    assert issubclass(rio.FileFormatError, ValueError) and issubclass(rio.FileFormatError, rio.RnnlabError)
    assert issubclass(rio.FileTooLargeError, rio.FileFormatError)
    assert issubclass(rio.FileEncodingError, ValueError)
    assert issubclass(rio.MemoryLimitError, ValueError)
    assert issubclass(rio.RunLockedError, OSError) and issubclass(rio.RunLockedError, rio.RnnlabError)
