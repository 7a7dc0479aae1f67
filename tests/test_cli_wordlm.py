"""rnnlab train wordlm on a tiny generated corpus: learning, tying, perplexity by hand, resume, LR decay, errors."""
import json
import math

import numpy as np
import pytest

from rnnlab.cli import main
from rnnlab.tasks import wordlm

TEMPLATES = ["the cat sat on the mat", "a dog ran to the house", "the big red dog sat", "a small cat ran"]


def _corpus(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for name, n in (("train", 300), ("valid", 40), ("test", 40)):
        p = tmp_path / f"{name}.txt"
        p.write_text("\n".join(TEMPLATES[i] for i in rng.integers(0, 4, n)) + "\n", encoding="utf-8")
        paths.append(str(p))
    return paths


SMALL = ["--units", "24", "--embedding-dim", "16", "--layers", "1", "--batch-size", "4", "--bptt", "10",
         "--optimizer", "adam", "--lr", "0.01", "--clipnorm", "5", "--verbose", "0", "--eval-batch-size", "2"]


def _last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("tie,cell", [(False, "gru"), (True, "lstm")])
def test_learns_the_templates(tmp_path, capsys, tie, cell):
    tr, va, te = _corpus(tmp_path)
    out = tmp_path / "run"
    args = ["train", "wordlm", "--train", tr, "--valid", va, "--test", te, "--epochs", "6", "--dropout", "0.1",
            "--out", str(out), "--cell", cell] + SMALL + (["--tie-weights"] if tie else ["--no-tie-weights"])
    assert main(args) == 0
    m = _last_json(capsys)
    assert set(m) >= {"valid_perplexity", "test_perplexity", "train_seconds"}
    assert m["tied"] is tie and m["vocab_size"] == 15
    # a unigram model would give ~11; the templates leave about 1.5-2 choices per word
    assert m["valid_perplexity"] < 3.0 and m["test_perplexity"] < 3.0
    hist = json.loads((out / "history.json").read_text())
    assert hist[-1]["val_perplexity"] == pytest.approx(math.exp(hist[-1]["val_loss"]))
    model, doc = wordlm.load_wordlm(out / "model.npz")
    assert doc["vocab"][:2] == ["<unk>", "<eos>"]
    untied = 24 * 15 + 15 if not tie else 15       # Dense(24 -> 15) vs the bias only
    assert model.layers[-1].count_params() == untied


def test_stream_nll_equals_a_full_forward():
    import rnnlab

    rnnlab.set_random_seed(0)
    s = {"cell": "lstm", "units": 6, "layers": 2, "embedding_dim": 5, "dropout": 0.2, "tie_weights": True}
    model = wordlm.build_model(11, s, 3)
    ids = np.random.default_rng(2).integers(0, 11, 50)
    got = wordlm.stream_nll(model, ids, chunk=4)
    x, y = wordlm.stream_batches(ids, 3)
    model.reset_states()
    z = np.asarray(model.predict_on_batch(x), dtype=np.float64)
    z -= z.max(-1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    assert got == pytest.approx(-np.mean(np.take_along_axis(lp, y[..., None], 2)), rel=1e-6)


def test_resume_equals_uninterrupted(tmp_path, capsys):
    tr, va, te = _corpus(tmp_path)
    base = ["train", "wordlm", "--train", tr, "--valid", va, "--dropout", "0.3", "--tie-weights", "--seed", "4",
            "--layers", "2"] + SMALL
    assert main(base + ["--epochs", "3", "--out", str(tmp_path / "a")]) == 0
    assert main(base + ["--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    assert main(base + ["--epochs", "3", "--out", str(tmp_path / "b"), "--resume"]) == 0
    capsys.readouterr()
    with np.load(tmp_path / "a" / "checkpoint.npz") as a, np.load(tmp_path / "b" / "checkpoint.npz") as b:
        keys = [k for k in a.files if k.startswith(("w:", "opt:"))]
        assert keys == [k for k in b.files if k.startswith(("w:", "opt:"))]
        for k in keys:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


class _FakeAdapter:
    """Validation losses follow a script, so the plateau logic can be checked exactly."""

    def __init__(self, vals):
        from rnnlab import optimizers

        self.vals, self.optimizer, self.saved = list(vals), optimizers.Adam(1.0), []

    def train_epoch(self, epoch, timer):
        return {"loss": 1.0}

    def evaluate(self):
        return {"loss": self.vals.pop(0)}

    def save(self, path, run):
        self.saved.append((path.rsplit("/", 1)[-1], run["epoch"]))
        open(path, "wb").close()

    def load(self, path):  # pragma: no cover - not used here
        raise AssertionError


def test_lr_decay_on_plateau_and_best_model(tmp_path):
    from rnnlab.tasks.runstate import TrainLoop

    ad = _FakeAdapter([5.0, 4.0, 4.5, 4.2, 3.0, 3.5])
    loop = TrainLoop(str(tmp_path), ad, monitor="loss", mode="min", lr_decay=0.5, lr_patience=2, verbose=0)
    run = loop.fit(6)
    lrs = [h["learning_rate"] for h in run["history"]]
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5]     # two epochs without improvement -> halve once
    assert run["best"] == 3.0 and run["best_epoch"] == 5
    assert [e for name, e in ad.saved if name == "model.npz"] == [0, 1, 4]   # saved when it improved
    assert ad.optimizer.learning_rate == 0.5


def test_errors(tmp_path, capsys):
    tr, va, te = _corpus(tmp_path)
    o = str(tmp_path / "o")
    assert main(["train", "wordlm", "--train", tr, "--valid", va, "--bidirectional", "--out", o] + SMALL) == 1
    assert "--bidirectional does not apply" in capsys.readouterr().err
    assert main(["train", "wordlm", "--train", tr, "--valid", va, "--vocab-size", "2", "--out", o] + SMALL) == 1
    assert "--vocab-size must be >= 3" in capsys.readouterr().err
    assert main(["train", "wordlm", "--train", tr, "--valid", str(tmp_path / "nope.txt"), "--out", o] + SMALL) == 1
    assert "nope.txt" in capsys.readouterr().err
    short = tmp_path / "short.txt"
    short.write_text("a\n", encoding="utf-8")
    assert main(["train", "wordlm", "--train", tr, "--valid", str(short), "--out", o] + SMALL) == 1
    assert "too short" in capsys.readouterr().err
    assert main(["train", "wordlm", "--train", tr, "--valid", va, "--lr-decay", "1.5", "--out", o] + SMALL) == 1
    assert "--lr-decay" in capsys.readouterr().err


class _FileAdapter(_FakeAdapter):
    """Writes real task files (run state included) so resume can read them back."""

    def save(self, path, run):
        from rnnlab.tasks.runstate import TASK_KEY, encode_json, write_npz

        write_npz(path, {TASK_KEY: encode_json({"task": "fake", "run": run})})

    def load(self, path):
        from rnnlab.tasks.runstate import read_task_file

        return read_task_file(path, "fake")[0]["run"]


def test_resume_keeps_a_better_partial_epoch_model(tmp_path):
    import time as _time

    from rnnlab.tasks.runstate import TrainLoop, read_task_file

    ad = _FileAdapter([5.0, 4.0])

    def slow_second_epoch(epoch, timer):
        if epoch == 1:
            _time.sleep(0.05)
            return {"loss": 1.0, "partial": True}
        return {"loss": 1.0}

    ad.train_epoch = slow_second_epoch
    TrainLoop(str(tmp_path), ad, monitor="loss", verbose=0).fit(3)   # epoch 2 partial but better: model.npz
    assert read_task_file(tmp_path / "model.npz")[0]["run"]["best"] == 4.0
    assert read_task_file(tmp_path / "checkpoint.npz")[0]["run"]["best"] == 5.0
    ad2 = _FileAdapter([4.5])                                          # resumed epoch 2: worse than the partial one
    loop = TrainLoop(str(tmp_path), ad2, monitor="loss", verbose=0)
    loop.resume()
    run = loop.fit(2)
    assert run["best"] == 4.0 and run["best_epoch"] == 2
    assert read_task_file(tmp_path / "model.npz")[0]["run"]["best"] == 4.0      # not overwritten by 4.5


def test_non_utf8_and_directory_errors_point_to_the_flags(tmp_path, capsys):
    tr, va, _ = _corpus(tmp_path)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("the caf\xe9 sat\n".encode("latin-1") + b"the cat sat\n" * 50)
    o = str(tmp_path / "o")
    for argv in (["train", "wordlm", "--train", str(latin), "--valid", va, "--out", o] + SMALL,
                 ["ngram", "--train", str(latin), "--valid", va]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "latin.txt: cannot decode byte(s) b'\\xe9' at byte offset 7 (line 1, column 8) as utf-8" in err
        assert "pass --encoding" in err and "pass encoding=" not in err
    assert main(["train", "wordlm", "--train", str(latin), "--valid", va, "--out", o, "--encoding", "latin-1",
                 "--epochs", "1"] + SMALL) == 0
    capsys.readouterr()
    assert main(["train", "wordlm", "--train", str(tmp_path), "--valid", va, "--out", o] + SMALL) == 1
    assert capsys.readouterr().err.strip() == f"rnnlab: error: {tmp_path}: is a directory, expected a file"


# ------------------------------------------------------------------ the budget-aware dropout rule
@pytest.mark.parametrize("tie,cell,layers", [(True, "lstm", 2), (False, "gru", 1), (True, "rnn", 3)])
def test_flops_per_token_is_six_times_the_non_lookup_parameters(tie, cell, layers):
    """6 x (recurrent + output parameters), checked against the parameter count of the model itself: tied, the
    lookup's V x E are the output matrix too, so F / 6 is every parameter; untied, all but the lookup."""
    from rnnlab.models.lm import build_wordlm_model

    s = {"cell": cell, "units": 7, "layers": layers, "embedding_dim": 5, "dropout": 0.0, "tie_weights": tie,
         "variational_dropout": True}
    V = 13
    model = build_wordlm_model(V, s, 2)
    lookup = 0 if tie else V * 5
    assert wordlm.wordlm_flops_per_token(V, s) == 6.0 * (model.count_params() - lookup)


DEFAULT_MODEL = {"cell": "lstm", "units": 256, "layers": 2, "embedding_dim": 256, "tie_weights": True}


def test_budget_epochs_of_the_measured_corpora():
    # PTB-sized IMDB corpus: 975,018 tokens, V = 10,000 -> 21.7 MFLOP a token, 3.4 epochs in 15 minutes
    assert wordlm.wordlm_flops_per_token(10_000, DEFAULT_MODEL) == 21_723_744.0   # 6 x 3,620,624 parameters
    assert wordlm.budget_epochs(975_018, 10_000, DEFAULT_MODEL, 15.0) == pytest.approx(
        15 * 60 * 8e10 / (975_018 * 21_723_744.0), rel=1e-12)
    assert 3.3 < wordlm.budget_epochs(975_018, 10_000, DEFAULT_MODEL, 15.0) < 3.5
    # WikiText-2: 2,075,677 tokens, V = 33,278 -> 0.6 of an epoch (measured: 57% at load 1)
    assert 0.55 < wordlm.budget_epochs(2_075_677, 33_278, DEFAULT_MODEL, 15.0) < 0.65


def test_budget_epochs_limits():
    full = wordlm.budget_epochs(975_018, 10_000, DEFAULT_MODEL, 15.0)
    assert wordlm.budget_epochs(975_018, 10_000, DEFAULT_MODEL) is None                    # nothing limits it
    assert wordlm.budget_epochs(975_018, 10_000, DEFAULT_MODEL, 0.0) is None               # --max-minutes 0: none
    assert wordlm.budget_epochs(975_018, 10_000, DEFAULT_MODEL, None, 15.0) == full        # CPU budget alike
    assert wordlm.budget_epochs(975_018, 10_000, DEFAULT_MODEL, 30.0, 15.0) == full        # the smaller limit
    assert wordlm.budget_epochs(975_018, 10_000, DEFAULT_MODEL, 30.0) == pytest.approx(2 * full)
    assert wordlm.budget_epochs(975_018, 10_000, DEFAULT_MODEL, 15.0, None, 2) == 2.0      # --epochs caps it
    assert wordlm.budget_epochs(975_018, 10_000, DEFAULT_MODEL, 15.0, None, 40) == full
    assert wordlm.budget_epochs(975_018, 10_000, DEFAULT_MODEL, None, None, 9) == 9.0


def test_default_dropout_rule():
    # by size alone (no limit on the epochs): as before
    assert [wordlm.default_dropout(n) for n in (1_000, 975_018, 2_999_999, 3_000_000, 29_999_999, 30_000_000)] \
        == [0.5, 0.5, 0.5, 0.3, 0.3, 0.1]
    # a run that can afford fewer than 6 epochs: at most 0.2
    assert wordlm.default_dropout(975_018, 3.4) == 0.2          # PTB-sized corpus, 15 minutes
    assert wordlm.default_dropout(2_075_677, 0.6) == 0.2        # WikiText-2, 15 minutes
    assert wordlm.default_dropout(975_018, 5.99) == 0.2
    assert wordlm.default_dropout(975_018, 6.0) == 0.5          # long enough to over-fit: the size rule
    assert wordlm.default_dropout(10_000_000, 2.0) == 0.2
    assert wordlm.default_dropout(50_000_000, 2.0) == 0.1       # never raised above the size rule
    with pytest.raises(ValueError, match="train_tokens"):
        wordlm.default_dropout(-1)


@pytest.mark.parametrize("epochs,expected", [("2", 0.2), ("6", 0.5)])
def test_cli_picks_the_dropout_by_the_epochs_it_can_afford(tmp_path, capsys, epochs, expected):
    tr, va, _ = _corpus(tmp_path)
    args = ["train", "wordlm", "--train", tr, "--valid", va, "--epochs", epochs, "--out", str(tmp_path / "o")]
    assert main(args + SMALL) == 0
    m = _last_json(capsys)
    assert m["dropout"] == expected and m["epochs_run"] == int(epochs)
    model, doc = wordlm.load_wordlm(tmp_path / "o" / "model.npz")
    assert doc["settings"]["dropout"] == expected


def test_weight_drop_flag(tmp_path, capsys):
    """--weight-drop wraps each recurrent layer in WeightDrop (AWD-LSTM's DropConnect on W_h): the model learns,
    saves and loads with the wrappers; a bad rate is refused naming the flag."""
    from rnnlab.layers import WeightDrop

    tr, va, te = _corpus(tmp_path)
    out = tmp_path / "wd"
    args = ["train", "wordlm", "--train", tr, "--valid", va, "--test", te, "--epochs", "6", "--dropout", "0.1",
            "--weight-drop", "0.3", "--out", str(out)] + SMALL
    assert main(args) == 0
    m = _last_json(capsys)
    assert m["valid_perplexity"] < 3.0
    model, doc = wordlm.load_wordlm(out / "model.npz")
    wraps = [layer for layer in model.layers if isinstance(layer, WeightDrop)]
    assert len(wraps) == 1 and wraps[0].rate == 0.3 and wraps[0].layer.stateful
    o = str(tmp_path / "bad")
    assert main(["train", "wordlm", "--train", tr, "--valid", va, "--weight-drop", "1.0", "--out", o] + SMALL) == 1
    assert "--weight-drop must be in [0, 1)" in capsys.readouterr().err
