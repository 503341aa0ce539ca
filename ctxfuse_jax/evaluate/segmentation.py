"""Segmentation scores (seed 001, Table 6): mIoU over all pixels and over a band around boundaries.

Choices, and why:
- Counts go into one confusion matrix on the host (rows: target, columns: prediction), so a test
  set is scored exactly once whatever its batches, and confusions of several parts add up.
- IoU_c = TP / (TP + FP + FN); the mean is over the classes that occur in the target or the
  prediction. A class absent from both has no IoU (0 / 0), and counting it as 0 or 1 would make
  the score depend on which classes a test set happens to lack; VOC's evaluation skips it too.
- Target values outside [0, C) (VOC's 255 "void") are not scored; a prediction outside [0, C) is
  a bug upstream and raises instead of being dropped, which would inflate the score.
- The band is every pixel within `width` pixels in Chebyshev distance (a (2w+1) x (2w+1) square)
  of a pixel with another label: the paper's "within a four pixel distance of class boundaries".
  It holds both sides of a boundary. A void label is "another label", so with VOC's void borders
  the band is the trimap around them; the void pixels themselves are then dropped by the scoring.
  The image edge is not a boundary.
"""

import numpy as np
from scipy import ndimage


def confusion_matrix(predicted: np.ndarray, target: np.ndarray, num_classes: int,
                     valid: np.ndarray | None = None) -> np.ndarray:
    """int64 (C, C): entry [t, p] counts pixels of target class t predicted as p.

    Pixels where `valid` is False, or whose target is outside [0, num_classes), are left out.
    """
    predicted, target = np.asarray(predicted), np.asarray(target)
    if predicted.shape != target.shape:
        raise ValueError(f'predicted {predicted.shape} and target {target.shape} must have one shape')
    if not (np.issubdtype(predicted.dtype, np.integer) and np.issubdtype(target.dtype, np.integer)):
        raise ValueError(f'labels must be integers, got {predicted.dtype} and {target.dtype}')
    if num_classes < 1:
        raise ValueError(f'num_classes must be positive, got {num_classes}')
    keep = (target >= 0) & (target < num_classes)
    if valid is not None:
        valid = np.asarray(valid)
        if valid.shape != target.shape or valid.dtype != bool:
            raise ValueError(f'valid must be a bool array of shape {target.shape}, got {valid.dtype} {valid.shape}')
        keep &= valid
    predicted, target = predicted[keep].astype(np.int64), target[keep].astype(np.int64)
    if predicted.size and (predicted.min() < 0 or predicted.max() >= num_classes):
        raise ValueError(f'predictions must lie in [0, {num_classes}), got values in '
                         f'[{predicted.min()}, {predicted.max()}]')
    counts = np.bincount(target * num_classes + predicted, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def class_iou(confusion: np.ndarray) -> np.ndarray:
    """(C,) float64 IoU per class; NaN for a class in neither the target nor the prediction."""
    confusion = np.asarray(confusion)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f'confusion must be a square (C, C) matrix, got shape {confusion.shape}')
    true_positive = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positive
    return np.divide(true_positive, union, out=np.full(len(union), np.nan), where=union > 0)


def mean_iou(confusion: np.ndarray) -> float:
    """Mean IoU over the classes with a non-empty union (see the module notes); NaN if none."""
    iou = class_iou(confusion)
    present = ~np.isnan(iou)
    return float(iou[present].mean()) if present.any() else float('nan')


def boundary_band(target: np.ndarray, width: int) -> np.ndarray:
    """Bool (N, H, W): pixels with a pixel of another label within `width` px (Chebyshev), per image.

    A pixel is in the band exactly when the labels in the (2w+1)^2 window around it are not all
    equal, i.e. when the window's maximum and minimum differ. Edge handling repeats the edge
    pixels, which adds no label the window does not already hold, so the edge is no boundary.
    """
    target = np.asarray(target)
    if target.ndim != 3:
        raise ValueError(f'target must be (N, H, W) label maps, got shape {target.shape}')
    if width < 0:
        raise ValueError(f'width must be non-negative, got {width}')
    if width == 0:
        return np.zeros(target.shape, bool)
    window = (1, 2 * width + 1, 2 * width + 1)  # 1 across images: each image on its own
    return (ndimage.maximum_filter(target, size=window, mode='nearest')
            != ndimage.minimum_filter(target, size=window, mode='nearest'))


def segmentation_scores(predicted: np.ndarray, target: np.ndarray, num_classes: int,
                        band_width: int) -> dict[str, float]:
    """{'miou_all', 'miou_boundary'} (fractions) of (N, H, W) label maps; the boundary score
    counts only the pixels of `boundary_band(target, band_width)`."""
    band = boundary_band(target, band_width)
    return {'miou_all': mean_iou(confusion_matrix(predicted, target, num_classes)),
            'miou_boundary': mean_iou(confusion_matrix(predicted, target, num_classes, band))}
