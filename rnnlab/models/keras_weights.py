"""Load Keras 3 weight files (``.weights.h5``, and the weights inside a ``.keras`` archive) into a Sequential.

Keras 3 (``model.save_weights("m.weights.h5")``) writes one HDF5 file:

    layers/<key>/vars/0, 1, ...                      a layer's own variables (Dense, Embedding)
    layers/<key>/cell/vars/0, 1, 2                   SimpleRNN / LSTM / GRU (kernel, recurrent_kernel, bias)
    layers/<key>/forward_layer/cell/vars/...         Bidirectional: forward direction first,
    layers/<key>/backward_layer/cell/vars/...        then the backward one (``get_weights()`` order)
    layers/<key>/layer/vars/...                      TimeDistributed: the wrapped layer

``<key>`` is the layer's class name in snake case, numbered by occurrence among layers of the same class
in model order: ``lstm``, ``lstm_1``, ``dense``, ``dense_1``, ``simple_rnn``, ``bidirectional`` ...
(each ``vars`` group's ``name`` attribute holds the Keras layer name). A ``.keras`` file is a zip
archive holding ``config.json``, ``metadata.json`` and ``model.weights.h5`` (the same layout).

:func:`load_keras_weights` matches the rnnlab model's layers to those groups the same way (class name and
occurrence, so layers are matched in order; layers without weights are skipped), checks every array's
shape before anything is read or written (a mismatch names the layer index and name, the weight and both
shapes; a file whose recurrent cell is of another type, e.g. GRU weights for an LSTM, is refused as the
wrong layer type), then sets the weights. The arrays are exactly Keras' ``get_weights()``, which rnnlab's
``set_weights()`` takes as they are (GRU ``reset_after=True`` bias (2, 3U), ``False`` bias (3U,)).

A damaged or hostile file never surfaces an h5py exception: every HDF5 access that fails (and a group where a
dataset belongs, or the reverse) raises :class:`rnnlab.io.FileFormatError` (a ``ValueError``) naming the file and
the HDF5 path; the ``model.weights.h5`` of a ``.keras`` archive is checked against the read limit and for zip
bombs before it is inflated, and a dataset is read only once its shape equals the model's weight.

Needs ``h5py`` (``pip install h5py``, or the extra: ``pip install "rnnlab[h5py]"``; also part of the ``test`` extra).
"""
from __future__ import annotations

import io
import os
import re
import zipfile
import zlib

import numpy as np

from .. import io as _rio

_CHILD_ORDER = ("cell", "forward_layer", "backward_layer", "layer")
_CELL_KIND = {"simple_rnn_cell": "SimpleRNN", "lstm_cell": "LSTM", "gru_cell": "GRU"}


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("load_keras_weights needs h5py to read Keras .weights.h5/.keras files: pip install h5py "
                          "(or the 'h5py' extra: pip install \"rnnlab[h5py]\")") from None
    return h5py


def keras_key(class_name: str) -> str:
    """Keras' ``to_snake_case`` of a class name: ``SimpleRNN`` -> ``simple_rnn``, ``LSTM`` -> ``lstm``."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name)
    return name.lower()


class _Src:
    """The file being read: every h5py access goes through :meth:`get`, which turns h5py's failures on a damaged
    or hostile file (``RuntimeError``, ``OSError``, ``KeyError`` ...) into a :class:`rnnlab.io.FileFormatError`
    naming the file and the HDF5 path being read."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def err(self, where, msg):
        return _rio.FileFormatError(f"load_keras_weights: {self.path}: '{where}' {msg}", path=self.path, member=where)

    def get(self, where, fn):
        try:
            return fn()
        except _rio.RnnlabError:
            raise
        except (RuntimeError, OSError, KeyError, ValueError, TypeError, AttributeError) as e:
            raise self.err(where, f"cannot be read ({type(e).__name__}: {e})") from None

    def group(self, g, key, where):
        h5py = _h5py()
        child = self.get(where, lambda: g[key])
        return child if isinstance(child, h5py.Group) else None

    def keys(self, g, where):
        return self.get(where, lambda: list(g.keys()))

    def attr_name(self, g, where):
        name = self.get(where, lambda: g.attrs.get("name", ""))
        return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


def _group_arrays(src, g, prefix):
    """``[(h5 path, dataset)]`` of a layer group in Keras ``get_weights()`` order (datasets, not read yet)."""
    h5py = _h5py()
    out = []
    keys = src.keys(g, prefix)
    if "vars" in keys:
        v = src.group(g, "vars", f"{prefix}/vars")
        if v is None:
            raise src.err(f"{prefix}/vars", "is not an HDF5 group")
        vk = src.keys(v, f"{prefix}/vars")
        if not all(k.isdigit() for k in vk):
            raise src.err(f"{prefix}/vars", f"holds entries {vk[:5]} (expected 0, 1, 2 ...)")
        for k in sorted(vk, key=int):
            ds = src.get(f"{prefix}/vars/{k}", lambda: v[k])
            if not isinstance(ds, h5py.Dataset):
                raise src.err(f"{prefix}/vars/{k}", "is not an HDF5 dataset")
            out.append((f"{prefix}/vars/{k}", ds))
    children = [k for k in keys if k != "vars"]
    children.sort(key=lambda k: (_CHILD_ORDER.index(k) if k in _CHILD_ORDER else len(_CHILD_ORDER), k))
    for k in children:
        sub = src.group(g, k, f"{prefix}/{k}")
        if sub is not None:
            out.extend(_group_arrays(src, sub, f"{prefix}/{k}"))
    return out


def _shape(src, h5path, ds):
    return src.get(h5path, lambda: tuple(ds.shape))


def _read(src, h5path, ds, shape):
    """Read one dataset whose shape was checked against the model (so its size is the model's own)."""
    dtype = src.get(h5path, lambda: ds.dtype)
    if dtype.kind not in "biuf":
        raise src.err(h5path, f"is not numeric (dtype {dtype})")
    arr = np.asarray(src.get(h5path, lambda: ds[()]))
    if arr.shape != shape:
        raise src.err(h5path, f"read as shape {arr.shape}, expected {shape}")
    return arr


def _cell_kinds(src, g, prefix):
    """The recurrent cell types found in a layer group (from the cells' Keras names), in child order."""
    kinds = []
    for k in sorted(src.keys(g, prefix), key=lambda k: (_CHILD_ORDER.index(k) if k in _CHILD_ORDER else 9, k)):
        sub = None if k == "vars" else src.group(g, k, f"{prefix}/{k}")
        if sub is None:
            continue
        if k == "cell" and "vars" in src.keys(sub, f"{prefix}/{k}"):
            name = src.attr_name(src.get(f"{prefix}/{k}/vars", lambda: sub["vars"]), f"{prefix}/{k}/vars")
            base = re.sub(r"_\d+$", "", name)
            kinds.append(_CELL_KIND.get(base))
        else:
            kinds.extend(_cell_kinds(src, sub, f"{prefix}/{k}"))
    return kinds


def _model_cell_kinds(layer):
    from ..layers.recurrent import RNN

    if isinstance(layer, RNN):
        cell = layer.__dict__.get("cell")      # RNN(cell): the kind of its cell (none known for other cells)
        if cell is not None:
            kind = type(cell).__name__
            return [kind[:-len("Cell")]] if kind in ("SimpleRNNCell", "LSTMCell", "GRUCell") else []
        return [type(layer).__name__]
    kinds = []
    for attr in ("forward_layer", "backward_layer", "layer"):
        inner = getattr(layer, attr, None)
        if inner is not None:
            kinds.extend(_model_cell_kinds(inner))
    return kinds


def _keras_name(src, g, prefix):
    if "vars" not in src.keys(g, prefix):
        return ""
    return src.attr_name(src.get(f"{prefix}/vars", lambda: g["vars"]), f"{prefix}/vars")


def _open(path):
    """An open h5py File for ``path`` (``.weights.h5`` / ``.h5``, or ``.keras`` zip archive). The weights
    member of a ``.keras`` archive is checked (declared size against the read limit, compression ratio)
    before it is inflated."""
    h5py = _h5py()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_keras_weights: no such file: {path}")
    if os.path.isdir(path):
        raise _rio.FileFormatError(f"load_keras_weights: {path} is a directory, not a Keras weights file", path=path)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                if "model.weights.h5" not in names:
                    raise _rio.FileFormatError(f"load_keras_weights: {path} is a zip archive without model.weights.h5 "
                                               f"(holds {names[:8]}); expected a Keras 3 .keras file", path=path)
                info = z.getinfo("model.weights.h5")
                limit = _rio.max_read_bytes()
                if info.file_size > limit:
                    raise _rio.FileTooLargeError(f"load_keras_weights: {path}: member 'model.weights.h5' declares "
                                                 f"{_rio.format_bytes(info.file_size)}, more than the read limit of "
                                                 f"{_rio.format_bytes(limit)}", path=path, member="model.weights.h5")
                ratio = info.file_size / max(info.compress_size, 1)
                if info.file_size > 2 ** 20 and ratio > _rio.MAX_COMPRESSION_RATIO:
                    raise _rio.FileTooLargeError(f"load_keras_weights: {path}: member 'model.weights.h5' inflates "
                                                 f"from {_rio.format_bytes(info.compress_size)} to "
                                                 f"{_rio.format_bytes(info.file_size)} (more than "
                                                 f"{_rio.MAX_COMPRESSION_RATIO}x: refused as a zip bomb)",
                                                 path=path, member="model.weights.h5")
                data = z.read("model.weights.h5")
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, RuntimeError, ValueError, NotImplementedError) as e:
            if isinstance(e, _rio.RnnlabError):
                raise
            raise _rio.FileFormatError(f"load_keras_weights: {path}: damaged .keras archive ({type(e).__name__}: "
                                       f"{e})", path=path) from None
        try:
            return h5py.File(io.BytesIO(data), "r")
        except (OSError, RuntimeError, ValueError) as e:
            raise _rio.FileFormatError(f"load_keras_weights: {path}: model.weights.h5 in the archive is not a "
                                       f"readable HDF5 file ({e})", path=path) from None
    try:
        return h5py.File(path, "r")
    except (OSError, RuntimeError, ValueError) as e:
        raise _rio.FileFormatError(f"load_keras_weights: {path} is neither an HDF5 file nor a .keras archive ({e})",
                                   path=path) from None


def _describe_file(src, layers_group):
    parts = []
    for key in sorted(src.keys(layers_group, "layers")):
        sub = src.group(layers_group, key, f"layers/{key}")
        if sub is None:
            continue
        arrays = _group_arrays(src, sub, f"layers/{key}")
        if arrays:
            parts.append(f"{key} ('{_keras_name(src, sub, f'layers/{key}')}': "
                         f"{[_shape(src, p, a) for p, a in arrays]})")
    return "; ".join(parts) or "no weights"


def load_keras_weights(model, path):
    """Load a Keras 3 ``.weights.h5`` file, or the weights of a ``.keras`` archive, into ``model``.

    ``model`` is a built rnnlab :class:`~rnnlab.models.Sequential` with the same layers as the Keras model
    (same classes in the same order and the same shapes; weightless layers such as Dropout may differ).
    All shapes are checked before any weight is written; errors name the layer (index, name, class), the
    weight and both shapes. Returns ``model``.
    """
    model._require_built("load_keras_weights")
    src = _Src(path)
    h5py = _h5py()
    with _open(path) as f:
        top = src.keys(f, "/")
        if "layers" not in top:
            if "model_weights" in top or "layer_names" in src.get("/", lambda: list(f.attrs.keys())):
                raise _rio.FileFormatError(f"load_keras_weights: {path} is a legacy Keras 2 HDF5 file (model_weights "
                                           "/ layer_names); only the Keras 3 layout (layers/<name>/vars) is supported",
                                           path=path)
            raise _rio.FileFormatError(f"load_keras_weights: {path} has no 'layers' group; not a Keras 3 weights file",
                                       path=path)
        lg = src.group(f, "layers", "layers")
        if lg is None:
            raise src.err("layers", "is not an HDF5 group")
        lkeys = src.keys(lg, "layers")
        counts: dict[str, int] = {}
        used = set()
        plan = []
        for i, layer in enumerate(model.layers):
            cls = type(layer).__name__
            base = keras_key(cls)
            n = counts.get(base, 0)
            counts[base] = n + 1
            key = base if n == 0 else f"{base}_{n}"
            refs = list(layer.iter_weights())
            if not refs:
                continue
            desc = f"layer {i} '{layer.name}' ({cls})"
            g = src.group(lg, key, f"layers/{key}") if key in lkeys else None
            arrays = _group_arrays(src, g, f"layers/{key}") if g is not None else []
            if not arrays:
                raise ValueError(f"load_keras_weights: {desc} has {len(refs)} weights, but {path} has no weights for "
                                 f"the {n + 1}. {cls} layer (group 'layers/{key}'): the models differ (wrong layer "
                                 f"type or order?). The file holds: {_describe_file(src, lg)}")
            used.add(key)
            want_kinds = _model_cell_kinds(layer)
            file_kinds = _cell_kinds(src, g, f"layers/{key}")
            kname = _keras_name(src, g, f"layers/{key}")
            if want_kinds and file_kinds and all(file_kinds) and want_kinds != file_kinds:
                raise ValueError(f"load_keras_weights: {path}: {desc}: wrong layer type, the file holds {'/'.join(file_kinds)} "
                                 f"weights ('layers/{key}', Keras name '{kname}') for a model layer "
                                 f"with {'/'.join(want_kinds)} cells")
            current = [owner.params[w] for _, owner, w in refs]
            wnames = [p.split("/", 1)[1] for p, _, _ in refs]
            shapes = [_shape(src, h5path, ds) for h5path, ds in arrays]
            if len(arrays) != len(refs):
                raise ValueError(f"load_keras_weights: {path}: {desc} has {len(refs)} weights {wnames}, the file's 'layers/{key}' "
                                 f"(Keras name '{kname}') has {len(arrays)}: {shapes}")
            for j, ((h5path, ds), shape, w, wn) in enumerate(zip(arrays, shapes, current, wnames)):
                if shape != w.shape:
                    hint = ""
                    if cls == "GRU" or "GRU" in want_kinds:
                        hint = (" (a GRU bias of shape (2, 3*units) is reset_after=True, (3*units,) is "
                                "reset_after=False: build the rnnlab GRU with the same reset_after)")
                    raise ValueError(f"load_keras_weights: {path}: {desc}, weight {j} '{wn}': the model has shape {w.shape}, "
                                     f"the file's '{h5path}' has shape {shape}{hint}")
                dtype = src.get(h5path, lambda: ds.dtype)
                if not np.issubdtype(dtype, np.number):
                    raise TypeError(f"load_keras_weights: {path}: '{h5path}' is not numeric (dtype {dtype})")
            plan.append((layer, [_read(src, h5path, ds, shape) for (h5path, ds), shape in zip(arrays, shapes)]))
        extra = []
        for k in lkeys:
            if k in used:
                continue
            sub = src.group(lg, k, f"layers/{k}")
            if sub is not None and _group_arrays(src, sub, f"layers/{k}"):
                extra.append((k, sub))
        if extra:
            raise ValueError(f"load_keras_weights: {path} has weights for layers the model does not have: "
                             + "; ".join(f"{k} ('{_keras_name(src, sub, f'layers/{k}')}': "
                                         f"{[_shape(src, p, a) for p, a in _group_arrays(src, sub, f'layers/{k}')]})"
                                         for k, sub in sorted(extra)))
    for layer, arrays in plan:
        layer.set_weights([a.astype(layer.dtype, copy=False) if a.dtype.kind == "f" else a for a in arrays])
    return model
