"""Heads on top of frozen feature streams (seed 000): the Joint fusion head and unimodal probes.

The streams themselves are truncated zoo backbones held by separate, frozen players; these heads
are the only trainable parts, so they take feature maps, not images.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ctxfuse_jax.models.layers import CONV_INIT, BatchNorm, ModuleDef, tap
from ctxfuse_jax.ops.conv import conv_module


class FusionHead(nn.Module):
    """Concatenate FG and BG feature maps on channels, two 3x3 conv layers, average pool, linear.

    The paper does not give the conv widths or normalisation; we use `features` channels with
    batch norm and ReLU after each conv, the usual choice for a small trainable block. Given the
    FG stream alone it is the capacity-matched control: Joint's trainable layers without context.
    """

    num_classes: int
    features: int = 256
    conv: ModuleDef = conv_module("auto")
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, *streams: jax.Array, train: bool = False) -> jax.Array:
        shapes = [x.shape for x in streams]
        if len({shape[:-1] for shape in shapes}) != 1:
            raise ValueError(f"stream features {shapes} must share batch and spatial shape to be fused; cut "
                             "the streams at the same layer")
        x = jnp.concatenate(streams, axis=-1).astype(self.dtype)
        for i in range(2):
            x = self.conv(self.features, (3, 3), padding=1, use_bias=False, kernel_init=CONV_INIT,
                          dtype=self.dtype, name=f"fuse_conv{i + 1}")(x)
            x = BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                          name=f"fuse_bn{i + 1}")(x)
            x = tap(self, f"fuse_relu{i + 1}", nn.relu(x))
        pooled = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(pooled).astype(jnp.float32)


class LinearProbe(nn.Module):
    """A unimodal baseline's trainable part: global average pool of one stream, then linear."""

    num_classes: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features: jax.Array, train: bool = False) -> jax.Array:
        pooled = jnp.mean(features.astype(self.dtype), axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(pooled).astype(jnp.float32)
