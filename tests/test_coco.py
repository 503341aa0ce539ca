"""The TFDS COCO pipeline on TFDS mock data (MockPolicy.USE_CODE, which works offline).

Mock annotations never pass the rules (every `objects` field holds 5..49 random entries), so the
scanned mock records get hand-built annotations before the index is built; the TFDS ids, the second
(image) pass and the example dicts are the real pipeline's.
"""

import dataclasses

import numpy as np
import pytest
import tensorflow_datasets as tfds

from ctxfuse_jax.data import coco, coco_classes, coco_pruning

NUM_MOCK = 24  # records per source split
CONFIG = coco_pruning.PruningConfig(num_classes=3)
DOG, PERSON, AIRPLANE, TOILET = 16, 0, 4, 61
# The class of image i is PATTERN[i % 8]; None is a dog with a person (rejected: mixed classes).
# Airplane and toilet tie for the third place, and airplane, the lower label, wins.
PATTERN = (DOG, DOG, DOG, PERSON, PERSON, AIRPLANE, TOILET, None)


def _mock_data():
    return tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, num_examples=NUM_MOCK)


def _hand_annotate(image: coco_pruning.ImageAnnotations, i: int) -> coco_pruning.ImageAnnotations:
    """1 or 2 valid instances (2 when i is odd) whose boxes shift with i."""
    shift = 0.031 * (i % 5)
    two_boxes = np.array([[0.11 + shift, 0.07, 0.43 + shift, 0.52],
                          [0.34, 0.41 - shift, 0.71, 0.93 - shift]], np.float32)
    label = PATTERN[i % len(PATTERN)]
    labels = np.array([DOG, PERSON] if label is None else [label] * (1 + i % 2), np.int64)
    return image._replace(labels=labels, boxes=two_boxes[:labels.size],
                          is_crowd=np.zeros(labels.size, bool))


def _read(index: coco_pruning.CocoIndex, split: str, data_dir: str, **sharding) -> list[dict]:
    return list(tfds.as_numpy(coco.load_split(index, split, data_dir=data_dir, **sharding)))


@dataclasses.dataclass
class MockCoco:
    data_dir: str
    scanned: list[coco_pruning.ImageAnnotations]  # as TFDS mock data gives them
    annotated: list[coco_pruning.ImageAnnotations]  # with hand-built annotations
    index: coco_pruning.CocoIndex
    examples: dict[str, list[dict]]


@pytest.fixture(scope="module")
def mock_coco(tmp_path_factory) -> MockCoco:
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    with _mock_data():
        scanned = list(coco.scan_annotations(CONFIG.source_splits, data_dir=data_dir))
        annotated = [_hand_annotate(image, i) for i, image in enumerate(scanned)]
        index = coco_pruning.build_index(annotated, CONFIG)
        examples = {split: _read(index, split, data_dir) for split in (coco.TRAIN, coco.TEST)}
    return MockCoco(data_dir, scanned, annotated, index, examples)


def _raster(instance_boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """The foreground mask, pixel by pixel: 1 where the pixel centre lies inside a box."""
    mask = np.zeros((height, width, 1), np.uint8)
    for row in range(height):
        for col in range(width):
            y = (np.float32(row) + np.float32(0.5)) / np.float32(height)
            x = (np.float32(col) + np.float32(0.5)) / np.float32(width)
            mask[row, col] = any(b[0] <= y < b[2] and b[1] <= x < b[3] for b in instance_boxes)
    return mask


def test_scan_reads_every_record_and_cuts_ragged_mock_objects(mock_coco):
    scanned = mock_coco.scanned
    assert len(scanned) == len(CONFIG.source_splits) * NUM_MOCK
    assert len({image.tfds_id for image in scanned}) == len(scanned)
    assert any(image.truncated for image in scanned)
    for image in scanned:
        num = image.labels.shape[0]
        assert image.boxes.shape == (num, 4) and image.is_crowd.shape == (num,) and num >= 5


def test_mock_annotations_fail_the_rules_with_a_clear_error(mock_coco, tmp_path):
    with _mock_data(), pytest.raises(ValueError, match="No COCO image passes the pruning rules"):
        coco.prepare_index(data_dir=mock_coco.data_dir, cache_dir=str(tmp_path))
    assert not list(tmp_path.iterdir())  # nothing cached


def test_index_statistics(mock_coco):
    stats = mock_coco.index.stats
    assert stats["scanned"] == 48 and stats["kept"] == 36
    assert stats[coco_pruning.MIXED_CLASSES] == stats[coco_pruning.NOT_TOP_CLASSES] == 6
    assert stats["ragged_objects_truncated"] == sum(image.truncated for image in mock_coco.scanned)
    np.testing.assert_array_equal(mock_coco.index.classes, [PERSON, AIRPLANE, DOG])


def test_splits_are_disjoint_stratified_three_to_one(mock_coco):
    index = mock_coco.index
    train_ids = set(index.tfds_ids[index.is_train])
    assert not train_ids & set(index.tfds_ids[~index.is_train])
    # 12 persons -> 9 train, 6 airplanes -> 4.5 -> 5, 18 dogs -> 13.5 -> 14.
    assert [int(index.is_train[index.labels == c].sum()) for c in range(3)] == [9, 5, 14]
    assert len(mock_coco.examples[coco.TRAIN]) == 28 and len(mock_coco.examples[coco.TEST]) == 8


@pytest.mark.parametrize("split", [coco.TRAIN, coco.TEST])
def test_examples_are_standard_dicts_of_the_indexed_images(mock_coco, split):
    index = mock_coco.index
    in_split = set(index.tfds_ids[index.is_train == (split == coco.TRAIN)])
    expected = [image for image in mock_coco.annotated if image.tfds_id in in_split]  # file order
    examples = mock_coco.examples[split]
    assert len(examples) == len(expected)
    for example, image in zip(examples, expected):
        assert set(example) == {"image", "label", "supercategory", "bbox", "mask", "scene"}
        height, width, channels = example["image"].shape
        assert example["image"].dtype == np.uint8 and channels == 3
        assert example["label"].dtype == np.int64 and example["label"].shape == ()
        assert index.classes[example["label"]] == image.labels[0]
        assert example["supercategory"].dtype == np.int64
        assert example["supercategory"] == coco_classes.CLASS_SUPERCATEGORY[image.labels[0]]
        assert example["bbox"].dtype == np.float32 and example["bbox"].shape == (4,)
        assert np.all((example["bbox"] >= 0) & (example["bbox"] <= 1))
        np.testing.assert_array_equal(
            example["bbox"], np.concatenate([image.boxes[:, :2].min(0), image.boxes[:, 2:].max(0)]))
        assert example["mask"].dtype == np.uint8
        np.testing.assert_array_equal(example["mask"], _raster(image.boxes, height, width))
        assert example["scene"] == coco.UNKNOWN_SCENE


def test_reading_is_deterministic_and_hosts_share_a_split(mock_coco):
    index, data_dir = mock_coco.index, mock_coco.data_dir
    with _mock_data():
        again = _read(index, coco.TRAIN, data_dir)
        shards = [_read(index, coco.TRAIN, data_dir, process_index=k, process_count=2) for k in (0, 1)]
    for first, second in zip(mock_coco.examples[coco.TRAIN], again, strict=True):
        for key in first:
            np.testing.assert_array_equal(first[key], second[key])
    assert [len(shard) for shard in shards] == [14, 14]
    labels = sorted(int(example["label"]) for shard in shards for example in shard)
    assert labels == sorted(int(example["label"]) for example in again)


def test_index_is_cached_and_keyed_by_config(mock_coco, tmp_path, monkeypatch):
    cache_dir, data_dir = str(tmp_path / "cache"), str(tmp_path / "no_tfds_data")
    monkeypatch.setattr(coco, "scan_annotations", lambda splits, data_dir: iter(mock_coco.annotated))
    built = coco.prepare_index(CONFIG, data_dir=data_dir, cache_dir=cache_dir)
    assert built.to_dict() == mock_coco.index.to_dict()

    def no_scan(splits, data_dir):
        raise AssertionError("the cached index should have been used")

    monkeypatch.setattr(coco, "scan_annotations", no_scan)
    cached = coco.prepare_index(CONFIG, data_dir=data_dir, cache_dir=cache_dir)
    assert cached.to_dict() == built.to_dict()
    with pytest.raises(AssertionError, match="cached index"):
        coco.prepare_index(dataclasses.replace(CONFIG, seed=1), data_dir=data_dir, cache_dir=cache_dir)


def test_missing_data_names_the_dataset_the_directory_and_the_fix(mock_coco, tmp_path):
    data_dir = str(tmp_path / "empty")
    match = r"coco/2017.*empty.*tfds build coco/2017"
    with pytest.raises(coco.MissingDatasetError, match=match):
        coco.prepare_index(data_dir=data_dir, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(coco.MissingDatasetError, match=match):
        coco.load_split(mock_coco.index, coco.TRAIN, data_dir=data_dir)
