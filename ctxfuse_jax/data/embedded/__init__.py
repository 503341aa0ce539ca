"""An offline dataset on which every paper's experiment runs for real on a CPU.

24 object classes (pictograms told apart by parts a few pixels wide, so blur hurts) in 4
supercategories, on 12 scene types drawn from photographed textures; each supercategory has its own
three scene types, chosen with probability `context`. Three variants: `objects` (COCO's role),
`object_crops` (ImageNet's) and `scenes` (Places365's). Example dicts follow the project standard:
`image`, `label`, `supercategory`, `bbox`, `mask`, `scene` (+ `background`, the scene without the
object); `scenes` examples hold `image` and `scene` only.

    ds = load_embedded("objects", "train", image_size=64)   # builds into the TFDS data dir once
    info = embedded_info()                                   # names and class -> supercategory map
"""

import importlib
from typing import TYPE_CHECKING

from ctxfuse_jax.data.embedded.choices import (
    DEFAULT_CONTEXT, IMAGE_SIZES, MIN_IMAGE_SIZE, OBJECT_CROPS, OBJECTS, SCENES, VARIANTS)

# The rest is imported on first use: the builder needs TensorFlow Datasets, the examples their
# drawing code, while the names above (read by config checks) must stay quick to import.
_LAZY = {
    "CtxfuseEmbedded": "builder", "EmbeddedConfig": "builder", "embedded_builder": "builder",
    "embedded_config": "builder", "load_embedded": "builder",
    "Recipe": "examples", "make_example": "examples",
    "EmbeddedInfo": "taxonomy", "embedded_info": "taxonomy",
}

if TYPE_CHECKING:
    from ctxfuse_jax.data.embedded.builder import (
        CtxfuseEmbedded, EmbeddedConfig, embedded_builder, embedded_config, load_embedded)
    from ctxfuse_jax.data.embedded.examples import Recipe, make_example
    from ctxfuse_jax.data.embedded.taxonomy import EmbeddedInfo, embedded_info


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "CtxfuseEmbedded", "DEFAULT_CONTEXT", "EmbeddedConfig", "EmbeddedInfo", "IMAGE_SIZES", "MIN_IMAGE_SIZE",
    "OBJECTS", "OBJECT_CROPS", "Recipe", "SCENES", "VARIANTS", "embedded_builder", "embedded_config",
    "embedded_info", "load_embedded", "make_example",
]
