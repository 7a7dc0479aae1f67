"""LSTM: the long short-term memory cell, one step forward and one step backward.

Cell equations (Keras gate order i, f, c, o along the 4U axis; ``s`` = ``recurrent_activation``
(sigmoid), ``f`` = ``activation`` (tanh))::

    a_t = x_t W_x + b + h_{t-1} W_h            W_x: kernel (D, 4U), W_h: recurrent_kernel (U, 4U), b: bias (4U,)
    i = s(a_i)   f = s(a_f)   g = f(a_c)   o = s(a_o)
    c_t = f * c_{t-1} + i * g
    h_t = o * f(c_t)                             output = h_t; states [h_t, c_t]

Backward, given dh = dL/dh_t and dc = dL/dc_t (from the future)::

    do  = dh * f(c_t)
    dct = dc + dh * o * f'(c_t)                  total gradient reaching c_t
    di  = dct * g    df = dct * c_{t-1}    dg = dct * i
    dL/dc_{t-1} = dct * f
    dA  = [di s'(i), df s'(f), dg f'(g), do s'(o)]   (derivatives written from the activations)
    dL/dh_{t-1} = dA W_h^T                       one (B, 4U) @ (4U, U) GEMM

Fast path (default activations): sigmoid(x) = 1/2 + 1/2 tanh(x/2), with the 1/2 folded into copies of
the weights made once per call, so the four gates take one tanh and two full-width in-place ops per
step; the results are bit-identical to scaling at each step (the factor is a power of two).

Native path: for inference (``training=False``) in float32 with these activations, the whole time loop
runs in C when the optional kernel is built (``rnnlab._native.lstm_infer``; masks supported), filling
the same buffers; it agrees with the NumPy loop to ~1e-6 relative (tanh approximation, summation order).
In training (float32, these activations, kernel built) each fast-path step keeps its recurrent GEMM in
NumPy and does the elementwise gate math in one C call (``rnnlab_lstm_gates_fwd_f32`` /
``rnnlab_lstm_gates_bwd_f32``), writing the same buffers: forward equal up to the tanh approximation,
backward step bit-identical (gains: docs/benchmarks.md). On the packed path the whole forward and, without
recurrent dropout, the whole backward time loop each run in one compiled call (``rnnlab_lstm_fwd_loop_f32``,
``rnnlab_lstm_bwd_loop_f32``, with a mask ``rnnlab_lstm_bwd_loop_masked_f32``), by blocks of batch rows with several
BLAS threads; the backward loop gives the bits of the per-step loop, masked or not.

``unit_forget_bias=True`` (default, as Keras) initialises the forget slice of the bias to 1.
The time loop, masking, states and the weight-gradient GEMMs are in :mod:`rnnlab.layers.recurrent`.
"""
from __future__ import annotations

import types

import numpy as np

from .base import register
from .cells import KerasCell, check_implementation
from .fused_loop import FusedRNN, act_backward_, act_forward_, addr
from .fused_workspace import Workspace
from .. import _native
from .. import activations as _act


@register
class LSTMCell(KerasCell):
    """One LSTM step (Keras ``LSTMCell``): the equations of the module docstring, forward and backward.

    ``LSTMCell(units, activation="tanh", recurrent_activation="sigmoid", use_bias=True, ...,
    unit_forget_bias=True, dropout=0.0, recurrent_dropout=0.0, implementation=2)``.
    Weights ``kernel`` (D, 4U), ``recurrent_kernel`` (U, 4U), ``bias`` (4U,), gates i, f, c, o;
    ``state_size = [U, U]`` (h, c), ``output_size = U``. ``implementation`` (1 or 2) is Keras' choice
    between two ways of computing the same function; both give this one.
    """

    _n_gates = 4
    _layer_name = "LSTM"
    _state_names = ("h", "c")

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, dropout=0.0, recurrent_dropout=0.0, implementation=2, **kwargs):
        super().__init__(units, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
                         dropout=dropout, recurrent_dropout=recurrent_dropout, **kwargs)
        self.recurrent_activation = _act.get(recurrent_activation)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.implementation = check_implementation(type(self).__name__, implementation)

    @property
    def state_size(self):
        return [self.units, self.units]

    def build(self, input_shape):
        D, U = self._input_dim(input_shape), self.units
        self.add_weight("kernel", (D, 4 * U), self.kernel_initializer)
        self.add_weight("recurrent_kernel", (U, 4 * U), self.recurrent_initializer)
        if self.use_bias:
            b = self.add_weight("bias", (4 * U,), self.bias_initializer)
            if self.unit_forget_bias:  # Keras: bias_initializer for i, ones for f, bias_initializer for c and o
                b[U:2 * U] = 1.0
                b[2 * U:] = np.asarray(self.bias_initializer((2 * U,), self.dtype), dtype=self.dtype)
        super().build(input_shape)

    def forward_step(self, x, states, training=False):
        h, c = states
        U, p = self.units, self.params
        xd, hr, masks = self._dropped(x, h)
        a = xd @ p["kernel"] + hr @ p["recurrent_kernel"]
        if self.use_bias:
            a += p["bias"]
        ract, act = self.recurrent_activation, self.activation
        i, f = ract.forward(a[:, :U]), ract.forward(a[:, U:2 * U])
        g, o = act.forward(a[:, 2 * U:3 * U]), ract.forward(a[:, 3 * U:])
        c_new = f * c + i * g
        tc = act.forward(c_new)
        h_new = o * tc
        return h_new, [h_new, c_new], (xd, hr, masks, i, f, g, o, c, tc)

    def backward_step(self, d_output, d_states, cache):
        xd, hr, masks, i, f, g, o, c, tc = cache
        dh = d_output + d_states[0]
        ract, act = self.recurrent_activation, self.activation
        do = dh * tc
        dct = act_backward_(act, tc, dh * o, np.empty_like(tc)) + d_states[1]
        da = np.concatenate([dct * g, dct * c, dct * i, do], axis=1)
        U = self.units
        for sl, y, fn in ((slice(0, U), i, ract), (slice(U, 2 * U), f, ract), (slice(2 * U, 3 * U), g, act),
                          (slice(3 * U, 4 * U), o, ract)):
            act_backward_(fn, y, da[:, sl], np.empty_like(y))
        self.grads["recurrent_kernel"] += hr.T @ da
        if self.use_bias:
            self.grads["bias"] += da.sum(axis=0)
        dh_prev = da @ self.params["recurrent_kernel"].T
        if masks[1] is not None:
            dh_prev *= masks[1]
        return self._input_grads(da, xd, masks), [dh_prev, dct * f]

    def get_config(self):
        cfg = super().get_config()
        cfg.update(recurrent_activation=_act.serialize(self.recurrent_activation),
                   unit_forget_bias=self.unit_forget_bias, implementation=self.implementation)
        return cfg

    def _layer_kwargs(self):
        cfg = super()._layer_kwargs()
        cfg.pop("implementation")
        return cfg


# ---------------------------------------------------------------------------------------------------------
# Optional: the fast path. The LSTM layer computes the cell's function above through FusedRNN's time loop
# (fused_loop.py) on preallocated time-major buffers; the workspace fields and step hooks below are all it
# adds. Which path runs is chosen in one place, FusedRNN.forward with fused_native.NativePaths._native_float32
# (backend="auto"|"numpy"|"native"); layer.last_path records it. RNN over a user cell never uses this.
# ---------------------------------------------------------------------------------------------------------

class LSTMWorkspace(Workspace):
    """The fused loop's workspace with LSTM's own fields: ``TC`` (T, B, U) f(c_t) per step (read by the backward),
    ``tmpW2`` (B, 4U) a second step scratch of the fast path."""

    __slots__ = ("TC", "tmpW2")


class LSTMSteps:
    """The fast-path hooks of the LSTM layer (FusedRNN's cell hooks, see the fused_loop module docstring): the
    equations of the module docstring, one step at a time, in place on the workspace's buffers."""

    def _alloc_cell(self, ws):
        # f(c_t) per step, needed by the backward
        ws.time_buffer("TC", (self.units,))
        ws.fast = None
        if self.recurrent_activation.name == "sigmoid" and self.activation.name == "tanh":
            U, dt = self.units, self.dtype
            is_g = np.zeros(4 * U, bool)
            is_g[2 * U:3 * U] = True
            # post/shift/k are broadcast to full (B, 4U) arrays: a ufunc on two contiguous arrays of the same
            # shape takes NumPy's fast loop, one with a broadcast (4U,) row its slower iterator (~2x at B=32)
            full = lambda v: np.ascontiguousarray(np.broadcast_to(np.asarray(v, dt), (ws.B, 4 * U)))  # noqa: E731
            ws.fast = types.SimpleNamespace(
                pre=np.where(is_g, 1.0, 0.5).astype(dt), post=full(np.where(is_g, 1.0, 0.5)),
                shift=full(np.where(is_g, 0.0, 0.5)), k=full(is_g),
                # the weights with the 1/2 of sigmoid(x) = 1/2 + 1/2 tanh(x/2) folded in (refreshed each call)
                kernel=np.empty_like(self.params["kernel"]),
                recurrent_kernel=np.empty_like(self.params["recurrent_kernel"]),
                bias=np.empty(4 * U, dt) if self.use_bias else None,
                u=np.empty((ws.B, U), dt))
            ws.tmpW2 = np.empty((ws.B, 4 * U), dt)
            # the per-step views, made once per workspace (at batch 1 slicing costs ~15% of a step)
            A, S0, S1, TC, HR = ws.A, ws.S[0], ws.S[1], ws.TC, ws.HR
            gates = lambda a: (a[:, :U], a[:, U:2 * U], a[:, 2 * U:3 * U], a[:, 3 * U:])  # noqa: E731
            ws.fast.fwd = [(HR[t], A[t], *gates(A[t]), S1[t], S1[t + 1], TC[t], S0[t + 1]) for t in range(ws.T)]
            ws.fast.bwd = [(A[t], *gates(A[t]), S1[t], TC[t]) for t in range(ws.T)]
            ws.fast.dgates = gates(ws.dA_t)
            ws.fast.cptr = None
            if self._native_float32() and _native.lstm_step_kernels() is not None:
                # training steps in C (rnnlab/_native/_cells.c): the raw addresses of the per-step buffers
                ws.fast.cptr = self._native_step_ptrs(
                    ws, kernels=_native.lstm_step_kernels(),
                    fwd=[(addr(A[t]), addr(ws.tmpW), addr(S1[t]), addr(S1[t + 1]), addr(TC[t]), addr(S0[t + 1]))
                         for t in range(ws.T)],
                    bwd=[(addr(A[t]), addr(S1[t]), addr(TC[t])) for t in range(ws.T)])

    def _projection_weights(self, ws):
        fast = ws.fast
        if fast is None:
            return super()._projection_weights(ws)
        np.multiply(self.params["kernel"], fast.pre, out=fast.kernel)
        np.multiply(self.params["recurrent_kernel"], fast.pre, out=fast.recurrent_kernel)
        if fast.bias is not None:
            np.multiply(self.params["bias"], fast.pre, out=fast.bias)
        return fast.kernel, fast.bias

    def _step_weight(self, ws):
        return ws.fast.recurrent_kernel if ws.fast is not None else self.params["recurrent_kernel"]

    def _native_ready(self, ws):
        # inference, sigmoid/tanh, float32: the whole loop in C (rnnlab/_native/_cells.c), faster at
        # batch 1 than ~10 ufunc calls and a small GEMV per step. It takes the raw weights (it halves the
        # sigmoid gates' sums itself, exactly) and fills the same buffers as the NumPy loop (A: the gate
        # activations, TC, S), agreeing to ~1e-6 relative, not bit for bit.
        return ws.fast is not None and self._native_float32()

    def _native_loop(self, ws):
        m, rk, b, scratch = self._native_inputs(ws)
        if _native.lstm_infer(ws.A, rk, ws.S[0], ws.S[1], ws.TC, m, bias=b, scratch=scratch) > 0:
            return True
        # (not reached with the workspace's arrays) the NumPy fast loop: add the bias, pre-scale
        if b is not None:
            ws.A += b
        ws.A *= ws.fast.pre
        np.multiply(self.params["recurrent_kernel"], ws.fast.pre, out=ws.fast.recurrent_kernel)
        return False

    def _fused_forward(self, ws):
        # the whole packed-path loop in C (recurrent.py), by blocks of rows: W_h packed pre-scaled in ws.pk,
        # HR = H[:T]; each block has its own scratch for the per-step product
        if not self._has_fused_forward(ws):
            return False
        cp, (S0, S1), B, U = ws.fast.cptr, ws.S, ws.B, self.units
        W, hr_t, ldhr = 4 * U, ws.HR.strides[0] // 4, ws.HR.strides[1] // 4
        wp, h, c, a, tc = addr(ws.pk.pm.buf), addr(S0), addr(S1), addr(ws.A), addr(ws.TC)
        m = None if ws.m is None else addr(ws.m)
        fn = _native.fused_loop_kernel("lstm")

        # inference on an Embedding's output: each step's rows of A copied from the table in the loop (_cells.c)
        P, ids = (addr(ws.table_rows[0]), addr(ws.table_rows[1])) if ws.table_rows is not None else (None, None)

        def run(block):
            (b0, b1), tmp = block
            return fn(wp, h + 4 * b0 * ldhr, hr_t, ldhr, a + 4 * b0 * W, addr(tmp), h + 4 * b0 * U, c + 4 * b0 * U,
                      tc + 4 * b0 * U, cp.bias, None if m is None else m + b0, ws.T, b1 - b0, B, U, cp.isa,
                      P, None if ids is None else ids + 8 * b0)

        uses = _native.run_blocks(run, self._fused_blocks(ws, ws.tmpW))
        if not all(uses):
            return False
        cp.fwd_isa = uses[0]
        return True

    def _has_fused_backward(self, ws):
        return self._has_fused_forward(ws)

    def _takes_table_rows(self, ws):
        # the fused loop copies each step's rows from the table (rnnlab_lstm_fwd_loop_f32); the bias is then added
        # by its gate kernel (cptr.bias), so A need not exist before the loop. (If the loop does not run after all,
        # FusedRNN.forward gathers the rows first.)
        return not ws.native_ok and ws.rec_mask is None and self._has_fused_forward(ws)

    def _fused_backward(self, ws, g_out):
        # the BPTT loop in C (_cells.c: the gate kernel of _step_backward_fast, dA over A[t], the packed dA W_h^T),
        # by blocks of rows; the carried gradients come back in ws.carry (ws.dprev is the scratch)
        # with a mask, its masked variant (the Python loop's masked steps, ws.dnew their scratch)
        if (not self._has_fused_forward(ws) or ws.pkb is None
                or _native.fused_bwd_loop_kernel("lstm", masked=ws.m is not None) is None):
            return False
        U, W = self.units, 4 * self.units
        (dh, dc), (dh2, dc2) = [addr(v) for v in ws.carry], [addr(v) for v in ws.dprev]
        return self._compiled_backward_loop(ws, "lstm", [(addr(ws.A), W), (addr(ws.S[1]), U), (addr(ws.TC), U)],
                                            [(dh, U), (dc, U), (dh2, U), (dc2, U)], g_out,
                                            dnew=[(addr(v), U) for v in ws.dnew])

    def _step_forward(self, t, ws):
        fast = ws.fast
        if fast is not None:
            # a holds x/2 for the sigmoid gates (pre-scaled weights): all four gates in 3 full-width ops
            hr, a, i, f, g, o, c_old, c_new, tc, h_new = fast.fwd[t]
            if ws.pk is not None:
                ws.pk.step[t]()          # the same product with W_h packed once (recurrent.py)
            else:
                np.matmul(hr, fast.recurrent_kernel, out=ws.tmpW)
            cp = fast.cptr
            if cp is not None and _native.loaded():
                # the rest of the step in one C call: same buffers, same values up to the tanh approximation
                cp.fwd_isa = cp.kernels[0](*cp.fwd[t], cp.bias, ws.B, self.units, cp.isa)
                return
            a += ws.tmpW
            np.tanh(a, out=a)
            a *= fast.post
            a += fast.shift
            np.multiply(f, c_old, out=c_new)
            np.multiply(i, g, out=ws.tmpU)
            c_new += ws.tmpU
            np.tanh(c_new, out=tc)
            np.multiply(o, tc, out=h_new)
            return
        U = self.units
        a = ws.A[t]
        if ws.pk is not None:
            ws.pk.step[t]()
        else:
            np.matmul(ws.HR[t], self.params["recurrent_kernel"], out=ws.tmpW)
        a += ws.tmpW
        ract = self.recurrent_activation
        act_forward_(ract, a[:, :2 * U])
        act_forward_(self.activation, a[:, 2 * U:3 * U])
        act_forward_(ract, a[:, 3 * U:])
        i, f, g, o = a[:, :U], a[:, U:2 * U], a[:, 2 * U:3 * U], a[:, 3 * U:]
        c_new = ws.S[1][t + 1]
        np.multiply(f, ws.S[1][t], out=c_new)
        np.multiply(i, g, out=ws.tmpU)
        c_new += ws.tmpU
        tc = ws.TC[t]
        y = self.activation.forward(c_new, out=tc)
        if y is not tc:
            tc[...] = y
        np.multiply(o, tc, out=ws.S[0][t + 1])

    def _step_backward(self, t, ws, dnew, dprev):
        fast = ws.fast
        if fast is not None:
            self._step_backward_fast(t, ws, dnew, dprev)
            return
        U = self.units
        dh, dc = dnew
        a, da, tc = ws.A[t], ws.dA_t, ws.TC[t]
        i, f, g, o = a[:, :U], a[:, U:2 * U], a[:, 2 * U:3 * U], a[:, 3 * U:]
        tmp = ws.tmpW
        # do = dh * f(c_t)
        np.multiply(dh, tc, out=da[:, 3 * U:])
        # dct = dc + dh * o * f'(c_t)
        dct = ws.tmpU
        np.multiply(dh, o, out=dct)
        act_backward_(self.activation, tc, dct, tmp[:, :U])
        dct += dc
        np.multiply(dct, g, out=da[:, :U])              # di
        np.multiply(dct, ws.S[1][t], out=da[:, U:2 * U])  # df
        np.multiply(dct, i, out=da[:, 2 * U:3 * U])     # dg
        np.multiply(dct, f, out=dprev[1])                # dL/dc_{t-1}
        ract = self.recurrent_activation
        act_backward_(ract, a[:, :2 * U], da[:, :2 * U], tmp[:, :2 * U])
        act_backward_(self.activation, g, da[:, 2 * U:3 * U], tmp[:, :U])
        act_backward_(ract, o, da[:, 3 * U:], tmp[:, :U])
        self._dh_product(ws, t, da, dprev[0])
        self._rec_grad_to_h(ws, dprev[0])

    def _step_backward_fast(self, t, ws, dnew, dprev):
        """The same step for sigmoid/tanh, on the precomputed views, with the activation derivatives inline."""
        fast, da, tmp, dct, u = ws.fast, ws.dA_t, ws.tmpW, ws.tmpU, ws.fast.u
        a, i, f, g, o, c_old, tc = fast.bwd[t]
        di, df, dg, do = fast.dgates
        dh, dc = dnew
        cp = fast.cptr
        if cp is not None and _native.loaded():
            g_ptr = cp.grads
            pdh, pdc, pdp = g_ptr.get(id(dh)), g_ptr.get(id(dc)), g_ptr.get(id(dprev[1]))
            if pdh is not None and pdc is not None and pdp is not None:
                # the elementwise part in one C call, bit-identical to the NumPy lines below
                pa, pco, ptc = cp.bwd[t]
                cp.bwd_isa = cp.kernels[1](pdh, pdc, pa, pco, ptc, cp.da, pdp, ws.B,
                                                                    self.units, cp.isa)
                self._dh_product(ws, t, da, dprev[0])
                if ws.rec_mask is not None:
                    dprev[0] *= ws.rec_mask
                return
        np.multiply(dh, tc, out=do)            # do = dh * tanh(c_t)
        np.multiply(dh, o, out=dct)            # dct = dc + dh * o * (1 - tanh(c_t)^2)
        np.multiply(tc, tc, out=u)
        np.subtract(1.0, u, out=u)
        dct *= u
        dct += dc
        np.multiply(dct, g, out=di)
        np.multiply(dct, c_old, out=df)
        np.multiply(dct, i, out=dg)
        np.multiply(dct, f, out=dprev[1])      # dL/dc_{t-1}
        # sigmoid' = (1 - y) y and tanh' = (1 - y)(1 + y): (1 - y)(y + k), k = 0 or 1 per column
        np.subtract(1.0, a, out=tmp)
        np.add(a, fast.k, out=ws.tmpW2)
        tmp *= ws.tmpW2
        da *= tmp
        self._dh_product(ws, t, da, dprev[0])
        if ws.rec_mask is not None:
            dprev[0] *= ws.rec_mask


@register
class LSTM(LSTMSteps, FusedRNN):
    """Long short-term memory layer (Keras ``LSTM``; Hochreiter & Schmidhuber 1997).

    Shapes: input (B, T, D) -> output (B, U), or (B, T, U) with ``return_sequences``;
    weights ``kernel`` (D, 4U), ``recurrent_kernel`` (U, 4U), ``bias`` (4U,), gates i, f, c, o.
    ``return_state=True`` returns ``[output, h, c]``; ``initial_state=[h0, c0]``.
    It is ``RNN`` over its cell (``layer.cell``, a LSTMCell sharing these weights; ``RNN(LSTMCell(n))`` computes
    the same bits). ``backend="auto"|"numpy"|"native"`` chooses rnnlab's path (saved in the config;
    ``last_path`` records the loop that ran, see docs/cells.md). ``implementation`` (1 or 2) keeps its Keras
    meaning, two ways of computing the same function: both accepted, same result, saved. ``use_cudnn`` is
    accepted for Keras compatibility and has no effect (rnnlab runs on the CPU).

    Dropout differs from Keras 3: rnnlab draws one input mask (B, D) and one recurrent mask (B, U)
    per call, shared by all four gates. Keras draws one recurrent mask per gate, and with
    ``recurrent_dropout > 0`` (which switches it to ``implementation=1``) one input mask per gate
    too. With ``recurrent_dropout == 0`` the input dropout is the same as Keras'.
    """

    _cell_class = LSTMCell
    _workspace_class = LSTMWorkspace

    _extra_kwargs = FusedRNN._extra_kwargs | {"implementation", "use_cudnn"}

    _n_gates = 4
    _state_names = ("h", "c")

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, dropout=0.0, recurrent_dropout=0.0,
                 return_sequences=False, return_state=False, go_backwards=False, stateful=False, **kwargs):
        super().__init__(units, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
                         dropout=dropout, recurrent_dropout=recurrent_dropout, return_sequences=return_sequences,
                         return_state=return_state, go_backwards=go_backwards, stateful=stateful, **kwargs)
        self.recurrent_activation = _act.get(recurrent_activation)
        self.unit_forget_bias = bool(unit_forget_bias)

    def build(self, input_shape):
        input_shape = self._check_build_shape(input_shape)
        U = self.units
        self.add_weight("kernel", (input_shape[-1], 4 * U), self.kernel_initializer)
        self.add_weight("recurrent_kernel", (U, 4 * U), self.recurrent_initializer)
        if self.use_bias:
            self.add_weight("bias", (4 * U,), self.bias_initializer)
            if self.unit_forget_bias:
                # Keras: bias_initializer for i, ones for f, bias_initializer again for c and o
                b = self.params["bias"]
                b[U:2 * U] = 1.0
                b[2 * U:] = np.asarray(self.bias_initializer((2 * U,), self.dtype), dtype=self.dtype)
        super().build(input_shape)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(recurrent_activation=_act.serialize(self.recurrent_activation),
                   unit_forget_bias=self.unit_forget_bias)
        return cfg
