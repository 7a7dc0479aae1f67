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
shape before anything is written (a mismatch names the layer index and name, the weight and both
shapes; a file whose recurrent cell is of another type, e.g. GRU weights for an LSTM, is refused as the
wrong layer type), then sets the weights. The arrays are exactly Keras' ``get_weights()``, which rnnlab's
``set_weights()`` takes as they are (GRU ``reset_after=True`` bias (2, 3U), ``False`` bias (3U,)).

Needs ``h5py`` (``pip install h5py``, or the extra: ``pip install "rnnlab[h5py]"``; also part of the ``test`` extra).
"""
from __future__ import annotations

import io
import os
import re
import zipfile

import numpy as np

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


def _group_arrays(g, prefix):
    """``[(h5 path, array)]`` of a layer group in Keras ``get_weights()`` order."""
    out = []
    if "vars" in g:
        v = g["vars"]
        for k in sorted(v.keys(), key=int):
            out.append((f"{prefix}/vars/{k}", np.asarray(v[k][()])))
    children = [k for k in g.keys() if k != "vars"]
    children.sort(key=lambda k: (_CHILD_ORDER.index(k) if k in _CHILD_ORDER else len(_CHILD_ORDER), k))
    for k in children:
        if hasattr(g[k], "keys"):
            out.extend(_group_arrays(g[k], f"{prefix}/{k}"))
    return out


def _cell_kinds(g):
    """The recurrent cell types found in a layer group (from the cells' Keras names), in child order."""
    kinds = []
    for k in sorted(g.keys(), key=lambda k: (_CHILD_ORDER.index(k) if k in _CHILD_ORDER else 9, k)):
        if k == "vars" or not hasattr(g[k], "keys"):
            continue
        if k == "cell" and "vars" in g[k]:
            name = g[k]["vars"].attrs.get("name", "")
            name = name.decode() if isinstance(name, bytes) else str(name)
            base = re.sub(r"_\d+$", "", name)
            kinds.append(_CELL_KIND.get(base))
        else:
            kinds.extend(_cell_kinds(g[k]))
    return kinds


def _model_cell_kinds(layer):
    from ..layers.recurrent import RNN

    if isinstance(layer, RNN):
        return [type(layer).__name__]
    kinds = []
    for attr in ("forward_layer", "backward_layer", "layer"):
        inner = getattr(layer, attr, None)
        if inner is not None:
            kinds.extend(_model_cell_kinds(inner))
    return kinds


def _keras_name(g):
    name = g["vars"].attrs.get("name", "") if "vars" in g else ""
    return name.decode() if isinstance(name, bytes) else str(name)


def _open(path):
    """An open h5py File for ``path`` (``.weights.h5`` / ``.h5``, or ``.keras`` zip archive)."""
    h5py = _h5py()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_keras_weights: no such file: {path}")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            if "model.weights.h5" not in names:
                raise ValueError(f"load_keras_weights: {path} is a zip archive without model.weights.h5 (holds "
                                 f"{names[:8]}); expected a Keras 3 .keras file")
            data = z.read("model.weights.h5")
        return h5py.File(io.BytesIO(data), "r")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"load_keras_weights: {path} is neither an HDF5 file nor a .keras archive ({e})") from None


def _describe_file(layers_group):
    parts = []
    for key in sorted(layers_group.keys()):
        arrays = _group_arrays(layers_group[key], key)
        if arrays:
            parts.append(f"{key} ('{_keras_name(layers_group[key])}': {[a.shape for _, a in arrays]})")
    return "; ".join(parts) or "no weights"


def load_keras_weights(model, path):
    """Load a Keras 3 ``.weights.h5`` file, or the weights of a ``.keras`` archive, into ``model``.

    ``model`` is a built rnnlab :class:`~rnnlab.models.Sequential` with the same layers as the Keras model
    (same classes in the same order and the same shapes; weightless layers such as Dropout may differ).
    All shapes are checked before any weight is written; errors name the layer (index, name, class), the
    weight and both shapes. Returns ``model``.
    """
    model._require_built("load_keras_weights")
    with _open(path) as f:
        if "layers" not in f:
            if "model_weights" in f or "layer_names" in f.attrs:
                raise ValueError(f"load_keras_weights: {path} is a legacy Keras 2 HDF5 file (model_weights / "
                                 "layer_names); only the Keras 3 layout (layers/<name>/vars) is supported")
            raise ValueError(f"load_keras_weights: {path} has no 'layers' group; not a Keras 3 weights file")
        lg = f["layers"]
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
            arrays = _group_arrays(lg[key], f"layers/{key}") if key in lg else []
            if not arrays:
                raise ValueError(f"load_keras_weights: {desc} has {len(refs)} weights, but {path} has no weights for "
                                 f"the {n + 1}. {cls} layer (group 'layers/{key}'): the models differ (wrong layer "
                                 f"type or order?). The file holds: {_describe_file(lg)}")
            used.add(key)
            want_kinds = _model_cell_kinds(layer)
            file_kinds = _cell_kinds(lg[key])
            if want_kinds and file_kinds and all(file_kinds) and want_kinds != file_kinds:
                raise ValueError(f"load_keras_weights: {desc}: wrong layer type, the file holds {'/'.join(file_kinds)} "
                                 f"weights ('layers/{key}', Keras name '{_keras_name(lg[key])}') for a model layer "
                                 f"with {'/'.join(want_kinds)} cells")
            current = layer.get_weights()
            wnames = [p.split("/", 1)[1] for p, _, _ in refs]
            if len(arrays) != len(refs):
                raise ValueError(f"load_keras_weights: {desc} has {len(refs)} weights {wnames}, the file's 'layers/{key}' "
                                 f"(Keras name '{_keras_name(lg[key])}') has {len(arrays)}: "
                                 f"{[a.shape for _, a in arrays]}")
            for j, ((h5path, a), w, wn) in enumerate(zip(arrays, current, wnames)):
                if a.shape != w.shape:
                    hint = ""
                    if cls == "GRU" or "GRU" in want_kinds:
                        hint = (" (a GRU bias of shape (2, 3*units) is reset_after=True, (3*units,) is "
                                "reset_after=False: build the rnnlab GRU with the same reset_after)")
                    raise ValueError(f"load_keras_weights: {desc}, weight {j} '{wn}': the model has shape {w.shape}, "
                                     f"the file's '{h5path}' has shape {a.shape}{hint}")
                if not np.issubdtype(a.dtype, np.number):
                    raise TypeError(f"load_keras_weights: '{h5path}' is not numeric (dtype {a.dtype})")
            plan.append((layer, [a for _, a in arrays]))
        extra = [k for k in lg.keys() if k not in used and _group_arrays(lg[k], k)]
        if extra:
            raise ValueError(f"load_keras_weights: {path} has weights for layers the model does not have: "
                             + "; ".join(f"{k} ('{_keras_name(lg[k])}': {[a.shape for _, a in _group_arrays(lg[k], k)]})"
                                         for k in sorted(extra)))
    for layer, arrays in plan:
        layer.set_weights([a.astype(layer.dtype, copy=False) if a.dtype.kind == "f" else a for a in arrays])
    return model
