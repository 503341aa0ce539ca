"""Named degradations and severity sweeps, looked up by name from configs.

A degradation is a small frozen object called as `degradation(images, key)`; a preset is a
named, ordered {label: degradation} sweep taken from a paper, so results can be set beside
the published ones. Blur and noise run on device; JPEG / JPEG 2000 on the host (call those
outside jit). Blur levels of one preset share their kernel support, so a sweep compiles
once. Random parameters (ImageNet-C's motion angle, the camera-shake kernel of each image) are
drawn from `key`: the same key gives the same draws in every test setting.

`degrade(images, degradation, key, mask=mask, region='foreground')` keeps the result inside a
region only (see `regions.py`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ctxfuse_jax.degrade import blurring, kernels, noise, protocol, regions, shake

Degradation = Callable[[jax.Array, jax.Array], jax.Array]
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Uniform:
    """A per-image parameter drawn uniformly from [low, high) with the call's key."""

    low: float
    high: float


@dataclasses.dataclass(frozen=True)
class Blur:
    """Blur with one kernel family.

    params: (name, value) pairs, a value being a number or a `Uniform` draw per image.
    support: kernel support (odd); `preset` levels share the largest of their sweep.
    scale: short side the kernel sizes refer to. When set, seed 001's protocol runs (resize
      to it, blur, resize back, quantize to 8 bits); None blurs the images as they come.
    bank: the shake bank a 'shake' family indexes ('validation' or 'train').
    kernel_scale: the kernels' lengths times this (and a bank's kernels resampled): a paper's
      blurs on images `kernel_scale` times the paper's size (`at_scale`).
    """

    family: str
    params: tuple[tuple[str, float | Uniform], ...]
    support: int
    scale: int | None = None
    bank: str = "validation"
    kernel_scale: float = 1.0

    def __call__(self, images: jax.Array, key: jax.Array) -> jax.Array:
        batch = images.shape[0]
        keys = jax.random.split(key, len(self.params))
        values = {
            name: jax.random.uniform(k, (batch,), minval=v.low, maxval=v.high)
            if isinstance(v, Uniform)
            else v
            for k, (name, v) in zip(keys, self.params, strict=True)
        }
        params = blurring.blur_params(
            self.family,
            batch,
            support=self.support,
            bank=self.bank,
            kernel_scale=self.kernel_scale,
            **values,
        )
        if self.scale is None:
            return blurring.blur(images, params)
        return protocol.blur_at_scale(images, params, scale=self.scale)


@dataclasses.dataclass(frozen=True)
class Noise:
    """Additive Gaussian noise of standard deviation `std` (image range [0, 1])."""

    std: float

    def __call__(self, images: jax.Array, key: jax.Array) -> jax.Array:
        return noise.gaussian_noise(images, self.std, key)


@dataclasses.dataclass(frozen=True)
class Jpeg:
    """JPEG round trip at `quality`, on the host."""

    quality: int

    def __call__(self, images: jax.Array, key: jax.Array) -> jax.Array:
        from ctxfuse_jax.degrade import compress  # TensorFlow, loaded only when a round trip runs

        del key
        return jnp.asarray(compress.jpeg(np.asarray(images), self.quality).numpy())


@dataclasses.dataclass(frozen=True)
class Jpeg2000:
    """JPEG 2000 round trip at compression ratio `rate`, on the host."""

    rate: float

    def __call__(self, images: jax.Array, key: jax.Array) -> jax.Array:
        from ctxfuse_jax.degrade import compress  # TensorFlow, loaded only when a round trip runs

        del key
        return jnp.asarray(compress.jpeg2000(np.asarray(images), rate=self.rate).numpy())


@dataclasses.dataclass(frozen=True)
class Chain:
    """Degradations applied in order, e.g. blur then JPEG (seed 003's combinations)."""

    steps: tuple[Degradation, ...]

    def __call__(self, images: jax.Array, key: jax.Array) -> jax.Array:
        for step, k in zip(self.steps, jax.random.split(key, len(self.steps)), strict=True):
            images = step(images, k)
        return images


def degrade(
    images: ArrayLike,
    degradation: Degradation,
    key: jax.Array,
    *,
    mask: ArrayLike | None = None,
    region: str = "all",
) -> jax.Array:
    """Apply `degradation` to NHWC [0, 1] images, kept only inside `region` of `mask`."""
    images = jnp.asarray(images, jnp.float32)
    return regions.composite(images, degradation(images, key), mask, region)


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named sweep: {label: degradation} in increasing severity, and where it comes from."""

    name: str
    levels: Mapping[str, Degradation]
    source: str

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.levels)

    def __getitem__(self, label: str) -> Degradation:
        """The level called `label` (e.g. preset['D4']); unknown labels list the valid ones."""
        try:
            return self.levels[label]
        except KeyError:
            valid = ", ".join(self.labels)
            raise KeyError(f"{self.name} has no level {label!r}; valid: {valid}") from None


def _largest(value: float | Uniform) -> float:
    return value.high if isinstance(value, Uniform) else value


def at_scale(blur: Blur, scale: int, kernel_scale: float) -> Blur:
    """`blur` for images whose canonical short side is `scale` instead of the paper's, with its
    kernels `kernel_scale` times as long (e.g. seed 001 at 108 px: scale 108, kernel_scale 108/384)."""
    support = kernels.support_for(
        blur.family, kernel_scale, **{k: _largest(v) for k, v in blur.params}
    )
    return dataclasses.replace(blur, scale=scale, kernel_scale=kernel_scale, support=support)


def blur_sweep(
    family: str,
    levels: Mapping[str, Mapping[str, float | Uniform]],
    *,
    scale: int | None = None,
    bank: str = "validation",
) -> dict[str, Blur]:
    """Blur levels {label: params} sharing the smallest support that holds all of them."""
    support = max(
        kernels.support_for(family, **{k: _largest(v) for k, v in params.items()})
        for params in levels.values()
    )
    return {
        label: Blur(family, tuple(params.items()), support, scale, bank)
        for label, params in levels.items()
    }


def _by_severity(levels: Sequence[T]) -> dict[str, T]:
    """{'1': first, '2': second, ...}, ImageNet-C's severity labels."""
    return {str(i): level for i, level in enumerate(levels, start=1)}


# Seed 001 defines kernels at a 384-pixel short side (protocol.CANONICAL_SCALE).
_VASILJEVIC = "Vasiljevic et al. 2016, seed 001 (kernels at a 384-pixel short side)"

# ImageNet-C (hendrycks/robustness) corrupts 224 x 224 crops; its severities 1-5.
_IMAGENET_C = "Hendrycks & Dietterich 2019, ImageNet-C severities 1-5 (reflect borders here)"
IMAGENET_C_SCALE = 224
IMAGENET_C_MOTION_ANGLE = Uniform(-45.0, 45.0)
IMAGENET_C_BLURS = {
    "gaussian_blur": ("gaussian", [{"sigma": s} for s in (1, 2, 3, 4, 6)]),
    # ImageNet-C smooths an aliased disk with a small Gaussian; ours is anti-aliased directly.
    "defocus_blur": ("disk", [{"radius": r} for r in (3, 4, 6, 8, 10)]),
    "motion_blur": (
        "imagenet_c_motion",
        [
            {"radius": r, "sigma": s, "angle": IMAGENET_C_MOTION_ANGLE}
            for r, s in ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))
        ],
    ),
}
IMAGENET_C_NOISE_STDS = (0.08, 0.12, 0.18, 0.26, 0.38)
IMAGENET_C_JPEG_QUALITIES = (25, 18, 15, 10, 7)

# Seed 003 blurs with "radius 4 and standard deviation 1" (sigma 1 cut at 4 sigma); it does
# not give the noise level of its noise + JPEG combination, nor its JPEG 2000 scale: ours.
_GHOSH = "Ghosh et al. 2018, seed 003"
GHOSH_BLUR = blur_sweep("gaussian", {"sigma 1": {"sigma": 1.0}})["sigma 1"]
GHOSH_NOISE = Noise(0.1)
GHOSH_JPEG_QUALITIES = (90, 70, 50, 30, 20, 10, 5, 2)
GHOSH_JPEG2000_RATES = (10, 25, 50, 100, 200, 400)


def _presets() -> Iterator[Preset]:
    canonical = protocol.CANONICAL_SCALE
    yield Preset(
        "vasiljevic/defocus",
        blur_sweep("disk", {f"D{r}": {"radius": r} for r in (2, 4, 6, 8)}, scale=canonical),
        _VASILJEVIC,
    )
    motions = {(axis, n): angle for axis, angle in (("H", 0.0), ("V", 90.0)) for n in (4, 8)}
    yield Preset(
        "vasiljevic/motion",
        blur_sweep(
            "motion",
            {f"{axis}{n}": {"length": n, "angle": a} for (axis, n), a in motions.items()},
            scale=canonical,
        ),
        _VASILJEVIC,
    )
    shakes = {"shake": {"index": Uniform(0, shake.BANKS["validation"][1])}}
    yield Preset(
        "vasiljevic/camera_shake",
        blur_sweep("shake", shakes, scale=canonical),
        _VASILJEVIC + "; each image draws one of the 100 validation kernels",
    )
    yield Preset(
        "vasiljevic/gaussian",
        blur_sweep("gaussian", {f"G{s}": {"sigma": s} for s in (1, 3, 5, 7, 9)}, scale=canonical),
        _VASILJEVIC + "; its sigmas are unreadable in our copy: Dodge & Karam's 1-9 (it cites)",
    )
    yield Preset(
        "joshi/gaussian",
        blur_sweep("gaussian", {f"s{s}": {"sigma": s} for s in range(13)}),
        "Joshi et al., seed 000: Gaussian sigma 0..12 (foreground-only or whole image)",
    )
    for name, (family, levels) in IMAGENET_C_BLURS.items():
        yield Preset(
            f"imagenet_c/{name}",
            blur_sweep(family, _by_severity(levels), scale=IMAGENET_C_SCALE),
            _IMAGENET_C,
        )
    yield Preset(
        "imagenet_c/gaussian_noise",
        _by_severity([Noise(std) for std in IMAGENET_C_NOISE_STDS]),
        _IMAGENET_C,
    )
    yield Preset(
        "imagenet_c/jpeg_compression",
        _by_severity([Jpeg(quality) for quality in IMAGENET_C_JPEG_QUALITIES]),
        _IMAGENET_C,
    )
    ghosh = {
        "jpeg": (Jpeg, "JPEG"),
        "blur_jpeg": (lambda q: Chain((GHOSH_BLUR, Jpeg(q))), "Gaussian blur (sigma 1), JPEG"),
        "noise_jpeg": (
            lambda q: Chain((GHOSH_NOISE, Jpeg(q))),
            f"Gaussian noise (std {GHOSH_NOISE.std}, ours), JPEG",
        ),
    }
    for name, (make, what) in ghosh.items():
        levels = {f"q{q}": make(q) for q in GHOSH_JPEG_QUALITIES}
        yield Preset(f"ghosh/{name}", levels, f"{_GHOSH}: {what}")
    yield Preset(
        "ghosh/jpeg2000",
        {f"r{r}": Jpeg2000(r) for r in GHOSH_JPEG2000_RATES},
        f"{_GHOSH}: JPEG 2000 at compression ratios (ours: its scale is not given)",
    )


PRESETS: dict[str, Preset] = {preset.name: preset for preset in _presets()}


def get_preset(name: str) -> Preset:
    """The preset called `name`; unknown names raise a KeyError listing the valid ones."""
    try:
        return PRESETS[name]
    except KeyError:
        valid = ", ".join(PRESETS)
        raise KeyError(f"unknown degradation preset {name!r}; valid: {valid}") from None
