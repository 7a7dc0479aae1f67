"""Batches for ``fit``/``evaluate``/``predict`` from something other than in-memory arrays (Keras 3's data adapters).

``fit(x)`` takes, besides arrays (and lists/dicts of arrays):

* a :class:`PyDataset` (or any object with ``__len__`` and ``__getitem__``): ``len(ds)`` batches per epoch,
  ``ds[i]`` is batch ``i``; ``ds.on_epoch_begin()`` / ``ds.on_epoch_end()`` are called around every epoch
  when they exist (reshuffle there);
* a Python generator or any other iterable of batches. An iterable that restarts (``iter(data)`` is not
  ``data``, e.g. a list of batches) is iterated once per epoch; a one-shot iterator (a generator) is read
  ``steps_per_epoch`` batches per epoch, or to its end in the first epoch when ``steps_per_epoch`` is not
  given. When it runs dry training stops with a warning, as Keras.

A batch is ``(x, y)``, ``(x, y, sample_weight)`` or, for a model whose ``train_step`` is overridden, whatever
that ``train_step(data)`` takes. ``x``/``y`` inside a batch are arrays, lists or dicts as ``fit`` takes them.
Batches are not shuffled by ``fit`` (``shuffle`` applies to arrays only): the dataset orders its batches itself.
"""
from __future__ import annotations

import warnings


class PyDataset:
    """Base class of a dataset that builds its batches in Python (``keras.utils.PyDataset``).

    Implement ``__len__`` (batches per epoch) and ``__getitem__(index)`` (one whole batch: ``(x, y)`` or
    ``(x, y, sample_weight)``); optionally ``on_epoch_begin()``/``on_epoch_end()``. ``workers``,
    ``use_multiprocessing`` and ``max_queue_size`` are accepted for Keras compatibility; batches are built in
    the training thread, one at a time, in index order."""

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        self.workers, self.use_multiprocessing, self.max_queue_size = workers, use_multiprocessing, max_queue_size

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__}: a PyDataset must define __len__ (the number of batches)")

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__}: a PyDataset must define __getitem__(index) (one batch)")

    @property
    def num_batches(self):
        return len(self)

    def on_epoch_begin(self):
        """Called before every epoch."""

    def on_epoch_end(self):
        """Called after every epoch (e.g. to reshuffle)."""

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


def is_dataset(x) -> bool:
    """True for what :class:`BatchSource` reads (a PyDataset-like object, a generator or an iterable of batches),
    False for arrays, lists/tuples/dicts of arrays and tensors."""
    import numpy as np

    if x is None or isinstance(x, (np.ndarray, list, tuple, dict, str, bytes)):
        return False
    if hasattr(x, "__array__") or (hasattr(x, "detach") and hasattr(x, "numpy")):
        return False
    if hasattr(x, "__len__") and hasattr(x, "__getitem__"):
        return True
    return hasattr(x, "__iter__") or hasattr(x, "__next__")


class BatchSource:
    """The batches of one dataset, epoch by epoch: ``epoch_batches()`` yields the raw batches of one epoch.

    ``steps`` is the number of batches per epoch when known (``len`` of a PyDataset, ``steps_per_epoch``),
    else ``None``. ``exhausted`` is set when a one-shot iterator ran dry."""

    def __init__(self, data, steps_per_epoch=None, what="fit"):
        if steps_per_epoch is not None and (isinstance(steps_per_epoch, bool) or
                                            not isinstance(steps_per_epoch, int) or steps_per_epoch < 1):
            raise ValueError(f"{what}: steps_per_epoch must be a positive int or None, got {steps_per_epoch!r}")
        self.data, self.what = data, what
        self.indexed = hasattr(data, "__len__") and hasattr(data, "__getitem__")
        self.exhausted = False
        if self.indexed:
            n = len(data)
            if n < 1:
                raise ValueError(f"{what}: the dataset {type(data).__name__} has no batches (len() is {n})")
            self.steps = n if steps_per_epoch is None else min(n, steps_per_epoch)
            self._iter = None
        else:
            if not (hasattr(data, "__iter__") or hasattr(data, "__next__")):
                raise TypeError(f"{what}: x must be arrays, a PyDataset or an iterable of batches, got "
                                f"{type(data).__name__}")
            self.one_shot = iter(data) is data if hasattr(data, "__iter__") else True
            self.steps = steps_per_epoch
            self._iter = data if self.one_shot and not hasattr(data, "__iter__") else None

    def epoch_batches(self):
        data = self.data
        if self.indexed:
            if hasattr(data, "on_epoch_begin"):
                data.on_epoch_begin()
            for i in range(self.steps):
                yield data[i]
            if hasattr(data, "on_epoch_end"):
                data.on_epoch_end()
            return
        if not self.one_shot:
            it = iter(data)
        else:
            if self._iter is None:
                self._iter = iter(data)
            it = self._iter
        count = 0
        while self.steps is None or count < self.steps:
            try:
                batch = next(it)
            except StopIteration:
                if self.one_shot and (count == 0 or self.steps is not None):
                    self.exhausted = True
                    warnings.warn(f"{self.what}: your input ran out of data after {count} batch(es) of this epoch; "
                                  "interrupting training. Give a dataset that can be iterated once per epoch (a "
                                  "PyDataset or a list of batches), or steps_per_epoch * epochs batches",
                                  RuntimeWarning, stacklevel=4)
                return
            count += 1
            yield batch
