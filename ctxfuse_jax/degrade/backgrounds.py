"""ImageNet-9 background variants (seed 004, Xiao et al. 2021), built on the host.

From a pool of images with labels, foreground boxes and (optionally) foreground masks:

  original     the image
  only_fg      the foreground (mask) on black
  no_fg        the image with the foreground (mask) blacked out
  only_bg_b    the image with the foreground box blacked out
  only_bg_t    the box filled by tiling the largest background strip beside it (above,
               below, left or right of the box), repeated from the box's top-left corner
  mixed_same   the foreground pasted on the only_bg_t of another image of the same class
  mixed_rand   ... of another image of any class
  mixed_next   ... of an image of the next class (label + 1 mod the number of classes)

Masks default to the boxes; masks count as foreground where > 0.5, so pixels are copied,
never blended. Donors are drawn with `np.random.default_rng(seed)`: same seed, same images.
Empty boxes, boxes outside the image, and (where a strip is tiled) boxes leaving no strip
raise a ValueError.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from jax.typing import ArrayLike

from ctxfuse_jax.degrade import regions

VARIANTS = (
    "original",
    "only_fg",
    "no_fg",
    "only_bg_b",
    "only_bg_t",
    "mixed_same",
    "mixed_rand",
    "mixed_next",
)


def _bounds(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixel bounds of each box (regions' convention); empty or outside boxes raise."""
    bounds = np.asarray(regions.pixel_bounds(boxes, height, width))
    empty = (bounds[:, 2] <= bounds[:, 0]) | (bounds[:, 3] <= bounds[:, 1])
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise ValueError(f"box {i} {boxes[i].tolist()} is empty or outside the image")
    return bounds


def tile_box(image: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """only_bg_t of one HWC image: its box [y0, x0, y1, x1) filled from the largest strip."""
    height, width = image.shape[:2]
    y0, x0, y1, x1 = (int(b) for b in bounds)
    # (area, axis tiled, strip start, strip length) of the strips above, below, left, right.
    strips = [
        (y0 * width, 0, 0, y0),
        ((height - y1) * width, 0, y1, height - y1),
        (x0 * height, 1, 0, x0),
        ((width - x1) * height, 1, x1, width - x1),
    ]
    area, axis, start, length = max(strips, key=lambda strip: strip[0])
    if area == 0:
        raise ValueError(f"box {bounds.tolist()} covers the whole image: no background to tile")
    rows, cols = np.arange(y0, y1), np.arange(x0, x1)
    if axis == 0:
        rows = start + (rows - y0) % length
    else:
        cols = start + (cols - x0) % length
    out = image.copy()
    out[y0:y1, x0:x1] = image[np.ix_(rows, cols)]
    return out


MIXED = ("mixed_same", "mixed_rand", "mixed_next")


def donor_indices(variant: str, labels: ArrayLike, num_classes: int, seed: int) -> np.ndarray:
    """For each image, the index of the other image whose only_bg_t a `mixed_*` variant pastes it on."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    wanted = {
        "mixed_same": lambda label: labels == label,
        "mixed_rand": lambda label: np.ones_like(labels, bool),
        "mixed_next": lambda label: labels == (label + 1) % num_classes,
    }[variant]
    donors = []
    for i, label in enumerate(labels):
        candidates = np.flatnonzero(wanted(label) & (np.arange(len(labels)) != i))
        if not len(candidates):
            raise ValueError(f"{variant}: no other image to take a background from for image {i}")
        donors.append(rng.choice(candidates))
    return np.asarray(donors, np.int64)


def tiled_backgrounds(images: ArrayLike, boxes: ArrayLike) -> np.ndarray:
    """only_bg_t of every image of an NHWC pool, in the pool's dtype: the bank mixed_* paste onto."""
    images = np.asarray(images)
    bounds = _bounds(np.asarray(boxes, np.float32), *images.shape[1:3])
    return np.stack([tile_box(image, b) for image, b in zip(images, bounds, strict=True)])


def background_variant(
    variant: str,
    images: ArrayLike,
    labels: ArrayLike,
    boxes: ArrayLike,
    masks: ArrayLike | None = None,
    *,
    seed: int = 0,
    num_classes: int | None = None,
) -> np.ndarray:
    """The `variant` of every image of a NHWC float pool (same-size images).

    labels: (N,) ints; boxes: (N, 4) normalised [ymin, xmin, ymax, xmax]; masks: (N, H, W, 1)
    foreground, default the boxes; num_classes for mixed_next, default max(labels) + 1.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown background variant {variant!r}; valid: {', '.join(VARIANTS)}")
    images = np.asarray(images, np.float32)
    if variant == "original":
        return images.copy()
    labels = np.asarray(labels)
    height, width = images.shape[1:3]
    boxes = np.asarray(boxes, np.float32)
    _bounds(boxes, height, width)  # an empty or outside box raises before any variant is built
    if masks is None:
        masks = regions.box_mask(boxes, height, width)
    foreground = np.asarray(masks) > 0.5

    def blacked_box(pool: np.ndarray) -> np.ndarray:
        return np.where(np.asarray(regions.box_mask(boxes, height, width)), 0.0, pool)

    simple: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "only_fg": lambda pool: np.where(foreground, pool, 0.0),
        "no_fg": lambda pool: np.where(foreground, 0.0, pool),
        "only_bg_b": blacked_box,
        "only_bg_t": lambda pool: tiled_backgrounds(pool, boxes),
    }
    if variant in simple:
        return simple[variant](images).astype(np.float32)
    classes = int(labels.max()) + 1 if num_classes is None else num_classes
    donors = donor_indices(variant, labels, classes, seed)
    return np.where(foreground, images, tiled_backgrounds(images, boxes)[donors]).astype(np.float32)
