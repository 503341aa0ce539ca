"""Receptive fields of the zoo's convolutional stages, computed from their layer geometry.

Seed 003 explains AlexNet's robustness to JPEG by the receptive field R of its first max-pool's
output against JPEG's 8x8 blocks: AlexNet's units see 19x19 pixels, across block boundaries,
VGG16's 6x6, inside one block. So R must come from the model that is run, not from a figure:
each model lists the geometry of its stages (`Backbone.stage_footprints`, from the same
description that builds its layers), and this composes it.

Along each axis, unit i of a stage's output reads input pixels [start + i*jump, start + i*jump +
size); an input pixel is (size 1, jump 1, start 0), and a layer with kernel k, stride s and
padding p turns (size, jump, start) into (size + (k-1)*jump, jump*s, start - p*jump). `start` is
negative where the window reaches into the padding: near the border a unit sees only the part of
its window inside the image. A residual block's window is its branch's: the shortcut (identity,
or a 1x1 conv of the same stride) reads a pixel inside it. These are the theoretical fields:
every pixel in one can change the unit, not all equally (Luo et al. 2016's effective receptive
field is smaller).
"""

import dataclasses

from ctxfuse_jax.models.layers import Backbone, Footprint


@dataclasses.dataclass(frozen=True)
class ReceptiveField:
    """The input pixels a stage's units read, along each axis (all the zoo's layers are square)."""

    size: int  # pixels each unit reads
    jump: int  # pixels between neighbouring units' windows: the stage's total stride
    start: int  # first pixel of unit 0's window; negative where it reaches into the padding

    def then(self, layer: Footprint) -> 'ReceptiveField':
        """The field of `layer` applied to this one's units."""
        return ReceptiveField(self.size + (layer.kernel - 1) * self.jump, self.jump * layer.stride,
                              self.start - layer.padding * self.jump)

    def window(self, index: int) -> range:
        """The input pixels unit `index` reads, along one axis (those outside the image included)."""
        first = self.start + index * self.jump
        return range(first, first + self.size)


PIXEL = ReceptiveField(size=1, jump=1, start=0)


def receptive_field(model: Backbone, stage: str) -> ReceptiveField:
    """The receptive field of the output of `model`'s stage `stage` (a `stop_at` name).

    Raises ValueError for a stage whose field follows the input size (adaptive pooling, dense
    layers) or that the model does not describe, naming the stages it has fields for.
    """
    field, described = PIXEL, model.stage_footprints()
    for name, layers in described:
        for layer in layers:
            field = field.then(layer)
        if name == stage:
            return field
    fixed = [name for name, _ in described]
    stages = [name for name, _ in model.stages(train=False)]
    if stage not in stages:
        raise ValueError(f'{type(model).__name__} has no stage {stage!r}; its stages are {stages}')
    raise ValueError(f"{type(model).__name__}'s stage {stage!r} has no receptive field of fixed "
                     f'size (pooled adaptively, dense, or not described); stages with one: {fixed}')
