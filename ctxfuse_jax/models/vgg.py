"""torchvision's VGG, with and without BN, keeping torch's layer indices as module names.

Stages (feature names, possible `stop_at` values): the five max-pools ('features_4', ...,
'features_30' without BN; 'features_6', ..., 'features_43' with BN), 'avgpool' (adaptive 7x7,
so any input size works), 'classifier_2' and 'classifier_5' (fc6 and fc7 after dropout, the
latter the pre-logits). Within them: every ReLU and BN output under its torch index
('features_1', 'classifier_1', ...).

`fully_convolutional=True` is the same network with the same variables applied as Simonyan &
Zisserman evaluate it (and seed 001 after them): no adaptive pool, fc6 slid over pool5 as a
`pool_size` convolution, fc7 and the head at every position, so the output is a map of logits
(batch, rows, cols, classes); a pool5 smaller than the window is zero-padded to it.
"""

from collections.abc import Sequence
import functools
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from ctxfuse_jax.models.layers import Array, Backbone, Stage, StageFootprints, adaptive_avg_pool, tap
from ctxfuse_jax.models.registry import register_model
from ctxfuse_jax.models.sequential import Conv, Layer, MaxPool, feature_footprints, feature_stages

POOL_SIZE = (7, 7)
VGG16_LAYERS = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M',
                512, 512, 512, 'M', 512, 512, 512, 'M')


class VGG(Backbone):
    """VGG from torchvision's layer list: channel counts, 'M' for a 2x2 max-pool (default VGG16)."""

    layers: Sequence[int | str] = VGG16_LAYERS
    batch_norm: bool = False
    dropout_rate: float = 0.5
    pool_size: tuple[int, int] = POOL_SIZE  # pool5 cells fc6 reads: 7x7 at 224 px, fewer for small images
    fully_convolutional: bool = False

    head_name: ClassVar[str] = 'classifier_6'

    def feature_layers(self) -> tuple[Layer, ...]:
        """`layers` as convs (3x3, padding 1) and 2x2/2 max-pools."""
        return tuple(MaxPool() if layer == 'M' else Conv(layer) for layer in self.layers)

    def stages(self, train: bool) -> list[Stage]:
        norm = self.norm_def(train) if self.batch_norm else None
        stages = feature_stages(self, self.feature_layers(), self.conv_def(use_bias=True), norm)
        pool = [] if self.fully_convolutional else [
            ('avgpool', functools.partial(adaptive_avg_pool, size=tuple(self.pool_size)))]
        return [
            *stages, *pool,
            ('classifier_2', functools.partial(self.fully_connected, 0, train)),
            ('classifier_5', functools.partial(self.fully_connected, 3, train)),
        ]

    def stage_footprints(self) -> StageFootprints:
        return feature_footprints(self.feature_layers(), self.batch_norm)

    def flattened_inputs(self) -> dict[str, tuple[int, int]]:
        return {'classifier_0': tuple(self.pool_size)}

    def fully_connected(self, index: int, train: bool, x: Array) -> Array:
        """Linear (torch index `index`), ReLU, dropout; flattens the pooled map in HWC order, or
        (fully convolutional) slides fc6 over it and applies fc7 at every position."""
        if self.fully_convolutional and index == 0:
            x = WindowDense(self.channels(4096), tuple(self.pool_size), dtype=self.dtype,
                            param_dtype=self.param_dtype, name=f'classifier_{index}')(x)
        else:
            x = x if self.fully_convolutional else x.reshape(x.shape[0], -1)
            x = self.dense_def()(self.channels(4096), name=f'classifier_{index}')(x)
        x = tap(self, f'classifier_{index + 1}', nn.relu(x))
        return nn.Dropout(self.dropout_rate, deterministic=not train)(x)


class WindowDense(nn.Module):
    """A Dense layer over a flattened (rows, cols, channels) window, applied at every window position
    of a larger map (its kernel read as a convolution's): nn.Dense's variables, so weights load
    into both. A map smaller than the window is zero-padded to it, centred (seed 001's pool5 at 128 px)."""

    features: int
    window: tuple[int, int]
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        rows, cols = self.window
        channels = x.shape[-1]
        pad = [(max(0, w - n) // 2, max(0, w - n) - max(0, w - n) // 2) for w, n in zip(self.window, x.shape[1:3])]
        x = jnp.pad(x, ((0, 0), *pad, (0, 0)))
        kernel = self.param('kernel', nn.initializers.lecun_normal(), (rows * cols * channels, self.features),
                            self.param_dtype)
        bias = self.param('bias', nn.initializers.zeros_init(), (self.features,), self.param_dtype)
        kernel = kernel.reshape(rows, cols, channels, self.features).astype(self.dtype)
        y = jax.lax.conv_general_dilated(x.astype(self.dtype), kernel, (1, 1), 'VALID',
                                         dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
        return y + bias.astype(self.dtype)


VGG16 = register_model('vgg16')(functools.partial(VGG, layers=VGG16_LAYERS))
VGG16BN = register_model('vgg16_bn')(
    functools.partial(VGG, layers=VGG16_LAYERS, batch_norm=True))
