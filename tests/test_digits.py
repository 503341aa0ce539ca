"""Digits on black with true masks: the embedded scikit-learn digits and TFDS mnist / fashion_mnist.

The TFDS loaders run on `tfds.testing.mock_data` (USE_CODE, offline): once with TFDS's random
examples, once with hand-made ones whose masks and boxes are known.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from ctxfuse_jax import config_defaults
from ctxfuse_jax.data import digits, sources
from ctxfuse_jax.errors import DataError

SIZE = 28
NUM_MOCK = 9


@pytest.fixture(scope="module")
def rendered() -> dict[str, np.ndarray]:
    return digits.render_digits(SIZE, seed=0).arrays


@pytest.fixture(scope="module")
def splits() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    train, test = digits.embedded_digits(SIZE, seed=0)
    return train.arrays, test.arrays


def _source_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    source = load_digits()
    return source.images, source.target


def _tight_box_by_loops(mask: np.ndarray) -> np.ndarray:
    """The box of one (H, W, 1) mask, found pixel by pixel."""
    height, width = mask.shape[:2]
    on = [(row, col) for row in range(height) for col in range(width) if mask[row, col, 0]]
    if not on:
        return np.array([0, 0, 1, 1], np.float32)
    rows, cols = zip(*on)
    return np.array([min(rows) / height, min(cols) / width, (max(rows) + 1) / height, (max(cols) + 1) / width],
                    np.float32)


# --- embedded digits ---------------------------------------------------------------------------


def test_embedded_shapes_dtypes_and_ranges(splits):
    train, test = splits
    assert len(train["label"]) + len(test["label"]) == digits.NUM_SOURCE_DIGITS
    for split in (train, test):
        num = len(split["label"])
        assert set(split) == {"image", "label", "mask", "bbox"}
        assert split["image"].shape == (num, SIZE, SIZE, 1) and split["image"].dtype == np.uint8
        assert split["mask"].shape == (num, SIZE, SIZE, 1) and split["mask"].dtype == np.uint8
        assert split["bbox"].shape == (num, 4) and split["bbox"].dtype == np.float32
        assert split["label"].dtype == np.int32 and set(np.unique(split["label"])) == set(range(10))
        assert set(np.unique(split["mask"])) == {0, 1}
        assert split["image"].max(axis=(1, 2, 3)).min() > 200  # every digit has full ink somewhere
        assert 0.1 < split["image"].mean() / 255 < 0.2  # mostly black, like MNIST (mean ~0.13)
        box = split["bbox"]
        assert np.all((0 <= box) & (box <= 1)) and np.all(box[:, :2] < box[:, 2:])


def test_background_is_black(rendered):
    # About a third of the pixels is the digit; the rest is exactly 0 or the faint fade around strokes.
    assert 0.25 < rendered["mask"].mean() < 0.4
    background = rendered["image"][rendered["mask"] == 0]
    assert background.max() <= digits.MASK_THRESHOLD and np.mean(background == 0) > 0.9


@pytest.mark.parametrize("size", [11, 16, 24, SIZE, 38])  # 16, 24 and 38: the fade, not the 2/28, bounds the jitter
def test_the_outermost_pixels_stay_black(size):
    image = digits.render_digits(size, seed=0).arrays["image"][..., 0]
    assert np.all(image[:, [0, -1], :] == 0) and np.all(image[:, :, [0, -1]] == 0)


def test_masks_are_exactly_the_pixels_above_the_threshold(rendered):
    np.testing.assert_array_equal(rendered["mask"], (rendered["image"] > digits.MASK_THRESHOLD).astype(np.uint8))
    assert rendered["mask"].any(axis=(1, 2, 3)).all()


def test_boxes_are_tight_around_the_masks(rendered):
    for mask, box in zip(rendered["mask"][::7], rendered["bbox"][::7]):
        np.testing.assert_array_equal(box, _tight_box_by_loops(mask))
    # Digits are ~20 px tall (the grid is stretched over 20 px; its edge strokes fade a pixel further).
    heights = (rendered["bbox"][:, 2] - rendered["bbox"][:, 0]) * SIZE
    assert 18 <= heights.min() and heights.max() <= 23


def test_boxes_round_trip_through_the_projects_pixel_bounds(rendered):
    from ctxfuse_jax.degrade import regions

    bounds = np.asarray(regions.pixel_bounds(rendered["bbox"], SIZE, SIZE))
    inside = np.asarray(regions.box_mask(rendered["bbox"], SIZE, SIZE))
    assert np.all(rendered["mask"].astype(bool) <= inside)  # the box holds the whole mask
    for mask, (y0, x0, y1, x1) in zip(rendered["mask"][..., 0], bounds):
        assert mask[y0].any() and mask[y1 - 1].any() and mask[:, x0].any() and mask[:, x1 - 1].any()


def test_tight_boxes_of_hand_made_masks():
    masks = np.zeros((3, 4, 5, 1), np.uint8)
    masks[0, 1:3, 2, 0] = 1  # rows 1-2, column 2
    masks[2, 3, 4, 0] = 1  # the bottom-right pixel
    np.testing.assert_allclose(digits.tight_boxes(masks), [[1 / 4, 2 / 5, 3 / 4, 3 / 5], [0, 0, 1, 1],
                                                           [3 / 4, 4 / 5, 1, 1]], rtol=1e-6)


def test_labels_are_scikit_learns_in_its_order(rendered):
    _, target = _source_digits()
    np.testing.assert_array_equal(rendered["label"], target)


def test_hand_worked_impulse():
    """One source pixel of full ink (16) at (0, 0), grid corner at canvas (4, 4), 2.5 px per source pixel.

    Canvas pixel p has its centre at source coordinate u = (p + 0.5 - 4) / 2.5 - 0.5, weight
    max(0, 1 - |u|): p = 2, 3, 4, 5, 6 -> u = -1.1, -0.7, -0.3, 0.1, 0.5 -> 0, .3, .7, .9, .5;
    each pixel is the product of its row and column weights times 255, rounded.
    """
    impulse = np.zeros((1, 8, 8))
    impulse[0, 0, 0] = 16
    image = digits.render(impulse, SIZE, np.array([[4, 4]]))[0, ..., 0]
    weights = {3: 0.3, 4: 0.7, 5: 0.9, 6: 0.5, 7: 0.1}
    expected = np.zeros((SIZE, SIZE), np.uint8)
    for row, w_row in weights.items():
        for col, w_col in weights.items():
            expected[row, col] = round(w_row * w_col * 255)
    assert expected[5, 5] == 207 and expected[4, 5] == 161 and expected[3, 3] == 23
    np.testing.assert_array_equal(image, expected)


def _pil_digit(digit: np.ndarray, corner: tuple[int, int]) -> np.ndarray:
    """PIL's bilinear resize of the digit padded with two black source pixels, cropped to the canvas.

    The padded 12x12 grid spans 30 px from canvas (corner - 5); its outer 3.75 px are black, so
    cropping at most 3 of them loses nothing.
    """
    padded = np.pad(digit.astype(np.float32) / 16, 2)
    patch = np.asarray(Image.fromarray(padded, mode="F").resize((30, 30), Image.BILINEAR))
    canvas = np.zeros((SIZE + 10, SIZE + 10), np.float32)  # canvas pixel (0, 0) at (5, 5): room to stick out
    top, left = corner  # the patch starts at canvas (corner - 5), here at corner
    canvas[top:top + 30, left:left + 30] = patch
    return np.round(np.clip(canvas[5:5 + SIZE, 5:5 + SIZE], 0, 1) * 255)


def test_upscaled_digits_match_pil_at_one_jittered_position(rendered):
    """Independent reference: PIL's resize; the position is found by trying every allowed corner."""
    images, _ = _source_digits()
    jitter = digits.max_jitter(SIZE)
    assert jitter == 2 and digits.digit_size(SIZE) == 20
    corners = [(y, x) for y in range(4 - jitter, 5 + jitter) for x in range(4 - jitter, 5 + jitter)]
    found = []
    for index in (0, 1, 2, 3, 17, 1796):
        image = rendered["image"][index, ..., 0].astype(np.float32)
        matches = [corner for corner in corners
                   if np.abs(_pil_digit(images[index], corner) - image).max() <= 1]  # rounding of float32
        assert len(matches) == 1, (index, matches)
        found.append(matches[0])
    assert len(set(found)) > 1  # the digits are jittered


def test_small_and_large_images():
    for size in (digits.MIN_IMAGE_SIZE, 64):
        split = digits.render_digits(size, seed=0).arrays
        assert split["image"].shape == (digits.NUM_SOURCE_DIGITS, size, size, 1)
        np.testing.assert_array_equal(split["mask"], split["image"] > digits.MASK_THRESHOLD)
    with pytest.raises(ValueError, match="image_size must be at least 8"):
        digits.render_digits(7)


def test_shrinking_is_anti_aliased():
    """At 8 px the 8x8 grid shrinks to 6 px (0.75 px per source pixel). Anti-aliased, every source
    pixel gives the canvas the same ink, 0.75^2 of a pixel, wherever it lies; sampled without
    anti-aliasing (plain bilinear), the sampling phase decides: 0.44 to 0.69 here."""
    impulses = np.zeros((64, 8, 8))
    impulses[np.arange(64), np.arange(64) // 8, np.arange(64) % 8] = 16
    images = digits.render(impulses, digits.MIN_IMAGE_SIZE, np.ones((64, 2), int))
    ink = images.astype(np.float64).sum(axis=(1, 2, 3)) / 255
    np.testing.assert_allclose(ink, 0.75 ** 2, atol=0.02)  # uint8 rounding of up to 9 pixels


def test_deterministic_given_the_seed_and_different_across_seeds(splits):
    again = [split.arrays for split in digits.embedded_digits(SIZE, seed=0)]
    other = [split.arrays for split in digits.embedded_digits(SIZE, seed=1)]
    for split, same, changed in zip(splits, again, other):
        for key in split:
            np.testing.assert_array_equal(split[key], same[key])
        assert not np.array_equal(split["label"], changed["label"])  # another split
    a, b = digits.render_digits(SIZE, seed=0).arrays, digits.render_digits(SIZE, seed=1).arrays
    np.testing.assert_array_equal(a["label"], b["label"])
    assert np.mean([not np.array_equal(x, y) for x, y in zip(a["image"], b["image"])]) > 0.7  # other jitter


def test_stratified_split_is_disjoint_and_covers_every_class(rendered, splits):
    labels = rendered["label"]
    train, test = digits.stratified_split(labels, 0.25, seed=0)
    assert not set(train) & set(test) and len(train) + len(test) == labels.size
    for label in range(10):
        num = int(np.sum(labels == label))
        assert int(np.sum(labels[test] == label)) == round(0.25 * num)
        assert np.sum(labels[train] == label) > 0
    # embedded_digits is that split of the rendered digits, image for image.
    for indices, split in zip((train, test), splits):
        for key in split:
            np.testing.assert_array_equal(split[key], rendered[key][indices])


@pytest.mark.parametrize("num_examples, per_class", [(20, 2), (100, 10), (105, 10)])
def test_subsets_are_balanced_and_every_class_is_in_both_splits(num_examples, per_class):
    train, test = (split.arrays for split in digits.embedded_digits(SIZE, seed=3, num_examples=num_examples))
    assert len(train["label"]) + len(test["label"]) == num_examples
    counts = np.bincount(np.concatenate([train["label"], test["label"]]), minlength=10)
    assert counts.min() == per_class and counts.max() <= per_class + 1
    assert set(train["label"]) == set(test["label"]) == set(range(10))


def test_test_fraction_is_per_class():
    labels = np.repeat(np.arange(10), 40)
    _, test = digits.stratified_split(labels, 0.1, seed=0)
    np.testing.assert_array_equal(np.bincount(labels[test]), [4] * 10)


def test_invalid_embedded_options():
    with pytest.raises(ValueError, match="num_examples"):
        digits.embedded_digits(num_examples=19)
    with pytest.raises(ValueError, match="num_examples"):
        digits.embedded_digits(num_examples=1798)
    with pytest.raises(ValueError, match="test_fraction"):
        digits.embedded_digits(test_fraction=1.0)


def test_registered_source_from_the_config_builder():
    config = config_defaults.digits_data(num_examples=40)
    assert set(config) == {"name", "image_size", "seed", "num_examples", "data_dir", "test_fraction"}
    data = sources.load_labelled(config)
    assert data.class_names == tuple("0123456789") and data.num_classes == 10
    assert data.supercategory_names == () and data.class_supercategory.shape == (0,)
    assert len(data.train) + len(data.test) == 40
    assert {"digits", "mnist", "fashion_mnist"} <= set(sources.SOURCES)


# --- TFDS mnist and fashion_mnist --------------------------------------------------------------


def _mock():
    return tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, num_examples=NUM_MOCK)


@pytest.mark.parametrize("name", digits.TFDS_DATASETS)
def test_tfds_on_mock_data(name, tmp_path):
    with _mock():
        train, test = digits.tfds_digits(name, data_dir=str(tmp_path))
        small_train, small_test = digits.tfds_digits(name, num_examples=7, data_dir=str(tmp_path))
        resized, _ = digits.tfds_digits(name, 32, num_examples=7, data_dir=str(tmp_path))
    for split, num in ((train, NUM_MOCK), (test, NUM_MOCK), (small_train, 6), (small_test, 1)):
        arrays = split.arrays
        assert arrays["image"].shape == (num, 28, 28, 1) and arrays["image"].dtype == np.uint8
        assert arrays["label"].dtype == np.int32 and np.all((0 <= arrays["label"]) & (arrays["label"] < 10))
        assert arrays["mask"].dtype == np.uint8
        np.testing.assert_array_equal(arrays["mask"], (arrays["image"] > 0).astype(np.uint8))
        np.testing.assert_array_equal(arrays["bbox"], digits.tight_boxes(arrays["mask"]))
    np.testing.assert_array_equal(small_train.arrays["image"], train.arrays["image"][:6])  # the first records
    assert resized.arrays["image"].shape == (6, 32, 32, 1)
    np.testing.assert_array_equal(resized.arrays["mask"], resized.arrays["image"] > 0)


def _hand_made(builder, split, decoders=None, read_config=None, **kwargs):
    """Mock records: ink in a known rectangle (image 0), a single pixel (1), nothing (2), dim ink (3)."""
    images = np.zeros((4, 28, 28, 1), np.uint8)
    images[0, 5:20, 9:14] = 200
    images[1, 27, 0] = 255
    images[3, 10, 10:12] = 1
    labels = np.array([3, 1, 4, 1] if split == "train" else [5, 9, 2, 6], np.int64)
    return tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})


def test_tfds_masks_and_boxes_of_hand_made_records(tmp_path):
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, as_dataset_fn=_hand_made):
        data = sources.load_labelled(config_defaults.digits_data("mnist", data_dir=str(tmp_path)))
    train = data.train.arrays
    np.testing.assert_array_equal(train["label"], [3, 1, 4, 1])
    np.testing.assert_array_equal(data.test.arrays["label"], [5, 9, 2, 6])
    assert train["mask"].sum(axis=(1, 2, 3)).tolist() == [75, 1, 0, 2]  # image > 0 keeps the dim ink
    np.testing.assert_allclose(train["bbox"], np.array([[5, 9, 20, 14], [27, 0, 28, 1], [0, 0, 28, 28],
                                                        [10, 10, 11, 12]]) / 28, rtol=1e-6)
    assert data.class_names == tuple("0123456789")


def test_fashion_mnist_class_names_come_from_tfds(tmp_path):
    with _mock():
        data = sources.load_labelled(config_defaults.digits_data("fashion_mnist", data_dir=str(tmp_path)))
    assert data.num_classes == 10 and data.class_names[0] == "T-shirt/top" and data.class_names[-1] == "Ankle boot"
    assert data.class_supercategory.size == 0


@pytest.mark.parametrize("name", digits.TFDS_DATASETS)
def test_missing_tfds_data_says_how_to_prepare_it(name, tmp_path):
    with pytest.raises(DataError) as caught:
        digits.tfds_digits(name, data_dir=str(tmp_path))
    message = str(caught.value)
    assert f"'{name}' is not prepared" in message and str(tmp_path) in message
    assert f"tfds build {name} --data_dir={tmp_path}" in message
    assert f"tfds.builder('{name}', data_dir='{tmp_path}').download_and_prepare()" in message
    assert "Nothing is downloaded at run time" in message
    assert isinstance(caught.value, FileNotFoundError)
    assert not list(tmp_path.iterdir())  # nothing was downloaded or written


def test_invalid_tfds_options(tmp_path):
    with pytest.raises(ValueError, match="unknown TFDS digits dataset"):
        digits.tfds_digits("kmnist", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="num_examples"):
        digits.tfds_digits("mnist", num_examples=1, data_dir=str(tmp_path))
    assert digits.tfds_split_sizes(70) == (60, 10) and digits.tfds_split_sizes(2) == (1, 1)
