"""The mask generator's objective and how its masks are used (seed 002), on device.

Phase 2 trains the U-Net so that the classifier still recognises `x * m`, while an area penalty
keeps the mask small and a total-variation penalty keeps it in one piece (the authors' defaults:
area 0.2, weight 0.1). Phase 3 pastes the masked object on a background, using the mask soft or
binarised at 0.5, at Otsu's threshold or at an area quantile of each image.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

AREA_LOSSES = ("abs", "squared")
BINARIZE = ("soft", "0.5", "otsu", "quantile")
OTSU_BINS = 256  # skimage.filters.threshold_otsu's default


def area_penalty(masks: jax.Array, target: float, kind: str = "abs") -> jax.Array:
    """Mean over images of relu(area - target) (or its square): masks larger than `target` pay."""
    excess = jax.nn.relu(jnp.mean(masks, axis=(1, 2, 3)) - target)
    if kind not in AREA_LOSSES:
        raise ValueError(f"unknown area loss {kind!r}; choose one of {AREA_LOSSES}")
    return jnp.mean(excess if kind == "abs" else excess ** 2)


def total_variation(masks: jax.Array) -> jax.Array:
    """Mean absolute difference of vertical neighbours plus that of horizontal neighbours."""
    return jnp.mean(jnp.abs(masks[:, 1:] - masks[:, :-1])) + jnp.mean(jnp.abs(masks[:, :, 1:] - masks[:, :, :-1]))


def otsu_thresholds(images: jax.Array, bins: int = OTSU_BINS) -> jax.Array:
    """Otsu's threshold of each image, as `skimage.filters.threshold_otsu` computes it (a histogram of
    `bins` bins over the image's range; the bin centre maximising the between-class variance)."""

    def one(image):
        low, high = jnp.min(image), jnp.max(image)
        span = jnp.where(high > low, high - low, 1.0)
        index = jnp.clip(jnp.floor((image.ravel() - low) / span * bins), 0, bins - 1).astype(jnp.int32)
        counts = jnp.zeros(bins).at[index].add(1.0)
        centres = low + (jnp.arange(bins) + 0.5) * span / bins
        below = jnp.cumsum(counts)
        above = jnp.cumsum(counts[::-1])[::-1]
        mean_below = jnp.cumsum(counts * centres) / jnp.maximum(below, 1.0)
        mean_above = (jnp.cumsum((counts * centres)[::-1]) / jnp.maximum(above[::-1], 1.0))[::-1]
        between = below[:-1] * above[1:] * (mean_below[:-1] - mean_above[1:]) ** 2
        return jnp.where(high > low, centres[jnp.argmax(between)], low)

    return jax.vmap(one)(images)


def binarizer(rule: str, area: float) -> Callable[[jax.Array], jax.Array]:
    """`masks -> masks used for compositing` for a `BINARIZE` rule (`area`: the quantile rule's share)."""
    if rule not in BINARIZE:
        raise ValueError(f"unknown mask binarisation {rule!r}; choose one of {BINARIZE}")

    def per_image(thresholds: jax.Array, masks: jax.Array) -> jax.Array:
        return (masks >= thresholds.reshape(-1, 1, 1, 1)).astype(masks.dtype)

    rules = {
        "soft": lambda m: m,
        "0.5": lambda m: (m >= 0.5).astype(m.dtype),
        "otsu": lambda m: per_image(otsu_thresholds(m), m),
        "quantile": lambda m: per_image(jnp.quantile(m.reshape(m.shape[0], -1), 1.0 - area, axis=1), m),
    }
    return rules[rule]


def composite(images: jax.Array, masks: jax.Array, backgrounds: jax.Array) -> jax.Array:
    """m * x + b * (1 - m): the object where the mask is 1, the background where it is 0."""
    return masks * images + backgrounds * (1.0 - masks)


def iou(masks: jax.Array, true_masks: jax.Array) -> jax.Array:
    """Per-image intersection over union of masks (>= 0.5) with the true masks (> 0.5); 1 when both are empty."""
    predicted, true = masks >= 0.5, true_masks > 0.5
    intersection = jnp.sum(predicted & true, axis=(1, 2, 3))
    union = jnp.sum(predicted | true, axis=(1, 2, 3))
    return jnp.where(union > 0, intersection / jnp.maximum(union, 1), 1.0)
