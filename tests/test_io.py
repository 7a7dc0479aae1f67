"""rnnlab.io: checked npz reading, gzip, config size checks, shape-only builds, atomic writes, run locks,
memory estimates; initializers without float64 tables; binary labels outside [0, 1]."""
from __future__ import annotations

import gzip
import io
import json
import math
import os
import socket
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

import rnnlab
from rnnlab import initializers, io as rio, losses


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


# ------------------------------------------------------------------------------------------ NpzArchive
def test_archive_lists_headers_before_reading(tmp_path):
    p = _npz(tmp_path / "a.npz", x=np.zeros((3, 4), np.float32), n=np.arange(5))
    with rio.NpzArchive(p) as arc:
        assert sorted(arc.names) == ["n", "x"]
        assert arc.shape("x") == (3, 4) and arc.dtype("x") == np.float32 and arc.nbytes("x") == 48
        assert arc.read_total == 0
        assert arc.max_dim() == 5
        np.testing.assert_array_equal(arc.read("n"), np.arange(5))
        assert arc.read_total == 40
        with pytest.raises(rio.FileFormatError, match=r"a\.npz: corrupt model file: member 'x' has dtype float32, "
                                                      r"expected kind 'iu'"):
            arc.read("x", kinds="iu")
        with pytest.raises(rio.FileFormatError, match=r"member 'x' has shape \(3, 4\), expected \(4, 3\)"):
            arc.read("x", shape=(4, 3))
        with pytest.raises(rio.FileFormatError, match=r"no member 'y'"):
            arc.read("y")


def test_archive_read_limit(tmp_path, monkeypatch):
    p = _npz(tmp_path / "a.npz", x=np.zeros(1000))
    monkeypatch.setenv("RNNLAB_MAX_READ_BYTES", "4000")
    with rio.NpzArchive(p) as arc:
        with pytest.raises(rio.FileTooLargeError, match=r"member 'x' holds 7.81 kB; .* more than the read limit of "
                                                        r"3.91 kB \(set RNNLAB_MAX_READ_BYTES"):
            arc.read("x")
    monkeypatch.setenv("RNNLAB_MAX_READ_BYTES", "lots")
    with pytest.raises(ValueError, match="RNNLAB_MAX_READ_BYTES must be a number of bytes, got 'lots'"):
        rio.NpzArchive(p)


def test_archive_refuses_objects_and_lying_headers(tmp_path):
    obj = np.empty(2, dtype=object)
    obj[:] = [[1], [2, 3]]
    p = tmp_path / "o.npz"
    np.savez(p, x=obj)
    with pytest.raises(rio.FileFormatError, match=r"member 'x' holds Python objects \(dtype object\); rnnlab never "
                                                  "unpickles"):
        rio.NpzArchive(p)
    with rio.NpzArchive(p, allow_object=True) as arc:      # listed; its bytes only through raw_bytes
        assert arc.raw_bytes("x").startswith(b"\x93NUMPY")
        with pytest.raises(rio.FileFormatError, match="never unpickles"):
            arc.read("x")
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10, 10)})
    p = tmp_path / "short.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("w.npy", buf.getvalue() + b"\0" * 40)         # 400 bytes declared, 40 stored
    with pytest.raises(rio.FileTooLargeError, match=r"member 'w' declares shape \(10, 10\) float32 \(400 B\) but the "
                                                    r"archive stores 40 B"):
        rio.NpzArchive(p)
    p = tmp_path / "long.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("w.npy", buf.getvalue() + b"\0" * 800)
    with pytest.raises(rio.FileFormatError, match="but the archive stores 800 B"):
        rio.NpzArchive(p)


def test_archive_refuses_zip_bombs_but_reads_ordinary_compressed_members(tmp_path):
    p = tmp_path / "c.npz"
    np.savez_compressed(p, x=np.random.default_rng(0).integers(0, 9, 300_000))
    with rio.NpzArchive(p) as arc:
        assert arc.read("x").shape == (300_000,)
    p = tmp_path / "zeros.npz"
    np.savez_compressed(p, x=np.zeros(2 ** 20))              # 8 MB of zeros: deflate packs them ~1000:1
    with pytest.raises(rio.FileTooLargeError, match=r"member 'x' inflates from .* to 8.00 MB \(more than 200x: "
                                                    "refused as a zip bomb\\)"):
        rio.NpzArchive(p)


def test_check_npz_file_messages(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such model file"):
        rio.check_npz_file(tmp_path / "none.npz")
    with pytest.raises(rio.FileFormatError, match="is a directory"):
        rio.check_npz_file(tmp_path)
    (tmp_path / "e.npz").write_bytes(b"")
    with pytest.raises(rio.FileFormatError, match=r"e\.npz is not an rnnlab model file \(an empty file\)"):
        rio.check_npz_file(tmp_path / "e.npz")


def test_read_json_members(tmp_path):
    p = _npz(tmp_path / "j.npz", a=np.frombuffer(b'{"k": [1, 2]}', np.uint8), b=np.array('{"s": 1}'),
             c=np.frombuffer(b"\xff{}", np.uint8), d=np.zeros(3), e=np.frombuffer(b"[" * 50000, np.uint8))
    with rio.NpzArchive(p) as arc:
        assert arc.read_json("a") == {"k": [1, 2]} and arc.read_json("b") == {"s": 1}
        with pytest.raises(rio.FileFormatError, match=r"member 'c' is not UTF-8 text \(byte offset 0"):
            arc.read_json("c")
        with pytest.raises(rio.FileFormatError, match=r"member 'd' is not a JSON document"):
            arc.read_json("d")
        with pytest.raises(rio.FileFormatError, match=r"member 'e': unreadable JSON \(RecursionError"):
            arc.read_json("e")
        with pytest.raises(rio.FileTooLargeError, match="more than"):
            arc.read_json("a", max_bytes=4)


# ------------------------------------------------------------------------------------------------ gzip
def test_gunzip_bytes():
    data = gzip.compress(b"abc" * 100) + gzip.compress(b"xyz")
    assert rio.gunzip_bytes(data, "f.gz") == b"abc" * 100 + b"xyz"
    with pytest.raises(rio.FileFormatError, match=r"f\.gz: the gzip file is truncated"):
        rio.gunzip_bytes(data[:20], "f.gz")
    with pytest.raises(rio.FileFormatError, match=r"f\.gz: not a valid gzip file"):
        rio.gunzip_bytes(b"not gzip at all", "f.gz")
    with pytest.raises(rio.FileTooLargeError, match=r"f\.gz: the gzip stream inflates past 100 B"):
        rio.gunzip_bytes(gzip.compress(bytes(10_000)), "f.gz", limit=100)


# ------------------------------------------------------------------------------------------ config sizes
def test_check_config_sizes():
    rio.check_config_sizes({"layers": [{"config": {"units": 70_000}}]}, 70_000, "f")
    rio.check_config_sizes({"units": 60_000}, 4, "f")                     # below MIN_DIM_BOUND: the build checks
    with pytest.raises(rio.FileTooLargeError, match=r"f: config layers\.0\.config\.units = 70,001 is more than the "
                                                    r"file's arrays can hold \(largest dimension stored: 70,000"):
        rio.check_config_sizes({"layers": [{"config": {"units": 70_001}}]}, 70_000, "f")
    with pytest.raises(rio.FileTooLargeError, match="sanity limit 2,147,483,647"):
        rio.check_config_sizes({"output_dim": 2 ** 31}, 2 ** 40, "f")
    with pytest.raises(rio.FileFormatError, match="config units must be an integer, got True"):
        rio.check_config_sizes({"units": True}, 10, "f")
    with pytest.raises(rio.FileFormatError, match="config input_dim = -1 is negative"):
        rio.check_config_sizes({"input_dim": -1}, 10, "f")
    with pytest.raises(rio.FileTooLargeError, match="num_layers = 9 layers but the file holds only 8 arrays"):
        rio.check_config_sizes({"num_layers": 9}, 10, "f", count_bound=8)
    with pytest.raises(rio.FileFormatError, match="nested more than 100 levels"):
        deep = {}
        node = deep
        for _ in range(150):
            node["a"] = {}
            node = node["a"]
        rio.check_config_sizes(deep, 10, "f")


def test_shape_only_build_allocates_nothing_and_keeps_the_rng():
    rnnlab.set_random_seed(1)
    before = rnnlab.backend.rng().bit_generator.state
    tracemalloc.start()
    try:
        with rio.shape_only():
            m = rnnlab.Sequential([rnnlab.layers.Embedding(200_000, 512, input_shape=(7,)),
                                   rnnlab.layers.LSTM(2048), rnnlab.layers.Dense(3)])
            m.build((None, 7))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    shapes = {p: owner.params[w].shape for p, owner, w in m.iter_weights()}
    assert shapes[next(p for p in shapes if p.endswith("embeddings"))] == (200_000, 512)
    assert shapes[next(p for p in shapes if p.endswith("recurrent_kernel"))] == (2048, 8192)
    assert peak < 2 ** 20            # the real build would take 2 x (410 MB + 100 MB)
    assert rnnlab.backend.rng().bit_generator.state == before


# ------------------------------------------------------------------------------------------------ writes
def test_atomic_write_removes_stale_temporaries_of_dead_processes(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".tmp-{dead.pid}-model.npz-0000"
    stale.write_bytes(b"half")
    live = tmp_path / f".tmp-{os.getppid()}-model.npz-1111"           # a running process: kept
    live.write_bytes(b"busy")
    other = tmp_path / ".tmp-notapid"                                 # not rnnlab's pattern: kept
    other.write_bytes(b"?")
    rio.atomic_write_bytes(tmp_path / "model.npz", b"new")
    assert (tmp_path / "model.npz").read_bytes() == b"new"
    assert not stale.exists() and live.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".tmp-notapid", live.name, "model.npz"])


def test_atomic_write_failure_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "m.bin"
    target.write_bytes(b"old")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rio.os, "replace", boom)
    with pytest.raises(OSError, match="No space left"):
        rio.atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.bin"]


def test_atomic_write_fsyncs_the_folder_after_the_rename(tmp_path, monkeypatch):
    calls = []
    real = rio.fsync_dir
    monkeypatch.setattr(rio, "fsync_dir", lambda folder: (calls.append((folder, (tmp_path / "x").exists())),
                                                         real(folder)))
    rio.atomic_write_bytes(tmp_path / "x", b"1")
    assert calls == [(str(tmp_path), True)]          # after the rename: the new name is what gets synced


def test_run_lock(tmp_path):
    lock = rio.RunLock(tmp_path)
    lock.acquire()
    doc = json.loads((tmp_path / ".rnnlab.lock").read_text())
    assert doc == {"pid": os.getpid(), "host": socket.gethostname()}
    lock.acquire()                                    # re-entrant in the same process
    lock.release()
    assert not (tmp_path / ".rnnlab.lock").exists()
    (tmp_path / ".rnnlab.lock").write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    with pytest.raises(rio.RunLockedError, match=rf"{tmp_path} is in use by another rnnlab run \(pid {os.getppid()}"):
        rio.RunLock(tmp_path).acquire()
    assert isinstance(rio.RunLockedError("x"), OSError)
    (tmp_path / ".rnnlab.lock").write_text("garbage")       # unreadable: taken over
    with rio.RunLock(tmp_path):
        assert json.loads((tmp_path / ".rnnlab.lock").read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".rnnlab.lock").exists()


# ------------------------------------------------------------------------------------------------ memory
def test_check_allocation(monkeypatch):
    monkeypatch.setattr(rio, "available_memory", lambda: 2 ** 30)
    rio.check_allocation(2 ** 29, "half")
    with pytest.raises(rio.MemoryLimitError, match=r"the table needs 2.00 GB, more than the 1.00 GB of memory "
                                                   r"available; use smaller sizes \(or --force"):
        rio.check_allocation(2 ** 31, "the table")
    rio.allow_large_allocations(True)
    try:
        rio.check_allocation(2 ** 31, "the table")
    finally:
        rio.allow_large_allocations(False)


def test_available_memory_follows_rlimit_as():
    code = ("import resource; from rnnlab import io as rio; "
            "s = open('/proc/self/status').read(); vm = int(s.split('VmSize:')[1].split()[0]) * 1024; "
            "resource.setrlimit(resource.RLIMIT_AS, (vm + 300 * 2**20, resource.getrlimit(resource.RLIMIT_AS)[1])); "
            "print(rio.available_memory())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr
    assert 200 * 2 ** 20 < int(out.stdout) <= 300 * 2 ** 20


def test_layer_weights_are_checked_before_allocating(monkeypatch):
    monkeypatch.setattr(rio, "available_memory", lambda: 2 ** 30)
    with pytest.raises(rio.MemoryLimitError, match=r"layer 'emb' weight 'embeddings' \(5000000, 128\) float32 "
                                                   r"\(with its gradient\) needs 4.77 GB"):
        rnnlab.layers.Embedding(5_000_000, 128, name="emb").build((None, 3))


# ------------------------------------------------------------------------------------------ initializers
def _old_truncated(gen, shape, std):
    out = gen.normal(0.0, 1.0, size=shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = gen.normal(0.0, 1.0, size=int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out * std


@pytest.mark.parametrize("shape", [(), (7,), (300, 1000), (3, 5, 700)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_initializers_are_bit_identical_to_the_float64_draw(shape, dtype):
    """Drawing block by block in the target dtype keeps the random streams: same values as before."""
    fan_in, fan_out = initializers._fans(shape) if shape else (1, 1)
    lim = math.sqrt(6.0 / max(1.0, fan_in + fan_out))
    cases = [
        (initializers.GlorotUniform(seed=3), lambda g: g.uniform(-lim, lim, size=shape)),
        (initializers.HeUniform(seed=3), lambda g: g.uniform(-math.sqrt(6.0 / max(1.0, fan_in)),
                                                             math.sqrt(6.0 / max(1.0, fan_in)), size=shape)),
        (initializers.RandomUniform(-0.2, 0.3, seed=3), lambda g: g.uniform(-0.2, 0.3, size=shape)),
        (initializers.RandomNormal(0.1, 0.2, seed=3), lambda g: g.normal(0.1, 0.2, size=shape)),
        (initializers.GlorotNormal(seed=3), lambda g: _old_truncated(
            g, shape, math.sqrt(2.0 / max(1.0, fan_in + fan_out)) / 0.87962566103423978)),
        (initializers.HeNormal(seed=3), lambda g: _old_truncated(
            g, shape, math.sqrt(2.0 / max(1.0, fan_in)) / 0.87962566103423978)),
    ]
    for init, old in cases:
        got = init(shape, dtype)
        assert got.dtype == np.dtype(dtype) and got.shape == shape
        np.testing.assert_array_equal(got, old(np.random.default_rng(3)).astype(dtype), err_msg=repr(init))


def test_initializers_need_no_float64_table():
    tracemalloc.start()
    try:
        for init in (initializers.RandomUniform(seed=0), initializers.GlorotNormal(seed=0)):
            tracemalloc.reset_peak()
            w = init((4000, 1000), "float32")                 # 16 MB; a float64 copy would be 32 MB more
            peak = tracemalloc.get_traced_memory()[1]
            assert peak < w.nbytes + 10 * 2 ** 20, (init, peak - w.nbytes)     # blocks of 2 MB (+ redraw list)
            del w
    finally:
        tracemalloc.stop()


# ------------------------------------------------------------------------------------------ binary labels
@pytest.mark.parametrize("bad", [7.0, -0.5, 1.0001, float("nan")])
@pytest.mark.parametrize("from_logits", [False, True])
def test_binary_crossentropy_refuses_labels_outside_0_1(bad, from_logits):
    y = np.array([[0.0], [1.0], [bad]])
    p = np.full((3, 1), 0.4)
    with pytest.raises(ValueError, match=r"binary_crossentropy: labels \(y_true\) must be in \[0, 1\]"):
        losses.binary_crossentropy(y, p, from_logits=from_logits)


def test_binary_crossentropy_soft_labels_still_work():
    y = np.array([[0.0], [0.25], [1.0]])
    p = np.array([[0.2], [0.5], [0.9]])
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert losses.binary_crossentropy(y, p) == pytest.approx(expected, rel=1e-6)
