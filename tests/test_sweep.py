"""The robustness sweep: region semantics, one compilation for all strengths and regions, devices."""

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

from ctxfuse_jax.data.pipeline import ArraySplit
from ctxfuse_jax.evaluate.sweep import blur_region, make_sweep_step, run_blur_sweep
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


def _checkerboard_split(n=10, size=16):
    """Fine checkerboard objects in the top-left quadrant on a flat background: blur greys them out."""
    yy, xx = np.mgrid[:size, :size]
    board = ((yy + xx) % 2).astype(np.float32)
    mask = (yy < size // 2) & (xx < size // 2)
    image = np.where(mask, board, 0.8)
    images = np.repeat((image[None, ..., None] * 255).astype(np.uint8), n, axis=0).repeat(3, axis=-1)
    return ArraySplit({"image": images, "mask": np.repeat(mask[None, ..., None].astype(np.uint8), n, 0),
                       "label": np.ones(n, np.int64)})


def test_blur_region_blurs_inside_mask_only():
    split = _checkerboard_split(n=2)
    images = split.arrays["image"].astype(np.float32) / 255
    out = np.asarray(blur_region(jnp.asarray(images), jnp.asarray(split.arrays["mask"]), jnp.float32(1.5),
                                 jnp.asarray(True)))
    inside = split.arrays["mask"][0, ..., 0].astype(bool)
    np.testing.assert_array_equal(out[:, ~inside], images[:, ~inside])  # bit-identical outside
    reference = ndimage.gaussian_filter(images[0, ..., 0], 1.5, mode="reflect", truncate=4.0)
    np.testing.assert_allclose(out[0, inside, 0], reference[inside], atol=2e-3)
    whole = np.asarray(blur_region(jnp.asarray(images), jnp.asarray(split.arrays["mask"]), jnp.float32(1.5),
                                   jnp.asarray(False)))
    np.testing.assert_allclose(whole[0, ..., 0], reference, atol=2e-3)


def _probes():
    # "object" reads a bright checker square inside the mask; "context" reads the flat background.
    specs = {"object": PlayerSpec(PixelProbe(1, 0)), "context": PlayerSpec(PixelProbe(12, 12))}
    players = {name: Player({}, {}, None) for name in specs}
    return specs, players, lambda fw, x: {name: fw(name, x) for name in specs}


def test_sweep_compiles_once_and_blur_hits_only_the_blurred_region():
    specs, players, logits = _probes()
    step = make_sweep_step(specs, logits)
    mesh = sharding.make_mesh()
    results = run_blur_sweep(step, players, _checkerboard_split(n=10), [0.0, 0.5, 3.0],
                             ("foreground", "all"), 4, mesh)
    assert step._cache_size() == 1
    fg, whole = results["foreground"], results["all"]
    assert fg["object"].shape == (3, 10)  # every example exactly once, padding dropped
    # Sharp: both probes are right. Blurring the checkerboard greys the bright square: object probe fails.
    np.testing.assert_array_equal(fg["object"].all(axis=1), [True, True, False])
    np.testing.assert_array_equal(fg["context"].all(axis=1), [True, True, True])
    # Blurring the flat background changes nothing the context probe sees.
    np.testing.assert_array_equal(whole["context"].all(axis=1), [True, True, True])


def test_unknown_region_is_refused():
    specs, players, logits = _probes()
    with pytest.raises(ValueError, match="unknown sweep regions"):
        run_blur_sweep(make_sweep_step(specs, logits), players, _checkerboard_split(), [0.0], ("middle",), 4,
                       sharding.make_mesh())


SCRIPT = textwrap.dedent("""
    import json
    import numpy as np
    from tests.test_sweep import _checkerboard_split, _probes
    from ctxfuse_jax.evaluate.sweep import make_sweep_step, run_blur_sweep
    from ctxfuse_jax.train import sharding
    specs, players, logits = _probes()
    results = run_blur_sweep(make_sweep_step(specs, logits), players, _checkerboard_split(n=13),
                             [0.0, 0.7, 1.0, 3.0], ("foreground", "all"), 8, sharding.make_mesh())
    print(json.dumps({r: {m: v.tolist() for m, v in by.items()} for r, by in results.items()}))
""")


def test_sweep_identical_on_one_and_eight_devices():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    outs = []
    for n in (1, 8):
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}
        out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=root, check=True, capture_output=True,
                             text=True).stdout
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert outs[0] == outs[1]
