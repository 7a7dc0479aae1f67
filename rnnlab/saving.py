"""``rnnlab.saving``: ``keras.saving``'s ``save_model`` / ``load_model``, dispatching on the file name.

* ``*.keras``: a real Keras 3 archive (``config.json``, ``metadata.json``, ``model.weights.h5``), written by
  :mod:`rnnlab.models.keras_format` (needs h5py); Keras 3 loads it, and so does rnnlab.
* ``*.weights.h5``: weights only (``model.save_weights``).
* ``*.h5`` / ``*.hdf5``: Keras 2's legacy HDF5 model format, which rnnlab does not write: refused with an error
  that offers ``.keras`` or ``.npz``.
* any other name: rnnlab's own single-file ``.npz`` format (JSON config + arrays, no pickle).
"""
from __future__ import annotations

import os

__all__ = ["save_model", "load_model"]


def save_model(model, filepath, overwrite=True, include_optimizer=True, **kwargs):
    """``model.save(filepath)``; with ``overwrite=False`` an existing file is a ``FileExistsError``."""
    if kwargs:
        raise TypeError(f"save_model: unexpected keyword argument(s) {sorted(kwargs)}")
    if not overwrite and os.path.exists(os.fspath(filepath)):
        raise FileExistsError(f"save_model: {os.fspath(filepath)} exists and overwrite=False")
    model.save(filepath, include_optimizer=include_optimizer)


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Load what :func:`save_model` (or Keras 3, for ``.keras``) wrote. ``custom_objects`` must be empty
    (register custom layers with :func:`rnnlab.layers.register`); ``safe_mode`` is always on (no code is loaded)."""
    if custom_objects:
        raise ValueError("load_model: custom_objects are not used by rnnlab; decorate custom layer classes with "
                         "rnnlab.layers.register so that files can name them")
    from .models.keras_format import load_model as _load
    return _load(filepath, compile=compile)


def __getattr__(name):
    from ._compat import missing
    raise missing("rnnlab.saving", name)
