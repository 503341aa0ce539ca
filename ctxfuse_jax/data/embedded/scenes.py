"""The 12 scene types: photographed textures from scikit-image plus procedural layout and colour.

A scene is told by its large-scale layout (horizon, sky, bands, grids, lines) and its colours, so it
stays recognisable under blur, unlike the objects. Texture comes from real photographs bundled
with scikit-image (grass, gravel, brick, the moon's surface), randomly cropped, zoomed and flipped.
As for objects, all randomness is drawn independently of the image size.
"""

import functools
from collections.abc import Callable

import numpy as np
import skimage.data
from PIL import Image

Scene = Callable[[np.random.Generator, int], np.ndarray]  # (rng, size) -> float32 (size, size, 3) in [0, 1]


@functools.cache
def _photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(skimage.data, name)().astype(np.float32) / 255.0, mode="F")


def _texture(rng: np.random.Generator, name: str, size: int, zoom: tuple[float, float] = (0.4, 0.8)) -> np.ndarray:
    """A random crop of a grayscale photograph, standardised to mean 0 and std 1."""
    photo = _photo(name)
    side = rng.uniform(*zoom) * min(photo.size)
    x0, y0 = rng.uniform(0, photo.size[0] - side), rng.uniform(0, photo.size[1] - side)
    flips = rng.integers(2, size=2)
    crop = np.asarray(photo.resize((size, size), Image.BILINEAR, box=(x0, y0, x0 + side, y0 + side)))
    crop = crop[:: 1 - 2 * flips[0], :: 1 - 2 * flips[1]]
    return (crop - crop.mean()) / (crop.std() + 1e-6)


def _noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth random field in about [0, 1] with `cells` bumps across the image."""
    field = Image.fromarray(rng.uniform(size=(cells + 3, cells + 3)).astype(np.float32), mode="F")
    return np.asarray(field.resize((size, size), Image.BICUBIC, box=(1, 1, cells + 2, cells + 2)))


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates y, x in [0, 1]."""
    y, x = (np.mgrid[:size, :size] + 0.5) / size
    return y, x


def _colour(rng: np.random.Generator, rgb: tuple[float, float, float], jitter: float = 0.12) -> np.ndarray:
    return np.clip(np.asarray(rgb) * rng.uniform(1 - jitter, 1 + jitter, 3), 0.0, 1.0)


def _paint(colour: np.ndarray, shade: np.ndarray) -> np.ndarray:
    """Colour an (h, w) shading field of multipliers around 1."""
    return colour * shade[..., None]


def _rotated(rng: np.random.Generator, size: int, max_degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates along (u) and across (v) a random direction, centred on the image."""
    y, x = _grid(size)
    angle = np.radians(rng.uniform(-max_degrees, max_degrees))
    return (x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle), (y - 0.5) * np.cos(angle) - (x - 0.5) * np.sin(angle)


def _sky(rng: np.random.Generator, size: int, clouds: float) -> np.ndarray:
    """Blue gradient, paler towards the horizon, with `clouds` (0..1) of white cover."""
    y, _ = _grid(size)
    top, low = _colour(rng, (0.25, 0.45, 0.85)), _colour(rng, (0.7, 0.82, 0.95), 0.05)
    sky = top + (low - top) * y[..., None]
    cover = np.clip((_noise(rng, size, 4) * 0.6 + _noise(rng, size, 9) * 0.4 - 1 + clouds) * 4, 0, 1)
    return sky + (0.97 - sky) * cover[..., None]


def _horizon(rng: np.random.Generator, size: int, low: float, high: float, wobble: float) -> np.ndarray:
    """A mask of what lies below a gently wavy horizon placed between `low` and `high` (fractions from top)."""
    y, _ = _grid(size)
    line = rng.uniform(low, high) + wobble * (_noise(rng, size, 3)[:1] - 0.5)
    return y > line


def grass(rng: np.random.Generator, size: int) -> np.ndarray:
    shade = 1 + 0.35 * _texture(rng, "grass", size) + 0.5 * (_noise(rng, size, 3) - 0.5)
    return _paint(_colour(rng, (0.3, 0.5, 0.14)), shade)


def forest(rng: np.random.Generator, size: int) -> np.ndarray:
    y, x = _grid(size)
    leaves = 0.6 + 0.5 * _noise(rng, size, 7) + 0.25 * _texture(rng, "grass", size)
    image = _paint(_colour(rng, (0.12, 0.3, 0.1)), leaves)
    bark = _paint(_colour(rng, (0.3, 0.2, 0.12)), 1 + 0.25 * _texture(rng, "gravel", size, (0.15, 0.3)))
    for centre, width in zip(rng.uniform(0, 1, 5), rng.uniform(0.03, 0.09, 5)):
        trunk = np.abs(x - centre - 0.03 * (y - 0.5)) < width / 2
        image[trunk] = bark[trunk]
    ground = _horizon(rng, size, 0.8, 0.9, 0.05)
    image[ground] = _paint(_colour(rng, (0.25, 0.2, 0.1)), 1 + 0.2 * _texture(rng, "gravel", size))[ground]
    return image


def meadow(rng: np.random.Generator, size: int) -> np.ndarray:
    image = _sky(rng, size, clouds=0.4)
    field = _paint(_colour(rng, (0.55, 0.65, 0.25)), 1 + 0.3 * _texture(rng, "grass", size))
    ground = _horizon(rng, size, 0.3, 0.5, 0.12)
    image[ground] = field[ground]
    return image


def road(rng: np.random.Generator, size: int) -> np.ndarray:
    u, v = _rotated(rng, size, 20)
    image = _paint(_colour(rng, (0.33, 0.33, 0.35), 0.08), 1 + 0.18 * _texture(rng, "gravel", size))
    centre, edge = rng.uniform(-0.15, 0.15), rng.uniform(0.3, 0.42)
    dashes = (np.abs(v - centre) < 0.018) & (np.mod(u * 4 + rng.uniform(), 1) < 0.5)
    edges = np.abs(np.abs(v - centre) - edge) < 0.012
    image[dashes] = _colour(rng, (0.95, 0.95, 0.9), 0.03)
    image[edges] = _colour(rng, (0.95, 0.8, 0.2), 0.05)
    return image


def street(rng: np.random.Generator, size: int) -> np.ndarray:
    y, _ = _grid(size)
    image = _paint(_colour(rng, (0.6, 0.32, 0.22), 0.2), 1 + 0.3 * _texture(rng, "brick", size, (0.3, 0.6)))
    kerb = rng.uniform(0.55, 0.75)
    pavement = _paint(_colour(rng, (0.68, 0.66, 0.62), 0.05), 1 + 0.08 * _texture(rng, "gravel", size))
    asphalt = _paint(_colour(rng, (0.3, 0.3, 0.32), 0.05), 1 + 0.15 * _texture(rng, "gravel", size))
    image[y > kerb] = pavement[y > kerb]
    below = y > kerb + rng.uniform(0.08, 0.15)
    image[below] = asphalt[below]
    return image


def sky(rng: np.random.Generator, size: int) -> np.ndarray:
    return _sky(rng, size, clouds=rng.uniform(0.2, 0.6))


def tiles(rng: np.random.Generator, size: int) -> np.ndarray:
    y, x = _grid(size)
    count = rng.integers(3, 8)
    offset = rng.uniform(size=2)
    row, col = np.floor(y * count + offset[0]).astype(int), np.floor(x * count + offset[1]).astype(int)
    brightness = rng.uniform(0.92, 1.05, (count + 1, count + 1))[row, col]
    grout = (np.minimum(np.mod(y * count + offset[0], 1), np.mod(x * count + offset[1], 1)) < 0.06)
    gloss = 1 + 0.08 * (x - y)
    image = _paint(_colour(rng, (0.88, 0.9, 0.92), 0.08), brightness * gloss)
    image[grout] = _colour(rng, (0.55, 0.55, 0.52), 0.1)
    return image


def wood(rng: np.random.Generator, size: int) -> np.ndarray:
    u, v = _rotated(rng, size, 10)
    planks = rng.integers(3, 7)
    plank = np.floor((v + 0.75) * planks).astype(int)
    grain = np.sin(2 * np.pi * (v * planks * 6 + 1.5 * _noise(rng, size, 5) + 0.2 * u))
    tone = rng.uniform(0.85, 1.1, planks + 3)[plank]
    image = _paint(_colour(rng, (0.6, 0.38, 0.2), 0.12), tone * (1 + 0.1 * grain))
    seams = np.mod((v + 0.75) * planks, 1) < 0.04
    image[seams] *= 0.5
    return image


def checkered_floor(rng: np.random.Generator, size: int) -> np.ndarray:
    u, v = _rotated(rng, size, 45)
    count = rng.uniform(3, 6)
    dark = ((0.12, 0.12, 0.14), (0.6, 0.15, 0.12), (0.2, 0.3, 0.55))[rng.integers(3)]
    light, dark = _colour(rng, (0.92, 0.9, 0.86), 0.05), _colour(rng, dark)
    checks = (np.floor(u * count) + np.floor(v * count)) % 2 == 0
    grit = 1 + 0.06 * _texture(rng, "gravel", size)
    return np.where(checks[..., None], light, dark) * grit[..., None]


def court(rng: np.random.Generator, size: int) -> np.ndarray:
    u, v = _rotated(rng, size, 15)
    surface = ((0.75, 0.42, 0.26), (0.22, 0.42, 0.68), (0.3, 0.52, 0.32))[rng.integers(3)]
    image = _paint(_colour(rng, surface, 0.08), 1 + 0.06 * _texture(rng, "gravel", size))
    lines = np.zeros((size, size), bool)
    for position in rng.uniform(-0.45, 0.45, 2):
        lines |= np.abs(v - position) < 0.012
    lines |= (np.abs(u - rng.uniform(-0.3, 0.3)) < 0.012) & (v > min(0.0, v.max() - 0.3))
    image[lines] = _colour(rng, (0.97, 0.97, 0.95), 0.02)
    return image


def snow(rng: np.random.Generator, size: int) -> np.ndarray:
    image = _sky(rng, size, clouds=0.2)
    mountains = _horizon(rng, size, 0.15, 0.35, 0.35)
    image[mountains] = _paint(_colour(rng, (0.55, 0.58, 0.65), 0.05),
                              1 + 0.2 * _texture(rng, "moon", size))[mountains]
    field = _paint(_colour(rng, (0.93, 0.95, 1.0), 0.04),
                   0.92 + 0.1 * _noise(rng, size, 4) + 0.04 * _texture(rng, "moon", size))
    ground = _horizon(rng, size, 0.4, 0.55, 0.1)
    image[ground] = field[ground]
    return image


def beach(rng: np.random.Generator, size: int) -> np.ndarray:
    y, x = _grid(size)
    image = _sky(rng, size, clouds=0.3)
    sea_top, shore = rng.uniform(0.2, 0.35), rng.uniform(0.5, 0.7)
    waves = 1 + 0.1 * np.sin(2 * np.pi * (y * 25 + 2 * _noise(rng, size, 4)))
    sea = _paint(_colour(rng, (0.1, 0.35, 0.6), 0.1), waves)
    image[y > sea_top] = sea[y > sea_top]
    beach_line = shore + 0.05 * (_noise(rng, size, 3)[:1] - 0.5)
    sand = _paint(_colour(rng, (0.86, 0.76, 0.56), 0.06), 1 + 0.12 * _texture(rng, "gravel", size))
    image[y > beach_line] = sand[y > beach_line]
    foam = np.abs(y - beach_line) < 0.02
    image[foam] = 0.95
    return image


SCENES: dict[str, Scene] = {scene.__name__: scene for scene in (
    grass, forest, meadow, road, street, sky, tiles, wood, checkered_floor, court, snow, beach)}


def render_scene(name: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """float32 (size, size, 3) in [0, 1], mirrored at random."""
    image = SCENES[name](rng, size)
    if rng.uniform() < 0.5:
        image = image[:, ::-1]
    return np.clip(image, 0.0, 1.0).astype(np.float32)
