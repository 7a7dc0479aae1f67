"""A sequence tagger: one tag per token, (Bi)LSTM/GRU over word embeddings and optional character features.

Architecture, for a padded batch of word ids ``w`` (B, T) (0 = padding) and, optionally, character ids
``c`` (B, T, L) of each word (0 = padding)::

    m   = (w != 0)                                              token mask (B, T)
    e   = Embedding(V, E, mask_zero=True)(w)                    (B, T, E)
    f   = Bidirectional(LSTM(Uc))(Embedding(C, Ec, mask_zero)(c reshaped to (B*T, L)), mask=(c != 0))
          reshaped to (B, T, 2 Uc)                              last states of a char BiLSTM per word
    h_0 = [e ; f]  (concatenated on the feature axis; just e without characters), then Dropout
    h_k = [Bidirectional](LSTM|GRU|SimpleRNN(U, return_sequences=True))(h_{k-1}, mask=m)   k = 1..layers
    p   = TimeDistributed(Dense(n_tags, softmax))(h_layers)    (B, T, n_tags)
    L   = masked sparse categorical cross-entropy(tags, p, mask=m)   (padding steps do not count)

Backward runs the same layers in reverse order; the gradient of ``h_0`` is split back into ``dL/de`` (to the
word embedding) and ``dL/df`` (reshaped to (B*T, 2 Uc), through the char BiLSTM to the char embedding). Every
layer's own backward is the hand-written one in :mod:`rnnlab.layers`; this module only routes gradients.

Files: :meth:`Tagger.save` writes one ``.npz`` (weights + a JSON document with the vocabularies and
hyper-parameters); :meth:`Tagger.load` reads it with ``allow_pickle=False``.
"""
from __future__ import annotations

import io
import json
import math
import os
import sys
import time

import numpy as np

from .. import backend
from ..layers import GRU, LSTM, Bidirectional, Dense, Dropout, Embedding, SimpleRNN, TimeDistributed
from ..losses import SparseCategoricalCrossentropy
from .spans import chunk_tag, span_scores, token_accuracy

_FORMAT = "rnnlab-tagger"
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


class Tagger:
    """(Bi)RNN tagger over word embeddings, optionally with a character BiLSTM per word (see module docstring)."""

    def __init__(self, words, tags, chars=None, embedding_dim=50, units=64, cell="lstm", layers=1,
                 bidirectional=True, char_dim=16, char_units=16, dropout=0.0, lowercase=False, max_word_len=20):
        if cell not in _CELLS:
            raise ValueError(f"cell must be one of {sorted(_CELLS)}, got {cell!r}")
        for name, v in (("embedding_dim", embedding_dim), ("units", units), ("layers", layers),
                        ("char_dim", char_dim), ("char_units", char_units), ("max_word_len", max_word_len)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"Tagger: {name} must be a positive int, got {v!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Tagger: dropout must be in [0, 1), got {dropout}")
        self.words = words if isinstance(words, Vocab) else Vocab(words)
        self.tags = list(tags)
        if not self.tags or self.tags[0] != PAD:
            self.tags = [PAD] + [t for t in self.tags if t != PAD]
        self.tag_index = {t: i for i, t in enumerate(self.tags)}
        self.chars = None if chars is None else (chars if isinstance(chars, Vocab) else Vocab(chars))
        self.config = dict(embedding_dim=int(embedding_dim), units=int(units), cell=cell, layers=int(layers),
                           bidirectional=bool(bidirectional), char_dim=int(char_dim), char_units=int(char_units),
                           dropout=float(dropout), lowercase=bool(lowercase), max_word_len=int(max_word_len))
        self.lowercase = bool(lowercase)
        self.max_word_len = int(max_word_len)
        cfg = self.config
        self.word_emb = Embedding(len(self.words), cfg["embedding_dim"], mask_zero=True, name="word_embedding")
        self.word_emb.build((None, None))
        feat = cfg["embedding_dim"]
        self.char_emb = self.char_rnn = None
        if self.chars is not None:
            self.char_emb = Embedding(len(self.chars), cfg["char_dim"], mask_zero=True, name="char_embedding")
            self.char_emb.build((None, None))
            self.char_rnn = Bidirectional(LSTM(cfg["char_units"], name="char_lstm"), name="char_bilstm")
            self.char_rnn._maybe_build((None, None, cfg["char_dim"]))
            feat += 2 * cfg["char_units"]
        self.dropout = Dropout(cfg["dropout"], name="input_dropout") if cfg["dropout"] else None
        self.rnns = []
        for k in range(cfg["layers"]):
            rnn = _CELLS[cell](cfg["units"], return_sequences=True, name=f"{cell}_{k}")
            if cfg["bidirectional"]:
                rnn = Bidirectional(rnn, name=f"bidirectional_{k}")
            rnn._maybe_build((None, None, feat))
            feat = rnn.output_shape[-1]
            self.rnns.append(rnn)
        self.out = TimeDistributed(Dense(len(self.tags), activation="softmax", name="tag_dense"), name="tag_output")
        self.out._maybe_build((None, None, feat))
        self.loss = SparseCategoricalCrossentropy()
        self.history: list = []

    # ----------------------------------------------------------------------------------- layers
    @property
    def layers(self):
        out = [self.word_emb]
        if self.chars is not None:
            out += [self.char_emb, self.char_rnn]
        return out + self.rnns + [self.out]

    def trainable_weight_refs(self):
        return [r for layer in self.layers for r in layer.trainable_weight_refs()]

    def iter_weights(self):
        for layer in self.layers:
            yield from layer.iter_weights()

    def count_params(self):
        return sum(layer.count_params() for layer in self.layers)

    # ----------------------------------------------------------------------------------- encoding
    def _norm(self, tok):
        return tok.lower() if self.lowercase else tok

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

    # ---------------------------------------------------------------------------- forward/backward
    def forward(self, w, c=None, training=False):
        """Tag probabilities (B, T, n_tags) and the token mask (B, T)."""
        mask = w != 0
        h = self.word_emb.forward(w, training=training)
        if self.chars is not None:
            if c is None or c.shape[:2] != w.shape:
                raise ValueError(f"Tagger: character ids must have shape (B, T, L) = {w.shape} + (L,), got "
                                 f"{None if c is None else c.shape}")
            B, T, L = c.shape
            cf = c.reshape(B * T, L)
            ce = self.char_emb.forward(cf, training=training)
            f = self.char_rnn.forward(ce, training=training, mask=cf != 0)
            h = np.concatenate([h, f.reshape(B, T, -1)], axis=-1)
        if self.dropout is not None:
            h = self.dropout.forward(h, training=training)
        for rnn in self.rnns:
            h = rnn.forward(h, training=training, mask=mask)
        return self.out.forward(h, training=training, mask=mask), mask

    def backward(self, grad):
        """Route dL/dp back through every layer (fills each layer's ``grads``)."""
        g = self.out.backward(grad)
        for rnn in reversed(self.rnns):
            g = rnn.backward(g)
        if self.dropout is not None:
            g = self.dropout.backward(g)
        E = self.config["embedding_dim"]
        if self.chars is not None:
            gf = g[..., E:]
            gce = self.char_rnn.backward(np.ascontiguousarray(gf.reshape(-1, gf.shape[-1])))
            self.char_emb.backward(gce)
        self.word_emb.backward(np.ascontiguousarray(g[..., :E]))

    def loss_and_grads(self, w, c, y, training=True):
        """Masked cross-entropy of one batch; fills the gradients of every weight."""
        p, mask = self.forward(w, c, training=training)
        loss, grad = self.loss.forward_backward(y, p, mask=mask)
        self.backward(grad)
        return loss

    # ----------------------------------------------------------------------------------- training
    def fit(self, train, valid=None, epochs=10, batch_size=32, optimizer=None, time_budget=None, verbose=1,
            seed=0, stream=None, unknown_tags="error"):
        """Train on lists of :class:`~rnnlab.datasets.conll.Sentence`; keep the weights of the best validation
        epoch (entity F1 for B/I/E/S tags, else token accuracy). Returns the history (list of dicts)."""
        from ..optimizers import Adam

        stream = stream or sys.stdout
        opt = optimizer or Adam(1e-3)
        self.stop_reason = None
        rng = np.random.default_rng(seed)
        toks = [s.tokens for s in train]
        tags = [s.tags for s in train]
        start = time.perf_counter()
        best, best_weights = -math.inf, None
        n = len(train)
        from ..training import NonFiniteLoss, ProgressBar, checked_update, warn_stop

        steps = math.ceil(n / batch_size)
        stopped = False
        for epoch in range(epochs):
            order = rng.permutation(n)
            total, count = 0.0, 0
            bar = ProgressBar(steps, stream=stream) if verbose == 1 else None
            if bar is not None:
                print(f"Epoch {epoch + 1}/{epochs}", file=stream, flush=True)
            for step, b0 in enumerate(range(0, n, batch_size)):
                idx = order[b0: b0 + batch_size]
                w, c, y = self.encode([toks[i] for i in idx], [tags[i] for i in idx])
                loss = self.loss_and_grads(w, c, y)
                try:  # the one NaN policy of every loop: no update, warn, stop (rnnlab.training.checked_update)
                    checked_update(opt, self.trainable_weight_refs(), loss, epoch, step)
                except NonFiniteLoss as e:
                    self.stop_reason = warn_stop(e, bar)
                    stopped = True
                    break
                total += loss * len(idx)
                count += len(idx)
                if bar is not None:
                    bar.update(step + 1, {"loss": total / count}, count)
                if time_budget is not None and time.perf_counter() - start > time_budget:
                    break
            logs = {"epoch": epoch + 1, "loss": total / max(count, 1)}
            if valid:
                ev = self.evaluate(valid, unknown_tags=unknown_tags)
                logs.update({f"val_{k}": v for k, v in ev.items() if isinstance(v, float)})
                score = ev["f1"] if ev.get("entity_tags") else ev["token_accuracy"]
                if score > best:
                    best, best_weights = score, [owner.params[w].copy() for _, owner, w in self.iter_weights()]
            logs["seconds"] = round(time.perf_counter() - start, 2)
            self.history.append(logs)
            if bar is not None:
                bar.finish(step + 1, {"loss": logs["loss"]}, count)
            if verbose:
                print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items()),
                      file=stream, flush=True)
            if stopped or (time_budget is not None and time.perf_counter() - start > time_budget):
                break
        if best_weights is not None:
            for (_, owner, w), arr in zip(self.iter_weights(), best_weights):
                owner.params[w][...] = arr
            for layer in self.layers:
                layer._weights_changed()
        return self.history

    def predict(self, token_lists, batch_size=64):
        """Tags for lists of tokens (one list per sentence)."""
        out = []
        for b0 in range(0, len(token_lists), batch_size):
            batch = token_lists[b0: b0 + batch_size]
            w, c, _ = self.encode(batch)
            p, _ = self.forward(w, c, training=False)
            p = p.copy()
            p[..., 0] = -1.0  # never predict padding
            ids = p.argmax(-1)
            out += [[self.tags[k] for k in ids[i, : len(s)]] for i, s in enumerate(batch)]
        return out

    def evaluate(self, sentences, unknown_tags="error"):
        """Token accuracy and (for B/I/E/S-prefixed tags) conlleval entity precision/recall/F1."""
        for i, s in enumerate(sentences):
            for tag in s.tags:
                if tag not in self.tag_index or tag == PAD:
                    if unknown_tags == "O" and "O" in self.tag_index:
                        continue
                    where = f"line {s.line}" if getattr(s, "line", None) else f"sentence {i}"
                    raise ValueError(f"tag {tag!r} ({where}) was not seen in training; known tags: {self.tags[1:]}"
                                     " (pass unknown_tags='O' / --unknown-tags O to score it as O)")
        truth = [[t if t in self.tag_index else "O" for t in s.tags] for s in sentences]
        pred = self.predict([s.tokens for s in sentences])
        res = {"token_accuracy": token_accuracy(truth, pred), "entity_tags": _entity_like(self.tags[1:])}
        if res["entity_tags"]:
            sc = span_scores(truth, pred)
            res.update(precision=sc.precision, recall=sc.recall, f1=sc.f1, per_type=sc.per_type)
        return res

    # ----------------------------------------------------------------------------------- files
    def save(self, path):
        from ..io import atomic_write_bytes

        doc = {"format": _FORMAT, "config": self.config, "words": self.words.items[2:], "tags": self.tags,
               "chars": None if self.chars is None else self.chars.items[2:],
               "weights": [p for p, _, _ in self.iter_weights()]}
        arrays = {"__tagger__": np.frombuffer(json.dumps(doc).encode("utf-8"), dtype=np.uint8)}
        for i, (_, owner, w) in enumerate(self.iter_weights()):
            arrays[f"w{i}"] = owner.params[w]
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(os.fspath(path), buf.getvalue())
        return os.fspath(path)

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

            def build():
                return cls(doc["words"], doc["tags"], chars=doc["chars"], **doc["config"])

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


def _entity_like(tags):
    try:
        return any(chunk_tag(t)[0] != "O" for t in tags) and all(chunk_tag(t) for t in tags)
    except ValueError:
        return False


def build_tagger(train_sentences, char_features=False, lowercase=False, min_count=1, **kwargs):
    """A :class:`Tagger` with vocabularies built from training sentences."""
    norm = (lambda t: t.lower()) if lowercase else (lambda t: t)
    words = Vocab.build([[norm(t) for t in s.tokens] for s in train_sentences], min_count=min_count)
    tags = sorted({t for s in train_sentences for t in s.tags})
    chars = Vocab.build([list(t) for s in train_sentences for t in s.tokens]).items[2:] if char_features else None
    backend.rng()  # weights are drawn from the seeded global generator
    return Tagger(words, tags, chars=chars, lowercase=lowercase, **kwargs)
