"""Seed 001's scales: kernels live at a canonical short side, networks see other scales.

The paper resizes every image so its short side is 384 (the canonical scale), blurs it there,
quantises to 8 bits and feeds the network at 128, 256 or 512 (or 256 and 512 averaged). Training
crops are 224 px; fine-tuning rescales around 384 (356 / 384 / 410) before blurring, so object
sizes vary while a kernel's effective size at the network does not. A smaller study keeps every
ratio: `Geometry` holds the scales, and kernels are the paper's times canonical / 384.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from ctxfuse_jax.degrade import protocol

PAPER_CANONICAL = protocol.CANONICAL_SCALE  # 384: the short side the paper's kernel sizes refer to


@dataclasses.dataclass(frozen=True)
class Geometry:
    canonical: int  # short side of the stored (square) images, where blur is applied
    scales: tuple[int, ...]  # network scales evaluated (the paper's 128, 256, 512)
    base_scale: int  # the scale fine-tuning and Tables 2, 3, 5 use (the paper's 256)
    train_crop: int  # training crop (the paper's 224)
    rescales: tuple[int, ...]  # rescales around the canonical scale before blurring (356, 384, 410)

    @property
    def kernel_scale(self) -> float:
        """How much shorter than the paper's our kernels are: canonical / 384."""
        return self.canonical / PAPER_CANONICAL

    def blur_resolution(self, target_scales: Sequence[int]) -> int:
        """Side (px) at which a training crop is blurred: the crop's extent in an image rescaled to
        the canonical scale, for the smallest target scale (larger targets blur upsampled crops)."""
        return round(self.train_crop * self.canonical / min(target_scales))


def geometry(config: ml_collections.ConfigDict) -> Geometry:
    p = config.protocol
    return Geometry(int(config.data.image_size), tuple(p.scales), int(p.base_scale), int(p.train_crop),
                    tuple(p.rescales))


@functools.partial(jax.jit, static_argnames="scale")
def at_scale(images: jax.Array, scale: int) -> jax.Array:
    """Square canonical images resized (antialiased bilinear) to the network scale `scale`."""
    batch, _, _, channels = images.shape
    return jax.image.resize(images, (batch, scale, scale, channels), method="linear", antialias=True)


def position_log_probs(logit_map: jax.Array) -> jax.Array:
    """(N, rows, cols, classes) logits of a fully convolutional network -> (N, classes): the
    log-probabilities averaged over positions (Simonyan & Zisserman's dense evaluation)."""
    return jnp.mean(jax.nn.log_softmax(logit_map.astype(jnp.float32), axis=-1), axis=(1, 2))


def combined(log_probs: Mapping[int, jax.Array], scales: Sequence[int]) -> jax.Array:
    """The mean over `scales` of each scale's position-averaged log-probabilities (the paper's
    256+512: 'the log-probabilities from all crops from all scales were then averaged')."""
    return jnp.mean(jnp.stack([log_probs[s] for s in scales]), axis=0)


def scale_label(scales: Sequence[int]) -> str:
    return "+".join(str(s) for s in scales)
