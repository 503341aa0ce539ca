"""The default fusion job's compilations: each stage's train step, and the evaluation of its conditions.

The job's own functions run (`experiments.fusion.experiment.stream_variables`, `train_head`,
`score_conditions`) with `run_stage` replaced by a compile-only stand-in: it compiles the stage's
train step as the loop would (`train.loop`), records the compilation, and returns the initial
state instead of training (compile time does not depend on the weights). Then every call of
the step scores every configured condition (blur sigmas x regions) on the real test split.
"""

import tempfile
from typing import Callable
from unittest import mock

import jax

from bench.compile_events import CompileEvents
from bench.harness import Parts, Step
from bench.sweep_compiles import STAGE
from configs import fusion as fusion_config
from ctxfuse_jax.data.sources import load_labelled
from ctxfuse_jax.evaluate.evaluator import make_condition_step
from ctxfuse_jax.experiments import classification
from ctxfuse_jax.experiments.fusion import experiment
from ctxfuse_jax.train import sharding
from ctxfuse_jax.train.loop import StageResult
from ctxfuse_jax.train.steps import make_train_step

FAMILY, LEVEL = 3, 4  # Positions of the family and level in the condition step's arguments.


def per_condition(step: Callable) -> Callable:
    """The naive reference: family and level static arguments of the jit, so each (condition,
    level) compiles its own program. Same arguments as `make_condition_step`'s step."""
    static = jax.jit(step.__wrapped__, static_argnums=(FAMILY, LEVEL))
    return lambda players, batch, bank, family, level, key: static(players, batch, bank, int(family), int(level),
                                                                   key)


# How the condition step is jitted: the project's (one program for every condition) or naively.
CONDITION_JITS: dict[str, Callable] = {
    "once": make_condition_step,
    "per condition": lambda *args, **kwargs: per_condition(make_condition_step(*args, **kwargs)),
}


def _untrained(compiled: dict[str, CompileEvents] | None) -> Callable:
    """A `run_stage` stand-in returning the initial state; it first compiles the stage's train step
    as the loop does and records that in `compiled`, unless that is None."""

    def run_stage(stage, workdir, mesh, options=None) -> StageResult:
        state = sharding.put_replicated(stage.init_state(), mesh)
        if compiled is not None:
            batch = sharding.put_batch(next(stage.batches(0)), mesh)
            with CompileEvents() as events:
                jax.jit(make_train_step(stage.specs, stage.updates), donate_argnums=0).lower(state, batch).compile()
            compiled[stage.name] = events
        return StageResult(state, {})

    return run_stage


def fusion_job(sweep_jit: str, compile_stages: bool, preset: str = "default") -> Step:
    """Builds the job's untrained streams and heads (compiling every stage's train step if
    `compile_stages`, heads on recomputed streams); then each call scores every condition once.

    Parts: `compilations`, `compile s` and its stages for the evaluation; with `compile_stages`,
    the first call also reports `stage <name> compile s` for each stage's train step.
    """
    config = fusion_config.get_config(preset)
    mesh = sharding.make_mesh()
    data = load_labelled(config.data)
    compiled: dict[str, CompileEvents] = {}
    stand_in = _untrained(compiled if compile_stages else None)
    with tempfile.TemporaryDirectory() as workdir, mock.patch.object(classification, "run_stage", stand_in):
        streams = {role: experiment.stream_variables(config, role, 0, workdir, mesh)[0] for role in experiment.ROLES}
        heads = {m: experiment.train_head(config, m, data, streams, 0, workdir, mesh, {})[0]
                 for m in experiment.MODELS}
    stages = Parts({f"{STAGE}{name} compile s": events.seconds for name, events in compiled.items()})

    def step() -> Parts:
        with CompileEvents() as events, mock.patch.object(experiment, "make_condition_step",
                                                          CONDITION_JITS[sweep_jit]):
            experiment.score_conditions(config, data, streams, heads, mesh, seed=0)
        parts = Parts({**events.parts(), **stages})
        stages.clear()  # Reported once.
        return parts

    return step
