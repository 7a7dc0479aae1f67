"""What ``rnnlab explore`` computes: a loaded model, its per-step states, and the analyses of the page.

:func:`open_model` reads a model file with the no-pickle loaders (``np.load(allow_pickle=False)`` inside
:func:`rnnlab.load_model`, :meth:`Seq2Seq.load`, :meth:`Tagger.load`) and returns an :class:`Explorer`:

* ``charlm`` / ``wordlm`` (``rnnlab train charlm|wordlm``): text and states, select and match, gate statistics,
  next-token predictions and sampling, gradient norms (the label of step t is token t+1);
* ``classify``: states, matching, statistics, class probabilities, gradient norms for a chosen class;
* ``tag``: states of the tagger's recurrent layers, the predicted tags, gradient norms for given tags;
* ``seq2seq``: the encoder's states, the attention map of a conversion, gradient norms for a given target;
* any model saved with ``model.save`` (a Sequential with recurrent layers): states, matching, statistics
  (inputs: whitespace-separated token ids for an Embedding model, else one step per line of numbers).

States come from :mod:`rnnlab.explore.trace` (a NumPy forward pass that keeps every gate); the non-recurrent
layers (Embedding, Dropout, Dense, pooling ...) run their own ``forward``.

Select and match (after LSTMVis, Strobelt et al. 2018). For a chosen series v (T, U) of one layer and a
selected span [s, e) of L tokens::

    in_u  = mean_{t in [s, e)} v[t, u]            out_u = mean of v[t, u] over the L steps either side
    score_u = in_u - out_u                         units ranked by score (largest first)

The top ``n`` units with a positive score form the pattern; step t is "on" when every chosen unit is at or
above its threshold theta_u (default the midpoint (in_u + out_u) / 2, or one fixed value); the matches are
the maximal runs of "on" steps in the ``--text`` corpus (or in the typed text when there is none), ranked by
how close their length is to L, then by the chosen units' mean value.

Gate saturation (Karpathy et al. 2015): per unit, the fraction of steps where the gate is < 0.1 (left
saturated) and > 0.9 (right saturated).
"""
from __future__ import annotations

import json
import os
import threading

import numpy as np

from . import trace as _trace

#: the most characters one request may send (typed text, a seed ...)
MAX_TEXT_CHARS = 5000
#: the most tokens a typed text may have after tokenization
MAX_TOKENS = 5000
MAX_SAMPLE_LENGTH = 1000
MAX_TOPK = 20


def _check_text(text, what="text", allow_empty=False):
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a string, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"{what} has {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
    if not allow_empty and not text.strip():
        raise ValueError(f"{what} is empty")
    return text


def _softmax(z):
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def state_grad_norms(parts, run):
    """``{label: [||dL/dh_t|| for t]}`` of the recurrent layers ``parts`` ([(label, layer)]) during ``run()``, one
    forward and backward pass on a batch of one (the models that are not Sequential: Seq2Seq, Tagger).

    It uses the per-step gradient record that the recurrent layers keep for :mod:`rnnlab.diagnostics`
    (``_record_state_grads`` / ``state_grads``) and computes the same quantity as
    :func:`rnnlab.diagnostics.gradient_norms_over_time` with ``state="h"`` (tested equal on a Sequential model);
    index t is the input position also for ``go_backwards`` layers."""
    try:
        for _, layer in parts:
            layer._record_state_grads = True
            layer.state_grads = None
        run()
        out = {}
        for label, layer in parts:
            rec = layer.state_grads
            if rec is None:   # no gradient reached this layer
                continue
            g = np.asarray(rec[tuple(getattr(layer, "_state_names", ("h",))).index("h")], dtype=np.float64)
            n = np.sqrt(np.einsum("tbu,tbu->tb", g, g)).mean(axis=1)
            if layer.go_backwards:
                n = n[::-1]
            out[label] = [float(v) for v in n]
        return out
    finally:
        for _, layer in parts:
            layer.__dict__.pop("_record_state_grads", None)
            layer.__dict__.pop("state_grads", None)


# ------------------------------------------------------------------------------------------ the stack
class Stack:
    """Runs a list of layers on one sequence, tracing every recurrent layer (and Bidirectional directions).

    ``run(x, states)`` with ``x`` of shape (1, T, ...) returns ``(out, series, finals)``: the output of the
    last layer, ``{label: {name: (T, U)}}`` and the final states per label (to continue a long text).
    """

    def __init__(self, layers):
        self.layers = list(layers)
        self.parts = []  # (label, rnn layer, owner layer)
        for layer in self.layers:
            for label, rnn in _trace.recurrent_parts(layer):
                self.parts.append((label, rnn, layer))
        if not self.parts:
            raise ValueError("explore: the model has no recurrent layer (LSTM, GRU or SimpleRNN)")

    def describe(self):
        return [{"label": label, "cell": _trace.cell_type(rnn), "units": _trace.units(rnn),
                 "series": list(_trace.SERIES[_trace.cell_type(rnn)]),
                 "gates": list(_trace.GATES[_trace.cell_type(rnn)]),
                 # a go_backwards layer (the backward half of a bidirectional encoder) reads right to left; its
                 # series are shown in reading order like every other layer's
                 "direction": "right-to-left" if getattr(rnn, "go_backwards", False) else "left-to-right"}
                for label, rnn, _ in self.parts]

    def run(self, x, states=None, upto=None):
        states = states or {}
        series, finals = {}, {}
        for li, layer in enumerate(self.layers[:upto]):
            parts = _trace.recurrent_parts(layer)
            if not parts:
                x = layer.forward(x, training=False)
                continue
            outs = []
            for label, rnn in parts:
                s, fin = _trace.trace_rnn(rnn, x[0], states.get(label))
                series[label], finals[label] = s, fin
                seq = s["h"]
                if rnn.return_sequences:
                    outs.append(seq)
                else:  # the state after the last step read (input position 0 for go_backwards)
                    outs.append(seq[0] if rnn.go_backwards else seq[-1])
            if len(outs) == 1:
                y = outs[0]
            else:
                mode = getattr(layer, "merge_mode", "concat")
                a, b = outs
                y = {"concat": lambda: np.concatenate([a, b], axis=-1), "sum": lambda: a + b,
                     "mul": lambda: a * b, "ave": lambda: (a + b) / 2}.get(mode, lambda: None)()
                if y is None:
                    raise ValueError(f"explore: Bidirectional '{layer.name}' with merge_mode={mode!r} is not supported")
            x = y[None].astype(np.float32)
        return x, series, finals


# ------------------------------------------------------------------------------------------ explorers
class Explorer:
    """Base class: one loaded model. Subclasses define ``encode`` and the optional analyses."""

    kind = "model"
    unit = "token"          # "char" | "word" | "id" | "step"
    predictions = False     # next-token top-k and sampling
    attention = False
    gradients = False
    classes = None          # class names (classify) for the gradient label / the output
    gradient_label = None   # what the gradient view asks for: None, "class", "target" (seq2seq) or "tags" (tag)
    gradient_last_only = False

    def __init__(self, path, stack):
        self.path = str(path)
        self.stack = stack
        self.lock = threading.RLock()   # layers keep per-call caches (and LM encode keeps next_ids): one at a time

    # -- to override
    def encode(self, text):
        """``(tokens, x)``: display tokens (list of str) and the model input (1, T, ...)."""
        raise NotImplementedError

    def output_info(self, out, tokens):
        """Extra fields of a trace response from the model output (predictions, class probabilities)."""
        return {}

    # -- shared
    def info(self):
        return {"kind": self.kind, "unit": self.unit, "file": os.path.basename(self.path),
                "layers": self.stack.describe(), "predictions": self.predictions, "attention": self.attention,
                "gradients": self.gradients, "classes": self.classes, "gradient_label": self.gradient_label,
                "gradient_last_only": self.gradient_last_only,
                "limits": {"text_chars": MAX_TEXT_CHARS, "tokens": MAX_TOKENS, "sample_length": MAX_SAMPLE_LENGTH}}

    def _encode_checked(self, text):
        tokens, x = self.encode(text)
        if len(tokens) == 0:
            raise ValueError("the text gives no tokens for this model")
        if len(tokens) > MAX_TOKENS:
            raise ValueError(f"the text gives {len(tokens)} tokens; the limit is {MAX_TOKENS}")
        return tokens, x

    def trace(self, text, states=None):
        """``(tokens, series, finals, out)`` for a text."""
        tokens, x = self._encode_checked(text)
        with self.lock:
            out, series, finals = self.stack.run(x, states)
        return tokens, series, finals, out

    def layer_series(self, series, layer, name):
        if layer not in series:
            raise ValueError(f"unknown layer {layer!r}; the model's recurrent layers are {sorted(series)}")
        if name not in series[layer]:
            raise ValueError(f"layer {layer!r} has no series {name!r}; it has {sorted(series[layer])}")
        return series[layer][name]

    def gradient_norms(self, text, label=None, last_only=False):
        raise ValueError(f"gradient norms are not available for a {self.kind} model")

    def sample(self, seed, length, temperature, sample_seed=None):
        raise ValueError(f"sampling is only available for language models, not for a {self.kind} model")

    def translate(self, text):
        raise ValueError(f"attention is only available for seq2seq models, not for a {self.kind} model")


def _last_step_weights(T, last_only):
    """None (every step's loss counts), or (1, T) sample weights keeping only the last step's loss: then
    ||dL/dh_t|| shows how much of one prediction's error reaches t steps back (the vanishing-gradient picture)."""
    if not last_only:
        return None
    w = np.zeros((1, T))
    w[0, -1] = 1.0
    return w


class _LMExplorer(Explorer):
    predictions = True
    gradients = True
    gradient_last_only = True   # the page offers "loss on the last step only"

    def id_to_token(self, i):
        raise NotImplementedError

    def output_info(self, out, tokens, k=5):
        p = _softmax(np.asarray(out)[0]) if not self.probs_out else np.asarray(out, dtype=np.float64)[0]
        return topk_table(p, self.id_to_token, self.next_ids, k)


def topk_table(p, id_to_token, next_ids, k):
    """For every position t: the top-k next tokens with probabilities, and p(actual next token)."""
    k = int(min(k, p.shape[1]))
    T = p.shape[0]
    top = np.argpartition(-p, k - 1, axis=1)[:, :k] if k < p.shape[1] else np.tile(np.arange(k), (T, 1))
    pk = np.take_along_axis(p, top, axis=1)
    order = np.argsort(-pk, axis=1, kind="stable")
    top, pk = np.take_along_axis(top, order, axis=1), np.round(np.take_along_axis(pk, order, axis=1), 4)
    names = {int(j): id_to_token(int(j)) for j in np.unique(top)}
    table = [[[names[j], q] for j, q in zip(tj, qj)] for tj, qj in zip(top.tolist(), pk.tolist())]
    n = min(len(next_ids) - 1, T)
    actual = np.round(p[np.arange(n), np.asarray(next_ids[1:n + 1], dtype=np.int64)], 4).tolist() + [None] * (T - n)
    return {"topk": table, "p_next": actual}


class CharLMExplorer(_LMExplorer):
    kind, unit = "charlm", "char"

    def __init__(self, path, model, doc):
        from ..text import CharTokenizer

        self.model, self.doc = model, doc
        self.tok = CharTokenizer.from_json(json.dumps(doc["tokenizer"]), source=str(path))
        self.settings = doc["settings"]
        self.V = int(doc["vocab_size"])
        self.window = self.settings.get("mode") == "window"
        self.probs_out = self.window
        self.gradient_last_only = not self.window   # the window model's loss is on the last step anyway
        layers = model.layers
        if self.window:  # trace the recurrent layers over the whole text (one-hot inputs)
            layers = [l for l in layers if _trace.recurrent_parts(l)]
        super().__init__(path, Stack(layers))

    def id_to_token(self, i):
        return self.tok.index_char.get(i, "\ufffd")

    def encode(self, text):
        if self.doc.get("lower"):
            text = text.lower()
        ids = np.asarray(self.tok.encode(text), dtype=np.int64)
        self.next_ids = ids
        if self.window:
            x = np.zeros((1, len(ids), self.V), dtype=np.float32)
            x[0, np.arange(len(ids)), ids] = 1.0
        else:
            x = ids[None].astype(np.int32)
        return list(text), x

    def output_info(self, out, tokens, k=5):
        if not self.window:
            return super().output_info(out, tokens, k)
        # window model: p(next | the maxlen characters up to t), the way it was trained
        from ..models.lm import one_hot_windows

        maxlen = self.settings["maxlen"]
        ids = self.next_ids
        pad = self.tok.char_index.get(" ", 0)
        padded = np.concatenate([np.full(maxlen - 1, pad, dtype=np.int64), ids])
        with self.lock:
            p = np.asarray(self.model.predict_on_batch(one_hot_windows(padded, np.arange(len(ids)), maxlen, self.V)),
                           dtype=np.float64)
        return topk_table(p, self.id_to_token, ids, k)

    def sample(self, seed, length, temperature, sample_seed=None):
        from ..models.lm import generate_chars

        if self.doc.get("lower"):
            seed = seed.lower()
        out = generate_chars(self.path, self.settings, self.V, self.tok.encode(seed), length, temperature, None,
                             sample_seed, pad_id=self.tok.char_index.get(" ", 0))
        return self.tok.decode(out)

    def _grad_model(self):
        from .. import losses
        from ..models.lm import build_charlm_stream_model as build_stream_model
        from ..models.lm import build_charlm_window_model as build_window_model

        if self.window:
            m = build_window_model(self.V, self.settings)
            m.load_weights(self.path)
            m.compile(optimizer="sgd", loss=losses.SparseCategoricalCrossentropy())
        else:
            m = build_stream_model(self.V, self.settings, 1)
            m.load_weights(self.path)
            m.compile(optimizer="sgd", loss=losses.SparseCategoricalCrossentropy(from_logits=True))
        return m

    def gradient_norms(self, text, label=None, last_only=False):
        from ..diagnostics import gradient_norms_over_time

        tokens, x = self._encode_checked(text)
        ids = self.next_ids
        if len(ids) < 2:
            raise ValueError("the text needs at least 2 characters (inputs and next-character labels)")
        m = self._grad_model()
        with self.lock:
            if self.window:  # the last maxlen characters before the last one; the label is the last one
                maxlen = self.settings["maxlen"]
                pad = self.tok.char_index.get(" ", 0)
                ctx = np.concatenate([np.full(maxlen, pad, dtype=np.int64), ids[:-1]])[-maxlen:]
                xx = np.zeros((1, maxlen, self.V), dtype=np.float32)
                xx[0, np.arange(maxlen), ctx] = 1.0
                res = gradient_norms_over_time(m, xx, np.asarray([ids[-1]]))
                shown = [self.id_to_token(int(i)) for i in ctx]
            else:
                m.reset_states()
                res = gradient_norms_over_time(m, ids[None, :-1].astype(np.int32), ids[None, 1:],
                                               sample_weight=_last_step_weights(len(ids) - 1, last_only))
                shown = tokens[:-1]
        return shown, {k: [float(v) for v in a] for k, a in res.items()}


class WordLMExplorer(_LMExplorer):
    kind, unit = "wordlm", "word"
    probs_out = False

    def __init__(self, path, model, doc):
        self.model, self.doc = model, doc
        self.words = list(doc["vocab"])
        self.index = {w: i for i, w in enumerate(self.words)}
        self.unk = self.index.get("<unk>", 0)
        super().__init__(path, Stack(model.layers))

    def id_to_token(self, i):
        return self.words[i] if 0 <= i < len(self.words) else "<unk>"

    def encode(self, text):
        toks = []
        lines = text.split("\n")
        for k, line in enumerate(lines):
            toks += line.split()
            if line.strip() and k < len(lines) - 1:   # a line end read as <eos>; none after an unfinished line
                toks.append("<eos>")
        ids = np.asarray([self.index.get(t, self.unk) for t in toks], dtype=np.int64)
        self.next_ids = ids
        return toks, ids[None].astype(np.int32)

    def sample(self, seed, length, temperature, sample_seed=None):
        from ..models.lm import sample_next

        rng = np.random.default_rng(sample_seed)
        toks, x = self.encode(seed) if seed.strip() else (["<eos>"], np.asarray([[self.index.get("<eos>", 0)]], np.int32))
        with self.lock:
            out, _, states = self.stack.run(x)
            words = []
            for _ in range(length):
                nxt = sample_next(np.asarray(out)[0, -1], temperature, None, rng)
                words.append(self.id_to_token(nxt))
                out, _, states = self.stack.run(np.asarray([[nxt]], np.int32), states)
        return " ".join(words).replace(" <eos> ", "\n").replace("<eos>", "\n")

    def gradient_norms(self, text, label=None, last_only=False):
        from .. import losses
        from ..diagnostics import gradient_norms_over_time
        from ..models.lm import build_wordlm_model as build_model

        tokens, _ = self._encode_checked(text)
        ids = self.next_ids
        if len(ids) < 2:
            raise ValueError("the text needs at least 2 words (inputs and next-word labels)")
        m = build_model(len(self.words), self.doc["settings"], 1)
        m.load_weights(self.path)
        m.compile(optimizer="sgd", loss=losses.SparseCategoricalCrossentropy(from_logits=True))
        with self.lock:
            m.reset_states()
            res = gradient_norms_over_time(m, ids[None, :-1].astype(np.int32), ids[None, 1:],
                                           sample_weight=_last_step_weights(len(ids) - 1, last_only))
        return tokens[:-1], {k: [float(v) for v in a] for k, a in res.items()}


class ClassifyExplorer(Explorer):
    kind, unit = "classify", "word"
    gradients = True
    gradient_label = "class"

    def __init__(self, path, model, doc):
        from ..text import tokenizer_from_json

        self.model, self.doc = model, doc
        self.tok = tokenizer_from_json(json.dumps(doc["tokenizer"]), source=str(path))
        self.classes = [str(c) for c in doc["classes"]]
        super().__init__(path, Stack(model.layers))

    def _ids(self, text):
        from ..text import clean_review

        clean = self.doc.get("clean", False)
        seq = self.tok.texts_to_sequences([clean_review(text) if clean else text])[0]
        return np.asarray(seq, dtype=np.int64)

    def encode(self, text):
        ids = self._ids(text)
        iw = self.tok.index_word
        return [str(iw.get(int(i), "?")) for i in ids], ids[None].astype(np.int32)

    def output_info(self, out, tokens):
        p = np.asarray(out, dtype=np.float64).reshape(-1)
        if p.size == 1:
            p = np.asarray([1.0 - p[0], p[0]])
        if p.size != len(self.classes):  # a sequence output: no class probabilities
            return {}
        return {"classes": [[c, round(float(v), 4)] for c, v in zip(self.classes, p)]}

    def gradient_norms(self, text, label=None, last_only=False):
        from ..diagnostics import gradient_norms_over_time

        tokens, x = self._encode_checked(text)
        if label not in self.classes:
            raise ValueError(f"label must be one of the model's classes {self.classes}, got {label!r}")
        k = self.classes.index(label)
        y = np.asarray([[float(k)]]) if len(self.classes) == 2 else np.asarray([k])
        with self.lock:
            res = gradient_norms_over_time(self.model, x, y)
        return tokens, {n: [float(v) for v in a] for n, a in res.items()}


class SequentialExplorer(Explorer):
    """A model saved with ``model.save``: no tokenizer, so the text holds the inputs themselves."""

    kind = "sequential"

    def __init__(self, path, model):
        from ..layers import Embedding

        self.model = model
        n_inputs = len(getattr(model, "inputs", None) or [None])
        if n_inputs != 1:
            raise ValueError(f"explore: {path} holds a model with {n_inputs} inputs; explore shows saved models with one "
                             "input whose layers form a chain (Sequential, or a functional model of that shape)")
        first = next((l for l in model.layers if type(l).__name__ != "InputLayer"), None)
        self.first_layer = first
        self.ids_input = isinstance(first, Embedding)
        self.unit = "id" if self.ids_input else "step"
        self.n_features = None if self.ids_input else model.input_shape[-1]
        super().__init__(path, Stack(model.layers))

    def info(self):
        d = super().info()
        d["input_help"] = ("whitespace-separated token ids" if self.ids_input else
                           f"one time step per line: {self.n_features} numbers separated by spaces or commas")
        return d

    def encode(self, text):
        if self.ids_input:
            parts = text.split()
            try:
                ids = [int(p) for p in parts]
            except ValueError:
                raise ValueError("this model reads token ids: give whitespace-separated integers") from None
            V = int(self.first_layer.input_dim)
            bad = [i for i in ids if not 0 <= i < V]
            if bad:
                raise ValueError(f"token ids must be in [0, {V - 1}], got {bad[:5]}")
            return [str(i) for i in ids], np.asarray([ids], dtype=np.int32)
        rows = []
        for n, line in enumerate([l for l in text.splitlines() if l.strip()], 1):
            try:
                row = [float(v) for v in line.replace(",", " ").split()]
            except ValueError:
                raise ValueError(f"line {n}: expected numbers, got {line[:40]!r}") from None
            if len(row) != self.n_features:
                raise ValueError(f"line {n}: expected {self.n_features} numbers per step, got {len(row)}")
            rows.append(row)
        return [f"t{t}" for t in range(len(rows))], np.asarray([rows], dtype=np.float32).reshape(1, len(rows), -1)


class TagExplorer(Explorer):
    kind, unit = "tag", "word"
    gradients = True
    gradient_label = "tags"

    def __init__(self, path, tagger):
        self.tagger = tagger
        super().__init__(path, Stack(tagger.rnns))

    def encode(self, text):
        toks = text.split()
        return toks, toks

    def trace(self, text, states=None):
        toks, _ = self._encode_checked(text)
        t = self.tagger
        w, c, _ = t.encode([toks])
        with self.lock:
            h = t.input_features(w, c, training=False)   # word, char and casing features
            out, series, finals = self.stack.run(h, states)
            p = t.out.forward(out, training=False)
        return toks, series, finals, p

    def output_info(self, out, tokens):
        p = np.asarray(out, dtype=np.float64)[0]
        ids = self.tagger.decode(p[None], np.ones((1, len(p)), dtype=bool))[0]   # Viterbi with a CRF
        return {"tags": [self.tagger.tags[int(k)] for k in ids]}

    def gradient_norms(self, text, label=None, last_only=False):
        """The typed sentence with ``label`` (space-separated tags, one per word; default: the predicted tags)."""
        toks, _ = self._encode_checked(_check_text(text))
        t = self.tagger
        if label is not None and not isinstance(label, str):
            raise ValueError(f"label must be a string of tags, got {type(label).__name__}")
        tags = label.split() if label and label.strip() else t.predict([toks])[0]
        if len(tags) != len(toks):
            raise ValueError(f"label: {len(tags)} tags for {len(toks)} words; give one tag per word")
        with self.lock:
            w, c, y = t.encode([toks], [tags])
            parts = [p for rnn in t.rnns for p in _trace.recurrent_parts(rnn)]
            norms = state_grad_norms(parts, lambda: t.loss_and_grads(w, c, y, training=False))
        return toks, norms


class Seq2SeqExplorer(Explorer):
    kind = "seq2seq"
    attention = True
    gradients = True
    gradient_label = "target"

    def __init__(self, path, model):
        self.model = model
        self.unit = "char" if model.source_vocab.level == "char" else "word"
        super().__init__(path, Stack([r for dirs in model.encoder for r in dirs]))

    def encode(self, text):
        toks = self.model.source_vocab.tokenize(text)[: self.model.max_source_len]
        return (toks[::-1] if self.model.reverse_source else toks), None

    def trace(self, text, states=None):
        toks, _ = self._encode_checked(text)
        m = self.model
        X = m.encode_sources([text], warn=False)
        series, finals = {}, {}
        with self.lock:
            h = m.src_emb.forward(X, training=False)[0]
            for dirs in m.encoder:
                outs = []
                for rnn in dirs:
                    s, fin = _trace.trace_rnn(rnn, h)
                    series[rnn.name], finals[rnn.name] = s, fin
                    outs.append(s["h"])
                h = np.concatenate(outs, axis=-1)
        return toks, series, finals, None

    def gradient_norms(self, text, label=None, last_only=False):
        """Source ``text`` with target ``label`` (default: the model's own greedy output); the decoder layers'
        norms are over the decoder steps (<start>, y_1 .. y_n), the encoder layers' over the source tokens."""
        toks, _ = self._encode_checked(_check_text(text))
        m = self.model
        if label is not None and not isinstance(label, str):
            raise ValueError(f"label must be the target text, got {type(label).__name__}")
        with self.lock:
            target = label if label and label.strip() else m.translate([text], warn=False)[0][0]
            _check_text(target, "label (the target text)")
            X = m.encode_sources([text], warn=False)
            Yin, Yout = m.encode_targets([target])
            parts = [(r.name, r) for dirs in m.encoder for r in dirs] + [(r.name, r) for r in m.decoder]
            norms = state_grad_norms(parts, lambda: m.loss_and_grads(X, Yin, Yout, training=False))
        return toks, norms

    def translate(self, text):
        _check_text(text)
        m = self.model
        with self.lock:
            (out, att), = m.translate([text], warn=False)
        src = m.source_vocab.tokenize(text)[: m.max_source_len]
        outs = m.target_vocab.tokenize(out) + ["<end>"]
        att = np.asarray(att, dtype=np.float64)
        return {"source": src, "output_tokens": outs[: att.shape[0]], "output": out,
                "attention": [[round(float(v), 4) for v in row] for row in att]}


# ------------------------------------------------------------------------------------------ loading
def open_model(path) -> Explorer:
    """An :class:`Explorer` for any model file ``rnnlab train ...`` or ``model.save`` writes (no pickle)."""
    from ..models.saving import check_npz_file

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"explore: no such model file: {path}")
    if os.path.isdir(path):
        cand = os.path.join(path, "model.npz")
        if not os.path.isfile(cand):
            raise ValueError(f"explore: {path} is a folder without a model.npz")
        path = cand
    from .. import io as rio

    try:     # the checked reading path (headers only; nothing inflated but the __config__ document)
        with rio.NpzArchive(path, "rnnlab model file") as arc:
            keys = set(arc.names)
            fmt = None
            if "__config__" in keys:
                try:    # Seq2Seq's 0-d unicode form or the uint8 form of the other files
                    doc = arc.read_json("__config__")
                    fmt = doc.get("format") if isinstance(doc, dict) else None
                except rio.FileFormatError:
                    fmt = None
    except rio.RnnlabError as e:
        raise ValueError(f"explore: {path} is not an rnnlab .npz model file ({e})") from None
    if "__config__" in keys:
        if fmt == "rnnlab.Seq2Seq":
            from ..models.seq2seq import Seq2Seq

            return Seq2SeqExplorer(path, Seq2Seq.load(path))
    if "__tagger__" in keys:
        from ..tagging.tagger import Tagger

        return TagExplorer(path, Tagger.load(path))
    if "__task__" in keys:
        from ..tasks.runstate import read_task_file

        doc, _ = read_task_file(path)
        task = doc.get("task")
        if task == "tag":
            from ..tagging.tagger import Tagger

            return TagExplorer(path, Tagger.load(path))
        from ..layers import tied  # noqa: F401  (registers TiedEmbedding / TiedDense for loading)
        from ..models.saving import load_model

        if task in ("charlm", "wordlm", "classify"):
            model = load_model(path, compile=task == "classify")
            if task == "wordlm":
                model = tied.link_tied_layers(model)
            return {"charlm": CharLMExplorer, "wordlm": WordLMExplorer, "classify": ClassifyExplorer}[task](
                path, model, doc)
        raise ValueError(f"explore: {path} is a '{task}' model; explore shows charlm, wordlm, classify, tag and "
                         "seq2seq models and saved Sequential models with recurrent layers")
    if "__rnnlab__" in keys:
        check_npz_file(path)
        from ..models.saving import load_model

        return SequentialExplorer(path, load_model(path, compile=False))
    raise ValueError(f"explore: {path} is not a model file written by rnnlab (no __rnnlab__, __task__ or __config__ "
                     "entry)")


# ------------------------------------------------------------------------------------------ analyses
def rank_units(v, start, end):
    """Units of ``v`` (T, U) ranked by mean inside [start, end) minus mean in the L steps either side."""
    T = v.shape[0]
    if not (0 <= start < end <= T):
        raise ValueError(f"the selection [{start}, {end}) must be a non-empty span inside the {T} tokens")
    L = end - start
    inside = v[start:end]
    idx = np.r_[max(0, start - L):start, end:min(T, end + L)]
    if idx.size == 0:   # the whole text is selected: compare with nothing (score = mean inside)
        out = np.zeros(v.shape[1])
    else:
        out = v[idx].mean(axis=0)
    mean_in = inside.mean(axis=0)
    score = mean_in - out
    order = np.argsort(-score, kind="stable")
    return order, score, mean_in, out


def find_matches(v, units, thresholds, length, max_matches=30):
    """Maximal runs where ``v[t, u] >= thresholds[u]`` for every chosen unit; sorted (see module docstring)."""
    on = np.all(v[:, units] >= np.asarray(thresholds)[None, :], axis=1)
    if not on.any():
        return []
    d = np.diff(np.r_[0, on.astype(np.int8), 0])
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    strength = [float(v[s:e][:, units].mean()) for s, e in zip(starts, ends)]
    order = sorted(range(len(starts)), key=lambda i: (abs((ends[i] - starts[i]) - length), -strength[i], starts[i]))
    return [(int(starts[i]), int(ends[i]), strength[i]) for i in order[:max_matches]]


def gate_saturation(series_by_layer, gates_by_layer, low=0.1, high=0.9):
    """``{layer: {gate: {"left": [...], "right": [...]}}}`` per-unit fractions of saturated steps."""
    out = {}
    for label, ser in series_by_layer.items():
        out[label] = {}
        for g in gates_by_layer.get(label, ()):
            v = ser[g]
            out[label][g] = {"left": np.round((v < low).mean(axis=0), 4).tolist(),
                             "right": np.round((v > high).mean(axis=0), 4).tolist()}
    return out


class Corpus:
    """The ``--text`` file traced in chunks (state carried across chunks), with progress, for matching and
    statistics. Series are kept as float16 (enough for pictures and thresholds; a 20,000-character text on an
    LSTM(256) takes ~60 MB)."""

    def __init__(self, explorer, text, chunk=400):
        self.explorer, self.text, self.chunk = explorer, text, chunk
        self.done = 0
        self.total = 0
        self.ready = False
        self.error = None
        self.tokens = []
        self.series = {}
        self.counts = {}

    def run(self):
        try:
            ex = self.explorer
            text = self.text
            if isinstance(ex, (Seq2SeqExplorer, TagExplorer)):
                # sentence models: one line at a time, each from a zero state
                pieces = [l for l in text.splitlines() if l.strip()]
                carry = False
            else:
                pieces = [text[i:i + self.chunk] for i in range(0, len(text), self.chunk)]
                carry = True
                if ex.unit == "word":   # cut at whitespace so no word is split between chunks
                    pieces, buf = [], ""
                    for w in text.split(" "):
                        buf = w if not buf else buf + " " + w
                        if len(buf) >= self.chunk:
                            pieces.append(buf + " ")
                            buf = ""
                    if buf:
                        pieces.append(buf)
            self.total = len(pieces)
            parts, states = {}, None
            for piece in pieces:
                try:
                    toks, series, finals, _ = ex.trace(piece, states if carry else None)
                except ValueError:
                    self.done += 1
                    continue
                states = finals
                self.tokens += toks
                for label, ser in series.items():
                    for name, v in ser.items():
                        parts.setdefault(label, {}).setdefault(name, []).append(v.astype(np.float16))
                self.done += 1
            self.series = {l: {n: np.concatenate(vs) for n, vs in ser.items()} for l, ser in parts.items()}
            self.ready = True
        except Exception as e:  # reported to the page through /api/progress
            self.error = f"{type(e).__name__}: {e}"
            self.ready = False

    def progress(self):
        return {"done": self.done, "total": self.total, "ready": self.ready, "error": self.error,
                "tokens": len(self.tokens) if self.ready else None}
