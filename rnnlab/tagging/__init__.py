"""Sequence labelling: the tagger (:mod:`rnnlab.tagging.tagger`, a model of the one training engine) and
conlleval-exact span extraction and entity-level scores (:mod:`rnnlab.tagging.spans`)."""
from .spans import SpanScores, chunk_tag, extract_spans, span_scores, token_accuracy  # noqa: F401

_TAGGER_NAMES = ("Tagger", "TaggingBatches", "ValidationScores", "TagAccuracy", "build_tagger", "Vocab")


def __getattr__(name):   # the tagger (and the engine under it) is imported on first use
    if name in _TAGGER_NAMES:
        from . import tagger

        return getattr(tagger, name)
    raise AttributeError(f"module 'rnnlab.tagging' has no attribute {name!r}")
