"""What an embedded dataset can be asked for, importable without TensorFlow.

The builder (TFDS) and the example drawing (images) are heavy to import; config checks need only
these names and limits, so that a wrong value is refused in about two seconds.
"""

import numbers

OBJECTS, OBJECT_CROPS, SCENES = "objects", "object_crops", "scenes"
VARIANTS = (OBJECTS, OBJECT_CROPS, SCENES)
DEFAULT_CONTEXT = 0.7  # P(own scene group) = 0.7 + 0.3 / 4 = 0.775: context helps but does not decide
DEFAULT_NUM_EXAMPLES = {OBJECTS: 4000, OBJECT_CROPS: 4800, SCENES: 4800}
TRAIN_FRACTION = 0.75  # the paper's 75 / 25 train / test split

IMAGE_SIZES = (32, 64, 224)  # sizes with a named TFDS config; any size >= MIN_IMAGE_SIZE works
# Below 8 px some objects cover no pixel at all (6 px: 14 of the first 4800 objects of seed 0); at 8 px
# the smallest covers 1 pixel, at 16 px 6. 16 leaves a margin for other seeds and contexts.
MIN_IMAGE_SIZE = 16


def is_integer(value: object) -> bool:
    """An int (numpy's too), not a bool: what sizes, counts and seeds must be."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def split_sizes(num_examples: int) -> tuple[int, int]:
    """(train, test) example counts of a dataset of `num_examples`."""
    num_train = round(TRAIN_FRACTION * num_examples)
    return num_train, num_examples - num_train
