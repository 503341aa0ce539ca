"""Table 6's segmentation scores: hand-worked masks, a set-based IoU reference, exact boundary bands."""

import numpy as np
import pytest

from ctxfuse_jax.evaluate.segmentation import (boundary_band, class_iou, confusion_matrix, mean_iou,
                                               segmentation_scores)

# Three classes on a 4x4 image; target on the left, prediction on the right.
#   0 0 1 1     0 0 0 1
#   0 0 1 1     0 1 1 1
#   2 2 1 1     2 2 1 1
#   2 2 1 1     2 0 1 1
TARGET = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 1, 1], [2, 2, 1, 1]])
PREDICTED = np.array([[0, 0, 0, 1], [0, 1, 1, 1], [2, 2, 1, 1], [2, 0, 1, 1]])
# Rows target, columns prediction: class 0's four pixels go 3 to 0 and 1 to 1; class 1's eight go
# 1 to 0 (top row) and 7 to 1; class 2's four go 3 to 2 and 1 to 0 (bottom left).
CONFUSION = np.array([[3, 1, 0], [1, 7, 0], [1, 0, 3]])
# IoU = TP / (row + column - TP): 3/(4+5-3) = 1/2, 7/(8+8-7) = 7/9, 3/(4+3-3) = 3/4.
IOU = np.array([1 / 2, 7 / 9, 3 / 4])
MIOU = (1 / 2 + 7 / 9 + 3 / 4) / 3  # = 73/108


def reference_scores(predicted, target, num_classes, keep=None):
    """Per-class IoU from sets of pixel coordinates, skipping classes in neither map."""
    keep = np.ones(target.shape, bool) if keep is None else keep
    coords = [c for c in np.ndindex(*target.shape) if keep[c] and 0 <= target[c] < num_classes]
    ious = {}
    for k in range(num_classes):
        in_target = {c for c in coords if target[c] == k}
        in_predicted = {c for c in coords if predicted[c] == k}
        if in_target | in_predicted:
            ious[k] = len(in_target & in_predicted) / len(in_target | in_predicted)
    return ious


def reference_band(target, width):
    """Pixel by pixel: another label anywhere in the (2w+1)^2 window (clipped to the image)?"""
    band = np.zeros(target.shape, bool)
    n, h, w = target.shape
    for i, y, x in np.ndindex(n, h, w):
        window = target[i, max(0, y - width):y + width + 1, max(0, x - width):x + width + 1]
        band[i, y, x] = np.any(window != target[i, y, x])
    return band


def grid(art: str) -> np.ndarray:
    return np.array([[ch == '#' for ch in row] for row in art.split()])


def test_confusion_worked_by_hand():
    confusion = confusion_matrix(PREDICTED, TARGET, 3)
    assert confusion.dtype == np.int64
    np.testing.assert_array_equal(confusion, CONFUSION)
    np.testing.assert_allclose(class_iou(confusion), IOU)
    assert mean_iou(confusion) == pytest.approx(MIOU) == pytest.approx(73 / 108)
    assert reference_scores(PREDICTED, TARGET, 3) == pytest.approx(dict(enumerate(IOU)))


def test_class_in_neither_map_is_excluded():
    # A fourth class that nobody labels or predicts: no IoU, the mean is the three-class one.
    confusion = confusion_matrix(PREDICTED, TARGET, 4)
    assert np.isnan(class_iou(confusion)[3])
    assert mean_iou(confusion) == pytest.approx(MIOU)


def test_class_only_predicted_scores_zero():
    # Target all background; one pixel predicted as class 1: IoU 15/16 and 0 -> mean 15/32.
    target = np.zeros((4, 4), int)
    predicted = target.copy()
    predicted[2, 1] = 1
    confusion = confusion_matrix(predicted, target, 3)
    np.testing.assert_array_equal(class_iou(confusion), [15 / 16, 0.0, np.nan])
    assert mean_iou(confusion) == pytest.approx(15 / 32)
    assert np.isnan(mean_iou(np.zeros((3, 3), np.int64)))


def test_valid_and_void_pixels_are_not_scored():
    # Leaving out the two left columns leaves only class 1's 8 pixels, 7 right and one (top row)
    # predicted as 0: IoU 7/8 for class 1 and 0/1 for class 0, which is predicted -> mean 7/16.
    valid = np.zeros((4, 4), bool)
    valid[:, 2:] = True
    confusion = confusion_matrix(PREDICTED, TARGET, 3, valid)
    np.testing.assert_array_equal(confusion, [[0, 0, 0], [1, 7, 0], [0, 0, 0]])
    np.testing.assert_allclose(class_iou(confusion), [0.0, 7 / 8, np.nan])
    assert mean_iou(confusion) == pytest.approx(7 / 16)
    # The same pixels marked void (255, or -1) in the target instead.
    for void in (255, -1):
        target = np.where(valid, TARGET, void)
        np.testing.assert_array_equal(confusion_matrix(PREDICTED, target, 3), confusion)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match='predictions must lie in'):
        confusion_matrix(np.where(TARGET == 2, 3, PREDICTED), TARGET, 3)
    with pytest.raises(ValueError, match='one shape'):
        confusion_matrix(PREDICTED[:3], TARGET, 3)
    with pytest.raises(ValueError, match='integers'):
        confusion_matrix(PREDICTED.astype(float), TARGET, 3)
    with pytest.raises(ValueError, match='bool'):
        confusion_matrix(PREDICTED, TARGET, 3, valid=np.ones((4, 4), int))
    # A wrong prediction on a void pixel is not looked at.
    assert confusion_matrix(np.where(TARGET == 2, 7, PREDICTED), np.where(TARGET == 2, 255, TARGET), 3).sum() == 12


def test_confusion_matches_set_reference_on_random_batches():
    rng = np.random.default_rng(0)
    num_classes = 5
    target = rng.integers(0, num_classes, size=(3, 9, 11))
    target[rng.random(target.shape) < 0.1] = 255
    predicted = np.where(rng.random(target.shape) < 0.6, target % 255, rng.integers(0, num_classes, target.shape))
    predicted = np.where(predicted >= num_classes, 0, predicted)
    valid = rng.random(target.shape) < 0.8
    confusion = confusion_matrix(predicted, target, num_classes, valid)
    reference = reference_scores(predicted, target, num_classes, valid)
    iou = class_iou(confusion)
    assert {k: iou[k] for k in np.flatnonzero(~np.isnan(iou))} == pytest.approx(reference)
    assert mean_iou(confusion) == pytest.approx(np.mean(list(reference.values())))
    # Counts add up: the batch's matrix is the sum of its images'.
    np.testing.assert_array_equal(confusion, sum(confusion_matrix(p, t, num_classes, v)
                                                 for p, t, v in zip(predicted, target, valid)))


# A 5x5 square of class 1 on a 10x10 background (rows and columns 2..6).
SQUARE = np.zeros((10, 10), int)
SQUARE[2:7, 2:7] = 1
BAND_1 = grid("""
..........
.#######..
.#######..
.##...##..
.##...##..
.##...##..
.#######..
.#######..
..........
..........
""")
# Width 2 reaches rows and columns 0..8 on the background side and all of the square but its centre.
BAND_2 = grid("""
#########.
#########.
#########.
#########.
####.####.
#########.
#########.
#########.
#########.
..........
""")


@pytest.mark.parametrize('width, expected', [(1, BAND_1), (2, BAND_2)])
def test_band_of_a_square_exactly(width, expected):
    # Chebyshev distance: the diagonal neighbours (1, 1), (1, 7), ... are in the width-1 band;
    # a Euclidean band would leave them out. The image edge is not a boundary.
    band = boundary_band(SQUARE[None], width)
    assert band.shape == (1, 10, 10) and band.dtype == bool
    np.testing.assert_array_equal(band[0], expected)
    np.testing.assert_array_equal(band, reference_band(SQUARE[None], width))


def test_band_is_per_image_and_both_sides():
    # A uniform image next to a split one gets no band of its neighbour's.
    split = np.zeros((2, 4, 6), int)
    split[1, :, 3:] = 4
    band = boundary_band(split, 1)
    assert not band[0].any()
    np.testing.assert_array_equal(band[1], np.broadcast_to([0, 0, 1, 1, 0, 0], (4, 6)).astype(bool))
    assert not boundary_band(split, 0).any()
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, size=(2, 7, 8)) * (rng.random((2, 7, 8)) < 0.3)
    for width in (1, 2, 3):
        np.testing.assert_array_equal(boundary_band(labels, width), reference_band(labels, width))


def test_band_of_the_worked_masks():
    # Width 1 around TARGET's boundaries (worked pixel by pixel):
    #   . # # .
    #   # # # .
    #   # # # .
    #   . # # .
    expected = grid("""
    .##.
    ###.
    ###.
    .##.
    """)
    np.testing.assert_array_equal(boundary_band(TARGET[None], 1)[0], expected)


def test_scores_all_and_boundary_by_hand():
    # On the band above the (target, predicted) pairs are: class 0 -> 0, 0, 1; class 1 -> 0, 1, 1, 1;
    # class 2 -> 2, 2, 0. Confusion [[2, 1, 0], [1, 3, 0], [1, 0, 2]]; IoU 2/(3+4-2) = 2/5,
    # 3/(4+4-3) = 3/5, 2/(3+2-2) = 2/3; mean 5/9.
    scores = segmentation_scores(PREDICTED[None], TARGET[None], 3, band_width=1)
    assert scores == {'miou_all': pytest.approx(MIOU), 'miou_boundary': pytest.approx(5 / 9)}
    band = boundary_band(TARGET[None], 1)[0]
    np.testing.assert_array_equal(confusion_matrix(PREDICTED, TARGET, 3, band), [[2, 1, 0], [1, 3, 0], [1, 0, 2]])
    reference = reference_scores(PREDICTED, TARGET, 3, band)
    assert scores['miou_boundary'] == pytest.approx(np.mean(list(reference.values())))
