"""Classification losses and per-example metrics; hyper-parameters come from the caller's config."""

import jax
import jax.numpy as jnp
import optax


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Per-example cross entropy against integer labels, optionally with label smoothing."""
    num_classes = logits.shape[-1]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def correct(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)


def entropy(logits: jax.Array) -> jax.Array:
    """Per-example entropy (nats) of the predicted distribution; rises as blur confuses a model."""
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


def in_top_k(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
    """Per-example bool: is the label among the `k` highest logits (a tie counts in its favour)?

    Counts the classes scoring strictly higher than the label's, so no sort is needed.
    """
    label_logit = jnp.take_along_axis(logits, labels[:, None].astype(jnp.int32), axis=-1)
    return jnp.sum(logits > label_logit, axis=-1) < k
