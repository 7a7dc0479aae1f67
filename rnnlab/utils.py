"""Small helpers with ``keras.utils`` names: ``to_categorical``, ``one_hot``, ``normalize``, ``pad_sequences``,
``set_random_seed``, ``get_file`` (local files only) and ``plot_model`` (a PNG drawn with matplotlib).

``to_categorical(y, num_classes=None)`` follows Keras: labels of shape ``S`` (a trailing axis of
size 1 is dropped) become ``S + (num_classes,)`` one-hot rows; ``num_classes`` defaults to
``max(y) + 1``. The result has the library float type (:func:`rnnlab.backend.floatx`, float32 by
default, as Keras 2's default ``dtype="float32"``) unless ``dtype`` is given. Unlike Keras, which
silently wraps negative labels and truncates fractional ones, bad labels raise ``ValueError``.

``one_hot(ids, depth)``: ids of any shape ``S`` -> ``S + (depth,)``; no axis is dropped.

``normalize(x, axis=-1, order=2)``: ``x / ||x||_order`` along ``axis`` (zero vectors stay zero), as Keras.

``plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False, show_layer_names=True,
rankdir="TB", dpi=200, show_layer_activations=False, show_trainable=False)`` draws one box per layer
(name and class; with ``show_shapes`` the input and output shapes, ``?`` where unknown) and an arrow for
every connection, to a PNG with matplotlib (no graphviz needed). The edges come from the functional graph
(each layer's inbound nodes) when the model has one, else the layers are chained in order (Sequential).
"""
from __future__ import annotations

import numpy as np

import os

from . import backend
from .backend import set_random_seed  # noqa: F401  (re-export)
from .text.sequence import pad_sequences  # noqa: F401  (re-export: keras.utils.pad_sequences)

__all__ = ["to_categorical", "one_hot", "normalize", "pad_sequences", "set_random_seed", "get_file", "plot_model",
           "PyDataset"]


def _int_labels(y, fn):
    if hasattr(y, "detach") and hasattr(y, "numpy"):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            bad = float(y[~np.isfinite(y) | (y != np.round(y))].reshape(-1)[0])
            raise ValueError(f"{fn}: labels must be whole numbers, got {bad!r}")
    elif y.dtype.kind not in "biu":
        raise TypeError(f"{fn}: labels must be an integer array, got dtype {y.dtype}")
    return y.astype(np.int64)


def _encode(y, depth, fn, arg, dtype):
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth <= 0:
        raise ValueError(f"{fn}: {arg} must be a positive int, got {depth!r}")
    depth = int(depth)
    if y.size:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0:
            raise ValueError(f"{fn}: labels must be >= 0, got {lo}")
        if hi >= depth:
            raise ValueError(f"{fn}: label {hi} is out of range for {arg}={depth} (labels must be in [0, {depth}))")
    dtype = backend.floatx() if dtype is None else np.dtype(dtype)
    flat = y.reshape(-1)
    out = np.zeros((flat.size, depth), dtype=dtype)
    out[np.arange(flat.size), flat] = 1
    return out.reshape(y.shape + (depth,))


def to_categorical(y, num_classes=None, dtype=None):
    """Integer class labels ``y`` (shape ``S``, or ``S + (1,)``) -> one-hot ``S + (num_classes,)``."""
    y = _int_labels(y, "to_categorical")
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y[..., 0]
    if num_classes is None:
        if y.size == 0:
            raise ValueError("to_categorical: cannot infer num_classes from empty labels; pass num_classes")
        if y.min() < 0:
            raise ValueError(f"to_categorical: labels must be >= 0, got {int(y.min())}")
        num_classes = int(y.max()) + 1
    return _encode(y, num_classes, "to_categorical", "num_classes", dtype)


def one_hot(ids, depth, dtype=None):
    """Integer ids of shape ``S`` -> one-hot ``S + (depth,)`` (ids must be in ``[0, depth)``)."""
    return _encode(_int_labels(ids, "one_hot"), depth, "one_hot", "depth", dtype)


def normalize(x, axis=-1, order=2):
    """``x`` divided by its ``order``-norm along ``axis`` (Keras ``keras.utils.normalize``)."""
    if hasattr(x, "detach") and hasattr(x, "numpy"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"normalize: x must be numeric, got dtype {x.dtype}")
    x = x if x.dtype.kind == "f" else x.astype(backend.floatx())
    n = np.atleast_1d(np.linalg.norm(x, order, axis))
    n[n == 0] = 1
    return x / np.expand_dims(n, axis)


def get_file(fname=None, origin=None, untar=False, md5_hash=None, file_hash=None, cache_subdir="datasets",
             hash_algorithm="auto", extract=False, archive_format="auto", cache_dir=None, force_download=False,
             **kwargs):
    """``keras.utils.get_file`` for files that are already on this machine (rnnlab never downloads here).

    Returns the first existing path among: ``fname`` itself, ``<cache_dir or ~/.keras>/<cache_subdir>/<fname>``
    and ``$RNNLAB_DATA/<fname>``; otherwise ``FileNotFoundError`` naming the places looked at and ``origin``,
    so the file can be fetched by hand and put there. ``fname`` defaults to the last part of ``origin``.
    """
    if fname is None:
        if not origin:
            raise ValueError("get_file: give fname= (or origin= to take the file name from)")
        fname = os.path.basename(str(origin).split("?")[0])
    fname = os.fspath(fname)
    base = os.path.expanduser(cache_dir) if cache_dir else os.path.join(os.path.expanduser("~"), ".keras")
    places = [fname, os.path.join(base, cache_subdir, fname)]
    if os.environ.get("RNNLAB_DATA"):
        places.append(os.path.join(os.environ["RNNLAB_DATA"], fname))
    for p in places:
        if os.path.exists(p):
            return p
    raise FileNotFoundError(
        f"get_file: {fname!r} is not on this machine (looked at {places}). rnnlab does not download: fetch "
        f"{origin or fname} yourself and put it at {places[1]} (or pass its path as fname)")


# --------------------------------------------------------------------------------------------- plot_model
def _model_graph(model):
    """``(layers, edges)``: the model's layers in order and ``(i, j)`` index pairs, one per connection."""
    layers = list(getattr(model, "layers", []) or [])
    index = {id(l): i for i, l in enumerate(layers)}
    edges = []
    graph = False
    for j, layer in enumerate(layers):
        for node in layer.__dict__.get("_inbound_nodes", []) or []:
            for t in getattr(node, "parents", []) or []:
                hist = getattr(t, "_keras_history", None)
                if hist is not None and id(hist[0]) in index:
                    graph = True
                    e = (index[id(hist[0])], j)
                    if e not in edges:
                        edges.append(e)
    if not graph:
        edges = [(i, i + 1) for i in range(len(layers) - 1)]
    return layers, edges


def _shape_text(shape):
    from .layers.base import format_shape
    if shape is None:
        return "?"
    try:
        return format_shape(list(shape) if isinstance(shape, list) else tuple(shape))
    except TypeError:
        return "?"


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False, show_layer_names=True,
               rankdir="TB", expand_nested=False, dpi=200, show_layer_activations=False, show_trainable=False,
               **kwargs):
    """Draw the model's layers as boxes joined by arrows into a PNG at ``to_file``; returns the path."""
    if rankdir not in ("TB", "LR"):
        raise ValueError(f"plot_model: rankdir must be 'TB' or 'LR', got {rankdir!r}")
    layers, edges = _model_graph(model)
    if not layers:
        raise ValueError("plot_model: the model has no layers to draw")
    from .plotting import _pyplot, save_figure
    plt = _pyplot("plot_model")
    depth = [0] * len(layers)
    for i, j in sorted(edges, key=lambda e: e[1]):
        depth[j] = max(depth[j], depth[i] + 1)
    columns: dict = {}
    pos = []
    for i, d in enumerate(depth):
        k = columns.get(d, 0)
        columns[d] = k + 1
        pos.append((d, k))
    width = max(columns.values())
    texts = []
    for layer in layers:
        lines = []
        head = type(layer).__name__
        if show_layer_names:
            head = f"{layer.name} ({head})"
        if show_layer_activations and getattr(layer, "activation", None) is not None:
            act = layer.activation
            head += f"  activation={getattr(act, '__name__', getattr(act, 'name', act))}"
        if show_trainable:
            head += f"  trainable={'Y' if layer.trainable else 'N'}"
        lines.append(head)
        if show_shapes:
            lines.append(f"input: {_shape_text(getattr(layer, 'input_shape', None))}   "
                         f"output: {_shape_text(getattr(layer, 'output_shape', None))}")
        if show_dtype:
            lines.append(f"dtype: {layer.dtype}")
        texts.append("\n".join(lines))
    xy = {}
    for i, (d, k) in enumerate(pos):
        offset = (k - (columns[d] - 1) / 2.0) * 4.0
        xy[i] = (offset, -d * 1.6) if rankdir == "TB" else (d * 5.0, -offset / 2.0)
    xs = [p[0] for p in xy.values()]
    ys = [p[1] for p in xy.values()]
    fig_w = max(4.0, (max(xs) - min(xs)) * 0.9 + 4.5 if rankdir == "TB" else (max(xs) - min(xs)) * 0.9 + 5)
    fig_h = max(2.0, (max(ys) - min(ys)) * 0.75 + 1.5)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    try:
        for i, j in edges:
            if rankdir == "TB":   # from the bottom of one box to the top of the next
                start, end, shrink = (xy[i][0], xy[i][1] - 0.33), (xy[j][0], xy[j][1] + 0.33), 0
            else:
                start, end, shrink = xy[i], xy[j], 60
            ax.annotate("", xy=end, xytext=start, zorder=1,
                        arrowprops=dict(arrowstyle="-|>", color="0.3", shrinkA=shrink, shrinkB=shrink))
        for i, text in enumerate(texts):
            ax.text(*xy[i], text, ha="center", va="center", fontsize=8, family="monospace",
                    bbox=dict(boxstyle="round,pad=0.5", facecolor="#e8f0fb", edgecolor="0.3"))
        pad_x, pad_y = 2.5, 0.8
        ax.set_xlim(min(xs) - pad_x, max(xs) + pad_x)
        ax.set_ylim(min(ys) - pad_y, max(ys) + pad_y)
        ax.axis("off")
    except BaseException:
        plt.close(fig)
        raise
    return save_figure(fig, os.fspath(to_file), dpi=dpi, bbox_inches="tight")


def __getattr__(name):  # only for names that do not exist here
    if name == "PyDataset":  # keras.utils.PyDataset, imported lazily: rnnlab.models imports this module at start-up
        from .models.data_adapters import PyDataset
        return PyDataset
    from ._compat import missing  # an AttributeError naming the rnnlab equivalent
    raise missing("rnnlab.utils", name)
