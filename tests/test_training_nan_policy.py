"""One NaN policy in every training loop (Model/Sequential.fit, Seq2Seq.fit, Tagger.fit): a non-finite loss or
gradient stops training before the update, with a RuntimeWarning naming epoch and step; stop_reason says why."""
import numpy as np
import pytest

import rnnlab
from rnnlab.datasets import Vocabulary
from rnnlab.datasets.conll import generate_two_sided_tagging
from rnnlab.models.seq2seq import Seq2Seq
from rnnlab.optimizers import SGD
from rnnlab.tagging.tagger import build_tagger
from rnnlab.training import NonFiniteLoss, checked_update


def _poison(model):
    """NaN in the first weight array; returns copies of all weights."""
    refs = list(model.iter_weights())
    _, owner, w = refs[0]
    owner.params[w][...] = np.nan
    return [owner.params[name].copy() for _, owner, name in refs]


def _unchanged(model, before):
    for (_, owner, w), b in zip(model.iter_weights(), before):
        np.testing.assert_array_equal(owner.params[w], b)


def test_checked_update_refuses_non_finite_before_applying():
    d = rnnlab.layers.Dense(1)
    d(np.ones((2, 3)))
    w = d.params["kernel"].copy()
    d.grads["kernel"][...] = np.inf
    with pytest.raises(NonFiniteLoss, match="gradient norm is inf at epoch 2, step 4"):
        checked_update(SGD(0.1), list(d.trainable_weight_refs()), 1.0, epoch=1, step=3)
    with pytest.raises(NonFiniteLoss, match="loss is nan"):
        checked_update(SGD(0.1), list(d.trainable_weight_refs()), float("nan"))
    np.testing.assert_array_equal(d.params["kernel"], w)


def test_seq2seq_fit_stops_on_nan_without_update():
    m = Seq2Seq(Vocabulary(list("abcdef")), Vocabulary(list("xyz")), embedding_dim=3, units=3, max_source_len=8,
                max_target_len=6)
    before = _poison(m)
    with pytest.warns(RuntimeWarning, match="loss is nan at epoch 1, step 1"):
        m.fit([("abc", "xy"), ("fed", "zz")], epochs=3, batch_size=2, verbose=0, optimizer=SGD(0.1))
    assert "loss is nan" in m.stop_reason
    _unchanged(m, before)


def test_tagger_fit_stops_on_nan_without_update():
    train = generate_two_sided_tagging(20, seed=0)
    m = build_tagger(train, embedding_dim=4, units=4)
    before = _poison(m)
    with pytest.warns(RuntimeWarning, match="loss is nan at epoch 1, step 1"):
        m.fit(train, epochs=3, batch_size=8, verbose=0, optimizer=SGD(0.1))
    assert "loss is nan" in m.stop_reason
    _unchanged(m, before)
