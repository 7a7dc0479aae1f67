"""Attention layers: ``Attention`` (Luong dot / general, Keras concat) and ``AdditiveAttention`` (Bahdanau).

Shapes: query ``q`` (B, Tq, Dq), value ``v`` (B, Tv, Dv), key ``k`` (B, Tv, Dk) (``k = v`` when not given).
Output (B, Tq, Dv); attention weights (B, Tq, Tv).

Forward (Keras 3 semantics)::

    S   = score(q, k)                                   (B, Tq, Tv)
    S   = S - 1e9   where the value position is padding (value_mask False) or in the future (causal mask)
    A   = softmax(S, axis=-1)                          attention weights
    A'  = dropout(A)                                   training only (inverted dropout on the weights)
    out = A' v                                         (B, Tq, Dv)
    out = 0         where query_mask is False

Scores (``s`` = learned scalar ``scale`` when ``use_scale`` else 1)::

    Attention(score_mode="dot")       S_ij = s * q_i . k_j                         (Luong "dot"; Dq = Dk)
    Attention(score_mode="general")   S_ij = s * q_i W k_j^T,  W = kernel (Dq, Dk)  (Luong "general"; rnnlab extension)
    Attention(score_mode="concat")    S_ij = c * sum_d tanh(s * (q_i + k_j))_d,    c = concat_score_weight (Keras)
    AdditiveAttention                 S_ij = sum_d w_d tanh(q_i + k_j)_d,          w = scale (D,) (Bahdanau;
                                                                                   the W_q/W_k projections are Dense
                                                                                   layers outside, as in Keras)

Backward, with G = dL/dout (zeroed at masked queries) and optionally G_A = dL/dA' (the returned weights)::

    dv  = A'^T G                     dA' = G v^T + G_A          dA = dA' * dropout_mask
    dS  = A * (dA - sum_j dA_j A_j)                              (softmax; the -1e9 shift has unit derivative)
    dot:      dq = s dS k       dk = s dS^T q        ds = sum(dS * q k^T)
    general:  dq = s dS k W^T   dk = s dS^T (q W)    dW = s sum_b q^T dS k      ds = sum(dS * q W k^T)
    concat:   T = tanh(s (q_i + k_j)); dZ = c dS_ij (1 - T^2); dq_i = s sum_j dZ; dk_j = s sum_i dZ;
              ds = sum(dZ * (q_i + k_j)); dc = sum(dS * sum_d T)
    additive: T = tanh(q_i + k_j); dZ = dS_ij w (1 - T^2); dq_i = sum_j dZ; dk_j = sum_i dZ; dw = sum dS_ij T

``backward`` returns ``[dq, dv]`` for inputs ``[query, value]`` (the key gradient folded into dv, since
k = v) or ``[dq, dv, dk]`` for ``[query, value, key]``. With ``return_attention_scores=True`` the layer
returns ``[out, A']`` and ``backward`` takes ``[G, G_A]`` (either may be None).

Weights (Keras names and ``get_weights()`` order): ``Attention``: ``scale`` () when use_scale, then
``concat_score_weight`` () for concat, or ``kernel`` (Dq, Dk) for general. ``AdditiveAttention``:
``scale`` (D,) when use_scale. Masks: ``mask=[query_mask, value_mask]`` (boolean (B, Tq), (B, Tv); either
may be None); the output mask is the query mask.
"""
from __future__ import annotations

import numpy as np

from .. import backend, initializers
from .base import Layer, format_shape, register

_BIG = 1.0e9


def _softmax_lastaxis(s):
    m = s.max(axis=-1, keepdims=True)
    e = np.exp(s - m)
    e /= e.sum(axis=-1, keepdims=True)
    return e


@register
class Attention(Layer):
    """Dot-product (Luong) attention; see the module docstring for equations and shapes.

    Args: ``use_scale`` (learned scalar multiplying the scores), ``score_mode`` in
    ``"dot"`` | ``"concat"`` (Keras) | ``"general"`` (Luong's bilinear ``q W k^T``, rnnlab only),
    ``dropout`` (rate on the attention weights, training only), ``seed`` (own generator for dropout),
    ``kernel_initializer`` (for ``general``; default glorot_uniform).
    Call: ``layer([query, value(, key)], mask=[q_mask, v_mask], return_attention_scores=False,
    use_causal_mask=False, training=False)``.
    """

    _score_modes = ("dot", "concat", "general")

    def __init__(self, use_scale=False, score_mode="dot", dropout=0.0, seed=None,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        cls = type(self).__name__
        if score_mode not in self._score_modes:
            raise ValueError(f"{cls}: invalid value for argument score_mode. Expected one of "
                             f"{set(self._score_modes)}. Received: score_mode={score_mode!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.number)) or not 0 <= dropout < 1:
            raise ValueError(f"{cls}: dropout must be a float in [0, 1), got {dropout!r}")
        self.use_scale = bool(use_scale)
        self.score_mode = score_mode
        self.dropout = float(dropout)
        self.seed = seed
        self._gen = None if seed is None else np.random.default_rng(int(seed))
        self.kernel_initializer = initializers.get(kernel_initializer)

    # ------------------------------------------------------------------ checks
    def _validate_inputs(self, inputs, mask=None):
        cls = type(self).__name__
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"{cls} layer '{self.name}' must be called on a list of inputs, namely [query, value] "
                             f"or [query, value, key]. Received: {type(inputs).__name__}")
        if not 2 <= len(inputs) <= 3:
            raise ValueError(f"{cls} layer '{self.name}' accepts an inputs list of length 2 or 3, namely "
                             f"[query, value] or [query, value, key]. Received length: {len(inputs)}")
        if mask is not None:
            if not isinstance(mask, (list, tuple)):
                raise ValueError(f"{cls} layer '{self.name}': mask must be a list [query_mask, value_mask], "
                                 f"got {type(mask).__name__}")
            if not 2 <= len(mask) <= 3:
                raise ValueError(f"{cls} layer '{self.name}': mask must be a list of length 2 "
                                 f"[query_mask, value_mask], got length {len(mask)}")

    def _check_shapes(self, q, v, k):
        names = ("query", "value", "key")
        for a, nm in zip((q, v, k), names):
            if not isinstance(a, np.ndarray):
                raise TypeError(f"Layer '{self.name}': {nm} must be a NumPy array, got {type(a).__name__}")
            if a.dtype.kind != "f":
                raise TypeError(f"Layer '{self.name}': {nm} must be floating point, got dtype {a.dtype}")
            if a.ndim != 3:
                raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): {nm} must have shape "
                                 f"(batch, time, dim), got shape {a.shape}")
        if not (q.shape[0] == v.shape[0] == k.shape[0]):
            raise ValueError(f"Layer '{self.name}': query, value and key must have the same batch size, got "
                             f"{q.shape}, {v.shape}, {k.shape}")
        if k.shape[1] != v.shape[1]:
            raise ValueError(f"Layer '{self.name}': key and value must have the same number of time steps, got "
                             f"key {k.shape} and value {v.shape}")
        if v.shape[1] == 0:
            raise ValueError(f"Layer '{self.name}': value must have at least one time step, got shape {v.shape}")
        if self._needs_same_dim() and q.shape[-1] != k.shape[-1]:
            raise ValueError(f"Layer '{self.name}' (score_mode={self._mode_name()!r}): query and key must have the "
                             f"same last dimension, got query {q.shape} and key {k.shape}")
        if self.built and "kernel" in self.params:
            w = self.params["kernel"]
            if (q.shape[-1], k.shape[-1]) != w.shape:
                raise ValueError(f"Layer '{self.name}': built for query dim {w.shape[0]} and key dim {w.shape[1]} "
                                 f"(input shapes {format_shape(self.input_shape)}), got query {q.shape} and key {k.shape}")
        if self.built and "scale" in self.params and self.params["scale"].ndim == 1:
            if q.shape[-1] != self.params["scale"].shape[0]:
                raise ValueError(f"Layer '{self.name}': built for dim {self.params['scale'].shape[0]}, got query "
                                 f"{q.shape}")

    def _needs_same_dim(self):
        return self.score_mode in ("dot", "concat")

    def _mode_name(self):
        return self.score_mode

    def _check_mask(self, m, B, T, what):
        if m is None:
            return None
        if hasattr(m, "detach") and hasattr(m, "numpy"):
            m = m.detach().cpu().numpy()
        m = np.asarray(m)
        if m.shape != (B, T):
            raise ValueError(f"Layer '{self.name}': {what} must have shape (batch, time) = ({B}, {T}), got {m.shape}")
        if m.dtype.kind not in "biuf":
            raise TypeError(f"Layer '{self.name}': {what} must be boolean, got dtype {m.dtype}")
        return m.astype(bool)

    # ------------------------------------------------------------------ build
    def build(self, input_shape):
        self._validate_inputs(input_shape)
        q_shape = tuple(input_shape[0])
        k_shape = tuple(input_shape[2] if len(input_shape) > 2 else input_shape[1])
        if self.use_scale:
            self.add_weight("scale", (), "ones")
        if self.score_mode == "concat":
            self.add_weight("concat_score_weight", (), "ones")
        elif self.score_mode == "general":
            if q_shape[-1] is None or k_shape[-1] is None:
                raise ValueError(f"Layer '{self.name}': score_mode='general' needs known query and key dims, got "
                                 f"{format_shape(list(map(tuple, input_shape)))}")
            self.add_weight("kernel", (q_shape[-1], k_shape[-1]), self.kernel_initializer)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0][:-1]) + (input_shape[1][-1],)

    def compute_mask(self, inputs, mask=None):
        if mask is None or mask[0] is None:
            return None
        return np.asarray(mask[0], dtype=bool)

    def __call__(self, inputs, *args, training=False, mask=None, **kwargs):
        self._validate_inputs(inputs, mask)
        return super().__call__(list(inputs), *args, training=training, mask=mask, **kwargs)

    # ----------------------------------------------------------------- scores
    def _scores(self, q, k):
        """Return (S, aux) with S (B, Tq, Tv); aux keeps what the score backward needs."""
        s = self.params["scale"] if self.use_scale else None
        if self.score_mode == "dot":
            raw = q @ k.transpose(0, 2, 1)
            return (raw * s if s is not None else raw), raw
        if self.score_mode == "general":
            qw = q @ self.params["kernel"]
            raw = qw @ k.transpose(0, 2, 1)
            return (raw * s if s is not None else raw), (qw, raw)
        # concat
        z = q[:, :, None, :] + k[:, None, :, :]
        t = np.tanh(z * s if s is not None else z)
        tsum = t.sum(axis=-1)
        return self.params["concat_score_weight"] * tsum, (z, t, tsum)

    def _scores_backward(self, dS, q, k, aux):
        s = self.params["scale"] if self.use_scale else None
        if self.score_mode == "dot":
            raw = aux
            if s is not None:
                self.grads["scale"][...] = np.vdot(dS, raw)
                dS = dS * s
            return dS @ k, dS.transpose(0, 2, 1) @ q
        if self.score_mode == "general":
            qw, raw = aux
            if s is not None:
                self.grads["scale"][...] = np.vdot(dS, raw)
                dS = dS * s
            dqw = dS @ k                                       # (B, Tq, Dk)
            W = self.params["kernel"]
            np.matmul(q.reshape(-1, q.shape[-1]).T, dqw.reshape(-1, dqw.shape[-1]), out=self.grads["kernel"])
            return dqw @ W.T, dS.transpose(0, 2, 1) @ qw
        z, t, tsum = aux
        c = self.params["concat_score_weight"]
        self.grads["concat_score_weight"][...] = np.vdot(dS, tsum)
        dz = (c * dS)[..., None] * (1.0 - t * t)
        if s is not None:
            self.grads["scale"][...] = np.vdot(dz, z)
            dz *= s
        return dz.sum(axis=2), dz.sum(axis=1)

    # ---------------------------------------------------------------- forward
    def forward(self, inputs, training=False, mask=None, return_attention_scores=False, use_causal_mask=False):
        self._validate_inputs(inputs, mask)
        q, v = inputs[0], inputs[1]
        has_key = len(inputs) > 2
        k = inputs[2] if has_key else v
        self._check_shapes(q, v, k)
        B, Tq, _ = q.shape
        Tv = v.shape[1]
        q_mask = self._check_mask(mask[0], B, Tq, "query_mask") if mask else None
        v_mask = self._check_mask(mask[1], B, Tv, "value_mask") if mask else None

        S, aux = self._scores(q, k)
        score_mask = None
        if v_mask is not None:
            score_mask = v_mask[:, None, :]
        if use_causal_mask:
            causal = np.tril(np.ones((Tq, Tv), dtype=bool))[None]
            score_mask = causal if score_mask is None else (score_mask & causal)
        if score_mask is not None:
            S = np.where(score_mask, S, S - _BIG)
        A = _softmax_lastaxis(S)
        drop = None
        Ad = A
        if training and self.dropout > 0:
            gen = self._gen if self._gen is not None else backend.rng()
            keep = 1.0 - self.dropout
            drop = ((gen.random(A.shape) < keep) / keep).astype(A.dtype)
            Ad = A * drop
        out = Ad @ v
        qm = None
        if q_mask is not None:
            qm = q_mask[:, :, None]
            out = np.where(qm, out, 0).astype(out.dtype, copy=False)
        self._cache = (q, v, k, has_key, aux, A, Ad, drop, qm, bool(return_attention_scores))
        if return_attention_scores:
            return [out, Ad]
        return out

    # --------------------------------------------------------------- backward
    def backward(self, grad):
        q, v, k, has_key, aux, A, Ad, drop, qm, ret_scores = self._need_cache()
        B, Tq, Tv = A.shape
        out_shape = (B, Tq, v.shape[-1])
        if ret_scores:
            if not isinstance(grad, (list, tuple)) or len(grad) != 2:
                raise ValueError(f"Layer '{self.name}' returned [output, attention_scores]: backward expects a list "
                                 f"of 2 gradients (None = zero), got {type(grad).__name__}")
            g, gA = grad
        else:
            if isinstance(grad, (list, tuple)):
                raise ValueError(f"Layer '{self.name}' returned one output: backward expects one gradient of shape "
                                 f"{out_shape}, got a list")
            g, gA = grad, None
        dt = A.dtype
        if g is not None:
            g = np.asarray(g, dtype=dt)
            if g.shape != out_shape:
                raise ValueError(f"Layer '{self.name}': gradient for the output must have shape {out_shape}, "
                                 f"got {g.shape}")
            if qm is not None:
                g = np.where(qm, g, 0).astype(dt, copy=False)
            dv = Ad.transpose(0, 2, 1) @ g
            dAd = g @ v.transpose(0, 2, 1)
        else:
            dv = np.zeros_like(v)
            dAd = np.zeros_like(A)
        if gA is not None:
            gA = np.asarray(gA, dtype=dt)
            if gA.shape != A.shape:
                raise ValueError(f"Layer '{self.name}': gradient for the attention scores must have shape "
                                 f"{A.shape}, got {gA.shape}")
            dAd = dAd + gA
        dA = dAd * drop if drop is not None else dAd
        dS = A * (dA - np.sum(dA * A, axis=-1, keepdims=True))
        dq, dk = self._scores_backward(dS, q, k, aux)
        if has_key:
            return [dq, dv, dk]
        return [dq, dv + dk]

    def get_config(self):
        cfg = super().get_config()
        cfg.update(use_scale=self.use_scale, score_mode=self.score_mode, dropout=self.dropout, seed=self.seed)
        if self.score_mode == "general":
            cfg["kernel_initializer"] = initializers.serialize(self.kernel_initializer)
        return cfg


@register
class AdditiveAttention(Attention):
    """Additive (Bahdanau) attention, Keras ``AdditiveAttention``: ``S_ij = sum_d w_d tanh(q_i + k_j)_d``.

    ``use_scale=True`` (default) learns ``w`` = ``scale`` of shape (D,) (glorot_uniform, as Keras);
    otherwise ``w = 1``. Query and key must have the same dim D. See the module docstring.
    """

    def __init__(self, use_scale=True, dropout=0.0, seed=None, **kwargs):
        super().__init__(use_scale=use_scale, score_mode="dot", dropout=dropout, seed=seed, **kwargs)

    def _needs_same_dim(self):
        return True

    def _mode_name(self):
        return "additive"

    def build(self, input_shape):
        self._validate_inputs(input_shape)
        dim = tuple(input_shape[0])[-1]
        if self.use_scale:
            if dim is None:
                raise ValueError(f"Layer '{self.name}': AdditiveAttention needs a known query dim, got "
                                 f"{format_shape(list(map(tuple, input_shape)))}")
            self.add_weight("scale", (dim,), "glorot_uniform")
        Layer.build(self, input_shape)

    def _scores(self, q, k):
        t = np.tanh(q[:, :, None, :] + k[:, None, :, :])        # (B, Tq, Tv, D)
        if self.use_scale:
            return t @ self.params["scale"], t
        return t.sum(axis=-1), t

    def _scores_backward(self, dS, q, k, t):
        if self.use_scale:
            w = self.params["scale"]
            self.grads["scale"][...] = np.tensordot(dS, t, axes=([0, 1, 2], [0, 1, 2]))
            dz = dS[..., None] * w * (1.0 - t * t)
        else:
            dz = dS[..., None] * (1.0 - t * t)
        return dz.sum(axis=2), dz.sum(axis=1)

    def get_config(self):
        cfg = super().get_config()
        cfg.pop("score_mode", None)
        cfg.pop("kernel_initializer", None)
        return cfg
