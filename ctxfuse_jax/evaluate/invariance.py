"""Blur invariance of activations (seed 001, Figure 4): which units blur switches on or off.

Vasiljevic et al. binarise the feature vector at every position (a channel is on when its
response is positive, off when it is zero) and take the Hamming distance between the binary
strings of a sharp image and its blurred copy, normalised by the number of channels, per layer.

Choices, and why:
- On means `x > 0`, off anything else, so a negative value (a tap before a ReLU) counts as zero,
  the state a ReLU would give it, and NaN counts as off. The maps are fractions in [0, 1], so
  layers with 64 and 512 channels share one colour scale.
- `resize_maps` upsamples by nearest neighbour: each cell of a small pool5 map stays a visible
  block, values stay multiples of 1/C, and for an integer factor the map's mean is unchanged.
  (Bilinear is there for a smoother figure; it blends neighbouring cells.)
- `layer_means` averages the maps at their own size, not the resized ones, so a number is every
  position of that layer counted once.
"""

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np


@jax.jit
def hamming_maps(sharp: jax.Array, blurred: jax.Array) -> jax.Array:
    """(N, H, W, C) activations of sharp images and their blurred copies -> (N, H, W) float32:
    the fraction of the C channels whose state (on: x > 0) differs between the two."""
    if sharp.ndim != 4 or sharp.shape != blurred.shape:
        raise ValueError(f'sharp {sharp.shape} and blurred {blurred.shape} activations must be '
                         'feature maps (N, H, W, C) of one shape')
    return jnp.mean(((sharp > 0) != (blurred > 0)).astype(jnp.float32), axis=-1)


def resize_maps(maps: jax.Array, size: int, method: str = 'nearest') -> jax.Array:
    """(N, h, w) maps -> (N, size, size) float32 for display, by nearest neighbour by default
    (see the module notes); `method` is any of `jax.image.resize`'s, e.g. 'bilinear'."""
    maps = jnp.asarray(maps, jnp.float32)
    if maps.ndim != 3:
        raise ValueError(f'maps must be (N, h, w), got shape {maps.shape}')
    if size < 1:
        raise ValueError(f'size must be positive, got {size}')
    return jax.image.resize(maps, (maps.shape[0], size, size), method=method)


def layer_means(maps_by_layer: Mapping[str, np.ndarray]) -> dict[str, float]:
    """{layer: mean Hamming distance over all images and positions} of `hamming_maps` outputs."""
    means = {}
    for name, maps in maps_by_layer.items():
        maps = np.asarray(maps, np.float64)
        if maps.ndim != 3 or not maps.size:
            raise ValueError(f'maps of layer {name!r} must be a non-empty (N, H, W) array, got {maps.shape}')
        means[name] = float(maps.mean())
    return means
