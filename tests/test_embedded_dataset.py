"""The embedded dataset: determinism, exact masks and boxes, label maps, context statistics, TFDS builder."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from ctxfuse_jax.data.embedded import builder as builder_lib
from ctxfuse_jax.data.embedded import examples
from ctxfuse_jax.data.embedded.examples import OBJECT_CROPS, OBJECTS, SCENES, Recipe, make_example
from ctxfuse_jax.data.embedded.icons import ICONS
from ctxfuse_jax.data.embedded.scenes import SCENES as SCENE_DRAWERS
from ctxfuse_jax.data.embedded.taxonomy import embedded_info

SIZE = 32
INFO = embedded_info()


def _examples(variant: str, count: int, **recipe) -> list[dict]:
    return [make_example(Recipe(variant, SIZE, **recipe), i) for i in range(count)]


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    return _examples(OBJECTS, 96)


@pytest.fixture(scope="module")
def crops() -> list[dict]:
    return _examples(OBJECT_CROPS, 48)


def test_label_spaces_are_declared_once_and_drawn_completely():
    assert len(INFO.class_names) == 24 and len(INFO.supercategory_names) == 4
    assert set(ICONS) == set(INFO.class_names)
    assert set(SCENE_DRAWERS) == set(INFO.scene_names)
    for supercategory in range(4):
        assert INFO.class_supercategory.count(supercategory) == 6
        assert len(INFO.scenes_of(supercategory)) == 3


@pytest.mark.parametrize("variant", examples.VARIANTS)
def test_same_seed_same_bytes_other_seed_differs(variant):
    first, again = (make_example(Recipe(variant, SIZE, seed=7), 5) for _ in range(2))
    other = make_example(Recipe(variant, SIZE, seed=8), 5)
    assert first.keys() == again.keys()
    for key in first:
        assert np.asarray(first[key]).tobytes() == np.asarray(again[key]).tobytes(), key
    assert first["image"].tobytes() != other["image"].tobytes()


def test_every_image_size_has_the_standard_shapes():
    for size in builder_lib.IMAGE_SIZES:
        example = make_example(Recipe(OBJECTS, size), 3)
        assert example["image"].shape == example["background"].shape == (size, size, 3)
        assert example["mask"].shape == (size, size, 1)
        assert example["image"].dtype == example["mask"].dtype == np.uint8
        assert example["bbox"].dtype == np.float32 and example["bbox"].shape == (4,)


def test_mask_is_exact_and_box_is_its_tight_box(objects, crops):
    for example in objects + crops:
        mask = example["mask"][..., 0]
        assert set(np.unique(mask)) == {0, 1}
        outside = mask == 0
        np.testing.assert_array_equal(example["image"][outside], example["background"][outside])
        rows, cols = np.nonzero(mask)
        tight = np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1])
        np.testing.assert_allclose(example["bbox"] * SIZE, tight, atol=1.0)


def test_object_boxes_cover_at_most_half_the_image_and_crops_fill_it(objects, crops):
    def sides(batch):
        boxes = np.stack([e["bbox"] for e in batch])
        return boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]

    height, width = sides(objects)
    assert (height * width).max() <= 0.5
    assert np.maximum(*sides(crops)).min() >= 0.6


def test_labels_follow_the_declared_maps(objects, crops):
    for batch in (objects, crops):
        for index, example in enumerate(batch):
            assert example["label"] == index % 24
            assert example["supercategory"] == INFO.class_supercategory[example["label"]]
            assert 0 <= example["scene"] < len(INFO.scene_names)


@pytest.mark.parametrize("context", [0.0, 0.5, 1.0])
def test_scene_sampler_keeps_the_configured_context(context):
    rng = np.random.default_rng(0)
    draws = 20000
    own = sum(INFO.scene_supercategory[examples.sample_scene(rng, s % 4, context)] == s % 4 for s in range(draws))
    expected = context + (1 - context) / 4
    assert abs(own / draws - expected) < 4 * np.sqrt(expected * (1 - expected) / draws) + 1e-9


def test_generated_scenes_follow_context_within_sampling_tolerance(objects):
    own = np.mean([INFO.scene_supercategory[e["scene"]] == e["supercategory"] for e in objects])
    expected = examples.DEFAULT_CONTEXT + (1 - examples.DEFAULT_CONTEXT) / 4
    assert abs(own - expected) < 4 * np.sqrt(expected * (1 - expected) / len(objects))


def test_context_changes_scenes_only_and_crops_ignore_it():
    never, always = _examples(OBJECTS, 24, context=0.0), _examples(OBJECTS, 24, context=1.0)
    for a, b in zip(never, always):
        np.testing.assert_array_equal(a["mask"], b["mask"])
        assert INFO.scene_supercategory[b["scene"]] == b["supercategory"]
    assert any(a["scene"] != b["scene"] for a, b in zip(never, always))
    for a, b in zip(_examples(OBJECT_CROPS, 12, context=0.0), _examples(OBJECT_CROPS, 12, context=1.0)):
        np.testing.assert_array_equal(a["image"], b["image"])


def test_scenes_variant_draws_no_object(monkeypatch):
    def no_objects(*args, **kwargs):
        raise AssertionError("the scenes variant must not draw objects")

    monkeypatch.setattr(examples, "render_icon", no_objects)
    batch = _examples(SCENES, 24)
    assert all(set(e) == {"image", "scene"} for e in batch)
    assert [e["scene"] for e in batch] == [i % 12 for i in range(24)]


def test_config_names_say_what_differs_from_the_defaults():
    assert builder_lib.embedded_config() is builder_lib.embedded_config(OBJECTS, 64)
    assert builder_lib.embedded_config(SCENES, 32).name == "scenes_32"
    custom = builder_lib.embedded_config(OBJECTS, 32, num_examples=40, seed=3, context=0.5)
    assert custom.name == "objects_32_n40_seed3_context0p5"
    assert builder_lib.embedded_config(OBJECT_CROPS, 32, context=0.5).name == "object_crops_32"
    with pytest.raises(ValueError, match="unknown variant"):
        builder_lib.embedded_config("faces")


def _decoded(split) -> list[dict]:
    return list(tfds.as_numpy(split))


def test_tfds_builder_writes_the_generated_examples_split_75_25(tmp_path):
    builder = builder_lib.embedded_builder(OBJECTS, SIZE, str(tmp_path), num_examples=40, seed=1)
    assert builder.info.splits["train"].num_examples == 30
    assert builder.info.splits["test"].num_examples == 10
    assert builder.info.features["label"].names == list(INFO.class_names)
    assert builder.info.features["scene"].names == list(INFO.scene_names)
    expected = {make_example(Recipe(OBJECTS, SIZE, seed=1), i)["image"].tobytes(): i for i in range(30, 40)}
    for example in _decoded(builder.as_dataset(split="test")):
        index = expected.pop(example["image"].tobytes())
        assert example["label"] == index % 24
        assert example["supercategory"] == INFO.class_supercategory[example["label"]]
    assert not expected

    again = builder_lib.load_embedded(OBJECTS, "train", SIZE, str(tmp_path), num_examples=40, seed=1)
    assert len(_decoded(again)) == 30  # read back from the cache


def test_tfds_builder_is_deterministic_on_disk(tmp_path):
    def record_bytes(directory):
        builder = builder_lib.embedded_builder(SCENES, SIZE, str(directory), num_examples=12)
        return {path.name: path.read_bytes() for path in sorted(builder.data_path.glob("*.tfrecord*"))}

    first, second = record_bytes(tmp_path / "a"), record_bytes(tmp_path / "b")
    assert first and first == second


def test_pretraining_variants_have_their_own_targets(tmp_path):
    scenes = builder_lib.embedded_builder(SCENES, SIZE, str(tmp_path), num_examples=12)
    assert scenes.info.supervised_keys == ("image", "scene")
    assert set(scenes.info.features) == {"image", "scene"}
    crops = builder_lib.embedded_builder(OBJECT_CROPS, SIZE, str(tmp_path), num_examples=24)
    assert crops.info.supervised_keys == ("image", "label")
    labels = sorted(e["label"] for e in _decoded(crops.as_dataset(split="train+test")))
    assert labels == list(range(24))


@pytest.mark.parametrize("choice,message", [
    (dict(image_size=7), "image_size must be an integer >= 16"),
    (dict(seed=-1), "seed must be an integer >= 0"),
    (dict(num_examples=2), "need at least one train and one test example"),
    (dict(context=1.5), "context is a probability"),
    (dict(variant="faces"), "unknown variant 'faces'"),
])
def test_bad_choices_fail_before_tfds_creates_any_directory(tmp_path, choice, message):
    data_dir = tmp_path / "tfds"
    options = {"variant": OBJECTS, "split": "train", "image_size": SIZE, "data_dir": str(data_dir), **choice}
    with pytest.raises(ValueError, match=message):
        builder_lib.load_embedded(**options)
    assert not data_dir.exists()
    assert list(tmp_path.iterdir()) == []
