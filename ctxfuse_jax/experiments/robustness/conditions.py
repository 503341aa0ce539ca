"""The report's conditions: named corruptions (a degradation preset's levels), regions, IN-9 variants.

Blur and noise run in the evaluator's jitted step: one family per (corruption, region), so one
compiled program per architecture scores all of them. JPEG and JPEG 2000 are host codecs: their test
images are made on the host once per level by `data.degraded.degrade_split` (what seed 003's sweeps
use) and scored by the same program through the identity family `clean`, with the clean pixels
pasted back outside the region (`in_region`, pixel for pixel what `degrade.regions.composite` does).

Light on purpose (no TensorFlow): `config_checks` builds the corruptions to check a config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ctxfuse_jax.data import quality_bins
from ctxfuse_jax.degrade import presets
from ctxfuse_jax.evaluate.conditions import Family, preset_family, runs_on_device, variant_family

CLEAN = "clean"  # the identity family's name, and the condition of the clean test images
CLEAN_SEVERITY = "0"
ALL = "all"
VARIANTS = "in9"  # the condition of the IN-9 background variants


@dataclasses.dataclass(frozen=True)
class Corruption:
    """One corruption of the report: levels of a degradation preset, in increasing severity."""

    name: str  # the config's key, the report's name (e.g. gaussian_blur)
    preset: str  # e.g. imagenet_c/gaussian_blur
    levels: tuple[str, ...]  # the preset's labels, e.g. ('1', ..., '5')

    @property
    def degradations(self) -> tuple[presets.Degradation, ...]:
        preset = presets.get_preset(self.preset)
        return tuple(preset[label] for label in self.levels)

    @property
    def on_device(self) -> bool:
        """Blur and noise (the evaluator's step); else every level is a host codec (`host_bin`)."""
        return all(runs_on_device(d) for d in self.degradations)

    @property
    def severities(self) -> tuple[int, ...]:
        """Each level's severity: its label where that is a number (ImageNet-C's '1'..'5'), else its
        place in the preset's sweep (JPEG 2000's 'r10' is 1, camera shake's one level 1)."""
        labels = presets.get_preset(self.preset).labels
        return tuple(int(label) if label.isdigit() else labels.index(label) + 1 for label in self.levels)

    def host_bins(self) -> tuple[quality_bins.Bin, ...]:
        return tuple(host_bin(d) for d in self.degradations)


def corruptions(spec: Mapping[str, Mapping[str, Any]]) -> list[Corruption]:
    """The config's `corruptions` ({name: dict(preset, levels)}, levels () for all), in config order.
    Unknown presets or levels raise the presets' KeyError; a preset whose levels run partly on the
    host, or on the host in a way `data.degraded` cannot make, a ValueError."""
    chosen = []
    for name, entry in spec.items():
        preset = presets.get_preset(entry["preset"])
        levels = tuple(entry.get("levels") or preset.labels)
        for label in levels:
            preset[label]  # noqa: B018 - an unknown level raises, naming the valid ones
        corruption = Corruption(name, preset.name, levels)
        host = [label for label, d in zip(levels, corruption.degradations) if not runs_on_device(d)]
        if host and len(host) < len(levels):
            raise ValueError(f"{preset.name}: levels {host} run on the host and the others on device; "
                             "choose levels of one kind")
        if host:
            corruption.host_bins()
        chosen.append(corruption)
    return chosen


def host_bin(degradation: presets.Degradation) -> quality_bins.Bin:
    """A host degradation as the test condition `data.degraded.degrade_split` makes: a JPEG or JPEG 2000
    round trip, after a plain Gaussian blur or Gaussian noise (seed 003's combinations)."""
    steps = degradation.steps if isinstance(degradation, presets.Chain) else (degradation,)
    *before, codec = steps
    if isinstance(codec, presets.Jpeg):
        kind, quality = quality_bins.JPEG, float(codec.quality)
    elif isinstance(codec, presets.Jpeg2000):
        kind, quality = quality_bins.JPEG2000, float(codec.rate)
    else:
        raise ValueError(f"{degradation} does not end in a JPEG or JPEG 2000 round trip")
    extra = {}
    for step in before:
        params = dict(step.params) if isinstance(step, presets.Blur) else {}
        if isinstance(step, presets.Noise) and "noise_std" not in extra:
            extra["noise_std"] = step.std
        elif (isinstance(step, presets.Blur) and step.family == "gaussian" and step.scale is None
              and set(params) == {"sigma"} and not isinstance(params["sigma"], presets.Uniform)
              and not extra):
            extra["blur_sigma"] = float(params["sigma"])
        else:
            raise ValueError(f"{degradation}: the host test sets make a Gaussian blur (at the image's own "
                             f"scale) and then Gaussian noise before a codec, not {step}")
    return quality_bins.Bin(kind, quality, quality, **extra)


def family_name(corruption: str, region: str) -> str:
    return f"{corruption}@{region}"


def clean_family() -> Family:
    """The identity: the clean test images, and the images a host codec degraded."""
    return Family(CLEAN, (CLEAN_SEVERITY,), lambda images, batch, bank, level, key: images)


def families(chosen: Sequence[Corruption], regions: Sequence[str], variants: Sequence[str],
             image_size: int) -> list[Family]:
    """The evaluator's families: `clean`, each on-device corruption in each region, the variants."""
    out = [clean_family()]
    out += [preset_family(family_name(c.name, region), c.preset, c.levels, region)
            for c in chosen if c.on_device for region in regions]
    if variants:
        out.append(variant_family(VARIANTS, variants, image_size))
    return out


def in_region(clean: np.ndarray, degraded: np.ndarray, mask: np.ndarray | None, region: str) -> np.ndarray:
    """`degraded` inside `region` (foreground: mask > 0.5), `clean` elsewhere, on host arrays."""
    if region == ALL:
        return degraded
    foreground = np.asarray(mask) > 0.5
    return np.where(foreground if region == "foreground" else ~foreground, degraded, clean)
