"""The main demo and the seq2seq CLI, end to end (small settings; the full demo is marked slow)."""
import json
import os
import re

import pytest

from rnnlab import cli, demo


def test_demo_small_run(tmp_path, capsys):
    rc = demo.main(["--train", "1500", "--test", "200", "--epochs", "1", "--budget", "20", "--units", "16",
                    "--embedding-dim", "8", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    m = re.search(r"held-out exact-match accuracy: (\d+\.\d\d)%", out)
    assert m and 0.0 <= float(m.group(1)) <= 100.0
    assert "Held-out conversions" in out and "reloaded model gives identical outputs: True" in out
    assert os.path.getsize(tmp_path / "dates_seq2seq.npz") > 1000
    png = tmp_path / "attention_dates.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_full_demo_reaches_target(tmp_path, capsys):
    rc = demo.main(["--out", str(tmp_path), "--budget", "50"])
    out = capsys.readouterr().out
    assert rc == 0
    acc = float(re.search(r"held-out exact-match accuracy: (\d+\.\d\d)%", out).group(1))
    assert acc >= 99.5, out[-2000:]


def test_cli_train_and_translate(tmp_path, capsys):
    pairs = tmp_path / "rev.tsv"
    words = ["abc", "bca", "cab", "aab", "bba", "ccb", "acb", "bac", "cba", "abb", "bcc", "caa"] * 5
    pairs.write_text("".join(f"{w}\t{w[::-1]}\n" for w in words), encoding="utf-8")
    out_dir = tmp_path / "run"
    rc = cli.main(["train", "seq2seq", "--pairs", str(pairs), "--epochs", "2", "--units", "8",
                   "--embedding-dim", "4", "--attention", "general", "--out", str(out_dir), "--verbose", "0"])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    metrics = json.loads(lines[-1])
    assert set(metrics) >= {"exact_match_accuracy", "token_accuracy"}
    assert json.loads((out_dir / "metrics.json").read_text()) == metrics
    rc = cli.main(["translate", "--model", str(out_dir / "model.npz"), "abc", "--show-attention",
                   "--plot", str(tmp_path / "a.png")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "abc"[0] in out.splitlines()[1]  # the attention text header lists the source characters
    assert (tmp_path / "a.png").exists()
    # unknown characters: a warning, never a crash
    with pytest.warns(UserWarning, match="<unk>"):
        assert cli.main(["translate", "--model", str(out_dir / "model.npz"), "xyz"]) == 0


def test_cli_errors(tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\nmissing tab\n", encoding="utf-8")
    assert cli.main(["train", "seq2seq", "--pairs", str(bad), "--out", str(tmp_path / "r")]) == 1
    assert "line 2" in capsys.readouterr().err
    assert cli.main(["translate", "--model", str(tmp_path / "none.npz"), "x"]) == 1
    assert "no such model file" in capsys.readouterr().err
