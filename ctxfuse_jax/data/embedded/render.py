"""Rasterises an icon with a random pose, deformation and colours into an image and an exact mask.

Everything random is drawn before the image size is used, so one random stream renders the same
object at 32, 64 or 224 px. Polygons are filled at `SUPERSAMPLE`x resolution and averaged down:
a pixel belongs to the object when at least half of it is covered, and then shows only object
colours (markings antialiased), so the mask is exact: every pixel is object or scene, never a mix.
"""

import colorsys
import dataclasses

import numpy as np
from PIL import Image, ImageDraw

from ctxfuse_jax.data.embedded.icons import Icon, Paint, Part

SUPERSAMPLE = 4
_WARP = 0.06  # amplitude of the smooth random deformation, in unit-frame units
_MAX_SIDE = 0.95  # longest side of an object's box, as a fraction of the image side
_SHADING = 0.25  # brightness change across the object from a random light direction


@dataclasses.dataclass(frozen=True)
class Placement:
    """How large objects are: their box covers `area` (a uniform range) of the image."""

    min_area: float
    max_area: float
    max_rotation: float = 30.0  # degrees either way; objects stay mostly upright, as in photos


def render_icon(icon: Icon, rng: np.random.Generator, size: int, placement: Placement
                ) -> tuple[np.ndarray, np.ndarray]:
    """float32 (size, size, 3) colours in [0, 1] (meaningful inside the mask) and the bool mask."""
    palette = _palette(rng)
    polygons, unit = _pose(icon, rng, placement)
    light = rng.uniform(0.0, 2 * np.pi)
    side = size * SUPERSAMPLE
    roles = _rasterise(icon, [p * side for p in polygons], unit * side, side)
    share = np.stack([_box_average(roles == paint) for paint in Paint], -1)  # (size, size, roles)
    covered = 1.0 - share[..., Paint.CUT]
    colours = share[..., 1:] @ palette[1:] / np.maximum(covered, 1e-9)[..., None]

    y, x = (np.mgrid[:size, :size] + 0.5) / size
    ramp = (x - 0.5) * np.cos(light) + (y - 0.5) * np.sin(light)
    colours *= 1.0 + _SHADING * ramp[..., None]
    return np.clip(colours, 0.0, 1.0).astype(np.float32), covered >= 0.5


def _box_average(samples: np.ndarray) -> np.ndarray:
    """The fraction of each SUPERSAMPLE x SUPERSAMPLE cell where `samples` is true (PIL's C box filter)."""
    cells = Image.fromarray(samples.view(np.uint8) * np.uint8(255)).reduce(SUPERSAMPLE)
    return np.asarray(cells, np.float64) / 255.0


def _palette(rng: np.random.Generator) -> np.ndarray:
    """One RGB colour per `Paint` role; hues are uniform, so colour carries no class information."""
    hue = rng.uniform()
    hsv = {
        Paint.CUT: (0.0, 0.0, 0.0),
        Paint.BODY: (hue, rng.uniform(0.45, 0.9), rng.uniform(0.55, 0.95)),
        Paint.DARK: (hue, rng.uniform(0.3, 0.7), rng.uniform(0.08, 0.22)),
        Paint.LIGHT: (rng.uniform(), rng.uniform(0.0, 0.15), rng.uniform(0.88, 1.0)),
        Paint.ACCENT: ((hue + rng.uniform(0.25, 0.75)) % 1.0, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0)),
    }
    return np.array([colorsys.hsv_to_rgb(*hsv[p]) for p in Paint], np.float64)


def _pose(icon: Icon, rng: np.random.Generator, placement: Placement) -> tuple[list[np.ndarray], float]:
    """The icon's points in image coordinates (fractions of the image side), and the length of a unit."""
    phase, frequency = rng.uniform(0, 2 * np.pi, 2), rng.uniform(0.5, 1.5, 2)
    amplitude = rng.uniform(-_WARP, _WARP, 2)
    angle = np.radians(rng.uniform(-placement.max_rotation, placement.max_rotation))
    aspect = np.exp(rng.uniform(-0.2, 0.2))
    shear = rng.uniform(-0.15, 0.15)
    flip = rng.choice([-1.0, 1.0])
    area = rng.uniform(placement.min_area, placement.max_area)
    position = rng.uniform(size=2)

    c, s = np.cos(angle), np.sin(angle)
    linear = np.array([[c, -s], [s, c]]) @ np.array([[flip * aspect, shear], [0.0, 1.0 / aspect]])
    polygons = []
    for part in icon:
        x, y = part.points.T
        warped = np.stack([x + amplitude[0] * np.sin(frequency[0] * np.pi * y + phase[0]),
                           y + amplitude[1] * np.sin(frequency[1] * np.pi * x + phase[1])], 1)
        polygons.append(warped @ linear.T)
    every = np.concatenate(polygons)
    low, high = every.min(0), every.max(0)
    extent = high - low
    scale = min(np.sqrt(area / np.prod(extent)), _MAX_SIDE / extent.max())
    offset = position * (1.0 - scale * extent) - scale * low
    return [p * scale + offset for p in polygons], scale * np.sqrt(abs(np.linalg.det(linear)))


def _rasterise(icon: Icon, polygons: list[np.ndarray], unit: float, side: int) -> np.ndarray:
    """A (side, side) map of the `Paint` role showing at each sample, parts painted in order."""
    roles = np.zeros((side, side), np.uint8)
    for part, points in zip(icon, polygons):
        margin = part.width * unit / 2 + 1
        x0, y0 = np.maximum(np.floor(points.min(0) - margin).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(points.max(0) + margin).astype(int), side)
        if x1 <= x0 or y1 <= y0:
            continue
        stencil = Image.new("1", (x1 - x0, y1 - y0))
        _fill(ImageDraw.Draw(stencil), part, points - (x0, y0), unit)
        inside = np.asarray(stencil)
        window = roles[y0:y1, x0:x1]
        window[inside & (window != Paint.CUT) if part.clip else inside] = part.paint
    return roles


def _fill(draw: ImageDraw.ImageDraw, part: Part, points: np.ndarray, unit: float) -> None:
    xy = [tuple(p) for p in points]
    if not part.width:
        draw.polygon(xy, fill=1)
        return
    width = part.width * unit
    draw.line(xy, fill=1, width=max(1, round(width)), joint="curve")
    for x, y in (xy[0], xy[-1]):
        draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=1)
