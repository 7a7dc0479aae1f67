"""A linear-chain conditional random field (CRF) output layer for sequence tagging.

Notation: a batch of emission scores ``x`` (B, T, K) (e.g. a linear ``Dense(K)`` over a BiLSTM's outputs), a
left-aligned ``mask`` (B, T) whose row b has ``n_b >= 1`` leading ``True`` steps, and tag sequences ``y`` (B, T).
The weights are the transition matrix ``A`` (K, K) (``A[i, j]`` scores tag i followed by tag j) and the start
and end scores ``s``, ``e`` (K,). The score of a tag sequence ``y_0 .. y_{n-1}`` is

    score(x, y) = s[y_0] + sum_{t=0}^{n-1} x[t, y_t] + sum_{t=1}^{n-1} A[y_{t-1}, y_t] + e[y_{n-1}]

and ``p(y | x) = exp(score(x, y)) / Z(x)``, ``Z(x) = sum_y' exp(score(x, y'))`` over all K^n sequences.

Loss (``loss_and_grads``): the mean over the batch of the negative log-likelihood
``NLL_b = log Z(x_b) - score(x_b, y_b)``. ``log Z`` comes from the **forward algorithm** in log space

    alpha_0 = s + x_0,   alpha_t[j] = logsumexp_i(alpha_{t-1}[i] + A[i, j]) + x_t[j],
    log Z = logsumexp_j(alpha_{n-1}[j] + e[j])

and the hand-written gradient from the **backward** recursion
``beta_{n-1} = e``, ``beta_t[i] = logsumexp_j(A[i, j] + x_{t+1}[j] + beta_{t+1}[j])``, whose marginals are

    P(y_t = j)                 = exp(alpha_t[j] + beta_t[j] - log Z)
    P(y_{t-1} = i, y_t = j)    = exp(alpha_{t-1}[i] + A[i, j] + x_t[j] + beta_t[j] - log Z)

so that (each divided by B for the mean)

    dNLL/dx_t[j] = P(y_t = j) - [y_t = j]        dNLL/dA[i, j] = sum_t P(y_{t-1} = i, y_t = j) - #(i -> j in y)
    dNLL/ds[j]   = P(y_0 = j) - [y_0 = j]        dNLL/de[j]    = P(y_{n-1} = j) - [y_{n-1} = j]

Decoding (``forward`` / ``decode``): **Viterbi**, ``delta_0 = s + x_0``,
``delta_t[j] = max_i(delta_{t-1}[i] + A[i, j]) + x_t[j]``, the best last tag ``argmax_j(delta_{n-1}[j] + e[j])``,
then the back-pointers. Steps past ``n_b`` are decoded as tag 0.

Constraints: ``allowed``/``allowed_start``/``allowed_end`` (boolean (K, K), (K,), (K,)) forbid transitions,
first and last tags: a forbidden one scores ``-inf`` in the forward algorithm and in Viterbi, so the decoder
never outputs it and it has probability 0. :func:`scheme_constraints` builds them for the IOB1, IOB2 (BIO) and
IOBES tag schemes. A gold sequence that uses a forbidden transition is a ``ValueError`` (its likelihood is 0).

The weights are trainable like any layer's (``params``/``grads``: ``transitions``, ``start_transitions``,
``end_transitions``; ``transitions`` is also the ``transition_matrix`` property).
"""
from __future__ import annotations

import numpy as np

from ..losses import Loss
from .base import Layer, register

__all__ = ["CRF", "CRFLoss", "scheme_constraints", "SCHEMES"]

SCHEMES = ("iob1", "iob2", "iobes")
_NEG = -np.inf


def _split(tag):
    if tag == "O":
        return "O", ""
    p, sep, typ = str(tag).partition("-")
    if not sep or p not in ("B", "I", "E", "S") or not typ:
        raise ValueError(f"scheme_constraints: tag {tag!r} is not 'O' or PREFIX-TYPE with PREFIX in B, I, E, S")
    return p, typ


def scheme_constraints(tags, scheme, forbidden=()):
    """Boolean ``(allowed_start (K,), allowed (K, K), allowed_end (K,))`` for the tag list ``tags`` under
    ``scheme`` (``allowed[i, j]``: tag i may be followed by tag j). Tags listed in ``forbidden`` (e.g. a padding
    tag) are never allowed anywhere. The strict rules:

    * ``iob2`` (BIO): ``I-X`` only after ``B-X`` or ``I-X`` (so never first).
    * ``iob1`` (CoNLL-2003): ``I-X`` may start a chunk; ``B-X`` only separates two adjacent chunks of type X,
      so it follows ``I-X`` or ``B-X`` only (never first).
    * ``iobes``: after ``B-X``/``I-X`` only ``I-X`` or ``E-X``; after ``E``/``S``/``O`` only ``B``, ``S`` or
      ``O``; the first tag is ``B``, ``S`` or ``O``, the last ``E``, ``S`` or ``O``.
    """
    scheme = str(scheme).lower()
    if scheme == "bio":
        scheme = "iob2"
    if scheme not in SCHEMES:
        raise ValueError(f"scheme_constraints: scheme must be one of {SCHEMES} (or 'bio'); got {scheme!r}")
    tags = list(tags)
    K = len(tags)
    forbidden = set(forbidden)
    parts = [None if t in forbidden else _split(t) for t in tags]
    if scheme != "iobes":
        odd = [t for t, p in zip(tags, parts) if p is not None and p[0] in ("E", "S")]
        if odd:
            raise ValueError(f"scheme_constraints: {scheme.upper()} has no E-/S- tags, got {odd[:5]}; "
                             "use scheme='iobes'")
    start = np.ones(K, dtype=bool)
    end = np.ones(K, dtype=bool)
    allowed = np.ones((K, K), dtype=bool)
    for j, pj in enumerate(parts):
        if pj is None:
            start[j] = end[j] = False
            allowed[:, j] = allowed[j, :] = False
            continue
        cj, uj = pj
        if scheme == "iob2" and cj == "I":
            start[j] = False
        if scheme == "iob1" and cj == "B":
            start[j] = False
        if scheme == "iobes":
            start[j] = cj in ("B", "S", "O")
            end[j] = cj in ("E", "S", "O")
        for i, pi in enumerate(parts):
            if pi is None:
                continue
            ci, ui = pi
            if scheme == "iob2":
                ok = cj != "I" or (ci in ("B", "I") and ui == uj)
            elif scheme == "iob1":
                ok = cj != "B" or (ci in ("B", "I") and ui == uj)
            else:
                if ci in ("B", "I"):
                    ok = cj in ("I", "E") and ui == uj
                else:
                    ok = cj in ("B", "S", "O")
            allowed[i, j] = ok
    return start, allowed, end


def _logsumexp(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(a - m), axis=axis))


@register
class CRF(Layer):
    """Linear-chain CRF over ``units`` tags (see the module docstring for the equations).

    Args:
        units: the number of tags K.
        allowed, allowed_start, allowed_end: optional boolean constraint masks ((K, K), (K,), (K,)), e.g. from
            :func:`scheme_constraints`; ``None`` allows everything.
        transitions_initializer: initializer of ``transitions``, ``start_transitions`` and ``end_transitions``
            (default ``"zeros"``; ``"glorot_uniform"`` as in other CRF layers also works).

    ``forward(emissions, mask=None)`` returns the Viterbi tags (B, T) (int64); ``loss_and_grads(emissions, tags,
    mask)`` returns ``(mean NLL, dNLL/demissions)`` and fills ``grads``; ``log_partition``, ``sequence_score``
    and ``marginals`` expose the pieces.
    """

    _extra_kwargs = frozenset({"input_shape", "input_dim"})

    def __init__(self, units, allowed=None, allowed_start=None, allowed_end=None,
                 transitions_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"CRF: units must be a positive int (the number of tags), got {units!r}")
        self.units = int(units)
        self.transitions_initializer = transitions_initializer
        K = self.units

        def mask_arg(v, shape, name):
            if v is None:
                return np.ones(shape, dtype=bool)
            a = np.asarray(v)
            if a.shape != shape or a.dtype.kind not in "bui":
                raise ValueError(f"CRF: {name} must be a boolean array of shape {shape}, got {a.dtype} {a.shape}")
            return a.astype(bool)

        self.allowed = mask_arg(allowed, (K, K), "allowed")
        self.allowed_start = mask_arg(allowed_start, (K,), "allowed_start")
        self.allowed_end = mask_arg(allowed_end, (K,), "allowed_end")
        if not self.allowed_start.any() or not self.allowed_end.any():
            raise ValueError("CRF: the constraints allow no first tag or no last tag")

    def build(self, input_shape=None):
        K = self.units
        self.add_weight("transitions", (K, K), self.transitions_initializer)
        self.add_weight("start_transitions", (K,), self.transitions_initializer)
        self.add_weight("end_transitions", (K,), self.transitions_initializer)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(units=self.units, allowed=self.allowed.tolist(), allowed_start=self.allowed_start.tolist(),
                   allowed_end=self.allowed_end.tolist(), transitions_initializer=self.transitions_initializer)
        return cfg

    @property
    def transition_matrix(self):
        """The (K, K) transition scores ``A`` (``A[i, j]``: tag i followed by tag j), the trained weight."""
        self._maybe_build((None, None, self.units))
        return self.params["transitions"]

    # ----------------------------------------------------------------------------------- helpers
    def _scores(self):
        """Transition, start and end scores with the forbidden entries at -inf."""
        A = np.where(self.allowed, self.params["transitions"].astype(np.float64), _NEG)
        s = np.where(self.allowed_start, self.params["start_transitions"].astype(np.float64), _NEG)
        e = np.where(self.allowed_end, self.params["end_transitions"].astype(np.float64), _NEG)
        return A, s, e

    def _check(self, emissions, mask, tags=None):
        x = np.asarray(emissions)
        if x.ndim != 3 or x.shape[-1] != self.units:
            raise ValueError(f"CRF '{self.name}': emissions must have shape (batch, time, {self.units}), got "
                             f"{x.shape}")
        if x.dtype.kind != "f":
            raise TypeError(f"CRF '{self.name}': emissions must be floats, got {x.dtype}")
        B, T, _ = x.shape
        if T < 1:
            raise ValueError(f"CRF '{self.name}': sequences need at least one step, got shape {x.shape}")
        if mask is None:
            m = np.ones((B, T), dtype=bool)
        else:
            m = np.asarray(mask).astype(bool)
            if m.shape != (B, T):
                raise ValueError(f"CRF '{self.name}': mask must have shape {(B, T)}, got {m.shape}")
            if not m[:, 0].all():
                raise ValueError(f"CRF '{self.name}': every sequence needs at least one unmasked step (mask[:, 0] "
                                 "must be True)")
            if (m[:, 1:] & ~m[:, :-1]).any():
                raise ValueError(f"CRF '{self.name}': the mask must be left-aligned (True steps first, then "
                                 "padding)")
        y = None
        if tags is not None:
            y = np.asarray(tags)
            if y.shape != (B, T) or y.dtype.kind not in "iu":
                raise ValueError(f"CRF '{self.name}': tags must be integers of shape {(B, T)}, got {y.dtype} "
                                 f"{y.shape}")
            bad = m & ((y < 0) | (y >= self.units))
            if bad.any():
                b, t = np.argwhere(bad)[0]
                raise ValueError(f"CRF '{self.name}': tag id {int(y[b, t])} at sequence {b}, step {t} is outside "
                                 f"[0, {self.units})")
            y = np.where(m, y, 0).astype(np.int64)
        self._maybe_build((None, None, self.units))
        return x.astype(np.float64), m, y

    def _alpha(self, x, m, A, s):
        B, T, K = x.shape
        alpha = np.empty((B, T, K))
        alpha[:, 0] = s + x[:, 0]
        for t in range(1, T):
            new = _logsumexp(alpha[:, t - 1, :, None] + A[None], axis=1) + x[:, t]
            alpha[:, t] = np.where(m[:, t, None], new, alpha[:, t - 1])
        return alpha

    def _beta(self, x, m, A, e):
        B, T, K = x.shape
        beta = np.empty((B, T, K))
        beta[:, T - 1] = e
        for t in range(T - 2, -1, -1):
            new = _logsumexp(A[None] + (x[:, t + 1] + beta[:, t + 1])[:, None, :], axis=2)
            beta[:, t] = np.where(m[:, t + 1, None], new, e)
        return beta

    # ----------------------------------------------------------------------------------- public
    def log_partition(self, emissions, mask=None):
        """``log Z(x_b)`` for each sequence (B,) by the forward algorithm."""
        x, m, _ = self._check(emissions, mask)
        A, s, e = self._scores()
        return _logsumexp(self._alpha(x, m, A, s)[:, -1] + e, axis=1)

    def sequence_score(self, emissions, tags, mask=None):
        """``score(x_b, y_b)`` (B,) of the given tag sequences (``-inf`` where a constraint is broken)."""
        x, m, y = self._check(emissions, mask, tags)
        return self._gold(x, m, y)

    def _gold(self, x, m, y):
        A, s, e = self._scores()
        B, T, _ = x.shape
        n = m.sum(1)
        rows = np.arange(B)
        sc = s[y[:, 0]] + (np.take_along_axis(x, y[..., None], 2)[..., 0] * m).sum(1)
        if T > 1:
            tr = A[y[:, :-1], y[:, 1:]]
            sc = sc + np.where(m[:, 1:], tr, 0.0).sum(1)
        return sc + e[y[rows, n - 1]]

    def marginals(self, emissions, mask=None):
        """``P(y_t = j | x)`` (B, T, K) (zero at masked steps)."""
        x, m, _ = self._check(emissions, mask)
        A, s, e = self._scores()
        alpha, beta = self._alpha(x, m, A, s), self._beta(x, m, A, e)
        logz = _logsumexp(alpha[:, -1] + e, axis=1)
        return np.exp(alpha + beta - logz[:, None, None]) * m[..., None]

    def loss_and_grads(self, emissions, tags, mask=None):
        """Mean negative log-likelihood over the batch and its gradient with respect to ``emissions`` (same shape
        and dtype); the gradients of the transition, start and end scores are written to ``grads``."""
        x, m, y = self._check(emissions, mask, tags)
        A, s, e = self._scores()
        B, T, K = x.shape
        gold = self._gold(x, m, y)
        if np.isneginf(gold).any() and np.isfinite(x[m]).all():   # a forbidden step (NaN emissions: a NaN loss)
            b = int(np.flatnonzero(np.isneginf(gold))[0])
            n = int(m[b].sum())
            seq = y[b, :n]
            if not self.allowed_start[seq[0]]:
                what = f"starts with tag id {int(seq[0])}"
            elif not self.allowed_end[seq[-1]]:
                what = f"ends with tag id {int(seq[-1])}"
            else:
                t = int(np.flatnonzero(~self.allowed[seq[:-1], seq[1:]])[0])
                what = f"has the transition {int(seq[t])} -> {int(seq[t + 1])} at step {t + 1}"
            raise ValueError(f"CRF '{self.name}': gold sequence {b} {what}, which the transition constraints "
                             "forbid (its likelihood is 0)")
        alpha, beta = self._alpha(x, m, A, s), self._beta(x, m, A, e)
        logz = _logsumexp(alpha[:, -1] + e, axis=1)
        loss = float(np.mean(logz - gold))
        unary = np.exp(alpha + beta - logz[:, None, None]) * m[..., None]            # (B, T, K)
        onehot = np.zeros((B, T, K))
        np.put_along_axis(onehot, y[..., None], 1.0, axis=2)
        onehot *= m[..., None]
        gx = (unary - onehot) / B
        n = m.sum(1)
        rows = np.arange(B)
        gs = (unary[:, 0] - onehot[:, 0]).sum(0) / B
        last_u = unary[rows, n - 1]
        last_o = onehot[rows, n - 1]
        ge = (last_u - last_o).sum(0) / B
        gA = np.zeros((K, K))
        if T > 1:
            pair = np.exp(alpha[:, :-1, :, None] + A[None, None] + (x[:, 1:] + beta[:, 1:])[:, :, None, :]
                          - logz[:, None, None, None])
            pair = np.where(m[:, 1:, None, None], pair, 0.0)
            gA = pair.sum((0, 1))
            counts = np.zeros((K, K))
            mm = m[:, 1:]
            np.add.at(counts, (y[:, :-1][mm], y[:, 1:][mm]), 1.0)
            gA = (gA - counts) / B
        self.grads["transitions"] = (gA * self.allowed).astype(self.params["transitions"].dtype)
        self.grads["start_transitions"] = (gs * self.allowed_start).astype(self.params["start_transitions"].dtype)
        self.grads["end_transitions"] = (ge * self.allowed_end).astype(self.params["end_transitions"].dtype)
        return loss, gx.astype(np.asarray(emissions).dtype)

    def decode(self, emissions, mask=None):
        """The Viterbi tag sequences (B, T) (int64; 0 at masked steps) and their scores (B,)."""
        x, m, _ = self._check(emissions, mask)
        A, s, e = self._scores()
        B, T, K = x.shape
        delta = s + x[:, 0]
        back = np.zeros((B, T, K), dtype=np.int64)
        ident = np.broadcast_to(np.arange(K), (B, K))
        for t in range(1, T):
            cand = delta[:, :, None] + A[None]                 # (B, i, j)
            bp = np.argmax(cand, axis=1)
            new = np.take_along_axis(cand, bp[:, None, :], axis=1)[:, 0] + x[:, t]
            delta = np.where(m[:, t, None], new, delta)
            back[:, t] = np.where(m[:, t, None], bp, ident)
        final = delta + e
        best = np.argmax(final, axis=1)
        score = final[np.arange(B), best]
        out = np.zeros((B, T), dtype=np.int64)
        cur = best
        for t in range(T - 1, -1, -1):
            out[:, t] = cur
            cur = back[np.arange(B), t, cur]
        return np.where(m, out, 0), score

    def forward(self, inputs, training=False, mask=None):
        return self.decode(inputs, mask)[0]

    def backward(self, grad):
        raise NotImplementedError(f"CRF '{self.name}': the CRF is a loss layer; train it with loss_and_grads("
                                  "emissions, tags, mask), which returns the gradient of its emissions")


class CRFLoss(Loss):
    """The mean negative log-likelihood of a :class:`CRF` as a loss that ``Model.compile(loss=...)`` takes.

    ``loss(y_true, y_pred, mask=...)`` is ``mean_b (log Z(x_b) - score(x_b, y_b))`` for the emission scores
    ``y_pred = x`` (B, T, K) and the tag ids ``y_true`` (B, T); ``forward_backward`` also returns
    ``dL/dx`` (the forward-backward marginals minus the gold one-hots, over B) and writes the gradients of the
    CRF's transition, start and end scores to ``crf.grads`` -- so the engine's one training step
    (forward, loss, backward, the NaN check, the update) trains the CRF's weights with the rest of the model.
    The mask (B, T) is the engine's output mask (the word embedding's ``mask_zero``). ``sample_weight`` is not
    supported (a ``ValueError``)."""

    name = "crf_loss"

    def __init__(self, crf, name=None):
        if not isinstance(crf, CRF):
            raise TypeError(f"CRFLoss: crf must be a CRF layer, got {type(crf).__name__}")
        super().__init__(name=name)
        self.crf = crf

    def _check_weight(self, sample_weight):
        if sample_weight is not None:
            raise ValueError("CRFLoss: sample_weight is not supported (the loss is a mean over whole sequences)")

    def __call__(self, y_true, y_pred, sample_weight=None, mask=None):
        self._check_weight(sample_weight)
        x = np.asarray(y_pred)
        nll = self.crf.log_partition(x, mask) - self.crf.sequence_score(x, np.asarray(y_true).astype(np.int64), mask)
        return float(np.mean(nll))

    def forward_backward(self, y_true, y_pred, sample_weight=None, mask=None):
        """``(mean NLL, dNLL/dy_pred)``; fills ``crf.grads``."""
        self._check_weight(sample_weight)
        return self.crf.loss_and_grads(y_pred, np.asarray(y_true).astype(np.int64), mask)

    def get_config(self):
        return {"name": self.name}
