"""Scores a split with a jitted eval step: padded batches, sums on device, one division at the end."""

from typing import Callable, Mapping

import jax

from ctxfuse_jax.data.pipeline import ArraySplit, eval_batches
from ctxfuse_jax.train import sharding
from ctxfuse_jax.train.state import TrainState
from ctxfuse_jax.train.steps import reduce_sums

EvalStep = Callable[[TrainState, Mapping[str, jax.Array]], dict[str, jax.Array]]


def score_split(eval_step: EvalStep, state: TrainState, split: ArraySplit, global_batch_size: int,
                mesh: jax.sharding.Mesh) -> dict[str, float]:
    """Means of the eval step's per-example metrics over every example of `split`, exactly once."""
    sums = [eval_step(state, sharding.put_batch(batch, mesh))
            for batch in eval_batches(split, global_batch_size)]
    return reduce_sums(sums)
