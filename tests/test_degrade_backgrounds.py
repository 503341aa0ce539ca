"""ImageNet-9 background variants on hand-built images whose every pixel is known."""

import numpy as np
import pytest

from ctxfuse_jax.degrade import backgrounds

HEIGHT, WIDTH = 6, 5
# Rows 2..4, columns 1..2 (pixel centres inside [1/3, 5/6) x [1/5, 3/5)).
BOX = [2 / 6, 1 / 5, 5 / 6, 3 / 5]


def pool(n=1):
    """Image i holds 100 i + its pixel number, so every copied pixel can be traced back."""
    base = np.arange(HEIGHT * WIDTH, dtype=np.float32).reshape(HEIGHT, WIDTH, 1)
    return np.stack([base + 100 * i for i in range(n)])


def variant(name, images, labels, boxes=None, **kwargs):
    boxes = [BOX] * len(images) if boxes is None else boxes
    return backgrounds.background_variant(name, images, labels, boxes, **kwargs)[..., 0]


def test_box_variants_black_out_or_tile_the_box():
    image = pool()
    inside = np.zeros((HEIGHT, WIDTH), bool)
    inside[2:5, 1:3] = True
    only_bg_b = variant("only_bg_b", image, [0])[0]
    np.testing.assert_array_equal(only_bg_b[inside], 0)
    np.testing.assert_array_equal(only_bg_b[~inside], image[0, ..., 0][~inside])
    only_fg = variant("only_fg", image, [0])[0]
    np.testing.assert_array_equal(only_fg, np.where(inside, image[0, ..., 0], 0))
    np.testing.assert_array_equal(variant("no_fg", image, [0])[0], only_bg_b)
    np.testing.assert_array_equal(variant("original", image, [0])[0], image[0, ..., 0])
    # Strips: above 2 x 5 = 10, below 1 x 5, left 6 x 1, right 6 x 2 = 12 -> columns 3..4,
    # repeated across the box from its left edge.
    only_bg_t = variant("only_bg_t", image, [0])[0]
    expected = image[0, ..., 0].copy()
    expected[2:5, 1:3] = image[0, 2:5, 3:5, 0]
    np.testing.assert_array_equal(only_bg_t, expected)


def test_tiling_repeats_a_strip_shorter_than_the_box():
    image = pool()
    # Rows 1..5, columns 0..4 minus the last: strips above 1 x 5 = 5, right 6 x 1 = 6 -> right.
    out = variant("only_bg_t", image, [0], boxes=[[1 / 6, 0.0, 1.0, 4 / 5]])[0]
    np.testing.assert_array_equal(out[1:, :4], np.repeat(image[0, 1:, 4:5, 0], 4, axis=1))
    np.testing.assert_array_equal(out[0], image[0, 0, :, 0])


def test_masks_choose_the_foreground_for_fg_variants():
    image = pool()
    mask = np.zeros((1, HEIGHT, WIDTH, 1), np.float32)
    mask[0, 3, 2] = 1.0
    out = backgrounds.background_variant("only_fg", image, [0], [BOX], mask)[0, ..., 0]
    assert out[3, 2] == image[0, 3, 2, 0] and np.count_nonzero(out) == 1


def test_mixed_variants_paste_the_foreground_on_a_donors_tiled_background():
    images = pool(4)
    labels = np.array([0, 0, 1, 1])
    tiled = backgrounds.background_variant("only_bg_t", images, labels, [BOX] * 4)[..., 0]
    inside = np.zeros((HEIGHT, WIDTH), bool)
    inside[2:5, 1:3] = True
    for name, allowed in (
        ("mixed_same", lambda i, j: labels[j] == labels[i]),
        ("mixed_rand", lambda i, j: True),
        ("mixed_next", lambda i, j: labels[j] == (labels[i] + 1) % 2),
    ):
        out = variant(name, images, labels, seed=3)
        np.testing.assert_array_equal(out, variant(name, images, labels, seed=3))  # Seeded.
        for i in range(4):
            np.testing.assert_array_equal(out[i][inside], images[i, ..., 0][inside])
            donor = int(out[i][0, 0] // 100)  # Pixel (0, 0) is the donor's own.
            assert donor != i and allowed(i, donor), name
            np.testing.assert_array_equal(out[i][~inside], tiled[donor][~inside])
    draws = {variant("mixed_rand", images, labels, seed=s)[:, 0, 0].tobytes() for s in range(8)}
    assert len(draws) > 1


@pytest.mark.parametrize(
    "box, message",
    [
        ([0.5, 0.2, 0.5, 0.8], "empty or outside"),
        ([0.5, 0.8, 0.2, 0.9], "empty or outside"),
        ([1.2, 1.2, 1.5, 1.5], "empty or outside"),
        ([0.0, 0.0, 1.0, 1.0], "no background to tile"),
    ],
)
def test_degenerate_boxes_raise(box, message):
    with pytest.raises(ValueError, match=message):
        variant("only_bg_t", pool(), [0], boxes=[box])


def test_missing_donors_and_unknown_variants_raise():
    with pytest.raises(ValueError, match="mixed_same: no other image"):
        variant("mixed_same", pool(2), [0, 1])
    with pytest.raises(ValueError, match="mixed_next: no other image"):
        variant("mixed_next", pool(2), [0, 2], num_classes=3)
    with pytest.raises(ValueError, match="valid: original, only_fg"):
        variant("only_bg", pool(), [0])
