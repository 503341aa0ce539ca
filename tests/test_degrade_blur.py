"""Batched blur on device against scipy.ndimage, numpy and dm-pix; compilation; regions."""

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi

from ctxfuse_jax.degrade import blurring, kernels, presets, protocol, regions, shake

BATCH, HEIGHT, WIDTH = 3, 24, 30
DENSE = {
    "disk": {"radius": 3.5},
    "motion": {"length": 7.0, "angle": 35.0},
    "imagenet_c_motion": {"radius": 3.0, "sigma": 2.0, "angle": -20.0},
    "shake": {"index": 7},
}


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((BATCH, HEIGHT, WIDTH, 3), np.float32)


def numpy_convolve(image, kernel):
    """out(x) = sum_u k(u) image(x - u), scipy's 'reflect' border, by shifting and adding."""
    r = kernel.shape[0] // 2
    h, w = image.shape[:2]
    padded = np.pad(image.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="symmetric")
    out = np.zeros(image.shape)
    for (a, b), weight in np.ndenumerate(kernel):
        out += weight * padded[2 * r - a : 2 * r - a + h, 2 * r - b : 2 * r - b + w]
    return out


def test_gaussian_matches_scipy_per_image_sigma(images):
    sigmas = np.array([0.0, 1.3, 12.0], np.float32)  # 0 = identity; 12 reaches past the image.
    out = np.asarray(blurring.blur(images, blurring.blur_params("gaussian", BATCH, sigma=sigmas)))
    np.testing.assert_array_equal(out[0], images[0])
    for image, result, sigma in zip(images, out, sigmas, strict=True):
        reference = ndi.gaussian_filter(image, (sigma, sigma, 0), mode="reflect")
        np.testing.assert_allclose(result, reference, atol=1e-6)


@pytest.mark.parametrize("sigma", [0.8, 2.0, 4.0])
def test_gaussian_matches_dm_pix_on_the_same_border(images, sigma):
    """dm-pix pads with zeros; given the reflect-padded image and 'VALID' it sees our border."""
    r = int(4 * sigma + 0.5)
    padded = np.pad(images, ((0, 0), (r, r), (r, r), (0, 0)), mode="symmetric")
    reference = dm_pix.gaussian_blur(jnp.asarray(padded), sigma, 2 * r + 1, padding="VALID")
    out = blurring.blur(images, blurring.blur_params("gaussian", BATCH, sigma=sigma))
    np.testing.assert_allclose(np.asarray(out), np.asarray(reference), atol=1e-6)


@pytest.mark.parametrize("family", DENSE)
def test_dense_families_match_scipy_and_numpy_convolution(images, family):
    params = blurring.blur_params(family, BATCH, **DENSE[family])
    out = np.asarray(blurring.blur(images, params))
    kernel = np.asarray(blurring.make_kernels(params))[0]
    for image, result in zip(images, out, strict=True):
        np.testing.assert_allclose(
            result, ndi.convolve(image, kernel[:, :, None], mode="reflect"), atol=2e-6
        )
        np.testing.assert_allclose(result, numpy_convolve(image, kernel), atol=2e-6)


def test_horizontal_and_vertical_motion_match_uniform_filter(images):
    for angle, axis in ((0.0, 1), (90.0, 0)):
        params = blurring.blur_params("motion", BATCH, length=5.0, angle=angle)
        out = np.asarray(blurring.blur(images, params))
        reference = ndi.uniform_filter1d(images, 5, axis=axis + 1, mode="reflect")
        np.testing.assert_allclose(out, reference, atol=2e-6)


def test_gaussian_through_the_fft_path_matches_scipy(images):
    """In a batch mixing families, Gaussians are dense kernels convolved by FFT."""
    params = blurring.mix(
        np.array([0, 1, 0]),
        [
            blurring.blur_params("gaussian", BATCH, sigma=2.0, support=19),
            blurring.blur_params("disk", BATCH, radius=2.0, support=19),
        ],
    )
    out = np.asarray(blurring.blur(images, params))
    for i in (0, 2):
        reference = ndi.gaussian_filter(images[i], (2.0, 2.0, 0), mode="reflect")
        np.testing.assert_allclose(out[i], reference, atol=2e-6)


@pytest.mark.parametrize("family", ["gaussian", *DENSE])
def test_constant_image_stays_constant_up_to_the_borders(family):
    constant = jnp.full((2, 16, 20, 3), 0.7, jnp.float32)
    params = blurring.blur_params(family, 2, **{"gaussian": {"sigma": 5.0}, **DENSE}[family])
    np.testing.assert_allclose(np.asarray(blurring.blur(constant, params)), 0.7, atol=1e-6)


def test_per_image_families_match_blurring_each_alone(images):
    options = [
        blurring.blur_params(family, BATCH, support=31, **DENSE[family]) for family in DENSE
    ]
    choice = np.array([3, 0, 1])
    mixed = np.asarray(blurring.blur(images, blurring.mix(choice, options)))
    for i, c in enumerate(choice):
        alone = np.asarray(blurring.blur(images, options[c]))[i]
        np.testing.assert_allclose(mixed[i], alone, atol=1e-6)


def test_one_compilation_serves_a_sweep(compilations):
    x = jnp.zeros((2, 18, 22, 3), jnp.float32)
    support = shake.SUPPORT  # Holds disks up to radius 15 and the shake kernels.
    shakes = blurring.blur_params("shake", 2, index=[0, 5], support=support)
    disks = blurring.blur_params("disk", 2, radius=[2, 9], support=support)
    sweeps = {
        "gaussian": [blurring.blur_params("gaussian", 2, sigma=s) for s in (0, 1, 2, 4, 6, 12)],
        "disk": [blurring.blur_params("disk", 2, radius=r, support=support) for r in (3, 6, 10)],
        # The family of each image changes too.
        "mixed": [blurring.mix(c, [disks, shakes]) for c in ([0, 1], [1, 1], [1, 0])],
    }
    for sweep in sweeps.values():
        blurring.blur(x, sweep[0]).block_until_ready()
        before = len(compilations)
        for params in sweep[1:]:
            blurring.blur(x, params).block_until_ready()
        assert len(compilations) == before
    assert len(compilations) > 0  # The listener does hear compilations.


def test_a_preset_sweep_compiles_once(compilations):
    x = jnp.zeros((2, 16, 16, 3), jnp.float32)
    for name in ("vasiljevic/defocus", "imagenet_c/motion_blur"):
        first, *rest = presets.get_preset(name).levels.values()
        first(x, jax.random.key(0)).block_until_ready()
        before = len(compilations)
        for i, degradation in enumerate(rest):
            degradation(x, jax.random.key(i)).block_until_ready()
        assert len(compilations) == before, name


def test_region_restricted_blur_leaves_the_rest_bit_identical(images):
    blurred = blurring.blur(images, blurring.blur_params("disk", BATCH, radius=4.0))
    boxes = np.array([[0.2, 0.1, 0.7, 0.5], [0.0, 0.0, 1.0, 0.5], [0.5, 0.5, 0.5, 0.9]])
    mask = np.asarray(regions.box_mask(boxes, HEIGHT, WIDTH))
    assert mask[2].sum() == 0  # An empty box blurs nothing.
    for region, inside in (("foreground", mask), ("background", ~mask)):
        out = np.asarray(regions.composite(images, blurred, mask, region))
        inside = np.broadcast_to(inside, images.shape)
        np.testing.assert_array_equal(out[~inside], images[~inside])
        np.testing.assert_array_equal(out[inside], np.asarray(blurred)[inside])
    soft = mask.astype(np.float32) * 0.9  # Float masks: foreground where > 0.5.
    np.testing.assert_array_equal(
        regions.composite(images, blurred, soft, "foreground"),
        regions.composite(images, blurred, mask, "foreground"),
    )
    np.testing.assert_array_equal(regions.composite(images, blurred, None, "all"), blurred)


def test_box_mask_uses_pixel_centres():
    mask = np.asarray(regions.box_mask([[0.25, 0.0, 0.75, 0.5]], 8, 4))[0, :, :, 0]
    expected = np.zeros((8, 4), bool)
    expected[2:6, 0:2] = True
    np.testing.assert_array_equal(mask, expected)


def test_bad_inputs_raise_clear_errors(images):
    with pytest.raises(ValueError, match="need support 9 > 7"):
        blurring.blur_params("disk", BATCH, radius=4.0, support=7)
    with pytest.raises(ValueError, match="smaller than the shake kernels"):
        shakes = blurring.blur_params("shake", BATCH, index=0)
        blurring.blur(images, shakes.replace(support=9))
    with pytest.raises(ValueError, match="valid: all, foreground, background"):
        regions.composite(images, images, None, "object")
    with pytest.raises(ValueError, match="needs a foreground mask"):
        regions.composite(images, images, None, "background")


def test_blur_at_scale_follows_seed_001_protocol():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.random((2, 16, 20, 3), np.float32))
    sharp = blurring.blur_params("disk", 2, radius=0.0)
    # At its own scale with no blur, only the 8-bit quantization remains.
    out = protocol.blur_at_scale(x, sharp, scale=16)
    np.testing.assert_allclose(out, np.round(np.asarray(x) * 255) / 255, atol=1e-7)
    # Through a larger canonical scale: same size back, 8-bit levels, constants preserved.
    blurred = protocol.blur_at_scale(x, blurring.blur_params("disk", 2, radius=4.0), scale=32)
    assert blurred.shape == x.shape
    levels = np.asarray(blurred) * 255
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)
    constant = protocol.blur_at_scale(jnp.full_like(x, 0.4), sharp, scale=32)
    np.testing.assert_allclose(constant, round(0.4 * 255) / 255, atol=1e-6)
    assert float(jnp.std(blurred)) < float(jnp.std(out))


def test_works_under_an_outer_jit_with_traced_strengths(images):
    @jax.jit
    def step(x, sigma):
        params = blurring.blur_params("gaussian", BATCH, sigma=sigma, support=25)
        return blurring.blur(x, params)

    with pytest.raises(ValueError, match="traced: pass support="):
        jax.jit(lambda s: blurring.blur_params("disk", BATCH, radius=s))(jnp.ones(BATCH))
    out = step(images, jnp.array([1.0, 2.0, 3.0]))
    reference = ndi.gaussian_filter(images[1], (2.0, 2.0, 0), mode="reflect")
    np.testing.assert_allclose(np.asarray(out)[1], reference, atol=1e-6)


def test_shake_bank_first_used_inside_jit_serves_later_traces(images):
    blurring._device_bank.cache_clear()  # The bank is first asked for under a trace, as in a train step.
    shaken = presets.Blur("shake", (("index", presets.Uniform(0, 100)),), shake.SUPPORT)
    key = jax.random.key(3)
    first = jax.jit(shaken)(images, key)
    second = jax.jit(shaken)(images[:2], key)  # A new trace reads the cached bank: no leaked tracer.
    assert isinstance(blurring._device_bank("validation"), jax.Array)
    np.testing.assert_allclose(np.asarray(first), np.asarray(shaken(images, key)), atol=1e-6)
    assert second.shape == (2, HEIGHT, WIDTH, 3)
