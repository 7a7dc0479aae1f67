"""A sequence tagger: one tag per token, (Bi)LSTM/GRU over word embeddings and optional character features.

Architecture, for a padded batch of word ids ``w`` (B, T) (0 = padding) and, optionally, character ids
``c`` (B, T, L) of each word (0 = padding)::

    m   = (w != 0)                                              token mask (B, T)
    e   = Embedding(V, E, mask_zero=True)(w)                    (B, T, E)
    f   = Bidirectional(LSTM(Uc))(Embedding(C, Ec, mask_zero)(c reshaped to (B*T, L)), mask=(c != 0))
          reshaped to (B, T, 2 Uc)                              last states of a char BiLSTM per word
          (``char_encoder="lstm"``, the default); with ``"cnn"`` instead (Ma & Hovy 2016) the character
          convolution ``f = max_{l: c_l != 0} tanh(Conv1D(Fc, 3, padding="same")(Embedding(c) * [c != 0]))_l``
          (B, T, Fc; padding characters read as zeros, so a word's features do not depend on its batch),
          ``Fc = char_filters``; with ``"both"`` the two side by side, ``[f_lstm ; f_cnn]`` (B, T, 2 Uc + Fc)
    k   = casing(word) one-hot (B, T, 6), with ``casing=True`` (needs the characters): all lower, all upper,
          initial upper, all digits, contains a digit, other (punctuation, mixed) -- fixed features, no weights
    s   = Embedding(S, shape_dim)(shape(word)) (B, T, shape_dim), with ``shape_dim > 0`` (needs the characters):
          the collapsed word shape (:func:`word_shape`: upper -> X, lower -> x, digit -> d, other characters kept,
          runs of one symbol collapsed: "Paris" -> "Xx", "@bob" -> "@x", "#NYC" -> "#X", "New-York" -> "Xx-Xx",
          "10:30" -> "d:d"), its vocabulary the shapes of the training words (an unseen shape -> unknown)
    g_j = Embedding(V_j, D)(features[..., j])                   (B, T, D) per feature column j (e.g. POS tags)
    h_0 = [e ; f ; k ; s ; g_1 .. g_k]  (concatenated on the feature axis; just e without characters), then Dropout
    h_k = [Bidirectional](LSTM|GRU|SimpleRNN(U, return_sequences=True))(h_{k-1}, mask=m)   k = 1..layers
          then Dropout(output_dropout) on h_k when ``output_dropout > 0`` (between layers and before the scores)
    p   = TimeDistributed(Dense(n_tags, softmax))(h_layers)    (B, T, n_tags)
    L   = masked sparse categorical cross-entropy(tags, p, mask=m)   (padding steps do not count)

With ``crf=True`` the output is linear, ``x = TimeDistributed(Dense(n_tags))(h_layers)`` (emission scores), and
a linear-chain :class:`rnnlab.layers.CRF` scores whole tag sequences: the loss is its mean negative
log-likelihood (forward algorithm), its gradient ``dL/dx`` the forward-backward marginals minus the gold one-hots,
and :meth:`Tagger.predict` is the Viterbi decode. ``tag_scheme`` (``iob1``, ``iob2``, ``iobes``) constrains the
CRF to the valid transitions of that scheme; the padding tag is never allowed.

Word dropout (Lample et al. 2016): with ``word_dropout = q > 0``, during training every occurrence of a word
seen once in the training data (``Tagger.singletons``) is replaced by ``<unk>`` with probability q, so the
``<unk>`` embedding is trained on words like the unseen ones of the test data. With ``word_dropout_alpha = a > 0``
instead (Kiperwasser & Goldberg 2016), every occurrence of every word ``v`` seen ``n_v`` times in training
(``Tagger.word_counts``) becomes ``<unk>`` with probability ``a / (a + n_v)`` (a = 1: 1/2 for a word seen once,
1/3 twice, 1/11 ten times), so frequent words are dropped rarely and the model also learns to tag known words
from their characters and context.

Word normalisation (``normalize=True``): the *word-vocabulary lookup* (not the characters, not the casing
features, which still read the token as written) maps URLs (``http://``, ``https://``, ``www.``) to ``<url>``,
``@name`` to ``<user>``, every digit to ``0`` and strips a leading ``#`` (``#Paris`` is looked up as ``paris``
with ``lowercase``), after the optional lowercasing: :func:`normalize_word`.

Backward runs the same layers in reverse order; the gradient of ``h_0`` is split back into ``dL/de`` (to the
word embedding), ``dL/df`` (reshaped to (B*T, 2 Uc), through the char BiLSTM to the char embedding) and
``dL/dg_j`` (to each feature column's embedding). Every layer's own backward is the hand-written one in
:mod:`rnnlab.layers`; this module only routes gradients.

Training runs in the one engine (:class:`rnnlab.models.engine.Engine`, issue 16): the tagger is an engine model
whose hooks run the forward/backward above (word dropout in the training forward), compiled with the masked
cross-entropy or :class:`rnnlab.layers.crf.CRFLoss`; :meth:`Tagger.fit` is ``Engine.fit`` over a
:class:`TaggingBatches` dataset (padded per batch) with :class:`ValidationScores` and
``EarlyStopping(restore_best_weights=True)``; ``train_on_batch``/``train_step`` take the arrays of
:meth:`Tagger.arrays`.

Files: :meth:`Tagger.save` writes one ``.npz`` (weights + a JSON document with the vocabularies and
hyper-parameters, ``"version": 3``); :meth:`Tagger.load` reads it with ``allow_pickle=False``. Files without a
version (version 1, before feature columns), version-2 files (before ``output_dropout``) and version-3 files
(before ``word_dropout_alpha``, ``normalize``, ``shape_dim`` and ``char_encoder``) load unchanged; a newer version is a ``FileFormatError`` naming it.
"""
from __future__ import annotations

import math
import os
import re
import sys
import time

import numpy as np

from .. import backend
from ..callbacks import Callback, EarlyStopping, TimeBudget
from ..metrics import Metric
from ..models.data_adapters import PyDataset
from ..models.engine import Engine
from ..layers.crf import CRFLoss
from ..layers import GRU, LSTM, Bidirectional, Dense, Dropout, Embedding, SimpleRNN, TimeDistributed
from ..losses import SparseCategoricalCrossentropy
from .spans import chunk_tag, span_scores, token_accuracy

_FORMAT = "rnnlab-tagger"
#: the tagger file format: 1 = before feature columns (files without a "version" key), 2 = + "features",
#: 3 = + "output_dropout" in the config (a version-2 file has none: 0), 4 = + "word_dropout_alpha", "normalize"
#: "shape_dim", "char_encoder" and "char_filters" in the config and the "shapes" vocabulary (a version-3 file has
#: none: 0, False, 0, "lstm", no shapes)
_VERSION = 4
_CELLS = {"lstm": LSTM, "gru": GRU, "rnn": SimpleRNN}
PAD, UNK = "<pad>", "<unk>"


class Vocab:
    """Items <-> ids with 0 = padding and 1 = unknown."""

    def __init__(self, items):
        self.items = [PAD, UNK] + [i for i in items if i not in (PAD, UNK)]
        self.index = {t: i for i, t in enumerate(self.items)}

    @classmethod
    def build(cls, sequences, min_count=1):
        counts: dict = {}
        for seq in sequences:
            for t in seq:
                counts[t] = counts.get(t, 0) + 1
        return cls(sorted(t for t, n in counts.items() if n >= min_count))

    def __len__(self):
        return len(self.items)

    def ids(self, seq):
        return [self.index.get(t, 1) for t in seq]


class Tagger(Engine):
    """(Bi)RNN tagger over word embeddings, optionally with a character BiLSTM per word (see module docstring).

    The tagger is a model of the one training engine (:class:`rnnlab.models.engine.Engine`): its inputs are
    ``words`` (B, T) ids, ``chars`` (B, T, L) ids (with character features) and ``features`` (B, T, k) ids (with
    feature columns), its one output ``tags`` the (B, T, n_tags) probabilities (emission scores with a CRF). It is
    compiled with the masked cross-entropy or :class:`rnnlab.layers.crf.CRFLoss`, so the engine's one training
    step (forward, loss, backward, the NaN policy, the update) trains it: :meth:`fit` on sentences runs
    ``Engine.fit`` over a :class:`TaggingBatches` dataset, with early stopping on the validation F1/accuracy
    (:class:`ValidationScores` + :class:`rnnlab.callbacks.EarlyStopping`). ``predict``/``evaluate`` take
    sentences (lists of tokens / :class:`~rnnlab.datasets.conll.Sentence`), not arrays.
    """

    def __init__(self, words, tags, chars=None, embedding_dim=50, units=64, cell="lstm", layers=1,
                 bidirectional=True, char_dim=16, char_units=16, dropout=0.0, lowercase=False, max_word_len=20,
                 crf=False, tag_scheme=None, casing=False, word_dropout=0.0, features=None, feature_dim=25,
                 output_dropout=0.0, word_dropout_alpha=0.0, normalize=False, shape_dim=0, shapes=None,
                 char_encoder="lstm", char_filters=30):
        if cell not in _CELLS:
            raise ValueError(f"cell must be one of {sorted(_CELLS)}, got {cell!r}")
        for name, v in (("embedding_dim", embedding_dim), ("units", units), ("layers", layers),
                        ("char_dim", char_dim), ("char_units", char_units), ("max_word_len", max_word_len),
                        ("feature_dim", feature_dim)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"Tagger: {name} must be a positive int, got {v!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Tagger: dropout must be in [0, 1), got {dropout}")
        if not 0.0 <= word_dropout < 1.0:
            raise ValueError(f"Tagger: word_dropout must be in [0, 1), got {word_dropout}")
        if isinstance(output_dropout, bool) or not isinstance(output_dropout, (int, float, np.number)) \
                or not 0.0 <= output_dropout < 1.0:
            raise ValueError(f"Tagger: output_dropout must be a float in [0, 1), got {output_dropout!r}")
        if isinstance(word_dropout_alpha, bool) or not isinstance(word_dropout_alpha, (int, float, np.number)) \
                or not 0.0 <= word_dropout_alpha < math.inf:
            raise ValueError(f"Tagger: word_dropout_alpha must be a finite float >= 0 (0: the singleton rule of "
                             f"word_dropout), got {word_dropout_alpha!r}")
        if not isinstance(normalize, (bool, np.bool_)):
            raise ValueError(f"Tagger: normalize must be True or False, got {normalize!r}")
        if char_encoder not in ("lstm", "cnn", "both"):
            raise ValueError(f"Tagger: char_encoder must be 'lstm', 'cnn' or 'both', got {char_encoder!r}")
        if isinstance(char_filters, bool) or not isinstance(char_filters, (int, np.integer)) or char_filters < 1:
            raise ValueError(f"Tagger: char_filters must be a positive int, got {char_filters!r}")
        if isinstance(shape_dim, bool) or not isinstance(shape_dim, (int, np.integer)) or shape_dim < 0:
            raise ValueError(f"Tagger: shape_dim must be an int >= 0 (0: no word-shape feature), got {shape_dim!r}")
        if shape_dim and chars is None:
            raise ValueError("Tagger: shape_dim > 0 needs the character vocabulary (chars=...): the word shapes "
                             "are computed from each word's characters")
        if shape_dim and (not isinstance(shapes, (list, tuple, Vocab)) or not len(shapes)):
            raise ValueError("Tagger: shape_dim > 0 needs the shape vocabulary (shapes=..., a non-empty list of "
                             f"word shapes such as 'Xx'), got {type(shapes).__name__}")
        if casing and chars is None:
            raise ValueError("Tagger: casing=True needs the character vocabulary (chars=...): the casing features "
                             "are computed from each word's characters")
        if tag_scheme is not None and str(tag_scheme).lower() not in ("iob1", "iob2", "bio", "iobes"):
            raise ValueError(f"Tagger: tag_scheme must be None, 'iob1', 'iob2' or 'iobes'; got {tag_scheme!r}")
        self.words = words if isinstance(words, Vocab) else Vocab(words)
        self.tags = list(tags)
        if not self.tags or self.tags[0] != PAD:
            self.tags = [PAD] + [t for t in self.tags if t != PAD]
        self.tag_index = {t: i for i, t in enumerate(self.tags)}
        self.chars = None if chars is None else (chars if isinstance(chars, Vocab) else Vocab(chars))
        if features is not None and (not isinstance(features, (list, tuple)) or
                                     not all(isinstance(f, (list, tuple, Vocab)) for f in features)):
            raise ValueError("Tagger: features must be a list with one list of values (a vocabulary) per feature "
                             f"column, got {type(features).__name__}")
        self.features = [f if isinstance(f, Vocab) else Vocab(f) for f in features or []]
        self.config = dict(embedding_dim=int(embedding_dim), units=int(units), cell=cell, layers=int(layers),
                           bidirectional=bool(bidirectional), char_dim=int(char_dim), char_units=int(char_units),
                           dropout=float(dropout), lowercase=bool(lowercase), max_word_len=int(max_word_len),
                           crf=bool(crf), tag_scheme=None if tag_scheme is None else str(tag_scheme).lower(),
                           casing=bool(casing), word_dropout=float(word_dropout), feature_dim=int(feature_dim),
                           output_dropout=float(output_dropout), word_dropout_alpha=float(word_dropout_alpha),
                           normalize=bool(normalize), shape_dim=int(shape_dim), char_encoder=char_encoder,
                           char_filters=int(char_filters))
        self.singletons = np.zeros(0, dtype=np.int64)   # word ids seen once in training (set by build_tagger)
        self.word_counts = np.zeros(0, dtype=np.int64)  # training count per word id (set by build_tagger)
        self.lowercase = bool(lowercase)
        self.normalize = bool(normalize)
        self.max_word_len = int(max_word_len)
        cfg = self.config
        self.word_emb = Embedding(len(self.words), cfg["embedding_dim"], mask_zero=True, name="word_embedding")
        self.word_emb.build((None, None))
        feat = cfg["embedding_dim"]
        self.char_emb = self.char_rnn = self.char_conv = self.char_pool = None
        self._char_width = 0
        if self.chars is not None:
            self.char_emb = Embedding(len(self.chars), cfg["char_dim"], mask_zero=True, name="char_embedding")
            self.char_emb.build((None, None))
            if cfg["char_encoder"] in ("lstm", "both"):
                self.char_rnn = Bidirectional(LSTM(cfg["char_units"], name="char_lstm"), name="char_bilstm")
                self.char_rnn._maybe_build((None, None, cfg["char_dim"]))
                self._char_width += 2 * cfg["char_units"]
            if cfg["char_encoder"] in ("cnn", "both"):
                from ..layers import Conv1D, GlobalMaxPooling1D

                self.char_conv = Conv1D(cfg["char_filters"], 3, padding="same", activation="tanh", name="char_conv")
                self.char_conv._maybe_build((None, None, cfg["char_dim"]))
                self.char_pool = GlobalMaxPooling1D(use_mask=True, name="char_max_pool")
                self._char_width += cfg["char_filters"]
            feat += self._char_width
            if cfg["casing"]:
                feat += N_CASING
                self._case_tables = _casing_tables(self.chars.items)
        self.shapes = self.shape_emb = None
        if cfg["shape_dim"]:
            self.shapes = shapes if isinstance(shapes, Vocab) else Vocab(shapes)
            self.shape_emb = Embedding(len(self.shapes), cfg["shape_dim"], name="shape_embedding")
            self.shape_emb.build((None, None))
            self._shape_symbols = [""] + ["?"] + [_shape_symbol(ch) for ch in self.chars.items[2:]]
            self._shape_cache = {}
            feat += cfg["shape_dim"]
        self.feature_embs = []
        for k, vocab in enumerate(self.features):
            emb = Embedding(len(vocab), cfg["feature_dim"], name=f"feature_embedding_{k}")
            emb.build((None, None))
            self.feature_embs.append(emb)
            feat += cfg["feature_dim"]
        self.dropout = Dropout(cfg["dropout"], name="input_dropout") if cfg["dropout"] else None
        self.rnns = []
        # dropout on every recurrent layer's output sequence (between layers, and before the tag scores)
        self.output_dropouts = [Dropout(cfg["output_dropout"], name=f"output_dropout_{k}")
                                for k in range(cfg["layers"])] if cfg["output_dropout"] else []
        for k in range(cfg["layers"]):
            rnn = _CELLS[cell](cfg["units"], return_sequences=True, name=f"{cell}_{k}")
            if cfg["bidirectional"]:
                rnn = Bidirectional(rnn, name=f"bidirectional_{k}")
            rnn._maybe_build((None, None, feat))
            feat = rnn.output_shape[-1]
            self.rnns.append(rnn)
        self.out = TimeDistributed(Dense(len(self.tags), activation=None if cfg["crf"] else "softmax",
                                         name="tag_dense"), name="tag_output")
        self.out._maybe_build((None, None, feat))
        self.crf = None
        if cfg["crf"]:
            from ..layers.crf import CRF, scheme_constraints

            K = len(self.tags)
            if cfg["tag_scheme"]:
                st, al, en = scheme_constraints(self.tags, cfg["tag_scheme"], forbidden={PAD})
            else:   # no scheme: everything allowed but the padding tag
                st, en = np.arange(K) != 0, np.arange(K) != 0
                al = st[:, None] & st[None, :]
            self.crf = CRF(K, allowed=al, allowed_start=st, allowed_end=en, name="crf")
            self.crf._maybe_build((None, None, K))
        self.loss_fn = SparseCategoricalCrossentropy()
        self.loss = self.default_loss()   # what compile() uses by default (Keras: model.loss, the compiled loss)
        self.history = None

    # ----------------------------------------------------------------------------------- layers
    @property
    def layers(self):
        out = [self.word_emb]
        if self.chars is not None:
            out += [self.char_emb] + [x for x in (self.char_rnn, self.char_conv) if x is not None]
        if self.shape_emb is not None:
            out.append(self.shape_emb)
        return out + self.feature_embs + self.rnns + [self.out] + ([self.crf] if self.crf is not None else [])

    def trainable_weight_refs(self):
        return [r for layer in self.layers for r in layer.trainable_weight_refs()]

    def iter_weights(self):
        for layer in self.layers:
            yield from layer.iter_weights()

    def count_params(self):
        return sum(layer.count_params() for layer in self.layers)

    def get_weights(self):
        """Copies of every weight, in :meth:`iter_weights` order (what ``EarlyStopping`` keeps)."""
        return [owner.params[w].copy() for _, owner, w in self.iter_weights()]

    def set_weights(self, weights):
        refs = list(self.iter_weights())
        if len(weights) != len(refs):
            raise ValueError(f"Tagger.set_weights: {len(weights)} arrays for a tagger with {len(refs)} weights")
        for (path, owner, w), arr in zip(refs, weights):
            arr = np.asarray(arr)
            if arr.shape != owner.params[w].shape:
                raise ValueError(f"Tagger.set_weights: weight {path} has shape {owner.params[w].shape}, got "
                                 f"{arr.shape}")
            owner.params[w][...] = arr
        for layer in self.layers:
            layer._weights_changed()

    def reset_states(self):
        """Nothing to reset (the tagger's recurrent layers are not stateful)."""

    def compile(self, optimizer="adam", loss=None, metrics=None, loss_weights=None):
        """As ``Model.compile``; ``loss`` defaults to the tagger's own loss (:meth:`default_loss`), ``metrics`` to
        the token accuracy of the decoded tags (:class:`TagAccuracy`, Viterbi with a CRF)."""
        super().compile(optimizer, loss=self.default_loss() if loss is None else loss,
                        metrics=[TagAccuracy(self)] if metrics is None else metrics, loss_weights=loss_weights)

    def default_loss(self):
        """The masked sparse cross-entropy, or the CRF's negative log-likelihood (:class:`CRFLoss`)."""
        return self.loss_fn if self.crf is None else _SchemeCheckedLoss(self.crf, self)

    # the engine's model hooks: inputs words [, chars] [, features]; one output "tags"
    def _inputs_names(self):
        return ["words"] + (["chars"] if self.chars is not None else []) + (["features"] if self.features else [])

    def _outputs_names(self):
        return ["tags"]

    def _output_shapes(self):
        return [(None, None, len(self.tags))]

    def _prepare_inputs(self, x, what):
        names = self._inputs_names()
        if isinstance(x, dict):
            unknown = [k for k in x if k not in names]
            missing = [k for k in names if k not in x]
            if unknown or missing:
                raise ValueError(f"{what}: the tagger's inputs are {names}; got keys {sorted(x)}")
            xs = [x[k] for k in names]
        elif isinstance(x, (list, tuple)):
            xs = list(x)
        else:
            xs = [x]
        if len(xs) != len(names):
            raise ValueError(f"{what}: the tagger has {len(names)} input(s) {names}, got {len(xs)} array(s)")
        xs = [np.asarray(a) for a in xs]
        for nm, a in zip(names, xs):
            nd = 2 if nm == "words" else 3
            if a.ndim != nd or a.dtype.kind not in "iu" or a.shape[:2] != xs[0].shape[:2]:
                raise ValueError(f"{what}: input '{nm}' must be integer ids of shape (B, T{', k' if nd == 3 else ''}) "
                                 f"with (B, T) = {xs[0].shape[:2]} of 'words'; got {a.dtype} {a.shape}")
        if self.features and xs[-1].shape[2] != len(self.features):
            raise ValueError(f"{what}: input 'features' must have {len(self.features)} columns, got {xs[-1].shape}")
        return xs

    def _split_inputs(self, xs):
        w, rest = xs[0], list(xs[1:])
        c = rest.pop(0) if self.chars is not None else None
        f = rest.pop(0) if self.features else None
        return w, c, f

    def _run(self, xs, training):
        w, c, f = self._split_inputs(xs)
        if training:
            w = self.drop_words(w, backend.rng())
        p, mask = self.forward(w, c, training=training, f=f)
        return [p], [mask]

    def _backprop(self, grads):
        self.backward(grads[0])

    def _pack_outputs(self, outs):
        return outs[0]

    def arrays(self, sentences, unknown_tags="error"):
        """``(x, y)`` for a batch of :class:`~rnnlab.datasets.conll.Sentence`: the input arrays (see
        :meth:`inputs_for`) and the tag ids (B, T), padded to the longest sentence."""
        xs = self.inputs_for([s.tokens for s in sentences], [s.features for s in sentences] if self.features else None)
        _, _, y = self.encode([s.tokens for s in sentences], [s.tags for s in sentences], unknown_tags=unknown_tags)
        return xs, y

    def inputs_for(self, token_lists, feature_lists=None):
        """The engine's input arrays (a list: words [, chars] [, features]) for lists of tokens."""
        w, c, _ = self.encode(token_lists)
        xs = [w] + ([c] if c is not None else [])
        if self.features:
            xs.append(self.encode_features(feature_lists, w.shape[1]))
        return xs

    # ----------------------------------------------------------------------------------- encoding
    def _norm(self, tok):
        """The word-vocabulary key of a token: lowercased with ``lowercase``, then :func:`normalize_word` with
        ``normalize`` (the characters and casing features read the token as written)."""
        return word_key(tok, self.lowercase, self.normalize)

    def set_training_words(self, sentences):
        """Word dropout's statistics of the training ``sentences`` (not stored in tagger files): ``singletons``
        (ids of the words seen once) and ``word_counts`` (the count of every word id; 0 for padding/unknown)."""
        self.word_counts = word_count_array(self, sentences)
        self.singletons = _singletons(self.word_counts)

    def encode(self, token_lists, tag_lists=None, unknown_tags="error"):
        """Pad a batch: word ids (B, T), char ids (B, T, L) or None, tag ids (B, T) or None."""
        B = len(token_lists)
        T = max((len(s) for s in token_lists), default=0)
        T = max(T, 1)
        w = np.zeros((B, T), dtype=np.int64)
        for i, s in enumerate(token_lists):
            w[i, : len(s)] = self.words.ids([self._norm(t) for t in s])
        c = None
        if self.chars is not None:
            L = max(1, min(self.max_word_len, max((len(t) for s in token_lists for t in s), default=1)))
            c = np.zeros((B, T, L), dtype=np.int64)
            for i, s in enumerate(token_lists):
                for j, tok in enumerate(s):
                    ids = self.chars.ids(tok[:L])
                    c[i, j, : len(ids)] = ids
        y = None
        if tag_lists is not None:
            y = np.zeros((B, T), dtype=np.int64)
            for i, (s, tg) in enumerate(zip(token_lists, tag_lists)):
                if len(s) != len(tg):
                    raise ValueError(f"sentence {i}: {len(s)} tokens but {len(tg)} tags")
                for j, tag in enumerate(tg):
                    k = self.tag_index.get(tag)
                    if k is None or k == 0:
                        if unknown_tags == "O" and "O" in self.tag_index:
                            k = self.tag_index["O"]
                        else:
                            raise ValueError(f"sentence {i}, token {j}: tag {tag!r} was not seen in training; "
                                             f"known tags: {self.tags[1:]}")
                    y[i, j] = k
        return w, c, y

    def encode_features(self, feature_lists, T=None):
        """Feature-column ids (B, T, k) for ``feature_lists`` (per sentence: one list of values per feature
        column, as :attr:`Sentence.features`); None for a tagger without feature columns. Unseen values -> 1."""
        k = len(self.features)
        if not k:
            return None
        if feature_lists is None:
            raise ValueError(f"Tagger: this tagger reads {k} feature column(s) besides the words (e.g. POS tags); "
                             "give them (features=..., one list per column for each sentence)")
        B = len(feature_lists)
        T = max(1, max((len(f[0]) if f else 0 for f in feature_lists), default=1)) if T is None else T
        out = np.zeros((B, T, k), dtype=np.int64)
        for i, cols in enumerate(feature_lists):
            if cols is None or len(cols) != k:
                raise ValueError(f"Tagger: sentence {i} has {0 if cols is None else len(cols)} feature columns, the "
                                 f"tagger reads {k}")
            for j, (vocab, col) in enumerate(zip(self.features, cols)):
                out[i, : len(col), j] = vocab.ids(col)
        return out

    # ---------------------------------------------------------------------------- forward/backward
    def casing_features(self, c):
        """One-hot casing classes (B, T, 6) of the words whose character ids are ``c`` (B, T, L): all lower,
        all upper, initial upper, all digits, contains a digit, other (padding steps: all zero)."""
        up, low, dig = (t[c] for t in self._case_tables)          # (B, T, L) booleans per character
        n = (c != 0).sum(-1)
        n_up, n_low, n_dig = up.sum(-1), low.sum(-1), dig.sum(-1)
        cls = np.full(c.shape[:2], 5, dtype=np.int64)
        cls = np.where(n_dig > 0, 4, cls)
        cls = np.where((n_dig == n) & (n > 0), 3, cls)
        cls = np.where(up[..., 0] & (n_up < n) & (n_low == n - 1), 2, cls)
        cls = np.where((n_up == n) & (n > 0), 1, cls)
        cls = np.where((n_low == n) & (n > 0), 0, cls)
        out = np.zeros(c.shape[:2] + (N_CASING,), dtype=backend.floatx())
        np.put_along_axis(out, cls[..., None], 1.0, axis=-1)
        out *= (n > 0)[..., None]
        return out

    def shape_ids(self, c):
        """Word-shape ids (B, T) of the words whose character ids are ``c`` (B, T, L): :func:`word_shape` of the
        characters (an unknown character is the symbol ``?``) looked up in ``shapes`` (an unseen shape -> 1,
        padding -> 0)."""
        B, T, L = c.shape
        flat = np.ascontiguousarray(c.reshape(B * T, L))
        out = np.zeros(B * T, dtype=np.int64)
        cache, sym, index = self._shape_cache, self._shape_symbols, self.shapes.index
        for r in np.flatnonzero(flat[:, 0] != 0):
            row = flat[r]
            key = row.tobytes()
            v = cache.get(key)
            if v is None:
                v = index.get(_collapse_shape(sym[i] for i in row.tolist() if i), 1)
                if len(cache) < 200_000:
                    cache[key] = v
            out[r] = v
        return out.reshape(B, T)

    def input_features(self, w, c=None, training=False, f=None):
        """``h_0`` before dropout: word embeddings, char BiLSTM states, casing features and the embeddings of
        the feature columns ``f`` (B, T, k) (B, T, F)."""
        h = self.word_emb.forward(w, training=training)
        if self.chars is not None:
            if c is None or c.shape[:2] != w.shape:
                raise ValueError(f"Tagger: character ids must have shape (B, T, L) = {w.shape} + (L,), got "
                                 f"{None if c is None else c.shape}")
            B, T, L = c.shape
            cf = c.reshape(B * T, L)
            ce = self.char_emb.forward(cf, training=training)
            parts = [h]
            if self.char_rnn is not None:
                parts.append(self.char_rnn.forward(ce, training=training, mask=cf != 0).reshape(B, T, -1))
            if self.char_conv is not None:
                # padding characters read as zeros, as the convolution's own "same" padding does, so a word's
                # features do not depend on the longest word of its batch
                self._char_keep = (cf != 0)[..., None].astype(ce.dtype)
                conv = self.char_conv.forward(ce * self._char_keep, training=training)
                parts.append(self.char_pool.forward(conv, training=training, mask=cf != 0).reshape(B, T, -1))
            if self.config["casing"]:
                parts.append(self.casing_features(c).astype(h.dtype))
            if self.shape_emb is not None:
                parts.append(self.shape_emb.forward(self.shape_ids(c), training=training).astype(h.dtype))
            h = np.concatenate(parts, axis=-1)
        if self.feature_embs:
            if f is None or f.shape != w.shape + (len(self.feature_embs),):
                raise ValueError(f"Tagger: feature ids must have shape (B, T, k) = {w.shape + (len(self.features),)}"
                                 f", got {None if f is None else f.shape}")
            h = np.concatenate([h] + [emb.forward(f[..., k], training=training)
                                      for k, emb in enumerate(self.feature_embs)], axis=-1)
        return h

    def drop_words(self, w, rng):
        """Word dropout: each singleton word id in ``w`` becomes ``<unk>`` (1) with probability
        ``word_dropout``; with ``word_dropout_alpha = a > 0`` instead, each word id ``v > 1`` becomes ``<unk>``
        with probability ``a / (a + n_v)``, ``n_v`` its training count (a new array; ``w`` is unchanged)."""
        a = self.config.get("word_dropout_alpha", 0.0)
        if a > 0:
            if not len(self.word_counts):
                return w
            n = self.word_counts[np.clip(w, 0, len(self.word_counts) - 1)].astype(np.float64)
            hit = (w > 1) & (rng.random(w.shape) < a / (a + n))
            return np.where(hit, 1, w)
        q = self.config["word_dropout"]
        if q <= 0 or not len(self.singletons):
            return w
        hit = np.isin(w, self.singletons) & (rng.random(w.shape) < q)
        return np.where(hit, 1, w)

    def forward(self, w, c=None, training=False, f=None):
        """Tag probabilities (B, T, n_tags) (emission scores with ``crf=True``) and the token mask (B, T)."""
        mask = w != 0
        h = self.input_features(w, c, training=training, f=f)
        if self.dropout is not None:
            h = self.dropout.forward(h, training=training)
        for k, rnn in enumerate(self.rnns):
            h = rnn.forward(h, training=training, mask=mask)
            if self.output_dropouts:
                h = self.output_dropouts[k].forward(h, training=training)
        return self.out.forward(h, training=training, mask=mask), mask

    def backward(self, grad):
        """Route dL/dp back through every layer (fills each layer's ``grads``)."""
        g = self.out.backward(grad)
        for k in reversed(range(len(self.rnns))):
            if self.output_dropouts:
                g = self.output_dropouts[k].backward(g)
            g = self.rnns[k].backward(g)
        if self.dropout is not None:
            g = self.dropout.backward(g)
        E = self.config["embedding_dim"]
        if self.feature_embs:
            D = self.config["feature_dim"]
            off = g.shape[-1] - D * len(self.feature_embs)
            for k, emb in enumerate(self.feature_embs):
                emb.backward(np.ascontiguousarray(g[..., off + k * D: off + (k + 1) * D]))
        if self.shape_emb is not None:
            off = E + self._char_width + (N_CASING if self.config["casing"] else 0)
            self.shape_emb.backward(np.ascontiguousarray(g[..., off: off + self.config["shape_dim"]]))
        if self.chars is not None:
            gf = g[..., E:E + self._char_width]
            gf = gf.reshape(-1, gf.shape[-1])
            gce, k = None, 0
            if self.char_rnn is not None:
                k = 2 * self.config["char_units"]
                gce = self.char_rnn.backward(np.ascontiguousarray(gf[:, :k]))
            if self.char_conv is not None:
                gc = self.char_conv.backward(self.char_pool.backward(np.ascontiguousarray(gf[:, k:])))
                gc = gc * self._char_keep
                gce = gc if gce is None else gce + gc
            self.char_emb.backward(gce)
        self.word_emb.backward(np.ascontiguousarray(g[..., :E]))

    def loss_and_grads(self, w, c, y, training=True, f=None):
        """Masked cross-entropy (the CRF's mean negative log-likelihood with ``crf=True``) of one batch; fills the
        gradients of every weight."""
        p, mask = self.forward(w, c, training=training, f=f)
        loss, grad = self.loss_from_outputs(y, p, mask)
        self.backward(grad)
        return loss

    def loss_from_outputs(self, y, p, mask):
        """``(loss, dloss/dp)`` for the outputs ``p`` of :meth:`forward`."""
        if self.crf is not None:
            try:
                return self.crf.loss_and_grads(p, y, mask)
            except ValueError as e:
                if "forbid" not in str(e):
                    raise
                raise ValueError(f"Tagger: a training sentence breaks the {self.config['tag_scheme']} tag scheme "
                                 f"({e}); tags: {self.tags}") from None
        return self.loss_fn.forward_backward(y, p, mask=mask)

    def decode(self, p, mask):
        """Tag ids (B, T) from :meth:`forward`'s outputs: Viterbi with a CRF, else the arg-max (never padding)."""
        if self.crf is not None:
            return self.crf.decode(p, mask)[0]
        p = p.copy()
        p[..., 0] = -np.inf
        return p.argmax(-1)

    # ----------------------------------------------------------------------------------- training
    def fit(self, train=None, valid=None, epochs=10, batch_size=32, optimizer=None, time_budget=None, verbose=1,
            seed=None, stream=None, unknown_tags="error", patience=None, callbacks=None, **engine_kwargs):
        """Train on lists of :class:`~rnnlab.datasets.conll.Sentence` through the engine (``Engine.fit`` over a
        :class:`TaggingBatches` dataset: shuffled each epoch, padded per batch); keep the weights of the best
        validation epoch (entity F1 for B/I/E/S tags, else token accuracy; :class:`ValidationScores` then
        ``EarlyStopping(restore_best_weights=True)``, which also stops after ``patience`` epochs without a better
        value when ``patience`` is given). ``time_budget`` (seconds): a :class:`~rnnlab.callbacks.TimeBudget`
        stops cleanly before the first batch after it is spent. ``optimizer``: default ``Adam(1e-3)``; a NaN/inf
        loss or gradient stops training before the update (the engine's NaN policy, ``stop_reason`` says why). ``seed`` reseeds rnnlab's global generator (batch
        order, dropout, word dropout) first. Returns the :class:`~rnnlab.callbacks.History`.

        Given arrays or a dataset of batches instead of sentences (``x=`` / ``train``, e.g. a
        :class:`TaggingBatches`), this is ``Engine.fit`` itself on a compiled tagger (``valid`` is then ``y``,
        and ``engine_kwargs`` are ``Engine.fit``'s: ``initial_epoch``, ``validation_data`` ...): what
        ``rnnlab train tag`` runs inside its :class:`~rnnlab.tasks.runstate.TrainLoop`."""
        from ..optimizers import Adam

        sentences = isinstance(train, (list, tuple)) and bool(train) and all(hasattr(s, "tokens") for s in train)
        if not sentences:
            x = engine_kwargs.pop("x", train)
            y = engine_kwargs.pop("y", valid)
            if not getattr(self, "compiled", False):
                self.compile(optimizer or Adam(1e-3))
            if y is None:   # a dataset of batches: each batch carries its targets and its size
                return Engine.fit(self, x, epochs=epochs, verbose=verbose, callbacks=callbacks, stream=stream,
                                  **engine_kwargs)
            return Engine.fit(self, x, y, epochs=epochs, verbose=verbose, callbacks=callbacks, stream=stream,
                              batch_size=batch_size, **engine_kwargs)
        if engine_kwargs:
            raise TypeError(f"Tagger.fit: unexpected arguments {sorted(engine_kwargs)} for sentences (they are "
                            "Engine.fit's, for arrays or a dataset of batches)")

        if seed is not None:
            backend.set_random_seed(seed)
        self.compile(optimizer or Adam(1e-3))
        data = TaggingBatches(self, train, batch_size, shuffle=True)
        cbs = []
        if valid:
            scores = ValidationScores(self, valid, unknown_tags=unknown_tags, verbose=verbose, stream=stream)
            cbs += [scores, EarlyStopping(scores.monitor, mode="max", restore_best_weights=True,
                                          patience=epochs if patience is None else patience)]
        if time_budget is not None:   # checked before every batch; the partial epoch is still validated
            cbs.append(TimeBudget(max_minutes=time_budget / 60.0))
        cbs += list(callbacks or [])
        history = Engine.fit(self, data, epochs=epochs, verbose=verbose, callbacks=cbs, stream=stream)
        return history

    def predict(self, token_lists, batch_size=64, features=None):
        """Tags for lists of tokens (one list per sentence); ``features``: per sentence, one list of values per
        feature column (only for a tagger trained with feature columns, e.g. POS tags)."""
        out = []
        for b0 in range(0, len(token_lists), batch_size):
            batch = token_lists[b0: b0 + batch_size]
            w, c, _ = self.encode(batch)
            f = self.encode_features(None if features is None else features[b0: b0 + batch_size], w.shape[1])
            p, mask = self.forward(w, c, training=False, f=f)
            ids = self.decode(p, mask)
            out += [[self.tags[k] for k in ids[i, : len(s)]] for i, s in enumerate(batch)]
        return out

    def evaluate(self, sentences, unknown_tags="error"):
        """Token accuracy and (for B/I/E/S-prefixed tags) conlleval entity precision/recall/F1."""
        self._check_tags(sentences, unknown_tags)
        truth = [[t if t in self.tag_index else "O" for t in s.tags] for s in sentences]
        pred = self.predict([s.tokens for s in sentences],
                            features=[s.features for s in sentences] if self.features else None)
        res = {"token_accuracy": token_accuracy(truth, pred), "entity_tags": _entity_like(self.tags[1:])}
        if res["entity_tags"]:
            sc = span_scores(truth, pred)
            res.update(precision=sc.precision, recall=sc.recall, f1=sc.f1, per_type=sc.per_type)
        return res

    def _check_tags(self, sentences, unknown_tags):
        for i, s in enumerate(sentences):
            for tag in s.tags:
                if tag not in self.tag_index or tag == PAD:
                    if unknown_tags == "O" and "O" in self.tag_index:
                        continue
                    where = f"line {s.line}" if getattr(s, "line", None) else f"sentence {i}"
                    raise ValueError(f"tag {tag!r} ({where}) was not seen in training; known tags: {self.tags[1:]}"
                                     " (pass unknown_tags='O' / --unknown-tags O to score it as O)")

    def validation_logs(self, sentences, unknown_tags="error", batch_size=64):
        """``{"val_loss", "val_accuracy"[, "val_precision", "val_recall", "val_f1"]}`` of ``sentences`` from one
        inference pass: the loss of :meth:`default_loss` (per sentence for the CRF, per token otherwise), the
        token accuracy and the conlleval chunk scores."""
        self._check_tags(sentences, unknown_tags)
        loss = self.default_loss()
        total = count = 0.0
        truth, pred = [], []
        for b0 in range(0, len(sentences), batch_size):
            batch = sentences[b0: b0 + batch_size]
            xs, y = self.arrays(batch, unknown_tags)
            w, c, f = self._split_inputs(xs)
            p, mask = self.forward(w, c, training=False, f=f)
            k = float(len(batch)) if self.crf is not None else float(mask.sum())
            total += float(loss(y, p, mask=mask)) * k
            count += k
            ids = self.decode(p, mask)
            pred += [[self.tags[t] for t in ids[i, : len(s.tokens)]] for i, s in enumerate(batch)]
            truth += [[t if t in self.tag_index else "O" for t in s.tags] for s in batch]
        out = {"val_loss": total / max(count, 1.0), "val_accuracy": token_accuracy(truth, pred)}
        if _entity_like(self.tags[1:]):
            sc = span_scores(truth, pred)
            out.update(val_precision=sc.precision, val_recall=sc.recall, val_f1=sc.f1)
        return out

    # ----------------------------------------------------------------------------------- files
    def save(self, path):
        """One ``.npz`` through :func:`rnnlab.io.write_npz` (atomic): the ``__tagger__`` JSON entry (config,
        vocabularies, tags, weight paths) and the weights ``w0``, ``w1``, ...; returns the path."""
        from ..io import write_npz

        doc = {"format": _FORMAT, "config": self.config, "words": self.words.items[2:], "tags": self.tags,
               "chars": None if self.chars is None else self.chars.items[2:], "version": _VERSION,
               "features": [v.items[2:] for v in self.features],
               "shapes": None if self.shapes is None else self.shapes.items[2:],
               "weights": [p for p, _, _ in self.iter_weights()]}
        arrays = {f"w{i}": owner.params[w] for i, (_, owner, w) in enumerate(self.iter_weights())}
        return write_npz(path, arrays, {"__tagger__": doc})

    @classmethod
    def load(cls, path):
        """Read a tagger written by :meth:`save` through :class:`rnnlab.io.NpzArchive`: sizes in the config are
        bounded by the file's arrays and the tagger is built shape-only and compared with the array headers
        before anything is allocated; every problem is an :class:`rnnlab.io.FileFormatError` naming the file."""
        from .. import io as rio

        if not os.path.exists(path):
            raise FileNotFoundError(f"No such tagger file: {path}")
        with rio.NpzArchive(path, "rnnlab tagger file") as arc:
            path = arc.path
            if "__tagger__" not in arc:
                raise rio.FileFormatError(f"{path} is not an rnnlab tagger file (no __tagger__ entry)", path=path)
            doc = arc.read_json("__tagger__")
            ok = isinstance(doc, dict) and isinstance(doc.get("weights"), list) \
                and isinstance(doc.get("config"), dict) and isinstance(doc.get("words"), list) \
                and isinstance(doc.get("tags"), list) and (doc.get("chars") is None or isinstance(doc.get("chars"), list))
            if not ok:
                raise rio.FileFormatError(f"{path}: corrupt __tagger__ entry (expected an object with config, words, "
                                          "tags, chars and weights)", path=path)
            names = [f"w{i}" for i in range(len(doc["weights"]))]
            missing = [n for n in names if n not in arc]
            if missing:
                raise rio.FileFormatError(f"{path}: the weight arrays {missing[:5]} are missing", path=path)
            rio.check_config_sizes(doc["config"], arc.max_dim(names), path, path=path, count_bound=len(names))

            version = doc.get("version", 1)
            if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= _VERSION:
                raise rio.FileFormatError(f"{path}: tagger file format version {version!r}; this rnnlab reads "
                                          f"versions 1 to {_VERSION} (a file from a newer rnnlab?)", path=path)
            feats = doc.get("features") or []
            if not isinstance(feats, list) or not all(isinstance(v, list) for v in feats):
                raise rio.FileFormatError(f"{path}: corrupt __tagger__ entry (features must be a list of lists)",
                                          path=path)

            shape_vocab = doc.get("shapes")
            if shape_vocab is not None and (not isinstance(shape_vocab, list)
                                            or not all(isinstance(v, str) for v in shape_vocab)):
                raise rio.FileFormatError(f"{path}: corrupt __tagger__ entry (shapes must be a list of strings)",
                                          path=path)

            def build():
                return cls(doc["words"], doc["tags"], chars=doc["chars"], features=feats or None,
                           shapes=shape_vocab, **doc["config"])

            try:
                with rio.shape_only():
                    shapes = [owner.params[w].shape for _, owner, w in build().iter_weights()]
            except rio.BUILD_ERRORS as e:
                raise rio.build_error(path, "tagger", e) from None
            if len(shapes) != len(names):
                raise rio.FileFormatError(f"{path}: {len(names)} weight arrays for a model with {len(shapes)}",
                                          path=path)
            for n, shape in zip(names, shapes):
                if arc.shape(n) != shape or arc.dtype(n).kind != "f":
                    raise rio.FileFormatError(f"{path}: weight {n} is {arc.dtype(n)} {arc.shape(n)}, expected a "
                                              f"float array of shape {shape}", path=path, member=n)
            model = build()
            for (p, owner, w), n in zip(model.iter_weights(), names):
                owner.params[w][...] = arc.read(n, shape=owner.params[w].shape)
        for layer in model.layers:
            layer._weights_changed()
        return model


class _SchemeCheckedLoss(CRFLoss):
    """:class:`~rnnlab.layers.crf.CRFLoss` whose broken-scheme error names the tagger's scheme and tags."""

    def __init__(self, crf, tagger):
        super().__init__(crf)
        self.tagger = tagger

    def forward_backward(self, y_true, y_pred, sample_weight=None, mask=None):
        try:
            return super().forward_backward(y_true, y_pred, sample_weight, mask)
        except ValueError as e:
            if "forbid" not in str(e):
                raise
            raise ValueError(f"Tagger: a training sentence breaks the {self.tagger.config['tag_scheme']} tag scheme "
                             f"({e}); tags: {self.tagger.tags}") from None


class TaggingBatches(PyDataset):
    """The batches of a list of :class:`~rnnlab.datasets.conll.Sentence` for ``Engine.fit`` (a
    :class:`~rnnlab.models.data_adapters.PyDataset`): batch ``i`` is ``(x, y)`` with ``x`` the tagger's input
    arrays (words [, chars] [, features]) padded to the batch's longest sentence and ``y`` the tag ids (B, T).
    With ``shuffle`` the order is redrawn from rnnlab's seeded generator before every epoch
    (``on_epoch_begin``)."""

    def __init__(self, model, sentences, batch_size=32, shuffle=True, unknown_tags="error"):
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"TaggingBatches: batch_size must be a positive int, got {batch_size!r}")
        if not sentences:
            raise ValueError("TaggingBatches: no sentences")
        self.model, self.sentences, self.batch_size = model, list(sentences), int(batch_size)
        self.shuffle, self.unknown_tags = shuffle, unknown_tags
        self.order = np.arange(len(self.sentences))

    def __len__(self):
        return math.ceil(len(self.sentences) / self.batch_size)

    def on_epoch_begin(self):
        if self.shuffle:
            self.order = backend.rng().permutation(len(self.sentences))

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"TaggingBatches: batch {index} of {len(self)}")
        batch = [self.sentences[i] for i in self.order[index * self.batch_size: (index + 1) * self.batch_size]]
        return self.model.arrays(batch, self.unknown_tags)


class ValidationScores(Callback):
    """After every epoch, score the tagger on validation sentences and add to the epoch's logs (so that the
    callbacks after it, e.g. ``EarlyStopping``, and the history see them): ``val_loss`` (the compiled loss),
    ``val_accuracy`` (token accuracy) and, for chunk/entity tags, conlleval ``val_precision``/``val_recall``/
    ``val_f1``. ``monitor`` is ``"val_f1"`` for chunk tags, else ``"val_accuracy"``."""

    def __init__(self, model, sentences, unknown_tags="error", batch_size=64, verbose=0, stream=None):
        super().__init__()
        self.tagger, self.sentences, self.unknown_tags, self.batch_size = model, list(sentences), unknown_tags, \
            batch_size
        self.verbose, self.stream = verbose, stream
        self.monitor = "val_f1" if _entity_like(model.tags[1:]) else "val_accuracy"

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        val = self.tagger.validation_logs(self.sentences, self.unknown_tags, self.batch_size)
        logs.update(val)
        if self.verbose:   # the engine's progress line was printed before the callbacks ran
            print("  " + " - ".join(f"{k}: {v:.4f}" for k, v in val.items()), file=self.stream or sys.stdout,
                  flush=True)


class TagAccuracy(Metric):
    """Token accuracy of the *decoded* tags (Viterbi with a CRF, else the arg-max without padding) over the
    unmasked steps: the ``accuracy`` of the tagger's logs."""

    def __init__(self, tagger, name="accuracy"):
        self.tagger = tagger
        super().__init__(None, name)

    def update(self, y_true, y_pred, sample_weight=None, mask=None):
        y = np.asarray(y_true)
        m = np.ones(y.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        ids = self.tagger.decode(np.asarray(y_pred), m)
        self.total += float(np.sum((ids == y) & m))
        self.count += float(m.sum())

    def get_config(self):
        return {"name": self.name}


def _entity_like(tags):
    try:
        return any(chunk_tag(t)[0] != "O" for t in tags) and all(chunk_tag(t) for t in tags)
    except ValueError:
        return False


def build_tagger(train_sentences, char_features=False, lowercase=False, min_count=1, **kwargs):
    """A :class:`Tagger` with vocabularies built from training sentences (its ``singletons``, the words seen once,
    and ``word_counts`` are what word dropout uses)."""
    normalize = kwargs.get("normalize", False)
    normalize = isinstance(normalize, (bool, np.bool_)) and bool(normalize)   # a bad value: Tagger's error
    words = Vocab.build([[word_key(t, lowercase, normalize) for t in s.tokens] for s in train_sentences],
                        min_count=min_count)
    tags = sorted({t for s in train_sentences for t in s.tags})
    chars = Vocab.build([list(t) for s in train_sentences for t in s.tokens]).items[2:] if char_features else None
    ncols = {len(s.features) if s.features else 0 for s in train_sentences}
    if len(ncols) > 1:
        raise ValueError(f"build_tagger: the training sentences have different numbers of feature columns {ncols}")
    k = ncols.pop() if ncols else 0
    if k and "features" not in kwargs:
        kwargs["features"] = [Vocab.build([s.features[j] for s in train_sentences]).items[2:] for j in range(k)]
    if kwargs.get("shape_dim") and chars is not None and "shapes" not in kwargs:
        L = int(kwargs.get("max_word_len", 20))
        kwargs["shapes"] = Vocab.build([[word_shape(t[:L]) for t in s.tokens] for s in train_sentences]).items[2:]
    backend.rng()  # weights are drawn from the seeded global generator
    model = Tagger(words, tags, chars=chars, lowercase=lowercase, **kwargs)
    model.set_training_words(train_sentences)
    return model


def singleton_ids(model, sentences):
    """Sorted ids (int64) of the vocabulary words that occur exactly once in ``sentences``."""
    return _singletons(word_count_array(model, sentences))


def _singletons(counts):
    return np.flatnonzero(counts == 1).astype(np.int64)


def word_count_array(model, sentences):
    """The number of occurrences in ``sentences`` of every word id of ``model.words`` (int64, length V; the
    padding and unknown ids count 0)."""
    out = np.zeros(len(model.words), dtype=np.int64)
    for s in sentences:
        for t in s.tokens:
            i = model.words.index.get(model._norm(t), 1)
            if i > 1:
                out[i] += 1
    return out


_URL_RE = re.compile(r"^(?:https?://|www\.)\S", re.IGNORECASE)
_USER_RE = re.compile(r"^@\w")
_DIGIT_RE = re.compile(r"\d")


def word_key(tok, lowercase=False, normalize=False):
    """The word-vocabulary key of a token: lowercased with ``lowercase``, then :func:`normalize_word` with
    ``normalize`` (what :meth:`Tagger._norm` looks up, and :func:`build_tagger` builds the vocabulary from)."""
    tok = tok.lower() if lowercase else tok
    return normalize_word(tok) if normalize else tok


def normalize_word(tok):
    """The word-vocabulary key of a social-media token: ``<url>`` for ``http://...``, ``https://...`` and
    ``www....``, ``<user>`` for ``@name``, every digit -> ``0``, and a leading ``#`` stripped when something
    follows it (``#Paris`` -> ``Paris``; ``#`` alone stays). Case is left as it is (lowercasing comes first in
    :meth:`Tagger._norm`)."""
    if _URL_RE.match(tok):
        return "<url>"
    if _USER_RE.match(tok):
        return "<user>"
    if len(tok) > 1 and tok[0] == "#":
        tok = tok[1:]
    return _DIGIT_RE.sub("0", tok)


def _shape_symbol(ch):
    if len(ch) == 1 and ch.isupper():
        return "X"
    if len(ch) == 1 and ch.islower():
        return "x"
    if len(ch) == 1 and ch.isdigit():
        return "d"
    return ch


def _collapse_shape(symbols):
    out = []
    for s in symbols:
        if not out or out[-1] != s:
            out.append(s)
    return "".join(out)


def word_shape(tok):
    """The collapsed shape of a word: upper-case letters -> ``X``, lower-case -> ``x``, digits -> ``d``, every
    other character kept, runs of one symbol written once: ``Paris`` -> ``Xx``, ``iPhone`` -> ``xXx``,
    ``@bob`` -> ``@x``, ``#NYC`` -> ``#X``, ``New-York`` -> ``Xx-Xx``, ``10:30`` -> ``d:d``, ``!!!`` -> ``!``."""
    return _collapse_shape(_shape_symbol(ch) for ch in tok)


#: the number of casing classes (see :meth:`Tagger.casing_features`)
N_CASING = 6


def _casing_tables(chars):
    """Per character id (0 pad, 1 unknown, then ``chars``): is upper, is lower, is a digit."""
    items = ["", ""] + [c for c in chars if c not in (PAD, UNK)]
    up = np.array([len(c) == 1 and c.isupper() for c in items])
    low = np.array([len(c) == 1 and c.islower() for c in items])
    dig = np.array([len(c) == 1 and c.isdigit() for c in items])
    return up, low, dig
