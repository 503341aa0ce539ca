"""ImageNet-9-style data: training sets of a background variant, and the released test folders.

On the embedded dataset (or pruned COCO) every variant is built from the images, their masks and
boxes (`degrade.background_variant`): training sets on the host once per model, test variants on
device by the evaluator (`evaluate.conditions.variant_family`), the same definition pixel for
pixel. The backgrounds-challenge release instead ships each test variant as its own folder
(`data.image_folders`); each is then scored as it is stored.
"""

import dataclasses

import numpy as np

from ctxfuse_jax import degrade
from ctxfuse_jax.data import image_folders
from ctxfuse_jax.data.pipeline import ArraySplit
from ctxfuse_jax.data.sources import Labelled
from ctxfuse_jax.errors import DataError
from ctxfuse_jax.evaluate.conditions import BACKGROUNDS

RELEASE = "in9_folders"  # data.name of the backgrounds-challenge folders (`config_checks.IN9_RELEASE`)
# The paper's names of the variants (`degrade.VARIANTS`), for tables and figures.
NAMES = {"original": "Original", "only_bg_b": "Only-BG-B", "only_bg_t": "Only-BG-T", "no_fg": "No-FG",
         "only_fg": "Only-FG", "mixed_same": "Mixed-Same", "mixed_rand": "Mixed-Rand", "mixed_next": "Mixed-Next"}


def has_background_strip(split: ArraySplit) -> np.ndarray:
    """Which images keep background beside their box (above, below, left or right): only those have
    an Only-BG-T (a COCO box may cover the whole image; the embedded objects never do)."""
    height, width = split.arrays["image"].shape[1:3]
    y0, x0, y1, x1 = np.asarray(degrade.regions.pixel_bounds(split.arrays["bbox"], height, width)).T
    return (y0 > 0) | (y1 < height) | (x0 > 0) | (x1 < width)


def usable(data: Labelled) -> tuple[Labelled, dict[str, int]]:
    """`data` without the images that have no background to tile, and how many each split lost."""
    kept = {name: has_background_strip(split) for name, split in (("train", data.train), ("test", data.test))}
    for name, mask in kept.items():
        if not mask.any():
            raise DataError(f"no {name} image keeps any background beside its box: the IN-9 variants need some")
    return (dataclasses.replace(data, train=data.train.subset(np.flatnonzero(kept["train"])),
                                test=data.test.subset(np.flatnonzero(kept["test"]))),
            {name: int((~mask).sum()) for name, mask in kept.items()})


def variant_split(split: ArraySplit, variant: str, num_classes: int, seed: int) -> ArraySplit:
    """`split` with its images replaced by their `variant` (uint8), mixed_* donors drawn by `seed`.

    Every variant copies pixels (never blends), so the uint8 round trip is exact.
    """
    arrays = split.arrays
    images = degrade.background_variant(variant, arrays["image"].astype(np.float32) / 255.0, arrays["label"],
                                        arrays["bbox"], arrays["mask"], seed=seed, num_classes=num_classes)
    return ArraySplit({**arrays, "image": np.round(images * 255.0).astype(np.uint8)})


def release_variants(root: str, variants: tuple[str, ...], image_size: int) -> dict[str, ArraySplit]:
    """Each released test variant's folder (`<root>/<variant>/val/<class>/...`) as a split.

    Batches of every split have the challenge's fields (an unused all-background `mask` here), so one
    compiled program scores the variants and the challenge.
    """
    splits = {}
    for variant in variants:
        arrays = image_folders.load_variant(root, variant, image_size).arrays
        mask = np.zeros((*arrays["image"].shape[:3], 1), np.uint8)
        splits[variant] = ArraySplit({"image": arrays["image"], "label": arrays["label"], "mask": mask})
    return splits


def release_challenge(root: str, image_size: int) -> tuple[ArraySplit, dict[str, np.ndarray], np.ndarray]:
    """The challenge's inputs from the release: original images with their foreground masks, the
    bank of Only-BG-T backgrounds, and the backgrounds' labels."""
    original = image_folders.load_variant(root, "original", image_size)
    masks = image_folders.load_masks(root, "val", image_size)
    missing = [f for f in original.arrays["file"] if image_folders.mask_key(f) not in masks]
    if missing:
        raise DataError(f"{root}/fg_mask/val has no mask for {len(missing)} original images (e.g. {missing[0]}); "
                        "the challenge pastes foregrounds by their masks: use the complete release")
    mask = np.stack([masks[image_folders.mask_key(f)] for f in original.arrays["file"]])
    backgrounds = image_folders.load_variant(root, "only_bg_t", image_size)
    return (ArraySplit({"image": original.arrays["image"], "label": original.arrays["label"], "mask": mask}),
            {BACKGROUNDS: backgrounds.arrays["image"]}, backgrounds.arrays["label"])
