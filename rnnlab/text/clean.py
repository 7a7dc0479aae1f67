"""Cleaning raw review text (IMDB and similar scraped HTML snippets).

What :func:`clean_review` does, in order:

1. ``<br />``, ``<br/>``, ``<br>`` (any case, any spacing) become a single space: the IMDB reviews use
   them as line breaks (``<br /><br />`` between paragraphs) and without this step
   ``"end.<br /><br />Next"`` would produce the token ``br`` (twice) after Keras-style filtering.
2. Other HTML tags (``<i>``, ``</b>``, ...) are removed when ``strip_tags`` is true; HTML entities
   (``&amp;``, ``&quot;``, ``&#39;`` ...) are unescaped with :func:`html.unescape`.
3. Punctuation is *not* deleted here: with ``separate_punctuation=True`` the characters of
   ``punctuation`` get spaces around them so they become tokens of their own (useful for models that can
   use "!" or "?" as sentiment cues, and for ``split``-only tokenizers); otherwise they are left to the
   tokenizer, whose default Keras filters delete them. Apostrophes inside words (``don't``) are kept.
4. Runs of whitespace collapse to one space; ends are stripped. Lower-casing is left to the tokenizer.
"""
from __future__ import annotations

import html
import re

_BR = re.compile(r"<\s*br\s*/?\s*>", re.IGNORECASE)
_TAG = re.compile(r"</?[A-Za-z][^<>]{0,200}>")
_SPACES = re.compile(r"\s+")

#: characters that ``separate_punctuation`` turns into separate tokens
PUNCTUATION = "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~"


def strip_html_breaks(text):
    """Replace every ``<br />`` variant by one space."""
    return _BR.sub(" ", text)


def clean_review(text, strip_tags=True, separate_punctuation=False, punctuation=PUNCTUATION):
    """Clean one review (see the module docstring for the exact steps)."""
    if not isinstance(text, str):
        raise TypeError(f"clean_review: expected a str, got {type(text).__name__}")
    text = strip_html_breaks(text)
    if strip_tags:
        text = _TAG.sub(" ", text)
    text = html.unescape(text) if "&" in text else text
    if separate_punctuation and punctuation:
        text = re.sub("([" + re.escape(punctuation) + "])", r" \1 ", text)
    return _SPACES.sub(" ", text).strip()
