"""rnnlab train charlm / generate on tiny generated text: both modes, held-out loss, sampling, resume, errors."""
import json
import math

import numpy as np
import pytest

from rnnlab.cli import main
from rnnlab.tasks import charlm

PERIODIC = "hello world. " * 120


def _last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _text(tmp_path, text=PERIODIC, name="t.txt"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


STREAM = ["--units", "24", "--embedding-dim", "8", "--batch-size", "4", "--bptt", "20", "--lr", "0.02",
          "--verbose", "0"]


def test_stream_mode_learns_a_periodic_text_and_generates_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "charlm", "--text", _text(tmp_path), "--epochs", "6", "--out", str(out)] + STREAM) == 0
    m = _last_json(capsys)
    assert set(m) >= {"valid_loss_nats_per_char", "valid_bits_per_char", "train_seconds"}
    assert m["valid_bits_per_char"] == pytest.approx(m["valid_loss_nats_per_char"] / math.log(2))
    assert m["valid_loss_nats_per_char"] < 0.3          # uniform over 8 characters would be ln 8 = 2.08
    assert json.loads((out / "metrics.json").read_text()) == m
    assert main(["generate", "--model", str(out / "model.npz"), "--seed", "hello w", "--length", "20",
                 "--temperature", "0"]) == 0
    assert capsys.readouterr().out.rstrip("\n") == "hello world. hello world. h"


def test_generate_is_reproducible_and_top_k(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "charlm", "--text", _text(tmp_path), "--epochs", "1", "--out", str(out)] + STREAM) == 0
    capsys.readouterr()
    runs = []
    for _ in range(2):
        assert main(["generate", "--model", str(out / "model.npz"), "--seed", "he", "--length", "30",
                     "--temperature", "1.5", "--top-k", "3", "--sample-seed", "7"]) == 0
        runs.append(capsys.readouterr().out)
    assert runs[0] == runs[1] and len(runs[0].rstrip("\n")) == 32


def test_window_preset(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "charlm", "--text", _text(tmp_path), "--preset", "keras-nietzsche", "--units", "16",
                 "--maxlen", "10", "--epochs", "1", "--verbose", "0", "--out", str(out)]) == 0
    m = _last_json(capsys)
    assert m["mode"] == "window" and m["valid_loss_nats_per_char"] > 0
    from rnnlab.tasks.runstate import read_task_file

    doc, _ = read_task_file(out / "model.npz", "charlm")
    s = doc["settings"]
    assert (s["optimizer"], s["lr"], s["step"], s["batch_size"], s["maxlen"], s["units"]) == \
        ("rmsprop", 0.01, 3, 128, 10, 16)
    assert main(["generate", "--model", str(out / "model.npz"), "--seed", "hello", "--length", "12"]) == 0
    assert len(capsys.readouterr().out.rstrip("\n")) == 17


def test_stream_nll_independent_of_chunking_and_equals_a_full_forward(tmp_path):
    import rnnlab

    rnnlab.set_random_seed(0)
    s = {"cell": "gru", "units": 6, "layers": 2, "embedding_dim": 4, "dropout": 0.0}
    model = charlm.build_stream_model(9, s, 2)
    ids = np.random.default_rng(0).integers(0, 9, 41)
    a = charlm.stream_nll(model, ids, chunk=3)
    b = charlm.stream_nll(model, ids, chunk=1000)
    assert a == pytest.approx(b, rel=1e-6)
    x, y = charlm.stream_batches(ids, 2)
    model.reset_states()
    lp = charlm.log_softmax(model.predict_on_batch(x))
    manual = -np.mean(np.take_along_axis(lp, y[..., None], axis=2))
    assert a == pytest.approx(manual, rel=1e-6)


def test_window_nll_by_hand():
    import rnnlab

    rnnlab.set_random_seed(0)
    s = {"cell": "lstm", "units": 5, "layers": 1, "maxlen": 4, "dropout": 0.0}
    model = charlm.build_window_model(6, s)
    ids = np.random.default_rng(1).integers(0, 6, 15)
    want = 0.0
    for i in range(len(ids) - 4):
        p = model.predict_on_batch(charlm.one_hot_windows(ids, [i], 4, 6))[0]
        want -= math.log(p[ids[i + 4]])
    assert charlm.window_nll(model, ids, 4, 6, batch=3) == pytest.approx(want / (len(ids) - 4), rel=1e-5)


def test_sampling():
    rng = np.random.default_rng(0)
    z = np.array([1.0, 2.0, 0.5, -1.0])
    assert charlm.sample_next(z, 0, None, rng) == 1
    assert all(charlm.sample_next(z, 5.0, 1, rng) == 1 for _ in range(20))
    draws = np.array([charlm.sample_next(z, 0.7, None, rng) for _ in range(20000)])
    p = np.exp(z / 0.7) / np.exp(z / 0.7).sum()
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / 20000, p, atol=0.015)
    top2 = {charlm.sample_next(z, 1.0, 2, rng) for _ in range(200)}
    assert top2 == {0, 1}


def test_resume_equals_uninterrupted(tmp_path, capsys):
    text = _text(tmp_path, "the quick brown fox jumps over the lazy dog. " * 30)
    base = ["train", "charlm", "--text", text, "--dropout", "0.3", "--seed", "5", "--layers", "2"] + STREAM
    assert main(base + ["--epochs", "3", "--out", str(tmp_path / "a")]) == 0
    assert main(base + ["--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    assert main(base + ["--epochs", "3", "--out", str(tmp_path / "b"), "--resume"]) == 0
    capsys.readouterr()
    with np.load(tmp_path / "a" / "checkpoint.npz") as a, np.load(tmp_path / "b" / "checkpoint.npz") as b:
        keys = [k for k in a.files if k.startswith(("w:", "opt:"))]
        assert keys == [k for k in b.files if k.startswith(("w:", "opt:"))] and len(keys) > 10
        for k in keys:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_errors(tmp_path, capsys):
    t = _text(tmp_path)
    assert main(["train", "charlm", "--text", t, "--bidirectional", "--out", str(tmp_path / "o")] + STREAM) == 1
    assert "--bidirectional does not apply" in capsys.readouterr().err
    assert main(["train", "charlm", "--text", _text(tmp_path, "abcdefgh", "s.txt"), "--out", str(tmp_path / "o"),
                 "--batch-size", "64", "--verbose", "0"]) == 1
    assert "too short for --batch-size 64" in capsys.readouterr().err
    bad = tmp_path / "latin.txt"
    bad.write_bytes("caf\xe9 ".encode("latin-1") * 50)
    assert main(["train", "charlm", "--text", str(bad), "--out", str(tmp_path / "o")] + STREAM) == 1
    err = capsys.readouterr().err
    assert "byte offset 3" in err and "utf-8" in err
    assert main(["train", "charlm", "--text", t, "--units", "0", "--out", str(tmp_path / "o")] + STREAM[2:]) == 1
    assert "--units must be a positive integer" in capsys.readouterr().err
    assert main(["train", "charlm", "--text", t, "--valid-fraction", "0", "--out", str(tmp_path / "o")] + STREAM) == 1
    assert "--valid-fraction" in capsys.readouterr().err
    out = tmp_path / "run"
    assert main(["train", "charlm", "--text", t, "--epochs", "1", "--out", str(out)] + STREAM) == 0
    capsys.readouterr()
    assert main(["generate", "--model", str(out / "model.npz"), "--temperature", "-1"]) == 1
    assert "--temperature" in capsys.readouterr().err
    assert main(["generate", "--model", str(out / "model.npz"), "--top-k", "0"]) == 1
    assert "--top-k" in capsys.readouterr().err
    assert main(["generate", "--model", str(out / "model.npz"), "--seed", "hé", "--length", "3"]) == 0
    assert "not in the model's vocabulary" in capsys.readouterr().err


def test_generate_refuses_a_classifier(tmp_path, capsys):
    from test_cli_classify import SMALL, write_data

    data = write_data(tmp_path / "d.csv", n=40)
    assert main(["train", "classify", "--data", data, "--out", str(tmp_path / "c")] + SMALL) == 0
    capsys.readouterr()
    assert main(["generate", "--model", str(tmp_path / "c" / "model.npz")]) == 1
    assert "is a 'classify' model" in capsys.readouterr().err


@pytest.mark.slow
def test_nietzsche_vocabulary(shared_data):
    import os

    from rnnlab.datasets.text_corpus import load_char_corpus

    tr, va, tok = load_char_corpus(os.path.join(shared_data, "nietzsche.txt"), 0.1, lower=True)
    assert tok.vocab_size in (57, 58) and len(tr) + len(va) == 600893


def test_non_utf8_and_directory_errors_point_to_the_flags(tmp_path, capsys):
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"hello world. " * 20 + "caf\xe9 ".encode("latin-1") + b"hello world. " * 20)
    o = str(tmp_path / "o")
    assert main(["train", "charlm", "--text", str(latin), "--epochs", "1", "--out", o] + STREAM) == 1
    err = capsys.readouterr().err
    assert "latin.txt: cannot decode byte(s) b'\\xe9' at byte offset 263 (line 1, column 264) as utf-8" in err
    assert "pass --encoding" in err and "pass encoding=" not in err
    assert main(["train", "charlm", "--text", str(latin), "--epochs", "1", "--encoding", "latin-1", "--out", o]
                + STREAM) == 0
    capsys.readouterr()
    assert main(["train", "charlm", "--text", str(tmp_path), "--epochs", "1", "--out", o] + STREAM) == 1
    assert capsys.readouterr().err.strip() == f"rnnlab: error: {tmp_path}: is a directory, expected a file"
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"hello not a zip")
    assert main(["generate", "--model", str(garbage)]) == 1
    err = capsys.readouterr().err
    assert f"{garbage} is not an rnnlab model file" in err and "pickle" not in err


# ------------------------------------------------------------------ the default model's size rule (issue 20)
def test_size_rule_follows_the_data_and_the_budget():
    from rnnlab.models.lm import charlm_default_size, charlm_params

    # Nietzsche (541k training characters, ~80 distinct): the 15-minute budget on one thread limits the size
    # (sqrt(15 * 60 * 8e10 / 120) = 774,597 < 2 x 540,806), no budget: the data does (1,081,612)
    assert charlm_default_size(540806, 80, 15) == (1, 384, 774596)
    assert charlm_default_size(540806, 80, None) == (1, 512, 1081612)
    assert charlm_default_size(540806, 80, 0) == charlm_default_size(540806, 80, -1) == (1, 512, 1081612)
    # a tiny text: the data limit (2 parameters a character), the narrowest width
    assert charlm_default_size(1000, 30, 15) == (1, 64, 2000)
    # more data and more budget (or threads): deeper and wider
    sizes = [charlm_default_size(n, 100, minutes, threads) for n, minutes, threads in
             [(540806, 15, 1), (10_000_000, 240, 1), (10_000_000, 600, 1), (100_000_000, 600, 16)]]
    assert [s[0] for s in sizes] == [1, 2, 2, 3]
    assert [s[2] for s in sizes] == sorted(s[2] for s in sizes)
    # the width is the multiple of 64 whose parameter count is nearest the target
    for layers, units, target in sizes:
        here = abs(charlm_params(units, layers, 100) - target)
        assert units % 64 == 0
        assert here <= abs(charlm_params(units + 64, layers, 100) - target)
        assert units == 64 or here <= abs(charlm_params(units - 64, layers, 100) - target)
    # given layers are kept, and the width is solved for them
    assert charlm_default_size(540806, 80, None, layers=2)[:2] == (2, 320)
    # by hand: Embedding 80 x 32, LSTM 4 (32 U + U U + 2 U), Dense (U + 1) 80
    assert charlm_params(384, 1, 80) == 80 * 32 + 4 * (32 * 384 + 384 * 384 + 2 * 384) + 385 * 80
    with pytest.raises(ValueError, match="train_chars must be >= 1, got 0"):
        charlm_default_size(0, 80, 15)


def test_cli_uses_the_size_rule_unless_the_flags_set_the_size(tmp_path, capsys):
    from rnnlab.tasks.runstate import read_task_file

    common = ["--epochs", "1", "--embedding-dim", "8", "--batch-size", "4", "--bptt", "20", "--verbose", "1"]
    assert main(["train", "charlm", "--text", _text(tmp_path), "--out", str(tmp_path / "a")] + common) == 0
    out = capsys.readouterr().out
    doc, _ = read_task_file(str(tmp_path / "a" / "model.npz"), "charlm", arrays=False)
    # 1,404 training characters -> the data limit 2,808 parameters -> one layer of the narrowest width
    assert (doc["settings"]["layers"], doc["settings"]["units"]) == (1, 64)
    assert "1 x LSTM(64) by the size rule: target 2,808 parameters" in out
    assert main(["train", "charlm", "--text", _text(tmp_path), "--out", str(tmp_path / "b"), "--units", "12",
                 "--layers", "2"] + common) == 0
    assert "by the size rule" not in capsys.readouterr().out
    doc, _ = read_task_file(str(tmp_path / "b" / "model.npz"), "charlm", arrays=False)
    assert (doc["settings"]["layers"], doc["settings"]["units"]) == (2, 12)
