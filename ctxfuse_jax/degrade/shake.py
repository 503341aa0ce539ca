"""Camera-shake kernels: random smooth trajectories, addressed by (seed, index).

Seed 001 blurs with kernels from Chakrabarti's ECCV'16 generator: six control points drawn
on a grid, a spline through them, the pixels it crosses given intensities drawn from
N(1, 0.5^2) and clipped at zero (so brightness varies along the path), the result centred
on its centroid and normalised to unit sum. Kernel `index` of bank `seed` depends on nothing
else (its own `np.random.default_rng([seed, index])`), so banks of any size agree on their
common kernels and the validation (100) and training (10,000) banks never share one.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.interpolate import CubicSpline

# Control points are integer positions on a GRID x GRID square (pixels at canonical scale).
GRID = 16
CONTROL_POINTS = 6
# Samples along the spline: well under a pixel apart, so the traced path has no gaps.
PATH_SAMPLES = 1024
# Centring moves the centroid to the middle, so any pixel may land up to GRID - 1 away.
SUPPORT = 2 * GRID - 1
# Intensity of each crossed pixel ~ N(mean, std^2), clipped at zero (Chakrabarti 2016).
INTENSITY_MEAN, INTENSITY_STD = 1.0, 0.5

# Named banks of seed 001: 100 fixed validation kernels, 10,000 separate training kernels.
BANKS: dict[str, tuple[int, int]] = {"validation": (1001, 100), "train": (1002, 10_000)}


@functools.cache
def _spline_basis() -> np.ndarray:
    """(PATH_SAMPLES, CONTROL_POINTS) weights: the interpolating cubic spline is linear in
    its control points, so every trajectory is one small matrix product."""
    knots = np.linspace(0.0, 1.0, CONTROL_POINTS)
    return CubicSpline(knots, np.eye(CONTROL_POINTS))(np.linspace(0.0, 1.0, PATH_SAMPLES))


def shake_kernel(seed: int, index: int) -> np.ndarray:
    """Kernel `index` of bank `seed`: float32 (SUPPORT, SUPPORT), unit sum, centred."""
    rng = np.random.default_rng([seed, index])
    control = rng.integers(0, GRID, size=(CONTROL_POINTS, 2))
    intensity = np.clip(rng.normal(INTENSITY_MEAN, INTENSITY_STD, GRID * GRID), 0.0, None)

    path = np.clip(np.rint(_spline_basis() @ control), 0, GRID - 1).astype(np.int64)
    crossed = np.zeros(GRID * GRID, bool)
    crossed[path[:, 0] * GRID + path[:, 1]] = True
    weight = np.where(crossed, intensity, 0.0)
    if not weight.sum():  # Every crossed pixel drew a negative intensity: keep the path.
        weight = crossed.astype(np.float64)
    weight = (weight / weight.sum()).reshape(GRID, GRID)

    rows, cols = np.indices((GRID, GRID))
    shift = GRID - 1 - np.rint([np.sum(weight * rows), np.sum(weight * cols)]).astype(int)
    kernel = np.zeros((SUPPORT, SUPPORT), np.float32)
    kernel[shift[0] : shift[0] + GRID, shift[1] : shift[1] + GRID] = weight
    return kernel


def resample(kernels: np.ndarray, scale: float) -> np.ndarray:
    """Kernels (N, S, S) as seen in an image `scale` times the size: each tap at offset (u, v) from
    the centre moves to (scale u, scale v) and is split bilinearly over its four nearest pixels, so
    the sum, the centroid and the trajectory's shape are kept. Support: 2 ceil(scale (S // 2)) + 1."""
    if scale <= 0:
        raise ValueError(f"kernel scale must be positive, got {scale}")
    n, size, _ = kernels.shape
    reach = int(np.ceil(scale * (size // 2) - 1e-9))
    out_size = 2 * reach + 1
    offsets = (np.arange(size) - size // 2) * scale + reach  # positions in the output grid
    low = np.floor(offsets).astype(int)
    frac = offsets - low
    out = np.zeros((n, out_size + 1, out_size + 1), np.float64)
    for dy, wy in ((0, 1 - frac), (1, frac)):
        for dx, wx in ((0, 1 - frac), (1, frac)):
            weights = kernels * wy[None, :, None] * wx[None, None, :]
            np.add.at(out, (slice(None), (low + dy)[:, None], (low + dx)[None, :]), weights)
    return out[:, :out_size, :out_size].astype(np.float32)


@functools.cache
def _bank(seed: int, size: int, kernel_scale: float) -> np.ndarray:
    bank = np.stack([shake_kernel(seed, i) for i in range(size)])
    if kernel_scale != 1.0:
        bank = resample(bank, kernel_scale)
    bank.flags.writeable = False  # Cached and shared: nobody may edit it in place.
    return bank


def shake_bank(name: str, kernel_scale: float = 1.0) -> np.ndarray:
    """The named bank ('validation' or 'train') as float32 (size, S, S), cached; S = SUPPORT unless
    the kernels are resampled to `kernel_scale` times their size (`resample`)."""
    try:
        seed, size = BANKS[name]
    except KeyError:
        raise KeyError(f"unknown shake bank {name!r}; valid: {', '.join(BANKS)}") from None
    return _bank(seed, size, float(kernel_scale))
