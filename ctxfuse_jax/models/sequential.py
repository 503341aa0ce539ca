"""torchvision's `features` Sequential of convs, ReLUs and max-pools (VGG, AlexNet), from one list.

A model lists its convs and pools in order (`Conv`, `MaxPool`); the same list builds its layers,
under torch's indices in `features` (a conv takes two, conv and ReLU, or three with BN between
them; a pool one), and gives their geometry to `receptive_field`, so the two cannot disagree.
Each max-pool ends a stage named after its index ('features_4'); every ReLU and BN output is a
feature under its own index.
"""

from collections.abc import Iterator, Sequence
import functools
from typing import NamedTuple

import flax.linen as nn

from ctxfuse_jax.models.layers import (Array, Backbone, Footprint, ModuleDef, Stage,
                                       StageFootprints, tap)
from ctxfuse_jax.ops.pool import max_pool


class Conv(NamedTuple):
    """A square convolution with bias, `channels` at full width (scaled by the model's `width`)."""

    channels: int
    kernel: int = 3
    stride: int = 1
    padding: int = 1

    @property
    def footprint(self) -> Footprint:
        return Footprint(self.kernel, self.stride, self.padding)


class MaxPool(NamedTuple):
    """A square max-pool without padding; torch's floor rounding (a partial window is dropped)."""

    kernel: int = 2
    stride: int = 2

    @property
    def footprint(self) -> Footprint:
        return Footprint(self.kernel, self.stride)


Layer = Conv | MaxPool


def _indexed(layers: Sequence[Layer], batch_norm: bool) -> Iterator[tuple[int, Layer]]:
    """Each layer with its index in torch's `features`."""
    index = 0
    for layer in layers:
        yield index, layer
        index += 1 if isinstance(layer, MaxPool) else 3 if batch_norm else 2


def _blocks(layers: Sequence[Layer], batch_norm: bool
            ) -> Iterator[tuple[int, tuple[tuple[int, Conv], ...], MaxPool]]:
    """(the pool's index, the indexed convs before it, the pool) per stage; convs after the last
    pool belong to no stage."""
    convs = []
    for index, layer in _indexed(layers, batch_norm):
        if isinstance(layer, MaxPool):
            yield index, tuple(convs), layer
            convs = []
        else:
            convs.append((index, layer))


def feature_stages(module: Backbone, layers: Sequence[Layer], conv: ModuleDef,
                   norm: ModuleDef | None = None) -> list[Stage]:
    """`module`'s stages for `layers`: per max-pool, the convs before it (each then BN if `norm`,
    then ReLU) and the pool."""
    return [(f'features_{index}', functools.partial(_block, module, convs, pool, conv, norm))
            for index, convs, pool in _blocks(layers, norm is not None)]


def feature_footprints(layers: Sequence[Layer], batch_norm: bool = False) -> StageFootprints:
    """The stages of `feature_stages` with their convs' and pool's geometry."""
    return [(f'features_{index}', (*(c.footprint for _, c in convs), pool.footprint))
            for index, convs, pool in _blocks(layers, batch_norm)]


def _block(module: Backbone, convs: Sequence[tuple[int, Conv]], pool: MaxPool, conv: ModuleDef,
           norm: ModuleDef | None, x: Array) -> Array:
    """One stage: each conv (then BN), ReLU, under their torch indices; then the pool."""
    for index, layer in convs:
        x = conv(module.channels(layer.channels), (layer.kernel,) * 2, layer.stride,
                 padding=layer.padding, name=f'features_{index}')(x)
        if norm is not None:
            x = norm(name=f'features_{index + 1}')(x)
        x = tap(module, f'features_{index + (1 if norm is None else 2)}', nn.relu(x))
    return max_pool(x, (pool.kernel,) * 2, (pool.stride,) * 2)
