"""The backgrounds-challenge folders read back from a tiny release written here with PIL."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from ctxfuse_jax.data import image_folders
from ctxfuse_jax.errors import DataError

RED, BLUE = (255, 0, 0), (0, 0, 255)
# class folder -> file name -> solid colour; "n10" sorts before "n2", the PNG and .jpg test the extensions
TREE = {
    "00_dog": {"n2.JPEG": (200, 40, 40), "n10.JPEG": (40, 200, 40)},
    "01_bird": {"b1.jpg": (40, 40, 200), "b2.png": (10, 20, 30)},
    "02_fish": {"f1.JPEG": (250, 250, 250), "halves.png": None},  # None: red left half, blue right half
}
FILES = ["00_dog/n10.JPEG", "00_dog/n2.JPEG", "01_bird/b1.jpg", "01_bird/b2.png", "02_fish/f1.JPEG",
         "02_fish/halves.png"]


def _image(colour) -> np.ndarray:
    image = np.zeros((4, 16, 3), np.uint8)
    if colour is None:
        image[:, :8], image[:, 8:] = RED, BLUE
    else:
        image[:] = colour
    return image


def write_release(root, variants=("original", "mixed_same"), classes=TREE):
    """`<root>/<variant>/val/<class>/<file>` for each variant, and a .npy mask per image of the tree."""
    for variant in variants:
        for name, files in classes.items():
            folder = root / variant / "val" / name
            folder.mkdir(parents=True)
            for file, colour in files.items():
                Image.fromarray(_image(colour)).save(folder / file, quality=100, subsampling=0)
            (folder / "notes.txt").write_text("not an image")
    for name, files in classes.items():
        folder = root / "fg_mask" / "val" / name
        folder.mkdir(parents=True)
        for file in files:
            mask = np.zeros((4, 4), bool)
            mask[:2, :2] = True
            np.save(folder / (os.path.splitext(file)[0] + ".npy"), mask)
    return str(root)


def test_a_variant_is_read_in_class_then_file_order_with_its_pixels(tmp_path):
    root = write_release(tmp_path)
    split = image_folders.load_variant(root, "original", image_size=8)
    assert list(split.arrays["file"]) == FILES
    np.testing.assert_array_equal(split.arrays["label"], [0, 0, 1, 1, 2, 2])
    assert split.arrays["label"].dtype == np.int32
    images = split.arrays["image"]
    assert images.shape == (6, 8, 8, 3) and images.dtype == np.uint8
    for image, file in zip(images, FILES):
        name, base = file.split("/")
        colour = TREE[name][base]
        if colour is not None:  # a solid colour stays that colour (JPEG within 2 levels, PNG exactly)
            tolerance = 0 if base.endswith(".png") else 2
            assert np.abs(image.astype(int) - colour).max() <= tolerance, file
    # 16 -> 8 columns with antialiased bilinear: output column 3 is centred on input 6.5 and its triangle
    # weights input columns 5, 6, 7, 8 by 1, 3, 3, 1 (/8), so one eighth of it is blue: 255 * 7/8 = 223.1
    np.testing.assert_array_equal(images[5][0], [RED, RED, RED, (223, 0, 32), (32, 0, 223), BLUE, BLUE, BLUE])
    assert image_folders.class_names(root) == ("00_dog", "01_bird", "02_fish")


def test_rows_match_across_variants_and_masks_by_file(tmp_path):
    root = write_release(tmp_path)
    original = image_folders.load_variant(root, "original", image_size=8)
    mixed = image_folders.load_variant(root, "mixed_same", image_size=8)
    assert list(mixed.arrays["file"]) == list(original.arrays["file"])
    masks = image_folders.load_masks(root, "val", image_size=8)
    assert sorted(masks) == sorted(image_folders.mask_key(f) for f in original.arrays["file"])
    expected = np.zeros((8, 8, 1), np.uint8)
    expected[:4, :4] = 1  # nearest 4 -> 8 doubles each pixel and keeps the mask binary
    for mask in masks.values():
        assert mask.dtype == np.uint8
        np.testing.assert_array_equal(mask, expected)


def _other_kinds():
    """(H, W, 1) float and (H, W, C) int masks, with their foreground worked by hand: value > 0, any channel."""
    soft = np.zeros((2, 4, 1), np.float32)
    soft[0, 1], soft[1, 2] = 0.7, -0.5
    channels = np.zeros((2, 4, 3), np.int64)
    channels[0, 1, 2], channels[1, 3, 0] = 7, -3
    return [(soft, [[0, 1, 0, 0], [0, 0, 0, 0]]), (channels, [[0, 1, 0, 0], [0, 0, 0, 0]])]


@pytest.mark.parametrize("array, foreground", _other_kinds(), ids=["float-hw1", "int-hwc"])
def test_masks_of_other_numeric_kinds_become_zero_one(tmp_path, array, foreground):
    root = write_release(tmp_path)
    np.save(tmp_path / "fg_mask" / "val" / "00_dog" / "n2.npy", array)
    mask = image_folders.load_masks(root, "val", image_size=4)["00_dog/n2"]
    expected = np.repeat(np.array(foreground, np.uint8), 2, axis=0)[..., None]  # 2 -> 4 rows, 4 columns kept
    np.testing.assert_array_equal(mask, expected)


def test_a_missing_root_variant_or_class_says_which_path_and_how_to_get_the_data(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"{missing} does not exist.*backgrounds_challenge.*config.data.root"):
        image_folders.load_variant(str(missing), "original", 8)
    root = write_release(tmp_path / "release")
    with pytest.raises(DataError, match=f"{os.path.join(root, 'mixed_rand', 'val')} does not exist"):
        image_folders.load_variant(root, "mixed_rand", 8)
    with pytest.raises(DataError, match=f"no variant folder such as {os.path.join(root, 'original', 'train')}"):
        image_folders.load_variant(root, "original", 8, split="train")
    shutil.rmtree(os.path.join(root, "fg_mask"))
    with pytest.raises(DataError, match=f"{os.path.join(root, 'fg_mask', 'val')} does not exist"):
        image_folders.load_masks(root, "val", 8)
    for file in TREE["01_bird"]:
        os.remove(os.path.join(root, "original", "val", "01_bird", file))
    with pytest.raises(DataError, match=f"{os.path.join(root, 'original', 'val', '01_bird')} has no"):
        image_folders.load_variant(root, "original", 8)
    with pytest.raises(ValueError, match="unknown variant 'mixed'"):
        image_folders.load_variant(root, "mixed", 8)


def test_an_empty_root_or_split_folder_is_refused(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path} has no variant folder"):
        image_folders.class_names(str(tmp_path))
    (tmp_path / "original" / "val").mkdir(parents=True)
    with pytest.raises(DataError, match=f"{tmp_path / 'original' / 'val'} has no class folders"):
        image_folders.class_names(str(tmp_path))


def test_variants_with_other_classes_are_refused_naming_the_difference(tmp_path):
    root = write_release(tmp_path)
    (tmp_path / "mixed_same" / "val" / "03_insect").mkdir()
    with pytest.raises(DataError, match=r"mixed_same/val has other class folders .* extra \['03_insect'\]"):
        image_folders.load_variant(root, "original", 8)  # its labels would not mean those of mixed_same
    os.rename(tmp_path / "mixed_same" / "val" / "03_insect", tmp_path / "fg_mask" / "val" / "03_insect")
    with pytest.raises(DataError, match=r"fg_mask/val has other class folders .* extra \['03_insect'\]"):
        image_folders.load_masks(root, "val", 8)


def test_an_undecodable_image_is_named(tmp_path):
    root = write_release(tmp_path)
    bad = tmp_path / "original" / "val" / "01_bird" / "b1.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match=f"image {bad} cannot be decoded"):
        image_folders.load_variant(root, "original", 8)


@pytest.mark.parametrize("write", [
    lambda path: np.save(path, np.array([["a", "b"]])),
    lambda path: np.save(path, np.ones(4)),
    lambda path: np.save(path, np.ones((2, 2, 2, 2))),
    lambda path: np.save(path, np.zeros((0, 3))),
    lambda path: np.save(path, np.ones((2, 2), np.complex64)),
    lambda path: path.write_bytes(b"not a numpy file"),
    lambda path: np.savez(open(path, "wb"), mask=np.ones((2, 2))),
], ids=["strings", "1-d", "4-d", "empty", "complex", "garbage", "npz"])
def test_masks_that_are_not_numeric_images_are_refused_naming_the_file(tmp_path, write):
    root = write_release(tmp_path)
    path = tmp_path / "fg_mask" / "val" / "02_fish" / "f1.npy"
    write(path)
    with pytest.raises(DataError, match=f"mask {path} "):
        image_folders.load_masks(root, "val", 8)


class _OpensAFile:
    """Unpickling this runs `open(path, "w")`: what a hostile mask could run instead."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_pickled_mask_is_refused_without_running_it(tmp_path):
    root = write_release(tmp_path)
    path = tmp_path / "fg_mask" / "val" / "02_fish" / "f1.npy"
    marker = tmp_path / "unpickled"
    np.save(path, np.array([_OpensAFile(str(marker))], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=f"mask {path} is not a numeric .npy array readable without pickle"):
        image_folders.load_masks(root, "val", 8)
    assert not marker.exists()
