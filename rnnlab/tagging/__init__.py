"""Sequence labelling helpers: conlleval-exact span extraction and entity-level scores."""
from .spans import SpanScores, chunk_tag, extract_spans, span_scores, token_accuracy  # noqa: F401
