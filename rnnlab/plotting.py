"""Plot helpers (matplotlib is imported lazily, only when a plot is drawn).

:func:`attention_heatmap` draws an attention matrix (output tokens x source tokens) to a PNG;
:func:`attention_text` renders the same matrix as text for a terminal. Every plot in rnnlab gets pyplot from
``_pyplot(what)`` (the Agg backend; a missing matplotlib is an ImportError saying how to install it) and writes
its file with :func:`save_figure` (the folder made, the file written atomically, the figure closed).
"""
from __future__ import annotations

import os

import numpy as np


def _pyplot(what="plotting"):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(f"{what} needs matplotlib: pip install matplotlib (or the 'plot' extra: "
                          "pip install -e '.[plot]')") from None
    return plt


def save_figure(fig, path, dpi=120, **savefig_kwargs):
    """Write ``fig`` to ``path`` (the format from its suffix, PNG without one) and close it: the folder is
    created, and the file is written atomically (rnnlab.io), so a failed save leaves any old plot intact.
    Returns ``path``."""
    import io as _bio

    from .io import atomic_write_bytes

    plt = _pyplot()
    try:
        fmt = os.path.splitext(os.fspath(path))[1][1:].lower() or "png"
        buf = _bio.BytesIO()
        fig.savefig(buf, format=fmt, dpi=dpi, **savefig_kwargs)
        os.makedirs(os.path.dirname(os.path.abspath(os.fspath(path))), exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())
    finally:
        plt.close(fig)
    return path


def _check(att, source_tokens, output_tokens):
    att = np.asarray(att, dtype=float)
    if att.ndim != 2:
        raise ValueError(f"attention must be a 2-D (output tokens, source tokens) matrix, got shape {att.shape}")
    if att.shape != (len(output_tokens), len(source_tokens)):
        raise ValueError(f"attention shape {att.shape} does not match {len(output_tokens)} output tokens x "
                         f"{len(source_tokens)} source tokens")
    return att


def _show(t):
    return "\u2423" if t == " " else t


def attention_heatmap(att, source_tokens, output_tokens, path, title=None):
    """Save a heat map of ``att`` (rows: output tokens, columns: source tokens) to ``path`` (PNG)."""
    att = _check(att, source_tokens, output_tokens)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.32 * att.shape[1] + 2), max(3.0, 0.32 * att.shape[0] + 1.5)))
    im = ax.imshow(att, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(att.shape[1]))
    ax.set_xticklabels([_show(t) for t in source_tokens], fontsize=9)
    ax.set_yticks(range(att.shape[0]))
    ax.set_yticklabels([_show(t) for t in output_tokens], fontsize=9)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def attention_text(att, source_tokens, output_tokens):
    """The attention matrix as text: one row per output token, shades `` .:-=+*#%@`` per weight."""
    att = _check(att, source_tokens, output_tokens)
    shades = " .:-=+*#%@"
    lines = ["    " + "".join(_show(t)[:1] for t in source_tokens)]
    for tok, row in zip(output_tokens, att):
        cells = "".join(shades[min(int(w * len(shades)), len(shades) - 1)] for w in row)
        lines.append(f"{_show(tok)[:3]:>3} {cells}")
    return "\n".join(lines)
