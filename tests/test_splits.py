"""Stratified train/test splits."""

import numpy as np
import pytest

from ctxfuse_jax.data import splits


def test_each_class_is_split_three_to_one_and_deterministically():
    labels = np.repeat([0, 3, 5], [40, 10, 7])
    is_train = splits.stratified_split(labels, 0.75, seed=0)
    assert [int(is_train[labels == c].sum()) for c in (0, 3, 5)] == [30, 8, 5]  # 7.5 rounds up, 5.25 down
    np.testing.assert_array_equal(splits.stratified_split(labels, 0.75, seed=0), is_train)
    assert not np.array_equal(splits.stratified_split(labels, 0.75, seed=1), is_train)


def test_a_class_split_does_not_depend_on_other_classes():
    labels = np.repeat([0, 3], [20, 12])
    alone = splits.stratified_split(labels[labels == 3], 0.75, seed=0)
    np.testing.assert_array_equal(splits.stratified_split(labels, 0.75, seed=0)[labels == 3], alone)


def test_fraction_must_leave_both_splits_possible():
    with pytest.raises(ValueError):
        splits.stratified_split(np.zeros(4, int), 1.0, seed=0)
