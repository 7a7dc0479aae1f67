"""Seq2Seq: an encoder-decoder with (Luong) global attention, teacher forcing, greedy and beam decoding.

Shapes: B batch, Ts source length, Tt target length, E embedding size, U ``units``,
Ud = U (or 2U with ``bidirectional``, whose two directions are concatenated), V target vocabulary.

The training model is a functional :class:`rnnlab.Model` built from public layers
(:attr:`Seq2Seq.training_model`), and :meth:`Seq2Seq.fit` trains it with the one engine
(:meth:`rnnlab.models.engine.Engine.fit`: batching, progress bar, callbacks, clipping, the NaN policy)::

    source ids (B, Ts) --Embedding(mask_zero)--> x (B, Ts, E)           source mask m = ids != 0
    encoder layers l = 1..L: LSTM/GRU/SimpleRNN(U, return_sequences, return_state) on the masked x
        (bidirectional: Bidirectional(RNN, merge_mode="concat"); the final states of the two directions
        are concatenated: Concatenate()([h_fwd, h_bwd]), ...)       H (B, Ts, Ud), final states s_l
    decoder input ids [<start>, y_1 .. y_n] --Embedding(mask_zero)--> (B, Tt, E)   target mask
    decoder layers l = 1..L: RNN(Ud, return_sequences) with initial_state = s_l      S (B, Tt, Ud)
    context, a = Attention(score_mode)([S, H], return_attention_scores=True)
        score ``dot`` S_t.H_j, ``general`` S_t W H_j; ``concat``: AdditiveAttention over
        Dense(Ud)(S) (query) and Dense(Ud)(H) (key), v . tanh(q_t + k_j); padded sources get -1e9
        (``attention="none"``: context c_t = the encoder's last top-layer state h_L at every step)
    h~_t   = Dense(Ud, tanh, no bias)(Concatenate()([c_t, S_t])) = tanh(W_c [c_t; S_t])
    logits = Dense(V)(h~)       loss: SparseCategoricalCrossentropy(from_logits=True) against
                                [y_1 .. y_n, <end>], averaged over the non-padded target steps (the target
                                mask reaches the loss along the graph, as in Keras)

The gradient is the graph's backward (:mod:`rnnlab.models.functional`): each layer's hand-written
``backward`` in reverse order -- the output and combination Dense layers, the attention layer (gradients for
query -> S and values -> H), the decoder RNNs (returning gradients for their initial states, which flow through
the Concatenate into the encoder's final states), the encoder RNNs and the embeddings. This is Luong et al.
(2015) global attention without input feeding (h~_t is not fed to the next decoder input), which keeps the
teacher-forced decoder one call per layer.

Decoding: greedy (:meth:`Seq2Seq.greedy_decode`, batched) or beam search (:meth:`Seq2Seq.beam_decode`);
the encoder runs as its own functional model on the trained layers (:attr:`Seq2Seq.encoder_model`, as the
keras-io ``lstm_seq2seq`` inference models) and the decoder steps each layer's cell, sharing its weights. Both
return the attention weights of every produced token. ``reverse_source=True`` feeds the source tokens in
reverse order (Sutskever et al. 2014); returned attention maps are always in reading order.

Inputs longer than ``max_source_len`` (the longest training source, unless given) are truncated with a
warning. Unknown tokens map to ``<unk>`` with a warning. An empty input gives an empty output.

Files: one ``.npz`` (every weight under ``<name>/<layer>/<weight>`` plus ``__config__``, JSON, no pickle),
format version 2. Version 1 files (written before Seq2Seq trained through the engine) have the same weight
names and load unchanged; a file of a newer version is refused with a message naming both versions.
"""
from __future__ import annotations

import math
import sys
import time
import warnings

import numpy as np

from .. import backend
from ..callbacks import Callback
from ..datasets.seq2seq_data import END_ID, PAD_ID, START_ID, Vocabulary, pad_ids
from ..layers import (GRU, LSTM, AdditiveAttention, Attention, Bidirectional, Concatenate, Dense, Embedding,
                      SimpleRNN)
from ..layers.base import Layer, register
from ..losses import SparseCategoricalCrossentropy
from .data_adapters import PyDataset
from .functional import Input, Model

_CELLS = {"lstm": LSTM, "gru": GRU, "rnn": SimpleRNN}
ATTENTION_MODES = ("dot", "general", "concat", "none")
#: the version :meth:`Seq2Seq.save` writes; :meth:`Seq2Seq.load` reads versions 1 .. FORMAT_VERSION
FORMAT_VERSION = 2


@register
class StateOverTime(Layer):
    """``[state (B, U), sequence (B, T, D)] -> (B, T, U)``: the state repeated at each of the sequence's T steps
    (the context of ``attention="none"``: the encoder's last state at every decoder step).

    Forward ``y[:, t] = state``; backward ``dL/dstate = sum_t dL/dy[:, t]`` (the sequence gets no gradient: only
    its length is read). The output mask is the sequence's mask."""

    def compute_output_shape(self, input_shape):
        (b, u), seq = input_shape[0], input_shape[1]
        return (b, seq[1], u)

    def compute_mask(self, inputs, mask=None):
        return None if mask is None else mask[1]

    def forward(self, inputs, training=False, mask=None):
        state, seq = inputs
        state = np.asarray(state)
        seq_shape = np.shape(seq)
        if state.ndim != 2 or len(seq_shape) != 3 or state.shape[0] != seq_shape[0]:
            raise ValueError(f"Layer '{self.name}' (StateOverTime): expected [state (batch, units), sequence (batch, "
                             f"time, features)], got shapes {state.shape} and {seq_shape}")
        self._cache = (state.shape, seq_shape)
        return np.ascontiguousarray(np.broadcast_to(state[:, None, :], (state.shape[0], seq_shape[1],
                                                                        state.shape[1])))

    def backward(self, grad):
        state_shape, seq_shape = self._need_cache()
        grad = np.asarray(grad)
        expected = (state_shape[0], seq_shape[1], state_shape[1])
        if grad.shape != expected:
            raise ValueError(f"Layer '{self.name}' (StateOverTime): gradient must have shape {expected}, got "
                             f"{grad.shape}")
        return [grad.sum(axis=1), None]


class _Epochs(Callback):
    """What :meth:`Seq2Seq.fit` adds to the engine's loop: the time budget (stop after the running batch), the
    validation exact match, Seq2Seq's history records and epoch lines, and the ``on_epoch_end`` hook."""

    def __init__(self, s2s, time_budget, validation_pairs, on_epoch_end, verbose, stream):
        super().__init__()
        self.s2s, self.budget, self.val = s2s, time_budget, validation_pairs
        self.hook, self.verbose, self.stream = on_epoch_end, verbose, stream
        self.t0 = time.perf_counter()
        self.steps = 0
        self.budget_hit = False

    def on_epoch_begin(self, epoch, logs=None):
        self.steps = 0
        if self.verbose == 2:
            print(f"Epoch {epoch + 1}/{self.params.get('epochs')}", file=self.stream, flush=True)

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.budget is not None and time.perf_counter() - self.t0 > self.budget:
            self.budget_hit = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        rec = {"epoch": epoch + 1, "loss": float(logs["loss"]), "token_acc": float(logs.get("token_acc", 0.0)),
               "steps": self.steps, "seconds": time.perf_counter() - self.t0}
        if self.val:
            ev = self.s2s.evaluate(self.val)
            rec["val_exact_match"] = ev["exact_match_accuracy"]
            rec["val_token_accuracy"] = ev["token_accuracy"]
        if self.verbose:
            extra = f" - val exact match {rec['val_exact_match'] * 100:.2f}%" if self.val else ""
            print(f"  epoch {epoch + 1}: loss {rec['loss']:.4f} - token acc {rec['token_acc']:.4f}{extra} - "
                  f"{rec['seconds']:.0f}s elapsed", file=self.stream, flush=True)
        self.s2s.history.append(rec)
        if self.hook is not None and self.hook(epoch, rec):
            self.model.stop_training = True
        if self.budget_hit and self.verbose:
            print(f"  time budget of {self.budget:.0f}s reached: training stopped", file=self.stream, flush=True)


class _PairBatches(PyDataset):
    """The training pairs as batches for the engine, in the order of the old Seq2Seq loop: a permutation of
    the pairs per epoch from ``np.random.default_rng(seed)``, each batch cut to its own longest source and
    target (no work on padding beyond the batch's longest sequence). A Keras-style ``PyDataset``:
    ``len()``, ``[i] -> ([source ids, decoder input ids], decoder targets)``, ``on_epoch_end()``."""

    def __init__(self, X, Yin, Yout, batch_size, seed):
        super().__init__()
        self.X, self.Yin, self.Yout, self.batch_size = X, Yin, Yout, int(batch_size)
        self.src_len = np.count_nonzero(X, axis=1)
        self.tgt_len = np.count_nonzero(Yout, axis=1)
        self.gen = np.random.default_rng(seed)
        self.order = self.gen.permutation(len(X))

    def __len__(self):
        return math.ceil(len(self.X) / self.batch_size)

    def __getitem__(self, k):
        idx = self.order[k * self.batch_size:(k + 1) * self.batch_size]
        ts, tt = int(self.src_len[idx].max()), int(self.tgt_len[idx].max())
        return [self.X[idx, :ts], self.Yin[idx, :tt]], self.Yout[idx, :tt]

    def on_epoch_end(self):
        self.order = self.gen.permutation(len(self.X))


class Seq2Seq:
    """Encoder-decoder with attention; see the module docstring for the equations and the graph.

    Args: ``source_vocab``/``target_vocab`` (:class:`~rnnlab.datasets.seq2seq_data.Vocabulary`),
    ``embedding_dim``, ``units``, ``cell`` ("lstm" | "gru" | "rnn"), ``num_layers``, ``bidirectional``,
    ``attention`` ("dot" | "general" | "concat" | "none"), ``reverse_source``, ``max_source_len``,
    ``max_target_len`` (decoding stops after this many tokens plus one), ``name``.

    Attributes: :attr:`training_model` (the functional model ``[source ids, decoder input ids] -> logits``
    that :meth:`fit` trains; ``summary()``, ``predict``, ``compute_gradients`` work on it as on any Model),
    :attr:`encoder_model` (``source ids -> [H, final states...]``), the layers ``src_emb``, ``encoder`` (per
    layer, the list of its directions), ``tgt_emb``, ``decoder``, ``att``, ``combine``, ``out``.
    """

    def __init__(self, source_vocab, target_vocab, embedding_dim=32, units=64, cell="lstm", num_layers=1,
                 bidirectional=False, attention="dot", reverse_source=False, max_source_len=64,
                 max_target_len=64, name="seq2seq"):
        if not isinstance(source_vocab, Vocabulary) or not isinstance(target_vocab, Vocabulary):
            raise TypeError("Seq2Seq: source_vocab and target_vocab must be Vocabulary objects")
        if cell not in _CELLS:
            raise ValueError(f"Seq2Seq: cell must be one of {sorted(_CELLS)}, got {cell!r}")
        if attention not in ATTENTION_MODES:
            raise ValueError(f"Seq2Seq: attention must be one of {list(ATTENTION_MODES)}, got {attention!r}")
        for arg, val in (("embedding_dim", embedding_dim), ("units", units), ("num_layers", num_layers),
                         ("max_source_len", max_source_len), ("max_target_len", max_target_len)):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val <= 0:
                raise ValueError(f"Seq2Seq: {arg} must be a positive int, got {val!r}")
        self.source_vocab, self.target_vocab = source_vocab, target_vocab
        self.embedding_dim, self.units, self.cell = int(embedding_dim), int(units), cell
        self.num_layers, self.bidirectional = int(num_layers), bool(bidirectional)
        self.attention, self.reverse_source = attention, bool(reverse_source)
        self.max_source_len, self.max_target_len = int(max_source_len), int(max_target_len)
        self.name = name
        self.dtype = backend.floatx()
        self.history = []
        self.stop_reason = None
        self._make_layers()
        self._make_graph()

    # ------------------------------------------------------------------ the layers and the graph
    def _make_layers(self):
        """The layers, built in a fixed order (the same order, and so the same initial weights for a seed, as
        the format-1 Seq2Seq)."""
        E, U = self.embedding_dim, self.units
        Ud = self.dec_units = U * (2 if self.bidirectional else 1)
        RNNCls = _CELLS[self.cell]
        self.src_emb = Embedding(len(self.source_vocab), E, mask_zero=True, name="source_embedding")
        self.tgt_emb = Embedding(len(self.target_vocab), E, mask_zero=True, name="target_embedding")
        self.src_emb._maybe_build((None, None))
        self.tgt_emb._maybe_build((None, None))
        self.encoder, self.encoder_layers = [], []
        d_in = E
        for i in range(self.num_layers):
            rnn = RNNCls(U, return_sequences=True, return_state=True, name=f"encoder_{i}")
            if self.bidirectional:
                back = RNNCls(U, return_sequences=True, return_state=True, go_backwards=True,
                              name=f"backward_encoder_{i}")
                wrapper = Bidirectional(rnn, backward_layer=back, name=f"bidirectional_encoder_{i}")
                dirs = [wrapper.forward_layer, wrapper.backward_layer]
            else:
                wrapper, dirs = rnn, [rnn]
            for r in dirs:
                r._maybe_build((None, None, d_in))
            wrapper._maybe_build((None, None, d_in))
            self.encoder.append(dirs)
            self.encoder_layers.append(wrapper)
            d_in = Ud
        self.decoder = []
        d_in = E
        for i in range(self.num_layers):
            r = RNNCls(Ud, return_sequences=True, return_state=True, name=f"decoder_{i}")
            r._maybe_build((None, None, d_in))
            self.decoder.append(r)
            d_in = Ud
        self.att = self.att_q = self.att_k = None
        if self.attention in ("dot", "general"):
            self.att = Attention(score_mode=self.attention, name="attention")
            self.att._maybe_build([(None, None, Ud), (None, None, Ud)])
        elif self.attention == "concat":
            self.att_q = Dense(Ud, use_bias=False, name="attention_query")
            self.att_k = Dense(Ud, use_bias=False, name="attention_key")
            self.att = AdditiveAttention(name="attention")
            self.att_q._maybe_build((None, None, Ud))
            self.att_k._maybe_build((None, None, Ud))
            self.att._maybe_build([(None, None, Ud)] * 3)
        self.combine = Dense(Ud, activation="tanh", use_bias=False, name="attention_combine")
        self.combine._maybe_build((None, None, 2 * Ud))
        self.out = Dense(len(self.target_vocab), name="output")
        self.out._maybe_build((None, None, Ud))
        self.loss_fn = SparseCategoricalCrossentropy(from_logits=True)

    def _make_graph(self):
        """Wire the layers with the functional API: the training model, the same graph with the attention
        weights as a second output (:meth:`forward`), and the inference encoder."""
        src = Input((None,), dtype="int32", name="source_ids")
        yin = Input((None,), dtype="int32", name="decoder_input_ids")
        h = self.src_emb(src)
        finals = []
        for wrapper in self.encoder_layers:
            res = wrapper(h)
            h, states = res[0], res[1:]
            if self.bidirectional:   # [h_f, c_f, h_b, c_b] -> [h_f;h_b], [c_f;c_b]: the decoder's initial state
                n = len(states) // 2
                states = [Concatenate(name=f"{wrapper.name}_state_{j}")([states[j], states[n + j]])
                          for j in range(n)]
            finals.append(list(states))
        H = h
        d = self.tgt_emb(yin)
        for layer, st in zip(self.decoder, finals):
            d = layer(d, initial_state=st)[0]
        S = d
        if self.attention == "none":
            ctx, A = StateOverTime(name="last_encoder_state")([finals[-1][0], S]), None
        elif self.attention == "concat":
            ctx, A = self.att([self.att_q(S), H, self.att_k(H)], return_attention_scores=True)
        else:
            ctx, A = self.att([S, H], return_attention_scores=True)
        logits = self.out(self.combine(Concatenate(name="context_and_state")([ctx, S])))
        self.training_model = Model([src, yin], logits, name=self.name)
        self._forward_model = Model([src, yin], [logits] if A is None else [logits, A], name=f"{self.name}_forward")
        self.encoder_model = Model(src, [H] + [s for st in finals for s in st], name=f"{self.name}_encoder")
        self._state_counts = [len(st) for st in finals]

    # ------------------------------------------------------------------ weights
    @property
    def layers(self):
        ls = [self.src_emb] + [r for dirs in self.encoder for r in dirs] + [self.tgt_emb] + self.decoder
        ls += [x for x in (self.att_q, self.att_k, self.att) if x is not None]
        return ls + [self.combine, self.out]

    def _file_label(self, layer):
        """A layer's name in weight paths: the format-1 names (``encoder_0``, ``encoder_0_backward``)."""
        for i, dirs in enumerate(self.encoder):
            if layer is dirs[0]:
                return f"encoder_{i}"
            if len(dirs) > 1 and layer is dirs[1]:
                return f"encoder_{i}_backward"
        return layer.name

    def iter_weights(self):
        """``(path, owner, weight)`` for every weight, paths ``<name>/<layer>/<weight>`` (as format 1)."""
        for layer in self.layers:
            label = self._file_label(layer)
            head = f"{self.name}/{layer.name}/"
            for path, owner, w in layer.iter_weights(f"{self.name}/"):
                yield f"{self.name}/{label}/{path[len(head):]}", owner, w

    def trainable_weight_refs(self):
        for path, owner, w in self.iter_weights():
            if owner.trainable:
                yield path, owner, w

    def count_params(self):
        return int(sum(owner.params[w].size for _, owner, w in self.iter_weights()))

    def summary(self, print_fn=None):
        """The training model's Keras-style table (layers, output shapes, parameters, "Connected to")."""
        self.training_model.summary(print_fn=print_fn)

    def get_config(self):
        return {"source_vocab": self.source_vocab.get_config(), "target_vocab": self.target_vocab.get_config(),
                "embedding_dim": self.embedding_dim, "units": self.units, "cell": self.cell,
                "num_layers": self.num_layers, "bidirectional": self.bidirectional, "attention": self.attention,
                "reverse_source": self.reverse_source, "max_source_len": self.max_source_len,
                "max_target_len": self.max_target_len, "name": self.name}

    @classmethod
    def from_config(cls, cfg):
        cfg = dict(cfg)
        cfg["source_vocab"] = Vocabulary.from_config(cfg["source_vocab"])
        cfg["target_vocab"] = Vocabulary.from_config(cfg["target_vocab"])
        return cls(**cfg)

    # ------------------------------------------------------------------ data
    def encode_sources(self, texts, warn=True):
        """Texts -> (B, Ts) right-padded ids (reversed within each row for ``reverse_source``)."""
        rows = []
        too_long = 0
        for t in texts:
            ids = self.source_vocab.encode(t, warn=warn)
            if len(ids) > self.max_source_len:
                too_long += 1
                ids = ids[: self.max_source_len]
            if self.reverse_source:
                ids = ids[::-1]
            rows.append(ids)
        if too_long and warn:
            warnings.warn(f"{too_long} input(s) longer than the model's maximum of {self.max_source_len} "
                          f"tokens were truncated", stacklevel=2)
        return pad_ids(rows, max(1, max((len(r) for r in rows), default=1)))

    def encode_targets(self, texts):
        """Targets -> (decoder inputs [<start>, y...], decoder targets [y..., <end>]), both (B, Tt)."""
        rows = [self.target_vocab.encode(t, warn=False)[: self.max_target_len] for t in texts]
        T = max(len(r) for r in rows) + 1
        yin = pad_ids([[START_ID] + r for r in rows], T)
        yout = pad_ids([r + [END_ID] for r in rows], T)
        return yin, yout

    # ------------------------------------------------------------------ forward pieces
    def _encode(self, X, training=False):
        """The inference encoder: ``(H (B, Ts, Ud), final states per layer, source mask)``."""
        outs = self.encoder_model.forward(X, training=training)
        H, flat = outs[0], outs[1:]
        finals, k = [], 0
        for n in self._state_counts:
            finals.append(list(flat[k:k + n]))
            k += n
        return H, finals, X != PAD_ID

    def _output(self, S, H, mask, finals):
        """Logits and attention weights for decoder states S (the head of the graph, for the decoding steps)."""
        if self.attention == "none":
            top = finals[-1][0]
            ctx = np.broadcast_to(top[:, None, :], S.shape)
            A = None
        elif self.attention == "concat":
            ctx, A = self.att.forward([self.att_q.forward(S), H, self.att_k.forward(H)], mask=[None, mask],
                                      return_attention_scores=True)
        else:
            ctx, A = self.att.forward([S, H], mask=[None, mask], return_attention_scores=True)
        hc = self.combine.forward(np.concatenate([ctx, S], axis=-1))
        return self.out.forward(hc), A

    def forward(self, X, Yin, training=False):
        """Teacher-forced logits (B, Tt, V) and attention weights (B, Tt, Ts) (None without attention): the
        training graph run on source ids ``X`` and decoder input ids ``Yin``."""
        out = self._forward_model.forward([X, Yin], training=training)
        if isinstance(out, list):
            return out[0], out[1]
        return out, None

    def backward(self, dlogits):
        """Back-propagate dL/dlogits through the graph of the last :meth:`forward`; fills every layer's
        ``grads``."""
        m = self._forward_model
        m.input_grad_needed = False     # token ids have no gradient
        try:
            m.backward([dlogits, None] if self.attention != "none" else dlogits)
        finally:
            m.input_grad_needed = True

    def loss_and_grads(self, X, Yin, Yout, training=True):
        """Masked mean token cross-entropy of a batch; fills the gradients. Returns (loss, token accuracy)."""
        logits, _ = self.forward(X, Yin, training=training)
        tmask = Yout != PAD_ID
        loss, dlogits = self.loss_fn.forward_backward(Yout, logits, mask=tmask)
        self.backward(dlogits)
        acc = float(np.sum((logits.argmax(-1) == Yout) & tmask) / max(1, tmask.sum()))
        return loss, acc
    # ------------------------------------------------------------------ decoding
    def _dec_step(self, tokens, states, H, mask, finals):
        """One decoding step: each decoder layer's cell (sharing the layer's weights) steps once,
        ``x, states = layer.cell(x, states)``, instead of running the layer over a length-1 sequence."""
        x = self.tgt_emb.forward(tokens[:, None])[:, 0]
        new = []
        for layer, st in zip(self.decoder, states):
            x, st = layer.cell(x, st)
            new.append(list(st))
        logits, A = self._output(x[:, None], H, mask, finals)
        return logits[:, 0], (None if A is None else A[:, 0]), new

    def greedy_decode(self, X, max_len=None):
        """Batched greedy decoding of ids X (B, Ts): (ids (B, <=max_len+1), attention (B, steps, Ts))."""
        max_len = self.max_target_len + 1 if max_len is None else int(max_len)
        H, finals, mask = self._encode(X)
        B = X.shape[0]
        tokens = np.full(B, START_ID, dtype=np.int64)
        states = [list(s) for s in finals]
        outs, atts = [], []
        done = np.zeros(B, bool)
        for _ in range(max_len):
            logits, A, states = self._dec_step(tokens, states, H, mask, finals)
            tokens = logits.argmax(-1)
            tokens[done] = PAD_ID
            outs.append(tokens)
            atts.append(A if A is not None else np.zeros((B, X.shape[1]), self.dtype))
            done |= tokens == END_ID
            if done.all():
                break
        return np.stack(outs, 1), np.stack(atts, 1)

    def beam_decode(self, x_row, beam_size=5, max_len=None, length_penalty=0.0):
        """Beam search for one source (ids (Ts,)): best ids and their attention (steps, Ts).

        Scores are summed log-probabilities, divided by ``len ** length_penalty`` for ranking finished
        hypotheses (0 = no normalisation)."""
        max_len = self.max_target_len + 1 if max_len is None else int(max_len)
        K = int(beam_size)
        if K < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size!r}")
        X = np.asarray(x_row)[None]
        H, finals, mask = self._encode(X)
        Hk, maskk = np.repeat(H, K, 0), np.repeat(mask, K, 0)
        finals_k = [[np.repeat(s, K, 0) for s in st] for st in finals]
        states = [list(s) for s in finals_k]
        tokens = np.full(K, START_ID, dtype=np.int64)
        scores = np.full(K, -np.inf)
        scores[0] = 0.0                             # only one live hypothesis at the start
        hyps = [[] for _ in range(K)]
        att_hist = [[] for _ in range(K)]
        finished = []
        for step in range(max_len):
            logits, A, states = self._dec_step(tokens, states, Hk, maskk, finals_k)
            lp = logits - logits.max(-1, keepdims=True)
            lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
            total = scores[:, None] + lp.astype(np.float64)
            flat = np.argsort(-total, axis=None)[: 2 * K]
            new_tokens, new_scores, src_beam = [], [], []
            for f in flat:
                b, tok = divmod(int(f), total.shape[1])
                if not np.isfinite(total[b, tok]):
                    continue
                a = None if A is None else A[b]
                if tok == END_ID:
                    L = len(hyps[b]) + 1
                    finished.append((total[b, tok] / (L ** length_penalty), hyps[b] + [tok],
                                     att_hist[b] + ([a] if a is not None else [])))
                else:
                    new_tokens.append(tok)
                    new_scores.append(total[b, tok])
                    src_beam.append(b)
                if len(new_tokens) == K:
                    break
            if len(finished) >= K or not new_tokens:
                break
            n = len(new_tokens)
            idx = np.array(src_beam + [src_beam[0]] * (K - n))
            hyps = [hyps[b] + [t] for b, t in zip(idx[:n], new_tokens)] + [[] for _ in range(K - n)]
            att_hist = [att_hist[b] + ([A[b]] if A is not None else []) for b in idx]
            tokens = np.array(new_tokens + [START_ID] * (K - n), dtype=np.int64)
            scores = np.array(new_scores + [-np.inf] * (K - n))
            states = [[s[idx] for s in st] for st in states]
        if not finished:  # nothing ended within max_len: take the best live hypothesis
            b = int(np.argmax(scores))
            finished.append((scores[b], hyps[b], att_hist[b]))
        best = max(finished, key=lambda f: f[0])
        ids = np.array(best[1], dtype=np.int64)
        att = np.array(best[2]) if best[2] else np.zeros((len(ids), X.shape[1]), self.dtype)
        return ids, att

    def translate(self, texts, beam_size=1, batch_size=512, warn=True):
        """Convert texts; returns a list of ``(output_text, attention)`` with attention of shape
        (output tokens incl. <end>, source tokens) in reading order (zeros for ``attention="none"``)."""
        if isinstance(texts, str):
            raise TypeError("Seq2Seq.translate expects a list of strings; wrap a single text in a list")
        results = [None] * len(texts)
        todo = [i for i, t in enumerate(texts) if self.source_vocab.tokenize(t)]
        for i, t in enumerate(texts):
            if i not in set(todo):
                results[i] = ("", np.zeros((0, 0), self.dtype))
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            X = self.encode_sources([texts[i] for i in chunk], warn=warn)
            if beam_size > 1:
                decoded = [self.beam_decode(X[r], beam_size) for r in range(len(chunk))]
            else:
                ids, att = self.greedy_decode(X)
                decoded = [(ids[r], att[r]) for r in range(len(chunk))]
            for r, i in enumerate(chunk):
                ids_r, att_r = decoded[r]
                n_src = int(np.count_nonzero(X[r]))
                ends = np.flatnonzero(ids_r == END_ID)
                n_out = int(ends[0]) + 1 if ends.size else len(ids_r)
                a = np.asarray(att_r)[:n_out, :n_src]
                if self.reverse_source:
                    a = a[:, ::-1]
                results[i] = (self.target_vocab.decode(ids_r), a)
        return results

    def evaluate(self, pairs, batch_size=1000):
        """Exact-match and token accuracy (greedy) on (source, target) pairs."""
        if not pairs:
            raise ValueError("Seq2Seq.evaluate: no pairs given")
        srcs = [s for s, _ in pairs]
        preds = [p for p, _ in self.translate(srcs, batch_size=batch_size, warn=False)]
        exact = sum(p == t for p, (_, t) in zip(preds, pairs))
        tok_ok = tok_n = 0
        for p, (_, t) in zip(preds, pairs):
            pt, tt = self.target_vocab.tokenize(p), self.target_vocab.tokenize(t)
            tok_ok += sum(a == b for a, b in zip(pt, tt))
            tok_n += max(len(tt), len(pt))
        return {"exact_match_accuracy": exact / len(pairs), "token_accuracy": tok_ok / max(tok_n, 1),
                "predictions": preds}

    # ------------------------------------------------------------------ training
    def fit(self, pairs, epochs=10, batch_size=64, optimizer=None, validation_pairs=None, time_budget=None,
            verbose=1, seed=0, stream=None, on_epoch_end=None, callbacks=None):
        """Train on (source, target) pairs with teacher forcing, masked token loss and ``optimizer``
        (default Adam(1e-3, clipnorm=1)), through the engine: ``training_model.fit`` on the batches of the pairs
        (shuffled per epoch by ``np.random.default_rng(seed)``, each cut to its longest sequences).

        ``time_budget`` (seconds) stops cleanly after the running batch. ``validation_pairs``: the greedy exact
        match after every epoch. ``on_epoch_end(epoch, logs) -> bool`` may return True to stop. ``callbacks``:
        more :class:`rnnlab.callbacks.Callback` objects for the engine (their ``model`` is
        :attr:`training_model`). The NaN policy is the engine's: a non-finite loss or gradient stops training
        before the update with a RuntimeWarning, and :attr:`stop_reason` says why. Returns the history list."""
        from ..optimizers import Adam
        from ..metrics import SparseCategoricalAccuracy

        if not pairs:
            raise ValueError("Seq2Seq.fit: no training pairs")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"Seq2Seq.fit: batch_size must be a positive int, got {batch_size!r}")
        stream = stream or sys.stdout
        opt = optimizer if optimizer is not None else Adam(1e-3, clipnorm=1.0)
        self.stop_reason = None
        X = self.encode_sources([s for s, _ in pairs], warn=False)
        Yin, Yout = self.encode_targets([t for _, t in pairs])
        tm = self.training_model
        tm.compile(optimizer=opt, loss=self.loss_fn, metrics=[SparseCategoricalAccuracy(name="token_acc")])
        hooks = _Epochs(self, time_budget, validation_pairs, on_epoch_end, verbose, stream)
        tm.fit(_PairBatches(X, Yin, Yout, batch_size, seed), epochs=epochs, verbose=1 if verbose == 1 else 0,
               callbacks=list(callbacks or []) + [hooks], stream=stream)
        self.stop_reason = tm.stop_reason
        return self.history

    # ------------------------------------------------------------------ saving
    def save(self, path):
        """One ``.npz``: every weight under its path plus ``__config__`` (JSON), written atomically through
        :func:`rnnlab.io.write_npz`. The document stays the 0-d unicode array Seq2Seq files have always held
        (:meth:`load` reads it and the uint8 form of the other rnnlab files); ``allow_nan``: the history may
        hold a NaN loss."""
        from ..io import write_npz

        arrays = {path_: owner.params[w] for path_, owner, w in self.iter_weights()}
        meta = {"format": "rnnlab.Seq2Seq", "version": FORMAT_VERSION, "config": self.get_config(),
                "history": self.history}
        write_npz(path, arrays, {"__config__": meta}, allow_nan=True, doc_form="str")
        return path

    @classmethod
    def load(cls, path):
        """Load a model written by :meth:`save` (no pickle), format version 1 or 2. Read through
        :class:`rnnlab.io.NpzArchive`: the config's sizes are bounded by the file's arrays, the model is built
        shape-only and its weight names and shapes compared with the array headers before anything is allocated;
        every problem is an :class:`rnnlab.io.FileFormatError` (a ``ValueError``) naming the file; a file of a
        newer format version is refused naming its version and the versions this rnnlab reads."""
        from .. import io as rio

        what = "rnnlab Seq2Seq model file"
        try:
            arc = rio.NpzArchive(path, what)
        except FileNotFoundError:
            raise FileNotFoundError(f"Seq2Seq.load: no such model file: {path}") from None
        with arc:
            path = arc.path
            if "__config__" not in arc:
                raise rio.FileFormatError(f"Seq2Seq.load: {path} has no __config__ entry (not a Seq2Seq model file)",
                                          path=path)
            meta = arc.read_json("__config__")
            if not isinstance(meta, dict) or meta.get("format") != "rnnlab.Seq2Seq":
                fmt = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
                raise rio.FileFormatError(f"Seq2Seq.load: {path} holds a {fmt!r:.60}, not an rnnlab.Seq2Seq",
                                          path=path)
            version = meta.get("version")
            if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
                raise rio.FileFormatError(
                    f"Seq2Seq.load: {path} is an rnnlab.Seq2Seq file of format version {version!r:.40}; this "
                    f"rnnlab reads versions 1 to {FORMAT_VERSION} (a newer rnnlab wrote it, or it is damaged)",
                    path=path)
            cfg = meta.get("config")
            if not isinstance(cfg, dict):
                raise rio.FileFormatError(f"Seq2Seq.load: {path}: corrupt config ({type(cfg).__name__})", path=path)
            stored = set(arc.names) - {"__config__"}
            rio.check_config_sizes(cfg, arc.max_dim(stored), f"Seq2Seq.load: {path}", path=path,
                                   count_bound=len(stored))
            try:
                with rio.shape_only():
                    dry = cls.from_config(cfg)
                    expected = {p: owner.params[w].shape for p, owner, w in dry.iter_weights()}
                del dry
            except rio.BUILD_ERRORS as e:
                raise rio.build_error(path, "Seq2Seq", e) from None
            missing, extra = sorted(set(expected) - stored), sorted(stored - set(expected))
            if missing or extra:
                raise rio.FileFormatError(f"Seq2Seq.load: {path} does not match its config: missing {missing[:5]}, "
                                          f"unexpected {extra[:5]}", path=path)
            for p, shape in expected.items():
                if arc.shape(p) != shape or arc.dtype(p).kind != "f":
                    raise rio.FileFormatError(f"Seq2Seq.load: {path}: weight {p} is {arc.dtype(p)} {arc.shape(p)}, "
                                              f"expected a float array of shape {shape}", path=path, member=p)
            model = cls.from_config(cfg)
            for p, owner, w in model.iter_weights():
                owner.params[w][...] = arc.read(p, shape=owner.params[w].shape)
            history = meta.get("history", [])
            model.history = history if isinstance(history, list) else []
        for layer in model.layers:
            layer._weights_changed()
        return model
