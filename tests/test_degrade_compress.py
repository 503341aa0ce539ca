"""JPEG and JPEG 2000 round trips against Pillow; Gaussian noise."""

import io

import jax
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ctxfuse_jax.degrade import compress, noise


@pytest.fixture(scope="module")
def images():
    import skimage.data

    photo = skimage.data.astronaut()[100:164:2, 150:198:2]  # A real 32 x 24 photo crop.
    return np.stack([photo, photo[::-1, ::-1]]).astype(np.float32) / 255.0


def pillow_round_trip(image, **save):
    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(buffer, **save)
    return np.asarray(Image.open(buffer), np.float32) / 255.0


@pytest.mark.parametrize("quality", [95, 50, 10, 7])
def test_jpeg_is_bit_identical_to_pillow(images, quality):
    out = compress.jpeg(images, quality).numpy()
    assert out.shape == images.shape and out.dtype == np.float32
    for image, result in zip(images, out, strict=True):
        expected = pillow_round_trip(image, format="JPEG", quality=quality)
        np.testing.assert_array_equal(result, expected)
    assert np.abs(out - images).mean() > 0  # Lossy.


def test_jpeg_per_image_quality_and_inside_tf_data(images):
    per_image = compress.jpeg(images, [10, 90]).numpy()
    np.testing.assert_array_equal(per_image[0], compress.jpeg(images[0], 10).numpy())
    np.testing.assert_array_equal(per_image[1], compress.jpeg(images[1], 90).numpy())
    dataset = tf.data.Dataset.from_tensor_slices((images, [10, 90])).map(compress.jpeg)
    np.testing.assert_array_equal(np.stack([x.numpy() for x in dataset]), per_image)


def test_jpeg2000_matches_pillow_at_a_rate_and_hits_a_psnr(images):
    out = compress.jpeg2000(images, rate=[20.0, 40.0]).numpy()
    for image, result, rate in zip(images, out, (20.0, 40.0), strict=True):
        expected = pillow_round_trip(
            image, format="JPEG2000", quality_mode="rates", quality_layers=[rate]
        )
        np.testing.assert_array_equal(result, expected)
    quantized = np.round(images * 255) / 255
    psnr = [10 * np.log10(1 / np.mean((o - q) ** 2)) for o, q in zip(
        compress.jpeg2000(images, psnr=[28.0, 38.0]).numpy(), quantized, strict=True
    )]
    assert 25 < psnr[0] < 31 and 35 < psnr[1] < 41
    dataset = tf.data.Dataset.from_tensor_slices(images).map(
        lambda x: compress.jpeg2000(x, rate=20.0)
    )
    np.testing.assert_array_equal(next(iter(dataset)).numpy(), out[0])


def test_grey_images_keep_their_single_channel(images):
    grey = images[..., :1]
    assert compress.jpeg(grey, 50).shape == grey.shape
    assert compress.jpeg2000(grey, rate=20.0).shape == grey.shape


def test_jpeg2000_needs_exactly_one_target(images):
    with pytest.raises(ValueError, match="exactly one of rate="):
        compress.jpeg2000(images)
    with pytest.raises(ValueError, match="exactly one of rate="):
        compress.jpeg2000(images, rate=10.0, psnr=30.0)


def test_gaussian_noise_per_image_std_deterministic_and_clipped():
    x = np.full((3, 64, 64, 3), 0.5, np.float32)
    key = jax.random.key(0)
    out = np.asarray(noise.gaussian_noise(x, np.array([0.0, 0.05, 0.2]), key))
    np.testing.assert_array_equal(out[0], x[0])
    assert np.std(out[1]) == pytest.approx(0.05, rel=0.05)
    assert np.std(out[2]) == pytest.approx(0.2, rel=0.05)
    np.testing.assert_array_equal(out, noise.gaussian_noise(x, np.array([0.0, 0.05, 0.2]), key))
    assert out.min() >= 0 and out.max() <= 1
    loud = np.asarray(noise.gaussian_noise(x, 2.0, key))
    assert (loud == 0).any() and (loud == 1).any()  # Clipped to [0, 1].
