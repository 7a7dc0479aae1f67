"""Date/addition generators, TSV loader, Vocabulary."""
import datetime as dt
import re

import numpy as np
import pytest

from rnnlab.datasets import (Vocabulary, addition_pairs, addition_splits, date_pairs, date_splits, load_pairs,
                             pad_ids, split_pairs)
from rnnlab.datasets.seq2seq_data import DATE_FORMATS, END_ID, PAD_ID, START_ID, UNK_ID


def test_dates_deterministic_valid_and_varied():
    a = date_pairs(3000, seed=5)
    assert a == date_pairs(3000, seed=5)
    assert a != date_pairs(3000, seed=6)
    assert len({s for s, _ in a}) == 3000
    for s, t in a:
        d = dt.date.fromisoformat(t)  # a real ISO date
        assert dt.date(1950, 1, 1) <= d <= dt.date(2049, 12, 31)
    srcs = " ".join(s for s, _ in a)
    # month names full/abbreviated in every case, weekdays, ordinals, numeric formats
    for pattern in ["January", "JANUARY", "january", "Sep ", "sep ", "SEP ", "Monday", "wed", "3rd", "22nd",
                    "11th", r"\d\d\.\d\d\.\d{4}", r"\d+/\d+/\d\d\b", r"\d{4}-\d\d-\d\d", " of "]:
        assert re.search(pattern, srcs), pattern


def test_date_semantics_of_numeric_formats():
    pairs = dict(date_pairs(5000, seed=1))
    checked = 0
    for s, t in pairs.items():
        y, m, d = (int(x) for x in t.split("-"))
        if re.fullmatch(r"\d{2}\.\d{2}\.\d{4}", s):              # d.m.Y
            assert s == f"{d:02d}.{m:02d}.{y}"
            checked += 1
        elif re.fullmatch(r"\d{2}/\d{2}/\d{4}", s):              # US m/d/Y
            assert s == f"{m:02d}/{d:02d}/{y}"
            checked += 1
        elif re.fullmatch(r"\d+/\d+/\d{2}", s):                  # US m/d/yy, 2-digit year pivot
            mm, dd, yy = (int(x) for x in s.split("/"))
            assert (mm, dd) == (m, d) and (1900 + yy if yy >= 50 else 2000 + yy) == y
            checked += 1
    assert checked > 300


def test_date_splits_disjoint():
    train, test = date_splits(4000, 1000, seed=0)
    assert len(train) == 4000 and len(test) == 1000
    assert not ({s for s, _ in train} & {s for s, _ in test})
    assert len(DATE_FORMATS) >= 20


def test_addition():
    pairs = addition_pairs(500, digits=3, seed=0)
    for s, t in pairs:
        a, b = s.split("+")
        assert int(a) + int(b) == int(t) and len(a) <= 3 and len(b) <= 3
    tr, te = addition_splits(2000, 300, seed=0)
    assert not ({s for s, _ in tr} & {s for s, _ in te})
    with pytest.raises(ValueError, match="distinct"):
        addition_pairs(200, digits=1)
    with pytest.raises(ValueError, match="digits"):
        addition_pairs(3, digits=0)


def test_load_pairs_and_errors(tmp_path):
    p = tmp_path / "pairs.tsv"
    p.write_text("hello\tbonjour\tCC-BY attribution\n\ncat\tchat\n", encoding="utf-8")
    assert load_pairs(p) == [("hello", "bonjour"), ("cat", "chat")]
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\nc\td\nno tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 3"):
        load_pairs(bad)
    empty = tmp_path / "empty.tsv"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no source"):
        load_pairs(empty)
    with pytest.raises(FileNotFoundError):
        load_pairs(tmp_path / "missing.tsv")


def test_split_pairs_disjoint_sources():
    pairs = [(f"s{i % 50}", f"t{i}") for i in range(200)]  # repeated sources
    tr, te = split_pairs(pairs, 0.2, seed=0)
    assert len(te) == 40
    assert not ({s for s, _ in tr} & {s for s, _ in te})
    with pytest.raises(ValueError, match="test_fraction"):
        split_pairs(pairs, 1.5)


def test_vocabulary_char_and_word():
    v = Vocabulary.build(["abca", "bd"])
    assert v.itos[:4] == ["<pad>", "<start>", "<end>", "<unk>"]
    assert (PAD_ID, START_ID, END_ID, UNK_ID) == (0, 1, 2, 3)
    assert v.itos[4] == "a"  # most frequent first
    ids = v.encode("dab", add_start=True, add_end=True)
    assert ids[0] == START_ID and ids[-1] == END_ID
    assert v.decode(ids) == "dab"
    with pytest.warns(UserWarning, match="<unk>"):
        ids = v.encode("az")
    assert ids[1] == UNK_ID
    w = Vocabulary.build(["the cat sat", "the dog"], level="word")
    assert w.itos[4] == "the"
    assert w.decode(w.encode("the dog sat")) == "the dog sat"
    assert Vocabulary.from_config(w.get_config()).itos == w.itos
    with pytest.raises(ValueError, match="level"):
        Vocabulary(level="byte")
    with pytest.raises(TypeError, match="str"):
        v.encode(123)


def test_pad_ids():
    a = pad_ids([[5, 6, 7], [8]], 2)
    np.testing.assert_array_equal(a, [[5, 6], [8, 0]])
    assert pad_ids([[1], [2, 3]]).shape == (2, 2)
