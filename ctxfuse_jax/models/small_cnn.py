"""Seed 002's digit classifier (Cruz & Cardoso, "Training a CNN to be Background Invariant").

The authors' Keras `classifier`: n = int(log2(side / 4)) VGG blocks (3x3 'same' conv with 2**(i+5)
channels, ReLU, 2x2 max-pool), flatten, Dense 128 + ReLU, linear logits. n follows the input side,
so the model is built for one: `size` (28 px: 2 blocks, 28 -> 14 -> 7; 64 px: 4 blocks, 64 -> 4),
and refuses images of another size, which its Dense layer could not take anyway.
Stages (feature names, possible `stop_at` values): 'block_0', ..., 'block_{n-1}' (each block's
pooled output; the last is an attention baseline's heat map), 'fc' (the 128 pre-logits).

The authors feed raw [0, 1] pixels, so mean 0 and std 1 by default, one entry for any channel count.
Keras initialises kernels Glorot-uniform; so do the convs and the hidden Dense here.
"""

from collections.abc import Sequence
import functools
import math
from typing import ClassVar

import flax.linen as nn

from ctxfuse_jax.models.layers import Array, Backbone, ModuleDef, Stage
from ctxfuse_jax.models.registry import register_model
from ctxfuse_jax.ops.pool import max_pool

HIDDEN = 128
KERAS_INIT = nn.initializers.glorot_uniform()


def authors_levels(side: int) -> int:
    """int(log2(side / 4)): the authors' number of conv blocks (and of U-Net levels) for `side` px."""
    levels = int(math.log2(side / 4))
    if levels < 1:
        raise ValueError(f'a {side} px input is too small for the authors\' rule int(log2(side / 4)) '
                         f'to give a level; inputs need at least 8 px')
    return levels


@register_model('small_cnn')
class SmallCNN(Backbone):
    """The authors' digit classifier; `width` scales its channels (32, 64, ... and the 128 units)."""

    size: int = 28
    num_classes: int | None = 10
    mean: Sequence[float] = (0.0,)
    std: Sequence[float] = (1.0,)

    head_name: ClassVar[str] = 'head'

    @property
    def num_blocks(self) -> int:
        """The authors' rule for `size`: int(log2(size / 4))."""
        return authors_levels(self.size)

    def __call__(self, x: Array, train: bool = False) -> Array:
        """Backbone's call, refusing images of another size and a mean or std that does not fit their channels
        (neither applies to a branch's input, a stage's output: `start_at`)."""
        if self.start_at is not None:
            return super().__call__(x, train)
        if x.shape[1:3] != (self.size, self.size):
            raise ValueError(f'SmallCNN(size={self.size}) got {x.shape[1]}x{x.shape[2]} images; build it with '
                             f'the images\' side, from which the authors\' rule gives its number of blocks')
        # normalize() would broadcast a 1-channel image against an RGB mean into 3 channels.
        for what, values in (('mean', self.mean), ('std', self.std)):
            if len(values) not in (1, x.shape[-1]):
                raise ValueError(f'SmallCNN got {x.shape[-1]}-channel images but a {len(values)}-entry '
                                 f'{what}; give one entry or one per channel')
        return super().__call__(x, train)

    def stages(self, train: bool) -> list[Stage]:
        conv = functools.partial(self.conv_def(use_bias=True), kernel_init=KERAS_INIT)
        blocks = [(f'block_{i}', functools.partial(self.conv_block, conv, i)) for i in range(self.num_blocks)]
        return [*blocks, ('fc', self.fully_connected)]

    def conv_block(self, conv: ModuleDef, index: int, x: Array) -> Array:
        """The authors' VGG block `index`: 3x3 conv with 2**(index+5) channels, ReLU, 2x2/2 max-pool."""
        x = conv(self.channels(2 ** (index + 5)), (3, 3), padding=1, name=f'conv_{index}')(x)
        return max_pool(nn.relu(x), (2, 2), (2, 2))

    def fully_connected(self, x: Array) -> Array:
        """Flatten (HWC order), Dense 128, ReLU."""
        x = nn.Dense(self.channels(HIDDEN), kernel_init=KERAS_INIT, dtype=self.dtype,
                     param_dtype=self.param_dtype, name='dense')(x.reshape(x.shape[0], -1))
        return nn.relu(x)
