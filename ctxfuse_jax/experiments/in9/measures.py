"""Seed 004's measures, computed from per-example predictions (numpy only, checked by hand in tests).

- BG-gap: accuracy on Mixed-Same minus accuracy on Mixed-Rand. Both keep the foreground and swap
  the background for one of the same / of a random class, so the gap is what the background's
  class signal was worth.
- Backgrounds challenge (MadryLab/backgrounds_challenge `challenge_eval.py`): a foreground counts as
  correct only if the model classifies it correctly pasted on every background of the bank. A
  background's fooling rate is the share of the foregrounds of *other* classes it makes the model
  get wrong (the number above each image in the challenge's figure).
- Fine-grained split on Mixed-Rand (the paper's section 5): does a prediction follow the
  foreground's class, the background's class, or neither? Images whose donor shares their class
  say nothing about which signal won and are left out.
- Grad-CAM mass: the share of a saliency map inside the foreground mask (the paper's "weight
  allocation" of Original- vs Mixed-Rand-trained models).
"""

from collections.abc import Mapping

import numpy as np


def bg_gap(accuracy: Mapping[str, float]) -> float:
    """Mixed-Same minus Mixed-Rand accuracy (fractions)."""
    return float(accuracy["mixed_same"] - accuracy["mixed_rand"])


def challenge_accuracy(correct: np.ndarray) -> float:
    """Share of foregrounds classified correctly on every background; `correct` is (backgrounds, foregrounds)."""
    return float(np.asarray(correct, bool).all(axis=0).mean())


def fooling_rates(correct: np.ndarray, foreground_labels: np.ndarray, background_labels: np.ndarray) -> np.ndarray:
    """(backgrounds,) share of the other classes' foregrounds each background makes the model get wrong."""
    correct = np.asarray(correct, bool)
    other = np.asarray(background_labels)[:, None] != np.asarray(foreground_labels)[None, :]
    wrong = ~correct & other
    return wrong.sum(axis=1) / np.maximum(other.sum(axis=1), 1)


def most_adversarial(rates: np.ndarray, background_labels: np.ndarray, per_class: int) -> dict[int, np.ndarray]:
    """{class: positions (into `rates`) of its `per_class` most fooling backgrounds, most fooling first}."""
    background_labels = np.asarray(background_labels)
    top = {}
    for label in np.unique(background_labels):
        mine = np.flatnonzero(background_labels == label)
        top[int(label)] = mine[np.argsort(-rates[mine], kind="stable")][:per_class]
    return top


def follows(predictions: np.ndarray, foreground_labels: np.ndarray, background_labels: np.ndarray) -> dict:
    """Shares of predictions equal to the foreground's class, the background's class, or neither.

    Examples whose two classes coincide are left out (`count` says how many remain).
    """
    predictions, fg, bg = (np.asarray(a) for a in (predictions, foreground_labels, background_labels))
    kept = fg != bg
    if not kept.any():
        raise ValueError("every image's background comes from its own class: nothing to tell apart")
    p, fg, bg = predictions[kept], fg[kept], bg[kept]
    return {"foreground": float((p == fg).mean()), "background": float((p == bg).mean()),
            "neither": float(((p != fg) & (p != bg)).mean()), "count": int(kept.sum())}


def mass_inside(heatmaps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(N,) share of each (H, W) heatmap's total inside its (H, W[, 1]) foreground mask (NaN if all zero)."""
    heatmaps = np.asarray(heatmaps, np.float64)
    inside = np.asarray(masks).reshape(heatmaps.shape) > 0.5
    total = heatmaps.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (heatmaps * inside).sum(axis=(1, 2)) / total, np.nan)
