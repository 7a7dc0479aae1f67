"""SimpleRNN: the Elman cell, one step forward and one step backward.

Cell equations (per step, B batch, D inputs, U units; ``f`` = ``activation``, tanh by default)::

    a_t = x_t W_x + b + h_{t-1} W_h          W_x: kernel (D, U), W_h: recurrent_kernel (U, U), b: bias (U,)
    h_t = f(a_t)                               output = h_t

Backward, given g = dL/dh_t::

    dA_t      = g * f'(a_t)                    (f' written from h_t)
    dL/dh_{t-1} = dA_t W_h^T
    dW_x += x_t^T dA_t,  dW_h += h_{t-1}^T dA_t,  db += sum_b dA_t   (done once after the loop)

The time loop, masking, states and the weight-gradient GEMMs are in :mod:`rnnlab.layers.recurrent`.
For inference with ``activation="tanh"`` in float32 (batch <= ``NATIVE_MAX_BATCH``) the whole time loop runs in
C when the optional kernel is built (``rnnlab._native.rnn_infer``; masks supported), filling the same buffers
(A: the pre-activations, S) to ~1e-6 relative; other activations stay on the NumPy loop.
"""
from __future__ import annotations

import numpy as np

from .. import _native
from .base import register
from .cells import KerasCell
from .fused_loop import FusedRNN, act_backward_
from .fused_workspace import Workspace


@register
class SimpleRNNCell(KerasCell):
    """One Elman step (Keras ``SimpleRNNCell``): ``h_t = f(x_t W_x + b + h_{t-1} W_h)``, forward and backward.

    ``SimpleRNNCell(units, activation="tanh", use_bias=True, ..., dropout=0.0, recurrent_dropout=0.0)``.
    Weights ``kernel`` (D, U), ``recurrent_kernel`` (U, U), ``bias`` (U,); ``state_size = U``.
    """

    _layer_name = "SimpleRNN"

    @property
    def state_size(self):
        return self.units

    def build(self, input_shape):
        D, U = self._input_dim(input_shape), self.units
        self.add_weight("kernel", (D, U), self.kernel_initializer)
        self.add_weight("recurrent_kernel", (U, U), self.recurrent_initializer)
        if self.use_bias:
            self.add_weight("bias", (U,), self.bias_initializer)
        super().build(input_shape)

    def forward_step(self, x, states, training=False):
        p = self.params
        xd, hr, masks = self._dropped(x, states[0])
        a = xd @ p["kernel"] + hr @ p["recurrent_kernel"]
        if self.use_bias:
            a += p["bias"]
        h = self.activation.forward(a)
        return h, [h], (xd, hr, masks, h)

    def backward_step(self, d_output, d_states, cache):
        xd, hr, masks, h = cache
        da = act_backward_(self.activation, h, d_output + d_states[0], np.empty_like(h))
        self.grads["recurrent_kernel"] += hr.T @ da
        if self.use_bias:
            self.grads["bias"] += da.sum(axis=0)
        dh_prev = da @ self.params["recurrent_kernel"].T
        if masks[1] is not None:
            dh_prev *= masks[1]
        return self._input_grads(da, xd, masks), [dh_prev]


# ---------------------------------------------------------------------------------------------------------
# Optional: the fast path. The SimpleRNN layer computes the cell's function above through FusedRNN's time loop
# (fused_loop.py) on preallocated time-major buffers; the workspace fields and step hooks below are all it
# adds. Which path runs is chosen in one place, FusedRNN.forward with fused_native.NativePaths._native_float32
# (backend="auto"|"numpy"|"native"); layer.last_path records it. RNN over a user cell never uses this.
# ---------------------------------------------------------------------------------------------------------

class SimpleRNNWorkspace(Workspace):
    """The fused loop's workspace with SimpleRNN's own fields: ``views`` the per-step (HR[t], A[t], H[t+1]) views,
    ``tanh`` whether the activation is tanh (the compiled inference loop's condition)."""

    __slots__ = ("views", "tanh")


class SimpleRNNSteps:
    """The fast-path hooks of the SimpleRNN layer (FusedRNN's cell hooks, see the fused_loop module docstring): the
    equations of the module docstring, one step at a time, in place on the workspace's buffers."""

    def _alloc_cell(self, ws):
        # the per-step views, made once per workspace (at batch 1 slicing is a visible part of a step)
        ws.views = [(ws.HR[t], ws.A[t], ws.S[0][t + 1]) for t in range(ws.T)]
        ws.tanh = self.activation.name == "tanh"

    def _native_ready(self, ws):
        # inference, tanh, float32: the whole loop in C (rnnlab/_native/_cells.c), sharing the LSTM/GRU recurrent
        # product and tanh; fills A (pre-activations) and S as the NumPy loop does, to ~1e-6 relative
        return ws.tanh and self._native_float32()

    def _native_loop(self, ws):
        m, rk, b, scratch = self._native_inputs(ws)
        if _native.rnn_infer(ws.A, rk, ws.S[0], m, bias=b, scratch=scratch) > 0:
            return True
        # (not reached with the workspace's arrays) the NumPy loop: add the bias it expects in A
        if b is not None:
            ws.A += b
        return False

    def _step_forward(self, t, ws):
        hr, a, h = ws.views[t]
        if ws.pk is not None:
            ws.pk.step[t]()          # the same product with W_h packed once (recurrent.py)
        else:
            np.matmul(hr, self.params["recurrent_kernel"], out=ws.tmpW)
        a += ws.tmpW
        if ws.tanh:
            np.tanh(a, out=h)
        else:
            y = self.activation.forward(a, out=h)  # A[t] keeps a_t; h_t is read back from S by the backward
            if y is not h:
                h[...] = y

    def _step_backward(self, t, ws, dnew, dprev):
        # f' is written from h_t = S[t + 1]; where a masked step carried h over, dnew is zero
        da, h = ws.dA_t, ws.views[t][2]
        if ws.tanh:
            tmp = ws.tmpW
            np.multiply(h, h, out=tmp)
            np.subtract(1.0, tmp, out=tmp)
            np.multiply(dnew[0], tmp, out=da)
        else:
            np.copyto(da, dnew[0])
            act_backward_(self.activation, h, da, ws.tmpW)
        self._dh_product(ws, t, da, dprev[0])
        if ws.rec_mask is not None:
            dprev[0] *= ws.rec_mask


@register
class SimpleRNN(SimpleRNNSteps, FusedRNN):
    """Fully-connected RNN whose output is fed back as the next step's state (Keras ``SimpleRNN``).

    Shapes: input (B, T, D) -> output (B, U), or (B, T, U) with ``return_sequences``;
    weights ``kernel`` (D, U), ``recurrent_kernel`` (U, U), ``bias`` (U,).
    ``return_state=True`` returns ``[output, h]``.
    It is ``RNN`` over its cell (``layer.cell``, a SimpleRNNCell sharing these weights;
    ``RNN(SimpleRNNCell(n))`` computes the same bits). ``backend="auto"|"numpy"|"native"`` chooses rnnlab's path
    (saved in the config; ``last_path`` records the loop that ran, see docs/cells.md).

    Dropout is as in Keras 3: one input mask (B, D) and one recurrent mask (B, U) per call, reused
    at every step (SimpleRNN has a single gate, so the LSTM/GRU per-gate difference does not arise).
    """

    _cell_class = SimpleRNNCell
    _workspace_class = SimpleRNNWorkspace

    _n_gates = 1
    _state_names = ("h",)

    def build(self, input_shape):
        input_shape = self._check_build_shape(input_shape)
        U = self.units
        self.add_weight("kernel", (input_shape[-1], U), self.kernel_initializer)
        self.add_weight("recurrent_kernel", (U, U), self.recurrent_initializer)
        if self.use_bias:
            self.add_weight("bias", (U,), self.bias_initializer)
        super().build(input_shape)
