"""The training loop: resumable stages with checkpoints, metrics, progress and clean interruption."""

import dataclasses
import json
import math
import os
import signal
from typing import Any, Callable, Iterator, Mapping, Sequence

import jax
import numpy as np

from ctxfuse_jax.errors import Interrupted, WorkdirError
from ctxfuse_jax.files import write_json_atomic
from ctxfuse_jax.train import sharding
from ctxfuse_jax.train.checkpoint import Checkpointer, jsonable
from ctxfuse_jax.train.monitor import MetricWriter, Progress, discard_metrics_after
from ctxfuse_jax.train.state import PlayerSpec, TrainState
from ctxfuse_jax.train.steps import Update, make_train_step
from ctxfuse_jax.workdir import STAGE_RESULT_FILE

HostBatch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One resumable unit of training: a game of players, its data and its length.

    `batches(step)` yields this host's batches starting at `step`, so a resumed stage sees exactly
    the data it would have seen without the interruption. `fingerprint` names the settings a
    checkpoint must share to be resumed (model, optimizer, data).
    """

    name: str
    specs: Mapping[str, PlayerSpec]
    updates: Sequence[Update]
    init_state: Callable[[], TrainState]
    batches: Callable[[int], Iterator[HostBatch]]
    num_steps: int
    fingerprint: Mapping[str, Any]
    evaluate: Callable[[TrainState], dict[str, float]] | None = None


@dataclasses.dataclass(frozen=True)
class LoopOptions:
    log_every: int = 50
    checkpoint_every: int = 500
    eval_every: int = 0  # 0: evaluate only at the end.
    train: bool = True  # False: a stage not finished is refused instead of trained (`ctxfuse_jax.report`).


class _StopFlag:
    """Turns the first SIGINT/SIGTERM into a flag checked between steps (the second one kills)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


@dataclasses.dataclass(frozen=True)
class StageResult:
    state: TrainState
    metrics: dict[str, float]  # The final evaluation (empty when the stage has no `evaluate`).


def run_stage(stage: Stage, workdir: str, mesh: jax.sharding.Mesh,
              options: LoopOptions = LoopOptions()) -> StageResult:
    """Trains `stage` to `num_steps`, resuming from `workdir/<stage>`, then evaluates it once.

    A stage found complete is not trained again; its final evaluation is read back from
    `workdir/<stage>/eval.json` when that was computed under the same fingerprint, else recomputed.
    """
    if stage.num_steps <= 0:
        raise ValueError(f"[{stage.name}] num_steps must be positive, got {stage.num_steps}")
    stage_dir = os.path.join(workdir, stage.name)
    checkpointer = Checkpointer(os.path.join(stage_dir, "checkpoints"), stage.fingerprint)
    try:
        state = checkpointer.restore(jax.eval_shape(stage.init_state), sharding.replicated(mesh))
        if state is None:
            state = stage.init_state()
        state = sharding.put_replicated(state, mesh)
        start = int(jax.device_get(state.step))
        if start >= stage.num_steps:
            print(f"[{stage.name}] already complete at step {start}: skipping", flush=True)
        elif not options.train:
            raise WorkdirError(f"{stage_dir} is not finished (step {start} of {stage.num_steps}) and loop.train is "
                               "off: finish the run first (the same command without --config.loop.train=False)")
        else:
            if start:
                print(f"[{stage.name}] resuming from step {start} of {stage.num_steps}", flush=True)
            _forget_results_after(stage_dir, start)
            state = _train(stage, state, start, stage_dir, checkpointer, mesh, options)
    finally:
        checkpointer.close()
    return StageResult(state, _final_eval(stage, state, stage_dir))


def _forget_results_after(stage_dir: str, step: int) -> None:
    """A stage about to train from `step` drops what it will compute again: its final evaluation
    (it belonged to another model) and the metrics logged after `step` (they would appear twice)."""
    if jax.process_index() != 0:
        return
    if os.path.exists(os.path.join(stage_dir, STAGE_RESULT_FILE)):
        os.remove(os.path.join(stage_dir, STAGE_RESULT_FILE))
    discard_metrics_after(stage_dir, step)


def _final_eval(stage: Stage, state: TrainState, stage_dir: str) -> dict[str, float]:
    path = os.path.join(stage_dir, STAGE_RESULT_FILE)
    fingerprint = jsonable(dict(stage.fingerprint))
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        if saved.get("step") == stage.num_steps and saved.get("fingerprint") == fingerprint:
            return saved["metrics"]
    discard_metrics_after(stage_dir, stage.num_steps - 1, prefix="eval/")
    metrics = _evaluate(stage, state, stage.num_steps, MetricWriter(stage_dir)) if stage.evaluate else {}
    if jax.process_index() == 0:
        write_json_atomic(path, {"step": stage.num_steps, "fingerprint": fingerprint, "metrics": metrics})
    return metrics


def _train(stage: Stage, state: TrainState, start: int, stage_dir: str, checkpointer: Checkpointer,
           mesh: jax.sharding.Mesh, options: LoopOptions) -> TrainState:
    train_step = jax.jit(make_train_step(stage.specs, stage.updates), donate_argnums=0)
    writer = MetricWriter(stage_dir)
    progress = Progress(stage.name, stage.num_steps)
    pending: list[dict[str, jax.Array]] = []  # Device metrics since the last log step.
    batches = stage.batches(start)
    with _StopFlag() as stop:
        for step in range(start + 1, stage.num_steps + 1):
            batch = sharding.put_batch(next(batches), mesh)
            state, metrics = train_step(state, batch)
            pending.append(metrics)
            if step == start + 1:  # Time steps/s and ETA from here: the first step also compiled.
                jax.block_until_ready(metrics)
                progress.start(step)
            last = step == stage.num_steps
            if step % options.log_every == 0 or last or stop.signum is not None:
                scalars = _mean_finite(pending, stage.name, step)
                pending.clear()
                writer.write(step, {f"train/{k}": v for k, v in scalars.items()})
                progress.report(step, scalars)
            if options.eval_every and step % options.eval_every == 0 and not last and stage.evaluate:
                _evaluate(stage, state, step, writer)
            if step % options.checkpoint_every == 0 or last or stop.signum is not None \
                    or checkpointer.reached_preemption(step):
                checkpointer.save(state, {"stage": stage.name, "num_steps": stage.num_steps})
            if stop.signum is not None:
                raise Interrupted(stage.name, step, stop.signum, checkpointer.directory)
    return state


def _evaluate(stage: Stage, state: TrainState, step: int, writer: MetricWriter) -> dict[str, float]:
    results = stage.evaluate(state)
    writer.write(step, {f"eval/{k}": v for k, v in results.items()})
    print(f"[{stage.name}] eval at step {step}: " + "  ".join(f"{k} {v:.4g}" for k, v in results.items()),
          flush=True)
    return results


def _mean_finite(pending: list[dict[str, jax.Array]], stage: str, step: int) -> dict[str, float]:
    """Averages metrics on the host (they leave the device only here) and stops on NaN/Inf."""
    host = jax.device_get(pending)
    means = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
    bad = {k: v for k, v in means.items() if not math.isfinite(v)}
    if bad:
        raise FloatingPointError(f"[{stage}] non-finite training metrics {bad} before step {step}; "
                                 "stopping without saving. Lower the learning rate or check the data.")
    return means
