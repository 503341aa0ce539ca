"""Named degradations and severity sweeps, looked up by name from configs.

A degradation is a small frozen object called as `degradation(images, key)`; a preset is a
named, ordered tuple of (label, degradation) levels taken from a paper, so results can be
set beside the published ones. Blur levels of one preset share their kernel support, so a
sweep compiles once. Random parameters (ImageNet-C's motion angle, the camera-shake kernel of
each image) are drawn from `key`: the same key gives the same draws in every test setting.

`degrade(images, degradation, key, mask=mask, region='foreground')` keeps the result inside a
region only (see `regions.py`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ctxfuse_jax.degrade import blurring
from ctxfuse_jax.degrade import compress, kernels, noise, protocol, regions, shake

Degradation = Callable[[jax.Array, jax.Array], jax.Array]


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
    """

    family: str
    params: tuple[tuple[str, float | Uniform], ...]
    support: int
    scale: int | None = None
    bank: str = "validation"

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
            self.family, batch, support=self.support, bank=self.bank, **values
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
        del key
        return jnp.asarray(compress.jpeg(np.asarray(images), self.quality).numpy())


@dataclasses.dataclass(frozen=True)
class Jpeg2000:
    """JPEG 2000 round trip at compression ratio `rate`, on the host."""

    rate: float

    def __call__(self, images: jax.Array, key: jax.Array) -> jax.Array:
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
    """A named sweep: levels in increasing severity, each (label, degradation)."""

    name: str
    levels: tuple[tuple[str, Degradation], ...]
    source: str

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(label for label, _ in self.levels)

    def __getitem__(self, label: str) -> Degradation:
        """The level called `label` (e.g. preset['D4']); unknown labels list the valid ones."""
        for name, degradation in self.levels:
            if name == label:
                return degradation
        raise KeyError(f"{self.name} has no level {label!r}; valid: {', '.join(self.labels)}")


def _largest(value: float | Uniform) -> float:
    return value.high if isinstance(value, Uniform) else value


def blur_sweep(
    family: str,
    levels: Mapping[str, Mapping[str, float | Uniform]],
    *,
    scale: int | None = None,
    bank: str = "validation",
) -> tuple[tuple[str, Blur], ...]:
    """Blur levels {label: params} sharing the smallest support that holds all of them."""
    support = max(
        kernels.support_for(family, **{k: _largest(v) for k, v in params.items()})
        for params in levels.values()
    )
    return tuple(
        (label, Blur(family, tuple(params.items()), support, scale, bank))
        for label, params in levels.items()
    )


# Seed 001 defines kernels at a 384-pixel short side; ImageNet-C corrupts 224 x 224 crops.
IMAGENET_C_SCALE = 224
IMAGENET_C_MOTION_ANGLE = Uniform(-45.0, 45.0)
# Seed 003 blurs with "radius 4 and standard deviation 1": sigma 1 cut at 4 sigma.
GHOSH_BLUR_SIGMA = 1.0
GHOSH_BLUR = Blur(
    "gaussian",
    (("sigma", GHOSH_BLUR_SIGMA),),
    kernels.support_for("gaussian", sigma=GHOSH_BLUR_SIGMA),
)
# Seed 003 does not give the noise level of its noise + JPEG combination; ours.
GHOSH_NOISE_STD = 0.1
GHOSH_JPEG_QUALITIES = (90, 70, 50, 30, 20, 10, 5, 2)
GHOSH_JPEG2000_RATES = (10, 25, 50, 100, 200, 400)


def _severities(values: tuple, make: Callable[[float], Degradation]) -> tuple:
    return tuple((str(i), make(v)) for i, v in enumerate(values, start=1))


def _quality_sweep(qualities: tuple[int, ...], make: Callable[[int], Degradation]) -> tuple:
    return tuple((f"q{q}", make(q)) for q in qualities)


_VASILJEVIC = "Vasiljevic et al. 2016, seed 001 (kernels at a 384-pixel short side)"
_IMAGENET_C = "Hendrycks & Dietterich 2019, ImageNet-C severities 1-5 (hendrycks/robustness)"
_GHOSH = "Ghosh et al. 2018, seed 003"

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "vasiljevic/defocus",
            blur_sweep(
                "disk",
                {f"D{r}": {"radius": r} for r in (2, 4, 6, 8)},
                scale=protocol.CANONICAL_SCALE,
            ),
            _VASILJEVIC,
        ),
        Preset(
            "vasiljevic/motion",
            blur_sweep(
                "motion",
                {
                    f"{axis}{length}": {"length": length, "angle": angle}
                    for axis, angle in (("H", 0.0), ("V", 90.0))
                    for length in (4, 8)
                },
                scale=protocol.CANONICAL_SCALE,
            ),
            _VASILJEVIC,
        ),
        Preset(
            "vasiljevic/camera_shake",
            blur_sweep(
                "shake",
                {"shake": {"index": Uniform(0, shake.BANKS["validation"][1])}},
                scale=protocol.CANONICAL_SCALE,
            ),
            _VASILJEVIC + "; each image draws one of the 100 validation kernels",
        ),
        Preset(
            "vasiljevic/gaussian",
            blur_sweep(
                "gaussian",
                {f"G{s}": {"sigma": s} for s in (1, 3, 5, 7, 9)},
                scale=protocol.CANONICAL_SCALE,
            ),
            _VASILJEVIC + "; sigma 1-9 as in Dodge & Karam 2016, which it follows",
        ),
        Preset(
            "joshi/gaussian",
            blur_sweep("gaussian", {f"s{s}": {"sigma": s} for s in range(13)}),
            "Joshi et al., seed 000: Gaussian sigma 0..12 (foreground-only or whole image)",
        ),
        Preset(
            "imagenet_c/gaussian_blur",
            blur_sweep(
                "gaussian",
                {str(i): {"sigma": s} for i, s in enumerate((1, 2, 3, 4, 6), start=1)},
                scale=IMAGENET_C_SCALE,
            ),
            _IMAGENET_C,
        ),
        Preset(
            "imagenet_c/defocus_blur",
            blur_sweep(
                "disk",
                {str(i): {"radius": r} for i, r in enumerate((3, 4, 6, 8, 10), start=1)},
                scale=IMAGENET_C_SCALE,
            ),
            _IMAGENET_C + "; our anti-aliased disk, not its blurred aliased one",
        ),
        Preset(
            "imagenet_c/motion_blur",
            blur_sweep(
                "imagenet_c_motion",
                {
                    str(i): {"radius": r, "sigma": s, "angle": IMAGENET_C_MOTION_ANGLE}
                    for i, (r, s) in enumerate(
                        ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)), start=1
                    )
                },
                scale=IMAGENET_C_SCALE,
            ),
            _IMAGENET_C,
        ),
        Preset(
            "imagenet_c/gaussian_noise",
            _severities((0.08, 0.12, 0.18, 0.26, 0.38), Noise),
            _IMAGENET_C,
        ),
        Preset(
            "imagenet_c/jpeg_compression",
            _severities((25, 18, 15, 10, 7), Jpeg),
            _IMAGENET_C,
        ),
        Preset("ghosh/jpeg", _quality_sweep(GHOSH_JPEG_QUALITIES, Jpeg), _GHOSH),
        Preset(
            "ghosh/jpeg2000",
            tuple((f"r{r}", Jpeg2000(r)) for r in GHOSH_JPEG2000_RATES),
            _GHOSH + "; rate = compression ratio (ours: the paper's scale is not given)",
        ),
        Preset(
            "ghosh/blur_jpeg",
            _quality_sweep(
                GHOSH_JPEG_QUALITIES,
                lambda q: Chain((GHOSH_BLUR, Jpeg(q))),
            ),
            _GHOSH + ": Gaussian blur (sigma 1) then JPEG",
        ),
        Preset(
            "ghosh/noise_jpeg",
            _quality_sweep(
                GHOSH_JPEG_QUALITIES, lambda q: Chain((Noise(GHOSH_NOISE_STD), Jpeg(q)))
            ),
            _GHOSH + f": Gaussian noise (std {GHOSH_NOISE_STD}, ours) then JPEG",
        ),
    )
}


def get_preset(name: str) -> Preset:
    """The preset called `name`; unknown names raise a KeyError listing the valid ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown degradation preset {name!r}; valid: {', '.join(PRESETS)}") from None
