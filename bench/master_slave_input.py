"""Can the host degrade images as fast as seed 003's steps use them? The tf.data stage against the steps.

The input rows run `data.degraded.train_dataset` (batch 64, 64 px photo crops, uint8 out): one row
per degradation the experiment makes on the host (clean, Gaussian noise, Gaussian blur, JPEG,
JPEG 2000, noise then JPEG) and one for the paper's mixture of branches (`quality_bins.GHOSH_BINS`).
Each call opens a fresh iterator, pulls one batch (the pipeline's start-up, untimed), times
`--batches` more and closes it, so that no prefetching runs between calls, where it would take the
cores from the other workers and flatter its own row. The steps are the model the experiment trains
and scores: VGG-16-BN at width 1/8 (pool 2 x 2, 24 classes), 64 px, batch 64, the project's train
step (SGD, cross entropy) and eval step (accuracy sums) on one device-resident uint8 batch; and the
train step fed by the mixture's pipeline (host batch -> `put_batch` -> step, as the training loop
does; its prefetching does run between calls), which shows what sharing the cores costs. The
ratios are input img/s over step img/s: above 1 the host keeps up with a step that had the machine
to itself. Interleaved, one process each (`bench.harness`); the input rows are timed one after
another in one worker.

    PYTHONPATH=. python -m bench.master_slave_input            # 3 rounds, a few minutes on 2 cores
    PYTHONPATH=. python -m bench.master_slave_input --quick    # a sanity run: 1 round, 2 batches per call
"""

import argparse
import os
import time
from typing import Mapping

from bench import harness

BATCH, SIZE, NUM_CLASSES = 64, 64, 24
ROUNDS, STEPS, BATCHES, EXAMPLES = 3, 2, 10, 640  # rounds, calls per round, batches per input call, split size
M = "bench.master_slave_input"
INPUT = "tf.data input"
TRAIN, EVAL, FED = "train step, resident batch", "eval step, resident batch", "train step fed by the mixture"
# Rows of the input table: (kind, quality low, high, noise before the codec). The paper's noise
# and blur (`degrade.presets.GHOSH_NOISE`, `GHOSH_BLUR`: std 0.1, sigma 1 radius 4), its JPEG
# branch's qualities and its JPEG 2000 branch's ratios (`quality_bins.jpeg2000_ratio`).
KINDS = {"clean": ("clean", 0, 0, 0.0), "noise (std 0.1)": ("noise", 0.1, 0.1, 0.0),
         "blur (sigma 1)": ("blur", 1.0, 1.0, 0.0), "JPEG 5-20": ("jpeg", 5, 20, 0.0),
         "JPEG 2000 10:1-50:1": ("jpeg2000", 10.0, 50.0, 0.0), "noise 0.1 + JPEG 5-20": ("jpeg", 5, 20, 0.1)}
MIXTURE = "paper's mixture: clean, JPEG 5-20, JPEG 2000 10:1-50:1"


def photo_split(count: int, size: int = SIZE):
    """`count` crops of scikit-image's bundled photos resized to `size` px, 24 labels: codecs cost
    what they cost on photos, not on random pixels."""
    import numpy as np
    import skimage.data
    from PIL import Image

    from ctxfuse_jax.data import pipeline

    photos = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket()]
    rng = np.random.default_rng(0)
    images = []
    for i in range(count):
        photo = photos[i % len(photos)]
        side = int(rng.integers(min(photo.shape[:2]) // 3, min(photo.shape[:2]) + 1))
        top, left = (int(rng.integers(0, n - side + 1)) for n in photo.shape[:2])
        crop = Image.fromarray(photo[top:top + side, left:left + side])
        images.append(np.asarray(crop.resize((size, size), Image.BILINEAR)))
    labels = rng.integers(0, NUM_CLASSES, count).astype(np.int32)
    return pipeline.ArraySplit({"image": np.stack(images), "label": labels})


def _bins(name: str):
    from ctxfuse_jax.data import quality_bins

    if name == MIXTURE:
        return quality_bins.GHOSH_BINS
    kind, low, high, noise_std = KINDS[name]
    return quality_bins.QualityBins((quality_bins.Bin(kind, low, high, noise_std=noise_std),))


def input_pieces(batches: int, examples: int) -> harness.Step:
    """Every input row, one after another: seconds for `batches` batches of a started iterator."""
    from ctxfuse_jax.data import degraded

    split = photo_split(examples)
    datasets = {name: degraded.train_dataset(split, _bins(name), BATCH, seed=0) for name in (*KINDS, MIXTURE)}

    def pull(dataset) -> float:
        iterator = iter(dataset)
        next(iterator)  # Started: the epoch's draws made, the map's threads running.
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        return time.perf_counter() - start

    return lambda: harness.Parts({name: pull(dataset) for name, dataset in datasets.items()})


def _vgg_game(image):
    import jax

    from bench.jax_workloads import Game, sgd
    from ctxfuse_jax.models import build_model
    from ctxfuse_jax.train.state import PlayerSpec, init_variables

    net = build_model("vgg16_bn", num_classes=NUM_CLASSES, width=0.125, pool_size=(2, 2))
    variables = {"net": init_variables(net, jax.random.PRNGKey(0), image[:1])}
    return Game({"net": PlayerSpec(net, sgd())}, variables, lambda fw, x, train: fw("net", x, train=train), ("net",))


def _resident_batch():
    import jax.numpy as jnp

    split = photo_split(BATCH)
    return {k: jnp.asarray(v) for k, v in split.arrays.items()}


def train_step(fed: bool = False, examples: int = EXAMPLES) -> harness.Step:
    """One SGD step of the VGG on a resident uint8 batch, or on the mixture's next host batch."""
    import jax.numpy as jnp

    from bench.jax_workloads import train_loop
    from ctxfuse_jax.data import degraded, pipeline
    from ctxfuse_jax.train import losses, sharding
    from ctxfuse_jax.train.steps import Update

    data = _resident_batch()
    game = _vgg_game(pipeline.to_unit_float(data["image"]))

    def loss(forward, batch, key):
        logits = game.predict(forward, pipeline.to_unit_float(batch["image"]), True)
        return jnp.mean(losses.softmax_cross_entropy(logits, batch["label"])), {}

    if fed:
        mesh = sharding.make_mesh()
        host = degraded.train_batches(photo_split(examples), _bins(MIXTURE), BATCH, seed=0)
        next_batch = lambda: sharding.put_batch({k: v for k, v in next(host).items() if k in data}, mesh)  # noqa: E731
    else:
        next_batch = lambda: data  # noqa: E731
    step = train_loop(game, Update(("net",), loss), next_batch)
    step()  # Compiles for the fresh state; the harness's first call then compiles for the state it returns
    return step  # (placed by the step: fed batches are sharded), so that no timed call compiles.


def eval_step() -> harness.Step:
    """The project's eval step (accuracy sums over valid examples) of the VGG, inference mode."""
    import jax
    import jax.numpy as jnp

    from ctxfuse_jax.data import pipeline
    from ctxfuse_jax.train.state import new_train_state
    from ctxfuse_jax.train.steps import make_eval_step

    data = {**_resident_batch(), "valid": jnp.ones(BATCH, bool)}
    game = _vgg_game(pipeline.to_unit_float(data["image"]))

    def correct(forward, batch):
        logits = game.predict(forward, pipeline.to_unit_float(batch["image"]), False)
        return {"correct": jnp.argmax(logits, -1) == batch["label"]}

    state = new_train_state(game.specs, game.variables, jax.random.PRNGKey(0))
    step = jax.jit(make_eval_step(game.specs, correct))
    return lambda: jax.block_until_ready(step(state, data))


def workloads(batches: int, examples: int) -> dict[str, harness.Workload]:
    return {INPUT: harness.Workload(f"{M}:input_pieces", dict(batches=batches, examples=examples), batches * BATCH),
            TRAIN: harness.Workload(f"{M}:train_step", {}, BATCH),
            EVAL: harness.Workload(f"{M}:eval_step", {}, BATCH),
            FED: harness.Workload(f"{M}:train_step", dict(fed=True, examples=examples), BATCH)}


def table(results: Mapping[str, harness.Result], batches: int) -> str:
    """Input img/s per degradation over the train and eval steps' img/s; then the steps."""
    train, evaluate = results[TRAIN].per_s, results[EVAL].per_s
    lines = ["| input (tf.data, uint8 out) | img/s | input / train step | input / eval step |",
             "|---|---:|---:|---:|"]
    for name in (*KINDS, MIXTURE):
        per_s = batches * BATCH / results[INPUT].part_median_s(name)
        lines.append(f"| {name} | {per_s:,.0f} | {per_s / train:.1f}x | {per_s / evaluate:.1f}x |")
    lines += ["", "| step (VGG-16-BN width 1/8) | img/s | / resident train step | median step (s) | "
              "build and compile (s) | peak RSS (MiB) |", "|---|---:|---:|---:|---:|---:|"]
    for name in (TRAIN, EVAL, FED):
        r = results[name]
        lines.append(f"| {name} | {r.per_s:.1f} | {r.per_s / train:.2f}x | {r.median_s:.3f} | "
                     f"{r.setup_s + r.first_step_s - r.median_s:.1f} | {r.peak_rss_mib:.0f} |")
    return "\n".join(lines)


def main(rounds: int = ROUNDS, steps: int = STEPS, batches: int = BATCHES, examples: int = EXAMPLES) -> str:
    start_load = os.getloadavg()[0]
    results = harness.compare(workloads(batches, examples), rounds=rounds, steps=steps)
    return (f"Batch {BATCH}, {SIZE} px, {os.cpu_count()} CPUs; {rounds} rounds x {steps} calls, {batches} batches "
            f"per input call; load average {start_load:.1f} at start, {os.getloadavg()[0]:.1f} at the end.\n\n"
            + table(results, batches))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=STEPS, help="timed calls per workload and round")
    parser.add_argument("--batches", type=int, default=BATCHES, help="batches per timed input call")
    parser.add_argument("--quick", action="store_true", help="a sanity run: 1 round of 1 call, 2 batches, 128 images")
    args = parser.parse_args()
    examples = EXAMPLES
    if args.quick:
        args.rounds, args.steps, args.batches, examples = 1, 1, 2, 2 * BATCH
    print(main(args.rounds, args.steps, args.batches, examples))
