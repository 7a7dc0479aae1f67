"""Defaults that converge: --epochs defaults to early stopping within a 15-minute --max-minutes, --threads to
the machine's cores, the word LM recipe (tied weights, variational dropout, size rule for dropout, perplexity with
and without <eos>), the seq2seq validation split, --vectors for classify."""
import json

import numpy as np
import pytest

from rnnlab.cli import build_parser, main
from rnnlab.tasks import common

from test_cli_classify import write_data


def _parse(argv):
    return build_parser(argv).parse_args(argv)


def _last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


REQUIRED = {"tag": ["--train", "a", "--valid", "b"], "classify": ["--data", "d"], "charlm": ["--text", "t"],
            "wordlm": ["--train", "a", "--valid", "b"], "seq2seq": ["--generate", "addition"]}


@pytest.mark.parametrize("task,patience", [("tag", 3), ("classify", 2), ("charlm", 2), ("wordlm", 3),
                                           ("seq2seq", 10)])
def test_default_epochs_patience_budget_threads(task, patience):
    args = _parse(["train", task] + REQUIRED[task])
    assert args.epochs is None and args.patience == patience
    assert args.max_minutes == common.DEFAULT_MAX_MINUTES == 15.0
    assert args.threads is None and 1 <= common.threads(args) <= common.default_threads()
    assert common.epochs_to_run(args) == common.UNTIL_PLATEAU_EPOCHS
    args = _parse(["train", task] + REQUIRED[task] + ["--epochs", "3", "--threads", "1", "--max-minutes", "0"])
    assert common.epochs_to_run(args) == 3 and common.threads(args) == 1 and args.max_minutes is None
    args.patience = 0
    with pytest.raises(ValueError, match="--patience must be >= 1, got 0"):
        common.epochs_to_run(args)


def test_default_threads_are_the_free_cores(monkeypatch):
    monkeypatch.setattr(common, "default_threads", lambda: 8)
    monkeypatch.setattr(common.os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    assert common.free_cores() == 8
    monkeypatch.setattr(common.os, "getloadavg", lambda: (2.6, 0.0, 0.0))
    assert common.free_cores() == 5
    monkeypatch.setattr(common.os, "getloadavg", lambda: (11.0, 0.0, 0.0))
    assert common.free_cores() == 1


def test_classify_stops_early_and_keeps_the_best_epoch(tmp_path, capsys):
    data = write_data(tmp_path / "d.csv", n=120)
    assert main(["train", "classify", "--data", data, "--out", str(tmp_path / "o"), "--units", "4",
                 "--embedding-dim", "4", "--batch-size", "16", "--lr", "0.05", "--patience", "1", "--verbose", "0",
                 "--threads", "1"]) == 0
    m = _last_json(capsys)
    assert m["stop_reason"].startswith("early stopping: no better val accuracy for 1 epoch(s)")
    assert m["epochs_run"] == m["best_epoch"] + 1
    hist = json.load(open(tmp_path / "o" / "history.json"))
    assert max(h["val_accuracy"] for h in hist) == pytest.approx(m["valid_accuracy"])


def _vectors(path, words, dim):
    rng = np.random.default_rng(0)
    with open(path, "w", encoding="utf-8") as f:   # GloVe text: no header line
        for w in words:
            f.write(w + " " + " ".join(f"{v:.5f}" for v in rng.normal(size=dim)) + "\n")
    return str(path)


def test_classify_vectors_coverage_and_errors(tmp_path, capsys):
    data = write_data(tmp_path / "d.csv", n=80)
    small = ["--epochs", "1", "--units", "4", "--embedding-dim", "6", "--verbose", "0", "--threads", "1"]
    vec = _vectors(tmp_path / "g.txt", ["good", "bad", "film", "nothere"], 6)
    assert main(["train", "classify", "--data", data, "--out", str(tmp_path / "o"), "--vectors", vec,
                 "--freeze-vectors"] + small) == 0
    m = _last_json(capsys)
    assert m["vectors_found"] == 3 and 0 < m["vectors_coverage"] < 1
    from rnnlab.tasks.runstate import load_sequential_task_file
    from rnnlab.embeddings.io import load_vectors

    model, doc = load_sequential_task_file(str(tmp_path / "o" / "model.npz"), "classify")
    kv = load_vectors(vec)
    emb = model.get_layer("embedding").params["embeddings"]
    rows = [i for i in range(emb.shape[0]) if any(np.allclose(emb[i], kv[w], atol=1e-6) for w in ("good", "bad"))]
    assert len(rows) == 2          # frozen: the file's rows are still there after training
    assert main(["train", "classify", "--data", data, "--out", str(tmp_path / "d"), "--vectors",
                 _vectors(tmp_path / "g5.txt", ["good"], 5)] + small) == 1
    assert "the vectors have dimension 5 but --embedding-dim is 6" in capsys.readouterr().err
    assert main(["train", "classify", "--data", data, "--out", str(tmp_path / "n"), "--vectors",
                 _vectors(tmp_path / "none.txt", ["qqq"], 6)] + small) == 0
    assert "(coverage 0.0%)" in capsys.readouterr().err


def test_wordlm_recipe_defaults():
    from rnnlab.layers.regularization import SpatialDropout1D
    from rnnlab.models.lm import build_wordlm_model
    from rnnlab.tasks.wordlm import _settings, default_dropout

    args = _parse(["train", "wordlm", "--train", "a", "--valid", "b"])
    assert args.tie_weights and args.variational_dropout and args.dropout is None
    s = _settings(args)
    assert default_dropout(2_000_000) == 0.5 and default_dropout(10_000_000) == 0.3 \
        and default_dropout(100_000_000) == 0.1
    s.update(units=6, embedding_dim=5, dropout=0.5)
    m = build_wordlm_model(30, s, 2)
    drops = [layer for layer in m.layers if "dropout" in layer.name]
    assert len(drops) == 3 and all(isinstance(d, SpatialDropout1D) for d in drops)
    x = np.ones((2, 7, 5))
    y = drops[0].forward(x, training=True)
    assert np.array_equal(y[:, 0], y[:, 3])   # the same mask at every step
    s["variational_dropout"] = False
    m = build_wordlm_model(30, s, 2)
    assert not any(isinstance(layer, SpatialDropout1D) for layer in m.layers)
    args = _parse(["train", "wordlm", "--train", "a", "--valid", "b", "--no-tie-weights"])
    assert not args.tie_weights


def test_perplexity_with_and_without_eos(float64):
    from rnnlab.models.lm import build_wordlm_model, log_softmax
    from rnnlab.tasks.wordlm import stream_nll, stream_nll_parts

    s = {"cell": "lstm", "units": 4, "layers": 1, "embedding_dim": 3, "dropout": 0.0, "tie_weights": False}
    model = build_wordlm_model(6, s, 2)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 6, 41)
    ids[::5] = 1                                   # <eos> = 1
    total, words = stream_nll_parts(model, ids, eos_id=1, chunk=7)
    assert total == pytest.approx(stream_nll(model, ids, chunk=7), rel=1e-12)
    # by hand: the two streams of 20 steps, one forward pass each
    x = ids[:40].reshape(2, 20)
    y = ids[1:41].reshape(2, 20)
    model.reset_states()
    lp = log_softmax(model.predict_on_batch(x.astype(np.int32)))
    nll = -np.take_along_axis(lp, y[..., None], axis=2)[..., 0]
    assert total == pytest.approx(nll.mean(), rel=1e-10)
    assert words == pytest.approx(nll[y != 1].mean(), rel=1e-10)
    assert words != pytest.approx(total)


def test_seq2seq_valid_split_and_early_stopping(tmp_path, capsys):
    assert main(["train", "seq2seq", "--generate", "addition", "--num-pairs", "400", "--digits", "2", "--units", "8",
                 "--embedding-dim", "4", "--patience", "1", "--out", str(tmp_path / "o"), "--verbose", "0",
                 "--threads", "1"]) == 0
    m = _last_json(capsys)
    assert m["stop_reason"].startswith("early stopping: no better val exact match")
    assert m["best_epoch"] is not None and m["epochs_run"] >= m["best_epoch"] + 1
    assert m["train_pairs"] + 18 == 360 and 0.0 <= m["valid_exact_match_accuracy"] <= 1.0
