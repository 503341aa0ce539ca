"""The default fusion job's compilations: each stage's train step, and the robustness sweep.

The job's own functions run (`experiments.fusion.stream_variables`, `train_head`,
`sweep_accuracy`) with `run_stage` replaced by a compile-only stand-in: it compiles the stage's
train step as the loop would (`train.loop`), records the compilation, and returns the initial
state instead of training (compile time does not depend on the weights). Then every call of
the step runs the full sweep, all sigmas x regions of the config, on the real test split.
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
from ctxfuse_jax.evaluate.sweep import make_sweep_step
from ctxfuse_jax.experiments import fusion
from ctxfuse_jax.train import sharding
from ctxfuse_jax.train.loop import StageResult
from ctxfuse_jax.train.steps import make_train_step


def per_sigma(step: Callable) -> Callable:
    """The naive reference: sigma a static argument of the jit, so each sigma compiles its own
    program (the region stays traced). Same arguments as `make_sweep_step`'s step."""
    static = jax.jit(step.__wrapped__, static_argnums=2)
    return lambda players, batch, sigma, foreground_only: static(players, batch, float(sigma), foreground_only)


# How the sweep step is jitted: the project's (one program for every sigma and region) or naively.
SWEEP_JITS: dict[str, Callable] = {"once": make_sweep_step,
                                   "per sigma": lambda specs, logits: per_sigma(make_sweep_step(specs, logits))}


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
    `compile_stages`); then each call runs the whole sweep once.

    Parts: `compilations`, `compile s` and its stages for the sweep; with `compile_stages`, the
    first call also reports `stage <name> compile s` for each stage's train step.
    """
    config = fusion_config.get_config(preset)
    mesh = sharding.make_mesh()
    data = load_labelled(config.data)
    compiled: dict[str, CompileEvents] = {}
    stand_in = _untrained(compiled if compile_stages else None)
    with tempfile.TemporaryDirectory() as workdir, mock.patch.object(fusion, "run_stage", stand_in):
        streams = {role: fusion.stream_variables(config, role, 0, workdir, mesh)[0] for role in fusion.ROLES}
        heads = {m: fusion.train_head(config, m, data, streams, 0, workdir, mesh, {})[0] for m in fusion.MODELS}
    stages = Parts({f"{STAGE}{name} compile s": events.seconds for name, events in compiled.items()})

    def step() -> Parts:
        with CompileEvents() as events, mock.patch.object(fusion, "make_sweep_step", SWEEP_JITS[sweep_jit]):
            fusion.sweep_accuracy(config, data, streams, heads, mesh)
        parts = Parts({**events.parts(), **stages})
        stages.clear()  # Reported once.
        return parts

    return step
