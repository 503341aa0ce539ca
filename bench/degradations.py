"""The degradations a training batch may get on device, by name, built from the project's own API.

Each is `fn(images, masks, key) -> images` on float NHWC [0, 1] batches with a (B, H, W, 1)
object mask, jittable, with per-image parameters drawn from `key` (as a training batch would
draw them), so a fused degrade + train step is the real cost of degrading while training.
JPEG runs on the host through TensorFlow (`degrade.compress`), so it has no on-device entry:
`HOST` holds it, timed on its own.
"""

from typing import Callable

import jax

from ctxfuse_jax import degrade
from ctxfuse_jax.degrade import Uniform, shake
from ctxfuse_jax.degrade.presets import Degradation as ImageDegradation

Degradation = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]

SWEEP_SIGMA_224 = 12.0  # The fusion sweep's largest sigma at its 224 px reference size.
TRAIN_BANK = "train"  # Seed 001 trains on its 10,000 camera-shake kernels.


def _sweep_sigmas(key: jax.Array, images: jax.Array) -> jax.Array:
    """A sigma per image, uniform up to the sweep's largest at this image size."""
    return jax.random.uniform(key, images.shape[:1], maxval=SWEEP_SIGMA_224 * images.shape[1] / 224)


def gaussian(images: jax.Array, masks: jax.Array, key: jax.Array) -> jax.Array:
    """`degrade.blur` of the whole image (the Gaussian path: two matrix products per image)."""
    sigma = _sweep_sigmas(key, images)
    support = degrade.support_for("gaussian", sigma=SWEEP_SIGMA_224)
    return degrade.blur(images, degrade.blur_params("gaussian", images.shape[0], sigma=sigma, support=support))


def gaussian_foreground(images: jax.Array, masks: jax.Array, key: jax.Array) -> jax.Array:
    """The fusion job's foreground-only blur, as its `blur_foreground` condition computes it
    (`evaluate.conditions.gaussian_blur_family`): the object blurred, the background bit-identical."""
    blurred = degrade.gaussian_blur(images, _sweep_sigmas(key, images))
    return degrade.composite(images, blurred, masks, "foreground")


def _whole(level: ImageDegradation) -> Degradation:
    """A `degrade` level (images, key) -> images, applied to the whole image."""
    return lambda images, masks, key: level(images, key)


ON_DEVICE: dict[str, Degradation] = {
    "gaussian blur": gaussian,
    "gaussian blur, foreground only": gaussian_foreground,
    # FFT path: a per-image kernel drawn from the training bank (38 MB, a constant of the program).
    "camera shake (train bank)": _whole(degrade.Blur(
        "shake", (("index", Uniform(0, shake.BANKS[TRAIN_BANK][1])),), shake.SUPPORT, bank=TRAIN_BANK)),
    # Seed 001's protocol: resize to 384 px, blur, resize back, quantize to 8 bits.
    "defocus D8, seed 001 protocol": _whole(degrade.get_preset("vasiljevic/defocus")["D8"]),
    "gaussian noise": _whole(degrade.get_preset("imagenet_c/gaussian_noise")["3"]),
}

HOST: dict[str, ImageDegradation] = {
    "JPEG quality 15 (host, TensorFlow)": degrade.get_preset("imagenet_c/jpeg_compression")["3"],
}
