"""Robustness sweeps: per-example correctness of several models over blur strengths and regions.

Blur strength and region are traced arguments of one jitted step, so a whole sweep compiles once.
Results stay per example, so any test subset (All, Dissimilar, one class) is a mask applied after.
"""

from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ctxfuse_jax import degrade
from ctxfuse_jax.data.pipeline import ArraySplit, eval_batches, to_unit_float
from ctxfuse_jax.evaluate.sweep_regions import REGIONS
from ctxfuse_jax.train import losses, sharding
from ctxfuse_jax.train.forward import Forward
from ctxfuse_jax.train.state import Player, PlayerSpec

LogitsFn = Callable[[Forward, jax.Array], Mapping[str, jax.Array]]


def blur_region(images: jax.Array, masks: jax.Array, sigma_px: jax.Array, foreground_only: jax.Array) -> jax.Array:
    """Gaussian blur inside the object mask (or everywhere); other pixels stay bit-identical."""
    blurred = degrade.gaussian_blur(images, jnp.broadcast_to(sigma_px, images.shape[:1]))
    region = jnp.logical_or(masks > 0, jnp.logical_not(foreground_only))
    return degrade.composite(images, blurred, region, "foreground")


def make_sweep_step(specs: Mapping[str, PlayerSpec], logits_fn: LogitsFn):
    """`step(players, batch, sigma_px, foreground_only) -> {model: correct per example}`, jitted."""

    def step(players, batch, sigma_px, foreground_only):
        images = blur_region(to_unit_float(batch["image"]), batch["mask"], sigma_px, foreground_only)
        logits = logits_fn(Forward(specs, players), images)
        return {name: losses.correct(value, batch["label"]) for name, value in logits.items()}

    return jax.jit(step)


def run_blur_sweep(step, players: Mapping[str, Player], split: ArraySplit, sigmas_px: Sequence[float],
                   regions: Sequence[str], global_batch_size: int,
                   mesh: jax.sharding.Mesh) -> dict[str, dict[str, np.ndarray]]:
    """{region: {model: bool array (num_sigmas, num_examples)}}, every example scored once."""
    unknown = set(regions) - set(REGIONS)
    if unknown:
        raise ValueError(f"unknown sweep regions {sorted(unknown)}; choose from {REGIONS}")
    batches = [sharding.put_batch(b, mesh) for b in eval_batches(split, global_batch_size)]
    valid = np.concatenate([sharding.to_host(b["valid"]) for b in batches])
    results: dict[str, dict[str, np.ndarray]] = {}
    for region in regions:
        foreground_only = jnp.asarray(region == "foreground")
        per_sigma = []
        for sigma in sigmas_px:
            outs = [step(players, batch, jnp.float32(sigma), foreground_only) for batch in batches]
            per_sigma.append({name: np.concatenate([sharding.to_host(o[name]) for o in outs])[valid] > 0.5
                              for name in outs[0]})
        results[region] = {name: np.stack([s[name] for s in per_sigma]) for name in per_sigma[0]}
    return results
