"""Tagger options behind the tagging defaults of issue 20: dropout on the recurrent layers' outputs
(``output_dropout``): its float64 gradient with the training masks, identity at inference, files."""
import json

import numpy as np
import pytest

from rnnlab import backend, cli
from rnnlab.datasets.conll import Sentence, write_conll
from rnnlab.tagging.tagger import Tagger, build_tagger
from rnnlab.testing import numerical_gradient

TRAIN = [Sentence("John Smith lives in New York".split(), ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"]),
         Sentence("Mary left 1999 x".split(), ["B-PER", "O", "O", "O"])]


def _training_loss(model, w, c, y, seed=3):
    """The training loss with the same dropout masks every call (rnnlab's generator reseeded first)."""
    backend.set_random_seed(seed)
    p, mask = model.forward(w, c, training=True)
    loss, grad = model.loss_from_outputs(y, p, mask)
    model.backward(grad)
    return loss


@pytest.mark.parametrize("layers, crf", [(1, True), (2, False)])
def test_output_dropout_gradients_match_finite_differences(float64, layers, crf):
    model = build_tagger(TRAIN, char_features=True, embedding_dim=3, units=3, char_dim=2, char_units=2,
                         layers=layers, crf=crf, tag_scheme="iob2" if crf else None, casing=True,
                         output_dropout=0.5)
    assert len(model.output_dropouts) == layers
    w, c, y = model.encode([s.tokens for s in TRAIN], [s.tags for s in TRAIN])
    # the masks really drop: some of the last layer's outputs are zero in training
    backend.set_random_seed(3)
    model.forward(w, c, training=True)
    m = model.output_dropouts[-1]._cache[0]
    assert m is not None and (m == 0).any() and (m == 2.0).any()
    rng = np.random.default_rng(0)
    checked = 0
    for path, owner, name in model.iter_weights():
        if name == "embeddings" or (model.crf is not None and owner is model.crf):
            continue   # the layers after and before the dropout masks are what this test is about
        p = owner.params[name]
        flat = rng.choice(p.size, size=min(5, p.size), replace=False)
        num = numerical_gradient(lambda: _training_loss(model, w, c, y), p,
                                 indices=[np.unravel_index(i, p.shape) for i in flat])
        _training_loss(model, w, c, y)
        g = np.array(owner.grads[name])
        np.testing.assert_allclose(g.ravel()[flat], num, rtol=1e-6, atol=1e-9, err_msg=path)
        checked += 1
    assert checked >= 4


def test_output_dropout_is_the_identity_at_inference_and_round_trips(tmp_path):
    a = build_tagger(TRAIN, char_features=True, embedding_dim=4, units=4, crf=True, tag_scheme="iob2",
                     casing=True, output_dropout=0.3)
    b = build_tagger(TRAIN, char_features=True, embedding_dim=4, units=4, crf=True, tag_scheme="iob2",
                     casing=True)
    b.set_weights(a.get_weights())
    w, c, _ = a.encode([s.tokens for s in TRAIN])
    np.testing.assert_array_equal(a.forward(w, c, training=False)[0], b.forward(w, c, training=False)[0])
    backend.set_random_seed(1)
    pa = a.forward(w, c, training=True)[0]
    backend.set_random_seed(1)
    pb = b.forward(w, c, training=True)[0]
    assert not np.allclose(pa, pb)   # in training the masks change the scores
    back = Tagger.load(a.save(tmp_path / "t.npz"))
    assert back.config["output_dropout"] == 0.3 and len(back.output_dropouts) == 1
    assert back.predict([s.tokens for s in TRAIN]) == a.predict([s.tokens for s in TRAIN])


def test_output_dropout_bad_values():
    for bad in (-0.1, 1.0, "0.5", True):
        with pytest.raises(ValueError, match="Tagger: output_dropout must be a float in \\[0, 1\\), got"):
            build_tagger(TRAIN, output_dropout=bad)


def test_cli_output_dropout_flag(tmp_path, capsys):
    write_conll(TRAIN * 4, tmp_path / "train.conll")
    write_conll(TRAIN, tmp_path / "valid.conll")
    base = ["train", "tag", "--train", str(tmp_path / "train.conll"), "--valid", str(tmp_path / "valid.conll"),
            "--epochs", "1", "--units", "4", "--embedding-dim", "4", "--char-units", "3", "--char-dim", "3",
            "--verbose", "0", "--threads", "1"]
    assert cli.main(base + ["--output-dropout", "1.5", "--out", str(tmp_path / "bad")]) != 0
    assert "--output-dropout must be in [0, 1), got 1.5" in capsys.readouterr().err
    assert cli.main(base + ["--output-dropout", "0.25", "--out", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    model = Tagger.load(str(tmp_path / "r" / "model.npz"))
    assert model.config["output_dropout"] == 0.25
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["epochs_run"] == 1


def test_version_2_files_without_output_dropout_load(tmp_path):
    """A version-2 file (before output_dropout) loads as a tagger without it, predicting the same tags."""
    m = build_tagger(TRAIN, char_features=True, embedding_dim=4, units=4, crf=True, tag_scheme="iob2", casing=True)
    path = m.save(tmp_path / "t.npz")
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    doc = json.loads(arrays["__tagger__"].tobytes().decode("utf-8"))
    assert doc["version"] == 4 and doc["config"]["output_dropout"] == 0.0
    doc["version"] = 2
    del doc["config"]["output_dropout"]
    arrays["__tagger__"] = np.frombuffer(json.dumps(doc).encode("utf-8"), dtype=np.uint8)
    old = str(tmp_path / "v2.npz")
    np.savez(old, **arrays)
    back = Tagger.load(old)
    assert back.config["output_dropout"] == 0.0 and back.output_dropouts == []
    assert back.predict([s.tokens for s in TRAIN]) == m.predict([s.tokens for s in TRAIN])


def test_cli_lowercase_default_follows_the_casing_features(tmp_path, capsys):
    """Word ids are lowercased by default when the character and casing features keep the case in the input;
    --no-lowercase, --no-casing and --no-char-features keep cased word ids."""
    write_conll(TRAIN * 4, tmp_path / "train.conll")
    write_conll(TRAIN, tmp_path / "valid.conll")
    base = ["train", "tag", "--train", str(tmp_path / "train.conll"), "--valid", str(tmp_path / "valid.conll"),
            "--epochs", "1", "--units", "4", "--embedding-dim", "4", "--char-units", "3", "--char-dim", "3",
            "--verbose", "0", "--threads", "1"]
    expected = {(): True, ("--no-lowercase",): False, ("--no-casing",): False, ("--no-char-features",): False,
                ("--no-casing", "--lowercase"): True}
    for k, (flags, lower) in enumerate(expected.items()):
        assert cli.main(base + list(flags) + ["--out", str(tmp_path / f"r{k}")]) == 0, flags
        capsys.readouterr()
        model = Tagger.load(str(tmp_path / f"r{k}" / "model.npz"))
        assert model.config["lowercase"] is lower, flags
        assert ("john" in model.words.index) is lower and ("John" in model.words.index) is not lower, flags
