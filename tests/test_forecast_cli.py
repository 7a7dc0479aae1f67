"""rnnlab train forecast: tiny end-to-end runs (rnn and esn), outputs, baselines, bad input."""
import json
import os

import numpy as np
import pytest

import rnnlab
from rnnlab import cli
from rnnlab.datasets.timeseries import sum_of_sines
from rnnlab.models import EchoStateNetwork
from rnnlab.tasks.forecast import estimate_period


def _last_json(out):
    return json.loads(out.strip().splitlines()[-1])


def _csv(tmp_path, values, name="s.csv", header="month,value"):
    p = tmp_path / name
    rows = [header] + [f"m{i},{v}" for i, v in enumerate(values)]
    p.write_text("\n".join(rows) + "\n")
    return str(p)


def test_rnn_forecast_from_csv(tmp_path, capsys):
    x = 10 + sum_of_sines(240, periods=[12.0], noise=0.05, seed=0)
    out = tmp_path / "run"
    rc = cli.main(["train", "forecast", "--csv", _csv(tmp_path, x), "--column", "value", "--date-column", "month",
                   "--window", "12", "--horizon", "3", "--epochs", "2", "--units", "4", "--out", str(out),
                   "--verbose", "0", "--cell", "gru"])
    assert rc == 0
    m = _last_json(capsys.readouterr().out)
    assert m == json.loads((out / "metrics.json").read_text())
    for k in ("test_rmse", "test_mae", "test_nrmse", "test_naive_rmse", "test_seasonal_naive_rmse", "valid_rmse"):
        assert np.isfinite(m[k]), k
    assert m["period"] == 12 and m["horizon"] == 3
    # the seasonal-naive baseline is nearly exact on a clean periodic series, the naive one is not
    assert m["test_seasonal_naive_nrmse"] < 0.2 < m["test_naive_nrmse"]
    model = rnnlab.load_model(str(out / "model.npz"))
    assert model.predict(np.zeros((2, 12, 1), dtype="float32")).shape == (2, 3)
    assert os.path.getsize(out / "forecast.png") > 1000
    cfg = json.loads((out / "forecast.json").read_text())
    assert cfg["scaler"]["kind"] == "standard" and cfg["bounds"][0] < cfg["bounds"][1]


def test_esn_forecast_beats_baselines(tmp_path, capsys):
    out = tmp_path / "esn"
    rc = cli.main(["train", "forecast", "--generate", "mackey-glass", "--length", "700", "--window", "20",
                   "--horizon", "5", "--model", "esn", "--esn-units", "100", "--out", str(out), "--verbose", "0",
                   "--no-plot"])
    assert rc == 0
    m = _last_json(capsys.readouterr().out)
    assert m["test_nrmse"] < 0.1 * m["test_naive_nrmse"]
    assert "plot" not in m
    esn = EchoStateNetwork.load(str(out / "model.npz"))
    assert esn.units == 100


def test_residual_and_log_options(tmp_path, capsys):
    x = np.exp(0.01 * np.arange(200)) * (10 + sum_of_sines(200, periods=[12.0], noise=0.0))
    rc = cli.main(["train", "forecast", "--csv", _csv(tmp_path, x), "--column", "1", "--window", "6",
                   "--horizon", "2", "--epochs", "1", "--units", "3", "--residual", "--log", "--out",
                   str(tmp_path / "o"), "--verbose", "0", "--no-plot", "--period", "12"])
    assert rc == 0
    m = _last_json(capsys.readouterr().out)
    assert m["period"] == 12 and np.isfinite(m["test_rmse"])


@pytest.mark.parametrize("content, extra, message", [
    ("month,value\nm0,1\nm1,x\nm2,3\n", [], "row 3: column 'value' is not numeric: 'x'"),
    ("month,value\nm0,1\nm1,2\n", ["--column", "price"], "column 'price' not found"),
    ("month,value\nm0,1\nm1,\nm2,3\n", [], "missing value"),
    ("month,value\n" + "".join(f"m{i},{i}\n" for i in range(10)), ["--window", "20"],
     "window (20) + horizon (1) = 21 is longer than the series (10 values)"),
    ("month,value\n" + "".join(f"m{i},{i - 5}\n" for i in range(40)), ["--log"], "--log needs positive values"),
])
def test_bad_input_exits_with_clear_error(tmp_path, capsys, content, extra, message):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    args = ["train", "forecast", "--csv", str(p), "--window", "2", "--epochs", "1", "--out", str(tmp_path / "o"),
            "--verbose", "0", "--no-plot"]
    if "--column" not in extra:
        args += ["--column", "value"]
    rc = cli.main(args + extra)
    assert rc == 1
    assert message in capsys.readouterr().err


def test_gap_interpolation_flag(tmp_path, capsys):
    rows = "".join(f"m{i},{'' if i == 7 else 5 + np.sin(i / 3)}\n" for i in range(80))
    p = tmp_path / "gap.csv"
    p.write_text("month,value\n" + rows)
    rc = cli.main(["train", "forecast", "--csv", str(p), "--column", "value", "--missing", "interpolate",
                   "--window", "5", "--epochs", "1", "--units", "2", "--out", str(tmp_path / "o"), "--verbose", "0",
                   "--no-plot"])
    assert rc == 0


def test_estimate_period():
    assert estimate_period(sum_of_sines(400, periods=[12.0], noise=0.1) + 0.05 * np.arange(400)) == 12
    assert estimate_period(sum_of_sines(600, periods=[24.0, 60.0], noise=0.0)) == 120
    assert estimate_period(np.arange(50.0)) == 1  # a pure trend has no season


def test_max_minutes_stops_training(tmp_path, capsys):
    x = 10 + sum_of_sines(200, periods=[12.0], noise=0.05, seed=0)
    rc = cli.main(["train", "forecast", "--csv", _csv(tmp_path, x), "--column", "value", "--window", "6",
                   "--epochs", "500", "--patience", "500", "--units", "2", "--max-minutes", "0.00001",
                   "--out", str(tmp_path / "o"), "--verbose", "0", "--no-plot"])
    assert rc == 0
    assert _last_json(capsys.readouterr().out)["epochs_run"] == 1


def test_directory_and_non_utf8_csv_are_one_line_errors(tmp_path, capsys):
    args = ["--column", "value", "--window", "3", "--epochs", "1", "--units", "2", "--out", str(tmp_path / "o"),
            "--verbose", "0", "--no-plot"]
    assert cli.main(["train", "forecast", "--csv", str(tmp_path)] + args) == 1
    assert capsys.readouterr().err.strip() == f"rnnlab: error: {tmp_path}: is a directory, expected a file"
    latin = tmp_path / "latin.csv"
    latin.write_bytes(("month,value\n" + "".join(f"m{i},{i % 5}\n" for i in range(3)) + "ao\xfbt,4\n"
                       + "".join(f"m{i},{i % 5}\n" for i in range(30))).encode("latin-1"))
    assert cli.main(["train", "forecast", "--csv", str(latin)] + args) == 1
    err = capsys.readouterr().err
    assert "latin.csv: cannot decode byte(s) b'\\xfb' at byte offset 29 (line 5, column 3) as utf-8" in err
    assert "--encoding" in err and "codec can't decode" not in err
    assert cli.main(["train", "forecast", "--csv", str(latin), "--encoding", "latin-1"] + args) == 0


@pytest.mark.parametrize("model", ["rnn", "esn"])
def test_forecast_model_given_to_other_commands_names_its_task(tmp_path, capsys, model):
    out = tmp_path / "run"
    assert cli.main(["train", "forecast", "--generate", "sines", "--length", "120", "--window", "6", "--epochs", "1",
                     "--units", "2", "--esn-units", "10", "--washout", "5", "--model", model, "--out", str(out),
                     "--verbose", "0", "--no-plot"]) == 0
    capsys.readouterr()
    path = out / "model.npz"
    # still loadable as what it is
    m = rnnlab.load_model(path) if model == "rnn" else EchoStateNetwork.load(path)
    assert m is not None
    for argv, needs in ((["predict", "--model", str(path), "hi"], "classify"),
                        (["generate", "--model", str(path)], "charlm"), (["tag", "--model", str(path), "hi"], "tag")):
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert f"{path} is a 'forecast' model (from 'rnnlab train forecast'); this command needs a '{needs}'" in err
    # a file written before forecast models had a '__task__' entry is recognised too
    legacy = tmp_path / "legacy" / "model.npz"
    legacy.parent.mkdir()
    if model == "rnn":
        (legacy.parent / "forecast.json").write_text((out / "forecast.json").read_text())
    with np.load(path, allow_pickle=False) as d:
        np.savez(legacy, **{k: d[k] for k in d.files if k != "__task__"})
    assert cli.main(["predict", "--model", str(legacy), "hi"]) == 1
    assert "is a 'forecast' model" in capsys.readouterr().err


def test_garbage_esn_file_is_not_an_rnnlab_model(tmp_path):
    p = tmp_path / "g.npz"
    p.write_bytes(b"hello not a zip")
    with pytest.raises(ValueError, match="is not an rnnlab model file") as e:
        EchoStateNetwork.load(p)
    assert "pickle" not in str(e.value)


def test_rnn_forecast_writes_history_for_plot(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "forecast", "--generate", "sines", "--length", "120", "--window", "6", "--epochs", "3",
                     "--patience", "10", "--units", "2", "--out", str(out), "--verbose", "0", "--no-plot"]) == 0
    capsys.readouterr()
    hist = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3] and {"loss", "val_loss"} <= set(hist[0])
    pytest.importorskip("matplotlib")
    assert cli.main(["plot", str(out)]) == 0


# ------------------------------------------------------------------ checkpoints, --resume, early stopping
def _weights(path):
    with np.load(path, allow_pickle=False) as d:
        return {k: d[k] for k in d.files if k.startswith(("w:", "opt:"))}


def _rnn_args(tmp_path, out, epochs, *extra):
    return ["train", "forecast", "--generate", "sines", "--length", "160", "--window", "8", "--horizon", "2",
            "--units", "4", "--dropout", "0.2", "--batch-size", "16", "--epochs", str(epochs), "--patience", "50",
            "--seed", "4", "--out", str(tmp_path / out), "--verbose", "0", "--no-plot", *extra]


def test_resume_equals_uninterrupted(tmp_path, capsys):
    """1 epoch, then --resume to 3: the same weights, optimizer state, losses and metrics as 3 epochs in one
    run (the epoch order and dropout masks come from the checkpoint's RNG state)."""
    assert cli.main(_rnn_args(tmp_path, "full", 3)) == 0
    full = _last_json(capsys.readouterr().out)
    assert cli.main(_rnn_args(tmp_path, "part", 1)) == 0
    assert _last_json(capsys.readouterr().out)["epochs_run"] == 1
    assert cli.main(_rnn_args(tmp_path, "part", 3, "--resume")) == 0
    part = _last_json(capsys.readouterr().out)
    a, b = _weights(tmp_path / "full" / "checkpoint.npz"), _weights(tmp_path / "part" / "checkpoint.npz")
    assert set(a) == set(b) and any(k.startswith("opt:") for k in a)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ha = json.loads((tmp_path / "full" / "history.json").read_text())
    hb = json.loads((tmp_path / "part" / "history.json").read_text())
    assert [h["epoch"] for h in hb] == [1, 2, 3]
    assert [(h["loss"], h["val_loss"]) for h in ha] == [(h["loss"], h["val_loss"]) for h in hb]
    for k in ("test_rmse", "valid_rmse", "best_epoch", "epochs_run"):
        assert full[k] == part[k], k
    # the final model file is a plain model with the task entry (the forecast.json settings)
    model = rnnlab.load_model(str(tmp_path / "part" / "model.npz"))
    assert model.predict(np.zeros((1, 8, 1), np.float32)).shape == (1, 2)
    # one more epoch changes the weights (the comparison above can fail)
    assert cli.main(_rnn_args(tmp_path, "part", 4, "--resume")) == 0
    capsys.readouterr()
    c = _weights(tmp_path / "part" / "checkpoint.npz")
    assert any(not np.array_equal(c[k], a[k]) for k in a if k.startswith("w:"))


def test_resume_errors(tmp_path, capsys):
    assert cli.main(_rnn_args(tmp_path, "run", 1, "--resume")) == 1
    assert "no checkpoint" in capsys.readouterr().err
    assert cli.main(_rnn_args(tmp_path, "run", 1)) == 0
    capsys.readouterr()
    other = _rnn_args(tmp_path, "run", 2, "--resume")
    other[other.index("--units") + 1] = "5"
    assert cli.main(other) == 1
    assert "other settings" in capsys.readouterr().err
    esn = ["train", "forecast", "--generate", "sines", "--length", "200", "--window", "8", "--model", "esn",
           "--out", str(tmp_path / "esn"), "--verbose", "0", "--no-plot", "--resume"]
    assert cli.main(esn) == 1
    assert "ESN is fitted in one pass" in capsys.readouterr().err


def test_early_stopping_keeps_the_best_epoch(tmp_path, capsys, monkeypatch):
    """Validation losses 3, 1, 2, 2, ... with --patience 2: training stops after epoch 4 and the model kept is
    epoch 2's (the same weights as a run of 2 epochs)."""
    from rnnlab.tasks import forecast

    values = iter([3.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    monkeypatch.setattr(forecast._Adapter, "evaluate", lambda self: {"loss": next(values)})
    args = _rnn_args(tmp_path, "es", 20)
    args[args.index("--patience") + 1] = "2"
    assert cli.main(args) == 0
    m = _last_json(capsys.readouterr().out)
    assert m["epochs_run"] == 4 and m["best_epoch"] == 2
    assert m["stop_reason"].startswith("early stopping: no better val loss for 2 epoch(s)")
    monkeypatch.undo()
    assert cli.main(_rnn_args(tmp_path, "two", 2)) == 0
    capsys.readouterr()
    a, b = ({k: v for k, v in _weights(tmp_path / d / f).items() if k.startswith("w:")}
            for d, f in (("es", "model.npz"), ("two", "checkpoint.npz")))
    assert set(a) == set(b) and a
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_patience_below_one_is_refused(tmp_path, capsys):
    args = _rnn_args(tmp_path, "p0", 2)
    args[args.index("--patience") + 1] = "0"
    assert cli.main(args) == 1
    assert "--patience must be >= 1, got 0" in capsys.readouterr().err
