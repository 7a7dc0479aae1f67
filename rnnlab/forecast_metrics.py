"""Forecast errors and the two baselines every forecast is compared with.

For targets ``y`` and forecasts ``p`` of the same shape (any shape; all entries count equally):

    RMSE  = sqrt(mean((p - y)^2))
    MAE   = mean(|p - y|)
    NRMSE = RMSE / std(y)          (population std of the truth; 1.0 = as bad as predicting the mean)

Baselines for direct multi-step forecasts made at target start ``t`` (the values before ``t`` known):

    naive:           p[t + h] = x[t - 1]                          for h = 0 .. H-1   (last value)
    seasonal naive:  p[t + h] = x[t + h - m * (h // m + 1)]       (same point one season ago, m = period)
"""
from __future__ import annotations

import numpy as np


def _pair(y_true, y_pred):
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if y.shape != p.shape:
        raise ValueError(f"y_true and y_pred must have the same shape, got {y.shape} and {p.shape}")
    if y.size == 0:
        raise ValueError("y_true is empty")
    return y, p


def rmse(y_true, y_pred) -> float:
    y, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((p - y) ** 2)))


def mae(y_true, y_pred) -> float:
    y, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(p - y)))


def nrmse(y_true, y_pred) -> float:
    """RMSE divided by the standard deviation of the truth (inf when the truth is constant)."""
    y, p = _pair(y_true, y_pred)
    sd = float(np.std(y))
    r = rmse(y, p)
    return r / sd if sd > 0 else (0.0 if r == 0 else float("inf"))


def all_errors(y_true, y_pred, prefix="") -> dict:
    return {f"{prefix}rmse": rmse(y_true, y_pred), f"{prefix}mae": mae(y_true, y_pred),
            f"{prefix}nrmse": nrmse(y_true, y_pred)}


def naive_forecast(series, starts, horizon):
    """Last-value forecasts: row i is ``series[starts[i] - 1]`` repeated ``horizon`` times."""
    x = np.asarray(series, dtype=np.float64)
    t = np.asarray(starts, dtype=np.int64)
    if t.size and (t.min() < 1 or t.max() > len(x)):
        raise ValueError(f"starts must be in [1, {len(x)}], got range [{t.min()}, {t.max()}]")
    return np.repeat(x[t - 1][:, None], int(horizon), axis=1)


def seasonal_naive_forecast(series, starts, horizon, period):
    """Seasonal-naive forecasts: ``p[i, h] = series[t_i + h - period * (h // period + 1)]``."""
    if isinstance(period, bool) or not isinstance(period, (int, np.integer)) or period < 1:
        raise ValueError(f"period must be a positive int, got {period!r}")
    x = np.asarray(series, dtype=np.float64)
    t = np.asarray(starts, dtype=np.int64)
    h = np.arange(int(horizon))
    idx = t[:, None] + h[None, :] - period * (h[None, :] // period + 1)
    if idx.size and idx.min() < 0:
        raise ValueError(f"seasonal naive with period {period} needs {period} values before the first target start "
                         f"(t={int(t.min())})")
    return x[idx]
