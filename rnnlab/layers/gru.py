"""GRU: the gated recurrent unit, one step forward and one step backward, both Keras variants.

Keras gate order z, r, h along the 3U axis; ``s`` = ``recurrent_activation`` (sigmoid),
``f`` = ``activation`` (tanh); W_x: kernel (D, 3U), W_h: recurrent_kernel (U, 3U).

reset_after=True (Keras 3 default, the cuDNN / PyTorch form), bias (2, 3U) = [b_x; b_h]::

    p = x_t W_x + b_x                 (all steps at once)        q = h_{t-1} W_h + b_h
    z = s(p_z + q_z)    r = s(p_r + q_r)    hh = f(p_h + r * q_h)
    h_t = z * h_{t-1} + (1 - z) * hh

reset_after=False (original Cho et al. form), bias (3U,)::

    p = x_t W_x + b
    z = s(p_z + h_{t-1} W_hz)    r = s(p_r + h_{t-1} W_hr)    hh = f(p_h + (r * h_{t-1}) W_hh)
    h_t = z * h_{t-1} + (1 - z) * hh

Backward, given dh = dL/dh_t::

    dz  = dh * (h_{t-1} - hh) * s'(z)        dAh = dh * (1 - z) * f'(hh)
    reset_after=True:   dr = dAh * q_h * s'(r);   dq = [dz, dr, dAh * r]
                        dL/dh_{t-1} = dh * z + dq W_h^T                         (one GEMM)
                        dW_h = H_prev^T dq,  db_h = sum dq,  db_x = sum [dz, dr, dAh]
    reset_after=False:  d(rh) = dAh W_hh^T;  dr = d(rh) * h_{t-1} * s'(r)
                        dL/dh_{t-1} = dh * z + d(rh) * r + [dz, dr] W_h[:, :2U]^T
                        dW_h[:, :2U] = H_prev^T [dz, dr],  dW_h[:, 2U:] = (r * H_prev)^T dAh

Fast path (reset_after=True, sigmoid gates): the 1/2 of sigmoid(x) = 1/2 + 1/2 tanh(x/2) is folded into
per-call copies of the z, r columns of the weights and biases (bit-identical: the factor is a power of two).

Native path: for inference (``training=False``) with reset_after=True, these activations and float32, the
whole time loop runs in C when the optional kernel is built (``rnnlab._native.gru_infer``; masks supported),
filling the same buffers (A, Q, the states); it agrees with the NumPy loop to ~1e-6 relative (tanh
approximation, summation order). reset_after=False stays on NumPy. In training (same conditions, kernel
built) each fast-path step keeps its recurrent GEMM in NumPy and does the elementwise gate math in one C
call (``rnnlab_gru_gates_fwd_f32`` / ``rnnlab_gru_gates_bwd_f32``), writing the same buffers: forward equal
up to the tanh approximation, backward step bit-identical.

The time loop, masking, states and the input-side GEMMs are in :mod:`rnnlab.layers.recurrent`.
"""
from __future__ import annotations

import types

import numpy as np

from .. import _native
from .. import activations as _act
from .base import register
from .cells import KerasCell, check_implementation
from .fused_loop import FusedRNN, act_backward_, act_forward_, addr
from .fused_workspace import Workspace


@register
class GRUCell(KerasCell):
    """One GRU step (Keras ``GRUCell``), both ``reset_after`` forms: the equations of the module docstring.

    ``GRUCell(units, activation="tanh", recurrent_activation="sigmoid", use_bias=True, ..., dropout=0.0,
    recurrent_dropout=0.0, reset_after=True, implementation=2)``. Weights ``kernel`` (D, 3U),
    ``recurrent_kernel`` (U, 3U), ``bias`` (2, 3U) with reset_after else (3U,); gates z, r, h;
    ``state_size = U``. ``implementation`` (1 or 2) is accepted as in Keras (same function).
    """

    _n_gates = 3
    _layer_name = "GRU"

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 dropout=0.0, recurrent_dropout=0.0, reset_after=True, implementation=2, **kwargs):
        super().__init__(units, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
                         dropout=dropout, recurrent_dropout=recurrent_dropout, **kwargs)
        self.recurrent_activation = _act.get(recurrent_activation)
        self.reset_after = bool(reset_after)
        self.implementation = check_implementation(type(self).__name__, implementation)

    @property
    def state_size(self):
        return self.units

    def build(self, input_shape):
        D, U = self._input_dim(input_shape), self.units
        self.add_weight("kernel", (D, 3 * U), self.kernel_initializer)
        self.add_weight("recurrent_kernel", (U, 3 * U), self.recurrent_initializer)
        if self.use_bias:
            self.add_weight("bias", (2, 3 * U) if self.reset_after else (3 * U,), self.bias_initializer)
        super().build(input_shape)

    def forward_step(self, x, states, training=False):
        h = states[0]
        U, P = self.units, self.params
        xd, hr, masks = self._dropped(x, h)
        b = P["bias"] if self.use_bias else None
        p = xd @ P["kernel"]
        if b is not None:
            p += b[0] if self.reset_after else b
        ract, rk = self.recurrent_activation, P["recurrent_kernel"]
        if self.reset_after:
            q = hr @ rk
            if b is not None:
                q += b[1]
            z = ract.forward(p[:, :U] + q[:, :U])
            r = ract.forward(p[:, U:2 * U] + q[:, U:2 * U])
            hh = self.activation.forward(p[:, 2 * U:] + r * q[:, 2 * U:])
        else:
            q = hr @ rk[:, :2 * U]
            z = ract.forward(p[:, :U] + q[:, :U])
            r = ract.forward(p[:, U:2 * U] + q[:, U:])
            hh = self.activation.forward(p[:, 2 * U:] + (r * hr) @ rk[:, 2 * U:])
        h_new = z * h + (1 - z) * hh
        return h_new, [h_new], (xd, hr, masks, h, z, r, hh, q)

    def backward_step(self, d_output, d_states, cache):
        xd, hr, masks, h, z, r, hh, q = cache
        U, P, ract = self.units, self.params, self.recurrent_activation
        rk = P["recurrent_kernel"]
        dh = d_output + d_states[0]
        dz = act_backward_(ract, z, dh * (h - hh), np.empty_like(z))
        dah = act_backward_(self.activation, hh, dh * (1 - z), np.empty_like(hh))
        if self.reset_after:
            dr = act_backward_(ract, r, dah * q[:, 2 * U:], np.empty_like(r))
            dp = np.concatenate([dz, dr, dah], axis=1)
            dq = np.concatenate([dz, dr, dah * r], axis=1)
            self.grads["recurrent_kernel"] += hr.T @ dq
            dhr = dq @ rk.T
            if self.use_bias:
                self.grads["bias"][0] += dp.sum(axis=0)
                self.grads["bias"][1] += dq.sum(axis=0)
        else:
            d_rh = dah @ rk[:, 2 * U:].T
            dr = act_backward_(ract, r, d_rh * hr, np.empty_like(r))
            dp = np.concatenate([dz, dr, dah], axis=1)
            self.grads["recurrent_kernel"][:, :2 * U] += hr.T @ dp[:, :2 * U]
            self.grads["recurrent_kernel"][:, 2 * U:] += (r * hr).T @ dah
            dhr = dp[:, :2 * U] @ rk[:, :2 * U].T + d_rh * r
            if self.use_bias:
                self.grads["bias"] += dp.sum(axis=0)
        if masks[1] is not None:
            dhr *= masks[1]
        return self._input_grads(dp, xd, masks), [dh * z + dhr]

    def get_config(self):
        cfg = super().get_config()
        cfg.update(recurrent_activation=_act.serialize(self.recurrent_activation), reset_after=self.reset_after,
                   implementation=self.implementation)
        return cfg

    def _layer_kwargs(self):
        cfg = super()._layer_kwargs()
        cfg.pop("implementation")
        return cfg


# ---------------------------------------------------------------------------------------------------------
# Optional: the fast path. The GRU layer computes the cell's function above through FusedRNN's time loop
# (fused_loop.py) on preallocated time-major buffers; the workspace fields and step hooks below are all it
# adds. Which path runs is chosen in one place, FusedRNN.forward with fused_native.NativePaths._native_float32
# (backend="auto"|"numpy"|"native"); layer.last_path records it. RNN over a user cell never uses this.
# ---------------------------------------------------------------------------------------------------------

class GRUWorkspace(Workspace):
    """The fused loop's workspace with GRU's own fields: reset_after=True ``Q`` (T, B, 3U) h_{t-1} W_h + b_h per
    step (dQ after the backward) and ``dQ_t`` (B, 3U) its gradient at one step; reset_after=False ``RH``
    (T, B, U) r * h_{t-1}."""

    __slots__ = ("Q", "dQ_t", "RH")


class GRUSteps:
    """The fast-path hooks of the GRU layer (FusedRNN's cell hooks, see the fused_loop module docstring): the
    equations of the module docstring, one step at a time, in place on the workspace's buffers."""

    def _input_bias(self):
        if not self.use_bias:
            return None
        return self.params["bias"][0] if self.reset_after else self.params["bias"]

    def _alloc_cell(self, ws):
        T, B, U, dt = ws.T, ws.B, self.units, self.dtype
        ws.fast = None
        if self.reset_after:
            ws.time_buffer("Q", (3 * U,))    # q = h_{t-1} W_h + b_h per step (q_h needed by backward); dQ after
            ws.dQ_t = np.empty((B, 3 * U), dt)    # gradient w.r.t. q of one step, stored over Q[t]
            if self.recurrent_activation.name == "sigmoid" and self.activation.name == "tanh":
                # fast path: the 1/2 of sigmoid(x) = 1/2 + 1/2 tanh(x/2) folded into copies of the z, r
                # columns of the weights (q_z, q_r are then stored halved; the backward only reads q_h),
                # and b_h broadcast to a full (B, 3U) array (NumPy's contiguous fast loop), per call
                half = np.ones(3 * U, dt)
                half[:2 * U] = 0.5
                ws.fast = types.SimpleNamespace(
                    half=half, kernel=np.empty_like(self.params["kernel"]),
                    recurrent_kernel=np.empty_like(self.params["recurrent_kernel"]),
                    bias_x=np.empty(3 * U, dt) if self.use_bias else None,
                    bias_h=np.empty((B, 3 * U), dt) if self.use_bias else None,
                    u=np.empty((B, U), dt), u2=np.empty((B, 2 * U), dt))
                # the per-step views, made once per workspace (at batch 1 slicing costs ~15% of a step)
                A, Q, S0, HR = ws.A, ws.Q, ws.S[0], ws.HR
                parts = lambda a: (a[:, :2 * U], a[:, :U], a[:, U:2 * U], a[:, 2 * U:])  # noqa: E731
                ws.fast.fwd = [(HR[t], *parts(A[t]), S0[t], S0[t + 1], Q[t], Q[t][:, :2 * U], Q[t][:, 2 * U:])
                               for t in range(T)]
                ws.fast.dgates = parts(ws.dA_t)
                ws.fast.dq = (ws.dQ_t[:, :2 * U], ws.dQ_t[:, 2 * U:])
                ws.fast.cptr = None
                if self._native_float32() and _native.gru_step_kernels() is not None:
                    # training steps in C (rnnlab/_native/_cells.c): the raw addresses of the per-step buffers
                    ws.fast.cptr = self._native_step_ptrs(
                        ws, kernels=_native.gru_step_kernels(),
                        fwd=[(addr(A[t]), addr(Q[t]), addr(S0[t]), addr(S0[t + 1])) for t in range(T)],
                        bh=addr(ws.fast.bias_h) if self.use_bias else None)   # row 0 (all rows are equal)
        else:
            ws.time_buffer("RH", (U,))       # r * h_{t-1} (as it enters the candidate GEMM)

    def _step_weight(self, ws):
        # reset_after=False splits the product around r * h_{t-1}: no single per-step product to pack
        if not self.reset_after:
            return None
        return ws.fast.recurrent_kernel if ws.fast is not None else self.params["recurrent_kernel"]

    def _step_out(self, ws, t):
        return ws.Q[t]

    def _dh_source(self, ws, t):
        return ws.Q[t]

    def _projection_weights(self, ws):
        fast = ws.fast
        if fast is None:
            return super()._projection_weights(ws)
        np.multiply(self.params["kernel"], fast.half, out=fast.kernel)
        np.multiply(self.params["recurrent_kernel"], fast.half, out=fast.recurrent_kernel)
        if not self.use_bias:
            return fast.kernel, None
        bias = self.params["bias"]
        np.multiply(bias[0], fast.half, out=fast.bias_x)
        np.multiply(bias[1], fast.half, out=fast.bias_h)
        return fast.kernel, fast.bias_x

    def _native_ready(self, ws):
        # inference, reset_after=True, sigmoid/tanh (ws.fast), float32: the whole loop in C
        # (rnnlab/_native/_cells.c). It takes the raw weights (it halves the z, r sums itself, exactly) and fills
        # the same buffers as the NumPy fast loop (A: z, r, hh; Q: q with halved z, r columns; S), agreeing to
        # ~1e-6 relative, not bit for bit.
        return ws.fast is not None and self._native_float32()

    def _native_loop(self, ws):
        m, rk, b, scratch = self._native_inputs(ws)
        if _native.gru_infer(ws.A, rk, ws.S[0], ws.Q, m, bias=b, scratch=scratch) > 0:
            return True
        # (not reached with the workspace's arrays) the NumPy fast loop: its halved weights, b_x into A
        fast = ws.fast
        if b is not None:
            ws.A += b[0]
            np.multiply(b[1], fast.half, out=fast.bias_h)
        ws.A *= fast.half
        np.multiply(self.params["recurrent_kernel"], fast.half, out=fast.recurrent_kernel)
        return False

    def _has_fused_backward(self, ws):
        return self._has_fused_forward(ws)

    def _fused_backward(self, ws, g_out):
        # the BPTT loop in C (_cells.c: the gate kernel of _step_backward_fast, dA over A[t], dQ over Q[t], the
        # packed dQ W_h^T added to the direct part), by blocks of rows; dL/dh_0 comes back in ws.carry[0]
        # with a mask, its masked variant (the Python loop's masked steps, ws.dnew[0] their scratch)
        if (not self._has_fused_forward(ws) or ws.pkb is None
                or _native.fused_bwd_loop_kernel("gru", masked=ws.m is not None) is None):
            return False
        U, W = self.units, 3 * self.units
        return self._compiled_backward_loop(ws, "gru", [(addr(ws.A), W), (addr(ws.S[0]), U), (addr(ws.Q), W)],
                                            [(addr(ws.carry[0]), U), (addr(ws.dprev[0]), U), (addr(ws.tmpU), U)],
                                            g_out, dnew=[(addr(ws.dnew[0]), U)])

    # ---------------------------------------------------------------- forward
    def _fused_forward(self, ws):
        # the whole packed-path loop in C (recurrent.py), by blocks of rows: W_h packed pre-scaled in ws.pk,
        # HR = H[:T]; the per-step product goes to Q[t] (no scratch)
        if not self._has_fused_forward(ws):
            return False
        cp, S0, B, U = ws.fast.cptr, ws.S[0], ws.B, self.units
        W, hr_t, ldhr = 3 * U, ws.HR.strides[0] // 4, ws.HR.strides[1] // 4
        wp, h, a, q = addr(ws.pk.pm.buf), addr(S0), addr(ws.A), addr(ws.Q)
        m = None if ws.m is None else addr(ws.m)
        fn = _native.fused_loop_kernel("gru")

        def run(block):
            b0, b1 = block
            return fn(wp, h + 4 * b0 * ldhr, hr_t, ldhr, a + 4 * b0 * W, q + 4 * b0 * W, cp.bias, cp.bh,
                      h + 4 * b0 * U, None if m is None else m + b0, ws.T, b1 - b0, B, U, cp.isa)

        uses = _native.run_blocks(run, self._fused_rows(ws))
        if not all(uses):
            return False
        cp.fwd_isa = uses[0]
        return True

    def _step_forward(self, t, ws):
        fast = ws.fast
        if fast is not None:
            hr, zr, z, r, hh, hp, h_new, q, q_zr, q_h = fast.fwd[t]
            if ws.pk is not None:
                ws.pk.step[t]()          # the same product with W_h packed once (recurrent.py)
            else:
                np.matmul(hr, fast.recurrent_kernel, out=q)
            cp = fast.cptr
            if cp is not None and _native.loaded():
                # the rest of the step in one C call: same buffers, same values up to the tanh approximation
                pa, pq, pho, phn = cp.fwd[t]
                cp.fwd_isa = cp.kernels[0](pa, pq, cp.bias, cp.bh, pho, phn, ws.B,
                                                                   self.units, cp.isa)
                return
            if fast.bias_h is not None:
                q += fast.bias_h
            zr += q_zr
            np.tanh(zr, out=zr)  # sigmoid from the halved pre-activation
            zr *= 0.5
            zr += 0.5
            np.multiply(r, q_h, out=ws.tmpU)
            hh += ws.tmpU
            np.tanh(hh, out=hh)
            np.subtract(hp, hh, out=h_new)   # h_t = hh + z * (h_{t-1} - hh)
            h_new *= z
            h_new += hh
            return
        U = self.units
        a, hp = ws.A[t], ws.S[0][t]
        Wh = self.params["recurrent_kernel"]
        ract, act = self.recurrent_activation, self.activation
        if self.reset_after:
            q = ws.Q[t]
            if ws.pk is not None:
                ws.pk.step[t]()
            else:
                np.matmul(ws.HR[t], Wh, out=q)
            if self.use_bias:
                q += self.params["bias"][1]
            a[:, :2 * U] += q[:, :2 * U]
            act_forward_(ract, a[:, :2 * U])
            np.multiply(a[:, U:2 * U], q[:, 2 * U:], out=ws.tmpU)
        else:
            tmp2 = ws.tmpW[:, :2 * U]
            np.matmul(ws.HR[t], Wh[:, :2 * U], out=tmp2)
            a[:, :2 * U] += tmp2
            act_forward_(ract, a[:, :2 * U])
            np.multiply(a[:, U:2 * U], ws.HR[t], out=ws.RH[t])
            np.matmul(ws.RH[t], Wh[:, 2 * U:], out=ws.tmpU)
        hh = a[:, 2 * U:]
        hh += ws.tmpU
        act_forward_(act, hh)
        # h_t = hh + z * (h_{t-1} - hh)
        h_new = ws.S[0][t + 1]
        np.subtract(hp, hh, out=h_new)
        h_new *= a[:, :U]
        h_new += hh

    # --------------------------------------------------------------- backward
    def _step_backward(self, t, ws, dnew, dprev):
        fast = ws.fast
        if fast is not None:
            self._step_backward_fast(t, ws, dnew, dprev)
            return
        U = self.units
        dh = dnew[0]
        a, da, hp = ws.A[t], ws.dA_t, ws.S[0][t]
        z, r, hh = a[:, :U], a[:, U:2 * U], a[:, 2 * U:]
        tmp = ws.tmpW
        ract = self.recurrent_activation
        dz, dr, dAh = da[:, :U], da[:, U:2 * U], da[:, 2 * U:]
        np.subtract(hp, hh, out=dz)
        dz *= dh
        np.multiply(dh, z, out=dprev[0])     # direct path h_{t-1} -> h_t
        np.subtract(dh, dprev[0], out=dAh)   # dh * (1 - z)
        act_backward_(self.activation, hh, dAh, tmp[:, :U])
        g = ws.tmpU
        if self.reset_after:
            q, dq = ws.Q[t], ws.dQ_t
            np.multiply(dAh, q[:, 2 * U:], out=dr)
            act_backward_(ract, a[:, :2 * U], da[:, :2 * U], tmp[:, :2 * U])
            np.copyto(dq[:, :2 * U], da[:, :2 * U])
            np.multiply(dAh, r, out=dq[:, 2 * U:])
            np.copyto(q, dq)  # Q[t] is not read again: it now holds dQ[t] (for dW_h and db_h)
            self._dh_product(ws, t, q, g)
        else:
            drh = ws.tmpU2
            np.matmul(dAh, ws.WhT[2 * U:], out=drh)
            np.multiply(drh, ws.HR[t], out=dr)
            act_backward_(ract, a[:, :2 * U], da[:, :2 * U], tmp[:, :2 * U])
            np.matmul(da[:, :2 * U], ws.WhT[:2 * U], out=g)
            drh *= r
            g += drh
        self._rec_grad_to_h(ws, g)
        dprev[0] += g

    def _step_backward_fast(self, t, ws, dnew, dprev):
        """reset_after=True with sigmoid/tanh, on the precomputed views, activation derivatives inline."""
        fast, g, u, u2, dq = ws.fast, ws.tmpU, ws.fast.u, ws.fast.u2, ws.dQ_t
        hr, zr, z, r, hh, hp, h_new, q, q_zr, q_h = fast.fwd[t]
        dzr, dz, dr, dAh = fast.dgates
        dq_zr, dq_h = fast.dq
        dh = dnew[0]
        cp = fast.cptr
        if cp is not None and _native.loaded():
            pdh, pdp = cp.grads.get(id(dh)), cp.grads.get(id(dprev[0]))
            if pdh is not None and pdp is not None:
                # the elementwise part in one C call, bit-identical to the NumPy lines below; it writes dq
                # straight into Q[t] (which then holds dQ[t], as below)
                pa, pq, pho, _ = cp.fwd[t]
                cp.bwd_isa = cp.kernels[1](pdh, pa, pho, pq, cp.da, pdp, ws.B,
                                                                   self.units, cp.isa)
                self._dh_product(ws, t, q, g)
                if ws.rec_mask is not None:
                    g *= ws.rec_mask
                dprev[0] += g
                return
        np.subtract(hp, hh, out=dz)
        dz *= dh
        np.multiply(dh, z, out=dprev[0])     # direct path h_{t-1} -> h_t
        np.subtract(dh, dprev[0], out=dAh)   # dh * (1 - z)
        np.multiply(hh, hh, out=u)           # tanh' = 1 - hh^2
        np.subtract(1.0, u, out=u)
        dAh *= u
        np.multiply(dAh, q_h, out=dr)
        np.subtract(1.0, zr, out=u2)         # sigmoid' = (1 - y) y on z and r
        u2 *= zr
        dzr *= u2
        np.copyto(dq_zr, dzr)
        np.multiply(dAh, r, out=dq_h)
        np.copyto(q, dq)  # Q[t] is not read again: it now holds dQ[t] (for dW_h and db_h)
        self._dh_product(ws, t, q, g)
        if ws.rec_mask is not None:
            g *= ws.rec_mask
        dprev[0] += g

    def _weight_grads(self, ws):
        T, B, U = ws.T, ws.B, self.units
        dA2 = ws.dA.reshape(T * B, -1)
        HR2 = ws.HR.reshape(T * B, U)
        pairs = []
        self._input_kernel_grad(ws, dA2, pairs)
        if pairs:
            self._grad_products(ws, dA2, pairs)
        dWh = self.grads["recurrent_kernel"]
        if self.reset_after:
            dQ2 = ws.Q.reshape(T * B, -1)  # holds dQ after the loop
            self._grad_products(ws, dQ2, [(HR2, dWh)])
            if self.use_bias:
                np.sum(dA2, axis=0, out=self.grads["bias"][0])
                np.sum(dQ2, axis=0, out=self.grads["bias"][1])
        else:
            dWh[:, :2 * U] = HR2.T @ dA2[:, :2 * U]
            dWh[:, 2 * U:] = ws.RH.reshape(T * B, U).T @ dA2[:, 2 * U:]
            if self.use_bias:
                np.sum(dA2, axis=0, out=self.grads["bias"])


@register
class GRU(GRUSteps, FusedRNN):
    """Gated recurrent unit layer (Keras ``GRU``; Cho et al. 2014).

    Shapes: input (B, T, D) -> output (B, U), or (B, T, U) with ``return_sequences``;
    weights ``kernel`` (D, 3U), ``recurrent_kernel`` (U, 3U), ``bias`` (2, 3U) when
    ``reset_after=True`` (default) else (3U,); gates z, r, h. ``return_state=True`` returns
    ``[output, h]``. ``reset_after=True`` matches PyTorch ``nn.GRU`` (see :mod:`rnnlab.interop`).
    It is ``RNN`` over its cell (``layer.cell``, a GRUCell sharing these weights; ``RNN(GRUCell(n))`` computes
    the same bits). ``backend="auto"|"numpy"|"native"`` chooses rnnlab's path (saved in the config;
    ``last_path`` records the loop that ran, see docs/cells.md). ``implementation`` (1 or 2) keeps its Keras
    meaning, two ways of computing the same function: both accepted, same result, saved. ``use_cudnn`` is
    accepted for Keras compatibility and has no effect (rnnlab runs on the CPU).

    Dropout differs from Keras 3: rnnlab draws one input mask (B, D) and one recurrent mask (B, U)
    per call, shared by all three gates. Keras draws one recurrent mask per gate, and with
    ``recurrent_dropout > 0`` (which switches it to ``implementation=1``) one input mask per gate
    too. With ``recurrent_dropout == 0`` the input dropout is the same as Keras'.
    """

    _cell_class = GRUCell
    _workspace_class = GRUWorkspace

    _extra_kwargs = FusedRNN._extra_kwargs | {"implementation", "use_cudnn"}

    _n_gates = 3
    _state_names = ("h",)

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", dropout=0.0, recurrent_dropout=0.0, return_sequences=False,
                 return_state=False, go_backwards=False, stateful=False, reset_after=True, **kwargs):
        super().__init__(units, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
                         recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
                         dropout=dropout, recurrent_dropout=recurrent_dropout, return_sequences=return_sequences,
                         return_state=return_state, go_backwards=go_backwards, stateful=stateful, **kwargs)
        self.recurrent_activation = _act.get(recurrent_activation)
        self.reset_after = bool(reset_after)

    def build(self, input_shape):
        input_shape = self._check_build_shape(input_shape)
        U = self.units
        self.add_weight("kernel", (input_shape[-1], 3 * U), self.kernel_initializer)
        self.add_weight("recurrent_kernel", (U, 3 * U), self.recurrent_initializer)
        if self.use_bias:
            self.add_weight("bias", (2, 3 * U) if self.reset_after else (3 * U,), self.bias_initializer)
        super().build(input_shape)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(recurrent_activation=_act.serialize(self.recurrent_activation), reset_after=self.reset_after)
        return cfg
