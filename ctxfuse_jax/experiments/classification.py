"""Supervised classification stages: one game shape shared by pretraining, linear probes and fusion.

Every such stage trains some players so that `predict(forward, inputs, train)` classifies well;
only who the players are, which of them move and what they classify (augmented images by default,
or e.g. cached stream features) differs between the stages of an experiment.
"""

import dataclasses
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ctxfuse_jax.data import pipeline
from ctxfuse_jax.data.augment import augment
from ctxfuse_jax.evaluate.scoring import score_split
from ctxfuse_jax.models.precision import compute_dtype
from ctxfuse_jax.models.registry import build_model
from ctxfuse_jax.train import losses
from ctxfuse_jax.train.forward import Forward
from ctxfuse_jax.train.loop import LoopOptions, Stage, run_stage
from ctxfuse_jax.train.optim import make_optimizer
from ctxfuse_jax.train.state import PlayerSpec, TrainState, Variables, init_variables, new_train_state
from ctxfuse_jax.train.steps import Update, make_eval_step

Predict = Callable[[Forward, Any, bool], jax.Array]
# (batch, rng) -> what `predict` classifies; `rng` draws the training augmentation, None at evaluation.
Inputs = Callable[[Mapping[str, jax.Array], jax.Array | None], Any]


def classifier_module(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
    """The zoo model `config.model` names (its other fields: width, conv, ...), computing in the
    configured precision."""
    options = {k: v for k, v in config.model.items() if k != "name"}
    return build_model(config.model.name, num_classes=num_classes, dtype=compute_dtype(config.compute_dtype),
                       **options)


def step_counts(train_config: ml_collections.ConfigDict, split_size: int) -> tuple[int, int]:
    """(total steps, steps per epoch), derived at run time from epochs and the split's size."""
    if train_config.num_epochs <= 0:
        raise ValueError(f"num_epochs must be positive, got {train_config.num_epochs}")
    per_epoch = pipeline.steps_per_epoch(split_size, train_config.batch_size)
    return max(1, int(round(train_config.num_epochs * per_epoch))), per_epoch


def optimizer_for(train_config: ml_collections.ConfigDict, split_size: int):
    total, per_epoch = step_counts(train_config, split_size)
    return make_optimizer(train_config.optimizer, total, per_epoch)


def image_inputs(augment_config: ml_collections.ConfigDict) -> Inputs:
    """The batch's images in [0, 1], flipped and cropped as `augment_config` says when training."""

    def inputs(batch, rng):
        images = pipeline.to_unit_float(batch["image"])
        if rng is None:
            return images
        return augment(images, rng, augment_config.flip, augment_config.crop_padding)

    return inputs


def classification_update(predict: Predict, moving: tuple[str, ...], train_config: ml_collections.ConfigDict,
                          inputs: Inputs) -> Update:
    """Mean cross entropy of `predict` on the training `inputs`, descended by the `moving` players."""
    smoothing = train_config.label_smoothing

    def loss(forward: Forward, batch, rng):
        logits = predict(forward, inputs(batch, rng), True)
        loss = jnp.mean(losses.softmax_cross_entropy(logits, batch["label"], smoothing))
        return loss, {"accuracy": jnp.mean(losses.correct(logits, batch["label"]))}

    return Update(players=moving, loss=loss)


def classification_metrics(predict: Predict, inputs: Inputs):
    """Per-example accuracy, loss and prediction entropy, for `make_eval_step`."""

    def metrics(forward: Forward, batch):
        logits = predict(forward, inputs(batch, None), False)
        return {"accuracy": losses.correct(logits, batch["label"]),
                "loss": losses.softmax_cross_entropy(logits, batch["label"]),
                "entropy": losses.entropy(logits)}

    return metrics


def classification_stage(name: str, specs: Mapping[str, PlayerSpec], predict: Predict,
                         moving: tuple[str, ...], init_state: Callable[[], TrainState],
                         train_split: pipeline.ArraySplit, test_split: pipeline.ArraySplit,
                         train_config: ml_collections.ConfigDict, seed: int,
                         mesh: jax.sharding.Mesh, fingerprint: Mapping, inputs: Inputs | None = None,
                         extra_metrics: Callable[[TrainState], dict[str, float]] | None = None) -> Stage:
    """A resumable stage training `moving` players, evaluated on `test_split` at the end.

    `inputs` turns a batch of the splits into what `predict` takes: by default `image_inputs`.
    `extra_metrics(state)` adds to every evaluation (e.g. accuracy under test conditions).
    """
    inputs = inputs or image_inputs(train_config.augment)
    total, _ = step_counts(train_config, len(train_split))
    eval_step = jax.jit(make_eval_step(specs, classification_metrics(predict, inputs)))

    def evaluate(state: TrainState) -> dict[str, float]:
        metrics = score_split(eval_step, state, test_split, train_config.batch_size, mesh)
        return {**metrics, **(extra_metrics(state) if extra_metrics else {})}

    return Stage(
        name=name, specs=specs,
        updates=[classification_update(predict, moving, train_config, inputs)],
        init_state=init_state,
        batches=lambda start: pipeline.train_batches(train_split, train_config.batch_size, seed, start),
        num_steps=total,
        fingerprint={**fingerprint, "train": train_config.to_dict(), "seed": seed},
        evaluate=evaluate)


@dataclasses.dataclass(frozen=True)
class Learner:
    """A player this stage trains: its module, the inputs it is initialised on, and its init key."""

    module: nn.Module
    sample_inputs: tuple[jax.ShapeDtypeStruct, ...]
    init_rng: jax.Array


@dataclasses.dataclass(frozen=True)
class Trained:
    variables: dict[str, Variables]  # each learner's params and batch_stats, on the host
    metrics: dict[str, float]  # the stage's final test metrics


def train_classifier(name: str, predict: Predict, *, learners: Mapping[str, Learner],
                     frozen: Mapping[str, tuple[nn.Module, Variables]], train_split: pipeline.ArraySplit,
                     test_split: pipeline.ArraySplit, train_config: ml_collections.ConfigDict, seed: int,
                     train_rng: jax.Array, workdir: str, mesh: jax.sharding.Mesh, loop: LoopOptions,
                     fingerprint: Mapping, inputs: Inputs | None = None,
                     extra_metrics: Callable[[TrainState], dict[str, float]] | None = None) -> Trained:
    """The one stage set-up every experiment uses: specs, init, a resumable stage, variables out.

    `learners` are initialised here and trained; `frozen` players (e.g. pretrained streams) run in
    inference mode and keep their variables. `predict(forward, inputs, train)` classifies;
    `extra_metrics` adds to each evaluation (`classification_stage`).
    """
    specs = {player: PlayerSpec(module) for player, (module, _) in frozen.items()}
    specs.update({player: PlayerSpec(learner.module, optimizer_for(train_config, len(train_split)))
                  for player, learner in learners.items()})

    def init_state() -> TrainState:
        variables = {player: v for player, (_, v) in frozen.items()}
        for player, learner in learners.items():
            zeros = [jnp.zeros(s.shape, s.dtype) for s in learner.sample_inputs]
            variables[player] = init_variables(learner.module, learner.init_rng, *zeros)
        return new_train_state(specs, variables, train_rng)

    stage = classification_stage(name, specs, predict, tuple(learners), init_state, train_split, test_split,
                                 train_config, seed, mesh, fingerprint, inputs, extra_metrics)
    result = run_stage(stage, workdir, mesh, loop)
    players = jax.device_get(result.state.players)
    return Trained({player: {"params": players[player].params, "batch_stats": players[player].batch_stats}
                    for player in learners}, result.metrics)


def image_sample(split: pipeline.ArraySplit) -> tuple[jax.ShapeDtypeStruct]:
    """One float image of the split's shape: what an image classifier is initialised on."""
    return (jax.ShapeDtypeStruct((1, *split.arrays["image"].shape[1:]), jnp.float32),)
