"""Runs a jitted function over a split: padded batches, every example exactly once.

`score_split` keeps sums on device and divides once at the end; `per_example_outputs` brings the
per-example outputs themselves to the host.
"""

from typing import Any, Callable, Mapping

import jax
import numpy as np

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


def per_example_outputs(fn: Callable[[Mapping[str, jax.Array]], Any], split: ArraySplit, global_batch_size: int,
                        mesh: jax.sharding.Mesh) -> Any:
    """`fn(batch)`'s pytree of per-example arrays for every example of `split`, in order, as numpy.

    Every host gets all of them (multi-host runs gather the data-sharded outputs).
    """
    chunks = []
    for batch in eval_batches(split, global_batch_size):
        batch = sharding.put_batch(batch, mesh)
        valid = sharding.to_host(batch["valid"])
        chunks.append(jax.tree.map(lambda x: sharding.to_host(x)[valid], fn(batch)))
    return jax.tree.map(lambda *parts: np.concatenate(parts), *chunks)
