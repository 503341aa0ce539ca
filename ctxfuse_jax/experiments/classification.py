"""The one stage builder, and the classification stages built on it.

`train_players` turns players (initialised, started from given variables, or frozen) and their
Updates into a resumable stage and returns the learners' variables: a supervised classifier, a
linear probe, a fusion head, a mask generator or a min-max game are all built this way.
`train_classifier` is its one-Update case: some players learn so that `predict(forward, inputs,
train)` classifies well; only who the players are, which move and what they classify (augmented
images by default, or e.g. cached stream features) differs between the stages of an experiment.
"""

import dataclasses
from typing import Any, Callable, Iterator, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

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


def optimizer_for(train_config: ml_collections.ConfigDict, split_size: int,
                  optimizer: ml_collections.ConfigDict | None = None) -> optax.GradientTransformation:
    """`optimizer` (default `train_config.optimizer`) with its schedule over the stage's steps."""
    total, per_epoch = step_counts(train_config, split_size)
    return make_optimizer(optimizer or train_config.optimizer, total, per_epoch)


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


@dataclasses.dataclass(frozen=True)
class Learner:
    """A player this stage trains: its module, how it starts (initialised on `sample_inputs` with
    `init_rng`, or from given `variables`, e.g. an earlier stage's), and its own optimizer when it
    learns apart from the others (a min-max game's players; None: the stage's `train.optimizer`)."""

    module: nn.Module
    sample_inputs: tuple[jax.ShapeDtypeStruct, ...] = ()
    init_rng: jax.Array | None = None
    variables: Variables | None = None
    optimizer: ml_collections.ConfigDict | None = None


@dataclasses.dataclass(frozen=True)
class Trained:
    variables: dict[str, Variables]  # each learner's params and batch_stats, on the host
    metrics: dict[str, float]  # the stage's final test metrics


Evaluation = Callable[[Mapping[str, PlayerSpec]], Callable[[TrainState], dict[str, float]]]
Batches = Callable[[int], Iterator[dict[str, Any]]]  # start step -> the training batches from it


def train_players(name: str, *, learners: Mapping[str, Learner], frozen: Mapping[str, tuple[nn.Module, Variables]],
                  updates: list[Update], evaluate: Evaluation | None, train_split: pipeline.ArraySplit,
                  train_config: ml_collections.ConfigDict, seed: int, train_rng: jax.Array, workdir: str,
                  mesh: jax.sharding.Mesh, loop: LoopOptions, fingerprint: Mapping,
                  batches: Batches | None = None) -> Trained:
    """The one stage set-up every experiment uses: specs, init, a resumable stage, variables out.

    `learners` start from their init or given variables and move by `updates` (one Update, or the
    several of a min-max game); `frozen` players (pretrained streams, a fixed mask generator) run in
    inference mode and keep their variables. `evaluate(specs)` gives the stage's evaluation.
    `batches(start)` yields the training batches from step `start` (default: `train_split`'s, as
    `pipeline.train_batches` draws them); it must be a pure function of the step for resume to be exact.
    """
    specs = {player: PlayerSpec(module) for player, (module, _) in frozen.items()}
    specs.update({player: PlayerSpec(learner.module, optimizer_for(train_config, len(train_split), learner.optimizer))
                  for player, learner in learners.items()})

    def init_state() -> TrainState:
        variables = {player: v for player, (_, v) in frozen.items()}
        for player, learner in learners.items():
            if learner.variables is not None:
                variables[player] = learner.variables
            else:
                zeros = [jnp.zeros(s.shape, s.dtype) for s in learner.sample_inputs]
                variables[player] = init_variables(learner.module, learner.init_rng, *zeros)
        return new_train_state(specs, variables, train_rng)

    # Players with their own optimizer add it (others are covered by `train`).
    optimizers = {player: learner.optimizer.to_dict() for player, learner in learners.items() if learner.optimizer}
    stage = Stage(
        name=name, specs=specs, updates=updates, init_state=init_state,
        batches=batches or (lambda start: pipeline.train_batches(train_split, train_config.batch_size, seed, start)),
        num_steps=step_counts(train_config, len(train_split))[0],
        fingerprint={**fingerprint, "train": train_config.to_dict(), "seed": seed,
                     **({"optimizers": optimizers} if optimizers else {})},
        evaluate=evaluate(specs) if evaluate else None)
    result = run_stage(stage, workdir, mesh, loop)
    players = jax.device_get(result.state.players)
    return Trained({player: {"params": players[player].params, "batch_stats": players[player].batch_stats}
                    for player in learners}, result.metrics)


def classification_evaluation(predict: Predict, inputs: Inputs, test_split: pipeline.ArraySplit, batch_size: int,
                              mesh: jax.sharding.Mesh,
                              extra_metrics: Callable[[TrainState], dict[str, float]] | None = None) -> Evaluation:
    """Accuracy, loss and entropy of `predict` on `test_split`, plus `extra_metrics(state)` (e.g. accuracy
    under test conditions)."""

    def evaluation(specs):
        eval_step = jax.jit(make_eval_step(specs, classification_metrics(predict, inputs)))

        def evaluate(state: TrainState) -> dict[str, float]:
            metrics = score_split(eval_step, state, test_split, batch_size, mesh)
            return {**metrics, **(extra_metrics(state) if extra_metrics else {})}

        return evaluate

    return evaluation


def train_classifier(name: str, predict: Predict, *, learners: Mapping[str, Learner],
                     frozen: Mapping[str, tuple[nn.Module, Variables]], train_split: pipeline.ArraySplit,
                     test_split: pipeline.ArraySplit, train_config: ml_collections.ConfigDict, seed: int,
                     train_rng: jax.Array, workdir: str, mesh: jax.sharding.Mesh, loop: LoopOptions,
                     fingerprint: Mapping, inputs: Inputs | None = None,
                     extra_metrics: Callable[[TrainState], dict[str, float]] | None = None,
                     batches: Batches | None = None) -> Trained:
    """`train_players` with one classification update: `predict(forward, inputs, train)` classifies
    the training `inputs` (augmented images by default) and is scored on `test_split`."""
    inputs = inputs or image_inputs(train_config.augment)
    return train_players(
        name, learners=learners, frozen=frozen,
        updates=[classification_update(predict, tuple(learners), train_config, inputs)],
        evaluate=classification_evaluation(predict, inputs, test_split, train_config.batch_size, mesh, extra_metrics),
        train_split=train_split, train_config=train_config, seed=seed, train_rng=train_rng, workdir=workdir,
        mesh=mesh, loop=loop, fingerprint=fingerprint, batches=batches)


def image_sample(split: pipeline.ArraySplit) -> tuple[jax.ShapeDtypeStruct]:
    """One float image of the split's shape: what an image classifier is initialised on."""
    return (jax.ShapeDtypeStruct((1, *split.arrays["image"].shape[1:]), jnp.float32),)
