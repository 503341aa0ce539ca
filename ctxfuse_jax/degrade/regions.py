"""Restrict a degradation to the foreground, the background or the whole image.

The degradation is computed on the whole image (so a blurred foreground mixes in the
context around it, as a real defocused object would) and then kept only inside the region;
outside it the original pixels are copied unchanged, bit for bit.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

REGIONS = ("all", "foreground", "background")


@functools.partial(jax.jit, static_argnames=("height", "width"))
def pixel_bounds(boxes: ArrayLike, height: int, width: int) -> jax.Array:
    """int32 (B, 4) [y0, x0, y1, x1]: the box holds rows y0..y1-1 and columns x0..x1-1.

    Boxes are (B, 4) [ymin, xmin, ymax, xmax] normalised to [0, 1] (TFDS convention); a pixel
    is inside when its centre lies in [ymin, ymax) x [xmin, xmax). Clipped to the image.
    """
    boxes = jnp.asarray(boxes, jnp.float32)
    sizes = jnp.asarray([height, width, height, width], jnp.float32)
    bounds = jnp.ceil(boxes * sizes - 0.5)
    return jnp.clip(bounds, 0, sizes).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("height", "width"))
def box_mask(boxes: ArrayLike, height: int, width: int) -> jax.Array:
    """Bool (B, H, W, 1) foreground of each box (see `pixel_bounds`)."""
    y0, x0, y1, x1 = jnp.moveaxis(pixel_bounds(boxes, height, width)[:, :, None], 1, 0)
    rows = (jnp.arange(height) >= y0) & (jnp.arange(height) < y1)
    cols = (jnp.arange(width) >= x0) & (jnp.arange(width) < x1)
    return (rows[:, :, None] & cols[:, None, :])[..., None]


def composite(
    original: ArrayLike, degraded: ArrayLike, mask: ArrayLike | None, region: str = "all"
) -> jax.Array:
    """`degraded` inside `region`, `original` (bit-identical) elsewhere.

    mask: (B, H, W, 1) foreground, bool or float (foreground where > 0.5); unused for 'all'.
    """
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; valid: {', '.join(REGIONS)}")
    if region == "all":
        return jnp.asarray(degraded)
    if mask is None:
        raise ValueError(f"region {region!r} needs a foreground mask (see box_mask)")
    foreground = jnp.asarray(mask) > 0.5
    inside = foreground if region == "foreground" else ~foreground
    return jnp.where(inside, degraded, original)
