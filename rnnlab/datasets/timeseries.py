"""Time series: CSV column loading, standard synthetic series, sliding windows, chronological splits, scaling.

Everything here works on 1-D float64 NumPy arrays (one value per time step) and is deterministic.

* :func:`load_csv_column` reads one numeric column of a CSV file (by header name or 0-based index), with
  row-numbered errors for a missing column, a ragged row or a non-numeric value. Empty cells and
  ``NA``/``NaN``/``null`` are *gaps*: by default a gap is an error naming the rows; ``missing="interpolate"``
  fills interior gaps by linear interpolation between the nearest known neighbours (gaps at the start or
  end cannot be interpolated and stay an error); ``missing="drop"`` removes those rows.
* :func:`mackey_glass` -- the chaotic delay differential equation (tau = 17 by default),
  :func:`sum_of_sines` -- a noisy sum of sinusoids.
* :func:`split_windows` -- chronological train/valid/test split of *targets* with sliding input windows:
  a window's input is ``series[t-W:t]`` and its target ``series[t:t+H]``; every target lies entirely inside
  one part, the inputs of the first valid/test windows reach back into the previous part (as they would
  in deployment: the past is known).
* :class:`Scaler` -- standard (z-score) or min-max scaling, fitted on the training part only.
"""
from __future__ import annotations

import csv
import math
import os

import numpy as np

_GAP = {"", "na", "nan", "null", "none", "n/a", "?"}


# ------------------------------------------------------------------------------------------------ CSV
def load_csv_column(path, column, date_column=None, missing="error", delimiter=None, encoding="utf-8"):
    """Read one numeric column of a CSV file.

    Parameters
    ----------
    path : str
        CSV file with a header row. Windows/Unix line endings and a missing final newline are fine.
    column : str or int
        Header name of the value column, or its 0-based index.
    date_column : str or int, optional
        Header name/index of a label column (dates) returned alongside, as strings.
    missing : {"error", "interpolate", "drop"}
        What to do with gaps (empty, ``NA``, ``NaN``, ``null``, ``?`` cells). ``"error"`` (default) raises a
        ``ValueError`` naming the rows; ``"interpolate"`` fills interior gaps linearly in the row index
        (``x_t = x_a + (t-a)/(b-a) * (x_b - x_a)`` for known rows ``a < t < b``), leading/trailing gaps
        still raise; ``"drop"`` removes the rows.
    delimiter : str, optional
        Field separator; sniffed from the header (``,``, ``;``, tab) when not given.
    encoding : str
        Text encoding (default UTF-8; a leading byte-order mark is ignored). Undecodable bytes are a
        ``ValueError`` naming the file, line and byte offset.

    Returns
    -------
    values : float64 array (n,)
    dates : list of str, or None when ``date_column`` is None

    Row numbers in messages are file line numbers (the header is line 1).
    """
    if missing not in ("error", "interpolate", "drop"):
        raise ValueError(f"missing must be 'error', 'interpolate' or 'drop', got {missing!r}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"CSV file not found: {path}")
    from .text_corpus import decode_bytes

    with open(path, "rb") as f:
        text = decode_bytes(f.read(), path, encoding)
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise ValueError(f"{path}: the file is empty (expected a header row)")
    if delimiter is None:
        head = lines[0]
        delimiter = max([",", ";", "\t"], key=head.count) if any(c in head for c in ",;\t") else ","
    reader = csv.reader(lines, delimiter=delimiter)
    rows, starts, end = [], [], 0   # starts[i]: file line where rows[i] begins (a quoted field may span lines)
    try:
        for row in reader:
            rows.append(row)
            starts.append(end + 1)
            end = reader.line_num
    except csv.Error as e:
        raise ValueError(f"{path}, row {end + 1}: malformed CSV row: {e}") from None
    header = [h.strip() for h in rows[0]]

    def col_index(c, what):
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            if not 0 <= int(c) < len(header):
                raise ValueError(f"{what} index {c} is out of range: {path} has {len(header)} columns {header}")
            return int(c)
        if isinstance(c, str) and c.strip().lstrip("-").isdigit() and c.strip() not in header:
            return col_index(int(c), what)
        if c not in header:
            raise ValueError(f"{what} {c!r} not found in {path}; columns are {header}")
        return header.index(c)

    ci = col_index(column, "column")
    di = None if date_column is None else col_index(date_column, "date column")
    values, dates, gaps = [], [], []
    for lineno, row in zip(starts[1:], rows[1:]):
        if not row or all(not cell.strip() for cell in row):
            continue  # blank line
        if len(row) != len(header):
            raise ValueError(f"{path}, row {lineno}: expected {len(header)} fields like the header, got {len(row)}: {row}")
        cell = row[ci].strip()
        if cell.lower() in _GAP:
            gaps.append((lineno, len(values)))
            values.append(math.nan)
        else:
            try:
                v = float(cell)
            except ValueError:
                raise ValueError(f"{path}, row {lineno}: column {header[ci]!r} is not numeric: {cell!r}") from None
            if not math.isfinite(v):
                raise ValueError(f"{path}, row {lineno}: column {header[ci]!r} is not finite: {cell!r}")
            values.append(v)
        if di is not None:
            dates.append(row[di].strip())
    if not values:
        raise ValueError(f"{path}: no data rows after the header")
    x = np.asarray(values, dtype=np.float64)
    if gaps:
        rows_txt = ", ".join(str(r) for r, _ in gaps[:10]) + (" ..." if len(gaps) > 10 else "")
        if missing == "error":
            raise ValueError(f"{path}: column {header[ci]!r} has {len(gaps)} missing value(s) at row(s) {rows_txt}; "
                             "fill them, or pass missing='interpolate' (--missing interpolate) or 'drop'")
        if missing == "drop":
            keep = ~np.isnan(x)
            x = x[keep]
            if di is not None:
                dates = [d for d, k in zip(dates, keep) if k]
        else:
            x = interpolate_gaps(x, what=f"{path}: column {header[ci]!r}", rows=[r for r, _ in gaps])
    return x, (dates if di is not None else None)


def interpolate_gaps(x, what="series", rows=None):
    """Fill NaN gaps of a 1-D series by linear interpolation in the index; leading/trailing NaNs raise."""
    x = np.array(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D series, got shape {x.shape}")
    nan = np.isnan(x)
    if not nan.any():
        return x
    known = np.flatnonzero(~nan)
    if known.size == 0:
        raise ValueError(f"{what}: every value is missing")
    lead, trail = nan[: known[0]].any(), nan[known[-1] + 1:].any()
    if lead or trail:
        where = "start" if lead else "end"
        idx = np.flatnonzero(nan)
        at = [rows[i] for i in range(len(idx))] if rows is not None else list(idx)
        raise ValueError(f"{what}: missing value(s) at the {where} of the series (row(s) {at[:10]}) cannot be "
                         "interpolated (no known value on both sides); trim them or use missing='drop'")
    x[nan] = np.interp(np.flatnonzero(nan), known, x[known])
    return x


# ------------------------------------------------------------------------------------- generators
def mackey_glass(n, tau=17, beta=0.2, gamma=0.1, power=10, x0=1.2, h=0.1, sample_every=1.0, discard=0):
    """The Mackey-Glass delay differential equation, sampled every ``sample_every`` time units.

        dx/dt = beta * x(t - tau) / (1 + x(t - tau)^power) - gamma * x(t)

    With the classic parameters (tau = 17, beta = 0.2, gamma = 0.1, power = 10) the series is chaotic
    (the standard reservoir-computing benchmark). Discretisation: fourth-order Runge-Kutta with step
    ``h = 0.1`` (``tau / h`` must be an integer); the delayed term at the half step is the mean of the two
    neighbouring grid values. History ``x(t) = x0`` for ``t <= 0``. ``discard`` samples of the initial
    transient are dropped. Returns a float64 array of ``n`` samples.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    lag = tau / h
    if abs(lag - round(lag)) > 1e-9 or lag < 1:
        raise ValueError(f"tau / h must be a positive integer, got tau={tau}, h={h}")
    lag = int(round(lag))
    every = sample_every / h
    if abs(every - round(every)) > 1e-9 or every < 1:
        raise ValueError(f"sample_every / h must be a positive integer, got sample_every={sample_every}, h={h}")
    every = int(round(every))
    total = (int(n) + int(discard)) * every
    hist = np.full(total + lag + 1, float(x0))  # hist[k + lag] = x(k h)

    def f(x, xd):
        return beta * xd / (1.0 + xd ** power) - gamma * x

    for k in range(total):
        x = hist[k + lag]
        d0, d1 = hist[k], hist[k + 1]
        dm = 0.5 * (d0 + d1)
        k1 = f(x, d0)
        k2 = f(x + 0.5 * h * k1, dm)
        k3 = f(x + 0.5 * h * k2, dm)
        k4 = f(x + h * k3, d1)
        hist[k + lag + 1] = x + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    samples = hist[lag::every][: int(n) + int(discard)]
    return samples[int(discard):].copy()


def sum_of_sines(n, periods=(20.0, 50.0), amplitudes=None, phases=None, noise=0.1, trend=0.0, seed=0):
    """A noisy sum of sines: ``x_t = sum_k a_k sin(2 pi t / P_k + phi_k) + trend * t + noise * N(0, 1)``.

    ``amplitudes`` default to 1, ``phases`` to 0; the noise is drawn from ``numpy.random.default_rng(seed)``.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    periods = np.asarray(periods, dtype=np.float64)
    if periods.ndim != 1 or periods.size == 0 or np.any(periods <= 0):
        raise ValueError(f"periods must be a non-empty list of positive numbers, got {periods.tolist()}")
    amps = np.ones_like(periods) if amplitudes is None else np.asarray(amplitudes, dtype=np.float64)
    ph = np.zeros_like(periods) if phases is None else np.asarray(phases, dtype=np.float64)
    if amps.shape != periods.shape or ph.shape != periods.shape:
        raise ValueError(f"amplitudes and phases must have {periods.size} entries like periods, "
                         f"got {amps.size} and {ph.size}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    t = np.arange(int(n), dtype=np.float64)
    x = (amps[:, None] * np.sin(2 * np.pi * t[None, :] / periods[:, None] + ph[:, None])).sum(0) + trend * t
    if noise:
        x = x + noise * np.random.default_rng(seed).standard_normal(int(n))
    return x


# -------------------------------------------------------------------------------- windows / split
def _check_series(series, what="series"):
    x = np.asarray(series)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{what} must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if x.ndim != 1:
        raise ValueError(f"{what} must be 1-D (one value per time step), got shape {x.shape}")
    if np.isnan(x).any():
        i = int(np.flatnonzero(np.isnan(x))[0])
        raise ValueError(f"{what} has NaN gaps (first at index {i}); fill them first (see interpolate_gaps)")
    return x


def sliding_windows(series, window, horizon=1, start=None, stop=None):
    """Input windows and direct multi-step targets.

    For every target start ``t`` with ``start <= t`` and ``t + horizon <= stop``:
    ``X[i] = series[t-window:t]`` (shape ``(window, 1)``) and ``Y[i] = series[t:t+horizon]``.
    ``start`` defaults to ``window`` (the first full window), ``stop`` to ``len(series)``.
    Returns ``X (N, window, 1)``, ``Y (N, horizon)``, and the target start indices ``t`` (N,).
    """
    x = _check_series(series)
    for name, v in (("window", window), ("horizon", horizon)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    n = len(x)
    if window + horizon > n:
        raise ValueError(f"window ({window}) + horizon ({horizon}) = {window + horizon} is longer than the series "
                         f"({n} values)")
    start = window if start is None else max(int(start), window)
    stop = n if stop is None else min(int(stop), n)
    ts = np.arange(start, stop - horizon + 1)
    if ts.size == 0:
        return np.zeros((0, window, 1)), np.zeros((0, horizon)), ts
    X = np.lib.stride_tricks.sliding_window_view(x, window)[ts - window][:, :, None].copy()
    Y = np.lib.stride_tricks.sliding_window_view(x, horizon)[ts].copy()
    return X, Y, ts


def chronological_bounds(n, valid_fraction=0.15, test_fraction=0.15):
    """Boundaries ``(n_train_end, n_valid_end)`` of a chronological train | valid | test split of ``n`` steps."""
    for name, v in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= v < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {v}")
    if valid_fraction + test_fraction >= 1.0:
        raise ValueError(f"valid_fraction + test_fraction must be < 1, got {valid_fraction + test_fraction}")
    a = int(round(n * (1.0 - valid_fraction - test_fraction)))
    b = int(round(n * (1.0 - test_fraction)))
    return a, b


def chronological_split(series, valid_fraction=0.15, test_fraction=0.15):
    """Split a series in time order into ``(train, valid, test)`` (no shuffling)."""
    x = _check_series(series)
    a, b = chronological_bounds(len(x), valid_fraction, test_fraction)
    return x[:a], x[a:b], x[b:]


def split_windows(series, window, horizon=1, valid_fraction=0.15, test_fraction=0.15):
    """Chronological split of the targets plus sliding windows for each part.

    Returns ``{"train": (X, Y, t), "valid": (...), "test": (...), "bounds": (a, b)}`` where the targets
    ``series[t:t+horizon]`` of each part lie in ``[0, a)``, ``[a, b)`` and ``[b, n)``. Raises when a part
    would get no window (series too short for the window and horizon).
    """
    x = _check_series(series)
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon must be a positive int, got {horizon!r}")
    n = len(x)
    if window + horizon > n:
        raise ValueError(f"window ({window}) + horizon ({horizon}) = {window + horizon} is longer than the series "
                         f"({n} values)")
    a, b = chronological_bounds(n, valid_fraction, test_fraction)
    parts = {"train": sliding_windows(x, window, horizon, window, a),
             "valid": sliding_windows(x, window, horizon, a, b),
             "test": sliding_windows(x, window, horizon, b, n),
             "bounds": (a, b)}
    for name, frac in (("train", 1.0), ("valid", valid_fraction), ("test", test_fraction)):
        if frac > 0 and len(parts[name][0]) == 0:
            raise ValueError(f"the {name} part gets no window: series of {n} values, window {window}, horizon "
                             f"{horizon}, split at {a}/{b}; use a shorter window/horizon or a longer series")
    return parts


# ------------------------------------------------------------------------------------------ scaling
class Scaler:
    """Affine scaling fitted on the training part only.

    ``kind="standard"``: ``z = (x - mean) / std``; ``kind="minmax"``: ``z = (x - min) / (max - min)``
    (to [0, 1]). ``inverse_transform`` undoes it. A constant training part gets scale 1.
    """

    def __init__(self, kind="standard"):
        if kind not in ("standard", "minmax"):
            raise ValueError(f"Scaler kind must be 'standard' or 'minmax', got {kind!r}")
        self.kind = kind
        self.offset = None
        self.scale = None

    def fit(self, train):
        x = _check_series(np.ravel(np.asarray(train, dtype=np.float64)), "train")
        if x.size == 0:
            raise ValueError("Scaler.fit: the training part is empty")
        if self.kind == "standard":
            self.offset, self.scale = float(x.mean()), float(x.std())
        else:
            self.offset, self.scale = float(x.min()), float(x.max() - x.min())
        if self.scale == 0.0:
            self.scale = 1.0
        return self

    def _fitted(self):
        if self.offset is None:
            raise RuntimeError("Scaler: call fit(train) first")

    def transform(self, x):
        self._fitted()
        return (np.asarray(x, dtype=np.float64) - self.offset) / self.scale

    def inverse_transform(self, z):
        self._fitted()
        return np.asarray(z, dtype=np.float64) * self.scale + self.offset

    def get_config(self):
        return {"kind": self.kind, "offset": self.offset, "scale": self.scale}

    @classmethod
    def from_config(cls, cfg):
        s = cls(cfg["kind"])
        s.offset, s.scale = cfg["offset"], cfg["scale"]
        return s
