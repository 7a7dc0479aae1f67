"""n-gram LM: normalisation of every smoothing, hand-computed KN values, perplexity behaviour, CLI."""
import json
import math

import numpy as np
import pytest

from rnnlab.cli import main
from rnnlab.ngram import NGramLM

TRAIN = ("the cat sat on the mat <eos> the dog sat on the log <eos> a cat saw the dog <eos> "
         "the cat ran <eos> the dog ran to the cat <eos>").split()


@pytest.mark.parametrize("smoothing", ["kn", "mkn", "addk"])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_distributions_sum_to_one_for_every_context(order, smoothing):
    m = NGramLM(order, smoothing, k=0.5).fit(TRAIN)
    contexts = [(), ("the",), ("on", "the"), ("zebra", "unicorn"), ("cat", "sat", "on"), ("<eos>",), ("dog", "ran")]
    for ctx in contexts:
        p = m.distribution(ctx)
        assert p.shape == (len(m.vocab),) and np.all(p > 0)
        assert p.sum() == pytest.approx(1.0, abs=1e-12)
        for w in ("cat", "mat", "<unk>", "<eos>"):           # prob() agrees with distribution()
            assert m.prob(w, ctx) == pytest.approx(p[m.index[w]], rel=1e-12)


def test_kn_bigram_by_hand():
    tokens = "a b a c <eos>".split()
    m = NGramLM(2, "kn", discount=0.5).fit(tokens, vocab=["<unk>", "<eos>", "a", "b", "c"])
    # stream with padding: <eos> a b a c <eos>; bigrams (<eos> a) (a b) (b a) (a c) (c <eos>)
    # continuation counts: a:2 (after <eos>, b), b:1, c:1, <eos>:1 -> total 5, 4 types
    p_uni_b = (1 - 0.5) / 5 + 0.5 * 4 / 5 * (1 / 5)
    # context 'a': c(a b)=1, c(a c)=1, total 2, two types
    assert m.prob("b", ["a"]) == pytest.approx((1 - 0.5) / 2 + 0.5 * 2 / 2 * p_uni_b)
    p_uni_a = (2 - 0.5) / 5 + 0.5 * 4 / 5 * (1 / 5)
    assert m.prob("a", ["a"]) == pytest.approx(0.5 * 2 / 2 * p_uni_a)
    assert m.prob("a", ["<unk>"]) == pytest.approx(p_uni_a)      # unseen context: all mass to the lower order
    add = NGramLM(2, "addk", k=1.0).fit(tokens, vocab=["<unk>", "<eos>", "a", "b", "c"])
    assert add.prob("b", ["a"]) == pytest.approx((1 + 1) / (2 + 5))


def test_perplexity_behaviour():
    m3 = NGramLM(3, "kn").fit(TRAIN * 3)
    seen = "the cat sat on the mat <eos>".split()
    odd = "mat the on sat cat the <eos>".split()
    assert m3.perplexity(seen) < m3.perplexity(odd)
    uni = NGramLM(1, "kn").fit(TRAIN * 3)
    assert m3.perplexity(seen) < uni.perplexity(seen)
    add = NGramLM(3, "addk", k=0.01).fit(TRAIN * 3)
    # unknown words map to <unk>; perplexity stays finite
    assert math.isfinite(m3.perplexity("the zebra sat <eos>".split()))
    assert math.isfinite(add.perplexity("the zebra sat <eos>".split()))
    # uniform check: a unigram add-k with huge k tends to |V|
    flat = NGramLM(1, "addk", k=1e9).fit(TRAIN)
    assert flat.perplexity(seen) == pytest.approx(len(flat.vocab), rel=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="order"):
        NGramLM(0)
    with pytest.raises(ValueError, match="smoothing"):
        NGramLM(3, "katz")
    with pytest.raises(ValueError, match="k must be > 0"):
        NGramLM(3, "addk", k=0)
    with pytest.raises(ValueError, match="fit"):
        NGramLM(2).prob("a")
    with pytest.raises(ValueError, match="<unk>"):
        NGramLM(2).fit(["a"], vocab=["a"])


def test_cli_prints_and_writes_metrics(tmp_path, capsys):
    train = tmp_path / "train.txt"
    train.write_text("\n".join(" ".join(TRAIN).split(" <eos> ")).replace("<eos>", "") + "\n")
    valid = tmp_path / "valid.txt"
    valid.write_text("the cat sat on the log\nthe dog ran\n")
    out = tmp_path / "run"
    rc = main(["ngram", "--order", "2", "--train", str(train), "--valid", str(valid), "--test", str(valid),
               "--out", str(out)])
    assert rc == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert json.loads((out / "metrics.json").read_text()) == line
    assert line["valid_perplexity"] == line["test_perplexity"] and 1 < line["valid_perplexity"] < line["vocab_size"]
    assert line["valid_tokens"] == 11 and line["smoothing"] == "kn"
    rc = main(["ngram", "--train", str(train), "--valid", str(tmp_path / "missing.txt"), "--out", str(out)])
    assert rc == 1 and "--valid: no such file" in capsys.readouterr().err
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9 ok\n")
    rc = main(["ngram", "--train", str(tmp_path / "latin.txt"), "--valid", str(valid), "--out", str(out)])
    assert rc == 1 and "byte offset 3 (line 1, column 4)" in capsys.readouterr().err
    rc = main(["ngram", "--train", str(tmp_path / "latin.txt"), "--valid", str(valid), "--out", str(out),
               "--encoding", "latin-1", "--smoothing", "addk", "--k", "0.1"])
    assert rc == 0
