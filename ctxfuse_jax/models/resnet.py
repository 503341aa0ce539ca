"""torchvision's ResNet (v1.5: stride on the 3x3 conv) with torch's paddings and module names.

Stages (feature names, possible `stop_at` values): 'maxpool' (the stem), 'layer1'..'layer4',
'avgpool' (pre-logits). Within them: 'relu' (stem), each block 'layer{i}_{j}' and each BN output
('bn1', 'layer1_0/bn2', 'layer2_0/downsample_1', ...).
"""

from collections.abc import Sequence
import functools
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from ctxfuse_jax.models.layers import (OUT, Array, Backbone, Footprint, ModuleDef, Stage,
                                       StageFootprints, tap)
from ctxfuse_jax.models.registry import register_model
from ctxfuse_jax.ops.pool import max_pool


class Block(nn.Module):
    """A residual block: `residual(x)` plus a shortcut that is projected when the shape changes."""

    features: int
    strides: int
    conv: ModuleDef
    norm: ModuleDef

    expansion: ClassVar[int]

    def residual(self, x: Array) -> Array:
        raise NotImplementedError

    @classmethod
    def footprints(cls, strides: int) -> tuple[Footprint, ...]:
        """The geometry of `residual`'s convs, in order (the shortcut reads inside their window)."""
        raise NotImplementedError

    @nn.compact
    def __call__(self, x: Array) -> Array:
        residual = self.residual(x)
        if self.strides != 1 or x.shape[-1] != self.features * self.expansion:
            x = self.conv(self.features * self.expansion, (1, 1), self.strides, padding=0,
                          name='downsample_0')(x)
            x = self.norm(name='downsample_1')(x)
        return tap(self, OUT, nn.relu(residual + x))


class BasicBlock(Block):
    """Two 3x3 convs (ResNet18/34)."""

    expansion: ClassVar[int] = 1

    def residual(self, x: Array) -> Array:
        x = self.conv(self.features, (3, 3), self.strides, padding=1, name='conv1')(x)
        x = nn.relu(self.norm(name='bn1')(x))
        x = self.conv(self.features, (3, 3), padding=1, name='conv2')(x)
        return self.norm(name='bn2')(x)

    @classmethod
    def footprints(cls, strides: int) -> tuple[Footprint, ...]:
        return Footprint(3, strides, 1), Footprint(3, 1, 1)


class Bottleneck(Block):
    """1x1 reduce, strided 3x3, 1x1 expand by 4 (ResNet50+)."""

    expansion: ClassVar[int] = 4

    def residual(self, x: Array) -> Array:
        x = self.conv(self.features, (1, 1), padding=0, name='conv1')(x)
        x = nn.relu(self.norm(name='bn1')(x))
        x = self.conv(self.features, (3, 3), self.strides, padding=1, name='conv2')(x)
        x = nn.relu(self.norm(name='bn2')(x))
        x = self.conv(self.features * self.expansion, (1, 1), padding=0, name='conv3')(x)
        return self.norm(name='bn3')(x)

    @classmethod
    def footprints(cls, strides: int) -> tuple[Footprint, ...]:
        return Footprint(1), Footprint(3, strides, 1), Footprint(1)


class ResNet(Backbone):
    """ResNet with an ImageNet stem; `layers` blocks per stage (defaults: ResNet18)."""

    layers: Sequence[int] = (2, 2, 2, 2)
    block: type[Block] = BasicBlock

    head_name: ClassVar[str] = 'fc'

    def stages(self, train: bool) -> list[Stage]:
        conv, norm = self.conv_def(use_bias=False), self.norm_def(train)
        return [
            ('maxpool', functools.partial(self.stem, conv, norm)),
            *[(f'layer{i + 1}', functools.partial(self.stage, i, conv, norm))
              for i in range(len(self.layers))],
            ('avgpool', lambda x: jnp.mean(x, axis=(1, 2))),
        ]

    def stage_footprints(self) -> StageFootprints:
        stages = [('maxpool', (Footprint(7, 2, 3), Footprint(3, 2, 1)))]  # `stem`'s conv and pool
        for i, blocks in enumerate(self.layers):
            layers = [self.block.footprints(self.block_strides(i, j)) for j in range(blocks)]
            stages.append((f'layer{i + 1}', sum(layers, ())))
        return stages

    def stem(self, conv: ModuleDef, norm: ModuleDef, x: Array) -> Array:
        """7x7/2 conv, BN, ReLU, 3x3/2 max-pool; torch's explicit paddings (-inf for the pool)."""
        x = conv(self.channels(64), (7, 7), 2, padding=3, name='conv1')(x)
        x = tap(self, 'relu', nn.relu(norm(name='bn1')(x)))
        return max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))

    def stage(self, index: int, conv: ModuleDef, norm: ModuleDef, x: Array) -> Array:
        """Stage `index`'s blocks."""
        for j in range(self.layers[index]):
            x = self.block(self.channels(64 * 2**index), self.block_strides(index, j), conv, norm,
                           name=f'layer{index + 1}_{j}')(x)
        return x

    @staticmethod
    def block_strides(index: int, block: int) -> int:
        """Stage `index`'s first block halves the resolution, except in layer1."""
        return 2 if index > 0 and block == 0 else 1


ResNet18 = register_model('resnet18')(
    functools.partial(ResNet, layers=(2, 2, 2, 2), block=BasicBlock))
ResNet34 = register_model('resnet34')(
    functools.partial(ResNet, layers=(3, 4, 6, 3), block=BasicBlock))
ResNet50 = register_model('resnet50')(
    functools.partial(ResNet, layers=(3, 4, 6, 3), block=Bottleneck))
