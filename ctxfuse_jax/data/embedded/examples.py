"""One example of any variant as a pure function of (recipe, index): the generator the builder writes.

Variants (the roles they play in the contextual-fusion paper, seed 000):
- `objects`: one object on a scene whose type follows the object's supercategory with probability
  `context` (MS COCO's role); the object's box covers at most half the image, the paper's rule.
- `object_crops`: one object filling most of the frame on a scene of any type (ImageNet's role,
  to pretrain a foreground extractor).
- `scenes`: a scene without any object (Places365's role, to pretrain a background extractor).

Each example draws from three independent random streams (which scene type, how the scene looks,
how the object looks), so datasets that differ only in `context` hold the very same objects.
"""

import dataclasses

import numpy as np

from ctxfuse_jax.data.embedded.choices import (  # noqa: F401  (re-exported)
    DEFAULT_CONTEXT, MIN_IMAGE_SIZE, OBJECT_CROPS, OBJECTS, SCENES, VARIANTS, is_integer)
from ctxfuse_jax.data.embedded.icons import ICONS
from ctxfuse_jax.data.embedded.render import Placement, render_icon
from ctxfuse_jax.data.embedded.scenes import render_scene
from ctxfuse_jax.data.embedded.taxonomy import EmbeddedInfo, embedded_info

PLACEMENTS = {
    OBJECTS: Placement(min_area=0.15, max_area=0.45),  # 0.45 < 0.5 leaves room for pixel rounding
    OBJECT_CROPS: Placement(min_area=0.45, max_area=0.85),
}
_INFO: EmbeddedInfo = embedded_info()


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything an example depends on besides its index."""

    variant: str = OBJECTS
    image_size: int = 64
    seed: int = 0
    context: float = DEFAULT_CONTEXT  # used by `objects` only; crops take scenes at random

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choose one of {VARIANTS}")
        if not 0.0 <= self.context <= 1.0:
            raise ValueError(f"context is a probability, got {self.context}")
        if not is_integer(self.image_size) or self.image_size < MIN_IMAGE_SIZE:
            raise ValueError(f"image_size must be an integer >= {MIN_IMAGE_SIZE} (smaller images leave some "
                             f"objects without a pixel), got {self.image_size!r}")
        if not is_integer(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")


def _num_labels(variant: str) -> int:
    """Classes of the variant's target: object classes, or scene types for `scenes`."""
    return len(_INFO.scene_names if variant == SCENES else _INFO.class_names)


def sample_scene(rng: np.random.Generator, supercategory: int, context: float) -> int:
    """With probability `context` a scene of the supercategory's own group, otherwise any scene.

    So P(own group) = context + (1 - context) / number of supercategories, and context = 0 makes
    scene and object independent.
    """
    if rng.uniform() < context:
        return int(rng.choice(_INFO.scenes_of(supercategory)))
    return int(rng.integers(len(_INFO.scene_names)))


def make_example(recipe: Recipe, index: int) -> dict[str, np.ndarray | int]:
    """Example `index`; its target (class, or scene type) is `index` modulo the number of labels."""
    target = index % _num_labels(recipe.variant)
    which_scene, scene_looks, object_looks = (
        np.random.default_rng(s) for s in
        np.random.SeedSequence([recipe.seed, VARIANTS.index(recipe.variant), index]).spawn(3))
    size = recipe.image_size
    if recipe.variant == SCENES:
        return {"image": _to_uint8(render_scene(_INFO.scene_names[target], scene_looks, size)), "scene": target}

    supercategory = _INFO.class_supercategory[target]
    context = recipe.context if recipe.variant == OBJECTS else 0.0
    scene = sample_scene(which_scene, supercategory, context)
    background = render_scene(_INFO.scene_names[scene], scene_looks, size)
    colours, mask = render_icon(ICONS[_INFO.class_names[target]], object_looks, size, PLACEMENTS[recipe.variant])
    return {
        "image": _to_uint8(np.where(mask[..., None], colours, background)),
        "label": target,
        "supercategory": supercategory,
        "bbox": _tight_box(mask),
        "mask": mask[..., None].astype(np.uint8),
        "scene": scene,
        "background": _to_uint8(background),
    }


def _tight_box(mask: np.ndarray) -> np.ndarray:
    """[ymin, xmin, ymax, xmax] of the mask's pixels as fractions of the image (pixel edges)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not rows.size:
        raise ValueError("the object covers no pixel")
    height, width = mask.shape
    return np.array([rows[0] / height, cols[0] / width, (rows[-1] + 1) / height, (cols[-1] + 1) / width],
                    np.float32)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(image * 255.0).astype(np.uint8)
