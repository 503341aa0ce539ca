"""Jittable train and eval steps for any game of players.

A supervised run is a game with one `Update`; a min-max game (mask generator vs. background
generator vs. classifier) is several, applied in order within one step, each moving its own
players against the current values of the others.
"""

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import optax

from ctxfuse_jax.train.forward import Forward
from ctxfuse_jax.train.state import PlayerSpec, TrainState

Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]
LossFn = Callable[[Forward, Batch, jax.Array], tuple[jax.Array, Metrics]]
ExampleMetricFn = Callable[[Forward, Batch], Metrics]


@dataclasses.dataclass(frozen=True)
class Update:
    """One gradient step: `players` descend `loss(forward, batch, rng) -> (loss, metrics)`.

    `name` prefixes the metrics (`<name>/loss`); a game of one update may leave it empty.
    """

    players: tuple[str, ...]
    loss: LossFn
    name: str = ""


def check_updates(specs: Mapping[str, PlayerSpec], updates: Sequence[Update]) -> None:
    """Fails early, by name, on games that cannot train."""
    if not updates:
        raise ValueError("a game needs at least one Update")
    names = [update.name for update in updates]
    if len(updates) > 1 and (not all(names) or len(set(names)) != len(names)):
        raise ValueError(f"the updates of a game of several need distinct, non-empty names (their metrics "
                         f"are prefixed by them), got {names}")
    for update in updates:
        for name in update.players:
            if name not in specs:
                raise ValueError(f"update {update.name!r} moves unknown player {name!r}; "
                                 f"players are {sorted(specs)}")
            if specs[name].frozen:
                raise ValueError(f"update {update.name!r} moves frozen player {name!r} "
                                 "(it has no optimizer)")


def make_train_step(specs: Mapping[str, PlayerSpec],
                    updates: Sequence[Update]) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """Returns `step(state, batch) -> (state, metrics)`, ready for `jax.jit`."""
    check_updates(specs, updates)

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        step_rng = jax.random.fold_in(state.rng, state.step)
        players = dict(state.players)
        metrics: Metrics = {}
        for index, update in enumerate(updates):
            rng = jax.random.fold_in(step_rng, index)

            def loss_fn(moving_params, update=update, rng=rng):
                forward = Forward(specs, players, moving_params, rng)
                loss, aux = update.loss(forward, batch, rng)
                return loss, (aux, forward.new_batch_stats)

            moving = {name: players[name].params for name in update.players}
            (loss, (aux, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(moving)
            for name in update.players:
                player = players[name]
                deltas, opt_state = specs[name].optimizer.update(grads[name], player.opt_state,
                                                                 player.params)
                players[name] = player.replace(
                    params=optax.apply_updates(player.params, deltas),
                    opt_state=opt_state,
                    batch_stats=new_stats.get(name, player.batch_stats))
            prefix = f"{update.name}/" if update.name else ""
            metrics.update({f"{prefix}{k}": v for k, v in {"loss": loss, **aux}.items()})
        return state.replace(step=state.step + 1, players=players), metrics

    return train_step


def make_eval_step(specs: Mapping[str, PlayerSpec],
                   example_metrics: ExampleMetricFn) -> Callable[[TrainState, Batch], Metrics]:
    """Returns `step(state, batch) -> {name: sum over valid examples}` plus `count`.

    Sums (not means) so that padded batches and many devices average exactly: the caller divides
    once at the end, and every example is scored exactly once.
    """

    def eval_step(state: TrainState, batch: Batch) -> Metrics:
        values = example_metrics(Forward(specs, state.players), batch)
        valid = batch["valid"].astype(jnp.float32)
        sums = {k: jnp.sum(v.astype(jnp.float32) * valid) for k, v in values.items()}
        return {**sums, "count": jnp.sum(valid)}

    return eval_step


def reduce_sums(per_batch: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Adds eval sums over batches and divides by the number of valid examples."""
    if not per_batch:
        raise ValueError("no eval batches: the split is empty")
    totals = jax.tree.map(lambda *xs: float(sum(xs)), *[jax.device_get(b) for b in per_batch])
    count = totals.pop("count")
    if count == 0:
        raise ValueError("no valid examples in the eval split")
    return {**{k: v / count for k, v in totals.items()}, "count": count}
