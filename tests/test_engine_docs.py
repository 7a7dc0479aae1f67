"""The code of docs/engine.md runs (its blocks in order, in one namespace) and does what the text says."""
import re
from pathlib import Path

import numpy as np

DOC = Path(__file__).resolve().parent.parent / "docs" / "engine.md"


def test_engine_doc_examples_run(tmp_path, capsys, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "mkdtemp", lambda: str(tmp_path))
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 3
    ns = {}
    for b in blocks:
        exec(compile(b, str(DOC), "exec"), ns)
    assert "['accuracy', 'loss', 'val_accuracy', 'val_loss']" in capsys.readouterr().out
    assert ns["custom"].history.history["skipped"][0] in (0.0, 1.0)
    assert not (tmp_path / "backup.npz").exists()          # a normal end deletes the backup
    full = ns["model"].get_weights()
    # interrupted after epoch 1 (BackupAndRestore keeps the backup), then run again: the same weights
    import rnnlab

    orig = rnnlab.callbacks.TimeBudget.expired
    calls = {"n": 0}

    def expired(self):
        calls["n"] += 1
        return calls["n"] > 6       # epoch 1: 1 + 4 batches; epoch 2 begins, its first batch is refused
    monkeypatch.setattr(rnnlab.callbacks.TimeBudget, "expired", expired)
    ns["run"]()
    assert (tmp_path / "backup.npz").exists()
    monkeypatch.setattr(rnnlab.callbacks.TimeBudget, "expired", orig)
    resumed = ns["run"]().get_weights()
    for a, b in zip(full, resumed):
        np.testing.assert_array_equal(a, b)
