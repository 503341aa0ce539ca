"""Box geometry: exact union area and the foreground mask raster."""

import numpy as np
import pytest

from ctxfuse_jax.data import boxes


def test_union_area_is_exact():
    small, other = [0.1, 0.1, 0.3, 0.4], [0.5, 0.5, 0.8, 0.9]
    assert boxes.union_area(np.array([small])) == pytest.approx(0.06)
    assert boxes.union_area(np.array([small, other])) == pytest.approx(0.18)
    assert boxes.union_area(np.array([small, small])) == pytest.approx(0.06)
    overlapping = np.array([[0.0, 0.0, 0.6, 0.6], [0.1, 0.1, 0.7, 0.7], [0.0, 0.5, 0.2, 1.0]])
    first_two = 0.36 + 0.36 - 0.25
    third_outside_them = 0.2 * 0.5 - (0.02 + 0.02 - 0.01)
    assert boxes.union_area(overlapping) == pytest.approx(first_two + third_outside_them)


def test_union_mask_covers_pixel_centres_half_open_and_ignores_zero_padding():
    # 4 rows with centres 1/8, 3/8, 5/8, 7/8 and 2 columns with centres 1/4, 3/4. The first box
    # ends exactly on the third row's centre, which it therefore excludes.
    instance_boxes = np.array([[0.0, 0.0, 0.625, 0.5], [0.8, 0.6, 1.0, 1.0], [0, 0, 0, 0]], np.float32)
    mask = boxes.union_mask(instance_boxes, 4, 2).numpy()
    assert mask.dtype == np.uint8 and mask.shape == (4, 2, 1)
    np.testing.assert_array_equal(mask[..., 0], [[1, 0], [1, 0], [0, 0], [0, 1]])
