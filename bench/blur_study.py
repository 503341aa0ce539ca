"""What drawing seed 001's blur inside the fine-tuning step costs, against the same step fed ready crops.

The blur study's fine-tuning step (`configs/blur_study.py`: VGG-16-BN at width 1/8, 64 px crops of
108 px canonical images, batch 64) as the experiment runs it: each image draws a window, a rescale
and a kernel of the mixture, is blurred and resized in the jitted step (`mixtures.train_images`).
Two references: the same train step fed device-resident 64 px crops (what a host pipeline that
crops and blurs would hand it), and the step drawing sharp crops in the step (what pre-blurred
images would still need: a window per image), over which the difference is the blur's own share.
Each workload in its own process, interleaved (`bench.harness`).

    PYTHONPATH=. python -m bench.blur_study            # about 4 min on 2 cores
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from bench import harness
from bench.jax_workloads import Game, sgd, train_loop
from ctxfuse_jax.experiments.blur_study import geometry, mixtures
from ctxfuse_jax.models.registry import build_model
from ctxfuse_jax.train import losses
from ctxfuse_jax.train.state import PlayerSpec, init_variables
from ctxfuse_jax.train.steps import Update

BATCH = 64
GEOMETRY = geometry.Geometry(canonical=108, scales=(36, 72, 144), base_scale=72, train_crop=64,
                             rescales=(100, 108, 115))
MIXTURES = {"sharp": dict(sharp=1.0), "sharp & D2-8": dict(sharp=1.0, D2=1.0, D4=1.0, D6=1.0, D8=1.0),
            "20% sharp & camera shake": dict(sharp=0.2, shake=0.8)}
REFERENCE = "step fed ready 64 px crops"


def fine_tune_step(mixture: str = "") -> harness.Step:
    """One SGD step of the study's VGG; with `mixture`, on 108 px images cropped and blurred in the step."""
    net = build_model("vgg16_bn", num_classes=24, width=0.125, pool_size=(2, 2), dropout_rate=0.0)
    rng = np.random.default_rng(0)
    side = GEOMETRY.canonical if mixture else GEOMETRY.train_crop
    data = {"image": jnp.asarray(rng.integers(0, 256, (BATCH, side, side, 3)), jnp.uint8),
            "label": jnp.asarray(rng.integers(0, 24, BATCH))}
    game = Game({"net": PlayerSpec(net, sgd())},
                {"net": init_variables(net, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))}, None, ("net",))
    chosen = mixtures.Mixture.from_weights(MIXTURES[mixture]) if mixture else None

    def loss(forward, batch, key):
        images = mixtures.batch_images(batch)
        if chosen is not None:
            images, _ = mixtures.train_images(images, key, GEOMETRY, chosen, (GEOMETRY.base_scale,), flip=True)
        logits = forward("net", images, train=True)
        return jnp.mean(losses.softmax_cross_entropy(logits, batch["label"])), {}

    return train_loop(game, Update(("net",), loss), lambda: data)


def main(rounds: int = 8) -> str:
    workloads = {REFERENCE: harness.Workload("bench.blur_study:fine_tune_step", {}, BATCH)}
    workloads.update({f"drawn in the step: {name}": harness.Workload("bench.blur_study:fine_tune_step",
                                                                     {"mixture": name}, BATCH) for name in MIXTURES})
    results = harness.compare(workloads, rounds=rounds, steps=4)
    reference = results[REFERENCE].median_s
    # Pre-blurred images would still be cropped per image in the step: the blur's own share is the
    # time over the sharp draw, relative to that step.
    sharp = results[f"drawn in the step: {next(iter(MIXTURES))}"].median_s
    lines = ["| input | ms per step | added (ms) | added / step fed crops | blur's share (over the sharp draw) |",
             "|---|---:|---:|---:|---:|"]
    for name, result in results.items():
        added = result.median_s - reference
        share = f"{(result.median_s - sharp) / sharp:+.1%}" if name != REFERENCE else ""
        lines.append(f"| {name} | {1e3 * result.median_s:.0f} | {1e3 * added:+.0f} | {added / reference:+.1%} "
                     f"| {share} |")
    return f"Batch {BATCH}, canonical 108 px, 64 px crops.\n\n" + "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    print(main(parser.parse_args().rounds))
