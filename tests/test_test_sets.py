"""The All and Dissimilar test sets on hand-built labels."""

import numpy as np
import pytest

from ctxfuse_jax.data import test_sets

# Six classes: 0, 1 in supercategory 0; 2, 3, 4 in supercategory 5; 5 alone in supercategory 2.
CLASS_SUPERCATEGORY = np.array([0, 0, 5, 5, 5, 2])


def test_dissimilar_takes_the_most_frequent_class_of_each_supercategory():
    labels = np.array([0, 1, 1, 2, 3, 3, 4, 4, 5])  # 3 and 4 tie in supercategory 5: 3 wins
    np.testing.assert_array_equal(test_sets.dissimilar_classes(labels, CLASS_SUPERCATEGORY), [1, 3, 5])
    chosen = test_sets.dissimilar_classes(labels, CLASS_SUPERCATEGORY)
    assert len(set(CLASS_SUPERCATEGORY[chosen])) == len(chosen)


def test_absent_classes_and_supercategories_are_skipped():
    labels = np.array([2, 4, 4])
    np.testing.assert_array_equal(test_sets.dissimilar_classes(labels, CLASS_SUPERCATEGORY), [4])


def test_masks_cover_the_split_once_per_set():
    labels = np.array([5, 0, 1, 1, 2, 3, 3, 4, 4])
    masks = test_sets.masks(labels, CLASS_SUPERCATEGORY)
    assert set(masks) == {test_sets.ALL, test_sets.DISSIMILAR}
    assert masks[test_sets.ALL].all() and masks[test_sets.ALL].shape == labels.shape
    np.testing.assert_array_equal(masks[test_sets.DISSIMILAR], [1, 0, 1, 1, 0, 1, 1, 0, 0])


def test_labels_outside_the_class_list_raise():
    with pytest.raises(ValueError):
        test_sets.dissimilar_classes(np.array([6]), CLASS_SUPERCATEGORY)
