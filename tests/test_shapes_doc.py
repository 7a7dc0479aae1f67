"""Every Python block in docs/shapes.md runs as written (so the examples stay runnable)."""
import os
import re

import pytest

DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "shapes.md")


def _blocks():
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_doc_has_all_five_shapes():
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    for title in ("One-to-one", "One-to-many", "Many-to-one", "encoder-decoder", "synchronised"):
        assert title in text
    assert "RepeatVector(" in text
    assert len(_blocks()) >= 6


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_block_runs(index, capsys):
    code = _blocks()[index]
    exec(compile(code, f"docs/shapes.md block {index + 1}", "exec"), {"__name__": "__shapes_doc__"})
    assert capsys.readouterr().out.strip()  # every block prints what it shows
