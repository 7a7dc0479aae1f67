"""Time-series loading, generators, windows, splits, scaling and forecast baselines."""
import os

import numpy as np
import pytest

from rnnlab import forecast_metrics as fm
from rnnlab.datasets import timeseries as ts


def _write(tmp_path, text, name="s.csv"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_load_column_by_name_and_index(tmp_path):
    p = _write(tmp_path, "date,a,b\r\n2020-01,1,10\r\n2020-02,2.5,20\r\n2020-03,3,30")
    v, d = ts.load_csv_column(p, "a", date_column="date")
    np.testing.assert_array_equal(v, [1.0, 2.5, 3.0])
    assert d == ["2020-01", "2020-02", "2020-03"]
    v2, d2 = ts.load_csv_column(p, 2)
    np.testing.assert_array_equal(v2, [10, 20, 30])
    assert d2 is None
    v3, _ = ts.load_csv_column(_write(tmp_path, "a;b\n1;2\n3;4\n", "semi.csv"), "b")
    np.testing.assert_array_equal(v3, [2, 4])


def test_load_bad_inputs_name_rows(tmp_path):
    p = _write(tmp_path, "date,a\n2020-01,1\n2020-02,oops\n")
    with pytest.raises(ValueError, match=r"row 3: column 'a' is not numeric: 'oops'"):
        ts.load_csv_column(p, "a")
    with pytest.raises(ValueError, match=r"column 'zz' not found .*\['date', 'a'\]"):
        ts.load_csv_column(p, "zz")
    with pytest.raises(ValueError, match="index 5 is out of range"):
        ts.load_csv_column(p, 5)
    ragged = _write(tmp_path, "date,a\n2020-01,1\n2020-02\n", "r.csv")
    with pytest.raises(ValueError, match="row 3: expected 2 fields"):
        ts.load_csv_column(ragged, "a")
    with pytest.raises(FileNotFoundError):
        ts.load_csv_column(str(tmp_path / "nope.csv"), "a")
    with pytest.raises(ValueError, match="missing must be"):
        ts.load_csv_column(p, "a", missing="zero")


def test_gaps_error_interpolate_drop(tmp_path):
    p = _write(tmp_path, "t,a\n0,1\n1,\n2,NA\n3,4\n4,5\n")
    with pytest.raises(ValueError, match=r"2 missing value\(s\) at row\(s\) 3, 4"):
        ts.load_csv_column(p, "a")
    v, _ = ts.load_csv_column(p, "a", missing="interpolate")
    np.testing.assert_allclose(v, [1, 2, 3, 4, 5])
    v, d = ts.load_csv_column(p, "a", date_column="t", missing="drop")
    np.testing.assert_array_equal(v, [1, 4, 5])
    assert d == ["0", "3", "4"]
    edge = _write(tmp_path, "t,a\n0,\n1,2\n2,3\n", "e.csv")
    with pytest.raises(ValueError, match="start of the series"):
        ts.load_csv_column(edge, "a", missing="interpolate")


def test_airline_passengers(shared_data):
    v, d = ts.load_csv_column(os.path.join(shared_data, "airline-passengers.csv"), "Passengers", "Month")
    assert len(v) == 144 and v.sum() == 40363 and d[0] == "1949-01" and d[-1] == "1960-12"


def test_mackey_glass_properties():
    x = ts.mackey_glass(600, discard=300)
    assert x.shape == (600,) and np.isfinite(x).all()
    # the chaotic attractor of tau=17 stays within about [0.4, 1.35] and does not settle
    assert 0.3 < x.min() < 0.6 and 1.2 < x.max() < 1.4
    assert x[-200:].std() > 0.15
    # the series satisfies its equation: finite-difference derivative vs the right-hand side
    y = ts.mackey_glass(400, sample_every=0.1)  # every integration step
    d = (y[2:] - y[:-2]) / 0.2
    k = np.arange(171, 399)
    rhs = 0.2 * y[k - 170] / (1 + y[k - 170] ** 10) - 0.1 * y[k]
    np.testing.assert_allclose(d[k - 1], rhs, atol=1e-3)
    # longer tau is different; tau must be a multiple of h
    assert not np.allclose(ts.mackey_glass(300, tau=30), ts.mackey_glass(300))
    with pytest.raises(ValueError, match="tau / h"):
        ts.mackey_glass(10, tau=17.05)


def test_sum_of_sines():
    clean = ts.sum_of_sines(100, periods=[10], noise=0.0)
    np.testing.assert_allclose(clean, np.sin(2 * np.pi * np.arange(100) / 10), atol=1e-12)
    a, b = ts.sum_of_sines(100, seed=1), ts.sum_of_sines(100, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, ts.sum_of_sines(100, seed=2))
    with pytest.raises(ValueError, match="periods"):
        ts.sum_of_sines(10, periods=[0])
    with pytest.raises(ValueError, match="amplitudes and phases"):
        ts.sum_of_sines(10, periods=[3, 4], amplitudes=[1])


def test_sliding_windows_and_split():
    x = np.arange(20.0)
    X, Y, t = ts.sliding_windows(x, 4, 2)
    assert X.shape == (15, 4, 1) and Y.shape == (15, 2)
    np.testing.assert_array_equal(X[0, :, 0], [0, 1, 2, 3])
    np.testing.assert_array_equal(Y[0], [4, 5])
    np.testing.assert_array_equal(Y[-1], [18, 19])
    assert t[0] == 4
    parts = ts.split_windows(x, 4, 2, valid_fraction=0.25, test_fraction=0.25)
    a, b = parts["bounds"]
    assert (a, b) == (10, 15)
    for name, lo, hi in (("train", 0, a), ("valid", a, b), ("test", b, 20)):
        _, Y, t = parts[name]
        assert Y.min() >= lo and Y.max() < hi  # every target lies inside its part
    # the first test window's input reaches into the valid part (the past is known)
    np.testing.assert_array_equal(parts["test"][0][0, :, 0], [11, 12, 13, 14])
    with pytest.raises(ValueError, match=r"window \(19\) \+ horizon \(2\) = 21 is longer than the series \(20"):
        ts.sliding_windows(x, 19, 2)
    with pytest.raises(ValueError, match="valid part gets no window"):
        ts.split_windows(x, 4, 6, valid_fraction=0.25, test_fraction=0.25)
    with pytest.raises(ValueError, match="NaN gaps"):
        ts.sliding_windows(np.array([1.0, np.nan, 2, 3]), 1, 1)
    with pytest.raises(ValueError, match="window must be a positive int"):
        ts.sliding_windows(x, 0, 1)
    tr, va, te = ts.chronological_split(x, 0.25, 0.25)
    assert len(tr) == 10 and va[0] == 10 and te[0] == 15


def test_scaler_fitted_on_train_only():
    train, test = np.array([0.0, 2.0, 4.0]), np.array([100.0])
    s = ts.Scaler("standard").fit(train)
    assert s.offset == 2.0 and np.isclose(s.scale, np.std(train))
    np.testing.assert_allclose(s.inverse_transform(s.transform(test)), test)
    m = ts.Scaler("minmax").fit(train)
    np.testing.assert_allclose(m.transform([0, 4, 8]), [0, 1, 2])
    assert ts.Scaler.from_config(m.get_config()).transform(2.0) == 0.5
    with pytest.raises(RuntimeError, match="fit"):
        ts.Scaler().transform([1.0])
    with pytest.raises(ValueError, match="kind"):
        ts.Scaler("robust")


def test_errors_and_baselines():
    y, p = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 6.0])
    assert fm.rmse(y, p) == 1.0 and fm.mae(y, p) == 0.5
    assert np.isclose(fm.nrmse(y, p), 1.0 / np.std(y))
    with pytest.raises(ValueError, match="same shape"):
        fm.rmse(y, p[:3])
    x = np.arange(10.0) * 10
    np.testing.assert_array_equal(fm.naive_forecast(x, [3, 5], 2), [[20, 20], [40, 40]])
    # period 3, target start 6, horizon 4 -> x[3], x[4], x[5], x[6-3*2+3]=x[3]
    np.testing.assert_array_equal(fm.seasonal_naive_forecast(x, [6], 4, 3), [[30, 40, 50, 30]])
    with pytest.raises(ValueError, match="needs 3 values"):
        fm.seasonal_naive_forecast(x, [2], 1, 3)


def test_load_csv_column_encoding_and_quoted_rows(tmp_path):
    from rnnlab.datasets.timeseries import load_csv_column

    p = tmp_path / "latin.csv"
    p.write_bytes("d,value\nm0,1\nao\xfbt,2\nm2,3\n".encode("latin-1"))
    with pytest.raises(ValueError) as e:
        load_csv_column(str(p), "value")
    assert "latin.csv: cannot decode byte(s) b'\\xfb' at byte offset 15 (line 3, column 3) as utf-8" in str(e.value)
    x, dates = load_csv_column(str(p), "value", date_column="d", encoding="latin-1")
    assert x.tolist() == [1.0, 2.0, 3.0] and dates[1] == "ao\xfbt"
    q = tmp_path / "q.csv"
    q.write_text('d,value\n"two\nlines",1\nm2,x\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"row 4: column 'value' is not numeric"):
        load_csv_column(str(q), "value")
