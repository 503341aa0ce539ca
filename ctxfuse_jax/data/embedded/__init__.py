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

from ctxfuse_jax.data.embedded.builder import (
    IMAGE_SIZES, CtxfuseEmbedded, EmbeddedConfig, embedded_builder, embedded_config, load_embedded)
from ctxfuse_jax.data.embedded.examples import (
    DEFAULT_CONTEXT, OBJECT_CROPS, OBJECTS, SCENES, VARIANTS, Recipe, make_example)
from ctxfuse_jax.data.embedded.taxonomy import EmbeddedInfo, embedded_info

__all__ = [
    "CtxfuseEmbedded", "DEFAULT_CONTEXT", "EmbeddedConfig", "EmbeddedInfo", "IMAGE_SIZES", "OBJECTS",
    "OBJECT_CROPS", "Recipe", "SCENES", "VARIANTS", "embedded_builder", "embedded_config", "embedded_info",
    "load_embedded", "make_example",
]
