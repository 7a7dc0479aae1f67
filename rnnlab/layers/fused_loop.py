"""FusedRNN: the optimised time loop of SimpleRNN, LSTM and GRU (forward, full BPTT, masking, states).

The readable, general loop over any cell is :class:`rnnlab.layers.recurrent.RNN`; this module is its
optional fast path for the three built-in cells: the same function computed on preallocated time-major
buffers, with packed GEMMs and compiled kernels where they exist. A concrete layer (``simple_rnn.py``,
``lstm.py``, ``gru.py``) supplies the per-step hooks below; everything about *time* lives here.

Notation: B batch, T time steps, D input features, U units, k gates (1 SimpleRNN, 4 LSTM,
3 GRU), W = kU the width of the gate axis. Internally everything is **time-major**
(contiguous ``(T, B, .)`` buffers, so one step is a contiguous ``(B, .)`` block).

Forward, for a layer called on x (B, T, D) with an optional boolean mask m (B, T):

1. ``X = x`` transposed to (T, B, D) (time-reversed for ``go_backwards``), times the input
   dropout mask when training.
2. ``A = X W_x + b_x``: the input projection of *all* steps as one GEMM (T*B, D) @ (D, W).
3. For t = 0..T-1 the cell step turns ``A[t]`` and the states ``S[t]`` into ``S[t+1]``
   (one (B, U) @ (U, W) GEMM plus in-place gate math, leaving the gate activations in ``A[t]``).
   Masking (Keras semantics): where ``m[:, t]`` is False the states are carried over,
   ``S[t+1] = S[t]``.
4. Outputs: the output at step t is ``Y[t] = H[t+1] * f[t]`` where, with a mask, ``f`` is
   "some real step seen so far" (Keras repeats the previous output, starting from zeros) or
   ``m`` itself with ``zero_output_for_mask=True``; without a mask ``f = 1``.
   ``return_sequences`` gives Y (B, T, U) (in processing order, i.e. reversed for
   ``go_backwards``, as Keras), else ``Y[T-1]`` (B, U). ``return_state`` appends the final states.

Backward (full BPTT), with G[s] the gradient w.r.t. ``S[s][t+1]`` carried back in time:

* ``G[h] += dY[t] * f[t]``; the masked part ``G * (1 - m)`` passes straight to ``S[t]``; the
  real part ``G * m`` goes through the cell's step backward, which writes the gate
  pre-activation gradients ``dA[t]`` and returns dL/dS[t] (one (B, W) @ (W, U) GEMM).
  Memory: step t's backward is the last reader of ``A[t]``, so ``dA[t]`` (computed in a (B, W)
  scratch) is stored over ``A[t]``: after the loop the buffer A holds dA, and no second (T, B, W)
  buffer is needed.
* After the loop: ``dW_x = X^T dA``, ``dW_h = H_prev^T dA_rec``, ``db = sum dA`` as single GEMMs /
  reductions over all steps, and ``dx = dA W_x^T`` (one GEMM, written over X, which is no longer
  needed), transposed back to (B, T, D).

Optional compiled and packed paths (float32, rnnlab._native built): :mod:`rnnlab.layers.fused_native`.
``backend="numpy"`` turns them all off; ``layer.last_path`` records which loop ran (``PATHS``).

Dropout (training only): an input mask (B, D) and a recurrent mask (B, U) are drawn once per
call from :func:`rnnlab.backend.rng` (kept with probability 1 - rate, scaled by 1 / (1 - rate)),
reused at every step of that call and drawn afresh on the next training call. The input mask
multiplies x before the input GEMM; the recurrent mask multiplies h_{t-1} only where it enters
the recurrent GEMM (``HR[t] = H[t] * mask``), never the carried state. Each mask is shared by
*all* gates, so both products stay one GEMM.

Deviation from Keras 3 (LSTM and GRU only; SimpleRNN has one gate and matches): Keras draws
one recurrent mask per gate (4 for LSTM, 3 for GRU), and ``recurrent_dropout > 0`` also switches
its cell to ``implementation=1``, which draws one *input* mask per gate as well. rnnlab keeps one
input and one recurrent mask for all gates, so with ``recurrent_dropout > 0`` the gates see the
same dropped units (each gate's marginal keep rate and scaling are the same as in Keras, the
correlation between gates is not). With ``recurrent_dropout == 0`` the single input mask is what
Keras does too (its default ``implementation=2``). Random draws never match Keras' bit for bit.
"""
from __future__ import annotations

import numpy as np

from .. import activations as _act
from .. import _native, backend, initializers
from .base import Layer, _snake, format_shape
from .cells import check_implementation, set_cell_arguments
from .fused_native import NATIVE_MAX_BATCH, NativePaths, addr  # noqa: F401
from .fused_workspace import Workspace, WorkspaceOwner  # noqa: F401
from .recurrent import RNN, act_backward_, act_forward_, as_float_input, validate_mask  # noqa: F401


#: The values of ``layer.last_path``, the loop the last forward call ran (fastest first):
#: "native_loop" the compiled inference loop (batch <= NATIVE_MAX_BATCH, or any batch with backend="native");
#: "fused_loop" the packed-path time loop in one compiled call; "native_steps" the NumPy loop with each step's
#: gate math in C; "packed" the NumPy loop with packed per-step products; "numpy" NumPy only.
PATHS = ("native_loop", "fused_loop", "native_steps", "packed", "numpy")


def check_backend(cls_name, value):
    """rnnlab's choice of path: "auto" (the fastest available), "numpy" (no compiled code), "native" (compiled
    code wherever it exists, an error when the kernel is not built)."""
    if value not in ("auto", "numpy", "native"):
        raise ValueError(f"{cls_name}: backend must be 'auto', 'numpy' or 'native', got {value!r}")
    return value


class FusedRNN(NativePaths, WorkspaceOwner, RNN):
    """Base class of SimpleRNN, LSTM and GRU: the optimised time loop (see the module docstring).

    Subclasses define ``_n_gates`` (k), ``_state_names`` (``("h",)`` or ``("h", "c")``),
    ``build`` (weights with Keras names and shapes) and the cell hooks:

    * ``_input_bias()``: the bias added to the input projection (or None),
    * ``_projection_weights(ws)``: ``(kernel, bias)`` of the input projection, by default
      ``(params["kernel"], _input_bias())`` (LSTM's fast path uses pre-scaled copies),
    * ``_workspace_class`` (a :class:`~rnnlab.layers.fused_workspace.Workspace` subclass declaring the cell's own
      fields) and ``_alloc_cell(ws)``: the cell's buffers and per-step views on the workspace ``ws``,
    * ``_step_forward(t, ws)``: read ``ws.A[t]`` (input projection), ``ws.S[s][t]`` and
      ``ws.HR[t]`` (h_{t-1} as it enters the recurrent GEMM); write ``ws.S[s][t+1]``,
    * ``_step_backward(t, ws, dnew, dprev)``: given dL/dS[s][t+1] in ``dnew`` write dA[t] into the
      scratch ``ws.dA_t`` (B, W) (the loop then stores it over ``ws.A[t]``; after the loop
      ``ws.dA is ws.A``), the cell's own gradient buffers, and dL/dS[s][t] into ``dprev`` (overwrite),
    * ``_weight_grads(ws)``: fill ``self.grads`` after the loop (``_grad_products`` does its
      ``lhs^T dA`` GEMMs),
    * for the packed products (see the module docstring): ``_step_weight(ws)`` (the matrix of the
      per-step forward product, or None for none), ``_step_out(ws, t)`` (where it goes) and
      ``_dh_source(ws, t)`` (the (B, W) gradient the backward multiplies by W_h^T); a step calls
      ``ws.pk.step[t]()`` instead of its forward matmul when ``ws.pk`` is set, and
      ``_dh_product(ws, t, a, out)`` for ``out = a W_h^T``.
    """

    _n_gates = 1
    _state_names: tuple = ("h",)
    _extra_kwargs = frozenset({"zero_output_for_mask", "unroll", "backend", "seed"})
    _float_input = False  # integer ids into an RNN are a mistake (missing Embedding): reject them
    #: diagnostics hook (rnnlab.diagnostics): when True, backward keeps ``self.state_grads``, one
    #: (T, B, U) array per state with dL/dS[t+1] (the gradient w.r.t. the state after processing
    #: step t, output and recurrent paths summed), in processing order. Off: one check per step.
    _record_state_grads = False

    def __init__(self, units, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", dropout=0.0,
                 recurrent_dropout=0.0, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, **kwargs):
        self.zero_output_for_mask = bool(kwargs.pop("zero_output_for_mask", False))
        #: accepted for Keras compatibility; the NumPy loop gives identical results either way
        self.unroll = bool(kwargs.pop("unroll", False))
        self.backend = check_backend(type(self).__name__, kwargs.pop("backend", "auto"))
        if "implementation" in self._extra_kwargs:  # LSTM, GRU: Keras' two ways of computing the same function
            self.implementation = check_implementation(type(self).__name__, kwargs.pop("implementation", 2))
            #: Keras argument (its cuDNN kernel); no effect in rnnlab, which runs on the CPU
            self.use_cudnn = kwargs.pop("use_cudnn", "auto")
        #: Keras's ``seed``: the layer draws its dropout masks from its own generator seeded with it
        #: (else from rnnlab.backend.rng(), which rnnlab.set_random_seed fixes)
        self.seed = kwargs.pop("seed", None)
        self._gen = backend.seeded_rng(type(self).__name__, self.seed)
        #: which loop ran the last forward call (see PATHS)
        self.last_path = None
        Layer.__init__(self, **kwargs)
        set_cell_arguments(self, units, activation, use_bias, kernel_initializer, recurrent_initializer,
                           bias_initializer, dropout, recurrent_dropout)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.states = None  # stateful: list of (B, U) arrays carried between calls
        self._ws = None

    # (the layer is its own cell: Layer's build/from_config, not RNN's, which build/deserialize a cell)
    def build(self, input_shape):
        Layer.build(self, input_shape)
        cell = self.__dict__.get("_cell")
        if cell is not None:   # made before the build (Keras: the cell exists from construction): it has the weights now
            cell.built, cell.input_shape = True, (None, self.params["kernel"].shape[0])

    def _build_from_cell(self, input_shape):
        """The build of a cell made before its layer was built: building the cell (a one-step call) builds the
        layer, which holds the one weight set (as in Keras, where the layer's weights are its cell's)."""
        self._maybe_build((None, None, self.cell._input_dim(input_shape)))

    from_config = classmethod(Layer.from_config.__func__)
    states = None  # a plain attribute here (RNN's is a property over its cell loop's)
    #: the cell class of this layer (LSTMCell for LSTM, ...), see :attr:`cell`
    _cell_class = None
    _CELL_ARGS = ("units", "activation", "recurrent_activation", "use_bias", "kernel_initializer",
                  "recurrent_initializer", "bias_initializer", "unit_forget_bias", "dropout", "recurrent_dropout",
                  "reset_after", "implementation", "dtype", "seed", "kernel_regularizer", "recurrent_regularizer",
                  "bias_regularizer", "kernel_constraint", "recurrent_constraint", "bias_constraint")

    @property
    def cell(self):
        """The layer's cell (``LSTMCell`` for an LSTM, ...; named ``"lstm_cell"``, ... as in Keras) with the same
        arguments, sharing this layer's weight arrays: ``out, states = layer.cell(x_t, states)`` runs one step
        (step-by-step decoding) and equals one step of the layer. As in Keras it exists before the layer is
        built (unbuilt, no weights, its arguments readable); building the layer builds that same cell object,
        and a one-step call of the unbuilt cell builds the layer."""
        cell = self.__dict__.get("_cell")
        if cell is None:
            cfg = self.get_config()
            cls = self._cell_class
            cell = cls(**{k: cfg[k] for k in self._CELL_ARGS if k in cfg}, name=_snake(cls.__name__))
            cell.params, cell.grads = self.params, self.grads
            self.__dict__["_cell"] = cell
            if self.built:
                cell.built, cell.input_shape = True, (None, self.params["kernel"].shape[0])
            else:
                cell.build = self._build_from_cell
        return cell

    # ------------------------------------------------------------------ shapes
    def _shape_from_dims(self, input_dim, input_length):
        # Keras 2 RNN convention: input_shape = (input_length, input_dim)
        if input_dim is None and input_length is None:
            return None
        return (None if input_length is None else int(input_length),
                None if input_dim is None else int(input_dim))

    @property
    def state_size(self):
        return [self.units] * len(self._state_names)

    def _check_build_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise ValueError(
                f"Input to layer '{self.name}' ({type(self).__name__}) is incompatible: expected "
                f"ndim=3 (batch, timesteps, features), found input shape {format_shape(input_shape)}")
        if input_shape[-1] is None:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): the feature dimension of the "
                             f"input must be known, got input shape {format_shape(input_shape)}")
        return input_shape

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        b = input_shape[0]
        out = (b, input_shape[1], self.units) if self.return_sequences else (b, self.units)
        if self.return_state:
            return [out] + [(b, self.units) for _ in self._state_names]
        return out

    def compute_mask(self, inputs, mask=None):
        out_mask = mask if self.return_sequences else None
        if self.return_state:
            return [out_mask] + [None] * len(self._state_names)
        return out_mask

    # ------------------------------------------------------------------ states
    def reset_states(self, states=None):
        """Stateful layers: zero the carried states (or set them to ``states``)."""
        if not self.stateful:
            raise AttributeError(f"Layer '{self.name}' is not stateful (stateful=False): nothing to reset")
        if states is None:
            if self.states is not None:
                for s in self.states:
                    s[...] = 0
            return
        batch = self.states[0].shape[0] if self.states is not None else self._fixed_batch()
        if batch is None:
            batch = np.shape(states if not isinstance(states, (list, tuple)) else states[0])[0]
        self.states = [s.copy() for s in self._validate_states(states, batch, "states")]

    reset_state = reset_states

    def states_after(self, steps):
        """Copies of the states after the first ``steps`` processed steps of the last forward call
        (``steps=0``: the initial states; ``steps=T``: the final ones). Used by truncated BPTT
        (:class:`rnnlab.training.TBPTT`) to restart the next, overlapping window."""
        ws = self._ws
        if ws is None or not 0 <= steps <= ws.T:
            raise ValueError(f"Layer '{self.name}': states_after(steps) needs 0 <= steps <= T of the last "
                             f"forward call (T={None if ws is None else ws.T}), got {steps!r}")
        return [S[steps].copy() for S in ws.S]

    def _fixed_batch(self):
        if self.batch_input_shape is not None:
            return self.batch_input_shape[0]
        # built inside a model with a known batch size (e.g. Input(shape, batch_size=B)): a stateful layer keeps it
        return self.input_shape[0] if self.input_shape is not None else None

    # -------------------------------------------------------------- validation
    def _validate_input(self, x):
        x = as_float_input(self, x)   # bool / 0-1 one-hot arrays are cast (Keras); other integers are ids
        self._check_ndim(x, 3, "(batch, timesteps, features)")
        self._check_last_dim(x, self.params["kernel"].shape[0])
        if x.shape[1] == 0:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): inputs need at least one "
                             f"timestep, got shape {x.shape}")
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        return x

    def _validate_states(self, states, B, arg="initial_state"):
        n = len(self._state_names)
        names = ", ".join(self._state_names)
        if isinstance(states, tuple):
            states = list(states)
        if not isinstance(states, list):
            if n == 1:
                states = [states]
            else:
                raise TypeError(f"Layer '{self.name}' ({type(self).__name__}): {arg} must be a list of {n} "
                                f"arrays [{names}], got {type(states).__name__}")
        if len(states) != n:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): {arg} expects {n} state(s) "
                             f"[{names}], got {len(states)}")
        out = []
        for i, s in enumerate(states):
            if hasattr(s, "detach") and hasattr(s, "numpy"):
                s = s.detach().cpu().numpy()
            if s is None or not hasattr(s, "shape"):
                raise TypeError(f"Layer '{self.name}' ({type(self).__name__}): {arg}[{i}] ({self._state_names[i]}) "
                                f"must be an array of shape ({B}, {self.units}), got {type(s).__name__}")
            s = np.asarray(s)
            if s.dtype.kind != "f":
                raise TypeError(f"Layer '{self.name}' ({type(self).__name__}): {arg}[{i}] ({self._state_names[i]}) "
                                f"must be floating point, got dtype {s.dtype}")
            if s.shape != (B, self.units):
                raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): {arg}[{i}] ({self._state_names[i]}) "
                                 f"must have shape (batch, units) = ({B}, {self.units}), got {s.shape}")
            out.append(s)
        return out

    def _input_bias(self):
        return self.params.get("bias") if self.use_bias else None

    def _projection_weights(self, ws):
        return self.params["kernel"], self._input_bias()

    def set_weights(self, weights):
        """Load Keras ``get_weights()`` arrays; weights of another recurrent type (say a Keras GRU's given to
        an LSTM, or a reset_after=False GRU's to a reset_after=True one) are reported as such."""
        try:
            super().set_weights(weights)
        except ValueError as e:
            hint = self._weights_kind_hint(weights)
            if hint:
                raise ValueError(f"{e}. {hint}") from None
            raise

    def _weights_kind_hint(self, weights, wrapper=""):
        """A sentence naming the recurrent type ``weights`` look like, when it is not this layer's type."""
        if not isinstance(weights, (list, tuple)) or len(weights) < 2:
            return None
        try:
            rec = np.shape(weights[1])
        except Exception:
            return None
        if len(rec) != 2 or rec[0] == 0 or rec[1] % rec[0]:
            return None
        kind = {1: "SimpleRNN", 3: "GRU", 4: "LSTM"}.get(rec[1] // rec[0])
        if kind is None:
            return None
        if kind == "GRU" and len(weights) > 2:
            kind += f" (reset_after={np.ndim(weights[2]) == 2})"
        own = type(self).__name__
        if own == "GRU":
            own += f" (reset_after={getattr(self, 'reset_after', True)})"
        if kind == own or (kind == "GRU" and own.startswith("GRU") and len(weights) <= 2):
            return None
        w = (lambda k: f"{wrapper}({k})") if wrapper else (lambda k: k)
        return (f"The given weights look like those of a {w(kind)} with {rec[0]} units "
                f"(recurrent_kernel {tuple(rec)}), but this layer is {w(own)} with {self.units} units")

    # ------------------------------------------------------------------ forward
    def forward(self, x, training=False, mask=None, initial_state=None):
        """Run the layer on x (B, T, D); see the module docstring for the exact semantics.

        Returns the output (B, U) or (B, T, U); with ``return_state`` the list
        ``[output, h]`` (SimpleRNN, GRU) or ``[output, h, c]`` (LSTM).
        """
        if not self.built:
            raise RuntimeError(f"Layer '{self.name}' is not built: call it on data (layer(x)) or build() first")
        x_in = x
        x = self._validate_input(x)
        B, T, D = x.shape
        mask = validate_mask(self, mask, B, T)
        given_state = initial_state is not None
        if self.stateful:
            fixed = self._fixed_batch()
            if self.states is not None:
                fixed = self.states[0].shape[0]
            if fixed is not None and B != fixed:
                raise ValueError(
                    f"Layer '{self.name}' ({type(self).__name__}) is stateful and was set up for batch size "
                    f"{fixed}, got a batch of {B}: stateful RNNs need the same batch size on every call "
                    "(reset_states() does not change it; build a new layer for another batch size)")
        if given_state:
            init = self._validate_states(initial_state, B)
        elif self.stateful and self.states is not None:
            init = self.states
        else:
            init = None

        rec_drop = bool(training) and self.recurrent_dropout > 0.0
        ws = self._workspace(T, B, D, rec_drop)
        dt, U = self.dtype, self.units

        # (decided first: the native loop may want other projection weights)
        ws.native = False
        small = B <= NATIVE_MAX_BATCH or self.backend == "native"
        ws.native_ok = (not training and not rec_drop and small) and self._native_ready(ws)
        # (the compiled loops take the raw kernel and add the bias, and any gate scaling, themselves)
        kernel, b_in = (self.params["kernel"], None) if ws.native_ok else self._projection_weights(ws)
        ws.in_mask = ws.rec_mask = None
        ws.table_rows = None
        # inference on an Embedding's output: steps 1-2 as rows of a cached table (fused_native), when it pays
        if training or not self._table_projection(ws, x_in, kernel):
            # 1. time-major (and reversed) input, input dropout; one-hot rows (unless input dropout scales them):
            # their ids only, the projection is then a row lookup and X itself is not needed (_onehot_ids)
            ws.onehot = None if (training and self.dropout > 0.0) else self._onehot_ids(x, kernel)
            if ws.onehot is None:
                xt = x.transpose(1, 0, 2)
                if self.go_backwards:
                    xt = xt[::-1]
                np.copyto(ws.X, xt)
            rng = self._gen if self._gen is not None else backend.rng()
            if training and self.dropout > 0.0:
                keep = 1.0 - self.dropout
                ws.in_mask = ((rng.random((B, D)) < keep) / keep).astype(dt)
                ws.X *= ws.in_mask
            if rec_drop:
                keep = 1.0 - self.recurrent_dropout
                ws.rec_mask = ((rng.random((B, U)) < keep) / keep).astype(dt)

            # 2. input projection of all steps: one GEMM (a row lookup when every input row is one-hot)
            if ws.onehot is not None:
                if kernel.dtype == np.float32 and kernel.flags.c_contiguous and self._takes_table_rows(ws):
                    # (W_x is the table: the fused loop copies each step's rows itself, see _table_projection)
                    ws.table_rows = (kernel, ws.onehot.reshape(T, B))    # (contiguous int64: _onehot_ids)
                else:
                    np.take(kernel, ws.onehot, axis=0, out=ws.A.reshape(T * B, -1), mode="clip")
            elif not self._packed_projection(ws, kernel):
                np.matmul(ws.X.reshape(T * B, D), kernel, out=ws.A.reshape(T * B, -1))
        else:
            ws.onehot = None
        if not self._steps_add_bias(ws, b_in) and b_in is not None:
            self._gather_table_rows(ws)   # (rows the loop would have copied from the table: needed now)
            ws.A += b_in                  # (else the compiled steps add it: one pass over A less)
        ws.pk = None if ws.native_ok else self._packed_forward(ws)

        # 3. the time loop
        for s, S in enumerate(ws.S):
            if init is None:
                S[0] = 0
            else:
                S[0] = init[s]
        if mask is not None:
            mt = mask.T
            if self.go_backwards:
                mt = mt[::-1]
            ws.m = np.ascontiguousarray(mt)[:, :, None]              # (T, B, 1) bool
            ws.notm = ~ws.m
            ws.mf = ws.m.astype(dt)
            ws.notmf = ws.notm.astype(dt)
            ws.partial = ws.notm.reshape(T, B).any(axis=1)          # steps with some masked row
            if self.zero_output_for_mask:
                ws.fac = ws.mf
            else:
                ws.fac = np.logical_or.accumulate(ws.m, axis=0).astype(dt)
        else:
            ws.m = None
        rec_mask = ws.rec_mask
        if ws.native_ok:
            ws.native = self._native_loop(ws)
        fused = not ws.native and rec_mask is None and ws.pk is not None and self._fused_forward(ws)
        if not fused:
            self._gather_table_rows(ws)   # (rows the fused loop would have copied from the table: the loops read A)
        ws.table_rows = None
        if not ws.native and not fused:
            step = self._step_forward
            for t in range(T):
                if rec_mask is not None:
                    np.multiply(ws.S[0][t], rec_mask, out=ws.HR[t])
                step(t, ws)
                if ws.m is not None and ws.partial[t]:
                    for S in ws.S:
                        np.copyto(S[t + 1], S[t], where=ws.notm[t])

        cp = ws.fast.cptr if ws.fast is not None else None
        self.last_path = ("native_loop" if ws.native else "fused_loop" if fused else
                          "native_steps" if cp is not None else "packed" if ws.pk is not None else "numpy")

        # 4. outputs
        H = ws.S[0]
        if self.return_sequences:
            out = np.empty((B, T, U), dt)
            if ws.m is None:
                np.copyto(out, H[1:].transpose(1, 0, 2))
            else:
                np.multiply(H[1:].transpose(1, 0, 2), ws.fac.transpose(1, 0, 2), out=out)
        else:
            out = H[T].copy()
            if ws.m is not None:
                out *= ws.fac[T - 1]
        finals = [S[T].copy() for S in ws.S]
        if self.stateful:
            self.states = [f.copy() for f in finals]
        self._cache = (ws, given_state)
        ws.pending = bool(training)   # (self-contained cache: no later forward reuses ws before this backward)
        if self.return_state:
            return [out] + finals
        return out

    # ----------------------------------------------------------------- backward
    def _split_grad(self, grad, B, T):
        n = len(self._state_names)
        U = self.units
        out_shape = (B, T, U) if self.return_sequences else (B, U)
        if self.return_state:
            if not isinstance(grad, (list, tuple)) or len(grad) != 1 + n:
                raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) returned {1 + n} outputs "
                                 f"(return_state=True): backward expects a list of {1 + n} gradients "
                                 f"[output, {', '.join(self._state_names)}] (None = zero), got "
                                 f"{type(grad).__name__}{'' if not isinstance(grad, (list, tuple)) else ' of ' + str(len(grad))}")
            g_out, g_states = grad[0], list(grad[1:])
        else:
            if isinstance(grad, (list, tuple)):
                raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) returned one output: backward "
                                 f"expects one gradient array of shape {out_shape}, got a list of {len(grad)}")
            g_out, g_states = grad, [None] * n
        shapes = [out_shape] + [(B, U)] * n
        names = ["output"] + list(self._state_names)
        checked = []
        for g, shp, nm in zip([g_out] + g_states, shapes, names):
            if g is None:
                checked.append(None)
                continue
            g = np.asarray(g)
            if g.shape != shp:
                raise ValueError(f"Layer '{self.name}' ({type(self).__name__}): gradient for {nm} must have "
                                 f"shape {shp}, got {g.shape}")
            checked.append(g.astype(self.dtype, copy=False))
        return checked[0], checked[1:]

    def backward(self, grad):
        """Full BPTT. Returns dx (B, T, D), or ``[dx, dh0(, dc0)]`` when ``initial_state`` was given;
        ``None`` when ``input_grad_needed`` is False and no initial state was given."""
        ws, given_state = self._need_cache()
        ws.pending = False
        T, B, D = ws.T, ws.B, ws.D
        g_out, g_states = self._split_grad(grad, B, T)
        carry, dnew, dprev = ws.carry, ws.dnew, ws.dprev
        for s, c in enumerate(carry):
            if g_states[s] is None:
                c[...] = 0
            else:
                np.copyto(c, g_states[s])
        masked = ws.m is not None
        seq = self.return_sequences
        if g_out is not None and not seq:
            if masked:
                carry[0] += g_out * ws.fac[T - 1]
            else:
                carry[0] += g_out
        gT = g_out.transpose(1, 0, 2) if (seq and g_out is not None) else None
        tmp = ws.tmpU2
        # W_h^T packed (or else as a contiguous copy), once per call, for the per-step dL/dh_{t-1} = dA W_h^T
        rk = self.params["recurrent_kernel"]
        ws.pkb = self._packed_backward(ws)
        if ws.pkb is None:
            if ws.WhT is None or ws.WhT.shape != rk.T.shape:
                ws.WhT = np.empty(rk.T.shape, self.dtype)
            np.copyto(ws.WhT, rk.T)
        step = self._step_backward
        rec = [np.empty((T, B, self.units), self.dtype) for _ in carry] if self._record_state_grads else None
        # the whole loop in one compiled call (LSTM, GRU; packed path, masked or not; no recurrent dropout / recording)
        fused = (rec is None and ws.rec_mask is None and ws.pkb is not None
                 and self._fused_backward(ws, g_out if seq else None))
        for t in range(T - 1, -1, -1) if not fused else ():
            if gT is not None:
                if masked:
                    np.multiply(gT[t], ws.fac[t], out=tmp)
                    carry[0] += tmp
                else:
                    carry[0] += gT[t]
            if rec is not None:
                for s in range(len(carry)):
                    rec[s][t] = carry[s]
            if masked and ws.partial[t]:
                for s in range(len(carry)):
                    np.multiply(carry[s], ws.mf[t], out=dnew[s])
                    carry[s] *= ws.notmf[t]
                step(t, ws, dnew, dprev)
                for s in range(len(carry)):
                    carry[s] += dprev[s]
            else:
                step(t, ws, carry, dprev)
                carry, dprev = dprev, carry
            np.copyto(ws.A[t], ws.dA_t)  # A[t] is not read again: it now holds dA[t]
        ws.carry, ws.dprev = carry, dprev
        ws.dA = ws.A
        self.last_backward_path = "fused_loop" if fused else "steps"
        if rec is not None:
            self.state_grads = rec

        self._weight_grads(ws)
        if not (self.input_grad_needed or given_state):
            return None  # the input is data: skip the (T*B, kU) @ (kU, D) GEMM
        # X is not needed after the weight gradients: dX goes into its buffer
        dX = self._input_grad_product(ws, ws.dA.reshape(T * B, -1), ws.X.reshape(T * B, D)).reshape(T, B, D)
        if ws.in_mask is not None:
            dX *= ws.in_mask
        if self.go_backwards:
            dX = dX[::-1]
        dx = np.ascontiguousarray(dX.transpose(1, 0, 2))
        if given_state:
            return [dx] + [c.copy() for c in carry]
        return dx

    #: Whether one-hot inputs take the row lookup (:meth:`_onehot_ids`); False: always the GEMM
    ONEHOT_ROWS = True

    def _onehot_ids(self, x, kernel):
        """The time-major ids (T*B,) of the input rows (reversed for ``go_backwards``, as ``ws.X``) when every row of
        x (B, T, D) is one-hot, exactly one 1 and zeros elsewhere (a character model's one-hot characters; Keras's
        bool arrays), and W_x is finite; else None. Then ``X W_x`` is a row lookup, ``A[r] = W_x[id_r]`` (one-hot . W,
        the material's Embedding identity): ``1 * w + sum of 0 * w_k`` is w exactly, so the rows equal the GEMM's (a
        -0.0 in W_x stays -0.0 where the GEMM gives +0.0; an inf or NaN in W_x would make the GEMM's zeros NaN, hence
        the finiteness check), the backward's ``dW_x = X^T dA`` becomes a scatter-add of dA's rows
        (:meth:`_input_kernel_grad`), and the time-major copy X is not made. Cost: one compiled pass over x that
        stops at the first row that is not one-hot (:func:`rnnlab._native.onehot_ids`), against the GEMM's
        T*B*D*W multiply-adds."""
        if not self.ONEHOT_ROWS or 0 in x.shape or x.shape[2] < 2:
            return None
        first = x[0, 0]    # (a dense input stops here, before the reshape below could copy a strided x)
        if np.count_nonzero(first) != 1 or first.max() != 1:
            return None
        B, T, D = x.shape
        ids = _native.onehot_ids(x.reshape(-1, D))
        if ids is None or not np.isfinite(kernel).all():
            return None
        ids = ids.reshape(B, T).T
        if self.go_backwards:
            ids = ids[::-1]
        return np.ascontiguousarray(ids).reshape(-1)

    def _input_kernel_grad(self, ws, dA2, pairs):
        """``dW_x = X^T dA``: appended to the ``pairs`` of :meth:`_grad_products`, or, for one-hot input rows
        (``ws.onehot``), done here as ``dW_x[id_r] += dA[r]`` (the same terms: X^T dA's other products are
        zeros; rows added in time-major order)."""
        out = self.grads["kernel"]
        if ws.onehot is None:
            pairs.insert(0, (ws.X.reshape(dA2.shape[0], -1), out))
            return
        out[...] = 0
        _native.scatter_add(out, ws.onehot, dA2)

    def _weight_grads(self, ws):
        """Common case (SimpleRNN, LSTM): dW_x = X^T dA, dW_h = HR^T dA, db = sum dA."""
        T, B = ws.T, ws.B
        dA2 = ws.dA.reshape(T * B, -1)
        pairs = [(ws.HR.reshape(T * B, -1), self.grads["recurrent_kernel"])]
        self._input_kernel_grad(ws, dA2, pairs)
        self._grad_products(ws, dA2, pairs)
        if self.use_bias:
            np.sum(dA2, axis=0, out=self.grads["bias"])

    def _rec_grad_to_h(self, ws, g):
        """Recurrent dropout: the gradient w.r.t. HR[t] becomes one w.r.t. H[t] (in place)."""
        if ws.rec_mask is not None:
            g *= ws.rec_mask
        return g

    # ------------------------------------------------------------ serialization
    def get_config(self):
        cfg = Layer.get_config(self)
        cfg.update(
            units=self.units,
            activation=_act.serialize(self.activation),
            use_bias=self.use_bias,
            kernel_initializer=initializers.serialize(self.kernel_initializer),
            recurrent_initializer=initializers.serialize(self.recurrent_initializer),
            bias_initializer=initializers.serialize(self.bias_initializer),
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            return_sequences=self.return_sequences,
            return_state=self.return_state,
            go_backwards=self.go_backwards,
            stateful=self.stateful,
            zero_output_for_mask=self.zero_output_for_mask,
            unroll=self.unroll,
            backend=self.backend,
        )
        if self.seed is not None:
            cfg["seed"] = int(self.seed)
        if "implementation" in self._extra_kwargs:
            cfg.update(implementation=self.implementation, use_cudnn=self.use_cudnn)
        return cfg
