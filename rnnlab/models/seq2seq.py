"""Seq2Seq: an encoder-decoder with (Luong) global attention, teacher forcing, greedy and beam decoding.

Shapes: B batch, Ts source length, Tt target length, E embedding size, U ``units``,
Ud = U (or 2U with ``bidirectional``, whose two directions are concatenated), V target vocabulary.

Training (teacher forcing; the whole target sequence in one call of each layer)::

    x      = Embedding_src(src ids)                            (B, Ts, E)   source mask m = ids != 0
    H, s_l = encoder layers l = 1..L (LSTM/GRU/SimpleRNN, return_sequences, masked;
             bidirectional: a forward and a go_backwards layer, outputs/states concatenated)
                                                                (B, Ts, Ud), final states per layer
    y      = Embedding_tgt([<start>, y_1 .. y_n])               (B, Tt, E)
    S      = decoder layers l = 1..L, layer l starts from the encoder's final states s_l
                                                                (B, Tt, Ud)
    a_t    = softmax_j(score(S_t, H_j))  with score ``dot`` S_t.H_j, ``general`` S_t W H_j, or ``concat``
             v . tanh(W_q S_t + W_k H_j); padded source positions get -1e9   (B, Tt, Ts)
    c_t    = sum_j a_tj H_j                                     (B, Tt, Ud)   (``attention="none"``:
                                                                c_t = the encoder's last top-layer state)
    h~_t   = tanh(W_c [c_t; S_t])                               (B, Tt, Ud)
    logits = h~ W_o + b_o  ->  softmax cross-entropy against [y_1 .. y_n, <end>], pads masked out

Backward runs the same layers in reverse (each layer's hand-written ``backward``): the output and
combination Dense layers, the attention layer (gradients for query -> S and values -> H), the decoder
RNNs (returning gradients for their initial states, which flow into the encoder's final states), the
encoder RNNs and the embeddings. This is Luong et al. (2015) global attention without input feeding
(h~_t is not fed to the next decoder input), which keeps the teacher-forced decoder one call per layer.

Decoding: greedy (:meth:`Seq2Seq.greedy_decode`, batched) or beam search (:meth:`Seq2Seq.beam_decode`);
both return the attention weights of every produced token. ``reverse_source=True`` feeds the source
tokens in reverse order (Sutskever et al. 2014); returned attention maps are always in reading order.

Inputs longer than ``max_source_len`` (the longest training source, unless given) are truncated with a
warning. Unknown tokens map to ``<unk>`` with a warning. An empty input gives an empty output.
"""
from __future__ import annotations

import io
import json
import math
import sys
import time
import warnings

import numpy as np

from .. import backend
from ..datasets.seq2seq_data import END_ID, PAD_ID, START_ID, Vocabulary, pad_ids
from ..layers import GRU, LSTM, AdditiveAttention, Attention, Dense, Embedding, SimpleRNN
from ..losses import SparseCategoricalCrossentropy

_CELLS = {"lstm": LSTM, "gru": GRU, "rnn": SimpleRNN}
ATTENTION_MODES = ("dot", "general", "concat", "none")
FORMAT_VERSION = 1


class Seq2Seq:
    """Encoder-decoder with attention; see the module docstring for the equations.

    Args: ``source_vocab``/``target_vocab`` (:class:`~rnnlab.datasets.seq2seq_data.Vocabulary`),
    ``embedding_dim``, ``units``, ``cell`` ("lstm" | "gru" | "rnn"), ``num_layers``, ``bidirectional``,
    ``attention`` ("dot" | "general" | "concat" | "none"), ``reverse_source``, ``max_source_len``,
    ``max_target_len`` (decoding stops after this many tokens plus one), ``name``.
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
        E, U = self.embedding_dim, self.units
        Ud = self.dec_units = U * (2 if self.bidirectional else 1)
        RNNCls = _CELLS[cell]
        self.src_emb = Embedding(len(source_vocab), E, name="source_embedding")
        self.tgt_emb = Embedding(len(target_vocab), E, name="target_embedding")
        self.src_emb._maybe_build((None, None))
        self.tgt_emb._maybe_build((None, None))
        self.encoder, self.decoder = [], []
        d_in = E
        for i in range(self.num_layers):
            dirs = [RNNCls(U, return_sequences=True, return_state=True, name=f"encoder_{i}")]
            if self.bidirectional:
                dirs.append(RNNCls(U, return_sequences=True, return_state=True, go_backwards=True,
                                   name=f"encoder_{i}_backward"))
            for r in dirs:
                r._maybe_build((None, None, d_in))
            self.encoder.append(dirs)
            d_in = Ud
        d_in = E
        for i in range(self.num_layers):
            r = RNNCls(Ud, return_sequences=True, return_state=True, name=f"decoder_{i}")
            r._maybe_build((None, None, d_in))
            self.decoder.append(r)
            d_in = Ud
        self.att = self.att_q = self.att_k = None
        if attention in ("dot", "general"):
            self.att = Attention(score_mode=attention, name="attention")
            self.att._maybe_build([(None, None, Ud), (None, None, Ud)])
        elif attention == "concat":
            self.att_q = Dense(Ud, use_bias=False, name="attention_query")
            self.att_k = Dense(Ud, use_bias=False, name="attention_key")
            self.att = AdditiveAttention(name="attention")
            self.att_q._maybe_build((None, None, Ud))
            self.att_k._maybe_build((None, None, Ud))
            self.att._maybe_build([(None, None, Ud)] * 3)
        self.combine = Dense(Ud, activation="tanh", use_bias=False, name="attention_combine")
        self.combine._maybe_build((None, None, 2 * Ud))
        self.out = Dense(len(target_vocab), name="output")
        self.out._maybe_build((None, None, Ud))
        self.loss_fn = SparseCategoricalCrossentropy(from_logits=True)
        self.history = []

    # ------------------------------------------------------------------ weights
    @property
    def layers(self):
        ls = [self.src_emb] + [r for dirs in self.encoder for r in dirs] + [self.tgt_emb] + self.decoder
        ls += [x for x in (self.att_q, self.att_k, self.att) if x is not None]
        return ls + [self.combine, self.out]

    def iter_weights(self):
        for layer in self.layers:
            yield from layer.iter_weights(f"{self.name}/")

    def trainable_weight_refs(self):
        for path, owner, w in self.iter_weights():
            if owner.trainable:
                yield path, owner, w

    def count_params(self):
        return int(sum(owner.params[w].size for _, owner, w in self.iter_weights()))

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
        mask = X != PAD_ID
        h = self.src_emb.forward(X, training=training)
        finals = []
        for dirs in self.encoder:
            res = dirs[0].forward(h, training=training, mask=mask)
            if len(dirs) == 1:
                h, st = res[0], res[1:]
            else:
                rb = dirs[1].forward(h, training=training, mask=mask)
                h = np.concatenate([res[0], rb[0][:, ::-1]], axis=-1)
                st = [np.concatenate([a, b], axis=-1) for a, b in zip(res[1:], rb[1:])]
            finals.append(list(st))
        return h, finals, mask

    def _attend(self, S, H, mask):
        """Context (B, Tq, Ud) and attention weights (B, Tq, Ts) for decoder states S."""
        if self.attention == "concat":
            qp = self.att_q.forward(S)
            kp = self.att_k.forward(H)
            return self.att.forward([qp, H, kp], mask=[None, mask], return_attention_scores=True)
        return self.att.forward([S, H], mask=[None, mask], return_attention_scores=True)

    def _output(self, S, H, mask, finals):
        if self.attention == "none":
            top = finals[-1][0]
            ctx = np.broadcast_to(top[:, None, :], S.shape)
            A = None
        else:
            ctx, A = self._attend(S, H, mask)
        hc = self.combine.forward(np.concatenate([ctx, S], axis=-1))
        return self.out.forward(hc), A

    def forward(self, X, Yin, training=False):
        """Teacher-forced logits (B, Tt, V) and attention weights (B, Tt, Ts) (None without attention)."""
        H, finals, mask = self._encode(X, training)
        d = self.tgt_emb.forward(Yin, training=training)
        for layer, st in zip(self.decoder, finals):
            d = layer.forward(d, training=training, initial_state=st)[0]
        self._fwd = (H.shape, finals)
        return self._output(d, H, mask, finals)

    def backward(self, dlogits):
        """Back-propagate dL/dlogits through everything; fills every layer's ``grads``."""
        H_shape, finals = self._fwd
        Ud = self.dec_units
        dcat = self.combine.backward(self.out.backward(dlogits))
        dctx, dS = dcat[..., :Ud], np.ascontiguousarray(dcat[..., Ud:])
        d_top = None
        if self.attention == "none":
            dH = np.zeros(H_shape, self.dtype)
            d_top = dctx.sum(axis=1)
        elif self.attention == "concat":
            dqp, dH, dkp = self.att.backward([dctx, None])
            dS += self.att_q.backward(dqp)
            dH = dH + self.att_k.backward(dkp)
        else:
            dq, dH = self.att.backward([dctx, None])
            dS += dq
        g = dS
        dinit = [None] * self.num_layers
        for i in range(self.num_layers - 1, -1, -1):
            res = self.decoder[i].backward([g] + [None] * len(finals[i]))
            g, dinit[i] = res[0], list(res[1:])
        self.tgt_emb.backward(g)
        if d_top is not None:
            dinit[-1][0] = dinit[-1][0] + d_top
        g = dH
        U = self.units
        for i in range(self.num_layers - 1, -1, -1):
            dirs = self.encoder[i]
            if len(dirs) == 1:
                g = dirs[0].backward([g] + dinit[i])
            else:
                gf = dirs[0].backward([g[..., :U]] + [s[:, :U] for s in dinit[i]])
                gb = dirs[1].backward([g[..., U:][:, ::-1]] + [s[:, U:] for s in dinit[i]])
                g = gf + gb
        self.src_emb.backward(g)

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
            verbose=1, seed=0, stream=None, on_epoch_end=None):
        """Train on (source, target) pairs with teacher forcing, masked token loss and ``optimizer``
        (default Adam(1e-3, clipnorm=1)). ``time_budget`` (seconds) stops cleanly after the running batch.
        ``on_epoch_end(epoch, logs) -> bool`` may return True to stop. Returns the history list."""
        from ..optimizers import Adam
        from ..training import NonFiniteLoss, ProgressBar, checked_update, warn_stop

        if not pairs:
            raise ValueError("Seq2Seq.fit: no training pairs")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"Seq2Seq.fit: batch_size must be a positive int, got {batch_size!r}")
        stream = stream or sys.stdout
        opt = optimizer if optimizer is not None else Adam(1e-3, clipnorm=1.0)
        self.stop_reason = None
        X = self.encode_sources([s for s, _ in pairs], warn=False)
        Yin, Yout = self.encode_targets([t for _, t in pairs])
        src_len = np.count_nonzero(X, axis=1)
        tgt_len = np.count_nonzero(Yout, axis=1)
        n = len(pairs)
        steps = math.ceil(n / batch_size)
        gen = np.random.default_rng(seed)
        refs = list(self.trainable_weight_refs())
        t0 = time.perf_counter()
        stop = False
        for epoch in range(epochs):
            order = gen.permutation(n)
            bar = ProgressBar(steps, stream=stream) if verbose == 1 else None
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs}", file=stream, flush=True)
            tot_loss = tot_acc = 0.0
            done = 0
            for k in range(steps):
                idx = order[k * batch_size:(k + 1) * batch_size]
                ts, tt = int(src_len[idx].max()), int(tgt_len[idx].max())
                loss, acc = self.loss_and_grads(X[idx, :ts], Yin[idx, :tt], Yout[idx, :tt])
                try:  # the one NaN policy of every loop: no update, warn, stop (rnnlab.training.checked_update)
                    checked_update(opt, refs, loss, epoch, k)
                except NonFiniteLoss as e:
                    self.stop_reason = warn_stop(e, bar)
                    stop = True
                    break
                tot_loss += loss
                tot_acc += acc
                done += 1
                if bar is not None:
                    bar.update(done, {"loss": tot_loss / done, "token_acc": tot_acc / done}, samples=done * batch_size)
                if time_budget is not None and time.perf_counter() - t0 > time_budget:
                    stop = True
                    break
            if done == 0:
                break
            logs = {"epoch": epoch + 1, "loss": tot_loss / done, "token_acc": tot_acc / done, "steps": done,
                    "seconds": time.perf_counter() - t0}
            if bar is not None:
                bar.finish(done, {"loss": logs["loss"], "token_acc": logs["token_acc"]})
            if validation_pairs:
                ev = self.evaluate(validation_pairs)
                logs["val_exact_match"] = ev["exact_match_accuracy"]
                logs["val_token_accuracy"] = ev["token_accuracy"]
            if verbose:
                extra = (f" - val exact match {logs['val_exact_match'] * 100:.2f}%" if validation_pairs else "")
                print(f"  epoch {epoch + 1}: loss {logs['loss']:.4f} - token acc {logs['token_acc']:.4f}"
                      f"{extra} - {logs['seconds']:.0f}s elapsed", file=stream, flush=True)
            self.history.append(logs)
            if on_epoch_end is not None and on_epoch_end(epoch, logs):
                stop = True
            if stop:
                if verbose and time_budget is not None and time.perf_counter() - t0 > time_budget:
                    print(f"  time budget of {time_budget:.0f}s reached: training stopped", file=stream, flush=True)
                break
        return self.history

    # ------------------------------------------------------------------ saving
    def save(self, path):
        """One ``.npz``: every weight under its path plus ``__config__`` (JSON); written atomically."""
        from ..io import atomic_write_bytes

        arrays = {path_: owner.params[w] for path_, owner, w in self.iter_weights()}
        meta = {"format": "rnnlab.Seq2Seq", "version": FORMAT_VERSION, "config": self.get_config(),
                "history": self.history}
        arrays["__config__"] = np.array(json.dumps(meta))
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, path):
        """Load a model written by :meth:`save` (no pickle). Read through :class:`rnnlab.io.NpzArchive`: the
        config's sizes are bounded by the file's arrays, the model is built shape-only and its weight names and
        shapes compared with the array headers before anything is allocated; every problem is an
        :class:`rnnlab.io.FileFormatError` (a ``ValueError``) naming the file."""
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
