"""``rnnlab train fasttext``: files written, summary, metrics line, bad input."""
import json

import numpy as np
import pytest

from rnnlab import cli
from rnnlab.embeddings import load_facebook_model, load_word2vec_format

TEXT = "the cat sat on the mat\ndogs and cats are running\nthe dog runs after the cat\n" * 200


def test_train_fasttext_writes_vec_and_bin(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "run"
    rc = cli.main(["train", "fasttext", "--text", str(text), "--out", str(out), "--min-count", "1",
                   "--vector-size", "12", "--bucket", "500", "--epochs", "2", "--show", "cat", "catz"])
    assert rc == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    metrics = json.loads(lines[-1])
    assert metrics["task"] == "fasttext" and metrics["vocab_size"] == 13 and metrics["corpus_words"] == 3400
    assert 0 < metrics["ngram_buckets_used"] <= 500 and metrics["words_per_second"] > 0
    assert any(line.startswith("catz (out of vocabulary") for line in lines)
    assert "fastText skip-gram: epoch 2/2 100.0%" in captured.err
    assert json.loads((out / "metrics.json").read_text()) == metrics
    vec = load_word2vec_format(out / "vectors.vec")
    fb = load_facebook_model(out / "model.bin")
    assert fb.words == vec.index_to_key and fb.args["model"] == "skipgram" and fb.args["bucket"] == 500
    np.testing.assert_allclose(fb.wv.vectors, vec.vectors, rtol=1e-5, atol=1e-6)
    assert fb.wv["catz"].shape == (12,)


def test_train_fasttext_bad_input(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    assert cli.main(["train", "fasttext", "--text", str(text), "--out", str(tmp_path / "r"),
                     "--min-n", "5", "--max-n", "3"]) == 1
    assert "min_n must be <= max_n, got min_n=5 > max_n=3" in capsys.readouterr().err
    assert cli.main(["train", "fasttext", "--text", str(text), "--out", str(tmp_path / "r"), "--bucket", "0"]) == 1
    assert "bucket=0" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    assert cli.main(["train", "fasttext", "--text", str(empty), "--out", str(tmp_path / "r")]) == 1
    assert "empty.txt: no words in the text (the corpus is empty)" in capsys.readouterr().err
    assert cli.main(["train", "fasttext", "--text", str(tmp_path / "missing.txt")]) == 1
    assert "missing.txt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "fasttext", "--text", str(text), "--subword-norm", "fb"])
    assert "--subword-norm: invalid choice: 'fb'" in capsys.readouterr().err


def test_train_fasttext_subword_norm_flag_reaches_the_model(tmp_path, capsys, monkeypatch):
    from rnnlab.embeddings import fasttext as ft

    seen = []
    orig = ft.FastText.__init__

    def spy(self, *a, **kw):
        seen.append(kw.get("subword_norm"))
        orig(self, *a, **kw)

    monkeypatch.setattr(ft.FastText, "__init__", spy)
    text = tmp_path / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    for flag in ([], ["--subword-norm", "facebook"]):
        assert cli.main(["train", "fasttext", "--text", str(text), "--out", str(tmp_path / "r"), "--min-count", "1",
                         "--vector-size", "8", "--bucket", "100", "--epochs", "1", "--no-bin", "--verbose", "0",
                         *flag]) == 0
    assert seen == ["gensim", "facebook"]


@pytest.mark.parametrize("sg", ["1", "0"])
def test_train_fasttext_update_flag_reaches_the_model(tmp_path, capsys, monkeypatch, sg):
    """``--update pair|chunk`` is FastText(update=...); without it the model's own default (skip-gram: "pair" when
    the compiled loop is built); metrics.json records the order used."""
    from rnnlab.embeddings import fasttext as ft

    seen = []
    orig = ft.FastText.__init__

    def spy(self, *a, **kw):
        seen.append(kw.get("update", "absent"))
        orig(self, *a, **kw)

    monkeypatch.setattr(ft.FastText, "__init__", spy)
    text = tmp_path / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    used = []
    for flag in ([], ["--update", "pair"], ["--update", "chunk"]):
        out = tmp_path / f"r{len(used)}"
        assert cli.main(["train", "fasttext", "--text", str(text), "--out", str(out), "--min-count", "1",
                         "--vector-size", "8", "--bucket", "100", "--epochs", "1", "--no-bin", "--verbose", "0",
                         "--sg", sg, *flag]) == 0
        used.append(json.loads((out / "metrics.json").read_text())["update"])
    assert seen == [None, "pair", "chunk"]
    assert used == [ft.FastText._default_update(int(sg)), "pair", "chunk"]
    with pytest.raises(SystemExit):
        cli.main(["train", "fasttext", "--text", str(text), "--update", "batch"])
    assert "--update: invalid choice: 'batch'" in capsys.readouterr().err
