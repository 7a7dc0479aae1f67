"""Data-parallel training on MPI (rnnlab.distributed): N ranks with global batch B train exactly as one process.

The equivalence tests launch ``mpiexec -n 2 python tests/test_distributed.py train-all - OUT`` once (this
file's ``__main__`` is the worker) with a timeout, and compare rank 0's weights after 3 training steps with one
process here (and rank 1's with rank 0's). Where mpi4py or mpiexec is missing, or MPI cannot start, they
skip with the reason.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

import rnnlab  # noqa: E402
from rnnlab import distributed  # noqa: E402
from rnnlab.layers import LSTM, Concatenate, Dense, Embedding  # noqa: E402

V, T, B = 20, 7, 8
V_SEQ = 400  # the seq case's vocabulary: the ranks' rows are gathered (V = 20 elsewhere: the dense reduction)


# ------------------------------------------------------------------------ the three models (shared with the worker)
def _seq_data(n=24):
    """Padded id sequences of varied lengths (mask_zero: per-rank mask counts differ), per-step labels and
    per-sample weights."""
    r = np.random.default_rng(1)
    x = r.integers(1, V_SEQ, size=(n, T))
    lengths = r.integers(2, T + 1, size=n)
    for i, L in enumerate(lengths):
        x[i, L:] = 0
    y = r.integers(0, 3, size=(n, T))
    sw = r.uniform(0.2, 2.0, size=n)
    return x, y, sw


def build_seq(dtype):
    rnnlab.set_floatx(dtype)
    rnnlab.set_random_seed(7)
    m = rnnlab.Sequential([rnnlab.Input((None,), dtype="int32"), Embedding(V_SEQ, 6, mask_zero=True),
                           LSTM(5, return_sequences=True), Dense(3, activation="softmax")])
    # global-norm clipping small enough to act: it must see the reduced gradient
    m.compile(rnnlab.optimizers.Adam(0.05, global_clipnorm=0.05), "sparse_categorical_crossentropy",
              metrics=["accuracy"])
    return m


def run_seq(m):
    x, y, sw = _seq_data()
    return m.fit(x, y, batch_size=B, epochs=1, verbose=0, shuffle=True, sample_weight=sw)


def build_tbptt(dtype, batch):
    rnnlab.set_floatx(dtype)
    rnnlab.set_random_seed(11)
    m = rnnlab.Sequential([rnnlab.Input((None,), dtype="int32", batch_size=batch), Embedding(V, 6),
                           LSTM(5, stateful=True, return_sequences=True), Dense(V, activation="softmax")])
    m.compile(rnnlab.optimizers.SGD(0.5, momentum=0.5), "sparse_categorical_crossentropy")
    return m


def run_tbptt(m):
    r = np.random.default_rng(3)
    stream = r.integers(0, V, size=(B, 16))  # B streams of 15 steps, 3 windows of 5 = 3 updates
    return m.fit(stream[:, :-1], stream[:, 1:], batch_size=B, epochs=1, verbose=0, shuffle=False, tbptt_steps=5)


def build_func(dtype):
    rnnlab.set_floatx(dtype)
    rnnlab.set_random_seed(5)
    tok = rnnlab.Input((None,), dtype="int32", name="tokens")
    num = rnnlab.Input((4,), name="numbers")
    h = LSTM(5)(Embedding(V, 6)(tok))
    z = Concatenate()([h, Dense(3, activation="tanh")(num)])
    out = Dense(1, activation="sigmoid")(z)
    m = rnnlab.Model([tok, num], out)
    m.compile(rnnlab.optimizers.RMSprop(0.05), "binary_crossentropy", metrics=["accuracy"])
    return m


def run_func(m):
    # 17 samples, batch 8: batches of 8, 8 and 1 (the last leaves rank 1 without a sample)
    r = np.random.default_rng(4)
    tok = r.integers(0, V, size=(17, T))
    num = r.normal(size=(17, 4))
    y = r.integers(0, 2, size=(17, 1)).astype(float)
    return m.fit({"tokens": tok, "numbers": num}, y, batch_size=B, epochs=1, verbose=0, shuffle=True)


def run_callbacks(m):
    """Callbacks run on rank 0 alone; the learning rate they set and the weights EarlyStopping restores must
    reach every rank. Epoch 2's rate is so high that its loss is worse: epoch 1's weights come back."""
    from rnnlab.callbacks import EarlyStopping, LearningRateScheduler
    x, y, sw = _seq_data()
    return m.fit(x, y, batch_size=B, epochs=3, verbose=0, shuffle=True, sample_weight=sw,
                 callbacks=[LearningRateScheduler(lambda e: [0.05, 3.0, 0.01][e]),
                            EarlyStopping(monitor="loss", patience=1, restore_best_weights=True)])


def build_streams(dtype, batch=B):
    """A stateful LM built for the *global* batch (as one process and ``rnnlab train charlm/wordlm`` build it):
    under mpiexec each rank carries its rows of the streams; dropout masks must be the one process's rows."""
    rnnlab.set_floatx(dtype)
    rnnlab.set_random_seed(13)
    m = rnnlab.Sequential([rnnlab.Input((None,), dtype="int32", batch_size=batch), Embedding(V, 6),
                           rnnlab.layers.SpatialDropout1D(0.3),
                           LSTM(5, stateful=True, return_sequences=True, dropout=0.2, recurrent_dropout=0.2),
                           rnnlab.layers.Dropout(0.25), Dense(V, activation="softmax")])
    m.compile(rnnlab.optimizers.Adam(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def run_streams(m):
    # 2 batches of B streams of 12 steps, windows of 5 (5, 5, 2 new steps): states reset per batch, carried
    # between windows; 2 epochs
    r = np.random.default_rng(8)
    stream = r.integers(0, V, size=(2 * B, 13))
    val = r.integers(0, V, size=(B, 13))  # rank 0 validates from the gathered (B, units) states
    return m.fit(stream[:, :-1], stream[:, 1:], batch_size=B, epochs=2, verbose=0, shuffle=True, tbptt_steps=5,
                 validation_data=(val[:, :-1], val[:, 1:]))


class _Batches(rnnlab.utils.PyDataset):
    """Padded, masked batches with sample weights drawn from rnnlab's generator every epoch (the train commands'
    EpochBatchSet): 17 samples in batches of 8, 8 and 1 (the last leaves rank 1 without a row)."""

    def __init__(self):
        super().__init__()
        self.x, self.y, self.sw = _seq_data(17)
        self.order = None

    def __len__(self):
        return 3

    def on_epoch_begin(self):
        from rnnlab import backend
        self.order = backend.rng().permutation(len(self.x))

    def __getitem__(self, i):
        idx = self.order[i * B:(i + 1) * B]
        return self.x[idx], self.y[idx], self.sw[idx]


def build_dataset_model(dtype):
    rnnlab.set_floatx(dtype)
    rnnlab.set_random_seed(17)
    m = rnnlab.Sequential([rnnlab.Input((None,), dtype="int32"), Embedding(V_SEQ, 6, mask_zero=True),
                           LSTM(5, return_sequences=True, dropout=0.2), rnnlab.layers.Dropout(0.3),
                           Dense(3, activation="softmax")])
    m.compile(rnnlab.optimizers.Adam(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def run_dataset(m):
    return m.fit(_Batches(), epochs=2, verbose=0)


def build_regularized(dtype):
    """Weight and activity regularizers and a constraint: the penalties enter the loss and gradient once, the
    constraint runs after every update, on every rank."""
    rnnlab.set_floatx(dtype)
    rnnlab.set_random_seed(19)
    m = rnnlab.Sequential([rnnlab.Input((None,), dtype="int32"), Embedding(V, 6),
                           LSTM(5, kernel_regularizer=rnnlab.regularizers.L2(0.05),
                                recurrent_constraint=rnnlab.constraints.MaxNorm(0.3)),
                           Dense(3, activation="softmax", activity_regularizer=rnnlab.regularizers.L1(0.1),
                                 kernel_regularizer=rnnlab.regularizers.L1L2(0.01, 0.02))])
    m.compile(rnnlab.optimizers.Adam(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def run_regularized(m):
    r = np.random.default_rng(9)
    x, y = r.integers(0, V, size=(17, T)), r.integers(0, 3, size=17)
    return m.fit(x, y, batch_size=B, epochs=2, verbose=0, shuffle=True)


CASES = {
    "seq": (lambda dt, n: build_seq(dt), run_seq),
    "regularized": (lambda dt, n: build_regularized(dt), run_regularized),
    "tbptt": (lambda dt, n: build_tbptt(dt, B // n), run_tbptt),
    "func": (lambda dt, n: build_func(dt), run_func),
    "callbacks": (lambda dt, n: build_seq_sgd(dt), run_callbacks),
    "streams": (lambda dt, n: build_streams(dt), run_streams),
    "dataset": (lambda dt, n: build_dataset_model(dt), run_dataset),
}


def build_seq_sgd(dtype):
    m = build_seq(dtype)
    m.compile(rnnlab.optimizers.SGD(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def train(case, dtype, nranks=1, logs=None, states=None):
    build, run = CASES[case]
    m = build(dtype, nranks)
    if nranks > 1 and distributed.rank() != 0:
        # other ranks start from different weights: fit must take rank 0's
        for _, owner, w in m.iter_weights():
            owner.params[w][...] = np.random.default_rng(99 + distributed.rank()).normal(
                size=owner.params[w].shape)
    rows = []  # the rows each training step's forward pass ran on (a rank runs only its shard)
    run_model = m._run

    def counting(xs, training, *a, **k):
        if training:
            rows.append(len(xs[0]))
        return run_model(xs, training, *a, **k)
    m._run = counting
    h = run(m)
    if logs is not None:
        logs["_rows"] = np.array(rows, np.float64)
        logs.update({k: np.array(v, np.float64) for k, v in h.history.items()})
    if states is not None:  # the stateful layers' states after fit (under MPI: every rank's rows gathered)
        states.extend(s.copy() for layer in m.layers if getattr(layer, "stateful", False) for s in layer.states)
    return [owner.params[w].copy() for _, owner, w in m.iter_weights()]


# ------------------------------------------------------------------------ launching
def _mpiexec():
    exe = Path(sys.executable).parent / "mpiexec"
    return str(exe) if exe.exists() else shutil.which("mpiexec")


def _mpi_ready():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install 'rnnlab[mpi]')"
    if _mpiexec() is None:
        return "no mpiexec found next to the Python executable or on PATH"
    return None


def launch(args, n=2, timeout=120, env=None):
    why = _mpi_ready()
    if why:
        pytest.skip(why)
    e = dict(os.environ, **(env or {}))
    e.pop("PYTEST_CURRENT_TEST", None)
    try:
        p = subprocess.run([_mpiexec(), "-n", str(n), sys.executable, str(HERE), *args], capture_output=True,
                           text=True, timeout=timeout, env=e, cwd=str(ROOT))
    except subprocess.TimeoutExpired as ex:
        pytest.fail(f"mpiexec -n {n} did not finish in {timeout} s: {ex.stdout} {ex.stderr}")
    if p.returncode != 0 and "PMI" in p.stderr and "rnnlab" not in p.stderr:
        pytest.skip(f"MPI could not start here: {p.stderr[-400:]}")
    return p


@pytest.fixture(autouse=True)
def _floatx():
    old = rnnlab.floatx()
    yield
    rnnlab.set_floatx(old)


EQUIV_CASES = ["seq", "tbptt", "func", "callbacks", "streams", "dataset", "regularized"]


@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory):
    """Every (case, dtype) trained once on 2 ranks, in one mpiexec launch (start-up is the slow part)."""
    out = tmp_path_factory.mktemp("two_ranks")
    p = launch(["train-all", "-", str(out)], timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return out


@pytest.mark.parametrize("case", EQUIV_CASES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_two_ranks_equal_one_process(case, dtype, two_rank_runs):
    tmp_path = two_rank_runs / f"{case}-{dtype}"
    ref_logs, ref_states = {}, []
    ref = train(case, dtype, logs=ref_logs, states=ref_states)
    got = [np.load(tmp_path / f"rank{r}.npz") for r in (0, 1)]
    # the stateful layers end with one process's states (each rank carried its rows; gathered after the epoch)
    if case == "tbptt":  # layers built for B // 2 streams per rank keep their own rows
        ref_states = []
    else:
        assert len(ref_states) == len([k for k in got[0].files if k.startswith("state")])
    if case == "streams":
        assert len(ref_states) == 2 and ref_states[0].shape == (B, 5)
    for i, st in enumerate(ref_states):
        np.testing.assert_array_equal(got[0][f"state{i}"], got[1][f"state{i}"])
        np.testing.assert_allclose(got[0][f"state{i}"], st, **(dict(rtol=1e-10, atol=1e-12) if dtype == "float64"
                                                                else dict(rtol=1e-3, atol=1e-5)))
    # both ways of reducing Embedding rows are covered: gathered rows (seq, V=400), the dense matrix (V=20)
    # the epoch's logs (loss and the metrics, reduced over the ranks) are those of one process
    assert set(ref_logs) == {k[4:] for k in got[0].files if k.startswith("log_")}, ref_logs
    # each rank's forward passes ran on its shard of every global batch (rank 1 has no row of a 1-row batch)
    one, r0, r1 = ref_logs.pop("_rows"), got[0]["log__rows"], got[1]["log__rows"]
    assert list(r0) == [b - b // 2 for b in one], (one, r0)
    assert list(r1) == [b // 2 for b in one if b // 2], (one, r1)
    if case == "dataset":
        assert list(one) == [8, 8, 1] * 2
    for k, v in ref_logs.items():
        np.testing.assert_allclose(got[0][f"log_{k}"], v, rtol=1e-9 if dtype == "float64" else 1e-4)
    if case in ("seq", "func"):
        assert "accuracy" in ref_logs
    if case == "streams":
        assert "val_loss" in ref_logs and "val_accuracy" in ref_logs
    if case == "seq":
        assert int(got[0]["gather"]) >= 3
    if case == "func":
        assert int(got[0]["dense"]) >= 1
    # float64: equal to ~1e-12. float32: the sums run in another order (per rank, then across ranks), and Adam /
    # RMSprop divide by the gradient's size, which magnifies the rounding of near-cancelling sums; so the 2-rank
    # float32 run must be about as close to the float64 result as the 1-process float32 run is (the same order:
    # within 4x; measured on the seq case with Adam: 1.9e-5 against 6.5e-6, one embedding entry), and equal to
    # it to float32 rounding for 99.5% of the entries
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=1e-4, atol=1e-6)
    if dtype == "float32":
        exact = train(case, "float64")
        err_one = max(float(np.max(np.abs(w.astype(np.float64) - e))) for w, e in zip(ref, exact))
        err_two = max(float(np.max(np.abs(got[0][f"w{i}"].astype(np.float64) - e))) for i, e in enumerate(exact))
        assert err_two <= 4 * err_one + 1e-7, (err_two, err_one)
        close = np.mean([np.mean(np.isclose(got[0][f"w{i}"], w, **tol)) for i, w in enumerate(ref)])
        assert close > 0.995, close
    moved = 0
    init = CASES[case][0](dtype, 1)
    for i, w in enumerate(ref):
        a0, a1 = got[0][f"w{i}"], got[1][f"w{i}"]
        assert a0.dtype == w.dtype
        np.testing.assert_array_equal(a0, a1)  # the ranks stay identical
        if dtype == "float64":
            np.testing.assert_allclose(a0, w, **tol)
        moved += not np.allclose(w, [owner.params[n] for _, owner, n in init.iter_weights()][i])
    assert moved == len(ref)  # every weight trained (the comparison is not of untouched weights)


def test_nan_on_one_rank_stops_every_rank(tmp_path):
    p = launch(["nan", "float64", str(tmp_path)])
    assert p.returncode == 0, p.stderr[-3000:]
    for r in (0, 1):
        msg = (tmp_path / f"nan{r}.txt").read_text()
        assert "loss is nan at epoch 1, step 2" in msg, msg


def test_killed_rank_does_not_hang_the_others(tmp_path):
    p = launch(["kill", "float64", str(tmp_path)], timeout=90, env={"RNNLAB_MPI_TIMEOUT": "5"})
    assert p.returncode != 0
    # MPI's launcher ends the job (killed rank) or the watchdog aborts it, with a message
    assert ("rnnlab.distributed" in p.stderr or "BAD TERMINATION" in p.stdout + p.stderr
            or "killed" in (p.stdout + p.stderr).lower()), p.stderr[-2000:]


def test_hanging_rank_trips_the_watchdog(tmp_path):
    # rank 1 sleeps for 120 s; rank 0 waits in fit's first collective and aborts the job after 3 s
    p = launch(["hang", "float64", str(tmp_path)], timeout=60, env={"RNNLAB_MPI_TIMEOUT": "3"})
    assert p.returncode != 0
    assert "rnnlab.distributed: rank 0/2 waited more than 3 s in" in p.stderr, p.stderr[-2000:]
    assert "aborting the MPI job" in p.stderr


def test_ranks_with_different_models_are_refused(tmp_path):
    p = launch(["mismatch", "float64", str(tmp_path)], timeout=60)
    assert p.returncode != 0
    assert "DistributedError: rnnlab.distributed: the ranks disagree on the weights' shapes and dtypes" in p.stderr, \
        p.stderr[-2000:]


def test_exception_on_one_rank_aborts_the_job(tmp_path):
    p = launch(["raise", "float64", str(tmp_path)], timeout=90)
    assert p.returncode != 0
    assert "rank 1/2 stopped with an uncaught ValueError" in p.stderr, p.stderr[-2000:]


def test_activity_regularizer_with_masked_loss_is_refused(tmp_path):
    """R(y) / batch and a masked per-step loss weight the shards differently: a clear error, not a wrong step."""
    p = launch(["activity-mask", "float64", str(tmp_path)], timeout=90)
    assert p.returncode != 0
    assert "has activity regularizers" in p.stderr and "train it in one process" in p.stderr, p.stderr[-2000:]


def _topic_corpus():
    r = np.random.default_rng(2)
    groups = [[f"a{i}" for i in range(10)], [f"b{i}" for i in range(10)]]
    return [list(r.choice(groups[k % 2], size=12)) for k in range(600)]


def w2v_separation(vectors):
    """Mean cosine within the two topics minus across them (1 process and 2 ranks should both separate)."""
    from rnnlab.embeddings import Word2Vec  # noqa: F401
    names = [f"a{i}" for i in range(10)] + [f"b{i}" for i in range(10)]
    v = np.stack([vectors[n] for n in names])
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    c = v @ v.T
    within = (c[:10, :10].sum() + c[10:, 10:].sum() - 20) / 180
    across = c[:10, 10:].mean()
    return within - across


def train_w2v():
    from rnnlab.embeddings import Word2Vec
    m = Word2Vec(_topic_corpus(), vector_size=16, window=3, min_count=1, sg=1, epochs=3, seed=3,
                 batch_words=200, sync_words=1000, sample=0)
    return m


def test_word2vec_two_ranks_average_and_learn(tmp_path):
    p = launch(["w2v", "float64", str(tmp_path)])
    assert p.returncode == 0, p.stderr[-3000:]
    a, b = np.load(tmp_path / "w2v0.npz"), np.load(tmp_path / "w2v1.npz")
    np.testing.assert_array_equal(a["X"], b["X"])  # averaged at the end: the ranks agree
    np.testing.assert_array_equal(a["Y"], b["Y"])
    assert int(a["syncs"]) >= 3  # averaged during training, not only at the end
    single = train_w2v()
    kv = {w: a["X"][i] for i, w in enumerate(single.wv.index_to_key)}
    sep1, sep2 = w2v_separation(single.wv), w2v_separation(kv)
    assert sep1 > 0.3 and sep2 > 0.3, (sep1, sep2)


def _charlm(tmp_path, out, epochs, resume=False):
    text = tmp_path / "tiny.txt"
    if not text.exists():
        text.write_text("the quick brown fox jumps over the lazy dog. " * 60)
    return ["-m", "rnnlab", "train", "charlm", "--text", str(text), "--mode", "window", "--maxlen", "12",
            "--step", "5", "--units", "8", "--epochs", str(epochs), "--batch-size", "32", "--seed", "3",
            "--out", str(out), "--verbose", "2"] + (["--resume"] if resume else [])


def test_rnnlab_train_under_mpiexec_with_resume(tmp_path):
    """mpiexec -n 2 rnnlab train charlm: one log (rank 0's), one set of files, --resume continues; the model
    equals one process's (each rank trains its rows of every batch; float32 here, float64 to 1e-10 in
    test_train_commands_two_ranks_equal_one_process)."""
    why = _mpi_ready()
    if why:
        pytest.skip(why)
    out2, out1 = tmp_path / "mpi", tmp_path / "one"

    def mpi(args):
        p = subprocess.run([_mpiexec(), "-n", "2", sys.executable, *args], capture_output=True, text=True,
                           timeout=180, cwd=str(ROOT))
        assert p.returncode == 0, p.stderr[-3000:]
        return p.stdout

    first = mpi(_charlm(tmp_path, out2, 1))
    assert first.count("Epoch 1/1") == 1  # rank 1 prints nothing
    second = mpi(_charlm(tmp_path, out2, 2, resume=True))
    assert second.count("resuming from") == 1 and "Epoch 2/2" in second and "Epoch 1/2" not in second
    p = subprocess.run([sys.executable, *_charlm(tmp_path, out1, 2)], capture_output=True, text=True,
                       timeout=180, cwd=str(ROOT))
    assert p.returncode == 0, p.stderr[-3000:]
    from rnnlab.tasks.runstate import read_npz
    a, b = read_npz(out2 / "model.npz"), read_npz(out1 / "model.npz")
    keys = [k for k in a if a[k].dtype.kind == "f"]
    assert keys
    for k in keys:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)


def _cli_data(d):
    """Tiny files for the train commands (classify CSV, a text, word LM train/valid)."""
    d = Path(d)
    r = np.random.default_rng(6)
    good, bad = ["fine", "great", "lovely", "good", "fun"], ["awful", "bad", "dull", "poor", "boring"]
    filler = ["the", "film", "was", "a", "plot", "and", "it", "story", "very", "cast"]
    rows = ["text,label"]
    for i in range(90):
        words = list(r.choice(filler, size=int(r.integers(3, 14)))) + [str(r.choice(good if i % 2 else bad))]
        r.shuffle(words)
        rows.append(f"{' '.join(words)},{'pos' if i % 2 else 'neg'}")
    (d / "reviews.csv").write_text("\n".join(rows) + "\n")
    (d / "tiny.txt").write_text("the quick brown fox jumps over the lazy dog. " * 40)
    sent = [" ".join(r.choice(filler + good, size=int(r.integers(4, 10)))) for _ in range(120)]
    (d / "lm.train.txt").write_text("\n".join(sent[:100]) + "\n")
    (d / "lm.valid.txt").write_text("\n".join(sent[100:]) + "\n")


def cli_commands(d):
    """``rnnlab train`` argument lists (dropout on: the masks must be one process's rows); each batch is split."""
    d = Path(d)
    common = ["--seed", "3", "--verbose", "0", "--epochs", "2", "--units", "6", "--dropout", "0.2"]
    return {
        # classify: length-bucketed padded batches from an EpochBatchSet (a PyDataset), 9 rows in the last batch
        "classify": ["train", "classify", "--data", str(d / "reviews.csv"), "--batch-size", "9",
                     "--embedding-dim", "8", "--vocab-size", "100", "--maxlen", "16", "--ensemble", "none",
                     "--test-fraction", "0.1"] + common,
        # charlm window mode: one-hot windows from an EpochBatchSet
        "charlm-window": ["train", "charlm", "--text", str(d / "tiny.txt"), "--mode", "window", "--maxlen", "10",
                          "--step", "7", "--batch-size", "16"] + common,
        # charlm stream mode: truncated BPTT over 6 streams built for the global batch (3 per rank)
        "charlm-stream": ["train", "charlm", "--text", str(d / "tiny.txt"), "--mode", "stream", "--bptt", "20",
                          "--batch-size", "6", "--embedding-dim", "8"] + common,
        # wordlm: truncated BPTT over 4 streams, variational dropout
        "wordlm": ["train", "wordlm", "--train", str(d / "lm.train.txt"), "--valid", str(d / "lm.valid.txt"),
                   "--bptt", "8", "--batch-size", "4", "--embedding-dim", "6", "--layers", "1"] + common,
        # tag: TaggingBatches (a PyDataset), a CRF output (its loss is a mean over sentences), word dropout
        "tag": ["train", "tag", "--generate", "two-sided", "--num-sentences", "40", "--crf", "on",
                "--batch-size", "7", "--embedding-dim", "6", "--char-dim", "4", "--char-units", "3"] + common,
    }


def run_cli(args, out):
    from rnnlab.cli import main
    rc = main(list(args) + ["--out", str(out)])
    assert rc in (0, None), rc


@pytest.fixture(scope="module")
def two_rank_cli(tmp_path_factory):
    """Every train command of cli_commands run once with mpiexec -n 2 in float64 (one launch)."""
    d = tmp_path_factory.mktemp("cli")
    _cli_data(d)
    p = launch(["cli", "float64", str(d)], timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return d, p.stdout


@pytest.mark.parametrize("name", ["classify", "charlm-window", "charlm-stream", "wordlm", "tag"])
def test_train_commands_two_ranks_equal_one_process(name, two_rank_cli, tmp_path):
    """mpiexec -n 2 rnnlab train ... in float64 (each rank its rows of every batch, TBPTT streams split, dropout
    masks the one process's rows) writes the model and checkpoint one process writes, to 1e-10."""
    from rnnlab.tasks.runstate import read_npz
    d, stdout = two_rank_cli
    assert f"rows per rank {name}: " in stdout
    r0, r1 = (int(v) for v in stdout.split(f"rows per rank {name}: ")[1].split()[:2])
    rnnlab.set_floatx("float64")
    from rnnlab.models.sequential import Sequential
    from rnnlab.tagging.tagger import Tagger
    one = [0]
    classes = [Sequential, Tagger]   # the train commands' models
    reals = [c.__dict__["_run"] for c in classes]

    def counter(real):
        def counting(self, xs, training, *a, **k):
            one[0] += len(xs[0]) if training else 0
            return real(self, xs, training, *a, **k)
        return counting
    for c, real in zip(classes, reals):
        c._run = counter(real)
    try:
        run_cli(cli_commands(d)[name], tmp_path / "one")
    finally:
        for c, real in zip(classes, reals):
            c._run = real
    # the ranks' training forward passes together ran the one process's rows, split (not each the whole batch)
    assert r0 + r1 == one[0] and 0 < r1 <= r0, (r0, r1, one[0])
    for f in ("model.npz", "checkpoint.npz"):
        a, b = read_npz(d / name / f), read_npz(tmp_path / "one" / f)
        keys = [k for k in b if b[k].dtype.kind == "f"]
        assert keys and set(keys) <= set(a)
        assert any(k.startswith("w:") for k in keys) or len(keys) > 2
        for k in keys:
            assert b[k].dtype == np.float64 or b[k].ndim == 0, (k, b[k].dtype)
            np.testing.assert_allclose(a[k], b[k], rtol=1e-10, atol=1e-12, err_msg=f"{name} {f} {k}")


# ------------------------------------------------------------------------ single-process units
def test_shard_covers_the_batch_contiguously():
    for n in range(0, 12):
        for size in (1, 2, 3, 5):
            parts = [distributed.shard(n, r, size) for r in range(size)]
            assert [i for s in parts for i in range(n)[s]] == list(range(n))
            lens = [s.stop - s.start for s in parts]
            assert max(lens) - min(lens) <= 1


def test_row_draws_give_the_whole_batch_masks_rows_and_advance_as_one_process():
    one, two = np.random.default_rng(4), np.random.default_rng(4)
    full = one.random((7, 3), dtype=np.float32)
    after = one.random(5)
    rows = distributed.shard(7, 1, 2)  # rows 4..6
    d = distributed.RowDraws(two, 7, rows)
    np.testing.assert_array_equal(d.random((3, 3), dtype=np.float32), full[rows])
    np.testing.assert_array_equal(d.random(5), after)  # not this rank's rows: drawn as asked
    assert two.bit_generator.state == one.bit_generator.state  # the generator advanced exactly as one process's
    assert d.bit_generator is two.bit_generator  # other attributes and methods are the generator's
    assert d.integers(1000) == one.integers(1000)


class _FakeContext:
    def __init__(self, rank, size):
        self.rank, self.size = rank, size
        self.stream_rows = self.batch_rows = None

    def shard(self, n):
        return distributed.shard(n, self.rank, self.size)


def test_stream_shards_check_the_batch_and_swap_states():
    rnnlab.set_floatx("float64")
    m = build_streams("float64", batch=B)
    lstm = [layer for layer in m.layers if getattr(layer, "stateful", False)]
    with pytest.raises(ValueError, match=r"at least one stream per rank: batch_size \(2\) must be >= 3"):
        distributed.StreamShards(_FakeContext(0, 3), lstm, 2, 4)
    with pytest.raises(ValueError, match=r"number of sequences \(12\) to be a multiple of batch_size \(8\)"):
        distributed.StreamShards(_FakeContext(0, 2), lstm, B, 12)
    with pytest.raises(ValueError, match=r"set up for batch size\(s\) \[8\]; build them for the global batch_size "
                                         r"\(6: each rank then carries its 3 streams\)"):
        distributed.StreamShards(_FakeContext(0, 2), lstm, 6, 12)
    ctx = _FakeContext(1, 3)
    sh = distributed.StreamShards(ctx, lstm, B, 16)  # 8 streams over 3 ranks: rank 1 owns rows 3..5
    assert sh.swap and sh.layer_batch == B and (sh.rows.start, sh.local) == (3, 3)
    sh.begin()
    assert [s.shape for s in lstm[0].states] == [(3, 5), (3, 5)] and ctx.stream_rows == (B, sh.rows)
    built_per_rank = build_streams("float64", batch=3)
    per = [layer for layer in built_per_rank.layers if getattr(layer, "stateful", False)]
    sh2 = distributed.StreamShards(ctx, per, B, 16)
    assert not sh2.swap and sh2.layer_batch == 3


def test_outside_mpi_nothing_is_distributed(monkeypatch):
    for var in distributed._SIZE_VARS:
        monkeypatch.delenv(var, raising=False)
    assert not distributed.launched() and distributed.current() is None
    assert distributed.rank() == 0 and distributed.size() == 1 and distributed.is_root()
    monkeypatch.setenv("PMI_SIZE", "4")
    assert distributed.launched()
    monkeypatch.setenv("RNNLAB_DISTRIBUTED", "0")
    assert not distributed.launched()


def test_without_mpi4py_a_clear_error(monkeypatch):
    import builtins
    real = builtins.__import__

    def fake(name, *a, **k):
        if name.startswith("mpi4py"):
            raise ImportError("No module named 'mpi4py'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(distributed.DistributedError, match=r'pip install "rnnlab\[mpi\]"'):
        distributed.Context()


def test_word2vec_sync_words_is_checked():
    from rnnlab.embeddings import Word2Vec
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="sync_words must be an int >= 1"):
            Word2Vec(sync_words=bad)
    assert Word2Vec(sync_words=123).sync_words == 123


# ------------------------------------------------------------------------ the worker (under mpiexec)
def _worker(what, dtype, out):
    out = Path(out)
    ctx = distributed.init(timeout=float(os.environ.get("RNNLAB_MPI_TIMEOUT", "60")))
    r = ctx.rank
    if what == "train-all":
        for case in EQUIV_CASES:
            for dt in ("float64", "float32"):
                d = out / f"{case}-{dt}"
                d.mkdir(exist_ok=True)
                ctx.row_paths = {"gather": 0, "dense": 0}
                logs, states = {}, []
                ws = train(case, dt, ctx.size, logs, states)
                np.savez(d / f"rank{r}.npz", gather=ctx.row_paths["gather"], dense=ctx.row_paths["dense"],
                         **{f"w{i}": w for i, w in enumerate(ws)}, **{f"log_{k}": v for k, v in logs.items()},
                         **{f"state{i}": a for i, a in enumerate(states)})
    elif what == "cli":
        # every command in float64, counting the rows each rank's training forward passes ran on
        from rnnlab.models.engine import Engine
        rnnlab.set_floatx(dtype)
        real = Engine.loss_step
        for name, args in cli_commands(out).items():
            rows = [0]

            def counting(self, xs, *a, **k):
                rows[0] += len(xs[0])
                return real(self, xs, *a, **k)
            Engine.loss_step = counting
            try:
                run_cli(args, out / name)
            finally:
                Engine.loss_step = real
            got = np.zeros(ctx.size, np.int64)
            ctx.comm.Gather(np.array([rows[0]], np.int64), got, root=0)
            if r == 0:
                sys.__stdout__.write(f"rows per rank {name}: {got[0]} {got[1]}\n")
                sys.__stdout__.flush()
    elif what == "activity-mask":
        rnnlab.set_floatx(dtype)
        m = rnnlab.Sequential([rnnlab.Input((None,), dtype="int32"), Embedding(V_SEQ, 6, mask_zero=True),
                               LSTM(5, return_sequences=True, activity_regularizer=rnnlab.regularizers.L2(0.1)),
                               Dense(3, activation="softmax")])
        m.compile("adam", "sparse_categorical_crossentropy")
        x, y, sw = _seq_data()
        m.fit(x, y, batch_size=B, epochs=1, verbose=0, shuffle=False)
    elif what == "w2v":
        m = train_w2v()
        np.savez(out / f"w2v{r}.npz", X=m.wv.vectors, Y=m.syn1neg, syncs=m.sync_count)
    elif what == "nan":
        import warnings
        m = build_seq("float64")
        x, y, sw = _seq_data()
        sw = sw.copy()
        # sample 12 of the unshuffled data sits in batch 2 (rows 8..15), in rank 1's shard (rows 12..15)
        sw[12] = np.nan
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            h = m.fit(x, y, batch_size=B, epochs=2, verbose=0, shuffle=False, sample_weight=sw)
        (out / f"nan{r}.txt").write_text(str(h.stop_reason) + " | " + " ".join(str(c.message) for c in caught))
    elif what == "kill":
        import signal
        m = build_seq("float64")
        x, y, sw = _seq_data()
        if r == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        m.fit(x, y, batch_size=B, epochs=50, verbose=0)
    elif what == "mismatch":
        rnnlab.set_floatx("float64")
        m = rnnlab.Sequential([rnnlab.Input((None,), dtype="int32"), Embedding(V_SEQ, 6),
                               LSTM(5 + r, return_sequences=True), Dense(3, activation="softmax")])
        m.compile("adam", "sparse_categorical_crossentropy")
        x, y, sw = _seq_data()
        m.fit(x, y, batch_size=B, epochs=1, verbose=0)
    elif what == "hang":
        import time
        m = build_seq("float64")
        x, y, sw = _seq_data()
        if r == 1:
            time.sleep(120)
        m.fit(x, y, batch_size=B, epochs=1, verbose=0)
    elif what == "raise":
        if r == 1:
            raise ValueError("a rank fails")
        m = build_seq("float64")
        x, y, sw = _seq_data()
        m.fit(x, y, batch_size=B, epochs=50, verbose=0)


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2], sys.argv[3])
