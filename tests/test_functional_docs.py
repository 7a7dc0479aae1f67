"""The code in docs/functional.md runs, and its custom layer passes the gradient check and trains."""
import os
import re

import numpy as np

import rnnlab

DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "functional.md")


def _blocks():
    with open(DOC, encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def test_doc_examples_run_and_custom_layer_trains():
    blocks = _blocks()
    assert len(blocks) == 3
    ns = {}
    for code in blocks:
        exec(compile(code, DOC, "exec"), ns)
    model = ns["model"]
    assert model.name == "luong" and [t.name for t in model.inputs] == ["source", "target_in"]
    rng = np.random.default_rng(0)
    src = rng.integers(1, 40, (8, 7))
    src[:, 5:] = 0
    tgt = rng.integers(1, 20, (8, 6))
    h = model.fit([src, tgt], tgt, epochs=2, batch_size=4, verbose=0)
    assert np.isfinite(h.history["loss"]).all()
    # the custom layer inside a functional graph
    GatedResidual = ns["GatedResidual"]
    x = rnnlab.Input((5, 3))
    m = rnnlab.Model(x, rnnlab.layers.Dense(1)(GatedResidual()(x)))
    m.compile("adam", "mse")
    xs = rng.standard_normal((16, 5, 3))
    ys = xs.sum(axis=2, keepdims=True)
    before = m.evaluate(xs, ys)
    m.fit(xs, ys, epochs=20, batch_size=8, verbose=0)
    assert m.evaluate(xs, ys) < before
