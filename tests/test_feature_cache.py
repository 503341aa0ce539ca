"""Cached stream features: equal to the streams run on images, and heads trained from them equal
heads trained from images (same flips), through an interruption too."""

import os
import signal

import dm_pix
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ctxfuse_jax import provenance
from ctxfuse_jax.data import pipeline
from ctxfuse_jax.data.augment import augment, select_flipped
from ctxfuse_jax.data.sources import Labelled
from ctxfuse_jax.experiments import feature_cache
from ctxfuse_jax.experiments.fusion import experiment as fusion_experiment
from ctxfuse_jax.experiments.fusion import networks as fusion
from ctxfuse_jax.experiments.feature_cache import StreamFeatures, mirror_field
from ctxfuse_jax.train import sharding
from ctxfuse_jax.train.loop import Interrupted
from test_fusion import load_config

NUM_CLASSES = 3


@pytest.fixture(scope="module")
def setup():
    """A tiny fusion config, a random labelled dataset and two random frozen streams."""
    config = load_config("configs/fusion.py", "smoke")
    config.streams.update(cut="layer1", conv="xla")  # Quick to compile; 8x8 feature maps at 32 px.
    config.heads.fusion_features = 8
    config.heads.train.update(batch_size=8, num_epochs=2, learning_rate=0.01)
    config.loop.log_every = 5
    rng = np.random.default_rng(0)

    def split(n):
        labels = rng.integers(0, NUM_CLASSES, n)
        images = rng.integers(0, 160, (n, 32, 32, 3)) + 30 * labels[:, None, None, None]
        return pipeline.ArraySplit({"image": images.astype(np.uint8), "label": labels})

    data = Labelled(split(44), split(13), ("a", "b", "c"), ("x",), np.zeros(NUM_CLASSES, int))
    init = jax.jit(fusion.stream_module(config).init)
    streams = {role: jax.device_get(init(jax.random.PRNGKey(i), jnp.zeros((1, 32, 32, 3))))
               for i, role in enumerate(fusion.ROLES)}
    return config, data, streams


@pytest.fixture(scope="module")
def joint_heads(setup, tmp_path_factory):
    """The Joint head trained from images and from cached features: (variables, test metrics) each."""
    config, data, streams = setup
    workdir = tmp_path_factory.mktemp("joint")
    return {"images": _train(config, data, streams, workdir / "images"),
            "cache": _train(config, data, streams, workdir / "cache", _features(config, data, streams))}


def _features(config, data, streams):
    return StreamFeatures(fusion.stream_module(config), streams, data, mirrored=True, batch_size=8,
                          mesh=sharding.make_mesh())


def test_cached_features_are_the_stream_applied_to_each_image_and_its_mirror(setup):
    config, data, streams = setup
    train, test = _features(config, data, streams).splits(("fg", "bg"))
    apply = jax.jit(fusion.stream_module(config).apply)
    for role in ("fg", "bg"):
        images = data.train.arrays["image"].astype(np.float32) / 255
        expected = apply(streams[role], images)
        mirrored = apply(streams[role], images[:, :, ::-1])
        np.testing.assert_allclose(train.arrays[role], expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(train.arrays[mirror_field(role)], mirrored, rtol=1e-5, atol=1e-5)
        assert np.abs(mirrored - expected).mean() > 0.1 * np.abs(expected).mean()  # The mirror is another input.
        np.testing.assert_allclose(test.arrays[role], apply(streams[role], data.test.arrays["image"] / 255.0),
                                   rtol=1e-5, atol=1e-5)
        assert train.arrays[role].dtype == expected.dtype
    np.testing.assert_array_equal(train.arrays["label"], data.train.arrays["label"])
    assert len(train) == 44 and len(test) == 13 and mirror_field("fg") not in test.arrays


def test_augment_flips_as_dm_pix_per_example_and_features_flip_alike():
    images = jax.random.uniform(jax.random.PRNGKey(0), (64, 4, 5, 3))
    rng = jax.random.PRNGKey(7)
    flipped = augment(images, rng, flip=True)
    # The draws of the former augmentation: dm-pix's random flip with each example's first key.
    reference = jax.vmap(lambda image, key: dm_pix.random_flip_left_right(jax.random.split(key)[0], image))(
        images, jax.random.split(rng, 64))
    np.testing.assert_array_equal(flipped, reference)
    chosen = select_flipped(rng, {"x": jnp.arange(64.0)}, {"x": -jnp.arange(64.0) - 1})["x"]
    mirrored = np.asarray(chosen < 0)
    assert 16 < mirrored.sum() < 48
    np.testing.assert_array_equal(flipped[mirrored], images[mirrored][:, :, ::-1])
    np.testing.assert_array_equal(flipped[~mirrored], images[~mirrored])


def _train(config, data, streams, workdir, features=None, model="Joint"):
    head, metrics = fusion_experiment.train_head(config, model, data, streams, 0, str(workdir), sharding.make_mesh(),
                                     provenance.input_digests(config), features)
    return jax.device_get(head), metrics


def test_head_trained_from_cached_features_matches_head_trained_from_images(joint_heads):
    # Mirrored features differ from the originals and about half the examples flip (tests above),
    # so a cache that flipped otherwise would miss by far more: trained without flips, this head
    # ends 0.6 away; the two paths agree to ~1e-6.
    (from_images, images_metrics), (from_cache, cache_metrics) = joint_heads["images"], joint_heads["cache"]
    for a, b in zip(jax.tree.leaves(from_images), jax.tree.leaves(from_cache)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for name in ("loss", "accuracy", "entropy"):
        assert cache_metrics[name] == pytest.approx(images_metrics[name], rel=1e-4, abs=1e-5)


def test_interrupted_cached_head_stage_resumes_to_identical_head(setup, tmp_path, monkeypatch):
    config, data, streams = setup
    straight, _ = _train(config, data, streams, tmp_path / "straight", _features(config, data, streams), model="FG")
    original = pipeline.train_batches

    def batches_with_sigterm(split, batch_size, seed, start_step=0):
        for i, batch in enumerate(original(split, batch_size, seed, start_step)):
            if start_step + i == 6:  # The signal lands while step 7 is being prepared.
                os.kill(os.getpid(), signal.SIGTERM)
            yield batch

    monkeypatch.setattr(pipeline, "train_batches", batches_with_sigterm)
    with pytest.raises(Interrupted):
        _train(config, data, streams, tmp_path / "resumed", _features(config, data, streams), model="FG")
    monkeypatch.undo()
    resumed, _ = _train(config, data, streams, tmp_path / "resumed", _features(config, data, streams), model="FG")
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(a, b)


def _heads(mode="auto", crop_padding=0, flip=True, max_gib=4.0):
    return ml_collections.ConfigDict(dict(feature_cache=mode, feature_cache_max_gib=max_gib,
                                          train=dict(augment=dict(flip=flip, crop_padding=crop_padding))))


def test_cache_decision_follows_mode_augmentation_and_budget(capsys):
    feature = jax.ShapeDtypeStruct((1, 4, 4, 64), jnp.float32)  # 4096 bytes per image and stream
    size_gib = 2 * (100 * 2 + 50) * 4096 / 2 ** 30  # two streams, 100 train images and mirrors, 50 test

    def decide(**kwargs):
        return feature_cache.use_cache(_heads(**kwargs), feature, 100, 50, 2)

    assert decide() and decide(mode="on")
    assert not decide(mode="off") and not decide(crop_padding=4)
    assert not decide(max_gib=0.99 * size_gib) and decide(max_gib=1.01 * size_gib)
    assert decide(mode="on", max_gib=0.99 * size_gib)  # 'on' is not bound by the budget
    assert not decide(flip=False, max_gib=0.59 * size_gib) and decide(flip=False, max_gib=0.61 * size_gib)
    log = capsys.readouterr().out
    assert "2 streams x (100 train x 2 (image, mirror) + 50 test) x (4, 4, 64) float32 = 2.0 MiB" in log
    assert "crop augmentation (crop_padding=4)" in log and "exceeds heads.feature_cache_max_gib" in log
