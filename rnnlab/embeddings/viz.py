"""A 2-D map of words: PCA of their vectors (NumPy SVD), drawn to PNG with matplotlib.

PCA: with ``Xc = X - mean(X)`` (rows = words) and ``Xc = U S V^T``, the 2-D coordinates are the projections
on the first two principal directions, ``Xc V[:, :2] = U[:, :2] S[:2]``; the share of variance each keeps is
``S_k^2 / sum S^2``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["pca_2d", "plot_word_map"]


def pca_2d(X):
    """Project the rows of ``X`` (n, D) on their first two principal components.

    Returns ``(coords (n, 2), explained_variance_ratio (2,))``. Needs n >= 2.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"pca_2d: need a 2-D array with at least 2 rows, got shape {X.shape}")
    Xc = X - X.mean(axis=0)
    U, S, _ = np.linalg.svd(Xc, full_matrices=False)
    k = min(2, len(S))
    coords = np.zeros((X.shape[0], 2))
    coords[:, :k] = U[:, :k] * S[:k]
    tot = float(np.sum(S ** 2))
    ratio = np.zeros(2)
    if tot > 0:
        ratio[:k] = S[:k] ** 2 / tot
    return coords, ratio


def plot_word_map(kv, words, path, title=None, groups=None):
    """Draw the PCA map of ``words`` (keys of the :class:`KeyedVectors` ``kv``) to the PNG ``path``.

    ``groups`` (optional, same length as ``words``) colours the points by group label. Unknown words raise
    ``KeyError``; matplotlib is imported only here (``pip install rnnlab[plot]``).
    Returns the 2-D coordinates.
    """
    words = list(words)
    if len(words) < 2:
        raise ValueError(f"plot_word_map: need at least 2 words, got {len(words)}")
    if groups is not None and len(groups) != len(words):
        raise ValueError(f"plot_word_map: {len(groups)} group labels for {len(words)} words")
    X = np.stack([kv.get_vector(w, norm=True) for w in words])
    coords, ratio = pca_2d(X)
    from ..plotting import _pyplot, save_figure

    plt = _pyplot("plot_word_map")
    fig, ax = plt.subplots(figsize=(8, 6), dpi=110)
    if groups is None:
        ax.scatter(coords[:, 0], coords[:, 1], s=18, color="tab:blue")
    else:
        labels = list(dict.fromkeys(groups))
        cmap = plt.get_cmap("tab10")
        for j, g in enumerate(labels):
            sel = [i for i, gi in enumerate(groups) if gi == g]
            ax.scatter(coords[sel, 0], coords[sel, 1], s=18, color=cmap(j % 10), label=str(g))
        ax.legend(loc="best", fontsize=8)
    for (x, y), w in zip(coords, words):
        ax.annotate(w, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=9)
    ax.set_xlabel(f"PC1 ({100 * ratio[0]:.0f}% of variance)")
    ax.set_ylabel(f"PC2 ({100 * ratio[1]:.0f}% of variance)")
    ax.set_title(title or "word vectors, PCA")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)    # (the figure's own dpi, as before)
    return coords
