"""Deconvolution with the true kernel: PSNR on a real photograph, Richardson-Lucy against
skimage and a scipy.ndimage loop, exact inversion, batching, lookup by name."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.data
import skimage.restoration
import skimage.transform

from ctxfuse_jax import degrade
from ctxfuse_jax.degrade import blurring, deconvolution, kernels, protocol

SIZE = 96
DISK = {"radius": 2.25}  # 7 x 7, symmetric about both axes.
# One-sided streak, 7 x 7: no symmetry at all, so a missing flip or shift shows.
STREAK = {"radius": 1.5, "sigma": 1.0, "angle": 30.0}


def psnr(image, reference):
    error = np.asarray(image, np.float64) - np.asarray(reference, np.float64)
    return 10 * np.log10(1.0 / np.mean(error**2))


@pytest.fixture(scope="module")
def sharp():
    """skimage's astronaut at 96 x 96, float32 in [0, 1], as a batch of one."""
    image = skimage.transform.resize(skimage.data.astronaut(), (SIZE, SIZE), anti_aliasing=True)
    return jnp.asarray(image[None], jnp.float32)


def disk():
    return kernels.kernel("disk", **DISK)[None]


def streak():
    return kernels.kernel("imagenet_c_motion", **STREAK)[None]


def ndimage_richardson_lucy(observed, kernel, num_iter):
    """The textbook loop in float64 on scipy's 'reflect' border (the blur's border)."""
    kernel = np.asarray(kernel, np.float64)[:, :, None]
    estimate = np.full(observed.shape, 0.5)
    for _ in range(num_iter):
        reblurred = ndi.convolve(estimate, kernel, mode="reflect")
        estimate = estimate * ndi.correlate(observed / (reblurred + 1e-12), kernel, mode="reflect")
    return np.clip(estimate, 0.0, 1.0)


# Measured on the 8-bit blurred astronaut: disk 22.08 dB blurred, Wiener 27.30, Richardson-Lucy
# 27.05; streak 23.65 blurred, Wiener 41.73, Richardson-Lucy 44.92. Thresholds a little below.
# Wiener on the blur's own grid (kernel-radius padding, whose wrap-around rings) gave 19.2 dB on
# the disk; without the conjugate, 18.3 dB on the streak.
@pytest.mark.parametrize(
    "method, kernel, least_psnr, least_gain",
    [
        ("wiener", disk, 27.0, 5.0),
        ("richardson_lucy", disk, 26.7, 4.7),
        ("wiener", streak, 41.0, 17.5),
        ("richardson_lucy", streak, 44.0, 20.5),
    ],
)
def test_deblurring_a_photograph_gains_psnr(sharp, method, kernel, least_psnr, least_gain):
    blurred = protocol.quantize(blurring.convolve(sharp, kernel()))
    restored = degrade.deconvolve(method, blurred, kernel())
    assert restored.shape == sharp.shape and restored.dtype == jnp.float32
    assert 0.0 <= float(restored.min()) and float(restored.max()) <= 1.0
    assert psnr(restored, sharp) > least_psnr
    assert psnr(restored, sharp) > psnr(blurred, sharp) + least_gain


def test_wiener_inverts_a_noiseless_disk_blur(sharp):
    """The mirror extension makes a reflect-bordered disk blur exactly periodic, so with no
    noise and a tiny regulariser the inverse filter gives the sharp image back (60.9 dB
    measured; 7 dB on the blur's own grid, a shifted kernel gives under 20 dB)."""
    blurred = blurring.convolve(sharp, disk())
    assert psnr(deconvolution.wiener(blurred, disk(), 1e-8), sharp) > 58.0


def test_wiener_with_a_delta_kernel_is_the_identity(sharp):
    delta = kernels.kernel("disk", radius=0.0, support=7)[None]
    np.testing.assert_allclose(deconvolution.wiener(sharp, delta, 0.0), sharp, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 41, 30, 3), (1, 23, 17, 1)])  # odd sides too
def test_richardson_lucy_matches_an_ndimage_loop(shape):
    """On the full image, borders included: the same model and the same 30 iterations."""
    observed = np.random.default_rng(0).random(shape)
    out = deconvolution.richardson_lucy(jnp.asarray(observed, jnp.float32), streak(), 30)
    reference = ndimage_richardson_lucy(observed[0], streak()[0], 30)
    np.testing.assert_allclose(np.asarray(out)[0], reference, atol=2e-6)


def test_richardson_lucy_matches_skimage_away_from_the_borders(sharp):
    """skimage pads with zeros; n iterations carry its border at most 2 r n pixels inwards."""
    observed = np.asarray(protocol.quantize(blurring.convolve(sharp, streak())))[0]
    num_iter, r = 5, streak().shape[-1] // 2
    out = np.asarray(deconvolution.richardson_lucy(jnp.asarray(observed[None]), streak(), num_iter))
    reference = np.stack(
        [
            skimage.restoration.richardson_lucy(
                observed[..., c].astype(np.float64), np.asarray(streak()[0]), num_iter, clip=False
            )
            for c in range(observed.shape[-1])
        ],
        axis=-1,
    )
    m = 2 * r * num_iter
    np.testing.assert_allclose(out[0, m:-m, m:-m], np.clip(reference, 0, 1)[m:-m, m:-m], atol=2e-6)


@pytest.mark.parametrize("method", deconvolution.METHODS)
def test_each_image_is_deblurred_with_its_own_kernel(sharp, method):
    images = jnp.concatenate([sharp, sharp[:, ::-1]])
    pair = jnp.concatenate([disk(), streak()])
    blurred = protocol.quantize(blurring.convolve(images, pair))
    together = np.asarray(degrade.deconvolve(method, blurred, pair))
    for i in range(2):
        alone = np.asarray(degrade.deconvolve(method, blurred[i : i + 1], pair[i : i + 1]))
        np.testing.assert_allclose(together[i], alone[0], atol=1e-6)
    assert not np.allclose(together[0], together[1][::-1], atol=1e-2)  # the kernels did differ


@pytest.mark.parametrize(
    "method, options, expected",
    [
        ("richardson_lucy", {}, 0.7),
        ("wiener", {"noise_to_signal": 0.05}, 0.7 / 1.05),  # DC gain 1 / (1 + noise_to_signal)
    ],
)
def test_a_constant_image_stays_constant(method, options, expected):
    constant = jnp.full((2, 20, 26, 3), 0.7, jnp.float32)
    out = degrade.deconvolve(method, constant, jnp.concatenate([disk(), streak()]), **options)
    np.testing.assert_allclose(np.asarray(out), expected, atol=1e-5)


def test_a_regulariser_sweep_compiles_once(compilations, sharp):
    deconvolution.wiener(sharp, disk(), 1e-2).block_until_ready()
    before = len(compilations)
    for noise_to_signal in (1e-3, 3e-2, 0.1):
        deconvolution.wiener(sharp, disk(), noise_to_signal).block_until_ready()
    jax.jit(lambda x, nsr: degrade.deconvolve("wiener", x, disk(), noise_to_signal=nsr))(sharp, 0.1)
    assert len(compilations) == before + 1  # only the outer jit


def test_unknown_method_lists_the_valid_ones(sharp):
    with pytest.raises(KeyError, match="valid: wiener, richardson_lucy"):
        degrade.deconvolve("lucy", sharp, disk())
