"""Train state as a pytree of named players, so min-max games need no second trainer.

A *player* is one network (a classifier, a frozen feature stream, a mask generator, a background
generator). Its static description (module, optimizer) lives in a `PlayerSpec`; its arrays live in
a `Player` inside the `TrainState`, which is all a checkpoint needs to hold.
"""

import dataclasses
from typing import Any, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

Variables = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class PlayerSpec:
    """What a player is: its module and how it learns (`optimizer=None` means frozen)."""

    module: nn.Module
    optimizer: optax.GradientTransformation | None = None

    @property
    def frozen(self) -> bool:
        return self.optimizer is None


@flax.struct.dataclass
class Player:
    """A player's arrays. Frozen players carry no optimizer state (`opt_state is None`)."""

    params: Any
    batch_stats: Any
    opt_state: Any


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training; `rng` is the root key, folded with `step` in a step."""

    step: jax.Array
    rng: jax.Array
    players: dict[str, Player]


def new_player(spec: PlayerSpec, variables: Variables) -> Player:
    """Wraps initial (or pretrained) variables; only trainable players get optimizer state."""
    unknown = set(variables) - {"params", "batch_stats"}
    if unknown:
        raise ValueError(f"player variables have unexpected collections {sorted(unknown)}; "
                         "expected 'params' and optionally 'batch_stats'")
    params = variables["params"]
    opt_state = None if spec.frozen else spec.optimizer.init(params)
    return Player(params=params, batch_stats=variables.get("batch_stats", {}), opt_state=opt_state)


def new_train_state(specs: Mapping[str, PlayerSpec], variables: Mapping[str, Variables],
                    rng: jax.Array) -> TrainState:
    """The state at step 0: one player per spec, all built from `variables[name]`."""
    if set(specs) != set(variables):
        raise ValueError(f"players {sorted(specs)} and initial variables {sorted(variables)} differ")
    players = {name: new_player(spec, variables[name]) for name, spec in specs.items()}
    return TrainState(step=jnp.zeros((), jnp.int32), rng=rng, players=players)


def init_variables(module: nn.Module, rng: jax.Array, *sample_inputs: Any, **kwargs: Any) -> Variables:
    """Initialises a module under `jit` (op-by-op init of a ResNet is slow on CPU)."""
    return jax.jit(lambda r, *xs: module.init(r, *xs, train=False, **kwargs))(rng, *sample_inputs)


def count_params(params: Any) -> int:
    return sum(x.size for x in jax.tree.leaves(params))
