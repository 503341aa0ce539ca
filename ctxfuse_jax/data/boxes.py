"""Geometry of normalised [ymin, xmin, ymax, xmax] boxes (the TFDS convention).

The numpy functions decide which images are kept; `union_mask` rasterises the kept boxes into the
foreground mask inside the tf.data pipeline, where image sizes are only known per example.
"""

import numpy as np
import tensorflow as tf


def degenerate(boxes: np.ndarray) -> np.ndarray:
    """Which boxes cannot localise an object: non-finite, empty or inverted, or outside the image."""
    boxes = np.asarray(boxes, np.float64)
    ymin, xmin, ymax, xmax = boxes.T
    with np.errstate(invalid="ignore"):  # NaN compares False and is caught by isfinite
        inside = (ymin >= 0) & (xmin >= 0) & (ymax <= 1) & (xmax <= 1)
        positive = (ymax > ymin) & (xmax > xmin)
    return ~(np.isfinite(boxes).all(axis=1) & inside & positive)


def union_area(boxes: np.ndarray) -> float:
    """Exact area of the union of valid boxes, as a fraction of the image.

    The plane is cut at every box edge; each resulting cell lies either wholly inside or wholly
    outside every box, so summing the covered cells is exact for any number of boxes.
    """
    boxes = np.asarray(boxes, np.float64)
    ys = np.unique(boxes[:, [0, 2]])
    xs = np.unique(boxes[:, [1, 3]])
    cell_y = (ys[:-1] + ys[1:]) / 2
    cell_x = (xs[:-1] + xs[1:]) / 2
    in_y = (boxes[:, 0:1] <= cell_y) & (cell_y < boxes[:, 2:3])  # [boxes, rows]
    in_x = (boxes[:, 1:2] <= cell_x) & (cell_x < boxes[:, 3:4])  # [boxes, cols]
    covered = (in_y[:, :, None] & in_x[:, None, :]).any(axis=0)
    return float(np.sum(np.outer(np.diff(ys), np.diff(xs)) * covered))


def union_mask(boxes: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """uint8 [height, width, 1] mask, 1 where a pixel's centre lies inside any box.

    Boxes are half-open ([ymin, ymax) x [xmin, xmax)), so all-zero padding boxes cover no pixel.
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    rows = (tf.range(height, dtype=tf.float32) + 0.5) / tf.cast(height, tf.float32)
    cols = (tf.range(width, dtype=tf.float32) + 0.5) / tf.cast(width, tf.float32)
    in_rows = (boxes[:, 0:1] <= rows) & (rows < boxes[:, 2:3])  # [boxes, height]
    in_cols = (boxes[:, 1:2] <= cols) & (cols < boxes[:, 3:4])  # [boxes, width]
    covered = tf.reduce_any(in_rows[:, :, None] & in_cols[:, None, :], axis=0)
    return tf.cast(covered, tf.uint8)[..., None]
