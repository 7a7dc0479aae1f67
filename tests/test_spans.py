"""conlleval span extraction and entity P/R/F1, against hand-worked examples."""
import pytest

from rnnlab.tagging import chunk_tag, extract_spans, span_scores, token_accuracy


@pytest.mark.parametrize("tags, spans", [
    # IOB2 / BIO
    (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
    (["B-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
    # conlleval: I- after O starts a chunk (IOB1, or an ill-formed BIO sequence)
    (["O", "I-PER", "I-PER", "O"], [("PER", 1, 3)]),
    (["I-PER"], [("PER", 0, 1)]),
    # IOB1: B only separates adjacent chunks of one type
    (["I-PER", "I-PER", "B-PER", "I-PER"], [("PER", 0, 2), ("PER", 2, 4)]),
    # a type change inside a chunk ends it and starts another
    (["B-PER", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 2)]),
    (["B-PER", "I-PER", "I-LOC", "I-LOC"], [("PER", 0, 2), ("LOC", 2, 4)]),
    # a chunk open at the end of the sentence is closed there
    (["O", "B-X", "I-X"], [("X", 1, 3)]),
    # IOBES
    (["S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "S-LOC"],
     [("PER", 0, 1), ("LOC", 1, 4), ("LOC", 4, 5), ("LOC", 5, 6)]),
    (["B-X", "E-X", "E-X"], [("X", 0, 2), ("X", 2, 3)]),   # E after E starts a new chunk
    (["B-X", "E-X", "I-X"], [("X", 0, 2), ("X", 2, 3)]),   # I after E too
    (["O", "E-X"], [("X", 1, 2)]),                          # E after O starts one
    (["B-X", "S-X"], [("X", 0, 1), ("X", 1, 2)]),
    # types may contain hyphens (only the first hyphen splits)
    (["B-MISC-X", "I-MISC-X"], [("MISC-X", 0, 2)]),
    (["O", "O"], []),
    ([], []),
])
def test_extract_spans(tags, spans):
    assert extract_spans(tags) == spans


def test_chunk_tag_and_bad_tags():
    assert chunk_tag("O") == ("O", "") and chunk_tag("E-A-B") == ("E", "A-B")
    with pytest.raises(ValueError, match=r"tag 'PER' at sentence 2, token 1 is not 'O' or PREFIX-TYPE"):
        extract_spans(["O", "PER"], sentence=2)
    with pytest.raises(ValueError, match="'X-PER'"):
        chunk_tag("X-PER")
    with pytest.raises(ValueError, match="'B-'"):
        chunk_tag("B-")
    with pytest.raises(TypeError, match="string"):
        chunk_tag(3)


def test_scores_seqeval_readme_example():
    # the documented seqeval/conlleval example: one MISC chunk with the wrong start, PER right -> 0.5 / 0.5 / 0.5
    y_true = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    y_pred = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    s = span_scores(y_true, y_pred)
    assert (s.correct, s.predicted, s.true) == (1, 2, 2)
    assert s.precision == 0.5 and s.recall == 0.5 and s.f1 == 0.5
    assert s.token_accuracy == 8 / 10  # tokens 2 (O/B-MISC) and 3 (B-MISC/I-MISC) differ
    assert s.per_type["PER"]["f1"] == 1.0 and s.per_type["MISC"]["f1"] == 0.0


def test_scores_by_hand():
    y_true = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "O"]]
    y_pred = [["B-PER", "I-PER", "O", "B-ORG", "B-LOC"], ["O", "O"]]
    s = span_scores(y_true, y_pred)
    # true: PER(0,2) LOC(3,4) ORG(0,1); pred: PER(0,2) ORG(3,4) LOC(4,5) -> 1 correct
    assert (s.correct, s.predicted, s.true) == (1, 3, 3)
    assert s.precision == pytest.approx(1 / 3) and s.recall == pytest.approx(1 / 3) and s.f1 == pytest.approx(1 / 3)
    assert s.token_accuracy == pytest.approx(4 / 7)
    assert s.per_type["ORG"] == {"correct": 0, "predicted": 1, "true": 1, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    # a boundary error is a miss: precision and recall both count it
    s2 = span_scores([["B-PER", "I-PER", "I-PER"]], [["B-PER", "I-PER", "O"]])
    assert (s2.correct, s2.precision, s2.recall, s2.f1) == (0, 0.0, 0.0, 0.0)
    # precision and recall differ when the counts differ
    s3 = span_scores([["B-A", "O", "B-B"]], [["B-A", "O", "O"]])
    assert s3.precision == 1.0 and s3.recall == 0.5 and s3.f1 == pytest.approx(2 / 3)


def test_spans_do_not_cross_sentences_and_zero_denominators():
    s = span_scores([["O", "I-PER"], ["I-PER", "O"]], [["O", "I-PER"], ["I-PER", "O"]])
    assert s.true == 2 and s.correct == 2 and s.f1 == 1.0
    z = span_scores([["O", "O"]], [["O", "O"]])
    assert (z.precision, z.recall, z.f1, z.token_accuracy) == (0.0, 0.0, 0.0, 1.0)
    nopred = span_scores([["B-A"]], [["O"]])
    assert (nopred.precision, nopred.recall, nopred.f1) == (0.0, 0.0, 0.0)


def test_bad_pairs():
    with pytest.raises(ValueError, match="y_true has 2 sentences but y_pred has 1"):
        span_scores([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="sentence 1: y_true has 2 tags but y_pred has 1"):
        token_accuracy([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(TypeError, match="lists of sentences"):
        span_scores("B-PER", "B-PER")
