"""The 80 COCO 2017 object classes and their 12 supercategories, in TFDS label order.

TFDS `coco/2017` labels are 0..79 in COCO category-id order, but TFDS keeps no supercategories and
its mock data names the classes '0'..'79'. Both come from the `categories` of the COCO 2017
annotation files and are hard-coded here, so the class list and the All/Dissimilar test sets do not
depend on the data being present.
"""

import numpy as np

# (supercategory, its classes); the classes of each supercategory are consecutive labels.
_TAXONOMY: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("person", ("person",)),
    ("vehicle", ("bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat")),
    ("outdoor", ("traffic light", "fire hydrant", "stop sign", "parking meter", "bench")),
    ("animal", ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe")),
    ("accessory", ("backpack", "umbrella", "handbag", "tie", "suitcase")),
    ("sports", ("frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
                "skateboard", "surfboard", "tennis racket")),
    ("kitchen", ("bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl")),
    ("food", ("banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut",
              "cake")),
    ("furniture", ("chair", "couch", "potted plant", "bed", "dining table", "toilet")),
    ("electronic", ("tv", "laptop", "mouse", "remote", "keyboard", "cell phone")),
    ("appliance", ("microwave", "oven", "toaster", "sink", "refrigerator")),
    ("indoor", ("book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush")),
)

SUPERCATEGORY_NAMES: tuple[str, ...] = tuple(supercategory for supercategory, _ in _TAXONOMY)
CLASS_NAMES: tuple[str, ...] = tuple(name for _, names in _TAXONOMY for name in names)
NUM_CLASSES = len(CLASS_NAMES)

# CLASS_SUPERCATEGORY[label] is the supercategory index of a TFDS COCO label.
CLASS_SUPERCATEGORY: np.ndarray = np.repeat(
    np.arange(len(_TAXONOMY), dtype=np.int64), [len(names) for _, names in _TAXONOMY]
)
