"""Lossy compression round trips (JPEG, JPEG 2000), run on the host.

Both take float [0, 1] images, one HWC or a NHWC batch, with one quality for all or one per
image, and return float32 [0, 1] tensors of the same shape. They are TensorFlow ops, so they
run eagerly on numpy arrays or inside a `tf.data` map.

- JPEG: libjpeg through `tf.image.adjust_jpeg_quality`, decoded with the accurate integer DCT,
  which makes it bit-identical to Pillow's save/open at the same quality.
- JPEG 2000: Pillow's OpenJPEG via `tf.numpy_function` (~5 ms per 224^2 image), either at a
  compression ratio (`rate`, e.g. 50 means 50:1) or at a target PSNR in dB (`psnr`).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from jax.typing import ArrayLike
from PIL import Image

from ctxfuse_jax.degrade.protocol import MAX_8BIT


def _to_uint8(images: tf.Tensor) -> tf.Tensor:
    """Round to 8 bits (tf.image.convert_image_dtype would floor x * 255.5 instead)."""
    return tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * MAX_8BIT), tf.uint8)


def _per_image(
    fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
    images: ArrayLike,
    values: ArrayLike,
    dtype: tf.DType,
) -> tf.Tensor:
    """Apply fn(image_uint8, value) to one image or to each image of a batch, back to float."""
    images = _to_uint8(tf.convert_to_tensor(images, tf.float32))
    values = tf.convert_to_tensor(values, dtype)
    if images.shape.rank == 3:
        out = fn(images, values)
    else:
        values = tf.broadcast_to(values, tf.shape(images)[:1])
        out = tf.map_fn(lambda pair: fn(*pair), (images, values), fn_output_signature=tf.uint8)
    return tf.cast(out, tf.float32) / MAX_8BIT


def jpeg(images: ArrayLike, quality: ArrayLike) -> tf.Tensor:
    """JPEG round trip at `quality` (1-100, libjpeg's scale; ImageNet-C uses 25..7)."""
    return _per_image(
        lambda image, q: tf.image.adjust_jpeg_quality(image, q, dct_method="INTEGER_ACCURATE"),
        images,
        quality,
        tf.int32,
    )


def _jpeg2000_numpy(image: np.ndarray, value: np.float32, mode: str) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
        buffer, format="JPEG2000", quality_mode=mode, quality_layers=[float(value)]
    )
    return np.asarray(Image.open(buffer), np.uint8).reshape(image.shape)


def jpeg2000(
    images: ArrayLike, *, rate: ArrayLike | None = None, psnr: ArrayLike | None = None
) -> tf.Tensor:
    """JPEG 2000 round trip at a compression ratio `rate` or a target `psnr` (dB); one of them."""
    if (rate is None) == (psnr is None):
        raise ValueError("jpeg2000 takes exactly one of rate= (compression ratio) or psnr= (dB)")
    mode, value = ("rates", rate) if psnr is None else ("dB", psnr)
    encode_decode = functools.partial(_jpeg2000_numpy, mode=mode)

    def round_trip(image: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
        out = tf.numpy_function(encode_decode, [image, v], tf.uint8, stateful=False)
        return tf.ensure_shape(out, image.shape)

    return _per_image(round_trip, images, value, tf.float32)
