"""The host stage degrading training images at qualities drawn from bins, and the degraded test sets:
every image is its bin's degradation recomputed by `degrade.compress`, bins follow their
probabilities, streams are pure functions of (seed, step), and bad bins say what is wrong."""

import itertools

import jax
import numpy as np
import pytest
import tensorflow as tf

from ctxfuse_jax import degrade
from ctxfuse_jax.data import degraded, pipeline
from ctxfuse_jax.data.quality_bins import Bin, QualityBins
from ctxfuse_jax.degrade import compress

BINS = QualityBins((Bin("clean"), Bin("jpeg", 5, 20), Bin("jpeg", 50, 90), Bin("jpeg2000", 10, 50)), (4, 3, 2, 1))


def photo_split(count: int, size: int) -> pipeline.ArraySplit:
    """`count` real photo tiles of `size` px (codecs behave on photos, not on random pixels), indexed."""
    import skimage.data

    photo = skimage.data.astronaut()
    per_row = photo.shape[1] // size
    tiles = [photo[(i // per_row) * size:][:size, (i % per_row) * size:][:, :size] for i in range(count)]
    return pipeline.ArraySplit({"image": np.stack(tiles), "label": np.arange(count) % 3, "index": np.arange(count)})


@pytest.fixture(scope="module")
def split():
    return photo_split(12, 24)


def take(iterator, n):
    return list(itertools.islice(iterator, n))


def unit(images):
    return np.asarray(images, np.float32) / 255.0


def to_uint8(images):
    return np.round(np.asarray(images) * 255).astype(np.uint8)


def expected_image(b: Bin, image: np.ndarray, quality: float) -> np.ndarray:
    """An independent recomputation of a codec bin's image with `degrade.compress`."""
    if b.kind == "clean":
        return image
    if b.kind == "jpeg":
        return to_uint8(compress.jpeg(unit(image), int(quality)))
    return to_uint8(compress.jpeg2000(unit(image), rate=float(quality)))


def test_each_image_is_its_labelled_bins_codec_at_its_drawn_quality(split):
    for batch in take(degraded.train_batches(split, BINS, 4, seed=3), 6):
        for image, index, label, quality in zip(batch["image"], batch["index"], batch["quality_bin"],
                                                batch["quality"], strict=True):
            b = BINS.bins[label]
            # The label is the one bin whose range holds the quality (the bins do not overlap).
            assert [i for i, other in enumerate(BINS.bins) if other.holds(b.kind, quality)] == [label]
            np.testing.assert_array_equal(image, expected_image(b, split.arrays["image"][index], quality))


def test_qualities_lie_in_their_bins_and_bins_follow_their_probabilities():
    draws = 2000
    many = photo_split(1000, 16)  # two epochs of 1000
    batches = take(degraded.train_batches(many, BINS, 100, seed=0), draws // 100)
    labels = np.concatenate([b["quality_bin"] for b in batches])
    qualities = np.concatenate([b["quality"] for b in batches])
    for i, (b, p) in enumerate(zip(BINS.bins, BINS.probabilities, strict=True)):
        count = np.sum(labels == i)
        assert abs(count - draws * p) <= 4 * np.sqrt(draws * p * (1 - p)), (b.name, count, draws * p)
        mine = qualities[labels == i]
        assert np.all((b.low <= mine) & (mine <= b.high)), b.name
        if b.kind == "jpeg":  # Whole qualities, both ends drawn.
            np.testing.assert_array_equal(mine, np.round(mine))
            assert {b.low, b.high} <= set(mine.tolist())
    assert BINS.probabilities == pytest.approx((0.4, 0.3, 0.2, 0.1))


def test_a_stream_is_a_function_of_its_seed_and_step_and_resumes_exactly(split):
    noisy = QualityBins((Bin("noise", 0.05, 0.2), Bin("jpeg", 5, 20, blur_sigma=1.0), Bin("jpeg2000", 10, 50)))
    first = take(degraded.train_batches(split, noisy, 4, seed=7), 7)  # 3 steps per epoch: into the third epoch
    again = take(degraded.train_batches(split, noisy, 4, seed=7), 7)
    resumed = take(degraded.train_batches(split, noisy, 4, seed=7, start_step=4), 3)
    other = take(degraded.train_batches(split, noisy, 4, seed=8), 7)
    for a, b in zip(first, again, strict=True):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    for a, b in zip(first[4:], resumed, strict=True):
        assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a["image"], b["image"]) for a, b in zip(first, other, strict=True))
    # Not only another order: another seed gives the same examples other qualities.
    by_index = [dict(zip(np.concatenate([b["index"] for b in run[:3]]).tolist(),
                         np.concatenate([b["quality"] for b in run[:3]]).tolist())) for run in (first, other)]
    assert sum(by_index[0][i] != by_index[1][i] for i in by_index[0]) > len(split) // 2


def test_what_an_example_gets_does_not_depend_on_the_batch_size(split):
    noisy = QualityBins((Bin("noise", 0.05, 0.2), Bin("jpeg", 5, 20)))

    def epoch(batch_size):
        batches = take(degraded.train_batches(split, noisy, batch_size, seed=1), len(split) // batch_size)
        return {int(i): (q, image.tobytes()) for b in batches
                for i, q, image in zip(b["index"], b["quality"], b["image"], strict=True)}

    assert epoch(4) == epoch(6)


def test_the_hosts_parts_make_the_single_host_batch(split, monkeypatch):
    noisy = QualityBins((Bin("noise", 0.05, 0.2), Bin("jpeg", 5, 20)))
    whole = take(degraded.train_batches(split, noisy, 4, seed=1, start_step=2), 3)
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    parts = []
    for host in range(2):
        monkeypatch.setattr(jax, "process_index", lambda host=host: host)
        parts.append(take(degraded.train_batches(split, noisy, 4, seed=1, start_step=2), 3))
    for batch, first, second in zip(whole, *parts, strict=True):
        for key, value in batch.items():
            np.testing.assert_array_equal(np.concatenate([first[key], second[key]]), value)


def test_a_clean_stream_is_pipeline_train_batches(split):
    clean = degraded.train_batches(split, QualityBins((Bin("clean"),)), 4, seed=5, start_step=2)
    for ours, reference in zip(take(clean, 5), take(pipeline.train_batches(split, 4, seed=5, start_step=2), 5)):
        assert set(ours) == {*reference, "quality_bin", "quality"}
        for key, value in reference.items():
            np.testing.assert_array_equal(ours[key], value)
        np.testing.assert_array_equal(ours["quality_bin"], 0)


def psnr(images, reference):
    mse = np.mean((unit(images) - unit(reference)) ** 2)
    return 10 * np.log10(1 / mse)


def test_more_compression_lowers_psnr():
    tiles = photo_split(8, 32)
    test_sets = degraded.DegradedTestSets(tiles, seed=0)
    sweep = test_sets.sweep("jpeg2000", (4, 40))
    mild, harsh = (psnr(sweep[r].arrays["image"], tiles.arrays["image"]) for r in (4, 40))
    assert harsh < mild - 5, (mild, harsh)
    assert psnr(test_sets.at("jpeg", 5).arrays["image"], tiles.arrays["image"]) < psnr(
        test_sets.at("jpeg", 90).arrays["image"], tiles.arrays["image"]) - 5


def test_test_sets_are_computed_once_and_chains_degrade_before_the_codec(split):
    test_sets = degraded.DegradedTestSets(split, seed=2)
    assert test_sets.at("clean") is split
    sweep = test_sets.sweep("jpeg", (50, 10), noise_std=0.1)
    assert list(sweep) == [50, 10] and test_sets.at("jpeg", 10, noise_std=0.1) is sweep[10]
    assert sweep[10].arrays["label"] is split.arrays["label"]  # Only the images are new.
    # The noise of each image is the same at every quality, and comes before the codec.
    noisy = test_sets.at("noise", 0.1).arrays["image"]
    for quality, degraded_split in sweep.items():
        np.testing.assert_array_equal(degraded_split.arrays["image"], to_uint8(compress.jpeg(unit(noisy), quality)))
    blurred = test_sets.at("blur", 1.0).arrays["image"]
    np.testing.assert_array_equal(test_sets.at("jpeg2000", 20, blur_sigma=1.0).arrays["image"],
                                  to_uint8(compress.jpeg2000(unit(blurred), rate=20.0)))
    residual = unit(noisy) - unit(split.arrays["image"])
    assert 0.08 < residual.std() < 0.11  # std 0.1, a little less where clipped at 0 and 1.


@pytest.mark.parametrize("sigma", [0.0, 1.0, 2.3])
def test_host_blur_matches_the_device_blur(sigma):
    images = np.random.default_rng(0).uniform(size=(2, 16, 20, 3)).astype(np.float32)
    support = Bin("blur", 0, sigma).blur_support
    host = np.stack([degraded._gaussian_blur(tf.constant(x), tf.constant(sigma), support).numpy() for x in images])
    np.testing.assert_allclose(host, np.asarray(degrade.gaussian_blur(jax.numpy.asarray(images), sigma)), atol=2e-6)


@pytest.mark.parametrize("make, message", [
    (lambda: Bin("webp", 5, 20), "unknown quality bin kind 'webp'; choose one of"),
    (lambda: Bin("jpeg", 20, 5), "low 20 is above high 5"),
    (lambda: Bin("jpeg", 0, 20), "JPEG qualities are whole numbers from 1 to 100"),
    (lambda: Bin("jpeg", 50, 101), "JPEG qualities are whole numbers from 1 to 100"),
    (lambda: Bin("jpeg", 5.5, 20), "JPEG qualities are whole numbers from 1 to 100"),
    (lambda: Bin("jpeg2000", 0.5, 10), "compression ratio is at least 1"),
    (lambda: Bin("clean", 0, 10), "a clean bin takes no quality"),
    (lambda: Bin("noise", -0.1, 0.1), "must be >= 0"),
    (lambda: Bin("blur", 1, 2, blur_sigma=1), "draws its own blur"),
    (lambda: QualityBins(()), "at least one bin"),
    (lambda: QualityBins((Bin("clean"), Bin("jpeg", 5, 20)), (1.0,)), "2 non-negative numbers"),
    (lambda: QualityBins((Bin("clean"), Bin("jpeg", 5, 20)), (1.0, -1.0)), "2 non-negative numbers"),
])
def test_bad_bins_say_what_is_wrong(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_uses_say_what_is_wrong(split):
    with pytest.raises(ValueError, match="reaches 12 px, more than the images' 4 x 4"):
        degraded.train_dataset(photo_split(4, 4), QualityBins((Bin("blur", 0, 3),)), 2, seed=0)
    with pytest.raises(ValueError, match="a test condition has one quality"):
        degraded.degrade_split(split, Bin("jpeg", 5, 20), seed=0)
