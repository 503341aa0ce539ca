"""Fine-tuning on blur mixtures, drawn per image inside the jitted train step.

A mixture is {option: weight}: 'sharp', or a level of one of seed 001's presets ('D2'..'D8',
'H4', 'V8', 'G3', ...; 'shake' draws one of the 10,000 training kernels, never a test one).
Each image of a batch draws its option, a rescale around the canonical scale and a target
network scale, then (as the paper does, one static shape for the whole batch):

  crop window in the canonical image  ->  resampled to the blur resolution (the window's size at
  the drawn rescale)  ->  blurred with its kernel  ->  resized to the training crop, quantised,
  flipped.

Cropping before blurring is exact for a spatially uniform blur away from the window's border
(reflected there) and blurs ~(crop / image)^2 of the pixels. A crop for a larger target scale is
blurred upsampled, its kernel grown by target / min(targets), so a kernel's size at the network
input is the same for every image fed at the same scale, as the paper requires.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

from ctxfuse_jax.data.pipeline import to_unit_float
from ctxfuse_jax.degrade import blurring, kernels, presets, protocol
from ctxfuse_jax.experiments.blur_study.geometry import Geometry, at_scale
from ctxfuse_jax.models.attention import crop_resize

from ctxfuse_jax.experiments.blur_study.choices import LEVEL_PRESETS, SHARP, TRAIN_BANK


def level_blurs() -> dict[str, presets.Blur]:
    """Every level of seed 001's presets by its label (D2, H4, shake, G3, ...)."""
    return {label: blur for name in LEVEL_PRESETS for label, blur in presets.get_preset(name).levels.items()}


def options() -> tuple[str, ...]:
    return (SHARP, *level_blurs())


@dataclasses.dataclass(frozen=True)
class Mixture:
    """Per-image blur options with their probabilities (weights normalised)."""

    names: tuple[str, ...]
    probabilities: tuple[float, ...]

    @classmethod
    def from_weights(cls, weights: Mapping[str, float]) -> Mixture:
        total = float(sum(weights.values()))
        return cls(tuple(weights), tuple(float(w) / total for w in weights.values()))

    @property
    def blurs(self) -> bool:
        return any(name != SHARP for name in self.names)

    def draw(self, key: jax.Array, batch: int) -> jax.Array:
        """int32 (batch,): each image's option, drawn with the mixture's probabilities."""
        return jax.random.choice(key, len(self.names), (batch,), p=jnp.asarray(self.probabilities))

    def families(self) -> tuple[str, ...]:
        """The kernel families present ('disk' stands for sharp: radius 0 is the identity)."""
        blurs = level_blurs()
        found = ["disk" if n == SHARP else blurs[n].family for n in self.names]
        return tuple(dict.fromkeys(found))

    def blur_params(self, choice: jax.Array, key: jax.Array, growth: jax.Array, max_growth: float,
                    kernel_scale: float) -> blurring.BlurParams:
        """Each image's kernel: its option's, lengths times `growth` (per image, at most the static
        `max_growth`, which sizes the support) and `kernel_scale`."""
        blurs = level_blurs()
        batch = choice.shape[0]
        per_family = []
        for family_name in self.families():
            family = kernels.get_family(family_name)
            # Each option's (low, high) per parameter; options of other families (and sharp) are all zero.
            ranges = [{p: _bounds(v) for p, v in blurs[n].params} if n != SHARP and blurs[n].family == family_name
                      else {} for n in self.names]
            support = max([1] + [kernels.support_for(family_name, kernel_scale * max_growth,
                                                     **{p: high for p, (_, high) in r.items()}) for r in ranges if r])
            values = {}
            for param_index, param in enumerate(family.params):
                low, high = (jnp.asarray([r.get(param, (0.0, 0.0))[end] for r in ranges], jnp.float32)[choice]
                             for end in (0, 1))
                value = low + (high - low) * jax.random.uniform(jax.random.fold_in(key, param_index), (batch,))
                if family_name == "shake":
                    value = jnp.floor(value)
                values[param] = value * growth if param in family.sizes else value
            per_family.append(blurring.blur_params(family_name, batch, support=support, bank=TRAIN_BANK,
                                                   kernel_scale=kernel_scale, **values))
        if len(per_family) == 1:
            return per_family[0]
        family_of_option = jnp.asarray([self.families().index("disk" if n == SHARP else blurs[n].family)
                                        for n in self.names], jnp.int32)
        return blurring.mix(family_of_option[choice], per_family)


def _bounds(value: float | presets.Uniform) -> tuple[float, float]:
    """A preset parameter as a (low, high) range: a fixed value is its own range."""
    return (value.low, value.high) if isinstance(value, presets.Uniform) else (float(value), float(value))


def windows(key: jax.Array, batch: int, geometry: Geometry, target_scales: Sequence[int]
            ) -> tuple[jax.Array, jax.Array]:
    """Per image: its crop window as a normalised box [ymin, xmin, ymax, xmax] of the canonical image,
    and its target scale (int32)."""
    k_rescale, k_target, k_y, k_x = jax.random.split(key, 4)
    rescale = jnp.asarray(geometry.rescales, jnp.float32)[jax.random.randint(k_rescale, (batch,), 0,
                                                                               len(geometry.rescales))]
    target = jnp.asarray(target_scales, jnp.int32)[jax.random.randint(k_target, (batch,), 0, len(target_scales))]
    # The crop's side in canonical pixels: train_crop at the network is train_crop * C / target at the
    # rescaled image, which is C / rescale times that in the canonical one.
    side = geometry.train_crop * geometry.canonical / target.astype(jnp.float32) / rescale  # as a fraction
    y0 = jax.random.uniform(k_y, (batch,)) * (1.0 - side)
    x0 = jax.random.uniform(k_x, (batch,)) * (1.0 - side)
    return jnp.stack([y0, x0, y0 + side, x0 + side], axis=1), target


def train_images(images: jax.Array, key: jax.Array, geometry: Geometry, mixture: Mixture,
                 target_scales: Sequence[int], flip: bool, masks: jax.Array | None = None
                 ) -> tuple[jax.Array, jax.Array | None]:
    """Training crops (B, crop, crop, C) in [0, 1] of canonical images (see module docstring), and the
    same crops of `masks` (soft, bilinear) when given."""
    batch = images.shape[0]
    k_window, k_choice, k_blur, k_flip = jax.random.split(key, 4)
    boxes, target = windows(k_window, batch, geometry, target_scales)
    resolution = geometry.blur_resolution(target_scales) if mixture.blurs else geometry.train_crop
    crops = crop_resize(images, boxes, resolution)
    if mixture.blurs:
        growth = target.astype(jnp.float32) / min(target_scales)
        params = mixture.blur_params(mixture.draw(k_choice, batch), k_blur, growth,
                                     max(target_scales) / min(target_scales), geometry.kernel_scale)
        crops = blurring.blur(crops, params)
        crops = at_scale(crops, geometry.train_crop)
    crops = protocol.quantize(crops)
    mask_crops = None if masks is None else crop_resize(masks.astype(jnp.float32), boxes, geometry.train_crop)
    if flip:
        flipped = jax.random.bernoulli(k_flip, 0.5, (batch, 1, 1, 1))
        crops = jnp.where(flipped, crops[:, :, ::-1], crops)
        if mask_crops is not None:
            mask_crops = jnp.where(flipped, mask_crops[:, :, ::-1], mask_crops)
    return crops, mask_crops


def batch_images(batch: Mapping[str, jax.Array]) -> jax.Array:
    return to_unit_float(batch["image"])
