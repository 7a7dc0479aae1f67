"""Data for sequence-to-sequence tasks: generated date/addition pairs, a TSV loader, vocabularies.

* :func:`date_pairs` / :func:`date_splits`: dates written in many human formats -> ISO ``YYYY-MM-DD``
  (deterministic for a seed; the held-out set shares no source string with the training set).
* :func:`addition_pairs` / :func:`addition_splits`: ``"123+45"`` -> ``"168"`` (held-out operand pairs are
  disjoint from training); :func:`keras_addition_pairs`: the keras-io ``addition_rnn`` example's recipe
  (operands of 1 to ``digits`` digits, ``a+b`` and ``b+a`` once), what ``rnnlab train seq2seq --generate
  addition`` trains on.
* :func:`load_pairs`: ``source<TAB>target`` lines (extra columns ignored, blank lines skipped; a line
  without a tab is an error naming its line number).
* :class:`Vocabulary`: char- or word-level token <-> id maps with reserved ids ``<pad>=0``, ``<start>=1``,
  ``<end>=2``, ``<unk>=3``; unseen tokens map to ``<unk>`` with a warning.
"""
from __future__ import annotations

import datetime as _dt
import warnings

import numpy as np

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)
PAD_ID, START_ID, END_ID, UNK_ID = 0, 1, 2, 3

# ------------------------------------------------------------------------------------------ dates
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
FIRST_DATE = _dt.date(1950, 1, 1)
LAST_DATE = _dt.date(2049, 12, 31)


def _ordinal(d: int) -> str:
    suffix = "th" if 11 <= d % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(d % 10, "th")
    return f"{d}{suffix}"


def _case(s: str, how: str) -> str:
    return s.upper() if how == "upper" else s.lower() if how == "lower" else s


def _format_date(d: _dt.date, fmt: int, case: str) -> str:
    """One of the human formats (``fmt`` indexes :data:`DATE_FORMATS`)."""
    M, Mab = MONTHS[d.month - 1], MONTHS[d.month - 1][:3]
    W, Wab = WEEKDAYS[d.weekday()], WEEKDAYS[d.weekday()][:3]
    Y, y = f"{d.year}", f"{d.year % 100:02d}"
    dd, mm = f"{d.day:02d}", f"{d.month:02d}"
    D, m = str(d.day), str(d.month)
    name = DATE_FORMATS[fmt]
    text = {
        "D Month YYYY": f"{D} {M} {Y}",
        "DD Month YYYY": f"{dd} {M} {Y}",
        "Month D, YYYY": f"{M} {D}, {Y}",
        "Mon D YYYY": f"{Mab} {D} {Y}",
        "D Mon YYYY": f"{D} {Mab} {Y}",
        "D Mon YY": f"{D} {Mab} {y}",
        "Mon D, YY": f"{Mab} {D}, {y}",
        "Dth Month YYYY": f"{_ordinal(d.day)} {M} {Y}",
        "Dth of Month, YYYY": f"{_ordinal(d.day)} of {M}, {Y}",
        "Month Dth, YYYY": f"{M} {_ordinal(d.day)}, {Y}",
        "Mon Dth YY": f"{Mab} {_ordinal(d.day)} {y}",
        "Weekday, Month D, YYYY": f"{W}, {M} {D}, {Y}",
        "Weekday D Month YYYY": f"{W} {D} {M} {Y}",
        "Wkd, D Mon YYYY": f"{Wab}, {D} {Mab} {Y}",
        "Wkd Mon Dth YY": f"{Wab} {Mab} {_ordinal(d.day)} {y}",
        "DD.MM.YYYY (d/m/y)": f"{dd}.{mm}.{Y}",
        "D.M.YY (d/m/y)": f"{D}.{m}.{y}",
        "DD/MM/YYYY (d/m/y, 'dmy' marker)": f"{dd}/{mm}/{Y} dmy",
        "MM/DD/YYYY (m/d/y)": f"{mm}/{dd}/{Y}",
        "M/D/YY (m/d/y)": f"{m}/{D}/{y}",
        "MM-DD-YY (m/d/y)": f"{mm}-{dd}-{y}",
        "YYYY-MM-DD": f"{Y}-{mm}-{dd}",
        "YYYYMMDD": f"{Y}{mm}{dd}",
        "D-Mon-YYYY": f"{D}-{Mab}-{Y}",
    }[name]
    return _case(text, case)


#: the formats; numeric ones are unambiguous by separator: ``.`` is day.month.year, ``/`` is US
#: month/day/year unless followed by the marker ``dmy``, ``-`` with a 2-digit year is month-day-year.
#: Two-digit years mean 1950-2049 (``50``-``99`` -> 19xx, ``00``-``49`` -> 20xx).
DATE_FORMATS = [
    "D Month YYYY", "DD Month YYYY", "Month D, YYYY", "Mon D YYYY", "D Mon YYYY", "D Mon YY", "Mon D, YY",
    "Dth Month YYYY", "Dth of Month, YYYY", "Month Dth, YYYY", "Mon Dth YY", "Weekday, Month D, YYYY",
    "Weekday D Month YYYY", "Wkd, D Mon YYYY", "Wkd Mon Dth YY", "DD.MM.YYYY (d/m/y)", "D.M.YY (d/m/y)",
    "DD/MM/YYYY (d/m/y, 'dmy' marker)", "MM/DD/YYYY (m/d/y)", "M/D/YY (m/d/y)", "MM-DD-YY (m/d/y)",
    "YYYY-MM-DD", "YYYYMMDD", "D-Mon-YYYY",
]
_CASES = ("title", "lower", "upper")


def _check_count(n, what="n"):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"{what} must be a non-negative int, got {n!r}")
    return int(n)


def date_pairs(n, seed=0, exclude=()):
    """``n`` distinct ``(human date, ISO date)`` pairs, deterministic for ``seed``.

    Dates are uniform in 1950-01-01 .. 2049-12-31, formats uniform over :data:`DATE_FORMATS`, letter case
    title/lower/UPPER. Source strings in ``exclude`` (a set) are never returned.
    """
    n = _check_count(n)
    gen = np.random.default_rng(seed)
    span = (LAST_DATE - FIRST_DATE).days + 1
    seen = set(exclude)
    out = []
    while len(out) < n:
        k = max(64, 2 * (n - len(out)))
        days = gen.integers(0, span, size=k)
        fmts = gen.integers(0, len(DATE_FORMATS), size=k)
        cases = gen.integers(0, len(_CASES), size=k)
        for dd, f, c in zip(days, fmts, cases):
            d = FIRST_DATE + _dt.timedelta(days=int(dd))
            src = _format_date(d, int(f), _CASES[int(c)])
            if src in seen:
                continue
            seen.add(src)
            out.append((src, d.isoformat()))
            if len(out) == n:
                break
    return out


def date_splits(n_train, n_test, seed=0):
    """``(train, test)`` date pairs; no test source string occurs in train."""
    test = date_pairs(n_test, seed=seed + 1_000_003)
    train = date_pairs(n_train, seed=seed, exclude={s for s, _ in test})
    return train, test


def addition_pairs(n, digits=3, seed=0, exclude=()):
    """``n`` distinct ``("a+b", "a+b evaluated")`` pairs with 0 <= a, b < 10**digits (``exclude``: sources)."""
    n = _check_count(n)
    if isinstance(digits, bool) or not isinstance(digits, (int, np.integer)) or not 1 <= digits <= 9:
        raise ValueError(f"digits must be an int in [1, 9], got {digits!r}")
    hi = 10 ** int(digits)
    if n > hi * hi - len(exclude):
        raise ValueError(f"cannot draw {n} distinct additions of {digits}-digit numbers (only {hi * hi} exist)")
    gen = np.random.default_rng(seed)
    seen = set(exclude)
    out = []
    while len(out) < n:
        ab = gen.integers(0, hi, size=(max(64, 2 * (n - len(out))), 2))
        for a, b in ab:
            src = f"{a}+{b}"
            if src in seen:
                continue
            seen.add(src)
            out.append((src, str(int(a) + int(b))))
            if len(out) == n:
                break
    return out


def addition_splits(n_train, n_test, digits=3, seed=0):
    test = addition_pairs(n_test, digits, seed=seed + 1_000_003)
    train = addition_pairs(n_train, digits, seed=seed, exclude={s for s, _ in test})
    return train, test


def keras_addition_pairs(n, digits=3, seed=0):
    """``n`` distinct ``("a+b", "a+b evaluated")`` pairs drawn as the keras-io ``addition_rnn`` example draws
    them (described, not copied): each operand has a length drawn uniformly from 1..``digits`` and digits drawn
    uniformly from 0-9 (a leading zero gives a shorter number: ``int("07") == 7``), and a pair whose operands
    were already drawn in either order is skipped (``a+b`` and ``b+a`` count once). Unlike :func:`addition_pairs`
    (both operands uniform below ``10**digits``, so mostly ``digits`` long), short operands are common.

    The example pads the question to ``2 * digits + 1`` characters for its fixed-length model; these are the
    plain strings (a sequence-to-sequence model reads any length, and ``rnnlab translate "12+5"`` then asks in
    the form it was trained on). ``rnnlab train seq2seq --generate addition`` splits them with
    :func:`split_pairs`, as ``--pairs`` splits a file written by ``benchmarks/addition_pairs.py``."""
    n = _check_count(n)
    if isinstance(digits, bool) or not isinstance(digits, (int, np.integer)) or not 1 <= digits <= 9:
        raise ValueError(f"digits must be an int in [1, 9], got {digits!r}")
    digits = int(digits)
    limit = (10 ** digits) * (10 ** digits + 1) // 2
    if n > limit:
        raise ValueError(f"cannot draw {n} distinct unordered additions of up to {digits} digits (at most {limit})")
    gen = np.random.default_rng(seed)
    seen, pairs = set(), []

    def number():
        return int("".join(str(d) for d in gen.integers(0, 10, size=gen.integers(1, digits + 1))))

    while len(pairs) < n:
        a, b = number(), number()
        key = (min(a, b), max(a, b))
        if key in seen:
            continue
        seen.add(key)
        pairs.append((f"{a}+{b}", str(a + b)))
    return pairs


# ------------------------------------------------------------------------------------------ TSV
def load_pairs(path, encoding="utf-8"):
    """Read ``source<TAB>target`` lines into a list of pairs.

    Blank lines are skipped; columns after the second are ignored (e.g. Tatoeba attributions).
    A non-blank line without a tab raises ``ValueError`` naming the file and line number; undecodable bytes
    raise :class:`rnnlab.io.FileEncodingError` (a ``ValueError``) with the file, the line and the byte offset.
    """
    from .. import io as _rio

    pairs = []
    offset = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as e:   # the file, the line and the byte offset; suggests --encoding
                raise _rio.decode_error(path, e, line=lineno, line_start=offset, encoding=encoding) from None
            except LookupError:
                raise ValueError(f"{path}: unknown encoding {encoding!r}") from None
            offset += len(raw)
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if "\t" not in line:
                raise ValueError(f"{path}, line {lineno}: expected 'source<TAB>target', found no tab in "
                                 f"{line[:60]!r}")
            cols = line.split("\t")
            pairs.append((cols[0], cols[1]))
    if not pairs:
        raise ValueError(f"{path}: no source<TAB>target pairs found")
    return pairs


def split_pairs(pairs, test_fraction=0.1, seed=0):
    """Shuffle deterministically and split into ``(train, test)``; test sources never occur in train."""
    if not 0.0 <= float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    pairs = list(pairs)
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_test = int(round(len(pairs) * float(test_fraction)))
    test = [pairs[i] for i in order[:n_test]]
    test_src = {s for s, _ in test}
    train = [pairs[i] for i in order[n_test:] if pairs[i][0] not in test_src]
    return train, test


# ------------------------------------------------------------------------------------------ vocabulary
class Vocabulary:
    """Token <-> id map. ``level="char"`` splits text into characters, ``"word"`` on whitespace.

    Ids 0-3 are reserved: ``<pad>`` (0, also the padding of batches), ``<start>``, ``<end>``, ``<unk>``.
    ``encode`` maps tokens not in the vocabulary to ``<unk>`` and warns once per call.
    """

    def __init__(self, tokens=(), level="char"):
        if level not in ("char", "word"):
            raise ValueError(f"Vocabulary: level must be 'char' or 'word', got {level!r}")
        self.level = level
        self.itos = list(SPECIALS)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        for t in tokens:
            if t not in self.stoi:
                self.stoi[t] = len(self.itos)
                self.itos.append(t)

    @classmethod
    def build(cls, texts, level="char", min_count=1, max_size=None):
        """Vocabulary of the tokens in ``texts`` (most frequent first, ties by first appearance)."""
        counts: dict[str, int] = {}
        for text in texts:
            for t in cls.tokenize_text(text, level):
                counts[t] = counts.get(t, 0) + 1
        toks = [t for t, c in sorted(counts.items(), key=lambda kv: -kv[1]) if c >= min_count and t not in SPECIALS]
        if max_size is not None:
            toks = toks[: max(0, int(max_size) - len(SPECIALS))]
        return cls(toks, level)

    @staticmethod
    def tokenize_text(text, level):
        if not isinstance(text, str):
            raise TypeError(f"Vocabulary: text must be a str, got {type(text).__name__}")
        return list(text) if level == "char" else text.split()

    def tokenize(self, text):
        return self.tokenize_text(text, self.level)

    def __len__(self):
        return len(self.itos)

    def __contains__(self, token):
        return token in self.stoi

    def encode(self, text, add_start=False, add_end=False, warn=True):
        """``text`` -> list of ids (unknown tokens -> ``<unk>`` with a warning)."""
        toks = self.tokenize(text)
        ids = [self.stoi.get(t, UNK_ID) for t in toks]
        if warn and UNK_ID in ids:
            unknown = sorted({t for t in toks if t not in self.stoi})
            warnings.warn(f"{len(unknown)} token(s) not in the vocabulary mapped to {UNK}: {unknown[:10]}",
                          stacklevel=2)
        return ([START_ID] if add_start else []) + ids + ([END_ID] if add_end else [])

    def decode(self, ids, strip=True):
        """ids -> text; stops at ``<end>`` and drops ``<pad>``/``<start>`` when ``strip``."""
        out = []
        for i in ids:
            i = int(i)
            if strip and i == END_ID:
                break
            if strip and i in (PAD_ID, START_ID):
                continue
            out.append(self.itos[i] if 0 <= i < len(self.itos) else UNK)
        return self.join(out)

    def join(self, tokens):
        return ("" if self.level == "char" else " ").join(tokens)

    def get_config(self):
        return {"level": self.level, "tokens": self.itos[len(SPECIALS):]}

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg["tokens"], cfg["level"])


def pad_ids(seqs, maxlen=None, dtype=np.int32):
    """Right-pad lists of ids with 0 into a ``(len(seqs), maxlen)`` array (longer ones are cut)."""
    if maxlen is None:
        maxlen = max((len(s) for s in seqs), default=0)
    out = np.zeros((len(seqs), maxlen), dtype=dtype)
    for i, s in enumerate(seqs):
        s = s[:maxlen]
        out[i, :len(s)] = s
    return out
