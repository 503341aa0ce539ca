"""Deterministic train/test splits of labelled examples."""

import numpy as np


def stratified_split(labels: np.ndarray, train_fraction: float, seed: int) -> np.ndarray:
    """Boolean train mask holding `train_fraction` of every class (rounded half up).

    `labels` are non-negative integer class indices.

    Each class draws its permutation from its own generator, seeded by (seed, class), so one class's
    split does not change when other classes are added or removed. The result depends on the order
    of `labels`: callers that want it independent of read order sort their examples first.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction}.")
    labels = np.asarray(labels)
    is_train = np.zeros(labels.shape, bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        num_train = int(np.floor(train_fraction * members.size + 0.5))
        chosen = np.random.default_rng([seed, int(label)]).permutation(members)[:num_train]
        is_train[chosen] = True
    return is_train
