"""One-file model saving without pickle.

A model file is an ``.npz`` archive (written by :func:`rnnlab.io.write_npz`) that holds only numeric arrays:

* ``__rnnlab__``: a JSON document encoded as a uint8 array (format version, rnnlab version,
  model config = layer class names + ``get_config()``, compile settings, weight paths);
* ``w:<path>``: every weight, e.g. ``w:lstm/recurrent_kernel``;
* ``opt:<key>``: the optimizer state (slots, iteration count), when saved.

Loading uses ``np.load(allow_pickle=False)``: nothing in a file can execute code. Each weight's
name and shape are checked against the rebuilt model, and a mismatch says exactly what differs.
Writes are atomic (temporary file, then rename).
"""
from __future__ import annotations

import numpy as np

from .. import __version__, losses as _losses, optimizers as _optimizers
from .. import io as _rio
from ..layers.base import get_layer_class

FORMAT = "rnnlab-model"
FORMAT_VERSION = 1
_META = "__rnnlab__"


def _write_npz(path, arrays: dict, doc) -> None:
    """The weights (and optimizer slots) as arrays and ``doc`` as the ``__rnnlab__`` JSON entry, written by the
    one writer (:func:`rnnlab.io.write_npz`: atomic; a value JSON cannot hold is refused naming the file)."""
    _rio.write_npz(path, arrays, {_META: doc})


def _weights_dict(model) -> dict:
    return {f"w:{p}": owner.params[w] for p, owner, w in model.iter_weights()}


def save_model(model, path, include_optimizer=True) -> None:
    """Write ``model`` to ``path`` as one ``.npz``: config + compile settings as JSON, every weight, and
    (with ``include_optimizer``) the optimizer state. Atomic: a failure leaves any old file intact."""
    arrays, docs = model_file_contents(model, include_optimizer)
    _rio.write_npz(path, arrays, docs)


def model_file_contents(model, include_optimizer=True):
    """``(arrays, docs)``: what :func:`save_model` writes through :func:`rnnlab.io.write_npz`, the arrays
    (``w:<path>``, ``opt:<key>``) and ``{"__rnnlab__": document}``, for a writer that adds its own entries
    (``rnnlab train``'s task files)."""
    if not model.built:
        raise ValueError("save: the model is not built yet (no weights to save)")
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "rnnlab_version": __version__,
           "class_name": "Sequential" if type(model).__name__ == "Sequential" else "Functional",
           "config": model.get_config(),
           "weights": [p for p, _, _ in model.iter_weights()], "compile": None}
    arrays = _weights_dict(model)
    if model.compiled and hasattr(model, "_compile_config"):  # the model's own layout (functional: per output)
        doc["compile"] = model._compile_config()
        if include_optimizer:
            for k, v in model.optimizer.get_state().items():
                arrays[f"opt:{k}"] = np.asarray(v)
    elif model.compiled:
        doc["compile"] = {"optimizer": _optimizers.serialize(model.optimizer), "loss": _losses.serialize(model.loss),
                          "metrics": [m if isinstance(m, str) else m.name for m in model._metric_ids]}
        if include_optimizer:
            for k, v in model.optimizer.get_state().items():
                arrays[f"opt:{k}"] = np.asarray(v)
    return arrays, {_META: doc}


def save_weights(model, path) -> None:
    """Write only the weights (and their paths) to ``path``; load with ``model.load_weights``."""
    if not model.built:
        raise ValueError("save_weights: the model is not built yet (no weights to save)")
    arrays = _weights_dict(model)
    _write_npz(path, arrays, {"format": FORMAT + "-weights", "format_version": FORMAT_VERSION,
                              "weights": [p for p, _, _ in model.iter_weights()]})


def check_npz_file(path) -> str:
    """``path`` as a string if it names an existing ``.npz`` (zip) archive; otherwise ``FileNotFoundError``
    (no such path) or :class:`rnnlab.io.FileFormatError` (a ``ValueError``) naming the file (a folder, an
    empty file, anything but a zip archive: NumPy would try to unpickle it, which rnnlab never does)."""
    return _rio.check_npz_file(path, "rnnlab model file")


def _open_archive(path):
    """``(json_document, NpzArchive)``: the archive opened for checked, lazy reading (see :mod:`rnnlab.io`:
    member headers checked against the stored sizes and the read limit, nothing inflated yet) and its
    ``__rnnlab__`` document. The caller closes the archive."""
    arc = _rio.NpzArchive(path, "rnnlab model file")
    try:
        if _META not in arc:
            raise _rio.FileFormatError(f"{arc.path} is not an rnnlab model file (no '{_META}' entry; it has "
                                       f"{sorted(arc.names)[:5]})", path=arc.path)
        if arc.dtype(_META) != np.uint8 or len(arc.shape(_META)) != 1:
            raise _rio.FileFormatError(f"{arc.path}: corrupt '{_META}' entry (dtype {arc.dtype(_META)}, shape "
                                       f"{arc.shape(_META)})", path=arc.path, member=_META)
        doc = arc.read_json(_META)
        if not isinstance(doc, dict) or not str(doc.get("format", "")).startswith(FORMAT):
            raise _rio.FileFormatError(f"{arc.path} is not an rnnlab model file (format "
                                       f"{doc.get('format') if isinstance(doc, dict) else doc!r:.80})", path=arc.path)
        version = doc.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise _rio.FileFormatError(f"{arc.path}: corrupt model file (format_version must be an int, got "
                                       f"{version!r:.40})", path=arc.path)
        if version > FORMAT_VERSION:
            raise _rio.FileFormatError(f"{arc.path} was written by a newer rnnlab (format {version} > "
                                       f"{FORMAT_VERSION})", path=arc.path)
    except BaseException:
        arc.close()
        raise
    return doc, arc


def _open(path):
    """Read and validate a file: ``(json_document, {name: array})``; :class:`rnnlab.io.FileFormatError` (a
    ``ValueError``) for anything that is not an rnnlab file (nothing is unpickled: ``allow_pickle=False``)."""
    doc, arc = _open_archive(path)
    with arc:
        return doc, {k: arc.read(k) for k in arc.names if k != _META}


def _build_layers(cfg, path):
    layers = []
    for i, entry in enumerate(cfg["layers"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str) \
                or not isinstance(entry.get("config"), dict):
            raise _rio.FileFormatError(f"{path}: corrupt model config (layer {i} must be {{'class_name': str, "
                                       f"'config': dict}}, got {entry!r:.200})", path=path)
        try:
            cls = get_layer_class(entry["class_name"])  # ValueError listing the known classes
        except ValueError as e:
            raise _rio.FileFormatError(f"{path}: layer {i}: {e}", path=path) from None
        try:
            layers.append(cls.from_config(dict(entry["config"])))
        except (KeyError, TypeError, ValueError, RecursionError, OverflowError) as e:
            raise _rio.FileFormatError(f"{path}: layer {i} ({entry['class_name']}) config is not valid: "
                                       f"{type(e).__name__}: {e}", path=path) from None
    return layers


def _model_from_config(cfg, path, class_name="Sequential"):
    """A built Sequential (or functional Model) from a saved config (weights as the initializers left them)."""
    from .sequential import Sequential

    if class_name == "Functional":
        from .functional import Model
        try:
            return Model.from_config(cfg)
        except (KeyError, TypeError, ValueError, IndexError, RecursionError, OverflowError) as e:
            if isinstance(e, _rio.RnnlabError):
                raise
            raise _rio.FileFormatError(f"{path}: the saved functional config does not build a model "
                                       f"({type(e).__name__}: {e})", path=path) from None

    layers = _build_layers(cfg, path)
    name = cfg.get("name")
    model = Sequential(name=name if isinstance(name, str) else None)
    dtype = cfg.get("input_dtype")
    if dtype is not None:
        try:
            model._input_dtype = np.dtype(dtype).name
        except (TypeError, ValueError):
            raise _rio.FileFormatError(f"{path}: corrupt model config (input_dtype {dtype!r:.40})", path=path) from None
    for layer in layers:
        model.layers.append(layer)
    shape = cfg.get("input_shape")
    if shape is None:
        raise _rio.FileFormatError(f"{path}: the saved model has no input shape", path=path)
    if not isinstance(shape, list) or not all(d is None or (isinstance(d, int) and not isinstance(d, bool)
                                                            and 0 <= d <= _rio.MAX_DIM) for d in shape):
        raise _rio.FileFormatError(f"{path}: corrupt model config (input_shape {shape!r:.80})", path=path)
    try:
        model.build(tuple(shape))
    except (ValueError, TypeError, IndexError, RecursionError, OverflowError) as e:
        if isinstance(e, _rio.RnnlabError):
            raise
        raise _rio.FileFormatError(f"{path}: the saved config does not build a model ({type(e).__name__}: {e})",
                                   path=path) from None
    return model


def _check_against_headers(model, arc, path):
    """The model's weights (built shape-only) against the file's member headers: names, shapes, float dtypes."""
    refs = list(model.iter_weights())
    wanted = {f"w:{p}" for p, _, _ in refs}
    present = {k for k in arc.names if k.startswith("w:")}
    if wanted != present:
        missing, extra = sorted(wanted - present), sorted(present - wanted)
        raise _rio.FileFormatError(f"{path}: weights do not match the model: missing {missing[:5]}, unexpected "
                                   f"{extra[:5]}", path=path)
    for p, owner, w in refs:
        shape, dtype = arc.shape(f"w:{p}"), arc.dtype(f"w:{p}")
        if shape != owner.params[w].shape:
            raise _rio.FileFormatError(f"{path}: weight '{p}' has shape {shape} in the file, the model expects "
                                       f"{owner.params[w].shape}", path=path, member=f"w:{p}")
        if dtype.kind != "f":
            raise _rio.FileFormatError(f"{path}: weight '{p}' has non-float dtype {dtype}", path=path,
                                       member=f"w:{p}")


def _read_optimizer_state(model, arc, path):
    """The ``opt:`` members, validated against the model and its optimizer before they are read: the
    iteration count (an integer scalar), the learning rate (a float scalar) and, per trained weight, every
    slot of the optimizer with the weight's shape and a float dtype."""
    opt = model.optimizer
    weights = {p: owner.params[w] for p, owner, w in model.iter_weights()}
    keys = [k for k in arc.names if k.startswith("opt:")]
    if not keys:
        return None
    state, seen = {}, {}
    for k in keys:
        key = k[4:]
        shape, dtype = arc.shape(k), arc.dtype(k)
        if key == "iterations":
            if shape != () or dtype.kind not in "iu":
                raise _rio.FileFormatError(f"{path}: optimizer iteration count '{k}' must be an integer scalar, "
                                           f"got {dtype} {shape}", path=path, member=k)
        elif key == "learning_rate":
            if shape != () or dtype.kind != "f":
                raise _rio.FileFormatError(f"{path}: optimizer learning rate '{k}' must be a float scalar, got "
                                           f"{dtype} {shape}", path=path, member=k)
        elif key == "learning_rate_schedule":   # a schedule's config as JSON bytes (Optimizer.get_state)
            if len(shape) != 1 or dtype != np.uint8 or shape[0] > 1 << 16:
                raise _rio.FileFormatError(f"{path}: optimizer schedule '{k}' must be up to 64 KiB of uint8 JSON, "
                                           f"got {dtype} {shape}", path=path, member=k)
        else:
            wpath, _, slot = key.rpartition("/")
            if wpath not in weights or slot not in opt._slot_names:
                raise _rio.FileFormatError(f"{path}: optimizer state '{k}' is not a slot of this model's "
                                           f"{type(opt).__name__} (slots {list(opt._slot_names)} of the model's "
                                           "weights)", path=path, member=k)
            if shape != weights[wpath].shape or dtype.kind != "f":
                raise _rio.FileFormatError(f"{path}: optimizer slot '{k}' is {dtype} {shape}; the weight "
                                           f"'{wpath}' is {weights[wpath].dtype} {weights[wpath].shape}",
                                           path=path, member=k)
            seen.setdefault(wpath, set()).add(slot)
        state[key] = k
    if "iterations" not in state:
        raise _rio.FileFormatError(f"{path}: optimizer state without its iteration count ('opt:iterations')",
                                   path=path)
    for wpath, slots in seen.items():
        if slots != set(opt._slot_names):
            raise _rio.FileFormatError(f"{path}: optimizer state of '{wpath}' has slots {sorted(slots)}, "
                                       f"{type(opt).__name__} needs {list(opt._slot_names)}", path=path)
    return {key: arc.read(k) for key, k in state.items()}


def _assign_weights(model, arrays, path):
    refs = list(model.iter_weights())
    wanted = {f"w:{p}" for p, _, _ in refs}
    present = {k for k in arrays if k.startswith("w:")}
    if wanted != present:
        missing, extra = sorted(wanted - present), sorted(present - wanted)
        raise _rio.FileFormatError(f"{path}: weights do not match the model: missing {missing[:5]}, "
                                   f"unexpected {extra[:5]}", path=path)
    for p, owner, w in refs:
        arr = arrays[f"w:{p}"]
        if arr.shape != owner.params[w].shape:
            raise _rio.FileFormatError(f"{path}: weight '{p}' has shape {arr.shape} in the file, the model expects "
                                       f"{owner.params[w].shape}", path=path)
        if arr.dtype.kind != "f":
            raise _rio.FileFormatError(f"{path}: weight '{p}' has non-float dtype {arr.dtype}", path=path)
    for p, owner, w in refs:
        owner.params[w][...] = arrays[f"w:{p}"]
    for layer in model.layers:
        layer._weights_changed()


def load_model(path, compile=True):
    """Rebuild a model saved with ``model.save(path)``: same architecture, weights and optimizer state.

    Nothing is allocated before it is checked (see :mod:`rnnlab.io`): the config's sizes are bounded by the
    largest dimension of the file's arrays, the model is first built shape-only and its weight shapes compared
    with the file's array headers, and the optimizer state is validated against the model before reading.
    Every problem is an :class:`rnnlab.io.FileFormatError` (a ``ValueError``) naming the file.
    Keras file names (``.keras``; ``.h5``/``.hdf5`` refused) go to :mod:`rnnlab.models.keras_format`."""
    if str(path).lower().endswith((".keras", ".h5", ".hdf5")):
        from .keras_format import load_model as _load_keras; return _load_keras(path, compile=compile)  # noqa: E702
    doc, arc = _open_archive(path)
    with arc:
        path = arc.path
        if doc.get("format") != FORMAT or doc.get("class_name") not in ("Sequential", "Functional"):
            raise _rio.FileFormatError(f"{path} holds {doc.get('format')!r:.40}/{doc.get('class_name')!r:.40}, not "
                                       "a saved Sequential model (weights-only files load with model.load_weights)",
                                       path=path)
        cfg = doc.get("config")
        if not isinstance(cfg, dict) or not isinstance(cfg.get("layers"), list):
            raise _rio.FileFormatError(f"{path}: corrupt model config (expected a dict with a 'layers' list, got "
                                       f"{type(cfg).__name__})", path=path)
        _rio.check_config_sizes(cfg, arc.max_dim([k for k in arc.names if k.startswith("w:")]),
                                f"{path}", path=path)
        with _rio.shape_only():
            _check_against_headers(_model_from_config(cfg, path, doc["class_name"]), arc, path)
        model = _model_from_config(cfg, path, doc["class_name"])
        arrays = {f"w:{p}": arc.read(f"w:{p}") for p, _, _ in model.iter_weights()}
        _assign_weights(model, arrays, path)
        comp = doc.get("compile")
        if compile and comp:
            if not isinstance(comp, dict) or not {"optimizer", "loss"} <= set(comp):
                raise _rio.FileFormatError(f"{path}: corrupt compile settings (expected 'optimizer' and 'loss', "
                                           f"got {comp!r:.100})", path=path)
            metrics = comp.get("metrics") or []
            try:
                if hasattr(model, "_compile_from_config"):
                    model._compile_from_config(comp)
                else:
                    model.compile(optimizer=_optimizers.get(comp["optimizer"]), loss=_losses.get(comp["loss"]),
                                  metrics=metrics)
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                raise _rio.FileFormatError(f"{path}: the saved compile settings are not valid ({type(e).__name__}: "
                                           f"{e})", path=path) from None
            state = _read_optimizer_state(model, arc, path)
            if state:
                model.optimizer.set_state(state)
    return model


def load_weights(model, path) -> None:
    """Load weights saved by ``save_weights``/``save`` into ``model``, matched by position (as Keras):
    layer names may differ, the count and every shape must agree. Names and shapes are checked from the
    file's array headers before any array is read (see :mod:`rnnlab.io`)."""
    doc, arc = _open_archive(path)
    with arc:
        path = arc.path
        names = doc.get("weights") or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _rio.FileFormatError(f"{path}: corrupt weight list ({names!r:.100})", path=path)
        refs = list(model.iter_weights())
        if len(names) != len(refs) or any(f"w:{n}" not in arc for n in names):
            raise _rio.FileFormatError(f"{path}: the file holds {len(names)} weight arrays, the model has "
                                       f"{len(refs)}", path=path)
        for (p, owner, w), n in zip(refs, names):
            shape = arc.shape(f"w:{n}")
            if shape != owner.params[w].shape:
                raise _rio.FileFormatError(f"{path}: weight '{n}' has shape {shape} in the file, the model expects "
                                           f"{owner.params[w].shape} for '{p}'", path=path, member=f"w:{n}")
        arrays = {f"w:{p}": arc.read(f"w:{n}") for (p, _, _), n in zip(refs, names)}
    _assign_weights(model, arrays, path)
