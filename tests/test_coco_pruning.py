"""The COCO pruning rules, class list and index on hand-built annotations (no TFDS)."""

import numpy as np
import pytest

from ctxfuse_jax.data import coco_classes
from ctxfuse_jax.data import coco_pruning as pruning

SMALL = [0.1, 0.1, 0.3, 0.4]  # 6% of the image
OTHER_SMALL = [0.5, 0.5, 0.8, 0.9]  # 12%, disjoint from SMALL
DOG, PERSON, AIRPLANE, TOILET = 16, 0, 4, 61


def _reason(labels, instance_boxes, is_crowd=None):
    is_crowd = np.zeros(len(labels), bool) if is_crowd is None else np.asarray(is_crowd)
    return pruning.rejection_reason(np.asarray(labels, np.int64), np.asarray(instance_boxes, np.float32),
                                    is_crowd, max_instances=2, max_foreground_fraction=0.5)


def _image(image_id, label, instance_boxes=(SMALL,)):
    return pruning.ImageAnnotations(
        tfds_id=f"coco-train.tfrecord-00000-of-00001__{image_id}", image_id=image_id,
        labels=np.full(len(instance_boxes), label, np.int64),
        boxes=np.asarray(instance_boxes, np.float32), is_crowd=np.zeros(len(instance_boxes), bool))


def test_supercategory_map_matches_coco_label_ranges():
    ranges = {"person": (0, 0), "vehicle": (1, 8), "outdoor": (9, 13), "animal": (14, 23),
              "accessory": (24, 28), "sports": (29, 38), "kitchen": (39, 45), "food": (46, 55),
              "furniture": (56, 61), "electronic": (62, 67), "appliance": (68, 72), "indoor": (73, 79)}
    assert coco_classes.SUPERCATEGORY_NAMES == tuple(ranges)
    for index, (first, last) in enumerate(ranges.values()):
        np.testing.assert_array_equal(coco_classes.CLASS_SUPERCATEGORY[first:last + 1], index)
    assert coco_classes.CLASS_SUPERCATEGORY.shape == (80,)
    assert len(set(coco_classes.CLASS_NAMES)) == 80
    assert [coco_classes.CLASS_NAMES[i] for i in (DOG, PERSON, AIRPLANE, TOILET)] == [
        "dog", "person", "airplane", "toilet"]


@pytest.mark.parametrize("labels, instance_boxes", [
    ([DOG], [SMALL]),
    ([DOG, DOG], [SMALL, OTHER_SMALL]),
    ([DOG], [[0.0, 0.0, 0.5, 1.0]]),  # exactly half the image is allowed
    ([DOG, DOG], [[0.0, 0.0, 0.6, 0.6], [0.1, 0.1, 0.7, 0.7]]),  # boxes sum to 72%, union 47%
])
def test_kept(labels, instance_boxes):
    assert _reason(labels, instance_boxes) is None


@pytest.mark.parametrize("labels, instance_boxes, is_crowd, reason", [
    ([], np.zeros((0, 4)), None, pruning.NO_INSTANCES),
    ([DOG] * 3, [SMALL, OTHER_SMALL, SMALL], None, pruning.TOO_MANY_INSTANCES),
    ([DOG, PERSON], [SMALL, OTHER_SMALL], None, pruning.MIXED_CLASSES),
    ([DOG], [[0.0, 0.0, 0.8, 0.8]], None, pruning.FOREGROUND_TOO_LARGE),
    ([DOG, DOG], [[0.0, 0.0, 0.5, 0.8], [0.5, 0.0, 0.9, 0.5]], None, pruning.FOREGROUND_TOO_LARGE),
    ([DOG], [SMALL], [True], pruning.CROWD),
    ([DOG, DOG], [SMALL, OTHER_SMALL], [False, True], pruning.CROWD),
    ([DOG], [[0.2, 0.2, 0.2, 0.5]], None, pruning.DEGENERATE_BOX),  # zero height
    ([DOG], [[0.4, 0.2, 0.3, 0.5]], None, pruning.DEGENERATE_BOX),  # inverted
    ([DOG], [[0.2, -0.1, 0.3, 0.5]], None, pruning.DEGENERATE_BOX),  # left of the image
    ([DOG], [[0.2, 0.2, 1.2, 0.5]], None, pruning.DEGENERATE_BOX),  # below the image
    ([DOG], [[0.2, np.nan, 0.3, 0.5]], None, pruning.DEGENERATE_BOX),
    # The first failing rule counts: a degenerate box outranks the instance count.
    ([DOG] * 3, [SMALL, SMALL, [0.2, 0.2, 0.2, 0.5]], None, pruning.DEGENERATE_BOX),
])
def test_rejected(labels, instance_boxes, is_crowd, reason):
    assert _reason(labels, instance_boxes, is_crowd) == reason


@pytest.mark.parametrize("labels, instance_boxes, is_crowd", [
    ([DOG, DOG], [SMALL], [False, False]),  # fewer boxes than labels
    ([DOG], [[0.1, 0.2, 0.3]], [False]),  # not four coordinates
    ([DOG], [SMALL], [False, False]),
    ([[DOG]], [SMALL], [False]),
    ([80], [SMALL], [False]),  # COCO has 80 classes
])
def test_malformed_input_raises(labels, instance_boxes, is_crowd):
    with pytest.raises(ValueError):
        _reason(labels, instance_boxes, is_crowd)


def test_top_classes_break_ties_by_lower_label_and_are_sorted():
    labels = np.array([TOILET] * 3 + [DOG] * 2 + [AIRPLANE] * 2 + [PERSON])
    np.testing.assert_array_equal(pruning.select_top_classes(labels, 2), [AIRPLANE, TOILET])
    with pytest.raises(ValueError, match="Only 4 classes"):
        pruning.select_top_classes(labels, 5)


def _hand_built_images():
    images = [_image(i, DOG) for i in range(12)]
    images += [_image(100 + i, TOILET, (SMALL, OTHER_SMALL)) for i in range(8)]
    images += [_image(200 + i, PERSON) for i in range(2)]  # third class: not in the top 2
    images += [_image(300, DOG, (SMALL, SMALL, SMALL)), _image(301, DOG, ([0, 0, 0.9, 0.9],))]
    return images


def test_build_index_counts_every_image_once():
    config = pruning.PruningConfig(num_classes=2)
    index = pruning.build_index(_hand_built_images(), config)
    stats = index.stats
    assert stats["scanned"] == 24 and stats["kept"] == 20
    assert stats[pruning.NOT_TOP_CLASSES] == 2
    assert stats[pruning.TOO_MANY_INSTANCES] == stats[pruning.FOREGROUND_TOO_LARGE] == 1
    assert stats["scanned"] == sum(stats[r] for r in (*pruning.REJECTION_REASONS,
                                                       pruning.NOT_TOP_CLASSES, "kept"))
    np.testing.assert_array_equal(index.classes, [DOG, TOILET])
    assert index.class_names == ("dog", "toilet")
    np.testing.assert_array_equal(index.class_supercategory, [3, 8])
    np.testing.assert_array_equal(index.labels, [0] * 12 + [1] * 8)
    assert index.boxes.shape == (20, 2, 4)
    np.testing.assert_allclose(index.bboxes[0], SMALL)
    np.testing.assert_allclose(index.bboxes[-1], [0.1, 0.1, 0.8, 0.9])
    assert index.is_train.sum() == 9 + 6


def test_build_index_ignores_read_order_and_round_trips():
    config = pruning.PruningConfig(num_classes=2)
    images = _hand_built_images()
    index = pruning.build_index(images, config)
    shuffled = pruning.build_index([images[i] for i in np.random.default_rng(1).permutation(24)], config)
    assert shuffled.to_dict() == index.to_dict()
    restored = pruning.CocoIndex.from_dict(index.to_dict())
    assert restored.to_dict() == index.to_dict()
    assert restored.config == config
    np.testing.assert_array_equal(restored.boxes, index.boxes)


def test_empty_result_is_a_clear_error():
    with pytest.raises(ValueError, match="No COCO image passes.*'too_many_instances': 1"):
        pruning.build_index([_image(0, DOG, (SMALL,) * 3)], pruning.PruningConfig())


@pytest.mark.parametrize("field, value", [("max_instances", 0), ("max_foreground_fraction", 0.0),
                                          ("train_fraction", 1.0), ("source_splits", ())])
def test_config_rejects_nonsense_before_any_scan(field, value):
    with pytest.raises(ValueError):
        pruning.PruningConfig(**{field: value})
