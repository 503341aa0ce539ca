"""Calibration and corruption errors from per-example predictions.

Expected calibration error (Guo et al. 2017, "On calibration of modern neural networks", eq. 3):
predictions are put in M = 15 equal-width bins by their confidence (max softmax probability), bin m
holding confidences in ((m - 1) / M, m / M]; ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|, the gap
between accuracy and mean confidence of each bin weighted by the bin's share of the predictions.

Corruption error (Hendrycks & Dietterich 2019, ImageNet-C, section 4): with E(f, s, c) the top-1
error of classifier f at severity s of corruption c, CE_c(f) = sum_s E(f, s, c) / sum_s E(b, s, c)
for a baseline classifier b (AlexNet in the paper), and mCE(f) = mean over corruptions of CE_c(f).
Relative CE measures the drop from the clean error instead: sum_s (E(f, s, c) - E_clean(f)) /
sum_s (E(b, s, c) - E_clean(b)). All in percent, so the baseline's mCE is 100. A ratio whose
denominator is 0 (a baseline never wrong, or no worse than clean) is undefined: NaN, and so is
the mean over corruptions of a classifier with one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

ECE_BINS = 15


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE of predictions with `confidence` in (0, 1] and whether each was `correct` (see the module)."""
    confidence = np.asarray(confidence, np.float64)
    correct = np.asarray(correct, np.float64)
    if confidence.shape != correct.shape or confidence.ndim != 1 or not len(confidence):
        raise ValueError(f"confidence {confidence.shape} and correct {correct.shape} must be one non-empty vector each")
    # Bin m (0-based) holds (m / M, (m + 1) / M]: a confidence on an edge goes to the bin below it.
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    accuracy = np.bincount(index, correct, minlength=bins)
    mean_confidence = np.bincount(index, confidence, minlength=bins)
    filled = count > 0
    gaps = np.abs(accuracy[filled] - mean_confidence[filled]) / count[filled]
    return float(np.sum(count[filled] / len(confidence) * gaps))


def _ratio(numerator: float, denominator: float) -> float:
    return float(100.0 * (numerator / denominator)) if denominator != 0 else float("nan")  # x / x is 1 exactly


def corruption_error(errors: Sequence[float], baseline_errors: Sequence[float]) -> float:
    """CE_c in percent: the classifier's errors over the severities of one corruption, summed, over the
    baseline's."""
    errors, baseline_errors = np.asarray(errors, np.float64), np.asarray(baseline_errors, np.float64)
    if errors.shape != baseline_errors.shape or errors.ndim != 1:
        raise ValueError(f"errors {errors.shape} and baseline errors {baseline_errors.shape}: one per severity each")
    return _ratio(errors.sum(), baseline_errors.sum())


def relative_corruption_error(errors: Sequence[float], clean_error: float, baseline_errors: Sequence[float],
                              baseline_clean_error: float) -> float:
    """Relative CE_c in percent: the rise of the error over the clean error, against the baseline's."""
    errors, baseline_errors = np.asarray(errors, np.float64), np.asarray(baseline_errors, np.float64)
    return corruption_error(errors - clean_error, baseline_errors - baseline_clean_error)


def mean_corruption_error(errors: Mapping[str, Sequence[float]], baseline: Mapping[str, Sequence[float]],
                          clean_error: float | None = None, baseline_clean_error: float | None = None
                          ) -> tuple[dict[str, float], float]:
    """({corruption: CE_c}, mCE) over the corruptions of `errors` ({corruption: error per severity});
    relative CE and mCE when both clean errors are given."""
    if set(errors) != set(baseline):
        raise ValueError(f"corruptions {sorted(errors)} and the baseline's {sorted(baseline)} differ")
    relative = clean_error is not None
    if relative and baseline_clean_error is None:
        raise ValueError("relative mCE needs the baseline's clean error too")
    per = {c: (relative_corruption_error(e, clean_error, baseline[c], baseline_clean_error) if relative
               else corruption_error(e, baseline[c])) for c, e in errors.items()}
    if not per:
        raise ValueError("no corruptions to average")
    return per, float(np.mean(list(per.values())))
