"""Degradations: blur kernels and their batched application, noise, JPEG / JPEG 2000, and
ImageNet-9 background variants. Images are float32 NHWC in [0, 1].

    params = degrade.blur_params("disk", 32, radius=radii)  # one radius per image
    blurred = degrade.blur(images, params)  # on device; a sweep of radii compiles once
    mask = degrade.box_mask(boxes, 224, 224)
    kept = degrade.composite(images, blurred, mask, "foreground")  # background bit-identical
    preset = degrade.get_preset("imagenet_c/defocus_blur")  # by name, from configs
    out = degrade.degrade(images, preset["3"], key, mask=mask, region="background")
    deblurred = degrade.deconvolve("wiener", blurred, degrade.make_kernels(params))
"""

from ctxfuse_jax.degrade.backgrounds import VARIANTS, background_variant
from ctxfuse_jax.degrade.blurring import (
    BlurParams,
    blur,
    blur_params,
    convolve,
    gaussian_blur,
    make_kernels,
    mix,
)
from ctxfuse_jax.degrade.deconvolution import deconvolve, richardson_lucy, wiener
from ctxfuse_jax.degrade.kernels import FAMILIES, get_family, kernel, support_for
from ctxfuse_jax.degrade.noise import gaussian_noise
from ctxfuse_jax.degrade.presets import (
    PRESETS,
    Blur,
    Chain,
    Jpeg,
    Jpeg2000,
    Noise,
    Preset,
    Uniform,
    degrade,
    get_preset,
)
from ctxfuse_jax.degrade.protocol import CANONICAL_SCALE, blur_at_scale, quantize
from ctxfuse_jax.degrade.regions import REGIONS, box_mask, composite
from ctxfuse_jax.degrade.shake import shake_bank, shake_kernel

__all__ = [
    "CANONICAL_SCALE",
    "FAMILIES",
    "PRESETS",
    "REGIONS",
    "VARIANTS",
    "Blur",
    "BlurParams",
    "Chain",
    "Jpeg",
    "Jpeg2000",
    "Noise",
    "Preset",
    "Uniform",
    "background_variant",
    "blur",
    "blur_at_scale",
    "blur_params",
    "box_mask",
    "composite",
    "convolve",
    "deconvolve",
    "degrade",
    "gaussian_blur",
    "gaussian_noise",
    "get_family",
    "get_preset",
    "jpeg",
    "jpeg2000",
    "kernel",
    "make_kernels",
    "mix",
    "quantize",
    "richardson_lucy",
    "shake_bank",
    "shake_kernel",
    "support_for",
    "wiener",
]


def __getattr__(name: str):
    """`jpeg` and `jpeg2000` are TensorFlow ops: imported on first use, so that reading configs
    and degrading on device never load TensorFlow."""
    if name in ("jpeg", "jpeg2000"):
        from ctxfuse_jax.degrade import compress

        return getattr(compress, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
