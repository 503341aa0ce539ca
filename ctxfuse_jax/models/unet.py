"""Seed 002's mask generator: the authors' U-Net, images -> a foreground mask in [0, 1].

Cruz & Cardoso's Keras `unet`: n = int(log2(side / 4)) down levels (3x3 'same' conv with
2**(i+5) channels and ReLU, kept as a skip, 2x2 max-pool), a 3x3 conv at the bottom, n up levels
(2x nearest upsampling, 3x3 conv with the skip's channel count and ReLU, then the skip concatenated
after it), and a 1x1 conv to one channel with a sigmoid. The mask is trained (d/dparams) and
multiplies the image that a classifier sees (d/dinputs), so everything here is differentiable.

The skips only line up if every pooling halves exactly, so the sides must be multiples of 2**n
(28: 28 -> 14 -> 7; 64: 64 -> 4); other sizes are refused rather than padded.
Raw [0, 1] pixels go in, as in the authors' code; any channel count.
"""

import functools

import flax.linen as nn
import jax.numpy as jnp

from ctxfuse_jax.models.layers import Array, Dtype, ModuleDef
from ctxfuse_jax.models.registry import register_model
from ctxfuse_jax.models.layers import scaled_channels
from ctxfuse_jax.models.small_cnn import KERAS_INIT, authors_levels
from ctxfuse_jax.ops.conv import conv_module
from ctxfuse_jax.ops.pool import max_pool


def upsample(x: Array) -> Array:
    """Keras' UpSampling2D: each pixel repeated into a 2x2 block."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


@register_model('unet')
class UNet(nn.Module):
    """The authors' U-Net; `width` scales its channels (32, 64, ...). Returns float32 (B, H, W, 1)."""

    width: float = 1.0
    conv: ModuleDef = conv_module('auto')  # XLA's convolution, reformulated when compiled for CPU.
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """`train` is the players' calling convention; the U-Net has no batch norm or dropout."""
        height, width = x.shape[1:3]
        levels = authors_levels(min(height, width))
        if height % 2 ** levels or width % 2 ** levels:
            raise ValueError(f'UNet goes {levels} levels down for a {height}x{width} input, so its sides '
                             f'must be multiples of 2**{levels} = {2 ** levels} for the skips to line up')
        conv = functools.partial(self.conv, kernel_size=(3, 3), padding=1, kernel_init=KERAS_INIT,
                                 dtype=self.dtype, param_dtype=self.param_dtype)
        x = jnp.asarray(x, self.dtype)
        skips = []
        for i in range(levels):
            x = nn.relu(conv(scaled_channels(self, 2 ** (i + 5)), name=f'down_{i}')(x))
            skips.append(x)
            x = max_pool(x, (2, 2), (2, 2))
        x = nn.relu(conv(scaled_channels(self, 2 ** (levels + 4)), name='bottom')(x))
        for i, skip in enumerate(reversed(skips)):
            x = nn.relu(conv(skip.shape[-1], name=f'up_{i}')(upsample(x)))
            x = jnp.concatenate([x, skip], axis=-1)
        mask = conv(1, kernel_size=(1, 1), padding=0, name='to_mask')(x)
        return nn.sigmoid(mask.astype(jnp.float32))
