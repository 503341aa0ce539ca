"""Quality bins: a degradation kind and a range of qualities, drawn per image.

Ghosh et al. 2018 (`shared/seeds/003`) train each slave branch on one range (JPEG 20 to 5, JPEG
2000 "quality factors" 10 to 2, or clean) and the master to tell the ranges apart. A bin is plain
configuration, checked when built, so `config_checks` builds them at start-up (no TensorFlow);
`data.degraded` applies them on the host.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ctxfuse_jax.degrade import kernels

CLEAN, NOISE, BLUR, JPEG, JPEG2000 = "clean", "noise", "blur", "jpeg", "jpeg2000"
KINDS = (CLEAN, NOISE, BLUR, JPEG, JPEG2000)
# What a bin's quality means, per kind (the unit of `low` and `high`).
UNITS = {
    CLEAN: "none",
    NOISE: "standard deviation, images in [0, 1]",
    BLUR: "Gaussian sigma, pixels",
    JPEG: "libjpeg quality 1-100, whole numbers",
    JPEG2000: "compression ratio N:1, at least 1",
}
BIN, QUALITY = "quality_bin", "quality"  # the fields the stage adds to each example


def jpeg2000_ratio(quality_factor: float) -> float:
    """Ghosh et al.'s JPEG 2000 quality factor as a compression ratio: q percent of the raw size
    kept (JasPer's `rate`), so quality factors 10 to 2 are ratios 10:1 to 50:1."""
    return 100.0 / quality_factor


@dataclasses.dataclass(frozen=True)
class Bin:
    """A quality bin: degradation `kind` at a quality drawn per image, uniformly in [low, high].

    The unit of low / high is the kind's (`UNITS`); JPEG draws whole qualities, both ends included;
    a clean bin has none. `blur_sigma` and `noise_std` add a fixed Gaussian blur (pixels, cut at
    4 sigma: sigma 1 is the paper's "radius 4") and then Gaussian noise before the kind's own step:
    the paper's combined degradations, e.g. Bin("jpeg", 10, 10, noise_std=0.1).
    """

    kind: str
    low: float = 0.0
    high: float = 0.0
    blur_sigma: float = 0.0
    noise_std: float = 0.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown quality bin kind {self.kind!r}; choose one of {KINDS}")
        if self.low > self.high:
            raise ValueError(f"{self}: low {self.low} is above high {self.high}")
        if self.blur_sigma < 0 or self.noise_std < 0:
            raise ValueError(f"{self}: blur_sigma and noise_std must be >= 0 (0: none)")
        if self.kind == CLEAN and (self.low, self.high, self.blur_sigma, self.noise_std) != (0,) * 4:
            raise ValueError(f"{self}: a clean bin takes no quality and no blur or noise")
        whole = float(self.low).is_integer() and float(self.high).is_integer()
        if self.kind == JPEG and not (1 <= self.low <= self.high <= 100 and whole):
            raise ValueError(f"{self}: JPEG qualities are whole numbers from 1 to 100")
        if self.kind == JPEG2000 and self.low < 1:
            raise ValueError(f"{self}: a JPEG 2000 compression ratio is at least 1 (1:1)")
        if self.kind in (NOISE, BLUR) and self.low < 0:
            raise ValueError(f"{self}: a {self.kind} bin's quality ({UNITS[self.kind]}) must be >= 0")
        if (self.kind == BLUR and self.blur_sigma) or (self.kind == NOISE and self.noise_std):
            raise ValueError(f"{self}: a {self.kind} bin draws its own {self.kind}; drop the fixed one")

    @property
    def name(self) -> str:
        """The bin's label in tables, e.g. 'jpeg 5-20', 'noise 0.1 + jpeg 10'."""
        pre = [f"{kind} {v:g}" for kind, v in ((BLUR, self.blur_sigma), (NOISE, self.noise_std)) if v]
        own = self.kind if self.kind == CLEAN else f"{self.kind} {self.low:g}"
        if self.high != self.low:
            own += f"-{self.high:g}"
        return " + ".join([*pre, own])

    def holds(self, kind: str, quality: float) -> bool:
        """Whether a `kind` image at `quality` falls in this bin."""
        return kind == self.kind and self.low <= quality <= self.high

    def draw(self, uniform: np.ndarray) -> np.ndarray:
        """Qualities from uniform [0, 1) draws: whole numbers for JPEG, else low + u (high - low)."""
        if self.kind == JPEG:
            return np.minimum(self.low + np.floor(uniform * (self.high - self.low + 1)), self.high)
        return self.low + uniform * (self.high - self.low)

    @property
    def blur_support(self) -> int:
        """The Gaussian kernel support any of its blurs needs (1: no blur)."""
        sigma = self.high if self.kind == BLUR else self.blur_sigma
        return kernels.support_for("gaussian", sigma=sigma)


@dataclasses.dataclass(frozen=True)
class QualityBins:
    """The bins a training image is drawn from, with their probabilities (uniform when None)."""

    bins: tuple[Bin, ...]
    probabilities: tuple[float, ...] | None = None

    def __post_init__(self):
        object.__setattr__(self, "bins", tuple(self.bins))
        if not self.bins:
            raise ValueError("QualityBins needs at least one bin")
        if not all(isinstance(b, Bin) for b in self.bins):
            raise ValueError(f"QualityBins takes Bin objects, got {self.bins}")
        p = np.ones(len(self.bins)) if self.probabilities is None else np.asarray(self.probabilities, float)
        if p.shape != (len(self.bins),) or not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
            raise ValueError(
                f"bin probabilities {self.probabilities} must be {len(self.bins)} non-negative numbers "
                "with a positive sum, one per bin"
            )
        object.__setattr__(self, "probabilities", tuple(float(x) for x in p / p.sum()))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bins)

    def draw(self, num_examples: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Per example: its bin, its quality in that bin, a seed for its noise."""
        chosen = rng.choice(len(self.bins), size=num_examples, p=self.probabilities)
        uniform = rng.random(num_examples)
        quality = np.zeros(num_examples)
        for i, b in enumerate(self.bins):
            quality[chosen == i] = b.draw(uniform[chosen == i])
        return {
            BIN: chosen.astype(np.int32),
            QUALITY: quality.astype(np.float32),
            "noise_seed": rng.integers(0, 2**31 - 1, (num_examples, 2)),
        }


GHOSH_BINS = QualityBins(
    (Bin(CLEAN), Bin(JPEG, 5, 20), Bin(JPEG2000, jpeg2000_ratio(10), jpeg2000_ratio(2)))
)  # The paper's three branches, equally likely (it gives no proportions).
