"""Chunks (entity spans) from BIO / IOB1 / IOB2 / IOBES tags, and conlleval's entity precision/recall/F1.

A tag is ``O`` or ``P-TYPE`` with prefix ``P`` in ``B``, ``I``, ``E``, ``S`` (the type may contain hyphens:
only the first one splits). No scheme has to be declared: the rules below are those of the CoNLL
``conlleval`` script (the Perl original for B/I/O tags, with the IOBES end/start rules of its widely used
Python port), so IOB1 (``I`` starts a chunk, ``B`` only separates two adjacent chunks of one type), IOB2/BIO
(every chunk starts with ``B``) and IOBES all read correctly, and ill-formed sequences are read the way
conlleval reads them.

With ``(p, t)`` the previous prefix and type and ``(c, u)`` the current ones (a sentence starts and ends with
``O``), a chunk **ends before** the current token when

    p in {E, S};  or  p in {B, I} and c in {B, S, O};  or  p != O and t != u        (type change)

and a chunk **starts at** the current token when

    c in {B, S};  or  c in {I, E} and p in {E, S, O};  or  c != O and t != u

so e.g. ``I-PER`` after ``O`` starts a chunk, ``I-LOC`` after ``I-PER`` ends one chunk and starts another,
and ``B-PER I-LOC`` is two chunks. A span is ``(type, start, end)`` with ``end`` exclusive.

Scores (conlleval): a predicted chunk is correct when a true chunk has the same type, start and end.

    precision = correct / predicted chunks,   recall = correct / true chunks,
    F1 = 2 P R / (P + R)                       (each 0 when its denominator is 0)

Token accuracy is the fraction of tokens whose predicted tag equals the true tag (``O`` tokens included,
as conlleval's "accuracy").
"""
from __future__ import annotations

from dataclasses import dataclass, field

_PREFIXES = ("B", "I", "E", "S")


def chunk_tag(tag, where=None):
    """Split a tag into ``(prefix, type)``: ``"B-PER" -> ("B", "PER")``, ``"O" -> ("O", "")``."""
    if not isinstance(tag, str):
        raise TypeError(f"tag must be a string, got {type(tag).__name__} {tag!r}" + (f" at {where}" if where else ""))
    if tag == "O":
        return "O", ""
    prefix, sep, typ = tag.partition("-")
    if not sep or prefix not in _PREFIXES or not typ:
        raise ValueError(f"tag {tag!r}" + (f" at {where}" if where else "")
                         + " is not 'O' or PREFIX-TYPE with PREFIX in B, I, E, S (e.g. 'B-PER')")
    return prefix, typ


def _ends(p, t, c, u):
    if p in ("E", "S"):
        return True
    if p in ("B", "I") and c in ("B", "S", "O"):
        return True
    return p != "O" and t != u


def _starts(p, t, c, u):
    if c in ("B", "S"):
        return True
    if c in ("I", "E") and p in ("E", "S", "O"):
        return True
    return c != "O" and t != u


def extract_spans(tags, sentence=None):
    """Chunks of one sentence as a list of ``(type, start, end)`` (end exclusive), in order."""
    spans = []
    p, t, start = "O", "", None
    for i, tag in enumerate(list(tags) + ["O"]):
        where = (f"sentence {sentence}, token {i}" if sentence is not None else f"token {i}")
        c, u = chunk_tag(tag, where)
        if start is not None and _ends(p, t, c, u):
            spans.append((t, start, i))
            start = None
        if _starts(p, t, c, u):
            start = i
        p, t = c, u
    return spans


@dataclass
class SpanScores:
    """Entity-level scores over a corpus (conlleval definitions) plus token accuracy."""

    precision: float
    recall: float
    f1: float
    token_accuracy: float
    correct: int
    predicted: int
    true: int
    tokens: int
    per_type: dict = field(default_factory=dict)

    def as_dict(self, prefix=""):
        return {f"{prefix}precision": self.precision, f"{prefix}recall": self.recall, f"{prefix}f1": self.f1,
                f"{prefix}token_accuracy": self.token_accuracy}


def _prf(correct, predicted, true):
    p = correct / predicted if predicted else 0.0
    r = correct / true if true else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def _check_pairs(y_true, y_pred):
    if isinstance(y_true, str) or isinstance(y_pred, str):
        raise TypeError("y_true and y_pred must be lists of sentences (lists of tags), not strings")
    y_true, y_pred = list(y_true), list(y_pred)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} sentences but y_pred has {len(y_pred)}")
    for i, (a, b) in enumerate(zip(y_true, y_pred)):
        if isinstance(a, str) or isinstance(b, str):
            raise TypeError(f"sentence {i}: expected a list of tags, got a string")
        if len(a) != len(b):
            raise ValueError(f"sentence {i}: y_true has {len(a)} tags but y_pred has {len(b)}")
    return y_true, y_pred


def token_accuracy(y_true, y_pred) -> float:
    """Fraction of tokens with the right tag, over lists of sentences (0.0 for no tokens)."""
    y_true, y_pred = _check_pairs(y_true, y_pred)
    n = sum(len(s) for s in y_true)
    ok = sum(a == b for s, q in zip(y_true, y_pred) for a, b in zip(s, q))
    return ok / n if n else 0.0


def span_scores(y_true, y_pred) -> SpanScores:
    """conlleval precision/recall/F1 over lists of sentences of tags, overall and per type."""
    y_true, y_pred = _check_pairs(y_true, y_pred)
    correct = predicted = true = 0
    per: dict = {}
    for i, (a, b) in enumerate(zip(y_true, y_pred)):
        ts, ps = set(extract_spans(a, i)), set(extract_spans(b, i))
        hit = ts & ps
        correct, predicted, true = correct + len(hit), predicted + len(ps), true + len(ts)
        for kind, spans in (("correct", hit), ("predicted", ps), ("true", ts)):
            for typ, _, _ in spans:
                per.setdefault(typ, {"correct": 0, "predicted": 0, "true": 0})[kind] += 1
    for typ, c in per.items():
        c["precision"], c["recall"], c["f1"] = _prf(c["correct"], c["predicted"], c["true"])
    p, r, f = _prf(correct, predicted, true)
    return SpanScores(p, r, f, token_accuracy(y_true, y_pred), correct, predicted, true,
                      sum(len(s) for s in y_true), dict(sorted(per.items())))


# ------------------------------------------------------------------------------------------- tag schemes
#: the strict tag schemes :func:`scheme_violation` checks (``bio`` is another name of ``iob2``)
SCHEMES = ("iob1", "iob2", "iobes")


def detect_scheme(tag_lists):
    """The tag scheme of lists of tags: ``"iobes"`` when E-/S- tags occur, ``"iob1"`` when some ``I-X`` starts a
    chunk (after ``O``, another type, or first in a sentence) and no ``B-X`` does, ``"iob2"`` when chunks start
    only with ``B-``, ``None`` when the tags are not chunk tags (e.g. POS tags) or mix the conventions (then the
    conlleval rules of :func:`extract_spans` read them and no scheme should be enforced)."""
    i_starts = b_starts = 0
    es = False
    for tags in tag_lists:
        p, t = "O", ""
        for tag in tags:
            try:
                c, u = chunk_tag(tag)
            except (ValueError, TypeError):
                return None
            if c in ("E", "S"):
                es = True
            starts_after_outside = p == "O" or t != u or p in ("E", "S")
            if c == "I" and starts_after_outside:
                i_starts += 1
            if c == "B" and starts_after_outside:
                b_starts += 1
            p, t = c, u
    if es:
        return "iobes"
    if i_starts and not b_starts:
        return "iob1"
    if b_starts and not i_starts:
        return "iob2"
    if not i_starts and not b_starts:
        return None
    return None


def scheme_violation(tags, scheme):
    """``(index, message)`` of the first tag of one sentence that the strict ``scheme`` forbids, or None.
    IOB2: ``I-X`` only after ``B-X``/``I-X``. IOB1: ``B-X`` only after ``I-X``/``B-X`` (it separates two
    adjacent chunks of one type). IOBES: after ``B-X``/``I-X`` only ``I-X``/``E-X``; ``I``/``E`` never start."""
    scheme = "iob2" if str(scheme).lower() == "bio" else str(scheme).lower()
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES} (or 'bio'); got {scheme!r}")
    p, t, prev = "O", "", "the sentence start"
    for i, tag in enumerate(list(tags) + ["O"]):
        c, u = chunk_tag(tag)
        last = i == len(tags)
        if scheme == "iob2" and c == "I" and not (p in ("B", "I") and t == u):
            return i, (f"{tag} follows {prev}: not valid IOB2 (an I- tag must continue a chunk of its type); "
                       "conlleval reads it as the start of a new chunk, as in IOB1")
        if scheme == "iob1" and c == "B" and not (p in ("B", "I") and t == u):
            return i, (f"{tag} follows {prev}: not valid IOB1 (B- only separates two adjacent chunks of one type); "
                       "conlleval reads it as the start of a chunk, as in IOB2")
        if scheme in ("iob1", "iob2") and c in ("E", "S"):
            return i, f"{tag}: {scheme.upper()} has no E-/S- tags (use IOBES)"
        if scheme == "iobes":
            if p in ("B", "I") and not (c in ("I", "E") and t == u):
                what = "the sentence end" if last else tag
                return i - 1 if last else i, (f"{what} follows {prev}: not valid IOBES (a chunk opened by B-/I- "
                                              "must continue with I- or close with E- of its type)")
            if c in ("I", "E") and not (p in ("B", "I") and t == u):
                return i, f"{tag} follows {prev}: not valid IOBES (I-/E- must continue a chunk opened by B-)"
        p, t, prev = c, u, tag
    return None
