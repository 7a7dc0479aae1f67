"""rnnlab.plotting.save_figure / _pyplot: the one way every rnnlab plot gets pyplot and writes its file."""
import sys

import pytest

pytest.importorskip("matplotlib")

from rnnlab.plotting import _pyplot, save_figure  # noqa: E402


def _fig():
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    return plt, fig


def test_writes_the_suffix_format_into_a_new_folder_and_closes(tmp_path):
    plt, fig = _fig()
    path = tmp_path / "a" / "b" / "p.png"
    assert save_figure(fig, path, dpi=50) == path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
    plt, fig = _fig()
    save_figure(fig, tmp_path / "p.svg")
    assert b"<svg" in (tmp_path / "p.svg").read_bytes()[:400]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "p.svg"]     # no temporary left


def test_failed_save_keeps_the_old_file(tmp_path):
    path = tmp_path / "p.png"
    path.write_bytes(b"old plot")
    plt, fig = _fig()
    with pytest.raises(ValueError):
        save_figure(fig, tmp_path / "p.notaformat")
    plt, fig = _fig()

    def broken(*a, **k):
        raise RuntimeError("disk full")

    fig.savefig = broken
    with pytest.raises(RuntimeError, match="disk full"):
        save_figure(fig, path)
    assert path.read_bytes() == b"old plot" and not plt.fignum_exists(fig.number)


def test_missing_matplotlib_names_the_caller(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="plot_word_map needs matplotlib: pip install matplotlib"):
        _pyplot("plot_word_map")
