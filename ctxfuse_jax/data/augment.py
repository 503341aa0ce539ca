"""On-device training augmentation (dm-pix): random flips and padded random crops, per example."""

import dm_pix
import jax
import jax.numpy as jnp


def augment(images: jax.Array, rng: jax.Array, flip: bool = True, crop_padding: int = 0) -> jax.Array:
    """Augments a float NHWC batch; every example draws its own flip and crop from `rng`."""
    if crop_padding < 0:
        raise ValueError(f"crop_padding must be >= 0, got {crop_padding}")
    if not flip and not crop_padding:
        return images
    keys = jax.random.split(rng, images.shape[0])

    def one(image, key):
        flip_key, crop_key = jax.random.split(key)
        if flip:
            image = dm_pix.random_flip_left_right(flip_key, image)
        if crop_padding:
            p = crop_padding
            padded = jnp.pad(image, ((p, p), (p, p), (0, 0)), mode="reflect")
            image = dm_pix.random_crop(crop_key, padded, image.shape)
        return image

    return jax.vmap(one)(images, keys)
