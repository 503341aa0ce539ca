"""Seed 001's real data (blur study) from TFDS: ImageNet 2012 and the Oxford-IIIT Pet segmentation set.

"Examining the impact of blur on recognition by convolutional networks" stores every image at one
canonical scale (short side 384) and blurs it there, before rescaling to the network's scale. Both
loaders therefore bring each image to that scale: resized with its aspect kept (bilinear,
anti-aliased) so that its SHORT side is `image_size`, then centre-cropped to `image_size` squared, so
a split is one uint8 array (N, S, S, 3).

- `imagenet2012` (classification): TFDS `imagenet2012`, `train` for fine-tuning and `validation` as
  the test split; 1000 classes named by TFDS (WordNet ids, 'n01440764' ...); no masks. ImageNet
  cannot be downloaded by TFDS: its tars are put in `<data_dir>/downloads/manual` by hand.
- `oxford_iiit_pet` (segmentation, "object class vs background" per pixel): TFDS `oxford_iiit_pet`,
  splits `train` (trainval) and `test`; 37 breeds, plus `mask` uint8 (S, S, 1): 1 on the pet, 0 on the
  background. The trimap has three values, 1 pet, 2 background, 3 border (the unclassified band
  along the pet's outline); the border counts as pet (`PET_VALUES`), so the mask is binary like the
  embedded data's, and the pet's region includes its outline. The mask goes through the image's
  own geometry (same resized size, same crop) with nearest neighbour, so it stays binary and aligned.
  Supercategories are the two species, in TFDS's names ('Cat', 'Dog'): the Oxford dataset spells cat
  breeds with a capital letter and dog breeds in lower case, and that is the map used.

`num_examples` (0 = all) caps each split: the first N records of each in file order (TFDS shuffled
them once when preparing), read as the TFDS slice `split[:N]`; a cap beyond a split's size takes it
whole. The full ImageNet sets do NOT fit in memory at 384 px (442 KB an image: 22 GB for the 50k
validation images, 566 GB for the 1.28M train images), so caps are expected; pets (7.3k images,
4.3 GB at 384 px with masks) fit.

Nothing is downloaded at run time: a dataset that is not prepared under `data_dir` raises a
`DataError` that says how to prepare it (`tfds_read`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ctxfuse_jax.data import tfds_read
from ctxfuse_jax.errors import DataError

if TYPE_CHECKING:  # pipeline imports TensorFlow; config checks read this module's constants quickly
    import tensorflow as tf

    from ctxfuse_jax.data.pipeline import ArraySplit

IMAGENET, PETS = "imagenet2012", "oxford_iiit_pet"
NAMES = (IMAGENET, PETS)
SPLITS = {IMAGENET: ("train", "validation"), PETS: ("train", "test")}  # (train, test) of each
PET, BACKGROUND, BORDER = 1, 2, 3  # the Oxford trimap's values
PET_VALUES = (PET, BORDER)  # the border band is part of the pet: a binary mask
_BATCH = 64  # images decoded and copied to the host at once


def _imagenet_instructions(directory: str) -> str:
    return (f"ImageNet cannot be downloaded by TFDS: register at https://image-net.org/download-images, download "
            f"ILSVRC2012_img_train.tar (~138 GB, for fine-tuning) and ILSVRC2012_img_val.tar (~6.3 GB, the test "
            f"split), put them in {directory}/downloads/manual and run `tfds build {IMAGENET} --data_dir={directory}` "
            f"(only the splits whose tars are there are built), then pass data_dir (or set TFDS_DATA_DIR).")


def _check_name(name: str) -> None:
    if name not in NAMES:
        raise ValueError(f"unknown blur-study TFDS dataset {name!r}; choose one of {NAMES}")


def square(image: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """(resized height, resized width, crop top, crop left) of `image` (H, W, C) brought to `size`.

    The short side becomes exactly `size`, the long one round(long * size / short) (halves up), and
    the crop keeps the centre, the extra pixel of an odd margin going to the bottom / right.
    """
    import tensorflow as tf

    shape = tf.cast(tf.shape(image)[:2], tf.float64)
    resized = tf.cast(tf.floor(shape * size / tf.reduce_min(shape) + 0.5), tf.int32)
    resized = tf.maximum(resized, size)  # the short side is size exactly; never below it
    top, left = tf.unstack((resized - size) // 2)
    return resized[0], resized[1], top, left


def _standard(example: dict[str, tf.Tensor], size: int, with_mask: bool) -> dict[str, tf.Tensor]:
    import tensorflow as tf

    image = example["image"]
    height, width, top, left = square(image, size)
    resized = tf.image.resize(image, tf.stack([height, width]), method="bilinear", antialias=True)
    resized = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
    out = {"image": tf.ensure_shape(resized[top:top + size, left:left + size], (size, size, 3)),
           "label": tf.cast(example["label"], tf.int32)}
    if with_mask:
        trimap = example["segmentation_mask"]
        pet = tf.cast(tf.reduce_any(tf.equal(trimap, tf.constant(PET_VALUES, trimap.dtype)), -1, keepdims=True),
                      tf.uint8)
        # To the image's resized size, not the mask's own: in TFDS the two always agree (and then this
        # is the same geometry); under mock data they differ, and the mask still covers the image.
        pet = tf.image.resize(pet, tf.stack([height, width]), method="nearest")
        out["mask"] = tf.ensure_shape(pet[top:top + size, left:left + size], (size, size, 1))
    return out


def _collect(dataset: tf.data.Dataset, name: str, split: str) -> dict[str, np.ndarray]:
    """The dataset's examples as arrays, written into arrays allocated once when the count is known
    (TFDS knows it), so a split of many GB is not held twice."""
    import tensorflow as tf

    total = int(dataset.cardinality())
    batches = dataset.batch(_BATCH).prefetch(tf.data.AUTOTUNE).as_numpy_iterator()
    if total < 0:  # unknown: gather the batches, then join them
        parts = list(batches)
        if not parts:
            return {}
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    arrays: dict[str, np.ndarray] = {}
    filled = 0
    for batch in batches:
        if not arrays:
            arrays = {key: np.empty((total, *value.shape[1:]), value.dtype) for key, value in batch.items()}
        num = len(batch["label"])
        for key, value in batch.items():
            arrays[key][filled:filled + num] = value
        filled += num
    if filled != total:
        raise DataError(f"TFDS dataset '{name}' split '{split}' gave {filled} records, {total} announced")
    return arrays


def _read(name: str, split: str, image_size: int, num_examples: int, data_dir: str | None) -> ArraySplit:
    import tensorflow as tf

    from ctxfuse_jax.data.pipeline import ArraySplit

    prepare = _imagenet_instructions(data_dir or "DIR") if name == IMAGENET else None
    dataset = tfds_read.load(name, split, data_dir, count=num_examples or None, prepare=prepare)
    with_mask = name == PETS
    dataset = dataset.map(lambda example: _standard(example, image_size, with_mask),
                          num_parallel_calls=tf.data.AUTOTUNE)
    arrays = _collect(dataset, name, split)
    if not arrays:
        raise DataError(f"TFDS dataset '{name}' split '{split}' under {data_dir or 'the default data_dir'} "
                        "holds no records")
    return ArraySplit(arrays)


def _splits(name: str, image_size: int, num_examples: int, data_dir: str | None) -> tuple[ArraySplit, ArraySplit]:
    _check_name(name)
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if num_examples < 0:
        raise ValueError(f"num_examples must be 0 (all) or positive, got {num_examples}")
    train, test = SPLITS[name]
    return (_read(name, train, image_size, num_examples, data_dir),
            _read(name, test, image_size, num_examples, data_dir))


def imagenet2012(image_size: int = 384, *, num_examples: int = 0,
                 data_dir: str | None = None) -> tuple[ArraySplit, ArraySplit]:
    """(train, validation) of TFDS `imagenet2012` at `image_size` (short side, centre crop): `image`
    uint8 (N, S, S, 3), `label` int32 in [0, 1000). `num_examples` caps each split (0 = all, which
    does not fit in memory at 384 px: see the module doc). Raises `DataError` when not prepared."""
    return _splits(IMAGENET, image_size, num_examples, data_dir)


def oxford_iiit_pet(image_size: int = 384, *, num_examples: int = 0,
                    data_dir: str | None = None) -> tuple[ArraySplit, ArraySplit]:
    """(train, test) of TFDS `oxford_iiit_pet` at `image_size` (short side, centre crop): `image` uint8
    (N, S, S, 3), `label` int32 in [0, 37) (breed), `mask` uint8 (N, S, S, 1), 1 on the pet and its
    border band, 0 on the background. `num_examples` caps each split (0 = all). Raises `DataError`
    when not prepared."""
    return _splits(PETS, image_size, num_examples, data_dir)


LOADERS = {IMAGENET: imagenet2012, PETS: oxford_iiit_pet}


def class_names(name: str, data_dir: str | None = None) -> tuple[str, ...]:
    """TFDS's label names of `name`; read from its code, no data needed."""
    import tensorflow_datasets as tfds

    _check_name(name)
    return tuple(tfds.builder(name, data_dir=data_dir).info.features["label"].names)


def supercategories(name: str, data_dir: str | None = None) -> tuple[tuple[str, ...], np.ndarray]:
    """(supercategory names, class index -> supercategory index): the species ('Cat', 'Dog') of the pet
    breeds, by the Oxford capitalisation rule (cat breeds capitalised); none for ImageNet."""
    import tensorflow_datasets as tfds

    _check_name(name)
    if name == IMAGENET:
        return (), np.zeros(0, int)
    species = tuple(tfds.builder(name, data_dir=data_dir).info.features["species"].names)
    cat, dog = species.index("Cat"), species.index("Dog")
    return species, np.array([cat if breed[0].isupper() else dog for breed in class_names(name, data_dir)])
