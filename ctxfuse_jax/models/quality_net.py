"""Seed 003's master (Ghosh et al., "Robustness of deep CNNs for image degradations"): a small CNN
predicting which quality bin an image's degradation falls in, so that the slave's branch for that
bin classifies it.

The paper gives only its shape, "three convolutional layers followed by three fully connected
layers" with one output per quality bin; the sizes here are ours, for a small and fast predictor:
- conv 5x5 (32), conv 5x5 (64), conv 3x3 (128), each with ReLU and a 2x2/2 max-pool, listed like
  torchvision's `features` (`models.sequential`). The 5x5 kernels reach across JPEG's 8x8 blocks
  early: a unit after the second conv sees 14 px, so both sides of a block edge (the receptive
  field after the third pool is 28 px).
- a global average pool: a degradation (blocking, ringing, noise, blur) covers the whole image,
  so the evidence of every position is averaged; the dense layers then do not depend on the
  input size, and any image of `MIN_IMAGE_SIZE` px or more (one 1x1 cell after three halvings)
  works.
- dense 256 and 128 (ReLU, then dropout in training only, as VGG's fc6/fc7), then the head of
  `num_classes` = number of quality bins.
`width` scales every hidden layer (convs and the two hidden dense layers).

Stages (feature names, possible `stop_at` values): 'features_2', 'features_5', 'features_8'
(the pools), 'avgpool', 'classifier_2' and 'classifier_5' (the hidden dense layers after dropout,
the latter the pre-logits); head 'classifier_6'. Within them each ReLU under its torch index.
"""

import functools
import math
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from ctxfuse_jax.models.layers import Array, Backbone, Stage, StageFootprints, tap
from ctxfuse_jax.models.registry import register_model
from ctxfuse_jax.models.sequential import Conv, MaxPool, feature_footprints, feature_stages

FEATURES = (Conv(32, 5, 1, 2), MaxPool(), Conv(64, 5, 1, 2), MaxPool(), Conv(128, 3, 1, 1), MaxPool())
HIDDEN = (256, 128)
# The convs keep the size (padding (k - 1) / 2); each pool floors it by its stride.
MIN_IMAGE_SIZE = math.prod(layer.stride for layer in FEATURES if isinstance(layer, MaxPool))


@register_model('quality_net')
class QualityNet(Backbone):
    """Seed 003's quality-prediction network: three convs, global average pool, three dense layers."""

    num_classes: int | None = 3  # quality bins; the paper's figure has one per slave branch
    dropout_rate: float = 0.5

    head_name: ClassVar[str] = 'classifier_6'

    def __call__(self, x: Array, train: bool = False) -> Array:
        """Backbone's call, refusing images smaller than `MIN_IMAGE_SIZE` (their last pool would be
        empty and its average NaN)."""
        if self.start_at is None and min(x.shape[1:3]) < MIN_IMAGE_SIZE:
            raise ValueError(f'QualityNet needs images of at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} px '
                             f'(three 2x2 pools); got {x.shape[1]}x{x.shape[2]}')
        return super().__call__(x, train)

    def stages(self, train: bool) -> list[Stage]:
        return [
            *feature_stages(self, FEATURES, self.conv_def(use_bias=True)),
            ('avgpool', lambda x: jnp.mean(x, axis=(1, 2))),
            ('classifier_2', functools.partial(self.fully_connected, 0, train)),
            ('classifier_5', functools.partial(self.fully_connected, 3, train)),
        ]

    def stage_footprints(self) -> StageFootprints:
        return feature_footprints(FEATURES)

    def fully_connected(self, index: int, train: bool, x: Array) -> Array:
        """Linear (torch index `index`), ReLU (tapped at `index + 1`), dropout."""
        x = self.dense_def()(self.channels(HIDDEN[index // 3]), name=f'classifier_{index}')(x)
        x = tap(self, f'classifier_{index + 1}', nn.relu(x))
        return nn.Dropout(self.dropout_rate, deterministic=not train)(x)
