"""torchvision's AlexNet (the one-GPU variant of Krizhevsky's "One weird trick"), keeping torch's
layer indices as module names.

Stages (feature names, possible `stop_at` values): the three max-pools ('features_2',
'features_5', 'features_12'; 3x3 windows at stride 2, floor rounding), 'avgpool' (adaptive 6x6,
so any input of 63 px or more works), 'classifier_2' and 'classifier_5' (fc6 and fc7: dropout,
linear, ReLU; the latter the pre-logits). Within them: every ReLU output under its torch index
('features_1', ..., 'features_11'; fc6's and fc7's are the stages themselves).
"""

import functools
from typing import ClassVar

import flax.linen as nn

from ctxfuse_jax.models.layers import Array, Backbone, Stage, StageFootprints, adaptive_avg_pool
from ctxfuse_jax.models.registry import register_model
from ctxfuse_jax.models.sequential import Conv, MaxPool, feature_footprints, feature_stages

POOL_SIZE = (6, 6)
FEATURES = (Conv(64, 11, 4, 2), MaxPool(3, 2), Conv(192, 5, 1, 2), MaxPool(3, 2),
            Conv(384), Conv(256), Conv(256), MaxPool(3, 2))


@register_model('alexnet')
class AlexNet(Backbone):
    """AlexNet as torchvision builds it: five convs, three pools, two hidden dense layers."""

    dropout_rate: float = 0.5

    head_name: ClassVar[str] = 'classifier_6'

    def stages(self, train: bool) -> list[Stage]:
        return [
            *feature_stages(self, FEATURES, self.conv_def(use_bias=True)),
            ('avgpool', functools.partial(adaptive_avg_pool, size=POOL_SIZE)),
            ('classifier_2', functools.partial(self.fully_connected, 1, train)),
            ('classifier_5', functools.partial(self.fully_connected, 4, train)),
        ]

    def stage_footprints(self) -> StageFootprints:
        return feature_footprints(FEATURES)

    def flattened_inputs(self) -> dict[str, tuple[int, int]]:
        return {'classifier_1': POOL_SIZE}

    def fully_connected(self, index: int, train: bool, x: Array) -> Array:
        """Dropout, Linear (torch index `index`), ReLU; flattens the pooled map in HWC order. The
        ReLU is the stage's output, so the stage's tap is the ReLU's (torch index `index + 1`)."""
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x.reshape(x.shape[0], -1))
        return nn.relu(self.dense_def()(self.channels(4096), name=f'classifier_{index}')(x))
