"""Classification datasets by name, read into memory: the embedded dataset, pruned MS COCO, digits,
and the blur study's TFDS ImageNet 2012 and Oxford-IIIT Pet.

Every source returns the same `Labelled` shape, so experiments never ask where data came from.
`label` is always the training target (the scene type for the embedded `scenes` variant).
"""

import dataclasses
from typing import Callable

import ml_collections
import numpy as np

from ctxfuse_jax.data import pipeline


@dataclasses.dataclass(frozen=True)
class Labelled:
    """Train and test splits in memory plus the names and maps reports and test sets need."""

    train: pipeline.ArraySplit
    test: pipeline.ArraySplit
    class_names: tuple[str, ...]
    supercategory_names: tuple[str, ...]
    class_supercategory: np.ndarray  # class index -> supercategory index; empty for scene targets

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _embedded(config: ml_collections.ConfigDict) -> Labelled:
    from ctxfuse_jax.data.embedded import examples, load_embedded
    from ctxfuse_jax.data.embedded.taxonomy import embedded_info

    info = embedded_info()
    options = dict(image_size=config.image_size, data_dir=config.data_dir or None, seed=config.seed,
                   context=config.context, num_examples=config.num_examples or None)

    def split(name: str) -> pipeline.ArraySplit:
        dataset = load_embedded(config.variant, name, **options)
        if config.variant == examples.SCENES:
            dataset = dataset.map(lambda ex: {"image": ex["image"], "label": ex["scene"], "scene": ex["scene"]})
            return pipeline.materialize(dataset, ("image", "label", "scene"))
        return pipeline.materialize(dataset, pipeline.STANDARD_KEYS)

    if config.variant == examples.SCENES:
        return Labelled(split("train"), split("test"), info.scene_names, info.supercategory_names,
                        np.asarray(info.scene_supercategory))
    return Labelled(split("train"), split("test"), info.class_names, info.supercategory_names,
                    np.asarray(info.class_supercategory))


def _coco(config: ml_collections.ConfigDict) -> Labelled:
    from ctxfuse_jax.data import coco, coco_classes
    from ctxfuse_jax.data.coco_pruning import PruningConfig

    index = coco.prepare_index(PruningConfig(seed=config.seed), data_dir=config.data_dir or None,
                               cache_dir=config.cache_dir or coco.DEFAULT_CACHE_DIR)

    def split(name: str) -> pipeline.ArraySplit:
        dataset = coco.load_split(index, name, data_dir=config.data_dir or None)
        return pipeline.materialize(dataset, pipeline.STANDARD_KEYS, image_size=config.image_size)

    return Labelled(split(coco.TRAIN), split(coco.TEST), tuple(index.class_names),
                    coco_classes.SUPERCATEGORY_NAMES, np.asarray(index.class_supercategory))


def _digits(config: ml_collections.ConfigDict) -> Labelled:
    """Embedded digits (`digits`) or TFDS `mnist` / `fashion_mnist`, with their true masks; no supercategories."""
    from ctxfuse_jax.data import digits

    if config.name == digits.DIGITS:
        train, test = digits.embedded_digits(config.image_size, seed=config.seed, num_examples=config.num_examples,
                                             test_fraction=config.test_fraction)
    else:
        train, test = digits.tfds_digits(config.name, config.image_size, num_examples=config.num_examples,
                                         data_dir=config.data_dir or None)
    return Labelled(train, test, digits.class_names(config.name, config.data_dir or None), (), np.zeros(0, int))


def _blur_tfds(config: ml_collections.ConfigDict) -> Labelled:
    """TFDS `imagenet2012` or `oxford_iiit_pet` (seed 001) at the canonical scale `image_size`."""
    from ctxfuse_jax.data import blur_sources

    data_dir = config.data_dir or None
    train, test = blur_sources.LOADERS[config.name](config.image_size, num_examples=config.num_examples,
                                                    data_dir=data_dir)
    return Labelled(train, test, blur_sources.class_names(config.name, data_dir),
                    *blur_sources.supercategories(config.name, data_dir))


SOURCES: dict[str, Callable[[ml_collections.ConfigDict], Labelled]] = {
    "embedded": _embedded, "coco": _coco, "digits": _digits, "mnist": _digits, "fashion_mnist": _digits,
    "imagenet2012": _blur_tfds, "oxford_iiit_pet": _blur_tfds}


def load_labelled(config: ml_collections.ConfigDict) -> Labelled:
    """The dataset `config.name` with its options; unknown names list the valid ones."""
    if config.name not in SOURCES:
        raise ValueError(f"unknown dataset {config.name!r}; choose one of {sorted(SOURCES)}")
    return SOURCES[config.name](config)
