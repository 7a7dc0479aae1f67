"""Echo state network: a fixed random recurrent reservoir and a linear readout fitted in closed form.

Reservoir (never trained), with input ``u_t`` (D,), state ``x_t`` (N,), leak rate ``a``:

    x~_t = tanh(W_in [1; u_t] + W x_{t-1})
    x_t  = (1 - a) x_{t-1} + a x~_t                      (leaky integration; a = 1 is a plain tanh RNN)

``W`` (N, N) is sparse: each entry is non-zero with probability ``density``, drawn from N(0, 1), then the
matrix is scaled so that its spectral radius (largest ``|eigenvalue|``, computed with ``numpy.linalg.eigvals``)
equals ``spectral_radius`` -- the usual recipe for the echo state property (fading memory) when it is below 1.
``W_in`` (N, 1 + D) is dense, uniform in ``[-input_scaling, input_scaling]`` (column 0 is the bias).

Readout (the only trained part), on the extended state ``s_t = [1; u_t; x_t]`` (1 + D + N,):

    y_t = W_out s_t

fitted by ridge regression over all teacher-forced steps after the first ``washout`` of every sequence, with
the intercept (the column of ``W_out`` that multiplies the constant 1) not penalised: with ``F`` the rows of
``[u_t; x_t]``, ``Y`` the targets, and ``F_c``, ``Y_c`` the same with their column means removed,

    W = Y_c^T F_c (F_c^T F_c + ridge * I)^{-1}      (solved as a symmetric linear system, never inverted)
    b = mean(Y) - W mean(F),      W_out = [b, W]

which equals ridge regression on ``S = [1, F]`` with penalty ``ridge`` on every weight but the intercept.

Prediction: :meth:`predict` is one-step (the true input at every step); :meth:`generate` is closed-loop
(generative): after a warm-up on known inputs, each output is fed back as the next input
(``u_{t+1} = y_t``, needs output size = input size).

Arrays are float64. When SciPy is installed and ``density <= 0.3``, single-sequence runs multiply by a CSR copy
of W (an optional speed-up; NumPy alone gives the same numbers with a dense product). Files: :meth:`save` writes one ``.npz`` of plain arrays plus a JSON config encoded as
uint8; :meth:`load` reads it with ``allow_pickle=False``.
"""
from __future__ import annotations

import numpy as np

_FORMAT = "rnnlab-esn"


def _positive_int(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"EchoStateNetwork: {name} must be a positive int, got {v!r}")
    return int(v)


#: reservoirs of at least this many units report the steps of their closed-form work on stderr (the
#: eigenvalue solve and the ridge regression grow as N^3: minutes at 20,000 units)
PROGRESS_UNITS = 2000


def _progress(units, msg):
    if units >= PROGRESS_UNITS:
        import sys
        import time
        print(f"[{time.strftime('%H:%M:%S')}] EchoStateNetwork ({units} units): {msg}", file=sys.stderr, flush=True)


class EchoStateNetwork:
    """Echo state network (leaky-tanh reservoir + ridge readout).

    Parameters
    ----------
    units : int
        Reservoir size N.
    spectral_radius : float
        Target largest absolute eigenvalue of the recurrent matrix W (> 0).
    leak_rate : float
        Leak rate a in (0, 1].
    input_scaling : float
        Half-width of the uniform input weights (and the input bias).
    density : float
        Fraction of non-zero entries of W, in (0, 1].
    ridge : float
        Tikhonov regularisation of the readout (>= 0).
    washout : int
        Steps at the start of every training sequence left out of the regression (transient).
    seed : int, optional
        Seed of ``numpy.random.default_rng`` for W and W_in (same seed, same reservoir).
    readout_input : bool
        Whether the readout also sees the input ``u_t`` (``s_t = [1; u_t; x_t]``) or only ``[1; x_t]``.
    """

    def __init__(self, units=100, spectral_radius=0.9, leak_rate=1.0, input_scaling=1.0, density=0.1,
                 ridge=1e-6, washout=100, seed=None, readout_input=True):
        self.units = _positive_int("units", units)
        for name, v, lo, lo_open, hi in (("spectral_radius", spectral_radius, 0.0, True, None),
                                         ("leak_rate", leak_rate, 0.0, True, 1.0),
                                         ("input_scaling", input_scaling, 0.0, False, None),
                                         ("density", density, 0.0, True, 1.0),
                                         ("ridge", ridge, 0.0, False, None)):
            if not isinstance(v, (int, float, np.floating, np.integer)) or isinstance(v, bool) or not np.isfinite(v) \
                    or (v <= lo if lo_open else v < lo) or (hi is not None and v > hi):
                rng_txt = f"{'(' if lo_open else '['}{lo}, {hi if hi is not None else 'inf'}{']' if hi else ')'}"
                raise ValueError(f"EchoStateNetwork: {name} must be a number in {rng_txt}, got {v!r}")
        if isinstance(washout, bool) or not isinstance(washout, (int, np.integer)) or washout < 0:
            raise ValueError(f"EchoStateNetwork: washout must be an int >= 0, got {washout!r}")
        self.spectral_radius = float(spectral_radius)
        self.leak_rate = float(leak_rate)
        self.input_scaling = float(input_scaling)
        self.density = float(density)
        self.ridge = float(ridge)
        self.washout = int(washout)
        self.seed = seed
        self.readout_input = bool(readout_input)
        self.W = self.W_in = self.W_out = None
        self.input_dim = self.output_dim = None
        self.state = None          # last reservoir state(s), (B, N)
        self.last_output = None    # last output(s), (B, O)

    # ------------------------------------------------------------------------------- reservoir
    def build(self, input_dim):
        """Draw W (sparse, scaled to the spectral radius) and W_in for ``input_dim`` inputs."""
        input_dim = _positive_int("input_dim", input_dim)
        N = self.units
        from ..io import check_allocation
        check_allocation(4 * 8 * N * N, f"EchoStateNetwork: a reservoir of {N} units ({N} x {N} float64 matrices "
                                        "for W, its mask and the eigenvalue solve)")
        _progress(N, f"drawing a {N} x {N} reservoir and its spectral radius (eigenvalues: O(N^3))")
        rng = np.random.default_rng(self.seed)
        W = rng.standard_normal((N, N)) * (rng.random((N, N)) < self.density)
        if not W.any():  # tiny reservoirs at low density: keep at least one connection per row
            W[np.arange(N), rng.integers(0, N, N)] = rng.standard_normal(N)
        radius = float(np.max(np.abs(np.linalg.eigvals(W))))
        if radius == 0.0:  # nilpotent draw (e.g. strictly triangular): add a diagonal
            W += np.eye(N) * rng.standard_normal(N)
            radius = float(np.max(np.abs(np.linalg.eigvals(W))))
        self.W = W * (self.spectral_radius / radius)
        self.W_in = rng.uniform(-self.input_scaling, self.input_scaling, (N, 1 + input_dim))
        self.input_dim = input_dim
        return self

    #: use a SciPy CSR copy of W for single-sequence runs when SciPy is installed and W is sparse enough
    #: (an optional speed-up only: the results equal the dense NumPy path to rounding; set False to disable)
    use_sparse = True

    def _sparse_W(self):
        if not self.use_sparse or self.density > 0.3:
            return None
        cached = getattr(self, "_Wsp", None)
        if cached is not None and cached[0] is self.W:
            return cached[1]
        try:
            import scipy.sparse as sp
        except ImportError:  # pragma: no cover - depends on the environment
            return None
        Wsp = sp.csr_array(self.W)
        self._Wsp = (self.W, Wsp)
        return Wsp

    @property
    def built(self):
        return self.W is not None

    def _as_batch(self, X, name, dim=None):
        X = np.asarray(X)
        if X.dtype.kind not in "biuf":
            raise TypeError(f"EchoStateNetwork: {name} must be numeric, got dtype {X.dtype}")
        X = X.astype(np.float64)
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim == 2:
            X = X[None]
        if X.ndim != 3:
            raise ValueError(f"EchoStateNetwork: {name} must be (time,), (time, features) or (batch, time, features),"
                             f" got shape {X.shape}")
        if dim is not None and X.shape[-1] != dim:
            raise ValueError(f"EchoStateNetwork: {name} must have {dim} features (last axis), got shape {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError(f"EchoStateNetwork: {name} contains NaN or inf")
        return X

    def run(self, X, reset=True):
        """Reservoir states for inputs ``X`` (B, T, D): returns (B, T, N) and keeps the last state.

        ``reset=True`` starts from the zero state; ``reset=False`` continues from :attr:`state`."""
        if not self.built:
            self.build(np.asarray(X).shape[-1] if np.asarray(X).ndim > 1 else 1)
        X = self._as_batch(X, "inputs", self.input_dim)
        B, T, _ = X.shape
        x = np.zeros((B, self.units)) if reset or self.state is None else self.state.copy()
        if x.shape[0] != B:
            raise ValueError(f"EchoStateNetwork: the carried state has batch size {x.shape[0]}, inputs have {B}; "
                             "use reset=True")
        pre_in = X @ self.W_in[:, 1:].T + self.W_in[:, 0]  # (B, T, N): all input projections in one GEMM
        a = self.leak_rate
        states = np.empty((B, T, self.units))
        Wsp = self._sparse_W() if B == 1 else None
        if Wsp is not None:  # one sequence: a sparse matrix-vector product per step (same numbers, less memory traffic)
            x = x[0].copy()
            p = pre_in[0]
            out = states[0]
            for t in range(T):
                xt = np.tanh(p[t] + Wsp @ x)
                if a == 1.0:
                    x = xt
                else:
                    x *= 1.0 - a
                    x += a * xt
                out[t] = x
            self.state = x[None].copy()
            return states
        WT = self.W.T
        for t in range(T):
            xt = np.tanh(pre_in[:, t] + x @ WT)
            x = xt if a == 1.0 else (1.0 - a) * x + a * xt
            states[:, t] = x
        self.state = x
        return states

    def _features(self, X, states):
        parts = [np.ones(states.shape[:-1] + (1,))]
        if self.readout_input:
            parts.append(X)
        parts.append(states)
        return np.concatenate(parts, axis=-1)

    # --------------------------------------------------------------------------------- readout
    def fit(self, X, Y):
        """Teacher-forced fit: run the reservoir on ``X``, ridge-regress ``Y`` on the extended states.

        ``X`` (T, D) or (B, T, D), ``Y`` (T, O) or (B, T, O) aligned step by step; the first ``washout`` steps
        of every sequence are left out. Returns ``self``."""
        X = self._as_batch(X, "X")
        Y = self._as_batch(Y, "Y")
        if X.shape[:2] != Y.shape[:2]:
            raise ValueError(f"EchoStateNetwork.fit: X and Y must have the same (batch, time), got {X.shape[:2]} "
                             f"and {Y.shape[:2]}")
        if X.shape[1] <= self.washout:
            raise ValueError(f"EchoStateNetwork.fit: sequences of {X.shape[1]} steps leave nothing after the washout "
                             f"of {self.washout} steps")
        if not self.built:
            self.build(X.shape[-1])
        states = self.run(X, reset=True)
        S = self._features(X, states)[:, self.washout:].reshape(-1, self._n_features())[:, 1:]
        T = Y[:, self.washout:].reshape(-1, Y.shape[-1])
        s_mean, t_mean = S.mean(axis=0), T.mean(axis=0)
        Sc = S - s_mean
        _progress(self.units, f"ridge readout: Gram matrix of {S.shape[0]} states x {S.shape[1]} features")
        G = Sc.T @ Sc
        G[np.diag_indices_from(G)] += self.ridge
        _progress(self.units, f"ridge readout: solving the {G.shape[0]} x {G.shape[0]} system")
        W = np.linalg.solve(G, Sc.T @ (T - t_mean)).T  # (O, F)
        _progress(self.units, "ridge readout: done")
        self.W_out = np.concatenate([(t_mean - W @ s_mean)[:, None], W], axis=1)  # (O, 1 + F)
        self.output_dim = Y.shape[-1]
        self.last_output = np.asarray(self._readout(X[:, -1], states[:, -1]))
        return self

    def _n_features(self):
        return 1 + (self.input_dim if self.readout_input else 0) + self.units

    def _readout(self, u, x):
        s = self._features(u, x)
        return s @ self.W_out.T

    def _require_fitted(self, what):
        if self.W_out is None:
            raise RuntimeError(f"EchoStateNetwork.{what}: call fit(X, Y) first")

    def predict(self, X, reset=True):
        """One-step predictions for inputs ``X`` (the true input at every step): same leading shape as ``X``."""
        self._require_fitted("predict")
        squeeze = np.asarray(X).ndim
        Xb = self._as_batch(X, "X", self.input_dim)
        states = self.run(Xb, reset=reset)
        Y = self._readout(Xb, states)
        self.last_output = Y[:, -1].copy()
        if squeeze == 3:
            return Y
        return Y[0] if squeeze == 2 else Y[0, :, 0] if Y.shape[-1] == 1 else Y[0]

    def generate(self, n_steps, warmup=None):
        """Closed-loop (generative) prediction of ``n_steps`` steps.

        With ``warmup`` (T, D) or (B, T, D), the reservoir first runs on it from the zero state (teacher
        forcing) and the readout of its last step is the first generated value; without it, generation
        continues from the last state and output (after :meth:`fit`/:meth:`predict`). Each output is fed
        back as the next input. Returns (n_steps, O), or (B, n_steps, O) for a batched warm-up."""
        self._require_fitted("generate")
        n_steps = _positive_int("n_steps", n_steps)
        if self.output_dim != self.input_dim:
            raise ValueError(f"EchoStateNetwork.generate: closed loop needs output size = input size, got "
                             f"{self.output_dim} outputs for {self.input_dim} inputs")
        batched = warmup is not None and np.asarray(warmup).ndim == 3
        if warmup is not None:
            W = self._as_batch(warmup, "warmup", self.input_dim)
            states = self.run(W, reset=True)
            y = self._readout(W[:, -1], states[:, -1])
        else:
            if self.state is None or self.last_output is None:
                raise RuntimeError("EchoStateNetwork.generate: give a warmup sequence (no state to continue from)")
            y = self.last_output
        out, self.state, self.last_output = self._closed_loop(y, self.state, n_steps)
        return out if batched else out[0]

    def _closed_loop(self, y, x, n_steps):
        """Feed each output back as the next input: returns outputs (B, n_steps, O), last state, last output."""
        a = self.leak_rate
        WT, Win, b = self.W.T, self.W_in[:, 1:].T, self.W_in[:, 0]
        out = np.empty((y.shape[0], n_steps, self.output_dim))
        for t in range(n_steps):
            out[:, t] = y
            xt = np.tanh(y @ Win + b + x @ WT)
            x = xt if a == 1.0 else (1.0 - a) * x + a * xt
            y = self._readout(y, x)
        return out, x, y

    def forecast(self, series, starts, n_steps):
        """Closed-loop forecasts of ``n_steps`` values from many points of one series.

        The reservoir runs once over ``series`` (T, D) from the zero state with the true inputs; for every
        start ``t`` in ``starts`` (1 <= t <= T) the forecast of ``series[t:t+n_steps]`` begins from the state
        after ``series[t-1]`` (all of the known past, not only a window of it) and feeds its outputs back.
        Returns (len(starts), n_steps, O), or (len(starts), n_steps) for a 1-D series."""
        self._require_fitted("forecast")
        n_steps = _positive_int("n_steps", n_steps)
        if self.output_dim != self.input_dim:
            raise ValueError(f"EchoStateNetwork.forecast: closed loop needs output size = input size, got "
                             f"{self.output_dim} outputs for {self.input_dim} inputs")
        one_d = np.asarray(series).ndim == 1
        X = self._as_batch(series, "series", self.input_dim)
        if X.shape[0] != 1:
            raise ValueError(f"EchoStateNetwork.forecast: series must be one sequence (T,) or (T, D), got {X.shape}")
        t = np.asarray(starts, dtype=np.int64).ravel()
        if t.size == 0:
            return np.zeros((0, n_steps) + (() if one_d else (self.output_dim,)))
        if t.min() < 1 or t.max() > X.shape[1]:
            raise ValueError(f"EchoStateNetwork.forecast: starts must lie in [1, {X.shape[1]}], got "
                             f"[{t.min()}, {t.max()}]")
        states = self.run(X[:, : t.max()], reset=True)[0]
        u = X[0, t - 1]
        y = self._readout(u, states[t - 1])
        out, _, _ = self._closed_loop(y, states[t - 1], n_steps)
        return out[..., 0] if one_d and self.output_dim == 1 else out

    # ----------------------------------------------------------------------------------- files
    def get_config(self):
        return {"units": self.units, "spectral_radius": self.spectral_radius, "leak_rate": self.leak_rate,
                "input_scaling": self.input_scaling, "density": self.density, "ridge": self.ridge,
                "washout": self.washout, "seed": self.seed, "readout_input": self.readout_input}

    def save(self, path):
        """Write config and arrays to one ``.npz`` (no pickle); returns the path."""
        if not self.built:
            raise ValueError("EchoStateNetwork.save: nothing to save, the reservoir is not built yet")
        from ..io import write_npz

        doc = {"format": _FORMAT, "config": self.get_config(), "input_dim": self.input_dim,
               "output_dim": self.output_dim}
        arrays = {"W": self.W, "W_in": self.W_in}
        for name in ("W_out", "state", "last_output"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        return write_npz(path, arrays, {"__config__": doc})   # atomic; the config as a uint8 JSON entry

    @classmethod
    def load(cls, path):
        """Read a file written by :meth:`save` (``allow_pickle=False``), through :class:`rnnlab.io.NpzArchive`:
        the config and the array headers are checked against each other (``W`` is ``(units, units)``, ``W_in``
        ``(units, 1 + input_dim)``, ``W_out`` ``(output_dim, features)``, all float) before any array is read;
        every problem is an :class:`rnnlab.io.FileFormatError` (a ``ValueError``) naming the file."""
        from .. import io as rio

        with rio.NpzArchive(path, "rnnlab echo state network file") as arc:
            path = arc.path
            if "__config__" not in arc:
                raise rio.FileFormatError(f"{path} is not an rnnlab echo state network file (no __config__ entry)",
                                          path=path)
            doc = arc.read_json("__config__")
            if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
                fmt = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
                raise rio.FileFormatError(f"{path}: format {fmt!r:.60}, expected {_FORMAT!r}", path=path)
            cfg, input_dim, output_dim = doc.get("config"), doc.get("input_dim"), doc.get("output_dim")
            if not isinstance(cfg, dict) or "W" not in arc or "W_in" not in arc:
                raise rio.FileFormatError(f"{path}: corrupt echo state network file (needs a config and the arrays "
                                          f"W and W_in; it has {sorted(arc.names)[:6]})", path=path)
            for name, v in (("input_dim", input_dim), ("output_dim", output_dim)):
                if (v is not None or name == "input_dim") and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                    raise rio.FileFormatError(f"{path}: corrupt echo state network file ({name} {v!r:.40})",
                                              path=path)
            rio.check_config_sizes({**cfg, "input_dim": input_dim, "output_dim": output_dim}, arc.max_dim(),
                                   path, path=path)
            try:
                esn = cls(**cfg)
            except rio.BUILD_ERRORS as e:
                raise rio.build_error(path, "echo state network", e) from None
            N = esn.units
            want = {"W": (N, N), "W_in": (N, 1 + input_dim)}
            if output_dim is not None:
                n_feat = 1 + (input_dim if esn.readout_input else 0) + N
                want.update(W_out=(output_dim, n_feat), state=None, last_output=None)
            for name in ("W", "W_in", "W_out", "state", "last_output"):
                if name not in arc:
                    continue
                shape, dtype = arc.shape(name), arc.dtype(name)
                expected = want.get(name, "absent")
                bad = dtype.kind != "f" or expected == "absent" or (expected is not None and shape != expected) \
                    or (expected is None and (len(shape) != 2 or shape[-1] != (N if name == "state" else output_dim)))
                if bad:
                    raise rio.FileFormatError(f"{path}: array {name} is {dtype} {shape}; units={N}, input_dim="
                                              f"{input_dim}, output_dim={output_dim} need "
                                              f"{expected if expected != 'absent' else 'no such array'}",
                                              path=path, member=name)
            esn.input_dim, esn.output_dim = input_dim, output_dim
            esn.W, esn.W_in = arc.read("W"), arc.read("W_in")
            for name in ("W_out", "state", "last_output"):
                if name in arc:
                    setattr(esn, name, arc.read(name))
        return esn

    def __repr__(self):
        return (f"EchoStateNetwork(units={self.units}, spectral_radius={self.spectral_radius}, "
                f"leak_rate={self.leak_rate}, density={self.density}, ridge={self.ridge})")
