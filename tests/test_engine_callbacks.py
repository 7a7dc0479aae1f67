"""Engine.fit's run control as callbacks: TimeBudget (stop between batches), BackupAndRestore (exact resume:
weights, optimizer slots, epoch, random generator, callback state), the callbacks' get_state/set_state."""
import numpy as np
import pytest

import rnnlab
from rnnlab import callbacks
from rnnlab.layers import Dense, Dropout, LSTM


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(48, 6, 3)), rng.normal(size=(48, 2))


def _model():
    rnnlab.set_random_seed(7)
    # fixed layer names: the optimizer state is keyed by weight path (as in a new process)
    m = rnnlab.Sequential([rnnlab.Input((6, 3), dtype="float64"), LSTM(5, dtype="float64", name="lstm"),
                           Dropout(0.3, name="drop"), Dense(2, dtype="float64", name="out")])
    m.compile(rnnlab.optimizers.Adam(0.01), "mse")
    return m


class Clock:
    """expired() turns True at the n-th question (deterministic)."""

    def __init__(self, n):
        self.n, self.calls = n, 0

    def expired(self):
        self.calls += 1
        return self.calls >= self.n


def test_time_budget_stops_between_batches_and_marks_the_partial_epoch():
    x, y = _data()
    m = _model()
    seen = []
    spy = callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(b))
    # 6 batches per epoch; asked once per epoch and once per batch: call 1 + 6 (epoch 1), 8 (epoch 2 begin),
    # 9, 10 (its batches 0, 1), 11 -> expired before batch 2 of epoch 2
    tb = callbacks.TimeBudget(timer=Clock(11))
    h = m.fit(x, y, batch_size=8, epochs=5, verbose=0, callbacks=[tb, spy], validation_data=(x[:8], y[:8]))
    assert seen == [0, 1, 2, 3, 4, 5, 0, 1]
    assert h.epoch == [0, 1] and h.partial_epochs == [1]
    assert tb.stopped_during_epoch == 1 and tb.stopped_before_epoch is None
    assert h.stop_reason == m.stop_reason == "time budget (the timer's budget) reached during epoch 2"
    assert "val_loss" in h.history and len(h.history["val_loss"]) == 2   # the partial epoch is validated
    m2 = _model()
    tb2 = callbacks.TimeBudget(timer=Clock(8))                 # expired at epoch 2's begin: no batch of it
    h2 = m2.fit(x, y, batch_size=8, epochs=5, verbose=0, callbacks=[tb2])
    assert h2.epoch == [0] and h2.partial_epochs == [] and tb2.stopped_before_epoch == 1
    assert h2.stop_reason.endswith("before epoch 2")
    with pytest.raises(ValueError, match="max_minutes must be a number > 0"):
        callbacks.TimeBudget(max_minutes=0)


def _cbs(tmp_path):
    return [callbacks.EarlyStopping("loss", patience=50, restore_best_weights=True),
            callbacks.ReduceLROnPlateau("loss", factor=0.5, patience=1, min_delta=10.0),
            callbacks.ModelCheckpoint(str(tmp_path / "best.npz"), monitor="loss", save_best_only=True),
            callbacks.BackupAndRestore(str(tmp_path / "backup"))]


def test_backup_and_restore_resumes_exactly_after_a_mid_epoch_stop(tmp_path):
    x, y = _data()
    full = _model()
    cf = _cbs(tmp_path / "a")
    hf = full.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=cf)
    assert not (tmp_path / "a" / "backup" / "backup.npz").exists()     # deleted after a normal end
    part = _model()
    cp = _cbs(tmp_path / "b")
    hp = part.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=cp + [callbacks.TimeBudget(timer=Clock(17))])
    assert hp.partial_epochs == [2] and "during epoch 3" in hp.stop_reason
    assert (tmp_path / "b" / "backup" / "backup.npz").exists()         # kept: the run was interrupted
    resumed = _model()                                                 # a new process: same seed, same build
    cr = _cbs(tmp_path / "b")
    hr = resumed.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=cr)
    assert cr[-1].restored_epoch == 2 and hr.epoch == [2, 3]
    for a, b in zip(full.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    sa, sb = full.optimizer.get_state(), resumed.optimizer.get_state()
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
    assert hr.history["loss"] == hf.history["loss"][2:]
    assert cr[1].get_state() == cf[1].get_state()                      # ReduceLROnPlateau went on the same way
    assert float(resumed.optimizer.learning_rate) == float(full.optimizer.learning_rate) < 0.01
    assert cr[0].best == cf[0].best and cr[0].best_epoch == cf[0].best_epoch


def test_backup_of_another_model_is_refused(tmp_path):
    x, y = _data()
    m = _model()
    m.fit(x, y, batch_size=8, epochs=2, verbose=0,
          callbacks=[callbacks.BackupAndRestore(str(tmp_path), delete_checkpoint=False)])
    rnnlab.set_random_seed(7)
    other = rnnlab.Sequential([rnnlab.Input((6, 3), dtype="float64"), LSTM(5, dtype="float64", name="other"),
                               Dropout(0.3), Dense(2, dtype="float64", name="out2")])
    other.compile(rnnlab.optimizers.Adam(0.01), "mse")
    with pytest.raises(ValueError, match="same layer names"):
        other.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[callbacks.BackupAndRestore(str(tmp_path))])


def test_callback_states_round_trip():
    es = callbacks.EarlyStopping("loss", patience=3, restore_best_weights=True)
    es.wait, es.best, es.best_epoch, es.best_weights = 2, 0.25, 4, [np.ones((2, 2))]
    es2 = callbacks.EarlyStopping("loss", patience=3, restore_best_weights=True)
    es2.set_state(es.get_state())
    assert (es2.wait, es2.best, es2.best_epoch) == (2, 0.25, 4)
    np.testing.assert_array_equal(es2.best_weights[0], np.ones((2, 2)))
    fresh = callbacks.EarlyStopping("loss")
    fresh.set_state(callbacks.EarlyStopping("loss").get_state())
    assert fresh.best == np.inf
    rl = callbacks.ReduceLROnPlateau("loss", cooldown=2)
    rl.best, rl.wait, rl.cooldown_counter = 1.5, 1, 2
    rl2 = callbacks.ReduceLROnPlateau("loss", cooldown=2)
    rl2.set_state(rl.get_state())
    assert (rl2.best, rl2.wait, rl2.cooldown_counter) == (1.5, 1, 2)


def test_model_checkpoint_never_saves_a_non_finite_value(tmp_path):
    m = _model()
    cb = callbacks.ModelCheckpoint(str(tmp_path / "m.npz"), monitor="val_loss", save_best_only=True)
    cb.set_model(m)
    cb.on_epoch_end(0, {"val_loss": float("nan")})
    assert not (tmp_path / "m.npz").exists() and cb.best is None
    cb.on_epoch_end(1, {"val_loss": 0.5})
    assert (tmp_path / "m.npz").exists() and cb.best == 0.5
    cb.on_epoch_end(2, {"val_loss": float("-inf")})
    assert cb.best == 0.5


def test_continue_from_epoch_checks_its_argument():
    m = _model()
    with pytest.raises(ValueError, match="non-negative int"):
        m.continue_from_epoch(-1)


def test_backup_and_restore_with_truncated_bptt(tmp_path):
    """Resume composes with fit(tbptt_steps=k): windows interrupted mid-epoch, then resumed, end as one run."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 12, 2)), rng.normal(size=(8, 12, 1))

    def model():
        rnnlab.set_random_seed(2)
        m = rnnlab.Sequential([rnnlab.Input((None, 2), batch_size=4, dtype="float64"),
                               LSTM(3, stateful=True, return_sequences=True, dtype="float64", name="rec"),
                               Dense(1, dtype="float64", name="head")])
        m.compile(rnnlab.optimizers.Adam(0.01), "mse")
        return m

    full = model()
    full.fit(x, y, batch_size=4, tbptt_steps=4, epochs=3, verbose=0,
             callbacks=[callbacks.BackupAndRestore(str(tmp_path / "a"))])
    part = model()
    # 2 batches x 3 windows = 6 steps per epoch: 1 + 6 (epoch 1), 8 (epoch 2 begin), 9, 10 -> stop before step 2
    h = part.fit(x, y, batch_size=4, tbptt_steps=4, epochs=3, verbose=0,
                 callbacks=[callbacks.BackupAndRestore(str(tmp_path / "b")), callbacks.TimeBudget(timer=Clock(10))])
    assert h.partial_epochs == [1]
    resumed = model()
    resumed.fit(x, y, batch_size=4, tbptt_steps=4, epochs=3, verbose=0,
                callbacks=[callbacks.BackupAndRestore(str(tmp_path / "b"))])
    for a, b in zip(full.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
