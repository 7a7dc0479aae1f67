"""One-file model saving without pickle.

A model file is an ``.npz`` archive (``np.savez``) that holds only numeric arrays:

* ``__rnnlab__``: a JSON document encoded as a uint8 array (format version, rnnlab version,
  model config = layer class names + ``get_config()``, compile settings, weight paths);
* ``w:<path>``: every weight, e.g. ``w:lstm/recurrent_kernel``;
* ``opt:<key>``: the optimizer state (slots, iteration count), when saved.

Loading uses ``np.load(allow_pickle=False)``: nothing in a file can execute code. Each weight's
name and shape are checked against the rebuilt model, and a mismatch says exactly what differs.
Writes are atomic (temporary file, then rename).
"""
from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np

from .. import __version__, losses as _losses, optimizers as _optimizers
from ..layers.base import get_layer_class
from ..tasks.common import atomic_write_bytes

FORMAT = "rnnlab-model"
FORMAT_VERSION = 1
_META = "__rnnlab__"


def _encode(doc) -> np.ndarray:
    return np.frombuffer(json.dumps(doc).encode("utf-8"), dtype=np.uint8)


def _write_npz(path, arrays: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(os.fspath(path), buf.getvalue())


def _weights_dict(model) -> dict:
    return {f"w:{p}": owner.params[w] for p, owner, w in model.iter_weights()}


def save_model(model, path, include_optimizer=True) -> None:
    """Write ``model`` to ``path`` as one ``.npz``: config + compile settings as JSON, every weight, and
    (with ``include_optimizer``) the optimizer state. Atomic: a failure leaves any old file intact."""
    if not model.built:
        raise ValueError("save: the model is not built yet (no weights to save)")
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "rnnlab_version": __version__,
           "class_name": "Sequential", "config": model.get_config(),
           "weights": [p for p, _, _ in model.iter_weights()], "compile": None}
    arrays = _weights_dict(model)
    if model.compiled:
        doc["compile"] = {"optimizer": _optimizers.serialize(model.optimizer), "loss": _losses.serialize(model.loss),
                          "metrics": [m if isinstance(m, str) else m.name for m in model._metric_ids]}
        if include_optimizer:
            for k, v in model.optimizer.get_state().items():
                arrays[f"opt:{k}"] = np.asarray(v)
    arrays[_META] = _encode(doc)
    _write_npz(path, arrays)


def save_weights(model, path) -> None:
    """Write only the weights (and their paths) to ``path``; load with ``model.load_weights``."""
    if not model.built:
        raise ValueError("save_weights: the model is not built yet (no weights to save)")
    arrays = _weights_dict(model)
    arrays[_META] = _encode({"format": FORMAT + "-weights", "format_version": FORMAT_VERSION,
                             "weights": [p for p, _, _ in model.iter_weights()]})
    _write_npz(path, arrays)


def check_npz_file(path) -> str:
    """``path`` as a string if it names an existing ``.npz`` (zip) archive; otherwise ``FileNotFoundError``
    (no such path) or ``ValueError`` naming the file (a folder, an empty file, anything but a zip archive:
    NumPy would try to unpickle it, which rnnlab never does)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such model file: {path}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory, not an rnnlab model file (give the model.npz inside it)")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise ValueError(f"{path}: cannot read the model file ({e.strerror or e})") from None
    if head[:2] != b"PK":
        what = "an empty file" if not head else ("a bare .npy array" if head[:1] == b"\x93" else
                                                  "not an .npz archive")
        raise ValueError(f"{path} is not an rnnlab model file ({what})")
    return path


def _open(path):
    """Read and validate a file: ``(json_document, {name: array})``; ``ValueError`` for anything that is
    not an rnnlab file (nothing is unpickled: ``allow_pickle=False``)."""
    path = check_npz_file(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"{path} is not an rnnlab model file (not a readable .npz archive: {e})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is not an rnnlab model file (a bare .npy array, not an .npz archive)")
    try:
        files = set(data.files)
        if _META not in files:
            raise ValueError(f"{path} is not an rnnlab model file (no '{_META}' entry; it has {sorted(files)[:5]})")
        raw = data[_META]
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError(f"{path}: corrupt '{_META}' entry (dtype {raw.dtype}, shape {raw.shape})")
        doc = json.loads(raw.tobytes().decode("utf-8"))
        arrays = {k: data[k] for k in data.files if k != _META}
    except ValueError as e:
        if "not an rnnlab" in str(e) or "corrupt" in str(e):
            raise
        raise ValueError(f"{path}: corrupt model file ({e})") from None
    except (OSError, zipfile.BadZipFile, EOFError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: corrupt model file ({type(e).__name__}: {e})") from None
    finally:
        data.close()
    if not isinstance(doc, dict) or not str(doc.get("format", "")).startswith(FORMAT):
        raise ValueError(f"{path} is not an rnnlab model file (format {doc.get('format') if isinstance(doc, dict) else doc!r})")
    version = doc.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"{path}: corrupt model file (format_version must be an int, got {version!r})")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer rnnlab (format {doc['format_version']} > {FORMAT_VERSION})")
    return doc, arrays


def _assign_weights(model, arrays, path):
    refs = list(model.iter_weights())
    wanted = {f"w:{p}" for p, _, _ in refs}
    present = {k for k in arrays if k.startswith("w:")}
    if wanted != present:
        missing, extra = sorted(wanted - present), sorted(present - wanted)
        raise ValueError(f"{path}: weights do not match the model: missing {missing[:5]}, unexpected {extra[:5]}")
    for p, owner, w in refs:
        arr = arrays[f"w:{p}"]
        if arr.shape != owner.params[w].shape:
            raise ValueError(f"{path}: weight '{p}' has shape {arr.shape} in the file, the model expects {owner.params[w].shape}")
        if arr.dtype.kind != "f":
            raise ValueError(f"{path}: weight '{p}' has non-float dtype {arr.dtype}")
    for p, owner, w in refs:
        owner.params[w][...] = arrays[f"w:{p}"]
    for layer in model.layers:
        layer._weights_changed()


def load_model(path, compile=True):
    """Rebuild a model saved with ``model.save(path)``: same architecture, weights and optimizer state."""
    from .sequential import Sequential

    doc, arrays = _open(path)
    if doc.get("format") != FORMAT or doc.get("class_name") != "Sequential":
        raise ValueError(f"{path} holds {doc.get('format')}/{doc.get('class_name')}, not a saved Sequential model "
                         "(weights-only files load with model.load_weights)")
    cfg = doc.get("config")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("layers"), list):
        raise ValueError(f"{path}: corrupt model config (expected a dict with a 'layers' list, got {type(cfg).__name__})")
    layers = []
    for i, entry in enumerate(cfg["layers"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str) \
                or not isinstance(entry.get("config"), dict):
            raise ValueError(f"{path}: corrupt model config (layer {i} must be {{'class_name': str, 'config': dict}}, "
                             f"got {entry!r:.200})")
        cls = get_layer_class(entry["class_name"])  # ValueError listing the known classes
        try:
            layers.append(cls.from_config(dict(entry["config"])))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: layer {i} ({entry['class_name']}) config is not valid: {e}") from None
    model = Sequential(name=cfg.get("name"))
    dtype = cfg.get("input_dtype")
    if dtype is not None:
        try:
            model._input_dtype = np.dtype(dtype).name
        except TypeError:
            raise ValueError(f"{path}: corrupt model config (input_dtype {dtype!r})") from None
    for layer in layers:
        model.layers.append(layer)
    shape = cfg.get("input_shape")
    if shape is None:
        raise ValueError(f"{path}: the saved model has no input shape")
    if not isinstance(shape, list) or not all(d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in shape):
        raise ValueError(f"{path}: corrupt model config (input_shape {shape!r})")
    model.build(tuple(shape))
    _assign_weights(model, arrays, path)
    comp = doc.get("compile")
    if compile and comp:
        model.compile(optimizer=_optimizers.get(comp["optimizer"]), loss=_losses.get(comp["loss"]), metrics=comp["metrics"])
        state = {k[4:]: v for k, v in arrays.items() if k.startswith("opt:")}
        if state:
            model.optimizer.set_state(state)
    return model


def load_weights(model, path) -> None:
    """Load weights saved by ``save_weights``/``save`` into ``model``, matched by position (as Keras):
    layer names may differ, the count and every shape must agree."""
    doc, arrays = _open(path)
    names = doc.get("weights") or []
    refs = list(model.iter_weights())
    if len(names) != len(refs) or any(f"w:{n}" not in arrays for n in names):
        raise ValueError(f"{path}: the file holds {len(names)} weight arrays, the model has {len(refs)}")
    for (p, owner, w), n in zip(refs, names):
        arr = arrays[f"w:{n}"]
        if arr.shape != owner.params[w].shape:
            raise ValueError(f"{path}: weight '{n}' has shape {arr.shape} in the file, the model expects "
                             f"{owner.params[w].shape} for '{p}'")
    _assign_weights(model, {f"w:{p}": arrays[f"w:{n}"] for (p, _, _), n in zip(refs, names)}, path)
