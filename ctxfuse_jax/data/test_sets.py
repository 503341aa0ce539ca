"""The paper's "All" and "Dissimilar" test sets, for any dataset whose classes have supercategories.

Seed 000, section 3.3: "we used the 'supercategories' given in the MS COCO dataset to refine test
sets into two data sets: the 'Dissimilar test set' where images come from distinct supercategories
(e.g. 'dog'-animal, 'airplane'-vehicles, and 'toilet'-indoor) and 'All test set', where we did not
make the distinction in terms of supercategories."

Read here as: Dissimilar keeps the images of a set of classes that come from pairwise distinct
supercategories, one representative class per supercategory: the class of that supercategory with
most images in the test split (ties: lower class index). All keeps every image.

Both sets are boolean masks over the same split, so an evaluation scores each example once and
reports every test set from those scores.
"""

import numpy as np

ALL = "all"
DISSIMILAR = "dissimilar"


def dissimilar_classes(labels: np.ndarray, class_supercategory: np.ndarray) -> np.ndarray:
    """One class per supercategory present in `labels`: its most frequent one, sorted by class.

    `class_supercategory[c]` is the supercategory of class `c`.
    """
    labels = np.asarray(labels)
    class_supercategory = np.asarray(class_supercategory)
    if np.any((labels < 0) | (labels >= class_supercategory.size)):
        raise ValueError(f"labels must lie in [0, {class_supercategory.size}).")
    counts = np.bincount(labels, minlength=class_supercategory.size)
    present = np.flatnonzero(counts)
    # Most images first, then lower class index; the first class seen per supercategory wins.
    by_count = present[np.lexsort((present, -counts[present]))]
    _, first = np.unique(class_supercategory[by_count], return_index=True)
    return np.sort(by_count[first])


def masks(labels: np.ndarray, class_supercategory: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean membership of each example of a split in each test set, keyed by set name.

    (Named `masks`, not `test_set_masks`, so that pytest never collects it as a test.)
    """
    labels = np.asarray(labels)
    return {
        ALL: np.ones(labels.shape, bool),
        DISSIMILAR: np.isin(labels, dissimilar_classes(labels, class_supercategory)),
    }
