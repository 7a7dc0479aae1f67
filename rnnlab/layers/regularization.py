"""Regularization layers: ``SpatialDropout1D``.

SpatialDropout1D (Keras semantics) drops whole feature channels of a sequence instead of single elements:
x (B, T, C), at training time one keep/drop draw per (sample, channel), shared by all T steps::

    u ~ U[0, 1) of shape (B, 1, C)       m = (u >= rate) / (1 - rate)       y = x * m      (m broadcast over T)
    backward: dL/dx = dL/dy * m

At inference (``training=False``) it is the identity. Masks pass through unchanged. Draws come from
:func:`rnnlab.backend.rng` (``set_random_seed``), or from the layer's own generator when ``seed=`` is given.
Keras draws from its own generator, so the masks themselves differ from Keras's; the distribution, the
scaling and the inference behaviour are the same.
"""
from __future__ import annotations

from .base import register
from .core import Dropout


@register
class SpatialDropout1D(Dropout):
    """Dropout of entire channels of a (batch, steps, channels) input (Keras ``SpatialDropout1D``)."""

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(rate, noise_shape=None, seed=seed, **kwargs)

    def _mask_shape(self, x):
        return (x.shape[0], 1, x.shape[2])

    def forward(self, x, training=False, mask=None):
        self._check_ndim(x, 3, "(batch, steps, channels)")
        return super().forward(x, training=training, mask=mask)

    def compute_output_shape(self, input_shape):
        if len(tuple(input_shape)) != 3:
            raise ValueError(f"Input to layer '{self.name}' (SpatialDropout1D) is incompatible: expected ndim=3 "
                             f"(batch, steps, channels), found input shape {tuple(input_shape)}")
        return tuple(input_shape)

    def get_config(self):
        cfg = super().get_config()
        cfg.pop("noise_shape", None)
        return cfg
