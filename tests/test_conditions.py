"""The evaluator of conditions: each family's pixels, one compilation, every example once, devices."""

import json
import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from ctxfuse_jax import degrade
from ctxfuse_jax.data.pipeline import ArraySplit
from ctxfuse_jax.evaluate import conditions
from ctxfuse_jax.evaluate.evaluator import (ConditionScores, FamilyScores, evaluate_conditions, long_table,
                                            make_condition_step)
from ctxfuse_jax.train import sharding
from ctxfuse_jax.train.state import Player, PlayerSpec


class PixelProbe(nn.Module):
    """Two logits from one pixel's brightness: class 1 when pixel (y, x) is brighter than 0.5."""

    y: int
    x: int

    @nn.compact
    def __call__(self, images, train: bool = False):
        value = images[:, self.y, self.x, 0]
        return jnp.stack([0.5 - value, value - 0.5], axis=-1)


def checkerboard_split(n=10, size=16):
    """Fine checkerboard objects in the top-left quadrant on a flat background: blur greys them out."""
    yy, xx = np.mgrid[:size, :size]
    board = ((yy + xx) % 2).astype(np.float32)
    mask = (yy < size // 2) & (xx < size // 2)
    image = np.where(mask, board, 0.8)
    images = np.repeat((image[None, ..., None] * 255).astype(np.uint8), n, axis=0).repeat(3, axis=-1)
    return ArraySplit({"image": images, "mask": np.repeat(mask[None, ..., None].astype(np.uint8), n, 0),
                       "label": np.ones(n, np.int64), "bbox": np.tile([[0.0, 0.0, 0.5, 0.5]], (n, 1))})


def probes():
    # "object" reads a bright checker square inside the mask; "context" reads the flat background.
    specs = {"object": PlayerSpec(PixelProbe(1, 0)), "context": PlayerSpec(PixelProbe(12, 12))}
    players = {name: Player({}, {}, None) for name in specs}
    return specs, players, lambda fw, x: {name: fw(name, x) for name in specs}


def random_pool(n=12, size=12, num_classes=3, seed=0):
    """Random images, labels and boxes with masks strictly inside the boxes (a disc per box)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    boxes, masks = [], []
    yy, xx = np.mgrid[:size, :size] + 0.5
    for _ in range(n):
        y0, x0 = rng.integers(1, size // 2, 2)
        h, w = rng.integers(3, size // 2, 2)
        boxes.append([y0 / size, x0 / size, (y0 + h) / size, (x0 + w) / size])
        cy, cx, r = y0 + h / 2, x0 + w / 2, min(h, w) / 2
        masks.append(((yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2)[..., None])
    labels = np.arange(n) % num_classes
    return ArraySplit({"image": images, "label": labels.astype(np.int64), "bbox": np.asarray(boxes, np.float32),
                       "mask": np.asarray(masks, np.uint8)})


def unit(images):
    """uint8 -> [0, 1] as the device does it (XLA's division rounds unlike numpy's)."""
    return np.asarray(jnp.asarray(images).astype(jnp.float32) / 255.0)


def transformed_images(families, split, batch_size=5, num_classes=3, seed=0):
    """The images each (family, level) shows a model, read back through an identity 'model'."""
    mesh = sharding.make_mesh()
    arrays = {**split.arrays, "index": np.arange(len(split), dtype=np.int32)}
    keys = set().union(*(family.bank_keys for family in families))
    bank = sharding.put_replicated(conditions.build_bank(split.arrays, keys, num_classes, seed), mesh)
    out = {}
    for f, family in enumerate(families):
        for l, level in enumerate(family.levels):
            batch = sharding.put_batch({**arrays, "valid": np.ones(len(split), bool)}, mesh)
            images = jax.lax.switch(jnp.int32(f), [fam.transform for fam in families],
                                    batch["image"].astype(jnp.float32) / 255, batch, bank, jnp.int32(l),
                                    jax.random.PRNGKey(0))
            out[(family.name, level)] = np.asarray(images)
    return out


def test_every_variant_on_device_is_the_host_definition():
    split = random_pool()
    family = conditions.variant_family("in9", degrade.VARIANTS, image_size=12)
    images = transformed_images([family], split, seed=3)
    a = split.arrays
    for variant in degrade.VARIANTS:
        host = degrade.background_variant(variant, unit(a["image"]), a["label"], a["bbox"],
                                          a["mask"], seed=3, num_classes=3)
        np.testing.assert_array_equal(images[("in9", variant)], host, err_msg=variant)


def test_variants_on_a_hand_made_image():
    """A 4x4 image: box = the right column of rows 1-2, mask = its upper pixel; background rows differ."""
    image = np.zeros((1, 4, 4, 3), np.uint8)
    for row in range(4):
        image[0, row] = 10 * (row + 1)  # row r has value 10(r+1)
    image[0, 1:3, 3] = 200  # the object's box
    mask = np.zeros((1, 4, 4, 1), np.uint8)
    mask[0, 1, 3] = 1
    split = ArraySplit({"image": np.concatenate([image, image]), "label": np.array([0, 1]),
                        "bbox": np.tile([[0.25, 0.75, 0.75, 1.0]], (2, 1)).astype(np.float32),
                        "mask": np.concatenate([mask, mask])})
    family = conditions.variant_family("v", ("only_fg", "no_fg", "only_bg_b", "only_bg_t", "mixed_rand"), 4)
    assert family.bank_keys == {"backgrounds", "mixed_rand"}
    out = {k[1]: np.round(v[0, ..., 0] * 255).astype(int) for k, v in transformed_images([family], split).items()}
    rows = np.array([10, 20, 30, 40])[:, None] * np.ones((1, 4), int)
    fg = np.zeros((4, 4), int)
    fg[1, 3] = 200
    np.testing.assert_array_equal(out["only_fg"], fg)
    expected = rows.copy()
    expected[2, 3] = 200
    expected[1, 3] = 0
    np.testing.assert_array_equal(out["no_fg"], expected)
    expected[1:3, 3] = 0
    np.testing.assert_array_equal(out["only_bg_b"], expected)
    # The largest strip beside the box is the left one (3 columns x 4 rows): the box's columns are
    # filled by repeating it from the box's left edge, so column 3 takes column 0: its own rows.
    np.testing.assert_array_equal(out["only_bg_t"], rows)
    # mixed_rand: the only other image is its twin; the foreground pixel stays, the rest is tiled.
    expected = rows.copy()
    expected[1, 3] = 200
    np.testing.assert_array_equal(out["mixed_rand"], expected)


def test_composite_pastes_foregrounds_on_each_chosen_background():
    split = random_pool(n=6)
    family = conditions.composite_family("challenge", [4, 1])
    images = transformed_images([family], split)
    bank = unit(conditions.build_bank(split.arrays, {"backgrounds"}, 3, 0)["backgrounds"])
    fg = split.arrays["mask"] > 0.5
    for level, j in (("4", 4), ("1", 1)):
        expected = np.where(fg, unit(split.arrays["image"]), bank[j][None])
        np.testing.assert_array_equal(images[("challenge", level)], expected)


def test_gaussian_blur_family_blurs_its_region_only():
    split = checkerboard_split(n=2)
    fg = conditions.gaussian_blur_family("fg", [0.0, 1.5], reference_size=16, image_size=16, region="foreground")
    whole = conditions.gaussian_blur_family("all", [3.0], reference_size=32, image_size=16, region="all")
    images = transformed_images([fg, whole], split)
    original = unit(split.arrays["image"])
    inside = split.arrays["mask"][0, ..., 0].astype(bool)
    np.testing.assert_array_equal(images[("fg", "0")], original)  # sigma 0 is the identity
    out = images[("fg", "1.5")]
    np.testing.assert_array_equal(out[:, ~inside], original[:, ~inside])  # bit-identical outside
    reference = ndimage.gaussian_filter(original[0, ..., 0], 1.5, mode="reflect", truncate=4.0)
    np.testing.assert_allclose(out[0, inside, 0], reference[inside], atol=2e-3)
    # sigma 3 at a 32 px reference scale is sigma 1.5 on these 16 px images, everywhere.
    np.testing.assert_allclose(images[("all", "3")][0, ..., 0], reference, atol=2e-3)


def sweep_before_the_port(images, masks, sigma_px, foreground_only):
    """`evaluate.sweep.blur_region`, the fusion sweep's transform before the evaluator replaced it."""
    blurred = degrade.gaussian_blur(images, jnp.broadcast_to(sigma_px, images.shape[:1]))
    region = jnp.logical_or(masks > 0, jnp.logical_not(foreground_only))
    return degrade.composite(images, blurred, region, "foreground")


def test_fusion_blur_conditions_are_the_sweep_before_the_port_bit_for_bit():
    split = random_pool(n=5, size=16)
    sigmas = (0.0, 1.0, 6.0, 12.0)  # at 224 px, on 16 px images
    families = [conditions.gaussian_blur_family(f"blur_{r}", sigmas, 224, 16, r) for r in ("foreground", "all")]
    images = transformed_images(families, split)
    unit_images = jnp.asarray(unit(split.arrays["image"]))
    old = jax.jit(sweep_before_the_port)
    for family, foreground_only in zip(families, (True, False)):
        for sigma in sigmas:
            expected = old(unit_images, jnp.asarray(split.arrays["mask"]), jnp.float32(sigma * 16 / 224),
                           jnp.asarray(foreground_only))
            np.testing.assert_array_equal(images[(family.name, f"{sigma:g}")], np.asarray(expected))


def test_preset_family_levels_and_host_presets_refused():
    split = checkerboard_split(n=3)
    family = conditions.preset_family("noise", "imagenet_c/gaussian_noise", ("1", "5"), region="background")
    images = transformed_images([family], split)
    original = unit(split.arrays["image"])
    inside = split.arrays["mask"][0, ..., 0].astype(bool)
    for level, std in (("1", 0.08), ("5", 0.38)):
        out = images[("noise", level)]
        np.testing.assert_array_equal(out[:, inside], original[:, inside])
        residual = (out - original)[:, ~inside]
        assert 0.6 * std < residual.std() < 1.1 * std  # clipped to [0, 1], so a little below std
    with pytest.raises(ValueError, match="run on the host"):
        conditions.preset_family("jpeg", "imagenet_c/jpeg_compression", (), region="all")


def test_one_compilation_scores_every_condition_and_every_example_once():
    specs, players, logits = probes()
    traces = []

    def counted(fw, x):
        traces.append(1)
        return logits(fw, x)

    split = checkerboard_split(n=10)
    families = [conditions.gaussian_blur_family("fg", [0.0, 0.5, 3.0], 16, 16, "foreground"),
                conditions.gaussian_blur_family("all", [3.0], 16, 16, "all"),
                conditions.variant_family("in9", ("original", "only_bg_t"), 16),
                conditions.composite_family("challenge", [0, 3], foreground_indices=[1, 4, 9])]
    step = make_condition_step(specs, counted, families)
    scores = evaluate_conditions(step, players, split, families, 4, sharding.make_mesh(), num_classes=2)
    assert len(traces) == 1 and step._cache_size() == 1
    # Every example exactly once, padding dropped; the challenge scores its 3 chosen foregrounds.
    assert scores.family("fg").predictions["object"].shape == (3, 10)
    assert scores.family("challenge").predictions["object"].shape == (2, 3)
    np.testing.assert_array_equal(scores.family("challenge").examples, [1, 4, 9])
    assert scores.family("fg").levels == ("0", "0.5", "3")
    # Sharp: both probes are right. Blurring the checkerboard greys the bright square: object probe fails.
    np.testing.assert_array_equal(scores.correct("object", "fg").all(axis=1), [True, True, False])
    np.testing.assert_array_equal(scores.correct("context", "fg").all(axis=1), [True, True, True])
    np.testing.assert_array_equal(scores.correct("context", "all").all(axis=1), [True])


def test_class_map_scores_through_the_mapped_arg_max():
    class Fixed(nn.Module):
        @nn.compact
        def __call__(self, images, train: bool = False):
            # Example i has its arg-max at source class i % 4.
            index = jnp.round(images[:, 0, 0, 0] * 255).astype(jnp.int32) % 4
            return jax.nn.one_hot(index, 4)

    images = np.zeros((5, 4, 4, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(5)
    split = ArraySplit({"image": images, "label": np.array([0, 1, 1, 0, 0]), "mask": np.ones((5, 4, 4, 1), np.uint8)})
    class_map = np.array([1, -1, 1, 0])  # source 0 -> 1, 1 -> none, 2 -> 1, 3 -> 0
    families = [conditions.variant_family("v", ("original",), 4)]
    step = make_condition_step({"m": PlayerSpec(Fixed())}, lambda fw, x: {"m": fw("m", x)}, families, class_map)
    scores = evaluate_conditions(step, {"m": Player({}, {}, None)}, split, families, 2, sharding.make_mesh(),
                                 num_classes=2)
    np.testing.assert_array_equal(scores.family("v").predictions["m"][0], [1, -1, 1, 0, 1])
    np.testing.assert_array_equal(scores.correct("m", "v")[0], [False, False, True, True, False])


def test_long_table_by_hand():
    blur = FamilyScores(levels=("0", "4"), examples=np.arange(4),
                        predictions={"A": np.array([[0, 1, 1, 1], [1, 1, 0, 0]])},
                        entropy={"A": np.array([[0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]], np.float32)})
    # A family scoring examples 1 and 3 only: labels 1 and 0.
    part = FamilyScores(levels=("x",), examples=np.array([1, 3]), predictions={"A": np.array([[1, 1]])},
                        entropy={"A": np.array([[0.5, 1.5]], np.float32)})
    scores = ConditionScores(labels=np.array([0, 1, 1, 0]), families={"blur": blur, "part": part})
    subsets = {"all": np.ones(4, bool), "first": np.array([True, True, False, False])}
    table = long_table(scores, subsets, seed=7)
    rows = {(r["condition"], r["level"], r["test_set"], r["metric"]): r["value"] for r in table}
    assert rows["blur", "0", "all", "accuracy"] == 0.75 and rows["blur", "4", "all", "accuracy"] == 0.5
    assert rows["blur", "0", "first", "accuracy"] == 1.0 and rows["blur", "4", "first", "accuracy"] == 0.5
    assert rows["blur", "0", "all", "entropy"] == 1.5 and rows["blur", "0", "first", "entropy"] == 0.5
    assert rows["part", "x", "all", "accuracy"] == 0.5 and rows["part", "x", "first", "accuracy"] == 1.0
    assert rows["part", "x", "first", "entropy"] == 0.5
    assert all(r["seed"] == 7 and r["model"] == "A" for r in table)


SCRIPT = textwrap.dedent("""
    import json
    from tests.test_conditions import checkerboard_split, probes
    from ctxfuse_jax.evaluate import conditions
    from ctxfuse_jax.evaluate.evaluator import evaluate_conditions, make_condition_step
    from ctxfuse_jax.train import sharding
    specs, players, logits = probes()
    families = [conditions.gaussian_blur_family("fg", [0.0, 0.7, 1.0, 3.0], 16, 16, "foreground"),
                conditions.variant_family("in9", ("no_fg", "mixed_rand"), 16)]
    scores = evaluate_conditions(make_condition_step(specs, logits, families), players, checkerboard_split(n=13),
                                 families, 8, sharding.make_mesh(), num_classes=2)
    print(json.dumps({f: {m: v.tolist() for m, v in s.predictions.items()} for f, s in scores.families.items()}))
""")


def test_scores_identical_on_one_and_eight_devices():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    outs = []
    for n in (1, 8):
        env = {**os.environ, "JAX_PLATFORMS": "cpu",
               "XLA_FLAGS": f"{os.environ['XLA_FLAGS']} --xla_force_host_platform_device_count={n}"}
        out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=root, check=True, capture_output=True,
                             text=True).stdout
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert outs[0] == outs[1]
