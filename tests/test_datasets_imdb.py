"""IMDB loaders: CSV (official split), aclImdb folder, Keras npz (object and flat), download with caching."""
import csv
import datetime
import gzip
import hashlib
import http.server
import io
import os
import tarfile
import threading

import numpy as np
import pytest

from rnnlab.datasets import imdb

ROWS = [  # (review, sentiment) in "official" order: 4 train rows then 2 test rows
    ("A great film.<br /><br />Great acting!", "positive"),
    ("Dull, dull and DULL.", "negative"),
    ("great story, great cast", "positive"),
    ("bad film<br />bad acting", "negative"),
    ("great zebra film", "positive"),
    ("awful unseen words", "negative"),
]


def _write_csv(path, rows, header=("review", "sentiment"), gz=False):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    data = buf.getvalue().encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_load_imdb_csv_split_tokenizer_and_cleaning(tmp_path):
    path = _write_csv(tmp_path / "r.csv.gz", ROWS, gz=True)
    (x_tr, y_tr), (x_te, y_te), tok = imdb.load_imdb_csv(path, train_rows=4)
    np.testing.assert_array_equal(y_tr, [1, 0, 1, 0])
    np.testing.assert_array_equal(y_te, [1, 0])
    assert "br" not in tok.word_index                   # <br /> became a space before tokenising
    assert "zebra" not in tok.word_index               # fitted on the train rows only
    assert tok.word_index["<OOV>"] == 1 and tok.word_index["great"] == 2   # 4 x great, most frequent
    assert x_te[0] == [tok.word_index["great"], 1, tok.word_index["film"]]
    assert tok.sequences_to_texts([x_tr[3]]) == ["bad film bad acting"]
    (p_tr, _), (p_te, _), _ = imdb.load_imdb_csv(path, train_rows=4, maxlen=3, num_words=3)
    assert p_tr.shape == (4, 3) and p_tr.dtype == np.int32
    np.testing.assert_array_equal(p_tr[2], [1, 2, 1])  # "great story great cast": pre-truncated, ids >= 3 -> oov 1
    np.testing.assert_array_equal(p_tr[0], [1, 2, 1])  # "a great film great acting" -> film great acting
    np.testing.assert_array_equal(p_te, [[2, 1, 1], [1, 1, 1]])  # zebra/film/awful... -> oov
    with pytest.raises(ValueError, match="train_rows=6 leaves no train or no test"):
        imdb.load_imdb_csv(path, train_rows=6)


@pytest.mark.parametrize("content, message", [
    ("text,sentiment\nhi,positive\n", r"line 1: missing column\(s\) \['review'\]"),
    ("review,sentiment\ngood,positive\nbad,negative,extra\n", r"line 3: 3 fields, the header has 2"),
    ("review,sentiment\ngood,positive\nmeh,neutral\n", r"line 3: unknown label 'neutral'"),
    ("review,sentiment\ngood,positive\n  ,negative\n", r"line 3: empty review text"),
    ("", r"empty file"),
])
def test_read_imdb_csv_errors_name_the_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.csv.*" + message):
        imdb.read_imdb_csv(path)


def test_read_imdb_csv_encoding(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("review,sentiment\nun film génial,positive\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.csv: not valid utf-8.*encoding="):
        imdb.read_imdb_csv(path)
    texts, labels = imdb.read_imdb_csv(path, encoding="latin-1")
    assert texts == ["un film génial"] and labels.tolist() == [1]


def _make_aclimdb(root, rows_by_split):
    for split, rows in rows_by_split.items():
        for label in ("pos", "neg"):
            os.makedirs(root / split / label, exist_ok=True)
        for rid, (text, sentiment) in rows:
            label = "pos" if sentiment == "positive" else "neg"
            rating = 9 if label == "pos" else 2
            (root / split / label / f"{rid}_{rating}.txt").write_text(text, encoding="utf-8")
    (root / "train" / "urls_pos.txt").write_text("ignored")


def test_folder_gives_the_same_arrays_as_the_csv(tmp_path):
    # ids chosen so that CSV order (by id, neg before pos) differs from file-name order
    train = [(0, ROWS[1]), (0, ROWS[0]), (1, ROWS[3]), (10, ROWS[2])]
    test = [(2, ROWS[5]), (3, ROWS[4])]
    _make_aclimdb(tmp_path / "aclImdb", {"train": train, "test": test})
    csv_rows = [r for _, r in train] + [r for _, r in test]
    path = _write_csv(tmp_path / "same.csv", csv_rows)
    a = imdb.load_imdb_folder(tmp_path / "aclImdb", maxlen=6)
    b = imdb.load_imdb_csv(path, train_rows=4, maxlen=6)
    for (xa, ya), (xb, yb) in zip(a[:2], b[:2]):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert a[2].word_index == b[2].word_index
    with pytest.raises(FileNotFoundError, match="no folder train/neg"):
        imdb.read_imdb_folder(tmp_path, "train")
    (tmp_path / "aclImdb" / "test" / "pos" / "3_9.txt").write_bytes(b"caf\xe9")
    with pytest.raises(ValueError, match=r"3_9\.txt: not valid utf-8 at byte offset 3"):
        imdb.load_imdb_folder(tmp_path / "aclImdb")


RAW_TRAIN = [[1, 14, 22, 16], [5, 2, 700, 9, 9, 3], [1], [8, 40, 4, 3, 2]]
RAW_TEST = [[3, 5], [1, 2, 3, 4, 5, 6, 7], [60]]


def _object_npz(path):
    def ragged(seqs):
        arr = np.empty(len(seqs), dtype=object)
        for i, s in enumerate(seqs):
            arr[i] = list(s)
        return arr
    np.savez(path, x_train=ragged(RAW_TRAIN), y_train=np.array([1, 0, 1, 0]),
             x_test=ragged(RAW_TEST), y_test=np.array([0, 1, 1]))
    return path


@pytest.mark.parametrize("kw", [dict(), dict(num_words=10), dict(maxlen=6), dict(skip_top=3, num_words=50),
                                dict(oov_char=None, num_words=12), dict(start_char=None), dict(index_from=0),
                                dict(seed=7)])
def test_load_imdb_npz_matches_keras_load_data(tmp_path, monkeypatch, kw):
    kimdb = pytest.importorskip("keras.src.datasets.imdb")
    path = _object_npz(tmp_path / "imdb.npz")
    monkeypatch.setattr(kimdb, "get_file", lambda *a, **k: str(path))
    (kx, ky), (kxt, kyt) = kimdb.load_data(**kw)
    for p in (path, tmp_path / "flat.npz"):
        if p.name == "flat.npz":
            imdb.save_imdb_npz(p, RAW_TRAIN, [1, 0, 1, 0], RAW_TEST, [0, 1, 1])
            with np.load(p, allow_pickle=False) as f:
                assert all(f[k].dtype != object for k in f.files)
        (x, y), (xt, yt) = imdb.load_imdb_npz(p, **kw)
        assert [list(s) for s in x] == [list(s) for s in kx]
        assert [list(s) for s in xt] == [list(s) for s in kxt]
        np.testing.assert_array_equal(y, ky)
        np.testing.assert_array_equal(yt, kyt)


def test_load_imdb_npz_refuses_foreign_pickles_and_bad_layouts(tmp_path):
    evil = np.empty(1, dtype=object)
    evil[0] = datetime.date(2020, 1, 1)       # anything beyond arrays/lists/ints must not be unpickled
    np.savez(tmp_path / "evil.npz", x_train=evil, y_train=np.array([1]), x_test=evil, y_test=np.array([1]))
    with pytest.raises(ValueError, match=r"evil\.npz: member 'x_train'.*refusing to load datetime"):
        imdb.load_imdb_npz(tmp_path / "evil.npz")
    np.savez(tmp_path / "off.npz", x_train_values=np.arange(5), x_train_offsets=np.array([0, 2, 4]),
             y_train=np.array([1, 0]), x_test_values=np.arange(1), x_test_offsets=np.array([0, 1]),
             y_test=np.array([1]))
    with pytest.raises(ValueError, match=r"x_train_offsets must .* end at len\(x_train_values\)=5"):
        imdb.load_imdb_npz(tmp_path / "off.npz")
    imdb.save_imdb_npz(tmp_path / "n.npz", RAW_TRAIN, [1, 0, 1], RAW_TEST, [0, 1, 1])
    with pytest.raises(ValueError, match="4 x_train sequences but 3 y_train labels"):
        imdb.load_imdb_npz(tmp_path / "n.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"junk\.npz: not a readable \.npz"):
        imdb.load_imdb_npz(tmp_path / "junk.npz")


def test_shared_csv_and_word_index(shared_data):
    texts, labels = imdb.read_imdb_csv(os.path.join(shared_data, "imdb_reviews.csv.gz"), max_rows=400)
    assert len(texts) == 400 and set(labels.tolist()) == {0, 1}
    assert abs(int(labels.sum()) - 200) <= 2            # README: every prefix is nearly balanced
    assert any("<br />" in t for t in texts) and not any("<br" in imdb.clean_review(t) for t in texts)
    index = imdb.load_word_index(os.path.join(shared_data, "imdb_word_index.json"))
    assert len(index) == 88584 and index["the"] == 1 and index["and"] == 2 and index["a"] == 3
    # Keras convention: rank r -> id r + 3; 1 = start, 2 = oov
    assert imdb.decode_review([1, 4, 2, 6, 0], index) == "the ? a"


class _Server:
    def __init__(self, payload):
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.hits += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/aclImdb_v1.tar.gz"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _tarball(tmp_path, extra=None):
    src = tmp_path / "src"
    _make_aclimdb(src / "aclImdb", {"train": [(0, ROWS[0]), (1, ROWS[1])], "test": [(0, ROWS[4]), (1, ROWS[5])]})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src / "aclImdb", arcname="aclImdb")
        if extra:
            info = tarfile.TarInfo(extra)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    return buf.getvalue()


def test_download_imdb_from_local_server_with_cache(tmp_path):
    payload = _tarball(tmp_path)
    cache = tmp_path / "cache"
    with _Server(payload) as srv:
        seen = []
        folder = imdb.download_imdb(cache, url=srv.url, sha256=hashlib.sha256(payload).hexdigest(),
                                    progress=lambda d, t: seen.append((d, t)))
        assert srv.hits == 1 and seen[-1] == (len(payload), len(payload))
        assert folder == os.path.join(cache, "aclImdb")
        (x, y), (xt, yt), _ = imdb.load_imdb_folder(folder)
        assert y.tolist() == [1, 0] and yt.tolist() == [1, 0]
        assert imdb.download_imdb(cache, url=srv.url) == folder and srv.hits == 1   # cached: no request
        with pytest.raises(ValueError, match="sha256 .* does not match"):
            imdb.download_imdb(tmp_path / "c2", url=srv.url, sha256="0" * 64)
        assert not os.listdir(tmp_path / "c2")                                    # nothing half-written kept
    with _Server(_tarball(tmp_path / "t", extra="../escape.txt")) as srv:
        with pytest.raises(ValueError, match="outside"):
            imdb.download_imdb(tmp_path / "c3", url=srv.url, sha256=None)
    assert not (tmp_path / "escape.txt").exists()
    with pytest.raises(ValueError, match="could not download"):
        imdb.download_imdb(tmp_path / "c4", url=srv.url, sha256=None, timeout=2)      # server is gone
