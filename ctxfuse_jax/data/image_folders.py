"""The backgrounds-challenge release (ImageNet-9, Xiao et al. 2021) read from its folders into memory.

MadryLab/backgrounds_challenge ships each IN-9 variant as `<root>/<variant>/val/<class>/*.JPEG` and the
foreground masks as `<root>/fg_mask/val/<class>/<stem>.npy`, one per `original` image with its stem.
Their scripts read a variant with an ImageFolder (`tools/datasets.py`): label i is the i-th class folder
in sorted order. `challenge_eval.py` takes the class names from `sorted(os.listdir(fg_mask/val))` and
pairs mask `x.npy` with `original/val/<class>/x.JPEG`; `mask_key` makes that pairing. Added here: every
variant present must have the same class folders, since otherwise one label would name two classes.
"""

import os

import numpy as np
import tensorflow as tf

from ctxfuse_jax.data import pipeline
from ctxfuse_jax.errors import DataError

VARIANT_FOLDERS = ("original", "only_bg_b", "only_bg_t", "no_fg", "only_fg", "mixed_same", "mixed_rand",
                   "mixed_next")
MASK_FOLDER = "fg_mask"
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")  # compared in lower case, so the release's `.JPEG` too
_HOW_TO_GET = ("download backgrounds_challenge_data from github.com/MadryLab/backgrounds_challenge releases "
               "and pass its folder as config.data.root")


def class_names(root: str, split: str = "val") -> tuple[str, ...]:
    """The sorted class folders, which every variant (and `fg_mask`) present must share: label i is name i."""
    if not os.path.isdir(root):
        raise DataError(f"IN-9 data root {root} does not exist: {_HOW_TO_GET}")
    found = {folder: _subfolders(os.path.join(root, folder, split))
             for folder in VARIANT_FOLDERS + (MASK_FOLDER,) if os.path.isdir(os.path.join(root, folder, split))}
    if not found:
        example = os.path.join(root, "original", split)
        raise DataError(f"IN-9 data root {root} has no variant folder such as {example}: {_HOW_TO_GET}")
    (reference, names), *others = found.items()
    for folder, other in others:
        if other != names:
            missing, extra = sorted(set(names) - set(other)), sorted(set(other) - set(names))
            raise DataError(f"{os.path.join(root, folder, split)} has other class folders than {reference}: "
                            f"missing {missing}, extra {extra}; every variant must have the same classes")
    return names


def load_variant(root: str, variant: str, image_size: int, split: str = "val") -> pipeline.ArraySplit:
    """One variant as `image` uint8 NHWC, `label` int32 and `file` (`<class>/<name>`, to match rows across
    variants), sorted by class then file name; images resized like `pipeline.materialize` resizes them."""
    if variant not in VARIANT_FOLDERS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANT_FOLDERS}")
    names = class_names(root, split)
    folder = _existing(os.path.join(root, variant, split))
    rows = [(f"{name}/{file}", label) for label, name in enumerate(names)
            for file in _files(os.path.join(folder, name), IMAGE_EXTENSIONS)]
    images = _decode([os.path.join(folder, file) for file, _ in rows], image_size)
    return pipeline.ArraySplit({"image": images, "label": np.array([label for _, label in rows], np.int32),
                                "file": np.array([file for file, _ in rows])})


def mask_key(file: str) -> str:
    """The `load_masks` key of an image's `file`: its class folder and file name without the extension."""
    return os.path.splitext(file)[0]


def load_masks(root: str, split: str, image_size: int) -> dict[str, np.ndarray]:
    """The foreground masks by `mask_key`, each (image_size, image_size, 1) uint8: 1 where the .npy is > 0.

    The files are untrusted: they are read without pickle, and only a 2-D (H, W) or 3-D (H, W, C) numeric
    array is taken (a pixel of a 3-D one is foreground if any channel is). Nearest resizing keeps them binary.
    """
    names = class_names(root, split)
    folder = _existing(os.path.join(root, MASK_FOLDER, split))
    masks = {}
    for name in names:
        for file in _files(os.path.join(folder, name), (".npy",)):
            mask = _read_mask(os.path.join(folder, name, file))
            masks[mask_key(f"{name}/{file}")] = pipeline._resize(tf.constant(mask), image_size).numpy()
    return masks


def _existing(folder: str) -> str:
    if not os.path.isdir(folder):
        raise DataError(f"IN-9 folder {folder} does not exist: {_HOW_TO_GET}")
    return folder


def _subfolders(folder: str) -> tuple[str, ...]:
    names = tuple(sorted(e.name for e in os.scandir(folder) if e.is_dir()))
    if not names:
        raise DataError(f"IN-9 folder {folder} has no class folders: {_HOW_TO_GET}")
    return names


def _files(folder: str, extensions: tuple[str, ...]) -> list[str]:
    names = sorted(e.name for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(extensions))
    if not names:
        raise DataError(f"class folder {folder} has no {'/'.join(extensions)} files: {_HOW_TO_GET}")
    return names


def _decode(paths: list[str], image_size: int) -> np.ndarray:
    """Decodes in parallel with tf.data; tf.data's error names no file, so a failure is traced to its file."""
    def read(path: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return pipeline._resize(image, image_size)

    dataset = tf.data.Dataset.from_tensor_slices(paths).map(read, num_parallel_calls=tf.data.AUTOTUNE)
    try:
        return np.stack(list(dataset.as_numpy_iterator()))
    except tf.errors.InvalidArgumentError as error:
        for path in paths:
            try:
                read(tf.constant(path))
            except tf.errors.InvalidArgumentError:
                raise DataError(f"image {path} cannot be decoded (truncated or not an image): "
                                "replace it from the release or remove it") from error
        raise


def _read_mask(path: str) -> np.ndarray:
    """(H, W, 1) uint8 0/1 from an untrusted .npy file, or a DataError naming the file."""
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as error:
        raise DataError(f"mask {path} is not a numeric .npy array readable without pickle ({error})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        array.close()
        raise DataError(f"mask {path} is an .npz archive, not one .npy array")
    if array.ndim not in (2, 3) or array.dtype.kind not in "biuf" or not array.size:
        raise DataError(f"mask {path} holds a {array.dtype} array of shape {array.shape}; "
                        "expected a non-empty numeric (H, W) or (H, W, C) array")
    foreground = array > 0
    if foreground.ndim == 3:
        foreground = foreground.any(axis=-1)
    return foreground[..., None].astype(np.uint8)
