"""The embedded dataset as a TFDS builder, so it is read by the same pipeline code as MS COCO.

Named configs are `{variant}_{image_size}` (e.g. `objects_64`, `object_crops_32`, `scenes_224`) with
the default seed, size and context; `embedded_config` names any other choice after what differs
(e.g. `objects_32_n96_seed3_context0p5`), so every choice gets its own directory in the cache.
Nothing is downloaded: `download_and_prepare` draws the images. Bump `VERSION` whenever the drawing
code changes, so caches written by older code are not read as if they were current.
"""

import dataclasses

import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath

from ctxfuse_jax.data.embedded import examples
from ctxfuse_jax.data.embedded.choices import (  # noqa: F401  (re-exported)
    DEFAULT_NUM_EXAMPLES, IMAGE_SIZES, TRAIN_FRACTION, is_integer, split_sizes)
from ctxfuse_jax.data.embedded.taxonomy import embedded_info

VERSION = tfds.core.Version("1.0.0")
_DEFAULT_SEED = 0


@dataclasses.dataclass(eq=False, kw_only=True)
class EmbeddedConfig(tfds.core.BuilderConfig):
    """A variant at an image size, with its number of examples (train + test), seed and context."""

    variant: str = examples.OBJECTS
    image_size: int = 64
    num_examples: int = DEFAULT_NUM_EXAMPLES[examples.OBJECTS]
    seed: int = _DEFAULT_SEED
    context: float = examples.DEFAULT_CONTEXT

    @property
    def recipe(self) -> examples.Recipe:
        return examples.Recipe(self.variant, self.image_size, self.seed, self.context)

    @property
    def num_train(self) -> int:
        return split_sizes(self.num_examples)[0]


def embedded_config(variant: str = examples.OBJECTS, image_size: int = 64, num_examples: int | None = None,
                    seed: int = _DEFAULT_SEED, context: float = examples.DEFAULT_CONTEXT) -> EmbeddedConfig:
    """The config for these choices: a named one when it exists, else one named after what differs.

    Validates every choice first, so a bad one fails before TFDS creates any directory.
    """
    examples.Recipe(variant, image_size, seed, context)  # validates
    num_examples = DEFAULT_NUM_EXAMPLES[variant] if num_examples is None else num_examples
    if not is_integer(num_examples) or min(split_sizes(num_examples)) < 1:
        raise ValueError(f"need at least one train and one test example, got num_examples={num_examples!r}")
    name = f"{variant}_{image_size}"
    if num_examples != DEFAULT_NUM_EXAMPLES[variant]:
        name += f"_n{num_examples}"
    if seed != _DEFAULT_SEED:
        name += f"_seed{seed}"
    if variant == examples.OBJECTS and context != examples.DEFAULT_CONTEXT:
        name += "_context" + f"{context:g}".replace(".", "p")
    return _NAMED_CONFIGS.get(name) or _config(name, variant, image_size, num_examples, seed, context)


def _config(name: str, variant: str, image_size: int, num_examples: int, seed: int = _DEFAULT_SEED,
            context: float = examples.DEFAULT_CONTEXT) -> EmbeddedConfig:
    about = f"{variant} at {image_size} px, {num_examples} examples, seed {seed}"
    if variant == examples.OBJECTS:
        about += f", context {context}"
    return EmbeddedConfig(name=name, version=VERSION, description=about, variant=variant, image_size=image_size,
                          num_examples=num_examples, seed=seed, context=context)


def _features(config: EmbeddedConfig) -> tfds.features.FeaturesDict:
    info = embedded_info()
    size = config.image_size
    scene = tfds.features.ClassLabel(names=info.scene_names)
    if config.variant == examples.SCENES:
        return tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(size, size, 3)), "scene": scene})
    return tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(size, size, 3)),
        "label": tfds.features.ClassLabel(names=info.class_names),
        "supercategory": tfds.features.ClassLabel(names=info.supercategory_names),
        "bbox": tfds.features.BBoxFeature(),
        "mask": tfds.features.Image(shape=(size, size, 1)),
        "scene": scene,
        "background": tfds.features.Image(shape=(size, size, 3)),
    })


class CtxfuseEmbedded(tfds.core.GeneratorBasedBuilder):
    """Single objects on scenes that match their supercategory, drawn offline from a seed."""

    VERSION = VERSION
    RELEASE_NOTES = {"1.0.0": "24 pictogram classes in 4 supercategories on 12 scene types."}
    BUILDER_CONFIGS = [_config(f"{variant}_{size}", variant, size, DEFAULT_NUM_EXAMPLES[variant])
                       for variant in examples.VARIANTS for size in IMAGE_SIZES]
    DEFAULT_CONFIG_NAME = "objects_64"
    # TFDS 4.9 looks for a builder's source file with `importlib_resources`, not installed here: give it.
    code_path = epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        target = "scene" if config.variant == examples.SCENES else "label"
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=_features(config),
            supervised_keys=("image", target),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # nothing to download
        config = self.builder_config
        return {
            "train": self._generate_examples(range(config.num_train)),
            "test": self._generate_examples(range(config.num_train, config.num_examples)),
        }

    def _generate_examples(self, indices: range):
        recipe = self.builder_config.recipe
        for index in indices:
            yield index, examples.make_example(recipe, index)


_NAMED_CONFIGS = {config.name: config for config in CtxfuseEmbedded.BUILDER_CONFIGS}


def embedded_builder(variant: str = examples.OBJECTS, image_size: int = 64, data_dir: str | None = None, *,
                     num_examples: int | None = None, seed: int = _DEFAULT_SEED,
                     context: float = examples.DEFAULT_CONTEXT) -> CtxfuseEmbedded:
    """The prepared builder: drawn and written to `data_dir` on first use, read from there after.

    `data_dir` None (or '') is TFDS's default: `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`.
    """
    config = embedded_config(variant, image_size, num_examples, seed, context)
    builder = CtxfuseEmbedded(config=config, data_dir=data_dir or None)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return builder


def load_embedded(variant: str = examples.OBJECTS, split: str = "train", image_size: int = 64,
                  data_dir: str | None = None, *, num_examples: int | None = None, seed: int = _DEFAULT_SEED,
                  context: float = examples.DEFAULT_CONTEXT, shuffle_files: bool = False) -> tf.data.Dataset:
    """One split ('train', 'test', or any TFDS split string) as a dataset of example dicts."""
    builder = embedded_builder(variant, image_size, data_dir, num_examples=num_examples, seed=seed,
                               context=context)
    return builder.as_dataset(split=split, shuffle_files=shuffle_files)
