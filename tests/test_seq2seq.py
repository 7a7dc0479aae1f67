"""Seq2Seq: end-to-end finite-difference gradients (float64), training, decoding, saving, bad input."""
import numpy as np
import pytest

import rnnlab
from rnnlab.datasets import Vocabulary
from rnnlab.models.seq2seq import Seq2Seq
from rnnlab.optimizers import Adam


def _tiny(attention="dot", **kw):
    sv = Vocabulary(list("abcdef"))
    tv = Vocabulary(list("xyz"))
    m = Seq2Seq(sv, tv, embedding_dim=3, units=3, attention=attention, max_source_len=8, max_target_len=6, **kw)
    return m


def _batch(m):
    X = m.encode_sources(["abc", "fedcb", "a"], warn=False)
    Yin, Yout = m.encode_targets(["xy", "zzx", ""])
    return X, Yin, Yout


def _loss(m, X, Yin, Yout):
    logits, _ = m.forward(X, Yin, training=True)
    return m.loss_fn(Yout, logits, mask=Yout != 0)


@pytest.mark.parametrize("kw", [
    dict(attention="dot"),
    dict(attention="general"),
    dict(attention="concat"),
    dict(attention="none"),
    dict(attention="dot", bidirectional=True),
    dict(attention="general", num_layers=2, cell="gru"),
    dict(attention="none", bidirectional=True, num_layers=2),
    dict(attention="concat", reverse_source=True, cell="rnn"),
], ids=str)
def test_end_to_end_gradients(float64, kw):
    m = _tiny(**kw)
    X, Yin, Yout = _batch(m)
    # move weights away from initial values (zero biases etc.) so that every path is exercised
    gen = np.random.default_rng(1)
    for _, owner, w in m.iter_weights():
        owner.params[w] += 0.3 * gen.standard_normal(owner.params[w].shape)
    loss, _ = m.loss_and_grads(X, Yin, Yout)
    assert np.isclose(loss, _loss(m, X, Yin, Yout))
    checked = 0
    for path, owner, w in m.iter_weights():
        g = owner.grads[w]
        g = g.to_dense() if hasattr(g, "to_dense") else np.array(g)
        p = owner.params[w]
        flat = p.reshape(-1)
        idx = gen.choice(flat.size, size=min(flat.size, 8), replace=False)
        num = np.empty(len(idx))
        for j, k in enumerate(idx):
            old = flat[k]
            flat[k] = old + 1e-6
            lp = _loss(m, X, Yin, Yout)
            flat[k] = old - 1e-6
            lm = _loss(m, X, Yin, Yout)
            flat[k] = old
            num[j] = (lp - lm) / 2e-6
        ana = g.reshape(-1)[idx]
        np.testing.assert_allclose(ana, num, rtol=1e-5, atol=1e-8, err_msg=path)
        checked += 1
    assert checked == len(list(m.iter_weights()))


def _reverse_pairs(n, seed):
    gen = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = "".join(gen.choice(list("abcde"), size=gen.integers(2, 6)))
        out.append((s, s[::-1]))
    return out


def test_learns_string_reversal_and_roundtrips(tmp_path):
    rnnlab.set_random_seed(0)
    train, test = _reverse_pairs(3000, 0), _reverse_pairs(200, 1)
    sv = Vocabulary.build([s for s, _ in train])
    tv = Vocabulary.build([t for _, t in train])
    m = Seq2Seq(sv, tv, embedding_dim=16, units=32, attention="dot", max_source_len=8, max_target_len=8)
    import io
    hist = m.fit(train, epochs=6, batch_size=32, optimizer=Adam(0.01, clipnorm=5.0), verbose=2, stream=io.StringIO())
    assert hist[-1]["loss"] < hist[0]["loss"]
    ev = m.evaluate(test)
    assert ev["exact_match_accuracy"] > 0.9, ev["exact_match_accuracy"]
    # the attention of the first output char points at the last source char (reversal alignment)
    (out, att), = m.translate(["abcde"])
    assert att.shape == (len(out) + 1, 5)
    np.testing.assert_allclose(att.sum(1), 1, rtol=1e-5)
    assert att[0].argmax() == 4
    # beam search finds the same (or a likelier) answer
    assert m.translate(["abcde"], beam_size=3)[0][0] == out
    path = tmp_path / "m.npz"
    m.save(str(path))
    m2 = Seq2Seq.load(str(path))
    assert [o for o, _ in m2.translate(["abc", "edd"])] == [o for o, _ in m.translate(["abc", "edd"])]
    assert m2.get_config() == m.get_config()
    with np.load(path, allow_pickle=False) as z:
        assert "__config__" in z.files


def test_bad_input_and_errors(tmp_path):
    m = _tiny()
    with pytest.warns(UserWarning, match="<unk>"):
        res = m.translate(["ab?q"])
    assert isinstance(res[0][0], str)
    out, att = m.translate([""])[0]
    assert out == "" and att.shape == (0, 0)
    with pytest.warns(UserWarning, match="truncated"):
        m.translate(["abcdefabcdef"])
    with pytest.raises(TypeError, match="list of strings"):
        m.translate("abc")
    with pytest.raises(ValueError, match="attention"):
        _tiny(attention="luong")
    with pytest.raises(ValueError, match="cell"):
        _tiny(cell="transformer")
    with pytest.raises(ValueError, match="units"):
        Seq2Seq(Vocabulary(), Vocabulary(), units=0)
    with pytest.raises(FileNotFoundError):
        Seq2Seq.load(str(tmp_path / "missing.npz"))
    bad = tmp_path / "bad.npz"
    np.savez(bad, a=np.zeros(3))
    with pytest.raises(ValueError, match="__config__"):
        Seq2Seq.load(str(bad))
    with pytest.raises(ValueError, match="no training pairs"):
        m.fit([])
    with pytest.raises(ValueError, match="beam_size"):
        m.beam_decode(np.array([4, 5]), beam_size=0)


def test_greedy_and_beam_return_attention_per_step():
    m = _tiny(attention="general")
    X = m.encode_sources(["abc", "de"], warn=False)
    ids, att = m.greedy_decode(X, max_len=4)
    assert ids.shape[0] == 2 and att.shape == (2, ids.shape[1], X.shape[1])
    np.testing.assert_allclose(att[1, :, 2], 0, atol=1e-6)  # padded source position gets no weight
    ids1, att1 = m.beam_decode(X[0], beam_size=1, max_len=4)
    k = len(ids1)
    np.testing.assert_array_equal(ids1, ids[0, :k])
