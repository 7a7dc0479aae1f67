"""rnnlab.tasks.common.finish_run: the final metrics line and metrics.json (rank 0 alone under mpiexec)."""
import json
import math

from rnnlab import distributed
from rnnlab.tasks import common


def test_finish_run_writes_metrics_json_as_floats(tmp_path, capsys):
    import numpy as np

    clean = common.finish_run(str(tmp_path), {"accuracy": np.float32(0.5), "epochs_run": 3, "best_epoch": None})
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == clean == {"accuracy": 0.5, "epochs_run": 3, "best_epoch": None}
    assert json.loads(capsys.readouterr().out.strip()) == clean


def test_only_rank_zero_writes_metrics_json(tmp_path, monkeypatch):
    # a non-root rank ran no run callbacks: its summary (epochs_run 0) must not overwrite rank 0's file
    (tmp_path / "metrics.json").write_text(json.dumps({"epochs_run": 5}))
    monkeypatch.setattr(distributed, "is_root", lambda: False)
    common.finish_run(str(tmp_path), {"epochs_run": 0, "loss": math.nan})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"epochs_run": 5}
