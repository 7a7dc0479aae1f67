"""``rnnlab train seq2seq --generate addition`` draws the keras-io ``addition_rnn`` example's pairs
(rnnlab.datasets.keras_addition_pairs); ``--addition-recipe uniform`` keeps the former generator."""
import json
import os
import sys

import numpy as np
import pytest

from rnnlab.cli import main
from rnnlab.datasets import addition_pairs, keras_addition_pairs, load_pairs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _operands(pairs):
    return [x for s, _ in pairs for x in s.split("+")]


def test_keras_recipe_operands_and_uniqueness():
    pairs = keras_addition_pairs(3000, digits=3, seed=0)
    assert len(pairs) == 3000
    keys = set()
    for s, t in pairs:
        a, b = s.split("+")
        assert str(int(a)) == a and str(int(b)) == b          # plain numbers, no padding, no leading zeros
        assert int(a) + int(b) == int(t) and 1 <= len(a) <= 3 and 1 <= len(b) <= 3
        keys.add((min(int(a), int(b)), max(int(a), int(b))))
    assert len(keys) == 3000                                   # a+b and b+a count once
    lengths = np.array([len(x) for x in _operands(pairs)])
    # the length 1..3 is drawn uniformly, then the digits (a leading zero shortens the number): per draw about
    # 0.37 of one digit, 0.33 of two, 0.30 of three; skipping repeated pairs thins the short ones (there are only
    # 55 pairs of one-digit numbers), which leaves about 0.26 / 0.37 / 0.38 here. The former generator's operands
    # are 3 digits long 90% of the time.
    share = np.bincount(lengths, minlength=4)[1:] / lengths.size
    assert share[0] > 0.2 and share[1] > 0.3 and share[2] < 0.45
    old = np.array([len(x) for x in _operands(addition_pairs(3000, digits=3, seed=0))])
    assert (old == 3).mean() > 0.85
    assert keras_addition_pairs(50, digits=2, seed=4) == keras_addition_pairs(50, digits=2, seed=4)
    assert keras_addition_pairs(50, digits=2, seed=4) != keras_addition_pairs(50, digits=2, seed=5)


def test_keras_recipe_bad_arguments():
    assert len(keras_addition_pairs(55, digits=1)) == 55      # every unordered pair of 0..9
    with pytest.raises(ValueError, match="cannot draw 56 distinct unordered additions of up to 1 digits"):
        keras_addition_pairs(56, digits=1)
    with pytest.raises(ValueError, match="digits must be an int in"):
        keras_addition_pairs(3, digits=0)
    with pytest.raises(ValueError, match="n must be a non-negative int"):
        keras_addition_pairs(-1)


def test_benchmark_file_holds_the_same_pairs(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import addition_pairs as bench
    finally:
        sys.path.pop(0)
    bench.main([str(tmp_path / "a.tsv"), "--num", "700", "--digits", "2", "--seed", "3"])
    assert load_pairs(tmp_path / "a.tsv") == keras_addition_pairs(700, 2, seed=3)


def _run(args, capsys):
    assert main(["train", "seq2seq", *args, "--epochs", "1", "--units", "4", "--embedding-dim", "3",
                 "--verbose", "0", "--threads", "1", "--seed", "3"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_cli_generate_addition_equals_pairs_file_from_the_benchmark(tmp_path, capsys):
    """--generate addition trains on exactly what --pairs trains on for the benchmark's file (same seed): same
    split sizes, same loss and accuracies after one deterministic epoch."""
    tsv = tmp_path / "add.tsv"
    tsv.write_text("".join(f"{s}\t{t}\n" for s, t in keras_addition_pairs(400, 2, seed=3)), encoding="utf-8")
    gen = _run(["--generate", "addition", "--num-pairs", "400", "--digits", "2", "--out", str(tmp_path / "g")], capsys)
    fil = _run(["--pairs", str(tsv), "--out", str(tmp_path / "f")], capsys)
    assert gen["data"] == "addition (keras)" and fil["data"] == str(tsv)
    for key in ("train_pairs", "test_pairs", "final_loss", "exact_match_accuracy", "token_accuracy"):
        assert gen[key] == fil[key], key
    uni = _run(["--generate", "addition", "--addition-recipe", "uniform", "--num-pairs", "400", "--digits", "2",
                "--out", str(tmp_path / "u")], capsys)
    assert uni["data"] == "addition (uniform)" and uni["final_loss"] != gen["final_loss"]
    with pytest.raises(SystemExit):
        main(["train", "seq2seq", "--generate", "addition", "--addition-recipe", "keras-io"])
    assert "--addition-recipe: invalid choice: 'keras-io'" in capsys.readouterr().err
