"""The rules that cut the contextual-fusion COCO subset (seed 000, section 2.2), on plain arrays.

The paper: "We pruned the large MS COCO dataset to images with <= 2 instances of a single object to
minimize co-occurring context. Using bounding boxes, we constrained foreground to <= 50% of images,
where foreground was inside the box. [...] Our final dataset had 24 classes with 7500 images, 75%
used for training and the remaining for testing."

What the paper leaves open is decided here:
- Crowd annotations (`is_crowd`) reject the image: one crowd box stands for an unknown number of
  objects, so the image cannot be shown to hold <= 2 instances.
- A degenerate box (non-finite, empty or inverted, outside the image) rejects the whole image rather
  than being dropped: the object it annotates is still in the picture, and could be neither counted
  as context nor blurred as foreground.
- The foreground of two instances is the union of their boxes, i.e. exactly the pixels the blur
  experiments treat as foreground (the `mask`); its area must be <= 50% of the image.
- The 24 classes are those with most images after the per-image rules (ties: lower COCO label); the
  experiment's class list is ordered by COCO label.
- Each rejected image is counted once, under the first rule it fails in `REJECTION_REASONS` order.
"""

import dataclasses
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np

from ctxfuse_jax.data import boxes as boxes_lib
from ctxfuse_jax.data import coco_classes
from ctxfuse_jax.data import splits

NO_INSTANCES = "no_instances"
DEGENERATE_BOX = "degenerate_box"
CROWD = "crowd"
TOO_MANY_INSTANCES = "too_many_instances"
MIXED_CLASSES = "mixed_classes"
FOREGROUND_TOO_LARGE = "foreground_too_large"
REJECTION_REASONS = (NO_INSTANCES, DEGENERATE_BOX, CROWD, TOO_MANY_INSTANCES, MIXED_CLASSES,
                     FOREGROUND_TOO_LARGE)
NOT_TOP_CLASSES = "not_top_classes"  # passed every rule, but its class is not among the top ones

_INDEX_FORMAT = 1


class ImageAnnotations(NamedTuple):
    """What pruning needs to know about one image; no pixels."""

    tfds_id: str  # TFDS record id, stable for a prepared dataset: how the image is found again
    image_id: int  # COCO image id, for people
    labels: np.ndarray  # int64 [n], COCO labels 0..79
    boxes: np.ndarray  # float32 [n, 4], normalised [ymin, xmin, ymax, xmax]
    is_crowd: np.ndarray  # bool [n]
    truncated: bool = False  # TFDS object fields disagreed in length and were cut to the shortest


@dataclasses.dataclass(frozen=True)
class PruningConfig:
    """How the subset is cut; every field is part of the cached index's key."""

    source_splits: tuple[str, ...] = ("train", "validation")  # TFDS splits pooled before splitting
    max_instances: int = 2
    max_foreground_fraction: float = 0.5
    num_classes: int = 24
    train_fraction: float = 0.75
    seed: int = 0

    def __post_init__(self):
        if not self.source_splits:
            raise ValueError("source_splits must name at least one TFDS split.")
        if self.max_instances < 1 or self.num_classes < 1:
            raise ValueError(f"max_instances and num_classes must be >= 1: {self}")
        if not 0.0 < self.max_foreground_fraction <= 1.0:
            raise ValueError(f"max_foreground_fraction must lie in (0, 1]: {self}")
        if not 0.0 < self.train_fraction < 1.0:  # checked here too, to fail before a long scan
            raise ValueError(f"train_fraction must lie in (0, 1): {self}")


def rejection_reason(labels: np.ndarray, boxes: np.ndarray, is_crowd: np.ndarray, *,
                     max_instances: int, max_foreground_fraction: float) -> str | None:
    """The first rule an image fails (one of `REJECTION_REASONS`), or None when it is kept.

    Raises ValueError on malformed input (mismatched shapes, labels outside COCO's 80), which is a
    bug upstream rather than a property of the image.
    """
    labels, boxes, is_crowd = np.asarray(labels), np.asarray(boxes), np.asarray(is_crowd)
    num = labels.shape[0] if labels.ndim == 1 else -1
    if num < 0 or boxes.shape != (num, 4) or is_crowd.shape != (num,):
        raise ValueError("Expected labels [n], boxes [n, 4] and is_crowd [n]; got shapes "
                         f"{labels.shape}, {boxes.shape}, {is_crowd.shape}.")
    if np.any((labels < 0) | (labels >= coco_classes.NUM_CLASSES)):
        raise ValueError(f"COCO labels must lie in [0, {coco_classes.NUM_CLASSES}): {labels}")
    if num == 0:
        return NO_INSTANCES
    if np.any(boxes_lib.degenerate(boxes)):
        return DEGENERATE_BOX
    if np.any(is_crowd):
        return CROWD
    if num > max_instances:
        return TOO_MANY_INSTANCES
    if np.any(labels != labels[0]):
        return MIXED_CLASSES
    if boxes_lib.union_area(boxes) > max_foreground_fraction:
        return FOREGROUND_TOO_LARGE
    return None


def select_top_classes(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """The `num_classes` most frequent labels (ties: lower label first), sorted by label."""
    present, counts = np.unique(labels, return_counts=True)
    if present.size < num_classes:
        raise ValueError(f"Only {present.size} classes survive pruning, {num_classes} were asked for.")
    by_count = np.lexsort((present, -counts))
    return np.sort(present[by_count[:num_classes]])


@dataclasses.dataclass(frozen=True, eq=False)
class CocoIndex:
    """The pruned subset: which TFDS records it holds, their labels, boxes and split.

    Rows are sorted by (COCO image id, TFDS id), so they do not depend on the order TFDS reads in.
    """

    config: PruningConfig
    classes: np.ndarray  # int64 [C]: the COCO label of each experiment class, ascending
    tfds_ids: np.ndarray  # str [N]
    image_ids: np.ndarray  # int64 [N]
    labels: np.ndarray  # int64 [N]: index into `classes`
    boxes: np.ndarray  # float32 [N, max_instances, 4]; rows past an image's instances are zero
    is_train: np.ndarray  # bool [N]
    stats: dict[str, int]  # images scanned, dropped per rule, kept (see `build_index`)

    @property
    def bboxes(self) -> np.ndarray:
        """float32 [N, 4]: the box enclosing each image's instances (the standard `bbox`)."""
        present = _is_instance(self.boxes)[..., None]
        top_left = np.where(present, self.boxes[..., :2], np.inf).min(axis=1)
        bottom_right = np.where(present, self.boxes[..., 2:], -np.inf).max(axis=1)
        return np.concatenate([top_left, bottom_right], axis=-1).astype(np.float32)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(coco_classes.CLASS_NAMES[label] for label in self.classes)

    @property
    def class_supercategory(self) -> np.ndarray:
        """Supercategory index (into `coco_classes.SUPERCATEGORY_NAMES`) of each experiment class."""
        return coco_classes.CLASS_SUPERCATEGORY[self.classes]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: columns of plain lists, each image's boxes without padding."""
        num_boxes = _is_instance(self.boxes).sum(axis=-1)
        return {
            "format": _INDEX_FORMAT,
            "config": dataclasses.asdict(self.config),
            "classes": self.classes.tolist(),
            "class_names": list(self.class_names),
            "stats": dict(self.stats),
            "images": {
                "tfds_id": self.tfds_ids.tolist(),
                "image_id": self.image_ids.tolist(),
                "label": self.labels.tolist(),
                "is_train": self.is_train.tolist(),
                "boxes": [b[:n].tolist() for b, n in zip(self.boxes, num_boxes)],
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CocoIndex":
        if data.get("format") != _INDEX_FORMAT:
            raise ValueError(f"Unsupported COCO index format {data.get('format')!r}: delete the "
                             "cached index file to rebuild it.")
        config = PruningConfig(**{**data["config"],
                                  "source_splits": tuple(data["config"]["source_splits"])})
        images = data["images"]
        return cls(
            config=config,
            classes=np.asarray(data["classes"], np.int64),
            tfds_ids=np.asarray(images["tfds_id"], str),
            image_ids=np.asarray(images["image_id"], np.int64),
            labels=np.asarray(images["label"], np.int64),
            boxes=_pad_boxes(images["boxes"], config.max_instances),
            is_train=np.asarray(images["is_train"], bool),
            stats=dict(data["stats"]),
        )


def _is_instance(boxes: np.ndarray) -> np.ndarray:
    """Which rows of padded boxes are instances: kept boxes have positive extent, padding is zero."""
    return np.any(boxes != 0, axis=-1)


def _pad_boxes(per_image: list, max_instances: int) -> np.ndarray:
    padded = np.zeros((len(per_image), max_instances, 4), np.float32)
    for row, image_boxes in zip(padded, per_image):
        row[:len(image_boxes)] = image_boxes
    return padded


def build_index(images: Iterable[ImageAnnotations], config: PruningConfig) -> CocoIndex:
    """Applies the per-image rules, keeps the top classes and splits them, stratified by class.

    One pass over `images`, keeping only the images that pass; the class counts and the split are
    then computed on those. In the returned `stats`, `scanned` is the sum of the counts of every
    rejection reason, `not_top_classes` and `kept`. Raises ValueError, with the statistics, when
    nothing is left.
    """
    stats = dict.fromkeys(("scanned", *REJECTION_REASONS, NOT_TOP_CLASSES, "kept",
                           "ragged_objects_truncated"), 0)
    kept = []
    for image in images:
        stats["scanned"] += 1
        stats["ragged_objects_truncated"] += image.truncated
        reason = rejection_reason(image.labels, image.boxes, image.is_crowd,
                                  max_instances=config.max_instances,
                                  max_foreground_fraction=config.max_foreground_fraction)
        if reason is None:
            kept.append(image)
        else:
            stats[reason] += 1
    if not kept:
        raise ValueError(f"No COCO image passes the pruning rules ({stats}); {config}")

    kept.sort(key=lambda image: (image.image_id, image.tfds_id))
    coco_labels = np.array([image.labels[0] for image in kept], np.int64)
    classes = select_top_classes(coco_labels, config.num_classes)
    in_top = np.isin(coco_labels, classes)
    kept = [image for image, keep in zip(kept, in_top) if keep]
    stats[NOT_TOP_CLASSES] = int(np.sum(~in_top))
    stats["kept"] = len(kept)

    labels = np.searchsorted(classes, coco_labels[in_top])
    return CocoIndex(
        config=config,
        classes=classes,
        tfds_ids=np.array([image.tfds_id for image in kept], str),
        image_ids=np.array([image.image_id for image in kept], np.int64),
        labels=labels.astype(np.int64),
        boxes=_pad_boxes([image.boxes for image in kept], config.max_instances),
        is_train=splits.stratified_split(labels, config.train_fraction, config.seed),
        stats=stats,
    )
