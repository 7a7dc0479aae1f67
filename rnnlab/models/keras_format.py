"""Real Keras 3 files from rnnlab models, and the suffix rules every save/load goes through.

File names say what a file is:

============================  ==================================================================================
``*.keras``                   a Keras 3 archive (zip): ``metadata.json``, ``config.json`` (the Keras model config)
                              and ``model.weights.h5`` (Keras' HDF5 weights layout). Keras 3 loads it with
                              ``keras.saving.load_model``; rnnlab loads it (and Keras-written ``.keras`` files)
                              with :func:`rnnlab.saving.load_model`.
``*.weights.h5``              a Keras 3 weights file (``model.save_weights``/``load_weights`` in either library).
``*.h5``, ``*.hdf5``          Keras 2's legacy HDF5 formats: rnnlab does not write them; refused with an error that
                              offers ``.keras``, ``.weights.h5`` or ``.npz``.
anything else (``*.npz``)     rnnlab's own one-file format (:mod:`rnnlab.models.saving`: JSON + arrays, no pickle).
============================  ==================================================================================

Writing the Keras formats needs ``h5py``, and a model Keras can express: a :class:`~rnnlab.models.Sequential`
with a known input shape, or a functional :class:`~rnnlab.models.Model` (calls on tensors and lists of tensors,
``initial_state``; no nested models), whose layers all exist in Keras with the same arguments (Dense, Embedding, SimpleRNN,
LSTM, GRU, Bidirectional, TimeDistributed, Dropout, SpatialDropout1D, Activation, Masking, RepeatVector, Conv1D,
MaxPooling1D, AveragePooling1D, GlobalAveragePooling1D, GlobalMaxPooling1D, BatchNormalization,
LayerNormalization, Flatten, Reshape, Permute, and in functional models Add, Subtract, Multiply, Average,
Maximum, Minimum, Concatenate, Dot), with their regularizers and constraints (L1, L2, L1L2, MaxNorm, NonNeg,
UnitNorm, MinMaxNorm, written as Keras writes them: module, class_name, config). Anything else (rnnlab-only layers such as ``TiedDense``, nested models,
options Keras has no argument for) is refused with a ``ValueError`` naming the layer and
offering the ``.npz`` format; nothing is written then.

HDF5 layout written (Keras 3's, see also :mod:`rnnlab.models.keras_weights`, the reader)::

    vars                                   (attribute name = model name; no datasets)
    layers/<key>/vars/0, 1, ...            a layer's weights, in get_weights() order
    layers/<key>/cell/vars/0, 1, 2         SimpleRNN / LSTM / GRU (attribute name = simple_rnn_cell / lstm_cell ...)
    layers/<key>/forward_layer/..., backward_layer/...   Bidirectional
    layers/<key>/layer/...                 TimeDistributed

``<key>`` is the snake-case class name numbered by occurrence (``lstm``, ``lstm_1``). The compile settings of
a compiled model go into ``metadata.json`` under ``"rnnlab"`` (Keras ignores them; rnnlab restores them); the
optimizer's state (slots) is not written: use ``.npz`` to resume training exactly.
"""
from __future__ import annotations

import datetime
import io
import json
import os
import zipfile

import numpy as np

from .. import __version__

KERAS_SUFFIXES = (".keras", ".weights.h5", ".h5", ".hdf5")

_COMMON = ("name", "trainable", "dtype")
_INIT = ("kernel_initializer", "recurrent_initializer", "bias_initializer", "embeddings_initializer",
         "beta_initializer", "gamma_initializer", "moving_mean_initializer", "moving_variance_initializer")
_RNN = ("units", "activation", "use_bias", "kernel_initializer", "recurrent_initializer", "bias_initializer",
        "dropout", "recurrent_dropout", "return_sequences", "return_state", "go_backwards", "stateful", "unroll",
        "zero_output_for_mask", "seed")
#: Keras 3 constructor arguments per class (besides name/trainable/dtype)
KERAS_ARGS = {
    "Dense": ("units", "activation", "use_bias", "kernel_initializer", "bias_initializer"),
    "Embedding": ("input_dim", "output_dim", "embeddings_initializer", "mask_zero"),
    "SimpleRNN": _RNN,
    "LSTM": _RNN + ("recurrent_activation", "unit_forget_bias"),
    "GRU": _RNN + ("recurrent_activation", "reset_after"),
    "Dropout": ("rate", "noise_shape", "seed"),
    "SpatialDropout1D": ("rate", "seed"),
    "Activation": ("activation",),
    "Masking": ("mask_value",),
    "RepeatVector": ("n",),
    "Flatten": ("data_format",),
    "Reshape": ("target_shape",),
    "Permute": ("dims",),
    "GlobalAveragePooling1D": ("data_format", "keepdims"),
    "GlobalMaxPooling1D": ("data_format", "keepdims"),
    "MaxPooling1D": ("pool_size", "strides", "padding", "data_format"),
    "AveragePooling1D": ("pool_size", "strides", "padding", "data_format"),
    "Conv1D": ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups",
               "activation", "use_bias", "kernel_initializer", "bias_initializer"),
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale", "beta_initializer", "gamma_initializer",
                           "moving_mean_initializer", "moving_variance_initializer"),
    "LayerNormalization": ("axis", "epsilon", "center", "scale", "beta_initializer", "gamma_initializer"),
    "Add": (), "Subtract": (), "Multiply": (), "Average": (), "Maximum": (), "Minimum": (),
    "Concatenate": ("axis",), "Dot": ("axes", "normalize"),
    "Bidirectional": ("merge_mode", "layer", "backward_layer"),
    "TimeDistributed": ("layer",),
}
#: the ``<prefix>_regularizer`` / ``<prefix>_constraint`` arguments Keras 3 takes per class (``activity_regularizer``
#: every class but SpatialDropout1D takes, through Keras' Layer); rnnlab's regularizers and constraints have Keras's
#: class names and configs (rnnlab.regularizers, rnnlab.constraints)
_WEIGHT_ARGS = {"Dense": ("kernel", "bias"), "Conv1D": ("kernel", "bias"), "Embedding": ("embeddings",),
                "SimpleRNN": ("kernel", "recurrent", "bias"), "LSTM": ("kernel", "recurrent", "bias"),
                "GRU": ("kernel", "recurrent", "bias")}
_KERAS_MODULE = {"regularizer": "keras.regularizers", "constraint": "keras.constraints"}


def _keras_reg_args(cls):
    args = {f"{p}_{k}" for p in _WEIGHT_ARGS.get(cls, ()) for k in ("regularizer", "constraint")}
    return args | ({"activity_regularizer"} if cls != "SpatialDropout1D" else set())


#: rnnlab config keys that carry no meaning for Keras (shape hints, rnnlab's speed switches) and are dropped
_DROPPED = {"batch_input_shape", "input_length", "backend", "implementation", "use_cudnn", "input_dim_hint"}
_RNN_CELL = {"SimpleRNN": "simple_rnn_cell", "LSTM": "lstm_cell", "GRU": "gru_cell"}


class KerasFormatError(ValueError):
    """The model cannot be written as a Keras file (or h5py is missing); the message offers ``.npz``."""


# ------------------------------------------------------------------------------------------------ suffix rules
def keras_kind(path) -> str | None:
    """``"keras"``, ``"weights"``, ``"legacy_h5"`` or ``None`` (rnnlab's npz) for a file name."""
    name = os.fspath(path).lower()
    if name.endswith(".keras"):
        return "keras"
    if name.endswith(".weights.h5"):
        return "weights"
    if name.endswith((".h5", ".hdf5")):
        return "legacy_h5"
    return None


def _npz_name(path):
    p = os.fspath(path)
    for suf in (".weights.h5", ".keras", ".hdf5", ".h5"):
        if p.lower().endswith(suf):
            return p[: -len(suf)] + ".npz"
    return p + ".npz"


def _refuse_legacy(path, what):
    raise KerasFormatError(
        f"{what}: {os.fspath(path)!r} names Keras 2's legacy HDF5 format, which rnnlab does not write. Use "
        f"'.keras' (a Keras 3 model archive), '.weights.h5' (Keras 3 weights) or rnnlab's own format "
        f"(e.g. {_npz_name(path)!r})")


def _h5py(path, what):
    try:
        import h5py
    except ImportError:
        raise KerasFormatError(
            f"{what}: writing {os.fspath(path)!r} as a real Keras file needs h5py (pip install h5py, or "
            f"pip install \"rnnlab[h5py]\"); without it save in rnnlab's own format, e.g. "
            f"{_npz_name(path)!r}") from None
    return h5py


# ------------------------------------------------------------------------------------------------ configs
def _keras_initializer(v):
    if isinstance(v, dict) and "class_name" in v:
        return {"module": "keras.initializers", "class_name": v["class_name"], "config": dict(v.get("config", {})),
                "registered_name": None}
    return v


def _cannot(layer, why, path):
    raise KerasFormatError(
        f"save: Keras cannot express layer '{layer.name}' ({type(layer).__name__}): {why}. Nothing was written; "
        f"save in rnnlab's own format instead, e.g. {_npz_name(path)!r}")


def _layer_config(layer, path, nested_cfg=None):
    """``{"module", "class_name", "config", "registered_name"}`` of ``layer`` for a Keras config.json."""
    cls = type(layer).__name__
    if cls not in KERAS_ARGS:
        _cannot(layer, f"Keras has no {cls} layer", path)
    cfg = dict(layer.get_config() if nested_cfg is None else nested_cfg)
    reg_args = _keras_reg_args(cls)
    allowed = set(KERAS_ARGS[cls]) | set(_COMMON) | reg_args
    out = {}
    for k, v in cfg.items():
        if k in _DROPPED:
            continue
        if k not in allowed:
            if v is None or v is False or v == 0:
                continue      # an rnnlab option left at "off"
            _cannot(layer, f"its argument {k}={v!r} has no Keras counterpart", path)
        if k in reg_args:   # Keras's form: {"module": "keras.regularizers", "class_name": "L2", "config": {...}, ...}
            v = {"module": _KERAS_MODULE[k.rsplit("_", 1)[1]], "class_name": v["class_name"],
                 "config": dict(v.get("config") or {}), "registered_name": None}
        out[k] = v
    for k in _INIT:
        if k in out:
            out[k] = _keras_initializer(out[k])
    if cls in ("Bidirectional", "TimeDistributed"):
        inner = layer.forward_layer if cls == "Bidirectional" else layer.layer
        out["layer"] = _layer_config(inner, path)
        if cls == "Bidirectional":
            out["backward_layer"] = _layer_config(layer.backward_layer, path)
    if cls in _RNN_CELL and out.get("seed") is None:
        out.pop("seed", None)
    if cls == "SpatialDropout1D":   # Keras' SpatialDropout1D takes no `trainable` (and has no weights)
        out.pop("trainable", None)
    return {"module": "keras.layers", "class_name": cls, "config": out, "registered_name": None}


def _keras_tensor(node, ref):
    t = node.outputs[ref[2]]
    return {"class_name": "__keras_tensor__",
            "config": {"shape": [None if d is None else int(d) for d in t.shape], "dtype": str(t.dtype),
                       "keras_history": list(ref)}}


def _functional_config(model, path):
    """Keras 3's ``Functional`` config.json for an rnnlab functional :class:`~rnnlab.models.Model`."""
    from .functional import InputLayer, Model
    if not model.built:
        raise KerasFormatError("save: the model is not built yet (no weights to save)")
    cfg = model.get_config()
    local = model._local_nodes()
    by_name = {layer.name: layer for layer in model.layers}
    nodes = {}
    for layer in model.layers:
        for n in layer.__dict__.get("_inbound_nodes", []):
            if id(n) in local:
                nodes[(layer.name, local[id(n)])] = n

    def kt(ref):
        return _keras_tensor(nodes[(ref[0], ref[1])], ref)

    layers = []
    for entry in cfg["layers"]:
        layer = by_name[entry["name"]]
        if isinstance(layer, InputLayer):
            c = layer.get_config()
            layers.append({"module": "keras.layers", "class_name": "InputLayer",
                           "config": {"batch_shape": c["batch_shape"], "dtype": c["dtype"] or layer.dtype,
                                      "sparse": False, "name": layer.name},
                           "registered_name": None, "name": layer.name, "inbound_nodes": []})
            continue
        if isinstance(layer, Model):
            _cannot(layer, "a model nested in a model is not written to Keras files by rnnlab", path)
        k = _layer_config(layer, path)
        k["name"] = layer.name
        if layer.input_shape is not None and not isinstance(layer.input_shape, list):
            k["build_config"] = {"input_shape": [None if d is None else int(d) for d in layer.input_shape]}
        k["inbound_nodes"] = []
        for nd in entry["inbound_nodes"]:
            args = [[kt(r) for r in nd["args"]]] if nd.get("list") else [kt(r) for r in nd["args"]]
            kwargs = dict(nd.get("kwargs") or {})
            if nd.get("initial_state"):
                kwargs["initial_state"] = [kt(r) for r in nd["initial_state"]]
            k["inbound_nodes"].append({"args": args, "kwargs": kwargs})
        layers.append(k)
    return {"module": "keras.src.models.functional", "class_name": "Functional",
            "config": {"name": cfg["name"], "trainable": cfg["trainable"], "layers": layers,
                       "input_layers": cfg["input_layers"], "output_layers": cfg["output_layers"]},
            "registered_name": "Functional", "build_config": {"input_shape": None}, "compile_config": None}


def _model_config(model, path):
    """config.json for a Sequential or a functional Model; anything else is refused."""
    from .functional import Model
    from .sequential import Sequential
    if isinstance(model, Sequential):
        return _sequential_config(model, path)
    if isinstance(model, Model):
        return _functional_config(model, path)
    raise KerasFormatError(
        f"save: writing {type(model).__name__} models as Keras files is not supported (Sequential and functional "
        f"models are); save in rnnlab's own format instead, e.g. {_npz_name(path)!r}")


def _sequential_config(model, path):
    if not model.built:
        raise KerasFormatError("save: the model is not built yet (no weights to save); build it or fit it first")
    shape = model.layers[0].input_shape
    if shape is None:
        raise KerasFormatError(f"save: the model's input shape is unknown; build it first ({_npz_name(path)!r})")
    shape = [None if d is None else int(d) for d in shape]
    shape[0] = None
    first = model.layers[0]
    from ..layers.embedding import Embedding
    in_dtype = model._input_dtype or ("int32" if isinstance(first, Embedding) else first.dtype)
    layers = [{"module": "keras.layers", "class_name": "InputLayer",
               "config": {"batch_shape": shape, "dtype": in_dtype, "sparse": False, "name": "input_layer"},
               "registered_name": None}]
    for layer in model.layers:
        entry = _layer_config(layer, path)
        if layer.input_shape is not None and not isinstance(layer.input_shape, list):
            entry["build_config"] = {"input_shape": [None if d is None else int(d) for d in layer.input_shape]}
        layers.append(entry)
    return {"module": "keras", "class_name": "Sequential",
            "config": {"name": model.name, "trainable": True, "dtype": model.layers[0].dtype, "layers": layers},
            "registered_name": None, "build_config": {"input_shape": shape}, "compile_config": None}


# ------------------------------------------------------------------------------------------------ weights
def _layer_tree(layer):
    """``(vars, {child: subtree})`` mirroring Keras' HDF5 groups for one layer."""
    cls = type(layer).__name__
    if cls in _RNN_CELL:
        return [], {"cell": ([owner.params[w] for _, owner, w in layer.iter_weights()], {}, _RNN_CELL[cls])}
    if cls == "Bidirectional":
        return [], {"forward_layer": _layer_tree(layer.forward_layer) + (layer.forward_layer.name,),
                    "backward_layer": _layer_tree(layer.backward_layer) + (layer.backward_layer.name,)}
    if cls == "TimeDistributed":
        return [], {"layer": _layer_tree(layer.layer) + (layer.layer.name,)}
    return [owner.params[w] for _, owner, w in layer.iter_weights()], {}


def _write_group(g, vars_, children, name):
    v = g.create_group("vars")
    v.attrs["name"] = name
    for i, arr in enumerate(vars_):
        v.create_dataset(str(i), data=np.asarray(arr))
    for key, sub in children.items():
        svars, schildren, sname = sub
        _write_group(g.create_group(key), svars, schildren, sname)


def _write_weights_h5(model, fileobj, h5py):
    from .keras_weights import keras_key
    with h5py.File(fileobj, "w") as f:
        top = f.create_group("vars")
        top.attrs["name"] = model.name
        lg = f.create_group("layers")
        counts: dict = {}
        for layer in model.layers:
            if type(layer).__name__ == "InputLayer":   # Keras writes no group for input layers
                continue
            base = keras_key(type(layer).__name__)
            n = counts.get(base, 0)
            counts[base] = n + 1
            key = base if n == 0 else f"{base}_{n}"
            vars_, children = _layer_tree(layer)
            _write_group(lg.create_group(key), vars_, children, layer.name)


def _atomic_write(path, data: bytes):
    from ..io import atomic_write_bytes
    atomic_write_bytes(os.fspath(path), data)


def save_keras_weights(model, path):
    """Write ``model``'s weights as a Keras 3 ``.weights.h5`` file (``keras_model.load_weights`` reads it)."""
    h5py = _h5py(path, "save_weights")
    _model_config(model, path)                 # refuses what Keras cannot express, before writing
    buf = io.BytesIO()
    _write_weights_h5(model, buf, h5py)
    _atomic_write(path, buf.getvalue())


def save_keras_model(model, path, include_optimizer=True):
    """Write ``model`` as a Keras 3 ``.keras`` archive (``keras.saving.load_model`` reads it)."""
    h5py = _h5py(path, "save")
    config = _model_config(model, path)
    meta = {"keras_version": "3.0.0", "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
            "rnnlab": {"version": __version__, "compile": None}}
    if getattr(model, "compiled", False):
        from .. import losses as _losses, optimizers as _optimizers
        meta["rnnlab"]["compile"] = {"optimizer": _optimizers.serialize(model.optimizer),
                                     "loss": _losses.serialize(model.loss),
                                     "metrics": [m if isinstance(m, str) else m.name for m in model._metric_ids]}
    weights = io.BytesIO()
    _write_weights_h5(model, weights, h5py)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("metadata.json", json.dumps(meta))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", weights.getvalue())
    _atomic_write(path, buf.getvalue())


# ------------------------------------------------------------------------------------------------ dispatch
def save(model, path, include_optimizer=True):
    """``model.save(path)``: a Keras archive for ``.keras``, refusal for ``.h5``/``.hdf5`` (and for
    ``.weights.h5``, which holds weights only), rnnlab's npz otherwise."""
    kind = keras_kind(path)
    if kind == "keras":
        return save_keras_model(model, path, include_optimizer)
    if kind == "weights":
        raise KerasFormatError(f"save: {os.fspath(path)!r} names a weights-only file; use model.save_weights() "
                               "for it, or save the whole model as '.keras' or '.npz'")
    if kind == "legacy_h5":
        _refuse_legacy(path, "save")
    from .saving import save_model
    save_model(model, path, include_optimizer=include_optimizer)


def save_weights(model, path):
    """``model.save_weights(path)``: Keras' ``.weights.h5`` for that suffix, refusal for ``.keras``/``.h5``,
    rnnlab's npz otherwise."""
    kind = keras_kind(path)
    if kind == "weights":
        return save_keras_weights(model, path)
    if kind == "keras":
        raise KerasFormatError(f"save_weights: {os.fspath(path)!r} names a whole-model archive; use model.save() "
                               "for it, or name the weights file '.weights.h5' or '.npz'")
    if kind == "legacy_h5":
        _refuse_legacy(path, "save_weights")
    from .saving import save_weights as _save
    _save(model, path)


def load_weights(model, path):
    """``model.load_weights(path)``: Keras files (``.weights.h5``, ``.keras``) through the Keras reader,
    ``.h5``/``.hdf5`` refused, anything else rnnlab's npz."""
    kind = keras_kind(path)
    if kind in ("weights", "keras"):
        from .keras_weights import load_keras_weights
        load_keras_weights(model, path)
        return
    if kind == "legacy_h5":
        raise KerasFormatError(f"load_weights: {os.fspath(path)!r} names Keras 2's legacy HDF5 format, which rnnlab "
                               "does not read; in Keras 3 save it again as '.weights.h5' or '.keras'")
    from .saving import load_weights as _load
    _load(model, path)


# ------------------------------------------------------------------------------------------------ reading .keras
_KERAS_ONLY_DEFAULTS = {"quantization_config", "lora_rank", "lora_alpha", "optional", "ragged", "sparse",
                        "kernel_regularizer", "recurrent_regularizer", "bias_regularizer", "activity_regularizer",
                        "embeddings_regularizer", "beta_regularizer", "gamma_regularizer", "kernel_constraint",
                        "recurrent_constraint", "bias_constraint", "embeddings_constraint", "beta_constraint",
                        "gamma_constraint", "synchronized", "rms_scaling", "input_axes", "output_axes"}


#: Keras-only arguments and the default value at which they change nothing (dropped when read)
_KERAS_ONLY_AT = {"renorm": False, "renorm_clipping": None, "renorm_momentum": 0.99, "lora_rank": None,
                  "lora_alpha": None, "use_cudnn": "auto"}


def _from_keras_value(k, v):
    if isinstance(v, dict) and "class_name" in v and "config" in v:
        if v["class_name"] == "DTypePolicy":
            return v["config"].get("name")
        cfg = {ck: cv for ck, cv in v["config"].items() if not (ck in _KERAS_ONLY_DEFAULTS and cv is None)}
        return {"class_name": v["class_name"], "config": cfg}
    return v


def _rnnlab_layer_config(entry, path):
    """A Keras layer entry of config.json -> ``(class_name, rnnlab config)``."""
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict) or "class_name" not in entry:
        raise ValueError(f"load_model: {path}: config.json has a malformed layer entry {entry!r:.200}")
    cls, cfg = entry["class_name"], {}
    for k, v in entry["config"].items():
        if k in _KERAS_ONLY_DEFAULTS and (v is None or v is False or v == 0):
            continue
        if k in _KERAS_ONLY_AT and v == _KERAS_ONLY_AT[k]:
            continue
        if k == "seed" and v is None:
            continue
        if k in ("layer", "backward_layer") and isinstance(v, dict):
            inner_cls, inner_cfg = _rnnlab_layer_config(v, path)
            cfg[k] = {"class_name": inner_cls, "config": inner_cfg}
            continue
        cfg[k] = _from_keras_value(k, v)
    return cls, cfg


def load_keras_archive(path, compile=True):
    """Build an rnnlab Sequential from a ``.keras`` archive (Keras- or rnnlab-written) and load its weights."""
    from ..layers.base import get_layer_class
    from .keras_weights import load_keras_weights
    from .sequential import Sequential
    path = os.fspath(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"load_model: {path} is not a .keras archive (not a zip file)")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        if "config.json" not in names:
            raise ValueError(f"load_model: {path} has no config.json (holds {names[:8]}); not a Keras 3 .keras file")
        try:
            config = json.loads(z.read("config.json").decode("utf-8"))
            meta = json.loads(z.read("metadata.json").decode("utf-8")) if "metadata.json" in names else {}
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"load_model: {path}: config.json/metadata.json is not valid JSON ({e})") from None
    if isinstance(config, dict) and config.get("class_name") in ("Functional", "Model"):
        model = _functional_from_keras(config.get("config") or {}, path)
        load_keras_weights(model, path)
        return _compile_from_meta(model, meta, compile)
    if not isinstance(config, dict) or config.get("class_name") != "Sequential":
        what = config.get("class_name") if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"load_model: {path} holds a Keras {what} model; rnnlab reads Sequential and functional "
                         "models from .keras files")
    entries = config.get("config", {}).get("layers", [])
    shape, dtype, layers = None, None, []
    for i, entry in enumerate(entries):
        cls, cfg = _rnnlab_layer_config(entry, path)
        if cls == "InputLayer":
            shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
            dtype = cfg.get("dtype")
            continue
        try:
            layer_cls = get_layer_class(cls)
        except ValueError:
            raise ValueError(f"load_model: {path}: config.json layer {i} ('{cfg.get('name')}') is a Keras {cls}, "
                             "which rnnlab does not have") from None
        try:
            layers.append(layer_cls.from_config(cfg))
        except (TypeError, ValueError) as e:
            raise ValueError(f"load_model: {path}: config.json layer {i} ('{cfg.get('name')}', {cls}) uses something "
                             f"rnnlab does not support: {e}") \
                from None
    if shape is None:
        bc = config.get("build_config") or {}
        shape = bc.get("input_shape")
    if shape is None:
        raise ValueError(f"load_model: {path}: the model has no input shape (no InputLayer or build_config)")
    model = Sequential(layers, name=config.get("config", {}).get("name"))
    if dtype is not None and np.dtype(dtype).kind in "iu":
        model._input_dtype = np.dtype(dtype).name
    model.build(tuple(shape))
    load_keras_weights(model, path)
    return _compile_from_meta(model, meta, compile)


def _compile_from_meta(model, meta, compile):
    comp = (meta.get("rnnlab") or {}).get("compile") if isinstance(meta, dict) else None
    if compile and comp:
        from .. import losses as _losses, optimizers as _optimizers
        model.compile(optimizer=_optimizers.get(comp["optimizer"]), loss=_losses.get(comp["loss"]),
                      metrics=comp["metrics"])
    return model


def _history(t, path):
    if not (isinstance(t, dict) and t.get("class_name") == "__keras_tensor__"):
        raise ValueError(f"load_model: {path}: a layer call argument is not a tensor ({t!r:.120}); rnnlab reads "
                         "calls on tensors (and lists of tensors) only")
    ref = t.get("config", {}).get("keras_history")
    if not (isinstance(ref, list) and len(ref) == 3):
        raise ValueError(f"load_model: {path}: a tensor without keras_history ({t!r:.120})")
    return ref


def _functional_from_keras(cfg, path):
    """Keras' Functional config -> an rnnlab functional Model (fresh weights)."""
    from .functional import Model
    layers = []
    # Keras records the mask of Embedding(mask_zero=True) as an explicit `ids != 0` op layer (NotEqual) whose
    # output goes to the next layers as mask=...; rnnlab passes that mask along the graph by itself
    mask_ops = {e.get("name") for e in cfg.get("layers") or []
                if isinstance(e, dict) and e.get("class_name") == "NotEqual"
                and all(len(nd.get("args") or []) == 2 and nd["args"][1] == 0 for nd in e.get("inbound_nodes") or [])}
    for i, entry in enumerate(cfg.get("layers") or []):
        if isinstance(entry, dict) and entry.get("name") in mask_ops:
            continue
        cls, lcfg = _rnnlab_layer_config(entry, path)
        if cls == "InputLayer":
            lcfg = {k: v for k, v in lcfg.items() if k in ("name", "batch_shape", "dtype", "sparse")}
        nodes = []
        for nd in entry.get("inbound_nodes") or []:
            args = nd.get("args") or []
            is_list = len(args) == 1 and isinstance(args[0], list)
            refs = [_history(t, path) for t in (args[0] if is_list else args)]
            kwargs = {}
            states = []
            for k, v in (nd.get("kwargs") or {}).items():
                if k == "initial_state" and isinstance(v, list):
                    states = [_history(t, path) for t in v]
                elif k in ("training", "mask") and v in (None, False):
                    continue
                elif k == "mask" and isinstance(v, dict) and _history(v, path)[0] in mask_ops:
                    continue
                elif isinstance(v, (bool, int, float, str)) or v is None:
                    kwargs[k] = v
                else:
                    raise ValueError(f"load_model: {path}: layer {i} ({cls}) is called with {k}={v!r:.80}, which "
                                     "rnnlab does not read")
            nodes.append({"args": refs, "list": is_list, "initial_state": states, "kwargs": kwargs})
        layers.append({"class_name": cls, "name": entry.get("name", lcfg.get("name")), "config": lcfg,
                       "inbound_nodes": nodes})
    try:
        return Model.from_config({"name": cfg.get("name"), "trainable": cfg.get("trainable", True),
                                  "layers": layers, "input_layers": cfg.get("input_layers"),
                                  "output_layers": cfg.get("output_layers")})
    except (TypeError, KeyError, ValueError) as e:
        raise ValueError(f"load_model: {path}: the Keras functional model uses something rnnlab does not "
                         f"support ({type(e).__name__}: {e})") from None


def load_model(path, compile=True):
    """:func:`rnnlab.saving.load_model`: ``.keras`` archives here, ``.h5``/``.hdf5`` refused, else rnnlab's npz."""
    kind = keras_kind(path)
    if kind == "keras":
        return load_keras_archive(path, compile=compile)
    if kind == "weights":
        raise ValueError(f"load_model: {os.fspath(path)!r} holds weights only; build the model and call "
                         "model.load_weights() on it")
    if kind == "legacy_h5":
        raise KerasFormatError(f"load_model: {os.fspath(path)!r} names Keras 2's legacy HDF5 format, which rnnlab "
                               "does not read; in Keras 3 save the model again as '.keras'")
    from .saving import load_model as _load
    return _load(path, compile=compile)
