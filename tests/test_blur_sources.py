"""Seed 001's TFDS sources, imagenet2012 and oxford_iiit_pet, on `tfds.testing.mock_data` (offline).

USE_CODE mock data needs neither ImageNet's manual tars nor the pets download: TFDS makes random
records from the builders' feature specs. Hand-made records (`as_dataset_fn`) with known geometry
check the short-side resize and centre crop against `jax.image.resize`, and the mask's alignment.
"""

import jax
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from ctxfuse_jax import config_checks, config_defaults
from ctxfuse_jax.data import blur_sources, sources
from ctxfuse_jax.errors import ConfigError, DataError

SIZE = 16
NUM_MOCK = 5


def _mock(**kwargs):
    return tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, **kwargs)


def _fields(name: str) -> set[str]:
    return {"image", "label", "mask"} if name == blur_sources.PETS else {"image", "label"}


@pytest.mark.parametrize("name", blur_sources.NAMES)
def test_random_mock_records_give_square_uint8_splits(name, tmp_path):
    with _mock(num_examples=NUM_MOCK):
        splits = blur_sources.LOADERS[name](SIZE, data_dir=str(tmp_path))
        capped = blur_sources.LOADERS[name](SIZE, num_examples=2, data_dir=str(tmp_path))
    num_classes = 1000 if name == blur_sources.IMAGENET else 37
    for split, num in [(split, NUM_MOCK) for split in splits] + [(split, 2) for split in capped]:
        arrays = split.arrays
        assert set(arrays) == _fields(name)
        assert arrays["image"].shape == (num, SIZE, SIZE, 3) and arrays["image"].dtype == np.uint8
        assert arrays["label"].shape == (num,) and arrays["label"].dtype == np.int32
        assert np.all((0 <= arrays["label"]) & (arrays["label"] < num_classes))
        if name == blur_sources.PETS:
            assert arrays["mask"].shape == (num, SIZE, SIZE, 1) and arrays["mask"].dtype == np.uint8
            assert set(np.unique(arrays["mask"])) <= {0, 1}
    for full, first in zip(splits, capped):  # the cap keeps the first records
        for key, value in first.arrays.items():
            np.testing.assert_array_equal(value, full.arrays[key][:2])


# --- hand-made records: known geometry ----------------------------------------------------------

_RNG = np.random.default_rng(0)
# Landscape (odd margin: 50 * 16 / 30 = 26.67 -> 27 wide, crop from column 5), portrait, square,
# and one smaller than SIZE (upscaled).
_SHAPES = [(30, 50), (50, 30), (20, 20), (9, 12)]
_IMAGES = [_RNG.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in _SHAPES]


def _trimap(height: int, width: int, index: int) -> np.ndarray:
    """Record 0: pet (1) on the left half, background (2) on the right. Record 1: pet on the top ten
    rows, border (3) on the next five, background below. Others: a pet blob with a border band."""
    trimap = np.full((height, width, 1), blur_sources.BACKGROUND, np.uint8)
    if index == 0:
        trimap[:, :width // 2] = blur_sources.PET
    elif index == 1:
        trimap[:10] = blur_sources.PET
        trimap[10:15] = blur_sources.BORDER
    else:
        trimap[1:-1, 2:-3] = blur_sources.BORDER
        trimap[3:-3, 4:-5] = blur_sources.PET
    return trimap


_TRIMAPS = [_trimap(h, w, i) for i, (h, w) in enumerate(_SHAPES)]
_LABELS = [3, 0, 36, 9]


def _hand_made(builder, split, decoders=None, read_config=None, **kwargs):
    def records():
        for image, trimap, label in zip(_IMAGES, _TRIMAPS, _LABELS):
            record = {"image": image, "label": np.int64(label)}
            if builder.name == blur_sources.PETS:
                record["segmentation_mask"] = trimap
            yield record

    signature = {"image": tf.TensorSpec((None, None, 3), tf.uint8), "label": tf.TensorSpec((), tf.int64)}
    if builder.name == blur_sources.PETS:
        signature["segmentation_mask"] = tf.TensorSpec((None, None, 1), tf.uint8)
    return tf.data.Dataset.from_generator(records, output_signature=signature)


def _geometry(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """(resized height, resized width, top, left), worked out in plain Python."""
    short = min(height, width)
    new_h, new_w = (int(np.floor(side * size / short + 0.5)) for side in (height, width))
    return new_h, new_w, (new_h - size) // 2, (new_w - size) // 2


def test_the_geometry_of_the_hand_made_shapes():
    assert [_geometry(h, w, SIZE) for h, w in _SHAPES] == [(16, 27, 0, 5), (27, 16, 5, 0), (16, 16, 0, 0),
                                                           (16, 21, 0, 2)]


def _reference_image(image: np.ndarray, size: int) -> np.ndarray:
    """JAX's anti-aliased linear resize to the short side, rounded, then the centre crop."""
    new_h, new_w, top, left = _geometry(*image.shape[:2], size)
    resized = jax.image.resize(image.astype(np.float32), (new_h, new_w, 3), method="linear", antialias=True)
    resized = np.clip(np.round(np.asarray(resized)), 0, 255)
    return resized[top:top + size, left:left + size]


def _reference_mask(trimap: np.ndarray, size: int) -> np.ndarray:
    """Nearest neighbour by hand: output pixel centre (i + 0.5) samples source row floor((i + 0.5) * H / h)."""
    height, width = trimap.shape[:2]
    new_h, new_w, top, left = _geometry(height, width, size)
    rows = np.floor((np.arange(new_h) + 0.5) * height / new_h).astype(int)
    cols = np.floor((np.arange(new_w) + 0.5) * width / new_w).astype(int)
    pet = np.isin(trimap, (1, 3)).astype(np.uint8)[rows][:, cols]
    return pet[top:top + size, left:left + size, 0]


@pytest.mark.parametrize("name", blur_sources.NAMES)
def test_short_side_resize_and_centre_crop_match_jax(name, tmp_path):
    with _mock(as_dataset_fn=_hand_made):
        train, test = blur_sources.LOADERS[name](SIZE, data_dir=str(tmp_path))
    for split in (train, test):
        np.testing.assert_array_equal(split.arrays["label"], _LABELS)
        for got, image in zip(split.arrays["image"], _IMAGES):
            difference = np.abs(got.astype(np.int32) - _reference_image(image, SIZE))
            assert difference.max() <= 1 and np.mean(difference == 0) > 0.99  # rounding of float32 ties
    # Cropping the centre matters: the landscape record's crop is not its left or right end.
    resized = np.clip(np.round(np.asarray(jax.image.resize(_IMAGES[0].astype(np.float32), (16, 27, 3), "linear"))),
                      0, 255)
    assert np.abs(train.arrays["image"][0].astype(np.int32) - resized[:, :SIZE]).mean() > 10


def test_masks_are_binary_and_follow_the_images_geometry(tmp_path):
    with _mock(as_dataset_fn=_hand_made):
        train, _ = blur_sources.oxford_iiit_pet(SIZE, data_dir=str(tmp_path))
    masks = train.arrays["mask"][..., 0]
    assert set(np.unique(masks)) == {0, 1}
    for got, trimap in zip(masks, _TRIMAPS):
        np.testing.assert_array_equal(got, _reference_mask(trimap, SIZE))
    # The left-half pet stays the left half after resize and crop: columns 0-7 of 16.
    expected = np.zeros((SIZE, SIZE), np.uint8)
    expected[:, :SIZE // 2] = 1
    np.testing.assert_array_equal(masks[0], expected)
    # The portrait: pet rows 0-9 and border rows 10-14 of 50 are 15 of 50 rows, scaled by 27/50 to
    # resized rows 0-7 (row 8 samples source row 15); the crop starts at row 5: rows 0-2 are pet.
    np.testing.assert_array_equal(masks[1].any(axis=1), np.arange(SIZE) < 3)
    assert np.all(masks[1][:3] == 1)


def test_mock_masks_of_another_size_than_the_image_still_cover_it(tmp_path):
    """Random mock records give the mask its own random size; it is resized to the image's frame."""
    with _mock(num_examples=3):
        train, _ = blur_sources.oxford_iiit_pet(SIZE, data_dir=str(tmp_path))
    assert train.arrays["mask"].shape == (3, SIZE, SIZE, 1)


# --- registration, config, errors ---------------------------------------------------------------


def test_registered_sources_from_the_config_builder(tmp_path):
    config = config_defaults.tfds_data("oxford_iiit_pet", SIZE, num_examples=3, data_dir=str(tmp_path))
    assert set(config) == {"name", "image_size", "num_examples", "data_dir", "seed"}
    config_checks.check_data(config)
    with _mock(num_examples=NUM_MOCK):
        pets = sources.load_labelled(config)
        imagenet = sources.load_labelled(config_defaults.tfds_data("imagenet2012", SIZE, 2, str(tmp_path)))
    assert pets.num_classes == 37 and pets.class_names[:2] == ("Abyssinian", "american_bulldog")
    assert len(pets.train) == len(pets.test) == 3
    assert pets.supercategory_names == ("Cat", "Dog")
    cats = [name for name, species in zip(pets.class_names, pets.class_supercategory) if species == 0]
    assert len(cats) == 12 and {"Persian", "Siamese", "Sphynx"} <= set(cats) and "pug" not in cats
    assert imagenet.num_classes == 1000 and imagenet.class_names[0] == "n01440764"
    assert imagenet.supercategory_names == () and imagenet.class_supercategory.shape == (0,)
    assert len(imagenet.train) == len(imagenet.test) == 2
    assert set(blur_sources.NAMES) <= set(sources.SOURCES) <= set(config_checks.DATA_CHECKS)


def test_config_check_refuses_a_negative_cap():
    config = config_defaults.tfds_data("imagenet2012", 384, num_examples=-1)
    with pytest.raises(ConfigError, match=r"config.data.num_examples=-1: must be an integer >= 0"):
        config_checks.check_data(config)


def _missing(name, tmp_path) -> str:
    with pytest.raises(DataError) as caught:
        blur_sources.LOADERS[name](SIZE, data_dir=str(tmp_path))
    assert isinstance(caught.value, FileNotFoundError)
    assert not list(tmp_path.iterdir())  # nothing was downloaded or written
    message = str(caught.value)
    assert f"TFDS dataset '{name}' is not prepared" in message and str(tmp_path) in message
    assert "Nothing is downloaded at run time" in message
    assert f"tfds build {name} --data_dir={tmp_path}" in message
    return message


def test_missing_imagenet_says_where_to_put_the_tars(tmp_path):
    message = _missing(blur_sources.IMAGENET, tmp_path)
    assert f"put them in {tmp_path}/downloads/manual" in message
    assert "ILSVRC2012_img_train.tar" in message and "ILSVRC2012_img_val.tar" in message
    assert "cannot be downloaded by TFDS" in message


def test_missing_pets_says_how_to_build_and_copy_them(tmp_path):
    message = _missing(blur_sources.PETS, tmp_path)
    assert "On a machine with internet" in message and f"copy {tmp_path}/oxford_iiit_pet" in message


def test_invalid_options(tmp_path):
    with pytest.raises(ValueError, match="image_size must be positive"):
        blur_sources.imagenet2012(0, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="num_examples"):
        blur_sources.oxford_iiit_pet(SIZE, num_examples=-3, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="unknown blur-study TFDS dataset"):
        blur_sources.class_names("cifar10")


class _PreparedBuilder:
    """A stand-in for a builder whose data is prepared with only a 10-record `validation` split."""

    def __init__(self, data_dir):
        self.data_dir = f"{data_dir}/imagenet2012/5.1.0"
        self.info = type("Info", (), {"splits": {"validation": type("Split", (), {"num_examples": 10})()}})()


def test_a_prepared_dataset_without_the_split_names_the_splits_it_has(tmp_path, monkeypatch):
    from ctxfuse_jax.data import tfds_read

    monkeypatch.setattr(tfds, "builder", lambda name, data_dir=None: _PreparedBuilder(data_dir))
    with pytest.raises(DataError, match=r"has no split 'train' \(it has \['validation'\]\)\. ImageNet cannot"):
        blur_sources.imagenet2012(SIZE, num_examples=4, data_dir=str(tmp_path))
    # A cap beyond the split's size reads the whole split, not a slice TFDS would refuse.
    asked = []
    monkeypatch.setattr(tfds, "load", lambda name, split, **kwargs: asked.append(split) or tf.data.Dataset.range(10))
    assert len(list(tfds_read.load("imagenet2012", "validation", str(tmp_path), count=25))) == 10
    assert len(list(tfds_read.load("imagenet2012", "validation", str(tmp_path), count=4))) == 4
    assert asked == ["validation[:10]", "validation[:4]"]
