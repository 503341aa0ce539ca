"""Seed 001's blur protocol: kernels are defined at a canonical scale, not per image.

Images are resized so their short side is the canonical scale (384), blurred there, resized
back to the network's scale and quantized to 8 bits. So the same kernel is the same blur
whatever the source resolution, and blurred inputs carry the rounding of real 8-bit photos.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ctxfuse_jax.degrade import blurring

CANONICAL_SCALE = 384
MAX_8BIT = 255.0


@jax.jit
def quantize(images: jax.Array) -> jax.Array:
    """Round [0, 1] images to the nearest of the 256 8-bit levels (and clip)."""
    return (jnp.round(jnp.clip(images, 0.0, 1.0) * MAX_8BIT) / MAX_8BIT).astype(images.dtype)


@functools.partial(jax.jit, static_argnames="shape")
def _resize(images: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return jax.image.resize(images, shape, method="linear", antialias=True)


def resize_short_side(images: jax.Array, short_side: int) -> jax.Array:
    """Resize NHWC images (aspect kept, antialiased bilinear) to the given short side."""
    batch, height, width, channels = images.shape
    factor = short_side / min(height, width)
    return _resize(images, (batch, round(height * factor), round(width * factor), channels))


def blur_at_scale(
    images: jax.Array, params: blurring.BlurParams, scale: int = CANONICAL_SCALE
) -> jax.Array:
    """Blur with kernels sized for a `scale`-pixel short side; return 8-bit-quantized images
    of the input's size. Jitted piecewise, like `blurring.blur`."""
    canonical = images if min(images.shape[1:3]) == scale else resize_short_side(images, scale)
    blurred = blurring.blur(canonical, params)
    if blurred.shape != images.shape:
        blurred = _resize(blurred, images.shape)
    return quantize(blurred)
