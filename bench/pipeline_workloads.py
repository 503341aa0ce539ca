"""Input-pipeline workloads: the project's own batching, host->device transfer and TFDS reading,
and the training loop's body fed by them or by one resident batch (`bench.input_pipeline`).

64 px reads the embedded dataset the default fusion job uses (prepared in the TFDS data dir);
224 px stands in for pruned COCO after `materialize` (same fields, random pixels: COCO is not
on this machine), and for COCO's JPEGs (640 x 480 photos, encoded here) to time the one-off read.
"""

import io
from typing import Iterator

import jax
import numpy as np
import skimage.data
import tensorflow as tf
from PIL import Image

from bench.harness import Step
from bench.jax_workloads import classifier_game, fusion_game, train_loop
from configs import fusion as fusion_config
from ctxfuse_jax.data import pipeline
from ctxfuse_jax.data.embedded import load_embedded
from ctxfuse_jax.experiments.classification import classification_update
from ctxfuse_jax.train import sharding

NUM_CLASSES = 24  # The embedded objects' classes, as COCO's pruned subset.
SYNTHETIC_EXAMPLES = 640  # Ten batches of 64 per epoch of the 224 px stand-in.
COCO_PHOTO = (480, 640)  # A typical COCO image (height, width).


def _embedded_split(name: str) -> pipeline.ArraySplit:
    """The default fusion job's `objects` split at 64 px, read from TFDS as `data.sources` reads it."""
    return pipeline.materialize(load_embedded("objects", name, image_size=64), pipeline.STANDARD_KEYS)


def _synthetic_split(size: int, examples: int = SYNTHETIC_EXAMPLES) -> pipeline.ArraySplit:
    """COCO's in-memory split shape at `size` px: uint8 images and masks, labels, boxes."""
    rng = np.random.default_rng(0)
    return pipeline.ArraySplit({
        "image": rng.integers(0, 256, (examples, size, size, 3), np.uint8),
        "label": rng.integers(0, NUM_CLASSES, examples), "supercategory": rng.integers(0, 12, examples),
        "scene": np.full(examples, -1), "bbox": rng.uniform(size=(examples, 4)).astype(np.float32),
        "mask": rng.integers(0, 2, (examples, size, size, 1), np.uint8)})


def _train_split(size: int) -> pipeline.ArraySplit:
    return _embedded_split("train") if size == 64 else _synthetic_split(size)


def _device_batches(split: pipeline.ArraySplit, batch: int) -> Iterator[dict[str, jax.Array]]:
    """What the training loop feeds its step: `train_batches`, then `sharding.put_batch`."""
    mesh = sharding.make_mesh()
    return (sharding.put_batch(b, mesh) for b in pipeline.train_batches(split, batch, seed=0))


def host_batches(size: int, batch: int, batches: int) -> Step:
    """`batches` host batches from the in-memory split (numpy gathers of every field)."""
    source = pipeline.train_batches(_train_split(size), batch, seed=0)
    return lambda: [next(source) for _ in range(batches)]


def device_batches(size: int, batch: int, batches: int) -> Step:
    """As `host_batches`, each then put on the device mesh (the loop's host->device transfer)."""
    source = _device_batches(_train_split(size), batch)
    return lambda: jax.block_until_ready([next(source) for _ in range(batches)])


def tfds_materialize() -> Step:
    """Reads and decodes the embedded `objects` test split from TFDS into memory (once per run)."""
    return lambda: _embedded_split("test")


def _coco_like_jpegs(count: int) -> list[bytes]:
    """`count` JPEG-encoded photo crops of COCO's usual size, from scikit-image's bundled photos."""
    photos = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket()]
    encoded = []
    for i in range(count):
        photo = Image.fromarray(photos[i % len(photos)]).resize(COCO_PHOTO[::-1]).rotate(i % 11)
        buffer = io.BytesIO()
        photo.save(buffer, format="JPEG", quality=90)
        encoded.append(buffer.getvalue())
    return encoded


def jpeg_materialize(size: int, count: int) -> Step:
    """`materialize` of `count` COCO-sized JPEGs, decoded and resized once to `size` px (the COCO path)."""
    encoded = tf.constant(_coco_like_jpegs(count))
    dataset = tf.data.Dataset.from_tensor_slices({"image": encoded}).map(
        lambda ex: {"image": tf.io.decode_jpeg(ex["image"], channels=3)})
    return lambda: pipeline.materialize(dataset, ("image",), image_size=size)


def loop_steps(model: str, preset: str, batch: int, feed: bool, steps: int) -> Step:
    """`steps` iterations of the training loop's body, blocking once at the end, fed by the
    pipeline (`feed`) or by one resident batch. Sizes, augmentation and update are the fusion
    config's (`configs/fusion.py:preset`): `resnet18` as its FG stream pretraining, `fusion` as its
    Joint head step (the fastest step of the job, so the one that asks most of the pipeline)."""
    config = fusion_config.get_config(preset)
    batches = _device_batches(_train_split(config.data.image_size), batch)
    resident = next(batches)
    image = pipeline.to_unit_float(resident["image"])
    if model == "resnet18":
        game = classifier_game("resnet18", "auto", image, config.streams.width, num_classes=NUM_CLASSES)
        train_config = config.streams.fg.train
    else:
        game = fusion_game("auto", image, config.streams.width, config.heads.fusion_features, NUM_CLASSES)
        train_config = config.heads.train
    update = classification_update(game.predict, game.moving, train_config)
    return train_loop(game, update, (lambda: next(batches)) if feed else (lambda: resident), steps)
