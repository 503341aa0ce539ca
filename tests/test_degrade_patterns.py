"""Seed 002's test backgrounds against hand-derived pixels and scikit-image's own drawing and dilation.

The dilation reference is scipy's binary_dilation with skimage's disk footprint: what
skimage.morphology.binary_dilation (deprecated in 0.26) computes.
"""

import numpy as np
import pytest
import skimage.color
import skimage.data
import skimage.draw
import skimage.morphology
import skimage.transform
from scipy import ndimage

from ctxfuse_jax.data.embedded import scenes
from ctxfuse_jax.degrade import patterns


def grey(name, size):
    return patterns.pattern(name, size)[..., 0]


def runs(row):
    """(start, length) of each run of lit pixels in a 1-D 0/1 row."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], row, [0]])))
    return list(zip(edges[::2].tolist(), np.diff(edges)[::2].tolist()))


def test_stripes_are_2_px_lines_of_slope_1_every_10_px():
    image = grey("stripes", 28)
    # The authors' first line y = x - 27 passes the top-right corner; lines follow every 10 px.
    assert runs(image[0]) == [(6, 2), (16, 2), (26, 2)]
    np.testing.assert_array_equal(image[1:, 1:], image[:-1, :-1])  # slope 1
    y, x = np.mgrid[:28, :28]
    np.testing.assert_array_equal(image, np.isin((y - x) % 10, [3, 4]))
    for row in image:  # lines not cut by the image's edge: 2 px, 10 px apart
        inner = [(start, length) for start, length in runs(row) if 0 < start and start + length < 28]
        assert len(inner) >= 1 and all(length == 2 for _, length in inner)
        assert np.all(np.diff([start for start, _ in inner]) == 10)


def test_checkerboard_squares_of_6_from_minus_2_alternate():
    image = grey("checkerboard", 28)
    # Cells start at -2, 4, 10, 16, 22: the first row and column of cells is 4 px, the others 6.
    edges = [0, 4, 10, 16, 22, 28]
    for i in range(5):
        for j in range(5):
            cell = image[edges[i] : edges[i + 1], edges[j] : edges[j + 1]]
            np.testing.assert_array_equal(cell, (i + j) % 2)
    assert image[0, 0] == 0 and image.sum() == 384


def test_border_is_a_2_px_frame():
    image = grey("border", 28)
    inner = np.zeros((28, 28), bool)
    inner[2:26, 2:26] = True
    np.testing.assert_array_equal(image[inner], 0)
    np.testing.assert_array_equal(image[~inner], 1)
    assert image.sum() == 28 * 28 - 24 * 24


def perimeters(size, centres, radii):
    image = np.zeros((size, size), np.float32)
    for centre in centres:
        for radius in radii:
            image[skimage.draw.circle_perimeter(*centre, radius)] = 1
    return image


def test_circles_are_skimages_perimeters_8_px_from_the_corners():
    corners = [(8, 8), (20, 8), (8, 20), (20, 20)]
    np.testing.assert_array_equal(grey("circles", 28), perimeters(28, corners, [6]))
    # 64 px: shift 8 * 64 / 28 = 18.3 -> 18, radius 13.7 -> 14.
    corners = [(18, 18), (46, 18), (18, 46), (46, 46)]
    np.testing.assert_array_equal(grey("circles", 64), perimeters(64, corners, [14]))


def clock_reference(size, radii, half_width, length):
    """The authors' construction: circle perimeters and skimage.draw.rectangle ticks (inclusive ends)."""
    image = perimeters(size, [(size // 2, size // 2)], radii)
    c, w, h = size // 2, half_width, length
    for start, end in [
        ((c - w, 0), (c + w, h)),
        ((c - w, size - h), (c + w, size - 1)),
        ((0, c - w), (h, c + w)),
        ((size - h, c - w), (size - 1, c + w)),
    ]:
        image[skimage.draw.rectangle(start, end)] = 1
    return image


def test_clock_is_two_circles_and_four_ticks():
    image = grey("clock", 28)
    np.testing.assert_array_equal(image, clock_reference(28, [13, 12], 1, 6))
    # Ticks by hand: 3 rows across, 7 px in from the left and top edges, 6 from the right and bottom.
    np.testing.assert_array_equal(image[13:16, :7], 1)
    np.testing.assert_array_equal(image[13:16, 22:], 1)
    np.testing.assert_array_equal(image[:7, 13:16], 1)
    np.testing.assert_array_equal(image[22:, 13:16], 1)
    for gap in (image[13:16, 7:12], image[13:16, 17:22], image[7:12, 13:16], image[17:22, 13:16]):
        np.testing.assert_array_equal(gap, 0)
    np.testing.assert_array_equal(image[[12, 16], 3:7], 0)  # the circles are at columns 1, 2
    # 64 px: ring 2 * 64 / 28 -> 5 outlines (radii 31..27), tick width 5 (half 2), length 14.
    np.testing.assert_array_equal(grey("clock", 64), clock_reference(64, [31, 30, 29, 28, 27], 2, 14))


def test_patterns_scale_with_the_image_at_64_px():
    stripes = grey("stripes", 64)
    # Thickness 2 -> 5, interspace 8 -> 18: period 23; the first line passes the top-right corner.
    assert runs(stripes[0]) == [(13, 5), (36, 5), (59, 5)]
    np.testing.assert_array_equal(stripes[1:, 1:], stripes[:-1, :-1])
    # Square 6 -> 14, origin -2 -> -5: cells 9 px, then 14 px wide.
    checkerboard = grey("checkerboard", 64)
    assert runs(checkerboard[0]) == [(9, 14), (37, 14)]
    assert runs(checkerboard[:, 0]) == [(9, 14), (37, 14)]
    assert runs(checkerboard[9]) == [(0, 9), (23, 14), (51, 13)]
    border = grey("border", 64)
    assert runs(border[5]) == [(0, 5), (59, 5)] and border.sum() == 64 * 64 - 54 * 54


@pytest.mark.parametrize("rate", [0.0, 0.03, 0.07, 0.25, 0.5, 1.0])
def test_salt_pepper_sets_exactly_the_authors_count(rate):
    image = patterns.pattern("salt_pepper", 28, rate=rate)
    assert image.sum() == int(28 * 28 * rate) and set(np.unique(image)) <= {0.0, 1.0}


def test_salt_pepper_is_reproducible_by_seed():
    first = patterns.salt_pepper(64, 3, rate=0.1, seed=7)
    np.testing.assert_array_equal(first, patterns.salt_pepper(64, 3, rate=0.1, seed=7))
    assert not np.array_equal(first, patterns.salt_pepper(64, 3, rate=0.1, seed=8))
    np.testing.assert_array_equal(first[..., 0], first[..., 2])  # one mask in every channel
    with pytest.raises(ValueError, match="rate"):
        patterns.salt_pepper(28, rate=1.5)


@pytest.mark.parametrize("name", [name for name in patterns.PATTERNS if name != "texture"])
def test_patterns_are_binary_float32_broadcast_to_channels(name):
    image = patterns.pattern(name, 64, channels=3)
    assert image.shape == (64, 64, 3) and image.dtype == np.float32
    assert set(np.unique(image)) == {0.0, 1.0}
    np.testing.assert_array_equal(image, np.repeat(patterns.pattern(name, 64)[..., :1], 3, axis=-1))


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="stripes, checkerboard, border, circles, clock, salt_pepper, texture"):
        patterns.pattern("zigzag", 28)
    with pytest.raises(ValueError, match="camera"):
        patterns.texture(28, photo="chelsea")


def test_texture_is_the_centred_square_of_the_photograph():
    # At the photograph's own size the resize is the identity: what is left is the crop.
    brick = patterns.texture(512, photo="brick")
    np.testing.assert_allclose(brick[..., 0], skimage.data.brick() / 255.0, atol=1e-6)
    hubble = skimage.data.hubble_deep_field() / 255.0  # 872 x 1000: columns 64..935
    np.testing.assert_allclose(patterns.texture(872, 3, photo="hubble_deep_field"), hubble[:, 64:936], atol=1e-6)
    grey_hubble = patterns.pattern("texture", 872, photo="hubble_deep_field")[..., 0]
    np.testing.assert_allclose(grey_hubble, skimage.color.rgb2gray(hubble[:, 64:936]), atol=1e-6)


def test_small_textures_average_the_photograph_instead_of_sampling_it():
    # 512 -> 16 px: each pixel is close to the mean of its 32 x 32 block (a sampled pixel is off by ~0.1).
    for photo in ["brick", "gravel"]:
        blocks = skimage.transform.downscale_local_mean(getattr(skimage.data, photo)() / 255.0, (32, 32))
        assert np.abs(patterns.texture(16, photo=photo)[..., 0] - blocks).mean() < 0.02


@pytest.mark.parametrize("photo", patterns.TEXTURES)
def test_textures_are_in_0_1_at_any_size_and_channels(photo):
    for size, channels in [(28, 1), (64, 3)]:
        image = patterns.texture(size, channels, photo=photo)
        assert image.shape == (size, size, channels) and image.dtype == np.float32
        assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0.02
    colour = getattr(skimage.data, photo)().ndim == 3
    image = patterns.texture(64, 3, photo=photo)
    assert np.array_equal(image[..., 0], image[..., 1]) != colour  # RGB kept, grey repeated
    if colour:
        with pytest.raises(ValueError, match="channels must be 1 or 3"):
            patterns.texture(28, 2, photo=photo)


def test_test_textures_are_unseen_by_training_and_by_the_embedded_scenes(monkeypatch):
    drawn = set()
    original = scenes._photo

    def recording(name):
        drawn.add(name)
        return original(name)

    monkeypatch.setattr(scenes, "_photo", recording)
    rng = np.random.default_rng(0)
    for name in scenes.SCENES:
        for _ in range(3):
            scenes.render_scene(name, rng, 16)
    assert drawn == set(patterns.TRAIN_TEXTURES)
    assert not set(patterns.TEST_TEXTURES) & (drawn | set(patterns.TRAIN_TEXTURES))


def test_texture_crops_are_random_crops_reproducible_by_seed():
    crops = patterns.texture_crops(patterns.TRAIN_TEXTURES, 28, 6, seed=3)
    colour = patterns.texture_crops(patterns.TRAIN_TEXTURES, 28, 6, seed=3, channels=3)
    assert crops.shape == (6, 28, 28, 1) and crops.dtype == np.float32
    assert 0.0 <= crops.min() and crops.max() <= 1.0
    np.testing.assert_array_equal(crops, patterns.texture_crops(patterns.TRAIN_TEXTURES, 28, 6, seed=3))
    assert not np.array_equal(crops, patterns.texture_crops(patterns.TRAIN_TEXTURES, 28, 6, seed=4))
    assert len({crop.tobytes() for crop in crops}) == 6
    np.testing.assert_array_equal(colour, np.repeat(crops, 3, axis=-1))  # grey photos, same draws
    with pytest.raises(ValueError, match="unknown texture"):
        patterns.texture_crops(["lena"], 28, 1, seed=0)


def disk_dilation(masks, radius):
    """The reference: each (H, W, 1) mask (> 0.5) dilated by skimage's disk(radius), outside empty."""
    footprint = skimage.morphology.disk(radius)
    return np.stack([ndimage.binary_dilation(mask[..., 0] > 0.5, footprint) for mask in masks])[..., None]


def random_masks(rng, count=4, size=17):
    """Sparse float masks with values near the 0.5 threshold and foreground touching the edges."""
    masks = rng.uniform(0.0, 1.0, (count, size, size, 1)) * (rng.uniform(size=(count, size, size, 1)) < 0.08)
    masks[0, 0, 0] = masks[1, -1, 5] = 0.9
    masks[2, 8, 8] = 0.5  # not foreground (> 0.5 counts)
    return masks.astype(np.float32)


@pytest.mark.parametrize("radius", [0, 1, 2, 3])
def test_dilate_equals_skimages_binary_dilation_by_a_disk(radius):
    masks = random_masks(np.random.default_rng(radius))
    expected = disk_dilation(masks, radius)
    dilated = np.asarray(patterns.dilate(masks, radius))
    assert dilated.dtype == bool and dilated.shape == masks.shape
    np.testing.assert_array_equal(dilated, expected)
    assert expected.sum() > (masks > 0.5).sum() or radius == 0


def test_dilate_refuses_a_negative_radius():
    with pytest.raises(ValueError, match="radius"):
        patterns.dilate(np.zeros((1, 4, 4, 1)), -1)


def test_behind_keeps_the_dilated_mask_and_pastes_the_background_elsewhere():
    rng = np.random.default_rng(0)
    masks = random_masks(rng)
    images = rng.uniform(size=(4, 17, 17, 3)).astype(np.float32)
    kept = disk_dilation(masks, 2)
    assert 0 < kept.mean() < 1
    shared = patterns.pattern("checkerboard", 17, 3) + 2.0  # values no image holds
    per_image = rng.uniform(2.0, 3.0, (4, 17, 17, 3)).astype(np.float32)
    for background in (shared, per_image):
        out = np.asarray(patterns.behind(images, masks, background))
        expected = np.where(kept, images, np.broadcast_to(background, images.shape))
        np.testing.assert_array_equal(out, expected)
    out = np.asarray(patterns.behind(images, masks, shared, radius=0))
    np.testing.assert_array_equal(out, np.where(masks > 0.5, images, shared))
