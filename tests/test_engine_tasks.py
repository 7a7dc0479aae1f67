"""The train commands run in the one engine: TrainLoop is one Model.fit call with the run's callbacks (the
time budget, the best model, plateau decay, early stopping, the checkpoint), for engine adapters and for
adapters that still train their own epochs (EpochSteps)."""
import json

import numpy as np
import pytest

from rnnlab import callbacks, cli
from rnnlab.datasets.timeseries import sum_of_sines
from rnnlab.models.engine import Engine


def _csv(tmp_path):
    x = 10 + sum_of_sines(200, periods=[12.0], noise=0.05, seed=0)
    p = tmp_path / "s.csv"
    p.write_text("value\n" + "\n".join(str(v) for v in x) + "\n")
    return str(p)


@pytest.fixture
def fit_calls(monkeypatch):
    calls = []
    orig = Engine.fit

    def spy(self, *a, **k):
        calls.append((type(self).__name__, k))
        return orig(self, *a, **k)
    monkeypatch.setattr(Engine, "fit", spy)
    return calls


def test_a_train_command_is_one_fit_call_with_the_run_callbacks(tmp_path, capsys, fit_calls):
    out = tmp_path / "run"
    rc = cli.main(["train", "forecast", "--csv", _csv(tmp_path), "--column", "value", "--window", "12",
                   "--epochs", "3", "--units", "4", "--patience", "5", "--out", str(out), "--verbose", "0",
                   "--no-plot"])
    assert rc == 0
    runs = [c for c in fit_calls if c[0] == "Sequential" and c[1].get("epochs") == 3]
    assert len(runs) == 1, fit_calls
    kinds = {type(cb).__name__ for cb in runs[0][1]["callbacks"]}
    assert {"TimeBudget", "EarlyStopping"} <= kinds
    assert any(isinstance(cb, callbacks.ModelCheckpoint) and cb.save_best_only for cb in runs[0][1]["callbacks"])
    hist = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3] and all("val_loss" in h for h in hist)


def test_resume_of_a_train_command_starts_fit_at_the_checkpoint_epoch(tmp_path, capsys, fit_calls):
    csv = _csv(tmp_path)

    def argv(out, epochs):
        return ["train", "forecast", "--csv", csv, "--column", "value", "--window", "12", "--units", "4",
                "--out", str(tmp_path / out), "--verbose", "0", "--no-plot", "--dropout", "0.2", "--seed", "5",
                "--epochs", str(epochs)]
    assert cli.main(argv("run", 1)) == 0
    assert cli.main(argv("run", 3) + ["--resume"]) == 0
    assert cli.main(argv("full", 3)) == 0
    capsys.readouterr()
    runs = [c[1] for c in fit_calls if c[0] == "Sequential" and c[1].get("callbacks")]
    assert [(k["initial_epoch"], k["epochs"]) for k in runs] == [(0, 1), (1, 3), (0, 3)]
    with np.load(tmp_path / "run" / "checkpoint.npz") as a, np.load(tmp_path / "full" / "checkpoint.npz") as b:
        keys = [k for k in a.files if k.startswith(("w:", "opt:"))]
        assert keys and keys == [k for k in b.files if k.startswith(("w:", "opt:"))]
        for k in keys:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


class _OwnEpochs:
    """An adapter that runs its own epochs (the TrainLoop protocol before the engine)."""

    def __init__(self):
        from rnnlab import optimizers

        self.optimizer, self.epochs, self.saved = optimizers.SGD(0.1), [], []

    def train_epoch(self, epoch, timer):
        self.epochs.append(epoch)
        return {"loss": 1.0 / (epoch + 1)}

    def evaluate(self):
        return {}

    def save(self, path, run):
        self.saved.append(path.rsplit("/", 1)[-1])
        open(path, "wb").close()


def test_an_adapter_with_its_own_epochs_runs_as_engine_steps(tmp_path, fit_calls):
    from rnnlab.tasks.runstate import TrainLoop

    ad = _OwnEpochs()
    run = TrainLoop(str(tmp_path), ad, monitor="loss", mode="min", verbose=0, patience=2).fit(3)
    assert [c[0] for c in fit_calls] == ["EpochSteps"]
    assert ad.epochs == [0, 1, 2] and run["best_epoch"] == 3 and run["best"] == pytest.approx(1 / 3)
    assert ad.saved.count("checkpoint.npz") == 3 and ad.saved.count("model.npz") == 3
    assert [h["loss"] for h in run["history"]] == pytest.approx([1.0, 0.5, 1 / 3])


def test_an_own_epochs_adapter_cut_by_the_budget_names_it(tmp_path, fit_calls):
    """An adapter whose epoch reports ``partial`` (its timer ran out) stops the run; the reason names the
    loop's budget as the engine's TimeBudget words it."""
    from rnnlab.tasks.runstate import TrainLoop

    class Cut(_OwnEpochs):
        def train_epoch(self, epoch, timer):
            return {**super().train_epoch(epoch, timer), "partial": epoch == 1}

    ad = Cut()
    run = TrainLoop(str(tmp_path), ad, monitor="loss", mode="min", verbose=0, max_minutes=100,
                    max_cpu_minutes=5).fit(4)
    assert ad.epochs == [0, 1]
    assert run["stop_reason"] == "time budget (100 wall minutes / 5 CPU minutes) reached during epoch 2"


def test_no_module_outside_models_calls_the_engines_private_methods():
    """Issue 16: the step other modules use is public API (train_step, loss_step, backpropagate, ...)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "rnnlab"
    private = re.compile(r"\.(_run|_backprop|_loss_and_grads|_train_batch|_train_step|_out_metrics|_prepare_x|"
                         r"_prepare_inputs|_evaluate_arrays|_forward)\b(?!_)")
    bad = []
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root).as_posix()
        if rel.startswith("models/"):
            continue
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if private.search(code) and "self._" not in code:
                bad.append(f"{rel}:{i}: {line.strip()}")
    assert not bad, bad
    dist = (root / "distributed.py").read_text(encoding="utf-8")
    assert not re.search(r"\bmodel\._", dist)
