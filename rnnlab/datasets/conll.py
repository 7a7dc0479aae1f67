"""CoNLL / CoNLL-U files for sequence labelling, tag vocabularies, and a generated two-sided tagging task.

Reading (:func:`read_conll`):

* ``format="conll"`` (CoNLL-2000/2003 style): one token per line, whitespace-separated columns, a blank line
  between sentences, ``-DOCSTART-`` lines ignored. Defaults: token column 0, tag column -1 (the last).
* ``format="conllu"`` (Universal Dependencies): 10 tab-separated columns, ``#`` comment lines, multi-word
  token ranges (``1-2``) and empty nodes (``1.1``) skipped. Defaults: token column 1 (FORM), tag column 3 (UPOS).

Errors name the file and line: a line with a different number of columns than the first token line of the
file (ragged columns), a tag/token column out of range, and a *missing blank line between sentences*, which
is detected where the file says where sentences start: CoNLL-U token ids (and CoNLL files whose first column is
a token id) must run 1, 2, 3 ... within a sentence, so an id that restarts at 1 (or jumps) without a blank line
is reported; a ``-DOCSTART-`` line inside a sentence is reported too. (Plain CoNLL-2003 files carry no ids, so
two sentences run together there cannot be told from one long sentence.)

:class:`TagVocabulary` maps tags to ids (0 is padding); tags never seen in training raise a ``ValueError``
naming the tag and the sentence's line at encoding time (``unknown="error"``), or map to ``"O"``
(``unknown="O"``) when the caller asks for that.

:func:`generate_suffix_tagging` makes sentences whose entity types show only in the *spelling* of the entity words
(their suffix), with disjoint word stems for the training and the held-out splits: a word-level tagger sees only
``<unk>`` for every held-out entity, a tagger with character features can read the suffix.

:func:`generate_two_sided_tagging` makes sentences whose entity types are decided by a trigger word that comes
*before* the entity (``mr``/``dr`` -> PER) or *after* it (``inc``/``corp`` -> ORG, ``city``/``river`` -> LOC): a
left-to-right tagger cannot know the type of a right-triggered entity while it reads it, a bidirectional one can.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np


@dataclass
class Sentence:
    """One sentence: tokens, tags (same length), the file line of its first token (None if generated) and,
    when the file was read with ``feature_columns``, ``features``: one list of strings per feature column (each
    as long as ``tokens``, e.g. the POS column of CoNLL-2000), else None."""

    tokens: list
    tags: list
    line: int | None = None
    features: list | None = None


def _resolve(col, ncols, name, path, lineno):
    i = col + ncols if col < 0 else col
    if not 0 <= i < ncols:
        raise ValueError(f"{path}, line {lineno}: {name} {col} is out of range for {ncols} columns")
    return i


def read_conll(path, token_column=None, tag_column=None, format="conll", encoding="utf-8", feature_columns=None):
    """Read a CoNLL or CoNLL-U file into a list of :class:`Sentence` (see the module docstring).

    ``feature_columns``: None or ``[]`` (no features), a list of column indices (negative counts from the end),
    or ``"auto"``: for ``format="conll"`` the columns strictly between the token column and the tag column (the
    POS column of CoNLL-2000, POS and chunk of CoNLL-2003; none for two-column files), for CoNLL-U none. Their
    values land in ``Sentence.features`` (one list per column). A feature column equal to the token or the tag
    column, or out of range, is a ``ValueError`` naming the file and line.

    Bytes that are not ``encoding`` are a ``ValueError`` naming the file, line and byte offset."""
    if format not in ("conll", "conllu"):
        raise ValueError(f"format must be 'conll' or 'conllu', got {format!r}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"CoNLL file not found: {path}")
    conllu = format == "conllu"
    tok_col = (1 if conllu else 0) if token_column is None else int(token_column)
    tag_col = (3 if conllu else -1) if tag_column is None else int(tag_column)
    if isinstance(feature_columns, str) and feature_columns != "auto":
        raise ValueError(f"feature_columns must be None, 'auto' or a list of column indices, got {feature_columns!r}")
    sentences: list[Sentence] = []
    tokens, tags, first, last_id = [], [], None, 0
    feats: list = []
    fcols: list = []
    ncols = None
    id_column = None  # CoNLL files: whether column 0 holds running token ids (decided on the first line)

    def flush():
        nonlocal tokens, tags, first, last_id, feats
        if tokens:
            sentences.append(Sentence(tokens, tags, first, feats if fcols else None))
        tokens, tags, first, last_id = [], [], None, 0
        feats = [[] for _ in fcols]

    from .text_corpus import decode_bytes

    with open(path, "rb") as fb:
        data = fb.read()
    if str(path).endswith(".gz"):   # gzip-compressed (e.g. a UD treebank's .conllu.gz): damaged streams name the file
        from ..io import gunzip_bytes

        data = gunzip_bytes(data, path)
    text = decode_bytes(data, path, encoding)
    if text.startswith("\ufeff"):
        text = text[1:]
    with io.StringIO(text, newline=None) as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                flush()
                continue
            if conllu and line.startswith("#"):
                continue
            cols = line.split("\t") if conllu else line.split()
            if cols[0] == "-DOCSTART-":
                if tokens:
                    raise ValueError(f"{path}, line {lineno}: -DOCSTART- inside a sentence (started at line "
                                     f"{first}); a blank line is missing before it")
                continue
            if conllu:
                if len(cols) != 10:
                    raise ValueError(f"{path}, line {lineno}: CoNLL-U token lines have 10 tab-separated columns, "
                                     f"got {len(cols)}")
                if "-" in cols[0] or "." in cols[0]:
                    continue  # multi-word token range or empty node
            if ncols is None:
                ncols = len(cols)
                ti = _resolve(tok_col, ncols, "token column", path, lineno)
                gi = _resolve(tag_col, ncols, "tag column", path, lineno)
                if ti == gi:
                    raise ValueError(f"token column and tag column are the same column ({ti})")
                id_column = conllu or (ncols > 2 and cols[0].isdigit() and ti != 0 and gi != 0)
                if feature_columns == "auto":
                    lo, hi = sorted((ti, gi))
                    fcols = [] if conllu else [i for i in range(lo + 1, hi) if not (id_column and i == 0)]
                else:
                    fcols = [_resolve(int(k), ncols, "feature column", path, lineno) for k in feature_columns or []]
                    clash = [k for k in fcols if k in (ti, gi)]
                    if clash:
                        raise ValueError(f"{path}: feature column {clash[0]} is also the token or the tag column")
                feats = [[] for _ in fcols]
            elif len(cols) != ncols:
                raise ValueError(f"{path}, line {lineno}: {len(cols)} columns, but the file's first token line has "
                                 f"{ncols} (ragged columns)")
            if id_column:
                try:
                    tid = int(cols[0])
                except ValueError:
                    raise ValueError(f"{path}, line {lineno}: token id {cols[0]!r} is not an integer") from None
                if tid != last_id + 1:
                    if tid == 1:
                        raise ValueError(f"{path}, line {lineno}: token id restarts at 1 inside a sentence (started "
                                         f"at line {first}): a blank line between sentences is missing")
                    raise ValueError(f"{path}, line {lineno}: token id {tid} follows {last_id} (expected {last_id + 1})")
                last_id = tid
            if first is None:
                first = lineno
            tokens.append(cols[ti])
            tags.append(cols[gi])
            for lst, k in zip(feats, fcols):
                lst.append(cols[k])
    flush()
    if not sentences:
        raise ValueError(f"{path}: no sentences found")
    return sentences


def write_conll(sentences, path):
    """Write sentences as two-column ``token tag`` CoNLL lines with blank lines between sentences."""
    with open(path, "w", encoding="utf-8") as f:
        for s in sentences:
            for tok, tag in zip(s.tokens, s.tags):
                if not tok or any(c.isspace() for c in tok):
                    raise ValueError(f"token {tok!r} is empty or contains whitespace; it cannot be written as CoNLL")
                f.write(f"{tok} {tag}\n")
            f.write("\n")
    return path


class TagVocabulary:
    """Tags <-> ids with id 0 reserved for padding (so padded steps can be masked)."""

    PAD = "<pad>"

    def __init__(self, tags):
        self.tags = [self.PAD] + list(tags)
        self.index = {t: i for i, t in enumerate(self.tags)}
        if len(self.index) != len(self.tags):
            raise ValueError("TagVocabulary: duplicate tags")

    @classmethod
    def build(cls, sentences):
        return cls(sorted({t for s in sentences for t in s.tags}))

    def __len__(self):
        return len(self.tags)

    def encode(self, sentences, unknown="error", what="data"):
        """Tag ids per sentence. ``unknown="error"`` raises on a tag not in the vocabulary (naming the tag,
        sentence and line); ``unknown="O"`` maps it to ``"O"`` (which must be known)."""
        if unknown not in ("error", "O"):
            raise ValueError(f"unknown must be 'error' or 'O', got {unknown!r}")
        out = []
        for i, s in enumerate(sentences):
            ids = []
            for tag in s.tags:
                j = self.index.get(tag)
                if j is None or j == 0:
                    if unknown == "O" and "O" in self.index:
                        j = self.index["O"]
                    else:
                        where = f"line {s.line}" if s.line is not None else f"sentence {i}"
                        known = self.tags[1:]
                        raise ValueError(f"{what}: tag {tag!r} ({where}) was not seen in the training data; known "
                                         f"tags: {known[:20]}{' ...' if len(known) > 20 else ''}")
                ids.append(j)
            out.append(ids)
        return out

    def decode(self, ids):
        return [self.tags[int(i)] for i in ids]


# ------------------------------------------------------------------------------ generated task
_FILLER = ["the", "a", "of", "and", "to", "was", "is", "with", "for", "on", "by", "from", "said", "that", "at",
           "met", "saw", "called", "near", "after"]
_NAMES = ["alba", "bren", "cato", "dova", "elin", "faro", "gale", "hume", "ivor", "jask", "kell", "lund", "mora",
          "nils", "orin", "pell", "quin", "rask", "sova", "tarn"]
_LEFT = {"mr": "PER", "dr": "PER"}
_RIGHT = {"inc": "ORG", "corp": "ORG", "city": "LOC", "river": "LOC"}


def generate_two_sided_tagging(n_sentences, seed=0, min_len=6, max_len=16, scheme="BIO"):
    """Generated BIO (or IOBES) sentences whose entity types need context on both sides.

    Each sentence is filler words with one to three entities of 1-3 name words. An entity is marked either by a
    left trigger right before it (``mr``/``dr`` -> PER) or by a right trigger right after it (``inc``/``corp`` ->
    ORG, ``city``/``river`` -> LOC). The name words themselves carry no type. Triggers are tagged ``O``.
    """
    if scheme not in ("BIO", "IOBES"):
        raise ValueError(f"scheme must be 'BIO' or 'IOBES', got {scheme!r}")
    if int(n_sentences) != n_sentences or n_sentences < 1:
        raise ValueError(f"n_sentences must be a positive int, got {n_sentences!r}")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(n_sentences)):
        target = int(rng.integers(min_len, max_len + 1))
        toks, tags = [], []
        n_ent = int(rng.integers(1, 4))
        for e in range(n_ent):
            for _ in range(int(rng.integers(0, 3))):
                toks.append(str(rng.choice(_FILLER)))
                tags.append("O")
            k = int(rng.integers(1, 4))
            names = [str(rng.choice(_NAMES)) for _ in range(k)]
            if rng.random() < 1 / 3:
                trig = str(rng.choice(list(_LEFT)))
                typ = _LEFT[trig]
                toks.append(trig)
                tags.append("O")
                toks += names
                tags += _span_tags(typ, k, scheme)
            else:
                trig = str(rng.choice(list(_RIGHT)))
                typ = _RIGHT[trig]
                toks += names
                tags += _span_tags(typ, k, scheme)
                toks.append(trig)
                tags.append("O")
        while len(toks) < target:
            toks.append(str(rng.choice(_FILLER)))
            tags.append("O")
        out.append(Sentence(toks, tags, None))
    return out


def _span_tags(typ, k, scheme):
    if scheme == "BIO":
        return [f"B-{typ}"] + [f"I-{typ}"] * (k - 1)
    if k == 1:
        return [f"S-{typ}"]
    return [f"B-{typ}"] + [f"I-{typ}"] * (k - 2) + [f"E-{typ}"]


_SUFFIX = {"PER": ("son", "sen"), "LOC": ("ville", "burg"), "ORG": ("tech", "soft")}
_SYLL = ["ka", "lo", "mi", "ne", "ru", "ta", "po", "si", "da", "fe", "gu", "ho", "ji", "bo", "ze", "wa"]


def generate_suffix_tagging(n_sentences, seed=0, held_out=False, min_len=5, max_len=12):
    """Generated BIO sentences where an entity's type is written in its words' suffix.

    Entity words are a random stem of 2-3 syllables plus a type suffix (``-son``/``-sen`` -> PER, ``-ville``/``-burg``
    -> LOC, ``-tech``/``-soft`` -> ORG); other words are filler. Stems of the training split (``held_out=False``)
    start with a syllable from the first half of the syllable list, those of the held-out split from the second
    half, so no held-out entity word occurs in training data.
    """
    if int(n_sentences) != n_sentences or n_sentences < 1:
        raise ValueError(f"n_sentences must be a positive int, got {n_sentences!r}")
    rng = np.random.default_rng(seed)
    half = len(_SYLL) // 2
    first = _SYLL[half:] if held_out else _SYLL[:half]
    types = sorted(_SUFFIX)
    out = []
    for _ in range(int(n_sentences)):
        target = int(rng.integers(min_len, max_len + 1))
        toks, tags = [], []
        for _e in range(int(rng.integers(1, 3))):
            for _ in range(int(rng.integers(0, 3))):
                toks.append(str(rng.choice(_FILLER)))
                tags.append("O")
            typ = types[int(rng.integers(len(types)))]
            k = int(rng.integers(1, 3))
            for j in range(k):
                stem = str(rng.choice(first)) + "".join(str(rng.choice(_SYLL)) for _ in range(int(rng.integers(1, 3))))
                toks.append(stem + str(rng.choice(_SUFFIX[typ])))
                tags.append(("B-" if j == 0 else "I-") + typ)
        while len(toks) < target:
            toks.append(str(rng.choice(_FILLER)))
            tags.append("O")
        out.append(Sentence(toks, tags, None))
    return out
