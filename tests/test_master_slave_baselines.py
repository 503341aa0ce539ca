"""Table 1's baselines: the stability term and the DeepCloak-style mask, against hand-worked numbers."""

import numpy as np
import pytest

from ctxfuse_jax.experiments.master_slave import baselines


def test_stability_divergence_is_the_kl_divergence_of_the_two_softmaxes():
    clean = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]], np.float32)
    perturbed = np.array([[0.0, 1.0, 0.0], [0.5, 0.5, 0.5]], np.float32)
    p = np.exp(clean) / np.exp(clean).sum(-1, keepdims=True)
    q = np.exp(perturbed) / np.exp(perturbed).sum(-1, keepdims=True)
    expected = (p * np.log(p / q)).sum(-1)
    got = np.asarray(baselines.stability_divergence(clean, perturbed))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got[1] == 0.0 and got[0] > 0  # equal predictions cost nothing
    # Not symmetric: KL(p || q), the clean prediction as the reference.
    assert not np.isclose(np.asarray(baselines.stability_divergence(perturbed, clean))[0], got[0])


def test_the_mask_zeroes_the_features_the_degradation_changes_most():
    clean = np.zeros((2, 2, 10))  # (images, positions, features)
    degraded = clean.copy()
    degraded[..., 3] = 5.0  # changed most
    degraded[0, 0, 7] = 8.0  # mean change 2.0: second
    degraded[..., 1] = -1.0  # mean change 1.0: third
    mask = baselines.most_changed_mask(clean, degraded, fraction=0.25)  # floor(2.5) = 2 features
    np.testing.assert_array_equal(np.flatnonzero(mask == 0), [3, 7])
    assert mask.dtype == np.float32 and mask.shape == (10,)
    # A fraction too small for one feature still masks the most changed one.
    np.testing.assert_array_equal(np.flatnonzero(baselines.most_changed_mask(clean, degraded, 0.01) == 0), [3])


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_the_mask_refuses_a_fraction_outside_the_open_unit_interval(fraction):
    with pytest.raises(ValueError, match="fraction"):
        baselines.most_changed_mask(np.zeros((1, 4)), np.ones((1, 4)), fraction)


def test_per_class_masks_mask_what_changes_on_each_class_own_images():
    clean = np.zeros((5, 4))
    degraded = clean.copy()
    degraded[[0, 1], 1] = 3.0  # class 0's images change in feature 1
    degraded[[2, 3], 3] = 2.0  # class 1's in feature 3
    masks = baselines.per_class_masks(clean, degraded, np.array([0, 0, 1, 1, 3]), 4, 0.25)
    np.testing.assert_array_equal(masks, [[1, 0, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1], [0, 1, 1, 1]])
    # class 2 has no images: nothing masked; class 3's one image changes nowhere: the tie goes to feature 0
    with pytest.raises(ValueError, match=r"labels \(2,\) do not fit 5 images"):
        baselines.per_class_masks(clean, degraded, np.array([0, 1]), 4, 0.25)
