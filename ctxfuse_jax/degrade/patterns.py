"""Test backgrounds of seed 002 (Cruz & Cardoso, "Training a CNN to be Background Invariant").

The paper measures background invariance by putting each test object on backgrounds the network never
saw in training: six synthetic patterns (diagonal stripes, a checkerboard, a border, four circles, a
clock face, salt-and-pepper noise) and, here, real photographs. Everything outside the object's mask
dilated by a disk of radius 2 is replaced by the background (`behind`); the object and a thin margin
around it are kept exactly, so only the context changes.

The patterns are defined at 28 px (MNIST); every length in them (stripe thickness and spacing, square
side and grid origin, frame width, circle centres and radii, clock ring and ticks) is multiplied by
size / 28, rounded half up, at least 1 px, so that at 28 px they are pixel for pixel the authors' and at
64 px (the colour datasets) they look the same. Two 1 px offsets are anchors, not lengths, and stay:
the first stripe starts at the top-right corner pixel and the clock's outer circle reaches the last row.
Salt-and-pepper pixels are drawn by `np.random.default_rng(seed)`: the count is the authors'
(int(size * size * rate)), the positions are not (theirs come from RandomState).

Photographs come from `skimage.data` (bundled, no download). The embedded dataset's scenes already
draw brick, grass, gravel and moon, so those four serve as training backgrounds (`TRAIN_TEXTURES`, a
real-texture training baseline) and testing uses four others (`TEST_TEXTURES`). Of the remaining
bundled photographs, coffee (a cup), coins (discs like ball and frisbee), rocket and chelsea / cat (an
airplane-like vehicle, an animal) look like the embedded object classes, page and text hold
digit-like characters, cell, microaneurysms and retina are nearly flat, and clock would share a name
with the clock pattern.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import skimage.color
import skimage.data
import skimage.draw
from jax.typing import ArrayLike
from PIL import Image

AUTHORS_SIZE = 28  # the size at which every length below is the authors'
TRAIN_TEXTURES = ("brick", "grass", "gravel", "moon")  # also in the embedded scenes
TEST_TEXTURES = ("camera", "astronaut", "immunohistochemistry", "hubble_deep_field")
TEXTURES = TRAIN_TEXTURES + TEST_TEXTURES


def _scaled(pixels: int, size: int) -> int:
    """One of the authors' lengths at 28 px, at `size` px: rounded half up, at least 1."""
    return max(1, math.floor(pixels * size / AUTHORS_SIZE + 0.5))


def _channels(image: np.ndarray, channels: int) -> np.ndarray:
    """(size, size) float32 -> (size, size, channels), the grey level in every channel."""
    return np.repeat(image.astype(np.float32)[..., None], channels, axis=-1)


def stripes(size: int, channels: int = 1) -> np.ndarray:
    """Diagonal lines of slope 1: 2 px thick every 10 px, the first starting at the top-right corner.

    Pixel (y, x) is lit where (y - x + size - 1) mod 10 < 2 (at 28 px: y - x = 3, 4 mod 10).
    """
    thickness, interspace = _scaled(2, size), _scaled(8, size)
    y, x = np.mgrid[:size, :size]
    return _channels((y - x + size - 1) % (thickness + interspace) < thickness, channels)


def checkerboard(size: int, channels: int = 1) -> np.ndarray:
    """6 px squares on a grid starting at (-2, -2); the square holding pixel (0, 0) is black."""
    square, origin = _scaled(6, size), _scaled(2, size)
    y, x = np.mgrid[:size, :size]
    return _channels(((y + origin) // square + (x + origin) // square) % 2, channels)


def border(size: int, channels: int = 1) -> np.ndarray:
    """A 2 px white frame."""
    thickness = _scaled(2, size)
    image = np.ones((size, size), np.float32)
    image[thickness:-thickness, thickness:-thickness] = 0
    return _channels(image, channels)


def circles(size: int, channels: int = 1) -> np.ndarray:
    """Four circle outlines of radius 6 (Bresenham) centred 8 px from the image's corners."""
    shift, radius = _scaled(8, size), _scaled(6, size)
    image = np.zeros((size, size), np.float32)
    for centre in ((shift, shift), (size - shift, shift), (shift, size - shift), (size - shift, size - shift)):
        image[skimage.draw.circle_perimeter(*centre, radius, shape=image.shape)] = 1
    return _channels(image, channels)


def clock(size: int, channels: int = 1) -> np.ndarray:
    """A clock face: a ring of 2 circle outlines (radii size // 2 - 1 and - 2) and ticks at 12, 3, 6, 9.

    The authors draw each tick with `skimage.draw.rectangle`, whose end is inclusive: a tick of width
    2 covers 3 px across, and the ticks at 12 and 9 o'clock reach 1 px further in (7 px) than those at
    3 and 6 (6 px).
    """
    centre, ring = size // 2, _scaled(2, size)
    half_width, length = _scaled(2, size) // 2, _scaled(6, size)
    image = np.zeros((size, size), np.float32)
    for radius in range(centre - ring, centre):
        image[skimage.draw.circle_perimeter(centre, centre, radius, shape=image.shape)] = 1
    across = slice(centre - half_width, centre + half_width + 1)
    for along in (slice(0, length + 1), slice(size - length, size)):
        image[across, along] = 1
        image[along, across] = 1
    return _channels(image, channels)


def salt_pepper(size: int, channels: int = 1, rate: float = 0.25, seed: int = 0) -> np.ndarray:
    """Exactly int(size * size * rate) white pixels, drawn without replacement by `default_rng(seed)`."""
    if not 0 <= rate <= 1:
        raise ValueError(f"salt_pepper rate must be in [0, 1], got {rate}")
    image = np.zeros(size * size, np.float32)
    image[np.random.default_rng(seed).choice(size * size, int(size * size * rate), replace=False)] = 1
    return _channels(image.reshape(size, size), channels)


@functools.cache
def _photo(name: str) -> np.ndarray:
    """A texture's photograph as float32 (H, W, 1 or 3) in [0, 1]."""
    if name not in TEXTURES:
        raise ValueError(f"unknown texture {name!r}; valid: {', '.join(TEXTURES)}")
    photo = getattr(skimage.data, name)().astype(np.float32) / 255.0
    return photo if photo.ndim == 3 else photo[..., None]


def _crop(name: str, size: int, channels: int, box: tuple[float, float, float, float]) -> np.ndarray:
    """The photograph's `box` (x0, y0, x1, y1) resized to (size, size, channels) (bilinear, antialiased)."""
    photo = _photo(name)
    if photo.shape[-1] == 3 and channels not in (1, 3):
        raise ValueError(f"texture {name!r} is RGB: channels must be 1 or 3, got {channels}")
    if photo.shape[-1] == 3 and channels == 1:
        photo = skimage.color.rgb2gray(photo)[..., None].astype(np.float32)
    planes = [Image.fromarray(plane, mode="F").resize((size, size), Image.BILINEAR, box=box) for plane in
              np.moveaxis(photo, -1, 0)]
    crop = np.clip(np.stack([np.asarray(plane) for plane in planes], axis=-1), 0.0, 1.0)
    return np.broadcast_to(crop, (size, size, channels)).copy()


def texture(size: int, channels: int = 1, *, photo: str) -> np.ndarray:
    """The centred square of photograph `photo` (one of `TEXTURES`) at (size, size, channels) in [0, 1].

    RGB photographs are converted to grey for channels=1; grey ones are repeated for channels=3.
    """
    height, width = _photo(photo).shape[:2]
    side = min(height, width)
    x0, y0 = (width - side) / 2, (height - side) / 2
    return _crop(photo, size, channels, (x0, y0, x0 + side, y0 + side))


def texture_crops(
    photos: Sequence[str], size: int, count: int, *, seed: int, channels: int = 1
) -> np.ndarray:
    """`count` random backgrounds (count, size, size, channels) from `photos`, e.g. `TRAIN_TEXTURES`.

    Each is a square of 40% to 100% of a random photograph's shorter side, at a random place, flipped
    at random; all drawn by `np.random.default_rng(seed)`.
    """
    rng = np.random.default_rng(seed)
    crops = []
    for name in rng.choice(list(photos), count):
        height, width = _photo(name).shape[:2]
        side = rng.uniform(0.4, 1.0) * min(height, width)
        x0, y0 = rng.uniform(0, width - side), rng.uniform(0, height - side)
        flip_y, flip_x = rng.integers(2, size=2)
        crop = _crop(name, size, channels, (x0, y0, x0 + side, y0 + side))
        crops.append(crop[:: 1 - 2 * flip_y, :: 1 - 2 * flip_x])
    return np.stack(crops).astype(np.float32)


Pattern = Callable[..., np.ndarray]  # (size, channels=1, **options) -> (size, size, channels) float32
_PATTERNS: dict[str, Pattern] = {
    pattern.__name__: pattern for pattern in (stripes, checkerboard, border, circles, clock, salt_pepper, texture)
}
PATTERNS = tuple(_PATTERNS)


def pattern(name: str, size: int, channels: int = 1, **options) -> np.ndarray:
    """The background `name` (one of `PATTERNS`) as float32 (size, size, channels).

    options: salt_pepper's `rate` (default 0.25, the authors') and `seed`; texture's `photo`.
    """
    if name not in _PATTERNS:
        raise ValueError(f"unknown background pattern {name!r}; valid: {', '.join(PATTERNS)}")
    return _PATTERNS[name](size, channels, **options)


def _disk_offsets(radius: int) -> np.ndarray:
    """(K, 2) offsets (dy, dx) with dy^2 + dx^2 <= radius^2: the footprint of skimage's disk(radius)."""
    if radius < 0:
        raise ValueError(f"dilation radius must be >= 0, got {radius}")
    dy, dx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    inside = dy**2 + dx**2 <= radius**2
    return np.stack([dy[inside], dx[inside]], axis=-1)


@functools.partial(jax.jit, static_argnames="radius")
def dilate(mask: ArrayLike, radius: int) -> jax.Array:
    """Bool (N, H, W, 1): the foreground (mask > 0.5) dilated by a disk of `radius`; outside counts as empty.

    The OR of the mask shifted by every offset in the disk (13 for radius 2), fused by XLA on device.
    """
    offsets = _disk_offsets(radius)
    foreground = jnp.asarray(mask) > 0.5
    height, width = foreground.shape[1:3]
    padded = jnp.pad(foreground, ((0, 0), (radius, radius), (radius, radius), (0, 0)))
    shifted = (padded[:, radius + dy : radius + dy + height, radius + dx : radius + dx + width]
               for dy, dx in offsets)
    return functools.reduce(jnp.logical_or, shifted)


@functools.partial(jax.jit, static_argnames="radius")
def behind(images: ArrayLike, masks: ArrayLike, background: ArrayLike, radius: int = 2) -> jax.Array:
    """`images` (N, H, W, C) on `background` ((H, W, C) or (N, H, W, C)) outside the dilated `masks`.

    Inside the mask (> 0.5) dilated by disk(radius) the image is kept bit for bit. The authors use
    radius 2 and, for MNIST, the mask image > 0.
    """
    images = jnp.asarray(images)
    return jnp.where(dilate(masks, radius), images, jnp.asarray(background, images.dtype))
