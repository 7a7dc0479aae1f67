"""rnnlab.layers.crf.CRF: forward algorithm, hand-written forward-backward gradient, Viterbi, constraints."""
import itertools

import numpy as np
import pytest

from rnnlab.layers.crf import CRF, scheme_constraints
from rnnlab.testing import numerical_gradient


def _crf(K, seed=0, **kw):
    crf = CRF(K, dtype="float64", **kw)
    crf._maybe_build((None, None, K))
    rng = np.random.default_rng(seed)
    for w in ("transitions", "start_transitions", "end_transitions"):
        crf.params[w][...] = rng.normal(size=crf.params[w].shape)
    return crf


def _brute(crf, x, n):
    """All K**n sequences of one sentence: (log Z, best sequence, best score), forbidden ones excluded."""
    A, s, e = crf._scores()
    K = x.shape[-1]
    scores = {}
    for seq in itertools.product(range(K), repeat=n):
        sc = s[seq[0]] + sum(x[t, seq[t]] for t in range(n)) + sum(A[seq[t - 1], seq[t]] for t in range(1, n)) \
            + e[seq[-1]]
        scores[seq] = sc
    vals = np.array([v for v in scores.values() if np.isfinite(v)])
    logz = np.log(np.exp(vals - vals.max()).sum()) + vals.max()
    best = max(scores, key=scores.get)
    return logz, best, scores[best]


def test_log_partition_and_viterbi_equal_brute_force():
    rng = np.random.default_rng(1)
    K, T = 4, 5
    crf = _crf(K)
    x = rng.normal(size=(3, T, K))
    lengths = [5, 3, 1]
    mask = np.arange(T)[None] < np.array(lengths)[:, None]
    logz = crf.log_partition(x, mask)
    tags, best = crf.decode(x, mask)
    for b, n in enumerate(lengths):
        bz, bseq, bscore = _brute(crf, x[b], n)
        assert logz[b] == pytest.approx(bz, rel=1e-12, abs=1e-12)
        assert tuple(tags[b, :n]) == bseq
        assert best[b] == pytest.approx(bscore, rel=1e-12)
        assert (tags[b, n:] == 0).all()
    # forward() is the Viterbi decode
    assert np.array_equal(crf(x, mask=mask), tags)


def test_viterbi_equals_brute_force_under_constraints():
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    st, al, en = scheme_constraints(tags, "iob2")
    crf = _crf(5, seed=3, allowed=al, allowed_start=st, allowed_end=en)
    rng = np.random.default_rng(4)
    for trial in range(5):
        x = rng.normal(size=(1, 4, 5)) * 3
        x[0, :, 2] += 5.0    # I-PER scores high everywhere: unconstrained decoding would start with it
        z = crf.log_partition(x)[0]
        dec, _ = crf.decode(x)
        bz, bseq, _ = _brute(crf, x[0], 4)
        assert z == pytest.approx(bz, rel=1e-12)
        assert tuple(dec[0]) == bseq
        seq = [tags[k] for k in dec[0]]
        assert seq[0] != "I-PER" and seq[0] != "I-LOC"
        for a, b in zip(seq, seq[1:]):
            if b.startswith("I-"):
                assert a in ("B-" + b[2:], b), seq


def test_marginals_sum_to_one_and_match_brute_force():
    rng = np.random.default_rng(2)
    crf = _crf(3, seed=5)
    x = rng.normal(size=(1, 4, 3))
    p = crf.marginals(x)[0]
    assert np.allclose(p.sum(-1), 1.0)
    A, s, e = crf._scores()
    logz = crf.log_partition(x)[0]
    brute = np.zeros((4, 3))
    for seq in itertools.product(range(3), repeat=4):
        sc = crf.sequence_score(x, np.array([seq]))[0]
        for t, j in enumerate(seq):
            brute[t, j] += np.exp(sc - logz)
    assert np.allclose(p, brute, atol=1e-12)


def test_gradient_check_float64():
    rng = np.random.default_rng(7)
    K, T, B = 4, 5, 3
    crf = _crf(K, seed=8)
    x = rng.normal(size=(B, T, K))
    y = rng.integers(0, K, size=(B, T))
    mask = np.arange(T)[None] < np.array([5, 2, 4])[:, None]
    loss, gx = crf.loss_and_grads(x, y, mask)
    grads = {k: v.copy() for k, v in crf.grads.items()}

    def f():
        return float(np.mean(crf.log_partition(x, mask) - crf.sequence_score(x, y, mask)))

    assert loss == pytest.approx(f(), rel=1e-12)
    assert np.max(np.abs(numerical_gradient(f, x) - gx)) < 1e-8
    assert np.all(gx[~mask] == 0)
    for w in ("transitions", "start_transitions", "end_transitions"):
        assert np.max(np.abs(numerical_gradient(f, crf.params[w]) - grads[w])) < 1e-8, w


def test_gradients_equal_torch_autograd():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    K, T, B = 5, 6, 4
    crf = _crf(K, seed=10)
    x = rng.normal(size=(B, T, K))
    y = rng.integers(0, K, size=(B, T))
    lengths = np.array([6, 1, 3, 5])
    mask = np.arange(T)[None] < lengths[:, None]
    loss, gx = crf.loss_and_grads(x, y, mask)

    tx = torch.tensor(x, requires_grad=True)
    A = torch.tensor(crf.params["transitions"], requires_grad=True)
    s = torch.tensor(crf.params["start_transitions"], requires_grad=True)
    e = torch.tensor(crf.params["end_transitions"], requires_grad=True)
    total = 0
    for b in range(B):   # an independent per-sentence forward algorithm, differentiated by autograd
        n = int(lengths[b])
        alpha = s + tx[b, 0]
        gold = s[y[b, 0]] + tx[b, 0, y[b, 0]]
        for t in range(1, n):
            alpha = torch.logsumexp(alpha[:, None] + A, dim=0) + tx[b, t]
            gold = gold + A[y[b, t - 1], y[b, t]] + tx[b, t, y[b, t]]
        total = total + torch.logsumexp(alpha + e, 0) - (gold + e[y[b, n - 1]])
    total = total / B
    total.backward()
    assert loss == pytest.approx(float(total.detach()), rel=1e-12)
    assert np.allclose(gx, tx.grad.numpy(), atol=1e-12)
    assert np.allclose(crf.grads["transitions"], A.grad.numpy(), atol=1e-12)
    assert np.allclose(crf.grads["start_transitions"], s.grad.numpy(), atol=1e-12)
    assert np.allclose(crf.grads["end_transitions"], e.grad.numpy(), atol=1e-12)


def test_training_learns_transition_structure():
    """SGD on the CRF alone (emissions zero) learns that tag 1 always follows tag 0: Viterbi then says so."""
    crf = _crf(3, seed=0)
    for w in crf.params:
        crf.params[w][...] = 0
    y = np.array([[0, 1, 0, 1, 2, 2]] * 4)
    x = np.zeros((4, 6, 3))
    first = None
    for _ in range(200):
        loss, _ = crf.loss_and_grads(x, y)
        first = loss if first is None else first
        for w in crf.params:   # plain gradient descent
            crf.params[w] -= 0.5 * crf.grads[w]
    assert loss < first
    A = crf.transition_matrix
    assert A[0, 1] > A[0, 0] and A[0, 1] > A[0, 2]
    assert np.array_equal(crf.decode(x)[0][0], y[0])


@pytest.mark.parametrize("scheme,tags,ok,bad", [
    ("iob2", ["O", "B-X", "I-X", "B-Y", "I-Y"],
     [("B-X", "I-X"), ("I-X", "I-X"), ("O", "B-Y"), ("I-X", "B-X"), ("I-Y", "O")],
     [("O", "I-X"), ("B-Y", "I-X"), ("I-Y", "I-X")]),
    ("iob1", ["O", "B-X", "I-X", "I-Y", "B-Y"],
     [("O", "I-X"), ("I-X", "B-X"), ("B-X", "I-X"), ("I-X", "I-Y"), ("I-X", "O")],
     [("O", "B-X"), ("I-Y", "B-X"), ("B-Y", "B-X")]),
    ("iobes", ["O", "B-X", "I-X", "E-X", "S-X", "S-Y"],
     [("B-X", "I-X"), ("B-X", "E-X"), ("I-X", "E-X"), ("E-X", "S-Y"), ("S-X", "B-X"), ("O", "S-X")],
     [("B-X", "O"), ("I-X", "B-X"), ("O", "I-X"), ("O", "E-X"), ("E-X", "I-X"), ("S-Y", "E-X")]),
])
def test_scheme_constraints(scheme, tags, ok, bad):
    st, al, en = scheme_constraints(tags, scheme)
    ix = {t: i for i, t in enumerate(tags)}
    for a, b in ok:
        assert al[ix[a], ix[b]], (a, b)
    for a, b in bad:
        assert not al[ix[a], ix[b]], (a, b)
    if scheme == "iob2":
        assert not st[ix["I-X"]] and st[ix["B-X"]] and en.all()
    if scheme == "iob1":
        assert st[ix["I-X"]] and not st[ix["B-X"]]
    if scheme == "iobes":
        assert st[ix["B-X"]] and st[ix["S-X"]] and not st[ix["I-X"]] and not st[ix["E-X"]]
        assert en[ix["E-X"]] and en[ix["O"]] and not en[ix["B-X"]] and not en[ix["I-X"]]


def test_forbidden_padding_tag_and_scheme_errors():
    st, al, en = scheme_constraints(["<pad>", "O", "B-X", "I-X"], "iob2", forbidden={"<pad>"})
    assert not st[0] and not en[0] and not al[0].any() and not al[:, 0].any()
    with pytest.raises(ValueError, match="scheme must be one of"):
        scheme_constraints(["O"], "bilou")
    with pytest.raises(ValueError, match="no E-/S- tags"):
        scheme_constraints(["O", "S-X"], "iob2")
    with pytest.raises(ValueError, match="not 'O' or PREFIX-TYPE"):
        scheme_constraints(["O", "PER"], "iob2")


def test_gold_sequence_breaking_constraints_is_an_error():
    tags = ["O", "B-X", "I-X"]
    st, al, en = scheme_constraints(tags, "iob2")
    crf = _crf(3, allowed=al, allowed_start=st, allowed_end=en)
    x = np.zeros((1, 3, 3))
    with pytest.raises(ValueError, match=r"transition 0 -> 2 at step 1.*forbid"):
        crf.loss_and_grads(x, np.array([[0, 2, 2]]))
    with pytest.raises(ValueError, match="starts with tag id 2"):
        crf.loss_and_grads(x, np.array([[2, 2, 0]]))


def test_bad_arguments():
    crf = _crf(3)
    with pytest.raises(ValueError, match=r"emissions must have shape \(batch, time, 3\)"):
        crf.decode(np.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match="left-aligned"):
        crf.decode(np.zeros((1, 3, 3)), np.array([[1, 0, 1]]))
    with pytest.raises(ValueError, match="at least one unmasked"):
        crf.decode(np.zeros((1, 3, 3)), np.array([[0, 0, 0]]))
    with pytest.raises(ValueError, match="outside"):
        crf.loss_and_grads(np.zeros((1, 2, 3)), np.array([[0, 3]]))
    with pytest.raises(ValueError, match="units must be a positive int"):
        CRF(0)
    with pytest.raises(ValueError, match="allowed must be a boolean array"):
        CRF(3, allowed=np.ones((2, 2), bool))
