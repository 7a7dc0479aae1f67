"""rnnlab plot: PNG curves from a run's history.json, panels chosen from the metrics present, errors."""
import json

import pytest

from rnnlab.cli import main

pytest.importorskip("matplotlib")


def _hist(tmp_path, records):
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "history.json").write_text(json.dumps(records), encoding="utf-8")
    return str(tmp_path)


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plot_classify_style_history(tmp_path, capsys):
    run = _hist(tmp_path / "r", [
        {"epoch": 1, "loss": 0.6, "accuracy": 0.7, "val_loss": 0.5, "val_accuracy": 0.75, "learning_rate": 1e-3},
        {"epoch": 2, "loss": 0.4, "accuracy": 0.8, "val_loss": 0.45, "val_accuracy": 0.8, "learning_rate": 5e-4,
         "partial": True}])
    assert main(["plot", run]) == 0
    out = capsys.readouterr().out
    assert "loss, accuracy for 2 epoch(s)" in out
    assert _is_png(tmp_path / "r" / "curves.png")


def test_plot_language_model_history_to_a_chosen_file(tmp_path, capsys):
    run = _hist(tmp_path / "r", [{"epoch": i, "loss": 5.0 - i, "perplexity": 150.0 / i, "val_loss": 5.1 - i,
                                  "val_perplexity": 160.0 / i} for i in (1, 2, 3)])
    target = tmp_path / "x" / "lm.png"
    assert main(["plot", run, "--out", str(target)]) == 0
    assert "loss, perplexity" in capsys.readouterr().out and _is_png(target)


def test_plot_from_a_real_training_run(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("abc abd " * 100, encoding="utf-8")
    out = tmp_path / "run"
    assert main(["train", "charlm", "--text", str(text), "--epochs", "2", "--units", "8", "--batch-size", "4",
                 "--bptt", "10", "--verbose", "0", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["plot", str(out)]) == 0
    assert "loss, bits_per_char for 2 epoch(s)" in capsys.readouterr().out


@pytest.mark.parametrize("content,needle", [
    (None, "has no history.json"),
    ("{not json", "not valid JSON"),
    ("[]", "no epoch recorded"),
    ('[{"loss": 1}]', "epoch records"),
    ('[{"epoch": 1, "foo": 2}]', "none of the metrics"),
])
def test_errors(tmp_path, capsys, content, needle):
    run = tmp_path / "r"
    run.mkdir()
    if content is not None:
        (run / "history.json").write_text(content, encoding="utf-8")
    assert main(["plot", str(run)]) == 1
    assert needle in capsys.readouterr().err
    assert not (run / "curves.png").exists()


def test_missing_folder(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nope")]) == 1
    assert "No such run folder" in capsys.readouterr().err
