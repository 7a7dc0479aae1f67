"""rnnlab train classify / predict / evaluate on tiny generated data: outputs, resume equality, budget, errors."""
import csv
import json
import os

import numpy as np
import pytest

import rnnlab
from rnnlab.cli import main

POS = "good great wonderful excellent superb lovely".split()
NEG = "bad awful terrible boring dull poor".split()
MID = "okay average fine ordinary plain middling".split()
FILLER = "the a film movie plot actor story was is and it this".split()


def _text(rng, words):
    t = [FILLER[i] for i in rng.integers(0, len(FILLER), rng.integers(3, 12))]
    for w in rng.choice(words, 2):
        t.insert(int(rng.integers(0, len(t) + 1)), str(w))
    return " ".join(t) + "<br /><br />The end."


def write_data(path, n=160, classes=("positive", "negative"), delimiter=",", seed=0, cols=("review", "sentiment")):
    rng = np.random.default_rng(seed)
    words = {"positive": POS, "negative": NEG, "neutral": MID}
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(cols)
        for i in range(n):
            lab = classes[i % len(classes)]
            row = [_text(rng, words[lab]), lab]
            w.writerow(row if cols[0] in ("review", "text") else row[::-1])
    return str(path)


SMALL = ["--epochs", "2", "--units", "8", "--embedding-dim", "8", "--batch-size", "16", "--lr", "0.02",
         "--verbose", "0"]


def _last_json(capsys):
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def test_train_predict_evaluate(tmp_path, capsys):
    data = write_data(tmp_path / "d.csv")
    out = tmp_path / "run"
    assert main(["train", "classify", "--data", data, "--out", str(out), "--dropout", "0.2"] + SMALL) == 0
    metrics = _last_json(capsys)
    assert set(metrics) >= {"test_accuracy", "test_loss", "train_seconds"}
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["test_texts"] == 32
    hist = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2] and "val_accuracy" in hist[0]
    # the task file is also a plain rnnlab model file
    model = rnnlab.load_model(out / "model.npz")
    assert model.layers[0].mask_zero
    assert main(["predict", "--model", str(out / "model.npz"), "a great superb film", "awful boring plot"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        label, prob, text = line.split("\t")
        assert label in ("positive", "negative") and 0.5 <= float(prob) <= 1.0
    assert main(["evaluate", "--model", str(out / "model.npz"), "--data", data]) == 0
    ev = _last_json(capsys)
    assert ev["samples"] == 160 and 0 <= ev["accuracy"] <= 1


def test_learns_three_classes_from_tsv(tmp_path, capsys):
    data = write_data(tmp_path / "d.tsv", n=300, classes=("positive", "negative", "neutral"), delimiter="\t",
                      cols=("label", "text"))
    out = tmp_path / "run"
    args = ["train", "classify", "--data", data, "--out", str(out), "--epochs", "8", "--units", "16",
            "--embedding-dim", "16", "--lr", "0.02", "--verbose", "0", "--valid-fraction", "0"]
    assert main(args) == 0
    m = _last_json(capsys)
    assert m["classes"] == 3
    assert m["test_accuracy"] >= 0.9          # the class words are unambiguous cues
    model = rnnlab.load_model(out / "model.npz")
    assert model.layers[-1].units == 3


def test_train_rows_split_and_separate_test_file(tmp_path, capsys):
    data = write_data(tmp_path / "d.csv", n=100)
    assert main(["train", "classify", "--data", data, "--train-rows", "70", "--out", str(tmp_path / "a")] + SMALL) == 0
    assert _last_json(capsys)["test_texts"] == 30
    test = write_data(tmp_path / "t.csv", n=40, seed=5)
    assert main(["train", "classify", "--data", data, "--test", test, "--out", str(tmp_path / "b")] + SMALL) == 0
    assert _last_json(capsys)["test_texts"] == 40


def _weights(path):
    with np.load(path, allow_pickle=False) as d:
        return {k: d[k] for k in d.files if k.startswith(("w:", "opt:"))}


@pytest.mark.parametrize("extra", [[], ["--bidirectional", "--cell", "lstm", "--pool", "avg"]])
def test_resume_equals_uninterrupted(tmp_path, capsys, extra):
    data = write_data(tmp_path / "d.csv")
    base = ["train", "classify", "--data", data, "--dropout", "0.3", "--rnn-dropout", "0.2", "--seed", "3"] + SMALL + extra
    assert main(base + ["--out", str(tmp_path / "full")]) == 0
    part = base + ["--out", str(tmp_path / "part")]
    part[part.index("--epochs") + 1] = "1"
    assert main(part) == 0
    assert main(base + ["--out", str(tmp_path / "part"), "--resume"]) == 0
    capsys.readouterr()
    a, b = _weights(tmp_path / "full" / "checkpoint.npz"), _weights(tmp_path / "part" / "checkpoint.npz")
    assert set(a) == set(b) and any(k.startswith("opt:") for k in a)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ha = json.loads((tmp_path / "full" / "history.json").read_text())
    hb = json.loads((tmp_path / "part" / "history.json").read_text())
    assert [h["loss"] for h in ha] == [h["loss"] for h in hb]
    # and a run that only resumed 1 epoch differs from one more epoch (the check can fail)
    assert main(base + ["--out", str(tmp_path / "part"), "--resume", "--epochs", "3"]) == 0
    c = _weights(tmp_path / "part" / "checkpoint.npz")
    assert not np.array_equal(c["w:embedding/embeddings"], a["w:embedding/embeddings"])


def test_time_budget_stops_cleanly_and_keeps_a_model(tmp_path, capsys):
    data = write_data(tmp_path / "d.csv")
    out = tmp_path / "run"
    assert main(["train", "classify", "--data", data, "--out", str(out), "--max-minutes", "1e-9"] + SMALL) == 0
    m = _last_json(capsys)
    assert "time budget" in m["stop_reason"]
    assert (out / "model.npz").exists()
    assert not (out / "checkpoint.npz").exists()      # no epoch completed


def test_interrupted_save_keeps_the_previous_model(tmp_path, capsys, monkeypatch):
    data = write_data(tmp_path / "d.csv")
    out = tmp_path / "run"
    assert main(["train", "classify", "--data", data, "--out", str(out)] + SMALL) == 0
    capsys.readouterr()
    before = (out / "model.npz").read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", boom)
    assert main(["train", "classify", "--data", data, "--out", str(out), "--seed", "9"] + SMALL) == 130
    assert (out / "model.npz").read_bytes() == before
    assert not [p for p in os.listdir(out) if p.startswith(".tmp")]


def test_cpu_budget_stops_cleanly(tmp_path, capsys):
    data = write_data(tmp_path / "d.csv")
    out = tmp_path / "run"
    assert main(["train", "classify", "--data", data, "--out", str(out), "--max-cpu-minutes", "1e-9"] + SMALL) == 0
    m = _last_json(capsys)
    assert "CPU minutes" in m["stop_reason"] and (out / "model.npz").exists()
    assert main(["train", "classify", "--data", data, "--out", str(out), "--max-cpu-minutes", "0"] + SMALL) == 1
    assert "--max-cpu-minutes must be > 0" in capsys.readouterr().err


def test_resume_errors(tmp_path, capsys):
    data = write_data(tmp_path / "d.csv")
    out = str(tmp_path / "run")
    assert main(["train", "classify", "--data", data, "--out", out, "--resume"] + SMALL) == 1
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["train", "classify", "--data", data, "--out", out] + SMALL) == 0
    other = list(SMALL)
    other[other.index("--units") + 1] = "9"
    assert main(["train", "classify", "--data", data, "--out", out, "--resume"] + other) == 1
    assert "other settings" in capsys.readouterr().err


@pytest.mark.parametrize("content,needle", [
    ("review,sentiment\n", "no data rows"),
    ("text,stars\nnice,1\n", "cannot find the label column"),
    ("review,sentiment\nnice film,positive\nbad,negative,extra\n", "line 3: 3 fields"),
    ("review,sentiment\n   ,positive\n", "line 2: empty text"),
    ("review,sentiment\nnice,\n", "line 2: empty label"),
])
def test_bad_files(tmp_path, capsys, content, needle):
    p = tmp_path / "bad.csv"
    p.write_text(content, encoding="utf-8")
    assert main(["train", "classify", "--data", str(p), "--out", str(tmp_path / "o")] + SMALL) == 1
    assert needle in capsys.readouterr().err


def test_bad_columns_encoding_and_labels(tmp_path, capsys):
    data = write_data(tmp_path / "d.csv")
    assert main(["train", "classify", "--data", data, "--text-column", "body", "--out", str(tmp_path / "o")] + SMALL) == 1
    assert "no column 'body'" in capsys.readouterr().err
    latin = tmp_path / "latin.csv"
    latin.write_bytes("review,sentiment\ncaf\xe9 good,positive\nbad,negative\n".encode("latin-1"))
    assert main(["train", "classify", "--data", str(latin), "--out", str(tmp_path / "o")] + SMALL) == 1
    err = capsys.readouterr().err
    assert "utf-8" in err and "line 2" in err and "--encoding" in err
    test = tmp_path / "t.csv"
    test.write_text("review,sentiment\nfine film,positive\nodd film,mixed\n", encoding="utf-8")
    assert main(["train", "classify", "--data", data, "--test", str(test), "--out", str(tmp_path / "o")] + SMALL) == 1
    assert "line 3: unknown label 'mixed'" in capsys.readouterr().err
    one = tmp_path / "one.csv"
    one.write_text("review,sentiment\na,positive\nb,positive\nc,positive\nd,positive\ne,positive\n", encoding="utf-8")
    assert main(["train", "classify", "--data", str(one), "--out", str(tmp_path / "o")] + SMALL) == 1
    assert "need 2 or more classes" in capsys.readouterr().err
    assert main(["train", "classify", "--data", data, "--dropout", "1.5", "--out", str(tmp_path / "o")] + SMALL) == 1
    assert "--dropout must be in [0, 1)" in capsys.readouterr().err


def test_predict_refuses_other_files(tmp_path, capsys):
    assert main(["predict", "--model", str(tmp_path / "missing.npz"), "hi"]) == 1
    assert "No such model file" in capsys.readouterr().err
    m = rnnlab.Sequential([rnnlab.layers.Dense(1, input_shape=(3,))])
    m.save(tmp_path / "plain.npz")
    assert main(["predict", "--model", str(tmp_path / "plain.npz"), "hi"]) == 1
    assert "not a model written by an 'rnnlab train' command" in capsys.readouterr().err
    text = tmp_path / "t.txt"
    text.write_text("abcab " * 200, encoding="utf-8")
    assert main(["train", "charlm", "--text", str(text), "--epochs", "1", "--units", "4", "--batch-size", "4",
                 "--bptt", "10", "--verbose", "0", "--out", str(tmp_path / "c")]) == 0
    capsys.readouterr()
    assert main(["predict", "--model", str(tmp_path / "c" / "model.npz"), "hi"]) == 1
    assert "is a 'charlm' model" in capsys.readouterr().err


def test_predict_empty_text_and_evaluate_skip_rows(tmp_path, capsys):
    data = write_data(tmp_path / "d.csv", n=60)
    out = tmp_path / "run"
    assert main(["train", "classify", "--data", data, "--out", str(out)] + SMALL) == 0
    capsys.readouterr()
    assert main(["predict", "--model", str(out / "model.npz"), "  "]) == 1
    assert "text #1 is empty" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(out / "model.npz"), "--data", data, "--skip-rows", "50"]) == 0
    assert _last_json(capsys)["samples"] == 10
    assert main(["evaluate", "--model", str(out / "model.npz"), "--data", data, "--skip-rows", "60"]) == 1
    assert "--skip-rows" in capsys.readouterr().err


def test_bucketing_and_padding_helpers():
    from rnnlab.tasks.classify import bucket_batches, pad_batch

    lengths = np.array([5, 1, 3, 8, 2, 7, 4])
    batches = bucket_batches(lengths, 3, np.random.default_rng(0), chunk_batches=1)
    assert sorted(np.concatenate(batches).tolist()) == list(range(7))
    for b in batches:                       # each chunk of one batch is sorted by length
        assert list(lengths[b]) == sorted(lengths[b])
    seqs = [np.arange(1, n + 1) for n in lengths]
    x = pad_batch(seqs, [1, 3])
    assert x.shape == (2, 8) and x[0].tolist() == [0] * 7 + [1] and x[1].tolist() == list(range(1, 9))


@pytest.mark.slow
def test_imdb_csv_reads_with_official_split(shared_data):
    from rnnlab.tasks.classify import read_labelled_file

    texts, labels, lines, cols = read_labelled_file(os.path.join(shared_data, "imdb_reviews.csv.gz"))
    assert len(texts) == 50000 and cols == ("review", "sentiment")
    assert labels[:25000].count("positive") == 12500


def test_directory_as_data_or_model_is_a_one_line_error(tmp_path, capsys):
    folder = tmp_path / "folder"
    folder.mkdir()
    assert main(["train", "classify", "--data", str(folder), "--out", str(tmp_path / "o")] + SMALL) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"rnnlab: error: {folder}: is a directory, expected a file"
    assert main(["predict", "--model", str(folder), "hi"]) == 1
    err = capsys.readouterr().err
    assert f"{folder} is a directory, not an rnnlab model file" in err and "Errno" not in err
    data = write_data(tmp_path / "d.csv", n=20)
    assert main(["evaluate", "--model", str(folder), "--data", data]) == 1
    assert "is a directory" in capsys.readouterr().err


def test_garbage_model_file_is_not_an_rnnlab_model(tmp_path, capsys):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"hello not a zip")
    data = write_data(tmp_path / "d.csv", n=20)
    for argv in (["predict", "--model", str(garbage), "hi"], ["evaluate", "--model", str(garbage), "--data", data]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert f"{garbage} is not an rnnlab model file" in err
        assert "pickle" not in err and "allow_pickle" not in err
    (tmp_path / "empty.npz").write_bytes(b"")
    assert main(["predict", "--model", str(tmp_path / "empty.npz"), "hi"]) == 1
    assert "is not an rnnlab model file (an empty file)" in capsys.readouterr().err


def test_unterminated_quote_names_the_line_where_it_starts(tmp_path, capsys):
    p = tmp_path / "quote.csv"
    p.write_text('review,sentiment\nnice film,positive\n"bad film,negative\ngood,positive\n', encoding="utf-8")
    assert main(["train", "classify", "--data", str(p), "--out", str(tmp_path / "o")] + SMALL) == 1
    err = capsys.readouterr().err
    assert "quote.csv, line 3: a quoted field starting on this line is never closed" in err
    assert "runs on to line 4" in err


def test_unknown_encoding_is_a_clear_error(tmp_path, capsys):
    data = write_data(tmp_path / "d.csv", n=20)
    assert main(["train", "classify", "--data", data, "--encoding", "nope-42", "--out", str(tmp_path / "o")]
                + SMALL) == 1
    assert "unknown encoding 'nope-42'" in capsys.readouterr().err


def test_resume_after_a_mid_epoch_budget_stop_equals_uninterrupted(tmp_path, capsys, monkeypatch):
    """A budget that runs out inside epoch 2 (the clock is patched: deterministic), then --resume: the run ends
    with exactly the weights and optimizer state of an uninterrupted run."""
    from rnnlab.tasks import runstate

    data = write_data(tmp_path / "d.csv", n=120)
    base = ["train", "classify", "--data", data, "--dropout", "0.3", "--rnn-dropout", "0.2", "--seed", "3"] + SMALL
    base[base.index("--epochs") + 1] = "3"
    assert main(base + ["--out", str(tmp_path / "full")]) == 0
    # 120 rows -> 86 training texts -> 6 batches of 16 per epoch; expired() is also asked once before each
    # epoch, so the 7 + 4 = 11th call is inside epoch 2, after 3 of its batches
    calls = {"n": 0}

    def expired(self):
        calls["n"] += 1
        return calls["n"] > 11

    monkeypatch.setattr(runstate.BudgetTimer, "expired", expired)
    part = base + ["--out", str(tmp_path / "part"), "--max-minutes", "100"]
    assert main(part) == 0
    m = _last_json(capsys)
    assert m["stop_reason"] == "time budget (100 wall minutes) reached during epoch 2"
    hist = json.loads((tmp_path / "part" / "history.json").read_text())
    assert [(h["epoch"], bool(h.get("partial"))) for h in hist] == [(1, False), (2, True)]
    monkeypatch.undo()
    assert main(part + ["--resume"]) == 0
    capsys.readouterr()
    for name in ("checkpoint.npz", "model.npz"):
        a, b = _weights(tmp_path / "full" / name), _weights(tmp_path / "part" / name)
        assert set(a) == set(b) and any(k.startswith("w:") for k in a), name
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name}: {k}")
    hb = json.loads((tmp_path / "part" / "history.json").read_text())
    ha = json.loads((tmp_path / "full" / "history.json").read_text())
    assert [h["loss"] for h in hb if not h.get("partial")] == [h["loss"] for h in ha]


# ------------------------------------------------- the ensembles: NBSVM (the default) and fastText (issue 20)
def test_ensemble_with_fasttext_is_written_and_used_by_evaluate(tmp_path, capsys):
    from rnnlab.tasks.classify import ENSEMBLE_FT_EPOCHS, ENSEMBLE_WEIGHTS, load_classifier, load_ensemble_part

    data = write_data(tmp_path / "d.csv", n=200)
    out = tmp_path / "run"
    assert main(["train", "classify", "--data", data, "--train-rows", "150", "--out", str(out),
                 "--ensemble", "fasttext"] + SMALL) == 0
    m = _last_json(capsys)
    assert m["ensemble_rnn_weight"] in ENSEMBLE_WEIGHTS
    assert 0 <= m["fasttext_test_accuracy"] <= 1 and 0 <= m["rnn_test_accuracy"] <= 1
    assert (out / "model_fasttext.npz").exists()
    model, doc, tok = load_classifier(out / "model.npz")
    assert doc["ensemble"] == {"kind": "fasttext", "fasttext_file": "model_fasttext.npz",
                               "rnn_weight": m["ensemble_rnn_weight"]}
    ft, w = load_ensemble_part(out / "model.npz", doc)
    assert w == m["ensemble_rnn_weight"] and ft.epochs == ENSEMBLE_FT_EPOCHS == 20
    assert ft.bucket <= 4 * 150 * 20      # ensemble_bucket: at most 4 x the training tokens, not 2,000,000
    # evaluate on the test rows gives the metrics line's (combined) test accuracy
    assert main(["evaluate", "--model", str(out / "model.npz"), "--data", data, "--skip-rows", "150"]) == 0
    assert _last_json(capsys)["accuracy"] == pytest.approx(m["test_accuracy"])
    # the model file without its fastText part is a clear error
    (out / "model_fasttext.npz").rename(tmp_path / "elsewhere.npz")
    assert main(["predict", "--model", str(out / "model.npz"), "a great film"]) == 1
    err = capsys.readouterr().err
    assert "model_fasttext.npz, which is missing from the same folder" in err and "copy both files together" in err


def test_default_ensemble_with_nbsvm_is_written_and_used_by_predict_and_evaluate(tmp_path, capsys):
    from rnnlab.models.nbsvm import NBSVMClassifier
    from rnnlab.tasks.classify import (ENSEMBLE_NBSVM_STEPS, ENSEMBLE_WEIGHTS, classify_proba, fasttext_tokens,
                                       load_classifier, load_ensemble_part)

    data = write_data(tmp_path / "d.csv", n=200)
    out = tmp_path / "run"
    assert main(["train", "classify", "--data", data, "--train-rows", "150", "--out", str(out)] + SMALL) == 0
    m = _last_json(capsys)
    assert m["ensemble"] == "nbsvm" and m["ensemble_rnn_weight"] in ENSEMBLE_WEIGHTS
    assert 0 <= m["nbsvm_test_accuracy"] <= 1 and 0 <= m["nbsvm_valid_accuracy"] <= 1
    assert m["nbsvm_best_step"] % 10 == 0 and 0 < m["nbsvm_best_step"] <= ENSEMBLE_NBSVM_STEPS
    assert (out / "model_nbsvm.npz").exists() and not (out / "model_fasttext.npz").exists()
    model, doc, tok = load_classifier(out / "model.npz")
    assert doc["ensemble"] == {"kind": "nbsvm", "file": "model_nbsvm.npz", "rnn_weight": m["ensemble_rnn_weight"]}
    nb, w = load_ensemble_part(out / "model.npz", doc)
    assert isinstance(nb, NBSVMClassifier) and w == m["ensemble_rnn_weight"] and nb.best_step == m["nbsvm_best_step"]
    # the mix is w * recurrent + (1 - w) * NBSVM, on the cleaned texts' tokens
    texts = ["a great and superb film", "dull, awful<br />plot"]
    alone = classify_proba(out / "model.npz", model, {k: v for k, v in doc.items() if k != "ensemble"}, tok, texts)
    cleaned = [t.replace("<br />", " ") for t in texts]
    p_nb = nb.predict_proba(fasttext_tokens(cleaned))[:, [nb.classes.index(c) for c in doc["classes"]]]
    np.testing.assert_allclose(classify_proba(out / "model.npz", model, doc, tok, texts), w * alone + (1 - w) * p_nb)
    assert main(["evaluate", "--model", str(out / "model.npz"), "--data", data, "--skip-rows", "150"]) == 0
    assert _last_json(capsys)["accuracy"] == pytest.approx(m["test_accuracy"])
    assert main(["predict", "--model", str(out / "model.npz"), "a great film"]) == 0
    assert capsys.readouterr().out.startswith("positive\t")
    (out / "model_nbsvm.npz").rename(tmp_path / "elsewhere.npz")
    assert main(["predict", "--model", str(out / "model.npz"), "a great film"]) == 1
    err = capsys.readouterr().err
    assert "NBSVM model model_nbsvm.npz, which is missing from the same folder" in err


def test_nbsvm_part_without_validation_rows_runs_all_steps_and_mixes_half(tmp_path, capsys):
    from rnnlab.tasks.classify import ENSEMBLE_NBSVM_STEPS

    data = write_data(tmp_path / "d.csv", n=120)
    out = tmp_path / "run"
    assert main(["train", "classify", "--data", data, "--out", str(out), "--valid-fraction", "0"] + SMALL) == 0
    m = _last_json(capsys)
    assert m["ensemble_rnn_weight"] == 0.5 and m["ensemble_valid_accuracy"] is None
    assert m["nbsvm_valid_accuracy"] is None and m["nbsvm_best_step"] == ENSEMBLE_NBSVM_STEPS


def test_corrupt_ensemble_entry_is_a_clear_error(tmp_path):
    from rnnlab.tasks.classify import load_ensemble_part

    with pytest.raises(ValueError, match="corrupt 'ensemble' entry .* \\(expected kind 'fasttext' with fasttext_file"):
        load_ensemble_part(tmp_path / "model.npz", {"ensemble": {"kind": "svm", "file": "x.npz", "rnn_weight": 1}})
    with pytest.raises(ValueError, match="corrupt 'ensemble' entry"):
        load_ensemble_part(tmp_path / "model.npz", {"ensemble": {"kind": "nbsvm", "fasttext_file": "x.npz",
                                                                 "rnn_weight": 0.5}})
    with pytest.raises(ValueError, match="rnn_weight must be in \\[0, 1\\], got 2"):
        load_ensemble_part(tmp_path / "model.npz", {"ensemble": {"kind": "nbsvm", "file": "x.npz", "rnn_weight": 2}})


def test_ensemble_none_is_the_recurrent_model_alone(tmp_path, capsys):
    data = write_data(tmp_path / "d.csv", n=120)
    out = tmp_path / "run"
    assert main(["train", "classify", "--data", data, "--out", str(out), "--ensemble", "none"] + SMALL) == 0
    m = _last_json(capsys)
    assert m["test_accuracy"] == m["rnn_test_accuracy"] and "ensemble_rnn_weight" not in m
    assert not (out / "model_fasttext.npz").exists() and not (out / "model_nbsvm.npz").exists()
    from rnnlab.tasks.classify import load_classifier
    assert "ensemble" not in load_classifier(out / "model.npz")[1]


def test_pick_ensemble_weight():
    from rnnlab.tasks.classify import pick_ensemble_weight

    y = np.array([0, 1, 1, 0])
    good = np.eye(2)[y] * 0.8 + 0.1
    bad = np.eye(2)[1 - y] * 0.8 + 0.1
    assert pick_ensemble_weight(good, bad, y)[0] == 1.0      # the recurrent model alone is right
    assert pick_ensemble_weight(bad, good, y)[0] == 0.0      # fastText alone is right
    # both right with the same accuracy for every w >= 0.5: the lower cross-entropy wins (the sharper mix)
    sharp = np.eye(2)[y] * 0.98 + 0.01
    w, sc = pick_ensemble_weight(sharp, good, y)
    assert w == 1.0 and sc["accuracy"] == 1.0
    # one text each: the mix is right on both only in the middle
    y2 = np.array([0, 1])
    a = np.array([[0.9, 0.1], [0.6, 0.4]])       # right, wrong (weakly)
    b = np.array([[0.4, 0.6], [0.1, 0.9]])       # wrong (weakly), right
    w, sc = pick_ensemble_weight(a, b, y2)
    assert sc["accuracy"] == 1.0 and 0.2 < w < 0.8


def test_fasttext_part_tokens_match_word2vec_and_model_fasttext():
    from rnnlab.tasks.classify import fasttext_tokens
    from rnnlab.tasks.word2vec import tokenize

    texts = ["It's GREAT<br />the 2nd film... don't 'quote' me", "Ünïcode café 42x y'all ok'", ""]
    assert fasttext_tokens(texts) == [tokenize(t) for t in texts]
