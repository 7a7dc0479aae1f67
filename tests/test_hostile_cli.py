"""The command line on damaged input and clumsy use (issue 19): one-line errors without a traceback, memory
estimates before building, a locked --out, a non-zero exit on a non-finite stop, no .tmp-* left after a kill."""
from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rnnlab import cli
from rnnlab import io as rio

TEXT = "hello world. " * 60
CHARLM = ["--units", "8", "--embedding-dim", "4", "--batch-size", "4", "--bptt", "10", "--verbose", "0"]
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.startswith("rnnlab: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, (n, err)
    return err


def _truncated_gz(path, text=TEXT):
    path.write_bytes(gzip.compress(text.encode("utf-8"))[:-25])
    return str(path)


def test_truncated_gz_for_charlm_wordlm_and_ngram(tmp_path, capsys):
    bad = _truncated_gz(tmp_path / "t.txt.gz")
    good = tmp_path / "v.txt"
    good.write_text("a b c\nb c a\n" * 20)
    runs = [["train", "charlm", "--text", bad, "--epochs", "1", "--out", str(tmp_path / "c")] + CHARLM,
            ["train", "wordlm", "--train", bad, "--valid", str(good), "--epochs", "1", "--out", str(tmp_path / "w"),
             "--verbose", "0"],
            ["ngram", "--train", bad, "--valid", str(good), "--out", str(tmp_path / "n")]]
    for argv in runs:
        assert cli.main(argv) == 1, argv
        _one_line_error(capsys, bad, "truncated")


def test_corrupted_models_give_one_line_errors(tmp_path, capsys):
    out = tmp_path / "run"
    (tmp_path / "t.txt").write_text(TEXT)
    assert cli.main(["train", "charlm", "--text", str(tmp_path / "t.txt"), "--epochs", "1", "--out", str(out)]
                    + CHARLM) == 0
    capsys.readouterr()
    raw = bytearray((out / "model.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "bad.npz").write_bytes(bytes(raw))
    assert cli.main(["generate", "--model", str(tmp_path / "bad.npz"), "--seed", "he", "--length", "5"]) == 1
    _one_line_error(capsys, str(tmp_path / "bad.npz"))
    (tmp_path / "plain.npz").write_bytes(b"just text, no zip archive")
    for argv in (["translate", "--model", str(tmp_path / "plain.npz"), "abc"],
                 ["generate", "--model", str(tmp_path / "plain.npz"), "--seed", "a"]):
        assert cli.main(argv) == 1
        err = _one_line_error(capsys, str(tmp_path / "plain.npz"))
        assert "allow_pickle" not in err


@pytest.mark.parametrize("flag,value", [("--units", "100000"), ("--embedding-dim", "100000000")])
def test_huge_sizes_are_refused_before_allocating(tmp_path, capsys, monkeypatch, flag, value):
    monkeypatch.setattr(rio, "available_memory", lambda: 2 * 2 ** 30)     # whatever this machine has free
    (tmp_path / "t.txt").write_text(TEXT)
    sizes = {"--units": "8", "--embedding-dim": "4", flag: value}
    argv = ["train", "charlm", "--text", str(tmp_path / "t.txt"), "--epochs", "1", "--out", str(tmp_path / "o"),
            "--batch-size", "4", "--bptt", "10", "--verbose", "0"] + [a for kv in sizes.items() for a in kv]
    assert cli.main(argv) == 1
    _one_line_error(capsys, "more than the 2.00 GB of memory available", "--force")


def test_force_turns_the_memory_check_off_for_one_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(rio, "available_memory", lambda: 100)        # bytes
    monkeypatch.setattr(rio, "MIN_CHECKED_BYTES", 0)
    (tmp_path / "t.txt").write_text(TEXT)
    argv = ["train", "charlm", "--text", str(tmp_path / "t.txt"), "--epochs", "1", "--out", str(tmp_path / "o")]
    argv += CHARLM
    assert cli.main(argv) == 1           # the (10, 4) float32 embeddings + gradient: 320 B > 100 B
    _one_line_error(capsys, "layer 'embedding' weight 'embeddings' (10, 4) float32",
                    "needs 320 B, more than the 100 B of memory available")
    assert cli.main(argv + ["--force"]) == 0
    capsys.readouterr()
    with pytest.raises(rio.MemoryLimitError):      # --force does not outlive its command
        rio.check_allocation(2 ** 10, "x")


def test_threads_zero_is_refused(tmp_path, capsys):
    (tmp_path / "t.txt").write_text(TEXT)
    assert cli.main(["train", "charlm", "--text", str(tmp_path / "t.txt"), "--threads", "0"] + CHARLM) == 2
    _one_line_error(capsys, "--threads must be >= 1, got 0")


def test_a_second_run_into_a_locked_out_is_refused_and_a_stale_lock_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from rnnlab.io import RunLock
        RunLock({str(out)!r}).acquire()
        print("held", flush=True)
        time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        (tmp_path / "t.txt").write_text(TEXT)
        argv = ["train", "charlm", "--text", str(tmp_path / "t.txt"), "--epochs", "1", "--out", str(out)] + CHARLM
        assert cli.main(argv) == 1
        _one_line_error(capsys, str(out), f"in use by another rnnlab run (pid {holder.pid}")
        assert not (out / "model.npz").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (out / ".rnnlab.lock").exists()          # killed: its lock stays behind, stale
    assert cli.main(argv) == 0                      # ... and is taken over
    assert not (out / ".rnnlab.lock").exists()      # released at the end of the command
    assert (out / "model.npz").exists()


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")   # the point of this run
def test_non_finite_stop_exits_non_zero_with_the_reason_on_stderr(tmp_path, capsys):
    x = 10 + np.sin(np.arange(200) * 2 * np.pi / 12)
    csv = tmp_path / "s.csv"
    csv.write_text("value\n" + "\n".join(str(v) for v in x) + "\n")
    out = tmp_path / "run"
    rc = cli.main(["train", "forecast", "--csv", str(csv), "--column", "value", "--window", "12", "--epochs", "3",
                   "--units", "4", "--optimizer", "sgd", "--lr", "1e30", "--out", str(out), "--verbose", "0",
                   "--no-plot"])
    captured = capsys.readouterr()
    metrics = json.loads((out / "metrics.json").read_text())
    assert "nan" in metrics["stop_reason"] or "inf" in metrics["stop_reason"]
    assert rc == 3
    assert f"rnnlab: training stopped: {metrics['stop_reason']}" in captured.err
    assert (out / "model.npz").exists()


def test_kill_during_a_save_leaves_no_tmp_after_resume(tmp_path):
    (tmp_path / "t.txt").write_text(TEXT)
    out = tmp_path / "run"
    argv = ["train", "charlm", "--text", str(tmp_path / "t.txt"), "--epochs", "3", "--out", str(out)] + CHARLM
    killer = textwrap.dedent(f"""
        import os, signal, sys
        real = os.replace
        seen = []
        def replace(src, dst):
            if os.path.basename(dst) == "checkpoint.npz":
                seen.append(dst)
                if len(seen) == 2:              # the second checkpoint: killed between write and rename
                    os.kill(os.getpid(), signal.SIGKILL)
            return real(src, dst)
        os.replace = replace
        from rnnlab.cli import main
        sys.exit(main({argv!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", killer], env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    left = [p for p in os.listdir(out) if p.startswith(".tmp-")]
    assert left, "the kill should have left the temporary checkpoint"
    proc = subprocess.run([sys.executable, "-m", "rnnlab", *argv, "--resume"], env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["epochs_run"] == 3
    assert not [p for p in os.listdir(out) if p.startswith(".tmp-")]
    assert not (out / ".rnnlab.lock").exists()


def test_outputs_get_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        rio.atomic_write_bytes(tmp_path / "a.bin", b"x")
        assert (os.stat(tmp_path / "a.bin").st_mode & 0o777) == 0o644
        os.umask(0o077)
        rio.atomic_write_bytes(tmp_path / "b.bin", b"x")
        assert (os.stat(tmp_path / "b.bin").st_mode & 0o777) == 0o600
    finally:
        os.umask(old)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")      # overflow is the point of this run
def test_diverged_word2vec_exits_3_without_a_traceback(tmp_path, capsys):
    rng = np.random.default_rng(0)
    text = tmp_path / "t.txt"
    text.write_text("\n".join(" ".join(f"w{i}" for i in rng.integers(0, 30, 15)) for _ in range(200)))
    rc = cli.main(["train", "word2vec", "--text", str(text), "--out", str(tmp_path / "run"), "--min-count", "1",
                   "--vector-size", "8", "--alpha", "1e30", "--min-alpha", "1e30", "--epochs", "2"])
    err = capsys.readouterr().err
    assert rc == 3
    assert "rnnlab: training stopped: Word2Vec diverged" in err and "Traceback" not in err     # after its progress


# ---- the whole model's parameter memory is estimated from the flags before any layer is built
_RLIMIT_CLI = textwrap.dedent('''
    import resource, sys
    from rnnlab import cli

    def vm():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024

    resource.setrlimit(resource.RLIMIT_AS, (vm() + 400 * 2 ** 20, resource.getrlimit(resource.RLIMIT_AS)[1]))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rc = cli.main(sys.argv[1:])
    print("rc", rc, "growth", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
''')


@pytest.mark.parametrize("sizes,needle", [(["--embedding-dim", "100000000"], "--embedding-dim 100000000"),
                                          (["--units", "100000"], "--units 100000"),
                                          # every weight fits on its own, the ten layers together do not
                                          (["--units", "2000", "--layers", "10"], "--units 2000")])
def test_the_model_estimate_refuses_before_building_under_rlimit_as(tmp_path, sizes, needle):
    (tmp_path / "t.txt").write_text(TEXT)
    argv = ["train", "charlm", "--text", str(tmp_path / "t.txt"), "--epochs", "1", "--out", str(tmp_path / "o"),
            "--batch-size", "4", "--bptt", "10", "--verbose", "0"] + sizes
    r = subprocess.run([sys.executable, "-c", _RLIMIT_CLI] + argv, capture_output=True, text=True, env=ENV,
                       timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("rnnlab: error: train charlm: " + needle + " makes the model about "), r.stderr
    assert "with their gradients and 2 adam slot(s) that is an estimated" in r.stderr
    assert "of memory available; use a smaller " + needle.split()[0] + " (or --force" in r.stderr
    rc, growth = r.stdout.split()[1], int(r.stdout.split()[3])
    assert rc == "1"
    assert growth < 64 * 2 ** 20, growth           # refused before any weight was allocated
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").glob("*.npz"))


def test_estimate_params_counts_the_built_model_exactly_and_force_skips_the_check(monkeypatch):
    import argparse
    import rnnlab
    from rnnlab.tasks import common
    L = rnnlab.layers
    m = rnnlab.Sequential([rnnlab.Input((None,), dtype="int32"), L.Embedding(50, 8),
                           L.Bidirectional(L.GRU(16, return_sequences=True)), L.Bidirectional(L.GRU(6)), L.Dense(5)])
    assert common.estimate_params(vocab=50, embedding_dim=8, units=16, layers=2, cell="gru", bidirectional=True,
                                  outputs=5, last_units=6) == m.count_params()
    w = rnnlab.Sequential([rnnlab.Input((7, 11)), L.SimpleRNN(9), L.Dense(11)])     # no embedding: one bias
    assert common.estimate_params(input_dim=11, units=9, cell="rnn", outputs=11) == w.count_params() + 9
    monkeypatch.setattr(rio, "available_memory", lambda: 2 ** 30)
    args = argparse.Namespace(units=4096, layers=4, cell="lstm", bidirectional=False, embedding_dim=64,
                              optimizer="sgd", force=False)
    with pytest.raises(rio.MemoryLimitError, match=r"train x: --units 4096 makes the model about [\d,]+ parameters; "
                                                   r"with their gradients and 0 sgd slot\(s\) .* than the 1.00 GB"):
        common.check_model_memory(args, "x", vocab=100, outputs=100)
    args.force = True
    assert common.check_model_memory(args, "x", vocab=100, outputs=100) > 2 ** 30


def test_every_rnn_train_command_estimates_its_model_first(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(rio, "available_memory", lambda: 2 * 2 ** 30)
    words = ["abc", "bca", "cab", "aab", "bba", "ccb"] * 5
    (tmp_path / "p.tsv").write_text("".join(f"{w}\t{w[::-1]}\n" for w in words))
    (tmp_path / "s.csv").write_text("value\n" + "".join(f"{np.sin(i / 5):.4f}\n" for i in range(200)))
    (tmp_path / "t.conll").write_text("the DET\ncat NOUN\nsat VERB\n\n" * 20)
    (tmp_path / "w.txt").write_text(TEXT)
    cases = {"seq2seq": ["--pairs", str(tmp_path / "p.tsv")],
             "forecast": ["--csv", str(tmp_path / "s.csv"), "--column", "value", "--window", "8", "--horizon", "1"],
             "tag": ["--train", str(tmp_path / "t.conll"), "--valid", str(tmp_path / "t.conll")],
             "wordlm": ["--train", str(tmp_path / "w.txt"), "--valid", str(tmp_path / "w.txt")]}
    for command, data in cases.items():
        argv = ["train", command] + data + ["--units", "100000", "--out", str(tmp_path / command), "--verbose", "0"]
        assert cli.main(argv) == 1, command
        _one_line_error(capsys, f"train {command}: --units 100000 makes the model about ",
                        "more than the 2.00 GB of memory available", "(or --force")
