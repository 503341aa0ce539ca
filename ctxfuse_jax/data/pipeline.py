"""Host-side batching from splits held in memory, with exact resume and exact evaluation.

The embedded dataset and pruned COCO fit in host memory, so a split is read from TFDS once into
numpy arrays. Train batch `s` is then a pure function of (seed, s): a resumed run sees exactly the
batches it would have seen, at no cost. Eval pads the last batch and marks the padding invalid, so
every example is scored exactly once.
"""

import dataclasses
from typing import Iterator, Mapping, Sequence

import jax
import numpy as np
import tensorflow as tf

STANDARD_KEYS = ("image", "label", "supercategory", "scene", "bbox", "mask")


@dataclasses.dataclass(frozen=True)
class ArraySplit:
    """A split as aligned numpy arrays: `image` uint8 NHWC, `label` int, and any other fields."""

    arrays: Mapping[str, np.ndarray]

    def __post_init__(self):
        sizes = {k: len(v) for k, v in self.arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"split fields have different lengths: {sizes}")
        if not len(self):
            raise ValueError("the split is empty")

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def subset(self, indices: np.ndarray) -> "ArraySplit":
        return ArraySplit({k: v[indices] for k, v in self.arrays.items()})


def materialize(dataset: tf.data.Dataset, keys: Sequence[str] = STANDARD_KEYS,
                image_size: int | None = None) -> ArraySplit:
    """Reads a tf.data split of standard example dicts into memory, resizing images and masks."""
    missing = set(keys) - set(dataset.element_spec)
    if missing:
        raise KeyError(f"dataset lacks fields {sorted(missing)}; it has {sorted(dataset.element_spec)}")

    def select(example):
        example = {k: example[k] for k in keys}
        if image_size is not None:
            for k in ("image", "mask"):
                if k in example:
                    example[k] = _resize(example[k], image_size)
        return example

    columns: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for example in dataset.map(select, num_parallel_calls=tf.data.AUTOTUNE).as_numpy_iterator():
        for k in keys:
            columns[k].append(example[k])
    if not columns[keys[0]]:
        raise ValueError("the split is empty: nothing to read")
    return ArraySplit({k: np.stack(v) for k, v in columns.items()})


def _resize(image: tf.Tensor, size: int) -> tf.Tensor:
    """Nearest for masks keeps them binary; area-style antialiased bilinear for photos."""
    method = "nearest" if image.shape[-1] == 1 else "bilinear"
    resized = tf.image.resize(image, (size, size), method=method, antialias=method == "bilinear")
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), image.dtype)


def steps_per_epoch(split_size: int, global_batch_size: int) -> int:
    """Training drops the last partial batch of each epoch; at least one full batch is required."""
    steps = split_size // global_batch_size
    if steps == 0:
        raise ValueError(f"split of {split_size} examples is smaller than one batch of {global_batch_size}")
    return steps


def train_batches(split: ArraySplit, global_batch_size: int, seed: int, start_step: int = 0,
                  ) -> Iterator[dict[str, np.ndarray]]:
    """This host's part of batch `start_step`, `start_step + 1`, ...; epochs reshuffle by seed."""
    per_epoch = steps_per_epoch(len(split), global_batch_size)
    local = global_batch_size // jax.process_count()
    offset = jax.process_index() * local
    step = start_step
    while True:
        epoch, first = divmod(step, per_epoch)
        order = np.random.default_rng([seed, epoch]).permutation(len(split))
        for index in range(first, per_epoch):
            chosen = order[index * global_batch_size + offset:][:local]
            yield {k: v[chosen] for k, v in split.arrays.items()}
        step = (epoch + 1) * per_epoch


def eval_batches(split: ArraySplit, global_batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """This host's part of every eval batch, the last one padded and marked by `valid`."""
    local = global_batch_size // jax.process_count()
    offset = jax.process_index() * local
    for start in range(0, len(split), global_batch_size):
        chosen = np.arange(start + offset, start + offset + local)
        valid = chosen < len(split)
        chosen = np.where(valid, chosen, 0)
        yield {**{k: v[chosen] for k, v in split.arrays.items()}, "valid": valid}


def to_unit_float(images: jax.Array) -> jax.Array:
    """uint8 images travel to the device (4x less transfer) and become float32 [0, 1] there."""
    return images.astype(np.float32) / 255.0
