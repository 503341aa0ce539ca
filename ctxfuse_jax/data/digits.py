"""Digits on a plain black background with their true foreground masks (seed 002's data).

"Training a CNN to be Background Invariant" trains on MNIST, whose background is plain black, and
tests on the same digits pasted on unseen backgrounds. That needs the digit's mask; three sources:

- `embedded_digits`: scikit-learn's `load_digits` (1797 8x8 digits, values 0..16, shipped inside
  the scikit-learn wheel, so it works offline with nothing to prepare), made MNIST-like: each
  digit's 8x8 grid is stretched over a `DIGIT_FRACTION` of the image (20 px at 28, MNIST's 20x20
  digit box), white on black, centred plus a seeded jitter of up to `MAX_JITTER_FRACTION` of the
  image (2 px at 28: from 11 px up, the outermost pixels stay black). It is upscaled bilinearly
  straight onto the black canvas (pixel centres aligned, black outside the grid): smooth like
  MNIST's anti-aliased strokes, where nearest-neighbour upscaling would leave 2.5-px blocks whose
  edges a CNN could learn as a cue. It cannot overshoot, so values stay in [0, 1] and the
  background stays exactly 0 (bicubic would ring into it). Strokes that touch the 8x8 grid's edge
  fade into the black over a pixel or two instead of being cut at the digit box, as they would be
  if a resized patch were pasted. Anti-aliasing only matters when shrinking (digits under 8 px:
  images of 10 px or less) and only there is it applied. The true mask is `image > MASK_THRESHOLD`.
- `tfds_digits("mnist" | "fashion_mnist")`: the TFDS datasets from a prepared `data_dir`; nothing is
  downloaded at run time. Their mask is `image > 0`, the authors' heuristic for MNIST
  (rpmcruz/background-invariance): MNIST's background is exactly 0, so every inked pixel is
  foreground. Fashion-MNIST gets the same rule; its background is 0 too, but any garment pixel
  that is 0 falls outside the mask.

Splits hold `image` uint8 (N, S, S, 1), `label` int32, `mask` uint8 (N, S, S, 1) in {0, 1} and
`bbox` float32 normalised [ymin, xmin, ymax, xmax] at pixel edges: the tight box of the mask
(the project's box convention, see `degrade.regions.pixel_bounds`); an empty mask gets the
whole-image box [0, 0, 1, 1].
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ctxfuse_jax.data import tfds_read
from ctxfuse_jax.errors import DataError

if TYPE_CHECKING:  # pipeline imports TensorFlow; config checks read this module's constants quickly
    from ctxfuse_jax.data.pipeline import ArraySplit

DIGITS, MNIST, FASHION_MNIST = "digits", "mnist", "fashion_mnist"
TFDS_DATASETS = (MNIST, FASHION_MNIST)
NAMES = (DIGITS, *TFDS_DATASETS)

DEFAULT_IMAGE_SIZE = 28
MIN_IMAGE_SIZE = 8  # the digit is then 6 px, already smaller than the 8x8 source
DIGIT_FRACTION = 20 / 28  # MNIST: digits fit a 20x20 box centred in the 28x28 image
MAX_JITTER_FRACTION = 2 / 28  # up to 2 px off centre at 28 px, in each direction
SOURCE_LEVELS = 16  # load_digits' pixels count the inked pixels of a 4x4 block: 0..16
MASK_THRESHOLD = 12  # uint8; foreground where image > 12 (~0.05), see `digit_masks`
DEFAULT_TEST_FRACTION = 0.25
NUM_SOURCE_DIGITS = 1797
MIN_DIGITS_EXAMPLES = 20  # two per class: each class in both splits
TFDS_TEST_FRACTION = 1 / 7  # MNIST's 60k/10k; used to share `num_examples` between the splits
DIGIT_CLASS_NAMES = tuple(str(digit) for digit in range(10))

# Independent random streams of one seed, so the jitter of a digit does not depend on the subset.
_JITTER, _SUBSET, _SPLIT = range(3)
_CHUNK = 128  # digits rendered at once


def digit_size(image_size: int) -> int:
    """Side in pixels over which the digit's 8x8 grid is stretched."""
    return round(image_size * DIGIT_FRACTION)


def max_jitter(image_size: int) -> int:
    """The largest offset from the centre, in pixels: `MAX_JITTER_FRACTION` of the image, but never so
    far that the fade around the grid's edge (half a source pixel) reaches the outermost pixels."""
    size = digit_size(image_size)
    room = (image_size - size) // 2 - 0.5 * size / 8 - 0.5  # corner - fade >= centre of pixel 0
    return max(0, min(round(image_size * MAX_JITTER_FRACTION), int(np.floor(room))))


def _weights(corners: np.ndarray, scale: float, image_size: int, source_size: int) -> np.ndarray:
    """(N, S, source_size) bilinear weights along one axis: canvas pixel p of digit n from source pixel k.

    The source's pixel k covers canvas [corner + k * scale, corner + (k + 1) * scale); pixel p's
    centre p + 0.5 falls at source coordinate u (in source pixel centres) and takes the tent
    max(0, 1 - |u - k|). Outside the source there is black, so strokes at its edge fade out. When
    shrinking (scale < 1) the tent is widened to 1 / scale and lowered to keep its sum: anti-aliasing.
    """
    u = (np.arange(image_size) + 0.5 - np.asarray(corners, np.float64)[:, None]) / scale - 0.5
    narrow = min(1.0, scale)
    return narrow * np.maximum(0.0, 1.0 - np.abs(u[:, :, None] - np.arange(source_size)) * narrow)


def render(digits: np.ndarray, image_size: int, corners: np.ndarray) -> np.ndarray:
    """uint8 (N, S, S, 1) white-on-black: `load_digits` images (N, 8, 8) of 0..16, digit n's 8x8 grid
    stretched bilinearly over `digit_size(S)` px from its top-left canvas corner `corners[n]` (y, x)."""
    digits = np.asarray(digits, np.float64) / SOURCE_LEVELS
    corners = np.asarray(corners, np.float64)
    scale = digit_size(image_size) / digits.shape[1]
    images = np.empty((len(digits), image_size, image_size, 1), np.uint8)
    for start in range(0, len(digits), _CHUNK):  # bounded float64 memory at large sizes
        part = slice(start, start + _CHUNK)
        rows = _weights(corners[part, 0], scale, image_size, digits.shape[1])
        cols = _weights(corners[part, 1], scale, image_size, digits.shape[2])
        canvas = rows @ digits[part] @ np.swapaxes(cols, 1, 2)
        images[part, ..., 0] = np.round(np.clip(canvas, 0.0, 1.0) * 255.0)
    return images


def digit_corners(image_size: int, num: int, seed: int) -> np.ndarray:
    """int (num, 2) top-left corners (y, x): centred, plus a seeded jitter of up to `max_jitter` px."""
    jitter = max_jitter(image_size)
    offsets = _rng(seed, _JITTER).integers(-jitter, jitter + 1, size=(num, 2))
    return (image_size - digit_size(image_size)) // 2 + offsets


def digit_masks(images: np.ndarray, threshold: int = MASK_THRESHOLD) -> np.ndarray:
    """uint8 {0, 1} masks of uint8 images: 1 where the intensity is above `threshold`.

    For the embedded digits the threshold is `MASK_THRESHOLD` (12 of 255, ~5% ink): the faintest
    source level is 1/16 (16 of 255), and bilinear upscaling fades every stroke into the black
    around it; what is fainter than ~5% is that fade, not the digit. For MNIST it is 0 (`image > 0`,
    the authors' rule).
    """
    return (np.asarray(images) > threshold).astype(np.uint8)


def tight_boxes(masks: np.ndarray) -> np.ndarray:
    """float32 (N, 4) [ymin, xmin, ymax, xmax] at pixel edges of each (N, H, W, 1) mask's pixels.

    Pixel rows r0..r1 become [r0 / H, (r1 + 1) / H), which `degrade.regions.pixel_bounds` turns back
    into exactly those rows. An empty mask gets the whole image [0, 0, 1, 1].
    """
    masks = np.asarray(masks)[..., 0] > 0

    def edges(filled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First and one-past-last filled index along axis 1, over its length. With none filled,
        argmax is 0 from both ends: [0, 1], so an empty mask gets the whole image."""
        length = filled.shape[1]
        first = np.argmax(filled, axis=1)
        last = length - 1 - np.argmax(filled[:, ::-1], axis=1)
        return first / length, (last + 1) / length

    ymin, ymax = edges(masks.any(axis=2))
    xmin, xmax = edges(masks.any(axis=1))
    return np.stack([ymin, xmin, ymax, xmax], axis=1).astype(np.float32)


def _labelled_split(images: np.ndarray, labels: np.ndarray, threshold: int) -> ArraySplit:
    from ctxfuse_jax.data.pipeline import ArraySplit

    masks = digit_masks(images, threshold)
    return ArraySplit({"image": images, "label": np.asarray(labels, np.int32), "mask": masks,
                       "bbox": tight_boxes(masks)})


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def render_digits(image_size: int = DEFAULT_IMAGE_SIZE, *, seed: int = 0) -> ArraySplit:
    """All 1797 `load_digits` digits in scikit-learn's order, upscaled and jittered (see the module doc).

    Digit i's offset depends only on (seed, i), so every subset and split sees the same images.
    """
    from sklearn.datasets import load_digits

    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be at least {MIN_IMAGE_SIZE}, got {image_size}")
    source = load_digits()
    images = render(source.images, image_size, digit_corners(image_size, len(source.images), seed))
    return _labelled_split(images, source.target, MASK_THRESHOLD)


def stratified_subset(labels: np.ndarray, num_examples: int, seed: int) -> np.ndarray:
    """Sorted indices of `num_examples` examples, classes as balanced as they allow (round robin).

    Each class is shuffled; the first of every class come first, then the second of every class...
    """
    labels = np.asarray(labels)
    rng = _rng(seed, _SUBSET)
    rank = np.empty(labels.size, np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rank[members] = rng.permutation(members.size)
    order = np.lexsort((rng.random(labels.size), rank))  # by rank; ties in a random class order
    return np.sort(order[:num_examples])


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) sorted indices: round(test_fraction * n) of each class's n examples to test,
    drawn by a seeded permutation, but at least one and at most n - 1 where n >= 2."""
    labels = np.asarray(labels)
    rng = _rng(seed, _SPLIT)
    is_test = np.zeros(labels.size, bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = int(np.clip(round(test_fraction * members.size), min(1, members.size - 1), members.size - 1))
        is_test[rng.permutation(members)[:count]] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def embedded_digits(image_size: int = DEFAULT_IMAGE_SIZE, *, seed: int = 0, num_examples: int = 0,
                    test_fraction: float = DEFAULT_TEST_FRACTION) -> tuple[ArraySplit, ArraySplit]:
    """(train, test) of the embedded digits, split by class; deterministic given the seed.

    `num_examples`: 0 takes all 1797; otherwise that many (>= 20, so that every class has two and
    so appears in both splits), balanced over the classes. `test_fraction` of each class goes to test.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    if num_examples and not MIN_DIGITS_EXAMPLES <= num_examples <= NUM_SOURCE_DIGITS:
        raise ValueError(f"num_examples must be 0 (all {NUM_SOURCE_DIGITS}) or in "
                         f"[{MIN_DIGITS_EXAMPLES}, {NUM_SOURCE_DIGITS}], got {num_examples}")
    everything = render_digits(image_size, seed=seed)
    labels = everything.arrays["label"]
    if num_examples:
        everything = everything.subset(stratified_subset(labels, num_examples, seed))
        labels = everything.arrays["label"]
    train, test = stratified_split(labels, test_fraction, seed)
    return everything.subset(train), everything.subset(test)


def _check_tfds_name(name: str) -> None:
    if name not in TFDS_DATASETS:
        raise ValueError(f"unknown TFDS digits dataset {name!r}; choose one of {TFDS_DATASETS}")


def tfds_class_names(name: str, data_dir: str | None = None) -> tuple[str, ...]:
    """The label names TFDS gives `name` ('0'..'9' for mnist); read from its code, no data needed."""
    import tensorflow_datasets as tfds

    _check_tfds_name(name)
    return tuple(tfds.builder(name, data_dir=data_dir).info.features["label"].names)


def tfds_split_sizes(num_examples: int) -> tuple[int | None, int | None]:
    """(train, test) record counts read for `num_examples` (0: None, None, every record).

    MNIST's 6:1 ratio: round(num_examples / 7), but at least one, go to test, the rest to train.
    """
    if not num_examples:
        return None, None
    if num_examples < 2:
        raise ValueError(f"num_examples must be 0 (all) or at least 2 (one per split), got {num_examples}")
    num_test = max(1, round(num_examples * TFDS_TEST_FRACTION))
    return num_examples - num_test, num_test


def _read_tfds(name: str, split: str, count: int | None, image_size: int,
               data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf
    import tensorflow_datasets as tfds

    dataset = tfds_read.load(name, split, data_dir, count=count,
                             note="The embedded `digits` dataset needs no preparation.")

    def standard(batch):
        image = batch["image"]
        if image_size != DEFAULT_IMAGE_SIZE:
            image = tf.image.resize(image, (image_size, image_size), method="bilinear", antialias=True)
            image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        return image, batch["label"]

    images, labels = [], []
    for image, label in tfds.as_numpy(dataset.batch(8192).map(standard)):
        images.append(image)
        labels.append(label)
    if not images:
        raise DataError(f"TFDS dataset '{name}' split '{split}' under {data_dir or 'the default data_dir'} "
                        "holds no records")
    return np.concatenate(images), np.concatenate(labels)


def tfds_digits(name: str, image_size: int = DEFAULT_IMAGE_SIZE, *, num_examples: int = 0,
                data_dir: str | None = None) -> tuple[ArraySplit, ArraySplit]:
    """(train, test) of TFDS `mnist` or `fashion_mnist` (TFDS's own splits), mask = image > 0.

    `num_examples` > 0 reads only the first records of each split in file order (TFDS shuffled them
    when preparing): see `tfds_split_sizes`. Images other than 28 px are resized (bilinear,
    anti-aliased) before the mask is taken, so mask == (image > 0) holds at every size.
    Raises `DataError`, saying how to prepare it, when `name` is not prepared under `data_dir`.
    """
    _check_tfds_name(name)
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    counts = tfds_split_sizes(num_examples)
    return tuple(_labelled_split(*_read_tfds(name, split, count, image_size, data_dir), threshold=0)
                 for split, count in zip(("train", "test"), counts))


def class_names(name: str, data_dir: str | None = None) -> tuple[str, ...]:
    """Label names of any of `NAMES`."""
    return DIGIT_CLASS_NAMES if name == DIGITS else tfds_class_names(name, data_dir)

