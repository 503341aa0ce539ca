"""Table 1's baselines beside the master-slave network, as losses and masks.

Stability training (Zheng et al. 2016) fine-tunes on clean images x with an extra term that keeps
the prediction on a perturbed copy x' = x + N(0, sigma^2) close to the prediction on x: for
classification, the KL divergence D(P(y|x) || P(y|x')). Feature masking follows DeepCloak (Gao et
al. 2017): the features a degradation changes most are the ones an adversary (here, the codec)
controls, so they are removed, here by zeroing a fixed fraction of them at one layer. Ghosh et al.
found DeepCloak class dependent and applied it per class: `per_class_masks` gives each class the
mask of its own images, picked at inference by the true label (an oracle, as in their Table 1).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np


def stability_divergence(clean_logits: jax.Array, perturbed_logits: jax.Array) -> jax.Array:
    """Per example, KL(softmax(clean) || softmax(perturbed)) in nats: Zheng et al.'s L_stability for
    classification. Both sides are differentiated, as in their Eq. 4."""
    log_p = jax.nn.log_softmax(clean_logits.astype(jnp.float32), axis=-1)
    log_q = jax.nn.log_softmax(perturbed_logits.astype(jnp.float32), axis=-1)
    return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


def most_changed_mask(clean: np.ndarray, degraded: np.ndarray, fraction: float) -> np.ndarray:
    """A float mask over the last axis of (images, ..., features) activations: 0 for the `fraction`
    of features (at least one) whose mean absolute change from `clean` to `degraded` is largest,
    1 for the others. Ties are broken by feature index (the lower one is masked first)."""
    if clean.shape != degraded.shape:
        raise ValueError(f'clean {clean.shape} and degraded {degraded.shape} activations differ in shape')
    if not 0 < fraction < 1:
        raise ValueError(f'the masked fraction must be in (0, 1), got {fraction}')
    change = np.abs(np.asarray(clean, np.float64) - np.asarray(degraded, np.float64))
    change = change.reshape(-1, change.shape[-1]).mean(axis=0)
    count = max(1, math.floor(fraction * change.size))
    masked = np.argsort(-change, kind='stable')[:count]
    mask = np.ones(change.size, np.float32)
    mask[masked] = 0.0
    return mask


def per_class_masks(clean: np.ndarray, degraded: np.ndarray, labels: np.ndarray, num_classes: int,
                    fraction: float) -> np.ndarray:
    """(num_classes, features): row c is `most_changed_mask` of class c's images alone; a class
    without images keeps every feature (row of ones)."""
    labels = np.asarray(labels)
    if labels.shape != clean.shape[:1]:
        raise ValueError(f'labels {labels.shape} do not fit {clean.shape[0]} images')
    masks = np.ones((num_classes, clean.shape[-1]), np.float32)
    for c in np.unique(labels):
        chosen = labels == c
        masks[c] = most_changed_mask(clean[chosen], degraded[chosen], fraction)
    return masks
