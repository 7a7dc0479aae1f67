"""Plain-text corpora: reading with encoding errors, held-out split, PTB token files, corpus building."""
import os

import numpy as np
import pytest

from rnnlab.datasets import text_corpus as tc


def test_read_text_reports_byte_offset_line_and_column(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes("line one\nnaïve\n".encode("utf-8") + b"ok \xff here\n")
    with pytest.raises(ValueError, match=r"bad\.txt: cannot decode byte\(s\) b'\\xff' at byte offset 19 "
                                         r"\(line 3, column 4\) as utf-8.*encoding="):
        tc.read_text(path)
    assert tc.read_text(path, encoding="latin-1").endswith("ok \xff here\n")
    with pytest.raises(ValueError, match="unknown encoding 'nope'"):
        tc.read_text(path, encoding="nope")


def test_split_and_char_corpus(tmp_path):
    assert tc.split_text("abcdefghij", 0.2) == ("abcdefgh", "ij")     # the last part is held out
    assert tc.split_text("abc", 0.0) == ("abc", "")
    with pytest.raises(ValueError, match="valid_fraction"):
        tc.split_text("abc", 1.0)
    path = tmp_path / "t.txt"
    path.write_text("abcabcabXY", encoding="utf-8")
    tr, va, tok = tc.load_char_corpus(path, valid_fraction=0.2)
    assert tok.decode(tr) == "abcabcab"
    assert tok.decode(va) == tok.unk_char * 2            # X, Y never seen in training
    assert tr.dtype == np.int64 and tok.vocab_size == 4
    with pytest.raises(ValueError, match="'X'.*position 0"):
        tc.load_char_corpus(path, valid_fraction=0.2, unknown="error")


def test_token_files_vocab_and_ids(tmp_path):
    (tmp_path / "train.txt").write_text("the cat sat\n\nthe dog <unk> sat\n the cat\n")
    (tmp_path / "valid.txt").write_text("the bird sat\n")
    sents = tc.read_token_file(tmp_path / "train.txt")
    assert sents == [["the", "cat", "sat", "<eos>"], ["the", "dog", "<unk>", "sat", "<eos>"],
                     ["the", "cat", "<eos>"]]
    vocab = tc.build_vocab(sents)
    assert list(vocab)[:5] == ["<unk>", "<eos>", "the", "cat", "sat"]   # specials, then by count, ties first-seen
    assert tc.build_vocab(sents, max_size=4) == {"<unk>": 0, "<eos>": 1, "the": 2, "cat": 3}
    data = tc.load_word_corpus(tmp_path / "train.txt", tmp_path / "valid.txt")
    v = data["vocab"]
    np.testing.assert_array_equal(data["valid"], [v["the"], v["<unk>"], v["sat"], v["<eos>"]])
    assert data["oov_rate"]["valid"] == pytest.approx(0.25) and data["test"] is None
    assert len(data["train"]) == 12


def test_build_ptb_corpus_from_text(tmp_path):
    src = tmp_path / "raw.txt"
    paras = [f"Para {i}. The Truth is a woman--what then? In 1886 he wrote: \"don't\" <br />stop!" for i in range(20)]
    src.write_text("\n\n".join(paras), encoding="utf-8")
    stats = tc.build_ptb_corpus(src, tmp_path / "out", valid_fraction=0.1, test_fraction=0.1, vocab_size=8)
    lines = (tmp_path / "out" / "train.txt").read_text().splitlines()
    assert stats["train"]["sentences"] == len(lines) and stats["vocab_size"] == 8
    assert stats["valid"]["sentences"] == stats["test"]["sentences"] == 8   # 80 sentences, 10% each
    words = {w for line in lines for w in line.split()}
    assert len(words - {"<unk>"}) <= 6                   # 8 including <unk> and <eos>
    full = tc.build_ptb_corpus(src, tmp_path / "full", vocab_size=100)
    first = (tmp_path / "full" / "train.txt").read_text().splitlines()[:5]
    assert first == ["para N", "the truth is a woman what then", "in N he wrote don't", "stop", "para N"]
    assert full["train"]["unk_rate"] == 0.0


def test_build_ptb_corpus_from_imdb_csv(tmp_path):
    src = tmp_path / "r.csv"
    src.write_text("review,sentiment\n" + "".join(f'"Film {i} was great.<br /><br />I liked it!",positive\n'
                                                  for i in range(10)))
    stats = tc.build_ptb_corpus(src, tmp_path / "o", max_docs=5)
    assert stats["train"]["sentences"] + stats["valid"]["sentences"] + stats["test"]["sentences"] == 10
    assert "i liked it" in (tmp_path / "o" / "train.txt").read_text()
    (tmp_path / "bad.csv").write_text("text,label\nx,1\n")
    with pytest.raises(ValueError, match="'review' column"):
        tc.build_ptb_corpus(tmp_path / "bad.csv", tmp_path / "o2")


def test_shared_nietzsche_corpus(shared_data, tmp_path):
    stats = tc.build_ptb_corpus(os.path.join(shared_data, "nietzsche.txt"), tmp_path, vocab_size=5000)
    assert stats["vocab_size"] == 5000
    assert 60000 < stats["train"]["tokens_with_eos"] < 120000
    assert (tmp_path / "train.txt").read_text().startswith("preface\nsupposing that truth is a woman what then\n")
