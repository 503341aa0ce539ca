"""MS COCO 2017 (TFDS `coco/2017`) cut to the contextual-fusion subset, as standard example dicts.

Two steps, so that the 118k-image train set is scanned once, not every run:
1. `prepare_index` reads annotations only (a `PartialDecoding` without the image: no image is
   parsed or decoded), applies the rules of `coco_pruning` and caches the chosen TFDS record ids,
   labels, boxes and split in a small JSON file; later runs load that file and skip the scan.
2. `load_split` reads the source splits parsing only the encoded image, drops the records outside
   the split by TFDS id *before* decoding, and decodes and annotates only the kept images.

TFDS mock data (`tfds.testing.mock_data`, USE_CODE policy) gives every `objects` field its own
random length (5..49), where real TFDS data always agrees: such records are cut to their shortest
field and counted as `ragged_objects_truncated`. Mock data also rejects
`decoders={'image': SkipDecoding()}` on the full features (it re-encodes the ragged `objects`);
decoding a `PartialDecoding` subset works with both mock and real data, which is why it is used.
"""

import dataclasses
import functools
import hashlib
import json
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from ctxfuse_jax.data import boxes as boxes_lib
from ctxfuse_jax.data.coco_pruning import CocoIndex, ImageAnnotations, PruningConfig, build_index
from ctxfuse_jax.errors import DataError

DATASET = "coco/2017"
TRAIN, TEST = "train", "test"
DEFAULT_CACHE_DIR = "~/.cache/ctxfuse_jax"
UNKNOWN_SCENE = -1  # COCO has no scene labels

_ANNOTATIONS_ONLY = tfds.decode.PartialDecoding(
    {"image/id": True, "objects": {"bbox", "label", "is_crowd"}})
_ENCODED_IMAGE_ONLY = tfds.decode.PartialDecoding(
    {"image": True}, decoders={"image": tfds.decode.SkipDecoding()})


class MissingDatasetError(DataError):
    """COCO is not prepared in the TFDS data_dir; the message says how to prepare it."""


def _builder(data_dir: str | None) -> tfds.core.DatasetBuilder:
    return tfds.builder(DATASET, data_dir=data_dir)


def _read(builder: tfds.core.DatasetBuilder, split: str,
          decoders: tfds.decode.PartialDecoding) -> tf.data.Dataset:
    """One TFDS split in file order, each record with its `tfds_id`."""
    try:
        return builder.as_dataset(split=split, decoders=decoders, shuffle_files=False,
                                  read_config=tfds.ReadConfig(add_tfds_id=True))
    except AssertionError as error:  # how TFDS says that the data is not prepared
        raise MissingDatasetError(
            f"TFDS dataset '{DATASET}' is not prepared: nothing at {builder.data_dir}. Nothing is "
            f"downloaded at run time. On a machine with internet run `tfds build {DATASET} "
            "--data_dir=DIR` (about 25 GiB download and 25 GiB prepared), copy DIR/coco/2017 into "
            "this machine's data_dir, and pass data_dir (or set TFDS_DATA_DIR)."
        ) from error


def _annotations(example: dict[str, Any]) -> ImageAnnotations:
    objects = example["objects"]
    num = min(len(field) for field in objects.values())
    return ImageAnnotations(
        tfds_id=example["tfds_id"].decode(),
        image_id=int(example["image/id"]),
        labels=objects["label"][:num],
        boxes=objects["bbox"][:num],
        is_crowd=objects["is_crowd"][:num],
        truncated=any(len(field) != num for field in objects.values()),
    )


def scan_annotations(splits: Sequence[str], *,
                     data_dir: str | None = None) -> Iterator[ImageAnnotations]:
    """The annotations of every image of the TFDS `splits`, without decoding any image."""
    builder = _builder(data_dir)
    for split in splits:
        records = _read(builder, split, _ANNOTATIONS_ONLY).prefetch(tf.data.AUTOTUNE)
        yield from map(_annotations, tfds.as_numpy(records))


def _source_fingerprint(builder: tfds.core.DatasetBuilder, splits: Sequence[str]) -> dict[str, Any]:
    """What fixes the TFDS ids: the dataset version and, once prepared, each split's shard sizes."""
    prepared = builder.info.splits
    return {
        "dataset": builder.info.full_name,
        "shard_lengths": {split: list(prepared[split].shard_lengths)
                          for split in splits if split in prepared},
    }


def prepare_index(config: PruningConfig = PruningConfig(), *, data_dir: str | None = None,
                  cache_dir: str = DEFAULT_CACHE_DIR) -> CocoIndex:
    """The subset's index, loaded from `cache_dir` or built by one annotation scan and cached there.

    Its `stats` say how many images were scanned, dropped by each rule, and kept. The cache file is
    keyed by `config` and by the prepared data (version, shard sizes): changing either makes a new
    scan rather than reusing a stale index.
    """
    source = _source_fingerprint(_builder(data_dir), config.source_splits)
    key = json.dumps([source, dataclasses.asdict(config)], sort_keys=True)
    path = (epath.Path(cache_dir).expanduser()
            / f"coco_index_{hashlib.sha256(key.encode()).hexdigest()[:16]}.json")
    if path.exists():
        logging.info("Loading the COCO index from %s", path)
        return CocoIndex.from_dict(json.loads(path.read_text())["index"])

    logging.info("Scanning %s %s annotations for the subset's index", DATASET, config.source_splits)
    index = build_index(scan_annotations(config.source_splits, data_dir=data_dir), config)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")  # readers never see half a file
    partial.write_text(json.dumps({"source": source, "index": index.to_dict()}))
    partial.rename(path)
    logging.info("COCO index written to %s; statistics: %s", path, index.stats)
    return index


def load_split(index: CocoIndex, split: str, *, data_dir: str | None = None,
               process_index: int = 0, process_count: int = 1) -> tf.data.Dataset:
    """The standard example dicts of one split (`TRAIN` or `TEST`) of the subset, in TFDS file order.

    `index` must come from `prepare_index` on the same data_dir. Each of `process_count` hosts
    gets every `process_count`-th row of the split, so each example is read by exactly one host.
    The source splits are read from disk on every pass (only kept images are decoded): cache or
    preprocess what is iterated more than once.
    """
    if split not in (TRAIN, TEST):
        raise ValueError(f"split must be {TRAIN!r} or {TEST!r}, got {split!r}.")
    if not 0 <= process_index < process_count:
        raise ValueError(f"Need 0 <= process_index < process_count, got {process_index}, "
                         f"{process_count}.")
    rows = np.flatnonzero(index.is_train == (split == TRAIN))[process_index::process_count]
    if rows.size == 0:
        raise ValueError(f"The {split} split of this host holds no images; index stats: {index.stats}")

    row_of = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(index.tfds_ids[rows], np.arange(rows.size, dtype=np.int64)),
        default_value=-1)
    labels = index.labels[rows]
    columns = {name: tf.constant(column) for name, column in (
        ("label", labels), ("supercategory", index.class_supercategory[labels]),
        ("bbox", index.bboxes[rows]))}
    instance_boxes = tf.constant(index.boxes[rows])
    builder = _builder(data_dir)
    decode_image = builder.info.features["image"].decode_example

    def standard_example(row: tf.Tensor, encoded_image: tf.Tensor) -> dict[str, tf.Tensor]:
        image = decode_image(encoded_image)
        height, width = tf.unstack(tf.shape(image)[:2])
        return {
            "image": image,
            **{name: column[row] for name, column in columns.items()},
            "mask": boxes_lib.union_mask(instance_boxes[row], height, width),
            "scene": tf.constant(UNKNOWN_SCENE, tf.int64),
        }

    records = functools.reduce(tf.data.Dataset.concatenate, (
        _read(builder, source, _ENCODED_IMAGE_ONLY) for source in index.config.source_splits))
    return (records
            .map(lambda record: (row_of.lookup(record["tfds_id"]), record["image"]))
            .filter(lambda row, _: row >= 0)
            .map(standard_example, num_parallel_calls=tf.data.AUTOTUNE))
