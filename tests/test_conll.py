"""CoNLL / CoNLL-U reading with line-numbered errors, tag vocabularies, the generated two-sided task."""
import pytest

from rnnlab.datasets.conll import (
    Sentence, TagVocabulary, generate_suffix_tagging, generate_two_sided_tagging, read_conll, write_conll,
)
from rnnlab.tagging import extract_spans

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""

CONLLU = """# sent_id = 1
# text = I can't go
1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_
2-3\tcan't\t_\t_\t_\t_\t_\t_\t_\t_
2\tca\tcan\tAUX\tMD\t_\t3\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_

1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_
"""


def _w(tmp_path, text, name="a.txt"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_read_conll_2003(tmp_path):
    s = read_conll(_w(tmp_path, CONLL))
    assert [x.tokens for x in s] == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    assert [x.tags for x in s] == [["B-ORG", "O", "B-MISC"], ["B-PER", "I-PER"]]
    assert [x.line for x in s] == [3, 7]
    chunks = read_conll(_w(tmp_path, CONLL), token_column=0, tag_column=2)
    assert chunks[0].tags == ["B-NP", "B-VP", "B-NP"]


def test_read_conllu(tmp_path):
    s = read_conll(_w(tmp_path, CONLLU), format="conllu")
    assert s[0].tokens == ["I", "ca", "n't", "go"] and s[0].tags == ["PRON", "AUX", "PART", "VERB"]
    assert s[1].tokens == ["Yes"] and s[1].line == 9
    xpos = read_conll(_w(tmp_path, CONLLU), format="conllu", tag_column=4)
    assert xpos[0].tags == ["PRP", "MD", "RB", "VB"]


def test_ragged_columns_line_number(tmp_path):
    bad = CONLL.replace("rejects VBZ B-VP O", "rejects VBZ O")
    with pytest.raises(ValueError, match=r"line 4: 3 columns, but the file's first token line has 4 \(ragged"):
        read_conll(_w(tmp_path, bad))
    badu = CONLLU.replace("4\tgo\tgo\tVERB", "4\tgo\tVERB")
    with pytest.raises(ValueError, match="line 7: CoNLL-U token lines have 10 tab-separated columns, got 9"):
        read_conll(_w(tmp_path, badu), format="conllu")


def test_missing_blank_line_is_reported(tmp_path):
    badu = CONLLU.replace("root\t_\t_\n\n1\tYes", "root\t_\t_\n1\tYes")
    with pytest.raises(ValueError, match=r"line 8: token id restarts at 1 inside a sentence \(started at line 3\).*blank line"):
        read_conll(_w(tmp_path, badu), format="conllu")
    # CoNLL files with an id column are checked the same way
    ids = "1 The O\n2 cat O\n1 A O\n"
    with pytest.raises(ValueError, match="line 3: token id restarts at 1"):
        read_conll(_w(tmp_path, ids), token_column=1, tag_column=2)
    jump = "1 The O\n3 cat O\n"
    with pytest.raises(ValueError, match="line 2: token id 3 follows 1"):
        read_conll(_w(tmp_path, jump), token_column=1, tag_column=2)
    doc = "EU B-ORG\n-DOCSTART- O\n"
    with pytest.raises(ValueError, match="line 2: -DOCSTART- inside a sentence"):
        read_conll(_w(tmp_path, doc))


def test_other_bad_input(tmp_path):
    with pytest.raises(ValueError, match="tag column 7 is out of range for 4 columns"):
        read_conll(_w(tmp_path, CONLL), tag_column=7)
    with pytest.raises(ValueError, match="same column"):
        read_conll(_w(tmp_path, CONLL), token_column=3, tag_column=-1)
    with pytest.raises(ValueError, match="format must be"):
        read_conll(_w(tmp_path, CONLL), format="iob")
    with pytest.raises(ValueError, match="no sentences"):
        read_conll(_w(tmp_path, "\n\n"))
    with pytest.raises(FileNotFoundError):
        read_conll(str(tmp_path / "missing.conll"))


def test_tag_vocabulary_and_unknown_tags(tmp_path):
    train = read_conll(_w(tmp_path, CONLL))
    tv = TagVocabulary.build(train)
    assert tv.tags[0] == "<pad>" and len(tv) == 6
    ids = tv.encode(train)
    assert tv.decode(ids[1]) == ["B-PER", "I-PER"]
    test = [Sentence(["x", "y"], ["O", "B-LOC"], 42)]
    with pytest.raises(ValueError, match=r"test: tag 'B-LOC' \(line 42\) was not seen in the training data"):
        tv.encode(test, what="test")
    assert tv.decode(tv.encode(test, unknown="O")[0]) == ["O", "O"]


def test_generated_task_and_roundtrip(tmp_path):
    data = generate_two_sided_tagging(200, seed=1)
    assert data == generate_two_sided_tagging(200, seed=1)
    assert data != generate_two_sided_tagging(200, seed=2)
    left = right = 0
    for s in data:
        assert len(s.tokens) == len(s.tags) >= 6
        for typ, a, b in extract_spans(s.tags):
            # every entity is announced by exactly one trigger, before (PER) or after (ORG/LOC) it
            if typ == "PER":
                assert s.tokens[a - 1] in ("mr", "dr")
                left += 1
            else:
                assert s.tokens[b] in (("inc", "corp") if typ == "ORG" else ("city", "river"))
                right += 1
    assert left > 50 and right > 150
    p = write_conll(data[:5], str(tmp_path / "g.conll"))
    back = read_conll(p)
    assert [(s.tokens, s.tags) for s in back] == [(s.tokens, s.tags) for s in data[:5]]
    iobes = generate_two_sided_tagging(50, seed=1, scheme="IOBES")
    assert any(t.startswith("S-") for s in iobes for t in s.tags)
    assert any(t.startswith("E-") for s in iobes for t in s.tags)


def test_suffix_task_types_are_in_the_spelling():
    tr, ho = generate_suffix_tagging(100, seed=0), generate_suffix_tagging(100, seed=0, held_out=True)
    suffix = {"PER": ("son", "sen"), "LOC": ("ville", "burg"), "ORG": ("tech", "soft")}
    for data in (tr, ho):
        for s in data:
            for typ, a, b in extract_spans(s.tags):
                assert all(w.endswith(suffix[typ]) for w in s.tokens[a:b])
    ents = lambda d: {w for s in d for w, t in zip(s.tokens, s.tags) if t != "O"}  # noqa: E731
    assert not ents(tr) & ents(ho)
    with pytest.raises(ValueError, match="n_sentences"):
        generate_suffix_tagging(0)


def test_read_conll_undecodable_bytes_name_file_line_and_byte(tmp_path):
    from rnnlab.datasets.conll import read_conll

    p = tmp_path / "latin.conll"
    p.write_bytes("the O\n\nmr O\ncaf\xe9 B-PER\n".encode("latin-1"))
    with pytest.raises(ValueError) as e:
        read_conll(str(p))
    msg = str(e.value)
    assert "latin.conll: cannot decode byte(s) b'\\xe9' at byte offset 15 (line 4, column 4) as utf-8" in msg
    assert "--encoding" in msg
    sents = read_conll(str(p), encoding="latin-1")
    assert [s.line for s in sents] == [1, 3] and sents[1].tokens == ["mr", "caf\xe9"]
    bom = tmp_path / "bom.conll"
    bom.write_bytes(b"\xef\xbb\xbfthe O\r\ncat O\r\n")
    assert read_conll(str(bom))[0].tokens == ["the", "cat"]
