"""Additive Gaussian sensor noise, on device, with a per-image standard deviation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


@jax.jit
def gaussian_noise(images: jax.Array, std: ArrayLike, key: jax.Array) -> jax.Array:
    """clip(x + std * N(0, 1), 0, 1), as ImageNet-C; `std` a scalar or one per image."""
    std = jnp.broadcast_to(jnp.asarray(std, jnp.float32), images.shape[:1])
    noise = jax.random.normal(key, images.shape, jnp.float32)
    return jnp.clip(images + std[:, None, None, None] * noise, 0.0, 1.0).astype(images.dtype)
