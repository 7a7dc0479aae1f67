"""rnnlab.io.write_npz / read_npz: the one writer and reader of rnnlab's "arrays + JSON documents" .npz files."""
import io
import json
import os
import zipfile

import numpy as np
import pytest

from rnnlab import io as rio


def _arrays():
    return {"w:lstm/kernel": np.arange(12, dtype=np.float32).reshape(3, 4),
            "f64": np.linspace(-1, 1, 5), "ids": np.array([3, -1, 7], dtype=np.int64),
            "flags": np.array([True, False]), "scalar": np.float64(2.5), "empty": np.zeros((0, 4), np.float32),
            "words": np.array(["ab", "é", ""]), "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
            "w:a/b:c": np.int64(7)}


DOC = {"format": "x", "config": {"units": 4, "rate": 0.5, "name": "lstm é", "layers": [None, True, [1, 2]]}}


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip(tmp_path, compress):
    path = tmp_path / "m.npz"
    assert rio.write_npz(path, _arrays(), {"__config__": DOC, "__run__": [1, "two"]}, compress=compress) == str(path)
    arrays, docs = rio.read_npz(path, docs=("__config__", "__run__"))
    assert docs == {"__config__": DOC, "__run__": [1, "two"]}
    assert sorted(arrays) == sorted(_arrays())
    for k, want in _arrays().items():
        assert arrays[k].dtype == np.asarray(want).dtype and arrays[k].shape == np.shape(want), k
        np.testing.assert_array_equal(arrays[k], want)
    # the standard .npz format: NumPy reads it without pickle; documents are 1-D uint8 UTF-8 JSON
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) == set(_arrays()) | {"__config__", "__run__"}
        assert z["__config__"].dtype == np.uint8 and z["__config__"].ndim == 1
        assert json.loads(z["__config__"].tobytes().decode("utf-8")) == DOC
    with zipfile.ZipFile(path) as zf:
        kinds = {i.compress_type for i in zf.infolist()}
    assert kinds == {zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED}


def test_read_subsets(tmp_path):
    path = tmp_path / "m.npz"
    rio.write_npz(path, {"a": np.ones(3), "b": np.zeros(2)}, {"d": {"k": 1}})
    arrays, docs = rio.read_npz(path, docs=["d"], arrays=False)
    assert arrays == {} and docs == {"d": {"k": 1}}
    arrays, docs = rio.read_npz(path, arrays=["b"])
    assert list(arrays) == ["b"] and docs == {}
    arrays, _ = rio.read_npz(path)       # no docs asked for: the document is just another (uint8) array
    assert arrays["d"].dtype == np.uint8


def test_reads_the_older_unicode_document_form(tmp_path):
    # Seq2Seq files before the one writer stored their JSON as a 0-d unicode array
    path = tmp_path / "old.npz"
    np.savez(path, w=np.ones(2), __config__=np.array(json.dumps({"format": "old", "v": [1, 2]})))
    arrays, docs = rio.read_npz(path, docs=["__config__"])
    assert docs["__config__"] == {"format": "old", "v": [1, 2]}
    np.testing.assert_array_equal(arrays["w"], np.ones(2))


def test_output_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        rio.write_npz(tmp_path / "p.npz", {"a": np.ones(1)})
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "p.npz").st_mode & 0o777 == 0o640


# ----------------------------------------------------------------------------------- atomicity
def _old_file(tmp_path):
    path = tmp_path / "m.npz"
    rio.write_npz(path, {"a": np.arange(4.0)}, {"d": {"old": True}})
    return path, path.read_bytes()


def _left(tmp_path):
    return sorted(n for n in os.listdir(tmp_path) if n.startswith(".tmp-"))


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failing_write_leaves_the_old_file(tmp_path, monkeypatch, exc):
    path, before = _old_file(tmp_path)
    real = np.savez
    seen = []

    def half_then_fail(f, **members):
        real(f, **members)                 # the whole archive goes into the temporary file ...
        seen.append(sorted(os.listdir(tmp_path)))
        raise exc                          # ... and the process dies before the rename

    monkeypatch.setattr(np, "savez", half_then_fail)
    with pytest.raises(type(exc)):
        rio.write_npz(path, {"a": np.zeros(1000), "b": np.ones(5)}, {"d": {"new": True}})
    assert len(seen) == 1 and any(n.startswith(".tmp-") for n in seen[0])   # it was written, beside the file
    assert path.read_bytes() == before and _left(tmp_path) == []


def test_failing_rename_leaves_the_old_file(tmp_path, monkeypatch):
    path, before = _old_file(tmp_path)

    def no_replace(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(rio.os, "replace", no_replace)
    with pytest.raises(PermissionError):
        rio.write_npz(path, {"a": np.zeros(3)})
    monkeypatch.undo()
    assert path.read_bytes() == before and _left(tmp_path) == []
    assert rio.read_npz(path, docs=["d"])[1] == {"d": {"old": True}}


def test_atomic_open_keeps_old_file_on_exception(tmp_path):
    path = tmp_path / "t.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with rio.atomic_open(path) as f:
            f.write(b"new, half written")
            raise RuntimeError("killed")
    assert path.read_bytes() == b"old" and _left(tmp_path) == []
    with rio.atomic_open(path) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new"


# ----------------------------------------------------------------------------------- bad values
@pytest.mark.parametrize("doc, err, where, words", [
    ({"config": {"units": np.int64(4)}}, TypeError, "config.units", "numpy.int64"),
    ({"config": {"rate": np.float32(0.5)}}, TypeError, "config.rate", ".item()"),
    ({"layers": [{"w": np.ones(2)}]}, TypeError, "layers.0.w", "array member"),
    ({"tags": {"a", "b"}}, TypeError, "tags", "builtins.set"),
    ({"history": [1.0, float("nan")]}, ValueError, "history.1", "not finite"),
    ({"best": float("-inf")}, ValueError, "best", "allow_nan=True"),
    ({(1, 2): 3}, TypeError, "(1, 2)", "JSON keys are strings"),
])
def test_non_json_values_name_file_member_and_place(tmp_path, doc, err, where, words):
    path, before = _old_file(tmp_path)
    with pytest.raises(err) as e:
        rio.write_npz(path, {"a": np.zeros(2)}, {"__config__": doc})
    msg = str(e.value)
    assert str(path) in msg and "member '__config__'" in msg and where in msg and words in msg, msg
    assert path.read_bytes() == before and _left(tmp_path) == []


def test_circular_document_is_refused(tmp_path):
    doc = {"a": []}
    doc["a"].append(doc)
    with pytest.raises(ValueError, match=r"member 'd'"):
        rio.write_npz(tmp_path / "c.npz", docs={"d": doc})
    assert not (tmp_path / "c.npz").exists()


def test_allow_nan_round_trips_python_tokens(tmp_path):
    path = tmp_path / "n.npz"
    rio.write_npz(path, docs={"__run__": {"best": float("inf"), "h": [float("nan"), -float("inf")]}}, allow_nan=True)
    doc = rio.read_npz(path, docs=["__run__"])[1]["__run__"]
    assert doc["best"] == float("inf") and np.isnan(doc["h"][0]) and doc["h"][1] == -float("inf")


def test_object_arrays_and_bad_names_are_refused(tmp_path):
    path = tmp_path / "o.npz"
    with pytest.raises(TypeError, match=r"o\.npz: array member 'x' has dtype object.*nothing is pickled"):
        rio.write_npz(path, {"x": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(TypeError, match="non-empty strings"):
        rio.write_npz(path, {3: np.ones(1)})
    with pytest.raises(TypeError, match="non-empty strings"):
        rio.write_npz(path, {"": np.ones(1)})
    with pytest.raises(ValueError, match="member name 'file' is reserved"):
        rio.write_npz(path, {"file": np.ones(1)})
    with pytest.raises(ValueError, match="member name 'allow_pickle' is reserved"):
        rio.write_npz(path, docs={"allow_pickle": {}})
    with pytest.raises(ValueError, match="member 'x' is given both as an array and as a JSON document"):
        rio.write_npz(path, {"x": np.ones(1)}, {"x": {}})
    assert not path.exists() and _left(tmp_path) == []


# -------------------------------------------------------------------------- hostile files, read back
def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name + ".npy", data)


def _npy(header, payload=b""):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + payload


def test_document_declaring_a_huge_size_is_refused_before_reading(tmp_path):
    path = tmp_path / "h.npz"
    _zip(path, {"__config__": _npy({"descr": "|u1", "fortran_order": False, "shape": (10 ** 12,)}, b"{}")})
    with pytest.raises(rio.FileTooLargeError) as e:
        rio.read_npz(path, "rnnlab test file", docs=["__config__"])
    assert str(path) in str(e.value) and "'__config__'" in str(e.value) and e.value.member == "__config__"


def test_document_over_the_json_limit_is_refused(tmp_path):
    path = tmp_path / "big.npz"
    rio.write_npz(path, docs={"d": {"pad": "x" * 5000}})
    with pytest.raises(rio.FileTooLargeError, match=r"big\.npz.*member 'd'.*document"):
        rio.read_npz(path, docs=["d"], max_json_bytes=1000)
    assert rio.read_npz(path, docs=["d"])[1]["d"]["pad"] == "x" * 5000


@pytest.mark.parametrize("payload, words", [
    (b"\xff\xfe{}", "not UTF-8"),
    (b"{\"a\": ", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "JSON"),
])
def test_damaged_documents_are_file_format_errors(tmp_path, payload, words):
    path = tmp_path / "bad.npz"
    _zip(path, {"d": _npy({"descr": "|u1", "fortran_order": False, "shape": (len(payload),)}, payload)})
    with pytest.raises(rio.FileFormatError, match=words) as e:
        rio.read_npz(path, docs=["d"])
    assert str(path) in str(e.value)


def test_missing_document_object_member_and_non_zip(tmp_path):
    path = tmp_path / "m.npz"
    rio.write_npz(path, {"a": np.ones(2)})
    with pytest.raises(rio.FileFormatError, match=r"m\.npz is not an rnnlab backup \(no '__run__' entry") as e:
        rio.read_npz(path, "rnnlab backup", docs=["__run__"])
    assert e.value.member == "__run__"
    obj = tmp_path / "obj.npz"
    np.savez(obj, x=np.array([None], dtype=object))   # would need unpickling
    with pytest.raises(rio.FileFormatError, match="never unpickles"):
        rio.read_npz(obj)
    txt = tmp_path / "t.npz"
    txt.write_text("not a zip")
    with pytest.raises(rio.FileFormatError, match=r"t\.npz"):
        rio.read_npz(txt)


# ------------------------------------------------------------------- the modules that write through it
def test_fasttext_classifier_file_through_the_one_writer(tmp_path):
    from rnnlab.models.fasttext_classifier import FastTextClassifier

    texts = [t.split() for t in ["good film", "bad film", "very good", "very bad"] * 5]
    labels = ["pos", "neg", "pos", "neg"] * 5
    m = FastTextClassifier(dim=3, bucket=101, word_ngrams=2, epochs=1, seed=0).fit(texts, labels)
    path = tmp_path / "ft.npz"
    before = path.write_bytes(b"old") and b"old"
    m.save(path)
    arrays, docs = rio.read_npz(path, docs=["meta"])
    assert docs["meta"]["kind"] == "rnnlab.FastTextClassifier" and set(arrays) == {"input_matrix", "output_matrix"}
    np.testing.assert_array_equal(FastTextClassifier.load(path).predict_proba(texts), m.predict_proba(texts))
    # a matrix whose header does not match the settings is refused from the header, naming file and member
    bad = tmp_path / "bad.npz"
    rio.write_npz(bad, {"input_matrix": np.zeros((3, 3)), "output_matrix": arrays["output_matrix"]}, docs)
    with pytest.raises(rio.FileFormatError, match=r"bad\.npz: matrix input_matrix is float64 \(3, 3\)") as e:
        FastTextClassifier.load(bad)
    assert e.value.member == "input_matrix"
    # a meta document without its settings: a FileFormatError naming the file, not a KeyError
    rio.write_npz(bad, arrays, {"meta": {"kind": "rnnlab.FastTextClassifier"}})
    with pytest.raises(rio.FileFormatError, match=r"bad\.npz: the saved FastTextClassifier config is not valid"):
        FastTextClassifier.load(bad)
    # a failing save (a value JSON cannot hold) leaves the old file
    path.write_bytes(before)
    m.lr_update_rate = np.float32(100)
    with pytest.raises(TypeError, match=r"ft\.npz: member 'meta': lr_update_rate is a numpy.float32"):
        m.save(path)
    assert path.read_bytes() == before


def test_seq2seq_document_forms_both_load(tmp_path):
    """Seq2Seq keeps writing its __config__ as a 0-d unicode array (the form of every Seq2Seq file so far);
    its loader reads that and the uint8 form of the other rnnlab files, to the same model."""
    from rnnlab.datasets import Vocabulary
    from rnnlab.models.seq2seq import Seq2Seq

    m = Seq2Seq(Vocabulary(list("abcdef")), Vocabulary(list("xyz")), embedding_dim=3, units=3, max_source_len=8,
                max_target_len=6)
    m.history = [{"loss": float("nan")}]          # a diverged run still saves (allow_nan)
    path = tmp_path / "s.npz"
    m.save(str(path))
    with np.load(path, allow_pickle=False) as z:
        assert z["__config__"].dtype.kind == "U" and z["__config__"].shape == ()
    arrays, docs = rio.read_npz(path, docs=["__config__"])
    assert docs["__config__"]["format"] == "rnnlab.Seq2Seq" and np.isnan(docs["__config__"]["history"][0]["loss"])
    u8 = tmp_path / "u8.npz"
    rio.write_npz(u8, arrays, docs, allow_nan=True)
    with np.load(u8, allow_pickle=False) as z:
        assert z["__config__"].dtype == np.uint8
    want = [o for o, _ in m.translate(["abc", "fed"])]
    for p in (path, u8):
        back = Seq2Seq.load(str(p))
        assert back.get_config() == m.get_config() and [o for o, _ in back.translate(["abc", "fed"])] == want
        for (k, owner, w), (_, o2, w2) in zip(m.iter_weights(), back.iter_weights()):
            np.testing.assert_array_equal(owner.params[w], o2.params[w2], err_msg=k)
    from rnnlab.explore import open_model      # rnnlab explore recognises both forms too

    assert {type(open_model(str(p))).__name__ for p in (path, u8)} == {"Seq2SeqExplorer"}
    with pytest.raises(ValueError, match="doc_form must be 'uint8' or 'str'"):
        rio.write_npz(u8, docs={"d": {}}, doc_form="json")


def test_no_module_writes_or_opens_npz_files_by_hand():
    """rnnlab.io is the one writer and reader of .npz files: no other library module calls np.save/np.savez/
    np.savez_compressed/np.load or hand-encodes a JSON document into an array (np.frombuffer(json.dumps(...)))."""
    import ast
    import pathlib

    import rnnlab

    root = pathlib.Path(rnnlab.__file__).parent
    found = []
    for f in sorted(root.rglob("*.py")):
        if f.relative_to(root).as_posix() == "io.py":
            continue
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in ("np", "numpy")):
                continue
            name = node.func.attr
            hand_json = name == "frombuffer" and any(isinstance(n, ast.Attribute) and n.attr == "dumps"
                                                     for a in node.args for n in ast.walk(a))
            # (distributed.py sends the RNG state to the other MPI ranks as JSON bytes: a message, not a file)
            hand_json = hand_json and f.relative_to(root).as_posix() != "distributed.py"
            if name in ("save", "savez", "savez_compressed", "load") or hand_json:
                found.append(f"{f.relative_to(root)}:{node.lineno} np.{name}")
    assert found == [], found


def _rewrite_the_old_way(path):
    """The file's members written again as the hand writers before write_npz did: np.savez into a buffer."""
    with np.load(path, allow_pickle=False) as z:
        members = {k: z[k] for k in z.files}
    buf = io.BytesIO()
    np.savez(buf, **members)
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def _sequential():
    from rnnlab.layers import LSTM, Dense, Embedding
    from rnnlab.models import Sequential

    m = Sequential([Embedding(7, 3), LSTM(4), Dense(2)])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = np.array([[1, 2, 3], [4, 5, 6]]), np.array([0, 1])
    m.fit(x, y, epochs=1, verbose=0)
    return m, (lambda mm: mm.predict(x, verbose=0))


def _esn():
    from rnnlab.models.esn import EchoStateNetwork

    t = np.arange(60.0)
    e = EchoStateNetwork(units=6, washout=2, seed=0).fit(np.sin(t / 3), np.cos(t / 3))
    return e, (lambda m: m.predict(np.sin(t[:10] / 3)))


def _tagger():
    from rnnlab.datasets.conll import Sentence
    from rnnlab.tagging.tagger import build_tagger

    train = [Sentence("John lives in New York".split(), ["B-PER", "O", "O", "B-LOC", "I-LOC"]),
             Sentence("Mary left".split(), ["B-PER", "O"])]
    m = build_tagger(train, char_features=True, embedding_dim=3, units=3)
    sents = [["John", "visited", "Zzyzx"], ["Mary"]]
    return m, (lambda mm: mm.forward(*mm.encode(sents)[:2])[0])


@pytest.mark.parametrize("make, load", [
    (_sequential, "rnnlab.models.saving:load_model"), (_esn, "rnnlab.models.esn:EchoStateNetwork.load"),
    (_tagger, "rnnlab.tagging.tagger:Tagger.load")])
def test_files_of_the_old_hand_writers_still_load(tmp_path, make, load):
    import importlib

    mod, _, attr = load.partition(":")
    fn = importlib.import_module(mod)
    for part in attr.split("."):
        fn = getattr(fn, part)
    m, out = make()
    path = tmp_path / "m.npz"
    if hasattr(m, "save"):
        m.save(path)
    new = fn(str(path))
    _rewrite_the_old_way(path)
    old = fn(str(path))
    np.testing.assert_array_equal(out(old), out(m))
    np.testing.assert_array_equal(out(new), out(m))


def test_task_file_is_one_write_of_the_model_file_plus_its_task_document(tmp_path):
    from rnnlab.models.saving import load_model
    from rnnlab.tasks.runstate import load_sequential_task_file, save_sequential_task_file

    m, out = _sequential()
    plain, task = tmp_path / "plain.npz", tmp_path / "task.npz"
    m.save(plain)
    save_sequential_task_file(m, task, {"task": "fake", "run": {"history": [{"loss": float("nan")}]}})
    assert _left(tmp_path) == []
    with np.load(plain, allow_pickle=False) as a, np.load(task, allow_pickle=False) as b:
        assert set(b.files) == set(a.files) | {"__task__"}
        for k in a.files:                  # the model part is byte for byte the model file's
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    back, doc = load_sequential_task_file(task, "fake")
    assert np.isnan(doc["run"]["history"][0]["loss"])      # a run's history may hold NaN
    np.testing.assert_array_equal(out(back), out(m))
    np.testing.assert_array_equal(out(load_model(str(task))), out(m))
