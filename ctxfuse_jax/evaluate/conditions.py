"""Named test conditions: transforms of a test batch on device, configured by name.

A config names groups of conditions, as big_vision's `config.evals` names evaluators:

    config.eval.conditions.blur_fg = dict(kind="gaussian_blur", sigmas=(0, 4, 8), reference_size=224,
                                          region="foreground")
    config.eval.conditions.defocus = dict(kind="preset", preset="imagenet_c/defocus_blur", region="all")
    config.eval.conditions.d8 = dict(kind="preset", preset="vasiljevic/defocus", levels=("D8",), region="all",
                                     scale=108, kernel_scale=108 / 384)  # seed 001 at 108 px
    config.eval.conditions.in9 = dict(kind="variant", variants=("original", "mixed_rand"))
    config.eval.conditions.challenge = dict(kind="composite", num_foregrounds=256, num_backgrounds=64)  # 0: all
    config.eval.conditions.table1 = dict(kind="pattern", patterns=("original", "stripes", "salt_pepper"),
                                         rates=(0.25,), textures=(), dilation=2)

Each group is a *family*: one transform whose *level* (a sigma, a preset level, a variant, a
background) is a traced index, so one compiled program serves every condition of every family
(`lax.switch` picks the family). A family's levels are the table's `level` column, its name the
`condition` column.

Test backgrounds (`pattern`, seed 002) replace everything outside the dilated true mask by a
stripe, checkerboard, border, circle, clock, salt-and-pepper or texture image (`degrade.patterns`).
Background variants and composites read a *bank* built once on the host from the test split: the
only_bg_t of every image (seed 004's tiled backgrounds) and the donors each mixed_* variant pastes
a foreground onto (`degrade.backgrounds`), so every model sees the same images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ctxfuse_jax import degrade
from ctxfuse_jax.degrade import backgrounds, patterns, presets, regions

KINDS = ("gaussian_blur", "preset", "variant", "composite", "pattern")
ORIGINAL = "original"  # a pattern family's level that leaves the image as it is
BACKGROUNDS = "backgrounds"  # the bank: only_bg_t of every test image, uint8
Batch = Mapping[str, jax.Array]
# (images in [0, 1], batch, bank, level index, key) -> transformed images
Transform = Callable[[jax.Array, Batch, Mapping[str, jax.Array], jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Family:
    """A group of conditions sharing one transform; `level` picks among `levels` on device."""

    name: str
    levels: tuple[str, ...]
    transform: Transform
    bank_keys: frozenset[str] = frozenset()  # what it reads from the bank (`build_bank`)
    examples: tuple[int, ...] | None = None  # the split's examples it scores; None: all of them
    # For composites: which bank image each level pastes the foregrounds on (host-side analysis).
    background_of_level: tuple[int, ...] = ()


def _foreground(batch: Batch) -> jax.Array:
    return batch["mask"] > 0.5


def _in_region(images: jax.Array, degraded: jax.Array, batch: Batch, region: str) -> jax.Array:
    return regions.composite(images, degraded, batch["mask"] if region != "all" else None, region)


def gaussian_blur_family(name: str, sigmas: Sequence[float], reference_size: int, image_size: int,
                         region: str) -> Family:
    """Gaussian blur of `region`, sigmas given at a `reference_size` scale (seed 000: 224 px)."""
    sigmas_px = jnp.asarray(np.asarray(sigmas, np.float32) * image_size / reference_size)

    def transform(images, batch, bank, level, key):
        blurred = degrade.gaussian_blur(images, jnp.broadcast_to(sigmas_px[level], images.shape[:1]))
        return _in_region(images, blurred, batch, region)

    return Family(name, tuple(f"{float(s):g}" for s in sigmas), transform)


def runs_on_device(degradation: presets.Degradation) -> bool:
    """Blur and noise trace under jit; JPEG round trips run on the host and cannot."""
    if isinstance(degradation, presets.Chain):
        return all(runs_on_device(step) for step in degradation.steps)
    return isinstance(degradation, (presets.Blur, presets.Noise))


def preset_family(name: str, preset_name: str, levels: Sequence[str], region: str, scale: int = 0,
                  kernel_scale: float = 1.0) -> Family:
    """The levels of a degradation preset (`degrade.get_preset`), all of them when `levels` is empty.

    `scale` > 0 moves its blurs' canonical short side there with kernels `kernel_scale` times as long
    (`presets.at_scale`: seed 001's protocol on images smaller than ImageNet's)."""
    preset = degrade.get_preset(preset_name)
    labels = tuple(levels) or preset.labels
    chosen = [preset[label] for label in labels]
    if scale:
        chosen = [presets.at_scale(d, scale, kernel_scale) if isinstance(d, presets.Blur) else d for d in chosen]
    host_only = [label for label, d in zip(labels, chosen) if not runs_on_device(d)]
    if host_only:
        raise ValueError(f"{preset_name} levels {host_only} run on the host (JPEG): the evaluator "
                         "transforms batches on device")
    branches = [lambda x, k, d=d: d(x, k) for d in chosen]

    def transform(images, batch, bank, level, key):
        return _in_region(images, jax.lax.switch(level, branches, images, key), batch, region)

    return Family(name, labels, transform)


def _variant_branches(height: int, width: int) -> dict[str, Callable[..., jax.Array]]:
    """Each variant on device, pixel for pixel as `degrade.background_variant` builds it on the host."""

    def tiled(batch, bank, donor_key=None):
        index = batch["index"] if donor_key is None else bank[donor_key][batch["index"]]
        return bank[BACKGROUNDS][index].astype(jnp.float32) / 255.0

    def box(batch):
        return regions.box_mask(batch["bbox"], height, width)

    branches = {
        "original": lambda x, batch, bank: x,
        "only_fg": lambda x, batch, bank: jnp.where(_foreground(batch), x, 0.0),
        "no_fg": lambda x, batch, bank: jnp.where(_foreground(batch), 0.0, x),
        "only_bg_b": lambda x, batch, bank: jnp.where(box(batch), 0.0, x),
        "only_bg_t": lambda x, batch, bank: tiled(batch, bank),
    }
    for mixed in backgrounds.MIXED:
        branches[mixed] = lambda x, batch, bank, m=mixed: jnp.where(_foreground(batch), x, tiled(batch, bank, m))
    return branches


def variant_family(name: str, variants: Sequence[str], image_size: int) -> Family:
    """Seed 004's ImageNet-9 variants of the test images (`degrade.background_variant`)."""
    unknown = sorted(set(variants) - set(backgrounds.VARIANTS))
    if unknown:
        raise ValueError(f"unknown background variants {unknown}; valid: {', '.join(backgrounds.VARIANTS)}")
    all_branches = _variant_branches(image_size, image_size)
    branches = [all_branches[v] for v in variants]

    def transform(images, batch, bank, level, key):
        return jax.lax.switch(level, branches, images, batch, bank)

    mixed = set(variants) & set(backgrounds.MIXED)
    needs = mixed | ({BACKGROUNDS} if mixed or "only_bg_t" in variants else set())
    return Family(name, tuple(variants), transform, bank_keys=frozenset(needs))


def composite_family(name: str, background_indices: Sequence[int],
                     foreground_indices: Sequence[int] | None = None) -> Family:
    """Each chosen test foreground (all by default) pasted on each chosen bank background: seed 004's
    backgrounds challenge. The bank holds the tiled backgrounds of the whole split."""
    chosen = jnp.asarray(np.asarray(background_indices, np.int32))

    def transform(images, batch, bank, level, key):
        background = bank[BACKGROUNDS][chosen[level]].astype(jnp.float32) / 255.0
        return jnp.where(_foreground(batch), images, background[None])

    return Family(name, tuple(str(int(i)) for i in background_indices), transform, bank_keys=frozenset({BACKGROUNDS}),
                  examples=None if foreground_indices is None else tuple(int(i) for i in foreground_indices),
                  background_of_level=tuple(int(i) for i in background_indices))


def pattern_levels(names: Sequence[str], rates: Sequence[float], textures: Sequence[str]) -> tuple[str, ...]:
    """A pattern family's levels: each name, salt_pepper once per rate, texture once per photo."""
    levels = []
    for pattern in names:
        if pattern == "salt_pepper":
            levels += [f"salt_pepper_{rate:g}" for rate in rates]
        elif pattern == "texture":
            levels += [f"texture_{photo}" for photo in textures]
        else:
            levels.append(pattern)
    return tuple(levels)


def pattern_family(name: str, names: Sequence[str], rates: Sequence[float], textures: Sequence[str],
                   dilation: int, image_size: int, channels: int, seed: int) -> Family:
    """Seed 002's test backgrounds behind each test object's true mask dilated by `dilation` px (the
    authors' disk(2)); `original` keeps the image. Salt-and-pepper pixels are drawn by `seed`."""
    unknown = sorted(set(names) - set(patterns.PATTERNS) - {ORIGINAL})
    if unknown:
        raise ValueError(f"unknown test backgrounds {unknown}; valid: {(ORIGINAL, *patterns.PATTERNS)}")
    levels = pattern_levels(names, rates, textures)
    images = []
    for pattern in names:
        if pattern == "salt_pepper":
            images += [patterns.salt_pepper(image_size, channels, rate=rate, seed=seed) for rate in rates]
        elif pattern == "texture":
            images += [patterns.texture(image_size, channels, photo=photo) for photo in textures]
        elif pattern != ORIGINAL:
            images.append(patterns.pattern(pattern, image_size, channels))
    # Row i of `stack` is level i's background; the original level's row is never shown.
    stack = np.zeros((len(levels), image_size, image_size, channels), np.float32)
    shown = [i for i, level in enumerate(levels) if level != ORIGINAL]
    if images:
        stack[shown] = np.stack(images)
    original = levels.index(ORIGINAL) if ORIGINAL in levels else -1
    stack = jnp.asarray(stack)

    def transform(images, batch, bank, level, key):
        pasted = patterns.behind(images, batch["mask"], stack[level], dilation)
        return jnp.where(level == original, images, pasted)

    return Family(name, levels, transform)


def chosen_examples(num_images: int, count: int, seed: int, stream: int) -> np.ndarray:
    """`count` of the split's images (all for 0) drawn without replacement, in split order;
    `stream` keeps draws of one seed independent (foregrounds 0, backgrounds 1)."""
    if count == 0 or count >= num_images:
        return np.arange(num_images)
    return np.sort(np.random.default_rng([seed, stream]).choice(num_images, count, replace=False))


def build_families(specs: Mapping[str, Mapping[str, Any]], image_size: int, num_test: int,
                   seed: int, channels: int = 3) -> list[Family]:
    """The families a config's `eval.conditions` names, in config order; `seed` draws composites'
    backgrounds and salt-and-pepper pixels (and, in `build_bank`, the mixed_* donors)."""
    families = []
    for name, spec in specs.items():
        kind = spec["kind"]
        if kind == "gaussian_blur":
            families.append(gaussian_blur_family(name, spec["sigmas"], spec["reference_size"], image_size,
                                                 spec["region"]))
        elif kind == "preset":
            families.append(preset_family(name, spec["preset"], spec.get("levels", ()), spec["region"],
                                          spec.get("scale", 0), spec.get("kernel_scale", 1.0)))
        elif kind == "variant":
            families.append(variant_family(name, spec["variants"], image_size))
        elif kind == "composite":
            foregrounds = chosen_examples(num_test, spec["num_foregrounds"], seed, stream=0)
            bank_images = chosen_examples(num_test, spec["num_backgrounds"], seed, stream=1)
            families.append(composite_family(name, bank_images, foregrounds))
        elif kind == "pattern":
            families.append(pattern_family(name, spec["patterns"], spec.get("rates", ()), spec.get("textures", ()),
                                           spec["dilation"], image_size, channels, seed))
        else:
            raise ValueError(f"unknown condition kind {kind!r}; choose one of {KINDS}")
    return families


def build_bank(arrays: Mapping[str, np.ndarray], keys: Iterable[str], num_classes: int,
               seed: int) -> dict[str, np.ndarray]:
    """The host-side bank families read (`Family.bank_keys`): tiled backgrounds, mixed_* donors."""
    bank = {}
    for key in sorted(keys):
        if key == BACKGROUNDS:
            bank[key] = backgrounds.tiled_backgrounds(arrays["image"], arrays["bbox"])
        else:
            bank[key] = backgrounds.donor_indices(key, arrays["label"], num_classes, seed).astype(np.int32)
    return bank
