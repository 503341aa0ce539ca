"""Parametric blur kernels (point-spread functions), built from traceable parameters.

Every kernel is a float32 (support, support) array with odd `support`, centred on the
middle pixel, summing to one, and applied as a convolution (`out(x) = sum_u k(u) img(x - u)`).
Parameters may be traced, so one compiled function serves a whole severity sweep; only
`support` is static. Strength zero gives the identity (a delta) for every family.

Families (parameters in pixels; angles in degrees, counter-clockwise from the +x axis):
  gaussian            (sigma,)  cut at round(4 sigma) like `scipy.ndimage.gaussian_filter`
  disk                (radius,) defocus, edge anti-aliased by pixel coverage
  motion              (length, angle) uniform linear motion, centred, anti-aliased ends
  imagenet_c_motion   (radius, sigma, angle) ImageNet-C's one-sided streak with a
                      half-Gaussian fall-off over 2 radius + 1 taps (hendrycks/robustness)
  shake               (index,) camera shake, looked up in a bank (see `shake.py`)
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ctxfuse_jax.degrade import shake

# Gaussians are cut at this many standard deviations, as scipy.ndimage.gaussian_filter.
TRUNCATE = 4.0
# The most parameters any family takes (imagenet_c_motion: radius, sigma, angle).
MAX_PARAMS = 3
# Smallest sigma used as a divisor; sigma 0 then gives exp(-0) = 1 at the centre only.
_TINY = 1e-12


def offsets(support: int) -> np.ndarray:
    """Integer pixel offsets -r..r of an odd support of size 2 r + 1."""
    if support < 1 or support % 2 == 0:
        raise ValueError(f"support must be a positive odd size, got {support}")
    r = support // 2
    return np.arange(-r, r + 1, dtype=np.float32)


def gaussian_weights(sigma: ArrayLike, x: ArrayLike) -> jax.Array:
    """Unnormalised Gaussian taps at integer offsets `x`, zero beyond round(4 sigma).

    The cut matches scipy's `radius = int(truncate * sigma + 0.5)`, so normalised taps equal
    scipy's to float precision; sigma = 0 leaves the single centre tap (no NaN).
    """
    radius = jnp.floor(TRUNCATE * sigma + 0.5)
    z = x / jnp.maximum(sigma, _TINY)
    return jnp.where(jnp.abs(x) <= radius, jnp.exp(-0.5 * z * z), 0.0)


_jit_with_static_support = functools.partial(jax.jit, static_argnames="support")


def _grid(support: int) -> tuple[jax.Array, jax.Array]:
    """Row (down) and column (right) offsets of every pixel of the support."""
    x = offsets(support)
    return jnp.asarray(x[:, None]), jnp.asarray(x[None, :])


def _unit_sum(kernel: jax.Array) -> jax.Array:
    return (kernel / jnp.sum(kernel)).astype(jnp.float32)


@_jit_with_static_support
def gaussian_kernel(sigma: ArrayLike, support: int) -> jax.Array:
    """Isotropic Gaussian: the outer product of the 1-D taps, so it stays separable."""
    taps = gaussian_weights(sigma, jnp.asarray(offsets(support)))
    return _unit_sum(jnp.outer(taps, taps))


@_jit_with_static_support
def disk_kernel(radius: ArrayLike, support: int) -> jax.Array:
    """Defocus disk; each pixel weighs its (linearly approximated) coverage by the disk.

    Weight = clip(radius + 1/2 - distance, 0, 1): full inside, zero outside, a one-pixel ramp
    at the rim, so the kernel changes smoothly with a continuous radius.
    """
    rows, cols = _grid(support)
    return _unit_sum(jnp.clip(radius + 0.5 - jnp.hypot(rows, cols), 0.0, 1.0))


@_jit_with_static_support
def motion_kernel(length: ArrayLike, angle: ArrayLike, support: int) -> jax.Array:
    """Uniform linear motion of `length` pixels, centred, one pixel wide.

    Along the path the weight is the overlap of each pixel with the segment
    [-length/2, length/2] (so length 4 at angle 0 is [.5, 1, 1, 1, .5] / 4: centred, no
    half-pixel shift); across it falls linearly to zero at one pixel.
    """
    rows, cols = _grid(support)
    theta = jnp.deg2rad(angle)
    along = cols * jnp.cos(theta) - rows * jnp.sin(theta)
    across = cols * jnp.sin(theta) + rows * jnp.cos(theta)
    weight = jnp.clip(length / 2 + 0.5 - jnp.abs(along), 0.0, 1.0)
    return _unit_sum(weight * jnp.clip(1.0 - jnp.abs(across), 0.0, 1.0))


@_jit_with_static_support
def imagenet_c_motion_kernel(
    radius: ArrayLike, sigma: ArrayLike, angle: ArrayLike, support: int
) -> jax.Array:
    """ImageNet-C `motion_blur`: 2 radius + 1 taps along `angle`, weights exp(-i^2 / 2 sigma^2).

    Tap i samples the image i pixels ahead along the angle, rounded as imagecorruptions'
    `_motion_blur` rounds it, so the blur trails to one side and shifts content as there.
    ImageNet-C measures angles clockwise (its y axis points down): its angle a is our -a.
    """
    r = support // 2
    i = jnp.arange(r + 1, dtype=jnp.float32)
    theta = jnp.deg2rad(angle)
    weight = jnp.where(i <= 2 * radius, jnp.exp(-0.5 * (i / jnp.maximum(sigma, _TINY)) ** 2), 0.0)
    # Tap i samples the image at (row, col) offset ceil(i * (-sin, cos) - 1/2); a convolution
    # kernel holds it at minus that offset.
    dy = -jnp.ceil(-i * jnp.sin(theta) - 0.5).astype(jnp.int32)
    dx = -jnp.ceil(i * jnp.cos(theta) - 0.5).astype(jnp.int32)
    kernel = jnp.zeros((support, support), jnp.float32).at[r + dy, r + dx].add(weight)
    return _unit_sum(kernel)


@dataclasses.dataclass(frozen=True)
class Family:
    """A kernel family: its parameter names, its kernel builder and how far it reaches.

    `kernel(*params, support)` is traceable; `reach(*params)` runs on the host with concrete
    numbers and returns the largest pixel offset with non-zero weight (support = 2 reach + 1).
    A study on smaller images than a paper's gives the paper's kernels times a `kernel_scale`: its
    `sizes` params are multiplied (`scale_sizes`), a bank's kernels resampled (`shake.shake_bank`).
    """

    name: str
    params: tuple[str, ...]
    kernel: Callable[..., jax.Array] | None
    reach: Callable[..., int]
    sizes: tuple[str, ...] = ()  # the params that are lengths in pixels: what `kernel_scale` multiplies


# How far (pixels) kernels reach from the centre, from concrete parameters (arrays: the max).
def _gaussian_reach(sigma: ArrayLike) -> int:
    return int(np.floor(TRUNCATE * np.max(sigma) + 0.5))


def _disk_reach(radius: ArrayLike) -> int:
    return int(np.ceil(np.max(radius)))


def _motion_reach(length: ArrayLike, angle: ArrayLike) -> int:
    return int(np.ceil(np.hypot(np.max(length) / 2 + 0.5, 1.0)))


def _imagenet_c_motion_reach(radius: ArrayLike, sigma: ArrayLike, angle: ArrayLike) -> int:
    return int(np.ceil(2 * np.max(radius)))


def _shake_reach(index: ArrayLike) -> int:
    return shake.SUPPORT // 2


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("gaussian", ("sigma",), gaussian_kernel, _gaussian_reach, ("sigma",)),
        Family("disk", ("radius",), disk_kernel, _disk_reach, ("radius",)),
        Family("motion", ("length", "angle"), motion_kernel, _motion_reach, ("length",)),
        Family(
            "imagenet_c_motion",
            ("radius", "sigma", "angle"),
            imagenet_c_motion_kernel,
            _imagenet_c_motion_reach,
            ("radius", "sigma"),
        ),
        # Shake kernels are rows of a bank (data), gathered by `blurring.make_kernels`.
        Family("shake", ("index",), None, _shake_reach),
    )
}


def get_family(name: str) -> Family:
    """The family called `name`; unknown names raise a KeyError listing the valid ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown blur family {name!r}; valid: {', '.join(FAMILIES)}") from None


def ordered_params(family: Family, params: Mapping[str, Any]) -> tuple[Any, ...]:
    """`params` in the family's order; a missing or unknown name raises a ValueError."""
    if set(params) != set(family.params):
        raise ValueError(
            f"{family.name!r} takes parameters {family.params}, got {tuple(sorted(params))}"
        )
    return tuple(params[p] for p in family.params)


def scale_sizes(family: Family, params: Mapping[str, Any], kernel_scale: float) -> dict[str, Any]:
    """`params` with the family's lengths (`Family.sizes`) multiplied by `kernel_scale`."""
    if kernel_scale == 1.0:
        return dict(params)
    def scaled(value):  # numpy for concrete values, so host-side reaches never trace
        return value * kernel_scale if isinstance(value, jax.core.Tracer) else np.asarray(value) * kernel_scale

    return {k: scaled(v) if k in family.sizes else v for k, v in params.items()}


def support_for(family: str, kernel_scale: float = 1.0, **params: ArrayLike) -> int:
    """Smallest odd support holding every kernel of `family` with these (concrete) params, the
    kernels scaled by `kernel_scale` (a bank's resampled kernels reach ceil(scale * reach))."""
    fam = get_family(family)
    if fam.kernel is None:
        reach = int(np.ceil(fam.reach(*ordered_params(fam, params)) * kernel_scale - 1e-9))
        return 2 * reach + 1
    return 2 * fam.reach(*ordered_params(fam, scale_sizes(fam, params, kernel_scale))) + 1


def kernel(family: str, support: int | None = None, **params: ArrayLike) -> jax.Array:
    """One kernel by family name, e.g. `kernel('disk', radius=4)`; support defaults to the
    smallest that holds it. Shake kernels come from `shake.shake_bank` instead."""
    fam = get_family(family)
    if fam.kernel is None:
        raise ValueError(f"{family!r} kernels come from a bank: use shake.shake_bank")
    support = support_for(family, **params) if support is None else support
    return fam.kernel(*ordered_params(fam, params), support=support)
