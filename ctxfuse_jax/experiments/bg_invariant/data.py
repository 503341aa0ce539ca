"""Seed 002's data: objects photographed "in a studio" (a plain background), with their true masks.

Digits (the embedded scikit-learn digits, TFDS mnist / fashion_mnist) are white on black already.
The embedded pictogram objects are put on black behind their exact masks for training and for
Table 1; their own scenes stay as the test set of the background-reliance evaluator (seed 004),
so a studio-trained model meets real backgrounds there.
"""

import dataclasses

import ml_collections
import numpy as np

from ctxfuse_jax.data import pipeline
from ctxfuse_jax.data.sources import Labelled, load_labelled
from ctxfuse_jax.degrade import patterns


@dataclasses.dataclass(frozen=True)
class Part:
    """One dataset of the experiment: plain-background splits, and the scene test set where there is one."""

    name: str
    data: Labelled  # train and test on a plain background
    scenes: Labelled | None  # the objects in their scenes (embedded objects), else None

    @property
    def channels(self) -> int:
        return int(self.data.train.arrays["image"].shape[-1])

    @property
    def image_size(self) -> int:
        return int(self.data.train.arrays["image"].shape[1])


def on_black(split: pipeline.ArraySplit) -> pipeline.ArraySplit:
    """The split's images with every pixel outside the true mask set to 0."""
    arrays = dict(split.arrays)
    arrays["image"] = np.where(arrays["mask"] > 0, arrays["image"], 0).astype(np.uint8)
    return pipeline.ArraySplit(arrays)


def load_part(name: str, config: ml_collections.ConfigDict) -> Part:
    """The dataset `config.data` names; `config.plain_background` puts the objects on black."""
    labelled = load_labelled(config.data)
    if not config.plain_background:
        return Part(name, labelled, None)
    plain = dataclasses.replace(labelled, train=on_black(labelled.train), test=on_black(labelled.test))
    return Part(name, plain, labelled)


def texture_bank(names: tuple[str, ...], size: int, channels: int, count: int, seed: int) -> np.ndarray:
    """`count` random crops (uint8, (count, size, size, channels)) of the training textures: the
    real-texture baseline's backgrounds, drawn per example inside the train step."""
    return np.round(patterns.texture_crops(names, size, count, seed=seed, channels=channels) * 255).astype(np.uint8)
