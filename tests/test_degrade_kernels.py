"""Blur kernels against closed forms and independent references; camera-shake banks."""

import math

import numpy as np
import pytest
import scipy.ndimage as ndi

from ctxfuse_jax.degrade import kernels, shake

SUPPORT = 41
PARAMETRIC = {
    "gaussian": {"sigma": 2.5},
    "disk": {"radius": 4.0},
    "motion": {"length": 8.0, "angle": 30.0},
    "imagenet_c_motion": {"radius": 4.0, "sigma": 3.0, "angle": 20.0},
}


def _kernel(family, **params):
    return np.asarray(kernels.kernel(family, SUPPORT, **params))


@pytest.mark.parametrize("family", PARAMETRIC)
def test_unit_sum_float32_and_support(family):
    k = _kernel(family, **PARAMETRIC[family])
    assert k.dtype == np.float32 and k.shape == (SUPPORT, SUPPORT)
    assert k.sum() == pytest.approx(1.0, abs=1e-6)
    assert (k >= 0).all()
    # The smallest support keeps all the weight.
    tight = kernels.support_for(family, **PARAMETRIC[family])
    assert np.asarray(kernels.kernel(family, tight, **PARAMETRIC[family])).sum() == pytest.approx(1)
    r = (SUPPORT - tight) // 2
    np.testing.assert_array_equal(k[:r], 0)
    np.testing.assert_array_equal(k[:, :r], 0)


@pytest.mark.parametrize(
    "family, zero",
    [
        ("gaussian", {"sigma": 0.0}),
        ("disk", {"radius": 0.0}),
        ("motion", {"length": 0.0, "angle": 37.0}),
        ("imagenet_c_motion", {"radius": 0.0, "sigma": 3.0, "angle": 10.0}),
    ],
)
def test_strength_zero_is_a_delta(family, zero):
    k = _kernel(family, **zero)
    delta = np.zeros_like(k)
    delta[SUPPORT // 2, SUPPORT // 2] = 1
    np.testing.assert_array_equal(k, delta)


@pytest.mark.parametrize("family", ["gaussian", "disk", "motion"])
def test_centred_kernels_are_point_symmetric(family):
    k = _kernel(family, **PARAMETRIC[family])
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-7)


@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.5, 7.0, 12.0])
def test_gaussian_matches_scipy_impulse_response(sigma):
    impulse = np.zeros((SUPPORT * 3, SUPPORT * 3))
    impulse[impulse.shape[0] // 2, impulse.shape[1] // 2] = 1
    reference = ndi.gaussian_filter(impulse, sigma, mode="constant")
    support = kernels.support_for("gaussian", sigma=sigma)
    c, r = impulse.shape[0] // 2, support // 2
    np.testing.assert_allclose(
        np.asarray(kernels.kernel("gaussian", sigma=sigma)),
        reference[c - r : c + r + 1, c - r : c + r + 1],
        atol=1e-7,
    )
    assert support == 2 * int(4 * sigma + 0.5) + 1  # scipy's radius.


def test_disk_edge_approximates_pixel_coverage():
    radius, samples = 6.0, 32
    # Reference: the fraction of each pixel inside the disk, by supersampling.
    sub = (np.arange(samples) + 0.5) / samples - 0.5
    grid = kernels.offsets(SUPPORT)
    y = grid[:, None, None, None] + sub[None, None, :, None]
    x = grid[None, :, None, None] + sub[None, None, None, :]
    coverage = (y**2 + x**2 <= radius**2).mean(axis=(2, 3))
    k = _kernel("disk", radius=radius)
    peak = k.max()
    assert np.abs(k / peak - coverage).max() < 0.15
    assert (k / peak).sum() == pytest.approx(math.pi * radius**2, rel=0.02)
    d = np.hypot(grid[:, None], grid[None, :])
    np.testing.assert_array_equal(k[d <= radius - 0.5], peak)  # Flat inside,
    np.testing.assert_array_equal(k[d >= radius + 0.5], 0)  # zero outside.


@pytest.mark.parametrize("length", [4, 5, 8])
def test_motion_horizontal_and_vertical_are_centred_boxes(length):
    h = _kernel("motion", length=length, angle=0.0)
    v = _kernel("motion", length=length, angle=90.0)
    c = SUPPORT // 2
    row = np.clip(length / 2 + 0.5 - np.abs(kernels.offsets(SUPPORT)), 0, 1) / length
    np.testing.assert_allclose(h[c], row, atol=1e-7)
    assert h.sum() == pytest.approx(h[c].sum())  # Single pixel width.
    np.testing.assert_allclose(v, h.T, atol=1e-7)
    if length % 2:  # Odd lengths are exactly scipy's uniform_filter box.
        impulse = np.zeros(SUPPORT)
        impulse[c] = 1
        np.testing.assert_allclose(h[c], ndi.uniform_filter1d(impulse, length), atol=1e-7)


def test_motion_angle_rotates_the_kernel():
    k = _kernel("motion", length=9.0, angle=25.0)
    np.testing.assert_allclose(np.rot90(k), _kernel("motion", length=9.0, angle=115.0), atol=1e-6)
    # Within one pixel of the line through the centre along (row, col) = (-sin, cos).
    rows, cols = np.meshgrid(kernels.offsets(SUPPORT), kernels.offsets(SUPPORT), indexing="ij")
    theta = math.radians(25)
    across = np.abs(rows * math.cos(theta) + cols * math.sin(theta))
    assert (k[across >= 1] == 0).all()
    assert k[across < 0.5].sum() > 0.5


def test_imagenet_c_motion_matches_its_tap_positions():
    radius, sigma, angle = 5, 3.0, 23.0
    k = _kernel("imagenet_c_motion", radius=radius, sigma=sigma, angle=angle)
    # imagecorruptions: tap i samples (ceil(i sin a - .5), ceil(i cos a - .5)) with a = -angle.
    expected = np.zeros_like(k, dtype=np.float64)
    a = math.radians(-angle)
    for i in range(2 * radius + 1):
        dy, dx = math.ceil(i * math.sin(a) - 0.5), math.ceil(i * math.cos(a) - 0.5)
        expected[SUPPORT // 2 - dy, SUPPORT // 2 - dx] += math.exp(-(i**2) / (2 * sigma**2))
    np.testing.assert_allclose(k, expected / expected.sum(), atol=1e-7)


def test_unknown_family_and_wrong_parameters_raise():
    with pytest.raises(KeyError, match="valid: gaussian, disk, motion"):
        kernels.get_family("box")
    with pytest.raises(ValueError, match=r"takes parameters \('length', 'angle'\)"):
        kernels.kernel("motion", length=4.0)
    with pytest.raises(ValueError, match="odd"):
        kernels.kernel("disk", 8, radius=2.0)
    with pytest.raises(ValueError, match="bank"):
        kernels.kernel("shake", index=0)


def test_shake_banks_are_deterministic_distinct_and_valid():
    validation = shake.shake_bank("validation")
    assert validation.shape == (100, shake.SUPPORT, shake.SUPPORT)
    assert validation.dtype == np.float32
    np.testing.assert_allclose(validation.sum(axis=(1, 2)), 1.0, atol=1e-6)
    assert (validation >= 0).all()
    # Kernel i depends on (seed, i) only: regenerated alone it is the same.
    seed, _ = shake.BANKS["validation"]
    for i in (0, 17, 99):
        np.testing.assert_array_equal(shake.shake_kernel(seed, i), validation[i])
    # Centred: the centroid lies within half a pixel of the middle.
    grid = kernels.offsets(shake.SUPPORT)
    assert np.abs((validation * grid[:, None]).sum(axis=(1, 2))).max() <= 0.5
    assert np.abs((validation * grid[None, :]).sum(axis=(1, 2))).max() <= 0.5
    # Real trajectories; 10,100 different kernels, none shared between the two banks.
    assert ((validation > 0).sum(axis=(1, 2)) > 1).mean() > 0.95
    train = shake.shake_bank("train")
    assert train.shape == (10_000, shake.SUPPORT, shake.SUPPORT)
    np.testing.assert_array_equal(train[1234], shake.shake_kernel(shake.BANKS["train"][0], 1234))
    assert len({k.tobytes() for k in np.concatenate([validation, train])}) == 10_100
    with pytest.raises(KeyError, match="valid: validation, train"):
        shake.shake_bank("test")


def test_resampled_shake_kernels_keep_their_sum_centroid_and_spread():
    """Splatting a trajectory into a grid `scale` times as fine keeps the unit sum, moves the centroid
    to `scale` times its offset and scales the spread (second moment) by `scale`**2 (within the
    bilinear splat's own 1/6 px^2 variance per axis)."""
    from ctxfuse_jax.degrade import shake

    bank = shake.shake_bank("validation")[:20]
    np.testing.assert_array_equal(shake.resample(bank, 1.0), bank)
    scale = 108 / 384
    small = shake.resample(bank, scale)
    assert small.shape == (20, 11, 11)  # reach ceil(0.28125 * 15) = ceil(4.22) = 5

    def moments(kernels):
        offsets = np.arange(kernels.shape[-1]) - kernels.shape[-1] // 2
        mean_y = np.einsum("nij,i->n", kernels, offsets)
        var_y = np.einsum("nij,i->n", kernels, offsets**2) - mean_y**2
        return mean_y, var_y

    np.testing.assert_allclose(small.sum(axis=(1, 2)), 1.0, atol=1e-6)
    (mean, var), (small_mean, small_var) = moments(bank), moments(small)
    np.testing.assert_allclose(small_mean, scale * mean, atol=1e-5)
    assert np.all(small_var >= scale**2 * var - 1e-5)
    assert np.all(small_var <= scale**2 * var + 0.25 + 1e-5)


def test_kernel_scale_multiplies_lengths_and_the_support_follows():
    """A paper's D8 on images 108/384 of its size is a disk of radius 2.25; a bank's support shrinks."""
    from ctxfuse_jax.degrade import blurring, presets, shake

    scale = 108 / 384
    assert kernels.support_for("disk", scale, radius=8) == kernels.support_for("disk", radius=2.25) == 7
    assert kernels.support_for("shake", scale, index=0) == shake.resample(shake.shake_bank("validation")[:1],
                                                                          scale).shape[-1]
    params = blurring.blur_params("disk", 2, kernel_scale=scale, radius=8)
    np.testing.assert_allclose(blurring.make_kernels(params)[0], kernels.kernel("disk", radius=2.25), atol=1e-7)
    d8 = presets.at_scale(presets.get_preset("vasiljevic/defocus")["D8"], 108, scale)
    assert (d8.scale, d8.support) == (108, 7)
