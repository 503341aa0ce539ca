"""Seed 002's phase-3 training step through the project's own code: ours, in `bench.bg_invariant`.

The digits part of `configs/bg_invariant.py` as the benchmark's workload sets it (the issue's
definition): the adversarial background, the alternating schedule (the classifier moves, then the
generator against the updated classifier), masks binarised at 0.5 without dilation, no
augmentation (the PyTorch reference does none). Players, Updates and optimizers are the
experiment's: `classifier_module`, `experiment.mask_module` and `generator_module`,
`game.background_updates` with `game.masked_inputs`, `optimizer_for` from the part's config, the
trainer's `make_train_step` under `jax.jit(..., donate_argnums=0)` on one device-resident batch.

Two variants of the step:
- *same step*: the frozen U-Net runs inside the jitted step. It is a frozen player of the state (no
  optimizer state), and a wrapper around the trainer's step applies it to the batch's images,
  binarises its mask and puts it in the batch's `game.LEARNED_MASK` field exactly as
  `Seed.learned_masks` stores it (uint8, 255 = 1), before the production Updates read it through
  `masked_inputs`. The U-Net thus runs once per step, as in the PyTorch reference.
- *production step*: what `Seed.background` trains: the masks were computed once, before
  training, and travel with the batch; the same state and Updates, no U-Net in the step.
`prepare` writes what both sides read: the batch and the three networks' random weights.
"""

import types

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bench.conv_layers import timed
from bench.harness import Parts, Step
from configs import bg_invariant as bg_config
from ctxfuse_jax.data.pipeline import to_unit_float
from ctxfuse_jax.experiments.bg_invariant import experiment, game, masks
from ctxfuse_jax.experiments.bg_invariant.game import CLASSIFIER, GENERATOR, MASK_NET
from ctxfuse_jax.experiments.classification import classifier_module, optimizer_for
from ctxfuse_jax.train.state import PlayerSpec, TrainState, init_variables, new_train_state
from ctxfuse_jax.train.steps import make_train_step

BATCH, SIZE, CHANNELS, NUM_CLASSES = 32, 28, 1, 10
KIND = "adversarial"
PLAYERS = (CLASSIFIER, MASK_NET, GENERATOR)
SPLIT_SIZE = 1797  # the digits' size: only derives step counts, which a constant learning rate ignores
STATE_SEED = 99  # the train state's root key


def part_config(unet_conv: str | None = None) -> ml_collections.ConfigDict:
    """`configs/bg_invariant.py`'s digits part with the benchmark's choices (module docstring);
    `unet_conv` replaces the config's U-Net convolution (`UNET_CONV`)."""
    part = bg_config.get_config().datasets.digits
    part.background.update(schedule="alternating", binarize="0.5", dilation=0)
    part.background.train.augment.update(flip=False, crop_padding=0)
    if unet_conv is not None:
        part.mask.conv = unet_conv
    return part


def networks(part: ml_collections.ConfigDict) -> dict[str, flax.linen.Module]:
    """The three players, built by the experiment's own builders."""
    image = types.SimpleNamespace(image_size=SIZE, channels=CHANNELS)  # what generator_module reads of a Part
    classifier = classifier_module(ml_collections.ConfigDict({"model": part.classifier, "compute_dtype": "float32"}),
                                   NUM_CLASSES)
    return {CLASSIFIER: classifier, MASK_NET: experiment.mask_module(part),
            GENERATOR: experiment.generator_module(part, image)}


def prepare(path: str, seed: int = 0) -> None:
    """The first BATCH rendered digits (uint8, 28 px, scikit-learn's order) and random weights of
    the three networks (their initialisers), flattened as 'player/layer/kernel'."""
    from ctxfuse_jax.data.digits import render_digits

    split = render_digits(SIZE, seed=seed)
    nets = networks(part_config())
    samples = {CLASSIFIER: jnp.zeros((1, SIZE, SIZE, CHANNELS)), MASK_NET: jnp.zeros((1, SIZE, SIZE, CHANNELS)),
               GENERATOR: jnp.zeros(nets[GENERATOR].noise_shape(1))}
    weights = {}
    for index, name in enumerate(PLAYERS):
        params = init_variables(nets[name], jax.random.PRNGKey(seed + index), samples[name])["params"]
        weights.update({f"{name}/{key}": np.asarray(value)
                        for key, value in flax.traverse_util.flatten_dict(params, sep="/").items()})
    np.savez(path, image=split.arrays["image"][:BATCH], label=split.arrays["label"][:BATCH].astype(np.int32),
             **weights)


def load(path: str) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """(the batch's arrays, each player's params) of `prepare`'s file."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    params = {name: flax.traverse_util.unflatten_dict(
        {k[len(name) + 1:]: v for k, v in arrays.items() if k.startswith(name + "/")}, sep="/") for name in PLAYERS}
    return {k: arrays[k] for k in ("image", "label")}, params


class Phase3:
    """The phase-3 game of `part_config(unet_conv)` on `prepare`'s batch and weights.

    `step(variant)` is the jitted step of a variant ('same' or 'production'), `batch(variant)` what
    it is fed, `state()` a fresh state at step 0 (the same for both variants).
    """

    def __init__(self, data_path: str, unet_conv: str | None = None):
        arrays, params = load(data_path)
        part = self.part = part_config(unet_conv)
        nets = self.nets = networks(part)
        background = part.background
        self.specs = {CLASSIFIER: PlayerSpec(nets[CLASSIFIER], optimizer_for(background.train, SPLIT_SIZE)),
                      GENERATOR: PlayerSpec(nets[GENERATOR], optimizer_for(background.train, SPLIT_SIZE,
                                                                           background.generator.optimizer)),
                      MASK_NET: PlayerSpec(nets[MASK_NET])}  # frozen
        self.params = jax.tree.map(jnp.asarray, params)
        self.updates = game.background_updates(background, KIND, game.masked_inputs(background.train.augment),
                                               CHANNELS, generator_noise=nets[GENERATOR].noise_shape)
        self.binarize = masks.binarizer(background.binarize, background.area)
        self.images = {"image": jnp.asarray(arrays["image"]), "label": jnp.asarray(arrays["label"])}
        self.train_step = make_train_step(self.specs, self.updates)

    def state(self) -> TrainState:
        return new_train_state(self.specs, {name: {"params": p} for name, p in self.params.items()},
                               jax.random.PRNGKey(STATE_SEED))

    def with_masks(self, state: TrainState, batch: dict) -> dict:
        """The batch with the frozen U-Net's binarised masks, stored as `Seed.learned_masks` stores them."""
        mask = self.binarize(self.nets[MASK_NET].apply({"params": state.players[MASK_NET].params},
                                                        to_unit_float(batch["image"])))
        return {**batch, game.LEARNED_MASK: jnp.round(mask * 255).astype(jnp.uint8)}

    def step(self, variant: str):
        if variant == "same":
            return jax.jit(lambda state, batch: self.train_step(state, self.with_masks(state, batch)),
                           donate_argnums=0)
        if variant == "production":
            return jax.jit(self.train_step, donate_argnums=0)
        raise ValueError(f"unknown variant {variant!r}; choose 'same' or 'production'")

    def batch(self, variant: str) -> dict:
        if variant == "same":
            return self.images
        return jax.block_until_ready(jax.jit(self.with_masks)(self.state(), self.images))  # once, before training

    def noise(self, step: int, update: int) -> jax.Array:
        """The generator's noise in update `update` of step `step`, drawn as the trainer draws it
        (`make_train_step`'s per-update key, `Forward.key`'s first draw in `background_fn`); only for
        the check, which verifies it through the backgrounds' mean."""
        rng = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(STATE_SEED), step), update)
        return jax.random.normal(jax.random.fold_in(rng, 1), self.nets[GENERATOR].noise_shape(BATCH))


def train_step(data_path: str, variant: str) -> Step:
    """A `Step` of the phase-3 game: one jitted step on the resident batch, blocking on its metrics."""
    phase3 = Phase3(data_path)
    step_fn, batch = phase3.step(variant), phase3.batch(variant)
    cell = [phase3.state()]

    def step():
        cell[0], metrics = step_fn(cell[0], batch)
        return jax.block_until_ready(metrics)

    return step


def metrics_of_steps(data_path: str, variant: str, steps: int) -> list[dict[str, float]]:
    """The metrics of the first `steps` steps of a variant, as floats (for the check)."""
    phase3 = Phase3(data_path)
    step_fn, batch, state = phase3.step(variant), phase3.batch(variant), phase3.state()
    out = []
    for _ in range(steps):
        state, metrics = step_fn(state, batch)
        out.append({k: float(v) for k, v in metrics.items()})
    return out


def unet_pieces(data_path: str, conv: str) -> Step:
    """The frozen U-Net alone with convolution `conv` on the batch: forward ('fwd'), and forward plus
    the gradient of sum(mask * g) in its params ('grad', what phase 2 computes), timed one by one."""
    arrays, params = load(data_path)
    part = part_config(conv)
    module = experiment.mask_module(part)
    images = to_unit_float(jnp.asarray(arrays["image"]))
    cotangent = jnp.asarray(np.random.default_rng(0).normal(size=images.shape), jnp.float32)
    variables = {"params": jax.tree.map(jnp.asarray, params[MASK_NET])}
    forward = jax.jit(module.apply).lower(variables, images).compile()
    grad = jax.jit(jax.grad(lambda v, x: jnp.sum(module.apply(v, x) * cotangent))).lower(variables, images).compile()
    fns = {"fwd": lambda: jax.block_until_ready(forward(variables, images)),
           "grad": lambda: jax.block_until_ready(grad(variables, images))}

    def step() -> Parts:
        return timed(fns)

    return step
