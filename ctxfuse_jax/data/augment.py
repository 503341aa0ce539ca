"""On-device training augmentation (dm-pix): random flips and padded random crops, per example.

The flip decision is its own function, `select_flipped`, so that features of frozen streams
computed once for an image and its mirror (`experiments.feature_cache`) flip exactly as the
images would have.
"""

from typing import Any

import dm_pix
import jax
import jax.numpy as jnp


def _example_keys(rng: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """(flip keys, crop keys): every example draws its own flip and crop from `rng`."""
    keys = jax.vmap(jax.random.split)(jax.random.split(rng, batch_size))
    return keys[:, 0], keys[:, 1]


def select_flipped(rng: jax.Array, originals: Any, mirrored: Any) -> Any:
    """Per example, its `mirrored` version with probability 1/2, else its original.

    `originals` and `mirrored` are matching pytrees of (batch, ...) arrays: images and their mirror
    images, or stream features of both; the same `rng` makes the same choices for either.
    """
    batch_size = jax.tree.leaves(originals)[0].shape[0]
    flip_keys, _ = _example_keys(rng, batch_size)
    flips = jax.vmap(lambda key: jax.random.bernoulli(key, 0.5))(flip_keys)
    return jax.tree.map(lambda o, m: jnp.where(flips.reshape(-1, *(1,) * (o.ndim - 1)), m, o),
                        originals, mirrored)


def augment(images: jax.Array, rng: jax.Array, flip: bool = True, crop_padding: int = 0) -> jax.Array:
    """Augments a float NHWC batch; every example draws its own flip and crop from `rng`."""
    if crop_padding < 0:
        raise ValueError(f"crop_padding must be >= 0, got {crop_padding}")
    if flip:
        images = select_flipped(rng, images, dm_pix.flip_left_right(images))
    if crop_padding:
        p = crop_padding

        def crop(image, key):
            return dm_pix.random_crop(key, jnp.pad(image, ((p, p), (p, p), (0, 0)), mode="reflect"), image.shape)

        _, crop_keys = _example_keys(rng, images.shape[0])
        images = jax.vmap(crop)(images, crop_keys)
    return images
